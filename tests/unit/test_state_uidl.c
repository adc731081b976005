/*
 * test_state_uidl — the POP3 unique-id table of store/state.c against a
 * real LMDB in a temporary directory: ids assigned 1, 2, ... in the order
 * first seen, stable across commits and reopening, per (job, mailbox),
 * never handed out twice, gone with an uncommitted transaction together
 * with the counter, §7-breaking unique-ids refused, find never assigns.
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

static uint32_t id_of(struct state *s, uint32_t job, uint32_t mbid, const char *u, int *created)
{
	struct mf_error e = {0, ""};
	uint32_t id = 0;

	if (state_uidl_id(s, job, mbid, u, strlen(u), &id, created, &e) < 0)
		return 0;
	return id;
}

static void test_assign_stable(struct unit_ctx *u)
{
	struct mf_error e = {0, ""};
	struct state *s;
	int c1 = 0, c2 = 0, c3 = 0;
	uint32_t id;

	UNIT_CHECK(u, state_open(&s, dir, &e) == 0);
	UNIT_CHECK(u, id_of(s, 1, 1, "00000001abcd", &c1) == 1 && c1 == 1);
	UNIT_CHECK(u, id_of(s, 1, 1, "00000002abcd", &c2) == 2 && c2 == 1);
	UNIT_CHECK(u, id_of(s, 1, 1, "00000001abcd", &c3) == 1 && c3 == 0);
	/* another mailbox, another job: their own ids from 1 */
	UNIT_CHECK(u, id_of(s, 1, 2, "00000002abcd", NULL) == 1);
	UNIT_CHECK(u, id_of(s, 2, 1, "00000002abcd", NULL) == 1);
	/* a prefix of another unique-id is a different one */
	UNIT_CHECK(u, id_of(s, 1, 1, "00000001abc", NULL) == 3);
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	state_close(s);
	UNIT_CHECK(u, state_open(&s, dir, &e) == 0);
	UNIT_CHECK(u, state_uidl_find(s, 1, 1, "00000002abcd", 12, &id, &e) == 0 && id == 2);
	UNIT_CHECK(u, id_of(s, 1, 1, "00000001abcd", NULL) == 1);
	UNIT_CHECK(u, id_of(s, 1, 1, "new-one", NULL) == 4);
	UNIT_CHECK(u, state_uidl_find(s, 1, 1, "never", 5, &id, &e) == -ENOENT);
	UNIT_CHECK(u, state_uidl_find(s, 1, 1, "never", 5, &id, &e) == -ENOENT); /* not created */
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	state_close(s);
}

static void test_abort_forgets(struct unit_ctx *u)
{
	struct mf_error e = {0, ""};
	struct state *s;
	uint32_t id;

	UNIT_CHECK(u, state_open(&s, dir, &e) == 0);
	UNIT_CHECK(u, id_of(s, 7, 1, "a", NULL) == 1);
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	UNIT_CHECK(u, id_of(s, 7, 1, "b", NULL) == 2);
	state_abort(s); /* a crash before the commit */
	UNIT_CHECK(u, state_uidl_find(s, 7, 1, "b", 1, &id, &e) == -ENOENT);
	/* the counter went back with it: no gap, and no id given twice */
	UNIT_CHECK(u, id_of(s, 7, 1, "c", NULL) == 2);
	UNIT_CHECK(u, id_of(s, 7, 1, "b", NULL) == 3);
	UNIT_CHECK(u, id_of(s, 7, 1, "a", NULL) == 1);
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	state_close(s);
}

static void test_refused(struct unit_ctx *u)
{
	struct mf_error e = {0, ""};
	struct state *s;
	char long_id[STATE_UIDL_MAX + 2];
	uint32_t id;

	UNIT_CHECK(u, state_open(&s, dir, &e) == 0);
	memset(long_id, 'x', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	UNIT_CHECK(u,
	           state_uidl_id(s, 3, 1, long_id, STATE_UIDL_MAX + 1, &id, NULL, &e) == -EINVAL);
	UNIT_CHECK(u,
	           state_uidl_id(s, 3, 1, long_id, STATE_UIDL_MAX, &id, NULL, &e) == 0 && id == 1);
	UNIT_CHECK(u, state_uidl_id(s, 3, 1, "", 0, &id, NULL, &e) == -EINVAL);
	UNIT_CHECK(u, state_uidl_id(s, 3, 1, "a b", 3, &id, NULL, &e) == -EINVAL);
	UNIT_CHECK(u, state_uidl_id(s, 3, 1, "a\0b", 3, &id, NULL, &e) == -EINVAL);
	UNIT_CHECK(u, state_uidl_id(s, 3, 1, "\x7f", 1, &id, NULL, &e) == -EINVAL);
	UNIT_CHECK(u, state_uidl_id(s, 3, 1, "\xc3\xa9", 2, &id, NULL, &e) == -EINVAL);
	UNIT_CHECK(u, strstr(e.msg, "0xc3") != NULL);
	UNIT_CHECK(u, state_uidl_id(s, 3, 1, "!~", 2, &id, NULL, &e) == 0 && id == 2);
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	state_close(s);
}

/* The message records are untouched by the table (a state from before it
 * opens, and its records read the same). */
static void test_many(struct unit_ctx *u)
{
	struct mf_error e = {0, ""};
	struct state *s;
	char b[32];
	int ok = 1;

	UNIT_CHECK(u, state_open(&s, dir, &e) == 0);
	for (uint32_t i = 0; i < 20000 && ok; i++) {
		snprintf(b, sizeof(b), "%08X%08X", i * 2654435761u, 42u);
		ok = id_of(s, 9, 4, b, NULL) == i + 1;
	}
	UNIT_CHECK(u, ok);
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	for (uint32_t i = 0; i < 20000 && ok; i++) {
		uint32_t id = 0;

		snprintf(b, sizeof(b), "%08X%08X", i * 2654435761u, 42u);
		ok = state_uidl_find(s, 9, 4, b, strlen(b), &id, &e) == 0 && id == i + 1;
	}
	UNIT_CHECK(u, ok);
	state_close(s);
}

int main(void)
{
	struct unit_ctx u = {0};
	int rc;

	snprintf(dir, sizeof(dir), "/tmp/mf-uidl.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	UNIT_RUN(&u, test_assign_stable);
	UNIT_RUN(&u, test_abort_forgets);
	UNIT_RUN(&u, test_refused);
	UNIT_RUN(&u, test_many);
	rc = unit_done(&u);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}
