/*
 * hostlimit — --max-per-host: a cap on the connections open to each server
 * host ("host:port" as given), shared by every job on one loop, and the
 * pause a throttling host imposes on new connections (DESIGN §2
 * scheduler). Its owner is whoever starts the jobs (run, migrate): one per
 * loop, passed in job_opts, freed after the loop has run.
 *
 * A connection pair asks for its slots together (source host and
 * destination host, the same host twice when both sides live there): a
 * request is granted whole or not at all, so no pair ever holds one slot
 * while it waits for another, and jobs cannot deadlock each other. Waiting
 * requests are served first come, first served per host; a waiting pair
 * holds nothing and never blocks the loop: granted() is called from the
 * loop when its slots are free.
 *
 * The invariant the owner checks at the end of a run: every slot granted
 * is released exactly once (a connection closed, an open that failed, a
 * pair reconnecting, a job ending), so hostlimit_count() is 0 once every
 * job has ended. Releasing twice is harmless: a leg knows whether it holds
 * its slot.
 *
 * --max-bytes-per-second: a token bucket per host, refilled from the
 * loop's clock, that every connection pair moving message bytes to or from
 * that host draws on (hostlimit_take). It counts message bytes only (the
 * literal a FETCH or RETR brings, the literal an APPEND or DATA sends),
 * once per host they cross: a host that is both source and destination is
 * charged twice for each message. The bucket starts empty when the host
 * moves its first byte and holds at most a quarter second of rate (at
 * least HOSTLIMIT_BURST_MIN), so over any stretch from a host's first
 * byte the bytes moved never exceed the rate times the time elapsed
 * (hostlimit_stat's numbers show it).
 *
 * Shared by several loops (run --threads, hostlimit_share): every call
 * takes the limiter's mutex; a request queued on one loop and granted by a
 * release on another has its granted() posted to its own loop (loop_post),
 * and the pauses' timers run on the owner's loop (the one given to
 * hostlimit_new). Without hostlimit_share nothing is posted: one loop, as
 * before.
 *
 * Not for: what a connection does (worker), reading throttling signals
 * (protocols/throttle), pausing a connection (copy.c does, on a timer of
 * its own loop).
 */
#ifndef MF_HOSTLIMIT_H
#define MF_HOSTLIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/err.h"
#include "engine/runtime/loop.h"

/* Bytes of a host key ("host:port"), NUL included. */
#define HOSTLIMIT_KEY_MAX 300
#define HOSTLIMIT_MAX 100000u
/* --max-bytes-per-second: the smallest rate and the smallest bucket. */
#define HOSTLIMIT_RATE_MIN 1024u
#define HOSTLIMIT_BURST_MIN 16384u

struct hostlimit;
struct hostlimit_host;

/* One connection pair's request, embedded in its owner (a worker). Zero it
 * before first use; only granted and loop are the owner's to set. */
struct hostlimit_req {
	/* Its queued request was granted (called from the loop, outside
	 * every other callback): the legs are held now. */
	void (*granted)(struct hostlimit_req *r);
	struct loop *loop;	/* the owner's loop (granted runs there) */
	/* private */
	struct hostlimit *hl;
	struct hostlimit_host *host[2];
	int held[2];
	int state;
	int posted;		/* shared: post is on its way to loop */
	struct loop_task post;
	struct hostlimit_req *prev, *next;
};

/* A limiter of max connections per host on loop l (0: no cap, only the
 * throttling pauses): 0, or -ENOMEM. */
int hostlimit_new(struct hostlimit **out, struct loop *l, unsigned max);
/* From now on several loops (threads) use hl; their loops have inboxes
 * (loop_inbox_open), the owner's too. 0, or a negative errno. */
int hostlimit_share(struct hostlimit *hl);
/* Frees it; the loop has run out (no timer of it armed, no task queued),
 * every request was released or cancelled. */
void hostlimit_free(struct hostlimit *hl);
/* Slots held now, over every host: 0 once every job has ended. */
unsigned hostlimit_count(const struct hostlimit *hl);
/* The most slots ever held at once on one host (for tests and reports). */
unsigned hostlimit_peak(const struct hostlimit *hl);

/* Asks for one slot at key0 and one at key1 (either may be NULL: no
 * host), both at once. Returns 1: held now; 0: queued, r->granted follows
 * from the loop; -EINVAL with err: the cap can never hold it (both on one
 * host with a cap of 1). With hl NULL: 1, nothing counted. */
int hostlimit_acquire(struct hostlimit *hl, struct hostlimit_req *r, const char *key0,
		      const char *key1, struct mf_error *err);
/* Releases leg (0 or 1) of r if it holds its slot; nothing otherwise. */
void hostlimit_release(struct hostlimit *hl, struct hostlimit_req *r, int leg);
/* Takes r out of the queue (or out of the granted ones whose call is
 * pending) and releases every leg it holds: r may be freed afterwards. */
void hostlimit_cancel(struct hostlimit *hl, struct hostlimit_req *r);
/* 1 if r holds leg's slot. */
int hostlimit_held(const struct hostlimit_req *r, int leg);
/* 1 if r waits: queued, or granted with its call still to come. */
int hostlimit_waiting(const struct hostlimit_req *r);
/* 1 while a grant's call is on its way to r's loop (shared): r must not
 * be freed before it arrived. */
int hostlimit_posted(const struct hostlimit_req *r);

/* The host behind key throttles: new slots there are granted no earlier
 * than ms from now (a later call may extend it, never shorten it). The
 * first call of a pause logs one line naming the host, the delay and why
 * (already escaped by mf_log). */
void hostlimit_throttle(struct hostlimit *hl, const char *key, uint64_t ms, const char *why);

/* --max-bytes-per-second: message bytes per second per host (0: none). */
void hostlimit_set_rate(struct hostlimit *hl, uint64_t bytes_per_second);
uint64_t hostlimit_rate(const struct hostlimit *hl);
/* Of n message bytes the pair r (holding its slots) is about to move, how
 * many its hosts' buckets allow now: n, less, or 0 (then *wait_ms says
 * when to ask again). What it returns is taken from the buckets. With hl
 * NULL or no rate: n. */
size_t hostlimit_take(struct hostlimit *hl, struct hostlimit_req *r, size_t n,
                      uint64_t *wait_ms);
/* r's connection waited ms for its hosts' buckets (counted per host). */
void hostlimit_paused(struct hostlimit *hl, struct hostlimit_req *r, uint64_t ms);

/* One host, for reports: its key, message bytes charged to its bucket,
 * milliseconds from its first to its last byte, and the time connections
 * waited for its bucket (summed over connections). */
struct hostlimit_stat {
	char key[HOSTLIMIT_KEY_MAX];
	uint64_t bytes, ms, paused_ms;
	unsigned peak;
};
size_t hostlimit_nhosts(const struct hostlimit *hl);
void hostlimit_stat(const struct hostlimit *hl, size_t i, struct hostlimit_stat *out);

/* What the status server shows per host (engine/cli/status*): the hosts
 * seen so far, i < hostlimit_hosts(); key stays valid while hl lives. */
struct hostlimit_info {
	const char *key;
	unsigned open, peak, waiting;
	uint64_t throttles;	/* throttling signals seen */
	uint64_t backoff_ms;	/* what is left of the current pause */
};
size_t hostlimit_hosts(const struct hostlimit *hl);
void hostlimit_host_info(const struct hostlimit *hl, size_t i, struct hostlimit_info *out);

#endif
