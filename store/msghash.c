/*
 * msghash — exact and CR-folded SHA-256 of a streamed message (see msghash.h).
 *
 * OpenSSL's SHA256_* calls rather than EVP: EVP_DigestInit_ex fetches the
 * algorithm from the provider on every message (a lock, a name lookup and
 * a context allocation: 3 % of a migration's CPU, measured with perf on
 * 6,018 messages), and each EVP update goes through the provider table. The
 * low-level calls run the same SHA-NI/AVX2 block code. OpenSSL 3 marks them
 * deprecated, not removed; this file alone opts in.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "store/msghash.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <string.h>

static const uint8_t crs[64] = {
	'\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r',
	'\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r',
	'\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r',
	'\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r',
	'\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r',
};

int msghash_init(struct msghash *h)
{
	memset(h, 0, sizeof(*h));
	return 0;
}

void msghash_free(struct msghash *h)
{
	OPENSSL_cleanse(h, sizeof(*h));
}

void msghash_begin(struct msghash *h)
{
	SHA256_Init(&h->exact);
	h->cr = 0;
	h->lazy = 1;
}

static void flush_crs(SHA256_CTX *md, uint64_t n)
{
	while (n) {
		size_t k = n > sizeof(crs) ? sizeof(crs) : (size_t)n;

		SHA256_Update(md, crs, k);
		n -= k;
	}
}

/* The folded digest on its own (after the first fold): runs of CRs pending
 * in h->cr, the rest line by line. */
static void fold_update(struct msghash *h, const uint8_t *p, size_t n)
{
	const uint8_t *end = p + n;

	while (p < end) {
		const uint8_t *cr;

		if (h->cr) {
			/* A run of CRs is pending: it ends here. */
			while (p < end && *p == '\r') {
				h->cr++;
				p++;
			}
			if (p == end)
				return;
			flush_crs(&h->folded, *p == '\n' ? 1 : h->cr);
			h->cr = 0;
		}
		cr = memchr(p, '\r', (size_t)(end - p));
		if (!cr) {
			SHA256_Update(&h->folded, p, (size_t)(end - p));
			return;
		}
		SHA256_Update(&h->folded, p, (size_t)(cr - p));
		h->cr = 1;
		p = cr + 1;
	}
}

/* The first "\r\r" in [p, end), or NULL. Mail has a CR on every line, so
 * a memchr per CR is a call per line (5 % of a migration's CPU, perf on
 * 6,018 messages); SSE2 (every x86-64 has it) compares 16 positions, and
 * the 16 after each, at once. */
#if defined(__SSE2__)
#include <emmintrin.h>

static const uint8_t *find_crcr(const uint8_t *p, const uint8_t *end)
{
	const __m128i cr = _mm_set1_epi8('\r');

	while (end - p >= 17) {
		__m128i a = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)p), cr);
		__m128i b = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + 1)), cr);
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_and_si128(a, b));

		if (m)
			return p + __builtin_ctz(m);
		p += 16;
	}
	for (; end - p >= 2; p++)
		if (p[0] == '\r' && p[1] == '\r')
			return p;
	return NULL;
}
#else
static const uint8_t *find_crcr(const uint8_t *p, const uint8_t *end)
{
	while (p < end) {
		const uint8_t *cr = memchr(p, '\r', (size_t)(end - p));

		if (!cr || cr + 1 >= end)
			return NULL;
		if (cr[1] == '\r')
			return cr;
		p = cr + 2; /* cr[1] is not a CR */
	}
	return NULL;
}
#endif

/*
 * Almost no message has two CRs before an LF, and until one does, the
 * folded bytes are the exact bytes: one digest serves both (lazy). A run of
 * CRs is held back from the digest until what follows it is seen; the first
 * run of two or more that ends in an LF forks the folded digest off the
 * exact one (a copy of its state) and from there both are fed.
 */
void msghash_update(struct msghash *h, const uint8_t *p, size_t n)
{
	const uint8_t *end = p + n;

	if (!h->lazy) {
		SHA256_Update(&h->exact, p, n);
		fold_update(h, p, n);
		return;
	}
	while (p < end) {
		const uint8_t *q;

		if (h->cr) {
			while (p < end && *p == '\r') {
				h->cr++;
				p++;
			}
			if (p == end)
				return; /* the run may go on in the next chunk */
			if (*p == '\n' && h->cr > 1) {
				h->folded = h->exact;
				h->lazy = 0;
				flush_crs(&h->exact, h->cr);
				flush_crs(&h->folded, 1);
				h->cr = 0;
				SHA256_Update(&h->exact, p, (size_t)(end - p));
				fold_update(h, p, (size_t)(end - p));
				return;
			}
			flush_crs(&h->exact, h->cr); /* nothing to fold: the same for both */
			h->cr = 0;
		}
		q = find_crcr(p, end);
		if (!q) {
			/* a CR at the very end may start a run */
			q = end[-1] == '\r' ? end - 1 : end;
			SHA256_Update(&h->exact, p, (size_t)(q - p));
			h->cr = (uint64_t)(end - q);
			return;
		}
		SHA256_Update(&h->exact, p, (size_t)(q - p));
		h->cr = 2;
		p = q + 2;
	}
}

void msghash_end(struct msghash *h, uint8_t exact[32], uint8_t folded[32])
{
	uint8_t tmp[32];

	if (h->lazy) {
		/* a run at the very end has no LF after it: not folded */
		flush_crs(&h->exact, h->cr);
		h->cr = 0;
		SHA256_Final(exact ? exact : tmp, &h->exact);
		if (folded)
			memcpy(folded, exact ? exact : tmp, 32);
		return;
	}
	flush_crs(&h->folded, h->cr);
	h->cr = 0;
	SHA256_Final(exact ? exact : tmp, &h->exact);
	SHA256_Final(folded ? folded : tmp, &h->folded);
}

int msghash_lf_begin(struct msghash_lf *h)
{
	SHA256_Init(&h->md);
	h->last = -1;
	h->on = 1;
	return 0;
}

void msghash_lf_update(struct msghash_lf *h, const uint8_t *p, size_t n)
{
	const uint8_t *end = p + n, *cr;

	if (!n)
		return;
	while (p < end) {
		cr = memchr(p, '\r', (size_t)(end - p));
		if (!cr) {
			SHA256_Update(&h->md, p, (size_t)(end - p));
			h->last = end[-1];
			return;
		}
		if (cr > p) {
			SHA256_Update(&h->md, p, (size_t)(cr - p));
			h->last = cr[-1];
		}
		p = cr + 1;
	}
}

void msghash_lf_end(struct msghash_lf *h, uint8_t out[32])
{
	if (h->last != '\n')
		SHA256_Update(&h->md, "\n", 1);
	SHA256_Final(out, &h->md);
}

void msghash_lf_free(struct msghash_lf *h)
{
	OPENSSL_cleanse(h, sizeof(*h));
}
