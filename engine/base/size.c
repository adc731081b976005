/*
 * size — parses a byte count with an optional binary suffix (size.h).
 * Overflow is checked at every step, so "99999999999999999999G" is out of
 * range rather than a small number after wrapping.
 *
 * Not for: ranges and wording of a particular option (their callers).
 */
#include "engine/base/size.h"

#include <errno.h>

int size_parse(const char *p, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0, mul = 1;
	int over = 0;

	if (n) {
		switch (p[n - 1]) {
		case 'k':
		case 'K':
			mul = (uint64_t)1 << 10;
			break;
		case 'm':
		case 'M':
			mul = (uint64_t)1 << 20;
			break;
		case 'g':
		case 'G':
			mul = (uint64_t)1 << 30;
			break;
		default:
			break;
		}
		if (mul > 1)
			n--;
	}
	if (!n || n > SIZE_DIGITS_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned d;

		if (p[i] < '0' || p[i] > '9')
			return -EINVAL;
		d = (unsigned)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			over = 1;
		else
			v = v * 10 + d;
	}
	if (over || v > max / mul)
		return -ERANGE;
	*out = v * mul;
	return 0;
}
