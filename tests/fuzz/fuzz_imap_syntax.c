/*
 * fuzz_imap_syntax — libFuzzer target for protocols/imap_syntax.c and the
 * log escaping in engine/err.c.
 *
 * Whatever the date parser accepts must format to 26 safe characters that
 * parse back to the same fields; whatever is classed a keyword or a
 * mailbox name must be free of the bytes that would end or break a
 * command line; mf_escape's output must be valid UTF-8 without control
 * bytes, and escaping it again must change nothing.
 */
#include "engine/base/err.h"
#include "protocols/imap_syntax.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "imap_syntax: %s\n", what);
	abort();
}

static void check_date(const char *s, size_t n)
{
	struct imap_date d, d2;
	char out[IMAP_DATE_LEN + 1];

	if (imap_date_parse(s, n, &d) < 0)
		return;
	if (imap_date_format(&d, out) != IMAP_DATE_LEN || strlen(out) != IMAP_DATE_LEN)
		fail("format length");
	for (size_t i = 0; i < IMAP_DATE_LEN; i++)
		if (out[i] < ' ' || out[i] > '~' || out[i] == '"' || out[i] == '\\')
			fail("format: unsafe byte");
	if (imap_date_parse(out, IMAP_DATE_LEN, &d2) < 0 || memcmp(&d, &d2, sizeof(d)))
		fail("format does not parse back to the same date");
	(void)imap_date_unix(&d);
}

static void check_flag(const char *s, size_t n)
{
	const char *canon;
	enum imap_flag_kind k = imap_flag_classify(s, n, &canon);

	if (k == IMAP_FLAG_SYSTEM && (!canon || strlen(canon) != n))
		fail("system flag without its table spelling");
	if (k == IMAP_FLAG_KEYWORD) {
		if (!n)
			fail("empty keyword");
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f ||
			    strchr("(){%*\"\\]", s[i]))
				fail("keyword with a byte outside ATOM-CHAR");
	}
}

static void check_escape(const char *s, size_t n)
{
	size_t cap = 4 * n + 8;
	char *a = malloc(cap), *b = malloc(cap);
	size_t m, m2;

	if (!a || !b)
		abort();
	m = mf_escape(s, n, a, cap);
	if (m >= cap || a[m] != '\0' || strlen(a) != m)
		fail("escape: length");
	for (size_t i = 0; i < m;) {
		unsigned long cp;
		size_t k = mf_utf8_len((const unsigned char *)a + i, m - i, &cp);

		if (!k)
			fail("escape: invalid UTF-8 out");
		if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f))
			fail("escape: control character out");
		i += k;
	}
	m2 = mf_escape(a, m, b, cap);
	if (m2 != m || memcmp(a, b, m))
		fail("escape: not idempotent");
	/* a small buffer: still NUL-terminated, never longer */
	m2 = mf_escape(s, n, b, 7);
	if (m2 > 6 || b[m2] != '\0' || memcmp(a, b, m2))
		fail("escape: short buffer");
	free(a);
	free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;

	check_date(s, size);
	check_flag(s, size);
	if (!imap_mailbox_name_bad(s, size) &&
	    (!size || memchr(s, '\0', size) || memchr(s, '\r', size) || memchr(s, '\n', size)))
		fail("mailbox name with NUL, CR or LF accepted");
	check_escape(s, size);
	return 0;
}
