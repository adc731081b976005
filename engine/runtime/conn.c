/*
 * conn — TCP (+ TLS on OpenSSL memory BIOs) over the ring (see conn.h).
 *
 * All state lives in struct conn_priv, which outlives the owner's struct
 * conn: conn_close() detaches it, cancels what is in flight and drops the
 * owner's reference; the last completion frees it. References: the owner,
 * each op in flight (connect, recv, send, tick) and the queued task.
 *
 * Callbacks never fire inside a conn_* call; they run from completions or
 * from the conn's deferred task, so an owner may call any conn_* function
 * (conn_close included) from any callback.
 *
 * Buffers, allocated once: rbuf (plaintext input; plain recv lands in it
 * directly, SSL_read writes into it), out (plaintext output not yet sent
 * or encrypted: an outring), and with TLS nout (ciphertext of the one
 * send in flight, from the write BIO) and nin (ciphertext of the one recv
 * in flight). Without TLS the send goes straight out of the ring: the
 * bytes a caller wrote are copied once (a staging copy per send was 7 %
 * of a migration's CPU). rbuf's and the ring's size: conn_opts, else the
 * loop's conn_buf, else CONN_BUF_DEFAULT.
 *
 * Not for: protocol parsing, retries (job/sched), name resolution off the
 * loop thread (getaddrinfo blocks; see conn_open).
 */
#include "engine/runtime/conn.h"
#include "engine/runtime/addr.h"
#include "engine/runtime/outring.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define CONN_TLS_REC 16384
#define CONN_NET_BUF (4 * (CONN_TLS_REC + 256)) /* 4 TLS records with overhead */
#define CONN_BUF_DEFAULT (256 * 1024)
#define CONN_TIMEOUT_DEFAULT_MS 60000u
#define CONN_MIN_PROGRESS_DEFAULT 1024u

enum conn_state { CS_CONNECTING, CS_HANDSHAKE, CS_OPEN };

struct conn_priv {
	struct conn *c; /* NULL once closed: the owner may have freed it */
	struct loop *l;
	unsigned refs;
	enum conn_state st;
	int fd, closed, dead, insecure, tls_implicit;
	int paused, offer, busy, want_drain, want_starttls;
	int connecting, receiving, sending, ticking; /* ops in flight */
	int recv_plain;	  /* the recv in flight writes into rbuf at recv_at */
	size_t recv_at;
	unsigned timeout_ms;
	char host[256], name[300], *ca_file;
	struct addrinfo *ai, *ai_next;
	struct addrinfo unix_ai;	/* conn_opts.unix_path: the one address */
	struct sockaddr_un unix_sa;
	int last_err;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	struct __kernel_timespec cts, tts;
	struct loop_op op_connect, op_recv, op_send, op_tick;
	struct loop_task task;
	uint8_t *rbuf, *nin, *nout;
	size_t rcap, roff, rlen;	/* input: [roff, roff + rlen) */
	struct outring out;	/* plain sends read it in place */
	size_t wcfg;		/* configured output size */
	size_t nout_off, nout_len;
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *rbio, *wbio;
	int tls_up;
	uint64_t hs_start, last_act, bytes_in, bytes_out;
	/* Progress: while busy, each window of timeout_ms that brings any
	 * input must bring min_progress bytes (a drip is not a live server). */
	uint64_t win_start, win_bytes;
	unsigned min_progress;
	uint64_t hard_at, hard_len; /* conn_set_deadline: absolute, 0 = none */
	char hard_what[64];
};

#define PRIV_OF(ptr, member) ((struct conn_priv *)(void *)((char *)(ptr) - offsetof(struct conn_priv, member)))

static void pump(struct conn_priv *p);
static void deliver(struct conn_priv *p);

static const char *errstr(int e)
{
	const char *s = strerrordesc_np(e < 0 ? -e : e);

	return s ? s : "unknown error";
}

static int live(const struct conn_priv *p)
{
	return !p->closed && !p->dead;
}

static void put(struct conn_priv *p)
{
	if (--p->refs)
		return;
	if (p->fd >= 0)
		close(p->fd);
	SSL_free(p->ssl); /* frees both BIOs */
	SSL_CTX_free(p->ctx);
	if (p->ai)
		freeaddrinfo(p->ai);
	free(p->rbuf);
	outring_free(&p->out);
	free(p->nin);
	free(p->nout);
	free(p->ca_file);
	free(p);
}

static void fail(struct conn_priv *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct conn_priv *p, int code, const char *fmt, ...)
{
	struct mf_error e;
	va_list ap;

	if (!live(p))
		return;
	p->dead = p->c->dead = 1;
	e.code = code;
	va_start(ap, fmt);
	vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
	va_end(ap);
	if (p->c->cb->on_error)
		p->c->cb->on_error(p->c, &e);
}

static void schedule(struct conn_priv *p)
{
	if (p->task.queued)
		return;
	p->refs++;
	loop_defer(p->l, &p->task);
}

static void submit_op(struct conn_priv *p, struct io_uring_sqe *sqe, struct loop_op *op, int *flag)
{
	loop_bind(p->l, sqe, op);
	*flag = 1;
	p->refs++;
}

static size_t out_pending(const struct conn_priv *p)
{
	return p->out.n + p->nout_len - p->nout_off + (p->wbio ? BIO_ctrl_pending(p->wbio) : 0);
}

/* Moves unread input to the front; never under a recv writing into rbuf. */
static void compact(struct conn_priv *p)
{
	if (p->receiving && p->recv_plain)
		return;
	if (!p->rlen)
		p->roff = 0;
	else if (p->roff && p->rcap - p->roff - p->rlen < p->rcap / 2) {
		memmove(p->rbuf, p->rbuf + p->roff, p->rlen);
		p->roff = 0;
	}
}

/* ---- TLS ---- */

static int tls_setup(struct conn_priv *p, struct mf_error *err)
{
	unsigned char ip[16];
	int is_ip = inet_pton(AF_INET, p->host, ip) == 1 || inet_pton(AF_INET6, p->host, ip) == 1;
	BIO *rb, *wb;
	int code = -EPROTO;

	ERR_clear_error();
	if ((!p->nin && !(p->nin = malloc(CONN_NET_BUF))) || (!p->nout && !(p->nout = malloc(CONN_NET_BUF))))
		goto oom;
	if (!(p->ctx = SSL_CTX_new(TLS_client_method())) ||
	    !SSL_CTX_set_min_proto_version(p->ctx, TLS1_2_VERSION))
		goto tls_err;
	if (!p->insecure) {
		SSL_CTX_set_verify(p->ctx, SSL_VERIFY_PEER, NULL);
		if (p->ca_file ? !SSL_CTX_load_verify_locations(p->ctx, p->ca_file, NULL)
			       : !SSL_CTX_set_default_verify_paths(p->ctx)) {
			code = -EINVAL;
			mf_err_set(err, code, "cannot load %s%s: %s", p->ca_file ? "CA file " : "system trust store",
				   p->ca_file ? p->ca_file : "", ERR_reason_error_string(ERR_peek_last_error()));
			goto fail;
		}
	}
	if (!(p->ssl = SSL_new(p->ctx)))
		goto tls_err;
	rb = BIO_new(BIO_s_mem());
	wb = BIO_new(BIO_s_mem());
	if (!rb || !wb) {
		BIO_free(rb);
		BIO_free(wb);
		goto oom;
	}
	SSL_set_bio(p->ssl, rb, wb);
	p->rbio = rb;
	p->wbio = wb;
	SSL_set_connect_state(p->ssl);
	SSL_set_mode(p->ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (!is_ip && !SSL_set_tlsext_host_name(p->ssl, p->host)) /* SNI: names only, RFC 6066 §3 */
		goto tls_err;
	if (!p->insecure && !(is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(p->ssl), p->host)
				    : SSL_set1_host(p->ssl, p->host)))
		goto tls_err;
	return 0;
oom:
	code = -ENOMEM;
	mf_err_set(err, code, "TLS setup for %s: out of memory", p->name);
	goto fail;
tls_err:
	mf_err_set(err, -EPROTO, "TLS setup for %s: %s", p->name, ERR_reason_error_string(ERR_peek_last_error()));
fail:
	SSL_free(p->ssl);
	SSL_CTX_free(p->ctx);
	p->ssl = NULL;
	p->ctx = NULL;
	p->rbio = p->wbio = NULL;
	ERR_clear_error();
	return code;
}

static void tls_fail(struct conn_priv *p, const char *what)
{
	long v = SSL_get_verify_result(p->ssl);
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
		fail(p, -EPROTO, "TLS to %s: certificate verify failed: %s (the certificate is not for %s; --insecure skips the check)",
		     p->name, X509_verify_cert_error_string(v), p->host);
	else if (v != X509_V_OK)
		fail(p, -EPROTO, "TLS to %s: certificate verify failed: %s (use --ca-file, or --insecure to skip the check)",
		     p->name, X509_verify_cert_error_string(v));
	else
		fail(p, -EPROTO, "TLS to %s: %s: %s", p->name, what, r ? r : "protocol error");
}

/* Drives the handshake with whatever ciphertext the read BIO holds. */
static void handshake(struct conn_priv *p)
{
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(p->ssl);
	if (r != 1) {
		if (SSL_get_error(p->ssl, r) != SSL_ERROR_WANT_READ)
			tls_fail(p, "handshake failed");
		return; /* WANT_READ: pump sends our flight and posts a recv */
	}
	p->tls_up = 1;
	p->st = CS_OPEN;
	p->offer = 1;
	if (p->insecure)
		mf_log(MF_LOG_WARN, "tls=insecure peer=%s certificate and host name NOT verified", p->name);
	if (p->tls_implicit) {
		if (p->c->cb->on_connected)
			p->c->cb->on_connected(p->c);
	} else if (p->c->cb->on_tls_ready) {
		p->c->cb->on_tls_ready(p->c);
	}
}

/* Decrypts into rbuf until it is full or the read BIO runs dry. */
static void tls_pull(struct conn_priv *p)
{
	compact(p);
	for (;;) {
		size_t room = p->rcap - p->roff - p->rlen;
		int r;

		if (!room)
			return;
		ERR_clear_error();
		r = SSL_read(p->ssl, p->rbuf + p->roff + p->rlen, room > INT_MAX ? INT_MAX : (int)room);
		if (r > 0) {
			p->rlen += (size_t)r;
			p->offer = 1;
			continue;
		}
		switch (SSL_get_error(p->ssl, r)) {
		case SSL_ERROR_WANT_READ:
			return;
		case SSL_ERROR_ZERO_RETURN:
			/* What came before close_notify is the server's last word
			 * (a POP3 QUIT's +OK, RFC 1939 §6): offer it first. */
			if (p->rlen)
				deliver(p);
			if (live(p))
				fail(p, -ECONNRESET, "connection closed by server %s", p->name);
			return;
		default:
			tls_fail(p, "read failed");
			return;
		}
	}
}

/* Encrypts the output into the write BIO, at most what one send can carry. */
static void tls_push(struct conn_priv *p)
{
	while (p->out.n && BIO_ctrl_pending(p->wbio) + CONN_TLS_REC + 256 <= CONN_NET_BUF) {
		size_t n = outring_seg(&p->out);
		int r;

		ERR_clear_error();
		r = SSL_write(p->ssl, p->out.buf + p->out.head, n > CONN_TLS_REC ? CONN_TLS_REC : (int)n);
		if (r <= 0) {
			int e = SSL_get_error(p->ssl, r);

			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				tls_fail(p, "write failed");
			return;
		}
		outring_take(&p->out, (size_t)r);
	}
}

/* ---- I/O ---- */

static void flush(struct conn_priv *p)
{
	struct io_uring_sqe *sqe;

	if (!live(p) || p->sending || p->st == CS_CONNECTING)
		return;
	if (!p->ssl) {
		/* straight from the ring: its first contiguous run */
		if (!(p->out.infl = outring_seg(&p->out)))
			return;
		sqe = loop_sqe(p->l);
		io_uring_prep_send(sqe, p->fd, p->out.buf + p->out.head, p->out.infl, MSG_NOSIGNAL);
		submit_op(p, sqe, &p->op_send, &p->sending);
		return;
	}
	if (p->nout_off == p->nout_len) {
		int r;

		p->nout_off = p->nout_len = 0;
		if (p->tls_up)
			tls_push(p);
		if (!live(p))
			return;
		r = BIO_read(p->wbio, p->nout, CONN_NET_BUF);
		p->nout_len = r > 0 ? (size_t)r : 0;
	}
	if (p->nout_off == p->nout_len)
		return;
	sqe = loop_sqe(p->l);
	io_uring_prep_send(sqe, p->fd, p->nout + p->nout_off, p->nout_len - p->nout_off, MSG_NOSIGNAL);
	submit_op(p, sqe, &p->op_send, &p->sending);
}

static void post_recv(struct conn_priv *p)
{
	struct io_uring_sqe *sqe;
	uint8_t *dst;
	size_t n;

	if (!live(p) || p->receiving || p->st == CS_CONNECTING || p->want_starttls)
		return;
	if (p->ssl) {
		/* Handshake records are read even when paused; application data
		 * waits while rbuf is full (ciphertext then stays in the BIO).
		 * Full means after compacting: a consumer that took everything
		 * from a full rbuf left roff at rcap, and without this no recv
		 * was posted again (the connection stalled into its timeout). */
		compact(p);
		if (p->tls_up && (p->paused || BIO_ctrl_pending(p->rbio) || p->rcap == p->roff + p->rlen))
			return;
		dst = p->nin;
		n = CONN_NET_BUF;
		p->recv_plain = 0;
	} else {
		if (p->paused)
			return;
		compact(p);
		p->recv_at = p->roff + p->rlen;
		dst = p->rbuf + p->recv_at;
		n = p->rcap - p->recv_at;
		if (!n)
			return;
		p->recv_plain = 1;
	}
	if (p->st == CS_OPEN)
		p->last_act = loop_now_ms(p->l); /* the reply clock starts now */
	sqe = loop_sqe(p->l);
	io_uring_prep_recv(sqe, p->fd, dst, n, 0);
	submit_op(p, sqe, &p->op_recv, &p->receiving);
}

/* Offers buffered input until the consumer stops taking it. */
static void deliver(struct conn_priv *p)
{
	while (live(p) && p->offer && !p->paused && p->rlen && !p->want_starttls) {
		size_t n = p->c->cb->on_data(p->c, p->rbuf + p->roff, p->rlen);

		if (p->closed)
			return;
		if (n > p->rlen)
			n = p->rlen;
		p->roff += n;
		p->rlen -= n;
		if (!n)
			p->offer = 0;
	}
	if (!p->rlen)
		p->offer = 0;
}

static void input(struct conn_priv *p)
{
	for (;;) {
		size_t before;

		if (p->tls_up)
			tls_pull(p);
		before = p->rlen;
		deliver(p);
		/* With TLS, room made by the consumer may let buffered records in. */
		if (!live(p) || !p->tls_up || p->paused || p->rlen == before ||
		    (!BIO_ctrl_pending(p->rbio) && !SSL_has_pending(p->ssl)))
			return;
	}
}

/* RFC 3501 §6.2.1: bytes after the server's OK to STARTTLS were sent in the
 * clear by someone and must not be taken as coming from inside TLS. */
static void starttls_go(struct conn_priv *p)
{
	p->want_starttls = 0;
	if (p->rlen) {
		fail(p, -EPROTO, "STARTTLS with %s: %zu unexpected bytes after the server's reply (RFC 3501 §6.2.1), refusing",
		     p->name, p->rlen);
		return;
	}
	p->st = CS_HANDSHAKE;
	p->hs_start = loop_now_ms(p->l);
	handshake(p);
}

static void maybe_drain(struct conn_priv *p)
{
	if (!p->want_drain || out_pending(p) >= p->wcfg / 2)
		return;
	p->want_drain = 0;
	if (p->c->cb->on_drain)
		p->c->cb->on_drain(p->c);
}

/* ---- timeouts: one lazy timer per conn, re-armed only when it fires ---- */

static uint64_t dl_min(uint64_t a, uint64_t b)
{
	return !a ? b : !b ? a : a < b ? a : b;
}

static uint64_t deadline(const struct conn_priv *p)
{
	uint64_t dl = p->hard_at;

	if (p->st == CS_HANDSHAKE)
		return dl_min(dl, p->hs_start + p->timeout_ms);
	/* Only while we are ready to read: a paused or full input buffer
	 * (back-pressure from our side) is not the server's silence. */
	if (p->st == CS_OPEN && p->busy && p->receiving)
		dl = dl_min(dl, dl_min(p->last_act, p->win_start) + p->timeout_ms);
	return dl;
}

/* The end of a progress window: too little input is a drip. Returns 1 if
 * the connection failed. */
static int progress_check(struct conn_priv *p, uint64_t now)
{
	if (!(p->st == CS_OPEN && p->busy && p->receiving) || now < p->win_start + p->timeout_ms)
		return 0;
	if (p->win_bytes && p->win_bytes < p->min_progress) {
		fail(p, -ETIMEDOUT,
		     "server %s too slow: %llu bytes in %g s while a reply was due (at least %u "
		     "expected, --min-progress)",
		     p->name, (unsigned long long)p->win_bytes, p->timeout_ms / 1000.0,
		     p->min_progress);
		return 1;
	}
	p->win_start = now;
	p->win_bytes = 0;
	return 0;
}

static void tick_arm(struct conn_priv *p)
{
	uint64_t dl = deadline(p), now = loop_now_ms(p->l), ms;
	struct io_uring_sqe *sqe;

	if (p->ticking || !dl || !live(p))
		return;
	ms = dl > now ? dl - now : 0;
	p->tts.tv_sec = (long long)(ms / 1000);
	p->tts.tv_nsec = (long long)(ms % 1000) * 1000000;
	sqe = loop_sqe(p->l);
	io_uring_prep_timeout(sqe, &p->tts, 0, 0);
	submit_op(p, sqe, &p->op_tick, &p->ticking);
}

static void on_tick(struct loop *l, struct loop_op *op, int res, unsigned flags)
{
	struct conn_priv *p = PRIV_OF(op, op_tick);
	uint64_t dl;

	(void)res;
	(void)flags;
	p->ticking = 0;
	if (live(p) && p->hard_at && loop_now_ms(l) >= p->hard_at) {
		fail(p, -ETIMEDOUT, "%s with %s: not done after %g s", p->hard_what, p->name,
		     (double)(loop_now_ms(l) - p->hard_at + p->hard_len) / 1000.0);
	} else if (live(p) && progress_check(p, loop_now_ms(l))) {
		/* failed */
	} else if (live(p)) {
		dl = deadline(p);
		if (dl && loop_now_ms(l) >= dl && p->st == CS_HANDSHAKE)
			fail(p, -ETIMEDOUT, "TLS handshake with %s: timed out after %u ms", p->name, p->timeout_ms);
		else if (dl && loop_now_ms(l) >= dl)
			fail(p, -ETIMEDOUT, "no reply from %s for %g s", p->name, p->timeout_ms / 1000.0);
		else
			tick_arm(p);
	}
	put(p);
}

/* ---- completions ---- */

static void pump(struct conn_priv *p)
{
	if (live(p) && p->st == CS_OPEN) {
		input(p);
		if (live(p) && p->want_starttls)
			starttls_go(p);
	}
	flush(p);
	post_recv(p);
	tick_arm(p);
	if (live(p))
		maybe_drain(p);
}

static void on_task(struct loop *l, struct loop_task *t)
{
	struct conn_priv *p = PRIV_OF(t, task);

	(void)l;
	pump(p);
	put(p);
}

static void on_recv(struct loop *l, struct loop_op *op, int res, unsigned flags)
{
	struct conn_priv *p = PRIV_OF(op, op_recv);
	const uint8_t *got = p->recv_plain ? p->rbuf + p->recv_at : p->nin;

	(void)flags;
	p->receiving = 0;
	if (!live(p)) {
		put(p);
		return;
	}
	if (res > 0) {
		p->bytes_in += (uint64_t)res;
		p->win_bytes += (uint64_t)res;
		p->last_act = loop_now_ms(l);
		if (p->busy && p->peer.ss_family != AF_UNIX) /* ACK now: a server with Nagle waits (conn.h) */
			(void)setsockopt(p->fd, IPPROTO_TCP, TCP_QUICKACK, &(int){1}, sizeof(int));
		if (!p->ssl || p->want_starttls) {
			/* Plaintext, landed at recv_at == roff + rlen; while STARTTLS
			 * waits to start, anything here is the injection it checks. */
			p->rlen += (size_t)res;
			p->offer = 1;
		} else if (BIO_write(p->rbio, got, res) != res) {
			fail(p, -ENOMEM, "TLS to %s: out of memory", p->name);
		} else if (!p->tls_up) {
			handshake(p);
		}
	} else if (res == 0 && p->ssl && !p->tls_up) {
		fail(p, -ECONNRESET, "TLS to %s: handshake failed: connection closed by server", p->name);
	} else if (res == 0) {
		fail(p, -ECONNRESET, "connection closed by server %s", p->name);
	} else if (res != -EAGAIN && res != -EINTR) {
		fail(p, res, "read from %s: %s", p->name, errstr(res));
	}
	pump(p);
	put(p);
}

static void on_send(struct loop *l, struct loop_op *op, int res, unsigned flags)
{
	struct conn_priv *p = PRIV_OF(op, op_send);

	(void)flags;
	p->sending = 0;
	if (p->out.infl || p->out.old) /* a plain send out of the ring */
		outring_sent(&p->out, res);
	else if (res >= 0)
		p->nout_off += (size_t)res;
	if (live(p)) {
		if (res >= 0) { /* short sends just leave the rest for the next one */
			p->bytes_out += (uint64_t)res;
			/* The peer is taking our bytes, so it is alive: a long upload
			 * (APPEND literal) with a silent server is not "no reply". */
			p->last_act = loop_now_ms(l);
		} else if (res != -EAGAIN && res != -EINTR) {
			fail(p, res, "write to %s: %s", p->name, errstr(res));
		}
		pump(p);
	}
	put(p);
}

static int connect_next(struct conn_priv *p, struct mf_error *err);

static void on_connect(struct loop *l, struct loop_op *op, int res, unsigned flags)
{
	struct conn_priv *p = PRIV_OF(op, op_connect);
	struct mf_error e;

	(void)l;
	(void)flags;
	p->connecting = 0;
	if (!live(p)) {
		put(p);
		return;
	}
	if (res < 0) { /* -ECANCELED: the linked timeout fired */
		p->last_err = res == -ECANCELED ? ETIMEDOUT : -res;
		close(p->fd);
		p->fd = -1;
		if (connect_next(p, &e) < 0)
			fail(p, e.code, "%s", e.msg);
	} else {
		p->c->fd = p->fd;
		if (p->ai)
			freeaddrinfo(p->ai);
		p->ai = p->ai_next = NULL;
		if (p->ssl) {
			p->st = CS_HANDSHAKE;
			p->hs_start = loop_now_ms(p->l);
			handshake(p);
		} else {
			p->st = CS_OPEN;
			if (p->c->cb->on_connected)
				p->c->cb->on_connected(p->c);
		}
	}
	pump(p);
	put(p);
}

/* Tries the remaining resolved addresses in turn, each bounded by timeout_ms
 * through a linked timeout. */
static int connect_next(struct conn_priv *p, struct mf_error *err)
{
	struct io_uring_sqe *sqe;

	for (struct addrinfo *a; (a = p->ai_next);) {
		int one = 1, fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		p->ai_next = a->ai_next;
		if (fd < 0 || (a->ai_family != AF_UNIX &&
			       setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)) {
			p->last_err = errno;
			if (fd >= 0)
				close(fd);
			continue;
		}
		p->fd = fd;
		memcpy(&p->peer, a->ai_addr, a->ai_addrlen);
		p->peer_len = a->ai_addrlen;
		p->cts.tv_sec = p->timeout_ms / 1000;
		p->cts.tv_nsec = (long long)(p->timeout_ms % 1000) * 1000000;
		loop_reserve(p->l, 2);
		sqe = loop_sqe(p->l);
		io_uring_prep_connect(sqe, fd, (struct sockaddr *)&p->peer, p->peer_len);
		sqe->flags |= IOSQE_IO_LINK;
		submit_op(p, sqe, &p->op_connect, &p->connecting);
		sqe = loop_sqe(p->l);
		io_uring_prep_link_timeout(sqe, &p->cts, 0);
		loop_bind_ignore(p->l, sqe);
		return 0;
	}
	if (p->last_err == ETIMEDOUT)
		mf_err_set(err, -ETIMEDOUT, "connect to %s: timed out after %u ms", p->name, p->timeout_ms);
	else
		mf_err_set(err, -p->last_err, "connect to %s: %s", p->name, errstr(p->last_err));
	return -p->last_err;
}

/* ---- API ---- */

int conn_open(struct conn *c, struct loop *l, const struct conn_opts *o, const struct conn_cb *cb, void *ud,
	      struct mf_error *err)
{
	struct addrinfo hints;
	struct conn_priv *p;
	char port[8];
	int r;

	memset(c, 0, sizeof(*c));
	c->loop = l;
	c->cb = cb;
	c->ud = ud;
	c->fd = -1;
	if (o->unix_path ? !*o->unix_path || strlen(o->unix_path) >= sizeof(p->unix_sa.sun_path) ||
			       (o->host && strlen(o->host) >= sizeof(p->host))
			 : !o->host || !*o->host || strlen(o->host) >= sizeof(p->host) || !o->port) {
		if (o->unix_path)
			mf_err_set(err, -EINVAL, "invalid UNIX socket path: '%s'", o->unix_path);
		else
			mf_err_set(err, -EINVAL, "invalid host or port: '%s' %u", o->host ? o->host : "", o->port);
		return -EINVAL;
	}
	if (!(p = calloc(1, sizeof(*p))))
		goto oom;
	p->c = c;
	p->l = l;
	p->refs = 1;
	p->fd = -1;
	p->task.fn = on_task;
	p->op_connect.cb = on_connect;
	p->op_recv.cb = on_recv;
	p->op_send.cb = on_send;
	p->op_tick.cb = on_tick;
	p->insecure = o->insecure;
	p->tls_implicit = o->tls;
	p->timeout_ms = o->timeout_ms ? o->timeout_ms : CONN_TIMEOUT_DEFAULT_MS;
	p->min_progress = o->min_progress ? o->min_progress : CONN_MIN_PROGRESS_DEFAULT;
	p->rcap = o->rbuf_size ? o->rbuf_size : l->conn_buf ? l->conn_buf : CONN_BUF_DEFAULT;
	p->wcfg = o->wbuf_size ? o->wbuf_size : l->conn_buf ? l->conn_buf : CONN_BUF_DEFAULT;
	if (o->unix_path) {
		/* TLS over a UNIX socket checks the certificate against host,
		 * "localhost" unless given. */
		strcpy(p->host, o->host ? o->host : "localhost");
		snprintf(p->name, sizeof(p->name), "unix:%s", o->unix_path);
	} else {
		strcpy(p->host, o->host);
		snprintf(p->name, sizeof(p->name), strchr(o->host, ':') ? "[%s]:%u" : "%s:%u", o->host,
			 o->port);
	}
	if (!(p->rbuf = malloc(p->rcap)) || outring_init(&p->out, p->wcfg) ||
	    (o->ca_file && !(p->ca_file = strdup(o->ca_file))))
		goto oom;
	if (o->tls && (r = tls_setup(p, err)) < 0)
		goto fail;
	if (o->unix_path) {
		/* One address, no resolution; p->ai stays NULL (nothing to free). */
		addr_unix(&p->unix_ai, &p->unix_sa, o->unix_path);
		p->ai_next = &p->unix_ai;
		p->last_err = ENOENT;
		if ((r = connect_next(p, err)) < 0)
			goto fail;
		c->priv = p;
		return 0;
	}
	/* Blocking resolution: fine while hosts are few and resolvers fast; move
	 * to getaddrinfo_a or a resolver thread if it ever shows in profiles. */
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", o->port);
	if ((r = getaddrinfo(p->host, port, &hints, &p->ai))) {
		mf_err_set(err, -EHOSTUNREACH, "cannot resolve host: %s: %s", p->host,
			   r == EAI_SYSTEM ? errstr(errno) : gai_strerror(r));
		r = -EHOSTUNREACH;
		goto fail;
	}
	p->ai_next = p->ai;
	p->last_err = EHOSTUNREACH;
	if ((r = connect_next(p, err)) < 0)
		goto fail;
	c->priv = p;
	return 0;
oom:
	mf_err_set(err, -ENOMEM, "connect to %s:%u: out of memory", o->host, o->port);
	r = -ENOMEM;
fail:
	if (p)
		put(p);
	return r;
}

int conn_starttls(struct conn *c, struct mf_error *err)
{
	struct conn_priv *p = c->priv;
	int r;

	if (!p || !live(p) || p->st != CS_OPEN) {
		mf_err_set(err, -ENOTCONN, "STARTTLS: not connected");
		return -ENOTCONN;
	}
	if (p->ssl) {
		mf_err_set(err, -EALREADY, "STARTTLS with %s: TLS is already active", p->name);
		return -EALREADY;
	}
	if (p->out.n > p->out.infl) { /* the command's own send may still be completing */
		mf_err_set(err, -EPROTO, "STARTTLS with %s: output written after the command", p->name);
		return -EPROTO;
	}
	if ((r = tls_setup(p, err)) < 0)
		return r;
	/* The handshake starts from the task (or right after on_data returns),
	 * once the buffered input is known to be empty. */
	p->want_starttls = 1;
	schedule(p);
	return 0;
}

int conn_is_tls(const struct conn *c)
{
	return c->priv && c->priv->tls_up;
}

int conn_is_loopback(const struct conn *c)
{
	const struct conn_priv *p = c->priv;

	return p && p->st != CS_CONNECTING && addr_is_loopback(&p->peer);
}

int conn_write(struct conn *c, const void *buf, size_t n)
{
	struct conn_priv *p = c->priv;

	if (!p || !live(p))
		return -EPIPE;
	if (!n)
		return 0;
	if (outring_put(&p->out, buf, n))
		return -ENOMEM;
	schedule(p); /* one send for everything written in this loop iteration */
	return 0;
}

size_t conn_write_space(const struct conn *c)
{
	size_t n;

	if (!c->priv)
		return 0;
	n = out_pending(c->priv);
	return n < c->priv->wcfg ? c->priv->wcfg - n : 0;
}

size_t conn_write_pending(const struct conn *c)
{
	return c->priv ? out_pending(c->priv) : 0;
}

void conn_want_drain(struct conn *c)
{
	if (!c->priv)
		return;
	c->priv->want_drain = 1;
	schedule(c->priv);
}

void conn_pause(struct conn *c)
{
	if (c->priv)
		c->priv->paused = 1;
}

void conn_resume(struct conn *c)
{
	conn_kick(c);
}

void conn_kick(struct conn *c)
{
	if (!c->priv)
		return;
	c->priv->paused = 0;
	c->priv->offer = 1;
	schedule(c->priv);
}

void conn_set_busy(struct conn *c, int busy)
{
	struct conn_priv *p = c->priv;

	if (!p)
		return;
	if (busy && !p->busy) {
		p->last_act = p->win_start = loop_now_ms(p->l);
		p->win_bytes = 0;
	}
	p->busy = !!busy;
	tick_arm(p);
}

void conn_set_deadline(struct conn *c, unsigned ms, const char *what)
{
	struct conn_priv *p = c->priv;

	if (!p)
		return;
	p->hard_at = ms ? loop_now_ms(p->l) + ms : 0;
	p->hard_len = ms;
	snprintf(p->hard_what, sizeof(p->hard_what), "%s", what ? what : "reply");
	tick_arm(p);
}

uint64_t conn_bytes_in(const struct conn *c)
{
	return c->priv ? c->priv->bytes_in : 0;
}

uint64_t conn_bytes_out(const struct conn *c)
{
	return c->priv ? c->priv->bytes_out : 0;
}

static void cancel(struct conn_priv *p, struct loop_op *op)
{
	struct io_uring_sqe *sqe = loop_sqe(p->l);

	io_uring_prep_cancel(sqe, op, 0);
	loop_bind_ignore(p->l, sqe);
}

void conn_close(struct conn *c)
{
	struct conn_priv *p = c->priv;
	struct io_uring_sqe *sqe;

	if (!p)
		return;
	c->priv = NULL;
	c->dead = 1;
	c->fd = -1;
	p->closed = 1;
	p->c = NULL;
	if (p->connecting)
		cancel(p, &p->op_connect);
	if (p->receiving)
		cancel(p, &p->op_recv);
	if (p->sending)
		cancel(p, &p->op_send);
	if (p->ticking) {
		sqe = loop_sqe(p->l);
		io_uring_prep_timeout_remove(sqe, (__u64)(uintptr_t)&p->op_tick, 0);
		loop_bind_ignore(p->l, sqe);
	}
	/* Bytes not yet sent or not yet acknowledged are dropped with a reset,
	 * not delivered after we gave up: a FIN close lets the kernel go on
	 * retransmitting them for minutes, and an abandoned APPEND's final
	 * CRLF arriving then would store a message the next run's settle has
	 * already looked for (a duplicate). */
	if (p->fd >= 0 && !p->connecting && !c->close_fin) {
		int queued = 0;

		if (out_pending(p) || p->sending ||
		    (ioctl(p->fd, SIOCOUTQ, &queued) == 0 && queued > 0)) {
			struct linger lg = {1, 0};

			(void)setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
	}
	/* Closed through the ring, after the cancels: an SQE still unsubmitted
	 * for this fd must not meet a reused descriptor number. */
	if (p->fd >= 0) {
		sqe = loop_sqe(p->l);
		io_uring_prep_close(sqe, p->fd);
		loop_bind_ignore(p->l, sqe);
		p->fd = -1;
	}
	put(p);
}
