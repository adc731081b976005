/*
 * state — what mailferry has seen and written, in LMDB (see state.h, DESIGN §4).
 *
 * This module owns the on-disk layout: key packing, value serialization,
 * id counters and the one long-lived write transaction. It knows nothing
 * about IMAP; it is not a cache of message bodies (that is archive.c).
 *
 * Layout (format 1). Integers in keys and values are big-endian.
 *   jobs      job key bytes                    -> u32 job id
 *             "\0f"                            -> u32 format (1)
 *             "\0j"                            -> u32 next job id
 *             "\0m" u32 job                    -> u32 next mailbox id of the job
 *             (job keys are C strings, so they never start with a NUL byte)
 *   mbnames   u32 job, name bytes              -> u32 mailbox id
 *   mailboxes u32 job, u32 mbid                -> mailbox record v1
 *   messages  u32 job, u32 mbid, u32 uidvalidity, u32 uid -> message record v1
 * (A "hashes" index, content -> where, existed in earlier versions and is
 * no longer kept: its random keys dirtied a page per message per commit.)
 * Ids start at 1 and come from the counters, so they are never reused once
 * committed. A name (job key or mailbox name) whose key would not fit in
 * STATE_KEY_RAW_MAX bytes is stored as its first bytes followed by the
 * SHA-256 of the whole name, which makes the key exactly LMDB's 511-byte
 * maximum; raw keys are never that long, so the two forms cannot collide.
 *
 * Records start with a version byte; an unknown version is an error rather
 * than a guess. Message records are written once per message, so they are
 * fixed fields plus a length-prefixed flags string (100 bytes + flags), not
 * the 1 KiB C struct.
 *
 * Durability: commits use LMDB's default sync (data pages fdatasync'ed,
 * then the meta page written through an O_DSYNC descriptor), so
 * state_commit() returning 0 means the batch survives a power loss.
 * MDB_NOMETASYNC would save the synchronous meta write
 * but lets an OS crash roll back the last commit, and the engine commits an
 * intent before an irreversible APPEND, so that rollback could duplicate
 * mail. The cost is two syncs per batch, not per message.
 *
 * Map size: 64 GiB on 64-bit (sparse; only what is used is on disk),
 * halved down to 1 GiB if an address-space limit refuses the mapping.
 * MAILFERRY_STATE_MAP_MIB overrides it (operators with small limits, and the
 * MDB_MAP_FULL test).
 *
 * Errors: any LMDB failure inside the write transaction aborts it (LMDB
 * leaves a failed transaction unusable, e.g. after MDB_MAP_FULL). Writes
 * since the last commit are then gone, so the state refuses every call with
 * the original error until state_commit() reports it once more or
 * state_abort() acknowledges it; a caller can never believe a lost batch
 * was committed.
 */
#include "store/state.h"
#include "store/lmdb_code.h"
#include "store/state_check.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/state_int.h"


/* ---- packing ---- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void key_msg(uint8_t k[16], const struct state_msg_key *mk)
{
	put32(k, mk->job);
	put32(k + 4, mk->mbid);
	put32(k + 8, mk->uidvalidity);
	put32(k + 12, mk->uid);
}

static void key_mbox(uint8_t k[8], uint32_t job, uint32_t mbid)
{
	put32(k, job);
	put32(k + 4, mbid);
}

/* ---- errors ---- */

void st_txn_end(struct state *s)
{
	s->txn = NULL;
	s->txn_gen++;
	s->gen++;
}

/*
 * An LMDB call failed: report it as "state DIR: what: LMDB message" and, if
 * a write transaction was open, abort it and remember that its writes were
 * dropped.
 */
int st_lmdb_fail(struct state *s, int rc, struct mf_error *err, const char *what)
{
	char hint[96] = "";
	int code = mf_lmdb_code(rc);

	if (rc == MDB_MAP_FULL)
		snprintf(hint, sizeof(hint), " (map size %zu MiB)", s->map_size / STATE_MIB);
	else if (rc == MDB_TXN_FULL)
		snprintf(hint, sizeof(hint), " (commit more often)");
	if (s->txn) {
		mdb_txn_abort(s->txn);
		st_txn_end(s);
		mf_err_set(&s->lost, code,
		           "state %s: %s: %s%s; uncommitted writes since the last commit were "
		           "dropped",
		           s->dir, what, mdb_strerror(rc), hint);
		mf_err_set(err, code, "%s", s->lost.msg);
	} else {
		mf_err_set(err, code, "state %s: %s: %s%s", s->dir, what, mdb_strerror(rc), hint);
	}
	return code;
}

static int corrupt(struct state *s, struct mf_error *err, const char *what, const MDB_val *v)
{
	const uint8_t *p = v->mv_data;

	if (v->mv_size >= 1 && p[0] != STATE_REC_V1) {
		mf_err_set(err, -EINVAL,
		           "state %s: %s: unknown record version %u (this mailferry reads %u)",
		           s->dir, what, p[0], STATE_REC_V1);
		return -EINVAL;
	}
	mf_err_set(err, -EIO, "state %s: %s: corrupt record (%zu bytes)", s->dir, what, v->mv_size);
	return -EIO;
}

/* ---- transactions ---- */

int st_txn_need(struct state *s, struct mf_error *err)
{
	int rc;

	if (s->lost.code) {
		mf_err_set(err, s->lost.code, "%s", s->lost.msg);
		return s->lost.code;
	}
	if (s->txn)
		return 0;
	rc = mdb_txn_begin(s->env, NULL, 0, &s->txn);
	if (rc) {
		s->txn = NULL;
		return st_lmdb_fail(s, rc, err, "mdb_txn_begin");
	}
	return 0;
}

/* Where LMDB mapped data.mdb (it does not say; /proc/self/maps does).
 * The map is made once, at its full size, when the environment opens;
 * found once here. Not found: pages are simply not released. */
void st_map_find(struct state *s)
{
	char path[4200], line[4352];
	unsigned long lo, hi, ino;
	struct stat fs;
	FILE *f;

	snprintf(path, sizeof(path), "%s/data.mdb", s->dir);
	if (stat(path, &fs) < 0 || !(f = fopen("/proc/self/maps", "re")))
		return;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &lo, &hi, &ino) == 3 &&
		    ino == (unsigned long)fs.st_ino && hi > lo) {
			s->map_base = (void *)lo;
			s->map_len = hi - lo;
			break;
		}
	fclose(f);
}

/*
 * Between transactions nothing points into the map, so the pages a run has
 * read through it (every leaf it appended to: the whole file, over a long
 * run) need not stay in this process: they are clean, shared, and stay in
 * the page cache for the next access. Letting them go keeps the resident
 * size to what the loop itself holds (issue 10: peak RSS), not the size of
 * the state. At most five times a second.
 */
static void map_release(struct state *s)
{
	struct timespec ts;
	MDB_envinfo info;
	MDB_stat st;
	uint64_t now;
	size_t used;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	if (!s->map_base || now - s->released_ms < 200 || mdb_env_info(s->env, &info) ||
	    mdb_env_stat(s->env, &st))
		return;
	s->released_ms = now;
	used = (info.me_last_pgno + 1) * (size_t)st.ms_psize;
	madvise(s->map_base, used < s->map_len ? used : s->map_len, MADV_DONTNEED);
}

int state_commit(struct state *s, struct mf_error *err)
{
	int rc;

	if (s->lost.code) {
		/* Reported once more here, then the caller starts a fresh batch. */
		mf_err_set(err, s->lost.code, "%s", s->lost.msg);
		rc = s->lost.code;
		mf_err_clear(&s->lost);
		return rc;
	}
	if (!s->txn)
		return 0;
	rc = mdb_txn_commit(s->txn); /* frees the transaction even when it fails */
	st_txn_end(s);
	if (!rc)
		map_release(s);
	if (rc) {
		mf_err_set(err, mf_lmdb_code(rc),
		           "state %s: mdb_txn_commit: %s; uncommitted writes since the last "
		           "commit were dropped",
		           s->dir, mdb_strerror(rc));
		return mf_lmdb_code(rc);
	}
	return 0;
}

void state_abort(struct state *s)
{
	if (!s)
		return;
	if (s->txn) {
		mdb_txn_abort(s->txn);
		st_txn_end(s);
	}
	mf_err_clear(&s->lost);
}

/* Thin wrappers: every write bumps gen so open iterations re-seek. */
int st_db_get(struct state *s, MDB_dbi dbi, const void *k, size_t klen, MDB_val *v,
                  struct mf_error *err, const char *what)
{
	MDB_val key = {klen, (void *)k};
	int rc = mdb_get(s->txn, dbi, &key, v);

	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	if (rc)
		return st_lmdb_fail(s, rc, err, what);
	return 0;
}

int st_db_put(struct state *s, MDB_dbi dbi, const void *k, size_t klen, const void *v,
                  size_t vlen, struct mf_error *err, const char *what)
{
	MDB_val key = {klen, (void *)k}, val = {vlen, (void *)v};
	int rc;

	s->gen++;
	rc = mdb_put(s->txn, dbi, &key, &val, 0);
	if (rc)
		return st_lmdb_fail(s, rc, err, what);
	return 0;
}

static int db_del(struct state *s, MDB_dbi dbi, const void *k, size_t klen, struct mf_error *err,
                  const char *what)
{
	MDB_val key = {klen, (void *)k};
	int rc;

	s->gen++;
	rc = mdb_del(s->txn, dbi, &key, NULL);
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	if (rc)
		return st_lmdb_fail(s, rc, err, what);
	return 0;
}

/* ---- names and ids ---- */

/*
 * Key for a name under a prefix: raw if short, else its head plus the
 * SHA-256 of the whole name (exactly STATE_KEY_MAX bytes, see top).
 */
static int name_key(struct state *s, uint8_t *k, size_t *klen, const uint8_t *pfx, size_t plen,
                    const char *name, size_t len, struct mf_error *err)
{
	size_t head = STATE_KEY_MAX - 32 - plen;
	unsigned int dlen = 0;

	if (plen)
		memcpy(k, pfx, plen);
	if (plen + len <= STATE_KEY_RAW_MAX) {
		if (len)
			memcpy(k + plen, name, len);
		*klen = plen + len;
		return 0;
	}
	memcpy(k + plen, name, head);
	if (EVP_Digest(name, len, k + plen + head, &dlen, EVP_sha256(), NULL) != 1 || dlen != 32) {
		mf_err_set(err, -EIO, "state %s: SHA-256 of a long name failed", s->dir);
		return -EIO;
	}
	*klen = STATE_KEY_MAX;
	return 0;
}

/* Next id from counter key ck; ids start at 1 and are never handed out twice. */
static int next_id(struct state *s, const uint8_t *ck, size_t cklen, uint32_t *id,
                   struct mf_error *err, const char *what)
{
	uint8_t buf[4];
	MDB_val v;
	uint32_t n = 1;
	int rc;

	rc = st_db_get(s, s->jobs, ck, cklen, &v, err, "mdb_get id counter");
	if (rc == 0) {
		if (v.mv_size != 4)
			return corrupt(s, err, "id counter", &v);
		n = get32(v.mv_data);
	} else if (rc != -ENOENT) {
		return rc;
	}
	if (n == 0 || n == UINT32_MAX) {
		mf_err_set(err, -EOVERFLOW, "state %s: out of %s ids", s->dir, what);
		return -EOVERFLOW;
	}
	put32(buf, n + 1);
	rc = st_db_put(s, s->jobs, ck, cklen, buf, 4, err, "mdb_put id counter");
	if (rc)
		return rc;
	*id = n;
	return 0;
}

static int job_id(struct state *s, const char *key, uint32_t *job, int create,
                  struct mf_error *err)
{
	uint8_t k[STATE_KEY_MAX], idb[4];
	size_t len = strlen(key), klen;
	MDB_val v;
	uint32_t id;
	int rc;

	if (len == 0) {
		mf_err_set(err, -EINVAL, "state %s: empty job key", s->dir);
		return -EINVAL;
	}
	rc = st_txn_need(s, err);
	if (!rc)
		rc = name_key(s, k, &klen, NULL, 0, key, len, err);
	if (rc)
		return rc;
	rc = st_db_get(s, s->jobs, k, klen, &v, err, "mdb_get jobs");
	if (rc == 0) {
		if (v.mv_size != 4)
			return corrupt(s, err, "jobs", &v);
		*job = get32(v.mv_data);
		return 0;
	}
	if (rc != -ENOENT || !create)
		return rc;
	rc = next_id(s, KEY_NEXT_JOB, sizeof(KEY_NEXT_JOB), &id, err, "job");
	if (rc)
		return rc;
	put32(idb, id);
	rc = st_db_put(s, s->jobs, k, klen, idb, 4, err, "mdb_put jobs");
	if (rc)
		return rc;
	*job = id;
	return 0;
}

static int mbox_id(struct state *s, uint32_t job, const char *name, size_t len, uint32_t *mbid,
                   int *created, int create, struct mf_error *err)
{
	uint8_t k[STATE_KEY_MAX], pfx[4], ck[6] = {0, 'm'}, idb[4];
	size_t klen;
	MDB_val v;
	uint32_t id;
	int rc;

	if (created)
		*created = 0;
	if (len >= STATE_NAME_MAX) {
		mf_err_set(err, -ENAMETOOLONG,
		           "state %s: job %u: mailbox name too long (%zu bytes, max %d)", s->dir,
		           job, len, STATE_NAME_MAX - 1);
		return -ENAMETOOLONG;
	}
	put32(pfx, job);
	rc = st_txn_need(s, err);
	if (!rc)
		rc = name_key(s, k, &klen, pfx, 4, name, len, err);
	if (rc)
		return rc;
	rc = st_db_get(s, s->mbnames, k, klen, &v, err, "mdb_get mbnames");
	if (rc == 0) {
		if (v.mv_size != 4)
			return corrupt(s, err, "mbnames", &v);
		*mbid = get32(v.mv_data);
		return 0;
	}
	if (rc != -ENOENT || !create)
		return rc;
	put32(ck + 2, job);
	rc = next_id(s, ck, sizeof(ck), &id, err, "mailbox");
	if (rc)
		return rc;
	put32(idb, id);
	rc = st_db_put(s, s->mbnames, k, klen, idb, 4, err, "mdb_put mbnames");
	if (rc)
		return rc;
	*mbid = id;
	if (created)
		*created = 1;
	return 0;
}

int state_job(struct state *s, const char *key, uint32_t *job, struct mf_error *err)
{
	return job_id(s, key, job, 1, err);
}

int state_job_find(struct state *s, const char *key, uint32_t *job, struct mf_error *err)
{
	return job_id(s, key, job, 0, err);
}

int state_mbox_id(struct state *s, uint32_t job, const char *name, size_t len, uint32_t *mbid,
                  int *created, struct mf_error *err)
{
	return mbox_id(s, job, name, len, mbid, created, 1, err);
}

int state_mbox_find(struct state *s, uint32_t job, const char *name, size_t len, uint32_t *mbid,
                    struct mf_error *err)
{
	return mbox_id(s, job, name, len, mbid, NULL, 0, err);
}

/* ---- POP3 unique-ids ---- */

static int uidl_id(struct state *s, uint32_t job, uint32_t mbid, const char *uidl, size_t len,
                   uint32_t *id, int *created, int create, struct mf_error *err)
{
	uint8_t k[8 + STATE_UIDL_MAX], ck[10] = {0, 'u'}, idb[4];
	MDB_val v;
	uint32_t n;
	int rc;

	if (created)
		*created = 0;
	if (!len || len > STATE_UIDL_MAX) {
		mf_err_set(err, -EINVAL, "state %s: unique-id of %zu bytes (1 to %d)", s->dir, len,
		           STATE_UIDL_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)uidl[i] < 0x21 || (unsigned char)uidl[i] > 0x7e) {
			mf_err_set(err, -EINVAL,
			           "state %s: unique-id with byte 0x%02x (RFC 1939 section 7)", s->dir,
			           (unsigned char)uidl[i]);
			return -EINVAL;
		}
	key_mbox(k, job, mbid);
	memcpy(k + 8, uidl, len);
	rc = st_txn_need(s, err);
	if (rc)
		return rc;
	rc = st_db_get(s, s->uidls, k, 8 + len, &v, err, "mdb_get uidls");
	if (rc == 0) {
		if (v.mv_size != 4)
			return corrupt(s, err, "uidls", &v);
		*id = get32(v.mv_data);
		return 0;
	}
	if (rc != -ENOENT || !create)
		return rc;
	key_mbox(ck + 2, job, mbid);
	rc = next_id(s, ck, sizeof(ck), &n, err, "unique-id");
	if (rc)
		return rc;
	put32(idb, n);
	rc = st_db_put(s, s->uidls, k, 8 + len, idb, 4, err, "mdb_put uidls");
	if (rc)
		return rc;
	*id = n;
	if (created)
		*created = 1;
	return 0;
}

int state_uidl_id(struct state *s, uint32_t job, uint32_t mbid, const char *uidl, size_t len,
                  uint32_t *id, int *created, struct mf_error *err)
{
	return uidl_id(s, job, mbid, uidl, len, id, created, 1, err);
}

int state_uidl_find(struct state *s, uint32_t job, uint32_t mbid, const char *uidl, size_t len,
                    uint32_t *id, struct mf_error *err)
{
	return uidl_id(s, job, mbid, uidl, len, id, NULL, 0, err);
}

int state_mbox_rename(struct state *s, uint32_t job, uint32_t mbid, const char *old,
                      size_t oldlen, const char *name, size_t len, struct mf_error *err)
{
	uint8_t k[STATE_KEY_MAX], pfx[4], idb[4];
	size_t klen;
	int rc;

	if (len >= STATE_NAME_MAX || oldlen >= STATE_NAME_MAX) {
		mf_err_set(err, -ENAMETOOLONG, "state %s: job %u: mailbox name too long", s->dir,
		           job);
		return -ENAMETOOLONG;
	}
	put32(pfx, job);
	put32(idb, mbid);
	rc = st_txn_need(s, err);
	if (!rc)
		rc = name_key(s, k, &klen, pfx, 4, old, oldlen, err);
	if (!rc) {
		rc = db_del(s, s->mbnames, k, klen, err, "mdb_del mbnames");
		if (rc == -ENOENT)
			rc = 0;
	}
	if (!rc)
		rc = name_key(s, k, &klen, pfx, 4, name, len, err);
	if (!rc)
		rc = st_db_put(s, s->mbnames, k, klen, idb, 4, err, "mdb_put mbnames");
	return rc;
}

/* ---- selective copies: the filter of a mailbox's last complete pass ----
 * A table of its own, not a field of the mailbox record: a mailferry that
 * predates it opens this state unchanged (it never looks at the table), and
 * this one reads a state without it as "no filter anywhere". */

int state_mbox_filter_get(struct state *s, uint32_t job, uint32_t mbid, uint64_t *id,
                          struct mf_error *err)
{
	uint8_t k[8];
	MDB_val v;
	int rc;

	*id = 0;
	rc = st_txn_need(s, err);
	if (rc)
		return rc;
	key_mbox(k, job, mbid);
	rc = st_db_get(s, s->filters, k, sizeof(k), &v, err, "mdb_get filters");
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	if (v.mv_size != 9 || ((const uint8_t *)v.mv_data)[0] != STATE_REC_V1)
		return corrupt(s, err, "filters", &v);
	*id = get64((const uint8_t *)v.mv_data + 1);
	return 0;
}

int state_mbox_filter_put(struct state *s, uint32_t job, uint32_t mbid, uint64_t id,
                          struct mf_error *err)
{
	uint8_t k[8], v[9];
	int rc;

	rc = st_txn_need(s, err);
	if (rc)
		return rc;
	key_mbox(k, job, mbid);
	if (!id) {
		rc = db_del(s, s->filters, k, sizeof(k), err, "mdb_del filters");
		return rc == -ENOENT ? 0 : rc;
	}
	v[0] = STATE_REC_V1;
	put64(v + 1, id);
	return st_db_put(s, s->filters, k, sizeof(k), v, sizeof(v), err, "mdb_put filters");
}

/* ---- mailbox records ---- */

static int mbox_decode(struct state *s, const MDB_val *v, struct state_mbox *r,
                       struct mf_error *err, uint32_t job, uint32_t mbid)
{
	const uint8_t *p = v->mv_data;
	size_t n = v->mv_size, nl, dl;
	char what[64];

	snprintf(what, sizeof(what), "mailboxes (job %u mbox %u)", job, mbid);
	if (n < STATE_MBOX_FIXED + 4 || p[0] != STATE_REC_V1)
		return corrupt(s, err, what, v);
	nl = get16(p + STATE_MBOX_FIXED);
	if (nl >= STATE_NAME_MAX || n < STATE_MBOX_FIXED + 4 + nl)
		return corrupt(s, err, what, v);
	dl = get16(p + STATE_MBOX_FIXED + 2 + nl);
	if (dl >= STATE_NAME_MAX || n != STATE_MBOX_FIXED + 4 + nl + dl)
		return corrupt(s, err, what, v);
	r->uidvalidity = get32(p + 1);
	r->uidnext = get32(p + 5);
	r->highestmodseq = get64(p + 9);
	r->dst_uidvalidity = get32(p + 17);
	r->last_uid = get32(p + 21);
	r->synced_at = get64(p + 25);
	r->messages = get32(p + 33);
	r->intents = get32(p + 37);
	r->intent_at_ms = get64(p + 41);
	memcpy(r->name, p + STATE_MBOX_FIXED + 2, nl);
	r->name[nl] = '\0';
	memcpy(r->dst_name, p + STATE_MBOX_FIXED + 4 + nl, dl);
	r->dst_name[dl] = '\0';
	return 0;
}

int state_mbox_get(struct state *s, uint32_t job, uint32_t mbid, struct state_mbox *rec,
                   struct mf_error *err)
{
	uint8_t k[8];
	MDB_val v;
	int rc;

	memset(rec, 0, sizeof(*rec));
	rc = st_txn_need(s, err);
	if (rc)
		return rc;
	key_mbox(k, job, mbid);
	rc = st_db_get(s, s->mboxes, k, sizeof(k), &v, err, "mdb_get mailboxes");
	if (rc)
		return rc;
	rc = mbox_decode(s, &v, rec, err, job, mbid);
	if (rc)
		memset(rec, 0, sizeof(*rec));
	return rc;
}

int state_mbox_put(struct state *s, uint32_t job, uint32_t mbid, const struct state_mbox *rec,
                   struct mf_error *err)
{
	uint8_t k[8], v[STATE_MBOX_FIXED + 4 + 2 * STATE_NAME_MAX], *p;
	size_t nl = strnlen(rec->name, STATE_NAME_MAX);
	size_t dl = strnlen(rec->dst_name, STATE_NAME_MAX);
	int rc;

	if (nl == STATE_NAME_MAX || dl == STATE_NAME_MAX) {
		mf_err_set(err, -EINVAL, "state %s: job %u mbox %u: name not NUL-terminated",
		           s->dir, job, mbid);
		return -EINVAL;
	}
	rc = st_txn_need(s, err);
	if (rc)
		return rc;
	v[0] = STATE_REC_V1;
	put32(v + 1, rec->uidvalidity);
	put32(v + 5, rec->uidnext);
	put64(v + 9, rec->highestmodseq);
	put32(v + 17, rec->dst_uidvalidity);
	put32(v + 21, rec->last_uid);
	put64(v + 25, rec->synced_at);
	put32(v + 33, rec->messages);
	put32(v + 37, rec->intents);
	put64(v + 41, rec->intent_at_ms);
	p = v + STATE_MBOX_FIXED;
	put16(p, (uint16_t)nl);
	memcpy(p + 2, rec->name, nl);
	p += 2 + nl;
	put16(p, (uint16_t)dl);
	memcpy(p + 2, rec->dst_name, dl);
	p += 2 + dl;
	key_mbox(k, job, mbid);
	return st_db_put(s, s->mboxes, k, sizeof(k), v, (size_t)(p - v), err, "mdb_put mailboxes");
}

/* ---- ordered scans ---- */

typedef int (*scan_fn)(struct state *s, const uint8_t *k, size_t klen, const MDB_val *v, void *arg,
                       struct mf_error *err);

/*
 * Visits keys >= start that share its first plen bytes, ascending. visit may
 * call back into the state (write, delete, even commit): afterwards the scan
 * re-seeks just past the last key instead of trusting the cursor. Returns 0
 * at the end of the range, visit's non-zero value if it stopped, or an error.
 */
static int scan(struct state *s, MDB_dbi dbi, const uint8_t *start, size_t slen, size_t plen,
                scan_fn visit, void *arg, struct mf_error *err, const char *what)
{
	uint8_t pos[STATE_KEY_MAX + 1];
	size_t poslen = slen;
	MDB_cursor *c = NULL;
	MDB_cursor_op op = MDB_SET_RANGE;
	unsigned long gen = 0, tgen = 0;
	int rc = 0;

	memcpy(pos, start, slen);
	for (;;) {
		MDB_val k = {poslen, pos}, v;

		if (!c) {
			rc = st_txn_need(s, err);
			if (rc)
				break;
			rc = mdb_cursor_open(s->txn, dbi, &c);
			if (rc) {
				c = NULL;
				rc = st_lmdb_fail(s, rc, err, "mdb_cursor_open");
				break;
			}
			tgen = s->txn_gen;
			gen = s->gen;
			op = poslen ? MDB_SET_RANGE : MDB_FIRST;
		}
		rc = mdb_cursor_get(c, &k, &v, op);
		if (rc == MDB_NOTFOUND) {
			rc = 0;
			break;
		}
		if (rc) {
			rc = st_lmdb_fail(s, rc, err, what);
			break;
		}
		if (k.mv_size < plen || k.mv_size > STATE_KEY_MAX || memcmp(k.mv_data, start, plen))
			break;
		memcpy(pos, k.mv_data, k.mv_size);
		poslen = k.mv_size;
		rc = visit(s, pos, poslen, &v, arg, err);
		if (rc)
			break;
		if (s->txn_gen != tgen) {
			c = NULL; /* LMDB freed it with its transaction */
		} else if (s->gen != gen) {
			gen = s->gen;
			op = MDB_SET_RANGE;
		} else {
			op = MDB_NEXT;
			continue;
		}
		pos[poslen++] = 0; /* the smallest key after the one just visited */
	}
	if (c && s->txn_gen == tgen)
		mdb_cursor_close(c);
	return rc;
}

struct mbox_scan {
	uint32_t job;
	int (*fn)(void *ctx, uint32_t mbid, const struct state_mbox *rec);
	void *ctx;
	struct state_mbox rec;
};

static int mbox_visit(struct state *s, const uint8_t *k, size_t klen, const MDB_val *v, void *arg,
                      struct mf_error *err)
{
	struct mbox_scan *ms = arg;
	uint32_t mbid;
	int rc;

	if (klen != 8) {
		mf_err_set(err, -EIO, "state %s: mailboxes: corrupt key (%zu bytes)", s->dir, klen);
		return -EIO;
	}
	mbid = get32(k + 4);
	rc = mbox_decode(s, v, &ms->rec, err, ms->job, mbid);
	if (rc)
		return rc;
	return ms->fn(ms->ctx, mbid, &ms->rec);
}

int state_mbox_each(struct state *s, uint32_t job,
                    int (*fn)(void *ctx, uint32_t mbid, const struct state_mbox *rec), void *ctx,
                    struct mf_error *err)
{
	struct mbox_scan ms;
	uint8_t start[4];

	ms.job = job;
	ms.fn = fn;
	ms.ctx = ctx;
	put32(start, job);
	return scan(s, s->mboxes, start, 4, 4, mbox_visit, &ms, err, "mdb_cursor_get mailboxes");
}

/* ---- message records ---- */

static int msg_decode(struct state *s, const MDB_val *v, struct state_msg *m,
                      const struct state_msg_key *mk, struct mf_error *err)
{
	const uint8_t *p = v->mv_data;
	size_t fl;

	if (v->mv_size < STATE_MSG_FIXED || p[0] != STATE_REC_V1 ||
	    (fl = get16(p + 98)) >= STATE_FLAGS_MAX || v->mv_size != STATE_MSG_FIXED + fl) {
		char what[96];

		snprintf(what, sizeof(what), "messages (job %u mbox %u uidvalidity %u uid %u)",
		         mk->job, mk->mbid, mk->uidvalidity, mk->uid);
		return corrupt(s, err, what, v);
	}
	m->status = p[1];
	memcpy(m->hash, p + 2, 32);
	memcpy(m->nhash, p + 34, 32);
	m->size = get64(p + 66);
	m->modseq = get64(p + 74);
	m->internaldate = get64(p + 82);
	m->dst_uidvalidity = get32(p + 90);
	m->dst_uid = get32(p + 94);
	memcpy(m->flags, p + STATE_MSG_FIXED, fl);
	m->flags[fl] = '\0';
	return 0;
}

int state_msg_get(struct state *s, const struct state_msg_key *k, struct state_msg *m,
                  struct mf_error *err)
{
	uint8_t kb[16];
	MDB_val v;
	int rc;

	rc = st_txn_need(s, err);
	if (rc)
		return rc;
	key_msg(kb, k);
	rc = st_db_get(s, s->msgs, kb, sizeof(kb), &v, err, "mdb_get messages");
	if (rc)
		return rc;
	return msg_decode(s, &v, m, k, err);
}

int state_msg_put(struct state *s, const struct state_msg_key *k, const struct state_msg *m,
                  struct mf_error *err)
{
	uint8_t kb[16], v[STATE_MSG_FIXED + STATE_FLAGS_MAX];
	size_t fl = strnlen(m->flags, STATE_FLAGS_MAX);
	char what[96];
	int rc;

	if (fl == STATE_FLAGS_MAX) {
		mf_err_set(err, -EINVAL,
		           "state %s: job %u mbox %u uidvalidity %u uid %u: flags not "
		           "NUL-terminated",
		           s->dir, k->job, k->mbid, k->uidvalidity, k->uid);
		return -EINVAL;
	}
	rc = st_txn_need(s, err);
	if (rc)
		return rc;
	v[0] = STATE_REC_V1;
	v[1] = m->status;
	memcpy(v + 2, m->hash, 32);
	memcpy(v + 34, m->nhash, 32);
	put64(v + 66, m->size);
	put64(v + 74, m->modseq);
	put64(v + 82, m->internaldate);
	put32(v + 90, m->dst_uidvalidity);
	put32(v + 94, m->dst_uid);
	put16(v + 98, (uint16_t)fl);
	memcpy(v + STATE_MSG_FIXED, m->flags, fl);
	key_msg(kb, k);
	snprintf(what, sizeof(what), "mdb_put messages (job %u mbox %u uidvalidity %u uid %u)",
	         k->job, k->mbid, k->uidvalidity, k->uid);
	return st_db_put(s, s->msgs, kb, sizeof(kb), v, STATE_MSG_FIXED + fl, err, what);
}

/* Deleting a message that is not recorded is not an error (expunge is idempotent). */
int state_msg_del(struct state *s, const struct state_msg_key *k, struct mf_error *err)
{
	uint8_t kb[16];
	int rc;

	rc = st_txn_need(s, err);
	if (rc)
		return rc;
	key_msg(kb, k);
	rc = db_del(s, s->msgs, kb, sizeof(kb), err, "mdb_del messages");
	return rc == -ENOENT ? 0 : rc;
}

struct msg_scan {
	int (*fn)(void *ctx, uint32_t uid, const struct state_msg *m);
	void *ctx;
	uint64_t count;
	struct state_msg m;
};

static int msg_visit(struct state *s, const uint8_t *k, size_t klen, const MDB_val *v, void *arg,
                     struct mf_error *err)
{
	struct msg_scan *ms = arg;
	struct state_msg_key mk;
	int rc;

	if (klen != 16) {
		mf_err_set(err, -EIO, "state %s: messages: corrupt key (%zu bytes)", s->dir, klen);
		return -EIO;
	}
	mk.job = get32(k);
	mk.mbid = get32(k + 4);
	mk.uidvalidity = get32(k + 8);
	mk.uid = get32(k + 12);
	rc = msg_decode(s, v, &ms->m, &mk, err);
	if (rc)
		return rc;
	return ms->fn(ms->ctx, mk.uid, &ms->m);
}

int state_msg_each(struct state *s, uint32_t job, uint32_t mbid, uint32_t uidvalidity,
                   uint32_t from, int (*fn)(void *ctx, uint32_t uid, const struct state_msg *m),
                   void *ctx, struct mf_error *err)
{
	struct msg_scan ms;
	struct state_msg_key mk = {job, mbid, uidvalidity, from};
	uint8_t start[16];

	ms.fn = fn;
	ms.ctx = ctx;
	key_msg(start, &mk);
	return scan(s, s->msgs, start, 16, 12, msg_visit, &ms, err, "mdb_cursor_get messages");
}

static int count_visit(struct state *s, const uint8_t *k, size_t klen, const MDB_val *v, void *arg,
                       struct mf_error *err)
{
	(void)s;
	(void)k;
	(void)klen;
	(void)v;
	(void)err;
	((struct msg_scan *)arg)->count++;
	return 0;
}

int state_msg_count(struct state *s, uint32_t job, uint32_t mbid, uint32_t uidvalidity,
                    uint64_t *count, struct mf_error *err)
{
	struct msg_scan ms;
	struct state_msg_key mk = {job, mbid, uidvalidity, 0};
	uint8_t start[16];
	int rc;

	ms.count = 0;
	key_msg(start, &mk);
	rc = scan(s, s->msgs, start, 16, 12, count_visit, &ms, err, "mdb_cursor_get messages");
	*count = rc ? 0 : ms.count;
	return rc;
}

/* ---- state check: every record decodes ---- */

struct verify {
	MDB_dbi dbi;
	uint64_t n;
	struct state_msg m;
	struct state_mbox mb;
};

static int verify_visit(struct state *s, const uint8_t *k, size_t klen, const MDB_val *v, void *arg,
                        struct mf_error *err)
{
	struct verify *vf = arg;

	vf->n++;
	if (vf->dbi == s->msgs) {
		struct state_msg_key mk;

		if (klen != 16) {
			mf_err_set(err, -EIO, "state %s: messages: corrupt key (%zu bytes)", s->dir,
			           klen);
			return -EIO;
		}
		mk = (struct state_msg_key){get32(k), get32(k + 4), get32(k + 8), get32(k + 12)};
		return msg_decode(s, v, &vf->m, &mk, err);
	}
	if (vf->dbi == s->mboxes) {
		if (klen != 8) {
			mf_err_set(err, -EIO, "state %s: mailboxes: corrupt key (%zu bytes)",
			           s->dir, klen);
			return -EIO;
		}
		return mbox_decode(s, v, &vf->mb, err, get32(k), get32(k + 4));
	}
	if (v->mv_size != 4)
		return corrupt(s, err, vf->dbi == s->jobs ? "jobs" : "mbnames", v);
	return 0;
}

int state_verify(struct state *s, uint64_t counts[4], struct mf_error *err)
{
	MDB_dbi dbis[4] = {s->jobs, s->mbnames, s->mboxes, s->msgs};
	static const char *const what[4] = {"mdb_cursor_get jobs", "mdb_cursor_get mbnames",
	                                    "mdb_cursor_get mailboxes", "mdb_cursor_get messages"};
	struct verify *vf = malloc(sizeof(*vf));
	int rc = 0;

	if (!vf) {
		mf_err_set(err, -ENOMEM, "state %s: out of memory", s->dir);
		return -ENOMEM;
	}
	for (int i = 0; i < 4 && !rc; i++) {
		vf->dbi = dbis[i];
		vf->n = 0;
		rc = scan(s, dbis[i], (const uint8_t *)"", 0, 0, verify_visit, vf, err, what[i]);
		counts[i] = vf->n;
	}
	free(vf);
	return rc;
}

/* ---- for tests/fuzz/fuzz_state_decode.c ---- */

int state_rec_decode(int msg, const void *p, size_t n, struct state_mbox *mb, struct state_msg *m,
                     struct mf_error *err)
{
	struct state s = {.dir = (char *)"(decode)"};
	MDB_val v = {n, (void *)p};
	struct state_msg_key mk = {0, 0, 0, 0};

	return msg ? msg_decode(&s, &v, m, &mk, err) : mbox_decode(&s, &v, mb, err, 0, 0);
}
