/*
 * source_imap — the IMAP source's copy pass (source.h): UID FETCH ranges
 * (two in flight), UID lists and the retry list, each FETCH response's
 * items checked and rewritten before its BODY[] literal is streamed into
 * the copy consumer; literal sizes bounded before a byte is read; the
 * dry run's count (UID SEARCH, no bodies).
 *
 * Not for: EXAMINE and change detection (worker.c, changes.c), hashing
 * passes (remap.c, rename.c, dedupe.c), writing (copy.c, sink_imap.c).
 */
#include "engine/sync/job_int.h"

static void fetch_send(struct worker *w, struct imap_cmd *cmd, const char *set);
static void fetch_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);

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

/* A FETCH literal begins: BODY[] of a message in the copy pass goes to the
 * copy consumer once its UID, FLAGS and INTERNALDATE are checked and
 * rewritten; the other passes (remap, rename probe, dedupe) hash it. */
int src_lit_begin(struct imap_client *c, const struct imap_resp *r,
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

ssize_t src_lit_data(struct imap_client *c, const uint8_t *p, size_t n)
{
	struct worker *w = c->ud;

	if (w->phase == W_REMAP || w->phase == W_PROBE || w->phase == W_DEDUPE_SRC) {
		msghash_update(&w->mh, p, n);
		return (ssize_t)n;
	}
	return copy_msg_data(w, p, n);
}

int src_lit_end(struct imap_client *c)
{
	struct worker *w = c->ud;

	if (w->phase == W_REMAP)
		return remap_lit_end(w);
	if (w->phase == W_PROBE)
		return probe_lit_end(w);
	if (w->phase == W_DEDUPE_SRC)
		return dd_src_lit_end(w);
	return copy_msg_end(w);
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
		/* Response boundary: pause here if no batch slot is free. */
		if (copy_slots_full(w)) {
			w->src_paused = 1;
			return IMAP_PARSE_PAUSE;
		}
	}
	return 0;
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

/* --dry-run: how many messages would be copied (UID SEARCH, no bodies). */
static void dry_count_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;

	(void)cmd;
	progress_clear(j);
	if (r->status != IMAP_ST_OK)
		job_error(j, imap_client_who(c), w->mb, 0, "UID SEARCH failed: %.*s",
			  (int)r->text_len, r->text);
	else if (j->o->dst_mail)
		mf_print("mailferry: dry-run: mailbox \"%s\": %llu new messages would be "
		         "delivered to <%s>",
		         w->mb->display, (unsigned long long)w->dry_count, j->o->rcpt);
	else
		mf_print("mailferry: dry-run: mailbox \"%s\": %llu new messages would be "
		         "copied into \"%s\"",
		         w->mb->display, (unsigned long long)w->dry_count, w->mb->dst_name);
	mailbox_finish(w);
}

static void dry_count_start(struct worker *w)
{
	w->phase = W_COUNT;
	w->dry_count = 0;
	imap_cmd_begin(&w->src, &w->fetch_cmd[0], dry_count_done, NULL);
	if (w->src.caps & IMAP_CAP_ESEARCH)
		imap_putf(&w->src, "UID SEARCH RETURN (COUNT) UID %u:%u", w->start_uid, w->end_uid);
	else
		imap_putf(&w->src, "UID SEARCH UID %u:%u", w->start_uid, w->end_uid);
	imap_cmd_end(&w->src);
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
	w->fetch_max_uid = 0;
	w->next_range = w->start_uid;
	w->phase = W_FETCH;
	w->single_mode = 0;
	w->nretry = w->retry_pos = 0;
	w->mb_failed_min_uid = 0;
	/* A pass resumed after a reconnect reads the mailbox again from its
	 * record: what this run confirmed is skipped as recorded. Below
	 * resume_uid it was counted already (src_lit_begin). Not skipped over:
	 * a stream that lost messages before the drop must not lose them for
	 * good. */
	if (!w->resumed || w->resume_uidv != w->uidvalidity) {
		w->resume_uid = 0;
		w->ncounted = 0;
	}
	if (!c->exists || w->start_uid > w->end_uid || (w->list_mode && !w->ntodo)) {
		worker_check_done(w);
		return;
	}
	if (w->job->o->dry_run) {
		dry_count_start(w);
		return;
	}
	if (w->job->o->dedupe && !w->dd_done && !w->list_mode && w->end_uid != UINT32_MAX) {
		dedupe_start(w);
		return;
	}
	/* Two UID FETCH ranges in flight keep the source streaming without a
	 * round-trip gap between them. */
	fetch_next(w, &w->fetch_cmd[0]);
	fetch_next(w, &w->fetch_cmd[1]);
	worker_check_done(w);
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
