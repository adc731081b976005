/*
 * test_state — store/state.c against a real LMDB in a temporary directory:
 * id stability, record round trips, ordered scans, the one-writer lock,
 * crash safety (a child killed at many points) and a put-rate measurement.
 */
#include "store/state.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/unit.h"

static char base[64];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void dir_for(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", base, name);
}

static void msg_fill(struct state_msg *m, uint32_t uid)
{
	int i;

	memset(m, 0, sizeof(*m));
	for (i = 0; i < 32; i++)
		m->hash[i] = (uint8_t)(uid * 7 + (uint32_t)i);
	m->size = 1000 + (uint64_t)uid;
	m->modseq = ((uint64_t)1 << 40) + uid;
	m->internaldate = 1700000000 + (uint64_t)uid;
	m->dst_uidvalidity = 0xFEDCBA98;
	m->dst_uid = uid + 5;
	m->status = STATE_MSG_DONE;
	snprintf(m->flags, sizeof(m->flags), "\\Seen $Label%u", uid);
}

static int msg_eq(const struct state_msg *a, const struct state_msg *b)
{
	return !memcmp(a->hash, b->hash, 32) && a->size == b->size && a->modseq == b->modseq &&
	       a->internaldate == b->internaldate && a->dst_uidvalidity == b->dst_uidvalidity &&
	       a->dst_uid == b->dst_uid && a->status == b->status && !strcmp(a->flags, b->flags);
}

static int open_ok(struct unit_ctx *u, struct state **s, const char *dir)
{
	struct mf_error e = {0, ""};
	int rc = state_open(s, dir, &e);

	UNIT_CHECKF(u, rc == 0, "state_open %s: %d %s", dir, rc, e.msg);
	return rc;
}

static void test_open_creates_dir(struct unit_ctx *u)
{
	char dir[256], path[300];
	struct state *s;
	struct stat st;

	snprintf(dir, sizeof(dir), "%s/a/b/st", base);
	if (open_ok(u, &s, dir))
		return;
	UNIT_CHECK(u, stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	UNIT_CHECK(u, access(path, F_OK) == 0);
	snprintf(path, sizeof(path), "%s/lock", dir);
	UNIT_CHECK(u, access(path, F_OK) == 0);
	state_close(s);
	/* Reopening an existing directory works and a trailing slash is fine. */
	strcat(dir, "/");
	if (open_ok(u, &s, dir))
		return;
	state_close(s);
}

static void test_open_errors(struct unit_ctx *u)
{
	char dir[128], want[400];
	struct mf_error e = {0, ""};
	struct state *s = (struct state *)1;
	char junk[8192];
	int fd, rc;

	/* A path component that is a file. */
	dir_for(dir, sizeof(dir), "file");
	fd = open(dir, O_WRONLY | O_CREAT, 0600);
	UNIT_CHECK(u, fd >= 0);
	close(fd);
	strcat(dir, "/st");
	rc = state_open(&s, dir, &e);
	UNIT_CHECK(u, rc == -ENOTDIR && s == NULL);
	snprintf(want, sizeof(want), "state %s: mkdir %s: Not a directory", dir, dir);
	UNIT_CHECKF(u, !strcmp(e.msg, want), "got \"%s\"", e.msg);

	/* Not an LMDB file: LMDB's message, naming the directory. */
	dir_for(dir, sizeof(dir), "garbage");
	mkdir(dir, 0700);
	snprintf(want, sizeof(want), "%s/data.mdb", dir);
	fd = open(want, O_WRONLY | O_CREAT, 0600);
	memset(junk, 'x', sizeof(junk));
	UNIT_CHECK(u, fd >= 0 && write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk));
	close(fd);
	rc = state_open(&s, dir, &e);
	snprintf(want, sizeof(want), "state %s: damaged: meta page 0: not an LMDB file", dir);
	UNIT_CHECKF(u, rc == -EUCLEAN && !strncmp(e.msg, want, strlen(want)), "got %d \"%s\"", rc,
	            e.msg);

	rc = state_open(&s, "", &e);
	UNIT_CHECK(u, rc == -EINVAL);
}

static void test_job_ids_stable(struct unit_ctx *u)
{
	char dir[256], longkey[700];
	struct mf_error e = {0, ""};
	struct state *s;
	uint32_t a, b, a2, b2, c, l1, l2, l3;

	dir_for(dir, sizeof(dir), "jobs");
	if (open_ok(u, &s, dir))
		return;
	/* Two long keys sharing their first 600 bytes must stay distinct. */
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	UNIT_CHECK(u, state_job(s, "imap://a@h1 -> imap://b@h2", &a, &e) == 0);
	UNIT_CHECK(u, state_job(s, "imap://c@h1 -> imap://b@h2", &b, &e) == 0);
	UNIT_CHECK(u, state_job(s, longkey, &l1, &e) == 0);
	longkey[650] = 'z';
	UNIT_CHECK(u, state_job(s, longkey, &l2, &e) == 0);
	UNIT_CHECK(u, a != 0 && b != 0 && a != b && l1 != l2 && l1 != a && l2 != b);
	UNIT_CHECK(u, state_job(s, "imap://a@h1 -> imap://b@h2", &a2, &e) == 0 && a2 == a);
	UNIT_CHECK(u, state_job(s, "", &c, &e) == -EINVAL);
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	state_close(s);

	if (open_ok(u, &s, dir))
		return;
	UNIT_CHECK(u, state_job(s, "imap://c@h1 -> imap://b@h2", &b2, &e) == 0 && b2 == b);
	UNIT_CHECK(u, state_job(s, "imap://a@h1 -> imap://b@h2", &a2, &e) == 0 && a2 == a);
	UNIT_CHECK(u, state_job(s, longkey, &l3, &e) == 0 && l3 == l2);
	UNIT_CHECK(u, state_job(s, "imap://new", &c, &e) == 0);
	UNIT_CHECK(u, c != a && c != b && c != l1 && c != l2);
	state_close(s); /* close commits */
	if (open_ok(u, &s, dir))
		return;
	UNIT_CHECK(u, state_job(s, "imap://new", &a2, &e) == 0 && a2 == c);
	state_close(s);
}

static void test_mbox_ids(struct unit_ctx *u)
{
	static const char *const names[] = {
	    "INBOX",
	    "INBOX.Sent",
	    "Entw\xfc"
	    "rfe",
	    "&AOQ-rger",
	    "A",
	    "A/B",
	    "a",
	    "\xff\x80\x01 x",
	    "",
	};
	enum { N = sizeof(names) / sizeof(names[0]) };
	char dir[256], longname[STATE_NAME_MAX + 1];
	struct mf_error e = {0, ""};
	struct state *s;
	uint32_t j1, j2, id1[N], id2[N], id, long1, long2;
	int created, i, k;

	dir_for(dir, sizeof(dir), "mbids");
	if (open_ok(u, &s, dir))
		return;
	UNIT_CHECK(u, state_job(s, "j1", &j1, &e) == 0 && state_job(s, "j2", &j2, &e) == 0);
	for (i = 0; i < N; i++) {
		UNIT_CHECK(u, state_mbox_id(s, j1, names[i], strlen(names[i]), &id1[i], &created,
		                            &e) == 0 &&
		                  created == 1 && id1[i] != 0);
		for (k = 0; k < i; k++)
			UNIT_CHECK(u, id1[k] != id1[i]);
	}
	/* Long names (hashed keys): same head, different tails. */
	memset(longname, 'L', STATE_NAME_MAX - 1);
	longname[STATE_NAME_MAX - 1] = '\0';
	UNIT_CHECK(u,
	           state_mbox_id(s, j1, longname, STATE_NAME_MAX - 1, &long1, &created, &e) == 0 &&
	               created);
	longname[STATE_NAME_MAX - 2] = '\xe9';
	UNIT_CHECK(u,
	           state_mbox_id(s, j1, longname, STATE_NAME_MAX - 1, &long2, &created, &e) == 0 &&
	               created && long2 != long1);
	UNIT_CHECK(u, state_mbox_id(s, j1, longname, STATE_NAME_MAX, &id, &created, &e) ==
	                  -ENAMETOOLONG);
	/* Job 2 has its own mailboxes. */
	UNIT_CHECK(u, state_mbox_id(s, j2, "INBOX", 5, &id2[0], &created, &e) == 0 && created);
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	state_close(s);

	if (open_ok(u, &s, dir))
		return;
	for (i = 0; i < N; i++)
		UNIT_CHECK(u, state_mbox_id(s, j1, names[i], strlen(names[i]), &id, &created, &e) ==
		                      0 &&
		                  !created && id == id1[i]);
	UNIT_CHECK(u, state_mbox_id(s, j1, longname, STATE_NAME_MAX - 1, &id, &created, &e) == 0 &&
	                  !created && id == long2);
	UNIT_CHECK(u, state_mbox_id(s, j2, "INBOX", 5, &id, NULL, &e) == 0 && id == id2[0]);
	/* A new name after reopen gets an id never used before in the job. */
	UNIT_CHECK(u, state_mbox_id(s, j1, "Later", 5, &id, &created, &e) == 0 && created);
	for (i = 0; i < N; i++)
		UNIT_CHECK(u, id != id1[i]);
	UNIT_CHECK(u, id != long1 && id != long2);
	state_close(s);
}

static void mbox_fill(struct state_mbox *r, uint32_t mbid)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "Dossier \xe9t\xe9/%u", mbid);
	snprintf(r->dst_name, sizeof(r->dst_name), "Archive/\xff%u", mbid);
	r->uidvalidity = 0x80000000u + mbid;
	r->uidnext = 4000000000u;
	r->highestmodseq = UINT64_MAX - mbid;
	r->dst_uidvalidity = 77;
	r->last_uid = 1234567;
	r->synced_at = 1700000123;
	r->messages = 99999;
}

static int mbox_eq(const struct state_mbox *a, const struct state_mbox *b)
{
	return !strcmp(a->name, b->name) && !strcmp(a->dst_name, b->dst_name) &&
	       a->uidvalidity == b->uidvalidity && a->uidnext == b->uidnext &&
	       a->highestmodseq == b->highestmodseq && a->dst_uidvalidity == b->dst_uidvalidity &&
	       a->last_uid == b->last_uid && a->synced_at == b->synced_at &&
	       a->messages == b->messages;
}

struct mbox_seen {
	uint32_t ids[16];
	int n, stop_after;
	int bad;
};

static int mbox_cb(void *ctx, uint32_t mbid, const struct state_mbox *rec)
{
	struct mbox_seen *ms = ctx;
	struct state_mbox want;

	mbox_fill(&want, mbid);
	if (mbid != 300 && !mbox_eq(rec, &want))
		ms->bad = 1;
	if (ms->n < 16)
		ms->ids[ms->n] = mbid;
	ms->n++;
	return ms->stop_after && ms->n == ms->stop_after ? 7 : 0;
}

static void test_mbox_rename(struct unit_ctx *u)
{
	char dir[256];
	struct mf_error e = {0, ""};
	struct state *s;
	uint32_t j, a, b, x;
	int created;

	dir_for(dir, sizeof(dir), "mbrename");
	if (open_ok(u, &s, dir))
		return;
	UNIT_CHECK(u, state_job(s, "j", &j, &e) == 0);
	UNIT_CHECK(u, state_mbox_id(s, j, "Lists.dev", 9, &a, &created, &e) == 0 && created);
	UNIT_CHECK(u, state_mbox_id(s, j, "Lists2.dev", 10, &b, &created, &e) == 0 && created);
	UNIT_CHECK(u, a != b);
	/* Lists.dev became Lists2.dev: the new name takes the old id over */
	UNIT_CHECKF(u, state_mbox_rename(s, j, a, "Lists.dev", 9, "Lists2.dev", 10, &e) == 0, "%s",
	            e.msg);
	UNIT_CHECK(u, state_mbox_id(s, j, "Lists2.dev", 10, &x, &created, &e) == 0 && !created &&
	                  x == a);
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	state_close(s);
	if (open_ok(u, &s, dir))
		return;
	UNIT_CHECK(u, state_mbox_id(s, j, "Lists2.dev", 10, &x, &created, &e) == 0 && !created &&
	                  x == a);
	/* the old name is free: it gets a new id */
	UNIT_CHECK(u, state_mbox_id(s, j, "Lists.dev", 9, &x, &created, &e) == 0 && created &&
	                  x != a && x != b);
	/* renaming from a name that is not there is fine */
	UNIT_CHECK(u, state_mbox_rename(s, j, b, "Nowhere", 7, "Elsewhere", 9, &e) == 0);
	UNIT_CHECK(u, state_mbox_id(s, j, "Elsewhere", 9, &x, &created, &e) == 0 && x == b);
	state_close(s);
}

static void test_mbox_records(struct unit_ctx *u)
{
	char dir[256];
	struct mf_error e = {0, ""};
	struct state *s;
	struct state_mbox r, got;
	struct mbox_seen seen;
	uint32_t mb;

	dir_for(dir, sizeof(dir), "mbrec");
	if (open_ok(u, &s, dir))
		return;
	/* Absent: -ENOENT and a zeroed record. */
	memset(&got, 0xAA, sizeof(got));
	UNIT_CHECK(u, state_mbox_get(s, 1, 1, &got, &e) == -ENOENT);
	UNIT_CHECK(u, got.name[0] == 0 && got.uidvalidity == 0 && got.highestmodseq == 0);

	/* Job 1: mailboxes 3, 1, 2 (put out of order); jobs 0 and 2 around it. */
	for (mb = 3; mb >= 1; mb--) {
		mbox_fill(&r, mb);
		UNIT_CHECK(u, state_mbox_put(s, 1, mb, &r, &e) == 0);
	}
	mbox_fill(&r, 100);
	UNIT_CHECK(u, state_mbox_put(s, 0, 0xFFFFFFFF, &r, &e) == 0);
	mbox_fill(&r, 200);
	UNIT_CHECK(u, state_mbox_put(s, 2, 0, &r, &e) == 0);
	/* Longest names, every byte value but NUL. */
	memset(&r, 0, sizeof(r));
	for (int i = 0; i < STATE_NAME_MAX - 1; i++) {
		r.name[i] = (char)(1 + i % 255);
		r.dst_name[i] = (char)(255 - i % 255);
	}
	r.uidvalidity = 1;
	UNIT_CHECK(u, state_mbox_put(s, 1, 300, &r, &e) == 0);
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	state_close(s);

	if (open_ok(u, &s, dir))
		return;
	UNIT_CHECK(u, state_mbox_get(s, 1, 300, &got, &e) == 0 && mbox_eq(&got, &r));
	mbox_fill(&r, 2);
	UNIT_CHECK(u, state_mbox_get(s, 1, 2, &got, &e) == 0 && mbox_eq(&got, &r));

	memset(&seen, 0, sizeof(seen));
	UNIT_CHECK(u, state_mbox_each(s, 1, mbox_cb, &seen, &e) == 0);
	UNIT_CHECKF(u,
	            seen.n == 4 && seen.ids[0] == 1 && seen.ids[1] == 2 && seen.ids[2] == 3 &&
	                seen.ids[3] == 300 && !seen.bad,
	            "n=%d", seen.n);
	memset(&seen, 0, sizeof(seen));
	UNIT_CHECK(u, state_mbox_each(s, 2, mbox_cb, &seen, &e) == 0);
	UNIT_CHECK(u, seen.n == 1 && seen.ids[0] == 0);
	memset(&seen, 0, sizeof(seen));
	UNIT_CHECK(u, state_mbox_each(s, 3, mbox_cb, &seen, &e) == 0 && seen.n == 0);
	memset(&seen, 0, sizeof(seen));
	seen.stop_after = 2;
	UNIT_CHECK(u, state_mbox_each(s, 1, mbox_cb, &seen, &e) == 7 && seen.n == 2);

	/* Overwrite replaces every field. */
	mbox_fill(&r, 2);
	r.name[0] = '\0';
	r.highestmodseq = 0;
	UNIT_CHECK(u, state_mbox_put(s, 1, 2, &r, &e) == 0);
	UNIT_CHECK(u, state_mbox_get(s, 1, 2, &got, &e) == 0 && mbox_eq(&got, &r));
	state_close(s);
}

static void test_msg_roundtrip(struct unit_ctx *u)
{
	char dir[256];
	struct mf_error e = {0, ""};
	struct state *s;
	struct state_msg m, got;
	struct state_msg_key k = {1, 2, 3, 4};
	int i;

	dir_for(dir, sizeof(dir), "msgrt");
	if (open_ok(u, &s, dir))
		return;
	UNIT_CHECK(u, state_msg_get(s, &k, &got, &e) == -ENOENT);
	msg_fill(&m, 4);
	m.size = UINT64_MAX;
	m.modseq = UINT64_MAX - 1;
	m.internaldate = 0;
	m.status = STATE_MSG_INTENT;
	m.dst_uid = 0;
	/* Longest flags string, with 8-bit bytes. */
	for (i = 0; i < STATE_FLAGS_MAX - 1; i++)
		m.flags[i] = (char)(i % 50 == 49 ? ' ' : (i % 7 == 0 ? 0xe9 : 'a' + i % 26));
	m.flags[STATE_FLAGS_MAX - 1] = '\0';
	UNIT_CHECK(u, state_msg_put(s, &k, &m, &e) == 0);
	memset(&got, 0x55, sizeof(got));
	UNIT_CHECK(u, state_msg_get(s, &k, &got, &e) == 0 && msg_eq(&got, &m));
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	state_close(s);

	if (open_ok(u, &s, dir))
		return;
	memset(&got, 0x55, sizeof(got));
	UNIT_CHECK(u, state_msg_get(s, &k, &got, &e) == 0 && msg_eq(&got, &m));
	/* Overwrite with short flags, then delete. */
	msg_fill(&m, 4);
	m.flags[0] = '\0';
	m.status = STATE_MSG_FAILED;
	UNIT_CHECK(u, state_msg_put(s, &k, &m, &e) == 0);
	UNIT_CHECK(u, state_msg_get(s, &k, &got, &e) == 0 && msg_eq(&got, &m));
	/* Unterminated flags are refused. */
	memset(m.flags, 'f', sizeof(m.flags));
	UNIT_CHECK(u, state_msg_put(s, &k, &m, &e) == -EINVAL);
	UNIT_CHECK(u, state_msg_del(s, &k, &e) == 0);
	UNIT_CHECK(u, state_msg_get(s, &k, &got, &e) == -ENOENT);
	UNIT_CHECK(u, state_msg_del(s, &k, &e) == 0); /* absent: not an error */
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	state_close(s);
	if (open_ok(u, &s, dir))
		return;
	UNIT_CHECK(u, state_msg_get(s, &k, &got, &e) == -ENOENT);
	state_close(s);
}

struct uid_list {
	uint32_t uids[64];
	int n, stop_after, bad;
};

static int uid_cb(void *ctx, uint32_t uid, const struct state_msg *m)
{
	struct uid_list *l = ctx;
	struct state_msg want;

	msg_fill(&want, uid);
	if (!msg_eq(m, &want))
		l->bad = 1;
	if (l->n < 64)
		l->uids[l->n] = uid;
	l->n++;
	return l->stop_after && l->n == l->stop_after ? 1 : 0;
}

static int uids_are(const struct uid_list *l, const uint32_t *want, int n)
{
	return l->n == n && !l->bad && !memcmp(l->uids, want, (size_t)n * sizeof(*want));
}

static void test_msg_order(struct unit_ctx *u)
{
	/* The target prefix is (job 5, mbox 7, uidvalidity 0x80000000). */
	static const uint32_t uids[] = {0xFFFFFFFF, 3, 0x80000000, 1, 256, 0x7FFFFFFF, 65536, 2};
	static const uint32_t sorted[] = {1, 2, 3, 256, 65536, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF};
	static const struct state_msg_key neighbours[] = {
	    {5, 7, 0x7FFFFFFF, 0xFFFFFFFF},
	    {5, 7, 0x80000001, 0},
	    {5, 7, 0x80000001, 1},
	    {5, 6, 0x80000000, 5},
	    {5, 8, 0x80000000, 0},
	    {4, 7, 0x80000000, 9},
	    {6, 7, 0x80000000, 0},
	    {6, 0, 0, 0},
	    {4, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF},
	};
	char dir[256];
	struct mf_error e = {0, ""};
	struct state *s;
	struct state_msg m;
	struct state_msg_key k;
	struct uid_list l;
	uint64_t count;
	size_t i;
	int pass;

	dir_for(dir, sizeof(dir), "order");
	if (open_ok(u, &s, dir))
		return;
	for (i = 0; i < sizeof(neighbours) / sizeof(neighbours[0]); i++) {
		msg_fill(&m, neighbours[i].uid);
		UNIT_CHECK(u, state_msg_put(s, &neighbours[i], &m, &e) == 0);
	}
	for (i = 0; i < sizeof(uids) / sizeof(uids[0]); i++) {
		k = (struct state_msg_key){5, 7, 0x80000000, uids[i]};
		msg_fill(&m, uids[i]);
		UNIT_CHECK(u, state_msg_put(s, &k, &m, &e) == 0);
	}
	/* Pass 0 reads uncommitted writes, pass 1 the committed state after reopen. */
	for (pass = 0; pass < 2; pass++) {
		memset(&l, 0, sizeof(l));
		UNIT_CHECK(u, state_msg_each(s, 5, 7, 0x80000000, 0, uid_cb, &l, &e) == 0);
		UNIT_CHECKF(u, uids_are(&l, sorted, 8), "pass %d: n=%d", pass, l.n);
		UNIT_CHECK(u, state_msg_count(s, 5, 7, 0x80000000, &count, &e) == 0 && count == 8);

		/* From an existing UID, a missing one, past the last. */
		memset(&l, 0, sizeof(l));
		UNIT_CHECK(u, state_msg_each(s, 5, 7, 0x80000000, 256, uid_cb, &l, &e) == 0);
		UNIT_CHECK(u, uids_are(&l, sorted + 3, 5));
		memset(&l, 0, sizeof(l));
		UNIT_CHECK(u, state_msg_each(s, 5, 7, 0x80000000, 257, uid_cb, &l, &e) == 0);
		UNIT_CHECK(u, uids_are(&l, sorted + 4, 4));
		memset(&l, 0, sizeof(l));
		UNIT_CHECK(u, state_msg_each(s, 5, 7, 0x80000000, 0xFFFFFFFF, uid_cb, &l, &e) == 0);
		UNIT_CHECK(u, uids_are(&l, sorted + 7, 1));
		memset(&l, 0, sizeof(l));
		UNIT_CHECK(u, state_msg_each(s, 5, 7, 0x80000001, 2, uid_cb, &l, &e) == 0);
		UNIT_CHECK(u, l.n == 0);

		/* Empty prefixes next to full ones. */
		memset(&l, 0, sizeof(l));
		UNIT_CHECK(u,
		           state_msg_each(s, 5, 7, 0x80000002, 0, uid_cb, &l, &e) == 0 && l.n == 0);
		UNIT_CHECK(u, state_msg_count(s, 5, 9, 0, &count, &e) == 0 && count == 0);
		UNIT_CHECK(u, state_msg_count(s, 6, 7, 0x80000000, &count, &e) == 0 && count == 1);
		UNIT_CHECK(u, state_msg_count(s, 4, 0xFFFFFFFF, 0xFFFFFFFF, &count, &e) == 0 &&
		                  count == 1);

		/* A callback's non-zero return stops and is returned. */
		memset(&l, 0, sizeof(l));
		l.stop_after = 3;
		UNIT_CHECK(u, state_msg_each(s, 5, 7, 0x80000000, 0, uid_cb, &l, &e) == 1);
		UNIT_CHECK(u, uids_are(&l, sorted, 3));

		if (pass == 0) {
			UNIT_CHECK(u, state_commit(s, &e) == 0);
			state_close(s);
			if (open_ok(u, &s, dir))
				return;
		}
	}
	state_close(s);
}

struct mutate_ctx {
	struct state *s;
	struct uid_list l;
	int err;
};

/* Deletes what it visits, adds to its own range and elsewhere, commits midway. */
static int mutate_cb(void *ctx, uint32_t uid, const struct state_msg *m)
{
	struct mutate_ctx *c = ctx;
	struct state_msg_key k = {1, 1, 1, uid};
	struct state_msg nm;
	struct mf_error e;

	(void)m;
	if (c->l.n < 64)
		c->l.uids[c->l.n] = uid;
	c->l.n++;
	if (state_msg_del(c->s, &k, &e))
		c->err = 1;
	k.uidvalidity = 2;
	msg_fill(&nm, uid);
	if (state_msg_put(c->s, &k, &nm, &e))
		c->err = 1;
	if (uid <= 3) {
		k.uidvalidity = 1;
		k.uid = uid + 1000;
		msg_fill(&nm, k.uid);
		if (state_msg_put(c->s, &k, &nm, &e))
			c->err = 1;
	}
	if (uid == 5 && state_commit(c->s, &e))
		c->err = 1;
	return 0;
}

/* Rewrites what it visits in place: each message must still be visited once. */
static int rewrite_cb(void *ctx, uint32_t uid, const struct state_msg *m)
{
	struct mutate_ctx *c = ctx;
	struct state_msg_key k = {1, 1, 2, uid};
	struct state_msg nm = *m;
	struct mf_error e;

	c->l.n++;
	snprintf(nm.flags, sizeof(nm.flags), "\\Seen \\Flagged $Rewritten%u", uid);
	if (state_msg_put(c->s, &k, &nm, &e))
		c->err = 1;
	return c->l.n > 100; /* a scan that revisits would never end */
}

static void test_each_mutation(struct unit_ctx *u)
{
	static const uint32_t want[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1001, 1002, 1003};
	char dir[256];
	struct mf_error e = {0, ""};
	struct mutate_ctx c;
	struct state_msg m;
	uint64_t n1, n2;
	uint32_t uid;

	dir_for(dir, sizeof(dir), "mutate");
	memset(&c, 0, sizeof(c));
	if (open_ok(u, &c.s, dir))
		return;
	for (uid = 1; uid <= 10; uid++) {
		struct state_msg_key k = {1, 1, 1, uid};

		msg_fill(&m, uid);
		UNIT_CHECK(u, state_msg_put(c.s, &k, &m, &e) == 0);
	}
	UNIT_CHECK(u, state_msg_each(c.s, 1, 1, 1, 0, mutate_cb, &c, &e) == 0 && !c.err);
	UNIT_CHECKF(u, c.l.n == 13 && !memcmp(c.l.uids, want, sizeof(want)), "n=%d", c.l.n);
	UNIT_CHECK(u, state_msg_count(c.s, 1, 1, 1, &n1, &e) == 0 && n1 == 0);
	UNIT_CHECK(u, state_msg_count(c.s, 1, 1, 2, &n2, &e) == 0 && n2 == 13);
	memset(&c.l, 0, sizeof(c.l));
	UNIT_CHECK(u, state_msg_each(c.s, 1, 1, 2, 0, rewrite_cb, &c, &e) == 0 && !c.err);
	UNIT_CHECKF(u, c.l.n == 13, "rewrite visited %d", c.l.n);
	state_close(c.s);
}

static void test_abort(struct unit_ctx *u)
{
	char dir[256];
	struct mf_error e = {0, ""};
	struct state *s;
	struct state_msg m, got;
	struct state_msg_key k1 = {1, 1, 1, 1}, k2 = {1, 1, 1, 2};
	uint32_t job, job2, mb;
	int created;

	dir_for(dir, sizeof(dir), "abort");
	if (open_ok(u, &s, dir))
		return;
	msg_fill(&m, 1);
	UNIT_CHECK(u, state_msg_put(s, &k1, &m, &e) == 0);
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	UNIT_CHECK(u, state_commit(s, &e) == 0); /* nothing pending: fine */
	msg_fill(&m, 2);
	UNIT_CHECK(u, state_msg_put(s, &k2, &m, &e) == 0);
	UNIT_CHECK(u, state_msg_del(s, &k1, &e) == 0);
	UNIT_CHECK(u, state_job(s, "aborted job", &job, &e) == 0);
	UNIT_CHECK(u, state_mbox_id(s, job, "X", 1, &mb, &created, &e) == 0 && created);
	/* Visible in-process before commit. */
	UNIT_CHECK(u, state_msg_get(s, &k2, &got, &e) == 0 && msg_eq(&got, &m));
	UNIT_CHECK(u, state_msg_get(s, &k1, &got, &e) == -ENOENT);
	state_abort(s);
	UNIT_CHECK(u, state_msg_get(s, &k2, &got, &e) == -ENOENT);
	msg_fill(&m, 1);
	UNIT_CHECK(u, state_msg_get(s, &k1, &got, &e) == 0 && msg_eq(&got, &m));
	/* The aborted job never existed: the next job takes the same id. */
	UNIT_CHECK(u, state_job(s, "another job", &job2, &e) == 0 && job2 == job);
	state_abort(s);
	state_close(s);
}

/* Child: commit 100 messages, write 50 more without commit, then die. */
static void crash_child(const char *dir, int how)
{
	struct mf_error e;
	struct state *s;
	struct state_msg m;
	uint32_t job, mb, uid;
	int created;

	if (state_open(&s, dir, &e) || state_job(s, "crash", &job, &e) ||
	    state_mbox_id(s, job, "INBOX", 5, &mb, &created, &e))
		_exit(2);
	for (uid = 1; uid <= 150; uid++) {
		struct state_msg_key k = {job, mb, 1, uid};

		msg_fill(&m, uid);
		if (state_msg_put(s, &k, &m, &e))
			_exit(3);
		if (uid == 100 && state_commit(s, &e))
			_exit(4);
	}
	if (how == 0)
		_exit(0);
	kill(getpid(), SIGKILL);
	_exit(5);
}

static void test_crash(struct unit_ctx *u)
{
	int how;

	for (how = 0; how < 2; how++) {
		char dir[256];
		struct mf_error e = {0, ""};
		struct state *s;
		struct state_msg m, got;
		uint32_t job, mb, uid;
		uint64_t n;
		int status, created;
		pid_t pid;

		snprintf(dir, sizeof(dir), "%s/crash%d", base, how);
		fflush(stdout);
		pid = fork();
		if (pid == 0)
			crash_child(dir, how);
		UNIT_CHECK(u, pid > 0 && waitpid(pid, &status, 0) == pid);
		if (how == 0)
			UNIT_CHECKF(u, WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %x",
			            status);
		else
			UNIT_CHECKF(u, WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
			            "status %x", status);
		if (open_ok(u, &s, dir))
			return;
		UNIT_CHECK(u, state_job(s, "crash", &job, &e) == 0);
		UNIT_CHECK(u,
		           state_mbox_id(s, job, "INBOX", 5, &mb, &created, &e) == 0 && !created);
		UNIT_CHECKF(u, state_msg_count(s, job, mb, 1, &n, &e) == 0 && n == 100, "n=%llu",
		            (unsigned long long)n);
		for (uid = 1; uid <= 101; uid++) {
			struct state_msg_key k = {job, mb, 1, uid};
			int rc = state_msg_get(s, &k, &got, &e);

			msg_fill(&m, uid);
			if (uid <= 100)
				UNIT_CHECK(u, rc == 0 && msg_eq(&got, &m));
			else
				UNIT_CHECK(u, rc == -ENOENT);
		}
		state_close(s);
	}
}

/*
 * Kill a committing child at many points. Invariant: what survives is whole
 * batches, at least every batch whose commit returned, at most one more.
 */
enum { CRASH_BATCH = 100 };

static void batch_child(const char *dir, int wfd)
{
	struct mf_error e;
	struct state *s;
	struct state_msg m;
	uint32_t b, i;

	if (state_open(&s, dir, &e))
		_exit(2);
	for (b = 0; b < 100000; b++) {
		for (i = 1; i <= CRASH_BATCH; i++) {
			struct state_msg_key k = {1, 1, 1, b * CRASH_BATCH + i};

			msg_fill(&m, k.uid);
			if (state_msg_put(s, &k, &m, &e))
				_exit(3);
		}
		if (state_commit(s, &e))
			_exit(4);
		if (write(wfd, &b, sizeof(b)) != (ssize_t)sizeof(b))
			_exit(5);
	}
	_exit(0);
}

struct seq_ctx {
	uint32_t next;
	int bad;
};

static int seq_cb(void *ctx, uint32_t uid, const struct state_msg *m)
{
	struct seq_ctx *c = ctx;
	struct state_msg want;

	msg_fill(&want, uid);
	if (uid != c->next || !msg_eq(m, &want))
		c->bad = 1;
	c->next++;
	return 0;
}

static void test_crash_many_points(struct unit_ctx *u)
{
	int round, rounds = 24;

	srand(12345);
	for (round = 0; round < rounds; round++) {
		char dir[256];
		struct mf_error e = {0, ""};
		struct state *s;
		struct seq_ctx sc = {1, 0};
		uint32_t b;
		uint64_t n;
		int fds[2], status, reported = 0;
		pid_t pid;

		snprintf(dir, sizeof(dir), "%s/kill%d", base, round);
		UNIT_CHECK(u, pipe(fds) == 0);
		fflush(stdout);
		pid = fork();
		if (pid == 0) {
			close(fds[0]);
			batch_child(dir, fds[1]);
		}
		close(fds[1]);
		usleep((useconds_t)(round < 4 ? round * 500 : 2000 + rand() % 60000));
		kill(pid, SIGKILL);
		UNIT_CHECK(u, waitpid(pid, &status, 0) == pid);
		while (read(fds[0], &b, sizeof(b)) == (ssize_t)sizeof(b))
			reported++;
		close(fds[0]);
		if (open_ok(u, &s, dir))
			return;
		UNIT_CHECK(u, state_msg_count(s, 1, 1, 1, &n, &e) == 0);
		UNIT_CHECKF(u,
		            n % CRASH_BATCH == 0 && n / CRASH_BATCH >= (uint64_t)reported &&
		                n / CRASH_BATCH <= (uint64_t)reported + 1,
		            "round %d: %llu messages survived, %d batches reported committed",
		            round, (unsigned long long)n, reported);
		UNIT_CHECK(u, state_msg_each(s, 1, 1, 1, 0, seq_cb, &sc, &e) == 0 && !sc.bad);
		if (n) {
			struct state_msg m, got;
			struct state_msg_key k = {1, 1, 1, (uint32_t)n};

			msg_fill(&m, (uint32_t)n);
			UNIT_CHECK(u, state_msg_get(s, &k, &got, &e) == 0 &&
			                  !memcmp(got.hash, m.hash, 32));
		}
		state_close(s);
	}
}

static void test_second_opener(struct unit_ctx *u)
{
	char dir[128], want[400];
	struct mf_error e = {0, ""};
	struct state *s, *s2 = (struct state *)1;
	int status;
	pid_t pid;

	dir_for(dir, sizeof(dir), "busy");
	if (open_ok(u, &s, dir))
		return;
	snprintf(want, sizeof(want), "state %s is in use by another mailferry process", dir);
	/* Same process. */
	UNIT_CHECK(u, state_open(&s2, dir, &e) == -EBUSY && s2 == NULL);
	UNIT_CHECKF(u, !strcmp(e.msg, want), "got \"%s\"", e.msg);
	/* Another process (after an exec it would not share the lock). */
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct state *c;
		struct mf_error ce = {0, ""};

		/* The inherited lock file descriptor shares the lock: drop it as exec would. */
		for (int fd = 3; fd < 1024; fd++) {
			char path[64], target[512];
			ssize_t n;

			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			n = readlink(path, target, sizeof(target) - 1);
			if (n > 0) {
				target[n] = '\0';
				if (strstr(target, "/busy/lock"))
					close(fd);
			}
		}
		_exit(state_open(&c, dir, &ce) == -EBUSY && !strcmp(ce.msg, want) ? 0 : 1);
	}
	UNIT_CHECK(u, pid > 0 && waitpid(pid, &status, 0) == pid);
	UNIT_CHECK(u, WIFEXITED(status) && WEXITSTATUS(status) == 0);
	state_close(s);
	/* Free again once closed. */
	if (open_ok(u, &s, dir))
		return;
	state_close(s);
}

/* Records written by a future mailferry, or damaged, are refused by name. */
static void test_bad_records(struct unit_ctx *u)
{
	char dir[128], want[400];
	struct mf_error e = {0, ""};
	struct state *s;
	struct state_msg m;
	struct state_msg_key k5 = {1, 1, 1, 5}, k6 = {1, 1, 1, 6};
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi msgs, jobs;
	uint8_t key[16] = {0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 5};
	uint8_t v9[70] = {9}, vshort[3] = {1, 2, 3};
	uint8_t fkey[2] = {0, 'f'}, f99[4] = {0, 0, 0, 99};
	MDB_val kv = {16, key}, vv = {sizeof(v9), v9};
	struct uid_list l;

	dir_for(dir, sizeof(dir), "bad");
	if (open_ok(u, &s, dir))
		return;
	state_close(s);

	UNIT_CHECK(u, mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 8) == 0 &&
	                  mdb_env_open(env, dir, 0, 0600) == 0);
	UNIT_CHECK(u, mdb_txn_begin(env, NULL, 0, &txn) == 0 &&
	                  mdb_dbi_open(txn, "messages", 0, &msgs) == 0);
	UNIT_CHECK(u, mdb_put(txn, msgs, &kv, &vv, 0) == 0);
	key[15] = 6;
	vv = (MDB_val){sizeof(vshort), vshort};
	UNIT_CHECK(u, mdb_put(txn, msgs, &kv, &vv, 0) == 0);
	UNIT_CHECK(u, mdb_txn_commit(txn) == 0);
	mdb_env_close(env);

	if (open_ok(u, &s, dir))
		return;
	UNIT_CHECK(u, state_msg_get(s, &k5, &m, &e) == -EINVAL);
	snprintf(want, sizeof(want),
	         "state %s: messages (job 1 mbox 1 uidvalidity 1 uid 5): unknown record "
	         "version 9 (this mailferry reads 1)",
	         dir);
	UNIT_CHECKF(u, !strcmp(e.msg, want), "got \"%s\"", e.msg);
	UNIT_CHECK(u, state_msg_get(s, &k6, &m, &e) == -EIO && strstr(e.msg, "corrupt record"));
	memset(&l, 0, sizeof(l));
	UNIT_CHECK(u, state_msg_each(s, 1, 1, 1, 0, uid_cb, &l, &e) == -EINVAL && l.n == 0);
	/* A decode error is not an LMDB error: the transaction lives on. */
	msg_fill(&m, 7);
	k6.uid = 7;
	UNIT_CHECK(u, state_msg_put(s, &k6, &m, &e) == 0 && state_commit(s, &e) == 0);
	state_close(s);

	/* A whole state written in a future format. */
	UNIT_CHECK(u, mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 8) == 0 &&
	                  mdb_env_open(env, dir, 0, 0600) == 0);
	UNIT_CHECK(u, mdb_txn_begin(env, NULL, 0, &txn) == 0 &&
	                  mdb_dbi_open(txn, "jobs", 0, &jobs) == 0);
	kv = (MDB_val){sizeof(fkey), fkey};
	vv = (MDB_val){sizeof(f99), f99};
	UNIT_CHECK(u, mdb_put(txn, jobs, &kv, &vv, 0) == 0 && mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
	UNIT_CHECK(u, state_open(&s, dir, &e) == -EINVAL);
	snprintf(want, sizeof(want),
	         "state %s: format 99 is not supported (this mailferry reads 1)", dir);
	UNIT_CHECKF(u, !strcmp(e.msg, want), "got \"%s\"", e.msg);
}

static void test_map_full(struct unit_ctx *u)
{
	char dir[256];
	struct mf_error e = {0, ""};
	struct state *s;
	struct state_msg m, got;
	struct state_msg_key k = {1, 1, 1, 0};
	uint32_t uid;
	int rc = 0;

	dir_for(dir, sizeof(dir), "full");
	setenv("MAILFERRY_STATE_MAP_MIB", "1", 1);
	rc = state_open(&s, dir, &e);
	unsetenv("MAILFERRY_STATE_MAP_MIB");
	UNIT_CHECKF(u, rc == 0, "%s", e.msg);
	if (rc)
		return;
	for (uid = 1; uid <= 100; uid++) {
		k.uid = uid;
		msg_fill(&m, uid);
		UNIT_CHECK(u, state_msg_put(s, &k, &m, &e) == 0);
	}
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	for (uid = 101; uid < 100000; uid++) {
		k.uid = uid;
		msg_fill(&m, uid);
		rc = state_msg_put(s, &k, &m, &e);
		if (rc)
			break;
	}
	UNIT_CHECKF(u,
	            rc == -ENOSPC && strstr(e.msg, "MDB_MAP_FULL") &&
	                strstr(e.msg, "(map size 1 MiB)") && strstr(e.msg, "dropped"),
	            "rc %d: %s", rc, e.msg);
	/* Every call now reports the loss, reads included... */
	k.uid = 1;
	UNIT_CHECK(u, state_msg_get(s, &k, &got, &e) == -ENOSPC && strstr(e.msg, "MDB_MAP_FULL"));
	/* ...until commit reports it once more. */
	UNIT_CHECK(u, state_commit(s, &e) == -ENOSPC && strstr(e.msg, "dropped"));
	UNIT_CHECK(u, state_msg_get(s, &k, &got, &e) == 0);
	k.uid = 101;
	UNIT_CHECK(u, state_msg_get(s, &k, &got, &e) == -ENOENT);
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	state_close(s);
}

/* Issue 15 defect 6: a damaged data.mdb is refused with an error, never
 * mapped (SIGBUS), never taken for a new state. */
static size_t file_get(const char *path, uint8_t **buf)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	size_t n = 0;

	*buf = NULL;
	if (fd >= 0 && fstat(fd, &st) == 0 && (*buf = malloc((size_t)st.st_size)) &&
	    read(fd, *buf, (size_t)st.st_size) == st.st_size)
		n = (size_t)st.st_size;
	if (fd >= 0)
		close(fd);
	return n;
}

static int file_put(const char *path, const uint8_t *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int ok = fd >= 0 && write(fd, p, n) == (ssize_t)n;

	if (fd >= 0)
		close(fd);
	return ok ? 0 : -1;
}

static void damaged_refused(struct unit_ctx *u, const char *dir, const char *what, const char *want)
{
	struct mf_error e = {0, ""};
	struct state_check_info info;
	struct state *s = NULL;
	char path[300];
	struct stat st0, st1;
	int rc;

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	UNIT_CHECK(u, stat(path, &st0) == 0);
	rc = state_open(&s, dir, &e);
	UNIT_CHECKF(u,
	            rc == -EUCLEAN && s == NULL && strstr(e.msg, "damaged") &&
	                strstr(e.msg, want) && !strchr(e.msg, '\n'),
	            "%s: got %d \"%s\"", what, rc, e.msg);
	if (s)
		state_close(s);
	/* Nothing was written over it. */
	UNIT_CHECKF(u, stat(path, &st1) == 0 && st1.st_size == st0.st_size, "%s: size changed",
	            what);
	rc = state_check(dir, &info, &e);
	UNIT_CHECKF(u, rc == -EUCLEAN && strstr(e.msg, want), "%s: check got %d \"%s\"", what, rc,
	            e.msg);
}

static void test_damaged(struct unit_ctx *u)
{
	char dir[128], path[300];
	struct mf_error e = {0, ""};
	struct state_check_info info;
	struct state *s;
	struct state_msg m;
	struct state_msg_key k = {1, 1, 1, 0};
	uint64_t counts[4];
	uint8_t *good, *bad;
	size_t n, psize = 4096;

	dir_for(dir, sizeof(dir), "damaged");
	if (open_ok(u, &s, dir))
		return;
	for (k.uid = 1; k.uid <= 3000; k.uid++) {
		msg_fill(&m, k.uid);
		UNIT_CHECK(u, state_msg_put(s, &k, &m, &e) == 0);
	}
	UNIT_CHECK(u, state_commit(s, &e) == 0);
	state_close(s);
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	n = file_get(path, &good);
	UNIT_CHECKF(u, n > 16 * psize, "data.mdb is %zu bytes", n);
	if (n <= 16 * psize)
		return;
	UNIT_CHECK(u, state_check(dir, &info, &e) == 0 && info.exists && info.page_size == psize &&
	                  info.last_page + 1 <= n / psize && info.pages > 10);

	UNIT_CHECK(u, truncate(path, 0) == 0);
	damaged_refused(u, dir, "0 bytes", "data.mdb exists but is empty (0 bytes)");
	UNIT_CHECK(u, file_put(path, good, 8192) == 0);
	damaged_refused(u, dir, "8 KiB", "data.mdb is truncated");
	UNIT_CHECK(u, file_put(path, good, 12288) == 0);
	damaged_refused(u, dir, "12 KiB", "data.mdb is truncated");
	UNIT_CHECK(u, file_put(path, good, n - psize) == 0);
	damaged_refused(u, dir, "one page short", "data.mdb is truncated");
	UNIT_CHECK(u, file_put(path, good, 100) == 0);
	damaged_refused(u, dir, "100 bytes", "too short");

	bad = malloc(n);
	if (!bad)
		return;
	/* Both meta page headers overwritten. */
	memcpy(bad, good, n);
	memset(bad, 0x5a, 16);
	memset(bad + psize, 0x5a, 16);
	UNIT_CHECK(u, file_put(path, bad, n) == 0);
	damaged_refused(u, dir, "meta headers", "meta page 0 has a bad page header");
	/* Every data page's header overwritten. */
	memcpy(bad, good, n);
	for (size_t off = 2 * psize; off < n; off += psize)
		memset(bad + off, 0xff, 16);
	UNIT_CHECK(u, file_put(path, bad, n) == 0);
	damaged_refused(u, dir, "page headers", "page");
	/* One branch or leaf page pointing past the end (page numbers kept). */
	memcpy(bad, good, n);
	for (size_t off = 2 * psize; off < n; off += psize)
		memset(bad + off + 16, 0xee, psize - 16);
	UNIT_CHECK(u, file_put(path, bad, n) == 0);
	damaged_refused(u, dir, "page bodies", "page");
	/* Random bytes. */
	srand(15);
	for (size_t i = 0; i < n; i++)
		bad[i] = (uint8_t)rand();
	UNIT_CHECK(u, file_put(path, bad, n) == 0);
	damaged_refused(u, dir, "random", "not an LMDB file");
	free(bad);

	/* The good bytes again: opens, every record reads. */
	UNIT_CHECK(u, file_put(path, good, n) == 0);
	if (open_ok(u, &s, dir))
		return;
	UNIT_CHECKF(u, state_verify(s, counts, &e) == 0 && counts[3] == 3000, "%s", e.msg);
	state_close(s);

	/* --state-reset: moved aside, a new state starts. */
	UNIT_CHECK(u, truncate(path, 8192) == 0);
	UNIT_CHECKF(u, state_open_flags(&s, dir, STATE_OPEN_RESET, &e) == 0, "%s", e.msg);
	if (!s)
		return;
	k.uid = 1;
	UNIT_CHECK(u, state_msg_get(s, &k, &m, &e) == -ENOENT);
	state_close(s);
	{
		char cmd[400];

		snprintf(cmd, sizeof(cmd), "test \"$(stat -c %%s %s/data.mdb.damaged-*)\" = 8192",
		         dir);
		UNIT_CHECK(u, system(cmd) == 0);
	}
	free(good);
}

/* Issue 15 defect 7: planted symlinks and loose permissions. */
static void test_links_and_modes(struct unit_ctx *u)
{
	char dir[128], path[300], victim[300];
	struct mf_error e = {0, ""};
	struct state *s = NULL;
	struct stat st;
	int fd, rc;

	dir_for(dir, sizeof(dir), "links");
	dir_for(victim, sizeof(victim), "victim");
	UNIT_CHECK(u, mkdir(dir, 0700) == 0);
	fd = open(victim, O_WRONLY | O_CREAT, 0644);
	UNIT_CHECK(u, fd >= 0 && fchmod(fd, 0644) == 0);
	close(fd);

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	UNIT_CHECK(u, symlink(victim, path) == 0);
	rc = state_open(&s, dir, &e);
	UNIT_CHECKF(u, rc == -EPERM && !s && strstr(e.msg, "data.mdb is a symbolic link"),
	            "got %d \"%s\"", rc, e.msg);
	UNIT_CHECK(u, stat(victim, &st) == 0 && st.st_size == 0 && (st.st_mode & 0777) == 0644);
	UNIT_CHECK(u, unlink(path) == 0);

	snprintf(path, sizeof(path), "%s/lock", dir);
	unlink(path);
	UNIT_CHECK(u, symlink(victim, path) == 0);
	rc = state_open(&s, dir, &e);
	UNIT_CHECKF(u, rc == -EPERM && !s && strstr(e.msg, "lock is a symbolic link"),
	            "got %d \"%s\"", rc, e.msg);
	UNIT_CHECK(u, unlink(path) == 0);

	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	UNIT_CHECK(u, mkfifo(path, 0600) == 0);
	rc = state_open(&s, dir, &e);
	UNIT_CHECKF(u, rc == -EPERM && !s && strstr(e.msg, "not a regular file"), "got %d \"%s\"",
	            rc, e.msg);
	UNIT_CHECK(u, unlink(path) == 0);

	UNIT_CHECK(u, chmod(dir, 0777) == 0);
	rc = state_open(&s, dir, &e);
	UNIT_CHECKF(u, rc == -EPERM && !s && strstr(e.msg, "writable by everyone (mode 0777)"),
	            "got %d \"%s\"", rc, e.msg);
	UNIT_CHECK(u, chmod(dir, 0770) == 0);
	rc = state_open(&s, dir, &e);
	UNIT_CHECKF(u, rc == -EPERM && !s && strstr(e.msg, "writable by its group"),
	            "got %d \"%s\"", rc, e.msg);
	UNIT_CHECK(u, chmod(dir, 0755) == 0);
	if (open_ok(u, &s, dir))
		return;
	state_close(s);

	/* A readable data.mdb is made private; a writable one refused. */
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	UNIT_CHECK(u, chmod(path, 0644) == 0);
	if (open_ok(u, &s, dir))
		return;
	state_close(s);
	UNIT_CHECK(u, stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	UNIT_CHECK(u, chmod(path, 0666) == 0);
	rc = state_open(&s, dir, &e);
	UNIT_CHECKF(u, rc == -EPERM && strstr(e.msg, "data.mdb is writable by others"),
	            "got %d \"%s\"", rc, e.msg);
	if (geteuid() == 0) {
		/* Another user's directory. */
		UNIT_CHECK(u, chmod(path, 0600) == 0 && chown(dir, 65534, 65534) == 0);
		rc = state_open(&s, dir, &e);
		UNIT_CHECKF(u, rc == -EPERM && strstr(e.msg, "owned by uid 65534"), "got %d \"%s\"",
		            rc, e.msg);
		UNIT_CHECK(u, chown(dir, 0, 0) == 0);
	}
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_put_rate(struct unit_ctx *u)
{
	enum { TOTAL = 200000, BATCH = 1000 };
	char dir[256];
	struct mf_error e = {0, ""};
	struct state *s;
	struct state_msg m, got;
	struct state_msg_key k = {1, 1, 1, 0};
	double t0, t1;
	uint64_t n;
	uint32_t uid;
	int ok = 1;

	dir_for(dir, sizeof(dir), "rate");
	if (open_ok(u, &s, dir))
		return;
	t0 = now();
	for (uid = 1; uid <= TOTAL && ok; uid++) {
		k.uid = uid;
		msg_fill(&m, uid);
		ok = state_msg_put(s, &k, &m, &e) == 0;
		if (ok && uid % BATCH == 0)
			ok = state_commit(s, &e) == 0;
	}
	t1 = now();
	UNIT_CHECKF(u, ok, "%s", e.msg);
	printf("# state: %d message puts, commit every %d: %.2f s, %.0f puts/s\n", TOTAL, BATCH,
	       t1 - t0, TOTAL / (t1 - t0));
	state_close(s);
	if (open_ok(u, &s, dir))
		return;
	UNIT_CHECK(u, state_msg_count(s, 1, 1, 1, &n, &e) == 0 && n == TOTAL);
	k.uid = 123457;
	msg_fill(&m, k.uid);
	UNIT_CHECK(u, state_msg_get(s, &k, &got, &e) == 0 && msg_eq(&got, &m));
	state_close(s);
}

int main(void)
{
	struct unit_ctx u = {0, 0, 0, NULL};
	int rc;

	snprintf(base, sizeof(base), "/tmp/mf-test-state-XXXXXX");
	if (!mkdtemp(base)) {
		printf("not ok - test_state: mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	UNIT_RUN(&u, test_open_creates_dir);
	UNIT_RUN(&u, test_open_errors);
	UNIT_RUN(&u, test_job_ids_stable);
	UNIT_RUN(&u, test_mbox_ids);
	UNIT_RUN(&u, test_mbox_rename);
	UNIT_RUN(&u, test_mbox_records);
	UNIT_RUN(&u, test_msg_roundtrip);
	UNIT_RUN(&u, test_msg_order);
	UNIT_RUN(&u, test_each_mutation);
	UNIT_RUN(&u, test_abort);
	UNIT_RUN(&u, test_crash);
	UNIT_RUN(&u, test_crash_many_points);
	UNIT_RUN(&u, test_second_opener);
	UNIT_RUN(&u, test_bad_records);
	UNIT_RUN(&u, test_map_full);
	UNIT_RUN(&u, test_damaged);
	UNIT_RUN(&u, test_links_and_modes);
	UNIT_RUN(&u, test_put_rate);
	rc = unit_done(&u);
	printf("%d passed, %d failed\n", u.passed, u.failed);
	if (!getenv("MF_KEEP_TMP"))
		nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}
