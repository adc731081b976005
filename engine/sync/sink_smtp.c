/*
 * sink_smtp — the SMTP and LMTP sink (sink.h) over one smtp_client per
 * worker: a batch is one message, one transaction (MAIL FROM, RCPT TO,
 * BDAT or DATA, pipelined where offered); the commit point is the end of
 * the data ("BDAT n LAST" or the final "."), the answer its 250 (LMTP: the
 * recipient's reply). With PIPELINING the next message's transaction goes
 * while the previous one waits for that answer (smtp_client overlaps two),
 * so a connection is never idle for a round trip between messages.
 *
 * The envelope is taken from the message before its bytes go: its header
 * (up to SINK_SMTP_HOLD bytes) is held back, its Return-Path becomes the
 * sender unless --mail-from says otherwise (else the null sender <>), and
 * UTF-8 in it asks for SMTPUTF8. Nothing of the message is rewritten.
 *
 * Verdicts: 2xx stored; 4xx temporary (the copy path tries the message
 * again after a backoff); 5xx refused, reported per message.
 *
 * No folders, flags, ids, lookups or expunges (sink caps): prepare.c and
 * settle.c adapt (one notice; --uncertain for deliveries a crash left
 * unconfirmed).
 *
 * Not for: the protocol (smtp_client), retries and the journal (copy).
 */
#include "engine/sync/job_int.h"
#include "protocols/mailhdr.h"

/* Header bytes held back to find the envelope sender (a Return-Path
 * further in is not looked for: the null sender then). */
#define SINK_SMTP_HOLD ((size_t)64 * 1024)

struct smtp_verdict {
	struct batch *b;
	int ok, temporary;
	char why[600];
};

struct smtp_sink {
	struct smtp_client c;
	struct sink *s;
	/* the message being written */
	struct batch *cur;
	uint64_t size;
	uint8_t *hold;		/* the header, held until the envelope is known */
	size_t hold_len, hold_off; /* held, and of it handed to the client */
	int begun;		/* smtp_msg_begin went out (or was refused) */
	int start_pending;	/* the header is in, the previous transaction is not done */
	int refused;		/* smtp_msg_begin refused it: why, swallow the bytes */
	char refused_why[600];
	int end_wanted;		/* commit() came: end once the hold is out */
	int ended;
	int want;		/* the copy path waits for space */
	unsigned sent;		/* ends sent whose answer is still to come */
	char from[SMTP_ADDR_MAX + 1];
	/* answers, in order, handed to the copy path from the loop (never
	 * from inside its own calls) */
	struct smtp_verdict q[BATCH_SLOTS];
	unsigned qhead, qlen;
};

static void msg_start(struct sink *s);

static struct smtp_sink *ss_of(struct sink *s)
{
	return s->priv;
}

static const char *smtp_who(struct sink *s)
{
	struct smtp_sink *ss = ss_of(s);

	return ss ? smtp_client_who(&ss->c) : "destination";
}

static uint64_t smtp_size_limit(struct sink *s)
{
	struct smtp_sink *ss = ss_of(s);

	return ss && (ss->c.caps & SMTP_CAP_SIZE) ? ss->c.size_max : 0;
}

static int smtp_closed(struct sink *s)
{
	struct smtp_sink *ss = ss_of(s);

	return !ss || ss->c.closed;
}

/* At most SMTP_TXN_MAX transactions (two with PIPELINING, else one) are
 * unanswered: the next message is read while the previous one waits for
 * its final reply, and waits itself before its commit point until the
 * client can take it. A crash therefore leaves at most two deliveries per
 * connection uncertain, both of them sent (--uncertain skip then never
 * skips an unsent one). */
static int client_full(struct smtp_sink *ss)
{
	return smtp_inflight(&ss->c) && !smtp_can_begin(&ss->c) && !ss->c.closed;
}

static int smtp_busy(struct sink *s)
{
	struct smtp_sink *ss = ss_of(s);

	return ss && (ss->qlen || (ss->end_wanted && !ss->ended) || client_full(ss));
}

/* Deliveries the server has yet to answer (their end went): the group
 * commit waits a little for them (copy.c). */
static unsigned smtp_pending(struct sink *s)
{
	struct smtp_sink *ss = ss_of(s);

	return ss && !ss->c.closed ? ss->sent : 0;
}

static int smtp_batch_more(struct sink *s)
{
	(void)s;
	return 0; /* one message per transaction */
}

/* Hands the queued answers to the copy path, in order. */
static void verdicts_drain(struct smtp_sink *ss)
{
	while (ss->qlen) {
		struct smtp_verdict *v = &ss->q[ss->qhead];
		struct sink_verdict sv = {.ok = v->ok, .temporary = v->temporary, .why = v->why};

		ss->qhead = (ss->qhead + 1) % BATCH_SLOTS;
		ss->qlen--;
		sink_batch_done(v->b, &sv);
	}
}

/* Queues the answer to batch b; the loop hands it over (verdict_task). */
static void verdict(struct smtp_sink *ss, struct batch *b, int ok, int temporary, const char *why)
{
	struct smtp_verdict *v;

	if (ss->qlen == BATCH_SLOTS)
		return; /* cannot happen: one per batch, BATCH_SLOTS batches */
	v = &ss->q[(ss->qhead + ss->qlen++) % BATCH_SLOTS];
	v->b = b;
	v->ok = ok;
	v->temporary = temporary;
	snprintf(v->why, sizeof(v->why), "%s", why);
	loop_defer(ss->s->w->job->loop, &ss->s->task);
}

/* Hands held header bytes to the client as far as it takes them. */
static void hold_flush(struct smtp_sink *ss)
{
	while (ss->begun && !ss->refused && ss->hold_off < ss->hold_len && !ss->c.closed) {
		size_t n = ss->hold_len - ss->hold_off, room = smtp_write_space(&ss->c);
		int rc;

		if (n > room)
			n = room;
		rc = n ? smtp_msg_data(&ss->c, ss->hold + ss->hold_off, n) : -EAGAIN;
		if (rc == -EAGAIN) {
			smtp_want_writable(&ss->c); /* on_writable goes on */
			break;
		}
		if (rc < 0) {
			ss->hold_off = ss->hold_len; /* refused (MAIL/RCPT): the end tells */
			break;
		}
		ss->hold_off += n;
	}
}

static void try_end(struct smtp_sink *ss)

{
	if (!ss->end_wanted || ss->ended || !ss->begun || ss->c.closed)
		return;
	if (ss->refused) {
		ss->ended = 1;
		verdict(ss, ss->cur, 0, 0, ss->refused_why);
		return;
	}
	if (ss->hold_off < ss->hold_len)
		return; /* writable brings us back */
	ss->ended = 1;
	if (smtp_msg_end(&ss->c) < 0) {
		if (!ss->c.closed)
			verdict(ss, ss->cur, 0, 0, "the message could not be ended");
		return;
	}
	ss->sent++;
}

/* The envelope from the held header; the transaction starts. */
static void msg_start(struct sink *s)
{
	struct smtp_sink *ss = ss_of(s);
	const struct job_opts *o = s->w->job->o;
	size_t hl = mailhdr_end(ss->hold, ss->hold_len);
	const char *rcpt[1] = {o->rcpt};
	struct smtp_msg m = {.size = ss->size, .from = "", .rcpt = rcpt, .nrcpt = 1,
	                     .flags = SMTP_MSG_8BIT};
	struct mf_error e;
	int rc;

	if (!hl)
		hl = ss->hold_len;
	if (client_full(ss)) {
		ss->start_pending = 1; /* verdict_task starts it */
		return;
	}
	ss->begun = 1;
	if (o->mail_from)
		m.from = o->mail_from;
	else if (mailhdr_return_path(ss->hold, hl, ss->from, sizeof(ss->from)) == 1)
		m.from = ss->from;
	if (mailhdr_has_utf8(ss->hold, hl))
		m.flags |= SMTP_MSG_UTF8;
	rc = smtp_msg_begin(&ss->c, &m, ss->cur, &e);
	if (rc == -EINVAL && m.from[0] && !o->mail_from) {
		/* the message's Return-Path is not one SMTP can carry */
		m.from = "";
		rc = smtp_msg_begin(&ss->c, &m, ss->cur, &e);
	}
	if (rc < 0) {
		ss->refused = 1;
		snprintf(ss->refused_why, sizeof(ss->refused_why), "%s", e.msg);
		return;
	}
	hold_flush(ss);
}

static void smtp_batch_begin(struct sink *s, struct batch *b)
{
	ss_of(s)->cur = b;
}

static void smtp_msg_begin_(struct sink *s, struct batch *b, const struct sink_msg *m)
{
	struct smtp_sink *ss = ss_of(s);

	ss->cur = b;
	ss->size = m->size;
	ss->hold_len = ss->hold_off = 0;
	ss->begun = ss->start_pending = ss->refused = ss->end_wanted = ss->ended = 0;
	ss->from[0] = '\0';
}

static size_t smtp_space(struct sink *s)
{
	struct smtp_sink *ss = ss_of(s);

	if (!ss->begun)
		return ss->start_pending ? 0 : SINK_SMTP_HOLD - ss->hold_len;
	if (ss->refused || smtp_msg_failed(&ss->c))
		return SIZE_MAX / 2; /* swallowed: the end reports it */
	if (ss->hold_off < ss->hold_len)
		return 0;
	return smtp_write_space(&ss->c);
}

static void smtp_want_space(struct sink *s)
{
	struct smtp_sink *ss = ss_of(s);

	ss->want = 1;
	if (!ss->c.closed)
		smtp_want_writable(&ss->c);
}

static void smtp_data(struct sink *s, const uint8_t *p, size_t n)
{
	struct smtp_sink *ss = ss_of(s);

	if (!ss->begun) {
		if (n > SINK_SMTP_HOLD - ss->hold_len)
			n = SINK_SMTP_HOLD - ss->hold_len; /* never: n <= space() */
		memcpy(ss->hold + ss->hold_len, p, n);
		ss->hold_len += n;
		if (ss->hold_len == SINK_SMTP_HOLD || mailhdr_end(ss->hold, ss->hold_len))
			msg_start(s);
		return;
	}
	if (ss->refused || ss->c.closed)
		return;
	if (smtp_msg_data(&ss->c, p, n) == -ECANCELED)
		return; /* MAIL or RCPT refused: the rest is swallowed, the end tells */
}

static void smtp_msg_end_(struct sink *s, struct batch *b)
{
	(void)s, (void)b;
}

static void smtp_commit(struct sink *s, struct batch *b)
{
	struct smtp_sink *ss = ss_of(s);

	(void)b;
	if (!ss->begun && !ss->start_pending)
		msg_start(s); /* a message shorter than its header hold */
	ss->end_wanted = 1;
	try_end(ss);
}

static void smtp_discard(struct sink *s, struct batch *b)
{
	(void)s, (void)b; /* never answered early */
}

static void smtp_abort(struct sink *s)
{
	struct smtp_sink *ss = ss_of(s);

	if (ss)
		smtp_client_close(&ss->c);
}

/* ---- the client's callbacks ---------------------------------------------------- */

static void on_ready(struct smtp_client *c)
{
	struct smtp_sink *ss = c->ud;

	sink_ready(ss->s->w);
}

static void on_error(struct smtp_client *c, const struct mf_error *err)
{
	struct smtp_sink *ss = c->ud;

	/* Answers that came before the connection went still count: those
	 * messages were delivered. */
	verdicts_drain(ss);
	ss->sent = 0;
	ss->start_pending = 0;
	sink_failed(ss->s->w, err);
}

static void on_done(struct smtp_client *c, const struct smtp_result *r, void *msg_ud)
{
	struct smtp_sink *ss = c->ud;
	const struct smtp_status *d = r->decisive;
	char why[600];

	(void)c;
	if (ss->sent)
		ss->sent--;
	if (d)
		smtp_status_describe(d, r->decisive_addr, why, sizeof(why));
	else
		snprintf(why, sizeof(why), "no reply");
	verdict(ss, msg_ud, r->outcome == 2, r->outcome == 4, why);
}

static void on_writable(struct smtp_client *c)
{
	struct smtp_sink *ss = c->ud;

	hold_flush(ss);
	try_end(ss);
	if (ss->hold_off == ss->hold_len || ss->refused) {
		ss->want = 0;
		sink_writable(ss->s->w); /* a starved or paused source goes on */
	}
}

static const struct smtp_client_cb smtp_cb = {
	.ready = on_ready,
	.error = on_error,
	.done = on_done,
	.writable = on_writable,
};

static void verdict_task(struct loop *l, struct loop_task *t)
{
	struct sink *s = (struct sink *)((char *)t - offsetof(struct sink, task));
	struct smtp_sink *ss = ss_of(s);

	(void)l;
	if (!ss)
		return;
	verdicts_drain(ss);
	/* the next message may start now that the client is idle */
	if (ss->start_pending && smtp_can_begin(&ss->c)) {
		ss->start_pending = 0;
		msg_start(s);
		try_end(ss);
		if (ss->hold_off == ss->hold_len || ss->refused) {
			ss->want = 0;
			sink_writable(s->w); /* a starved or paused source goes on */
		}
	}
}

static int smtp_open(struct sink *s, struct mf_error *err)
{
	struct smtp_sink *ss = ss_of(s);
	struct job *j = s->w->job;

	if (!ss) {
		if (!(ss = calloc(1, sizeof(*ss))) || !(ss->hold = malloc(SINK_SMTP_HOLD))) {
			free(ss);
			mf_err_set(err, -ENOMEM, "out of memory");
			return -ENOMEM;
		}
		ss->s = s;
		s->priv = ss;
		s->task.fn = verdict_task;
	}
	ss->cur = NULL;
	ss->want = ss->start_pending = 0;
	ss->sent = 0;
	ss->qhead = ss->qlen = 0;
	return smtp_client_open(&ss->c, j->loop, &j->o->dst_smtp, &smtp_cb, ss, err);
}

static void smtp_close(struct sink *s, int graceful)
{
	struct smtp_sink *ss = ss_of(s);

	if (!ss || ss->c.closed)
		return;
	if (graceful)
		smtp_client_quit(&ss->c);
	else
		smtp_client_close(&ss->c);
}

static void smtp_release(struct sink *s)
{
	struct smtp_sink *ss = ss_of(s);

	if (ss)
		smtp_client_close(&ss->c);
}

/* The client's memory stays until the job ends: a reconnect reuses it. */
static void smtp_destroy(struct sink *s)
{
	struct smtp_sink *ss = ss_of(s);

	if (!ss)
		return;
	smtp_client_close(&ss->c);
	free(ss->hold);
	free(ss);
	s->priv = NULL;
}

static void smtp_wire(struct sink *s, uint64_t *in, uint64_t *out)
{
	struct smtp_sink *ss = ss_of(s);

	*in = *out = 0;
	if (ss)
		smtp_client_wire(&ss->c, in, out);
}

const struct sink_ops sink_smtp_ops = {
	.kind = "smtp",
	.caps = 0,
	.open = smtp_open,
	.close = smtp_close,
	.release = smtp_release,
	.wire = smtp_wire,
	.who = smtp_who,
	.size_limit = smtp_size_limit,
	.closed = smtp_closed,
	.batch_more = smtp_batch_more,
	.batch_begin = smtp_batch_begin,
	.msg_begin = smtp_msg_begin_,
	.space = smtp_space,
	.want_space = smtp_want_space,
	.data = smtp_data,
	.msg_end = smtp_msg_end_,
	.commit = smtp_commit,
	.discard = smtp_discard,
	.abort = smtp_abort,
	.destroy = smtp_destroy,
	.busy = smtp_busy,
	.pending = smtp_pending,
};
