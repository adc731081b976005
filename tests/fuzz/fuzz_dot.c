/*
 * fuzz_dot — libFuzzer target for protocols/dot.c.
 *
 * The first byte picks a split point. The rest is a message: stuffed in two
 * pieces and then unstuffed in two other pieces, it must come back exactly
 * (plus the CRLF a message without one gains), with the terminator ending
 * the stream. The same bytes fed to the unstuffer as if a server sent them
 * must never emit more than they hold, and never consume past a terminator.
 */
#include "protocols/dot.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct buf {
	char *b;
	size_t n, cap;
};

static int to_buf(void *ctx, const char *p, size_t n)
{
	struct buf *s = ctx;

	if (s->n + n > s->cap)
		abort();
	memcpy(s->b + s->n, p, n);
	s->n += n;
	return 0;
}

static void fail(const char *what)
{
	fprintf(stderr, "dot: %s\n", what);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t cut = data[0], n = size - 1;
	const char *in = (const char *)data + 1;
	struct buf s = {malloc(2 * n + 8), 0, 2 * n + 8}, o = {malloc(n + 8), 0, n + 8};
	struct dot_stuff st;
	struct dot_unstuff un;
	long a, b = 0;

	if (!s.b || !o.b)
		abort();
	cut = n ? cut % (n + 1) : 0;
	dot_stuff_init(&st);
	if (dot_stuff_feed(&st, in, cut, to_buf, &s) || dot_stuff_feed(&st, in + cut, n - cut, to_buf, &s) ||
	    dot_stuff_end(&st, to_buf, &s))
		fail("stuff");
	size_t c2 = s.n / 2 + cut % 3;
	if (c2 > s.n)
		c2 = s.n;
	dot_unstuff_init(&un);
	a = dot_unstuff_feed(&un, s.b, c2, to_buf, &o);
	if (a != (long)c2 && !dot_unstuff_done(&un))
		fail("unstuff stopped early");
	if (a == (long)c2 && !dot_unstuff_done(&un))
		b = dot_unstuff_feed(&un, s.b + c2, s.n - c2, to_buf, &o);
	if (a < 0 || b < 0 || (size_t)(a + b) != s.n || !dot_unstuff_done(&un))
		fail("terminator not at the end");
	int crlf = n >= 2 && in[n - 2] == '\r' && in[n - 1] == '\n';
	if (o.n != n + (crlf ? 0 : 2) || memcmp(o.b, in, n))
		fail("round trip");

	/* raw server bytes */
	o.n = 0;
	dot_unstuff_init(&un);
	a = dot_unstuff_feed(&un, in, n, to_buf, &o);
	if (a < 0 || (size_t)a > n || o.n > (size_t)a)
		fail("unstuff raw");
	if (dot_unstuff_done(&un) && (a < 3 || memcmp(in + a - 3, ".\r\n", 3)))
		fail("done without terminator");
	free(s.b);
	free(o.b);
	return 0;
}
