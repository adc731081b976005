/*
 * arc_job — what backup and restore do around their job, shared by the
 * single commands (backup_cmd.c, restore_cmd.c) and an accounts-file line
 * (run.c): the options only they know, the refusal of those that do not
 * apply, the archive opened (with its passphrase, cli_archive_open), the
 * run begun with the last-run reconcile (backup) or picked (restore), the
 * job key, the job's archive options, and after the job the run committed
 * (backup, and --prune).
 *
 * Errors are one line on stderr after c->where (an accounts line's
 * "FILE:LINE: ") and copied to c->why; the exit status is 2.
 *
 * Not for: the pipeline (engine/sync), the archive format (store/), the
 * job's loop and state (the callers).
 */
#ifndef MF_ARC_JOB_H
#define MF_ARC_JOB_H

#include <limits.h>
#include <stdint.h>

#include "engine/cli/archive_cmd.h"
#include "engine/cli/cli_int.h"
#include "store/archive_fmt.h"

struct arc_job {
	int restore; /* 0 backup, 1 restore */
	struct cli_archive_opts ao;
	int prune; /* backup --prune */
	/* restore's own options as given, or NULL */
	const char *run, *as_of, *since, *before, *account, *sep;
	int64_t since_t, before_t;
	const char *dir; /* the archive directory as given */
	struct archive *a;
	uint32_t run_id; /* begun (backup) or picked (restore) */
	int reconcile;   /* backup: the account's last run was not committed */
	char real[PATH_MAX];
	char name[AFMT_ACCOUNT_MAX + 1]; /* backup: the account in the archive */
	char who[PATH_MAX + 16];         /* restore: "archive REAL" */
	/* backup: threads compressing beside the archive's writer
	 * (archive_tune.zthreads): 0 the archive's default, -1 none (a line
	 * of `run`, whose other jobs share the CPUs already) */
	int zthreads;
};

/* Takes backup's (--prune, --encrypt) or restore's own options (--run,
 * --as-of, --since, --before, --account, --separator) and
 * --passphrase-file out of argv[1..*argc) in place (stops at "--").
 * j is cleared first. 0 or 2. */
int arc_job_take(struct arc_job *j, const struct cli *c, int restore, int *argc, char **argv);
/* After cli_accounts: the options and accounts that do not apply to the
 * archive refused, restore's dates parsed; dir is the archive's. 0 or 2. */
int arc_job_check(struct arc_job *j, const struct cli *c, const char *dir);
/* Opens the archive (created by a backup), begins (backup) or picks
 * (restore) the run and sets c->job_key. label names the line in JSON
 * events (NULL: none). 0, or 2 with nothing left open. */
int arc_job_open(struct arc_job *j, struct cli *c, const char *label);
/* The job's archive options (after cli_job_opts). */
void arc_job_opts(const struct arc_job *j, struct job_opts *o);
/* After the job (rc: job_migrate's or job_end's): a backup's run is
 * committed unless the job was fatal, then pruned with --prune, and the
 * archive's numbers told (JSON event "archive", an info line). The rc. */
int arc_job_end(struct arc_job *j, const struct cli *c, const char *label, struct job_summary *sum,
                int rc);
/* Closes the archive (if open). */
void arc_job_close(struct arc_job *j);

#endif
