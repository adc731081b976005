/*
 * run — `mailferry run ACCOUNTS_FILE`: many accounts from one command, on
 * one event loop. The file is read a line at a time as accounts finish, so
 * its length costs nothing; --jobs accounts run at once, each a job of its
 * own (job_start on the shared loop) with its own state directory under
 * --state, so a failing account never disturbs another's records. A bad
 * line is reported with its number and the others still run.
 *
 * Not for: parsing a line (accounts.c), an account's options (cli.c), the
 * work of one account (engine/sync).
 */
#include "engine/cli/accounts.h"
#include "engine/cli/cli_int.h"

#include <errno.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/base/err.h"
#include "engine/runtime/loop.h"
#include "engine/sync/hostlimit.h"
#include "store/state.h"

struct run;

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
};

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
};

static void run_fill(struct run *r);

/* A password "@PATH" is read from PATH; any other is the value itself. */
static int line_password(struct acct *a, const char *field, char *out, size_t cap)
{
	char why[512];

	if (field[0] == '@') {
		if (cli_password_file(field + 1, out, cap, why, sizeof(why)) < 0) {
			fprintf(stderr, "mailferry: %s%s\n", a->where, why);
			return -1;
		}
		return 0;
	}
	if (strlen(field) >= cap) {
		fprintf(stderr, "mailferry: %spassword too long\n", a->where);
		return -1;
	}
	if (a->r->file_shared && !a->r->warned_mode) {
		a->r->warned_mode = 1;
		mf_log(MF_LOG_WARN, "accounts file %s holds passwords and can be read by others: "
		                    "chmod 600 %s",
		       a->r->path, a->r->path);
	}
	snprintf(out, cap, "%s", field);
	return 0;
}

/* The account's own state directory: DIR/acct-HASH of its job key, so that
 * each account commits (or fails) alone. */
static int acct_state_dir(struct acct *a)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char hex[33];

	if (!EVP_Digest(a->c.job_key, strlen(a->c.job_key), md, &mdlen, EVP_sha256(), NULL) ||
	    mdlen < 16)
		return -1;
	for (unsigned i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	if ((size_t)snprintf(a->state_dir, sizeof(a->state_dir), "%s/acct-%s", a->c.state_dir, hex) >=
	    sizeof(a->state_dir))
		return -1;
	return 0;
}

/* Parses a's line into its options: 0, or 2 (reported). */
static int acct_setup(struct acct *a, size_t len)
{
	struct account_line al;
	char why[300], src[1200], dst[1200];
	int rc;

	a->c = *a->r->base;
	a->c.where = a->where;
	if (accounts_parse_line(a->buf, len, &al, why, sizeof(why)) < 0) {
		fprintf(stderr, "mailferry: %s%s\n", a->where, why);
		return 2;
	}
	if (al.kind == ACCOUNT_NONE)
		return 1;
	if (al.kind == ACCOUNT_URLS) {
		/* getopt wants argv[0]: the slot before the options */
		char **argv = &al.argv[1];
		char *dst_url = al.argv[1];

		argv[0] = (char *)"run";
		if ((rc = cli_parse(&a->c, al.argc - 1, argv, 0)))
			return rc == 1 ? 2 : rc;
		if (optind != al.argc - 1) {
			fprintf(stderr, "mailferry: %sunexpected word \"%.60s\" after the options\n",
			        a->where, argv[optind]);
			return 2;
		}
		return cli_accounts(&a->c, al.argv[0], dst_url);
	}
	for (int s = 0; s < 2; s++)
		if (accounts_url(al.host[s], al.user[s], s ? dst : src, sizeof(src)) < 0) {
			fprintf(stderr, "mailferry: %shost%d or user%d too long\n", a->where, s + 1,
			        s + 1);
			return 2;
		}
	if (line_password(a, al.password[0], a->c.src_pw, sizeof(a->c.src_pw)) < 0 ||
	    line_password(a, al.password[1], a->c.dst_pw, sizeof(a->c.dst_pw)) < 0)
		return 2;
	a->c.src_pw_set = a->c.dst_pw_set = 1;
	return cli_accounts(&a->c, src, dst);
}

static void acct_free(struct acct *a)
{
	cli_forget(&a->c);
	OPENSSL_cleanse(a->buf, sizeof(a->buf));
	free(a);
}

static void total_add(struct job_summary *t, const struct job_summary *s)
{
	t->copied += s->copied;
	t->skipped += s->skipped;
	t->failed += s->failed;
	t->bytes += s->bytes;
	t->flags_synced += s->flags_synced;
	t->expunged += s->expunged;
	t->deduped += s->deduped;
	t->mailboxes += s->mailboxes;
	t->mailboxes_failed += s->mailboxes_failed;
	t->mailboxes_renamed += s->mailboxes_renamed;
	t->wire_in += s->wire_in;
	t->wire_out += s->wire_out;
	t->connections += s->connections;
	t->reconnects += s->reconnects;
}

static void acct_report(struct acct *a, int rc)
{
	struct run *r = a->r;
	const struct job_summary *s = &a->sum;

	if (a->c.json) {
		printf("{\"event\":\"account\",\"job\":");
		mf_json_str(stdout, a->label, strlen(a->label));
		printf(",\"exit\":%d,\"messages_copied\":%llu,\"messages_skipped\":%llu,"
		       "\"messages_failed\":%llu,\"bytes\":%llu,\"mailboxes\":%u,"
		       "\"mailboxes_failed\":%u,\"seconds\":%.3f,\"reconnects\":%u}\n",
		       rc, (unsigned long long)s->copied, (unsigned long long)s->skipped,
		       (unsigned long long)s->failed, (unsigned long long)s->bytes, s->mailboxes,
		       s->mailboxes_failed, s->seconds, s->reconnects);
		fflush(stdout);
	}
	if (mf_log_enabled(MF_LOG_INFO))
		mf_print("mailferry: %s%s: %llu copied, %llu skipped, %llu failed, %.1f MB, "
		         "%u mailboxes in %.2f s",
		         a->where, rc ? "finished with errors" : "done",
		         (unsigned long long)s->copied, (unsigned long long)s->skipped,
		         (unsigned long long)s->failed, (double)s->bytes / 1e6, s->mailboxes,
		         s->seconds);
	total_add(&r->total, s);
	if (rc)
		r->failed++;
	else
		r->ok++;
}

static void acct_done(struct job *j, void *ud)
{
	struct acct *a = ud;
	struct run *r = a->r;
	int rc = job_end(j);

	acct_report(a, rc);
	state_close(a->st);
	acct_free(a);
	r->running--;
	run_fill(r);
}

/* Starts one account: 0 started, -1 not (reported and counted). */
static int acct_start(struct acct *a)
{
	struct run *r = a->r;
	struct mf_error err;

	if (acct_state_dir(a) < 0) {
		fprintf(stderr, "mailferry: %sstate directory name too long\n", a->where);
		return -1;
	}
	cli_job_opts(&a->c, &a->o);
	a->o.label = a->label;
	a->o.hostlimit = r->hl;
	if (job_opts_check(&a->o, &err) < 0) {
		fprintf(stderr, "mailferry: %s%s\n", a->where, err.msg);
		return -1;
	}
	mf_err_clear(&err);
	if (state_open_flags(&a->st, a->state_dir, a->c.state_reset ? STATE_OPEN_RESET : 0, &err) <
	    0) {
		fprintf(stderr, "mailferry: %s%s\n", a->where, err.msg);
		return -1;
	}
	if (job_start(&a->j, &r->loop, a->st, &a->o, &a->sum, acct_done, a, &err) < 0) {
		fprintf(stderr, "mailferry: %s%s\n", a->where, err.msg);
		state_close(a->st);
		return -1;
	}
	r->running++;
	return 0;
}

/* Reads lines and starts accounts until --jobs run or the file ends. */
static void run_fill(struct run *r)
{
	while (!r->eof && r->running < r->base->jobs) {
		struct acct *a = calloc(1, sizeof(*a));
		size_t len;
		int rc, c = 0;

		if (!a) {
			mf_log(MF_LOG_ERROR, "out of memory; no more accounts started");
			r->eof = 1;
			r->failed++;
			return;
		}
		a->r = r;
		if (!fgets(a->buf, sizeof(a->buf), r->f)) {
			if (ferror(r->f)) {
				mf_log(MF_LOG_ERROR, "reading %s: %s", r->path, strerror(errno));
				r->failed++;
			}
			r->eof = 1;
			free(a);
			return;
		}
		a->line = ++r->lineno;
		snprintf(a->where, sizeof(a->where), "%s:%u: ", r->path, a->line);
		snprintf(a->label, sizeof(a->label), "%s:%u", r->path, a->line);
		len = strlen(a->buf);
		if (len && a->buf[len - 1] == '\n') {
			a->buf[--len] = '\0';
			if (len && a->buf[len - 1] == '\r')
				a->buf[--len] = '\0';
		} else if (!feof(r->f)) {
			/* longer than a line may be: skip to its end */
			while ((c = fgetc(r->f)) != EOF && c != '\n')
				;
			fprintf(stderr, "mailferry: %sline longer than %d bytes\n", a->where,
			        ACCOUNTS_LINE_MAX - 1);
			r->bad_lines++;
			acct_free(a);
			continue;
		}
		rc = acct_setup(a, len);
		if (rc == 1) {
			acct_free(a); /* blank or comment */
			continue;
		}
		r->accounts++;
		if (rc) {
			r->bad_lines++;
			acct_free(a);
			continue;
		}
		if (acct_start(a) < 0) {
			r->failed++;
			acct_free(a);
		}
	}
}

int cmd_run(int argc, char **argv)
{
	struct cli base;
	struct run r;
	struct stat st;
	int rc;

	cli_defaults(&base);
	base.jobs = 4;
	base.progress = 0; /* one line per account instead */
	if ((rc = cli_parse(&base, argc, argv, 1)))
		return rc == 1 ? 0 : rc;
	if (argc - optind != 1) {
		fprintf(stderr, "usage: mailferry run ACCOUNTS_FILE [--jobs N] [options]\n");
		return 2;
	}
	memset(&r, 0, sizeof(r));
	r.base = &base;
	r.path = argv[optind];
	if (!(r.f = fopen(r.path, "re"))) {
		fprintf(stderr, "mailferry: cannot read accounts file %s: %s\n", r.path,
		        strerror(errno));
		return 2;
	}
	if (fstat(fileno(r.f), &st) == 0 && (st.st_mode & 0044))
		r.file_shared = 1;
	if (!base.state_dir) {
		const char *x = getenv("XDG_STATE_HOME"), *h = getenv("HOME");

		if (x && *x)
			snprintf(base.state_buf, sizeof(base.state_buf), "%s/mailferry", x);
		else if (h && *h)
			snprintf(base.state_buf, sizeof(base.state_buf), "%s/.local/state/mailferry", h);
		else {
			fprintf(stderr, "mailferry: no state directory: use --state DIR\n");
			fclose(r.f);
			return 2;
		}
		base.state_dir = base.state_buf;
	}
	if (base.insecure)
		mf_log(MF_LOG_WARN, "--insecure: TLS certificates are NOT verified; anyone on the "
				    "path can read the passwords and the mail");
	if ((rc = loop_init(&r.loop, 1024)) < 0) {
		fprintf(stderr, "mailferry: io_uring setup failed: %s\n", strerror(-rc));
		fclose(r.f);
		return 1;
	}
	if (hostlimit_new(&r.hl, &r.loop, base.max_per_host) < 0) {
		fprintf(stderr, "mailferry: out of memory\n");
		loop_free(&r.loop);
		fclose(r.f);
		return 1;
	}
	run_fill(&r);
	if (r.running && (rc = loop_run(&r.loop)) < 0)
		mf_log(MF_LOG_ERROR, "event loop failed: %s", strerror(-rc));
	if (r.running) {
		mf_log(MF_LOG_ERROR, "internal: the loop ended with %u accounts running", r.running);
		r.failed += r.running;
	}
	if (hostlimit_count(r.hl)) {
		/* hostlimit.h's invariant: every slot granted was released */
		mf_log(MF_LOG_ERROR, "internal: %u connection slots never released",
		       hostlimit_count(r.hl));
		r.failed++;
	}
	if (base.max_per_host)
		mf_log(MF_LOG_INFO, "run: --max-per-host %u: at most %u connections were open to one "
		                    "host",
		       base.max_per_host, hostlimit_peak(r.hl));
	hostlimit_free(r.hl);
	loop_free(&r.loop);
	fclose(r.f);
	if (base.json) {
		printf("{\"event\":\"run_summary\",\"accounts\":%u,\"ok\":%u,\"failed\":%u,"
		       "\"bad_lines\":%u,\"messages_copied\":%llu,\"messages_failed\":%llu,"
		       "\"bytes\":%llu}\n",
		       r.accounts, r.ok, r.failed, r.bad_lines, (unsigned long long)r.total.copied,
		       (unsigned long long)r.total.failed, (unsigned long long)r.total.bytes);
		fflush(stdout);
	}
	if (mf_log_enabled(MF_LOG_INFO))
		mf_print("mailferry: run: %u accounts: %u done, %u with errors, %u bad lines; "
		         "%llu copied, %llu failed, %.1f MB",
		         r.accounts, r.ok, r.failed, r.bad_lines,
		         (unsigned long long)r.total.copied, (unsigned long long)r.total.failed,
		         (double)r.total.bytes / 1e6);
	return (r.failed || r.bad_lines) ? 1 : 0;
}
