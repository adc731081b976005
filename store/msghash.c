/* msghash — exact and CR-folded SHA-256 of a streamed message (see msghash.h). */
#include "store/msghash.h"

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
	h->exact = EVP_MD_CTX_new();
	h->folded = EVP_MD_CTX_new();
	h->cr = 0;
	if (!h->exact || !h->folded) {
		msghash_free(h);
		return -ENOMEM;
	}
	return 0;
}

void msghash_free(struct msghash *h)
{
	EVP_MD_CTX_free(h->exact);
	EVP_MD_CTX_free(h->folded);
	h->exact = h->folded = NULL;
}

void msghash_begin(struct msghash *h)
{
	EVP_DigestInit_ex(h->exact, EVP_sha256(), NULL);
	EVP_DigestInit_ex(h->folded, EVP_sha256(), NULL);
	h->cr = 0;
}

static void flush_crs(struct msghash *h, uint64_t n)
{
	while (n) {
		size_t k = n > sizeof(crs) ? sizeof(crs) : (size_t)n;

		EVP_DigestUpdate(h->folded, crs, k);
		n -= k;
	}
}

void msghash_update(struct msghash *h, const uint8_t *p, size_t n)
{
	const uint8_t *end = p + n;

	EVP_DigestUpdate(h->exact, p, n);
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
			flush_crs(h, *p == '\n' ? 1 : h->cr);
			h->cr = 0;
		}
		cr = memchr(p, '\r', (size_t)(end - p));
		if (!cr) {
			EVP_DigestUpdate(h->folded, p, (size_t)(end - p));
			return;
		}
		EVP_DigestUpdate(h->folded, p, (size_t)(cr - p));
		h->cr = 1;
		p = cr + 1;
	}
}

void msghash_end(struct msghash *h, uint8_t exact[32], uint8_t folded[32])
{
	uint8_t tmp[32];
	unsigned len = 32;

	flush_crs(h, h->cr);
	h->cr = 0;
	EVP_DigestFinal_ex(h->exact, exact ? exact : tmp, &len);
	len = 32;
	EVP_DigestFinal_ex(h->folded, folded ? folded : tmp, &len);
}
