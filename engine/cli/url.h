/*
 * url — endpoint URLs as the command line takes them:
 * imap[s]://user[:password]@host[:port][/][?starttls=no], pop3[s]://... the
 * same, smtp[s]://[user[:password]@]host[:port]?rcpt=ADDR[&starttls=no],
 * lmtp://host[:port]?rcpt=ADDR and lmtp:///path/to/socket?rcpt=ADDR.
 *
 * Pure: no I/O, no allocation; fuzzed by tests/fuzz/fuzz_url.c.
 * Not for: deciding TLS policy or reading passwords (cli).
 */
#ifndef MF_URL_H
#define MF_URL_H

#include <stddef.h>
#include <stdint.h>

enum url_kind { URL_IMAP, URL_POP3, URL_SMTP, URL_LMTP };

struct url {
	char scheme[8];     /* "imap", "imaps", "pop3", ... lower case */
	enum url_kind kind;
	int tls;            /* implicit TLS: imaps, pop3s, smtps */
	char user[256];     /* percent-decoded; may be empty for smtp and lmtp */
	char host[256];     /* without the brackets of an IPv6 literal */
	uint16_t port;      /* never 0: the scheme's default if none given */
	char password[256]; /* only if given in the URL (warned about) */
	int has_password;
	int starttls_no;
	char rcpt[513];     /* smtp, lmtp: the recipient (?rcpt=, percent-decoded) */
	char path[108];     /* lmtp:///path: a UNIX socket (host is "localhost") */
};

/* Parses s (NUL-terminated). 0, or -1 with a one-line reason in why that
 * never contains the password. */
int url_parse(const char *s, struct url *u, char *why, size_t whycap);
/* s as it may be shown: a password between "://user:" and the last '@'
 * of the authority becomes "***" (s need not parse). */
void url_redact(const char *s, char *out, size_t cap);

#endif
