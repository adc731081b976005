/*
 * hostlimit — connections per host, shared by the jobs of one loop, and
 * the pauses throttling hosts impose (see hostlimit.h).
 *
 * Hosts are few (one per server, not per account): a small array searched
 * by key when a pair asks, never on the data path. Requests wait in one
 * FIFO over all hosts; pump() walks it in order and grants what fits,
 * except that a request which cannot be granted blocks its hosts for the
 * requests behind it (first come, first served per host, so a pair that
 * needs two slots of one host is not starved by single ones), while a
 * request for another host may pass it.
 *
 * Locking: every entry point takes hl->mu (recursive, since pump() runs
 * inside acquire, release and cancel); callbacks (granted) are never called
 * with it held. Time comes from CLOCK_MONOTONIC, not a loop's cached clock,
 * so that every thread reads the same one.
 *
 * Not for: the worker's open and close paths (worker.c calls in here).
 */
#include "engine/sync/hostlimit.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { REQ_IDLE, REQ_QUEUED, REQ_GRANTED, REQ_HELD };

struct hostlimit_host {
	struct hostlimit *hl;
	char key[HOSTLIMIT_KEY_MAX];
	unsigned open, peak;
	unsigned waiting;	/* legs of queued requests */
	int blocked;		/* pump(): an earlier request waits for it */
	uint64_t paused_until;	/* loop ms */
	uint64_t throttles;	/* throttling signals seen (status metrics) */
	struct loop_timer timer;	/* the pause's end, while requests wait */
	/* --max-bytes-per-second: the bucket, in byte-milliseconds (a byte
	 * is 1000), refilled at rate per ms of the loop's clock */
	int started;
	uint64_t tok, refill_ms, first_ms, last_ms;
	uint64_t bytes, paused_ms;
};

struct hostlimit {
	struct loop *loop;
	unsigned max;
	uint64_t rate;		/* bytes per second per host, 0: none */
	struct hostlimit_host **h;
	size_t nh, ch;
	unsigned count, peak;
	struct hostlimit_req *qhead, *qtail;	/* queued, in order */
	struct hostlimit_req *ghead, *gtail;	/* granted, call pending (one loop) */
	struct loop_task task;
	pthread_mutex_t mu;
	int shared;		/* hostlimit_share: grants are posted to their loops */
	pthread_t owner;	/* the thread of loop (its timers) */
	struct loop_task pump_task;	/* shared: a pump on the owner's loop */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int on_owner(const struct hostlimit *hl)
{
	return !hl->shared || pthread_equal(pthread_self(), hl->owner);
}

static void pump(struct hostlimit *hl, struct hostlimit_req *self);

int hostlimit_new(struct hostlimit **out, struct loop *l, unsigned max)
{
	struct hostlimit *hl = calloc(1, sizeof(*hl));

	*out = NULL;
	if (!hl)
		return -ENOMEM;
	hl->loop = l;
	hl->max = max ? max : UINT32_MAX; /* 0: no cap, only the pauses */
	{
		pthread_mutexattr_t a;

		pthread_mutexattr_init(&a);
		pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&hl->mu, &a);
		pthread_mutexattr_destroy(&a);
	}
	hl->owner = pthread_self();
	*out = hl;
	return 0;
}

static void pump_task_fn(struct loop *l, struct loop_task *t)
{
	struct hostlimit *hl = (struct hostlimit *)((char *)t - offsetof(struct hostlimit, pump_task));

	(void)l;
	pthread_mutex_lock(&hl->mu);
	pump(hl, NULL);
	pthread_mutex_unlock(&hl->mu);
}

int hostlimit_share(struct hostlimit *hl)
{
	if (!hl->loop->inbox)
		return -EINVAL;
	pthread_mutex_lock(&hl->mu);
	hl->shared = 1;
	hl->owner = pthread_self();
	hl->pump_task.fn = pump_task_fn;
	pthread_mutex_unlock(&hl->mu);
	return 0;
}

void hostlimit_free(struct hostlimit *hl)
{
	if (!hl)
		return;
	for (size_t i = 0; i < hl->nh; i++)
		free(hl->h[i]);
	free(hl->h);
	pthread_mutex_destroy(&hl->mu);
	free(hl);
}

#define LOCKED(hl, expr)                                                                           \
	do {                                                                                       \
		pthread_mutex_lock(&(hl)->mu);                                                     \
		expr;                                                                              \
		pthread_mutex_unlock(&(hl)->mu);                                                   \
	} while (0)

unsigned hostlimit_count(const struct hostlimit *hl)
{
	unsigned n = 0;

	if (hl)
		LOCKED((struct hostlimit *)hl, n = hl->count);
	return n;
}

unsigned hostlimit_peak(const struct hostlimit *hl)
{
	unsigned n = 0;

	if (hl)
		LOCKED((struct hostlimit *)hl, n = hl->peak);
	return n;
}

int hostlimit_held(const struct hostlimit_req *r, int leg)
{
	int v;

	if (!r->hl)
		return r->held[leg];
	LOCKED(r->hl, v = r->held[leg]);
	return v;
}

int hostlimit_waiting(const struct hostlimit_req *r)
{
	int v;

	if (!r->hl)
		return 0;
	LOCKED(r->hl, v = r->state == REQ_QUEUED || r->state == REQ_GRANTED);
	return v;
}

int hostlimit_posted(const struct hostlimit_req *r)
{
	int v;

	if (!r->hl)
		return 0;
	LOCKED(r->hl, v = r->posted);
	return v;
}

static struct hostlimit_host *host_get(struct hostlimit *hl, const char *key)
{
	struct hostlimit_host *h;

	for (size_t i = 0; i < hl->nh; i++)
		if (!strcmp(hl->h[i]->key, key))
			return hl->h[i];
	if (hl->nh == hl->ch) {
		size_t nc = hl->ch ? hl->ch * 2 : 8;
		struct hostlimit_host **n = realloc(hl->h, nc * sizeof(*n));

		if (!n)
			return NULL;
		hl->h = n;
		hl->ch = nc;
	}
	if (!(h = calloc(1, sizeof(*h))))
		return NULL;
	h->hl = hl;
	snprintf(h->key, sizeof(h->key), "%s", key);
	hl->h[hl->nh++] = h;
	return h;
}

/* Slots r needs at h (0, 1 or 2). */
static unsigned need(const struct hostlimit_req *r, const struct hostlimit_host *h)
{
	return (r->host[0] == h) + (r->host[1] == h);
}

static int fits(const struct hostlimit *hl, const struct hostlimit_req *r, uint64_t now)
{
	for (int i = 0; i < 2; i++) {
		const struct hostlimit_host *h = r->host[i];

		if (h && (h->blocked || h->paused_until > now || h->open + need(r, h) > hl->max))
			return 0;
	}
	return 1;
}

static void take(struct hostlimit *hl, struct hostlimit_req *r)
{
	for (int i = 0; i < 2; i++) {
		struct hostlimit_host *h = r->host[i];

		if (!h)
			continue;
		r->held[i] = 1;
		hl->count++;
		if (++h->open > h->peak)
			h->peak = h->open;
		if (h->open > hl->peak)
			hl->peak = h->open;
	}
}

static void unlink_req(struct hostlimit_req **head, struct hostlimit_req **tail,
		       struct hostlimit_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		*head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		*tail = r->prev;
	r->prev = r->next = NULL;
}

static void append_req(struct hostlimit_req **head, struct hostlimit_req **tail,
		       struct hostlimit_req *r)
{
	r->next = NULL;
	r->prev = *tail;
	if (*tail)
		(*tail)->next = r;
	else
		*head = r;
	*tail = r;
}

static void dequeue(struct hostlimit *hl, struct hostlimit_req *r)
{
	unlink_req(&hl->qhead, &hl->qtail, r);
	for (int i = 0; i < 2; i++) {
		struct hostlimit_host *h = r->host[i];

		/* nobody waits for the pause's end: it must not keep the loop
		 * (the timer is the owner's loop's: only that thread reads it) */
		if (h && !--h->waiting && on_owner(hl) && h->timer.armed)
			loop_timer_cancel(hl->loop, &h->timer);
	}
}

static void grant_task(struct loop *l, struct loop_task *t)
{
	struct hostlimit *hl = (struct hostlimit *)((char *)t - offsetof(struct hostlimit, task));
	struct hostlimit_req *r;

	(void)l;
	for (;;) {
		pthread_mutex_lock(&hl->mu);
		if ((r = hl->ghead)) {
			unlink_req(&hl->ghead, &hl->gtail, r);
			r->state = REQ_HELD;
		}
		pthread_mutex_unlock(&hl->mu);
		if (!r)
			break;
		r->granted(r); /* may release, cancel or ask again */
	}
}

/* Shared: a grant arrived on r's own loop. A request cancelled (or granted
 * again at once) since is left alone. */
static void req_post_fn(struct loop *l, struct loop_task *t)
{
	struct hostlimit_req *r = (struct hostlimit_req *)((char *)t - offsetof(struct hostlimit_req, post));
	int call;

	(void)l;
	pthread_mutex_lock(&r->hl->mu);
	r->posted = 0;
	call = r->state == REQ_GRANTED;
	if (call)
		r->state = REQ_HELD;
	pthread_mutex_unlock(&r->hl->mu);
	if (call)
		r->granted(r);
}

static void pause_end(struct loop *l, struct loop_timer *t)
{
	struct hostlimit_host *h =
	    (struct hostlimit_host *)((char *)t - offsetof(struct hostlimit_host, timer));

	(void)l;
	pthread_mutex_lock(&h->hl->mu);
	pump(h->hl, NULL);
	pthread_mutex_unlock(&h->hl->mu);
}

/* Grants what fits, in order; arms the end of a pause that holds back a
 * waiting request (on the owner's loop: from another thread, a pump is
 * posted there). Calls nobody back directly (grant_task, or a post, does);
 * self, the request being acquired, is only marked granted. Under hl->mu. */
static void pump(struct hostlimit *hl, struct hostlimit_req *self)
{
	uint64_t now = now_ms();
	struct hostlimit_req *r, *next;

	for (size_t i = 0; i < hl->nh; i++)
		hl->h[i]->blocked = 0;
	for (r = hl->qhead; r; r = next) {
		next = r->next;
		if (fits(hl, r, now)) {
			dequeue(hl, r);
			take(hl, r);
			r->state = REQ_GRANTED;
			if (r == self)
				continue;
			if (hl->shared) {
				r->posted = 1;
				r->post.fn = req_post_fn;
				loop_post(r->loop, &r->post);
			} else {
				append_req(&hl->ghead, &hl->gtail, r);
			}
			continue;
		}
		/* It blocks the hosts that hold it back (full, paused, or
		 * promised to an earlier waiter), not the one it had room at:
		 * a pause slows only that host. */
		for (int i = 0; i < 2; i++) {
			struct hostlimit_host *h = r->host[i];

			if (!h || !(h->blocked || h->paused_until > now || h->open + need(r, h) > hl->max))
				continue;
			/* the timer belongs to the owner's loop, which writes it
			 * without hl->mu (loop.c): another thread never reads
			 * it and posts a pump there instead, which arms it */
			if (h->paused_until > now && !on_owner(hl))
				loop_post(hl->loop, &hl->pump_task);
			else if (h->paused_until > now && (!h->timer.armed || h->timer.cancelled))
				loop_timer_start(hl->loop, &h->timer, h->paused_until - now, pause_end);
			h->blocked = 1;
		}
	}
	if (hl->ghead && !hl->task.queued) {
		hl->task.fn = grant_task;
		loop_defer(hl->loop, &hl->task);
	}
}

static int acquire_locked(struct hostlimit *hl, struct hostlimit_req *r, const char *const keys[2],
                          struct mf_error *err);

int hostlimit_acquire(struct hostlimit *hl, struct hostlimit_req *r, const char *key0,
		      const char *key1, struct mf_error *err)
{
	const char *keys[2] = {key0, key1};

	int rc;

	if (!hl)
		return 1;
	pthread_mutex_lock(&hl->mu);
	rc = acquire_locked(hl, r, keys, err);
	pthread_mutex_unlock(&hl->mu);
	return rc;
}

static int acquire_locked(struct hostlimit *hl, struct hostlimit_req *r, const char *const keys[2],
                          struct mf_error *err)
{
	uint64_t now;

	r->hl = hl;
	if (r->state != REQ_IDLE)
		hostlimit_cancel(hl, r);
	r->held[0] = r->held[1] = 0;
	for (int i = 0; i < 2; i++) {
		r->host[i] = NULL;
		if (keys[i] && !(r->host[i] = host_get(hl, keys[i]))) {
			mf_err_set(err, -ENOMEM, "out of memory");
			return -ENOMEM;
		}
	}
	if (r->host[0] && r->host[0] == r->host[1] && hl->max < 2) {
		mf_err_set(err, -EINVAL,
		           "--max-per-host %u cannot hold a source and a destination connection "
		           "to the same host %s at once",
		           hl->max, r->host[0]->key);
		return -EINVAL;
	}
	now = now_ms();
	for (size_t i = 0; i < hl->nh; i++)
		hl->h[i]->blocked = 0;
	if ((!r->host[0] || !r->host[0]->waiting) && (!r->host[1] || !r->host[1]->waiting) &&
	    fits(hl, r, now)) {
		take(hl, r);
		r->state = REQ_HELD;
		return 1;
	}
	/* Behind the waiters for its hosts: pump() says whether it may pass. */
	r->state = REQ_QUEUED;
	append_req(&hl->qhead, &hl->qtail, r);
	for (int i = 0; i < 2; i++)
		if (r->host[i])
			r->host[i]->waiting++;
	pump(hl, r);
	if (r->state == REQ_GRANTED) {
		r->state = REQ_HELD;
		return 1;
	}
	return 0;
}

void hostlimit_release(struct hostlimit *hl, struct hostlimit_req *r, int leg)
{
	struct hostlimit_host *h;

	if (!hl)
		return;
	pthread_mutex_lock(&hl->mu);
	h = r->host[leg];
	if (r->held[leg] && h) {
		r->held[leg] = 0;
		h->open--;
		hl->count--;
		if (!r->held[0] && !r->held[1] && r->state == REQ_HELD)
			r->state = REQ_IDLE;
		if (hl->qhead)
			pump(hl, NULL);
	}
	pthread_mutex_unlock(&hl->mu);
}

void hostlimit_cancel(struct hostlimit *hl, struct hostlimit_req *r)
{
	if (!hl)
		return;
	pthread_mutex_lock(&hl->mu);
	if (r->state == REQ_QUEUED)
		dequeue(hl, r);
	else if (r->state == REQ_GRANTED && !hl->shared)
		unlink_req(&hl->ghead, &hl->gtail, r);
	/* shared: a post on its way finds the state changed and does nothing */
	r->state = REQ_HELD; /* what it holds goes below */
	hostlimit_release(hl, r, 0);
	hostlimit_release(hl, r, 1);
	r->state = REQ_IDLE;
	if (hl->qhead)
		pump(hl, NULL);
	pthread_mutex_unlock(&hl->mu);
}

void hostlimit_throttle(struct hostlimit *hl, const char *key, uint64_t ms, const char *why)
{
	struct hostlimit_host *h;
	uint64_t now;

	if (!hl || !key)
		return;
	pthread_mutex_lock(&hl->mu);
	if ((h = host_get(hl, key))) {
		now = now_ms();
		h->throttles++;
		if (h->paused_until <= now)
			mf_log(MF_LOG_INFO, "host %s throttles (%s): new connections to it wait %.1f s",
			       h->key, why, (double)ms / 1000.0);
		if (now + ms > h->paused_until)
			h->paused_until = now + ms;
	}
	pthread_mutex_unlock(&hl->mu);
}

/* ---- bytes per second ------------------------------------------------------ */

void hostlimit_set_rate(struct hostlimit *hl, uint64_t bytes_per_second)
{
	if (hl)
		hl->rate = bytes_per_second;
}

uint64_t hostlimit_rate(const struct hostlimit *hl)
{
	return hl ? hl->rate : 0;
}

/* The bucket's capacity in byte-milliseconds: a quarter second of rate. */
static uint64_t burst(const struct hostlimit *hl)
{
	uint64_t b = hl->rate / 4;

	return (b < HOSTLIMIT_BURST_MIN ? HOSTLIMIT_BURST_MIN : b) * 1000u;
}

static void refill(const struct hostlimit *hl, struct hostlimit_host *h, uint64_t now)
{
	if (!h->started) {
		/* empty at the first byte: bytes <= rate * elapsed from here */
		h->started = 1;
		h->tok = 0;
		h->refill_ms = h->first_ms = h->last_ms = now;
		return;
	}
	if (now > h->refill_ms) {
		uint64_t add = (now - h->refill_ms) * hl->rate, cap = burst(hl);

		h->tok = add > cap || h->tok + add > cap ? cap : h->tok + add;
		h->refill_ms = now;
	}
}

size_t hostlimit_take(struct hostlimit *hl, struct hostlimit_req *r, size_t n, uint64_t *wait_ms)
{
	struct hostlimit_host *hs[2];
	uint64_t now, allow = n, want = n;
	size_t nh = 0;

	*wait_ms = 0;
	if (!hl || !hl->rate || !n)
		return n;
	for (int i = 0; i < 2; i++)
		if (r->host[i] && (i == 0 || r->host[1] != r->host[0]))
			hs[nh++] = r->host[i];
	if (!nh)
		return n;
	pthread_mutex_lock(&hl->mu);
	now = now_ms();
	/* a small grant is not worth a write: wait for a useful amount */
	if (want > 4096)
		want = 4096;
	for (size_t i = 0; i < nh; i++) {
		uint64_t mult = need(r, hs[i]), avail;

		refill(hl, hs[i], now);
		avail = hs[i]->tok / 1000u / mult;
		if (avail < allow)
			allow = avail;
	}
	if (allow < want) {
		uint64_t w = 1;

		for (size_t i = 0; i < nh; i++) {
			uint64_t mult = need(r, hs[i]), goal = want * mult * 1000u, cap = burst(hl);

			if (goal > cap)
				goal = cap;
			if (hs[i]->tok < goal) {
				uint64_t ms = (goal - hs[i]->tok + hl->rate - 1) / hl->rate;

				if (ms > w)
					w = ms;
			}
		}
		*wait_ms = w;
		pthread_mutex_unlock(&hl->mu);
		return 0;
	}
	for (size_t i = 0; i < nh; i++) {
		uint64_t mult = need(r, hs[i]);

		hs[i]->tok -= allow * mult * 1000u;
		hs[i]->bytes += allow * mult;
		hs[i]->last_ms = hs[i]->refill_ms; /* the latest clock the bucket saw */
	}
	pthread_mutex_unlock(&hl->mu);
	return (size_t)allow;
}

void hostlimit_paused(struct hostlimit *hl, struct hostlimit_req *r, uint64_t ms)
{
	if (!hl)
		return;
	pthread_mutex_lock(&hl->mu);
	for (int i = 0; i < 2; i++)
		if (r->host[i] && (i == 0 || r->host[1] != r->host[0]))
			r->host[i]->paused_ms += ms;
	pthread_mutex_unlock(&hl->mu);
}

size_t hostlimit_nhosts(const struct hostlimit *hl)
{
	size_t n = 0;

	if (hl)
		LOCKED((struct hostlimit *)hl, n = hl->nh);
	return n;
}

void hostlimit_stat(const struct hostlimit *hl, size_t i, struct hostlimit_stat *out)
{
	const struct hostlimit_host *h;

	pthread_mutex_lock((pthread_mutex_t *)&hl->mu);
	h = hl->h[i];
	memset(out, 0, sizeof(*out));
	snprintf(out->key, sizeof(out->key), "%s", h->key);
	out->bytes = h->bytes;
	out->ms = h->started ? h->last_ms - h->first_ms : 0;
	out->paused_ms = h->paused_ms;
	out->peak = h->peak;
	pthread_mutex_unlock((pthread_mutex_t *)&hl->mu);
}

size_t hostlimit_hosts(const struct hostlimit *hl)
{
	return hostlimit_nhosts(hl);
}

void hostlimit_host_info(const struct hostlimit *hl, size_t i, struct hostlimit_info *out)
{
	const struct hostlimit_host *h;
	uint64_t now = now_ms();

	pthread_mutex_lock((pthread_mutex_t *)&hl->mu);
	h = hl->h[i];
	out->key = h->key;
	out->open = h->open;
	out->peak = h->peak;
	out->waiting = h->waiting;
	out->throttles = h->throttles;
	out->backoff_ms = h->paused_until > now ? h->paused_until - now : 0;
	pthread_mutex_unlock((pthread_mutex_t *)&hl->mu);
}
