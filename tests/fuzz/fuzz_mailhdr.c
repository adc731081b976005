/*
 * fuzz_mailhdr — libFuzzer target for protocols/mailhdr.c.
 *
 * The input is a message prefix. The header's end must lie inside it and
 * end in LF; a Return-Path taken must be NUL-terminated, shorter than the
 * buffer, and free of blanks, controls, '<' and '>' (it goes on an SMTP
 * command line); the same input split anywhere must not read past its end
 * (ASan checks the copy at the exact length).
 */
#include "protocols/mailhdr.h"

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
	free(p);
	return 0;
}
