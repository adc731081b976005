/*
 * dedupe — --dedupe: a message whose content the destination folder already
 * holds is recorded against that copy, not appended again.
 *
 * Not for: crash recovery (settle), UIDVALIDITY changes (remap).
 */
#include "engine/sync/job_int.h"

static int dd_known_collect(void *ctx, uint32_t uid, const struct state_msg *m);
static void dd_src_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static void dd_src_start(struct worker *w);
static void dd_dst_fetch_done(struct imap_client *c, struct imap_cmd *cmd,
			      const struct imap_resp *r);
static void dd_search_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static void dd_examine_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static int dd_dst_untagged(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static int dd_dst_lit_end(struct imap_client *c, struct imap_cmd *cmd);
static int dd_src_lit_begin(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r,
                            const struct imap_node *key, uint64_t size);
static int dd_src_lit_end(struct imap_client *c, struct imap_cmd *cmd);

/* The destination folder's EXAMINE and UID SEARCH ALL: its UIDVALIDITY
 * and UIDs. */
static const struct imap_consumer dd_dst_consumer = {.untagged = dd_dst_untagged};
/* The destination's unrecorded messages: hashed (settle's literal reader). */
static const struct imap_consumer dd_dst_fetch_consumer = {
	.lit_begin = dst_hash_lit_begin,
	.lit_data = hash_lit_data,
	.lit_end = dd_dst_lit_end,
};
/* The new source messages: hashed, their metadata kept for a record. */
static const struct imap_consumer dd_src_consumer = {
	.lit_begin = dd_src_lit_begin,
	.lit_data = hash_lit_data,
	.lit_end = dd_src_lit_end,
};

/* ---- worker: --dedupe ----------------------------------------------------------- */

/*
 * Before new messages are copied into a destination folder, its content is
 * known by hash: what the state recorded there (under the folder's current
 * UIDVALIDITY) plus the messages nobody recorded, fetched and hashed. The
 * new source messages are then read once to hash them; those whose content
 * is already there are recorded against the destination's copy, the rest
 * are copied (list mode). An empty or unknown-free destination folder
 * costs one EXAMINE and one UID SEARCH; nothing to match skips the source
 * pass. Messages are compared CR-folded (nhash), as Dovecot stores them.
 */


static int dd_known_collect(void *ctx, uint32_t uid, const struct state_msg *m)
{
	(void)uid;
	if (m->status != STATE_MSG_DONE || !m->dst_uid)
		return 0;
	return rm_push(ctx, m->nhash, m->dst_uid, m->dst_uidvalidity);
}

static void dd_src_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		mailbox_fail(w, imap_client_who(c), 0, "--dedupe: reading the new messages failed: %.*s",
			     (int)r->text_len, r->text);
		return;
	}
	if (w->dd_found)
		mf_log(MF_LOG_INFO, "%s mailbox \"%s\": %llu new messages are already in \"%s\" "
				    "(--dedupe); %zu to copy",
		       imap_client_who(c), w->mb->display, (unsigned long long)w->dd_found,
		       w->mb->dst_name, w->ntodo);
	w->list_mode = 1;
	w->todo_pos = 0;
	fetch_start(w);
}

/* The destination folder's content is known: hash the new source messages. */
static void dd_src_start(struct worker *w)
{
	size_t k = 0;

	for (size_t i = 0; i < w->nrm; i++)
		if (w->rm[i].uidv == w->dd_dst_uidv)
			w->rm[k++] = w->rm[i];
	w->nrm = k;
	if (!w->nrm) {
		fetch_start(w); /* nothing there to match: copy as usual */
		return;
	}
	qsort(w->rm, w->nrm, sizeof(*w->rm), remap_cmp);
	w->phase = W_DEDUPE_SRC;
	w->ntodo = w->todo_pos = 0;
	w->dd_found = 0;
	imap_cmd_begin_consumer(&w->src, &w->dd_cmd[2], dd_src_done, NULL, &dd_src_consumer);
	imap_putf(&w->src, "UID FETCH %u:%u (UID FLAGS INTERNALDATE%s BODY.PEEK[])", w->start_uid,
		  w->end_uid, w->src.enabled_condstore ? " MODSEQ" : "");
	imap_cmd_end(&w->src);
}

static void dd_dst_fetch_done(struct imap_client *c, struct imap_cmd *cmd,
			      const struct imap_resp *r)
{
	struct worker *w = c->ud;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		mailbox_fail(w, imap_client_who(c), 0,
			     "--dedupe: reading the destination folder failed: %.*s",
			     (int)r->text_len, r->text);
		return;
	}
	dd_src_start(w);
}

static void dd_search_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	size_t n = 0;

	(void)cmd;
	if (w->mb->failed) {
		mailbox_finish(w); /* the EXAMINE failed and said so */
		return;
	}
	if (r->status != IMAP_ST_OK) {
		mailbox_fail(w, imap_client_who(c), 0,
			     "--dedupe: UID SEARCH on the destination failed: %.*s",
			     (int)r->text_len, r->text);
		return;
	}
	/* The destination's UIDs nobody recorded under this UIDVALIDITY. */
	if (w->ndd_uids)
		qsort(w->dd_uids, w->ndd_uids, sizeof(*w->dd_uids), imap_uid_cmp);
	for (size_t i = 0; i < w->nrm && w->ndd_uids; i++) {
		uint32_t *hit;

		if (w->rm[i].uidv != w->dd_dst_uidv)
			continue;
		hit = bsearch(&w->rm[i].uid, w->dd_uids, w->ndd_uids, sizeof(*w->dd_uids),
			      imap_uid_cmp);
		if (hit)
			*hit = 0;
	}
	for (size_t i = 0; i < w->ndd_uids; i++)
		n += w->dd_uids[i] != 0;
	if (!n) {
		dd_src_start(w);
		return;
	}
	w->phase = W_DEDUPE_DST;
	imap_cmd_begin_consumer(&w->dst, &w->dd_cmd[1], dd_dst_fetch_done, NULL,
	                        &dd_dst_fetch_consumer);
	imap_put(&w->dst, "UID FETCH ");
	imap_put_uid_set(&w->dst, w->dd_uids, w->ndd_uids);
	imap_put(&w->dst, " (UID BODY.PEEK[])");
	imap_cmd_end(&w->dst);
}

static void dd_examine_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	(void)cmd;
	if (r->status != IMAP_ST_OK || !w->dd_dst_uidv) {
		/* its UID SEARCH follows and finishes the mailbox */
		job_error(w->job, imap_client_who(c), w->mb, 0,
			  "--dedupe: EXAMINE of the destination folder failed: %.*s",
			  (int)r->text_len, r->text);
		w->mb->failed = 1;
	}
}

void dedupe_start(struct worker *w)
{
	struct job *j = w->job;
	struct mf_error e;

	w->dd_done = 1;
	w->nrm = w->ndd_uids = 0;
	w->dd_dst_uidv = 0;
	if (state_msg_each(j->st, j->jobid, w->mb->mbid, w->uidvalidity, 1, dd_known_collect, w,
			   &e) < 0) {
		mailbox_fail(w, NULL, 0, "%s", e.msg);
		return;
	}
	w->phase = W_DEDUPE_DST;
	imap_cmd_begin_consumer(&w->dst, &w->dd_cmd[0], dd_examine_done, NULL, &dd_dst_consumer);
	imap_put(&w->dst, "EXAMINE ");
	imap_put_astring(&w->dst, w->mb->dst_name, strlen(w->mb->dst_name));
	imap_cmd_end(&w->dst);
	imap_cmd_begin_consumer(&w->dst, &w->dd_cmd[1], dd_search_done, NULL, &dd_dst_consumer);
	imap_put(&w->dst, "UID SEARCH ALL");
	imap_cmd_end(&w->dst);
}

/* Destination side: UIDVALIDITY, the SEARCH, the bodies of unrecorded messages. */
static int dd_dst_untagged(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	const struct imap_node *a = r->first, *v;
	uint32_t n;

	(void)cmd;
	if ((v = imap_resp_code(r, "UIDVALIDITY")))
		imap_node_u32(v, &w->dd_dst_uidv);
	if (a && imap_node_is(a, "SEARCH"))
		for (const struct imap_node *it = a->next; it; it = it->next)
			if (imap_node_u32(it, &n) == 0 &&
			    grow((void **)&w->dd_uids, &w->cdd_uids, w->ndd_uids + 1,
				 sizeof(*w->dd_uids)) == 0)
				w->dd_uids[w->ndd_uids++] = n;
	return 0;
}

static int dd_dst_lit_end(struct imap_client *c, struct imap_cmd *cmd)
{
	struct worker *w = c->ud;
	uint8_t nh[32];

	(void)cmd;
	msghash_end(&w->mh, NULL, nh);
	if (w->stl_uid)
		rm_push(w, nh, w->stl_uid, w->dd_dst_uidv); /* out of memory: just not matched */
	return 0;
}

/* Source side: what the record of a message found on the destination needs. */
static int dd_src_lit_begin(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r,
                            const struct imap_node *key, uint64_t size)
{
	struct worker *w = c->ud;
	struct fetch_meta fm;
	int rc;

	(void)cmd;
	if ((rc = body_literal(w, c, r, key, size)) <= 0)
		return rc < 0 ? rc : IMAP_LIT_INLINE;
	fetch_meta(r, key, &fm);
	w->cur.uid = fm.uid;
	w->cur.modseq = fm.modseq;
	w->cur.size = size;
	w->cur.idate = 0;
	if (fm.date && fm.date->type == IMAP_NODE_STRING)
		parse_idate(fm.date->s, fm.date->len, &w->cur.idate);
	w->cur.flags_len =
	    fm.flags ? flags_string(fm.flags, w->cur.flags, sizeof(w->cur.flags), NULL) : 0;
	w->cur.flags[w->cur.flags_len] = '\0';
	msghash_begin(&w->mh);
	return IMAP_LIT_STREAM;
}

static int dd_src_lit_end(struct imap_client *c, struct imap_cmd *cmd)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct remap key, *hit;
	struct state_msg m;
	struct mf_error e;

	(void)cmd;
	memset(&m, 0, sizeof(m));
	msghash_end(&w->mh, m.hash, m.nhash);
	if (!w->cur.uid)
		return 0;
	memcpy(key.hash, m.nhash, 32);
	hit = bsearch(&key, w->rm, w->nrm, sizeof(*w->rm), remap_cmp);
	if (hit) {
		struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, w->cur.uid};

		m.size = w->cur.size;
		m.modseq = w->cur.modseq;
		m.internaldate = (uint64_t)w->cur.idate;
		m.dst_uidvalidity = w->dd_dst_uidv;
		m.dst_uid = hit->uid;
		m.status = STATE_MSG_DONE;
		memcpy(m.flags, w->cur.flags, w->cur.flags_len);
		m.flags[w->cur.flags_len] = '\0';
		if (scope_msg_put(j, &k, &m, &e) < 0) {
			job_error(j, NULL, w->mb, w->cur.uid, "%s", e.msg);
			j->fatal = 1;
		}
		j->state_dirty = 1;
		w->dd_found++;
		w->mb->skipped++;
		j->sum->skipped++;
		j->sum->deduped++;
		return 0;
	}
	if (grow((void **)&w->todo, &w->ctodo, w->ntodo + 1, sizeof(*w->todo)) < 0)
		return -ENOMEM;
	w->todo[w->ntodo++] = w->cur.uid;
	return 0;
}
