/*
 * archive_zpool — frames compressed on helper threads while the writer
 * fills the next ones (see archive_int.h), then written to the pack in the
 * order they were filled.
 *
 * Why. zstd -3 is the slowest stage of the archive's writer: about
 * 300 MB/s on mail here, and with the writer compressing each frame
 * itself everything else it does (copying, index records, dictionary
 * samples, writes) waits for zstd, and zstd for it. bench/archive_ratio,
 * the quick corpus (68.6 MB): the fill takes 175-226 MB/s with the writer
 * alone and 284-313 MB/s with two helpers, the same ratio. A backup from
 * a Dovecot on the same 2-CPU machine does not go faster with helpers
 * (medians 0.45-0.48 s either way: server and client keep both CPUs
 * busy), so by default they start on 4 CPUs or more.
 *
 * How. A frame that is full (or flushed) is handed to a slot with its
 * sequence number and the writer goes on with a fresh buffer. Helpers
 * compress slots, lowest sequence first, each with its own context (a
 * trained dictionary is shared read-only). The writer writes finished
 * slots strictly in sequence (arc_zp_reap): only then is a frame's offset
 * in the pack known, so its header, checksum or seal (whose associated
 * data holds the offset) are made there, on the writer's thread.
 *
 * Offsets. An object record names the offset of the frame its message
 * starts in. A message that ends before that frame is written waits in
 * the pending list, looked up by its key for deduplication, and goes into
 * the index when its frame is written. So the index never names a frame
 * that is not in the pack yet, and a commit, which writes every frame
 * first, puts every pending record before the pack is synced and the
 * index commits: the durability rule of archive.h holds unchanged.
 *
 * Failure. A frame that cannot be compressed or written drops what was
 * written since the last commit (as an index write failure does: the
 * transaction is aborted, "lost" is set for the next call to report).
 *
 * Without helpers (tune.zthreads < 0, fewer than 4 CPUs by default, or no
 * thread could start) a submitted frame is compressed and written at once;
 * records still wait for the open frame as above.
 */
#include "store/archive_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ZP_THREADS_MAX 4

enum { ZS_FREE, ZS_QUEUED, ZS_BUSY, ZS_DONE };

struct zslot {
	uint8_t *raw; /* the frame's raw bytes */
	size_t n;
	uint8_t *out; /* compressed, at out + AFMT_FRAME_HDR + nonce room */
	size_t c;
	uint64_t seq;
	uint32_t dict;
	ZSTD_CDict *cd;
	int level;
	int state;
	char why[160]; /* a compression error */
};

struct arc_zpool {
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	pthread_t th[ZP_THREADS_MAX];
	ZSTD_CCtx *cctx[ZP_THREADS_MAX];
	unsigned nth, nslots;
	int stop;
	size_t ocap;
	struct zslot slot[ZP_THREADS_MAX + 2];
};

struct arc_pend {
	uint8_t key[32];
	struct afmt_rec r;
	uint64_t seq;
};

/* Compresses s with cctx (any thread). */
static void zslot_compress(struct zslot *s, ZSTD_CCtx *cctx, size_t pre)
{
	size_t c;

	ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, s->level);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
	if (s->cd) {
		/* use the dictionary's tables in place: copying them per frame
		 * costs more than the frame at higher levels */
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_forceAttachDict, ZSTD_dictForceAttach);
		ZSTD_CCtx_refCDict(cctx, s->cd);
	}
	c = ZSTD_compress2(cctx, s->out + AFMT_FRAME_HDR + pre,
	                   ZSTD_compressBound(AFMT_FRAME_RAW_MAX), s->raw, s->n);
	s->why[0] = 0;
	if (ZSTD_isError(c)) {
		snprintf(s->why, sizeof(s->why), "zstd: %s", ZSTD_getErrorName(c));
		c = 0;
	}
	s->c = c;
}

struct helper {
	struct arc_zpool *zp;
	unsigned i;
	size_t pre;
};

static void *helper_main(void *arg)
{
	struct arc_zpool *zp = ((struct helper *)arg)->zp;
	unsigned i = ((struct helper *)arg)->i;
	size_t pre = ((struct helper *)arg)->pre;

	free(arg);
	pthread_mutex_lock(&zp->mu);
	for (;;) {
		struct zslot *s = NULL;

		for (unsigned k = 0; k < zp->nslots; k++)
			if (zp->slot[k].state == ZS_QUEUED && (!s || zp->slot[k].seq < s->seq))
				s = &zp->slot[k];
		if (!s) {
			if (zp->stop)
				break;
			pthread_cond_wait(&zp->work, &zp->mu);
			continue;
		}
		s->state = ZS_BUSY;
		pthread_mutex_unlock(&zp->mu);
		zslot_compress(s, zp->cctx[i], pre);
		pthread_mutex_lock(&zp->mu);
		s->state = ZS_DONE;
		pthread_cond_broadcast(&zp->done);
	}
	pthread_mutex_unlock(&zp->mu);
	return NULL;
}

static unsigned helpers_wanted(const struct archive *a)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	if (a->tune.zthreads < 0)
		return 0;
	if (a->tune.zthreads > 0)
		return a->tune.zthreads > ZP_THREADS_MAX ? ZP_THREADS_MAX
		                                         : (unsigned)a->tune.zthreads;
	/* On 2 CPUs a backup from a server on the same machine keeps both
	 * busy already: helpers only add switches (bench: no gain there) */
	return ncpu >= 4 ? 2 : 0;
}

/* The pool, made on the first frame: slots, and helpers unless inline. */
static int zp_make(struct archive *a, struct mf_error *err)
{
	struct arc_zpool *zp = calloc(1, sizeof(*zp));
	unsigned want = helpers_wanted(a);

	if (!zp)
		goto oom;
	pthread_mutex_init(&zp->mu, NULL);
	pthread_cond_init(&zp->work, NULL);
	pthread_cond_init(&zp->done, NULL);
	zp->ocap = AFMT_FRAME_HDR + ZSTD_compressBound(AFMT_FRAME_RAW_MAX) + ACRYPT_OVERHEAD;
	a->zp = zp;
	/* Slots before helpers (they read nslots): two more than helpers, so
	 * the writer fills one while each helper compresses one and one
	 * waits to be written; without helpers one does, compressed and
	 * written at once. */
	zp->nslots = want ? want + 2 : 1;
	for (unsigned k = 0; k < zp->nslots; k++) {
		zp->slot[k].raw = malloc(AFMT_FRAME_RAW_MAX);
		zp->slot[k].out = malloc(zp->ocap);
		if (!zp->slot[k].raw || !zp->slot[k].out)
			goto oom;
	}
	for (unsigned i = 0; i < want; i++) {
		struct helper *h = malloc(sizeof(*h));

		if (!h || !(zp->cctx[i] = ZSTD_createCCtx())) {
			free(h);
			break;
		}
		h->zp = zp;
		h->i = i;
		h->pre = a->crypt ? ACRYPT_NONCE : 0;
		if (pthread_create(&zp->th[i], NULL, helper_main, h)) {
			free(h);
			ZSTD_freeCCtx(zp->cctx[i]);
			zp->cctx[i] = NULL;
			break;
		}
		zp->nth++;
	}
	return 0;
oom:
	mf_err_set(err, -ENOMEM, "archive %s: out of memory for the frame buffers", a->dir);
	return -ENOMEM;
}

void arc_zp_free(struct archive *a)
{
	struct arc_zpool *zp = a->zp;

	if (!zp)
		return;
	pthread_mutex_lock(&zp->mu);
	zp->stop = 1;
	pthread_cond_broadcast(&zp->work);
	pthread_mutex_unlock(&zp->mu);
	for (unsigned i = 0; i < zp->nth; i++) {
		pthread_join(zp->th[i], NULL);
		ZSTD_freeCCtx(zp->cctx[i]);
	}
	for (unsigned k = 0; k < zp->nslots; k++) {
		free(zp->slot[k].raw);
		free(zp->slot[k].out);
	}
	pthread_cond_destroy(&zp->work);
	pthread_cond_destroy(&zp->done);
	pthread_mutex_destroy(&zp->mu);
	free(zp);
	a->zp = NULL;
	free(a->pend);
	a->pend = NULL;
	a->npend = a->cappend = 0;
}

/* ---- pending object records ---- */

int arc_pend_add(struct archive *a, const uint8_t key[32], const struct afmt_rec *r, uint64_t seq,
                 struct mf_error *err)
{
	if (a->npend == a->cappend) {
		size_t cap = a->cappend ? a->cappend * 2 : 64;
		struct arc_pend *p = realloc(a->pend, cap * sizeof(*p));

		if (!p) {
			mf_err_set(err, -ENOMEM, "archive %s: out of memory", a->dir);
			return -ENOMEM;
		}
		a->pend = p;
		a->cappend = cap;
	}
	memcpy(a->pend[a->npend].key, key, 32);
	a->pend[a->npend].r = *r;
	a->pend[a->npend].seq = seq;
	a->npend++;
	return 0;
}

int arc_pend_has(const struct archive *a, const uint8_t key[32])
{
	for (size_t i = 0; i < a->npend; i++)
		if (!memcmp(a->pend[i].key, key, 32))
			return 1;
	return 0;
}

/* Frame seq is at off: the records waiting for it go into the index (they
 * are in sequence order: a message ends after the ones before it). */
static int pend_resolve(struct archive *a, uint64_t seq, uint64_t off, struct mf_error *err)
{
	size_t i = 0;
	int rc;

	while (i < a->npend && a->pend[i].seq == seq) {
		a->pend[i].r.u.obj.frame_off = off;
		if ((rc = arc_put(a, a->objects, AFMT_OBJECT, a->pend[i].key, 32, &a->pend[i].r,
		                  err))) {
			a->npend = 0; /* as the writes before it (arc_lmdb_fail) */
			return rc;
		}
		i++;
	}
	if (i) {
		memmove(a->pend, a->pend + i, (a->npend - i) * sizeof(*a->pend));
		a->npend -= i;
	}
	return 0;
}

/* ---- writing ---- */

/* Drops the writes since the last commit after a frame failed: the next
 * call reports why (a->lost), as after an index write failure. */
static int zp_fail(struct archive *a, int rc, const char *why, struct mf_error *err)
{
	struct arc_zpool *zp = a->zp;

	pthread_mutex_lock(&zp->mu);
	for (;;) {
		int busy = 0;

		for (unsigned k = 0; k < zp->nslots; k++)
			if (zp->slot[k].state == ZS_BUSY)
				busy = 1;
			else
				zp->slot[k].state = ZS_FREE;
		if (!busy)
			break;
		pthread_cond_wait(&zp->done, &zp->mu);
	}
	pthread_mutex_unlock(&zp->mu);
	a->zwrite = a->fseq; /* nothing in flight */
	a->npend = 0;
	a->fn = 0;
	if (a->wfd >= 0 && a->wlen > a->wcommitted &&
	    ftruncate(a->wfd, (off_t)a->wcommitted) == 0) {
		a->wlen = a->wcommitted;
		a->rgen++;
	}
	if (a->txn) {
		mdb_txn_abort(a->txn);
		a->txn = NULL;
	}
	mf_err_set(&a->lost, rc, "archive %s: %s; writes since the last commit were dropped",
	           a->dir, why);
	mf_err_set(err, rc, "%s", a->lost.msg);
	return rc;
}

/* Appends the compressed slot s (sequence a->zwrite) to the pack. */
static int zslot_write(struct archive *a, struct zslot *s, struct mf_error *err)
{
	struct afmt_frame f;
	char why[200];
	size_t c = s->c;
	uint64_t off;
	int rc;

	if (s->why[0]) {
		snprintf(why, sizeof(why), "%s", s->why);
		return zp_fail(a, -EIO, why, err);
	}
	if (a->wfd < 0 && (rc = arc_pack_create(a, err)))
		return zp_fail(a, rc, err->msg, err);
	off = a->wlen;
	f.dict = s->dict;
	f.raw_len = (uint32_t)s->n;
	f.pack = a->wpack;
	if (a->crypt) {
		uint8_t aad[AFMT_FRAME_HDR - 4 + 8];

		/* the header (pack, length, dictionary) and the frame's offset
		 * are bound to it: a frame moved, swapped or resized fails */
		f.comp_len = (uint32_t)(c + ACRYPT_OVERHEAD);
		f.crc = 0;
		f.flags = AFMT_FRAME_SEALED;
		afmt_frame_hdr(s->out, &f);
		memcpy(aad, s->out, AFMT_FRAME_HDR - 4);
		afmt_put64(aad + AFMT_FRAME_HDR - 4, off);
		if (acrypt_seal(a->crypt, aad, sizeof(aad), s->out + AFMT_FRAME_HDR, c))
			return zp_fail(a, -EIO, "encrypting a frame failed", err);
		c += ACRYPT_OVERHEAD;
	} else {
		f.comp_len = (uint32_t)c;
		f.crc = afmt_crc32c(0, s->out + AFMT_FRAME_HDR, c);
		f.flags = 0;
		afmt_frame_hdr(s->out, &f);
	}
	if ((rc = arc_pack_write(a, s->out, AFMT_FRAME_HDR + c, off))) {
		snprintf(why, sizeof(why), "write pack %u: %s", a->wpack, strerror(-rc));
		return zp_fail(a, rc, why, err);
	}
	a->wlen = off + AFMT_FRAME_HDR + c;
	if (a->in_msg && !a->m_off_known && a->m_seq == s->seq) {
		a->m_off = off;
		a->m_off_known = 1;
	}
	a->zwrite++;
	if ((rc = pend_resolve(a, s->seq, off, err)))
		return rc;
	return 0;
}

/* Writes the finished frames in sequence up to (not including) upto;
 * with wait, waits for each, else stops at the first still in flight. */
static int zp_write_upto(struct archive *a, uint64_t upto, int wait, struct mf_error *err)
{
	struct arc_zpool *zp = a->zp;
	int rc;

	while (zp && a->zwrite < upto) {
		struct zslot *s = NULL;
		int done;

		pthread_mutex_lock(&zp->mu);
		for (unsigned k = 0; k < zp->nslots && !s; k++)
			if (zp->slot[k].state != ZS_FREE && zp->slot[k].seq == a->zwrite)
				s = &zp->slot[k];
		while (s && wait && s->state != ZS_DONE)
			pthread_cond_wait(&zp->done, &zp->mu);
		done = s && s->state == ZS_DONE;
		pthread_mutex_unlock(&zp->mu);
		if (!done)
			return 0;
		if ((rc = zslot_write(a, s, err)))
			return rc;
		pthread_mutex_lock(&zp->mu);
		s->state = ZS_FREE;
		pthread_mutex_unlock(&zp->mu);
	}
	return 0;
}

int arc_zp_reap(struct archive *a, int all, struct mf_error *err)
{
	return zp_write_upto(a, a->fseq, all, err);
}

/* A free slot: written frames free theirs; if none is, waits for the
 * oldest frame in flight and writes it. */
static struct zslot *zp_free_slot(struct archive *a, struct mf_error *err)
{
	struct arc_zpool *zp = a->zp;

	for (;;) {
		struct zslot *s = NULL;

		pthread_mutex_lock(&zp->mu);
		for (unsigned k = 0; k < zp->nslots && !s; k++)
			if (zp->slot[k].state == ZS_FREE)
				s = &zp->slot[k];
		pthread_mutex_unlock(&zp->mu);
		if (s)
			return s;
		if (zp_write_upto(a, a->zwrite + 1, 1, err))
			return NULL;
	}
}

int arc_zp_submit(struct archive *a, size_t n, ZSTD_CDict *cd, uint32_t dict, struct mf_error *err)
{
	struct zslot *s;
	uint8_t *raw;
	int rc;

	if (!a->zp && (rc = zp_make(a, err)))
		return rc;
	if ((rc = arc_zp_reap(a, 0, err)))
		return rc;
	if (!(s = zp_free_slot(a, err)))
		return err->code ? err->code : -EIO;
	/* the frame's bytes go with the slot; the slot's buffer becomes the
	 * open frame, holding what was after them */
	raw = s->raw;
	s->raw = a->fbuf;
	a->fbuf = raw;
	memcpy(a->fbuf, s->raw + n, a->fn - n);
	a->fn -= n;
	s->n = n;
	s->seq = a->fseq++;
	s->cd = cd;
	s->dict = dict;
	s->level = a->tune.level;
	if (!a->zp->nth) {
		zslot_compress(s, a->cctx, a->crypt ? ACRYPT_NONCE : 0);
		s->state = ZS_DONE;
		return arc_zp_reap(a, 1, err);
	}
	pthread_mutex_lock(&a->zp->mu);
	s->state = ZS_QUEUED;
	pthread_cond_signal(&a->zp->work);
	pthread_mutex_unlock(&a->zp->mu);
	return 0;
}
