/*
 * archive_pack — the archive's writer (see archive.h): dictionaries (loading,
 * training from sampled mail), packs (creating, reopening the last one and
 * cutting back a torn tail), frames (compressing and appending the open
 * frame) and messages streamed in (archive_msg_*).
 *
 * Not for: reading frames back (archive_read.c), runs and versions
 * (archive_runs.c), commits (archive.c).
 */
#include "store/archive_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

int arc_dicts_load(struct archive *a, struct mf_error *err)
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

		if (arc_rec_open(a, a->dicts_db, AFMT_DICT, k.mv_data, k.mv_size, v.mv_data,
		                 v.mv_size, &r, &e2))
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
	if (d->cd && d->cd_level != a->tune.level) {
		struct mf_error e2;

		/* frames in flight may use it still */
		if (arc_zp_reap(a, 1, &e2))
			return NULL;
	}
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
	cap = n + 16 + ACRYPT_OVERHEAD;
	{
		uint8_t *rec = malloc(cap);
		size_t pre = a->crypt ? ACRYPT_NONCE : 0;
		MDB_val k = {4, key}, v;

		if (!rec) {
			free(buf);
			return 0;
		}
		/* dictionaries are trained from mail: content, sealed like it */
		v.mv_size = afmt_dict_encode(key, 4, buf, n, rec + pre);
		v.mv_data = rec;
		if (a->crypt) {
			if (arc_val_seal(a, AFMT_DICT, key, 4, rec, v.mv_size)) {
				free(rec);
				free(buf);
				return 0; /* only costs compression */
			}
			v.mv_size += ACRYPT_OVERHEAD;
		}
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
int arc_fcache_fd(struct archive *a, struct arc_fcache *c, uint32_t pack, struct mf_error *err)
{
	char path[4200];
	uint8_t hdr[AFMT_PACK_HDR];
	int fd, rc;

	if (a->wfd >= 0 && pack == a->wpack)
		return a->wfd;
	if (c->fd >= 0 && c->fdpack == pack)
		return c->fd;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
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
	c->fd = fd;
	c->fdpack = pack;
	return fd;
}

int arc_pack_fd(struct archive *a, uint32_t pack, struct mf_error *err)
{
	return arc_fcache_fd(a, &a->rc, pack, err);
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

int arc_pack_write(struct archive *a, const uint8_t *p, size_t n, uint64_t off)
{
	return write_all(a->wfd, p, n, off);
}

int arc_pack_create(struct archive *a, struct mf_error *err)
{
	return pack_new(a, err);
}

/* Hands the open frame's first n bytes to the compressor (archive_zpool.c)
 * as the next frame, with the open frame's dictionary; what is after them
 * stays open. */
static int frame_write(struct archive *a, size_t n, struct mf_error *err)
{
	struct arc_dict *d = a->fdict ? arc_dict_find(a, a->fdict) : NULL;
	ZSTD_CDict *cd = d ? dict_cdict(a, d) : NULL;

	return arc_zp_submit(a, n, cd, cd ? a->fdict : 0, err);
}

/* The open frame becomes the next frame to compress and write. */
int arc_frame_flush(struct archive *a, struct mf_error *err)
{
	if (!a->fn)
		return 0;
	return frame_write(a, a->fn, err);
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
	a->m_skip = 0;
	a->m_seq = a->fseq;
	a->m_off_known = 0;
	return 0;
}

/* On open (writer): the last committed pack is cut back to its committed
 * length (bytes after it were never named by the index: a torn or
 * unfinished write) and becomes the pack new frames go to, if it is not
 * full and its file is whole. */
int arc_packs_open(struct archive *a, struct mf_error *err)
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
		if (arc_rec_open(a, a->packs_db, AFMT_PACK, k.mv_data, 4, v.mv_data, v.mv_size, &r,
		                 &e2) == 0)
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
	a->m_off = AFMT_PACK_HDR; /* an empty message reads nothing */
	a->m_off_known = 1;
	a->m_skip = 0;
	a->m_dict = 0;
	a->m_sampn0 = a->sampn;
	a->m_hashed = 0;
	msghash_begin(&a->h);
	return 0;
}

int archive_msg_begin_hashed(struct archive *a, const uint8_t hash[32], struct mf_error *err)
{
	int rc = archive_msg_begin(a, err);

	if (!rc) {
		a->m_hashed = 1;
		memcpy(a->m_hash, hash, 32);
	}
	return rc;
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
	if (!a->m_hashed)
		msghash_update(&a->h, p, n);
	sample(a, p, n);
	while (n) {
		size_t k;

		if (a->fn >= a->tune.frame_raw && a->m_size && a->m_skip && a->m_frames == 1 &&
		    a->m_seq == a->fseq) {
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
			/* Where its first byte lands: the open frame; its offset
			 * is known once that frame is written (archive_zpool.c). */
			a->m_pack = a->wpack;
			a->m_seq = a->fseq;
			a->m_off_known = 0;
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
	if (a->lost.code) {
		/* everything since the last commit is dropped already */
	} else if (a->m_size && a->m_frames == 1 && a->m_seq == a->fseq) {
		a->fn = a->m_skip;
	} else if (a->m_size) {
		struct mf_error e2;

		/* it starts a frame (frame_split): cut its frames off again,
		 * once they are written and its offset is known */
		if (!a->m_skip && arc_zp_reap(a, 1, &e2) == 0 && a->m_off_known &&
		    a->m_pack == a->wpack && a->wfd >= 0 && a->m_off >= a->wcommitted &&
		    a->m_off <= a->wlen && ftruncate(a->wfd, (off_t)a->m_off) == 0) {
			a->wlen = a->m_off;
			a->rgen++; /* a frame read from there is gone */
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
	uint8_t key[32];
	int rc;

	if (!a->in_msg) {
		mf_err_set(err, -EINVAL, "archive %s: no message open", a->dir);
		return -EINVAL;
	}
	if (a->m_hashed)
		memcpy(hash, a->m_hash, 32);
	else
		msghash_end(&a->h, hash, NULL);
	if (size)
		*size = a->m_size;
	if ((rc = arc_objkey(a, hash, key, err))) {
		archive_msg_abort(a);
		return rc;
	}
	/* a record waiting for its frame (archive_zpool.c) is stored too */
	rc = arc_pend_has(a, key) ? 0 : arc_get(a, a->objects, AFMT_OBJECT, key, 32, &r, err);
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
	/* into the index once the frame it starts in is in the pack */
	if (a->m_off_known)
		rc = arc_put(a, a->objects, AFMT_OBJECT, key, 32, &r, err);
	else
		rc = arc_pend_add(a, key, &r, a->m_seq, err);
	if (rc)
		return rc;
	if (!a->tune.no_dict && a->nsamp &&
	    (a->nsamp >= a->samp_goal || a->sampn + ARCHIVE_SAMPLE_MSG > ARCHIVE_SAMPLE_CAP) &&
	    (rc = dict_train(a, err)))
		return rc;
	return arc_maybe_commit(a, err);
}

int archive_has(struct archive *a, const uint8_t hash[32], struct mf_error *err)
{
	struct afmt_rec r;
	uint8_t key[32];
	int rc = arc_objkey(a, hash, key, err);

	if (!rc && arc_pend_has(a, key))
		return 1;
	if (!rc)
		rc = arc_get(a, a->objects, AFMT_OBJECT, key, 32, &r, err);
	if (rc == -ENOENT)
		return 0;
	return rc ? rc : 1;
}
