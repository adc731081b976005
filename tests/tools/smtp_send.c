/*
 * smtp_send — a test client for protocols/smtp_client: sends each FILE as
 * one message over one SMTP or LMTP connection, pipelined, and prints one
 * line per message (and per recipient when there are several). With
 * PIPELINING the next file begins as soon as the client takes it (the
 * previous one's end is out, its final reply still to come): two
 * transactions in flight, as mailferry's sink does; --no-overlap waits for
 * each message's result first.
 *
 *   smtp_send [--lmtp] [--tls|--starttls] [--ca FILE] [--insecure]
 *             [--no-chunking] [--no-pipelining] [--no-overlap] [--allow-plaintext]
 *             [--user U --password-file F] [--helo NAME] [--timeout S]
 *             [--read N] [--8bit auto|yes|no]
 *             HOST PORT | --unix PATH
 *             --from ADDR --rcpt ADDR [--rcpt ADDR...] FILE...
 *
 * Output (stdout), one line per message:
 *   msg N FILE: delivered|tempfail|permfail: STEP: CODE E.S.D text
 *   msg N FILE: refused: why (smtp_msg_begin refused it; nothing sent)
 *   msg N FILE: not sent (the connection died before it)
 * with "  rcpt <ADDR>: ..." lines after it when --rcpt was given more than
 * once, then "summary: delivered N tempfail N permfail N refused N notsent N".
 * A fatal error is printed on stderr as "smtp_send: error: ...".
 * Exit: 0 all delivered, 1 some not, 2 usage, 3 the connection failed.
 *
 * The file is read in pieces of at most --read bytes (default 65536) and
 * never held whole; with --8bit auto (the default) it is scanned once
 * first: any byte >= 0x80 sets BODY=8BITMIME, one in the header
 * SMTPUTF8. Plain connections are the default (--tls: implicit TLS,
 * --starttls: STARTTLS required).
 */
#include "engine/base/err.h"
#include "engine/runtime/loop.h"
#include "protocols/smtp_client.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct send {
	struct loop loop;
	struct smtp_client *c;
	struct smtp_endpoint ep;
	char **files;
	int nfiles, next, fd, fatal, quit, no_overlap;
	int inflight[SMTP_TXN_MAX]; /* files begun and not yet answered, oldest first */
	unsigned ninflight;
	const char *from;
	const char *rcpt[SMTP_RCPT_MAX];
	size_t nrcpt;
	int eight; /* -1 auto, 0 no, 1 yes */
	size_t readsz;
	uint8_t *buf;
	size_t pend_off, pend_len; /* read but not yet taken */
	unsigned delivered, tempfail, permfail, refused, notsent;
};

static void usage(void)
{
	fprintf(stderr, "usage: smtp_send [--lmtp] [--tls|--starttls] [--ca FILE] [--no-chunking] "
	                "HOST PORT|--unix PATH --from ADDR --rcpt ADDR FILE...\n");
	exit(2);
}

static const char *outcome_name(int o)
{
	return o == 2 ? "delivered" : o == 4 ? "tempfail" : "permfail";
}

static void start_next(struct send *s);

/* The file's flags: 8-bit anywhere, 8-bit in the header. */
static unsigned scan_flags(int fd)
{
	uint8_t b[65536];
	unsigned f = 0;
	int in_header = 1, nl = 0;
	ssize_t r;

	while ((r = read(fd, b, sizeof(b))) > 0) {
		for (ssize_t i = 0; i < r; i++) {
			if (b[i] >= 0x80) {
				f |= SMTP_MSG_8BIT;
				if (in_header)
					f |= SMTP_MSG_UTF8;
			}
			if (b[i] == '\n') {
				if (nl)
					in_header = 0;
				nl = 1;
			} else if (b[i] != '\r') {
				nl = 0;
			}
		}
	}
	lseek(fd, 0, SEEK_SET);
	return f;
}

/* The file being written is all out: its end goes, and the next file
 * begins at once if the client takes it (else after a result). */
static void end_cur(struct send *s)
{
	close(s->fd);
	s->fd = -1;
	if (smtp_msg_end(s->c) < 0)
		return; /* the connection died: error follows */
	if (!s->no_overlap && smtp_can_begin(s->c))
		start_next(s);
}

static void pump(struct send *s)
{
	for (;;) {
		size_t space = smtp_write_space(s->c);
		int r;

		if (smtp_msg_failed(s->c)) {
			s->pend_len = 0;
			end_cur(s);
			return;
		}
		if (!s->pend_len) {
			ssize_t got;

			if (!space) {
				smtp_want_writable(s->c);
				return;
			}
			got = read(s->fd, s->buf, space < s->readsz ? space : s->readsz);
			if (got < 0) {
				fprintf(stderr, "smtp_send: read %s: %s\n", s->files[s->next - 1],
				        strerror(errno));
				exit(3);
			}
			if (got == 0) {
				end_cur(s);
				return;
			}
			s->pend_off = 0;
			s->pend_len = (size_t)got;
		}
		r = smtp_msg_data(s->c, s->buf + s->pend_off, s->pend_len);
		if (r == -ECANCELED) {
			s->pend_len = 0;
			end_cur(s);
			return;
		}
		if (r == -EAGAIN) {
			smtp_want_writable(s->c);
			return;
		}
		if (r < 0)
			return; /* the connection died: error follows */
		s->pend_len = 0;
	}
}

static void on_ready(struct smtp_client *c)
{
	struct send *s = c->ud;

	fprintf(stderr, "smtp_send: ready, capabilities 0x%x, SIZE %llu\n", c->caps,
	        (unsigned long long)c->size_max);
	start_next(s);
}

static void on_error(struct smtp_client *c, const struct mf_error *err)
{
	struct send *s = c->ud;

	fprintf(stderr, "smtp_send: error: %s\n", err->msg);
	mf_log(MF_LOG_ERROR, "%s", err->msg); /* escaped, as a user would see it */
	s->fatal = 1;
	for (unsigned i = 0; i < s->ninflight; i++) {
		int idx = s->inflight[i];

		printf("msg %d %s: not sent: %s\n", idx + 1, s->files[idx], err->msg);
		s->notsent++;
	}
	s->ninflight = 0;
	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
}

static void on_done(struct smtp_client *c, const struct smtp_result *r, void *ud)
{
	struct send *s = c->ud;
	char line[1200];
	int idx = (int)(intptr_t)ud;

	if (!s->ninflight || s->inflight[0] != idx) {
		fprintf(stderr, "smtp_send: error: result for message %d out of order\n", idx + 1);
		s->fatal = 1;
	} else {
		s->ninflight--;
		memmove(s->inflight, s->inflight + 1, s->ninflight * sizeof(s->inflight[0]));
	}

	(void)c;
	smtp_status_describe(r->decisive, NULL, line, sizeof(line));
	printf("msg %d %s: %s: %s\n", idx + 1, s->files[idx], outcome_name(r->outcome), line);
	if (r->nrcpt > 1)
		for (size_t i = 0; i < r->nrcpt; i++) {
			const struct smtp_status *st = &r->rcpt[i];
			int o = st->step == SMTP_STEP_END && st->code / 100 == 2 ? 2
			        : st->code / 100 == 5                            ? 5
			                                                         : 4;

			smtp_status_describe(st, NULL, line, sizeof(line));
			printf("  rcpt <%s>: %s: %s\n", s->rcpt[i], outcome_name(o), line);
		}
	fflush(stdout);
	if (r->outcome == 2)
		s->delivered++;
	else if (r->outcome == 4)
		s->tempfail++;
	else
		s->permfail++;
	if (s->fd < 0 && smtp_can_begin(s->c))
		start_next(s); /* nothing being written: the next file */
}

static void on_writable(struct smtp_client *c)
{
	struct send *s = c->ud;

	if (s->fd >= 0)
		pump(s);
}

static const struct smtp_client_cb send_cb = {
    .ready = on_ready,
    .error = on_error,
    .done = on_done,
    .writable = on_writable,
};

static void start_next(struct send *s)
{
	while (s->next < s->nfiles) {
		int idx = s->next++;
		struct smtp_msg m;
		struct mf_error err;
		struct stat st;

		s->fd = open(s->files[idx], O_RDONLY | O_CLOEXEC);
		if (s->fd < 0 || fstat(s->fd, &st) < 0) {
			fprintf(stderr, "smtp_send: %s: %s\n", s->files[idx], strerror(errno));
			exit(2);
		}
		memset(&m, 0, sizeof(m));
		m.size = (uint64_t)st.st_size;
		m.from = s->from;
		m.rcpt = s->rcpt;
		m.nrcpt = s->nrcpt;
		m.flags = s->eight < 0 ? scan_flags(s->fd) : s->eight ? SMTP_MSG_8BIT : 0;
		if (smtp_msg_begin(s->c, &m, (void *)(intptr_t)idx, &err) < 0) {
			printf("msg %d %s: refused: %s\n", idx + 1, s->files[idx], err.msg);
			fflush(stdout);
			s->refused++;
			close(s->fd);
			s->fd = -1;
			if (s->c->closed)
				return;
			continue;
		}
		s->inflight[s->ninflight++] = idx;
		s->pend_len = 0;
		pump(s);
		return;
	}
	if (!s->quit && !s->ninflight) {
		s->quit = 1;
		smtp_client_quit(s->c);
	}
}

static char *read_password(const char *path)
{
	static char pw[1024];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f) {
		fprintf(stderr, "smtp_send: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	n = fread(pw, 1, sizeof(pw) - 1, f);
	fclose(f);
	pw[n] = '\0';
	while (n && (pw[n - 1] == '\n' || pw[n - 1] == '\r'))
		pw[--n] = '\0';
	return pw;
}

int main(int argc, char **argv)
{
	struct send *s = calloc(1, sizeof(*s));
	struct mf_error err;
	char *pos[4];
	int npos = 0, i;

	if (!s)
		return 3;
	s->ep.label = "smtp_send";
	s->ep.tls = SMTP_TLS_NONE;
	s->ep.timeout_ms = 20000;
	s->eight = -1;
	s->readsz = 65536;
	s->fd = -1;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--lmtp")) {
			s->ep.lmtp = 1;
		} else if (!strcmp(a, "--tls")) {
			s->ep.tls = SMTP_TLS_IMPLICIT;
		} else if (!strcmp(a, "--starttls")) {
			s->ep.tls = SMTP_TLS_STARTTLS;
		} else if (!strcmp(a, "--insecure")) {
			s->ep.insecure = 1;
		} else if (!strcmp(a, "--no-chunking")) {
			s->ep.no_chunking = 1;
		} else if (!strcmp(a, "--no-pipelining")) {
			s->ep.no_pipelining = 1;
		} else if (!strcmp(a, "--no-overlap")) {
			s->no_overlap = 1;
		} else if (!strcmp(a, "--allow-plaintext")) {
			s->ep.allow_plaintext = 1;
		} else if (!v && a[0] == '-' && a[1] == '-') {
			usage();
		} else if (!strcmp(a, "--ca")) {
			s->ep.ca_file = argv[++i];
		} else if (!strcmp(a, "--unix")) {
			s->ep.unix_path = argv[++i];
		} else if (!strcmp(a, "--from")) {
			s->from = argv[++i];
		} else if (!strcmp(a, "--rcpt")) {
			if (s->nrcpt == SMTP_RCPT_MAX)
				usage();
			s->rcpt[s->nrcpt++] = argv[++i];
		} else if (!strcmp(a, "--user")) {
			s->ep.user = argv[++i];
		} else if (!strcmp(a, "--password-file")) {
			s->ep.password = read_password(argv[++i]);
		} else if (!strcmp(a, "--helo")) {
			s->ep.helo = argv[++i];
		} else if (!strcmp(a, "--timeout")) {
			s->ep.timeout_ms = (unsigned)atoi(argv[++i]) * 1000u;
		} else if (!strcmp(a, "--read")) {
			s->readsz = (size_t)atol(argv[++i]);
		} else if (!strcmp(a, "--8bit")) {
			v = argv[++i];
			s->eight = !strcmp(v, "yes") ? 1 : !strcmp(v, "no") ? 0 : -1;
		} else if (a[0] == '-' && a[1] == '-') {
			usage();
		} else if (npos < (s->ep.unix_path ? 0 : 2)) {
			pos[npos++] = argv[i];
		} else {
			break;
		}
	}
	if (!s->ep.unix_path) {
		if (npos != 2)
			usage();
		s->ep.host = pos[0];
		s->ep.port = (uint16_t)atoi(pos[1]);
	}
	if (!s->from || !s->nrcpt || i >= argc || !s->readsz || s->readsz > 16u << 20)
		usage();
	s->files = argv + i;
	s->nfiles = argc - i;
	if (!(s->buf = malloc(s->readsz)) || !(s->c = calloc(1, sizeof(*s->c))))
		return 3;
	if (loop_init(&s->loop, 64) < 0) {
		fprintf(stderr, "smtp_send: io_uring setup failed\n");
		return 3;
	}
	if (smtp_client_open(s->c, &s->loop, &s->ep, &send_cb, s, &err) < 0) {
		fprintf(stderr, "smtp_send: error: %s\n", err.msg);
		s->fatal = 1;
	} else {
		loop_run(&s->loop);
		smtp_client_close(s->c);
		loop_run(&s->loop); /* the close's completions */
	}
	loop_free(&s->loop);
	for (; s->next < s->nfiles; s->next++) {
		printf("msg %d %s: not sent\n", s->next + 1, s->files[s->next]);
		s->notsent++;
	}
	printf("summary: delivered %u tempfail %u permfail %u refused %u notsent %u\n",
	       s->delivered, s->tempfail, s->permfail, s->refused, s->notsent);
	free(s->buf);
	free(s->c);
	{
		int rc = s->fatal                                                   ? 3
		         : (s->tempfail || s->permfail || s->refused || s->notsent) ? 1
		                                                                    : 0;

		free(s);
		return rc;
	}
}
