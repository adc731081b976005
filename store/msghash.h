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

/* The line-end-blind digest: SHA-256 of the bytes with every CR left out
 * and a final LF added when the message does not end with one. What stays
 * equal after Courier-IMAP rewrote a message's line ends on APPEND (it
 * drops lone CRs, splits or folds runs of them, ends the message with a
 * line end), where the folded digest does not. For settling interrupted
 * APPENDs only: it is computed on demand, never on the copy path. */
struct msghash_lf {
	SHA256_CTX md;
	int last;		/* the last byte fed */
	int on;			/* begun, not freed since */
};
int msghash_lf_begin(struct msghash_lf *h);	/* 0 */
void msghash_lf_update(struct msghash_lf *h, const uint8_t *p, size_t n);
void msghash_lf_end(struct msghash_lf *h, uint8_t out[32]);
void msghash_lf_free(struct msghash_lf *h);

#endif
