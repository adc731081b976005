/*
 * plan — the source's mailbox list (LIST-STATUS, or LIST then STATUS), which
 * mailboxes have work (unchanged ones cost nothing), and the order they are
 * handed to workers.
 *
 * Not for: the destination side (prepare), renames (rename).
 */
#include "engine/sync/job_int.h"

static void status_apply(struct mbox *mb, const struct imap_node *list);
static int mbox_cmp_size(const void *a, const void *b);
static int vanished_collect(void *ctx, uint32_t mbid, const struct state_mbox *rec);
static void list_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static void status_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static void list_plain_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static int mbox_refuse(struct job *j, struct mbox *mb);

static void status_apply(struct mbox *mb, const struct imap_node *list)
{
	for (const struct imap_node *k = list ? list->child : NULL; k && k->next; k = k->next->next) {
		const struct imap_node *v = k->next;

		if (imap_node_is(k, "UIDVALIDITY"))
			imap_node_u32(v, &mb->st_uidvalidity);
		else if (imap_node_is(k, "UIDNEXT"))
			imap_node_u32(v, &mb->st_uidnext);
		else if (imap_node_is(k, "MESSAGES"))
			imap_node_u32(v, &mb->st_messages);
		else if (imap_node_is(k, "HIGHESTMODSEQ"))
			imap_node_u64(v, &mb->st_highestmodseq);
	}
	mb->have_status = 1;
}

int src_ctl_untagged(struct imap_client *c, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	const struct imap_node *a = r->first;
	const char *name;
	size_t len;

	if (!a)
		return 0;
	if (imap_node_is(a, "LIST") && a->next && a->next->next) {
		const struct imap_node *attrs = a->next, *sep = attrs->next, *nm = sep->next;
		struct mbox *mb;

		if (node_str(nm, &name, &len) < 0 || !len)
			return 0;
		if (!(mb = mbox_find(j, name, len)) && !(mb = mbox_add(j, name, len)))
			return -ENOMEM;
		mb->sep = (sep->type == IMAP_NODE_STRING && sep->len == 1) ? sep->s[0] : 0;
		/* People (and --folder, --exclude, --map) see '/' for hierarchy,
		 * whatever the server's separator. */
		if (mb->sep && mb->sep != '/')
			for (char *d = mb->display; *d; d++)
				if (*d == mb->sep)
					*d = '/';
		for (const struct imap_node *f = attrs->child; f; f = f->next) {
			if (imap_node_is(f, "\\Noselect") || imap_node_is(f, "\\NonExistent"))
				mb->noselect = 1;
			if (imap_node_is(f, "\\Subscribed"))
				mb->subscribed = 1;
		}
		mb->special = special_bits(attrs);
	} else if (imap_node_is(a, "STATUS") && a->next && a->next->next) {
		struct mbox *mb;

		if (node_str(a->next, &name, &len) < 0)
			return 0;
		if (!(mb = mbox_find(j, name, len)) && !(mb = mbox_add(j, name, len)))
			return -ENOMEM;
		status_apply(mb, a->next->next);
	} else if (imap_node_is(a, "NAMESPACE")) {
		ns_take(j, c, a, 0);
		ns_take_shared(j, c, a);
	}
	return 0;
}

static int mbox_cmp_size(const void *a, const void *b)
{
	const struct mbox *x = a, *y = b;
	/* a split mailbox by the size of one part (split.c) */
	uint64_t xs = x->nparts > 1 ? x->sp_est / x->nparts : x->st_messages;
	uint64_t ys = y->nparts > 1 ? y->sp_est / y->nparts : y->st_messages;

	/* work first, largest first, INBOX first among equals */
	if (x->work != y->work)
		return y->work - x->work;
	if (xs != ys)
		return xs < ys ? 1 : -1;
	return strcmp(x->name, y->name);
}

static int vanished_collect(void *ctx, uint32_t mbid, const struct state_mbox *rec)
{
	struct job *j = ctx;

	if (!rec->uidvalidity || !rec->last_uid || !rec->name[0] || !rec->dst_name[0] ||
	    mbox_find(j, rec->name, strlen(rec->name)))
		return 0;
	if (grow((void **)&j->van, &j->cvan, j->nvan + 1, sizeof(*j->van)) < 0)
		return -ENOMEM;
	j->van[j->nvan].mbid = mbid;
	j->van[j->nvan].claimed = 0;
	j->van[j->nvan++].rec = *rec;
	return 0;
}

/* A listed name that cannot be sent back as a mailbox name (issue 15
 * defect 10): the mailbox is refused with one error line, not synced. Names
 * are C strings from here on: one cut at a NUL would land on another
 * mailbox's destination folder (or on the source's mailbox of that name),
 * so it is refused too, and the line says with which it would collide. */
static int mbox_refuse(struct job *j, struct mbox *mb)
{
	const char *why = imap_mailbox_name_bad(mb->name, mb->len);
	char esc[STATE_NAME_MAX * 4];
	const struct mbox *same;
	char *d;

	if (!why)
		return 0;
	mf_escape(mb->name, mb->len, esc, sizeof(esc));
	if ((d = strdup(esc))) {
		free(mb->display);
		mb->display = d;
	}
	same = memchr(mb->name, '\0', mb->len) ? mbox_find(j, mb->name, strlen(mb->name)) : NULL;
	if (same && same != mb)
		job_error(j, imap_client_who(&j->w[0].src), mb, 0,
		          "%s; mailbox refused (cut at the NUL it would be mailbox \"%s\", which "
		          "the source also has)",
		          why, same->display);
	else
		job_error(j, imap_client_who(&j->w[0].src), mb, 0, "%s; mailbox refused", why);
	j->sum->mailboxes_failed++;
	return 1;
}

/* The source is listed: decide which mailboxes have work. */
void plan(struct job *j)
{
	struct mf_error e;
	size_t kept = 0, nprobe = 0;

	/* Mailboxes the state knows and the source no longer lists (all of
	 * its LIST, before --folder/--exclude: an excluded one is not gone). */
	if (state_mbox_each(j->st, j->jobid, vanished_collect, j, &e) < 0) {
		job_error(j, NULL, NULL, 0, "%s", e.msg);
		j->fatal = 1;
		job_maybe_finish(j);
		return;
	}
	for (size_t i = 0; i < j->nmb; i++)
		mbox_ns_display(j, &j->mb[i]);
	for (size_t i = 0; i < j->nmb; i++)
		if (!j->mb[i].noselect && folder_selected(j, j->mb[i].display))
			j->mb[i].failed = mbox_refuse(j, &j->mb[i]);
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];
		int shared = !j->o->include_shared && mbox_in_shared(j, mb);

		j->sum->mailboxes_shared += (unsigned)(shared && !mb->noselect);
		if (mb->noselect || mb->failed || shared || !folder_selected(j, mb->display)) {
			free(mb->name);
			free(mb->display);
			continue;
		}
		j->mb[kept++] = *mb;
	}
	j->nmb = kept;
	if (j->sum->mailboxes_shared) {
		/* RFC 2342: not the account's own mail; one line, not one each */
		progress_clear(j);
		mf_log(MF_LOG_INFO, "%s: %u mailboxes in shared or other users' namespaces "
		                    "skipped (--include-shared copies them)",
		       imap_client_who(&j->w[0].src), j->sum->mailboxes_shared);
	}
	nx_reset(&j->mbx);
	special_guess(j);
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];
		struct state_mbox rec;
		int created, known;

		if (scope_mbox_id(j, mb, &created, &e) < 0) {
			job_error(j, NULL, mb, 0, "%s", e.msg);
			if (e.code == -ENAMETOOLONG) {
				/* That mailbox only: the others go on. */
				mb->failed = 1;
				mb->work = 0;
				j->sum->mailboxes_failed++;
				continue;
			}
			j->fatal = 1;
			job_maybe_finish(j);
			return;
		}
		mb->work = 1;
		known = !created && state_mbox_get(j->st, j->jobid, mb->mbid, &rec, &e) == 0 &&
			rec.uidvalidity;
		/* New here while known ones vanished: one of them, renamed? */
		mb->probe = !known && j->nvan && (!mb->have_status || mb->st_messages) &&
		            !j->o->src_archive; /* an archive run's names are fixed */
		nprobe += (size_t)mb->probe;
		if (known && mb->have_status &&
		    rec.uidvalidity == mb->st_uidvalidity && rec.uidnext == mb->st_uidnext &&
		    rec.synced_at && rec.last_uid + 1 >= mb->st_uidnext && !rec.intents) {
			/* Nothing new since the last complete sync. Flag changes and
			 * expunges show in HIGHESTMODSEQ; without CONDSTORE they
			 * cannot be seen from STATUS, so the mailbox is scanned. */
			if (!j->o->sync_flags && !j->o->delete_)
				mb->work = 0;
			else if (mb->st_highestmodseq && rec.highestmodseq == mb->st_highestmodseq)
				mb->work = 0;
			mb->light = 1;
		}
		/* Copied last under another filter (--since ... --search): what
		 * the new one selects below the position is looked for. */
		if (!mb->work && selective_rescan(j, mb->mbid))
			mb->work = 1;
		j->state_dirty |= created;
	}
	if (nprobe) {
		probe_start(j);
		return;
	}
	plan_finish(j);
}

void plan_finish(struct job *j)
{
	size_t nwork = 0;

	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];

		if (j->o->dry_run && mb->renamed_from) {
			/* Its state is not moved in a dry run: it would look new. */
			progress_clear(j);
			mf_print("mailferry: dry-run: mailbox \"%s\": renamed on the source "
			         "from \"%s\"; its destination folder would be renamed too, "
			         "then synced incrementally",
			         mb->display, j->van[mb->renamed_from - 1].rec.name);
			mb->work = 0;
		}
		nwork += (size_t)mb->work;
	}
	split_plan(j);
	if (j->nmb)
		qsort(j->mb, j->nmb, sizeof(*j->mb), mbox_cmp_size);
	nx_reset(&j->mbx);
	j->listed = 1;
	if (j->o->json) {
		job_event(j, "plan");
		fprintf(j->o->out, ",\"mailboxes\":%zu,\"with_changes\":%zu}\n",
			j->nmb, nwork);
		job_event_end(j);
	}
	j->sum->mailboxes = (unsigned)j->nmb;
	j->sum->skipped = 0;
	for (size_t i = nwork; i < j->nmb; i++)
		j->sum->skipped += j->mb[i].st_messages;
	if (j->o->dry_run)
		for (size_t i = 0; i < j->nmb; i++)
			if (!j->mb[i].work && !j->mb[i].renamed_from) {
				progress_clear(j);
				mf_print("mailferry: dry-run: mailbox \"%s\": unchanged",
				         j->mb[i].display);
			}
	if (!nwork) {
		/* nothing for the destination (open since the start): it is
		 * let go with the source */
		j->next_mb = j->nmb;
		j->dst_prepared = 1;
		job_maybe_finish(j);
		return;
	}
	/* Mailboxes without work sort last and are never handed out. */
	workers_spawn(j);
	dst_prepare(&j->w[0]);
}

/* What a LIST sent behind a pipelined login assumes the server offers:
 * the greeting rarely lists it (Dovecot's does not), the login's answer
 * does. */
#define LIST_SPEC_CAPS                                                                         \
	(IMAP_CAP_NAMESPACE | IMAP_CAP_LIST_STATUS | IMAP_CAP_LIST_EXTENDED |                  \
	 IMAP_CAP_SPECIAL_USE | IMAP_CAP_CONDSTORE)

/* The speculative LIST assumed more than the login's answer offers: what
 * it brought is dropped (a server may answer commands it does not
 * advertise) and the source is listed again by its real capabilities.
 * One round trip more, on such servers only. */
static int list_again(struct job *j, struct worker *w)
{
	if (!(j->list_caps & ~w->src.caps & LIST_SPEC_CAPS))
		return 0;
	for (size_t i = 0; i < j->nmb; i++) {
		free(j->mb[i].name);
		free(j->mb[i].display);
	}
	j->nmb = 0;
	nx_reset(&j->mbx);
	ns_forget(j, 0);
	src_list(w);
	return 1;
}

static void list_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;

	(void)cmd;
	if (list_again(j, w) || list_failed(j, c, r))
		return;
	plan(j);
}

/* A LIST refused (either side's): the job cannot go on. 1 if so. */
int list_failed(struct job *j, struct imap_client *c, const struct imap_resp *r)
{
	if (r->status == IMAP_ST_OK)
		return 0;
	job_error(j, imap_client_who(c), NULL, 0, "LIST failed: %.*s", (int)r->text_len, r->text);
	j->fatal = 1;
	job_maybe_finish(j);
	return 1;
}

static void status_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;

	(void)r; /* a failed STATUS leaves have_status 0: the mailbox is examined */
	if (--j->creates_pending == 0) {
		free(j->create_cmd);
		j->create_cmd = NULL;
		(void)cmd;
		plan(j);
	}
}

static void list_plain_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	size_t n = 0;

	(void)cmd;
	if (r->status != IMAP_ST_OK || list_again(j, w)) {
		list_done(c, cmd, r);
		return;
	}
	for (size_t i = 0; i < j->nmb; i++)
		n += !j->mb[i].noselect;
	if (!n) {
		plan(j);
		return;
	}
	/* STATUS each selectable mailbox, all pipelined. */
	j->create_cmd = calloc(n, sizeof(*j->create_cmd));
	if (!j->create_cmd) {
		j->fatal = 1;
		job_maybe_finish(j);
		return;
	}
	j->creates_pending = (unsigned)n;
	n = 0;
	for (size_t i = 0; i < j->nmb; i++) {
		if (j->mb[i].noselect)
			continue;
		imap_cmd_begin(c, &j->create_cmd[n++], status_done, NULL);
		imap_put(c, "STATUS ");
		imap_put_astring(c, j->mb[i].name, j->mb[i].len);
		imap_putf(c, " (UIDVALIDITY UIDNEXT MESSAGES%s)",
			  (c->caps & IMAP_CAP_CONDSTORE) ? " HIGHESTMODSEQ" : "");
		imap_cmd_end(c);
	}
}

/* A refused NAMESPACE leaves no prefix: names are taken as they are (on
 * either side: prepare.c asks the destination with it too). */
void ns_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	(void)c;
	(void)cmd;
	(void)r;
}

/* What a side's LIST (dst 0: the source's) goes by: its capabilities,
 * or behind a pipelined login (c->login_pending: the greeting's) those
 * assumed, noted in *noted to be checked when it is answered. The
 * personal namespace prefix (RFC 2342) is asked for first, pipelined: its
 * answer is in before the LIST's, no round trip is added. */
uint32_t list_begin(struct job *j, struct imap_client *c, uint32_t assumed, uint32_t *noted,
                    int dst)
{
	uint32_t caps = c->login_pending ? assumed : c->caps;

	*noted = caps & assumed;
	if (caps & IMAP_CAP_NAMESPACE) {
		imap_cmd_begin(c, &j->ns_cmd[dst], ns_done, NULL);
		imap_put(c, "NAMESPACE");
		imap_cmd_end(c);
	}
	return caps;
}

/* A side is listed again: what its NAMESPACE said is forgotten. */
void ns_forget(struct job *j, int dst)
{
	if (dst) {
		j->dst_ns_len = 0;
		j->dst_ns[0] = '\0';
		j->dst_sep = 0;
	} else {
		j->src_ns_len = 0;
		j->src_ns[0] = '\0';
		j->nshared_ns = 0;
	}
}

void src_list(struct worker *w)
{
	struct job *j = w->job;
	struct imap_client *c = &w->src;
	/* behind a pipelined login: as the servers that offer the most
	 * answer it, checked by list_again */
	uint32_t caps = list_begin(j, c, LIST_SPEC_CAPS, &j->list_caps, 0);

	if ((caps & IMAP_CAP_LIST_STATUS) && (caps & IMAP_CAP_LIST_EXTENDED)) {
		imap_cmd_begin(c, &j->list_cmd, list_done, NULL);
		imap_putf(c, "LIST \"\" \"*\" RETURN (SUBSCRIBED %sSTATUS (UIDVALIDITY UIDNEXT MESSAGES%s))",
			  (caps & IMAP_CAP_SPECIAL_USE) ? "SPECIAL-USE " : "",
			  (caps & IMAP_CAP_CONDSTORE) ? " HIGHESTMODSEQ" : "");
	} else {
		imap_cmd_begin(c, &j->list_cmd, list_plain_done, NULL);
		imap_put(c, "LIST \"\" \"*\"");
	}
	imap_cmd_end(c);
}
