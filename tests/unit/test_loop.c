/* test_loop — the ring dispatcher, timers (order, cancel, re-arm) and defer. */
#include "engine/runtime/loop.h"

#include <time.h>

#include "tests/unit/unit.h"

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct rec {
	char log[64];
	int n;
	uint64_t at[16];
	struct loop_timer *victim;
};

struct ttimer {
	struct loop_timer t; /* first: the callback casts back */
	struct rec *r;
	char tag;
	int again; /* re-arm itself this many times */
};

static void t_fired(struct loop *l, struct loop_timer *lt)
{
	struct ttimer *t = (struct ttimer *)lt;

	t->r->at[t->r->n] = now_ms();
	t->r->log[t->r->n++] = t->tag;
	if (t->r->victim)
		loop_timer_cancel(l, t->r->victim);
	if (t->again-- > 0)
		loop_timer_start(l, lt, 5, t_fired);
}

static void test_timer_order(struct unit_ctx *u)
{
	struct loop l;
	struct rec r = {0};
	struct ttimer a = {.r = &r, .tag = 'a'}, b = {.r = &r, .tag = 'b'}, c = {.r = &r, .tag = 'c'};
	uint64_t t0;

	UNIT_CHECK(u, loop_init(&l, 8) == 0);
	t0 = now_ms();
	loop_timer_start(&l, &a.t, 30, t_fired);
	loop_timer_start(&l, &b.t, 10, t_fired);
	loop_timer_start(&l, &c.t, 20, t_fired);
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECKF(u, !strcmp(r.log, "bca"), "order %s", r.log);
	UNIT_CHECK(u, r.at[0] - t0 >= 10 && r.at[2] - t0 >= 30 && r.at[2] - t0 < 500);
	UNIT_CHECK(u, l.inflight == 0 && !a.t.armed);
	loop_free(&l);
}

static void test_timer_cancel(struct unit_ctx *u)
{
	struct loop l;
	struct rec r = {0};
	struct ttimer a = {.r = &r, .tag = 'a'}, b = {.r = &r, .tag = 'b'}, c = {.r = &r, .tag = 'c'};
	uint64_t t0;

	UNIT_CHECK(u, loop_init(&l, 8) == 0);
	/* cancelled before the loop ever ran: the loop must not wait for it */
	t0 = now_ms();
	loop_timer_start(&l, &a.t, 300, t_fired);
	loop_timer_cancel(&l, &a.t);
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECKF(u, r.n == 0 && now_ms() - t0 < 200, "n=%d", r.n);
	/* cancelled from another timer's callback */
	loop_timer_start(&l, &b.t, 10, t_fired);
	loop_timer_start(&l, &c.t, 40, t_fired);
	r.victim = &c.t;
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECKF(u, !strcmp(r.log, "b"), "log %s", r.log);
	/* cancel then start again while the removal is still in flight */
	r.victim = NULL;
	loop_timer_start(&l, &a.t, 100, t_fired);
	loop_timer_cancel(&l, &a.t);
	loop_timer_start(&l, &a.t, 20, t_fired);
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECKF(u, !strcmp(r.log, "ba"), "log %s", r.log);
	UNIT_CHECK(u, l.inflight == 0);
	loop_free(&l);
}

static void test_timer_rearm(struct unit_ctx *u)
{
	struct loop l;
	struct rec r = {0};
	struct ttimer a = {.r = &r, .tag = 'a'}, p = {.r = &r, .tag = 'p', .again = 3};
	uint64_t t0;

	UNIT_CHECK(u, loop_init(&l, 8) == 0);
	/* earlier deadline while the first SQE is in flight */
	t0 = now_ms();
	loop_timer_start(&l, &a.t, 400, t_fired);
	UNIT_CHECK(u, io_uring_submit(&l.ring) >= 0);
	loop_timer_start(&l, &a.t, 10, t_fired);
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECKF(u, r.n == 1 && r.at[0] - t0 >= 10 && r.at[0] - t0 < 300, "n=%d after %d ms", r.n,
		    (int)(r.at[0] - t0));
	/* later deadline while in flight: fires once, at the later one */
	r.n = 0;
	memset(r.log, 0, sizeof(r.log));
	t0 = now_ms();
	loop_timer_start(&l, &a.t, 10, t_fired);
	UNIT_CHECK(u, io_uring_submit(&l.ring) >= 0);
	loop_timer_start(&l, &a.t, 60, t_fired);
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECKF(u, r.n == 1 && r.at[0] - t0 >= 60, "n=%d after %d ms", r.n, (int)(r.at[0] - t0));
	/* re-armed from its own callback */
	r.n = 0;
	memset(r.log, 0, sizeof(r.log));
	loop_timer_start(&l, &p.t, 5, t_fired);
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECKF(u, !strcmp(r.log, "pppp"), "log %s", r.log);
	UNIT_CHECK(u, l.inflight == 0);
	loop_free(&l);
}

struct ttask {
	struct loop_task t; /* first */
	char *log;
	char tag;
	int again;
};

static void task_fn(struct loop *l, struct loop_task *lt)
{
	struct ttask *t = (struct ttask *)lt;

	strncat(t->log, &t->tag, 1);
	if (t->again-- > 0) {
		loop_defer(l, lt);
		loop_defer(l, lt);
	}
}

static void test_defer(struct unit_ctx *u)
{
	struct loop l;
	char log[64] = "";
	struct ttask a = {.t.fn = task_fn, .log = log, .tag = 'a'}, b = {.t.fn = task_fn, .log = log, .tag = 'b'},
		     c = {.t.fn = task_fn, .log = log, .tag = 'c', .again = 2};

	UNIT_CHECK(u, loop_init(&l, 8) == 0);
	loop_defer(&l, &a.t);
	loop_defer(&l, &b.t);
	loop_defer(&l, &a.t); /* already queued: runs once */
	loop_defer(&l, &c.t); /* re-defers itself: runs on later iterations */
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECKF(u, !strcmp(log, "abccc"), "log %s", log);
	UNIT_CHECK(u, !l.tasks && !a.t.queued && !c.t.queued);
	loop_free(&l);
}

/* A task that re-queues itself forever must not starve completions. */
static void spin_fn(struct loop *l, struct loop_task *lt)
{
	struct ttask *t = (struct ttask *)lt;

	if (!t->again)
		loop_defer(l, lt);
}

static void spin_stop(struct loop *l, struct loop_timer *lt)
{
	struct ttimer *t = (struct ttimer *)lt;

	t->r->n++;
	((struct ttask *)t->r->victim)->again = 1;
	t->r->victim = NULL;
	(void)l;
}

static void test_defer_no_starve(struct unit_ctx *u)
{
	struct loop l;
	struct ttask spin = {.t.fn = spin_fn};
	struct rec r = {.victim = (struct loop_timer *)&spin};
	struct ttimer a = {.r = &r};
	uint64_t t0 = now_ms();

	UNIT_CHECK(u, loop_init(&l, 8) == 0);
	loop_defer(&l, &spin.t);
	loop_timer_start(&l, &a.t, 20, spin_stop);
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECKF(u, r.n == 1 && now_ms() - t0 < 1000, "n=%d", r.n);
	loop_free(&l);
}

struct nop {
	struct loop_op op;
	int res, calls;
};

static void nop_done(struct loop *l, struct loop_op *op, int res, unsigned flags)
{
	struct nop *n = (struct nop *)op;

	(void)flags;
	n->res = res;
	n->calls++;
	loop_stop(l);
}

static void test_dispatch_stop(struct unit_ctx *u)
{
	struct loop l;
	struct nop n = {.op.cb = nop_done};
	struct rec r = {0};
	struct ttimer a = {.r = &r, .tag = 'a'};
	struct io_uring_sqe *sqe;

	UNIT_CHECK(u, loop_init(&l, 4) == 0);
	/* more SQEs than the SQ holds: loop_sqe submits on its own */
	for (int i = 0; i < 9; i++) {
		sqe = loop_sqe(&l);
		io_uring_prep_nop(sqe);
		loop_bind_ignore(&l, sqe);
	}
	loop_reserve(&l, 4);
	UNIT_CHECK(u, io_uring_sq_space_left(&l.ring) >= 4);
	sqe = loop_sqe(&l);
	io_uring_prep_nop(sqe);
	loop_bind(&l, sqe, &n.op);
	loop_timer_start(&l, &a.t, 5000, t_fired);
	UNIT_CHECK(u, loop_run(&l) == 0); /* nop_done stops it despite the timer */
	UNIT_CHECK(u, n.calls == 1 && n.res == 0 && r.n == 0);
	loop_timer_cancel(&l, &a.t);
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECK(u, l.inflight == 0 && r.n == 0 && n.calls == 1);
	UNIT_CHECK(u, loop_now_ms(&l) > 0);
	loop_free(&l);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, test_timer_order);
	UNIT_RUN(&u, test_timer_cancel);
	UNIT_RUN(&u, test_timer_rearm);
	UNIT_RUN(&u, test_defer);
	UNIT_RUN(&u, test_defer_no_starve);
	UNIT_RUN(&u, test_dispatch_stop);
	printf("%d passed, %d failed\n", u.passed, u.failed);
	return unit_done(&u);
}
