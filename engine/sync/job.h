/*
 * job — one account's migration: source IMAP account → destination IMAP
 * account, resumable through the LMDB state (DESIGN §1, §5).
 *
 * A control pair of connections lists the source (with LIST-STATUS where
 * offered, so unchanged mailboxes cost nothing), creates what is missing on
 * the destination, then worker pairs (one source and one destination
 * connection each) take mailboxes largest first. Each worker streams
 * `UID FETCH ... BODY.PEEK[]` literals straight into APPEND literals
 * (MULTIAPPEND batches, LITERAL+), pausing the source when the destination
 * cannot take more. Nothing waits on a round trip that could be pipelined.
 * A pair whose connection drops (reset, BYE, timeout) is reopened with
 * exponential backoff and resumes the same mailbox: what was in flight is
 * settled against the destination first, so nothing is copied twice.
 *
 * Not for: the command line (cli), protocol details (imap_client).
 */
#ifndef MF_JOB_H
#define MF_JOB_H

#include <stdint.h>
#include <stdio.h>

#include "engine/runtime/loop.h"
#include "protocols/imap_client.h"
#include "protocols/pop3_client.h"
#include "protocols/smtp_client.h"
#include "store/state.h"

/* Messages in one MULTIAPPEND at most (--batch). */
#define JOB_BATCH_MAX 256

struct archive;
struct hostlimit;

struct job_opts {
	struct imap_endpoint src, dst;
	/* An SMTP or LMTP destination instead of dst (sink_smtp.c): every
	 * message goes to rcpt, from mail_from (NULL: the message's
	 * Return-Path, else <>). A delivery a crash left unconfirmed is sent
	 * again, or with uncertain_skip recorded as done; counted either way. */
	int dst_mail;
	struct smtp_endpoint dst_smtp;
	const char *rcpt, *mail_from;
	int uncertain_skip;
	/* --settle-imap: where the deliveries reach (an IMAP account and its
	 * folder, wire name): unconfirmed ones are looked for there first
	 * (settle_imap.c); settle.host NULL: none. settle_shown names it in
	 * log lines (no password). */
	struct imap_endpoint settle;
	const char *settle_folder, *settle_shown;
	/* An archive instead of dst (sink_archive.c, `backup`): every message
	 * stored and recorded for run archive_run, which the caller began
	 * (and commits). archive_reconcile: the account's previous run never
	 * committed, so what the state says is stored is recorded again. */
	struct archive *archive;
	uint32_t archive_run;
	int archive_reconcile;
	const char *job_key;	/* identifies src+dst in the state */
	unsigned connections;	/* worker pairs, default 4 */
	unsigned batch_msgs;	/* messages per MULTIAPPEND, default 32 */
	uint64_t batch_bytes;	/* bytes per MULTIAPPEND, default 4 MiB */
	uint64_t max_message_size;      /* --max-message-size; 0: APPENDLIMIT, else 2 GiB */
	const char *const *folders;	/* --folder globs (UTF-8 names), NULL-terminated */
	const char *const *excludes;	/* --exclude globs */
	const char *const *maps;	/* --map SRC=DST (UTF-8 names, '/' for hierarchy) */
	const char *const *folder_res;	/* --folder-regex (POSIX extended) */
	const char *const *exclude_res;	/* --exclude-regex */
	const char *const *renames;	/* --rename s/REGEX/REPLACEMENT/[g], in order */
	const char *dst_prefix;		/* --dst-prefix: every mailbox under this one */
	int dry_run;
	int sync_flags;		/* --sync-flags: carry flag changes */
	int delete_;		/* --delete: carry expunges */
	int dedupe;		/* --dedupe: what the destination folder holds is not appended */
	int json;		/* JSON-lines events on stdout */
	int progress;		/* progress line on stderr (a TTY) */
	unsigned retries;	/* --retries: reconnects of a pair in a row without
				 * progress before its mailbox fails; 0 = none */
	int later_quiet;	/* a first login refused "later" is not printed as an
				 * error (still counted, in first_error): the caller
				 * starts the job again and says so in its own line */
	FILE *out;		/* where JSON goes (stdout) */
	const char *label;	/* names the job in JSON events ("job"), or NULL */
	/* A POP3 source (source_pop3.c) instead of src: one mailbox, INBOX,
	 * split over up to connections POP3 sessions (split.c). */
	int src_pop3;
	struct pop3_endpoint src_pop3_ep;
	int pop3_delete;	/* --pop3-delete: DELE what the state records as copied */
	/* An archive's backup run as the source instead of src
	 * (source_archive.c, `restore`): the run's mailboxes, each message
	 * with its recorded flags, keywords and INTERNALDATE; one worker (one
	 * reader per archive handle). arc_sep: the hierarchy separator the
	 * archived names use (the archive does not record it). Messages whose
	 * INTERNALDATE is before arc_since or not before arc_before (when
	 * set) are left out. */
	struct archive *src_archive;
	uint32_t src_archive_run;
	const char *src_archive_who;	/* "archive PATH" in error lines */
	char arc_sep;
	int arc_since_set, arc_before_set;
	int64_t arc_since, arc_before;
	/* A selective copy (--since, --before, --larger, --smaller, --search;
	 * IMAP sources): filter is the canonical IMAP search keys
	 * (engine/sync/filter.h), NULL or "" for every message, filter_id its
	 * identity in the state (0 for none). Only matching messages are
	 * copied; a mailbox last copied under another filter is searched
	 * below its recorded position too (README "Selective copies"). */
	const char *filter;
	uint64_t filter_id;
	/* --include-shared: also the mailboxes of the source's shared and
	 * other users' namespaces (RFC 2342), skipped otherwise */
	int include_shared;
	/* --max-per-host: connections per server host, shared by every job
	 * on the loop (hostlimit.h; the caller owns it), or NULL: no cap */
	struct hostlimit *hostlimit;
	/* State commit latencies of every job on the loop, for the status
	 * server's histogram (the caller owns it), or NULL */
	struct job_stats *stats;
	/* --status-show-subjects: the Subject and From of the message being
	 * copied are read from its header as it streams past, for
	 * job_progress; off, nothing of them is read or kept */
	int show_subjects;
};

/* Upper bounds (seconds) of the state commit latency buckets; the last
 * bucket is +Inf. */
#define JOB_COMMIT_BUCKETS 12
extern const double job_commit_bounds[JOB_COMMIT_BUCKETS];
struct job_stats {
	uint64_t commit_le[JOB_COMMIT_BUCKETS + 1];	/* not cumulative; [N] = +Inf */
	uint64_t commits;
	double commit_seconds;	/* sum */
};

struct job_summary {
	uint64_t copied, skipped, failed, bytes;
	uint64_t flags_synced, expunged;
	uint64_t deduped;	/* found already in the destination folder (--dedupe) */
	uint64_t uncertain;	/* SMTP/LMTP: deliveries a crash left unconfirmed */
	uint64_t filtered;	/* of skipped: outside the selective copy's filter */
	unsigned mailboxes_shared;	/* in shared namespaces, skipped (no --include-shared) */
	unsigned mailboxes, mailboxes_failed, mailboxes_renamed;
	double seconds;
	uint64_t wire_in, wire_out;	/* bytes on the wire, both accounts */
	unsigned connections;	/* connections opened */
	unsigned reconnects;	/* worker pairs reopened after a dropped connection */
	int fatal;		/* the job could not run at all (e.g. login failed) */
	/* fatal at the first login with a "later" from the server (a
	 * throttling code, RFC 5530 [UNAVAILABLE], POP3 [SYS/TEMP], [IN-USE],
	 * [LOGIN-DELAY], SMTP 4xx, or the connection dropped before login):
	 * `run` starts the account again after a backoff of at least
	 * login_later_ms (the server's hint, 0 if none) */
	int login_later;
	uint64_t login_later_ms;
	unsigned classes;	/* JOB_CLASS_* of the failures seen */
	char first_error[240];	/* the first error line reported ("" if none),
				 * escaped as on stderr (mailferry run's report) */
};

/* What kind of failure a run met, for exit codes (cli) and reports. */
enum job_class {
	JOB_CLASS_CONNECT = 1u << 0,	/* cannot connect, TLS failed, server gone */
	JOB_CLASS_AUTH = 1u << 1,	/* a login was refused */
	JOB_CLASS_QUOTA = 1u << 2,	/* the destination is over quota */
};
/* The class of a connection-level error (an mf_error code). */
unsigned job_class_of(int code);

/* How long to wait before the account whose job ended in s->login_later
 * starts again, on its tries-th retry (0 first): 1 s doubling up to 30 s,
 * 0.75 to 1.25 of it (from seed, so accounts refused together do not come
 * back together), or up to 1.1 times the server's hint if that is longer. */
uint64_t job_login_later_ms(const struct job_summary *s, unsigned tries, uint64_t seed);
/* The one backoff of reconnects and restarts: base_ms doubled doublings
 * times (at most 30 s), 0.75 to 1.25 of it from rnd, or up to 1.1 times
 * hint_ms (a server's suggestion, 0 for none) when that is longer. */
uint64_t job_backoff_ms(uint64_t base_ms, unsigned doublings, uint64_t hint_ms, uint64_t rnd);

struct job;
typedef void (*job_done_fn)(struct job *j, void *ud);

/* Starts one account's job on loop l, which the caller runs: the job never
 * runs the loop itself, so several jobs (accounts) can share one loop and
 * one state. done(j, ud) is called from the loop, outside every callback,
 * once the job has finished and none of its timers or tasks is left in the
 * loop; the caller then calls job_end(), from done() or later. sum is
 * filled as the job goes. Returns 0, or a negative code with err set if
 * the job could not start (done is then never called). A dry run writes
 * nothing to the state, so it never disturbs another job's records. */
int job_start(struct job **out, struct loop *l, struct state *st, const struct job_opts *o,
	      struct job_summary *sum, job_done_fn done, void *ud, struct mf_error *err);
/* Closes what is left of the job's connections, commits its state writes,
 * completes sum and frees the job. Returns 0 if everything was copied, 1 if
 * something failed (each failure already reported on stderr and in the
 * JSON events). */
int job_end(struct job *j);

/* How far a running job is, for a progress display: the messages its
 * source mailboxes hold (STATUS MESSAGES; 0 until listed) and mailboxes
 * handed to a worker so far, of how many. */
struct job_progress {
	uint64_t msgs_total;
	size_t mb_started, mb_total;
	/* show_subjects: the message being copied or last copied, as display
	 * text (mailhdr_field_text: UTF-8, no controls, cut; "" if it had
	 * none), valid until the job runs again; NULL otherwise or before the
	 * first header */
	const char *subject, *from;
};
void job_progress_get(const struct job *j, struct job_progress *p);

/* Checks what job_start would compile (regular expressions, --rename
 * rules): 0, or -EINVAL with err naming the option. */
int job_opts_check(const struct job_opts *o, struct mf_error *err);

/* One job alone on loop l: job_start, loop_run until it is done, job_end.
 * Returns 0, 1 as job_end, or a negative code with err set. */
int job_migrate(struct loop *l, struct state *st, const struct job_opts *o,
		struct job_summary *sum, struct mf_error *err);

#endif
