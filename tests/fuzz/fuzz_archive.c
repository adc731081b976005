/*
 * fuzz_archive — libFuzzer target for what the archive reads back from
 * disk: index records (store/archive_fmt.c) and pack frames (frame header,
 * checksum, zstd frame; store/archive.c archive_frame_decode).
 *
 * Input: byte 0 selects. Bit 7 set: a frame, the rest is pack bytes at a
 * frame offset (pack id 1, no dictionary). Otherwise the low bits pick a
 * record kind, byte 1 the key length, then key and value; bit 6 set: the
 * record's CRC is recomputed first, so the field checks behind it are
 * reached too. Whatever is accepted must stay inside its buffers.
 */
#include "store/archive.h"
#include "store/archive_fmt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_archive: %s\n", what);
		abort();
	}
}

static void refused(int rc, const struct mf_error *err)
{
	check(rc == -EIO || rc == -EINVAL || rc == -ENOMEM, "unexpected error code");
	check(err->code == rc && err->msg[0] && memchr(err->msg, 0, sizeof(err->msg)),
	      "refusal without a reason");
}

static void frame(const uint8_t *p, size_t n)
{
	static uint8_t raw[AFMT_FRAME_RAW_MAX];
	struct mf_error err = {0};
	uint8_t *v = malloc(n ? n : 1);
	size_t rawn = 0, used = 0;
	int rc;

	if (!v)
		abort();
	memcpy(v, p, n);
	rc = archive_frame_decode(v, n, 1, NULL, 0, raw, sizeof(raw), &rawn, &used, &err);
	if (rc == 0)
		check(rawn <= AFMT_FRAME_RAW_MAX && used <= n && used > AFMT_FRAME_HDR,
		      "frame bounds");
	else
		refused(rc, &err);
	free(v);
}

static void record(const uint8_t *p, size_t n, unsigned sel)
{
	static struct afmt_rec r;
	struct mf_error err = {0};
	enum afmt_kind kind = (enum afmt_kind)(1 + (sel & 7) % 8);
	size_t klen, vlen;
	uint8_t *k, *v;
	int rc;

	if (n < 1)
		return;
	klen = p[0] % 65;
	if (n - 1 < klen)
		return;
	vlen = n - 1 - klen;
	k = malloc(klen ? klen : 1);
	v = malloc(vlen ? vlen : 1);
	if (!k || !v)
		abort();
	memcpy(k, p + 1, klen);
	memcpy(v, p + 1 + klen, vlen);
	if ((sel & 0x40) && vlen >= 5) {
		/* re-seal: CRC-32C over kind, key, value */
		uint8_t kb = (uint8_t)kind;
		uint32_t crc =
		    afmt_crc32c(afmt_crc32c(afmt_crc32c(0, &kb, 1), k, klen), v, vlen - 4);

		afmt_put32(v + vlen - 4, crc);
	}
	memset(&r, 0xa5, sizeof(r));
	rc = afmt_rec_decode(kind, k, klen, v, vlen, &r, &err);
	if (rc == 0) {
		switch (kind) {
		case AFMT_MSG:
			check(r.u.msg.kwlen <= AFMT_KW_MAX && r.u.msg.keywords[r.u.msg.kwlen] == 0,
			      "keywords bounds");
			check(r.u.msg.kind == AFMT_MSG_PRESENT || r.u.msg.kind == AFMT_MSG_DELETED,
			      "message kind");
			break;
		case AFMT_RUN:
			check(r.u.run.alen <= AFMT_ACCOUNT_MAX &&
			          r.u.run.account[r.u.run.alen] == 0,
			      "account bounds");
			break;
		case AFMT_MBOX:
			check(r.u.mbox.nlen <= AFMT_NAME_MAX && r.u.mbox.name[r.u.mbox.nlen] == 0,
			      "name bounds");
			break;
		case AFMT_OBJECT:
			check(r.u.obj.nframes > 0 && r.u.obj.skip < AFMT_FRAME_RAW_MAX &&
			          r.u.obj.size <= AFMT_MSG_MAX,
			      "object bounds");
			break;
		case AFMT_DICT:
			check(r.u.dict.p >= v && r.u.dict.p + r.u.dict.n <= v + vlen,
			      "dictionary inside its value");
			break;
		default:
			break;
		}
		/* what decodes encodes back to the same bytes */
		if (kind != AFMT_DICT) {
			static uint8_t out[AFMT_REC_MAX];
			size_t m = afmt_rec_encode(kind, k, klen, &r, out, sizeof(out));

			check(m == vlen && !memcmp(out, v, vlen), "re-encoding differs");
		}
	} else {
		refused(rc, &err);
	}
	free(k);
	free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 0x80)
		frame(data + 1, size - 1);
	else
		record(data + 1, size - 1, data[0]);
	return 0;
}
