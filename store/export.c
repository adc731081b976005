/*
 * export — one archive run to Maildir++ or mboxrd (see export.h).
 * Not for: anything that changes message bytes.
 */
#include "store/export.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXPORT_BUF (64u << 10)

size_t export_entry_name(const char *name, size_t nlen, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0, cut = 0;
	int cutting = 0;

	if (cap < EXPORT_ENTRY_MAX + 1)
		return 0;
	if (!nlen) {
		memcpy(out, "%", 2);
		return 1;
	}
	for (size_t i = 0; i < nlen; i++) {
		unsigned char c = (unsigned char)name[i];
		int esc = c == '/' || c == '%' || c < 0x20 || c == 0x7f || (i == 0 && c == '.');

		if (o + (esc ? 3 : 1) > EXPORT_ENTRY_MAX - 20) {
			cutting = 1;
			cut = o;
			break;
		}
		if (esc) {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			out[o++] = (char)c;
		}
	}
	if (cutting) {
		uint8_t md[32];
		unsigned ml = 32;

		/* cut: keep a prefix, tag it with the hash of the whole name */
		EVP_Digest(name, nlen, md, &ml, EVP_sha256(), NULL);
		o = cut;
		out[o++] = '%';
		out[o++] = '~';
		for (int i = 0; i < 8; i++) {
			out[o++] = hex[md[i] >> 4];
			out[o++] = hex[md[i] & 15];
		}
	}
	out[o] = '\0';
	return o;
}

/* ---- Maildir ---- */

struct kwmap {
	char names[26][AFMT_KW_MAX + 1];
	unsigned n;
};

struct mdctx {
	struct archive *a;
	uint32_t run;
	int fd_folder, fd_tmp, fd_cur;
	struct kwmap *kw;
	struct export_stats *st;
	export_problem_fn problem;
	void *pctx;
	const struct archive_mbox_info *mb;
	int out; /* the file being written */
	int failed_io;
	struct mf_error *err;
	int fatal;
};

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int md_write(void *ctx, const uint8_t *p, size_t n)
{
	struct mdctx *m = ctx;
	int rc = write_all(m->out, p, n);

	if (rc)
		m->failed_io = rc;
	return rc;
}

/* The letters for a space-separated keyword list; new keywords get the
 * next free letter of the folder. */
static void kw_letters(struct mdctx *m, const char *kw, char *out, size_t cap)
{
	size_t o = 0;
	const char *p = kw;

	while (*p) {
		size_t len = strcspn(p, " ");
		unsigned i;

		if (len && len <= AFMT_KW_MAX) {
			for (i = 0; i < m->kw->n; i++)
				if (strlen(m->kw->names[i]) == len &&
				    !memcmp(m->kw->names[i], p, len))
					break;
			if (i == m->kw->n && m->kw->n < 26) {
				memcpy(m->kw->names[i], p, len);
				m->kw->names[i][len] = '\0';
				m->kw->n++;
			}
			if (i < m->kw->n) {
				if (o + 1 < cap && !memchr(out, 'a' + (int)i, o))
					out[o++] = (char)('a' + i);
			} else {
				m->st->keywords_dropped++;
			}
		}
		p += len;
		while (*p == ' ')
			p++;
	}
	/* Dovecot lists keyword letters in order */
	for (size_t i = 1; i < o; i++)
		for (size_t j = i; j > 0 && out[j - 1] > out[j]; j--) {
			char t = out[j];

			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	out[o] = '\0';
}

static void report(export_problem_fn fn, void *ctx, const struct archive_mbox_info *mb,
                   uint32_t uid, const char *why)
{
	if (fn)
		fn(ctx, mb ? mb->name : NULL, mb ? mb->nlen : 0, uid, why);
}

static int md_msg(void *ctx, uint32_t uid, const struct archive_msgmeta *meta)
{
	struct mdctx *m = ctx;
	char name[256], kw[32], fl[8], tmpname[64];
	struct mf_error e2 = {0};
	struct timespec ts[2];
	size_t f = 0;
	int rc;

	if (!meta) {
		m->st->failed++;
		report(m->problem, m->pctx, m->mb, uid, "its index record is damaged");
		return 0;
	}
	if (meta->flags & ARCHIVE_F_DRAFT)
		fl[f++] = 'D';
	if (meta->flags & ARCHIVE_F_FLAGGED)
		fl[f++] = 'F';
	if (meta->flags & ARCHIVE_F_ANSWERED)
		fl[f++] = 'R';
	if (meta->flags & ARCHIVE_F_SEEN)
		fl[f++] = 'S';
	if (meta->flags & ARCHIVE_F_DELETED)
		fl[f++] = 'T';
	fl[f] = '\0';
	kw_letters(m, meta->keywords, kw, sizeof(kw));
	snprintf(name, sizeof(name), "%lld.M%u.mailferry,S=%llu:2,%s%s",
	         (long long)meta->internaldate, uid, (unsigned long long)meta->size, fl, kw);
	snprintf(tmpname, sizeof(tmpname), "%u.mailferry.tmp", uid);
	m->out =
	    openat(m->fd_tmp, tmpname, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (m->out < 0) {
		mf_err_set(m->err, -errno, "export: create tmp/%s: %s", tmpname, strerror(errno));
		m->fatal = -EIO;
		return 1;
	}
	m->failed_io = 0;
	rc = archive_get(m->a, meta->hash, md_write, m, &e2);
	if (!rc) {
		ts[0].tv_sec = ts[1].tv_sec = meta->internaldate;
		ts[0].tv_nsec = ts[1].tv_nsec = 0;
		if (futimens(m->out, ts) < 0)
			rc = -errno;
	}
	if (close(m->out) < 0 && !rc)
		rc = -errno;
	m->out = -1;
	if (m->failed_io) {
		unlinkat(m->fd_tmp, tmpname, 0);
		mf_err_set(m->err, m->failed_io, "export: write: %s", strerror(-m->failed_io));
		m->fatal = m->failed_io;
		return 1;
	}
	if (rc) {
		unlinkat(m->fd_tmp, tmpname, 0);
		m->st->failed++;
		report(m->problem, m->pctx, m->mb, uid, e2.msg[0] ? e2.msg : strerror(-rc));
		return 0;
	}
	if (renameat(m->fd_tmp, tmpname, m->fd_cur, name) < 0) {
		mf_err_set(m->err, -errno, "export: rename into cur/: %s", strerror(errno));
		m->fatal = -EIO;
		return 1;
	}
	m->st->messages++;
	m->st->bytes += meta->size;
	return 0;
}

static int subdir(int parent, const char *name, struct mf_error *err)
{
	int fd;

	if (mkdirat(parent, name, 0700) < 0 && errno != EEXIST) {
		mf_err_set(err, -errno, "export: mkdir %s: %s", name, strerror(errno));
		return -EIO;
	}
	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		mf_err_set(err, -errno, "export: open %s: %s (a link or not a directory?)", name,
		           strerror(errno));
		return -EIO;
	}
	return fd;
}

static int kw_file(int folder, const struct kwmap *kw, struct mf_error *err)
{
	int fd;
	char line[AFMT_KW_MAX + 16];
	int rc = 0;

	if (!kw->n)
		return 0;
	fd = openat(folder, "dovecot-keywords",
	            O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		mf_err_set(err, -errno, "export: dovecot-keywords: %s", strerror(errno));
		return -EIO;
	}
	for (unsigned i = 0; i < kw->n && !rc; i++) {
		int n = snprintf(line, sizeof(line), "%u %s\n", i, kw->names[i]);

		rc = write_all(fd, (const uint8_t *)line, (size_t)n);
	}
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (rc)
		mf_err_set(err, rc, "export: dovecot-keywords: %s", strerror(-rc));
	return rc;
}

struct mbox_list {
	struct archive_mbox_info *v;
	char **names; /* owned, nnames of them (v may be filtered) */
	size_t n, nnames;
};

static int list_fn(void *ctx, const struct archive_mbox_info *mb)
{
	struct mbox_list *l = ctx;
	struct archive_mbox_info *v = realloc(l->v, (l->n + 1) * sizeof(*v));
	char **names;
	char *nm;

	if (!v)
		return 1;
	l->v = v;
	if (!(names = realloc(l->names, (l->n + 1) * sizeof(*names))))
		return 1;
	l->names = names;
	if (!(nm = malloc(mb->nlen + 1)))
		return 1;
	memcpy(nm, mb->name, mb->nlen);
	nm[mb->nlen] = '\0';
	l->v[l->n] = *mb;
	l->v[l->n].name = nm;
	l->names[l->nnames++] = nm;
	l->n++;
	return 0;
}

static void list_free(struct mbox_list *l)
{
	for (size_t i = 0; i < l->nnames; i++)
		free(l->names[i]);
	free(l->names);
	free(l->v);
}

/* The run's mailboxes (copied: export reads the archive while it walks). */
static int mailboxes(struct archive *a, uint32_t *run, const char *folder, struct mbox_list *l,
                     struct mf_error *err)
{
	int rc;

	memset(l, 0, sizeof(*l));
	if (!*run && (rc = archive_run_latest(a, NULL, run, err)))
		return rc;
	if ((rc = archive_mbox_each(a, *run, list_fn, l, err)))
		return rc;
	if (folder) {
		size_t j = 0, fl = strlen(folder);

		for (size_t i = 0; i < l->n; i++)
			if (l->v[i].nlen == fl && !memcmp(l->v[i].name, folder, fl))
				l->v[j++] = l->v[i];
		if (!j) {
			mf_err_set(err, -ENOENT, "export: run %u has no mailbox \"%s\"", *run,
			           folder);
			return -ENOENT;
		}
		l->n = j;
	}
	return 0;
}

static int is_inbox(const struct archive_mbox_info *mb)
{
	return mb->nlen == 5 && !strncasecmp(mb->name, "INBOX", 5);
}

int export_maildir(struct archive *a, uint32_t run, const char *folder, const char *dir,
                   struct export_stats *st, export_problem_fn problem, void *ctx,
                   struct mf_error *err)
{
	struct mbox_list l;
	struct mdctx m;
	int root, rc;

	memset(st, 0, sizeof(*st));
	if ((rc = mailboxes(a, &run, folder, &l, err)))
		goto out0;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		mf_err_set(err, rc, "export: mkdir %s: %s", dir, strerror(errno));
		goto out0;
	}
	root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0) {
		rc = -errno;
		mf_err_set(err, rc, "export: %s: %s", dir, strerror(errno));
		goto out0;
	}
	memset(&m, 0, sizeof(m));
	m.a = a;
	m.run = run;
	m.st = st;
	m.problem = problem;
	m.pctx = ctx;
	m.err = err;
	m.out = -1;
	if (!(m.kw = malloc(sizeof(*m.kw)))) {
		rc = -ENOMEM;
		goto out1;
	}
	for (size_t i = 0; i < l.n && !rc; i++) {
		char ent[EXPORT_ENTRY_MAX + 2];

		m.mb = &l.v[i];
		m.kw->n = 0;
		m.fd_tmp = m.fd_cur = -1;
		if (is_inbox(m.mb)) {
			m.fd_folder = dup(root);
		} else {
			ent[0] = '.';
			export_entry_name(m.mb->name, m.mb->nlen, ent + 1, sizeof(ent) - 1);
			m.fd_folder = subdir(root, ent, err);
			if (m.fd_folder >= 0) {
				int mf = openat(m.fd_folder, "maildirfolder",
				                O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);

				if (mf >= 0)
					close(mf);
			}
		}
		if (m.fd_folder < 0 || (m.fd_tmp = subdir(m.fd_folder, "tmp", err)) < 0 ||
		    (m.fd_cur = subdir(m.fd_folder, "cur", err)) < 0) {
			rc = -EIO;
		} else {
			int nfd = subdir(m.fd_folder, "new", err);

			if (nfd < 0)
				rc = -EIO;
			else
				close(nfd);
		}
		if (!rc) {
			st->mailboxes++;
			rc = archive_uid_each(a, run, m.mb->mbid, md_msg, &m, err);
			if (!rc && m.fatal)
				rc = m.fatal;
			if (!rc)
				rc = kw_file(m.fd_folder, m.kw, err);
		}
		if (m.fd_tmp >= 0)
			close(m.fd_tmp);
		if (m.fd_cur >= 0)
			close(m.fd_cur);
		if (m.fd_folder >= 0)
			close(m.fd_folder);
	}
	free(m.kw);
out1:
	close(root);
out0:
	list_free(&l);
	return rc;
}

/* ---- mboxrd ---- */

struct mbox_out {
	int fd;
	uint8_t *buf;
	size_t n;
	int io; /* first write error */
	/* the quoting state, carried across chunks */
	int bol;       /* at the start of a line */
	uint64_t gt;   /* '>' seen at this line's start, not yet written */
	unsigned from; /* bytes of "From " matched after them */
	uint8_t last;  /* last message byte */
	uint64_t bytes;
};

static void out_flush(struct mbox_out *o)
{
	if (o->n && !o->io)
		o->io = write_all(o->fd, o->buf, o->n);
	o->n = 0;
}

static void out_put(struct mbox_out *o, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n) {
		size_t k = EXPORT_BUF - o->n;

		if (k > n)
			k = n;
		memcpy(o->buf + o->n, b, k);
		o->n += k;
		b += k;
		n -= k;
		if (o->n == EXPORT_BUF)
			out_flush(o);
	}
}

static void out_gts(struct mbox_out *o, uint64_t n)
{
	static const char gts[64] =
	    ">>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>";

	while (n) {
		size_t k = n > sizeof(gts) ? sizeof(gts) : (size_t)n;

		out_put(o, gts, k);
		n -= k;
	}
}

/* Ends a pending line-start prefix: quoted if it was ">*From ". */
static void prefix_done(struct mbox_out *o, int quote)
{
	if (quote)
		out_put(o, ">", 1);
	out_gts(o, o->gt);
	out_put(o, "From ", o->from);
	o->gt = 0;
	o->from = 0;
	o->bol = 0;
}

static int mbox_write(void *ctx, const uint8_t *p, size_t n)
{
	struct mbox_out *o = ctx;
	size_t i = 0;

	if (n)
		o->last = p[n - 1];
	o->bytes += n;
	while (i < n) {
		if (o->bol) {
			uint8_t c = p[i];

			if (!o->from && c == '>') {
				o->gt++;
				i++;
				continue;
			}
			if (c == (uint8_t) "From "[o->from]) {
				o->from++;
				i++;
				if (o->from == 5)
					prefix_done(o, 1);
				continue;
			}
			prefix_done(o, 0);
			continue;
		}
		{
			const uint8_t *nl = memchr(p + i, '\n', n - i);
			size_t end = nl ? (size_t)(nl - p) + 1 : n;

			out_put(o, p + i, end - i);
			i = end;
			if (nl)
				o->bol = 1;
		}
	}
	return o->io;
}

struct mbctx {
	struct archive *a;
	struct mbox_out *o;
	struct export_stats *st;
	export_problem_fn problem;
	void *pctx;
	const struct archive_mbox_info *mb;
	off_t start;
};

static int mb_msg(void *ctx, uint32_t uid, const struct archive_msgmeta *meta)
{
	struct mbctx *m = ctx;
	struct mbox_out *o = m->o;
	struct mf_error e2 = {0};
	char line[96], date[64];
	struct tm tm;
	time_t t = meta ? (time_t)meta->internaldate : 0;
	off_t start;
	int rc;

	if (!meta) {
		m->st->failed++;
		report(m->problem, m->pctx, m->mb, uid, "its index record is damaged");
		return 0;
	}
	if (!gmtime_r(&t, &tm))
		memset(&tm, 0, sizeof(tm));
	strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
	snprintf(line, sizeof(line), "From MAILER-DAEMON %s\n", date);
	/* where this message starts, to cut it off again if it fails */
	out_flush(o);
	start = lseek(o->fd, 0, SEEK_CUR);
	out_put(o, line, strlen(line));
	o->bol = 1;
	o->gt = 0;
	o->from = 0;
	o->last = '\n';
	o->bytes = 0;
	rc = archive_get(m->a, meta->hash, mbox_write, o, &e2);
	if (o->io)
		return 1;
	if (rc) {
		o->n = 0;
		if (start >= 0 && ftruncate(o->fd, start) == 0)
			lseek(o->fd, start, SEEK_SET);
		m->st->failed++;
		report(m->problem, m->pctx, m->mb, uid, e2.msg[0] ? e2.msg : strerror(-rc));
		return 0;
	}
	if (o->bol && (o->gt || o->from))
		prefix_done(o, 0);
	if (o->last != '\n')
		out_put(o, "\n", 1);
	out_put(o, "\n", 1);
	m->st->messages++;
	m->st->bytes += meta->size;
	return 0;
}

int export_mbox(struct archive *a, uint32_t run, const char *folder, const char *file,
                struct export_stats *st, export_problem_fn problem, void *ctx, struct mf_error *err)
{
	struct mbox_list l;
	struct mbox_out o;
	struct mbctx m;
	int rc;

	memset(st, 0, sizeof(*st));
	memset(&o, 0, sizeof(o));
	if ((rc = mailboxes(a, &run, folder, &l, err)))
		goto out;
	o.fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (o.fd < 0) {
		rc = -errno;
		mf_err_set(err, rc, "export: %s: %s", file, strerror(errno));
		goto out;
	}
	if (!(o.buf = malloc(EXPORT_BUF))) {
		rc = -ENOMEM;
		goto out;
	}
	memset(&m, 0, sizeof(m));
	m.a = a;
	m.o = &o;
	m.st = st;
	m.problem = problem;
	m.pctx = ctx;
	for (size_t i = 0; i < l.n && !rc && !o.io; i++) {
		m.mb = &l.v[i];
		st->mailboxes++;
		rc = archive_uid_each(a, run, m.mb->mbid, mb_msg, &m, err);
	}
	out_flush(&o);
	if (!rc && o.io)
		rc = o.io;
	if (!rc && fsync(o.fd) < 0)
		rc = -errno;
	if (rc && !err->code)
		mf_err_set(err, rc, "export: %s: %s", file, strerror(-rc));
out:
	if (o.fd > 0)
		close(o.fd);
	free(o.buf);
	list_free(&l);
	return rc;
}
