/*
 * tracehash — digests of a delivered message from each start its trace
 * fields allow (see tracehash.h).
 *
 * The header block is read a byte at a time only while starts may still
 * come (a few hundred bytes: the trace fields); the rest of the message
 * goes to each begun digest in bulk. Every digest lags two bytes behind
 * what was seen: those are the message's last two bytes at the end, fed
 * or left off (a final CRLF a DATA transaction added).
 */
#include "store/tracehash.h"

#include <openssl/crypto.h>

#include <string.h>
#include <strings.h>

enum { ST_LS, ST_NAME, ST_REST };

/* RFC 5321 §4.4 (Return-Path, Received); Delivered-To (Dovecot's LMTP,
 * Postfix's local and virtual delivery) and X-Original-To (Postfix). */
static const char *const trace_names[] = {"Return-Path", "Received", "Delivered-To",
                                          "X-Original-To"};

int tracehash_is_trace(const char *name, size_t n)
{
	for (size_t i = 0; i < sizeof(trace_names) / sizeof(trace_names[0]); i++)
		if (strlen(trace_names[i]) == n && !strncasecmp(trace_names[i], name, n))
			return 1;
	return 0;
}

static void add_start(struct tracehash *t, uint64_t at)
{
	if (t->n == TRACEHASH_MAX) {
		t->block = 0;
		return;
	}
	msghash_begin(&t->h[t->n]);
	t->start[t->n++] = at;
}

void tracehash_begin(struct tracehash *t)
{
	t->n = 0;
	t->off = 0;
	t->ntail = 0;
	t->st = ST_LS;
	t->block = 1;
	t->nname = 0;
	add_start(t, 0); /* the message as it came: no trace field added */
}

/* The header block: a start at each field line, until a field that is not
 * a trace field (its line is the last start), the header's end, or a line
 * that is no field at all. */
static void parse(struct tracehash *t, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n && t->block; i++) {
		uint64_t at = t->off + i;
		uint8_t c = p[i];

		switch (t->st) {
		case ST_LS:
			if (c == ' ' || c == '\t') {
				if (!at)
					t->block = 0; /* no header: only the message itself */
				t->st = ST_REST;
				break;
			}
			if (at)
				add_start(t, at);
			if (c == '\r' || c == '\n') {
				t->block = 0; /* the header's end */
				break;
			}
			t->name[0] = (char)c;
			t->nname = 1;
			t->st = ST_NAME;
			break;
		case ST_NAME:
			if (c == ':') {
				if (!tracehash_is_trace(t->name, t->nname))
					t->block = 0;
				t->st = ST_REST;
			} else if (c > 32 && c < 127 && t->nname < TRACEHASH_NAME_MAX) {
				t->name[t->nname++] = (char)c;
			} else {
				t->block = 0; /* not a field name, or too long for a trace one */
			}
			break;
		default:
			if (c == '\n')
				t->st = ST_LS;
			break;
		}
	}
}

/* Bytes at stream offset base go to every digest begun at or before them. */
static void feed(struct tracehash *t, uint64_t base, const uint8_t *q, size_t len)
{
	for (unsigned i = 0; i < t->n && len; i++) {
		uint64_t skip = t->start[i] > base ? t->start[i] - base : 0;

		if (skip < len)
			msghash_update(&t->h[i], q + skip, len - (size_t)skip);
	}
}

void tracehash_update(struct tracehash *t, const uint8_t *p, size_t n)
{
	size_t total = t->ntail + n, flen = total >= 2 ? total - 2 : 0;
	size_t f1 = flen < t->ntail ? flen : t->ntail, f2 = flen - f1;
	uint64_t base = t->off - t->ntail;
	uint8_t nt[2];
	size_t keep = total - flen;

	if (!n)
		return;
	parse(t, p, n);
	/* the new tail: the last `keep` bytes of tail || p */
	for (size_t k = 0; k < keep; k++) {
		size_t v = flen + k; /* index into tail || p */

		nt[k] = v < t->ntail ? t->tail[v] : p[v - t->ntail];
	}
	feed(t, base, t->tail, f1);
	feed(t, base + f1, p, f2);
	memcpy(t->tail, nt, keep);
	t->ntail = (unsigned)keep;
	t->off += n;
}

size_t tracehash_end(struct tracehash *t, uint8_t out[][32])
{
	uint64_t base = t->off - t->ntail;
	int crlf = t->ntail == 2 && t->tail[0] == '\r' && t->tail[1] == '\n';
	size_t k = 0;

	for (unsigned i = 0; i < t->n; i++) {
		struct msghash whole = t->h[i];
		uint64_t skip = t->start[i] > base ? t->start[i] - base : 0;

		if (skip < t->ntail)
			msghash_update(&whole, t->tail + skip, t->ntail - (size_t)skip);
		msghash_end(&whole, NULL, out[k++]);
		OPENSSL_cleanse(&whole, sizeof(whole));
		if (crlf && t->start[i] < base)
			msghash_end(&t->h[i], NULL, out[k++]);
	}
	t->n = 0;
	return k;
}

void tracehash_free(struct tracehash *t)
{
	OPENSSL_cleanse(t, sizeof(*t));
}
