/*
 * mailhdr — the Return-Path address and UTF-8 in a message header (see
 * mailhdr.h).
 */
#include "protocols/mailhdr.h"

#include "engine/base/err.h"

#include <string.h>
#include <strings.h>

/* Longest address taken (as smtp_client's SMTP_ADDR_MAX). */
#define ADDR_MAX 512

size_t mailhdr_end(const uint8_t *p, size_t n)
{
	if (n >= 2 && p[0] == '\r' && p[1] == '\n')
		return 2; /* no header fields at all */
	if (n >= 1 && p[0] == '\n')
		return 1;
	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] != '\n')
			continue;
		if (p[i + 1] == '\n')
			return i + 2;
		if (p[i + 1] == '\r' && i + 2 < n && p[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* Length of the well-formed UTF-8 sequence of 2..4 bytes at p, or 0. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
	size_t k = mf_utf8_len(p, n, NULL);

	return k >= 2 ? k : 0;
}

int mailhdr_has_utf8(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] >= 0x80 && utf8_seq(p + i, n - i))
			return 1;
	return 0;
}

/* An address as SMTP may carry it: printable ASCII or well-formed UTF-8,
 * no blanks, '<', '>', '(' or ')', one '@' or more, not too long. */
static int addr_ok(const uint8_t *a, size_t n)
{
	int at = 0;

	if (!n || n > ADDR_MAX)
		return 0;
	for (size_t i = 0; i < n;) {
		if (a[i] >= 0x80) {
			size_t k = utf8_seq(a + i, n - i);

			if (!k)
				return 0;
			i += k;
			continue;
		}
		if (a[i] <= 0x20 || a[i] == 0x7F || a[i] == '<' || a[i] == '>' || a[i] == '(' ||
		    a[i] == ')')
			return 0;
		at |= a[i] == '@';
		i++;
	}
	return at;
}

static int is_wsp(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The first field called name (any case) in the header p[0..n): 1 with
 * its value in p[*vs..*ve) (after the ':', folding included), or 0. */
static int find_field(const uint8_t *p, size_t n, const char *name, size_t *vs_, size_t *ve_)
{
	size_t nl = strlen(name), i = 0;

	while (i < n) {
		size_t ls = i, vs, ve;

		/* a field starts at a line start that is not a continuation */
		if (p[i] == '\r' || p[i] == '\n')
			return 0; /* the empty line: the header ended */
		while (i < n && p[i] != '\n')
			i++;
		/* ... and goes on over folded lines */
		while (i + 1 < n && (p[i + 1] == ' ' || p[i + 1] == '\t')) {
			i++;
			while (i < n && p[i] != '\n')
				i++;
		}
		ve = i; /* the field is p[ls..ve) */
		i = i < n ? i + 1 : n;
		if (ve - ls <= nl || strncasecmp((const char *)p + ls, name, nl))
			continue;
		vs = ls + nl;
		while (vs < ve && (p[vs] == ' ' || p[vs] == '\t'))
			vs++;
		if (vs == ve || p[vs] != ':')
			continue;
		*vs_ = vs + 1;
		*ve_ = ve;
		return 1;
	}
	return 0;
}

int mailhdr_return_path(const uint8_t *p, size_t n, char *out, size_t cap)
{
	size_t vs, ve, a, b;

	if (cap)
		out[0] = '\0';
	if (!find_field(p, n, "return-path", &vs, &ve))
		return 0;
	/* "<addr>" (RFC 5322 §3.6.7), blanks and folding around it */
	while (vs < ve && is_wsp(p[vs]))
		vs++;
	while (ve > vs && is_wsp(p[ve - 1]))
		ve--;
	if (vs < ve && p[vs] == '<') {
		a = vs + 1;
		for (b = a; b < ve && p[b] != '>'; b++)
			;
		if (b == ve)
			return -1;
		for (size_t k = b + 1; k < ve; k++)
			if (!is_wsp(p[k]))
				return -1; /* a comment or more: not taken */
	} else {
		a = vs, b = ve; /* a bare address (obsolete form) */
	}
	if (a == b)
		return 1; /* "<>": the null path */
	if (!addr_ok(p + a, b - a) || b - a >= cap)
		return -1;
	memcpy(out, p + a, b - a);
	out[b - a] = '\0';
	return 1;
}

/* ---- display text (Subject, From) ------------------------------------------ */

/* Decoded bytes of adjacent encoded-words, held until the run ends so that
 * a UTF-8 character split between two words comes out whole. */
#define DEC_MAX 640

enum cs { CS_NONE, CS_UTF8, CS_LATIN1 };

struct dtext {
	char *out;
	size_t cap, n;
	unsigned chars;
	int space, cut;
	enum cs cs;
	uint8_t dec[DEC_MAX];
	size_t ndec;
};

static int cp_blank(unsigned long cp)
{
	/* controls (C0, DEL, C1 with ESC/CSI: terminal escapes), line and
	 * paragraph separators, bidirectional overrides and isolates */
	return cp <= 0x20 || (cp >= 0x7F && cp < 0xA0) || cp == 0x2028 || cp == 0x2029 ||
	       (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0xFEFF;
}

static void dt_put(struct dtext *d, unsigned long cp)
{
	uint8_t u[4];
	size_t k;

	if (d->cut)
		return;
	if (cp_blank(cp)) {
		d->space = d->chars > 0; /* leading blanks go, runs become one */
		return;
	}
	if (cp < 0x80) {
		u[0] = (uint8_t)cp, k = 1;
	} else if (cp < 0x800) {
		u[0] = (uint8_t)(0xC0 | cp >> 6), u[1] = (uint8_t)(0x80 | (cp & 0x3F)), k = 2;
	} else if (cp < 0x10000) {
		u[0] = (uint8_t)(0xE0 | cp >> 12), u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (uint8_t)(0x80 | (cp & 0x3F)), k = 3;
	} else {
		u[0] = (uint8_t)(0xF0 | cp >> 18), u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
		u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (uint8_t)(0x80 | (cp & 0x3F));
		k = 4;
	}
	/* room for a blank, the character, "..." and the NUL */
	if (d->chars + d->space >= MAILHDR_TEXT_CHARS || d->n + d->space + k + 4 > d->cap) {
		d->cut = 1;
		if (d->n + 4 <= d->cap) {
			memcpy(d->out + d->n, "...", 3);
			d->n += 3;
		}
		return;
	}
	if (d->space) {
		d->out[d->n++] = ' ';
		d->chars++;
		d->space = 0;
	}
	memcpy(d->out + d->n, u, k);
	d->n += k;
	d->chars++;
}

/* Bytes taken as UTF-8 (raw header text, or decoded UTF-8 words): what is
 * not well-formed becomes U+FFFD, one per byte. */
static void dt_utf8(struct dtext *d, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n && !d->cut;) {
		unsigned long cp;
		size_t k = mf_utf8_len(p + i, n - i, &cp);

		if (!k)
			cp = 0xFFFD, k = 1;
		dt_put(d, cp);
		i += k;
	}
}

static void dt_flush(struct dtext *d)
{
	if (d->cs == CS_LATIN1)
		for (size_t i = 0; i < d->ndec; i++)
			dt_put(d, d->dec[i]);
	else
		dt_utf8(d, d->dec, d->ndec);
	d->ndec = 0;
	d->cs = CS_NONE;
}

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (uint8_t)(c | 0x20);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int b64val(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

static void dec_byte(struct dtext *d, uint8_t c)
{
	if (d->ndec < DEC_MAX)
		d->dec[d->ndec++] = c;
}

/* An encoded-word "=?charset?B|Q?text?=" (RFC 2047 §2) at p[0..n) whose
 * charset this decodes: its length, with *cs, *enc and the text in
 * p[*ts..*te); 0 if it is not one (it is then shown as it is). */
static size_t ew_parse(const uint8_t *p, size_t n, enum cs *cs, uint8_t *enc, size_t *ts,
                       size_t *te)
{
	size_t i = 2, c0 = 2, cl;

	if (n < 8 || p[0] != '=' || p[1] != '?')
		return 0;
	while (i < n && p[i] != '?' && p[i] != '*' && p[i] > 0x20 && p[i] < 0x7F)
		i++;
	cl = i - c0;
	if (i < n && p[i] == '*') /* RFC 2231 §5: a language after the charset */
		while (i < n && p[i] != '?' && p[i] > 0x20 && p[i] < 0x7F)
			i++;
	if (i + 3 >= n || p[i] != '?' || p[i + 2] != '?')
		return 0;
	if (cl == 5 && !strncasecmp((const char *)p + c0, "utf-8", 5))
		*cs = CS_UTF8;
	else if (cl == 8 && !strncasecmp((const char *)p + c0, "us-ascii", 8))
		*cs = CS_UTF8;
	else if ((cl == 10 && !strncasecmp((const char *)p + c0, "iso-8859-1", 10)) ||
	         (cl == 6 && !strncasecmp((const char *)p + c0, "latin1", 6)))
		*cs = CS_LATIN1;
	else
		return 0;
	*enc = (uint8_t)(p[i + 1] | 0x20);
	if (*enc != 'b' && *enc != 'q')
		return 0;
	*ts = i + 3;
	for (i = *ts; i + 1 < n; i++) {
		if (p[i] <= 0x20 || p[i] >= 0x7F)
			return 0;
		if (p[i] == '?' && p[i + 1] == '=') {
			*te = i;
			return i + 2;
		}
	}
	return 0;
}

static void ew_decode(struct dtext *d, enum cs cs, uint8_t enc, const uint8_t *t, size_t n)
{
	if (d->cs != cs)
		dt_flush(d);
	d->cs = cs;
	if (enc == 'q') {
		for (size_t i = 0; i < n; i++) {
			int h, l;

			if (t[i] == '_')
				dec_byte(d, ' ');
			else if (t[i] == '=' && i + 2 < n && (h = hexval(t[i + 1])) >= 0 &&
			         (l = hexval(t[i + 2])) >= 0) {
				dec_byte(d, (uint8_t)(h << 4 | l));
				i += 2;
			} else {
				dec_byte(d, t[i]);
			}
		}
		return;
	}
	uint32_t acc = 0;
	unsigned bits = 0;

	for (size_t i = 0; i < n && t[i] != '='; i++) {
		int v = b64val(t[i]);

		if (v < 0)
			continue;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			dec_byte(d, (uint8_t)(acc >> bits));
			acc &= (1u << bits) - 1;
		}
	}
}

int mailhdr_field_text(const uint8_t *p, size_t n, const char *name, char *out, size_t cap)
{
	struct dtext d = {.out = out, .cap = cap};
	size_t vs, ve, lit, i;
	int prev_ew = 0;

	if (!cap)
		return 0;
	out[0] = '\0';
	if (!find_field(p, n, name, &vs, &ve))
		return 0;
	if (cap < 5)
		return 1;
	lit = i = vs;
	while (i < ve && !d.cut) {
		enum cs cs;
		uint8_t enc;
		size_t ts, te, len = ew_parse(p + i, ve - i, &cs, &enc, &ts, &te);
		int blank = 1;

		if (!len) {
			i++;
			continue;
		}
		/* blanks between two encoded-words are not shown (RFC 2047 §6.2) */
		for (size_t k = lit; k < i && blank; k++)
			blank = is_wsp(p[k]);
		if (!prev_ew || !blank) {
			dt_flush(&d);
			dt_utf8(&d, p + lit, i - lit);
		}
		ew_decode(&d, cs, enc, p + i + ts, te - ts);
		prev_ew = 1;
		i += len;
		lit = i;
	}
	dt_flush(&d);
	dt_utf8(&d, p + lit, ve - lit);
	out[d.n] = '\0';
	return 1;
}
