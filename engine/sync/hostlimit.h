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
 * Not for: what a connection does (worker), reading throttling signals
 * (protocols/throttle), bytes per second.
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

struct hostlimit;
struct hostlimit_host;

/* One connection pair's request, embedded in its owner (a worker). Zero it
 * before first use; only granted is the owner's to set. */
struct hostlimit_req {
	/* Its queued request was granted (called from the loop, outside
	 * every other callback): the legs are held now. */
	void (*granted)(struct hostlimit_req *r);
	/* private */
	struct hostlimit_host *host[2];
	int held[2];
	int state;
	struct hostlimit_req *prev, *next;
};

/* A limiter of max connections per host on loop l (0: no cap, only the
 * throttling pauses): 0, or -ENOMEM. */
int hostlimit_new(struct hostlimit **out, struct loop *l, unsigned max);
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

/* The host behind key throttles: new slots there are granted no earlier
 * than ms from now (a later call may extend it, never shorten it). The
 * first call of a pause logs one line naming the host, the delay and why
 * (already escaped by mf_log). */
void hostlimit_throttle(struct hostlimit *hl, const char *key, uint64_t ms, const char *why);

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
