/*
 * settle — APPENDs an interrupted run may or may not have stored (intents
 * without a confirmation) are looked for on the destination by content
 * before anything is copied again: exactly once across crashes.
 *
 * By content means by the folded digest (msghash.h: runs of CR before LF
 * folded, as Dovecot stores a message). Courier-IMAP rewrites line ends
 * further (lone CRs dropped, a final line end added), so an intent left
 * unmatched while destination messages above the floor are unmatched too
 * gets a second look: those intents are read again from the source and
 * compared with the unmatched destination messages by their
 * line-end-blind digest (msghash_lf), one destination message per intent.
 *
 * Not for: the normal copy (copy).
 */
#include "engine/sync/job_int.h"

static int settle_collect(void *ctx, uint32_t uid, const struct state_msg *m);
static void settle_finish(struct worker *w);
static void settle_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static void settle_second_look(struct worker *w);
static void settle_fetch(struct worker *w);
static void settle_src_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static void settle_closed(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static void settle_wait_done(struct loop *l, struct loop_timer *t);
static void resumed_found(struct worker *w, uint32_t uid, uint64_t size, int prefix);
static void settle_archive(struct worker *w);
static int settle_lit_end(struct imap_client *c, struct imap_cmd *cmd);

/* The destination folder's EXAMINE: its UIDVALIDITY, which the settled
 * records carry as a copy's do (dedupe.c tells records of another
 * UIDVALIDITY apart). */
static int settle_examine_untagged(struct imap_client *c, struct imap_cmd *cmd,
                                   const struct imap_resp *r)
{
	struct worker *w = c->ud;
	const struct imap_node *v = imap_resp_code(r, "UIDVALIDITY");

	(void)cmd;
	if (v)
		imap_node_u32(v, &w->stl_dst_uidv);
	return 0;
}

static const struct imap_consumer settle_examine_consumer = {.untagged = settle_examine_untagged};

/* The destination's messages from the floor up: hashed and matched
 * against the intents. */
static int settle_lit_begin(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r,
                            const struct imap_node *key, uint64_t size);
static ssize_t settle_lit_data(struct imap_client *c, struct imap_cmd *cmd, const uint8_t *p,
                               size_t n);
static const struct imap_consumer settle_consumer = {
	.lit_begin = settle_lit_begin,
	.lit_data = settle_lit_data,
	.lit_end = settle_lit_end,
};

/* The second look: unmatched intents read again from the source (their
 * UID and digests taken as for the destination's messages). */
static int settle_src_lit_end(struct imap_client *c, struct imap_cmd *cmd);
static const struct imap_consumer settle_src_consumer = {
	.lit_begin = settle_lit_begin,
	.lit_data = settle_lit_data,
	.lit_end = settle_src_lit_end,
};

/* ---- worker: settling unconfirmed APPENDs after a crash -------------------------- */

/* The floor: the first destination UID not recorded as a confirmed copy
 * (or one with its keywords still to store, kwdefer.h). Only records under
 * the destination folder's present UIDVALIDITY count: a UID recorded
 * under another names no message of this folder (it was recreated), and
 * taking it for one would set the floor above this folder's unconfirmed
 * APPENDs, which would then be copied twice. */
static int settle_floor_collect(void *ctx, uint32_t uid, const struct state_msg *m)
{
	struct worker *w = ctx;

	if (!state_msg_stored(m) || !m->dst_uid ||
	    (w->stl_dst_uidv && m->dst_uidvalidity && m->dst_uidvalidity != w->stl_dst_uidv))
		return 0;
	if (w->stl_parts) {
		/* Parts appended side by side: one's unconfirmed APPENDs may
		 * sit below another's confirmed ones. Only what the passes
		 * before the split copied (at or below the record's last UID)
		 * is surely older than all of them. */
		if (uid <= w->rec.last_uid && m->dst_uid >= w->stl_floor)
			w->stl_floor = m->dst_uid + 1;
		if (grow((void **)&w->stl_done, &w->cstl_done, w->nstl_done + 1,
		         sizeof(*w->stl_done)) < 0)
			return -ENOMEM;
		w->stl_done[w->nstl_done++] = m->dst_uid;
	} else if (m->dst_uid >= w->stl_floor) {
		w->stl_floor = m->dst_uid + 1;
	}
	return 0;
}

/* The intents: APPENDs an interrupted run may have stored, and confirmed
 * ones whose keywords wait (kwdefer.h). */
static int settle_collect(void *ctx, uint32_t uid, const struct state_msg *m)
{
	struct worker *w = ctx;

	if (m->status != STATE_MSG_INTENT)
		return 0;
	if (w->nstl == w->cstl) {
		size_t nc = w->cstl ? w->cstl * 2 : 64;
		struct settle *ns = realloc(w->stl, nc * sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		w->stl = ns;
		w->cstl = nc;
	}
	w->stl[w->nstl++] = (struct settle){.uid = uid, .dst_uid = m->dst_uid,
	                                    .kw = m->dst_uid != 0,
	                                    .dst_uidv = m->dst_uidvalidity};
	memcpy(w->stl[w->nstl - 1].nhash, m->nhash, 32);
	return 0;
}

/* A resumed pass settled an APPEND this run sent before the drop: it was
 * copied now. Found ones at the front (no unfound one below them) are not
 * counted again when the pass reads them. */
static void resumed_found(struct worker *w, uint32_t uid, uint64_t size, int prefix)
{
	struct job *j = w->job;

	w->mb->copied++;
	w->mb->bytes += size;
	j->sum->copied++;
	j->sum->bytes += size;
	if (prefix && w->resume_range && w->resume_uidv == w->uidvalidity && uid >= w->resume_uid)
		w->resume_uid = uid + 1;
	else if (grow((void **)&w->counted, &w->ccounted, w->ncounted + 1, sizeof(*w->counted)) == 0)
		w->counted[w->ncounted++] = uid; /* the pass reads it: not "skipped" too */
}

static void settle_finish(struct worker *w)
{
	struct job *j = w->job;
	size_t found = 0, nkw = 0, nchk = 0;
	struct mf_error e;
	int uncertain = !sink_can(&w->sink, SINK_FIND);

	for (size_t i = 0; i < w->nstl; i++) {
		struct settle *st = &w->stl[i];
		struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, st->uid};
		struct state_msg m;
		int rc;

		if (st->kw) {
			/* Its destination UID is known: there, unless the folder's
			 * UIDVALIDITY has changed since (then it is not found and
			 * copied again). A server that tells none is taken at its
			 * word. */
			st->found = !w->stl_dst_uidv || st->dst_uidv == w->stl_dst_uidv;
		}
		if (!st->found) {
			rc = scope_msg_del(j, &k, &e);
		} else if ((rc = state_msg_get(j->st, &k, &m, &e)) == 0) {
			int kw = kwdefer_note(w, st->uid, st->dst_uid, m.flags, strlen(m.flags));

			/* keywords to store (again): an intent until they are */
			m.status = kw ? STATE_MSG_INTENT : STATE_MSG_DONE;
			m.dst_uid = st->dst_uid;
			m.dst_uidvalidity = w->stl_dst_uidv ? w->stl_dst_uidv : st->dst_uidv;
			rc = scope_msg_put(j, &k, &m, &e);
			found++;
			nkw += kw;
			if (w->resumed && !st->kw && (!uncertain || st->chk))
				resumed_found(w, st->uid, m.size, i == found - 1);
		}
		if (rc < 0) {
			job_error(j, NULL, w->mb, st->uid, "%s", e.msg);
			j->fatal = 1;
		}
	}
	for (size_t i = 0; i < w->nstl; i++)
		nchk += w->stl[i].chk;
	if (uncertain && w->stl_checked) {
		/* looked for where they are delivered (--settle-imap): only
		 * those not found there are uncertain */
		j->sum->uncertain += w->nstl - nchk;
		progress_clear(j);
		mf_log(nchk == w->nstl ? MF_LOG_INFO : MF_LOG_WARN,
		       "%s mailbox \"%s\": %zu deliveries an interrupted run left unconfirmed: "
		       "%zu found in %s, %zu %s",
		       w->sink.ops->who(&w->sink), w->mb->display, w->nstl, nchk,
		       j->o->settle_shown, w->nstl - nchk,
		       j->o->uncertain_skip ? "not found, recorded as delivered (--uncertain skip)"
		                            : "sent again (--uncertain resend)");
	} else if (uncertain) {
		j->sum->uncertain += w->nstl;
		progress_clear(j);
		mf_log(MF_LOG_WARN,
		       "%s mailbox \"%s\": %zu deliveries an interrupted run left unconfirmed "
		       "(SMTP cannot be asked): %s",
		       w->sink.ops->who(&w->sink), w->mb->display, w->nstl,
		       j->o->uncertain_skip ? "recorded as delivered, not sent again (--uncertain skip)"
		                            : "sent again, the same bytes and Message-ID "
		                              "(--uncertain resend)");
	} else {
		mf_log(MF_LOG_INFO,
		       "mailbox \"%s\": %zu interrupted APPENDs settled: %zu already on the "
		       "destination, %zu to copy again (destination UIDs from %u, %u looked at)",
		       w->mb->display, w->nstl, found, w->nstl - found, w->stl_floor, w->stl_seen);
	}
	if (nkw)
		mf_log(MF_LOG_INFO, "mailbox \"%s\": keywords of %zu settled messages are stored "
		                    "again after the pass",
		       w->mb->display, nkw);
	w->nstl = 0;
	mbox_mark_intents(w, nkw ? 1 : 0);
	j->state_dirty = 1;
	if (job_commit(j) < 0) {
		/* Not durable: the state is back to the intents, so the pass
		 * would copy again what was just found on the destination. The
		 * job stops; the next run settles again. */
		j->fatal = 1;
		mailbox_fail(w, NULL, 0, "interrupted APPENDs settled, but the state could not "
		                         "record it; stopping so that nothing is copied twice");
		loop_defer(j->loop, &j->stop_task);
		return;
	}
	changes_start(w);
}

void settle_policy(struct worker *w)
{
	for (size_t i = 0; i < w->nstl; i++)
		if (!w->stl[i].chk)
			w->stl[i].found = w->job->o->uncertain_skip;
	settle_finish(w);
}

static void settle_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	if (r->status != IMAP_ST_OK) {
		job_error(w->job, imap_client_who(c), w->mb, 0,
			  "cannot check the destination for interrupted APPENDs: %.*s",
			  (int)r->text_len, r->text);
		w->mb->failed = 1;
		if (cmd != &w->settle_cmd[2])
			mailbox_finish(w); /* nothing follows a refused EXAMINE */
		return;
	}
	if (cmd == &w->settle_cmd[0])
		settle_fetch(w);
	else if (cmd == &w->settle_cmd[1] && !w->mb->failed)
		settle_second_look(w);
	else if (cmd == &w->settle_cmd[1])
		mailbox_finish(w);
}

/* Intents no destination message matched while unmatched destination
 * messages remain above the floor: read those intents from the source
 * (an IMAP source, its mailbox selected) and compare line-end-blind. */
static void settle_second_look(struct worker *w)
{
	struct job *j = w->job;
	size_t open = 0, k = 0;

	for (size_t i = 0; i < w->nstl; i++)
		open += !w->stl[i].found && !w->stl[i].kw;
	if (!open || !w->nstl_cand || !w->stl_lf.on || j->o->src_pop3 || j->o->src_archive ||
	    !w->src_open || w->src.closed) {
		settle_finish(w);
		return;
	}
	mf_log(MF_LOG_DEBUG, "mailbox \"%s\": %zu interrupted APPENDs not found by content; "
	                     "compared line-end-blind with %zu destination messages",
	       w->mb->display, open, w->nstl_cand);
	imap_cmd_begin_consumer(&w->src, &w->settle_src_cmd, settle_src_done, NULL,
	                        &settle_src_consumer);
	imap_put(&w->src, "UID FETCH ");
	for (size_t i = 0; i < w->nstl; i++)
		if (!w->stl[i].found && !w->stl[i].kw)
			imap_putf(&w->src, "%s%u", k++ ? "," : "", w->stl[i].uid);
	imap_put(&w->src, " (UID BODY.PEEK[])");
	imap_cmd_end(&w->src);
}

static void settle_src_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		/* not found: copied again, as before the second look */
		mf_log(MF_LOG_INFO, "%s mailbox \"%s\": interrupted APPENDs not read again: %.*s",
		       imap_client_who(c), w->mb->display, (int)r->text_len, r->text);
	}
	settle_finish(w);
}

static int settle_src_lit_end(struct imap_client *c, struct imap_cmd *cmd)
{
	struct worker *w = c->ud;
	uint8_t lf[32];

	(void)cmd;
	msghash_end(&w->mh, NULL, NULL);
	msghash_lf_end(&w->stl_lf, lf);
	for (size_t i = 0; i < w->nstl; i++) {
		if (w->stl[i].uid != w->stl_uid || w->stl[i].found || w->stl[i].kw)
			continue;
		for (size_t k = 0; k < w->nstl_cand; k++)
			if (!w->stl_cand[k].claimed && !memcmp(w->stl_cand[k].lf, lf, 32)) {
				w->stl_cand[k].claimed = 1;
				w->stl[i].found = 1;
				w->stl[i].dst_uid = w->stl_cand[k].uid;
				break;
			}
		break;
	}
	return 0;
}

static void settle_closed(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	(void)c, (void)cmd, (void)r;
}

static void settle_wait_done(struct loop *l, struct loop_timer *t)
{
	struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, settle_timer));

	(void)l;
	if (!w->dead && w->mb && w->phase == W_SETTLE)
		settle_start(w);
}

/* An archive is looked in directly: an intent whose content the archive
 * holds was stored (its archive transaction committed), and is recorded
 * in this run; the others are copied again. */
static void settle_archive(struct worker *w)
{
	struct job *j = w->job;
	struct mf_error e;

	if (sink_archive_mbox(j, w->mb, w->uidvalidity, &e) < 0) {
		mailbox_fail(w, "archive", 0, "%s", e.msg);
		return;
	}
	for (size_t i = 0; i < w->nstl; i++) {
		struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, w->stl[i].uid};
		struct state_msg m;
		int rc = state_msg_get(j->st, &k, &m, &e);

		if (rc == 0)
			rc = sink_archive_record(j, w->mb, w->stl[i].uid, &m, &e);
		if (rc < 0) {
			mailbox_fail(w, "archive", w->stl[i].uid, "%s", e.msg);
			return;
		}
		w->stl[i].found = rc == 1;
		w->stl[i].dst_uid = w->stl[i].uid;
	}
	settle_finish(w);
}

/* After a crash the destination may still be storing the APPENDs whose
 * bytes had left our socket: it finishes a command whose final CRLF it
 * received even though we are gone. Looking before that is done would
 * miss them and copy them twice, so intents younger than this are waited
 * for. */
#define SETTLE_GRACE_MS 3000

void settle_start(struct worker *w)
{
	struct job *j = w->job;
	struct mf_error e;
	uint64_t now = wall_ms();
	uint64_t until = w->rec.intent_at_ms ? w->rec.intent_at_ms + SETTLE_GRACE_MS : 0;
	int rc;

	/* A destination we timed out on in this run may get our bytes later
	 * than one whose connection closed (worker_reconnect). */
	if (w->rec.intent_at_ms && w->settle_not_before > until)
		until = w->settle_not_before;
	if (until && now < until && w->phase != W_SETTLE &&
	    (sink_can(&w->sink, SINK_FIND) || settle_imap_wanted(w)) && !j->o->archive) {
		w->phase = W_SETTLE;
		mf_log(MF_LOG_INFO, "mailbox \"%s\": waiting %.1f s for the destination to finish "
				    "the interrupted %s",
		       w->mb->display, (double)(until - now) / 1000.0,
		       sink_can(&w->sink, SINK_FIND) ? "APPENDs" : "deliveries");
		loop_timer_start(j->loop, &w->settle_timer, until - now, settle_wait_done);
		return;
	}
	w->settle_not_before = 0;
	w->stl_dst_uidv = 0;
	w->nstl = 0;
	w->nstl_cand = 0;
	if (msghash_lf_begin(&w->stl_lf) < 0)
		msghash_lf_free(&w->stl_lf); /* no second look (settle_second_look) */
	w->stl_floor = 1;
	w->stl_seen = 0;
	w->stl_parts = w->rec.intents == STATE_INTENTS_PARTS;
	w->nstl_done = 0;
	w->stl_checked = 0;
	rc = state_msg_each(j->st, j->jobid, w->mb->mbid, w->uidvalidity, 1, settle_collect, w, &e);
	if (rc < 0) {
		mailbox_fail(w, NULL, 0, "%s", rc == -ENOMEM ? "out of memory" : e.msg);
		return;
	}
	if (!w->nstl) {
		mbox_mark_intents(w, 0);
		changes_start(w);
		return;
	}
	if (!sink_can(&w->sink, SINK_FIND)) {
		/* Where the deliveries reach, if we were told (--settle-imap);
		 * else nothing to look in: the policy decides (--uncertain). */
		if (settle_imap_wanted(w))
			settle_imap_start(w);
		else
			settle_policy(w);
		return;
	}
	if (j->o->archive) {
		settle_archive(w);
		return;
	}
	w->phase = W_SETTLE;
	imap_cmd_begin_consumer(&w->dst, &w->settle_cmd[0], settle_done, NULL,
	                        &settle_examine_consumer);
	imap_put(&w->dst, "EXAMINE ");
	imap_put_astring(&w->dst, w->mb->dst_name, strlen(w->mb->dst_name));
	imap_cmd_end(&w->dst);
}

/* The EXAMINE told the destination folder's UIDVALIDITY: the floor from
 * the records under it, then its messages from there on, by content. */
static void settle_fetch(struct worker *w)
{
	struct job *j = w->job;
	struct mf_error e;
	int rc = state_msg_each(j->st, j->jobid, w->mb->mbid, w->uidvalidity, 1,
	                        settle_floor_collect, w, &e);

	if (rc < 0) {
		mailbox_fail(w, NULL, 0, "%s", rc == -ENOMEM ? "out of memory" : e.msg);
		return;
	}
	if (w->nstl_done)
		qsort(w->stl_done, w->nstl_done, sizeof(*w->stl_done), imap_uid_cmp);
	imap_cmd_begin_consumer(&w->dst, &w->settle_cmd[1], settle_done, NULL, &settle_consumer);
	imap_putf(&w->dst, "UID FETCH %u:* (UID BODY.PEEK[])", w->stl_floor);
	imap_cmd_end(&w->dst);
	/* Leave the mailbox EXAMINE selected read-only: Courier refuses an
	 * APPEND into it ("Current box is selected READ-ONLY"), and the
	 * copy appends there next. CLOSE removes nothing after EXAMINE
	 * (RFC 3501 §6.4.2); its answer changes nothing either way. */
	imap_cmd_begin(&w->dst, &w->settle_cmd[2], settle_closed, NULL);
	imap_put(&w->dst, "CLOSE");
	imap_cmd_end(&w->dst);
}

/* A destination message fetched by content (settle, --dedupe): its UID
 * noted (stl_uid), its body hashed. */
int dst_hash_lit_begin(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r,
                       const struct imap_node *key, uint64_t size)
{
	struct worker *w = c->ud;
	const struct imap_node *it;
	int rc;

	(void)cmd;
	if ((rc = body_literal(w, c, r, key, size)) <= 0)
		return rc < 0 ? rc : IMAP_LIT_INLINE;
	w->stl_uid = 0;
	for (it = r->first->next->next ? r->first->next->next->child : NULL; it && it != key;
	     it = it->next)
		if (imap_node_is(it, "UID") && it->next)
			imap_node_u32(it->next, &w->stl_uid);
	msghash_begin(&w->mh);
	return IMAP_LIT_STREAM;
}

static int settle_lit_begin(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r,
                            const struct imap_node *key, uint64_t size)
{
	struct worker *w = c->ud;
	int rc = dst_hash_lit_begin(c, cmd, r, key, size);

	if (rc == IMAP_LIT_STREAM && w->stl_lf.on)
		msghash_lf_begin(&w->stl_lf);
	return rc;
}

static ssize_t settle_lit_data(struct imap_client *c, struct imap_cmd *cmd, const uint8_t *p,
                               size_t n)
{
	struct worker *w = c->ud;

	if (w->stl_lf.on)
		msghash_lf_update(&w->stl_lf, p, n);
	return hash_lit_data(c, cmd, p, n);
}

static int settle_lit_end(struct imap_client *c, struct imap_cmd *cmd)
{
	struct worker *w = c->ud;
	uint8_t nh[32], lf[32];
	struct settle_cand *sc;

	(void)cmd;
	msghash_end(&w->mh, NULL, nh);
	if (w->stl_lf.on)
		msghash_lf_end(&w->stl_lf, lf);
	w->stl_seen++;
	if (w->stl_uid < w->stl_floor)
		return 0; /* "n:*" answers with the last message even below n */
	if (w->stl_parts && w->nstl_done &&
	    bsearch(&w->stl_uid, w->stl_done, w->nstl_done, sizeof(*w->stl_done), imap_uid_cmp))
		return 0; /* another message's confirmed copy, perhaps of the same bytes */
	for (size_t i = 0; i < w->nstl; i++)
		if (!w->stl[i].found && !w->stl[i].kw && !memcmp(w->stl[i].nhash, nh, 32)) {
			w->stl[i].found = 1;
			w->stl[i].dst_uid = w->stl_uid;
			return 0;
		}
	if (!w->stl_lf.on ||
	    grow((void **)&w->stl_cand, &w->cstl_cand, w->nstl_cand + 1, sizeof(*w->stl_cand)) < 0)
		return 0; /* out of memory: no second look for it (copied again) */
	sc = &w->stl_cand[w->nstl_cand++];
	sc->uid = w->stl_uid;
	sc->claimed = 0;
	memcpy(sc->lf, lf, 32);
	return 0;
}

/* A source mailbox opened without an EXAMINE (POP3, an archive): when its
 * record under uidv says APPENDs may be unconfirmed, settle them first (1:
 * settle_start took over and goes on to changes_start, fetch_start), or
 * in a dry run say that it would (0). */
int settle_if_interrupted(struct worker *w, uint32_t uidv)
{
	if (!w->rec.intents || w->rec.uidvalidity != uidv)
		return 0;
	if (w->job->o->dry_run) {
		progress_clear(w->job);
		mf_print("mailferry: dry-run: mailbox \"%s\": APPENDs of an interrupted run "
		         "would be looked for on the destination first",
		         w->mb->display);
		return 0;
	}
	settle_start(w);
	return 1;
}
