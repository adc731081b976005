/*
 * test_rename — a folder renamed on the source (rename.c), in memory
 * (memsrv): the new name's first message is found in the records of the
 * vanished one, the destination folder is RENAMEd, the state moves over,
 * and only the message that arrived since is copied. Then a failing
 * commit at every commit point, a crash and a restart: the destination
 * holds every message once, under the new name only.
 */
#include "tests/unit/memsrv.h"
#include "tests/unit/unit.h"

#define UIDV 21
#define NOLD 4

static void body_of(const char *box, unsigned i, char *b, size_t cap)
{
	snprintf(b, cap, "Subject: %s %u\r\nMessage-ID: <%s.%u@rename>\r\n\r\nrename\r\n", box, i,
	         box, i);
}

/* "Proj" was copied (4 messages) and is now "Projects" on the source,
 * same UIDVALIDITY, with one message more; INBOX is unchanged. */
static int setup(struct mh *h)
{
	static const char *const names[] = {"Proj", "INBOX"};
	struct ms_box *src[2] = {ms_box(&h->src, "Projects", UIDV), ms_box(&h->src, "INBOX", 7)};
	struct mf_error e;
	char b[200];

	for (unsigned n = 0; n < 2; n++) {
		struct ms_box *dst = ms_box(&h->dst, names[n], 300 + n);
		struct state_mbox rec = {0};
		struct mbox fake = {0};
		int created;

		if (state_mbox_id(h->st, h->j->jobid, names[n], strlen(names[n]), &fake.mbid, &created,
		                  &e) < 0)
			return -1;
		for (unsigned i = 1; i <= NOLD; i++) {
			struct ms_msg *m, *d;

			body_of(names[n], i, b, sizeof(b));
			m = ms_add(src[n], b, "\\Seen");
			d = ms_add(dst, b, "\\Seen");
			if (mh_record(h, &fake, src[n]->uidvalidity, m->uid, m, dst->uidvalidity, d->uid,
			              STATE_MSG_DONE) < 0)
				return -1;
		}
		snprintf(rec.name, sizeof(rec.name), "%s", names[n]);
		snprintf(rec.dst_name, sizeof(rec.dst_name), "%s", names[n]);
		rec.uidvalidity = src[n]->uidvalidity;
		rec.uidnext = src[n]->uidnext;
		rec.last_uid = NOLD;
		rec.messages = NOLD;
		rec.highestmodseq = src[n]->modseq;
		rec.synced_at = 1;
		if (state_mbox_put(h->st, h->j->jobid, fake.mbid, &rec, &e) < 0)
			return -1;
	}
	body_of("Proj", NOLD + 1, b, sizeof(b));
	ms_add(src[0], b, "");
	return state_commit(h->st, &e);
}

static void options(struct mh *h)
{
	(void)h;
}

static void run_plan(struct mh *h)
{
	mh_age_intents(h);
	for (size_t i = 0; i < h->src.nbox; i++) {
		const struct ms_box *b = &h->src.box[i];
		struct mbox *mb = mbox_add(h->j, b->name, strlen(b->name));

		mb->have_status = 1;
		mb->st_uidvalidity = b->uidvalidity;
		mb->st_uidnext = b->uidnext;
		mb->st_messages = (uint32_t)b->n;
		mb->st_highestmodseq = b->modseq;
	}
	plan(h->j);
	mh_run(h);
}

static void check_done(struct unit_ctx *u, struct mh *h, const char *what)
{
	struct ms_box *src = ms_box(&h->src, "Projects", 0);
	struct ms_box *dst = NULL;
	struct state_mbox rec;
	struct mf_error e;
	uint32_t mbid = 0;
	int created;

	for (size_t i = 0; i < h->dst.nbox; i++) {
		UNIT_CHECKF(u, strcmp(h->dst.box[i].name, "Proj"), "%s: \"Proj\" still on the destination",
		            what);
		if (!strcmp(h->dst.box[i].name, "Projects"))
			dst = &h->dst.box[i];
	}
	UNIT_CHECKF(u, dst && dst->n == src->n, "%s: \"Projects\" holds %zu messages, the source %zu",
	            what, dst ? dst->n : 0, src->n);
	for (size_t i = 0; dst && i < src->n; i++)
		UNIT_CHECKF(u, ms_count_body(dst, src->m[i].body) == 1, "%s: uid %u on the destination "
		            "%u times", what, src->m[i].uid, ms_count_body(dst, src->m[i].body));
	UNIT_CHECK(u, state_mbox_id(h->st, h->j->jobid, "Projects", 8, &mbid, &created, &e) == 0 &&
	                  state_mbox_get(h->st, h->j->jobid, mbid, &rec, &e) == 0 &&
	                  rec.last_uid == NOLD + 1 && !strcmp(rec.dst_name, "Projects"));
}

static void t_rename_followed(struct unit_ctx *u)
{
	struct mh h;
	char dir[] = "/tmp/mf-test-rename-XXXXXX";

	if (!mkdtemp(dir) || mh_open(&h, dir) < 0 || setup(&h) < 0) {
		UNIT_CHECK(u, 0);
		return;
	}
	run_plan(&h);
	UNIT_CHECKF(u, !h.j->fatal && !h.j->nerrors, "fatal %d errors %u", h.j->fatal, h.j->nerrors);
	UNIT_CHECKF(u, h.sum.mailboxes_renamed == 1 && h.sum.copied == 1, "renamed %u copied %llu",
	            h.sum.mailboxes_renamed, (unsigned long long)h.sum.copied);
	UNIT_CHECKF(u, strstr(h.src.log, "FETCH 1 (UID BODY.PEEK[])") &&
	                   strstr(h.dst.log, "RENAME Proj Projects\n") && !strstr(h.dst.log, "CREATE"),
	            "%s%s", h.src.log, h.dst.log);
	check_done(u, &h, "one run");
	mh_close(&h, 0);
	mh_remove(dir);
}

static void check(struct mh *h, const char *what, int again, void *ctx)
{
	struct unit_ctx *u = ctx;

	check_done(u, h, what);
	UNIT_CHECKF(u, !again || (h->sum.copied == 0 && !h->j->nerrors),
	            "%s: the run after copied %llu", what, (unsigned long long)h->sum.copied);
}

static void t_rename_fault_at_every_commit(struct unit_ctx *u)
{
	struct mh_world w = {setup, options, run_plan, NULL, check, u};
	int faults = mh_fault_each(&w, "commit");

	fprintf(stderr, "# %d commit points faulted in turn\n", faults);
	UNIT_CHECKF(u, faults >= 2, "%d commit points faulted", faults);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_rename_followed);
	UNIT_RUN(&u, t_rename_fault_at_every_commit);
	return unit_done(&u);
}
