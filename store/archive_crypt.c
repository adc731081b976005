/*
 * archive_crypt — KDF, AEAD and keyed MAC for the archive (see
 * archive_crypt.h). Every context is created once per key handle, so
 * sealing a frame or a record allocates nothing.
 */
#include "store/archive_crypt.h"

#include <errno.h>
#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "store/archive_fmt.h"

#define PARAMS_MAGIC "MFCR"
#define PARAMS_V1 1
/* What a hostile parameters record may make the KDF use at most. */
#define SCRYPT_MEM_MAX ((uint64_t)256 << 20)

struct acrypt {
	EVP_CIPHER_CTX *enc, *dec;
	EVP_MAC *mac;
	EVP_MAC_CTX *mctx;
};

int acrypt_params_new(struct acrypt_params *p, unsigned log2n, struct mf_error *err)
{
	memset(p, 0, sizeof(*p));
	p->kdf = ACRYPT_KDF_SCRYPT;
	p->aead = ACRYPT_AEAD_AES256GCM;
	p->log2n = (uint8_t)(log2n ? log2n : ACRYPT_LOG2N_DEFAULT);
	p->r = 8;
	p->p = ACRYPT_P_DEFAULT;
	if (p->log2n < ACRYPT_LOG2N_MIN || p->log2n > 20) {
		mf_err_set(err, -EINVAL, "scrypt N=2^%u out of range", p->log2n);
		return -EINVAL;
	}
	if (RAND_bytes(p->salt, sizeof(p->salt)) != 1) {
		mf_err_set(err, -EIO, "no random bytes for the salt");
		return -EIO;
	}
	return 0;
}

void acrypt_params_encode(const struct acrypt_params *p, uint8_t out[ACRYPT_PARAMS_LEN])
{
	memset(out, 0, ACRYPT_PARAMS_LEN);
	memcpy(out, PARAMS_MAGIC, 4);
	out[4] = PARAMS_V1;
	out[5] = p->kdf;
	out[6] = p->aead;
	out[7] = p->log2n;
	afmt_put32(out + 8, p->r);
	afmt_put32(out + 12, p->p);
	memcpy(out + 16, p->salt, ACRYPT_SALT);
	memcpy(out + 48, p->check, 32);
	afmt_put32(out + 84, afmt_crc32c(0, out, 84));
}

int acrypt_params_decode(const uint8_t *in, size_t n, struct acrypt_params *p, struct mf_error *err)
{
	uint64_t mem;

	if (n != ACRYPT_PARAMS_LEN || memcmp(in, PARAMS_MAGIC, 4) ||
	    afmt_get32(in + 84) != afmt_crc32c(0, in, 84)) {
		mf_err_set(err, -EIO, "encryption parameters record damaged");
		return -EIO;
	}
	if (in[4] != PARAMS_V1 || in[5] != ACRYPT_KDF_SCRYPT || in[6] != ACRYPT_AEAD_AES256GCM ||
	    afmt_get32(in + 80) != 0) {
		mf_err_set(err, -EINVAL,
		           "encryption parameters of an unknown kind (version %u, kdf %u, "
		           "cipher %u)",
		           in[4], in[5], in[6]);
		return -EINVAL;
	}
	p->kdf = in[5];
	p->aead = in[6];
	p->log2n = in[7];
	p->r = afmt_get32(in + 8);
	p->p = afmt_get32(in + 12);
	memcpy(p->salt, in + 16, ACRYPT_SALT);
	memcpy(p->check, in + 48, 32);
	if (p->log2n < ACRYPT_LOG2N_MIN || p->log2n > 24 || !p->r || p->r > 64 || !p->p ||
	    p->p > 16) {
		mf_err_set(err, -EINVAL, "scrypt parameters out of bounds (N=2^%u r=%u p=%u)",
		           p->log2n, p->r, p->p);
		return -EINVAL;
	}
	mem = (uint64_t)128 * p->r * (((uint64_t)1 << p->log2n) + 2 + p->p);
	if (mem > SCRYPT_MEM_MAX ||
	    (uint64_t)p->p * p->r * ((uint64_t)1 << p->log2n) > (1u << 24)) {
		mf_err_set(err, -EINVAL, "scrypt parameters too costly (N=2^%u r=%u p=%u)",
		           p->log2n, p->r, p->p);
		return -EINVAL;
	}
	return 0;
}

static int hkdf(const uint8_t master[32], const uint8_t *salt, size_t saltn, const char *info,
                uint8_t out[32])
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *k = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM prm[5], *q = prm;
	int ok;

	EVP_KDF_free(kdf);
	if (!k)
		return -ENOMEM;
	*q++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	*q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)master, 32);
	if (saltn)
		*q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltn);
	*q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info));
	*q = OSSL_PARAM_construct_end();
	ok = EVP_KDF_derive(k, out, 32, prm) == 1;
	EVP_KDF_CTX_free(k);
	return ok ? 0 : -EIO;
}

void acrypt_free(struct acrypt *c)
{
	if (!c)
		return;
	EVP_CIPHER_CTX_free(c->enc);
	EVP_CIPHER_CTX_free(c->dec);
	EVP_MAC_CTX_free(c->mctx);
	EVP_MAC_free(c->mac);
	free(c);
}

/* Data and MAC keys from master (salt binds them to this archive). */
static int keys_init(struct acrypt **out, const uint8_t master[32], const uint8_t *salt,
                     size_t saltn, uint8_t check[32], struct mf_error *err)
{
	uint8_t dk[32], mk[32];
	struct acrypt *c = calloc(1, sizeof(*c));
	OSSL_PARAM prm[2];
	int rc = -EIO;

	*out = NULL;
	if (!c) {
		mf_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	if (hkdf(master, salt, saltn, "mailferry archive v1 data key", dk) ||
	    hkdf(master, salt, saltn, "mailferry archive v1 index mac key", mk) ||
	    (check && hkdf(master, salt, saltn, "mailferry archive v1 key check", check)))
		goto fail;
	c->enc = EVP_CIPHER_CTX_new();
	c->dec = EVP_CIPHER_CTX_new();
	c->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	c->mctx = c->mac ? EVP_MAC_CTX_new(c->mac) : NULL;
	if (!c->enc || !c->dec || !c->mctx)
		goto fail;
	prm[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	prm[1] = OSSL_PARAM_construct_end();
	if (EVP_EncryptInit_ex(c->enc, EVP_aes_256_gcm(), NULL, dk, NULL) != 1 ||
	    EVP_DecryptInit_ex(c->dec, EVP_aes_256_gcm(), NULL, dk, NULL) != 1 ||
	    EVP_MAC_init(c->mctx, mk, sizeof(mk), prm) != 1)
		goto fail;
	rc = 0;
	*out = c;
fail:
	OPENSSL_cleanse(dk, sizeof(dk));
	OPENSSL_cleanse(mk, sizeof(mk));
	if (rc) {
		acrypt_free(c);
		mf_err_set(err, rc, "archive key setup failed (OpenSSL)");
	}
	return rc;
}

int acrypt_from_master(struct acrypt **out, const uint8_t master[32], struct mf_error *err)
{
	return keys_init(out, master, NULL, 0, NULL, err);
}

int acrypt_derive(struct acrypt **out, struct acrypt_params *p, const uint8_t *pass, size_t n,
                  int create, struct mf_error *err)
{
	uint8_t master[32], check[32];
	uint64_t N = (uint64_t)1 << p->log2n;
	uint64_t maxmem = (uint64_t)128 * p->r * (N + 2 + p->p) + (1u << 20);
	int rc;

	*out = NULL;
	if (!n || n > ACRYPT_PASS_MAX) {
		mf_err_set(err, -EINVAL, "passphrase empty or longer than %d bytes",
		           ACRYPT_PASS_MAX);
		return -EINVAL;
	}
	if (EVP_PBE_scrypt((const char *)pass, n, p->salt, sizeof(p->salt), N, p->r, p->p, maxmem,
	                   master, sizeof(master)) != 1) {
		mf_err_set(err, -ENOMEM, "scrypt failed (N=2^%u r=%u p=%u)", p->log2n, p->r, p->p);
		return -ENOMEM;
	}
	rc = keys_init(out, master, p->salt, sizeof(p->salt), check, err);
	OPENSSL_cleanse(master, sizeof(master));
	if (rc)
		return rc;
	if (create) {
		memcpy(p->check, check, 32);
	} else if (CRYPTO_memcmp(p->check, check, 32)) {
		acrypt_free(*out);
		*out = NULL;
		mf_err_set(err, -EACCES, "wrong passphrase (the key check does not match)");
		return -EACCES;
	}
	return 0;
}

int acrypt_seal(struct acrypt *c, const uint8_t *aad, size_t aadn, uint8_t *buf, size_t n)
{
	int l;

	if (n > INT_MAX || aadn > INT_MAX || RAND_bytes(buf, ACRYPT_NONCE) != 1)
		return -EIO;
	if (EVP_EncryptInit_ex(c->enc, NULL, NULL, NULL, buf) != 1 ||
	    (aadn && EVP_EncryptUpdate(c->enc, NULL, &l, aad, (int)aadn) != 1) ||
	    EVP_EncryptUpdate(c->enc, buf + ACRYPT_NONCE, &l, buf + ACRYPT_NONCE, (int)n) != 1 ||
	    EVP_EncryptFinal_ex(c->enc, buf + ACRYPT_NONCE + n, &l) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c->enc, EVP_CTRL_GCM_GET_TAG, ACRYPT_TAG, buf + ACRYPT_NONCE + n) !=
	        1)
		return -EIO;
	return 0;
}

int acrypt_open(struct acrypt *c, const uint8_t *aad, size_t aadn, uint8_t *buf, size_t len,
                size_t *n)
{
	size_t m;
	int l;

	if (len < ACRYPT_OVERHEAD || len - ACRYPT_OVERHEAD > INT_MAX || aadn > INT_MAX)
		return -EIO;
	m = len - ACRYPT_OVERHEAD;
	if (EVP_DecryptInit_ex(c->dec, NULL, NULL, NULL, buf) != 1 ||
	    (aadn && EVP_DecryptUpdate(c->dec, NULL, &l, aad, (int)aadn) != 1) ||
	    EVP_DecryptUpdate(c->dec, buf + ACRYPT_NONCE, &l, buf + ACRYPT_NONCE, (int)m) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c->dec, EVP_CTRL_GCM_SET_TAG, ACRYPT_TAG, buf + ACRYPT_NONCE + m) !=
	        1)
		return -EIO;
	if (EVP_DecryptFinal_ex(c->dec, buf + ACRYPT_NONCE + m, &l) != 1) {
		/* never hand out bytes that failed authentication */
		OPENSSL_cleanse(buf + ACRYPT_NONCE, m);
		return -EBADMSG;
	}
	*n = m;
	return 0;
}

int acrypt_mac(struct acrypt *c, uint8_t tag, const void *p, size_t n, uint8_t out[32])
{
	size_t outl;

	/* a NULL key re-initialises with the key set before (OpenSSL 3) */
	if (EVP_MAC_init(c->mctx, NULL, 0, NULL) != 1 || EVP_MAC_update(c->mctx, &tag, 1) != 1 ||
	    EVP_MAC_update(c->mctx, p, n) != 1 || EVP_MAC_final(c->mctx, out, &outl, 32) != 1 ||
	    outl != 32)
		return -EIO;
	return 0;
}
