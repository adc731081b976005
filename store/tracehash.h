/*
 * tracehash — the folded digests (msghash.h) a delivered message may have
 * had before the delivering server put its trace fields on top.
 *
 * A message delivered by LMTP or SMTP and read back over IMAP starts with
 * fields the servers on the way added (RFC 5321 §4.4: Return-Path,
 * Received; Dovecot's and Postfix's Delivered-To, X-Original-To). What we
 * sent starts at one of the header lines of that leading block: a digest
 * is begun at every field start while every field so far is a trace
 * field (the first other field, or the header's end, is the last start),
 * at most TRACEHASH_MAX of them. A message sent without a final line end
 * gets one from a server that takes it by DATA (RFC 5321 §4.1.1.4), so
 * each start yields a second digest, without the final CRLF, when the
 * delivered message ends in one.
 *
 * Incremental and pure: fed whatever bytes arrived, in any split; no I/O,
 * no allocation. Fuzzed by tests/fuzz/fuzz_tracehash.c.
 *
 * Not for: deciding which digest stands for which sent message (settle).
 */
#ifndef MF_TRACEHASH_H
#define MF_TRACEHASH_H

#include <stddef.h>
#include <stdint.h>

#include "store/msghash.h"

/* Starts a delivered message may have (servers add two to four fields; a
 * relay on the way as many again; the original may carry its own). */
#define TRACEHASH_MAX 12
/* A field name longer than this is no trace field. */
#define TRACEHASH_NAME_MAX 15

struct tracehash {
	struct msghash h[TRACEHASH_MAX];
	uint64_t start[TRACEHASH_MAX]; /* each digest's first byte (offset) */
	unsigned n;                    /* digests begun */
	uint64_t off;                  /* bytes seen */
	uint8_t tail[2];               /* the last bytes seen, not fed yet */
	unsigned ntail;
	int st;    /* private: where in the header block */
	int block; /* starts may still come */
	char name[TRACEHASH_NAME_MAX + 1];
	unsigned nname;
};

void tracehash_begin(struct tracehash *t);
void tracehash_update(struct tracehash *t, const uint8_t *p, size_t n);
/* The digests (folded, as msghash_end's), at most 2 * TRACEHASH_MAX into
 * out; returns how many. Which start each came from is of no concern. */
size_t tracehash_end(struct tracehash *t, uint8_t out[][32]);
/* Wipes it (the digests' state). */
void tracehash_free(struct tracehash *t);

/* 1 if the field name (n bytes, without the colon) is a trace field. */
int tracehash_is_trace(const char *name, size_t n);

#endif
