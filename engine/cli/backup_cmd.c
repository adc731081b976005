/*
 * backup_cmd — `mailferry backup imap[s]://user@host ARCHIVE_DIR [options]`:
 * one account copied into an archive (store/archive.h) through the one
 * pipeline, the archive as the sink (engine/sync/sink_archive.c).
 *
 * A backup run is begun in the archive before the job starts and
 * committed after it ends (also when some messages failed: what was
 * stored is sound, and the failed ones are tried again next run, as with
 * migrate). Incremental through the job's state (--state), keyed by the
 * account and the archive's real path. Runs are per account "user@host"
 * ("pop3:user@host" for a POP3 source: one mailbox, INBOX, each message
 * under the id the state's uidls table gives its UIDL, source_pop3.c).
 *
 * --prune: expunges are recorded (as --delete), and once the run is
 * committed every UID the source deleted is forgotten in every run, and
 * packs mostly dead are rewritten (store/archive_prune.c).
 *
 * --encrypt --passphrase-file F creates a new archive encrypted; an
 * encrypted archive needs its passphrase on every run (cli_archive_open).
 *
 * The steps around the job are arc_job.c's (an accounts-file line's
 * "backup SRC ARCHIVE" takes the same).
 *
 * Not for: the pipeline (engine/sync), the archive format (store/).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cli/arc_job.h"
#include "engine/cli/cli_int.h"
#include "engine/sync/hostlimit.h"
#include "store/archive.h"

int cmd_backup(int argc, char **argv)
{
	struct cli c;
	struct job_opts o;
	struct job_summary sum;
	struct loop loop;
	struct state *st;
	struct mf_error err;
	struct arc_job *j;
	int rc;

	cli_defaults(&c);
	if (!(j = calloc(1, sizeof(*j)))) {
		fprintf(stderr, "mailferry: out of memory\n");
		return 1;
	}
	if ((rc = arc_job_take(j, &c, 0, &argc, argv)) || (rc = cli_parse(&c, argc, argv, 0))) {
		free(j);
		return rc == 1 ? 0 : rc;
	}
	if (argc - optind != 2) {
		fprintf(
		    stderr,
		    "usage: mailferry backup imap[s]|pop3[s]://user@host ARCHIVE_DIR [options]\n");
		free(j);
		return 2;
	}
	if ((rc = cli_accounts(&c, argv[optind], NULL)) ||
	    (rc = arc_job_check(j, &c, argv[optind + 1])) ||
	    (rc = arc_job_open(j, &c, NULL))) {
		cli_forget(&c);
		free(j);
		return rc;
	}
	if (c.insecure)
		mf_log(MF_LOG_WARN, "--insecure: TLS certificates are NOT verified; anyone on the "
		                    "path can read the passwords and the mail");
	mf_err_clear(&err);
	cli_job_opts(&c, &o);
	arc_job_opts(j, &o);
	if (job_opts_check(&o, &err) < 0 || state_open_flags(&st, c.state_dir, 0, &err) < 0) {
		fprintf(stderr, "mailferry: %s\n", err.msg);
		rc = 2;
		goto out;
	}
	if ((rc = loop_init(&loop, 256)) < 0) {
		fprintf(stderr, "mailferry: io_uring setup failed: %s\n", strerror(-rc));
		state_close(st);
		rc = 1;
		goto out;
	}
	if (cli_limits_new(&c, &loop, &o.hostlimit)) {
		loop_free(&loop);
		state_close(st);
		rc = 1;
		goto out;
	}
	mf_err_clear(&err);
	rc = job_migrate(&loop, st, &o, &sum, &err);
	if (rc < 0) {
		fprintf(stderr, "mailferry: %s\n", err.msg);
		rc = 1;
	}
	if (cli_limits_check(o.hostlimit) && !rc)
		rc = 1;
	rc = arc_job_end(j, &c, NULL, &sum, rc);
	rc = cli_exit_code(&sum, rc);
	c.hl_report = o.hostlimit;
	cli_summary(&c, &sum, rc);
	hostlimit_free(o.hostlimit);
	loop_free(&loop);
	state_close(st);
out:
	arc_job_close(j);
	free(j);
	cli_forget(&c);
	return rc;
}
