/*
 * archive_idx — the archive index's plumbing (see archive.h, archive_int.h): LMDB error
 * mapping, the one write transaction, sealed record get/put/delete,
 * counters, and the sorted list of committed runs readers may see.
 *
 * Not for: what the records mean (archive_runs.c, archive_pack.c), their
 * encodings (archive_fmt.c).
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

/* ---- errors and transactions ---- */

int arc_lmdb_fail(struct archive *a, int rc, struct mf_error *err, const char *what)
{
	int code = mf_lmdb_code(rc);

	if (a->txn && !(a->flags & ARCHIVE_OPEN_RDONLY)) {
		mdb_txn_abort(a->txn);
		a->txn = NULL;
		a->npend = 0; /* records waiting for their frame go with it */
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
	return arc_rec_open(a, db, kind, k, klen, v.mv_data, v.mv_size, r, err);
}

/* kind || key: what a sealed value is bound to, so it cannot be moved to
 * another key or database kind. */
static size_t rec_aad(enum afmt_kind kind, const void *k, size_t klen, uint8_t aad[65])
{
	if (klen > 64)
		return 0;
	aad[0] = (uint8_t)kind;
	memcpy(aad + 1, k, klen);
	return 1 + klen;
}

int arc_rec_open(struct archive *a, MDB_dbi db, enum afmt_kind kind, const void *k, size_t klen,
                 const void *v, size_t vlen, struct afmt_rec *r, struct mf_error *err)
{
	uint8_t aad[65];
	size_t an, n;
	int rc;

	if (!a->crypt || db == a->meta)
		return afmt_rec_decode(kind, k, klen, v, vlen, r, err);
	an = rec_aad(kind, k, klen, aad);
	if (!an || vlen < ACRYPT_OVERHEAD + 5 || vlen > ARC_RECBUF) {
		mf_err_set(err, -EIO, "index record: damaged (key or value length)");
		return -EIO;
	}
	memcpy(a->recbuf, v, vlen);
	if ((rc = acrypt_open(a->crypt, aad, an, a->recbuf, vlen, &n))) {
		mf_err_set(err, -EIO,
		           "index record fails authentication (tampered with or damaged)");
		return -EIO;
	}
	return afmt_rec_decode(kind, k, klen, a->recbuf + ACRYPT_NONCE, n, r, err);
}

int arc_val_seal(struct archive *a, enum afmt_kind kind, const void *k, size_t klen, uint8_t *buf,
                 size_t n)
{
	uint8_t aad[65];
	size_t an = rec_aad(kind, k, klen, aad);

	return an ? acrypt_seal(a->crypt, aad, an, buf, n) : -EINVAL;
}

size_t arc_rec_seal(struct archive *a, MDB_dbi db, enum afmt_kind kind, const void *k, size_t klen,
                    const struct afmt_rec *r, uint8_t *out, size_t cap)
{
	size_t n;

	if (!a->crypt || db == a->meta)
		return afmt_rec_encode(kind, k, klen, r, out, cap);
	if (cap < ARC_REC_MAX)
		return 0;
	n = afmt_rec_encode(kind, k, klen, r, out + ACRYPT_NONCE, cap - ACRYPT_OVERHEAD);
	if (!n || arc_val_seal(a, kind, k, klen, out, n))
		return 0;
	return n + ACRYPT_OVERHEAD;
}

int arc_objkey(struct archive *a, const uint8_t hash[32], uint8_t key[32], struct mf_error *err)
{
	if (!a->crypt) {
		memcpy(key, hash, 32);
		return 0;
	}
	if (acrypt_mac(a->crypt, 'o', hash, 32, key)) {
		mf_err_set(err, -EIO, "archive %s: HMAC failed", a->dir);
		return -EIO;
	}
	return 0;
}

int arc_put(struct archive *a, MDB_dbi db, enum afmt_kind kind, const void *k, size_t klen,
            const struct afmt_rec *r, struct mf_error *err)
{
	uint8_t buf[ARC_REC_MAX];
	size_t n = arc_rec_seal(a, db, kind, k, klen, r, buf, sizeof(buf));
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
int arc_counter_next(struct archive *a, const char *name, uint32_t *out, struct mf_error *err)
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

int arc_version_counts(const struct archive *a, uint32_t vr, uint32_t run)
{
	return vr < run || (vr == run && arc_run_visible(a, vr));
}

int arc_runs_add(struct archive *a, uint32_t run)
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

int arc_runs_load(struct archive *a, struct mf_error *err)
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

		if (arc_rec_open(a, a->runs, AFMT_RUN, k.mv_data, k.mv_size, v.mv_data, v.mv_size,
		                 &r, &e2))
			continue; /* verify names it */
		if (r.u.run.committed && arc_runs_add(a, afmt_get32(k.mv_data))) {
			mdb_cursor_close(c);
			mf_err_set(err, -ENOMEM, "archive %s: out of memory", a->dir);
			return -ENOMEM;
		}
	}
	mdb_cursor_close(c);
	return 0;
}
