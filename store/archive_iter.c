/*
 * archive_iter — a pull reader over one archived message (see
 * archive_iter.h): the frames it lies in, decompressed one at a time into
 * the reader's own frame buffer (arc_frame_load), handed out as pieces.
 *
 * Not for: the archive's format or writing (archive.c), export.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/archive_int.h"
#include "store/archive_iter.h"

/* Back to the message's first byte. */
static void reader_rewind(struct archive_reader *r)
{
	r->pack = r->pack0;
	r->off = r->off0;
	r->skip = r->skip0;
	r->frames = 0;
	r->left = r->size;
	r->p = NULL;
	r->n = 0;
	r->loaded = 0;
	msghash_begin(&r->h);
}

/* r set up for the object named by key (the objects key, arc_objkey). */
static int reader_start(struct archive *a, const uint8_t key[32], const struct afmt_object *o,
                        struct archive_reader *r, struct mf_error *err)
{
	if (!r->h_init) {
		if (msghash_init(&r->h) < 0) {
			mf_err_set(err, -ENOMEM, "out of memory");
			return -ENOMEM;
		}
		r->h_init = 1;
	}
	if (!r->fc) {
		if (!(r->fc = malloc(sizeof(*r->fc)))) {
			mf_err_set(err, -ENOMEM, "out of memory");
			return -ENOMEM;
		}
		arc_fcache_init(r->fc);
	}
	/* an object in the index is in a written frame: its record waits
	 * until then (archive_zpool.c) */
	r->a = a;
	memcpy(r->hash, key, 32);
	r->pack0 = r->pack = o->pack;
	r->off0 = r->off = o->frame_off;
	r->skip0 = r->skip = o->skip;
	r->nframes = o->nframes;
	r->size = o->size;
	reader_rewind(r);
	return 0;
}

int archive_reader_open(struct archive *a, const uint8_t hash[32], struct archive_reader *r,
                        uint64_t *size, struct mf_error *err)
{
	struct afmt_rec rec;
	uint8_t key[32];
	int rc;

	if ((rc = arc_obj_find(a, hash, key, &rec, err)) ||
	    (rc = reader_start(a, key, &rec.u.obj, r, err)))
		return rc;
	*size = r->size;
	return 0;
}

int arc_reader_open_obj(struct archive *a, const uint8_t key[32], const struct afmt_object *o,
                        struct archive_reader *r, struct mf_error *err)
{
	return reader_start(a, key, o, r, err);
}

/* The frame at r->off, from r->skip on, up to what is left. */
static int reader_load(struct archive_reader *r, struct mf_error *err)
{
	struct archive *a = r->a;
	size_t take;
	int rc;

	if (r->frames++ >= r->nframes) {
		mf_err_set(err, -EIO, "message runs past the %u frames its record names",
		           r->nframes);
		return -EIO;
	}
	if ((rc = arc_frame_load(a, r->fc, r->pack, r->off, err)))
		return rc;
	if (r->skip > r->fc->rawn || (r->skip == r->fc->rawn && r->left)) {
		mf_err_set(err, -EIO, "pack %u offset %llu: message starts past its frame", r->pack,
		           (unsigned long long)r->off);
		return -EIO;
	}
	take = r->fc->rawn - r->skip;
	if (take > r->left)
		take = (size_t)r->left;
	r->p = r->fc->raw + r->skip;
	r->n = take;
	r->skip = 0;
	r->loaded = 1;
	return 0;
}

int archive_reader_peek(struct archive_reader *r, const uint8_t **p, size_t *n,
                        struct mf_error *err)
{
	int rc;

	if (!r->left) {
		*p = NULL;
		*n = 0;
		return 0;
	}
	if (!r->loaded) {
		if ((rc = reader_load(r, err)))
			return rc;
	} else if (!(r->fc->valid && r->fc->pack == r->pack && r->fc->off == r->off)) {
		/* the reader's own frame is gone: cannot happen (archive_iter.h) */
		mf_err_set(err, -EBUSY, "internal: archive reader lost its frame");
		return -EBUSY;
	}
	*p = r->p;
	*n = r->n;
	return 0;
}

int archive_reader_take(struct archive_reader *r, size_t k, struct mf_error *err)
{
	uint8_t got[32], gk[32];
	int rc;

	if (k > r->n) {
		mf_err_set(err, -EINVAL, "internal: took more than was offered");
		return -EINVAL;
	}
	msghash_update(&r->h, r->p, k);
	r->p += k;
	r->n -= k;
	r->left -= k;
	if (!r->n && r->left) {
		/* the next frame follows this one */
		r->off = r->fc->next;
		r->loaded = 0;
	}
	if (r->left)
		return 0;
	msghash_end(&r->h, got, NULL);
	if ((rc = arc_objkey(r->a, got, gk, err)))
		return rc;
	if (memcmp(gk, r->hash, 32)) {
		mf_err_set(err, -EIO, "content does not match its hash (pack %u)", r->pack);
		return -EIO;
	}
	return 0;
}

int archive_reader_check(struct archive_reader *r, struct mf_error *err)
{
	const uint8_t *p;
	size_t n;
	int rc;

	for (;;) {
		if ((rc = archive_reader_peek(r, &p, &n, err)))
			return rc;
		if (!n)
			break;
		if ((rc = archive_reader_take(r, n, err)))
			return rc;
	}
	reader_rewind(r);
	return 0;
}

void archive_reader_close(struct archive_reader *r)
{
	if (r->h_init)
		msghash_free(&r->h);
	r->h_init = 0;
	if (r->fc) {
		arc_fcache_free(r->fc);
		free(r->fc);
		r->fc = NULL;
	}
}
