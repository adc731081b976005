/*
 * verify_src — `mailferry verify SRC ARCHIVE`: the live IMAP account
 * compared with one backup run of the archive (issue 19 item 5), mailbox
 * by mailbox, message by message.
 *
 * Cheap by default: one EXAMINE and one UID FETCH (UID RFC822.SIZE FLAGS)
 * per mailbox, against what the run recorded for each UID (size, flags,
 * keywords); no body crosses the wire. With full, BODY.PEEK[] too, and each
 * message's SHA-256 is compared with the archived content hash.
 *
 * Not for: re-checking the archive's own bytes (archive_verify does that),
 * changing anything (read-only on both sides: EXAMINE, BODY.PEEK).
 */
#ifndef MF_VERIFY_SRC_H
#define MF_VERIFY_SRC_H

#include <stdint.h>

#include "engine/base/err.h"
#include "engine/runtime/loop.h"
#include "protocols/imap_client.h"

struct archive;

/* One difference: mailbox (wire name bytes, mlen long), uid (0: the whole
 * mailbox), what (a short reason, plain ASCII but for names it quotes). */
struct verify_diff {
	const char *mailbox;
	size_t mlen;
	uint32_t uid;
	const char *what;
};

struct verify_src_stats {
	uint64_t mailboxes, messages, bodies, diffs;
};

/* Runs the comparison on loop l (run here until done). fn is called per
 * difference. 0 when the comparison ran (differences or not), else a
 * negative code with err set (connection, login, archive read). */
int verify_src_run(struct loop *l, const struct imap_endpoint *ep, struct archive *a, uint32_t run,
                   int full, int (*fn)(void *ctx, const struct verify_diff *d), void *ctx,
                   struct verify_src_stats *st, struct mf_error *err);

#endif
