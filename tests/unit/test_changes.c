/*
 * test_changes — flag and expunge propagation (changes.c, --sync-flags
 * --delete), in memory (memsrv), read by a UID/FLAGS scan and by
 * CONDSTORE (CHANGEDSINCE plus a UID SEARCH): the changed flags and only
 * those are stored on the destination, the expunged messages are removed
 * there and from the state, the new one is copied. Then faults in turn:
 * a flag change that cannot be noted (out of memory, at each change) must
 * not let HIGHESTMODSEQ move past it, so the next run applies it (issue 14
 * defect 6); a failing state commit at each commit point, a crash and a
 * restart must leave source and destination alike.
 */
#include "tests/unit/memsrv.h"
#include "tests/unit/unit.h"

#define SRC_UIDV 3
#define DST_UIDV 44
#define NMSG 10

static void body_of(unsigned i, char *b, size_t cap)
{
	snprintf(b, cap, "Subject: c%u\r\nMessage-ID: <%u@changes>\r\n\r\nchanges %u\r\n", i, i, i);
}

static void drop(struct ms_box *b, uint32_t uid)
{
	size_t k = 0;

	for (size_t i = 0; i < b->n; i++)
		if (b->m[i].uid != uid)
			b->m[k++] = b->m[i];
	b->n = k;
	b->modseq++;
}

static void set_flags(struct ms_box *b, uint32_t uid, const char *f)
{
	struct ms_msg *m = ms_find(b, uid);

	snprintf(m->flags, sizeof(m->flags), "%s", f);
	m->modseq = ++b->modseq;
}

/* 1..10 copied (rec.highestmodseq: the source's then); since then 2, 5
 * and 9 changed flags, 4 and 7 were expunged, 11 arrived. */
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
		struct ms_msg *m, *d;

		body_of(i, b, sizeof(b));
		m = ms_add(src, b, "\\Seen");
		d = ms_add(dst, b, "\\Seen");
		if (mh_record(h, &mb, SRC_UIDV, m->uid, m, DST_UIDV, d->uid, STATE_MSG_DONE) < 0)
			return -1;
	}
	snprintf(rec.name, sizeof(rec.name), "INBOX");
	snprintf(rec.dst_name, sizeof(rec.dst_name), "INBOX");
	rec.uidvalidity = SRC_UIDV;
	rec.uidnext = NMSG + 1;
	rec.last_uid = NMSG;
	rec.highestmodseq = src->modseq;
	rec.synced_at = 1;
	if (state_mbox_put(h->st, h->j->jobid, mb.mbid, &rec, &e) < 0)
		return -1;
	set_flags(src, 2, "\\Seen \\Flagged");
	set_flags(src, 5, "");
	set_flags(src, 9, "\\Seen $Work");
	drop(src, 4);
	drop(src, 7);
	body_of(NMSG + 1, b, sizeof(b));
	ms_add(src, b, "");
	return state_commit(h->st, &e);
}

static void options_scan(struct mh *h)
{
	h->o.sync_flags = h->o.delete_ = 1;
}

static void options_condstore(struct mh *h)
{
	options_scan(h);
	h->w->src.caps |= IMAP_CAP_CONDSTORE;
	h->w->src.enabled_condstore = 1;
}

static void run(struct mh *h)
{
	mh_pass(h, mh_mbox(h, "INBOX"));
}

/* The destination is the source again, and the state knows it. */
static void check_same(struct unit_ctx *u, struct mh *h, struct mbox *mb, const char *what)
{
	struct ms_box *src = ms_box(&h->src, "INBOX", 0), *dst = ms_box(&h->dst, "INBOX", 0);
	struct state_msg sm;
	char b[200];

	UNIT_CHECKF(u, dst->n == src->n, "%s: %zu messages on the destination, %zu on the source",
	            what, dst->n, src->n);
	for (size_t i = 0; i < src->n; i++) {
		const struct ms_msg *m = &src->m[i];
		struct ms_msg *d;

		UNIT_CHECKF(u, mh_status(h, mb, SRC_UIDV, m->uid, &sm) == STATE_MSG_DONE,
		            "%s: uid %u not recorded", what, m->uid);
		d = ms_find(dst, sm.dst_uid);
		UNIT_CHECKF(u, d && ms_count_body(dst, m->body) == 1 && d->len == m->len &&
		                   !memcmp(d->body, m->body, m->len),
		            "%s: uid %u not once on the destination", what, m->uid);
		UNIT_CHECKF(u, d && flags_equal(d->flags, strlen(d->flags), m->flags, strlen(m->flags)),
		            "%s: uid %u flags \"%s\" on the destination, \"%s\" on the source", what,
		            m->uid, d ? d->flags : "?", m->flags);
		UNIT_CHECKF(u, flags_equal(sm.flags, strlen(sm.flags), m->flags, strlen(m->flags)),
		            "%s: uid %u flags \"%s\" in the state, \"%s\" on the source", what, m->uid,
		            sm.flags, m->flags);
	}
	for (unsigned i = 4; i <= 7; i += 3) {
		body_of(i, b, sizeof(b));
		UNIT_CHECKF(u, !ms_count_body(dst, b) && !mh_status(h, mb, SRC_UIDV, i, &sm),
		            "%s: expunged uid %u still there", what, i);
	}
}

static void one_pass(struct unit_ctx *u, int condstore)
{
	struct mh h;
	char dir[] = "/tmp/mf-test-changes-XXXXXX";
	struct state_mbox rec;
	struct mf_error e;

	if (!mkdtemp(dir) || mh_open(&h, dir) < 0 || setup(&h) < 0) {
		UNIT_CHECK(u, 0);
		return;
	}
	(condstore ? options_condstore : options_scan)(&h);
	run(&h);
	UNIT_CHECKF(u, !h.j->fatal && !h.j->nerrors, "fatal %d errors %u", h.j->fatal, h.j->nerrors);
	UNIT_CHECKF(u, h.sum.copied == 1 && h.sum.flags_synced == 3 && h.sum.expunged == 2,
	            "copied %llu flags %llu expunged %llu", (unsigned long long)h.sum.copied,
	            (unsigned long long)h.sum.flags_synced, (unsigned long long)h.sum.expunged);
	if (condstore)
		UNIT_CHECKF(u, strstr(h.src.log, "UID FETCH 1:10 (UID FLAGS) (CHANGEDSINCE") &&
		                   strstr(h.src.log, "UID SEARCH UID 1:10"),
		            "%s", h.src.log);
	else
		UNIT_CHECKF(u, strstr(h.src.log, "UID FETCH 1:10 (UID FLAGS)\n"), "%s", h.src.log);
	check_same(u, &h, mh_find(&h, "INBOX"), condstore ? "condstore" : "scan");
	UNIT_CHECK(u, state_mbox_get(h.st, h.j->jobid, mh_find(&h, "INBOX")->mbid, &rec, &e) == 0 &&
	                  rec.synced_at && rec.last_uid == NMSG + 1 &&
	                  rec.highestmodseq == ms_box(&h.src, "INBOX", 0)->modseq);
	mh_close(&h, 0);
	mh_remove(dir);
}

static void t_scan(struct unit_ctx *u) { one_pass(u, 0); }
static void t_condstore(struct unit_ctx *u) { one_pass(u, 1); }

/* A change not noted (change_note): not applied, and the record must not
 * claim the flags current (nor the mailbox in sync). */
static void not_noted(struct mh *h, const char *what, void *ctx)
{
	struct unit_ctx *u = ctx;
	struct state_mbox rec;
	struct mf_error e;
	int condstore = h->w->src.enabled_condstore;

	UNIT_CHECKF(u, state_mbox_get(h->st, h->j->jobid, mh_find(h, "INBOX")->mbid, &rec, &e) == 0 &&
	                   !rec.synced_at &&
	                   (!condstore || rec.highestmodseq < ms_box(&h->src, "INBOX", 0)->modseq),
	            "%s: the record says the flags are current", what);
}

static void check(struct mh *h, const char *what, int again, void *ctx)
{
	struct unit_ctx *u = ctx;

	check_same(u, h, mh_find(h, "INBOX"), what);
	UNIT_CHECKF(u, !again || (h->sum.copied == 0 && h->sum.flags_synced == 0),
	            "%s: the run after copied %llu, changed %llu", what,
	            (unsigned long long)h->sum.copied, (unsigned long long)h->sum.flags_synced);
}

static void fault_each(struct unit_ctx *u, const char *site)
{
	struct mh_world scan = {setup, options_scan, run, NULL, check, u};
	struct mh_world cond = {setup, options_condstore, run, NULL, check, u};
	int a, b;

	if (!strcmp(site, "change_note"))
		scan.fault = cond.fault = not_noted;
	a = mh_fault_each(&scan, site);
	b = mh_fault_each(&cond, site);
	fprintf(stderr, "# %s: %d and %d faulted in turn (scan, condstore)\n", site, a, b);
	UNIT_CHECKF(u, a >= 2 && b >= 2, "%d and %d faults", a, b);
}

static void t_change_not_noted(struct unit_ctx *u)
{
	fault_each(u, "change_note");
}

static void t_fault_at_every_commit(struct unit_ctx *u)
{
	fault_each(u, "commit");
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_scan);
	UNIT_RUN(&u, t_condstore);
	UNIT_RUN(&u, t_change_not_noted);
	UNIT_RUN(&u, t_fault_at_every_commit);
	return unit_done(&u);
}
