/* Unit tests for imap_syntax (issue 15 defect 1: values that cross from
 * the source to the destination) and for err's escaping of log lines
 * (defect 10): the hostile values seen in the probe are refused, good
 * values come back written from their parsed fields. */
#include "engine/base/err.h"
#include "protocols/imap_syntax.h"
#include "tests/unit/unit.h"

#include <stdint.h>

static void test_date_good(struct unit_ctx *u)
{
	static const struct {
		const char *in, *out;
		int64_t unix_s;
	} v[] = {
	    {"17-Jul-1996 02:44:25 -0700", "17-Jul-1996 02:44:25 -0700", 837596665},
	    {" 5-Feb-2024 08:00:00 -0130", "05-Feb-2024 08:00:00 -0130", 1707125400},
	    {"5-feb-2024 08:00:00 -0130", "05-Feb-2024 08:00:00 -0130", 1707125400},
	    {"01-Jan-1970 00:00:00 +0000", "01-Jan-1970 00:00:00 +0000", 0},
	    {"29-Feb-2000 23:59:60 +1400", "29-Feb-2000 23:59:60 +1400", 951818400},
	    {"31-Dec-1969 23:59:59 -0000", "31-Dec-1969 23:59:59 -0000", -1},
	};
	struct imap_date d;
	char out[IMAP_DATE_LEN + 1];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		UNIT_CHECKF(u, imap_date_parse(v[i].in, strlen(v[i].in), &d) == 0, "parse %s",
		            v[i].in);
		UNIT_CHECK(u, imap_date_format(&d, out) == IMAP_DATE_LEN);
		UNIT_CHECKF(u, !strcmp(out, v[i].out), "%s -> %s", v[i].in, out);
		UNIT_CHECKF(u, imap_date_unix(&d) == v[i].unix_s, "%s: %lld", v[i].in,
		            (long long)imap_date_unix(&d));
	}
}

static void test_date_hostile(struct unit_ctx *u)
{
	static const char *const bad[] = {
	    /* what the probe sent: a literal with CRLF and commands, a
	     * quoted string with an escaped quote inside */
	    "\"\r\nX DELETE Canary\r\nY APPEND INBOX \"01-Jan-2024 00:00:00 +0000",
	    "01-Jan-2024 10:00:00 +0000\r\nX DELETE Canary",
	    "01-Jan-2024 10:00:00 +0000\" Q3 CREATE Injected3 \"",
	    "01-Jan-2024 10:00:00 +0000 ",
	    " 01-Jan-2024 10:00:00 +0000",
	    "01-Jan-2024 10:00:00",
	    "01-Jan-24 10:00:00 +0000",
	    "001-Jan-2024 10:00:00 +0000",
	    "31-Feb-2024 10:00:00 +0000",
	    "29-Feb-1900 10:00:00 +0000",
	    "00-Jan-2024 10:00:00 +0000",
	    "01-Foo-2024 10:00:00 +0000",
	    "01-Jan-2024 24:00:00 +0000",
	    "01-Jan-2024 10:60:00 +0000",
	    "01-Jan-2024 10:00:61 +0000",
	    "01-Jan-2024 10:00:00 +0060",
	    "01-Jan-2024 10:00:00 *0000",
	    "01-Jan-2024 10:00:00 +00000",
	    "01-Jan-2024\t10:00:00 +0000",
	    "",
	};
	struct imap_date d;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		UNIT_CHECKF(u, imap_date_parse(bad[i], strlen(bad[i]), &d) < 0, "accepted #%zu", i);
	/* a NUL inside: length, not strlen, counts */
	UNIT_CHECK(u, imap_date_parse("01-Jan-2024 10:00:00 +0000\0x", 28, &d) < 0);
}

static void test_flags(struct unit_ctx *u)
{
	const char *canon;

	UNIT_CHECK(u, imap_flag_classify("\\SEEN", 5, &canon) == IMAP_FLAG_SYSTEM &&
	                  !strcmp(canon, "\\Seen"));
	UNIT_CHECK(u, imap_flag_classify("\\answered", 9, &canon) == IMAP_FLAG_SYSTEM &&
	                  !strcmp(canon, "\\Answered"));
	UNIT_CHECK(u, imap_flag_classify("\\Recent", 7, &canon) == IMAP_FLAG_RECENT);
	UNIT_CHECK(u, imap_flag_classify("\\Bogus", 6, &canon) == IMAP_FLAG_INVALID);
	UNIT_CHECK(u, imap_flag_classify("\\*", 2, &canon) == IMAP_FLAG_INVALID);
	UNIT_CHECK(u, imap_flag_classify("\\", 1, &canon) == IMAP_FLAG_INVALID);
	UNIT_CHECK(u, imap_flag_classify("$Forwarded", 10, &canon) == IMAP_FLAG_KEYWORD && !canon);
	UNIT_CHECK(u, imap_flag_classify("x[", 2, &canon) == IMAP_FLAG_KEYWORD); /* an atom */
	UNIT_CHECK(u, imap_flag_classify("x[ ) \"y\" (z ]", 13, &canon) == IMAP_FLAG_INVALID);
	UNIT_CHECK(u, imap_flag_classify("a]", 2, &canon) == IMAP_FLAG_INVALID);
	UNIT_CHECK(u, imap_flag_classify("a\r\nb", 4, &canon) == IMAP_FLAG_INVALID);
	UNIT_CHECK(u, imap_flag_classify("a{5}", 4, &canon) == IMAP_FLAG_INVALID);
	UNIT_CHECK(u, imap_flag_classify("a\x80", 2, &canon) == IMAP_FLAG_INVALID);
	UNIT_CHECK(u, imap_flag_classify("a\0b", 3, &canon) == IMAP_FLAG_INVALID);
	UNIT_CHECK(u, imap_flag_classify("", 0, &canon) == IMAP_FLAG_INVALID);
	for (int c = 0; c < 256; c++) {
		char s[2] = {'k', (char)c};
		int want = c > ' ' && c < 0x7f && !strchr("(){%*\"\\]", c);

		UNIT_CHECKF(u, imap_atom_ok(s, 2) == want, "byte 0x%02x", c);
	}
}

static void test_mailbox_names(struct unit_ctx *u)
{
	UNIT_CHECK(u, imap_mailbox_name_bad("INBOX", 5) == NULL);
	UNIT_CHECK(u, imap_mailbox_name_bad("Esc\x1b[31mRed", 11) == NULL); /* quotable */
	UNIT_CHECK(u, imap_mailbox_name_bad("a \"b\" \\c", 8) == NULL);
	UNIT_CHECK(u, imap_mailbox_name_bad("Dup\0x", 5) != NULL);
	UNIT_CHECK(u, imap_mailbox_name_bad("Evil\r\nx", 7) != NULL);
	UNIT_CHECK(u, imap_mailbox_name_bad("Evil\nx", 6) != NULL);
	UNIT_CHECK(u, imap_mailbox_name_bad("", 0) != NULL);
}

static void test_escape(struct unit_ctx *u)
{
	static const struct {
		const char *in;
		size_t n;
		const char *out;
	} v[] = {
	    {"plain", 5, "plain"},
	    {"Evil\r\nmailferry: done: 9", 24, "Evil\\r\\nmailferry: done: 9"},
	    {"Esc\x1b[31mRed", 11, "Esc\\x1b[31mRed"},
	    {"Dup\0x", 5, "Dup\\x00x"},
	    {"Bad\xff\xfeName", 9, "Bad\\xff\\xfeName"},
	    {"Entw\xc3\xbcrfe", 9, "Entw\xc3\xbcrfe"}, /* UTF-8 stays */
	    {"\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"},
	    {"csi\xc2\x9b"
	     "2J",
	     7, "csi\\u009b2J"}, /* C1 CSI */
	    {"a\xe2\x80\xae"
	     "b",
	     5, "a\\u202eb"},                       /* RLO */
	    {"\xc0\xaf", 2, "\\xc0\\xaf"},          /* overlong */
	    {"\xed\xa0\x80", 3, "\\xed\\xa0\\x80"}, /* surrogate */
	    {"\xe2\x82", 2, "\\xe2\\x82"},          /* cut short */
	    {"tab\there\x7f", 9, "tab\\there\\x7f"},
	    {"back\\slash", 10, "back\\slash"},
	};
	char out[256], again[256];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t n = mf_escape(v[i].in, v[i].n, out, sizeof(out));

		UNIT_CHECKF(u, n == strlen(v[i].out) && !strcmp(out, v[i].out), "#%zu: %s", i, out);
		/* idempotent: mf_err_set's message goes through mf_log again */
		mf_escape(out, n, again, sizeof(again));
		UNIT_CHECKF(u, !strcmp(out, again), "#%zu twice: %s", i, again);
	}
	/* never half an escape or half a character at the end */
	UNIT_CHECK(u, mf_escape("ab\x1b", 3, out, 6) == 2 && !strcmp(out, "ab"));
	UNIT_CHECK(u, mf_escape("a\xc3\xbc", 3, out, 3) == 1 && !strcmp(out, "a"));
	UNIT_CHECK(u, mf_escape("abc", 3, out, 1) == 0 && !out[0]);
	/* a value between quotes: '"' escaped too, the rest as mf_escape */
	UNIT_CHECK(u, mf_escape("a\"b", 3, out, sizeof(out)) == 3 && !strcmp(out, "a\"b"));
	UNIT_CHECK(u, mf_escape_quoted("Say \"hi\"\r\n", 10, out, sizeof(out)) == 18 &&
	                  !strcmp(out, "Say \\x22hi\\x22\\r\\n"));
	UNIT_CHECK(u, mf_escape_quoted("a\"", 2, out, 4) == 1 && !strcmp(out, "a"));
}

static void test_err_set_escapes(struct unit_ctx *u)
{
	struct mf_error e;

	mf_err_set(&e, -1, "mailbox \"%s\": %s", "a\r\nmailferry: done: x", "\x1b[2J");
	UNIT_CHECKF(u, !strcmp(e.msg, "mailbox \"a\\r\\nmailferry: done: x\": \\x1b[2J"), "%s",
	            e.msg);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, test_date_good);
	UNIT_RUN(&u, test_date_hostile);
	UNIT_RUN(&u, test_flags);
	UNIT_RUN(&u, test_mailbox_names);
	UNIT_RUN(&u, test_escape);
	UNIT_RUN(&u, test_err_set_escapes);
	return unit_done(&u);
}
