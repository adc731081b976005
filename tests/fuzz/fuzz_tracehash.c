/*
 * fuzz_tracehash — libFuzzer target for store/tracehash.c.
 *
 * The input is a delivered message as an IMAP server might send it. Its
 * first byte picks a split point. Checked: no read past the input (ASan,
 * each chunk copied at its exact length); at most 2 * TRACEHASH_MAX
 * digests; the same digests whatever the split; the input's own folded
 * digest always among them, and still among them under one more trace
 * field put on top (unless the input starts with a blank, which makes
 * its first line a continuation of that field).
 */
#include "store/tracehash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "tracehash: %s\n", what);
		abort();
	}
}

static size_t run(const uint8_t *p, size_t n, size_t cut, uint8_t out[][32])
{
	struct tracehash t;
	uint8_t *a = malloc(cut ? cut : 1), *b = malloc(n - cut ? n - cut : 1);
	size_t k;

	check(a && b, "out of memory");
	memcpy(a, p, cut);
	memcpy(b, p + cut, n - cut);
	tracehash_begin(&t);
	tracehash_update(&t, a, cut);
	tracehash_update(&t, b, n - cut);
	k = tracehash_end(&t, out);
	tracehash_free(&t);
	free(a);
	free(b);
	check(k >= 1 && k <= 2 * TRACEHASH_MAX, "digest count");
	return k;
}

static int has(uint8_t d[][32], size_t k, const uint8_t want[32])
{
	for (size_t i = 0; i < k; i++)
		if (!memcmp(d[i], want, 32))
			return 1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char top[] = "Received: from fuzz\r\n";
	uint8_t one[2 * TRACEHASH_MAX][32], two[2 * TRACEHASH_MAX][32], self[32];
	size_t cut, k1, k2;
	uint8_t *m;
	struct msghash h;

	if (!size)
		return 0;
	cut = data[0] % size;
	data++, size--;
	if (cut > size)
		cut = size;
	msghash_init(&h);
	msghash_begin(&h);
	msghash_update(&h, data, size);
	msghash_end(&h, NULL, self);
	k1 = run(data, size, 0, one);
	k2 = run(data, size, cut, two);
	check(k1 == k2 && !memcmp(one, two, k1 * 32), "digests differ by split");
	check(has(one, k1, self), "the message itself not among its digests");
	if (size && data[0] != ' ' && data[0] != '\t') {
		m = malloc(sizeof(top) - 1 + size);
		check(m != NULL, "out of memory");
		memcpy(m, top, sizeof(top) - 1);
		memcpy(m + sizeof(top) - 1, data, size);
		k1 = run(m, sizeof(top) - 1 + size, cut, one);
		check(has(one, k1, self), "not found under a Received field");
		free(m);
	}
	return 0;
}
