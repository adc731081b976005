/*
 * copy — the data path: source FETCH literal → SHA-256 → destination APPEND
 * literal (MULTIAPPEND batches, LITERAL+), in chunks, never a whole
 * message. The intent journal: a batch's intents are committed before its
 * final CRLF (the commit point), confirmed by the tagged OK (APPENDUID).
 * Refused batches are retried one message at a time.
 *
 * Not for: what to copy (worker, plan), settling interrupted runs (settle).
 */
#include "engine/sync/job_int.h"

static struct batch *batch_open(struct worker *w);
static void msg_record(struct worker *w, const struct batch *b, const struct bmsg *m,
		       uint8_t status, uint32_t dst_uidv, uint32_t dst_uid);
static void batch_close(struct worker *w);
static int msg_flags_ok(const struct batch *b, size_t n);
static void intent_drop(struct worker *w, uint32_t uid);
static void fetch_send(struct worker *w, struct imap_cmd *cmd, const char *set);
static void fetch_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);

static struct batch *batch_open(struct worker *w)
{
	struct batch *b;

	if (w->open)
		return w->open;
	if (w->b_count == BATCH_SLOTS)
		return NULL;
	b = w->slot[(w->b_head + w->b_count) % BATCH_SLOTS];
	w->b_count++;
	b->w = w;
	b->answered = b->cur_fate = 0;
	b->n = 0;
	b->bytes = 0;
	b->pool_len = 0;
	w->open = b;
	w->sink.ops->batch_begin(&w->sink, b);
	return b;
}

static void msg_record(struct worker *w, const struct batch *b, const struct bmsg *m,
		       uint8_t status, uint32_t dst_uidv, uint32_t dst_uid)
{
	struct job *j = w->job;
	struct state_msg sm;
	struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, m->uid};
	size_t fl = m->flags_len < STATE_FLAGS_MAX ? m->flags_len : STATE_FLAGS_MAX - 1;
	struct mf_error e;

	memset(&sm, 0, offsetof(struct state_msg, flags));
	memcpy(sm.hash, m->hash, 32);
	memcpy(sm.nhash, m->nhash, 32);
	sm.size = m->size;
	sm.modseq = m->modseq;
	sm.internaldate = (uint64_t)m->idate;
	sm.dst_uidvalidity = dst_uidv;
	sm.dst_uid = dst_uid;
	sm.status = status;
	memcpy(sm.flags, b->pool + m->flags_off, fl);
	sm.flags[fl] = '\0';
	if (state_msg_put(j->st, &k, &sm, &e) < 0) {
		job_error(j, NULL, w->mb, m->uid, "%s", e.msg);
		j->fatal = 1;
	}
	j->state_dirty = 1;
}

uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Marks the mailbox as having APPENDs that may be unconfirmed, and when. */
void mbox_mark_intents(struct worker *w, uint32_t on)
{
	struct job *j = w->job;
	struct state_mbox rec;
	struct mf_error e;

	if (state_mbox_get(j->st, j->jobid, w->mb->mbid, &rec, &e) < 0) {
		memset(&rec, 0, sizeof(rec));
		snprintf(rec.name, sizeof(rec.name), "%s", w->mb->name);
	}
	if (!rec.uidvalidity) {
		/* First time: record the identity the intents are keyed under. */
		rec.uidvalidity = w->uidvalidity;
	}
	if (rec.uidvalidity != w->uidvalidity)
		return; /* UIDVALIDITY changed: settled on the next full pass */
	rec.intents = on;
	rec.intent_at_ms = on ? wall_ms() : 0;
	if (state_mbox_put(j->st, j->jobid, w->mb->mbid, &rec, &e) < 0) {
		job_error(j, NULL, w->mb, 0, "%s", e.msg);
		j->fatal = 1;
	}
	w->intents_marked = on;
}

/* Ends the batch. Exactly-once: the intent for each message in it is
 * committed before the sink's commit point (IMAP: the APPEND's final
 * CRLF), after which the destination may store the batch; a crash leaves intents that the next run settles against
 * the destination before copying again (DESIGN §4). */
static void batch_close(struct worker *w)
{
	struct batch *b = w->open;
	struct job *j = w->job;
	unsigned errors = j->nerrors;

	if (!b)
		return;
	w->open = NULL;
	if (w->sink.ops->closed(&w->sink))
		return; /* never sent whole (see below): nothing to record */
	if (b->answered) {
		/* Already refused: the sink finishes the batch's bytes, we
		 * record nothing. */
		w->sink.ops->discard(&w->sink, b);
		return;
	}
	mbox_mark_intents(w, 1); /* also stamps the time of this commit */
	for (unsigned i = 0; i < b->n; i++)
		msg_record(w, b, &b->m[i], STATE_MSG_INTENT, 0, 0);
	if (job_commit(j) < 0 || j->nerrors != errors) {
		/* The intents are not durable (a full disk, issue 15): the
		 * commit point must not be crossed, or a re-run would copy the
		 * batch again. Dropping the connection before it makes the
		 * server drop the unfinished command (RFC 3502 §3: a
		 * MULTIAPPEND stores all of its messages or none; RFC 5321
		 * §4.1.1.4: no final dot, no delivery). The source stops at its
		 * next literal (no write space); the job ends outside this
		 * callback. */
		job_error(j, w->sink.ops->who(&w->sink), w->mb, b->n ? b->m[0].uid : 0,
		          "batch of %u message%s abandoned before its commit point: the state "
		          "could not record it; stopping so that nothing is copied twice",
		          b->n, b->n == 1 ? "" : "s");
		j->fatal = 1;
		w->mb->failed = 1;
		w->sink.ops->abort(&w->sink);
		loop_defer(j->loop, &j->stop_task);
		return;
	}
	w->sink.ops->commit(&w->sink, b);
}

static int msg_flags_ok(const struct batch *b, size_t n)
{
	return b->pool_len + n <= BATCH_POOL;
}

/* A literal the source announces is checked before a byte of it is read: a
 * hostile server could announce {99999999999} and stream forever. Skipping
 * such a literal is not cheap, so the connection is dropped (the caller
 * returns the code; the mailbox fails, the others go on). */
int literal_check(struct worker *w, struct imap_client *c, const struct imap_resp *r,
                         const struct imap_node *key, uint64_t size)
{
	struct job *j = w->job;
	uint64_t max = j->o->max_message_size ? j->o->max_message_size : JOB_MESSAGE_MAX;
	struct fetch_meta fm;

	if (!r->first || !r->first->next || !imap_node_is(r->first->next, "FETCH") || !key ||
	    !imap_node_is(key, "BODY[]")) {
		if (size <= JOB_OTHER_LITERAL_MAX)
			return 0;
		job_error(j, imap_client_who(c), w->mb, 0,
		          "unexpected literal of %llu bytes; dropping the connection",
		          (unsigned long long)size);
		return -EMSGSIZE;
	}
	fetch_meta(r, key, &fm);
	/* Larger than announced is the attack; some servers (Exchange) send an
	 * estimate, so a quarter more plus 64 KiB is tolerated. */
	if (fm.has_size && size > fm.size + fm.size / 4 + 65536) {
		job_error(
		    j, imap_client_who(c), w->mb, fm.uid,
		    "message body of %llu bytes but RFC822.SIZE %llu; dropping the connection",
		    (unsigned long long)size, (unsigned long long)fm.size);
		return -EMSGSIZE;
	}
	if (size > max) {
		job_error(j, imap_client_who(c), w->mb, fm.uid,
		          "message of %llu bytes exceeds %s %llu; dropping the connection",
		          (unsigned long long)size,
		          j->o->max_message_size ? "--max-message-size" : "the limit of",
		          (unsigned long long)max);
		return -EMSGSIZE;
	}
	return 0;
}

static int uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Settled after a reconnect, and counted as copied then (settle.c). */
static int resumed_counted(const struct worker *w, uint32_t uid)
{
	return w->ncounted &&
	       bsearch(&uid, w->counted, w->ncounted, sizeof(*w->counted), uid_cmp) != NULL;
}

int src_lit_begin(struct imap_client *c, const struct imap_resp *r,
			 const struct imap_node *key, uint64_t size)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	const struct imap_node *flags, *date, *bad;
	struct imap_date dt;
	struct fetch_meta fm;
	uint32_t uid;
	uint64_t modseq;
	struct state_msg_key k;
	struct state_msg sm;
	struct mf_error e;
	struct batch *b;
	uint64_t limit;
	int rc;

	if ((rc = literal_check(w, c, r, key, size)) < 0)
		return rc;
	if ((w->phase != W_FETCH && w->phase != W_REMAP && w->phase != W_PROBE &&
	     w->phase != W_DEDUPE_SRC) ||
	    !r->first || !r->first->next || !imap_node_is(r->first->next, "FETCH") || !key ||
	    !imap_node_is(key, "BODY[]"))
		return IMAP_LIT_INLINE;
	if (w->phase == W_REMAP || w->phase == W_PROBE)
		return remap_lit_begin(w, r, key);
	if (w->phase == W_DEDUPE_SRC)
		return dd_src_lit_begin(w, r, key, size);
	fetch_meta(r, key, &fm);
	uid = fm.uid, modseq = fm.modseq, flags = fm.flags, date = fm.date;
	memset(&w->cur, 0, offsetof(__typeof__(w->cur), flags));
	w->cur.active = 1;
	w->cur.size = w->cur.left = size;
	if (!uid || !flags || !date) {
		/* The server sent the body before the items we asked first; we
		 * would need to spool it. Dovecot, Cyrus, Gmail and Exchange
		 * answer in the order asked. */
		job_error(j, imap_client_who(c), w->mb, uid,
			  "server sent BODY[] before UID/FLAGS/INTERNALDATE; message skipped");
		w->cur.skip = 1;
		w->mb->nfailed++;
		j->sum->failed++;
		return IMAP_LIT_STREAM;
	}
	w->cur.uid = uid;
	if (uid < w->start_uid || uid > w->end_uid) {
		w->cur.skip = 1; /* "n:*" returns the last message even when below n */
		return IMAP_LIT_STREAM;
	}
	k = (struct state_msg_key){j->jobid, w->mb->mbid, w->uidvalidity, uid};
	rc = state_msg_get(j->st, &k, &sm, &e);
	if (rc == 0 && sm.status == STATE_MSG_DONE) {
		w->cur.skip = 1;
		if (uid >= w->resume_uid && !resumed_counted(w, uid)) {
			/* below resume_uid, or settled: counted before a reconnect */
			w->mb->skipped++;
			j->sum->skipped++;
		}
		return IMAP_LIT_STREAM;
	}
	if (rc < 0 && rc != -ENOENT) {
		job_error(j, NULL, w->mb, uid, "%s", e.msg);
		return -EIO;
	}
	limit = w->sink.ops->size_limit(&w->sink);
	if (limit && size > limit) {
		job_error(j, w->sink.ops->who(&w->sink), w->mb, uid,
			  "message of %llu bytes exceeds the destination's size limit %llu",
			  (unsigned long long)size, (unsigned long long)limit);
		w->cur.skip = 1;
		w->mb->nfailed++;
		j->sum->failed++;
		return IMAP_LIT_STREAM;
	}
	/* Issue 15 defect 1: nothing the source sent goes onto the APPEND
	 * line as it came. The date is written again from its parsed fields,
	 * flags only as system flags or atoms; anything else refuses the
	 * message (it stays to be retried, like one the destination refused). */
	w->cur.flags_len = flags_string(flags, w->cur.flags, sizeof(w->cur.flags), &bad);
	if (date->type != IMAP_NODE_STRING || imap_date_parse(date->s, date->len, &dt) < 0 || bad) {
		if (bad)
			job_error(j, imap_client_who(c), w->mb, uid,
			          "flag \"%.*s\" is neither a system flag nor an atom; message "
			          "refused",
			          (int)(bad->len > 64 ? 64 : bad->len), bad->s ? bad->s : "");
		else
			job_error(j, imap_client_who(c), w->mb, uid,
			          "INTERNALDATE is not an RFC 3501 date-time; message refused");
		w->cur.skip = 1;
		w->mb->nfailed++;
		j->sum->failed++;
		if (!w->mb_failed_min_uid || uid < w->mb_failed_min_uid)
			w->mb_failed_min_uid = uid;
		return IMAP_LIT_STREAM;
	}
	imap_date_format(&dt, w->cur.date);
	w->cur.idate = imap_date_unix(&dt);
	w->cur.modseq = modseq;
	msghash_begin(&w->mh);

	/* A message that alone fills the batch's flag pool, or an empty one
	 * (which some servers refuse), gets its own APPEND so a refusal does
	 * not take a batch down with it. */
	if (w->open && (w->single_mode || !msg_flags_ok(w->open, w->cur.flags_len) ||
			size == 0))
		batch_close(w);
	if (!(b = batch_open(w))) {
		/* Cannot happen: the source pauses at response boundaries
		 * while every slot is busy. */
		job_error(j, NULL, w->mb, uid, "internal: no APPEND slot");
		return -EIO;
	}
	w->sink.ops->msg_begin(&w->sink, b,
	                       &(struct sink_msg){uid, size, w->cur.flags, w->cur.flags_len,
	                                          w->cur.date});
	return IMAP_LIT_STREAM;
}

ssize_t src_lit_data(struct imap_client *c, const uint8_t *p, size_t n)
{
	struct worker *w = c->ud;
	size_t space;

	if (w->phase == W_REMAP || w->phase == W_PROBE || w->phase == W_DEDUPE_SRC) {
		msghash_update(&w->mh, p, n);
		return (ssize_t)n;
	}
	if (!w->cur.active || w->cur.skip)
		return (ssize_t)n;
	space = w->sink.ops->space(&w->sink);
	if (space < n) {
		if (!space) {
			w->src_starved = 1;
			w->sink.ops->want_space(&w->sink);
			imap_client_pause(&w->src);
			return 0;
		}
		n = space;
	}
	msghash_update(&w->mh, p, n);
	w->sink.ops->data(&w->sink, p, n);
	w->cur.left -= n;
	return (ssize_t)n;
}

int src_lit_end(struct imap_client *c)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct batch *b = w->open;
	struct bmsg *m;

	if (w->phase == W_REMAP)
		return remap_lit_end(w);
	if (w->phase == W_PROBE)
		return probe_lit_end(w);
	if (w->phase == W_DEDUPE_SRC)
		return dd_src_lit_end(w);
	if (!w->cur.active || w->cur.skip) {
		w->cur.active = 0;
		return 0;
	}
	w->cur.active = 0;
	if (b->answered) {
		if (b->cur_fate == 1) {
			retry_push(w, w->cur.uid);
		} else if (b->cur_fate == 2) {
			job_error(j, w->sink.ops->who(&w->sink), w->mb, w->cur.uid,
				  "destination refused the message (%llu bytes): %s",
				  (unsigned long long)w->cur.size, b->why);
			w->mb->nfailed++;
			j->sum->failed++;
			if (!w->mb_failed_min_uid || w->cur.uid < w->mb_failed_min_uid)
				w->mb_failed_min_uid = w->cur.uid;
		}
		batch_close(w);
		return 0;
	}
	w->sink.ops->msg_end(&w->sink, b);
	m = &b->m[b->n++];
	m->uid = w->cur.uid;
	m->size = w->cur.size;
	m->modseq = w->cur.modseq;
	m->idate = w->cur.idate;
	msghash_end(&w->mh, m->hash, m->nhash);
	m->flags_off = (uint16_t)b->pool_len;
	m->flags_len = (uint16_t)w->cur.flags_len;
	memcpy(b->pool + b->pool_len, w->cur.flags, w->cur.flags_len);
	b->pool_len += w->cur.flags_len;
	b->bytes += w->cur.size;
	if (b->n >= BATCH_MAX || b->n >= j->o->batch_msgs || b->bytes >= j->o->batch_bytes ||
	    w->single_mode || w->cur.size == 0 || !w->sink.ops->batch_more(&w->sink))
		batch_close(w);
	return 0;
}

int src_untagged(struct imap_client *c, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	const struct imap_node *a = r->first;

	if (w->phase == W_DIFF)
		return changes_untagged(w, r);
	if (w->phase == W_COUNT && a && a->next) {
		uint32_t n;

		if (imap_node_is(a, "SEARCH"))
			for (const struct imap_node *it = a->next; it; it = it->next)
				w->dry_count += imap_node_u32(it, &n) == 0 && n >= w->start_uid;
		else if (imap_node_is(a, "ESEARCH"))
			for (const struct imap_node *it = a->next; it && it->next; it = it->next)
				if (imap_node_is(it, "COUNT"))
					imap_node_u64(it->next, &w->dry_count);
		return 0;
	}
	if (w->phase == W_PROBE) {
		const struct imap_node *v = imap_resp_code(r, "UIDVALIDITY");

		if (v)
			imap_node_u32(v, &w->uidvalidity);
		return 0;
	}
	if (w->phase == W_EXAMINE) {
		const struct imap_node *v;

		if (w->method == M_QRESYNC && r->status == IMAP_ST_NONE)
			return changes_untagged(w, r);
		if ((v = imap_resp_code(r, "UIDVALIDITY")))
			imap_node_u32(v, &w->uidvalidity);
		else if ((v = imap_resp_code(r, "UIDNEXT")))
			imap_node_u32(v, &w->uidnext);
		else if ((v = imap_resp_code(r, "HIGHESTMODSEQ")))
			imap_node_u64(v, &w->highestmodseq);
		return 0;
	}
	if (w->phase == W_FETCH && a && a->next && imap_node_is(a->next, "FETCH")) {
		/* Response boundary: pause here if no APPEND slot is free. */
		if (!w->open && w->b_count == BATCH_SLOTS) {
			w->src_paused = 1;
			return IMAP_PARSE_PAUSE;
		}
	}
	return 0;
}

void retry_push(struct worker *w, uint32_t uid)
{
	if (w->nretry == w->cretry) {
		size_t nc = w->cretry ? w->cretry * 2 : 64;
		uint32_t *nr = test_fail(w->job, "retry_push") ? NULL
							       : realloc(w->retry, nc * sizeof(*nr));

		if (!nr) {
			/* Not queued, so not copied: it fails this run, and the
			 * mailbox's last UID stays below it (mailbox_finish). */
			job_error(w->job, w->sink.ops->who(&w->sink), w->mb, uid,
			          "out of memory queueing the message for a retry; it is "
			          "tried again next run");
			w->mb->nfailed++;
			w->job->sum->failed++;
			if (!w->mb_failed_min_uid || uid < w->mb_failed_min_uid)
				w->mb_failed_min_uid = uid;
			return;
		}
		w->retry = nr;
		w->cretry = nc;
	}
	w->retry[w->nretry++] = uid;
}

/* The server refused the APPEND: nothing of it was stored. */
static void intent_drop(struct worker *w, uint32_t uid)
{
	struct job *j = w->job;
	struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, uid};
	struct mf_error e;

	if (state_msg_del(j->st, &k, &e) < 0) {
		job_error(j, NULL, w->mb, uid, "%s", e.msg);
		j->fatal = 1;
	}
	j->state_dirty = 1;
}

/* A sink's answer to batch b (sink.h): the messages are recorded as
 * copied with their new ids, or their intents dropped and they are
 * retried one by one (a refused batch) or failed (a refused message). */
void sink_batch_done(struct batch *b, const struct sink_verdict *v)
{
	struct worker *w = b->w;
	struct job *j = w->job;
	struct mbox *mb = w->mb;
	const char *who = w->sink.ops->who(&w->sink);

	if (b == w->open) {
		/* Answered before its end (Dovecot refuses an over-quota literal
		 * on its header). The message being sent shares the verdict. */
		int cur = w->cur.active && !w->cur.skip;

		b->answered = 1;
		snprintf(b->why, sizeof(b->why), "%s", v->why ? v->why : "");
		if (!v->ok && cur)
			b->cur_fate = (b->n + 1 > 1) ? 1 : 2;
		if (!v->ok && b->n == 1 && cur) {
			/* two messages involved: neither is known to be the one */
			intent_drop(w, b->m[0].uid);
			retry_push(w, b->m[0].uid);
			b->n = 0;
		}
	}
	/* Batches of one mailbox complete in the order sent (servers do not
	 * run APPENDs or transactions in parallel); the slot ring relies on it. */
	if (b != w->slot[w->b_head]) {
		job_error(j, who, mb, 0, "batch answered out of order");
		j->fatal = 1;
	}
	w->b_head = (w->b_head + 1) % BATCH_SLOTS;
	w->b_count--;
	if (v->ok) {
		for (unsigned i = 0; i < b->n; i++) {
			struct bmsg *m = &b->m[i];

			msg_record(w, b, m, STATE_MSG_DONE, v->dst_uidv,
			           v->ids && v->nids == b->n ? v->ids[i] : 0);
			mb->copied++;
			mb->bytes += m->size;
			j->sum->copied++;
			j->sum->bytes += m->size;
		}
	} else if (b->n > 1) {
		/* RFC 3502: a refused MULTIAPPEND stores none of its messages;
		 * copy them one by one to find the one the server refuses. */
		for (unsigned i = 0; i < b->n; i++) {
			intent_drop(w, b->m[i].uid);
			retry_push(w, b->m[i].uid);
		}
	} else if (b->n == 1) {
		job_error(j, who, mb, b->m[0].uid, "destination refused the message (%llu bytes): %s",
			  (unsigned long long)b->m[0].size, v->why ? v->why : "");
		intent_drop(w, b->m[0].uid);
		mb->nfailed++;
		j->sum->failed++;
		if (!w->mb_failed_min_uid || b->m[0].uid < w->mb_failed_min_uid)
			w->mb_failed_min_uid = b->m[0].uid;
	}
	if (b->n && !w->single_mode && !w->list_mode) {
		/* UIDs come in order and batches complete in order: everything
		 * below this batch's last message was counted; a resumed pass
		 * does not count it again as skipped. */
		if (b->m[b->n - 1].uid >= w->resume_uid)
			w->resume_uid = b->m[b->n - 1].uid + 1;
		w->resume_uidv = w->uidvalidity;
	}
	if (v->ok && b->n)
		w->attempts = 0; /* progress: a later drop gets every attempt again */
	if (w->src_paused) {
		w->src_paused = 0;
		imap_client_kick(&w->src);
	}
	worker_check_done(w);
}

/* The sink has room again after want_space(): the starved source goes on. */
void sink_writable(struct worker *w)
{
	if (w->src_starved) {
		w->src_starved = 0;
		imap_client_kick(&w->src);
	}
}

static void fetch_send(struct worker *w, struct imap_cmd *cmd, const char *set)
{
	imap_cmd_begin(&w->src, cmd, fetch_done, NULL);
	imap_putf(&w->src, "UID FETCH %s (UID FLAGS INTERNALDATE RFC822.SIZE%s BODY.PEEK[])", set,
		  w->src.enabled_condstore ? " MODSEQ" : "");
	imap_cmd_end(&w->src);
	w->fetches_inflight++;
}

/* Sends the next UID range, or the next chunk of the retry list. */
int fetch_next(struct worker *w, struct imap_cmd *cmd)
{
	char set[RETRY_CHUNK * 11 + 1];

	if (!w->single_mode && !w->list_mode) {
		uint32_t a = w->next_range, b;

		if (a > w->end_uid || a == 0)
			return 0;
		if (w->end_uid == UINT32_MAX) {
			/* No UIDNEXT known: one open range, not four million. */
			w->next_range = 0;
			snprintf(set, sizeof(set), "%u:*", a);
			fetch_send(w, cmd, set);
			return 1;
		}
		b = (w->end_uid - a >= FETCH_RANGE) ? a + FETCH_RANGE - 1 : w->end_uid;
		w->next_range = b == UINT32_MAX ? 0 : b + 1;
		snprintf(set, sizeof(set), "%u:%u", a, b);
	} else {
		size_t n = 0, k = 0;

		uint32_t *list = w->single_mode ? w->retry : w->todo;
		size_t *pos = w->single_mode ? &w->retry_pos : &w->todo_pos;
		size_t len = w->single_mode ? w->nretry : w->ntodo;

		if (*pos >= len)
			return 0;
		while (*pos < len && k < RETRY_CHUNK) {
			n += (size_t)snprintf(set + n, sizeof(set) - n, "%s%u", k ? "," : "",
					      list[(*pos)++]);
			k++;
		}
	}
	fetch_send(w, cmd, set);
	return 1;
}

static void fetch_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	w->fetches_inflight--;
	if (r->status != IMAP_ST_OK) {
		job_error(w->job, imap_client_who(c), w->mb, 0, "UID FETCH failed: %.*s",
			  (int)r->text_len, r->text);
		w->mb->failed = 1;
	} else {
		fetch_next(w, cmd);
	}
	worker_check_done(w);
}

void worker_check_done(struct worker *w)
{
	if (w->phase != W_FETCH || w->fetches_inflight)
		return;
	if (w->open)
		batch_close(w);
	if (w->b_count)
		return;
	if (!w->mb->failed && !w->single_mode && w->nretry) {
		w->single_mode = 1;
		w->retry_pos = 0;
		fetch_next(w, &w->fetch_cmd[0]);
		fetch_next(w, &w->fetch_cmd[1]);
		return;
	}
	mailbox_finish(w);
}
