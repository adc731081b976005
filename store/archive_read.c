/*
 * archive_read — the archive's reader (see archive.h): frames decoded and
 * checked (header, CRC, zstd), one decompressed frame cached, messages
 * streamed out and re-hashed (archive_get).
 *
 * Not for: writing (archive_pack.c), the index walk of verify
 * (archive_ops.c).
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

/* ---- reading ---- */

/* An encrypted archive's frame: opened in place, bound to its header and
 * offset. *z, *zn: the zstd bytes. */
static int frame_unseal(struct acrypt *c, uint8_t *p, const struct afmt_frame *f, uint64_t off,
                        const uint8_t **z, size_t *zn, struct mf_error *err)
{
	uint8_t aad[AFMT_FRAME_HDR - 4 + 8];

	if (!(f->flags & AFMT_FRAME_SEALED)) {
		mf_err_set(err, -EIO,
		           "frame is not encrypted in an encrypted archive (tampered with)");
		return -EIO;
	}
	if (f->crc || f->comp_len <= ACRYPT_OVERHEAD) {
		mf_err_set(err, -EIO, "encrypted frame header out of bounds (tampered with)");
		return -EIO;
	}
	memcpy(aad, p, AFMT_FRAME_HDR - 4);
	afmt_put64(aad + AFMT_FRAME_HDR - 4, off);
	if (acrypt_open(c, aad, sizeof(aad), p + AFMT_FRAME_HDR, f->comp_len, zn)) {
		mf_err_set(err, -EIO, "frame fails authentication (tampered with or damaged)");
		return -EIO;
	}
	*z = p + AFMT_FRAME_HDR + ACRYPT_NONCE;
	return 0;
}

int arc_frame_decode(ZSTD_DCtx *dctx, struct acrypt *c, uint8_t *p, size_t n, uint32_t pack,
                     uint64_t off, const void *dict, size_t dictn, ZSTD_DDict *dd, uint8_t *raw,
                     size_t cap, size_t *rawn, size_t *used, struct mf_error *err)
{
	struct afmt_frame f;
	unsigned long long cs;
	const uint8_t *z;
	size_t d, zn;
	int rc;

	if ((rc = afmt_frame_hdr_decode(p, n, pack, &f, err)))
		return rc;
	if (n - AFMT_FRAME_HDR < f.comp_len) {
		mf_err_set(err, -EIO, "frame cut short (%zu of %u bytes)", n - AFMT_FRAME_HDR,
		           f.comp_len);
		return -EIO;
	}
	if (c) {
		if ((rc = frame_unseal(c, p, &f, off, &z, &zn, err)))
			return rc;
	} else if (f.flags & AFMT_FRAME_SEALED) {
		mf_err_set(err, -EIO, "frame is encrypted in an archive that is not");
		return -EIO;
	} else if (afmt_crc32c(0, p + AFMT_FRAME_HDR, f.comp_len) != f.crc) {
		mf_err_set(err, -EIO, "frame checksum mismatch");
		return -EIO;
	} else {
		z = p + AFMT_FRAME_HDR;
		zn = f.comp_len;
	}
	if (f.raw_len > cap) {
		mf_err_set(err, -EIO, "frame larger than its buffer");
		return -EIO;
	}
	cs = ZSTD_getFrameContentSize(z, zn);
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
		d = ZSTD_decompress_usingDDict(dctx, raw, f.raw_len, z, zn, dd);
	else if (f.dict)
		d = ZSTD_decompress_usingDict(dctx, raw, f.raw_len, z, zn, dict, dictn);
	else
		d = ZSTD_decompressDCtx(dctx, raw, f.raw_len, z, zn);
	if (ZSTD_isError(d) || d != f.raw_len) {
		mf_err_set(err, -EIO, "zstd: %s",
		           ZSTD_isError(d) ? ZSTD_getErrorName(d) : "short output");
		return -EIO;
	}
	*rawn = d;
	*used = AFMT_FRAME_HDR + f.comp_len;
	return 0;
}

int archive_frame_open(struct acrypt *c, uint8_t *p, size_t n, uint32_t pack, uint64_t off,
                       const void *dict, size_t dictn, uint8_t *raw, size_t cap, size_t *rawn,
                       size_t *used, struct mf_error *err)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	int rc;

	if (!d) {
		mf_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, 21);
	rc = arc_frame_decode(d, c, p, n, pack, off, dict, dictn, NULL, raw, cap, rawn, used, err);
	ZSTD_freeDCtx(d);
	return rc;
}

int archive_frame_decode(const uint8_t *p, size_t n, uint32_t pack, const void *dict, size_t dictn,
                         uint8_t *raw, size_t cap, size_t *rawn, size_t *used, struct mf_error *err)
{
	/* without a key nothing is opened in place: p is only read */
	return archive_frame_open(NULL, (uint8_t *)p, n, pack, 0, dict, dictn, raw, cap, rawn, used,
	                          err);
}

void arc_fcache_init(struct arc_fcache *c)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

void arc_fcache_free(struct arc_fcache *c)
{
	if (c->fd >= 0)
		close(c->fd);
	ZSTD_freeDCtx(c->dctx);
	free(c->raw);
	free(c->comp);
	arc_fcache_init(c);
}

/* c's buffers hold a frame of f's size (grown, never shrunk). */
static int fcache_fit(struct arc_fcache *c, const struct afmt_frame *f, struct mf_error *err)
{
	size_t comp = AFMT_FRAME_HDR + (size_t)f->comp_len;

	if (!c->dctx) {
		if (!(c->dctx = ZSTD_createDCtx()))
			goto oom;
		/* Frames hold at most 1 MiB: a larger window is a hostile frame. */
		ZSTD_DCtx_setParameter(c->dctx, ZSTD_d_windowLogMax, 21);
	}
	if (c->compcap < comp) {
		uint8_t *p = realloc(c->comp, comp);

		if (!p)
			goto oom;
		c->comp = p;
		c->compcap = comp;
	}
	if (c->rawcap < f->raw_len) {
		uint8_t *p = realloc(c->raw, f->raw_len);

		if (!p)
			goto oom;
		c->raw = p;
		c->rawcap = f->raw_len;
	}
	return 0;
oom:
	mf_err_set(err, -ENOMEM, "out of memory");
	return -ENOMEM;
}

int arc_frame_load(struct archive *a, struct arc_fcache *c, uint32_t pack, uint64_t off,
                   struct mf_error *err)
{
	uint8_t hdr[AFMT_FRAME_HDR];
	struct afmt_frame f;
	struct arc_dict *d = NULL;
	size_t rawn, used;
	ssize_t got;
	int fd, rc;

	if (c->valid && c->gen == a->rgen && c->pack == pack && c->off == off)
		return 0;
	c->valid = 0;
	if ((fd = arc_fcache_fd(a, c, pack, err)) < 0)
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
	if ((rc = fcache_fit(c, &f, err)))
		return rc;
	memcpy(c->comp, hdr, sizeof(hdr));
	got = pread(fd, c->comp + AFMT_FRAME_HDR, f.comp_len, (off_t)(off + AFMT_FRAME_HDR));
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
	rc = arc_frame_decode(c->dctx, a->crypt, c->comp, AFMT_FRAME_HDR + f.comp_len, pack, off,
	                      NULL, 0, d ? d->dd : NULL, c->raw, c->rawcap, &rawn, &used, err);
	if (rc) {
		char m[MF_ERR_MAX];

		snprintf(m, sizeof(m), "%s", err->msg);
		mf_err_set(err, rc, "pack %u offset %llu: %s", pack, (unsigned long long)off, m);
		return rc;
	}
	c->valid = 1;
	c->gen = a->rgen;
	c->pack = pack;
	c->off = off;
	c->next = off + used;
	c->rawn = rawn;
	return 0;
}

int arc_read_object(struct archive *a, const uint8_t key[32], const struct afmt_object *o,
                    archive_out_fn fn, void *ctx, struct mf_error *err)
{
	uint64_t left = o->size, off = o->frame_off;
	uint32_t skip = o->skip, frames = 0;
	uint8_t got[32], gk[32];
	int rc;

	if (++a->map_reads % 4096 == 0)
		arc_map_release(a);
	msghash_begin(&a->h);
	while (left) {
		size_t take;

		if (frames++ >= o->nframes) {
			mf_err_set(err, -EIO, "message runs past the %u frames its record names",
			           o->nframes);
			return -EIO;
		}
		if ((rc = arc_frame_load(a, &a->rc, o->pack, off, err)))
			return rc;
		if (skip > a->rc.rawn || (skip == a->rc.rawn && left)) {
			mf_err_set(err, -EIO, "pack %u offset %llu: message starts past its frame",
			           o->pack, (unsigned long long)off);
			return -EIO;
		}
		take = a->rc.rawn - skip;
		if (take > left)
			take = (size_t)left;
		msghash_update(&a->h, a->rc.raw + skip, take);
		if (fn && (rc = fn(ctx, a->rc.raw + skip, take)))
			return rc;
		left -= take;
		skip = 0;
		off = a->rc.next;
	}
	msghash_end(&a->h, got, NULL);
	if ((rc = arc_objkey(a, got, gk, err)))
		return rc;
	if (memcmp(gk, key, 32)) {
		mf_err_set(err, -EIO, "content does not match its hash (pack %u offset %llu)",
		           o->pack, (unsigned long long)o->frame_off);
		return -EIO;
	}
	return 0;
}

int arc_obj_find(struct archive *a, const uint8_t hash[32], uint8_t key[32], struct afmt_rec *rec,
                 struct mf_error *err)
{
	int rc;

	if (a->in_msg) {
		mf_err_set(err, -EBUSY, "archive %s: a message is being written", a->dir);
		return -EBUSY;
	}
	/* an encrypted archive keys objects by a MAC of the hash (arc_objkey),
	 * and the record is sealed under that key (arc_get opens it) */
	if ((rc = arc_objkey(a, hash, key, err)))
		return rc;
	/* a record still waiting for its frame: write the frames first */
	if (arc_pend_has(a, key) &&
	    ((rc = arc_frame_flush(a, err)) || (rc = arc_zp_reap(a, 1, err))))
		return rc;
	rc = arc_get(a, a->objects, AFMT_OBJECT, key, 32, rec, err);
	if (rc == -ENOENT)
		mf_err_set(err, rc, "message not in the archive");
	return rc;
}

int archive_get(struct archive *a, const uint8_t hash[32], archive_out_fn fn, void *ctx,
                struct mf_error *err)
{
	struct afmt_rec r;
	uint8_t key[32];
	int rc;

	if ((rc = arc_obj_find(a, hash, key, &r, err)))
		return rc;
	return arc_read_object(a, key, &r.u.obj, fn, ctx, err);
}
