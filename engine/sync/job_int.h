/*
 * job_int — what the sync layer's modules share about one account's run:
 * the mailbox, worker, batch and job records, and the steps each module
 * offers the others. Private to engine/sync/; the public API is job.h.
 */
#ifndef MF_JOB_INT_H
#define MF_JOB_INT_H

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <openssl/evp.h>
#include <regex.h>

#include "protocols/imap_syntax.h"
#include "protocols/mailhdr.h"
#include "protocols/utf7.h"
#include "store/msghash.h"

#include "engine/sync/hostlimit.h"
#include "engine/sync/kwdefer.h"
#include "engine/sync/job.h"
#include "engine/sync/sink.h"
#include "engine/sync/source.h"

/* A dry run writes nothing to the state: mailboxes and a job the state
 * does not know get ids no real record has (plan_mbox_id). */
#define JOB_DRY_JOBID UINT32_MAX
#define JOB_DRY_MBID (UINT32_MAX - 1)
/* ... and POP3 unique-ids it does not know get ids counted down from
 * here (scope_uidl_id), below a pass's last UID (UINT32_MAX - 1). */
#define JOB_DRY_ID_TOP (UINT32_MAX - 2)

#define BATCH_SLOTS 8
#define BATCH_MAX JOB_BATCH_MAX
#define JOB_NAME_SHOWN 200 /* bytes of a mailbox name in an error line */
/* Largest message without --max-message-size (Dovecot's own default is
 * unlimited; Gmail takes 35 MB, Exchange 150 MB) */
#define JOB_MESSAGE_MAX (UINT64_C(2) << 30)
/* The largest message a job copies: --max-message-size, else the above. */
#define JOB_MAX_SIZE(j) ((j)->o->max_message_size ? (j)->o->max_message_size : JOB_MESSAGE_MAX)
/* A literal that is not a message body (mailbox names, ENVELOPE parts) */
#define JOB_OTHER_LITERAL_MAX ((uint64_t)1 << 20)
#define BATCH_POOL 8192
#define FETCH_RANGE 1000	/* UIDs per UID FETCH command */
#define RETRY_CHUNK 200
#define MAX_ERRORS 1000
#define JOB_NS_MAX 128		/* bytes of a personal namespace prefix we use */
#define JOB_SHARED_NS 8		/* shared and other users' namespaces we note */

struct mbox {
	char *name;		/* source name, wire form */
	size_t len;
	char *dst_name;		/* destination name, wire form */
	char *display;		/* UTF-8 for people */
	char sep;
	int noselect;
	int subscribed;
	unsigned special;	/* SPECIAL-USE attributes (RFC 6154), bits below */
	int have_status;
	int light;		/* no new mail: only flags or expunges to carry (plan.c) */
	uint32_t st_uidvalidity, st_uidnext, st_messages;
	uint64_t st_highestmodseq;
	uint32_t mbid;
	int work;		/* needs a worker */
	int failed;
	int dst_exists;
	int create_refused;	/* CREATE answered NO: exists after all? LIST tells */
	char create_why[120];	/* the refusal, for the error line if it does not */
	int probe;		/* new while known mailboxes vanished: renamed? */
	uint32_t probe_uidv;
	size_t renamed_from;	/* 1 + index into job.van: it was that one */
	uint64_t copied, skipped, nfailed, bytes;
	uint32_t amb, amb_uidv;	/* the archive's mailbox id in this run (backup) */
	int amb_set;
	/* split across connections (split.c): nparts > 1 parts of the UID
	 * range sp_lo..sp_hi, handed out one by one; the record is written
	 * by the last part to finish, from what all of them saw */
	unsigned nparts, parts_given, parts_left;
	uint32_t sp_lo, sp_hi;
	uint64_t sp_est;	/* messages the plan expects to copy */
	int sp_redo;		/* a part was cut short: the last one reads it all again */
	int sp_seen;		/* a part has finished: the sp_ values below are set */
	uint32_t sp_uidv, sp_uidnext, sp_failed_min, sp_exists;
	uint64_t sp_hms;
	/* messages whose deferred keywords (kwdefer.h) are not stored this
	 * run: the record keeps its intents mark, the next run stores them */
	uint64_t kw_left;
};
/* A mailbox the state knows that the source no longer lists. */
struct vanished {
	uint32_t mbid;
	int claimed;
	struct state_mbox rec;
};
struct bmsg {
	uint32_t uid;
	uint64_t size, modseq;
	int64_t idate;
	uint8_t hash[32], nhash[32];
	uint16_t flags_off, flags_len;
};
struct batch {
	struct imap_cmd cmd;	/* the IMAP sink's APPEND */
	struct worker *w;
	int answered;		/* the server replied before we finished sending */
	int await_commit;	/* closed, intents recorded, commit point not yet crossed */
	int rec_failed;		/* ... but they could not all be recorded */
	int cur_fate;		/* answered early: 1 retry the message being sent, 2 it failed */
	char why[200];		/* the early reply, for the error line */
	unsigned n;
	uint64_t bytes;
	size_t pool_len;
	struct bmsg m[BATCH_MAX];
	char pool[BATCH_POOL];
};
/* Where a worker is in a mailbox's pass: read by the lifecycle (reconnect,
 * the copy's flow control, the settle timer), never to choose who handles
 * a response: each command carries its own consumer (imap_client.h). */
enum wphase {
	W_NEW,		/* never started (worker_start): not working, nothing to stop */
	W_CONNECTING, W_IDLE, W_EXAMINE, W_DEDUPE_DST, W_DEDUPE_SRC,
	W_SETTLE, W_REMAP, W_DIFF, W_APPLY, W_FETCH, W_DONE,
	W_FILTER	/* selective copy: UID SEARCH for the pass's list (source_imap.c) */
};
struct remap {
	uint8_t hash[32];
	uint32_t uid;
	uint32_t uidv;		/* --dedupe: the destination UIDVALIDITY it was seen under */
	int claimed;
};
enum method { M_NEW_ONLY, M_QRESYNC, M_CONDSTORE, M_SCAN };
struct chg {
	uint32_t uid, dst_uid;
	size_t off;		/* flags in the worker's change pool */
	uint16_t len;
};
/* One destination command of the changes pass; a UID STORE knows which
 * changes it carries: chg[first..end) (indices, not packed: a mailbox may
 * hold any number of changes). */
struct apply_op {
	struct imap_cmd cmd; /* first: the op is found from its command */
	size_t first, end;
};
struct settle {
	uint32_t uid, dst_uid;
	int found;
	/* confirmed, its keywords not yet stored (kwdefer.h): found by its
	 * recorded destination UID under dst_uidv, not by content */
	int kw;
	uint32_t dst_uidv;
	uint8_t nhash[32];
	/* --settle-imap (settle_imap.c): found delivered in the check folder;
	 * on the first intent of each digest, the delivered messages that
	 * matched it and the confirmed records of the job with it */
	int chk;
	uint32_t chk_hits, chk_done;
};
/* A destination message above the settle floor no intent matched by its
 * folded digest: its line-end-blind one, for the second look (settle.c). */
struct settle_cand {
	uint32_t uid;
	int claimed;
	uint8_t lf[32];
};
struct worker {
	struct job *job;
	unsigned id;
	struct imap_client src, dst;
	struct source source;	/* where messages come from: over src for IMAP */
	struct pop3src *p3;	/* the POP3 source instead of src (source_pop3.c) */
	struct arcsrc *arc;	/* the archive source instead of src (source_archive.c) */
	struct sink sink;	/* where messages go: over dst for IMAP */
	int src_open, dst_open, src_ready, dst_ready, dead;
	int listing;		/* worker 0: the source's LIST is sent on this session */
	enum wphase phase;
	struct mbox *mb;
	unsigned part;		/* 1 + the part of mb it copies (split.c); 0: all of mb */
	uint32_t part_lo, part_hi;
	struct imap_cmd examine_cmd, fetch_cmd[2];
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;
	uint32_t start_uid, next_range, end_uid;
	/* Highest UID this pass read, for a server that told no UIDNEXT
	 * (Courier's EXAMINE, STATUS of another UIDVALIDITY): "n:*" ran. */
	uint32_t fetch_max_uid;
	/* The source's mailbox is opened with SELECT, not EXAMINE: the server
	 * sent no [UIDNEXT] (Courier-IMAP), and a Courier folder that has never
	 * been opened read-write keeps no UID list: each EXAMINE makes up a
	 * new UIDVALIDITY, and every run would read the mailbox again. */
	int open_rw;
	unsigned fetches_inflight;
	int single_mode;	/* one APPEND per message (retry pass) */
	uint32_t *retry;
	size_t nretry, cretry, retry_pos;
	/* refused for now (SMTP 4xx): read again after a backoff, up to
	 * --retries passes, then failed */
	uint32_t *tmp;
	size_t ntmp, ctmp;
	unsigned tmp_passes;
	struct loop_timer retry_timer;
	int src_paused;		/* paused at a response boundary (slots full) */
	int intents_marked;	/* this mailbox's record says intents may exist */
	struct settle *stl;	/* unconfirmed APPENDs found at the start */
	size_t nstl, cstl;
	uint32_t stl_floor, stl_uid, stl_seen;
	uint32_t stl_dst_uidv;	/* the destination folder's UIDVALIDITY (its EXAMINE) */
	/* intents of parallel parts (split.c): the floor is the pass before
	 * the split's, and destination UIDs recorded as copied are not
	 * matched again (sorted) */
	int stl_parts;
	uint32_t *stl_done;
	size_t nstl_done, cstl_done;
	struct loop_timer settle_timer;
	struct imap_cmd settle_cmd[3];	/* EXAMINE, UID FETCH, CLOSE */
	struct imap_cmd settle_src_cmd;	/* the unmatched intents read from the source */
	struct msghash_lf stl_lf;
	struct settle_cand *stl_cand;
	size_t nstl_cand, cstl_cand;
	/* SMTP/LMTP: the --settle-imap check of the intents (settle_imap.c),
	 * made on first use; stl_checked: its search of this settle ran */
	struct settle_chk *chk;
	int stl_checked;
	/* incremental: what changed on the source since the last pass */
	struct state_mbox rec;	/* the mailbox's record at the start */
	int have_rec;
	enum method method;
	const char *fallback_why; /* the QRESYNC answer is not usable: why */
	int retried_plain;	/* EXAMINE (QRESYNC) refused, sent again without */
	int diff_refused;	/* the CHANGEDSINCE FETCH or UID SEARCH was refused */
	uint32_t max_named_uid;	/* highest UID in the QRESYNC answer */
	struct chg *chg;
	size_t nchg, cchg;
	char *cpool;
	size_t cpool_len, cpool_cap;
	uint32_t *gone;
	size_t ngone, cgone;
	uint8_t *seen;		/* bitmap over 1..rec.last_uid */
	size_t seen_cap;
	uint32_t seen_n;
	uint64_t unknown_vanished;
	unsigned apply_pending;
	struct apply_op *apply_cmd;
	size_t apply_cap;
	size_t chg_lost;   /* flag changes read but not applied (HIGHESTMODSEQ stays) */
	size_t chg_unread; /* of them, not even noted (no memory, state error) */
	struct imap_cmd diff_cmd[2];
	/* UIDVALIDITY changed: messages found again by content */
	struct remap *rm;
	size_t nrm, crm;
	uint32_t old_uidv, rm_uid;
	uint64_t rm_found;
	int rm_failed;                  /* a match could not be recorded: the remap is redone */
	char rm_flags[STATE_FLAGS_MAX]; /* the hashed message's FLAGS */
	size_t rm_flags_len;
	int rm_have_flags;
	/* --dedupe: the destination folder's content (rm), then the new messages */
	int dd_done;
	uint32_t dd_dst_uidv;
	uint32_t *dd_uids;	/* the destination folder's UIDs (UID SEARCH ALL) */
	size_t ndd_uids, cdd_uids;
	struct imap_cmd dd_cmd[3];
	uint64_t dd_found;
	uint64_t dry_count;	/* --dry-run: what its counting sink counted this pass */
	int list_mode;		/* fetch the UIDs in todo, not a range */
	uint32_t *todo;
	size_t ntodo, ctodo, todo_pos;
	struct imap_cmd remap_cmd;
	/* selective copy (source_imap.c): the filter's UID SEARCH */
	int filtered;		/* this pass's todo is the filter's list (reset per mailbox) */
	uint32_t *fmatch;	/* the matching UIDs */
	size_t nfmatch, cfmatch;
	uint64_t f_total;	/* messages in the searched range */
	uint32_t f_lo, f_hi, f_next;	/* the searched range; the next chunk's start, 0 none */
	unsigned f_pending;	/* its commands not answered yet */
	int f_count_done, f_bad;
	char f_why[200];	/* why the search failed */
	char f_set[24];		/* the chunk's UID range, "lo:hi" */
	int src_starved;	/* lit_data returned short */
	/* --max-bytes-per-second: the source waits for its hosts' buckets
	 * (hostlimit_take) until rate_timer fires; since when */
	struct loop_timer rate_timer;
	uint64_t rate_since;
	/* the message being streamed */
	struct {
		int active, skip;
		uint32_t uid;
		uint64_t size, left, modseq;
		int64_t idate;
		char flags[STATE_FLAGS_MAX];
		size_t flags_len;
		char date[IMAP_DATE_LEN + 1]; /* written from parsed fields */
		uint8_t hash[32]; /* SHA-256 of its bytes: set before sink msg_end */
		size_t hdr_n;	/* show_subjects: header bytes held in hdr */
		int hdr_done;	/* ... and read for Subject and From */
	} cur;
	uint8_t *hdr;		/* show_subjects: JOB_HDR_PEEK bytes, else NULL */
	struct msghash mh;
	struct batch *slot[BATCH_SLOTS];
	unsigned b_head, b_count;
	struct batch *open;	/* APPEND being written */
	uint64_t mb_failed_min_uid;
	/* reconnect after a dropped connection (worker_reconnect) */
	struct loop_timer reconnect_timer;
	unsigned attempts;	/* reconnects in a row without a confirmed APPEND */
	char first_loss[160];	/* why the first of them was needed */
	uint32_t *counted;	/* settled after a reconnect and counted as copied */
	size_t ncounted, ccounted; /* there, above resume_uid (ascending) */
	int reconnecting;	/* both connections are being reopened */
	int resumed;		/* this pass of mb goes on from a pass a drop ended */
	int resume_range;	/* ... which was fetching a UID range in order */
	uint32_t resume_uid;	/* every UID of mb below this was counted (range mode) */
	uint32_t resume_uidv;	/* the UIDVALIDITY resume_uid is for */
	uint64_t rng;		/* backoff jitter */
	uint64_t wire_in, wire_out;	/* of the connections closed for a reconnect */
	uint64_t settle_not_before;	/* wall ms: a batch we gave up on (timeout)
					 * may still reach the destination until then */
	/* --max-per-host: the pair's slots, leg 0 the source's host, leg 1
	 * the destination's (hostlimit.h); what to open once granted */
	struct hostlimit_req lim;
	/* keywords stored after the pass's APPENDs (kwdefer.c), or NULL */
	struct kwdefer *kw;
	unsigned lim_open;	/* WORKER_OPEN_*: sides reserved, not opened yet */
	unsigned lim_what;	/* WORKER_OPEN_*: what to open once granted */
};
#define WORKER_OPEN_SRC 1u
#define WORKER_OPEN_DST 2u
/* The user's mailbox rules, compiled once per job (select.c). */
struct rename_rule;
struct name_rules {
	regex_t *inc, *exc;	/* --folder-regex, --exclude-regex */
	size_t ninc, nexc;
	struct rename_rule *rn;	/* --rename, in order */
	size_t nrn;
};
struct name_index {
	uint32_t *slot; /* index + 1, 0 = empty */
	size_t cap, n;  /* n: entries indexed, in array order */
};
/* show_subjects: how much of a message's start is held to find its Subject
 * and From (a header longer than this is read as far as it goes). */
#define JOB_HDR_PEEK 8192

struct job {
	struct loop *loop;
	struct state *st;
	const struct job_opts *o;
	struct job_summary *sum;
	uint32_t jobid;
	int discard;		/* the state scope writes nothing (a dry run; scope.c) */
	uint32_t dry_ids;	/* ids handed out for unknown unique-ids (scope.c) */
	/* show_subjects: the last message's, display text (job_progress) */
	int have_hdr;
	char subject[MAILHDR_TEXT_MAX], from[MAILHDR_TEXT_MAX];
	struct mbox *mb;
	size_t nmb, cmb, next_mb;
	struct worker *w;
	unsigned nw;
	/* name → index + 1 of mb[] and of dst_names[] (open addressing), so
	 * that 200,000 mailboxes are listed in linear time; rebuilt when the
	 * count no longer matches (or the arrays were reordered: *_n = 0) */
	struct name_index mbx, dstx;
	struct name_rules rules;
	/* control */
	struct imap_cmd list_cmd, dlist_cmd[2], *create_cmd;
	char dst_sep;
	/* the first personal namespace's prefix (RFC 2342) on each side, wire
	 * form: "INBOX." on Courier, "" on most servers */
	struct imap_cmd ns_cmd[2];
	char src_ns[JOB_NS_MAX], dst_ns[JOB_NS_MAX];
	size_t src_ns_len, dst_ns_len;
	/* the source's other users' and shared namespaces' prefixes (RFC 2342
	 * §5), wire form: their mailboxes are skipped without --include-shared */
	char shared_ns[JOB_SHARED_NS][JOB_NS_MAX];
	size_t shared_ns_len[JOB_SHARED_NS], nshared_ns;
	unsigned *dst_special;	/* SPECIAL-USE bits of each destination mailbox */
	char **dst_names;
	size_t ndst, cdst;
	unsigned creates_pending;
	int relisted;		/* refused CREATEs were looked up again */
	int listed, dst_prepared, finished, fatal;
	uint32_t list_caps;	/* the source's capabilities its LIST went by (plan.c) */
	int dlisted;		/* the destination's LIST is in (prepare.c) */
	uint32_t dlist_caps;	/* the destination's capabilities its LIST went by */
	int dst_planned;	/* destination names made from both lists */
	int quick_exit;		/* LOGOUTs not waited for: the process ends (job_migrate) */
	int archive_named;	/* backup: the run lists every mailbox (archive_prepare) */
	struct arcw *arcw;	/* backup: the archive's writer thread (arc_writer.h) */
	unsigned arcw_refs;	/* the sinks that use it */
	int pop3_fewer_noted;	/* the one line: fewer POP3 sessions than parts */
	int respawned;		/* a pair was opened to replace the last one lost (job_maybe_finish) */
	/* renamed mailboxes: the vanished ones, the probes, the RENAMEs */
	struct vanished *van;
	size_t nvan, cvan;
	struct imap_cmd *probe_cmd, rename_cmd;
	unsigned probes_pending;
	struct mbox *probe_mb;
	unsigned nerrors;
	struct loop_timer tick;
	struct loop_task stop_task; /* job_stop_task */
	struct loop_task commit_task; /* copy.c: the group commit of closed batches */
	/* copy.c: the group commit waits (at most COPY_COMMIT_WAIT_MS from
	 * commit_wait_since, 0 = not waiting) for sinks with answers coming */
	struct loop_timer commit_timer;
	uint64_t commit_wait_since;
	job_done_fn done;	/* job_start's caller: the job has finished */
	void *done_ud;
	struct loop_task done_task;
	int done_called;
	int ending;		/* job_end runs: nothing may defer done_task */
	uint64_t t0, last_commit;
	int state_dirty;
	int progress_shown;
	struct imap_client_cb src_cb, dst_cb;
	/* the hosts of the two sides for --max-per-host ("host:port"), or ""
	 * for a side with none (an archive) */
	char src_host[HOSTLIMIT_KEY_MAX], dst_host[HOSTLIMIT_KEY_MAX];
	/* test only: MAILFERRY_TEST_FAIL=SITE:N, see test_fail() */
	char test_fail_site[32];
	unsigned long test_fail_at, test_fail_calls;
};
struct create_order {
	size_t depth, idx;
};
/* What a FETCH response says before its literal (key): UID, FLAGS,
 * INTERNALDATE, MODSEQ, each zero or NULL when absent. */
struct fetch_meta {
	uint32_t uid;
	uint64_t modseq;
	uint64_t size; /* RFC822.SIZE, if has_size */
	int has_size;
	const struct imap_node *flags, *date;
};

/* The message is on the destination: confirmed, or confirmed with its
 * keywords still to store (an intent with a destination UID, kwdefer.h). */
static inline int state_msg_stored(const struct state_msg *m)
{
	return m->status == STATE_MSG_DONE || (m->status == STATE_MSG_INTENT && m->dst_uid);
}

/* report.c */
void job_event(struct job *j, const char *event);
/* Ends the line job_event opened: flushed, and the stream unlocked. */
void job_event_end(struct job *j);
void progress_clear(struct job *j);
void job_error(struct job *j, const char *who, const struct mbox *mb, uint32_t uid,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The same, counted and kept as the first error, but neither printed nor
 * a JSON event: a first login refused "later" whose job starts again
 * (job_opts.later_quiet); the caller's own line says so. */
void job_error_quiet(struct job *j, const char *who, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void mailbox_fail(struct worker *w, const char *who, uint32_t uid, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int job_commit(struct job *j);
void on_tick(struct loop *l, struct loop_timer *t);
void test_fail_init(struct job *j);
int test_fail(struct job *j, const char *site);

/* select.c */
int folder_match(const char *pat, const char *name);
int folder_selected(const struct job *j, const char *display);
/* The same outside a job (verify SRC ARCHIVE): o's globs, r compiled from
 * o (rules_compile). */
int folder_selected_by(const struct job_opts *o, const struct name_rules *r, const char *display);
int rules_compile(struct name_rules *r, const struct job_opts *o, struct mf_error *err);
void rules_free(struct name_rules *r);
/* The destination name --rename and --dst-prefix make of display (UTF-8,
 * '/' for hierarchy; malloc'd, NULL out of memory); *changed if they did. */
char *rules_dst_display(const struct job *j, const char *display, int *changed);

/* names.c */
unsigned special_bits(const struct imap_node *attrs);
int parse_idate(const char *s, size_t n, int64_t *out);
size_t flags_string(const struct imap_node *list, char *out, size_t cap,
                           const struct imap_node **bad);
int uidset_each(const char *s, size_t n, void (*fn)(void *ctx, uint32_t uid), void *ctx);
char *dupn(const char *s, size_t n);
int is_inbox(const char *s, size_t n);
/* The first personal namespace's prefix of a NAMESPACE answer (RFC 2342
 * §5) into out (JOB_NS_MAX bytes), its separator in *sep: its length, 0
 * if none or not usable (logged, who names the server). */
size_t ns_personal(const char *who, const struct imap_node *a, char *out, char *sep);
int ns_take(struct job *j, const struct imap_client *c, const struct imap_node *a, int dst);
/* The source's NAMESPACE answer: the other users' and shared prefixes. */
void ns_take_shared(struct job *j, const struct imap_client *c, const struct imap_node *a);
/* The source mailbox lies in a shared or other users' namespace (the
 * longest matching prefix of all namespaces is not the personal one). */
int mbox_in_shared(const struct job *j, const struct mbox *mb);
/* How much of name is the personal namespace prefix ns (0 for INBOX). */
size_t ns_skip(const char *ns, size_t nslen, const char *name, size_t len);
size_t src_ns_skip(const struct job *j, const char *name, size_t len);
/* The name people and the folder options see for a source mailbox (ns:
 * the source's personal prefix, sep its separator): the prefix taken off,
 * modified UTF-7 decoded, '/' for sep; NUL-terminated in out, the length
 * returned. Backup (plan.c) and verify (verify_src.c) name folders so. */
size_t display_name(const char *ns, size_t nslen, const char *name, size_t len, char sep,
                    char *out, size_t cap);
void mbox_ns_display(struct job *j, struct mbox *mb);
void special_guess(struct job *j);
struct mbox *mbox_find(struct job *j, const char *name, size_t len);
struct mbox *mbox_add(struct job *j, const char *name, size_t len);
char *dst_name_for(struct job *j, const struct mbox *mb);
int grow(void **p, size_t *cap, size_t need, size_t elem);
int node_str(const struct imap_node *n, const char **s, size_t *len);
void fetch_meta(const struct imap_resp *r, const struct imap_node *key,
		       struct fetch_meta *fm);
size_t name_hash(const char *s, size_t n);
int nx_update(struct name_index *x, size_t count, void *ctx,
                     const char *(*get)(void *ctx, size_t i, size_t *len));
void nx_reset(struct name_index *x);
const char *dst_name_at(void *ctx, size_t i, size_t *len);

/* plan.c */
void ns_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
uint32_t list_begin(struct job *j, struct imap_client *c, uint32_t assumed, uint32_t *noted,
                    int dst);
void ns_forget(struct job *j, int dst);
int list_failed(struct job *j, struct imap_client *c, const struct imap_resp *r);
int src_ctl_untagged(struct imap_client *c, const struct imap_resp *r);
void plan(struct job *j);
void plan_finish(struct job *j);
void src_list(struct worker *w);

/* rename.c */
void rename_adopt(struct job *j, struct mbox *mb);
void probe_start(struct job *j);
void rename_next(struct job *j, struct imap_client *c);

/* prepare.c */
int dst_has(struct job *j, const char *name);
int dst_ctl_untagged(struct imap_client *c, const struct imap_resp *r);
void dispatch(struct job *j);
void dlist_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
void dst_create_all(struct job *j, struct imap_client *c);
void dst_prepare(struct worker *w);
void dst_list(struct worker *w);
/* backup: names every listed mailbox in the archive's run, and after a
 * run that never committed records again what the state says is stored. */
void archive_prepare(struct job *j);

/* copy.c (the consumer's API is in source.h) */
uint64_t wall_ms(void);
void mbox_mark_intents(struct worker *w, uint32_t on);
void retry_push(struct worker *w, uint32_t uid);
/* The group commit: every batch closed since the last one has its
 * intents made durable in one state commit, then crosses its commit point
 * (copy.c). Runs as j->commit_task, or at once when a new batch opens. */
void copy_commit_run(struct job *j);
void copy_commit_task(struct loop *l, struct loop_task *t);
void worker_check_done(struct worker *w);

/* source_imap.c. Each IMAP command the sync layer sends carries its own
 * consumer of its responses (struct imap_consumer); these are the pieces
 * they share, and the client-wide literal callback (lit_checked_inline)
 * for what no consumer takes. */
int body_literal(struct worker *w, struct imap_client *c, const struct imap_resp *r,
                 const struct imap_node *key, uint64_t size);
int lit_checked_inline(struct imap_client *c, const struct imap_resp *r,
                       const struct imap_node *key, uint64_t size);
ssize_t hash_lit_data(struct imap_client *c, struct imap_cmd *cmd, const uint8_t *p, size_t n);
int fetch_next(struct worker *w, struct imap_cmd *cmd);
void fetch_start(struct worker *w);
int literal_check(struct worker *w, struct imap_client *c, const struct imap_resp *r,
                         const struct imap_node *key, uint64_t size);
/* Selective copy: the mailbox was last copied under another filter, so its
 * pass searches below the recorded position too (plan keeps it as work). */
int selective_rescan(struct job *j, uint32_t mbid);
/* Records the filter of a complete pass (mailbox_finish). */
int selective_done(struct worker *w, struct mf_error *err);

/* sink_imap.c */
void dst_writable(struct imap_client *c);
void dst_ready(struct imap_client *c);
void dst_logged_in(struct imap_client *c);
int dst_greeted(struct imap_client *c, uint64_t us);
void dst_error(struct imap_client *c, const struct mf_error *err);

/* remap.c */
int remap_cmp(const void *a, const void *b);
int rm_push(struct worker *w, const uint8_t nhash[32], uint32_t uid, uint32_t uidv);
/* The remap's and the rename probe's literal begin (UID, FLAGS, hashing). */
int remap_lit_begin(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r,
                    const struct imap_node *key, uint64_t size);
void remap_start(struct worker *w, uint32_t old_uidv);

/* dedupe.c */
void dedupe_start(struct worker *w);

/* settle.c */
void settle_start(struct worker *w);
/* The intents no check found follow --uncertain; then they are recorded
 * and the mailbox goes on (changes_start). */
void settle_policy(struct worker *w);
/* settle_imap.c: --settle-imap, SMTP/LMTP deliveries looked for in the
 * mailbox they reach. wanted: there is one to look in. start: takes over
 * w (phase W_SETTLE) and ends in settle_policy, whatever happens to the
 * check. stop: a check in progress is dropped (the worker stops or
 * reconnects; no settle_policy follows). busy: something of it is still
 * in the loop (a timer, a task, a slot's grant) or its session still
 * closes. release: at the job's end, its slot back and its connection
 * gone, wire bytes added to in/out. free: its memory. */
int settle_imap_wanted(const struct worker *w);
void settle_imap_start(struct worker *w);
void settle_imap_stop(struct worker *w);
int settle_imap_busy(const struct worker *w);
int settle_imap_open(const struct worker *w);
void settle_imap_release(struct worker *w, uint64_t *in, uint64_t *out);
void settle_imap_free(struct worker *w);
int settle_if_interrupted(struct worker *w, uint32_t uidv);
int dst_hash_lit_begin(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r,
                       const struct imap_node *key, uint64_t size);

/* changes.c */
int flags_equal(const char *a, size_t al, const char *b, size_t bl);
void changes_reset(struct worker *w);
void change_note(struct worker *w, uint32_t uid, const struct imap_node *flags);
int changes_untagged(struct worker *w, const struct imap_resp *r);
void changes_start(struct worker *w);
struct imap_cmd *apply_cmd(struct worker *w);
void changes_apply(struct worker *w);
int chg_push(struct worker *w, uint32_t uid, uint32_t dst_uid, const char *fl, size_t n);

/* split.c */
/* Divides big mailboxes into parts by UID range (plan_finish). */
void split_plan(struct job *j);
/* Takes the parts back on a destination that locks a folder per APPEND
 * (imap_client.append_locks): one connection per folder there. */
void split_undo_if_locking(struct job *j);
/* The connection pairs the plan's work is worth: at most its work items
 * (a split mailbox counts its parts), one more per PAIR_MIN_MSGS new
 * messages. */
size_t split_items(struct job *j);
/* Gives w the next part of mb (or all of it): sets w->part, part_lo/hi. */
void split_take(struct worker *w, struct mbox *mb);
/* examine_done for a part: 1 if it took over (the part goes on or was
 * given up), 0 if the mailbox is read as a whole. */
int split_examined(struct worker *w, const struct state_mbox *rec);
/* mailbox_finish of a part: 1 if the part is done and others remain (or
 * the last one reads the mailbox again): nothing to record yet; 0: write
 * the record, with w's fields as all parts saw them. */
int split_finish(struct worker *w);
/* The part's pair dropped and was reopened: the part is given up. */
void split_dropped(struct worker *w);
/* The part's worker is gone for good: 1 if it was the last part. */
int split_gone(struct worker *w);
/* The intents flag a batch of w writes in the record (mbox_mark_intents). */
uint32_t split_intents_mark(const struct worker *w);
/* settle: the first destination UID to look at when intents is
 * STATE_INTENTS_PARTS (parallel parts): from the pass before. */
#define STATE_INTENTS_PARTS 2u

/* worker.c */
void mailbox_finish(struct worker *w);
void mailbox_begin(struct worker *w);
void worker_next(struct worker *w);
void src_ready(struct imap_client *c);
void src_logged_in(struct imap_client *c);
void conn_error(struct imap_client *c, const struct mf_error *err);
int src_untagged_any(struct imap_client *c, const struct imap_resp *r);
int dst_untagged_any(struct imap_client *c, const struct imap_resp *r);
int worker_open_src(struct worker *w, struct mf_error *err);
/* Takes the pair's slots at the host limiter and opens what (WORKER_OPEN_*)
 * now, or once they are granted (then failures go the usual way: conn_error,
 * sink_failed): 0, or negative with err and *dst_failed when the slots
 * cannot be had or an open failed at once. */
int worker_start(struct worker *w, unsigned what, int *dst_failed, struct mf_error *err);
/* Opens both sides of a worker not started yet (workers_spawn_rest, a
 * replacement pair): 0, or -1 with the error reported and the worker dead. */
int worker_spawn(struct worker *w);
/* Releases the pair's slots whose connections are gone (all: every one,
 * and a queued request is withdrawn). */
void worker_lim_sync(struct worker *w, int all);
void worker_src_closed(struct imap_client *c);
void worker_dst_closed(struct imap_client *c);
int worker_init(struct job *j, struct worker *w, unsigned id);
void workers_spawn(struct job *j);
int worker_active(const struct worker *w);
void worker_stop(struct worker *w, int graceful);

void worker_src_failed(struct worker *w, const struct mf_error *err);

/* source_pop3.c: the POP3 source; the worker's hooks call these when
 * w->p3 (job_opts.src_pop3) instead of their IMAP steps. */
struct pop3src;
extern const struct source_ops source_pop3_ops;
int pop3src_open(struct worker *w, struct mf_error *err);
void pop3src_mailbox_begin(struct worker *w);
void pop3src_fetch_start(struct worker *w);
/* split.c: ids given to every listed unique-id now; how many are not
 * copied yet, and their ids' range (0: not to be split). */
uint64_t pop3src_split_est(struct job *j, struct mbox *mb, uint32_t *lo, uint32_t *hi);
/* split.c: w ended a part and takes another that a session of its own
 * was meant for: the server keeps the others out (once per job, a line). */
void pop3src_fewer_note(struct worker *w);
int pop3src_before_finish(struct worker *w);
void pop3src_stop(struct worker *w, int graceful);
void pop3src_release(struct worker *w, uint64_t *in, uint64_t *out);
void pop3src_free(struct worker *w);

/* source_archive.c: an archive run as the source (`restore`); the
 * worker's hooks call these when w->arc (job_opts.src_archive). */
struct arcsrc;
extern const struct source_ops source_archive_ops;
int arcsrc_open(struct worker *w, struct mf_error *err);
void arcsrc_mailbox_begin(struct worker *w);
void arcsrc_fetch_start(struct worker *w);
int arcsrc_queued(const struct worker *w);	/* a task of it is in the loop */
void arcsrc_free(struct worker *w);

/* scope.c: the job's writes to the state; a dry run's scope discards
 * them (j->discard). Same arguments and results as state.h's. */
int scope_open(struct job *j, const char *key, struct mf_error *err);
int scope_mbox_id(struct job *j, struct mbox *mb, int *created, struct mf_error *e);
int scope_uidl_id(struct job *j, uint32_t mbid, const char *uidl, size_t len, uint32_t *id,
                  int *created, struct mf_error *e);
int scope_mbox_put(struct job *j, uint32_t mbid, const struct state_mbox *rec, struct mf_error *e);
int scope_mbox_rename(struct job *j, uint32_t mbid, const char *old, size_t oldlen,
                      const char *to, size_t tolen, struct mf_error *e);
int scope_filter_put(struct job *j, uint32_t mbid, uint64_t id, struct mf_error *e);
int scope_msg_put(struct job *j, const struct state_msg_key *k, const struct state_msg *m,
                  struct mf_error *e);
int scope_msg_del(struct job *j, const struct state_msg_key *k, struct mf_error *e);
/* 1 if the job has writes to commit (never for a discarding scope). */
int scope_commit(struct job *j);

/* job.c */
void job_maybe_finish(struct job *j);
/* Frees j, its workers' memory and j->w (job_end; the tests' harness). */
void job_free(struct job *j);
/* An IMAP session of the job closed: a finished job may be done now. */
void job_session_closed(struct job *j);

/* sink_archive.c: the archive sink (`backup`) */
extern const struct sink_ops sink_archive_ops;
/* The archive's mailbox for mb in the job's run (mb->amb): 0 or negative. */
int sink_archive_mbox(struct job *j, struct mbox *mb, uint32_t uidvalidity, struct mf_error *err);
/* Records in the run a message the state says is stored: 1, 0 (its
 * content is not in the archive), or negative. */
int sink_archive_record(struct job *j, struct mbox *mb, uint32_t uid, const struct state_msg *sm,
                        struct mf_error *err);
/* IMAP flags "\\Seen $Label" → the archive's flag bits and keywords. */
struct archive_msgmeta;
void sink_archive_flags(const char *f, size_t n, struct archive_msgmeta *m);
/* --sync-flags/--delete for an archive: nflag changes and ngone expunges
 * of the worker's lists recorded in the run; then the fetch goes on. */
void sink_archive_apply(struct worker *w, size_t nflag, size_t ngone);

#endif
