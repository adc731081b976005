/*
 * cli_int — what the commands of the command line share (cli.c, run.c):
 * the parsed options of one account, and the steps from argv to a job's
 * options. Private to engine/cli/.
 */
#ifndef MF_CLI_INT_H
#define MF_CLI_INT_H

#include <stdint.h>
#include <stdio.h>

#include "engine/cli/oauth_token.h"
#include "engine/cli/url.h"
#include "engine/sync/filter.h"
#include "engine/sync/job.h"

struct cli {
	struct url su, du;
	char src_pw[1024], dst_pw[1024];
	const char *src_pw_file, *dst_pw_file;
	const char *src_authuser, *dst_authuser;	/* admin login (SASL PLAIN authcid) */
	/* OAuth2 (--src-oauth-token-file/-cmd, dst-): set up by cli_accounts */
	const char *src_tok_file, *src_tok_cmd, *dst_tok_file, *dst_tok_cmd;
	struct oauth_token src_tok, dst_tok;
	const char *state_dir;
	char state_buf[4096];
	const char *ca_file;
	int insecure, allow_plaintext, dry_run, json, progress, sync_flags, delete_, dedupe;
	int state_reset;
	unsigned connections, batch, timeout_s, retries;
	unsigned login_timeout_s, min_progress;
	uint64_t max_msg;
	const char *folders[65], *excludes[65];
	unsigned nfolders, nexcludes;
	const char *maps[65];
	unsigned nmaps;
	const char *folder_res[65], *exclude_res[65], *renames[65];
	unsigned nfolder_res, nexclude_res, nrenames;
	const char *dst_prefix;
	const char *mail_from;	/* --mail-from: SMTP/LMTP envelope sender */
	int uncertain_skip;	/* --uncertain skip */
	int no_chunking;	/* --no-chunking */
	/* --settle-imap URL, --settle-password-file F: where SMTP/LMTP
	 * deliveries a crash left unconfirmed are looked for (cli_settle.c) */
	const char *settle_arg, *settle_pw_file;
	struct url settle_u;
	char settle_pw[1024];
	char settle_folder[1024];	/* modified UTF-7, as EXAMINE names it */
	char settle_shown[1100];		/* imap://user@host:port/FOLDER, for logs */
	char job_key[2048];
	const char *where;	/* "FILE:LINE: " before error lines (run), or NULL */
	unsigned jobs;		/* run: accounts at once */
	int check;		/* --check: log in and list both sides, copy nothing */
	int src_pw_set, dst_pw_set;	/* run: the password came with the line */
	int pop3_delete;	/* --pop3-delete */
	int connections_given;	/* --connections was on the command line */
	/* selective copy: --since, --before, --larger, --smaller, --search as
	 * given, and their canonical search keys (filter_build) */
	const char *since, *before, *larger, *smaller, *search;
	char filter[FILTER_MAX];
	int include_shared;	/* --include-shared */
	unsigned max_per_host;	/* --max-per-host: 0 = no cap (hostlimit.h) */
	uint64_t max_bps;	/* --max-bytes-per-second per host: 0 = none */
	unsigned threads;	/* run --threads: event loops (0 = online CPUs) */
	/* the limiter whose hosts the summary lists (hostlimit_stat), or NULL */
	const struct hostlimit *hl_report;
	/* run only (refused on an accounts line) */
	const char *report_path;	/* --report FILE */
	int resume;			/* --resume */
	const char *shard;		/* --shard K/N or "auto" */
	unsigned shards;		/* --shards N (with JOB_COMPLETION_INDEX) */
	unsigned progress_interval;	/* --progress-interval SECONDS (no TTY) */
	int progress_given;		/* --progress / --no-progress was given */
	/* run and migrate, not on an accounts line: the status server */
	const char *status_listen;	/* --status ADDR:PORT */
	const char *status_token_file;	/* --status-token-file F */
	unsigned status_linger;		/* --status-linger SECONDS */
	int status_subjects;		/* --status-show-subjects */
	/* run: where the first configuration error of a line is copied (as
	 * printed, without the "FILE:LINE: "), or NULL */
	char *why;
	size_t whycap;
};

void cli_defaults(struct cli *c);
/* Options of argv onto c; positional arguments left at argv[optind..].
 * 0, 1 (--help printed) or 2 (error printed, prefixed with c->where). */
int cli_parse(struct cli *c, int argc, char **argv, int extra);
/* URLs, passwords, the default state directory, the job key: 0 or 2. */
int cli_accounts(struct cli *c, const char *src, const char *dst);
void cli_job_opts(const struct cli *c, struct job_opts *o);
/* The job key of two parsed accounts (what their state is named by: the
 * accounts, not how they are reached). 0, or -1 if it does not fit. */
int cli_job_key(const struct url *su, const struct url *du, char *out, size_t cap);
/* --max-per-host and --max-bytes-per-second (cli_limits.c): a limiter on
 * l from c's options into *out (the caller frees it after the loop has
 * run out); 0, or 1 after a line on stderr. */
int cli_limits_new(const struct cli *c, struct loop *l, struct hostlimit **out);
/* After the jobs ended: 0, or 1 after an error line if a slot was never
 * released (hostlimit.h's invariant). */
int cli_limits_check(const struct hostlimit *hl);
/* The hosts of hl as a JSON member (",\"hosts\":[...]") on f, and one
 * stderr line per host when a byte rate was set. */
void cli_hosts_json(FILE *f, const struct hostlimit *hl);
void cli_hosts_log(const struct hostlimit *hl);
/* The summary of one job (stderr, and JSON with --json). */
void cli_summary(const struct cli *c, const struct job_summary *s, int rc);
/* The exit code of a finished job: 0 done, 1 failed, 3 connect/TLS,
 * 4 authentication, 5 destination over quota. */
int cli_exit_code(const struct job_summary *s, int rc);
/* A job whose first login met a "later" (s->login_later) starts again:
 * how long to wait before its tries-th retry (0 first; job_login_later_ms
 * from seed), said in one warning line, "WHERElogin refused for now (why);
 * WHAT in 1.5 s (attempt tries+1 of retries)". */
uint64_t cli_later_wait(const struct job_summary *s, unsigned tries, unsigned retries,
                        uint64_t seed, const char *where, const char *what);
/* A usage or configuration error: one line on stderr (fmt takes a and b),
 * after where it came from (an accounts file's line); returns 2. */
int cli_bad(const struct cli *c, const char *fmt, const char *a, const char *b);
/* An IMAP endpoint from a parsed URL, its password and c's TLS and
 * timeout options. */
void cli_endpoint_fill(struct imap_endpoint *ep, const char *label, const struct url *u,
                       const char *pw, const struct cli *c);
/* --settle-imap (cli_settle.c): the check account's URL, folder and
 * password, refused unless the destination is smtp:// or lmtp://; 0 or 2
 * (printed). Then its endpoint into o. */
int cli_settle_accounts(struct cli *c);
void cli_settle_opts(const struct cli *c, struct job_opts *o);
/* Wipes the passwords and tokens. */
void cli_forget(struct cli *c);
/* Reads a password file (mode and owner checked): 0, or -1 with why. */
/* The help text (usage.c). */
void cli_usage(FILE *f);
int cli_password_file(const char *path, char *out, size_t cap, char *why, size_t whycap);

/* check.c: --check, both logins and LISTs; the exit code of the class. */
int cli_check(const struct job_opts *o);

/* status_migrate.c: migrate --status: job_migrate with the status server
 * beside the job (title: what the page calls the account, redacted). */
int status_migrate(const struct cli *c, const char *title, struct loop *l, struct state *st,
                   struct job_opts *o, struct job_summary *sum, struct mf_error *err);

/* run.c */
int cmd_run(int argc, char **argv);
/* report_cmd.c: mailferry report merge REPORT... */
int cmd_report(int argc, char **argv);

/* backup_cmd.c: mailferry backup SRC ARCHIVE_DIR */
int cmd_backup(int argc, char **argv);

/* restore_cmd.c: mailferry restore ARCHIVE_DIR DST */
int cmd_restore(int argc, char **argv);
/* `mailferry verify SRC ARCHIVE` (verify_cmd.c). */
int cmd_verify_src(int argc, char **argv);
/* "YYYY-MM-DD[( |T)HH:MM[:SS]][Z]" (UTC) or "@SECONDS": 0, or -1. */
int restore_parse_date(const char *s, int64_t *out);

#endif
