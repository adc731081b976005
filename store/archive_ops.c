/*
 * archive_ops — whole-archive operations over the index: verify (re-read
 * and re-hash every stored message, then name every version of every
 * committed run that points at damaged or missing content), stats, prune.
 *
 * Not for: writing or reading single messages (archive.c).
 */
#include "store/archive_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct bad {
	uint8_t hash[32];
	int named; /* a version named it */
	char why[MF_ERR_MAX];
};

struct badlist {
	struct bad *v;
	size_t n, cap;
};

static int bad_add(struct badlist *b, const uint8_t *hash, const char *why)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		struct bad *p = realloc(b->v, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		b->v = p;
		b->cap = cap;
	}
	memcpy(b->v[b->n].hash, hash, 32);
	b->v[b->n].named = 0;
	snprintf(b->v[b->n].why, sizeof(b->v[b->n].why), "%s", why);
	b->n++;
	return 0;
}

static int bad_cmp(const void *x, const void *y)
{
	return memcmp(((const struct bad *)x)->hash, ((const struct bad *)y)->hash, 32);
}

static struct bad *bad_find(struct badlist *b, const uint8_t *hash)
{
	struct bad key;

	if (!b->n)
		return NULL;
	memcpy(key.hash, hash, 32);
	return bsearch(&key, b->v, b->n, sizeof(*b->v), bad_cmp);
}

struct vctx {
	struct archive *a;
	int (*fn)(void *ctx, const struct archive_problem *p);
	void *ctx;
	uint64_t problems;
	uint32_t name_mbid;
	struct afmt_rec *name; /* the mailbox name of name_mbid */
	int name_ok;
};

static void report(struct vctx *v, uint32_t run, uint32_t mbid, uint32_t uid, const uint8_t *hash,
                   const char *what)
{
	struct archive_problem p = {run, NULL, 0, uid, hash, what};
	struct mf_error e2;

	if (mbid) {
		if (mbid != v->name_mbid) {
			v->name_mbid = mbid;
			v->name_ok = arc_mbox_name(v->a, mbid, v->name, &e2) == 0;
		}
		if (v->name_ok) {
			p.mailbox = v->name->u.mbox.name;
			p.mlen = v->name->u.mbox.nlen;
		}
	}
	v->problems++;
	if (v->fn)
		v->fn(v->ctx, &p);
}

/* Objects are read back in batches sorted by where they lie, so the
 * messages of one frame are checked with one decompression (the reader
 * caches the last frame) whatever order their hashes have. */
#define VERIFY_BATCH 65536

struct vobj {
	uint8_t hash[32];
	struct afmt_object o;
};

static int vobj_cmp(const void *x, const void *y)
{
	const struct afmt_object *a = &((const struct vobj *)x)->o,
	                         *b = &((const struct vobj *)y)->o;

	if (a->pack != b->pack)
		return a->pack < b->pack ? -1 : 1;
	if (a->frame_off != b->frame_off)
		return a->frame_off < b->frame_off ? -1 : 1;
	return a->skip < b->skip ? -1 : a->skip > b->skip;
}

static int check_batch(struct archive *a, struct vobj *v, size_t n, struct badlist *b)
{
	qsort(v, n, sizeof(*v), vobj_cmp);
	for (size_t i = 0; i < n; i++) {
		struct mf_error e2 = {0};

		if (arc_read_object(a, v[i].hash, &v[i].o, NULL, NULL, &e2) &&
		    bad_add(b, v[i].hash, e2.msg))
			return -ENOMEM;
	}
	return 0;
}

/* Every stored message, read back and re-hashed. */
static int check_objects(struct archive *a, struct vctx *v, struct badlist *b, struct mf_error *err)
{
	struct vobj *batch = malloc(VERIFY_BATCH * sizeof(*batch));
	size_t nb = 0;
	MDB_cursor *c;
	MDB_val k, val;
	struct afmt_rec r;
	int rc;

	if (!batch) {
		mf_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	if ((rc = mdb_cursor_open(a->txn, a->objects, &c))) {
		free(batch);
		return arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
	}
	for (rc = mdb_cursor_get(c, &k, &val, MDB_FIRST); !rc;
	     rc = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
		struct mf_error e2 = {0};

		if (k.mv_size != 32) {
			report(v, 0, 0, 0, NULL, "index object record with a damaged key");
			continue;
		}
		if (arc_rec_open(a, a->objects, AFMT_OBJECT, k.mv_data, 32, val.mv_data,
		                 val.mv_size, &r, &e2)) {
			if (bad_add(b, k.mv_data, e2.msg))
				break;
			continue;
		}
		memcpy(batch[nb].hash, k.mv_data, 32);
		batch[nb++].o = r.u.obj;
		if (nb == VERIFY_BATCH) {
			if (check_batch(a, batch, nb, b))
				break;
			nb = 0;
		}
	}
	mdb_cursor_close(c);
	if (rc == MDB_NOTFOUND)
		rc = check_batch(a, batch, nb, b);
	else if (rc > 0)
		rc = arc_lmdb_fail(a, rc, err, "mdb_cursor_get");
	else
		rc = -ENOMEM;
	free(batch);
	if (rc == -ENOMEM)
		mf_err_set(err, rc, "out of memory");
	if (rc)
		return rc;
	if (b->n)
		qsort(b->v, b->n, sizeof(*b->v), bad_cmp);
	return 0;
}

/* Every version, a killed run's too (later runs list them:
 * arc_version_counts): its record, and the content it names. */
static int check_versions(struct archive *a, struct vctx *v, struct badlist *b,
                          struct mf_error *err)
{
	MDB_cursor *c;
	MDB_val k, val, ov;
	struct afmt_rec *r = malloc(sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	if ((rc = mdb_cursor_open(a->txn, a->msgs, &c))) {
		free(r);
		return arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
	}
	for (rc = mdb_cursor_get(c, &k, &val, MDB_FIRST); !rc;
	     rc = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
		const uint8_t *kp = k.mv_data;
		struct mf_error e2 = {0};
		uint32_t mbid, uid, run;
		struct bad *bd;
		uint8_t okey[32];
		MDB_val ok;
		char why[MF_ERR_MAX + 80];

		if (k.mv_size != 16) {
			report(v, 0, 0, 0, NULL, "index message record with a damaged key");
			continue;
		}
		if (++a->map_reads % 16384 == 0)
			arc_map_release(a);
		mbid = afmt_get32(kp);
		uid = afmt_get32(kp + 8);
		run = afmt_get32(kp + 12);
		if (arc_rec_open(a, a->msgs, AFMT_MSG, kp, 16, val.mv_data, val.mv_size, r, &e2)) {
			snprintf(why, sizeof(why), "damaged: %s", e2.msg);
			report(v, run, mbid, uid, NULL, why);
			continue;
		}
		if (r->u.msg.kind != AFMT_MSG_PRESENT)
			continue;
		if (arc_objkey(a, r->u.msg.hash, okey, &e2)) {
			report(v, run, mbid, uid, r->u.msg.hash, e2.msg);
			continue;
		}
		if ((bd = bad_find(b, okey))) {
			bd->named = 1;
			snprintf(why, sizeof(why), "corrupt: %s", bd->why);
			report(v, run, mbid, uid, r->u.msg.hash, why);
			continue;
		}
		ok.mv_size = 32;
		ok.mv_data = okey;
		if (mdb_get(a->txn, a->objects, &ok, &ov) == MDB_NOTFOUND)
			report(v, run, mbid, uid, r->u.msg.hash,
			       "missing: its content is not in the archive");
	}
	mdb_cursor_close(c);
	free(r);
	if (rc != MDB_NOTFOUND)
		return arc_lmdb_fail(a, rc, err, "mdb_cursor_get");
	return 0;
}

/* Every other record decodes; packs are as long as committed. */
static int check_records(struct archive *a, struct vctx *v, struct mf_error *err)
{
	const struct {
		MDB_dbi db;
		enum afmt_kind kind;
		const char *what;
	} dbs[] = {
	    {a->runs, AFMT_RUN, "index run record damaged"},
	    {a->runmb, AFMT_RUNMB, "index run mailbox record damaged"},
	    {a->mboxes, AFMT_MBOX, "index mailbox record damaged"},
	    {a->mbnames, AFMT_COUNTER, "index mailbox name record damaged"},
	    {a->accts, AFMT_COUNTER, "index account record damaged"},
	    {a->meta, AFMT_COUNTER, "index counter record damaged"},
	    {a->packs_db, AFMT_PACK, "index pack record damaged"},
	    {a->dicts_db, AFMT_DICT, "index dictionary record damaged"},
	};
	struct afmt_rec *r = malloc(sizeof(*r));
	int rc = 0;

	if (!r)
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]) && !rc; i++) {
		MDB_cursor *c;
		MDB_val k, val;

		if ((rc = mdb_cursor_open(a->txn, dbs[i].db, &c))) {
			rc = arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
			break;
		}
		for (rc = mdb_cursor_get(c, &k, &val, MDB_FIRST); !rc;
		     rc = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
			struct mf_error e2 = {0};
			uint32_t run = 0;

			if (dbs[i].db == a->meta && k.mv_size == 5 &&
			    !memcmp(k.mv_data, "crypt", 5))
				continue; /* the encryption parameters (checked on open) */
			if (arc_rec_open(a, dbs[i].db, dbs[i].kind, k.mv_data, k.mv_size,
			                 val.mv_data, val.mv_size, r, &e2)) {
				if ((dbs[i].kind == AFMT_RUN || dbs[i].kind == AFMT_RUNMB) &&
				    k.mv_size >= 4)
					run = afmt_get32(k.mv_data);
				report(v, run, 0, 0, NULL, dbs[i].what);
				continue;
			}
			if (dbs[i].kind == AFMT_PACK) {
				char path[4200], why[MF_ERR_MAX + 80];
				struct stat st;
				uint32_t pack = afmt_get32(k.mv_data);

				arc_pack_path(a, pack, path, sizeof(path));
				if (stat(path, &st) < 0 || (uint64_t)st.st_size < r->u.pack_len) {
					snprintf(why, sizeof(why),
					         "pack %u is missing or shorter than committed "
					         "(%llu bytes)",
					         pack, (unsigned long long)r->u.pack_len);
					report(v, 0, 0, 0, NULL, why);
				}
			}
		}
		mdb_cursor_close(c);
		rc = rc == MDB_NOTFOUND ? 0 : arc_lmdb_fail(a, rc, err, "mdb_cursor_get");
	}
	free(r);
	return rc;
}

int archive_verify(struct archive *a, int (*fn)(void *ctx, const struct archive_problem *p),
                   void *ctx, uint64_t *problems, struct mf_error *err)
{
	struct badlist b = {0};
	struct vctx v = {a, fn, ctx, 0, 0, NULL, 0};
	int rc;

	*problems = 0;
	if (a->in_msg) {
		mf_err_set(err, -EBUSY, "archive %s: a message is being written", a->dir);
		return -EBUSY;
	}
	if ((rc = arc_txn(a, err)))
		return rc;
	if (!(v.name = malloc(sizeof(*v.name))))
		return -ENOMEM;
	if (!(rc = check_objects(a, &v, &b, err)) && !(rc = check_versions(a, &v, &b, err)))
		rc = check_records(a, &v, err);
	for (size_t i = 0; !rc && i < b.n; i++)
		if (!b.v[i].named) {
			char why[MF_ERR_MAX + 80];

			snprintf(why, sizeof(why), "stored message no run names is corrupt: %s",
			         b.v[i].why);
			/* encrypted: the key is a MAC, not the message's hash */
			report(&v, 0, 0, 0, a->crypt ? NULL : b.v[i].hash, why);
		}
	free(b.v);
	free(v.name);
	*problems = v.problems;
	return rc;
}

int archive_stats(struct archive *a, struct archive_stats *st, struct mf_error *err)
{
	const MDB_dbi dbs[2] = {a->objects, a->packs_db};
	struct afmt_rec *r = malloc(sizeof(*r));
	MDB_stat ms;
	int rc;

	memset(st, 0, sizeof(*st));
	if (!r)
		return -ENOMEM;
	if ((rc = arc_txn(a, err))) {
		free(r);
		return rc;
	}
	for (int i = 0; i < 2; i++) {
		MDB_cursor *c;
		MDB_val k, val;

		if ((rc = mdb_cursor_open(a->txn, dbs[i], &c))) {
			free(r);
			return arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
		}
		for (rc = mdb_cursor_get(c, &k, &val, MDB_FIRST); !rc;
		     rc = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
			struct mf_error e2;

			if (arc_rec_open(a, dbs[i], i ? AFMT_PACK : AFMT_OBJECT, k.mv_data,
			                 k.mv_size, val.mv_data, val.mv_size, r, &e2))
				continue;
			if (i) {
				st->packs++;
				st->stored_bytes += r->u.pack_len;
			} else {
				st->objects++;
				st->raw_bytes += r->u.obj.size;
			}
		}
		mdb_cursor_close(c);
	}
	free(r);
	if (!mdb_stat(a->txn, a->dicts_db, &ms))
		st->dicts = (uint32_t)ms.ms_entries;
	if (!mdb_stat(a->txn, a->runs, &ms))
		st->runs = (uint32_t)ms.ms_entries;
	if (!mdb_stat(a->txn, a->msgs, &ms))
		st->versions = ms.ms_entries;
	return 0;
}

/* ---- prune ---- */

struct hset {
	uint8_t (*v)[32];
	size_t n, cap;
};

static int hset_add(struct hset *h, const uint8_t *hash)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 1024;
		uint8_t(*p)[32] = realloc(h->v, cap * 32);

		if (!p)
			return -ENOMEM;
		h->v = p;
		h->cap = cap;
	}
	memcpy(h->v[h->n++], hash, 32);
	return 0;
}

static int h32cmp(const void *x, const void *y)
{
	return memcmp(x, y, 32);
}

/*
 * Versions are grouped per (mbid, uidvalidity, uid), ascending by run.
 * Of those before keep_from, the last visible one is what keep_from builds
 * on: unless it is a deletion, or keep_from has a version of its own, it is
 * kept, re-keyed to keep_from. All others before keep_from go. Two passes:
 * decide while reading, then write.
 */
struct prune_put {
	uint8_t key[16];
	uint8_t val[ARC_REC_MAX];
	size_t n;
};

/* Is this version record a deletion? (a damaged one is not) */
static int version_deleted(struct archive *a, const uint8_t *kp, const MDB_val *val)
{
	struct afmt_rec *r;
	struct mf_error e2;
	int del;

	if (!a->crypt)
		return val->mv_size >= 2 && ((const uint8_t *)val->mv_data)[1] == AFMT_MSG_DELETED;
	if (!(r = malloc(sizeof(*r))))
		return 0;
	del = !arc_rec_open(a, a->msgs, AFMT_MSG, kp, 16, val->mv_data, val->mv_size, r, &e2) &&
	      r->u.msg.kind == AFMT_MSG_DELETED;
	free(r);
	return del;
}

static int prune_versions(struct archive *a, uint32_t keep_from, struct mf_error *err)
{
	uint8_t(*dels)[16] = NULL, grp[12];
	struct prune_put *puts = NULL, carry;
	size_t ndel = 0, capdel = 0, nput = 0, capput = 0;
	MDB_cursor *c;
	MDB_val k, val;
	int rc, have = 0, at_keep = 0;

	carry.n = 0;
	if ((rc = arc_txn(a, err)))
		return rc;
	if ((rc = mdb_cursor_open(a->txn, a->msgs, &c)))
		return arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
	for (rc = mdb_cursor_get(c, &k, &val, MDB_FIRST);;
	     rc = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
		const uint8_t *kp = rc ? NULL : k.mv_data;
		uint32_t run;

		if (!rc && k.mv_size != 16)
			continue;
		if (rc || !have || memcmp(kp, grp, 12)) {
			if (have && carry.n && !at_keep) {
				if (nput == capput) {
					struct prune_put *p;

					capput = capput ? capput * 2 : 64;
					if (!(p = realloc(puts, capput * sizeof(*p)))) {
						rc = -ENOMEM;
						break;
					}
					puts = p;
				}
				afmt_put32(carry.key + 12, keep_from);
				puts[nput++] = carry;
			}
			if (rc)
				break;
			memcpy(grp, kp, 12);
			have = 1;
			at_keep = 0;
			carry.n = 0;
		}
		run = afmt_get32(kp + 12);
		if (run > keep_from)
			continue;
		if (run == keep_from) {
			/* a deletion at keep_from has nothing left before it */
			at_keep = 1;
			if (!version_deleted(a, kp, &val))
				continue;
		}
		if (arc_version_counts(a, run, keep_from) && run < keep_from && val.mv_size <= ARC_REC_MAX &&
		    val.mv_size > 1) {
			struct afmt_rec *r = malloc(sizeof(*r));
			struct mf_error e2;

			if (!r) {
				rc = -ENOMEM;
				break;
			}
			if (!arc_rec_open(a, a->msgs, AFMT_MSG, kp, 16, val.mv_data, val.mv_size, r,
			                  &e2)) {
				carry.n = 0;
				if (r->u.msg.kind == AFMT_MSG_PRESENT) {
					memcpy(carry.key, kp, 16);
					afmt_put32(carry.key + 12, keep_from);
					/* re-sealed under the new key */
					carry.n = arc_rec_seal(a, a->msgs, AFMT_MSG, carry.key, 16,
					                       r, carry.val, sizeof(carry.val));
				}
			}
			free(r);
		}
		if (ndel == capdel) {
			uint8_t(*p)[16];

			capdel = capdel ? capdel * 2 : 256;
			if (!(p = realloc(dels, capdel * 16))) {
				rc = -ENOMEM;
				break;
			}
			dels = p;
		}
		memcpy(dels[ndel++], kp, 16);
	}
	mdb_cursor_close(c);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	else if (rc > 0)
		rc = arc_lmdb_fail(a, rc, err, "prune");
	else if (rc == -ENOMEM)
		mf_err_set(err, rc, "archive %s: out of memory", a->dir);
	for (size_t i = 0; !rc && i < ndel; i++) {
		rc = arc_del(a, a->msgs, dels[i], 16, err);
		if (rc == -ENOENT)
			rc = 0;
	}
	for (size_t i = 0; !rc && i < nput; i++) {
		MDB_val pk = {16, puts[i].key}, pv = {puts[i].n, puts[i].val};

		a->dirty++;
		if ((rc = mdb_put(a->txn, a->msgs, &pk, &pv, 0)))
			rc = arc_lmdb_fail(a, rc, err, "mdb_put");
	}
	free(dels);
	free(puts);
	return rc;
}

/* Hashes every remaining version names. */
static int prune_refs(struct archive *a, struct hset *refs, struct mf_error *err)
{
	struct afmt_rec *r = malloc(sizeof(*r));
	MDB_cursor *c;
	MDB_val k, val;
	int rc;

	if (!r)
		return -ENOMEM;
	if ((rc = mdb_cursor_open(a->txn, a->msgs, &c))) {
		free(r);
		return arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
	}
	for (rc = mdb_cursor_get(c, &k, &val, MDB_FIRST); !rc;
	     rc = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
		struct mf_error e2;
		uint8_t okey[32];

		if (arc_rec_open(a, a->msgs, AFMT_MSG, k.mv_data, k.mv_size, val.mv_data,
		                 val.mv_size, r, &e2))
			continue;
		if (r->u.msg.kind == AFMT_MSG_PRESENT &&
		    (arc_objkey(a, r->u.msg.hash, okey, &e2) || hset_add(refs, okey))) {
			rc = -ENOMEM;
			break;
		}
	}
	mdb_cursor_close(c);
	free(r);
	if (rc == -ENOMEM) {
		mf_err_set(err, rc, "archive %s: out of memory", a->dir);
		return rc;
	}
	return rc == MDB_NOTFOUND ? 0 : arc_lmdb_fail(a, rc, err, "prune");
}

static int prune_runs(struct archive *a, uint32_t keep_from, struct mf_error *err)
{
	MDB_dbi dbs[2] = {a->runs, a->runmb};
	int rc;

	for (int i = 0; i < 2; i++) {
		MDB_cursor *c;
		MDB_val k, val;

		if ((rc = mdb_cursor_open(a->txn, dbs[i], &c)))
			return arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
		for (rc = mdb_cursor_get(c, &k, &val, MDB_FIRST); !rc;) {
			if (k.mv_size < 4 || afmt_get32(k.mv_data) >= keep_from)
				break;
			a->dirty++;
			if ((rc = mdb_cursor_del(c, 0)))
				break;
			rc = mdb_cursor_get(c, &k, &val, MDB_GET_CURRENT);
			if (rc == MDB_NOTFOUND || rc == EINVAL)
				rc = mdb_cursor_get(c, &k, &val, MDB_NEXT);
		}
		mdb_cursor_close(c);
		if (rc && rc != MDB_NOTFOUND)
			return arc_lmdb_fail(a, rc, err, "prune runs");
	}
	return 0;
}

/* Drops every object no present version names (after versions were
 * removed); *dropped counts them. In the open transaction. */
int arc_sweep_objects(struct archive *a, uint64_t *dropped, struct mf_error *err)
{
	struct hset refs = {0};
	MDB_cursor *c;
	MDB_val k, val;
	int rc;

	if ((rc = prune_refs(a, &refs, err)))
		goto out;
	if (refs.n)
		qsort(refs.v, refs.n, 32, h32cmp);
	if ((rc = mdb_cursor_open(a->txn, a->objects, &c))) {
		rc = arc_lmdb_fail(a, rc, err, "mdb_cursor_open");
		goto out;
	}
	for (rc = mdb_cursor_get(c, &k, &val, MDB_FIRST); !rc;) {
		if (k.mv_size == 32 &&
		    !(refs.n && bsearch(k.mv_data, refs.v, refs.n, 32, h32cmp))) {
			a->dirty++;
			(*dropped)++;
			if ((rc = mdb_cursor_del(c, 0)))
				break;
			rc = mdb_cursor_get(c, &k, &val, MDB_GET_CURRENT);
			if (rc == MDB_NOTFOUND || rc == EINVAL)
				rc = mdb_cursor_get(c, &k, &val, MDB_NEXT);
			continue;
		}
		rc = mdb_cursor_get(c, &k, &val, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (rc && rc != MDB_NOTFOUND)
		rc = arc_lmdb_fail(a, rc, err, "prune objects");
	else
		rc = 0;
out:
	free(refs.v);
	return rc;
}

int archive_prune(struct archive *a, uint32_t keep_from, uint64_t *dropped, struct mf_error *err)
{
	int rc;

	*dropped = 0;
	if (a->flags & ARCHIVE_OPEN_RDONLY) {
		mf_err_set(err, -EROFS, "archive %s: opened read-only", a->dir);
		return -EROFS;
	}
	if (!arc_run_visible(a, keep_from) || keep_from == a->open_run) {
		mf_err_set(err, -EINVAL, "archive %s: run %u is not a complete run", a->dir,
		           keep_from);
		return -EINVAL;
	}
	if ((rc = archive_commit(a, err)) || (rc = prune_versions(a, keep_from, err)) ||
	    (rc = prune_runs(a, keep_from, err)) || (rc = arc_sweep_objects(a, dropped, err)))
		return rc;
	{
		/* forget the pruned runs */
		size_t j = 0;

		for (size_t i = 0; i < a->nruns; i++)
			if (a->runs_ok[i] >= keep_from)
				a->runs_ok[j++] = a->runs_ok[i];
		a->nruns = j;
	}
	return archive_commit(a, err);
}
