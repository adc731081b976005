/*
 * test_pop3 — the POP3 reply reader and value parsers (protocols/
 * pop3_reply.c): a transcript of replies of every kind fed whole, split at
 * every byte and one byte at a time must give the same events; line caps;
 * a reply never consumes the next one's bytes; status, scan, unique-id,
 * STAT and CAPA values; the listing table (protocols/pop3_list.c): order,
 * cap, refused and duplicate unique-ids, growth past many messages.
 */
#include "protocols/pop3_list.h"
#include "protocols/pop3_reply.h"
#include "tests/unit/unit.h"

#include <errno.h>
#include <stdint.h>

/* Events as text: "S+:text" status, "L:line", "B:bytes" body pieces
 * (adjacent pieces merged), "E" end of a reply. */
struct rec {
	char log[8192];
	size_t n;
	int last_body;
	int fail_at_line; /* return -5 from the n-th line callback (1-based) */
	int lines;
};

static void put(struct rec *r, const char *s, size_t n)
{
	if (r->n + n < sizeof(r->log)) {
		memcpy(r->log + r->n, s, n);
		r->n += n;
		r->log[r->n] = '\0';
	}
}

static int on_status(void *ctx, const struct pop3_status *st)
{
	struct rec *r = ctx;
	static const char *k[] = {"S-:", "S+:", "S~:"};

	r->last_body = 0;
	put(r, k[st->kind], 3);
	if (st->code_len) {
		put(r, "[", 1);
		put(r, st->code, st->code_len);
		put(r, "]", 1);
	}
	put(r, st->text, st->text_len);
	put(r, "|", 1);
	return 0;
}

static int on_line(void *ctx, const char *s, size_t n)
{
	struct rec *r = ctx;

	r->last_body = 0;
	if (r->fail_at_line && ++r->lines == r->fail_at_line)
		return -5;
	put(r, "L:", 2);
	put(r, s, n);
	put(r, "|", 1);
	return 0;
}

static int on_body(void *ctx, const char *p, size_t n)
{
	struct rec *r = ctx;

	if (!r->last_body) {
		put(r, "B:", 2);
		r->last_body = 1;
	} else if (r->n) {
		r->n--; /* drop the "|" and go on with the same piece */
	}
	put(r, p, n);
	put(r, "|", 1);
	return 0;
}

static const struct {
	enum pop3_kind kind;
	const char *wire;
} transcript[] = {
    {POP3_KIND_SINGLE, "+OK Dovecot ready.\r\n"},
    {POP3_KIND_LINES, "+OK\r\nCAPA\r\nPIPELINING\r\nSASL PLAIN LOGIN\r\n.\r\n"},
    {POP3_KIND_SINGLE, "+OK 2 320\r\n"},
    {POP3_KIND_LINES, "+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 ..dotted\r\n..stuffed\r\n.\r\n"},
    {POP3_KIND_BODY, "+OK 30 octets\r\nSubject: x\r\n\r\n..dot\r\n..\r\nend\r\n.\r\n"},
    {POP3_KIND_BODY, "-ERR [SYS/TEMP] no such message\r\n"},
    {POP3_KIND_SINGLE, "+ \r\n"},
    {POP3_KIND_BODY, "+OK\r\nno final\r\n.\r\n"},
    {POP3_KIND_LINES, "+OK\n1 100\n.\n"}, /* bare LFs, taken as line ends */
    {POP3_KIND_BODY, "+OK\r\n.\r\r\n.x\r\n.\r\n"},
};
#define NT (sizeof(transcript) / sizeof(transcript[0]))

static const char *expect_log = "S+:Dovecot ready.|E"
                                "S+:|L:CAPA|L:PIPELINING|L:SASL PLAIN LOGIN|E"
                                "S+:2 320|E"
                                "S+:|L:1 whqtswO00WBw418f9t5JxYwZ|L:2 ..dotted|L:.stuffed|E"
                                "S+:30 octets|B:Subject: x\r\n\r\n.dot\r\n.\r\nend\r\n|E"
                                "S-:[SYS/TEMP]no such message|E"
                                "S~:|E"
                                "S+:|B:no final\r\n|E"
                                "S+:|L:1 100|E"
                                "S+:|B:\r\r\nx\r\n|E";

/* Feeds the whole transcript as one stream cut at the given points. */
static int run(struct rec *rec, const char *all, size_t len, const size_t *cuts, size_t ncuts)
{
	struct pop3_reader_cb cb = {
	    .ctx = rec, .status = on_status, .line = on_line, .body = on_body};
	struct pop3_reader r;
	size_t t = 0, pos = 0, ci = 0;

	memset(rec, 0, sizeof(*rec));
	pop3_reader_init(&r, &cb);
	pop3_reader_start(&r, transcript[0].kind);
	while (pos < len) {
		size_t end = ci < ncuts ? cuts[ci] : len;
		long k;

		if (end <= pos) {
			ci++;
			continue;
		}
		k = pop3_reader_feed(&r, (const uint8_t *)all + pos, end - pos);
		if (k < 0)
			return (int)k;
		pos += (size_t)k;
		if (pop3_reader_done(&r)) {
			put(rec, "E", 1);
			rec->last_body = 0;
			if (++t < NT)
				pop3_reader_start(&r, transcript[t].kind);
		} else if ((size_t)k != end - pos + (size_t)k) {
			return -100; /* stopped early without finishing a reply */
		}
	}
	return t == NT ? 0 : -101;
}

static size_t concat(char *buf, size_t cap)
{
	size_t n = 0;

	for (size_t i = 0; i < NT; i++) {
		size_t l = strlen(transcript[i].wire);

		if (n + l > cap)
			return 0;
		memcpy(buf + n, transcript[i].wire, l);
		n += l;
	}
	return n;
}

static void t_transcript_whole(struct unit_ctx *u)
{
	char all[2048];
	size_t n = concat(all, sizeof(all));
	struct rec rec;

	UNIT_CHECK(u, run(&rec, all, n, NULL, 0) == 0);
	UNIT_CHECKF(u, !strcmp(rec.log, expect_log), "got %s", rec.log);
}

static void t_transcript_every_split(struct unit_ctx *u)
{
	char all[2048];
	size_t n = concat(all, sizeof(all));

	for (size_t cut = 0; cut <= n; cut++) {
		struct rec rec;
		size_t cuts[1] = {cut};
		int rc = run(&rec, all, n, cuts, 1);

		UNIT_CHECKF(u, rc == 0 && !strcmp(rec.log, expect_log), "cut %zu: rc %d, %s", cut,
		            rc, rec.log);
	}
	for (size_t a = 0; a <= n; a += 7)
		for (size_t b = a; b <= n; b += 5) {
			struct rec rec;
			size_t cuts[2] = {a, b};
			int rc = run(&rec, all, n, cuts, 2);

			UNIT_CHECKF(u, rc == 0 && !strcmp(rec.log, expect_log),
			            "cuts %zu %zu: rc %d", a, b, rc);
		}
}

static void t_transcript_bytewise(struct unit_ctx *u)
{
	char all[2048];
	size_t n = concat(all, sizeof(all)), cuts[2048];
	struct rec rec;

	for (size_t i = 0; i < n; i++)
		cuts[i] = i + 1;
	UNIT_CHECK(u, run(&rec, all, n, cuts, n) == 0);
	UNIT_CHECKF(u, !strcmp(rec.log, expect_log), "got %s", rec.log);
}

/* A reply never eats the next one's bytes. */
static void t_stops_at_reply_end(struct unit_ctx *u)
{
	struct rec rec = {0};
	struct pop3_reader_cb cb = {
	    .ctx = &rec, .status = on_status, .line = on_line, .body = on_body};
	struct pop3_reader r;
	const char *two = "+OK\r\nx\r\n.\r\n+OK 1 2\r\n";
	long k;

	pop3_reader_init(&r, &cb);
	pop3_reader_start(&r, POP3_KIND_BODY);
	k = pop3_reader_feed(&r, (const uint8_t *)two, strlen(two));
	UNIT_CHECK(u, k == 11 && pop3_reader_done(&r));
	/* done: nothing more is consumed until the next start */
	UNIT_CHECK(u, pop3_reader_feed(&r, (const uint8_t *)two + k, strlen(two) - (size_t)k) == 0);
	pop3_reader_start(&r, POP3_KIND_SINGLE);
	k = pop3_reader_feed(&r, (const uint8_t *)two + 11, strlen(two) - 11);
	UNIT_CHECK(u, k == 9 && pop3_reader_done(&r));
	pop3_reader_start(&r, POP3_KIND_LINES);
	k = pop3_reader_feed(&r, (const uint8_t *)"-ERR no\r\n1 x\r\n", 14);
	UNIT_CHECK(u, k == 9 && pop3_reader_done(&r)); /* -ERR: single line */
}

static void t_line_caps(struct unit_ctx *u)
{
	struct rec rec = {0};
	struct pop3_reader_cb cb = {
	    .ctx = &rec, .status = on_status, .line = on_line, .body = on_body};
	struct pop3_reader r;
	char big[POP3_LINE_MAX + 10];

	/* exactly the cap, CRLF included: fine, split anywhere */
	memset(big, 'x', sizeof(big));
	memcpy(big, "+OK ", 4);
	memcpy(big + POP3_LINE_MAX - 2, "\r\n", 2);
	for (size_t cut = 0; cut <= POP3_LINE_MAX; cut += 13) {
		long a, b;

		pop3_reader_init(&r, &cb);
		pop3_reader_start(&r, POP3_KIND_SINGLE);
		a = pop3_reader_feed(&r, (const uint8_t *)big, cut);
		b = pop3_reader_feed(&r, (const uint8_t *)big + cut, POP3_LINE_MAX - cut);
		UNIT_CHECKF(u, a >= 0 && b >= 0 && pop3_reader_done(&r), "cut %zu", cut);
	}
	/* one more byte before the LF: refused, however it arrives */
	big[POP3_LINE_MAX - 2] = 'x';
	big[POP3_LINE_MAX - 1] = '\r';
	big[POP3_LINE_MAX] = '\n';
	for (size_t cut = 0; cut <= POP3_LINE_MAX + 1; cut += 11) {
		long a, b = 0;

		pop3_reader_init(&r, &cb);
		pop3_reader_start(&r, POP3_KIND_SINGLE);
		a = pop3_reader_feed(&r, (const uint8_t *)big, cut);
		if (a >= 0)
			b = pop3_reader_feed(&r, (const uint8_t *)big + cut,
			                     POP3_LINE_MAX + 1 - cut);
		UNIT_CHECKF(u,
		            (a == POP3_EBAD || b == POP3_EBAD) && !strcmp(r.err, "line too long"),
		            "cut %zu: %ld %ld", cut, a, b);
	}
	/* a listing line is capped the same way; a body line is not */
	pop3_reader_init(&r, &cb);
	pop3_reader_start(&r, POP3_KIND_LINES);
	UNIT_CHECK(u, pop3_reader_feed(&r, (const uint8_t *)"+OK\r\n", 5) == 5);
	UNIT_CHECK(u, pop3_reader_feed(&r, (const uint8_t *)big, sizeof(big)) == POP3_EBAD);
	pop3_reader_init(&r, &cb);
	pop3_reader_start(&r, POP3_KIND_BODY);
	UNIT_CHECK(u, pop3_reader_feed(&r, (const uint8_t *)"+OK\r\n", 5) == 5);
	for (int i = 0; i < 100; i++)
		UNIT_CHECK(u, pop3_reader_feed(&r, (const uint8_t *)big, sizeof(big)) ==
		                  (long)sizeof(big));
	UNIT_CHECK(u, !pop3_reader_done(&r) && r.body_bytes == 100 * sizeof(big));
}

static void t_bad_status(struct unit_ctx *u)
{
	static const char *bad[] = {"HELLO\r\n", "+OKAY\r\n", "-ERROR x\r\n", "OK\r\n",
	                            "\r\n",      "+x\r\n",    "* OK imap\r\n"};
	struct rec rec = {0};
	struct pop3_reader_cb cb = {.ctx = &rec, .status = on_status};
	struct pop3_reader r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		pop3_reader_init(&r, &cb);
		pop3_reader_start(&r, POP3_KIND_SINGLE);
		UNIT_CHECKF(
		    u, pop3_reader_feed(&r, (const uint8_t *)bad[i], strlen(bad[i])) == POP3_EBAD,
		    "%s", bad[i]);
		/* and it stays failed */
		UNIT_CHECK(u, pop3_reader_feed(&r, (const uint8_t *)"+OK\r\n", 5) == POP3_EBAD);
	}
}

static void t_callback_error(struct unit_ctx *u)
{
	struct rec rec = {0};
	struct pop3_reader_cb cb = {.ctx = &rec, .status = on_status, .line = on_line};
	struct pop3_reader r;
	const char *s = "+OK\r\n1 a\r\n2 b\r\n.\r\n";

	rec.fail_at_line = 2;
	pop3_reader_init(&r, &cb);
	pop3_reader_start(&r, POP3_KIND_LINES);
	UNIT_CHECK(u, pop3_reader_feed(&r, (const uint8_t *)s, strlen(s)) == -5);
}

static void t_status_values(struct unit_ctx *u)
{
	struct pop3_status st;

	UNIT_CHECK(u,
	           pop3_status_parse("+OK", 3, &st) == 0 && st.kind == POP3_OK && st.text_len == 0);
	UNIT_CHECK(u, pop3_status_parse("-ERR [IN-USE] locked", 20, &st) == 0 &&
	                  st.kind == POP3_ERR && st.code_len == 6 &&
	                  !memcmp(st.code, "IN-USE", 6) && st.text_len == 6 &&
	                  !memcmp(st.text, "locked", 6));
	UNIT_CHECK(u, pop3_status_parse("-ERR [AUTH/X]", 13, &st) == 0 && st.code_len == 6 &&
	                  !st.text_len);
	UNIT_CHECK(u, pop3_status_parse("-ERR [unclosed", 14, &st) == 0 && !st.code_len &&
	                  st.text_len == 9);
	UNIT_CHECK(u, pop3_status_parse("+ ", 2, &st) == 0 && st.kind == POP3_CONT);
	UNIT_CHECK(u, pop3_status_parse("+", 1, &st) == 0 && st.kind == POP3_CONT);
	UNIT_CHECK(u, pop3_status_parse("+OK\x00x", 5, &st) < 0);
	UNIT_CHECK(u, pop3_status_parse("", 0, &st) < 0);
}

static void t_listing_values(struct unit_ctx *u)
{
	uint32_t m, cnt;
	uint64_t sz;
	const char *uid, *why;
	size_t ul;
	char s70[80], s71[80];

	UNIT_CHECK(u, pop3_parse_scan("1 120", 5, &m, &sz) == 0 && m == 1 && sz == 120);
	UNIT_CHECK(u, pop3_parse_scan("7 120 extra", 11, &m, &sz) == 0 && m == 7 && sz == 120);
	UNIT_CHECK(u, pop3_parse_scan("0 120", 5, &m, &sz) < 0);
	UNIT_CHECK(u, pop3_parse_scan("1 -3", 4, &m, &sz) < 0);
	UNIT_CHECK(u, pop3_parse_scan("1  3", 4, &m, &sz) < 0);
	UNIT_CHECK(u, pop3_parse_scan("4294967296 1", 12, &m, &sz) < 0);
	UNIT_CHECK(u, pop3_parse_scan("4294967295 1", 12, &m, &sz) == 0 && m == UINT32_MAX);
	UNIT_CHECK(u, pop3_parse_scan("1 99999999999999999999999", 25, &m, &sz) < 0);
	UNIT_CHECK(u, pop3_parse_scan("1", 1, &m, &sz) < 0);

	UNIT_CHECK(u, pop3_parse_uidl("2 QhdPYR:00WBw1Ph7x7", 20, &m, &uid, &ul, &why) == 0 &&
	                  m == 2 && ul == 18 && !memcmp(uid, "QhdPYR:00WBw1Ph7x7", 18));
	memset(s70, 'a', sizeof(s70));
	memcpy(s70, "3 ", 2);
	UNIT_CHECK(u, pop3_parse_uidl(s70, 72, &m, &uid, &ul, &why) == 0 && ul == 70);
	memcpy(s71, s70, sizeof(s71));
	UNIT_CHECK(u,
	           pop3_parse_uidl(s71, 73, &m, &uid, &ul, &why) < 0 && uid && strstr(why, "70"));
	UNIT_CHECK(u, pop3_parse_uidl("3 a b", 5, &m, &uid, &ul, &why) < 0 && uid);
	UNIT_CHECK(u, pop3_parse_uidl("3 a\x7f", 4, &m, &uid, &ul, &why) < 0);
	UNIT_CHECK(u, pop3_parse_uidl("3 a\xc3\xa9", 5, &m, &uid, &ul, &why) < 0);
	UNIT_CHECK(u, pop3_parse_uidl("3 ", 2, &m, &uid, &ul, &why) < 0 && strstr(why, "empty"));
	uid = NULL;
	UNIT_CHECK(u, pop3_parse_uidl("x abc", 5, &m, &uid, &ul, &why) < 0 && !uid);
	UNIT_CHECK(u, pop3_parse_uidl("abc", 3, &m, &uid, &ul, &why) < 0);

	UNIT_CHECK(u, pop3_parse_stat("2 320", 5, &cnt, &sz) == 0 && cnt == 2 && sz == 320);
	UNIT_CHECK(u, pop3_parse_stat("0 0", 3, &cnt, &sz) == 0 && cnt == 0);
	UNIT_CHECK(u, pop3_parse_stat("2", 1, &cnt, &sz) < 0);
	UNIT_CHECK(u, pop3_parse_octets("1234 octets", 11, &sz) == 0 && sz == 1234);
	UNIT_CHECK(u, pop3_parse_octets("message follows", 15, &sz) < 0);
}

static void t_capa(struct unit_ctx *u)
{
	UNIT_CHECK(u, pop3_capa_line("PIPELINING", 10) == POP3_CAP_PIPELINING);
	UNIT_CHECK(u, pop3_capa_line("stls", 4) == POP3_CAP_STLS);
	UNIT_CHECK(u,
	           pop3_capa_line("SASL PLAIN LOGIN", 16) == (POP3_CAP_SASL | POP3_CAP_SASL_PLAIN));
	UNIT_CHECK(u, pop3_capa_line("SASL LOGIN CRAM-MD5", 19) == POP3_CAP_SASL);
	UNIT_CHECK(u, pop3_capa_line("SASL PLAINX", 11) == POP3_CAP_SASL);
	UNIT_CHECK(u, pop3_capa_line("TOPX", 4) == 0);
	UNIT_CHECK(u, pop3_capa_line("EXPIRE NEVER", 12) == 0);
	UNIT_CHECK(u, pop3_capa_line("UIDL", 4) == POP3_CAP_UIDL);
}

static int lline(struct pop3_list *l, enum pop3_list_kind k, const char *s)
{
	char why[300];

	return pop3_list_line(l, k, s, strlen(s), why, sizeof(why));
}

static void t_list_basics(struct unit_ctx *u)
{
	struct pop3_list l;
	char why[300];

	pop3_list_init(&l, 100);
	pop3_list_begin(&l, POP3_LIST_UIDL);
	UNIT_CHECK(u, lline(&l, POP3_LIST_UIDL, "1 a") == 0);
	UNIT_CHECK(u, lline(&l, POP3_LIST_UIDL, "3 c") == 0); /* 2 deleted: a gap is fine */
	UNIT_CHECK(u, l.n == 3 && !strcmp(pop3_list_get(&l, 1)->uidl, "a") &&
	                  !pop3_list_get(&l, 2)->uidl[0] &&
	                  !strcmp(pop3_list_get(&l, 3)->uidl, "c"));
	UNIT_CHECK(u, !pop3_list_get(&l, 0) && !pop3_list_get(&l, 4));
	/* out of order, repeated, over the cap, malformed: the listing fails */
	UNIT_CHECK(u, pop3_list_line(&l, POP3_LIST_UIDL, "3 d", 3, why, sizeof(why)) == -EPROTO &&
	                  strstr(why, "out of order at message 3"));
	UNIT_CHECK(u, lline(&l, POP3_LIST_UIDL, "101 z") == -EPROTO);
	UNIT_CHECK(u, lline(&l, POP3_LIST_UIDL, "x y") == -EPROTO);
	UNIT_CHECK(u, lline(&l, POP3_LIST_UIDL, "5") == -EPROTO);
	/* a bad or duplicate unique-id: that message only, the first reason kept */
	pop3_list_begin(&l, POP3_LIST_UIDL);
	UNIT_CHECK(u, lline(&l, POP3_LIST_UIDL, "1 a") == 0);
	UNIT_CHECK(u, lline(&l, POP3_LIST_UIDL, "2 b c") == 1);
	UNIT_CHECK(u, strstr(l.err, "message 2: unique-id \"b c\" refused"));
	UNIT_CHECK(u, lline(&l, POP3_LIST_UIDL, "3 a") == 1);
	UNIT_CHECK(u, strstr(l.err, "message 2:") && !pop3_list_get(&l, 3)->uidl[0]);
	pop3_list_begin(&l, POP3_LIST_UIDL);
	UNIT_CHECK(u, !l.err[0] && !pop3_list_get(&l, 1)->uidl[0]);
	UNIT_CHECK(u, lline(&l, POP3_LIST_UIDL, "1 a") == 0 &&
	                  lline(&l, POP3_LIST_UIDL, "2 a") == 1 &&
	                  strstr(l.err, "messages 1 and 2 have the same unique-id \"a\""));
	/* LIST sizes; a new LIST forgets the old ones */
	pop3_list_begin(&l, POP3_LIST_SCAN);
	UNIT_CHECK(u, lline(&l, POP3_LIST_SCAN, "1 100") == 0 &&
	                  lline(&l, POP3_LIST_SCAN, "2 7") == 0);
	UNIT_CHECK(u, pop3_list_get(&l, 2)->has_size && pop3_list_get(&l, 2)->size == 7);
	UNIT_CHECK(u, !strcmp(pop3_list_get(&l, 1)->uidl, "a")); /* UIDLs stay */
	pop3_list_begin(&l, POP3_LIST_SCAN);
	UNIT_CHECK(u, lline(&l, POP3_LIST_SCAN, "2 8") == 0 && !pop3_list_get(&l, 1)->has_size);
	UNIT_CHECK(u, lline(&l, POP3_LIST_SCAN, "3 -1") == -EPROTO);
	pop3_list_free(&l);
}

/* Many messages: the table and the index grow, duplicates are still found
 * anywhere, nothing is lost on the way. */
static void t_list_many(struct unit_ctx *u)
{
	struct pop3_list l;
	char line[64];
	uint32_t n = 50000;

	pop3_list_init(&l, n);
	pop3_list_begin(&l, POP3_LIST_UIDL);
	for (uint32_t i = 1; i <= n; i++) {
		snprintf(line, sizeof(line), "%u id-%u", i, i * 7919u);
		UNIT_CHECKF(u, lline(&l, POP3_LIST_UIDL, line) == 0, "msg %u", i);
	}
	UNIT_CHECK(u, l.n == n && !l.err[0]);
	for (uint32_t i = 1; i <= n; i += 997) {
		snprintf(line, sizeof(line), "id-%u", i * 7919u);
		UNIT_CHECK(u, !strcmp(pop3_list_get(&l, i)->uidl, line));
	}
	/* the same listing again, one duplicate at the very end */
	pop3_list_begin(&l, POP3_LIST_UIDL);
	for (uint32_t i = 1; i < n; i++) {
		snprintf(line, sizeof(line), "%u id-%u", i, i * 7919u);
		UNIT_CHECK(u, lline(&l, POP3_LIST_UIDL, line) == 0);
	}
	snprintf(line, sizeof(line), "%u id-%u", n, 1234u * 7919u);
	UNIT_CHECK(u, lline(&l, POP3_LIST_UIDL, line) == 1 &&
	                  strstr(l.err, "messages 1234 and 50000"));
	snprintf(line, sizeof(line), "%u x", n + 1);
	UNIT_CHECK(u, lline(&l, POP3_LIST_UIDL, line) == -EPROTO); /* over max */
	pop3_list_free(&l);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_transcript_whole);
	UNIT_RUN(&u, t_transcript_every_split);
	UNIT_RUN(&u, t_transcript_bytewise);
	UNIT_RUN(&u, t_stops_at_reply_end);
	UNIT_RUN(&u, t_line_caps);
	UNIT_RUN(&u, t_bad_status);
	UNIT_RUN(&u, t_callback_error);
	UNIT_RUN(&u, t_status_values);
	UNIT_RUN(&u, t_listing_values);
	UNIT_RUN(&u, t_capa);
	UNIT_RUN(&u, t_list_basics);
	UNIT_RUN(&u, t_list_many);
	printf("%d passed, %d failed\n", u.passed, u.failed);
	return unit_done(&u);
}
