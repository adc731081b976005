/*
 * compare — are two Dovecot Maildir trees the same mail?
 *
 *   compare SRC_MAILDIR DST_MAILDIR [--src-sep .|/] [--dst-sep .|/] [--json] [--ignore-extra]
 *
 * Folder by folder, the multiset of (message bytes with every run of CRs
 * before an LF dropped — Dovecot stores Maildir files with LF line ends
 * (mail_save_crlf = no) and rewrites CRs before a line end on APPEND, so
 * that is all a Maildir can tell —, flags including
 * keywords resolved through each side's dovecot-keywords, INTERNALDATE =
 * file mtime) must be equal. Reads the files directly, never through IMAP,
 * so it judges mailferry and the peers independently of any IMAP client.
 * Exit 0 exact, 1 different, 2 usage or I/O error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

struct msg {
	uint8_t hash[32];
	char flags[160];
	int64_t mtime;
	char subject[64];
};

struct folder {
	char name[512];	/* hierarchy joined with '/' */
	struct msg *m;
	size_t n, cap;
};

struct tree {
	struct folder *f;
	size_t n, cap;
	uint64_t bytes;
};

static void die(const char *what, const char *path)
{
	fprintf(stderr, "compare: %s %s: %s\n", what, path, strerror(errno));
	exit(2);
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p) {
		fprintf(stderr, "compare: out of memory\n");
		exit(2);
	}
	return p;
}

/* dovecot-keywords: "0 $Forwarded" per line → names[0..25]. */
static void keywords_load(const char *dir, char names[26][64])
{
	char path[4096], line[256];
	FILE *f;

	memset(names, 0, 26 * 64);
	snprintf(path, sizeof(path), "%s/dovecot-keywords", dir);
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

/* ":2,FRSab" → "$Forwarded \Flagged \Seen ..." sorted. */
static void flags_canon(const char *info, char names[26][64], char *out, size_t cap)
{
	const char *v[40];
	size_t n = 0, o = 0;

	for (const char *p = info; p && *p && n < 40; p++) {
		switch (*p) {
		case 'D': v[n++] = "\\Draft"; break;
		case 'F': v[n++] = "\\Flagged"; break;
		case 'R': v[n++] = "\\Answered"; break;
		case 'S': v[n++] = "\\Seen"; break;
		case 'T': v[n++] = "\\Deleted"; break;
		default:
			if (*p >= 'a' && *p <= 'z')
				v[n++] = names[*p - 'a'][0] ? names[*p - 'a'] : "?unknown-keyword";
		}
	}
	qsort(v, n, sizeof(v[0]), cmpstr);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		o += (size_t)snprintf(out + o, o < cap ? cap - o : 0, "%s%s", i ? " " : "", v[i]);
}

static void hash_file(const char *path, struct msg *m, uint64_t *bytes)
{
	static uint8_t buf[1 << 16], out[(1 << 16) + 1];
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned hl = 32;
	int fd = open(path, O_RDONLY);
	uint64_t cr = 0;
	int in_hdr = 1, sol = 1;
	char hdr[80];
	size_t hl_len = 0;
	ssize_t r;

	if (fd < 0 || !c)
		die("cannot read", path);
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	m->subject[0] = '\0';
	while ((r = read(fd, buf, sizeof(buf))) > 0) {
		size_t o = 0;

		*bytes += (uint64_t)r;
		for (ssize_t i = 0; i < r; i++) {
			uint8_t ch = buf[i];

			/* remember the Subject line for readable reports */
			if (in_hdr) {
				if (sol && (ch == '\r' || ch == '\n'))
					in_hdr = 0;
				if (sol)
					hl_len = 0;
				if (ch == '\n') {
					hdr[hl_len] = '\0';
					if (!m->subject[0] && !strncasecmp(hdr, "Subject:", 8))
						snprintf(m->subject, sizeof(m->subject), "%s", hdr + 8 + (hdr[8] == ' '));
					sol = 1;
				} else {
					if (ch != '\r' && hl_len < sizeof(hdr) - 1)
						hdr[hl_len++] = (char)ch;
					sol = 0;
				}
			}
			if (ch == '\r') {
				cr++;
				continue;
			}
			if (cr) {
				uint64_t k = ch == '\n' ? 0 : cr;

				while (k--) {
					out[o++] = '\r';
					if (o == sizeof(out) - 1) {
						EVP_DigestUpdate(c, out, o);
						o = 0;
					}
				}
				cr = 0;
			}
			out[o++] = ch;
			if (o >= sizeof(out) - 1) {
				EVP_DigestUpdate(c, out, o);
				o = 0;
			}
		}
		EVP_DigestUpdate(c, out, o);
	}
	if (r < 0)
		die("cannot read", path);
	while (cr--)
		EVP_DigestUpdate(c, "\r", 1);
	EVP_DigestFinal_ex(c, m->hash, &hl);
	EVP_MD_CTX_free(c);
	close(fd);
}

static void folder_load(struct tree *t, const char *dir, const char *name)
{
	static const char *const subs[] = {"cur", "new"};
	char names[26][64], path[4096];
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

		snprintf(path, sizeof(path), "%s/%s", dir, subs[s]);
		if (!(d = opendir(path)))
			continue;
		while ((e = readdir(d))) {
			struct stat st;
			struct msg *m;
			char *info;

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s/%s", dir, subs[s], e->d_name);
			if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
				continue;
			if (f->n == f->cap) {
				f->cap = f->cap ? f->cap * 2 : 256;
				f->m = xrealloc(f->m, f->cap * sizeof(*f->m));
			}
			m = &f->m[f->n++];
			hash_file(path, m, &t->bytes);
			m->mtime = st.st_mtime;
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
static void walk_fs(struct tree *t, const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		die("cannot open", dir);
	while ((e = readdir(d))) {
		char sub[4096], name[1024];
		struct stat st;

		if (e->d_name[0] == '.' || !strcmp(e->d_name, "cur") || !strcmp(e->d_name, "new") ||
		    !strcmp(e->d_name, "tmp"))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
		if (stat(sub, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "/" : "", e->d_name);
		if (is_mailbox(sub))
			folder_load(t, sub, name);
		walk_fs(t, sub, name);
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

static void tree_load(struct tree *t, const char *root, char sep)
{
	memset(t, 0, sizeof(*t));
	if (!is_mailbox(root)) {
		errno = ENOENT;
		die("not a Maildir (no cur/)", root);
	}
	folder_load(t, root, "INBOX");
	if (sep == '/') {
		walk_fs(t, root, "");
	} else {
		DIR *d = opendir(root);
		struct dirent *e;

		if (!d)
			die("cannot open", root);
		while ((e = readdir(d))) {
			char sub[4096], name[1024];

			if (e->d_name[0] != '.' || !strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			snprintf(sub, sizeof(sub), "%s/%s", root, e->d_name);
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
}

static struct folder *folder_find(struct tree *t, const char *name)
{
	struct folder key;

	snprintf(key.name, sizeof(key.name), "%s", name);
	return bsearch(&key, t->f, t->n, sizeof(*t->f), folder_cmp);
}

static unsigned long diffs;
static int json;

static void report(const char *folder, const char *what, const struct msg *m, const char *more)
{
	diffs++;
	if (json || diffs > 200)
		return;
	printf("folder %s: %s", folder, what);
	if (m) {
		printf(" ");
		for (int i = 0; i < 6; i++)
			printf("%02x", m->hash[i]);
		printf(" (Subject: %.50s; flags: %s)", m->subject, m->flags);
	}
	printf("%s\n", more ? more : "");
}

int main(int argc, char **argv)
{
	const char *src = NULL, *dst = NULL;
	char ssep = '.', dsep = '.';
	int ignore_extra = 0;
	struct tree a, b;
	uint64_t nmsg = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--src-sep") && i + 1 < argc)
			ssep = argv[++i][0];
		else if (!strcmp(argv[i], "--dst-sep") && i + 1 < argc)
			dsep = argv[++i][0];
		else if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (!strcmp(argv[i], "--ignore-extra"))
			ignore_extra = 1;
		else if (!src)
			src = argv[i];
		else if (!dst)
			dst = argv[i];
		else
			src = NULL, dst = NULL, i = argc;
	}
	if (!src || !dst) {
		fprintf(stderr, "usage: compare SRC_MAILDIR DST_MAILDIR [--src-sep .|/] [--dst-sep .|/] "
				"[--json] [--ignore-extra]\n");
		return 2;
	}
	tree_load(&a, src, ssep);
	tree_load(&b, dst, dsep);
	for (size_t i = 0; i < a.n; i++) {
		struct folder *fa = &a.f[i], *fb = folder_find(&b, fa->name);
		size_t x = 0, y = 0;

		nmsg += fa->n;
		if (!fb) {
			if (fa->n || strcmp(fa->name, "INBOX"))
				report(fa->name, "missing on the destination", NULL, NULL);
			continue;
		}
		/* merge the two sorted multisets */
		while (x < fa->n || y < fb->n) {
			int c = x == fa->n ? 1 : y == fb->n ? -1 : msg_cmp(&fa->m[x], &fb->m[y]);

			if (c == 0) {
				x++, y++;
				continue;
			}
			if (c < 0) {
				const struct msg *m = &fa->m[x];
				/* same bytes nearby with other flags/date? */
				if (y < fb->n && !memcmp(m->hash, fb->m[y].hash, 32)) {
					char more[400];

					snprintf(more, sizeof(more), " differs: destination has flags \"%s\" date %lld vs %lld",
						 fb->m[y].flags, (long long)fb->m[y].mtime, (long long)m->mtime);
					report(fa->name, "message", m, more);
					x++, y++;
					continue;
				}
				report(fa->name, "missing message", m, NULL);
				x++;
			} else {
				const struct msg *m = &fb->m[y];
				int dup = (y > 0 && !memcmp(fb->m[y - 1].hash, m->hash, 32)) ||
					  (x > 0 && !memcmp(fa->m[x - 1].hash, m->hash, 32));

				if (!ignore_extra || dup)
					report(fa->name, dup ? "duplicate message" : "extra message", m, NULL);
				y++;
			}
		}
	}
	if (!ignore_extra)
		for (size_t i = 0; i < b.n; i++)
			if (!folder_find(&a, b.f[i].name) && (b.f[i].n || strcmp(b.f[i].name, "INBOX")))
				report(b.f[i].name, "exists only on the destination", NULL, NULL);
	if (json)
		printf("{\"folders\":%zu,\"messages\":%llu,\"bytes\":%llu,\"differences\":%lu,\"exact\":%s}\n",
		       a.n, (unsigned long long)nmsg, (unsigned long long)a.bytes, diffs,
		       diffs ? "false" : "true");
	else
		printf("compare: %zu folders, %llu messages, %llu bytes: ", a.n,
		       (unsigned long long)nmsg, (unsigned long long)a.bytes),
			diffs ? printf("%lu differences\n", diffs) : printf("exact\n");
	return diffs ? 1 : 0;
}
