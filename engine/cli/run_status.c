/*
 * run_status — what `mailferry run --status` shows: the view the status
 * server asks on each request (status.h). Finished accounts are kept as
 * short rows (at most RUN_STATUS_ROWS; beyond that they are counted, not
 * listed); running accounts as run_threads_view gives them (read live with
 * one loop, from their workers' snapshots with --threads, so the server
 * on the main loop never reads what a worker writes); accounts not yet
 * read from the file are only a count.
 *
 * Not for: serving (status.c), formats (status_fmt.c), the final report
 * (run_report.c).
 */
#include "engine/cli/run_int.h"

#include <stdlib.h>
#include <string.h>

#include "engine/base/err.h"

#define RUN_STATUS_ROWS 200000u

struct run_status_row {
	unsigned line;
	int exit;
	enum status_state state;
	struct status_counts n;
	double seconds;
	char name[200];
	char error[RUN_ERR_MAX];
};

/* "src -> dst", each escaped (a URL came from the accounts file) and cut. */
static void acct_name(char *out, size_t cap, const char *src, const char *dst)
{
	char a[RUN_ACCT_MAX * 2], b[RUN_ACCT_MAX * 2];

	mf_escape(src, strlen(src), a, sizeof(a));
	mf_escape(dst, strlen(dst), b, sizeof(b));
	snprintf(out, cap, "%.96s -> %.96s", a, b);
}

void run_status_record(struct run *r, const struct run_row *row)
{
	struct run_status_row *s;
	int c = row->exit >= 0 && row->exit < STATUS_CLASSES ? row->exit : 1;

	if (!r->status)
		return;
	if (row->status != RUN_DONE_EARLIER) {
		/* what this process copied: done_earlier rows were an earlier run's */
		r->scls[c].copied += row->copied;
		r->scls[c].skipped += row->skipped;
		r->scls[c].failed += row->failed;
		r->scls[c].bytes += row->bytes;
	}
	r->scls_acc[c]++;
	if (r->nsrows == r->csrows) {
		size_t nc = r->csrows ? r->csrows * 2 : 64;
		struct run_status_row *n;

		if (r->csrows >= RUN_STATUS_ROWS || !(n = realloc(r->srows, nc * sizeof(*n))))
			return;
		r->srows = n;
		r->csrows = nc;
	}
	s = &r->srows[r->nsrows++];
	s->line = row->line;
	s->exit = row->exit;
	s->state = row->exit ? STATUS_FAILED : STATUS_DONE;
	s->n.copied = row->copied;
	s->n.skipped = row->skipped;
	s->n.failed = row->failed;
	s->n.bytes = row->bytes;
	s->seconds = row->seconds;
	acct_name(s->name, sizeof(s->name), row->src, row->dst);
	/* the row's error is already escaped as on stderr */
	snprintf(s->error, sizeof(s->error), "%s", row->error);
}

static void view_snap(void *ud, struct status_snap *s)
{
	struct run *r = ud;
	uint64_t msgs, bytes, known;
	double rate;
	unsigned fin = r->totals.accounts;

	run_threads_view(r);
	s->mode = "run";
	s->title = r->path;
	s->elapsed_s = (double)(loop_now_ms(&r->loop) - r->t0) / 1000.0;
	s->members = r->members;
	s->running = r->running;
	s->done = r->totals.done + r->totals.done_earlier;
	s->failed = r->totals.failed + r->totals.bad_lines;
	s->queued = r->members > fin + r->running ? r->members - fin - r->running : 0;
	if (r->eof)
		s->queued = 0;
	memcpy(s->cls, r->scls, sizeof(s->cls));
	memcpy(s->cls_accounts, r->scls_acc, sizeof(s->cls_accounts));
	for (int c = 0; c < STATUS_CLASSES; c++) {
		s->total.copied += r->scls[c].copied;
		s->total.skipped += r->scls[c].skipped;
		s->total.failed += r->scls[c].failed;
		s->total.bytes += r->scls[c].bytes;
	}
	s->retries = r->total.reconnects;
	for (struct acct *a = r->active; a; a = a->next) {
		s->total.copied += a->vsum.copied;
		s->total.skipped += a->vsum.skipped;
		s->total.failed += a->vsum.failed;
		s->total.bytes += a->vsum.bytes;
		s->retries += a->vsum.reconnects;
	}
	s->eta_s = run_progress_numbers(r, &msgs, &bytes, &rate, &known);
	s->msgs_known = known;
	s->hl = r->hl;
	s->stats = &r->vstats;
}

/* The running accounts as view_snap, just before, took them. */
static void view_accounts(void *ud, status_acct_fn fn, void *arg)
{
	struct run *r = ud;
	struct status_acct sa;
	char name[200];

	for (struct acct *a = r->active; a; a = a->next) {
		memset(&sa, 0, sizeof(sa));
		sa.line = a->line;
		sa.state = STATUS_RUNNING;
		sa.n.copied = a->vsum.copied;
		sa.n.skipped = a->vsum.skipped;
		sa.n.failed = a->vsum.failed;
		sa.n.bytes = a->vsum.bytes;
		sa.msgs_total = a->vprog.msgs_total;
		sa.seconds = (double)(loop_now_ms(&r->loop) - a->t0) / 1000.0;
		acct_name(name, sizeof(name), a->sel.src, a->sel.dst);
		sa.name = name;
		sa.error = a->vsum.first_error;
		sa.subject = a->vprog.subject; /* NULL without --status-show-subjects */
		sa.from = a->vprog.from;
		fn(arg, &sa);
	}
	for (size_t i = 0; i < r->nsrows; i++) {
		const struct run_status_row *s = &r->srows[i];

		memset(&sa, 0, sizeof(sa));
		sa.line = s->line;
		sa.state = s->state;
		sa.exit = s->exit;
		sa.n = s->n;
		sa.seconds = s->seconds;
		sa.name = s->name;
		sa.error = s->error;
		fn(arg, &sa);
	}
}

int run_status_start(struct run *r)
{
	const struct cli *c = r->base;
	struct status_opts o = {
	    .listen = c->status_listen,
	    .token_file = c->status_token_file,
	    .linger_s = c->status_linger,
	};
	struct status_view v = {.ud = r, .snap = view_snap, .accounts = view_accounts};
	struct mf_error err;

	if (!c->status_listen) {
		if (c->status_token_file || c->status_linger || c->status_subjects) {
			fprintf(stderr, "mailferry: --status-token-file, --status-linger and "
			                "--status-show-subjects go with --status\n");
			return 2;
		}
		return 0;
	}
	mf_err_clear(&err);
	if (status_start(&r->status, &r->loop, &o, &v, &err) < 0) {
		fprintf(stderr, "mailferry: %s\n", err.msg);
		return 2;
	}
	return 0;
}

void run_status_free(struct run *r)
{
	status_free(r->status);
	r->status = NULL;
	free(r->srows);
	r->srows = NULL;
	r->nsrows = r->csrows = 0;
}
