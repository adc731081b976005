/*
 * test_kwdefer — the flag split of the keyword deferral (engine/sync/
 * kwdefer.c): what an APPEND into Courier carries (the system flags) and
 * whether anything is left to store after the folder's APPENDs.
 */
#include "engine/sync/job_int.h"
#include "tests/unit/unit.h"

static void t_system_flags(struct unit_ctx *u)
{
	static const struct {
		const char *in, *sys;
		int kw;
	} c[] = {
	    {"", "", 0},
	    {"\\Seen", "\\Seen", 0},
	    {"\\Seen $Forwarded", "\\Seen", 1},
	    {"Work \\Flagged Project-X \\Seen", "\\Flagged \\Seen", 1},
	    {"$Junk", "", 1},
	    {"  \\Answered   Work ", "\\Answered", 1},
	};
	char out[STATE_FLAGS_MAX];

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		size_t n = kwdefer_system_flags(c[i].in, strlen(c[i].in), out, sizeof(out));

		UNIT_CHECKF(u, n == strlen(c[i].sys) && !strcmp(out, c[i].sys),
		            "\"%s\": system flags \"%s\", wanted \"%s\"", c[i].in, out, c[i].sys);
		UNIT_CHECKF(u, kwdefer_has_keywords(c[i].in, strlen(c[i].in)) == c[i].kw,
		            "\"%s\": keywords %d, wanted %d", c[i].in, !c[i].kw, c[i].kw);
	}
}

/* A flag string cut short by its length, not by a NUL: only n bytes read. */
static void t_length_bound(struct unit_ctx *u)
{
	const char f[] = "\\Seen Work";
	char out[16];

	UNIT_CHECK(u, !kwdefer_has_keywords(f, 5));
	UNIT_CHECK(u, kwdefer_system_flags(f, 5, out, sizeof(out)) == 5 && !strcmp(out, "\\Seen"));
	/* too small an output: what does not fit is left out, still a string */
	UNIT_CHECK(u, kwdefer_system_flags(f, sizeof(f) - 1, out, 4) == 0 && out[0] == '\0');
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_system_flags);
	UNIT_RUN(&u, t_length_bound);
	return unit_done(&u);
}
