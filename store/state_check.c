/*
 * state_check — the checks a state directory passes before LMDB opens it
 * (see state_check.h): ownership and modes, no planted links, and a
 * page-by-page walk of data.mdb read with pread.
 *
 * Not for: the records themselves (state.c).
 */
#include "store/state.h"
#include "store/state_check.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * The state says what was copied: whoever can write it can make mailferry
 * skip mail or copy it twice, and it names accounts and mailboxes. So the
 * directory must be this user's and writable by nobody else, and its files
 * regular files of this user (lstat: LMDB opens them itself and would
 * follow a planted symlink to any file). A file others may read is made
 * 0600, with a warning.
 */
int state_dir_check(const char *dir, struct mf_error *err)
{
	struct stat st;

	if (stat(dir, &st) < 0) {
		int e = errno;

		mf_err_set(err, -e, "state %s: %s", dir, strerror(e));
		return -e;
	}
	if (!S_ISDIR(st.st_mode)) {
		mf_err_set(err, -ENOTDIR, "state %s: not a directory", dir);
		return -ENOTDIR;
	}
	if (st.st_uid != geteuid()) {
		mf_err_set(err, -EPERM,
		           "state %s: owned by uid %u, not by this user (uid %u): refusing it", dir,
		           (unsigned)st.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if (st.st_mode & 0022) {
		mf_err_set(err, -EPERM,
		           "state %s: writable by %s (mode %04o): refusing it (chmod go-w %s)", dir,
		           st.st_mode & 0002 ? "everyone" : "its group",
		           (unsigned)(st.st_mode & 07777), dir);
		return -EPERM;
	}
	return 0;
}

static int files_check(const char *dir, struct mf_error *err)
{
	static const char *const names[] = {"data.mdb", "lock.mdb", "lock"};
	char path[4200];
	struct stat st;
	int rc;

	if ((rc = state_dir_check(dir, err)))
		return rc;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (lstat(path, &st) < 0) {
			int e = errno;

			if (e == ENOENT)
				continue;
			mf_err_set(err, -e, "state %s: %s: %s", dir, names[i], strerror(e));
			return -e;
		}
		if (S_ISLNK(st.st_mode) || !S_ISREG(st.st_mode)) {
			mf_err_set(err, -EPERM,
			           "state %s: %s is %s, not a regular file: refusing it", dir,
			           names[i], S_ISLNK(st.st_mode) ? "a symbolic link" : "special");
			return -EPERM;
		}
		if (st.st_uid != geteuid()) {
			mf_err_set(err, -EPERM,
			           "state %s: %s is owned by uid %u, not by this user (uid %u): "
			           "refusing it",
			           dir, names[i], (unsigned)st.st_uid, (unsigned)geteuid());
			return -EPERM;
		}
		if (st.st_mode & 0022) {
			mf_err_set(err, -EPERM,
			           "state %s: %s is writable by others (mode %04o): refusing it",
			           dir, names[i], (unsigned)(st.st_mode & 07777));
			return -EPERM;
		}
		if (st.st_mode & 0077) {
			mf_log(MF_LOG_WARN,
			       "state %s: %s was readable by others (mode %04o); made 0600", dir,
			       names[i], (unsigned)(st.st_mode & 07777));
			if (chmod(path, 0600) < 0) {
				int e = errno;

				mf_err_set(err, -e, "state %s: chmod %s: %s", dir, names[i],
				           strerror(e));
				return -e;
			}
		}
	}
	return 0;
}

/* ---- checks before LMDB maps anything (issue 15) ---- */

/*
 * LMDB trusts its file: a data.mdb cut short, or a page number pointing past
 * its end, is read through the map and kills the process with SIGBUS; an
 * empty one is taken for a new environment (and everything would be copied
 * again). So the file is read with pread first and refused unless its meta
 * pages and every reachable page are sound. The layout is LMDB 0.9's
 * (mdb.c, data version 1) on this machine's word size and byte order:
 *   page header: pgno (pgno_t), pad u16, flags u16, lower u16, upper u16
 *                (an overflow page has a u32 page count instead)
 *   meta (after the header): magic u32, version u32, address, mapsize,
 *                MDB_db free, MDB_db main, last_pgno, txnid
 *   MDB_db: pad u32 (the page size, in the free DB of a meta), flags u16,
 *                depth u16, branch, leaf, overflow pages, entries, root
 *   node: lo u16, hi u16, flags u16, ksize u16, key, data
 * Pages are walked from both metas' roots: the free DB, the main DB and the
 * named databases it lists.
 */
#define LM_MAGIC 0xBEEFC0DEu
#define LM_VERSION 1
#define LM_PGNO sizeof(size_t)
#define LM_HDR (LM_PGNO + 8)
#define LM_DB (8 + 5 * LM_PGNO)
#define LM_M_MAPSIZE (8 + LM_PGNO) /* offsets in the meta */
#define LM_M_FREE (8 + 2 * LM_PGNO)
#define LM_M_MAIN (LM_M_FREE + LM_DB)
#define LM_M_LAST (LM_M_FREE + 2 * LM_DB)
#define LM_M_TXNID (LM_M_LAST + LM_PGNO)
#define LM_P_BRANCH 0x01
#define LM_P_LEAF 0x02
#define LM_P_OVERFLOW 0x04
#define LM_P_META 0x08
#define LM_F_BIGDATA 0x01
#define LM_F_SUBDATA 0x02
#define LM_P_INVALID (~(size_t)0)
#define LM_DEPTH_MAX 32

struct lm_walk {
	int fd;
	const char *path;
	size_t psize, last, npages;
	uint8_t *seen; /* bitmap of pages reached from the newest meta */
	uint8_t *page;
	/* read-ahead: pages [win_first, win_first + win_n) as last read */
	uint8_t *win;
	size_t win_first, win_n;
	struct state_check_info *info;
	struct mf_error *err;
};

static size_t lm_word(const uint8_t *p)
{
	size_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint16_t lm_u16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

static uint32_t lm_u32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static int lm_bad(struct lm_walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int lm_bad(struct lm_walk *w, const char *fmt, ...)
{
	char what[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	mf_err_set(w->err, -EUCLEAN,
	           "state %s: damaged: %s; refusing it (mailferry state check %s says more; "
	           "--state-reset starts over)",
	           w->path, what, w->path);
	return -EUCLEAN;
}

/*
 * A page read through a window of LM_WIN bytes read ahead from it: pages
 * that follow each other in the file are mostly read one after another
 * (a 100k-message state is ~5,000 pages: one pread each was ~25 ms of a
 * re-run whose floor is 3 round trips). What is past the file's end is
 * never in the window, so a short file still reads short.
 */
#define LM_WIN (256 * 1024)

static int lm_read(struct lm_walk *w, size_t pgno, uint8_t *buf, size_t n)
{
	ssize_t r;

	if (w->win && pgno >= w->win_first && pgno - w->win_first < w->win_n &&
	    (pgno - w->win_first) * w->psize + n <= w->win_n * w->psize) {
		memcpy(buf, w->win + (pgno - w->win_first) * w->psize, n);
		return 0;
	}
	if (n <= LM_WIN && w->psize <= LM_WIN && (w->win || (w->win = malloc(LM_WIN)))) {
		r = pread(w->fd, w->win, LM_WIN, (off_t)(pgno * w->psize));
		if (r >= 0) {
			w->win_first = pgno;
			w->win_n = (size_t)r / w->psize;
			if ((size_t)r >= n) {
				memcpy(buf, w->win, n);
				return 0;
			}
		}
	}
	r = pread(w->fd, buf, n, (off_t)(pgno * w->psize));

	if (r < 0) {
		int e = errno;

		mf_err_set(w->err, -e, "state %s: read: %s", w->path, strerror(e));
		return -e;
	}
	if ((size_t)r != n)
		return lm_bad(w, "page %zu is past the end of the file (%zu pages)", pgno,
		              w->npages);
	return 0;
}

static int lm_tree(struct lm_walk *w, size_t pgno, unsigned depth, int is_main, int is_free);

static int lm_db(struct lm_walk *w, const uint8_t *db, int is_main, int is_free)
{
	size_t root = lm_word(db + 8 + 4 * LM_PGNO);

	if (root == LM_P_INVALID)
		return 0; /* empty */
	return lm_tree(w, root, 0, is_main, is_free);
}

static int lm_pgno_ok(struct lm_walk *w, size_t pgno, size_t n)
{
	if (pgno < 2 || pgno > w->last || n > w->last - pgno + 1)
		return lm_bad(w, "page number %zu is outside the file's %zu pages", pgno,
		              w->last + 1);
	return 0;
}

/* One page of a B-tree and everything below it. */
static int lm_tree(struct lm_walk *w, size_t pgno, unsigned depth, int is_main, int is_free)
{
	uint8_t *pg;
	size_t nkeys, i;
	uint16_t flags, lower, upper;
	int rc;

	if (depth > LM_DEPTH_MAX)
		return lm_bad(w, "tree deeper than %zu pages (a loop?) at page %zu",
		              (size_t)LM_DEPTH_MAX, pgno);
	if ((rc = lm_pgno_ok(w, pgno, 1)))
		return rc;
	if (w->seen[pgno / 8] & (1u << (pgno % 8)))
		return lm_bad(w, "page %zu is reached twice", pgno);
	w->seen[pgno / 8] |= (uint8_t)(1u << (pgno % 8));
	pg = malloc(w->psize);
	if (!pg) {
		mf_err_set(w->err, -ENOMEM, "state %s: out of memory", w->path);
		return -ENOMEM;
	}
	if ((rc = lm_read(w, pgno, pg, w->psize)))
		goto out;
	flags = lm_u16(pg + LM_PGNO + 2);
	lower = lm_u16(pg + LM_PGNO + 4);
	upper = lm_u16(pg + LM_PGNO + 6);
	if (lm_word(pg) != pgno) {
		rc = lm_bad(w, "page %zu says it is page %zu", pgno, lm_word(pg));
		goto out;
	}
	if ((flags & (LM_P_BRANCH | LM_P_LEAF)) == 0 ||
	    (flags & (LM_P_BRANCH | LM_P_LEAF)) == (LM_P_BRANCH | LM_P_LEAF) ||
	    (flags & ~(LM_P_BRANCH | LM_P_LEAF | 0x10 | 0x4000 | 0x8000)) || lower < LM_HDR ||
	    lower > upper || upper > w->psize || (lower - LM_HDR) % 2) {
		rc = lm_bad(w, "page %zu has a bad header (flags 0x%x)", pgno, (unsigned)flags);
		goto out;
	}
	w->info->pages++;
	nkeys = (size_t)(lower - LM_HDR) / 2;
	for (i = 0; i < nkeys && !rc; i++) {
		size_t off = lm_u16(pg + LM_HDR + 2 * i), ksize, dsize, child;
		const uint8_t *node = pg + off;
		uint16_t nflags;

		if (off < upper || off + 8 > w->psize) {
			rc = lm_bad(w, "page %zu: node %zu out of the page", pgno, i);
			break;
		}
		nflags = lm_u16(node + 4);
		ksize = lm_u16(node + 6);
		dsize = (size_t)lm_u16(node) | (size_t)lm_u16(node + 2) << 16;
		if (off + 8 + ksize > w->psize) {
			rc = lm_bad(w, "page %zu: key of node %zu out of the page", pgno, i);
			break;
		}
		if (flags & LM_P_BRANCH) {
			child = (size_t)((uint64_t)dsize | (uint64_t)nflags << 32);
			rc = lm_tree(w, child, depth + 1, is_main, is_free);
			continue;
		}
		if (nflags & LM_F_BIGDATA) {
			uint8_t head[LM_HDR];

			if (off + 8 + ksize + LM_PGNO > w->psize) {
				rc = lm_bad(w, "page %zu: node %zu out of the page", pgno, i);
				break;
			}
			child = lm_word(node + 8 + ksize);
			if ((rc = lm_pgno_ok(w, child, 1)) ||
			    (rc = lm_read(w, child, head, LM_HDR)))
				break;
			if (lm_word(head) != child ||
			    !(lm_u16(head + LM_PGNO + 2) & LM_P_OVERFLOW) ||
			    (size_t)lm_u32(head + LM_PGNO + 4) * w->psize < dsize + LM_HDR) {
				rc = lm_bad(w, "overflow page %zu has a bad header", child);
				break;
			}
			rc = lm_pgno_ok(w, child, lm_u32(head + LM_PGNO + 4));
			w->info->pages += lm_u32(head + LM_PGNO + 4);
			continue;
		}
		if (off + 8 + ksize + dsize > w->psize) {
			rc = lm_bad(w, "page %zu: data of node %zu out of the page", pgno, i);
			break;
		}
		if (nflags & ~(LM_F_SUBDATA)) {
			rc = lm_bad(w, "page %zu: node %zu has unknown flags", pgno, i);
			break;
		}
		if (nflags & LM_F_SUBDATA) {
			if (!is_main || dsize != LM_DB) {
				rc = lm_bad(w, "page %zu: node %zu is a misplaced database", pgno,
				            i);
				break;
			}
			rc = lm_db(w, node + 8 + ksize, 0, 0);
		} else if (is_free) {
			/* A list of free pages: count, then page numbers. */
			const uint8_t *d = node + 8 + ksize;
			size_t n = dsize >= LM_PGNO ? lm_word(d) : 0;

			if (dsize < LM_PGNO || n > (dsize - LM_PGNO) / LM_PGNO) {
				rc = lm_bad(w, "page %zu: free list %zu is malformed", pgno, i);
				break;
			}
			for (size_t k = 1; k <= n && !rc; k++)
				rc = lm_pgno_ok(w, lm_word(d + k * LM_PGNO), 1);
		} else if (is_main) {
			/* the main database holds only the named ones */
			rc = lm_bad(w, "page %zu: unexpected record %zu in the main database", pgno,
			            i);
		}
	}
out:
	free(pg);
	return rc;
}

/* Checks the meta page i (its first bytes, in pg). */
static int lm_meta(struct lm_walk *w, const uint8_t *pg, unsigned i)
{
	const uint8_t *m = pg + LM_HDR;

	if (lm_u32(m) != LM_MAGIC)
		return lm_bad(w, "meta page %u: not an LMDB file (magic 0x%08x)", i, lm_u32(m));
	if (lm_u32(m + 4) != LM_VERSION)
		return lm_bad(w, "meta page %u: LMDB data version %u is not 1", i, lm_u32(m + 4));
	if (lm_word(pg) != i || !(lm_u16(pg + LM_PGNO + 2) & LM_P_META))
		return lm_bad(w, "meta page %u has a bad page header", i);
	return 0;
}

/* ---- the seal (state_check.h) ---- */

static int seal_line(const struct stat *st, char *buf, size_t n)
{
	return snprintf(buf, n, "mailferry-state-seal 1 %llu %llu %lld %lld.%09ld %lld.%09ld\n",
	                (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
	                (long long)st->st_size, (long long)st->st_mtim.tv_sec,
	                st->st_mtim.tv_nsec, (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
}

void state_seal(const char *dir)
{
	char path[4200], tmp[4200], line[200];
	struct stat st;
	int fd, n;

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return;
	n = seal_line(&st, line, sizeof(line));
	snprintf(tmp, sizeof(tmp), "%s/sealed.tmp", dir);
	snprintf(path, sizeof(path), "%s/sealed", dir);
	(void)unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (n <= 0 || write(fd, line, (size_t)n) != n || close(fd) < 0 || rename(tmp, path) < 0)
		(void)unlink(tmp);
}

/* 1 if DIR/sealed names data.mdb as it is now (st). */
static int seal_matches(const char *dir, const struct stat *st)
{
	char path[4200], want[200], got[200];
	struct stat ss;
	ssize_t r;
	int fd, n = seal_line(st, want, sizeof(want));

	snprintf(path, sizeof(path), "%s/sealed", dir);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return 0;
	r = fstat(fd, &ss) < 0 || !S_ISREG(ss.st_mode) || ss.st_uid != geteuid() ||
	            (ss.st_mode & 0022)
	        ? -1
	        : read(fd, got, sizeof(got));
	close(fd);
	return n > 0 && r == n && !memcmp(got, want, (size_t)n);
}

static int check(const char *dir, struct state_check_info *info, int sealed_ok,
                 struct mf_error *err);

int state_check(const char *dir, struct state_check_info *info, struct mf_error *err)
{
	return check(dir, info, 0, err);
}

int state_check_sealed(const char *dir, struct state_check_info *info, struct mf_error *err)
{
	return check(dir, info, 1, err);
}

static int check(const char *dir, struct state_check_info *info, int sealed_ok,
                 struct mf_error *err)
{
	char path[4200];
	struct stat st;
	struct lm_walk w;
	uint8_t meta[2][512];
	const uint8_t *m[2];
	size_t psize, txn[2], cur;
	int fd, rc;

	memset(info, 0, sizeof(*info));
	if ((rc = files_check(dir, err)))
		return rc;
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		if (e == ENOENT)
			return 0; /* no state yet */
		mf_err_set(err, -e, "state %s: open data.mdb: %s", dir, strerror(e));
		return -e;
	}
	info->exists = 1;
	memset(&w, 0, sizeof(w));
	w.fd = fd;
	w.path = dir;
	w.info = info;
	w.err = err;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		mf_err_set(err, rc, "state %s: stat data.mdb: %s", dir, strerror(-rc));
		goto out;
	}
	info->bytes = (uint64_t)st.st_size;
	if (st.st_size == 0) {
		rc = lm_bad(&w, "data.mdb exists but is empty (0 bytes)");
		goto out;
	}
	w.psize = 1; /* meta page 0 first: it says the page size */
	if (pread(fd, meta[0], sizeof(meta[0]), 0) != (ssize_t)sizeof(meta[0])) {
		rc = lm_bad(&w, "data.mdb is too short (%zu bytes)", (size_t)st.st_size);
		goto out;
	}
	if ((rc = lm_meta(&w, meta[0], 0)))
		goto out;
	psize = lm_u32(meta[0] + LM_HDR + LM_M_FREE);
	if (psize < 512 || psize > 65536 || (psize & (psize - 1))) {
		rc = lm_bad(&w, "meta page 0: bad page size %zu", psize);
		goto out;
	}
	if (pread(fd, meta[1], sizeof(meta[1]), (off_t)psize) != (ssize_t)sizeof(meta[1])) {
		rc = lm_bad(&w, "data.mdb is too short (%zu bytes) for its two meta pages of %zu",
		            (size_t)st.st_size, psize);
		goto out;
	}
	if ((rc = lm_meta(&w, meta[1], 1)))
		goto out;
	for (unsigned i = 0; i < 2; i++) {
		m[i] = meta[i] + LM_HDR;
		txn[i] = lm_word(m[i] + LM_M_TXNID);
	}
	/* LMDB uses the meta with the higher transaction id (mdb_env_read_header). */
	cur = txn[1] > txn[0];
	w.psize = psize;
	w.last = lm_word(m[cur] + LM_M_LAST);
	info->txnid = txn[cur];
	info->page_size = psize;
	info->last_page = w.last;
	w.npages = (size_t)st.st_size / psize;
	if (w.last < 1 || w.last >= w.npages) {
		rc = lm_bad(&w,
		            "data.mdb is truncated: its last page is %zu but the file holds %zu "
		            "pages",
		            w.last, w.npages);
		goto out;
	}
	if (lm_word(m[cur] + LM_M_MAPSIZE) < (w.last + 1) * psize) {
		rc = lm_bad(&w, "meta page %zu: map size smaller than the data (%zu pages)", cur,
		            w.last + 1);
		goto out;
	}
	if (sealed_ok && seal_matches(dir, &st))
		goto out; /* as a clean close left it: not walked */
	w.seen = calloc(w.last / 8 + 1, 1);
	if (!w.seen) {
		rc = -ENOMEM;
		mf_err_set(err, rc, "state %s: out of memory", dir);
		goto out;
	}
	w.seen[0] = 3;
	info->pages = 2;
	rc = lm_db(&w, m[cur] + LM_M_FREE, 0, 1); /* free pages */
	if (!rc)
		rc = lm_db(&w, m[cur] + LM_M_MAIN, 1, 0); /* main and named */
	free(w.seen);
	free(w.win);
out:
	close(fd);
	return rc;
}
