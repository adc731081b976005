/*
 * job — one account's IMAP → IMAP migration (see job.h).
 *
 * Data path per worker: source FETCH literal → SHA-256 → destination APPEND
 * literal, in chunks, never holding a whole message. Flow control is by
 * returning short from lit_data (destination buffer full or a "+" awaited)
 * and by pausing the source at a response boundary when every APPEND batch
 * slot is in flight; the destination's progress kicks the source again.
 */
#include "engine/job.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "protocols/imap_syntax.h"
#include "protocols/utf7.h"
#include "store/msghash.h"

#define BATCH_SLOTS 8
#define BATCH_MAX JOB_BATCH_MAX
#define JOB_NAME_SHOWN 200 /* bytes of a mailbox name in an error line */
/* Largest message without --max-message-size (Dovecot's own default is
 * unlimited; Gmail takes 35 MB, Exchange 150 MB) */
#define JOB_MESSAGE_MAX (UINT64_C(2) << 30)
/* A literal that is not a message body (mailbox names, ENVELOPE parts) */
#define JOB_OTHER_LITERAL_MAX ((uint64_t)1 << 20)
#define BATCH_POOL 8192
#define FETCH_RANGE 1000	/* UIDs per UID FETCH command */
#define RETRY_CHUNK 200
#define MAX_ERRORS 1000

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
};

/* A mailbox the state knows that the source no longer lists. */
struct vanished {
	uint32_t mbid;
	int claimed;
	struct state_mbox rec;
};

static const char *const special_names[] = {"\\Sent", "\\Drafts", "\\Trash", "\\Junk",
					   "\\Archive", "\\All", "\\Flagged"};

static unsigned special_bits(const struct imap_node *attrs)
{
	unsigned bits = 0;

	for (const struct imap_node *f = attrs ? attrs->child : NULL; f; f = f->next)
		for (unsigned i = 0; i < sizeof(special_names) / sizeof(special_names[0]); i++)
			if (imap_node_is(f, special_names[i]))
				bits |= 1u << i;
	return bits;
}

struct bmsg {
	uint32_t uid;
	uint64_t size, modseq;
	int64_t idate;
	uint8_t hash[32], nhash[32];
	uint16_t flags_off, flags_len;
};

struct batch {
	struct imap_cmd cmd;
	struct worker *w;
	int answered;		/* the server replied before we finished sending */
	int cur_fate;		/* answered early: 1 retry the message being sent, 2 it failed */
	char why[200];		/* the early reply, for the error line */
	unsigned n;
	uint64_t bytes;
	size_t pool_len;
	struct bmsg m[BATCH_MAX];
	char pool[BATCH_POOL];
};

enum wphase {
	W_CONNECTING, W_IDLE, W_PROBE, W_EXAMINE, W_DEDUPE_DST, W_DEDUPE_SRC, W_COUNT,
	W_SETTLE, W_REMAP, W_DIFF, W_APPLY, W_FETCH, W_DONE
};

struct remap {
	uint8_t hash[32];
	uint32_t uid;
	uint32_t uidv;		/* --dedupe: the destination UIDVALIDITY it was seen under */
	int claimed;
};

enum method { M_NEW_ONLY, M_QRESYNC, M_CONDSTORE, M_SCAN };
static const char *const method_names[] = {"new-only", "qresync", "condstore", "scan"};

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
	uint8_t nhash[32];
};

struct worker {
	struct job *job;
	unsigned id;
	struct imap_client src, dst;
	int src_open, dst_open, src_ready, dst_ready, dead;
	enum wphase phase;
	struct mbox *mb;
	struct imap_cmd examine_cmd, fetch_cmd[2];
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;
	uint32_t start_uid, next_range, end_uid;
	unsigned fetches_inflight;
	int single_mode;	/* one APPEND per message (retry pass) */
	uint32_t *retry;
	size_t nretry, cretry, retry_pos;
	int src_paused;		/* paused at a response boundary (slots full) */
	int intents_marked;	/* this mailbox's record says intents may exist */
	struct settle *stl;	/* unconfirmed APPENDs found at the start */
	size_t nstl, cstl;
	uint32_t stl_floor, stl_uid, stl_seen;
	struct loop_timer settle_timer;
	struct imap_cmd settle_cmd[2];
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
	uint64_t dry_count;	/* --dry-run: messages that would be copied */
	int list_mode;		/* fetch the UIDs in todo, not a range */
	uint32_t *todo;
	size_t ntodo, ctodo, todo_pos;
	struct imap_cmd remap_cmd;
	int src_starved;	/* lit_data returned short */
	/* the message being streamed */
	struct {
		int active, skip;
		uint32_t uid;
		uint64_t size, left, modseq;
		int64_t idate;
		char flags[STATE_FLAGS_MAX];
		size_t flags_len;
		char date[IMAP_DATE_LEN + 1]; /* written from parsed fields */
	} cur;
	struct msghash mh;
	struct batch *slot[BATCH_SLOTS];
	unsigned b_head, b_count;
	struct batch *open;	/* APPEND being written */
	uint64_t mb_failed_min_uid;
	/* reconnect after a dropped connection (worker_reconnect) */
	struct loop_timer reconnect_timer;
	unsigned attempts;	/* reconnects in a row without a confirmed APPEND */
	int reconnecting;	/* both connections are being reopened */
	int resumed;		/* this pass of mb goes on from a pass a drop ended */
	int resume_range;	/* ... which was fetching a UID range in order */
	uint32_t resume_uid;	/* every UID of mb below this was counted (range mode) */
	uint32_t resume_uidv;	/* the UIDVALIDITY resume_uid is for */
	uint64_t rng;		/* backoff jitter */
	uint64_t wire_in, wire_out;	/* of the connections closed for a reconnect */
};

struct name_index {
	uint32_t *slot; /* index + 1, 0 = empty */
	size_t cap, n;  /* n: entries indexed, in array order */
};

struct job {
	struct loop *loop;
	struct state *st;
	const struct job_opts *o;
	struct job_summary *sum;
	uint32_t jobid;
	struct mbox *mb;
	size_t nmb, cmb, next_mb;
	struct worker *w;
	unsigned nw;
	/* name → index + 1 of mb[] and of dst_names[] (open addressing), so
	 * that 200,000 mailboxes are listed in linear time; rebuilt when the
	 * count no longer matches (or the arrays were reordered: *_n = 0) */
	struct name_index mbx, dstx;
	/* control */
	struct imap_cmd list_cmd, dlist_cmd[2], *create_cmd;
	char dst_sep;
	unsigned *dst_special;	/* SPECIAL-USE bits of each destination mailbox */
	char **dst_names;
	size_t ndst, cdst;
	unsigned creates_pending;
	int relisted;		/* refused CREATEs were looked up again */
	int listed, dst_prepared, finished, fatal;
	/* renamed mailboxes: the vanished ones, the probes, the RENAMEs */
	struct vanished *van;
	size_t nvan, cvan;
	struct imap_cmd *probe_cmd, rename_cmd;
	unsigned probes_pending;
	struct mbox *probe_mb;
	enum wphase probe_saved_phase;
	unsigned nerrors;
	struct loop_timer tick;
	struct loop_task stop_task; /* job_stop_task */
	uint64_t t0, last_commit;
	int state_dirty;
	int progress_shown;
	struct imap_client_cb src_cb, dst_cb;
	/* test only: MAILFERRY_TEST_FAIL=SITE:N, see test_fail() */
	char test_fail_site[32];
	unsigned long test_fail_at, test_fail_calls;
};

static void worker_next(struct worker *w);
static void worker_check_done(struct worker *w);
static int is_inbox(const char *s, size_t n);
static void job_maybe_finish(struct job *j);
static void worker_stop(struct worker *w, int graceful);
static void mailbox_finish(struct worker *w);
static void fetch_start(struct worker *w);
static void examine_send(struct worker *w);
static int grow(void **p, size_t *cap, size_t need, size_t elem);
static void retry_push(struct worker *w, uint32_t uid);
static void intent_drop(struct worker *w, uint32_t uid);

/* ---- test hook ------------------------------------------------------------ */

/* TEST ONLY. MAILFERRY_TEST_FAIL=SITE:N (read once at job start) makes the
 * Nth pass through SITE fail as if its allocation or state call had: for
 * the regression tests of faults a real run cannot produce on demand
 * (tests/integration/t_silent_losses.sh). Sites: retry_push, change_note
 * (the list cannot grow), remap_get (the state cannot read a record). */
static void test_fail_init(struct job *j)
{
	const char *v = getenv("MAILFERRY_TEST_FAIL"), *colon;

	if (!v || !(colon = strchr(v, ':')) || (size_t)(colon - v) >= sizeof(j->test_fail_site))
		return;
	memcpy(j->test_fail_site, v, (size_t)(colon - v));
	j->test_fail_site[colon - v] = '\0';
	j->test_fail_at = strtoul(colon + 1, NULL, 10);
}

static int test_fail(struct job *j, const char *site)
{
	if (!j->test_fail_at || strcmp(site, j->test_fail_site))
		return 0;
	return ++j->test_fail_calls == j->test_fail_at;
}

/* ---- reporting ----------------------------------------------------------- */

/* A JSON string (RFC 8259) of bytes a server may have chosen: controls as
 * \u00XX, a byte that is not valid UTF-8 as the text \xNN (as on stderr,
 * see mf_escape), so the line is always valid JSON and two names that
 * differ only in such bytes stay apart. */
static void json_str(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n;) {
		unsigned char ch = (unsigned char)s[i];
		size_t k = mf_utf8_len((const unsigned char *)s + i, n - i, NULL);

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(f, "\\u%04x", ch);
		else if (!k)
			fprintf(f, "\\\\x%02x", ch);
		else
			fwrite(s + i, 1, k, f);
		i += k ? k : 1;
	}
	fputc('"', f);
}

static void progress_clear(struct job *j)
{
	if (j->progress_shown) {
		fputs("\r\033[K", stderr);
		j->progress_shown = 0;
	}
}

/* One error: stderr line naming account, mailbox and UID; JSON event. */
static void job_error(struct job *j, const char *who, const struct mbox *mb, uint32_t uid,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void job_error(struct job *j, const char *who, const struct mbox *mb, uint32_t uid,
		      const char *fmt, ...)
{
	char msg[1024], line[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = snprintf(line, sizeof(line), "%s", who ? who : "");
	if (mb) {
		/* A long name must not push the reason off the line: it is cut
		 * (at a UTF-8 boundary) with an ellipsis; --json has it whole. */
		size_t dl = strlen(mb->display), cut = dl > JOB_NAME_SHOWN ? JOB_NAME_SHOWN : dl;

		while (cut < dl && cut && ((unsigned char)mb->display[cut] & 0xc0) == 0x80)
			cut--;
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%smailbox \"%.*s%s\"",
		              n ? " " : "", (int)cut, mb->display, cut < dl ? "..." : "");
	}
	if (uid && n < (int)sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n, " uid %u", uid);
	if (n < (int)sizeof(line))
		snprintf(line + n, sizeof(line) - (size_t)n, "%s%s", n ? ": " : "", msg);
	progress_clear(j);
	mf_log(MF_LOG_ERROR, "%s", line);
	if (j->o->json && j->nerrors < MAX_ERRORS) {
		fprintf(j->o->out, "{\"event\":\"error\",\"account\":");
		json_str(j->o->out, who ? who : "", who ? strlen(who) : 0);
		fprintf(j->o->out, ",\"mailbox\":");
		if (mb)
			json_str(j->o->out, mb->display, strlen(mb->display));
		else
			fputs("null", j->o->out);
		fprintf(j->o->out, ",\"uid\":%u,\"message\":", uid);
		json_str(j->o->out, line, strlen(line));
		fputs("}\n", j->o->out);
	}
	j->nerrors++;
}

/* The worker's mailbox failed: one error line, then the next mailbox. */
static void mailbox_fail(struct worker *w, const char *who, uint32_t uid, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void mailbox_fail(struct worker *w, const char *who, uint32_t uid, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	job_error(w->job, who, w->mb, uid, "%s", msg);
	w->mb->failed = 1;
	mailbox_finish(w);
}

static int job_commit(struct job *j)
{
	struct mf_error e;
	int rc = 0;

	if (!j->state_dirty || j->o->dry_run)
		return 0;
	if ((rc = state_commit(j->st, &e)) < 0) {
		job_error(j, NULL, NULL, 0, "%s", e.msg);
		j->fatal = 1;
	}
	j->state_dirty = 0;
	j->last_commit = loop_now_ms(j->loop);
	return rc;
}

static void on_tick(struct loop *l, struct loop_timer *t)
{
	struct job *j = (struct job *)((char *)t - offsetof(struct job, tick));
	struct job_summary *s = j->sum;
	double secs;

	if (j->finished)
		return;
	if (loop_now_ms(l) - j->last_commit >= 1000)
		job_commit(j);
	if (j->o->progress) {
		secs = (double)(loop_now_ms(l) - j->t0) / 1000.0;
		fprintf(stderr, "\r\033[Kmailferry: %llu copied, %llu skipped, %llu failed, %.1f MB, "
				"%.0f msg/s, %zu/%zu mailboxes",
			(unsigned long long)s->copied, (unsigned long long)s->skipped,
			(unsigned long long)s->failed, (double)s->bytes / 1e6,
			secs > 0 ? (double)s->copied / secs : 0.0, j->next_mb, j->nmb);
		j->progress_shown = 1;
	}
	loop_timer_start(l, &j->tick, 250, on_tick);
}

/* ---- small parsers --------------------------------------------------------- */

/* "17-Jul-1996 02:44:25 -0700" → unix seconds (RFC 3501 date-time). */
static int parse_idate(const char *s, size_t n, int64_t *out)
{
	struct imap_date d;

	if (imap_date_parse(s, n, &d) < 0)
		return -1;
	*out = imap_date_unix(&d);
	return 0;
}

/* FLAGS list → "\Seen $Forwarded" without \Recent (APPEND cannot set it).
 * Only what may go on a command line is written: system flags from a
 * fixed table, keywords that are atoms. The first flag that is neither
 * (or a FLAGS value that is not a list) is left out and put in *bad (if
 * bad), for the caller to refuse the message or the change. */
static size_t flags_string(const struct imap_node *list, char *out, size_t cap,
                           const struct imap_node **bad)
{
	size_t n = 0;

	if (bad)
		*bad = list && list->type != IMAP_NODE_LIST ? list : NULL;
	for (const struct imap_node *f = list ? list->child : NULL; f; f = f->next) {
		const char *canon = NULL;
		enum imap_flag_kind kind = f->type == IMAP_NODE_ATOM
		                               ? imap_flag_classify(f->s, f->len, &canon)
		                               : IMAP_FLAG_INVALID;
		size_t len = canon ? strlen(canon) : f->len;

		if (kind == IMAP_FLAG_RECENT)
			continue;
		if (kind == IMAP_FLAG_INVALID) {
			if (bad && !*bad)
				*bad = f;
			continue;
		}
		if (n + len + 2 > cap)
			break;
		if (n)
			out[n++] = ' ';
		memcpy(out + n, canon ? canon : f->s, len);
		n += len;
	}
	out[n] = '\0';
	return n;
}

/* "5:7,9" → calls fn for 5,6,7,9 in order. */
static int uidset_each(const char *s, size_t n, void (*fn)(void *ctx, uint32_t uid), void *ctx)
{
	size_t i = 0;

	while (i < n) {
		uint64_t a = 0, b;
		size_t st = i;

		while (i < n && s[i] >= '0' && s[i] <= '9')
			a = a * 10 + (uint64_t)(s[i++] - '0');
		if (i == st || a > UINT32_MAX)
			return -1;
		b = a;
		if (i < n && s[i] == ':') {
			st = ++i;
			b = 0;
			while (i < n && s[i] >= '0' && s[i] <= '9')
				b = b * 10 + (uint64_t)(s[i++] - '0');
			if (i == st || b > UINT32_MAX)
				return -1;
		}
		if (b < a) {
			uint64_t t = a;
			a = b;
			b = t;
		}
		if (b - a > 1000000)
			return -1;
		for (uint64_t u = a; u <= b; u++)
			fn(ctx, (uint32_t)u);
		if (i < n && s[i] != ',')
			return -1;
		i++;
	}
	return 0;
}

/* ---- mailbox names ------------------------------------------------------------ */

static char *dupn(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

static int is_inbox(const char *s, size_t n)
{
	return n == 5 && !strncasecmp(s, "INBOX", 5);
}

/* Source name with the source separator → destination name. A character
 * that is the destination's separator but not the source's cannot be kept
 * (it would create a hierarchy level): it becomes '_' and we say so. */
static char *translate_name(struct job *j, const struct mbox *mb)
{
	char *d = dupn(mb->name, mb->len);

	if (!d)
		return NULL;
	if (is_inbox(d, mb->len)) {
		memcpy(d, "INBOX", 5);
		return d;
	}
	for (size_t i = 0; i < mb->len; i++) {
		if (mb->sep && d[i] == mb->sep) {
			d[i] = j->dst_sep ? j->dst_sep : mb->sep;
		} else if (j->dst_sep && d[i] == j->dst_sep) {
			d[i] = '_';
			mf_log(MF_LOG_WARN, "mailbox \"%s\": '%c' is the destination's separator; "
					    "written as '_'", mb->display, j->dst_sep);
		}
	}
	return d;
}

static int folder_selected(const struct job_opts *o, const char *display)
{
	int in = !o->folders || !o->folders[0];

	for (const char *const *g = o->folders; g && *g; g++)
		if (!fnmatch(*g, display, 0))
			in = 1;
	for (const char *const *g = o->excludes; g && *g; g++)
		if (!fnmatch(*g, display, 0))
			in = 0;
	return in;
}

/* ---- name indexes --------------------------------------------------------- */

static size_t name_hash(const char *s, size_t n)
{
	uint64_t h = UINT64_C(14695981039346656037);

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * UINT64_C(1099511628211);
	return (size_t)(h ^ (h >> 29));
}

/* Indexes entries x->n..count-1 (get(i) gives entry i's name), growing the
 * table to keep it at most half full. -1: out of memory (callers then scan). */
static int nx_update(struct name_index *x, size_t count, void *ctx,
                     const char *(*get)(void *ctx, size_t i, size_t *len))
{
	if (count * 2 > x->cap) {
		size_t cap = 1024;
		uint32_t *ns;

		while (cap < count * 2)
			cap *= 2;
		if (!(ns = calloc(cap, sizeof(*ns))))
			return -1;
		free(x->slot);
		x->slot = ns;
		x->cap = cap;
		x->n = 0;
	}
	if (count < x->n) { /* shrunk or reordered: start again */
		memset(x->slot, 0, x->cap * sizeof(*x->slot));
		x->n = 0;
	}
	for (; x->n < count; x->n++) {
		size_t len, h;
		const char *nm = get(ctx, x->n, &len);

		for (h = name_hash(nm, len) & (x->cap - 1); x->slot[h]; h = (h + 1) & (x->cap - 1))
			;
		x->slot[h] = (uint32_t)(x->n + 1);
	}
	return 0;
}

static void nx_reset(struct name_index *x)
{
	if (x->slot)
		memset(x->slot, 0, x->cap * sizeof(*x->slot));
	x->n = 0;
}

static const char *mb_name_at(void *ctx, size_t i, size_t *len)
{
	struct job *j = ctx;

	*len = j->mb[i].len;
	return j->mb[i].name;
}

static const char *dst_name_at(void *ctx, size_t i, size_t *len)
{
	struct job *j = ctx;

	*len = strlen(j->dst_names[i]);
	return j->dst_names[i];
}

static struct mbox *mbox_find(struct job *j, const char *name, size_t len)
{
	if (j->mbx.n != j->nmb && nx_update(&j->mbx, j->nmb, j, mb_name_at) < 0) {
		for (size_t i = 0; i < j->nmb; i++)
			if (j->mb[i].len == len && !memcmp(j->mb[i].name, name, len))
				return &j->mb[i];
		return NULL;
	}
	for (size_t h = name_hash(name, len) & (j->mbx.cap - 1); j->mbx.cap && j->mbx.slot[h];
	     h = (h + 1) & (j->mbx.cap - 1)) {
		struct mbox *mb = &j->mb[j->mbx.slot[h] - 1];

		if (mb->len == len && !memcmp(mb->name, name, len))
			return mb;
	}
	return NULL;
}

static struct mbox *mbox_add(struct job *j, const char *name, size_t len)
{
	struct mbox *mb;
	char disp[STATE_NAME_MAX * 2];
	ssize_t dl;

	if (j->nmb == j->cmb) {
		size_t nc = j->cmb ? j->cmb * 2 : 64;
		struct mbox *nm = realloc(j->mb, nc * sizeof(*nm));

		if (!nm)
			return NULL;
		j->mb = nm;
		j->cmb = nc;
	}
	mb = &j->mb[j->nmb];
	memset(mb, 0, sizeof(*mb));
	mb->name = dupn(name, len);
	mb->len = len;
	dl = utf7_decode(name, len, disp, sizeof(disp));
	mb->display = dl >= 0 ? dupn(disp, (size_t)dl) : dupn(name, len);
	if (!mb->name || !mb->display)
		return NULL;
	j->nmb++;
	return mb;
}

/* ---- control: LIST on the source ------------------------------------------ */

static int node_str(const struct imap_node *n, const char **s, size_t *len)
{
	if (!n || (n->type != IMAP_NODE_ATOM && n->type != IMAP_NODE_STRING))
		return -1;
	*s = n->s;
	*len = n->len;
	return 0;
}

static void status_apply(struct mbox *mb, const struct imap_node *list)
{
	for (const struct imap_node *k = list ? list->child : NULL; k && k->next; k = k->next->next) {
		const struct imap_node *v = k->next;

		if (imap_node_is(k, "UIDVALIDITY"))
			imap_node_u32(v, &mb->st_uidvalidity);
		else if (imap_node_is(k, "UIDNEXT"))
			imap_node_u32(v, &mb->st_uidnext);
		else if (imap_node_is(k, "MESSAGES"))
			imap_node_u32(v, &mb->st_messages);
		else if (imap_node_is(k, "HIGHESTMODSEQ"))
			imap_node_u64(v, &mb->st_highestmodseq);
	}
	mb->have_status = 1;
}

static int src_ctl_untagged(struct imap_client *c, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	const struct imap_node *a = r->first;
	const char *name;
	size_t len;

	if (!a)
		return 0;
	if (imap_node_is(a, "LIST") && a->next && a->next->next) {
		const struct imap_node *attrs = a->next, *sep = attrs->next, *nm = sep->next;
		struct mbox *mb;

		if (node_str(nm, &name, &len) < 0 || !len)
			return 0;
		if (!(mb = mbox_find(j, name, len)) && !(mb = mbox_add(j, name, len)))
			return -ENOMEM;
		mb->sep = (sep->type == IMAP_NODE_STRING && sep->len == 1) ? sep->s[0] : 0;
		/* People (and --folder, --exclude, --map) see '/' for hierarchy,
		 * whatever the server's separator. */
		if (mb->sep && mb->sep != '/')
			for (char *d = mb->display; *d; d++)
				if (*d == mb->sep)
					*d = '/';
		for (const struct imap_node *f = attrs->child; f; f = f->next) {
			if (imap_node_is(f, "\\Noselect") || imap_node_is(f, "\\NonExistent"))
				mb->noselect = 1;
			if (imap_node_is(f, "\\Subscribed"))
				mb->subscribed = 1;
		}
		mb->special = special_bits(attrs);
	} else if (imap_node_is(a, "STATUS") && a->next && a->next->next) {
		struct mbox *mb;

		if (node_str(a->next, &name, &len) < 0)
			return 0;
		if (!(mb = mbox_find(j, name, len)) && !(mb = mbox_add(j, name, len)))
			return -ENOMEM;
		status_apply(mb, a->next->next);
	}
	return 0;
}

static int mbox_cmp_size(const void *a, const void *b)
{
	const struct mbox *x = a, *y = b;

	/* work first, largest first, INBOX first among equals */
	if (x->work != y->work)
		return y->work - x->work;
	if (x->st_messages != y->st_messages)
		return x->st_messages < y->st_messages ? 1 : -1;
	return strcmp(x->name, y->name);
}

static void workers_spawn(struct job *j);
static void workers_spawn_rest(struct job *j);
static void dst_prepare(struct worker *w);
static void rename_next(struct job *j, struct imap_client *c);
static void dst_create_all(struct job *j, struct imap_client *c);

static void probe_start(struct job *j);
static int probe_lit_end(struct worker *w);
static void plan_finish(struct job *j);

static int vanished_collect(void *ctx, uint32_t mbid, const struct state_mbox *rec)
{
	struct job *j = ctx;

	if (!rec->uidvalidity || !rec->last_uid || !rec->name[0] || !rec->dst_name[0] ||
	    mbox_find(j, rec->name, strlen(rec->name)))
		return 0;
	if (grow((void **)&j->van, &j->cvan, j->nvan + 1, sizeof(*j->van)) < 0)
		return -ENOMEM;
	j->van[j->nvan].mbid = mbid;
	j->van[j->nvan].claimed = 0;
	j->van[j->nvan++].rec = *rec;
	return 0;
}

/* A listed name that cannot be sent back as a mailbox name (issue 15
 * defect 10): the mailbox is refused with one error line, not synced. Names
 * are C strings from here on: one cut at a NUL would land on another
 * mailbox's destination folder (or on the source's mailbox of that name),
 * so it is refused too, and the line says with which it would collide. */
static int mbox_refuse(struct job *j, struct mbox *mb)
{
	const char *why = imap_mailbox_name_bad(mb->name, mb->len);
	char esc[STATE_NAME_MAX * 4];
	const struct mbox *same;
	char *d;

	if (!why)
		return 0;
	mf_escape(mb->name, mb->len, esc, sizeof(esc));
	if ((d = strdup(esc))) {
		free(mb->display);
		mb->display = d;
	}
	same = memchr(mb->name, '\0', mb->len) ? mbox_find(j, mb->name, strlen(mb->name)) : NULL;
	if (same && same != mb)
		job_error(j, imap_client_who(&j->w[0].src), mb, 0,
		          "%s; mailbox refused (cut at the NUL it would be mailbox \"%s\", which "
		          "the source also has)",
		          why, same->display);
	else
		job_error(j, imap_client_who(&j->w[0].src), mb, 0, "%s; mailbox refused", why);
	j->sum->mailboxes_failed++;
	return 1;
}

/* The source is listed: decide which mailboxes have work. */
static void plan(struct job *j)
{
	struct mf_error e;
	size_t kept = 0, nprobe = 0;

	/* Mailboxes the state knows and the source no longer lists (all of
	 * its LIST, before --folder/--exclude: an excluded one is not gone). */
	if (state_mbox_each(j->st, j->jobid, vanished_collect, j, &e) < 0) {
		job_error(j, NULL, NULL, 0, "%s", e.msg);
		j->fatal = 1;
		job_maybe_finish(j);
		return;
	}
	for (size_t i = 0; i < j->nmb; i++)
		if (!j->mb[i].noselect && folder_selected(j->o, j->mb[i].display))
			j->mb[i].failed = mbox_refuse(j, &j->mb[i]);
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];

		if (mb->noselect || mb->failed || !folder_selected(j->o, mb->display)) {
			free(mb->name);
			free(mb->display);
			continue;
		}
		j->mb[kept++] = *mb;
	}
	j->nmb = kept;
	nx_reset(&j->mbx);
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];
		struct state_mbox rec;
		int created, known;

		if (state_mbox_id(j->st, j->jobid, mb->name, mb->len, &mb->mbid, &created, &e) < 0) {
			job_error(j, NULL, mb, 0, "%s", e.msg);
			if (e.code == -ENAMETOOLONG) {
				/* That mailbox only: the others go on. */
				mb->failed = 1;
				mb->work = 0;
				j->sum->mailboxes_failed++;
				continue;
			}
			j->fatal = 1;
			job_maybe_finish(j);
			return;
		}
		mb->work = 1;
		known = !created && state_mbox_get(j->st, j->jobid, mb->mbid, &rec, &e) == 0 &&
			rec.uidvalidity;
		/* New here while known ones vanished: one of them, renamed? */
		mb->probe = !known && j->nvan && (!mb->have_status || mb->st_messages);
		nprobe += (size_t)mb->probe;
		if (known && mb->have_status &&
		    rec.uidvalidity == mb->st_uidvalidity && rec.uidnext == mb->st_uidnext &&
		    rec.synced_at && rec.last_uid + 1 >= mb->st_uidnext && !rec.intents) {
			/* Nothing new since the last complete sync. Flag changes and
			 * expunges show in HIGHESTMODSEQ; without CONDSTORE they
			 * cannot be seen from STATUS, so the mailbox is scanned. */
			if (!j->o->sync_flags && !j->o->delete_)
				mb->work = 0;
			else if (mb->st_highestmodseq && rec.highestmodseq == mb->st_highestmodseq)
				mb->work = 0;
		}
		j->state_dirty |= created;
	}
	if (nprobe) {
		probe_start(j);
		return;
	}
	plan_finish(j);
}

static void plan_finish(struct job *j)
{
	size_t nwork = 0;

	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];

		if (j->o->dry_run && mb->renamed_from) {
			/* Its state is not moved in a dry run: it would look new. */
			progress_clear(j);
			mf_print("mailferry: dry-run: mailbox \"%s\": renamed on the source "
			         "from \"%s\"; its destination folder would be renamed too, "
			         "then synced incrementally",
			         mb->display, j->van[mb->renamed_from - 1].rec.name);
			mb->work = 0;
		}
		nwork += (size_t)mb->work;
	}
	if (j->nmb)
		qsort(j->mb, j->nmb, sizeof(*j->mb), mbox_cmp_size);
	nx_reset(&j->mbx);
	j->listed = 1;
	if (j->o->json) {
		fprintf(j->o->out, "{\"event\":\"plan\",\"mailboxes\":%zu,\"with_changes\":%zu}\n",
			j->nmb, nwork);
		fflush(j->o->out);
	}
	j->sum->mailboxes = (unsigned)j->nmb;
	j->sum->skipped = 0;
	for (size_t i = nwork; i < j->nmb; i++)
		j->sum->skipped += j->mb[i].st_messages;
	if (j->o->dry_run)
		for (size_t i = 0; i < j->nmb; i++)
			if (!j->mb[i].work && !j->mb[i].renamed_from) {
				progress_clear(j);
				mf_print("mailferry: dry-run: mailbox \"%s\": unchanged",
				         j->mb[i].display);
			}
	if (!nwork) {
		j->next_mb = j->nmb;
		job_maybe_finish(j);
		return;
	}
	/* Mailboxes without work sort last and are never handed out. */
	workers_spawn(j);
	dst_prepare(&j->w[0]);
}

static void list_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		job_error(j, imap_client_who(c), NULL, 0, "LIST failed: %.*s", (int)r->text_len,
			  r->text);
		j->fatal = 1;
		job_maybe_finish(j);
		return;
	}
	plan(j);
}

static void status_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;

	(void)r; /* a failed STATUS leaves have_status 0: the mailbox is examined */
	if (--j->creates_pending == 0) {
		free(j->create_cmd);
		j->create_cmd = NULL;
		(void)cmd;
		plan(j);
	}
}

static void list_plain_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	size_t n = 0;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		list_done(c, cmd, r);
		return;
	}
	for (size_t i = 0; i < j->nmb; i++)
		n += !j->mb[i].noselect;
	if (!n) {
		plan(j);
		return;
	}
	/* STATUS each selectable mailbox, all pipelined. */
	j->create_cmd = calloc(n, sizeof(*j->create_cmd));
	if (!j->create_cmd) {
		j->fatal = 1;
		job_maybe_finish(j);
		return;
	}
	j->creates_pending = (unsigned)n;
	n = 0;
	for (size_t i = 0; i < j->nmb; i++) {
		if (j->mb[i].noselect)
			continue;
		imap_cmd_begin(c, &j->create_cmd[n++], status_done, NULL);
		imap_put(c, "STATUS ");
		imap_put_astring(c, j->mb[i].name, j->mb[i].len);
		imap_putf(c, " (UIDVALIDITY UIDNEXT MESSAGES%s)",
			  (c->caps & IMAP_CAP_CONDSTORE) ? " HIGHESTMODSEQ" : "");
		imap_cmd_end(c);
	}
}

static void src_list(struct worker *w)
{
	struct job *j = w->job;
	struct imap_client *c = &w->src;

	if ((c->caps & IMAP_CAP_LIST_STATUS) && (c->caps & IMAP_CAP_LIST_EXTENDED)) {
		imap_cmd_begin(c, &j->list_cmd, list_done, NULL);
		imap_putf(c, "LIST \"\" \"*\" RETURN (SUBSCRIBED %sSTATUS (UIDVALIDITY UIDNEXT MESSAGES%s))",
			  (c->caps & IMAP_CAP_SPECIAL_USE) ? "SPECIAL-USE " : "",
			  (c->caps & IMAP_CAP_CONDSTORE) ? " HIGHESTMODSEQ" : "");
	} else {
		imap_cmd_begin(c, &j->list_cmd, list_plain_done, NULL);
		imap_put(c, "LIST \"\" \"*\"");
	}
	imap_cmd_end(c);
}

/* ---- control: renamed mailboxes ------------------------------------------------ */

/*
 * A mailbox the state knows is gone from the source's LIST and one it does
 * not know has appeared: perhaps the first was renamed to the second. The
 * first message of each new mailbox is fetched and hashed. If that content
 * is recorded in a vanished mailbox (the same UID under the same
 * UIDVALIDITY, or anywhere in its records), the new name takes
 * the vanished mailbox's state over and its destination folder is renamed
 * too (dlist_done), so nothing is copied again: the worker goes on
 * incrementally, or, if the UIDVALIDITY changed on the way, finds the
 * messages again by content (remap_start).
 */

struct probe_scan {
	const uint8_t *nhash;
	int hit;
};

static int probe_scan_cb(void *ctx, uint32_t uid, const struct state_msg *m)
{
	struct probe_scan *ps = ctx;

	(void)uid;
	if (m->status == STATE_MSG_DONE && !memcmp(m->nhash, ps->nhash, 32)) {
		ps->hit = 1;
		return 1;
	}
	return 0;
}

/* Which vanished mailbox holds this message: the same UID under the same
 * UIDVALIDITY (a plain RENAME keeps both), else anywhere in its records (a
 * copy under a new UIDVALIDITY). Reads only the vanished mailboxes'
 * records, and only when a new mailbox appeared while some vanished. */
static size_t probe_match(struct job *j, uint32_t uidv, uint32_t uid, const uint8_t nhash[32])
{
	struct state_msg m;
	struct mf_error e;

	for (size_t i = 0; i < j->nvan; i++) {
		struct state_msg_key k = {j->jobid, j->van[i].mbid, uidv, uid};

		if (!j->van[i].claimed && j->van[i].rec.uidvalidity == uidv &&
		    state_msg_get(j->st, &k, &m, &e) == 0 && m.status == STATE_MSG_DONE &&
		    !memcmp(m.nhash, nhash, 32))
			return i + 1;
	}
	for (size_t i = 0; i < j->nvan; i++) {
		struct probe_scan ps = {nhash, 0};

		if (!j->van[i].claimed &&
		    state_msg_each(j->st, j->jobid, j->van[i].mbid, j->van[i].rec.uidvalidity, 1,
				   probe_scan_cb, &ps, &e) >= 0 &&
		    ps.hit)
			return i + 1;
	}
	return 0;
}

static int probe_lit_end(struct worker *w)
{
	struct job *j = w->job;
	struct mbox *mb = j->probe_mb;
	uint8_t nhash[32];

	msghash_end(&w->mh, NULL, nhash);
	if (!mb || !w->rm_uid || !mb->probe_uidv || mb->renamed_from)
		return 0;
	mb->renamed_from = probe_match(j, mb->probe_uidv, w->rm_uid, nhash);
	/* A folder that merely starts with a message taken out of a deleted
	 * one is not that folder: a rename keeps (most of) the messages. */
	if (mb->renamed_from && mb->have_status &&
	    (uint64_t)mb->st_messages * 2 < j->van[mb->renamed_from - 1].rec.messages)
		mb->renamed_from = 0;
	if (mb->renamed_from)
		j->van[mb->renamed_from - 1].claimed = 1;
	return 0;
}

static void probe_examine_done(struct imap_client *c, struct imap_cmd *cmd,
			       const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct mbox *mb = cmd->ud;

	j->probe_mb = r->status == IMAP_ST_OK ? mb : NULL;
	mb->probe_uidv = r->status == IMAP_ST_OK ? w->uidvalidity : 0;
	w->uidvalidity = 0;
	j->probes_pending--; /* its FETCH follows */
}

static void probe_fetch_done(struct imap_client *c, struct imap_cmd *cmd,
			     const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;

	(void)cmd;
	(void)r; /* an empty mailbox answers NO or BAD: nothing to match, a new mailbox */
	j->probe_mb = NULL;
	w->rm_uid = 0;
	if (--j->probes_pending)
		return;
	w->phase = j->probe_saved_phase;
	free(j->probe_cmd);
	j->probe_cmd = NULL;
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];

		if (!mb->renamed_from)
			continue;
		mf_log(MF_LOG_INFO, "%s mailbox \"%s\": renamed on the source from \"%s\" "
				    "(found by content); its state and destination folder follow",
		       imap_client_who(c), mb->display, j->van[mb->renamed_from - 1].rec.name);
	}
	plan_finish(j);
}

/* On the control connection: EXAMINE and FETCH 1 of every candidate, all
 * pipelined (one round trip); answers come in order. */
static void probe_start(struct job *j)
{
	struct worker *w = &j->w[0];
	struct imap_client *c = &w->src;
	size_t n = 0, k = 0;

	for (size_t i = 0; i < j->nmb; i++)
		n += (size_t)j->mb[i].probe;
	if (!(j->probe_cmd = calloc(2 * n, sizeof(*j->probe_cmd)))) {
		j->fatal = 1;
		job_maybe_finish(j);
		return;
	}
	j->probes_pending = (unsigned)(2 * n);
	j->probe_saved_phase = w->phase;
	w->phase = W_PROBE;
	w->uidvalidity = 0;
	w->rm_uid = 0;
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];

		if (!mb->probe)
			continue;
		imap_cmd_begin(c, &j->probe_cmd[k++], probe_examine_done, mb);
		imap_put(c, "EXAMINE ");
		imap_put_astring(c, mb->name, mb->len);
		imap_cmd_end(c);
		imap_cmd_begin(c, &j->probe_cmd[k++], probe_fetch_done, mb);
		imap_put(c, "FETCH 1 (UID BODY.PEEK[])");
		imap_cmd_end(c);
	}
}

/* ---- control: prepare the destination --------------------------------------- */

static int dst_has(struct job *j, const char *name)
{
	size_t len = strlen(name);

	if (is_inbox(name, len) ||
	    (j->dstx.n != j->ndst && nx_update(&j->dstx, j->ndst, j, dst_name_at) < 0)) {
		for (size_t i = 0; i < j->ndst; i++)
			if (!strcmp(j->dst_names[i], name) ||
			    (is_inbox(name, len) &&
			     is_inbox(j->dst_names[i], strlen(j->dst_names[i]))))
				return 1;
		return 0;
	}
	for (size_t h = name_hash(name, len) & (j->dstx.cap - 1); j->dstx.cap && j->dstx.slot[h];
	     h = (h + 1) & (j->dstx.cap - 1))
		if (!strcmp(j->dst_names[j->dstx.slot[h] - 1], name))
			return 1;
	return 0;
}

static int dst_ctl_untagged(struct imap_client *c, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	const struct imap_node *a = r->first;

	if (a && imap_node_is(a, "LIST") && a->next && a->next->next && a->next->next->next) {
		const struct imap_node *sep = a->next->next, *nm = sep->next;
		const char *name;
		size_t len;

		if (sep->type == IMAP_NODE_STRING && sep->len == 1 && !j->dst_sep)
			j->dst_sep = sep->s[0];
		if (node_str(nm, &name, &len) < 0 || !len)
			return 0;
		if (j->ndst == j->cdst) {
			size_t nc = j->cdst ? j->cdst * 2 : 64;
			char **nn = realloc(j->dst_names, nc * sizeof(*nn));
			unsigned *ns = realloc(j->dst_special, nc * sizeof(*ns));

			if (nn)
				j->dst_names = nn;
			if (ns)
				j->dst_special = ns;
			if (!nn || !ns)
				return -ENOMEM;
			j->cdst = nc;
		}
		if (!(j->dst_names[j->ndst] = dupn(name, len)))
			return -ENOMEM;
		j->dst_special[j->ndst] = special_bits(a->next);
		j->ndst++;
	}
	return 0;
}

static void dispatch(struct job *j)
{
	for (unsigned i = 0; i < j->nw; i++)
		if (!j->w[i].dead && j->w[i].phase != W_DONE && !j->w[i].mb)
			worker_next(&j->w[i]);
}

static void relist_send(struct job *j, struct imap_client *c);

static void creates_release(struct job *j)
{
	if (--j->creates_pending == 0) {
		if (!j->relisted && !j->fatal) {
			j->relisted = 1;
			for (size_t i = 0; i < j->nmb; i++)
				if (j->mb[i].create_refused) {
					relist_send(j, &j->w[0].dst);
					return;
				}
		}
		j->dst_prepared = 1;
		dispatch(j);
		job_maybe_finish(j);
	}
}

static void create_fail(struct job *j, const char *who, struct mbox *mb, const char *why)
{
	job_error(j, who, mb, 0, "cannot create mailbox (%zu bytes): %s", strlen(mb->dst_name), why);
	mb->failed = 1;
	mb->work = 0;
	j->sum->mailboxes_failed++;
}

static void create_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct mbox *mb = cmd->ud;

	if (r->status != IMAP_ST_OK && !imap_resp_code(r, "ALREADYEXISTS")) {
		/* Cyrus IMAP 3.x creates a parent with its child and then answers
		 * a CREATE of the parent "NO Mailbox already exists", without
		 * [ALREADYEXISTS] (RFC 5530): whether it exists, LIST tells. */
		mb->create_refused = 1;
		snprintf(mb->create_why, sizeof(mb->create_why), "%.*s", (int)r->text_len, r->text);
	}
	creates_release(j);
}

/* The answer to LIST "" name for a refused CREATE: the LIST data went
 * into the destination's list (dst_ctl_untagged). */
static void relist_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct mbox *mb = cmd->ud;

	mb->create_refused = 0;
	if (r->status == IMAP_ST_OK && dst_has(j, mb->dst_name))
		mf_log(MF_LOG_INFO, "%s: mailbox \"%s\": CREATE refused (%s), but it exists",
		       imap_client_who(c), mb->dst_name, mb->create_why);
	else
		create_fail(j, imap_client_who(c), mb, mb->create_why);
	creates_release(j);
}

/* Every CREATE is answered: look up the refused ones (pipelined). The
 * commands of the answered CREATEs are reused. */
static void relist_send(struct job *j, struct imap_client *c)
{
	size_t n = 0;

	j->creates_pending = 1; /* held until all are sent */
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];

		if (!mb->create_refused)
			continue;
		j->creates_pending++;
		imap_cmd_begin(c, &j->create_cmd[n++], relist_done, mb);
		imap_put(c, "LIST \"\" ");
		imap_put_astring(c, mb->dst_name, strlen(mb->dst_name));
		imap_cmd_end(c);
	}
	creates_release(j);
}

/* Where a source mailbox goes: --map SRC=DST first (UTF-8 names), then
 * SPECIAL-USE (the source's \Sent goes to the destination's \Sent, whatever
 * either is called), else the same name with the separator translated. */
static char *dst_name_for(struct job *j, const struct mbox *mb)
{
	for (const char *const *m = j->o->maps; m && *m; m++) {
		const char *eq = strchr(*m, '=');
		char enc[STATE_NAME_MAX];
		ssize_t n;

		if (!eq || (size_t)(eq - *m) != strlen(mb->display) ||
		    memcmp(*m, mb->display, (size_t)(eq - *m)))
			continue;
		n = utf7_encode(eq + 1, strlen(eq + 1), enc, sizeof(enc));
		if (n > 0) {
			/* the user writes '/' for hierarchy; the destination's own separator */
			for (ssize_t i = 0; i < n; i++)
				if (enc[i] == '/' && j->dst_sep)
					enc[i] = j->dst_sep;
			return dupn(enc, (size_t)n);
		}
		mf_log(MF_LOG_WARN, "--map %s: not a valid destination name; ignored", *m);
	}
	if (mb->special && !is_inbox(mb->name, mb->len))
		for (size_t i = 0; i < j->ndst; i++)
			if (j->dst_special[i] & mb->special) {
				if (strcmp(j->dst_names[i], mb->name))
					mf_log(MF_LOG_INFO, "mailbox \"%s\" goes to the destination's \"%s\" "
							    "(same special use)",
					       mb->display, j->dst_names[i]);
				return dupn(j->dst_names[i], strlen(j->dst_names[i]));
			}
	return translate_name(j, mb);
}

static void subscribe_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct mbox *mb = cmd->ud;

	if (r->status != IMAP_ST_OK)
		mf_log(MF_LOG_WARN, "%s: cannot subscribe \"%s\": %.*s", imap_client_who(c),
		       mb->dst_name, (int)r->text_len, r->text);
	creates_release(w->job);
}

static void dlist_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;

	if (cmd != &j->dlist_cmd[1])
		return; /* LIST "" "" gave the separator; wait for the full list */
	if (r->status != IMAP_ST_OK) {
		job_error(j, imap_client_who(c), NULL, 0, "LIST failed: %.*s", (int)r->text_len,
			  r->text);
		j->fatal = 1;
		job_maybe_finish(j);
		return;
	}
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];

		if (!(mb->dst_name = dst_name_for(j, mb))) {
			j->fatal = 1;
			job_maybe_finish(j);
			return;
		}
	}
	if (j->o->dry_run) {
		dst_create_all(j, c); /* renamed ones have no work in a dry run */
		return;
	}
	rename_next(j, c);
}

/* A vanished mailbox lives on under mb's name: its state moves over. */
static void rename_adopt(struct job *j, struct mbox *mb)
{
	struct vanished *v = &j->van[mb->renamed_from - 1];
	struct state_mbox rec = v->rec;
	struct mf_error e;

	snprintf(rec.name, sizeof(rec.name), "%s", mb->name);
	snprintf(rec.dst_name, sizeof(rec.dst_name), "%s", mb->dst_name);
	if (state_mbox_rename(j->st, j->jobid, v->mbid, v->rec.name, strlen(v->rec.name), mb->name,
			      mb->len, &e) < 0 ||
	    state_mbox_put(j->st, j->jobid, v->mbid, &rec, &e) < 0) {
		job_error(j, NULL, mb, 0, "%s", e.msg);
		j->fatal = 1;
		return;
	}
	mb->mbid = v->mbid;
	j->state_dirty = 1;
	j->sum->mailboxes_renamed++;
	if (j->o->json) {
		fprintf(j->o->out, "{\"event\":\"renamed\",\"from\":");
		json_str(j->o->out, v->rec.name, strlen(v->rec.name));
		fprintf(j->o->out, ",\"to\":");
		json_str(j->o->out, mb->display, strlen(mb->display));
		fprintf(j->o->out, ",\"dst_from\":");
		json_str(j->o->out, v->rec.dst_name, strlen(v->rec.dst_name));
		fprintf(j->o->out, ",\"dst_to\":");
		json_str(j->o->out, mb->dst_name, strlen(mb->dst_name));
		fprintf(j->o->out, "}\n");
		fflush(j->o->out);
	}
	/* The state must say so before anything is copied under the new name. */
	job_commit(j);
}

/* The destination's own list after RENAME old new: the folder and the ones
 * below it have moved (RFC 3501 6.3.5). */
static void dst_names_moved(struct job *j, const char *old, const char *to)
{
	size_t ol = strlen(old);

	for (size_t i = 0; i < j->ndst; i++) {
		char *d = j->dst_names[i], *nn;

		if (strncmp(d, old, ol) || (d[ol] && d[ol] != j->dst_sep))
			continue;
		if (!(nn = malloc(strlen(to) + strlen(d + ol) + 1)))
			continue;
		strcpy(nn, to);
		strcat(nn, d + ol);
		free(d);
		j->dst_names[i] = nn;
	}
	nx_reset(&j->dstx);
}

static void rename_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct mbox *mb = cmd->ud;
	const char *old = j->van[mb->renamed_from - 1].rec.dst_name;

	if (r->status == IMAP_ST_OK) {
		dst_names_moved(j, old, mb->dst_name);
		rename_adopt(j, mb);
	} else {
		/* Not moved: the new name gets a folder and a copy of its own. */
		mf_log(MF_LOG_WARN, "%s: cannot rename \"%s\" to \"%s\" (%.*s); mailbox \"%s\" "
				    "is copied afresh",
		       imap_client_who(c), old, mb->dst_name, (int)r->text_len, r->text,
		       mb->display);
		j->van[mb->renamed_from - 1].claimed = 0;
		mb->renamed_from = 0;
	}
	rename_next(j, c);
}

/* Renames on the destination one at a time, parents before their children
 * (a parent's RENAME moves the children with it), then the creates. */
static void rename_next(struct job *j, struct imap_client *c)
{
	while (!j->fatal) {
		struct mbox *mb = NULL;
		const char *old;
		int has_old, has_new;

		/* the shortest old destination name still to do */
		for (size_t i = 0; i < j->nmb; i++)
			if (j->mb[i].renamed_from && !j->mb[i].dst_exists &&
			    (!mb || strlen(j->van[j->mb[i].renamed_from - 1].rec.dst_name) <
					strlen(j->van[mb->renamed_from - 1].rec.dst_name)))
				mb = &j->mb[i];
		if (!mb)
			break;
		mb->dst_exists = 1; /* decided now, whatever happens */
		old = j->van[mb->renamed_from - 1].rec.dst_name;
		has_old = dst_has(j, old);
		has_new = dst_has(j, mb->dst_name);
		if (!strcmp(old, mb->dst_name) || (!has_old && has_new)) {
			/* The same folder, or already moved (by a parent's RENAME, by
			 * hand, or by a run that stopped right after its RENAME). */
			rename_adopt(j, mb);
			continue;
		}
		if (!has_old || has_new) {
			mf_log(MF_LOG_WARN, "%s: mailbox \"%s\" was \"%s\" on the source, but the "
					    "destination has %s; it is copied afresh",
			       imap_client_who(c), mb->display, j->van[mb->renamed_from - 1].rec.name,
			       has_new ? "both folders" : "neither folder");
			j->van[mb->renamed_from - 1].claimed = 0;
			mb->renamed_from = 0;
			mb->dst_exists = dst_has(j, mb->dst_name);
			continue;
		}
		imap_cmd_begin(c, &j->rename_cmd, rename_done, mb);
		imap_put(c, "RENAME ");
		imap_put_astring(c, old, strlen(old));
		imap_put(c, " ");
		imap_put_astring(c, mb->dst_name, strlen(mb->dst_name));
		imap_cmd_end(c);
		return;
	}
	dst_create_all(j, c);
}

struct create_order {
	size_t depth, idx;
};

/* Hierarchy levels of a destination name: separators in it. */
static size_t create_depth(const struct job *j, const char *name)
{
	size_t d = 0;

	for (; j->dst_sep && *name; name++)
		d += *name == j->dst_sep;
	return d;
}

static int create_order_cmp(const void *a, const void *b)
{
	const struct create_order *x = a, *y = b;

	if (x->depth != y->depth)
		return x->depth < y->depth ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx; /* as listed, otherwise */
}

/* CREATE what the destination lacks and SUBSCRIBE what the source has
 * subscribed, all pipelined; workers start when every answer is in. */
static void dst_create_all(struct job *j, struct imap_client *c)
{
	struct create_order *order;
	size_t n = 0, nc = 0;

	if (j->fatal) {
		job_maybe_finish(j);
		return;
	}
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];

		if (!mb->renamed_from)
			mb->dst_exists = dst_has(j, mb->dst_name);
		n += !mb->dst_exists;
	}
	if (j->o->dry_run) {
		for (size_t i = 0; i < j->nmb; i++)
			if (j->mb[i].work > 0 && !j->mb[i].dst_exists) {
				progress_clear(j);
				mf_print("mailferry: dry-run: mailbox \"%s\": destination "
				         "folder \"%s\" would be created",
				         j->mb[i].display, j->mb[i].dst_name);
			}
		j->creates_pending = 1;
		creates_release(j);
		return;
	}
	j->creates_pending = 1; /* held until all are sent */
	free(j->create_cmd);
	for (size_t i = 0; i < j->nmb; i++)
		n += j->mb[i].subscribed;
	j->create_cmd = calloc(n ? n : 1, sizeof(*j->create_cmd));
	if (!j->create_cmd) {
		j->fatal = 1;
		return;
	}
	/* Parents before children: servers that make a parent with its child
	 * (Cyrus) refuse a CREATE of the parent after it. Pipelined, the
	 * CREATEs run in the order sent. */
	order = calloc(j->nmb ? j->nmb : 1, sizeof(*order));
	if (!order) {
		j->fatal = 1;
		return;
	}
	for (size_t i = 0; i < j->nmb; i++)
		if (!j->mb[i].dst_exists)
			order[nc++] = (struct create_order){create_depth(j, j->mb[i].dst_name), i};
	qsort(order, nc, sizeof(*order), create_order_cmp);
	n = 0;
	for (size_t i = 0; i < nc; i++) {
		struct mbox *mb = &j->mb[order[i].idx];

		j->creates_pending++;
		imap_cmd_begin(c, &j->create_cmd[n++], create_done, mb);
		imap_put(c, "CREATE ");
		imap_put_astring(c, mb->dst_name, strlen(mb->dst_name));
		imap_cmd_end(c);
	}
	free(order);
	/* Subscriptions follow the source's (SUBSCRIBE is idempotent). */
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];

		if (!mb->subscribed)
			continue;
		j->creates_pending++;
		imap_cmd_begin(c, &j->create_cmd[n++], subscribe_done, mb);
		imap_put(c, "SUBSCRIBE ");
		imap_put_astring(c, mb->dst_name, strlen(mb->dst_name));
		imap_cmd_end(c);
	}
	creates_release(j);
}

static void dst_prepare(struct worker *w)
{
	struct job *j = w->job;

	if (!w->dst_ready || !j->listed || j->dlist_cmd[0].done)
		return;
	imap_cmd_begin(&w->dst, &j->dlist_cmd[0], dlist_done, NULL);
	imap_put(&w->dst, "LIST \"\" \"\"");
	imap_cmd_end(&w->dst);
	imap_cmd_begin(&w->dst, &j->dlist_cmd[1], dlist_done, NULL);
	if ((w->dst.caps & IMAP_CAP_SPECIAL_USE) && (w->dst.caps & IMAP_CAP_LIST_EXTENDED))
		imap_put(&w->dst, "LIST \"\" \"*\" RETURN (SPECIAL-USE)");
	else
		imap_put(&w->dst, "LIST \"\" \"*\"");
	imap_cmd_end(&w->dst);
}

/* ---- worker: streaming ------------------------------------------------------ */

static void append_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);

static struct batch *batch_open(struct worker *w)
{
	struct batch *b;
	struct mbox *mb = w->mb;

	if (w->open)
		return w->open;
	if (w->b_count == BATCH_SLOTS)
		return NULL;
	b = w->slot[(w->b_head + w->b_count) % BATCH_SLOTS];
	w->b_count++;
	b->w = w;
	b->answered = b->cur_fate = 0;
	b->cmd.done = append_done;
	b->n = 0;
	b->bytes = 0;
	b->pool_len = 0;
	w->open = b;
	imap_cmd_begin(&w->dst, &b->cmd, append_done, b);
	imap_put(&w->dst, "APPEND ");
	imap_put_astring(&w->dst, mb->dst_name, strlen(mb->dst_name));
	return b;
}

static void append_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);

static void msg_record(struct worker *w, const struct batch *b, const struct bmsg *m,
		       uint8_t status, uint32_t dst_uidv, uint32_t dst_uid)
{
	struct job *j = w->job;
	struct state_msg sm;
	struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, m->uid};
	size_t fl = m->flags_len < STATE_FLAGS_MAX ? m->flags_len : STATE_FLAGS_MAX - 1;
	struct mf_error e;

	memset(&sm, 0, offsetof(struct state_msg, flags));
	memcpy(sm.hash, m->hash, 32);
	memcpy(sm.nhash, m->nhash, 32);
	sm.size = m->size;
	sm.modseq = m->modseq;
	sm.internaldate = (uint64_t)m->idate;
	sm.dst_uidvalidity = dst_uidv;
	sm.dst_uid = dst_uid;
	sm.status = status;
	memcpy(sm.flags, b->pool + m->flags_off, fl);
	sm.flags[fl] = '\0';
	if (state_msg_put(j->st, &k, &sm, &e) < 0) {
		job_error(j, NULL, w->mb, m->uid, "%s", e.msg);
		j->fatal = 1;
	}
	j->state_dirty = 1;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Marks the mailbox as having APPENDs that may be unconfirmed, and when. */
static void mbox_mark_intents(struct worker *w, uint32_t on)
{
	struct job *j = w->job;
	struct state_mbox rec;
	struct mf_error e;

	if (state_mbox_get(j->st, j->jobid, w->mb->mbid, &rec, &e) < 0) {
		memset(&rec, 0, sizeof(rec));
		snprintf(rec.name, sizeof(rec.name), "%s", w->mb->name);
	}
	if (!rec.uidvalidity) {
		/* First time: record the identity the intents are keyed under. */
		rec.uidvalidity = w->uidvalidity;
	}
	if (rec.uidvalidity != w->uidvalidity)
		return; /* UIDVALIDITY changed: settled on the next full pass */
	rec.intents = on;
	rec.intent_at_ms = on ? wall_ms() : 0;
	if (state_mbox_put(j->st, j->jobid, w->mb->mbid, &rec, &e) < 0) {
		job_error(j, NULL, w->mb, 0, "%s", e.msg);
		j->fatal = 1;
	}
	w->intents_marked = on;
}

/* Runs outside every parser's callback: stops what is left (job_maybe_finish
 * frees parsers). */
static void job_stop_task(struct loop *l, struct loop_task *t)
{
	(void)l;
	job_maybe_finish((struct job *)((char *)t - offsetof(struct job, stop_task)));
}

/* Ends the APPEND command. Exactly-once: the intent for each message in it
 * is committed before the final CRLF, the point after which the server may
 * store the batch; a crash leaves intents that the next run settles against
 * the destination before copying again (DESIGN §4). */
static void batch_close(struct worker *w)
{
	struct batch *b = w->open;
	struct job *j = w->job;
	unsigned errors = j->nerrors;

	if (!b)
		return;
	w->open = NULL;
	if (w->dst.closed)
		return; /* never sent whole (see below): nothing to record */
	if (b->answered) {
		/* Already refused: finish the command's bytes (the server
		 * discards them, RFC 7888 §5), record nothing. */
		imap_put(&w->dst, "\r\n");
		return;
	}
	mbox_mark_intents(w, 1); /* also stamps the time of this commit */
	for (unsigned i = 0; i < b->n; i++)
		msg_record(w, b, &b->m[i], STATE_MSG_INTENT, 0, 0);
	if (job_commit(j) < 0 || j->nerrors != errors) {
		/* The intents are not durable (a full disk, issue 15): the
		 * final CRLF must not go out, or a re-run would copy the batch
		 * again. Closing the connection without it makes the server
		 * drop the unfinished command (RFC 3502 §3: a MULTIAPPEND
		 * stores all of its messages or none). The source stops at its
		 * next literal (no write space); the job ends outside this
		 * callback. */
		job_error(j, imap_client_who(&w->dst), w->mb, b->n ? b->m[0].uid : 0,
		          "APPEND of %u message%s abandoned before its end: the state could not "
		          "record it; stopping so that nothing is copied twice",
		          b->n, b->n == 1 ? "" : "s");
		j->fatal = 1;
		w->mb->failed = 1;
		imap_client_abort(&w->dst);
		loop_defer(j->loop, &j->stop_task);
		return;
	}
	imap_cmd_end(&w->dst);
}

static int msg_flags_ok(const struct batch *b, size_t n)
{
	return b->pool_len + n <= BATCH_POOL;
}

/* ---- worker: UIDVALIDITY changed (RFC 3501 §2.3.1.1) --------------------------------- */

static int flags_equal(const char *a, size_t al, const char *b, size_t bl);
static int chg_push(struct worker *w, uint32_t uid, uint32_t dst_uid, const char *fl, size_t n);
static void changes_reset(struct worker *w);
static void changes_apply(struct worker *w);

static int remap_cmp(const void *a, const void *b)
{
	return memcmp(((const struct remap *)a)->hash, ((const struct remap *)b)->hash, 32);
}

/* One (content, UID) pair into the worker's match table. */
static int rm_push(struct worker *w, const uint8_t nhash[32], uint32_t uid, uint32_t uidv)
{
	if (grow((void **)&w->rm, &w->crm, w->nrm + 1, sizeof(*w->rm)) < 0)
		return -ENOMEM;
	memcpy(w->rm[w->nrm].hash, nhash, 32);
	w->rm[w->nrm].uid = uid;
	w->rm[w->nrm].uidv = uidv;
	w->rm[w->nrm++].claimed = 0;
	return 0;
}

static int remap_collect(void *ctx, uint32_t uid, const struct state_msg *m)
{
	return m->status == STATE_MSG_DONE ? rm_push(ctx, m->nhash, uid, 0) : 0;
}

/* What a FETCH response says before its literal (key): UID, FLAGS,
 * INTERNALDATE, MODSEQ, each zero or NULL when absent. */
struct fetch_meta {
	uint32_t uid;
	uint64_t modseq;
	uint64_t size; /* RFC822.SIZE, if has_size */
	int has_size;
	const struct imap_node *flags, *date;
};

static void fetch_meta(const struct imap_resp *r, const struct imap_node *key,
		       struct fetch_meta *fm)
{
	const struct imap_node *items = r->first->next->next;

	memset(fm, 0, sizeof(*fm));
	for (const struct imap_node *it = items ? items->child : NULL; it && it != key && it->next;
	     it = it->next) {
		if (imap_node_is(it, "UID"))
			imap_node_u32(it->next, &fm->uid);
		else if (imap_node_is(it, "FLAGS"))
			fm->flags = it->next;
		else if (imap_node_is(it, "INTERNALDATE"))
			fm->date = it->next;
		else if (imap_node_is(it, "MODSEQ") && it->next->child)
			imap_node_u64(it->next->child, &fm->modseq);
		else if (imap_node_is(it, "RFC822.SIZE"))
			fm->has_size = !imap_node_u64(it->next, &fm->size);
	}
}

/* A literal the source announces is checked before a byte of it is read: a
 * hostile server could announce {99999999999} and stream forever. Skipping
 * such a literal is not cheap, so the connection is dropped (the caller
 * returns the code; the mailbox fails, the others go on). */
static int literal_check(struct worker *w, struct imap_client *c, const struct imap_resp *r,
                         const struct imap_node *key, uint64_t size)
{
	struct job *j = w->job;
	uint64_t max = j->o->max_message_size ? j->o->max_message_size : JOB_MESSAGE_MAX;
	struct fetch_meta fm;

	if (!r->first || !r->first->next || !imap_node_is(r->first->next, "FETCH") || !key ||
	    !imap_node_is(key, "BODY[]")) {
		if (size <= JOB_OTHER_LITERAL_MAX)
			return 0;
		job_error(j, imap_client_who(c), w->mb, 0,
		          "unexpected literal of %llu bytes; dropping the connection",
		          (unsigned long long)size);
		return -EMSGSIZE;
	}
	fetch_meta(r, key, &fm);
	/* Larger than announced is the attack; some servers (Exchange) send an
	 * estimate, so a quarter more plus 64 KiB is tolerated. */
	if (fm.has_size && size > fm.size + fm.size / 4 + 65536) {
		job_error(
		    j, imap_client_who(c), w->mb, fm.uid,
		    "message body of %llu bytes but RFC822.SIZE %llu; dropping the connection",
		    (unsigned long long)size, (unsigned long long)fm.size);
		return -EMSGSIZE;
	}
	if (size > max) {
		job_error(j, imap_client_who(c), w->mb, fm.uid,
		          "message of %llu bytes exceeds %s %llu; dropping the connection",
		          (unsigned long long)size,
		          j->o->max_message_size ? "--max-message-size" : "the limit of",
		          (unsigned long long)max);
		return -EMSGSIZE;
	}
	return 0;
}

static int remap_lit_begin(struct worker *w, const struct imap_resp *r, const struct imap_node *key)
{
	const struct imap_node *bad = NULL;
	struct fetch_meta fm;

	fetch_meta(r, key, &fm);
	w->rm_uid = fm.uid;
	/* FLAGS before BODY[], as asked (see src_lit_begin); else no diff */
	w->rm_have_flags = fm.flags != NULL;
	w->rm_flags_len =
	    fm.flags ? flags_string(fm.flags, w->rm_flags, sizeof(w->rm_flags), &bad) : 0;
	if (bad)
		w->rm_have_flags = 0; /* a flag no command line may carry: no diff */
	msghash_begin(&w->mh);
	return IMAP_LIT_STREAM;
}

/* One source message hashed: the same content under the old UIDVALIDITY
 * is the same message (already on the destination); anything else is
 * copied. */
static int remap_lit_end(struct worker *w)
{
	struct job *j = w->job;
	struct remap key, *hit;
	struct mf_error e;
	uint8_t nh[32];
	int rc;

	/* By the CR-folded digest: a server that rewrote bare CRs when the
	 * mailbox was rebuilt still has the same message. */
	msghash_end(&w->mh, nh, key.hash);
	if (!w->rm_uid)
		return 0;
	hit = w->nrm ? bsearch(&key, w->rm, w->nrm, sizeof(*w->rm), remap_cmp) : NULL;
	while (hit && hit > w->rm && !memcmp(hit[-1].hash, key.hash, 32))
		hit--; /* first of equal hashes */
	while (hit && hit < w->rm + w->nrm && !memcmp(hit->hash, key.hash, 32) && hit->claimed)
		hit++;
	if (hit && hit < w->rm + w->nrm && !memcmp(hit->hash, key.hash, 32)) {
		struct state_msg_key ok = {j->jobid, w->mb->mbid, w->old_uidv, hit->uid};
		struct state_msg_key nk = {j->jobid, w->mb->mbid, w->uidvalidity, w->rm_uid};
		struct state_msg m;

		hit->claimed = 1;
		if (test_fail(j, "remap_get")) {
			mf_err_set(&e, -EIO, "state: injected read error (MAILFERRY_TEST_FAIL)");
			rc = -EIO;
		} else {
			rc = state_msg_get(j->st, &ok, &m, &e);
		}
		if (rc < 0) {
			/* Neither copied nor recorded would be lost: the mailbox
			 * fails and the remap is done again next run. */
			job_error(j, NULL, w->mb, w->rm_uid, "%s", e.msg);
			w->rm_failed = 1;
			return 0;
		}
		if (state_msg_put(j->st, &nk, &m, &e) < 0) {
			job_error(j, NULL, w->mb, w->rm_uid, "%s", e.msg);
			w->rm_failed = 1;
			j->fatal = 1;
			return 0;
		}
		j->state_dirty = 1;
		w->rm_found++;
		/* The same message, its flags maybe changed with the move: the
		 * changes pass applies the difference (m.flags: as copied). */
		if (j->o->sync_flags && w->rm_have_flags &&
		    !flags_equal(w->rm_flags, w->rm_flags_len, m.flags, strlen(m.flags)))
			chg_push(w, w->rm_uid, m.dst_uid, w->rm_flags, w->rm_flags_len);
		return 0;
	}
	if (grow((void **)&w->todo, &w->ctodo, w->ntodo + 1, sizeof(*w->todo)) < 0)
		return -ENOMEM;
	w->todo[w->ntodo++] = w->rm_uid;
	return 0;
}

static int remap_drop_old(void *ctx, uint32_t uid, const struct state_msg *m)
{
	struct worker *w = ctx;
	struct state_msg_key k = {w->job->jobid, w->mb->mbid, w->old_uidv, uid};
	struct mf_error e;
	int rc;

	(void)m;
	if ((rc = state_msg_del(w->job->st, &k, &e)) < 0)
		job_error(w->job, NULL, w->mb, uid, "%s", e.msg);
	return rc;
}

static void remap_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct state_mbox rec;
	struct mf_error e;
	int rc;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		mailbox_fail(w, imap_client_who(c), 0, "UID FETCH failed: %.*s", (int)r->text_len,
			     r->text);
		return;
	}
	if (w->rm_failed) {
		/* The old records stay, so the next run finds them again. */
		mailbox_fail(w, NULL, 0,
		             "UIDVALIDITY changed from %u to %u, but the state could "
		             "not record the messages found again; tried again next run",
		             w->old_uidv, w->uidvalidity);
		return;
	}
	if (state_msg_each(j->st, j->jobid, w->mb->mbid, w->old_uidv, 1, remap_drop_old, w, &e) <
	    0) {
		mailbox_fail(w, NULL, 0, "UIDVALIDITY changed: old records not dropped");
		return;
	}
	rc = state_mbox_get(j->st, j->jobid, w->mb->mbid, &rec, &e);
	if (rc == 0) {
		rec.uidvalidity = w->uidvalidity;
		rec.last_uid = 0;
		rec.highestmodseq = 0;
		rec.intents = 0;
		rc = state_mbox_put(j->st, j->jobid, w->mb->mbid, &rec, &e);
	}
	if (rc < 0) {
		mailbox_fail(w, NULL, 0, "%s", e.msg);
		return;
	}
	j->state_dirty = 1;
	job_commit(j);
	mf_log(MF_LOG_INFO, "%s mailbox \"%s\": UIDVALIDITY changed from %u to %u: %llu messages "
			    "found again by content, %zu to copy",
	       imap_client_who(c), w->mb->display, w->old_uidv, w->uidvalidity,
	       (unsigned long long)w->rm_found, w->ntodo);
	w->mb->skipped += w->rm_found;
	j->sum->skipped += w->rm_found;
	w->list_mode = 1;
	w->todo_pos = 0;
	changes_apply(w); /* flags changed on the found ones, then the new */
}

static void remap_start(struct worker *w, uint32_t old_uidv)
{
	struct job *j = w->job;
	struct mf_error e;

	w->old_uidv = old_uidv;
	w->nrm = w->ntodo = w->todo_pos = 0;
	w->rm_found = 0;
	w->rm_failed = 0;
	w->method = M_NEW_ONLY; /* flags are copied with the messages that move */
	changes_reset(w);       /* the flag changes of found messages go in here */
	if (state_msg_each(j->st, j->jobid, w->mb->mbid, old_uidv, 1, remap_collect, w, &e) < 0) {
		mailbox_fail(w, NULL, 0, "%s", e.msg);
		return;
	}
	if (w->nrm)
		qsort(w->rm, w->nrm, sizeof(*w->rm), remap_cmp);
	w->phase = W_REMAP;
	if (!w->src.exists) {
		remap_done(&w->src, &w->remap_cmd, &(struct imap_resp){.status = IMAP_ST_OK});
		return;
	}
	imap_cmd_begin(&w->src, &w->remap_cmd, remap_done, NULL);
	imap_put(&w->src, "UID FETCH 1:* (UID FLAGS BODY.PEEK[])");
	imap_cmd_end(&w->src);
}

/* ---- worker: --dedupe ----------------------------------------------------------- */

/*
 * Before new messages are copied into a destination folder, its content is
 * known by hash: what the state recorded there (under the folder's current
 * UIDVALIDITY) plus the messages nobody recorded, fetched and hashed. The
 * new source messages are then read once to hash them; those whose content
 * is already there are recorded against the destination's copy, the rest
 * are copied (list mode). An empty or unknown-free destination folder
 * costs one EXAMINE and one UID SEARCH; nothing to match skips the source
 * pass. Messages are compared CR-folded (nhash), as Dovecot stores them.
 */

static int dd_uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int dd_known_collect(void *ctx, uint32_t uid, const struct state_msg *m)
{
	(void)uid;
	if (m->status != STATE_MSG_DONE || !m->dst_uid)
		return 0;
	return rm_push(ctx, m->nhash, m->dst_uid, m->dst_uidvalidity);
}

static void dd_src_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		mailbox_fail(w, imap_client_who(c), 0, "--dedupe: reading the new messages failed: %.*s",
			     (int)r->text_len, r->text);
		return;
	}
	if (w->dd_found)
		mf_log(MF_LOG_INFO, "%s mailbox \"%s\": %llu new messages are already in \"%s\" "
				    "(--dedupe); %zu to copy",
		       imap_client_who(c), w->mb->display, (unsigned long long)w->dd_found,
		       w->mb->dst_name, w->ntodo);
	w->list_mode = 1;
	w->todo_pos = 0;
	fetch_start(w);
}

/* The destination folder's content is known: hash the new source messages. */
static void dd_src_start(struct worker *w)
{
	size_t k = 0;

	for (size_t i = 0; i < w->nrm; i++)
		if (w->rm[i].uidv == w->dd_dst_uidv)
			w->rm[k++] = w->rm[i];
	w->nrm = k;
	if (!w->nrm) {
		fetch_start(w); /* nothing there to match: copy as usual */
		return;
	}
	qsort(w->rm, w->nrm, sizeof(*w->rm), remap_cmp);
	w->phase = W_DEDUPE_SRC;
	w->ntodo = w->todo_pos = 0;
	w->dd_found = 0;
	imap_cmd_begin(&w->src, &w->dd_cmd[2], dd_src_done, NULL);
	imap_putf(&w->src, "UID FETCH %u:%u (UID FLAGS INTERNALDATE%s BODY.PEEK[])", w->start_uid,
		  w->end_uid, w->src.enabled_condstore ? " MODSEQ" : "");
	imap_cmd_end(&w->src);
}

static void dd_dst_fetch_done(struct imap_client *c, struct imap_cmd *cmd,
			      const struct imap_resp *r)
{
	struct worker *w = c->ud;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		mailbox_fail(w, imap_client_who(c), 0,
			     "--dedupe: reading the destination folder failed: %.*s",
			     (int)r->text_len, r->text);
		return;
	}
	dd_src_start(w);
}

static void dd_search_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	size_t n = 0, first = 1;

	(void)cmd;
	if (w->mb->failed) {
		mailbox_finish(w); /* the EXAMINE failed and said so */
		return;
	}
	if (r->status != IMAP_ST_OK) {
		mailbox_fail(w, imap_client_who(c), 0,
			     "--dedupe: UID SEARCH on the destination failed: %.*s",
			     (int)r->text_len, r->text);
		return;
	}
	/* The destination's UIDs nobody recorded under this UIDVALIDITY. */
	if (w->ndd_uids)
		qsort(w->dd_uids, w->ndd_uids, sizeof(*w->dd_uids), dd_uid_cmp);
	for (size_t i = 0; i < w->nrm && w->ndd_uids; i++) {
		uint32_t *hit;

		if (w->rm[i].uidv != w->dd_dst_uidv)
			continue;
		hit = bsearch(&w->rm[i].uid, w->dd_uids, w->ndd_uids, sizeof(*w->dd_uids),
			      dd_uid_cmp);
		if (hit)
			*hit = 0;
	}
	for (size_t i = 0; i < w->ndd_uids; i++)
		n += w->dd_uids[i] != 0;
	if (!n) {
		dd_src_start(w);
		return;
	}
	w->phase = W_DEDUPE_DST;
	imap_cmd_begin(&w->dst, &w->dd_cmd[1], dd_dst_fetch_done, NULL);
	imap_put(&w->dst, "UID FETCH ");
	for (size_t i = 0; i < w->ndd_uids; i++) {
		size_t k = i;

		if (!w->dd_uids[i])
			continue;
		while (k + 1 < w->ndd_uids && w->dd_uids[k + 1] == w->dd_uids[k] + 1)
			k++;
		if (k > i)
			imap_putf(&w->dst, "%s%u:%u", first ? "" : ",", w->dd_uids[i], w->dd_uids[k]);
		else
			imap_putf(&w->dst, "%s%u", first ? "" : ",", w->dd_uids[i]);
		first = 0;
		i = k;
	}
	imap_put(&w->dst, " (UID BODY.PEEK[])");
	imap_cmd_end(&w->dst);
}

static void dd_examine_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	(void)cmd;
	if (r->status != IMAP_ST_OK || !w->dd_dst_uidv) {
		/* its UID SEARCH follows and finishes the mailbox */
		job_error(w->job, imap_client_who(c), w->mb, 0,
			  "--dedupe: EXAMINE of the destination folder failed: %.*s",
			  (int)r->text_len, r->text);
		w->mb->failed = 1;
	}
}

static void dedupe_start(struct worker *w)
{
	struct job *j = w->job;
	struct mf_error e;

	w->dd_done = 1;
	w->nrm = w->ndd_uids = 0;
	w->dd_dst_uidv = 0;
	if (state_msg_each(j->st, j->jobid, w->mb->mbid, w->uidvalidity, 1, dd_known_collect, w,
			   &e) < 0) {
		mailbox_fail(w, NULL, 0, "%s", e.msg);
		return;
	}
	w->phase = W_DEDUPE_DST;
	imap_cmd_begin(&w->dst, &w->dd_cmd[0], dd_examine_done, NULL);
	imap_put(&w->dst, "EXAMINE ");
	imap_put_astring(&w->dst, w->mb->dst_name, strlen(w->mb->dst_name));
	imap_cmd_end(&w->dst);
	imap_cmd_begin(&w->dst, &w->dd_cmd[1], dd_search_done, NULL);
	imap_put(&w->dst, "UID SEARCH ALL");
	imap_cmd_end(&w->dst);
}

/* Destination side: UIDVALIDITY, the SEARCH, the bodies of unrecorded messages. */
static int dd_dst_untagged(struct worker *w, const struct imap_resp *r)
{
	const struct imap_node *a = r->first, *v;
	uint32_t n;

	if ((v = imap_resp_code(r, "UIDVALIDITY")))
		imap_node_u32(v, &w->dd_dst_uidv);
	if (a && imap_node_is(a, "SEARCH"))
		for (const struct imap_node *it = a->next; it; it = it->next)
			if (imap_node_u32(it, &n) == 0 &&
			    grow((void **)&w->dd_uids, &w->cdd_uids, w->ndd_uids + 1,
				 sizeof(*w->dd_uids)) == 0)
				w->dd_uids[w->ndd_uids++] = n;
	return 0;
}

static int dd_dst_lit_end(struct worker *w)
{
	uint8_t nh[32];

	msghash_end(&w->mh, NULL, nh);
	if (w->stl_uid)
		rm_push(w, nh, w->stl_uid, w->dd_dst_uidv); /* out of memory: just not matched */
	return 0;
}

/* Source side: what the record of a message found on the destination needs. */
static int dd_src_lit_begin(struct worker *w, const struct imap_resp *r,
			    const struct imap_node *key, uint64_t size)
{
	struct fetch_meta fm;

	fetch_meta(r, key, &fm);
	w->cur.uid = fm.uid;
	w->cur.modseq = fm.modseq;
	w->cur.size = size;
	w->cur.idate = 0;
	if (fm.date && fm.date->type == IMAP_NODE_STRING)
		parse_idate(fm.date->s, fm.date->len, &w->cur.idate);
	w->cur.flags_len =
	    fm.flags ? flags_string(fm.flags, w->cur.flags, sizeof(w->cur.flags), NULL) : 0;
	w->cur.flags[w->cur.flags_len] = '\0';
	msghash_begin(&w->mh);
	return IMAP_LIT_STREAM;
}

static int dd_src_lit_end(struct worker *w)
{
	struct job *j = w->job;
	struct remap key, *hit;
	struct state_msg m;
	struct mf_error e;

	memset(&m, 0, sizeof(m));
	msghash_end(&w->mh, m.hash, m.nhash);
	if (!w->cur.uid)
		return 0;
	memcpy(key.hash, m.nhash, 32);
	hit = bsearch(&key, w->rm, w->nrm, sizeof(*w->rm), remap_cmp);
	if (hit) {
		struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, w->cur.uid};

		m.size = w->cur.size;
		m.modseq = w->cur.modseq;
		m.internaldate = (uint64_t)w->cur.idate;
		m.dst_uidvalidity = w->dd_dst_uidv;
		m.dst_uid = hit->uid;
		m.status = STATE_MSG_DONE;
		memcpy(m.flags, w->cur.flags, w->cur.flags_len);
		m.flags[w->cur.flags_len] = '\0';
		if (state_msg_put(j->st, &k, &m, &e) < 0) {
			job_error(j, NULL, w->mb, w->cur.uid, "%s", e.msg);
			j->fatal = 1;
		}
		j->state_dirty = 1;
		w->dd_found++;
		w->mb->skipped++;
		j->sum->skipped++;
		j->sum->deduped++;
		return 0;
	}
	if (grow((void **)&w->todo, &w->ctodo, w->ntodo + 1, sizeof(*w->todo)) < 0)
		return -ENOMEM;
	w->todo[w->ntodo++] = w->cur.uid;
	return 0;
}

static int src_lit_begin(struct imap_client *c, const struct imap_resp *r,
			 const struct imap_node *key, uint64_t size)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	const struct imap_node *flags, *date, *bad;
	struct imap_date dt;
	struct fetch_meta fm;
	uint32_t uid;
	uint64_t modseq;
	struct state_msg_key k;
	struct state_msg sm;
	struct mf_error e;
	struct batch *b;
	int rc;

	if ((rc = literal_check(w, c, r, key, size)) < 0)
		return rc;
	if ((w->phase != W_FETCH && w->phase != W_REMAP && w->phase != W_PROBE &&
	     w->phase != W_DEDUPE_SRC) ||
	    !r->first || !r->first->next || !imap_node_is(r->first->next, "FETCH") || !key ||
	    !imap_node_is(key, "BODY[]"))
		return IMAP_LIT_INLINE;
	if (w->phase == W_REMAP || w->phase == W_PROBE)
		return remap_lit_begin(w, r, key);
	if (w->phase == W_DEDUPE_SRC)
		return dd_src_lit_begin(w, r, key, size);
	fetch_meta(r, key, &fm);
	uid = fm.uid, modseq = fm.modseq, flags = fm.flags, date = fm.date;
	memset(&w->cur, 0, offsetof(__typeof__(w->cur), flags));
	w->cur.active = 1;
	w->cur.size = w->cur.left = size;
	if (!uid || !flags || !date) {
		/* The server sent the body before the items we asked first; we
		 * would need to spool it. Dovecot, Cyrus, Gmail and Exchange
		 * answer in the order asked. */
		job_error(j, imap_client_who(c), w->mb, uid,
			  "server sent BODY[] before UID/FLAGS/INTERNALDATE; message skipped");
		w->cur.skip = 1;
		w->mb->nfailed++;
		j->sum->failed++;
		return IMAP_LIT_STREAM;
	}
	w->cur.uid = uid;
	if (uid < w->start_uid || uid > w->end_uid) {
		w->cur.skip = 1; /* "n:*" returns the last message even when below n */
		return IMAP_LIT_STREAM;
	}
	k = (struct state_msg_key){j->jobid, w->mb->mbid, w->uidvalidity, uid};
	rc = state_msg_get(j->st, &k, &sm, &e);
	if (rc == 0 && sm.status == STATE_MSG_DONE) {
		w->cur.skip = 1;
		if (uid >= w->resume_uid) { /* below: counted before a reconnect */
			w->mb->skipped++;
			j->sum->skipped++;
		}
		return IMAP_LIT_STREAM;
	}
	if (rc < 0 && rc != -ENOENT) {
		job_error(j, NULL, w->mb, uid, "%s", e.msg);
		return -EIO;
	}
	if (w->dst.appendlimit && size > w->dst.appendlimit) {
		job_error(j, imap_client_who(&w->dst), w->mb, uid,
			  "message of %llu bytes exceeds the destination's APPENDLIMIT %llu",
			  (unsigned long long)size, (unsigned long long)w->dst.appendlimit);
		w->cur.skip = 1;
		w->mb->nfailed++;
		j->sum->failed++;
		return IMAP_LIT_STREAM;
	}
	/* Issue 15 defect 1: nothing the source sent goes onto the APPEND
	 * line as it came. The date is written again from its parsed fields,
	 * flags only as system flags or atoms; anything else refuses the
	 * message (it stays to be retried, like one the destination refused). */
	w->cur.flags_len = flags_string(flags, w->cur.flags, sizeof(w->cur.flags), &bad);
	if (date->type != IMAP_NODE_STRING || imap_date_parse(date->s, date->len, &dt) < 0 || bad) {
		if (bad)
			job_error(j, imap_client_who(c), w->mb, uid,
			          "flag \"%.*s\" is neither a system flag nor an atom; message "
			          "refused",
			          (int)(bad->len > 64 ? 64 : bad->len), bad->s ? bad->s : "");
		else
			job_error(j, imap_client_who(c), w->mb, uid,
			          "INTERNALDATE is not an RFC 3501 date-time; message refused");
		w->cur.skip = 1;
		w->mb->nfailed++;
		j->sum->failed++;
		if (!w->mb_failed_min_uid || uid < w->mb_failed_min_uid)
			w->mb_failed_min_uid = uid;
		return IMAP_LIT_STREAM;
	}
	imap_date_format(&dt, w->cur.date);
	w->cur.idate = imap_date_unix(&dt);
	w->cur.modseq = modseq;
	msghash_begin(&w->mh);

	/* A message that alone fills the batch's flag pool, or an empty one
	 * (which some servers refuse), gets its own APPEND so a refusal does
	 * not take a batch down with it. */
	if (w->open && (w->single_mode || !msg_flags_ok(w->open, w->cur.flags_len) ||
			size == 0))
		batch_close(w);
	if (!(b = batch_open(w))) {
		/* Cannot happen: the source pauses at response boundaries
		 * while every slot is busy. */
		job_error(j, NULL, w->mb, uid, "internal: no APPEND slot");
		return -EIO;
	}
	imap_putf(&w->dst, " (%s) \"%s\"", w->cur.flags, w->cur.date);
	imap_put_literal_header(&w->dst, size, 1);
	return IMAP_LIT_STREAM;
}

static ssize_t src_lit_data(struct imap_client *c, const uint8_t *p, size_t n)
{
	struct worker *w = c->ud;
	size_t space;

	if (w->phase == W_REMAP || w->phase == W_PROBE || w->phase == W_DEDUPE_SRC) {
		msghash_update(&w->mh, p, n);
		return (ssize_t)n;
	}
	if (!w->cur.active || w->cur.skip)
		return (ssize_t)n;
	space = imap_write_space(&w->dst);
	if (space < n) {
		if (!space) {
			w->src_starved = 1;
			imap_want_writable(&w->dst);
			imap_client_pause(&w->src);
			return 0;
		}
		n = space;
	}
	msghash_update(&w->mh, p, n);
	imap_put_raw(&w->dst, p, n);
	w->cur.left -= n;
	return (ssize_t)n;
}

static int src_lit_end(struct imap_client *c)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct batch *b = w->open;
	struct bmsg *m;

	if (w->phase == W_REMAP)
		return remap_lit_end(w);
	if (w->phase == W_PROBE)
		return probe_lit_end(w);
	if (w->phase == W_DEDUPE_SRC)
		return dd_src_lit_end(w);
	if (!w->cur.active || w->cur.skip) {
		w->cur.active = 0;
		return 0;
	}
	w->cur.active = 0;
	if (b->answered) {
		if (b->cur_fate == 1) {
			retry_push(w, w->cur.uid);
		} else if (b->cur_fate == 2) {
			job_error(j, imap_client_who(&w->dst), w->mb, w->cur.uid,
				  "destination refused the message (%llu bytes): %s",
				  (unsigned long long)w->cur.size, b->why);
			w->mb->nfailed++;
			j->sum->failed++;
			if (!w->mb_failed_min_uid || w->cur.uid < w->mb_failed_min_uid)
				w->mb_failed_min_uid = w->cur.uid;
		}
		batch_close(w);
		return 0;
	}
	m = &b->m[b->n++];
	m->uid = w->cur.uid;
	m->size = w->cur.size;
	m->modseq = w->cur.modseq;
	m->idate = w->cur.idate;
	msghash_end(&w->mh, m->hash, m->nhash);
	m->flags_off = (uint16_t)b->pool_len;
	m->flags_len = (uint16_t)w->cur.flags_len;
	memcpy(b->pool + b->pool_len, w->cur.flags, w->cur.flags_len);
	b->pool_len += w->cur.flags_len;
	b->bytes += w->cur.size;
	if (b->n >= BATCH_MAX || b->n >= j->o->batch_msgs || b->bytes >= j->o->batch_bytes ||
	    w->single_mode || w->cur.size == 0 || !(w->dst.caps & IMAP_CAP_MULTIAPPEND))
		batch_close(w);
	return 0;
}

static int changes_untagged(struct worker *w, const struct imap_resp *r);

static int src_untagged(struct imap_client *c, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	const struct imap_node *a = r->first;

	if (w->phase == W_DIFF)
		return changes_untagged(w, r);
	if (w->phase == W_COUNT && a && a->next) {
		uint32_t n;

		if (imap_node_is(a, "SEARCH"))
			for (const struct imap_node *it = a->next; it; it = it->next)
				w->dry_count += imap_node_u32(it, &n) == 0 && n >= w->start_uid;
		else if (imap_node_is(a, "ESEARCH"))
			for (const struct imap_node *it = a->next; it && it->next; it = it->next)
				if (imap_node_is(it, "COUNT"))
					imap_node_u64(it->next, &w->dry_count);
		return 0;
	}
	if (w->phase == W_PROBE) {
		const struct imap_node *v = imap_resp_code(r, "UIDVALIDITY");

		if (v)
			imap_node_u32(v, &w->uidvalidity);
		return 0;
	}
	if (w->phase == W_EXAMINE) {
		const struct imap_node *v;

		if (w->method == M_QRESYNC && r->status == IMAP_ST_NONE)
			return changes_untagged(w, r);
		if ((v = imap_resp_code(r, "UIDVALIDITY")))
			imap_node_u32(v, &w->uidvalidity);
		else if ((v = imap_resp_code(r, "UIDNEXT")))
			imap_node_u32(v, &w->uidnext);
		else if ((v = imap_resp_code(r, "HIGHESTMODSEQ")))
			imap_node_u64(v, &w->highestmodseq);
		return 0;
	}
	if (w->phase == W_FETCH && a && a->next && imap_node_is(a->next, "FETCH")) {
		/* Response boundary: pause here if no APPEND slot is free. */
		if (!w->open && w->b_count == BATCH_SLOTS) {
			w->src_paused = 1;
			return IMAP_PARSE_PAUSE;
		}
	}
	return 0;
}

struct uidlist {
	uint32_t *u;
	size_t n, cap;
};

static void uid_collect(void *ctx, uint32_t uid)
{
	struct uidlist *l = ctx;

	if (l->n < l->cap)
		l->u[l->n] = uid;
	l->n++;
}

static void retry_push(struct worker *w, uint32_t uid)
{
	if (w->nretry == w->cretry) {
		size_t nc = w->cretry ? w->cretry * 2 : 64;
		uint32_t *nr = test_fail(w->job, "retry_push") ? NULL
							       : realloc(w->retry, nc * sizeof(*nr));

		if (!nr) {
			/* Not queued, so not copied: it fails this run, and the
			 * mailbox's last UID stays below it (mailbox_finish). */
			job_error(w->job, imap_client_who(&w->dst), w->mb, uid,
			          "out of memory queueing the message for a retry; it is "
			          "tried again next run");
			w->mb->nfailed++;
			w->job->sum->failed++;
			if (!w->mb_failed_min_uid || uid < w->mb_failed_min_uid)
				w->mb_failed_min_uid = uid;
			return;
		}
		w->retry = nr;
		w->cretry = nc;
	}
	w->retry[w->nretry++] = uid;
}

/* The server refused the APPEND: nothing of it was stored. */
static void intent_drop(struct worker *w, uint32_t uid)
{
	struct job *j = w->job;
	struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, uid};
	struct mf_error e;

	if (state_msg_del(j->st, &k, &e) < 0) {
		job_error(j, NULL, w->mb, uid, "%s", e.msg);
		j->fatal = 1;
	}
	j->state_dirty = 1;
}

static void append_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct batch *b = cmd->ud;
	struct worker *w = b->w;
	struct job *j = w->job;
	struct mbox *mb = w->mb;
	uint32_t dst_uids[BATCH_MAX], dst_uidv = 0;
	struct uidlist ul = {dst_uids, 0, BATCH_MAX};
	const struct imap_node *au;

	if (b == w->open) {
		/* Answered before its end (Dovecot refuses an over-quota literal
		 * on its header). The message being sent shares the verdict. */
		int cur = w->cur.active && !w->cur.skip;

		b->answered = 1;
		snprintf(b->why, sizeof(b->why), "%s%.*s%s%.*s", r->code ? "[" : "",
			 r->code ? (int)r->code->len : 0, r->code ? r->code->s : "",
			 r->code ? "] " : "", (int)r->text_len, r->text);
		if (r->status != IMAP_ST_OK && cur)
			b->cur_fate = (b->n + 1 > 1) ? 1 : 2;
		if (r->status != IMAP_ST_OK && b->n == 1 && cur) {
			/* two messages involved: neither is known to be the one */
			intent_drop(w, b->m[0].uid);
			retry_push(w, b->m[0].uid);
			b->n = 0;
		}
	}
	/* APPENDs to one mailbox complete in the order sent (servers do not
	 * run them in parallel); the slot ring relies on it. */
	if (b != w->slot[w->b_head]) {
		job_error(j, imap_client_who(c), mb, 0, "APPEND answered out of order");
		j->fatal = 1;
	}
	w->b_head = (w->b_head + 1) % BATCH_SLOTS;
	w->b_count--;
	if (r->status == IMAP_ST_OK) {
		if ((au = imap_resp_code(r, "APPENDUID")) && au->next) {
			imap_node_u32(au, &dst_uidv);
			if (uidset_each(au->next->s, au->next->len, uid_collect, &ul) < 0 || ul.n != b->n)
				ul.n = 0;
		}
		for (unsigned i = 0; i < b->n; i++) {
			struct bmsg *m = &b->m[i];

			msg_record(w, b, m, STATE_MSG_DONE, dst_uidv, ul.n ? dst_uids[i] : 0);
			mb->copied++;
			mb->bytes += m->size;
			j->sum->copied++;
			j->sum->bytes += m->size;
		}
	} else if (b->n > 1) {
		/* RFC 3502: a refused MULTIAPPEND stores none of its messages;
		 * copy them one by one to find the one the server refuses. */
		for (unsigned i = 0; i < b->n; i++) {
			intent_drop(w, b->m[i].uid);
			retry_push(w, b->m[i].uid);
		}
	} else if (b->n == 1) {
		job_error(j, imap_client_who(c), mb, b->m[0].uid,
			  "destination refused the message (%llu bytes): %s%.*s%s%.*s",
			  (unsigned long long)b->m[0].size, r->code ? "[" : "",
			  r->code ? (int)r->code->len : 0, r->code ? r->code->s : "",
			  r->code ? "] " : "", (int)r->text_len, r->text);
		intent_drop(w, b->m[0].uid);
		mb->nfailed++;
		j->sum->failed++;
		if (!w->mb_failed_min_uid || b->m[0].uid < w->mb_failed_min_uid)
			w->mb_failed_min_uid = b->m[0].uid;
	}
	if (b->n && !w->single_mode && !w->list_mode) {
		/* UIDs come in order and APPENDs complete in order: everything
		 * below this batch's last message was counted; a resumed pass
		 * does not count it again as skipped. */
		if (b->m[b->n - 1].uid >= w->resume_uid)
			w->resume_uid = b->m[b->n - 1].uid + 1;
		w->resume_uidv = w->uidvalidity;
	}
	if (r->status == IMAP_ST_OK && b->n)
		w->attempts = 0; /* progress: a later drop gets every attempt again */
	if (w->src_paused) {
		w->src_paused = 0;
		imap_client_kick(&w->src);
	}
	worker_check_done(w);
}

static void src_writable_kick(struct imap_client *c)
{
	struct worker *w = c->ud;

	if (w->src_starved) {
		w->src_starved = 0;
		imap_client_kick(&w->src);
	}
}

/* ---- worker: per-mailbox sequence ------------------------------------------- */

static void fetch_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);

static void fetch_send(struct worker *w, struct imap_cmd *cmd, const char *set)
{
	imap_cmd_begin(&w->src, cmd, fetch_done, NULL);
	imap_putf(&w->src, "UID FETCH %s (UID FLAGS INTERNALDATE RFC822.SIZE%s BODY.PEEK[])", set,
		  w->src.enabled_condstore ? " MODSEQ" : "");
	imap_cmd_end(&w->src);
	w->fetches_inflight++;
}

/* Sends the next UID range, or the next chunk of the retry list. */
static int fetch_next(struct worker *w, struct imap_cmd *cmd)
{
	char set[RETRY_CHUNK * 11 + 1];

	if (!w->single_mode && !w->list_mode) {
		uint32_t a = w->next_range, b;

		if (a > w->end_uid || a == 0)
			return 0;
		b = (w->end_uid - a >= FETCH_RANGE) ? a + FETCH_RANGE - 1 : w->end_uid;
		w->next_range = b == UINT32_MAX ? 0 : b + 1;
		snprintf(set, sizeof(set), "%u:%u", a, b);
	} else {
		size_t n = 0, k = 0;

		uint32_t *list = w->single_mode ? w->retry : w->todo;
		size_t *pos = w->single_mode ? &w->retry_pos : &w->todo_pos;
		size_t len = w->single_mode ? w->nretry : w->ntodo;

		if (*pos >= len)
			return 0;
		while (*pos < len && k < RETRY_CHUNK) {
			n += (size_t)snprintf(set + n, sizeof(set) - n, "%s%u", k ? "," : "",
					      list[(*pos)++]);
			k++;
		}
	}
	fetch_send(w, cmd, set);
	return 1;
}

static void fetch_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	w->fetches_inflight--;
	if (r->status != IMAP_ST_OK) {
		job_error(w->job, imap_client_who(c), w->mb, 0, "UID FETCH failed: %.*s",
			  (int)r->text_len, r->text);
		w->mb->failed = 1;
	} else {
		fetch_next(w, cmd);
	}
	worker_check_done(w);
}

static void mailbox_finish(struct worker *w)
{
	struct job *j = w->job;
	struct mbox *mb = w->mb;
	struct state_mbox rec;
	struct mf_error e;
	int lost = j->o->sync_flags && w->chg_lost;

	if (lost && w->chg_unread && !mb->failed && !j->o->dry_run) {
		job_error(j, imap_client_who(&w->src), mb, 0,
		          "%zu flag changes could not be noted (out of memory or "
		          "a state error); they are read again next run",
		          w->chg_unread);
		mb->nfailed += w->chg_unread;
		j->sum->failed += w->chg_unread;
	}
	if (state_mbox_get(j->st, j->jobid, mb->mbid, &rec, &e) < 0)
		memset(&rec, 0, sizeof(rec));
	if (j->o->dry_run) {
		if (mb->failed)
			j->sum->mailboxes_failed++;
	} else if (!mb->failed) {
		snprintf(rec.name, sizeof(rec.name), "%s", mb->name);
		snprintf(rec.dst_name, sizeof(rec.dst_name), "%s", mb->dst_name);
		/* HIGHESTMODSEQ in the record means "flags in the state are
		 * current up to here": it moves only when flags were read. */
		if (lost) {
			/* A flag change was not applied: the next run reads it
			 * again (from the old HIGHESTMODSEQ, or by a scan). */
			if (rec.uidvalidity != w->uidvalidity)
				rec.highestmodseq = 0;
		} else if (rec.uidvalidity != w->uidvalidity || !rec.last_uid ||
		           w->method != M_NEW_ONLY) {
			rec.highestmodseq = w->highestmodseq;
		}
		rec.uidvalidity = w->uidvalidity;
		rec.uidnext = w->uidnext;
		/* Messages the destination refused are tried again next run. */
		rec.last_uid = w->mb_failed_min_uid ? (uint32_t)w->mb_failed_min_uid - 1
						     : (w->uidnext ? w->uidnext - 1 : 0);
		rec.synced_at =
		    w->mb_failed_min_uid || mb->nfailed || lost ? 0 : (uint64_t)time(NULL);
		rec.messages = w->src.exists;
		rec.intents = 0; /* every APPEND of this pass was answered */
		if (state_mbox_put(j->st, j->jobid, mb->mbid, &rec, &e) < 0) {
			job_error(j, NULL, mb, 0, "%s", e.msg);
			j->fatal = 1;
		}
		j->state_dirty = 1;
	} else {
		j->sum->mailboxes_failed++;
	}
	/* Not committed here: nothing below needs it durable (an unrecorded
	 * end of a pass is redone next time, idempotently; copies are safe by
	 * their intents). The tick commits within a second, the end at once;
	 * an fsync per mailbox would stall the loop. */
	if (j->o->json) {
		fprintf(j->o->out, "{\"event\":\"mailbox\",\"name\":");
		json_str(j->o->out, mb->display, strlen(mb->display));
		fprintf(j->o->out, ",\"copied\":%llu,\"skipped\":%llu,\"failed\":%llu,\"bytes\":%llu,"
				   "\"method\":\"%s\",\"flag_changes\":%zu,\"expunges\":%zu,\"ok\":%s}\n",
			(unsigned long long)mb->copied, (unsigned long long)mb->skipped,
			(unsigned long long)mb->nfailed, (unsigned long long)mb->bytes,
			method_names[w->method], j->o->sync_flags ? w->nchg : 0,
			j->o->delete_ ? w->ngone : 0, mb->failed || mb->nfailed ? "false" : "true");
		fflush(j->o->out);
	}
	w->mb = NULL;
	w->phase = W_IDLE;
	worker_next(w);
	if (j->o->dedupe)
		dispatch(j); /* a worker may be waiting for this destination folder */
}

static void worker_check_done(struct worker *w)
{
	if (w->phase != W_FETCH || w->fetches_inflight)
		return;
	if (w->open)
		batch_close(w);
	if (w->b_count)
		return;
	if (!w->mb->failed && !w->single_mode && w->nretry) {
		w->single_mode = 1;
		w->retry_pos = 0;
		fetch_next(w, &w->fetch_cmd[0]);
		fetch_next(w, &w->fetch_cmd[1]);
		return;
	}
	mailbox_finish(w);
}

static void changes_start(struct worker *w);

/* ---- worker: settling unconfirmed APPENDs after a crash -------------------------- */

static int settle_collect(void *ctx, uint32_t uid, const struct state_msg *m)
{
	struct worker *w = ctx;

	if (m->status == STATE_MSG_DONE && m->dst_uid >= w->stl_floor)
		w->stl_floor = m->dst_uid + 1;
	if (m->status != STATE_MSG_INTENT)
		return 0;
	if (w->nstl == w->cstl) {
		size_t nc = w->cstl ? w->cstl * 2 : 64;
		struct settle *ns = realloc(w->stl, nc * sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		w->stl = ns;
		w->cstl = nc;
	}
	w->stl[w->nstl++] = (struct settle){.uid = uid};
	memcpy(w->stl[w->nstl - 1].nhash, m->nhash, 32);
	return 0;
}

/* A resumed pass settled an APPEND this run sent before the drop: it was
 * copied now. Found ones at the front (no unfound one below them) are not
 * counted again when the pass reads them. */
static void resumed_found(struct worker *w, uint32_t uid, uint64_t size, int prefix)
{
	struct job *j = w->job;

	w->mb->copied++;
	w->mb->bytes += size;
	j->sum->copied++;
	j->sum->bytes += size;
	if (prefix && w->resume_range && w->resume_uidv == w->uidvalidity && uid >= w->resume_uid)
		w->resume_uid = uid + 1;
}

static void settle_finish(struct worker *w)
{
	struct job *j = w->job;
	size_t found = 0;
	struct mf_error e;

	for (size_t i = 0; i < w->nstl; i++) {
		struct settle *st = &w->stl[i];
		struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, st->uid};
		struct state_msg m;
		int rc;

		if (!st->found) {
			rc = state_msg_del(j->st, &k, &e);
		} else if ((rc = state_msg_get(j->st, &k, &m, &e)) == 0) {
			m.status = STATE_MSG_DONE;
			m.dst_uid = st->dst_uid;
			rc = state_msg_put(j->st, &k, &m, &e);
			found++;
			if (w->resumed)
				resumed_found(w, st->uid, m.size, i == found - 1);
		}
		if (rc < 0) {
			job_error(j, NULL, w->mb, st->uid, "%s", e.msg);
			j->fatal = 1;
		}
	}
	mf_log(MF_LOG_INFO,
	       "mailbox \"%s\": %zu interrupted APPENDs settled: %zu already on the "
	       "destination, %zu to copy again (destination UIDs from %u, %u looked at)",
	       w->mb->display, w->nstl, found, w->nstl - found, w->stl_floor, w->stl_seen);
	w->nstl = 0;
	mbox_mark_intents(w, 0);
	job_commit(j);
	changes_start(w);
}

static void settle_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	if (r->status != IMAP_ST_OK) {
		job_error(w->job, imap_client_who(c), w->mb, 0,
			  "cannot check the destination for interrupted APPENDs: %.*s",
			  (int)r->text_len, r->text);
		w->mb->failed = 1;
		if (cmd == &w->settle_cmd[1])
			mailbox_finish(w);
		return;
	}
	if (cmd == &w->settle_cmd[1] && !w->mb->failed)
		settle_finish(w);
	else if (cmd == &w->settle_cmd[1])
		mailbox_finish(w);
}

static void settle_start(struct worker *w);

static void settle_wait_done(struct loop *l, struct loop_timer *t)
{
	struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, settle_timer));

	(void)l;
	if (!w->dead && w->mb && w->phase == W_SETTLE)
		settle_start(w);
}

/* After a crash the destination may still be storing the APPENDs whose
 * bytes had left our socket: it finishes a command whose final CRLF it
 * received even though we are gone. Looking before that is done would
 * miss them and copy them twice, so intents younger than this are waited
 * for. */
#define SETTLE_GRACE_MS 3000

static void settle_start(struct worker *w)
{
	struct job *j = w->job;
	struct mf_error e;
	uint64_t now = wall_ms();
	int rc;

	if (w->rec.intent_at_ms && now < w->rec.intent_at_ms + SETTLE_GRACE_MS &&
	    w->phase != W_SETTLE) {
		w->phase = W_SETTLE;
		mf_log(MF_LOG_INFO, "mailbox \"%s\": waiting %.1f s for the destination to finish "
				    "the interrupted run's APPENDs",
		       w->mb->display, (double)(w->rec.intent_at_ms + SETTLE_GRACE_MS - now) / 1000.0);
		loop_timer_start(j->loop, &w->settle_timer, w->rec.intent_at_ms + SETTLE_GRACE_MS - now,
				 settle_wait_done);
		return;
	}
	w->nstl = 0;
	w->stl_floor = 1;
	w->stl_seen = 0;
	rc = state_msg_each(j->st, j->jobid, w->mb->mbid, w->uidvalidity, 1, settle_collect, w, &e);
	if (rc < 0) {
		mailbox_fail(w, NULL, 0, "%s", rc == -ENOMEM ? "out of memory" : e.msg);
		return;
	}
	if (!w->nstl) {
		mbox_mark_intents(w, 0);
		changes_start(w);
		return;
	}
	w->phase = W_SETTLE;
	imap_cmd_begin(&w->dst, &w->settle_cmd[0], settle_done, NULL);
	imap_put(&w->dst, "EXAMINE ");
	imap_put_astring(&w->dst, w->mb->dst_name, strlen(w->mb->dst_name));
	imap_cmd_end(&w->dst);
	imap_cmd_begin(&w->dst, &w->settle_cmd[1], settle_done, NULL);
	imap_putf(&w->dst, "UID FETCH %u:* (UID BODY.PEEK[])", w->stl_floor);
	imap_cmd_end(&w->dst);
}

static int dst_lit_begin(struct imap_client *c, const struct imap_resp *r,
			 const struct imap_node *key, uint64_t size)
{
	struct worker *w = c->ud;
	const struct imap_node *it;
	int rc;

	if ((rc = literal_check(w, c, r, key, size)) < 0)
		return rc;
	if ((w->phase != W_SETTLE && w->phase != W_DEDUPE_DST) || !r->first || !r->first->next ||
	    !imap_node_is(r->first->next, "FETCH") || !key || !imap_node_is(key, "BODY[]"))
		return IMAP_LIT_INLINE;
	w->stl_uid = 0;
	for (it = r->first->next->next ? r->first->next->next->child : NULL; it && it != key;
	     it = it->next)
		if (imap_node_is(it, "UID") && it->next)
			imap_node_u32(it->next, &w->stl_uid);
	msghash_begin(&w->mh);
	return IMAP_LIT_STREAM;
}

static ssize_t dst_lit_data(struct imap_client *c, const uint8_t *p, size_t n)
{
	struct worker *w = c->ud;

	if (w->phase == W_SETTLE || w->phase == W_DEDUPE_DST)
		msghash_update(&w->mh, p, n);
	return (ssize_t)n;
}

static int dst_lit_end(struct imap_client *c)
{
	struct worker *w = c->ud;
	uint8_t nh[32];

	if (w->phase == W_DEDUPE_DST)
		return dd_dst_lit_end(w);
	if (w->phase != W_SETTLE)
		return 0;
	msghash_end(&w->mh, NULL, nh);
	w->stl_seen++;
	if (w->stl_uid < w->stl_floor)
		return 0; /* "n:*" answers with the last message even below n */
	for (size_t i = 0; i < w->nstl; i++)
		if (!w->stl[i].found && !memcmp(w->stl[i].nhash, nh, 32)) {
			w->stl[i].found = 1;
			w->stl[i].dst_uid = w->stl_uid;
			break;
		}
	return 0;
}

/* ---- worker: incremental flags and expunges (DESIGN §5) ------------------------------ */

/* Flag lists equal as sets (order and case of names do not matter). */
static int flags_equal(const char *a, size_t al, const char *b, size_t bl)
{
	size_t na = 0, nb = 0;

	for (size_t i = 0; i < al;) {
		size_t k = i;
		int found = 0;

		while (k < al && a[k] != ' ')
			k++;
		for (size_t x = 0; x < bl && !found;) {
			size_t y = x;

			while (y < bl && b[y] != ' ')
				y++;
			found = (y - x == k - i) && !strncasecmp(a + i, b + x, k - i);
			x = y + 1;
		}
		if (!found)
			return 0;
		na++;
		i = k + 1;
	}
	for (size_t x = 0; x < bl;) {
		size_t y = x;

		while (y < bl && b[y] != ' ')
			y++;
		if (y > x)
			nb++;
		x = y + 1;
	}
	return na == nb;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t nc;
	void *np;

	if (need <= *cap)
		return 0;
	nc = *cap ? *cap : 64;
	while (nc < need)
		nc *= 2;
	np = realloc(*p, nc * elem);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = nc;
	return 0;
}

static void seen_mark(struct worker *w, uint32_t uid)
{
	if (uid && uid <= w->seen_n)
		w->seen[(uid - 1) >> 3] |= (uint8_t)(1u << ((uid - 1) & 7));
}

static void seen_mark_cb(void *ctx, uint32_t uid)
{
	seen_mark(ctx, uid);
}

static int seen_has(const struct worker *w, uint32_t uid)
{
	return uid && uid <= w->seen_n && (w->seen[(uid - 1) >> 3] & (1u << ((uid - 1) & 7)));
}

/* What one reading of a mailbox's changes gathered, forgotten (a new
 * mailbox, or the same one read again by the next method). */
static void changes_reset(struct worker *w)
{
	w->nchg = w->ngone = w->cpool_len = 0;
	w->chg_lost = w->chg_unread = 0;
	w->unknown_vanished = 0;
	w->fallback_why = NULL;
	w->max_named_uid = 0;
}

static void gone_push(struct worker *w, uint32_t uid)
{
	if (grow((void **)&w->gone, &w->cgone, w->ngone + 1, sizeof(*w->gone)) == 0)
		w->gone[w->ngone++] = uid;
}

/* One flag change to apply: uid now has flags fl (n bytes); 0, or -ENOMEM
 * with the change counted as lost. */
static int chg_push(struct worker *w, uint32_t uid, uint32_t dst_uid, const char *fl, size_t n)
{
	if (test_fail(w->job, "change_note") ||
	    grow((void **)&w->chg, &w->cchg, w->nchg + 1, sizeof(*w->chg)) < 0 ||
	    grow((void **)&w->cpool, &w->cpool_cap, w->cpool_len + n + 1, 1) < 0) {
		w->chg_lost++;
		w->chg_unread++;
		return -ENOMEM;
	}
	w->chg[w->nchg++] = (struct chg){uid, dst_uid, w->cpool_len, (uint16_t)n};
	memcpy(w->cpool + w->cpool_len, fl, n);
	w->cpool_len += n;
	return 0;
}

/* A FETCH with FLAGS for a known message: record it if the flags differ
 * from what the state says was copied. */
static void change_note(struct worker *w, uint32_t uid, const struct imap_node *flags)
{
	struct job *j = w->job;
	struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, uid};
	struct state_msg m;
	struct mf_error e;
	const struct imap_node *bad;
	char fl[STATE_FLAGS_MAX];
	size_t n;
	int rc;

	if (!uid || uid > w->rec.last_uid)
		return; /* new messages are copied, not updated */
	seen_mark(w, uid);
	if (!flags)
		return;
	if ((rc = state_msg_get(j->st, &k, &m, &e)) < 0) {
		if (rc != -ENOENT) { /* not copied (refused): nothing to update */
			w->chg_lost++;
			w->chg_unread++;
		}
		return;
	}
	if (m.status != STATE_MSG_DONE)
		return;
	n = flags_string(flags, fl, sizeof(fl), &bad);
	if (bad) {
		job_error(j, imap_client_who(&w->src), w->mb, uid,
		          "flag \"%.*s\" is neither a system flag nor an atom; flag change not "
		          "applied",
		          (int)(bad->len > 64 ? 64 : bad->len), bad->s ? bad->s : "");
		return;
	}
	if (flags_equal(fl, n, m.flags, strlen(m.flags)))
		return;
	chg_push(w, uid, m.dst_uid, fl, n);
}

static void vanished_note(void *ctx, uint32_t uid)
{
	struct worker *w = ctx;
	struct job *j = w->job;
	struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, uid};
	struct state_msg m;
	struct mf_error e;

	if (uid > w->max_named_uid)
		w->max_named_uid = uid;
	if (uid > w->rec.last_uid)
		return;
	if (state_msg_get(j->st, &k, &m, &e) < 0) {
		w->unknown_vanished++;
		return;
	}
	gone_push(w, uid);
}

/* Untagged data while the changes are read (EXAMINE with QRESYNC, the
 * CHANGEDSINCE or scan FETCH, the UID SEARCH). */
static int changes_untagged(struct worker *w, const struct imap_resp *r)
{
	const struct imap_node *a = r->first, *it;
	uint32_t uid = 0, n;

	if (!a || !a->next)
		return 0;
	if (imap_node_is(a, "VANISHED") && w->method == M_QRESYNC) {
		const struct imap_node *set = a->next;

		if (set->type == IMAP_NODE_LIST && set->next)
			set = set->next; /* (EARLIER) */
		if (set->type != IMAP_NODE_ATOM ||
		    uidset_each(set->s, set->len, vanished_note, w) < 0)
			w->fallback_why = "VANISHED did not parse";
		return 0;
	}
	if (imap_node_is(a, "SEARCH")) {
		for (it = a->next; it; it = it->next)
			if (imap_node_u32(it, &n) == 0)
				seen_mark(w, n);
		return 0;
	}
	if (imap_node_is(a, "ESEARCH")) {
		for (it = a->next; it; it = it->next)
			if (imap_node_is(it, "ALL") && it->next)
				uidset_each(it->next->s, it->next->len, seen_mark_cb, w);
		return 0;
	}
	if (imap_node_is(a->next, "FETCH") && a->next->next &&
	    a->next->next->type == IMAP_NODE_LIST) {
		const struct imap_node *flags = NULL;

		for (it = a->next->next->child; it && it->next; it = it->next->next) {
			if (imap_node_is(it, "UID"))
				imap_node_u32(it->next, &uid);
			else if (imap_node_is(it, "FLAGS"))
				flags = it->next;
		}
		if (w->method == M_QRESYNC && uid > w->max_named_uid)
			w->max_named_uid = uid;
		change_note(w, uid, flags);
	}
	return 0;
}

static int gone_collect(void *ctx, uint32_t uid, const struct state_msg *m)
{
	struct worker *w = ctx;

	if (uid > w->rec.last_uid)
		return 1;
	if (m->status == STATE_MSG_DONE && !seen_has(w, uid))
		gone_push(w, uid);
	return 0;
}

static void changes_apply(struct worker *w);

static void diff_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct mf_error e;

	if (r->status != IMAP_ST_OK && w->method == M_CONDSTORE && !w->diff_refused &&
	    !c->closed) {
		/* A server that claims CONDSTORE but refuses CHANGEDSINCE (or the
		 * SEARCH): read the mailbox the plain way instead. */
		mf_log(MF_LOG_WARN, "%s mailbox \"%s\": reading changes refused (%.*s); "
				    "falling back to a full UID/FLAGS scan",
		       imap_client_who(c), w->mb->display, (int)r->text_len, r->text);
		w->diff_refused = 1;
	} else if (r->status != IMAP_ST_OK && !w->diff_refused) {
		/* Nothing is deleted on the strength of an answer we did not get. */
		job_error(j, imap_client_who(c), w->mb, 0, "reading changes failed: %.*s",
			  (int)r->text_len, r->text);
		w->mb->failed = 1;
	}
	if (cmd == &w->diff_cmd[0] && w->diff_cmd[1].done == diff_done && w->diff_cmd[1].tag > cmd->tag)
		return; /* the second command's answer follows */
	if (w->mb->failed) {
		mailbox_finish(w);
		return;
	}
	if (w->diff_refused && w->method == M_CONDSTORE) {
		w->method = M_SCAN;
		changes_reset(w);
		changes_start(w);
		return;
	}
	if (w->method == M_SCAN || (w->method == M_CONDSTORE && j->o->delete_)) {
		if (state_msg_each(j->st, j->jobid, w->mb->mbid, w->uidvalidity, 1, gone_collect, w,
				   &e) < 0) {
			mailbox_fail(w, NULL, 0, "%s", e.msg);
			return;
		}
	}
	changes_apply(w);
}

/* Reads what changed since the last pass, by the best method the source
 * offers: QRESYNC already answered inside EXAMINE; CONDSTORE asks
 * CHANGEDSINCE plus a UID SEARCH for expunges; otherwise a UID/FLAGS scan. */
static void changes_start(struct worker *w)
{
	struct job *j = w->job;
	uint32_t last = w->rec.last_uid;

	if (w->method == M_NEW_ONLY || !last) {
		fetch_start(w);
		return;
	}
	if (w->method == M_QRESYNC) {
		/* An answer we cannot trust deletes nothing: log it once, then read
		 * the mailbox by the next method. A modseq that went backwards
		 * makes CHANGEDSINCE worthless too, so that one goes to a scan. */
		const char *why = w->fallback_why;
		int back = w->highestmodseq < w->rec.highestmodseq;

		if (!why && back)
			why = "HIGHESTMODSEQ went backwards";
		if (!why && w->uidnext && w->max_named_uid >= w->uidnext)
			why = "it names UIDs at or above UIDNEXT";
		if (why) {
			w->method = w->src.enabled_condstore && !back ? M_CONDSTORE : M_SCAN;
			mf_log(MF_LOG_WARN, "%s mailbox \"%s\": QRESYNC answer not usable (%s); "
					    "reading changes by %s instead",
			       imap_client_who(&w->src), w->mb->display, why,
			       w->method == M_SCAN ? "a full UID/FLAGS scan" : "CONDSTORE");
			changes_reset(w);
		}
	}
	if (w->method == M_CONDSTORE && w->highestmodseq < w->rec.highestmodseq) {
		mf_log(MF_LOG_WARN, "%s mailbox \"%s\": HIGHESTMODSEQ went backwards; full scan",
		       imap_client_who(&w->src), w->mb->display);
		w->method = M_SCAN;
	}
	if (w->method == M_QRESYNC) {
		changes_apply(w);
		return;
	}
	w->seen_n = last;
	if (grow((void **)&w->seen, &w->seen_cap, last / 8 + 1, 1) < 0) {
		mailbox_fail(w, NULL, 0, "out of memory");
		return;
	}
	memset(w->seen, 0, last / 8 + 1);
	w->phase = W_DIFF;
	memset(w->diff_cmd, 0, sizeof(w->diff_cmd));
	if (w->method == M_CONDSTORE) {
		if (w->highestmodseq != w->rec.highestmodseq || !w->rec.highestmodseq) {
			imap_cmd_begin(&w->src, &w->diff_cmd[0], diff_done, NULL);
			imap_putf(&w->src, "UID FETCH 1:%u (UID FLAGS) (CHANGEDSINCE %llu)", last,
				  (unsigned long long)w->rec.highestmodseq);
			imap_cmd_end(&w->src);
		}
		if (j->o->delete_) {
			imap_cmd_begin(&w->src, &w->diff_cmd[1], diff_done, NULL);
			if (w->src.caps & IMAP_CAP_ESEARCH)
				imap_putf(&w->src, "UID SEARCH RETURN (ALL) UID 1:%u", last);
			else
				imap_putf(&w->src, "UID SEARCH UID 1:%u", last);
			imap_cmd_end(&w->src);
		}
		if (!w->diff_cmd[0].done && !w->diff_cmd[1].done)
			changes_apply(w);
		return;
	}
	imap_cmd_begin(&w->src, &w->diff_cmd[0], diff_done, NULL);
	imap_putf(&w->src, "UID FETCH 1:%u (UID FLAGS)", last);
	imap_cmd_end(&w->src);
}

static int chg_cmp(const void *a, const void *b, void *pool)
{
	const struct chg *x = a, *y = b;
	int c;

	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	c = memcmp((char *)pool + x->off, (char *)pool + y->off, x->len);
	if (c)
		return c;
	return x->dst_uid < y->dst_uid ? -1 : x->dst_uid > y->dst_uid;
}

static void apply_release(struct worker *w)
{
	if (--w->apply_pending)
		return;
	/* Flags stored and expunges done are recorded, committed with the
	 * next tick: redoing them after a crash changes nothing. */
	fetch_start(w);
}

static void store_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	const struct apply_op *op = cmd->ud;
	size_t i0 = op->first, i1 = op->end;
	struct mf_error e;

	if (r->status != IMAP_ST_OK) {
		job_error(j, imap_client_who(c), w->mb, w->chg[i0].uid,
			  "flag update refused: %.*s", (int)r->text_len, r->text);
		w->mb->nfailed += i1 - i0;
		j->sum->failed += i1 - i0;
		w->chg_lost += i1 - i0; /* read again next run */
	} else {
		for (size_t i = i0; i < i1; i++) {
			struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, w->chg[i].uid};
			struct state_msg m;

			if (state_msg_get(j->st, &k, &m, &e) < 0) {
				job_error(j, NULL, w->mb, w->chg[i].uid, "%s", e.msg);
				w->chg_lost++;
				continue;
			}
			memcpy(m.flags, w->cpool + w->chg[i].off, w->chg[i].len);
			m.flags[w->chg[i].len] = '\0';
			if (state_msg_put(j->st, &k, &m, &e) < 0) {
				job_error(j, NULL, w->mb, w->chg[i].uid, "%s", e.msg);
				w->chg_lost++;
				continue;
			}
			j->sum->flags_synced++;
		}
		j->state_dirty = 1;
	}
	apply_release(w);
}

static void expunge_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct mf_error e;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		job_error(j, imap_client_who(c), w->mb, 0, "expunge refused: %.*s", (int)r->text_len,
			  r->text);
		w->mb->nfailed++;
		j->sum->failed++;
	} else if (cmd->ud) {
		for (size_t i = 0; i < w->ngone; i++) {
			struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, w->gone[i]};

			if (state_msg_del(j->st, &k, &e) < 0)
				job_error(j, NULL, w->mb, w->gone[i], "%s", e.msg);
			j->sum->expunged++;
		}
		j->state_dirty = 1;
	}
	apply_release(w);
}

static void select_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		job_error(w->job, imap_client_who(c), w->mb, 0, "cannot select the destination "
			  "mailbox \"%s\": %.*s", w->mb->dst_name, (int)r->text_len, r->text);
		w->mb->failed = 1;
	}
	apply_release(w);
}

/* Writes the destination UIDs of the expunged messages; returns how many
 * had none recorded. */
static size_t put_gone_uids(struct worker *w, struct imap_client *d)
{
	struct job *j = w->job;
	size_t nomap = 0;
	int first = 1;

	for (size_t i = 0; i < w->ngone; i++) {
		struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, w->gone[i]};
		struct state_msg m;
		struct mf_error e;

		if (state_msg_get(j->st, &k, &m, &e) == 0 && m.dst_uid) {
			imap_putf(d, "%s%u", first ? "" : ",", m.dst_uid);
			first = 0;
		} else {
			nomap++;
		}
	}
	if (first)
		imap_put(d, "0");
	return nomap;
}

/* The \Deleted marks are stored: only now may UID EXPUNGE go. Pipelined
 * behind the STORE it could run first: Dovecot executes UID commands that
 * look independent in parallel (RFC 3501 §5.5 makes that the client's
 * problem). */
static void deleted_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	if (r->status != IMAP_ST_OK) {
		expunge_done(c, cmd, r);
		return;
	}
	if (c->caps & IMAP_CAP_UIDPLUS) {
		imap_cmd_begin(c, cmd, expunge_done, (void *)1);
		imap_put(c, "UID EXPUNGE ");
		put_gone_uids(w, c);
		imap_cmd_end(c);
		return;
	}
	/* A plain EXPUNGE would also remove messages someone else marked
	 * \Deleted: leave ours marked and say so. */
	mf_log(MF_LOG_WARN, "%s mailbox \"%s\": no UIDPLUS; %zu messages marked \\Deleted but "
			    "not expunged",
	       imap_client_who(c), w->mb->display, w->ngone);
	cmd->ud = (void *)1;
	expunge_done(c, cmd, r);
}

static struct imap_cmd *apply_cmd(struct worker *w)
{
	size_t need = w->apply_pending + 1;

	/* All apply commands are sent before the first answer is read, so
	 * the array is sized up front by changes_apply. */
	return need <= w->apply_cap ? &w->apply_cmd[w->apply_pending++].cmd : NULL;
}

/* Writes the changes to the destination: flags with UID STORE (grouped by
 * identical flag sets), expunges with UID EXPUNGE (UIDPLUS), all pipelined
 * after one SELECT. */
static void changes_apply(struct worker *w)
{
	struct job *j = w->job;
	struct imap_client *d = &w->dst;
	size_t nflag = j->o->sync_flags ? w->nchg : 0, ngone = j->o->delete_ ? w->ngone : 0;
	size_t ncmd = 2 + nflag + (ngone ? 1 : 0), nomap = 0;
	struct imap_cmd *cmd;
	struct apply_op *op;

	if (w->unknown_vanished)
		mf_log(MF_LOG_INFO, "%s mailbox \"%s\": %llu vanished UIDs were never copied; ignored",
		       imap_client_who(&w->src), w->mb->display,
		       (unsigned long long)w->unknown_vanished);
	if (!nflag && !ngone) {
		fetch_start(w);
		return;
	}
	if (j->o->dry_run) {
		progress_clear(j);
		mf_print("mailferry: dry-run: mailbox \"%s\": %zu flag changes, %zu expunges",
		         w->mb->display, nflag, ngone);
		fetch_start(w);
		return;
	}
	if (grow((void **)&w->apply_cmd, &w->apply_cap, ncmd, sizeof(*w->apply_cmd)) < 0) {
		mailbox_fail(w, NULL, 0, "out of memory");
		return;
	}
	w->phase = W_APPLY;
	w->apply_pending = 1; /* held until everything is sent */
	cmd = apply_cmd(w);
	imap_cmd_begin(d, cmd, select_done, NULL);
	imap_put(d, "SELECT ");
	imap_put_astring(d, w->mb->dst_name, strlen(w->mb->dst_name));
	imap_cmd_end(d);
	if (nflag)
		qsort_r(w->chg, w->nchg, sizeof(*w->chg), chg_cmp, w->cpool);
	for (size_t i = 0; i < nflag;) {
		size_t k = i, n = 0;

		while (k < nflag && w->chg[k].len == w->chg[i].len &&
		       !memcmp(w->cpool + w->chg[k].off, w->cpool + w->chg[i].off, w->chg[i].len) &&
		       k - i < 500)
			k++;
		for (size_t x = i; x < k; x++)
			n += w->chg[x].dst_uid != 0;
		if (!n) {
			nomap += k - i;
			i = k;
			continue;
		}
		cmd = apply_cmd(w);
		op = (struct apply_op *)cmd; /* its first member */
		op->first = i;
		op->end = k;
		imap_cmd_begin(d, cmd, store_done, op);
		imap_put(d, "UID STORE ");
		for (size_t x = i, first = 1; x < k; x++)
			if (w->chg[x].dst_uid) {
				imap_putf(d, "%s%u", first ? "" : ",", w->chg[x].dst_uid);
				first = 0;
			}
		imap_putf(d, " FLAGS.SILENT (%.*s)", (int)w->chg[i].len, w->cpool + w->chg[i].off);
		imap_cmd_end(d);
		i = k;
	}
	if (ngone) {
		cmd = apply_cmd(w);
		imap_cmd_begin(d, cmd, deleted_done, NULL);
		imap_put(d, "UID STORE ");
		nomap += put_gone_uids(w, d);
		imap_put(d, " +FLAGS.SILENT (\\Deleted)");
		imap_cmd_end(d);
	}
	if (nomap)
		mf_log(MF_LOG_WARN, "%s mailbox \"%s\": %zu changes not applied: destination UID "
				    "unknown (no UIDPLUS when copied)",
		       imap_client_who(d), w->mb->display, nomap);
	apply_release(w);
}

static void examine_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct mbox *mb = w->mb;
	struct state_mbox rec;
	struct mf_error e;

	(void)cmd;
	if (r->status != IMAP_ST_OK && w->method == M_QRESYNC && !w->retried_plain && !c->closed) {
		/* Claims QRESYNC but refuses the SELECT parameter: open the
		 * mailbox plainly and read the changes by the next method. */
		mf_log(MF_LOG_WARN, "%s mailbox \"%s\": EXAMINE (QRESYNC ...) refused (%.*s); "
				    "reading changes by %s instead",
		       imap_client_who(c), mb->display, (int)r->text_len, r->text,
		       w->src.enabled_condstore ? "CONDSTORE" : "a full UID/FLAGS scan");
		w->retried_plain = 1;
		w->method = w->src.enabled_condstore ? M_CONDSTORE : M_SCAN;
		changes_reset(w);
		w->uidvalidity = w->uidnext = 0;
		w->highestmodseq = 0;
		examine_send(w);
		return;
	}
	if (r->status != IMAP_ST_OK) {
		mailbox_fail(w, imap_client_who(c), 0, "cannot open mailbox: %.*s", (int)r->text_len,
			     r->text);
		return;
	}
	if (!w->uidvalidity) {
		mailbox_fail(w, imap_client_who(c), 0, "server gave no UIDVALIDITY");
		return;
	}
	w->start_uid = 1;
	if (state_mbox_get(j->st, j->jobid, mb->mbid, &rec, &e) == 0 && rec.uidvalidity) {
		if (rec.uidvalidity != w->uidvalidity && j->o->dry_run) {
			progress_clear(j);
			mf_print("mailferry: dry-run: mailbox \"%s\": UIDVALIDITY changed from "
			         "%u to %u; its %u messages would be found again by content, "
			         "the rest copied",
			         mb->display, rec.uidvalidity, w->uidvalidity, c->exists);
			mailbox_finish(w);
			return;
		}
		if (rec.uidvalidity != w->uidvalidity) {
			remap_start(w, rec.uidvalidity);
			return;
		}
		w->start_uid = rec.last_uid + 1;
	}
	if (rec.intents && rec.uidvalidity == w->uidvalidity && j->o->dry_run) {
		progress_clear(j);
		mf_print("mailferry: dry-run: mailbox \"%s\": APPENDs of an interrupted run "
		         "would be looked for on the destination first",
		         mb->display);
	} else if (rec.intents && rec.uidvalidity == w->uidvalidity) {
		settle_start(w);
		return;
	}
	changes_start(w);
}

/* --dry-run: how many messages would be copied (UID SEARCH, no bodies). */
static void dry_count_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;

	(void)cmd;
	progress_clear(j);
	if (r->status != IMAP_ST_OK)
		job_error(j, imap_client_who(c), w->mb, 0, "UID SEARCH failed: %.*s",
			  (int)r->text_len, r->text);
	else
		mf_print("mailferry: dry-run: mailbox \"%s\": %llu new messages would be "
		         "copied into \"%s\"",
		         w->mb->display, (unsigned long long)w->dry_count, w->mb->dst_name);
	mailbox_finish(w);
}

static void dry_count_start(struct worker *w)
{
	w->phase = W_COUNT;
	w->dry_count = 0;
	imap_cmd_begin(&w->src, &w->fetch_cmd[0], dry_count_done, NULL);
	if (w->src.caps & IMAP_CAP_ESEARCH)
		imap_putf(&w->src, "UID SEARCH RETURN (COUNT) UID %u:%u", w->start_uid, w->end_uid);
	else
		imap_putf(&w->src, "UID SEARCH UID %u:%u", w->start_uid, w->end_uid);
	imap_cmd_end(&w->src);
}

static void fetch_start(struct worker *w)
{
	struct imap_client *c = &w->src;

	/* Without UIDNEXT (rare) fetch to the end. */
	w->end_uid = w->uidnext ? w->uidnext - 1 : UINT32_MAX;
	w->next_range = w->start_uid;
	w->phase = W_FETCH;
	w->single_mode = 0;
	w->nretry = w->retry_pos = 0;
	w->mb_failed_min_uid = 0;
	/* A pass resumed after a reconnect reads the mailbox again from its
	 * record: what this run confirmed is skipped as recorded. Below
	 * resume_uid it was counted already (src_lit_begin). Not skipped over:
	 * a stream that lost messages before the drop must not lose them for
	 * good. */
	if (!w->resumed || w->resume_uidv != w->uidvalidity)
		w->resume_uid = 0;
	if (!c->exists || w->start_uid > w->end_uid || (w->list_mode && !w->ntodo)) {
		worker_check_done(w);
		return;
	}
	if (w->job->o->dry_run) {
		dry_count_start(w);
		return;
	}
	if (w->job->o->dedupe && !w->dd_done && !w->list_mode && w->end_uid != UINT32_MAX) {
		dedupe_start(w);
		return;
	}
	/* Two UID FETCH ranges in flight keep the source streaming without a
	 * round-trip gap between them. */
	fetch_next(w, &w->fetch_cmd[0]);
	fetch_next(w, &w->fetch_cmd[1]);
	worker_check_done(w);
}

/* Another worker is filling mb's destination folder. */
static int dst_busy(const struct job *j, const struct mbox *mb)
{
	for (unsigned i = 0; i < j->nw; i++)
		if (j->w[i].mb && !strcmp(j->w[i].mb->dst_name, mb->dst_name))
			return 1;
	return 0;
}

static void mailbox_begin(struct worker *w);

static void worker_next(struct worker *w)
{
	struct job *j = w->job;
	struct mbox *mb;

	if (w->dead || !w->src_ready || !w->dst_ready || !j->dst_prepared)
		return;
	if (w->reconnecting) {
		w->reconnecting = 0;
		if (w->mb) {
			mailbox_begin(w); /* the mailbox the drop interrupted */
			return;
		}
	}
	if (w->mb)
		return;
	while (j->next_mb < j->nmb && j->mb[j->next_mb].work <= 0)
		j->next_mb++;
	if (j->o->dedupe && !j->fatal && j->next_mb < j->nmb) {
		/* --dedupe: mailboxes merged into one destination folder go one
		 * after the other, so each sees what the other appended. Nobody
		 * holds a pointer to a mailbox not handed out yet: swapping is fine. */
		size_t i = j->next_mb;

		while (i < j->nmb && (j->mb[i].work <= 0 || dst_busy(j, &j->mb[i])))
			i++;
		if (i == j->nmb)
			return; /* all that is left waits for a busy folder: mailbox_finish wakes us */
		if (i != j->next_mb) {
			struct mbox t = j->mb[i];

			j->mb[i] = j->mb[j->next_mb];
			j->mb[j->next_mb] = t;
		}
	}
	if (j->next_mb >= j->nmb || j->fatal) {
		w->phase = W_DONE;
		imap_client_logout(&w->src);
		imap_client_logout(&w->dst);
		job_maybe_finish(j);
		return;
	}
	mb = &j->mb[j->next_mb++];
	w->mb = mb;
	w->attempts = 0;
	w->resumed = w->resume_range = 0;
	w->resume_uid = 0;
	mailbox_begin(w);
}

/* Opens w->mb from the start: a new mailbox, or the same one again after
 * a reconnect (the record is read again: intents sent before the drop are
 * settled by examine_done). */
static void mailbox_begin(struct worker *w)
{
	struct job *j = w->job;
	struct mbox *mb = w->mb;
	struct mf_error e;

	w->intents_marked = 0;
	w->phase = W_EXAMINE;
	w->list_mode = 0;
	w->uidvalidity = w->uidnext = 0;
	w->highestmodseq = 0;
	changes_reset(w);
	w->dd_done = 0;
	w->retried_plain = w->diff_refused = 0;
	w->seen_n = 0;
	w->have_rec = state_mbox_get(j->st, j->jobid, mb->mbid, &w->rec, &e) == 0;
	if (!w->have_rec)
		memset(&w->rec, 0, sizeof(w->rec));
	/* Flags and expunges are read only when asked for, and only for
	 * messages copied before (rec.last_uid); new mail is copied anyway. */
	w->method = M_NEW_ONLY;
	if ((j->o->sync_flags || j->o->delete_) && w->rec.uidvalidity && w->rec.last_uid) {
		if (w->src.enabled_qresync && w->rec.highestmodseq)
			w->method = M_QRESYNC;
		else if (w->src.enabled_condstore && w->rec.highestmodseq)
			w->method = M_CONDSTORE;
		else
			w->method = M_SCAN;
	}
	examine_send(w);
}

static void examine_send(struct worker *w)
{
	imap_cmd_begin(&w->src, &w->examine_cmd, examine_done, NULL);
	imap_put(&w->src, "EXAMINE ");
	imap_put_astring(&w->src, w->mb->name, w->mb->len);
	if (w->method == M_QRESYNC)
		imap_putf(&w->src, " (QRESYNC (%u %llu 1:%u))", w->rec.uidvalidity,
			  (unsigned long long)w->rec.highestmodseq, w->rec.last_uid);
	imap_cmd_end(&w->src);
}

/* ---- worker: connections ------------------------------------------------------ */

static void src_ready(struct imap_client *c)
{
	struct worker *w = c->ud;

	w->src_ready = 1;
	if (w->id == 0 && !w->job->listed)
		src_list(w);
	else
		worker_next(w);
}

static void dst_ready(struct imap_client *c)
{
	struct worker *w = c->ud;

	w->dst_ready = 1;
	if (w->id == 0 && !w->reconnecting) {
		workers_spawn_rest(w->job);
		dst_prepare(w);
	}
	worker_next(w);
}

/* A connection-level failure a new connection may not meet: reset, closed,
 * BYE, timeout, refused while a server restarts. A refused login, a TLS or
 * certificate failure, a protocol error would only come back. */
static int err_transient(const struct mf_error *err)
{
	switch (-err->code) {
	case ECONNRESET:
	case ECONNREFUSED:
	case ECONNABORTED:
	case ETIMEDOUT:
	case EPIPE:
	case ENOTCONN:
	case ESHUTDOWN:
	case ENETDOWN:
	case ENETUNREACH:
	case EHOSTDOWN:
	case EHOSTUNREACH:
		return 1;
	case EACCES: /* login refused: only [UNAVAILABLE] is temporary (RFC 5530 §3) */
		return strstr(err->msg, "[UNAVAILABLE]") != NULL;
	default:
		return 0;
	}
}

/* The pair may be reopened: it had logged in (or is being reopened), the
 * plan is made and the destination prepared (worker 0 is the control pair
 * until then), and the failure is transient. */
static int reconnect_wanted(const struct worker *w, int login, const struct mf_error *err)
{
	const struct job *j = w->job;

	if (!j->o->retries || j->fatal || j->finished || w->phase == W_DONE)
		return 0;
	if (login && !w->reconnecting)
		return 0;
	if (w->id == 0 && (!j->listed || !j->dst_prepared))
		return 0;
	return err_transient(err);
}

/* err->msg without its leading "source user@host: ". */
static const char *err_reason(const struct imap_client *c, const struct mf_error *err)
{
	size_t n = strlen(imap_client_who(c));

	if (!strncmp(err->msg, imap_client_who(c), n) && !strncmp(err->msg + n, ": ", 2))
		return err->msg + n + 2;
	return err->msg;
}

static void worker_reopen(struct loop *l, struct loop_timer *t);
static void conn_error(struct imap_client *c, const struct mf_error *err);

/* Closes both connections of the pair, keeps what is settled, and reopens
 * them after a backoff (0.5 s doubling up to 30 s, with jitter, so pairs
 * that dropped together do not come back together). The mailbox resumes
 * from its EXAMINE: APPENDs in flight have committed intents that
 * examine_done settles against the destination before anything is copied
 * again; the pass then reads the mailbox from its record again, skipping
 * what is recorded. */
static void worker_reconnect(struct worker *w, struct imap_client *c, const struct mf_error *err)
{
	struct job *j = w->job;
	uint64_t ms = 500;

	w->attempts++;
	j->sum->reconnects++;
	job_commit(j); /* everything confirmed is durable before we go on */
	if (w->mb && w->phase == W_FETCH) {
		w->resumed = 1;
		w->resume_range = !w->single_mode && !w->list_mode;
		w->resume_uidv = w->uidvalidity;
	}
	for (unsigned i = 1; i < w->attempts && ms < 30000; i++)
		ms *= 2;
	if (ms > 30000)
		ms = 30000;
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	ms = ms * 3 / 4 + w->rng % (ms / 2 + 1); /* 0.75 .. 1.25 of it */
	progress_clear(j);
	if (w->mb)
		mf_log(MF_LOG_INFO,
		       "%s mailbox \"%s\": connection lost (%s); reconnecting in "
		       "%.1f s (attempt %u of %u)",
		       imap_client_who(c), w->mb->display, err_reason(c, err), (double)ms / 1000.0,
		       w->attempts, j->o->retries);
	else
		mf_log(MF_LOG_INFO,
		       "%s: connection lost (%s); reconnecting in %.1f s (attempt %u of %u)",
		       imap_client_who(c), err_reason(c, err), (double)ms / 1000.0, w->attempts,
		       j->o->retries);
	/* c is closed already (and may be inside its own parser: it is freed
	 * only when reopened); the other one goes now. */
	if (w->src_open && !w->src.closed)
		imap_client_close(&w->src);
	if (w->dst_open && !w->dst.closed)
		imap_client_close(&w->dst);
	loop_timer_cancel(j->loop, &w->settle_timer);
	w->phase = W_CONNECTING;
	w->reconnecting = 1;
	w->src_ready = w->dst_ready = 0;
	w->open = NULL;
	w->b_head = w->b_count = 0;
	w->fetches_inflight = 0;
	w->cur.active = 0;
	w->src_paused = w->src_starved = 0;
	w->apply_pending = 0;
	w->nstl = 0;
	loop_timer_start(j->loop, &w->reconnect_timer, ms, worker_reopen);
}

static int worker_open_src(struct worker *w, struct mf_error *err);
static int worker_open_dst(struct worker *w, struct mf_error *err);

static void worker_reopen(struct loop *l, struct loop_timer *t)
{
	struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, reconnect_timer));
	struct mf_error e;
	uint64_t in, out;

	(void)l;
	if (w->dead || !w->reconnecting || w->phase != W_CONNECTING)
		return;
	/* Outside every callback now: the old clients' parsers can go. */
	if (w->src_open) {
		imap_client_wire(&w->src, &in, &out);
		w->wire_in += in;
		w->wire_out += out;
		imap_client_close(&w->src);
	}
	if (w->dst_open) {
		imap_client_wire(&w->dst, &in, &out);
		w->wire_in += in;
		w->wire_out += out;
		imap_client_close(&w->dst);
	}
	w->src_open = w->dst_open = 0; /* counted: not again at the end */
	if (worker_open_src(w, &e) < 0) {
		conn_error(&w->src, &e);
	} else if (worker_open_dst(w, &e) < 0) {
		conn_error(&w->dst, &e);
	}
}

static void conn_error(struct imap_client *c, const struct mf_error *err)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	int login = !(c == &w->src ? w->src_ready : w->dst_ready);
	int relogin = w->reconnecting; /* login is of a reopened pair */
	int gave_up = 0;

	if (w->dead)
		return;
	if (reconnect_wanted(w, login, err)) {
		if (w->attempts < j->o->retries) {
			worker_reconnect(w, c, err);
			return;
		}
		gave_up = 1;
	}
	w->dead = 1;
	if (login && !relogin && w->id != 0 && j->w[0].src_ready && j->w[0].dst_ready) {
		/* The first pair logged in, so the accounts are right: this is a
		 * server refusing one connection more (a per-user limit, say).
		 * The others go on without it. */
		mf_log(MF_LOG_WARN, "%s; going on with fewer connections", err->msg);
		worker_stop(w, 0);
		job_maybe_finish(j);
		return;
	}
	if (gave_up)
		job_error(j, imap_client_who(c), w->mb, 0,
		          "connection lost (%s); giving up after %u reconnect attempts",
		          err_reason(c, err), w->attempts);
	else
		job_error(j, NULL, w->mb, 0, "%s", err->msg);
	if (w->mb) {
		w->mb->failed = 1;
		j->sum->mailboxes_failed++;
		w->mb = NULL;
	}
	/* Everything confirmed so far stays recorded. */
	job_commit(j);
	worker_stop(w, 0);
	if (j->o->dedupe)
		dispatch(j); /* its destination folder is free for a waiting worker */
	/* A failed login, or losing the control connections before the plan is
	 * made and the destination prepared, ends the job: the other workers
	 * would fail the same way or have nothing to do. A login refused on a
	 * reconnect fails the mailbox only: the others keep their sessions. */
	if ((login && !relogin) || (w->id == 0 && (!j->listed || !j->dst_prepared)))
		j->fatal = 1;
	job_maybe_finish(j);
}

static const struct imap_client_cb src_cb = {
	.ready = src_ready,
	.error = conn_error,
	.untagged = NULL,
	.lit_begin = src_lit_begin,
	.lit_data = src_lit_data,
	.lit_end = src_lit_end,
};

static int src_untagged_any(struct imap_client *c, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	if (w->id == 0 && !w->job->listed) {
		int rc = src_ctl_untagged(c, r);

		if (rc < 0)
			return rc;
	}
	return src_untagged(c, r);
}

static int dst_untagged_any(struct imap_client *c, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	if (w->id == 0 && !w->job->dst_prepared)
		return dst_ctl_untagged(c, r);
	if (w->phase == W_DEDUPE_DST)
		return dd_dst_untagged(w, r);
	return 0;
}


static int worker_open_src(struct worker *w, struct mf_error *err)
{
	w->src_open = 1;
	w->job->sum->connections++;
	return imap_client_open(&w->src, w->job->loop, &w->job->o->src, &w->job->src_cb, w, err);
}

static int worker_open_dst(struct worker *w, struct mf_error *err)
{
	w->dst_open = 1;
	w->job->sum->connections++;
	return imap_client_open(&w->dst, w->job->loop, &w->job->o->dst, &w->job->dst_cb, w, err);
}

static int worker_init(struct job *j, struct worker *w, unsigned id)
{
	memset(w, 0, sizeof(*w));
	w->job = j;
	w->id = id;
	w->rng = (wall_ms() * 2654435761u) ^ ((uint64_t)(id + 1) << 32) ^ (uint64_t)(uintptr_t)w;
	if (!w->rng)
		w->rng = 1;
	if (msghash_init(&w->mh) < 0)
		return -ENOMEM;
	for (unsigned i = 0; i < BATCH_SLOTS; i++)
		if (!(w->slot[i] = malloc(sizeof(struct batch))))
			return -ENOMEM;
	return 0;
}

/* Opens the destination side of worker 0; once it has logged in (the
 * account is right), workers_spawn_rest opens the others. */
static void workers_spawn(struct job *j)
{
	struct mf_error e;

	if (worker_open_dst(&j->w[0], &e) < 0) {
		job_error(j, NULL, NULL, 0, "%s", e.msg);
		j->fatal = 1;
		return;
	}
}

/* The other workers, as many as there are mailboxes with work, up to
 * --connections. A server that refuses some of them (a per-user limit)
 * leaves the job with fewer (conn_error). */
static void workers_spawn_rest(struct job *j)
{
	struct mf_error e;
	size_t nwork = 0;

	for (size_t i = 0; i < j->nmb; i++)
		nwork += j->mb[i].work > 0;
	for (unsigned i = 1; i < j->nw && i < nwork; i++) {
		struct worker *w = &j->w[i];

		w->phase = W_CONNECTING;
		if (worker_open_src(w, &e) < 0 || worker_open_dst(w, &e) < 0) {
			job_error(j, NULL, NULL, 0, "%s", e.msg);
			worker_stop(w, 0);
			w->dead = 1;
		}
	}
}

static int worker_active(const struct worker *w)
{
	return !w->dead && w->phase != W_DONE;
}

static void worker_stop(struct worker *w, int graceful)
{
	w->phase = W_DONE;
	w->reconnecting = 0;
	loop_timer_cancel(w->job->loop, &w->reconnect_timer);
	if (w->src_open && !w->src.closed) {
		if (graceful && w->src_ready)
			imap_client_logout(&w->src);
		else
			imap_client_close(&w->src);
	}
	if (w->dst_open && !w->dst.closed) {
		if (graceful && w->dst_ready)
			imap_client_logout(&w->dst);
		else
			imap_client_close(&w->dst);
	}
}

static void job_maybe_finish(struct job *j)
{
	int work_left = 0;

	if (j->finished)
		return;
	if (j->listed)
		for (size_t i = j->next_mb; i < j->nmb; i++)
			work_left |= j->mb[i].work > 0;
	for (unsigned i = 0; i < j->nw; i++) {
		struct worker *w = &j->w[i];

		if (!worker_active(w))
			continue;
		if (j->fatal)
			worker_stop(w, 0);
		else if (j->listed && !work_left && !w->mb && (j->dst_prepared || w->id != 0))
			worker_stop(w, 1);
		else if (j->listed && !work_left && !w->mb && !w->dst_open)
			worker_stop(w, 1); /* worker 0 when nothing needed the destination */
	}
	for (unsigned i = 0; i < j->nw; i++)
		if (worker_active(&j->w[i]))
			return;
	/* Nobody is left to work: what was not handed out is reported. */
	if (j->listed && !j->fatal)
		for (size_t i = j->next_mb; i < j->nmb; i++)
			if (j->mb[i].work > 0) {
				job_error(j, NULL, &j->mb[i], 0,
					  "not synced: no connection left to work on it");
				j->sum->mailboxes_failed++;
			}
	j->next_mb = j->nmb;
	j->finished = 1;
	job_commit(j);
	loop_timer_cancel(j->loop, &j->tick);
}

int job_migrate(struct loop *l, struct state *st, const struct job_opts *o,
		struct job_summary *sum, struct mf_error *err)
{
	struct job j;
	int rc;

	memset(&j, 0, sizeof(j));
	memset(sum, 0, sizeof(*sum));
	j.loop = l;
	j.st = st;
	j.o = o;
	j.sum = sum;
	j.stop_task.fn = job_stop_task;
	j.src_cb = src_cb;
	j.src_cb.untagged = src_untagged_any;
	j.dst_cb = (struct imap_client_cb){
		.ready = dst_ready,
		.error = conn_error,
		.untagged = dst_untagged_any,
		.lit_begin = dst_lit_begin,
		.lit_data = dst_lit_data,
		.lit_end = dst_lit_end,
		.writable = src_writable_kick,
	};
	if (state_job(st, o->job_key, &j.jobid, err) < 0)
		return err->code ? err->code : -EIO;
	j.nw = o->connections ? o->connections : 4;
	j.w = calloc(j.nw, sizeof(*j.w));
	if (!j.w) {
		mf_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < j.nw; i++)
		if (worker_init(&j, &j.w[i], i) < 0) {
			mf_err_set(err, -ENOMEM, "out of memory");
			return -ENOMEM;
		}
	test_fail_init(&j);
	j.t0 = loop_now_ms(l);
	j.last_commit = j.t0;
	if (worker_open_src(&j.w[0], err) < 0) {
		sum->fatal = 1;
		return err->code ? err->code : -EIO;
	}
	loop_timer_start(l, &j.tick, 250, on_tick);
	rc = loop_run(l);
	progress_clear(&j);
	job_commit(&j);
	if (o->dry_run)
		state_abort(st); /* a dry run leaves the state as it found it */
	if (rc < 0) {
		mf_err_set(err, rc, "event loop failed: %s", strerror(-rc));
		return rc;
	}
	sum->seconds = (double)(loop_now_ms(l) - j.t0) / 1000.0;
	sum->fatal = j.fatal && !j.listed;
	for (unsigned i = 0; i < j.nw; i++) {
		struct worker *w = &j.w[i];

		uint64_t in, out;

		sum->wire_in += w->wire_in;
		sum->wire_out += w->wire_out;
		if (w->src_open) {
			imap_client_wire(&w->src, &in, &out);
			sum->wire_in += in;
			sum->wire_out += out;
		}
		if (w->dst_open) {
			imap_client_wire(&w->dst, &in, &out);
			sum->wire_in += in;
			sum->wire_out += out;
		}
		if (w->src_open)
			imap_client_close(&w->src);
		if (w->dst_open)
			imap_client_close(&w->dst);
		for (unsigned k = 0; k < BATCH_SLOTS; k++)
			free(w->slot[k]);
		msghash_free(&w->mh);
		free(w->stl);
		free(w->chg);
		free(w->cpool);
		free(w->gone);
		free(w->seen);
		free(w->apply_cmd);
		free(w->rm);
		free(w->todo);
		free(w->retry);
		free(w->dd_uids);
	}
	for (size_t i = 0; i < j.nmb; i++) {
		free(j.mb[i].name);
		free(j.mb[i].dst_name);
		free(j.mb[i].display);
	}
	for (size_t i = 0; i < j.ndst; i++)
		free(j.dst_names[i]);
	free(j.dst_names);
	free(j.dst_special);
	free(j.mbx.slot);
	free(j.dstx.slot);
	free(j.van);
	free(j.probe_cmd);
	free(j.mb);
	free(j.create_cmd);
	free(j.w);
	return (j.nerrors || sum->failed || sum->mailboxes_failed || j.fatal) ? 1 : 0;
}
