/*
 * archive_ratio — stored/raw bytes of the archive (store/archive.h) on a
 * Maildir++ tree, for several compression variants, next to the
 * references of issue 19 measured on the same messages: each message
 * through zstd -3 alone, with a dictionary trained on them, and all of
 * them as one stream (like a tar) through zstd -3 and -19.
 *
 *   archive_ratio MAILDIR [--no-attachments] [--quick]
 *   archive_ratio --stream-mb N
 *
 * --no-attachments leaves out messages with a base64 part (the generated
 * corpus fills those with random data: incompressible), the mail the 0.20
 * goal is about. Each variant fills a fresh archive under $TMPDIR and
 * prints: variant, ratio, MB/s of the fill (one core). --quick: only the
 * default variant and the references.
 *
 * --stream-mb N streams one N MiB message (text-like lines) into a fresh
 * archive in 64 KiB chunks and reads it back, printing the peak RSS after
 * each: the memory bound whatever a message's size.
 */
#include <sys/resource.h>
#include "store/archive.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zdict.h>
#include <zstd.h>

struct msg {
	uint8_t *p;
	size_t n;
};

struct corpus {
	struct msg *v;
	size_t n, cap, bytes;
	int no_attach;
};

static void add_file(struct corpus *c, const char *path)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t *p;

	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		return;
	}
	p = malloc((size_t)st.st_size + 1);
	if (!p || read(fd, p, (size_t)st.st_size) != st.st_size) {
		free(p);
		close(fd);
		return;
	}
	close(fd);
	p[st.st_size] = 0;
	if (c->no_attach &&
	    memmem(p, (size_t)st.st_size, "Content-Transfer-Encoding: base64", 33)) {
		free(p);
		return;
	}
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 1024;
		c->v = realloc(c->v, c->cap * sizeof(*c->v));
		if (!c->v)
			exit(2);
	}
	c->v[c->n].p = p;
	c->v[c->n++].n = (size_t)st.st_size;
	c->bytes += (size_t)st.st_size;
}

static void add_folder(struct corpus *c, const char *folder)
{
	static const char *const subs[] = {"cur", "new"};

	for (int s = 0; s < 2; s++) {
		char path[4200];
		struct dirent *d;
		DIR *dir;

		snprintf(path, sizeof(path), "%s/%s", folder, subs[s]);
		if (!(dir = opendir(path)))
			continue;
		while ((d = readdir(dir))) {
			char f[8400];

			if (d->d_name[0] == '.')
				continue;
			snprintf(f, sizeof(f), "%s/%s", path, d->d_name);
			add_file(c, f);
		}
		closedir(dir);
	}
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void variant_z(const struct corpus *c, const char *name, int level, unsigned frame_kib,
                      int no_dict, int zthreads)
{
	char dir[256];
	const char *tmp = getenv("TMPDIR");
	struct archive *a;
	struct mf_error err = {0};
	struct archive_tune t = {level, frame_kib << 10, no_dict, 0, zthreads};
	struct archive_stats st;
	double t0 = now(), dt;
	uint8_t h[32];
	int dup;

	snprintf(dir, sizeof(dir), "%s/archive_ratio.%d", tmp ? tmp : "/tmp", (int)getpid());
	if (archive_open(&a, dir, ARCHIVE_OPEN_CREATE, &err)) {
		fprintf(stderr, "archive_ratio: %s\n", err.msg);
		exit(2);
	}
	archive_set_tune(a, &t);
	for (size_t i = 0; i < c->n; i++) {
		if (archive_msg_begin(a, &err) || archive_msg_data(a, c->v[i].p, c->v[i].n, &err) ||
		    archive_msg_end(a, h, NULL, &dup, &err)) {
			fprintf(stderr, "archive_ratio: %s\n", err.msg);
			exit(2);
		}
	}
	if (archive_commit(a, &err) || archive_stats(a, &st, &err)) {
		fprintf(stderr, "archive_ratio: %s\n", err.msg);
		exit(2);
	}
	dt = now() - t0;
	printf("%-34s ratio %.3f  (%llu of %llu bytes, %u dictionaries)  %.0f MB/s\n", name,
	       (double)st.stored_bytes / (double)st.raw_bytes, (unsigned long long)st.stored_bytes,
	       (unsigned long long)st.raw_bytes, st.dicts, (double)st.raw_bytes / dt / 1e6);
	fflush(stdout);
	archive_close(a);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The writer compressing each frame itself: one core, as the ratios
 * below were measured. */
static void variant(const struct corpus *c, const char *name, int level, unsigned frame_kib,
                    int no_dict)
{
	variant_z(c, name, level, frame_kib, no_dict, -1);
}

static void references(const struct corpus *c)
{
	size_t cap = ZSTD_compressBound(c->bytes), per = 0, dsum = 0, n;
	uint8_t *out = malloc(cap), *all = malloc(c->bytes), *dict = malloc(112 << 10);
	size_t *sizes = malloc(c->n * sizeof(*sizes)), off = 0, dn;
	ZSTD_CCtx *cc = ZSTD_createCCtx();

	if (!out || !all || !dict || !sizes || !cc)
		exit(2);
	for (size_t i = 0; i < c->n; i++) {
		n = ZSTD_compressCCtx(cc, out, cap, c->v[i].p, c->v[i].n, 3);
		per += ZSTD_isError(n) ? c->v[i].n : n;
		memcpy(all + off, c->v[i].p, c->v[i].n);
		sizes[i] = c->v[i].n;
		off += c->v[i].n;
	}
	printf("%-34s ratio %.3f\n", "reference: per message zstd -3", (double)per / (double)off);
	/* a dictionary from the first 8 KiB of each message (as the archive) */
	{
		uint8_t *samp = malloc(off);
		size_t *ss = malloc(c->n * sizeof(*ss)), so = 0, ns = 0;

		for (size_t i = 0; i < c->n && samp && ss; i++) {
			size_t k = c->v[i].n < 8192 ? c->v[i].n : 8192;

			if (so + k > ((size_t)8 << 20))
				break;
			memcpy(samp + so, c->v[i].p, k);
			ss[ns++] = k;
			so += k;
		}
		dn = ZDICT_trainFromBuffer(dict, 112 << 10, samp, ss, (unsigned)ns);
		free(samp);
		free(ss);
	}
	if (!ZDICT_isError(dn)) {
		ZSTD_CDict *cd = ZSTD_createCDict(dict, dn, 3);

		for (size_t i = 0; i < c->n; i++) {
			n = ZSTD_compress_usingCDict(cc, out, cap, c->v[i].p, c->v[i].n, cd);
			dsum += ZSTD_isError(n) ? c->v[i].n : n;
		}
		ZSTD_freeCDict(cd);
		printf("%-34s ratio %.3f\n", "reference: per message, dictionary",
		       (double)dsum / (double)off);
	}
	n = ZSTD_compressCCtx(cc, out, cap, all, off, 3);
	printf("%-34s ratio %.3f\n", "reference: one stream zstd -3", (double)n / (double)off);
	fflush(stdout);
	n = ZSTD_compressCCtx(cc, out, cap, all, off, 19);
	printf("%-34s ratio %.3f\n", "reference: one stream zstd -19", (double)n / (double)off);
	ZSTD_freeCCtx(cc);
	free(out);
	free(all);
	free(dict);
	free(sizes);
}

static long maxrss_kib(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static int null_sink(void *ctx, const uint8_t *p, size_t n)
{
	uint64_t *total = ctx;

	(void)p;
	*total += n;
	return 0;
}

static int stream(unsigned mb)
{
	char dir[256];
	const char *tmp = getenv("TMPDIR");
	struct archive *a;
	struct mf_error err = {0};
	uint8_t *chunk = malloc(1 << 16), h[32];
	uint64_t s = 88172645463325252ull, back = 0, size;
	double t0 = now(), t1;
	int dup;

	snprintf(dir, sizeof(dir), "%s/archive_stream.%d", tmp ? tmp : "/tmp", (int)getpid());
	if (!chunk || archive_open(&a, dir, ARCHIVE_OPEN_CREATE, &err) ||
	    archive_msg_begin(a, &err))
		goto fail;
	for (uint64_t left = (uint64_t)mb << 20; left;) {
		size_t n = left < (1 << 16) ? (size_t)left : (1 << 16);

		for (size_t i = 0; i < n; i++) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			chunk[i] = i % 72 == 71 ? '\n' : (uint8_t)("etaoin shrdlu cmfwyp"[s % 20]);
		}
		if (archive_msg_data(a, chunk, n, &err))
			goto fail;
		left -= n;
	}
	if (archive_msg_end(a, h, &size, &dup, &err) || archive_commit(a, &err))
		goto fail;
	t1 = now();
	printf("stored %u MiB in %.2f s, peak RSS %ld KiB\n", mb, t1 - t0, maxrss_kib());
	if (archive_get(a, h, null_sink, &back, &err) || back != size)
		goto fail;
	printf("read back and re-hashed %u MiB in %.2f s, peak RSS %ld KiB\n", mb, now() - t1,
	       maxrss_kib());
	archive_close(a);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(chunk);
	return 0;
fail:
	fprintf(stderr, "archive_ratio: %s\n", err.msg);
	return 2;
}

int main(int argc, char **argv)
{
	struct corpus c = {0};
	struct dirent *d;
	DIR *dir;
	int quick = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: archive_ratio MAILDIR [--no-attachments] [--quick]\n"
		                "       archive_ratio --stream-mb N\n");
		return 2;
	}
	if (argc == 3 && !strcmp(argv[1], "--stream-mb"))
		return stream((unsigned)atoi(argv[2]));
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--no-attachments"))
			c.no_attach = 1;
		else if (!strcmp(argv[i], "--quick"))
			quick = 1;
	}
	add_folder(&c, argv[1]);
	if ((dir = opendir(argv[1]))) {
		while ((d = readdir(dir))) {
			char path[4200];

			if (d->d_name[0] != '.' || !strcmp(d->d_name, ".") ||
			    !strcmp(d->d_name, ".."))
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[1], d->d_name);
			add_folder(&c, path);
		}
		closedir(dir);
	}
	printf("%zu messages, %zu bytes%s\n", c.n, c.bytes,
	       c.no_attach ? " (messages with base64 parts left out)" : "");
	if (getenv("AR_LEVEL")) {
		variant(&c, "archive: AR_LEVEL/AR_KIB/AR_NODICT", atoi(getenv("AR_LEVEL")),
		        getenv("AR_KIB") ? (unsigned)atoi(getenv("AR_KIB")) : 128,
		        getenv("AR_NODICT") != NULL);
		return 0;
	}
	variant(&c, "archive: default (3, 256 KiB, dict)", 3, 256, 0);
	/* the fill with frames compressed on 2 helper threads (archive_zpool.c,
	 * the default on 4 CPUs or more): MB/s, the same ratio */
	variant_z(&c, "archive: default, 2 zstd threads", 3, 256, 0, 2);
	if (!quick) {
		variant(&c, "archive: level 9, 128 KiB, dict", 9, 128, 0);
		variant(&c, "archive: level 5, 256 KiB, dict", 5, 256, 0);
		variant(&c, "archive: level 1, 128 KiB, dict", 1, 128, 0);
		variant(&c, "archive: level 3, 128 KiB, dict", 3, 128, 0);
		variant(&c, "archive: level 3, 512 KiB, dict", 3, 512, 0);
		variant(&c, "archive: level 5, 128 KiB, dict", 5, 128, 0);
		variant(&c, "archive: level 6, 256 KiB, dict", 6, 256, 0);
		variant(&c, "archive: level 9, 128 KiB, no dict", 9, 128, 1);
		variant(&c, "archive: level 9, 64 KiB, dict", 9, 64, 0);
		variant(&c, "archive: level 9, 512 KiB, dict", 9, 512, 0);
		variant(&c, "archive: level 15, 128 KiB, dict", 15, 128, 0);
		variant(&c, "archive: level 19, 128 KiB, dict", 19, 128, 0);
	}
	references(&c);
	return 0;
}
