/*
 * prepare — the destination before any copy: its separator and folders
 * (LIST, SPECIAL-USE), where each source mailbox goes, CREATE and
 * SUBSCRIBE, all pipelined; workers start when every answer is in.
 *
 * Not for: renames (rename), the copy itself (copy).
 */
#include "engine/sync/job_int.h"

static void creates_release(struct job *j);
static void create_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static void subscribe_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static void create_fail(struct job *j, const char *who, struct mbox *mb, const char *why);
static void relist_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static void relist_send(struct job *j, struct imap_client *c);
static int dlist_again(struct job *j, struct worker *w);
static size_t create_depth(const struct job *j, const char *name);
static int create_order_cmp(const void *a, const void *b);

/* ---- control: prepare the destination --------------------------------------- */

int dst_has(struct job *j, const char *name)
{
	size_t len = strlen(name);

	if (is_inbox(name, len) ||
	    (j->dstx.n != j->ndst && nx_update(&j->dstx, j->ndst, j, dst_name_at) < 0)) {
		for (size_t i = 0; i < j->ndst; i++)
			if (!strcmp(j->dst_names[i], name) ||
			    (is_inbox(name, len) &&
			     is_inbox(j->dst_names[i], strlen(j->dst_names[i]))))
				return 1;
		return 0;
	}
	for (size_t h = name_hash(name, len) & (j->dstx.cap - 1); j->dstx.cap && j->dstx.slot[h];
	     h = (h + 1) & (j->dstx.cap - 1))
		if (!strcmp(j->dst_names[j->dstx.slot[h] - 1], name))
			return 1;
	return 0;
}

int dst_ctl_untagged(struct imap_client *c, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	const struct imap_node *a = r->first;

	if (a && imap_node_is(a, "NAMESPACE")) {
		ns_take(j, c, a, 1);
		return 0;
	}
	if (a && imap_node_is(a, "LIST") && a->next && a->next->next && a->next->next->next) {
		const struct imap_node *sep = a->next->next, *nm = sep->next;
		const char *name;
		size_t len;

		if (sep->type == IMAP_NODE_STRING && sep->len == 1 && !j->dst_sep)
			j->dst_sep = sep->s[0];
		if (node_str(nm, &name, &len) < 0 || !len)
			return 0;
		if (j->ndst == j->cdst) {
			size_t nc = j->cdst ? j->cdst * 2 : 64;
			char **nn = realloc(j->dst_names, nc * sizeof(*nn));
			unsigned *ns = realloc(j->dst_special, nc * sizeof(*ns));

			if (nn)
				j->dst_names = nn;
			if (ns)
				j->dst_special = ns;
			if (!nn || !ns)
				return -ENOMEM;
			j->cdst = nc;
		}
		if (!(j->dst_names[j->ndst] = dupn(name, len)))
			return -ENOMEM;
		j->dst_special[j->ndst] = special_bits(a->next);
		j->ndst++;
	}
	return 0;
}

void dispatch(struct job *j)
{
	for (unsigned i = 0; i < j->nw; i++)
		if (!j->w[i].dead && j->w[i].phase != W_DONE && !j->w[i].mb)
			worker_next(&j->w[i]);
}

static void creates_release(struct job *j)
{
	if (--j->creates_pending == 0) {
		if (!j->relisted && !j->fatal) {
			j->relisted = 1;
			for (size_t i = 0; i < j->nmb; i++)
				if (j->mb[i].create_refused) {
					relist_send(j, &j->w[0].dst);
					return;
				}
		}
		j->dst_prepared = 1;
		dispatch(j);
		job_maybe_finish(j);
	}
}

static void create_fail(struct job *j, const char *who, struct mbox *mb, const char *why)
{
	job_error(j, who, mb, 0, "cannot create mailbox (%zu bytes): %s", strlen(mb->dst_name), why);
	mb->failed = 1;
	mb->work = 0;
	j->sum->mailboxes_failed++;
}

static void create_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct mbox *mb = cmd->ud;

	if (r->status != IMAP_ST_OK && !imap_resp_code(r, "ALREADYEXISTS")) {
		/* Cyrus IMAP 3.x creates a parent with its child and then answers
		 * a CREATE of the parent "NO Mailbox already exists", without
		 * [ALREADYEXISTS] (RFC 5530): whether it exists, LIST tells. */
		mb->create_refused = 1;
		snprintf(mb->create_why, sizeof(mb->create_why), "%.*s", (int)r->text_len, r->text);
	}
	creates_release(j);
}

/* The answer to LIST "" name for a refused CREATE: the LIST data went
 * into the destination's list (dst_ctl_untagged). */
static void relist_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct mbox *mb = cmd->ud;

	mb->create_refused = 0;
	if (r->status == IMAP_ST_OK && dst_has(j, mb->dst_name))
		mf_log(MF_LOG_INFO, "%s: mailbox \"%s\": CREATE refused (%s), but it exists",
		       imap_client_who(c), mb->dst_name, mb->create_why);
	else
		create_fail(j, imap_client_who(c), mb, mb->create_why);
	creates_release(j);
}

/* Every CREATE is answered: look up the refused ones (pipelined). The
 * commands of the answered CREATEs are reused. */
static void relist_send(struct job *j, struct imap_client *c)
{
	size_t n = 0;

	j->creates_pending = 1; /* held until all are sent */
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];

		if (!mb->create_refused)
			continue;
		j->creates_pending++;
		imap_cmd_begin(c, &j->create_cmd[n++], relist_done, mb);
		imap_put(c, "LIST \"\" ");
		imap_put_astring(c, mb->dst_name, strlen(mb->dst_name));
		imap_cmd_end(c);
	}
	creates_release(j);
}

/* Nobody waits for a SUBSCRIBE: the workers' commands go behind it. */
static void subscribe_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct mbox *mb = cmd->ud;

	if (r->status != IMAP_ST_OK)
		mf_log(MF_LOG_WARN, "%s: cannot subscribe \"%s\": %.*s", imap_client_who(c),
		       mb->dst_name, (int)r->text_len, r->text);
}

/* Both sides are listed (the destination's may be in first: it is
 * asked for as soon as its session is up): where each source mailbox
 * goes, then renames and CREATEs. */
static void dst_plan(struct job *j, struct imap_client *c)
{
	struct worker *w = c->ud;

	if (!j->listed || !j->dlisted || j->dst_planned || j->dst_prepared || j->fatal)
		return;
	j->dst_planned = 1;
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];

		if (!(mb->dst_name = dst_name_for(j, mb))) {
			j->fatal = 1;
			job_maybe_finish(j);
			return;
		}
	}
	if (sink_can(&w->sink, SINK_COUNTS)) {
		/* a counting sink (--dry-run) writes nothing to the destination:
		 * no RENAME (renamed ones have no work in a dry run, plan.c) */
		dst_create_all(j, c);
		return;
	}
	rename_next(j, c);
}

void dlist_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;

	if (cmd != &j->dlist_cmd[1])
		return; /* LIST "" "" gave the separator; wait for the full list */
	if (dlist_again(j, w) || list_failed(j, c, r))
		return;
	j->dlisted = 1;
	dst_plan(j, c);
}

/* Hierarchy levels of a destination name: separators in it. */
static size_t create_depth(const struct job *j, const char *name)
{
	size_t d = 0;

	for (; j->dst_sep && *name; name++)
		d += *name == j->dst_sep;
	return d;
}

static int create_order_cmp(const void *a, const void *b)
{
	const struct create_order *x = a, *y = b;

	if (x->depth != y->depth)
		return x->depth < y->depth ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx; /* as listed, otherwise */
}

/* CREATE what the destination lacks and SUBSCRIBE what the source has
 * subscribed, all pipelined; workers start when every answer is in. */
void dst_create_all(struct job *j, struct imap_client *c)
{
	struct create_order *order;
	size_t n = 0, nc = 0;

	if (j->fatal) {
		job_maybe_finish(j);
		return;
	}
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];

		if (!mb->renamed_from)
			mb->dst_exists = dst_has(j, mb->dst_name);
		n += !mb->dst_exists;
	}
	if (sink_can(&j->w[0].sink, SINK_COUNTS)) {
		/* a counting sink (--dry-run): no CREATE, the plan is printed */
		for (size_t i = 0; i < j->nmb; i++)
			if (j->mb[i].work > 0 && !j->mb[i].dst_exists) {
				progress_clear(j);
				mf_print("mailferry: dry-run: mailbox \"%s\": destination "
				         "folder \"%s\" would be created",
				         j->mb[i].display, j->mb[i].dst_name);
			}
		j->creates_pending = 1;
		creates_release(j);
		return;
	}
	j->creates_pending = 1; /* held until all are sent */
	free(j->create_cmd);
	for (size_t i = 0; i < j->nmb; i++)
		n += j->mb[i].subscribed;
	j->create_cmd = calloc(n ? n : 1, sizeof(*j->create_cmd));
	if (!j->create_cmd) {
		j->fatal = 1;
		return;
	}
	/* Parents before children: servers that make a parent with its child
	 * (Cyrus) refuse a CREATE of the parent after it. Pipelined, the
	 * CREATEs run in the order sent. */
	order = calloc(j->nmb ? j->nmb : 1, sizeof(*order));
	if (!order) {
		j->fatal = 1;
		return;
	}
	for (size_t i = 0; i < j->nmb; i++)
		if (!j->mb[i].dst_exists)
			order[nc++] = (struct create_order){create_depth(j, j->mb[i].dst_name), i};
	qsort(order, nc, sizeof(*order), create_order_cmp);
	n = 0;
	for (size_t i = 0; i < nc; i++) {
		struct mbox *mb = &j->mb[order[i].idx];

		j->creates_pending++;
		imap_cmd_begin(c, &j->create_cmd[n++], create_done, mb);
		imap_put(c, "CREATE ");
		imap_put_astring(c, mb->dst_name, strlen(mb->dst_name));
		imap_cmd_end(c);
	}
	free(order);
	/* Subscriptions follow the source's (SUBSCRIBE is idempotent). */
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];

		if (!mb->subscribed)
			continue;
		imap_cmd_begin(c, &j->create_cmd[n++], subscribe_done, mb);
		imap_put(c, "SUBSCRIBE ");
		imap_put_astring(c, mb->dst_name, strlen(mb->dst_name));
		imap_cmd_end(c);
	}
	creates_release(j);
}

struct reconcile {
	struct job *j;
	struct mbox *mb;
	uint64_t n, missing;
};

static int reconcile_one(void *ctx, uint32_t uid, const struct state_msg *m)
{
	struct reconcile *r = ctx;
	struct mf_error e;
	int rc;

	if (m->status != STATE_MSG_DONE)
		return 0; /* intents: settle looks them up */
	rc = sink_archive_record(r->j, r->mb, uid, m, &e);
	if (rc < 0) {
		job_error(r->j, "archive", r->mb, uid, "%s", e.msg);
		return rc;
	}
	r->n += rc == 1;
	r->missing += rc == 0;
	return 0;
}

/* An archive (backup): every mailbox of the listing is named in the run
 * (here when the sink opens, else at the job's end: a run with nothing
 * to copy opens no sink),
 * so the run lists it even when nothing in it changed (its messages are
 * carried forward by the archive: a UID's latest version counts until a
 * later one or a deletion). After a run that never committed (a crash),
 * what the state says is stored is recorded again in this run: the
 * crashed run's records are invisible, and the state will not copy those
 * messages again; the same for a mailbox renamed on the source (its
 * records move to the new name, the archive's versions do not). A local
 * pass over the state, after a crash or a rename only. */
void archive_prepare(struct job *j)
{
	uint64_t n = 0, missing = 0;

	j->archive_named = 1;
	for (size_t i = 0; i < j->nmb && !j->fatal; i++) {
		struct mbox *mb = &j->mb[i];
		struct state_mbox rec;
		struct mf_error e;
		int known = state_mbox_get(j->st, j->jobid, mb->mbid, &rec, &e) == 0 &&
		            rec.uidvalidity;
		uint32_t uidv = mb->have_status && mb->st_uidvalidity ? mb->st_uidvalidity
		                : known                               ? rec.uidvalidity
		                                                      : 0;

		if (mb->failed)
			continue;
		if (sink_archive_mbox(j, mb, uidv, &e) < 0) {
			job_error(j, "archive", mb, 0, "%s", e.msg);
			j->fatal = 1;
			break;
		}
		if ((j->o->archive_reconcile || mb->renamed_from) && known) {
			struct reconcile r = {j, mb, 0, 0};

			if (rec.uidvalidity != uidv && sink_archive_mbox(j, mb, rec.uidvalidity, &e) < 0) {
				job_error(j, "archive", mb, 0, "%s", e.msg);
				j->fatal = 1;
				break;
			}
			if (state_msg_each(j->st, j->jobid, mb->mbid, rec.uidvalidity, 1, reconcile_one,
			                   &r, &e) < 0) {
				j->fatal = 1;
				break;
			}
			n += r.n;
			missing += r.missing;
		}
	}
	if (j->o->archive_reconcile && !j->fatal)
		mf_log(missing ? MF_LOG_WARN : MF_LOG_INFO,
		       "archive: the previous run did not finish; %llu stored messages recorded "
		       "again in this run, %llu the state names are not in the archive",
		       (unsigned long long)n, (unsigned long long)missing);
}

/* A destination without folders (SMTP, LMTP): every mailbox is delivered
 * to the one recipient; a renamed source mailbox keeps its record (no
 * RENAME to send), so nothing is delivered twice. One notice says what is
 * not carried. */
static void prepare_folderless(struct job *j)
{
	size_t nwork = 0;

	for (size_t i = 0; i < j->nmb && !j->fatal; i++) {
		struct mbox *mb = &j->mb[i];

		if (!(mb->dst_name = strdup(mb->display))) {
			job_error(j, NULL, mb, 0, "out of memory");
			j->fatal = 1;
			break;
		}
		mb->dst_exists = 1;
		if (mb->renamed_from)
			rename_adopt(j, mb);
		nwork += mb->work > 0;
	}
	if (j->o->archive && !j->fatal && !j->archive_named)
		archive_prepare(j);
	if (nwork && !j->o->dry_run && !j->o->archive) {
		progress_clear(j);
		mf_log(MF_LOG_INFO, "%s: %zu mailbox%s delivered to <%s>; folders, flags and "
		                    "dates are not carried by %s",
		       j->w[0].sink.ops->who(&j->w[0].sink), nwork, nwork == 1 ? "" : "es",
		       j->o->rcpt, j->o->dst_smtp.lmtp ? "LMTP" : "SMTP");
	}
	j->dst_prepared = 1;
	dispatch(j);
	job_maybe_finish(j);
}

void dst_prepare(struct worker *w)
{
	struct job *j = w->job;

	if (!sink_can(&w->sink, SINK_FOLDERS)) {
		if (w->dst_ready && j->listed && !j->dst_prepared)
			prepare_folderless(j);
		return;
	}
	if (!w->dst_ready)
		return;
	if (j->dlist_cmd[0].done) { /* listed already, or being listed */
		dst_plan(j, &w->dst);
		return;
	}
	dst_list(w);
}

/* What the destination's LIST assumes behind a pipelined login (as
 * plan.c's for the source): checked in dlist_done. */
#define DLIST_SPEC_CAPS (IMAP_CAP_NAMESPACE | IMAP_CAP_SPECIAL_USE | IMAP_CAP_LIST_EXTENDED)

/* Lists the destination (worker 0's session), behind its login when the
 * client allows it (the capabilities then assumed, dlist_again). */
void dst_list(struct worker *w)
{
	struct job *j = w->job;
	/* names are made with the prefix when the LIST is answered (dlist_done) */
	uint32_t caps = list_begin(j, &w->dst, DLIST_SPEC_CAPS, &j->dlist_caps, 1);
	struct imap_client *c = &w->dst;

	imap_cmd_begin(c, &j->dlist_cmd[0], dlist_done, NULL);
	imap_put(c, "LIST \"\" \"\"");
	imap_cmd_end(c);
	imap_cmd_begin(c, &j->dlist_cmd[1], dlist_done, NULL);
	if ((caps & IMAP_CAP_SPECIAL_USE) && (caps & IMAP_CAP_LIST_EXTENDED))
		imap_put(c, "LIST \"\" \"*\" RETURN (SPECIAL-USE)");
	else
		imap_put(c, "LIST \"\" \"*\"");
	imap_cmd_end(c);
}

/* The destination's LIST assumed more than its login's answer offers:
 * what it brought is dropped, and it is listed again. */
static int dlist_again(struct job *j, struct worker *w)
{
	if (!(j->dlist_caps & ~w->dst.caps & DLIST_SPEC_CAPS))
		return 0;
	for (size_t i = 0; i < j->ndst; i++)
		free(j->dst_names[i]);
	j->ndst = 0;
	nx_reset(&j->dstx);
	ns_forget(j, 1);
	dst_list(w);
	return 1;
}
