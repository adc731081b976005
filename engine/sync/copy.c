/*
 * copy — the data path between a source (source.h) and a sink (sink.h):
 * each message streamed in chunks, hashed (SHA-256) on the way, never
 * held whole; batching and backpressure; the intent journal: a batch's
 * intents are committed before the sink's commit point, confirmed by its
 * verdict (with the new ids). Refused batches are retried one message at
 * a time.
 *
 * Group commit: a batch that closes records its intents and waits; the
 * job's commit task, at the start of the next loop iteration, sends what
 * is already written, makes every waiting batch's intents durable in one
 * state commit (one fdatasync for all the connections) and only then lets
 * each cross its commit point. The loop no longer blocks once per batch
 * between a literal and its final CRLF (issue 22: without MULTIAPPEND
 * every message is a batch). A worker with a batch waiting opens no new
 * one (copy_slots_full); one that must (copy_msg_begin) commits at once.
 *
 * While another worker's sink still has deliveries its server has not
 * answered (sink pending(): SMTP/LMTP with two transactions in flight),
 * its next batch is about to close: the commit waits for it, at most
 * COPY_COMMIT_WAIT_MS, so that one fdatasync covers more messages. The
 * waiting batch's connection is not idle meanwhile (its previous message
 * is still being delivered), and a sink without pending() never waits.
 *
 * Not for: reading the source (source_imap), writing the wire (sink_imap),
 * what to copy (worker, plan), settling interrupted runs (settle).
 */
#include "engine/sync/job_int.h"

/* The longest a group commit waits for more batches (see above). */
#define COPY_COMMIT_WAIT_MS 3

static struct batch *batch_open(struct worker *w);
static void msg_record(struct worker *w, const struct batch *b, const struct bmsg *m,
		       uint8_t status, uint32_t dst_uidv, uint32_t dst_uid);
static void batch_close(struct worker *w);
static void batch_abandon(struct worker *w, struct batch *b);
static struct batch *commit_waiting(const struct worker *w);
static int msg_flags_ok(const struct batch *b, size_t n);
static void intent_drop(struct worker *w, uint32_t uid);

static struct batch *batch_open(struct worker *w)
{
	struct batch *b;

	if (w->open)
		return w->open;
	if (commit_waiting(w))
		copy_commit_run(w->job); /* the commit point comes before the next command */
	if (w->b_count == BATCH_SLOTS)
		return NULL;
	b = w->slot[(w->b_head + w->b_count) % BATCH_SLOTS];
	w->b_count++;
	b->w = w;
	b->answered = b->cur_fate = b->await_commit = b->rec_failed = 0;
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
	if (scope_msg_put(j, &k, &sm, &e) < 0) {
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
	/* a part's mark (split.c) is not lowered by another's until settled */
	if (on && (on = split_intents_mark(w)) < rec.intents)
		on = rec.intents;
	rec.intents = on;
	rec.intent_at_ms = on ? wall_ms() : 0;
	if (scope_mbox_put(j, w->mb->mbid, &rec, &e) < 0) {
		job_error(j, NULL, w->mb, 0, "%s", e.msg);
		j->fatal = 1;
	}
	w->intents_marked = on;
}

/* Ends the batch. Exactly-once: the intent for each message in it is
 * committed before the sink's commit point (IMAP: the APPEND's final
 * CRLF), after which the destination may store the batch; a crash leaves
 * intents that the next run settles against the destination before
 * copying again (DESIGN §4). The intents are recorded here and committed
 * by the group commit (copy_commit_run), except for a sink that stores
 * nothing twice (SINK_IDEMPOTENT: the archive), which commits at once. */
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
	b->rec_failed = j->nerrors != errors;
	if (sink_can(&w->sink, SINK_IDEMPOTENT)) {
		/* no fdatasync on the loop before this commit point: storing
		 * the batch again would store nothing new */
		if (b->rec_failed || j->fatal)
			batch_abandon(w, b);
		else
			w->sink.ops->commit(&w->sink, b);
		return;
	}
	b->await_commit = 1;
	loop_defer(j->loop, &j->commit_task);
}

/* The batch of w that waits for the group commit: at most one, its newest
 * (batch_open commits before it opens another). */
static struct batch *commit_waiting(const struct worker *w)
{
	struct batch *b;

	if (w->open || !w->b_count)
		return NULL;
	b = w->slot[(w->b_head + w->b_count - 1) % BATCH_SLOTS];
	return b->await_commit ? b : NULL;
}

/* The intents could not be made durable (a full disk, issue 15): the
 * commit point must not be crossed, or a re-run would copy the batch
 * again. Dropping the connection before it makes the server drop the
 * unfinished command (RFC 3502 §3: a MULTIAPPEND stores all of its
 * messages or none; RFC 5321 §4.1.1.4: no final dot, no delivery). The
 * source stops at its next literal (no write space); the job ends outside
 * this callback. */
static void batch_abandon(struct worker *w, struct batch *b)
{
	struct job *j = w->job;

	job_error(j, w->sink.ops->who(&w->sink), w->mb, b->n ? b->m[0].uid : 0,
	          "batch of %u message%s abandoned before its commit point: the state "
	          "could not record it; stopping so that nothing is copied twice",
	          b->n, b->n == 1 ? "" : "s");
	j->fatal = 1;
	w->mb->failed = 1;
	w->sink.ops->abort(&w->sink);
	loop_defer(j->loop, &j->stop_task);
}

void copy_commit_run(struct job *j)
{
	unsigned k;
	int rc;

	for (k = 0; k < j->nw && !commit_waiting(&j->w[k]); k++)
		;
	j->commit_wait_since = 0;
	loop_timer_cancel(j->loop, &j->commit_timer);
	if (k == j->nw)
		return;
	/* what the previous callbacks wrote (a released literal) goes out
	 * before the loop blocks in the fdatasync */
	loop_submit(j->loop);
	rc = job_commit(j);
	for (; k < j->nw; k++) {
		struct worker *w = &j->w[k];
		struct batch *b = commit_waiting(w);

		if (!b)
			continue;
		b->await_commit = 0;
		if (w->sink.ops->closed(&w->sink))
			continue; /* never sent whole: the intents settle as unstored */
		if (rc < 0 || b->rec_failed || j->fatal) {
			/* j->fatal: also a commit that failed since the batch
			 * closed (the tick's), which dropped its intents and
			 * left nothing for this one to commit */
			batch_abandon(w, b);
			continue;
		}
		w->sink.ops->commit(&w->sink, b);
		if (w->src_paused && !copy_slots_full(w)) {
			w->src_paused = 0;
			w->source.ops->kick(&w->source);
		}
	}
}

/* Another worker has no batch waiting but answers coming from its server:
 * its next batch is near (the source reads on while they come). */
static int commit_worth_waiting(struct job *j)
{
	int waiting = 0, coming = 0;

	for (unsigned k = 0; k < j->nw; k++) {
		struct worker *w = &j->w[k];
		struct sink *s = &w->sink;

		if (commit_waiting(w))
			waiting = 1;
		else if (!w->dead && s->ops && s->ops->pending && !s->ops->closed(s) &&
		         s->ops->pending(s))
			coming = 1;
	}
	return waiting && coming && !j->fatal;
}

static void commit_timer_fire(struct loop *l, struct loop_timer *t)
{
	(void)l;
	copy_commit_run((struct job *)((char *)t - offsetof(struct job, commit_timer)));
}

void copy_commit_task(struct loop *l, struct loop_task *t)
{
	struct job *j = (struct job *)((char *)t - offsetof(struct job, commit_task));
	uint64_t now = loop_now_ms(l);

	if (commit_worth_waiting(j)) {
		if (!j->commit_wait_since) {
			j->commit_wait_since = now ? now : 1;
			loop_timer_start(l, &j->commit_timer, COPY_COMMIT_WAIT_MS,
			                 commit_timer_fire);
		}
		if (now - j->commit_wait_since < COPY_COMMIT_WAIT_MS)
			return; /* a batch closing, an answer or the timer comes back */
	}
	copy_commit_run(j);
}

/* A refusal that says the destination is full (RFC 5530 [OVERQUOTA],
 * RFC 9208, or servers that only say "quota") is a class of its own. */
static void note_refusal(struct job *j, const char *why)
{
	if (why && (strstr(why, "OVERQUOTA") || strcasestr(why, "quota")))
		j->sum->classes |= JOB_CLASS_QUOTA;
}

static int msg_flags_ok(const struct batch *b, size_t n)
{
	return b->pool_len + n <= BATCH_POOL;
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





/* A message of this pass failed: counted, and the mailbox's recorded
 * position stays below it (mailbox_finish), so the next run tries again. */
void copy_msg_fail(struct worker *w, uint32_t uid)
{
	w->mb->nfailed++;
	w->job->sum->failed++;
	if (uid && (!w->mb_failed_min_uid || uid < w->mb_failed_min_uid))
		w->mb_failed_min_uid = uid;
}

void copy_msg_drop(struct worker *w, uint32_t uid, uint64_t size, int failed)
{
	memset(&w->cur, 0, offsetof(__typeof__(w->cur), flags));
	w->cur.active = 1;
	w->cur.skip = 1;
	w->cur.uid = uid;
	w->cur.size = w->cur.left = size;
	if (failed)
		copy_msg_fail(w, uid);
}

int copy_slots_full(const struct worker *w)
{
	return (!w->open && w->b_count == BATCH_SLOTS) || commit_waiting(w) ||
	       (w->sink.ops->busy && w->sink.ops->busy((struct sink *)&w->sink));
}

int copy_msg_begin(struct worker *w, const struct source_msg *m)
{
	struct job *j = w->job;
	uint32_t uid = m->uid;
	struct state_msg_key k;
	struct state_msg sm;
	struct mf_error e;
	struct batch *b;
	uint64_t limit;
	int rc;

	copy_msg_drop(w, uid, m->size, 0);
	if (uid < w->start_uid || uid > w->end_uid)
		return 0; /* IMAP: "n:*" returns the last message even when below n */
	k = (struct state_msg_key){j->jobid, w->mb->mbid, w->uidvalidity, uid};
	rc = state_msg_get(j->st, &k, &sm, &e);
	if (rc == 0 && state_msg_stored(&sm)) {
		/* Copied by a pass that never wrote its record (killed): its
		 * flags may have changed since, and the changes were read
		 * before this fetch. HIGHESTMODSEQ stays, so the next run
		 * reads them again as changes to a copied message. */
		if (j->o->sync_flags && !flags_equal(m->flags, m->flags_len, sm.flags, strlen(sm.flags)))
			w->chg_lost++;
		if (uid >= w->resume_uid && !resumed_counted(w, uid) && !w->mb->sp_redo) {
			/* below resume_uid, or settled: counted before a reconnect;
			 * a split mailbox read again: copied by its parts */
			w->mb->skipped++;
			j->sum->skipped++;
		}
		return 0;
	}
	if (rc < 0 && rc != -ENOENT) {
		job_error(j, NULL, w->mb, uid, "%s", e.msg);
		return -EIO;
	}
	limit = w->sink.ops->size_limit(&w->sink);
	if (limit && m->size > limit) {
		job_error(j, w->sink.ops->who(&w->sink), w->mb, uid,
			  "message of %llu bytes exceeds the destination's size limit %llu",
			  (unsigned long long)m->size, (unsigned long long)limit);
		copy_msg_fail(w, uid);
		return 0;
	}
	if (m->size > JOB_MAX_SIZE(j)) {
		/* a source that knows the size before the bytes (a dry run's
		 * sizes, an archive's index); IMAP's literal check and POP3's
		 * LIST check catch it earlier on a real pass */
		job_error(j, w->source.ops->who(&w->source), w->mb, uid,
			  "message of %llu bytes exceeds %s %llu; not copied",
			  (unsigned long long)m->size,
			  j->o->max_message_size ? "--max-message-size" : "the limit of",
			  (unsigned long long)JOB_MAX_SIZE(j));
		copy_msg_fail(w, uid);
		return 0;
	}
	if (m->refused) {
		/* it stays to be retried, like one the destination refused */
		job_error(j, w->source.ops->who(&w->source), w->mb, uid, "%s; message refused",
		          m->refused);
		copy_msg_fail(w, uid);
		return 0;
	}
	if (m->flags_len >= sizeof(w->cur.flags) || strlen(m->date) > IMAP_DATE_LEN) {
		job_error(j, NULL, w->mb, uid, "internal: flags or date too long");
		return -EIO;
	}
	w->cur.skip = 0;
	memcpy(w->cur.flags, m->flags, m->flags_len);
	w->cur.flags[m->flags_len] = '\0';
	w->cur.flags_len = m->flags_len;
	snprintf(w->cur.date, sizeof(w->cur.date), "%s", m->date);
	w->cur.idate = m->idate;
	w->cur.modseq = m->modseq;
	msghash_begin(&w->mh);
	w->cur.hdr_n = 0;
	w->cur.hdr_done = !j->o->show_subjects;

	/* A message that alone fills the batch's flag pool, or an empty one
	 * (which some servers refuse), gets its own batch so a refusal does
	 * not take a batch down with it. */
	if (w->open && (w->single_mode || !msg_flags_ok(w->open, w->cur.flags_len) ||
			m->size == 0))
		batch_close(w);
	if (!(b = batch_open(w))) {
		/* Cannot happen: the source pauses between messages while
		 * every slot is busy (copy_slots_full). */
		job_error(j, NULL, w->mb, uid, "internal: no batch slot");
		return -EIO;
	}
	w->sink.ops->msg_begin(&w->sink, b,
	                       &(struct sink_msg){uid, m->size, w->cur.flags, w->cur.flags_len,
	                                          w->cur.date});
	return 0;
}

/* --max-bytes-per-second: the buckets had time to refill; the source reads on. */
static void rate_refilled(struct loop *l, struct loop_timer *t)
{
	struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, rate_timer));

	hostlimit_paused(w->job->o->hostlimit, &w->lim, loop_now_ms(l) - w->rate_since);
	if (w->cur.active && !w->dead && w->phase != W_DONE && !w->src_starved)
		w->source.ops->kick(&w->source);
}

/* show_subjects: the header read for Subject and From, for the status page */
static void hdr_read(struct worker *w)
{
	struct job *j = w->job;

	w->cur.hdr_done = 1;
	mailhdr_field_text(w->hdr, w->cur.hdr_n, "subject", j->subject, sizeof(j->subject));
	mailhdr_field_text(w->hdr, w->cur.hdr_n, "from", j->from, sizeof(j->from));
	j->have_hdr = 1;
}

/* show_subjects: holds the message's first bytes until its header ended. */
static void hdr_peek(struct worker *w, const uint8_t *p, size_t n)
{
	size_t k;

	if (!w->hdr && !(w->hdr = malloc(JOB_HDR_PEEK))) {
		w->cur.hdr_done = 1; /* not shown: nothing else depends on it */
		return;
	}
	k = JOB_HDR_PEEK - w->cur.hdr_n < n ? JOB_HDR_PEEK - w->cur.hdr_n : n;
	memcpy(w->hdr + w->cur.hdr_n, p, k);
	w->cur.hdr_n += k;
	if (w->cur.hdr_n == JOB_HDR_PEEK || mailhdr_end(w->hdr, w->cur.hdr_n))
		hdr_read(w);
}

ssize_t copy_msg_data(struct worker *w, const uint8_t *p, size_t n)
{
	struct job *j = w->job;
	size_t space;

	if (!w->cur.active || w->cur.skip)
		return (ssize_t)n;
	space = w->sink.ops->space(&w->sink);
	if (space < n) {
		if (!space) {
			w->src_starved = 1;
			w->sink.ops->want_space(&w->sink);
			w->source.ops->pause(&w->source);
			return 0;
		}
		n = space;
	}
	if (hostlimit_rate(j->o->hostlimit)) {
		uint64_t wait_ms;
		size_t ok = hostlimit_take(j->o->hostlimit, &w->lim, n, &wait_ms);

		if (!ok) {
			/* the hosts' buckets are empty: stop reading until they refill */
			w->source.ops->pause(&w->source);
			if (!w->rate_timer.armed || w->rate_timer.cancelled) {
				w->rate_since = loop_now_ms(j->loop);
				loop_timer_start(j->loop, &w->rate_timer, wait_ms, rate_refilled);
			}
			return 0;
		}
		n = ok;
	}
	msghash_update(&w->mh, p, n);
	if (!w->cur.hdr_done)
		hdr_peek(w, p, n);
	w->sink.ops->data(&w->sink, p, n);
	w->cur.left -= n;
	return (ssize_t)n;
}

int copy_msg_end(struct worker *w)
{
	struct job *j = w->job;
	struct batch *b = w->open;
	struct bmsg *m;

	if (!w->cur.active || w->cur.skip) {
		w->cur.active = 0;
		return 0;
	}
	w->cur.active = 0;
	if (!w->cur.hdr_done && w->cur.hdr_n)
		hdr_read(w); /* a message that is all header */
	if (b->answered) {
		if (b->cur_fate == 1) {
			retry_push(w, w->cur.uid);
		} else if (b->cur_fate == 2) {
			job_error(j, w->sink.ops->who(&w->sink), w->mb, w->cur.uid,
				  "destination refused the message (%llu bytes): %s",
				  (unsigned long long)w->cur.size, b->why);
			note_refusal(j, b->why);
			copy_msg_fail(w, w->cur.uid);
		}
		batch_close(w);
		return 0;
	}
	m = &b->m[b->n];
	/* the content hash first: a sink may use it (the archive does, so
	 * that the bytes are hashed once) */
	msghash_end(&w->mh, m->hash, m->nhash);
	memcpy(w->cur.hash, m->hash, sizeof(w->cur.hash));
	w->sink.ops->msg_end(&w->sink, b);
	b->n++;
	m->uid = w->cur.uid;
	m->size = w->cur.size;
	m->modseq = w->cur.modseq;
	m->idate = w->cur.idate;
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
			copy_msg_fail(w, uid);
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

	if (scope_msg_del(j, &k, &e) < 0) {
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
	if (v->counted) {
		/* a dry run's sink (sink_count.c): would be copied; nothing to
		 * record (the dry run's scope records nothing anyway) */
		w->dry_count += b->n;
	} else if (v->ok) {
		for (unsigned i = 0; i < b->n; i++) {
			struct bmsg *m = &b->m[i];
			uint32_t id = v->ids && v->nids == b->n ? v->ids[i] : 0;
			/* keywords stored later (kwdefer.h): an intent until then */
			int kw = kwdefer_note(w, m->uid, id, b->pool + m->flags_off, m->flags_len);

			msg_record(w, b, m, kw ? STATE_MSG_INTENT : STATE_MSG_DONE, v->dst_uidv, id);
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
	} else if (b->n == 1 && v->temporary && w->tmp_passes < j->o->retries &&
	           !grow((void **)&w->tmp, &w->ctmp, w->ntmp + 1, sizeof(*w->tmp))) {
		/* refused for now: again after a backoff (worker_check_done) */
		mf_log(MF_LOG_INFO, "%s mailbox \"%s\" UID %u: refused for now (%s); tried again later",
		       who, mb->display, b->m[0].uid, v->why ? v->why : "");
		intent_drop(w, b->m[0].uid);
		w->tmp[w->ntmp++] = b->m[0].uid;
	} else if (b->n == 1) {
		job_error(j, who, mb, b->m[0].uid, "destination refused the message (%llu bytes): %s",
			  (unsigned long long)b->m[0].size, v->why ? v->why : "");
		note_refusal(j, v->why);
		intent_drop(w, b->m[0].uid);
		copy_msg_fail(w, b->m[0].uid);
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
	if (w->src_paused && !copy_slots_full(w)) { /* else sink_writable kicks it */
		w->src_paused = 0;
		w->source.ops->kick(&w->source);
	}
	if (j->commit_wait_since)
		loop_defer(j->loop, &j->commit_task); /* still worth waiting? */
	worker_check_done(w);
}

/* The sink has room again after want_space(): the starved source goes on. */
void sink_writable(struct worker *w)
{
	if (w->src_starved) {
		w->src_starved = 0;
		w->source.ops->kick(&w->source);
	} else if (w->src_paused && !copy_slots_full(w)) {
		w->src_paused = 0;
		w->source.ops->kick(&w->source);
	}
}




/* The backoff after a pass with temporary refusals is over: read them. */
static void tmp_retry_fire(struct loop *l, struct loop_timer *t)
{
	struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, retry_timer));

	(void)l;
	if (w->dead || !w->mb || w->phase != W_FETCH)
		return;
	w->source.ops->read_retries(&w->source);
	worker_check_done(w);
}

/* The messages refused for now become the retry list of one more pass,
 * read after 1 s, doubling up to 30 s: a server that said "try again
 * later" (a greylist, a full queue, a throttle) gets its time. */
static void tmp_pass_start(struct worker *w)
{
	struct job *j = w->job;
	uint64_t ms = 1000;

	if (grow((void **)&w->retry, &w->cretry, w->ntmp, sizeof(*w->retry)) < 0) {
		for (size_t i = 0; i < w->ntmp; i++) {
			job_error(j, w->sink.ops->who(&w->sink), w->mb, w->tmp[i],
			          "out of memory queueing the message for a retry; it is tried "
			          "again next run");
			copy_msg_fail(w, w->tmp[i]);
		}
		w->ntmp = 0;
		mailbox_finish(w);
		return;
	}
	memcpy(w->retry, w->tmp, w->ntmp * sizeof(*w->retry));
	w->nretry = w->ntmp;
	w->retry_pos = 0;
	w->ntmp = 0;
	w->single_mode = 1;
	for (unsigned i = 0; i < w->tmp_passes && ms < 30000; i++)
		ms *= 2;
	if (ms > 30000)
		ms = 30000;
	w->tmp_passes++;
	progress_clear(j);
	mf_log(MF_LOG_INFO, "%s mailbox \"%s\": %zu messages refused for now; trying again in "
	                    "%.0f s (pass %u of %u)",
	       w->sink.ops->who(&w->sink), w->mb->display, w->nretry, (double)ms / 1000.0,
	       w->tmp_passes, j->o->retries);
	loop_timer_start(j->loop, &w->retry_timer, ms, tmp_retry_fire);
}

void worker_check_done(struct worker *w)
{
	if (w->phase != W_FETCH || w->source.ops->reads_inflight(&w->source) ||
	    (w->retry_timer.armed && !w->retry_timer.cancelled)) /* a backoff runs */
		return;
	if (w->open)
		batch_close(w);
	if (w->b_count)
		return;
	if (!w->mb->failed && !w->single_mode && w->nretry) {
		/* the refused batches' messages again, one per batch */
		w->single_mode = 1;
		w->retry_pos = 0;
		w->source.ops->read_retries(&w->source);
		return;
	}
	if (!w->mb->failed && w->ntmp) {
		tmp_pass_start(w);
		return;
	}
	mailbox_finish(w);
}
