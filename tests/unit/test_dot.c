/*
 * test_dot — dot-stuffing and unstuffing (protocols/dot.c): known cases,
 * every split point of a stream, and the terminator followed by the next
 * response's bytes.
 */
#include "protocols/dot.h"
#include "tests/unit/unit.h"

struct sink_buf {
	char b[4096];
	size_t n;
};

static int to_buf(void *ctx, const char *p, size_t n)
{
	struct sink_buf *s = ctx;

	if (s->n + n > sizeof(s->b))
		return -1;
	memcpy(s->b + s->n, p, n);
	s->n += n;
	return 0;
}

static size_t stuff_split(const char *in, size_t n, size_t cut, struct sink_buf *out)
{
	struct dot_stuff d;

	out->n = 0;
	dot_stuff_init(&d);
	if (dot_stuff_feed(&d, in, cut, to_buf, out) || dot_stuff_feed(&d, in + cut, n - cut, to_buf, out) ||
	    dot_stuff_end(&d, to_buf, out))
		return (size_t)-1;
	return out->n;
}

static void t_stuff_known(struct unit_ctx *u)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"", "\r\n.\r\n"},
	    {"a\r\n", "a\r\n.\r\n"},
	    {".\r\n", "..\r\n.\r\n"},
	    {"a\r\n.b\r\n..c", "a\r\n..b\r\n...c\r\n.\r\n"},
	    {"x\n.y\n", "x\n..y\n\r\n.\r\n"},
	    {"no end", "no end\r\n.\r\n"},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		size_t n = strlen(cases[k].in);
		for (size_t cut = 0; cut <= n; cut++) {
			struct sink_buf o;
			size_t got = stuff_split(cases[k].in, n, cut, &o);
			UNIT_CHECKF(u, got == strlen(cases[k].out) && !memcmp(o.b, cases[k].out, got),
				    "case %zu cut %zu: %.*s", k, cut, (int)o.n, o.b);
		}
	}
}

static void t_unstuff_known(struct unit_ctx *u)
{
	const char *wire = "a\r\n..b\r\n.\rc\r\n..\r\n.\r\n+OK next\r\n";
	const char *want = "a\r\n.b\r\n\rc\r\n.\r\n";
	size_t n = strlen(wire), end = strlen(wire) - strlen("+OK next\r\n");

	for (size_t cut = 0; cut <= n; cut++) {
		struct dot_unstuff d;
		struct sink_buf o = {.n = 0};
		long a, b = 0;

		dot_unstuff_init(&d);
		a = dot_unstuff_feed(&d, wire, cut, to_buf, &o);
		if (a == (long)cut)
			b = dot_unstuff_feed(&d, wire + cut, n - cut, to_buf, &o);
		UNIT_CHECKF(u, a >= 0 && b >= 0 && (size_t)(a + b) == end, "cut %zu: consumed %ld+%ld", cut, a, b);
		UNIT_CHECKF(u, dot_unstuff_done(&d), "cut %zu: not done", cut);
		UNIT_CHECKF(u, o.n == strlen(want) && !memcmp(o.b, want, o.n), "cut %zu: %.*s", cut, (int)o.n,
			    o.b);
	}
}

static void t_roundtrip(struct unit_ctx *u)
{
	const char *msgs[] = {"", ".", "..\r\n", "\r\n.\r\n", "a\r\n.\r\nb", ".\n.\r\n.", "x\r"};

	for (size_t k = 0; k < sizeof(msgs) / sizeof(msgs[0]); k++) {
		size_t n = strlen(msgs[k]);
		struct sink_buf s, o = {.n = 0};
		struct dot_unstuff d;
		size_t sn = stuff_split(msgs[k], n, n / 2, &s);
		long c;

		dot_unstuff_init(&d);
		c = dot_unstuff_feed(&d, s.b, sn, to_buf, &o);
		UNIT_CHECKF(u, c == (long)sn && dot_unstuff_done(&d), "msg %zu: consumed %ld of %zu", k, c, sn);
		bool crlf = n >= 2 && msgs[k][n - 2] == '\r' && msgs[k][n - 1] == '\n';
		size_t wn = n + (crlf ? 0 : 2);
		UNIT_CHECKF(u, o.n == wn && !memcmp(o.b, msgs[k], n), "msg %zu", k);
	}
}

static void t_emit_error(struct unit_ctx *u)
{
	struct dot_stuff d;
	struct dot_unstuff e;
	struct sink_buf full = {.n = sizeof(full.b)};

	dot_stuff_init(&d);
	UNIT_CHECK(u, dot_stuff_feed(&d, "x", 1, to_buf, &full) == -1);
	dot_unstuff_init(&e);
	UNIT_CHECK(u, dot_unstuff_feed(&e, "x", 1, to_buf, &full) == -1);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_stuff_known);
	UNIT_RUN(&u, t_unstuff_known);
	UNIT_RUN(&u, t_roundtrip);
	UNIT_RUN(&u, t_emit_error);
	return unit_done(&u);
}
