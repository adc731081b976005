/* Unit tests for mailhdr: the header's end, the Return-Path address (and
 * the ones refused), UTF-8 in a header. */
#include "protocols/mailhdr.h"
#include "tests/unit/unit.h"

#include <string.h>

#define B(s) (const uint8_t *)(s), sizeof(s) - 1

static void test_end(struct unit_ctx *u)
{
	UNIT_CHECK(u, mailhdr_end(B("A: 1\r\nB: 2\r\n\r\nbody")) == 14);
	UNIT_CHECK(u, mailhdr_end(B("A: 1\nB: 2\n\nbody")) == 11);
	UNIT_CHECK(u, mailhdr_end(B("\r\nbody")) == 2);
	UNIT_CHECK(u, mailhdr_end(B("\nbody")) == 1);
	UNIT_CHECK(u, mailhdr_end(B("A: 1\r\nB: 2\r\n")) == 0);
	UNIT_CHECK(u, mailhdr_end(B("A: 1\r\n\r")) == 0);
	UNIT_CHECK(u, mailhdr_end(B("")) == 0);
}

static void test_return_path(struct unit_ctx *u)
{
	static const struct {
		const char *hdr;
		int rc;
		const char *addr;
	} cases[] = {
	    {"Return-Path: <a@example.org>\r\nFrom: x\r\n\r\n", 1, "a@example.org"},
	    {"From: x\r\nreturn-path:<b@example.org>  \r\n\r\n", 1, "b@example.org"},
	    {"Return-Path:\r\n <folded@example.org>\r\n\r\n", 1, "folded@example.org"},
	    {"Return-Path : <spaced@example.org>\n\n", 1, "spaced@example.org"},
	    {"Return-Path: <>\r\n\r\n", 1, ""},
	    {"Return-Path: bare@example.org\r\n\r\n", 1, "bare@example.org"},
	    {"Return-Path: <jürgen@exämple.org>\r\n\r\n", 1, "jürgen@exämple.org"},
	    {"From: x\r\n\r\nReturn-Path: <in-body@example.org>\r\n", 0, ""},
	    {"X-Return-Path: <no@example.org>\r\n\r\n", 0, ""},
	    {"Return-Paths: <no@example.org>\r\n\r\n", 0, ""},
	    {"Return-Path: <a b@example.org>\r\n\r\n", -1, ""},
	    {"Return-Path: <noat>\r\n\r\n", -1, ""},
	    {"Return-Path: <a@b\r\n\r\n", -1, ""},
	    {"Return-Path: <a@b> (comment)\r\n\r\n", -1, ""},
	    {"Return-Path: <a@b\x01>\r\n\r\n", -1, ""},
	    {"Return-Path: <a@\xff\xfe>\r\n\r\n", -1, ""},
	    {"Return-Path: <x@y>\r\nReturn-Path: <second@y>\r\n\r\n", 1, "x@y"},
	};
	char out[600];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = mailhdr_return_path((const uint8_t *)cases[i].hdr, strlen(cases[i].hdr), out,
		                             sizeof(out));

		UNIT_CHECKF(u, rc == cases[i].rc && (rc != 1 || !strcmp(out, cases[i].addr)),
		            "case %zu: rc %d, \"%s\"", i, rc, out);
	}
	/* longer than the caller's buffer, or than SMTP takes */
	UNIT_CHECK(u, mailhdr_return_path(B("Return-Path: <abcdef@example.org>\r\n"), out, 8) == -1);
	{
		char big[700] = "Return-Path: <";
		size_t n = strlen(big);

		memset(big + n, 'a', 600);
		memcpy(big + n + 600, "@b>\r\n", 6);
		UNIT_CHECK(u, mailhdr_return_path((const uint8_t *)big, strlen(big), out,
		                                  sizeof(out)) == -1);
	}
}

static void test_utf8(struct unit_ctx *u)
{
	UNIT_CHECK(u, mailhdr_has_utf8(B("Subject: Grüße\r\n")));
	UNIT_CHECK(u, !mailhdr_has_utf8(B("Subject: plain\r\n")));
	UNIT_CHECK(u, !mailhdr_has_utf8(B("X-Latin1: caf\xe9\r\n")));
	UNIT_CHECK(u, !mailhdr_has_utf8(B("X-Overlong: \xc0\xaf\r\n")));
	UNIT_CHECK(u, mailhdr_has_utf8(B("X: \xe9 and \xe2\x82\xac\r\n")));
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, test_end);
	UNIT_RUN(&u, test_return_path);
	UNIT_RUN(&u, test_utf8);
	return unit_done(&u);
}
