/*
 * test_archive_iter — store/archive_iter (the pull reader restore streams
 * with) against a real archive in a temporary directory: a multi-frame
 * message read back in odd-sized takes (and a take of 0, as a paused
 * sink gives) is byte-exact; an empty message ends at once; an unknown
 * hash is -ENOENT; a flipped pack byte fails the read (-EIO), never
 * handing out wrong bytes as the end; a read in between is refused.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/archive.h"
#include "store/archive_iter.h"
#include "tests/unit/unit.h"

static char base[64];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int store(struct archive *a, const uint8_t *p, size_t n, uint8_t hash[32])
{
	struct mf_error err = {0};
	uint64_t size;
	int rc, dup;

	if ((rc = archive_msg_begin(a, &err)) || (n && (rc = archive_msg_data(a, p, n, &err))))
		return rc;
	return archive_msg_end(a, hash, &size, &dup, &err);
}

/* Reads hash out through r, takes of 1, 0, 777, 4096, ... bytes. 0 and
 * the bytes in out, or the failing code. */
static int read_all(struct archive *a, struct archive_reader *r, const uint8_t hash[32],
                    uint8_t *out, size_t cap, size_t *got)
{
	static const size_t takes[] = {1, 0, 777, 4096, 3, 100000};
	struct mf_error err = {0};
	uint64_t size;
	unsigned i = 0;
	int rc;

	*got = 0;
	if ((rc = archive_reader_open(a, hash, r, &size, &err)))
		return rc;
	for (;;) {
		const uint8_t *p;
		size_t n, k;

		if ((rc = archive_reader_peek(r, &p, &n, &err)))
			return rc;
		if (!n)
			return *got == size ? 0 : -EPROTO;
		k = takes[i++ % (sizeof(takes) / sizeof(takes[0]))];
		if (k > n)
			k = n;
		if (*got + k > cap)
			return -ENOSPC;
		memcpy(out + *got, p, k);
		*got += k;
		if ((rc = archive_reader_take(r, k, &err)))
			return rc;
	}
}

static uint8_t big[200000], small[] = "Subject: hi\r\n\r\nsmall\r\n", back[250000];
static uint8_t hbig[32], hsmall[32], hempty[32];

static void t_read_back(struct unit_ctx *u)
{
	char dir[128];
	struct archive *a = NULL;
	struct archive_tune t = {3, 4096, 1, 0, 0};
	struct archive_reader r = {0};
	struct mf_error err = {0};
	uint8_t none[32] = {1};
	uint64_t size;
	size_t got;

	snprintf(dir, sizeof(dir), "%s/rb", base);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)((i * 2654435761u) >> 11);
	UNIT_CHECK(u, archive_open(&a, dir, ARCHIVE_OPEN_CREATE, &err) == 0);
	if (!a)
		return;
	archive_set_tune(a, &t); /* 4 KiB frames: the big one spans ~50 */
	UNIT_CHECK(u, store(a, small, sizeof(small) - 1, hsmall) == 0);
	UNIT_CHECK(u, store(a, big, sizeof(big), hbig) == 0);
	UNIT_CHECK(u, store(a, NULL, 0, hempty) == 0);
	UNIT_CHECK(u, archive_commit(a, &err) == 0);
	archive_close(a);
	a = NULL;
	UNIT_CHECK(u, archive_open(&a, dir, ARCHIVE_OPEN_RDONLY, &err) == 0);
	if (!a)
		return;
	UNIT_CHECK(u, read_all(a, &r, hbig, back, sizeof(back), &got) == 0 && got == sizeof(big) &&
	                  !memcmp(back, big, sizeof(big)));
	UNIT_CHECK(u, read_all(a, &r, hsmall, back, sizeof(back), &got) == 0 &&
	                  got == sizeof(small) - 1 && !memcmp(back, small, got));
	UNIT_CHECK(u, read_all(a, &r, hempty, back, sizeof(back), &got) == 0 && got == 0);
	UNIT_CHECK(u, archive_reader_open(a, none, &r, &size, &err) == -ENOENT);
	/* another read between a peek and its take (archive_get, a second
	 * reader, each piece by piece in turn): every reader keeps its own
	 * frame, both messages come out exact */
	{
		struct archive_reader r2 = {0};
		const uint8_t *p, *p2;
		size_t n, n2, got1 = 0, got2 = 0;
		static uint8_t back2[sizeof(small)];
		uint64_t size2;
		int end1 = 0, end2 = 0, bad = 0;

		UNIT_CHECK(u, archive_reader_open(a, hbig, &r, &size, &err) == 0);
		UNIT_CHECK(u, archive_reader_check(&r, &err) == 0); /* then from the start */
		UNIT_CHECK(u, archive_reader_open(a, hsmall, &r2, &size2, &err) == 0);
		while (!bad && (!end1 || !end2)) {
			if (!end1) {
				bad |= archive_reader_peek(&r, &p, &n, &err) != 0;
				bad |= archive_get(a, hsmall, NULL, NULL, &err) != 0;
				if (!bad && !n)
					end1 = 1;
				else if (!bad && got1 + n <= sizeof(back)) {
					memcpy(back + got1, p, n > 1000 ? 1000 : n);
					got1 += n > 1000 ? 1000 : n;
					bad |=
					    archive_reader_take(&r, n > 1000 ? 1000 : n, &err) != 0;
				}
			}
			if (!end2 && !bad) {
				bad |= archive_reader_peek(&r2, &p2, &n2, &err) != 0;
				if (!bad && !n2)
					end2 = 1;
				else if (!bad && got2 < sizeof(back2)) {
					back2[got2++] = *p2;
					bad |= archive_reader_take(&r2, 1, &err) != 0;
				}
			}
		}
		UNIT_CHECKF(u, !bad, "interleaved readers: %s", err.msg);
		UNIT_CHECK(u, got1 == sizeof(big) && !memcmp(back, big, sizeof(big)));
		UNIT_CHECK(u, got2 == sizeof(small) - 1 && !memcmp(back2, small, got2));
		archive_reader_close(&r2);
	}
	archive_reader_close(&r);
	archive_close(a);
}

static void t_damaged(struct unit_ctx *u)
{
	char dir[128], pack[160];
	struct archive *a = NULL;
	struct archive_reader r = {0};
	struct mf_error err = {0};
	size_t got;
	FILE *f;
	int c, rc;

	snprintf(dir, sizeof(dir), "%s/rb", base);
	snprintf(pack, sizeof(pack), "%s/packs/pack-%08u.mfp", dir, 1u);
	f = fopen(pack, "r+b");
	UNIT_CHECK(u, f);
	if (!f)
		return;
	/* a byte well inside the big message's frames */
	fseek(f, 0, SEEK_END);
	fseek(f, ftell(f) / 2, SEEK_SET);
	c = fgetc(f);
	fseek(f, -1, SEEK_CUR);
	fputc(c ^ 0x40, f);
	fclose(f);
	UNIT_CHECK(u, archive_open(&a, dir, ARCHIVE_OPEN_RDONLY, &err) == 0);
	if (!a)
		return;
	rc = read_all(a, &r, hbig, back, sizeof(back), &got);
	UNIT_CHECKF(u, rc == -EIO && got < sizeof(big), "rc %d, got %zu", rc, got);
	/* archive_reader_check finds it before a byte is handed out */
	{
		uint64_t size;

		UNIT_CHECK(u, archive_reader_open(a, hbig, &r, &size, &err) == 0);
		UNIT_CHECK(u, archive_reader_check(&r, &err) == -EIO);
	}
	/* the small one, in the first frame, still reads */
	UNIT_CHECK(u, read_all(a, &r, hsmall, back, sizeof(back), &got) == 0 &&
	                  got == sizeof(small) - 1);
	archive_reader_close(&r);
	archive_close(a);
}

int main(void)
{
	struct unit_ctx u = {0};

	snprintf(base, sizeof(base), "/tmp/mf-test-archive-iter.%d", (int)getpid());
	mkdir(base, 0700);
	UNIT_RUN(&u, t_read_back);
	UNIT_RUN(&u, t_damaged);
	nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	printf("%d passed, %d failed\n", u.passed, u.failed);
	return unit_done(&u);
}
