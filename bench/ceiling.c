/*
 * ceiling — what the server itself can serve and accept when the client
 * does almost nothing: the benchmark's yardstick (issue 10).
 *
 *   ceiling --port P --src USER --src-pass-file F --dst USER --dst-pass-file F
 *           [--host H] [--tls [--ca-file F]] [--batch N] [--fetch-only]
 *
 * Phase 1, one connection per folder, all at once: LOGIN, EXAMINE,
 * `UID FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[])`, everything kept in
 * memory. Phase 2, one connection per destination folder, all at once:
 * CREATE, then MULTIAPPEND (RFC 3502) batches of N messages (default 100)
 * with LITERAL+ (RFC 7888) literals written back to back, one wait at the
 * end. Prints one JSON line: folders, messages, bytes, fetch and append
 * seconds, total seconds, ok. --fetch-only stops after phase 1 (a warm-up:
 * Dovecot builds and fills a Maildir's indexes on its first reads).
 *
 * Plain TCP or TLS from the first byte (--tls, the IMAPS port; the
 * certificate is verified against --ca-file or the system store), blocking
 * sockets, a thread per connection: nothing clever, on purpose. Its response
 * scanner knows tagged lines and literals and nothing else. Not a migration
 * tool: no state, no checks beyond tagged OKs, no limits on memory.
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

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct msg {
	char flags[512];
	char date[40];
	char *data;
	size_t len;
};

struct folder {
	char name[512]; /* as the server spells it, quoted-string safe */
	struct msg *m;
	size_t n, cap;
	uint64_t bytes;
	char err[200];
};

/* One connection: a socket, maybe TLS, and a read buffer. */
struct link {
	int fd;
	SSL *ssl;
	char buf[1 << 16];
	size_t pos, len;
};

static const char *host = "127.0.0.1";
static int port, batch = 100;
static char suser[128], spass[256], duser[128], dpass[256];
static SSL_CTX *tls;

static void die(const char *m)
{
	fprintf(stderr, "ceiling: %s: %s\n", m, strerror(errno));
	exit(2);
}

static int link_open(struct link *l, char *err, size_t cap)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int one = 1;

	memset(l, 0, sizeof(*l));
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		snprintf(err, cap, "--host wants an IPv4 address");
		return -1;
	}
	if ((l->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(l->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		snprintf(err, cap, "connect %s:%d: %s", host, port, strerror(errno));
		return -1;
	}
	setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!tls)
		return 0;
	if (!(l->ssl = SSL_new(tls)) || !SSL_set_fd(l->ssl, l->fd) ||
	    !SSL_set1_host(l->ssl, host) || SSL_connect(l->ssl) != 1) {
		snprintf(err, cap, "TLS handshake: %s", ERR_reason_error_string(ERR_get_error()));
		return -1;
	}
	return 0;
}

static void link_close(struct link *l)
{
	if (l->ssl) {
		SSL_shutdown(l->ssl);
		SSL_free(l->ssl);
	}
	if (l->fd >= 0)
		close(l->fd);
}

static int send_all(struct link *l, const void *p, size_t n)
{
	while (n) {
		ssize_t k = l->ssl ? SSL_write(l->ssl, p, (int)(n < (1u << 30) ? n : 1u << 30))
		                   : send(l->fd, p, n, MSG_NOSIGNAL);

		if (k <= 0)
			return -1;
		p = (const char *)p + k;
		n -= (size_t)k;
	}
	return 0;
}

static int fill(struct link *l)
{
	ssize_t k;

	if (l->pos == l->len)
		l->pos = l->len = 0;
	if (l->len == sizeof(l->buf)) {
		memmove(l->buf, l->buf + l->pos, l->len - l->pos);
		l->len -= l->pos;
		l->pos = 0;
	}
	k = l->ssl ? SSL_read(l->ssl, l->buf + l->len, (int)(sizeof(l->buf) - l->len))
	           : recv(l->fd, l->buf + l->len, sizeof(l->buf) - l->len, 0);
	if (k <= 0)
		return -1;
	l->len += (size_t)k;
	return 0;
}

/* One line without its CRLF into out (cut at cap); -1 at EOF. */
static int read_line(struct link *l, char *out, size_t cap)
{
	size_t o = 0;

	for (;;) {
		char *nl = memchr(l->buf + l->pos, '\n', l->len - l->pos);
		size_t k = nl ? (size_t)(nl - (l->buf + l->pos)) : l->len - l->pos;
		size_t c = k < cap - 1 - o ? k : cap - 1 - o;

		memcpy(out + o, l->buf + l->pos, c);
		o += c;
		l->pos += k;
		if (nl) {
			l->pos++;
			if (o && out[o - 1] == '\r')
				o--;
			out[o] = '\0';
			return (int)o;
		}
		if (fill(l) < 0)
			return -1;
	}
}

static int read_n(struct link *l, char *out, size_t n)
{
	while (n) {
		size_t k;

		if (l->pos == l->len && fill(l) < 0)
			return -1;
		k = l->len - l->pos < n ? l->len - l->pos : n;
		memcpy(out, l->buf + l->pos, k);
		l->pos += k;
		out += k;
		n -= k;
	}
	return 0;
}

/* Reads up to the tagged reply for tag; 0 for OK, -1 otherwise (the reply
 * line in why). */
static int wait_tag(struct link *l, const char *tag, char *why, size_t cap)
{
	char line[8192];
	size_t tl = strlen(tag);

	while (read_line(l, line, sizeof(line)) >= 0)
		if (!strncmp(line, tag, tl) && line[tl] == ' ') {
			if (!strncmp(line + tl + 1, "OK", 2))
				return 0;
			snprintf(why, cap, "%.150s", line);
			return -1;
		}
	snprintf(why, cap, "connection closed");
	return -1;
}

static int login(struct link *l, const char *u, const char *p, char *err, size_t cap)
{
	char cmd[600], line[8192];

	if (link_open(l, err, cap) < 0)
		return -1;
	if (read_line(l, line, sizeof(line)) < 0 || strncmp(line, "* OK", 4)) {
		snprintf(err, cap, "no greeting");
		return -1;
	}
	snprintf(cmd, sizeof(cmd), "L LOGIN \"%s\" \"%s\"\r\n", u, p);
	if (send_all(l, cmd, strlen(cmd)) < 0)
		return -1;
	return wait_tag(l, "L", err, cap);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "* 3 FETCH (UID 3 FLAGS (\Seen) INTERNALDATE "..." BODY[] {1234}": the
 * flags (without \Recent, which cannot be appended) and the date. */
static void fetch_meta(const char *line, struct msg *m)
{
	const char *fl = strstr(line, "FLAGS ("), *dt = strstr(line, "INTERNALDATE \"");

	if (fl) {
		const char *e = strchr(fl + 7, ')');
		size_t o = 0;

		for (const char *p = fl + 7; e && p < e;) {
			size_t k = strcspn(p, " )");

			if (k && !(k == 7 && !strncmp(p, "\\Recent", 7)) &&
			    o + k + 2 < sizeof(m->flags))
				o += (size_t)snprintf(m->flags + o, sizeof(m->flags) - o, "%s%.*s",
				                      o ? " " : "", (int)k, p);
			p += k + (p[k] == ' ');
		}
	}
	if (dt)
		snprintf(m->date, sizeof(m->date), "%.26s", dt + 14);
}

static void *fetch_folder(void *arg)
{
	struct folder *f = arg;
	struct link *l = malloc(sizeof(*l));
	char line[16384], cmd[700];

	if (!l || login(l, suser, spass, f->err, sizeof(f->err)) < 0)
		goto out;
	snprintf(cmd, sizeof(cmd),
	         "E EXAMINE \"%s\"\r\nF UID FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[])\r\n",
	         f->name);
	if (send_all(l, cmd, strlen(cmd)) < 0 || wait_tag(l, "E", f->err, sizeof(f->err)) < 0)
		goto out;
	for (;;) {
		char *lit;
		size_t ll;
		struct msg *m;

		if (read_line(l, line, sizeof(line)) < 0) {
			snprintf(f->err, sizeof(f->err), "connection closed during FETCH");
			break;
		}
		if (!strncmp(line, "F ", 2)) {
			if (strncmp(line, "F OK", 4))
				snprintf(f->err, sizeof(f->err), "%s", line);
			break;
		}
		ll = strlen(line);
		if (line[0] != '*' || !ll || line[ll - 1] != '}' || !(lit = strrchr(line, '{')))
			continue;
		if (f->n == f->cap) {
			f->cap = f->cap ? f->cap * 2 : 256;
			if (!(f->m = realloc(f->m, f->cap * sizeof(*f->m))))
				die("realloc");
		}
		m = &f->m[f->n++];
		memset(m, 0, sizeof(*m));
		fetch_meta(line, m);
		m->len = strtoull(lit + 1, NULL, 10);
		if (!(m->data = malloc(m->len ? m->len : 1)))
			die("malloc");
		if (read_n(l, m->data, m->len) < 0) {
			snprintf(f->err, sizeof(f->err), "connection closed in a literal");
			break;
		}
		f->bytes += m->len;
	}
out:
	if (l)
		link_close(l);
	free(l);
	return NULL;
}

static void *append_folder(void *arg)
{
	struct folder *f = arg;
	struct link *l = malloc(sizeof(*l));
	char hdr[900], why[200] = "";
	unsigned batches = 0, failed = 0;

	if (!l || login(l, duser, dpass, f->err, sizeof(f->err)) < 0)
		goto out;
	if (strcmp(f->name, "INBOX")) {
		snprintf(hdr, sizeof(hdr), "C CREATE \"%s\"\r\n", f->name);
		/* [ALREADYEXISTS] (RFC 5530) is fine: the folder is there */
		if (send_all(l, hdr, strlen(hdr)) < 0 ||
		    (wait_tag(l, "C", why, sizeof(why)) < 0 && !strstr(why, "[ALREADYEXISTS]")))
			snprintf(f->err, sizeof(f->err), "CREATE: %s", why);
	}
	for (size_t i = 0; i < f->n; i += (size_t)batch) {
		int bad = 0;

		snprintf(hdr, sizeof(hdr), "A%u APPEND \"%s\"", batches++, f->name);
		bad |= send_all(l, hdr, strlen(hdr));
		for (size_t k = i; k < f->n && k < i + (size_t)batch; k++) {
			struct msg *m = &f->m[k];

			snprintf(hdr, sizeof(hdr), " (%s) \"%s\" {%zu+}\r\n", m->flags, m->date,
			         m->len);
			bad |= send_all(l, hdr, strlen(hdr));
			bad |= send_all(l, m->data, m->len);
		}
		bad |= send_all(l, "\r\n", 2);
		if (bad) {
			snprintf(f->err, sizeof(f->err), "connection lost during APPEND");
			goto out;
		}
	}
	for (unsigned b = 0; b < batches; b++) {
		char tag[16];

		snprintf(tag, sizeof(tag), "A%u", b);
		if (wait_tag(l, tag, why, sizeof(why)) < 0 && !failed++)
			snprintf(f->err, sizeof(f->err), "APPEND: %s", why);
	}
out:
	if (l)
		link_close(l);
	free(l);
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

/* "* LIST (\HasNoChildren) "." Lists.dev" → the name, unquoted; NULL for
 * \Noselect and \NonExistent ones. */
static const char *list_name(char *line)
{
	char *p = strchr(line, ')'), *n;

	if (strncmp(line, "* LIST (", 8) || !p || strstr(line, "\\Noselect") ||
	    strstr(line, "\\NonExistent"))
		return NULL;
	p += 2; /* the delimiter: "." or NIL */
	p += *p == '"' ? (p[1] == '\\' ? 5 : 4) : 4;
	if (*p != '"')
		return p;
	for (n = ++p; *p && *p != '"'; p++)
		if (*p == '\\' && p[1])
			memmove(p, p + 1, strlen(p));
	*p = '\0';
	return n;
}

int main(int argc, char **argv)
{
	struct folder *fs = NULL;
	size_t nf = 0, cf = 0;
	pthread_t *th;
	struct link *l;
	char line[8192], err[200] = "";
	const char *ca = NULL;
	double t0, t1, t2;
	uint64_t msgs = 0, bytes = 0;
	int use_tls = 0, failed = 0, fetch_only = 0;

	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "--tls"))
			use_tls = 1;
		else if (!strcmp(argv[i], "--fetch-only"))
			fetch_only = 1;
		else if (!v)
			port = 0;
		else if (!strcmp(argv[i], "--port"))
			port = atoi(v), i++;
		else if (!strcmp(argv[i], "--host"))
			host = v, i++;
		else if (!strcmp(argv[i], "--src"))
			snprintf(suser, sizeof(suser), "%s", v), i++;
		else if (!strcmp(argv[i], "--dst"))
			snprintf(duser, sizeof(duser), "%s", v), i++;
		else if (!strcmp(argv[i], "--src-pass-file"))
			read_pass(v, spass, sizeof(spass)), i++;
		else if (!strcmp(argv[i], "--dst-pass-file"))
			read_pass(v, dpass, sizeof(dpass)), i++;
		else if (!strcmp(argv[i], "--ca-file"))
			ca = v, i++;
		else if (!strcmp(argv[i], "--batch"))
			batch = atoi(v), i++;
		else
			port = 0, i = argc;
	}
	if (port <= 0 || port > 65535 || !suser[0] || !duser[0] || batch < 1) {
		fprintf(
		    stderr,
		    "usage: ceiling --port P --src U --src-pass-file F --dst U --dst-pass-file F "
		    "[--host IPv4] [--tls [--ca-file F]] [--batch N] [--fetch-only]\n");
		return 2;
	}
	if (use_tls) {
		if (!(tls = SSL_CTX_new(TLS_client_method())) ||
		    (ca ? SSL_CTX_load_verify_locations(tls, ca, NULL)
		        : SSL_CTX_set_default_verify_paths(tls)) != 1) {
			fprintf(stderr, "ceiling: TLS set-up failed (--ca-file %s)\n",
			        ca ? ca : "-");
			return 2;
		}
		SSL_CTX_set_verify(tls, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_mode(tls, SSL_MODE_AUTO_RETRY);
	}
	/* the folder list */
	if (!(l = malloc(sizeof(*l))) || login(l, suser, spass, err, sizeof(err)) < 0) {
		fprintf(stderr, "ceiling: source login: %s\n", err);
		return 2;
	}
	if (send_all(l, "T LIST \"\" \"*\"\r\n", 15) < 0)
		die("send");
	while (read_line(l, line, sizeof(line)) >= 0 && strncmp(line, "T ", 2)) {
		const char *nm = list_name(line);

		if (!nm)
			continue;
		if (nf == cf && !(fs = realloc(fs, (cf = cf ? cf * 2 : 32) * sizeof(*fs))))
			die("realloc");
		memset(&fs[nf], 0, sizeof(fs[nf]));
		snprintf(fs[nf++].name, sizeof(fs[0].name), "%s", nm);
	}
	link_close(l);
	free(l);
	if (!(th = calloc(nf ? nf : 1, sizeof(*th))))
		die("calloc");
	t0 = now();
	for (size_t i = 0; i < nf; i++)
		if (pthread_create(&th[i], NULL, fetch_folder, &fs[i]))
			die("pthread_create");
	for (size_t i = 0; i < nf; i++)
		pthread_join(th[i], NULL);
	t1 = now();
	for (size_t i = 0; i < nf && !fetch_only; i++)
		if (pthread_create(&th[i], NULL, append_folder, &fs[i]))
			die("pthread_create");
	for (size_t i = 0; i < nf && !fetch_only; i++)
		pthread_join(th[i], NULL);
	t2 = now();
	for (size_t i = 0; i < nf; i++) {
		msgs += fs[i].n;
		bytes += fs[i].bytes;
		if (fs[i].err[0]) {
			failed++;
			fprintf(stderr, "ceiling: folder %s: %s\n", fs[i].name, fs[i].err);
		}
	}
	printf("{\"tool\":\"ceiling\",\"tls\":%s,\"folders\":%zu,\"messages\":%llu,\"bytes\":%llu,"
	       "\"fetch_seconds\":%.3f,\"append_seconds\":%.3f,\"seconds\":%.3f,\"ok\":%s}\n",
	       use_tls ? "true" : "false", nf, (unsigned long long)msgs, (unsigned long long)bytes,
	       t1 - t0, t2 - t1, t2 - t0, failed ? "false" : "true");
	return failed ? 1 : 0;
}
