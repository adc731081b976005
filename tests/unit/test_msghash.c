/* Unit tests for msghash: the folded digest equals SHA-256 of the folded
 * bytes, whatever the chunking. */
#include "store/msghash.h"
#include "tests/unit/unit.h"

#include <openssl/sha.h>

static size_t fold(const uint8_t *p, size_t n, uint8_t *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n;) {
		if (p[i] == '\r') {
			size_t j = i;

			while (j < n && p[j] == '\r')
				j++;
			if (j < n && p[j] == '\n') {
				out[o++] = '\r';
			} else {
				memcpy(out + o, p + i, j - i);
				o += j - i;
			}
			i = j;
		} else {
			out[o++] = p[i++];
		}
	}
	return o;
}

static void check_all_splits(struct unit_ctx *u, const char *s)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t n = strlen(s), fl;
	uint8_t folded[256], want_e[32], want_f[32], e[32], f[32];
	struct msghash h;

	UNIT_CHECK(u, msghash_init(&h) == 0);
	fl = fold(p, n, folded);
	SHA256(p, n, want_e);
	SHA256(folded, fl, want_f);
	for (size_t a = 0; a <= n; a++)
		for (size_t b = a; b <= n; b++) {
			msghash_begin(&h);
			msghash_update(&h, p, a);
			msghash_update(&h, p + a, b - a);
			msghash_update(&h, p + b, n - b);
			msghash_end(&h, e, f);
			UNIT_CHECKF(u, !memcmp(e, want_e, 32), "exact digest, split %zu/%zu of %s", a, b, s);
			UNIT_CHECKF(u, !memcmp(f, want_f, 32), "folded digest, split %zu/%zu", a, b);
		}
	msghash_free(&h);
}

static void test_fold_cases(struct unit_ctx *u)
{
	check_all_splits(u, "plain\r\nlines\r\n");
	check_all_splits(u, "bare\rcr\r\r\r\nend\r\r");
	check_all_splits(u, "\r\r\r\n\r\n\n\r");
	check_all_splits(u, "");
	check_all_splits(u, "x\r\ry\r\r\r");
	check_all_splits(u, "\r");
	check_all_splits(u, "\r\r");
	check_all_splits(u, "\r\n");
	check_all_splits(u, "\r\r\n");
	check_all_splits(u, "a\r\rb\r\r\nc\r\n");
	check_all_splits(u, "no fold\r\nat all\r\n\r\nbody\rx\r");
	check_all_splits(u, "late\r\n\r\nthen\r\r\r\nfold\r\n\r\r\n\r");
}

static void test_fold_value(struct unit_ctx *u)
{
	uint8_t out[64];
	size_t n = fold((const uint8_t *)"a\r\r\nb\rc\r\n", 9, out);

	UNIT_CHECK(u, n == 8 && !memcmp(out, "a\r\nb\rc\r\n", 8));
}

/* The line-end-blind digest: equal for what Courier-IMAP makes of a
 * message (lone CRs dropped, a final line end added), fed in any split. */
static void lf_of(const char *m, size_t split, uint8_t out[32])
{
	struct msghash_lf h = {0};
	size_t n = strlen(m);

	if (msghash_lf_begin(&h) < 0)
		return;
	if (split > n)
		split = n;
	msghash_lf_update(&h, (const uint8_t *)m, split);
	msghash_lf_update(&h, (const uint8_t *)m + split, n - split);
	msghash_lf_end(&h, out);
	msghash_lf_free(&h);
}

static void test_lf_digest(struct unit_ctx *u)
{
	static const char *const same[][2] = {
		{"a: b\r\n\r\nx\r\ny\r\n", "a: b\n\nx\ny\n"},
		{"a: b\r\n\r\nx\r\ny", "a: b\r\n\r\nx\r\ny\r\n"},
		{"a: b\r\n\r\nx\ry\r\n", "a: b\r\n\r\nxy\r\n"},
		{"a: b\r\n\r\nx\r\r\ny\r", "a: b\r\n\r\nx\r\ny\r\n"},
	};
	uint8_t a[32], b[32];

	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
		for (size_t k = 0; k < 12; k++) {
			memset(a, 0, 32);
			memset(b, 1, 32);
			lf_of(same[i][0], k, a);
			lf_of(same[i][1], 11 - k, b);
			UNIT_CHECKF(u, !memcmp(a, b, 32), "case %zu split %zu", i, k);
		}
	lf_of("a: b\r\n\r\nx\r\n", 3, a);
	lf_of("a: b\r\n\r\ny\r\n", 3, b);
	UNIT_CHECK(u, memcmp(a, b, 32) != 0);
}

/* Long enough for the 16-byte scan: a fold at and around each block
 * boundary, CR pairs split between two blocks, none at all, and random
 * mail-like bytes against the byte-wise reference, in random pieces. */
static void test_fold_blocks(struct unit_ctx *u)
{
	char s[80];
	uint32_t seed = 12345;

	for (size_t at = 0; at < 40; at++) {
		memset(s, 'x', sizeof(s));
		s[60] = 0;
		memcpy(s + at, "\r\r\n", 3);
		check_all_splits(u, s);
		s[at + 2] = 'y'; /* a CR pair not before an LF: not folded */
		check_all_splits(u, s);
	}
	check_all_splits(u, "a line of more than sixteen bytes\r\nand another one of them\r\n");
	for (int t = 0; t < 2000; t++) {
		size_t n = 0;

		seed = seed * 1103515245u + 12345u;
		n = 17 + (seed >> 16) % 60;
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			s[i] = "\r\r\r\nab"[(seed >> 16) % 6];
		}
		s[n] = 0;
		{
			uint8_t folded[256], want_e[32], want_f[32], e[32], f[32];
			size_t fl = fold((const uint8_t *)s, n, folded), a = (seed >> 8) % (n + 1);
			struct msghash h;

			SHA256((const uint8_t *)s, n, want_e);
			SHA256(folded, fl, want_f);
			msghash_init(&h);
			msghash_begin(&h);
			msghash_update(&h, (const uint8_t *)s, a);
			msghash_update(&h, (const uint8_t *)s + a, n - a);
			msghash_end(&h, e, f);
			UNIT_CHECKF(u, !memcmp(e, want_e, 32) && !memcmp(f, want_f, 32),
			            "random message %d (%zu bytes, split at %zu)", t, n, a);
			msghash_free(&h);
		}
	}
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, test_fold_value);
	UNIT_RUN(&u, test_fold_cases);
	UNIT_RUN(&u, test_fold_blocks);
	UNIT_RUN(&u, test_lf_digest);
	return unit_done(&u);
}
