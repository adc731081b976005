/*
 * test_state_filter — the selective copies' filter table of store/state.c
 * against a real LMDB in a temporary directory: nothing recorded reads as
 * 0 (no filter), a put survives commit and reopening, per (job, mailbox),
 * 0 removes the entry, an uncommitted put is gone after an abort, and the
 * mailbox record next to it is left as it was.
 */
#include "store/state.h"

#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/unit.h"

static char dir[64];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static uint64_t get(struct state *s, uint32_t job, uint32_t mbid)
{
	struct mf_error e = {0, ""};
	uint64_t id = 99;

	if (state_mbox_filter_get(s, job, mbid, &id, &e) < 0)
		return 98;
	return id;
}

static void test_filter_table(struct unit_ctx *u)
{
	struct state *s = NULL;
	struct mf_error e = {0, ""};
	struct state_mbox rec, back;

	UNIT_CHECK(u, state_open(&s, dir, &e) == 0);
	if (!s)
		return;
	UNIT_CHECK(u, get(s, 1, 1) == 0);
	memset(&rec, 0, sizeof(rec));
	snprintf(rec.name, sizeof(rec.name), "INBOX");
	rec.uidvalidity = 7;
	rec.last_uid = 41;
	UNIT_CHECK(u, state_mbox_put(s, 1, 1, &rec, &e) == 0);
	UNIT_CHECK(u, state_mbox_filter_put(s, 1, 1, 0x1234567890abcdefull, &e) == 0);
	UNIT_CHECK(u, state_mbox_filter_put(s, 1, 2, 5, &e) == 0);
	UNIT_CHECK(u, state_mbox_filter_put(s, 2, 1, 6, &e) == 0);
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	state_close(s);
	s = NULL;
	UNIT_CHECK(u, state_open(&s, dir, &e) == 0);
	if (!s)
		return;
	UNIT_CHECK(u, get(s, 1, 1) == 0x1234567890abcdefull);
	UNIT_CHECK(u, get(s, 1, 2) == 5 && get(s, 2, 1) == 6 && get(s, 2, 2) == 0);
	UNIT_CHECK(u, state_mbox_get(s, 1, 1, &back, &e) == 0 && back.last_uid == 41 &&
	                  back.uidvalidity == 7);
	/* 0 removes; removing what is not there is fine */
	UNIT_CHECK(u, state_mbox_filter_put(s, 1, 2, 0, &e) == 0 && get(s, 1, 2) == 0);
	UNIT_CHECK(u, state_mbox_filter_put(s, 3, 3, 0, &e) == 0);
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	/* an uncommitted change is gone with the transaction */
	UNIT_CHECK(u, state_mbox_filter_put(s, 1, 1, 77, &e) == 0 && get(s, 1, 1) == 77);
	state_abort(s);
	UNIT_CHECK(u, get(s, 1, 1) == 0x1234567890abcdefull);
	UNIT_CHECK(u, get(s, 1, 2) == 0);
	state_close(s);
}

int main(void)
{
	struct unit_ctx u = {0};
	int rc;

	snprintf(dir, sizeof(dir), "/tmp/mf-filter.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	UNIT_RUN(&u, test_filter_table);
	rc = unit_done(&u);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}
