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

int mailhdr_return_path(const uint8_t *p, size_t n, char *out, size_t cap)
{
	static const char name[] = "return-path";
	size_t i = 0;

	if (cap)
		out[0] = '\0';
	while (i < n) {
		size_t ls = i, vs, ve, a, b;

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
		if (ve - ls < sizeof(name) || strncasecmp((const char *)p + ls, name, sizeof(name) - 1))
			continue;
		vs = ls + sizeof(name) - 1;
		while (vs < ve && (p[vs] == ' ' || p[vs] == '\t'))
			vs++;
		if (vs == ve || p[vs] != ':')
			continue;
		vs++;
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
	return 0;
}
