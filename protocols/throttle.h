/*
 * throttle — what a server's reply says about being throttled: RFC 5530's
 * [THROTTLED] and [UNAVAILABLE] response codes, Microsoft 365's "Request is
 * throttled. Suggested Backoff Time: N milliseconds", a BYE carrying either,
 * and the backoff hint the text suggests. Pure: no I/O, no allocation, any
 * bytes in (the text comes from a hostile server), bounded result out.
 *
 * Not for: acting on it (the host limiter pauses the host, the worker
 * reconnects: engine/sync/hostlimit, worker.c), or parsing the response
 * itself (imap_parse hands over its code atom and text).
 */
#ifndef MF_THROTTLE_H
#define MF_THROTTLE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

/* The mf_error code of a connection ended because the server throttles
 * (imap_client): transient, reconnect after the hint. */
#define THROTTLE_ERR (-EAGAIN)
/* A hint above this is taken as this: a hostile or confused server cannot
 * park a connection for days. */
#define THROTTLE_HINT_MAX_MS 300000u

struct throttle_hint {
	int throttled;	/* the reply is a throttling signal */
	uint64_t ms;	/* suggested backoff, 0 if none was given; at most
			 * THROTTLE_HINT_MAX_MS */
};

/* The reply whose response code atom is code[0..code_len) (may be NULL/0,
 * without brackets: "THROTTLED") and whose human text is text[0..text_len).
 * Returns 1 if it is a throttling signal (*out filled), else 0 (*out
 * zeroed). A hint is read from "Suggested Backoff Time: N" followed by
 * "milliseconds"/"ms" (the default) or "seconds"/"s", case-insensitive,
 * anywhere in the text; digits beyond 12 make it the maximum. */
int throttle_parse(const char *code, size_t code_len, const char *text, size_t text_len,
		   struct throttle_hint *out);

/* The same over one already-formatted line, e.g. an mf_error message
 * ("destination d@h: server throttles: [THROTTLED] ..."): a bracketed
 * [THROTTLED] or [UNAVAILABLE] anywhere counts as the code. */
int throttle_parse_line(const char *s, size_t n, struct throttle_hint *out);

#endif
