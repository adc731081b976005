/*
 * arc_writer — the archive's writer thread for `backup` (used by
 * sink_archive.c): hashing, compression, pack writes and the index's puts
 * and commits (with their fdatasync) run there, so the loop's thread only
 * receives and parses while earlier messages are being stored.
 *
 * Hand-off: a message's bytes are copied into one byte ring (bounded) and
 * described by an item; a message over the sink's stage comes as its spill
 * file (the descriptor is handed over). A batch ends with a commit item;
 * its verdict comes back on the loop's thread (an eventfd read on the
 * loop's ring), in the order the items were queued. Memory stays bounded:
 * arcw_room() says no while the ring could not take one more message, the
 * sink is then busy (sink.h) and room_fn says when to go on.
 *
 * The archive handle is used by one thread at a time: the writer holds the
 * archive lock while it handles one item, the loop takes it (arcw_lock)
 * for its own rare calls (mailboxes, settle, flag changes). The archive's
 * writable LMDB environment is opened MDB_NOLOCK (its flock keeps one
 * writer process), so its write transaction may pass between threads.
 *
 * Durability stays the archive's: a batch's verdict is posted only after
 * archive_commit (pack bytes synced before the index names them) returned.
 * Batches that end while more is queued share one commit (group commit,
 * bounded in time: ARCW_GROUP_MS).
 *
 * Not for: the sink's side of the copy path (sink_archive.c), the archive
 * itself (store/archive.h).
 */
#ifndef MF_ARC_WRITER_H
#define MF_ARC_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/err.h"
#include "store/archive.h"

struct arcw;
struct loop;

#define ARCW_WHY_MAX 600

/* What one batch came to: kept by its sink, written by the writer thread
 * only (between a batch's messages and its commit). */
struct arcw_acc {
	unsigned gen;
	int failed;
	unsigned ndup;
	char why[ARCW_WHY_MAX];
};

/* One message for the archive. */
struct arcw_msg {
	struct arcw_acc *acc;
	unsigned gen;        /* the sink's session: a stale one is dropped */
	uint32_t run, mbid, uid;
	struct archive_msgmeta m; /* hash: the copy path's (the bytes are hashed
	                           * once); size: filled in by the writer */
	int spill;                /* its bytes in this file (taken), or -1 */
	uint64_t spilled;
};

/* A batch's verdict, on the loop's thread. */
struct arcw_verdict {
	void *owner;
	unsigned gen;
	void *batch;
	int ok;
	unsigned ndup;
	char why[ARCW_WHY_MAX];
};

typedef void (*arcw_done_fn)(void *ctx, const struct arcw_verdict *v);
typedef void (*arcw_room_fn)(void *ctx);

/* Starts the thread. done is called per verdict, room after verdicts and
 * whenever the ring made room after arcw_room() said no; both on l's
 * thread. max_batches: the most commits ever waiting for a verdict. */
int arcw_open(struct arcw **out, struct loop *l, struct archive *a, unsigned max_batches,
              arcw_done_fn done, arcw_room_fn room, void *ctx, struct mf_error *err);
/* Waits for everything queued, ends the thread and frees the writer
 * (verdicts not delivered yet are dropped). */
void arcw_close(struct arcw *w);
/* Waits until the writer has handled everything queued. */
void arcw_drain(struct arcw *w);

/* The archive handle, for a call from the loop's thread. */
void arcw_lock(struct arcw *w);
void arcw_unlock(struct arcw *w);

/* 1 if a message of up to ARCW_MSG_MAX ring bytes may start now; 0 (and
 * room_fn later) if not. */
#define ARCW_MSG_MAX ((size_t)1 << 20)
int arcw_room(struct arcw *w);
/* A message has started: n ring bytes are held for it until arcw_msg
 * (or arcw_unreserve: it was dropped). */
void arcw_reserve(struct arcw *w, size_t n);
void arcw_unreserve(struct arcw *w, size_t n);
/* Queues a message (its n staged bytes, at most ARCW_MSG_MAX, and m->spill,
 * which the writer closes) and gives back the reservation resv. Waits only
 * if the message outgrew its reservation and the ring is full. */
void arcw_msg(struct arcw *w, const struct arcw_msg *m, const uint8_t *p, size_t n, size_t resv);
/* Ends a batch: committed, then its verdict (failed: refused already on the
 * loop's side, why says so). */
void arcw_commit(struct arcw *w, struct arcw_acc *acc, void *owner, unsigned gen, void *batch,
                 int failed, const char *why);

#endif
