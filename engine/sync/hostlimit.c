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
 * Not for: the worker's open and close paths (worker.c calls in here).
 */
#include "engine/sync/hostlimit.h"

#include <errno.h>
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

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
};

struct hostlimit {
	struct loop *loop;
	unsigned max;
	struct hostlimit_host **h;
	size_t nh, ch;
	unsigned count, peak;
	struct hostlimit_req *qhead, *qtail;	/* queued, in order */
	struct hostlimit_req *ghead, *gtail;	/* granted, call pending */
	struct loop_task task;
};

static void pump(struct hostlimit *hl);

int hostlimit_new(struct hostlimit **out, struct loop *l, unsigned max)
{
	struct hostlimit *hl = calloc(1, sizeof(*hl));

	*out = NULL;
	if (!hl)
		return -ENOMEM;
	hl->loop = l;
	hl->max = max ? max : UINT32_MAX; /* 0: no cap, only the pauses */
	*out = hl;
	return 0;
}

void hostlimit_free(struct hostlimit *hl)
{
	if (!hl)
		return;
	for (size_t i = 0; i < hl->nh; i++)
		free(hl->h[i]);
	free(hl->h);
	free(hl);
}

unsigned hostlimit_count(const struct hostlimit *hl)
{
	return hl ? hl->count : 0;
}

unsigned hostlimit_peak(const struct hostlimit *hl)
{
	return hl ? hl->peak : 0;
}

int hostlimit_held(const struct hostlimit_req *r, int leg)
{
	return r->held[leg];
}

int hostlimit_waiting(const struct hostlimit_req *r)
{
	return r->state == REQ_QUEUED || r->state == REQ_GRANTED;
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

		/* nobody waits for the pause's end: it must not keep the loop */
		if (h && !--h->waiting && h->timer.armed)
			loop_timer_cancel(hl->loop, &h->timer);
	}
}

static void grant_task(struct loop *l, struct loop_task *t)
{
	struct hostlimit *hl = (struct hostlimit *)((char *)t - offsetof(struct hostlimit, task));
	struct hostlimit_req *r;

	(void)l;
	while ((r = hl->ghead)) {
		unlink_req(&hl->ghead, &hl->gtail, r);
		r->state = REQ_HELD;
		r->granted(r); /* may release, cancel or ask again */
	}
}

static void pause_end(struct loop *l, struct loop_timer *t)
{
	struct hostlimit_host *h =
	    (struct hostlimit_host *)((char *)t - offsetof(struct hostlimit_host, timer));

	(void)l;
	pump(h->hl);
}

/* Grants what fits, in order; arms the end of a pause that holds back a
 * waiting request. Calls nobody back directly (grant_task does). */
static void pump(struct hostlimit *hl)
{
	uint64_t now = loop_now_ms(hl->loop);
	struct hostlimit_req *r, *next;

	for (size_t i = 0; i < hl->nh; i++)
		hl->h[i]->blocked = 0;
	for (r = hl->qhead; r; r = next) {
		next = r->next;
		if (fits(hl, r, now)) {
			dequeue(hl, r);
			take(hl, r);
			r->state = REQ_GRANTED;
			append_req(&hl->ghead, &hl->gtail, r);
			continue;
		}
		/* It blocks the hosts that hold it back (full, paused, or
		 * promised to an earlier waiter), not the one it had room at:
		 * a pause slows only that host. */
		for (int i = 0; i < 2; i++) {
			struct hostlimit_host *h = r->host[i];

			if (!h || !(h->blocked || h->paused_until > now || h->open + need(r, h) > hl->max))
				continue;
			if (h->paused_until > now && (!h->timer.armed || h->timer.cancelled))
				loop_timer_start(hl->loop, &h->timer, h->paused_until - now, pause_end);
			h->blocked = 1;
		}
	}
	if (hl->ghead && !hl->task.queued) {
		hl->task.fn = grant_task;
		loop_defer(hl->loop, &hl->task);
	}
}

int hostlimit_acquire(struct hostlimit *hl, struct hostlimit_req *r, const char *key0,
		      const char *key1, struct mf_error *err)
{
	const char *keys[2] = {key0, key1};
	uint64_t now;

	if (!hl)
		return 1;
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
	now = loop_now_ms(hl->loop);
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
	pump(hl);
	if (r->state == REQ_GRANTED) {
		unlink_req(&hl->ghead, &hl->gtail, r);
		r->state = REQ_HELD;
		return 1;
	}
	return 0;
}

void hostlimit_release(struct hostlimit *hl, struct hostlimit_req *r, int leg)
{
	struct hostlimit_host *h = r->host[leg];

	if (!hl || !r->held[leg] || !h)
		return;
	r->held[leg] = 0;
	h->open--;
	hl->count--;
	if (!r->held[0] && !r->held[1] && r->state == REQ_HELD)
		r->state = REQ_IDLE;
	if (hl->qhead)
		pump(hl);
}

void hostlimit_cancel(struct hostlimit *hl, struct hostlimit_req *r)
{
	if (!hl)
		return;
	if (r->state == REQ_QUEUED)
		dequeue(hl, r);
	else if (r->state == REQ_GRANTED)
		unlink_req(&hl->ghead, &hl->gtail, r);
	r->state = REQ_HELD; /* what it holds goes below */
	hostlimit_release(hl, r, 0);
	hostlimit_release(hl, r, 1);
	r->state = REQ_IDLE;
	if (hl->qhead)
		pump(hl);
}

void hostlimit_throttle(struct hostlimit *hl, const char *key, uint64_t ms, const char *why)
{
	struct hostlimit_host *h;
	uint64_t now;

	if (!hl || !key || !(h = host_get(hl, key)))
		return;
	now = loop_now_ms(hl->loop);
	h->throttles++;
	if (h->paused_until <= now)
		mf_log(MF_LOG_INFO, "host %s throttles (%s): new connections to it wait %.1f s", h->key,
		       why, (double)ms / 1000.0);
	if (now + ms > h->paused_until)
		h->paused_until = now + ms;
}

size_t hostlimit_hosts(const struct hostlimit *hl)
{
	return hl ? hl->nh : 0;
}

void hostlimit_host_info(const struct hostlimit *hl, size_t i, struct hostlimit_info *out)
{
	const struct hostlimit_host *h = hl->h[i];
	uint64_t now = loop_now_ms(hl->loop);

	out->key = h->key;
	out->open = h->open;
	out->peak = h->peak;
	out->waiting = h->waiting;
	out->throttles = h->throttles;
	out->backoff_ms = h->paused_until > now ? h->paused_until - now : 0;
}
