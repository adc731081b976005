/*
 * outring — a connection's output bytes not yet sent: a ring the kernel
 * sends from directly (see conn.c).
 *
 * Bytes are copied in once (outring_put) and leave from the front
 * (outring_take). A send in flight reads the first `infl` bytes in place,
 * so nothing here ever moves them: writes wrap around behind them, and a
 * ring that must grow while a send is in flight is copied into a bigger
 * buffer while the old one is kept (`old`) until outring_sent says that
 * send is over. Not for: TLS records (conn.c encrypts from the front).
 */
#ifndef MF_OUTRING_H
#define MF_OUTRING_H

#include <stddef.h>
#include <stdint.h>

struct outring {
	uint8_t *buf, *old;	/* old: the buffer a send in flight still reads */
	size_t cap, head, n;	/* n bytes from head, wrapping at cap */
	size_t infl;		/* the first infl of them: a send in flight */
};

int outring_init(struct outring *r, size_t cap);	/* 0 or -ENOMEM */
void outring_free(struct outring *r);
int outring_put(struct outring *r, const void *p, size_t n); /* 0 or -ENOMEM */
/* The first contiguous run of pending bytes: buf + head, this long. */
size_t outring_seg(const struct outring *r);
void outring_take(struct outring *r, size_t n);
/* The send in flight is over, res bytes of it sent (res < 0: none). */
void outring_sent(struct outring *r, long res);

#endif
