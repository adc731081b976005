/*
 * test_sink_archive — the pure part of the archive sink
 * (engine/sync/sink_archive.c): IMAP flags as the source gave them, split
 * into the archive's flag bits and keywords, bounded.
 */
#include "engine/sync/job_int.h"
#include "store/archive.h"
#include "tests/unit/unit.h"

static void split(const char *f, struct archive_msgmeta *m)
{
	memset(m, 0x55, sizeof(*m));
	sink_archive_flags(f, strlen(f), m);
}

static void t_system_flags(struct unit_ctx *u)
{
	struct archive_msgmeta m;

	split("\\Seen \\Answered \\Flagged \\Deleted \\Draft", &m);
	UNIT_CHECK(u, m.flags == (ARCHIVE_F_SEEN | ARCHIVE_F_ANSWERED | ARCHIVE_F_FLAGGED |
	                          ARCHIVE_F_DELETED | ARCHIVE_F_DRAFT));
	UNIT_CHECK(u, m.keywords[0] == '\0');
	split("\\seen \\FLAGGED", &m); /* flag names are case-insensitive */
	UNIT_CHECK(u, m.flags == (ARCHIVE_F_SEEN | ARCHIVE_F_FLAGGED));
	split("", &m);
	UNIT_CHECK(u, m.flags == 0 && m.keywords[0] == '\0');
}

static void t_keywords(struct unit_ctx *u)
{
	struct archive_msgmeta m;

	split("$Label1 \\Seen  Junk \\Recent \\Unknown $Forwarded", &m);
	UNIT_CHECK(u, m.flags == ARCHIVE_F_SEEN);
	UNIT_CHECKF(u, !strcmp(m.keywords, "$Label1 Junk $Forwarded"), "got \"%s\"", m.keywords);
	split("\\Seenx", &m); /* not \Seen: an unknown system flag, dropped */
	UNIT_CHECK(u, m.flags == 0 && m.keywords[0] == '\0');
}

static void t_bounded(struct unit_ctx *u)
{
	static char f[4 * AFMT_KW_MAX];
	struct archive_msgmeta m;
	size_t n = 0;

	while (n + 11 < sizeof(f) - 1) {
		memcpy(f + n, "keyword123 ", 11);
		n += 11;
	}
	f[n] = '\0';
	split(f, &m);
	UNIT_CHECK(u, strlen(m.keywords) <= AFMT_KW_MAX);
	UNIT_CHECK(u, strlen(m.keywords) > AFMT_KW_MAX - 11);
	UNIT_CHECK(u, !strncmp(m.keywords, "keyword123 keyword123", 21));
	/* only whole keywords */
	UNIT_CHECK(u, strlen(m.keywords) % 11 == 10);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_system_flags);
	UNIT_RUN(&u, t_keywords);
	UNIT_RUN(&u, t_bounded);
	printf("%d passed, %d failed\n", u.passed, u.failed);
	return unit_done(&u);
}
