/*
 * test_accounts — accounts-file lines (engine/cli/accounts.c): both forms,
 * quoting, comments, and the refusals a user meets.
 */
#include "engine/cli/accounts.h"
#include "tests/unit/unit.h"

static int parse(const char *s, struct account_line *al, char *buf, char *why)
{
	size_t n = strlen(s);

	memcpy(buf, s, n + 1);
	return accounts_parse_line(buf, n, al, why, 300);
}

static void t_imapsync(struct unit_ctx *u)
{
	struct account_line al;
	char buf[512], why[300];

	if (parse("old.example;a@x.org; p w ; new.example:993 ;bob;@/run/pw;", &al, buf, why)) {
		UNIT_CHECKF(u, 0, "refused: %s", why);
		return;
	}
	UNIT_CHECK(u, al.kind == ACCOUNT_IMAPSYNC);
	UNIT_CHECK(u, !strcmp(al.host[0], "old.example") && !strcmp(al.user[0], "a@x.org"));
	UNIT_CHECK(u, !strcmp(al.password[0], " p w ")); /* a password is taken as it is */
	UNIT_CHECK(u, !strcmp(al.host[1], "new.example:993") && !strcmp(al.user[1], "bob"));
	UNIT_CHECK(u, !strcmp(al.password[1], "@/run/pw"));
	UNIT_CHECKF(u, parse("h;u;p;h2;u2", &al, buf, why) < 0 && strstr(why, "5 fields"), "%s", why);
	UNIT_CHECKF(u, parse("h;u;;h2;u2;p2", &al, buf, why) < 0 && strstr(why, "password1"), "%s",
	            why);
	UNIT_CHECK(u, parse("h;u;p;h2;u2;p2;extra", &al, buf, why) < 0);
	/* fuzz_accounts: an "@" in a host would make the URL name another user */
	UNIT_CHECK(u, parse("h;u;p;new.example@c;la;p2", &al, buf, why) < 0 && strstr(why, "host2"));
	UNIT_CHECK(u, parse("h/x;u;p;h2;u2;p2", &al, buf, why) < 0);
	UNIT_CHECK(u, parse("imaps://old:993;u;p;imap://new;u2;p2", &al, buf, why) == 0 &&
	                  al.kind == ACCOUNT_IMAPSYNC && !strcmp(al.host[0], "imaps://old:993"));
}

static void t_urls(struct unit_ctx *u)
{
	struct account_line al;
	char buf[512], why[300];

	if (parse("  imaps://a@old imaps://a@new --folder 'Arch ive*' --exclude \"T\\\"x\" "
	          "--map a\\ b=c # note",
	          &al, buf, why)) {
		UNIT_CHECKF(u, 0, "refused: %s", why);
		return;
	}
	UNIT_CHECKF(u, al.kind == ACCOUNT_URLS && al.argc == 8, "argc %d", al.argc);
	if (al.argc != 8)
		return;
	UNIT_CHECK(u, !strcmp(al.argv[0], "imaps://a@old") && !strcmp(al.argv[1], "imaps://a@new"));
	UNIT_CHECK(u, !strcmp(al.argv[3], "Arch ive*") && !strcmp(al.argv[5], "T\"x"));
	UNIT_CHECK(u, !strcmp(al.argv[7], "a b=c"));
	UNIT_CHECK(u, parse("imap://x@h 'unterminated", &al, buf, why) < 0 && strstr(why, "quote"));
	UNIT_CHECK(u, parse("imap://x@h", &al, buf, why) < 0);
	UNIT_CHECK(u, parse("--folder x imap://a@b imap://c@d", &al, buf, why) < 0);
	UNIT_CHECK(u, parse("imap://a@b imap://c@d\x1b[2J", &al, buf, why) < 0 &&
	                  strstr(why, "control"));
}

static void t_actions(struct unit_ctx *u)
{
	struct account_line al;
	char buf[512], why[300];

	UNIT_CHECK(u, parse("imap://a@b imap://c@d", &al, buf, why) == 0 &&
	                  al.action == ACCOUNT_MIGRATE);
	UNIT_CHECK(u, parse("migrate imap://a@b imap://c@d -v", &al, buf, why) == 0 &&
	                  al.action == ACCOUNT_MIGRATE && al.argc == 3 &&
	                  !strcmp(al.argv[0], "imap://a@b") && !strcmp(al.argv[2], "-v"));
	UNIT_CHECK(u, parse("backup imaps://a@old '/srv/my archive' --prune", &al, buf, why) == 0 &&
	                  al.action == ACCOUNT_BACKUP && al.argc == 3 &&
	                  !strcmp(al.argv[1], "/srv/my archive"));
	UNIT_CHECK(u, parse("restore /srv/a imap://c@d --run 3", &al, buf, why) == 0 &&
	                  al.action == ACCOUNT_RESTORE && al.argc == 4 &&
	                  !strcmp(al.argv[0], "/srv/a") && !strcmp(al.argv[1], "imap://c@d"));
	UNIT_CHECKF(u, parse("bakup imap://a@b /srv/a", &al, buf, why) < 0 && strstr(why, "bakup"),
	            "%s", why);
	UNIT_CHECKF(u, parse("backup /srv/a imap://a@b", &al, buf, why) < 0 &&
	                   strstr(why, "want backup SRC-URL ARCHIVE_DIR"),
	            "%s", why);
	UNIT_CHECKF(u, parse("restore imap://a@b", &al, buf, why) < 0 &&
	                   strstr(why, "want restore ARCHIVE_DIR DST-URL"),
	            "%s", why);
	UNIT_CHECK(u, parse("restore --run 3 /srv/a imap://c@d", &al, buf, why) < 0);
	UNIT_CHECK(u, parse("migrate /srv/a imap://c@d", &al, buf, why) < 0);
	UNIT_CHECK(u, !strcmp(accounts_action_name(ACCOUNT_RESTORE), "restore"));
}

static void t_none(struct unit_ctx *u)
{
	struct account_line al;
	char buf[64], why[300];

	UNIT_CHECK(u, parse("", &al, buf, why) == 0 && al.kind == ACCOUNT_NONE);
	UNIT_CHECK(u, parse(" \t # a;b;c", &al, buf, why) == 0 && al.kind == ACCOUNT_NONE);
}

static void t_url(struct unit_ctx *u)
{
	char out[128];

	UNIT_CHECK(u, accounts_url("mail.example", "a@b c", out, sizeof(out)) == 0);
	UNIT_CHECKF(u, !strcmp(out, "imap://a%40b%20c@mail.example"), "%s", out);
	UNIT_CHECK(u, accounts_url("imaps://mail.example:993", "x", out, sizeof(out)) == 0);
	UNIT_CHECKF(u, !strcmp(out, "imaps://x@mail.example:993"), "%s", out);
	UNIT_CHECK(u, accounts_url("h", "user", out, 8) < 0);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_imapsync);
	UNIT_RUN(&u, t_urls);
	UNIT_RUN(&u, t_actions);
	UNIT_RUN(&u, t_none);
	UNIT_RUN(&u, t_url);
	return unit_done(&u);
}
