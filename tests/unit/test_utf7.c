/* Unit tests for utf7: RFC 3501 §5.1.3 vectors both ways, random round
 * trips, and the malformed and non-canonical forms the decoder refuses. */
#include "protocols/utf7.h"
#include "tests/unit/unit.h"

#include <errno.h>
#include <stdint.h>

static const struct {
	const char *utf7, *utf8;
} vectors[] = {
	{"~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"},
	{"&Jjo-!", "\xe2\x98\xba!"},
	{"Entw&APw-rfe", "Entw\xc3\xbcrfe"},
	{"&-", "&"},
	{"a&-b&-&-", "a&b&&"},
	{"", ""},
	{"INBOX", "INBOX"},
	{"&2D3eAA-", "\xf0\x9f\x98\x80"},				/* U+1F600 via surrogates */
	{"x&2D3eANg93gE-y", "x\xf0\x9f\x98\x80\xf0\x9f\x98\x81y"},	/* two in one run */
	{"&AOQA9gD8-", "\xc3\xa4\xc3\xb6\xc3\xbc"},			/* three units: 8 chars */
	{"&AAE-", "\x01"},						/* control: encoded */
	{"&AH8-", "\x7f"},
	{"&AOQ-&-", "\xc3\xa4&"},
	{"&2,,f,w-", "\xf4\x8f\xbf\xbf"},				/* U+10FFFF */
	{"Gesendete Objekte", "Gesendete Objekte"},
	{"&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-", "\xd0\x9e\xd1\x82\xd0\xbf\xd1\x80\xd0\xb0\xd0\xb2\xd0\xbb\xd0\xb5\xd0\xbd\xd0\xbd\xd1\x8b\xd0\xb5"},
};

static void test_vectors(struct unit_ctx *u)
{
	char out[256];

	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		const char *a = vectors[i].utf7, *b = vectors[i].utf8;
		ssize_t r;

		r = utf7_decode(a, strlen(a), out, sizeof(out));
		UNIT_CHECKF(u, r == (ssize_t)strlen(b) && !strcmp(out, b), "decode %s: %zd", a, r);
		r = utf7_encode(b, strlen(b), out, sizeof(out));
		UNIT_CHECKF(u, r == (ssize_t)strlen(a) && !strcmp(out, a), "encode for %s: %zd %s", a,
			    r, r >= 0 ? out : "");
	}
}

static void test_invalid(struct unit_ctx *u)
{
	static const char *bad7[] = {
		"&AGE-",	/* "a" in BASE64: not minimal */
		"&ACY-",	/* "&" in BASE64 */
		"&ACA-",	/* space */
		"&Jjo",		/* unterminated */
		"&",		/* unterminated */
		"a&",
		"&Jjo!-",	/* bad BASE64 char */
		"&Jj/-",	/* '/' is not modified BASE64 */
		"&Jjo=-",	/* no padding in modified BASE64 */
		"&Jjp-",	/* non-zero padding bits */
		"&JjoA-",	/* a leftover BASE64 char */
		"&Jjo-&Jjo-",	/* null shift */
		"&2D0-",	/* lone high surrogate */
		"&2D3YPQ-",	/* high surrogate then high */
		"&3gA-",	/* lone low surrogate */
		"&2D0AYQ-",	/* high surrogate then 'a' */
		"&AAA-",	/* U+0000 */
		"\x01",		/* raw control */
		"\x7f",
		"\xc3\xbc",	/* raw 8-bit */
		"tab\there",
	};
	static const char *bad8[] = {
		"\xc3",			/* truncated */
		"\xc0\x80",		/* overlong NUL */
		"\xe0\x80\xaf",		/* overlong '/' */
		"\xed\xa0\x80",		/* surrogate */
		"\xf4\x90\x80\x80",	/* > U+10FFFF */
		"\xf8\x88\x80\x80\x80", /* 5 bytes */
		"\x80",			/* stray continuation */
		"\xe2\x98",		/* truncated */
		"\xe2\x28\xba",		/* bad continuation */
		"\xff",
	};
	char out[64];

	for (size_t i = 0; i < sizeof(bad7) / sizeof(bad7[0]); i++) {
		ssize_t r = utf7_decode(bad7[i], strlen(bad7[i]), out, sizeof(out));

		UNIT_CHECKF(u, r == -EINVAL, "decode bad %zu (%s): %zd", i, bad7[i], r);
	}
	for (size_t i = 0; i < sizeof(bad8) / sizeof(bad8[0]); i++) {
		ssize_t r = utf7_encode(bad8[i], strlen(bad8[i]), out, sizeof(out));

		UNIT_CHECKF(u, r == -EINVAL, "encode bad %zu: %zd", i, r);
	}
	UNIT_CHECK(u, utf7_encode("a\0b", 3, out, sizeof(out)) == -EINVAL);
	UNIT_CHECK(u, utf7_decode("a\0b", 3, out, sizeof(out)) == -EINVAL);
}

/* cap counts the NUL: the output must fit in cap bytes, terminator included. */
static void test_space(struct unit_ctx *u)
{
	char out[16];

	memset(out, 'X', sizeof(out));
	UNIT_CHECK(u, utf7_decode("Entw&APw-rfe", 12, out, 10) == 9 && !strcmp(out, "Entw\xc3\xbcrfe"));
	UNIT_CHECK(u, utf7_decode("Entw&APw-rfe", 12, out, 9) == -ENOSPC);
	UNIT_CHECK(u, utf7_decode("", 0, out, 0) == -ENOSPC);
	UNIT_CHECK(u, utf7_decode("", 0, out, 1) == 0 && out[0] == '\0');
	memset(out, 'X', sizeof(out));
	UNIT_CHECK(u, utf7_encode("\xe2\x98\xba!", 4, out, 7) == 6 && !strcmp(out, "&Jjo-!"));
	memset(out, 'X', sizeof(out));
	UNIT_CHECK(u, utf7_encode("\xe2\x98\xba!", 4, out, 6) == -ENOSPC);
	for (size_t k = 6; k < sizeof(out); k++)
		UNIT_CHECK(u, out[k] == 'X'); /* nothing written past cap */
	/* malformed wins over too small */
	UNIT_CHECK(u, utf7_decode("abcdef&AGE-", 11, out, 2) == -EINVAL);
	UNIT_CHECK(u, utf7_encode("abcdef\xff", 7, out, 2) == -EINVAL);
}

static uint64_t rng = 88172645463325252ULL;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

static size_t put_cp(char *p, uint32_t cp)
{
	if (cp < 0x80) {
		p[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		p[0] = (char)(0xc0 | cp >> 6);
		p[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		p[0] = (char)(0xe0 | cp >> 12);
		p[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		p[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	p[0] = (char)(0xf0 | cp >> 18);
	p[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	p[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	p[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

static void test_roundtrip(struct unit_ctx *u)
{
	char in[256], mid[1024], back[256];

	for (int t = 0; t < 20000; t++) {
		size_t n = 0, len = rnd() % 24;
		ssize_t m, b;

		for (size_t k = 0; k < len; k++) {
			uint32_t cp, cls = rnd() % 6;

			if (cls < 2)
				cp = 0x20 + rnd() % 0x5f; /* printable, '&' included */
			else if (cls == 2)
				cp = rnd() % 4 ? 1 + rnd() % 0x7f : '&'; /* controls, DEL */
			else if (cls == 3)
				cp = 0x80 + rnd() % 0x780;
			else if (cls == 4)
				cp = 0x800 + rnd() % 0xf800;
			else
				cp = 0x10000 + rnd() % 0x100000;
			if (cp >= 0xd800 && cp <= 0xdfff)
				cp = 0xfffd;
			n += put_cp(in + n, cp);
		}
		m = utf7_encode(in, n, mid, sizeof(mid));
		UNIT_CHECKF(u, m >= 0, "encode failed round %d", t);
		if (m < 0)
			break;
		for (ssize_t k = 0; k < m; k++)
			UNIT_CHECK(u, mid[k] >= 0x20 && mid[k] <= 0x7e);
		b = utf7_decode(mid, (size_t)m, back, sizeof(back));
		UNIT_CHECKF(u, b == (ssize_t)n && !memcmp(back, in, n), "round trip %d: %s", t, mid);
		if (b != (ssize_t)n)
			break;
	}
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, test_vectors);
	UNIT_RUN(&u, test_invalid);
	UNIT_RUN(&u, test_space);
	UNIT_RUN(&u, test_roundtrip);
	return unit_done(&u);
}
