/*
 * source_imap — the IMAP source's copy pass (source.h): UID FETCH ranges
 * (two in flight), UID lists and the retry list, each FETCH response's
 * items checked and rewritten before its BODY[] literal is streamed into
 * the copy consumer; literal sizes bounded before a byte is read; for a
 * counting sink (--dry-run) sizes only (UID FETCH RFC822.SIZE, no
 * bodies). Each command carries its own
 * response consumer (imap_client.h); what the other passes' consumers
 * share (body_literal, hash_lit_data) and the client-wide fallback
 * (lit_checked_inline) are here too.
 *
 * Not for: EXAMINE and change detection (worker.c, changes.c), hashing
 * passes (remap.c, rename.c, dedupe.c), writing (copy.c, sink_imap.c).
 */
#include "engine/sync/job_int.h"

static void fetch_send(struct worker *w, struct imap_cmd *cmd, const char *set);
static void fetch_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static int selective_untagged(struct imap_client *c, struct imap_cmd *cmd,
                              const struct imap_resp *r);
static void selective_start(struct worker *w);

/* A literal the source announces is checked before a byte of it is read: a
 * hostile server could announce {99999999999} and stream forever. Skipping
 * such a literal is not cheap, so the connection is dropped (the caller
 * returns the code; the mailbox fails, the others go on). */
int literal_check(struct worker *w, struct imap_client *c, const struct imap_resp *r,
                         const struct imap_node *key, uint64_t size)
{
	struct job *j = w->job;
	uint64_t max = JOB_MAX_SIZE(j);
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

/* A literal some consumer of ours reads: checked (literal_check) before
 * a byte of it is read. 1: a FETCH's BODY[], for the consumer; 0: anything
 * else, kept inline; negative: drop the connection. */
int body_literal(struct worker *w, struct imap_client *c, const struct imap_resp *r,
                 const struct imap_node *key, uint64_t size)
{
	int rc;

	if ((rc = literal_check(w, c, r, key, size)) < 0)
		return rc;
	return r->first && r->first->next && imap_node_is(r->first->next, "FETCH") && key &&
	       imap_node_is(key, "BODY[]");
}

/* A literal no command's consumer took (client-wide, both sides): checked,
 * then kept inline. */
int lit_checked_inline(struct imap_client *c, const struct imap_resp *r,
                       const struct imap_node *key, uint64_t size)
{
	int rc = literal_check(c->ud, c, r, key, size);

	return rc < 0 ? rc : IMAP_LIT_INLINE;
}

/* The hashing passes' literal data (remap, rename probe, dedupe, settle). */
ssize_t hash_lit_data(struct imap_client *c, struct imap_cmd *cmd, const uint8_t *p, size_t n)
{
	struct worker *w = c->ud;

	(void)cmd;
	msghash_update(&w->mh, p, n);
	return (ssize_t)n;
}

/* The copy pass's UID FETCH: BODY[] of a message goes to the copy consumer
 * once its UID, FLAGS and INTERNALDATE are checked and rewritten. */
static int fetch_lit_begin(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r,
                           const struct imap_node *key, uint64_t size)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	const struct imap_node *bad;
	struct imap_date dt;
	struct fetch_meta fm;
	struct source_msg m = {0};
	char flags[STATE_FLAGS_MAX], date[IMAP_DATE_LEN + 1] = "", why[160];
	int rc;

	(void)cmd;
	if ((rc = body_literal(w, c, r, key, size)) <= 0)
		return rc < 0 ? rc : IMAP_LIT_INLINE;
	fetch_meta(r, key, &fm);
	if (fm.uid > w->fetch_max_uid)
		w->fetch_max_uid = fm.uid;
	if (!fm.uid || !fm.flags || !fm.date) {
		/* The server sent the body before the items we asked first; we
		 * would need to spool it. Dovecot, Cyrus, Gmail and Exchange
		 * answer in the order asked. */
		job_error(j, imap_client_who(c), w->mb, fm.uid,
			  "server sent BODY[] before UID/FLAGS/INTERNALDATE; message skipped");
		copy_msg_drop(w, fm.uid, size, 1);
		return IMAP_LIT_STREAM;
	}
	/* Issue 15 defect 1: nothing the source sent goes onto the APPEND
	 * line as it came. The date is written again from its parsed fields,
	 * flags only as system flags or atoms; anything else refuses the
	 * message. */
	m.uid = fm.uid;
	m.size = size;
	m.modseq = fm.modseq;
	m.flags = flags;
	m.flags_len = flags_string(fm.flags, flags, sizeof(flags), &bad);
	m.date = date;
	if (bad) {
		snprintf(why, sizeof(why), "flag \"%.*s\" is neither a system flag nor an atom",
		         (int)(bad->len > 64 ? 64 : bad->len), bad->s ? bad->s : "");
		m.refused = why;
	} else if (fm.date->type != IMAP_NODE_STRING ||
	           imap_date_parse(fm.date->s, fm.date->len, &dt) < 0) {
		m.refused = "INTERNALDATE is not an RFC 3501 date-time";
	} else {
		imap_date_format(&dt, date);
		m.idate = imap_date_unix(&dt);
	}
	return copy_msg_begin(w, &m) < 0 ? -EIO : IMAP_LIT_STREAM;
}

static ssize_t fetch_lit_data(struct imap_client *c, struct imap_cmd *cmd, const uint8_t *p,
                              size_t n)
{
	(void)cmd;
	return copy_msg_data(c->ud, p, n);
}

static int fetch_lit_end(struct imap_client *c, struct imap_cmd *cmd)
{
	(void)cmd;
	return copy_msg_end(c->ud);
}

static int fetch_untagged(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	const struct imap_node *a = r->first;

	(void)cmd;
	if (a && a->next && imap_node_is(a->next, "FETCH") && copy_slots_full(w)) {
		/* Response boundary: pause here, no batch slot is free. */
		w->src_paused = 1;
		return IMAP_PARSE_PAUSE;
	}
	return 0;
}

static const struct imap_consumer fetch_consumer = {
	.untagged = fetch_untagged,
	.lit_begin = fetch_lit_begin,
	.lit_data = fetch_lit_data,
	.lit_end = fetch_lit_end,
};

/* A counting sink's pass (SINK_COUNTS: --dry-run): each FETCH response
 * names a message's UID and size, no bytes; it goes through the copy path
 * as a message without a body. Paced as the copy pass is: after a
 * response that leaves no batch slot free, input stops until a verdict. */
static int size_untagged(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	const struct imap_node *a = r->first;
	struct fetch_meta fm;

	(void)cmd;
	if (!a || !a->next || !imap_node_is(a->next, "FETCH") || !a->next->next)
		return 0;
	fetch_meta(r, NULL, &fm);
	if (!fm.uid || !fm.has_size)
		return 0; /* not an answer to ours (a flag update) */
	if (fm.uid > w->fetch_max_uid)
		w->fetch_max_uid = fm.uid;
	if (copy_msg_begin(w, &(struct source_msg){.uid = fm.uid, .size = fm.size,
	                                           .modseq = fm.modseq, .flags = "",
	                                           .date = ""}) < 0)
		return -EIO;
	copy_msg_end(w);
	if (copy_slots_full(w)) {
		w->src_paused = 1; /* sink_batch_done kicks us */
		return IMAP_PARSE_PAUSE;
	}
	return 0;
}

static const struct imap_consumer size_consumer = {.untagged = size_untagged};

static void fetch_send(struct worker *w, struct imap_cmd *cmd, const char *set)
{
	if (sink_can(&w->sink, SINK_COUNTS)) {
		imap_cmd_begin_consumer(&w->src, cmd, fetch_done, NULL, &size_consumer);
		imap_putf(&w->src, "UID FETCH %s (UID RFC822.SIZE)", set);
		imap_cmd_end(&w->src);
		w->fetches_inflight++;
		return;
	}
	imap_cmd_begin_consumer(&w->src, cmd, fetch_done, NULL, &fetch_consumer);
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
		if (w->end_uid == UINT32_MAX && !w->uidnext && !w->single_mode && !w->list_mode) {
			/* "n:*" is read: the next run starts above the highest UID
			 * seen (and never below where this one started), not from 1
			 * again as an unknown UIDNEXT would record. */
			uint32_t top = w->fetch_max_uid < UINT32_MAX ? w->fetch_max_uid + 1 : UINT32_MAX;

			w->uidnext = top > w->start_uid ? top : w->start_uid;
		}
		fetch_next(w, cmd);
	}
	worker_check_done(w);
}

void fetch_start(struct worker *w)
{
	struct imap_client *c = &w->src;

	if (w->p3) {
		pop3src_fetch_start(w);
		return;
	}
	if (w->arc) {
		arcsrc_fetch_start(w);
		return;
	}
	/* Courier-IMAP 5 sends no [UIDNEXT] with SELECT/EXAMINE: STATUS said
	 * it (mail arriving in between is the next run's). Without either,
	 * fetch_next asks "n:*" once. */
	if (!w->uidnext && w->mb->have_status && w->mb->st_uidvalidity == w->uidvalidity)
		w->uidnext = w->mb->st_uidnext;
	w->end_uid = w->uidnext ? w->uidnext - 1 : UINT32_MAX;
	if (w->part && w->part_hi < w->end_uid)
		w->end_uid = w->part_hi; /* a part of a split mailbox (split.c) */
	w->fetch_max_uid = 0;
	w->next_range = w->start_uid;
	w->phase = W_FETCH;
	w->single_mode = 0;
	w->nretry = w->retry_pos = 0;
	w->mb_failed_min_uid = 0;
	/* A pass resumed after a reconnect reads the mailbox again from its
	 * record: what this run confirmed is skipped as recorded. Below
	 * resume_uid it was counted already (fetch_lit_begin). Not skipped over:
	 * a stream that lost messages before the drop must not lose them for
	 * good. */
	if (!w->resumed || w->resume_uidv != w->uidvalidity) {
		w->resume_uid = 0;
		w->ncounted = 0;
	}
	if (!w->filtered && c->exists && (w->job->o->filter_id || selective_rescan(w->job, w->mb->mbid))) {
		/* A mailbox last copied under another filter (or none after
		 * one) is searched from its first UID: what the old filter left
		 * out and the new one takes was never copied. */
		if (selective_rescan(w->job, w->mb->mbid))
			w->start_uid = 1;
		if (w->start_uid <= w->end_uid && !(w->list_mode && !w->ntodo)) {
			selective_start(w);
			return;
		}
	}
	if (!c->exists || w->start_uid > w->end_uid || (w->list_mode && !w->ntodo)) {
		worker_check_done(w);
		return;
	}
	/* --dedupe looks at the destination folder first; a dry run's
	 * counting sink (which creates nothing) skips a folder that is not
	 * there yet: a real run would find it empty */
	if (w->job->o->dedupe && !w->dd_done && !w->list_mode && w->end_uid != UINT32_MAX &&
	    (w->mb->dst_exists || !sink_can(&w->sink, SINK_COUNTS))) {
		dedupe_start(w);
		return;
	}
	/* Two UID FETCH ranges in flight keep the source streaming without a
	 * round-trip gap between them. */
	fetch_next(w, &w->fetch_cmd[0]);
	fetch_next(w, &w->fetch_cmd[1]);
	worker_check_done(w);
}

/* ---- selective copies ------------------------------------------------------ */

/*
 * With a filter, a pass does not read a UID range: it asks the source
 *   UID SEARCH [RETURN (ALL)] UID lo:hi FILTER
 * for the messages of the range that match, pipelined with a count of the
 * range (UID SEARCH RETURN (COUNT) UID lo:hi) for the summary's skipped
 * messages; no round trip is added. The matches not recorded as copied
 * become the pass's UID list (list mode, as after a remap). Without
 * ESEARCH a plain SEARCH lists every UID on one line, so the range goes in
 * chunks of SEL_CHUNK UIDs, each line well under the parser's 1 MiB.
 *
 * The rule for re-runs (README "Selective copies"): the state keeps, per
 * mailbox, the filter of its last complete pass. The recorded position
 * (last_uid) means "every message up to here that this filter selects was
 * copied". Same filter: only above the position is searched. Another
 * filter, or none after one: the whole mailbox is searched, and what the
 * state does not record as copied is read: nothing twice. No filter ever:
 * nothing changes, no search is sent.
 */
#define SEL_CHUNK 50000

int selective_rescan(struct job *j, uint32_t mbid)
{
	uint64_t rec = 0;
	struct mf_error e;

	if (state_mbox_filter_get(j->st, j->jobid, mbid, &rec, &e) < 0)
		return 1; /* unreadable: search it all (nothing copied twice) */
	return rec && rec != j->o->filter_id;
}

int selective_done(struct worker *w, struct mf_error *err)
{
	struct job *j = w->job;

	if (w->p3)
		return 0;
	return scope_filter_put(j, w->mb->mbid, j->o->filter_id, err);
}

static void sel_push(struct worker *w, uint32_t uid, int count)
{
	if (uid < w->f_lo || uid > w->f_hi || w->f_bad)
		return;
	if (count) {
		w->f_total++;
		return;
	}
	/* A mailbox of EXISTS messages has no more matches than that: a server
	 * naming more is not believed (and cannot make us allocate without
	 * end). */
	if (w->nfmatch >= (size_t)w->src.exists + 1 ||
	    grow((void **)&w->fmatch, &w->cfmatch, w->nfmatch + 1, sizeof(*w->fmatch)) < 0) {
		w->f_bad = 1;
		snprintf(w->f_why, sizeof(w->f_why), "%s",
		         w->nfmatch >= (size_t)w->src.exists + 1
		             ? "the search named more messages than the mailbox holds"
		             : "out of memory");
		return;
	}
	w->fmatch[w->nfmatch++] = uid;
}

/* An ESEARCH ALL set ("2:4,9"), clamped to the searched range before a
 * UID of it is taken: a hostile "1:4294967295" costs nothing. */
static void sel_set(struct worker *w, const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && !w->f_bad) {
		uint64_t a = 0, b;
		size_t st = i;

		while (i < n && s[i] >= '0' && s[i] <= '9' && i - st < 11)
			a = a * 10 + (uint64_t)(s[i++] - '0');
		b = a;
		if (i < n && s[i] == ':') {
			size_t st2 = ++i;

			b = 0;
			while (i < n && s[i] >= '0' && s[i] <= '9' && i - st2 < 11)
				b = b * 10 + (uint64_t)(s[i++] - '0');
			if (i == st2)
				goto bad;
		}
		if (i == st || a > UINT32_MAX || b > UINT32_MAX || (i < n && s[i++] != ','))
			goto bad;
		if (b < a) {
			uint64_t t = a;

			a = b;
			b = t;
		}
		if (a < w->f_lo)
			a = w->f_lo;
		if (b > w->f_hi)
			b = w->f_hi;
		for (uint64_t u = a; u <= b && !w->f_bad; u++)
			sel_push(w, (uint32_t)u, 0);
	}
	return;
bad:
	w->f_bad = 1;
	snprintf(w->f_why, sizeof(w->f_why), "ESEARCH answer did not parse");
}

static int selective_untagged(struct imap_client *c, struct imap_cmd *cmd,
                              const struct imap_resp *r)
{
	struct worker *w = c->ud;
	const struct imap_node *a = r->first, *it;
	uint32_t n;

	(void)cmd;
	if (!a)
		return 0;
	if (imap_node_is(a, "SEARCH")) {
		/* Without ESEARCH the count goes first and the matches are asked
		 * once it is answered (sel_done): plain SEARCH answers carry no
		 * tag, and Dovecot runs pipelined searches in parallel. */
		int count = !w->f_count_done && w->job->o->filter_id;

		for (it = a->next; it; it = it->next)
			if (imap_node_u32(it, &n) == 0)
				sel_push(w, n, count);
		return 0;
	}
	if (!imap_node_is(a, "ESEARCH"))
		return 0;
	for (it = a->next; it; it = it->next) {
		if (imap_node_is(it, "COUNT") && it->next) {
			uint64_t k = 0;

			if (imap_node_u64(it->next, &k) == 0 && k <= (uint64_t)w->src.exists + 1)
				w->f_total += k;
			it = it->next;
		} else if (imap_node_is(it, "ALL") && it->next) {
			if (it->next->type == IMAP_NODE_ATOM)
				sel_set(w, it->next->s, it->next->len);
			it = it->next;
		}
	}
	return 0;
}

/* The count and the matches of a chunk share it: their untagged answers
 * carry no tag. ESEARCH's say which they are (COUNT, ALL); plain SEARCH
 * asks the matches only once the count is answered (f_count_done). */
static const struct imap_consumer selective_consumer = {.untagged = selective_untagged};

static void sel_send(struct worker *w);
static void sel_send_match(struct worker *w);

/* Every chunk is answered: the pass's list is what matched and was not
 * copied before (or, after a remap, the remap's list that matched). */
static void selective_finish(struct worker *w)
{
	struct job *j = w->job;
	struct mbox *mb = w->mb;
	size_t k = 0, done = 0;
	uint64_t filtered = 0;

	if (w->f_bad) {
		mailbox_fail(w, imap_client_who(&w->src), 0, "selective copy: %s", w->f_why);
		return;
	}
	if (w->nfmatch)
		qsort(w->fmatch, w->nfmatch, sizeof(*w->fmatch), imap_uid_cmp);
	for (size_t i = 0; i < w->nfmatch; i++)
		if (!k || w->fmatch[k - 1] != w->fmatch[i])
			w->fmatch[k++] = w->fmatch[i];
	w->nfmatch = k;
	if (j->o->filter_id && w->f_total > w->nfmatch)
		filtered = w->f_total - w->nfmatch;
	if (w->list_mode) {
		/* after a remap: its list, less what the filter leaves out */
		size_t m = 0, x = 0;

		if (w->ntodo)
			qsort(w->todo, w->ntodo, sizeof(*w->todo), imap_uid_cmp);
		for (size_t i = 0; i < w->ntodo; i++) {
			while (x < w->nfmatch && w->fmatch[x] < w->todo[i])
				x++;
			if (x < w->nfmatch && w->fmatch[x] == w->todo[i])
				w->todo[m++] = w->todo[i];
		}
		w->ntodo = m;
	} else {
		w->ntodo = 0;
		for (size_t i = 0; i < w->nfmatch; i++) {
			struct state_msg_key key = {j->jobid, mb->mbid, w->uidvalidity, w->fmatch[i]};
			struct state_msg sm;
			struct mf_error e;
			int rc = state_msg_get(j->st, &key, &sm, &e);

			if (rc < 0 && rc != -ENOENT) {
				mailbox_fail(w, NULL, w->fmatch[i], "%s", e.msg);
				return;
			}
			if (rc == 0 && state_msg_stored(&sm)) {
				done++;
				continue;
			}
			if (grow((void **)&w->todo, &w->ctodo, w->ntodo + 1, sizeof(*w->todo)) < 0) {
				mailbox_fail(w, NULL, 0, "out of memory");
				return;
			}
			w->todo[w->ntodo++] = w->fmatch[i];
		}
	}
	mb->skipped += filtered + done;
	j->sum->skipped += filtered + done;
	j->sum->filtered += filtered;
	if (j->o->filter_id)
		mf_log(MF_LOG_DEBUG, "%s mailbox \"%s\": UIDs %u:%u: %zu match the filter, %llu "
		                     "left out, %zu copied before, %zu to copy",
		       imap_client_who(&w->src), mb->display, w->f_lo, w->f_hi, w->nfmatch,
		       (unsigned long long)filtered, done, w->ntodo);
	w->filtered = 1;
	w->list_mode = 1;
	w->todo_pos = 0;
	fetch_start(w);
}

static void sel_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	if (r->status != IMAP_ST_OK && !w->f_bad) {
		w->f_bad = 1;
		snprintf(w->f_why, sizeof(w->f_why), "UID SEARCH refused: %.*s",
		         (int)(r->text_len > 150 ? 150 : r->text_len), r->text);
	}
	if (cmd == &w->fetch_cmd[0]) {
		w->f_count_done = 1;
		if (!(c->caps & IMAP_CAP_ESEARCH) && !w->f_bad && !c->closed) {
			w->f_pending--;
			sel_send_match(w);
			return;
		}
	}
	if (--w->f_pending)
		return;
	if (w->f_next && !w->f_bad && !c->closed) {
		sel_send(w);
		return;
	}
	selective_finish(w);
}

static void sel_send(struct worker *w)
{
	struct imap_client *c = &w->src;
	struct job *j = w->job;
	int es = (c->caps & IMAP_CAP_ESEARCH) != 0;
	uint32_t a = w->f_next, b;
	char *set = w->f_set;

	b = (es || w->f_hi == UINT32_MAX || w->f_hi - a < SEL_CHUNK) ? w->f_hi : a + SEL_CHUNK - 1;
	w->f_next = b >= w->f_hi ? 0 : b + 1;
	if (b == UINT32_MAX)
		snprintf(set, sizeof(w->f_set), "%u:*", a);
	else
		snprintf(set, sizeof(w->f_set), "%u:%u", a, b);
	w->f_count_done = !j->o->filter_id;
	if (j->o->filter_id) {
		imap_cmd_begin_consumer(c, &w->fetch_cmd[0], sel_done, NULL, &selective_consumer);
		imap_putf(c, "UID SEARCH %sUID %s", es ? "RETURN (COUNT) " : "", set);
		imap_cmd_end(c);
		w->f_pending++;
	}
	if (es || !j->o->filter_id)
		sel_send_match(w);
}

static void sel_send_match(struct worker *w)
{
	struct imap_client *c = &w->src;
	struct job *j = w->job;
	int es = (c->caps & IMAP_CAP_ESEARCH) != 0;

	/* j->o->filter is filter_build's canonical form: ASCII keys, quoted
	 * strings, numbers and dates we wrote ourselves; nothing as typed. */
	imap_cmd_begin_consumer(c, &w->fetch_cmd[1], sel_done, NULL, &selective_consumer);
	imap_putf(c, "UID SEARCH %sUID %s%s%s", es ? "RETURN (ALL) " : "", w->f_set,
	          j->o->filter_id ? " " : "", j->o->filter_id ? j->o->filter : "");
	imap_cmd_end(c);
	w->f_pending++;
}

static void selective_start(struct worker *w)
{
	w->phase = W_FILTER;
	w->nfmatch = 0;
	w->f_total = 0;
	w->f_bad = 0;
	w->f_pending = 0;
	w->f_lo = w->start_uid;
	w->f_hi = w->end_uid;
	w->f_next = w->f_lo;
	sel_send(w);
}

static const char *imap_src_who(struct source *s)
{
	return imap_client_who(&s->w->src);
}

static void imap_src_pause(struct source *s)
{
	imap_client_pause(&s->w->src);
}

static void imap_src_kick(struct source *s)
{
	imap_client_kick(&s->w->src);
}

static unsigned imap_src_reads_inflight(struct source *s)
{
	return s->w->fetches_inflight;
}

static void imap_src_read_retries(struct source *s)
{
	fetch_next(s->w, &s->w->fetch_cmd[0]);
	fetch_next(s->w, &s->w->fetch_cmd[1]);
}

const struct source_ops source_imap_ops = {
	.kind = "imap",
	.caps = SOURCE_FOLDERS | SOURCE_FLAGS | SOURCE_CHANGES,
	.who = imap_src_who,
	.pause = imap_src_pause,
	.kick = imap_src_kick,
	.reads_inflight = imap_src_reads_inflight,
	.read_retries = imap_src_read_retries,
};
