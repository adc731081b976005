/*
 * export — writes one run of an archive (store/archive.h) out as a
 * Maildir++ tree or as one mboxrd file, message bytes exactly as stored.
 *
 * Maildir: DIR is the INBOX; every other mailbox is DIR/.NAME (the stored
 * wire name; '.' already separates levels in Dovecot's Maildir++), with
 * cur/ new/ tmp/ and maildirfolder. Messages go to cur/ as
 * "IDATE.M<uid>.mailferry,S=SIZE:2,FLAGS": flags D F R S T in that order,
 * then keyword letters a-z through the folder's dovecot-keywords (the way
 * Dovecot reads them: "N name" lines, letter 'a'+N; 26 per folder at most,
 * the rest are counted as dropped). INTERNALDATE becomes the mtime.
 * A mailbox name is never trusted as a path: '/', '%', control bytes and a
 * leading '.' are %XX-escaped, over-long names are cut and tagged with a
 * hash, and every file is created relative to DIR's descriptor without
 * following links, so nothing is written outside DIR.
 *
 * mbox: mboxrd (a line matching ^>*From gets one more '>'), each message
 * after a "From MAILER-DAEMON DATE" line and followed by a blank line; a
 * message without a final newline gets one. Flags are not written (they
 * would change the bytes).
 *
 * A message that cannot be read back intact is reported through problem()
 * and skipped (a partly written file is removed); the rest is exported.
 * Not for: reading archives (archive.c), IMAP (restore is the pipeline's).
 */
#ifndef MF_EXPORT_H
#define MF_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/err.h"
#include "store/archive.h"

struct export_stats {
	uint64_t mailboxes, messages, bytes;
	uint64_t failed;           /* messages not exported (problem() named them) */
	uint64_t keywords_dropped; /* Maildir: past 26 in a folder */
};

typedef int (*export_problem_fn)(void *ctx, const char *mailbox, size_t mlen, uint32_t uid,
                                 const char *why);

/* folder: only this mailbox (wire name), or NULL for all. */
int export_maildir(struct archive *a, uint32_t run, const char *folder, const char *dir,
                   struct export_stats *st, export_problem_fn problem, void *ctx,
                   struct mf_error *err);
int export_mbox(struct archive *a, uint32_t run, const char *folder, const char *file,
                struct export_stats *st, export_problem_fn problem, void *ctx,
                struct mf_error *err);

/* The directory entry (without the leading '.') a mailbox name becomes:
 * never empty, never containing '/' or NUL, never "." or "..", at most
 * EXPORT_ENTRY_MAX bytes. Returns its length. */
#define EXPORT_ENTRY_MAX 200
size_t export_entry_name(const char *name, size_t nlen, char *out, size_t cap);

#endif
