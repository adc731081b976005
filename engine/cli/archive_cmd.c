/*
 * archive_cmd — export, verify ARCHIVE and archive ls (see archive_cmd.h).
 * Data (problems, listings) goes to stdout, one line each, key=value with
 * names escaped; the summary goes to stderr.
 *
 * Not for: the archive itself (store/archive.c, store/export.c).
 */
#include "engine/cli/archive_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/cli/url.h"
#include "store/archive.h"
#include "store/archive_crypt.h"
#include "store/export.h"

static void hex32(const uint8_t *h, char out[65])
{
	static const char x[] = "0123456789abcdef";

	for (int i = 0; i < 32; i++) {
		out[2 * i] = x[h[i] >> 4];
		out[2 * i + 1] = x[h[i] & 15];
	}
	out[64] = '\0';
}

static int parse_u32(const char *s, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || !*s || *end || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* ---- opening an archive from the command line (every command) ---- */

/* One error line on stderr, after o->where; copied to o->why. 2. */
static int say(const struct cli_archive_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int say(const struct cli_archive_opts *o, const char *fmt, ...)
{
	char line[1200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	mf_print("mailferry: %s%s", o && o->where ? o->where : "", line);
	if (o && o->why && o->whycap && !o->why[0])
		snprintf(o->why, o->whycap, "%s", line);
	return 2;
}

int cli_archive_take_opts(int *argc, char **argv, struct cli_archive_opts *o, int allow_encrypt,
                          const char *cmd)
{
	int i = 1, j = 1;
	const char *where = o->where;
	char *why = o->why;
	size_t whycap = o->whycap;

	memset(o, 0, sizeof(*o));
	o->where = where;
	o->why = why;
	o->whycap = whycap;
	while (i < *argc) {
		const char *s = argv[i];

		if (!strcmp(s, "--")) {
			while (i < *argc)
				argv[j++] = argv[i++];
			break;
		}
		if (!strcmp(s, "--encrypt")) {
			if (!allow_encrypt) {
				return say(o, "%s: --encrypt applies when an archive is created "
				              "(backup)",
				           cmd);
			}
			o->encrypt = 1;
			i++;
		} else if (!strcmp(s, "--passphrase-file")) {
			if (i + 1 >= *argc) {
				return say(o, "%s: --passphrase-file wants a file", cmd);
			}
			o->pass_file = argv[i + 1];
			i += 2;
		} else if (!strncmp(s, "--passphrase-file=", 18)) {
			o->pass_file = s + 18;
			i++;
		} else {
			argv[j++] = argv[i++];
		}
	}
	*argc = j;
	argv[j] = NULL;
	if (o->pass_file && !*o->pass_file) {
		return say(o, "%s: --passphrase-file wants a file", cmd);
	}
	return 0;
}

/* The passphrase: the file's bytes up to one final newline (or CRLF).
 * Never logged. 0 or -errno / -EINVAL with err set. */
static int pass_read(const char *path, uint8_t *buf, size_t cap, size_t *n, struct mf_error *err)
{
	struct stat st;
	ssize_t got;
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		mf_err_set(err, rc, "passphrase file %s: %s", path, strerror(-rc));
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		mf_err_set(err, -EINVAL, "passphrase file %s: not a regular file", path);
		return -EINVAL;
	}
	if (st.st_mode & 0077)
		mf_log(MF_LOG_WARN, "passphrase file %s: others may read it (chmod 600)", path);
	while (len < cap && (got = read(fd, buf + len, cap - len)) != 0) {
		if (got < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			close(fd);
			mf_err_set(err, rc, "passphrase file %s: %s", path, strerror(-rc));
			return rc;
		}
		len += (size_t)got;
	}
	close(fd);
	if (len && buf[len - 1] == '\n')
		len--;
	if (len && buf[len - 1] == '\r')
		len--;
	if (!len || len > ACRYPT_PASS_MAX) {
		mf_err_set(err, -EINVAL, "passphrase file %s: %s", path,
		           len ? "longer than 4096 bytes" : "empty");
		return -EINVAL;
	}
	*n = len;
	return 0;
}

int cli_archive_account(const struct url *su, char *out, size_t cap)
{
	int n =
	    snprintf(out, cap, "%s%s@%s", su->kind == URL_POP3 ? "pop3:" : "", su->user, su->host);

	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int cli_archive_job_key(const char *account, const char *real, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%.400s -> archive:%.1600s", account, real);

	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int cli_archive_open(struct archive **a, const char *dir, unsigned flags,
                     const struct cli_archive_opts *o)
{
	struct mf_error err = {0};
	struct archive_secret s = {0};
	uint8_t *pass = NULL;
	const char *file = o ? o->pass_file : NULL;
	int rc;

	*a = NULL;
	if (!file && (file = getenv("MAILFERRY_ARCHIVE_PASSPHRASE_FILE")) && !*file)
		file = NULL;
	if (o && o->encrypt && !file) {
		return say(o, "--encrypt needs --passphrase-file FILE (or "
		              "MAILFERRY_ARCHIVE_PASSPHRASE_FILE)");
	}
	if (file) {
		if (!(pass = malloc(ACRYPT_PASS_MAX + 2))) {
			return say(o, "out of memory");
		}
		if (pass_read(file, pass, ACRYPT_PASS_MAX + 2, &s.passlen, &err)) {
			free(pass);
			return say(o, "%s", err.msg);
		}
		s.pass = pass;
	}
	s.encrypt = o ? o->encrypt : 0;
	rc = archive_open_secret(a, dir, flags, &s, &err);
	if (pass) {
		OPENSSL_cleanse(pass, ACRYPT_PASS_MAX + 2);
		free(pass);
	}
	if (rc) {
		return say(o, "%s", err.msg);
	}
	return 0;
}

static int export_problem(void *ctx, const char *mailbox, size_t mlen, uint32_t uid,
                          const char *why)
{
	char name[1024], esc[1024];
	uint32_t run = *(uint32_t *)ctx;

	/* values between quotes: a name may hold '"' (mf_escape_quoted) */
	mf_escape_quoted(mailbox ? mailbox : "?", mailbox ? mlen : 1, name, sizeof(name));
	mf_escape_quoted(why, strlen(why), esc, sizeof(esc));
	printf("not-exported run=%u mailbox=\"%s\" uid=%u why=\"%s\"\n", run, name, uid, esc);
	return 0;
}

int archive_cmd_export(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"maildir", required_argument, NULL, 'm'}, {"mbox", required_argument, NULL, 'b'},
	    {"run", required_argument, NULL, 'r'},     {"folder", required_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
	};
	const char *maildir = NULL, *mbox = NULL, *folder = NULL;
	struct export_stats st;
	struct cli_archive_opts ao = {0};
	struct mf_error err = {0};
	struct archive *a;
	uint32_t run = 0;
	int opt, rc;

	if ((rc = cli_archive_take_opts(&argc, argv, &ao, 0, "export")))
		return rc;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'm':
			maildir = optarg;
			break;
		case 'b':
			mbox = optarg;
			break;
		case 'f':
			folder = optarg;
			break;
		case 'r':
			if (parse_u32(optarg, &run) || !run) {
				fprintf(stderr, "mailferry export: --run wants a run number\n");
				return 2;
			}
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 1 || !maildir == !mbox)
		goto usage;
	if ((rc = cli_archive_open(&a, argv[optind], ARCHIVE_OPEN_RDONLY, &ao)))
		return rc;
	if (!run && archive_run_latest(a, NULL, &run, &err)) {
		mf_print("mailferry: %s", err.msg);
		archive_close(a);
		return 2;
	}
	rc = maildir ? export_maildir(a, run, folder, maildir, &st, export_problem, &run, &err)
	             : export_mbox(a, run, folder, mbox, &st, export_problem, &run, &err);
	archive_close(a);
	if (rc) {
		mf_print("mailferry: export: %s", err.msg[0] ? err.msg : strerror(-rc));
		return 2;
	}
	fprintf(stderr,
	        "export: run %u: %llu mailboxes, %llu messages, %llu bytes; %llu failed, %llu "
	        "keywords dropped\n",
	        run, (unsigned long long)st.mailboxes, (unsigned long long)st.messages,
	        (unsigned long long)st.bytes, (unsigned long long)st.failed,
	        (unsigned long long)st.keywords_dropped);
	return st.failed ? 1 : 0;
usage:
	fputs("usage: mailferry export ARCHIVE --maildir DIR | --mbox FILE [--run N] "
	      "[--folder NAME] [--passphrase-file FILE]\n",
	      stderr);
	return 2;
}

static int verify_problem(void *ctx, const struct archive_problem *p)
{
	char name[1024], hash[65], what[1024];

	(void)ctx;
	mf_escape_quoted(p->mailbox ? p->mailbox : "?", p->mailbox ? p->mlen : 1, name,
	                 sizeof(name));
	mf_escape_quoted(p->what, strlen(p->what), what, sizeof(what));
	if (p->hash)
		hex32(p->hash, hash);
	else
		strcpy(hash, "-");
	printf("problem run=%u mailbox=\"%s\" uid=%u hash=%s what=\"%s\"\n", p->run, name, p->uid,
	       hash, what);
	return 0;
}

int archive_cmd_is_archive_verify(int argc, char **argv)
{
	int n = 0;

	/* one operand besides the passphrase option */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--passphrase-file"))
			i++;
		else if (strncmp(argv[i], "--passphrase-file=", 18))
			n++;
	}
	return n == 1;
}

int archive_cmd_verify(int argc, char **argv)
{
	struct cli_archive_opts ao = {0};
	struct mf_error err = {0};
	struct archive_stats st;
	struct archive *a;
	uint64_t problems = 0;
	int rc;

	if ((rc = cli_archive_take_opts(&argc, argv, &ao, 0, "verify")))
		return rc;
	if (argc != 2) {
		fputs("usage: mailferry verify ARCHIVE [--passphrase-file FILE]\n", stderr);
		return 2;
	}
	if ((rc = cli_archive_open(&a, argv[1], ARCHIVE_OPEN_RDONLY | ARCHIVE_OPEN_WALK, &ao)))
		return rc;
	rc = archive_verify(a, verify_problem, NULL, &problems, &err);
	if (!rc)
		rc = archive_stats(a, &st, &err);
	archive_close(a);
	if (rc) {
		mf_print("mailferry: verify: %s", err.msg[0] ? err.msg : strerror(-rc));
		return 2;
	}
	fflush(stdout);
	fprintf(stderr, "verify: %llu messages stored, %llu problems\n",
	        (unsigned long long)st.objects, (unsigned long long)problems);
	return problems ? 1 : 0;
}

/* ---- archive ls ---- */

struct lsctx {
	struct archive *a;
	uint32_t run;
	uint64_t n, bytes;
};

static int count_fn(void *ctx, uint32_t uid, const struct archive_msgmeta *m)
{
	struct lsctx *l = ctx;

	(void)uid;
	l->n++;
	l->bytes += m ? m->size : 0;
	return 0;
}

static int ls_mbox(void *ctx, const struct archive_mbox_info *mb)
{
	struct lsctx *l = ctx;
	struct lsctx c = {l->a, l->run, 0, 0};
	struct mf_error err = {0};
	char name[1024];

	mf_escape_quoted(mb->name, mb->nlen, name, sizeof(name));
	/* archive_uid_each walks another database: safe inside this walk */
	archive_uid_each(l->a, l->run, mb->mbid, count_fn, &c, &err);
	printf("  mailbox=\"%s\" uidvalidity=%u messages=%llu bytes=%llu\n", name, mb->uidvalidity,
	       (unsigned long long)c.n, (unsigned long long)c.bytes);
	l->n += c.n;
	l->bytes += c.bytes;
	return 0;
}

static int ls_run(void *ctx, const struct archive_run_info *r)
{
	struct lsctx *l = ctx;
	struct lsctx c = {l->a, r->id, 0, 0};
	struct mf_error err = {0};
	char when[32], acct[1024];
	time_t t = (time_t)r->time;
	struct tm tm;

	if (!gmtime_r(&t, &tm))
		memset(&tm, 0, sizeof(tm));
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	mf_escape_quoted(r->account, strlen(r->account), acct, sizeof(acct));
	printf("run=%u time=%s account=\"%s\" state=%s\n", r->id, when, acct,
	       r->committed ? "complete" : "incomplete");
	if (r->committed) {
		archive_mbox_each(l->a, r->id, ls_mbox, &c, &err);
		printf("  total messages=%llu bytes=%llu\n", (unsigned long long)c.n,
		       (unsigned long long)c.bytes);
	}
	return 0;
}

int archive_cmd_archive(int argc, char **argv)
{
	struct cli_archive_opts ao = {0};
	struct mf_error err = {0};
	struct archive_stats st;
	struct archive *a;
	struct lsctx l = {0};
	int rc;

	if ((rc = cli_archive_take_opts(&argc, argv, &ao, 0, "archive")))
		return rc;
	if (argc != 3 || strcmp(argv[1], "ls")) {
		fputs("usage: mailferry archive ls ARCHIVE [--passphrase-file FILE]\n", stderr);
		return 2;
	}
	if ((rc = cli_archive_open(&a, argv[2], ARCHIVE_OPEN_RDONLY, &ao)))
		return rc;
	l.a = a;
	rc = archive_stats(a, &st, &err);
	if (!rc) {
		printf("archive messages=%llu raw_bytes=%llu stored_bytes=%llu ratio=%.3f packs=%u "
		       "dictionaries=%u runs=%u\n",
		       (unsigned long long)st.objects, (unsigned long long)st.raw_bytes,
		       (unsigned long long)st.stored_bytes,
		       st.raw_bytes ? (double)st.stored_bytes / (double)st.raw_bytes : 0.0,
		       st.packs, st.dicts, st.runs);
		rc = archive_run_each(a, ls_run, &l, &err);
	}
	archive_close(a);
	if (rc) {
		mf_print("mailferry: archive ls: %s", err.msg[0] ? err.msg : strerror(-rc));
		return 2;
	}
	return 0;
}
