/*
 * sink_count — --dry-run's sink (sink.h): counts what a real run would
 * store, stores nothing, and answers every batch "counted, not stored"
 * (sink_verdict.counted). It wraps the real destination's sink: the
 * session (open, close, who, the size limit, the closed state) is the
 * real one, so what the plan looks up on the destination (its mailbox
 * list, what --dedupe finds there, the largest message it takes) is what
 * a real run would see; only the writes are not made. Its capabilities
 * are the real sink's plus SINK_COUNTS, so the copy logic adapts as it
 * would for the real one (no folders for SMTP, ...), and a source seeing
 * SINK_COUNTS sends sizes, not bytes (source_imap: UID FETCH RFC822.SIZE;
 * POP3: LIST's sizes; an archive: its index's), paced like a real pass
 * by the batch slots: a verdict comes from the loop, never from inside
 * the commit.
 *
 * Each mailbox's pass ends with one line (sink_count_report): how many
 * messages would be copied, delivered or restored.
 *
 * Not for: what a dry run prints about folders, renames, flag changes,
 * expunges or settling (prepare.c, plan.c, changes.c, worker.c), nor the
 * state, which a dry run's scope keeps untouched (scope.c).
 */
#include "engine/sync/job_int.h"

struct count_sink {
	struct sink_ops ops;	/* sink_count_ops with the real sink's caps */
	struct sink inner;	/* the real sink: its session and its state */
	struct batch *q[BATCH_SLOTS]; /* committed, not answered yet */
	unsigned qhead, qlen;
};

static struct count_sink *cs_of(struct sink *s)
{
	return s->priv;
}

static int c_open(struct sink *s, struct mf_error *err)
{
	struct count_sink *cs = cs_of(s);

	return cs->inner.ops->open(&cs->inner, err);
}

static void c_close(struct sink *s, int graceful)
{
	struct count_sink *cs = cs_of(s);

	cs->inner.ops->close(&cs->inner, graceful);
}

static void c_release(struct sink *s)
{
	struct count_sink *cs = cs_of(s);

	cs->inner.ops->release(&cs->inner);
}

static void c_wire(struct sink *s, uint64_t *in, uint64_t *out)
{
	struct count_sink *cs = cs_of(s);

	cs->inner.ops->wire(&cs->inner, in, out);
}

static const char *c_who(struct sink *s)
{
	struct count_sink *cs = cs_of(s);

	return cs->inner.ops->who(&cs->inner);
}

static uint64_t c_size_limit(struct sink *s)
{
	struct count_sink *cs = cs_of(s);

	return cs->inner.ops->size_limit(&cs->inner);
}

static int c_closed(struct sink *s)
{
	struct count_sink *cs = cs_of(s);

	return cs->inner.ops->closed(&cs->inner);
}

static int c_batch_more(struct sink *s)
{
	(void)s;
	return 1; /* nothing is sent: batches as large as the copy path makes them */
}

static void c_batch_begin(struct sink *s, struct batch *b)
{
	(void)s, (void)b;
}

static void c_msg_begin(struct sink *s, struct batch *b, const struct sink_msg *m)
{
	(void)s, (void)b, (void)m;
}

static size_t c_space(struct sink *s)
{
	(void)s;
	return (size_t)1 << 20; /* bytes a source sends anyway are dropped */
}

static void c_want_space(struct sink *s)
{
	(void)s;
}

static void c_data(struct sink *s, const uint8_t *p, size_t n)
{
	(void)s, (void)p, (void)n;
}

static void c_msg_end(struct sink *s, struct batch *b)
{
	(void)s, (void)b;
}

/* Hands the queued answers to the copy path, in order. */
static void c_task(struct loop *l, struct loop_task *t)
{
	struct sink *s = (struct sink *)((char *)t - offsetof(struct sink, task));
	struct count_sink *cs = cs_of(s);

	(void)l;
	while (cs->qlen) {
		struct batch *b = cs->q[cs->qhead];

		cs->qhead = (cs->qhead + 1) % BATCH_SLOTS;
		cs->qlen--;
		sink_batch_done(b, &(struct sink_verdict){.counted = 1});
	}
}

/* The commit point: nothing crosses it. The answer comes from the loop,
 * as a real sink's would, so that the source is paced by the slots. */
static void c_commit(struct sink *s, struct batch *b)
{
	struct count_sink *cs = cs_of(s);

	if (cs->qlen == BATCH_SLOTS)
		return; /* cannot happen: one per batch, BATCH_SLOTS batches */
	cs->q[(cs->qhead + cs->qlen++) % BATCH_SLOTS] = b;
	loop_defer(s->w->job->loop, &s->task);
}

static void c_discard(struct sink *s, struct batch *b)
{
	(void)s, (void)b; /* never answered early */
}

static void c_abort(struct sink *s)
{
	struct count_sink *cs = cs_of(s);

	cs->qlen = 0;
	cs->inner.ops->abort(&cs->inner);
}

static void c_destroy(struct sink *s)
{
	struct count_sink *cs = cs_of(s);

	if (!cs)
		return;
	if (cs->inner.ops->destroy)
		cs->inner.ops->destroy(&cs->inner);
	s->ops = cs->inner.ops; /* nothing points into freed memory */
	s->priv = NULL;
	free(cs);
}

static const struct sink_ops sink_count_ops = {
	.kind = "count",
	.caps = SINK_COUNTS, /* | the real sink's (sink_count_wrap) */
	.open = c_open,
	.close = c_close,
	.release = c_release,
	.wire = c_wire,
	.who = c_who,
	.size_limit = c_size_limit,
	.closed = c_closed,
	.batch_more = c_batch_more,
	.batch_begin = c_batch_begin,
	.msg_begin = c_msg_begin,
	.space = c_space,
	.want_space = c_want_space,
	.data = c_data,
	.msg_end = c_msg_end,
	.commit = c_commit,
	.discard = c_discard,
	.abort = c_abort,
	.destroy = c_destroy,
};

int sink_count_wrap(struct sink *s)
{
	struct count_sink *cs = calloc(1, sizeof(*cs));

	if (!cs)
		return -ENOMEM;
	cs->inner = *s;
	cs->ops = sink_count_ops;
	cs->ops.caps |= s->ops->caps;
	s->ops = &cs->ops;
	s->priv = cs;
	s->task = (struct loop_task){0};
	s->task.fn = c_task;
	return 0;
}

void sink_count_report(struct worker *w)
{
	struct job *j = w->job;
	struct mbox *mb = w->mb;
	unsigned long long n = (unsigned long long)w->dry_count;

	progress_clear(j);
	if (w->arc)
		mf_print("mailferry: dry-run: mailbox \"%s\": %llu messages would be restored "
		         "into \"%s\"",
		         mb->display, n, mb->dst_name);
	else if (!sink_can(&w->sink, SINK_FOLDERS))
		mf_print("mailferry: dry-run: mailbox \"%s\": %llu new messages would be "
		         "delivered to <%s>",
		         mb->display, n, j->o->rcpt);
	else
		mf_print("mailferry: dry-run: mailbox \"%s\": %llu new messages would be "
		         "copied into \"%s\"",
		         mb->display, n, mb->dst_name);
}
