/* test_hostlimit — --max-per-host's limiter: caps per host, pairs granted
 * whole, first come first served per host, cancel, throttling pauses, and
 * the count back at 0 (engine/sync/hostlimit.c) on a real loop. */
#include "engine/sync/hostlimit.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/unit.h"

struct who {
	struct hostlimit_req r; /* first: granted() casts back */
	char tag;
	char *log;
	uint64_t at;
	struct loop *l;
};

static void on_granted(struct hostlimit_req *r)
{
	struct who *w = (struct who *)r;
	size_t n = strlen(w->log);

	w->log[n] = w->tag;
	w->log[n + 1] = '\0';
	w->at = loop_now_ms(w->l);
}

static void who_init(struct who *w, char tag, char *log, struct loop *l)
{
	memset(w, 0, sizeof(*w));
	w->r.granted = on_granted;
	w->tag = tag;
	w->log = log;
	w->l = l;
}

static void test_cap_and_pairs(struct unit_ctx *u)
{
	struct loop l;
	struct hostlimit *hl;
	struct mf_error e;
	struct who a, b, c;
	char log[16] = "";

	UNIT_CHECK(u, loop_init(&l, 64) == 0);
	UNIT_CHECK(u, hostlimit_new(&hl, &l, 2) == 0);
	who_init(&a, 'a', log, &l);
	who_init(&b, 'b', log, &l);
	who_init(&c, 'c', log, &l);
	UNIT_CHECK(u, hostlimit_acquire(hl, &a.r, "h:1", "g:2", &e) == 1);
	/* a pair on one host needs both slots: only one is left */
	UNIT_CHECK(u, hostlimit_acquire(hl, &b.r, "h:1", "h:1", &e) == 0);
	/* another host passes the waiter; h:1 would not */
	UNIT_CHECK(u, hostlimit_acquire(hl, &c.r, "g:2", NULL, &e) == 1);
	UNIT_CHECK(u, hostlimit_count(hl) == 3);
	UNIT_CHECK(u, hostlimit_held(&a.r, 0) && hostlimit_held(&a.r, 1));
	UNIT_CHECK(u, hostlimit_waiting(&b.r) && !hostlimit_held(&b.r, 0));
	hostlimit_release(hl, &a.r, 0);
	hostlimit_release(hl, &a.r, 0); /* twice: harmless */
	UNIT_CHECK(u, hostlimit_count(hl) == 4); /* b's two taken at once */
	UNIT_CHECK(u, log[0] == '\0'); /* granted from the loop, not inside release */
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECK(u, !strcmp(log, "b") && hostlimit_held(&b.r, 0) && hostlimit_held(&b.r, 1));
	UNIT_CHECK(u, hostlimit_count(hl) == 4 && hostlimit_peak(hl) == 2);
	hostlimit_cancel(hl, &a.r);
	hostlimit_cancel(hl, &b.r);
	hostlimit_release(hl, &c.r, 0);
	UNIT_CHECK(u, hostlimit_count(hl) == 0);
	hostlimit_free(hl);
	loop_free(&l);
}

static void test_fifo_per_host(struct unit_ctx *u)
{
	struct loop l;
	struct hostlimit *hl;
	struct mf_error e;
	struct who a, b, c, d;
	char log[16] = "";

	UNIT_CHECK(u, loop_init(&l, 64) == 0);
	UNIT_CHECK(u, hostlimit_new(&hl, &l, 1) == 0);
	who_init(&a, 'a', log, &l);
	who_init(&b, 'b', log, &l);
	who_init(&c, 'c', log, &l);
	who_init(&d, 'd', log, &l);
	UNIT_CHECK(u, hostlimit_acquire(hl, &a.r, "h:1", NULL, &e) == 1);
	UNIT_CHECK(u, hostlimit_acquire(hl, &b.r, "h:1", NULL, &e) == 0);
	UNIT_CHECK(u, hostlimit_acquire(hl, &c.r, "h:1", NULL, &e) == 0);
	UNIT_CHECK(u, hostlimit_acquire(hl, &d.r, "h:1", NULL, &e) == 0);
	hostlimit_cancel(hl, &c.r); /* a job ended while it waited */
	hostlimit_release(hl, &a.r, 0);
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECK(u, !strcmp(log, "b") && hostlimit_count(hl) == 1);
	hostlimit_release(hl, &b.r, 0);
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECK(u, !strcmp(log, "bd"));
	hostlimit_release(hl, &d.r, 0);
	UNIT_CHECK(u, hostlimit_count(hl) == 0 && hostlimit_peak(hl) == 1);
	/* a cap of 1 can never hold a pair on one host */
	UNIT_CHECK(u, hostlimit_acquire(hl, &a.r, "h:1", "h:1", &e) == -EINVAL);
	UNIT_CHECK(u, strstr(e.msg, "h:1") != NULL);
	/* granted, its call still to come, then cancelled: no call, no slot */
	UNIT_CHECK(u, hostlimit_acquire(hl, &a.r, "h:1", NULL, &e) == 1);
	UNIT_CHECK(u, hostlimit_acquire(hl, &b.r, "h:1", NULL, &e) == 0);
	hostlimit_release(hl, &a.r, 0);
	hostlimit_cancel(hl, &b.r);
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECK(u, !strcmp(log, "bd") && hostlimit_count(hl) == 0);
	hostlimit_free(hl);
	loop_free(&l);
}

static void test_throttle_pause(struct unit_ctx *u)
{
	struct loop l;
	struct hostlimit *hl;
	struct mf_error e;
	struct who a, b, c;
	char log[16] = "";
	uint64_t t0;

	UNIT_CHECK(u, loop_init(&l, 64) == 0);
	UNIT_CHECK(u, hostlimit_new(&hl, &l, 0) == 0); /* no cap: pauses only */
	who_init(&a, 'a', log, &l);
	who_init(&b, 'b', log, &l);
	who_init(&c, 'c', log, &l);
	t0 = loop_now_ms(&l);
	hostlimit_throttle(hl, "h:1", 150, "test");
	UNIT_CHECK(u, hostlimit_acquire(hl, &a.r, "h:1", NULL, &e) == 0);
	UNIT_CHECK(u, hostlimit_acquire(hl, &b.r, "g:2", "h:1", &e) == 0);
	UNIT_CHECK(u, hostlimit_acquire(hl, &c.r, "g:2", NULL, &e) == 1); /* only that host */
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECK(u, !strcmp(log, "ab"));
	UNIT_CHECKF(u, a.at >= t0 + 140 && b.at >= t0 + 140, "granted after %llu ms",
		    (unsigned long long)(a.at - t0));
	hostlimit_cancel(hl, &a.r);
	hostlimit_cancel(hl, &b.r);
	hostlimit_cancel(hl, &c.r);
	UNIT_CHECK(u, hostlimit_count(hl) == 0);
	/* a pause nobody waits for does not hold the loop */
	hostlimit_throttle(hl, "h:1", 60000, "test");
	UNIT_CHECK(u, hostlimit_acquire(hl, &a.r, "h:1", NULL, &e) == 0);
	hostlimit_cancel(hl, &a.r);
	t0 = loop_now_ms(&l);
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECK(u, loop_now_ms(&l) < t0 + 5000);
	hostlimit_free(hl);
	loop_free(&l);
}

static void test_no_limiter(struct unit_ctx *u)
{
	struct hostlimit_req r = {0};
	struct mf_error e;

	UNIT_CHECK(u, hostlimit_acquire(NULL, &r, "h:1", "h:1", &e) == 1);
	hostlimit_release(NULL, &r, 0);
	hostlimit_cancel(NULL, &r);
	hostlimit_throttle(NULL, "h:1", 10, "x");
	UNIT_CHECK(u, hostlimit_count(NULL) == 0);
}

/* --max-bytes-per-second: the bucket starts empty, never grants more than
 * rate × elapsed from the host's first byte, says how long to wait, and
 * charges a host that is both sides twice. */
static void test_byte_bucket(struct unit_ctx *u)
{
	struct loop l;
	struct hostlimit *hl;
	struct hostlimit_stat st;
	struct mf_error e;
	struct who a, b;
	char log[16] = "";
	uint64_t wait = 0, got = 0, rate = 200000, t0;
	size_t n;

	UNIT_CHECK(u, loop_init(&l, 64) == 0);
	UNIT_CHECK(u, hostlimit_new(&hl, &l, 0) == 0);
	who_init(&a, 'a', log, &l);
	who_init(&b, 'b', log, &l);
	UNIT_CHECK(u, hostlimit_take(hl, &a.r, 1000, &wait) == 1000); /* no rate: all */
	hostlimit_set_rate(hl, rate);
	UNIT_CHECK(u, hostlimit_acquire(hl, &a.r, "h:1", "g:2", &e) == 1);
	UNIT_CHECK(u, hostlimit_acquire(hl, &b.r, "h:1", "h:1", &e) == 1);
	UNIT_CHECK(u, hostlimit_take(hl, &a.r, 65536, &wait) == 0 && wait >= 1); /* empty at first */
	t0 = (uint64_t)time(NULL);
	while ((uint64_t)time(NULL) < t0 + 2) {
		n = hostlimit_take(hl, &a.r, 65536, &wait);
		UNIT_CHECK(u, n <= 65536);
		UNIT_CHECK(u, n || (wait >= 1 && wait <= 1000));
		got += n;
		if (!n)
			usleep((useconds_t)wait * 1000);
	}
	hostlimit_stat(hl, 0, &st);
	UNIT_CHECK(u, !strcmp(st.key, "h:1") && st.bytes == got && got > 0);
	UNIT_CHECK(u, st.bytes * 1000 <= rate * st.ms); /* never above the rate */
	/* b: both sides on h:1, each byte counted twice there */
	hostlimit_stat(hl, 0, &st);
	got = st.bytes;
	usleep(100000);
	n = hostlimit_take(hl, &b.r, 1000, &wait);
	hostlimit_stat(hl, 0, &st);
	UNIT_CHECK(u, n == 1000 && st.bytes == got + 2000);
	hostlimit_paused(hl, &b.r, 7);
	hostlimit_stat(hl, 0, &st);
	UNIT_CHECK(u, st.paused_ms >= 7);
	hostlimit_cancel(hl, &a.r);
	hostlimit_cancel(hl, &b.r);
	UNIT_CHECK(u, hostlimit_count(hl) == 0);
	hostlimit_free(hl);
	loop_free(&l);
}

/* Shared (run --threads): a pair waiting on one loop is granted by a
 * release on another thread, and its granted() runs on its own loop,
 * posted through that loop's inbox. */
struct xt {
	struct loop l;
	struct hostlimit *hl;
	struct who w;
	pthread_t self;
	int ran_on_self;
	char log[8];
};

static void xt_granted(struct hostlimit_req *r)
{
	struct xt *x = (struct xt *)((char *)r - offsetof(struct xt, w));

	x->ran_on_self = pthread_equal(pthread_self(), x->self);
	x->log[0] = 'w';
	hostlimit_release(x->hl, r, 0);
	loop_stop(&x->l);
}

static void *xt_main(void *arg)
{
	struct xt *x = arg;

	x->self = pthread_self();
	loop_run(&x->l);
	return NULL;
}

static void test_shared_cross_thread(struct unit_ctx *u)
{
	struct loop main_l;
	struct xt x;
	struct who a;
	struct mf_error e;
	char log[8] = "";
	pthread_t t;

	memset(&x, 0, sizeof(x));
	UNIT_CHECK(u, loop_init(&main_l, 64) == 0 && loop_inbox_open(&main_l) == 0);
	UNIT_CHECK(u, loop_init(&x.l, 64) == 0 && loop_inbox_open(&x.l) == 0);
	UNIT_CHECK(u, hostlimit_new(&x.hl, &main_l, 1) == 0 && hostlimit_share(x.hl) == 0);
	who_init(&a, 'a', log, &main_l);
	a.r.loop = &main_l;
	UNIT_CHECK(u, hostlimit_acquire(x.hl, &a.r, "h:1", NULL, &e) == 1);
	x.w.r.granted = xt_granted;
	x.w.r.loop = &x.l;
	UNIT_CHECK(u, hostlimit_acquire(x.hl, &x.w.r, "h:1", NULL, &e) == 0);
	UNIT_CHECK(u, pthread_create(&t, NULL, xt_main, &x) == 0);
	hostlimit_release(x.hl, &a.r, 0); /* from this thread: posted to x.l */
	pthread_join(t, NULL);
	UNIT_CHECK(u, x.log[0] == 'w' && x.ran_on_self);
	UNIT_CHECK(u, !hostlimit_posted(&x.w.r) && hostlimit_count(x.hl) == 0);
	hostlimit_free(x.hl);
	loop_free(&x.l);
	loop_free(&main_l);
}

int main(void)
{
	struct unit_ctx u = {0};

	mf_log_set_level(MF_LOG_ERROR);
	UNIT_RUN(&u, test_cap_and_pairs);
	UNIT_RUN(&u, test_fifo_per_host);
	UNIT_RUN(&u, test_throttle_pause);
	UNIT_RUN(&u, test_no_limiter);
	UNIT_RUN(&u, test_byte_bucket);
	UNIT_RUN(&u, test_shared_cross_thread);
	return unit_done(&u);
}
