/*
 * test_archive_crypt — encryption at rest (store/archive_crypt.h and the
 * encrypted archive): seal/open round trips, wrong key and wrong
 * associated data refused, a flipped byte in nonce, ciphertext and tag
 * refused, nonces unique over many seals, keyed index MACs (equal for
 * equal content, never the plain hash), the parameters record and its
 * bounds; then a real encrypted archive in a temporary directory: round
 * trip, dedupe, missing and wrong passphrase, no plaintext (body,
 * subject, mailbox, account, content hash) in any of its files, and a
 * flipped byte in a frame header, a frame body, a frame tag, an index
 * message record, a mailbox record and an object record each named by
 * verify while the other messages still read.
 */
#include "store/archive.h"
#include "store/archive_crypt.h"
#include "store/archive_fmt.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/unit.h"

static char base[64];
static const uint8_t PASS[] = "correct horse battery staple";
#define NMSG 60

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static struct acrypt *key_from(uint8_t seed)
{
	uint8_t m[32];
	struct acrypt *c = NULL;
	struct mf_error err = {0};

	memset(m, seed, sizeof(m));
	if (acrypt_from_master(&c, m, &err))
		printf("# acrypt_from_master: %s\n", err.msg);
	return c;
}

static void t_seal_open(struct unit_ctx *u)
{
	struct acrypt *c = key_from(1), *c2 = key_from(2);
	uint8_t buf[200 + ACRYPT_OVERHEAD], copy[sizeof(buf)], aad[9] = "frame:42";
	size_t n, len = 200 + ACRYPT_OVERHEAD;

	UNIT_CHECK(u, c && c2);
	if (!c || !c2)
		goto out;
	for (int i = 0; i < 200; i++)
		buf[ACRYPT_NONCE + i] = (uint8_t)i;
	UNIT_CHECK(u, acrypt_seal(c, aad, sizeof(aad), buf, 200) == 0);
	/* the plaintext is gone from the sealed bytes */
	UNIT_CHECK(u, buf[ACRYPT_NONCE + 10] != 10 || buf[ACRYPT_NONCE + 11] != 11 ||
	                  buf[ACRYPT_NONCE + 12] != 12);
	memcpy(copy, buf, len);
	UNIT_CHECK(u, acrypt_open(c, aad, sizeof(aad), buf, len, &n) == 0 && n == 200);
	UNIT_CHECK(u, buf[ACRYPT_NONCE + 199] == 199 && buf[ACRYPT_NONCE] == 0);
	/* wrong key, wrong associated data (another offset), cut short */
	memcpy(buf, copy, len);
	UNIT_CHECK(u, acrypt_open(c2, aad, sizeof(aad), buf, len, &n) == -EBADMSG);
	memcpy(buf, copy, len);
	aad[7] = '3';
	UNIT_CHECK(u, acrypt_open(c, aad, sizeof(aad), buf, len, &n) == -EBADMSG);
	aad[7] = '2';
	UNIT_CHECK(u, acrypt_open(c, aad, sizeof(aad), buf, ACRYPT_OVERHEAD - 1, &n) == -EIO);
	/* every byte: nonce, ciphertext, tag */
	for (size_t i = 0; i < len; i++) {
		memcpy(buf, copy, len);
		buf[i] ^= 0x01;
		if (acrypt_open(c, aad, sizeof(aad), buf, len, &n) != -EBADMSG) {
			UNIT_CHECKF(u, 0, "flipped byte %zu accepted", i);
			break;
		}
	}
out:
	acrypt_free(c);
	acrypt_free(c2);
}

static int cmp12(const void *x, const void *y)
{
	return memcmp(x, y, ACRYPT_NONCE);
}

static void t_nonces_unique(struct unit_ctx *u)
{
	enum { N = 100000 };
	struct acrypt *c = key_from(3);
	uint8_t(*nonce)[ACRYPT_NONCE] = malloc((size_t)N * ACRYPT_NONCE);
	uint8_t buf[64 + ACRYPT_OVERHEAD];
	unsigned dups = 0;

	UNIT_CHECK(u, c && nonce);
	if (!c || !nonce)
		goto out;
	memset(buf, 0, sizeof(buf));
	for (int i = 0; i < N; i++) {
		/* the same plaintext and associated data every time */
		if (acrypt_seal(c, (const uint8_t *)"x", 1, buf, 64)) {
			UNIT_CHECK(u, 0);
			goto out;
		}
		memcpy(nonce[i], buf, ACRYPT_NONCE);
	}
	qsort(nonce, N, ACRYPT_NONCE, cmp12);
	for (int i = 1; i < N; i++)
		dups += !memcmp(nonce[i - 1], nonce[i], ACRYPT_NONCE);
	UNIT_CHECKF(u, dups == 0, "%u repeated nonces", dups);
out:
	free(nonce);
	acrypt_free(c);
}

static void t_mac(struct unit_ctx *u)
{
	struct acrypt *c = key_from(4), *c2 = key_from(5);
	uint8_t h1[32], h2[32], m1[32], m1b[32], m2[32], mx[32], my[32];
	unsigned hl = 32;

	UNIT_CHECK(u, c && c2);
	if (!c || !c2)
		goto out;
	EVP_Digest("message one", 11, h1, &hl, EVP_sha256(), NULL);
	EVP_Digest("message two", 11, h2, &hl, EVP_sha256(), NULL);
	UNIT_CHECK(u, acrypt_mac(c, 'o', h1, 32, m1) == 0 && acrypt_mac(c, 'o', h1, 32, m1b) == 0);
	UNIT_CHECK(u, acrypt_mac(c, 'o', h2, 32, m2) == 0);
	UNIT_CHECK(u, !memcmp(m1, m1b, 32));    /* dedupe: same content, same key */
	UNIT_CHECK(u, memcmp(m1, h1, 32) != 0); /* never the plain hash */
	UNIT_CHECK(u, memcmp(m1, m2, 32) != 0); /* different content, different key */
	UNIT_CHECK(u, acrypt_mac(c2, 'o', h1, 32, mx) == 0 && memcmp(mx, m1, 32)); /* per key */
	UNIT_CHECK(u, acrypt_mac(c, 'm', h1, 32, my) == 0 && memcmp(my, m1, 32));  /* per domain */
out:
	acrypt_free(c);
	acrypt_free(c2);
}

static void t_params(struct unit_ctx *u)
{
	struct acrypt_params p, q;
	struct acrypt *c = NULL;
	struct mf_error err = {0};
	uint8_t enc[ACRYPT_PARAMS_LEN], bad[ACRYPT_PARAMS_LEN];

	UNIT_CHECK(u, acrypt_params_new(&p, 10, &err) == 0);
	UNIT_CHECK(u, acrypt_derive(&c, &p, PASS, sizeof(PASS) - 1, 1, &err) == 0 && c);
	acrypt_free(c);
	c = NULL;
	acrypt_params_encode(&p, enc);
	UNIT_CHECK(u, acrypt_params_decode(enc, sizeof(enc), &q, &err) == 0);
	UNIT_CHECK(u, q.log2n == 10 && q.r == 8 && q.p == ACRYPT_P_DEFAULT &&
	                  !memcmp(q.salt, p.salt, 32) && !memcmp(q.check, p.check, 32));
	UNIT_CHECK(u, acrypt_derive(&c, &q, PASS, sizeof(PASS) - 1, 0, &err) == 0 && c);
	acrypt_free(c);
	c = NULL;
	UNIT_CHECK(u, acrypt_derive(&c, &q, (const uint8_t *)"wrong", 5, 0, &err) == -EACCES && !c);
	UNIT_CHECK(u, strstr(err.msg, "wrong passphrase") != NULL);
	/* every flipped byte is refused */
	for (size_t i = 0; i < sizeof(enc); i++) {
		memcpy(bad, enc, sizeof(bad));
		bad[i] ^= 0x20;
		if (acrypt_params_decode(bad, sizeof(bad), &q, &err) == 0) {
			UNIT_CHECKF(u, 0, "flipped byte %zu accepted", i);
			break;
		}
	}
	UNIT_CHECK(u, acrypt_params_decode(enc, sizeof(enc) - 1, &q, &err) == -EIO);
	/* a hostile record asking for 2^30 scrypt blocks is refused even
	 * with a valid checksum */
	memcpy(bad, enc, sizeof(bad));
	bad[7] = 24;
	afmt_put32(bad + 8, 64);
	afmt_put32(bad + 84, afmt_crc32c(0, bad, 84));
	UNIT_CHECK(u, acrypt_params_decode(bad, sizeof(bad), &q, &err) == -EINVAL);
}

/* ---- a real encrypted archive ---- */

static size_t msg_make(uint8_t *out, size_t cap, unsigned i, size_t len)
{
	uint64_t s = 0x9e3779b97f4a7c15ull * (i + 1);
	size_t n = (size_t)snprintf((char *)out, cap,
	                            "From: Sender %u <s%u@example.org>\r\nTo: r@example.org\r\n"
	                            "Subject: Zanzibar quarterly figures %u\r\n\r\n"
	                            "PLAINTEXT-MARKER-BODY line for message %u\r\n",
	                            i % 7, i % 7, i, i);

	while (n < len && n < cap) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		out[n] = (n % 70 == 69) ? '\n' : (uint8_t)("abcdefgh ijklmnop\r"[s % 18]);
		n++;
	}
	return n;
}

static int store(struct archive *a, const uint8_t *p, size_t n, uint8_t hash[32], int *dup)
{
	struct mf_error err = {0};
	uint64_t size;
	int rc;

	if ((rc = archive_msg_begin(a, &err)) || (rc = archive_msg_data(a, p, n, &err)))
		return rc;
	return archive_msg_end(a, hash, &size, dup, &err);
}

static struct archive *open_enc(const char *dir, unsigned flags, const uint8_t *pass, int encrypt,
                                int *rc, struct mf_error *err)
{
	struct archive_secret s = {pass, pass ? strlen((const char *)pass) : 0, encrypt, 10};
	struct archive *a = NULL;

	*rc = archive_open_secret(&a, dir, flags, &s, err);
	return a;
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

/* NMSG messages (uid i+1) in "Geheim/Projekt-Zanzibar" of one run; message
 * NMSG-1 is 600 KiB so it spans frames. */
static int fill(struct archive *a, uint8_t (*h)[32], uint32_t *run)
{
	struct mf_error err = {0};
	uint8_t *buf = malloc(700 << 10);
	uint32_t mb;
	int dup, rc = -1;

	if (!buf)
		return -1;
	if (archive_run_begin(a, "zanzibar-owner@example.org", 1000, run, &err) ||
	    archive_mbox_begin(a, *run, "Geheim/Projekt-Zanzibar", 23, 77, &mb, &err))
		goto out;
	for (unsigned i = 0; i < NMSG; i++) {
		size_t n = msg_make(buf, 700 << 10, i, i == NMSG - 1 ? 600 << 10 : 2000);
		struct archive_msgmeta m;

		if (store(a, buf, n, h[i], &dup) || dup)
			goto out;
		memset(&m, 0, sizeof(m));
		memcpy(m.hash, h[i], 32);
		m.size = n;
		m.internaldate = 1600000000;
		m.flags = ARCHIVE_F_SEEN;
		strcpy(m.keywords, "$SecretKeyword");
		if (archive_uid_put(a, *run, mb, i + 1, &m, &err))
			goto out;
	}
	rc = archive_run_commit(a, *run, &err);
out:
	if (rc)
		printf("# fill: %s\n", err.msg);
	free(buf);
	return rc;
}

static int file_has(const char *path, const void *needle, size_t nn)
{
	FILE *f = fopen(path, "rb");
	uint8_t *b;
	size_t n;
	int found = 0;

	if (!f)
		return 0;
	b = malloc(64 << 20);
	n = b ? fread(b, 1, 64 << 20, f) : 0;
	fclose(f);
	for (size_t i = 0; n >= nn && i <= n - nn && !found; i++)
		found = !memcmp(b + i, needle, nn);
	free(b);
	return found;
}

static const void *g_needle;
static size_t g_nn;
static int g_found;

static int scan_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_F && file_has(path, g_needle, g_nn)) {
		printf("# found in %s\n", path);
		g_found = 1;
	}
	return 0;
}

static int dir_has(const char *dir, const void *needle, size_t nn)
{
	g_needle = needle;
	g_nn = nn;
	g_found = 0;
	nftw(dir, scan_one, 16, FTW_PHYS);
	return g_found;
}

static void t_archive_round_trip(struct unit_ctx *u)
{
	char dir[128];
	uint8_t(*h)[32] = calloc(NMSG, 32), *buf = malloc(700 << 10), hd[32];
	struct mf_error err = {0};
	struct archive *a;
	uint64_t problems = 1;
	uint32_t run;
	int rc, dup;

	snprintf(dir, sizeof(dir), "%s/rt", base);
	a = open_enc(dir, ARCHIVE_OPEN_CREATE, PASS, 1, &rc, &err);
	UNIT_CHECKF(u, a && rc == 0, "%s", err.msg);
	if (!a)
		goto out;
	UNIT_CHECK(u, archive_encrypted(a));
	UNIT_CHECK(u, fill(a, h, &run) == 0);
	/* dedupe: the same content again is stored once */
	{
		size_t n = msg_make(buf, 700 << 10, 5, 2000);

		UNIT_CHECK(u, store(a, buf, n, hd, &dup) == 0 && dup == 1 && !memcmp(hd, h[5], 32));
	}
	archive_close(a);

	/* without a passphrase, with a wrong one: refused, one clear line */
	a = open_enc(dir, ARCHIVE_OPEN_RDONLY, NULL, 0, &rc, &err);
	UNIT_CHECKF(u, !a && rc == -EACCES && strstr(err.msg, "is encrypted"), "%d %s", rc,
	            err.msg);
	a = open_enc(dir, ARCHIVE_OPEN_RDONLY, (const uint8_t *)"not it", 0, &rc, &err);
	UNIT_CHECKF(u, !a && rc == -EACCES && strstr(err.msg, "wrong passphrase"), "%d %s", rc,
	            err.msg);
	a = NULL;
	UNIT_CHECK(u, archive_open(&a, dir, ARCHIVE_OPEN_RDONLY, &err) == -EACCES && !a);

	a = open_enc(dir, ARCHIVE_OPEN_RDONLY, PASS, 0, &rc, &err);
	UNIT_CHECKF(u, a && rc == 0, "%s", err.msg);
	if (!a)
		goto out;
	for (unsigned i = 0; i < NMSG; i++) {
		size_t n = msg_make(buf, 700 << 10, i, i == NMSG - 1 ? 600 << 10 : 2000);

		if (!got_eq(a, h[i], buf, n)) {
			UNIT_CHECKF(u, 0, "message %u differs", i);
			break;
		}
	}
	{
		struct archive_msgmeta m;

		UNIT_CHECK(u, archive_uid_get(a, run, 1, 3, &m, &err) == 0 &&
		                  !strcmp(m.keywords, "$SecretKeyword") &&
		                  !memcmp(m.hash, h[2], 32));
	}
	UNIT_CHECK(u, archive_verify(a, NULL, NULL, &problems, &err) == 0 && problems == 0);
	archive_close(a);

	/* nothing readable in the files */
	UNIT_CHECK(u, !dir_has(dir, "PLAINTEXT-MARKER-BODY", 21));
	UNIT_CHECK(u, !dir_has(dir, "Zanzibar", 8));
	UNIT_CHECK(u, !dir_has(dir, "zanzibar-owner", 14));
	UNIT_CHECK(u, !dir_has(dir, "$SecretKeyword", 14));
	UNIT_CHECK(u, !dir_has(dir, h[0], 32) && !dir_has(dir, h[NMSG - 1], 32));

	/* --encrypt for an archive that exists empty (a first run that failed
	 * before storing anything): it becomes encrypted */
	snprintf(dir, sizeof(dir), "%s/empty", base);
	a = NULL;
	UNIT_CHECK(u, archive_open(&a, dir, ARCHIVE_OPEN_CREATE, &err) == 0);
	archive_close(a);
	a = open_enc(dir, ARCHIVE_OPEN_CREATE, PASS, 1, &rc, &err);
	UNIT_CHECKF(u, a && rc == 0 && archive_encrypted(a), "%d %s", rc, err.msg);
	archive_close(a);
	a = NULL;
	UNIT_CHECK(u, archive_open(&a, dir, ARCHIVE_OPEN_RDONLY, &err) == -EACCES && !a);
	/* --encrypt for an archive that holds something and is not encrypted:
	 * refused */
	snprintf(dir, sizeof(dir), "%s/plain", base);
	a = NULL;
	UNIT_CHECK(u, archive_open(&a, dir, ARCHIVE_OPEN_CREATE, &err) == 0);
	if (a) {
		size_t n = msg_make(buf, 700 << 10, 1, 500);

		UNIT_CHECK(u, store(a, buf, n, hd, &dup) == 0 && archive_commit(a, &err) == 0);
	}
	archive_close(a);
	a = open_enc(dir, ARCHIVE_OPEN_CREATE, PASS, 1, &rc, &err);
	UNIT_CHECKF(u, !a && rc == -EINVAL, "%d %s", rc, err.msg);
	/* a passphrase for a plain archive is not used */
	a = open_enc(dir, ARCHIVE_OPEN_RDONLY, PASS, 0, &rc, &err);
	UNIT_CHECK(u, a && rc == 0 && !archive_encrypted(a));
	archive_close(a);
out:
	free(h);
	free(buf);
}

struct probs {
	unsigned n;
	uint32_t uid[64];
	char what[256];
};

static int prob_fn(void *ctx, const struct archive_problem *p)
{
	struct probs *pr = ctx;

	if (pr->n < 64)
		pr->uid[pr->n] = p->uid;
	if (!pr->n)
		snprintf(pr->what, sizeof(pr->what), "%s", p->what);
	pr->n++;
	return 0;
}

static void flip_at(const char *path, off_t at)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	if (fd < 0)
		return;
	if (pread(fd, &b, 1, at) == 1) {
		b ^= 0x10;
		if (pwrite(fd, &b, 1, at) != 1)
			printf("# pwrite failed\n");
	}
	close(fd);
}

/* Verifies dir; *pr gets the problems; *ok counts messages still read. */
static int verify_dir(const char *dir, uint8_t (*h)[32], struct probs *pr, unsigned *ok)
{
	struct mf_error err = {0};
	uint8_t *buf = malloc(700 << 10);
	uint64_t problems = 0;
	struct archive *a;
	int rc;

	memset(pr, 0, sizeof(*pr));
	*ok = 0;
	a = open_enc(dir, ARCHIVE_OPEN_RDONLY, PASS, 0, &rc, &err);
	if (!a || !buf) {
		printf("# open: %s\n", err.msg);
		free(buf);
		return -1;
	}
	rc = archive_verify(a, prob_fn, pr, &problems, &err);
	for (unsigned i = 0; i < NMSG; i++) {
		size_t n = msg_make(buf, 700 << 10, i, i == NMSG - 1 ? 600 << 10 : 2000);

		*ok += got_eq(a, h[i], buf, n);
	}
	archive_close(a);
	free(buf);
	return rc;
}

static void t_tamper_pack(struct unit_ctx *u)
{
	/* offsets past the pack header: in the first frame's header, nonce,
	 * ciphertext and tag (found from its header) */
	char dir[128], pack[256];
	uint8_t(*h)[32] = calloc(NMSG, 32), hdr[AFMT_FRAME_HDR];
	struct mf_error err = {0};
	struct archive *a;
	struct probs pr;
	uint32_t run, comp;
	unsigned ok;
	int rc, fd;
	off_t where[4];
	const char *region[4] = {"header", "nonce", "ciphertext", "tag"};

	snprintf(dir, sizeof(dir), "%s/tp", base);
	a = open_enc(dir, ARCHIVE_OPEN_CREATE, PASS, 1, &rc, &err);
	UNIT_CHECK(u, a && fill(a, h, &run) == 0);
	archive_close(a);
	if (!a)
		goto out;
	snprintf(pack, sizeof(pack), "%s/packs/pack-%08u.mfp", dir, 1u);
	fd = open(pack, O_RDONLY);
	UNIT_CHECK(u, fd >= 0 && pread(fd, hdr, sizeof(hdr), AFMT_PACK_HDR) == sizeof(hdr));
	if (fd >= 0)
		close(fd);
	UNIT_CHECK(u, afmt_get32(hdr + 24) == AFMT_FRAME_SEALED);
	comp = afmt_get32(hdr + 8);
	where[0] = AFMT_PACK_HDR + 9;
	where[1] = AFMT_PACK_HDR + AFMT_FRAME_HDR + 3;
	where[2] = AFMT_PACK_HDR + AFMT_FRAME_HDR + ACRYPT_NONCE + comp / 2;
	where[3] = AFMT_PACK_HDR + AFMT_FRAME_HDR + comp - 2;
	for (int r = 0; r < 4; r++) {
		flip_at(pack, where[r]);
		rc = verify_dir(dir, h, &pr, &ok);
		UNIT_CHECKF(u, rc == 0 && pr.n > 0 && pr.uid[0] == 1,
		            "%s: rc %d problems %u uid %u", region[r], rc, pr.n, pr.uid[0]);
		UNIT_CHECKF(u, ok > 0 && ok + pr.n == NMSG, "%s: %u read, %u problems", region[r],
		            ok, pr.n);
		if (r)
			UNIT_CHECKF(u, strstr(pr.what, "tampered"), "%s: %s", region[r], pr.what);
		flip_at(pack, where[r]); /* back */
	}
	rc = verify_dir(dir, h, &pr, &ok);
	UNIT_CHECK(u, rc == 0 && pr.n == 0 && ok == NMSG);
out:
	free(h);
}

/* Flips one byte of the value under (db, key) through LMDB itself. */
static int index_flip(const char *dir, const char *db, const void *key, size_t klen, int first)
{
	char idx[256];
	MDB_env *env;
	MDB_txn *t;
	MDB_dbi d;
	MDB_cursor *c;
	MDB_val k = {klen, (void *)key}, v;
	uint8_t buf[1 << 16];
	int rc;

	snprintf(idx, sizeof(idx), "%s/index", dir);
	if (mdb_env_create(&env))
		return -1;
	mdb_env_set_maxdbs(env, 16);
	mdb_env_set_mapsize(env, (size_t)1 << 30);
	if ((rc = mdb_env_open(env, idx, MDB_NOTLS, 0600)) ||
	    (rc = mdb_txn_begin(env, NULL, 0, &t))) {
		mdb_env_close(env);
		return -1;
	}
	if ((rc = mdb_dbi_open(t, db, 0, &d)) || (rc = mdb_cursor_open(t, d, &c)))
		goto fail;
	rc = first ? mdb_cursor_get(c, &k, &v, MDB_FIRST) : mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
	mdb_cursor_close(c);
	if (rc || v.mv_size > sizeof(buf) || v.mv_size < 20)
		goto fail;
	memcpy(buf, v.mv_data, v.mv_size);
	buf[v.mv_size / 2] ^= 0x04;
	v.mv_data = buf;
	if ((rc = mdb_put(t, d, &k, &v, 0)) || (rc = mdb_txn_commit(t))) {
		mdb_env_close(env);
		return -1;
	}
	mdb_env_close(env);
	return 0;
fail:
	mdb_txn_abort(t);
	mdb_env_close(env);
	return -1;
}

static void t_tamper_index(struct unit_ctx *u)
{
	char dir[128];
	uint8_t(*h)[32] = calloc(NMSG, 32), key[16];
	struct mf_error err = {0};
	struct archive *a;
	struct probs pr;
	uint32_t run;
	unsigned ok;
	int rc;

	snprintf(dir, sizeof(dir), "%s/ti", base);
	a = open_enc(dir, ARCHIVE_OPEN_CREATE, PASS, 1, &rc, &err);
	UNIT_CHECK(u, a && fill(a, h, &run) == 0);
	archive_close(a);
	if (!a)
		goto out;
	/* uid 9's version record: (mbid 1, uidvalidity 77, uid 9, run) */
	afmt_put32(key, 1);
	afmt_put32(key + 4, 77);
	afmt_put32(key + 8, 9);
	afmt_put32(key + 12, run);
	UNIT_CHECK(u, index_flip(dir, "msgs", key, 16, 0) == 0);
	rc = verify_dir(dir, h, &pr, &ok);
	UNIT_CHECKF(u, rc == 0 && pr.n == 1 && pr.uid[0] == 9 && strstr(pr.what, "tampered"),
	            "rc %d n %u uid %u what %s", rc, pr.n, pr.uid[0], pr.what);
	UNIT_CHECK(u, ok == NMSG); /* the content itself is intact */

	/* one object record (the first key): its message is named */
	UNIT_CHECK(u, index_flip(dir, "objects", NULL, 0, 1) == 0);
	rc = verify_dir(dir, h, &pr, &ok);
	UNIT_CHECKF(u, rc == 0 && pr.n >= 2 && ok == NMSG - 1, "rc %d n %u ok %u", rc, pr.n, ok);

	/* the mailbox record: verify says so */
	afmt_put32(key, 1);
	UNIT_CHECK(u, index_flip(dir, "mboxes", key, 4, 0) == 0);
	rc = verify_dir(dir, h, &pr, &ok);
	UNIT_CHECKF(u, rc == 0 && pr.n >= 3, "rc %d n %u", rc, pr.n);
out:
	free(h);
}

/* A message record sealed under one key cannot be moved under another. */
static void t_record_moved(struct unit_ctx *u)
{
	char dir[128], idx[256];
	uint8_t(*h)[32] = calloc(NMSG, 32), k1[16], k2[16], val[4096];
	struct mf_error err = {0};
	struct archive *a;
	struct probs pr;
	uint32_t run;
	unsigned ok;
	int rc;
	MDB_env *env;
	MDB_txn *t;
	MDB_dbi d;
	MDB_val k = {16, k1}, v;

	snprintf(dir, sizeof(dir), "%s/mv", base);
	a = open_enc(dir, ARCHIVE_OPEN_CREATE, PASS, 1, &rc, &err);
	UNIT_CHECK(u, a && fill(a, h, &run) == 0);
	archive_close(a);
	if (!a)
		goto out;
	afmt_put32(k1, 1);
	afmt_put32(k1 + 4, 77);
	afmt_put32(k1 + 8, 4);
	afmt_put32(k1 + 12, run);
	memcpy(k2, k1, 16);
	afmt_put32(k2 + 8, 5);
	snprintf(idx, sizeof(idx), "%s/index", dir);
	rc = mdb_env_create(&env);
	mdb_env_set_maxdbs(env, 16);
	mdb_env_set_mapsize(env, (size_t)1 << 30);
	if (!rc && !mdb_env_open(env, idx, MDB_NOTLS, 0600) && !mdb_txn_begin(env, NULL, 0, &t)) {
		if (!mdb_dbi_open(t, "msgs", 0, &d) && !mdb_get(t, d, &k, &v) &&
		    v.mv_size <= sizeof(val)) {
			memcpy(val, v.mv_data, v.mv_size);
			v.mv_data = val;
			k.mv_data = k2; /* uid 4's record put under uid 5 */
			rc = mdb_put(t, d, &k, &v, 0) || mdb_txn_commit(t);
		} else {
			mdb_txn_abort(t);
			rc = -1;
		}
	} else {
		rc = -1;
	}
	mdb_env_close(env);
	UNIT_CHECK(u, rc == 0);
	rc = verify_dir(dir, h, &pr, &ok);
	UNIT_CHECKF(u, rc == 0 && pr.n == 1 && pr.uid[0] == 5, "rc %d n %u uid %u", rc, pr.n,
	            pr.uid[0]);
out:
	free(h);
}

/* Enough small messages to train a dictionary: it is sealed too (it is
 * made of mail), and frames compressed with it still read. */
static void t_dictionary_sealed(struct unit_ctx *u)
{
	char dir[128];
	uint8_t(*h)[32] = calloc(900, 32), buf[3000];
	struct mf_error err = {0};
	struct archive_stats st;
	struct archive *a;
	uint64_t problems = 1;
	unsigned bad = 0;
	int rc, dup;

	snprintf(dir, sizeof(dir), "%s/dict", base);
	a = open_enc(dir, ARCHIVE_OPEN_CREATE, PASS, 1, &rc, &err);
	UNIT_CHECK(u, a);
	if (!a)
		goto out;
	for (unsigned i = 0; i < 900; i++) {
		size_t n = msg_make(buf, sizeof(buf), i, 1200);

		if (store(a, buf, n, h[i], &dup)) {
			UNIT_CHECK(u, 0);
			break;
		}
	}
	UNIT_CHECK(u, archive_commit(a, &err) == 0);
	UNIT_CHECK(u, archive_stats(a, &st, &err) == 0 && st.dicts >= 1 && st.objects == 900);
	archive_close(a);
	a = open_enc(dir, ARCHIVE_OPEN_RDONLY, PASS, 0, &rc, &err);
	UNIT_CHECK(u, a);
	if (!a)
		goto out;
	for (unsigned i = 0; i < 900; i++) {
		size_t n = msg_make(buf, sizeof(buf), i, 1200);

		bad += !got_eq(a, h[i], buf, n);
	}
	UNIT_CHECKF(u, bad == 0, "%u messages differ", bad);
	UNIT_CHECK(u, archive_verify(a, NULL, NULL, &problems, &err) == 0 && problems == 0);
	archive_close(a);
	UNIT_CHECK(u, !dir_has(dir, "PLAINTEXT-MARKER-BODY", 21));
	UNIT_CHECK(u, !dir_has(dir, "Zanzibar quarterly", 18));
out:
	free(h);
}

struct ulist {
	unsigned n;
	uint32_t uid[8], flags[8];
};

static int ulist_fn(void *ctx, uint32_t uid, const struct archive_msgmeta *m)
{
	struct ulist *l = ctx;

	if (l->n < 8 && m) {
		l->uid[l->n] = uid;
		l->flags[l->n] = m->flags;
	}
	l->n++;
	return 0;
}

/* Runs, expunges and prune over sealed version records: prune reads
 * deletions through the seal and re-seals what it carries forward. */
static void t_prune_sealed(struct unit_ctx *u)
{
	char dir[128];
	uint8_t buf[3000], h[4][32];
	struct mf_error err = {0};
	struct archive_msgmeta m;
	struct archive *a;
	struct ulist l;
	uint64_t dropped = 0, problems = 1;
	uint32_t r1, r2, mb, mb2;
	int rc, dup;

	snprintf(dir, sizeof(dir), "%s/prune", base);
	a = open_enc(dir, ARCHIVE_OPEN_CREATE, PASS, 1, &rc, &err);
	UNIT_CHECK(u, a);
	if (!a)
		return;
	UNIT_CHECK(u, archive_run_begin(a, "alice", 10, &r1, &err) == 0);
	UNIT_CHECK(u, archive_mbox_begin(a, r1, "INBOX", 5, 5, &mb, &err) == 0);
	memset(&m, 0, sizeof(m));
	for (unsigned i = 0; i < 4; i++) {
		size_t n = msg_make(buf, sizeof(buf), 500 + i, 1000);

		UNIT_CHECK(u, store(a, buf, n, h[i], &dup) == 0);
		memcpy(m.hash, h[i], 32);
		m.size = n;
		if (i < 3)
			UNIT_CHECK(u, archive_uid_put(a, r1, mb, i + 1, &m, &err) == 0);
	}
	UNIT_CHECK(u, archive_run_commit(a, r1, &err) == 0);
	/* run 2: uid 2 flagged, uid 3 expunged, uid 4 new */
	UNIT_CHECK(u, archive_run_begin(a, "alice", 20, &r2, &err) == 0);
	UNIT_CHECK(u, archive_mbox_begin(a, r2, "INBOX", 5, 5, &mb2, &err) == 0 && mb2 == mb);
	memcpy(m.hash, h[1], 32);
	m.size = msg_make(buf, sizeof(buf), 501, 1000);
	m.flags = ARCHIVE_F_FLAGGED;
	UNIT_CHECK(u, archive_uid_put(a, r2, mb, 2, &m, &err) == 0);
	UNIT_CHECK(u, archive_uid_delete(a, r2, mb, 3, &err) == 0);
	memcpy(m.hash, h[3], 32);
	m.size = msg_make(buf, sizeof(buf), 503, 1000);
	m.flags = 0;
	UNIT_CHECK(u, archive_uid_put(a, r2, mb, 4, &m, &err) == 0);
	UNIT_CHECK(u, archive_run_commit(a, r2, &err) == 0);
	UNIT_CHECKF(u, archive_prune(a, r2, &dropped, &err) == 0, "%s", err.msg);
	UNIT_CHECKF(u, dropped == 1, "dropped %llu", (unsigned long long)dropped);
	archive_close(a);
	a = open_enc(dir, ARCHIVE_OPEN_RDONLY, PASS, 0, &rc, &err);
	UNIT_CHECK(u, a);
	if (!a)
		return;
	memset(&l, 0, sizeof(l));
	UNIT_CHECK(u, archive_uid_each(a, r2, mb, ulist_fn, &l, &err) == 0);
	UNIT_CHECKF(u,
	            l.n == 3 && l.uid[0] == 1 && l.uid[1] == 2 && l.uid[2] == 4 &&
	                l.flags[1] == ARCHIVE_F_FLAGGED,
	            "n %u", l.n);
	UNIT_CHECK(u, archive_has(a, h[2], &err) == 0 && archive_has(a, h[0], &err) == 1);
	UNIT_CHECK(u, archive_verify(a, NULL, NULL, &problems, &err) == 0 && problems == 0);
	archive_close(a);
}

int main(void)
{
	struct unit_ctx u = {0};

	snprintf(base, sizeof(base), "/tmp/mf-test-acrypt.%d", (int)getpid());
	mkdir(base, 0700);
	UNIT_RUN(&u, t_seal_open);
	UNIT_RUN(&u, t_nonces_unique);
	UNIT_RUN(&u, t_mac);
	UNIT_RUN(&u, t_params);
	UNIT_RUN(&u, t_archive_round_trip);
	UNIT_RUN(&u, t_tamper_pack);
	UNIT_RUN(&u, t_tamper_index);
	UNIT_RUN(&u, t_record_moved);
	UNIT_RUN(&u, t_dictionary_sealed);
	UNIT_RUN(&u, t_prune_sealed);
	nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	printf("%d passed, %d failed\n", u.passed, u.failed);
	return unit_done(&u);
}
