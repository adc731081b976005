/*
 * listen — a listening socket and the accepted streams on the ring (see
 * listen.h). Each accepted socket stays blocking: io_uring waits for it
 * by polling internally, so a slow peer never blocks the loop. Not for:
 * TLS, protocols.
 */
#include "engine/runtime/listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void accept_arm(struct listener *ls);

static void on_accept_done(struct loop *l, struct loop_op *op, int res, unsigned flags)
{
	struct listener *ls = (struct listener *)op; /* op is the first member */

	(void)l;
	(void)flags;
	ls->armed = 0;
	if (ls->closed) {
		if (res >= 0)
			close(res);
		return;
	}
	ls->on_accept(ls, res);
	if (!ls->closed)
		accept_arm(ls);
}

static void accept_arm(struct listener *ls)
{
	struct io_uring_sqe *sqe = loop_sqe(ls->l);

	io_uring_prep_accept(sqe, ls->fd, NULL, NULL, SOCK_CLOEXEC);
	loop_bind(ls->l, sqe, &ls->op);
	ls->armed = 1;
}

int listen_open(struct listener *ls, struct loop *l, const char *host, uint16_t port,
                void (*on_accept)(struct listener *ls, int fd), void *ud, struct mf_error *err)
{
	struct sockaddr_storage ss;
	socklen_t slen;
	int one = 1, fd, e;

	memset(ls, 0, sizeof(*ls));
	ls->fd = -1;
	memset(&ss, 0, sizeof(ss));
	if (!host || !*host)
		host = "127.0.0.1";
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
		slen = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
		slen = sizeof(struct sockaddr_in6);
	} else {
		mf_err_set(err, -EINVAL, "listen %s: not an IP address", host);
		return -EINVAL;
	}
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		e = -errno;
		mf_err_set(err, e, "listen %s:%u: socket: %s", host, port, strerror(-e));
		return e;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, slen) < 0 || listen(fd, 128) < 0) {
		e = -errno;
		close(fd);
		mf_err_set(err, e, "listen %s:%u: %s", host, port, strerror(-e));
		return e;
	}
	ls->l = l;
	ls->fd = fd;
	ls->on_accept = on_accept;
	ls->ud = ud;
	ls->op.cb = on_accept_done;
	accept_arm(ls);
	return 0;
}

uint16_t listen_port(const struct listener *ls)
{
	struct sockaddr_storage ss;
	socklen_t slen = sizeof(ss);

	if (ls->fd < 0 || getsockname(ls->fd, (struct sockaddr *)&ss, &slen) < 0)
		return 0;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void listen_close(struct listener *ls)
{
	struct io_uring_sqe *sqe;

	if (ls->closed || ls->fd < 0)
		return;
	ls->closed = 1;
	if (ls->armed) {
		sqe = loop_sqe(ls->l);
		io_uring_prep_cancel(sqe, &ls->op, 0);
		loop_bind_ignore(ls->l, sqe);
	}
	/* the accept in flight holds its own reference to the file */
	close(ls->fd);
	ls->fd = -1;
}

int listen_busy(const struct listener *ls)
{
	return ls->armed;
}

/* ---- accepted streams ------------------------------------------------------ */

static void sconn_maybe_closed(struct sconn *s)
{
	if (s->closed == 1 && !s->r.busy && !s->w.busy) {
		s->closed = 2;
		s->on_closed(s);
	}
}

static void sconn_done(struct loop *l, struct loop_op *op, int res, unsigned flags)
{
	struct sconn_op *o = (struct sconn_op *)op;
	struct sconn *s = o->s;

	(void)l;
	(void)flags;
	o->busy = 0;
	if (s->closed) {
		sconn_maybe_closed(s);
		return;
	}
	if (o == &s->r)
		s->on_recv(s, res);
	else
		s->on_sent(s, res);
}

void sconn_init(struct sconn *s, struct loop *l, int fd)
{
	s->l = l;
	s->fd = fd;
	s->closed = 0;
	s->r.op.cb = s->w.op.cb = sconn_done;
	s->r.s = s->w.s = s;
	s->r.busy = s->w.busy = 0;
}

void sconn_recv(struct sconn *s, void *buf, size_t n)
{
	struct io_uring_sqe *sqe = loop_sqe(s->l);

	io_uring_prep_recv(sqe, s->fd, buf, n, 0);
	loop_bind(s->l, sqe, &s->r.op);
	s->r.busy = 1;
}

void sconn_send(struct sconn *s, const void *buf, size_t n)
{
	struct io_uring_sqe *sqe = loop_sqe(s->l);

	io_uring_prep_send(sqe, s->fd, buf, n, MSG_NOSIGNAL);
	loop_bind(s->l, sqe, &s->w.op);
	s->w.busy = 1;
}

static void cancel_op(struct sconn *s, struct sconn_op *o)
{
	struct io_uring_sqe *sqe;

	if (!o->busy)
		return;
	sqe = loop_sqe(s->l);
	io_uring_prep_cancel(sqe, &o->op, 0);
	loop_bind_ignore(s->l, sqe);
}

void sconn_close(struct sconn *s)
{
	if (s->closed)
		return;
	s->closed = 1;
	cancel_op(s, &s->r);
	cancel_op(s, &s->w);
	/* shutdown wakes a recv the cancel may miss (already running) */
	shutdown(s->fd, SHUT_RDWR);
	close(s->fd);
	s->fd = -1;
	if (!s->r.busy && !s->w.busy) {
		/* nothing in flight: a no-op whose completion reports the close */
		struct io_uring_sqe *sqe = loop_sqe(s->l);

		io_uring_prep_nop(sqe);
		loop_bind(s->l, sqe, &s->r.op);
		s->r.busy = 1;
	}
}
