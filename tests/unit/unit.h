/*
 * unit — a tiny in-tree test runner for the C unit tests.
 * Each test binary prints one line per test: "ok - NAME" or
 * "not ok - NAME: file:line: what", and exits non-zero if any failed.
 * tests/run.sh counts those lines.
 */
#ifndef MF_UNIT_H
#define MF_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct unit_ctx {
	int failed_here;
	int passed, failed;
	const char *name;
};

#define UNIT_CHECK(u, cond)                                                                        \
	do {                                                                                       \
		if (!(cond) && !(u)->failed_here) {                                                \
			(u)->failed_here = 1;                                                      \
			printf("not ok - %s: %s:%d: %s\n", (u)->name, __FILE__, __LINE__, #cond);  \
		}                                                                                  \
	} while (0)

#define UNIT_CHECKF(u, cond, ...)                                                                  \
	do {                                                                                       \
		if (!(cond) && !(u)->failed_here) {                                                \
			(u)->failed_here = 1;                                                      \
			printf("not ok - %s: %s:%d: ", (u)->name, __FILE__, __LINE__);             \
			printf(__VA_ARGS__);                                                       \
			printf("\n");                                                              \
		}                                                                                  \
	} while (0)

static inline void unit_run(struct unit_ctx *u, const char *name, void (*fn)(struct unit_ctx *))
{
	const char *only = getenv("UNIT_ONLY");

	if (only && *only && !strstr(name, only))
		return;
	u->name = name;
	u->failed_here = 0;
	fn(u);
	if (u->failed_here) {
		u->failed++;
	} else {
		u->passed++;
		printf("ok - %s\n", name);
	}
	fflush(stdout);
}

#define UNIT_RUN(u, fn) unit_run((u), #fn, fn)

static inline int unit_done(struct unit_ctx *u)
{
	return u->failed ? 1 : 0;
}

#endif
