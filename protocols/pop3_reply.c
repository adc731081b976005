/*
 * pop3_reply — incremental POP3 reply reader and value parsers (see
 * pop3_reply.h).
 */
#include "protocols/pop3_reply.h"

#include <string.h>
#include <strings.h>

void pop3_reader_init(struct pop3_reader *r, const struct pop3_reader_cb *cb)
{
	memset(r, 0, sizeof(*r));
	r->cb = *cb;
	r->st = POP3_RS_DONE;
}

void pop3_reader_start(struct pop3_reader *r, enum pop3_kind kind)
{
	r->kind = kind;
	r->st = POP3_RS_STATUS;
	r->len = 0;
	r->body_bytes = 0;
	r->err = NULL;
}

bool pop3_reader_done(const struct pop3_reader *r)
{
	return r->st == POP3_RS_DONE;
}

static long bad(struct pop3_reader *r, const char *why, uint64_t at)
{
	r->st = POP3_RS_ERROR;
	r->err = why;
	r->err_pos = at;
	return POP3_EBAD;
}

static int body_emit(void *ctx, const char *p, size_t n)
{
	struct pop3_reader *r = ctx;

	r->body_bytes += n;
	return r->cb.body ? r->cb.body(r->cb.ctx, p, n) : 0;
}

/* One complete line (CRLF stripped) in r->line[0..len). */
static int on_line(struct pop3_reader *r)
{
	const char *s = r->line;
	size_t n = r->len;
	int rc = 0;

	if (r->st == POP3_RS_STATUS) {
		struct pop3_status st;

		if (pop3_status_parse(s, n, &st) < 0)
			return POP3_EBAD;
		if (r->cb.status && (rc = r->cb.status(r->cb.ctx, &st)) < 0)
			return rc;
		if (st.kind != POP3_OK || r->kind == POP3_KIND_SINGLE) {
			r->st = POP3_RS_DONE;
		} else if (r->kind == POP3_KIND_LINES) {
			r->st = POP3_RS_LINES;
		} else {
			r->st = POP3_RS_BODY;
			dot_unstuff_init(&r->un);
		}
		return 0;
	}
	/* a listing line (RFC 1939 §3: the terminator, or byte-stuffed) */
	if (n == 1 && s[0] == '.') {
		r->st = POP3_RS_DONE;
		return 0;
	}
	if (n && s[0] == '.')
		s++, n--;
	return r->cb.line ? r->cb.line(r->cb.ctx, s, n) : 0;
}

long pop3_reader_feed(struct pop3_reader *r, const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (r->st == POP3_RS_DONE)
			break;
		if (r->st == POP3_RS_ERROR)
			return POP3_EBAD;
		if (r->st == POP3_RS_BODY) {
			long k = dot_unstuff_feed(&r->un, (const char *)p + i, n - i, body_emit, r);

			if (k < 0)
				return k;
			i += (size_t)k;
			r->pos += (uint64_t)k;
			if (dot_unstuff_done(&r->un))
				r->st = POP3_RS_DONE;
			continue;
		}
		/* status or listing line: up to LF, at most POP3_LINE_MAX */
		const uint8_t *nl = memchr(p + i, '\n', n - i);
		size_t take = nl ? (size_t)(nl - (p + i)) + 1 : n - i;
		int rc;

		if (r->len + take > POP3_LINE_MAX)
			return bad(r, "line too long", r->pos + (POP3_LINE_MAX - r->len));
		memcpy(r->line + r->len, p + i, take);
		r->len += take;
		i += take;
		r->pos += take;
		if (!nl)
			break;
		/* CRLF ends a line (RFC 1939 §3); a bare LF is taken as well,
		 * as every client does */
		r->len--;
		if (r->len && r->line[r->len - 1] == '\r')
			r->len--;
		r->line[r->len] = '\0';
		rc = on_line(r);
		r->len = 0;
		if (rc == POP3_EBAD)
			return bad(r, "status line is neither +OK nor -ERR", r->pos - take);
		if (rc < 0)
			return rc;
	}
	return (long)i;
}

/* ---- values --------------------------------------------------------- */

int pop3_status_parse(const char *s, size_t n, struct pop3_status *st)
{
	size_t skip;

	memset(st, 0, sizeof(*st));
	if (n >= 3 && !memcmp(s, "+OK", 3)) {
		st->kind = POP3_OK;
		skip = 3;
	} else if (n >= 4 && !memcmp(s, "-ERR", 4)) {
		st->kind = POP3_ERR;
		skip = 4;
	} else if (n >= 1 && s[0] == '+' && (n == 1 || s[1] == ' ')) {
		st->kind = POP3_CONT;
		skip = 1;
	} else {
		return -1;
	}
	if (skip < n && s[skip] != ' ')
		return -1; /* "+OKAY" is not a status */
	if (skip < n)
		skip++;
	s += skip;
	n -= skip;
	/* RFC 2449 §8: "[CODE/SUB] text" after +OK or -ERR */
	if (st->kind != POP3_CONT && n >= 2 && s[0] == '[') {
		const char *rb = memchr(s, ']', n);

		if (rb && rb > s + 1) {
			st->code = s + 1;
			st->code_len = (size_t)(rb - s - 1);
			n -= (size_t)(rb + 1 - s);
			s = rb + 1;
			if (n && s[0] == ' ')
				s++, n--;
		}
	}
	st->text = s;
	st->text_len = n;
	return 0;
}

static int parse_u64(const char *s, size_t n, uint64_t max, uint64_t *v)
{
	uint64_t x = 0;

	if (!n || n > 20)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return -1;
		d = (unsigned)(s[i] - '0');
		if (x > (max - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	*v = x;
	return 0;
}

int pop3_parse_msgno(const char *s, size_t n, uint32_t *v)
{
	uint64_t x;

	if (parse_u64(s, n, UINT32_MAX, &x) < 0 || !x)
		return -1;
	*v = (uint32_t)x;
	return 0;
}

/* Splits "a b..." at its first space: a = [s, sp), rest after it. */
static const char *first_space(const char *s, size_t n)
{
	return memchr(s, ' ', n);
}

/* Sizes above 2^62 are not messages. */
#define SIZE_MAX_OK ((uint64_t)1 << 62)

int pop3_parse_scan(const char *s, size_t n, uint32_t *msgno, uint64_t *size)
{
	const char *sp = first_space(s, n), *e;

	if (!sp || pop3_parse_msgno(s, (size_t)(sp - s), msgno) < 0)
		return -1;
	sp++;
	e = first_space(sp, (size_t)(s + n - sp));
	return parse_u64(sp, (size_t)((e ? e : s + n) - sp), SIZE_MAX_OK, size);
}

int pop3_uidl_check(const char *u, size_t n, const char **why)
{
	if (!n) {
		*why = "empty unique-id";
		return -1;
	}
	if (n > POP3_UIDL_MAX) {
		*why = "unique-id longer than 70 characters (RFC 1939 §7)";
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)u[i] < 0x21 || (unsigned char)u[i] > 0x7e) {
			*why = "unique-id has a byte outside 0x21-0x7E (RFC 1939 §7)";
			return -1;
		}
	return 0;
}

int pop3_parse_uidl(const char *s, size_t n, uint32_t *msgno, const char **uid, size_t *uid_len,
                    const char **why)
{
	const char *sp = first_space(s, n);

	if (!sp || pop3_parse_msgno(s, (size_t)(sp - s), msgno) < 0) {
		*why = "not \"msgno unique-id\"";
		return -1;
	}
	sp++;
	*uid = sp;
	*uid_len = (size_t)(s + n - sp);
	return pop3_uidl_check(*uid, *uid_len, why);
}

int pop3_parse_stat(const char *s, size_t n, uint32_t *count, uint64_t *size)
{
	const char *sp = first_space(s, n), *e;
	uint64_t c;

	if (!sp || parse_u64(s, (size_t)(sp - s), UINT32_MAX, &c) < 0)
		return -1;
	*count = (uint32_t)c;
	sp++;
	e = first_space(sp, (size_t)(s + n - sp));
	return parse_u64(sp, (size_t)((e ? e : s + n) - sp), SIZE_MAX_OK, size);
}

int pop3_parse_octets(const char *s, size_t n, uint64_t *size)
{
	const char *e = first_space(s, n);

	return parse_u64(s, (size_t)((e ? e : s + n) - s), SIZE_MAX_OK, size);
}

static int word_is(const char *s, size_t n, const char *w)
{
	return strlen(w) == n && !strncasecmp(s, w, n);
}

uint32_t pop3_capa_line(const char *s, size_t n)
{
	static const struct {
		const char *name;
		uint32_t bit;
	} names[] = {
	    {"STLS", POP3_CAP_STLS}, {"PIPELINING", POP3_CAP_PIPELINING},
	    {"UIDL", POP3_CAP_UIDL}, {"TOP", POP3_CAP_TOP},
	    {"USER", POP3_CAP_USER}, {"RESP-CODES", POP3_CAP_RESP_CODES},
	    {"SASL", POP3_CAP_SASL}, {"AUTH-RESP-CODE", POP3_CAP_AUTH_RESP_CODE},
	};
	const char *sp = first_space(s, n);
	size_t wl = sp ? (size_t)(sp - s) : n;
	uint32_t bits = 0;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (word_is(s, wl, names[i].name))
			bits |= names[i].bit;
	/* "SASL PLAIN LOGIN": the mechanisms follow (RFC 2449 §6.3) */
	if ((bits & POP3_CAP_SASL) && sp) {
		const char *w = sp + 1, *end = s + n;

		while (w < end) {
			const char *e = memchr(w, ' ', (size_t)(end - w));
			size_t l = (size_t)((e ? e : end) - w);

			if (word_is(w, l, "PLAIN"))
				bits |= POP3_CAP_SASL_PLAIN;
			w += l + 1;
		}
	}
	return bits;
}
