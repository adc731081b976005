/*
 * ceiling — what the server itself can serve and accept when the client
 * does almost nothing: the benchmark's yardstick (issue 10).
 *
 *   ceiling --port P --src USER --src-pass-file F --dst USER --dst-pass-file F [--host H]
 *
 * Phase 1, one connection per folder, all at once: LOGIN, EXAMINE,
 * `UID FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[])`, everything kept in
 * memory. Phase 2, one connection per destination folder: CREATE, then
 * MULTIAPPEND batches with LITERAL+ written back to back, one wait at the end.
 * Prints one JSON line: fetch and append seconds, messages, bytes.
 * Plain TCP, blocking sockets, a thread per connection: nothing clever, on
 * purpose. Not a migration tool: no state, no checks, no TLS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct msg {
	char flags[256];
	char date[40];
	char *data;
	size_t len;
};

struct folder {
	char name[512];
	struct msg *m;
	size_t n, cap;
	uint64_t bytes;
	int err;
};

struct rd {
	int fd;
	char buf[1 << 16];
	size_t pos, len;
};

static const char *host = "127.0.0.1";
static int port;
static char suser[128], spass[256], duser[128], dpass[256];

static void die(const char *m)
{
	fprintf(stderr, "ceiling: %s: %s\n", m, strerror(errno));
	exit(2);
}

static int connect_to(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	inet_pton(AF_INET, host, &a.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
	while (n) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

		if (k <= 0)
			die("send");
		p = (const char *)p + k;
		n -= (size_t)k;
	}
}

static int fill(struct rd *r)
{
	ssize_t k;

	if (r->pos == r->len)
		r->pos = r->len = 0;
	if (r->len == sizeof(r->buf)) {
		memmove(r->buf, r->buf + r->pos, r->len - r->pos);
		r->len -= r->pos;
		r->pos = 0;
	}
	k = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len, 0);
	if (k <= 0)
		return -1;
	r->len += (size_t)k;
	return 0;
}

/* One line (without CRLF) into out; -1 on EOF. */
static int read_line(struct rd *r, char *out, size_t cap)
{
	size_t o = 0;

	for (;;) {
		while (r->pos < r->len) {
			char c = r->buf[r->pos++];

			if (c == '\n') {
				if (o && out[o - 1] == '\r')
					o--;
				out[o] = '\0';
				return (int)o;
			}
			if (o + 1 < cap)
				out[o++] = c;
		}
		if (fill(r) < 0)
			return -1;
	}
}

static void read_n(struct rd *r, char *out, size_t n)
{
	while (n) {
		size_t k;

		if (r->pos == r->len && fill(r) < 0)
			die("recv");
		k = r->len - r->pos < n ? r->len - r->pos : n;
		memcpy(out, r->buf + r->pos, k);
		r->pos += k;
		out += k;
		n -= k;
	}
}

/* Reads until the tagged reply for tag; returns 0 for OK. */
static int wait_tag(struct rd *r, const char *tag)
{
	char line[8192];
	size_t tl = strlen(tag);

	while (read_line(r, line, sizeof(line)) >= 0)
		if (!strncmp(line, tag, tl) && line[tl] == ' ')
			return strncmp(line + tl + 1, "OK", 2) ? -1 : 0;
	return -1;
}

static int login(struct rd *r, const char *u, const char *p)
{
	char cmd[512], line[8192];

	if (read_line(r, line, sizeof(line)) < 0)
		return -1;
	snprintf(cmd, sizeof(cmd), "L LOGIN \"%s\" \"%s\"\r\n", u, p);
	send_all(r->fd, cmd, strlen(cmd));
	return wait_tag(r, "L");
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *fetch_folder(void *arg)
{
	struct folder *f = arg;
	struct rd *r = calloc(1, sizeof(*r));
	char line[16384], cmd[700];

	r->fd = connect_to();
	if (login(r, suser, spass) < 0) {
		f->err = 1;
		return NULL;
	}
	snprintf(cmd, sizeof(cmd), "E EXAMINE \"%s\"\r\nF UID FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[])\r\n",
		 f->name);
	send_all(r->fd, cmd, strlen(cmd));
	while (read_line(r, line, sizeof(line)) >= 0) {
		char *lit, *fl, *dt;
		struct msg *m;
		size_t n;

		if (!strncmp(line, "F ", 2))
			break;
		if (line[0] != '*' || !(lit = strrchr(line, '{')) || line[strlen(line) - 1] != '}')
			continue;
		if (f->n == f->cap) {
			f->cap = f->cap ? f->cap * 2 : 256;
			f->m = realloc(f->m, f->cap * sizeof(*f->m));
		}
		m = &f->m[f->n++];
		memset(m, 0, sizeof(*m));
		if ((fl = strstr(line, "FLAGS ("))) {
			char *e = strchr(fl, ')');

			n = (size_t)(e - fl - 7);
			snprintf(m->flags, sizeof(m->flags), "%.*s", (int)n, fl + 7);
			/* \Recent cannot be appended */
			if ((fl = strstr(m->flags, "\\Recent")))
				memset(fl, ' ', 7);
		}
		if ((dt = strstr(line, "INTERNALDATE \"")))
			snprintf(m->date, sizeof(m->date), "%.26s", dt + 14);
		m->len = strtoull(lit + 1, NULL, 10);
		m->data = malloc(m->len ? m->len : 1);
		read_n(r, m->data, m->len);
		f->bytes += m->len;
	}
	close(r->fd);
	free(r);
	return NULL;
}

static void *append_folder(void *arg)
{
	struct folder *f = arg;
	struct rd *r = calloc(1, sizeof(*r));
	char hdr[800];
	unsigned batches = 0;

	r->fd = connect_to();
	if (login(r, duser, dpass) < 0) {
		f->err = 1;
		return NULL;
	}
	if (strcmp(f->name, "INBOX")) {
		snprintf(hdr, sizeof(hdr), "C CREATE \"%s\"\r\n", f->name);
		send_all(r->fd, hdr, strlen(hdr));
		wait_tag(r, "C");
	}
	for (size_t i = 0; i < f->n; i += 100) {
		snprintf(hdr, sizeof(hdr), "A%u APPEND \"%s\"", batches++, f->name);
		send_all(r->fd, hdr, strlen(hdr));
		for (size_t k = i; k < f->n && k < i + 100; k++) {
			struct msg *m = &f->m[k];

			snprintf(hdr, sizeof(hdr), " (%s) \"%s\" {%zu+}\r\n", m->flags, m->date, m->len);
			send_all(r->fd, hdr, strlen(hdr));
			send_all(r->fd, m->data, m->len);
		}
		send_all(r->fd, "\r\n", 2);
	}
	for (unsigned b = 0; b < batches; b++) {
		char tag[16];

		snprintf(tag, sizeof(tag), "A%u", b);
		if (wait_tag(r, tag) < 0)
			f->err = 1;
	}
	close(r->fd);
	free(r);
	return NULL;
}

static void read_pass(const char *path, char *out, size_t cap)
{
	FILE *f = fopen(path, "r");

	if (!f || !fgets(out, (int)cap, f))
		die(path);
	out[strcspn(out, "\r\n")] = '\0';
	fclose(f);
}

int main(int argc, char **argv)
{
	struct folder *fs = NULL;
	size_t nf = 0, cf = 0;
	pthread_t *th;
	struct rd *r;
	char line[8192];
	double t0, t1, t2;
	uint64_t msgs = 0, bytes = 0;
	int err = 0;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--port"))
			port = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--host"))
			host = argv[i + 1];
		else if (!strcmp(argv[i], "--src"))
			snprintf(suser, sizeof(suser), "%s", argv[i + 1]);
		else if (!strcmp(argv[i], "--dst"))
			snprintf(duser, sizeof(duser), "%s", argv[i + 1]);
		else if (!strcmp(argv[i], "--src-pass-file"))
			read_pass(argv[i + 1], spass, sizeof(spass));
		else if (!strcmp(argv[i], "--dst-pass-file"))
			read_pass(argv[i + 1], dpass, sizeof(dpass));
	}
	if (!port || !suser[0] || !duser[0]) {
		fprintf(stderr, "usage: ceiling --port P --src U --src-pass-file F --dst U --dst-pass-file F\n");
		return 2;
	}
	/* the folder list */
	r = calloc(1, sizeof(*r));
	r->fd = connect_to();
	if (login(r, suser, spass) < 0)
		die("login");
	send_all(r->fd, "T LIST \"\" \"*\"\r\n", 15);
	while (read_line(r, line, sizeof(line)) >= 0 && strncmp(line, "T ", 2)) {
		char *nm = strrchr(line, ' ');

		if (strncmp(line, "* LIST", 6) || strstr(line, "\\Noselect") || !nm)
			continue;
		nm++;
		if (*nm == '"')
			nm++, nm[strlen(nm) - 1] = '\0';
		if (nf == cf)
			fs = realloc(fs, (cf = cf ? cf * 2 : 32) * sizeof(*fs));
		memset(&fs[nf], 0, sizeof(fs[nf]));
		snprintf(fs[nf++].name, sizeof(fs[0].name), "%s", nm);
	}
	close(r->fd);
	th = calloc(nf, sizeof(*th));
	t0 = now();
	for (size_t i = 0; i < nf; i++)
		pthread_create(&th[i], NULL, fetch_folder, &fs[i]);
	for (size_t i = 0; i < nf; i++)
		pthread_join(th[i], NULL);
	t1 = now();
	for (size_t i = 0; i < nf; i++)
		pthread_create(&th[i], NULL, append_folder, &fs[i]);
	for (size_t i = 0; i < nf; i++)
		pthread_join(th[i], NULL);
	t2 = now();
	for (size_t i = 0; i < nf; i++) {
		msgs += fs[i].n;
		bytes += fs[i].bytes;
		err |= fs[i].err;
	}
	printf("{\"tool\":\"ceiling\",\"folders\":%zu,\"messages\":%llu,\"bytes\":%llu,"
	       "\"fetch_seconds\":%.3f,\"append_seconds\":%.3f,\"seconds\":%.3f,\"ok\":%s}\n",
	       nf, (unsigned long long)msgs, (unsigned long long)bytes, t1 - t0, t2 - t1, t2 - t0,
	       err ? "false" : "true");
	return err ? 1 : 0;
}
