/*
 * source_pop3 — a POP3 maildrop (RFC 1939) as the source of a migration,
 * behind source.h: the session (pop3_client), the plan of its one mailbox
 * (INBOX), the copy pass (RETR, pipelined by the client when the server
 * offers PIPELINING); --pop3-delete is pop3_delete.c's.
 *
 * Identity. A message is its unique-id (UIDL, RFC 1939 §7). The state's
 * uidls table gives each unique-id a synthetic id, assigned once and
 * committed before any intent refers to it; the message records, intents,
 * settle and the mailbox record use that id as a UID under the fixed
 * UIDVALIDITY POP3SRC_UIDV, so the copy path (copy.c) is the IMAP one. A
 * pass RETRs only the messages whose id has no DONE record; unique-ids the
 * server no longer lists are simply not there.
 *
 * Several sessions. The destination bounds a POP3 job (one APPEND or
 * LMTP transaction at a time per connection), so a big maildrop is read
 * by up to --connections sessions, each with its own destination
 * connection: split.c divides the new messages' ids into parts, as it
 * divides an IMAP mailbox's UIDs. Every listed unique-id gets its id from
 * the first session's listing, committed before the split
 * (pop3src_split_est); the other sessions only look their listings up
 * (message numbers are per session, RFC 1939 §4, so each maps its own),
 * RETR the ids of their part and nothing else; a message that arrived
 * after the plan has no id yet and waits for the next run. A server may
 * lock the maildrop (RFC 1939 §8): it refuses a second session
 * ([IN-USE], a plain -ERR, or it closes; worker_side_failed), or, as
 * Dovecot with pop3_lock_session, holds its PASS until the first QUITs.
 * Parts no session took go to the sessions that are in, in the same run
 * (split_take), with one line (pop3src_fewer_note); exactly once holds as
 * for IMAP parts (split.c: intents marked STATE_INTENTS_PARTS).
 *
 * Dates. POP3 has neither INTERNALDATE nor flags: flags are empty and the
 * date is the newest Received: field's (after its last ';'), else Date:,
 * else now (hdrdate.h). An APPEND names the date before the bytes, so the
 * start of each body (up to POP3SRC_HOLD, 64 KiB) is held back and parsed
 * before the message begins; a header block longer than that is read as
 * far as it goes. Holding costs no command and no byte; TOP n 0 before
 * each RETR would cost both (measured on 2,088 messages from Dovecot, one
 * command at a time: 23 % more bytes, 0.45-0.68 s instead of 0.28-0.39 s).
 *
 * Size. An APPEND also names the size first. RFC 1939 §5 makes LIST's
 * size exact, and a message that fits in the hold is measured anyway.
 * Servers add a CRLF to a message that does not end with one, so that the
 * terminating "." starts a line (Dovecot 2.3 does, without counting it in
 * LIST): a body exactly two bytes longer than LIST's size that ends in
 * CRLF loses that CRLF and is copied as the server stored it. Any other
 * difference for a message larger than the hold cannot be mended once its
 * APPEND has begun: the message fails with an error naming its unique-id,
 * the destination connection (with the APPEND half sent, so nothing of
 * that batch is stored) is dropped and the pair reopened as after any
 * drop (--retries), and the pass goes on without that message.
 *
 * Back-pressure. pop3_client hands body pieces out whole; what the copy
 * path cannot take yet stays in one bounded staging buffer (the hold plus
 * one input buffer of the connection), and the client is paused until the
 * copy path kicks. Never more than one message is held.
 *
 * Not for: the POP3 protocol (pop3_client), the copy path (copy.c), the
 * destination (sink_imap.c).
 */
#include "engine/sync/source_pop3_int.h"

#include "protocols/hdrdate.h"

static const struct pop3_client_cb pop3src_cb;

/* The source failed in a way that must stop the job (out of memory, the
 * copy path refusing a message's start): everything stops at once. */
static void pop3src_fatal(struct pop3src *p)
{
	struct worker *w = p->w;
	struct job *j = w->job;

	j->fatal = 1;
	if (w->mb)
		w->mb->failed = 1;
	p->cur.active = 0;
	w->sink.ops->abort(&w->sink);
	pop3_client_abort(&p->c);
	loop_defer(j->loop, &j->stop_task);
}

/* ---- the session ------------------------------------------------------- */

static void listing_done(struct pop3_client *c, struct pop3_cmd *cmd, const struct pop3_reply *r);

static void on_ready(struct pop3_client *c)
{
	struct pop3src *p = c->ud;

	p->listed = 0;
	p->listing_pending = 2;
	/* pipelined with PIPELINING: one round trip for both */
	pop3_uidl_all(c, &p->uidl_cmd, listing_done, p);
	pop3_list_all(c, &p->list_cmd, listing_done, p);
}

static void on_error(struct pop3_client *c, const struct mf_error *err)
{
	struct pop3src *p = c->ud;

	p->inflight = 0;
	p->cur.active = 0;
	p->qlen = p->qoff = 0;
	worker_src_failed(p->w, err);
}

static void pop3src_plan(struct pop3src *p);

static void listing_done(struct pop3_client *c, struct pop3_cmd *cmd, const struct pop3_reply *r)
{
	struct pop3src *p = c->ud;
	struct worker *w = p->w;
	struct job *j = w->job;

	if (!r->ok && !r->invalid) {
		/* RFC 1939 §7: UIDL is optional; without it nothing can be
		 * copied exactly once. */
		struct mf_error e;

		mf_err_set(&e, -EPROTO, "%s: %s refused (%.*s); a POP3 source needs UIDL", p3who(p),
		           cmd == &p->uidl_cmd ? "UIDL" : "LIST", (int)r->text_len, r->text);
		pop3_client_abort(c);
		on_error(c, &e);
		return;
	}
	if (--p->listing_pending)
		return;
	p->n = pop3_msg_count(c);
	if (grow((void **)&p->ids, &p->cids, p->n ? p->n : 1, sizeof(*p->ids)) < 0) {
		struct mf_error e;

		mf_err_set(&e, -ENOMEM, "%s: out of memory for %u messages", p3who(p), p->n);
		pop3_client_abort(c);
		on_error(c, &e);
		return;
	}
	memset(p->ids, 0, p->n * sizeof(*p->ids));
	p->listed = 1;
	w->src_ready = 1;
	if (!j->listed)
		pop3src_plan(p);
	else
		worker_next(w);
}

int pop3src_open(struct worker *w, struct mf_error *err)
{
	struct job *j = w->job;
	struct pop3src *p = w->p3;

	if (!p) {
		if (!(p = calloc(1, sizeof(*p))) || !(p->q = malloc(POP3SRC_STAGE))) {
			if (p)
				free(p);
			mf_err_set(err, -ENOMEM, "out of memory");
			return -ENOMEM;
		}
		p->w = w;
		w->p3 = p;
	}
	p->listed = 0;
	p->inflight = 0;
	p->ring_next = 0;
	p->paused = p->draining = p->redrain = 0;
	p->qlen = p->qoff = 0;
	memset(&p->cur, 0, sizeof(p->cur));
	p->dele_started = p->dele_done = 0;
	j->sum->connections++;
	p->opened = 1;
	return pop3_client_open(&p->c, j->loop, &j->o->src_pop3_ep, &pop3src_cb, p, err);
}

/* Ends the session: QUIT when graceful (the server then removes what was
 * marked deleted, RFC 1939 §6), else the connection just goes (nothing is
 * removed). */
void pop3src_stop(struct worker *w, int graceful)
{
	struct pop3src *p = w->p3;

	if (!p || !p->opened || p->c.closed)
		return;
	if (graceful)
		pop3_client_quit(&p->c, NULL, NULL);
	else
		pop3_client_abort(&p->c);
}

/* Outside every callback: the session's bytes, and its memory. */
void pop3src_release(struct worker *w, uint64_t *in, uint64_t *out)
{
	struct pop3src *p = w->p3;

	*in = *out = 0;
	if (!p || !p->opened)
		return;
	pop3_client_wire(&p->c, in, out);
	pop3_client_close(&p->c);
	p->opened = 0;
}

void pop3src_free(struct worker *w)
{
	struct pop3src *p = w->p3;

	if (!p)
		return;
	if (p->opened)
		pop3_client_close(&p->c);
	free(p->ids);
	free(p->todo);
	free(p->bad);
	free(p->q);
	free(p);
	w->p3 = NULL;
}

/* ---- the plan: one mailbox --------------------------------------------- */

/* Every listed unique-id is recorded as copied, and the last pass ended
 * clean: the plan may leave the mailbox alone (no destination connection
 * at all), as for an IMAP mailbox whose STATUS did not change. */
static int pop3src_unchanged(struct pop3src *p, struct state_mbox *rec)
{
	struct job *j = p->w->job;
	struct mf_error e;
	uint32_t mbid;

	if (j->o->pop3_delete || j->jobid == JOB_DRY_JOBID ||
	    state_mbox_find(j->st, j->jobid, "INBOX", 5, &mbid, &e) < 0 ||
	    state_mbox_get(j->st, j->jobid, mbid, rec, &e) < 0 || !rec->synced_at || rec->intents ||
	    rec->uidvalidity != POP3SRC_UIDV)
		return 0;
	for (uint32_t i = 1; i <= p->n; i++) {
		const char *u = uidl_of(p, i);
		struct state_msg_key k = {j->jobid, mbid, POP3SRC_UIDV, 0};
		struct state_msg m;

		if (!*u || state_uidl_find(j->st, j->jobid, mbid, u, strlen(u), &k.uid, &e) < 0 ||
		    state_msg_get(j->st, &k, &m, &e) < 0 || m.status != STATE_MSG_DONE)
			return 0;
	}
	return 1;
}

static void pop3src_plan(struct pop3src *p)
{
	struct job *j = p->w->job;
	struct state_mbox rec;
	struct mbox *mb;

	if (!(mb = mbox_add(j, "INBOX", 5))) {
		job_error(j, p3who(p), NULL, 0, "out of memory");
		j->fatal = 1;
		job_maybe_finish(j);
		return;
	}
	mb->st_messages = p->n;
	if (pop3src_unchanged(p, &rec)) {
		mb->have_status = 1;
		mb->st_uidvalidity = rec.uidvalidity;
		mb->st_uidnext = rec.uidnext;
	}
	plan(j);
}

/* The maildrop's parts (split.c) outnumber the sessions that got in:
 * Dovecot with pop3_lock_session holds a second session's PASS until
 * the first QUITs, other servers refuse it ([IN-USE], RFC 2449 §8.1.1;
 * worker_side_failed says that). Either way the sessions that are in
 * copy every part in this run; one line says so. */
void pop3src_fewer_note(struct worker *w)
{
	struct job *j = w->job;
	unsigned in = 0, out = 0;

	if (j->pop3_fewer_noted++)
		return;
	for (unsigned i = 0; i < j->nw; i++) {
		const struct worker *o = &j->w[i];

		if (o->src_ready && !o->dead)
			in++;
		else if (worker_active(o))
			out++;
	}
	progress_clear(j);
	mf_log(MF_LOG_WARN,
	       "%s: %u POP3 session%s not let in yet (the server may lock the maildrop): "
	       "going on with %u, copying every part in this run",
	       p3who(w->p3), out, out == 1 ? "" : "s", in);
}

/* ---- the pass ------------------------------------------------------------ */

/* Each listed unique-id gets its id in ids[]. With create, one is assigned
 * now if new, and committed before any intent can name it (a dry run's
 * scope looks them up, and gives new ones ids no record has); else it is
 * only looked up: 0 for a unique-id the state does not know. */
static int pop3src_ids(struct pop3src *p, uint32_t mbid, int create, struct mf_error *e)
{
	struct job *j = p->w->job;
	int created = 0, any = 0;

	for (uint32_t i = 1; i <= p->n; i++) {
		const char *u = uidl_of(p, i);
		int rc;

		p->ids[i - 1] = 0;
		if (!*u)
			continue;
		if (!create)
			rc =
			    state_uidl_find(j->st, j->jobid, mbid, u, strlen(u), &p->ids[i - 1], e);
		else
			rc = scope_uidl_id(j, mbid, u, strlen(u), &p->ids[i - 1], &created, e);
		if (rc == -ENOENT && !create)
			continue;
		if (rc < 0)
			return -1;
		any |= created;
	}
	if (any && job_commit(j) < 0) {
		mf_err_set(e, -EIO, "the state could not record the unique-ids");
		return -1;
	}
	return 0;
}

/* split.c, for a job that may run parts: the first session's listing
 * gives every unique-id its id now, committed before the split (so no
 * two sessions ever race to name one), and tells how many listed
 * messages are not recorded as copied, and the range of their ids. 0:
 * nothing to split (or a mailbox with unsettled intents: settled first,
 * by one session). */
uint64_t pop3src_split_est(struct job *j, struct mbox *mb, uint32_t *lo, uint32_t *hi)
{
	struct pop3src *p = j->w[0].p3;
	struct state_mbox rec;
	struct mf_error e;
	uint64_t est = 0;

	if (!p || !p->listed || mb->work <= 0 || j->o->dry_run)
		return 0;
	if (state_mbox_get(j->st, j->jobid, mb->mbid, &rec, &e) == 0 &&
	    (rec.intents || (rec.uidvalidity && rec.uidvalidity != POP3SRC_UIDV)))
		return 0;
	if (pop3src_ids(p, mb->mbid, 1, &e) < 0) {
		job_error(j, p3who(p), mb, 0, "%s", e.msg);
		return 0; /* the pass (one session) tries and reports it again */
	}
	*lo = UINT32_MAX;
	*hi = 0;
	for (uint32_t i = 0; i < p->n; i++) {
		struct state_msg_key k = {j->jobid, mb->mbid, POP3SRC_UIDV, p->ids[i]};
		struct state_msg m;

		if (!k.uid || (state_msg_get(j->st, &k, &m, &e) == 0 && m.status == STATE_MSG_DONE))
			continue;
		est++;
		if (k.uid < *lo)
			*lo = k.uid;
		if (k.uid > *hi)
			*hi = k.uid;
	}
	return est;
}

void pop3src_mailbox_begin(struct worker *w)
{
	struct job *j = w->job;
	struct mbox *mb = w->mb;
	struct mf_error e;

	w->intents_marked = 0;
	w->ntmp = w->tmp_passes = 0;
	w->phase = W_EXAMINE;
	w->list_mode = 1; /* not a UID range: no resume position by order */
	w->uidvalidity = POP3SRC_UIDV;
	w->uidnext = 0;
	w->highestmodseq = 0;
	w->method = M_NEW_ONLY;
	changes_reset(w);
	w->dd_done = 0;
	w->seen_n = 0;
	w->have_rec = state_mbox_get(j->st, j->jobid, mb->mbid, &w->rec, &e) == 0;
	if (!w->have_rec)
		memset(&w->rec, 0, sizeof(w->rec));
	/* A part (split.c) only looks its listing up: every id was assigned
	 * from the first session's listing before the split; one listed
	 * only now arrived since and is left for the next run. */
	if (pop3src_ids(w->p3, mb->mbid, !w->part, &e) < 0) {
		mailbox_fail(w, NULL, 0, "%s", e.msg);
		return;
	}
	for (uint32_t i = 0; i < w->p3->n; i++)
		if (w->p3->ids[i] >= w->uidnext)
			w->uidnext = w->p3->ids[i] + 1;
	if (w->rec.uidnext > w->uidnext)
		w->uidnext = w->rec.uidnext;
	/* a part's record's intents are the other parts' batches in flight
	 * (the plan splits no mailbox with intents left over): split.c */
	if (!w->part && settle_if_interrupted(w, POP3SRC_UIDV))
		return; /* then changes_start, fetch_start: here */
	pop3src_fetch_start(w);
}

static uint64_t pop3src_limit(struct worker *w)
{
	uint64_t max = JOB_MAX_SIZE(w->job);
	uint64_t sl = w->sink.ops->size_limit(&w->sink);

	return sl && sl < max ? sl : max;
}

static void retr_done(struct pop3_client *c, struct pop3_cmd *cmd, const struct pop3_reply *r);
static const struct pop3_consumer retr_consumer;

/* A counting sink's pass (SINK_COUNTS: --dry-run): LIST's sizes, no
 * RETR; each message goes through the copy path without a body, paced by
 * the batch slots (pop3_src_kick goes on). */
static void size_pump(struct pop3src *p)
{
	struct worker *w = p->w;

	while (!w->mb->failed && p->todo_pos < p->ntodo) {
		uint32_t msgno = p->todo[p->todo_pos];
		const struct pop3_msg *pm = pop3_msg_get(&p->c, msgno);

		if (copy_slots_full(w)) {
			w->src_paused = 1; /* sink_batch_done kicks us */
			return;
		}
		p->todo_pos++;
		if (copy_msg_begin(w, &(struct source_msg){.uid = p->ids[msgno - 1],
		                                           .size = pm ? pm->size : 0,
		                                           .flags = "",
		                                           .date = ""}) < 0) {
			pop3src_fatal(p);
			return;
		}
		copy_msg_end(w);
	}
}

/* RETR the next messages of the pass, up to the ring. */
static void retr_pump(struct pop3src *p)
{
	struct worker *w = p->w;

	if (sink_can(&w->sink, SINK_COUNTS)) {
		size_pump(p);
		return;
	}
	while (!p->c.closed && !w->mb->failed && p->inflight < POP3SRC_RING &&
	       p->todo_pos < p->ntodo) {
		struct pop3_cmd *cmd = &p->ring[p->ring_next];

		p->ring_next = (p->ring_next + 1) % POP3SRC_RING;
		p->inflight++;
		pop3_retr_consumer(&p->c, cmd, p->todo[p->todo_pos++], retr_done, p, &retr_consumer);
	}
}

static int id_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Settled after a reconnect and counted as copied then (settle.c keeps
 * them in ascending order). */
static int counted_already(const struct worker *w, uint32_t id)
{
	return w->ncounted &&
	       bsearch(&id, w->counted, w->ncounted, sizeof(*w->counted), id_cmp) != NULL;
}

static int is_bad(const struct pop3src *p, uint32_t id)
{
	for (size_t i = 0; i < p->nbad; i++)
		if (p->bad[i] == id)
			return 1;
	return 0;
}

static int todo_push(struct pop3src *p, uint32_t msgno)
{
	if (grow((void **)&p->todo, &p->ctodo, p->ntodo + 1, sizeof(*p->todo)) < 0)
		return -ENOMEM;
	p->todo[p->ntodo++] = msgno;
	return 0;
}

void pop3src_fetch_start(struct worker *w)
{
	struct pop3src *p = w->p3;
	struct job *j = w->job;
	uint64_t limit = pop3src_limit(w);
	/* the first part also counts what earlier runs copied (ids below
	 * the split's range) as skipped; the top part reads on to the end */
	uint32_t lo = w->part == 1 ? 1 : w->part_lo;
	struct mf_error e;

	w->phase = W_FETCH;
	w->single_mode = 0;
	w->list_mode = 1;
	w->nretry = w->retry_pos = 0;
	w->mb_failed_min_uid = 0;
	w->start_uid = 1;
	w->end_uid = UINT32_MAX - 1;
	if (!w->resumed) {
		w->resume_uid = 0;
		w->ncounted = 0;
	}
	p->ntodo = p->todo_pos = 0;
	for (uint32_t i = 1; i <= p->n; i++) {
		const struct pop3_msg *pm = pop3_msg_get(&p->c, i);
		struct state_msg_key k = {j->jobid, w->mb->mbid, POP3SRC_UIDV, p->ids[i - 1]};
		struct state_msg m;

		if (!pm || !pm->uidl[0]) {
			/* the listing refused its unique-id (pop3_list): no identity,
			 * so it cannot be copied exactly once (said by one part) */
			if (w->part > 1)
				continue;
			job_error(j, p3who(p), w->mb, 0,
			          "message %u has no valid unique-id; not copied", i);
			copy_msg_fail(w, 0);
			continue;
		}
		if (w->part && (!k.uid || k.uid < lo || k.uid > w->part_hi))
			continue; /* another part's, or new since the plan (next run) */
		if (k.uid && state_msg_get(j->st, &k, &m, &e) == 0 && m.status == STATE_MSG_DONE) {
			if (!counted_already(w, k.uid) && !w->mb->sp_redo) {
				w->mb->skipped++;
				j->sum->skipped++;
			}
			continue;
		}
		if (is_bad(p, k.uid))
			continue; /* failed (and counted) earlier in this run */
		if (pm->has_size && pm->size > limit) {
			job_error(j, p3who(p), w->mb, k.uid,
			          "UIDL \"%s\": message of %llu bytes exceeds %s %llu; not copied",
			          pm->uidl, (unsigned long long)pm->size,
			          j->o->max_message_size ? "--max-message-size" : "the size limit",
			          (unsigned long long)limit);
			copy_msg_fail(w, k.uid);
			continue;
		}
		if (todo_push(p, i) < 0) {
			mailbox_fail(w, NULL, 0, "out of memory");
			return;
		}
	}
	retr_pump(p);
	worker_check_done(w);
}

/* ---- streaming one message ------------------------------------------------ */

static int blocked(const struct pop3src *p)
{
	return p->cur.active &&
	       (p->cur.ended || (p->cur.begun ? p->qlen > p->qoff : p->qlen >= POP3SRC_HOLD));
}

/* The body is not the size its APPEND announced (see the top). */
static void size_mismatch(struct pop3src *p)
{
	struct worker *w = p->w;
	struct mf_error e;
	char u[POP3_UIDL_MAX + 1];

	snprintf(u, sizeof(u), "%s", uidl_of(p, p->cur.msgno));
	job_error(w->job, p3who(p), w->mb, p->cur.id,
	          "UIDL \"%s\": RETR gave %llu%s bytes, LIST said %llu (the server's sizes are "
	          "not exact); not copied",
	          u, (unsigned long long)p->cur.got, p->cur.ended ? "" : " or more",
	          (unsigned long long)p->cur.list_size);
	copy_msg_fail(w, p->cur.id);
	if (grow((void **)&p->bad, &p->cbad, p->nbad + 1, sizeof(*p->bad)) < 0) {
		pop3src_fatal(p);
		return;
	}
	p->bad[p->nbad++] = p->cur.id;
	p->cur.active = 0;
	p->qlen = p->qoff = 0;
	/* The APPEND is half sent: dropping the connection is the only way
	 * to withdraw it (RFC 3502 §3: all of a MULTIAPPEND or nothing). */
	w->sink.ops->abort(&w->sink);
	mf_err_set(&e, -ECONNABORTED,
	           "%s: APPEND withdrawn (message UIDL \"%s\" of the source is "
	           "not the size its LIST said)",
	           w->sink.ops->who(&w->sink), u);
	sink_failed(w, &e);
}

/* The message may begin: its date from the held header block, its size
 * (see the top of the file). */
static int msg_start(struct pop3src *p)
{
	struct worker *w = p->w;
	const char *h = p->q + p->qoff;
	size_t hn = p->qlen - p->qoff;
	char date[IMAP_DATE_LEN + 1];
	struct imap_date d;
	struct source_msg m = {0};
	uint64_t s = p->cur.list_size;

	if (hdrdate_pick(h, hn < POP3SRC_HOLD ? hn : POP3SRC_HOLD, &d) == HDRDATE_NONE) {
		time_t now = time(NULL);
		struct tm tm;

		gmtime_r(&now, &tm);
		d = (struct imap_date){(uint16_t)(tm.tm_year + 1900),
		                       (uint8_t)(tm.tm_mon + 1),
		                       (uint8_t)tm.tm_mday,
		                       (uint8_t)tm.tm_hour,
		                       (uint8_t)tm.tm_min,
		                       (uint8_t)(tm.tm_sec > 59 ? 59 : tm.tm_sec),
		                       '+',
		                       0,
		                       0};
	}
	imap_date_format(&d, date);
	if (p->cur.ended) {
		uint64_t got = p->cur.got;

		p->cur.declared = got;
		if (s && got == s + 2 && hn >= 2 && !memcmp(h + hn - 2, "\r\n", 2))
			p->cur.declared = s; /* the server's CRLF before its "." */
	} else if (!s) {
		job_error(w->job, p3who(p), w->mb, p->cur.id,
		          "UIDL \"%s\": the server gave no size for a message over %zu bytes; not "
		          "copied",
		          uidl_of(p, p->cur.msgno), POP3SRC_HOLD);
		copy_msg_fail(w, p->cur.id);
		p->cur.skip = 1;
		return 0;
	} else {
		p->cur.declared = s;
	}
	m.uid = p->cur.id;
	m.size = p->cur.declared;
	m.idate = imap_date_unix(&d);
	m.flags = "";
	m.flags_len = 0;
	m.date = date;
	p->cur.begun = 1;
	if (copy_msg_begin(w, &m) < 0) {
		pop3src_fatal(p);
		return -1;
	}
	return 0;
}

/* Hands bytes to the copy path, never past the declared size; up to two
 * bytes beyond it are kept (the server's CRLF, see the top). Returns what
 * was taken (0: the copy path is full and has paused us), -1 on a size
 * that cannot be right. */
static ssize_t msg_push(struct pop3src *p, const char *b, size_t n)
{
	struct worker *w = p->w;
	ssize_t k;

	if (p->cur.skip)
		return (ssize_t)n;
	if (p->cur.passed < p->cur.declared) {
		uint64_t room = p->cur.declared - p->cur.passed;

		k = copy_msg_data(w, (const uint8_t *)b, n < room ? n : (size_t)room);
		if (k > 0)
			p->cur.passed += (uint64_t)k;
		return k;
	}
	if (p->cur.ntail + n > 2)
		return -1;
	memcpy(p->cur.tail + p->cur.ntail, b, n);
	p->cur.ntail += (unsigned)n;
	return (ssize_t)n;
}

static void msg_finish(struct pop3src *p)
{
	struct worker *w = p->w;
	int ok = p->cur.skip || w->cur.skip || !w->cur.active ||
	         (p->cur.passed == p->cur.declared &&
	          (!p->cur.ntail || (p->cur.ntail == 2 && !memcmp(p->cur.tail, "\r\n", 2))));

	if (!ok) {
		size_mismatch(p);
		return;
	}
	p->cur.active = 0;
	if (!p->cur.skip)
		copy_msg_end(w);
	else
		w->cur.active = 0;
}

/* Moves what is staged on as far as the copy path takes it. */
static void drain(struct pop3src *p)
{
	struct worker *w = p->w;

	if (p->draining) {
		p->redrain = 1;
		return;
	}
	p->draining = 1;
	do {
		p->redrain = 0;
		if (!p->cur.active)
			break;
		if (!p->cur.begun) {
			if (!p->cur.ended && p->qlen - p->qoff < POP3SRC_HOLD)
				break; /* more of the header block first */
			if (copy_slots_full(w)) {
				w->src_paused = 1; /* sink_batch_done kicks us */
				break;
			}
			if (msg_start(p) < 0)
				break;
		}
		while (p->qoff < p->qlen) {
			ssize_t k = msg_push(p, p->q + p->qoff, p->qlen - p->qoff);

			if (k < 0) {
				size_mismatch(p);
				break;
			}
			if (!k)
				break;
			p->qoff += (size_t)k;
		}
		if (!p->cur.active)
			break;
		if (p->qoff == p->qlen)
			p->qoff = p->qlen = 0;
		if (!p->qlen && p->cur.ended)
			msg_finish(p);
	} while (p->redrain && p->cur.active);
	p->draining = 0;
}

static void settle_flow(struct pop3src *p)
{
	if (p->c.closed)
		return;
	if (blocked(p)) {
		if (!p->paused) {
			p->paused = 1;
			pop3_client_pause(&p->c);
		}
	} else if (p->paused) {
		p->paused = 0;
		pop3_client_kick(&p->c);
	}
}

static int msg_begin_cb(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno, uint64_t size)
{
	struct pop3src *p = c->ud;
	struct worker *w = p->w;

	(void)cmd;
	if (p->cur.active || p->qlen) {
		job_error(w->job, p3who(p), w->mb, 0,
		          "internal: message %u began before the last ended", msgno);
		return -EIO;
	}
	memset(&p->cur, 0, sizeof(p->cur));
	p->cur.active = 1;
	p->cur.msgno = msgno;
	p->cur.id = msgno <= p->n ? p->ids[msgno - 1] : 0;
	p->cur.list_size = size;
	/* a RETR of a pass that has ended (the mailbox failed meanwhile): its
	 * body is read and dropped (the phase is the worker's lifecycle here,
	 * not who the body is for: the RETR's consumer says that) */
	p->cur.skip = !w->mb || w->phase != W_FETCH || !p->cur.id;
	return 0;
}

static int msg_data_cb(struct pop3_client *c, struct pop3_cmd *cmd, const char *b, size_t n)
{
	struct pop3src *p = c->ud;

	(void)cmd;
	if (!p->cur.active || p->cur.skip)
		return 0;
	p->cur.got += n;
	if (p->cur.begun && p->qoff == p->qlen) {
		ssize_t k = msg_push(p, b, n);

		if (k < 0) {
			size_mismatch(p);
			return 0;
		}
		b += k;
		n -= (size_t)k;
		p->qlen = p->qoff = 0;
	}
	if (n) {
		if (p->qlen + n > POP3SRC_STAGE) {
			if (p->qoff) {
				memmove(p->q, p->q + p->qoff, p->qlen - p->qoff);
				p->qlen -= p->qoff;
				p->qoff = 0;
			}
			if (p->qlen + n > POP3SRC_STAGE) {
				job_error(p->w->job, p3who(p), p->w->mb, p->cur.id,
				          "internal: staging buffer overrun");
				pop3src_fatal(p);
				return 0;
			}
		}
		memcpy(p->q + p->qlen, b, n);
		p->qlen += n;
		/* Not begun: the hold is full. Begun: the copy path took part of
		 * it; asked again, it takes more or asks the sink for room (and
		 * kicks us when there is), so this never waits for nobody. */
		if (p->cur.begun || p->qlen - p->qoff >= POP3SRC_HOLD)
			drain(p);
	}
	settle_flow(p);
	return 0;
}

static int msg_end_cb(struct pop3_client *c, struct pop3_cmd *cmd)
{
	struct pop3src *p = c->ud;

	(void)cmd;
	if (!p->cur.active)
		return 0;
	p->cur.ended = 1;
	if (p->cur.skip) {
		p->cur.active = 0;
		return 0;
	}
	drain(p);
	settle_flow(p);
	return 0;
}

/* The copy pass's RETR: its body goes to the copy consumer (copy.c). */
static const struct pop3_consumer retr_consumer = {
    .msg_begin = msg_begin_cb,
    .msg_data = msg_data_cb,
    .msg_end = msg_end_cb,
};

static void retr_done(struct pop3_client *c, struct pop3_cmd *cmd, const struct pop3_reply *r)
{
	struct pop3src *p = c->ud;
	struct worker *w = p->w;

	p->inflight--;
	if (!r->ok && w->mb) {
		uint32_t id = cmd->msgno <= p->n ? p->ids[cmd->msgno - 1] : 0;

		job_error(w->job, p3who(p), w->mb, id, "UIDL \"%s\": RETR refused: %.*s",
		          uidl_of(p, cmd->msgno), (int)(r->text_len > 200 ? 200 : r->text_len),
		          r->text);
		copy_msg_fail(w, id);
	}
	if (w->mb && w->phase == W_FETCH) {
		retr_pump(p);
		worker_check_done(w);
	}
}

/* ---- source ops -------------------------------------------------------------- */

static const char *pop3_src_who(struct source *s)
{
	return p3who(s->w->p3);
}

static void pop3_src_pause(struct source *s)
{
	struct pop3src *p = s->w->p3;

	if (!p->paused && !p->c.closed) {
		p->paused = 1;
		pop3_client_pause(&p->c);
	}
}

static void pop3_src_kick(struct source *s)
{
	struct pop3src *p = s->w->p3;
	int was = p->cur.active;

	if (sink_can(&s->w->sink, SINK_COUNTS)) {
		size_pump(p);
		if (s->w->mb && s->w->phase == W_FETCH)
			worker_check_done(s->w);
		return;
	}
	drain(p);
	settle_flow(p);
	if (was && !p->cur.active && s->w->mb && s->w->phase == W_FETCH)
		worker_check_done(s->w);
}

static unsigned pop3_src_reads_inflight(struct source *s)
{
	struct pop3src *p = s->w->p3;

	return p->inflight + (unsigned)p->cur.active +
	       (sink_can(&s->w->sink, SINK_COUNTS) && s->w->mb && !s->w->mb->failed &&
	        p->todo_pos < p->ntodo);
}

/* The refused batches' messages again, one per batch: w->retry holds ids. */
static void pop3_src_read_retries(struct source *s)
{
	struct worker *w = s->w;
	struct pop3src *p = w->p3;

	p->ntodo = p->todo_pos = 0;
	for (size_t r = w->retry_pos; r < w->nretry; r++)
		for (uint32_t i = 0; i < p->n; i++)
			if (p->ids[i] == w->retry[r]) {
				if (todo_push(p, i + 1) < 0) {
					mailbox_fail(w, NULL, 0, "out of memory");
					return;
				}
				break;
			}
	w->retry_pos = w->nretry;
	retr_pump(p);
	worker_check_done(w);
}

const struct source_ops source_pop3_ops = {
    .kind = "pop3",
    .caps = 0, /* one mailbox, no flags or dates, no changes */
    .who = pop3_src_who,
    .pause = pop3_src_pause,
    .kick = pop3_src_kick,
    .reads_inflight = pop3_src_reads_inflight,
    .read_retries = pop3_src_read_retries,
};

/* No body reaches the client-wide callbacks: each RETR has its consumer. */
static const struct pop3_client_cb pop3src_cb = {
    .ready = on_ready,
    .error = on_error,
};
