/*
 * run — `mailferry run ACCOUNTS_FILE`: many accounts from one command, on
 * one event loop. The file is read a line at a time as accounts finish, so
 * its length costs nothing; --jobs accounts run at once, each a job of its
 * own (job_start on the shared loop) with its own state directory under
 * --state, so a failing account never disturbs another's records. A bad
 * line is reported with its number and the others still run.
 *
 * Around the jobs: which lines this run takes (--shard, --resume through
 * the run journal), the progress display (a loop timer: a live display on
 * a TTY, a plain line every --progress-interval seconds otherwise), the
 * final report (--report JSON, a table) and the exit code: the class of
 * the worst account (run_report.h orders them).
 *
 * Not for: parsing a line (accounts.c), an account's options (cli.c), the
 * work of one account (engine/sync), the report format (run_report.c).
 */
#include "engine/cli/accounts.h"
#include "engine/cli/cli_int.h"
#include "engine/cli/run_int.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/base/err.h"
#include "engine/cli/run_journal.h"
#include "engine/cli/run_report.h"
#include "engine/runtime/loop.h"
#include "engine/sync/hostlimit.h"
#include "store/state.h"

#include <unistd.h>

static void run_fill(struct run *r);
static int acct_begin(struct acct *a);
static int acct_start(struct acct *a);

/* A run that may hold more than RUN_MANY_CONNS connections (--jobs ×
 * --connections × 2 sides) gives each RUN_CONN_BUF per direction instead
 * of conn.c's 256 KiB (issue 20: 200 connections in 64 MiB; a single
 * account keeps the big buffers). */
#define RUN_MANY_CONNS 64u
#define RUN_CONN_BUF (64u * 1024u)

/* s into out[cap], cut at a UTF-8 boundary if it does not fit. */
static void str_copy(char *out, size_t cap, const char *s)
{
	size_t n = strlen(s);

	if (n >= cap) {
		n = cap - 1;
		while (n && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(out, s, n);
	out[n] = '\0';
}

/* ---- which lines this run takes ------------------------------------------- */

/* Looks at one line (a copy in r->scratch, wiped after): blank or not, bad
 * or not, its identity, its accounts (redacted) and whether it is in this
 * run's shard. Pure but for the digest; prints nothing. */
static void line_select(struct run *r, const char *line, size_t len, unsigned lineno,
                        struct line_sel *out)
{
	struct account_line al;
	char src[1200], dst[1200];
	const char *words[ACCOUNTS_ARGS_MAX + 2];
	size_t nw = 0;
	static const struct url zero_url;
	struct url *su = NULL, *du = NULL;
	char why[300], key[1100];
	int keyed = 0;

	memset(out, 0, sizeof(*out));
	out->member = 1;
	memcpy(r->scratch, line, len);
	r->scratch[len] = '\0';
	if (accounts_parse_line(r->scratch, len, &al, out->why, sizeof(out->why)) < 0) {
		out->bad = 1;
		out->kind = ACCOUNT_URLS;
		goto place;
	}
	out->kind = al.kind;
	if (al.kind == ACCOUNT_NONE)
		goto done;
	out->action = al.action;
	if (al.kind == ACCOUNT_URLS) {
		url_redact(al.argv[0], src, sizeof(src));
		url_redact(al.argv[1], dst, sizeof(dst));
		/* a migration's identity is as it always was: its words */
		if (al.action != ACCOUNT_MIGRATE)
			words[nw++] = accounts_action_name(al.action);
		words[nw++] = src;
		words[nw++] = dst;
		for (int k = 2; k < al.argc && nw < ACCOUNTS_ARGS_MAX + 2; k++)
			words[nw++] = al.argv[k];
	} else {
		if (accounts_url(al.host[0], al.user[0], src, sizeof(src)) < 0 ||
		    accounts_url(al.host[1], al.user[1], dst, sizeof(dst)) < 0)
			src[0] = dst[0] = '\0';
		words[nw++] = src;
		words[nw++] = dst;
		/* a file's name is part of the account, a password is not */
		words[nw++] = al.password[0][0] == '@' ? al.password[0] : "";
		words[nw++] = al.password[1][0] == '@' ? al.password[1] : "";
	}
	if (run_id_of(words, nw, &out->id) < 0)
		memset(&out->id, 0, sizeof(out->id));
	str_copy(out->src, sizeof(out->src), src);
	str_copy(out->dst, sizeof(out->dst), dst);
	/* an archive line's shard key: the action and both places */
	if (al.action != ACCOUNT_MIGRATE) {
		keyed = snprintf(key, sizeof(key), "%s %s -> %s", accounts_action_name(al.action),
		                 src, dst) < (int)sizeof(key);
		goto place;
	}
	/* the shard key is the job key: what the account's state is named by */
	su = malloc(sizeof(*su));
	du = malloc(sizeof(*du));
	if (su && du) {
		*su = zero_url;
		*du = zero_url;
		if (src[0] && dst[0] && url_parse(src, su, why, sizeof(why)) == 0 &&
		    url_parse(dst, du, why, sizeof(why)) == 0 &&
		    cli_job_key(su, du, key, sizeof(key)) == 0)
			keyed = 1;
	}
	free(su);
	free(du);
place:
	if (r->shard_n)
		out->member = keyed ? run_shard_of_key(key, strlen(key), r->shard_n) == r->shard_k
		                    : run_shard_of_line(lineno, r->shard_n) == r->shard_k;
done:
	OPENSSL_cleanse(r->scratch, len + 1);
}

/* Reads the next line into buf: its length, or -1 at the end; *too_long
 * when it did not fit (the rest of it skipped). */
static long read_line(struct run *r, char *buf, size_t cap, int *too_long)
{
	size_t len;
	int c;

	*too_long = 0;
	if (!fgets(buf, (int)cap, r->f))
		return -1;
	len = strlen(buf);
	if (len && buf[len - 1] == '\n') {
		buf[--len] = '\0';
		if (len && buf[len - 1] == '\r')
			buf[--len] = '\0';
	} else if (!feof(r->f)) {
		while ((c = fgetc(r->f)) != EOF && c != '\n')
			;
		*too_long = 1;
	}
	return (long)len;
}

/* How many lines this run takes (for "done/total"): one pass over the
 * file, which is read again from its start afterwards. */
static unsigned count_members(struct run *r)
{
	char *buf = malloc(ACCOUNTS_LINE_MAX + 1);
	struct line_sel *sel = malloc(sizeof(*sel));
	unsigned lineno = 0, n = 0;
	long len;
	int too_long;

	if (buf && sel)
		while ((len = read_line(r, buf, ACCOUNTS_LINE_MAX + 1, &too_long)) >= 0) {
			lineno++;
			if (too_long) {
				n += !r->shard_n || run_shard_of_line(lineno, r->shard_n) == r->shard_k;
				continue;
			}
			line_select(r, buf, (size_t)len, lineno, sel);
			n += sel->kind != ACCOUNT_NONE && sel->member;
		}
	if (buf)
		OPENSSL_cleanse(buf, ACCOUNTS_LINE_MAX + 1);
	free(buf);
	free(sel);
	rewind(r->f);
	return n;
}

/* ---- the report ------------------------------------------------------------ */

/* One finished (or refused, or skipped) account: totals, the report file,
 * the table, the journal. */
static void run_record(struct run *r, const struct run_row *row, const struct run_id *id)
{
	struct mf_error err;

	run_totals_add(&r->totals, row);
	run_status_record(r, row);
	if (r->report) {
		run_report_row(r->report, row, !r->report_rows++);
		fflush(r->report);
	}
	if (r->ntable < RUN_TABLE_ROWS) {
		r->table[r->ntable++] = *row;
	} else {
		unsigned k = RUN_TABLE_ROWS;

		/* full: an account with a problem replaces one that was done */
		if (row->exit)
			for (k = 0; k < RUN_TABLE_ROWS && r->table[k].exit; k++)
				;
		if (k < RUN_TABLE_ROWS)
			r->table[k] = *row;
		r->table_omitted++;
	}
	if (id && r->journal_ok && row->status != RUN_BAD_LINE && row->status != RUN_DONE_EARLIER) {
		struct run_journal_rec rec = {
			.line = row->line,
			.id = *id,
			.exit = row->exit,
			.copied = row->copied,
			.skipped = row->skipped,
			.failed = row->failed,
			.bytes = row->bytes,
			.ms = (uint64_t)(row->seconds * 1000.0),
		};

		if (run_journal_append(&r->journal, &rec, &err) < 0) {
			mf_log(MF_LOG_ERROR, "%s (--resume will run the account again)", err.msg);
			r->journal_ok = 0;
		}
	}
}

static void row_init(struct run_row *row, const struct acct *a)
{
	memset(row, 0, sizeof(*row));
	row->line = a->line;
	snprintf(row->job, sizeof(row->job), "%s", a->label);
	snprintf(row->src, sizeof(row->src), "%s", a->sel.src);
	snprintf(row->dst, sizeof(row->dst), "%s", a->sel.dst);
	if (!a->sel.bad)
		snprintf(row->action, sizeof(row->action), "%s", accounts_action_name(a->sel.action));
}

/* ,"action":"backup" in an account event (nothing for a bad line). */
static void json_action(const struct acct *a)
{
	if (!a->sel.bad)
		printf(",\"action\":\"%s\"", accounts_action_name(a->sel.action));
}

/* A line that cannot run: reported with its line, class 2 (or 1). */
static void acct_refused(struct acct *a, int code, const char *why)
{
	struct run_row row;

	row_init(&row, a);
	row.status = code == 2 ? RUN_BAD_LINE : RUN_FAILED;
	row.exit = code;
	mf_escape(why && *why ? why : "bad line", strlen(why && *why ? why : "bad line"),
	          row.error, sizeof(row.error));
	if (a->c.json) {
		flockfile(stdout); /* whole lines: worker loops write events too */
		printf("{\"event\":\"account\",\"job\":");
		mf_json_str(stdout, a->label, strlen(a->label));
		json_action(a);
		printf(",\"line\":%u,\"status\":\"%s\",\"exit\":%d,\"class\":\"%s\",\"error\":",
		       a->line, run_status_name(row.status), code, run_class_name(code));
		mf_json_str(stdout, row.error, strlen(row.error));
		printf("}\n");
		fflush(stdout);
		funlockfile(stdout);
	}
	run_record(a->r, &row, code == 2 ? NULL : &a->sel.id);
}

/* --resume: an account an earlier run finished; not contacted. */
static void acct_done_earlier(struct acct *a, const struct run_journal_rec *rec)
{
	struct run_row row;

	row_init(&row, a);
	row.status = RUN_DONE_EARLIER;
	row.copied = rec->copied;
	row.skipped = rec->skipped;
	row.failed = rec->failed;
	row.bytes = rec->bytes;
	row.seconds = (double)rec->ms / 1000.0;
	if (a->r->base->json) {
		flockfile(stdout); /* whole lines: worker loops write events too */
		printf("{\"event\":\"account\",\"job\":");
		mf_json_str(stdout, a->label, strlen(a->label));
		json_action(a);
		printf(",\"line\":%u,\"status\":\"done_earlier\",\"exit\":0,\"class\":\"ok\"}\n",
		       a->line);
		fflush(stdout);
		funlockfile(stdout);
	}
	if (mf_log_enabled(MF_LOG_INFO))
		mf_print("mailferry: %sdone by an earlier run (--resume): skipped", a->where);
	run_record(a->r, &row, NULL);
}

/* ---- accounts -------------------------------------------------------------- */

/* A password "@PATH" is read from PATH; any other is the value itself. */
static int line_password(struct acct *a, const char *field, char *out, size_t cap)
{
	char why[512];

	if (field[0] == '@') {
		if (cli_password_file(field + 1, out, cap, why, sizeof(why)) < 0) {
			fprintf(stderr, "mailferry: %s%s\n", a->where, why);
			str_copy(a->why, sizeof(a->why), why);
			return -1;
		}
		return 0;
	}
	if (strlen(field) >= cap) {
		fprintf(stderr, "mailferry: %spassword too long\n", a->where);
		snprintf(a->why, sizeof(a->why), "password too long");
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
	a->c.why = a->why;
	a->c.whycap = sizeof(a->why);
	if (accounts_parse_line(a->buf, len, &al, why, sizeof(why)) < 0) {
		fprintf(stderr, "mailferry: %s%s\n", a->where, why);
		str_copy(a->why, sizeof(a->why), why);
		return 2;
	}
	if (al.kind == ACCOUNT_NONE)
		return 1;
	if (al.kind == ACCOUNT_URLS && al.action != ACCOUNT_MIGRATE)
		return run_arc_setup(a, al.action, al.argc, al.argv);
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
			snprintf(a->why, sizeof(a->why), "unexpected word after the options");
			return 2;
		}
		return cli_accounts(&a->c, al.argv[0], dst_url);
	}
	for (int s = 0; s < 2; s++)
		if (accounts_url(al.host[s], al.user[s], s ? dst : src, sizeof(src)) < 0) {
			fprintf(stderr, "mailferry: %shost%d or user%d too long\n", a->where, s + 1,
			        s + 1);
			snprintf(a->why, sizeof(a->why), "host or user too long");
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
	run_arc_release(a);
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
	int code = cli_exit_code(s, rc);
	struct run_row row;

	row_init(&row, a);
	row.status = code ? RUN_FAILED : RUN_DONE;
	row.exit = code;
	row.copied = s->copied;
	row.skipped = s->skipped;
	row.failed = s->failed;
	row.bytes = s->bytes;
	row.seconds = s->seconds;
	snprintf(row.error, sizeof(row.error), "%s", s->first_error);
	if (code && !row.error[0])
		snprintf(row.error, sizeof(row.error), "finished with errors");
	if (a->c.json) {
		flockfile(stdout); /* whole lines: worker loops write events too */
		printf("{\"event\":\"account\",\"job\":");
		mf_json_str(stdout, a->label, strlen(a->label));
		json_action(a);
		printf(",\"line\":%u,\"status\":\"%s\",\"exit\":%d,\"class\":\"%s\","
		       "\"messages_copied\":%llu,\"messages_skipped\":%llu,"
		       "\"messages_failed\":%llu,\"bytes\":%llu,\"mailboxes\":%u,"
		       "\"mailboxes_failed\":%u,\"seconds\":%.3f,\"reconnects\":%u,\"error\":",
		       a->line, run_status_name(row.status), code, run_class_name(code),
		       (unsigned long long)s->copied, (unsigned long long)s->skipped,
		       (unsigned long long)s->failed, (unsigned long long)s->bytes, s->mailboxes,
		       s->mailboxes_failed, s->seconds, s->reconnects);
		if (row.error[0] && code)
			mf_json_str(stdout, row.error, strlen(row.error));
		else
			fputs("null", stdout);
		printf("}\n");
		fflush(stdout);
		funlockfile(stdout);
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
	run_record(r, &row, &a->sel.id);
}

static void active_remove(struct acct *a)
{
	if (a->prev)
		a->prev->next = a->next;
	else
		a->r->active = a->next;
	if (a->next)
		a->next->prev = a->prev;
	a->prev = a->next = NULL;
}

/* Once no account runs or is being opened (run_fill found the file's end):
 * the display ends, and so does the loop once the status server is done. */
static void run_maybe_end(struct run *r)
{
	if (r->running || r->opening || r->nparked || r->nretry || r->ended)
		return;
	r->ended = 1;
	loop_timer_cancel(&r->loop, &r->tick);
	run_progress_clear(r);
	if (r->th && !r->status)
		loop_stop(&r->loop); /* its inbox would keep it running */
	else
		/* nothing is posted any more (every account is back): the loop
		 * runs out once the status server is done (--status-linger) */
		loop_inbox_close(&r->loop);
	status_finish(r->status);
}

static void acct_retry_fire(struct loop *l, struct loop_timer *t)
{
	struct acct *a = (struct acct *)((char *)t - offsetof(struct acct, retry_timer));
	struct run *r = a->r;

	(void)l;
	r->nretry--;
	memset(&a->sum, 0, sizeof(a->sum));
	if (acct_start(a)) {
		r->failed++;
		acct_free(a);
	}
	run_fill(r);
	run_maybe_end(r);
}

/* The first login met a "later" (job_summary.login_later) and --retries
 * allows another try: the account starts again, from its state, after
 * job_login_later_ms. It keeps its --jobs slot while it waits. 1 if so. */
static int acct_retry(struct acct *a)
{
	struct run *r = a->r;
	uint64_t ms;

	if (!a->sum.login_later || a->arc || a->tries >= a->c.retries || r->ended)
		return 0;
	ms = cli_later_wait(&a->sum, a->tries++, a->c.retries,
	                    (uint64_t)a->line << 32 ^ loop_now_ms(&r->loop), a->where,
	                    "the account starts again");
	state_close(a->st);
	a->st = NULL;
	r->nretry++;
	loop_timer_start(&r->loop, &a->retry_timer, ms, acct_retry_fire);
	return 1;
}

/* An account's job is over (rc: job_end's), or never started (refused). */
static void acct_finished(struct acct *a, int rc, int refused)
{
	struct run *r = a->r;

	active_remove(a);
	a->j = NULL;
	if (!refused && acct_retry(a)) {
		r->running--;
		run_fill(r);
		return;
	}
	if (!refused && a->o.later_quiet && a->sum.login_later)
		mf_log(MF_LOG_ERROR, "%s", a->sum.first_error); /* not retried after all: the run ends */
	if (refused) {
		fprintf(stderr, "mailferry: %s%s\n", a->where, a->why);
		state_close(a->st);
		acct_refused(a, 1, a->why);
		r->failed++;
	} else {
		/* a backup's run commits after its state did (arc_job_end) */
		if (a->arc)
			rc = arc_job_end(a->arc, &a->c, a->label, &a->sum, rc);
		acct_report(a, rc);
		state_close(a->st);
	}
	acct_free(a);
	r->running--;
	run_fill(r);
	run_maybe_end(r);
}

static void acct_done(struct job *j, void *ud)
{
	struct acct *a = ud;

	acct_finished(a, job_end(j), 0);
}

void run_acct_back(struct acct *a)
{
	acct_finished(a, a->rc, a->start_failed);
}

/* Starts one account: 0 started (its state being opened), else the exit
 * class (reported). */
static int acct_start(struct acct *a)
{
	struct run *r = a->r;
	struct mf_error err;
	int rc;

	/* an archive line: its archive first (the job key names it), or it
	 * waits for the line that holds it */
	if (a->arc && (rc = run_arc_acquire(a))) {
		if (rc == 1)
			return 0;
		acct_refused(a, rc, a->why);
		return rc;
	}
	if (acct_state_dir(a) < 0) {
		fprintf(stderr, "mailferry: %sstate directory name too long\n", a->where);
		acct_refused(a, 2, "state directory name too long");
		return 2;
	}
	cli_job_opts(&a->c, &a->o);
	if (a->arc)
		arc_job_opts(a->arc, &a->o);
	a->o.label = a->label;
	a->o.hostlimit = r->hl;
	a->o.later_quiet = !a->arc && a->tries < a->c.retries; /* acct_retry says it */
	/* the commit histogram (--status only); with --threads each worker's
	 * jobs write their own (run_threads_hand) */
	a->o.stats = r->status ? &r->stats : NULL;
	a->t0 = loop_now_ms(&r->loop);
	if (job_opts_check(&a->o, &err) < 0) {
		fprintf(stderr, "mailferry: %s%s\n", a->where, err.msg);
		acct_refused(a, 2, err.msg);
		return 2;
	}
	/* the state is opened off the loop (run_open.c): run_acct_opened follows */
	run_open_hand(r, a);
	return 0;
}

void run_acct_opened(struct acct *a)
{
	struct run *r = a->r;

	if (acct_begin(a)) {
		r->failed++;
		acct_free(a);
	}
	run_fill(r);
	run_maybe_end(r);
}

/* a's state is open (a->orc 0) or not: its job starts. 0 started, else
 * the exit class (reported). */
static int acct_begin(struct acct *a)
{
	struct run *r = a->r;
	struct mf_error err;

	if (a->orc < 0) {
		fprintf(stderr, "mailferry: %s%s\n", a->where, a->oerr.msg);
		acct_refused(a, 1, a->oerr.msg);
		return 1;
	}
	mf_err_clear(&err);
	if (r->th) {
		/* another loop starts it; run_acct_back when it is over */
		run_threads_hand(r, a);
	} else if (job_start(&a->j, &r->loop, a->st, &a->o, &a->sum, acct_done, a, &err) < 0) {
		fprintf(stderr, "mailferry: %s%s\n", a->where, err.msg);
		state_close(a->st);
		acct_refused(a, 1, err.msg);
		return 1;
	}
	r->started++;
	a->next = r->active;
	if (r->active)
		r->active->prev = a;
	r->active = a;
	if (!r->running++ && (r->live || r->interval_ms) && !r->tick.armed)
		loop_timer_start(&r->loop, &r->tick, r->interval_ms, run_on_progress);
	return 0;
}

/* Parked archive lines whose archive is free start (in file order). */
static void run_unpark(struct run *r)
{
	struct acct *a;

	while ((a = run_arc_next(r)))
		if (acct_start(a)) {
			r->failed++;
			acct_free(a);
		}
}

/* Reads lines and starts accounts until --jobs run (or wait for their
 * archive) or the file ends. */
static void run_fill(struct run *r)
{
	while ((run_unpark(r), !r->eof) &&
	       r->running + r->opening + r->nparked + r->nretry < r->base->jobs) {
		struct acct *a = calloc(1, sizeof(*a));
		const struct run_journal_rec *rec;
		long len;
		int rc, too_long;

		if (!a) {
			mf_log(MF_LOG_ERROR, "out of memory; no more accounts started");
			r->eof = 1;
			r->failed++;
			r->totals.exit = run_class_max(r->totals.exit, 1);
			return;
		}
		a->r = r;
		if ((len = read_line(r, a->buf, sizeof(a->buf), &too_long)) < 0) {
			if (ferror(r->f)) {
				mf_log(MF_LOG_ERROR, "reading %s: %s", r->path, strerror(errno));
				r->failed++;
				r->totals.exit = run_class_max(r->totals.exit, 1);
			}
			r->eof = 1;
			free(a);
			return;
		}
		a->line = ++r->lineno;
		snprintf(a->where, sizeof(a->where), "%s:%u: ", r->path, a->line);
		snprintf(a->label, sizeof(a->label), "%s:%u", r->path, a->line);
		a->c.json = r->base->json;
		if (too_long) {
			if (r->shard_n && run_shard_of_line(a->line, r->shard_n) != r->shard_k) {
				acct_free(a);
				continue;
			}
			fprintf(stderr, "mailferry: %sline longer than %d bytes\n", a->where,
			        ACCOUNTS_LINE_MAX - 1);
			r->accounts++;
			r->bad_lines++;
			acct_refused(a, 2, "line too long");
			acct_free(a);
			continue;
		}
		line_select(r, a->buf, (size_t)len, a->line, &a->sel);
		if (a->sel.kind == ACCOUNT_NONE || !a->sel.member) {
			acct_free(a); /* blank, comment, or another shard's */
			continue;
		}
		r->accounts++;
		if (!a->sel.bad && r->journal_ok &&
		    (rec = run_journal_done(&r->journal, a->line, &a->sel.id))) {
			acct_done_earlier(a, rec);
			acct_free(a);
			continue;
		}
		rc = acct_setup(a, (size_t)len);
		if (rc) {
			r->bad_lines++;
			acct_refused(a, 2, a->why);
			acct_free(a);
			continue;
		}
		if (acct_start(a)) {
			r->failed++;
			acct_free(a);
		}
	}
}

/* --shard K/N, or auto with --shards N and $JOB_COMPLETION_INDEX: 0 or 2. */
/* The table (stdout, or stderr with --json) and the report's end. */
static void run_finish_report(struct run *r, double secs)
{
	FILE *t = r->base->json ? stderr : stdout;
	int had_report = r->report != NULL;

	if (r->report) {
		run_report_tail(r->report, &r->totals, secs);
		if (fflush(r->report) || fsync(fileno(r->report)) < 0 || ferror(r->report))
			mf_log(MF_LOG_ERROR, "writing %s: %s", r->base->report_path, strerror(errno));
		fclose(r->report);
		r->report = NULL;
	}
	if (!mf_log_enabled(MF_LOG_INFO) && t == stderr)
		return;
	run_rows_sort(r->table, r->ntable);
	run_table_head(t);
	for (unsigned i = 0; i < r->ntable; i++)
		if (r->ntable + r->table_omitted <= RUN_TABLE_ROWS || r->table[i].exit)
			run_table_row(t, &r->table[i]);
	if (r->ntable + r->table_omitted > RUN_TABLE_ROWS)
		fprintf(t, "(%u accounts: only those with a problem are listed%s)\n",
		        r->ntable + r->table_omitted, had_report ? "" : "; --report FILE has all");
	run_table_tail(t, &r->totals);
	fflush(t);
}

int cmd_run(int argc, char **argv)
{
	struct cli base;
	struct run *r;
	struct stat st;
	struct mf_error err;
	int rc;

	/* A run allocates and frees every account's big buffers again and
	 * again: with glibc's dynamic mmap threshold, raised by the first such
	 * free, they would come from the heaps after that and stay there,
	 * fragmented, so the peak RSS grew with the accounts run instead of
	 * the accounts running. A fixed threshold keeps them mmapped: each
	 * goes back to the system when freed. */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	cli_defaults(&base);
	base.jobs = 4;
	base.progress = 0; /* not per job: the run's own display */
	base.progress_interval = 30;
	if ((rc = cli_parse(&base, argc, argv, 1)))
		return rc == 1 ? 0 : rc;
	if (argc - optind != 1) {
		fprintf(stderr, "usage: mailferry run ACCOUNTS_FILE [--jobs N] [options]\n");
		return 2;
	}
	if (!(r = calloc(1, sizeof(*r)))) {
		fprintf(stderr, "mailferry: out of memory\n");
		return 1;
	}
	r->base = &base;
	r->path = argv[optind];
	if ((rc = run_shard_select(base.shard, base.shards, &r->shard_k, &r->shard_n))) {
		free(r);
		return rc;
	}
	/* progress: live on a TTY (or with --progress), else a line */
	r->tty = isatty(2);
	r->live = base.progress_given ? base.progress : r->tty;
	r->interval_ms = r->live ? 250 : base.progress_interval * 1000u;
	if (base.progress_given && !base.progress)
		r->interval_ms = 0;
	base.progress = 0;
	if (!(r->f = fopen(r->path, "re"))) {
		fprintf(stderr, "mailferry: cannot read accounts file %s: %s\n", r->path,
		        strerror(errno));
		free(r);
		return 2;
	}
	if (fstat(fileno(r->f), &st) < 0)
		memset(&st, 0, sizeof(st));
	if (st.st_mode & 0044)
		r->file_shared = 1;
	if (!base.state_dir) {
		const char *x = getenv("XDG_STATE_HOME"), *h = getenv("HOME");

		if (x && *x)
			snprintf(base.state_buf, sizeof(base.state_buf), "%s/mailferry", x);
		else if (h && *h)
			snprintf(base.state_buf, sizeof(base.state_buf), "%s/.local/state/mailferry", h);
		else {
			fprintf(stderr, "mailferry: no state directory: use --state DIR\n");
			fclose(r->f);
			free(r);
			return 2;
		}
		base.state_dir = base.state_buf;
	}
	mf_err_clear(&err);
	if (!base.dry_run) {
		if (run_journal_open(&r->journal, base.state_dir, base.resume, &err) < 0) {
			fprintf(stderr, "mailferry: %s\n", err.msg);
			fclose(r->f);
			free(r);
			return 2;
		}
		r->journal_ok = 1;
	} else if (base.resume) {
		fprintf(stderr, "mailferry: --resume and --dry-run do not go together\n");
		fclose(r->f);
		free(r);
		return 2;
	}
	if (base.report_path && !(r->report = fopen(base.report_path, "we"))) {
		fprintf(stderr, "mailferry: cannot write report %s: %s\n", base.report_path,
		        strerror(errno));
		rc = 2;
		goto out_journal;
	}
	if (r->report) {
		char shard[32];

		snprintf(shard, sizeof(shard), "%u/%u", r->shard_k, r->shard_n);
		run_report_head(r->report, r->path, r->shard_n ? shard : NULL);
	}
	if (base.insecure)
		mf_log(MF_LOG_WARN, "--insecure: TLS certificates are NOT verified; anyone on the "
				    "path can read the passwords and the mail");
	if ((rc = loop_init(&r->loop, 1024)) < 0) {
		fprintf(stderr, "mailferry: io_uring setup failed: %s\n", strerror(-rc));
		rc = 1;
		goto out_report;
	}
	if (cli_limits_new(&base, &r->loop, &r->hl)) {
		loop_free(&r->loop);
		rc = 1;
		goto out_report;
	}
	if ((uint64_t)base.jobs * base.connections * 2u > RUN_MANY_CONNS)
		r->loop.conn_buf = RUN_CONN_BUF;
	if (!base.threads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		base.threads = n > 0 && n < 1024 ? (unsigned)n : 1;
	}
	if (base.threads > base.jobs)
		base.threads = base.jobs; /* a loop with no account to run is no use */
	if (base.threads > 1 && (rc = run_threads_start(r, base.threads)) < 0) {
		fprintf(stderr, "mailferry: cannot start %u threads: %s\n", base.threads,
		        strerror(-rc));
		run_threads_free(r);
		hostlimit_free(r->hl);
		loop_free(&r->loop);
		rc = 1;
		goto out_report;
	}
	/* a pipe cannot be read twice: then the total is not known ("?") */
	if (S_ISREG(st.st_mode))
		r->members = count_members(r);
	r->t0 = loop_now_ms(&r->loop);
	if ((rc = run_status_start(r))) {
		hostlimit_free(r->hl);
		loop_free(&r->loop);
		goto out_report;
	}
	if ((rc = run_open_start(r)) < 0) {
		fprintf(stderr, "mailferry: cannot start a thread: %s\n", strerror(-rc));
		run_status_free(r);
		run_threads_free(r);
		hostlimit_free(r->hl);
		loop_free(&r->loop);
		rc = 1;
		goto out_report;
	}
	run_fill(r);
	run_maybe_end(r);
	/* worker loops: an end before the loop ran (no account) stopped them,
	 * unless the status server lingers */
	if ((!r->ended || !r->th || r->status) && (rc = loop_run(&r->loop)) < 0)
		mf_log(MF_LOG_ERROR, "event loop failed: %s", strerror(-rc));
	run_open_stop(r);
	run_threads_stop(r);
	if (r->running) {
		mf_log(MF_LOG_ERROR, "internal: the loop ended with %u accounts running", r->running);
		r->failed += r->running;
		r->totals.exit = run_class_max(r->totals.exit, 1);
	}
	run_progress_clear(r);
	if (cli_limits_check(r->hl)) {
		r->failed++;
		r->totals.exit = run_class_max(r->totals.exit, 1);
	}
	if (base.max_per_host)
		mf_log(MF_LOG_INFO, "run: --max-per-host %u: at most %u connections were open to one "
		                    "host",
		       base.max_per_host, hostlimit_peak(r->hl));
	cli_hosts_log(r->hl);
	run_status_free(r);
	if (base.json) {
		printf("{\"event\":\"run_summary\",\"accounts\":%u,\"ok\":%u,\"failed\":%u,"
		       "\"bad_lines\":%u,\"done_earlier\":%u,\"messages_copied\":%llu,"
		       "\"messages_failed\":%llu,\"bytes\":%llu,\"exit\":%d,\"class\":\"%s\"",
		       r->accounts, r->ok, r->failed, r->bad_lines, r->totals.done_earlier,
		       (unsigned long long)r->total.copied, (unsigned long long)r->total.failed,
		       (unsigned long long)r->total.bytes, r->totals.exit,
		       run_class_name(r->totals.exit));
		cli_hosts_json(stdout, r->hl);
		run_threads_json(r, stdout);
		printf(",\"seconds\":%.3f}\n", (double)(loop_now_ms(&r->loop) - r->t0) / 1000.0);
		fflush(stdout);
	}
	hostlimit_free(r->hl);
	run_finish_report(r, (double)(loop_now_ms(&r->loop) - r->t0) / 1000.0);
	loop_free(&r->loop);
	rc = r->totals.exit;
out_report:
	if (r->report)
		fclose(r->report);
out_journal:
	if (r->journal_ok)
		run_journal_close(&r->journal);
	fclose(r->f);
	run_threads_free(r);
	free(r);
	return rc;
}
