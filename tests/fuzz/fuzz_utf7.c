/*
 * fuzz_utf7 — libFuzzer target for protocols/utf7.c.
 *
 * Decodes arbitrary bytes as a modified UTF-7 mailbox name. The decoder
 * accepts only canonical forms, so whatever it accepts must encode back to
 * exactly the input; the input is also encoded as UTF-8 and, when that
 * succeeds, decoded back. Small output buffers exercise -ENOSPC.
 */
#include "protocols/utf7.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "utf7: %s\n", what);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	size_t cap = 4 * size + 16;
	char *a = malloc(cap), *b = malloc(cap);
	ssize_t r, r2;

	if (!a || !b)
		abort();
	r = utf7_decode(in, size, a, cap);
	if (r >= 0) {
		if (a[r] != '\0')
			fail("decode: no NUL");
		r2 = utf7_encode(a, (size_t)r, b, cap);
		if (r2 != (ssize_t)size || memcmp(b, in, size))
			fail("decode accepted a form encode does not produce");
		/* exactly r + 1 bytes is enough, r is not */
		if (utf7_decode(in, size, b, (size_t)r + 1) != r || memcmp(a, b, (size_t)r + 1))
			fail("decode with exact cap");
		if (utf7_decode(in, size, b, (size_t)r) != -ENOSPC)
			fail("decode: ENOSPC");
	} else if (r != -EINVAL) {
		fail("decode: unexpected error");
	}
	r = utf7_encode(in, size, a, cap);
	if (r >= 0) {
		for (ssize_t k = 0; k < r; k++)
			if (a[k] < 0x20 || a[k] > 0x7e)
				fail("encode: not printable ASCII");
		r2 = utf7_decode(a, (size_t)r, b, cap);
		if (r2 != (ssize_t)size || memcmp(b, in, size))
			fail("encode then decode is not the identity");
		if (utf7_encode(in, size, b, (size_t)r) != -ENOSPC)
			fail("encode: ENOSPC");
	} else if (r != -EINVAL) {
		fail("encode: unexpected error");
	}
	free(a);
	free(b);
	return 0;
}
