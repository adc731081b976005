/*
 * arc_writer — the archive's writer thread (see arc_writer.h): the item
 * and byte rings, the thread that empties them into the archive, and the
 * verdicts' way back to the loop (an eventfd read on the loop's ring, armed
 * while anything is queued or a sink waits for room).
 *
 * Not for: the sink's protocol (sink_archive.c), the archive (store/).
 */
#include "engine/sync/arc_writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "engine/runtime/loop.h"

/* The byte ring: a few stages' worth, so several connections' messages
 * wait while one is compressed (peak RSS is counted against 32 MiB). */
#define ARCW_RING ((size_t)4 << 20)
/* Items queued at most (each holds a message's metadata, ~1 KiB). */
#define ARCW_ITEMS 512u
/* Spilled messages are read back in chunks of this. */
#define ARCW_READ ((size_t)256 << 10)
/* An idle writer is woken once this much is queued (about a frame), or by
 * a commit, or when the loop waits for room: not once per message. */
#define ARCW_KICK ((size_t)256 << 10)
/* Group commit: a batch's end is committed together with the batches
 * queued behind it (one pack fdatasync and one index commit for all),
 * once the queue is empty, or its oldest verdict has waited this long, or
 * this many batches wait: a busy writer syncs a few times a second rather
 * than once per batch, and a verdict a worker waits for is never held
 * longer than this. */
#define ARCW_GROUP_MS 100
#define ARCW_GROUP_MAX 64

enum { ITEM_MSG, ITEM_COMMIT };

struct item {
	int kind;
	struct arcw_msg m;     /* ITEM_MSG */
	uint64_t off;          /* its bytes: ring offset (monotonic) and length */
	size_t n;
	void *owner, *batch;   /* ITEM_COMMIT */
	int failed;
	char why[ARCW_WHY_MAX];
};

struct arcw {
	struct loop_op op; /* the eventfd read (first: the loop's user_data) */
	struct loop *l;
	struct archive *a;
	arcw_done_fn done;
	arcw_room_fn room;
	void *ctx;
	int efd;
	uint64_t efval;
	int armed, closing;

	pthread_t th;
	pthread_mutex_t amu; /* the archive handle */
	pthread_mutex_t mu;  /* everything below */
	pthread_cond_t work, space;
	int stop;
	int idle;      /* the writer waits for work */
	size_t unkicked; /* bytes queued since it was last woken */
	struct item *items;
	unsigned ihead, nitems; /* nitems includes the one being handled */
	uint8_t *ring;
	uint64_t rhead, rtail; /* bytes consumed / produced (monotonic) */
	size_t reserved;       /* held by messages being received */
	int want_room;
	struct arcw_verdict *dq;
	unsigned dcap, dhead, dn;
	/* the writer's: verdicts of batches ended but not yet committed */
	struct arcw_verdict *pend;
	unsigned npend;   /* under mu (arcw_drain and on_wake read it) */
	uint64_t pend_t0; /* when the oldest of them ended (ms, monotonic) */

	uint8_t *rbuf; /* the writer's: a spilled message read back */
};

static void wake_loop(struct arcw *w)
{
	uint64_t one = 1;

	if (write(w->efd, &one, sizeof(one)) < 0)
		mf_log(MF_LOG_ERROR, "archive writer: eventfd write: %s", strerror(errno));
}

static void acc_fail(struct arcw_acc *acc, const struct mf_error *e)
{
	if (!acc->failed)
		snprintf(acc->why, sizeof(acc->why), "%s", e->msg);
	acc->failed = 1;
}

/* The message's bytes into the archive: from the ring (up to two pieces)
 * or from its spill file. */
static int msg_feed(struct arcw *w, const struct item *it, struct mf_error *e)
{
	const struct arcw_msg *m = &it->m;

	if (m->spill >= 0) {
		uint64_t off = 0;

		while (off < m->spilled) {
			size_t k = m->spilled - off < ARCW_READ ? (size_t)(m->spilled - off) : ARCW_READ;
			ssize_t r = pread(m->spill, w->rbuf, k, (off_t)off);

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				mf_err_set(e, r < 0 ? -errno : -EIO, "reading the spill file back: %s",
				           r < 0 ? strerror(errno) : "cut short");
				return -EIO;
			}
			if (archive_msg_data(w->a, w->rbuf, (size_t)r, e) < 0)
				return -EIO;
			off += (uint64_t)r;
		}
	}
	if (it->n) {
		size_t at = (size_t)(it->off % ARCW_RING), first = ARCW_RING - at;

		if (first > it->n)
			first = it->n;
		if (archive_msg_data(w->a, w->ring + at, first, e) < 0 ||
		    (it->n > first && archive_msg_data(w->a, w->ring, it->n - first, e) < 0))
			return -EIO;
	}
	return 0;
}

static void do_msg(struct arcw *w, struct item *it)
{
	struct arcw_msg *m = &it->m;
	struct arcw_acc *acc = m->acc;
	struct mf_error e;
	int dup = 0;

	mf_err_clear(&e);
	if (acc->gen != m->gen) {
		/* a new session of the sink: what the old one left is gone */
		memset(acc, 0, sizeof(*acc));
		acc->gen = m->gen;
	}
	if (acc->failed)
		return; /* the batch is refused already */
	if (archive_msg_begin_hashed(w->a, m->m.hash, &e) < 0) {
		acc_fail(acc, &e);
		return;
	}
	if (msg_feed(w, it, &e) < 0) {
		archive_msg_abort(w->a);
		acc_fail(acc, &e);
		return;
	}
	if (archive_msg_end(w->a, m->m.hash, &m->m.size, &dup, &e) < 0 ||
	    archive_uid_put(w->a, m->run, m->mbid, m->uid, &m->m, &e) < 0) {
		acc_fail(acc, &e);
		return;
	}
	if (dup)
		acc->ndup++;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A batch's end: its verdict, which says ok only if the commit that
 * follows (group_commit) succeeds. */
static void do_commit(struct item *it, struct arcw_verdict *v)
{
	struct arcw_acc *acc = it->m.acc;

	if (acc->gen != it->m.gen) {
		memset(acc, 0, sizeof(*acc));
		acc->gen = it->m.gen;
	}
	if (it->failed && !acc->failed) {
		acc->failed = 1;
		snprintf(acc->why, sizeof(acc->why), "%s", it->why);
	}
	v->owner = it->owner;
	v->gen = it->m.gen;
	v->batch = it->batch;
	v->ok = !acc->failed;
	v->ndup = acc->ndup;
	snprintf(v->why, sizeof(v->why), "%s", acc->failed ? acc->why : "");
	acc->failed = 0;
	acc->ndup = 0;
	acc->why[0] = '\0';
}

/* Commits what the pending batches stored (everything written so far:
 * one archive transaction) and posts their verdicts; a failed commit fails
 * every one of them. Called without mu. */
static void group_commit(struct arcw *w)
{
	struct mf_error e;
	int rc;

	mf_err_clear(&e);
	pthread_mutex_lock(&w->amu);
	rc = archive_commit(w->a, &e);
	pthread_mutex_unlock(&w->amu);
	pthread_mutex_lock(&w->mu);
	for (unsigned i = 0; i < w->npend; i++) {
		struct arcw_verdict *v = &w->pend[i];

		if (v->ok && rc < 0) {
			v->ok = 0;
			snprintf(v->why, sizeof(v->why), "%s", e.msg);
		}
		if (w->dn < w->dcap)
			w->dq[(w->dhead + w->dn++) % w->dcap] = *v;
		else
			mf_log(MF_LOG_ERROR, "archive writer: verdict queue full (internal)");
	}
	w->npend = 0;
	pthread_cond_broadcast(&w->space);
	pthread_mutex_unlock(&w->mu);
	wake_loop(w);
}

static void *writer_main(void *arg)
{
	struct arcw *w = arg;

	for (;;) {
		struct item *it;
		struct arcw_verdict v;
		int signal = 0, flush;

		pthread_mutex_lock(&w->mu);
		while (!w->nitems && !w->stop) {
			w->idle = 1;
			pthread_cond_wait(&w->work, &w->mu);
		}
		w->idle = 0;
		if (!w->nitems) {
			pthread_mutex_unlock(&w->mu);
			break;
		}
		it = &w->items[w->ihead]; /* stays put until popped below */
		pthread_mutex_unlock(&w->mu);

		pthread_mutex_lock(&w->amu);
		if (it->kind == ITEM_MSG)
			do_msg(w, it);
		else
			do_commit(it, &v);
		pthread_mutex_unlock(&w->amu);
		if (it->kind == ITEM_MSG && it->m.spill >= 0)
			close(it->m.spill);

		pthread_mutex_lock(&w->mu);
		if (it->kind == ITEM_COMMIT) {
			if (!w->npend)
				w->pend_t0 = mono_ms();
			w->pend[w->npend++] = v; /* npend < dcap: commits in flight are fewer */
		}
		w->rhead += it->n;
		w->ihead = (w->ihead + 1) % ARCW_ITEMS;
		w->nitems--;
		if (w->want_room) {
			w->want_room = 0;
			signal = 1;
		}
		flush = w->npend && (!w->nitems || w->npend >= ARCW_GROUP_MAX ||
		                     mono_ms() - w->pend_t0 >= ARCW_GROUP_MS);
		if (!flush)
			pthread_cond_broadcast(&w->space);
		pthread_mutex_unlock(&w->mu);
		if (flush)
			group_commit(w); /* broadcasts and wakes the loop */
		else if (signal)
			wake_loop(w);
	}
	return NULL;
}

/* ---- the loop's side ---- */

static void arm(struct arcw *w)
{
	struct io_uring_sqe *sqe;

	if (w->armed)
		return;
	sqe = loop_sqe(w->l);
	io_uring_prep_read(sqe, w->efd, &w->efval, sizeof(w->efval), 0);
	loop_bind(w->l, sqe, &w->op);
	w->armed = 1;
}

static void arcw_free(struct arcw *w)
{
	close(w->efd);
	pthread_mutex_destroy(&w->amu);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->work);
	pthread_cond_destroy(&w->space);
	free(w->items);
	free(w->ring);
	free(w->dq);
	free(w->pend);
	free(w->rbuf);
	free(w);
}

/* The eventfd was written: verdicts go to their sinks (one at a time,
 * none under the lock: a verdict may queue the next batch), then the
 * sinks waiting for room are told. */
static void on_wake(struct loop *l, struct loop_op *op, int res, unsigned flags)
{
	struct arcw *w = (struct arcw *)op;
	int again;

	(void)l, (void)res, (void)flags;
	w->armed = 0;
	if (w->closing) {
		arcw_free(w);
		return;
	}
	for (;;) {
		struct arcw_verdict v;

		pthread_mutex_lock(&w->mu);
		if (!w->dn) {
			pthread_mutex_unlock(&w->mu);
			break;
		}
		v = w->dq[w->dhead];
		w->dhead = (w->dhead + 1) % w->dcap;
		w->dn--;
		pthread_mutex_unlock(&w->mu);
		w->done(w->ctx, &v);
	}
	/* every waiting sink asks again (and says so again if still full) */
	pthread_mutex_lock(&w->mu);
	w->want_room = 0;
	pthread_mutex_unlock(&w->mu);
	w->room(w->ctx);
	pthread_mutex_lock(&w->mu);
	again = w->nitems || w->npend || w->dn || w->want_room;
	pthread_mutex_unlock(&w->mu);
	if (again)
		arm(w);
}

int arcw_open(struct arcw **out, struct loop *l, struct archive *a, unsigned max_batches,
              arcw_done_fn done, arcw_room_fn room, void *ctx, struct mf_error *err)
{
	struct arcw *w = calloc(1, sizeof(*w));
	int rc;

	if (!w || !(w->items = calloc(ARCW_ITEMS, sizeof(*w->items))) ||
	    !(w->ring = malloc(ARCW_RING)) || !(w->rbuf = malloc(ARCW_READ)) ||
	    !(w->dq = calloc(max_batches + 1, sizeof(*w->dq))) ||
	    !(w->pend = calloc(max_batches + 1, sizeof(*w->pend)))) {
		if (w) {
			free(w->items);
			free(w->ring);
			free(w->rbuf);
			free(w->dq);
		}
		free(w);
		mf_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	w->dcap = max_batches + 1;
	w->op.cb = on_wake;
	w->l = l;
	w->a = a;
	w->done = done;
	w->room = room;
	w->ctx = ctx;
	if ((w->efd = eventfd(0, EFD_CLOEXEC)) < 0) {
		rc = -errno;
		free(w->items);
		free(w->ring);
		free(w->rbuf);
		free(w->dq);
		free(w->pend);
		free(w);
		mf_err_set(err, rc, "archive writer: eventfd: %s", strerror(-rc));
		return rc;
	}
	pthread_mutex_init(&w->amu, NULL);
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->work, NULL);
	pthread_cond_init(&w->space, NULL);
	if ((rc = pthread_create(&w->th, NULL, writer_main, w))) {
		arcw_free(w);
		mf_err_set(err, -rc, "archive writer: thread: %s", strerror(rc));
		return -rc;
	}
	*out = w;
	return 0;
}

/* Under mu: the writer goes on with what is queued. */
static void kick_locked(struct arcw *w)
{
	w->unkicked = 0;
	if (w->idle && w->nitems)
		pthread_cond_signal(&w->work);
}

void arcw_drain(struct arcw *w)
{
	pthread_mutex_lock(&w->mu);
	kick_locked(w);
	while (w->nitems || w->npend)
		pthread_cond_wait(&w->space, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

void arcw_close(struct arcw *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = 1;
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->th, NULL); /* it ends once the queue is empty */
	if (w->armed) {
		/* the read in flight completes on a later turn and frees it */
		w->closing = 1;
		wake_loop(w);
		return;
	}
	arcw_free(w);
}

void arcw_lock(struct arcw *w)
{
	pthread_mutex_lock(&w->amu);
}

void arcw_unlock(struct arcw *w)
{
	pthread_mutex_unlock(&w->amu);
}

/* Under mu: ring bytes and items free for one more message. */
static int room_locked(const struct arcw *w)
{
	return (size_t)(w->rtail - w->rhead) + w->reserved + ARCW_MSG_MAX <= ARCW_RING &&
	       w->nitems + 8 <= ARCW_ITEMS && w->dn + 1 < w->dcap;
}

int arcw_room(struct arcw *w)
{
	int ok;

	pthread_mutex_lock(&w->mu);
	ok = room_locked(w);
	if (!ok) {
		w->want_room = 1;
		kick_locked(w);
	}
	pthread_mutex_unlock(&w->mu);
	if (!ok)
		arm(w);
	return ok;
}

void arcw_reserve(struct arcw *w, size_t n)
{
	pthread_mutex_lock(&w->mu);
	w->reserved += n;
	pthread_mutex_unlock(&w->mu);
}

void arcw_unreserve(struct arcw *w, size_t n)
{
	pthread_mutex_lock(&w->mu);
	w->reserved -= n < w->reserved ? n : w->reserved;
	pthread_mutex_unlock(&w->mu);
	/* a sink may wait for these bytes */
	if (n)
		arm(w), wake_loop(w);
}

/* Under mu: waits for an item slot and n ring bytes (only a message that
 * outgrew its reservation, or more sinks than the ring's share, waits). */
static struct item *slot_locked(struct arcw *w, size_t n)
{
	while (w->nitems == ARCW_ITEMS || (size_t)(w->rtail - w->rhead) + n > ARCW_RING) {
		kick_locked(w);
		pthread_cond_wait(&w->space, &w->mu);
	}
	return &w->items[(w->ihead + w->nitems) % ARCW_ITEMS];
}

static void push_locked(struct arcw *w, size_t n, int now)
{
	w->nitems++;
	w->unkicked += n;
	if (now || w->unkicked >= ARCW_KICK)
		kick_locked(w);
}

void arcw_msg(struct arcw *w, const struct arcw_msg *m, const uint8_t *p, size_t n, size_t resv)
{
	struct item *it;

	pthread_mutex_lock(&w->mu);
	w->reserved -= resv < w->reserved ? resv : w->reserved;
	it = slot_locked(w, n);
	it->kind = ITEM_MSG;
	it->m = *m;
	it->off = w->rtail;
	it->n = n;
	if (n) {
		size_t at = (size_t)(w->rtail % ARCW_RING), first = ARCW_RING - at;

		if (first > n)
			first = n;
		/* the writer reads only below rtail: these bytes are ours */
		memcpy(w->ring + at, p, first);
		memcpy(w->ring, p + first, n - first);
		w->rtail += n;
	}
	push_locked(w, n + m->spilled, 0);
	pthread_mutex_unlock(&w->mu);
	arm(w);
}

void arcw_commit(struct arcw *w, struct arcw_acc *acc, void *owner, unsigned gen, void *batch,
                 int failed, const char *why)
{
	struct item *it;

	pthread_mutex_lock(&w->mu);
	it = slot_locked(w, 0);
	it->kind = ITEM_COMMIT;
	memset(&it->m, 0, offsetof(struct arcw_msg, m));
	it->m.acc = acc;
	it->m.gen = gen;
	it->m.spill = -1;
	it->off = w->rtail;
	it->n = 0;
	it->owner = owner;
	it->batch = batch;
	it->failed = failed;
	snprintf(it->why, sizeof(it->why), "%s", why ? why : "");
	push_locked(w, 0, 1);
	pthread_mutex_unlock(&w->mu);
	arm(w);
}
