/*
 * archive — packs of zstd frames plus an LMDB index (see archive.h).
 *
 * This file owns the directory, the lock, the LMDB environment, the pack
 * writer (the open frame, dictionary training) and the reader (one cached
 * decompressed frame, so consecutive messages of one frame decompress it
 * once). Encodings are in archive_fmt.c; verify and prune in archive_ops.c.
 *
 * Index databases (values are sealed records, archive_fmt.h):
 *   meta     counter name          -> u32 ("format", "run", "mbox", "acct")
 *   objects  hash[32]              -> pack, frame offset, skip, frames, size
 *   accts    account bytes         -> u32 account id
 *   mbnames  u32 acct, SHA-256(name) -> u32 mailbox id
 *   mboxes   u32 mbid              -> account id, name
 *   runs     u32 run               -> time, account, committed
 *   runmb    u32 run, u32 mbid     -> UIDVALIDITY the run saw
 *   msgs     u32 mbid, u32 uidvalidity, u32 uid, u32 run -> version
 *   packs    u32 pack              -> committed length
 *   dicts    u32 version           -> dictionary bytes
 */
#include "store/archive_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARCHIVE_PACK_MAX ((uint64_t)256 << 20)
#define ARCHIVE_COMMIT_BYTES ((uint64_t)32 << 20)
#define ARCHIVE_COMMIT_OPS 2000
#define ARCHIVE_SAMPLE_CAP ((size_t)1 << 20)
#define ARCHIVE_SAMPLE_MSG 8192
#define ARCHIVE_SAMPLE_N 4096
#define ARCHIVE_SAMPLE_GOAL 400
#define ARCHIVE_DICT_SIZE (64u << 10)

/* ---- errors and transactions ---- */

int arc_lmdb_code(int rc)
{
	if (rc > 0)
		return -rc;
	switch (rc) {
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
		return -ENOSPC;
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
	case MDB_INCOMPATIBLE:
	case MDB_BAD_VALSIZE:
		return -EINVAL;
	default:
		return -EIO;
	}
}

int arc_lmdb_fail(struct archive *a, int rc, struct mf_error *err, const char *what)
{
	int code = arc_lmdb_code(rc);

	if (a->txn && !(a->flags & ARCHIVE_OPEN_RDONLY)) {
		mdb_txn_abort(a->txn);
		a->txn = NULL;
		mf_err_set(&a->lost, code,
		           "archive %s: %s: %s; writes since the last commit were dropped", a->dir,
		           what, mdb_strerror(rc));
		mf_err_set(err, code, "%s", a->lost.msg);
	} else {
		mf_err_set(err, code, "archive %s: %s: %s", a->dir, what, mdb_strerror(rc));
	}
	return code;
}

int arc_txn(struct archive *a, struct mf_error *err)
{
	int rc;

	if (a->lost.code) {
		mf_err_set(err, a->lost.code, "%s", a->lost.msg);
		return a->lost.code;
	}
	if (a->txn)
		return 0;
	rc =
	    mdb_txn_begin(a->env, NULL, (a->flags & ARCHIVE_OPEN_RDONLY) ? MDB_RDONLY : 0, &a->txn);
	if (rc) {
		a->txn = NULL;
		return arc_lmdb_fail(a, rc, err, "mdb_txn_begin");
	}
	return 0;
}

/* 0 found (decoded into *r), -ENOENT, -EIO damaged (err says so). */
int arc_get(struct archive *a, MDB_dbi db, enum afmt_kind kind, const void *k, size_t klen,
            struct afmt_rec *r, struct mf_error *err)
{
	MDB_val key = {klen, (void *)k}, v;
	int rc;

	if ((rc = arc_txn(a, err)))
		return rc;
	rc = mdb_get(a->txn, db, &key, &v);
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	if (rc)
		return arc_lmdb_fail(a, rc, err, "mdb_get");
	return afmt_rec_decode(kind, k, klen, v.mv_data, v.mv_size, r, err);
}

int arc_put(struct archive *a, MDB_dbi db, enum afmt_kind kind, const void *k, size_t klen,
            const struct afmt_rec *r, struct mf_error *err)
{
	uint8_t buf[AFMT_REC_MAX];
	size_t n = afmt_rec_encode(kind, k, klen, r, buf, sizeof(buf));
	MDB_val key = {klen, (void *)k}, v = {n, buf};
	int rc;

	if (a->flags & ARCHIVE_OPEN_RDONLY) {
		mf_err_set(err, -EROFS, "archive %s: opened read-only", a->dir);
		return -EROFS;
	}
	if (!n) {
		mf_err_set(err, -EINVAL, "archive %s: record too long", a->dir);
		return -EINVAL;
	}
	if ((rc = arc_txn(a, err)))
		return rc;
	a->dirty++;
	rc = mdb_put(a->txn, db, &key, &v, 0);
	if (rc)
		return arc_lmdb_fail(a, rc, err, "mdb_put");
	return 0;
}

int arc_del(struct archive *a, MDB_dbi db, const void *k, size_t klen, struct mf_error *err)
{
	MDB_val key = {klen, (void *)k};
	int rc;

	if ((rc = arc_txn(a, err)))
		return rc;
	a->dirty++;
	rc = mdb_del(a->txn, db, &key, NULL);
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	if (rc)
		return arc_lmdb_fail(a, rc, err, "mdb_del");
	return 0;
}

/* Next value of counter name (1, 2, ...). */
static int counter_next(struct archive *a, const char *name, uint32_t *out, struct mf_error *err)
{
	struct afmt_rec r;
	int rc = arc_get(a, a->meta, AFMT_COUNTER, name, strlen(name), &r, err);

	if (rc == -ENOENT)
		r.u.counter = 0;
	else if (rc)
		return rc;
	if (r.u.counter == UINT32_MAX) {
		mf_err_set(err, -EOVERFLOW, "archive %s: %s ids exhausted", a->dir, name);
		return -EOVERFLOW;
	}
	r.u.counter++;
	*out = r.u.counter;
	return arc_put(a, a->meta, AFMT_COUNTER, name, strlen(name), &r, err);
}

/* ---- runs visible to readers ---- */

int arc_run_visible(const struct archive *a, uint32_t run)
{
	size_t lo = 0, hi = a->nruns;

	if (run && run == a->open_run)
		return 1;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (a->runs_ok[mid] == run)
			return 1;
		if (a->runs_ok[mid] < run)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

static int runs_add(struct archive *a, uint32_t run)
{
	size_t i;

	if (arc_run_visible(a, run) && run != a->open_run)
		return 0;
	if (a->nruns == a->capruns) {
		size_t cap = a->capruns ? a->capruns * 2 : 64;
		uint32_t *p = realloc(a->runs_ok, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		a->runs_ok = p;
		a->capruns = cap;
	}
	for (i = a->nruns; i > 0 && a->runs_ok[i - 1] > run; i--)
		a->runs_ok[i] = a->runs_ok[i - 1];
	a->runs_ok[i] = run;
	a->nruns++;
	return 0;
}

static int runs_load(struct archive *a, struct mf_error *err)
{
	MDB_cursor *c;
	MDB_val k, v;
	struct afmt_rec r;
	int rc;

	if ((rc = arc_txn(a, err)))
		return rc;
	if ((rc = mdb_cursor_open(a->txn, a->runs, &c)))
		return arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		struct mf_error e2;

		if (afmt_rec_decode(AFMT_RUN, k.mv_data, k.mv_size, v.mv_data, v.mv_size, &r, &e2))
			continue; /* verify names it */
		if (r.u.run.committed && runs_add(a, afmt_get32(k.mv_data))) {
			mdb_cursor_close(c);
			mf_err_set(err, -ENOMEM, "archive %s: out of memory", a->dir);
			return -ENOMEM;
		}
	}
	mdb_cursor_close(c);
	return 0;
}

/* ---- dictionaries ---- */

static int dict_add(struct archive *a, uint32_t ver, const uint8_t *p, size_t n)
{
	struct arc_dict *d;

	if (a->ndicts == ARC_DICTS_MAX)
		return -ENOSPC;
	d = &a->dicts[a->ndicts];
	memset(d, 0, sizeof(*d));
	if (!(d->bytes = malloc(n)))
		return -ENOMEM;
	memcpy(d->bytes, p, n);
	d->n = n;
	d->ver = ver;
	a->ndicts++;
	if (ver > a->dict_cur)
		a->dict_cur = ver;
	return 0;
}

struct arc_dict *arc_dict_find(struct archive *a, uint32_t ver)
{
	for (unsigned i = 0; i < a->ndicts; i++)
		if (a->dicts[i].ver == ver)
			return &a->dicts[i];
	return NULL;
}

static int dicts_load(struct archive *a, struct mf_error *err)
{
	MDB_cursor *c;
	MDB_val k, v;
	struct afmt_rec r;
	int rc;

	if ((rc = arc_txn(a, err)))
		return rc;
	if ((rc = mdb_cursor_open(a->txn, a->dicts_db, &c)))
		return arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		struct mf_error e2;

		if (afmt_rec_decode(AFMT_DICT, k.mv_data, k.mv_size, v.mv_data, v.mv_size, &r, &e2))
			continue; /* frames naming it fail; verify names them */
		if (dict_add(a, afmt_get32(k.mv_data), r.u.dict.p, r.u.dict.n))
			break;
	}
	mdb_cursor_close(c);
	/* an archive with dictionaries retrains only after much new mail */
	a->sample_from = (uint64_t)a->ndicts * 4 * ARCHIVE_SAMPLE_N;
	return 0;
}

static ZSTD_CDict *dict_cdict(struct archive *a, struct arc_dict *d)
{
	if (!d->cd || d->cd_level != a->tune.level) {
		ZSTD_freeCDict(d->cd);
		d->cd = ZSTD_createCDict(d->bytes, d->n, a->tune.level);
		d->cd_level = a->tune.level;
	}
	return d->cd;
}

ZSTD_DDict *arc_dict_ddict(struct arc_dict *d)
{
	if (!d->dd)
		d->dd = ZSTD_createDDict(d->bytes, d->n);
	return d->dd;
}

/* Trains a dictionary from the samples gathered so far and stores it as
 * the next version; new frames use it. A failure only costs compression. */
static int dict_train(struct archive *a, struct mf_error *err)
{
	uint8_t *buf;
	uint8_t key[4];
	size_t n, cap;
	uint32_t ver;
	int rc = 0;

	if (a->ndicts >= ARC_DICTS_MAX || a->nsamp < 32) {
		a->nsamp = 0;
		a->sampn = 0;
		return 0;
	}
	if (!(buf = malloc(ARCHIVE_DICT_SIZE + 16)))
		return 0;
	{
		/* One fastCover pass with fixed parameters: ZDICT_trainFromBuffer
		 * searches k and d and costs ~10x more for a dictionary that is
		 * no better on mail (bench/archive_ratio). */
		ZDICT_fastCover_params_t fp;

		memset(&fp, 0, sizeof(fp));
		fp.k = 200;
		fp.d = 8;
		fp.f = 18;
		fp.accel = 2;
		fp.zParams.compressionLevel = a->tune.level;
		n = ZDICT_trainFromBuffer_fastCover(buf, ARCHIVE_DICT_SIZE, a->samp, a->sampsz,
		                                    a->nsamp, fp);
	}
	/* the next version from a sample of a much larger archive */
	a->sample_from = a->stored * 8;
	a->nsamp = 0;
	a->sampn = 0;
	if (ZDICT_isError(n) || n < 256) {
		mf_log(MF_LOG_DEBUG, "archive %s: dictionary training: %s", a->dir,
		       ZDICT_isError(n) ? ZDICT_getErrorName(n) : "too small");
		free(buf);
		return 0;
	}
	ver = a->dict_cur + 1;
	afmt_put32(key, ver);
	cap = n + 16;
	{
		uint8_t *rec = malloc(cap);
		MDB_val k = {4, key}, v;

		if (!rec) {
			free(buf);
			return 0;
		}
		v.mv_size = afmt_dict_encode(key, 4, buf, n, rec);
		v.mv_data = rec;
		if (!(rc = arc_txn(a, err))) {
			int lr = mdb_put(a->txn, a->dicts_db, &k, &v, 0);

			if (lr)
				rc = arc_lmdb_fail(a, lr, err, "mdb_put dictionary");
		}
		free(rec);
	}
	if (!rc && dict_add(a, ver, buf, n) == 0)
		mf_log(MF_LOG_DEBUG, "archive %s: dictionary %u trained (%zu bytes)", a->dir, ver,
		       n);
	free(buf);
	return rc;
}

/* ---- packs ---- */

void arc_pack_path(const struct archive *a, uint32_t pack, char *out, size_t cap)
{
	snprintf(out, cap, "%s/packs/pack-%08u.mfp", a->dir, pack);
}

/* The descriptor to read pack from (the writer's own for the open pack). */
int arc_pack_fd(struct archive *a, uint32_t pack, struct mf_error *err)
{
	char path[4200];
	uint8_t hdr[AFMT_PACK_HDR];
	int fd, rc;

	if (a->wfd >= 0 && pack == a->wpack)
		return a->wfd;
	if (a->rfd >= 0 && a->rpack == pack)
		return a->rfd;
	if (a->rfd >= 0)
		close(a->rfd);
	a->rfd = -1;
	arc_pack_path(a, pack, path, sizeof(path));
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		mf_err_set(err, rc, "pack %u: %s", pack, strerror(-rc));
		return rc;
	}
	if (pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
	    afmt_pack_hdr_check(hdr, sizeof(hdr), pack, err)) {
		close(fd);
		if (!err->code)
			mf_err_set(err, -EIO, "pack %u: header cut short", pack);
		return -EIO;
	}
	a->rfd = fd;
	a->rpack = pack;
	return fd;
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/* Opens a new pack (the next id after every committed one) for writing. */
static int pack_new(struct archive *a, struct mf_error *err)
{
	char path[4200];
	uint8_t hdr[AFMT_PACK_HDR];
	int fd, rc;

	arc_pack_path(a, a->wpack, path, sizeof(path));
	/* A file by this name has no committed record: left by a crash. */
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		mf_err_set(err, rc, "archive %s: create pack %u: %s", a->dir, a->wpack,
		           strerror(-rc));
		return rc;
	}
	afmt_pack_hdr(hdr, a->wpack);
	if ((rc = write_all(fd, hdr, sizeof(hdr), 0))) {
		mf_err_set(err, rc, "archive %s: write pack %u: %s", a->dir, a->wpack,
		           strerror(-rc));
		close(fd);
		return rc;
	}
	a->wfd = fd;
	a->wlen = AFMT_PACK_HDR;
	a->wcommitted = 0;
	a->wnew = 1;
	return 0;
}

/* Compresses the open frame's first n bytes and appends them to the pack
 * as one frame (the caller moves what is left). */
static int frame_write(struct archive *a, size_t n, struct mf_error *err)
{
	struct afmt_frame f;
	struct arc_dict *d;
	size_t c;
	int rc;

	if (a->wfd < 0 && (rc = pack_new(a, err)))
		return rc;
	ZSTD_CCtx_reset(a->cctx, ZSTD_reset_session_and_parameters);
	ZSTD_CCtx_setParameter(a->cctx, ZSTD_c_compressionLevel, a->tune.level);
	ZSTD_CCtx_setParameter(a->cctx, ZSTD_c_checksumFlag, 1);
	ZSTD_CCtx_setParameter(a->cctx, ZSTD_c_contentSizeFlag, 1);
	d = a->fdict ? arc_dict_find(a, a->fdict) : NULL;
	if (d && dict_cdict(a, d)) {
		/* use the dictionary's tables in place: copying them per frame
		 * costs more than the frame at higher levels */
		ZSTD_CCtx_setParameter(a->cctx, ZSTD_c_forceAttachDict, ZSTD_dictForceAttach);
		ZSTD_CCtx_refCDict(a->cctx, d->cd);
	} else
		a->fdict = 0;
	c = ZSTD_compress2(a->cctx, a->cbuf + AFMT_FRAME_HDR, a->ccap - AFMT_FRAME_HDR, a->fbuf, n);
	if (ZSTD_isError(c)) {
		mf_err_set(err, -EIO, "archive %s: zstd: %s", a->dir, ZSTD_getErrorName(c));
		return -EIO;
	}
	f.dict = a->fdict;
	f.comp_len = (uint32_t)c;
	f.raw_len = (uint32_t)n;
	f.pack = a->wpack;
	f.crc = afmt_crc32c(0, a->cbuf + AFMT_FRAME_HDR, c);
	afmt_frame_hdr(a->cbuf, &f);
	if ((rc = write_all(a->wfd, a->cbuf, AFMT_FRAME_HDR + c, a->wlen))) {
		mf_err_set(err, rc, "archive %s: write pack %u: %s", a->dir, a->wpack,
		           strerror(-rc));
		return rc;
	}
	a->wlen += AFMT_FRAME_HDR + c;
	return 0;
}

/* Compresses the open frame and appends it to the pack. */
int arc_frame_flush(struct archive *a, struct mf_error *err)
{
	int rc;

	if (!a->fn)
		return 0;
	if ((rc = frame_write(a, a->fn, err)))
		return rc;
	a->fn = 0;
	return 0;
}

/* Where the open frame will be written. */
static uint64_t open_off(const struct archive *a)
{
	return a->wfd >= 0 ? a->wlen : AFMT_PACK_HDR;
}

/*
 * The message being written outgrows the open frame, which also holds
 * earlier messages: those go out as a frame of their own and the message
 * moves to the front. So a message larger than a frame starts a frame, and
 * if it turns out to be stored already, every frame written for it is cut
 * off the pack again (archive_msg_abort) instead of staying as dead space.
 */
static int frame_split(struct archive *a, struct mf_error *err)
{
	int rc;

	if ((rc = frame_write(a, a->m_skip, err)))
		return rc;
	memmove(a->fbuf, a->fbuf + a->m_skip, a->fn - a->m_skip);
	a->fn -= a->m_skip;
	a->m_skip = 0;
	a->m_off = a->wlen;
	return 0;
}

/* On open (writer): the last committed pack is cut back to its committed
 * length (bytes after it were never named by the index: a torn or
 * unfinished write) and becomes the pack new frames go to, if it is not
 * full and its file is whole. */
static int packs_open(struct archive *a, struct mf_error *err)
{
	MDB_cursor *c;
	MDB_val k, v;
	struct afmt_rec r;
	struct stat st;
	char path[4200];
	uint32_t last = 0;
	uint64_t len = 0;
	int rc, fd;

	if ((rc = arc_txn(a, err)))
		return rc;
	if ((rc = mdb_cursor_open(a->txn, a->packs_db, &c)))
		return arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
	rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
	if (!rc && k.mv_size == 4) {
		struct mf_error e2;

		last = afmt_get32(k.mv_data);
		if (afmt_rec_decode(AFMT_PACK, k.mv_data, 4, v.mv_data, v.mv_size, &r, &e2) == 0)
			len = r.u.pack_len;
	}
	mdb_cursor_close(c);
	a->wpack = last + 1;
	if (!last || !len || (a->flags & ARCHIVE_OPEN_RDONLY))
		return 0;
	arc_pack_path(a, last, path, sizeof(path));
	fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return 0; /* verify names what is lost; new frames go to a new pack */
	}
	if ((uint64_t)st.st_size > len) {
		mf_log(MF_LOG_WARN,
		       "archive %s: pack %u: dropping %llu bytes after the last commit "
		       "(an interrupted write)",
		       a->dir, last, (unsigned long long)((uint64_t)st.st_size - len));
		if (ftruncate(fd, (off_t)len) < 0 || fdatasync(fd) < 0) {
			rc = -errno;
			close(fd);
			mf_err_set(err, rc, "archive %s: truncate pack %u: %s", a->dir, last,
			           strerror(-rc));
			return rc;
		}
	}
	if ((uint64_t)st.st_size < len || len >= ARCHIVE_PACK_MAX) {
		close(fd);
		return 0;
	}
	a->wfd = fd;
	a->wpack = last;
	a->wlen = len;
	a->wcommitted = len;
	return 0;
}

/* Where LMDB mapped data.mdb (found once in /proc/self/maps; not found:
 * nothing is released). */
static void map_find(struct archive *a)
{
	char path[4200], line[4400];
	unsigned long lo, hi, ino;
	struct stat fs;
	FILE *f;

	snprintf(path, sizeof(path), "%s/index/data.mdb", a->dir);
	if (stat(path, &fs) < 0 || !(f = fopen("/proc/self/maps", "re")))
		return;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &lo, &hi, &ino) == 3 &&
		    ino == (unsigned long)fs.st_ino && hi > lo) {
			a->map_base = (void *)lo;
			a->map_len = hi - lo;
			break;
		}
	fclose(f);
}

/*
 * The index pages a long walk (verify, export, a big backup) reads through
 * the map are clean and stay in the page cache; letting them go from this
 * process keeps its resident size to its buffers, not the index's size
 * (the 32 MiB bound). Safe while a transaction is open: the map is
 * read-only and re-faults the same bytes.
 */
void arc_map_release(struct archive *a)
{
	MDB_envinfo info;
	MDB_stat st;
	size_t used;

	if (!a->map_base || mdb_env_info(a->env, &info) || mdb_env_stat(a->env, &st))
		return;
	used = (info.me_last_pgno + 1) * (size_t)st.ms_psize;
	madvise(a->map_base, used < a->map_len ? used : a->map_len, MADV_DONTNEED);
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int archive_commit(struct archive *a, struct mf_error *err)
{
	char path[4200];
	struct afmt_rec r;
	uint8_t key[4];
	int rc;

	if (a->flags & ARCHIVE_OPEN_RDONLY)
		return 0;
	if (a->lost.code) {
		mf_err_set(err, a->lost.code, "%s", a->lost.msg);
		rc = a->lost.code;
		mf_err_clear(&a->lost);
		return rc;
	}
	if ((rc = arc_frame_flush(a, err)))
		return rc;
	if (a->wfd >= 0 && a->wlen != a->wcommitted) {
		/* Pack bytes first: the index may name only what is on disk. */
		if (fdatasync(a->wfd) < 0) {
			rc = -errno;
			mf_err_set(err, rc, "archive %s: sync pack %u: %s", a->dir, a->wpack,
			           strerror(-rc));
			return rc;
		}
		if (a->wnew) {
			snprintf(path, sizeof(path), "%s/packs", a->dir);
			if ((rc = fsync_dir(path))) {
				mf_err_set(err, rc, "archive %s: sync packs/: %s", a->dir,
				           strerror(-rc));
				return rc;
			}
			a->wnew = 0;
		}
		afmt_put32(key, a->wpack);
		r.u.pack_len = a->wlen;
		if ((rc = arc_put(a, a->packs_db, AFMT_PACK, key, 4, &r, err)))
			return rc;
	}
	if (a->txn) {
		rc = mdb_txn_commit(a->txn);
		a->txn = NULL;
		if (rc) {
			mf_err_set(err, arc_lmdb_code(rc),
			           "archive %s: mdb_txn_commit: %s; writes since the last commit "
			           "were dropped",
			           a->dir, mdb_strerror(rc));
			return arc_lmdb_code(rc);
		}
	}
	a->dirty = 0;
	a->wcommitted = a->wlen;
	arc_map_release(a);
	if (a->wfd >= 0 && !a->in_msg && a->wlen >= a->tune.pack_max) {
		close(a->wfd);
		a->wfd = -1;
		a->wpack++;
	}
	return 0;
}

static int maybe_commit(struct archive *a, struct mf_error *err)
{
	if (a->dirty >= ARCHIVE_COMMIT_OPS || a->wlen - a->wcommitted >= ARCHIVE_COMMIT_BYTES)
		return archive_commit(a, err);
	return 0;
}

/* ---- open / close ---- */

static int mkdir_own(const char *path, struct mf_error *err)
{
	struct stat st;

	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		int e = errno;

		mf_err_set(err, -e, "archive: mkdir %s: %s", path, strerror(e));
		return -e;
	}
	if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		mf_err_set(err, -ENOTDIR, "archive: %s is not a directory", path);
		return -ENOTDIR;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 0022)) {
		mf_err_set(err, -EPERM,
		           "archive: %s belongs to another user or others may write it: "
		           "refusing it",
		           path);
		return -EPERM;
	}
	return 0;
}

static int env_open(struct archive *a, const char *idx, struct mf_error *err)
{
	static const struct {
		const char *name;
		size_t off;
	} dbs[] = {
	    {"meta", offsetof(struct archive, meta)},
	    {"objects", offsetof(struct archive, objects)},
	    {"accts", offsetof(struct archive, accts)},
	    {"mbnames", offsetof(struct archive, mbnames)},
	    {"mboxes", offsetof(struct archive, mboxes)},
	    {"runs", offsetof(struct archive, runs)},
	    {"runmb", offsetof(struct archive, runmb)},
	    {"msgs", offsetof(struct archive, msgs)},
	    {"packs", offsetof(struct archive, packs_db)},
	    {"dicts", offsetof(struct archive, dicts_db)},
	};
	size_t size = (size_t)64 << 30;
	int rdonly = !!(a->flags & ARCHIVE_OPEN_RDONLY);
	int rc;

	for (;;) {
		if ((rc = mdb_env_create(&a->env)))
			return arc_lmdb_fail(a, rc, err, "mdb_env_create");
		mdb_env_set_maxdbs(a->env, 16);
		mdb_env_set_mapsize(a->env, size);
		rc = mdb_env_open(a->env, idx, MDB_NOTLS | (rdonly ? MDB_RDONLY : 0), 0600);
		if (!rc)
			break;
		mdb_env_close(a->env);
		a->env = NULL;
		if ((rc != ENOMEM && rc != EINVAL) || size <= ((size_t)1 << 30))
			return arc_lmdb_fail(a, rc, err, "mdb_env_open");
		size /= 2;
	}
	if ((rc = arc_txn(a, err)))
		return rc;
	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
		MDB_dbi *d = (MDB_dbi *)((char *)a + dbs[i].off);

		rc = mdb_dbi_open(a->txn, dbs[i].name, rdonly ? 0 : MDB_CREATE, d);
		if (rc == MDB_NOTFOUND && rdonly) {
			mf_err_set(err, -ENOENT, "archive %s: not an archive (no index)", a->dir);
			return -ENOENT;
		}
		if (rc)
			return arc_lmdb_fail(a, rc, err, "mdb_dbi_open");
	}
	return 0;
}

static int format_check(struct archive *a, struct mf_error *err)
{
	struct afmt_rec r;
	int rc = arc_get(a, a->meta, AFMT_COUNTER, "format", 6, &r, err);

	if (rc == -ENOENT) {
		if (a->flags & ARCHIVE_OPEN_RDONLY) {
			mf_err_set(err, -ENOENT, "archive %s: not an archive (no format record)",
			           a->dir);
			return -ENOENT;
		}
		r.u.counter = ARC_FORMAT;
		return arc_put(a, a->meta, AFMT_COUNTER, "format", 6, &r, err);
	}
	if (rc)
		return rc;
	if (r.u.counter != ARC_FORMAT) {
		mf_err_set(err, -EINVAL, "archive %s: format %u (this mailferry reads %u)", a->dir,
		           r.u.counter, ARC_FORMAT);
		return -EINVAL;
	}
	return 0;
}

static int bufs_alloc(struct archive *a)
{
	a->tune.level = 3;
	a->tune.frame_raw = 256u << 10;
	a->tune.pack_max = ARCHIVE_PACK_MAX;
	a->fbuf = malloc(AFMT_FRAME_RAW_MAX);
	a->ccap = AFMT_FRAME_HDR + ZSTD_compressBound(AFMT_FRAME_RAW_MAX);
	a->cbuf = malloc(a->ccap);
	a->rraw = malloc(AFMT_FRAME_RAW_MAX);
	a->rcomp = malloc(AFMT_FRAME_COMP_MAX);
	a->cctx = ZSTD_createCCtx();
	a->dctx = ZSTD_createDCtx();
	a->samp_goal = ARCHIVE_SAMPLE_GOAL;
	if (!a->fbuf || !a->cbuf || !a->rraw || !a->rcomp || !a->cctx || !a->dctx ||
	    msghash_init(&a->h))
		return -ENOMEM;
	/* Frames hold at most 1 MiB: a larger window is a hostile frame. */
	ZSTD_DCtx_setParameter(a->dctx, ZSTD_d_windowLogMax, 21);
	return 0;
}

/* A process killed while LMDB created data.mdb leaves it shorter than its
 * two meta pages: nothing was ever committed (a commit writes more), so
 * the index starts over instead of being refused as damaged. */
static int index_unborn(struct archive *a, const char *idx, struct mf_error *err)
{
	char path[4300];
	struct stat st;
	long pg = sysconf(_SC_PAGESIZE);

	snprintf(path, sizeof(path), "%s/data.mdb", idx);
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size >= 2 * (pg > 0 ? pg : 4096))
		return 0;
	mf_log(MF_LOG_WARN, "archive %s: index never committed (%lld bytes): starting it over",
	       a->dir, (long long)st.st_size);
	if (unlink(path) < 0) {
		int e = errno;

		mf_err_set(err, -e, "archive %s: remove %s: %s", a->dir, path, strerror(e));
		return -e;
	}
	return 0;
}

int archive_open(struct archive **out, const char *dir, unsigned flags, struct mf_error *err)
{
	struct archive *a;
	struct state_check_info info;
	char path[4200];
	struct stat st;
	int rc;

	*out = NULL;
	if (strlen(dir) > 3000) {
		mf_err_set(err, -ENAMETOOLONG, "archive: directory name too long");
		return -ENAMETOOLONG;
	}
	if (!(flags & ARCHIVE_OPEN_CREATE) || (flags & ARCHIVE_OPEN_RDONLY)) {
		if (stat(dir, &st) < 0) {
			rc = -errno;
			mf_err_set(err, rc, "archive %s: %s", dir, strerror(-rc));
			return rc;
		}
	}
	if (!(a = calloc(1, sizeof(*a))) || !(a->dir = strdup(dir))) {
		free(a);
		mf_err_set(err, -ENOMEM, "archive %s: out of memory", dir);
		return -ENOMEM;
	}
	a->flags = flags;
	a->lock_fd = a->wfd = a->rfd = -1;
	if (bufs_alloc(a)) {
		archive_close(a);
		mf_err_set(err, -ENOMEM, "archive %s: out of memory", dir);
		return -ENOMEM;
	}
	if (!(flags & ARCHIVE_OPEN_RDONLY) && (rc = mkdir_own(dir, err)))
		goto fail;
	snprintf(path, sizeof(path), "%s/lock", dir);
	a->lock_fd = open(path,
	                  ((flags & ARCHIVE_OPEN_RDONLY) ? O_RDONLY : O_RDWR | O_CREAT) |
	                      O_NOFOLLOW | O_CLOEXEC,
	                  0600);
	if (a->lock_fd < 0) {
		rc = -errno;
		mf_err_set(err, rc, "archive %s: %s: %s", dir,
		           rc == -ENOENT ? "not an archive (no lock file)" : "lock", strerror(-rc));
		goto fail;
	}
	if (flock(a->lock_fd, ((flags & ARCHIVE_OPEN_RDONLY) ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		rc = -EBUSY;
		mf_err_set(err, rc, "archive %s: in use by another mailferry", dir);
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/packs", dir);
	if (!(flags & ARCHIVE_OPEN_RDONLY) && (rc = mkdir_own(path, err)))
		goto fail;
	snprintf(path, sizeof(path), "%s/index", dir);
	if (!(flags & ARCHIVE_OPEN_RDONLY) && (rc = mkdir_own(path, err)))
		goto fail;
	if (!(flags & ARCHIVE_OPEN_RDONLY) && (rc = index_unborn(a, path, err)))
		goto fail;
	/* LMDB trusts its file; a damaged one is refused here, not by SIGBUS. */
	if ((rc = state_check(path, &info, err))) {
		char m[MF_ERR_MAX];

		snprintf(m, sizeof(m), "%s", err->msg);
		mf_err_set(err, rc, "archive %s: index: %s", dir, m);
		goto fail;
	}
	if (!(rc = env_open(a, path, err)))
		map_find(a);
	if (rc || (rc = format_check(a, err)) || (rc = runs_load(a, err)) ||
	    (rc = dicts_load(a, err)) || (rc = packs_open(a, err)))
		goto fail;
	if (!(flags & ARCHIVE_OPEN_RDONLY) && (rc = archive_commit(a, err)))
		goto fail;
	*out = a;
	return 0;
fail:
	archive_close(a);
	return rc;
}

void archive_set_tune(struct archive *a, const struct archive_tune *t)
{
	if (t->level >= 1 && t->level <= 22)
		a->tune.level = t->level;
	if (t->frame_raw >= 4096 && t->frame_raw <= AFMT_FRAME_RAW_MAX)
		a->tune.frame_raw = t->frame_raw;
	a->tune.no_dict = t->no_dict;
	if (t->pack_max >= 4096)
		a->tune.pack_max = t->pack_max;
}

void archive_close(struct archive *a)
{
	if (!a)
		return;
	if (a->txn)
		mdb_txn_abort(a->txn);
	if (a->env)
		mdb_env_close(a->env);
	if (a->wfd >= 0)
		close(a->wfd);
	if (a->rfd >= 0)
		close(a->rfd);
	if (a->lock_fd >= 0)
		close(a->lock_fd);
	for (unsigned i = 0; i < a->ndicts; i++) {
		free(a->dicts[i].bytes);
		ZSTD_freeCDict(a->dicts[i].cd);
		ZSTD_freeDDict(a->dicts[i].dd);
	}
	msghash_free(&a->h);
	ZSTD_freeCCtx(a->cctx);
	ZSTD_freeDCtx(a->dctx);
	free(a->fbuf);
	free(a->cbuf);
	free(a->rraw);
	free(a->rcomp);
	free(a->samp);
	free(a->sampsz);
	free(a->runs_ok);
	free(a->dir);
	free(a);
}

/* ---- writing messages ---- */

int archive_msg_begin(struct archive *a, struct mf_error *err)
{
	if (a->flags & ARCHIVE_OPEN_RDONLY) {
		mf_err_set(err, -EROFS, "archive %s: opened read-only", a->dir);
		return -EROFS;
	}
	if (a->in_msg) {
		mf_err_set(err, -EBUSY, "archive %s: a message is already open", a->dir);
		return -EBUSY;
	}
	if (a->lost.code) {
		mf_err_set(err, a->lost.code, "%s", a->lost.msg);
		return a->lost.code;
	}
	a->in_msg = 1;
	a->m_size = 0;
	a->m_frames = 1;
	a->m_pack = a->wpack;
	a->m_off = AFMT_PACK_HDR;
	a->m_skip = 0;
	a->m_dict = 0;
	a->m_sampn0 = a->sampn;
	msghash_begin(&a->h);
	return 0;
}

static void sample(struct archive *a, const uint8_t *p, size_t n)
{
	size_t have = a->sampn - a->m_sampn0, k;

	if (a->tune.no_dict || a->ndicts >= ARC_DICTS_MAX || have >= ARCHIVE_SAMPLE_MSG ||
	    a->nsamp >= ARCHIVE_SAMPLE_N || a->stored < a->sample_from)
		return;
	if (!a->samp) {
		a->samp = malloc(ARCHIVE_SAMPLE_CAP);
		a->sampsz = malloc(ARCHIVE_SAMPLE_N * sizeof(*a->sampsz));
		if (!a->samp || !a->sampsz) {
			free(a->samp);
			free(a->sampsz);
			a->samp = NULL;
			a->sampsz = NULL;
			a->tune.no_dict = 1;
			return;
		}
	}
	k = ARCHIVE_SAMPLE_MSG - have;
	if (k > n)
		k = n;
	if (k > ARCHIVE_SAMPLE_CAP - a->sampn)
		k = ARCHIVE_SAMPLE_CAP - a->sampn;
	memcpy(a->samp + a->sampn, p, k);
	a->sampn += k;
}

int archive_msg_data(struct archive *a, const void *data, size_t n, struct mf_error *err)
{
	const uint8_t *p = data;
	int rc;

	if (!a->in_msg) {
		mf_err_set(err, -EINVAL, "archive %s: no message open", a->dir);
		return -EINVAL;
	}
	if (a->m_size + n > AFMT_MSG_MAX) {
		mf_err_set(err, -EFBIG, "archive %s: message too large", a->dir);
		return -EFBIG;
	}
	msghash_update(&a->h, p, n);
	sample(a, p, n);
	while (n) {
		size_t k;

		if (a->fn >= a->tune.frame_raw && a->m_size && a->m_skip && a->m_frames == 1 &&
		    a->m_pack == a->wpack && a->m_off == open_off(a)) {
			if ((rc = frame_split(a, err)))
				return rc;
		} else if (a->fn >= a->tune.frame_raw && (rc = arc_frame_flush(a, err))) {
			return rc;
		}
		if (!a->fn) {
			if (a->m_size)
				a->m_frames++; /* the message goes on in a new frame */
			a->fdict = a->tune.no_dict ? 0 : a->dict_cur;
		}
		if (!a->m_size) {
			/* Where its first byte lands: the open frame, written at wlen. */
			a->m_pack = a->wpack;
			a->m_off = open_off(a);
			a->m_skip = (uint32_t)a->fn;
			a->m_dict = a->fdict;
		}
		k = a->tune.frame_raw - a->fn;
		if (k > n)
			k = n;
		memcpy(a->fbuf + a->fn, p, k);
		a->fn += k;
		a->m_size += k;
		p += k;
		n -= k;
	}
	return 0;
}

void archive_msg_abort(struct archive *a)
{
	/* Bytes already in written frames stay as dead space; the open frame
	 * forgets them if they are all there. */
	if (!a->in_msg)
		return;
	if (a->m_size && a->m_frames == 1 && a->m_off == open_off(a) && a->m_pack == a->wpack) {
		a->fn = a->m_skip;
	} else if (a->m_size) {
		/* it starts a frame (frame_split): cut its frames off again */
		if (!a->m_skip && a->m_pack == a->wpack && a->wfd >= 0 &&
		    a->m_off >= a->wcommitted && a->m_off <= a->wlen &&
		    ftruncate(a->wfd, (off_t)a->m_off) == 0) {
			a->wlen = a->m_off;
			if (a->rc_pack == a->wpack && a->rc_off >= a->m_off)
				a->rc_valid = 0;
		}
		a->fn = 0;
	}
	a->sampn = a->m_sampn0;
	a->in_msg = 0;
}

int archive_msg_end(struct archive *a, uint8_t hash[32], uint64_t *size, int *dup,
                    struct mf_error *err)
{
	struct afmt_rec r;
	int rc;

	if (!a->in_msg) {
		mf_err_set(err, -EINVAL, "archive %s: no message open", a->dir);
		return -EINVAL;
	}
	msghash_end(&a->h, hash, NULL);
	if (size)
		*size = a->m_size;
	rc = arc_get(a, a->objects, AFMT_OBJECT, hash, 32, &r, err);
	if (rc == 0) {
		/* Stored already: forget these bytes (dead space if a frame with
		 * them was written already). */
		archive_msg_abort(a);
		if (dup)
			*dup = 1;
		return 0;
	}
	if (rc != -ENOENT && rc != -EIO && rc != -EINVAL) {
		archive_msg_abort(a);
		return rc;
	}
	/* not stored, or its record is damaged: store it (again) */
	if (dup)
		*dup = 0;
	r.u.obj.pack = a->m_pack;
	r.u.obj.frame_off = a->m_off;
	r.u.obj.skip = a->m_skip;
	r.u.obj.nframes = a->m_frames;
	r.u.obj.size = a->m_size;
	r.u.obj.dict = a->m_dict;
	a->in_msg = 0;
	a->stored++;
	if (a->m_size > 0 && a->sampn > a->m_sampn0 && a->nsamp < ARCHIVE_SAMPLE_N)
		a->sampsz[a->nsamp++] = a->sampn - a->m_sampn0;
	else
		a->sampn = a->m_sampn0;
	if ((rc = arc_put(a, a->objects, AFMT_OBJECT, hash, 32, &r, err)))
		return rc;
	if (!a->tune.no_dict && a->nsamp &&
	    (a->nsamp >= a->samp_goal || a->sampn + ARCHIVE_SAMPLE_MSG > ARCHIVE_SAMPLE_CAP) &&
	    (rc = dict_train(a, err)))
		return rc;
	return maybe_commit(a, err);
}

int archive_has(struct archive *a, const uint8_t hash[32], struct mf_error *err)
{
	struct afmt_rec r;
	int rc = arc_get(a, a->objects, AFMT_OBJECT, hash, 32, &r, err);

	if (rc == -ENOENT)
		return 0;
	return rc ? rc : 1;
}

/* ---- reading ---- */

int arc_frame_decode(ZSTD_DCtx *dctx, struct archive *a, const uint8_t *p, size_t n, uint32_t pack,
                     const void *dict, size_t dictn, ZSTD_DDict *dd, uint8_t *raw, size_t cap,
                     size_t *rawn, size_t *used, struct mf_error *err)
{
	struct afmt_frame f;
	unsigned long long cs;
	size_t d;
	int rc;

	(void)a;
	if ((rc = afmt_frame_hdr_decode(p, n, pack, &f, err)))
		return rc;
	if (n - AFMT_FRAME_HDR < f.comp_len) {
		mf_err_set(err, -EIO, "frame cut short (%zu of %u bytes)", n - AFMT_FRAME_HDR,
		           f.comp_len);
		return -EIO;
	}
	if (afmt_crc32c(0, p + AFMT_FRAME_HDR, f.comp_len) != f.crc) {
		mf_err_set(err, -EIO, "frame checksum mismatch");
		return -EIO;
	}
	if (f.raw_len > cap) {
		mf_err_set(err, -EIO, "frame larger than its buffer");
		return -EIO;
	}
	cs = ZSTD_getFrameContentSize(p + AFMT_FRAME_HDR, f.comp_len);
	if (cs != f.raw_len) {
		mf_err_set(err, -EIO, "zstd frame size does not match its header");
		return -EIO;
	}
	if (f.dict && !dd && !dict) {
		mf_err_set(err, -EIO, "frame names dictionary %u, which the archive lacks", f.dict);
		return -EIO;
	}
	ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
	if (f.dict && dd)
		d = ZSTD_decompress_usingDDict(dctx, raw, f.raw_len, p + AFMT_FRAME_HDR, f.comp_len,
		                               dd);
	else if (f.dict)
		d = ZSTD_decompress_usingDict(dctx, raw, f.raw_len, p + AFMT_FRAME_HDR, f.comp_len,
		                              dict, dictn);
	else
		d = ZSTD_decompressDCtx(dctx, raw, f.raw_len, p + AFMT_FRAME_HDR, f.comp_len);
	if (ZSTD_isError(d) || d != f.raw_len) {
		mf_err_set(err, -EIO, "zstd: %s",
		           ZSTD_isError(d) ? ZSTD_getErrorName(d) : "short output");
		return -EIO;
	}
	*rawn = d;
	*used = AFMT_FRAME_HDR + f.comp_len;
	return 0;
}

int archive_frame_decode(const uint8_t *p, size_t n, uint32_t pack, const void *dict, size_t dictn,
                         uint8_t *raw, size_t cap, size_t *rawn, size_t *used, struct mf_error *err)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	int rc;

	if (!d) {
		mf_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, 21);
	rc = arc_frame_decode(d, NULL, p, n, pack, dict, dictn, NULL, raw, cap, rawn, used, err);
	ZSTD_freeDCtx(d);
	return rc;
}

/* Loads the frame at (pack, off) into the read cache. */
int arc_frame_load(struct archive *a, uint32_t pack, uint64_t off, struct mf_error *err)
{
	uint8_t hdr[AFMT_FRAME_HDR];
	struct afmt_frame f;
	struct arc_dict *d = NULL;
	size_t rawn, used;
	ssize_t got;
	int fd, rc;

	if (a->rc_valid && a->rc_pack == pack && a->rc_off == off)
		return 0;
	a->rc_valid = 0;
	if ((fd = arc_pack_fd(a, pack, err)) < 0)
		return fd;
	got = pread(fd, hdr, sizeof(hdr), (off_t)off);
	if (got != (ssize_t)sizeof(hdr)) {
		mf_err_set(err, -EIO, "pack %u offset %llu: %s", pack, (unsigned long long)off,
		           got < 0 ? strerror(errno) : "frame header past the end of the pack");
		return -EIO;
	}
	if ((rc = afmt_frame_hdr_decode(hdr, sizeof(hdr), pack, &f, err))) {
		char m[MF_ERR_MAX];

		snprintf(m, sizeof(m), "%s", err->msg);
		mf_err_set(err, rc, "pack %u offset %llu: %s", pack, (unsigned long long)off, m);
		return rc;
	}
	memcpy(a->rcomp, hdr, sizeof(hdr));
	got = pread(fd, a->rcomp + AFMT_FRAME_HDR, f.comp_len, (off_t)(off + AFMT_FRAME_HDR));
	if (got != (ssize_t)f.comp_len) {
		mf_err_set(err, -EIO, "pack %u offset %llu: frame cut short", pack,
		           (unsigned long long)off);
		return -EIO;
	}
	if (f.dict && (!(d = arc_dict_find(a, f.dict)) || !arc_dict_ddict(d))) {
		mf_err_set(err, -EIO, "pack %u offset %llu: dictionary %u missing or damaged", pack,
		           (unsigned long long)off, f.dict);
		return -EIO;
	}
	rc = arc_frame_decode(a->dctx, a, a->rcomp, AFMT_FRAME_HDR + f.comp_len, pack, NULL, 0,
	                      d ? d->dd : NULL, a->rraw, AFMT_FRAME_RAW_MAX, &rawn, &used, err);
	if (rc) {
		char m[MF_ERR_MAX];

		snprintf(m, sizeof(m), "%s", err->msg);
		mf_err_set(err, rc, "pack %u offset %llu: %s", pack, (unsigned long long)off, m);
		return rc;
	}
	a->rc_valid = 1;
	a->rc_pack = pack;
	a->rc_off = off;
	a->rc_next = off + used;
	a->rrawn = rawn;
	return 0;
}

int arc_read_object(struct archive *a, const uint8_t hash[32], const struct afmt_object *o,
                    archive_out_fn fn, void *ctx, struct mf_error *err)
{
	uint64_t left = o->size, off = o->frame_off;
	uint32_t skip = o->skip, frames = 0;
	uint8_t got[32];
	int rc;

	if (++a->map_reads % 4096 == 0)
		arc_map_release(a);
	if (o->size && o->pack == a->wpack && a->fn && (a->wfd < 0 || o->frame_off >= a->wlen) &&
	    (rc = arc_frame_flush(a, err)))
		return rc;
	msghash_begin(&a->h);
	while (left) {
		size_t take;

		if (frames++ >= o->nframes) {
			mf_err_set(err, -EIO, "message runs past the %u frames its record names",
			           o->nframes);
			return -EIO;
		}
		if ((rc = arc_frame_load(a, o->pack, off, err)))
			return rc;
		if (skip > a->rrawn || (skip == a->rrawn && left)) {
			mf_err_set(err, -EIO, "pack %u offset %llu: message starts past its frame",
			           o->pack, (unsigned long long)off);
			return -EIO;
		}
		take = a->rrawn - skip;
		if (take > left)
			take = (size_t)left;
		msghash_update(&a->h, a->rraw + skip, take);
		if (fn && (rc = fn(ctx, a->rraw + skip, take)))
			return rc;
		left -= take;
		skip = 0;
		off = a->rc_next;
	}
	msghash_end(&a->h, got, NULL);
	if (memcmp(got, hash, 32)) {
		mf_err_set(err, -EIO, "content does not match its hash (pack %u offset %llu)",
		           o->pack, (unsigned long long)o->frame_off);
		return -EIO;
	}
	return 0;
}

int archive_get(struct archive *a, const uint8_t hash[32], archive_out_fn fn, void *ctx,
                struct mf_error *err)
{
	struct afmt_rec r;
	int rc;

	if (a->in_msg) {
		mf_err_set(err, -EBUSY, "archive %s: a message is being written", a->dir);
		return -EBUSY;
	}
	rc = arc_get(a, a->objects, AFMT_OBJECT, hash, 32, &r, err);
	if (rc == -ENOENT)
		mf_err_set(err, rc, "message not in the archive");
	if (rc)
		return rc;
	return arc_read_object(a, hash, &r.u.obj, fn, ctx, err);
}

/* ---- runs ---- */

int archive_run_begin(struct archive *a, const char *account, uint64_t time, uint32_t *run,
                      struct mf_error *err)
{
	size_t alen = strlen(account);
	struct afmt_rec r;
	uint8_t key[4];
	uint32_t acct;
	int rc;

	if (!alen || alen > AFMT_ACCOUNT_MAX) {
		mf_err_set(err, -EINVAL, "archive %s: account name empty or too long", a->dir);
		return -EINVAL;
	}
	rc = arc_get(a, a->accts, AFMT_COUNTER, account, alen, &r, err);
	if (rc == -ENOENT || rc == -EIO) {
		/* new (or its record is damaged: give it a new id) */
		if ((rc = counter_next(a, "acct", &acct, err)))
			return rc;
		r.u.counter = acct;
		if ((rc = arc_put(a, a->accts, AFMT_COUNTER, account, alen, &r, err)))
			return rc;
	} else if (rc) {
		return rc;
	} else {
		acct = r.u.counter;
	}
	if ((rc = counter_next(a, "run", run, err)))
		return rc;
	r.u.run.time = time;
	r.u.run.acct = acct;
	r.u.run.committed = 0;
	r.u.run.alen = (uint16_t)alen;
	memcpy(r.u.run.account, account, alen);
	afmt_put32(key, *run);
	if ((rc = arc_put(a, a->runs, AFMT_RUN, key, 4, &r, err)))
		return rc;
	a->open_run = *run;
	return 0;
}

int archive_run_commit(struct archive *a, uint32_t run, struct mf_error *err)
{
	struct afmt_rec r;
	uint8_t key[4];
	int rc;

	afmt_put32(key, run);
	if ((rc = arc_get(a, a->runs, AFMT_RUN, key, 4, &r, err)))
		return rc;
	r.u.run.committed = 1;
	if ((rc = arc_put(a, a->runs, AFMT_RUN, key, 4, &r, err)) || (rc = archive_commit(a, err)))
		return rc;
	if (runs_add(a, run)) {
		mf_err_set(err, -ENOMEM, "archive %s: out of memory", a->dir);
		return -ENOMEM;
	}
	if (a->open_run == run)
		a->open_run = 0;
	return 0;
}

int archive_run_each(struct archive *a, int (*fn)(void *ctx, const struct archive_run_info *r),
                     void *ctx, struct mf_error *err)
{
	struct archive_run_info *ri;
	MDB_cursor *c;
	MDB_val k, v;
	struct afmt_rec r;
	int rc, stop = 0;

	if ((rc = arc_txn(a, err)))
		return rc;
	if (!(ri = malloc(sizeof(*ri))))
		return -ENOMEM;
	if ((rc = mdb_cursor_open(a->txn, a->runs, &c))) {
		free(ri);
		return arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
	}
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc && !stop;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		struct mf_error e2;

		if (afmt_rec_decode(AFMT_RUN, k.mv_data, k.mv_size, v.mv_data, v.mv_size, &r, &e2))
			continue;
		ri->id = afmt_get32(k.mv_data);
		ri->time = r.u.run.time;
		ri->committed = r.u.run.committed != 0;
		memcpy(ri->account, r.u.run.account, (size_t)r.u.run.alen + 1);
		stop = fn(ctx, ri);
	}
	mdb_cursor_close(c);
	free(ri);
	return 0;
}

struct latest_ctx {
	const char *account;
	uint64_t before;
	uint32_t run;
	uint64_t time;
};

static int latest_cb(void *ctx, const struct archive_run_info *r)
{
	struct latest_ctx *l = ctx;

	if (r->committed && (!l->account || !strcmp(l->account, r->account)) &&
	    r->time <= l->before && (!l->run || r->time >= l->time)) {
		l->run = r->id;
		l->time = r->time;
	}
	return 0;
}

int archive_run_asof(struct archive *a, const char *account, uint64_t time, uint32_t *run,
                     struct mf_error *err)
{
	struct latest_ctx l = {account, time, 0, 0};
	int rc = archive_run_each(a, latest_cb, &l, err);

	if (rc)
		return rc;
	if (!l.run) {
		mf_err_set(err, -ENOENT, "archive %s: no complete backup run%s", a->dir,
		           time == UINT64_MAX ? "" : " by then");
		return -ENOENT;
	}
	*run = l.run;
	return 0;
}

int archive_run_latest(struct archive *a, const char *account, uint32_t *run, struct mf_error *err)
{
	return archive_run_asof(a, account, UINT64_MAX, run, err);
}

/* ---- mailboxes ---- */

int archive_mbox_begin(struct archive *a, uint32_t run, const char *name, size_t nlen,
                       uint32_t uidvalidity, uint32_t *mbid, struct mf_error *err)
{
	struct afmt_rec r;
	uint8_t key[4 + 32], rk[8];
	unsigned hl = 32;
	uint32_t acct;
	int rc;

	if (nlen > AFMT_NAME_MAX) {
		mf_err_set(err, -ENAMETOOLONG, "archive %s: mailbox name too long", a->dir);
		return -ENAMETOOLONG;
	}
	afmt_put32(rk, run);
	if ((rc = arc_get(a, a->runs, AFMT_RUN, rk, 4, &r, err)))
		return rc == -ENOENT ? (mf_err_set(err, rc, "run %u unknown", run), rc) : rc;
	acct = r.u.run.acct;
	afmt_put32(key, acct);
	EVP_Digest(name, nlen, key + 4, &hl, EVP_sha256(), NULL);
	rc = arc_get(a, a->mbnames, AFMT_COUNTER, key, sizeof(key), &r, err);
	if (rc == 0) {
		*mbid = r.u.counter;
	} else if (rc == -ENOENT || rc == -EIO) {
		uint8_t mk[4];

		if ((rc = counter_next(a, "mbox", mbid, err)))
			return rc;
		r.u.counter = *mbid;
		if ((rc = arc_put(a, a->mbnames, AFMT_COUNTER, key, sizeof(key), &r, err)))
			return rc;
		r.u.mbox.acct = acct;
		r.u.mbox.nlen = (uint16_t)nlen;
		memcpy(r.u.mbox.name, name, nlen);
		afmt_put32(mk, *mbid);
		if ((rc = arc_put(a, a->mboxes, AFMT_MBOX, mk, 4, &r, err)))
			return rc;
	} else {
		return rc;
	}
	afmt_put32(rk + 4, *mbid);
	r.u.uidvalidity = uidvalidity;
	return arc_put(a, a->runmb, AFMT_RUNMB, rk, 8, &r, err);
}

int arc_mbox_name(struct archive *a, uint32_t mbid, struct afmt_rec *r, struct mf_error *err)
{
	uint8_t mk[4];

	afmt_put32(mk, mbid);
	return arc_get(a, a->mboxes, AFMT_MBOX, mk, 4, r, err);
}

int archive_mbox_each(struct archive *a, uint32_t run,
                      int (*fn)(void *ctx, const struct archive_mbox_info *mb), void *ctx,
                      struct mf_error *err)
{
	struct afmt_rec *r;
	MDB_cursor *c;
	MDB_val k, v;
	uint8_t key[8];
	int rc, stop = 0;

	if ((rc = arc_txn(a, err)))
		return rc;
	if (!arc_run_visible(a, run)) {
		mf_err_set(err, -ENOENT, "archive %s: run %u is not a complete run", a->dir, run);
		return -ENOENT;
	}
	if (!(r = malloc(sizeof(*r))))
		return -ENOMEM;
	if ((rc = mdb_cursor_open(a->txn, a->runmb, &c))) {
		free(r);
		return arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
	}
	afmt_put32(key, run);
	afmt_put32(key + 4, 0);
	k.mv_size = 8;
	k.mv_data = key;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); !rc && !stop;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		struct archive_mbox_info mi;
		struct mf_error e2;
		uint32_t uidv;

		if (k.mv_size != 8 || afmt_get32(k.mv_data) != run)
			break;
		mi.mbid = afmt_get32((const uint8_t *)k.mv_data + 4);
		if (afmt_rec_decode(AFMT_RUNMB, k.mv_data, 8, v.mv_data, v.mv_size, r, &e2))
			continue; /* verify names it */
		uidv = r->u.uidvalidity;
		if (arc_mbox_name(a, mi.mbid, r, &e2))
			continue;
		mi.uidvalidity = uidv;
		mi.name = r->u.mbox.name;
		mi.nlen = r->u.mbox.nlen;
		stop = fn(ctx, &mi);
	}
	mdb_cursor_close(c);
	free(r);
	return 0;
}

/* ---- per-UID versions ---- */

static int runmb_uidv(struct archive *a, uint32_t run, uint32_t mbid, uint32_t *uidv,
                      struct mf_error *err)
{
	struct afmt_rec r;
	uint8_t k[8];
	int rc;

	afmt_put32(k, run);
	afmt_put32(k + 4, mbid);
	rc = arc_get(a, a->runmb, AFMT_RUNMB, k, 8, &r, err);
	if (rc == -ENOENT)
		mf_err_set(err, rc, "mailbox %u is not in run %u", mbid, run);
	if (!rc)
		*uidv = r.u.uidvalidity;
	return rc;
}

/* The latest visible version of uid at or before run: 0 (in *r), -ENOENT. */
static int version_find(struct archive *a, uint32_t run, uint32_t mbid, uint32_t uidv, uint32_t uid,
                        struct afmt_rec *r, struct mf_error *err)
{
	MDB_cursor *c;
	MDB_val k, v;
	uint8_t key[16];
	int rc, found = -ENOENT;

	if ((rc = arc_txn(a, err)))
		return rc;
	if ((rc = mdb_cursor_open(a->txn, a->msgs, &c)))
		return arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
	afmt_put32(key, mbid);
	afmt_put32(key + 4, uidv);
	afmt_put32(key + 8, uid);
	afmt_put32(key + 12, run);
	k.mv_size = 16;
	k.mv_data = key;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	if (rc == MDB_NOTFOUND)
		rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
	else if (!rc && (k.mv_size != 16 || memcmp(k.mv_data, key, 16) > 0))
		rc = mdb_cursor_get(c, &k, &v, MDB_PREV);
	for (; !rc; rc = mdb_cursor_get(c, &k, &v, MDB_PREV)) {
		struct mf_error e2;
		uint32_t vr;

		if (k.mv_size != 16 || memcmp(k.mv_data, key, 12))
			break;
		vr = afmt_get32((const uint8_t *)k.mv_data + 12);
		if (vr > run || !arc_run_visible(a, vr))
			continue;
		if (afmt_rec_decode(AFMT_MSG, k.mv_data, 16, v.mv_data, v.mv_size, r, &e2))
			continue; /* damaged: verify names it */
		found = 0;
		break;
	}
	mdb_cursor_close(c);
	return found;
}

static void meta_from(struct archive_msgmeta *m, const struct afmt_msg *v)
{
	memcpy(m->hash, v->hash, 32);
	m->size = v->size;
	m->internaldate = v->internaldate;
	m->flags = v->flags;
	memcpy(m->keywords, v->keywords, (size_t)v->kwlen + 1);
}

int archive_uid_put(struct archive *a, uint32_t run, uint32_t mbid, uint32_t uid,
                    const struct archive_msgmeta *m, struct mf_error *err)
{
	struct afmt_rec *r;
	uint8_t key[16];
	uint32_t uidv;
	size_t kwlen = strnlen(m->keywords, sizeof(m->keywords));
	int rc;

	if (kwlen > AFMT_KW_MAX) {
		mf_err_set(err, -EINVAL, "archive %s: keywords too long", a->dir);
		return -EINVAL;
	}
	if ((rc = runmb_uidv(a, run, mbid, &uidv, err)))
		return rc;
	if ((rc = archive_has(a, m->hash, err)) <= 0) {
		if (!rc)
			mf_err_set(err, -ENOENT, "archive %s: uid %u: content not stored", a->dir,
			           uid);
		return rc ? rc : -ENOENT;
	}
	if (!(r = malloc(sizeof(*r))))
		return -ENOMEM;
	rc = version_find(a, run, mbid, uidv, uid, r, err);
	if (rc == 0 && r->u.msg.kind == AFMT_MSG_PRESENT && !memcmp(r->u.msg.hash, m->hash, 32) &&
	    r->u.msg.flags == m->flags && r->u.msg.internaldate == m->internaldate &&
	    r->u.msg.size == m->size && r->u.msg.kwlen == kwlen &&
	    !memcmp(r->u.msg.keywords, m->keywords, kwlen)) {
		free(r);
		return 0; /* unchanged */
	}
	if (rc && rc != -ENOENT) {
		free(r);
		return rc;
	}
	r->u.msg.kind = AFMT_MSG_PRESENT;
	r->u.msg.flags = m->flags;
	r->u.msg.internaldate = m->internaldate;
	r->u.msg.size = m->size;
	memcpy(r->u.msg.hash, m->hash, 32);
	r->u.msg.kwlen = (uint16_t)kwlen;
	memcpy(r->u.msg.keywords, m->keywords, kwlen);
	afmt_put32(key, mbid);
	afmt_put32(key + 4, uidv);
	afmt_put32(key + 8, uid);
	afmt_put32(key + 12, run);
	rc = arc_put(a, a->msgs, AFMT_MSG, key, 16, r, err);
	free(r);
	return rc ? rc : maybe_commit(a, err);
}

int archive_uid_delete(struct archive *a, uint32_t run, uint32_t mbid, uint32_t uid,
                       struct mf_error *err)
{
	struct afmt_rec *r;
	uint8_t key[16];
	uint32_t uidv;
	int rc;

	if ((rc = runmb_uidv(a, run, mbid, &uidv, err)))
		return rc;
	if (!(r = malloc(sizeof(*r))))
		return -ENOMEM;
	rc = version_find(a, run, mbid, uidv, uid, r, err);
	if (rc || r->u.msg.kind != AFMT_MSG_PRESENT) {
		free(r);
		return rc == -ENOENT ? 0 : rc;
	}
	r->u.msg.kind = AFMT_MSG_DELETED; /* the rest says what was deleted */
	afmt_put32(key, mbid);
	afmt_put32(key + 4, uidv);
	afmt_put32(key + 8, uid);
	afmt_put32(key + 12, run);
	rc = arc_put(a, a->msgs, AFMT_MSG, key, 16, r, err);
	free(r);
	return rc ? rc : maybe_commit(a, err);
}

int archive_uid_get(struct archive *a, uint32_t run, uint32_t mbid, uint32_t uid,
                    struct archive_msgmeta *m, struct mf_error *err)
{
	struct afmt_rec *r;
	uint32_t uidv;
	int rc;

	if ((rc = runmb_uidv(a, run, mbid, &uidv, err)))
		return rc;
	if (!(r = malloc(sizeof(*r))))
		return -ENOMEM;
	rc = version_find(a, run, mbid, uidv, uid, r, err);
	if (!rc && r->u.msg.kind != AFMT_MSG_PRESENT)
		rc = -ENOENT;
	if (!rc)
		meta_from(m, &r->u.msg);
	free(r);
	return rc;
}

int archive_uid_each(struct archive *a, uint32_t run, uint32_t mbid,
                     int (*fn)(void *ctx, uint32_t uid, const struct archive_msgmeta *m), void *ctx,
                     struct mf_error *err)
{
	struct afmt_rec *r;
	struct archive_msgmeta *best;
	MDB_cursor *c;
	MDB_val k, v;
	uint8_t key[16];
	uint32_t uidv, cur = 0;
	int rc, have = 0, stop = 0;

	if ((rc = runmb_uidv(a, run, mbid, &uidv, err)))
		return rc;
	r = malloc(sizeof(*r));
	best = malloc(sizeof(*best));
	if (!r || !best) {
		free(r);
		free(best);
		return -ENOMEM;
	}
	if ((rc = mdb_cursor_open(a->txn, a->msgs, &c))) {
		free(r);
		free(best);
		return arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
	}
	afmt_put32(key, mbid);
	afmt_put32(key + 4, uidv);
	memset(key + 8, 0, 8);
	k.mv_size = 16;
	k.mv_data = key;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); !rc && !stop;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		const uint8_t *kp = k.mv_data;
		struct mf_error e2;
		uint32_t uid, vr;

		if (k.mv_size != 16 || memcmp(kp, key, 8))
			break;
		uid = afmt_get32(kp + 8);
		vr = afmt_get32(kp + 12);
		if (uid != cur) {
			if (have == 1 || have == 3)
				stop = fn(ctx, cur, have == 1 ? best : NULL);
			cur = uid;
			have = 0;
		}
		if (stop || vr > run || !arc_run_visible(a, vr))
			continue;
		if (afmt_rec_decode(AFMT_MSG, kp, 16, v.mv_data, v.mv_size, r, &e2)) {
			have = 3; /* damaged: unknown unless a later version says */
			continue;
		}
		/* versions ascend by run: the last visible one wins */
		have = r->u.msg.kind == AFMT_MSG_PRESENT ? 1 : 2;
		if (have == 1)
			meta_from(best, &r->u.msg);
	}
	if (!stop && (have == 1 || have == 3))
		fn(ctx, cur, have == 1 ? best : NULL);
	mdb_cursor_close(c);
	free(r);
	free(best);
	return 0;
}
