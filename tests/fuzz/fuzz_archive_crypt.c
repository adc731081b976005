/*
 * fuzz_archive_crypt — libFuzzer target for what an encrypted archive
 * reads back from disk (store/archive_crypt.c, archive_read.c): the
 * encryption parameters record, sealed pack frames, sealed index values.
 *
 * Input: byte 0 selects (low two bits):
 *   0  the parameters record (acrypt_params_decode), the rest as is;
 *   1  a frame as found in a pack of an encrypted archive, at the offset
 *      in bytes 1..8, the rest as is (authentication must refuse it);
 *   2  a frame the harness seals first: bytes 1..4 raw length, then the
 *      zstd bytes, so the decoder behind the tag (zstd, sizes) is reached;
 *   3  an index value: byte 1 kind, byte 2 key length, key, value; bit 6
 *      of byte 0 set: the harness seals the value (kind || key as
 *      associated data) so the record decoder behind it is reached.
 * The key is fixed (a constant master). Whatever is accepted must stay
 * inside its buffers; whatever is refused is refused with a reason.
 */
#include "store/archive.h"
#include "store/archive_crypt.h"
#include "store/archive_fmt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_archive_crypt: %s\n", what);
		abort();
	}
}

static void refused(int rc, const struct mf_error *err)
{
	check(rc == -EIO || rc == -EINVAL || rc == -ENOMEM, "unexpected error code");
	check(err->code == rc && err->msg[0] && memchr(err->msg, 0, sizeof(err->msg)),
	      "refusal without a reason");
}

static void params(const uint8_t *p, size_t n)
{
	struct acrypt_params q;
	struct mf_error err = {0};
	int rc = acrypt_params_decode(p, n, &q, &err);

	if (rc)
		refused(rc, &err);
	else
		check(q.log2n >= ACRYPT_LOG2N_MIN && q.log2n <= 24 && q.r && q.p, "params bounds");
}

static void frame(struct acrypt *c, uint8_t *v, size_t n, uint64_t off)
{
	static uint8_t raw[AFMT_FRAME_RAW_MAX];
	struct mf_error err = {0};
	size_t rawn = 0, used = 0;
	int rc = archive_frame_open(c, v, n, 1, off, NULL, 0, raw, sizeof(raw), &rawn, &used, &err);

	if (rc == 0)
		check(rawn <= AFMT_FRAME_RAW_MAX && used <= n && used > AFMT_FRAME_HDR,
		      "frame bounds");
	else
		refused(rc, &err);
}

static void frame_sealed(struct acrypt *c, const uint8_t *p, size_t n)
{
	struct afmt_frame f = {0};
	uint8_t aad[AFMT_FRAME_HDR - 4 + 8], *v;
	size_t zn;

	if (n < 4 || n - 4 > AFMT_FRAME_COMP_MAX - ACRYPT_OVERHEAD)
		return;
	zn = n - 4;
	v = malloc(AFMT_FRAME_HDR + zn + ACRYPT_OVERHEAD);
	if (!v)
		abort();
	f.raw_len = afmt_get32(p) % (AFMT_FRAME_RAW_MAX + 2);
	f.comp_len = (uint32_t)(zn + ACRYPT_OVERHEAD);
	f.pack = 1;
	f.flags = AFMT_FRAME_SEALED;
	afmt_frame_hdr(v, &f);
	memcpy(v + AFMT_FRAME_HDR + ACRYPT_NONCE, p + 4, zn);
	memcpy(aad, v, AFMT_FRAME_HDR - 4);
	afmt_put64(aad + AFMT_FRAME_HDR - 4, 4096);
	check(acrypt_seal(c, aad, sizeof(aad), v + AFMT_FRAME_HDR, zn) == 0, "seal");
	frame(c, v, AFMT_FRAME_HDR + zn + ACRYPT_OVERHEAD, 4096);
	free(v);
}

static void record(struct acrypt *c, const uint8_t *p, size_t n, int seal)
{
	static struct afmt_rec r;
	struct mf_error err = {0};
	enum afmt_kind kind;
	uint8_t aad[65], *v;
	size_t klen, vlen, pn = 0;
	int rc;

	if (n < 2)
		return;
	kind = (enum afmt_kind)(1 + p[0] % 8);
	klen = p[1] % 65;
	if (n - 2 < klen)
		return;
	vlen = n - 2 - klen;
	aad[0] = (uint8_t)kind;
	memcpy(aad + 1, p + 2, klen);
	v = malloc(vlen + ACRYPT_OVERHEAD);
	if (!v)
		abort();
	if (seal) {
		memcpy(v + ACRYPT_NONCE, p + 2 + klen, vlen);
		if (vlen >= 5) {
			/* re-seal the record's CRC-32C too: kind, key, value */
			uint8_t kb = (uint8_t)kind;
			uint32_t crc = afmt_crc32c(afmt_crc32c(afmt_crc32c(0, &kb, 1), p + 2, klen),
			                           v + ACRYPT_NONCE, vlen - 4);

			afmt_put32(v + ACRYPT_NONCE + vlen - 4, crc);
		}
		check(acrypt_seal(c, aad, 1 + klen, v, vlen) == 0, "seal");
		vlen += ACRYPT_OVERHEAD;
	} else {
		memcpy(v, p + 2 + klen, vlen);
	}
	rc = acrypt_open(c, aad, 1 + klen, v, vlen, &pn);
	check(!seal || rc == 0, "a sealed value did not open");
	check(rc == 0 || rc == -EBADMSG || rc == -EIO, "unexpected open code");
	if (rc == 0) {
		check(pn + ACRYPT_OVERHEAD == vlen, "opened length");
		rc = afmt_rec_decode(kind, p + 2, klen, v + ACRYPT_NONCE, pn, &r, &err);
		if (rc)
			refused(rc, &err);
	}
	free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t master[32] = "fuzz_archive_crypt fixed master";
	struct mf_error err = {0};
	struct acrypt *c = NULL;
	uint8_t *v;

	if (size < 1 || size > (AFMT_FRAME_COMP_MAX + 64))
		return 0;
	if (acrypt_from_master(&c, master, &err))
		abort();
	switch (data[0] & 3) {
	case 0:
		params(data + 1, size - 1);
		break;
	case 1:
		if (size < 9)
			break;
		if (!(v = malloc(size - 9 + 1)))
			abort();
		memcpy(v, data + 9, size - 9);
		frame(c, v, size - 9, afmt_get64(data + 1));
		free(v);
		break;
	case 2:
		frame_sealed(c, data + 1, size - 1);
		break;
	default:
		record(c, data + 1, size - 1, (data[0] & 0x40) != 0);
		break;
	}
	acrypt_free(c);
	return 0;
}
