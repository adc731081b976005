/*
 * listen — a listening TCP socket on the ring (IORING_OP_ACCEPT, one
 * accept in flight at a time) and the plain server-side stream an
 * accepted socket becomes (sconn: one recv and one send in flight at most,
 * each a single io_uring op into or from the caller's buffer).
 *
 * Both are owned by their caller, who must keep them alive until their
 * ops have completed: listen_close() / sconn_close() cancel what is in
 * flight, and the caller learns when the memory may go by listen_busy() /
 * the on_closed callback. Plain TCP only: whoever needs TLS in front puts
 * a reverse proxy there.
 *
 * Not for: client connections (conn.c), HTTP (protocols/http_req,
 * engine/cli/status*).
 */
#ifndef MF_LISTEN_H
#define MF_LISTEN_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/err.h"
#include "engine/runtime/loop.h"

struct listener {
	struct loop_op op;
	struct loop *l;
	int fd;
	int armed; /* an accept is in flight */
	int closed;
	/* A new connection (fd is the caller's), or res < 0: accept failed
	 * (the listener goes on; -EMFILE and the like are transient). */
	void (*on_accept)(struct listener *ls, int fd);
	void *ud;
};

/* Binds host (an IPv4 or IPv6 literal; NULL: 127.0.0.1) at port and
 * starts accepting: 0, or a negative errno with err naming the address. */
int listen_open(struct listener *ls, struct loop *l, const char *host, uint16_t port,
                void (*on_accept)(struct listener *ls, int fd), void *ud, struct mf_error *err);
/* The port bound (useful with port 0). */
uint16_t listen_port(const struct listener *ls);
/* Stops accepting and closes the socket. The struct may go once
 * listen_busy() is 0 (at the latest when the loop has run out). */
void listen_close(struct listener *ls);
int listen_busy(const struct listener *ls);

struct sconn;
struct sconn_op {
	struct loop_op op;
	struct sconn *s;
	int busy;
};

struct sconn {
	struct loop *l;
	int fd;
	int closed;
	struct sconn_op r, w;
	/* bytes received (0: the peer closed, < 0: -errno) */
	void (*on_recv)(struct sconn *s, int res);
	/* bytes sent (< 0: -errno) */
	void (*on_sent)(struct sconn *s, int res);
	/* after sconn_close(): nothing is in flight any more, s may go */
	void (*on_closed)(struct sconn *s);
	void *ud;
};

void sconn_init(struct sconn *s, struct loop *l, int fd);
/* One receive into buf[0..n); on_recv follows. Not while one is in flight. */
void sconn_recv(struct sconn *s, void *buf, size_t n);
/* One send of buf[0..n) (it may send less); on_sent follows. */
void sconn_send(struct sconn *s, const void *buf, size_t n);
/* Cancels what is in flight and closes the socket; on_closed follows from
 * the loop (never from inside this call); no on_recv/on_sent after this. */
void sconn_close(struct sconn *s);

#endif
