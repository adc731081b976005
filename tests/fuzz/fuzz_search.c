/*
 * fuzz_search — libFuzzer target for the search-key validator
 * (engine/sync/filter.c, what --search goes through before UID SEARCH).
 *
 * Whatever the input, an accepted search's canonical form must be safe on
 * a command line (printable ASCII only: no CR, LF, NUL, no '{' outside a
 * quoted string, so never a literal), must have balanced parentheses and
 * quotes, and must come back unchanged when validated again (idempotent),
 * so the filter's identity in the state is stable. Date and size parsers
 * are fed the same bytes.
 */
#include "engine/sync/filter.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_line(const char *s, size_t n)
{
	int depth = 0, quoted = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c > 0x7e)
			abort();
		if (quoted) {
			if (c == '\\')
				i++;
			else if (c == '"')
				quoted = 0;
			continue;
		}
		if (c == '"')
			quoted = 1;
		else if (c == '{')
			abort();
		else if (c == '(')
			depth++;
		else if (c == ')' && --depth < 0)
			abort();
	}
	if (depth || quoted)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char out[FILTER_MAX], again[FILTER_MAX], str[FILTER_SEARCH_MAX + 1];
	char d[FILTER_DATE_LEN + 1];
	struct mf_error e;
	uint32_t v;
	int n, m;

	n = filter_search((const char *)data, size, out, sizeof(out), &e);
	if (n >= 0) {
		if ((size_t)n != strlen(out))
			abort();
		check_line(out, (size_t)n);
		m = filter_search(out, (size_t)n, again, sizeof(again), &e);
		if (m != n || memcmp(out, again, (size_t)n)) {
			fprintf(stderr, "not idempotent: \"%s\" -> \"%s\"\n", out, again);
			abort();
		}
	} else if (strchr(e.msg, '\n') || strchr(e.msg, '\r')) {
		abort();
	}
	if (filter_date((const char *)data, size, d, &v, &e) == 0 && strlen(d) > FILTER_DATE_LEN)
		abort();
	if (size <= FILTER_SEARCH_MAX && !memchr(data, 0, size)) {
		memcpy(str, data, size);
		str[size] = '\0';
		filter_size(str, &v, &e);
	}
	return 0;
}
