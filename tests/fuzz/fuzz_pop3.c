/*
 * fuzz_pop3 — libFuzzer target for protocols/pop3_reply.c.
 *
 * Input: byte 0 picks the kinds of the replies (two bits each, cycling),
 * byte 1 a split point, the rest is what a server sent. The bytes are
 * read as a run of replies twice, once whole and once in pieces (the
 * split, then at every 7th byte); both runs must yield the same events
 * and stop at the same place. Every status, listing line and body piece
 * goes through the value parsers (STAT, scan and unique-id listings,
 * CAPA, "N octets"), whose results must hold their promises: a unique-id
 * accepted is 1-70 bytes of 0x21-0x7E, a message number is never 0.
 * The reader never consumes past its input, never hands out more body
 * bytes than it consumed, and never buffers a line over POP3_LINE_MAX.
 * Listing lines also go into a pop3_list (as UIDL or LIST by byte 0's
 * top bit, at most 1000 messages): what it accepts is in order, within
 * the cap, and no two messages keep the same unique-id.
 */
#include "protocols/pop3_list.h"
#include "protocols/pop3_reply.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ev {
	uint64_t h; /* FNV-1a over the events */
	uint64_t body;
	struct pop3_list list;
	enum pop3_list_kind lk;
	int list_dead; /* the listing failed: the client would have stopped */
};

/* tag 0: no tag, so body bytes hash the same however they were cut */
static void mix(struct ev *e, const void *p, size_t n, uint8_t tag)
{
	const uint8_t *b = p;

	if (tag)
		e->h = (e->h ^ tag) * 1099511628211ull;
	for (size_t i = 0; i < n; i++)
		e->h = (e->h ^ b[i]) * 1099511628211ull;
}

static void fail(const char *what)
{
	fprintf(stderr, "pop3: %s\n", what);
	abort();
}

static void list_check(const struct pop3_list *l);

static int on_status(void *ctx, const struct pop3_status *st)
{
	struct ev *e = ctx;
	uint32_t c;
	uint64_t s;

	if (st->text_len > POP3_LINE_MAX || st->code_len > POP3_LINE_MAX)
		fail("status longer than a line");
	if (st->kind == POP3_OK && !e->list_dead) {
		list_check(&e->list);
		pop3_list_begin(&e->list, e->lk);
	}
	mix(e, st->text, st->text_len, (uint8_t)(st->kind + 1));
	mix(e, st->code ? st->code : "", st->code_len, 9);
	if (!pop3_parse_stat(st->text, st->text_len, &c, &s) && s > ((uint64_t)1 << 62))
		fail("stat size");
	(void)pop3_parse_octets(st->text, st->text_len, &s);
	return 0;
}

static int on_line(void *ctx, const char *s, size_t n)
{
	struct ev *e = ctx;
	uint32_t m;
	uint64_t sz;
	const char *uid = NULL, *why = NULL;
	size_t ul = 0;

	if (n > POP3_LINE_MAX)
		fail("listing line longer than the cap");
	mix(e, s, n, 20);
	if (!pop3_parse_scan(s, n, &m, &sz) && !m)
		fail("scan msgno 0");
	if (!pop3_parse_uidl(s, n, &m, &uid, &ul, &why)) {
		if (!m || !ul || ul > POP3_UIDL_MAX)
			fail("uidl accepted out of bounds");
		for (size_t i = 0; i < ul; i++)
			if ((unsigned char)uid[i] < 0x21 || (unsigned char)uid[i] > 0x7e)
				fail("uidl accepted a bad byte");
	} else if (!why) {
		fail("uidl refused without a reason");
	}
	(void)pop3_capa_line(s, n);
	if (!e->list_dead) {
		char w[300];
		uint32_t before = e->list.next;
		int rc = pop3_list_line(&e->list, e->lk, s, n, w, sizeof(w));

		if (rc < 0)
			e->list_dead = 1;
		else if (e->list.next <= before || e->list.n > e->list.max)
			fail("listing accepted out of order or over the cap");
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* No two messages of the table keep the same unique-id. */
static void list_check(const struct pop3_list *l)
{
	const char **ids = malloc((l->n + 1) * sizeof(*ids));
	size_t k = 0;

	if (!ids)
		abort();
	for (uint32_t i = 1; i <= l->n; i++) {
		const struct pop3_msg *m = pop3_list_get(l, i);
		const char *why;

		if (!m->uidl[0])
			continue;
		if (pop3_uidl_check(m->uidl, strlen(m->uidl), &why) < 0)
			fail("table holds an invalid unique-id");
		ids[k++] = m->uidl;
	}
	qsort(ids, k, sizeof(*ids), cmp_str);
	for (size_t i = 1; i < k; i++)
		if (!strcmp(ids[i - 1], ids[i]))
			fail("duplicate unique-id kept");
	free(ids);
}

static int on_body(void *ctx, const char *p, size_t n)
{
	struct ev *e = ctx;

	e->body += n;
	mix(e, p, n, 0);
	return 0;
}

/* Reads data[0..n) as replies; returns bytes consumed, events in *e. */
static size_t run(uint8_t kinds, const uint8_t *d, size_t n, size_t split, int pieces, struct ev *e,
                  long *last)
{
	struct pop3_reader_cb cb = {
	    .ctx = e, .status = on_status, .line = on_line, .body = on_body};
	struct pop3_reader r;
	size_t pos = 0;
	unsigned t = 0;

	memset(e, 0, sizeof(*e));
	e->h = 14695981039346656037ull;
	pop3_list_init(&e->list, 1000);
	e->lk = (kinds & 0x80) ? POP3_LIST_SCAN : POP3_LIST_UIDL;
	pop3_reader_init(&r, &cb);
	pop3_reader_start(&r, (enum pop3_kind)((kinds >> (2 * (t % 4))) % 3));
	*last = 0;
	while (pos < n) {
		size_t end = n;
		long k;

		if (pieces)
			end = pos < split ? split : pos + 7;
		if (end > n)
			end = n;
		k = pop3_reader_feed(&r, d + pos, end - pos);
		if (k < 0) {
			*last = k;
			break;
		}
		if ((size_t)k > end - pos)
			fail("consumed more than fed");
		pos += (size_t)k;
		if (r.len > POP3_LINE_MAX)
			fail("buffered over the cap");
		if (pop3_reader_done(&r)) {
			mix(e, &pos, sizeof(pos), 50);
			t++;
			pop3_reader_start(&r, (enum pop3_kind)((kinds >> (2 * (t % 4))) % 3));
		} else if (pos != end) {
			fail("stopped inside a reply");
		}
	}
	if (e->body > pos)
		fail("more body than input");
	if (!e->list_dead)
		list_check(&e->list);
	pop3_list_free(&e->list);
	return pos;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ev a, b;
	long la, lb;
	size_t pa, pb;

	if (size < 2)
		return 0;
	pa = run(data[0], data + 2, size - 2, data[1], 0, &a, &la);
	pb = run(data[0], data + 2, size - 2, data[1], 1, &b, &lb);
	if (la != lb || (!la && pa != pb) || (!la && a.h != b.h) || (!la && a.body != b.body))
		fail("split changed the result");
	return 0;
}
