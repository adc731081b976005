/*
 * fuzz_accounts — libFuzzer target for engine/cli/accounts.c.
 *
 * Any bytes as one accounts-file line: the split must stay inside the
 * line's buffer, every word NUL-terminated there, a URL line has its two
 * places first (URLs; an archive directory where its action wants one),
 * an imapsync line six non-empty fields; accounts_url on what came out
 * must fit or say so, and its user part must decode back (only unreserved
 * characters and %XX).
 */
#include "engine/cli/accounts.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "accounts: %s\n", what);
		abort();
	}
}

static void inside(const char *p, const char *buf, size_t cap)
{
	check(p >= buf && p < buf + cap, "pointer outside the line");
	check(memchr(p, '\0', (size_t)(buf + cap - p)) != NULL, "word not terminated");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct account_line al;
	char why[300], url[600];
	char *buf;

	if (size >= ACCOUNTS_LINE_MAX + 16)
		return 0;
	buf = malloc(size + 1);
	if (!buf)
		abort();
	memcpy(buf, data, size);
	buf[size] = 'X'; /* must be overwritten only by a NUL, if at all */
	if (accounts_parse_line(buf, size, &al, why, sizeof(why)) < 0) {
		check(strlen(why) > 0 && strlen(why) < sizeof(why), "no reason");
	} else if (al.kind == ACCOUNT_URLS) {
		check(al.argc >= 2 && al.argc <= ACCOUNTS_ARGS_MAX, "argc");
		for (int i = 0; i < al.argc; i++)
			inside(al.argv[i], buf, size + 1);
		/* the two places: URLs, but a restore's first and a backup's
		 * second are archive directories */
		check(al.argv[0][0] && al.argv[1][0] && al.argv[0][0] != '-' &&
		          al.argv[1][0] != '-' &&
		          (al.action == ACCOUNT_RESTORE || strstr(al.argv[0], "://")) &&
		          (al.action == ACCOUNT_BACKUP || strstr(al.argv[1], "://")),
		      "two places first");
		check(al.action == ACCOUNT_MIGRATE || al.action == ACCOUNT_BACKUP ||
		          al.action == ACCOUNT_RESTORE,
		      "action");
	} else if (al.kind == ACCOUNT_IMAPSYNC) {
		for (int s = 0; s < 2; s++) {
			inside(al.host[s], buf, size + 1);
			inside(al.user[s], buf, size + 1);
			inside(al.password[s], buf, size + 1);
			check(*al.host[s] && *al.user[s] && *al.password[s], "empty field");
			if (accounts_url(al.host[s], al.user[s], url, sizeof(url)) == 0) {
				const char *at = strrchr(url, '@');

				check(at && strlen(url) < sizeof(url), "url");
				for (const char *p = strstr(url, "://") + 3; p < at; p++)
					check((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
					          (*p >= '0' && *p <= '9') || strchr("-._~%", *p),
					      "user not encoded");
			}
		}
	}
	check(buf[size] == 'X' || buf[size] == '\0', "wrote past the line");
	free(buf);
	return 0;
}
