/*
 * sink_imap — the IMAP APPEND sink (sink.h) over a worker's destination
 * connection: a batch is one APPEND command, MULTIAPPEND (RFC 3502) when
 * the server offers it, literals as LITERAL+ (RFC 7888) or synchronizing;
 * the commit point is the command's final CRLF, the answer its tagged
 * reply with APPENDUID (RFC 4315 §3).
 *
 * Not for: mailboxes (prepare.c) or reading the destination back
 * (settle.c, dedupe.c, changes.c), which use the same connection.
 */
#include "engine/sync/job_int.h"

static struct imap_client *dst(struct sink *s)
{
	return &s->w->dst;
}

static const char *imap_who(struct sink *s)
{
	return imap_client_who(dst(s));
}

static uint64_t imap_size_limit(struct sink *s)
{
	return dst(s)->appendlimit;
}

static int imap_closed(struct sink *s)
{
	return dst(s)->closed;
}

static int imap_batch_more(struct sink *s)
{
	return (dst(s)->caps & IMAP_CAP_MULTIAPPEND) != 0;
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

/* The tagged reply to one APPEND: its verdict, with the new UIDs when the
 * server sent APPENDUID for exactly the messages of the batch. */
static void append_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct batch *b = cmd->ud;
	uint32_t ids[BATCH_MAX];
	struct uidlist ul = {ids, 0, BATCH_MAX};
	struct sink_verdict v = {0};
	const struct imap_node *au;
	char why[200];

	(void)c;
	snprintf(why, sizeof(why), "%s%.*s%s%.*s", r->code ? "[" : "",
		 r->code ? (int)r->code->len : 0, r->code ? r->code->s : "", r->code ? "] " : "",
		 (int)r->text_len, r->text);
	v.ok = r->status == IMAP_ST_OK;
	v.why = why;
	if (v.ok && (au = imap_resp_code(r, "APPENDUID")) && au->next) {
		imap_node_u32(au, &v.dst_uidv);
		if (uidset_each(au->next->s, au->next->len, uid_collect, &ul) == 0 && ul.n == b->n) {
			v.ids = ids;
			v.nids = (unsigned)ul.n;
		}
	}
	sink_batch_done(b, &v);
}

static void imap_batch_begin(struct sink *s, struct batch *b)
{
	struct worker *w = s->w;

	imap_cmd_begin(dst(s), &b->cmd, append_done, b);
	imap_put(dst(s), "APPEND ");
	imap_put_astring(dst(s), w->mb->dst_name, strlen(w->mb->dst_name));
}

static void imap_msg_begin(struct sink *s, struct batch *b, const struct sink_msg *m)
{
	(void)b;
	imap_putf(dst(s), " (%.*s) \"%s\"", (int)m->flags_len, m->flags, m->date);
	imap_put_literal_header(dst(s), m->size, 1);
}

static size_t imap_space(struct sink *s)
{
	return imap_write_space(dst(s));
}

static void imap_want_space(struct sink *s)
{
	imap_want_writable(dst(s));
}

static void imap_data(struct sink *s, const uint8_t *p, size_t n)
{
	imap_put_raw(dst(s), p, n);
}

static void imap_msg_end(struct sink *s, struct batch *b)
{
	(void)s, (void)b; /* the literal ends by its length */
}

static void imap_commit(struct sink *s, struct batch *b)
{
	(void)b;
	imap_cmd_end(dst(s));
}

/* Answered before its end: the command's bytes are finished so the
 * connection stays in step; the server discards them (RFC 7888 §5). */
static void imap_discard(struct sink *s, struct batch *b)
{
	(void)b;
	imap_put(dst(s), "\r\n");
}

static void imap_abort(struct sink *s)
{
	imap_client_abort(dst(s));
}

/* The destination client's callbacks (job.c puts them in its dst_cb). */
void dst_writable(struct imap_client *c)
{
	sink_writable(c->ud);
}

/* Behind a pipelined login (c->login_pending) worker 0 lists the
 * destination at once; everything else waits for the login's answer
 * (dst_logged_in): the account is right, the capabilities final. */
void dst_ready(struct imap_client *c)
{
	struct worker *w = c->ud;

	if (!c->login_pending) {
		sink_ready(w);
		return;
	}
	if (w->id == 0 && !w->reconnecting && !w->job->dlist_cmd[0].done)
		dst_list(w);
}

void dst_logged_in(struct imap_client *c)
{
	sink_ready(c->ud);
}

void dst_error(struct imap_client *c, const struct mf_error *err)
{
	sink_failed(c->ud, err);
}

static int imap_open(struct sink *s, struct mf_error *err)
{
	struct job *j = s->w->job;

	return imap_client_open(dst(s), j->loop, &j->o->dst, &j->dst_cb, s->w, err);
}

static void imap_close(struct sink *s, int graceful)
{
	if (dst(s)->closed)
		return;
	if (graceful) {
		dst(s)->logout_nowait = s->w->job->quick_exit;
		imap_client_logout(dst(s));
	}
	else
		imap_client_close(dst(s));
}

static void imap_release(struct sink *s)
{
	imap_client_close(dst(s));
}

static void imap_wire(struct sink *s, uint64_t *in, uint64_t *out)
{
	imap_client_wire(dst(s), in, out);
}

const struct sink_ops sink_imap_ops = {
	.kind = "imap",
	.caps = SINK_FOLDERS | SINK_FLAGS | SINK_IDS | SINK_EXPUNGE | SINK_FIND | SINK_BATCH |
	        SINK_LOGOUT,
	.open = imap_open,
	.close = imap_close,
	.release = imap_release,
	.wire = imap_wire,
	.who = imap_who,
	.size_limit = imap_size_limit,
	.closed = imap_closed,
	.batch_more = imap_batch_more,
	.batch_begin = imap_batch_begin,
	.msg_begin = imap_msg_begin,
	.space = imap_space,
	.want_space = imap_want_space,
	.data = imap_data,
	.msg_end = imap_msg_end,
	.commit = imap_commit,
	.discard = imap_discard,
	.abort = imap_abort,
};
