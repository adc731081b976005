/*
 * run_report — the final report of `mailferry run` and its merge:
 * one row per account (line, accounts, status, exit class, counts, bytes,
 * duration, first error), written as JSON (`--report FILE`) and as a human
 * table; read back and merged by `mailferry report merge` (shards of one
 * run, DESIGN §6). Also the one place that orders exit classes.
 *
 * Exit classes, worst first (the exit code of a run is its worst
 * account's): 2 configuration (a bad line) > 3 connect/TLS > 4 login
 * refused > 5 destination over quota > 1 some messages failed > 0 done.
 * A bad line comes first because nothing of that account was even tried.
 *
 * The reader is pure (no I/O) and bounded: it takes one whole report in a
 * buffer (at most RUN_REPORT_MAX bytes: reports are written by us, a row is
 * a few hundred bytes), rejects anything that is not the JSON it expects
 * with a position, and never trusts a string to be clean: rows are escaped
 * again on the way to a terminal. Fuzzed by tests/fuzz/fuzz_run_report.c.
 * It is not incremental: a report is a file of known size, not a stream.
 *
 * Not for: running accounts (run.c), the journal of finished accounts
 * (run_journal.c).
 */
#ifndef MF_RUN_REPORT_H
#define MF_RUN_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/base/err.h"

#define RUN_REPORT_MAX (256u << 20)
#define RUN_REPORT_ROWS_MAX 10000000u
#define RUN_ACCT_MAX 272 /* "user@host" shown (escaped on output) */
#define RUN_ERR_MAX 240  /* the first error message of an account */
#define RUN_JOB_MAX 300  /* "FILE:LINE" */

/* Status of one account in a run. */
enum run_status {
	RUN_DONE,         /* ran, everything copied */
	RUN_FAILED,       /* ran (or tried), something failed: see class */
	RUN_BAD_LINE,     /* the line could not be used: class 2 */
	RUN_DONE_EARLIER, /* --resume: finished by an earlier run, not contacted */
};

struct run_row {
	unsigned line;
	enum run_status status;
	int exit; /* 0 ok, 1 failed, 2 config, 3 connect, 4 auth, 5 quota */
	uint64_t copied, skipped, failed, bytes;
	double seconds;
	char job[RUN_JOB_MAX]; /* "FILE:LINE" */
	char src[RUN_ACCT_MAX], dst[RUN_ACCT_MAX];
	char action[8]; /* "migrate", "backup", "restore"; "" for a bad line */
	char error[RUN_ERR_MAX]; /* "" if none */
};

struct run_totals {
	unsigned accounts, done, failed, bad_lines, done_earlier;
	uint64_t copied, skipped, failed_msgs, bytes;
	int exit; /* the worst class */
};

/* Exit classes: rank (0 best .. 5 worst) and "is a worse than b". */
int run_class_rank(int exit_code);
int run_class_worse(int a, int b);
/* The worse of the two exit codes. */
int run_class_max(int a, int b);
const char *run_class_name(int exit_code);
const char *run_status_name(enum run_status s);

void run_totals_add(struct run_totals *t, const struct run_row *r);

/* The JSON report: head (what run it is; shard may be NULL), rows (each
 * with the separator it needs: first tells), tail (totals, exit). */
void run_report_head(FILE *f, const char *accounts_file, const char *shard);
void run_report_row(FILE *f, const struct run_row *r, int first);
void run_report_tail(FILE *f, const struct run_totals *t, double seconds);

/* The human table: header, one row (escaped, cut to fit), totals line. */
void run_table_head(FILE *f);
void run_table_row(FILE *f, const struct run_row *r);
void run_table_tail(FILE *f, const struct run_totals *t);

/* A report read back: its rows (allocated; run_report_free) and shard. */
struct run_report {
	struct run_row *rows;
	size_t nrows, crows;
	char shard[32];
	char accounts_file[RUN_JOB_MAX];
};

/* Parses one whole report buf[0..n). 0, or -EINVAL with err naming the
 * byte offset and what was wrong (rows read so far are kept; free them). */
int run_report_parse(const char *buf, size_t n, struct run_report *out, struct mf_error *err);
void run_report_free(struct run_report *r);

/* Merge helpers: rows sorted by job (file, then line number). */
void run_rows_sort(struct run_row *rows, size_t n);

#endif
