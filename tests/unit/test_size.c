/*
 * test_size — engine/base/size.c: byte counts with k/M/G suffixes as the
 * options take them (--max-bytes-per-second, --larger, --smaller): exact
 * values, the boundaries of a range, numbers far too large for 64 bits
 * (refused, never wrapped into range) and junk.
 */
#include "engine/base/size.h"
#include "tests/unit/unit.h"

#include <errno.h>
#include <stdint.h>

static int parse(const char *s, uint64_t max, uint64_t *v)
{
	return size_parse(s, strlen(s), max, v);
}

static void t_values(struct unit_ctx *u)
{
	uint64_t v;

	UNIT_CHECK(u, parse("0", 10, &v) == 0 && v == 0);
	UNIT_CHECK(u, parse("1500", UINT64_MAX, &v) == 0 && v == 1500);
	UNIT_CHECK(u, parse("007", UINT64_MAX, &v) == 0 && v == 7);
	UNIT_CHECK(u, parse("20k", UINT64_MAX, &v) == 0 && v == 20480);
	UNIT_CHECK(u, parse("20K", UINT64_MAX, &v) == 0 && v == 20480);
	UNIT_CHECK(u, parse("3M", UINT64_MAX, &v) == 0 && v == 3145728);
	UNIT_CHECK(u, parse("3m", UINT64_MAX, &v) == 0 && v == 3145728);
	UNIT_CHECK(u, parse("5g", UINT64_MAX, &v) == 0 && v == (uint64_t)5 << 30);
	UNIT_CHECK(u, parse("0G", UINT64_MAX, &v) == 0 && v == 0);
	/* the largest 64-bit value, and with a suffix the largest multiple */
	UNIT_CHECK(u, parse("18446744073709551615", UINT64_MAX, &v) == 0 && v == UINT64_MAX);
	UNIT_CHECK(u,
	           parse("17179869183G", UINT64_MAX, &v) == 0 && v == (uint64_t)17179869183u << 30);
}

static void t_range(struct unit_ctx *u)
{
	uint64_t v = 42;

	/* --max-bytes-per-second's ceiling, 2^40 = 1024G, is in; one more is not */
	UNIT_CHECK(u, parse("1024G", (uint64_t)1 << 40, &v) == 0 && v == (uint64_t)1 << 40);
	UNIT_CHECK(u, parse("1099511627776", (uint64_t)1 << 40, &v) == 0);
	UNIT_CHECK(u, parse("1099511627777", (uint64_t)1 << 40, &v) == -ERANGE);
	UNIT_CHECK(u, parse("1025G", (uint64_t)1 << 40, &v) == -ERANGE);
	/* --larger's ceiling, 4G-1 */
	UNIT_CHECK(u, parse("4294967295", UINT32_MAX, &v) == 0 && v == UINT32_MAX);
	UNIT_CHECK(u, parse("4G", UINT32_MAX, &v) == -ERANGE);
	UNIT_CHECK(u, parse("4194304k", UINT32_MAX, &v) == -ERANGE);
	UNIT_CHECK(u, parse("4194303k", UINT32_MAX, &v) == 0 && v == 4194303u * 1024u);
	/* overflow: 64 bits wrapped would land in range; it must not */
	v = 42;
	UNIT_CHECK(u, parse("18446744073709551616", UINT64_MAX, &v) == -ERANGE && v == 42);
	UNIT_CHECK(u, parse("99999999999999999999", UINT64_MAX, &v) == -ERANGE);
	UNIT_CHECK(u, parse("17179869184G", UINT64_MAX, &v) == -ERANGE);
	UNIT_CHECK(u, parse("999999999999G", (uint64_t)1 << 40, &v) == -ERANGE);
	/* (2^34 + 1) G wraps to exactly 1 GiB: cli.c's own parser took it as
	 * --max-bytes-per-second 1G before size_parse */
	UNIT_CHECK(u, parse("17179869185G", (uint64_t)1 << 40, &v) == -ERANGE && v == 42);
	/* 16384G is 2^44: wrapped through 32 bits it would be 0 */
	UNIT_CHECK(u, parse("16384G", (uint64_t)1 << 40, &v) == -ERANGE && v == 42);
	UNIT_CHECK(u, parse("1", 0, &v) == -ERANGE);
	UNIT_CHECK(u, parse("0", 0, &v) == 0 && v == 0);
}

static void t_junk(struct unit_ctx *u)
{
	uint64_t v = 42;
	static const char *const bad[] = {"",
	                                  "k",
	                                  "M",
	                                  "-1",
	                                  "+1",
	                                  "1.5k",
	                                  "12kb",
	                                  " 1",
	                                  "1 ",
	                                  "0x10",
	                                  "1T",
	                                  "1e6",
	                                  "1kk",
	                                  "k1",
	                                  "1\n",
	                                  "1,000",
	                                  "\xff",
	                                  "1K\r",
	                                  "１", /* fullwidth */
	                                  "123456789012345678901"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		UNIT_CHECKF(u, parse(bad[i], UINT64_MAX, &v) == -EINVAL && v == 42,
		            "\"%s\" not refused as junk", bad[i]);
	/* a NUL inside the given length is junk, not the end */
	UNIT_CHECK(u, size_parse("1\0"
	                         "00",
	                         4, UINT64_MAX, &v) == -EINVAL);
	/* only n bytes are read */
	UNIT_CHECK(u, size_parse("12k9", 3, UINT64_MAX, &v) == 0 && v == 12288);
	UNIT_CHECK(u, size_parse(NULL, 0, UINT64_MAX, &v) == -EINVAL);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_values);
	UNIT_RUN(&u, t_range);
	UNIT_RUN(&u, t_junk);
	return unit_done(&u);
}
