/*
 * sink_imap — the IMAP APPEND sink (sink.h) over a worker's destination
 * connection: a batch is one APPEND command, MULTIAPPEND (RFC 3502) when
 * the server offers it, literals as LITERAL+ (RFC 7888) or synchronizing;
 * the commit point is the command's final CRLF, the answer its tagged
 * reply with APPENDUID (RFC 4315 §3).
 *
 * Without LITERAL+ (Courier) each APPEND waits for the server's "+"
 * before its bytes. While it waits, the message is read ahead into a
 * small stage (SINK_IMAP_STAGE) instead of stalling the source, so the
 * batch closes, and its intent is committed (an fdatasync), while the
 * server still stores the message before; the "+" then releases the
 * literal and its final CRLF in one write. Before, the commit sat between
 * the literal and its CRLF, with the server waiting on it for every
 * message (issue 22). The next APPEND starts once the stage is released
 * (busy()), so one command at a time waits for a "+". A literal the
 * server refuses instead of "+" (a tagged NO) drops what was staged: the
 * server never asked for those bytes.
 *
 * Not for: mailboxes (prepare.c) or reading the destination back
 * (settle.c, dedupe.c, changes.c), which use the same connection.
 */
#include "engine/sync/job_int.h"

/* Read ahead while a "+" is awaited: most messages fit whole (a bigger
 * one stages this much, then streams once the "+" is in). Allocated on
 * first use, only for a server without LITERAL+. */
#define SINK_IMAP_STAGE ((size_t)256 << 10)

struct imap_stage {
	uint8_t *buf;
	size_t len;
	int end_pending;	/* the command's final CRLF follows the staged bytes */
	int refused;		/* the server answered instead of "+": drop the rest */
};

static struct imap_client *dst(struct sink *s)
{
	return &s->w->dst;
}

static struct imap_stage *stage(struct sink *s)
{
	return s->priv;
}

/* Staged bytes wait while the server has not sent its "+". */
static int stage_waits(struct sink *s)
{
	return dst(s)->awaiting_cont > 0;
}

static void stage_reset(struct sink *s)
{
	struct imap_stage *st = stage(s);

	if (st)
		st->len = 0, st->end_pending = st->refused = 0;
}

/* The "+" came: the staged bytes, then the command's end if it is due. */
static void stage_release(struct sink *s)
{
	struct imap_stage *st = stage(s);

	if (!st || stage_waits(s) || dst(s)->closed)
		return;
	if (st->len)
		imap_put_raw(dst(s), st->buf, st->len);
	st->len = 0;
	if (st->end_pending) {
		st->end_pending = 0;
		imap_cmd_end(dst(s));
	}
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
	if (cmd->lit_wait && stage(&b->w->sink)) {
		/* answered instead of "+": none of the literal may follow */
		stage_reset(&b->w->sink);
		stage(&b->w->sink)->refused = 1;
	}
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

	stage_reset(s);
	imap_cmd_begin(dst(s), &b->cmd, append_done, b);
	imap_put(dst(s), "APPEND ");
	imap_put_astring(dst(s), w->mb->dst_name, strlen(w->mb->dst_name));
}

static void imap_msg_begin(struct sink *s, struct batch *b, const struct sink_msg *m)
{
	char sys[STATE_FLAGS_MAX];
	const char *f = m->flags;
	size_t n = m->flags_len;

	(void)b;
	if (kwdefer_on(s->w)) { /* the keywords follow the folder's last APPEND (kwdefer.h) */
		n = kwdefer_system_flags(m->flags, m->flags_len, sys, sizeof(sys));
		f = sys;
	}
	imap_putf(dst(s), " (%.*s) \"%s\"", (int)n, f, m->date);
	imap_put_literal_header(dst(s), m->size, 1);
}

static size_t imap_space(struct sink *s)
{
	struct imap_stage *st = stage(s);

	if (dst(s)->closed)
		return 0;
	if (st && st->refused)
		return SIZE_MAX / 2; /* dropped (imap_data) */
	if (!stage_waits(s))
		return imap_write_space(dst(s));
	if (!st) {
		if (!(st = calloc(1, sizeof(*st))) || !(st->buf = malloc(SINK_IMAP_STAGE))) {
			free(st);
			return 0; /* not read ahead: the source waits for the "+" */
		}
		s->priv = st;
	}
	return SINK_IMAP_STAGE - st->len;
}

static void imap_want_space(struct sink *s)
{
	imap_want_writable(dst(s));
}

static void imap_data(struct sink *s, const uint8_t *p, size_t n)
{
	struct imap_stage *st = stage(s);

	if (st && st->refused)
		return;
	if (st && stage_waits(s)) {
		/* within imap_space(): the stage has room */
		memcpy(st->buf + st->len, p, n);
		st->len += n;
		imap_want_writable(dst(s)); /* dst_writable releases it at the "+" */
		return;
	}
	stage_release(s);
	imap_put_raw(dst(s), p, n);
}

static void imap_msg_end(struct sink *s, struct batch *b)
{
	(void)s, (void)b; /* the literal ends by its length */
}

/* The commit point: the intents are durable (copy.c). With the "+" still
 * awaited (or bytes still staged) the CRLF follows them at the "+". */
static void imap_commit(struct sink *s, struct batch *b)
{
	struct imap_stage *st = stage(s);

	(void)b;
	if (st && (st->len || stage_waits(s))) {
		st->end_pending = 1;
		imap_want_writable(dst(s));
		return;
	}
	imap_cmd_end(dst(s));
}

/* Answered before its end: the command's bytes are finished so the
 * connection stays in step; the server discards them (RFC 7888 §5). A
 * synchronizing literal the server refused has no bytes to finish. */
static void imap_discard(struct sink *s, struct batch *b)
{
	struct imap_stage *st = stage(s);

	(void)b;
	if (st && st->refused) {
		stage_reset(s);
		return;
	}
	imap_put(dst(s), "\r\n");
}

static void imap_abort(struct sink *s)
{
	stage_reset(s);
	imap_client_abort(dst(s));
}

/* Staged bytes hold the next APPEND back: one command at a time waits. */
static int imap_busy(struct sink *s)
{
	struct imap_stage *st = stage(s);

	return st && (st->len || st->end_pending);
}

static void imap_destroy(struct sink *s)
{
	struct imap_stage *st = stage(s);

	if (st)
		free(st->buf);
	free(st);
	s->priv = NULL;
}

/* The destination client's callbacks (job.c puts them in its dst_cb). */
void dst_writable(struct imap_client *c)
{
	struct worker *w = c->ud;

	stage_release(&w->sink);
	sink_writable(w);
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

/* Worker 0's destination opens with the source, so that its login and
 * LIST overlap the source's (issue 17: round trips). A near server (its
 * greeting within DST_HOLD_US of the open: loopback, a LAN) holds the
 * login until the plan shows work (workers_spawn): there a login costs
 * the server more than the round trips it saves, and a re-run with
 * nothing to copy never logs in to the destination at all. */
#define DST_HOLD_US 10000

int dst_greeted(struct imap_client *c, uint64_t us)
{
	struct worker *w = c->ud;

	return w->id == 0 && !w->reconnecting && !w->job->listed && us < DST_HOLD_US;
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

	stage_reset(s);
	return imap_client_open(dst(s), j->loop, &j->o->dst, &j->dst_cb, s->w, err);
}

static void imap_close(struct sink *s, int graceful)
{
	stage_reset(s);
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
	.destroy = imap_destroy,
	.busy = imap_busy,
};
