/*
 * kwdefer — keywords stored after a folder's APPENDs, not with each one,
 * on a destination with UIDPLUS but no MULTIAPPEND (Courier-IMAP).
 *
 * Why: Courier keeps keywords in courierimapkeywords/ and rewrites that
 * directory on every APPEND that carries one: a profile counted 128,841
 * keyword-file opens per 1,000 APPENDs with keywords (issue 22). So each
 * APPEND carries the system flags only; once the folder's last APPEND is
 * answered, one SELECT and one UID STORE +FLAGS.SILENT per identical
 * keyword set (kept under KWDEFER_CMD_MAX bytes, split otherwise) set
 * them, pipelined, then EXAMINE and CLOSE end the selected state without
 * expunging anything (RFC 3501 §6.4.2).
 *
 * Exactly once: a message whose keywords wait stays an intent in the
 * state, with its destination UID and UIDVALIDITY (state_msg_stored says
 * it is on the destination), until its STORE is answered OK; the folder's
 * record keeps its intents mark until then. A run after a crash settles
 * it (settle.c): under the same destination UIDVALIDITY it is there and
 * its keywords are stored again (+FLAGS is idempotent); under another it
 * counts as not found and is copied again.
 *
 * Not for: flag changes of later runs (changes.c), the APPEND itself
 * (sink_imap.c).
 */
#ifndef MF_KWDEFER_H
#define MF_KWDEFER_H

#include <stddef.h>
#include <stdint.h>

struct worker;
struct kwdefer;

/* Bytes of one UID STORE command, about: a longer one is split. */
#define KWDEFER_CMD_MAX 4000

/* 1 if w's destination gets its keywords deferred: an IMAP sink (not a
 * dry run's) on a server with UIDPLUS and without MULTIAPPEND. */
int kwdefer_on(const struct worker *w);
/* 1 if flags (n bytes, space-separated) hold a keyword. */
int kwdefer_has_keywords(const char *flags, size_t n);
/* Copies the system flags of flags into out (cap bytes, NUL-terminated):
 * what the APPEND carries. Returns their length. */
size_t kwdefer_system_flags(const char *flags, size_t n, char *out, size_t cap);
/* A message of w's mailbox (source uid) was stored as dst_uid with flags:
 * 1 if its keywords are now deferred (record it as an intent with its
 * destination UID), 0 if there is nothing to defer. Out of memory it is
 * still 1: the mailbox then keeps its intents mark and the next run
 * stores the keywords (settle.c). */
int kwdefer_note(struct worker *w, uint32_t uid, uint32_t dst_uid, const char *flags, size_t n);
/* mailbox_finish: 1 if the deferred keywords are being stored (the flush
 * calls mailbox_finish again when it is over), 0 if there is nothing
 * (more) to do. */
int kwdefer_flush(struct worker *w);
/* Forgets what waits (a new pass, a reconnect: settle collects it again
 * from the state). */
void kwdefer_reset(struct worker *w);
void kwdefer_free(struct worker *w);

#endif
