/*
 * run_int — what `mailferry run` shares between its files (run.c: the
 * accounts and their jobs; run_progress.c: the display): one account
 * while its job runs, and the run. Private to engine/cli/.
 */
#ifndef MF_RUN_INT_H
#define MF_RUN_INT_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/cli/accounts.h"
#include "engine/cli/arc_job.h"
#include "engine/cli/cli_int.h"
#include "engine/cli/run_journal.h"
#include "engine/cli/run_report.h"
#include "engine/cli/status.h"
#include "engine/runtime/loop.h"
#include "protocols/mailhdr.h"

/* Rows kept for the table at the end (the report file has them all). */
#define RUN_TABLE_ROWS 100
/* Running accounts shown with a bar on a TTY. */
#define RUN_BUSIEST 5

struct run;

/* What the selection of a line found (line_select). */
struct line_sel {
	int kind;	/* ACCOUNT_NONE (blank/comment), else an account or a bad line */
	int bad;	/* accounts_parse_line refused it */
	int member;	/* in this run's shard */
	enum account_action action;	/* migrate, backup, restore (not bad) */
	struct run_id id;
	char src[RUN_ACCT_MAX], dst[RUN_ACCT_MAX];	/* redacted URLs */
	char why[RUN_ERR_MAX];
};

/* One account while its job runs. */
struct acct {
	struct run *r;
	unsigned line;
	char buf[ACCOUNTS_LINE_MAX + 1];	/* the line; options point into it */
	struct cli c;
	struct job_opts o;
	struct job_summary sum;
	struct state *st;
	struct job *j;
	char where[300];
	char label[300];
	char state_dir[4200];
	struct line_sel sel;
	char why[RUN_ERR_MAX];	/* the first configuration error of the line */
	uint64_t t0;
	struct acct *prev, *next;	/* running accounts */
	/* --threads (run_threads.c) */
	struct run_thread *th;	/* the worker it was handed to */
	struct acct *qnext;	/* in a hand-over queue (under run.mu) */
	struct acct *tnext;	/* running on th (th's thread only) */
	int rc;			/* job_end's */
	int start_failed;	/* job_start refused it (why says why) */
	/* sum and progress as of the worker's last snapshot (under run.mu;
	 * psnap's subject and from point into psubj and pfrom) */
	struct job_summary snap;
	struct job_progress psnap;
	char psubj[MAILHDR_TEXT_MAX], pfrom[MAILHDR_TEXT_MAX];
	/* what the progress display and the status server show
	 * (run_threads_view; main thread only; vprog's subject and from
	 * point into vsubj and vfrom, or into the job with one loop) */
	struct job_summary vsum;
	struct job_progress vprog;
	char vsubj[MAILHDR_TEXT_MAX], vfrom[MAILHDR_TEXT_MAX];
	/* its state is opened off the loop (run_open.c) */
	struct acct *onext;
	int orc;
	struct mf_error oerr;
	/* a backup or restore line (run_arc.c), else NULL */
	struct arc_job *arc;
	char arc_key[4200];	/* the archive's real path (or as given) */
	struct acct *pnext;	/* parked: waiting for its archive */
	struct acct *hnext;	/* holding its archive open */
	/* started again after a first login the server said "later" to
	 * (job_summary.login_later): how often so far, and the wait */
	unsigned tries;
	struct loop_timer retry_timer;
};

struct run_thread;
struct run_opener;

struct run {
	struct loop loop;
	const struct cli *base;
	const char *path;
	FILE *f;
	unsigned lineno;
	unsigned running;
	unsigned accounts, ok, failed, bad_lines;
	int eof, warned_mode, file_shared;
	struct job_summary total;
	struct hostlimit *hl;	/* --max-per-host, shared by every account */
	/* selection */
	unsigned shard_k, shard_n;	/* shard_n 0: every line */
	struct run_journal journal;
	int journal_ok;
	char scratch[ACCOUNTS_LINE_MAX + 1];
	/* report */
	FILE *report;
	int report_rows;
	struct run_totals totals;
	struct run_row table[RUN_TABLE_ROWS];
	unsigned ntable, table_omitted;
	/* progress */
	struct acct *active;	/* running accounts */
	unsigned members;	/* accounts (and bad lines) this run takes */
	int tty, live, shown;
	unsigned interval_ms;
	struct loop_timer tick;
	uint64_t t0;
	/* --threads N > 1 (run_threads.c); th NULL: one loop */
	struct run_thread *th;
	unsigned nth;
	int th_stopped;
	unsigned started;	/* accounts whose job started (or was handed over) */
	pthread_mutex_t mu;	/* hand-over queues, doneq, snapshots */
	int mu_init;
	struct acct *doneq, *donetail;
	struct loop_task done_task;
	/* account states opened off the loop (run_open.c) */
	struct run_opener *opener;
	unsigned opening;	/* accounts handed to it, not back yet */
	int ended;		/* every account is over (run_maybe_end) */
	/* --status (run_status.c): the server, and what it shows of the
	 * accounts that finished (the running ones from run_threads_view) */
	struct status *status;
	struct job_stats stats;		/* commit latencies, one loop (its jobs write it) */
	struct job_stats vstats;	/* what the server shows (run_threads_view) */
	/* archive lines (run_arc.c): those waiting for an archive another
	 * line holds (in file order), and those holding one */
	struct acct *parked, *parked_tail, *holders;
	unsigned nparked;
	unsigned nretry;	/* accounts waiting to start again (acct.retry_timer) */
	struct run_status_row *srows;
	size_t nsrows, csrows;
	struct status_counts scls[STATUS_CLASSES];
	unsigned scls_acc[STATUS_CLASSES];
};

/* run_threads.c: N worker loops on threads of their own, sharing r->hl;
 * r->loop gets an inbox (it then runs until loop_stop). 0 or -errno (what
 * was started is stopped by run_threads_stop). */
int run_threads_start(struct run *r, unsigned n);
/* Hands a (set up, state open) to the least busy worker, which starts its
 * job; run_acct_back(a) follows on the main loop. */
void run_threads_hand(struct run *r, struct acct *a);
/* On the main thread: fills vsum and vprog of the running accounts, and
 * r->vstats, for the progress display and the status server. With one
 * loop they are read live; with workers they are the workers' last
 * snapshots (each worker copies its accounts' numbers every SNAP_MS under
 * r->mu), so the main thread never reads memory a worker writes. */
void run_threads_view(struct run *r);
/* ,"threads":N,"accounts_per_thread":[...] for the run summary (before
 * run_threads_stop). */
void run_threads_json(const struct run *r, FILE *f);
/* Stops and joins the workers (every account back), frees their loops. */
void run_threads_stop(struct run *r);
/* Frees what run_threads_start allocated (stopping the workers first). */
void run_threads_free(struct run *r);
/* run.c: an account handed to a worker is back (finished, or refused by
 * job_start with start_failed). */
void run_acct_back(struct acct *a);

/* run_open.c: one thread that opens the accounts' states, in order, off
 * r->loop (which gets an inbox unless run_threads_start gave it one).
 * run_open_hand(r, a) queues a (r->opening counts it); run_acct_opened(a)
 * follows on the loop with a->orc (0, or state_open's code with a->oerr)
 * and a->st. run_open_stop joins the thread (the loop no longer runs). */
int run_open_start(struct run *r);
void run_open_hand(struct run *r, struct acct *a);
void run_open_stop(struct run *r);
/* run.c: a's state is open (or could not be): its job starts. */
void run_acct_opened(struct acct *a);

/* The progress timer (loop_timer_start with r->interval_ms): a live
 * display on a TTY (r->live), a plain line otherwise. */
void run_on_progress(struct loop *l, struct loop_timer *t);
/* Clears the live display before a line is printed for good. */
void run_progress_clear(struct run *r);
/* Messages copied and bytes (finished and running accounts), bytes per
 * second, the messages the running accounts' mailboxes hold; returns the
 * ETA in seconds, or -1 if it cannot be told. */
double run_progress_numbers(struct run *r, uint64_t *msgs, uint64_t *bytes, double *rate,
                            uint64_t *known);

/* run_arc.c: a backup or restore line. run_arc_setup parses its words
 * (argv[0..argc): the two places, then options; a->c holds the run's
 * options) into a->c and a new a->arc: 0, or 2 (reported). */
int run_arc_setup(struct acct *a, enum account_action action, int argc, char **argv);
/* Before the job: 0 the archive is open (a holds it; c.job_key set),
 * 1 another line holds it (a is parked: run_arc_next hands it back once
 * that one is done), 2 it cannot be opened (reported, why set). */
int run_arc_acquire(struct acct *a);
/* Closes a's archive (if it holds it) and frees a->arc. */
void run_arc_release(struct acct *a);
/* A parked account whose archive no line holds now (taken out of the
 * queue), or NULL. */
struct acct *run_arc_next(struct run *r);

/* run_status.c: --status for `run`. Starts the server (0, or 2 with the
 * reason printed); records a finished account for it; frees it all. */
int run_status_start(struct run *r);
void run_status_record(struct run *r, const struct run_row *row);
void run_status_free(struct run *r);

#endif
