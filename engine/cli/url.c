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

/* imap[s]://user[:password]@host[:port][/][?starttls=no] */
int url_parse(const char *s, struct url *u, char *why, size_t whycap)
{
	const char *p, *at, *hs, *he, *q;
	size_t sl;

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
	if (strcmp(u->scheme, "imap") && strcmp(u->scheme, "imaps") &&
	    strcmp(u->scheme, "pop3") && strcmp(u->scheme, "pop3s")) {
		snprintf(why, whycap,
		         "unsupported scheme \"%s\" (this command takes imap://, imaps://, "
		         "pop3:// or pop3s://)",
		         u->scheme);
		return -1;
	}
	p += 3;
	q = strchr(p, '?');
	he = q ? q : p + strlen(p);
	if (he > p && he[-1] == '/')
		he--;
	at = NULL;
	for (const char *c = p; c < he; c++)
		if (*c == '@')
			at = c; /* the last '@': a user name's own '@' should be %40 */
	if (!at) {
		snprintf(why, whycap, "no user name (expected imap://user@host)");
		return -1;
	}
	{
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
	hs = at + 1;
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
	u->port = strcmp(u->scheme, "imaps") ? 143 : 993;
	if (!strncmp(u->scheme, "pop3", 4))
		u->port = u->scheme[4] ? 995 : 110;
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
	if (q) {
		if (!strcmp(q + 1, "starttls=no") &&
		    (!strcmp(u->scheme, "imap") || !strcmp(u->scheme, "pop3")))
			u->starttls_no = 1;
		else {
			snprintf(why, whycap,
			         "unknown URL parameter \"%s\" (known: starttls=no for imap:// and "
			         "pop3://)",
			         q + 1);
			return -1;
		}
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
