/*
 * test_conn — conn against in-process servers: a forked child per test runs
 * a blocking plain or TLS server on an ephemeral 127.0.0.1 port, with a CA
 * and server certificates generated here into a mkdtemp directory.
 */
#include "engine/runtime/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tests/unit/unit.h"

static char dir[64], ca_pem[128], srv_pem[128], srv_key[128], bad_pem[128];

/* ---- certificates ---- */

static int add_ext(X509 *x, X509 *issuer, int nid, const char *val)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;
	int ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	if (!(e = X509V3_EXT_conf_nid(NULL, &ctx, nid, val)))
		return 0;
	ok = X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok;
}

static X509 *make_cert(EVP_PKEY *key, X509 *ca, EVP_PKEY *ca_key, long serial, const char *cn, const char *san)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_get_subject_name(x);
	int ok;

	ok = X509_set_version(x, 2) && ASN1_INTEGER_set(X509_get_serialNumber(x), serial) &&
	     X509_gmtime_adj(X509_getm_notBefore(x), -3600) && X509_gmtime_adj(X509_getm_notAfter(x), 86400) &&
	     X509_set_pubkey(x, key) &&
	     X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) &&
	     X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : n) &&
	     add_ext(x, ca ? ca : x, NID_subject_key_identifier, "hash");
	if (ok && !ca)
		ok = add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") &&
		     add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
	if (ok && ca)
		ok = add_ext(x, ca, NID_basic_constraints, "CA:FALSE") &&
		     add_ext(x, ca, NID_authority_key_identifier, "keyid:always") &&
		     add_ext(x, ca, NID_ext_key_usage, "serverAuth") && add_ext(x, ca, NID_subject_alt_name, san);
	if (!ok || !X509_sign(x, ca ? ca_key : key, EVP_sha256())) {
		X509_free(x);
		return NULL;
	}
	return x;
}

static int write_pem(const char *path, X509 *a, X509 *b, EVP_PKEY *key)
{
	FILE *f = fopen(path, "w");
	int ok = f != NULL;

	if (ok && a)
		ok = PEM_write_X509(f, a);
	if (ok && b)
		ok = PEM_write_X509(f, b);
	if (ok && key)
		ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	if (f && fclose(f))
		ok = 0;
	return ok;
}

/* CA; server cert for IP:127.0.0.1 + DNS:localhost; one for another name. */
static int make_certs(void)
{
	EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *key = EVP_EC_gen("P-256");
	X509 *ca = NULL, *srv = NULL, *bad = NULL;
	int ok;

	strcpy(dir, "/tmp/mf-test-conn-XXXXXX");
	ok = ca_key && key && mkdtemp(dir);
	snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", dir);
	snprintf(srv_pem, sizeof(srv_pem), "%s/server.pem", dir);
	snprintf(srv_key, sizeof(srv_key), "%s/server.key", dir);
	snprintf(bad_pem, sizeof(bad_pem), "%s/wrong.pem", dir);
	ok = ok && (ca = make_cert(ca_key, NULL, NULL, 1, "mailferry test CA", NULL)) &&
	     (srv = make_cert(key, ca, ca_key, 2, "localhost", "IP:127.0.0.1,DNS:localhost")) &&
	     (bad = make_cert(key, ca, ca_key, 3, "wrong.example", "DNS:wrong.example")) &&
	     write_pem(ca_pem, ca, NULL, NULL) && write_pem(srv_pem, srv, ca, NULL) &&
	     write_pem(bad_pem, bad, ca, NULL) && write_pem(srv_key, NULL, NULL, key);
	X509_free(ca);
	X509_free(srv);
	X509_free(bad);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(key);
	return ok;
}

static void remove_certs(void)
{
	unlink(ca_pem);
	unlink(srv_pem);
	unlink(srv_key);
	unlink(bad_pem);
	rmdir(dir);
}

/* ---- the server child ---- */

enum srv_mode { SRV_ECHO, SRV_STALL_ECHO, SRV_SILENT, SRV_BYE, SRV_STARTTLS, SRV_STARTTLS_INJECT, SRV_BURST };

struct server {
	pid_t pid;
	uint16_t port;
};

struct sio {
	int fd;
	SSL *ssl;
};

static long sio_read(struct sio *s, void *b, size_t n)
{
	return s->ssl ? SSL_read(s->ssl, b, (int)n) : read(s->fd, b, n);
}

static int sio_write(struct sio *s, const void *b, size_t n)
{
	const char *p = b;

	while (n) {
		long w = s->ssl ? SSL_write(s->ssl, p, (int)n) : write(s->fd, p, n);

		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int tls_accept(struct sio *s, const char *cert)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx || !SSL_CTX_use_certificate_chain_file(ctx, cert) ||
	    !SSL_CTX_use_PrivateKey_file(ctx, srv_key, SSL_FILETYPE_PEM) || !(s->ssl = SSL_new(ctx)))
		return -1;
	SSL_set_fd(s->ssl, s->fd);
	return SSL_accept(s->ssl) == 1 ? 0 : -1;
}

static int serve(int lfd, enum srv_mode m, const char *cert)
{
	static char buf[65536];
	struct sio s = {.fd = accept(lfd, NULL, NULL)};
	long n;

	if (s.fd < 0 || (cert && m != SRV_STARTTLS && m != SRV_STARTTLS_INJECT && tls_accept(&s, cert)))
		return 1;
	switch (m) {
	case SRV_ECHO:
		while ((n = sio_read(&s, buf, sizeof(buf))) > 0)
			if (sio_write(&s, buf, (size_t)n))
				return 1;
		return 0;
	case SRV_STALL_ECHO:
		/* reads nothing for a while: the client's send waits in the
		 * kernel while it writes more */
		usleep(300 * 1000);
		while ((n = sio_read(&s, buf, sizeof(buf))) > 0)
			if (sio_write(&s, buf, (size_t)n))
				return 1;
		return 0;
	case SRV_SILENT:
		while (sio_read(&s, buf, sizeof(buf)) > 0)
			;
		return 0;
	case SRV_BYE:
		return sio_write(&s, "* BYE\r\n", 7);
	case SRV_BURST:
		memset(buf, 'x', sizeof(buf));
		for (int i = 0; i < 16; i++)
			if (sio_write(&s, buf, sizeof(buf)))
				return 0; /* the client may close early */
		while (sio_read(&s, buf, sizeof(buf)) > 0)
			;
		return 0;
	case SRV_STARTTLS:
	case SRV_STARTTLS_INJECT: {
		const char *ok = m == SRV_STARTTLS ? "a OK begin\r\n" : "a OK begin\r\n* injected\r\n";
		size_t i = 0;

		if (sio_write(&s, "* OK ready\r\n", 12))
			return 1;
		while (i < sizeof(buf) - 1 && read(s.fd, buf + i, 1) == 1 && buf[i++] != '\n')
			;
		buf[i] = 0;
		if (strcmp(buf, "a STARTTLS\r\n") || sio_write(&s, ok, strlen(ok)))
			return 1;
		if (m == SRV_STARTTLS_INJECT) {
			while (read(s.fd, buf, sizeof(buf)) > 0)
				;
			return 0;
		}
		if (tls_accept(&s, cert))
			return 1;
		while ((n = sio_read(&s, buf, sizeof(buf))) > 0)
			if (sio_write(&s, buf, (size_t)n))
				return 1;
		return 0;
	}
	}
	return 1;
}

static int listen_any(int backlog, uint16_t *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, backlog) ||
	    getsockname(fd, (struct sockaddr *)&a, &al)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

static int server_start(struct server *s, enum srv_mode m, const char *cert)
{
	int lfd = listen_any(8, &s->port);

	if (lfd < 0)
		return -1;
	fflush(stdout);
	if ((s->pid = fork()) == 0) {
		signal(SIGPIPE, SIG_IGN);
		alarm(30);
		_exit(serve(lfd, m, cert));
	}
	close(lfd);
	return s->pid > 0 ? 0 : -1;
}

/* Returns the child's exit status, killing it if it outlives the test. */
static int server_stop(struct server *s)
{
	int st = 0;

	for (int i = 0; i < 500 && waitpid(s->pid, &st, WNOHANG) == 0; i++)
		usleep(10000);
	if (kill(s->pid, 0) == 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, &st, 0);
		return -1;
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- the client side ---- */

struct tc {
	struct conn c;
	struct loop *l;
	struct loop_timer kick_timer, watchdog;
	int open, connected, tls_ready, errors, after_close, drains, closed_in_data, starttls_rc, state;
	char err[MF_ERR_MAX];
	/* echo */
	uint64_t total, sent, recvd, bad_at, hash_out, hash_in, max_pending, calls;
	uint32_t rng;
	uint64_t bytes_in, bytes_out;
	size_t wcfg;
	int echo_done, tls_seen, later;
	int greedy;   /* writes past the space, up to limit bytes pending */
	size_t limit; /* (raised by the kick timer: the ring grows under a send in flight) */
	uint64_t t_start, t_err;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint8_t pattern(uint64_t i)
{
	return (uint8_t)((i * 2654435761u >> 11) ^ (i >> 9));
}

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	while (n--)
		h = (h ^ *p++) * 1099511628211u;
	return h;
}

static uint32_t rnd(struct tc *t)
{
	t->rng ^= t->rng << 13;
	t->rng ^= t->rng >> 17;
	t->rng ^= t->rng << 5;
	return t->rng;
}

static struct tc *T(struct conn *c)
{
	struct tc *t = c->ud;

	if (!t->open)
		t->after_close++;
	return t;
}

static void tc_close(struct tc *t)
{
	if (t->open) {
		t->bytes_in = conn_bytes_in(&t->c);
		t->bytes_out = conn_bytes_out(&t->c);
		t->open = 0;
		conn_close(&t->c);
	}
	loop_timer_cancel(t->l, &t->watchdog);
	loop_timer_cancel(t->l, &t->kick_timer);
}

static void write_more(struct tc *t)
{
	uint8_t chunk[16384];
	size_t space;

	while (t->sent < t->total &&
	       ((space = conn_write_space(&t->c)) > 0 || (t->greedy && conn_write_pending(&t->c) < t->limit))) {
		size_t n = t->greedy ? 1 + rnd(t) % sizeof(chunk) : space < sizeof(chunk) ? space : sizeof(chunk);

		if (n > t->total - t->sent)
			n = (size_t)(t->total - t->sent);
		for (size_t i = 0; i < n; i++)
			chunk[i] = pattern(t->sent + i);
		if (conn_write(&t->c, chunk, n)) {
			t->bad_at = 1;
			return;
		}
		t->hash_out = fnv(t->hash_out, chunk, n);
		t->sent += n;
		if (conn_write_pending(&t->c) > t->max_pending)
			t->max_pending = conn_write_pending(&t->c);
	}
	if (t->sent < t->total)
		conn_want_drain(&t->c);
}

static void kick_fire(struct loop *l, struct loop_timer *lt);

static void on_connected(struct conn *c)
{
	struct tc *t = T(c);

	t->connected++;
	t->tls_seen = conn_is_tls(c);
	if (t->total)
		write_more(t);
	if (t->greedy)
		loop_timer_start(t->l, &t->kick_timer, 100, kick_fire);
}

static void on_drain(struct conn *c)
{
	struct tc *t = T(c);

	t->drains++;
	write_more(t);
}

static void on_error(struct conn *c, const struct mf_error *e)
{
	struct tc *t = T(c);

	t->errors++;
	t->t_err = mono_ms();
	snprintf(t->err, sizeof(t->err), "%s", e->msg);
	if (getenv("TEST_VERBOSE"))
		fprintf(stderr, "on_error: %s\n", e->msg);
	tc_close(t);
}

static void kick_fire(struct loop *l, struct loop_timer *lt)
{
	struct tc *t = (struct tc *)((char *)lt - offsetof(struct tc, kick_timer));

	(void)l;
	if (t->open && t->greedy && t->limit < (64u << 20)) {
		t->limit = 64u << 20; /* while the peer reads nothing: a send in flight */
		write_more(t);
	}
	if (t->open)
		conn_kick(&t->c);
}

static void watchdog_fire(struct loop *l, struct loop_timer *lt)
{
	struct tc *t = (struct tc *)((char *)lt - offsetof(struct tc, watchdog));

	snprintf(t->err, sizeof(t->err), "watchdog: test hung (sent %llu, received %llu, pending %zu)", (unsigned long long)t->sent, (unsigned long long)t->recvd, conn_write_pending(&t->c));
	t->errors += 100;
	tc_close(t);
	(void)l;
}

/* Echo consumer: small random pieces, now and then a pause and a later kick. */
static size_t echo_data(struct conn *c, const uint8_t *p, size_t n)
{
	struct tc *t = T(c);
	size_t k = 1 + rnd(t) % 4096;

	if (++t->calls % 300 == 0) {
		conn_pause(c);
		loop_timer_start(t->l, &t->kick_timer, 2, kick_fire);
		return 0;
	}
	if (k > n)
		k = n;
	for (size_t i = 0; i < k && !t->bad_at; i++)
		if (p[i] != pattern(t->recvd + i))
			t->bad_at = t->recvd + i + 1;
	t->hash_in = fnv(t->hash_in, p, k);
	t->recvd += k;
	if (t->recvd == t->total) {
		t->echo_done = 1;
		tc_close(t);
	}
	return k;
}

static const struct conn_cb echo_cb = {
	.on_connected = on_connected, .on_data = echo_data, .on_drain = on_drain, .on_error = on_error};

/* Opens with o, runs the loop until every op is done; 0 if opened. */
static int tc_run(struct tc *t, const struct conn_opts *o, const struct conn_cb *cb, struct mf_error *err)
{
	struct loop l;
	int r;

	if (loop_init(&l, 64))
		return -1;
	t->l = &l;
	t->rng = 2463534242u;
	t->hash_in = t->hash_out = 14695981039346656037u;
	t->wcfg = o->wbuf_size ? o->wbuf_size : 256 * 1024;
	t->t_start = mono_ms();
	r = conn_open(&t->c, &l, o, cb, t, err);
	t->open = r == 0;
	loop_timer_start(&l, &t->watchdog, 30000, watchdog_fire);
	if (!t->open)
		loop_timer_cancel(&l, &t->watchdog);
	if (loop_run(&l))
		r = -1;
	loop_free(&l);
	return r;
}

static void check_echo(struct unit_ctx *u, struct tc *t)
{
	UNIT_CHECKF(u, t->echo_done && !t->errors, "echo %llu/%llu, error: %s", (unsigned long long)t->recvd,
		    (unsigned long long)t->total, t->err);
	UNIT_CHECKF(u, !t->bad_at, "byte %llu differs", (unsigned long long)t->bad_at - 1);
	UNIT_CHECK(u, t->hash_in == t->hash_out && t->sent == t->total);
	UNIT_CHECK(u, t->connected == 1 && t->after_close == 0);
	UNIT_CHECKF(u, t->greedy || t->max_pending <= t->wcfg, "pending %llu > %zu", (unsigned long long)t->max_pending,
		    t->wcfg);
	UNIT_CHECK(u, t->bytes_out >= t->total && t->bytes_in >= t->total);
	if (getenv("TEST_VERBOSE"))
		fprintf(stderr, "echo: %llu bytes, %llu on_data calls, %d drains, max pending %llu, %llu ms\n",
			(unsigned long long)t->recvd, (unsigned long long)t->calls, t->drains,
			(unsigned long long)t->max_pending, (unsigned long long)(mono_ms() - t->t_start));
}

static void test_plain_echo_20mb(struct unit_ctx *u)
{
	struct server s;
	struct tc t = {.total = 20u << 20};
	struct conn_opts o = {.host = "127.0.0.1", .timeout_ms = 10000, .rbuf_size = 32768, .wbuf_size = 49152};
	struct mf_error e = {0};

	UNIT_CHECK(u, server_start(&s, SRV_ECHO, NULL) == 0);
	o.port = s.port;
	UNIT_CHECKF(u, tc_run(&t, &o, &echo_cb, &e) == 0, "%s", e.msg);
	check_echo(u, &t);
	UNIT_CHECK(u, t.drains > 0 && t.calls > 1000);
	UNIT_CHECK(u, t.bytes_in == t.total && t.bytes_out == t.total && !t.tls_seen);
	UNIT_CHECK(u, server_stop(&s) == 0);
}

/* A writer that ignores the space left: 8 MB at once to a server that
 * reads nothing for 300 ms, then 100 ms later, with a send waiting in the
 * kernel, the rest: the output ring wraps and grows while a send reads
 * from it, plain and TLS; every byte arrives in order. */
static void test_echo_ring_grows(struct unit_ctx *u)
{
	const char *certs[] = {NULL, srv_pem};

	for (int i = 0; i < 2; i++) {
		struct server s;
		struct tc t = {.total = 24u << 20, .greedy = 1, .limit = 8u << 20};
		struct conn_opts o = {.host = "127.0.0.1", .tls = i, .ca_file = ca_pem, .timeout_ms = 10000,
				      .rbuf_size = 32768, .wbuf_size = 3000};
		struct mf_error e = {0};

		UNIT_CHECK(u, server_start(&s, SRV_STALL_ECHO, certs[i]) == 0);
		o.port = s.port;
		UNIT_CHECKF(u, tc_run(&t, &o, &echo_cb, &e) == 0, "%s", e.msg);
		check_echo(u, &t);
		UNIT_CHECKF(u, t.max_pending > 3000, "tls=%d: pending at most %llu", i, (unsigned long long)t.max_pending);
		UNIT_CHECK(u, server_stop(&s) == 0);
	}
}

static void test_tls_ca_file(struct unit_ctx *u)
{
	const char *hosts[] = {"127.0.0.1", "localhost"};

	for (int i = 0; i < 2; i++) {
		struct server s;
		struct tc t = {.total = 4u << 20};
		/* an rbuf smaller than a TLS record: SSL_read leaves plaintext pending */
		struct conn_opts o = {.host = hosts[i], .tls = 1, .ca_file = ca_pem, .timeout_ms = 10000,
				      .rbuf_size = i ? 8192 : 0, .wbuf_size = 65536};
		struct mf_error e = {0};

		UNIT_CHECK(u, server_start(&s, SRV_ECHO, srv_pem) == 0);
		o.port = s.port;
		UNIT_CHECKF(u, tc_run(&t, &o, &echo_cb, &e) == 0, "%s", e.msg);
		check_echo(u, &t);
		UNIT_CHECKF(u, t.tls_seen && t.bytes_in > t.total, "%s", hosts[i]);
		UNIT_CHECK(u, server_stop(&s) == 0);
	}
}

static void expect_refused(struct unit_ctx *u, const char *host, const char *cert, const char *ca, int insecure,
			   const char *want)
{
	struct server s;
	struct tc t = {.total = 1000};
	struct conn_opts o = {.host = host, .tls = 1, .ca_file = ca, .insecure = insecure, .timeout_ms = 5000};
	struct mf_error e = {0};

	UNIT_CHECK(u, server_start(&s, SRV_ECHO, cert) == 0);
	o.port = s.port;
	UNIT_CHECKF(u, tc_run(&t, &o, &echo_cb, &e) == 0, "%s", e.msg);
	if (want) {
		UNIT_CHECKF(u, t.errors == 1 && !t.connected && strstr(t.err, want), "%s: got '%s'", host, t.err);
		server_stop(&s);
	} else {
		check_echo(u, &t);
		UNIT_CHECK(u, server_stop(&s) == 0);
	}
}

static void test_tls_verify(struct unit_ctx *u)
{
	char want[256];

	/* no ca_file: our CA is not in the system store */
	expect_refused(u, "127.0.0.1", srv_pem, NULL, 0, "certificate verify failed");
	snprintf(want, sizeof(want), "TLS to 127.0.0.1:"); /* message names the peer */
	expect_refused(u, "127.0.0.1", srv_pem, NULL, 0, want);
	expect_refused(u, "127.0.0.1", srv_pem, NULL, 0, "--insecure");
	/* signed by the right CA but for another name */
	expect_refused(u, "127.0.0.1", bad_pem, ca_pem, 0, "certificate verify failed: IP address mismatch");
	expect_refused(u, "localhost", bad_pem, ca_pem, 0, "certificate verify failed: hostname mismatch");
	/* --insecure: nothing checked */
	expect_refused(u, "127.0.0.1", bad_pem, NULL, 1, NULL);
	expect_refused(u, "localhost", srv_pem, NULL, 1, NULL);
}

static void test_tls_bad_ca_file(struct unit_ctx *u)
{
	struct tc t = {0};
	struct conn_opts o = {.host = "127.0.0.1", .port = 9, .tls = 1, .ca_file = "/nonexistent/ca.pem"};
	struct mf_error e = {0};

	UNIT_CHECK(u, tc_run(&t, &o, &echo_cb, &e) < 0);
	UNIT_CHECKF(u, strstr(e.msg, "cannot load CA file /nonexistent/ca.pem"), "got '%s'", e.msg);
	UNIT_CHECK(u, !t.connected && !t.errors);
}

static void starttls_later(struct loop *l, struct loop_timer *lt)
{
	struct tc *t = (struct tc *)((char *)lt - offsetof(struct tc, kick_timer));
	struct mf_error e;

	(void)l;
	t->starttls_rc = conn_starttls(&t->c, &e);
}

/* STARTTLS: greeting, command, OK, then TLS from inside on_data (or from a
 * timer, while a plaintext recv is in flight). */
static size_t starttls_data(struct conn *c, const uint8_t *p, size_t n)
{
	struct tc *t = T(c);
	const uint8_t *nl = memchr(p, '\n', n);
	size_t len = nl ? (size_t)(nl - p) + 1 : 0;
	struct mf_error e;

	if (!len)
		return 0;
	if (t->state == 0 && len == 12 && !memcmp(p, "* OK ready\r\n", 12)) {
		t->state = 1;
		conn_write(c, "a STARTTLS\r\n", 12);
	} else if (t->state == 1 && len == 12 && !memcmp(p, "a OK begin\r\n", 12)) {
		t->state = 2;
		if (t->later) /* with a plaintext recv already in flight */
			loop_timer_start(t->l, &t->kick_timer, 5, starttls_later);
		else
			t->starttls_rc = conn_starttls(c, &e);
	} else if (t->state == 3 && len == 11 && !memcmp(p, "hello tls\r\n", 11)) {
		t->state = 4;
		t->tls_seen = conn_is_tls(c);
		tc_close(t);
	} else {
		t->state = 100;
	}
	return len;
}

static void starttls_ready(struct conn *c)
{
	struct tc *t = T(c);

	t->tls_ready++;
	if (t->state == 2 && conn_is_tls(c))
		t->state = 3;
	conn_write(c, "hello tls\r\n", 11);
}

static void test_starttls(struct unit_ctx *u)
{
	static const struct conn_cb cb = {
		.on_connected = on_connected, .on_tls_ready = starttls_ready, .on_data = starttls_data, .on_error = on_error};

	for (int i = 0; i < 3; i++) {
		int inject = i == 1;
		struct server s;
		struct tc t = {.later = i == 2};
		struct conn_opts o = {.host = "127.0.0.1", .ca_file = ca_pem, .timeout_ms = 5000};
		struct mf_error e = {0};

		UNIT_CHECK(u, server_start(&s, inject ? SRV_STARTTLS_INJECT : SRV_STARTTLS, srv_pem) == 0);
		o.port = s.port;
		UNIT_CHECKF(u, tc_run(&t, &o, &cb, &e) == 0, "%s", e.msg);
		UNIT_CHECK(u, t.starttls_rc == 0 && t.connected == 1 && t.after_close == 0);
		if (!inject) {
			UNIT_CHECKF(u, t.state == 4 && t.tls_ready == 1 && t.tls_seen && !t.errors, "state %d: %s",
				    t.state, t.err);
			UNIT_CHECK(u, server_stop(&s) == 0);
		} else {
			UNIT_CHECKF(u, t.errors == 1 && !t.tls_ready && strstr(t.err, "RFC 3501"), "got '%s'", t.err);
			server_stop(&s);
		}
	}
}

static void test_refused(struct unit_ctx *u)
{
	struct tc t = {0};
	struct conn_opts o = {.host = "127.0.0.1", .timeout_ms = 5000};
	struct mf_error e = {0};
	char want[128];
	int fd = listen_any(1, &o.port);

	close(fd); /* the port is now (almost certainly) free: connect is refused */
	snprintf(want, sizeof(want), "connect to 127.0.0.1:%u: Connection refused", o.port);
	UNIT_CHECK(u, tc_run(&t, &o, &echo_cb, &e) == 0);
	UNIT_CHECKF(u, t.errors == 1 && !strcmp(t.err, want) && !t.connected, "got '%s'", t.err);

	memset(&t, 0, sizeof(t));
	o.host = "no-such-host.invalid";
	UNIT_CHECK(u, tc_run(&t, &o, &echo_cb, &e) < 0);
	UNIT_CHECKF(u, !strncmp(e.msg, "cannot resolve host: no-such-host.invalid", 41), "got '%s'", e.msg);
}

/* A full accept queue (backlog 0, one connection already queued) drops SYNs,
 * so connect hangs until its linked timeout. */
static void test_connect_timeout(struct unit_ctx *u)
{
	struct tc t = {0};
	struct conn_opts o = {.host = "127.0.0.1", .timeout_ms = 200};
	struct mf_error e = {0};
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	char want[128];
	int lfd = listen_any(0, &o.port), fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_port = htons(o.port);
	UNIT_CHECK(u, lfd >= 0 && fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	snprintf(want, sizeof(want), "connect to 127.0.0.1:%u: timed out after 200 ms", o.port);
	UNIT_CHECK(u, tc_run(&t, &o, &echo_cb, &e) == 0);
	UNIT_CHECKF(u, t.errors == 1 && !strcmp(t.err, want), "got '%s'", t.err);
	UNIT_CHECKF(u, t.t_err - t.t_start >= 190 && t.t_err - t.t_start < 2000, "after %d ms",
		    (int)(t.t_err - t.t_start));
	close(fd);
	close(lfd);
}

/* Silent server: idle is fine, busy without input times out. */
static void go_busy(struct loop *l, struct loop_timer *lt)
{
	struct tc *t = (struct tc *)((char *)lt - offsetof(struct tc, kick_timer));

	(void)l;
	if (!t->open)
		return;
	t->state = t->errors ? 100 : 1;
	t->t_start = mono_ms();
	conn_set_busy(&t->c, 1);
}

static void busy_later(struct conn *c)
{
	struct tc *t = T(c);

	t->connected++;
	loop_timer_start(t->l, &t->kick_timer, 450, go_busy);
}

static void test_reply_timeout(struct unit_ctx *u)
{
	static const struct conn_cb cb = {.on_connected = busy_later, .on_data = echo_data, .on_error = on_error};
	struct server s;
	struct tc t = {0};
	struct conn_opts o = {.host = "127.0.0.1", .timeout_ms = 300};
	struct mf_error e = {0};
	char want[128];

	UNIT_CHECK(u, server_start(&s, SRV_SILENT, NULL) == 0);
	o.port = s.port;
	snprintf(want, sizeof(want), "no reply from 127.0.0.1:%u for 0.3 s", s.port);
	UNIT_CHECK(u, tc_run(&t, &o, &cb, &e) == 0);
	UNIT_CHECKF(u, t.state == 1 && t.errors == 1 && !strcmp(t.err, want), "state %d got '%s'", t.state, t.err);
	UNIT_CHECKF(u, t.t_err - t.t_start >= 290 && t.t_err - t.t_start < 1500, "after %d ms",
		    (int)(t.t_err - t.t_start));
	UNIT_CHECK(u, server_stop(&s) == 0);
}

static size_t take_all(struct conn *c, const uint8_t *p, size_t n)
{
	struct tc *t = T(c);

	(void)p;
	t->recvd += n;
	return n;
}

static void test_peer_closes(struct unit_ctx *u)
{
	static const struct conn_cb cb = {.on_connected = on_connected, .on_data = take_all, .on_error = on_error};
	const char *certs[] = {NULL, srv_pem};

	for (int i = 0; i < 2; i++) {
		struct server s;
		struct tc t = {0};
		struct conn_opts o = {.host = "127.0.0.1", .tls = i, .ca_file = ca_pem, .timeout_ms = 5000};
		struct mf_error e = {0};

		UNIT_CHECK(u, server_start(&s, SRV_BYE, certs[i]) == 0);
		o.port = s.port;
		UNIT_CHECK(u, tc_run(&t, &o, &cb, &e) == 0);
		UNIT_CHECKF(u, t.recvd == 7 && t.errors == 1 && strstr(t.err, "connection closed by server"),
			    "tls=%d recvd %llu got '%s'", i, (unsigned long long)t.recvd, t.err);
		UNIT_CHECK(u, t.after_close == 0);
		UNIT_CHECK(u, server_stop(&s) == 0);
	}
}

/* Closing from inside on_data with sends pending, and freeing the struct
 * conn right away: no callback after, nothing leaked (ASan). */
static size_t close_in_data(struct conn *c, const uint8_t *p, size_t n)
{
	struct tc *t = T(c);
	static uint8_t big[1 << 20];

	(void)p;
	memset(big, 'y', sizeof(big));
	for (int i = 0; i < 3; i++)
		if (conn_write(c, big, sizeof(big)))
			t->bad_at = 1;
	conn_want_drain(c);
	conn_set_busy(c, 1);
	conn_kick(c);
	t->closed_in_data = conn_write_pending(c) >= 3u << 20;
	tc_close(t);
	memset(c, 0xa5, sizeof(*c)); /* the owner may reuse or free it now */
	return n;
}

static void test_close_in_data(struct unit_ctx *u)
{
	static const struct conn_cb cb = {.on_connected = on_connected, .on_data = close_in_data, .on_drain = on_drain,
					  .on_error = on_error};
	const char *certs[] = {NULL, srv_pem};

	for (int i = 0; i < 2; i++) {
		struct server s;
		struct tc *t = calloc(1, sizeof(*t));
		struct conn_opts o = {.host = "127.0.0.1", .tls = i, .ca_file = ca_pem, .timeout_ms = 5000,
				      .wbuf_size = 4096};
		struct mf_error e = {0};

		UNIT_CHECK(u, server_start(&s, SRV_BURST, certs[i]) == 0);
		o.port = s.port;
		UNIT_CHECK(u, tc_run(t, &o, &cb, &e) == 0);
		UNIT_CHECKF(u, t->closed_in_data && !t->bad_at && t->after_close == 0 && !t->errors, "tls=%d: %s", i,
			    t->err);
		server_stop(&s);
		free(t);
	}
}

/* conn_close right after conn_open: the connect is cancelled quietly. */
static void test_close_while_connecting(struct unit_ctx *u)
{
	struct loop l;
	struct tc t = {0};
	struct conn_opts o = {.host = "127.0.0.1", .timeout_ms = 5000, .tls = 1, .insecure = 1};
	struct mf_error e = {0};
	int lfd = listen_any(0, &o.port), fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	uint64_t t0 = mono_ms();

	a.sin_port = htons(o.port);
	UNIT_CHECK(u, connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	UNIT_CHECK(u, loop_init(&l, 16) == 0);
	UNIT_CHECK(u, conn_open(&t.c, &l, &o, &echo_cb, &t, &e) == 0);
	UNIT_CHECK(u, conn_write(&t.c, "x", 1) == 0);
	UNIT_CHECK(u, !conn_is_loopback(&t.c) && !conn_is_tls(&t.c)); /* not connected yet */
	conn_close(&t.c);
	UNIT_CHECK(u, loop_run(&l) == 0);
	UNIT_CHECK(u, !t.connected && !t.errors && mono_ms() - t0 < 1000);
	UNIT_CHECK(u, conn_write(&t.c, "x", 1) < 0 && conn_write_space(&t.c) == 0);
	conn_close(&t.c); /* twice is harmless */
	loop_free(&l);
	close(fd);
	close(lfd);
}

static void loopback_connected(struct conn *c)
{
	struct tc *t = T(c);

	t->connected++;
	t->state = conn_is_loopback(c) + 2 * conn_is_tls(c) + 4 * (c->fd >= 0);
	tc_close(t);
}

static void test_loopback(struct unit_ctx *u)
{
	static const struct conn_cb cb = {.on_connected = loopback_connected, .on_data = take_all, .on_error = on_error};
	struct server s;
	struct tc t = {0};
	struct conn_opts o = {.host = "127.0.0.1", .timeout_ms = 5000};
	struct mf_error e = {0};

	UNIT_CHECK(u, server_start(&s, SRV_SILENT, NULL) == 0);
	o.port = s.port;
	UNIT_CHECK(u, tc_run(&t, &o, &cb, &e) == 0);
	UNIT_CHECKF(u, t.connected == 1 && t.state == 5, "state %d", t.state);
	UNIT_CHECK(u, server_stop(&s) == 0);
}

int main(void)
{
	struct unit_ctx u = {0};

	signal(SIGPIPE, SIG_IGN);
	if (!make_certs()) {
		printf("not ok - make_certs: %s\n", ERR_error_string(ERR_get_error(), NULL));
		return 1;
	}
	UNIT_RUN(&u, test_plain_echo_20mb);
	UNIT_RUN(&u, test_echo_ring_grows);
	UNIT_RUN(&u, test_tls_ca_file);
	UNIT_RUN(&u, test_tls_verify);
	UNIT_RUN(&u, test_tls_bad_ca_file);
	UNIT_RUN(&u, test_starttls);
	UNIT_RUN(&u, test_refused);
	UNIT_RUN(&u, test_connect_timeout);
	UNIT_RUN(&u, test_reply_timeout);
	UNIT_RUN(&u, test_peer_closes);
	UNIT_RUN(&u, test_close_in_data);
	UNIT_RUN(&u, test_close_while_connecting);
	UNIT_RUN(&u, test_loopback);
	remove_certs();
	printf("%d passed, %d failed\n", u.passed, u.failed);
	return unit_done(&u);
}
