/*
 * test_names — mailbox selection and destination-name rules
 * (engine/sync/select.c): --folder / --exclude patterns with '*' and '%' as
 * IMAP LIST reads them, every other character literal (issue 16: "[Gmail]/
 * All Mail" matched nothing as an fnmatch class); --folder-regex /
 * --exclude-regex; --rename rules in order, with groups; --dst-prefix.
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
	const char *fre[] = {"^Archive/20(19|20)$", NULL}, *xre[] = {"Spam$", NULL};
	struct job_opts o = {0};
	struct job j = {0};
	struct mf_error e;

	o.folders = folders;
	o.excludes = excludes;
	o.folder_res = fre;
	o.exclude_res = xre;
	j.o = &o;
	if (rules_compile(&j.rules, &o, &e) < 0) {
		UNIT_CHECKF(u, 0, "%s", e.msg);
		return;
	}
	UNIT_CHECK(u, folder_selected(&j, "INBOX"));
	UNIT_CHECK(u, folder_selected(&j, "[Gmail]/Sent Mail"));
	UNIT_CHECK(u, !folder_selected(&j, "[Gmail]/All Mail"));
	UNIT_CHECK(u, !folder_selected(&j, "[Gmail]/Spam"));
	UNIT_CHECK(u, folder_selected(&j, "Archive/2019") && !folder_selected(&j, "Archive/2018"));
	UNIT_CHECK(u, !folder_selected(&j, "Work"));
	rules_free(&j.rules);
}

static void t_rename(struct unit_ctx *u)
{
	const char *rn[] = {"s/^INBOX\\.//", "s#[.]#/#g", "s/(Sent|Gesendet)/\\1 Old/", NULL};
	const char *bad1[] = {"s/x/y", NULL}, *bad2[] = {"s/(/y/", NULL}, *bad3[] = {"sxayax", NULL};
	struct job_opts o = {0};
	struct job j = {0};
	struct mf_error e;
	char *d;
	int ch;

	o.renames = rn;
	o.dst_prefix = "Imported";
	j.o = &o;
	if (rules_compile(&j.rules, &o, &e) < 0) {
		UNIT_CHECKF(u, 0, "%s", e.msg);
		return;
	}
	d = rules_dst_display(&j, "INBOX.Lists.dev", &ch);
	UNIT_CHECKF(u, d && ch && !strcmp(d, "Imported/Lists/dev"), "%s", d ? d : "(null)");
	free(d);
	d = rules_dst_display(&j, "Sent", &ch);
	UNIT_CHECKF(u, d && !strcmp(d, "Imported/Sent Old"), "%s", d ? d : "(null)");
	free(d);
	rules_free(&j.rules);
	o.dst_prefix = NULL;
	o.renames = NULL;
	UNIT_CHECK(u, rules_compile(&j.rules, &o, &e) == 0);
	d = rules_dst_display(&j, "Work", &ch);
	UNIT_CHECK(u, d && !ch && !strcmp(d, "Work"));
	free(d);
	rules_free(&j.rules);
	o.renames = bad1;
	UNIT_CHECK(u, job_opts_check(&o, &e) == -EINVAL && strstr(e.msg, "--rename"));
	o.renames = bad2;
	UNIT_CHECK(u, job_opts_check(&o, &e) == -EINVAL);
	o.renames = bad3;
	UNIT_CHECK(u, job_opts_check(&o, &e) == -EINVAL);
	o.renames = NULL;
	o.folder_res = bad2 + 0;
	{
		const char *re[] = {"a[", NULL};

		o.folder_res = re;
		UNIT_CHECK(u, job_opts_check(&o, &e) == -EINVAL && strstr(e.msg, "--folder-regex"));
	}
}

/* An 8-bit (UTF-8) source name goes to the destination as modified UTF-7
 * (RFC 3501 §5.1.3), under its namespace prefix and separator; ASCII
 * names, and 8-bit names that are not UTF-8, go as they are. */
static void t_eight_bit_names(struct unit_ctx *u)
{
	static const struct {
		const char *src, *dst;
	} cases[] = {
		{"B\xc3\xbc" "cher", "INBOX.B&APw-cher"},
		{"B\xc3\xbc" "cher/Neu", "INBOX.B&APw-cher.Neu"},
		{"Tom & Jerry/\xc3\x84", "INBOX.Tom &- Jerry.&AMQ-"},
		{"Tom & Jerry", "INBOX.Tom & Jerry"},
		{"Re&AOc-us", "INBOX.Re&AOc-us"},
		{"B\xfc" "cher", "INBOX.B\xfc" "cher"},
	};
	struct job_opts o = {0};
	struct job j = {0};
	struct mf_error e;

	j.o = &o;
	if (rules_compile(&j.rules, &o, &e) < 0) {
		UNIT_CHECKF(u, 0, "%s", e.msg);
		return;
	}
	memcpy(j.dst_ns, "INBOX.", 7);
	j.dst_ns_len = 6;
	j.dst_sep = '.';
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mbox mb = {0};
		char *d;

		mb.name = mb.display = (char *)cases[i].src;
		mb.len = strlen(cases[i].src);
		mb.sep = '/';
		d = dst_name_for(&j, &mb);
		UNIT_CHECKF(u, d && !strcmp(d, cases[i].dst), "%s -> %s", cases[i].src, d ? d : "(null)");
		free(d);
	}
	rules_free(&j.rules);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_literal_brackets);
	UNIT_RUN(&u, t_star_and_percent);
	UNIT_RUN(&u, t_long_and_hostile);
	UNIT_RUN(&u, t_selected);
	UNIT_RUN(&u, t_rename);
	UNIT_RUN(&u, t_eight_bit_names);
	return unit_done(&u);
}
