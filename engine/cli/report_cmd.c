/*
 * report_cmd — `mailferry report merge REPORT... [--report FILE] [--json]`:
 * the reports of a run's shards (run --shard K/N --report FILE, each on its
 * own machine) as one: every account row once, sorted by line, the sums,
 * the worst class as the exit code. An account that appears in two reports
 * (shards that overlap, or one report given twice) is named and counted
 * once, and the merge exits 2: the shards were not what they claimed.
 *
 * `mailferry report show REPORT [--html OUT.html]`: one report as the
 * table, or as the status page (status_page.c) with the report's data
 * built in: static, no server, something an admin can mail to a customer.
 *
 * Not for: the format (run_report.c), running anything.
 */
#include "engine/cli/cli_int.h"
#include "engine/cli/run_report.h"
#include "engine/cli/status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Reads path whole (at most RUN_REPORT_MAX bytes) and adds its rows to
 * all. 0, or -1 (printed). */
static int merge_one(const char *path, struct run_report *all)
{
	struct run_report one;
	struct mf_error err;
	struct stat st;
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;
	int rc;

	memset(&one, 0, sizeof(one));
	if (!f || fstat(fileno(f), &st) < 0) {
		fprintf(stderr, "mailferry: cannot read report %s: %s\n", path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	if ((uint64_t)st.st_size > RUN_REPORT_MAX) {
		fprintf(stderr, "mailferry: report %s: larger than %u MiB\n", path,
		        RUN_REPORT_MAX >> 20);
		fclose(f);
		return -1;
	}
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		fprintf(stderr, "mailferry: report %s: out of memory\n", path);
		fclose(f);
		return -1;
	}
	n = fread(buf, 1, (size_t)st.st_size, f);
	fclose(f);
	rc = run_report_parse(buf, n, &one, &err);
	free(buf);
	if (rc < 0) {
		char esc[600];

		mf_escape(path, strlen(path), esc, sizeof(esc));
		fprintf(stderr, "mailferry: %s: %s\n", esc, err.msg);
		run_report_free(&one);
		return -1;
	}
	if (all->nrows + one.nrows > all->crows) {
		size_t nc = all->nrows + one.nrows + 64;
		struct run_row *nr = realloc(all->rows, nc * sizeof(*nr));

		if (!nr) {
			fprintf(stderr, "mailferry: out of memory\n");
			run_report_free(&one);
			return -1;
		}
		all->rows = nr;
		all->crows = nc;
	}
	if (one.nrows)
		memcpy(all->rows + all->nrows, one.rows, one.nrows * sizeof(*one.rows));
	all->nrows += one.nrows;
	if (!all->accounts_file[0])
		memcpy(all->accounts_file, one.accounts_file, sizeof(all->accounts_file));
	run_report_free(&one);
	return 0;
}

static int usage_merge(void)
{
	fprintf(stderr, "usage: mailferry report merge REPORT... [--report FILE] [--json]\n");
	return 2;
}

/* ---- report show ------------------------------------------------------------ */

struct show {
	const struct run_report *rep;
	struct run_totals t;
	double seconds; /* the longest account: the run lasted at least that */
};

static void show_snap(void *ud, struct status_snap *s)
{
	struct show *sh = ud;

	s->mode = "report";
	s->title = sh->rep->accounts_file;
	s->finished = 1;
	s->elapsed_s = sh->seconds;
	s->members = sh->t.accounts;
	s->done = sh->t.done + sh->t.done_earlier;
	s->failed = sh->t.failed + sh->t.bad_lines;
	s->total.copied = sh->t.copied;
	s->total.skipped = sh->t.skipped;
	s->total.failed = sh->t.failed_msgs;
	s->total.bytes = sh->t.bytes;
	s->eta_s = 0;
}

static void show_accounts(void *ud, status_acct_fn fn, void *arg)
{
	struct show *sh = ud;
	char a[RUN_ACCT_MAX * 4], b[RUN_ACCT_MAX * 4], name[RUN_ACCT_MAX * 8 + 8];
	char err[RUN_ERR_MAX * 4];

	for (size_t i = 0; i < sh->rep->nrows; i++) {
		const struct run_row *r = &sh->rep->rows[i];
		struct status_acct x;

		memset(&x, 0, sizeof(x));
		x.line = r->line;
		x.exit = r->exit;
		x.state = r->exit ? STATUS_FAILED : STATUS_DONE;
		x.n.copied = r->copied;
		x.n.skipped = r->skipped;
		x.n.failed = r->failed;
		x.n.bytes = r->bytes;
		x.seconds = r->seconds;
		/* a report file is input: escaped again */
		mf_escape(r->src, strlen(r->src), a, sizeof(a));
		mf_escape(r->dst, strlen(r->dst), b, sizeof(b));
		snprintf(name, sizeof(name), "%s -> %s", a, b);
		mf_escape(r->error, strlen(r->error), err, sizeof(err));
		x.name = name;
		x.error = err;
		fn(arg, &x);
	}
}

static int cmd_show(int argc, char **argv)
{
	struct run_report rep;
	struct show sh;
	struct status_view v = {.ud = &sh, .snap = show_snap, .accounts = show_accounts};
	struct status_snap snap;
	struct sbuf b = {0};
	const char *html = NULL, *path = NULL;
	FILE *f;
	int rc;

	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--html") && i + 1 < argc)
			html = argv[++i];
		else if (argv[i][0] != '-' && !path)
			path = argv[i];
		else
			path = NULL, i = argc;
	}
	if (!path) {
		fprintf(stderr, "usage: mailferry report show REPORT [--html OUT.html]\n");
		return 2;
	}
	memset(&rep, 0, sizeof(rep));
	memset(&sh, 0, sizeof(sh));
	if (merge_one(path, &rep) < 0) {
		run_report_free(&rep);
		return 2;
	}
	run_rows_sort(rep.rows, rep.nrows);
	sh.rep = &rep;
	for (size_t i = 0; i < rep.nrows; i++) {
		run_totals_add(&sh.t, &rep.rows[i]);
		if (rep.rows[i].seconds > sh.seconds)
			sh.seconds = rep.rows[i].seconds;
	}
	if (!html) {
		run_table_head(stdout);
		for (size_t i = 0; i < rep.nrows; i++)
			run_table_row(stdout, &rep.rows[i]);
		run_table_tail(stdout, &sh.t);
		run_report_free(&rep);
		return sh.t.exit;
	}
	memset(&snap, 0, sizeof(snap));
	show_snap(&sh, &snap);
	status_fmt_json(&b, &snap, &v, NULL, 0);
	if (b.oom || !(f = fopen(html, "we"))) {
		fprintf(stderr, "mailferry: cannot write %s: %s\n", html,
		        b.oom ? "out of memory" : strerror(errno));
		sbuf_free(&b);
		run_report_free(&rep);
		return 2;
	}
	rc = status_page_write(f, b.p, b.n);
	if (fclose(f) || rc < 0) {
		fprintf(stderr, "mailferry: writing %s failed\n", html);
		rc = -1;
	}
	sbuf_free(&b);
	run_report_free(&rep);
	if (rc < 0)
		return 2;
	printf("wrote %s: %u accounts\n", html, sh.t.accounts);
	return sh.t.exit;
}

int cmd_report(int argc, char **argv)
{
	struct run_report all;
	struct run_totals t;
	const char *out_path = NULL;
	int json = 0, nfiles = 0, rc = 0;
	unsigned dups = 0;
	FILE *out = NULL;

	if (argc >= 2 && !strcmp(argv[1], "show"))
		return cmd_show(argc, argv);
	if (argc < 2 || strcmp(argv[1], "merge"))
		return usage_merge();
	memset(&all, 0, sizeof(all));
	memset(&t, 0, sizeof(t));
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else if (!strcmp(argv[i], "--report")) {
			if (++i == argc)
				return usage_merge();
			out_path = argv[i];
		} else if (argv[i][0] == '-' && argv[i][1]) {
			return usage_merge();
		}
	}
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			continue;
		if (!strcmp(argv[i], "--report")) {
			i++;
			continue;
		}
		nfiles++;
		if (merge_one(argv[i], &all) < 0) {
			run_report_free(&all);
			return 2;
		}
	}
	if (!nfiles) {
		run_report_free(&all);
		return usage_merge();
	}
	run_rows_sort(all.rows, all.nrows);
	if (out_path && !(out = fopen(out_path, "we"))) {
		fprintf(stderr, "mailferry: cannot write %s: %s\n", out_path, strerror(errno));
		run_report_free(&all);
		return 2;
	}
	if (out)
		run_report_head(out, all.accounts_file, NULL);
	if (json)
		run_report_head(stdout, all.accounts_file, NULL);
	for (size_t i = 0, w = 0; i < all.nrows; i++) {
		const struct run_row *r = &all.rows[i];

		if (i && !strcmp(r->job, all.rows[i - 1].job)) {
			char esc[RUN_JOB_MAX * 4];

			mf_escape(r->job, strlen(r->job), esc, sizeof(esc));
			fprintf(stderr,
			        "mailferry: %s is in more than one report (shards overlap?)\n",
			        esc);
			dups++;
			continue;
		}
		run_totals_add(&t, r);
		if (out)
			run_report_row(out, r, !w);
		if (json)
			run_report_row(stdout, r, !w);
		all.rows[w++] = *r;
	}
	if (out) {
		run_report_tail(out, &t, 0);
		if (fclose(out)) {
			fprintf(stderr, "mailferry: writing %s: %s\n", out_path, strerror(errno));
			rc = 2;
		}
	}
	if (json)
		run_report_tail(stdout, &t, 0);
	{
		FILE *tf = json ? stderr : stdout;

		run_table_head(tf);
		for (size_t i = 0; i < t.accounts; i++)
			run_table_row(tf, &all.rows[i]);
		run_table_tail(tf, &t);
		fprintf(tf, "merged %d reports%s\n", nfiles, dups ? " (with duplicates)" : "");
	}
	run_report_free(&all);
	if (rc || dups)
		return 2;
	return t.exit;
}
