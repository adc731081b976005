/*
 * archive — packs of zstd frames plus an LMDB index (see archive.h).
 *
 * This file owns the directory, the lock, the LMDB environment, opening,
 * closing and committing. The rest is split along its seams:
 *   archive_idx.c   index transactions, sealed record get/put, counters,
 *                   the committed-run list
 *   archive_pack.c  the pack writer: dictionaries, frames, messages in
 *   archive_read.c  the reader: one cached decompressed frame, so
 *                   consecutive messages of one frame decompress it once
 *   archive_runs.c  runs, mailboxes and per-UID versions
 *   archive_ops.c   verify, stats, prune
 * Encodings are in archive_fmt.c.
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
#include "store/state_check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const archive_flag_names[ARCHIVE_F_COUNT] = {"\\Seen", "\\Answered", "\\Flagged",
                                                       "\\Deleted", "\\Draft"};

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
	/* every frame written, so every record waiting for one is put */
	if ((rc = arc_frame_flush(a, err)) || (rc = arc_zp_reap(a, 1, err)))
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
		if (a->commit_nometasync)
			mdb_env_set_flags(a->env, MDB_NOMETASYNC, 1);
		rc = mdb_txn_commit(a->txn);
		if (a->commit_nometasync)
			mdb_env_set_flags(a->env, MDB_NOMETASYNC, 0);
		a->txn = NULL;
		if (rc) {
			mf_err_set(err, mf_lmdb_code(rc),
			           "archive %s: mdb_txn_commit: %s; writes since the last commit "
			           "were dropped",
			           a->dir, mdb_strerror(rc));
			return mf_lmdb_code(rc);
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

int arc_maybe_commit(struct archive *a, struct mf_error *err)
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

	/* The writer opens without LMDB's lock: the archive's flock keeps one
	 * writer process (and no reader beside it), and `backup` passes the
	 * write transaction between its loop and its writer thread
	 * (engine/sync/arc_writer.h), one at a time, which LMDB's own
	 * thread-owned writer mutex would refuse. */
	for (;;) {
		if ((rc = mdb_env_create(&a->env)))
			return arc_lmdb_fail(a, rc, err, "mdb_env_create");
		mdb_env_set_maxdbs(a->env, 16);
		mdb_env_set_mapsize(a->env, size);
		rc = mdb_env_open(a->env, idx, MDB_NOTLS | (rdonly ? MDB_RDONLY : MDB_NOLOCK), 0600);
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
		a->fresh = 1;
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
	a->cctx = ZSTD_createCCtx();
	a->samp_goal = ARCHIVE_SAMPLE_GOAL;
	if (!a->fbuf || !a->cctx || msghash_init(&a->h))
		return -ENOMEM;
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

/* Nothing stored, no run, no mailbox, no dictionary: still a new archive. */
static int archive_empty(struct archive *a)
{
	const MDB_dbi dbs[] = {a->objects, a->runs, a->mboxes, a->dicts_db, a->packs_db, a->accts};
	MDB_stat st;

	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++)
		if (mdb_stat(a->txn, dbs[i], &st) || st.ms_entries)
			return 0;
	return 1;
}

/* The archive's encryption, set up or checked once its format is known
 * (a->fresh: this open created it). */
static int crypt_setup(struct archive *a, const struct archive_secret *s, struct mf_error *err)
{
	uint8_t buf[ACRYPT_PARAMS_LEN];
	struct acrypt_params p;
	MDB_val k = {5, (void *)"crypt"}, v;
	int rc, lr;

	if ((rc = arc_txn(a, err)))
		return rc;
	lr = mdb_get(a->txn, a->meta, &k, &v);
	if (lr && lr != MDB_NOTFOUND)
		return arc_lmdb_fail(a, lr, err, "mdb_get");
	if (lr == MDB_NOTFOUND) {
		if (s && s->encrypt && !a->fresh && !(a->flags & ARCHIVE_OPEN_RDONLY) &&
		    archive_empty(a))
			a->fresh = 1; /* created by a run that stored nothing */
		if (s && s->encrypt && !a->fresh) {
			mf_err_set(err, -EINVAL,
			           "archive %s exists and is not encrypted (--encrypt applies "
			           "to a new archive only)",
			           a->dir);
			return -EINVAL;
		}
		if (!s || !s->encrypt) {
			if (s && s->pass)
				mf_log(MF_LOG_WARN,
				       "archive %s is not encrypted: the passphrase is not used",
				       a->dir);
			return 0;
		}
		if (!s->pass) {
			mf_err_set(err, -EINVAL, "archive %s: encryption needs a passphrase",
			           a->dir);
			return -EINVAL;
		}
		if ((rc = acrypt_params_new(&p, s->scrypt_log2n, err)) ||
		    (rc = acrypt_derive(&a->crypt, &p, s->pass, s->passlen, 1, err)))
			goto named;
		acrypt_params_encode(&p, buf);
		v.mv_size = sizeof(buf);
		v.mv_data = buf;
		a->dirty++;
		if ((lr = mdb_put(a->txn, a->meta, &k, &v, 0)))
			return arc_lmdb_fail(a, lr, err, "mdb_put");
	} else {
		if (!s || !s->pass) {
			mf_err_set(err, -EACCES,
			           "archive %s is encrypted: give its passphrase "
			           "(--passphrase-file FILE or MAILFERRY_ARCHIVE_PASSPHRASE_FILE)",
			           a->dir);
			return -EACCES;
		}
		if ((rc = acrypt_params_decode(v.mv_data, v.mv_size, &p, err)) ||
		    (rc = acrypt_derive(&a->crypt, &p, s->pass, s->passlen, 0, err)))
			goto named;
	}
	if (!(a->recbuf = malloc(ARC_RECBUF))) {
		mf_err_set(err, -ENOMEM, "archive %s: out of memory", a->dir);
		return -ENOMEM;
	}
	return 0;
named : {
	char m[MF_ERR_MAX];

	snprintf(m, sizeof(m), "%s", err->msg);
	mf_err_set(err, rc, "archive %s: %s", a->dir, m);
	return rc;
}
}

int archive_encrypted(const struct archive *a)
{
	return a->crypt != NULL;
}

int archive_open(struct archive **out, const char *dir, unsigned flags, struct mf_error *err)
{
	return archive_open_secret(out, dir, flags, NULL, err);
}

int archive_open_secret(struct archive **out, const char *dir, unsigned flags,
                        const struct archive_secret *s, struct mf_error *err)
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
	a->lock_fd = a->wfd = -1;
	arc_fcache_init(&a->rc);
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
	/* LMDB trusts its file; a damaged one is refused here, not by SIGBUS
	 * (its pages walked unless a clean close sealed it as it is). */
	if ((rc = (flags & ARCHIVE_OPEN_WALK) ? state_check(path, &info, err)
	                                      : state_check_sealed(path, &info, err))) {
		char m[MF_ERR_MAX];

		snprintf(m, sizeof(m), "%s", err->msg);
		mf_err_set(err, rc, "archive %s: index: %s", dir, m);
		goto fail;
	}
	if (!(rc = env_open(a, path, err)))
		map_find(a);
	if (rc || (rc = format_check(a, err)) || (rc = crypt_setup(a, s, err)) ||
	    (rc = arc_runs_load(a, err)) || (rc = arc_dicts_load(a, err)) ||
	    (rc = arc_packs_open(a, err)))
		goto fail;
	if (!(flags & ARCHIVE_OPEN_RDONLY) && (rc = archive_commit(a, err)))
		goto fail;
	a->opened = 1;
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
	a->tune.zthreads = t->zthreads;
	if (t->pack_max >= 4096)
		a->tune.pack_max = t->pack_max;
}

void archive_close(struct archive *a)
{
	if (!a)
		return;
	arc_zp_free(a); /* frames not committed are dropped with the index writes */
	if (a->txn)
		mdb_txn_abort(a->txn);
	if (a->env)
		mdb_env_close(a->env);
	if (a->opened && !(a->flags & ARCHIVE_OPEN_RDONLY)) { /* a reader writes nothing */
		char idx[4200];

		snprintf(idx, sizeof(idx), "%s/index", a->dir);
		state_seal(idx); /* under the archive's lock still */
	}
	if (a->wfd >= 0)
		close(a->wfd);
	if (a->lock_fd >= 0)
		close(a->lock_fd);
	for (unsigned i = 0; i < a->ndicts; i++) {
		free(a->dicts[i].bytes);
		ZSTD_freeCDict(a->dicts[i].cd);
		ZSTD_freeDDict(a->dicts[i].dd);
	}
	msghash_free(&a->h);
	acrypt_free(a->crypt);
	free(a->recbuf);
	ZSTD_freeCCtx(a->cctx);
	arc_fcache_free(&a->rc);
	free(a->fbuf);
	free(a->samp);
	free(a->sampsz);
	free(a->runs_ok);
	free(a->dir);
	free(a);
}
