/* outring — a connection's unsent output, sent from in place (see outring.h). */
#include "engine/runtime/outring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int outring_init(struct outring *r, size_t cap)
{
	memset(r, 0, sizeof(*r));
	if (!(r->buf = malloc(cap)))
		return -ENOMEM;
	r->cap = cap;
	return 0;
}

void outring_free(struct outring *r)
{
	free(r->buf);
	free(r->old);
	r->buf = r->old = NULL;
}

size_t outring_seg(const struct outring *r)
{
	return r->n < r->cap - r->head ? r->n : r->cap - r->head;
}

void outring_take(struct outring *r, size_t n)
{
	r->n -= n;
	r->head = r->n ? (r->head + n) % r->cap : 0;
}

void outring_sent(struct outring *r, long res)
{
	free(r->old); /* the send that read it is over */
	r->old = NULL;
	if (res > 0)
		outring_take(r, (size_t)res < r->infl ? (size_t)res : r->infl);
	r->infl = 0;
}

int outring_put(struct outring *r, const void *p, size_t n)
{
	size_t at, k;

	if (n > r->cap - r->n) {
		/* grow: the pending bytes, in order, to the front of a new buffer */
		size_t cap = r->cap * 2 > r->n + n ? r->cap * 2 : r->n + n;
		uint8_t *nb = malloc(cap);

		if (!nb)
			return -ENOMEM;
		k = outring_seg(r);
		memcpy(nb, r->buf + r->head, k);
		memcpy(nb + k, r->buf, r->n - k);
		if (r->infl && !r->old)
			r->old = r->buf; /* a send in flight reads it */
		else
			free(r->buf);
		r->buf = nb;
		r->cap = cap;
		r->head = 0;
	}
	at = (r->head + r->n) % r->cap;
	k = r->cap - at < n ? r->cap - at : n;
	memcpy(r->buf + at, p, k);
	memcpy(r->buf, (const uint8_t *)p + k, n - k);
	r->n += n;
	return 0;
}
