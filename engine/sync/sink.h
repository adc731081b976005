/*
 * sink — where copied messages go, as the copy path (copy.c) sees it.
 *
 * The copy machinery owns batching, streaming with backpressure and the
 * intent journal; a sink owns the wire (or the file) and says what it can
 * do. One batch is what a sink stores or refuses as one: a MULTIAPPEND for
 * IMAP, one transaction for SMTP/LMTP. The order of calls for a batch:
 *
 *   batch_begin → (msg_begin → data… → msg_end)… → commit | discard
 *
 * data() is only called with at most space() bytes; when space() is 0 the
 * copy path calls want_space() and waits for sink_writable(). The intents
 * of a batch are recorded durably just before commit(), the commit point
 * (DESIGN §4): before it nothing can have been stored, after it the sink
 * answers with sink_batch_done() and a verdict. A sink may answer before
 * the batch ends (a refusal on a literal's header): the verdict says so
 * (early) and the copy path discards the rest.
 *
 * Capabilities say what a sink can carry; where one is missing the copy
 * logic adapts (no folders: one destination; no flags: dropped with one
 * notice; no ids: settle finds messages by content or not at all).
 *
 * A dry run's sink is the counting sink (sink_count.c) wrapped around the
 * real one: its session, none of its writes.
 *
 * Not for: reading the destination back (settle, dedupe and the flag diff
 * still use the IMAP client: SINK_FIND/SINK_FLAGS say when they may).
 */
#ifndef MF_SINK_H
#define MF_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "engine/runtime/loop.h"

struct batch;
struct worker;
struct sink;

enum sink_cap {
	SINK_FOLDERS = 1u << 0,	/* mailboxes: LIST, CREATE, RENAME */
	SINK_FLAGS = 1u << 1,	/* flags and keywords stored and changed later */
	SINK_IDS = 1u << 2,	/* each stored message gets an id (APPENDUID) */
	SINK_EXPUNGE = 1u << 3,	/* a stored message can be removed */
	SINK_FIND = 1u << 4,	/* messages can be found again by content */
	SINK_BATCH = 1u << 5,	/* several messages commit as one (MULTIAPPEND) */
	/* its session ends with the server's answer to a logout, and the
	 * sink tells the job when (job_session_closed): the job waits */
	SINK_LOGOUT = 1u << 6,
	/* counts, stores nothing (--dry-run, sink_count.c): a source sends a
	 * message's size, never its bytes; verdicts say "counted" */
	SINK_COUNTS = 1u << 7,
	/* storing a message again stores nothing new (the archive is
	 * content-addressed): a batch may cross its commit point before its
	 * intents are durable, since a crash between the two costs only a
	 * fetch again; the state's next commit (the tick's) takes them */
	SINK_IDEMPOTENT = 1u << 8,
};

/* One message as it enters the sink: the source's values, validated and
 * rewritten from parsed fields (flags: system flags and atoms only; date:
 * RFC 3501 date-time). */
struct sink_msg {
	uint32_t uid;		/* the source's id, for error lines */
	uint64_t size;
	const char *flags;	/* "\Seen $Label", may be empty */
	size_t flags_len;
	const char *date;	/* "01-Jan-2026 10:00:00 +0000" */
};

/* A sink's answer to one batch. */
struct sink_verdict {
	int ok;			/* stored, every message */
	int temporary;		/* refused for now (SMTP 4xx): worth another try later */
	int early;		/* answered before the batch was committed */
	int counted;		/* counted, not stored (SINK_COUNTS): nothing to record */
	uint32_t dst_uidv;	/* SINK_IDS: the id space (UIDVALIDITY), 0 unknown */
	const uint32_t *ids;	/* SINK_IDS: one id per message, or NULL */
	unsigned nids;
	const char *why;	/* a refusal's text, already escaped for a log line */
};

struct mf_error;

struct sink_ops {
	const char *kind;
	unsigned caps;
	/* The session: open() connects and logs in; sink_ready(w) or
	 * sink_failed(w, err) follows from the loop. close() logs out when
	 * graceful, else drops the connection; nothing if it is closed
	 * already (safe inside the sink's own callbacks). release() frees
	 * what a closed session holds, outside every callback. wire(): the
	 * bytes that crossed the wire, kept after close. */
	int (*open)(struct sink *s, struct mf_error *err);
	void (*close)(struct sink *s, int graceful);
	void (*release)(struct sink *s);
	void (*wire)(struct sink *s, uint64_t *in, uint64_t *out);
	const char *(*who)(struct sink *s);	/* "destination user@host" */
	uint64_t (*size_limit)(struct sink *s);	/* largest message, 0 = none */
	int (*closed)(struct sink *s);		/* the connection is gone */
	int (*batch_more)(struct sink *s);	/* may a batch hold another message */
	void (*batch_begin)(struct sink *s, struct batch *b);
	void (*msg_begin)(struct sink *s, struct batch *b, const struct sink_msg *m);
	size_t (*space)(struct sink *s);
	void (*want_space)(struct sink *s);
	void (*data)(struct sink *s, const uint8_t *p, size_t n);
	void (*msg_end)(struct sink *s, struct batch *b);
	void (*commit)(struct sink *s, struct batch *b);
	void (*discard)(struct sink *s, struct batch *b);	/* after an early answer */
	void (*abort)(struct sink *s);	/* drop the connection: nothing committed */
	void (*destroy)(struct sink *s);	/* the job ends: free priv (or NULL) */
	/* The sink takes no new message now (or NULL: it always does): the
	 * source pauses between messages until sink_writable(). */
	int (*busy)(struct sink *s);
	/* Committed messages the server has yet to answer (or NULL: none
	 * ever). The group commit waits a little while some sink has such
	 * answers coming, so that one fdatasync covers more messages. */
	unsigned (*pending)(struct sink *s);
};

struct sink {
	const struct sink_ops *ops;
	struct worker *w;
	void *priv;		/* the sink's own state, if it keeps one */
	struct loop_task task;	/* the sink's deferred work (job_quiet waits for it) */
};

static inline int sink_can(const struct sink *s, unsigned cap)
{
	return (s->ops->caps & cap) == cap;
}

/* The IMAP APPEND sink over the worker's destination connection. */
extern const struct sink_ops sink_imap_ops;
/* The SMTP/LMTP sink: every message delivered to job_opts.rcpt. */
extern const struct sink_ops sink_smtp_ops;
/* --dry-run: s becomes the counting sink over the sink it was (its
 * session, its caps | SINK_COUNTS); destroy() frees both. 0 or -ENOMEM. */
int sink_count_wrap(struct sink *s);
/* The counting sink's line for w's mailbox: what the pass counted. */
void sink_count_report(struct worker *w);

/* Called by a sink: its session is up / failed (closed when this returns). */
void sink_ready(struct worker *w);
void sink_failed(struct worker *w, const struct mf_error *err);
/* Called by a sink: batch b was answered. */
void sink_batch_done(struct batch *b, const struct sink_verdict *v);
/* Called by a sink: space() has grown after want_space(), or it is no
 * longer busy. */
void sink_writable(struct worker *w);

#endif
