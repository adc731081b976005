/*
 * remap — a mailbox whose UIDVALIDITY changed (RFC 3501 §2.3.1.1): its
 * messages are found again by content, so only what is really new is
 * copied.
 *
 * Not for: renamed folders (rename), --dedupe (dedupe).
 */
#include "engine/sync/job_int.h"

static int remap_collect(void *ctx, uint32_t uid, const struct state_msg *m);
static int remap_drop_old(void *ctx, uint32_t uid, const struct state_msg *m);
static void remap_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);

int remap_cmp(const void *a, const void *b)
{
	return memcmp(((const struct remap *)a)->hash, ((const struct remap *)b)->hash, 32);
}

/* One (content, UID) pair into the worker's match table. */
int rm_push(struct worker *w, const uint8_t nhash[32], uint32_t uid, uint32_t uidv)
{
	if (grow((void **)&w->rm, &w->crm, w->nrm + 1, sizeof(*w->rm)) < 0)
		return -ENOMEM;
	memcpy(w->rm[w->nrm].hash, nhash, 32);
	w->rm[w->nrm].uid = uid;
	w->rm[w->nrm].uidv = uidv;
	w->rm[w->nrm++].claimed = 0;
	return 0;
}

static int remap_collect(void *ctx, uint32_t uid, const struct state_msg *m)
{
	return m->status == STATE_MSG_DONE ? rm_push(ctx, m->nhash, uid, 0) : 0;
}

/* A message of the remap's (or the rename probe's) FETCH: its UID and
 * FLAGS noted, its body hashed. */
int remap_lit_begin(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r,
                    const struct imap_node *key, uint64_t size)
{
	struct worker *w = c->ud;
	const struct imap_node *bad = NULL;
	struct fetch_meta fm;
	int rc;

	(void)cmd;
	if ((rc = body_literal(w, c, r, key, size)) <= 0)
		return rc < 0 ? rc : IMAP_LIT_INLINE;
	fetch_meta(r, key, &fm);
	w->rm_uid = fm.uid;
	/* FLAGS before BODY[], as asked (see fetch_lit_begin); else no diff */
	w->rm_have_flags = fm.flags != NULL;
	w->rm_flags_len =
	    fm.flags ? flags_string(fm.flags, w->rm_flags, sizeof(w->rm_flags), &bad) : 0;
	if (bad)
		w->rm_have_flags = 0; /* a flag no command line may carry: no diff */
	msghash_begin(&w->mh);
	return IMAP_LIT_STREAM;
}

/* One source message hashed: the same content under the old UIDVALIDITY
 * is the same message (already on the destination); anything else is
 * copied. */
static int remap_lit_end(struct imap_client *c, struct imap_cmd *cmd)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct remap key, *hit;
	struct mf_error e;
	uint8_t nh[32];
	int rc;

	(void)cmd;
	/* By the CR-folded digest: a server that rewrote bare CRs when the
	 * mailbox was rebuilt still has the same message. */
	msghash_end(&w->mh, nh, key.hash);
	if (!w->rm_uid)
		return 0;
	hit = w->nrm ? bsearch(&key, w->rm, w->nrm, sizeof(*w->rm), remap_cmp) : NULL;
	while (hit && hit > w->rm && !memcmp(hit[-1].hash, key.hash, 32))
		hit--; /* first of equal hashes */
	while (hit && hit < w->rm + w->nrm && !memcmp(hit->hash, key.hash, 32) && hit->claimed)
		hit++;
	if (hit && hit < w->rm + w->nrm && !memcmp(hit->hash, key.hash, 32)) {
		struct state_msg_key ok = {j->jobid, w->mb->mbid, w->old_uidv, hit->uid};
		struct state_msg_key nk = {j->jobid, w->mb->mbid, w->uidvalidity, w->rm_uid};
		struct state_msg m;

		hit->claimed = 1;
		if (test_fail(j, "remap_get")) {
			mf_err_set(&e, -EIO, "state: injected read error (MAILFERRY_TEST_FAIL)");
			rc = -EIO;
		} else {
			rc = state_msg_get(j->st, &ok, &m, &e);
		}
		if (rc < 0) {
			/* Neither copied nor recorded would be lost: the mailbox
			 * fails and the remap is done again next run. */
			job_error(j, NULL, w->mb, w->rm_uid, "%s", e.msg);
			w->rm_failed = 1;
			return 0;
		}
		if (scope_msg_put(j, &nk, &m, &e) < 0) {
			job_error(j, NULL, w->mb, w->rm_uid, "%s", e.msg);
			w->rm_failed = 1;
			j->fatal = 1;
			return 0;
		}
		j->state_dirty = 1;
		w->rm_found++;
		/* The same message, its flags maybe changed with the move: the
		 * changes pass applies the difference (m.flags: as copied). */
		if (j->o->sync_flags && w->rm_have_flags &&
		    !flags_equal(w->rm_flags, w->rm_flags_len, m.flags, strlen(m.flags)))
			chg_push(w, w->rm_uid, m.dst_uid, w->rm_flags, w->rm_flags_len);
		return 0;
	}
	if (grow((void **)&w->todo, &w->ctodo, w->ntodo + 1, sizeof(*w->todo)) < 0)
		return -ENOMEM;
	w->todo[w->ntodo++] = w->rm_uid;
	return 0;
}

static const struct imap_consumer remap_consumer = {
	.lit_begin = remap_lit_begin,
	.lit_data = hash_lit_data,
	.lit_end = remap_lit_end,
};

static int remap_drop_old(void *ctx, uint32_t uid, const struct state_msg *m)
{
	struct worker *w = ctx;
	struct state_msg_key k = {w->job->jobid, w->mb->mbid, w->old_uidv, uid};
	struct mf_error e;
	int rc;

	(void)m;
	if ((rc = scope_msg_del(w->job, &k, &e)) < 0)
		job_error(w->job, NULL, w->mb, uid, "%s", e.msg);
	return rc;
}

static void remap_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct state_mbox rec;
	struct mf_error e;
	int rc;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		mailbox_fail(w, imap_client_who(c), 0, "UID FETCH failed: %.*s", (int)r->text_len,
			     r->text);
		return;
	}
	if (w->rm_failed) {
		/* The old records stay, so the next run finds them again. */
		mailbox_fail(w, NULL, 0,
		             "UIDVALIDITY changed from %u to %u, but the state could "
		             "not record the messages found again; tried again next run",
		             w->old_uidv, w->uidvalidity);
		return;
	}
	if (state_msg_each(j->st, j->jobid, w->mb->mbid, w->old_uidv, 1, remap_drop_old, w, &e) <
	    0) {
		mailbox_fail(w, NULL, 0, "UIDVALIDITY changed: old records not dropped");
		return;
	}
	rc = state_mbox_get(j->st, j->jobid, w->mb->mbid, &rec, &e);
	if (rc == 0) {
		rec.uidvalidity = w->uidvalidity;
		rec.last_uid = 0;
		rec.highestmodseq = 0;
		rec.intents = 0;
		rc = scope_mbox_put(j, w->mb->mbid, &rec, &e);
	}
	if (rc < 0) {
		mailbox_fail(w, NULL, 0, "%s", e.msg);
		return;
	}
	j->state_dirty = 1;
	if (job_commit(j) < 0) {
		/* The matches are not durable: going on would record the pass
		 * under the new UIDVALIDITY without them, and the messages found
		 * would never be matched again (no flag or expunge would reach
		 * their copies). The old records stay; the next run remaps. */
		j->fatal = 1;
		mailbox_fail(w, NULL, 0,
		             "UIDVALIDITY changed from %u to %u, but the state could not record "
		             "the messages found again; tried again next run",
		             w->old_uidv, w->uidvalidity);
		loop_defer(j->loop, &j->stop_task);
		return;
	}
	mf_log(MF_LOG_INFO, "%s mailbox \"%s\": UIDVALIDITY changed from %u to %u: %llu messages "
			    "found again by content, %zu to copy",
	       imap_client_who(c), w->mb->display, w->old_uidv, w->uidvalidity,
	       (unsigned long long)w->rm_found, w->ntodo);
	w->mb->skipped += w->rm_found;
	j->sum->skipped += w->rm_found;
	w->list_mode = 1;
	w->todo_pos = 0;
	changes_apply(w); /* flags changed on the found ones, then the new */
}

void remap_start(struct worker *w, uint32_t old_uidv)
{
	struct job *j = w->job;
	struct mf_error e;

	w->old_uidv = old_uidv;
	w->nrm = w->ntodo = w->todo_pos = 0;
	w->rm_found = 0;
	w->rm_failed = 0;
	w->method = M_NEW_ONLY; /* flags are copied with the messages that move */
	changes_reset(w);       /* the flag changes of found messages go in here */
	if (state_msg_each(j->st, j->jobid, w->mb->mbid, old_uidv, 1, remap_collect, w, &e) < 0) {
		mailbox_fail(w, NULL, 0, "%s", e.msg);
		return;
	}
	if (w->nrm)
		qsort(w->rm, w->nrm, sizeof(*w->rm), remap_cmp);
	w->phase = W_REMAP;
	if (!w->src.exists) {
		remap_done(&w->src, &w->remap_cmd, &(struct imap_resp){.status = IMAP_ST_OK});
		return;
	}
	imap_cmd_begin_consumer(&w->src, &w->remap_cmd, remap_done, NULL, &remap_consumer);
	imap_put(&w->src, "UID FETCH 1:* (UID FLAGS BODY.PEEK[])");
	imap_cmd_end(&w->src);
}
