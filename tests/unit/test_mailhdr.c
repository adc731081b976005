/* Unit tests for mailhdr: the header's end, the Return-Path address (and
 * the ones refused), UTF-8 in a header, display text of Subject and From
 * (RFC 2047 words, hostile bytes, the length cap). */
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

static void test_field_text(struct unit_ctx *u)
{
	static const struct {
		const char *hdr, *name;
		int rc;
		const char *text;
	} cases[] = {
	    {"From: a\r\nSubject: Hello  world\r\n\r\n", "subject", 1, "Hello world"},
	    {"subject:\r\n folded\r\n\tline  \r\n\r\n", "Subject", 1, "folded line"},
	    {"Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n\r\n", "subject", 1, "Grüße"},
	    {"Subject: =?iso-8859-1?q?caf=E9_cr=E8me?=\r\n\r\n", "subject", 1, "café crème"},
	    /* adjacent words: the blank between goes, a character split over
	     * two words comes out whole */
	    {"Subject: =?utf-8?q?a=C3?= =?utf-8?q?=A9b?=\r\n\r\n", "subject", 1, "aéb"},
	    {"Subject: x =?utf-8?q?y?= z\r\n\r\n", "subject", 1, "x y z"},
	    /* unknown charset or broken word: shown as it is */
	    {"Subject: =?koi8-r?B?8NLJ18XU?=\r\n\r\n", "subject", 1, "=?koi8-r?B?8NLJ18XU?="},
	    {"Subject: =?utf-8?X?abc?=\r\n\r\n", "subject", 1, "=?utf-8?X?abc?="},
	    /* controls and escape sequences become blanks, bad UTF-8 U+FFFD */
	    {"Subject: <img src=x onerror=alert(1)> \x1b[31mred\x01\x7f!\r\n\r\n", "subject", 1,
	     "<img src=x onerror=alert(1)> [31mred !"},
	    {"Subject: =?utf-8?q?=1B]0;title=07=C2=9Bx?=\r\n\r\n", "subject", 1, "]0;title x"},
	    {"Subject: caf\xe9\r\n\r\n", "subject", 1, "caf\xef\xbf\xbd"},
	    {"Subject: \xe2\x80\xae" "evil\r\n\r\n", "subject", 1, "evil"},
	    {"From: \"Jos\xc3\xa9" "\" <jose@example.org>\r\n\r\n", "from", 1,
	     "\"Jos\xc3\xa9" "\" <jose@example.org>"},
	    {"From: x\r\n\r\nSubject: in the body\r\n", "subject", 0, ""},
	    {"Subject:\r\n\r\n", "subject", 1, ""},
	    {"X-Subject: no\r\n\r\n", "subject", 0, ""},
	};
	char out[4 * MAILHDR_TEXT_CHARS + 4];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = mailhdr_field_text((const uint8_t *)cases[i].hdr, strlen(cases[i].hdr),
		                            cases[i].name, out, sizeof(out));

		UNIT_CHECKF(u, rc == cases[i].rc && !strcmp(out, cases[i].text),
		            "case %zu: rc %d, \"%s\"", i, rc, out);
	}
	/* the cap: MAILHDR_TEXT_CHARS characters, then "..." */
	{
		char big[1200] = "Subject: ";
		size_t n = strlen(big);

		for (int k = 0; k < 300; k++, n += 2)
			memcpy(big + n, "\xc3\xa9", 2); /* é */
		memcpy(big + n, "\r\n\r\n", 5);
		UNIT_CHECK(u, mailhdr_field_text((const uint8_t *)big, strlen(big), "subject", out,
		                                 sizeof(out)) == 1);
		UNIT_CHECK(u, strlen(out) == 2 * MAILHDR_TEXT_CHARS + 3);
		UNIT_CHECK(u, !strcmp(out + 2 * MAILHDR_TEXT_CHARS, "..."));
		/* a small buffer cuts early, still whole characters */
		UNIT_CHECK(u, mailhdr_field_text((const uint8_t *)big, strlen(big), "subject", out,
		                                 10) == 1);
		UNIT_CHECK(u, !strcmp(out, "\xc3\xa9\xc3\xa9\xc3\xa9..."));
	}
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, test_end);
	UNIT_RUN(&u, test_return_path);
	UNIT_RUN(&u, test_utf8);
	UNIT_RUN(&u, test_field_text);
	return unit_done(&u);
}
