/*
 * throttle — recognises throttling signals in server replies and reads the
 * backoff they suggest (see throttle.h). RFC 5530 §3: THROTTLED ("the
 * client should slow down"), UNAVAILABLE ("temporary failure because a
 * subsystem is down"). Microsoft 365 (Exchange Online) writes its hint only
 * in the text: "Request is throttled. Suggested Backoff Time: 1500
 * milliseconds." (on NO, BAD and on the BYE that drops the connection).
 *
 * Not for: deciding what to do about it (hostlimit, worker).
 */
#include "protocols/throttle.h"

#include <string.h>
#include <strings.h>

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Case-insensitive search for the NUL-terminated needle in s[0..n). */
static const char *find_ci(const char *s, size_t n, const char *needle)
{
	size_t m = strlen(needle);

	if (m > n)
		return NULL;
	for (size_t i = 0; i + m <= n; i++) {
		size_t k = 0;

		while (k < m && lower((unsigned char)s[i + k]) == lower((unsigned char)needle[k]))
			k++;
		if (k == m)
			return s + i;
	}
	return NULL;
}

static int atom_is(const char *s, size_t n, const char *w)
{
	return n == strlen(w) && !strncasecmp(s, w, n);
}

/* s[0..n) starts with word w (case-insensitive) not followed by a letter. */
static int word_at(const char *s, size_t n, const char *w, size_t *len)
{
	size_t m = strlen(w);

	if (n < m || strncasecmp(s, w, m))
		return 0;
	if (n > m && lower((unsigned char)s[m]) >= 'a' && lower((unsigned char)s[m]) <= 'z')
		return 0;
	*len = m;
	return 1;
}

/* "Suggested Backoff Time: N unit": the hint in ms, or 0. */
static uint64_t hint_ms(const char *s, size_t n)
{
	static const char key[] = "suggested backoff time";
	const char *p = find_ci(s, n, key), *end = s + n;
	uint64_t v = 0;
	size_t digits = 0, ul;

	if (!p)
		return 0;
	p += sizeof(key) - 1;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p < end && (*p == ':' || *p == '='))
		p++;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	while (p < end && *p >= '0' && *p <= '9') {
		if (++digits <= 12)
			v = v * 10 + (uint64_t)(*p - '0');
		p++;
	}
	if (!digits)
		return 0;
	if (digits > 12)
		return THROTTLE_HINT_MAX_MS;
	while (p < end && *p == ' ')
		p++;
	if (word_at(p, (size_t)(end - p), "seconds", &ul) || word_at(p, (size_t)(end - p), "second", &ul) ||
	    word_at(p, (size_t)(end - p), "sec", &ul) || word_at(p, (size_t)(end - p), "s", &ul))
		v = v > THROTTLE_HINT_MAX_MS ? v : v * 1000;
	return v > THROTTLE_HINT_MAX_MS ? THROTTLE_HINT_MAX_MS : v;
}

static int fill(int throttled, const char *text, size_t text_len, struct throttle_hint *out)
{
	memset(out, 0, sizeof(*out));
	if (!throttled)
		return 0;
	out->throttled = 1;
	out->ms = text ? hint_ms(text, text_len) : 0;
	return 1;
}

int throttle_parse(const char *code, size_t code_len, const char *text, size_t text_len,
		   struct throttle_hint *out)
{
	int t = 0;

	if (!text)
		text_len = 0;
	if (code && (atom_is(code, code_len, "THROTTLED") || atom_is(code, code_len, "UNAVAILABLE")))
		t = 1;
	if (text && (find_ci(text, text_len, "request is throttled") ||
		     find_ci(text, text_len, "suggested backoff time")))
		t = 1;
	return fill(t, text, text_len, out);
}

int throttle_parse_line(const char *s, size_t n, struct throttle_hint *out)
{
	int t = 0;

	if (!s)
		n = 0;
	if (s && (find_ci(s, n, "[THROTTLED]") || find_ci(s, n, "[UNAVAILABLE]") ||
		  find_ci(s, n, "request is throttled") || find_ci(s, n, "suggested backoff time")))
		t = 1;
	return fill(t, s, n, out);
}
