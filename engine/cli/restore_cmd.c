/*
 * restore_cmd — `mailferry restore ARCHIVE_DIR DST [options]`: one backup
 * run of an archive (store/archive.h) written back to an IMAP account (or
 * delivered over SMTP/LMTP) through the one pipeline, the archive run as
 * the source (engine/sync/source_archive.c).
 *
 * An encrypted archive opens with --passphrase-file FILE (or
 * MAILFERRY_ARCHIVE_PASSPHRASE_FILE), as for every archive command
 * (cli_archive_open).
 *
 * Which run: --run N, or --as-of RUN|DATE (the last complete run at or
 * before DATE), else the latest complete run; of the one account the
 * archive holds, or of --account USER@HOST. Incremental and resumable
 * through the job's state (--state), keyed by the archive's real path,
 * the run and the destination: a re-run copies only what is missing.
 *
 * The options only restore knows are taken out of argv here; the rest are
 * migrate's (cli_parse).
 *
 * Not for: the pipeline (engine/sync), the archive format (store/).
 */
#include <ctype.h>
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

#define RESTORE_ARGS_MAX 512

struct restore_opts {
	const char *run, *as_of, *since, *before, *account, *sep;
};

static int refuse(const char *what, const char *arg)
{
	fprintf(stderr, "mailferry: restore: %s%s\n", what, arg ? arg : "");
	return 2;
}

/* n decimal digits at s (nothing else): 1 and *v, or 0. */
static int digits(const char *s, int n, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		*v = *v * 10 + (unsigned)(s[i] - '0');
	}
	return 1;
}

/* "YYYY-MM-DD", optionally " HH:MM[:SS]" or "THH:MM[:SS]" and "Z"; UTC.
 * "@SECONDS" too. 0, or -1 if s is none of these. */
int restore_parse_date(const char *s, int64_t *out)
{
	unsigned y, mo, d, h = 0, mi = 0, sec = 0;
	struct tm tm;
	time_t t;

	if (s[0] == '@') {
		char *end;
		long long v;

		errno = 0;
		v = strtoll(s + 1, &end, 10);
		if (!isdigit((unsigned char)s[1]) || *end || errno)
			return -1;
		*out = v;
		return 0;
	}
	if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
	    !digits(s + 8, 2, &d))
		return -1;
	s += 10;
	if (*s == ' ' || *s == 'T') {
		if (!digits(s + 1, 2, &h) || s[3] != ':' || !digits(s + 4, 2, &mi))
			return -1;
		s += 6;
		if (*s == ':') {
			if (!digits(s + 1, 2, &sec))
				return -1;
			s += 3;
		}
	}
	if (*s == 'Z')
		s++;
	if (*s || y < 1 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = (int)y - 1900;
	tm.tm_mon = (int)mo - 1;
	tm.tm_mday = (int)d;
	tm.tm_hour = (int)h;
	tm.tm_min = (int)mi;
	tm.tm_sec = (int)sec;
	t = timegm(&tm);
	if (tm.tm_mday != (int)d) /* 31 Feb */
		return -1;
	*out = (int64_t)t;
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

/* Takes restore's own options out of argv (kept in order otherwise). */
static int restore_split(int argc, char **argv, char **out, int *nout, struct restore_opts *r)
{
	static const struct {
		const char *name;
		size_t off;
	} own[] = {
	    {"--run", offsetof(struct restore_opts, run)},
	    {"--as-of", offsetof(struct restore_opts, as_of)},
	    {"--since", offsetof(struct restore_opts, since)},
	    {"--before", offsetof(struct restore_opts, before)},
	    {"--account", offsetof(struct restore_opts, account)},
	    {"--separator", offsetof(struct restore_opts, sep)},
	};
	int n = 0, rest = 0;

	if (argc >= RESTORE_ARGS_MAX)
		return refuse("too many arguments", NULL);
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		size_t k;

		if (i && !rest && !strcmp(a, "--"))
			rest = 1;
		for (k = 0; i && !rest && k < sizeof(own) / sizeof(own[0]); k++) {
			size_t l = strlen(own[k].name);
			const char **slot = (const char **)((char *)r + own[k].off);

			if (strncmp(a, own[k].name, l) || (a[l] && a[l] != '='))
				continue;
			if (a[l] == '=') {
				*slot = a + l + 1;
			} else if (i + 1 < argc) {
				*slot = argv[++i];
			} else {
				return refuse("missing argument for ", own[k].name);
			}
			break;
		}
		if (i && !rest && k < sizeof(own) / sizeof(own[0]))
			continue;
		out[n++] = argv[i];
	}
	out[n] = NULL;
	*nout = n;
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

/* The run to restore (see the top). 0, or 2 with the reason printed. */
static int restore_pick_run(struct archive *a, const struct restore_opts *r, uint32_t *run)
{
	struct accounts_seen seen = {{0}, 0};
	const char *acct = r->account;
	struct mf_error err;
	int64_t t;
	int rc;

	mf_err_clear(&err);
	if (r->run && r->as_of)
		return refuse("--run and --as-of: one or the other", NULL);
	if (r->run || (r->as_of && all_digits(r->as_of))) {
		const char *v = r->run ? r->run : r->as_of;
		unsigned long n;
		char *end;

		errno = 0;
		n = strtoul(v, &end, 10);
		if (!all_digits(v) || errno || !n || n > UINT32_MAX)
			return refuse("--run wants a run number: ", v);
		*run = (uint32_t)n;
		return 0;
	}
	if (!acct) {
		if (archive_run_each(a, account_fn, &seen, &err) < 0) {
			fprintf(stderr, "mailferry: %s\n", err.msg);
			return 2;
		}
		if (seen.n > 1)
			return refuse("the archive holds several accounts: name one with --account "
			              "USER@HOST (mailferry archive ls ARCHIVE lists them)",
			              NULL);
	}
	if (r->as_of) {
		if (restore_parse_date(r->as_of, &t) < 0 || t < 0)
			return refuse(
			    "--as-of wants a run number or a date (YYYY-MM-DD[ HH:MM[:SS]], "
			    "UTC): ",
			    r->as_of);
		rc = archive_run_asof(a, acct, (uint64_t)t, run, &err);
	} else {
		rc = archive_run_latest(a, acct, run, &err);
	}
	if (rc == -ENOENT)
		return refuse(r->as_of ? "no complete backup run at or before --as-of "
		                       : "no complete backup run in the archive",
		              r->as_of);
	if (rc < 0) {
		fprintf(stderr, "mailferry: %s\n", err.msg);
		return 2;
	}
	return 0;
}

/* Options that do not apply to an archive source. 0 or 2. */
static int restore_check_opts(const struct cli *c)
{
	if (c->sync_flags || c->delete_ || c->dedupe || c->state_reset)
		return refuse("--sync-flags, --delete, --dedupe and --state-reset do not apply to "
		              "restore (a re-run copies what is missing)",
		              NULL);
	if (c->check || c->pop3_delete)
		return refuse("--check and --pop3-delete do not apply to restore", NULL);
	if (c->src_pw_file || c->src_authuser || c->src_tok_file || c->src_tok_cmd)
		return refuse("source options (--src-*) do not apply to an archive", NULL);
	return 0;
}

static int restore_run_job(struct cli *c, struct job_opts *o)
{
	struct job_summary sum;
	struct loop loop;
	struct state *st;
	struct mf_error err;
	int rc;

	mf_err_clear(&err);
	if (job_opts_check(o, &err) < 0)
		return refuse("", err.msg);
	if (state_open_flags(&st, c->state_dir, 0, &err) < 0) {
		fprintf(stderr, "mailferry: %s\n", err.msg);
		return 2;
	}
	if ((rc = loop_init(&loop, 256)) < 0) {
		fprintf(stderr, "mailferry: io_uring setup failed: %s\n", strerror(-rc));
		state_close(st);
		return 1;
	}
	if (cli_limits_new(c, &loop, &o->hostlimit)) {
		loop_free(&loop);
		state_close(st);
		return 1;
	}
	mf_err_clear(&err);
	rc = job_migrate(&loop, st, o, &sum, &err);
	if (rc < 0) {
		fprintf(stderr, "mailferry: %s\n", err.msg);
		rc = 1;
	}
	if (cli_limits_check(o->hostlimit) && !rc)
		rc = 1;
	rc = cli_exit_code(&sum, rc);
	c->hl_report = o->hostlimit;
	cli_summary(c, &sum, rc);
	hostlimit_free(o->hostlimit);
	o->hostlimit = NULL;
	loop_free(&loop);
	state_close(st);
	return rc;
}

int cmd_restore(int argc, char **argv)
{
	static char *args[RESTORE_ARGS_MAX + 1];
	struct restore_opts ro = {0};
	struct cli c;
	struct job_opts o;
	struct archive *a;
	struct cli_archive_opts ao;
	char real[PATH_MAX], who[PATH_MAX + 16];
	const char *dir;
	uint32_t run;
	int64_t since = 0, before = 0;
	int rc, n, nargs;

	if ((rc = restore_split(argc, argv, args, &nargs, &ro)))
		return rc;
	if ((rc = cli_archive_take_opts(&nargs, args, &ao, 0, "restore")))
		return rc;
	cli_defaults(&c);
	if ((rc = cli_parse(&c, nargs, args, 0)))
		return rc == 1 ? 0 : rc;
	if (nargs - optind != 2) {
		fprintf(stderr,
		        "usage: mailferry restore ARCHIVE_DIR imap[s]://user@host [--run N | "
		        "--as-of DATE|RUN] [--passphrase-file FILE] [options]\n");
		return 2;
	}
	if ((rc = restore_check_opts(&c)))
		return rc;
	if (ro.since && restore_parse_date(ro.since, &since) < 0)
		return refuse("--since wants a date (YYYY-MM-DD[ HH:MM[:SS]], UTC): ", ro.since);
	if (ro.before && restore_parse_date(ro.before, &before) < 0)
		return refuse("--before wants a date (YYYY-MM-DD[ HH:MM[:SS]], UTC): ", ro.before);
	if (ro.sep && (strlen(ro.sep) != 1 || !strchr("./\\:", ro.sep[0])))
		return refuse("--separator wants one of . / \\ : ; got ", ro.sep);
	dir = args[optind];
	if ((rc = cli_accounts(&c, NULL, args[optind + 1])))
		return rc;
	if (c.insecure)
		mf_log(MF_LOG_WARN, "--insecure: TLS certificates are NOT verified; anyone on the "
		                    "path can read the passwords and the mail");
	/* an encrypted archive: its passphrase from --passphrase-file or
	 * MAILFERRY_ARCHIVE_PASSPHRASE_FILE; missing or wrong is exit 2 */
	if ((rc = cli_archive_open(&a, dir, ARCHIVE_OPEN_RDONLY, &ao))) {
		cli_forget(&c);
		return rc;
	}
	if (!realpath(dir, real)) {
		fprintf(stderr, "mailferry: %s: %s\n", dir, strerror(errno));
		archive_close(a);
		cli_forget(&c);
		return 2;
	}
	if ((rc = restore_pick_run(a, &ro, &run))) {
		archive_close(a);
		cli_forget(&c);
		return rc;
	}
	/* The state belongs to this archive's run and the destination (the
	 * part of the key after "->" as for migrate). */
	{
		const char *arrow = strstr(c.job_key, " -> ");
		char dst[sizeof(c.job_key)];

		memcpy(dst, arrow ? arrow + 4 : c.job_key, sizeof(dst));
		dst[sizeof(dst) - 1] = '\0';
		n = snprintf(c.job_key, sizeof(c.job_key), "archive:%.1200s run %u -> %s", real,
		             run, dst);
		if (n < 0 || (size_t)n >= sizeof(c.job_key)) {
			archive_close(a);
			cli_forget(&c);
			return refuse("the archive's path is too long", NULL);
		}
	}
	snprintf(who, sizeof(who), "archive %s", real);
	cli_job_opts(&c, &o);
	o.src_archive = a;
	o.src_archive_run = run;
	o.src_archive_who = who;
	o.arc_sep = ro.sep ? ro.sep[0] : '.';
	o.arc_since_set = ro.since != NULL;
	o.arc_since = since;
	o.arc_before_set = ro.before != NULL;
	o.arc_before = before;
	if (mf_log_enabled(MF_LOG_INFO))
		fprintf(stderr, "mailferry: restoring run %u of archive %s\n", run, real);
	if (c.json) {
		printf("{\"event\":\"restore\",\"run\":%u}\n", run);
		fflush(stdout);
	}
	rc = restore_run_job(&c, &o);
	archive_close(a);
	cli_forget(&c);
	return rc;
}
