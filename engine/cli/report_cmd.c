/*
 * report_cmd — `mailferry report merge REPORT... [--report FILE] [--json]`:
 * the reports of a run's shards (run --shard K/N --report FILE, each on its
 * own machine) as one: every account row once, sorted by line, the sums,
 * the worst class as the exit code. An account that appears in two reports
 * (shards that overlap, or one report given twice) is named and counted
 * once, and the merge exits 2: the shards were not what they claimed.
 *
 * Not for: the format (run_report.c), running anything.
 */
#include "engine/cli/cli_int.h"
#include "engine/cli/run_report.h"

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

int cmd_report(int argc, char **argv)
{
	struct run_report all;
	struct run_totals t;
	const char *out_path = NULL;
	int json = 0, nfiles = 0, rc = 0;
	unsigned dups = 0;
	FILE *out = NULL;

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
