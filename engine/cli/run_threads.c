/*
 * run_threads — `mailferry run --threads N` (N > 1): one event loop per
 * worker thread, and the accounts spread over them (DESIGN §2: an account
 * job lives on exactly one loop, no locks on its hot path).
 *
 * The main thread keeps everything that is shared: it reads the accounts
 * file, sets every account up (options, password files, its state opened),
 * writes the report, the journal and the progress, all on its own loop as
 * with one thread. An account to run is handed to the worker running the
 * fewest (a locked queue and loop_post: the worker's loop reads an
 * eventfd), which starts its job on its own loop; a finished account
 * (job_end done on the worker, so its state's last commit is that
 * thread's) goes back the same way to the main loop, which reports it and
 * starts the next. The per-host caps, byte buckets and throttling pauses
 * are one hostlimit shared by every loop (hostlimit_share). The progress
 * display and the status server (--status, served by the main loop) read
 * snapshots each worker copies every SNAP_MS under the run's mutex: its
 * accounts' counters, progress and (--status-show-subjects) subject and
 * sender, and its loop's commit latency histogram; never a running job or
 * anything else a worker writes.
 *
 * Not for: what an account does (engine/sync), the report (run.c,
 * run_report.c); --threads 1 does not come here (run.c runs the jobs on
 * its own loop, as before).
 */
#include "engine/cli/run_int.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/err.h"
#include "engine/sync/hostlimit.h"
#include "store/state.h"

#define SNAP_MS 250

struct run_thread {
	struct run *r;
	struct loop loop;
	pthread_t tid;
	int running;		/* pthread_create succeeded */
	struct acct *inq;	/* handed over, not started yet (under r->mu) */
	struct acct *mine;	/* started on this loop (this thread only) */
	unsigned load;		/* accounts handed and not finished (main thread) */
	unsigned handed;	/* accounts handed in all (main thread) */
	struct loop_task start_task, stop_task;
	struct loop_timer snap;
	/* --status: the commit latencies of this loop's jobs (job_opts.stats;
	 * this thread only), and their copy as of the last snapshot (r->mu) */
	struct job_stats stats, stats_snap;
};

/* ---- on a worker thread ------------------------------------------------------ */

/* s into out (cap bytes), or NULL for NULL (a job's subject and sender
 * live in the job, which only this thread may read). */
static const char *snap_str(char *out, size_t cap, const char *s)
{
	if (!s)
		return NULL;
	snprintf(out, cap, "%s", s);
	return out;
}

/* Copies the running accounts' numbers for the main thread (run.mu held). */
static void snap_acct(struct acct *a)
{
	struct job_progress p;

	a->snap = a->sum;
	if (!a->j)
		return;
	job_progress_get(a->j, &p);
	a->psnap = p;
	a->psnap.subject = snap_str(a->psubj, sizeof(a->psubj), p.subject);
	a->psnap.from = snap_str(a->pfrom, sizeof(a->pfrom), p.from);
}

/* Copies the running accounts' numbers and the loop's commit latencies
 * for the progress display and the status server. */
static void snap_all(struct run_thread *t)
{
	pthread_mutex_lock(&t->r->mu);
	for (struct acct *a = t->mine; a; a = a->tnext)
		snap_acct(a);
	t->stats_snap = t->stats;
	pthread_mutex_unlock(&t->r->mu);
}

static void snap_tick(struct loop *l, struct loop_timer *tm)
{
	struct run_thread *t = (struct run_thread *)((char *)tm - offsetof(struct run_thread, snap));

	snap_all(t);
	if (t->mine)
		loop_timer_start(l, &t->snap, SNAP_MS, snap_tick);
}

/* Back to the main loop: finished, or not started (a->start_failed). */
static void give_back(struct run_thread *t, struct acct *a)
{
	struct run *r = t->r;

	/* An LMDB write transaction (its robust mutex on this thread's list)
	 * must end on the thread that began it. A job whose reads opened one
	 * and wrote nothing (a no-change re-run, a dry run, a failed start)
	 * leaves it open; the main loop closing the state would end it there,
	 * and this thread's next lock would write through a stale list entry
	 * into the closed state's unmapped lock file (seen: SEGV in
	 * mdb_txn_begin on a worker, `run` re-runs with --threads). Everything
	 * worth keeping is committed by job_end; the rest is dropped here, as
	 * state_close would. */
	state_abort(a->st);
	pthread_mutex_lock(&r->mu);
	a->snap = a->sum;
	t->stats_snap = t->stats; /* job_end's last commit included */
	a->qnext = NULL;
	if (r->donetail)
		r->donetail->qnext = a;
	else
		r->doneq = a;
	r->donetail = a;
	pthread_mutex_unlock(&r->mu);
	loop_post(&r->loop, &r->done_task);
}

static void mine_remove(struct run_thread *t, struct acct *a)
{
	for (struct acct **p = &t->mine; *p; p = &(*p)->tnext)
		if (*p == a) {
			*p = a->tnext;
			break;
		}
	a->tnext = NULL;
}

static void thr_acct_done(struct job *j, void *ud)
{
	struct acct *a = ud;
	struct run_thread *t = a->th;

	/* the job ends on its own loop: its state's last commit is this thread's */
	a->rc = job_end(j);
	pthread_mutex_lock(&t->r->mu);
	a->j = NULL;
	pthread_mutex_unlock(&t->r->mu);
	mine_remove(t, a);
	give_back(t, a);
}

static void thr_start(struct loop *l, struct loop_task *tk)
{
	struct run_thread *t = (struct run_thread *)((char *)tk - offsetof(struct run_thread, start_task));
	struct acct *list, *a;
	struct mf_error err;

	pthread_mutex_lock(&t->r->mu);
	list = t->inq;
	t->inq = NULL;
	pthread_mutex_unlock(&t->r->mu);
	while ((a = list)) {
		struct job *j = NULL;

		list = a->qnext;
		a->qnext = NULL;
		mf_err_clear(&err);
		if (job_start(&j, l, a->st, &a->o, &a->sum, thr_acct_done, a, &err) < 0) {
			a->start_failed = 1;
			snprintf(a->why, sizeof(a->why), "%.200s", err.msg);
			give_back(t, a);
			continue;
		}
		pthread_mutex_lock(&t->r->mu);
		a->j = j;
		pthread_mutex_unlock(&t->r->mu);
		a->tnext = t->mine;
		t->mine = a;
		if (!t->snap.armed || t->snap.cancelled)
			loop_timer_start(l, &t->snap, SNAP_MS, snap_tick);
	}
}

static void thr_stop(struct loop *l, struct loop_task *tk)
{
	(void)tk;
	loop_stop(l);
}

static void *thr_main(void *arg)
{
	struct run_thread *t = arg;
	int rc = loop_run(&t->loop);

	if (rc < 0)
		mf_log(MF_LOG_ERROR, "event loop failed: %s", strerror(-rc));
	return NULL;
}

/* ---- on the main thread ------------------------------------------------------ */

/* Finished accounts, in the order they came back. */
static void done_task(struct loop *l, struct loop_task *tk)
{
	struct run *r = (struct run *)((char *)tk - offsetof(struct run, done_task));
	struct acct *a;

	(void)l;
	for (;;) {
		pthread_mutex_lock(&r->mu);
		if ((a = r->doneq)) {
			r->doneq = a->qnext;
			if (!r->doneq)
				r->donetail = NULL;
			a->qnext = NULL;
		}
		pthread_mutex_unlock(&r->mu);
		if (!a)
			break;
		a->th->load--;
		run_acct_back(a);
	}
}

int run_threads_start(struct run *r, unsigned n)
{
	int rc;

	if (!(r->th = calloc(n, sizeof(*r->th))))
		return -ENOMEM;
	pthread_mutex_init(&r->mu, NULL);
	r->mu_init = 1;
	r->done_task.fn = done_task;
	if ((rc = loop_inbox_open(&r->loop)) < 0 || (rc = hostlimit_share(r->hl)) < 0)
		return rc;
	for (unsigned i = 0; i < n; i++) {
		struct run_thread *t = &r->th[i];

		t->r = r;
		t->start_task.fn = thr_start;
		t->stop_task.fn = thr_stop;
		if ((rc = loop_init(&t->loop, 1024)) < 0)
			return rc;
		t->loop.conn_buf = r->loop.conn_buf;
		r->nth = i + 1;
		if ((rc = loop_inbox_open(&t->loop)) < 0)
			return rc;
		if ((rc = pthread_create(&t->tid, NULL, thr_main, t))) {
			mf_log(MF_LOG_ERROR, "cannot start thread %u: %s", i, strerror(rc));
			return -rc;
		}
		t->running = 1;
	}
	return 0;
}

void run_threads_hand(struct run *r, struct acct *a)
{
	struct run_thread *t = &r->th[0];

	for (unsigned i = 1; i < r->nth; i++)
		if (r->th[i].running && r->th[i].load < t->load)
			t = &r->th[i];
	t->load++;
	t->handed++;
	a->th = t;
	/* the commit histogram (--status): each loop's jobs write their own */
	if (a->o.stats)
		a->o.stats = &t->stats;
	pthread_mutex_lock(&r->mu);
	a->qnext = t->inq;
	t->inq = a;
	pthread_mutex_unlock(&r->mu);
	loop_post(&t->loop, &t->start_task);
}

/* a's numbers as of its worker's last snapshot (r->mu held). */
static void view_acct(struct acct *a)
{
	a->vsum = a->snap;
	a->vprog = a->psnap;
	if (a->psnap.subject)
		a->vprog.subject = snap_str(a->vsubj, sizeof(a->vsubj), a->psnap.subject);
	if (a->psnap.from)
		a->vprog.from = snap_str(a->vfrom, sizeof(a->vfrom), a->psnap.from);
}

static void stats_add(struct job_stats *t, const struct job_stats *s)
{
	for (int k = 0; k <= JOB_COMMIT_BUCKETS; k++)
		t->commit_le[k] += s->commit_le[k];
	t->commits += s->commits;
	t->commit_seconds += s->commit_seconds;
}

void run_threads_view(struct run *r)
{
	if (!r->th) {
		for (struct acct *a = r->active; a; a = a->next) {
			a->vsum = a->sum;
			job_progress_get(a->j, &a->vprog);
		}
		r->vstats = r->stats;
		return;
	}
	memset(&r->vstats, 0, sizeof(r->vstats));
	pthread_mutex_lock(&r->mu);
	for (struct acct *a = r->active; a; a = a->next)
		view_acct(a);
	for (unsigned i = 0; i < r->nth; i++)
		stats_add(&r->vstats, &r->th[i].stats_snap);
	pthread_mutex_unlock(&r->mu);
}

void run_threads_json(const struct run *r, FILE *f)
{
	fprintf(f, ",\"threads\":%u,\"accounts_per_thread\":[", r->th ? r->nth : 1);
	if (!r->th)
		fprintf(f, "%u", r->started);
	for (unsigned i = 0; r->th && i < r->nth; i++)
		fprintf(f, "%s%u", i ? "," : "", r->th[i].handed);
	fputc(']', f);
}

void run_threads_stop(struct run *r)
{
	if (!r->th || r->th_stopped)
		return;
	r->th_stopped = 1;
	for (unsigned i = 0; i < r->nth; i++)
		if (r->th[i].running) {
			loop_post(&r->th[i].loop, &r->th[i].stop_task);
			pthread_join(r->th[i].tid, NULL);
			r->th[i].running = 0;
		}
	for (unsigned i = 0; i < r->nth; i++)
		loop_free(&r->th[i].loop);
	if (r->mu_init)
		pthread_mutex_destroy(&r->mu);
	r->mu_init = 0;
}

void run_threads_free(struct run *r)
{
	run_threads_stop(r);
	free(r->th);
	r->th = NULL;
}
