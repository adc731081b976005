/*
 * fuzz_restore_date — libFuzzer target for restore_parse_date (the
 * --since/--before/--as-of dates of `mailferry restore`, cli/restore_cmd.c).
 *
 * The input is one argument. Whatever is accepted in the calendar form
 * must be a real instant whose own calendar form (written from gmtime)
 * parses back to the same seconds; "@N" must give N.
 */
#include "engine/cli/cli_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[64], back[64];
	int64_t t, t2;
	struct tm tm;
	time_t tt;

	if (size >= sizeof(s))
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (restore_parse_date(s, &t) < 0)
		return 0;
	if (s[0] == '@') {
		if (strtoll(s + 1, NULL, 10) != t)
			abort();
		return 0;
	}
	tt = (time_t)t;
	if (!gmtime_r(&tt, &tm))
		abort();
	snprintf(back, sizeof(back), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (restore_parse_date(back, &t2) < 0 || t2 != t) {
		fprintf(stderr, "\"%s\" -> %lld -> \"%s\"\n", s, (long long)t, back);
		abort();
	}
	return 0;
}
