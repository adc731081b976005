/*
 * kwdefer — keywords stored after a folder's APPENDs (see kwdefer.h for
 * why and for the exactly-once rule). One list per worker: the messages
 * of its current pass whose keywords wait, with their destination UIDs;
 * flushed by mailbox_finish before the pass's record is written.
 *
 * Not for: deciding what is copied (copy.c), settling (settle.c).
 */
#include "engine/sync/job_int.h"

#include <signal.h>
#include <unistd.h>

struct kw_ent {
	uint32_t uid, dst_uid;
	size_t off; /* its keywords in the pool */
	uint16_t len;
};

/* One command of the flush; the entries a UID STORE carries. */
struct kw_op {
	struct imap_cmd cmd; /* first: the op is found from its command */
	size_t first, end;
};

struct kwdefer {
	struct kw_ent *e;
	size_t n, cap;
	char *pool;
	size_t pool_len, pool_cap;
	struct kw_op *op;
	size_t cop;
	unsigned pending; /* commands of the flush not answered yet */
	int flushing;
};

int kwdefer_on(const struct worker *w)
{
	unsigned caps = w->dst.caps;

	return w->sink.ops == &sink_imap_ops && !w->job->o->archive && (caps & IMAP_CAP_UIDPLUS) &&
	       !(caps & IMAP_CAP_MULTIAPPEND);
}

/* The next space-separated flag of f[*i..n): its start and length. */
static int flag_next(const char *f, size_t n, size_t *i, const char **s, size_t *len)
{
	while (*i < n && f[*i] == ' ')
		(*i)++;
	if (*i >= n)
		return 0;
	*s = f + *i;
	while (*i < n && f[*i] != ' ')
		(*i)++;
	*len = (size_t)(f + *i - *s);
	return 1;
}

int kwdefer_has_keywords(const char *flags, size_t n)
{
	const char *s;
	size_t i = 0, len;

	while (flag_next(flags, n, &i, &s, &len))
		if (s[0] != '\\')
			return 1;
	return 0;
}

/* The flags of one kind (system: 1, keywords: 0) into out. */
static size_t flags_pick(const char *flags, size_t n, int system, char *out, size_t cap)
{
	const char *s;
	size_t i = 0, len, o = 0;

	while (flag_next(flags, n, &i, &s, &len)) {
		if ((s[0] == '\\') != system || o + len + 2 > cap)
			continue;
		if (o)
			out[o++] = ' ';
		memcpy(out + o, s, len);
		o += len;
	}
	if (cap)
		out[o] = '\0';
	return o;
}

size_t kwdefer_system_flags(const char *flags, size_t n, char *out, size_t cap)
{
	return flags_pick(flags, n, 1, out, cap);
}

static struct kwdefer *kw_get(struct worker *w)
{
	if (!w->kw)
		w->kw = calloc(1, sizeof(*w->kw));
	return w->kw;
}

int kwdefer_note(struct worker *w, uint32_t uid, uint32_t dst_uid, const char *flags, size_t n)
{
	struct kwdefer *k;
	char kw[STATE_FLAGS_MAX];
	size_t len;

	if (!kwdefer_on(w) || !kwdefer_has_keywords(flags, n))
		return 0;
	if (!dst_uid) {
		/* UIDPLUS offered, APPENDUID not sent: nothing to store them by */
		mf_log(MF_LOG_WARN,
		       "%s mailbox \"%s\" UID %u: no APPENDUID; its keywords are not "
		       "stored on the destination",
		       imap_client_who(&w->dst), w->mb->display, uid);
		return 0;
	}
	len = flags_pick(flags, n, 0, kw, sizeof(kw));
	if (!(k = kw_get(w)) || grow((void **)&k->e, &k->cap, k->n + 1, sizeof(*k->e)) < 0 ||
	    grow((void **)&k->pool, &k->pool_cap, k->pool_len + len, 1) < 0) {
		w->mb->kw_left++; /* an intent: the next run stores them */
		return 1;
	}
	memcpy(k->pool + k->pool_len, kw, len);
	k->e[k->n++] = (struct kw_ent){uid, dst_uid, k->pool_len, (uint16_t)len};
	k->pool_len += len;
	return 1;
}

void kwdefer_reset(struct worker *w)
{
	if (!w->kw)
		return;
	w->kw->n = w->kw->pool_len = 0;
	w->kw->pending = 0;
	w->kw->flushing = 0;
}

void kwdefer_free(struct worker *w)
{
	if (!w->kw)
		return;
	free(w->kw->e);
	free(w->kw->pool);
	free(w->kw->op);
	free(w->kw);
	w->kw = NULL;
}

/* By keyword set, then destination UID: one STORE per set, UID ranges. */
static int kw_cmp(const void *a, const void *b, void *pool)
{
	const struct kw_ent *x = a, *y = b;
	const char *p = pool;
	int c;

	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	if ((c = memcmp(p + x->off, p + y->off, x->len)))
		return c;
	return x->dst_uid < y->dst_uid ? -1 : x->dst_uid > y->dst_uid;
}

static int kw_same(const struct kwdefer *k, size_t a, size_t b)
{
	return k->e[a].len == k->e[b].len &&
	       !memcmp(k->pool + k->e[a].off, k->pool + k->e[b].off, k->e[a].len);
}

static void kw_answered(struct worker *w)
{
	struct kwdefer *k = w->kw;

	if (--k->pending)
		return;
	k->n = k->pool_len = 0;
	k->flushing = 0;
	mailbox_finish(w);
}

static void kw_store_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;
	struct job *j = w->job;
	struct kwdefer *k = w->kw;
	const struct kw_op *op = (const struct kw_op *)cmd;
	size_t cnt = op->end - op->first;
	struct mf_error e;

	if (r->status != IMAP_ST_OK) {
		job_error(j, imap_client_who(c), w->mb, k->e[op->first].uid,
		          "keywords of %zu messages not stored: %.*s; stored next run", cnt,
		          (int)r->text_len, r->text);
		w->mb->kw_left += cnt;
		w->mb->nfailed += cnt;
		j->sum->failed += cnt;
		kw_answered(w);
		return;
	}
	if (test_fail(j, "kw_flush")) {
		/* TEST ONLY (t_courier_sync): a crash with this STORE applied
		 * on the server and not recorded here */
		kill(getpid(), SIGKILL);
	}
	for (size_t i = op->first; i < op->end; i++) {
		struct state_msg_key key = {j->jobid, w->mb->mbid, w->uidvalidity, k->e[i].uid};
		struct state_msg m;

		if (state_msg_get(j->st, &key, &m, &e) < 0 ||
		    (m.status = STATE_MSG_DONE, scope_msg_put(j, &key, &m, &e) < 0)) {
			job_error(j, NULL, w->mb, k->e[i].uid, "%s", e.msg);
			w->mb->kw_left++;
		}
	}
	j->state_dirty = 1;
	kw_answered(w);
}

static void kw_other_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct worker *w = c->ud;

	if (cmd == &w->kw->op[0].cmd && r->status != IMAP_ST_OK)
		job_error(w->job, imap_client_who(c), w->mb, 0,
		          "cannot select the destination mailbox to store keywords: %.*s",
		          (int)r->text_len, r->text);
	kw_answered(w);
}

static struct imap_cmd *kw_cmd(struct kwdefer *k, imap_done_fn done, struct worker *w)
{
	struct kw_op *op = &k->op[k->pending++];

	imap_cmd_begin(&w->dst, &op->cmd, done, op);
	return &op->cmd;
}

/* UID STOREs of the entries from *x in the group ending at g, each under
 * KWDEFER_CMD_MAX bytes: consecutive UIDs as ranges. */
static void kw_stores(struct worker *w, size_t *x, size_t g)
{
	struct kwdefer *k = w->kw;
	struct imap_client *d = &w->dst;
	size_t kwlen = k->e[*x].len,
	       budget = KWDEFER_CMD_MAX > kwlen + 104 ? KWDEFER_CMD_MAX - kwlen - 40 : 64;

	while (*x < g) {
		char set[KWDEFER_CMD_MAX + 32];
		size_t sl = 0, first = *x;
		struct kw_op *op;

		while (*x < g) {
			uint32_t lo = k->e[*x].dst_uid, hi = lo;
			size_t y = *x + 1;
			char rg[24];
			int rl;

			while (y < g && (k->e[y].dst_uid == hi + 1 || k->e[y].dst_uid == hi))
				hi = k->e[y++].dst_uid;
			rl = lo == hi ? snprintf(rg, sizeof(rg), "%u", lo)
			              : snprintf(rg, sizeof(rg), "%u:%u", lo, hi);
			if (sl && sl + 1 + (size_t)rl > budget)
				break;
			if (sl)
				set[sl++] = ',';
			memcpy(set + sl, rg, (size_t)rl);
			sl += (size_t)rl;
			*x = y;
		}
		op = (struct kw_op *)kw_cmd(k, kw_store_done, w);
		op->first = first;
		op->end = *x;
		imap_putf(d, "UID STORE %.*s +FLAGS.SILENT (%.*s)", (int)sl, set,
		          (int)k->e[first].len, k->pool + k->e[first].off);
		imap_cmd_end(d);
	}
}

int kwdefer_flush(struct worker *w)
{
	struct kwdefer *k = w->kw;
	struct imap_client *d = &w->dst;

	if (!k || !k->n)
		return 0;
	if (k->flushing)
		return 1;
	if (w->mb->failed || d->closed ||
	    grow((void **)&k->op, &k->cop, k->n + 3, sizeof(*k->op)) < 0) {
		/* left as intents with their destination UIDs: the next run
		 * settles them and stores the keywords */
		w->mb->kw_left += k->n;
		k->n = k->pool_len = 0;
		return 0;
	}
	qsort_r(k->e, k->n, sizeof(*k->e), kw_cmp, k->pool);
	k->flushing = 1;
	k->pending = 0;
	kw_cmd(k, kw_other_done, w);
	imap_put(d, "SELECT ");
	imap_put_astring(d, w->mb->dst_name, strlen(w->mb->dst_name));
	imap_cmd_end(d);
	for (size_t i = 0; i < k->n;) {
		size_t g = i + 1;

		while (g < k->n && kw_same(k, i, g))
			g++;
		kw_stores(w, &i, g);
	}
	/* Read-only, then closed: CLOSE after EXAMINE expunges nothing, and
	 * Courier appends into no folder that is selected read-only. */
	kw_cmd(k, kw_other_done, w);
	imap_put(d, "EXAMINE ");
	imap_put_astring(d, w->mb->dst_name, strlen(w->mb->dst_name));
	imap_cmd_end(d);
	kw_cmd(k, kw_other_done, w);
	imap_put(d, "CLOSE");
	imap_cmd_end(d);
	mf_log(MF_LOG_DEBUG, "mailbox \"%s\": keywords of %zu messages stored in %u commands",
	       w->mb->display, k->n, k->pending - 3);
	return 1;
}
