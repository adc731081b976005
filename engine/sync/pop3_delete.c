/*
 * pop3_delete — --pop3-delete for the POP3 source: after the pass, DELE
 * every listed message whose state record says the destination confirmed
 * it (committed before the first DELE), then QUIT, at which the server
 * removes them (RFC 1939 §6); a run killed before deletes nothing. The
 * pass's mailbox_finish waits for it (pop3src_before_finish).
 *
 * Several sessions (source_pop3.c, split.c). DELE only marks a message in
 * the session that sent it; the server removes it at that session's QUIT
 * (RFC 1939 §6), while another session's listing still names it (a RETR
 * there may then fail). So the DELEs go from one session only, the one
 * that ends the last part, after every part is done (mailbox_finish calls
 * split_finish first): no other session reads the maildrop any more,
 * every confirmed copy is recorded, and that session's own listing (all
 * of the maildrop, looked up by unique-id) names what to delete. The
 * other sessions QUIT without a DELE, which removes nothing. A part given
 * up (its connection lost) makes the last one read the mailbox again
 * first, then delete.
 *
 * Not for: copying (source_pop3.c), the protocol (pop3_client).
 */
#include "engine/sync/source_pop3_int.h"

static void dele_pump(struct pop3src *p);

static void quit_done(struct pop3_client *c, struct pop3_cmd *cmd, const struct pop3_reply *r)
{
	struct pop3src *p = c->ud;
	struct worker *w = p->w;

	(void)cmd;
	p->dele_done = 1;
	progress_clear(w->job);
	if (r->ok)
		mf_log(MF_LOG_INFO,
		       "%s: %llu copied messages deleted from the source (--pop3-delete)", p3who(p),
		       (unsigned long long)p->deleted);
	else
		job_error(w->job, p3who(p), w->mb, 0,
		          "QUIT refused (%.*s): the server may have kept the %llu messages marked "
		          "deleted",
		          (int)(r->text_len > 200 ? 200 : r->text_len), r->text,
		          (unsigned long long)p->deleted);
	if (w->mb)
		mailbox_finish(w);
}

static void dele_done_cb(struct pop3_client *c, struct pop3_cmd *cmd, const struct pop3_reply *r)
{
	struct pop3src *p = c->ud;
	struct worker *w = p->w;

	p->inflight--;
	if (r->ok) {
		p->deleted++;
	} else {
		p->dele_refused++;
		job_error(w->job, p3who(p), w->mb, 0, "UIDL \"%s\": DELE refused: %.*s",
		          uidl_of(p, cmd->msgno), (int)(r->text_len > 200 ? 200 : r->text_len),
		          r->text);
	}
	dele_pump(p);
}

/* DELE every listed message whose record is DONE (copied and confirmed by
 * the destination, and committed), then QUIT: POP3 removes them only then
 * (RFC 1939 §6), so a run killed before deletes nothing. */
static void dele_pump(struct pop3src *p)
{
	struct worker *w = p->w;
	struct job *j = w->job;
	struct mf_error e;

	while (!p->c.closed && p->inflight < POP3SRC_RING && p->dele_pos < p->n) {
		uint32_t i = ++p->dele_pos;
		struct state_msg_key k = {j->jobid, w->mb->mbid, POP3SRC_UIDV, p->ids[i - 1]};
		struct state_msg m;

		if (!k.uid || state_msg_get(j->st, &k, &m, &e) < 0 || m.status != STATE_MSG_DONE)
			continue;
		p->inflight++;
		pop3_dele(&p->c, &p->ring[p->ring_next], i, dele_done_cb, p);
		p->ring_next = (p->ring_next + 1) % POP3SRC_RING;
	}
	if (!p->c.closed && !p->inflight && p->dele_pos >= p->n)
		pop3_client_quit(&p->c, quit_done, p);
}

/* Called first by mailbox_finish: with --pop3-delete, the pass's end waits
 * for the DELEs and the QUIT (1: not yet; mailbox_finish is called again). */
int pop3src_before_finish(struct worker *w)
{
	struct pop3src *p = w->p3;
	struct job *j = w->job;

	if (p && j->o->dry_run) {
		/* nothing is deleted from the source: what would be, said */
		if (j->o->pop3_delete && w->mb && !w->mb->failed) {
			progress_clear(j);
			mf_print("mailferry: dry-run: source: --pop3-delete would then delete the "
			         "%llu messages recorded as copied and those the run copies",
			         (unsigned long long)w->mb->skipped);
		}
		return 0;
	}
	if (!p || !j->o->pop3_delete || p->dele_started || j->fatal ||
	    !p->listed || p->c.closed || !w->mb || p->inflight || p->cur.active || w->b_count)
		return 0; /* (RETRs in flight: a failed pass; the next run deletes) */
	p->dele_started = 1;
	/* the DONE records must be durable before the server forgets anything */
	if (job_commit(j) < 0) {
		job_error(j, p3who(p), w->mb, 0,
		          "the state could not be committed; nothing deleted from the source");
		return 0;
	}
	w->phase = W_APPLY;
	p->dele_pos = 0;
	p->inflight = 0;
	dele_pump(p);
	return !p->dele_done;
}
