/*
 * status_migrate — `mailferry migrate --status`: one job on the loop with
 * the status server beside it (the view of one account: its counts, its
 * mailboxes' progress, its hosts). Like job_migrate, but the loop keeps
 * the server's listener in flight, so the job's end tells the server to
 * finish (after --status-linger) and the loop then runs out. A first
 * login the server said "later" to starts the job again after a backoff,
 * up to --retries times, as migrate without --status does (the server
 * shows the account running meanwhile).
 *
 * Not for: the job (engine/sync), serving (status.c).
 */
#include "engine/cli/cli_int.h"
#include "engine/cli/status.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "engine/sync/hostlimit.h"

struct mig {
	struct loop *l;
	struct job *j;
	struct job_summary *sum;
	struct status *status;
	struct job_stats stats;
	const char *title;
	const struct hostlimit *hl;
	uint64_t t0;
	int done;
	/* first-login retries: the job again with the same state and options */
	struct state *st;
	struct job_opts *o;
	struct mf_error *err;
	struct loop_timer retry_timer;
	unsigned tries, retries;
	int start_rc; /* job_start's error on a retry (the job is gone) */
};

static void mig_snap(void *ud, struct status_snap *s)
{
	struct mig *m = ud;
	struct job_progress p = {0};
	const struct job_summary *x = m->sum;
	uint64_t seen = x->copied + x->skipped + x->failed;
	double secs = (double)(loop_now_ms(m->l) - m->t0) / 1000.0;

	s->mode = "migrate";
	s->title = m->title;
	s->elapsed_s = secs;
	s->members = 1;
	s->running = !m->done;
	s->done = m->done && !x->first_error[0] && !x->failed;
	s->failed = m->done && !s->done;
	s->total.copied = x->copied;
	s->total.skipped = x->skipped;
	s->total.failed = x->failed;
	s->total.bytes = x->bytes;
	s->retries = x->reconnects;
	if (m->j && !m->done)
		job_progress_get(m->j, &p);
	s->msgs_known = p.msgs_total;
	s->eta_s = -1;
	if (p.msgs_total && seen && secs > 1)
		s->eta_s =
		    p.msgs_total > seen ? (double)(p.msgs_total - seen) * secs / (double)seen : 0;
	s->hl = m->hl;
	s->stats = &m->stats;
}

static void mig_accounts(void *ud, status_acct_fn fn, void *arg)
{
	struct mig *m = ud;
	struct status_acct a;
	struct status_snap s;

	memset(&s, 0, sizeof(s));
	mig_snap(m, &s);
	memset(&a, 0, sizeof(a));
	a.line = 1;
	a.state = s.running ? STATUS_RUNNING : s.done ? STATUS_DONE : STATUS_FAILED;
	a.exit = cli_exit_code(m->sum, s.failed);
	a.n = s.total;
	a.msgs_total = s.msgs_known;
	a.seconds = s.elapsed_s;
	a.name = m->title;
	a.error = m->sum->first_error;
	if (m->j && !m->done) {
		struct job_progress p;

		job_progress_get(m->j, &p);
		a.subject = p.subject; /* NULL without --status-show-subjects */
		a.from = p.from;
	}
	fn(arg, &a);
}

static void mig_done(struct job *j, void *ud);

static void mig_retry(struct loop *l, struct loop_timer *t)
{
	struct mig *m = (struct mig *)((char *)t - offsetof(struct mig, retry_timer));
	int rc;

	memset(m->sum, 0, sizeof(*m->sum));
	m->o->later_quiet = m->tries < m->retries;
	if ((rc = job_start(&m->j, l, m->st, m->o, m->sum, mig_done, m, m->err)) < 0) {
		m->j = NULL;
		m->start_rc = rc;
		m->done = 1;
		status_finish(m->status);
	}
}

static void mig_done(struct job *j, void *ud)
{
	struct mig *m = ud;
	uint64_t ms;

	if (m->sum->login_later && m->tries < m->retries) {
		ms = cli_later_wait(m->sum, m->tries++, m->retries,
		                    loop_now_ms(m->l) ^ (uint64_t)getpid(), "", "starting again");
		job_end(j);
		m->j = NULL;
		loop_timer_start(m->l, &m->retry_timer, ms, mig_retry);
		return;
	}
	m->done = 1;
	status_finish(m->status);
}

int status_migrate(const struct cli *c, const char *title, struct loop *l, struct state *st,
                   struct job_opts *o, struct job_summary *sum, struct mf_error *err)
{
	struct mig m = {.l = l, .sum = sum, .title = title, .st = st, .o = o, .err = err,
	                .retries = c->retries};
	struct status_opts so = {
	    .listen = c->status_listen,
	    .token_file = c->status_token_file,
	    .linger_s = c->status_linger,
	};
	struct status_view v = {.ud = &m, .snap = mig_snap, .accounts = mig_accounts};
	int rc;

	m.t0 = loop_now_ms(l);
	m.hl = o->hostlimit;
	memset(sum, 0, sizeof(*sum));
	o->stats = &m.stats;
	if (status_start(&m.status, l, &so, &v, err) < 0)
		return -EINVAL;
	o->later_quiet = m.tries < m.retries; /* as mig_retry sets it */
	if ((rc = job_start(&m.j, l, st, o, sum, mig_done, &m, err)) < 0) {
		status_finish(m.status);
		loop_run(l);
		status_free(m.status);
		return rc;
	}
	rc = loop_run(l);
	if (rc < 0) {
		if (m.j)
			job_end(m.j);
		status_free(m.status);
		mf_err_set(err, rc, "event loop failed: %s", strerror(-rc));
		return rc;
	}
	if (!m.done)
		mf_log(MF_LOG_ERROR, "internal: the loop ended before the job");
	if (m.j)
		rc = job_end(m.j) || !m.done;
	else
		rc = m.start_rc < 0 ? m.start_rc : 1; /* a retry's job_start failed: err says why */
	status_free(m.status);
	return rc;
}
