/*
 * changes — flag and expunge propagation (--sync-flags, --delete): what
 * changed on the source since the last pass, by QRESYNC, CONDSTORE or a
 * UID/FLAGS scan, written to the destination with UID STORE / UID EXPUNGE.
 *
 * Not for: new messages (copy).
 */
#include "engine/sync/job_int.h"

static void seen_mark(struct worker *w, uint32_t uid);
static void seen_mark_cb(void *ctx, uint32_t uid);
static int seen_has(const struct worker *w, uint32_t uid);
static void gone_push(struct worker *w, uint32_t uid);
static void vanished_note(void *ctx, uint32_t uid);
static int diff_untagged(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	(void)cmd;
	return changes_untagged(c->ud, r);
}

/* The CHANGEDSINCE (or scan) FETCH and the UID SEARCH share it: Dovecot
 * answers them in parallel, and the data tells itself apart (FETCH,
 * SEARCH, ESEARCH). */
static const struct imap_consumer diff_consumer = {.untagged = diff_untagged};

static int gone_collect(void *ctx, uint32_t uid, const struct state_msg *m);
static void diff_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static int chg_cmp(const void *a, const void *b, void *pool);
static void apply_release(struct worker *w);
static void store_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static void expunge_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static void select_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static size_t put_gone_uids(struct worker *w, struct imap_client *d);
static void deleted_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);

/* ---- worker: incremental flags and expunges (DESIGN §5) ------------------------------ */

/* Flag lists equal as sets (order and case of names do not matter). */
int flags_equal(const char *a, size_t al, const char *b, size_t bl)
{
	size_t na = 0, nb = 0;

	for (size_t i = 0; i < al;) {
		size_t k = i;
		int found = 0;

		while (k < al && a[k] != ' ')
			k++;
		for (size_t x = 0; x < bl && !found;) {
			size_t y = x;

			while (y < bl && b[y] != ' ')
				y++;
			found = (y - x == k - i) && !strncasecmp(a + i, b + x, k - i);
			x = y + 1;
		}
		if (!found)
			return 0;
		na++;
		i = k + 1;
	}
	for (size_t x = 0; x < bl;) {
		size_t y = x;

		while (y < bl && b[y] != ' ')
			y++;
		if (y > x)
			nb++;
		x = y + 1;
	}
	return na == nb;
}

static void seen_mark(struct worker *w, uint32_t uid)
{
	if (uid && uid <= w->seen_n)
		w->seen[(uid - 1) >> 3] |= (uint8_t)(1u << ((uid - 1) & 7));
}

static void seen_mark_cb(void *ctx, uint32_t uid)
{
	seen_mark(ctx, uid);
}

static int seen_has(const struct worker *w, uint32_t uid)
{
	return uid && uid <= w->seen_n && (w->seen[(uid - 1) >> 3] & (1u << ((uid - 1) & 7)));
}

/* What one reading of a mailbox's changes gathered, forgotten (a new
 * mailbox, or the same one read again by the next method). */
void changes_reset(struct worker *w)
{
	w->nchg = w->ngone = w->cpool_len = 0;
	w->chg_lost = w->chg_unread = 0;
	w->unknown_vanished = 0;
	w->fallback_why = NULL;
	w->max_named_uid = 0;
}

static void gone_push(struct worker *w, uint32_t uid)
{
	if (grow((void **)&w->gone, &w->cgone, w->ngone + 1, sizeof(*w->gone)) == 0)
		w->gone[w->ngone++] = uid;
}

/* One flag change to apply: uid now has flags fl (n bytes); 0, or -ENOMEM
 * with the change counted as lost. */
int chg_push(struct worker *w, uint32_t uid, uint32_t dst_uid, const char *fl, size_t n)
{
	if (test_fail(w->job, "change_note") ||
	    grow((void **)&w->chg, &w->cchg, w->nchg + 1, sizeof(*w->chg)) < 0 ||
	    grow((void **)&w->cpool, &w->cpool_cap, w->cpool_len + n + 1, 1) < 0) {
		w->chg_lost++;
		w->chg_unread++;
		return -ENOMEM;
	}
	w->chg[w->nchg++] = (struct chg){uid, dst_uid, w->cpool_len, (uint16_t)n};
	memcpy(w->cpool + w->cpool_len, fl, n);
	w->cpool_len += n;
	return 0;
}

/* A FETCH with FLAGS for a known message: record it if the flags differ
 * from what the state says was copied. */
void change_note(struct worker *w, uint32_t uid, const struct imap_node *flags)
{
	struct job *j = w->job;
	struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, uid};
	struct state_msg m;
	struct mf_error e;
	const struct imap_node *bad;
	char fl[STATE_FLAGS_MAX];
	size_t n;
	int rc;

	if (!uid || uid > w->rec.last_uid)
		return; /* new messages are copied, not updated */
	seen_mark(w, uid);
	if (!flags)
		return;
	if ((rc = state_msg_get(j->st, &k, &m, &e)) < 0) {
		if (rc != -ENOENT) { /* not copied (refused): nothing to update */
			w->chg_lost++;
			w->chg_unread++;
		}
		return;
	}
	n = flags_string(flags, fl, sizeof(fl), &bad);
	if (bad) {
		job_error(j, imap_client_who(&w->src), w->mb, uid,
		          "flag \"%.*s\" is neither a system flag nor an atom; flag change not "
		          "applied",
		          (int)(bad->len > 64 ? 64 : bad->len), bad->s ? bad->s : "");
		return;
	}
	if (flags_equal(fl, n, m.flags, strlen(m.flags)))
		return;
	if (m.status != STATE_MSG_DONE) {
		/* Not confirmed yet (its keywords wait, kwdefer.h, or its
		 * copy is being settled): HIGHESTMODSEQ stays, and the next
		 * run reads the change again, once the record is done. */
		w->chg_lost++;
		return;
	}
	chg_push(w, uid, m.dst_uid, fl, n);
}

static void vanished_note(void *ctx, uint32_t uid)
{
	struct worker *w = ctx;
	struct job *j = w->job;
	struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, uid};
	struct state_msg m;
	struct mf_error e;

	if (uid > w->max_named_uid)
		w->max_named_uid = uid;
	if (uid > w->rec.last_uid)
		return;
	if (state_msg_get(j->st, &k, &m, &e) < 0) {
		w->unknown_vanished++;
		return;
	}
	gone_push(w, uid);
}

/* Untagged data while the changes are read (EXAMINE with QRESYNC, the
 * CHANGEDSINCE or scan FETCH, the UID SEARCH). */
int changes_untagged(struct worker *w, const struct imap_resp *r)
{
	const struct imap_node *a = r->first, *it;
	uint32_t uid = 0, n;

	if (!a || !a->next)
		return 0;
	if (imap_node_is(a, "VANISHED") && w->method == M_QRESYNC) {
		const struct imap_node *set = a->next;

		if (set->type == IMAP_NODE_LIST && set->next)
			set = set->next; /* (EARLIER) */
		if (set->type != IMAP_NODE_ATOM ||
		    uidset_each(set->s, set->len, vanished_note, w) < 0)
			w->fallback_why = "VANISHED did not parse";
		return 0;
	}
	if (imap_node_is(a, "SEARCH")) {
		for (it = a->next; it; it = it->next)
			if (imap_node_u32(it, &n) == 0)
				seen_mark(w, n);
		return 0;
	}
	if (imap_node_is(a, "ESEARCH")) {
		for (it = a->next; it; it = it->next)
			if (imap_node_is(it, "ALL") && it->next)
				uidset_each(it->next->s, it->next->len, seen_mark_cb, w);
		return 0;
	}
	if (imap_node_is(a->next, "FETCH") && a->next->next &&
	    a->next->next->type == IMAP_NODE_LIST) {
		const struct imap_node *flags = NULL;

		for (it = a->next->next->child; it && it->next; it = it->next->next) {
			if (imap_node_is(it, "UID"))
				imap_node_u32(it->next, &uid);
			else if (imap_node_is(it, "FLAGS"))
				flags = it->next;
		}
		if (w->method == M_QRESYNC && uid > w->max_named_uid)
			w->max_named_uid = uid;
		change_note(w, uid, flags);
	}
	return 0;
}

static int gone_collect(void *ctx, uint32_t uid, const struct state_msg *m)
{
	struct worker *w = ctx;

	if (uid > w->rec.last_uid)
		return 1;
	if (m->status == STATE_MSG_DONE && !seen_has(w, uid))
		gone_push(w, uid);
	return 0;
}

static void diff_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct mf_error e;

	if (r->status != IMAP_ST_OK && w->method == M_CONDSTORE && !w->diff_refused &&
	    !c->closed) {
		/* A server that claims CONDSTORE but refuses CHANGEDSINCE (or the
		 * SEARCH): read the mailbox the plain way instead. */
		mf_log(MF_LOG_WARN, "%s mailbox \"%s\": reading changes refused (%.*s); "
				    "falling back to a full UID/FLAGS scan",
		       imap_client_who(c), w->mb->display, (int)r->text_len, r->text);
		w->diff_refused = 1;
	} else if (r->status != IMAP_ST_OK && !w->diff_refused) {
		/* Nothing is deleted on the strength of an answer we did not get. */
		job_error(j, imap_client_who(c), w->mb, 0, "reading changes failed: %.*s",
			  (int)r->text_len, r->text);
		w->mb->failed = 1;
	}
	if (cmd == &w->diff_cmd[0] && w->diff_cmd[1].done == diff_done && w->diff_cmd[1].tag > cmd->tag)
		return; /* the second command's answer follows */
	if (w->mb->failed) {
		mailbox_finish(w);
		return;
	}
	if (w->diff_refused && w->method == M_CONDSTORE) {
		w->method = M_SCAN;
		changes_reset(w);
		changes_start(w);
		return;
	}
	if (w->method == M_SCAN || (w->method == M_CONDSTORE && j->o->delete_)) {
		if (state_msg_each(j->st, j->jobid, w->mb->mbid, w->uidvalidity, 1, gone_collect, w,
				   &e) < 0) {
			mailbox_fail(w, NULL, 0, "%s", e.msg);
			return;
		}
	}
	changes_apply(w);
}

/* Reads what changed since the last pass, by the best method the source
 * offers: QRESYNC already answered inside EXAMINE; CONDSTORE asks
 * CHANGEDSINCE plus a UID SEARCH for expunges; otherwise a UID/FLAGS scan. */
void changes_start(struct worker *w)
{
	struct job *j = w->job;
	uint32_t last = w->rec.last_uid;

	if (w->method == M_NEW_ONLY || !last) {
		fetch_start(w);
		return;
	}
	if (w->method == M_QRESYNC) {
		/* An answer we cannot trust deletes nothing: log it once, then read
		 * the mailbox by the next method. A modseq that went backwards
		 * makes CHANGEDSINCE worthless too, so that one goes to a scan. */
		const char *why = w->fallback_why;
		int back = w->highestmodseq < w->rec.highestmodseq;

		if (!why && back)
			why = "HIGHESTMODSEQ went backwards";
		if (!why && w->uidnext && w->max_named_uid >= w->uidnext)
			why = "it names UIDs at or above UIDNEXT";
		if (why) {
			w->method = w->src.enabled_condstore && !back ? M_CONDSTORE : M_SCAN;
			mf_log(MF_LOG_WARN, "%s mailbox \"%s\": QRESYNC answer not usable (%s); "
					    "reading changes by %s instead",
			       imap_client_who(&w->src), w->mb->display, why,
			       w->method == M_SCAN ? "a full UID/FLAGS scan" : "CONDSTORE");
			changes_reset(w);
		}
	}
	if (w->method == M_CONDSTORE && w->highestmodseq < w->rec.highestmodseq) {
		mf_log(MF_LOG_WARN, "%s mailbox \"%s\": HIGHESTMODSEQ went backwards; full scan",
		       imap_client_who(&w->src), w->mb->display);
		w->method = M_SCAN;
	}
	if (w->method == M_QRESYNC) {
		changes_apply(w);
		return;
	}
	w->seen_n = last;
	if (grow((void **)&w->seen, &w->seen_cap, last / 8 + 1, 1) < 0) {
		mailbox_fail(w, NULL, 0, "out of memory");
		return;
	}
	memset(w->seen, 0, last / 8 + 1);
	w->phase = W_DIFF;
	memset(w->diff_cmd, 0, sizeof(w->diff_cmd));
	if (w->method == M_CONDSTORE) {
		if (w->highestmodseq != w->rec.highestmodseq || !w->rec.highestmodseq) {
			imap_cmd_begin_consumer(&w->src, &w->diff_cmd[0], diff_done, NULL, &diff_consumer);
			imap_putf(&w->src, "UID FETCH 1:%u (UID FLAGS) (CHANGEDSINCE %llu)", last,
				  (unsigned long long)w->rec.highestmodseq);
			imap_cmd_end(&w->src);
		}
		if (j->o->delete_) {
			imap_cmd_begin_consumer(&w->src, &w->diff_cmd[1], diff_done, NULL, &diff_consumer);
			if (w->src.caps & IMAP_CAP_ESEARCH)
				imap_putf(&w->src, "UID SEARCH RETURN (ALL) UID 1:%u", last);
			else
				imap_putf(&w->src, "UID SEARCH UID 1:%u", last);
			imap_cmd_end(&w->src);
		}
		if (!w->diff_cmd[0].done && !w->diff_cmd[1].done)
			changes_apply(w);
		return;
	}
	imap_cmd_begin_consumer(&w->src, &w->diff_cmd[0], diff_done, NULL, &diff_consumer);
	imap_putf(&w->src, "UID FETCH 1:%u (UID FLAGS)", last);
	imap_cmd_end(&w->src);
}

static int chg_cmp(const void *a, const void *b, void *pool)
{
	const struct chg *x = a, *y = b;
	int c;

	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	c = memcmp((char *)pool + x->off, (char *)pool + y->off, x->len);
	if (c)
		return c;
	return x->dst_uid < y->dst_uid ? -1 : x->dst_uid > y->dst_uid;
}

static void apply_release(struct worker *w)
{
	if (--w->apply_pending)
		return;
	/* Flags stored and expunges done are recorded, committed with the
	 * next tick: redoing them after a crash changes nothing. */
	fetch_start(w);
}

static void store_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	const struct apply_op *op = cmd->ud;
	size_t i0 = op->first, i1 = op->end;
	struct mf_error e;

	if (r->status != IMAP_ST_OK) {
		job_error(j, imap_client_who(c), w->mb, w->chg[i0].uid,
			  "flag update refused: %.*s", (int)r->text_len, r->text);
		w->mb->nfailed += i1 - i0;
		j->sum->failed += i1 - i0;
		w->chg_lost += i1 - i0; /* read again next run */
	} else {
		for (size_t i = i0; i < i1; i++) {
			struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, w->chg[i].uid};
			struct state_msg m;

			if (state_msg_get(j->st, &k, &m, &e) < 0) {
				job_error(j, NULL, w->mb, w->chg[i].uid, "%s", e.msg);
				w->chg_lost++;
				continue;
			}
			memcpy(m.flags, w->cpool + w->chg[i].off, w->chg[i].len);
			m.flags[w->chg[i].len] = '\0';
			if (scope_msg_put(j, &k, &m, &e) < 0) {
				job_error(j, NULL, w->mb, w->chg[i].uid, "%s", e.msg);
				w->chg_lost++;
				continue;
			}
			j->sum->flags_synced++;
		}
		j->state_dirty = 1;
	}
	apply_release(w);
}

static void expunge_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct mf_error e;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		job_error(j, imap_client_who(c), w->mb, 0, "expunge refused: %.*s", (int)r->text_len,
			  r->text);
		w->mb->nfailed++;
		j->sum->failed++;
	} else if (cmd->ud) {
		for (size_t i = 0; i < w->ngone; i++) {
			struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, w->gone[i]};

			if (scope_msg_del(j, &k, &e) < 0)
				job_error(j, NULL, w->mb, w->gone[i], "%s", e.msg);
			j->sum->expunged++;
		}
		j->state_dirty = 1;
	}
	apply_release(w);
}

static void select_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		job_error(w->job, imap_client_who(c), w->mb, 0, "cannot select the destination "
			  "mailbox \"%s\": %.*s", w->mb->dst_name, (int)r->text_len, r->text);
		w->mb->failed = 1;
	}
	apply_release(w);
}

/* Writes the destination UIDs of the expunged messages; returns how many
 * had none recorded. */
static size_t put_gone_uids(struct worker *w, struct imap_client *d)
{
	struct job *j = w->job;
	size_t nomap = 0;
	int first = 1;

	for (size_t i = 0; i < w->ngone; i++) {
		struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, w->gone[i]};
		struct state_msg m;
		struct mf_error e;

		if (state_msg_get(j->st, &k, &m, &e) == 0 && m.dst_uid) {
			imap_putf(d, "%s%u", first ? "" : ",", m.dst_uid);
			first = 0;
		} else {
			nomap++;
		}
	}
	if (first)
		imap_put(d, "0");
	return nomap;
}

/* The \Deleted marks are stored: only now may UID EXPUNGE go. Pipelined
 * behind the STORE it could run first: Dovecot executes UID commands that
 * look independent in parallel (RFC 3501 §5.5 makes that the client's
 * problem). */
static void deleted_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	if (r->status != IMAP_ST_OK) {
		expunge_done(c, cmd, r);
		return;
	}
	if (c->caps & IMAP_CAP_UIDPLUS) {
		imap_cmd_begin(c, cmd, expunge_done, (void *)1);
		imap_put(c, "UID EXPUNGE ");
		put_gone_uids(w, c);
		imap_cmd_end(c);
		return;
	}
	/* A plain EXPUNGE would also remove messages someone else marked
	 * \Deleted: leave ours marked and say so. */
	mf_log(MF_LOG_WARN, "%s mailbox \"%s\": no UIDPLUS; %zu messages marked \\Deleted but "
			    "not expunged",
	       imap_client_who(c), w->mb->display, w->ngone);
	cmd->ud = (void *)1;
	expunge_done(c, cmd, r);
}

struct imap_cmd *apply_cmd(struct worker *w)
{
	size_t need = w->apply_pending + 1;

	/* All apply commands are sent before the first answer is read, so
	 * the array is sized up front by changes_apply. */
	return need <= w->apply_cap ? &w->apply_cmd[w->apply_pending++].cmd : NULL;
}

/* Writes the changes to the destination: flags with UID STORE (grouped by
 * identical flag sets), expunges with UID EXPUNGE (UIDPLUS), all pipelined
 * after one SELECT. */
void changes_apply(struct worker *w)
{
	struct job *j = w->job;
	struct imap_client *d = &w->dst;
	size_t nflag = j->o->sync_flags ? w->nchg : 0, ngone = j->o->delete_ ? w->ngone : 0;
	size_t ncmd = 2 + nflag + (ngone ? 1 : 0), nomap = 0;
	struct imap_cmd *cmd;
	struct apply_op *op;

	if (w->unknown_vanished)
		mf_log(MF_LOG_INFO, "%s mailbox \"%s\": %llu vanished UIDs were never copied; ignored",
		       imap_client_who(&w->src), w->mb->display,
		       (unsigned long long)w->unknown_vanished);
	if (!nflag && !ngone) {
		fetch_start(w);
		return;
	}
	if (sink_can(&w->sink, SINK_COUNTS)) { /* --dry-run: counted, not written */
		progress_clear(j);
		mf_print("mailferry: dry-run: mailbox \"%s\": %zu flag changes, %zu expunges",
		         w->mb->display, nflag, ngone);
		fetch_start(w);
		return;
	}
	if (j->o->archive) {
		sink_archive_apply(w, nflag, ngone); /* no destination to write to */
		return;
	}
	if (grow((void **)&w->apply_cmd, &w->apply_cap, ncmd, sizeof(*w->apply_cmd)) < 0) {
		mailbox_fail(w, NULL, 0, "out of memory");
		return;
	}
	w->phase = W_APPLY;
	w->apply_pending = 1; /* held until everything is sent */
	cmd = apply_cmd(w);
	imap_cmd_begin(d, cmd, select_done, NULL);
	imap_put(d, "SELECT ");
	imap_put_astring(d, w->mb->dst_name, strlen(w->mb->dst_name));
	imap_cmd_end(d);
	if (nflag)
		qsort_r(w->chg, w->nchg, sizeof(*w->chg), chg_cmp, w->cpool);
	for (size_t i = 0; i < nflag;) {
		size_t k = i, n = 0;

		while (k < nflag && w->chg[k].len == w->chg[i].len &&
		       !memcmp(w->cpool + w->chg[k].off, w->cpool + w->chg[i].off, w->chg[i].len) &&
		       k - i < 500)
			k++;
		for (size_t x = i; x < k; x++)
			n += w->chg[x].dst_uid != 0;
		if (!n) {
			nomap += k - i;
			i = k;
			continue;
		}
		cmd = apply_cmd(w);
		op = (struct apply_op *)cmd; /* its first member */
		op->first = i;
		op->end = k;
		imap_cmd_begin(d, cmd, store_done, op);
		imap_put(d, "UID STORE ");
		for (size_t x = i, first = 1; x < k; x++)
			if (w->chg[x].dst_uid) {
				imap_putf(d, "%s%u", first ? "" : ",", w->chg[x].dst_uid);
				first = 0;
			}
		imap_putf(d, " FLAGS.SILENT (%.*s)", (int)w->chg[i].len, w->cpool + w->chg[i].off);
		imap_cmd_end(d);
		i = k;
	}
	if (ngone) {
		cmd = apply_cmd(w);
		imap_cmd_begin(d, cmd, deleted_done, NULL);
		imap_put(d, "UID STORE ");
		nomap += put_gone_uids(w, d);
		imap_put(d, " +FLAGS.SILENT (\\Deleted)");
		imap_cmd_end(d);
	}
	if (nomap)
		mf_log(MF_LOG_WARN, "%s mailbox \"%s\": %zu changes not applied: destination UID "
				    "unknown (no UIDPLUS when copied)",
		       imap_client_who(d), w->mb->display, nomap);
	apply_release(w);
}
