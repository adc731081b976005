/*
 * pop3_fetch — a test client for protocols/pop3_client: logs in, lists
 * (UIDL and LIST, pipelined), RETRs every message (pipelined when the
 * server offers PIPELINING) and writes each one as OUTDIR/<uidl>, its
 * exact bytes; with --delete, DELEs each message once its file (and the
 * directory entry) is fsynced, then QUITs.
 *
 *   pop3_fetch [--tls|--starttls] [--ca FILE] [--allow-plaintext]
 *              [--window N] [--timeout S] [--check] [--pause-every BYTES]
 *              HOST PORT USER PWFILE OUTDIR [--delete]
 *
 * Without --tls or --starttls the connection stays plain (the password
 * then goes only to a loopback address, or with --allow-plaintext).
 * --starttls requires STLS off loopback. A unique-id becomes a file name
 * with every byte outside [A-Za-z0-9_+=,@-] (and a leading '.') written
 * as %XX, so "../x" cannot leave OUTDIR.
 *
 * --check first runs the other commands against the listing, pipelined
 * with everything else: STAT (count and octets as listed), UIDL n and
 * LIST n of the last message (as listed), NOOP, TOP 1 0 (its headers, no
 * more than the message), DELE 1 then STAT (one less), RSET then STAT (all
 * back); any disagreement is an error.
 *
 * --pause-every BYTES: the consumer stops the input (pop3_client_pause)
 * each time it took that many body bytes and lets it go on (kick) 1 ms
 * later from a timer: a slow sink, for the back-pressure path.
 *
 * Prints one line on stdout when done:
 *   messages=N bytes=B deleted=D max_inflight=K round_trips=R pipelining=0|1 checks=C
 * Errors: one line "pop3_fetch: error: ..." on stderr, exit 1 (2: usage).
 *
 * Not for: production use (mailferry's sync engine will drive the client).
 */
#include "engine/base/err.h"
#include "engine/runtime/loop.h"
#include "protocols/pop3_client.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

struct fetch {
	struct loop loop;
	struct pop3_client c;
	struct pop3_endpoint ep;
	int dirfd;
	int del, check;
	struct pop3_cmd uidl_cmd, list_cmd;
	struct pop3_cmd chk[10];
	uint32_t listed, checks;
	uint64_t listed_octets, top_bytes;
	uint64_t pause_every, since_pause, pauses;
	struct loop_timer kick;
	struct pop3_cmd *retr, *dele;
	uint32_t lists_done, pending;
	int fd; /* the message being written */
	char tmp[64];
	uint64_t messages, bytes, deleted;
	int failed, finished;
};

static void die_usage(void)
{
	fprintf(stderr, "usage: pop3_fetch [--tls|--starttls] [--ca FILE] [--allow-plaintext] "
	                "[--window N] [--timeout S] [--check] [--pause-every BYTES] HOST PORT USER "
	                "PWFILE OUTDIR "
	                "[--delete]\n");
	exit(2);
}

static void fail(struct fetch *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct fetch *f, const char *fmt, ...)
{
	char m[1024];
	va_list ap;

	if (f->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	mf_print("pop3_fetch: error: %s", m);
	f->failed = 1;
	pop3_client_abort(&f->c);
	loop_stop(&f->loop);
}

static void name_of(const char *uid, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; uid[i] && o + 4 < cap; i++) {
		unsigned char ch = (unsigned char)uid[i];

		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || (ch && strchr("_+=,@-", ch)) ||
		    (ch == '.' && i > 0))
			out[o++] = (char)ch;
		else
			o += (size_t)snprintf(out + o, cap - o, "%%%02X", ch);
	}
	out[o] = '\0';
}

static void maybe_quit(struct fetch *f);

static void quit_done(struct pop3_client *c, struct pop3_cmd *cmd, const struct pop3_reply *r)
{
	struct fetch *f = c->ud;

	(void)cmd;
	if (!r->ok) {
		fail(f, "QUIT refused: %.*s", (int)r->text_len, r->text);
		return;
	}
	f->finished = 1;
	loop_stop(&f->loop);
}

static void maybe_quit(struct fetch *f)
{
	if (!f->pending && !f->failed)
		pop3_client_quit(&f->c, quit_done, f);
}

static void dele_done(struct pop3_client *c, struct pop3_cmd *cmd, const struct pop3_reply *r)
{
	struct fetch *f = c->ud;

	if (!r->ok) {
		fail(f, "DELE %u refused: %.*s", cmd->msgno, (int)r->text_len, r->text);
		return;
	}
	f->deleted++;
	f->pending--;
	maybe_quit(f);
}

static void retr_done(struct pop3_client *c, struct pop3_cmd *cmd, const struct pop3_reply *r)
{
	struct fetch *f = c->ud;
	uint32_t msgno = cmd->msgno;

	if (!r->ok) {
		fail(f, "RETR %u refused: %.*s", msgno, (int)r->text_len, r->text);
		return;
	}
	f->messages++;
	f->bytes += r->size;
	if (f->del) {
		/* msg_end fsynced the file and the directory: now it may go */
		pop3_dele(c, &f->dele[msgno - 1], msgno, dele_done, f);
		return;
	}
	f->pending--;
	maybe_quit(f);
}

static int msg_begin(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno, uint64_t size)
{
	struct fetch *f = c->ud;

	(void)size;
	if (cmd == &f->chk[4]) /* TOP: counted, not kept */
		return 0;
	snprintf(f->tmp, sizeof(f->tmp), ".tmp.%u", msgno);
	f->fd = openat(f->dirfd, f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (f->fd < 0) {
		fail(f, "cannot create %s: %s", f->tmp, strerror(errno));
		return -EIO;
	}
	return 0;
}

static void on_kick(struct loop *l, struct loop_timer *t)
{
	struct fetch *f = (struct fetch *)((char *)t - offsetof(struct fetch, kick));

	(void)l;
	if (!f->failed)
		pop3_client_kick(&f->c);
}

/* --pause-every: stop the input now and then, as a sink that cannot keep up */
static int slow_sink(struct fetch *f)
{
	if (!f->pause_every || f->since_pause < f->pause_every)
		return 0;
	f->since_pause = 0;
	f->pauses++;
	pop3_client_pause(&f->c);
	loop_timer_start(&f->loop, &f->kick, 1, on_kick);
	return 0;
}

static int msg_data(struct pop3_client *c, struct pop3_cmd *cmd, const char *p, size_t n)
{
	struct fetch *f = c->ud;

	if (cmd == &f->chk[4]) {
		f->top_bytes += n;
		return 0;
	}
	f->since_pause += n;
	while (n) {
		ssize_t w = write(f->fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			fail(f, "writing %s: %s", f->tmp, strerror(errno));
			return -EIO;
		}
		p += w;
		n -= (size_t)w;
	}
	return slow_sink(f);
}

static int msg_end(struct pop3_client *c, struct pop3_cmd *cmd)
{
	struct fetch *f = c->ud;
	const struct pop3_msg *m = pop3_msg_get(c, cmd->msgno);
	char name[POP3_UIDL_MAX * 3 + 1];
	int rc;

	if (cmd == &f->chk[4])
		return 0;
	rc = fsync(f->fd);
	close(f->fd);
	f->fd = -1;
	if (rc < 0) {
		fail(f, "fsync %s: %s", f->tmp, strerror(errno));
		return -EIO;
	}
	name_of(m->uidl, name, sizeof(name));
	if (renameat(f->dirfd, f->tmp, f->dirfd, name) < 0 || fsync(f->dirfd) < 0) {
		fail(f, "rename %s to %s: %s", f->tmp, name, strerror(errno));
		return -EIO;
	}
	return 0;
}

static void check_done(struct pop3_client *c, struct pop3_cmd *cmd, const struct pop3_reply *r)
{
	struct fetch *f = c->ud;
	long k = cmd - f->chk;
	const struct pop3_msg *last = pop3_msg_get(c, pop3_msg_count(c)),
	                      *first = pop3_msg_get(c, 1);
	int good = r->ok;

	switch (k) {
	case 0: /* STAT */
	case 8: /* STAT after RSET */
		good = good && r->count == f->listed && r->size == f->listed_octets;
		break;
	case 1: /* UIDL last */
		good = good && r->count == pop3_msg_count(c) && r->uid_len == strlen(last->uidl) &&
		       !memcmp(r->uid, last->uidl, r->uid_len);
		break;
	case 2: /* LIST last */
		good = good && r->count == pop3_msg_count(c) && r->size == last->size;
		break;
	case 4: /* TOP 1 0: the header, never more than the message */
		good = good && f->top_bytes > 0 && f->top_bytes <= first->size + 2 &&
		       r->size == f->top_bytes;
		break;
	case 6: /* STAT after DELE 1 */
		good =
		    good && r->count == f->listed - 1 && r->size == f->listed_octets - first->size;
		break;
	default: /* NOOP, DELE, RSET */
		break;
	}
	if (!good) {
		fail(f, "check %ld failed: %s%.*s (count %u, size %llu)", k, r->ok ? "" : "-ERR ",
		     (int)r->text_len, r->text, r->count, (unsigned long long)r->size);
		return;
	}
	f->checks++;
	f->pending--;
	maybe_quit(f);
}

/* The other commands against the listing, pipelined ahead of the RETRs. */
static void checks_send(struct fetch *f)
{
	struct pop3_client *c = &f->c;

	for (uint32_t i = 1; i <= pop3_msg_count(c); i++) {
		const struct pop3_msg *m = pop3_msg_get(c, i);

		if (m->uidl[0]) {
			f->listed++;
			f->listed_octets += m->size;
		}
	}
	if (f->listed < 2 || !pop3_msg_get(c, 1)->uidl[0] ||
	    !pop3_msg_get(c, pop3_msg_count(c))->uidl[0]) {
		fail(f, "--check needs at least two messages, 1 and the last listed");
		return;
	}
	f->pending += 9;
	pop3_stat(c, &f->chk[0], check_done, f);
	pop3_uidl_one(c, &f->chk[1], pop3_msg_count(c), check_done, f);
	pop3_list_one(c, &f->chk[2], pop3_msg_count(c), check_done, f);
	pop3_noop(c, &f->chk[3], check_done, f);
	pop3_top(c, &f->chk[4], 1, 0, check_done, f);
	pop3_dele(c, &f->chk[5], 1, check_done, f);
	pop3_stat(c, &f->chk[6], check_done, f);
	pop3_rset(c, &f->chk[7], check_done, f);
	pop3_stat(c, &f->chk[8], check_done, f);
}

static void lists_done(struct pop3_client *c, struct pop3_cmd *cmd, const struct pop3_reply *r)
{
	struct fetch *f = c->ud;

	if (!r->ok) {
		fail(f, "%s %s: %.*s", cmd == &f->uidl_cmd ? "UIDL" : "LIST",
		     r->invalid ? "listing refused" : "failed", (int)r->text_len, r->text);
		return;
	}
	if (++f->lists_done < 2)
		return;
	f->retr = calloc(pop3_msg_count(c) + 1, sizeof(*f->retr));
	f->dele = calloc(pop3_msg_count(c) + 1, sizeof(*f->dele));
	if (!f->retr || !f->dele) {
		fail(f, "out of memory");
		return;
	}
	if (f->check)
		checks_send(f);
	for (uint32_t i = 1; i <= pop3_msg_count(c) && !f->failed; i++) {
		const struct pop3_msg *m = pop3_msg_get(c, i);

		if (!m->uidl[0]) /* not listed (deleted in this session) */
			continue;
		f->pending++;
		pop3_retr(c, &f->retr[i - 1], i, retr_done, f);
	}
	maybe_quit(f);
}

static void on_ready(struct pop3_client *c)
{
	struct fetch *f = c->ud;

	pop3_uidl_all(c, &f->uidl_cmd, lists_done, f);
	pop3_list_all(c, &f->list_cmd, lists_done, f);
}

static void on_error(struct pop3_client *c, const struct mf_error *err)
{
	fail(c->ud, "%s", err->msg);
}

static const struct pop3_client_cb fetch_cb = {
    .ready = on_ready,
    .error = on_error,
    .msg_begin = msg_begin,
    .msg_data = msg_data,
    .msg_end = msg_end,
};

static int read_pw(const char *path, char *out, size_t cap)
{
	FILE *fp = fopen(path, "r");
	size_t n;

	if (!fp)
		return -1;
	n = fread(out, 1, cap - 1, fp);
	fclose(fp);
	out[n] = '\0';
	out[strcspn(out, "\r\n")] = '\0';
	return out[0] ? 0 : -1;
}

int main(int argc, char **argv)
{
	static struct fetch f;
	const char *pos[5];
	char pw[512];
	struct mf_error err;
	int npos = 0, rc;

	f.ep.label = "pop3";
	f.ep.tls = POP3_TLS_NONE;
	f.ep.timeout_ms = 10000;
	f.fd = -1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--tls"))
			f.ep.tls = POP3_TLS_IMPLICIT;
		else if (!strcmp(argv[i], "--starttls"))
			f.ep.tls = POP3_TLS_STARTTLS;
		else if (!strcmp(argv[i], "--ca") && i + 1 < argc)
			f.ep.ca_file = argv[++i];
		else if (!strcmp(argv[i], "--allow-plaintext"))
			f.ep.allow_plaintext = 1;
		else if (!strcmp(argv[i], "--pause-every") && i + 1 < argc)
			f.pause_every = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--check"))
			f.check = 1;
		else if (!strcmp(argv[i], "--delete"))
			f.del = 1;
		else if (!strcmp(argv[i], "--window") && i + 1 < argc)
			f.ep.window = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			f.ep.timeout_ms = (unsigned)(atof(argv[++i]) * 1000);
		else if (argv[i][0] == '-' && argv[i][1])
			die_usage();
		else if (npos < 5)
			pos[npos++] = argv[i];
		else
			die_usage();
	}
	if (npos != 5)
		die_usage();
	f.ep.host = pos[0];
	f.ep.port = (uint16_t)atoi(pos[1]);
	f.ep.user = pos[2];
	if (read_pw(pos[3], pw, sizeof(pw)) < 0) {
		fprintf(stderr, "pop3_fetch: error: cannot read a password from %s\n", pos[3]);
		return 2;
	}
	f.ep.password = pw;
	if ((f.dirfd = open(pos[4], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		fprintf(stderr, "pop3_fetch: error: %s: %s\n", pos[4], strerror(errno));
		return 2;
	}
	if ((rc = loop_init(&f.loop, 64)) < 0) {
		fprintf(stderr, "pop3_fetch: error: io_uring: %s\n", strerror(-rc));
		return 1;
	}
	if (pop3_client_open(&f.c, &f.loop, &f.ep, &fetch_cb, &f, &err) < 0) {
		mf_print("pop3_fetch: error: %s", err.msg);
		loop_free(&f.loop);
		return 1;
	}
	loop_run(&f.loop);
	if (f.finished)
		printf("messages=%llu bytes=%llu deleted=%llu max_inflight=%u round_trips=%llu "
		       "pipelining=%d checks=%u pauses=%llu\n",
		       (unsigned long long)f.messages, (unsigned long long)f.bytes,
		       (unsigned long long)f.deleted, f.c.max_inflight,
		       (unsigned long long)f.c.round_trips, !!(f.c.caps & POP3_CAP_PIPELINING),
		       f.checks, (unsigned long long)f.pauses);
	else if (!f.failed)
		mf_print("pop3_fetch: error: the connection ended before QUIT was answered");
	pop3_client_close(&f.c);
	/* the ring's last completions (cancelled ops) free the conn */
	loop_run(&f.loop);
	loop_free(&f.loop);
	if (f.fd >= 0)
		close(f.fd);
	close(f.dirfd);
	free(f.retr);
	free(f.dele);
	OPENSSL_cleanse(pw, sizeof(pw));
	return f.finished ? 0 : 1;
}
