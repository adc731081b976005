/*
 * archive — a content-addressed, compressed, deduplicated message archive
 * in one directory (DESIGN §4, issue 19); the store that `backup` writes,
 * `restore` and `export` read and `verify` checks.
 *
 *   ARCHIVE/lock               flock: one writer, or readers
 *   ARCHIVE/packs/pack-N.mfp   append-only packs of zstd frames
 *   ARCHIVE/index/data.mdb     LMDB: content hash -> where, runs, mailboxes,
 *                              per-UID versions, dictionaries
 *
 * Optionally encrypted (archive_open_secret): frames, index values and
 * dictionaries sealed with AES-256-GCM, index keys keyed MACs instead of
 * content hashes and names (see archive_crypt.h and README).
 *
 * A message is streamed in (archive_msg_begin/_data/_end) and identified by
 * its SHA-256 (store/msghash.h, exact bytes); the same content stored
 * twice is kept once. Its bytes are never altered. Messages are packed
 * into frames of up to 256 KiB raw, each one zstd frame (checksummed),
 * compressed with the archive's current trained dictionary; a message is
 * read back by decompressing only the frames it lies in. Memory stays
 * bounded whatever a message's size.
 *
 * Backup runs: a run belongs to one account; within a run the caller names
 * each mailbox (archive_mbox_begin) and each message's UID with its flags,
 * keywords, INTERNALDATE and hash (archive_uid_put). Only changes are
 * written (a new version keyed by run), expunges are marked deleted as of
 * the run (archive_uid_delete), so the state of any mailbox "as of" any
 * committed run can be listed (archive_uid_each). A run that never
 * committed (a crash) is invisible to readers.
 *
 * Durability: pack bytes are fdatasync'ed before the LMDB transaction that
 * names them commits; on open the last pack is cut back to its committed
 * length, so a torn tail is dropped, and nothing in the index points past
 * it. Everything read back (index records, frame headers, frames) is
 * checked before use.
 *
 * One thread at a time (callers serialize; backup's writer thread and loop
 * take turns under a lock); one open message at a time per handle. Frames
 * may be compressed on the handle's own helper threads (archive_zpool.c,
 * archive_tune.zthreads), invisible to callers.
 * Not for: talking to servers (the pipeline), Maildir/mbox (export.c).
 */
#ifndef MF_ARCHIVE_H
#define MF_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/err.h"
#include "store/archive_fmt.h"

struct archive;

#define ARCHIVE_OPEN_CREATE 1u /* create the archive if it is not there */
#define ARCHIVE_OPEN_RDONLY 2u /* shared lock, nothing written or truncated */
/* walk every page of the index even when its seal matches (verify; see
 * store/state_check.h) */
#define ARCHIVE_OPEN_WALK 4u

/* IMAP system flags, as bits. */
#define ARCHIVE_F_SEEN 1u
#define ARCHIVE_F_ANSWERED 2u
#define ARCHIVE_F_FLAGGED 4u
#define ARCHIVE_F_DELETED 8u
#define ARCHIVE_F_DRAFT 16u
/* Their names: archive_flag_names[i] is the flag of bit 1u << i. */
#define ARCHIVE_F_COUNT 5
extern const char *const archive_flag_names[ARCHIVE_F_COUNT];

struct archive_msgmeta {
	uint8_t hash[32];               /* archive_msg_end's hash of the content */
	uint64_t size;                  /* raw bytes */
	int64_t internaldate;           /* unix seconds */
	uint32_t flags;                 /* ARCHIVE_F_* */
	char keywords[AFMT_KW_MAX + 1]; /* space-separated IMAP keywords */
};

struct archive_run_info {
	uint32_t id;
	uint64_t time; /* unix seconds, as given to run_begin */
	int committed;
	char account[AFMT_ACCOUNT_MAX + 1];
};

struct archive_mbox_info {
	uint32_t mbid;
	uint32_t uidvalidity;
	const char *name; /* wire-form name bytes, NUL-terminated, nlen long */
	size_t nlen;
};

/* Compression knobs (defaults: level 3, 256 KiB frames, dictionaries on:
 * 0.199 of raw on the bench corpus without attachments, ~100 MB/s). */
struct archive_tune {
	int level;
	unsigned frame_raw; /* raw bytes per frame, 4 KiB .. AFMT_FRAME_RAW_MAX */
	int no_dict;
	uint64_t pack_max; /* a pack is closed past this (0: 256 MiB) */
	/* threads compressing frames beside the writer (archive_zpool.c):
	 * 0 two on 4 CPUs or more, else none; -1 none (the writer
	 * compresses each frame itself); N that many, at most 4 */
	int zthreads;
};

int archive_open(struct archive **out, const char *dir, unsigned flags, struct mf_error *err);

/*
 * Encryption at rest (store/archive_crypt.h). An archive is created
 * encrypted (encrypt set, with a passphrase) or not, and stays so. An
 * encrypted archive opens only with its passphrase: without one -EACCES
 * ("is encrypted"), with a wrong one -EACCES ("wrong passphrase"). A
 * passphrase for a plain archive is not used (a warning is logged);
 * encrypt for an existing plain archive is refused (-EINVAL).
 */
struct archive_secret {
	const uint8_t *pass; /* passphrase bytes (not NUL-terminated), or NULL */
	size_t passlen;
	int encrypt;           /* create a new archive encrypted */
	unsigned scrypt_log2n; /* for a new archive: 0 = 15 (tests use less) */
};
int archive_open_secret(struct archive **out, const char *dir, unsigned flags,
                        const struct archive_secret *s, struct mf_error *err);
/* 1 if the archive is encrypted. */
int archive_encrypted(const struct archive *a);
/* Drops what is not committed (a run in progress stays uncommitted). */
void archive_close(struct archive *a);
void archive_set_tune(struct archive *a, const struct archive_tune *t);
/* Makes everything written so far durable: the open frame is written,
 * packs are synced, then the index commits. */
int archive_commit(struct archive *a, struct mf_error *err);

/* ---- content ---- */
int archive_msg_begin(struct archive *a, struct mf_error *err);
/* The same for a caller that hashed the bytes it is about to stream
 * already (msghash's exact SHA-256 of exactly those bytes): hash is taken
 * as the message's identity and the bytes are not hashed again (verify
 * and every read still re-hash what they read). */
int archive_msg_begin_hashed(struct archive *a, const uint8_t hash[32], struct mf_error *err);
int archive_msg_data(struct archive *a, const void *p, size_t n, struct mf_error *err);
/* hash (and *size) of what was streamed; *dup = 1 if it was stored already. */
int archive_msg_end(struct archive *a, uint8_t hash[32], uint64_t *size, int *dup,
                    struct mf_error *err);
void archive_msg_abort(struct archive *a);
/* 1 stored, 0 not, negative on error. */
int archive_has(struct archive *a, const uint8_t hash[32], struct mf_error *err);
/* Streams the message out in chunks (fn returning non-zero stops with that
 * value). Every frame is checked and the bytes re-hashed: -EIO (named in
 * err) if they are not the message's. -ENOENT if the hash is not stored. */
typedef int (*archive_out_fn)(void *ctx, const uint8_t *p, size_t n);
int archive_get(struct archive *a, const uint8_t hash[32], archive_out_fn fn, void *ctx,
                struct mf_error *err);

/* ---- runs, mailboxes, UIDs ---- */
int archive_run_begin(struct archive *a, const char *account, uint64_t time, uint32_t *run,
                      struct mf_error *err);
/* Marks the run complete and commits. */
int archive_run_commit(struct archive *a, uint32_t run, struct mf_error *err);
/* Every run, ascending (committed or not). */
int archive_run_each(struct archive *a, int (*fn)(void *ctx, const struct archive_run_info *r),
                     void *ctx, struct mf_error *err);
/* The latest committed run (of account, or of any if NULL): -ENOENT if none. */
int archive_run_latest(struct archive *a, const char *account, uint32_t *run, struct mf_error *err);

/* The latest committed run of account (NULL: any) at or before time
 * (restore --as-of DATE): -ENOENT if none. */
int archive_run_asof(struct archive *a, const char *account, uint64_t time, uint32_t *run,
                     struct mf_error *err);

/* The mailbox exists in this run with this UIDVALIDITY; *mbid names it. */
int archive_mbox_begin(struct archive *a, uint32_t run, const char *name, size_t nlen,
                       uint32_t uidvalidity, uint32_t *mbid, struct mf_error *err);
/* Mailboxes of a run (as the run saw them), in mbid order; -ENOENT if the
 * run is not a complete one (or this handle's open run). */
int archive_mbox_each(struct archive *a, uint32_t run,
                      int (*fn)(void *ctx, const struct archive_mbox_info *mb), void *ctx,
                      struct mf_error *err);
/* Records UID's state in this run; writes only if it differs from the
 * latest committed state (so a no-change run writes nothing per message).
 * m->hash must be stored (archive_msg_end) : -ENOENT otherwise. */
int archive_uid_put(struct archive *a, uint32_t run, uint32_t mbid, uint32_t uid,
                    const struct archive_msgmeta *m, struct mf_error *err);
/* The source expunged UID: deleted as of this run. */
int archive_uid_delete(struct archive *a, uint32_t run, uint32_t mbid, uint32_t uid,
                       struct mf_error *err);
/* UID's state as of run: 0, or -ENOENT (never there or deleted by then). */
int archive_uid_get(struct archive *a, uint32_t run, uint32_t mbid, uint32_t uid,
                    struct archive_msgmeta *m, struct mf_error *err);
/* The mailbox as of run (present messages, UID order). fn non-zero stops.
 * m is NULL for a UID whose latest version record there is damaged (what
 * it held is unknown; archive_verify names it too). */
int archive_uid_each(struct archive *a, uint32_t run, uint32_t mbid,
                     int (*fn)(void *ctx, uint32_t uid, const struct archive_msgmeta *m), void *ctx,
                     struct mf_error *err);

/* ---- checks, sizes, pruning ---- */
struct archive_problem {
	uint32_t run;        /* 0 if the problem is not tied to a run */
	const char *mailbox; /* NULL if unknown */
	size_t mlen;
	uint32_t uid;
	const uint8_t *hash; /* NULL if unknown */
	const char *what;
};
/* Re-reads every stored message, re-hashes it, and checks every version
 * record of every committed run against it; fn is called per problem
 * (each damaged or missing message of each run that names it). *problems
 * is their count. Returns 0 when the check ran (problems or not). */
int archive_verify(struct archive *a, int (*fn)(void *ctx, const struct archive_problem *p),
                   void *ctx, uint64_t *problems, struct mf_error *err);

struct archive_stats {
	uint64_t objects, raw_bytes; /* distinct messages stored */
	uint64_t stored_bytes;       /* committed pack bytes */
	uint64_t versions;           /* per-UID version records, all runs */
	uint32_t packs, dicts, runs;
};
int archive_stats(struct archive *a, struct archive_stats *st, struct mf_error *err);

/* Forgets runs before keep_from: their versions that a later run does not
 * need, their records, and objects no remaining version names. Pack space
 * is not reclaimed (packs are append-only). *dropped: objects forgotten. */
int archive_prune(struct archive *a, uint32_t keep_from, uint64_t *dropped, struct mf_error *err);

/* backup --prune (archive_prune.c): every UID whose latest version is a
 * deletion loses all its versions, in every run (no run lists it any
 * more), and objects no version names leave the index. *uids: UIDs
 * forgotten, *objects: objects dropped. Commits. */
int archive_prune_deleted(struct archive *a, uint64_t *uids, uint64_t *objects,
                          struct mf_error *err);

/* Rewrites every pack (but the one being written) whose live raw bytes
 * are below min_live (0..1) of the raw bytes its frames hold: live
 * messages are copied to a new pack, synced, the index switched, then the
 * old pack's record dropped and its file unlinked. A message that cannot
 * be read back keeps its pack (counted in failed). */
struct archive_compact_stats {
	uint32_t packs;              /* packs rewritten and removed */
	uint64_t moved, moved_bytes; /* messages copied, their raw bytes */
	uint64_t bytes_before;       /* the rewritten packs' lengths */
	uint64_t bytes_after;        /* the pack they were copied into */
	uint64_t failed;
};
int archive_compact(struct archive *a, double min_live, struct archive_compact_stats *cs,
                    struct mf_error *err);

/* Decodes and checks one frame (header + zstd bytes) read from pack;
 * dict/dictn is the dictionary its header names (NULL if none). Writes the
 * raw bytes to raw (cap >= AFMT_FRAME_RAW_MAX). For verify and the fuzzer. */
int archive_frame_decode(const uint8_t *p, size_t n, uint32_t pack, const void *dict, size_t dictn,
                         uint8_t *raw, size_t cap, size_t *rawn, size_t *used,
                         struct mf_error *err);

struct acrypt;
/* The same for a frame of an encrypted archive, found at off in pack
 * (bound as associated data): p is opened in place. c NULL: plain. */
int archive_frame_open(struct acrypt *c, uint8_t *p, size_t n, uint32_t pack, uint64_t off,
                       const void *dict, size_t dictn, uint8_t *raw, size_t cap, size_t *rawn,
                       size_t *used, struct mf_error *err);

#endif
