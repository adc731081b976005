/*
 * test_plan — which mailboxes have work (plan.c), in memory (memsrv): from
 * the source's listing with STATUS and what the state recorded, a mailbox
 * unchanged since its last complete pass is not opened at all; one with
 * new mail, one the state does not know, one whose HIGHESTMODSEQ moved
 * (--sync-flags) and one with unsettled intents are; the destination
 * folder that is missing is created; afterwards the destination is the
 * source. The same plan as a dry run (the counting sink) reads sizes
 * only and changes nothing. Then a failing commit at every commit point,
 * a crash and a restart.
 */
#include "tests/unit/memsrv.h"
#include "tests/unit/unit.h"

struct spec {
	const char *name;
	uint32_t uidv;
	unsigned copied;	/* messages a past pass copied (0: the state does not know it) */
	unsigned more;		/* new since */
	int flag_change;	/* a flag changed since (HIGHESTMODSEQ moved) */
	int intent;		/* the last message is an intent that never arrived */
	int work;		/* what the plan must decide */
};

static const struct spec specs[] = {
	{"INBOX", 11, 3, 0, 0, 0, 0},
	{"Sent", 12, 2, 1, 0, 0, 1},
	{"Drafts", 13, 0, 2, 0, 0, 1},
	{"Junk", 14, 2, 0, 1, 0, 1},
	{"Archive", 15, 2, 0, 0, 0, 0},
	{"Trash", 16, 3, 0, 0, 1, 1},
};
#define NSPEC (sizeof(specs) / sizeof(specs[0]))

static void body_of(const char *box, unsigned i, char *b, size_t cap)
{
	snprintf(b, cap, "Subject: %s %u\r\nMessage-ID: <%s.%u@plan>\r\n\r\nplan\r\n", box, i, box,
	         i);
}

static int setup(struct mh *h)
{
	struct mf_error e;
	char b[200];

	for (size_t s = 0; s < NSPEC; s++) {
		const struct spec *p = &specs[s];
		struct ms_box *src = ms_box(&h->src, p->name, p->uidv);
		struct ms_box *dst = p->copied ? ms_box(&h->dst, p->name, 100 + p->uidv) : NULL;
		struct state_mbox rec = {0};
		uint32_t mbid;
		int created;

		if (state_mbox_id(h->st, h->j->jobid, p->name, strlen(p->name), &mbid, &created, &e) < 0)
			return -1;
		for (unsigned i = 1; i <= p->copied; i++) {
			struct ms_msg *m, *d;
			struct mbox fake = {.mbid = mbid};

			body_of(p->name, i, b, sizeof(b));
			m = ms_add(src, b, "\\Seen");
			if (p->intent && i == p->copied) {
				if (mh_record(h, &fake, p->uidv, m->uid, m, 0, 0, STATE_MSG_INTENT) < 0)
					return -1;
				continue;
			}
			d = ms_add(dst, b, "\\Seen");
			if (mh_record(h, &fake, p->uidv, m->uid, m, dst->uidvalidity, d->uid,
			              STATE_MSG_DONE) < 0)
				return -1;
		}
		if (p->copied) {
			snprintf(rec.name, sizeof(rec.name), "%s", p->name);
			snprintf(rec.dst_name, sizeof(rec.dst_name), "%s", p->name);
			rec.uidvalidity = p->uidv;
			rec.uidnext = src->uidnext;
			rec.last_uid = p->intent ? src->uidnext - 2 : src->uidnext - 1;
			rec.highestmodseq = src->modseq;
			rec.synced_at = 1;
			rec.intents = (uint32_t)p->intent;
			rec.intent_at_ms = p->intent ? 1 : 0;
			if (state_mbox_put(h->st, h->j->jobid, mbid, &rec, &e) < 0)
				return -1;
		}
		for (unsigned i = 1; i <= p->more; i++) {
			body_of(p->name, 100 + i, b, sizeof(b));
			ms_add(src, b, "");
		}
		if (p->flag_change) {
			struct ms_msg *m = ms_find(src, 1);

			snprintf(m->flags, sizeof(m->flags), "\\Seen \\Answered");
			m->modseq = ++src->modseq;
		}
	}
	return state_commit(h->st, &e);
}

/* The source's LIST-STATUS, as plan.c takes it (src_ctl_untagged). */
static void options(struct mh *h)
{
	h->o.sync_flags = 1;
}

static void list_source(struct mh *h)
{
	for (size_t i = 0; i < h->src.nbox; i++) {
		const struct ms_box *b = &h->src.box[i];
		struct mbox *mb = mbox_add(h->j, b->name, strlen(b->name));

		mb->have_status = 1;
		mb->st_uidvalidity = b->uidvalidity;
		mb->st_uidnext = b->uidnext;
		mb->st_messages = (uint32_t)b->n;
		mb->st_highestmodseq = b->modseq;
	}
}

static void run_plan(struct mh *h)
{
	mh_age_intents(h);
	list_source(h);
	plan(h->j);
	mh_run(h);
}

static int examined(const struct mh *h, const char *name)
{
	char l[96];

	snprintf(l, sizeof(l), "EXAMINE %s\n", name);
	return strstr(h->src.log, l) != NULL;
}

static void check_same(struct unit_ctx *u, struct mh *h, const char *what)
{
	for (size_t s = 0; s < NSPEC; s++) {
		struct ms_box *src = ms_box(&h->src, specs[s].name, 0);
		struct ms_box *dst = ms_box(&h->dst, specs[s].name, 0);

		UNIT_CHECKF(u, dst->n == src->n, "%s: %s: %zu messages on the destination, %zu on the "
		            "source", what, src->name, dst->n, src->n);
		for (size_t i = 0; i < src->n; i++) {
			const struct ms_msg *m = &src->m[i];

			UNIT_CHECKF(u, ms_count_body(dst, m->body) == 1, "%s: %s uid %u on the destination %u "
			            "times", what, src->name, m->uid, ms_count_body(dst, m->body));
		}
	}
}

static void t_plan_decides_work(struct unit_ctx *u)
{
	struct mh h;
	char dir[] = "/tmp/mf-test-plan-XXXXXX";
	char *json = NULL;
	size_t json_len = 0;

	if (!mkdtemp(dir) || mh_open(&h, dir) < 0 || setup(&h) < 0) {
		UNIT_CHECK(u, 0);
		return;
	}
	options(&h);
	h.o.json = 1;
	h.o.out = open_memstream(&json, &json_len);
	run_plan(&h);
	fflush(h.o.out);
	UNIT_CHECKF(u, !h.j->fatal && !h.j->nerrors, "fatal %d errors %u", h.j->fatal, h.j->nerrors);
	for (size_t s = 0; s < NSPEC; s++)
		UNIT_CHECKF(u, examined(&h, specs[s].name) == specs[s].work, "%s %s", specs[s].name,
		            specs[s].work ? "has work but was not opened" : "was opened for nothing");
	UNIT_CHECKF(u, json && strstr(json, "\"mailboxes\":6,\"with_changes\":4"), "%s", json);
	UNIT_CHECKF(u, strstr(h.dst.log, "CREATE Drafts\n") && !strstr(h.dst.log, "CREATE INBOX"),
	            "%s", h.dst.log);
	check_same(u, &h, "one run");
	fclose(h.o.out);
	free(json);
	mh_close(&h, 0);
	mh_remove(dir);
}

/* The same as a dry run: the counting sink over the memory sink. */
static void t_plan_dry_run(struct unit_ctx *u)
{
	struct mh h;
	char dir[] = "/tmp/mf-test-plan-XXXXXX";
	struct ms_side before;
	struct state_mbox rec;
	struct mf_error e;
	uint32_t mbid;
	int created;

	if (!mkdtemp(dir) || mh_open(&h, dir) < 0 || setup(&h) < 0) {
		UNIT_CHECK(u, 0);
		return;
	}
	options(&h);
	h.o.dry_run = 1;
	h.j->discard = 1; /* the dry run's scope (scope_open) */
	UNIT_CHECK(u, sink_count_wrap(&h.w->sink) == 0);
	memcpy(&before, &h.dst, sizeof(before));
	run_plan(&h);
	UNIT_CHECKF(u, !h.j->fatal && !h.j->nerrors, "fatal %d errors %u", h.j->fatal, h.j->nerrors);
	UNIT_CHECKF(u, !memcmp(before.box, h.dst.box, sizeof(before.box)) &&
	                   before.nbox == h.dst.nbox && h.commits == 0 && h.sum.copied == 0,
	            "the destination changed");
	UNIT_CHECKF(u, !strstr(h.dst.log, "CREATE") && !strstr(h.dst.log, "STORE"), "%s", h.dst.log);
	UNIT_CHECKF(u, strstr(h.src.log, "(UID RFC822.SIZE)") && !strstr(h.src.log, "BODY.PEEK[]"),
	            "%s", h.src.log);
	UNIT_CHECK(u, state_mbox_id(h.st, h.j->jobid, "Drafts", 6, &mbid, &created, &e) == 0 &&
	                  state_mbox_get(h.st, h.j->jobid, mbid, &rec, &e) == -ENOENT);
	mh_close(&h, 0);
	mh_remove(dir);
}

static void check(struct mh *h, const char *what, int again, void *ctx)
{
	struct unit_ctx *u = ctx;

	check_same(u, h, what);
	UNIT_CHECKF(u, !again || h->sum.copied == 0, "%s: the run after copied %llu", what,
	            (unsigned long long)h->sum.copied);
}

static void t_plan_fault_at_every_commit(struct unit_ctx *u)
{
	struct mh_world w = {setup, options, run_plan, NULL, check, u};
	int faults = mh_fault_each(&w, "commit");

	fprintf(stderr, "# %d commit points faulted in turn\n", faults);
	UNIT_CHECKF(u, faults >= 3, "%d commit points faulted", faults);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_plan_decides_work);
	UNIT_RUN(&u, t_plan_dry_run);
	UNIT_RUN(&u, t_plan_fault_at_every_commit);
	return unit_done(&u);
}
