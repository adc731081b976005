/*
 * arc_job — backup and restore around their job (see arc_job.h): moved
 * out of backup_cmd.c and restore_cmd.c so that an accounts-file line
 * (run.c) does exactly what the single commands do.
 *
 * Not for: the job's loop and state, the summary (the callers).
 */
#include "engine/cli/arc_job.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/base/err.h"
#include "store/archive.h"

/* --prune rewrites a pack once less than this share of its raw bytes
 * is still named by the index. */
#define ARC_PRUNE_MIN_LIVE 0.9

/* One error line: "mailferry: WHERE backup: ...", copied to c->why. 2. */
static int refuse(const struct arc_job *j, const struct cli *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(const struct arc_job *j, const struct cli *c, const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	int n = snprintf(line, sizeof(line), "%s: ", j->restore ? "restore" : "backup");

	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	mf_print("mailferry: %s%s", c->where ? c->where : "", line);
	if (c->why && c->whycap && !c->why[0])
		snprintf(c->why, c->whycap, "%s", line);
	return 2;
}

/* ---- options ---------------------------------------------------------------- */

int arc_job_take(struct arc_job *j, const struct cli *c, int restore, int *argc, char **argv)
{
	static const struct {
		const char *name;
		size_t off;
	} own[] = {
	    {"--run", offsetof(struct arc_job, run)},
	    {"--as-of", offsetof(struct arc_job, as_of)},
	    {"--since", offsetof(struct arc_job, since)},
	    {"--before", offsetof(struct arc_job, before)},
	    {"--account", offsetof(struct arc_job, account)},
	    {"--separator", offsetof(struct arc_job, sep)},
	};
	int n = 1, i, rest = 0;

	memset(j, 0, sizeof(*j));
	j->restore = restore;
	for (i = 1; i < *argc; i++) {
		const char *a = argv[i];
		size_t k = sizeof(own) / sizeof(own[0]);

		if (!rest && !strcmp(a, "--"))
			rest = 1;
		if (!rest && !restore && !strcmp(a, "--prune")) {
			j->prune = 1;
			continue;
		}
		for (k = 0; !rest && restore && k < sizeof(own) / sizeof(own[0]); k++) {
			size_t l = strlen(own[k].name);
			const char **slot = (const char **)((char *)j + own[k].off);

			if (strncmp(a, own[k].name, l) || (a[l] && a[l] != '='))
				continue;
			if (a[l] == '=')
				*slot = a + l + 1;
			else if (i + 1 < *argc)
				*slot = argv[++i];
			else
				return refuse(j, c, "missing argument for %s", own[k].name);
			break;
		}
		if (!rest && restore && k < sizeof(own) / sizeof(own[0]))
			continue;
		argv[n++] = argv[i];
	}
	*argc = n;
	argv[n] = NULL;
	j->ao.where = c->where;
	j->ao.why = c->why;
	j->ao.whycap = c->whycap;
	return cli_archive_take_opts(argc, argv, &j->ao, !restore, restore ? "restore" : "backup");
}

static int check_backup(struct arc_job *j, const struct cli *c)
{
	if (c->dedupe || c->state_reset)
		return refuse(j, c,
		              "--dedupe and --state-reset are not supported by backup (the "
		              "archive dedupes by content itself)");
	if (c->dry_run || c->check)
		return refuse(j, c, "--dry-run and --check are not supported by backup");
	if (c->nmaps || c->nrenames || c->dst_prefix || c->mail_from || c->uncertain_skip ||
	    c->no_chunking || c->dst_pw_file || c->dst_authuser || c->dst_tok_file ||
	    c->dst_tok_cmd)
		return refuse(j, c,
		              "destination options (--map, --rename, --dst-*, --mail-from, "
		              "--uncertain, --no-chunking) do not apply to an archive");
	if (c->su.kind != URL_IMAP && c->su.kind != URL_POP3)
		return refuse(j, c, "the source must be imap[s]:// or pop3[s]://");
	if (c->pop3_delete)
		return refuse(j, c,
		              "--pop3-delete does not apply to backup (the archive is not a "
		              "mailbox to move the mail into)");
	/* a POP3 maildrop is another account than the IMAP one of the same
	 * user: its own runs (one mailbox, INBOX, UIDs from its UIDLs) */
	if (cli_archive_account(&c->su, j->name, sizeof(j->name)) < 0)
		return refuse(j, c, "the account name is too long");
	return 0;
}

static int check_restore(struct arc_job *j, const struct cli *c)
{
	if (c->sync_flags || c->delete_ || c->dedupe || c->state_reset)
		return refuse(j, c,
		              "--sync-flags, --delete, --dedupe and --state-reset do not "
		              "apply to restore (a re-run copies what is missing)");
	if (c->check || c->pop3_delete)
		return refuse(j, c, "--check and --pop3-delete do not apply to restore");
	if (c->src_pw_file || c->src_authuser || c->src_tok_file || c->src_tok_cmd)
		return refuse(j, c, "source options (--src-*) do not apply to an archive");
	if (j->since && restore_parse_date(j->since, &j->since_t) < 0)
		return refuse(j, c, "--since wants a date (YYYY-MM-DD[ HH:MM[:SS]], UTC): %.60s",
		              j->since);
	if (j->before && restore_parse_date(j->before, &j->before_t) < 0)
		return refuse(j, c, "--before wants a date (YYYY-MM-DD[ HH:MM[:SS]], UTC): %.60s",
		              j->before);
	if (j->sep && (strlen(j->sep) != 1 || !strchr("./\\:", j->sep[0])))
		return refuse(j, c, "--separator wants one of . / \\ : ; got %.60s", j->sep);
	return 0;
}

int arc_job_check(struct arc_job *j, const struct cli *c, const char *dir)
{
	j->dir = dir;
	return j->restore ? check_restore(j, c) : check_backup(j, c);
}

/* ---- the run ------------------------------------------------------------------ */

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

struct accounts_seen {
	char first[AFMT_ACCOUNT_MAX + 1];
	unsigned n;
};

static int account_fn(void *ctx, const struct archive_run_info *r)
{
	struct accounts_seen *s = ctx;

	if (!r->committed)
		return 0;
	if (!s->n || strcmp(s->first, r->account)) {
		if (!s->n)
			snprintf(s->first, sizeof(s->first), "%s", r->account);
		s->n += !s->n || strcmp(s->first, r->account);
	}
	return 0;
}

static int all_digits(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return 0;
	return 1;
}

/* The run to restore: --run N, --as-of RUN|DATE, else the latest
 * complete run (of --account, or of the one account). 0 or 2. */
static int pick_run(struct arc_job *j, const struct cli *c)
{
	struct accounts_seen seen = {{0}, 0};
	struct mf_error err;
	int64_t t;
	int rc;

	mf_err_clear(&err);
	if (j->run && j->as_of)
		return refuse(j, c, "--run and --as-of: one or the other");
	if (j->run || (j->as_of && all_digits(j->as_of))) {
		const char *v = j->run ? j->run : j->as_of;
		unsigned long n;
		char *end;

		errno = 0;
		n = strtoul(v, &end, 10);
		if (!all_digits(v) || errno || !n || n > UINT32_MAX)
			return refuse(j, c, "--run wants a run number: %.60s", v);
		j->run_id = (uint32_t)n;
		return 0;
	}
	if (!j->account) {
		if (archive_run_each(j->a, account_fn, &seen, &err) < 0)
			return refuse(j, c, "%s", err.msg);
		if (seen.n > 1)
			return refuse(j, c,
			              "the archive holds several accounts: name one with "
			              "--account USER@HOST (mailferry archive ls ARCHIVE lists "
			              "them)");
	}
	if (j->as_of) {
		if (restore_parse_date(j->as_of, &t) < 0 || t < 0)
			return refuse(j, c,
			              "--as-of wants a run number or a date (YYYY-MM-DD[ "
			              "HH:MM[:SS]], UTC): %.60s",
			              j->as_of);
		rc = archive_run_asof(j->a, j->account, (uint64_t)t, &j->run_id, &err);
	} else {
		rc = archive_run_latest(j->a, j->account, &j->run_id, &err);
	}
	if (rc == -ENOENT)
		return refuse(j, c, "%s%.60s",
		              j->as_of ? "no complete backup run at or before --as-of "
		                       : "no complete backup run in the archive",
		              j->as_of ? j->as_of : "");
	if (rc < 0)
		return refuse(j, c, "%s", err.msg);
	return 0;
}

/* Backup: the state belongs to the account and this archive; the run is
 * begun, and reconciled if the account's last one was not committed. */
static int begin_backup(struct arc_job *j, struct cli *c)
{
	struct last_run lr = {j->name, 0, 1, 0};
	struct mf_error err;

	mf_err_clear(&err);
	if (cli_archive_job_key(j->name, j->real, c->job_key, sizeof(c->job_key)) < 0)
		return refuse(j, c, "the archive's path is too long");
	if (archive_run_each(j->a, last_run_fn, &lr, &err) < 0 ||
	    archive_run_begin(j->a, j->name, (uint64_t)time(NULL), &j->run_id, &err) < 0)
		return refuse(j, c, "%s", err.msg);
	j->reconcile = lr.seen && !lr.committed;
	return 0;
}

/* Restore: the state belongs to this archive's run and the destination
 * (the part of the key after "->" as for migrate). */
static int begin_restore(struct arc_job *j, struct cli *c, const char *label)
{
	const char *arrow = strstr(c->job_key, " -> ");
	char dst[sizeof(c->job_key)];
	int rc, n;

	if ((rc = pick_run(j, c)))
		return rc;
	memcpy(dst, arrow ? arrow + 4 : c->job_key, sizeof(dst));
	dst[sizeof(dst) - 1] = '\0';
	n = snprintf(c->job_key, sizeof(c->job_key), "archive:%.1200s run %u -> %s", j->real,
	             j->run_id, dst);
	if (n < 0 || (size_t)n >= sizeof(c->job_key))
		return refuse(j, c, "the archive's path is too long");
	snprintf(j->who, sizeof(j->who), "archive %s", j->real);
	if (mf_log_enabled(MF_LOG_INFO))
		mf_print("mailferry: %srestoring run %u of archive %s", c->where ? c->where : "",
		         j->run_id, j->real);
	if (c->json) {
		flockfile(stdout); /* whole lines: run's worker loops write events too */
		printf("{\"event\":\"restore\",");
		if (label) {
			printf("\"job\":");
			mf_json_str(stdout, label, strlen(label));
			printf(",");
		}
		printf("\"run\":%u}\n", j->run_id);
		fflush(stdout);
		funlockfile(stdout);
	}
	return 0;
}

int arc_job_open(struct arc_job *j, struct cli *c, const char *label)
{
	int rc;

	/* an encrypted archive: its passphrase from --passphrase-file or
	 * MAILFERRY_ARCHIVE_PASSPHRASE_FILE; missing or wrong is exit 2 */
	if ((rc = cli_archive_open(&j->a, j->dir,
	                           j->restore ? ARCHIVE_OPEN_RDONLY : ARCHIVE_OPEN_CREATE, &j->ao)))
		return rc;
	if (!j->restore && j->zthreads) /* else the archive's default */
		archive_set_tune(j->a, &(struct archive_tune){.zthreads = j->zthreads});
	if (!realpath(j->dir, j->real))
		rc = refuse(j, c, "%.200s: %s", j->dir, strerror(errno));
	else
		rc = j->restore ? begin_restore(j, c, label) : begin_backup(j, c);
	if (rc)
		arc_job_close(j);
	return rc;
}

void arc_job_opts(const struct arc_job *j, struct job_opts *o)
{
	if (!j->restore) {
		if (j->prune)
			o->delete_ = 1; /* expunges are recorded, then pruned */
		o->archive = j->a;
		o->archive_run = j->run_id;
		o->archive_reconcile = j->reconcile;
		return;
	}
	o->src_archive = j->a;
	o->src_archive_run = j->run_id;
	o->src_archive_who = j->who;
	o->arc_sep = j->sep ? j->sep[0] : '.';
	o->arc_since_set = j->since != NULL;
	o->arc_since = j->since_t;
	o->arc_before_set = j->before != NULL;
	o->arc_before = j->before_t;
}

/* ---- after the job ------------------------------------------------------------ */

/* --prune after a committed run: what the source deleted leaves every run
 * and the index, then packs mostly dead are rewritten (archive_prune.c).
 * 0, or -1 after one line on stderr. */
static int backup_prune(struct arc_job *j, const struct cli *c, const char *label)
{
	struct archive_compact_stats cs;
	struct mf_error err = {0};
	uint64_t uids, objs;

	if (archive_prune_deleted(j->a, &uids, &objs, &err) < 0 ||
	    archive_compact(j->a, ARC_PRUNE_MIN_LIVE, &cs, &err) < 0) {
		mf_print("mailferry: %sarchive %s: prune: %s", c->where ? c->where : "", j->real,
		         err.msg);
		return -1;
	}
	if (c->json) {
		flockfile(stdout);
		printf("{\"event\":\"prune\",");
		if (label) {
			printf("\"job\":");
			mf_json_str(stdout, label, strlen(label));
			printf(",");
		}
		printf("\"uids\":%llu,\"objects\":%llu,\"packs_rewritten\":%u,"
		       "\"messages_moved\":%llu,\"bytes_before\":%llu,\"bytes_after\":%llu,"
		       "\"failed\":%llu}\n",
		       (unsigned long long)uids, (unsigned long long)objs, cs.packs,
		       (unsigned long long)cs.moved, (unsigned long long)cs.bytes_before,
		       (unsigned long long)cs.bytes_after, (unsigned long long)cs.failed);
		fflush(stdout);
		funlockfile(stdout);
	}
	if (mf_log_enabled(MF_LOG_INFO))
		mf_print("mailferry: %sarchive %s: prune: %llu deleted messages forgotten in every "
		         "run, %llu stored messages dropped; %u packs rewritten (%llu messages "
		         "moved, %llu bytes now %llu)",
		         c->where ? c->where : "", j->real, (unsigned long long)uids,
		         (unsigned long long)objs, cs.packs, (unsigned long long)cs.moved,
		         (unsigned long long)cs.bytes_before, (unsigned long long)cs.bytes_after);
	return cs.failed ? -1 : 0;
}

int arc_job_end(struct arc_job *j, const struct cli *c, const char *label, struct job_summary *sum,
                int rc)
{
	struct archive_stats as;
	struct mf_error err;

	if (j->restore || !j->a)
		return rc;
	mf_err_clear(&err);
	if (rc >= 0 && !sum->fatal) {
		/* The state's writes are committed by now (job_end): the run
		 * commits after them, so a crash between the two leaves a run
		 * the next one reconciles (o.archive_reconcile). */
		if (archive_run_commit(j->a, j->run_id, &err) < 0) {
			mf_print("mailferry: %s%s", c->where ? c->where : "", err.msg);
			rc = 1;
			sum->fatal = 1;
		}
	}
	if (j->prune && rc >= 0 && !sum->fatal && backup_prune(j, c, label) < 0)
		rc = 1;
	if (archive_stats(j->a, &as, &err) < 0)
		memset(&as, 0, sizeof(as));
	if (c->json) {
		flockfile(stdout);
		printf("{\"event\":\"archive\",");
		if (label) {
			printf("\"job\":");
			mf_json_str(stdout, label, strlen(label));
			printf(",");
		}
		printf("\"run\":%u,\"committed\":%s,\"encrypted\":%s,"
		       "\"objects\":%llu,\"raw_bytes\":%llu,\"stored_bytes\":%llu}\n",
		       j->run_id, sum->fatal ? "false" : "true",
		       archive_encrypted(j->a) ? "true" : "false", (unsigned long long)as.objects,
		       (unsigned long long)as.raw_bytes, (unsigned long long)as.stored_bytes);
		fflush(stdout);
		funlockfile(stdout);
	}
	if (mf_log_enabled(MF_LOG_INFO))
		mf_print("mailferry: %sarchive %s: run %u %s; %llu messages stored (%llu "
		         "already there), archive holds %llu distinct messages",
		         c->where ? c->where : "", j->real, j->run_id,
		         sum->fatal ? "not committed" : "committed",
		         (unsigned long long)sum->copied, (unsigned long long)sum->deduped,
		         (unsigned long long)as.objects);
	return rc;
}

void arc_job_close(struct arc_job *j)
{
	if (j->a)
		archive_close(j->a);
	j->a = NULL;
}
