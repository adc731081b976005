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
 * Not for: the pipeline (engine/sync), the archive format (store/).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/cli/archive_cmd.h"
#include "engine/cli/cli_int.h"
#include "engine/sync/hostlimit.h"
#include "store/archive.h"

/* --prune rewrites a pack once less than this share of its raw bytes
 * is still named by the index. */
#define BACKUP_PRUNE_MIN_LIVE 0.9

struct last_run {
	const char *account;
	uint32_t id;
	int committed, seen;
};

static int last_run_fn(void *ctx, const struct archive_run_info *r)
{
	struct last_run *l = ctx;

	if (!strcmp(r->account, l->account)) {
		l->id = r->id;
		l->committed = r->committed;
		l->seen = 1;
	}
	return 0;
}

/* Takes --prune out of argv (stops at "--"); 1 if it was there. */
static int take_prune(int *argc, char **argv)
{
	int i, j, found = 0;

	for (i = j = 1; i < *argc; i++) {
		if (!strcmp(argv[i], "--")) {
			while (i < *argc)
				argv[j++] = argv[i++];
			break;
		}
		if (!strcmp(argv[i], "--prune"))
			found = 1;
		else
			argv[j++] = argv[i];
	}
	*argc = j;
	argv[j] = NULL;
	return found;
}

/* --prune after a committed run: what the source deleted leaves every run
 * and the index, then packs mostly dead are rewritten (archive_prune.c).
 * 0, or -1 after one line on stderr. */
static int backup_prune(struct archive *a, const char *real, int json)
{
	struct archive_compact_stats cs;
	struct mf_error err = {0};
	uint64_t uids, objs;

	if (archive_prune_deleted(a, &uids, &objs, &err) < 0 ||
	    archive_compact(a, BACKUP_PRUNE_MIN_LIVE, &cs, &err) < 0) {
		mf_print("mailferry: archive %s: prune: %s", real, err.msg);
		return -1;
	}
	if (json) {
		printf("{\"event\":\"prune\",\"uids\":%llu,\"objects\":%llu,\"packs_rewritten\":%u,"
		       "\"messages_moved\":%llu,\"bytes_before\":%llu,\"bytes_after\":%llu,"
		       "\"failed\":%llu}\n",
		       (unsigned long long)uids, (unsigned long long)objs, cs.packs,
		       (unsigned long long)cs.moved, (unsigned long long)cs.bytes_before,
		       (unsigned long long)cs.bytes_after, (unsigned long long)cs.failed);
		fflush(stdout);
	}
	if (mf_log_enabled(MF_LOG_INFO))
		fprintf(
		    stderr,
		    "mailferry: archive %s: prune: %llu deleted messages forgotten in every run, "
		    "%llu stored messages dropped; %u packs rewritten (%llu messages moved, "
		    "%llu bytes now %llu)\n",
		    real, (unsigned long long)uids, (unsigned long long)objs, cs.packs,
		    (unsigned long long)cs.moved, (unsigned long long)cs.bytes_before,
		    (unsigned long long)cs.bytes_after);
	return cs.failed ? -1 : 0;
}

static int refuse(const char *what)
{
	fprintf(stderr, "mailferry: backup: %s\n", what);
	return 2;
}

int cmd_backup(int argc, char **argv)
{
	struct cli c;
	struct job_opts o;
	struct job_summary sum;
	struct loop loop;
	struct state *st;
	struct archive *a;
	struct archive_stats as;
	struct mf_error err;
	struct last_run lr;
	struct cli_archive_opts ao;
	char account[AFMT_ACCOUNT_MAX + 1], real[PATH_MAX];
	const char *dir;
	uint32_t run;
	int rc, prune;

	if ((rc = cli_archive_take_opts(&argc, argv, &ao, 1, "backup")))
		return rc;
	prune = take_prune(&argc, argv);
	cli_defaults(&c);
	if ((rc = cli_parse(&c, argc, argv, 0)))
		return rc == 1 ? 0 : rc;
	if (argc - optind != 2) {
		fprintf(
		    stderr,
		    "usage: mailferry backup imap[s]|pop3[s]://user@host ARCHIVE_DIR [options]\n");
		return 2;
	}
	if (c.dedupe || c.state_reset)
		return refuse("--dedupe and --state-reset are not supported by backup (the archive "
		              "dedupes by content itself)");
	if (c.dry_run || c.check)
		return refuse("--dry-run and --check are not supported by backup");
	if (c.nmaps || c.nrenames || c.dst_prefix || c.mail_from || c.uncertain_skip ||
	    c.no_chunking || c.dst_pw_file || c.dst_authuser || c.dst_tok_file || c.dst_tok_cmd)
		return refuse("destination options (--map, --rename, --dst-*, --mail-from, "
		              "--uncertain, --no-chunking) do not apply to an archive");
	if ((rc = cli_accounts(&c, argv[optind], NULL)))
		return rc;
	if (c.su.kind != URL_IMAP && c.su.kind != URL_POP3) {
		cli_forget(&c);
		return refuse("the source must be imap[s]:// or pop3[s]://");
	}
	if (c.pop3_delete) {
		cli_forget(&c);
		return refuse("--pop3-delete does not apply to backup (the archive is not a "
		              "mailbox to move the mail into)");
	}
	if (c.insecure)
		mf_log(MF_LOG_WARN, "--insecure: TLS certificates are NOT verified; anyone on the "
		                    "path can read the passwords and the mail");
	dir = argv[optind + 1];
	/* a POP3 maildrop is another account than the IMAP one of the same
	 * user: its own runs (one mailbox, INBOX, UIDs from its UIDLs) */
	if (cli_archive_account(&c.su, account, sizeof(account)) < 0) {
		cli_forget(&c);
		return refuse("the account name is too long");
	}
	mf_err_clear(&err);
	if ((rc = cli_archive_open(&a, dir, ARCHIVE_OPEN_CREATE, &ao))) {
		cli_forget(&c);
		return rc;
	}
	if (!realpath(dir, real)) {
		fprintf(stderr, "mailferry: %s: %s\n", dir, strerror(errno));
		archive_close(a);
		cli_forget(&c);
		return 2;
	}
	/* The state belongs to the account and this archive. */
	if (cli_archive_job_key(account, real, c.job_key, sizeof(c.job_key)) < 0) {
		archive_close(a);
		cli_forget(&c);
		return refuse("the archive's path is too long");
	}
	lr = (struct last_run){account, 0, 1, 0};
	if (archive_run_each(a, last_run_fn, &lr, &err) < 0 ||
	    archive_run_begin(a, account, (uint64_t)time(NULL), &run, &err) < 0) {
		fprintf(stderr, "mailferry: %s\n", err.msg);
		archive_close(a);
		cli_forget(&c);
		return 2;
	}
	cli_job_opts(&c, &o);
	if (prune)
		o.delete_ = 1; /* expunges are recorded, then pruned */
	o.archive = a;
	o.archive_run = run;
	o.archive_reconcile = lr.seen && !lr.committed;
	if (job_opts_check(&o, &err) < 0) {
		fprintf(stderr, "mailferry: %s\n", err.msg);
		archive_close(a);
		cli_forget(&c);
		return 2;
	}
	if (state_open_flags(&st, c.state_dir, 0, &err) < 0) {
		fprintf(stderr, "mailferry: %s\n", err.msg);
		archive_close(a);
		cli_forget(&c);
		return 2;
	}
	if ((rc = loop_init(&loop, 256)) < 0) {
		fprintf(stderr, "mailferry: io_uring setup failed: %s\n", strerror(-rc));
		state_close(st);
		archive_close(a);
		cli_forget(&c);
		return 1;
	}
	if (cli_limits_new(&c, &loop, &o.hostlimit)) {
		loop_free(&loop);
		state_close(st);
		archive_close(a);
		cli_forget(&c);
		return 1;
	}
	mf_err_clear(&err);
	rc = job_migrate(&loop, st, &o, &sum, &err);
	if (rc < 0) {
		fprintf(stderr, "mailferry: %s\n", err.msg);
		rc = 1;
	}
	if (cli_limits_check(o.hostlimit) && !rc)
		rc = 1;
	if (rc >= 0 && !sum.fatal) {
		/* The state's writes are committed by now (job_end): the run
		 * commits after them, so a crash between the two leaves a run
		 * the next one reconciles (o.archive_reconcile). */
		if (archive_run_commit(a, run, &err) < 0) {
			fprintf(stderr, "mailferry: %s\n", err.msg);
			rc = 1;
			sum.fatal = 1;
		}
	}
	if (prune && rc >= 0 && !sum.fatal && backup_prune(a, real, c.json) < 0) {
		rc = 1;
	}
	if (archive_stats(a, &as, &err) < 0)
		memset(&as, 0, sizeof(as));
	if (c.json) {
		printf("{\"event\":\"archive\",\"run\":%u,\"committed\":%s,\"encrypted\":%s,"
		       "\"objects\":%llu,\"raw_bytes\":%llu,\"stored_bytes\":%llu}\n",
		       run, sum.fatal ? "false" : "true", archive_encrypted(a) ? "true" : "false",
		       (unsigned long long)as.objects, (unsigned long long)as.raw_bytes,
		       (unsigned long long)as.stored_bytes);
		fflush(stdout);
	}
	if (mf_log_enabled(MF_LOG_INFO))
		fprintf(stderr,
		        "mailferry: archive %s: run %u %s; %llu messages stored (%llu "
		        "already there), archive holds %llu distinct messages\n",
		        real, run, sum.fatal ? "not committed" : "committed",
		        (unsigned long long)sum.copied, (unsigned long long)sum.deduped,
		        (unsigned long long)as.objects);
	rc = cli_exit_code(&sum, rc);
	c.hl_report = o.hostlimit;
	cli_summary(&c, &sum, rc);
	hostlimit_free(o.hostlimit);
	loop_free(&loop);
	state_close(st);
	archive_close(a);
	cli_forget(&c);
	return rc;
}
