/*
 * cli — the command line (DESIGN §7): endpoints as URLs, passwords from the
 * environment or files (never required on the command line), options, the
 * human and JSON summaries, exit codes 0 / 1 / 2.
 *
 * Not for: doing the work (job), talking IMAP (imap_client).
 */
#include "engine/cli/cli.h"
#include "engine/cli/cli_int.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/base/size.h"
#include "engine/sync/hostlimit.h"
#include "engine/sync/job.h"
#include "engine/runtime/loop.h"
#include "engine/cli/url.h"
#include "engine/cli/archive_cmd.h"
#include "store/state.h"

#define MF_VERSION "0.1.0"

enum {
	OPT_SRC_PW = 256,
	OPT_DST_PW,
	OPT_STATE,
	OPT_CA,
	OPT_INSECURE,
	OPT_PLAIN,
	OPT_FOLDER,
	OPT_EXCLUDE,
	OPT_CONN,
	OPT_BATCH,
	OPT_TIMEOUT,
	OPT_DRY,
	OPT_JSON,
	OPT_PROGRESS,
	OPT_NOPROGRESS,
	OPT_SYNC_FLAGS,
	OPT_DEDUPE,
	OPT_DELETE,
	OPT_MAP,
	OPT_LOGIN_TIMEOUT,
	OPT_MIN_PROGRESS,
	OPT_MAX_MSG,
	OPT_STATE_RESET,
	OPT_RETRIES,
	OPT_JOBS,
	OPT_SRC_AUTHUSER,
	OPT_CHECK,
	OPT_FOLDER_RE,
	OPT_EXCLUDE_RE,
	OPT_RENAME,
	OPT_DST_PREFIX,
	OPT_DST_AUTHUSER,
	OPT_POP3_DELETE,
	OPT_MAIL_FROM,
	OPT_UNCERTAIN,
	OPT_NO_CHUNKING,
	OPT_SETTLE_IMAP,
	OPT_SETTLE_PW,
	OPT_SRC_TOK_FILE,
	OPT_DST_TOK_FILE,
	OPT_SRC_TOK_CMD,
	OPT_DST_TOK_CMD,
	OPT_SINCE,
	OPT_BEFORE,
	OPT_LARGER,
	OPT_SMALLER,
	OPT_SEARCH,
	OPT_INCLUDE_SHARED,
	OPT_MAX_PER_HOST,
	OPT_MAX_BPS,
	OPT_THREADS,
	OPT_REPORT,
	OPT_RESUME,
	OPT_SHARD,
	OPT_SHARDS,
	OPT_PROGRESS_INTERVAL,
	OPT_STATUS,
	OPT_STATUS_TOKEN,
	OPT_STATUS_LINGER,
	OPT_STATUS_SUBJECTS,
};

static const struct option long_opts[] = {
	{"src-password-file", required_argument, NULL, OPT_SRC_PW},
	{"dst-password-file", required_argument, NULL, OPT_DST_PW},
	{"state", required_argument, NULL, OPT_STATE},
	{"ca-file", required_argument, NULL, OPT_CA},
	{"insecure", no_argument, NULL, OPT_INSECURE},
	{"allow-plaintext", no_argument, NULL, OPT_PLAIN},
	{"folder", required_argument, NULL, OPT_FOLDER},
	{"exclude", required_argument, NULL, OPT_EXCLUDE},
	{"connections", required_argument, NULL, OPT_CONN},
	{"max-per-host", required_argument, NULL, OPT_MAX_PER_HOST},
	{"max-bytes-per-second", required_argument, NULL, OPT_MAX_BPS},
	{"threads", required_argument, NULL, OPT_THREADS},
	{"batch", required_argument, NULL, OPT_BATCH},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"dry-run", no_argument, NULL, OPT_DRY},
	{"json", no_argument, NULL, OPT_JSON},
	{"progress", no_argument, NULL, OPT_PROGRESS},
	{"no-progress", no_argument, NULL, OPT_NOPROGRESS},
	{"sync-flags", no_argument, NULL, OPT_SYNC_FLAGS},
	{"dedupe", no_argument, NULL, OPT_DEDUPE},
	{"delete", no_argument, NULL, OPT_DELETE},
	{"map", required_argument, NULL, OPT_MAP},
	{"login-timeout", required_argument, NULL, OPT_LOGIN_TIMEOUT},
	{"min-progress", required_argument, NULL, OPT_MIN_PROGRESS},
	{"max-message-size", required_argument, NULL, OPT_MAX_MSG},
	{"state-reset", no_argument, NULL, OPT_STATE_RESET},
	{"retries", required_argument, NULL, OPT_RETRIES},
	{"jobs", required_argument, NULL, OPT_JOBS},
	{"check", no_argument, NULL, OPT_CHECK},
	{"folder-regex", required_argument, NULL, OPT_FOLDER_RE},
	{"exclude-regex", required_argument, NULL, OPT_EXCLUDE_RE},
	{"rename", required_argument, NULL, OPT_RENAME},
	{"dst-prefix", required_argument, NULL, OPT_DST_PREFIX},
	{"src-authuser", required_argument, NULL, OPT_SRC_AUTHUSER},
	{"dst-authuser", required_argument, NULL, OPT_DST_AUTHUSER},
	{"pop3-delete", no_argument, NULL, OPT_POP3_DELETE},
	{"mail-from", required_argument, NULL, OPT_MAIL_FROM},
	{"uncertain", required_argument, NULL, OPT_UNCERTAIN},
	{"no-chunking", no_argument, NULL, OPT_NO_CHUNKING},
	{"settle-imap", required_argument, NULL, OPT_SETTLE_IMAP},
	{"settle-password-file", required_argument, NULL, OPT_SETTLE_PW},
	{"src-oauth-token-file", required_argument, NULL, OPT_SRC_TOK_FILE},
	{"dst-oauth-token-file", required_argument, NULL, OPT_DST_TOK_FILE},
	{"src-oauth-token-cmd", required_argument, NULL, OPT_SRC_TOK_CMD},
	{"dst-oauth-token-cmd", required_argument, NULL, OPT_DST_TOK_CMD},
	{"since", required_argument, NULL, OPT_SINCE},
	{"before", required_argument, NULL, OPT_BEFORE},
	{"larger", required_argument, NULL, OPT_LARGER},
	{"smaller", required_argument, NULL, OPT_SMALLER},
	{"search", required_argument, NULL, OPT_SEARCH},
	{"include-shared", no_argument, NULL, OPT_INCLUDE_SHARED},
	{"report", required_argument, NULL, OPT_REPORT},
	{"resume", no_argument, NULL, OPT_RESUME},
	{"shard", required_argument, NULL, OPT_SHARD},
	{"shards", required_argument, NULL, OPT_SHARDS},
	{"status", required_argument, NULL, OPT_STATUS},
	{"status-token-file", required_argument, NULL, OPT_STATUS_TOKEN},
	{"status-linger", required_argument, NULL, OPT_STATUS_LINGER},
	{"status-show-subjects", no_argument, NULL, OPT_STATUS_SUBJECTS},
	{"progress-interval", required_argument, NULL, OPT_PROGRESS_INTERVAL},
	{"quiet", no_argument, NULL, 'q'},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};


/* Usage and configuration errors: one line, with where it came from (an
 * accounts file's line) when it was not the command line. */
int cli_bad(const struct cli *c, const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "mailferry: %s", c && c->where ? c->where : "");
	fprintf(stderr, fmt, a, b);
	fprintf(stderr, "\n");
	if (c && c->why && !c->why[0])
		snprintf(c->why, c->whycap, fmt, a, b);
	return 2;
}

static int get_password(const struct cli *c, const char *label, const char *env, const char *file,
			const struct url *u, char *out, size_t cap)
{
	char why[512];
	const char *e = getenv(env);

	if (file) {
		if (cli_password_file(file, out, cap, why, sizeof(why)) < 0)
			return cli_bad(c, "%s%s", why, "");
		return 0;
	}
	if (e && *e) {
		snprintf(out, cap, "%s", e);
		return 0;
	}
	if (u->has_password) {
		mf_log(MF_LOG_WARN, "%s password given in the URL: it is visible to other users in "
				    "the process list; prefer %s or --%s-password-file",
		       label, env, label[0] == 's' ? "src" : "dst");
		snprintf(out, cap, "%s", u->password);
		return 0;
	}
	fprintf(stderr, "mailferry: %sno password for the %s account %s@%s: set %s or use --%s-password-file\n",
		c->where ? c->where : "", label, u->user, u->host, env, label[0] == 's' ? "src" : "dst");
	if (c->why && !c->why[0])
		snprintf(c->why, c->whycap, "no password for the %s account", label);
	return 2;
}

static unsigned parse_uint(const struct cli *c, const char *s, unsigned lo, unsigned hi,
                           const char *what, int *err)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (!*s || *end || v < lo || v > hi) {
		fprintf(stderr, "mailferry: %s%s must be a number from %u to %u\n",
		        c->where ? c->where : "", what, lo, hi);
		if (c->why && !c->why[0])
			snprintf(c->why, c->whycap, "%s must be a number from %u to %u", what, lo, hi);
		*err = 1;
		return lo;
	}
	return (unsigned)v;
}

/* --max-bytes-per-second: a number with an optional k, M or G (1024,
 * 1024^2, 1024^3, as --larger: size_parse), HOSTLIMIT_RATE_MIN to 2^40. */
static uint64_t parse_rate(const struct cli *c, const char *s, int *err)
{
	uint64_t v;

	if (size_parse(s, strlen(s), (uint64_t)1 << 40, &v) < 0 || v < HOSTLIMIT_RATE_MIN) {
		fprintf(stderr, "mailferry: %s--max-bytes-per-second wants bytes per second from %u "
		                "to 1T, with k, M or G for 1024, 1024^2, 1024^3\n",
		        c->where ? c->where : "", HOSTLIMIT_RATE_MIN);
		*err = 1;
		return 0;
	}
	return v;
}

/* What every endpoint (IMAP, POP3, SMTP/LMTP) takes from the options the
 * same way: trust, plaintext policy, timeouts. One place for all three
 * (the endpoint structs are the protocols' own types). */
#define ENDPOINT_POLICY(ep, c)                                                                     \
	do {                                                                                       \
		(ep)->ca_file = (c)->ca_file;                                                      \
		(ep)->insecure = (c)->insecure;                                                    \
		(ep)->allow_plaintext = (c)->allow_plaintext;                                      \
		(ep)->timeout_ms = (c)->timeout_s * 1000;                                          \
		(ep)->login_timeout_ms = (c)->login_timeout_s * 1000;                              \
		(ep)->min_progress = (c)->min_progress;                                            \
	} while (0)

void cli_endpoint_fill(struct imap_endpoint *ep, const char *label, const struct url *u,
			  const char *pw, const struct cli *c)
{
	ep->label = label;
	ep->host = u->host;
	ep->port = u->port;
	ep->user = u->user;
	ep->password = pw;
	ep->tls = !strcmp(u->scheme, "imaps") ? IMAP_TLS_IMPLICIT
		  : u->starttls_no	      ? IMAP_TLS_NONE
					      : IMAP_TLS_STARTTLS;
	ENDPOINT_POLICY(ep, c);
	ep->want_enable = 1;
}

/* RssAnon / RssFile now, from /proc: LMDB's map pages are file-backed and
 * reclaimable, the rest is ours. */
static void rss_split(long *anon_kb, long *file_kb)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");

	*anon_kb = *file_kb = -1;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "RssAnon:", 8))
			*anon_kb = strtol(line + 8, NULL, 10);
		else if (!strncmp(line, "RssFile:", 8))
			*file_kb = strtol(line + 8, NULL, 10);
	}
	fclose(f);
}

uint64_t cli_later_wait(const struct job_summary *s, unsigned tries, unsigned retries,
                        uint64_t seed, const char *where, const char *what)
{
	uint64_t ms = job_login_later_ms(s, tries, seed);

	mf_log(MF_LOG_WARN, "%slogin refused for now (%s); %s in %.1f s (attempt %u of %u)", where,
	       s->first_error[0] ? s->first_error : "later", what, (double)ms / 1000.0, tries + 1,
	       retries);
	return ms;
}

/* The exit code of a finished job (DESIGN §7, README "Exit status"): a job
 * that could not run says why (3 connect/TLS, 4 authentication); one that
 * ran says 5 when the destination was full, else 1 for any failure. */
int cli_exit_code(const struct job_summary *s, int rc)
{
	if (!rc)
		return 0;
	if (s->fatal || s->classes & (JOB_CLASS_AUTH | JOB_CLASS_CONNECT)) {
		if (s->classes & JOB_CLASS_AUTH)
			return 4;
		if (s->classes & JOB_CLASS_CONNECT)
			return 3;
	}
	if (s->classes & JOB_CLASS_QUOTA)
		return 5;
	return 1;
}

static const char *exit_class(int code)
{
	static const char *const names[] = {"ok", "failed", "usage", "connect", "auth", "quota"};

	return code >= 0 && code <= 5 ? names[code] : "failed";
}

void cli_summary(const struct cli *c, const struct job_summary *s, int rc)
{
	struct rusage ru;
	long rss_kb = 0, anon_kb, file_kb;

	if (!getrusage(RUSAGE_SELF, &ru))
		rss_kb = ru.ru_maxrss;
	rss_split(&anon_kb, &file_kb);
	if (c->json) {
		printf("{\"event\":\"summary\",\"messages_copied\":%llu,\"messages_skipped\":%llu,"
		       "\"messages_failed\":%llu,\"bytes\":%llu,\"mailboxes\":%u,"
		       "\"mailboxes_failed\":%u,\"mailboxes_renamed\":%u,\"messages_deduped\":%llu,"
		       "\"messages_uncertain\":%llu,\"messages_filtered\":%llu,\"flags_synced\":%llu,"
		       "\"expunged\":%llu,"
		       "\"seconds\":%.3f,\"connections\":%u,\"reconnects\":%u,"
		       "\"wire_bytes_in\":%llu,\"wire_bytes_out\":%llu,\"peak_rss_kb\":%ld,"
		       "\"rss_anon_kb\":%ld,\"rss_file_kb\":%ld,"
		       "\"cpu_user\":%.3f,\"cpu_sys\":%.3f,\"exit\":%d,\"class\":\"%s\"",
		       (unsigned long long)s->copied, (unsigned long long)s->skipped,
		       (unsigned long long)s->failed, (unsigned long long)s->bytes, s->mailboxes,
		       s->mailboxes_failed, s->mailboxes_renamed, (unsigned long long)s->deduped,
		       (unsigned long long)s->uncertain, (unsigned long long)s->filtered,
		       (unsigned long long)s->flags_synced,
		       (unsigned long long)s->expunged, s->seconds, s->connections, s->reconnects,
		       (unsigned long long)s->wire_in, (unsigned long long)s->wire_out, rss_kb, anon_kb,
		       file_kb,
		       (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
		       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6, rc, exit_class(rc));
		cli_hosts_json(stdout, c->hl_report);
		printf("}\n");
		fflush(stdout);
	}
	cli_hosts_log(c->hl_report);
	if (mf_log_enabled(MF_LOG_INFO))
		fprintf(stderr,
			"mailferry: %s: %llu copied, %llu skipped, %llu failed, %.1f MB, %u mailboxes "
			"in %.2f s (%.0f msg/s), %u reconnects, peak RSS %.1f MiB\n",
			rc ? "finished with errors" : "done", (unsigned long long)s->copied,
			(unsigned long long)s->skipped, (unsigned long long)s->failed,
			(double)s->bytes / 1e6, s->mailboxes, s->seconds,
			s->seconds > 0 ? (double)s->copied / s->seconds : 0.0, s->reconnects,
			(double)rss_kb / 1024.0);
}

void cli_defaults(struct cli *c)
{
	memset(c, 0, sizeof(*c));
	c->connections = 4;
	c->batch = 256;
	c->timeout_s = 60;
	c->retries = 5;
	c->progress = isatty(2);
}

/* The options of argv[1..] onto c (what c holds already is the default:
 * the command line's options under an accounts file's line); the first
 * non-option arguments are left at argv[optind..]. Returns 0, 1 for
 * --help (printed), or 2 (a one-line error printed). With extra (run),
 * options only `run` knows are accepted too. */
int cli_parse(struct cli *c, int argc, char **argv, int extra)
{
	int opt, e = 0;

	optind = 0; /* GNU: start over (argv may be an accounts line's) */
	opterr = c->where == NULL; /* an accounts line: our own one-line error */
	while ((opt = getopt_long(argc, argv, "qvh", long_opts, NULL)) != -1) {
		switch (opt) {
		case OPT_SRC_PW: c->src_pw_file = optarg; break;
		case OPT_DST_PW: c->dst_pw_file = optarg; break;
		case OPT_STATE: c->state_dir = optarg; break;
		case OPT_CA: c->ca_file = optarg; break;
		case OPT_INSECURE: c->insecure = 1; break;
		case OPT_PLAIN: c->allow_plaintext = 1; break;
		case OPT_FOLDER:
			if (c->nfolders == 64)
				return cli_bad(c, "too many --folder options%s%s", "", "");
			c->folders[c->nfolders++] = optarg;
			break;
		case OPT_EXCLUDE:
			if (c->nexcludes == 64)
				return cli_bad(c, "too many --exclude options%s%s", "", "");
			c->excludes[c->nexcludes++] = optarg;
			break;
		case OPT_CONN:
			c->connections = parse_uint(c, optarg, 1, 64, "--connections", &e);
			c->connections_given = 1;
			break;
		case OPT_MAX_PER_HOST:
			if (c->where)
				return cli_bad(c, "--max-per-host is an option of the whole run%s%s", "", "");
			c->max_per_host = parse_uint(c, optarg, 1, HOSTLIMIT_MAX, "--max-per-host", &e);
			break;
		case OPT_MAX_BPS:
			if (c->where)
				return cli_bad(c, "--max-bytes-per-second is an option of the whole run%s%s",
				           "", "");
			c->max_bps = parse_rate(c, optarg, &e);
			break;
		case OPT_THREADS:
			if (c->where || !extra)
				return cli_bad(c, "--threads is an option of mailferry run%s%s", "", "");
			c->threads = parse_uint(c, optarg, 1, 1024, "--threads", &e);
			break;
		case OPT_STATUS:
		case OPT_STATUS_TOKEN:
		case OPT_STATUS_LINGER:
		case OPT_STATUS_SUBJECTS:
			if (c->where)
				return cli_bad(c, "--status options are options of the whole run%s%s", "",
				           "");
			if (opt == OPT_STATUS)
				c->status_listen = optarg;
			else if (opt == OPT_STATUS_TOKEN)
				c->status_token_file = optarg;
			else if (opt == OPT_STATUS_SUBJECTS)
				c->status_subjects = 1;
			else
				c->status_linger = parse_uint(c, optarg, 0, 86400, "--status-linger", &e);
			break;
		case OPT_POP3_DELETE: c->pop3_delete = 1; break;
		case OPT_BATCH: c->batch = parse_uint(c, optarg, 1, JOB_BATCH_MAX, "--batch", &e); break;
		case OPT_TIMEOUT: c->timeout_s = parse_uint(c, optarg, 1, 86400, "--timeout", &e); break;
		case OPT_LOGIN_TIMEOUT:
			c->login_timeout_s = parse_uint(c, optarg, 1, 86400, "--login-timeout", &e);
			break;
		case OPT_MIN_PROGRESS:
			c->min_progress = parse_uint(c, optarg, 1, 1u << 30, "--min-progress", &e);
			break;
		case OPT_MAX_MSG:
			c->max_msg = parse_uint(c, optarg, 1, 4294967295u, "--max-message-size", &e);
			break;
		case OPT_RETRIES: c->retries = parse_uint(c, optarg, 0, 100, "--retries", &e); break;
		case OPT_DRY: c->dry_run = 1; break;
		case OPT_JSON: c->json = 1; break;
		case OPT_PROGRESS: c->progress = 1; c->progress_given = 1; break;
		case OPT_NOPROGRESS: c->progress = 0; c->progress_given = 1; break;
		case OPT_SYNC_FLAGS: c->sync_flags = 1; break;
		case OPT_DEDUPE: c->dedupe = 1; break;
		case OPT_DELETE: c->delete_ = 1; break;
		case OPT_STATE_RESET: c->state_reset = 1; break;
		case OPT_MAP:
			if (c->nmaps == 64 || !strchr(optarg, '=') || optarg[0] == '=' ||
			    !strchr(optarg, '=')[1])
				return cli_bad(c, "--map wants SRC=DST (at most 64)%s%s", "", "");
			c->maps[c->nmaps++] = optarg;
			break;
		case OPT_SRC_AUTHUSER: c->src_authuser = optarg; break;
		case OPT_CHECK: c->check = 1; break;
		case OPT_FOLDER_RE:
			if (c->nfolder_res == 64)
				return cli_bad(c, "too many --folder-regex options%s%s", "", "");
			c->folder_res[c->nfolder_res++] = optarg;
			break;
		case OPT_EXCLUDE_RE:
			if (c->nexclude_res == 64)
				return cli_bad(c, "too many --exclude-regex options%s%s", "", "");
			c->exclude_res[c->nexclude_res++] = optarg;
			break;
		case OPT_RENAME:
			if (c->nrenames == 64)
				return cli_bad(c, "too many --rename options%s%s", "", "");
			c->renames[c->nrenames++] = optarg;
			break;
		case OPT_DST_PREFIX: c->dst_prefix = optarg; break;
		case OPT_DST_AUTHUSER: c->dst_authuser = optarg; break;
		case OPT_MAIL_FROM: c->mail_from = optarg; break;
		case OPT_UNCERTAIN:
			if (strcmp(optarg, "resend") && strcmp(optarg, "skip"))
				return cli_bad(c, "--uncertain wants resend or skip%s%s", "", "");
			c->uncertain_skip = !strcmp(optarg, "skip");
			break;
		case OPT_NO_CHUNKING: c->no_chunking = 1; break;
		case OPT_SETTLE_IMAP: c->settle_arg = optarg; break;
		case OPT_SETTLE_PW: c->settle_pw_file = optarg; break;
		case OPT_SRC_TOK_FILE: c->src_tok_file = optarg; break;
		case OPT_DST_TOK_FILE: c->dst_tok_file = optarg; break;
		case OPT_SRC_TOK_CMD: c->src_tok_cmd = optarg; break;
		case OPT_DST_TOK_CMD: c->dst_tok_cmd = optarg; break;
		case OPT_SINCE: c->since = optarg; break;
		case OPT_BEFORE: c->before = optarg; break;
		case OPT_LARGER: c->larger = optarg; break;
		case OPT_SMALLER: c->smaller = optarg; break;
		case OPT_SEARCH: c->search = optarg; break;
		case OPT_INCLUDE_SHARED: c->include_shared = 1; break;
		case OPT_JOBS:
			if (!extra)
				return cli_bad(c, "--jobs is an option of \"run\"%s%s", "", "");
			c->jobs = parse_uint(c, optarg, 1, 10000, "--jobs", &e);
			break;
		case OPT_REPORT:
		case OPT_RESUME:
		case OPT_SHARD:
		case OPT_SHARDS:
		case OPT_PROGRESS_INTERVAL:
			if (!extra)
				return cli_bad(c, "--%s is an option of \"run\"",
				           opt == OPT_REPORT   ? "report"
				           : opt == OPT_RESUME ? "resume"
				           : opt == OPT_SHARD  ? "shard"
				           : opt == OPT_SHARDS ? "shards"
				                               : "progress-interval",
				           "");
			if (opt == OPT_REPORT)
				c->report_path = optarg;
			else if (opt == OPT_RESUME)
				c->resume = 1;
			else if (opt == OPT_SHARD)
				c->shard = optarg;
			else if (opt == OPT_SHARDS)
				c->shards = parse_uint(c, optarg, 1, 100000, "--shards", &e);
			else
				c->progress_interval =
				    parse_uint(c, optarg, 0, 86400, "--progress-interval", &e);
			break;
		case 'q': mf_log_set_level(MF_LOG_ERROR); break;
		case 'v': mf_log_set_level(MF_LOG_DEBUG); break;
		case 'h': cli_usage(stdout); return 1;
		default:
			if (c->where)
				return cli_bad(c, "unknown option or missing argument%s%s", "", "");
			cli_usage(stderr);
			return 2;
		}
	}
	if (!e) {
		/* the selective copy's keys, checked and written again once */
		struct filter_spec sp = {c->since, c->before, c->larger, c->smaller, c->search};
		struct mf_error fe;

		if (filter_build(&sp, c->filter, sizeof(c->filter), &fe) < 0)
			return cli_bad(c, "%s%s", fe.msg, "");
	}
	return e ? 2 : 0;
}

/* What a POP3 account allows (README "POP3 as a source"): only as the
 * source, one mailbox without flags, dates or expunges to compare. 0 or 2. */
static int cli_pop3_check(const struct cli *c)
{
	int src = !strncmp(c->su.scheme, "pop3", 4);

	if (!strncmp(c->du.scheme, "pop3", 4))
		return cli_bad(c, "destination %s://...: a POP3 account can only be a source%s",
		           c->du.scheme, "");
	if (!src && c->pop3_delete)
		return cli_bad(c, "--pop3-delete needs a pop3:// or pop3s:// source%s%s", "", "");
	if (!src)
		return 0;
	if (c->sync_flags || c->delete_ || c->dedupe || c->state_reset)
		return cli_bad(c, "%s does not apply to a POP3 source (no flags, expunges or content "
		              "to compare%s)",
		           c->sync_flags ? "--sync-flags"
		           : c->delete_  ? "--delete"
		           : c->dedupe   ? "--dedupe"
		                         : "--state-reset",
		           c->delete_ ? "; --pop3-delete deletes on the source" : "");
	if (c->filter[0] || c->include_shared)
		return cli_bad(c, "%s does not apply to a POP3 source (it has no search, dates or "
		              "namespaces)%s",
		           c->since     ? "--since"
		           : c->before  ? "--before"
		           : c->larger  ? "--larger"
		           : c->smaller ? "--smaller"
		           : c->search  ? "--search"
		                        : "--include-shared",
		           "");
	if (c->src_authuser || c->src_tok_file || c->src_tok_cmd)
		return cli_bad(c, "%s does not apply to a POP3 source%s",
		           c->src_authuser ? "--src-authuser" : "--src-oauth-token-*", "");
	if (c->check)
		return cli_bad(c, "--check is not available for a POP3 source%s%s", "", "");
	return 0;
}

/* The two account URLs, their passwords and the job key; the default state
 * directory when none was given. 0 or 2 (printed). */
int cli_accounts(struct cli *c, const char *src, const char *dst)
{
	char why[512], shown[1024];
	int rc;

	if (!src)
		memset(&c->su, 0, sizeof(c->su)); /* restore: an archive, not an account */
	else if (url_parse(src, &c->su, why, sizeof(why)) < 0) {
		url_redact(src, shown, sizeof(shown));
		return cli_bad(c, "source %s: %s", shown, why);
	}
	if (!dst)
		memset(&c->du, 0, sizeof(c->du)); /* backup: an archive, not an account */
	else if (url_parse(dst, &c->du, why, sizeof(why)) < 0) {
		url_redact(dst, shown, sizeof(shown));
		return cli_bad(c, "destination %s: %s", shown, why);
	}
	if (src && (c->su.kind == URL_SMTP || c->su.kind == URL_LMTP))
		return cli_bad(c, "source: %s:// delivers mail, it cannot be read from (a source is "
		              "imap://, imaps://, pop3:// or pop3s://)%s", c->su.scheme, "");
	if (c->du.kind == URL_POP3)
		return cli_bad(c, "destination: %s:// cannot store mail (a destination is imap://, "
		              "smtp:// or lmtp://)%s", c->du.scheme, "");
	if (c->du.kind != URL_IMAP && (c->dst_tok_file || c->dst_tok_cmd))
		return cli_bad(c, "--dst-oauth-token-* is for imap:// destinations%s%s", "", "");
	if (c->du.kind == URL_IMAP && (c->mail_from || c->uncertain_skip || c->no_chunking))
		return cli_bad(c, "--mail-from, --uncertain and --no-chunking are for smtp:// and "
		              "lmtp:// destinations%s%s", "", "");
	for (int s = 0; s < 2; s++) {
		const char *side = s ? "dst" : "src", *file = s ? c->dst_tok_file : c->src_tok_file;
		const char *cmd = s ? c->dst_tok_cmd : c->src_tok_cmd;

		if (file && cmd)
			return cli_bad(c, "--%s-oauth-token-file and --%s-oauth-token-cmd: one or the other",
			           side, side);
		if ((file || cmd) && (s ? c->dst_authuser : c->src_authuser))
			return cli_bad(c, "--%s-authuser is a password login; it does not go with --%s-oauth-token-*",
			           side, side);
		if (file && access(file, R_OK) < 0)
			return cli_bad(c, "cannot read the OAuth2 token file %s: %s", file, strerror(errno));
		if (cmd && !cmd[0])
			return cli_bad(c, "--%s-oauth-token-cmd is empty%s", side, "");
		oauth_token_init(s ? &c->dst_tok : &c->src_tok, s ? "destination" : "source",
		                 s ? c->du.user : c->su.user, file, cmd);
	}
	if ((rc = cli_pop3_check(c)) || (rc = cli_settle_accounts(c)))
		return rc;
	if (!c->src_pw_set && !c->src_tok_file && !c->src_tok_cmd && src &&
	    (rc = get_password(c, "source", "MAILFERRY_SRC_PASSWORD", c->src_pw_file, &c->su,
			       c->src_pw, sizeof(c->src_pw))))
		return rc;
	if (!c->dst_pw_set && !c->dst_tok_file && !c->dst_tok_cmd && c->du.user[0] &&
	    (rc = get_password(c, "destination", "MAILFERRY_DST_PASSWORD", c->dst_pw_file, &c->du,
			       c->dst_pw, sizeof(c->dst_pw))))
		return rc;
	if (!c->state_dir) {
		const char *x = getenv("XDG_STATE_HOME"), *h = getenv("HOME");

		if (x && *x)
			snprintf(c->state_buf, sizeof(c->state_buf), "%s/mailferry", x);
		else if (h && *h)
			snprintf(c->state_buf, sizeof(c->state_buf), "%s/.local/state/mailferry", h);
		else
			return cli_bad(c, "no state directory: use --state DIR%s%s", "", "");
		c->state_dir = c->state_buf;
	}
	/* The state belongs to the two accounts, not to how they are reached:
	 * another port, TLS or a proxy must not make it look like a new job
	 * (that would copy everything again). */
	cli_job_key(&c->su, &c->du, c->job_key, sizeof(c->job_key));
	if (c->state_reset && c->dry_run)
		return cli_bad(c, "--state-reset and --dry-run do not go together%s%s", "", "");
	if (c->ca_file && access(c->ca_file, R_OK) < 0)
		return cli_bad(c, "--ca-file %s: %s", c->ca_file, strerror(errno));
	return 0;
}

int cli_job_key(const struct url *su, const struct url *du, char *out, size_t cap)
{
	int n;

	if (du->kind == URL_SMTP || du->kind == URL_LMTP)
		n = snprintf(out, cap, "%s%s@%s -> %s:%s@%s", su->kind == URL_POP3 ? "pop3:" : "",
		             su->user, su->host, du->kind == URL_SMTP ? "smtp" : "lmtp", du->rcpt,
		             du->path[0] ? du->path : du->host);
	else
		n = snprintf(out, cap, "%s%s@%s -> %s@%s", su->kind == URL_POP3 ? "pop3:" : "",
		             su->user, su->host, du->user, du->host);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

void cli_job_opts(const struct cli *c, struct job_opts *o)
{
	memset(o, 0, sizeof(*o));
	cli_endpoint_fill(&o->src, "source", &c->su, c->src_pw, c);
	cli_endpoint_fill(&o->dst, "destination", &c->du, c->dst_pw, c);
	o->src.authuser = c->src_authuser;
	o->dst.authuser = c->dst_authuser;
	if (c->du.kind == URL_SMTP || c->du.kind == URL_LMTP) {
		struct smtp_endpoint *m = &o->dst_smtp;

		o->dst_mail = 1;
		m->label = "destination";
		m->host = c->du.host;
		m->port = c->du.port;
		m->unix_path = c->du.path[0] ? c->du.path : NULL;
		m->lmtp = c->du.kind == URL_LMTP;
		m->user = c->du.user[0] ? c->du.user : NULL;
		m->password = c->du.user[0] ? c->dst_pw : NULL;
		m->tls = c->du.tls ? SMTP_TLS_IMPLICIT
		         : c->du.starttls_no || m->unix_path ? SMTP_TLS_NONE
		                                              : SMTP_TLS_STARTTLS;
		ENDPOINT_POLICY(m, c);
		m->no_chunking = c->no_chunking;
		o->rcpt = c->du.rcpt;
		o->mail_from = c->mail_from;
		o->uncertain_skip = c->uncertain_skip;
		cli_settle_opts(c, o);
	}
	if (c->src_tok_file || c->src_tok_cmd)
		o->src.token = &c->src_tok.src;
	if (c->dst_tok_file || c->dst_tok_cmd)
		o->dst.token = &c->dst_tok.src;
	o->job_key = c->job_key;
	o->connections = c->connections;
	o->retries = c->retries;
	o->batch_msgs = c->batch;
	o->batch_bytes = 4u << 20;
	o->max_message_size = c->max_msg;
	o->filter = c->filter[0] ? c->filter : NULL;
	o->filter_id = c->filter[0] ? filter_id(c->filter, strlen(c->filter)) : 0;
	o->include_shared = c->include_shared;
	o->folders = c->folders;
	o->excludes = c->excludes;
	o->maps = c->maps;
	o->folder_res = c->folder_res;
	o->exclude_res = c->exclude_res;
	o->renames = c->renames;
	o->dst_prefix = c->dst_prefix;
	o->dry_run = c->dry_run;
	o->sync_flags = c->sync_flags;
	/* A state started over knows nothing of what earlier runs copied: the
	 * destination's content says it (--dedupe), so nothing is copied twice. */
	o->dedupe = c->dedupe || c->state_reset;
	o->delete_ = c->delete_;
	o->json = c->json;
	o->progress = c->progress;
	/* read from the header only for the status server, and only then */
	o->show_subjects = c->status_listen && c->status_subjects;
	o->out = stdout;
	if (!strncmp(c->su.scheme, "pop3", 4)) {
		struct pop3_endpoint *ep = &o->src_pop3_ep;

		o->src_pop3 = 1;
		o->pop3_delete = c->pop3_delete;
		ep->label = "source";
		ep->host = c->su.host;
		ep->port = c->su.port;
		ep->user = c->su.user;
		ep->password = c->src_pw;
		ep->tls = !strcmp(c->su.scheme, "pop3s") ? POP3_TLS_IMPLICIT
		          : c->su.starttls_no            ? POP3_TLS_NONE
		                                         : POP3_TLS_STARTTLS;
		ENDPOINT_POLICY(ep, c);
		/* --connections sessions of the maildrop, each RETRing its part
		 * of the new messages (split.c); a server that locks the
		 * maildrop refuses the second, and the run goes on with fewer */
	}
}

void cli_forget(struct cli *c)
{
	OPENSSL_cleanse(c->src_pw, sizeof(c->src_pw));
	OPENSSL_cleanse(c->dst_pw, sizeof(c->dst_pw));
	OPENSSL_cleanse(c->settle_pw, sizeof(c->settle_pw));
	OPENSSL_cleanse(c->settle_u.password, sizeof(c->settle_u.password));
	oauth_token_forget(&c->src_tok);
	oauth_token_forget(&c->dst_tok);
}

static int cmd_migrate(int argc, char **argv)
{
	struct cli c;
	struct job_opts o;
	struct job_summary sum;
	struct loop loop;
	struct state *st;
	struct mf_error err;
	int rc;

	cli_defaults(&c);
	if ((rc = cli_parse(&c, argc, argv, 0)))
		return rc == 1 ? 0 : rc;
	if (argc - optind != 2) {
		cli_usage(stderr);
		return 2;
	}
	if ((rc = cli_accounts(&c, argv[optind], argv[optind + 1])))
		return rc;
	if (!c.status_listen && (c.status_token_file || c.status_linger || c.status_subjects)) {
		cli_forget(&c);
		return cli_bad(&c,
		           "--status-token-file, --status-linger and --status-show-subjects go "
		           "with --status%s%s",
		           "", "");
	}
	if (c.insecure)
		mf_log(MF_LOG_WARN, "--insecure: TLS certificates are NOT verified; anyone on the "
				    "path can read the passwords and the mail");
	cli_job_opts(&c, &o);
	if (job_opts_check(&o, &err) < 0) {
		cli_forget(&c);
		return cli_bad(&c, "%s%s", err.msg, "");
	}
	if (c.check && o.dst_mail) {
		cli_forget(&c);
		return cli_bad(&c, "--check is for imap:// destinations%s%s", "", "");
	}
	if (c.check) {
		rc = cli_check(&o);
		cli_forget(&c);
		return rc;
	}
	if (state_open_flags(&st, c.state_dir, c.state_reset ? STATE_OPEN_RESET : 0, &err) < 0) {
		fprintf(stderr, "mailferry: %s\n", err.msg);
		return 2;
	}
	if ((rc = loop_init(&loop, 256)) < 0) {
		fprintf(stderr, "mailferry: io_uring setup failed: %s\n", strerror(-rc));
		state_close(st);
		return 1;
	}
	if (cli_limits_new(&c, &loop, &o.hostlimit)) {
		loop_free(&loop);
		state_close(st);
		return 1;
	}
	mf_err_clear(&err);
	if (c.status_listen) {
		char title[600], a[280], b[280];

		url_redact(argv[optind], a, sizeof(a));
		url_redact(argv[optind + 1], b, sizeof(b));
		snprintf(title, sizeof(title), "%s -> %s", a, b);
		rc = status_migrate(&c, title, &loop, st, &o, &sum, &err);
	} else {
		/* a first login the server said "later" to: again after a
		 * backoff, up to --retries times (run does the same per line) */
		for (unsigned tries = 0;; tries++) {
			struct timespec ts;
			uint64_t ms;

			o.later_quiet = tries < c.retries;
			rc = job_migrate(&loop, st, &o, &sum, &err);
			if (rc < 0 || !sum.login_later || tries >= c.retries)
				break;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ms = cli_later_wait(&sum, tries, c.retries, (uint64_t)ts.tv_nsec ^ (uint64_t)getpid(),
			                    "", "starting again");
			ts.tv_sec = (time_t)(ms / 1000);
			ts.tv_nsec = (long)(ms % 1000) * 1000000L;
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
		}
	}
	if (rc < 0) {
		fprintf(stderr, "mailferry: %s\n", err.msg);
		rc = 1;
	}
	if (cli_limits_check(o.hostlimit) && !rc)
		rc = 1;
	rc = cli_exit_code(&sum, rc);
	c.hl_report = o.hostlimit;
	cli_summary(&c, &sum, rc);
	hostlimit_free(o.hostlimit);
	loop_free(&loop);
	state_close(st);
	cli_forget(&c);
	return rc;
}

/* mailferry state check DIR: 0 sound, 2 damaged or unusable (what is
 * wrong in one line), 1 if it could not be looked at (in use). */
static int cmd_state(int argc, char **argv)
{
	struct state_check_info info;
	struct mf_error err;
	struct state *st;
	uint64_t n[4];
	int rc;

	if (argc != 3 || strcmp(argv[1], "check")) {
		fprintf(stderr, "usage: mailferry state check DIR\n");
		return 2;
	}
	mf_err_clear(&err);
	if (state_check(argv[2], &info, &err) < 0) {
		fprintf(stderr, "mailferry: %s\n", err.msg);
		return 2;
	}
	if (!info.exists) {
		printf("state %s: no state yet (a run starts a new one)\n", argv[2]);
		return 0;
	}
	/* The pages hold together: now every record must read. */
	rc = state_open(&st, argv[2], &err);
	if (rc < 0) {
		fprintf(stderr, "mailferry: %s\n", err.msg);
		return rc == -EBUSY ? 1 : 2;
	}
	rc = state_verify(st, n, &err);
	state_abort(st);
	state_close(st);
	if (rc < 0) {
		fprintf(stderr, "mailferry: %s\n", err.msg);
		return 2;
	}
	printf("state %s: ok: %llu bytes, %zu of %zu pages in use, commit %llu; %llu mailboxes, "
	       "%llu messages\n",
	       argv[2], (unsigned long long)info.bytes, info.pages, info.last_page + 1,
	       (unsigned long long)info.txnid, (unsigned long long)n[2], (unsigned long long)n[3]);
	return 0;
}

int cli_main(int argc, char **argv)
{
	const char *cmd;

	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		cli_usage(stderr);
		return 2;
	}
	cmd = argv[1];
	if (!strcmp(cmd, "migrate"))
		return cmd_migrate(argc - 1, argv + 1);
	if (!strcmp(cmd, "state"))
		return cmd_state(argc - 1, argv + 1);
	if (!strcmp(cmd, "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "backup"))
		return cmd_backup(argc - 1, argv + 1);
	if (!strcmp(cmd, "restore"))
		return cmd_restore(argc - 1, argv + 1);
	if (!strcmp(cmd, "report"))
		return cmd_report(argc - 1, argv + 1);
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
		printf("mailferry %s\n", MF_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		cli_usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "export"))
		return archive_cmd_export(argc - 1, argv + 1);
	if (!strcmp(cmd, "verify") && archive_cmd_is_archive_verify(argc - 1, argv + 1))
		return archive_cmd_verify(argc - 1, argv + 1);
	if (!strcmp(cmd, "verify"))
		return cmd_verify_src(argc - 1, argv + 1);
	if (!strcmp(cmd, "archive"))
		return archive_cmd_archive(argc - 1, argv + 1);
	if (!strcmp(cmd, "backup") || !strcmp(cmd, "restore") || !strcmp(cmd, "export") ||
	    !strcmp(cmd, "verify") || !strcmp(cmd, "bench")) {
		fprintf(stderr, "mailferry: \"%s\" is not available in this version (migrate, run)\n",
			cmd);
		return 2;
	}
	fprintf(stderr, "mailferry: unknown command \"%s\"\n", cmd);
	cli_usage(stderr);
	return 2;
}
