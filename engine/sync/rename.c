/*
 * rename — folders renamed on the source: a new mailbox whose first message
 * is recorded in a vanished one takes its state over, and the destination
 * folder is RENAMEd too (parents first), so nothing is copied again.
 *
 * Not for: UIDVALIDITY changes inside one mailbox (remap).
 */
#include "engine/sync/job_int.h"

static int probe_scan_cb(void *ctx, uint32_t uid, const struct state_msg *m);
static size_t probe_match(struct job *j, uint32_t uidv, uint32_t uid, const uint8_t nhash[32]);
static void probe_examine_done(struct imap_client *c, struct imap_cmd *cmd,
			       const struct imap_resp *r);
static void probe_fetch_done(struct imap_client *c, struct imap_cmd *cmd,
			     const struct imap_resp *r);
static void dst_names_moved(struct job *j, const char *old, const char *to);
static void rename_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static int probe_lit_end(struct imap_client *c, struct imap_cmd *cmd);

/* The probe's EXAMINE: the candidate's UIDVALIDITY. */
static int probe_examine_untagged(struct imap_client *c, struct imap_cmd *cmd,
                                  const struct imap_resp *r)
{
	struct worker *w = c->ud;
	const struct imap_node *v = imap_resp_code(r, "UIDVALIDITY");

	(void)cmd;
	if (v)
		imap_node_u32(v, &w->uidvalidity);
	return 0;
}

static const struct imap_consumer probe_examine_consumer = {.untagged = probe_examine_untagged};
/* The probe's FETCH 1: the candidate's first message, hashed. */
static const struct imap_consumer probe_fetch_consumer = {
	.lit_begin = remap_lit_begin,
	.lit_data = hash_lit_data,
	.lit_end = probe_lit_end,
};

/* ---- control: renamed mailboxes ------------------------------------------------ */

/*
 * A mailbox the state knows is gone from the source's LIST and one it does
 * not know has appeared: perhaps the first was renamed to the second. The
 * first message of each new mailbox is fetched and hashed. If that content
 * is recorded in a vanished mailbox (the same UID under the same
 * UIDVALIDITY, or anywhere in its records), the new name takes
 * the vanished mailbox's state over and its destination folder is renamed
 * too (dlist_done), so nothing is copied again: the worker goes on
 * incrementally, or, if the UIDVALIDITY changed on the way, finds the
 * messages again by content (remap_start).
 */

struct probe_scan {
	const uint8_t *nhash;
	int hit;
};

static int probe_scan_cb(void *ctx, uint32_t uid, const struct state_msg *m)
{
	struct probe_scan *ps = ctx;

	(void)uid;
	if (m->status == STATE_MSG_DONE && !memcmp(m->nhash, ps->nhash, 32)) {
		ps->hit = 1;
		return 1;
	}
	return 0;
}

/* Which vanished mailbox holds this message: the same UID under the same
 * UIDVALIDITY (a plain RENAME keeps both), else anywhere in its records (a
 * copy under a new UIDVALIDITY). Reads only the vanished mailboxes'
 * records, and only when a new mailbox appeared while some vanished. */
static size_t probe_match(struct job *j, uint32_t uidv, uint32_t uid, const uint8_t nhash[32])
{
	struct state_msg m;
	struct mf_error e;

	for (size_t i = 0; i < j->nvan; i++) {
		struct state_msg_key k = {j->jobid, j->van[i].mbid, uidv, uid};

		if (!j->van[i].claimed && j->van[i].rec.uidvalidity == uidv &&
		    state_msg_get(j->st, &k, &m, &e) == 0 && m.status == STATE_MSG_DONE &&
		    !memcmp(m.nhash, nhash, 32))
			return i + 1;
	}
	for (size_t i = 0; i < j->nvan; i++) {
		struct probe_scan ps = {nhash, 0};

		if (!j->van[i].claimed &&
		    state_msg_each(j->st, j->jobid, j->van[i].mbid, j->van[i].rec.uidvalidity, 1,
				   probe_scan_cb, &ps, &e) >= 0 &&
		    ps.hit)
			return i + 1;
	}
	return 0;
}

static int probe_lit_end(struct imap_client *c, struct imap_cmd *cmd)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct mbox *mb = j->probe_mb;
	uint8_t nhash[32];

	(void)cmd;
	msghash_end(&w->mh, NULL, nhash);
	if (!mb || !w->rm_uid || !mb->probe_uidv || mb->renamed_from)
		return 0;
	mb->renamed_from = probe_match(j, mb->probe_uidv, w->rm_uid, nhash);
	/* A folder that merely starts with a message taken out of a deleted
	 * one is not that folder: a rename keeps (most of) the messages. */
	if (mb->renamed_from && mb->have_status &&
	    (uint64_t)mb->st_messages * 2 < j->van[mb->renamed_from - 1].rec.messages)
		mb->renamed_from = 0;
	if (mb->renamed_from)
		j->van[mb->renamed_from - 1].claimed = 1;
	return 0;
}

static void probe_examine_done(struct imap_client *c, struct imap_cmd *cmd,
			       const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct mbox *mb = cmd->ud;

	j->probe_mb = r->status == IMAP_ST_OK ? mb : NULL;
	mb->probe_uidv = r->status == IMAP_ST_OK ? w->uidvalidity : 0;
	w->uidvalidity = 0;
	j->probes_pending--; /* its FETCH follows */
}

static void probe_fetch_done(struct imap_client *c, struct imap_cmd *cmd,
			     const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;

	(void)cmd;
	(void)r; /* an empty mailbox answers NO or BAD: nothing to match, a new mailbox */
	j->probe_mb = NULL;
	w->rm_uid = 0;
	if (--j->probes_pending)
		return;
	free(j->probe_cmd);
	j->probe_cmd = NULL;
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];

		if (!mb->renamed_from)
			continue;
		mf_log(MF_LOG_INFO, "%s mailbox \"%s\": renamed on the source from \"%s\" "
				    "(found by content); its state and destination folder follow",
		       imap_client_who(c), mb->display, j->van[mb->renamed_from - 1].rec.name);
	}
	plan_finish(j);
}

/* On the control connection: EXAMINE and FETCH 1 of every candidate, all
 * pipelined (one round trip); answers come in order. */
void probe_start(struct job *j)
{
	struct worker *w = &j->w[0];
	struct imap_client *c = &w->src;
	size_t n = 0, k = 0;

	for (size_t i = 0; i < j->nmb; i++)
		n += (size_t)j->mb[i].probe;
	if (!(j->probe_cmd = calloc(2 * n, sizeof(*j->probe_cmd)))) {
		j->fatal = 1;
		job_maybe_finish(j);
		return;
	}
	j->probes_pending = (unsigned)(2 * n);
	w->uidvalidity = 0;
	w->rm_uid = 0;
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];

		if (!mb->probe)
			continue;
		imap_cmd_begin_consumer(c, &j->probe_cmd[k++], probe_examine_done, mb,
		                        &probe_examine_consumer);
		imap_put(c, "EXAMINE ");
		imap_put_astring(c, mb->name, mb->len);
		imap_cmd_end(c);
		imap_cmd_begin_consumer(c, &j->probe_cmd[k++], probe_fetch_done, mb,
		                        &probe_fetch_consumer);
		imap_put(c, "FETCH 1 (UID BODY.PEEK[])");
		imap_cmd_end(c);
	}
}

/* A vanished mailbox lives on under mb's name: its state moves over. */
void rename_adopt(struct job *j, struct mbox *mb)
{
	struct vanished *v = &j->van[mb->renamed_from - 1];
	struct state_mbox rec = v->rec;
	struct mf_error e;

	snprintf(rec.name, sizeof(rec.name), "%s", mb->name);
	snprintf(rec.dst_name, sizeof(rec.dst_name), "%s", mb->dst_name);
	if (scope_mbox_rename(j, v->mbid, v->rec.name, strlen(v->rec.name), mb->name,
			      mb->len, &e) < 0 ||
	    scope_mbox_put(j, v->mbid, &rec, &e) < 0) {
		job_error(j, NULL, mb, 0, "%s", e.msg);
		j->fatal = 1;
		return;
	}
	mb->mbid = v->mbid;
	j->state_dirty = 1;
	j->sum->mailboxes_renamed++;
	if (j->o->json) {
		job_event(j, "renamed");
		fprintf(j->o->out, ",\"from\":");
		mf_json_str(j->o->out, v->rec.name, strlen(v->rec.name));
		fprintf(j->o->out, ",\"to\":");
		mf_json_str(j->o->out, mb->display, strlen(mb->display));
		fprintf(j->o->out, ",\"dst_from\":");
		mf_json_str(j->o->out, v->rec.dst_name, strlen(v->rec.dst_name));
		fprintf(j->o->out, ",\"dst_to\":");
		mf_json_str(j->o->out, mb->dst_name, strlen(mb->dst_name));
		fprintf(j->o->out, "}\n");
		job_event_end(j);
	}
	/* The state must say so before anything is copied under the new name.
	 * A failed commit is logged and makes the job fatal (job_commit): the
	 * callers stop on j->fatal, nothing is copied under the new name. */
	job_commit(j);
}

/* The destination's own list after RENAME old new: the folder and the ones
 * below it have moved (RFC 3501 6.3.5). */
static void dst_names_moved(struct job *j, const char *old, const char *to)
{
	size_t ol = strlen(old);

	for (size_t i = 0; i < j->ndst; i++) {
		char *d = j->dst_names[i], *nn;

		if (strncmp(d, old, ol) || (d[ol] && d[ol] != j->dst_sep))
			continue;
		if (!(nn = malloc(strlen(to) + strlen(d + ol) + 1)))
			continue;
		strcpy(nn, to);
		strcat(nn, d + ol);
		free(d);
		j->dst_names[i] = nn;
	}
	nx_reset(&j->dstx);
}

static void rename_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct mbox *mb = cmd->ud;
	const char *old = j->van[mb->renamed_from - 1].rec.dst_name;

	if (r->status == IMAP_ST_OK) {
		dst_names_moved(j, old, mb->dst_name);
		rename_adopt(j, mb);
	} else {
		/* Not moved: the new name gets a folder and a copy of its own. */
		mf_log(MF_LOG_WARN, "%s: cannot rename \"%s\" to \"%s\" (%.*s); mailbox \"%s\" "
				    "is copied afresh",
		       imap_client_who(c), old, mb->dst_name, (int)r->text_len, r->text,
		       mb->display);
		j->van[mb->renamed_from - 1].claimed = 0;
		mb->renamed_from = 0;
	}
	rename_next(j, c);
}

/* Renames on the destination one at a time, parents before their children
 * (a parent's RENAME moves the children with it), then the creates. */
void rename_next(struct job *j, struct imap_client *c)
{
	while (!j->fatal) {
		struct mbox *mb = NULL;
		const char *old;
		int has_old, has_new;

		/* the shortest old destination name still to do */
		for (size_t i = 0; i < j->nmb; i++)
			if (j->mb[i].renamed_from && !j->mb[i].dst_exists &&
			    (!mb || strlen(j->van[j->mb[i].renamed_from - 1].rec.dst_name) <
					strlen(j->van[mb->renamed_from - 1].rec.dst_name)))
				mb = &j->mb[i];
		if (!mb)
			break;
		mb->dst_exists = 1; /* decided now, whatever happens */
		old = j->van[mb->renamed_from - 1].rec.dst_name;
		has_old = dst_has(j, old);
		has_new = dst_has(j, mb->dst_name);
		if (!strcmp(old, mb->dst_name) || (!has_old && has_new)) {
			/* The same folder, or already moved (by a parent's RENAME, by
			 * hand, or by a run that stopped right after its RENAME). */
			rename_adopt(j, mb);
			continue;
		}
		if (!has_old || has_new) {
			mf_log(MF_LOG_WARN, "%s: mailbox \"%s\" was \"%s\" on the source, but the "
					    "destination has %s; it is copied afresh",
			       imap_client_who(c), mb->display, j->van[mb->renamed_from - 1].rec.name,
			       has_new ? "both folders" : "neither folder");
			j->van[mb->renamed_from - 1].claimed = 0;
			mb->renamed_from = 0;
			mb->dst_exists = dst_has(j, mb->dst_name);
			continue;
		}
		imap_cmd_begin(c, &j->rename_cmd, rename_done, mb);
		imap_put(c, "RENAME ");
		imap_put_astring(c, old, strlen(old));
		imap_put(c, " ");
		imap_put_astring(c, mb->dst_name, strlen(mb->dst_name));
		imap_cmd_end(c);
		return;
	}
	dst_create_all(j, c);
}
