/*
 * utf7 — IMAP modified UTF-7 mailbox names (RFC 3501 §5.1.3), see utf7.h.
 *
 * Decoding accepts only the one canonical form of each name (so that
 * decode then encode gives back the same bytes): printable US-ASCII other
 * than '&' stands for itself, "&-" is '&', and everything else travels as
 * UTF-16BE in modified BASE64 (',' for '/', no padding) between '&' and '-'.
 * Refused: characters 0x20..0x7e inside BASE64, two adjacent BASE64 runs
 * ("-&", a null shift), leftover or non-zero padding bits, unpaired
 * surrogates, U+0000, and raw bytes outside 0x20..0x7e.
 *
 * Not for: RFC 2152 UTF-7, or UTF8=ACCEPT names (RFC 6855), which need no
 * conversion.
 */
#include "protocols/utf7.h"

#include <errno.h>
#include <stdint.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

/* Output with room for a NUL; keeps counting past cap so that a malformed
 * input is reported as such even when the buffer is too small. */
struct sink {
	char *out;
	size_t cap, len;
};

static void sink_put(struct sink *s, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++, s->len++)
		if (s->len + 1 < s->cap)
			s->out[s->len] = p[i];
}

static ssize_t sink_end(struct sink *s)
{
	if (s->len + 1 > s->cap)
		return -ENOSPC;
	s->out[s->len] = '\0';
	return (ssize_t)s->len;
}

static void put_utf8(struct sink *s, uint32_t cp)
{
	char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | cp >> 6);
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | cp >> 12);
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | cp >> 18);
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	sink_put(s, b, n);
}

ssize_t utf7_decode(const char *in, size_t n, char *out, size_t cap)
{
	struct sink s = {out, cap, 0};
	size_t i = 0, run_end = (size_t)-1; /* just after the last BASE64 run's '-' */

	while (i < n) {
		unsigned char c = (unsigned char)in[i++];
		uint32_t bits = 0, hi = 0;
		unsigned nbits = 0;

		if (c < 0x20 || c > 0x7e)
			return -EINVAL;
		if (c != '&') {
			sink_put(&s, (const char *)&c, 1);
			continue;
		}
		if (i < n && in[i] == '-') {
			sink_put(&s, "&", 1);
			i++;
			continue;
		}
		if (i - 1 == run_end)
			return -EINVAL; /* "-&": null shift */
		for (; i < n && in[i] != '-'; i++) {
			int v = b64_val((unsigned char)in[i]);
			uint32_t u;

			if (v < 0)
				return -EINVAL;
			bits = (bits << 6 | (uint32_t)v) & 0x3fffff;
			nbits += 6;
			if (nbits < 16)
				continue;
			nbits -= 16;
			u = (bits >> nbits) & 0xffff;
			bits &= (1u << nbits) - 1;
			if (hi) {
				if (u < 0xdc00 || u > 0xdfff)
					return -EINVAL;
				put_utf8(&s, 0x10000 + ((hi - 0xd800) << 10) + (u - 0xdc00));
				hi = 0;
			} else if (u >= 0xd800 && u <= 0xdbff) {
				hi = u;
			} else if ((u >= 0xdc00 && u <= 0xdfff) || u == 0 ||
				   (u >= 0x20 && u <= 0x7e)) {
				return -EINVAL; /* lone low surrogate, NUL, or not minimal */
			} else {
				put_utf8(&s, u);
			}
		}
		if (i == n || hi || nbits >= 6 || bits)
			return -EINVAL; /* unterminated, or bad padding */
		run_end = ++i;
	}
	return sink_end(&s);
}

/* One code point of strict UTF-8 (no overlongs, surrogates or > U+10FFFF);
 * returns its length or 0. */
static size_t utf8_next(const unsigned char *p, size_t n, uint32_t *cp)
{
	unsigned char c = p[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		*cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		*cp = c & 0x0f;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		*cp = c & 0x07;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t k = 1; k < len; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return 0;
		*cp = *cp << 6 | (p[k] & 0x3f);
	}
	return len;
}

ssize_t utf7_encode(const char *in, size_t n, char *out, size_t cap)
{
	const unsigned char *p = (const unsigned char *)in;
	struct sink s = {out, cap, 0};
	uint32_t bits = 0;
	unsigned nbits = 0;
	int shifted = 0;

	for (size_t i = 0; i < n;) {
		uint32_t cp, units[2];
		size_t len = utf8_next(p + i, n - i, &cp), nu;

		if (!len || cp == 0)
			return -EINVAL;
		i += len;
		if (cp >= 0x20 && cp <= 0x7e) {
			if (shifted) {
				if (nbits)
					sink_put(&s, &b64[(bits << (6 - nbits)) & 0x3f], 1);
				sink_put(&s, "-", 1);
				shifted = 0;
				bits = nbits = 0;
			}
			sink_put(&s, cp == '&' ? "&-" : (const char *)p + i - 1, cp == '&' ? 2 : 1);
			continue;
		}
		if (!shifted) {
			sink_put(&s, "&", 1);
			shifted = 1;
		}
		if (cp < 0x10000) {
			units[0] = cp;
			nu = 1;
		} else {
			units[0] = 0xd800 + ((cp - 0x10000) >> 10);
			units[1] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
			nu = 2;
		}
		for (size_t k = 0; k < nu; k++) {
			bits = (bits << 16 | units[k]) & 0x3fffff;
			nbits += 16;
			while (nbits >= 6) {
				nbits -= 6;
				sink_put(&s, &b64[(bits >> nbits) & 0x3f], 1);
			}
		}
	}
	if (shifted) {
		if (nbits)
			sink_put(&s, &b64[(bits << (6 - nbits)) & 0x3f], 1);
		sink_put(&s, "-", 1);
	}
	return sink_end(&s);
}
