/*
 * archive_runs — backup runs, their mailboxes and per-UID versions (see
 * archive.h): what each run saw, kept as changes only, and the state of a
 * mailbox as of any committed run.
 *
 * Not for: message content (archive_pack.c, archive_read.c).
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

/* ---- runs ---- */

int archive_run_begin(struct archive *a, const char *account, uint64_t time, uint32_t *run,
                      struct mf_error *err)
{
	size_t alen = strlen(account), aklen = alen;
	const void *akey = account;
	struct afmt_rec r;
	uint8_t key[4], mac[32];
	uint32_t acct;
	int rc;

	if (!alen || alen > AFMT_ACCOUNT_MAX) {
		mf_err_set(err, -EINVAL, "archive %s: account name empty or too long", a->dir);
		return -EINVAL;
	}
	if (a->crypt) {
		/* an encrypted archive names no account in its keys */
		if (acrypt_mac(a->crypt, 'a', account, alen, mac)) {
			mf_err_set(err, -EIO, "archive %s: HMAC failed", a->dir);
			return -EIO;
		}
		akey = mac;
		aklen = sizeof(mac);
	}
	rc = arc_get(a, a->accts, AFMT_COUNTER, akey, aklen, &r, err);
	if (rc == -ENOENT || rc == -EIO) {
		/* new (or its record is damaged: give it a new id) */
		if ((rc = arc_counter_next(a, "acct", &acct, err)))
			return rc;
		r.u.counter = acct;
		if ((rc = arc_put(a, a->accts, AFMT_COUNTER, akey, aklen, &r, err)))
			return rc;
	} else if (rc) {
		return rc;
	} else {
		acct = r.u.counter;
	}
	if ((rc = arc_counter_next(a, "run", run, err)))
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
	/* This commit's meta page is written but not synced: a power loss
	 * may undo only this last step, which leaves the run uncommitted, as
	 * a crash just before it would (the next run reconciles it, and its
	 * first synced commit makes this one durable). Everything the run
	 * stored was synced by earlier commits. A no-change run so costs one
	 * sync less. */
	a->commit_nometasync = 1;
	rc = arc_put(a, a->runs, AFMT_RUN, key, 4, &r, err);
	if (!rc)
		rc = archive_commit(a, err);
	a->commit_nometasync = 0;
	if (rc)
		return rc;
	if (arc_runs_add(a, run)) {
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

		if (arc_rec_open(a, a->runs, AFMT_RUN, k.mv_data, k.mv_size, v.mv_data, v.mv_size,
		                 &r, &e2))
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
	/* encrypted: a keyed MAC, so a guessed name cannot be confirmed */
	if (a->crypt ? acrypt_mac(a->crypt, 'm', name, nlen, key + 4)
	             : !EVP_Digest(name, nlen, key + 4, &hl, EVP_sha256(), NULL)) {
		mf_err_set(err, -EIO, "archive %s: hashing a mailbox name failed", a->dir);
		return -EIO;
	}
	rc = arc_get(a, a->mbnames, AFMT_COUNTER, key, sizeof(key), &r, err);
	if (rc == 0) {
		*mbid = r.u.counter;
	} else if (rc == -ENOENT || rc == -EIO) {
		uint8_t mk[4];

		if ((rc = arc_counter_next(a, "mbox", mbid, err)))
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
		if (arc_rec_open(a, a->runmb, AFMT_RUNMB, k.mv_data, 8, v.mv_data, v.mv_size, r,
		                 &e2))
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
		if (!arc_version_counts(a, vr, run))
			continue;
		if (arc_rec_open(a, a->msgs, AFMT_MSG, k.mv_data, 16, v.mv_data, v.mv_size, r, &e2))
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
	return rc ? rc : arc_maybe_commit(a, err);
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
	return rc ? rc : arc_maybe_commit(a, err);
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
		if (stop || !arc_version_counts(a, vr, run))
			continue;
		if (arc_rec_open(a, a->msgs, AFMT_MSG, kp, 16, v.mv_data, v.mv_size, r, &e2)) {
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
