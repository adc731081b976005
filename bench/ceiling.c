/*
 * ceiling — what the server itself can serve and accept when the client
 * does almost nothing: the benchmark's yardstick, a lower bound for a
 * migration's time (issues 10 and 17).
 *
 *   ceiling --port P --src USER --src-pass-file F --dst USER[,USER...]
 *           --dst-pass-file F[,F...]
 *           [--host H] [--dst-port P] [--dst-prefix PFX] [--tls [--ca-file F]]
 *           [--batch N] [--conns 1,2,4,8,16] [--split-folders] [--per-folder]
 *           [--fetch-only] [--no-extensions]
 *
 * Untimed first: the source's folders (LIST) and every message's UID and
 * RFC822.SIZE, and a buffer for each message. Then two phases, each timed
 * on its own, each once per connection count N of --conns (default 1, 2, 4,
 * 8 and 16), the best time of each kept:
 *   fetch   the messages, in folder and UID order, cut into N runs of equal
 *           bytes; each connection logs in and sends, pipelined, EXAMINE and
 *           `UID FETCH lo:hi (FLAGS INTERNALDATE BODY.PEEK[])` for each
 *           folder its run touches, everything kept in memory;
 *   append  the same N runs, from memory: each connection logs in, CREATEs
 *           its folders, then APPENDs, written back to back with one wait at
 *           the end: MULTIAPPEND (RFC 3502) batches of --batch messages
 *           (default 100) with LITERAL+ (RFC 7888) when the destination
 *           offers them (--no-extensions: as if it did not), else one
 *           message per APPEND and/or a wait for each literal's "+".
 * Each append trial goes into an account of its own when --dst names
 * several (U1,...,Un with --dst-pass-file F1,...,Fn, or one file for all):
 * the last trial into the last account, whose copy bench/compare checks.
 * With fewer accounts than trials the last one is reused, emptied first
 * (DELETE of its folders, INBOX expunged), untimed; appending into an
 * emptied Dovecot account measured up to 2x slower than into a fresh one.
 * Every trial starts after sync(2). The bound for a migration
 * is the slower of the two best phases: a tool that fetches and appends at
 * once cannot beat it unless the server serves both better together than
 * either alone. Where the server runs on the same machine and the phases
 * keep its cores busy, fetch and append compete for them: the bound is
 * then the machine's CPU work, the least busy fetch trial's plus the least
 * busy append trial's CPU seconds (every process, from /proc/stat) over the
 * number of cores, when that is longer ("cpu" phase).
 *
 * --per-folder: one trial, one connection per folder (the whole folder,
 * `UID FETCH 1:*`, no sizes asked first): the yardstick of bench/bulk.sh and
 * bench/backup.sh. --fetch-only stops after the fetch phase (also the
 * bench's warm-up: Dovecot builds and fills a Maildir's indexes on its first
 * reads).
 *
 * Prints one JSON line: tool, tls, folders, messages, bytes, fetch_seconds
 * and append_seconds (the best of each), seconds (their sum: the phases one
 * after the other), ok; and bound_seconds, bound_phase (fetch, append or
 * cpu), phase_bound_seconds (the slower best phase), cpu_bound_seconds,
 * machine_cpu_fetch / machine_cpu_append (the machine's busy CPU seconds
 * of the least busy trial of each), ncpu, split, append_mode,
 * fetch_conns / append_conns (the best connection counts), fetch_trials /
 * append_trials (seconds per connection count) and cpu_seconds (this
 * process's user + sys during the two best trials).
 *
 * --split-folders: whole folders dealt to the N connections, the largest
 * first to the least loaded, instead of runs of equal bytes: for a server
 * that locks a folder for each APPEND (Courier: one connection took 22 s,
 * two sharing the folders 43 s), where connections sharing a folder wait.
 *
 * --dst-port: the destination on another server (same host); --dst-prefix:
 * every destination folder but INBOX under PFX (Courier's "INBOX.").
 *
 * Plain TCP or TLS from the first byte (--tls, the IMAPS port; the
 * certificate is verified against --ca-file or the system store), blocking
 * sockets, a thread per connection: nothing clever, on purpose. Its response
 * scanner knows tagged lines, continuations and literals and nothing else.
 * Not a migration tool: no state, no checks beyond tagged OKs, no limits on
 * memory, and it may empty its destination account between trials.
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
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct msg {
	uint32_t uid;
	char flags[200];
	char date[40];
	char *data;
	size_t len, cap;
};

struct folder {
	char name[512];  /* as the source spells it, quoted-string safe */
	char dname[600]; /* on the destination: --dst-prefix and the name */
	struct msg *m;
	size_t n, cap;
};

/* A run of one folder's messages, m[lo, hi); grow: the whole folder,
 * messages added as they arrive (--per-folder, no sizes asked first). */
struct slice {
	struct folder *f;
	size_t lo, hi;
	int grow;
};

/* One connection's share of a trial. */
struct work {
	struct slice *s;
	size_t ns, cap;
	char err[200];
};

/* One connection: a socket, maybe TLS, and a read buffer. */
struct link {
	int fd;
	SSL *ssl;
	char buf[1 << 16];
	size_t pos, len;
};

/* Everything a run of the tool knows, set up in main and read by the
 * threads (their own struct work apart). */
struct cfg {
	const char *host, *dprefix;
	int port, dport, batch, multiappend, literal_plus;
	char suser[128], spass[256], duser[128], dpass[256];
	SSL_CTX *tls;
};
static struct cfg C = {.host = "127.0.0.1", .dprefix = "", .batch = 100};

static void die(const char *m)
{
	fprintf(stderr, "ceiling: %s: %s\n", m, strerror(errno));
	exit(2);
}

#define N_TRIALS 16

static void *xrealloc(void *p, size_t n)
{
	if (!(p = realloc(p, n ? n : 1)))
		die("realloc");
	return p;
}

static int link_open(struct link *l, int port, char *err, size_t cap)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int one = 1;

	memset(l, 0, sizeof(*l));
	l->fd = -1;
	if (inet_pton(AF_INET, C.host, &a.sin_addr) != 1) {
		snprintf(err, cap, "--host wants an IPv4 address");
		return -1;
	}
	if ((l->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(l->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		snprintf(err, cap, "connect %s:%d: %s", C.host, port, strerror(errno));
		return -1;
	}
	setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!C.tls)
		return 0;
	if (!(l->ssl = SSL_new(C.tls)) || !SSL_set_fd(l->ssl, l->fd) ||
	    !SSL_set1_host(l->ssl, C.host) || SSL_connect(l->ssl) != 1) {
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

static int send_str(struct link *l, const char *s)
{
	return send_all(l, s, strlen(s));
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
	/* ACK at once (Linux turns this off again by itself): a server that
	 * sends "+" after its last tagged reply behind Nagle's algorithm
	 * would otherwise wait for our delayed ACK, up to 40 ms a message */
	setsockopt(l->fd, IPPROTO_TCP, TCP_QUICKACK, &(int){1}, sizeof(int));
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

/* Is line the tagged reply for tag? 1 OK, -1 anything else (copied to
 * why), 0 not tagged with it. */
static int tagged(const char *line, const char *tag, char *why, size_t cap)
{
	size_t tl = strlen(tag);

	if (strncmp(line, tag, tl) || line[tl] != ' ')
		return 0;
	if (!strncmp(line + tl + 1, "OK", 2))
		return 1;
	snprintf(why, cap, "%.150s", line);
	return -1;
}

/* Reads up to the tagged reply for tag; 0 for OK, -1 otherwise (the reply
 * line in why). */
static int wait_tag(struct link *l, const char *tag, char *why, size_t cap)
{
	char line[8192];
	int t;

	while (read_line(l, line, sizeof(line)) >= 0)
		if ((t = tagged(line, tag, why, cap)))
			return t > 0 ? 0 : -1;
	snprintf(why, cap, "connection closed");
	return -1;
}

/* Logs in as the source (dst 0) or the destination (1). */
static int login(struct link *l, int dst, char *err, size_t cap)
{
	char cmd[600], line[8192];
	const char *u = dst ? C.duser : C.suser, *p = dst ? C.dpass : C.spass;

	if (link_open(l, dst ? C.dport : C.port, err, cap) < 0)
		return -1;
	if (read_line(l, line, sizeof(line)) < 0 || strncmp(line, "* OK", 4)) {
		snprintf(err, cap, "no greeting");
		return -1;
	}
	snprintf(cmd, sizeof(cmd), "L LOGIN \"%s\" \"%s\"\r\n", u, p);
	if (send_str(l, cmd) < 0)
		return -1;
	return wait_tag(l, "L", err, cap);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds the whole machine spent busy so far (every core: user, nice,
 * system, irq, softirq from /proc/stat's "cpu" line; not steal, the time a
 * hypervisor gave our cores to someone else); -1 if unread. */
static double machine_busy(void)
{
	unsigned long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "r");
	int n;

	if (!f)
		return -1;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
	           &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n != 8)
		return -1;
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / (double)sysconf(_SC_CLK_TCK);
}

static double cpu_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* The number after "NAME " in a FETCH line, or -1. */
static long long item_num(const char *line, const char *name)
{
	const char *p = line;
	size_t k = strlen(name);

	while ((p = strstr(p, name))) {
		if ((p[-1] == ' ' || p[-1] == '(') && p[k] == ' ')
			return strtoll(p + k + 1, NULL, 10);
		p += k;
	}
	return -1;
}

/* "* 3 FETCH (UID 3 FLAGS (\Seen) INTERNALDATE "..." BODY[] {1234}": the
 * flags (without \Recent, which cannot be appended) and the date. */
static void fetch_meta(const char *line, struct msg *m)
{
	const char *fl = strstr(line, "FLAGS ("), *dt = strstr(line, "INTERNALDATE \"");

	if (fl) {
		const char *e = strchr(fl + 7, ')');
		size_t o = 0;

		m->flags[0] = '\0';
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

/* The slot for uid in s: the next one after *cur, else a search; a new one
 * when the slice grows. NULL when the server sent a UID it was not asked. */
static struct msg *slot(struct slice *s, uint32_t uid, size_t *cur)
{
	struct folder *f = s->f;

	if (s->grow) {
		if (f->n == f->cap)
			f->m = xrealloc(f->m, (f->cap = f->cap ? f->cap * 2 : 256) * sizeof(*f->m));
		memset(&f->m[f->n], 0, sizeof(f->m[0]));
		f->m[f->n].uid = uid;
		s->hi = ++f->n;
		return &f->m[f->n - 1];
	}
	if (*cur < s->hi && f->m[*cur].uid == uid)
		return &f->m[(*cur)++];
	for (size_t i = s->lo; i < s->hi; i++)
		if (f->m[i].uid == uid) {
			*cur = i + 1;
			return &f->m[i];
		}
	return NULL;
}

static void *fetch_work(void *arg)
{
	struct work *w = arg;
	struct link *l = malloc(sizeof(*l));
	char line[16384], cmd[800];

	if (!l || login(l, 0, w->err, sizeof(w->err)) < 0)
		goto out;
	/* every folder's EXAMINE and FETCH at once: the replies come in order */
	for (size_t i = 0; i < w->ns; i++) {
		struct slice *s = &w->s[i];

		if (!s->grow && s->lo == s->hi)
			continue; /* an empty folder: only to be CREATEd */
		if (s->grow)
			snprintf(cmd, sizeof(cmd), "E%zu EXAMINE \"%s\"\r\nF%zu UID FETCH 1:* ", i,
			         s->f->name, i);
		else
			snprintf(cmd, sizeof(cmd), "E%zu EXAMINE \"%s\"\r\nF%zu UID FETCH %u:%u ",
			         i, s->f->name, i, s->f->m[s->lo].uid, s->f->m[s->hi - 1].uid);
		if (send_str(l, cmd) < 0 ||
		    send_str(l, "(FLAGS INTERNALDATE BODY.PEEK[])\r\n") < 0) {
			snprintf(w->err, sizeof(w->err), "connection lost");
			goto out;
		}
	}
	for (size_t i = 0; i < w->ns; i++) {
		struct slice *s = &w->s[i];
		size_t cur = s->lo;
		char tag[24];

		if (!s->grow && s->lo == s->hi)
			continue;
		snprintf(tag, sizeof(tag), "E%zu", i);
		if (wait_tag(l, tag, w->err, sizeof(w->err)) < 0)
			goto out;
		snprintf(tag, sizeof(tag), "F%zu", i);
		for (;;) {
			char *lit;
			size_t ll, n;
			struct msg *m;
			int t;

			if (read_line(l, line, sizeof(line)) < 0) {
				snprintf(w->err, sizeof(w->err), "connection closed during FETCH");
				goto out;
			}
			if ((t = tagged(line, tag, w->err, sizeof(w->err))) < 0)
				goto out;
			if (t)
				break;
			ll = strlen(line);
			if (line[0] != '*' || !ll || line[ll - 1] != '}' ||
			    !(lit = strrchr(line, '{')))
				continue;
			n = strtoull(lit + 1, NULL, 10);
			if (!(m = slot(s, (uint32_t)item_num(line, "UID"), &cur))) {
				snprintf(w->err, sizeof(w->err), "unasked UID in %.100s", line);
				goto out;
			}
			fetch_meta(line, m);
			if (n > m->cap)
				m->data = xrealloc(m->data, m->cap = n);
			m->len = n;
			if (read_n(l, m->data, n) < 0) {
				snprintf(w->err, sizeof(w->err), "connection closed in a literal");
				goto out;
			}
		}
	}
out:
	if (l)
		link_close(l);
	free(l);
	return NULL;
}

/* Reads lines up to a continuation ("+ ..."), checking the tagged replies
 * that come before it (APPENDs A<done>.. in order); 0, or -1 with w->err. */
static int wait_plus(struct link *l, struct work *w, unsigned *done)
{
	char line[8192], tag[24], why[160];

	for (;;) {
		int t;

		if (read_line(l, line, sizeof(line)) < 0) {
			snprintf(w->err, sizeof(w->err), "connection closed during APPEND");
			return -1;
		}
		if (line[0] == '+')
			return 0;
		snprintf(tag, sizeof(tag), "A%u", *done);
		if ((t = tagged(line, tag, why, sizeof(why)))) {
			(*done)++;
			if (t < 0) {
				snprintf(w->err, sizeof(w->err), "APPEND: %s", why);
				return -1;
			}
		}
	}
}

static void *append_work(void *arg)
{
	struct work *w = arg;
	struct link *l = malloc(sizeof(*l));
	char hdr[900], why[200] = "";
	unsigned sent = 0, done = 0;
	size_t per = C.multiappend ? (size_t)C.batch : 1;

	if (!l || login(l, 1, w->err, sizeof(w->err)) < 0)
		goto out;
	for (size_t i = 0; i < w->ns; i++) {
		struct folder *f = w->s[i].f;

		if (!strcasecmp(f->dname, "INBOX") || (i && w->s[i - 1].f == f))
			continue;
		snprintf(hdr, sizeof(hdr), "C CREATE \"%s\"\r\n", f->dname);
		/* a NO is fine: another connection made it ([ALREADYEXISTS],
		 * RFC 5530; Courier says only NO); if it is not there, the
		 * APPENDs fail */
		if (send_str(l, hdr) < 0) {
			snprintf(w->err, sizeof(w->err), "connection lost");
			goto out;
		}
		if (wait_tag(l, "C", why, sizeof(why)) < 0 && !strncmp(why, "connection", 10)) {
			snprintf(w->err, sizeof(w->err), "CREATE: %s", why);
			goto out;
		}
	}
	for (size_t i = 0; i < w->ns; i++) {
		struct slice *s = &w->s[i];

		for (size_t b = s->lo; b < s->hi; b += per) {
			int bad;

			snprintf(hdr, sizeof(hdr), "A%u APPEND \"%s\"", sent++, s->f->dname);
			bad = send_str(l, hdr);
			for (size_t k = b; k < s->hi && k < b + per && !bad; k++) {
				struct msg *m = &s->f->m[k];

				snprintf(hdr, sizeof(hdr), " (%s) \"%s\" {%zu%s}\r\n", m->flags,
				         m->date, m->len, C.literal_plus ? "+" : "");
				bad |= send_str(l, hdr);
				if (!bad && !C.literal_plus && wait_plus(l, w, &done) < 0)
					goto out;
				bad |= send_all(l, m->data, m->len);
			}
			bad |= send_all(l, "\r\n", 2);
			if (bad) {
				snprintf(w->err, sizeof(w->err), "connection lost during APPEND");
				goto out;
			}
		}
	}
	for (; done < sent; done++) {
		char tag[24];

		snprintf(tag, sizeof(tag), "A%u", done);
		if (wait_tag(l, tag, why, sizeof(why)) < 0 && !w->err[0])
			snprintf(w->err, sizeof(w->err), "APPEND: %s", why);
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

/* The selectable folders of an account, logged in on l. */
static struct folder *list_folders(struct link *l, size_t *nf)
{
	struct folder *fs = NULL;
	size_t cf = 0;
	char line[8192];

	*nf = 0;
	if (send_str(l, "T LIST \"\" \"*\"\r\n") < 0)
		die("send");
	while (read_line(l, line, sizeof(line)) >= 0 && strncmp(line, "T ", 2)) {
		const char *nm = list_name(line);

		if (!nm)
			continue;
		if (*nf == cf)
			fs = xrealloc(fs, (cf = cf ? cf * 2 : 32) * sizeof(*fs));
		memset(&fs[*nf], 0, sizeof(fs[0]));
		snprintf(fs[*nf].name, sizeof(fs[0].name), "%s", nm);
		snprintf(fs[*nf].dname, sizeof(fs[0].dname), "%s%s",
		         strcasecmp(nm, "INBOX") ? C.dprefix : "", nm);
		++*nf;
	}
	return fs;
}

/* Untimed: every message's UID and size, a buffer of that size for each. */
static uint64_t plan(struct link *l, struct folder *fs, size_t nf)
{
	char line[8192], cmd[700], why[200];
	uint64_t total = 0;

	for (size_t i = 0; i < nf; i++) {
		struct folder *f = &fs[i];

		snprintf(cmd, sizeof(cmd),
		         "E EXAMINE \"%s\"\r\nS UID FETCH 1:* (UID RFC822.SIZE)\r\n", f->name);
		if (send_str(l, cmd) < 0 || wait_tag(l, "E", why, sizeof(why)) < 0) {
			fprintf(stderr, "ceiling: EXAMINE %s: %s\n", f->name, why);
			exit(2);
		}
		while (read_line(l, line, sizeof(line)) >= 0 && strncmp(line, "S ", 2)) {
			long long uid = item_num(line, "UID"), sz = item_num(line, "RFC822.SIZE");
			struct msg *m;

			if (line[0] != '*' || uid <= 0 || sz < 0)
				continue;
			if (f->n == f->cap)
				f->m = xrealloc(f->m, (f->cap = f->cap ? f->cap * 2 : 256) *
				                          sizeof(*f->m));
			m = &f->m[f->n++];
			memset(m, 0, sizeof(*m));
			m->uid = (uint32_t)uid;
			m->cap = (size_t)sz;
			m->data = xrealloc(NULL, m->cap);
			total += (uint64_t)sz;
		}
	}
	return total;
}

static void work_add(struct work *w, struct folder *f, size_t lo, size_t hi, int grow)
{
	if (w->ns == w->cap)
		w->s = xrealloc(w->s, (w->cap = w->cap ? w->cap * 2 : 8) * sizeof(*w->s));
	w->s[w->ns++] = (struct slice){f, lo, hi, grow};
}

/* Whole folders on n connections, the largest first, each to the
 * connection with the fewest bytes so far. */
static size_t split_folders(struct work *ws, size_t n, struct folder *fs, size_t nf)
{
	uint64_t *fb = xrealloc(NULL, nf * sizeof(*fb)), load[N_TRIALS] = {0};

	for (size_t i = 0; i < nf; i++)
		for (size_t k = fb[i] = 0; k < fs[i].n; k++)
			fb[i] += fs[i].m[k].cap;
	for (size_t done = 0; done < nf; done++) {
		size_t big = 0, c = 0;

		for (size_t i = 1; i < nf; i++)
			if (fb[i] != UINT64_MAX && (fb[big] == UINT64_MAX || fb[i] > fb[big]))
				big = i;
		for (size_t k = 1; k < n; k++)
			if (load[k] < load[c])
				c = k;
		work_add(&ws[c], &fs[big], 0, fs[big].n, 0);
		load[c] += fb[big];
		fb[big] = UINT64_MAX;
	}
	free(fb);
	return n;
}

/* The messages in folder and UID order cut into n runs of about equal
 * bytes (a run ends at the message that reaches its share); an empty
 * folder goes to the first connection (to be CREATEd). n = 0: one
 * connection per folder, each growing. by_folder: whole folders balanced
 * instead. Returns the number of works. */
static size_t split(struct work *ws, size_t n, struct folder *fs, size_t nf, uint64_t total,
                    int by_folder)
{
	uint64_t acc = 0;
	size_t c = 0;

	if (!n) {
		for (size_t i = 0; i < nf; i++)
			work_add(&ws[i], &fs[i], 0, 0, 1);
		return nf;
	}
	if (by_folder)
		return split_folders(ws, n, fs, nf);
	for (size_t i = 0; i < nf; i++) {
		size_t lo = 0;

		if (!fs[i].n)
			work_add(&ws[0], &fs[i], 0, 0, 0);
		for (size_t k = 0; k < fs[i].n; k++) {
			acc += fs[i].m[k].cap;
			if (k + 1 == fs[i].n || (acc * n >= total * (c + 1) && c + 1 < n)) {
				work_add(&ws[c], &fs[i], lo, k + 1, 0);
				lo = k + 1;
				while (c + 1 < n && acc * n >= total * (c + 1))
					c++;
			}
		}
	}
	return n;
}

/* Runs fn on every work in its own thread; the seconds it took, -1 if any
 * failed (the first error on stderr). */
static double run_trial(void *(*fn)(void *), struct work *ws, size_t n, double *cpu,
                        double *busy)
{
	pthread_t *th = xrealloc(NULL, n * sizeof(*th));
	double t0, t, c0, b0;
	int failed = 0;

	sync(); /* the previous trial's writes go to disk now, not during this one */
	c0 = cpu_now();
	b0 = machine_busy();
	t0 = now();
	for (size_t i = 0; i < n; i++)
		if (pthread_create(&th[i], NULL, fn, &ws[i]))
			die("pthread_create");
	for (size_t i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	t = now() - t0;
	*cpu = cpu_now() - c0;
	*busy = b0 < 0 ? -1 : machine_busy() - b0;
	for (size_t i = 0; i < n; i++)
		if (ws[i].err[0] && !failed++)
			fprintf(stderr, "ceiling: %s: %s\n", ws[i].ns ? ws[i].s[0].f->name : "-",
			        ws[i].err);
	free(th);
	return failed ? -1 : t;
}

/* Untimed, between append trials: the destination account empty again. */
static void dst_empty(void)
{
	struct link *l = malloc(sizeof(*l));
	struct folder *fs;
	size_t nf;
	char cmd[700], why[200], err[200];

	if (!l || login(l, 1, err, sizeof(err)) < 0) {
		fprintf(stderr, "ceiling: destination login: %s\n", err);
		exit(2);
	}
	fs = list_folders(l, &nf);
	/* children before their parents: a longer name first */
	for (size_t i = 0; i < nf; i++)
		for (size_t k = i + 1; k < nf; k++)
			if (strlen(fs[k].name) > strlen(fs[i].name)) {
				struct folder t = fs[i];

				fs[i] = fs[k];
				fs[k] = t;
			}
	for (size_t i = 0; i < nf; i++) {
		if (!strcasecmp(fs[i].name, "INBOX"))
			continue;
		snprintf(cmd, sizeof(cmd), "D DELETE \"%s\"\r\n", fs[i].name);
		if (send_str(l, cmd) < 0 || wait_tag(l, "D", why, sizeof(why)) < 0)
			fprintf(stderr, "ceiling: DELETE %s: %s\n", fs[i].name, why);
	}
	if (send_str(l, "S SELECT INBOX\r\nF UID STORE 1:* +FLAGS.SILENT (\\Deleted)\r\n"
	                "X EXPUNGE\r\n") < 0 ||
	    wait_tag(l, "X", why, sizeof(why)) < 0)
		fprintf(stderr, "ceiling: emptying INBOX: %s\n", why);
	free(fs);
	link_close(l);
	free(l);
}

/* Does the destination offer MULTIAPPEND and LITERAL+? (after LOGIN) */
static void dst_caps(int off)
{
	struct link *l = malloc(sizeof(*l));
	char line[8192], err[200];

	if (!l || login(l, 1, err, sizeof(err)) < 0) {
		fprintf(stderr, "ceiling: destination login: %s\n", err);
		exit(2);
	}
	if (send_str(l, "K CAPABILITY\r\n") < 0)
		die("send");
	while (read_line(l, line, sizeof(line)) >= 0 && strncmp(line, "K ", 2))
		if (!strncmp(line, "* CAPABILITY ", 13) && !off) {
			C.multiappend = strstr(line, " MULTIAPPEND") != NULL;
			C.literal_plus = strstr(line, " LITERAL+") != NULL;
		}
	link_close(l);
	free(l);
}

/* "a,b,c" into cap strings of width bytes at out (each cut to fit); how
 * many, 0 if too many */
static size_t split_list(const char *s, char *out, size_t width, size_t cap)
{
	size_t n = 0;

	for (; *s && n < cap; n++) {
		size_t k = strcspn(s, ",");

		snprintf(out + n * width, width, "%.*s", (int)k, s);
		s += k + (s[k] == ',');
	}
	return *s ? 0 : n;
}

/* The destination account of the next trial: user i, its password from
 * file i (or the only one). */
static void dst_use(char (*users)[128], char (*files)[512], size_t nfiles, size_t i)
{
	memcpy(C.duser, users[i], sizeof(C.duser));
	read_pass(files[nfiles == 1 ? 0 : i], C.dpass, sizeof(C.dpass));
}

/* "1,2,4" → counts; 0 on a bad list */
static size_t parse_conns(const char *s, size_t *out, size_t cap)
{
	size_t n = 0;

	while (*s && n < cap) {
		char *e;
		long v = strtol(s, &e, 10);

		if (e == s || v < 1 || v > 256)
			return 0;
		out[n++] = (size_t)v;
		s = *e == ',' ? e + 1 : e;
		if (*e && *e != ',')
			return 0;
	}
	return *s ? 0 : n;
}

/* {"1":0.123,"2":0.100} into out; the best index into *best (-1: none) */
static void trials_json(char *out, size_t cap, const size_t *conns, const double *t, size_t n,
                        int per_folder, int *best)
{
	size_t o = (size_t)snprintf(out, cap, "{");

	*best = -1;
	for (size_t i = 0; i < n && o < cap; i++) {
		if (per_folder && t[i] >= 0)
			o += (size_t)snprintf(out + o, cap - o, "\"folders\":%.3f", t[i]);
		else if (t[i] >= 0)
			o += (size_t)snprintf(out + o, cap - o, "%s\"%zu\":%.3f", o > 1 ? "," : "",
			                      conns[i], t[i]);
		if (t[i] >= 0 && (*best < 0 || t[i] < t[*best]))
			*best = (int)i;
	}
	if (o < cap)
		snprintf(out + o, cap - o, "}");
}

int main(int argc, char **argv)
{
	struct folder *fs;
	struct work *ws;
	struct link *l;
	size_t nf, conns[N_TRIALS] = {1, 2, 4, 8, 16}, ncon = 5, maxw, ndu = 0, ndp = 0;
	char dusers[N_TRIALS][128], dpfiles[N_TRIALS][512];
	char err[200] = "", tj_f[400], tj_a[400], fc[24] = "0", ac[24] = "0";
	const char *ca = NULL;
	double tf[N_TRIALS], ta[N_TRIALS], cf[N_TRIALS], ca_[N_TRIALS], bf_[N_TRIALS], ba_[N_TRIALS];
	uint64_t msgs = 0, bytes = 0, total = 0;
	int use_tls = 0, failed = 0, fetch_only = 0, per_folder = 0, no_ext = 0, by_folder = 0, bf,
	    ba;

	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "--tls"))
			use_tls = 1;
		else if (!strcmp(argv[i], "--fetch-only"))
			fetch_only = 1;
		else if (!strcmp(argv[i], "--per-folder"))
			per_folder = 1;
		else if (!strcmp(argv[i], "--split-folders"))
			by_folder = 1;
		else if (!strcmp(argv[i], "--no-extensions"))
			no_ext = 1;
		else if (!v)
			C.port = 0;
		else if (!strcmp(argv[i], "--port"))
			C.port = atoi(v), i++;
		else if (!strcmp(argv[i], "--dst-port"))
			C.dport = atoi(v), i++;
		else if (!strcmp(argv[i], "--dst-prefix"))
			C.dprefix = v, i++;
		else if (!strcmp(argv[i], "--host"))
			C.host = v, i++;
		else if (!strcmp(argv[i], "--src"))
			snprintf(C.suser, sizeof(C.suser), "%s", v), i++;
		else if (!strcmp(argv[i], "--dst"))
			ndu = split_list(v, dusers[0], sizeof(dusers[0]), N_TRIALS), i++;
		else if (!strcmp(argv[i], "--src-pass-file"))
			read_pass(v, C.spass, sizeof(C.spass)), i++;
		else if (!strcmp(argv[i], "--dst-pass-file"))
			ndp = split_list(v, dpfiles[0], sizeof(dpfiles[0]), N_TRIALS), i++;
		else if (!strcmp(argv[i], "--ca-file"))
			ca = v, i++;
		else if (!strcmp(argv[i], "--batch"))
			C.batch = atoi(v), i++;
		else if (!strcmp(argv[i], "--conns"))
			ncon = parse_conns(v, conns, N_TRIALS), i++;
		else
			C.port = 0, i = argc;
	}
	if (!C.dport)
		C.dport = C.port;
	if (C.port <= 0 || C.port > 65535 || C.dport <= 0 || C.dport > 65535 || !C.suser[0] ||
	    !ndu || (ndp != 1 && ndp != ndu) || C.batch < 1 || !ncon || strlen(C.dprefix) > 80) {
		fprintf(stderr,
		        "usage: ceiling --port P --src U --src-pass-file F --dst U[,U...] "
		        "--dst-pass-file F[,F...] "
		        "[--host IPv4] [--dst-port P] [--dst-prefix PFX] [--tls [--ca-file F]] "
		        "[--batch N] [--conns 1,2,4,8,16] [--split-folders] [--per-folder] "
		        "[--fetch-only] "
		        "[--no-extensions]\n");
		return 2;
	}
	if (use_tls) {
		if (!(C.tls = SSL_CTX_new(TLS_client_method())) ||
		    (ca ? SSL_CTX_load_verify_locations(C.tls, ca, NULL)
		        : SSL_CTX_set_default_verify_paths(C.tls)) != 1) {
			fprintf(stderr, "ceiling: TLS set-up failed (--ca-file %s)\n",
			        ca ? ca : "-");
			return 2;
		}
		SSL_CTX_set_verify(C.tls, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_mode(C.tls, SSL_MODE_AUTO_RETRY);
	}
	/* the folder list, and unless --per-folder every message's size */
	if (!(l = malloc(sizeof(*l))) || login(l, 0, err, sizeof(err)) < 0) {
		fprintf(stderr, "ceiling: source login: %s\n", err);
		return 2;
	}
	fs = list_folders(l, &nf);
	if (!per_folder)
		total = plan(l, fs, nf);
	link_close(l);
	free(l);
	if (per_folder)
		ncon = 1;
	if (!fetch_only) {
		dst_use(dusers, dpfiles, ndp, 0);
		dst_caps(no_ext);
	}
	maxw = nf;
	for (size_t i = 0; i < ncon; i++)
		maxw = conns[i] > maxw ? conns[i] : maxw;
	ws = xrealloc(NULL, maxw * sizeof(*ws));
	for (size_t t = 0; t < ncon; t++) {
		size_t n;

		memset(ws, 0, maxw * sizeof(*ws));
		n = split(ws, per_folder ? 0 : conns[t], fs, nf, total, by_folder);
		tf[t] = run_trial(fetch_work, ws, n, &cf[t], &bf_[t]);
		failed |= tf[t] < 0;
		ta[t] = -1;
		if (!fetch_only && tf[t] >= 0) {
			/* the last trial into the last account; an account used
			 * before is emptied first */
			size_t u = ndu >= ncon ? ndu - ncon + t : t < ndu ? t : ndu - 1;

			dst_use(dusers, dpfiles, ndp, u);
			if (t && ndu < ncon && u == ndu - 1)
				dst_empty();
			ta[t] = run_trial(append_work, ws, n, &ca_[t], &ba_[t]);
			failed |= ta[t] < 0;
		}
		for (size_t i = 0; i < n; i++)
			free(ws[i].s);
	}
	for (size_t i = 0; i < nf; i++) {
		msgs += fs[i].n;
		for (size_t k = 0; k < fs[i].n; k++)
			bytes += fs[i].m[k].len;
	}
	trials_json(tj_f, sizeof(tj_f), conns, tf, ncon, per_folder, &bf);
	trials_json(tj_a, sizeof(tj_a), conns, ta, ncon, per_folder, &ba);
	if (bf >= 0 && !per_folder)
		snprintf(fc, sizeof(fc), "%zu", conns[bf]);
	if (ba >= 0 && !per_folder)
		snprintf(ac, sizeof(ac), "%zu", conns[ba]);
	{
		double f = bf >= 0 ? tf[bf] : 0, a = ba >= 0 ? ta[ba] : 0, mf = -1, ma = -1, cb = 0;
		double phase = a > f ? a : f, bound;
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

		/* the machine's least busy trial of each phase: the work the
		 * servers (and a client that only moves bytes) cannot avoid */
		for (size_t t = 0; t < ncon; t++) {
			if (tf[t] >= 0 && bf_[t] >= 0 && (mf < 0 || bf_[t] < mf))
				mf = bf_[t];
			if (ta[t] >= 0 && ba_[t] >= 0 && (ma < 0 || ba_[t] < ma))
				ma = ba_[t];
		}
		if (mf >= 0 && ma >= 0 && ncpu > 0 && !per_folder)
			cb = (mf + ma) / (double)ncpu;
		bound = cb > phase ? cb : phase;
		printf("{\"tool\":\"ceiling\",\"tls\":%s,\"folders\":%zu,\"messages\":%llu,"
		       "\"bytes\":%llu,\"fetch_seconds\":%.3f,\"append_seconds\":%.3f,"
		       "\"seconds\":%.3f,\"ok\":%s,\"bound_seconds\":%.3f,\"bound_phase\":\"%s\","
		       "\"phase_bound_seconds\":%.3f,\"cpu_bound_seconds\":%.3f,"
		       "\"machine_cpu_fetch\":%.3f,\"machine_cpu_append\":%.3f,\"ncpu\":%ld,"
		       "\"split\":\"%s\",\"append_mode\":\"%s\",\"fetch_conns\":%s,"
		       "\"append_conns\":%s,\"fetch_trials\":%s,\"append_trials\":%s,"
		       "\"cpu_seconds\":%.3f}\n",
		       use_tls ? "true" : "false", nf, (unsigned long long)msgs,
		       (unsigned long long)bytes, f, a, f + a, failed ? "false" : "true", bound,
		       cb > phase ? "cpu" : a > f ? "append" : "fetch", phase, cb, mf, ma, ncpu,
		       per_folder  ? "per-folder"
		       : by_folder ? "folders"
		                   : "bytes",
		       fetch_only       ? "none"
		       : C.multiappend  ? (C.literal_plus ? "MULTIAPPEND+LITERAL+" : "MULTIAPPEND")
		       : C.literal_plus ? "APPEND+LITERAL+"
		                        : "APPEND",
		       per_folder ? "\"folders\"" : fc, per_folder ? "\"folders\"" : ac, tj_f, tj_a,
		       (bf >= 0 ? cf[bf] : 0) + (ba >= 0 ? ca_[ba] : 0));
	}
	return failed ? 1 : 0;
}
