/*
 * verify_src — the live account against a backup run (see verify_src.h).
 *
 * One IMAP connection (protocols/imap_client), one command at a time:
 * LIST, then per mailbox EXAMINE and UID FETCH 1:* (UID RFC822.SIZE FLAGS
 * [BODY.PEEK[]]). The answers of a mailbox are collected (a few dozen
 * bytes per message), sorted by UID and walked side by side with the
 * run's records of that mailbox (archive_uid_each, UID order). Keywords
 * are compared as sets (IMAP keywords are case-insensitive), system
 * flags as bits, \Recent never.
 *
 * Why not the IMAP source of the pipeline (source_imap.c): it streams the
 * bodies of what the state says is new; verify wants every UID's size and
 * flags, which is one FETCH without bodies, and no state.
 *
 * Not for: the archive's integrity (archive_verify), copying anything.
 */
#include "engine/sync/verify_src.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sync/job_int.h"
#include "store/archive.h"
#include "store/msghash.h"

struct vs_msg {
	uint32_t uid, flags;
	uint64_t size;
	size_t kw; /* normalized keywords at pool + kw */
	uint8_t hash[32];
	int has_hash;
};

struct vs_box {
	char *name;
	size_t len;
	int in_src, in_arc;
	uint32_t mbid, uidv;
};

struct vs {
	struct imap_client c;
	struct imap_cmd cmd;
	struct archive *a;
	uint32_t run;
	int full;
	int (*fn)(void *ctx, const struct verify_diff *d);
	void *ctx;
	struct verify_src_stats *st;
	struct vs_box *box;
	size_t nbox, cbox, cur;
	struct vs_msg *msg;
	size_t nmsg, cmsg, at; /* at: the merge's position in msg */
	char *pool;
	size_t npool, cpool;
	uint32_t uidv;
	struct msghash h;
	int hashing, pend;
	uint8_t pend_hash[32];
	int failed, done;
	struct mf_error err;
};

static int diff(struct vs *v, const struct vs_box *b, uint32_t uid, const char *what)
{
	struct verify_diff d = {b->name, b->len, uid, what};

	v->st->diffs++;
	return v->fn(v->ctx, &d);
}

/* "$B $a" → "$a $b": lower-cased, sorted, one space apart. */
static void kw_norm(const char *s, char *out, size_t cap)
{
	char tmp[AFMT_KW_MAX + 1], *tok[AFMT_KW_MAX / 2 + 1], *save = NULL;
	size_t n = 0, o = 0;

	snprintf(tmp, sizeof(tmp), "%s", s);
	for (char *p = tmp; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	for (char *t = strtok_r(tmp, " ", &save); t && n < sizeof(tok) / sizeof(tok[0]);
	     t = strtok_r(NULL, " ", &save))
		tok[n++] = t;
	for (size_t i = 1; i < n; i++) /* few keywords: insertion sort */
		for (size_t k = i; k && strcmp(tok[k - 1], tok[k]) > 0; k--) {
			char *x = tok[k];

			tok[k] = tok[k - 1];
			tok[k - 1] = x;
		}
	out[0] = '\0';
	for (size_t i = 0; i < n && o + strlen(tok[i]) + 2 < cap; i++)
		o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? " " : "", tok[i]);
}

static void flags_render(uint32_t f, const char *kw, char *out, size_t cap)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < ARCHIVE_F_COUNT; i++)
		if ((f & 1u << i) && o + 12 < cap)
			o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? " " : "",
			                      archive_flag_names[i]);
	if (*kw && o < cap)
		snprintf(out + o, cap - o, "%s%.200s", o ? " " : "", kw);
	if (!out[0])
		snprintf(out, cap, "(none)");
}

static void vs_fail(struct vs *v, const struct mf_error *e)
{
	if (!v->failed)
		v->err = *e;
	v->failed = 1;
	imap_client_abort(&v->c);
}

static struct vs_box *box_find(struct vs *v, const char *name, size_t len)
{
	for (size_t i = 0; i < v->nbox; i++)
		if (v->box[i].len == len && !memcmp(v->box[i].name, name, len))
			return &v->box[i];
	return NULL;
}

static struct vs_box *box_add(struct vs *v, const char *name, size_t len)
{
	struct vs_box *b = box_find(v, name, len);

	if (b)
		return b;
	if (grow((void **)&v->box, &v->cbox, v->nbox + 1, sizeof(*v->box)) < 0 ||
	    !(name = dupn(name, len)))
		return NULL;
	b = &v->box[v->nbox++];
	memset(b, 0, sizeof(*b));
	b->name = (char *)name;
	b->len = len;
	return b;
}

static int arc_box(void *ctx, const struct archive_mbox_info *mi)
{
	struct vs *v = ctx;
	struct vs_box *b = box_add(v, mi->name, mi->nlen);

	if (!b)
		return -ENOMEM;
	b->in_arc = 1;
	b->mbid = mi->mbid;
	b->uidv = mi->uidvalidity;
	return 0;
}

/* ---- the comparison of one mailbox ---- */

static int msg_cmp(const void *x, const void *y)
{
	const struct vs_msg *a = x, *b = y;

	return a->uid < b->uid ? -1 : a->uid > b->uid;
}

static int src_only_below(struct vs *v, const struct vs_box *b, uint32_t uid)
{
	int rc = 0;

	while (!rc && v->at < v->nmsg && v->msg[v->at].uid < uid)
		rc = diff(v, b, v->msg[v->at++].uid, "in the source, not in the archive");
	return rc;
}

struct walk {
	struct vs *v;
	const struct vs_box *b;
};

static int compare_one(struct vs *v, const struct vs_box *b, const struct vs_msg *s,
                       const struct archive_msgmeta *m)
{
	char akw[AFMT_KW_MAX + 1], why[700], sf[300], af[300];

	if (s->size != m->size) {
		snprintf(why, sizeof(why), "size differs: source %llu, archive %llu bytes",
		         (unsigned long long)s->size, (unsigned long long)m->size);
		return diff(v, b, s->uid, why);
	}
	if (s->has_hash && memcmp(s->hash, m->hash, 32))
		return diff(v, b, s->uid, "content differs from the archived message's hash");
	kw_norm(m->keywords, akw, sizeof(akw));
	if (s->flags != m->flags || strcmp(v->pool + s->kw, akw)) {
		flags_render(s->flags, v->pool + s->kw, sf, sizeof(sf));
		flags_render(m->flags, akw, af, sizeof(af));
		snprintf(why, sizeof(why), "flags differ: source %s, archive %s", sf, af);
		return diff(v, b, s->uid, why);
	}
	return 0;
}

static int walk_fn(void *ctx, uint32_t uid, const struct archive_msgmeta *m)
{
	struct walk *w = ctx;
	struct vs *v = w->v;
	int rc;

	if ((rc = src_only_below(v, w->b, uid)))
		return rc;
	if (v->at < v->nmsg && v->msg[v->at].uid == uid) {
		const struct vs_msg *s = &v->msg[v->at++];

		return m ? compare_one(v, w->b, s, m)
		         : diff(v, w->b, uid, "the archive's record of it is damaged");
	}
	return diff(v, w->b, uid, "in the archive's run, no longer in the source");
}

static int box_compare(struct vs *v, const struct vs_box *b)
{
	struct walk w = {v, b};
	struct mf_error e = {0};
	char why[160];
	int rc;

	qsort(v->msg, v->nmsg, sizeof(*v->msg), msg_cmp);
	v->at = 0;
	if (!b->in_arc) {
		if ((rc = diff(v, b, 0, "mailbox in the source, not in the archive's run")))
			return rc;
		return src_only_below(v, b, UINT32_MAX);
	}
	if (b->uidv != v->uidv) {
		snprintf(why, sizeof(why),
		         "UIDVALIDITY differs: source %u, archive %u (every UID is another "
		         "message)",
		         v->uidv, b->uidv);
		return diff(v, b, 0, why);
	}
	rc = archive_uid_each(v->a, v->run, b->mbid, walk_fn, &w, &e);
	if (rc < 0) {
		vs_fail(v, &e);
		return rc;
	}
	if (rc)
		return rc;
	return src_only_below(v, b, UINT32_MAX);
}

/* ---- IMAP ---- */

static void next_box(struct vs *v);

static void fetch_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct vs *v = c->ud;
	struct mf_error e;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		mf_err_set(&e, -EPROTO, "%s: UID FETCH failed: %.*s", imap_client_who(c),
		           (int)(r->text_len > 200 ? 200 : r->text_len), r->text);
		vs_fail(v, &e);
		return;
	}
	if (box_compare(v, &v->box[v->cur]) < 0)
		return;
	v->cur++;
	next_box(v);
}

static void examine_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct vs *v = c->ud;
	struct vs_box *b = &v->box[v->cur];
	char why[300];

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		snprintf(why, sizeof(why), "the source refused EXAMINE: %.*s",
		         (int)(r->text_len > 200 ? 200 : r->text_len), r->text);
		diff(v, b, 0, why);
		v->cur++;
		next_box(v);
		return;
	}
	v->st->mailboxes++;
	if (!c->exists) {
		fetch_done(c, cmd, r);
		return;
	}
	imap_cmd_begin(c, &v->cmd, fetch_done, NULL);
	imap_put(c, v->full ? "UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[])"
	                    : "UID FETCH 1:* (UID RFC822.SIZE FLAGS)");
	imap_cmd_end(c);
}

static void next_box(struct vs *v)
{
	struct imap_client *c = &v->c;

	while (v->cur < v->nbox && !v->box[v->cur].in_src) {
		const struct vs_box *b = &v->box[v->cur++];

		diff(v, b, 0, "mailbox in the archive's run, no longer in the source");
	}
	if (v->cur >= v->nbox) {
		v->done = 1;
		imap_client_logout(c);
		return;
	}
	v->nmsg = v->npool = 0;
	v->uidv = 0;
	imap_cmd_begin(c, &v->cmd, examine_done, NULL);
	imap_put(c, "EXAMINE ");
	imap_put_astring(c, v->box[v->cur].name, v->box[v->cur].len);
	imap_cmd_end(c);
}

static void list_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct vs *v = c->ud;
	struct mf_error e = {0};

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		mf_err_set(&e, -EPROTO, "%s: LIST failed: %.*s", imap_client_who(c),
		           (int)(r->text_len > 200 ? 200 : r->text_len), r->text);
		vs_fail(v, &e);
		return;
	}
	next_box(v);
}

static void on_ready(struct imap_client *c)
{
	struct vs *v = c->ud;

	imap_cmd_begin(c, &v->cmd, list_done, NULL);
	imap_put(c, "LIST \"\" \"*\"");
	imap_cmd_end(c);
}

static void on_error(struct imap_client *c, const struct mf_error *err)
{
	struct vs *v = c->ud;

	if (v->done)
		return; /* the LOGOUT's end */
	if (!v->failed)
		v->err = *err;
	v->failed = 1;
}

static int take_list(struct vs *v, const struct imap_node *a)
{
	const struct imap_node *attrs = a->next, *nm = attrs->next->next;
	struct vs_box *b;
	const char *name;
	size_t len;

	if (node_str(nm, &name, &len) < 0 || !len)
		return 0;
	for (const struct imap_node *f = attrs->child; f; f = f->next)
		if (imap_node_is(f, "\\Noselect") || imap_node_is(f, "\\NonExistent"))
			return 0;
	if (!(b = box_add(v, name, len)))
		return -ENOMEM;
	b->in_src = 1;
	return 0;
}

static int take_fetch(struct vs *v, const struct imap_resp *r)
{
	char fl[STATE_FLAGS_MAX + 1], kw[AFMT_KW_MAX + 1];
	struct archive_msgmeta m;
	struct fetch_meta fm;
	struct vs_msg *s;
	size_t n, kn;

	fetch_meta(r, NULL, &fm);
	if (!fm.uid) {
		v->pend = 0;
		return 0; /* an unsolicited flag update without UID */
	}
	n = fm.flags ? flags_string(fm.flags, fl, sizeof(fl), NULL) : 0;
	fl[n] = '\0';
	sink_archive_flags(fl, n, &m);
	kw_norm(m.keywords, kw, sizeof(kw));
	kn = strlen(kw) + 1;
	if (grow((void **)&v->msg, &v->cmsg, v->nmsg + 1, sizeof(*v->msg)) < 0 ||
	    grow((void **)&v->pool, &v->cpool, v->npool + kn, 1) < 0)
		return -ENOMEM;
	s = &v->msg[v->nmsg++];
	memset(s, 0, sizeof(*s));
	s->uid = fm.uid;
	s->flags = m.flags;
	s->size = fm.has_size ? fm.size : UINT64_MAX;
	s->kw = v->npool;
	memcpy(v->pool + v->npool, kw, kn);
	v->npool += kn;
	if (v->pend) {
		memcpy(s->hash, v->pend_hash, 32);
		s->has_hash = 1;
		v->pend = 0;
	}
	v->st->messages++;
	return 0;
}

static int on_untagged(struct imap_client *c, const struct imap_resp *r)
{
	struct vs *v = c->ud;
	const struct imap_node *a = r->first, *uv;
	int rc = 0;

	if (r->status == IMAP_ST_OK && (uv = imap_resp_code(r, "UIDVALIDITY")))
		imap_node_u32(uv, &v->uidv);
	if (!a)
		return 0;
	if (imap_node_is(a, "LIST") && a->next && a->next->next && a->next->next->next)
		rc = take_list(v, a);
	else if (a->next && imap_node_is(a->next, "FETCH") && a->next->next &&
	         a->next->next->type == IMAP_NODE_LIST && v->cur < v->nbox)
		rc = take_fetch(v, r);
	if (rc < 0) {
		struct mf_error e;

		mf_err_set(&e, rc, "out of memory");
		vs_fail(v, &e);
	}
	return rc < 0 ? rc : 0;
}

static int on_lit_begin(struct imap_client *c, const struct imap_resp *r,
                        const struct imap_node *key, uint64_t size)
{
	struct vs *v = c->ud;

	(void)r;
	(void)size;
	v->hashing = v->full && key && imap_node_is(key, "BODY[]");
	if (v->hashing)
		msghash_begin(&v->h);
	return IMAP_LIT_STREAM;
}

static ssize_t on_lit_data(struct imap_client *c, const uint8_t *p, size_t n)
{
	struct vs *v = c->ud;

	if (v->hashing)
		msghash_update(&v->h, p, n);
	return (ssize_t)n;
}

static int on_lit_end(struct imap_client *c)
{
	struct vs *v = c->ud;

	if (v->hashing) {
		msghash_end(&v->h, v->pend_hash, NULL);
		v->pend = 1;
		v->st->bodies++;
	}
	v->hashing = 0;
	return 0;
}

static const struct imap_client_cb vs_cb = {
    .ready = on_ready,
    .error = on_error,
    .untagged = on_untagged,
    .lit_begin = on_lit_begin,
    .lit_data = on_lit_data,
    .lit_end = on_lit_end,
};

int verify_src_run(struct loop *l, const struct imap_endpoint *ep, struct archive *a, uint32_t run,
                   int full, int (*fn)(void *ctx, const struct verify_diff *d), void *ctx,
                   struct verify_src_stats *st, struct mf_error *err)
{
	struct vs *v = calloc(1, sizeof(*v));
	int rc;

	memset(st, 0, sizeof(*st));
	if (!v || msghash_init(&v->h) < 0) {
		free(v);
		mf_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	v->a = a;
	v->run = run;
	v->full = full;
	v->fn = fn;
	v->ctx = ctx;
	v->st = st;
	rc = archive_mbox_each(a, run, arc_box, v, err);
	if (rc >= 0 && (rc = imap_client_open(&v->c, l, ep, &vs_cb, v, err)) >= 0) {
		if ((rc = loop_run(l)) < 0)
			mf_err_set(err, rc, "event loop failed: %s", strerror(-rc));
		imap_client_close(&v->c);
		if (rc >= 0 && (v->failed || !v->done)) {
			*err = v->err;
			if (!v->failed)
				mf_err_set(err, -EPROTO, "%s: the connection ended early",
				           ep->host);
			rc = err->code ? err->code : -EPROTO;
		}
	}
	msghash_free(&v->h);
	for (size_t i = 0; i < v->nbox; i++)
		free(v->box[i].name);
	free(v->box);
	free(v->msg);
	free(v->pool);
	free(v);
	return rc < 0 ? rc : 0;
}
