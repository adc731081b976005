/*
 * filter — option values of a selective copy and the search-key validator
 * (see filter.h). Owns parsing and canonical writing only.
 *
 * Not for: anything that talks to a server or to the state.
 */
#include "engine/sync/filter.h"

#include "engine/base/size.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static int days_in(unsigned y, unsigned m)
{
	static const unsigned char d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return d[m - 1];
}

static int digits(const char *s, size_t n, unsigned *out)
{
	unsigned v = 0;

	if (!n || n > 4)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return 0;
}

int filter_date(const char *s, size_t n, char *out, uint32_t *ymd, struct mf_error *err)
{
	unsigned y = 0, m = 0, d = 0;
	const char *a = memchr(s, '-', n), *b;

	b = a ? memchr(a + 1, '-', n - (size_t)(a + 1 - s)) : NULL;
	if (!a || !b)
		goto bad;
	if (a - s == 4) { /* YYYY-MM-DD */
		if (digits(s, 4, &y) < 0 || b - a != 3 || digits(a + 1, 2, &m) < 0 ||
		    n - (size_t)(b + 1 - s) != 2 || digits(b + 1, 2, &d) < 0)
			goto bad;
	} else { /* d-Mon-yyyy (RFC 3501 date-text) */
		if (a - s < 1 || a - s > 2 || digits(s, (size_t)(a - s), &d) < 0 || b - a != 4 ||
		    n - (size_t)(b + 1 - s) != 4 || digits(b + 1, 4, &y) < 0)
			goto bad;
		for (unsigned i = 0; i < 12; i++)
			if (!strncasecmp(a + 1, months[i], 3))
				m = i + 1;
	}
	if (y < 1000 || m < 1 || m > 12 || d < 1 || (int)d > days_in(y, m))
		goto bad;
	snprintf(out, FILTER_DATE_LEN + 1, "%u-%s-%u", d % 100u, months[m - 1], y % 10000u);
	if (ymd)
		*ymd = y * 10000 + m * 100 + d;
	return 0;
bad:
	mf_err_set(err, -EINVAL, "\"%.*s\" is not a date (YYYY-MM-DD or dd-Mon-yyyy)",
	           (int)(n > 40 ? 40 : n), s);
	return -EINVAL;
}

int filter_size(const char *s, uint32_t *out, struct mf_error *err)
{
	uint64_t v;

	if (size_parse(s, strlen(s), UINT32_MAX, &v) < 0) {
		mf_err_set(err, -EINVAL,
		           "\"%.*s\" is not a size (bytes, or a number with k, M or G; at most 4G-1)",
		           (int)(strlen(s) > 40 ? 40 : strlen(s)), s);
		return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

/* ---- the search-key validator ---------------------------------------------- */

enum tok_type { T_END, T_LP, T_RP, T_ATOM, T_QUOTED };

struct tok {
	enum tok_type type;
	const char *s; /* T_QUOTED: between the quotes, escapes still in */
	size_t len;
	size_t at; /* offset in the input, for error lines */
};

struct sp {
	const char *in;
	size_t n, pos;
	char *out;
	size_t cap, len;
	unsigned keys;
	struct tok t; /* the current token */
	struct mf_error *err;
	int rc;
};

static int sp_fail(struct sp *p, size_t at, const char *why)
{
	if (!p->rc) {
		mf_err_set(p->err, -EINVAL, "--search: %s (at byte %zu)", why, at + 1);
		p->rc = -EINVAL;
	}
	return p->rc;
}

/* A character an atom (or a UID set) may hold: RFC 3501 ATOM-CHAR, plus
 * '*' for sequence sets; the specials are refused by the caller. */
static int atom_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '"' && c != '{' && c != '%' &&
	       c != '\\' && c != ']';
}

static int sp_next(struct sp *p)
{
	const char *s = p->in;
	size_t i = p->pos;

	while (i < p->n && s[i] == ' ')
		i++;
	p->t.at = i;
	p->t.s = s + i;
	p->t.len = 0;
	if (i >= p->n) {
		p->t.type = T_END;
		p->pos = i;
		return 0;
	}
	switch (s[i]) {
	case '(':
		p->t.type = T_LP;
		p->pos = i + 1;
		return 0;
	case ')':
		p->t.type = T_RP;
		p->pos = i + 1;
		return 0;
	case '"': {
		size_t k = i + 1;

		while (k < p->n && s[k] != '"') {
			unsigned char c = (unsigned char)s[k];

			if (c == '\r' || c == '\n')
				return sp_fail(p, k, "a line break (CR or LF) is not allowed");
			if (c < 0x20 || c == 0x7f)
				return sp_fail(p, k, "control characters are not allowed");
			if (c >= 0x80)
				return sp_fail(p, k, "only ASCII is accepted (no CHARSET)");
			if (c == '\\') {
				if (k + 1 >= p->n || (s[k + 1] != '"' && s[k + 1] != '\\'))
					return sp_fail(p, k,
					               "a backslash in a quoted string must "
					               "escape \" or \\");
				k++;
			}
			k++;
		}
		if (k >= p->n)
			return sp_fail(p, i, "unterminated quoted string");
		p->t.type = T_QUOTED;
		p->t.s = s + i + 1;
		p->t.len = k - i - 1;
		p->pos = k + 1;
		return 0;
	}
	default:
		break;
	}
	{
		size_t k = i;

		while (k < p->n && s[k] != ' ' && s[k] != '(' && s[k] != ')' && s[k] != '"') {
			unsigned char c = (unsigned char)s[k];

			if (c == '\r' || c == '\n')
				return sp_fail(p, k, "a line break (CR or LF) is not allowed");
			if (c < 0x20 || c == 0x7f)
				return sp_fail(p, k, "control characters are not allowed");
			if (c >= 0x80)
				return sp_fail(p, k, "only ASCII is accepted (no CHARSET)");
			if (c == '{')
				return sp_fail(p, k,
				               "literals ({N}) are not accepted; quote the "
				               "string instead");
			if (!atom_char(c) && c != '\\' && c != '%' && c != ']')
				return sp_fail(p, k, "unexpected character");
			k++;
		}
		p->t.type = T_ATOM;
		p->t.len = k - i;
		p->pos = k;
	}
	return 0;
}

static int sp_put(struct sp *p, const char *s, size_t n)
{
	if (p->rc)
		return p->rc;
	if (p->len + n + 1 > p->cap) {
		mf_err_set(p->err, -ENOSPC, "--search: the search is too long");
		return p->rc = -ENOSPC;
	}
	memcpy(p->out + p->len, s, n);
	p->len += n;
	p->out[p->len] = '\0';
	return 0;
}

static int sp_space(struct sp *p)
{
	if (p->len && p->out[p->len - 1] != '(')
		return sp_put(p, " ", 1);
	return 0;
}

/* An astring argument, written as a quoted string whatever it came as. */
static int sp_astring(struct sp *p, const char *key)
{
	char why[96];

	if (sp_next(p) < 0)
		return p->rc;
	if (p->t.type != T_ATOM && p->t.type != T_QUOTED) {
		snprintf(why, sizeof(why), "%s wants a string", key);
		return sp_fail(p, p->t.at, why);
	}
	if (p->t.type == T_ATOM)
		for (size_t i = 0; i < p->t.len; i++)
			if (p->t.s[i] == '\\' || p->t.s[i] == '%' || p->t.s[i] == '*')
				return sp_fail(p, p->t.at + i, "this character needs quotes");
	sp_space(p);
	sp_put(p, "\"", 1);
	/* A quoted string's escapes were checked (\" and \\ only); an atom
	 * holds neither " nor \: both go between quotes as they are. */
	sp_put(p, p->t.s, p->t.len);
	return sp_put(p, "\"", 1);
}

static int sp_date(struct sp *p, const char *key)
{
	char d[FILTER_DATE_LEN + 1], why[96];
	struct mf_error e;

	if (sp_next(p) < 0)
		return p->rc;
	if ((p->t.type != T_ATOM && p->t.type != T_QUOTED) ||
	    filter_date(p->t.s, p->t.len, d, NULL, &e) < 0) {
		snprintf(why, sizeof(why), "%s wants a date (dd-Mon-yyyy or YYYY-MM-DD)", key);
		return sp_fail(p, p->t.at, why);
	}
	sp_space(p);
	return sp_put(p, d, strlen(d));
}

static int sp_number(struct sp *p, const char *key)
{
	uint64_t v = 0;
	char why[96], num[16];

	if (sp_next(p) < 0)
		return p->rc;
	if (p->t.type != T_ATOM || !p->t.len || p->t.len > 10)
		goto bad;
	for (size_t i = 0; i < p->t.len; i++) {
		if (p->t.s[i] < '0' || p->t.s[i] > '9')
			goto bad;
		v = v * 10 + (uint64_t)(p->t.s[i] - '0');
	}
	if (v > UINT32_MAX)
		goto bad;
	snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
	sp_space(p);
	return sp_put(p, num, strlen(num));
bad:
	snprintf(why, sizeof(why), "%s wants a number of bytes (0 to 4294967295)", key);
	return sp_fail(p, p->t.at, why);
}

/* flag-keyword = atom (RFC 3501 §9). */
static int sp_keyword(struct sp *p, const char *key)
{
	char why[96];

	if (sp_next(p) < 0)
		return p->rc;
	if (p->t.type != T_ATOM)
		goto bad;
	for (size_t i = 0; i < p->t.len; i++)
		if (!atom_char((unsigned char)p->t.s[i]) || p->t.s[i] == '*')
			goto bad;
	sp_space(p);
	return sp_put(p, p->t.s, p->t.len);
bad:
	snprintf(why, sizeof(why), "%s wants a keyword (an atom)", key);
	return sp_fail(p, p->t.at, why);
}

/* sequence-set of UIDs: (nz-number / "*") [":" (nz-number / "*")], comma-separated. */
static int sp_uidset(struct sp *p)
{
	const char *s;
	size_t n, i = 0;

	if (sp_next(p) < 0)
		return p->rc;
	s = p->t.s;
	n = p->t.len;
	if (p->t.type != T_ATOM || !n)
		return sp_fail(p, p->t.at, "UID wants a UID set (1:5,9,20:*)");
	while (i < n) {
		for (int half = 0; half < 2; half++) {
			if (i < n && s[i] == '*') {
				i++;
			} else {
				uint64_t v = 0;
				size_t k = i;

				while (k < n && s[k] >= '0' && s[k] <= '9' && k - i < 11)
					v = v * 10 + (uint64_t)(s[k++] - '0');
				if (k == i || v == 0 || v > UINT32_MAX || s[i] == '0')
					return sp_fail(p, p->t.at + i,
					               "UID wants a UID set (1:5,9,20:*)");
				i = k;
			}
			if (half == 0 && i < n && s[i] == ':')
				i++;
			else
				break;
		}
		if (i < n && s[i] != ',')
			return sp_fail(p, p->t.at + i, "UID wants a UID set (1:5,9,20:*)");
		if (i < n && ++i == n)
			return sp_fail(p, p->t.at + i, "UID wants a UID set (1:5,9,20:*)");
	}
	sp_space(p);
	return sp_put(p, s, n);
}

static const char *const keys_plain[] = {
    "ALL",    "ANSWERED", "DELETED",    "DRAFT",     "FLAGGED", "NEW",       "OLD",
    "RECENT", "SEEN",     "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN"};
static const char *const keys_string[] = {"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"};
static const char *const keys_date[] = {"BEFORE",     "ON",     "SINCE",
                                        "SENTBEFORE", "SENTON", "SENTSINCE"};

static int is_key(const struct tok *t, const char *k)
{
	return t->len == strlen(k) && !strncasecmp(t->s, k, t->len);
}

static int sp_key(struct sp *p, unsigned depth);

static int sp_key_tok(struct sp *p, unsigned depth)
{
	const struct tok t = p->t;
	char shown[48];

	if (depth > FILTER_DEPTH_MAX)
		return sp_fail(p, t.at, "nested too deeply");
	if (++p->keys > FILTER_KEYS_MAX)
		return sp_fail(p, t.at, "too many search keys");
	if (t.type == T_LP) {
		sp_space(p);
		sp_put(p, "(", 1);
		if (sp_next(p) < 0)
			return p->rc;
		if (p->t.type == T_RP)
			return sp_fail(p, p->t.at, "empty parentheses");
		while (p->t.type != T_RP) {
			if (p->t.type == T_END)
				return sp_fail(p, t.at,
				               "unbalanced parentheses: '(' is not closed");
			if (sp_key_tok(p, depth + 1) < 0 || sp_next(p) < 0)
				return p->rc;
		}
		return sp_put(p, ")", 1);
	}
	if (t.type == T_RP)
		return sp_fail(p, t.at, "unbalanced parentheses: ')' without '('");
	if (t.type == T_QUOTED)
		return sp_fail(p, t.at, "a quoted string where a search key was expected");
	if (t.type == T_END)
		return sp_fail(p, t.at, "a search key is missing");
	if (t.len && ((t.s[0] >= '0' && t.s[0] <= '9') || t.s[0] == '*'))
		return sp_fail(p, t.at,
		               "message sequence numbers change between runs; use UID "
		               "with a UID set");
	for (size_t i = 0; i < sizeof(keys_plain) / sizeof(*keys_plain); i++)
		if (is_key(&t, keys_plain[i])) {
			sp_space(p);
			return sp_put(p, keys_plain[i], strlen(keys_plain[i]));
		}
	for (size_t i = 0; i < sizeof(keys_string) / sizeof(*keys_string); i++)
		if (is_key(&t, keys_string[i])) {
			sp_space(p);
			sp_put(p, keys_string[i], strlen(keys_string[i]));
			return sp_astring(p, keys_string[i]);
		}
	for (size_t i = 0; i < sizeof(keys_date) / sizeof(*keys_date); i++)
		if (is_key(&t, keys_date[i])) {
			sp_space(p);
			sp_put(p, keys_date[i], strlen(keys_date[i]));
			return sp_date(p, keys_date[i]);
		}
	if (is_key(&t, "LARGER") || is_key(&t, "SMALLER")) {
		const char *k = is_key(&t, "LARGER") ? "LARGER" : "SMALLER";

		sp_space(p);
		sp_put(p, k, strlen(k));
		return sp_number(p, k);
	}
	if (is_key(&t, "KEYWORD") || is_key(&t, "UNKEYWORD")) {
		const char *k = is_key(&t, "KEYWORD") ? "KEYWORD" : "UNKEYWORD";

		sp_space(p);
		sp_put(p, k, strlen(k));
		return sp_keyword(p, k);
	}
	if (is_key(&t, "HEADER")) {
		sp_space(p);
		sp_put(p, "HEADER", 6);
		if (sp_astring(p, "HEADER") < 0)
			return p->rc;
		return sp_astring(p, "HEADER");
	}
	if (is_key(&t, "UID")) {
		sp_space(p);
		sp_put(p, "UID", 3);
		return sp_uidset(p);
	}
	if (is_key(&t, "NOT") || is_key(&t, "OR")) {
		int or = is_key(&t, "OR");

		sp_space(p);
		sp_put(p, or ? "OR" : "NOT", or ? 2 : 3);
		for (int i = 0; i < 1 + or ; i++) {
			if (sp_next(p) < 0)
				return p->rc;
			if (p->t.type == T_END || p->t.type == T_RP)
				return sp_fail(p, p->t.at, or ? "OR wants two search keys"
				                              : "NOT wants a search key");
			if (sp_key_tok(p, depth + 1) < 0)
				return p->rc;
		}
		return p->rc;
	}
	snprintf(shown, sizeof(shown), "unknown search key \"%.*s\"",
	         (int)(t.len > 20 ? 20 : t.len), t.s);
	return sp_fail(p, t.at, shown);
}

static int sp_key(struct sp *p, unsigned depth)
{
	if (sp_next(p) < 0)
		return p->rc;
	return sp_key_tok(p, depth);
}

int filter_search(const char *in, size_t n, char *out, size_t cap, struct mf_error *err)
{
	struct sp p = {in, n, 0, out, cap, 0, 0, {T_END, in, 0, 0}, err, 0};

	if (!cap)
		return -ENOSPC;
	out[0] = '\0';
	if (n > FILTER_SEARCH_MAX) {
		mf_err_set(err, -EINVAL, "--search: %zu bytes; at most %d are accepted", n,
		           FILTER_SEARCH_MAX);
		return -EINVAL;
	}
	if (memchr(in, '\0', n)) {
		mf_err_set(err, -EINVAL, "--search: a NUL byte is not allowed");
		return -EINVAL;
	}
	for (;;) {
		size_t before = p.pos;

		if (sp_next(&p) < 0)
			return p.rc;
		if (p.t.type == T_END)
			break;
		p.pos = before;
		if (sp_key(&p, 0) < 0)
			return p.rc;
	}
	if (!p.len) {
		mf_err_set(err, -EINVAL, "--search is empty");
		return -EINVAL;
	}
	return (int)p.len;
}

/* ---- the whole filter ------------------------------------------------------- */

int filter_build(const struct filter_spec *sp, char *out, size_t cap, struct mf_error *err)
{
	char d[FILTER_DATE_LEN + 1];
	uint32_t since_ymd = 0, before_ymd = 0, larger = 0, smaller = 0;
	size_t len = 0;
	struct mf_error e;
	int rc;

	if (cap < FILTER_MAX)
		return -ENOSPC;
	out[0] = '\0';
	if (sp->since) {
		if (filter_date(sp->since, strlen(sp->since), d, &since_ymd, &e) < 0)
			goto bad_since;
		len += (size_t)snprintf(out + len, cap - len, "SINCE %s", d);
	}
	if (sp->before) {
		if (filter_date(sp->before, strlen(sp->before), d, &before_ymd, &e) < 0) {
			mf_err_set(err, -EINVAL, "--before: %s", e.msg);
			return -EINVAL;
		}
		if (sp->since && since_ymd >= before_ymd) {
			mf_err_set(err, -EINVAL,
			           "--since %s is not before --before %s: nothing would "
			           "be copied",
			           sp->since, sp->before);
			return -EINVAL;
		}
		len += (size_t)snprintf(out + len, cap - len, "%sBEFORE %s", len ? " " : "", d);
	}
	if (sp->larger) {
		if (filter_size(sp->larger, &larger, &e) < 0) {
			mf_err_set(err, -EINVAL, "--larger: %s", e.msg);
			return -EINVAL;
		}
		len +=
		    (size_t)snprintf(out + len, cap - len, "%sLARGER %u", len ? " " : "", larger);
	}
	if (sp->smaller) {
		if (filter_size(sp->smaller, &smaller, &e) < 0) {
			mf_err_set(err, -EINVAL, "--smaller: %s", e.msg);
			return -EINVAL;
		}
		if (sp->larger && (uint64_t)larger + 1 >= smaller) {
			mf_err_set(err, -EINVAL,
			           "--larger %s and --smaller %s leave no size: nothing "
			           "would be copied",
			           sp->larger, sp->smaller);
			return -EINVAL;
		}
		len +=
		    (size_t)snprintf(out + len, cap - len, "%sSMALLER %u", len ? " " : "", smaller);
	}
	if (sp->search) {
		if (len)
			out[len++] = ' ';
		rc = filter_search(sp->search, strlen(sp->search), out + len, cap - len, err);
		if (rc < 0)
			return rc;
		len += (size_t)rc;
	}
	out[len] = '\0';
	return (int)len;
bad_since:
	mf_err_set(err, -EINVAL, "--since: %s", e.msg);
	return -EINVAL;
}

uint64_t filter_id(const char *canon, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)canon[i];
		h *= 0x100000001b3ull;
	}
	return h ? h : 1;
}
