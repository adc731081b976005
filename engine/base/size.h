/*
 * size — a byte count as people type it on a command line: decimal digits
 * with an optional k, M or G (binary: 1024, 1024², 1024³; either case).
 * One parser for every option that takes one (--larger/--smaller through
 * filter_size, --max-bytes-per-second in cli.c).
 *
 * Pure: no I/O, no allocation, no locale; the input is (p, n), not a C
 * string, so a NUL inside is junk like any other byte. Fuzzed by
 * tests/fuzz/fuzz_size.c, edge cases in tests/unit/test_size.c.
 *
 * Not for: the messages a caller prints about a bad value (each option
 * words its own range).
 */
#ifndef MF_SIZE_H
#define MF_SIZE_H

#include <stddef.h>
#include <stdint.h>

/* Digits before the suffix, at most: more is refused as junk, not
 * wrapped (the largest value any caller takes, 2^40, needs 13). */
#define SIZE_DIGITS_MAX 20

/* p[0..n): digits, then at most one of kKmMgG, nothing else (no sign,
 * blank, "0x", fraction or second suffix). 0 and *out = the value when it
 * is at most max; -ERANGE when it is well formed but above max (however
 * large: the arithmetic never wraps); -EINVAL otherwise. *out is
 * untouched on failure. */
int size_parse(const char *p, size_t n, uint64_t max, uint64_t *out);

#endif
