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

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, test_fold_value);
	UNIT_RUN(&u, test_fold_cases);
	return unit_done(&u);
}
