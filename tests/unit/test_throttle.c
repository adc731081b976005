/* Unit tests for protocols/throttle.c: the signals and hints servers send. */
#include "protocols/throttle.h"
#include "tests/unit/unit.h"

static int p(const char *code, const char *text, struct throttle_hint *h)
{
	return throttle_parse(code, code ? strlen(code) : 0, text, text ? strlen(text) : 0, h);
}

static void test_rfc5530_codes(struct unit_ctx *u)
{
	struct throttle_hint h;

	UNIT_CHECK(u, p("THROTTLED", "Slow down", &h) == 1 && h.throttled && h.ms == 0);
	UNIT_CHECK(u, p("unavailable", "backend down", &h) == 1 && h.ms == 0);
	UNIT_CHECK(u, p("OVERQUOTA", "quota", &h) == 0 && !h.throttled);
	UNIT_CHECK(u, p("THROTTLEDX", "x", &h) == 0);
	UNIT_CHECK(u, p(NULL, "Mailbox does not exist", &h) == 0);
	UNIT_CHECK(u, p(NULL, NULL, &h) == 0);
}

static void test_m365_hint(struct unit_ctx *u)
{
	struct throttle_hint h;

	UNIT_CHECK(u, p(NULL, "Request is throttled. Suggested Backoff Time: 1500 milliseconds", &h) ==
			  1 && h.ms == 1500);
	UNIT_CHECK(u, p("THROTTLED", "Request is throttled. Suggested Backoff Time: 277 milliseconds.",
			&h) == 1 && h.ms == 277);
	UNIT_CHECK(u, p(NULL, "request is THROTTLED", &h) == 1 && h.ms == 0);
	UNIT_CHECK(u, p(NULL, "suggested backoff time:42", &h) == 1 && h.ms == 42);
	UNIT_CHECK(u, p(NULL, "Suggested Backoff Time: 3 seconds", &h) == 1 && h.ms == 3000);
	UNIT_CHECK(u, p(NULL, "Suggested Backoff Time: 3 s", &h) == 1 && h.ms == 3000);
	UNIT_CHECK(u, p(NULL, "Suggested Backoff Time: 3 ms", &h) == 1 && h.ms == 3);
	UNIT_CHECK(u, p(NULL, "Suggested Backoff Time: 3 sausages", &h) == 1 && h.ms == 3);
	UNIT_CHECK(u, p(NULL, "Suggested Backoff Time: soon", &h) == 1 && h.ms == 0);
}

static void test_hint_bounded(struct unit_ctx *u)
{
	struct throttle_hint h;

	UNIT_CHECK(u, p(NULL, "Suggested Backoff Time: 99999999999999999999999999 milliseconds", &h) ==
			  1 && h.ms == THROTTLE_HINT_MAX_MS);
	UNIT_CHECK(u, p(NULL, "Suggested Backoff Time: 900000 milliseconds", &h) == 1 &&
			  h.ms == THROTTLE_HINT_MAX_MS);
	UNIT_CHECK(u, p(NULL, "Suggested Backoff Time: 999999999999 seconds", &h) == 1 &&
			  h.ms == THROTTLE_HINT_MAX_MS);
	/* a text with a NUL and no terminator: only n bytes are read */
	UNIT_CHECK(u, throttle_parse(NULL, 0, "Suggested Backoff Time: 12\0" "34", 29, &h) == 1 &&
			  h.ms == 12);
	UNIT_CHECK(u, throttle_parse(NULL, 0, "Suggested Backoff Time: 1234", 26, &h) == 1 &&
			  h.ms == 12);
}

static void test_line(struct unit_ctx *u)
{
	struct throttle_hint h;
	const char *a = "destination d@h: server throttles: [THROTTLED] Request is throttled. "
			"Suggested Backoff Time: 1500 milliseconds";
	const char *b = "source s@h: login refused: [UNAVAILABLE] try later";
	const char *c = "source s@h: server said BYE: Logging out";

	UNIT_CHECK(u, throttle_parse_line(a, strlen(a), &h) == 1 && h.ms == 1500);
	UNIT_CHECK(u, throttle_parse_line(b, strlen(b), &h) == 1 && h.ms == 0);
	UNIT_CHECK(u, throttle_parse_line(c, strlen(c), &h) == 0 && !h.throttled);
	UNIT_CHECK(u, throttle_parse_line(NULL, 5, &h) == 0);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, test_rfc5530_codes);
	UNIT_RUN(&u, test_m365_hint);
	UNIT_RUN(&u, test_hint_bounded);
	UNIT_RUN(&u, test_line);
	return unit_done(&u);
}
