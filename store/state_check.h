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

#endif
