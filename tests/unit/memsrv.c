/*
 * memsrv — the in-memory IMAP peer of the job logic's unit tests (see
 * memsrv.h): mailboxes in memory, the commands the sync layer writes run
 * against them, the answers routed to the commands' consumers through the
 * real parser, and a sink that stores into the destination's mailboxes.
 */
#include "tests/unit/memsrv.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <unistd.h>

/* ---- the mailboxes -------------------------------------------------------- */

struct ms_box *ms_box(struct ms_side *s, const char *name, uint32_t uidvalidity)
{
	for (size_t i = 0; i < s->nbox; i++)
		if (!strcmp(s->box[i].name, name))
			return &s->box[i];
	if (s->nbox == MS_BOXES)
		return NULL;
	memset(&s->box[s->nbox], 0, sizeof(s->box[0]));
	snprintf(s->box[s->nbox].name, sizeof(s->box[0].name), "%s", name);
	s->box[s->nbox].uidvalidity = uidvalidity;
	s->box[s->nbox].uidnext = 1;
	s->box[s->nbox].modseq = 1;
	return &s->box[s->nbox++];
}

struct ms_msg *ms_add(struct ms_box *b, const char *body, const char *flags)
{
	struct ms_msg *m;

	if (b->n == MS_MSGS)
		return NULL;
	m = &b->m[b->n++];
	memset(m, 0, sizeof(*m));
	m->uid = b->uidnext++;
	m->len = strlen(body) < sizeof(m->body) ? strlen(body) : sizeof(m->body) - 1;
	memcpy(m->body, body, m->len);
	snprintf(m->flags, sizeof(m->flags), "%s", flags ? flags : "");
	m->modseq = ++b->modseq;
	return m;
}

struct ms_msg *ms_find(struct ms_box *b, uint32_t uid)
{
	for (size_t i = 0; i < b->n; i++)
		if (b->m[i].uid == uid)
			return &b->m[i];
	return NULL;
}

unsigned ms_count_body(const struct ms_box *b, const char *body)
{
	unsigned n = 0;

	for (size_t i = 0; i < b->n; i++)
		n += b->m[i].len == strlen(body) && !memcmp(b->m[i].body, body, b->m[i].len);
	return n;
}

static struct ms_box *box_named(struct ms_side *s, const char *name)
{
	for (size_t i = 0; i < s->nbox; i++)
		if (!strcmp(s->box[i].name, name))
			return &s->box[i];
	return NULL;
}

/* ---- answers, routed as imap_client routes them ------------------------- */

static void out_add(struct ms_side *s, const char *p, size_t n)
{
	if (s->out_len + n > s->out_cap) {
		size_t cap = (s->out_len + n) * 2;
		char *o = realloc(s->out, cap);

		if (!o)
			abort();
		s->out = o;
		s->out_cap = cap;
	}
	memcpy(s->out + s->out_len, p, n);
	s->out_len += n;
}

static void outf(struct ms_side *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(struct ms_side *s, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		out_add(s, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static void unlink_cmd(struct imap_client *c, struct imap_cmd *cmd)
{
	struct imap_cmd *p = NULL, *it;

	for (it = c->head; it && it != cmd; it = it->next)
		p = it;
	if (!it)
		return;
	if (p)
		p->next = it->next;
	else
		c->head = it->next;
	if (c->tail == it)
		c->tail = p;
	p = NULL;
	for (it = c->chead; it && it != cmd; it = it->cnext)
		p = it;
	if (it) {
		if (p)
			p->cnext = it->cnext;
		else
			c->chead = it->cnext;
		if (c->ctail == it)
			c->ctail = p;
	}
	if (c->lit_cmd == cmd)
		c->lit_cmd = NULL;
	c->inflight--;
}

static int on_resp(void *ctx, const struct imap_resp *r)
{
	struct ms_side *s = ctx;
	struct imap_client *c = s->c;

	if (r->kind == IMAP_RESP_TAGGED) {
		uint32_t tag = r->tag_len > 1 ? (uint32_t)strtoul(r->tag + 1, NULL, 10) : 0;
		struct imap_cmd *cmd;

		for (cmd = c->head; cmd && cmd->tag != tag; cmd = cmd->next)
			;
		if (!cmd)
			return -EPROTO;
		unlink_cmd(c, cmd);
		if (cmd->done)
			cmd->done(c, cmd, r);
		return 0;
	}
	if (r->kind != IMAP_RESP_UNTAGGED || r->status == IMAP_ST_BYE)
		return 0;
	if (r->status == IMAP_ST_NONE && r->first && r->first->next &&
	    imap_node_is(r->first->next, "EXISTS"))
		imap_node_u32(r->first, &c->exists);
	if (c->chead && c->chead->consumer->untagged)
		return c->chead->consumer->untagged(c, c->chead, r);
	return c->cb->untagged ? c->cb->untagged(c, r) : 0;
}

static int on_lit_begin(void *ctx, const struct imap_resp *r, const struct imap_node *key,
                        uint64_t size)
{
	struct ms_side *s = ctx;
	struct imap_client *c = s->c;

	s->lit_cmd = NULL;
	if (c->chead && c->chead->consumer->lit_begin) {
		s->lit_cmd = c->chead;
		return s->lit_cmd->consumer->lit_begin(c, s->lit_cmd, r, key, size);
	}
	return c->cb->lit_begin ? c->cb->lit_begin(c, r, key, size) : IMAP_LIT_INLINE;
}

static ssize_t on_lit_data(void *ctx, const uint8_t *p, size_t n)
{
	struct ms_side *s = ctx;

	if (s->lit_cmd)
		return s->lit_cmd->consumer->lit_data
		           ? s->lit_cmd->consumer->lit_data(s->c, s->lit_cmd, p, n)
		           : (ssize_t)n;
	return (ssize_t)n;
}

static int on_lit_end(void *ctx)
{
	struct ms_side *s = ctx;
	struct imap_cmd *cmd = s->lit_cmd;

	s->lit_cmd = NULL;
	if (cmd)
		return cmd->consumer->lit_end ? cmd->consumer->lit_end(s->c, cmd) : 0;
	return 0;
}

/* Feeds the answers not fed yet, unless the copy pass paused the source. */
static int side_feed(struct ms_side *s)
{
	ssize_t k;

	if (s->out_off == s->out_len || s->failed)
		return 0;
	if (s == &s->h->src && s->h->w->src_paused)
		return 0; /* sink_batch_done un-pauses it (the kick) */
	k = imap_parse_feed(&s->p, (const uint8_t *)s->out + s->out_off, s->out_len - s->out_off);
	if (k < 0) {
		fprintf(stderr, "# memsrv: %s answer refused by its consumer (%zd)\n",
		        s == &s->h->src ? "source" : "destination", k);
		s->failed = 1;
		return 0;
	}
	s->out_off += (size_t)k;
	if (s->out_off == s->out_len)
		s->out_off = s->out_len = 0;
	return k > 0;
}

/* ---- the commands ---------------------------------------------------------- */

/* The next token of p: an atom, a quoted string (unquoted), or a
 * parenthesized list (inner text); "" at the end. */
static const char *tok(const char **pp, char *buf, size_t cap)
{
	const char *p = *pp;
	size_t n = 0;

	while (*p == ' ')
		p++;
	if (*p == '"') {
		for (p++; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1])
				p++;
			if (n + 1 < cap)
				buf[n++] = *p;
		}
		if (*p == '"')
			p++;
	} else if (*p == '(') {
		int depth = 0;

		for (p++; *p && (*p != ')' || depth); p++) {
			depth += (*p == '(') - (*p == ')');
			if (n + 1 < cap)
				buf[n++] = *p;
		}
		if (*p == ')')
			p++;
	} else {
		while (*p && *p != ' ' && n + 1 < cap)
			buf[n++] = *p++;
	}
	buf[n] = '\0';
	*pp = p;
	return buf;
}

/* uid in an IMAP UID set ("1:5,7,9:*"); star is the box's largest UID. */
static int in_set(const char *set, uint32_t uid, uint32_t star)
{
	const char *p = set;

	while (*p) {
		uint32_t a, b;
		char *e;

		a = *p == '*' ? star : (uint32_t)strtoul(p, &e, 10);
		p = *p == '*' ? p + 1 : e;
		b = a;
		if (*p == ':') {
			p++;
			b = *p == '*' ? star : (uint32_t)strtoul(p, &e, 10);
			p = *p == '*' ? p + 1 : e;
		}
		if (a > b) {
			uint32_t t = a;

			a = b;
			b = t;
		}
		if (uid >= a && uid <= b)
			return 1;
		if (*p == ',')
			p++;
		else
			break;
	}
	return 0;
}

static uint32_t star_of(const struct ms_box *b)
{
	return b->n ? b->m[b->n - 1].uid : 0;
}

static int has_flag(const char *flags, const char *f)
{
	size_t n = strlen(f);

	for (const char *p = flags; (p = strcasestr(p, f)); p += n)
		if ((p == flags || p[-1] == ' ') && (p[n] == ' ' || !p[n]))
			return 1;
	return 0;
}

static void add_flags(char *flags, size_t cap, const char *add)
{
	char one[64];
	const char *p = add;

	while (*tok(&p, one, sizeof(one)))
		if (!has_flag(flags, one))
			snprintf(flags + strlen(flags), cap - strlen(flags), "%s%s", *flags ? " " : "",
			         one);
}

static void fetch_one(struct ms_side *s, const struct ms_box *b, size_t i, const char *items,
                      int modseq)
{
	const struct ms_msg *m = &b->m[i];
	char it[64];
	const char *p = items;
	int first = 1;

	outf(s, "* %zu FETCH (", i + 1);
	while (*tok(&p, it, sizeof(it))) {
		outf(s, "%s", first ? "" : " ");
		first = 0;
		if (!strcasecmp(it, "UID"))
			outf(s, "UID %u", m->uid);
		else if (!strcasecmp(it, "FLAGS"))
			outf(s, "FLAGS (%s)", m->flags);
		else if (!strcasecmp(it, "INTERNALDATE"))
			outf(s, "INTERNALDATE \"01-Jan-2024 00:00:%02u +0000\"", m->uid % 60);
		else if (!strcasecmp(it, "RFC822.SIZE"))
			outf(s, "RFC822.SIZE %zu", m->len);
		else if (!strcasecmp(it, "MODSEQ"))
			outf(s, "MODSEQ (%llu)", (unsigned long long)m->modseq), modseq = 0;
		else if (!strcasecmp(it, "BODY.PEEK[]") || !strcasecmp(it, "BODY[]")) {
			outf(s, "BODY[] {%zu}\r\n", m->len);
			out_add(s, m->body, m->len);
		} else
			first = 1; /* not known here: left out */
	}
	if (modseq)
		outf(s, "%sMODSEQ (%llu)", first ? "" : " ", (unsigned long long)m->modseq);
	outf(s, ")\r\n");
}

static void cmd_fetch(struct ms_side *s, const char *tag, const char *p, int by_uid)
{
	struct ms_box *b = s->sel;
	char set[4096], items[256], mod[128];
	uint64_t since = 0;
	int any = 0;

	tok(&p, set, sizeof(set));
	tok(&p, items, sizeof(items));
	tok(&p, mod, sizeof(mod));
	if (!strncasecmp(mod, "CHANGEDSINCE ", 13))
		since = strtoull(mod + 13, NULL, 10);
	if (!b) {
		outf(s, "%s BAD no mailbox selected\r\n", tag);
		return;
	}
	for (size_t i = 0; i < b->n; i++)
		if ((by_uid ? in_set(set, b->m[i].uid, star_of(b))
		            : in_set(set, (uint32_t)i + 1, (uint32_t)b->n)) &&
		    (!mod[0] || b->m[i].modseq > since)) {
			fetch_one(s, b, i, items, mod[0] != 0);
			any = 1;
		}
	/* "n:*" names the last message even when n is above it (RFC 3501 §6.4.8) */
	if (!any && b->n && by_uid && strchr(set, '*') && !mod[0])
		fetch_one(s, b, b->n - 1, items, 0);
	outf(s, "%s OK FETCH done\r\n", tag);
}

static void cmd_search(struct ms_side *s, const char *tag, const char *p)
{
	struct ms_box *b = s->sel;
	char w[64], set[4096] = "1:*";

	while (*tok(&p, w, sizeof(w)))
		if (!strcasecmp(w, "UID"))
			tok(&p, set, sizeof(set));
	if (!b) {
		outf(s, "%s BAD no mailbox selected\r\n", tag);
		return;
	}
	outf(s, "* SEARCH");
	for (size_t i = 0; i < b->n; i++)
		if (in_set(set, b->m[i].uid, star_of(b)))
			outf(s, " %u", b->m[i].uid);
	outf(s, "\r\n%s OK SEARCH done\r\n", tag);
}

static void cmd_store(struct ms_side *s, const char *tag, const char *p)
{
	struct ms_box *b = s->sel;
	char set[4096], what[64], fl[256];

	tok(&p, set, sizeof(set));
	tok(&p, what, sizeof(what));
	tok(&p, fl, sizeof(fl));
	if (!b) {
		outf(s, "%s BAD no mailbox selected\r\n", tag);
		return;
	}
	for (size_t i = 0; i < b->n; i++) {
		struct ms_msg *m = &b->m[i];

		if (!in_set(set, m->uid, star_of(b)))
			continue;
		if (what[0] == '+')
			add_flags(m->flags, sizeof(m->flags), fl);
		else
			snprintf(m->flags, sizeof(m->flags), "%.119s", fl);
		m->modseq = ++b->modseq;
	}
	outf(s, "%s OK STORE done\r\n", tag);
}

static void cmd_expunge(struct ms_side *s, const char *tag, const char *set)
{
	struct ms_box *b = s->sel;
	size_t k = 0;

	if (!b) {
		outf(s, "%s BAD no mailbox selected\r\n", tag);
		return;
	}
	for (size_t i = 0; i < b->n; i++)
		if (!has_flag(b->m[i].flags, "\\Deleted") || (set && !in_set(set, b->m[i].uid, star_of(b))))
			b->m[k++] = b->m[i];
	b->n = k;
	b->modseq++;
	outf(s, "%s OK EXPUNGE done\r\n", tag);
}

static void cmd_select(struct ms_side *s, const char *tag, const char *name)
{
	struct ms_box *b = box_named(s, name);

	s->sel = b;
	if (!b) {
		outf(s, "%s NO [NONEXISTENT] no such mailbox\r\n", tag);
		return;
	}
	outf(s, "* %zu EXISTS\r\n* OK [UIDVALIDITY %u] ok\r\n* OK [UIDNEXT %u] ok\r\n"
	        "* OK [HIGHESTMODSEQ %llu] ok\r\n%s OK done\r\n",
	     b->n, b->uidvalidity, b->uidnext, (unsigned long long)b->modseq, tag);
}

static void exec_cmd(struct ms_side *s, const char *line)
{
	char tag[32], cmd[32], a[512], b2[512];
	const char *p = line;

	tok(&p, tag, sizeof(tag));
	tok(&p, cmd, sizeof(cmd));
	if (s->log_len + strlen(p) + 40 < sizeof(s->log))
		s->log_len += (size_t)snprintf(s->log + s->log_len, sizeof(s->log) - s->log_len,
		                               "%s%s\n", cmd, p);
	if (!strcasecmp(cmd, "UID")) {
		tok(&p, cmd, sizeof(cmd));
		if (!strcasecmp(cmd, "FETCH"))
			cmd_fetch(s, tag, p, 1);
		else if (!strcasecmp(cmd, "SEARCH"))
			cmd_search(s, tag, p);
		else if (!strcasecmp(cmd, "STORE"))
			cmd_store(s, tag, p);
		else if (!strcasecmp(cmd, "EXPUNGE"))
			cmd_expunge(s, tag, tok(&p, a, sizeof(a)));
		else
			outf(s, "%s BAD unknown UID command\r\n", tag);
	} else if (!strcasecmp(cmd, "EXAMINE") || !strcasecmp(cmd, "SELECT")) {
		cmd_select(s, tag, tok(&p, a, sizeof(a)));
	} else if (!strcasecmp(cmd, "FETCH")) {
		if (s->sel && !s->sel->n)
			outf(s, "%s BAD no such message\r\n", tag); /* as Dovecot for FETCH 1 */
		else
			cmd_fetch(s, tag, p, 0);
	} else if (!strcasecmp(cmd, "STORE")) {
		cmd_store(s, tag, p); /* (tests use UIDs as sequence numbers) */
	} else if (!strcasecmp(cmd, "EXPUNGE")) {
		cmd_expunge(s, tag, NULL);
	} else if (!strcasecmp(cmd, "LIST")) {
		tok(&p, a, sizeof(a));
		tok(&p, b2, sizeof(b2));
		if (!b2[0])
			outf(s, "* LIST (\\Noselect) \"/\" \"\"\r\n");
		else
			for (size_t i = 0; i < s->nbox; i++)
				outf(s, "* LIST () \"/\" \"%s\"\r\n", s->box[i].name);
		outf(s, "%s OK LIST done\r\n", tag);
	} else if (!strcasecmp(cmd, "CREATE")) {
		tok(&p, a, sizeof(a));
		if (box_named(s, a))
			outf(s, "%s NO [ALREADYEXISTS] exists\r\n", tag);
		else if (!ms_box(s, a, 1000 + (uint32_t)s->nbox))
			outf(s, "%s NO too many\r\n", tag);
		else
			outf(s, "%s OK CREATE done\r\n", tag);
	} else if (!strcasecmp(cmd, "RENAME")) {
		struct ms_box *bx;

		tok(&p, a, sizeof(a));
		tok(&p, b2, sizeof(b2));
		if (!(bx = box_named(s, a)) || box_named(s, b2)) {
			outf(s, "%s NO cannot rename\r\n", tag);
		} else {
			snprintf(bx->name, sizeof(bx->name), "%.63s", b2);
			outf(s, "%s OK RENAME done\r\n", tag);
		}
	} else if (!strcasecmp(cmd, "LOGOUT")) {
		outf(s, "* BYE bye\r\n%s OK LOGOUT done\r\n", tag);
	} else if (!strcasecmp(cmd, "SUBSCRIBE") || !strcasecmp(cmd, "NOOP") ||
	           !strcasecmp(cmd, "CHECK") || !strcasecmp(cmd, "CLOSE") ||
	           !strcasecmp(cmd, "UNSELECT")) {
		outf(s, "%s OK done\r\n", tag);
	} else {
		outf(s, "%s BAD unknown command\r\n", tag);
	}
}

/* Runs the complete command lines the client wrote. */
static int side_commands(struct ms_side *s)
{
	struct imap_client *c = s->c;
	int any = 0;

	for (;;) {
		char *nl = c->hold_len ? memmem(c->hold, c->hold_len, "\r\n", 2) : NULL;
		char line[8192];
		size_t n;

		if (!nl)
			return any;
		n = (size_t)(nl - c->hold);
		snprintf(line, sizeof(line), "%.*s", (int)n, c->hold);
		memmove(c->hold, nl + 2, c->hold_len - n - 2);
		c->hold_len -= n + 2;
		exec_cmd(s, line);
		any = 1;
	}
}

/* ---- the sink --------------------------------------------------------------- */

static struct mh *mh_of(struct sink *s)
{
	return s->priv;
}

static const char *k_who(struct sink *s) { (void)s; return "destination mem"; }
static uint64_t k_limit(struct sink *s) { (void)s; return 0; }
static int k_closed(struct sink *s) { (void)s; return 0; }
static int k_more(struct sink *s) { (void)s; return 1; }
static void k_close(struct sink *s, int g) { (void)s, (void)g; }
static void k_release(struct sink *s) { (void)s; }
static void k_wire(struct sink *s, uint64_t *in, uint64_t *out) { (void)s; *in = *out = 0; }
static size_t k_space(struct sink *s) { (void)s; return (size_t)1 << 20; }
static void k_want_space(struct sink *s) { (void)s; }
static void k_discard(struct sink *s, struct batch *b) { (void)s, (void)b; }
static void k_abort(struct sink *s) { (void)s; }
static void k_msg_end(struct sink *s, struct batch *b) { (void)b; mh_of(s)->cur.n++; }

static int k_open(struct sink *s, struct mf_error *e)
{
	(void)e;
	mh_of(s)->ready_due = 1; /* sink_ready, from mh_run as from the loop */
	return 0;
}

static void k_batch_begin(struct sink *s, struct batch *b)
{
	mh_of(s)->cur.b = b;
	mh_of(s)->cur.n = 0;
}

static void k_msg_begin(struct sink *s, struct batch *b, const struct sink_msg *m)
{
	struct mh_batch *c = &mh_of(s)->cur;

	(void)b;
	c->uid[c->n] = m->uid;
	snprintf(c->flags[c->n], sizeof(c->flags[0]), "%.*s", (int)m->flags_len, m->flags);
	c->len[c->n] = 0;
}

static void k_data(struct sink *s, const uint8_t *p, size_t n)
{
	struct mh_batch *c = &mh_of(s)->cur;
	size_t room = sizeof(c->body[0]) - 1 - c->len[c->n];

	memcpy(c->body[c->n] + c->len[c->n], p, n < room ? n : room);
	c->len[c->n] += n < room ? n : room;
}

static void k_commit(struct sink *s, struct batch *b)
{
	struct mh *h = mh_of(s);

	(void)b;
	h->commits++;
	h->pend[(h->phead + h->pn++) % BATCH_SLOTS] = h->cur;
}

static const struct sink_ops mem_sink = {
	.kind = "mem",
	.caps = SINK_FOLDERS | SINK_FLAGS | SINK_IDS | SINK_EXPUNGE | SINK_FIND | SINK_BATCH,
	.open = k_open, .close = k_close, .release = k_release, .wire = k_wire,
	.who = k_who, .size_limit = k_limit, .closed = k_closed, .batch_more = k_more,
	.batch_begin = k_batch_begin, .msg_begin = k_msg_begin, .space = k_space,
	.want_space = k_want_space, .data = k_data, .msg_end = k_msg_end, .commit = k_commit,
	.discard = k_discard, .abort = k_abort,
};

/* The oldest committed batch is stored in the destination folder. */
static void sink_answer(struct mh *h)
{
	struct mh_batch *p = &h->pend[h->phead];
	struct ms_box *b = box_named(&h->dst, h->w->mb ? h->w->mb->dst_name : "");
	uint32_t ids[BATCH_MAX];
	struct sink_verdict v = {0};

	h->phead = (h->phead + 1) % BATCH_SLOTS;
	h->pn--;
	if (!b) {
		v.why = "[TRYCREATE] no such mailbox";
	} else {
		for (unsigned i = 0; i < p->n; i++) {
			struct ms_msg *m;

			p->body[i][p->len[i]] = '\0';
			m = ms_add(b, p->body[i], p->flags[i]);
			ids[i] = m ? m->uid : 0;
		}
		v.ok = 1;
		v.dst_uidv = b->uidvalidity;
		v.ids = ids;
		v.nids = p->n;
	}
	sink_batch_done(p->b, &v);
}

/* ---- the harness -------------------------------------------------------------- */

static void on_error(struct imap_client *c, const struct mf_error *err)
{
	fprintf(stderr, "# memsrv: client %s failed: %s\n", c->who, err->msg);
	c->closed = 1;
}

static int side_init(struct mh *h, struct ms_side *s, struct imap_client *c, int dst)
{
	struct imap_parser_cb pcb = {
		.ctx = s, .response = on_resp, .lit_begin = on_lit_begin,
		.lit_data = on_lit_data, .lit_end = on_lit_end,
	};

	s->h = h;
	s->c = c;
	s->cb.untagged = dst ? dst_untagged_any : src_untagged_any;
	s->cb.lit_begin = lit_checked_inline;
	s->cb.error = on_error;
	c->cb = &s->cb;
	c->ud = h->w;
	c->hold_on = 1; /* what the job writes stays in c->hold: the commands */
	c->caps = IMAP_CAP_LITERALPLUS | IMAP_CAP_UIDPLUS;
	snprintf(c->who, sizeof(c->who), "%s mem", dst ? "destination" : "source");
	return imap_parser_init(&s->p, &pcb, 0, 0);
}

static void stop_task(struct loop *l, struct loop_task *t)
{
	(void)l;
	job_maybe_finish((struct job *)((char *)t - offsetof(struct job, stop_task)));
}

static void done_task(struct loop *l, struct loop_task *t)
{
	(void)l, (void)t;
}

int mh_open(struct mh *h, const char *dir)
{
	struct mf_error e;
	struct job *j;

	memset(h, 0, sizeof(*h));
	snprintf(h->dir, sizeof(h->dir), "%s", dir);
	if (loop_init(&h->loop, 64) < 0 || state_open(&h->st, dir, &e) < 0)
		return -1;
	h->o.batch_msgs = 8;
	h->o.batch_bytes = 1 << 20;
	h->o.connections = 1;
	h->o.out = stdout;
	if (!(j = h->j = calloc(1, sizeof(*j))) || !(j->w = h->w = calloc(1, sizeof(*j->w))))
		return -1;
	j->loop = &h->loop;
	j->st = h->st;
	j->o = &h->o;
	j->sum = &h->sum;
	j->nw = 1;
	j->stop_task.fn = stop_task;
	j->done_task.fn = done_task;
	j->commit_task.fn = copy_commit_task; /* group commit, as job_new sets it */
	if (state_job(h->st, "test", &j->jobid, &e) < 0 || worker_init(j, h->w, 0) < 0)
		return -1;
	h->w->sink = (struct sink){&mem_sink, h->w, h, {0}};
	h->w->src_open = h->w->src_ready = 1;
	h->w->phase = W_CONNECTING; /* started, as worker_start leaves it */
	if (side_init(h, &h->src, &h->w->src, 0) < 0 || side_init(h, &h->dst, &h->w->dst, 1) < 0)
		return -1;
	return 0;
}

void mh_close(struct mh *h, int crash)
{
	imap_parser_free(&h->src.p);
	imap_parser_free(&h->dst.p);
	free(h->src.out);
	free(h->dst.out);
	free(h->w->src.hold);
	free(h->w->dst.hold);
	if (h->w->sink.ops != &mem_sink && h->w->sink.ops->destroy)
		h->w->sink.ops->destroy(&h->w->sink); /* a counting sink around it */
	h->w->sink.ops = &mem_sink;
	job_free(h->j);
	if (crash)
		state_abort(h->st); /* a crash: what was not committed is gone */
	state_close(h->st);
	loop_free(&h->loop);
}

struct mbox *mh_mbox(struct mh *h, const char *name)
{
	struct job *j = h->j;
	struct mbox *mb = mbox_add(j, name, strlen(name));
	int created;
	struct mf_error e;

	if (!mb || !(mb->dst_name = strdup(name)))
		return NULL;
	if (scope_mbox_id(j, mb, &created, &e) < 0)
		return NULL;
	mb->work = 1;
	mb->dst_exists = 1;
	return mb;
}

void mh_run(struct mh *h)
{
	for (unsigned guard = 0; guard < 100000; guard++) {
		int progress = 0;

		progress |= side_commands(&h->src);
		progress |= side_commands(&h->dst);
		progress |= side_feed(&h->src);
		progress |= side_feed(&h->dst);
		if (h->ready_due) {
			h->ready_due = 0;
			sink_ready(h->w);
			progress = 1;
		}
		if (!progress && h->pn) {
			sink_answer(h);
			progress = 1;
		}
		if (!progress && h->loop.tasks) {
			loop_run(&h->loop); /* deferred work: the counting sink's answers */
			progress = 1;
		}
		if (!progress)
			return;
	}
	fprintf(stderr, "# memsrv: no end\n");
}

struct aging {
	uint32_t id[64];
	size_t n;
};

static int aging_collect(void *ctx, uint32_t mbid, const struct state_mbox *rec)
{
	struct aging *a = ctx;

	if (rec->intent_at_ms > 1 && a->n < 64)
		a->id[a->n++] = mbid;
	return 0;
}

void mh_age_intents(struct mh *h)
{
	struct aging a = {.n = 0};
	struct state_mbox rec;
	struct mf_error e;

	state_mbox_each(h->st, h->j->jobid, aging_collect, &a, &e);
	for (size_t i = 0; i < a.n; i++)
		if (state_mbox_get(h->st, h->j->jobid, a.id[i], &rec, &e) == 0) {
			rec.intent_at_ms = 1;
			state_mbox_put(h->st, h->j->jobid, a.id[i], &rec, &e);
		}
}

void mh_pass(struct mh *h, struct mbox *mb)
{
	struct job *j = h->j;

	mh_age_intents(h);

	j->listed = j->dst_prepared = 1;
	h->w->dst_open = h->w->dst_ready = 1;
	h->w->mb = mb;
	j->next_mb = j->nmb; /* no other mailbox after this one */
	mailbox_begin(h->w);
	mh_run(h);
}

int mh_status(struct mh *h, const struct mbox *mb, uint32_t uidv, uint32_t uid,
              struct state_msg *sm)
{
	struct state_msg_key k = {h->j->jobid, mb->mbid, uidv, uid};
	struct mf_error e;

	return state_msg_get(h->st, &k, sm, &e) < 0 ? 0 : sm->status;
}

void mh_hash(const char *body, size_t len, uint8_t hash[32], uint8_t nhash[32])
{
	struct msghash mh;

	msghash_init(&mh);
	msghash_begin(&mh);
	msghash_update(&mh, (const uint8_t *)body, len);
	msghash_end(&mh, hash, nhash);
	msghash_free(&mh);
}

int mh_record(struct mh *h, const struct mbox *mb, uint32_t uidv, uint32_t uid,
              const struct ms_msg *src, uint32_t dst_uidv, uint32_t dst_uid, uint8_t status)
{
	struct state_msg_key k = {h->j->jobid, mb->mbid, uidv, uid};
	struct state_msg sm;
	struct mf_error e;

	memset(&sm, 0, sizeof(sm));
	mh_hash(src->body, src->len, sm.hash, sm.nhash);
	sm.size = src->len;
	sm.dst_uidvalidity = dst_uidv;
	sm.dst_uid = dst_uid;
	sm.status = status;
	snprintf(sm.flags, sizeof(sm.flags), "%s", src->flags);
	return state_msg_put(h->st, &k, &sm, &e);
}

void mh_remove(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[256];

	while (d && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
		    snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) < (int)sizeof(p))
			unlink(p);
	if (d)
		closedir(d);
	rmdir(dir);
}

struct mbox *mh_find(struct mh *h, const char *name)
{
	return mbox_find(h->j, name, strlen(name));
}

static void boxes_copy(struct ms_side *to, const struct ms_side *from)
{
	memcpy(to->box, from->box, sizeof(to->box));
	to->nbox = from->nbox;
}

/* Reopens the job on dir after a stop, with both sides' mailboxes. */
static int restart(struct mh *h, const char *dir, const struct mh_world *w, int crash)
{
	static struct ms_side src, dst; /* (large: not on the stack) */

	boxes_copy(&src, &h->src);
	boxes_copy(&dst, &h->dst);
	mh_close(h, crash);
	if (mh_open(h, dir) < 0)
		return -1;
	boxes_copy(&h->src, &src);
	boxes_copy(&h->dst, &dst);
	w->options(h);
	return 0;
}

int mh_fault_each(const struct mh_world *w, const char *site)
{
	static struct mh h;
	int faults = 0, crash = !strcmp(site, "commit");

	for (unsigned k = 1; k <= 100; k++) {
		char dir[] = "/tmp/mf-test-memsrv-XXXXXX";
		char what[64];

		if (!mkdtemp(dir) || mh_open(&h, dir) < 0 || w->setup(&h) < 0)
			return -1;
		w->options(&h);
		snprintf(h.j->test_fail_site, sizeof(h.j->test_fail_site), "%s", site);
		h.j->test_fail_at = k;
		w->run(&h);
		if (h.j->test_fail_calls < k) {
			mh_close(&h, 0); /* fewer calls than k: done */
			mh_remove(dir);
			return faults;
		}
		faults++;
		snprintf(what, sizeof(what), "%s fault %u", site, k);
		if (w->fault)
			w->fault(&h, what, w->ctx);
		if (restart(&h, dir, w, crash) < 0)
			return -1;
		w->run(&h);
		w->check(&h, what, 0, w->ctx);
		if (restart(&h, dir, w, 0) < 0)
			return -1;
		w->run(&h);
		w->check(&h, what, 1, w->ctx);
		mh_close(&h, 0);
		mh_remove(dir);
	}
	return faults;
}
