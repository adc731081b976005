/*
 * archive_fmt — the archive's on-disk encodings, pure and separately
 * fuzzed: CRC-32C, the pack file header, the 32-byte frame header that
 * precedes every zstd frame in a pack, and the sealed LMDB index records
 * (every value carries a version byte and a CRC-32C over key and value, so
 * a flipped byte in the index is named, never believed).
 *
 * Everything read from disk is untrusted: decoders check bounds, version
 * and checksum and return -EIO (damaged) or -EINVAL (unknown version) with
 * a reason. Not for: I/O, LMDB or zstd state (archive.c).
 */
#ifndef MF_ARCHIVE_FMT_H
#define MF_ARCHIVE_FMT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/err.h"

#define AFMT_PACK_MAGIC "MFPACK1\n"
#define AFMT_PACK_HDR 16             /* magic, u32 pack id, u32 crc */
#define AFMT_FRAME_MAGIC 0x4d465a31u /* "MFZ1" */
#define AFMT_FRAME_HDR 32
#define AFMT_FRAME_SEALED 1u          /* frame flag: encrypted (store/archive_crypt.h) */
#define AFMT_FRAME_RAW_MAX (1u << 20) /* no frame holds more raw bytes */
#define AFMT_FRAME_COMP_MAX ((1u << 20) + (1u << 16))
#define AFMT_REC_V1 1
#define AFMT_NAME_MAX 4096 /* mailbox name bytes */
#define AFMT_ACCOUNT_MAX 400
#define AFMT_KW_MAX 1024 /* keywords, space-separated */
#define AFMT_DICT_MAX (256u << 10)
#define AFMT_MSG_MAX ((uint64_t)1 << 40)

uint32_t afmt_crc32c(uint32_t crc, const void *p, size_t n);

void afmt_put32(uint8_t *p, uint32_t v);
void afmt_put64(uint8_t *p, uint64_t v);
uint32_t afmt_get32(const uint8_t *p);
uint64_t afmt_get64(const uint8_t *p);

/* Pack header: writes AFMT_PACK_HDR bytes; check returns 0 or -EIO. */
void afmt_pack_hdr(uint8_t out[AFMT_PACK_HDR], uint32_t pack);
int afmt_pack_hdr_check(const uint8_t *p, size_t n, uint32_t pack, struct mf_error *err);

struct afmt_frame {
	uint32_t dict;     /* dictionary version, 0 = none */
	uint32_t comp_len; /* zstd bytes after the header */
	uint32_t raw_len;  /* bytes they decompress to */
	uint32_t pack;
	uint32_t crc;   /* CRC-32C of the zstd bytes (0 when sealed: the tag checks) */
	uint32_t flags; /* AFMT_FRAME_SEALED: nonce || AES-256-GCM(zstd) || tag */
};
void afmt_frame_hdr(uint8_t out[AFMT_FRAME_HDR], const struct afmt_frame *f);
/* Checks magic, header CRC, pack id and bounds; 0 or -EIO. */
int afmt_frame_hdr_decode(const uint8_t *p, size_t n, uint32_t pack, struct afmt_frame *f,
                          struct mf_error *err);

/* ---- index records ---- */

enum afmt_kind {
	AFMT_OBJECT = 1, /* objects: hash[32] -> where the bytes are */
	AFMT_MSG,        /* msgs: (mbid, uidvalidity, uid, run) -> one version */
	AFMT_RUN,        /* runs: run -> time, account */
	AFMT_RUNMB,      /* runmb: (run, mbid) -> uidvalidity */
	AFMT_MBOX,       /* mboxes: mbid -> account id, name */
	AFMT_PACK,       /* packs: pack -> committed length */
	AFMT_COUNTER,    /* meta: name -> u32 */
	AFMT_DICT,       /* dicts: version -> dictionary bytes */
};

struct afmt_object {
	uint32_t pack;
	uint64_t frame_off; /* offset of the first frame's header in the pack */
	uint32_t skip;      /* raw bytes of that frame before the message */
	uint32_t nframes;   /* frames the message touches */
	uint64_t size;      /* raw bytes */
	uint32_t dict;      /* dictionary of the first frame */
};

enum afmt_msg_kind { AFMT_MSG_PRESENT = 1, AFMT_MSG_DELETED = 2 };

struct afmt_msg {
	uint8_t kind;   /* enum afmt_msg_kind */
	uint32_t flags; /* ARCHIVE_F_* */
	int64_t internaldate;
	uint64_t size;
	uint8_t hash[32];
	uint16_t kwlen;
	char keywords[AFMT_KW_MAX + 1]; /* NUL-terminated */
};

struct afmt_run {
	uint64_t time;
	uint32_t acct;
	uint8_t committed;
	uint16_t alen;
	char account[AFMT_ACCOUNT_MAX + 1];
};

struct afmt_mbox {
	uint32_t acct;
	uint16_t nlen;
	char name[AFMT_NAME_MAX + 1]; /* NUL-terminated; may hold NULs before nlen */
};

struct afmt_rec {
	union {
		struct afmt_object obj;
		struct afmt_msg msg;
		struct afmt_run run;
		struct afmt_mbox mbox;
		uint32_t uidvalidity; /* AFMT_RUNMB */
		uint64_t pack_len;    /* AFMT_PACK */
		uint32_t counter;     /* AFMT_COUNTER */
		struct {
			const uint8_t *p; /* AFMT_DICT: points into the value */
			size_t n;
		} dict;
	} u;
};

/* Encodes a record into out (cap bytes; AFMT_REC_MAX is always enough),
 * sealed with key; returns its length. */
#define AFMT_REC_MAX (AFMT_NAME_MAX + 64)
size_t afmt_rec_encode(enum afmt_kind kind, const void *key, size_t klen, const struct afmt_rec *r,
                       uint8_t *out, size_t cap);
/* Dictionaries are too large for AFMT_REC_MAX: out must hold n + 9. */
size_t afmt_dict_encode(const void *key, size_t klen, const uint8_t *d, size_t n, uint8_t *out);
/* Decodes and checks one stored record (key is what LMDB returned with it);
 * 0, or -EIO (damaged: checksum, bounds) / -EINVAL (unknown version). */
int afmt_rec_decode(enum afmt_kind kind, const void *key, size_t klen, const void *val, size_t vlen,
                    struct afmt_rec *r, struct mf_error *err);

#endif
