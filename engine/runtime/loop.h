/*
 * loop — one io_uring per thread and the single completion dispatcher.
 *
 * Every in-flight operation is a small struct whose first member is a
 * struct loop_op; its address is the SQE's user_data and its callback runs
 * when the CQE arrives. The loop owns nothing else: connections, timers and
 * jobs embed their ops. Not for: protocol logic, buffering (see conn).
 */
#ifndef MF_LOOP_H
#define MF_LOOP_H

#include <liburing.h>
#include <stdint.h>

struct loop;

struct loop_op {
	/* res = cqe->res, flags = cqe->flags */
	void (*cb)(struct loop *l, struct loop_op *op, int res, unsigned flags);
};

/* A deferred call: runs on the next loop iteration, outside the caller's stack. */
struct loop_task {
	void (*fn)(struct loop *l, struct loop_task *t);
	struct loop_task *next;
	int queued;
};

/* A one-shot timer on the ring (IORING_OP_TIMEOUT). Zero it before first use;
 * its memory must outlive the SQE in flight (until armed == 0, i.e. until the
 * loop ran after loop_timer_cancel). */
struct loop_timer {
	struct loop_op op;
	struct __kernel_timespec ts;
	void (*fn)(struct loop *l, struct loop_timer *t);
	int armed;	/* a timeout SQE is in flight */
	int cancelled;	/* fn must not run for the in-flight SQE */
	uint64_t gen;
};

struct loop_inbox;

struct loop {
	struct io_uring ring;
	struct loop_inbox *inbox;	/* loop_inbox_open: other threads post here */
	unsigned inflight;	 /* SQEs submitted or prepared, CQE not yet seen */
	int stop;
	struct loop_task *tasks, *tasks_tail;
	uint64_t now_ms;	 /* CLOCK_MONOTONIC, refreshed every iteration */
	int has_ext_arg;	 /* kernel feature probes */
	/* Process-wide budget for buffered server input beyond each
	 * connection's fixed buffers (partial lines, response trees): one
	 * hostile server cannot make every connection hold its maximum.
	 * Charged by imap_parse through imap_client; 0 = the default. */
	size_t mem_used, mem_max;
	/* The input and output buffer of each connection opened on this loop
	 * (conn.c), unless its conn_opts say; 0 = conn.c's default. A command
	 * that runs many connections sets less (run: memory, issue 20). */
	size_t conn_buf;
};

int loop_init(struct loop *l, unsigned entries);
void loop_free(struct loop *l);

/* Next free SQE; submits pending ones first when the SQ is full. Never NULL. */
struct io_uring_sqe *loop_sqe(struct loop *l);
/* Makes room for n SQEs (submitting pending ones if needed), so that a linked
 * chain such as connect + link timeout is never split across submissions. */
void loop_reserve(struct loop *l, unsigned n);
/* Ties a prepared SQE to its op and counts it in flight. */
void loop_bind(struct loop *l, struct io_uring_sqe *sqe, struct loop_op *op);
/* An SQE whose completion must be ignored (e.g. a linked timeout). */
void loop_bind_ignore(struct loop *l, struct io_uring_sqe *sqe);

/* Runs until loop_stop() or until nothing is in flight and no task is queued.
 * Returns 0, or a negative errno if the ring itself failed. */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);

void loop_defer(struct loop *l, struct loop_task *t);
/* Submits the SQEs prepared so far now, e.g. a send before a blocking
 * fsync (copy.c's group commit). 0 or a negative errno. */
int loop_submit(struct loop *l);

/* Cross-thread wake-ups (run --threads): an eventfd the ring reads, and a
 * locked list of tasks other threads post. Once open, loop_run runs until
 * loop_stop() (called on the loop's own thread, e.g. from a posted task),
 * even with nothing else in flight. 0, or a negative errno. */
int loop_inbox_open(struct loop *l);
/* From any thread: t->fn runs on l's thread, soon. t must stay valid until
 * then; posting it again before it ran is a no-op. l has an inbox. */
void loop_post(struct loop *l, struct loop_task *t);
/* On l's thread, once no thread posts any more: what was posted still
 * runs, then the inbox keeps the loop running no longer (it runs out as
 * it would without one). */
void loop_inbox_close(struct loop *l);
uint64_t loop_now_ms(struct loop *l);

void loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t ms,
		      void (*fn)(struct loop *l, struct loop_timer *t));
void loop_timer_cancel(struct loop *l, struct loop_timer *t);

#endif
