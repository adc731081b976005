/* err — error records and stderr logging (see err.h). */
#include "engine/base/err.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static enum mf_log_level log_level = MF_LOG_INFO;

size_t mf_utf8_len(const unsigned char *p, size_t n, unsigned long *cp)
{
	unsigned long c;
	size_t len;

	if (!n)
		return 0;
	if (p[0] < 0x80) {
		len = 1, c = p[0];
	} else if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2, c = p[0] & 0x1fu;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3, c = p[0] & 0x0fu;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4, c = p[0] & 0x07u;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3fu);
	}
	/* overlong forms, UTF-16 surrogates, beyond U+10FFFF */
	if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) ||
	    (c >= 0xd800 && c <= 0xdfff))
		return 0;
	if (cp)
		*cp = c;
	return len;
}

/* Code points a terminal acts on or that reorder what it shows: C1
 * controls (U+009B is CSI) and the bidirectional embeddings, overrides
 * and isolates (Unicode TR #9). */
static int cp_hidden(unsigned long c)
{
	return (c >= 0x80 && c <= 0x9f) || (c >= 0x202a && c <= 0x202e) ||
	       (c >= 0x2066 && c <= 0x2069) || c == 0x200e || c == 0x200f;
}

/* mf_escape's work; quoted: '"' too (mf_escape_quoted). */
static size_t escape(const char *s, size_t n, char *out, size_t cap, int quoted)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0;

	if (!cap)
		return 0;
	for (size_t i = 0; i < n;) {
		char esc[12];
		const char *src = esc;
		unsigned long c = 0;
		size_t k = mf_utf8_len(p + i, n - i, &c), m;

		if (k == 1 && p[i] == '\r') {
			src = "\\r", m = 2;
		} else if (k == 1 && p[i] == '\n') {
			src = "\\n", m = 2;
		} else if (k == 1 && p[i] == '\t') {
			src = "\\t", m = 2;
		} else if (k == 1 && (p[i] < 0x20 || p[i] == 0x7f || (quoted && p[i] == '"'))) {
			m = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", p[i]);
		} else if (!k) {
			m = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", p[i]);
			k = 1;
		} else if (cp_hidden(c)) {
			m = (size_t)snprintf(esc, sizeof(esc), "\\u%04lx", c);
		} else {
			src = s + i, m = k;
		}
		if (o + m >= cap)
			break; /* never cut an escape or a character in two */
		memcpy(out + o, src, m);
		o += m;
		i += k;
	}
	out[o] = '\0';
	return o;
}

size_t mf_escape(const char *s, size_t n, char *out, size_t cap)
{
	return escape(s, n, out, cap, 0);
}

size_t mf_escape_quoted(const char *s, size_t n, char *out, size_t cap)
{
	return escape(s, n, out, cap, 1);
}

void mf_err_set(struct mf_error *e, int code, const char *fmt, ...)
{
	char raw[MF_ERR_MAX];
	va_list ap;

	if (!e)
		return;
	e->code = code;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	mf_escape(raw, strlen(raw), e->msg, sizeof(e->msg));
}

void mf_err_clear(struct mf_error *e)
{
	e->code = 0;
	e->msg[0] = '\0';
}

void mf_log_set_level(enum mf_log_level lvl)
{
	log_level = lvl;
}

int mf_log_enabled(enum mf_log_level lvl)
{
	return lvl <= log_level;
}

void mf_vprint(const char *fmt, va_list ap)
{
	char line[2048], esc[4 * sizeof(line)];
	int n;

	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0)
		return;
	mf_escape(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1, esc, sizeof(esc));
	fprintf(stderr, "%s\n", esc);
}

void mf_print(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	mf_vprint(fmt, ap);
	va_end(ap);
}

void mf_log(enum mf_log_level lvl, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	char line[2048];
	va_list ap;

	if (lvl > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	mf_print("mailferry: %s: %s", names[lvl], line);
}

/* A JSON string (RFC 8259) of bytes a server may have chosen: controls as
 * \u00XX, a byte that is not valid UTF-8 as the text \xNN (as on stderr,
 * see mf_escape), so the line is always valid JSON and two names that
 * differ only in such bytes stay apart. */
void mf_json_str(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n;) {
		unsigned char ch = (unsigned char)s[i];
		size_t k = mf_utf8_len((const unsigned char *)s + i, n - i, NULL);

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(f, "\\u%04x", ch);
		else if (!k)
			fprintf(f, "\\\\x%02x", ch);
		else
			fwrite(s + i, 1, k, f);
		i += k ? k : 1;
	}
	fputc('"', f);
}
