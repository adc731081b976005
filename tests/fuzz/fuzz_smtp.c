/*
 * fuzz_smtp — libFuzzer target for protocols/smtp_reply.c.
 *
 * The first byte picks a split point; the rest is what a server sent. Fed
 * whole and fed in two pieces (the second piece byte by byte when the
 * first byte is odd), the parser must report the same events with the same
 * codes and texts, never take more than it was given, and keep every bound
 * (line length, lines per reply, text length, code range).
 */
#include "protocols/smtp_reply.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct log {
	uint32_t h; /* hash of every event */
	size_t events;
	int failed;
	uint64_t err_pos;
};

static void fail(const char *what)
{
	fprintf(stderr, "smtp_reply: %s\n", what);
	abort();
}

static void mix(struct log *g, const void *p, size_t n)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++)
		g->h = (g->h ^ s[i]) * 16777619u;
}

static void check(const struct smtp_reply_parser *p, int ev, struct log *g)
{
	const struct smtp_reply *r = &p->reply;

	g->events++;
	mix(g, &ev, sizeof(ev));
	if (ev == SMTP_REPLY_LINE || ev == SMTP_REPLY_DONE) {
		if (!p->line || p->line_len > SMTP_REPLY_LINE_MAX || p->line[p->line_len] != '\0')
			fail("line");
		mix(g, p->line, p->line_len);
	}
	if (ev == SMTP_REPLY_DONE) {
		if (r->code < 200 || r->code > 559 || r->text_len > SMTP_REPLY_TEXT_MAX ||
		    r->text[r->text_len] != '\0' || !r->lines || r->lines > SMTP_REPLY_LINES_MAX)
			fail("reply bounds");
		if (r->ecls &&
		    (r->ecls != (unsigned)r->code / 100 || r->esub > 999 || r->edet > 999))
			fail("enhanced code");
		mix(g, &r->code, sizeof(r->code));
		mix(g, r->text, r->text_len);
		mix(g, &r->ecls, sizeof(r->ecls));
	}
}

static void feed(struct smtp_reply_parser *p, const uint8_t *in, size_t n, size_t step,
                 struct log *g)
{
	size_t at = 0;

	while (at < n && !g->failed) {
		size_t len = step && n - at > step ? step : n - at, used;
		int ev = smtp_reply_feed(p, in + at, len, &used);

		if (used > len)
			fail("used more than given");
		if (ev == SMTP_REPLY_EBAD) {
			g->failed = 1;
			g->err_pos = p->err_pos;
			if (!p->err)
				fail("no reason");
			return;
		}
		if (ev == SMTP_REPLY_MORE && used != len)
			fail("MORE without taking everything");
		if (ev != SMTP_REPLY_MORE) {
			if (!used)
				fail("event without input");
			check(p, ev, g);
		}
		at += used;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply_parser *a, *b;
	struct log ga = {2166136261u, 0, 0, 0}, gb = {2166136261u, 0, 0, 0};
	size_t cut, n;
	const uint8_t *in;

	if (size < 1)
		return 0;
	n = size - 1;
	in = data + 1;
	cut = n ? data[0] % (n + 1) : 0;
	a = malloc(sizeof(*a));
	b = malloc(sizeof(*b));
	if (!a || !b)
		abort();
	smtp_reply_init(a);
	feed(a, in, n, 0, &ga);
	smtp_reply_init(b);
	feed(b, in, cut, 0, &gb);
	feed(b, in + cut, n - cut, data[0] & 1 ? 1 : 0, &gb);
	if (ga.h != gb.h || ga.events != gb.events || ga.failed != gb.failed ||
	    (ga.failed && ga.err_pos != gb.err_pos))
		fail("split changed the result");
	free(a);
	free(b);
	return 0;
}
