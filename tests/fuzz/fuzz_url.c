/*
 * fuzz_url — libFuzzer target for engine/url.c.
 *
 * The input (up to its first NUL) is parsed as an endpoint URL. What is
 * accepted must be whole (a known scheme, a user where one is needed, a
 * host, a port or an lmtp socket path, a recipient for smtp/lmtp) and
 * must survive a round trip: written back as a URL with every byte of user
 * and password percent-encoded, it parses to the same fields. A refusal
 * must say why and never repeat the password.
 */
#include "engine/cli/url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* every fixed text of url.c's reasons */
#define REASON_WORDS                                                                               \
	"not a URL (expected imap://user@host or imaps://user@host) unsupported scheme \"\" "      \
	"(known: imap, imaps, pop3, pop3s, smtp, smtps, lmtp) no user name (expected "            \
	"imap://user@host pop3://user@host) bad user name bad password in URL bad IPv6 host "     \
	"no host bad port unexpected \"\" after the host unknown URL parameter \"\" (known: "       \
	"rcpt=ADDR, and starttls=no for smtp:// and lmtp:// starttls=no for imap:// and "        \
	"pop3://) bad rcpt= (one recipient address, percent-encoded) bad socket path "            \
	"(lmtp:///path/to/socket, at most 107 bytes) no recipient (add ?rcpt=ADDR: "             \
	"smtp://host?rcpt=user@example.org lmtp://host?rcpt=user@example.org smtps://"

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "url: %s\n", what);
		abort();
	}
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *h = hay; (h = strstr(h, needle)); h++)
		n++;
	return n;
}

static int alnum6(const char *p)
{
	size_t n = 0;

	for (; *p; p++, n++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9')))
			return 0;
	return n >= 6;
}

static size_t pct(char *o, const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += (size_t)sprintf(o + n, "%%%02X", (unsigned char)*s);
	return n;
}

static void roundtrip(const struct url *u)
{
	char buf[4096], why[256];
	size_t n = 0;
	struct url v;
	int bracket = strchr(u->host, ':') || u->host[0] == '[';

	n += (size_t)sprintf(buf + n, "%s://", u->scheme);
	if (u->user[0]) {
		n += pct(buf + n, u->user);
		if (u->has_password) {
			buf[n++] = ':';
			n += pct(buf + n, u->password);
		}
		buf[n++] = '@';
	}
	if (u->path[0]) {
		buf[n++] = '/';
		n += pct(buf + n, u->path + 1);
	} else {
		n += (size_t)sprintf(buf + n, bracket ? "[%s]:%u/" : "%s:%u/", u->host,
		                     (unsigned)u->port);
	}
	n += (size_t)sprintf(buf + n, "%s%s", u->starttls_no ? "?starttls=no" : "",
	                     u->rcpt[0] ? (u->starttls_no ? "&rcpt=" : "?rcpt=") : "");
	if (u->rcpt[0])
		n += pct(buf + n, u->rcpt);
	check(n < sizeof(buf), "buffer");
	buf[n] = '\0';
	if (url_parse(buf, &v, why, sizeof(why)) < 0) {
		fprintf(stderr, "url: round trip of %s refused: %s\n", buf, why);
		abort();
	}
	check(!strcmp(u->scheme, v.scheme) && !strcmp(u->user, v.user) &&
	          !strcmp(u->host, v.host) && u->port == v.port &&
	          u->has_password == v.has_password && !strcmp(u->password, v.password) &&
	          u->starttls_no == v.starttls_no && !strcmp(u->rcpt, v.rcpt) &&
	          !strcmp(u->path, v.path) && u->kind == v.kind && u->tls == v.tls,
	      "round trip changed a field");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), why[256];
	struct url u;

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	why[0] = '\0';
	if (url_parse(s, &u, why, sizeof(why)) == 0) {
		int mail = u.kind == URL_SMTP || u.kind == URL_LMTP;

		check(!strcmp(u.scheme, "imap") || !strcmp(u.scheme, "imaps") ||
		          !strcmp(u.scheme, "pop3") || !strcmp(u.scheme, "pop3s") ||
		          !strcmp(u.scheme, "smtp") || !strcmp(u.scheme, "smtps") ||
		          !strcmp(u.scheme, "lmtp"),
		      "scheme");
		check(mail || u.user[0] != '\0', "empty user");
		check(u.host[0] != '\0', "empty host");
		check(u.port != 0 || (u.kind == URL_LMTP && u.path[0] == '/'), "port 0");
		check(!u.starttls_no || !u.tls, "starttls=no with implicit TLS");
		check(!mail || u.rcpt[0], "mail URL without a recipient");
		check(mail || !u.rcpt[0], "recipient on a mailbox URL");
		check(!u.path[0] || u.kind == URL_LMTP, "socket path off lmtp");
		check(memchr(u.rcpt, 0, sizeof(u.rcpt)) && memchr(u.path, 0, sizeof(u.path)),
		      "rcpt or path not NUL-terminated");
		check(memchr(u.user, 0, sizeof(u.user)) && memchr(u.host, 0, sizeof(u.host)) &&
		          memchr(u.password, 0, sizeof(u.password)),
		      "field not NUL-terminated");
		check(u.has_password || !u.password[0], "password without has_password");
		roundtrip(&u);
	} else {
		check(why[0] != '\0' && memchr(why, 0, sizeof(why)), "refusal without a reason");
		/* the reason may quote other parts of the URL (always inside
		 * quotes), where the same text can appear by chance, and its fixed
		 * words may contain a short password: so only a password of 6 or
		 * more letters and digits is looked for, and a second occurrence
		 * in the URL, or in the fixed words, excuses it */
		check(!u.has_password || !alnum6(u.password) || !strstr(why, u.password) ||
		          count(s, u.password) >= 2 || strstr(REASON_WORDS, u.password),
		      "reason repeats the password");
	}
	free(s);
	return 0;
}
