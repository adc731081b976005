/*
 * fuzz_size — libFuzzer target for size_parse (engine/base/size.c), the
 * parser behind --max-bytes-per-second, --larger and --smaller.
 *
 * The first 8 bytes choose the maximum, the rest is the argument. What is
 * accepted must be at most the maximum, and written back in plain digits
 * (and with the suffix the input had, when the value divides by it) must
 * parse to the same value; what is refused must leave the output alone.
 * An unlimited maximum refuses no plain number of up to 19 digits as out
 * of range.
 */
#include "engine/base/size.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t max, v = 0x5a5a5a5a5a5a5a5aull, w, mul;
	char back[32];
	const char *s;
	int rc, n;

	if (size < 8)
		return 0;
	memcpy(&max, data, 8);
	s = (const char *)data + 8;
	size -= 8;
	rc = size_parse(s, size, max, &v);
	if (rc < 0) {
		if ((rc != -EINVAL && rc != -ERANGE) || v != 0x5a5a5a5a5a5a5a5aull)
			abort();
		/* 19 digits without a suffix always fit in 64 bits */
		if (rc == -ERANGE && max == UINT64_MAX && size < 20 && s[size - 1] >= '0' &&
		    s[size - 1] <= '9')
			abort();
		return 0;
	}
	if (v > max)
		abort();
	n = snprintf(back, sizeof(back), "%llu", (unsigned long long)v);
	if (size_parse(back, (size_t)n, max, &w) != 0 || w != v)
		abort();
	switch (s[size - 1]) {
	case 'k':
	case 'K':
		mul = 1024;
		break;
	case 'm':
	case 'M':
		mul = 1024 * 1024;
		break;
	case 'g':
	case 'G':
		mul = 1024 * 1024 * 1024;
		break;
	default:
		mul = 1;
		break;
	}
	if (mul > 1) {
		n = snprintf(back, sizeof(back), "%llu%c", (unsigned long long)(v / mul),
		             s[size - 1]);
		if (size_parse(back, (size_t)n, max, &w) != 0 || w != v)
			abort();
	}
	return 0;
}
