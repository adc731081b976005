/*
 * fuzz_imap_parse — libFuzzer target for protocols/imap_parse.c.
 *
 * The first three bytes steer the run; the rest is server output. The input
 * is parsed twice: once in a single feed with every literal accepted whole,
 * once in chunks whose sizes come from a PRNG seeded by the steering bytes,
 * with lit_data accepting short counts (sometimes 0) and response() asking
 * for PAUSE at random. Both runs record a canonical dump of every callback;
 * any difference, or a broken tree invariant, aborts.
 */
#include "protocols/imap_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dump {
	char *s;
	size_t len, cap;
};

static void put(struct dump *d, const void *p, size_t n)
{
	if (d->len + n + 1 > d->cap) {
		size_t cap = d->cap ? d->cap : 4096;

		while (cap < d->len + n + 1)
			cap *= 2;
		if (!(d->s = realloc(d->s, cap)))
			abort();
		d->cap = cap;
	}
	memcpy(d->s + d->len, p, n);
	d->len += n;
	d->s[d->len] = '\0';
}

static void putn(struct dump *d, const char *tag, uint64_t v)
{
	char b[40];
	int n = snprintf(b, sizeof(b), "%s%llu", tag, (unsigned long long)v);

	put(d, b, (size_t)n);
}

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "invariant broken: %s\n", what);
		abort();
	}
}

static void put_nodes(struct dump *d, const struct imap_node *n, int depth)
{
	check(depth <= 300, "depth");
	for (; n; n = n->next) {
		put(d, "<", 1);
		putn(d, "", (uint64_t)n->type);
		switch (n->type) {
		case IMAP_NODE_ATOM:
		case IMAP_NODE_STRING:
		case IMAP_NODE_NIL:
			check(n->s && n->s[n->len] == '\0', "NUL-terminated");
			check(n->type != IMAP_NODE_ATOM || n->len > 0, "empty atom");
			check(!n->child, "child on a leaf");
			putn(d, ":", n->len);
			put(d, ":", 1);
			put(d, n->s, n->len);
			if (n->lit_size || n->literal8) {
				check(n->type == IMAP_NODE_STRING && n->lit_size == n->len, "lit_size");
				putn(d, n->literal8 ? "~" : "{", n->lit_size);
			}
			break;
		case IMAP_NODE_LIST:
			put_nodes(d, n->child, depth + 1);
			break;
		case IMAP_NODE_STREAMED:
			check(!n->child && n->len == 0, "streamed node");
			putn(d, n->literal8 ? "~" : "#", n->lit_size);
			break;
		default:
			check(0, "node type");
		}
		put(d, ">", 1);
	}
}

static void put_resp(struct dump *d, const struct imap_resp *r)
{
	putn(d, "k", (uint64_t)r->kind);
	putn(d, "s", (uint64_t)r->status);
	check(r->text != NULL && r->text[r->text_len] == '\0', "text");
	check(memchr(r->text, 0, r->text_len) == NULL, "NUL in text");
	if (r->kind == IMAP_RESP_TAGGED) {
		check(r->tag && r->tag_len && r->tag[r->tag_len] == '\0', "tag");
		put(d, "t", 1);
		put(d, r->tag, r->tag_len);
	}
	check(!r->code || r->code->type == IMAP_NODE_ATOM, "code name");
	check(!r->code || r->status != IMAP_ST_NONE, "code on non-status");
	put(d, "[", 1);
	put_nodes(d, r->code, 0);
	put(d, "]", 1);
	putn(d, "x", r->text_len);
	put(d, r->text, r->text_len);
	put_nodes(d, r->first, 0);
}

struct run {
	struct imap_parser p;
	struct dump d;
	uint64_t rng;
	uint8_t mode_seed;
	int split;	/* the chunked run: short accepts, pauses */
	unsigned nlit;
	uint64_t lit_n, lit_h;
};

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int on_resp(void *ctx, const struct imap_resp *r)
{
	struct run *x = ctx;

	put(&x->d, "\nR", 2);
	put_resp(&x->d, r);
	check(imap_parser_literal_left(&x->p) == 0, "literal_left in response");
	if (x->split && rnd(&x->rng) % 4 == 0)
		return IMAP_PARSE_PAUSE;
	return 0;
}

static int on_lit_begin(void *ctx, const struct imap_resp *r, const struct imap_node *key,
			uint64_t size)
{
	struct run *x = ctx;
	unsigned k = x->nlit++;

	check(!key || !key->next, "key is not the newest token");
	put(&x->d, "\nL", 2);
	putn(&x->d, "", size);
	put_nodes(&x->d, key ? key : NULL, 0);
	put(&x->d, "|", 1);
	put_resp(&x->d, r);
	x->lit_n = 0;
	x->lit_h = 0xcbf29ce484222325ULL;
	/* the same choice in both runs: a function of the literal's index */
	return ((x->mode_seed >> (k % 8)) & 1) ? IMAP_LIT_STREAM : IMAP_LIT_INLINE;
}

static ssize_t on_lit_data(void *ctx, const uint8_t *p, size_t n)
{
	struct run *x = ctx;

	check(n > 0, "empty lit_data");
	check(imap_parser_literal_left(&x->p) >= n, "literal_left");
	if (x->split) {
		uint64_t v = rnd(&x->rng);

		if (v % 8 == 0)
			n = 0;
		else if (v % 2)
			n = 1 + (size_t)(v >> 8) % n;
	}
	for (size_t i = 0; i < n; i++)
		x->lit_h = (x->lit_h ^ p[i]) * 0x100000001b3ULL;
	x->lit_n += n;
	return (ssize_t)n;
}

static int on_lit_end(void *ctx)
{
	struct run *x = ctx;

	check(imap_parser_literal_left(&x->p) == 0, "literal_left at end");
	putn(&x->d, "\nE", x->lit_n);
	putn(&x->d, ":", x->lit_h);
	return 0;
}

static void run_init(struct run *x, const uint8_t *ctl, int split)
{
	struct imap_parser_cb cb = {x, on_resp, on_lit_begin, on_lit_data, on_lit_end};

	memset(x, 0, sizeof(*x));
	x->split = split;
	x->mode_seed = ctl[1];
	x->rng = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)ctl[0] << 8 | ctl[2]) * 0x2545f4914f6cdd1dULL;
	/* small limits so the limit paths are reached */
	if (imap_parser_init(&x->p, &cb, 1 + ctl[2] % 64, ctl[0] & 0x80 ? 2048 : 0) < 0)
		abort();
}

/* Feeds everything; returns the final status. */
static void run_feed(struct run *x, const uint8_t *in, size_t n, uint8_t pattern)
{
	size_t at = 0, stuck = 0;

	while (at < n) {
		size_t k = n - at;
		ssize_t r;

		if (x->split) {
			uint64_t v = rnd(&x->rng);

			switch (pattern % 4) {
			case 0: k = 1; break;
			case 1: k = 1 + v % 7; break;
			case 2: k = 1 + v % 300; break;
			default: k = v % 3 ? 1 + v % 16 : 1 + v % 4096; break;
			}
			if (k > n - at)
				k = n - at;
		}
		r = imap_parse_feed(&x->p, in + at, k);
		if (r < 0) {
			check(r == IMAP_PARSE_EBAD && x->p.err, "error code");
			check(x->p.err_pos <= n, "err_pos");
			put(&x->d, "\nX", 2);
			put(&x->d, x->p.err, strlen(x->p.err));
			putn(&x->d, "@", x->p.err_pos);
			check(imap_parse_feed(&x->p, in, n) == IMAP_PARSE_EBAD, "sticky error");
			return;
		}
		check((size_t)r <= k, "consumed too much");
		at += (size_t)r;
		check(x->p.pos == at, "pos");
		/* lit_data may take 0 once in a while; never forever */
		stuck = r ? 0 : stuck + 1;
		check(stuck < 64, "no progress");
	}
	putn(&x->d, "\nEND", x->p.pos);
	putn(&x->d, "/", imap_parser_literal_left(&x->p));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run a, b;

	if (size < 3)
		return 0;
	run_init(&a, data, 0);
	run_init(&b, data, 1);
	run_feed(&a, data + 3, size - 3, data[0]);
	run_feed(&b, data + 3, size - 3, data[0]);
	if (a.d.len != b.d.len || memcmp(a.d.s, b.d.s, a.d.len)) {
		fprintf(stderr, "whole and split parses differ\n--- whole\n%s\n--- split\n%s\n",
			a.d.s, b.d.s);
		abort();
	}
	/* reset makes a parser usable again */
	imap_parser_reset(&a.p);
	check(imap_parse_feed(&a.p, (const uint8_t *)"* 1 EXISTS\r\n", 12) == 12, "after reset");
	imap_parser_free(&a.p);
	imap_parser_free(&b.p);
	free(a.d.s);
	free(b.d.s);
	return 0;
}
