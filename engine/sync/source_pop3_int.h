/*
 * source_pop3_int — what the POP3 source's two files share (source_pop3.c:
 * the session, the plan and the pass; pop3_delete.c: --pop3-delete). Private
 * to engine/sync/.
 */
#ifndef MF_SOURCE_POP3_INT_H
#define MF_SOURCE_POP3_INT_H

#include "engine/sync/job_int.h"

/* The UIDVALIDITY of a POP3 source's records: POP3 has none; unique-ids
 * are meant to be stable for ever (RFC 1939 §7). */
#define POP3SRC_UIDV 1u
/* Bytes of a body held back to read its header block before it begins. */
#define POP3SRC_HOLD ((size_t)64 << 10)
/* The staging buffer: the hold, plus what one input buffer of the
 * connection (256 KiB) may still hand out after a pause. */
#define POP3SRC_STAGE (POP3SRC_HOLD + ((size_t)320 << 10))
/* RETR (or DELE) commands queued at the client at once; the client's
 * window (PIPELINING) decides how many are on the wire. */
#define POP3SRC_RING 32

struct pop3src {
	struct worker *w;
	struct pop3_client c;
	int opened; /* c needs pop3_client_close */
	int listed; /* UIDL and LIST of this session are in */
	unsigned listing_pending;
	struct pop3_cmd uidl_cmd, list_cmd;
	/* the listing: ids[msgno - 1], 0 = none (no usable unique-id) */
	uint32_t *ids;
	size_t cids;
	uint32_t n;
	/* the pass: message numbers to RETR */
	uint32_t *todo;
	size_t ntodo, ctodo, todo_pos;
	struct pop3_cmd ring[POP3SRC_RING];
	unsigned ring_next, inflight;
	/* the message being read */
	struct {
		int active, begun, ended, skip;
		uint32_t msgno, id;
		uint64_t list_size, got, declared, passed;
		char tail[2];
		unsigned ntail;
	} cur;
	char *q; /* staging: q[qoff..qlen) not yet taken by the copy path */
	size_t qlen, qoff;
	int paused, draining, redrain;
	/* ids whose RETR disagreed with LIST this run: not RETRieved again */
	uint32_t *bad;
	size_t nbad, cbad;
	/* --pop3-delete */
	int dele_started, dele_done;
	uint32_t dele_pos;
	uint64_t deleted, dele_refused;
};

static inline const char *p3who(const struct pop3src *p)
{
	return pop3_client_who(&p->c);
}

static inline const char *uidl_of(const struct pop3src *p, uint32_t msgno)
{
	const struct pop3_msg *m = pop3_msg_get(&p->c, msgno);

	return m && m->uidl[0] ? m->uidl : "";
}

#endif
