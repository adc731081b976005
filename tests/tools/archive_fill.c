/*
 * archive_fill — fills an archive from a Maildir++ tree the way a backup
 * run would (tests only: the store without the pipeline).
 *
 *   archive_fill ARCHIVE MAILDIR [--account NAME] [--time UNIX]
 *                [--uidvalidity N] [--commit-every N]
 *
 * One run for the account. INBOX is MAILDIR itself, every ".Name" directory
 * is mailbox "Name" (Maildir++ names: '.' separates levels, modified
 * UTF-7 as on disk). Messages of cur/ and new/ get UIDs 1, 2, ... in the
 * order of the delivery sequence in their names (".M<seq>"), then by name.
 * Flags come from the ":2," info suffix (D F R S T), keywords from its
 * lowercase letters through the folder's dovecot-keywords, INTERNALDATE
 * from the file's mtime. A UID the latest committed run had that this
 * MAILDIR lacks is marked deleted. Prints one summary line on stdout.
 *
 * Not for: anything but tests and measurements.
 */
#include "store/archive.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct ent {
	char *name; /* cur/NAME or new/NAME */
	unsigned long seq;
};

struct totals {
	uint64_t messages, stored, dups, bytes;
};

static int ent_cmp(const void *x, const void *y)
{
	const struct ent *a = x, *b = y;

	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	return strcmp(a->name, b->name);
}

static unsigned long seq_of(const char *name)
{
	const char *m = strstr(name, ".M");

	return m ? strtoul(m + 2, NULL, 10) : 0;
}

static int list_dir(const char *folder, const char *sub, struct ent **v, size_t *n, size_t *cap)
{
	char path[4200];
	struct dirent *d;
	DIR *dir;

	snprintf(path, sizeof(path), "%s/%s", folder, sub);
	if (!(dir = opendir(path)))
		return errno == ENOENT ? 0 : -errno;
	while ((d = readdir(dir))) {
		if (d->d_name[0] == '.')
			continue;
		if (*n == *cap) {
			*cap = *cap ? *cap * 2 : 256;
			*v = realloc(*v, *cap * sizeof(**v));
			if (!*v) {
				closedir(dir);
				return -ENOMEM;
			}
		}
		(*v)[*n].seq = seq_of(d->d_name);
		if (asprintf(&(*v)[*n].name, "%s/%s", sub, d->d_name) < 0) {
			closedir(dir);
			return -ENOMEM;
		}
		(*n)++;
	}
	closedir(dir);
	return 0;
}

/* dovecot-keywords: "N name" lines; letter 'a' + N. */
static void keywords_load(const char *folder, char kw[26][128])
{
	char path[4200], line[512];
	FILE *f;

	memset(kw, 0, 26 * 128);
	snprintf(path, sizeof(path), "%s/dovecot-keywords", folder);
	if (!(f = fopen(path, "r")))
		return;
	while (fgets(line, sizeof(line), f)) {
		char *sp = strchr(line, ' ');
		long i = strtol(line, NULL, 10);

		if (!sp || i < 0 || i > 25)
			continue;
		sp[strcspn(sp, "\r\n")] = '\0';
		snprintf(kw[i], 128, "%s", sp + 1);
	}
	fclose(f);
}

static void info_parse(const char *name, char kw[26][128], struct archive_msgmeta *m)
{
	const char *info = strstr(name, ":2,");
	size_t n = 0;

	m->flags = 0;
	m->keywords[0] = '\0';
	if (!info)
		return;
	for (const char *p = info + 3; *p; p++) {
		switch (*p) {
		case 'D':
			m->flags |= ARCHIVE_F_DRAFT;
			break;
		case 'F':
			m->flags |= ARCHIVE_F_FLAGGED;
			break;
		case 'R':
			m->flags |= ARCHIVE_F_ANSWERED;
			break;
		case 'S':
			m->flags |= ARCHIVE_F_SEEN;
			break;
		case 'T':
			m->flags |= ARCHIVE_F_DELETED;
			break;
		default:
			if (*p >= 'a' && *p <= 'z' && kw[*p - 'a'][0]) {
				int w = snprintf(m->keywords + n, sizeof(m->keywords) - n, "%s%s",
				                 n ? " " : "", kw[*p - 'a']);

				if (w > 0 && (size_t)w < sizeof(m->keywords) - n)
					n += (size_t)w;
			}
		}
	}
}

static int store_file(struct archive *a, const char *path, uint8_t *buf, size_t cap,
                      struct archive_msgmeta *m, int *dup, struct mf_error *err)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_NOFOLLOW), rc;
	ssize_t got;

	if (fd < 0 || fstat(fd, &st) < 0) {
		mf_err_set(err, -errno, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	m->internaldate = st.st_mtim.tv_sec;
	if ((rc = archive_msg_begin(a, err))) {
		close(fd);
		return rc;
	}
	while ((got = read(fd, buf, cap)) > 0)
		if ((rc = archive_msg_data(a, buf, (size_t)got, err))) {
			archive_msg_abort(a);
			close(fd);
			return rc;
		}
	close(fd);
	if (got < 0) {
		archive_msg_abort(a);
		mf_err_set(err, -EIO, "%s: read failed", path);
		return -EIO;
	}
	return archive_msg_end(a, m->hash, &m->size, dup, err);
}

struct seen {
	uint32_t max;
	struct archive *a;
	uint32_t run, mbid;
	uint32_t *gone;
	size_t ngone;
};

static int gone_fn(void *ctx, uint32_t uid, const struct archive_msgmeta *m)
{
	struct seen *s = ctx;

	(void)m;
	if (uid > s->max) {
		uint32_t *p = realloc(s->gone, (s->ngone + 1) * sizeof(*p));

		if (!p)
			return 1;
		s->gone = p;
		s->gone[s->ngone++] = uid;
	}
	return 0;
}

static int fill_folder(struct archive *a, uint32_t run, uint32_t prev, const char *folder,
                       const char *mbname, uint32_t uidv, struct totals *t, struct mf_error *err)
{
	struct ent *v = NULL;
	size_t n = 0, cap = 0;
	char kw[26][128], path[4400];
	struct archive_msgmeta *m = malloc(sizeof(*m));
	uint8_t *buf = malloc(1 << 16);
	uint32_t mbid;
	int rc;

	if (!m || !buf)
		return -ENOMEM;
	keywords_load(folder, kw);
	if ((rc = list_dir(folder, "cur", &v, &n, &cap)) ||
	    (rc = list_dir(folder, "new", &v, &n, &cap)))
		goto out;
	qsort(v, n, sizeof(*v), ent_cmp);
	if ((rc = archive_mbox_begin(a, run, mbname, strlen(mbname), uidv, &mbid, err)))
		goto out;
	for (size_t i = 0; i < n; i++) {
		int dup = 0;

		snprintf(path, sizeof(path), "%s/%s", folder, v[i].name);
		info_parse(v[i].name, kw, m);
		if ((rc = store_file(a, path, buf, 1 << 16, m, &dup, err)) ||
		    (rc = archive_uid_put(a, run, mbid, (uint32_t)(i + 1), m, err)))
			goto out;
		t->messages++;
		t->bytes += m->size;
		if (dup)
			t->dups++;
		else
			t->stored++;
	}
	if (prev) {
		/* UIDs the previous run had beyond this folder's count: gone */
		struct seen s = {(uint32_t)n, a, run, mbid, NULL, 0};
		struct mf_error e2;

		if (archive_uid_each(a, prev, mbid, gone_fn, &s, &e2) == 0)
			for (size_t i = 0; i < s.ngone && !rc; i++)
				rc = archive_uid_delete(a, run, mbid, s.gone[i], err);
		free(s.gone);
	}
out:
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
	free(m);
	free(buf);
	return rc;
}

int main(int argc, char **argv)
{
	const char *account = "maildir", *arch, *root;
	uint64_t when = (uint64_t)time(NULL);
	uint32_t uidv = 1, run, prev = 0;
	struct archive *a;
	struct mf_error err = {0};
	struct totals t = {0};
	struct archive_stats st;
	struct dirent *d;
	DIR *dir;
	int rc;

	if (argc < 3) {
		fprintf(stderr, "usage: archive_fill ARCHIVE MAILDIR [--account NAME] [--time T] "
		                "[--uidvalidity N]\n");
		return 2;
	}
	arch = argv[1];
	root = argv[2];
	for (int i = 3; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--account"))
			account = argv[i + 1];
		else if (!strcmp(argv[i], "--time"))
			when = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--uidvalidity"))
			uidv = (uint32_t)strtoul(argv[i + 1], NULL, 10);
		else {
			fprintf(stderr, "archive_fill: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (archive_open(&a, arch, ARCHIVE_OPEN_CREATE, &err)) {
		fprintf(stderr, "archive_fill: %s\n", err.msg);
		return 2;
	}
	if (archive_run_latest(a, account, &prev, &err))
		prev = 0;
	if ((rc = archive_run_begin(a, account, when, &run, &err)) ||
	    (rc = fill_folder(a, run, prev, root, "INBOX", uidv, &t, &err)))
		goto fail;
	if (!(dir = opendir(root))) {
		mf_err_set(&err, -errno, "%s: %s", root, strerror(errno));
		goto fail;
	}
	while ((d = readdir(dir))) {
		char path[4200];
		struct stat sb;

		if (d->d_name[0] != '.' || !strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", root, d->d_name);
		if (lstat(path, &sb) < 0 || !S_ISDIR(sb.st_mode))
			continue;
		if ((rc = fill_folder(a, run, prev, path, d->d_name + 1, uidv, &t, &err))) {
			closedir(dir);
			goto fail;
		}
	}
	closedir(dir);
	if ((rc = archive_run_commit(a, run, &err)) || (rc = archive_stats(a, &st, &err)))
		goto fail;
	printf("run %u messages %llu stored %llu duplicates %llu bytes %llu archive_raw %llu "
	       "archive_stored %llu\n",
	       run, (unsigned long long)t.messages, (unsigned long long)t.stored,
	       (unsigned long long)t.dups, (unsigned long long)t.bytes,
	       (unsigned long long)st.raw_bytes, (unsigned long long)st.stored_bytes);
	archive_close(a);
	return 0;
fail:
	fprintf(stderr, "archive_fill: %s\n", err.msg);
	archive_close(a);
	return 1;
}
