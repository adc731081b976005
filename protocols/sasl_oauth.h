/*
 * sasl_oauth — the client messages of the two OAuth2 SASL mechanisms and
 * the server's error challenge:
 *   OAUTHBEARER (RFC 7628 §3.1): gs2 header "n,a=USER," then
 *     ^Ahost=H^Aport=P^Aauth=Bearer TOKEN^A^A;
 *   XOAUTH2 (Google's and Microsoft's older form):
 *     user=USER^Aauth=Bearer TOKEN^A^A.
 * Both are sent base64-encoded (IMAP AUTHENTICATE, RFC 3501 §6.2.2). When
 * the token is refused the server sends one challenge, base64 of a small
 * JSON object (RFC 7628 §3.2.2: status, scope, openid-configuration), which
 * sasl_oauth_error_parse() decodes and validates so that only a few
 * printable, bounded fields can reach a log line.
 *
 * Pure: no I/O, no allocation. The challenge arrives whole (one IMAP
 * continuation line, bounded by imap_parse), so its parser takes it whole.
 *
 * Not for: getting tokens (engine/cli/oauth_token), the IMAP exchange
 * (imap_client).
 */
#ifndef MF_SASL_OAUTH_H
#define MF_SASL_OAUTH_H

#include <stddef.h>
#include <sys/types.h>

/* Longest token accepted (a Microsoft 365 JWT is 1.5-3 KiB, Google's
 * about 200 bytes). */
#define SASL_OAUTH_TOKEN_MAX 8192
/* Longest user name in a message. */
#define SASL_OAUTH_USER_MAX 512
/* Base64 of the longest message, with its NUL. */
#define SASL_OAUTH_B64_MAX                                                                         \
	(((SASL_OAUTH_TOKEN_MAX + 3 * SASL_OAUTH_USER_MAX + 400) / 3 + 1) * 4 + 1)
/* Longest error challenge looked at (base64 characters). */
#define SASL_OAUTH_CHALLENGE_MAX 4096

/* 1 if tok[0..n) is a bearer token as RFC 6750 §2.1 defines it
 * (b64token: letters, digits, "-._~+/", then "=" padding), so it cannot
 * break the framing of either message. */
int sasl_oauth_token_ok(const char *tok, size_t n);

/* Writes the base64 of the message (NUL-terminated) to out. Returns its
 * length, -EINVAL if the token or the user name cannot be sent (not a
 * bearer token; a control character in the user), -ENOSPC if out is too
 * small or a field too long. The plain message is wiped before return. */
ssize_t sasl_xoauth2_encode(char *out, size_t cap, const char *user, const char *token);
ssize_t sasl_oauthbearer_encode(char *out, size_t cap, const char *user, const char *host,
                                unsigned port, const char *token);

/* The base64 of the one-byte %x01 that aborts a failed OAUTHBEARER
 * exchange (RFC 7628 §3.2.3). XOAUTH2 is answered with an empty line. */
#define SASL_OAUTHBEARER_ABORT "AQ=="

/* What a server said when it refused a token. Each field is printable
 * ASCII without quotes or backslashes, or empty when absent or unsafe. */
struct sasl_oauth_err {
	char status[48]; /* "invalid_token", "401", ... */
	char scope[96];
	char schemes[48];
};

/* Decodes the challenge b64[0..n) (strict base64) and reads the JSON
 * object inside. Returns 0 if it was a JSON object (fields filled as far
 * as they are safe), -EBADMSG otherwise (e is then all empty). */
int sasl_oauth_error_parse(const char *b64, size_t n, struct sasl_oauth_err *e);

/* Strict base64 decode (RFC 4648 §4, padding required, no whitespace):
 * the decoded length, or -EBADMSG, or -ENOSPC. */
ssize_t sasl_b64_decode(const char *in, size_t n, unsigned char *out, size_t cap);

#endif
