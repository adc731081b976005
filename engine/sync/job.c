/*
 * job — one account's migration from start to summary: workers made and
 * started on a loop the caller runs, done reported, everything freed
 * (see job.h).
 *
 * Not for: the steps themselves (plan, prepare, worker, copy, ...).
 */
#include "engine/sync/job_int.h"

static void job_stop_task(struct loop *l, struct loop_task *t);

/* Runs outside every parser's callback: stops what is left (job_maybe_finish
 * frees parsers). */
static void job_stop_task(struct loop *l, struct loop_task *t)
{
	(void)l;
	job_maybe_finish((struct job *)((char *)t - offsetof(struct job, stop_task)));
}

static const struct imap_client_cb src_cb = {
	.ready = src_ready,
	.logged_in = src_logged_in,
	.error = conn_error,
	.untagged = NULL,
	.lit_begin = lit_checked_inline,
	.closed = worker_src_closed,
};

/* The hosts --max-per-host counts the two sides' connections by, as the
 * URLs gave them ("host:port", "unix:PATH"); none for an archive (the
 * destination of backup, the source of restore). */
static void job_hosts(struct job *j, const struct job_opts *o)
{
	if (o->src_archive)
		j->src_host[0] = '\0';
	else if (o->src_pop3)
		snprintf(j->src_host, sizeof(j->src_host), "%s:%u", o->src_pop3_ep.host,
		         (unsigned)o->src_pop3_ep.port);
	else
		snprintf(j->src_host, sizeof(j->src_host), "%s:%u", o->src.host, (unsigned)o->src.port);
	if (o->archive)
		j->dst_host[0] = '\0';
	else if (o->dst_mail && o->dst_smtp.unix_path)
		snprintf(j->dst_host, sizeof(j->dst_host), "unix:%s", o->dst_smtp.unix_path);
	else if (o->dst_mail)
		snprintf(j->dst_host, sizeof(j->dst_host), "%s:%u", o->dst_smtp.host,
		         (unsigned)o->dst_smtp.port);
	else
		snprintf(j->dst_host, sizeof(j->dst_host), "%s:%u", o->dst.host, (unsigned)o->dst.port);
}

/* The last pair was lost (a failure that fails its mailbox, not the job)
 * with mailboxes not handed out yet: a pair the plan did not need
 * (workers_spawn_rest opens as many as the work is worth) opens to copy
 * them, once per job. 1 if one is on its way. */
static int job_respawn(struct job *j)
{
	if (j->fatal || j->respawned || !j->listed || !j->dst_prepared)
		return 0;
	for (unsigned i = 1; i < j->nw; i++)
		if (j->w[i].phase == W_NEW && !j->w[i].dead) {
			j->respawned = 1;
			return worker_spawn(&j->w[i]) == 0;
		}
	return 0;
}

void job_maybe_finish(struct job *j)
{
	int work_left = 0;

	if (j->finished)
		return;
	if (j->listed)
		for (size_t i = j->next_mb; i < j->nmb; i++)
			work_left |= j->mb[i].work > 0;
	for (unsigned i = 0; i < j->nw; i++) {
		struct worker *w = &j->w[i];

		if (!worker_active(w))
			continue;
		if (j->fatal)
			worker_stop(w, 0);
		else if (j->listed && !work_left && !w->mb && (j->dst_prepared || w->id != 0))
			worker_stop(w, 1);
		else if (j->listed && !work_left && !w->mb && !w->dst_open)
			worker_stop(w, 1); /* worker 0 when nothing needed the destination */
	}
	for (unsigned i = 0; i < j->nw; i++)
		if (worker_active(&j->w[i]))
			return;
	if (work_left && job_respawn(j))
		return;
	/* Nobody is left to work: what was not handed out is reported. */
	if (j->listed && !j->fatal)
		for (size_t i = j->next_mb; i < j->nmb; i++)
			if (j->mb[i].work > 0) {
				job_error(j, NULL, &j->mb[i], 0,
					  "not synced: no connection left to work on it");
				j->sum->mailboxes_failed++;
			}
	j->next_mb = j->nmb;
	j->finished = 1;
	job_commit(j);
	loop_timer_cancel(j->loop, &j->tick);
	loop_timer_cancel(j->loop, &j->commit_timer);
	loop_defer(j->loop, &j->done_task);
}

/* Nothing of the job is in the loop: no timer (a cancelled one is in
 * flight until its completion arrives), no queued task. Its connections
 * may still be closing; conn_close detaches them from the job's memory. */
static int job_quiet(const struct job *j)
{
	if (j->tick.armed || j->commit_timer.armed || j->stop_task.queued || j->commit_task.queued)
		return 0;
	for (unsigned i = 0; i < j->nw; i++)
		if (j->w[i].settle_timer.armed || j->w[i].reconnect_timer.armed ||
		    j->w[i].retry_timer.armed || j->w[i].rate_timer.armed ||
		    hostlimit_posted(&j->w[i].lim) || settle_imap_busy(&j->w[i]) ||
		    j->w[i].sink.task.queued || arcsrc_queued(&j->w[i]))
			return 0;
	return 1;
}

/* An IMAP session of the job still waits for its LOGOUT's answer. The
 * job is done only once the server has ended them all: cut off by
 * job_end, a session could outlive its --max-per-host slot on the
 * server's side while the next account already logs in. A server that
 * never answers is dropped by the reply timeout. */
static int job_closing(const struct job *j)
{
	for (unsigned i = 0; i < j->nw; i++) {
		const struct worker *w = &j->w[i];

		if ((w->src_open && !w->src.closed) || settle_imap_open(w))
			return 1;
		if (w->dst_open && sink_can(&w->sink, SINK_LOGOUT) &&
		    !w->sink.ops->closed((struct sink *)&w->sink))
			return 1;
	}
	return 0;
}

void job_session_closed(struct job *j)
{
	if (j->finished && !j->done_called && !j->ending && !j->done_task.queued)
		loop_defer(j->loop, &j->done_task);
}

static void job_done_task(struct loop *l, struct loop_task *t)
{
	struct job *j = (struct job *)((char *)t - offsetof(struct job, done_task));

	if (!job_quiet(j)) {
		/* the cancellations' completions come on the next turns */
		loop_defer(l, &j->done_task);
		return;
	}
	if (job_closing(j))
		return; /* job_session_closed defers this again */
	if (!j->done_called) {
		j->done_called = 1;
		j->done(j, j->done_ud);
	}
}

void job_free(struct job *j)
{
	for (unsigned i = 0; i < j->nw; i++) {
		struct worker *w = &j->w[i];

		if (w->sink.ops->destroy)
			w->sink.ops->destroy(&w->sink);
		for (unsigned k = 0; k < BATCH_SLOTS; k++)
			free(w->slot[k]);
		msghash_free(&w->mh);
		kwdefer_free(w);
		free(w->stl);
		free(w->stl_done);
		free(w->stl_cand);
		msghash_lf_free(&w->stl_lf);
		settle_imap_free(w);
		free(w->chg);
		free(w->cpool);
		free(w->gone);
		free(w->seen);
		free(w->apply_cmd);
		free(w->rm);
		free(w->todo);
		free(w->fmatch);
		free(w->retry);
		free(w->hdr);
		free(w->tmp);
		free(w->dd_uids);
		free(w->counted);
		pop3src_free(w);
		arcsrc_free(w);
	}
	rules_free(&j->rules);
	for (size_t i = 0; i < j->nmb; i++) {
		free(j->mb[i].name);
		free(j->mb[i].dst_name);
		free(j->mb[i].display);
	}
	for (size_t i = 0; i < j->ndst; i++)
		free(j->dst_names[i]);
	free(j->dst_names);
	free(j->dst_special);
	free(j->mbx.slot);
	free(j->dstx.slot);
	free(j->van);
	free(j->probe_cmd);
	free(j->mb);
	free(j->create_cmd);
	free(j->w);
	free(j);
}

int job_start(struct job **out, struct loop *l, struct state *st, const struct job_opts *o,
	      struct job_summary *sum, job_done_fn done, void *ud, struct mf_error *err)
{
	struct job *j = calloc(1, sizeof(*j));
	int rc;

	*out = NULL;
	memset(sum, 0, sizeof(*sum));
	if (!j) {
		mf_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	j->loop = l;
	j->st = st;
	j->o = o;
	j->sum = sum;
	j->done = done;
	j->done_ud = ud;
	j->done_task.fn = job_done_task;
	j->stop_task.fn = job_stop_task;
	j->commit_task.fn = copy_commit_task;
	j->src_cb = src_cb;
	j->src_cb.untagged = src_untagged_any;
	j->dst_cb = (struct imap_client_cb){
		.ready = dst_ready,
		.logged_in = dst_logged_in,
		.error = dst_error,
		.untagged = dst_untagged_any,
		.lit_begin = lit_checked_inline,
		.writable = dst_writable,
		.closed = worker_dst_closed,
		.greeted = dst_greeted,
	};
	job_hosts(j, o);
	/* The job's state scope: a dry run's discards every write (scope.c). */
	rc = scope_open(j, o->job_key, err);
	if (rc < 0) {
		free(j);
		return err->code ? err->code : -EIO;
	}
	j->nw = o->connections ? o->connections : 4;
	j->w = calloc(j->nw, sizeof(*j->w));
	if (!j->w) {
		free(j);
		mf_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < j->nw; i++)
		if (worker_init(j, &j->w[i], i) < 0) {
			job_free(j);
			mf_err_set(err, -ENOMEM, "out of memory");
			return -ENOMEM;
		}
	if ((rc = rules_compile(&j->rules, o, err)) < 0) {
		job_free(j);
		return rc;
	}
	test_fail_init(j);
	j->t0 = loop_now_ms(l);
	j->last_commit = j->t0;
	/* Worker 0's slots are both taken now: it never waits for one while
	 * holding the other. An IMAP destination opens with the source, in
	 * parallel (it is listed while the source is); others once the plan
	 * is made. */
	if (worker_start(&j->w[0],
	                 WORKER_OPEN_SRC | (j->w[0].sink.ops == &sink_imap_ops && !o->src_pop3 &&
	                                            !o->src_archive
	                                        ? WORKER_OPEN_DST
	                                        : 0),
	                 &rc, err) < 0) {
		sum->fatal = 1;
		worker_lim_sync(&j->w[0], 1);
		job_free(j);
		return err->code ? err->code : -EIO;
	}
	loop_timer_start(l, &j->tick, 250, on_tick);
	*out = j;
	return 0;
}

int job_end(struct job *j)
{
	struct job_summary *sum = j->sum;
	int rc;

	j->ending = 1;
	progress_clear(j);
	loop_timer_cancel(j->loop, &j->tick);
	loop_timer_cancel(j->loop, &j->commit_timer);
	if (j->o->archive && j->listed && !j->fatal && !j->archive_named)
		archive_prepare(j); /* nothing was copied: the sink never opened */
	job_commit(j);
	sum->seconds = (double)(loop_now_ms(j->loop) - j->t0) / 1000.0;
	sum->fatal = j->fatal && !j->listed;
	for (unsigned i = 0; i < j->nw; i++) {
		struct worker *w = &j->w[i];
		uint64_t in, out;

		sum->wire_in += w->wire_in;
		sum->wire_out += w->wire_out;
		if (w->src_open) {
			imap_client_wire(&w->src, &in, &out);
			sum->wire_in += in;
			sum->wire_out += out;
			imap_client_close(&w->src);
		}
		settle_imap_release(w, &in, &out);
		sum->wire_in += in;
		sum->wire_out += out;
		pop3src_release(w, &in, &out);
		sum->wire_in += in;
		sum->wire_out += out;
		if (w->dst_open) {
			w->sink.ops->wire(&w->sink, &in, &out);
			sum->wire_in += in;
			sum->wire_out += out;
			w->sink.ops->release(&w->sink);
		}
		/* every slot of the job goes back (and a request still queued
		 * leaves the queue): the owner checks hostlimit_count() == 0 */
		w->dead = 1;
		worker_lim_sync(w, 1);
	}
	rc = (j->nerrors || sum->failed || sum->mailboxes_failed || j->fatal) ? 1 : 0;
	job_free(j);
	return rc;
}

static void migrate_done(struct job *j, void *ud)
{
	(void)j;
	*(int *)ud = 1;
}

int job_migrate(struct loop *l, struct state *st, const struct job_opts *o,
		struct job_summary *sum, struct mf_error *err)
{
	struct job *j;
	int done = 0, rc;

	if ((rc = job_start(&j, l, st, o, sum, migrate_done, &done, err)) < 0)
		return rc;
	j->quick_exit = 1; /* the process ends next: no slot is wanted after */
	/* The loop ends when nothing is in flight: the job is done and its
	 * connections have said LOGOUT. */
	rc = loop_run(l);
	if (rc < 0) {
		job_end(j);
		mf_err_set(err, rc, "event loop failed: %s", strerror(-rc));
		return rc;
	}
	if (!done)
		job_error(j, NULL, NULL, 0, "internal: the loop ended before the job");
	return job_end(j) || !done;
}
