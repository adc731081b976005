/*
 * source — where messages come from, as the copy path (copy.c) sees it.
 *
 * A source reads what is to be copied and streams each message into the
 * copy consumer:
 *
 *   copy_msg_begin(w, m) → copy_msg_data(w, p, n)… → copy_msg_end(w)
 *
 * copy_msg_data may take fewer bytes than offered, 0 when the sink is
 * full: the source then keeps the rest, stops reading (pause) and goes on
 * when the copy path calls kick. Between messages the source asks
 * copy_slots_full() and pauses while it is true. Every message of a pass
 * is either streamed (copied or skipped as already recorded) or reported
 * failed with copy_msg_fail(), which keeps the mailbox's recorded position
 * below it so that the next run tries it again.
 *
 * What a source sends is validated and rewritten by the source before it
 * reaches a sink: flags as system flags or atoms, dates rebuilt from their
 * fields (issue 15 defect 1).
 *
 * Not for: listing and opening mailboxes and reading changes (still the
 * IMAP source's worker steps in worker.c, changes.c, remap.c).
 */
#ifndef MF_SOURCE_H
#define MF_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct worker;
struct source;

enum source_cap {
	SOURCE_FOLDERS = 1u << 0,	/* several mailboxes (POP3: one) */
	SOURCE_FLAGS = 1u << 1,		/* flags, keywords and dates */
	SOURCE_CHANGES = 1u << 2,	/* what changed since a stored point */
};

/* One message as the source announces it, before its bytes. */
struct source_msg {
	uint32_t uid;		/* the source's id in this mailbox */
	uint64_t size;
	uint64_t modseq;	/* 0 if none */
	int64_t idate;		/* seconds since the epoch */
	const char *flags;	/* rewritten: "\Seen $Label", may be empty */
	size_t flags_len;
	const char *date;	/* rewritten RFC 3501 date-time */
	const char *refused;	/* the source's reason not to copy it, or NULL */
};

struct source_ops {
	const char *kind;
	unsigned caps;
	const char *(*who)(struct source *s);	/* "source user@host" */
	void (*pause)(struct source *s);	/* stop delivering until kick */
	void (*kick)(struct source *s);
	unsigned (*reads_inflight)(struct source *s);
	void (*read_retries)(struct source *s);	/* read w->retry[], one message a batch */
};

struct source {
	const struct source_ops *ops;
	struct worker *w;
};

static inline int source_can(const struct source *s, unsigned cap)
{
	return (s->ops->caps & cap) == cap;
}

/* The IMAP source over the worker's source connection (source_imap.c). */
extern const struct source_ops source_imap_ops;

/* The copy consumer (copy.c). copy_msg_begin returns 0 (the bytes follow,
 * copied or skipped) or a negative code that stops the source. */
int copy_msg_begin(struct worker *w, const struct source_msg *m);
ssize_t copy_msg_data(struct worker *w, const uint8_t *p, size_t n);
int copy_msg_end(struct worker *w);
/* A message whose bytes follow but must not be copied (its failure is
 * reported by the caller, and counted here when uid is known). */
void copy_msg_drop(struct worker *w, uint32_t uid, uint64_t size, int failed);
int copy_slots_full(const struct worker *w);
void copy_msg_fail(struct worker *w, uint32_t uid);

#endif
