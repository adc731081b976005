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
 * Which mailboxes: those backup takes with the same options (--folder,
 * --exclude and their -regex forms, matched against the readable name,
 * '/' for hierarchy): one outside them is neither compared nor reported
 * missing on either side.
 *
 * A POP3 source (o->src_pop3): its one mailbox, INBOX, whose messages the
 * archive keys by the id backup's state gave each unique-id (UIDL, RFC
 * 1939 §7; source_pop3.c), so the backup's state (its job of that account
 * and archive) is read to map one to the other; a unique-id it never saw
 * is "in the source, not in the archive". UIDL and LIST: sizes compared;
 * with full, RETR too (the server's CRLF before its "." treated as backup
 * treats it). POP3 has no flags.
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
	uint64_t filtered; /* mailboxes left out by the folder options */
};

struct job_opts;
struct state;

/* What to compare: o->src (or o->src_pop3_ep), o's folder options; for a
 * POP3 source the backup's state st and its job id there (IMAP: unused). */
struct verify_src_in {
	const struct job_opts *o;
	struct archive *a;
	uint32_t run;
	int full;
	struct state *st;
	uint32_t job;
};

/* Runs the comparison on loop l (run here until done). fn is called per
 * difference. 0 when the comparison ran (differences or not), else a
 * negative code with err set (connection, login, archive read, a folder
 * option that does not compile). */
int verify_src_run(struct loop *l, const struct verify_src_in *in,
                   int (*fn)(void *ctx, const struct verify_diff *d), void *ctx,
                   struct verify_src_stats *st, struct mf_error *err);

#endif
