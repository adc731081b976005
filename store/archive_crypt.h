/*
 * archive_crypt — the archive's encryption at rest (issue 19 item 2): the
 * key derivation, the AEAD that seals pack frames and index values, and
 * the keyed MAC that index keys use instead of content hashes. Pure
 * functions over an opaque key handle; OpenSSL EVP underneath.
 *
 *   passphrase --scrypt(salt, N, r, p)--> master (32 bytes)
 *   master --HKDF-SHA256(salt, info)--> data key   (AES-256-GCM)
 *                                    -> mac key    (HMAC-SHA256)
 *                                    -> key check  (stored, compared)
 *
 * A sealed buffer is nonce(12) || ciphertext || tag(16), sealed and
 * opened in place. Nonces are 96 random bits per seal (RAND_bytes), not a
 * counter: the pack writer cuts back torn tails and aborted duplicates and
 * writes new frames at the same (pack, offset) again, so a position-
 * derived nonce would repeat under one key with different plaintext. At
 * one frame per 256 KiB of mail, 2^32 seals (the NIST SP 800-38D bound for
 * random nonces, collision chance ~2^-33) is a petabyte per archive.
 *
 * The parameters record (ACRYPT_PARAMS_LEN bytes, stored unencrypted in
 * the index's meta database) holds the KDF parameters, the salt and the
 * key check; decoding it bounds everything a hostile archive could use to
 * make the KDF eat memory or time.
 *
 * Not for: where the sealed bytes live (archive*.c), reading passphrase
 * files (engine/cli/archive_cmd.c).
 */
#ifndef MF_ARCHIVE_CRYPT_H
#define MF_ARCHIVE_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/err.h"

#define ACRYPT_NONCE 12
#define ACRYPT_TAG 16
#define ACRYPT_OVERHEAD (ACRYPT_NONCE + ACRYPT_TAG)
#define ACRYPT_SALT 32
#define ACRYPT_PARAMS_LEN 88
#define ACRYPT_PASS_MAX 4096

#define ACRYPT_KDF_SCRYPT 1
#define ACRYPT_AEAD_AES256GCM 1
/* New archives: N = 16384, r = 8, p = 2: the work of N = 2^15 with p = 1
 * (~0.1 s) in a 16 MiB working set (OpenSSL runs the p lanes one after the
 * other in one V array), so an encrypted backup stays under the 32 MiB
 * peak RSS goal; N = 2^15, p = 1 (32 MiB) put it at ~39 MiB. Existing
 * archives keep the parameters they were created with. */
#define ACRYPT_LOG2N_DEFAULT 14
#define ACRYPT_P_DEFAULT 2
#define ACRYPT_LOG2N_MIN 10 /* tests only; decoding refuses less */

struct acrypt_params {
	uint8_t kdf;   /* ACRYPT_KDF_SCRYPT */
	uint8_t aead;  /* ACRYPT_AEAD_AES256GCM */
	uint8_t log2n; /* scrypt N = 2^log2n */
	uint32_t r, p;
	uint8_t salt[ACRYPT_SALT];
	uint8_t check[32];
};

struct acrypt;

/* New parameters for a new archive: random salt; log2n 0 means default. */
int acrypt_params_new(struct acrypt_params *p, unsigned log2n, struct mf_error *err);
void acrypt_params_encode(const struct acrypt_params *p, uint8_t out[ACRYPT_PARAMS_LEN]);
/* 0, -EIO (damaged), -EINVAL (unknown KDF/AEAD, or bounds a sane writer
 * never uses). */
int acrypt_params_decode(const uint8_t *in, size_t n, struct acrypt_params *p,
                         struct mf_error *err);

/* Derives the keys from pass. With create, fills p->check; otherwise
 * compares it: -EACCES on a wrong passphrase. */
int acrypt_derive(struct acrypt **out, struct acrypt_params *p, const uint8_t *pass, size_t n,
                  int create, struct mf_error *err);
/* Keys from a 32-byte master directly (tests, the fuzzer). */
int acrypt_from_master(struct acrypt **out, const uint8_t master[32], struct mf_error *err);
void acrypt_free(struct acrypt *c);

/* buf holds n plaintext bytes at buf + ACRYPT_NONCE; writes the nonce in
 * front and the tag after: n + ACRYPT_OVERHEAD bytes in all. */
int acrypt_seal(struct acrypt *c, const uint8_t *aad, size_t aadn, uint8_t *buf, size_t n);
/* Opens len sealed bytes in place: the plaintext is at buf + ACRYPT_NONCE,
 * *n bytes. -EBADMSG if it fails authentication (tampered with or
 * damaged), -EIO if too short. */
int acrypt_open(struct acrypt *c, const uint8_t *aad, size_t aadn, uint8_t *buf, size_t len,
                size_t *n);
/* HMAC-SHA256 under the mac key, domain-separated by a one-byte tag. */
int acrypt_mac(struct acrypt *c, uint8_t tag, const void *p, size_t n, uint8_t out[32]);

#endif
