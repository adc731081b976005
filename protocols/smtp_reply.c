/*
 * smtp_reply — incremental SMTP/LMTP reply parser (see smtp_reply.h).
 */
#include "protocols/smtp_reply.h"

#include <stdio.h>
#include <string.h>

void smtp_reply_init(struct smtp_reply_parser *p)
{
	memset(p, 0, sizeof(*p));
	p->done = 1; /* the next line starts a reply */
}

static int bad(struct smtp_reply_parser *p, const char *why, uint64_t at)
{
	p->err = why;
	p->err_pos = at;
	return SMTP_REPLY_EBAD;
}

static int digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Up to three digits at s[*i], as a number; 0 digits is a failure. */
static int number3(const char *s, size_t n, size_t *i, unsigned *v)
{
	size_t k = 0;

	*v = 0;
	while (*i < n && k < 3 && digit(s[*i])) {
		*v = *v * 10 + (unsigned)(s[*i] - '0');
		(*i)++;
		k++;
	}
	return k > 0 && !(*i < n && digit(s[*i]));
}

/* An enhanced status code "c.sss.ddd" at the start of s (RFC 3463 §2),
 * followed by a space or the end; returns its length (the space included)
 * or 0. */
static size_t enhanced(const char *s, size_t n, unsigned *c, unsigned *sub, unsigned *det)
{
	size_t i = 0;

	if (n < 5 || !(s[0] == '2' || s[0] == '4' || s[0] == '5') || s[1] != '.')
		return 0;
	*c = (unsigned)(s[0] - '0');
	i = 2;
	if (!number3(s, n, &i, sub) || i >= n || s[i] != '.')
		return 0;
	i++;
	if (!number3(s, n, &i, det))
		return 0;
	if (i < n && s[i] != ' ')
		return 0;
	return i < n ? i + 1 : i;
}

static void text_add(struct smtp_reply *r, const char *s, size_t n)
{
	size_t room;

	if (r->text_len && n) {
		if (r->text_len < SMTP_REPLY_TEXT_MAX)
			r->text[r->text_len++] = ' ';
		else
			r->truncated = 1;
	}
	room = SMTP_REPLY_TEXT_MAX - r->text_len;
	if (n > room) {
		n = room;
		r->truncated = 1;
	}
	memcpy(r->text + r->text_len, s, n);
	r->text_len += n;
	r->text[r->text_len] = '\0';
}

/* One complete line in buf[0..len) (line end stripped). */
static int line_done(struct smtp_reply_parser *p, uint64_t start)
{
	struct smtp_reply *r = &p->reply;
	char *s = p->buf;
	size_t n = p->len, skip;
	unsigned ec, es, ed;
	int code, last;

	if (n < 3 || !(s[0] >= '2' && s[0] <= '5') || !(s[1] >= '0' && s[1] <= '5') || !digit(s[2]))
		return bad(p, "reply line does not start with a 3-digit code", start);
	if (n > 3 && s[3] != ' ' && s[3] != '-')
		return bad(p, "reply code not followed by a space or '-'", start + 3);
	code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
	last = n == 3 || s[3] == ' ';
	if (p->done) {
		memset(r, 0, sizeof(*r));
		p->done = 0;
		r->code = code;
	} else if (code != r->code) {
		return bad(p, "lines of one reply carry different codes", start);
	}
	if (++r->lines > SMTP_REPLY_LINES_MAX)
		return bad(p, "reply has too many lines", start);
	p->line = s + (n > 3 ? 4 : 3);
	p->line_len = n > 3 ? n - 4 : 0;
	s[n] = '\0';
	skip = enhanced(p->line, p->line_len, &ec, &es, &ed);
	/* RFC 2034 §4: the enhanced code's class is the reply's. */
	if (skip && ec != (unsigned)code / 100)
		skip = 0;
	if (skip && !r->ecls) {
		r->ecls = ec;
		r->esub = es;
		r->edet = ed;
	}
	text_add(r, p->line + skip, p->line_len - skip);
	if (!last)
		return SMTP_REPLY_LINE;
	p->done = 1;
	return SMTP_REPLY_DONE;
}

int smtp_reply_feed(struct smtp_reply_parser *p, const uint8_t *in, size_t n, size_t *used)
{
	size_t i = 0;

	*used = 0;
	if (p->err)
		return SMTP_REPLY_EBAD;
	p->line = NULL;
	p->line_len = 0;
	while (i < n) {
		const uint8_t *lf = memchr(in + i, '\n', n - i);
		size_t take = lf ? (size_t)(lf - (in + i)) : n - i;
		uint64_t start = p->pos - p->len;

		if (p->len + take > SMTP_REPLY_LINE_MAX + 1) {
			/* +1: the CR of a CRLF may sit in the buffer */
			return bad(p, "reply line too long", start);
		}
		memcpy(p->buf + p->len, in + i, take);
		p->len += take;
		i += take;
		p->pos += take;
		if (p->len > SMTP_REPLY_LINE_MAX && p->buf[p->len - 1] != '\r')
			return bad(p, "reply line too long", start);
		if (!lf)
			break;
		i++; /* the LF */
		p->pos++;
		*used = i;
		if (p->len && p->buf[p->len - 1] == '\r')
			p->len--;
		if (p->len > SMTP_REPLY_LINE_MAX)
			return bad(p, "reply line too long", start);
		{
			int ev = line_done(p, start);

			p->len = 0;
			return ev;
		}
	}
	*used = i;
	return SMTP_REPLY_MORE;
}

void smtp_reply_format(const struct smtp_reply *r, char *out, size_t cap)
{
	if (!cap)
		return;
	if (r->ecls)
		snprintf(out, cap, "%d %u.%u.%u %.*s%s", r->code, r->ecls, r->esub, r->edet,
		         (int)r->text_len, r->text, r->truncated ? "..." : "");
	else
		snprintf(out, cap, "%d %.*s%s", r->code, (int)r->text_len, r->text,
		         r->truncated ? "..." : "");
}
