/*
 * state_int — what the files of the state share (state.c: records;
 * state_open.c: opening, locking, creating and resetting the environment):
 * the handle, the layout's constants and the transaction helpers. Private
 * to store/state*.c.
 */
#ifndef MF_STATE_INT_H
#define MF_STATE_INT_H

#include <lmdb.h>
#include <stdint.h>

#include "store/state.h"

#define STATE_FORMAT 1
#define STATE_REC_V1 1
#define STATE_KEY_MAX 511     /* LMDB's default maximum key size */
#define STATE_KEY_RAW_MAX 479 /* longer names are stored prefix + SHA-256 */
#define STATE_MSG_FIXED 100   /* message record without the flags bytes */
#define STATE_MBOX_FIXED 49   /* mailbox record without the two names */
#define STATE_MIB ((size_t)1 << 20)

struct state {
	MDB_env *env;
	MDB_dbi jobs, mbnames, mboxes, msgs;
	MDB_dbi uidls; /* (u32 job, u32 mbid, unique-id) -> u32 id (POP3 sources) */
	MDB_dbi filters; /* (u32 job, u32 mbid) -> v1, u64 filter id (selective copies) */
	MDB_txn *txn;          /* the open write transaction, or NULL */
	unsigned long gen;     /* bumped by every write: cursors must re-seek */
	unsigned long txn_gen; /* bumped when a transaction ends: cursors are gone */
	int lock_fd;
	size_t map_size;
	void *map_base;       /* data.mdb's mapping (map_find), or NULL */
	size_t map_len;
	uint64_t released_ms; /* when the map's pages were last let go */
	struct mf_error lost; /* set while uncommitted writes were dropped */
	char *dir;
};

static const uint8_t KEY_FORMAT[] = {0, 'f'};
static const uint8_t KEY_NEXT_JOB[] = {0, 'j'};

static inline void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Ends the write transaction (committed or aborted elsewhere). */
void st_txn_end(struct state *s);
/* An LMDB failure: the transaction is aborted, the error kept (state.c). */
int st_lmdb_fail(struct state *s, int rc, struct mf_error *err, const char *what);
/* The write transaction, begun if none is open. */
int st_txn_need(struct state *s, struct mf_error *err);
/* Finds data.mdb's mapping, for releasing its pages. */
void st_map_find(struct state *s);
int st_db_get(struct state *s, MDB_dbi dbi, const void *k, size_t klen, MDB_val *v,
              struct mf_error *err, const char *what);
int st_db_put(struct state *s, MDB_dbi dbi, const void *k, size_t klen, const void *v,
              size_t vlen, struct mf_error *err, const char *what);

#endif
