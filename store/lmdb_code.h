/*
 * lmdb_code — an LMDB return code as a negative errno, for the stores
 * built on LMDB (state, archive index). Not for: messages (each store
 * words its own).
 */
#ifndef MF_LMDB_CODE_H
#define MF_LMDB_CODE_H

#include <errno.h>
#include <lmdb.h>

static inline int mf_lmdb_code(int rc)
{
	if (rc > 0)
		return -rc; /* LMDB passes system errors through as errno values */
	switch (rc) {
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
		return -ENOSPC;
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
	case MDB_INCOMPATIBLE:
	case MDB_BAD_VALSIZE:
		return -EINVAL;
	case MDB_READERS_FULL:
	case MDB_MAP_RESIZED:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

#endif
