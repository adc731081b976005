/*
 * test_names — --folder / --exclude patterns (engine/sync/names.c): '*' and
 * '%' as IMAP LIST reads them, every other character literal (issue 16:
 * "[Gmail]/All Mail" matched nothing as an fnmatch class).
 */
#include "engine/sync/job_int.h"
#include "tests/unit/unit.h"

static void t_literal_brackets(struct unit_ctx *u)
{
	UNIT_CHECK(u, folder_match("[Gmail]/All Mail", "[Gmail]/All Mail"));
	UNIT_CHECK(u, !folder_match("[Gmail]/All Mail", "G/All Mail"));
	UNIT_CHECK(u, folder_match("[Gmail]/*", "[Gmail]/Sent Mail"));
	UNIT_CHECK(u, folder_match("a?b", "a?b") && !folder_match("a?b", "axb"));
	UNIT_CHECK(u, folder_match("a\\b", "a\\b"));
}

static void t_star_and_percent(struct unit_ctx *u)
{
	UNIT_CHECK(u, folder_match("*", "") && folder_match("*", "a/b/c"));
	UNIT_CHECK(u, folder_match("Lists/*", "Lists/dev/old") && !folder_match("Lists/*", "Lists"));
	UNIT_CHECK(u, folder_match("Lists/%", "Lists/dev") && !folder_match("Lists/%", "Lists/dev/old"));
	UNIT_CHECK(u, folder_match("%", "INBOX") && !folder_match("%", "INBOX/x"));
	UNIT_CHECK(u, folder_match("Archive*", "Archive") && folder_match("Archive*", "Archive 2019/x"));
	UNIT_CHECK(u, folder_match("*2019*", "Archive/2019/Q1") && !folder_match("*2019*", "Archive/2018"));
	UNIT_CHECK(u, !folder_match("", "x") && folder_match("", ""));
	UNIT_CHECK(u, folder_match("a%c", "abc") && !folder_match("a%c", "a/c"));
}

static void t_long_and_hostile(struct unit_ctx *u)
{
	char name[9000], pat[64];

	memset(name, 'a', sizeof(name) - 2);
	name[sizeof(name) - 2] = 'b';
	name[sizeof(name) - 1] = '\0';
	/* many stars: no backtracking blow-up, and the right answer */
	snprintf(pat, sizeof(pat), "*a*a*a*a*a*a*a*a*a*a*a*a*a*c");
	UNIT_CHECK(u, !folder_match(pat, name));
	snprintf(pat, sizeof(pat), "*a*a*a*a*a*a*a*a*a*a*a*a*a*b");
	UNIT_CHECK(u, folder_match(pat, name));
}

static void t_selected(struct unit_ctx *u)
{
	const char *folders[] = {"[Gmail]/*", "INBOX", NULL}, *excludes[] = {"[Gmail]/All Mail", NULL};
	struct job_opts o = {0};

	o.folders = folders;
	o.excludes = excludes;
	UNIT_CHECK(u, folder_selected(&o, "INBOX"));
	UNIT_CHECK(u, folder_selected(&o, "[Gmail]/Sent Mail"));
	UNIT_CHECK(u, !folder_selected(&o, "[Gmail]/All Mail"));
	UNIT_CHECK(u, !folder_selected(&o, "Work"));
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_literal_brackets);
	UNIT_RUN(&u, t_star_and_percent);
	UNIT_RUN(&u, t_long_and_hostile);
	UNIT_RUN(&u, t_selected);
	return unit_done(&u);
}
