/*
 * fuzz_sasl_oauth — libFuzzer target for protocols/sasl_oauth.c.
 *
 * 1. The input, base64-encoded, is a server's error challenge (so the JSON
 *    reader sees arbitrary bytes); the input as it is is one too (so the
 *    base64 decoder does). Whatever is accepted must leave only printable
 *    ASCII without quotes or backslashes in the fields, NUL-terminated; a
 *    refusal leaves them empty.
 * 2. The input split at its first newline is a user and a token: when an
 *    encoder accepts them, its base64 must decode to exactly the message
 *    RFC 7628 §3.1 (OAUTHBEARER) or XOAUTH2 defines.
 */
#include "protocols/sasl_oauth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "sasl_oauth: %s\n", what);
		abort();
	}
}

static void field_ok(const char *f, size_t cap)
{
	check(memchr(f, 0, cap) != NULL, "field not terminated");
	for (; *f; f++)
		check(*f >= 32 && *f < 127 && *f != '"' && *f != '\\', "unsafe byte in a field");
}

static void challenge(const char *b64, size_t n)
{
	struct sasl_oauth_err e;
	int rc = sasl_oauth_error_parse(b64, n, &e);

	field_ok(e.status, sizeof(e.status));
	field_ok(e.scope, sizeof(e.scope));
	field_ok(e.schemes, sizeof(e.schemes));
	check(rc == 0 || rc == -EBADMSG, "unexpected return");
	if (rc)
		check(!e.status[0] && !e.scope[0] && !e.schemes[0], "fields left after a refusal");
}

static void encoders(const uint8_t *data, size_t size)
{
	static char out[SASL_OAUTH_B64_MAX];
	static unsigned char dec[SASL_OAUTH_B64_MAX];
	static char want[SASL_OAUTH_B64_MAX];
	char user[SASL_OAUTH_USER_MAX + 2], tok[SASL_OAUTH_TOKEN_MAX + 2];
	const uint8_t *nl = memchr(data, '\n', size);
	size_t ul, tl, wl = 0;
	ssize_t n, d;

	if (!nl)
		return;
	ul = (size_t)(nl - data);
	tl = size - ul - 1;
	if (ul >= sizeof(user) || tl >= sizeof(tok) || memchr(data, 0, size))
		return;
	memcpy(user, data, ul);
	user[ul] = '\0';
	memcpy(tok, nl + 1, tl);
	tok[tl] = '\0';

	n = sasl_xoauth2_encode(out, sizeof(out), user, tok);
	if (n >= 0) {
		check(sasl_oauth_token_ok(tok, tl), "accepted a token that is not a bearer token");
		wl = (size_t)snprintf(want, sizeof(want), "user=%s\001auth=Bearer %s\001\001", user,
		                      tok);
		d = sasl_b64_decode(out, (size_t)n, dec, sizeof(dec));
		check(d == (ssize_t)wl && !memcmp(dec, want, wl), "XOAUTH2 message differs");
	} else {
		check(n == -EINVAL || n == -ENOSPC, "XOAUTH2 return");
	}
	n = sasl_oauthbearer_encode(out, sizeof(out), user, "h", 993, tok);
	if (n >= 0) {
		wl = (size_t)snprintf(want, sizeof(want), "n,a=");
		for (const char *p = user; *p; p++)
			wl += (size_t)snprintf(want + wl, sizeof(want) - wl, "%s",
			                       *p == ','   ? "=2C"
			                       : *p == '=' ? "=3D"
			                                   : (char[2]){*p, 0});
		wl += (size_t)snprintf(want + wl, sizeof(want) - wl,
		                       ",\001host=h\001port=993\001auth=Bearer %s\001\001", tok);
		d = sasl_b64_decode(out, (size_t)n, dec, sizeof(dec));
		check(d == (ssize_t)wl && !memcmp(dec, want, wl), "OAUTHBEARER message differs");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char b64[SASL_OAUTH_CHALLENGE_MAX * 2];

	if (size <= SASL_OAUTH_CHALLENGE_MAX) {
		int n = EVP_EncodeBlock((unsigned char *)b64, data, (int)size);

		challenge(b64, (size_t)n);
		challenge((const char *)data, size);
	}
	encoders(data, size);
	return 0;
}
