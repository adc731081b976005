/*
 * state — what mailferry has seen and written, in LMDB (DESIGN §4).
 *
 * One environment per state directory, opened once per process. The state
 * is keyed by a "job" (a source account and a destination, e.g.
 * "imap://a@h1 -> imap://b@h2"), then by source mailbox id. Keys are
 * big-endian packed integers so ranges scan in UID order.
 *
 * Named databases:
 *   jobs      job key string                      -> u32 job id
 *   mbnames   (u32 job, mailbox name bytes)       -> u32 mailbox id
 *   mailboxes (u32 job, u32 mbid)                 -> struct state_mbox
 *   messages  (u32 job, u32 mbid, u32 uidvalidity, u32 uid) -> struct state_msg
 *   uidls     (u32 job, u32 mbid, POP3 unique-id bytes) -> u32 id
 *   filters   (u32 job, u32 mbid)                 -> u64 filter id (selective copies)
 *
 * One write transaction is opened lazily by the first call that needs it and
 * kept open; state_commit() makes everything so far durable. Callers commit
 * in batches (every N messages or T ms) and before anything irreversible
 * that depends on it. Reads see uncommitted writes of this process.
 * Single-threaded: call from the loop's thread only.
 */
#ifndef MF_STATE_H
#define MF_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/err.h"

/* Wire-form names: Dovecot takes up to 4 KiB (255 per level with
 * LAYOUT=fs), so 1 KiB was not enough; records store a 16-bit length. */
#define STATE_NAME_MAX 8192
#define STATE_FLAGS_MAX 1024

struct state;

struct state_mbox {
	char name[STATE_NAME_MAX];	/* source name, wire form (mUTF-7) */
	char dst_name[STATE_NAME_MAX];	/* destination name, wire form */
	uint32_t uidvalidity;
	uint32_t uidnext;		/* source UIDNEXT at last complete sync */
	uint64_t highestmodseq;		/* 0 = server has no CONDSTORE */
	uint32_t dst_uidvalidity;
	uint32_t last_uid;		/* highest source UID fully handled */
	uint64_t synced_at;		/* unix seconds of last complete sync */
	uint32_t messages;		/* message count at last sync */
	uint32_t intents;		/* non-zero: APPENDs may be unconfirmed;
					 * settle before copying again */
	uint64_t intent_at_ms;		/* wall clock of the last intent commit */
};

enum state_msg_status {
	STATE_MSG_INTENT = 1,	/* APPEND about to be / being sent */
	STATE_MSG_DONE = 2,	/* destination confirmed (dst_uid if known) */
	STATE_MSG_FAILED = 3,	/* destination refused it permanently */
};

struct state_msg {
	uint8_t hash[32];	/* SHA-256 of the source bytes */
	uint8_t nhash[32];	/* SHA-256 with runs of CR before LF folded to one
				 * (what Dovecot stores; used to find a message on
				 * the destination) */
	uint64_t size;
	uint64_t modseq;
	uint64_t internaldate;	/* unix seconds */
	uint32_t dst_uidvalidity;
	uint32_t dst_uid;	/* 0 = unknown (no UIDPLUS) */
	uint8_t status;		/* enum state_msg_status */
	char flags[STATE_FLAGS_MAX]; /* space-separated, as last copied */
};

struct state_msg_key {
	uint32_t job, mbid, uidvalidity, uid;
};

/*
 * Opening refuses, with a one-line error and nothing written: a directory
 * another user owns or may write to; a symlink or non-regular file as
 * data.mdb, lock.mdb or lock; and a data.mdb that is empty, cut short or
 * whose pages do not hold together (read with pread before LMDB maps it, so
 * damage is an error, not SIGBUS). -EUCLEAN means damaged.
 */
int state_open(struct state **out, const char *dir, struct mf_error *err);
/* STATE_OPEN_RESET: move an existing data.mdb aside (data.mdb.damaged-TIME)
 * and start a new state; the caller settles the destination by content. */
#define STATE_OPEN_RESET 1u
int state_open_flags(struct state **out, const char *dir, unsigned flags, struct mf_error *err);

struct state_check_info {
	int exists;		/* data.mdb is there (0: no state yet, which is fine) */
	uint64_t bytes;		/* its size */
	size_t page_size, last_page, pages; /* pages: reachable ones */
	uint64_t txnid;		/* of the last commit */
};
/* Checks DIR's files without opening LMDB or locking: 0 if sound (or no
 * data.mdb yet), else an error saying what is wrong (-EUCLEAN: damaged). */
int state_check(const char *dir, struct state_check_info *info, struct mf_error *err);
/* Reads every record of an open state; counts per database (jobs, mbnames,
 * mailboxes, messages). */
int state_verify(struct state *s, uint64_t counts[4], struct mf_error *err);
/* Commits what is pending and closes. */
void state_close(struct state *s);
int state_commit(struct state *s, struct mf_error *err);
/* Drops uncommitted writes (used by tests of crash safety). */
void state_abort(struct state *s);

/* Returns the job id for key, creating it if new. */
int state_job(struct state *s, const char *key, uint32_t *job, struct mf_error *err);

/* The job id for key, -ENOENT if there is none (nothing is written). */
int state_job_find(struct state *s, const char *key, uint32_t *job, struct mf_error *err);

/* Mailbox id for a source mailbox name, created if new (*created = 1). */
int state_mbox_id(struct state *s, uint32_t job, const char *name, size_t len, uint32_t *mbid,
		  int *created, struct mf_error *err);
/* The same without creating: -ENOENT if the name has no id. */
int state_mbox_find(struct state *s, uint32_t job, const char *name, size_t len, uint32_t *mbid,
                    struct mf_error *err);
/* The mailbox was renamed: name now means mbid (whatever it meant before)
 * and old means nothing. The record's own name fields are the caller's. */
int state_mbox_rename(struct state *s, uint32_t job, uint32_t mbid, const char *old,
		      size_t oldlen, const char *name, size_t len, struct mf_error *err);
/* 0 found, -ENOENT none (rec zeroed). */
int state_mbox_get(struct state *s, uint32_t job, uint32_t mbid, struct state_mbox *rec,
		   struct mf_error *err);
int state_mbox_put(struct state *s, uint32_t job, uint32_t mbid, const struct state_mbox *rec,
		   struct mf_error *err);
/* Calls fn for every mailbox of the job; fn returning non-zero stops. */
int state_mbox_each(struct state *s, uint32_t job,
		    int (*fn)(void *ctx, uint32_t mbid, const struct state_mbox *rec), void *ctx,
		    struct mf_error *err);

/* The filter (engine/sync/filter.h's id) a mailbox's last complete pass
 * selected by: 0 = none (every message up to its last_uid was handled),
 * also when nothing was recorded. Putting 0 removes the entry. */
int state_mbox_filter_get(struct state *s, uint32_t job, uint32_t mbid, uint64_t *id,
                          struct mf_error *err);
int state_mbox_filter_put(struct state *s, uint32_t job, uint32_t mbid, uint64_t id,
                          struct mf_error *err);

/* POP3 unique-ids (RFC 1939 §7: 1 to 70 bytes 0x21..0x7E) of a job's
 * mailbox: each gets a synthetic id, 1, 2, ... in the order first seen,
 * never handed out twice (even for a unique-id the server no longer
 * lists), so the message records key POP3 messages by it as by a UID.
 * The id is written in the open transaction: commit before an intent
 * refers to it (an intent is committed with it anyway). -EINVAL for a
 * unique-id that breaks §7, -EOVERFLOW when the ids are used up. */
#define STATE_UIDL_MAX 70
int state_uidl_id(struct state *s, uint32_t job, uint32_t mbid, const char *uidl, size_t len,
                  uint32_t *id, int *created, struct mf_error *err);
/* The same without assigning: -ENOENT if the unique-id has no id. */
int state_uidl_find(struct state *s, uint32_t job, uint32_t mbid, const char *uidl, size_t len,
                    uint32_t *id, struct mf_error *err);

/* 0 found, -ENOENT none. */
int state_msg_get(struct state *s, const struct state_msg_key *k, struct state_msg *m,
		  struct mf_error *err);
int state_msg_put(struct state *s, const struct state_msg_key *k, const struct state_msg *m,
		  struct mf_error *err);
int state_msg_del(struct state *s, const struct state_msg_key *k, struct mf_error *err);
/* Messages of (job, mbid, uidvalidity) with uid >= from, ascending. */
int state_msg_each(struct state *s, uint32_t job, uint32_t mbid, uint32_t uidvalidity,
		   uint32_t from, int (*fn)(void *ctx, uint32_t uid, const struct state_msg *m),
		   void *ctx, struct mf_error *err);
/* Count of messages recorded for (job, mbid, uidvalidity). */
int state_msg_count(struct state *s, uint32_t job, uint32_t mbid, uint32_t uidvalidity,
		    uint64_t *count, struct mf_error *err);

/* Decodes one stored record value as the state reads it (msg: a messages
 * record into *m, else a mailboxes record into *mb); 0 or -EIO / -EINVAL.
 * For the fuzz target only. */
int state_rec_decode(int msg, const void *p, size_t n, struct state_mbox *mb, struct state_msg *m,
		     struct mf_error *err);

#endif
