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
 * The options only restore knows, the run's pick and the job key are
 * arc_job.c's (an accounts-file line's "restore ARCHIVE DST" takes the
 * same); the rest are migrate's (cli_parse).
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

#include "engine/cli/arc_job.h"
#include "engine/cli/cli_int.h"
#include "engine/sync/hostlimit.h"
#include "store/archive.h"

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

static int restore_run_job(struct cli *c, struct job_opts *o)
{
	struct job_summary sum;
	struct loop loop;
	struct state *st;
	struct mf_error err;
	int rc;

	mf_err_clear(&err);
	if (job_opts_check(o, &err) < 0) {
		fprintf(stderr, "mailferry: restore: %s\n", err.msg);
		return 2;
	}
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
	struct cli c;
	struct job_opts o;
	struct arc_job *j;
	int rc;

	cli_defaults(&c);
	if (!(j = calloc(1, sizeof(*j)))) {
		fprintf(stderr, "mailferry: out of memory\n");
		return 1;
	}
	if ((rc = arc_job_take(j, &c, 1, &argc, argv)) || (rc = cli_parse(&c, argc, argv, 0))) {
		free(j);
		return rc == 1 ? 0 : rc;
	}
	if (argc - optind != 2) {
		fprintf(stderr,
		        "usage: mailferry restore ARCHIVE_DIR imap[s]://user@host [--run N | "
		        "--as-of DATE|RUN] [--passphrase-file FILE] [options]\n");
		free(j);
		return 2;
	}
	if ((rc = cli_accounts(&c, NULL, argv[optind + 1])) ||
	    (rc = arc_job_check(j, &c, argv[optind])) || (rc = arc_job_open(j, &c, NULL))) {
		cli_forget(&c);
		free(j);
		return rc;
	}
	if (c.insecure)
		mf_log(MF_LOG_WARN, "--insecure: TLS certificates are NOT verified; anyone on the "
		                    "path can read the passwords and the mail");
	cli_job_opts(&c, &o);
	arc_job_opts(j, &o);
	rc = restore_run_job(&c, &o);
	arc_job_close(j);
	free(j);
	cli_forget(&c);
	return rc;
}
