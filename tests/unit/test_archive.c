/*
 * test_archive — store/archive against real packs and a real LMDB in a
 * temporary directory: round trips (empty, small, multi-frame), dedupe
 * across folders and accounts, frames read alone, a torn pack tail and an
 * uncommitted batch, pack and index corruption named by verify, as-of
 * lookups over runs, a crashed run, prune (runs; deleted UIDs and pack
 * rewriting), dictionaries, record decoders.
 */
#include "store/archive.h"
#include "store/archive_fmt.h"
#include "store/export.h"

#include <dirent.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/unit.h"

static char base[64];
/* Frames compressed on helper threads (archive_zpool.c) in the second
 * pass of every test, inline in the first (the default on 2 CPUs). */
static int zthreads = -1;

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

/* Deterministic message i: headers like real mail plus a body of len bytes. */
static size_t msg_make(uint8_t *out, size_t cap, unsigned i, size_t len)
{
	uint64_t s = 0x9e3779b97f4a7c15ull * (i + 1);
	size_t n = (size_t)snprintf((char *)out, cap,
	                            "Return-Path: <user%u@example.org>\r\nFrom: User %u "
	                            "<user%u@example.org>\r\nTo: list@example.org\r\nSubject: "
	                            "message number %u\r\nMessage-ID: <%u.%u@example.org>\r\n\r\n",
	                            i % 17, i % 17, i % 17, i, i, i * 31);

	while (n < len && n < cap) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		out[n] = (n % 70 == 69) ? '\n' : (uint8_t)("abcdefgh ijklmnop\r"[s % 18]);
		n++;
	}
	return n;
}

static int store(struct archive *a, const uint8_t *p, size_t n, size_t chunk, uint8_t hash[32],
                 int *dup)
{
	struct mf_error err = {0};
	uint64_t size;
	int rc;

	if ((rc = archive_msg_begin(a, &err)))
		return rc;
	for (size_t off = 0; off < n; off += chunk)
		if ((rc = archive_msg_data(a, p + off, n - off < chunk ? n - off : chunk, &err)))
			return rc;
	rc = archive_msg_end(a, hash, &size, dup, &err);
	return rc ? rc : size == n ? 0 : -EIO;
}

struct sink {
	uint8_t *p;
	size_t n, cap;
};

static int sink_fn(void *ctx, const uint8_t *p, size_t n)
{
	struct sink *s = ctx;

	if (s->n + n > s->cap)
		return -ENOSPC;
	memcpy(s->p + s->n, p, n);
	s->n += n;
	return 0;
}

static int got_eq(struct archive *a, const uint8_t hash[32], const uint8_t *p, size_t n)
{
	struct sink s = {malloc(n + 1), 0, n + 1};
	struct mf_error err = {0};
	int rc = archive_get(a, hash, sink_fn, &s, &err);
	int ok = rc == 0 && s.n == n && !memcmp(s.p, p, n);

	free(s.p);
	return ok;
}

static struct archive *open_dir(const char *dir, unsigned flags)
{
	struct archive *a = NULL;
	struct mf_error err = {0};

	if (archive_open(&a, dir, flags, &err)) {
		printf("# archive_open %s: %s\n", dir, err.msg);
		return NULL;
	}
	archive_set_tune(a, &(struct archive_tune){.zthreads = zthreads});
	return a;
}

static void meta_set(struct archive_msgmeta *m, const uint8_t hash[32], uint64_t size,
                     uint32_t flags, const char *kw)
{
	memset(m, 0, sizeof(*m));
	memcpy(m->hash, hash, 32);
	m->size = size;
	m->internaldate = 1600000000 + (int64_t)size;
	m->flags = flags;
	snprintf(m->keywords, sizeof(m->keywords), "%s", kw);
}

static void t_round_trip(struct unit_ctx *u)
{
	char dir[128];
	struct archive *a;
	struct mf_error err = {0};
	size_t big_n = (size_t)3 << 20;
	uint8_t *big = malloc(big_n), small[600], h[3][32];
	size_t sn = msg_make(small, sizeof(small), 1, 500);
	uint32_t run, mb;
	struct archive_msgmeta m;
	int dup;

	dir_for(dir, sizeof(dir), "rt");
	for (size_t i = 0; i < big_n; i++)
		big[i] = (uint8_t)(i * 2654435761u >> 13); /* poorly compressible */
	a = open_dir(dir, ARCHIVE_OPEN_CREATE);
	UNIT_CHECK(u, a);
	if (!a)
		goto out;
	UNIT_CHECK(u, archive_run_begin(a, "imap://alice@h", 1000, &run, &err) == 0);
	UNIT_CHECK(u, archive_mbox_begin(a, run, "INBOX", 5, 7, &mb, &err) == 0);
	UNIT_CHECK(u, store(a, small, sn, 7, h[0], &dup) == 0 && !dup);
	UNIT_CHECK(u, store(a, small, 0, 1, h[1], &dup) == 0 && !dup);
	UNIT_CHECK(u, store(a, big, big_n, 65521, h[2], &dup) == 0 && !dup);
	/* readable before any commit (the open frame is flushed for it) */
	UNIT_CHECK(u, got_eq(a, h[0], small, sn));
	for (unsigned i = 0; i < 3; i++) {
		meta_set(&m, h[i], i == 0 ? sn : i == 1 ? 0 : big_n, ARCHIVE_F_SEEN, "$Work");
		UNIT_CHECK(u, archive_uid_put(a, run, mb, i + 1, &m, &err) == 0);
	}
	UNIT_CHECKF(u, archive_run_commit(a, run, &err) == 0, "%s", err.msg);
	archive_close(a);

	a = open_dir(dir, ARCHIVE_OPEN_RDONLY);
	UNIT_CHECK(u, a);
	if (!a)
		goto out;
	UNIT_CHECK(u, got_eq(a, h[0], small, sn));
	UNIT_CHECK(u, got_eq(a, h[1], small, 0));
	UNIT_CHECK(u, got_eq(a, h[2], big, big_n));
	UNIT_CHECK(u, archive_uid_get(a, run, mb, 3, &m, &err) == 0 && m.size == big_n &&
	                  !memcmp(m.hash, h[2], 32) && !strcmp(m.keywords, "$Work") &&
	                  m.flags == ARCHIVE_F_SEEN);
	{
		uint8_t nothere[32] = {1};
		uint64_t problems = 9;

		UNIT_CHECK(u, archive_get(a, nothere, sink_fn, NULL, &err) == -ENOENT);
		UNIT_CHECK(u, archive_verify(a, NULL, NULL, &problems, &err) == 0 && problems == 0);
	}
	archive_close(a);
out:
	free(big);
}

static void t_dedupe(struct unit_ctx *u)
{
	char dir[128];
	struct archive *a;
	struct mf_error err = {0};
	uint8_t msg[4000], h1[32], h2[32], h3[32];
	size_t n = msg_make(msg, sizeof(msg), 42, 3000);
	uint32_t r1, r2, mb1, mb2, mb3;
	struct archive_stats st;
	struct archive_msgmeta m;
	int dup;

	dir_for(dir, sizeof(dir), "dd");
	if (!(a = open_dir(dir, ARCHIVE_OPEN_CREATE))) {
		UNIT_CHECK(u, 0);
		return;
	}
	UNIT_CHECK(u, archive_run_begin(a, "alice", 1, &r1, &err) == 0);
	UNIT_CHECK(u, archive_mbox_begin(a, r1, "INBOX", 5, 1, &mb1, &err) == 0);
	UNIT_CHECK(u, archive_mbox_begin(a, r1, "Archive", 7, 1, &mb2, &err) == 0);
	UNIT_CHECK(u, mb1 != mb2);
	UNIT_CHECK(u, store(a, msg, n, 100, h1, &dup) == 0 && !dup);
	UNIT_CHECK(u, store(a, msg, n, 4096, h2, &dup) == 0 && dup && !memcmp(h1, h2, 32));
	meta_set(&m, h1, n, 0, "");
	UNIT_CHECK(u, archive_uid_put(a, r1, mb1, 1, &m, &err) == 0);
	UNIT_CHECK(u, archive_uid_put(a, r1, mb2, 9, &m, &err) == 0);
	UNIT_CHECK(u, archive_run_commit(a, r1, &err) == 0);
	UNIT_CHECK(u, archive_run_begin(a, "bob", 2, &r2, &err) == 0);
	UNIT_CHECK(u, archive_mbox_begin(a, r2, "INBOX", 5, 1, &mb3, &err) == 0);
	UNIT_CHECK(u, mb3 != mb1); /* another account's INBOX */
	UNIT_CHECK(u, store(a, msg, n, 1, h3, &dup) == 0 && dup);
	UNIT_CHECK(u, archive_uid_put(a, r2, mb3, 1, &m, &err) == 0);
	UNIT_CHECK(u, archive_run_commit(a, r2, &err) == 0);
	UNIT_CHECK(u, archive_stats(a, &st, &err) == 0 && st.objects == 1 && st.raw_bytes == n);
	UNIT_CHECK(u, st.stored_bytes < 2 * n); /* one copy */
	UNIT_CHECK(u, got_eq(a, h1, msg, n));
	{
		/* a duplicate larger than a frame: its frames are cut off again,
		 * and what comes next is stored where they were */
		size_t bn = (size_t)1 << 20;
		uint8_t *big = malloc(bn), hb[32], hb2[32], small[900], hs[32];
		size_t sn = msg_make(small, sizeof(small), 77, 800);
		struct archive_stats s1, s2;

		for (size_t i = 0; i < bn; i++)
			big[i] = (uint8_t)(i * 2654435761u >> 11);
		UNIT_CHECK(u, store(a, msg, 100, 100, hs, &dup) == 0); /* part of a frame */
		UNIT_CHECK(u, store(a, big, bn, 70000, hb, &dup) == 0 && !dup);
		UNIT_CHECK(u, archive_commit(a, &err) == 0 && archive_stats(a, &s1, &err) == 0);
		UNIT_CHECK(u, store(a, small, 300, 100, hs, &dup) == 0 && !dup);
		UNIT_CHECK(u, store(a, big, bn, 65536, hb2, &dup) == 0 && dup);
		UNIT_CHECK(u, store(a, small, sn, 100, hs, &dup) == 0 && !dup);
		UNIT_CHECK(u, archive_commit(a, &err) == 0 && archive_stats(a, &s2, &err) == 0);
		UNIT_CHECKF(u, s2.stored_bytes - s1.stored_bytes < 3000, "%llu more bytes",
		            (unsigned long long)(s2.stored_bytes - s1.stored_bytes));
		UNIT_CHECK(u, got_eq(a, hs, small, sn) && got_eq(a, hb, big, bn));
		free(big);
	}
	archive_close(a);
}

/* Many messages over several frames; returns their hashes. */
static int fill_many(struct archive *a, unsigned count, size_t len, uint8_t (*h)[32], uint32_t *run,
                     uint32_t *mb)
{
	struct mf_error err = {0};
	uint8_t *buf = malloc(len + 512);
	struct archive_msgmeta m;
	int dup, rc = 0;

	if (!buf)
		return -ENOMEM;
	if ((rc = archive_run_begin(a, "acct", 5, run, &err)) ||
	    (rc = archive_mbox_begin(a, *run, "Work/Reports", 12, 99, mb, &err)))
		goto out;
	for (unsigned i = 0; i < count && !rc; i++) {
		size_t n = msg_make(buf, len + 512, i, len);

		if (!(rc = store(a, buf, n, 1000, h[i], &dup))) {
			meta_set(&m, h[i], n, i & 31, i % 3 ? "" : "$Label1 Junk");
			rc = archive_uid_put(a, *run, *mb, i + 1, &m, &err);
		}
	}
	if (!rc)
		rc = archive_run_commit(a, *run, &err);
out:
	free(buf);
	return rc;
}

static void flip_at(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	if (fd < 0)
		return;
	if (pread(fd, &b, 1, off) == 1) {
		b ^= 0x55;
		if (pwrite(fd, &b, 1, off) != 1)
			b = 0;
	}
	close(fd);
}

struct probs {
	unsigned n;
	uint32_t uids[64], runs[64];
};

static int prob_fn(void *ctx, const struct archive_problem *p)
{
	struct probs *pr = ctx;

	if (pr->n < 64) {
		pr->uids[pr->n] = p->uid;
		pr->runs[pr->n] = p->run;
	}
	pr->n++;
	return 0;
}

static void t_frames_alone_and_pack_damage(struct unit_ctx *u)
{
	char dir[128], pack[256];
	struct archive *a;
	struct mf_error err = {0};
	uint8_t(*h)[32] = calloc(300, 32), buf[6000];
	uint32_t run, mb;
	uint64_t problems = 0;
	struct probs pr = {0};
	unsigned ok = 0, bad = 0;

	dir_for(dir, sizeof(dir), "fr");
	a = open_dir(dir, ARCHIVE_OPEN_CREATE);
	UNIT_CHECK(u, a && fill_many(a, 300, 4000, h, &run, &mb) == 0);
	if (!a)
		goto out;
	archive_close(a);
	/* a byte in the middle of the first frame's zstd data */
	snprintf(pack, sizeof(pack), "%s/packs/pack-%08u.mfp", dir, 1u);
	flip_at(pack, AFMT_PACK_HDR + AFMT_FRAME_HDR + 200);
	a = open_dir(dir, ARCHIVE_OPEN_RDONLY);
	UNIT_CHECK(u, a);
	if (!a)
		goto out;
	for (unsigned i = 0; i < 300; i++) {
		size_t n = msg_make(buf, sizeof(buf), i, 4000);

		if (got_eq(a, h[i], buf, n))
			ok++;
		else
			bad++;
	}
	/* the first frame's messages are lost, every other frame reads alone */
	UNIT_CHECKF(u, bad > 0 && bad <= 70 && ok + bad == 300, "ok %u bad %u", ok, bad);
	UNIT_CHECK(u, archive_verify(a, prob_fn, &pr, &problems, &err) == 0);
	UNIT_CHECKF(u, problems == bad && pr.n == bad, "problems %llu bad %u",
	            (unsigned long long)problems, bad);
	UNIT_CHECK(u, pr.uids[0] == 1 && pr.runs[0] == run);
	archive_close(a);
out:
	free(h);
}

static void t_torn_tail(struct unit_ctx *u)
{
	char dir[128], pack[256];
	struct archive *a;
	struct mf_error err = {0};
	uint8_t(*h)[32] = calloc(50, 32), buf[3000], hx[32];
	uint32_t run, mb;
	struct stat st0, st1;
	int dup, fd;
	uint64_t problems = 1;

	dir_for(dir, sizeof(dir), "tt");
	a = open_dir(dir, ARCHIVE_OPEN_CREATE);
	UNIT_CHECK(u, a && fill_many(a, 50, 2000, h, &run, &mb) == 0);
	if (!a)
		goto out;
	/* stored but never committed: its frame is written, the index is not */
	{
		size_t n = msg_make(buf, sizeof(buf), 999, 2500);

		UNIT_CHECK(u, store(a, buf, n, 333, hx, &dup) == 0);
		UNIT_CHECK(u, got_eq(a, hx, buf, n)); /* forces its frame out */
	}
	archive_close(a);
	snprintf(pack, sizeof(pack), "%s/packs/pack-%08u.mfp", dir, 1u);
	/* and a torn frame header after it */
	fd = open(pack, O_WRONLY | O_APPEND);
	UNIT_CHECK(u, fd >= 0 && write(fd, "MFZ1\0\0\0\0garbage", 15) == 15);
	if (fd >= 0)
		close(fd);
	stat(pack, &st0);
	a = open_dir(dir, ARCHIVE_OPEN_CREATE);
	UNIT_CHECK(u, a);
	if (!a)
		goto out;
	stat(pack, &st1);
	UNIT_CHECK(u, st1.st_size < st0.st_size - 15);
	UNIT_CHECK(u, archive_has(a, hx, &err) == 0);
	for (unsigned i = 0; i < 50; i++) {
		size_t n = msg_make(buf, sizeof(buf), i, 2000);

		UNIT_CHECK(u, got_eq(a, h[i], buf, n));
	}
	/* appending goes on where the committed bytes end */
	{
		size_t n = msg_make(buf, sizeof(buf), 999, 2500);

		UNIT_CHECK(u, store(a, buf, n, 333, hx, &dup) == 0 && !dup);
		UNIT_CHECK(u, archive_commit(a, &err) == 0);
		UNIT_CHECK(u, got_eq(a, hx, buf, n));
	}
	UNIT_CHECK(u, archive_verify(a, NULL, NULL, &problems, &err) == 0 && problems == 0);
	archive_close(a);
out:
	free(h);
}

/* Offset of the first occurrence of needle in the file, or -1. */
static off_t find_in(const char *path, const uint8_t *needle, size_t n, off_t from)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t *p;
	off_t at = -1;

	if (fd < 0 || fstat(fd, &st) < 0)
		return -1;
	p = malloc((size_t)st.st_size);
	if (p && read(fd, p, (size_t)st.st_size) == st.st_size)
		for (off_t i = from; i + (off_t)n <= st.st_size; i++)
			if (!memcmp(p + i, needle, n)) {
				at = i;
				break;
			}
	free(p);
	close(fd);
	return at;
}

static void t_index_damage(struct unit_ctx *u)
{
	char dir[128], mdb[256];
	struct archive *a;
	struct mf_error err = {0};
	uint8_t(*h)[32] = calloc(40, 32), buf[3000];
	uint32_t run, mb;
	uint64_t problems = 0;
	struct probs pr = {0};
	off_t at;

	dir_for(dir, sizeof(dir), "id");
	a = open_dir(dir, ARCHIVE_OPEN_CREATE);
	UNIT_CHECK(u, a && fill_many(a, 40, 1500, h, &run, &mb) == 0);
	if (!a)
		goto out;
	archive_close(a);
	snprintf(mdb, sizeof(mdb), "%s/index/data.mdb", dir);
	/* message 17's hash is an objects key and a field of its version
	 * record */
	/* every copy: LMDB keeps stale copies of pages in free pages */
	at = find_in(mdb, h[16], 32, 0);
	UNIT_CHECK(u, at >= 0);
	while (at >= 0) {
		flip_at(mdb, at + 5);
		at = find_in(mdb, h[16], 32, at + 32);
	}
	a = open_dir(dir, ARCHIVE_OPEN_RDONLY);
	UNIT_CHECK(u, a);
	if (!a)
		goto out;
	UNIT_CHECK(u, archive_verify(a, prob_fn, &pr, &problems, &err) == 0);
	UNIT_CHECKF(u, problems >= 1 && pr.uids[0] == 17 && pr.runs[0] == run,
	            "problems %llu uid %u", (unsigned long long)problems, pr.uids[0]);
	/* the others still read */
	{
		size_t n = msg_make(buf, sizeof(buf), 3, 1500);

		UNIT_CHECK(u, got_eq(a, h[3], buf, n));
	}
	archive_close(a);
out:
	free(h);
}

struct list {
	unsigned n;
	uint32_t uid[16], flags[16];
	uint8_t h0[16];
};

static int list_fn(void *ctx, uint32_t uid, const struct archive_msgmeta *m)
{
	struct list *l = ctx;

	if (l->n < 16 && m) {
		l->uid[l->n] = uid;
		l->flags[l->n] = m->flags;
		l->h0[l->n] = m->hash[0];
	}
	l->n++;
	return 0;
}

static void t_as_of_and_prune(struct unit_ctx *u)
{
	char dir[128];
	struct archive *a;
	struct mf_error err = {0};
	uint8_t msg[4][2000], h[4][32];
	size_t n[4];
	uint32_t r1, r2, r3, mb, mb2;
	struct archive_msgmeta m;
	struct list l;
	uint64_t dropped = 0, problems = 1;
	int dup;

	dir_for(dir, sizeof(dir), "asof");
	if (!(a = open_dir(dir, ARCHIVE_OPEN_CREATE))) {
		UNIT_CHECK(u, 0);
		return;
	}
	for (unsigned i = 0; i < 4; i++)
		n[i] = msg_make(msg[i], sizeof(msg[i]), 100 + i, 1500);
	/* run 1: uids 1, 2, 3 */
	UNIT_CHECK(u, archive_run_begin(a, "alice", 10, &r1, &err) == 0);
	UNIT_CHECK(u, archive_mbox_begin(a, r1, "INBOX", 5, 5, &mb, &err) == 0);
	for (unsigned i = 0; i < 3; i++) {
		UNIT_CHECK(u, store(a, msg[i], n[i], 512, h[i], &dup) == 0);
		meta_set(&m, h[i], n[i], 0, "");
		UNIT_CHECK(u, archive_uid_put(a, r1, mb, i + 1, &m, &err) == 0);
	}
	UNIT_CHECK(u, archive_run_commit(a, r1, &err) == 0);
	/* run 2: uid 2 seen, uid 3 expunged, uid 4 new */
	UNIT_CHECK(u, archive_run_begin(a, "alice", 20, &r2, &err) == 0);
	UNIT_CHECK(u, archive_mbox_begin(a, r2, "INBOX", 5, 5, &mb2, &err) == 0 && mb2 == mb);
	meta_set(&m, h[0], n[0], 0, "");
	UNIT_CHECK(u, archive_uid_put(a, r2, mb, 1, &m, &err) == 0);
	meta_set(&m, h[1], n[1], ARCHIVE_F_SEEN, "");
	UNIT_CHECK(u, archive_uid_put(a, r2, mb, 2, &m, &err) == 0);
	UNIT_CHECK(u, archive_uid_delete(a, r2, mb, 3, &err) == 0);
	UNIT_CHECK(u, store(a, msg[3], n[3], 512, h[3], &dup) == 0);
	meta_set(&m, h[3], n[3], 0, "");
	UNIT_CHECK(u, archive_uid_put(a, r2, mb, 4, &m, &err) == 0);
	UNIT_CHECK(u, archive_run_commit(a, r2, &err) == 0);
	/* run 3 never commits (a crash): invisible after reopening */
	UNIT_CHECK(u, archive_run_begin(a, "alice", 30, &r3, &err) == 0);
	UNIT_CHECK(u, archive_mbox_begin(a, r3, "INBOX", 5, 5, &mb2, &err) == 0);
	UNIT_CHECK(u, archive_uid_delete(a, r3, mb, 1, &err) == 0);
	UNIT_CHECK(u, archive_commit(a, &err) == 0);
	archive_close(a);

	if (!(a = open_dir(dir, ARCHIVE_OPEN_CREATE))) {
		UNIT_CHECK(u, 0);
		return;
	}
	memset(&l, 0, sizeof(l));
	UNIT_CHECK(u, archive_uid_each(a, r1, mb, list_fn, &l, &err) == 0);
	UNIT_CHECKF(u, l.n == 3 && l.uid[0] == 1 && l.uid[2] == 3 && l.flags[1] == 0, "n %u", l.n);
	memset(&l, 0, sizeof(l));
	UNIT_CHECK(u, archive_uid_each(a, r2, mb, list_fn, &l, &err) == 0);
	UNIT_CHECKF(u,
	            l.n == 3 && l.uid[0] == 1 && l.uid[1] == 2 && l.uid[2] == 4 &&
	                l.flags[1] == ARCHIVE_F_SEEN && l.h0[2] == h[3][0],
	            "n %u", l.n);
	{
		uint32_t latest = 0;

		UNIT_CHECK(u, archive_run_latest(a, "alice", &latest, &err) == 0 && latest == r2);
		UNIT_CHECK(u, archive_run_asof(a, "alice", 15, &latest, &err) == 0 && latest == r1);
		UNIT_CHECK(u, archive_run_asof(a, "alice", 25, &latest, &err) == 0 && latest == r2);
		UNIT_CHECK(u, archive_run_asof(a, "alice", 9, &latest, &err) == -ENOENT);
		UNIT_CHECK(u, archive_run_asof(a, "bob", 99, &latest, &err) == -ENOENT);
		UNIT_CHECK(u, archive_uid_get(a, r3, mb, 1, &m, &err) == 0); /* not deleted */
	}
	UNIT_CHECK(u, archive_uid_get(a, r2, mb, 3, &m, &err) == -ENOENT);
	UNIT_CHECK(u, archive_uid_get(a, r1, mb, 3, &m, &err) == 0 && !memcmp(m.hash, h[2], 32));
	/* prune run 1: run 2's state stays, uid 3's content goes */
	UNIT_CHECKF(u, archive_prune(a, r2, &dropped, &err) == 0, "%s", err.msg);
	UNIT_CHECK(u, dropped == 1);
	memset(&l, 0, sizeof(l));
	UNIT_CHECK(u, archive_uid_each(a, r2, mb, list_fn, &l, &err) == 0);
	UNIT_CHECKF(u, l.n == 3 && l.uid[0] == 1 && l.flags[1] == ARCHIVE_F_SEEN, "n %u", l.n);
	UNIT_CHECK(u, archive_has(a, h[2], &err) == 0 && archive_has(a, h[0], &err) == 1);
	UNIT_CHECK(u, archive_uid_each(a, r1, mb, list_fn, &l, &err) == -ENOENT);
	UNIT_CHECK(u, archive_verify(a, NULL, NULL, &problems, &err) == 0 && problems == 0);
	archive_close(a);
}

/* A killed run's versions are what it saw of the source, committed before
 * the state moved past them: the next run inherits them. Run 1 holds uids
 * 1, 2, 3; run 2 records uid 1 expunged and uid 2 \Seen, then dies; run 3
 * sees nothing new (the state says so) and lists uid 1 gone and uid 2
 * \Seen; run 1 still lists all three; verify is clean; prune forgets uid 1
 * in every run. */
static void t_killed_run_inherited(struct unit_ctx *u)
{
	char dir[128];
	struct archive *a;
	struct mf_error err = {0};
	uint8_t msg[3][2000], h[3][32];
	size_t n[3];
	uint32_t r1, r2, r3, mb, mb2, latest = 0;
	struct archive_msgmeta m;
	struct list l;
	uint64_t problems = 1, uids = 0, objs = 0;
	int dup;

	dir_for(dir, sizeof(dir), "killed");
	if (!(a = open_dir(dir, ARCHIVE_OPEN_CREATE))) {
		UNIT_CHECK(u, 0);
		return;
	}
	UNIT_CHECK(u, archive_run_begin(a, "alice", 10, &r1, &err) == 0);
	UNIT_CHECK(u, archive_mbox_begin(a, r1, "INBOX", 5, 5, &mb, &err) == 0);
	for (unsigned i = 0; i < 3; i++) {
		n[i] = msg_make(msg[i], sizeof(msg[i]), 300 + i, 1500);
		UNIT_CHECK(u, store(a, msg[i], n[i], 512, h[i], &dup) == 0);
		meta_set(&m, h[i], n[i], 0, "");
		UNIT_CHECK(u, archive_uid_put(a, r1, mb, i + 1, &m, &err) == 0);
	}
	UNIT_CHECK(u, archive_run_commit(a, r1, &err) == 0);
	UNIT_CHECK(u, archive_run_begin(a, "alice", 20, &r2, &err) == 0);
	UNIT_CHECK(u, archive_mbox_begin(a, r2, "INBOX", 5, 5, &mb2, &err) == 0 && mb2 == mb);
	UNIT_CHECK(u, archive_uid_delete(a, r2, mb, 1, &err) == 0);
	meta_set(&m, h[1], n[1], ARCHIVE_F_SEEN, "");
	UNIT_CHECK(u, archive_uid_put(a, r2, mb, 2, &m, &err) == 0);
	UNIT_CHECK(u, archive_commit(a, &err) == 0);
	archive_close(a); /* killed: run 2 never completes */

	if (!(a = open_dir(dir, ARCHIVE_OPEN_CREATE))) {
		UNIT_CHECK(u, 0);
		return;
	}
	UNIT_CHECK(u, archive_run_begin(a, "alice", 30, &r3, &err) == 0);
	UNIT_CHECK(u, archive_mbox_begin(a, r3, "INBOX", 5, 5, &mb2, &err) == 0 && mb2 == mb);
	UNIT_CHECK(u, archive_run_commit(a, r3, &err) == 0);
	UNIT_CHECK(u, archive_run_latest(a, "alice", &latest, &err) == 0 && latest == r3);
	memset(&l, 0, sizeof(l));
	UNIT_CHECK(u, archive_uid_each(a, r3, mb, list_fn, &l, &err) == 0);
	UNIT_CHECKF(u, l.n == 2 && l.uid[0] == 2 && l.flags[0] == ARCHIVE_F_SEEN && l.uid[1] == 3,
	            "run 3 lists %u", l.n);
	UNIT_CHECK(u, archive_uid_get(a, r3, mb, 1, &m, &err) == -ENOENT);
	memset(&l, 0, sizeof(l));
	UNIT_CHECK(u, archive_uid_each(a, r1, mb, list_fn, &l, &err) == 0);
	UNIT_CHECKF(u, l.n == 3 && l.flags[1] == 0, "run 1 lists %u", l.n);
	UNIT_CHECK(u, archive_verify(a, NULL, NULL, &problems, &err) == 0 && problems == 0);
	UNIT_CHECKF(u, archive_prune_deleted(a, &uids, &objs, &err) == 0, "%s", err.msg);
	UNIT_CHECKF(u, uids == 1 && objs == 1, "uids %llu objs %llu", (unsigned long long)uids,
	            (unsigned long long)objs);
	memset(&l, 0, sizeof(l));
	UNIT_CHECK(u, archive_uid_each(a, r1, mb, list_fn, &l, &err) == 0);
	UNIT_CHECKF(u, l.n == 2 && l.uid[0] == 2, "run 1 after prune lists %u", l.n);
	archive_close(a);
}

/* backup --prune: 40 messages, 30 deleted in run 2; prune_deleted forgets
 * them in both runs, compact rewrites the pack; the 10 left read back
 * exact, fewer stored bytes, verify clean, a second compact does nothing. */
static void t_prune_deleted_compact(struct unit_ctx *u)
{
	char dir[128];
	struct archive *a;
	struct mf_error err = {0};
	static uint8_t msg[40][3000];
	uint8_t h[40][32];
	size_t n[40];
	uint32_t r1, r2, mb;
	struct archive_msgmeta m;
	struct archive_stats s1, s2;
	struct archive_compact_stats cs;
	struct list l;
	uint64_t uids = 0, objs = 0, problems = 1;
	int dup, ok = 1;

	dir_for(dir, sizeof(dir), "prunedel");
	if (!(a = open_dir(dir, ARCHIVE_OPEN_CREATE))) {
		UNIT_CHECK(u, 0);
		return;
	}
	UNIT_CHECK(u, archive_run_begin(a, "alice", 10, &r1, &err) == 0);
	UNIT_CHECK(u, archive_mbox_begin(a, r1, "INBOX", 5, 7, &mb, &err) == 0);
	for (unsigned i = 0; i < 40; i++) {
		n[i] = msg_make(msg[i], sizeof(msg[i]), 500 + i, 2500);
		ok &= store(a, msg[i], n[i], 700, h[i], &dup) == 0;
		meta_set(&m, h[i], n[i], 0, "");
		ok &= archive_uid_put(a, r1, mb, i + 1, &m, &err) == 0;
	}
	UNIT_CHECK(u, ok);
	UNIT_CHECK(u, archive_run_commit(a, r1, &err) == 0);
	UNIT_CHECK(u, archive_run_begin(a, "alice", 20, &r2, &err) == 0);
	UNIT_CHECK(u, archive_mbox_begin(a, r2, "INBOX", 5, 7, &mb, &err) == 0);
	for (unsigned i = 0; i < 30; i++)
		ok &= archive_uid_delete(a, r2, mb, i + 1, &err) == 0;
	UNIT_CHECK(u, ok && archive_run_commit(a, r2, &err) == 0);
	UNIT_CHECK(u, archive_stats(a, &s1, &err) == 0);
	UNIT_CHECKF(u, archive_prune_deleted(a, &uids, &objs, &err) == 0, "%s", err.msg);
	UNIT_CHECKF(u, uids == 30 && objs == 30, "uids %llu objs %llu", (unsigned long long)uids,
	            (unsigned long long)objs);
	memset(&l, 0, sizeof(l));
	UNIT_CHECK(u, archive_uid_each(a, r1, mb, list_fn, &l, &err) == 0);
	UNIT_CHECKF(u, l.n == 10 && l.uid[0] == 31, "run 1 lists %u", l.n);
	UNIT_CHECKF(u, archive_compact(a, 0.9, &cs, &err) == 0, "%s", err.msg);
	UNIT_CHECKF(u, cs.packs == 1 && cs.moved == 10 && !cs.failed, "packs %u moved %llu",
	            cs.packs, (unsigned long long)cs.moved);
	UNIT_CHECK(u, archive_stats(a, &s2, &err) == 0);
	UNIT_CHECKF(u, s2.stored_bytes < s1.stored_bytes / 2 && s2.objects == 10, "%llu -> %llu",
	            (unsigned long long)s1.stored_bytes, (unsigned long long)s2.stored_bytes);
	archive_close(a);
	if (!(a = open_dir(dir, ARCHIVE_OPEN_CREATE))) {
		UNIT_CHECK(u, 0);
		return;
	}
	for (unsigned i = 30; i < 40; i++)
		ok &= got_eq(a, h[i], msg[i], n[i]);
	UNIT_CHECK(u, ok && archive_has(a, h[0], &err) == 0);
	UNIT_CHECK(u, archive_verify(a, NULL, NULL, &problems, &err) == 0 && problems == 0);
	UNIT_CHECK(u, archive_compact(a, 0.9, &cs, &err) == 0 && cs.packs == 0);
	archive_close(a);
}

/* A no-change run writes no version records. */
static void t_incremental_no_change(struct unit_ctx *u)
{
	char dir[128];
	struct archive *a;
	struct mf_error err = {0};
	uint8_t(*h)[32] = calloc(20, 32);
	uint32_t r1, r2, mb;
	struct archive_msgmeta m;
	struct archive_stats s0, s1;

	dir_for(dir, sizeof(dir), "inc");
	a = open_dir(dir, ARCHIVE_OPEN_CREATE);
	UNIT_CHECK(u, a && fill_many(a, 20, 1000, h, &r1, &mb) == 0);
	if (!a)
		goto out;
	UNIT_CHECK(u, archive_stats(a, &s0, &err) == 0 && s0.versions == 20);
	UNIT_CHECK(u, archive_run_begin(a, "acct", 6, &r2, &err) == 0);
	UNIT_CHECK(u, archive_mbox_begin(a, r2, "Work/Reports", 12, 99, &mb, &err) == 0);
	for (unsigned i = 0; i < 20; i++) {
		UNIT_CHECK(u, archive_uid_get(a, r1, mb, i + 1, &m, &err) == 0);
		UNIT_CHECK(u, archive_uid_put(a, r2, mb, i + 1, &m, &err) == 0);
	}
	UNIT_CHECK(u, archive_run_commit(a, r2, &err) == 0);
	UNIT_CHECK(u, archive_stats(a, &s1, &err) == 0 && s1.versions == 20 && s1.runs == 2);
	{
		struct list l = {0};

		UNIT_CHECK(u, archive_uid_each(a, r2, mb, list_fn, &l, &err) == 0 && l.n == 20);
	}
	archive_close(a);
out:
	free(h);
}

static void t_dictionary(struct unit_ctx *u)
{
	char dir[128];
	struct archive *a;
	struct mf_error err = {0};
	uint8_t(*h)[32] = calloc(900, 32), buf[3000];
	uint32_t run, mb;
	struct archive_stats st;
	unsigned bad = 0;

	dir_for(dir, sizeof(dir), "dict");
	a = open_dir(dir, ARCHIVE_OPEN_CREATE);
	UNIT_CHECK(u, a && fill_many(a, 900, 1200, h, &run, &mb) == 0);
	if (!a)
		goto out;
	UNIT_CHECK(u, archive_stats(a, &st, &err) == 0 && st.dicts >= 1 && st.objects == 900);
	archive_close(a);
	a = open_dir(dir, ARCHIVE_OPEN_RDONLY);
	UNIT_CHECK(u, a);
	if (!a)
		goto out;
	for (unsigned i = 0; i < 900; i++) {
		size_t n = msg_make(buf, sizeof(buf), i, 1200);

		bad += !got_eq(a, h[i], buf, n);
	}
	UNIT_CHECKF(u, bad == 0, "%u unreadable", bad);
	archive_close(a);
out:
	free(h);
}

/* A child killed while it fills: the archive opens, verify is clean, and
 * every committed run reads back. */
/* After a child was killed or failed: the archive opens, verify finds no
 * problem, and (objects >= 0) it holds that many distinct messages. */
static void reopens_clean(struct unit_ctx *u, const char *dir, long long objects)
{
	struct archive *a = open_dir(dir, ARCHIVE_OPEN_CREATE);
	struct archive_stats st;
	struct mf_error err = {0};
	uint64_t problems = 1;

	UNIT_CHECK(u, a);
	if (!a)
		return;
	UNIT_CHECKF(u, archive_verify(a, NULL, NULL, &problems, &err) == 0 && problems == 0,
	            "problems %llu: %s", (unsigned long long)problems, err.msg);
	if (objects >= 0)
		UNIT_CHECK(u, archive_stats(a, &st, &err) == 0 && st.objects == (uint64_t)objects);
	archive_close(a);
}

static void t_kill_during_fill(struct unit_ctx *u)
{
	char dir[128];

	dir_for(dir, sizeof(dir), "kill");
	for (unsigned round = 0; round < 6; round++) {
		pid_t pid = fork();
		int status;

		if (pid == 0) {
			struct archive *a = open_dir(dir, ARCHIVE_OPEN_CREATE);
			uint8_t(*h)[32] = calloc(4000, 32);
			uint32_t run, mb;

			if (!a)
				_exit(3);
			fill_many(a, 4000, 800 + round * 100, h, &run, &mb);
			_exit(0);
		}
		usleep(round ? 20000 + round * 37000 : 1000); /* the first: while it opens */
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	reopens_clean(u, dir, -1);
}

static void t_fmt(struct unit_ctx *u)
{
	struct afmt_rec r, d;
	struct mf_error err = {0};
	uint8_t key[32] = {1, 2, 3}, buf[AFMT_REC_MAX], hdr[AFMT_FRAME_HDR];
	struct afmt_frame f = {0, 100, 200, 7, 0x1234, 0}, g;
	size_t n;

	memset(&r, 0, sizeof(r));
	r.u.obj.pack = 3;
	r.u.obj.frame_off = 16;
	r.u.obj.skip = 5;
	r.u.obj.nframes = 2;
	r.u.obj.size = 99;
	n = afmt_rec_encode(AFMT_OBJECT, key, 32, &r, buf, sizeof(buf));
	UNIT_CHECK(u, afmt_rec_decode(AFMT_OBJECT, key, 32, buf, n, &d, &err) == 0 &&
	                  d.u.obj.size == 99 && d.u.obj.nframes == 2);
	key[0] ^= 1; /* the record is bound to its key */
	UNIT_CHECK(u, afmt_rec_decode(AFMT_OBJECT, key, 32, buf, n, &d, &err) == -EIO);
	key[0] ^= 1;
	buf[3] ^= 1;
	UNIT_CHECK(u, afmt_rec_decode(AFMT_OBJECT, key, 32, buf, n, &d, &err) == -EIO);
	UNIT_CHECK(u, afmt_rec_decode(AFMT_MSG, key, 16, buf, n, &d, &err) == -EIO);
	afmt_frame_hdr(hdr, &f);
	UNIT_CHECK(u, afmt_frame_hdr_decode(hdr, sizeof(hdr), 7, &g, &err) == 0 &&
	                  g.raw_len == 200 && g.crc == 0x1234);
	UNIT_CHECK(u, afmt_frame_hdr_decode(hdr, sizeof(hdr), 8, &g, &err) == -EIO);
	hdr[9] ^= 0x80;
	UNIT_CHECK(u, afmt_frame_hdr_decode(hdr, sizeof(hdr), 7, &g, &err) == -EIO);
	/* CRC-32C check value */
	UNIT_CHECK(u, afmt_crc32c(0, "123456789", 9) == 0xe3069283);
	{
		/* the 8-bytes-a-step path (long inputs) and the 4-bit path
		 * (short pieces) agree */
		uint8_t b[1000];
		uint32_t whole, parts = 0;

		for (size_t i = 0; i < sizeof(b); i++)
			b[i] = (uint8_t)(i * 131 + 7);
		whole = afmt_crc32c(0, b, sizeof(b));
		for (size_t i = 0; i < sizeof(b); i += 10)
			parts = afmt_crc32c(parts, b + i, 10);
		UNIT_CHECK(u, whole == parts);
		UNIT_CHECK(u, afmt_crc32c(0, "123456789123456789", 18) ==
		                  afmt_crc32c(afmt_crc32c(0, "123456789", 9), "123456789", 9));
	}
}

static void t_export_entry_names(struct unit_ctx *u)
{
	static const char *const names[] = {"..",  ".",       "",       "a/b",          "../../etc",
	                                    "%2F", ".hidden", "x\001y", "Entw&APw-rfe", "a.b.c"};
	char out[EXPORT_ENTRY_MAX + 1], lng[4000];
	size_t n;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		n = export_entry_name(names[i], strlen(names[i]), out, sizeof(out));
		UNIT_CHECKF(u,
		            n > 0 && n <= EXPORT_ENTRY_MAX && !strchr(out, '/') && out[0] != '.' &&
		                strlen(out) == n,
		            "%s -> %s", names[i], out);
	}
	n = export_entry_name("x\0y", 3, out, sizeof(out));
	UNIT_CHECK(u, n == 5 && !strcmp(out, "x%00y"));
	memset(lng, 'a', sizeof(lng));
	n = export_entry_name(lng, sizeof(lng), out, sizeof(out));
	UNIT_CHECK(u, n <= EXPORT_ENTRY_MAX && strstr(out, "%~"));
	/* two long names differing only at the end stay apart */
	{
		char out2[EXPORT_ENTRY_MAX + 1];

		lng[3999] = 'b';
		export_entry_name(lng, sizeof(lng), out2, sizeof(out2));
		UNIT_CHECK(u, strcmp(out, out2) != 0);
	}
	n = export_entry_name("Entw&APw-rfe", 12, out, sizeof(out));
	UNIT_CHECK(u, !strcmp(out, "Entw&APw-rfe")); /* ordinary names as they are */
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void t_export_hostile_names(struct unit_ctx *u)
{
	static const char *const names[] = {"../evil", "/abs", "a/../../b", "..", "x\0y", "INBOX"};
	static const size_t lens[] = {7, 4, 9, 2, 3, 5};
	char dir[128], outer[160], inner[200], outside[200], path[400];
	struct archive *a;
	struct mf_error err = {0};
	struct export_stats st;
	uint8_t msg[800], h[32];
	size_t n = msg_make(msg, sizeof(msg), 5, 700);
	uint32_t run, mb;
	struct archive_msgmeta m;
	char lng[4000];
	int dup;

	dir_for(dir, sizeof(dir), "hostile");
	snprintf(outer, sizeof(outer), "%s-out", dir);
	snprintf(inner, sizeof(inner), "%s/inner", outer);
	snprintf(outside, sizeof(outside), "%s/outside", outer);
	mkdir(outer, 0700);
	mkdir(outside, 0700);
	if (!(a = open_dir(dir, ARCHIVE_OPEN_CREATE))) {
		UNIT_CHECK(u, 0);
		return;
	}
	memset(lng, '/', sizeof(lng));
	UNIT_CHECK(u, archive_run_begin(a, "mallory", 1, &run, &err) == 0);
	UNIT_CHECK(u, store(a, msg, n, 100, h, &dup) == 0);
	meta_set(&m, h, n, ARCHIVE_F_SEEN, "$Hostile");
	for (size_t i = 0; i < 7; i++) {
		const char *nm = i < 6 ? names[i] : lng;
		size_t nl = i < 6 ? lens[i] : sizeof(lng);

		UNIT_CHECK(u, archive_mbox_begin(a, run, nm, nl, 1, &mb, &err) == 0);
		UNIT_CHECK(u, archive_uid_put(a, run, mb, 1, &m, &err) == 0);
	}
	UNIT_CHECK(u, archive_run_commit(a, run, &err) == 0);
	UNIT_CHECKF(u, export_maildir(a, run, NULL, inner, &st, NULL, NULL, &err) == 0, "%s",
	            err.msg);
	UNIT_CHECK(u, st.messages == 7 && st.mailboxes == 7 && st.failed == 0);
	/* only inner/ and outside/ (empty) next to it; 7 folders inside */
	UNIT_CHECK(u, count_entries(outer) == 2 && count_entries(outside) == 0);
	UNIT_CHECK(u, count_entries(inner) == 6 + 4); /* 6 .folders, cur new tmp, keywords */
	/* a link planted where a folder goes is refused, not followed */
	{
		char link[300];

		snprintf(link, sizeof(link), "%s/.%%2E.", inner);
		snprintf(path, sizeof(path), "%s/outside", outer);
		nftw(link, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		UNIT_CHECK(u, symlink(path, link) == 0);
		UNIT_CHECK(u, export_maildir(a, run, "..", inner, &st, NULL, NULL, &err) < 0);
		UNIT_CHECK(u, count_entries(outside) == 0);
	}
	archive_close(a);
	nftw(outer, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* mboxrd quoting across chunk boundaries: frames of 4 KiB cut the
 * message (and so archive_get's chunks) in the middle of "From " lines. */
static void t_export_mboxrd(struct unit_ctx *u)
{
	char dir[128], file[160];
	struct archive *a;
	struct mf_error err = {0};
	struct archive_tune tune = {3, 4096, 1, 0, 0};
	struct export_stats st;
	static uint8_t msg[20000], want[24000], got[30000];
	size_t n = 0, w = 0, g;
	uint8_t h[32];
	uint32_t run, mb;
	struct archive_msgmeta m;
	int dup, fd;
	static const char *const lines[] = {"From x\n", ">From y\n", ">>From z\n", "Fro\n",
	                                    ">Fr\n",    "From\n",    " From a\n",  "xFrom b\n"};

	dir_for(dir, sizeof(dir), "mboxrd");
	snprintf(file, sizeof(file), "%s.mbox", dir);
	/* lines of every kind, shifted so boundaries fall everywhere */
	for (unsigned i = 0; n < 18000; i++) {
		const char *l = lines[i % 8];
		size_t ll = strlen(l);

		if (i % 9 == 0)
			msg[n++] = 'q';
		if (i % 13 == 0) {
			memcpy(msg + n, "pad\n", 4);
			n += 4;
		}
		memcpy(msg + n, l, ll);
		n += ll;
	}
	msg[n++] = '>'; /* ends without a newline, inside a prefix */
	/* expected: From line, each line matching ^>*From  gets one more '>' */
	w = (size_t)sprintf((char *)want, "From MAILER-DAEMON Thu Jan  1 00:00:42 1970\n");
	for (size_t i = 0; i < n;) {
		size_t e = i, k = i;

		while (e < n && msg[e] != '\n')
			e++;
		while (k < e && msg[k] == '>')
			k++;
		if (e - k >= 5 && !memcmp(msg + k, "From ", 5))
			want[w++] = '>';
		memcpy(want + w, msg + i, e - i + (e < n));
		w += e - i + (e < n);
		i = e + 1;
	}
	want[w++] = '\n'; /* the missing final newline */
	want[w++] = '\n'; /* the separator */
	if (!(a = open_dir(dir, ARCHIVE_OPEN_CREATE))) {
		UNIT_CHECK(u, 0);
		return;
	}
	tune.zthreads = zthreads;
	archive_set_tune(a, &tune);
	UNIT_CHECK(u, archive_run_begin(a, "m", 1, &run, &err) == 0);
	UNIT_CHECK(u, archive_mbox_begin(a, run, "INBOX", 5, 1, &mb, &err) == 0);
	UNIT_CHECK(u, store(a, msg, n, 777, h, &dup) == 0);
	meta_set(&m, h, n, 0, "");
	m.internaldate = 42;
	UNIT_CHECK(u, archive_uid_put(a, run, mb, 1, &m, &err) == 0);
	UNIT_CHECK(u, archive_run_commit(a, run, &err) == 0);
	UNIT_CHECK(u,
	           export_mbox(a, run, NULL, file, &st, NULL, NULL, &err) == 0 && st.messages == 1);
	fd = open(file, O_RDONLY);
	g = fd >= 0 ? (size_t)read(fd, got, sizeof(got)) : 0;
	if (fd >= 0)
		close(fd);
	UNIT_CHECKF(u, g == w && !memcmp(got, want, w), "got %zu bytes, want %zu", g, w);
	archive_close(a);
	unlink(file);
}

/* Small packs: the archive rolls over to new ones at commits; all read
 * back after reopening, a torn tail on the last one is dropped. */
/* Records of messages whose frame is not written yet (archive_zpool.c):
 * found as stored (archive_has, a second copy is a duplicate) and
 * readable before any commit, and all of them in the index after it. */
static void t_pending_records(struct unit_ctx *u)
{
	char dir[128];
	struct archive *a;
	struct mf_error err = {0};
	struct archive_tune t = {3, 4096, 1, 0, 0};
	static uint8_t msg[40][2600];
	uint8_t h[40][32], h2[32];
	size_t n[40];
	struct archive_stats st;
	int dup, ok = 1;

	dir_for(dir, sizeof(dir), "pend");
	if (!(a = open_dir(dir, ARCHIVE_OPEN_CREATE))) {
		UNIT_CHECK(u, 0);
		return;
	}
	t.zthreads = zthreads;
	archive_set_tune(a, &t);
	for (unsigned i = 0; i < 40; i++) {
		n[i] = msg_make(msg[i], sizeof(msg[i]), 500 + i, 1500 + 25 * i);
		ok &= store(a, msg[i], n[i], 700, h[i], &dup) == 0 && !dup;
	}
	UNIT_CHECK(u, ok);
	UNIT_CHECK(u, archive_has(a, h[39], &err) == 1 && archive_has(a, h[0], &err) == 1);
	UNIT_CHECK(u, store(a, msg[38], n[38], 4096, h2, &dup) == 0 && dup);
	UNIT_CHECK(u, got_eq(a, h[39], msg[39], n[39])); /* before any commit */
	UNIT_CHECK(u, archive_commit(a, &err) == 0);
	for (unsigned i = 0; i < 40; i++)
		ok &= got_eq(a, h[i], msg[i], n[i]);
	UNIT_CHECK(u, ok);
	UNIT_CHECK(u, archive_stats(a, &st, &err) == 0 && st.objects == 40);
	archive_close(a);
}

/* A pack write that fails (here the file size limit: EFBIG) drops what was
 * written since the last commit, with an error saying so at once and again
 * from the commit; what was committed before stays whole. In a child: the
 * limit is the process's. Exit codes: 0 as expected, else which step. */
static void t_pack_write_fails(struct unit_ctx *u)
{
	char dir[128];
	pid_t pid;
	int status = -1;

	dir_for(dir, sizeof(dir), "efbig");
	pid = fork();
	if (pid == 0) {
		struct archive *a = open_dir(dir, ARCHIVE_OPEN_CREATE);
		struct archive_tune t = {3, 4096, 1, 0, zthreads};
		uint8_t(*h)[32] = calloc(400, 32), hx[32];
		uint8_t buf[3000];
		struct mf_error err = {0};
		struct rlimit rl;
		struct stat st;
		char pack[200];
		uint32_t run, mb;
		int dup, rc = 0;

		if (!a || !h)
			_exit(10);
		archive_set_tune(a, &t);
		if (fill_many(a, 20, 2500, h, &run, &mb))
			_exit(11);
		snprintf(pack, sizeof(pack), "%s/packs/pack-%08u.mfp", dir, 1u);
		if (stat(pack, &st))
			_exit(12);
		signal(SIGXFSZ, SIG_IGN);
		rl.rlim_cur = rl.rlim_max = (rlim_t)st.st_size + 6000;
		if (setrlimit(RLIMIT_FSIZE, &rl))
			_exit(13);
		for (unsigned i = 0; i < 400 && !rc; i++) {
			size_t n = msg_make(buf, sizeof(buf), 7000 + i * 13, 2600);

			rc = store(a, buf, n, 1000, hx, &dup);
		}
		if (!rc)
			rc = archive_commit(a, &err);
		else if (archive_commit(a, &err) == 0 || !strstr(err.msg, "dropped"))
			_exit(14); /* the commit after the failure reports it */
		if (!rc)
			_exit(15); /* 400 frames past the limit: something must fail */
		archive_close(a);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	UNIT_CHECKF(u, WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	reopens_clean(u, dir, 20);
}

static void t_pack_rollover(struct unit_ctx *u)
{
	char dir[128], pack[256];
	struct archive *a;
	struct mf_error err = {0};
	struct archive_tune t = {3, 8192, 1, 16384, 0};
	struct archive_stats st;
	uint8_t(*h)[32] = calloc(400, 32), buf[3000];
	uint32_t run, mb;
	uint64_t problems = 1;
	unsigned bad = 0;
	int fd;

	dir_for(dir, sizeof(dir), "roll");
	a = open_dir(dir, ARCHIVE_OPEN_CREATE);
	UNIT_CHECK(u, a);
	if (!a)
		goto out;
	t.zthreads = zthreads;
	archive_set_tune(a, &t);
	UNIT_CHECK(u, archive_run_begin(a, "r", 1, &run, &err) == 0 &&
	                  archive_mbox_begin(a, run, "INBOX", 5, 1, &mb, &err) == 0);
	for (unsigned i = 0; i < 400; i++) {
		size_t n = msg_make(buf, sizeof(buf), i, 2500);
		struct archive_msgmeta m;
		int dup;

		UNIT_CHECK(u, store(a, buf, n, 999, h[i], &dup) == 0);
		meta_set(&m, h[i], n, 0, "");
		UNIT_CHECK(u, archive_uid_put(a, run, mb, i + 1, &m, &err) == 0);
		if (i % 10 == 9)
			UNIT_CHECK(u, archive_commit(a, &err) == 0);
	}
	UNIT_CHECK(u, archive_run_commit(a, run, &err) == 0);
	UNIT_CHECK(u, archive_stats(a, &st, &err) == 0 && st.packs > 5);
	archive_close(a);
	snprintf(pack, sizeof(pack), "%s/packs/pack-%08u.mfp", dir, st.packs);
	fd = open(pack, O_WRONLY | O_APPEND);
	UNIT_CHECK(u, fd >= 0 && write(fd, "torn", 4) == 4);
	if (fd >= 0)
		close(fd);
	a = open_dir(dir, ARCHIVE_OPEN_CREATE);
	UNIT_CHECK(u, a);
	if (!a)
		goto out;
	for (unsigned i = 0; i < 400; i++) {
		size_t n = msg_make(buf, sizeof(buf), i, 2500);

		bad += !got_eq(a, h[i], buf, n);
	}
	UNIT_CHECKF(u, bad == 0, "%u unreadable", bad);
	UNIT_CHECK(u, archive_verify(a, NULL, NULL, &problems, &err) == 0 && problems == 0);
	archive_close(a);
out:
	free(h);
}

/* Killed while LMDB created data.mdb: an empty index was never committed,
 * so a writer starts it over (a reader refuses it). */
static void t_unborn_index(struct unit_ctx *u)
{
	char dir[128], path[256];
	struct archive *a;
	int fd;

	dir_for(dir, sizeof(dir), "unborn");
	a = open_dir(dir, ARCHIVE_OPEN_CREATE);
	UNIT_CHECK(u, a);
	archive_close(a);
	snprintf(path, sizeof(path), "%s/index/data.mdb", dir);
	fd = open(path, O_WRONLY | O_TRUNC);
	UNIT_CHECK(u, fd >= 0);
	if (fd >= 0)
		close(fd);
	a = NULL;
	{
		struct mf_error err = {0};

		UNIT_CHECK(u, archive_open(&a, dir, ARCHIVE_OPEN_RDONLY, &err) < 0 && !a);
	}
	a = open_dir(dir, ARCHIVE_OPEN_CREATE);
	UNIT_CHECK(u, a);
	archive_close(a);
}

int main(void)
{
	struct unit_ctx u = {0};
	char cmd[128];

	snprintf(base, sizeof(base), "/tmp/mf-test-archive.%d", (int)getpid());
	for (int pass = 0; pass < 2; pass++) {
		zthreads = pass ? 2 : -1;
		printf("# frames compressed %s\n", pass ? "on 2 helper threads" : "by the writer");
		mkdir(base, 0700);
		UNIT_RUN(&u, t_fmt);
		UNIT_RUN(&u, t_round_trip);
		UNIT_RUN(&u, t_dedupe);
		UNIT_RUN(&u, t_frames_alone_and_pack_damage);
		UNIT_RUN(&u, t_torn_tail);
		UNIT_RUN(&u, t_index_damage);
		UNIT_RUN(&u, t_as_of_and_prune);
		UNIT_RUN(&u, t_prune_deleted_compact);
		UNIT_RUN(&u, t_incremental_no_change);
		UNIT_RUN(&u, t_dictionary);
		UNIT_RUN(&u, t_pack_rollover);
		UNIT_RUN(&u, t_pending_records);
		UNIT_RUN(&u, t_pack_write_fails);
		UNIT_RUN(&u, t_killed_run_inherited);
		UNIT_RUN(&u, t_unborn_index);
		UNIT_RUN(&u, t_kill_during_fill);
		UNIT_RUN(&u, t_export_entry_names);
		UNIT_RUN(&u, t_export_hostile_names);
		UNIT_RUN(&u, t_export_mboxrd);
		nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	}
	(void)cmd;
	printf("%d passed, %d failed\n", u.passed, u.failed);
	return unit_done(&u);
}
