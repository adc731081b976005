/*
 * archive_int — the archive handle and the helpers the archive*.c files
 * share (see archive.c for which owns what). Not a public API.
 */
#ifndef MF_ARCHIVE_INT_H
#define MF_ARCHIVE_INT_H

#include <lmdb.h>
#define ZDICT_STATIC_LINKING_ONLY
#include <zdict.h>
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "store/archive.h"
#include "store/lmdb_code.h"
#include "store/archive_crypt.h"
#include "store/msghash.h"
#include "store/state.h"

#define ARC_FORMAT 1
#define ARC_DICTS_MAX 16
#define ARCHIVE_PACK_MAX ((uint64_t)256 << 20)
#define ARCHIVE_COMMIT_BYTES ((uint64_t)32 << 20)
#define ARCHIVE_COMMIT_OPS 2000
#define ARCHIVE_SAMPLE_CAP ((size_t)1 << 20)
#define ARCHIVE_SAMPLE_MSG 8192
#define ARCHIVE_SAMPLE_N 4096
#define ARCHIVE_SAMPLE_GOAL 400
#define ARCHIVE_DICT_SIZE (64u << 10)

struct arc_dict {
	uint32_t ver;
	uint8_t *bytes;
	size_t n;
	ZSTD_CDict *cd;
	int cd_level;
	ZSTD_DDict *dd;
};

/* One decompressed frame and the pack descriptor it came from. The handle
 * has one and every archive_reader its own, so readers streaming side by
 * side from one handle (restore over several connections, one thread) do
 * not take each other's frame away. Buffers grow to the frames read. */
struct arc_fcache {
	ZSTD_DCtx *dctx;
	uint8_t *raw, *comp;
	size_t rawcap, compcap, rawn;
	int valid, fd;
	uint32_t pack, fdpack;
	uint64_t off, next; /* the frame's offset; the next frame's */
	unsigned gen;       /* archive.rgen when loaded */
};

struct archive {
	char *dir;
	unsigned flags;
	int lock_fd;
	MDB_env *env;
	MDB_dbi meta, objects, accts, mbnames, mboxes, runs, runmb, msgs, packs_db, dicts_db;
	MDB_txn *txn;
	int commit_nometasync; /* the next commit skips LMDB's meta sync */
	int opened;            /* archive_open succeeded: a close seals the index */
	uint64_t dirty;        /* index writes since the last commit */
	struct mf_error lost;  /* set while uncommitted writes were dropped */
	struct archive_tune tune;

	/* the pack being written */
	int wfd, wnew;
	uint32_t wpack;
	uint64_t wlen, wcommitted;
	uint8_t *fbuf; /* the open frame's raw bytes */
	size_t fn;
	uint32_t fdict;  /* the open frame's dictionary */
	ZSTD_CCtx *cctx; /* compressing without helpers */
	/* frames in flight (archive_zpool.c): fseq is the open frame's
	 * sequence number, zwrite the next one to be written; object records
	 * whose frame is not written yet wait in pend */
	struct arc_zpool *zp;
	uint64_t fseq, zwrite;
	struct arc_pend *pend;
	size_t npend, cappend;

	/* the message being written */
	int in_msg;
	uint32_t m_pack, m_skip, m_frames, m_dict;
	uint64_t m_off, m_size;
	uint64_t m_seq;  /* the frame its first byte is in */
	int m_off_known; /* that frame is written: m_off is its offset */
	size_t m_sampn0;
	struct msghash h;
	int m_hashed; /* archive_msg_begin_hashed: m_hash is given */
	uint8_t m_hash[32];

	/* reading: the handle's own frame cache (archive_get, verify, prune);
	 * each archive_reader has another. rgen moves when frames already
	 * read may have changed on disk (a cut-off tail, a pack removed):
	 * every cache loaded before is stale then. */
	struct arc_fcache rc;
	unsigned rgen;

	/* dictionaries and training samples */
	struct arc_dict dicts[ARC_DICTS_MAX];
	unsigned ndicts;
	uint32_t dict_cur;
	uint8_t *samp;
	size_t sampn, *sampsz;
	unsigned nsamp, samp_goal;
	uint64_t stored;      /* messages stored through this handle */
	uint64_t sample_from; /* sampling starts again at this count */

	/* data.mdb's mapping, let go of now and then (arc_map_release) */
	void *map_base;
	size_t map_len;
	unsigned map_reads;

	/* committed runs (sorted) and the run this handle has open */
	uint32_t *runs_ok;
	size_t nruns, capruns;
	uint32_t open_run;

	/* encryption at rest: NULL for a plain archive */
	struct acrypt *crypt;
	uint8_t *recbuf; /* one index value opened (ARC_RECBUF bytes) */
	int fresh;       /* this open created the archive */
};

#define ARC_REC_MAX (AFMT_REC_MAX + ACRYPT_OVERHEAD)
#define ARC_RECBUF (AFMT_DICT_MAX + 64 + ACRYPT_OVERHEAD)

/* Index values: sealed with the data key unless the archive is plain or
 * db is meta (format, encryption parameters, id counters stay readable).
 * The associated data is the record's kind and key. */
int arc_rec_open(struct archive *a, MDB_dbi db, enum afmt_kind kind, const void *k, size_t klen,
                 const void *v, size_t vlen, struct afmt_rec *r, struct mf_error *err);
/* Encodes (and seals) r into out (cap >= ARC_REC_MAX); 0 on failure. */
size_t arc_rec_seal(struct archive *a, MDB_dbi db, enum afmt_kind kind, const void *k, size_t klen,
                    const struct afmt_rec *r, uint8_t *out, size_t cap);
/* Seals an encoded value in place (buf + ACRYPT_NONCE holds n bytes). */
int arc_val_seal(struct archive *a, enum afmt_kind kind, const void *k, size_t klen, uint8_t *buf,
                 size_t n);
/* The objects key of a content hash: the hash, or HMAC(mac key, hash). */
int arc_objkey(struct archive *a, const uint8_t hash[32], uint8_t key[32], struct mf_error *err);

int arc_lmdb_fail(struct archive *a, int rc, struct mf_error *err, const char *what);
int arc_txn(struct archive *a, struct mf_error *err);
int arc_get(struct archive *a, MDB_dbi db, enum afmt_kind kind, const void *k, size_t klen,
            struct afmt_rec *r, struct mf_error *err);
/* The object record of the message with this content hash, and its
 * objects key (arc_objkey); refused while a message is being written,
 * -ENOENT "message not in the archive". */
int arc_obj_find(struct archive *a, const uint8_t hash[32], uint8_t key[32], struct afmt_rec *rec,
                 struct mf_error *err);
int arc_put(struct archive *a, MDB_dbi db, enum afmt_kind kind, const void *k, size_t klen,
            const struct afmt_rec *r, struct mf_error *err);
int arc_del(struct archive *a, MDB_dbi db, const void *k, size_t klen, struct mf_error *err);
int arc_run_visible(const struct archive *a, uint32_t run);
/*
 * Whether a version written in run vr is part of the listing as of run:
 * any earlier run's, a run that never completed included, and run's own
 * while it is complete (or open). A killed run's versions are what it
 * saw of the source and committed (its flag changes, its expunges) before
 * the state, which is written after the archive, moved past them: the
 * next run does not see those changes again, so it must inherit them, or
 * an expunge seen by a killed run would stay listed in every later run.
 * A killed run itself is never listed (archive_run_latest, restore).
 */
int arc_version_counts(const struct archive *a, uint32_t vr, uint32_t run);
struct arc_dict *arc_dict_find(struct archive *a, uint32_t ver);
ZSTD_DDict *arc_dict_ddict(struct arc_dict *d);
void arc_pack_path(const struct archive *a, uint32_t pack, char *out, size_t cap);
/* A descriptor of pack to read from (the write pack's own, else the
 * cache's, which it keeps until another pack is wanted). */
int arc_fcache_fd(struct archive *a, struct arc_fcache *c, uint32_t pack, struct mf_error *err);
int arc_pack_fd(struct archive *a, uint32_t pack, struct mf_error *err);
void arc_fcache_init(struct arc_fcache *c);
void arc_fcache_free(struct arc_fcache *c);
int arc_frame_flush(struct archive *a, struct mf_error *err);
/* archive_zpool.c: the open frame's first n bytes become the next frame,
 * compressed (with cd, dictionary version dict, or none) and written in
 * sequence; arc_zp_reap writes the finished ones (all: every one, waiting). */
int arc_zp_submit(struct archive *a, size_t n, ZSTD_CDict *cd, uint32_t dict, struct mf_error *err);
int arc_zp_reap(struct archive *a, int all, struct mf_error *err);
void arc_zp_free(struct archive *a);
struct arc_pend;
int arc_pend_add(struct archive *a, const uint8_t key[32], const struct afmt_rec *r, uint64_t seq,
                 struct mf_error *err);
int arc_pend_has(const struct archive *a, const uint8_t key[32]);
/* archive_pack.c, for archive_zpool.c: a new pack; bytes at off of it */
int arc_pack_create(struct archive *a, struct mf_error *err);
int arc_pack_write(struct archive *a, const uint8_t *p, size_t n, uint64_t off);
/* Loads the frame at (pack, off) into c (nothing read if c holds it). */
int arc_frame_load(struct archive *a, struct arc_fcache *c, uint32_t pack, uint64_t off,
                   struct mf_error *err);
int arc_frame_decode(ZSTD_DCtx *dctx, struct acrypt *c, uint8_t *p, size_t n, uint32_t pack,
                     uint64_t off, const void *dict, size_t dictn, ZSTD_DDict *dd, uint8_t *raw,
                     size_t cap, size_t *rawn, size_t *used, struct mf_error *err);
/* key: the objects key (arc_objkey) the content must hash to. */
int arc_read_object(struct archive *a, const uint8_t key[32], const struct afmt_object *o,
                    archive_out_fn fn, void *ctx, struct mf_error *err);
void arc_map_release(struct archive *a);
int arc_counter_next(struct archive *a, const char *name, uint32_t *out, struct mf_error *err);
int arc_runs_add(struct archive *a, uint32_t run);
int arc_runs_load(struct archive *a, struct mf_error *err);
int arc_dicts_load(struct archive *a, struct mf_error *err);
int arc_packs_open(struct archive *a, struct mf_error *err);
int arc_maybe_commit(struct archive *a, struct mf_error *err);
struct archive_reader;
/* archive_reader_open for an object already looked up (archive_prune.c):
 * the reader keeps its own hash context, so the handle may write a copy
 * of the bytes (archive_msg_data) while they are read. */
int arc_reader_open_obj(struct archive *a, const uint8_t key[32], const struct afmt_object *o,
                        struct archive_reader *r, struct mf_error *err);
/* Drops objects no present version names (archive_ops.c). */
int arc_sweep_objects(struct archive *a, uint64_t *dropped, struct mf_error *err);
int arc_mbox_name(struct archive *a, uint32_t mbid, struct afmt_rec *r, struct mf_error *err);

#endif
