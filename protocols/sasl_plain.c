/*
 * sasl_plain — the PLAIN SASL client message (see sasl_plain.h).
 */
#include "protocols/sasl_plain.h"

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

ssize_t sasl_plain(char *out, size_t cap, const char *authzid, size_t zl, const char *authcid,
                   size_t cl, const char *passwd, size_t pl)
{
	unsigned char raw[SASL_PLAIN_MAX];
	size_t n = zl + cl + pl + 2;
	ssize_t rc;

	if (cap)
		out[0] = '\0';
	if (memchr(authzid, '\0', zl) || memchr(authcid, '\0', cl) || memchr(passwd, '\0', pl))
		return -EINVAL;
	/* each field alone first: their sum cannot wrap */
	if (zl > SASL_PLAIN_MAX || cl > SASL_PLAIN_MAX || pl > SASL_PLAIN_MAX ||
	    n > SASL_PLAIN_MAX || (n + 2) / 3 * 4 + 1 > cap)
		return -ENOSPC;
	memcpy(raw, authzid, zl);
	raw[zl] = '\0';
	memcpy(raw + zl + 1, authcid, cl);
	raw[zl + 1 + cl] = '\0';
	memcpy(raw + zl + 2 + cl, passwd, pl);
	rc = EVP_EncodeBlock((unsigned char *)out, raw, (int)n);
	OPENSSL_cleanse(raw, sizeof(raw));
	return rc;
}
