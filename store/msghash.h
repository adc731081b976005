/*
 * msghash — a message's content identity, computed while it streams past.
 *
 * Two SHA-256 digests (OpenSSL's SHA256_*): the exact bytes, and the bytes with
 * every run of CRs before an LF folded to one CR. Servers such as Dovecot
 * rewrite bare CRs on APPEND, so the folded digest is what recognises a
 * message again on a destination; the exact one is what the state keys
 * content by. Not for: anything that changes message bytes.
 */
#ifndef MF_MSGHASH_H
#define MF_MSGHASH_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/sha.h>

struct msghash {
	SHA256_CTX exact, folded;
	uint64_t cr;		/* CRs seen but not yet fed to a digest (lazy: to
				 * either; else to the folded one) */
	int lazy;		/* nothing folded yet: exact serves for both */
};

int msghash_init(struct msghash *h);	/* 0 or -ENOMEM */
void msghash_free(struct msghash *h);
void msghash_begin(struct msghash *h);
void msghash_update(struct msghash *h, const uint8_t *p, size_t n);
/* Either output may be NULL. */
void msghash_end(struct msghash *h, uint8_t exact[32], uint8_t folded[32]);

#endif
