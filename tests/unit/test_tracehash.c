/* Unit tests for tracehash: a message sent is recognised under the trace
 * fields a delivering server put on top (and with the final CRLF a DATA
 * transaction added), whatever the chunking; not under any other field. */
#include "store/tracehash.h"
#include "tests/unit/unit.h"

static void nhash(const char *s, size_t n, uint8_t out[32])
{
	struct msghash h;

	msghash_init(&h);
	msghash_begin(&h);
	msghash_update(&h, (const uint8_t *)s, n);
	msghash_end(&h, NULL, out);
	msghash_free(&h);
}

/* 1 if sent's folded digest is among those of delivered, for every split
 * of delivered into three chunks (each split must agree). */
static int found_all_splits(struct unit_ctx *u, const char *delivered, const char *sent)
{
	size_t n = strlen(delivered);
	uint8_t want[32], got[2 * TRACEHASH_MAX][32];
	struct tracehash t;
	int first = -1;

	nhash(sent, strlen(sent), want);
	for (size_t a = 0; a <= n; a++)
		for (size_t b = a; b <= n; b++) {
			const uint8_t *p = (const uint8_t *)delivered;
			size_t k;
			int hit = 0;

			tracehash_begin(&t);
			tracehash_update(&t, p, a);
			tracehash_update(&t, p + a, b - a);
			tracehash_update(&t, p + b, n - b);
			k = tracehash_end(&t, got);
			UNIT_CHECK(u, k <= 2 * TRACEHASH_MAX);
			for (size_t i = 0; i < k; i++)
				hit |= !memcmp(got[i], want, 32);
			if (first < 0)
				first = hit;
			UNIT_CHECKF(u, hit == first, "split %zu/%zu of %s disagrees", a, b,
			            delivered);
		}
	tracehash_free(&t);
	return first;
}

static void test_as_sent(struct unit_ctx *u)
{
	const char *m = "From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n";

	UNIT_CHECK(u, found_all_splits(u, m, m));
	UNIT_CHECK(u, found_all_splits(u, "", ""));
	UNIT_CHECK(u, found_all_splits(u, "x", "x"));
	UNIT_CHECK(u, found_all_splits(u, " leading blank\r\n", " leading blank\r\n"));
}

static void test_under_trace_fields(struct unit_ctx *u)
{
	const char *m = "From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n";
	char d[1024];

	/* Dovecot's LMTP: Return-Path, Delivered-To, a folded Received */
	snprintf(d, sizeof(d),
	         "Return-Path: <a@example.org>\r\nDelivered-To: u1\r\nReceived: from x\r\n"
	         "\tby y with LMTP id 1\r\n\t; Sun, 6 Dec 2026 20:00:00 +0000\r\n%s",
	         m);
	UNIT_CHECK(u, found_all_splits(u, d, m));
	/* Postfix, then Dovecot: more of them, case as it comes */
	snprintf(d, sizeof(d),
	         "return-path: <>\r\nDELIVERED-TO: u1@x\r\nX-Original-To: u1@x\r\nReceived: a\r\n"
	         "Received: b\n c\r\n%s",
	         m);
	UNIT_CHECK(u, found_all_splits(u, d, m));
	/* the original's own trace fields stay its own */
	snprintf(d, sizeof(d), "Return-Path: <new>\r\nReturn-Path: <old>\r\nReceived: old\r\n%s",
	         m);
	UNIT_CHECK(u, found_all_splits(u, d, d + strlen("Return-Path: <new>\r\n")));
	/* bare LF lines and 8-bit bytes in the original's header */
	UNIT_CHECK(u, found_all_splits(u, "Received: x\nSubject: Gr\xc3\xbc\xdf\xe9\n\nb\n",
	                               "Subject: Gr\xc3\xbc\xdf\xe9\n\nb\n"));
	/* a message with no header at all, under a trace field */
	UNIT_CHECK(u, found_all_splits(u, "Delivered-To: u\r\n\r\nonly a body", "\r\nonly a body"));
}

static void test_final_crlf_added(struct unit_ctx *u)
{
	const char *m = "Subject: no final newline\r\n\r\nfirst\r\n.last starts with a dot";
	char d[512];

	snprintf(d, sizeof(d), "Return-Path: <>\r\nDelivered-To: u2\r\n%s\r\n", m);
	UNIT_CHECK(u, found_all_splits(u, d, m));
	snprintf(d, sizeof(d), "%s\r\n", m);
	UNIT_CHECK(u, found_all_splits(u, d, m));
	/* ... and only that: a message that ends in CRLF is not also one without */
	UNIT_CHECK(u,
	           !found_all_splits(u, "Subject: a\r\n\r\nb\r\n", "Subject: a\r\n\r\nb\r\n\r\n"));
	UNIT_CHECK(u, found_all_splits(u, "Subject: a\r\n\r\nb\r\n", "Subject: a\r\n\r\nb"));
}

static void test_not_found(struct unit_ctx *u)
{
	const char *m = "From: a@example.org\r\n\r\nbody\r\n";
	char d[512];

	/* a field that is no trace field ends the block */
	snprintf(d, sizeof(d), "X-Spam: yes\r\n%s", m);
	UNIT_CHECK(u, !found_all_splits(u, d, m));
	snprintf(d, sizeof(d), "Received: a\r\nX-Spam: yes\r\nReceived: b\r\n%s", m);
	UNIT_CHECK(u, !found_all_splits(u, d, m));
	/* a continuation line is no start */
	UNIT_CHECK(u, !found_all_splits(u, "Received: a\r\n b\r\n", " b\r\n"));
	/* another body */
	snprintf(d, sizeof(d), "Received: a\r\nFrom: a@example.org\r\n\r\nbody!\r\n");
	UNIT_CHECK(u, !found_all_splits(u, d, m));
	/* a name longer than any trace field's is none */
	UNIT_CHECK(u, !found_all_splits(u, "Received-Much-Longer-Name: a\r\nS: b\r\n", "S: b\r\n"));
}

static void test_many_fields(struct unit_ctx *u)
{
	char d[4096];
	size_t o = 0;
	const char *m = "S: x\r\n\r\n";

	/* more trace fields than starts: the original is past the last one */
	for (int i = 0; i < TRACEHASH_MAX + 2; i++)
		o += (size_t)snprintf(d + o, sizeof(d) - o, "Received: %d\r\n", i);
	snprintf(d + o, sizeof(d) - o, "%s", m);
	UNIT_CHECK(u, !found_all_splits(u, d, m));
	/* as many as fit: found */
	o = 0;
	for (int i = 0; i < TRACEHASH_MAX - 1; i++)
		o += (size_t)snprintf(d + o, sizeof(d) - o, "Received: %d\r\n", i);
	snprintf(d + o, sizeof(d) - o, "%s", m);
	UNIT_CHECK(u, found_all_splits(u, d, m));
}

static void test_is_trace(struct unit_ctx *u)
{
	UNIT_CHECK(u, tracehash_is_trace("received", 8));
	UNIT_CHECK(u, tracehash_is_trace("X-ORIGINAL-TO", 13));
	UNIT_CHECK(u, !tracehash_is_trace("Received-SPF", 12));
	UNIT_CHECK(u, !tracehash_is_trace("Receive", 7));
	UNIT_CHECK(u, !tracehash_is_trace("", 0));
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, test_as_sent);
	UNIT_RUN(&u, test_under_trace_fields);
	UNIT_RUN(&u, test_final_crlf_added);
	UNIT_RUN(&u, test_not_found);
	UNIT_RUN(&u, test_many_fields);
	UNIT_RUN(&u, test_is_trace);
	return unit_done(&u);
}
