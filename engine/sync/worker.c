/*
 * worker — one connection pair (source, destination) taking mailboxes one
 * after another: open it, settle, read changes, copy new mail, record the
 * pass. Worker 0 is also the control pair that plans and prepares.
 *
 * The destination side is the worker's sink (sink.h): opened, closed and
 * failed through its ops, so a failure on either side takes the same
 * path (worker_side_failed: reconnect the pair, fail the mailbox, or end
 * the job).
 *
 * Not for: the data path (copy), the plan (plan).
 */
#include "engine/sync/job_int.h"
#include "engine/sync/source_pop3_int.h"
#include "protocols/throttle.h"

static void examine_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
static int dst_busy(const struct job *j, const struct mbox *mb);
static void examine_send(struct worker *w);
static int worker_open_dst(struct worker *w, struct mf_error *err);
static void workers_spawn_rest(struct job *j);
static void src_logout(struct worker *w);
static int err_transient(const struct mf_error *err);
static const char *err_reason(const char *who, const struct mf_error *err);
static int reconnect_wanted(const struct worker *w, int login, const struct mf_error *err);
static void worker_reconnect(struct worker *w, int dst_side, const char *who,
                             const struct mf_error *err);
static void worker_reopen(struct loop *l, struct loop_timer *t);
static void worker_open_failed(struct worker *w, int dst_failed, const struct mf_error *e);

static const char *const method_names[] = {"new-only", "qresync", "condstore", "scan"};

void mailbox_finish(struct worker *w)
{
	struct job *j = w->job;
	struct mbox *mb = w->mb;
	struct state_mbox rec;
	struct mf_error e;
	int lost = j->o->sync_flags && w->chg_lost;

	if (kwdefer_flush(w))
		return; /* the keywords first: here again once they are stored */
	if (w->part && split_finish(w))
		return; /* other parts of mb still run, or this one reads it again */
	if (sink_can(&w->sink, SINK_COUNTS) && !mb->failed && w->phase == W_FETCH)
		sink_count_report(w); /* a dry run's pass: what it counted */
	/* after the split's end: only the last part's session DELEs, once no
	 * other session reads the maildrop (pop3_delete.c) */
	if (w->p3 && pop3src_before_finish(w))
		return; /* --pop3-delete: DELE and QUIT first, then here again */

	if (lost && w->chg_unread && !mb->failed && !j->o->dry_run) {
		job_error(j, imap_client_who(&w->src), mb, 0,
		          "%zu flag changes could not be noted (out of memory or "
		          "a state error); they are read again next run",
		          w->chg_unread);
		mb->nfailed += w->chg_unread;
		j->sum->failed += w->chg_unread;
	}
	if (state_mbox_get(j->st, j->jobid, mb->mbid, &rec, &e) < 0)
		memset(&rec, 0, sizeof(rec));
	if (!mb->failed) { /* (a dry run's scope writes nothing) */
		snprintf(rec.name, sizeof(rec.name), "%s", mb->name);
		snprintf(rec.dst_name, sizeof(rec.dst_name), "%s", mb->dst_name);
		/* HIGHESTMODSEQ in the record means "flags in the state are
		 * current up to here": it moves only when flags were read. */
		if (lost) {
			/* A flag change was not applied: the next run reads it
			 * again (from the old HIGHESTMODSEQ, or by a scan). */
			if (rec.uidvalidity != w->uidvalidity)
				rec.highestmodseq = 0;
		} else if (rec.uidvalidity != w->uidvalidity || !rec.last_uid ||
		           w->method != M_NEW_ONLY) {
			rec.highestmodseq = w->highestmodseq;
		}
		rec.uidvalidity = w->uidvalidity;
		rec.uidnext = w->uidnext;
		/* Messages the destination refused are tried again next run. */
		rec.last_uid = w->mb_failed_min_uid ? (uint32_t)w->mb_failed_min_uid - 1
						     : (w->uidnext ? w->uidnext - 1 : 0);
		rec.synced_at =
		    w->mb_failed_min_uid || mb->nfailed || lost ? 0 : (uint64_t)time(NULL);
		rec.messages = w->src.exists;
		/* every APPEND of this pass was answered, and every deferred
		 * keyword stored unless kw_left says otherwise (kwdefer.h) */
		rec.intents = mb->kw_left ? 1 : 0;
		if (scope_mbox_put(j, mb->mbid, &rec, &e) < 0 ||
		    selective_done(w, &e) < 0) {
			job_error(j, NULL, mb, 0, "%s", e.msg);
			j->fatal = 1;
		}
		j->state_dirty = 1;
	} else {
		j->sum->mailboxes_failed++;
	}
	/* Not committed here: nothing below needs it durable (an unrecorded
	 * end of a pass is redone next time, idempotently; copies are safe by
	 * their intents). The tick commits within a second, the end at once;
	 * an fsync per mailbox would stall the loop. */
	if (j->o->json) {
		job_event(j, "mailbox");
		fprintf(j->o->out, ",\"name\":");
		mf_json_str(j->o->out, mb->display, strlen(mb->display));
		fprintf(j->o->out, ",\"copied\":%llu,\"skipped\":%llu,\"failed\":%llu,\"bytes\":%llu,"
				   "\"method\":\"%s\",\"flag_changes\":%zu,\"expunges\":%zu,\"ok\":%s}\n",
			(unsigned long long)mb->copied, (unsigned long long)mb->skipped,
			(unsigned long long)mb->nfailed, (unsigned long long)mb->bytes,
			method_names[w->method], j->o->sync_flags ? w->nchg : 0,
			j->o->delete_ ? w->ngone : 0, mb->failed || mb->nfailed ? "false" : "true");
		job_event_end(j);
	}
	w->mb = NULL;
	w->phase = W_IDLE;
	worker_next(w);
	if (j->o->dedupe)
		dispatch(j); /* a worker may be waiting for this destination folder */
}

static void examine_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct mbox *mb = w->mb;
	struct state_mbox rec;
	struct mf_error e;

	if (r->status != IMAP_ST_OK && w->method == M_QRESYNC && !w->retried_plain && !c->closed) {
		/* Claims QRESYNC but refuses the SELECT parameter: open the
		 * mailbox plainly and read the changes by the next method. */
		mf_log(MF_LOG_WARN, "%s mailbox \"%s\": EXAMINE (QRESYNC ...) refused (%.*s); "
				    "reading changes by %s instead",
		       imap_client_who(c), mb->display, (int)r->text_len, r->text,
		       w->src.enabled_condstore ? "CONDSTORE" : "a full UID/FLAGS scan");
		w->retried_plain = 1;
		w->method = w->src.enabled_condstore ? M_CONDSTORE : M_SCAN;
		changes_reset(w);
		w->uidvalidity = w->uidnext = 0;
		w->highestmodseq = 0;
		examine_send(w);
		return;
	}
	if (r->status != IMAP_ST_OK) {
		mailbox_fail(w, imap_client_who(c), 0, "cannot open mailbox: %.*s", (int)r->text_len,
			     r->text);
		return;
	}
	if (!w->uidvalidity) {
		mailbox_fail(w, imap_client_who(c), 0, "server gave no UIDVALIDITY");
		return;
	}
	if (!w->uidnext && cmd->ud != &w->open_rw && !j->o->dry_run) {
		/* No [UIDNEXT]: Courier-IMAP. Its EXAMINE of a folder never
		 * opened read-write (mail delivered straight into the Maildir)
		 * numbers the messages afresh, under a new UIDVALIDITY, each
		 * session: the next run would find every message again by
		 * content. SELECT makes it keep its UID list (BODY.PEEK[]
		 * leaves \Seen alone); this worker's next mailboxes are opened
		 * so at once. Not in a dry run, which changes nothing on the
		 * source: this is the one place open_rw is set. */
		w->open_rw = 1;
		changes_reset(w);
		w->uidvalidity = w->uidnext = 0;
		w->highestmodseq = 0;
		examine_send(w);
		return;
	}
	w->start_uid = 1;
	if (state_mbox_get(j->st, j->jobid, mb->mbid, &rec, &e) < 0)
		memset(&rec, 0, sizeof(rec));
	if (w->part && split_examined(w, &rec))
		return;
	if (rec.uidvalidity) {
		if (rec.uidvalidity != w->uidvalidity && j->o->dry_run) {
			progress_clear(j);
			mf_print("mailferry: dry-run: mailbox \"%s\": UIDVALIDITY changed from "
			         "%u to %u; its %u messages would be found again by content, "
			         "the rest copied",
			         mb->display, rec.uidvalidity, w->uidvalidity, c->exists);
			mailbox_finish(w);
			return;
		}
		if (rec.uidvalidity != w->uidvalidity) {
			remap_start(w, rec.uidvalidity);
			return;
		}
		w->start_uid = rec.last_uid + 1;
	}
	if (rec.intents && rec.uidvalidity == w->uidvalidity && j->o->dry_run) {
		progress_clear(j);
		mf_print("mailferry: dry-run: mailbox \"%s\": APPENDs of an interrupted run "
		         "would be looked for on the destination first",
		         mb->display);
	} else if (rec.intents && rec.uidvalidity == w->uidvalidity) {
		settle_start(w);
		return;
	}
	changes_start(w);
}




/* Another worker is filling mb's destination folder. */
static int dst_busy(const struct job *j, const struct mbox *mb)
{
	for (unsigned i = 0; i < j->nw; i++)
		if (j->w[i].mb && !strcmp(j->w[i].mb->dst_name, mb->dst_name))
			return 1;
	return 0;
}

void worker_next(struct worker *w)
{
	struct job *j = w->job;
	struct mbox *mb;

	if (w->dead || !w->src_ready || !w->dst_ready || !j->dst_prepared)
		return;
	if (w->reconnecting) {
		w->reconnecting = 0;
		if (w->mb && w->part) {
			split_dropped(w); /* read again by the last part (split.c) */
			return;
		}
		if (w->mb) {
			mailbox_begin(w); /* the mailbox the drop interrupted */
			return;
		}
	}
	if (w->mb)
		return;
	while (j->next_mb < j->nmb && j->mb[j->next_mb].work <= 0)
		j->next_mb++;
	if (j->o->dedupe && !j->fatal && j->next_mb < j->nmb) {
		/* --dedupe: mailboxes merged into one destination folder go one
		 * after the other, so each sees what the other appended. Nobody
		 * holds a pointer to a mailbox not handed out yet: swapping is fine. */
		size_t i = j->next_mb;

		while (i < j->nmb && (j->mb[i].work <= 0 || dst_busy(j, &j->mb[i])))
			i++;
		if (i == j->nmb)
			return; /* all that is left waits for a busy folder: mailbox_finish wakes us */
		if (i != j->next_mb) {
			struct mbox t = j->mb[i];

			j->mb[i] = j->mb[j->next_mb];
			j->mb[j->next_mb] = t;
		}
	}
	if (j->next_mb >= j->nmb || j->fatal) {
		w->phase = W_DONE;
		if (w->p3)
			pop3src_stop(w, 1);
		else if (!w->arc)
			src_logout(w);
		w->sink.ops->close(&w->sink, 1);
		job_maybe_finish(j);
		return;
	}
	mb = &j->mb[j->next_mb];
	split_take(w, mb);
	if (mb->nparts < 2 || mb->parts_given == mb->nparts)
		j->next_mb++;
	w->attempts = 0;
	w->resumed = w->resume_range = 0;
	w->resume_uid = 0;
	mailbox_begin(w);
}

/* Opens w->mb from the start: a new mailbox, or the same one again after
 * a reconnect (the record is read again: intents sent before the drop are
 * settled by examine_done). */
void mailbox_begin(struct worker *w)
{
	struct job *j = w->job;
	struct mbox *mb = w->mb;
	struct mf_error e;

	w->dry_count = 0;
	if (w->p3) {
		pop3src_mailbox_begin(w);
		return;
	}
	if (w->arc) {
		arcsrc_mailbox_begin(w);
		return;
	}
	w->intents_marked = 0;
	kwdefer_reset(w); /* what waits is an intent in the state: settled again */
	w->ntmp = w->tmp_passes = 0;
	w->phase = W_EXAMINE;
	w->list_mode = 0;
	w->filtered = 0;
	w->uidvalidity = w->uidnext = 0;
	w->highestmodseq = 0;
	changes_reset(w);
	w->dd_done = 0;
	w->retried_plain = w->diff_refused = 0;
	w->seen_n = 0;
	w->have_rec = state_mbox_get(j->st, j->jobid, mb->mbid, &w->rec, &e) == 0;
	if (!w->have_rec)
		memset(&w->rec, 0, sizeof(w->rec));
	/* Flags and expunges are read only when asked for, and only for
	 * messages copied before (rec.last_uid); new mail is copied anyway. */
	w->method = M_NEW_ONLY;
	if ((j->o->sync_flags || j->o->delete_) && w->rec.uidvalidity && w->rec.last_uid) {
		if (w->src.enabled_qresync && w->rec.highestmodseq)
			w->method = M_QRESYNC;
		else if (w->src.enabled_condstore && w->rec.highestmodseq)
			w->method = M_CONDSTORE;
		else
			w->method = M_SCAN;
	}
	examine_send(w);
}

/* EXAMINE's (or SELECT's) untagged data: the mailbox's numbers, and with
 * QRESYNC what changed since the stored modseq (RFC 7162 §3.2.5). */
static int examine_untagged(struct imap_client *c, struct imap_cmd *cmd,
                            const struct imap_resp *r)
{
	struct worker *w = c->ud;
	const struct imap_node *v;

	(void)cmd;
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

static const struct imap_consumer examine_consumer = {.untagged = examine_untagged};

static void examine_send(struct worker *w)
{
	int rw = w->open_rw; /* never in a dry run (examine_done) */

	/* The command's ud tells examine_done which one went. */
	imap_cmd_begin_consumer(&w->src, &w->examine_cmd, examine_done, rw ? &w->open_rw : NULL,
	                        &examine_consumer);
	imap_put(&w->src, rw ? "SELECT " : "EXAMINE ");
	imap_put_astring(&w->src, w->mb->name, w->mb->len);
	if (w->method == M_QRESYNC)
		imap_putf(&w->src, " (QRESYNC (%u %llu 1:%u))", w->rec.uidvalidity,
			  (unsigned long long)w->rec.highestmodseq, w->rec.last_uid);
	imap_cmd_end(&w->src);
}

/* ---- worker: connections ------------------------------------------------------ */

/* The source may take commands: worker 0 lists the account, pipelined
 * behind the login when the client allows it (c->login_pending, the
 * capabilities then provisional); the others wait for the login's answer
 * (src_logged_in), as what they send goes by the capabilities. */
void src_ready(struct imap_client *c)
{
	struct worker *w = c->ud;

	if (w->id == 0 && !w->job->listed && !w->listing) {
		w->listing = 1;
		src_list(w);
	}
	if (c->login_pending)
		return;
	w->src_ready = 1;
	if (w->id != 0 || w->job->listed)
		worker_next(w);
}

void src_logged_in(struct imap_client *c)
{
	src_ready(c);
}

/* LOGOUT on the source; not waited for when the process ends next. */
static void src_logout(struct worker *w)
{
	w->src.logout_nowait = w->job->quick_exit;
	imap_client_logout(&w->src);
}

void sink_ready(struct worker *w)
{
	w->dst_ready = 1;
	if (w->id == 0 && !w->reconnecting) {
		/* opened with the source: the others follow the plan */
		if (w->job->listed)
			workers_spawn_rest(w->job);
		dst_prepare(w);
	}
	worker_next(w);
}

/* The host is down or out of reach: nothing listening, unreachable,
 * silent. Transient for a pair that was in (a server restarting), not for
 * a first login (login_later). */
static int host_down(int code)
{
	switch (code) {
	case ECONNREFUSED:
	case ETIMEDOUT:
	case ENOTCONN:
	case ESHUTDOWN:
	case ENETDOWN:
	case ENETUNREACH:
	case EHOSTDOWN:
	case EHOSTUNREACH:
		return 1;
	default:
		return 0;
	}
}

/* A connection-level failure a new connection may not meet: reset, closed,
 * BYE, timeout, refused while a server restarts. A refused login, a TLS or
 * certificate failure, a protocol error would only come back. */
static int err_transient(const struct mf_error *err)
{
	if (host_down(-err->code))
		return 1;
	switch (-err->code) {
	case ECONNRESET:
	case ECONNABORTED:
	case EPIPE:
	case EAGAIN: /* THROTTLE_ERR: the server throttles; again after its hint */
		return 1;
	case EACCES: /* login refused: only [UNAVAILABLE] is temporary (RFC 5530 §3) */
		return strstr(err->msg, "[UNAVAILABLE]") != NULL;
	default:
		return 0;
	}
}

/* A first login that failed this way may succeed later: a transient
 * failure (err_transient: the server throttles or says "later", or it
 * dropped the connection before the login was done, a per-user
 * connection limit) other than a host that is down: nothing listening,
 * unreachable or silent fails its accounts at once. */
static int login_later(const struct mf_error *err)
{
	return !host_down(-err->code) && err_transient(err);
}

/* The pair may be reopened: it had logged in (or is being reopened), the
 * plan is made and the destination prepared (worker 0 is the control pair
 * until then), and the failure is transient. */
static int reconnect_wanted(const struct worker *w, int login, const struct mf_error *err)
{
	const struct job *j = w->job;

	if (!j->o->retries || j->fatal || j->finished || w->phase == W_DONE)
		return 0;
	if (login && !w->reconnecting)
		return 0;
	if (w->id == 0 && (!j->listed || !j->dst_prepared))
		return 0;
	return err_transient(err);
}

/* err->msg without its leading "source user@host: ". */
static const char *err_reason(const char *who, const struct mf_error *err)
{
	size_t n = strlen(who);

	if (!strncmp(err->msg, who, n) && !strncmp(err->msg + n, ": ", 2))
		return err->msg + n + 2;
	return err->msg;
}

/* Closes both connections of the pair, keeps what is settled, and reopens
 * them after a backoff (0.5 s doubling up to 30 s, with jitter, so pairs
 * that dropped together do not come back together). The mailbox resumes
 * from its EXAMINE: APPENDs in flight have committed intents that
 * examine_done settles against the destination before anything is copied
 * again; the pass then reads the mailbox from its record again, skipping
 * what is recorded. */
static void worker_reconnect(struct worker *w, int dst_side, const char *who,
                             const struct mf_error *err)
{
	struct job *j = w->job;
	struct throttle_hint th;
	uint64_t ms;
	int throttled;

	if (!w->attempts++)
		snprintf(w->first_loss, sizeof(w->first_loss), "%s", err_reason(who, err));
	if (err->code == -ETIMEDOUT && dst_side && w->b_count) {
		/* We gave up on a destination that went quiet with batches in
		 * flight; it did not close the session, so something between
		 * us (a stalled middlebox) may still hand it the bytes we sent.
		 * The settle that follows waits twice the timeout for them. */
		uint64_t t = j->o->dst.timeout_ms ? j->o->dst.timeout_ms : 60000;

		w->settle_not_before = wall_ms() + 2 * t;
	}
	j->sum->reconnects++;
	job_commit(j); /* everything confirmed is durable before we go on */
	if (w->mb && w->phase == W_FETCH) {
		w->resumed = 1;
		w->resume_range = !w->single_mode && !w->list_mode;
		w->resume_uidv = w->uidvalidity;
	}
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	throttled = throttle_parse_line(err->msg, strlen(err->msg), &th) || err->code == THROTTLE_ERR;
	ms = job_backoff_ms(500, w->attempts - 1, throttled ? th.ms : 0, w->rng);
	if (throttled) /* this pair waits what the server suggests (or the backoff),
			* and so does every new connection to that host (hostlimit):
			* only that host slows down */
		hostlimit_throttle(j->o->hostlimit, dst_side ? j->dst_host : j->src_host, ms,
		                   err_reason(who, err));
	progress_clear(j);
	if (w->mb)
		mf_log(MF_LOG_INFO,
		       "%s mailbox \"%s\": connection lost (%s); reconnecting in "
		       "%.1f s (attempt %u of %u)",
		       who, w->mb->display, err_reason(who, err), (double)ms / 1000.0,
		       w->attempts, j->o->retries);
	else
		mf_log(MF_LOG_INFO,
		       "%s: connection lost (%s); reconnecting in %.1f s (attempt %u of %u)",
		       who, err_reason(who, err), (double)ms / 1000.0, w->attempts,
		       j->o->retries);
	/* The failed side is closed already (and may be inside its own
	 * parser: it is freed only when reopened); the other one goes now. */
	if (w->src_open && !w->src.closed)
		imap_client_close(&w->src);
	pop3src_stop(w, 0);
	if (w->dst_open)
		w->sink.ops->close(&w->sink, 0);
	loop_timer_cancel(j->loop, &w->settle_timer);
	loop_timer_cancel(j->loop, &w->retry_timer);
	loop_timer_cancel(j->loop, &w->rate_timer);
	settle_imap_stop(w); /* the settle after the reopening checks again */
	w->phase = W_CONNECTING;
	w->reconnecting = 1;
	w->src_ready = w->dst_ready = 0;
	w->open = NULL;
	w->b_head = w->b_count = 0;
	w->fetches_inflight = 0;
	w->cur.active = 0;
	w->src_paused = w->src_starved = 0;
	w->apply_pending = 0;
	w->nstl = 0;
	w->lim_open = 0;
	worker_lim_sync(w, 1); /* both sides closed: the slots are free until the reopen */
	loop_timer_start(j->loop, &w->reconnect_timer, ms, worker_reopen);
}

static void worker_reopen(struct loop *l, struct loop_timer *t)
{
	struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, reconnect_timer));
	struct mf_error e;
	uint64_t in, out;
	int dst_failed = 0;

	(void)l;
	if (w->dead || !w->reconnecting || w->phase != W_CONNECTING)
		return;
	/* Outside every callback now: the old clients' parsers can go. */
	if (w->src_open) {
		imap_client_wire(&w->src, &in, &out);
		w->wire_in += in;
		w->wire_out += out;
		imap_client_close(&w->src);
	}
	pop3src_release(w, &in, &out);
	w->wire_in += in;
	w->wire_out += out;
	if (w->dst_open) {
		w->sink.ops->wire(&w->sink, &in, &out);
		w->wire_in += in;
		w->wire_out += out;
		w->sink.ops->release(&w->sink);
	}
	w->src_open = w->dst_open = 0; /* counted: not again at the end */
	if (worker_start(w, WORKER_OPEN_SRC | WORKER_OPEN_DST, &dst_failed, &e) < 0)
		worker_open_failed(w, dst_failed, &e);
}

/* One side of the pair failed (its connection is closed): reconnect the
 * pair, or fail its mailbox, or end the job (see below). */
static void worker_side_failed(struct worker *w, int dst_side, const char *who,
                               const struct mf_error *err)
{
	struct job *j = w->job;
	int login = !(dst_side ? w->dst_ready : w->src_ready);
	int relogin = w->reconnecting; /* login is of a reopened pair */
	int gave_up = 0, later;

	worker_lim_sync(w, 0); /* the failed side's slot (an open that failed has no hook) */
	if (w->dead)
		return;
	if (reconnect_wanted(w, login, err)) {
		if (w->attempts < j->o->retries) {
			worker_reconnect(w, dst_side, who, err);
			return;
		}
		gave_up = 1;
	}
	w->dead = 1;
	/* the account's first login met a "later": the job ends (below), and
	 * the caller may start it again (job_summary.login_later) */
	later = login && !relogin && !j->listed && login_later(err);
	if (login && !relogin && w->id != 0 && j->w[0].src_ready && j->w[0].dst_ready) {
		/* The first pair logged in, so the accounts are right: this is a
		 * server refusing one connection more (a per-user limit, say).
		 * The others go on without it. A POP3 server may lock the
		 * maildrop to one session (RFC 1939 §8: [IN-USE], RFC 2449
		 * §8.1.1, or a plain -ERR, or it closes): the parts not handed
		 * out yet go to the sessions it let in (split_take), in this run. */
		if (w->p3 && !j->pop3_fewer_noted++)
			mf_log(MF_LOG_WARN,
			       "%s; going on with fewer POP3 sessions (the server may lock the "
			       "maildrop): the sessions let in copy every part",
			       err->msg);
		else if (!w->p3)
			mf_log(MF_LOG_WARN, "%s; going on with fewer connections", err->msg);
		worker_stop(w, 0);
		job_maybe_finish(j);
		return;
	}
	if (gave_up)
		job_error(j, who, w->mb, 0,
		          "connection lost (%s); giving up after %u reconnect attempts (the "
		          "last: %s)",
		          w->attempts ? w->first_loss : err_reason(who, err), w->attempts,
		          err_reason(who, err));
	else if (later && j->o->later_quiet)
		job_error_quiet(j, who, "%s", err_reason(who, err)); /* the caller's retry line tells */
	else
		job_error(j, who, w->mb, 0, "%s", err_reason(who, err));
	if (w->mb) {
		w->mb->failed = 1;
		if (split_gone(w)) /* the other parts' last one counts it */
			j->sum->mailboxes_failed++;
		w->mb = NULL;
	}
	/* Everything confirmed so far stays recorded. */
	job_commit(j);
	worker_stop(w, 0);
	if (j->o->dedupe)
		dispatch(j); /* its destination folder is free for a waiting worker */
	/* A failed login, or losing the control connections before the plan is
	 * made and the destination prepared, ends the job: the other workers
	 * would fail the same way or have nothing to do. A login refused on a
	 * reconnect fails the mailbox only: the others keep their sessions. */
	if ((login && !relogin) || (w->id == 0 && (!j->listed || !j->dst_prepared))) {
		j->fatal = 1;
		if (later) {
			/* not the account's fault: a host that kept saying
			 * "later" is one we could not get into (class 3) */
			struct throttle_hint th;

			j->sum->login_later = 1;
			if (throttle_parse_line(err->msg, strlen(err->msg), &th) ||
			    err->code == THROTTLE_ERR) {
				/* no new connection to that host for the hint (or
				 * a second): every account of the run slows there */
				j->sum->login_later_ms = th.ms;
				hostlimit_throttle(j->o->hostlimit,
				                   dst_side ? j->dst_host : j->src_host,
				                   th.ms ? th.ms : 1000, err_reason(who, err));
			}
			j->sum->classes |= JOB_CLASS_CONNECT;
		} else {
			j->sum->classes |= job_class_of(err->code);
		}
	} else if (gave_up) {
		j->sum->classes |= JOB_CLASS_CONNECT;
	}
	job_maybe_finish(j);
}

uint64_t job_backoff_ms(uint64_t base_ms, unsigned doublings, uint64_t hint_ms, uint64_t rnd)
{
	uint64_t ms = base_ms;

	for (unsigned i = 0; i < doublings && ms < 30000; i++)
		ms *= 2;
	if (ms > 30000)
		ms = 30000;
	ms = ms * 3 / 4 + rnd % (ms / 2 + 1); /* 0.75 .. 1.25 of it */
	if (hint_ms > ms)
		ms = hint_ms + rnd % (hint_ms / 10 + 1); /* up to 1.1 of the hint */
	return ms;
}

uint64_t job_login_later_ms(const struct job_summary *s, unsigned tries, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull;

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return job_backoff_ms(1000, tries, s->login_later_ms, x);
}

/* A login refused is authentication; anything else that ends a
 * connection before or at login (refused, unreachable, TLS, a policy
 * that will not send the password, a garbled greeting) is connecting. */
unsigned job_class_of(int code)
{
	return code == -EACCES ? JOB_CLASS_AUTH : JOB_CLASS_CONNECT;
}

void conn_error(struct imap_client *c, const struct mf_error *err)
{
	worker_side_failed(c->ud, 0, imap_client_who(c), err);
}

/* The POP3 source's session failed (source_pop3.c). */
void worker_src_failed(struct worker *w, const struct mf_error *err)
{
	worker_side_failed(w, 0, w->source.ops->who(&w->source), err);
}

void sink_failed(struct worker *w, const struct mf_error *err)
{
	worker_side_failed(w, 1, w->sink.ops->who(&w->sink), err);
}

/* Untagged data no command's consumer took: on the control pair while it
 * plans (LIST, STATUS, NAMESPACE), else unsolicited and of no use. */
int src_untagged_any(struct imap_client *c, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	if (w->id == 0 && !w->job->listed)
		return src_ctl_untagged(c, r);
	return 0;
}

int dst_untagged_any(struct imap_client *c, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	if (w->id == 0 && !w->job->dst_prepared)
		return dst_ctl_untagged(c, r);
	return 0;
}


int worker_open_src(struct worker *w, struct mf_error *err)
{
	w->lim_open &= ~WORKER_OPEN_SRC;
	if (w->job->o->src_pop3)
		return pop3src_open(w, err);
	if (w->job->o->src_archive)
		return arcsrc_open(w, err);
	w->src_open = 1;
	w->listing = 0;
	w->job->sum->connections++;
	return imap_client_open(&w->src, w->job->loop, &w->job->o->src, &w->job->src_cb, w, err);
}

static int worker_open_dst(struct worker *w, struct mf_error *err)
{
	w->lim_open &= ~WORKER_OPEN_DST;
	w->dst_open = 1;
	w->job->sum->connections++;
	return w->sink.ops->open(&w->sink, err);
}

int worker_init(struct job *j, struct worker *w, unsigned id)
{
	memset(w, 0, sizeof(*w));
	w->job = j;
	w->id = id;
	w->source = (struct source){&source_imap_ops, w};
	w->sink = (struct sink){j->o->archive    ? &sink_archive_ops
	                       : j->o->dst_mail ? &sink_smtp_ops
	                                        : &sink_imap_ops,
	                       w, NULL, {0}};
	/* the one place a dry run is told apart on the data path: its sink
	 * counts (sink_count.c), over the real sink's session */
	if (j->o->dry_run && sink_count_wrap(&w->sink) < 0)
		return -ENOMEM;
	if (j->o->src_pop3)
		w->source.ops = &source_pop3_ops;
	if (j->o->src_archive)
		w->source.ops = &source_archive_ops;
	w->rng = (wall_ms() * 2654435761u) ^ ((uint64_t)(id + 1) << 32) ^ (uint64_t)(uintptr_t)w;
	if (!w->rng)
		w->rng = 1;
	if (msghash_init(&w->mh) < 0)
		return -ENOMEM;
	for (unsigned i = 0; i < BATCH_SLOTS; i++)
		if (!(w->slot[i] = malloc(sizeof(struct batch))))
			return -ENOMEM;
	return 0;
}

/* Opens the destination side of worker 0 (unless it opened with the
 * source, job_start); once it has logged in (the account is right),
 * workers_spawn_rest opens the others. */
void workers_spawn(struct job *j)
{
	struct mf_error e;

	if (j->w[0].dst_open) {
		if (j->w[0].dst_ready)
			workers_spawn_rest(j);
		else
			imap_client_login(&j->w[0].dst); /* held by dst_greeted */
		return;
	}
	if (worker_open_dst(&j->w[0], &e) < 0) {
		job_error(j, NULL, NULL, 0, "%s", e.msg);
		j->fatal = 1;
		j->sum->classes |= job_class_of(e.code);
		return;
	}
}

/* The other workers, as many as the work is worth (split_items), up to
 * --connections. A server that refuses some of them (a per-user limit)
 * leaves the job with fewer (conn_error). */
static void workers_spawn_rest(struct job *j)
{
	size_t nwork;

	split_undo_if_locking(j);
	nwork = split_items(j);

	for (unsigned i = 1; i < j->nw && i < nwork; i++)
		worker_spawn(&j->w[i]);
}

int worker_spawn(struct worker *w)
{
	struct mf_error e;
	int dst_failed;

	mf_err_clear(&e);
	if (worker_start(w, WORKER_OPEN_SRC | WORKER_OPEN_DST, &dst_failed, &e) < 0) {
		job_error(w->job, NULL, NULL, 0, "%s", e.msg);
		worker_stop(w, 0);
		w->dead = 1;
		return -1;
	}
	return 0;
}

int worker_active(const struct worker *w)
{
	return w->phase != W_NEW && !w->dead && w->phase != W_DONE;
}

void worker_stop(struct worker *w, int graceful)
{
	w->phase = W_DONE;
	w->lim_open = 0;
	w->reconnecting = 0;
	loop_timer_cancel(w->job->loop, &w->reconnect_timer);
	loop_timer_cancel(w->job->loop, &w->retry_timer);
	loop_timer_cancel(w->job->loop, &w->rate_timer);
	settle_imap_stop(w);
	if (w->src_open && !w->src.closed) {
		if (graceful && w->src_ready)
			src_logout(w);
		else
			imap_client_close(&w->src);
	}
	pop3src_stop(w, graceful && w->src_ready);
	if (w->dst_open) /* a login held by dst_greeted: LOGOUT, never logged in */
		w->sink.ops->close(&w->sink, graceful && (w->dst_ready || w->dst.auth_held));
	/* A LOGOUT still in flight keeps its slot until the server answers
	 * (the closed hook), so the server never sees more than the cap. */
	worker_lim_sync(w, 0);
}

/* ---- worker: connection slots (--max-per-host) ------------------------------ */

static int src_alive(struct worker *w)
{
	if (w->lim_open & WORKER_OPEN_SRC)
		return 1; /* reserved, to be opened */
	if (w->p3)
		return w->p3->opened && !w->p3->c.closed;
	return w->src_open && !w->src.closed;
}

static int dst_alive(struct worker *w)
{
	if (w->lim_open & WORKER_OPEN_DST)
		return 1;
	return w->dst_open && !w->sink.ops->closed(&w->sink);
}

void worker_lim_sync(struct worker *w, int all)
{
	struct hostlimit *hl = w->job->o->hostlimit;

	if (!hl)
		return;
	if (all || (hostlimit_waiting(&w->lim) && (w->dead || w->phase == W_DONE))) {
		w->lim_open = 0;
		hostlimit_cancel(hl, &w->lim);
		return;
	}
	if (!src_alive(w))
		hostlimit_release(hl, &w->lim, 0);
	if (!dst_alive(w))
		hostlimit_release(hl, &w->lim, 1);
}

/* The IMAP clients' closed hooks (job.c's src_cb and dst_cb): a session
 * ended, its slot goes to whoever waits for that host. */
void worker_src_closed(struct imap_client *c)
{
	struct worker *w = c->ud;

	worker_lim_sync(w, 0);
	job_session_closed(w->job);
}

void worker_dst_closed(struct imap_client *c)
{
	struct worker *w = c->ud;

	worker_lim_sync(w, 0);
	job_session_closed(w->job);
}

/* A deferred open failed: as if the connection had failed at login. */
static void worker_open_failed(struct worker *w, int dst_failed, const struct mf_error *e)
{
	if (dst_failed)
		sink_failed(w, e);
	else if (w->p3 || w->arc)
		worker_src_failed(w, e);
	else
		conn_error(&w->src, e);
}

static int open_sides(struct worker *w, unsigned what, int *dst_failed, struct mf_error *err)
{
	int rc;

	*dst_failed = 0;
	if ((what & WORKER_OPEN_SRC) && (rc = worker_open_src(w, err)) < 0)
		return rc;
	*dst_failed = 1;
	if ((what & WORKER_OPEN_DST) && (rc = worker_open_dst(w, err)) < 0)
		return rc;
	*dst_failed = 0;
	return 0;
}

static void worker_granted(struct hostlimit_req *r)
{
	struct worker *w = (struct worker *)((char *)r - offsetof(struct worker, lim));
	struct mf_error e;
	int dst_failed;

	if (w->dead || w->phase == W_DONE || w->job->finished) {
		worker_lim_sync(w, 1);
		return;
	}
	mf_err_clear(&e);
	if (open_sides(w, w->lim_what, &dst_failed, &e) < 0)
		worker_open_failed(w, dst_failed, &e);
}

int worker_start(struct worker *w, unsigned what, int *dst_failed, struct mf_error *err)
{
	struct job *j = w->job;
	int rc;

	*dst_failed = 0;
	w->phase = W_CONNECTING;
	w->lim.granted = worker_granted;
	w->lim.loop = j->loop;
	w->lim_what = what;
	w->lim_open = WORKER_OPEN_SRC | WORKER_OPEN_DST; /* worker 0 opens its destination later */
	rc = hostlimit_acquire(j->o->hostlimit, &w->lim, j->src_host[0] ? j->src_host : NULL,
	                       j->dst_host[0] ? j->dst_host : NULL, err);
	if (rc < 0) {
		w->lim_open = 0;
		return rc;
	}
	if (rc == 0)
		return 0; /* worker_granted opens them */
	return open_sides(w, what, dst_failed, err);
}
