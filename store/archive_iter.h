/*
 * archive_iter — reading one archived message out piece by piece, when the
 * reader (not the archive) decides when the next piece is wanted: restore
 * streams a message into a sink that may take fewer bytes than offered and
 * pause (engine/sync/source_archive.c). archive_get (archive.h) pushes a
 * whole message through a callback instead.
 *
 *   archive_reader_open(a, hash, &r) → archive_reader_peek / _take … → 0 at the end
 *
 * Each reader decompresses into a frame buffer (and reads through a pack
 * descriptor) of its own, so several readers on one handle may stream
 * side by side, interleaved with other reads of the handle (restore over
 * several connections: one reader per connection, all on the loop's one
 * thread; the handle is not thread-safe). A piece points into the
 * reader's frame: it stays valid until the reader's next peek after a
 * take. The bytes are re-hashed as they are taken: the last take returns
 * -EIO if they are not the message's (every frame is checked on load as
 * well).
 *
 * Not for: writing, listing runs or mailboxes (archive.h).
 */
#ifndef MF_ARCHIVE_ITER_H
#define MF_ARCHIVE_ITER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/err.h"
#include "store/msghash.h"

struct archive;
struct arc_fcache;

struct archive_reader {
	struct archive *a;
	uint8_t hash[32]; /* the objects key: the hash, or its MAC (arc_objkey) */
	uint32_t pack, skip, frames, nframes;
	uint64_t off, left, size;
	const uint8_t *p; /* the current piece, n bytes not taken yet */
	size_t n;
	int loaded; /* p/n are the frame at off */
	struct msghash h;
	int h_init;
	struct arc_fcache *fc; /* the reader's own frame (archive_int.h) */
	/* where the message starts (archive_reader_check rewinds to it) */
	uint32_t pack0, skip0;
	uint64_t off0;
};

/* Finds the message; *size is its length. -ENOENT if not stored. r is
 * zeroed once before its first open and reused for message after message
 * (its hash context is kept); archive_reader_close frees it. */
int archive_reader_open(struct archive *a, const uint8_t hash[32], struct archive_reader *r,
                        uint64_t *size, struct mf_error *err);
/* The next bytes not taken yet (*n = 0: the message is complete). */
int archive_reader_peek(struct archive_reader *r, const uint8_t **p, size_t *n,
                        struct mf_error *err);
/* k bytes of the last peek are used. At the end the hash is checked:
 * -EIO if the content is not the message's. */
int archive_reader_take(struct archive_reader *r, size_t k, struct mf_error *err);
/* Reads the whole message through and checks its hash (-EIO, named in
 * err, if the bytes are not the message's), then rewinds r to its first
 * byte: a damaged message fails before a byte of it is handed out. A
 * message within one frame is decompressed once for both passes. */
int archive_reader_check(struct archive_reader *r, struct mf_error *err);
/* Frees what r keeps between messages. */
void archive_reader_close(struct archive_reader *r);

#endif
