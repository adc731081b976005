/*
 * fuzz_mailhdr — libFuzzer target for protocols/mailhdr.c.
 *
 * The input is a message prefix. The header's end must lie inside it and
 * end in LF; a Return-Path taken must be NUL-terminated, shorter than the
 * buffer, and free of blanks, controls, '<' and '>' (it goes on an SMTP
 * command line); the same input split anywhere must not read past its end
 * (ASan checks the copy at the exact length). Display text (Subject, From)
 * must be NUL-terminated, well-formed UTF-8 without controls (C0, DEL,
 * C1), within MAILHDR_TEXT_CHARS characters plus "...", also when the
 * output buffer is small.
 */
#include "protocols/mailhdr.h"

#include "engine/base/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "mailhdr: %s\n", what);
		abort();
	}
}

static void check_text(const uint8_t *p, size_t size, const char *name, size_t cap)
{
	char *t = malloc(cap);
	size_t n, chars = 0;
	int rc;

	if (!t)
		abort();
	memset(t, 'x', cap);
	rc = mailhdr_field_text(p, size, name, t, cap);
	check(rc == 0 || rc == 1, "text return code");
	n = strnlen(t, cap);
	check(n < cap, "text not NUL-terminated");
	for (size_t i = 0; i < n;) {
		unsigned long cp;
		size_t k = mf_utf8_len((const unsigned char *)t + i, n - i, &cp);

		check(k > 0, "text not UTF-8");
		check(cp >= 0x20 && cp != 0x7f && !(cp >= 0x80 && cp < 0xa0), "control in text");
		i += k;
		chars++;
	}
	check(chars <= MAILHDR_TEXT_CHARS + 3, "text too long");
	free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *p = malloc(size ? size : 1);
	char out[64];
	size_t e;
	int rc;

	if (!p)
		abort();
	memcpy(p, data, size);
	e = mailhdr_end(p, size);
	check(e <= size, "end beyond the input");
	check(!e || p[e - 1] == '\n', "end not after LF");
	memset(out, 'x', sizeof(out));
	rc = mailhdr_return_path(p, e ? e : size, out, sizeof(out));
	check(rc >= -1 && rc <= 1, "return code");
	if (rc == 1) {
		size_t n = strnlen(out, sizeof(out));

		check(n < sizeof(out), "address not NUL-terminated");
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)out[i];

			check(c > 0x20 && c != 0x7f && c != '<' && c != '>', "bad byte in address");
		}
		check(!n || strchr(out, '@'), "address without @");
	}
	(void)mailhdr_has_utf8(p, size);
	check_text(p, size, "subject", MAILHDR_TEXT_CHARS * 4 + 4);
	check_text(p, size, "from", 1 + size % 40);
	free(p);
	return 0;
}
