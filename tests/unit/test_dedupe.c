/*
 * test_dedupe — --dedupe (dedupe.c), in memory (memsrv), real and dry: a
 * destination folder another tool filled holds 2 of the source's 5
 * messages; a dry run counts 3 to copy (it looks at the destination
 * through the counting sink's real session, as the run does) and changes
 * nothing; the run then copies those 3, records the 2 against the copies
 * already there, and the destination holds each message once.
 */
#include "tests/unit/memsrv.h"
#include "tests/unit/unit.h"

#define NMSG 5

static void body_of(unsigned i, char *b, size_t cap)
{
	snprintf(b, cap, "Subject: d%u\r\nMessage-ID: <%u@dedupe>\r\n\r\ndedupe %u\r\n", i, i, i);
}

static int setup(struct mh *h)
{
	struct ms_box *src = ms_box(&h->src, "INBOX", 31);
	struct ms_box *dst = ms_box(&h->dst, "INBOX", 32);
	char b[200];

	for (unsigned i = 1; i <= NMSG; i++) {
		body_of(i, b, sizeof(b));
		ms_add(src, b, "\\Seen");
		if (i == 2 || i == 4)
			ms_add(dst, b, "\\Seen");
	}
	h->o.dedupe = 1;
	return 0;
}

static void t_dedupe_dry_then_real(struct unit_ctx *u)
{
	struct mh h;
	char dir[] = "/tmp/mf-test-dedupe-XXXXXX";
	struct ms_box keep;
	struct ms_box *src, *dst;
	struct state_msg sm;

	if (!mkdtemp(dir) || mh_open(&h, dir) < 0 || setup(&h) < 0) {
		UNIT_CHECK(u, 0);
		return;
	}
	h.o.dry_run = 1;
	h.j->discard = 1; /* the dry run's scope (scope_open) */
	UNIT_CHECK(u, sink_count_wrap(&h.w->sink) == 0);
	memcpy(&keep, &h.dst.box[0], sizeof(keep));
	mh_pass(&h, mh_mbox(&h, "INBOX"));
	UNIT_CHECKF(u, h.w->dry_count == NMSG - 2 && h.commits == 0 && !h.j->nerrors,
	            "counted %llu, commits %u", (unsigned long long)h.w->dry_count, h.commits);
	UNIT_CHECK(u, strstr(h.dst.log, "UID SEARCH ALL") && !memcmp(&keep, &h.dst.box[0], sizeof(keep)));
	UNIT_CHECK(u, mh_status(&h, mh_find(&h, "INBOX"), 31, 2, &sm) == 0);
	mh_close(&h, 0);

	if (mh_open(&h, dir) < 0 || setup(&h) < 0) {
		UNIT_CHECK(u, 0);
		return;
	}
	mh_pass(&h, mh_mbox(&h, "INBOX"));
	src = &h.src.box[0];
	dst = &h.dst.box[0];
	UNIT_CHECKF(u, h.sum.copied == NMSG - 2 && dst->n == NMSG && !h.j->nerrors,
	            "copied %llu, %zu on the destination", (unsigned long long)h.sum.copied, dst->n);
	for (size_t i = 0; i < src->n; i++)
		UNIT_CHECKF(u, ms_count_body(dst, src->m[i].body) == 1 &&
		                   mh_status(&h, mh_find(&h, "INBOX"), 31, src->m[i].uid, &sm) ==
		                       STATE_MSG_DONE,
		            "uid %u", src->m[i].uid);
	mh_close(&h, 0);
	mh_remove(dir);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_dedupe_dry_then_real);
	return unit_done(&u);
}
