/*
 * run_journal — line identities, shard membership and the run journal of
 * finished accounts (see run_journal.h). The journal is a text file, one
 * record a line, "r1 LINE ID EXIT COPIED SKIPPED FAILED BYTES MS\n",
 * appended with O_APPEND (a killed process loses none: the kernel has it)
 * and fdatasync'd once, at close, not per line on the loop: a record an
 * OS crash loses only runs its account again, which its state (committed
 * before the record is written) makes a no-change re-run. Small,
 * greppable, and a record a crash tore (no newline) is simply not one.
 *
 * Not for: running accounts (run.c).
 */
#include "engine/cli/run_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JOURNAL_MAX (64u << 20)

int run_id_of(const char *const *words, size_t n, struct run_id *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
	         EVP_DigestUpdate(ctx, "mailferry-line-v1", 17);

	for (size_t i = 0; ok && i < n; i++) {
		unsigned char len[8];
		size_t l = strlen(words[i]);

		for (int k = 0; k < 8; k++)
			len[k] = (unsigned char)(l >> (56 - 8 * k));
		ok = EVP_DigestUpdate(ctx, len, sizeof(len)) && EVP_DigestUpdate(ctx, words[i], l);
	}
	ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen >= RUN_ID_LEN;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	memcpy(out->b, md, RUN_ID_LEN);
	return 0;
}

unsigned run_shard_of_key(const char *key, size_t n, unsigned nshards)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	uint64_t v = 0;

	if (nshards <= 1)
		return 0;
	if (!EVP_Digest(key, n, md, &mdlen, EVP_sha256(), NULL) || mdlen < 8)
		return 0; /* cannot happen with a working libcrypto */
	for (int k = 0; k < 8; k++)
		v = v << 8 | md[k];
	return (unsigned)(v % nshards);
}

unsigned run_shard_of_line(unsigned line, unsigned nshards)
{
	return nshards <= 1 ? 0 : line % nshards;
}

int run_shard_parse(const char *s, unsigned *k, unsigned *n)
{
	char *end;
	unsigned long a, b;

	if (!s || *s < '0' || *s > '9')
		return -1;
	a = strtoul(s, &end, 10);
	if (*end != '/' || end[1] < '0' || end[1] > '9')
		return -1;
	b = strtoul(end + 1, &end, 10);
	if (*end || b < 1 || b > 100000 || a >= b)
		return -1;
	*k = (unsigned)a;
	*n = (unsigned)b;
	return 0;
}

int run_journal_format(const struct run_journal_rec *r, char *out, size_t cap)
{
	char hex[2 * RUN_ID_LEN + 1];
	int n;

	for (int i = 0; i < RUN_ID_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", r->id.b[i]);
	n = snprintf(out, cap, "r1 %u %s %d %llu %llu %llu %llu %llu\n", r->line, hex, r->exit,
	             (unsigned long long)r->copied, (unsigned long long)r->skipped,
	             (unsigned long long)r->failed, (unsigned long long)r->bytes,
	             (unsigned long long)r->ms);
	return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* One unsigned decimal field and the blank after it (or the end). */
static int field(const char **p, const char *end, uint64_t *v, uint64_t max)
{
	const char *q = *p;

	*v = 0;
	if (q >= end || *q < '0' || *q > '9')
		return -1;
	while (q < end && *q >= '0' && *q <= '9') {
		uint64_t d = (uint64_t)(*q - '0');

		if (d > max || *v > (max - d) / 10)
			return -1;
		*v = *v * 10 + (uint64_t)(*q++ - '0');
	}
	if (q < end && *q++ != ' ')
		return -1;
	*p = q;
	return 0;
}

int run_journal_parse_line(const char *p, size_t n, struct run_journal_rec *out)
{
	const char *end = p + n;
	uint64_t v[7];

	memset(out, 0, sizeof(*out));
	if (n < 3 || memcmp(p, "r1 ", 3))
		return -1;
	p += 3;
	if (field(&p, end, &v[0], 0xffffffffu) < 0)
		return -1;
	if ((size_t)(end - p) < 2 * RUN_ID_LEN + 1 || p[2 * RUN_ID_LEN] != ' ')
		return -1;
	for (int i = 0; i < RUN_ID_LEN; i++) {
		unsigned b = 0;

		for (int k = 0; k < 2; k++) {
			char c = p[2 * i + k];

			if (c >= '0' && c <= '9')
				b = b << 4 | (unsigned)(c - '0');
			else if (c >= 'a' && c <= 'f')
				b = b << 4 | (unsigned)(c - 'a' + 10);
			else
				return -1;
		}
		out->id.b[i] = (unsigned char)b;
	}
	p += 2 * RUN_ID_LEN + 1;
	if (field(&p, end, &v[1], 5) < 0)
		return -1;
	for (int i = 2; i < 7; i++)
		if (field(&p, end, &v[i], UINT64_MAX / 4) < 0)
			return -1;
	if (p != end || p[-1] == ' ')
		return -1;
	out->line = (unsigned)v[0];
	out->exit = (int)v[1];
	out->copied = v[2];
	out->skipped = v[3];
	out->failed = v[4];
	out->bytes = v[5];
	out->ms = v[6];
	return 0;
}

static int rec_cmp(const void *a, const void *b)
{
	const struct run_journal_rec *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return memcmp(x->id.b, y->id.b, RUN_ID_LEN);
}

static int rec_seq_cmp(const void *a, const void *b)
{
	const struct run_journal_rec *x = a, *y = b;
	int c = rec_cmp(a, b);

	return c ? c : x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Reads every whole record of fd into j->rec (sorted; of equal keys the
 * last one written is kept). */
static int journal_load(struct run_journal *j, struct mf_error *err)
{
	struct stat st;
	char *buf;
	size_t len = 0, n = 0, start = 0;

	if (fstat(j->fd, &st) < 0)
		return mf_err_set(err, -errno, "run journal: %s", strerror(errno)), -EIO;
	if ((uint64_t)st.st_size > JOURNAL_MAX) {
		mf_err_set(err, -EFBIG, "run journal larger than %u MiB", JOURNAL_MAX >> 20);
		return -EFBIG;
	}
	if (!(buf = malloc((size_t)st.st_size + 1)))
		return mf_err_set(err, -ENOMEM, "run journal: out of memory"), -ENOMEM;
	while (len < (size_t)st.st_size) {
		ssize_t r = pread(j->fd, buf + len, (size_t)st.st_size - len, (off_t)len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	for (size_t i = 0; i < len; i++)
		n += buf[i] == '\n';
	if (n && !(j->rec = calloc(n, sizeof(*j->rec)))) {
		free(buf);
		return mf_err_set(err, -ENOMEM, "run journal: out of memory"), -ENOMEM;
	}
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (run_journal_parse_line(buf + start, i - start, &j->rec[j->nrec]) == 0) {
			j->rec[j->nrec].seq = j->nrec;
			j->nrec++;
		}
		start = i + 1;
	}
	free(buf);
	/* of equal keys the last one written wins: sort by key, then order */
	if (j->nrec > 1) {
		qsort(j->rec, j->nrec, sizeof(*j->rec), rec_seq_cmp);
		size_t w = 0;

		for (size_t i = 0; i < j->nrec; i++) {
			if (i + 1 < j->nrec && !rec_cmp(&j->rec[i], &j->rec[i + 1]))
				continue;
			j->rec[w++] = j->rec[i];
		}
		j->nrec = w;
	}
	return 0;
}

int run_journal_open(struct run_journal *j, const char *dir, int resume, struct mf_error *err)
{
	char path[4300];
	int rc;

	memset(j, 0, sizeof(*j));
	j->fd = -1;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, RUN_JOURNAL_NAME) >= sizeof(path)) {
		mf_err_set(err, -ENAMETOOLONG, "state directory name too long");
		return -ENAMETOOLONG;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		mf_err_set(err, rc, "cannot create state directory %s: %s", dir, strerror(errno));
		return rc;
	}
	j->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | (resume ? 0 : O_TRUNC), 0600);
	if (j->fd < 0) {
		rc = -errno;
		mf_err_set(err, rc, "cannot open run journal %s: %s", path, strerror(errno));
		return rc;
	}
	if (resume && (rc = journal_load(j, err)) < 0) {
		run_journal_close(j);
		return rc;
	}
	if (!resume && fsync(j->fd) < 0) {
		rc = -errno;
		mf_err_set(err, rc, "run journal %s: %s", path, strerror(errno));
		run_journal_close(j);
		return rc;
	}
	return 0;
}

const struct run_journal_rec *run_journal_done(const struct run_journal *j, unsigned line,
                                               const struct run_id *id)
{
	struct run_journal_rec key;
	const struct run_journal_rec *r;

	if (!j->nrec)
		return NULL;
	memset(&key, 0, sizeof(key));
	key.line = line;
	key.id = *id;
	r = bsearch(&key, j->rec, j->nrec, sizeof(*j->rec), rec_cmp);
	return r && r->exit == 0 ? r : NULL;
}

int run_journal_append(struct run_journal *j, const struct run_journal_rec *rec,
                       struct mf_error *err)
{
	char line[256];
	int n = run_journal_format(rec, line, sizeof(line));
	ssize_t w;

	if (n < 0)
		return mf_err_set(err, -EINVAL, "run journal: record too long"), -EINVAL;
	do
		w = write(j->fd, line, (size_t)n);
	while (w < 0 && errno == EINTR);
	if (w != n) {
		int rc = w < 0 ? -errno : -EIO;

		mf_err_set(err, rc, "run journal: write failed: %s", strerror(-rc));
		return rc;
	}
	return 0;
}

void run_journal_close(struct run_journal *j)
{
	if (j->fd >= 0) {
		if (fdatasync(j->fd) < 0)
			mf_log(MF_LOG_WARN, "run journal: fdatasync failed: %s", strerror(errno));
		close(j->fd);
	}
	j->fd = -1;
	free(j->rec);
	j->rec = NULL;
	j->nrec = 0;
}

int run_shard_select(const char *shard, unsigned shards, unsigned *k, unsigned *n)
{
	char buf[64];
	const char *idx;

	if (!shard && !shards)
		return 0;
	if (!shard || !strcmp(shard, "auto")) {
		idx = getenv("JOB_COMPLETION_INDEX");
		if (!shards || !idx || !*idx) {
			fprintf(stderr, "mailferry: --shard auto needs --shards N and "
			                "$JOB_COMPLETION_INDEX\n");
			return 2;
		}
		snprintf(buf, sizeof(buf), "%.20s/%u", idx, shards);
	} else {
		if (shards) {
			fprintf(stderr, "mailferry: --shards goes with --shard auto\n");
			return 2;
		}
		snprintf(buf, sizeof(buf), "%.60s", shard);
	}
	if (run_shard_parse(buf, k, n) < 0) {
		fprintf(stderr, "mailferry: --shard wants K/N with 0 <= K < N (got \"%s\")\n", buf);
		return 2;
	}
	return 0;
}
