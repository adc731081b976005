/*
 * url — endpoint URLs (see url.h). Moved out of cli.c so that it can be
 * fuzzed on its own.
 */
#include "engine/cli/url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decodes [s, s+n) into out (cap bytes incl. NUL). */
static int pct_decode(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int ch = (unsigned char)s[i];

		if (ch == '%') {
			int h, l;

			if (i + 2 >= n || (h = hexval(s[i + 1])) < 0 || (l = hexval(s[i + 2])) < 0)
				return -1;
			ch = h * 16 + l;
			i += 2;
		}
		if (o + 1 >= cap || ch == 0)
			return -1;
		out[o++] = (char)ch;
	}
	out[o] = '\0';
	return 0;
}

static const struct {
	const char *name;
	enum url_kind kind;
	int tls;
	uint16_t port;
} schemes[] = {
	{"imap", URL_IMAP, 0, 143},  {"imaps", URL_IMAP, 1, 993}, {"pop3", URL_POP3, 0, 110},
	{"pop3s", URL_POP3, 1, 995}, {"smtp", URL_SMTP, 0, 25},   {"smtps", URL_SMTP, 1, 465},
	{"lmtp", URL_LMTP, 0, 24},
};

/* One "key=value" of the query [p, e). */
static int url_param(struct url *u, const char *p, const char *e, char *why, size_t whycap)
{
	size_t n = (size_t)(e - p);
	int mail = u->kind == URL_SMTP || u->kind == URL_LMTP;

	if (n == 11 && !memcmp(p, "starttls=no", 11) && !u->tls && !u->path[0]) {
		u->starttls_no = 1;
		return 0;
	}
	if (mail && n > 5 && !memcmp(p, "rcpt=", 5)) {
		if (u->rcpt[0] || pct_decode(p + 5, n - 5, u->rcpt, sizeof(u->rcpt)) < 0 ||
		    !u->rcpt[0]) {
			snprintf(why, whycap, "bad rcpt= (one recipient address, percent-encoded)");
			return -1;
		}
		return 0;
	}
	snprintf(why, whycap, "unknown URL parameter \"%.*s\" (known: %s)", (int)(n > 60 ? 60 : n), p,
	         mail ? "rcpt=ADDR, and starttls=no for smtp:// and lmtp://"
	              : "starttls=no for imap:// and pop3://");
	return -1;
}

/* scheme://[user[:password]@]host[:port][/][?k=v[&k=v]...], and
 * lmtp:///path/to/socket?rcpt=ADDR */
int url_parse(const char *s, struct url *u, char *why, size_t whycap)
{
	const char *p, *at, *hs, *he, *q;
	size_t sl, k;

	memset(u, 0, sizeof(*u));
	p = strstr(s, "://");
	if (!p || (size_t)(p - s) >= sizeof(u->scheme)) {
		snprintf(why, whycap, "not a URL (expected imap://user@host or imaps://user@host)");
		return -1;
	}
	sl = (size_t)(p - s);
	memcpy(u->scheme, s, sl);
	for (size_t i = 0; i < sl; i++)
		u->scheme[i] =
		    (char)((u->scheme[i] >= 'A' && u->scheme[i] <= 'Z') ? u->scheme[i] + 32
		                                                        : u->scheme[i]);
	for (k = 0; k < sizeof(schemes) / sizeof(schemes[0]); k++)
		if (!strcmp(u->scheme, schemes[k].name))
			break;
	if (k == sizeof(schemes) / sizeof(schemes[0])) {
		snprintf(why, whycap,
		         "unsupported scheme \"%s\" (known: imap, imaps, pop3, pop3s, smtp, smtps, "
		         "lmtp)",
		         u->scheme);
		return -1;
	}
	u->kind = schemes[k].kind;
	u->tls = schemes[k].tls;
	u->port = schemes[k].port;
	p += 3;
	q = strchr(p, '?');
	he = q ? q : p + strlen(p);
	if (u->kind == URL_LMTP && *p == '/') {
		/* a UNIX socket: the path up to the query */
		if (he == p + 1 || pct_decode(p, (size_t)(he - p), u->path, sizeof(u->path)) < 0) {
			snprintf(why, whycap, "bad socket path (lmtp:///path/to/socket, at most %zu bytes)",
			         sizeof(u->path) - 1);
			return -1;
		}
		snprintf(u->host, sizeof(u->host), "localhost");
		u->port = 0;
		goto query;
	}
	if (he > p && he[-1] == '/')
		he--;
	at = NULL;
	for (const char *c = p; c < he; c++)
		if (*c == '@')
			at = c; /* the last '@': a user name's own '@' should be %40 */
	if (!at && (u->kind == URL_IMAP || u->kind == URL_POP3)) {
		snprintf(why, whycap, "no user name (expected %s://user@host)", u->scheme);
		return -1;
	}
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));

		if (pct_decode(p, (size_t)((colon ? colon : at) - p), u->user, sizeof(u->user)) <
		        0 ||
		    !u->user[0]) {
			snprintf(why, whycap, "bad user name");
			return -1;
		}
		if (colon) {
			if (pct_decode(colon + 1, (size_t)(at - colon - 1), u->password,
			               sizeof(u->password)) < 0) {
				snprintf(why, whycap, "bad password in URL");
				return -1;
			}
			u->has_password = 1;
		}
	}
	hs = at ? at + 1 : p;
	if (*hs == '[') {
		const char *rb = memchr(hs, ']', (size_t)(he - hs));

		if (!rb || rb == hs + 1 || (size_t)(rb - hs - 1) >= sizeof(u->host)) {
			snprintf(why, whycap, "bad IPv6 host");
			return -1;
		}
		memcpy(u->host, hs + 1, (size_t)(rb - hs - 1));
		hs = rb + 1;
	} else {
		const char *colon = memchr(hs, ':', (size_t)(he - hs));
		const char *end = colon ? colon : he;

		if (end == hs || (size_t)(end - hs) >= sizeof(u->host)) {
			snprintf(why, whycap, "no host");
			return -1;
		}
		memcpy(u->host, hs, (size_t)(end - hs));
		hs = end;
	}
	if (hs < he && *hs == ':') {
		char *end;
		long port = strtol(hs + 1, &end, 10);

		if (end != he || port < 1 || port > 65535) {
			snprintf(why, whycap, "bad port");
			return -1;
		}
		u->port = (uint16_t)port;
	} else if (hs != he) {
		snprintf(why, whycap, "unexpected \"%.*s\" after the host", (int)(he - hs), hs);
		return -1;
	}
query:
	for (const char *a = q ? q + 1 : NULL; a;) {
		const char *e = strchr(a, '&');

		if (url_param(u, a, e ? e : a + strlen(a), why, whycap) < 0)
			return -1;
		a = e ? e + 1 : NULL;
	}
	if ((u->kind == URL_SMTP || u->kind == URL_LMTP) && !u->rcpt[0]) {
		snprintf(why, whycap, "no recipient (add ?rcpt=ADDR: %s://host?rcpt=user@example.org)",
		         u->scheme);
		return -1;
	}
	return 0;
}

void url_redact(const char *s, char *out, size_t cap)
{
	const char *a = strstr(s, "://"), *end, *at = NULL, *colon = NULL;

	if (!cap)
		return;
	if (!a) {
		snprintf(out, cap, "%s", s);
		return;
	}
	a += 3;
	end = a + strcspn(a, "/?#");
	for (const char *p = a; p < end; p++)
		if (*p == '@')
			at = p;
	if (at)
		colon = memchr(a, ':', (size_t)(at - a));
	if (!colon) {
		snprintf(out, cap, "%s", s);
		return;
	}
	snprintf(out, cap, "%.*s***%s", (int)(colon + 1 - s), s, at);
}
