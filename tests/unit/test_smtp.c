/*
 * test_smtp — the SMTP/LMTP reply parser (protocols/smtp_reply.c): known
 * replies, multi-line replies, enhanced status codes, the bounds, and the
 * same transcripts split at every byte (and at every pair of bytes) giving
 * the same replies.
 */
#include "protocols/smtp_reply.h"
#include "tests/unit/unit.h"

/* Feeds in[0..n) cut at the given points (ascending, may be empty) and
 * writes every event into log: "L<line>|" per line of a multi-line reply,
 * "D<code>[ e.s.d]:<text>|" per reply, "E<why>@<pos>|" on an error. */
static void run(const char *in, size_t n, const size_t *cuts, size_t ncuts, char *log, size_t cap)
{
	struct smtp_reply_parser p;
	size_t at = 0, k = 0, len = 0;

	smtp_reply_init(&p);
	log[0] = '\0';
	while (at < n || k <= ncuts) {
		size_t end = k < ncuts ? cuts[k] : n, used;
		int ev;

		if (end < at)
			end = at;
		ev = smtp_reply_feed(&p, (const uint8_t *)in + at, end - at, &used);
		at += used;
		if (ev == SMTP_REPLY_EBAD) {
			len += (size_t)snprintf(log + len, cap - len, "E%s@%llu|", p.err,
			                        (unsigned long long)p.err_pos);
			return;
		}
		if (ev == SMTP_REPLY_LINE)
			len += (size_t)snprintf(log + len, cap - len, "L%.*s|", (int)p.line_len,
			                        p.line);
		if (ev == SMTP_REPLY_DONE) {
			const struct smtp_reply *r = &p.reply;

			if (r->ecls)
				len += (size_t)snprintf(log + len, cap - len, "D%d %u.%u.%u:%s%s|",
				                        r->code, r->ecls, r->esub, r->edet, r->text,
				                        r->truncated ? "+" : "");
			else
				len += (size_t)snprintf(log + len, cap - len, "D%d:%s%s|", r->code,
				                        r->text, r->truncated ? "+" : "");
		}
		if (ev == SMTP_REPLY_MORE) {
			if (k >= ncuts && at >= n)
				break;
			k++;
		}
		if (len >= cap)
			return;
	}
}

static void whole(const char *in, char *log, size_t cap)
{
	run(in, strlen(in), NULL, 0, log, cap);
}

static void t_known(struct unit_ctx *u)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"220 mx.example.org ESMTP Postfix\r\n", "D220:mx.example.org ESMTP Postfix|"},
	    {"250 2.0.0 Ok\r\n", "D250 2.0.0:Ok|"},
	    {"250\r\n", "D250:|"},
	    {"354 End data with <CR><LF>.<CR><LF>\n", "D354:End data with <CR><LF>.<CR><LF>|"},
	    {"550 5.1.1 <nobody@example.org>: Recipient address rejected\r\n",
	     "D550 5.1.1:<nobody@example.org>: Recipient address rejected|"},
	    {"451 4.3.0 Temporary failure\r\n", "D451 4.3.0:Temporary failure|"},
	    /* the enhanced class must be the reply's (RFC 2034 §4) */
	    {"250 5.1.1 odd\r\n", "D250:5.1.1 odd|"},
	    /* not an enhanced code */
	    {"250 2.0 short\r\n", "D250:2.0 short|"},
	    {"250 2.0.0000 long detail\r\n", "D250:2.0.0000 long detail|"},
	    {"250 2.0.0\r\n", "D250 2.0.0:|"},
	    {"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 CHUNKING\r\n",
	     "Lmx.example.org|LPIPELINING|LSIZE 10240000|D250:mx.example.org PIPELINING SIZE "
	     "10240000 CHUNKING|"},
	    {"550-5.7.1 first line\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n",
	     "L5.7.1 first line|L5.7.1 second|D550 5.7.1:first line second third|"},
	    {"250 one\r\n452 4.2.2 two\r\n", "D250:one|D452 4.2.2:two|"},
	    {"250 with\ttab and \x01 control\r\n", "D250:with\ttab and \x01 control|"},
	    {"250 bare\rcr inside\r\n", "D250:bare\rcr inside|"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char log[4096];

		whole(cases[i].in, log, sizeof(log));
		UNIT_CHECKF(u, !strcmp(log, cases[i].want), "case %zu: got %s", i, log);
	}
}

static void t_malformed(struct unit_ctx *u)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"abc hello\r\n", "Ereply line does not start with a 3-digit code@0|"},
	    {"199 x\r\n", "Ereply line does not start with a 3-digit code@0|"},
	    {"600 x\r\n", "Ereply line does not start with a 3-digit code@0|"},
	    {"260 x\r\n", "Ereply line does not start with a 3-digit code@0|"},
	    {"25\r\n", "Ereply line does not start with a 3-digit code@0|"},
	    {"\r\n", "Ereply line does not start with a 3-digit code@0|"},
	    {"250xOK\r\n", "Ereply code not followed by a space or '-'@3|"},
	    {"250-a\r\n251 b\r\n", "La|Elines of one reply carry different codes@7|"},
	    {"250 ok\r\n25", "D250:ok|"}, /* incomplete second: no event */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char log[4096];

		whole(cases[i].in, log, sizeof(log));
		UNIT_CHECKF(u, !strcmp(log, cases[i].want), "case %zu: got %s", i, log);
	}
}

static void t_failed_stays_failed(struct unit_ctx *u)
{
	struct smtp_reply_parser p;
	size_t used;

	smtp_reply_init(&p);
	UNIT_CHECK(u, smtp_reply_feed(&p, (const uint8_t *)"xyz\r\n", 5, &used) == SMTP_REPLY_EBAD);
	UNIT_CHECK(u,
	           smtp_reply_feed(&p, (const uint8_t *)"250 ok\r\n", 8, &used) == SMTP_REPLY_EBAD);
	smtp_reply_init(&p);
	UNIT_CHECK(u,
	           smtp_reply_feed(&p, (const uint8_t *)"250 ok\r\n", 8, &used) == SMTP_REPLY_DONE);
	UNIT_CHECK(u, used == 8 && p.reply.code == 250);
}

static void t_line_bound(struct unit_ctx *u)
{
	static char in[SMTP_REPLY_LINE_MAX + 16];
	char log[8192];
	size_t n;

	/* exactly SMTP_REPLY_LINE_MAX bytes before the CRLF: taken */
	memcpy(in, "250 ", 4);
	memset(in + 4, 'x', SMTP_REPLY_LINE_MAX - 4);
	memcpy(in + SMTP_REPLY_LINE_MAX, "\r\n", 3);
	whole(in, log, sizeof(log));
	UNIT_CHECKF(u, !strncmp(log, "D250:xxx", 8) && strstr(log, "+|"), "at the bound: %.40s",
	            log);
	/* one more: refused, whether the CRLF comes or not */
	memset(in + 4, 'x', SMTP_REPLY_LINE_MAX - 3);
	memcpy(in + SMTP_REPLY_LINE_MAX + 1, "\r\n", 3);
	whole(in, log, sizeof(log));
	UNIT_CHECKF(u, !strcmp(log, "Ereply line too long@0|"), "over: %.60s", log);
	n = strlen(in) - 2;
	run(in, n, NULL, 0, log, sizeof(log));
	UNIT_CHECKF(u, !strcmp(log, "Ereply line too long@0|"), "over, no CRLF: %.60s", log);
	/* an endless line without LF is refused as soon as it is too long */
	{
		static char big[3 * SMTP_REPLY_LINE_MAX];
		struct smtp_reply_parser p;
		size_t used, fed = 0;
		int ev = 0;

		memset(big, 'y', sizeof(big));
		memcpy(big, "250 ", 4);
		smtp_reply_init(&p);
		while (fed < sizeof(big) && (ev = smtp_reply_feed(&p, (const uint8_t *)big + fed,
		                                                  100, &used)) == SMTP_REPLY_MORE)
			fed += used;
		UNIT_CHECKF(u, ev == SMTP_REPLY_EBAD && fed <= SMTP_REPLY_LINE_MAX + 100,
		            "ev %d after %zu", ev, fed);
	}
}

static void t_lines_bound(struct unit_ctx *u)
{
	static char in[(SMTP_REPLY_LINES_MAX + 2) * 10];
	char *log = malloc(64 * 1024);
	size_t n = 0;

	for (int i = 0; i < SMTP_REPLY_LINES_MAX; i++)
		n += (size_t)sprintf(in + n, "250-%03d\r\n", i % 1000);
	n += (size_t)sprintf(in + n, "250 end\r\n");
	whole(in, log, 64 * 1024);
	UNIT_CHECKF(u, strstr(log, "Ereply has too many lines@") != NULL, "%.80s", log);
	/* one line fewer is fine */
	n = 0;
	for (int i = 0; i < SMTP_REPLY_LINES_MAX - 1; i++)
		n += (size_t)sprintf(in + n, "250-%03d\r\n", i % 1000);
	n += (size_t)sprintf(in + n, "250 end\r\n");
	whole(in, log, 64 * 1024);
	UNIT_CHECKF(u, !strstr(log, "Ereply"), "%.80s", log);
	UNIT_CHECKF(u, strstr(log, "|D250:000 001") != NULL, "%.80s", log + strlen(log) - 80);
	free(log);
}

static void t_text_truncated(struct unit_ctx *u)
{
	char in[4 * SMTP_REPLY_TEXT_MAX], log[8192];
	size_t n = 0;
	struct smtp_reply_parser p;
	size_t used, at = 0;
	int ev;

	for (int i = 0; i < 6; i++)
		n += (size_t)sprintf(in + n, "550-5.0.0 %0100d\r\n", i);
	n += (size_t)sprintf(in + n, "550 5.0.0 last\r\n");
	whole(in, log, sizeof(log));
	UNIT_CHECKF(u, strstr(log, "+|") != NULL, "not flagged: %.60s", log);
	smtp_reply_init(&p);
	while ((ev = smtp_reply_feed(&p, (const uint8_t *)in + at, n - at, &used)) ==
	       SMTP_REPLY_LINE)
		at += used;
	UNIT_CHECK(u, ev == SMTP_REPLY_DONE);
	UNIT_CHECK(u, p.reply.text_len == SMTP_REPLY_TEXT_MAX && p.reply.truncated &&
	                  p.reply.lines == 7);
	UNIT_CHECK(u, p.reply.text[SMTP_REPLY_TEXT_MAX] == '\0');
}

/* A transcript of a whole session's replies, with every feature above. */
static const char transcript[] =
    "220-mx.example.org ESMTP\r\n220 no UCE\r\n"
    "250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250 SMTPUTF8\n"
    "250 2.1.0 Ok\r\n"
    "550 5.1.1 <x@example.org>: Recipient address rejected: User unknown\r\n"
    "250 2.1.5 Ok\r\n"
    "354 go ahead\r\n"
    "452-4.2.2 over quota\r\n452 4.2.2 really\r\n"
    "250\r\n"
    "221 2.0.0 Bye\r\n";

static void t_split_every_byte(struct unit_ctx *u)
{
	char want[4096], got[4096];
	size_t n = strlen(transcript);

	whole(transcript, want, sizeof(want));
	UNIT_CHECKF(u, strstr(want, "D221 2.0.0:Bye|") && !strstr(want, "|E"), "whole: %s", want);
	for (size_t a = 0; a <= n; a++) {
		run(transcript, n, &a, 1, got, sizeof(got));
		UNIT_CHECKF(u, !strcmp(got, want), "cut %zu: %s", a, got);
	}
}

static void t_split_every_pair(struct unit_ctx *u)
{
	char want[4096], got[4096];
	size_t n = strlen(transcript);

	whole(transcript, want, sizeof(want));
	for (size_t a = 0; a <= n; a += 1)
		for (size_t b = a; b <= n; b += 3) {
			size_t cuts[2] = {a, b};

			run(transcript, n, cuts, 2, got, sizeof(got));
			UNIT_CHECKF(u, !strcmp(got, want), "cuts %zu %zu: %s", a, b, got);
		}
}

static void t_byte_at_a_time(struct unit_ctx *u)
{
	struct smtp_reply_parser p;
	size_t n = strlen(transcript), used, replies = 0, lines = 0;

	smtp_reply_init(&p);
	for (size_t i = 0; i < n; i++) {
		int ev = smtp_reply_feed(&p, (const uint8_t *)transcript + i, 1, &used);

		UNIT_CHECKF(u, used == 1, "byte %zu: used %zu", i, used);
		UNIT_CHECKF(u, ev != SMTP_REPLY_EBAD, "byte %zu: %s", i, p.err);
		replies += ev == SMTP_REPLY_DONE;
		lines += ev == SMTP_REPLY_LINE;
	}
	UNIT_CHECKF(u, replies == 9 && lines == 6, "%zu replies, %zu lines", replies, lines);
}

static void t_format(struct unit_ctx *u)
{
	struct smtp_reply_parser p;
	size_t used;
	char out[600];
	const char *in = "550 5.1.1 <a@b>: User unknown\r\n";

	smtp_reply_init(&p);
	UNIT_CHECK(u,
	           smtp_reply_feed(&p, (const uint8_t *)in, strlen(in), &used) == SMTP_REPLY_DONE);
	smtp_reply_format(&p.reply, out, sizeof(out));
	UNIT_CHECKF(u, !strcmp(out, "550 5.1.1 <a@b>: User unknown"), "%s", out);
	UNIT_CHECK(u, smtp_reply_class(&p.reply) == 5);
	in = "451 try later\r\n";
	UNIT_CHECK(u,
	           smtp_reply_feed(&p, (const uint8_t *)in, strlen(in), &used) == SMTP_REPLY_DONE);
	smtp_reply_format(&p.reply, out, sizeof(out));
	UNIT_CHECKF(u, !strcmp(out, "451 try later"), "%s", out);
	UNIT_CHECK(u, smtp_reply_class(&p.reply) == 4 && p.reply.ecls == 0);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_known);
	UNIT_RUN(&u, t_malformed);
	UNIT_RUN(&u, t_failed_stays_failed);
	UNIT_RUN(&u, t_line_bound);
	UNIT_RUN(&u, t_lines_bound);
	UNIT_RUN(&u, t_text_truncated);
	UNIT_RUN(&u, t_split_every_byte);
	UNIT_RUN(&u, t_split_every_pair);
	UNIT_RUN(&u, t_byte_at_a_time);
	UNIT_RUN(&u, t_format);
	return unit_done(&u);
}
