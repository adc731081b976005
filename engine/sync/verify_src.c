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
 * Folder options: a mailbox is named as backup names it (display_name:
 * the personal namespace prefix NAMESPACE gives taken off, so "Sent" and
 * not "INBOX/Sent" on Courier; modified UTF-7 decoded; the server's
 * separator shown as '/') and kept or left out by the same test
 * (folder_selected_by), once LIST has told the separator. The archive
 * keeps the wire name, prefix and all (sink_archive.c), and so do the
 * difference lines.
 *
 * A POP3 source: one pop3_client, UIDL and LIST pipelined, then (with
 * full) RETR of every message the state knows; the listing fills the same
 * per-mailbox array as a FETCH does, keyed by the id the backup's state
 * gave each unique-id, and INBOX is compared as an IMAP mailbox is.
 *
 * Not for: the archive's integrity (archive_verify), copying anything.
 */
#include "engine/sync/verify_src.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sync/source_pop3_int.h"
#include "store/archive.h"
#include "store/msghash.h"
#include "store/state.h"

struct vs_msg {
	uint32_t uid, flags;
	uint32_t msgno; /* a POP3 source's message number */
	uint64_t size;
	size_t kw; /* normalized keywords at pool + kw */
	uint8_t hash[32];
	int has_hash;
};

struct vs_box {
	char *name;
	size_t len;
	int in_src, in_arc;
	int out;  /* left out by the folder options */
	char sep; /* the source's hierarchy separator (LIST), 0 unknown */
	uint32_t mbid, uidv;
};

struct vs {
	struct imap_client c;
	struct imap_cmd cmd, ns_cmd;
	const struct verify_src_in *in;
	struct name_rules rules;
	char sep;            /* the first separator LIST named */
	char ns[JOB_NS_MAX]; /* the personal namespace prefix (RFC 2342) */
	size_t nslen;
	/* a POP3 source */
	struct pop3_client p;
	struct pop3_cmd uidl_cmd, list_cmd, *retr;
	unsigned listing, retr_left;
	uint64_t got; /* the body being read: bytes, the last two held back */
	uint8_t tail[2];
	unsigned ntail;
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

/* The folder options, as backup applies them (plan.c, names.c). */
static void boxes_select(struct vs *v)
{
	char disp[STATE_NAME_MAX * 2];

	for (size_t i = 0; i < v->nbox; i++) {
		struct vs_box *b = &v->box[i];

		display_name(v->ns, v->nslen, b->name, b->len, b->sep ? b->sep : v->sep, disp,
		             sizeof(disp));
		b->out = !folder_selected_by(v->in->o, &v->rules, disp);
		v->st->filtered += (uint64_t)b->out;
	}
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

	while (v->cur < v->nbox && (!v->box[v->cur].in_src || v->box[v->cur].out)) {
		const struct vs_box *b = &v->box[v->cur++];

		if (!b->out)
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
	boxes_select(v);
	next_box(v);
}

/* NAMESPACE first, as backup asks it (plan.c list_begin), pipelined with
 * the LIST: its answer is in before the LIST's; a refused one (ns_done)
 * leaves no prefix. */
static void on_ready(struct imap_client *c)
{
	struct vs *v = c->ud;

	if (c->caps & IMAP_CAP_NAMESPACE) {
		imap_cmd_begin(c, &v->ns_cmd, ns_done, NULL);
		imap_put(c, "NAMESPACE");
		imap_cmd_end(c);
	}
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
	const struct imap_node *attrs = a->next, *sep = attrs->next, *nm = sep->next;
	char c = sep->type == IMAP_NODE_STRING && sep->len == 1 ? sep->s[0] : 0;
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
	b->sep = c;
	if (!v->sep)
		v->sep = c;
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
	if (imap_node_is(a, "LIST") && a->next && a->next->next && a->next->next->next) {
		rc = take_list(v, a);
	} else if (imap_node_is(a, "NAMESPACE") && !v->nslen) {
		char sep;

		v->nslen = ns_personal(imap_client_who(c), a, v->ns, &sep);
	} else if (a->next && imap_node_is(a->next, "FETCH") && a->next->next &&
	           a->next->next->type == IMAP_NODE_LIST && v->cur < v->nbox) {
		rc = take_fetch(v, r);
	}
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
	v->hashing = v->full && key && imap_node_is(key, "BODY[]");
	if (v->hashing) {
		msghash_begin(&v->h);
		return IMAP_LIT_STREAM;
	}
	/* a mailbox name LIST sends as a literal (8-bit: a server in UTF-8
	 * mode, or a broken one) is kept in the tree, as backup keeps it
	 * (lit_checked_inline); streamed, it would leave the name out */
	return size <= JOB_OTHER_LITERAL_MAX ? IMAP_LIT_INLINE : IMAP_LIT_STREAM;
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

/* ---- POP3 ---- */

static void p3_fail(struct vs *v, const struct mf_error *e)
{
	if (!v->failed)
		v->err = *e;
	v->failed = 1;
	pop3_client_abort(&v->p);
}

/* Everything listed (and read): INBOX compared, then the run's other
 * mailboxes (a POP3 backup has none) reported as not in the source. */
static void p3_finish(struct vs *v)
{
	for (size_t i = 0; i < v->nbox; i++) {
		struct vs_box *b = &v->box[i];

		if (b->out)
			continue;
		if (b->in_src) {
			v->uidv = POP3SRC_UIDV; /* POP3 has none: backup's fixed one */
			if (box_compare(v, b) < 0)
				return;
		} else {
			diff(v, b, 0, "mailbox in the archive's run; a POP3 source has INBOX only");
		}
	}
	v->done = 1;
	pop3_client_quit(&v->p, NULL, NULL);
}

static void p3_retr_done(struct pop3_client *c, struct pop3_cmd *cmd, const struct pop3_reply *r)
{
	struct vs *v = c->ud;
	struct vs_msg *s = &v->msg[cmd - v->retr];
	char why[300];

	if (!r->ok) {
		snprintf(why, sizeof(why), "RETR refused: %.*s",
		         (int)(r->text_len > 200 ? 200 : r->text_len), r->text);
		/* compared by LIST's size alone, below */
		if (diff(v, &v->box[v->cur], s->uid, why) < 0)
			return;
	}
	if (!--v->retr_left)
		p3_finish(v);
}

/* The listing in: one vs_msg per message whose unique-id the backup's
 * state knows (by that id), one difference per message it does not. */
static int p3_take_listing(struct vs *v, struct vs_box *b)
{
	const struct verify_src_in *in = v->in;
	uint32_t n = pop3_msg_count(&v->p), mbid = 0;
	struct mf_error e = {0};
	char why[200];
	int rc, have_mb;

	have_mb = state_mbox_find(in->st, in->job, "INBOX", 5, &mbid, &e) == 0;
	for (uint32_t msgno = 1; msgno <= n; msgno++) {
		const struct pop3_msg *m = pop3_msg_get(&v->p, msgno);
		uint32_t id = 0;
		struct vs_msg *s;

		if (!m)
			continue; /* deleted, or never listed */
		if (!m->uidl[0]) {
			snprintf(why, sizeof(why), "message %u has no unique-id (UIDL)", msgno);
			if ((rc = diff(v, b, 0, why)))
				return rc;
			continue;
		}
		rc = have_mb
		         ? state_uidl_find(in->st, in->job, mbid, m->uidl, strlen(m->uidl), &id, &e)
		         : -ENOENT;
		if (rc == -ENOENT) {
			snprintf(why, sizeof(why), "UIDL %s: in the source, not in the archive",
			         m->uidl);
			if ((rc = diff(v, b, 0, why)))
				return rc;
			v->st->messages++;
			continue;
		}
		if (rc < 0) {
			p3_fail(v, &e);
			return rc;
		}
		if (grow((void **)&v->msg, &v->cmsg, v->nmsg + 1, sizeof(*v->msg)) < 0 ||
		    grow((void **)&v->pool, &v->cpool, v->npool + 1, 1) < 0)
			return -ENOMEM;
		s = &v->msg[v->nmsg++];
		memset(s, 0, sizeof(*s));
		s->uid = id;
		s->msgno = msgno;
		s->size = m->has_size ? m->size : UINT64_MAX;
		s->kw = v->npool;
		v->pool[v->npool++] = '\0';
		v->st->messages++;
	}
	return 0;
}

static void p3_listing_done(struct pop3_client *c, struct pop3_cmd *cmd, const struct pop3_reply *r)
{
	struct vs *v = c->ud;
	struct vs_box *b = box_find(v, "INBOX", 5);
	struct mf_error e = {0};
	int rc;

	if (!r->ok) {
		mf_err_set(&e, -EPROTO, "%s: %s failed: %.*s", pop3_client_who(c),
		           cmd == &v->uidl_cmd ? "UIDL" : "LIST",
		           (int)(r->text_len > 200 ? 200 : r->text_len), r->text);
		p3_fail(v, &e);
		return;
	}
	if (--v->listing)
		return;
	boxes_select(v);
	if (b->out) {
		p3_finish(v); /* --folder/--exclude leave INBOX out: nothing to compare */
		return;
	}
	v->st->mailboxes++;
	v->cur = (size_t)(b - v->box);
	if ((rc = p3_take_listing(v, b)) < 0) {
		if (rc == -ENOMEM) {
			mf_err_set(&e, rc, "out of memory");
			p3_fail(v, &e);
		}
		return;
	}
	if (!v->in->full || !v->nmsg) {
		p3_finish(v);
		return;
	}
	if (!(v->retr = calloc(v->nmsg, sizeof(*v->retr)))) {
		mf_err_set(&e, -ENOMEM, "out of memory");
		p3_fail(v, &e);
		return;
	}
	v->retr_left = (unsigned)v->nmsg;
	for (size_t i = 0; i < v->nmsg; i++)
		pop3_retr(c, &v->retr[i], v->msg[i].msgno, p3_retr_done, v);
}

static void p3_ready(struct pop3_client *c)
{
	struct vs *v = c->ud;

	v->listing = 2; /* pipelined with PIPELINING: one round trip for both */
	pop3_uidl_all(c, &v->uidl_cmd, p3_listing_done, v);
	pop3_list_all(c, &v->list_cmd, p3_listing_done, v);
}

static void p3_error(struct pop3_client *c, const struct mf_error *err)
{
	struct vs *v = c->ud;

	if (v->done)
		return; /* the QUIT's end */
	if (!v->failed)
		v->err = *err;
	v->failed = 1;
}

static int p3_msg_begin(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno, uint64_t size)
{
	struct vs *v = c->ud;

	(void)cmd;
	(void)msgno;
	(void)size;
	msghash_begin(&v->h);
	v->got = 0;
	v->ntail = 0;
	return 0;
}

/* Hashes all but the last two bytes read so far (held in tail). */
static int p3_msg_data(struct pop3_client *c, struct pop3_cmd *cmd, const char *p, size_t n)
{
	struct vs *v = c->ud;

	(void)cmd;
	v->got += n;
	if (n >= 2) {
		msghash_update(&v->h, v->tail, v->ntail);
		msghash_update(&v->h, (const uint8_t *)p, n - 2);
		memcpy(v->tail, p + n - 2, 2);
		v->ntail = 2;
	} else if (n) {
		if (v->ntail == 2) {
			msghash_update(&v->h, v->tail, 1);
			v->tail[0] = v->tail[1];
			v->ntail = 1;
		}
		v->tail[v->ntail++] = p[0];
	}
	return 0;
}

/* The body is what backup stored: all of it, but for a CRLF the server
 * added before its "." (got two bytes over LIST's size, source_pop3.c). */
static int p3_msg_end(struct pop3_client *c, struct pop3_cmd *cmd)
{
	struct vs *v = c->ud;
	struct vs_msg *s = &v->msg[cmd - v->retr];

	if (s->size != UINT64_MAX && v->got == s->size + 2 && v->ntail == 2 &&
	    !memcmp(v->tail, "\r\n", 2)) {
		v->got -= 2;
	} else {
		msghash_update(&v->h, v->tail, v->ntail);
	}
	msghash_end(&v->h, s->hash, NULL);
	s->has_hash = 1;
	s->size = v->got;
	v->st->bodies++;
	return 0;
}

static const struct pop3_client_cb p3_cb = {
    .ready = p3_ready,
    .error = p3_error,
    .msg_begin = p3_msg_begin,
    .msg_data = p3_msg_data,
    .msg_end = p3_msg_end,
};

/* Connects and runs the loop until the comparison is done or failed. */
static int vs_session(struct loop *l, struct vs *v, struct mf_error *err)
{
	const struct job_opts *o = v->in->o;
	const char *host = o->src_pop3 ? o->src_pop3_ep.host : o->src.host;
	struct vs_box *b;
	int rc;

	if (o->src_pop3) {
		if (!(b = box_add(v, "INBOX", 5))) {
			mf_err_set(err, -ENOMEM, "out of memory");
			return -ENOMEM;
		}
		b->in_src = 1;
		rc = pop3_client_open(&v->p, l, &o->src_pop3_ep, &p3_cb, v, err);
	} else {
		rc = imap_client_open(&v->c, l, &o->src, &vs_cb, v, err);
	}
	if (rc < 0)
		return rc;
	if ((rc = loop_run(l)) < 0)
		mf_err_set(err, rc, "event loop failed: %s", strerror(-rc));
	if (o->src_pop3)
		pop3_client_close(&v->p);
	else
		imap_client_close(&v->c);
	if (rc >= 0 && (v->failed || !v->done)) {
		*err = v->err;
		if (!v->failed)
			mf_err_set(err, -EPROTO, "%s: the connection ended early", host);
		rc = err->code ? err->code : -EPROTO;
	}
	return rc;
}

int verify_src_run(struct loop *l, const struct verify_src_in *in,
                   int (*fn)(void *ctx, const struct verify_diff *d), void *ctx,
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
	v->in = in;
	v->a = in->a;
	v->run = in->run;
	v->full = in->full;
	v->fn = fn;
	v->ctx = ctx;
	v->st = st;
	if ((rc = rules_compile(&v->rules, in->o, err)) == 0) {
		rc = archive_mbox_each(in->a, in->run, arc_box, v, err);
		if (rc >= 0)
			rc = vs_session(l, v, err);
		rules_free(&v->rules);
	}
	msghash_free(&v->h);
	for (size_t i = 0; i < v->nbox; i++)
		free(v->box[i].name);
	free(v->box);
	free(v->msg);
	free(v->pool);
	free(v->retr);
	free(v);
	return rc < 0 ? rc : 0;
}
