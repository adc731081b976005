/*
 * compare — are two Dovecot Maildir trees the same mail?
 *
 *   compare SRC_MAILDIR DST_MAILDIR [--src-sep .|/] [--dst-sep .|/] [--json] [--ignore-extra]
 *           [--ignore-header NAME]...
 *
 * Folder by folder, the multiset of (message bytes, flags including keywords,
 * INTERNALDATE) must be equal:
 * - bytes: hashed with SHA-256 after dropping every run of CRs that ends at
 *   an LF. Dovecot serves CRLF but stores a saved message with LF line ends
 *   (mail_save_crlf = no), and on APPEND it rewrites CRs before a line end
 *   (a run "\r\r\n" is stored as "\r\n"); what reaches the other server
 *   over IMAP is a message with such runs folded. Dropping them all is the
 *   one normalization that judges a Maildir written by the corpus (CRLF)
 *   against one written by Dovecot (LF) fairly, and it changes nothing else:
 *   bare CRs inside lines, 8-bit bytes and a missing final line end count.
 * - flags: the info suffix after ":2," (D F R S T; keyword letters a-z
 *   resolved through each folder's own dovecot-keywords, by name, since two
 *   servers number keywords differently). Messages in new/ have no flags.
 * - INTERNALDATE: the file's mtime, in seconds.
 * Also: the same message more often in a destination folder than in the
 * source folder is a "duplicate"; a folder missing on either side counts.
 *
 * Folders: '.' (Maildir++: ".Parent.Child" under the root) or '/'
 * (Dovecot's LAYOUT=fs: "Parent/Child/" directories under the root, each
 * with cur/ new/ tmp/). INBOX is the root in both. Names compare as
 * modified UTF-7 with '/' for hierarchy. Dovecot's own files (dovecot*,
 * subscriptions, maildirfolder, tmp/) are ignored.
 *
 * --ignore-header NAME (repeatable) leaves header fields of that name out
 * of the hash on both sides: a diagnosis, not a verdict ("apart from the
 * X-TUID header mbsync adds, was the copy right?"). It reads each message
 * whole, so it is slower.
 *
 * Reads the files directly, never through IMAP, so it judges mailferry and
 * the peers independently of any IMAP client. The two trees load in
 * parallel. Output: one line per difference (the first 200), then
 * "compare: N folders, N messages, N bytes: exact" or "... N differences";
 * --json prints one JSON object instead. Exit 0 exact, 1 different, 2 usage
 * or I/O error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#define CMP_FLAGS 240
#define CMP_SUBJ 64
#define CMP_SHOW 200

struct msg {
	uint8_t hash[32];
	int64_t mtime;
	char flags[CMP_FLAGS]; /* canonical: names sorted, space-separated */
	char subject[CMP_SUBJ];
};

struct folder {
	char name[1024]; /* hierarchy joined with '/' */
	struct msg *m;
	size_t n, cap;
};

struct tree {
	const char *root;
	char sep;
	struct folder *f;
	size_t n, cap;
	uint64_t bytes;
	EVP_MD_CTX *md;
	uint8_t *in, *out; /* read and fold buffers */
	char err[600];     /* first I/O error; the tree is then unusable */
};

#define CMP_BUF (1 << 17)

static const char *ignore_hdr[16]; /* --ignore-header names */
static size_t n_ignore;

static void *xrealloc(void *p, size_t n)
{
	if (!(p = realloc(p, n))) {
		fprintf(stderr, "compare: out of memory\n");
		exit(2);
	}
	return p;
}

static void tree_fail(struct tree *t, const char *what, const char *path)
{
	if (!t->err[0])
		snprintf(t->err, sizeof(t->err), "%s %.500s: %s", what, path, strerror(errno));
}

/* dovecot-keywords: "0 $Forwarded" per line → names[0..25]. */
static void keywords_load(const char *dir, char names[26][64])
{
	char path[4200], line[512];
	FILE *f;

	memset(names, 0, 26 * 64);
	snprintf(path, sizeof(path), "%.4096s/dovecot-keywords", dir);
	if (!(f = fopen(path, "r")))
		return;
	while (fgets(line, sizeof(line), f)) {
		char *sp = strchr(line, ' ');
		int idx = atoi(line);

		if (!sp || idx < 0 || idx >= 26)
			continue;
		line[strcspn(line, "\r\n")] = '\0';
		snprintf(names[idx], 64, "%s", sp + 1);
	}
	fclose(f);
}

static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "FRSab" → "$Forwarded \Flagged \Seen Work" (sorted). */
static void flags_canon(const char *info, char names[26][64], char *out, size_t cap)
{
	static const char unknown[26][20] = {
	    "?keyword-a", "?keyword-b", "?keyword-c", "?keyword-d", "?keyword-e", "?keyword-f",
	    "?keyword-g", "?keyword-h", "?keyword-i", "?keyword-j", "?keyword-k", "?keyword-l",
	    "?keyword-m", "?keyword-n", "?keyword-o", "?keyword-p", "?keyword-q", "?keyword-r",
	    "?keyword-s", "?keyword-t", "?keyword-u", "?keyword-v", "?keyword-w", "?keyword-x",
	    "?keyword-y", "?keyword-z"};
	const char *v[40];
	size_t n = 0, o = 0;

	for (const char *p = info; p && *p && *p != ',' && n < 40; p++) {
		switch (*p) {
		case 'D':
			v[n++] = "\\Draft";
			break;
		case 'F':
			v[n++] = "\\Flagged";
			break;
		case 'R':
			v[n++] = "\\Answered";
			break;
		case 'S':
			v[n++] = "\\Seen";
			break;
		case 'T':
			v[n++] = "\\Deleted";
			break;
		default:
			if (*p >= 'a' && *p <= 'z')
				v[n++] = names[*p - 'a'][0] ? names[*p - 'a'] : unknown[*p - 'a'];
		}
	}
	qsort(v, n, sizeof(v[0]), cmpstr);
	out[0] = '\0';
	for (size_t i = 0; i < n && o < cap; i++) {
		int k = snprintf(out + o, cap - o, "%s%s", i ? " " : "", v[i]);

		o += k > 0 ? (size_t)k : 0;
	}
}

/* Printable, valid UTF-8, no quotes or backslashes: safe in text and JSON. */
static void subject_clean(const uint8_t *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	while (n && (*s == ' ' || *s == '\t'))
		s++, n--;
	for (size_t i = 0; i < n && o + 5 < cap;) {
		uint8_t c = s[i];
		size_t len = c < 0x80             ? 1
		             : (c & 0xE0) == 0xC0 ? 2
		             : (c & 0xF0) == 0xE0 ? 3
		             : (c & 0xF8) == 0xF0 ? 4
		                                  : 0;
		int ok = len && i + len <= n;

		for (size_t k = 1; ok && k < len; k++)
			ok = (s[i + k] & 0xC0) == 0x80;
		if (ok && len > 1) {
			memcpy(out + o, s + i, len);
			o += len;
			i += len;
			continue;
		}
		out[o++] = ok && c >= 0x20 && c != '"' && c != '\\' && c != 0x7f ? (char)c : '?';
		i++;
	}
	out[o] = '\0';
}

/* Bytes into the fold buffer, digested when it is full. */
static void emit(struct tree *t, size_t *o, const uint8_t *p, size_t n)
{
	while (n) {
		size_t k = CMP_BUF - *o < n ? CMP_BUF - *o : n;

		memcpy(t->out + *o, p, k);
		*o += k, p += k, n -= k;
		if (*o == CMP_BUF) {
			EVP_DigestUpdate(t->md, t->out, *o);
			*o = 0;
		}
	}
}

static void emit_crs(struct tree *t, size_t *o, uint64_t n)
{
	uint8_t crs[64];

	memset(crs, '\r', sizeof(crs));
	for (; n; n -= n < 64 ? n : 64)
		emit(t, o, crs, n < 64 ? n : 64);
}

/* Is the header line at p (up to its LF) a field named in --ignore-header? */
static int ignored_field(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n_ignore; i++) {
		size_t k = strlen(ignore_hdr[i]);

		if (n > k && p[k] == ':' && !strncasecmp((const char *)p, ignore_hdr[i], k))
			return 1;
	}
	return 0;
}

/* The --ignore-header path: the whole file in memory, the named fields
 * (with their continuation lines) cut out of the header, then the same CR
 * folding and hash as below. */
static int hash_file_filtered(struct tree *t, int fd, struct msg *m)
{
	struct stat st;
	uint8_t *b, *w;
	size_t n = 0, o = 0, i = 0, cap;
	int skipping = 0, in_hdr = 1;
	ssize_t r;
	unsigned hl = 32;

	if (fstat(fd, &st) < 0)
		return -1;
	cap = (size_t)st.st_size + 1;
	if (!(b = malloc(cap)) || !(w = malloc(cap))) {
		fprintf(stderr, "compare: out of memory\n");
		exit(2);
	}
	while (n < cap && (r = read(fd, b + n, cap - n)) > 0)
		n += (size_t)r;
	t->bytes += n;
	while (i < n) {
		const uint8_t *nl = memchr(b + i, '\n', n - i);
		size_t len = nl ? (size_t)(nl - (b + i)) + 1 : n - i;

		if (in_hdr) {
			if (len <= 2 && (b[i] == '\n' || (b[i] == '\r' && len == 2)))
				in_hdr = 0, skipping = 0;
			else if (b[i] != ' ' && b[i] != '\t')
				skipping = ignored_field(b + i, len);
			if (!m->subject[0] && len >= 8 &&
			    !strncasecmp((const char *)b + i, "Subject:", 8))
				subject_clean(b + i + 8,
				              len - 8 - (len > 8 && b[i + len - 1] == '\n') -
				                  (len > 9 && b[i + len - 2] == '\r'),
				              m->subject, CMP_SUBJ);
		}
		if (!skipping) {
			memcpy(w + o, b + i, len);
			o += len;
		}
		i += len;
	}
	EVP_DigestInit_ex(t->md, EVP_sha256(), NULL);
	for (i = 0; i < o;) { /* drop CR runs that end at an LF */
		size_t j = i;

		while (j < o && w[j] == '\r')
			j++;
		if (j > i && j < o && w[j] == '\n') {
			i = j;
			continue;
		}
		if (j == i)
			while (j < o && w[j] != '\r')
				j++;
		EVP_DigestUpdate(t->md, w + i, j - i);
		i = j;
	}
	EVP_DigestFinal_ex(t->md, m->hash, &hl);
	free(b);
	free(w);
	return 0;
}

/* SHA-256 of the file with CR runs before LF dropped; the first Subject. */
static int hash_file(struct tree *t, const char *path, struct msg *m)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint64_t cr = 0; /* CRs held back at a chunk's end: do they end at an LF? */
	int in_hdr = 1;  /* still in the header: look for Subject */
	size_t line_len = 0, o = 0;
	uint8_t line[CMP_SUBJ * 2 + 16];
	ssize_t r;
	unsigned hl = 32;

	m->subject[0] = '\0';
	if (fd < 0)
		return -1;
	if (n_ignore) {
		int rc = hash_file_filtered(t, fd, m);

		close(fd);
		return rc;
	}
	EVP_DigestInit_ex(t->md, EVP_sha256(), NULL);
	while ((r = read(fd, t->in, CMP_BUF)) > 0) {
		const uint8_t *p = t->in, *end = t->in + r;

		t->bytes += (uint64_t)r;
		for (const uint8_t *q = p; in_hdr && q < end; q++) {
			if (*q == '\n') {
				if (line_len == 0)
					in_hdr = 0; /* the blank line */
				else if (!m->subject[0] && line_len >= 8 &&
				         !strncasecmp((const char *)line, "Subject:", 8))
					subject_clean(line + 8, line_len - 8, m->subject, CMP_SUBJ);
				line_len = 0;
			} else if (*q != '\r' && line_len < sizeof(line)) {
				line[line_len++] = *q;
			}
		}
		while (p < end) {
			const uint8_t *q = memchr(p, '\r', (size_t)(end - p));

			if (cr) { /* held back from the last chunk */
				if (*p != '\r' && *p != '\n')
					emit_crs(t, &o, cr);
				if (*p != '\r')
					cr = 0;
			}
			if (!q) {
				emit(t, &o, p, (size_t)(end - p));
				break;
			}
			emit(t, &o, p, (size_t)(q - p));
			for (p = q; p < end && *p == '\r'; p++)
				cr++;
			if (p < end) {
				if (*p != '\n') /* not before an LF: the message's bytes */
					emit_crs(t, &o, cr);
				cr = 0;
			}
		}
	}
	close(fd);
	if (r < 0)
		return -1;
	emit_crs(t, &o, cr); /* trailing CRs with no LF after them */
	EVP_DigestUpdate(t->md, t->out, o);
	EVP_DigestFinal_ex(t->md, m->hash, &hl);
	return 0;
}

static void folder_load(struct tree *t, const char *dir, const char *name)
{
	static const char *const subs[] = {"cur", "new"};
	char names[26][64], path[4400];
	struct folder *f;

	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 32;
		t->f = xrealloc(t->f, t->cap * sizeof(*t->f));
	}
	f = &t->f[t->n++];
	memset(f, 0, sizeof(*f));
	snprintf(f->name, sizeof(f->name), "%s", name);
	keywords_load(dir, names);
	for (int s = 0; s < 2; s++) {
		DIR *d;
		struct dirent *e;

		snprintf(path, sizeof(path), "%.4096s/%s", dir, subs[s]);
		if (!(d = opendir(path))) {
			if (errno != ENOENT)
				tree_fail(t, "cannot open", path);
			continue;
		}
		while ((e = readdir(d))) {
			struct msg *m;
			struct stat st;
			const char *info;

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%.4096s/%s/%s", dir, subs[s], e->d_name);
			if (stat(path, &st) < 0) {
				if (errno != ENOENT) /* Dovecot may rename it under us */
					tree_fail(t, "cannot stat", path);
				continue;
			}
			if (!S_ISREG(st.st_mode))
				continue;
			if (f->n == f->cap) {
				f->cap = f->cap ? f->cap * 2 : 256;
				f->m = xrealloc(f->m, f->cap * sizeof(*f->m));
			}
			m = &f->m[f->n];
			if (hash_file(t, path, m) < 0) {
				if (errno != ENOENT)
					tree_fail(t, "cannot read", path);
				continue;
			}
			f->n++;
			m->mtime = (int64_t)st.st_mtime;
			info = s == 0 ? strstr(e->d_name, ":2,") : NULL;
			flags_canon(info ? info + 3 : NULL, names, m->flags, sizeof(m->flags));
		}
		closedir(d);
	}
}

static int is_mailbox(const char *dir)
{
	char p[4200];
	struct stat st;

	snprintf(p, sizeof(p), "%.4096s/cur", dir);
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* LAYOUT=fs: folders are nested directories holding cur/new/tmp. */
static void walk_fs(struct tree *t, const char *dir, const char *prefix, int depth)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d) {
		tree_fail(t, "cannot open", dir);
		return;
	}
	while ((e = readdir(d))) {
		char sub[4400], name[1024];
		struct stat st;

		/* a mailbox's own cur/ new/ tmp/; Dovecot's files are not directories */
		if (e->d_name[0] == '.' || !strcmp(e->d_name, "cur") || !strcmp(e->d_name, "new") ||
		    !strcmp(e->d_name, "tmp"))
			continue;
		snprintf(sub, sizeof(sub), "%.4000s/%s", dir, e->d_name);
		if (stat(sub, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		snprintf(name, sizeof(name), "%.500s%s%.500s", prefix, *prefix ? "/" : "",
		         e->d_name);
		if (is_mailbox(sub))
			folder_load(t, sub, name);
		if (depth < 64)
			walk_fs(t, sub, name, depth + 1);
	}
	closedir(d);
}

static int folder_cmp(const void *a, const void *b)
{
	return strcmp(((const struct folder *)a)->name, ((const struct folder *)b)->name);
}

static int msg_cmp(const void *a, const void *b)
{
	const struct msg *x = a, *y = b;
	int c = memcmp(x->hash, y->hash, 32);

	if (c)
		return c;
	if ((c = strcmp(x->flags, y->flags)))
		return c;
	return x->mtime < y->mtime ? -1 : x->mtime > y->mtime;
}

static void *tree_load(void *arg)
{
	struct tree *t = arg;

	if (!(t->md = EVP_MD_CTX_new()) || !(t->in = malloc(CMP_BUF)) ||
	    !(t->out = malloc(CMP_BUF))) {
		snprintf(t->err, sizeof(t->err), "out of memory");
		return NULL;
	}
	if (!is_mailbox(t->root)) {
		snprintf(t->err, sizeof(t->err), "%.500s: not a Maildir (no cur/)", t->root);
		return NULL;
	}
	folder_load(t, t->root, "INBOX");
	if (t->sep == '/') {
		walk_fs(t, t->root, "", 0);
	} else {
		DIR *d = opendir(t->root);
		struct dirent *e;

		if (!d) {
			tree_fail(t, "cannot open", t->root);
			return NULL;
		}
		while ((e = readdir(d))) {
			char sub[4400], name[1024];

			if (e->d_name[0] != '.' || !strcmp(e->d_name, ".") ||
			    !strcmp(e->d_name, ".."))
				continue;
			snprintf(sub, sizeof(sub), "%.4000s/%s", t->root, e->d_name);
			if (!is_mailbox(sub))
				continue;
			snprintf(name, sizeof(name), "%s", e->d_name + 1);
			for (char *p = name; *p; p++)
				if (*p == '.')
					*p = '/';
			folder_load(t, sub, name);
		}
		closedir(d);
	}
	qsort(t->f, t->n, sizeof(*t->f), folder_cmp);
	for (size_t i = 0; i < t->n; i++)
		qsort(t->f[i].m, t->f[i].n, sizeof(struct msg), msg_cmp);
	EVP_MD_CTX_free(t->md);
	free(t->in);
	free(t->out);
	return NULL;
}

static struct folder *folder_find(struct tree *t, const char *name)
{
	static struct folder key; /* only the name is used; big, so not on the stack */

	snprintf(key.name, sizeof(key.name), "%s", name);
	return bsearch(&key, t->f, t->n, sizeof(*t->f), folder_cmp);
}

/* ---- reporting ---- */

enum { D_MISSING, D_EXTRA, D_DUP, D_FLAGS, D_DATE, D_FMISSING, D_FEXTRA, D_KINDS };
static const char *const kind_json[D_KINDS] = {
    "missing", "extra", "duplicate", "flags", "internaldate", "folder_missing", "folder_extra"};

struct report {
	int json;
	unsigned long total, count[D_KINDS];
	int first_json;
};

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void date_str(int64_t t, char *out, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || !strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(out, cap, "%lld", (long long)t);
}

/* One difference. m: the message (or NULL for a folder); a, b: the src and
 * dst values of what differs, or NULL. */
static void diff(struct report *r, int kind, const char *folder, const struct msg *m, const char *a,
                 const char *b, size_t n)
{
	char h[13] = "";

	r->total++;
	r->count[kind]++;
	if (r->total > CMP_SHOW)
		return;
	if (m)
		for (int i = 0; i < 6; i++)
			snprintf(h + 2 * i, 3, "%02x", m->hash[i]);
	if (r->json) {
		printf("%s{\"kind\":\"%s\",\"folder\":", r->first_json ? "" : ",", kind_json[kind]);
		json_str(folder);
		r->first_json = 0;
		if (m) {
			printf(",\"hash\":\"%s\",\"subject\":", h);
			json_str(m->subject);
		}
		if (a) {
			printf(",\"src\":");
			json_str(a);
			printf(",\"dst\":");
			json_str(b);
		}
		if (!m)
			printf(",\"messages\":%zu", n);
		printf("}");
		return;
	}
	switch (kind) {
	case D_FMISSING:
		printf("folder %s missing on destination (%zu messages)\n", folder, n);
		break;
	case D_FEXTRA:
		printf("folder %s exists only on destination (%zu messages)\n", folder, n);
		break;
	case D_FLAGS:
	case D_DATE:
		printf("folder %s: %s differ%s on %s (Subject: %s): src \"%s\" dst \"%s\"\n",
		       folder, kind == D_FLAGS ? "flags" : "internaldate",
		       kind == D_FLAGS ? "" : "s", h, m->subject, a, b);
		break;
	default:
		printf("folder %s: %s message %s (Subject: %s; flags: %s)\n", folder,
		       kind == D_MISSING ? "missing"
		       : kind == D_EXTRA ? "extra"
		                         : "duplicate",
		       h, m->subject, m->flags);
	}
}

/* The two sorted multisets of one folder, a hash group at a time: exact
 * matches first, then same bytes with other flags or date, then what is
 * left over is missing, extra, or (more copies than the source has) a
 * duplicate. */
static void folder_diff(struct report *r, const struct folder *fa, const struct folder *fb,
                        int ignore_extra)
{
	static const struct folder empty;
	size_t x = 0, y = 0;

	if (!fb)
		fb = &empty;
	while (x < fa->n || y < fb->n) {
		const struct msg *h =
		    x < fa->n && (y == fb->n || memcmp(fa->m[x].hash, fb->m[y].hash, 32) <= 0)
		        ? &fa->m[x]
		        : &fb->m[y];
		size_t xe = x, ye = y, na, nb, i, j, ua = 0, ub = 0;
		const struct msg *la[64], *lb[64]; /* unmatched, paired up below */

		while (xe < fa->n && !memcmp(fa->m[xe].hash, h->hash, 32))
			xe++;
		while (ye < fb->n && !memcmp(fb->m[ye].hash, h->hash, 32))
			ye++;
		na = xe - x, nb = ye - y;
		for (i = x, j = y; i < xe || j < ye;) {
			int c = i == xe ? 1 : j == ye ? -1 : msg_cmp(&fa->m[i], &fb->m[j]);

			if (c == 0) {
				i++, j++;
			} else if (c < 0) {
				if (ua < 64)
					la[ua++] = &fa->m[i];
				else
					diff(r, D_MISSING, fa->name, &fa->m[i], NULL, NULL, 0);
				i++;
			} else {
				if (ub < 64)
					lb[ub++] = &fb->m[j];
				else
					diff(r, D_DUP, fa->name, &fb->m[j], NULL, NULL, 0);
				j++;
			}
		}
		for (i = 0; i < ua && i < ub; i++) {
			char sa[32], sb[32];

			if (strcmp(la[i]->flags, lb[i]->flags))
				diff(r, D_FLAGS, fa->name, la[i], la[i]->flags, lb[i]->flags, 0);
			if (la[i]->mtime != lb[i]->mtime) {
				date_str(la[i]->mtime, sa, sizeof(sa));
				date_str(lb[i]->mtime, sb, sizeof(sb));
				diff(r, D_DATE, fa->name, la[i], sa, sb, 0);
			}
		}
		for (; i < ua; i++)
			diff(r, D_MISSING, fa->name, la[i], NULL, NULL, 0);
		/* more copies than the source has: the first of a message the
		 * source lacks is extra, every further copy a duplicate */
		for (; i < ub; i++)
			if (na == 0 && i == ua)
				(void)(ignore_extra ||
				       (diff(r, D_EXTRA, fa->name, lb[i], NULL, NULL, 0), 0));
			else
				diff(r, nb > na ? D_DUP : D_EXTRA, fa->name, lb[i], NULL, NULL, 0);
		x = xe, y = ye;
	}
}

int main(int argc, char **argv)
{
	struct tree a = {.sep = '.'}, b = {.sep = '.'};
	struct report r = {.first_json = 1};
	int ignore_extra = 0, threaded;
	uint64_t nmsg = 0;
	pthread_t th;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--src-sep") && i + 1 < argc)
			a.sep = argv[++i][0];
		else if (!strcmp(argv[i], "--dst-sep") && i + 1 < argc)
			b.sep = argv[++i][0];
		else if (!strcmp(argv[i], "--json"))
			r.json = 1;
		else if (!strcmp(argv[i], "--ignore-extra"))
			ignore_extra = 1;
		else if (!strcmp(argv[i], "--ignore-header") && i + 1 < argc && n_ignore < 16)
			ignore_hdr[n_ignore++] = argv[++i];
		else if (argv[i][0] == '-' && argv[i][1])
			a.root = b.root = NULL, i = argc;
		else if (!a.root)
			a.root = argv[i];
		else if (!b.root)
			b.root = argv[i];
		else
			a.root = b.root = NULL, i = argc;
	}
	if (!a.root || !b.root || (a.sep != '.' && a.sep != '/') ||
	    (b.sep != '.' && b.sep != '/')) {
		fprintf(stderr,
		        "usage: compare SRC_MAILDIR DST_MAILDIR [--src-sep .|/] [--dst-sep .|/] "
		        "[--json] [--ignore-extra] [--ignore-header NAME]...\n");
		return 2;
	}
	threaded = pthread_create(&th, NULL, tree_load, &b) == 0;
	tree_load(&a);
	if (threaded)
		pthread_join(th, NULL);
	else
		tree_load(&b);
	if (a.err[0] || b.err[0]) {
		fprintf(stderr, "compare: %s\n", a.err[0] ? a.err : b.err);
		return 2;
	}
	if (r.json)
		printf("{\"diffs\":[");
	for (size_t i = 0; i < a.n; i++) {
		struct folder *fa = &a.f[i], *fb = folder_find(&b, fa->name);

		nmsg += fa->n;
		if (!fb && strcmp(fa->name, "INBOX")) {
			diff(&r, D_FMISSING, fa->name, NULL, NULL, NULL, fa->n);
			continue;
		}
		folder_diff(&r, fa, fb, ignore_extra);
	}
	if (!ignore_extra)
		for (size_t i = 0; i < b.n; i++)
			if (!folder_find(&a, b.f[i].name)) {
				if (strcmp(b.f[i].name, "INBOX"))
					diff(&r, D_FEXTRA, b.f[i].name, NULL, NULL, NULL, b.f[i].n);
				else
					folder_diff(&r, &(struct folder){.name = "INBOX"}, &b.f[i],
					            0);
			}
	if (r.json) {
		uint64_t dn = 0;

		for (size_t i = 0; i < b.n; i++)
			dn += b.f[i].n;
		printf("],\"folders\":%zu,\"messages\":%llu,\"bytes\":%llu,\"dst_folders\":%zu,"
		       "\"dst_messages\":%llu,\"dst_bytes\":%llu,\"differences\":%lu,\"exact\":%s",
		       a.n, (unsigned long long)nmsg, (unsigned long long)a.bytes, b.n,
		       (unsigned long long)dn, (unsigned long long)b.bytes, r.total,
		       r.total ? "false" : "true");
		for (int k = 0; k < D_KINDS; k++)
			printf(",\"%s\":%lu", kind_json[k], r.count[k]);
		printf("}\n");
	} else {
		if (r.total > CMP_SHOW)
			printf("... and %lu more differences\n", r.total - CMP_SHOW);
		printf("compare: %zu folders, %llu messages, %llu bytes: ", a.n,
		       (unsigned long long)nmsg, (unsigned long long)a.bytes);
		if (r.total) {
			printf("%lu differences (", r.total);
			for (int k = 0, sep = 0; k < D_KINDS; k++)
				if (r.count[k])
					printf("%s%s %lu", sep++ ? ", " : "", kind_json[k],
					       r.count[k]);
			printf(")\n");
		} else {
			printf("exact\n");
		}
	}
	return r.total ? 1 : 0;
}
