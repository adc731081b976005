/*
 * fuzz_url — libFuzzer target for engine/url.c.
 *
 * The input (up to its first NUL) is parsed as an endpoint URL. What is
 * accepted must be whole (scheme imap/imaps/pop3/pop3s, a user, a host, a port) and
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
	"(this "                                                                                   \
	"command takes imap://, imaps://, pop3:// or pop3s://) no user name (expected "            \
	"imap://user@host) bad user "                                                              \
	"name "                                                                                    \
	"bad password in URL bad IPv6 host no host bad port unexpected \"\" after the host "       \
	"unknown "                                                                                 \
	"URL parameter \"\" (known: starttls=no for imap:// and pop3://)"

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
	n += pct(buf + n, u->user);
	if (u->has_password) {
		buf[n++] = ':';
		n += pct(buf + n, u->password);
	}
	n += (size_t)sprintf(buf + n, bracket ? "@[%s]:%u/%s" : "@%s:%u/%s", u->host,
	                     (unsigned)u->port, u->starttls_no ? "?starttls=no" : "");
	check(n < sizeof(buf), "buffer");
	if (url_parse(buf, &v, why, sizeof(why)) < 0) {
		fprintf(stderr, "url: round trip of %s refused: %s\n", buf, why);
		abort();
	}
	check(!strcmp(u->scheme, v.scheme) && !strcmp(u->user, v.user) &&
	          !strcmp(u->host, v.host) && u->port == v.port &&
	          u->has_password == v.has_password && !strcmp(u->password, v.password) &&
	          u->starttls_no == v.starttls_no,
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
		check(!strcmp(u.scheme, "imap") || !strcmp(u.scheme, "imaps") ||
		          !strcmp(u.scheme, "pop3") || !strcmp(u.scheme, "pop3s"),
		      "scheme");
		check(u.user[0] != '\0', "empty user");
		check(u.host[0] != '\0', "empty host");
		check(u.port != 0, "port 0");
		check(!u.starttls_no || !strcmp(u.scheme, "imap") || !strcmp(u.scheme, "pop3"),
		      "starttls=no on imaps or pop3s");
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
