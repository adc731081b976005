/*
 * archive_fmt — pack header, frame header and index record encodings (see
 * archive_fmt.h). Integers are big-endian. A record is
 *     u8 version, fields..., u32 CRC-32C(kind byte, key, version..fields)
 * so a record is bound to its key and its database: a flipped byte in
 * either, or a value moved under another key, fails the check.
 */
#include "store/archive_fmt.h"

#include <errno.h>
#include <string.h>

/* CRC-32C (Castagnoli), four bits at a time: a 16-entry constant table,
 * no global state to initialise. */
static const uint32_t crc_nib[16] = {
    0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1, 0x417b1dbc, 0x5125dad3, 0x61c69362, 0x7198540d,
    0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9, 0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75,
};

#if defined(__x86_64__)
/* The SSE4.2 crc32 instruction computes CRC-32C: 8 bytes a step. */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *b, size_t n)
{
	uint64_t c = ~crc;

	for (; n >= 8; n -= 8, b += 8) {
		uint64_t w;

		memcpy(&w, b, 8);
		c = __builtin_ia32_crc32di(c, w);
	}
	while (n--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *b++);
	return ~(uint32_t)c;
}
#endif

uint32_t afmt_crc32c(uint32_t crc, const void *p, size_t n)
{
	const uint8_t *b = p;

#if defined(__x86_64__)
	if (n >= 16 && __builtin_cpu_supports("sse4.2"))
		return crc_hw(crc, b, n);
#endif
	crc = ~crc;
	while (n--) {
		crc ^= *b++;
		crc = (crc >> 4) ^ crc_nib[crc & 15];
		crc = (crc >> 4) ^ crc_nib[crc & 15];
	}
	return ~crc;
}

void afmt_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void afmt_put64(uint8_t *p, uint64_t v)
{
	afmt_put32(p, (uint32_t)(v >> 32));
	afmt_put32(p + 4, (uint32_t)v);
}

uint32_t afmt_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t afmt_get64(const uint8_t *p)
{
	return (uint64_t)afmt_get32(p) << 32 | afmt_get32(p + 4);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

void afmt_pack_hdr(uint8_t out[AFMT_PACK_HDR], uint32_t pack)
{
	memcpy(out, AFMT_PACK_MAGIC, 8);
	afmt_put32(out + 8, pack);
	afmt_put32(out + 12, afmt_crc32c(0, out, 12));
}

int afmt_pack_hdr_check(const uint8_t *p, size_t n, uint32_t pack, struct mf_error *err)
{
	if (n < AFMT_PACK_HDR || memcmp(p, AFMT_PACK_MAGIC, 8) ||
	    afmt_get32(p + 12) != afmt_crc32c(0, p, 12)) {
		mf_err_set(err, -EIO, "pack %u: not a mailferry pack header", pack);
		return -EIO;
	}
	if (afmt_get32(p + 8) != pack) {
		mf_err_set(err, -EIO, "pack %u: header names pack %u", pack, afmt_get32(p + 8));
		return -EIO;
	}
	return 0;
}

void afmt_frame_hdr(uint8_t out[AFMT_FRAME_HDR], const struct afmt_frame *f)
{
	afmt_put32(out, AFMT_FRAME_MAGIC);
	afmt_put32(out + 4, f->dict);
	afmt_put32(out + 8, f->comp_len);
	afmt_put32(out + 12, f->raw_len);
	afmt_put32(out + 16, f->pack);
	afmt_put32(out + 20, f->crc);
	afmt_put32(out + 24, f->flags);
	afmt_put32(out + 28, afmt_crc32c(0, out, 28));
}

int afmt_frame_hdr_decode(const uint8_t *p, size_t n, uint32_t pack, struct afmt_frame *f,
                          struct mf_error *err)
{
	if (n < AFMT_FRAME_HDR) {
		mf_err_set(err, -EIO, "frame header cut short (%zu bytes)", n);
		return -EIO;
	}
	if (afmt_get32(p) != AFMT_FRAME_MAGIC) {
		mf_err_set(err, -EIO, "no frame header here (bad magic)");
		return -EIO;
	}
	if (afmt_get32(p + 28) != afmt_crc32c(0, p, 28)) {
		mf_err_set(err, -EIO, "frame header checksum mismatch");
		return -EIO;
	}
	f->dict = afmt_get32(p + 4);
	f->comp_len = afmt_get32(p + 8);
	f->raw_len = afmt_get32(p + 12);
	f->pack = afmt_get32(p + 16);
	f->crc = afmt_get32(p + 20);
	f->flags = afmt_get32(p + 24);
	if (f->flags & ~AFMT_FRAME_SEALED) {
		mf_err_set(err, -EIO, "frame header has unknown flags %#x", f->flags);
		return -EIO;
	}
	if (f->pack != pack) {
		mf_err_set(err, -EIO, "frame header names pack %u, read from pack %u", f->pack,
		           pack);
		return -EIO;
	}
	if (!f->raw_len || f->raw_len > AFMT_FRAME_RAW_MAX || !f->comp_len ||
	    f->comp_len > AFMT_FRAME_COMP_MAX) {
		mf_err_set(err, -EIO, "frame header out of bounds (raw %u, stored %u)", f->raw_len,
		           f->comp_len);
		return -EIO;
	}
	return 0;
}

/* ---- records ---- */

static uint32_t rec_crc(enum afmt_kind kind, const void *key, size_t klen, const uint8_t *v,
                        size_t n)
{
	uint8_t k = (uint8_t)kind;

	return afmt_crc32c(afmt_crc32c(afmt_crc32c(0, &k, 1), key, klen), v, n);
}

static size_t seal(enum afmt_kind kind, const void *key, size_t klen, uint8_t *out, size_t n)
{
	afmt_put32(out + n, rec_crc(kind, key, klen, out, n));
	return n + 4;
}

size_t afmt_rec_encode(enum afmt_kind kind, const void *key, size_t klen, const struct afmt_rec *r,
                       uint8_t *out, size_t cap)
{
	size_t n = 1;

	if (cap < AFMT_REC_MAX)
		return 0;
	out[0] = AFMT_REC_V1;
	switch (kind) {
	case AFMT_OBJECT:
		afmt_put32(out + 1, r->u.obj.pack);
		afmt_put64(out + 5, r->u.obj.frame_off);
		afmt_put32(out + 13, r->u.obj.skip);
		afmt_put32(out + 17, r->u.obj.nframes);
		afmt_put64(out + 21, r->u.obj.size);
		afmt_put32(out + 29, r->u.obj.dict);
		n = 33;
		break;
	case AFMT_MSG:
		out[1] = r->u.msg.kind;
		afmt_put32(out + 2, r->u.msg.flags);
		afmt_put64(out + 6, (uint64_t)r->u.msg.internaldate);
		afmt_put64(out + 14, r->u.msg.size);
		memcpy(out + 22, r->u.msg.hash, 32);
		if (r->u.msg.kwlen > AFMT_KW_MAX)
			return 0;
		put16(out + 54, r->u.msg.kwlen);
		memcpy(out + 56, r->u.msg.keywords, r->u.msg.kwlen);
		n = 56 + r->u.msg.kwlen;
		break;
	case AFMT_RUN:
		afmt_put64(out + 1, r->u.run.time);
		afmt_put32(out + 9, r->u.run.acct);
		out[13] = r->u.run.committed;
		if (r->u.run.alen > AFMT_ACCOUNT_MAX)
			return 0;
		put16(out + 14, r->u.run.alen);
		memcpy(out + 16, r->u.run.account, r->u.run.alen);
		n = 16 + r->u.run.alen;
		break;
	case AFMT_RUNMB:
		afmt_put32(out + 1, r->u.uidvalidity);
		n = 5;
		break;
	case AFMT_MBOX:
		afmt_put32(out + 1, r->u.mbox.acct);
		if (r->u.mbox.nlen > AFMT_NAME_MAX)
			return 0;
		put16(out + 5, r->u.mbox.nlen);
		memcpy(out + 7, r->u.mbox.name, r->u.mbox.nlen);
		n = 7 + r->u.mbox.nlen;
		break;
	case AFMT_PACK:
		afmt_put64(out + 1, r->u.pack_len);
		n = 9;
		break;
	case AFMT_COUNTER:
		afmt_put32(out + 1, r->u.counter);
		n = 5;
		break;
	case AFMT_DICT:
		return 0; /* afmt_dict_encode */
	}
	return seal(kind, key, klen, out, n);
}

size_t afmt_dict_encode(const void *key, size_t klen, const uint8_t *d, size_t n, uint8_t *out)
{
	out[0] = AFMT_REC_V1;
	afmt_put32(out + 1, (uint32_t)n);
	memcpy(out + 5, d, n);
	return seal(AFMT_DICT, key, klen, out, 5 + n);
}

static const size_t key_len[] = {
    [AFMT_OBJECT] = 32, [AFMT_MSG] = 16, [AFMT_RUN] = 4,     [AFMT_RUNMB] = 8,
    [AFMT_MBOX] = 4,    [AFMT_PACK] = 4, [AFMT_COUNTER] = 0, [AFMT_DICT] = 4,
};

static int bad(struct mf_error *err, enum afmt_kind kind, const char *why)
{
	static const char *const names[] = {
	    [AFMT_OBJECT] = "object",     [AFMT_MSG] = "message",     [AFMT_RUN] = "run",
	    [AFMT_RUNMB] = "run mailbox", [AFMT_MBOX] = "mailbox",    [AFMT_PACK] = "pack",
	    [AFMT_COUNTER] = "counter",   [AFMT_DICT] = "dictionary",
	};

	mf_err_set(err, -EIO, "index %s record: %s", names[kind], why);
	return -EIO;
}

int afmt_rec_decode(enum afmt_kind kind, const void *key, size_t klen, const void *val, size_t vlen,
                    struct afmt_rec *r, struct mf_error *err)
{
	const uint8_t *v = val;
	size_t n, want;

	if (kind < AFMT_OBJECT || kind > AFMT_DICT) {
		mf_err_set(err, -EINVAL, "index record of unknown kind %d", (int)kind);
		return -EINVAL;
	}
	if (key_len[kind] ? klen != key_len[kind] : (klen == 0 || klen > 64))
		return bad(err, kind, "key of the wrong length");
	if (vlen < 5)
		return bad(err, kind, "cut short");
	n = vlen - 4;
	if (afmt_get32(v + n) != rec_crc(kind, key, klen, v, n))
		return bad(err, kind, "checksum mismatch");
	if (v[0] != AFMT_REC_V1) {
		mf_err_set(err, -EINVAL, "index record version %u (this mailferry reads %u)", v[0],
		           AFMT_REC_V1);
		return -EINVAL;
	}
	switch (kind) {
	case AFMT_OBJECT:
		if (n != 33)
			return bad(err, kind, "wrong length");
		r->u.obj.pack = afmt_get32(v + 1);
		r->u.obj.frame_off = afmt_get64(v + 5);
		r->u.obj.skip = afmt_get32(v + 13);
		r->u.obj.nframes = afmt_get32(v + 17);
		r->u.obj.size = afmt_get64(v + 21);
		r->u.obj.dict = afmt_get32(v + 29);
		if (r->u.obj.frame_off < AFMT_PACK_HDR ||
		    r->u.obj.frame_off > ((uint64_t)1 << 48) ||
		    r->u.obj.skip >= AFMT_FRAME_RAW_MAX || !r->u.obj.nframes ||
		    r->u.obj.size > AFMT_MSG_MAX)
			return bad(err, kind, "fields out of bounds");
		return 0;
	case AFMT_MSG:
		if (n < 56)
			return bad(err, kind, "wrong length");
		r->u.msg.kind = v[1];
		r->u.msg.flags = afmt_get32(v + 2);
		r->u.msg.internaldate = (int64_t)afmt_get64(v + 6);
		r->u.msg.size = afmt_get64(v + 14);
		memcpy(r->u.msg.hash, v + 22, 32);
		want = get16(v + 54);
		if (want > AFMT_KW_MAX || n != 56 + want)
			return bad(err, kind, "keywords length out of bounds");
		if (r->u.msg.kind != AFMT_MSG_PRESENT && r->u.msg.kind != AFMT_MSG_DELETED)
			return bad(err, kind, "unknown kind");
		if (r->u.msg.size > AFMT_MSG_MAX)
			return bad(err, kind, "size out of bounds");
		r->u.msg.kwlen = (uint16_t)want;
		memcpy(r->u.msg.keywords, v + 56, want);
		r->u.msg.keywords[want] = '\0';
		return 0;
	case AFMT_RUN:
		if (n < 16)
			return bad(err, kind, "wrong length");
		r->u.run.time = afmt_get64(v + 1);
		r->u.run.acct = afmt_get32(v + 9);
		r->u.run.committed = v[13];
		want = get16(v + 14);
		if (want > AFMT_ACCOUNT_MAX || n != 16 + want)
			return bad(err, kind, "account length out of bounds");
		r->u.run.alen = (uint16_t)want;
		memcpy(r->u.run.account, v + 16, want);
		r->u.run.account[want] = '\0';
		return 0;
	case AFMT_RUNMB:
		if (n != 5)
			return bad(err, kind, "wrong length");
		r->u.uidvalidity = afmt_get32(v + 1);
		return 0;
	case AFMT_MBOX:
		if (n < 7)
			return bad(err, kind, "wrong length");
		r->u.mbox.acct = afmt_get32(v + 1);
		want = get16(v + 5);
		if (want > AFMT_NAME_MAX || n != 7 + want)
			return bad(err, kind, "name length out of bounds");
		r->u.mbox.nlen = (uint16_t)want;
		memcpy(r->u.mbox.name, v + 7, want);
		r->u.mbox.name[want] = '\0';
		return 0;
	case AFMT_PACK:
		if (n != 9)
			return bad(err, kind, "wrong length");
		r->u.pack_len = afmt_get64(v + 1);
		if (r->u.pack_len < AFMT_PACK_HDR || r->u.pack_len > ((uint64_t)1 << 48))
			return bad(err, kind, "length out of bounds");
		return 0;
	case AFMT_COUNTER:
		if (n != 5)
			return bad(err, kind, "wrong length");
		r->u.counter = afmt_get32(v + 1);
		return 0;
	case AFMT_DICT:
		if (n < 5)
			return bad(err, kind, "wrong length");
		want = afmt_get32(v + 1);
		if (!want || want > AFMT_DICT_MAX || n != 5 + want)
			return bad(err, kind, "length out of bounds");
		r->u.dict.p = v + 5;
		r->u.dict.n = want;
		return 0;
	}
	return -EINVAL;
}
