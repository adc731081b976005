/*
 * state_check — is a state directory safe to use, before LMDB touches it:
 * the directory and its files belong to this user and nobody else may
 * write them, no symlinks, and data.mdb's pages hold together (read with
 * pread, since LMDB trusts its file and dies of SIGBUS on a short one).
 * state_check() itself is declared in state.h.
 *
 * Not for: reading records (state.c, state_verify).
 */
#ifndef MF_STATE_CHECK_H
#define MF_STATE_CHECK_H

#include "engine/base/err.h"

/* The directory is this user's and writable by nobody else (its files are
 * checked by state_check). 0, or a negative code with err set. */
int state_dir_check(const char *dir, struct mf_error *err);

/*
 * The seal: the page walk reads all of data.mdb, which on a 100,000-message
 * state is 20 MB and a quarter of a no-change re-run's time. A clean close
 * (state_close, after its last commit) writes DIR/sealed with data.mdb's
 * device, inode, size, mtime and ctime; state_open skips the walk (not the
 * meta pages' checks) when they still match. Any write to data.mdb since —
 * LMDB's own in a crashed run, a truncation, bytes overwritten in place —
 * moves its ctime, which nobody can set back, so that file is walked again.
 * `mailferry state check` always walks. A missing or stale seal only costs
 * the walk.
 */
void state_seal(const char *dir);
/* state_check, walking the pages only if the seal does not match. */
int state_check_sealed(const char *dir, struct state_check_info *info, struct mf_error *err);

#endif
