/*
 * archive_prune — `backup --prune`: what the source deleted leaves the
 * archive, and the pack space it held is given back (see archive.h).
 *
 * Forgetting (archive_prune_deleted): a UID whose latest visible version is
 * a deletion loses every version it has, in every run, so no run lists it
 * any more; then every object no remaining version names leaves the index
 * (arc_sweep_objects). One LMDB transaction.
 *
 * Reclaiming (archive_compact): packs are append-only, so space comes back
 * by rewriting. A pack whose live raw bytes (objects still in the index)
 * fall below min_live of the raw bytes its frames hold is rewritten: the
 * writer moves to a fresh pack, each live object is read back (checked and
 * re-hashed) and written anew through the ordinary writer, whose record
 * then names the new place; the pack bytes are fdatasync'ed before the
 * transaction naming them commits (archive_commit), as for any write.
 * Only once every object of the old pack has moved and that is committed
 * is the pack's own record dropped (a commit), then the file unlinked and
 * packs/ fsync'ed. A crash at any point leaves every index entry pointing
 * at bytes on disk: at worst an old pack nobody names, rewritten or
 * removed by the next prune, or a file without a record (ignored).
 *
 * Not for: the format (archive_fmt.c), reading for restore (archive_iter.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/archive_int.h"
#include "store/archive_iter.h"

/* ---- forgetting deleted messages ---- */

static int dels_push(uint8_t (**v)[16], size_t *n, size_t *cap, const uint8_t *k)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 256;
		uint8_t(*p)[16] = realloc(*v, nc * 16);

		if (!p)
			return -ENOMEM;
		*v = p;
		*cap = nc;
	}
	memcpy((*v)[(*n)++], k, 16);
	return 0;
}

/* The versions of UIDs whose latest version (any run's) is a deletion. */
static int deleted_versions(struct archive *a, uint8_t (**dels)[16], size_t *ndel, uint64_t *uids,
                            struct mf_error *err)
{
	struct afmt_rec *r = malloc(sizeof(*r));
	uint8_t grp[12];
	size_t cap = 0, gstart = 0;
	int have = 0, last_del = 0, rc;
	MDB_cursor *c;
	MDB_val k, v;

	if (!r)
		return -ENOMEM;
	if ((rc = mdb_cursor_open(a->txn, a->msgs, &c))) {
		free(r);
		return arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
	}
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		const uint8_t *kp = rc ? NULL : k.mv_data;
		struct mf_error e2;

		if (!rc && k.mv_size != 16)
			continue;
		if (rc || !have || memcmp(kp, grp, 12)) {
			/* the group before ends: all of it goes if it ended deleted */
			if (have && last_del)
				(*uids)++;
			else if (have)
				*ndel = gstart;
			if (rc)
				break;
			memcpy(grp, kp, 12);
			have = 1;
			last_del = 0;
			gstart = *ndel;
		}
		if (dels_push(dels, ndel, &cap, kp)) {
			rc = -ENOMEM;
			break;
		}
		/* every version counts, a killed run's too (arc_version_counts);
		 * a damaged record is not a deletion: kept (verify names it) */
		last_del =
		    !arc_rec_open(a, a->msgs, AFMT_MSG, kp, 16, v.mv_data, v.mv_size, r, &e2) &&
		    r->u.msg.kind == AFMT_MSG_DELETED;
	}
	mdb_cursor_close(c);
	free(r);
	if (rc == -ENOMEM) {
		mf_err_set(err, rc, "archive %s: out of memory", a->dir);
		return rc;
	}
	return rc == MDB_NOTFOUND ? 0 : arc_lmdb_fail(a, rc, err, "prune deleted");
}

int archive_prune_deleted(struct archive *a, uint64_t *uids, uint64_t *objects,
                          struct mf_error *err)
{
	uint8_t(*dels)[16] = NULL;
	size_t ndel = 0;
	int rc;

	*uids = *objects = 0;
	if (a->flags & ARCHIVE_OPEN_RDONLY) {
		mf_err_set(err, -EROFS, "archive %s: opened read-only", a->dir);
		return -EROFS;
	}
	if ((rc = archive_commit(a, err)) || (rc = arc_txn(a, err)) ||
	    (rc = deleted_versions(a, &dels, &ndel, uids, err)))
		goto out;
	for (size_t i = 0; !rc && i < ndel; i++)
		if ((rc = arc_del(a, a->msgs, dels[i], 16, err)) == -ENOENT)
			rc = 0;
	if (!rc && !(rc = arc_sweep_objects(a, objects, err)))
		rc = archive_commit(a, err);
out:
	free(dels);
	return rc;
}

/* ---- reclaiming pack space ---- */

struct cpack {
	uint32_t id;
	uint64_t len, raw, live;
	int keep; /* an object could not be moved: the pack stays */
};

struct cobj {
	uint8_t key[32];
	struct afmt_object o;
	size_t pack; /* index in the candidates */
};

/* The raw bytes the frames of pack hold (their headers, read in turn). */
static int pack_raw(struct archive *a, struct cpack *p, struct mf_error *err)
{
	uint64_t off = AFMT_PACK_HDR;
	uint8_t hdr[AFMT_FRAME_HDR];
	int fd = arc_pack_fd(a, p->id, err);

	if (fd < 0)
		return fd;
	p->raw = 0;
	while (off + AFMT_FRAME_HDR <= p->len) {
		struct afmt_frame f;

		if (pread(fd, hdr, sizeof(hdr), (off_t)off) != (ssize_t)sizeof(hdr) ||
		    afmt_frame_hdr_decode(hdr, sizeof(hdr), p->id, &f, err))
			return -EIO; /* damaged: left alone */
		p->raw += f.raw_len;
		off += AFMT_FRAME_HDR + (uint64_t)f.comp_len;
	}
	return 0;
}

static int packs_list(struct archive *a, struct cpack **out, size_t *n, struct mf_error *err)
{
	size_t cap = 0;
	MDB_cursor *c;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(a->txn, a->packs_db, &c)))
		return arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		struct afmt_rec r;
		struct mf_error e2;

		if (k.mv_size != 4 || arc_rec_open(a, a->packs_db, AFMT_PACK, k.mv_data, 4,
		                                   v.mv_data, v.mv_size, &r, &e2))
			continue;
		if (*n == cap) {
			struct cpack *p = realloc(*out, (cap = cap ? cap * 2 : 16) * sizeof(*p));

			if (!p) {
				rc = -ENOMEM;
				break;
			}
			*out = p;
		}
		memset(&(*out)[*n], 0, sizeof(**out));
		(*out)[*n].id = afmt_get32(k.mv_data);
		(*out)[(*n)++].len = r.u.pack_len;
	}
	mdb_cursor_close(c);
	if (rc == -ENOMEM) {
		mf_err_set(err, rc, "archive %s: out of memory", a->dir);
		return rc;
	}
	return rc == MDB_NOTFOUND ? 0 : arc_lmdb_fail(a, rc, err, "packs");
}

static size_t cpack_find(const struct cpack *p, size_t n, uint32_t id)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (p[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && p[lo].id == id ? lo : n;
}

/* Live raw bytes per pack; with collect, the objects of packs marked
 * (raw != 0 and keep == 2) listed in *objs. */
static int objects_scan(struct archive *a, struct cpack *p, size_t np, int collect,
                        struct cobj **objs, size_t *nobj, struct mf_error *err)
{
	size_t cap = 0;
	MDB_cursor *c;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(a->txn, a->objects, &c)))
		return arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		struct afmt_rec r;
		struct mf_error e2;
		size_t i;

		if (k.mv_size != 32 || arc_rec_open(a, a->objects, AFMT_OBJECT, k.mv_data, 32,
		                                    v.mv_data, v.mv_size, &r, &e2))
			continue;
		if ((i = cpack_find(p, np, r.u.obj.pack)) == np)
			continue;
		if (!collect) {
			p[i].live += r.u.obj.size;
			continue;
		}
		if (p[i].keep != 2)
			continue;
		if (*nobj == cap) {
			struct cobj *o = realloc(*objs, (cap = cap ? cap * 2 : 256) * sizeof(*o));

			if (!o) {
				rc = -ENOMEM;
				break;
			}
			*objs = o;
		}
		memcpy((*objs)[*nobj].key, k.mv_data, 32);
		(*objs)[*nobj].o = r.u.obj;
		(*objs)[(*nobj)++].pack = i;
	}
	mdb_cursor_close(c);
	if (rc == -ENOMEM) {
		mf_err_set(err, rc, "archive %s: out of memory", a->dir);
		return rc;
	}
	return rc == MDB_NOTFOUND ? 0 : arc_lmdb_fail(a, rc, err, "objects");
}

/* One object written anew (its record then names the new place): read
 * through a reader of its own (its own hash context) into the writer. On
 * any failure the old record is put back. */
static int object_move(struct archive *a, struct archive_reader *rd, const struct cobj *o,
                       struct mf_error *err)
{
	struct afmt_rec r;
	const uint8_t *p;
	uint8_t hash[32];
	uint64_t size;
	size_t n;
	int dup, rc;

	r.u.obj = o->o;
	if ((rc = arc_reader_open_obj(a, o->key, &o->o, rd, err)) ||
	    (rc = arc_del(a, a->objects, o->key, 32, err)))
		return rc;
	if ((rc = archive_msg_begin(a, err)))
		goto fail;
	for (;;) {
		if ((rc = archive_reader_peek(rd, &p, &n, err)) || !n)
			break;
		if ((rc = archive_msg_data(a, p, n, err)) || (rc = archive_reader_take(rd, n, err)))
			break;
	}
	if (rc) {
		archive_msg_abort(a);
		goto fail;
	}
	if ((rc = archive_msg_end(a, hash, &size, &dup, err)))
		goto fail;
	return 0;
fail : {
	struct mf_error e2;

	arc_put(a, a->objects, AFMT_OBJECT, o->key, 32, &r, &e2);
}
	return rc;
}

/* The pack's record goes (committed), then its file. */
static int pack_drop(struct archive *a, uint32_t id, struct mf_error *err)
{
	char path[4200];
	uint8_t key[4];
	int rc, fd;

	afmt_put32(key, id);
	if ((rc = arc_del(a, a->packs_db, key, 4, err)) || (rc = archive_commit(a, err)))
		return rc;
	if (a->rc.fd >= 0 && a->rc.fdpack == id) {
		close(a->rc.fd);
		a->rc.fd = -1;
	}
	a->rgen++; /* no cache holds a frame of the pack any more */
	arc_pack_path(a, id, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT) {
		rc = -errno;
		mf_err_set(err, rc, "archive %s: unlink pack %u: %s", a->dir, id, strerror(-rc));
		return rc;
	}
	snprintf(path, sizeof(path), "%s/packs", a->dir);
	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		if (fsync(fd) < 0)
			rc = -errno;
		close(fd);
	}
	return rc;
}

int archive_compact(struct archive *a, double min_live, struct archive_compact_stats *cs,
                    struct mf_error *err)
{
	struct cpack *p = NULL;
	struct cobj *objs = NULL;
	struct archive_reader rd;
	size_t np = 0, nobj = 0, ncand = 0;
	int rc;

	memset(cs, 0, sizeof(*cs));
	memset(&rd, 0, sizeof(rd));
	if (a->flags & ARCHIVE_OPEN_RDONLY) {
		mf_err_set(err, -EROFS, "archive %s: opened read-only", a->dir);
		return -EROFS;
	}
	/* everything written so far durable, and the writer on a fresh pack:
	 * no pack being rewritten is also being appended to */
	if ((rc = archive_commit(a, err)))
		return rc;
	if (a->wfd >= 0) {
		close(a->wfd);
		a->wfd = -1;
		a->wpack++;
	}
	if ((rc = arc_txn(a, err)) || (rc = packs_list(a, &p, &np, err)) ||
	    (rc = objects_scan(a, p, np, 0, NULL, NULL, err)))
		goto out;
	for (size_t i = 0; i < np; i++) {
		struct mf_error e2;

		if (p[i].id >= a->wpack || pack_raw(a, &p[i], &e2) || !p[i].raw)
			continue;
		if ((double)p[i].live < min_live * (double)p[i].raw) {
			p[i].keep = 2; /* a candidate */
			ncand++;
			cs->bytes_before += p[i].len;
		}
	}
	if (!ncand || (rc = objects_scan(a, p, np, 1, &objs, &nobj, err)))
		goto out;
	for (size_t i = 0; i < nobj; i++) {
		struct mf_error e2 = {0};

		if (object_move(a, &rd, &objs[i], &e2)) {
			p[objs[i].pack].keep = 1; /* stays: verify names what is wrong */
			cs->failed++;
			mf_log(MF_LOG_WARN, "archive %s: prune: a message of pack %u not moved: %s",
			       a->dir, p[objs[i].pack].id, e2.msg);
			continue;
		}
		cs->moved++;
		cs->moved_bytes += objs[i].o.size;
	}
	if ((rc = archive_commit(a, err)))
		goto out;
	for (size_t i = 0; i < np; i++) {
		if (p[i].keep != 2)
			continue;
		if ((rc = pack_drop(a, p[i].id, err)))
			goto out;
		cs->packs++;
	}
	cs->bytes_after = a->wfd >= 0 ? a->wcommitted : 0;
out:
	archive_reader_close(&rd);
	free(p);
	free(objs);
	return rc;
}
