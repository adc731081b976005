/*
 * test_copy — the copy path (engine/sync/copy.c) between an in-memory
 * source and an in-memory sink, on a real state, without a server:
 * batching, backpressure, verdicts (stored with ids, a refused batch
 * retried one by one, a refused message failed and kept below the
 * mailbox's recorded position), an answer before a batch's end, and a
 * failing state commit injected at every commit point in turn (SQLite's
 * habit). After each fault the process "crashes" (uncommitted writes
 * dropped) and the state must account for everything the sink stored:
 * nothing stored is unknown to the state (no duplicate after settle), and
 * nothing recorded as done was not stored (no loss).
 */
#include "engine/sync/job_int.h"
#include "tests/unit/unit.h"

#include <stddef.h>
#include <unistd.h>

#define NMSG 60

struct pend {
	struct batch *b;
	unsigned n;
	uint32_t uid[BATCH_MAX];
};

struct h {
	struct worker w; /* first: the harness is found from its worker */
	struct loop loop;
	struct state *st;
	struct job j;
	struct mbox mb;
	struct job_opts o;
	struct job_summary sum;
	char dir[64];
	/* the sink */
	int multi, closed, aborted;
	size_t space, space_after; /* what space() says; after want_space() */
	int wanted;
	unsigned commits, discards, journal_late;
	struct pend pend[BATCH_SLOTS * 2];
	unsigned phead, pn;
	struct pend cur; /* the batch being written */
	uint32_t refuse_uid;	/* a message the sink refuses (0 none) */
	uint32_t temp_uid;	/* a message refused for now (SMTP 4xx)... */
	unsigned temp_times;	/* ...this many times */
	int refuse_early;	/* ...on its header, before the batch ends */
	int early_pending;	/* that answer is due */
	uint8_t stored[NMSG + 1]; /* times each uid was stored */
	uint32_t next_id;
	/* the source */
	int paused, kicked;
	unsigned retries_asked;
	unsigned inflight;
};

static struct h *H(struct worker *w)
{
	return (struct h *)((char *)w - offsetof(struct h, w));
}

/* ---- the in-memory sink ---- */
static const char *m_who(struct sink *s) { (void)s; return "destination mem"; }
static uint64_t m_limit(struct sink *s) { (void)s; return 0; }
static int m_closed(struct sink *s) { return H(s->w)->closed; }
static int m_more(struct sink *s) { return H(s->w)->multi; }
static int m_open(struct sink *s, struct mf_error *e) { (void)s, (void)e; return 0; }
static void m_close(struct sink *s, int g) { (void)g; H(s->w)->closed = 1; }
static void m_release(struct sink *s) { (void)s; }
static void m_wire(struct sink *s, uint64_t *in, uint64_t *out) { (void)s; *in = *out = 0; }

static void m_batch_begin(struct sink *s, struct batch *b)
{
	struct h *h = H(s->w);

	h->cur.b = b;
	h->cur.n = 0;
}

static void m_msg_begin(struct sink *s, struct batch *b, const struct sink_msg *m)
{
	struct h *h = H(s->w);

	(void)b;
	h->cur.uid[h->cur.n++] = m->uid;
	if (h->refuse_early && m->uid == h->refuse_uid) {
		/* refused on its header, as Dovecot does over quota: the answer
		 * comes (from the loop) while the batch is still being written */
		struct pend *p = &h->pend[(h->phead + h->pn++) % (BATCH_SLOTS * 2)];

		*p = h->cur;
		p->n = 0; /* marks the early answer */
		h->refuse_early = 0;
		h->early_pending = 1;
	}
}

static size_t m_space(struct sink *s) { return H(s->w)->space; }

static void m_want_space(struct sink *s)
{
	struct h *h = H(s->w);

	h->wanted = 1;
}

static void m_data(struct sink *s, const uint8_t *p, size_t n)
{
	struct h *h = H(s->w);

	(void)p;
	if (h->space != (size_t)-1)
		h->space -= n; /* copy_msg_data never writes more than space() */
}
static void m_msg_end(struct sink *s, struct batch *b) { (void)s, (void)b; }

/* The commit point: the batch's intents must be durable by now. */
static void m_commit(struct sink *s, struct batch *b)
{
	struct h *h = H(s->w);

	(void)b;
	h->commits++;
	if (h->j.state_dirty)
		h->journal_late++;
	for (unsigned i = 0; i < h->cur.n; i++) {
		struct state_msg_key k = {h->j.jobid, h->mb.mbid, h->w.uidvalidity, h->cur.uid[i]};
		struct state_msg sm;
		struct mf_error e;

		if (state_msg_get(h->st, &k, &sm, &e) < 0 || sm.status != STATE_MSG_INTENT)
			h->journal_late++;
	}
	h->pend[(h->phead + h->pn++) % (BATCH_SLOTS * 2)] = h->cur;
}

static void m_discard(struct sink *s, struct batch *b) { (void)b; H(s->w)->discards++; }
static void m_abort(struct sink *s) { H(s->w)->aborted = H(s->w)->closed = 1; }

static const struct sink_ops mem_sink = {
	.kind = "mem",
	.caps = SINK_FOLDERS | SINK_FLAGS | SINK_IDS | SINK_BATCH,
	.open = m_open, .close = m_close, .release = m_release, .wire = m_wire,
	.who = m_who, .size_limit = m_limit, .closed = m_closed, .batch_more = m_more,
	.batch_begin = m_batch_begin, .msg_begin = m_msg_begin, .space = m_space,
	.want_space = m_want_space, .data = m_data, .msg_end = m_msg_end, .commit = m_commit,
	.discard = m_discard, .abort = m_abort,
};

/* ---- the in-memory source ---- */
static const char *s_who(struct source *s) { (void)s; return "source mem"; }
static void s_pause(struct source *s) { H(s->w)->paused = 1; }
static void s_kick(struct source *s) { H(s->w)->paused = 0; H(s->w)->kicked++; }
static unsigned s_inflight(struct source *s) { return H(s->w)->inflight; }
static void s_retries(struct source *s)
{
	H(s->w)->retries_asked++;
	H(s->w)->inflight = 1; /* the re-reads are in flight */
}

static const struct source_ops mem_source = {
	.kind = "mem", .caps = SOURCE_FOLDERS | SOURCE_FLAGS,
	.who = s_who, .pause = s_pause, .kick = s_kick,
	.reads_inflight = s_inflight, .read_retries = s_retries,
};

/* ---- the harness ---- */
static int h_open(struct h *h, const char *dir)
{
	struct mf_error e;
	int created;

	memset(h, 0, sizeof(*h));
	snprintf(h->dir, sizeof(h->dir), "%s", dir);
	if (loop_init(&h->loop, 64) < 0 || state_open(&h->st, dir, &e) < 0)
		return -1;
	h->o.batch_msgs = 8;
	h->o.batch_bytes = 1 << 20;
	h->o.retries = 0;
	h->o.out = stdout;
	h->j.loop = &h->loop;
	h->j.commit_task.fn = copy_commit_task;
	h->j.st = h->st;
	h->j.o = &h->o;
	h->j.sum = &h->sum;
	h->j.w = &h->w;
	h->j.nw = 1;
	h->j.mb = &h->mb;
	h->j.nmb = h->j.next_mb = 1;
	h->j.listed = h->j.dst_prepared = 1;
	h->mb.name = h->mb.dst_name = h->mb.display = (char *)"INBOX";
	h->mb.len = 5;
	if (state_job(h->st, "test", &h->j.jobid, &e) < 0 ||
	    state_mbox_id(h->st, h->j.jobid, "INBOX", 5, &h->mb.mbid, &created, &e) < 0)
		return -1;
	if (worker_init(&h->j, &h->w, 0) < 0)
		return -1;
	h->w.source = (struct source){&mem_source, &h->w};
	h->w.sink = (struct sink){&mem_sink, &h->w, NULL, {0}};
	h->w.src.closed = 1; /* never opened: LOGOUT at the end is a no-op */
	h->w.mb = &h->mb;
	h->w.phase = W_FETCH;
	h->w.uidvalidity = 7;
	h->w.uidnext = NMSG + 1;
	h->w.start_uid = 1;
	h->w.end_uid = NMSG;
	h->multi = 1;
	h->space = (size_t)-1;
	h->inflight = 1;
	h->next_id = 1000;
	return 0;
}

static void h_close(struct h *h, int crash)
{
	for (unsigned i = 0; i < BATCH_SLOTS; i++)
		free(h->w.slot[i]);
	free(h->w.retry);
	free(h->w.counted);
	msghash_free(&h->w.mh);
	if (crash)
		state_abort(h->st); /* a crash: what was not committed is gone */
	state_close(h->st);
	loop_free(&h->loop);
}

/* The oldest batch's answer, as the loop would bring it. */
static int h_answer(struct h *h)
{
	struct pend p;
	struct sink_verdict v = {0};
	uint32_t ids[BATCH_MAX];
	int refused = 0;

	if (!h->pn)
		return 0;
	p = h->pend[h->phead];
	h->phead = (h->phead + 1) % (BATCH_SLOTS * 2);
	h->pn--;
	if (p.n == 0 && p.b) {
		v.why = "[OVERQUOTA] test";
		sink_batch_done(p.b, &v);
		return 1;
	}
	for (unsigned i = 0; i < p.n; i++)
		refused |= p.uid[i] == h->refuse_uid;
	for (unsigned i = 0; i < p.n; i++)
		if (p.uid[i] == h->temp_uid && h->temp_times) {
			h->temp_times--;
			refused = v.temporary = 1;
		}
	if (refused) {
		v.why = "[TEST] refused";
	} else {
		for (unsigned i = 0; i < p.n; i++) {
			h->stored[p.uid[i]]++;
			ids[i] = h->next_id++;
		}
		v.ok = 1;
		v.dst_uidv = 99;
		v.ids = ids;
		v.nids = p.n;
	}
	sink_batch_done(p.b, &v);
	return 1;
}

/* Streams message uid in chunks; 0, or -1 if the copy path stopped us. */
static int h_stream(struct h *h, uint32_t uid)
{
	char body[600];
	size_t n = (size_t)snprintf(body, sizeof(body), "Subject: m%u\r\n\r\n", uid);
	struct source_msg m = {uid, 0, uid, 1700000000, "\\Seen", 5, "01-Jan-2026 00:00:00 +0000",
	                       NULL};

	while (n < 40 + (uid * 37) % 500)
		body[n++] = (char)('a' + uid % 26);
	m.size = n;
	copy_commit_run(&h->j); /* the loop's next iteration: the group commit */
	while (copy_slots_full(&h->w))
		if (!h_answer(h))
			return -1;
	if (h->j.fatal)
		return -1;
	if (copy_msg_begin(&h->w, &m) < 0)
		return -1;
	if (h->early_pending) {
		/* answers come in order: the older batches', then this one */
		while (h->pn)
			h_answer(h);
		h->early_pending = 0;
	}
	for (size_t at = 0; at < n;) {
		size_t k = n - at < 64 ? n - at : 64;
		ssize_t r = copy_msg_data(&h->w, (const uint8_t *)body + at, k);

		if (r < 0)
			return -1;
		if (r == 0) {
			if (!h->paused || !h->wanted)
				return -1;
			h->space = h->space_after;
			h->wanted = 0;
			sink_writable(&h->w);
			if (h->paused)
				return -1;
			continue;
		}
		at += (size_t)r;
	}
	return copy_msg_end(&h->w);
}

/* A whole pass: every message, then the retries the copy path asks for. */
static void h_pass(struct h *h)
{
	for (uint32_t uid = 1; uid <= NMSG && !h->j.fatal; uid++)
		if (h_stream(h, uid) < 0)
			break;
	h->inflight = 0;
	while (!h->j.fatal && h->w.phase == W_FETCH) {
		unsigned asked = h->retries_asked;

		worker_check_done(&h->w);
		copy_commit_run(&h->j);
		while (h_answer(h)) {
			worker_check_done(&h->w);
			copy_commit_run(&h->j);
		}
		if (h->retries_asked != asked) {
			h->inflight = 1;
			for (size_t i = 0; i < h->w.nretry; i++)
				if (h_stream(h, h->w.retry[i]) < 0)
					break;
			h->w.retry_pos = h->w.nretry;
			h->inflight = 0;
		} else if (h->w.phase == W_FETCH && !h->pn) {
			break;
		}
	}
	job_commit(&h->j);
}

static int msg_status(struct h *h, uint32_t uid, struct state_msg *sm)
{
	struct state_msg_key k = {h->j.jobid, h->mb.mbid, 7, uid};
	struct mf_error e;

	return state_msg_get(h->st, &k, sm, &e) < 0 ? 0 : sm->status;
}

/* A new state in dir (a mkdtemp template) and the harness on it. */
static int h_setup(struct unit_ctx *u, struct h *h, char *dir)
{
	if (!mkdtemp(dir) || h_open(h, dir) < 0) {
		UNIT_CHECKF(u, 0, "no harness in %s", dir);
		return -1;
	}
	return 0;
}

static void t_all_stored_with_ids(struct unit_ctx *u)
{
	struct h h;
	char dir[] = "/tmp/mf-test-copy-XXXXXX";
	struct state_mbox rec;
	struct mf_error e;

	if (h_setup(u, &h, dir) < 0)
		return;
	h.space = 100; /* backpressure: the sink takes 100 bytes, then waits */
	h.space_after = 100;
	h_pass(&h);
	UNIT_CHECKF(u, h.sum.copied == NMSG, "copied %llu", (unsigned long long)h.sum.copied);
	UNIT_CHECK(u, h.kicked > 0 && h.journal_late == 0);
	for (uint32_t uid = 1; uid <= NMSG; uid++) {
		struct state_msg sm;

		UNIT_CHECKF(u, msg_status(&h, uid, &sm) == STATE_MSG_DONE && sm.dst_uid >= 1000 &&
		                   sm.dst_uidvalidity == 99 && h.stored[uid] == 1,
		            "uid %u", uid);
	}
	UNIT_CHECK(u, state_mbox_get(h.st, h.j.jobid, h.mb.mbid, &rec, &e) == 0 &&
	                  rec.last_uid == NMSG && !rec.intents);
	UNIT_CHECK(u, h.commits == (NMSG + 7) / 8);
	h_close(&h, 0);
}

static void t_refused_message(struct unit_ctx *u)
{
	struct h h;
	char dir[] = "/tmp/mf-test-copy-XXXXXX";
	struct state_mbox rec;
	struct state_msg sm;
	struct mf_error e;

	if (h_setup(u, &h, dir) < 0)
		return;
	h.refuse_uid = 21;
	h_pass(&h);
	/* its batch of 8 was retried one by one; only 21 failed */
	UNIT_CHECKF(u, h.sum.copied == NMSG - 1 && h.sum.failed == 1, "copied %llu failed %llu",
	            (unsigned long long)h.sum.copied, (unsigned long long)h.sum.failed);
	UNIT_CHECK(u, h.retries_asked == 1 && h.w.nretry == 8);
	UNIT_CHECK(u, msg_status(&h, 21, &sm) == 0 && h.stored[21] == 0);
	for (uint32_t uid = 1; uid <= NMSG; uid++)
		UNIT_CHECKF(u, uid == 21 || (msg_status(&h, uid, &sm) == STATE_MSG_DONE && h.stored[uid] == 1),
		            "uid %u", uid);
	/* the next run starts again at 21 */
	UNIT_CHECK(u, state_mbox_get(h.st, h.j.jobid, h.mb.mbid, &rec, &e) == 0 && rec.last_uid == 20);
	h_close(&h, 0);
}

static void t_refused_early(struct unit_ctx *u)
{
	struct h h;
	char dir[] = "/tmp/mf-test-copy-XXXXXX";
	struct state_msg sm;

	if (h_setup(u, &h, dir) < 0)
		return;
	h.refuse_uid = 13;
	h.refuse_early = 1;
	h_pass(&h);
	UNIT_CHECK(u, h.discards >= 1);
	UNIT_CHECKF(u, h.sum.copied == NMSG - 1 && h.sum.failed == 1, "copied %llu failed %llu",
	            (unsigned long long)h.sum.copied, (unsigned long long)h.sum.failed);
	UNIT_CHECK(u, msg_status(&h, 13, &sm) == 0);
	h_close(&h, 0);
}

/* A pass, then the passes for messages refused for now: the backoff's
 * timer is the loop's (1 s, then 2 s). */
static void h_pass_all(struct h *h)
{
	h_pass(h);
	while (!h->j.fatal && h->w.phase == W_FETCH && h->w.retry_timer.armed &&
	       !h->w.retry_timer.cancelled) {
		unsigned asked = h->retries_asked;

		loop_run(&h->loop);
		if (h->retries_asked == asked)
			break;
		for (size_t i = 0; i < h->w.nretry; i++)
			if (h_stream(h, h->w.retry[i]) < 0)
				break;
		h->w.retry_pos = h->w.nretry;
		h->inflight = 0;
		worker_check_done(&h->w);
		copy_commit_run(&h->j);
		while (h_answer(h)) {
			worker_check_done(&h->w);
			copy_commit_run(&h->j);
		}
	}
	job_commit(&h->j);
}

/* SMTP's 4xx: one message per batch refused for now is read again after a
 * backoff and stored once; refused every time, it fails after --retries
 * passes and stays below the recorded position. */
static void t_temporary(struct unit_ctx *u)
{
	struct h h;
	char dir[] = "/tmp/mf-test-copy-XXXXXX";
	char dir2[] = "/tmp/mf-test-copy-XXXXXX";
	struct state_mbox rec;
	struct state_msg sm;
	struct mf_error e;

	if (h_setup(u, &h, dir) < 0)
		return;
	h.multi = 0;
	h.o.retries = 3;
	h.temp_uid = 30;
	h.temp_times = 1;
	h_pass_all(&h);
	UNIT_CHECKF(u, h.sum.copied == NMSG && h.sum.failed == 0 && h.stored[30] == 1,
	            "copied %llu failed %llu stored %u", (unsigned long long)h.sum.copied,
	            (unsigned long long)h.sum.failed, h.stored[30]);
	UNIT_CHECK(u, h.w.tmp_passes == 1 && msg_status(&h, 30, &sm) == STATE_MSG_DONE);
	UNIT_CHECK(u, state_mbox_get(h.st, h.j.jobid, h.mb.mbid, &rec, &e) == 0 &&
	                  rec.last_uid == NMSG);
	free(h.w.tmp);
	h_close(&h, 0);

	if (h_setup(u, &h, dir2) < 0)
		return;
	h.multi = 0;
	h.o.retries = 2;
	h.temp_uid = 30;
	h.temp_times = 100;
	h_pass_all(&h);
	UNIT_CHECKF(u, h.sum.copied == NMSG - 1 && h.sum.failed == 1 && h.stored[30] == 0,
	            "copied %llu failed %llu", (unsigned long long)h.sum.copied,
	            (unsigned long long)h.sum.failed);
	UNIT_CHECK(u, h.w.tmp_passes == 2 && msg_status(&h, 30, &sm) == 0);
	UNIT_CHECK(u, state_mbox_get(h.st, h.j.jobid, h.mb.mbid, &rec, &e) == 0 &&
	                  rec.last_uid == 29);
	free(h.w.tmp);
	h_close(&h, 0);
}

/* A failing state commit at the k-th commit point, for every k: the batch
 * whose intents could not be made durable never reaches its commit point,
 * the job stops, and after a crash the state accounts for every stored
 * message (done or intent: settle finds it) and for no message more. */
static void t_fault_at_every_commit(struct unit_ctx *u)
{
	unsigned k, faults = 0;

	for (k = 1; k <= 40; k++) {
		struct h h;
		char dir[] = "/tmp/mf-test-copy-XXXXXX";
		unsigned commits_before;
		uint8_t stored[NMSG + 1];

		if (h_setup(u, &h, dir) < 0)
			return;
		snprintf(h.j.test_fail_site, sizeof(h.j.test_fail_site), "commit");
		h.j.test_fail_at = k;
		h_pass(&h);
		commits_before = h.commits;
		if (!h.j.fatal) {
			/* fewer commit points than k: the fault never came */
			h_close(&h, 0);
			break;
		}
		faults++;
		UNIT_CHECKF(u, h.journal_late == 0, "k=%u: a batch crossed its commit point unjournaled", k);
		while (h_answer(&h)) /* answers in flight still arrive */
			;
		UNIT_CHECKF(u, h.commits == commits_before, "k=%u: committed after the fault", k);
		memcpy(stored, h.stored, sizeof(stored));
		h_close(&h, 1);
		/* the restart: everything stored is known (done, or an intent
		 * that settle looks for), everything done was stored once */
		if (h_open(&h, dir) < 0) {
			UNIT_CHECK(u, 0);
			return;
		}
		for (uint32_t uid = 1; uid <= NMSG; uid++) {
			struct state_msg sm;
			int st = msg_status(&h, uid, &sm);

			UNIT_CHECKF(u, stored[uid] <= 1, "k=%u uid %u stored twice", k, uid);
			UNIT_CHECKF(u, !stored[uid] || st == STATE_MSG_DONE || st == STATE_MSG_INTENT,
			            "k=%u uid %u stored but unknown to the state (a duplicate to come)", k,
			            uid);
			UNIT_CHECKF(u, st != STATE_MSG_DONE || stored[uid],
			            "k=%u uid %u recorded as copied but never stored", k, uid);
		}
		h_close(&h, 0);
	}
	fprintf(stderr, "# %u commit points faulted in turn\n", faults);
	UNIT_CHECKF(u, faults >= 5, "only %u commit points faulted", faults);
}

/* The group commit's window: a batch closed (intents written, not yet
 * durable) and another commit (the once-a-second tick's) fails before
 * the commit task runs. That failure dropped the intents, so the task
 * has nothing left to commit: the batch must still not cross its commit
 * point, and after the crash nothing stored is unknown. */
static void t_commit_fails_before_group_commit(struct unit_ctx *u)
{
	struct h h;
	char dir[] = "/tmp/mf-test-copy-XXXXXX";
	unsigned commits;

	if (h_setup(u, &h, dir) < 0)
		return;
	h.o.batch_msgs = 1;
	UNIT_CHECK(u, h_stream(&h, 1) == 0 && h_stream(&h, 2) == 0);
	commits = h.commits; /* message 2's batch waits for the group commit */
	snprintf(h.j.test_fail_site, sizeof(h.j.test_fail_site), "commit");
	h.j.test_fail_at = h.j.test_fail_calls + 1;
	UNIT_CHECK(u, job_commit(&h.j) < 0 && h.j.fatal);
	copy_commit_run(&h.j);
	UNIT_CHECKF(u, h.commits == commits, "crossed its commit point: %u -> %u", commits,
	            h.commits);
	UNIT_CHECK(u, h.aborted && h.journal_late == 0);
	h_close(&h, 1);
}

/* A discarding scope (a dry run's, scope.c) around the whole copy path:
 * every message reaches the sink and nothing reaches the state, while
 * another job on the same state (as `mailferry run` has them, one loop,
 * one write transaction) writes and commits in between, and keeps what
 * it wrote. */
static void t_discarding_scope(struct unit_ctx *u)
{
	struct h h;
	char dir[] = "/tmp/mf-test-copy-XXXXXX";
	struct job other;
	struct state_mbox rec = {0}, got;
	struct state_msg sm;
	struct mf_error e;
	uint32_t other_mbid = 0;
	int created, n = 0;

	if (h_setup(u, &h, dir) < 0)
		return;
	h.o.dry_run = 1;
	UNIT_CHECK(u, scope_open(&h.j, "test", &e) == 0); /* the job exists: its id */
	UNIT_CHECK(u, h.j.discard == 1 && h.j.jobid != JOB_DRY_JOBID);
	other = h.j;
	other.o = &(struct job_opts){0};
	other.discard = 0;
	UNIT_CHECK(u, scope_open(&other, "other job", &e) == 0 && other.discard == 0);
	UNIT_CHECK(u, state_mbox_id(h.st, other.jobid, "INBOX", 5, &other_mbid, &created, &e) == 0);
	h_pass(&h);
	UNIT_CHECKF(u, h.sum.copied == NMSG, "copied %llu", (unsigned long long)h.sum.copied);
	for (uint32_t uid = 1; uid <= NMSG; uid++)
		n += h.stored[uid] == 1;
	UNIT_CHECK(u, n == NMSG);
	/* the other job writes and commits while the dry one's are discarded */
	rec.uidvalidity = 5;
	rec.last_uid = 42;
	UNIT_CHECK(u, scope_mbox_put(&other, other_mbid, &rec, &e) == 0);
	other.state_dirty = 1;
	UNIT_CHECK(u, job_commit(&other) == 0);
	UNIT_CHECK(u, scope_mbox_put(&h.j, h.mb.mbid, &rec, &e) == 0);
	h.j.state_dirty = 1;
	UNIT_CHECK(u, job_commit(&h.j) == 0 && h.j.state_dirty == 1); /* nothing to commit */
	h_close(&h, 1); /* and whatever was left uncommitted is dropped */
	UNIT_CHECK(u, state_open(&h.st, dir, &e) == 0);
	for (uint32_t uid = 1; uid <= NMSG; uid++) {
		struct state_msg_key k = {h.j.jobid, h.mb.mbid, 7, uid};

		UNIT_CHECKF(u, state_msg_get(h.st, &k, &sm, &e) == -ENOENT, "uid %u recorded", uid);
	}
	UNIT_CHECK(u, state_mbox_get(h.st, h.j.jobid, h.mb.mbid, &got, &e) == -ENOENT);
	UNIT_CHECK(u, state_mbox_get(h.st, other.jobid, other_mbid, &got, &e) == 0 &&
	                  got.last_uid == 42);
	state_close(h.st);
}

/* --dry-run's counting sink (sink_count.c) around the in-memory one: every
 * message goes through the copy path by its size alone, each batch is
 * answered "counted, not stored" from the loop (so the source is paced by
 * the slots), nothing reaches the real sink's commit point or the state,
 * and nothing counts as copied. */
static void t_counting_sink(struct unit_ctx *u)
{
	struct h h;
	char dir[] = "/tmp/mf-test-copy-XXXXXX";
	struct state_msg sm;
	struct state_mbox rec;
	struct mf_error e;
	unsigned waits = 0;

	if (h_setup(u, &h, dir) < 0)
		return;
	h.o.dry_run = 1;
	h.o.batch_msgs = 2; /* more batches than slots */
	UNIT_CHECK(u, scope_open(&h.j, "test", &e) == 0 && h.j.discard);
	UNIT_CHECK(u, sink_count_wrap(&h.w.sink) == 0);
	UNIT_CHECK(u, sink_can(&h.w.sink, SINK_COUNTS | SINK_FOLDERS | SINK_IDS) &&
	                  !sink_can(&h.w.sink, SINK_EXPUNGE));
	UNIT_CHECK(u, !strcmp(h.w.sink.ops->who(&h.w.sink), "destination mem"));
	for (uint32_t uid = 1; uid <= NMSG; uid++) {
		struct source_msg m = {uid, 100 + uid, 0, 0, "", 0, "", NULL};

		while (copy_slots_full(&h.w)) {
			waits++;
			loop_run(&h.loop); /* the counting sink answers from the loop */
		}
		UNIT_CHECK(u, copy_msg_begin(&h.w, &m) == 0 && copy_msg_end(&h.w) == 0);
	}
	h.inflight = 0;
	worker_check_done(&h.w);
	loop_run(&h.loop);
	UNIT_CHECKF(u, h.w.dry_count == NMSG, "counted %llu", (unsigned long long)h.w.dry_count);
	UNIT_CHECKF(u, waits > 0, "the source never waited for a verdict");
	UNIT_CHECK(u, h.commits == 0 && h.sum.copied == 0 && h.w.phase != W_FETCH);
	for (uint32_t uid = 1; uid <= NMSG; uid++)
		UNIT_CHECKF(u, msg_status(&h, uid, &sm) == 0 && !h.stored[uid], "uid %u", uid);
	UNIT_CHECK(u, state_mbox_get(h.st, h.j.jobid, h.mb.mbid, &rec, &e) == -ENOENT);
	h.w.sink.ops->destroy(&h.w.sink);
	UNIT_CHECK(u, h.w.sink.ops == &mem_sink && !h.w.sink.priv);
	h_close(&h, 0);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_all_stored_with_ids);
	UNIT_RUN(&u, t_refused_message);
	UNIT_RUN(&u, t_refused_early);
	UNIT_RUN(&u, t_temporary);
	UNIT_RUN(&u, t_fault_at_every_commit);
	UNIT_RUN(&u, t_commit_fails_before_group_commit);
	UNIT_RUN(&u, t_discarding_scope);
	UNIT_RUN(&u, t_counting_sink);
	return unit_done(&u);
}
