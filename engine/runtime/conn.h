/*
 * conn — one TCP connection on the ring, optionally TLS through OpenSSL
 * memory BIOs (ciphertext moves by io_uring recv/send, never by SSL_set_fd).
 *
 * Input: bytes land in a bounded plaintext buffer and are offered to
 * cb->on_data, which returns how many it consumed; the rest stays buffered
 * and receiving pauses while the buffer is full or the conn is paused. This
 * is the back-pressure hook: a consumer that cannot take more simply returns
 * less, and calls conn_kick() when it can take more again.
 *
 * Output: conn_write() copies into a bounded output buffer that is sent
 * (encrypted first with TLS) by one send in flight at a time. Writers that
 * stream bulk data check conn_write_space() and call conn_want_drain() when
 * it is too small; cb->on_drain fires once the buffer fell below half.
 *
 * Not for: protocol parsing, retries (see job/sched).
 */
#ifndef MF_CONN_H
#define MF_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "engine/base/err.h"
#include "engine/runtime/loop.h"

struct conn;

struct conn_cb {
	/* TCP connected and, for implicit TLS, handshake done and verified. */
	void (*on_connected)(struct conn *c);
	/* STARTTLS handshake finished and verified (after conn_starttls()). */
	void (*on_tls_ready)(struct conn *c);
	/* Plaintext input; return bytes consumed (0..n). */
	size_t (*on_data)(struct conn *c, const uint8_t *p, size_t n);
	/* Output buffer dropped below half after conn_want_drain(). */
	void (*on_drain)(struct conn *c);
	/* Fatal: the connection is dead (closed by peer, reset, timeout, TLS
	 * failure, certificate refused). err->msg says which, in one line.
	 * Called at most once; the owner then calls conn_close(). */
	void (*on_error)(struct conn *c, const struct mf_error *err);
};

struct conn_opts {
	const char *host;	/* name or IP literal; resolved at conn_open */
	uint16_t port;
	const char *unix_path;	/* instead of host/port: an AF_UNIX stream socket
				 * (LMTP, lmtp:///path); host then only names
				 * the peer for TLS checks and may be NULL */
	int tls;		/* 1 = TLS from the first byte (imaps://) */
	const char *ca_file;	/* NULL = system trust store */
	int insecure;		/* 1 = no certificate / host name check */
	unsigned timeout_ms;	/* connect, handshake, and reply timeout */
	unsigned min_progress;  /* while a reply is due, each timeout_ms window
	                         * with input brings at least this many bytes
	                         * (default 1024): a drip fails like silence */
	size_t rbuf_size;	/* plaintext input buffer (default 256 KiB) */
	size_t wbuf_size;	/* output buffer capacity (default 256 KiB) */
};

struct conn {
	struct loop *loop;
	const struct conn_cb *cb;
	void *ud;		/* owner's pointer */
	int fd;
	int dead;
	/* Owner's: conn_close ends with FIN even while output is unacknowledged
	 * (a LOGOUT, harmless if delivered late), not with a reset. */
	int close_fin;
	/* the rest is private to conn.c */
	struct conn_priv *priv;
};

/* Starts resolving and connecting; cb->on_connected or cb->on_error follows.
 * A negative return (bad CA file, unresolvable host, no socket) fills err and
 * no callback follows. Callbacks never run inside a conn_* call, only from the
 * loop, so any conn_* call (conn_close included) is fine inside a callback. */
int conn_open(struct conn *c, struct loop *l, const struct conn_opts *o,
	      const struct conn_cb *cb, void *ud, struct mf_error *err);
/* Upgrades an established plaintext connection in place (STARTTLS). Any
 * input already buffered past the server's OK is an error (RFC 3501 §6.2.1
 * injection): call only when the input buffer is empty. */
int conn_starttls(struct conn *c, struct mf_error *err);
int conn_is_tls(const struct conn *c);
/* Peer address is loopback (127.0.0.0/8, ::1) or a UNIX socket: plaintext
 * login allowed. */
int conn_is_loopback(const struct conn *c);

/* Copies n bytes into the output buffer (grows past capacity if it must;
 * bulk writers keep within conn_write_space()). Returns 0 or -errno. */
int conn_write(struct conn *c, const void *p, size_t n);
size_t conn_write_space(const struct conn *c);
size_t conn_write_pending(const struct conn *c);
void conn_want_drain(struct conn *c);

/* Input flow control. */
void conn_pause(struct conn *c);
void conn_resume(struct conn *c);
/* Offers buffered input to on_data again (deferred to the loop), e.g. after
 * the consumer made room. Implies conn_resume(). */
void conn_kick(struct conn *c);

/* Arms the reply timeout: while busy, no input for timeout_ms is fatal.
 * While busy, every receive is also ACKed at once (TCP_QUICKACK) instead
 * of after the delayed-ACK timer: a server without TCP_NODELAY (Courier)
 * holds its next small write until the last one is ACKed, so a reply in
 * two writes ("A1 OK", then the "+" to the next APPEND) would otherwise
 * wait ~40 ms each time (issue 22). */
void conn_set_busy(struct conn *c, int busy);

/* Whole-exchange deadline: ms from now (0 clears it); when it passes the
 * connection fails with "WHAT with HOST: not done after S s". */
void conn_set_deadline(struct conn *c, unsigned ms, const char *what);

/* Counters for reports (wire bytes); read them before conn_close. */
uint64_t conn_bytes_in(const struct conn *c);
uint64_t conn_bytes_out(const struct conn *c);

/* Closes the socket (cancelling ops in flight); memory is freed when the
 * last op completes. Safe to call from any callback; no callback fires after. */
void conn_close(struct conn *c);

#endif
