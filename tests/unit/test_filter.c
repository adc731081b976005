/*
 * test_filter — engine/sync/filter.c: option values of a selective copy
 * (dates, sizes), the search-key validator's canonical form and what it
 * refuses (CRLF, literals, parentheses, length, sequence numbers), and the
 * whole filter's order and identity.
 */
#include "engine/sync/filter.h"
#include "tests/unit/unit.h"

#include <errno.h>

static int canon(const char *in, char *out, size_t cap)
{
	struct mf_error e;

	return filter_search(in, strlen(in), out, cap, &e);
}

static void t_dates(struct unit_ctx *u)
{
	char d[FILTER_DATE_LEN + 1];
	uint32_t ymd;
	struct mf_error e;
	static const char *const bad[] = {"2024-13-01",
	                                  "2024-02-30",
	                                  "2023-02-29",
	                                  "2024-1-01",
	                                  "1-Foo-2024",
	                                  "32-Jan-2024",
	                                  "0-Jan-2024",
	                                  "2024/01/01",
	                                  "",
	                                  "-",
	                                  "--",
	                                  "1-Jan-24",
	                                  "01-Jan-2024x",
	                                  "999-01-01",
	                                  "2024-01-01 ",
	                                  "1-Jan-2024\r\n"};

	UNIT_CHECK(u, filter_date("2024-01-31", 10, d, &ymd, &e) == 0);
	UNIT_CHECK(u, !strcmp(d, "31-Jan-2024") && ymd == 20240131);
	UNIT_CHECK(u, filter_date("2024-02-29", 10, d, &ymd, &e) == 0 && !strcmp(d, "29-Feb-2024"));
	UNIT_CHECK(u, filter_date("5-dec-1999", 10, d, &ymd, &e) == 0);
	UNIT_CHECK(u, !strcmp(d, "5-Dec-1999") && ymd == 19991205);
	UNIT_CHECK(u, filter_date("05-DEC-1999", 11, d, NULL, &e) == 0 && !strcmp(d, "5-Dec-1999"));
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		UNIT_CHECKF(u, filter_date(bad[i], strlen(bad[i]), d, &ymd, &e) == -EINVAL,
		            "\"%s\" accepted", bad[i]);
}

static void t_sizes(struct unit_ctx *u)
{
	uint32_t v;
	struct mf_error e;
	static const char *const bad[] = {"",   "k",  "-1",   "1.5k", "12kb", "4G", "99999999999",
	                                  " 1", "1 ", "0x10", "1T"};

	UNIT_CHECK(u, filter_size("1500", &v, &e) == 0 && v == 1500);
	UNIT_CHECK(u, filter_size("20k", &v, &e) == 0 && v == 20480);
	UNIT_CHECK(u, filter_size("5M", &v, &e) == 0 && v == 5u << 20);
	UNIT_CHECK(u, filter_size("3g", &v, &e) == 0 && v == 3u << 30);
	UNIT_CHECK(u, filter_size("0", &v, &e) == 0 && v == 0);
	UNIT_CHECK(u, filter_size("4294967295", &v, &e) == 0 && v == UINT32_MAX);
	UNIT_CHECK(u, filter_size("4294967296", &v, &e) == -EINVAL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		UNIT_CHECKF(u, filter_size(bad[i], &v, &e) == -EINVAL, "\"%s\" accepted", bad[i]);
}

static void t_search_canonical(struct unit_ctx *u)
{
	static const char *const io[][2] = {
	    {"unseen from x", "UNSEEN FROM \"x\""},
	    {"  FROM   \"John Doe\"  ", "FROM \"John Doe\""},
	    {"OR FROM a (SUBJECT \"re: \\\"hi\\\"\" TO b)",
	     "OR FROM \"a\" (SUBJECT \"re: \\\"hi\\\"\" TO \"b\")"},
	    {"not seen", "NOT SEEN"},
	    {"since 2024-01-05 before 1-feb-2024", "SINCE 5-Jan-2024 BEFORE 1-Feb-2024"},
	    {"SENTON \"7-Jul-2020\"", "SENTON 7-Jul-2020"},
	    {"larger 100 smaller 4294967295", "LARGER 100 SMALLER 4294967295"},
	    {"keyword $Label1 unkeyword Junk", "KEYWORD $Label1 UNKEYWORD Junk"},
	    {"header X-Spam yes", "HEADER \"X-Spam\" \"yes\""},
	    {"uid 1:5,9,20:*", "UID 1:5,9,20:*"},
	    {"((seen))", "((SEEN))"},
	    {"FROM a]b", "FROM \"a]b\""},
	    {"all", "ALL"},
	};
	char out[FILTER_MAX];

	for (size_t i = 0; i < sizeof(io) / sizeof(*io); i++) {
		int n = canon(io[i][0], out, sizeof(out));

		UNIT_CHECKF(u, n == (int)strlen(io[i][1]) && !strcmp(out, io[i][1]),
		            "\"%s\" -> %d \"%s\", want \"%s\"", io[i][0], n, out, io[i][1]);
		/* canonical input comes back unchanged */
		if (n > 0) {
			char again[FILTER_MAX];

			strcpy(again, out);
			UNIT_CHECKF(u, canon(again, out, sizeof(out)) == n && !strcmp(out, again),
			            "not idempotent: \"%s\"", again);
		}
	}
}

static void t_search_hostile(struct unit_ctx *u)
{
	static const char *const bad[] = {
	    "FROM x\r\nA1 DELETE INBOX",
	    "FROM x\nfoo",
	    "SUBJECT \"a\r\nb\"",
	    "FROM {5}",
	    "FROM {5+}",
	    "(FROM x",
	    "FROM x)",
	    "()",
	    ")",
	    "((SEEN)",
	    "",
	    "   ",
	    "BOGUS",
	    "FROM",
	    "OR SEEN",
	    "NOT",
	    "LARGER -1",
	    "LARGER 4294967296",
	    "LARGER x",
	    "SINCE yesterday",
	    "1:5",
	    "*",
	    "UID",
	    "UID 0",
	    "UID 1:",
	    "UID 1,,2",
	    "UID a",
	    "UID 1,",
	    "KEYWORD \\Seen",
	    "KEYWORD \"x\"",
	    "FROM \"unterminated",
	    "FROM \"a\\b\"",
	    "FROM caf\xc3\xa9",
	    "FROM a\tb",
	    "FROM \"\x01\"",
	    "CHARSET UTF-8 FROM x",
	    "FROM a\\b",
	    "FROM %",
	    "\"SEEN\"",
	    "HEADER x",
	};
	char out[FILTER_MAX];
	struct mf_error e;

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		int n = filter_search(bad[i], strlen(bad[i]), out, sizeof(out), &e);

		UNIT_CHECKF(u, n == -EINVAL, "\"%s\" -> %d \"%s\"", bad[i], n, n >= 0 ? out : "");
		UNIT_CHECKF(u, n >= 0 || (strlen(e.msg) > 8 && !strchr(e.msg, '\n')),
		            "\"%s\": message \"%s\"", bad[i], e.msg);
	}
	UNIT_CHECK(u, filter_search("FROM {5}", 8, out, sizeof(out), &e) == -EINVAL &&
	                  strstr(e.msg, "literal"));
	UNIT_CHECK(u, filter_search("FROM x\r\n", 8, out, sizeof(out), &e) == -EINVAL &&
	                  strstr(e.msg, "CR or LF"));
	UNIT_CHECK(u, filter_search("(SEEN", 5, out, sizeof(out), &e) == -EINVAL &&
	                  strstr(e.msg, "unbalanced"));
	UNIT_CHECK(u, filter_search("SE\0N", 4, out, sizeof(out), &e) == -EINVAL);
	{
		/* 10 KB: refused for its length; 64 keys fit, 65 do not; depth */
		static char big[10240 + 1], many[65 * 5 + 1], deep[64];

		memset(big, 'A', 10240);
		UNIT_CHECK(u, filter_search(big, 10240, out, sizeof(out), &e) == -EINVAL &&
		                  strstr(e.msg, "at most"));
		for (int i = 0; i < 65; i++)
			memcpy(many + i * 5, "SEEN ", 5);
		UNIT_CHECK(u, filter_search(many, 64 * 5, out, sizeof(out), &e) > 0);
		UNIT_CHECK(u, filter_search(many, 65 * 5, out, sizeof(out), &e) == -EINVAL);
		memset(deep, '(', 20);
		memcpy(deep + 20, "SEEN", 4);
		memset(deep + 24, ')', 20);
		UNIT_CHECK(u, filter_search(deep, 44, out, sizeof(out), &e) == -EINVAL &&
		                  strstr(e.msg, "deep"));
		memset(deep + 4, '(', 12); /* 16 deep is fine */
		memcpy(deep, "((((", 4);
		memcpy(deep + 16, "SEEN", 4);
		memset(deep + 20, ')', 16);
		UNIT_CHECK(u, filter_search(deep, 36, out, sizeof(out), &e) > 0);
	}
	/* A canonical form that does not fit the caller's buffer */
	UNIT_CHECK(u, filter_search("FROM abcdefgh", 13, out, 8, &e) == -ENOSPC);
}

static void t_build(struct unit_ctx *u)
{
	char out[FILTER_MAX];
	struct mf_error e;
	struct filter_spec none = {0}, all = {"2024-01-01", "1-Feb-2025", "1k", "2M", "unseen"};
	struct filter_spec swapped = {"2025-01-01", "2024-01-01", NULL, NULL, NULL};
	struct filter_spec sizes = {NULL, NULL, "10", "11", NULL};
	struct filter_spec bad = {NULL, NULL, NULL, NULL, "FROM {3}"};
	int n;

	UNIT_CHECK(u, filter_build(&none, out, sizeof(out), &e) == 0 && !out[0]);
	n = filter_build(&all, out, sizeof(out), &e);
	UNIT_CHECKF(u,
	            n > 0 && !strcmp(out, "SINCE 1-Jan-2024 BEFORE 1-Feb-2025 LARGER 1024 "
	                                  "SMALLER 2097152 UNSEEN"),
	            "%s", out);
	UNIT_CHECK(u, filter_build(&swapped, out, sizeof(out), &e) == -EINVAL &&
	                  strstr(e.msg, "--since"));
	UNIT_CHECK(u, filter_build(&sizes, out, sizeof(out), &e) == -EINVAL);
	UNIT_CHECK(u, filter_build(&bad, out, sizeof(out), &e) == -EINVAL &&
	                  strstr(e.msg, "--search"));
	UNIT_CHECK(u, filter_id("", 0) != 0);
	UNIT_CHECK(u, filter_id("SINCE 1-Jan-2024", 16) != filter_id("SINCE 2-Jan-2024", 16));
	UNIT_CHECK(u, filter_id("UNSEEN", 6) == filter_id("UNSEEN", 6));
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_dates);
	UNIT_RUN(&u, t_sizes);
	UNIT_RUN(&u, t_search_canonical);
	UNIT_RUN(&u, t_search_hostile);
	UNIT_RUN(&u, t_build);
	return unit_done(&u);
}
