/*
 * state_open — opening the state: the directory (created private), the
 * lock that keeps a second run out, the LMDB environment and its tables,
 * the map size, creating a new state durably and setting a damaged one
 * aside (--state-reset). See state.c for the layout.
 *
 * Not for: records (state.c).
 */
#include "store/state_int.h"
#include "store/state_check.h"
#include "store/lmdb_code.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int mkdir_p(const char *dir, struct mf_error *err)
{
	size_t n = strlen(dir);
	char *p = malloc(n + 1);
	struct stat st;
	size_t i;

	if (!p) {
		mf_err_set(err, -ENOMEM, "state %s: out of memory", dir);
		return -ENOMEM;
	}
	memcpy(p, dir, n + 1);
	for (i = 1; i <= n; i++) {
		if (p[i] != '/' && p[i] != '\0')
			continue;
		if (p[i - 1] == '/')
			continue;
		p[i] = '\0';
		/* 0700: the state names accounts and mailboxes. */
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			int e = errno;

			mf_err_set(err, -e, "state %s: mkdir %s: %s", dir, p, strerror(e));
			free(p);
			return -e;
		}
		if (i < n)
			p[i] = '/';
	}
	free(p);
	if (stat(dir, &st) < 0) {
		int e = errno;

		mf_err_set(err, -e, "state %s: stat: %s", dir, strerror(e));
		return -e;
	}
	if (!S_ISDIR(st.st_mode)) {
		mf_err_set(err, -ENOTDIR, "state %s: not a directory", dir);
		return -ENOTDIR;
	}
	return 0;
}


static int lock_dir(struct state *s, struct mf_error *err)
{
	size_t n = strlen(s->dir) + sizeof("/lock");
	char *path = malloc(n);
	struct stat st;
	int fd;

	if (!path) {
		mf_err_set(err, -ENOMEM, "state %s: out of memory", s->dir);
		return -ENOMEM;
	}
	snprintf(path, n, "%s/lock", s->dir);
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;

		if (e == ELOOP) {
			mf_err_set(err, -EPERM, "state %s: lock is a symbolic link: refusing it",
			           s->dir);
			e = EPERM;
		} else {
			mf_err_set(err, -e, "state %s: open %s: %s", s->dir, path, strerror(e));
		}
		free(path);
		return -e;
	}
	free(path);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		close(fd);
		mf_err_set(err, -EPERM,
		           "state %s: lock is not a regular file of this user: refusing it",
		           s->dir);
		return -EPERM;
	}
	/*
	 * LMDB itself would let two processes share the environment, but two
	 * migrations writing the same state would each trust ids and intents
	 * the other is changing. flock is per open file, so a second open in
	 * this process is refused too, which also keeps LMDB's own rule (one
	 * environment per file per process).
	 */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		close(fd);
		if (e == EWOULDBLOCK) {
			mf_err_set(err, -EBUSY, "state %s is in use by another mailferry process",
			           s->dir);
			return -EBUSY;
		}
		mf_err_set(err, -e, "state %s: flock lock: %s", s->dir, strerror(e));
		return -e;
	}
	s->lock_fd = fd;
	return 0;
}

static size_t map_size_wanted(void)
{
	/* Operators (and the MAP_FULL test) may cap the map; it is sparse. */
	const char *env = getenv("MAILFERRY_STATE_MAP_MIB");

	if (env && *env) {
		char *end;
		unsigned long long mib = strtoull(env, &end, 10);

		if (*end == '\0' && mib > 0 && mib <= SIZE_MAX / STATE_MIB)
			return (size_t)mib * STATE_MIB;
	}
	return sizeof(size_t) >= 8 ? (size_t)64 << 30 : (size_t)1 << 30;
}

static int env_open(struct state *s, const char *path, unsigned flags, struct mf_error *err)
{
	size_t size = map_size_wanted();
	int rc;

	for (;;) {
		rc = mdb_env_create(&s->env);
		if (rc) {
			s->env = NULL;
			return st_lmdb_fail(s, rc, err, "mdb_env_create");
		}
		rc = mdb_env_set_maxdbs(s->env, 8);
		if (!rc)
			rc = mdb_env_set_mapsize(s->env, size);
		if (rc) {
			mdb_env_close(s->env);
			s->env = NULL;
			return st_lmdb_fail(s, rc, err, "mdb_env_set_mapsize");
		}
		/* No read-only transactions are used, so no reader slots are tied to threads. */
		rc = mdb_env_open(s->env, path, MDB_NOTLS | flags, 0600);
		if (!rc)
			break;
		mdb_env_close(s->env);
		s->env = NULL;
		/* An address-space limit (ulimit -v) refuses the big mapping: shrink. */
		if (rc == ENOMEM && size > ((size_t)1 << 30)) {
			size /= 2;
			continue;
		}
		return st_lmdb_fail(s, rc, err, "mdb_env_open");
	}
	s->map_size = size;
	return 0;
}

static int open_dbs(struct state *s, struct mf_error *err)
{
	static const char *const names[] = {"jobs", "mbnames", "mailboxes", "messages", "uidls",
	                                    "filters"};
	MDB_dbi *dbis[] = {&s->jobs, &s->mbnames, &s->mboxes, &s->msgs, &s->uidls, &s->filters};
	uint8_t fmt[4];
	MDB_val v;
	size_t i;
	int rc;

	rc = st_txn_need(s, err);
	if (rc)
		return rc;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		rc = mdb_dbi_open(s->txn, names[i], MDB_CREATE, dbis[i]);
		if (rc) {
			char what[64];

			snprintf(what, sizeof(what), "mdb_dbi_open %s", names[i]);
			return st_lmdb_fail(s, rc, err, what);
		}
	}
	rc = st_db_get(s, s->jobs, KEY_FORMAT, sizeof(KEY_FORMAT), &v, err, "mdb_get format");
	if (rc == -ENOENT) {
		put32(fmt, STATE_FORMAT);
		rc = st_db_put(s, s->jobs, KEY_FORMAT, sizeof(KEY_FORMAT), fmt, 4, err,
		            "mdb_put format");
	} else if (rc == 0) {
		uint32_t f = v.mv_size == 4 ? get32(v.mv_data) : 0;

		if (f != STATE_FORMAT) {
			mf_err_set(err, -EINVAL,
			           "state %s: format %u is not supported (this mailferry reads %u)",
			           s->dir, f, STATE_FORMAT);
			return -EINVAL;
		}
	}
	if (rc)
		return rc;
	return state_commit(s, err);
}

/* A new data.mdb must survive a crash too: its directory entry is not LMDB's job. */
static int sync_dir(struct state *s, struct mf_error *err)
{
	int fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || fsync(fd) < 0) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		mf_err_set(err, -e, "state %s: fsync directory: %s", s->dir, strerror(e));
		return -e;
	}
	close(fd);
	return 0;
}

/*
 * A new state is made under another name and renamed into place once its
 * first commit is durable: a run killed while creating it leaves no empty
 * or half-written data.mdb, so one that exists and is empty is damage
 * (issue 15), never "new".
 */
static int env_create(struct state *s, struct mf_error *err)
{
	char tmp[4200], lock[4300], final[4200];
	int rc;

	snprintf(tmp, sizeof(tmp), "%s/data.mdb.new", s->dir);
	snprintf(lock, sizeof(lock), "%s-lock", tmp);
	snprintf(final, sizeof(final), "%s/data.mdb", s->dir);
	if ((unlink(tmp) < 0 && errno != ENOENT) || (unlink(lock) < 0 && errno != ENOENT)) {
		int e = errno;

		mf_err_set(err, -e, "state %s: remove data.mdb.new: %s", s->dir, strerror(e));
		return -e;
	}
	rc = env_open(s, tmp, MDB_NOSUBDIR, err);
	if (!rc)
		rc = open_dbs(s, err);
	if (s->txn) {
		mdb_txn_abort(s->txn);
		st_txn_end(s);
	}
	if (s->env)
		mdb_env_close(s->env);
	s->env = NULL;
	if (rc)
		return rc;
	if (rename(tmp, final) < 0) {
		int e = errno;

		mf_err_set(err, -e, "state %s: rename data.mdb.new: %s", s->dir, strerror(e));
		return -e;
	}
	unlink(lock);
	return sync_dir(s, err);
}

/* --state-reset: the old data.mdb is kept beside, under a name that says
 * when; LMDB's lock.mdb holds nothing worth keeping. */
static int reset_aside(struct state *s, struct mf_error *err)
{
	char from[4200], to[4300], when[32];
	time_t now = time(NULL);
	struct tm tm;

	snprintf(from, sizeof(from), "%s/data.mdb", s->dir);
	strftime(when, sizeof(when), "%Y%m%d-%H%M%S", localtime_r(&now, &tm));
	snprintf(to, sizeof(to), "%s/data.mdb.damaged-%s", s->dir, when);
	if (!access(to, F_OK))
		snprintf(to, sizeof(to), "%s/data.mdb.damaged-%s-%ld", s->dir, when,
		         (long)getpid());
	if (rename(from, to) < 0) {
		int e = errno;

		if (e != ENOENT) {
			mf_err_set(err, -e, "state %s: --state-reset: rename data.mdb: %s", s->dir,
			           strerror(e));
			return -e;
		}
		mf_log(MF_LOG_WARN, "state %s: --state-reset: no data.mdb; starting a new state",
		       s->dir);
	} else {
		mf_log(MF_LOG_WARN,
		       "state %s: --state-reset: data.mdb moved aside to %s; starting a "
		       "new state",
		       s->dir, to + strlen(s->dir) + 1);
	}
	snprintf(from, sizeof(from), "%s/lock.mdb", s->dir);
	if (unlink(from) < 0 && errno != ENOENT) {
		int e = errno;

		mf_err_set(err, -e, "state %s: --state-reset: remove lock.mdb: %s", s->dir,
		           strerror(e));
		return -e;
	}
	return 0;
}

int state_open(struct state **out, const char *dir, struct mf_error *err)
{
	return state_open_flags(out, dir, 0, err);
}

int state_open_flags(struct state **out, const char *dir, unsigned flags, struct mf_error *err)
{
	struct state_check_info info;
	struct state *s;
	int rc;

	*out = NULL;
	if (!dir || !*dir) {
		mf_err_set(err, -EINVAL, "state: empty directory name");
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s || !(s->dir = strdup(dir))) {
		free(s);
		mf_err_set(err, -ENOMEM, "state %s: out of memory", dir);
		return -ENOMEM;
	}
	s->lock_fd = -1;
	rc = mkdir_p(dir, err);
	if (!rc)
		rc = state_dir_check(dir, err);
	if (!rc)
		rc = lock_dir(s, err);
	if (!rc && (flags & STATE_OPEN_RESET))
		rc = reset_aside(s, err);
	if (!rc)
		rc = state_check_sealed(dir, &info, err);
	if (!rc && !info.exists)
		rc = env_create(s, err);
	if (!rc)
		rc = env_open(s, s->dir, 0, err);
	if (!rc)
		rc = open_dbs(s, err);
	if (!rc)
		rc = sync_dir(s, err);
	if (!rc)
		st_map_find(s);
	if (rc) {
		if (s->txn)
			mdb_txn_abort(s->txn);
		if (s->env)
			mdb_env_close(s->env);
		if (s->lock_fd >= 0)
			close(s->lock_fd);
		free(s->dir);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void state_close(struct state *s)
{
	struct mf_error e = {0, ""};

	if (!s)
		return;
	int rc = state_commit(s, &e);

	if (rc < 0)
		mf_log(MF_LOG_ERROR, "%s", e.msg);
	mdb_env_close(s->env);
	if (rc == 0)
		state_seal(s->dir); /* under the lock still */
	close(s->lock_fd); /* releases the flock */
	free(s->dir);
	free(s);
}
