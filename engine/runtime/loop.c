/*
 * loop — the ring and its single completion dispatcher (see loop.h).
 *
 * One iteration: run deferred tasks, submit what was prepared and wait for at
 * least one completion (or none when tasks are queued), then dispatch every
 * ready CQE. CQEs are copied out and the CQ head advanced before their
 * callbacks run, so callbacks can queue new work without the CQ filling up
 * under them. Not for: buffering, protocol state, policy.
 */
#include "engine/runtime/loop.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/base/err.h"

#define LOOP_BATCH 64

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int probe_ops(struct io_uring *ring)
{
	static const struct { int op; const char *name; } need[] = {
		{IORING_OP_TIMEOUT, "timeout"}, {IORING_OP_TIMEOUT_REMOVE, "timeout_remove"},
		{IORING_OP_LINK_TIMEOUT, "link_timeout"}, {IORING_OP_ASYNC_CANCEL, "async_cancel"},
		{IORING_OP_CONNECT, "connect"}, {IORING_OP_SEND, "send"},
		{IORING_OP_RECV, "recv"}, {IORING_OP_CLOSE, "close"},
	};
	struct io_uring_probe *pr = io_uring_get_probe_ring(ring);
	int ret = 0;

	if (!pr) /* kernel < 5.6: no probe, and no IORING_OP_CLOSE either */
		return -EOPNOTSUPP;
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (!io_uring_opcode_supported(pr, need[i].op)) {
			mf_log(MF_LOG_ERROR, "io_uring: kernel lacks op=%s", need[i].name);
			ret = -EOPNOTSUPP;
		}
	io_uring_free_probe(pr);
	return ret;
}

int loop_init(struct loop *l, unsigned entries)
{
	struct io_uring_params p;
	int ret;

	memset(l, 0, sizeof(*l));
	if (!entries)
		entries = 256;
	/* Cheaper task running and submit-all (5.18/5.19); older kernels refuse
	 * the flags with -EINVAL and get a plain ring. */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
	ret = io_uring_queue_init_params(entries, &l->ring, &p);
	if (ret == -EINVAL) {
		memset(&p, 0, sizeof(p));
		ret = io_uring_queue_init_params(entries, &l->ring, &p);
	}
	if (ret < 0) {
		mf_log(MF_LOG_ERROR, "io_uring_queue_init: %s", strerror(-ret));
		return ret;
	}
	ret = probe_ops(&l->ring);
	if (ret < 0) {
		io_uring_queue_exit(&l->ring);
		return ret;
	}
	if (!(p.features & IORING_FEAT_NODROP))
		mf_log(MF_LOG_WARN, "io_uring: no FEAT_NODROP, completions may be lost on overflow");
	l->has_ext_arg = !!(p.features & IORING_FEAT_EXT_ARG);
	l->now_ms = mono_ns() / 1000000u;
	return 0;
}

struct loop_inbox {
	struct loop_op op;
	int fd;
	uint64_t val;		/* the eventfd's counter, read by the ring */
	pthread_mutex_t mu;
	struct loop_task *head, *tail;	/* posted, in order */
	int closing;		/* loop_inbox_close: no read after this one */
};

void loop_free(struct loop *l)
{
	io_uring_queue_exit(&l->ring);
	if (l->inbox) {
		close(l->inbox->fd);
		pthread_mutex_destroy(&l->inbox->mu);
		free(l->inbox);
		l->inbox = NULL;
	}
}

static void inbox_arm(struct loop *l)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_read(sqe, l->inbox->fd, &l->inbox->val, sizeof(l->inbox->val), 0);
	loop_bind(l, sqe, &l->inbox->op);
}

/* The eventfd was written: run what was posted, one task at a time (a task
 * may be posted again while another runs), then read again. */
static void inbox_read(struct loop *l, struct loop_op *op, int res, unsigned flags)
{
	struct loop_inbox *ib = (struct loop_inbox *)op;
	struct loop_task *t;
	int closing;

	(void)res;
	(void)flags;
	for (;;) {
		pthread_mutex_lock(&ib->mu);
		if ((t = ib->head)) {
			ib->head = t->next;
			if (!ib->head)
				ib->tail = NULL;
			t->next = NULL;
			t->queued = 0;
		}
		pthread_mutex_unlock(&ib->mu);
		if (!t)
			break;
		t->fn(l, t);
	}
	pthread_mutex_lock(&ib->mu);
	closing = ib->closing;
	pthread_mutex_unlock(&ib->mu);
	if (!closing)
		inbox_arm(l);
}

void loop_inbox_close(struct loop *l)
{
	struct loop_inbox *ib = l->inbox;
	uint64_t one = 1;

	if (!ib)
		return;
	pthread_mutex_lock(&ib->mu);
	ib->closing = 1;
	pthread_mutex_unlock(&ib->mu);
	/* ends the read in flight: it runs what is left and reads no more */
	if (write(ib->fd, &one, sizeof(one)) < 0)
		mf_log(MF_LOG_ERROR, "eventfd write: %s", strerror(errno));
}

int loop_inbox_open(struct loop *l)
{
	struct loop_inbox *ib = calloc(1, sizeof(*ib));

	if (!ib)
		return -ENOMEM;
	if ((ib->fd = eventfd(0, EFD_CLOEXEC)) < 0) {
		int e = errno;

		free(ib);
		return -e;
	}
	pthread_mutex_init(&ib->mu, NULL);
	ib->op.cb = inbox_read;
	l->inbox = ib;
	inbox_arm(l);
	return 0;
}

void loop_post(struct loop *l, struct loop_task *t)
{
	struct loop_inbox *ib = l->inbox;
	uint64_t one = 1;
	int fresh = 0;

	pthread_mutex_lock(&ib->mu);
	if (!t->queued) {
		t->queued = 1;
		t->next = NULL;
		if (ib->tail)
			ib->tail->next = t;
		else
			ib->head = t;
		ib->tail = t;
		fresh = 1;
	}
	pthread_mutex_unlock(&ib->mu);
	/* a full counter (2^64 - 2 posts unread) cannot happen: each read empties it */
	if (fresh && write(ib->fd, &one, sizeof(one)) < 0)
		mf_log(MF_LOG_ERROR, "eventfd write: %s", strerror(errno));
}

/* Submits prepared SQEs. Transient failures (-EINTR; -EAGAIN, kernel short of
 * memory; -EBUSY, CQ backlog on old kernels) are retried by the caller. */
static int submit(struct loop *l, unsigned wait_nr)
{
	int r = wait_nr ? io_uring_submit_and_wait(&l->ring, wait_nr) : io_uring_submit(&l->ring);

	if (r >= 0 || r == -EINTR || r == -ETIME)
		return 0;
	if (r == -EAGAIN || r == -EBUSY) {
		sched_yield();
		return 0;
	}
	return r;
}

struct io_uring_sqe *loop_sqe(struct loop *l)
{
	struct io_uring_sqe *sqe;
	int r;

	while (!(sqe = io_uring_get_sqe(&l->ring)))
		if ((r = submit(l, 0)) < 0) {
			/* Only a broken ring (EBADF, EFAULT) gets here: no way to go on. */
			mf_log(MF_LOG_ERROR, "io_uring_submit: %s", strerror(-r));
			abort();
		}
	return sqe;
}

void loop_reserve(struct loop *l, unsigned n)
{
	int r;

	while (io_uring_sq_space_left(&l->ring) < n)
		if ((r = submit(l, 0)) < 0) {
			mf_log(MF_LOG_ERROR, "io_uring_submit: %s", strerror(-r));
			abort();
		}
}

void loop_bind(struct loop *l, struct io_uring_sqe *sqe, struct loop_op *op)
{
	io_uring_sqe_set_data(sqe, op);
	l->inflight++;
}

void loop_bind_ignore(struct loop *l, struct io_uring_sqe *sqe)
{
	io_uring_sqe_set_data64(sqe, 0);
	l->inflight++;
}

/* Runs the tasks queued before this call; tasks they queue run next time. */
static void run_tasks(struct loop *l)
{
	struct loop_task *t = l->tasks;

	l->tasks = l->tasks_tail = NULL;
	while (t) {
		struct loop_task *next = t->next;

		t->next = NULL;
		t->queued = 0;
		t->fn(l, t);
		t = next;
	}
}

/* Dispatches every ready CQE; returns how many. */
static unsigned reap(struct loop *l)
{
	struct io_uring_cqe batch[LOOP_BATCH], *cqe;
	unsigned head, n, total = 0;

	do {
		n = 0;
		io_uring_for_each_cqe(&l->ring, head, cqe)
		{
			batch[n++] = *cqe;
			if (n == LOOP_BATCH)
				break;
		}
		io_uring_cq_advance(&l->ring, n);
		for (unsigned i = 0; i < n; i++) {
			struct loop_op *op = io_uring_cqe_get_data(&batch[i]);

			if (!(batch[i].flags & IORING_CQE_F_MORE))
				l->inflight--;
			if (op)
				op->cb(l, op, batch[i].res, batch[i].flags);
		}
		total += n;
	} while (n == LOOP_BATCH);
	return total;
}

int loop_run(struct loop *l)
{
	int r;

	l->stop = 0;
	for (;;) {
		run_tasks(l);
		if (l->stop || (!l->inflight && !l->tasks))
			break;
		if ((r = submit(l, l->tasks ? 0 : 1)) < 0) {
			mf_log(MF_LOG_ERROR, "io_uring_submit_and_wait: %s", strerror(-r));
			return r;
		}
		l->now_ms = mono_ns() / 1000000u;
		reap(l);
		if (l->stop)
			break;
	}
	return 0;
}

void loop_stop(struct loop *l)
{
	l->stop = 1;
}

int loop_submit(struct loop *l)
{
	return submit(l, 0);
}

void loop_defer(struct loop *l, struct loop_task *t)
{
	if (t->queued)
		return;
	t->queued = 1;
	t->next = NULL;
	if (l->tasks_tail)
		l->tasks_tail->next = t;
	else
		l->tasks = t;
	l->tasks_tail = t;
}

uint64_t loop_now_ms(struct loop *l)
{
	return l->now_ms;
}

/*
 * Timers keep at most one TIMEOUT SQE in flight, armed with an absolute
 * CLOCK_MONOTONIC deadline stored in t->ts. Re-arming only rewrites t->ts
 * (and removes the SQE in flight when the new deadline is earlier); the
 * completion then decides: cancelled → nothing, deadline passed → fn,
 * otherwise → arm again for the current deadline. So a CQE of a superseded
 * arm never calls fn, and fn never runs after loop_timer_cancel().
 */
static uint64_t ts_ns(const struct __kernel_timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec;
}

static void timer_submit(struct loop *l, struct loop_timer *t)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_timeout(sqe, &t->ts, 0, IORING_TIMEOUT_ABS);
	loop_bind(l, sqe, &t->op);
	t->armed = 1;
}

static void timer_remove(struct loop *l, struct loop_timer *t)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_timeout_remove(sqe, (__u64)(uintptr_t)&t->op, 0);
	loop_bind_ignore(l, sqe);
}

static void timer_done(struct loop *l, struct loop_op *op, int res, unsigned flags)
{
	struct loop_timer *t = (struct loop_timer *)op; /* op is the first member */

	(void)res; /* -ETIME fired, -ECANCELED removed: the deadline decides */
	(void)flags;
	t->armed = 0;
	if (t->cancelled)
		return;
	if (mono_ns() < ts_ns(&t->ts)) {
		timer_submit(l, t);
		return;
	}
	t->cancelled = 1; /* one-shot: a stray completion must not fire it again */
	t->fn(l, t);
}

void loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t ms,
		      void (*fn)(struct loop *l, struct loop_timer *t))
{
	uint64_t old = ts_ns(&t->ts), dl = mono_ns() + ms * 1000000u;

	t->op.cb = timer_done;
	t->fn = fn;
	t->cancelled = 0;
	t->gen++;
	t->ts.tv_sec = (long long)(dl / 1000000000u);
	t->ts.tv_nsec = (long long)(dl % 1000000000u);
	if (!t->armed)
		timer_submit(l, t);
	else if (dl < old)
		timer_remove(l, t);
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
	if (t->cancelled)
		return;
	t->cancelled = 1;
	t->gen++;
	if (t->armed)
		timer_remove(l, t);
}
