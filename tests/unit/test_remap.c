/*
 * test_remap — a mailbox whose UIDVALIDITY changed (remap.c), in memory
 * (memsrv): its messages are found again by content, recorded under the
 * new UIDVALIDITY against the destination's copies, their flag changes
 * applied (issue 14 defect: flags lost after a remap), and only what is
 * really new copied. Then a failing state commit at every commit point
 * of the pass in turn, a crash, and a restart: every message is on the
 * destination exactly once, and recorded under the new UIDVALIDITY
 * against the copy that holds it (nothing the state forgot, so flags and
 * expunges still reach it later).
 */
#include "tests/unit/memsrv.h"
#include "tests/unit/unit.h"

#define OLD_UIDV 5
#define NEW_UIDV 6
#define DST_UIDV 77
#define NOLD 10
#define NNEW 2

static const char *flags_now(unsigned i)
{
	return i == 3 ? "\\Seen \\Flagged" : i == 7 ? "" : "\\Seen";
}

static void body_of(unsigned i, char *b, size_t cap)
{
	snprintf(b, cap, "Subject: m%u\r\nMessage-ID: <%u@remap>\r\n\r\nbody %u\r\n", i, i, i);
}

/* The source rebuilt under NEW_UIDV (the old messages, two with other
 * flags, and two new ones, in another order); the destination holds the
 * old ones; the state knows them under OLD_UIDV. */
static int setup(struct mh *h)
{
	struct ms_box *src = ms_box(&h->src, "INBOX", NEW_UIDV);
	struct ms_box *dst = ms_box(&h->dst, "INBOX", DST_UIDV);
	struct state_mbox rec = {0};
	struct mbox mb = {0};
	struct mf_error e;
	char b[200];
	int created;

	if (state_mbox_id(h->st, h->j->jobid, "INBOX", 5, &mb.mbid, &created, &e) < 0)
		return -1;
	for (unsigned i = NOLD + NNEW; i >= 1; i--) {
		body_of(i, b, sizeof(b));
		ms_add(src, b, i > NOLD ? "" : flags_now(i));
	}
	for (unsigned i = 1; i <= NOLD; i++) {
		struct ms_msg *m;

		body_of(i, b, sizeof(b));
		m = ms_add(dst, b, "\\Seen");
		if (mh_record(h, &mb, OLD_UIDV, 100 + i, m, DST_UIDV, m->uid, STATE_MSG_DONE) < 0)
			return -1;
	}
	snprintf(rec.name, sizeof(rec.name), "INBOX");
	snprintf(rec.dst_name, sizeof(rec.dst_name), "INBOX");
	rec.uidvalidity = OLD_UIDV;
	rec.uidnext = 100 + NOLD + 1;
	rec.last_uid = 100 + NOLD;
	rec.synced_at = 1;
	if (state_mbox_put(h->st, h->j->jobid, mb.mbid, &rec, &e) < 0)
		return -1;
	return state_commit(h->st, &e);
}

static void options(struct mh *h)
{
	h->o.sync_flags = 1;
}

static void run(struct mh *h)
{
	mh_pass(h, mh_mbox(h, "INBOX"));
}

/* Everything is where it belongs: each message once on the destination,
 * recorded under NEW_UIDV against the copy with its content, nothing left
 * under OLD_UIDV, flags as on the source. */
static void check_done(struct unit_ctx *u, struct mh *h, struct mbox *mb, const char *what)
{
	struct ms_box *src = ms_box(&h->src, "INBOX", 0), *dst = ms_box(&h->dst, "INBOX", 0);
	struct state_mbox rec;
	struct mf_error e;

	UNIT_CHECKF(u, dst->n == NOLD + NNEW, "%s: %zu messages on the destination", what, dst->n);
	for (size_t i = 0; i < src->n; i++) {
		const struct ms_msg *m = &src->m[i];
		struct ms_msg *d;
		struct state_msg sm;
		uint8_t hash[32], nhash[32];

		mh_hash(m->body, m->len, hash, nhash);
		UNIT_CHECKF(u, ms_count_body(dst, m->body) == 1, "%s: uid %u on the destination %u times",
		            what, m->uid, ms_count_body(dst, m->body));
		UNIT_CHECKF(u, mh_status(h, mb, NEW_UIDV, m->uid, &sm) == STATE_MSG_DONE,
		            "%s: uid %u not recorded under the new UIDVALIDITY", what, m->uid);
		d = ms_find(dst, sm.dst_uid);
		UNIT_CHECKF(u, sm.dst_uidvalidity == DST_UIDV && d && d->len == m->len &&
		                   !memcmp(d->body, m->body, m->len),
		            "%s: uid %u recorded against destination uid %u, which is not it", what,
		            m->uid, sm.dst_uid);
		UNIT_CHECKF(u, d && flags_equal(d->flags, strlen(d->flags), m->flags, strlen(m->flags)),
		            "%s: uid %u flags \"%s\" on the destination, \"%s\" on the source", what,
		            m->uid, d ? d->flags : "?", m->flags);
	}
	for (unsigned i = 1; i <= NOLD; i++) {
		struct state_msg sm;

		UNIT_CHECKF(u, mh_status(h, mb, OLD_UIDV, 100 + i, &sm) == 0,
		            "%s: old uid %u still recorded", what, 100 + i);
	}
	UNIT_CHECK(u, state_mbox_get(h->st, h->j->jobid, mb->mbid, &rec, &e) == 0 &&
	                  rec.uidvalidity == NEW_UIDV && rec.last_uid == NOLD + NNEW);
}

static void t_remap_finds_and_diffs(struct unit_ctx *u)
{
	struct mh h;
	char dir[] = "/tmp/mf-test-remap-XXXXXX";

	if (!mkdtemp(dir) || mh_open(&h, dir) < 0 || setup(&h) < 0) {
		UNIT_CHECK(u, 0);
		return;
	}
	options(&h);
	run(&h);
	UNIT_CHECKF(u, !h.j->fatal && !h.j->nerrors, "fatal %d errors %u", h.j->fatal, h.j->nerrors);
	UNIT_CHECKF(u, h.sum.copied == NNEW && h.sum.skipped == NOLD && h.sum.flags_synced == 2,
	            "copied %llu skipped %llu flags %llu", (unsigned long long)h.sum.copied,
	            (unsigned long long)h.sum.skipped, (unsigned long long)h.sum.flags_synced);
	UNIT_CHECK(u, strstr(h.src.log, "UID FETCH 1:* (UID FLAGS BODY.PEEK[])") != NULL);
	check_done(u, &h, mh_find(&h, "INBOX"), "one pass");
	mh_close(&h, 0);
	mh_remove(dir);
}

static void check(struct mh *h, const char *what, int again, void *ctx)
{
	struct unit_ctx *u = ctx;

	check_done(u, h, mh_find(h, "INBOX"), what);
	UNIT_CHECKF(u, !again || h->sum.copied == 0, "%s: the run after copied %llu", what,
	            (unsigned long long)h->sum.copied);
}

static void t_remap_fault_at_every_commit(struct unit_ctx *u)
{
	struct mh_world w = {setup, options, run, NULL, check, u};
	int faults = mh_fault_each(&w, "commit");

	fprintf(stderr, "# %d commit points faulted in turn\n", faults);
	UNIT_CHECKF(u, faults >= 2, "%d commit points faulted", faults);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_remap_finds_and_diffs);
	UNIT_RUN(&u, t_remap_fault_at_every_commit);
	return unit_done(&u);
}
