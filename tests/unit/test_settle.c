/*
 * test_settle — an interrupted run's APPENDs settled (settle.c), in memory
 * (memsrv): of a batch whose intents were recorded before a crash, the
 * messages the destination holds are found by content and recorded
 * against their copies (with the folder's UIDVALIDITY), the one it does
 * not hold is copied again, and nothing is copied twice. Then a failing
 * state commit at every commit point of the pass in turn, a crash and a
 * restart: the same holds.
 */
#include "tests/unit/memsrv.h"
#include "tests/unit/unit.h"

#define SRC_UIDV 9
#define DST_UIDV 77
#define NMSG 10

static void body_of(unsigned i, char *b, size_t cap)
{
	snprintf(b, cap, "Subject: s%u\r\nMessage-ID: <%u@settle>\r\n\r\nsettle %u\r\n", i, i, i);
}

/* 1..4 copied and confirmed; 5..8 intents, of which 5..7 reached the
 * destination before the crash; 9, 10 new. */
static int setup(struct mh *h)
{
	struct ms_box *src = ms_box(&h->src, "INBOX", SRC_UIDV);
	struct ms_box *dst = ms_box(&h->dst, "INBOX", DST_UIDV);
	struct state_mbox rec = {0};
	struct mbox mb = {0};
	struct mf_error e;
	char b[200];
	int created;

	if (state_mbox_id(h->st, h->j->jobid, "INBOX", 5, &mb.mbid, &created, &e) < 0)
		return -1;
	for (unsigned i = 1; i <= NMSG; i++) {
		struct ms_msg *m, *d = NULL;

		body_of(i, b, sizeof(b));
		m = ms_add(src, b, i % 3 ? "\\Seen" : "");
		if (i <= 7)
			d = ms_add(dst, b, m->flags);
		if (i <= 4 && mh_record(h, &mb, SRC_UIDV, m->uid, m, DST_UIDV, d->uid, STATE_MSG_DONE) < 0)
			return -1;
		if (i >= 5 && i <= 8 && mh_record(h, &mb, SRC_UIDV, m->uid, m, 0, 0, STATE_MSG_INTENT) < 0)
			return -1;
	}
	snprintf(rec.name, sizeof(rec.name), "INBOX");
	snprintf(rec.dst_name, sizeof(rec.dst_name), "INBOX");
	rec.uidvalidity = SRC_UIDV;
	rec.uidnext = 5;
	rec.last_uid = 4;
	rec.intents = 1;
	rec.intent_at_ms = 1;
	if (state_mbox_put(h->st, h->j->jobid, mb.mbid, &rec, &e) < 0)
		return -1;
	return state_commit(h->st, &e);
}

static void options(struct mh *h)
{
	(void)h;
}

static void run(struct mh *h)
{
	mh_pass(h, mh_mbox(h, "INBOX"));
}

static void check_done(struct unit_ctx *u, struct mh *h, struct mbox *mb, const char *what)
{
	struct ms_box *src = ms_box(&h->src, "INBOX", 0), *dst = ms_box(&h->dst, "INBOX", 0);
	struct state_mbox rec;
	struct mf_error e;

	for (size_t i = 0; i < src->n; i++) {
		const struct ms_msg *m = &src->m[i];
		struct state_msg sm;
		struct ms_msg *d;

		UNIT_CHECKF(u, ms_count_body(dst, m->body) == 1, "%s: uid %u on the destination %u times",
		            what, m->uid, ms_count_body(dst, m->body));
		UNIT_CHECKF(u, mh_status(h, mb, SRC_UIDV, m->uid, &sm) == STATE_MSG_DONE,
		            "%s: uid %u not recorded as copied", what, m->uid);
		d = ms_find(dst, sm.dst_uid);
		UNIT_CHECKF(u, d && d->len == m->len && !memcmp(d->body, m->body, m->len) &&
		                   sm.dst_uidvalidity == DST_UIDV,
		            "%s: uid %u recorded against destination %u/%u, which is not it", what,
		            m->uid, sm.dst_uidvalidity, sm.dst_uid);
	}
	UNIT_CHECKF(u, dst->n == NMSG, "%s: %zu messages on the destination", what, dst->n);
	UNIT_CHECK(u, state_mbox_get(h->st, h->j->jobid, mb->mbid, &rec, &e) == 0 &&
	                  !rec.intents && rec.last_uid == NMSG);
}

static void t_settle_finds_and_copies_the_rest(struct unit_ctx *u)
{
	struct mh h;
	char dir[] = "/tmp/mf-test-settle-XXXXXX";

	if (!mkdtemp(dir) || mh_open(&h, dir) < 0 || setup(&h) < 0) {
		UNIT_CHECK(u, 0);
		return;
	}
	run(&h);
	UNIT_CHECKF(u, !h.j->fatal && !h.j->nerrors, "fatal %d errors %u", h.j->fatal, h.j->nerrors);
	/* 8 copied again, 9 and 10 new; 5..7 found, neither copied nor skipped */
	UNIT_CHECKF(u, h.sum.copied == 3, "copied %llu", (unsigned long long)h.sum.copied);
	UNIT_CHECK(u, strstr(h.dst.log, "UID FETCH 5:* (UID BODY.PEEK[])") != NULL);
	check_done(u, &h, mh_find(&h, "INBOX"), "one pass");
	mh_close(&h, 0);
	mh_remove(dir);
}

/* Whatever the run a fault cut short did, it copied nothing twice. */
static void fault(struct mh *h, const char *what, void *ctx)
{
	struct unit_ctx *u = ctx;

	for (size_t i = 0; i < h->src.box[0].n; i++)
		UNIT_CHECKF(u, ms_count_body(&h->dst.box[0], h->src.box[0].m[i].body) <= 1,
		            "%s: uid %u copied twice before the crash", what, h->src.box[0].m[i].uid);
}

static void check(struct mh *h, const char *what, int again, void *ctx)
{
	struct unit_ctx *u = ctx;

	check_done(u, h, mh_find(h, "INBOX"), what);
	UNIT_CHECKF(u, !again || h->sum.copied == 0, "%s: the run after copied %llu", what,
	            (unsigned long long)h->sum.copied);
}

static void t_settle_fault_at_every_commit(struct unit_ctx *u)
{
	struct mh_world w = {setup, options, run, fault, check, u};
	int faults = mh_fault_each(&w, "commit");

	fprintf(stderr, "# %d commit points faulted in turn\n", faults);
	UNIT_CHECKF(u, faults >= 2, "%d commit points faulted", faults);
}

/* Confirmed copies with their keywords still to store (engine/sync/
 * kwdefer.h: intents with a destination UID). 1's UID is recorded under
 * the folder's present UIDVALIDITY: it is there, recorded as copied, not
 * copied again. 2's is recorded under an older one (the folder was
 * recreated since): that UID names another message now, so 2 counts as
 * not found and is copied again, and the floor is taken from 1 alone. */
static void t_settle_uid_under_other_uidvalidity(struct unit_ctx *u)
{
	struct mh h;
	char dir[] = "/tmp/mf-test-settle-XXXXXX";
	struct ms_box *src, *dst;
	struct state_mbox rec = {0};
	struct mbox mb = {0};
	struct ms_msg *m[3], *d1;
	struct state_msg sm;
	struct mf_error e;
	char b[200];
	int created;

	if (!mkdtemp(dir) || mh_open(&h, dir) < 0) {
		UNIT_CHECK(u, 0);
		return;
	}
	src = ms_box(&h.src, "INBOX", SRC_UIDV);
	dst = ms_box(&h.dst, "INBOX", DST_UIDV);
	for (unsigned i = 0; i < 3; i++) {
		body_of(i + 1, b, sizeof(b));
		m[i] = ms_add(src, b, "\\Seen $Label1");
	}
	d1 = ms_add(dst, m[0]->body, "\\Seen");
	ms_add(dst, "Subject: someone else's\r\n\r\nother\r\n", "");
	UNIT_CHECK(u, state_mbox_id(h.st, h.j->jobid, "INBOX", 5, &mb.mbid, &created, &e) == 0);
	UNIT_CHECK(u, mh_record(&h, &mb, SRC_UIDV, m[0]->uid, m[0], DST_UIDV, d1->uid,
	                        STATE_MSG_INTENT) == 0);
	UNIT_CHECK(u, mh_record(&h, &mb, SRC_UIDV, m[1]->uid, m[1], DST_UIDV - 1, 2,
	                        STATE_MSG_INTENT) == 0);
	snprintf(rec.name, sizeof(rec.name), "INBOX");
	snprintf(rec.dst_name, sizeof(rec.dst_name), "INBOX");
	rec.uidvalidity = SRC_UIDV;
	rec.uidnext = 1; /* the intents' pass never ended */
	rec.intents = 1;
	rec.intent_at_ms = 1;
	UNIT_CHECK(u, state_mbox_put(h.st, h.j->jobid, mb.mbid, &rec, &e) == 0 &&
	                  state_commit(h.st, &e) == 0);
	run(&h);
	UNIT_CHECKF(u, !h.j->fatal && !h.j->nerrors, "fatal %d errors %u", h.j->fatal, h.j->nerrors);
	UNIT_CHECKF(u, h.sum.copied == 2, "copied %llu", (unsigned long long)h.sum.copied);
	UNIT_CHECK(u, strstr(h.dst.log, "UID FETCH 2:* (UID BODY.PEEK[])") != NULL);
	for (unsigned i = 0; i < 3; i++)
		UNIT_CHECKF(u, ms_count_body(dst, m[i]->body) == 1, "uid %u on the destination %u times",
		            m[i]->uid, ms_count_body(dst, m[i]->body));
	UNIT_CHECK(u, mh_status(&h, mh_find(&h, "INBOX"), SRC_UIDV, m[0]->uid, &sm) ==
	                      STATE_MSG_DONE &&
	                  sm.dst_uid == d1->uid && sm.dst_uidvalidity == DST_UIDV);
	UNIT_CHECK(u, mh_status(&h, mh_find(&h, "INBOX"), SRC_UIDV, m[1]->uid, &sm) ==
	                      STATE_MSG_DONE &&
	                  sm.dst_uid > 2 && sm.dst_uidvalidity == DST_UIDV);
	mh_close(&h, 0);
	mh_remove(dir);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_settle_finds_and_copies_the_rest);
	UNIT_RUN(&u, t_settle_fault_at_every_commit);
	UNIT_RUN(&u, t_settle_uid_under_other_uidvalidity);
	return unit_done(&u);
}
