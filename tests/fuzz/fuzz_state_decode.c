/*
 * fuzz_state_decode — libFuzzer target for the record decoding of
 * store/state.c (what a damaged data.mdb would hand it).
 *
 * The first byte picks the record type (messages or mailboxes); the rest is
 * the stored value. A record is either refused with a reason or decoded
 * into fields that stay inside their buffers and are NUL-terminated.
 */
#include "store/state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "state_decode: %s\n", what);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct state_mbox mb;
	static struct state_msg m;
	struct mf_error err = {0};
	uint8_t *v;
	int msg, rc;

	if (size < 1)
		return 0;
	msg = data[0] & 1;
	/* an exact-size copy, so ASan sees any read past the value's end */
	v = malloc(size - 1 ? size - 1 : 1);
	if (!v)
		abort();
	memcpy(v, data + 1, size - 1);
	memset(&mb, 0xa5, sizeof(mb));
	memset(&m, 0xa5, sizeof(m));
	rc = state_rec_decode(msg, v, size - 1, &mb, &m, &err);
	if (rc == 0) {
		if (msg) {
			check(memchr(m.flags, 0, sizeof(m.flags)) != NULL,
			      "flags not NUL-terminated");
			check(m.status == v[1], "status");
			check(size - 1 == 100 + strnlen(m.flags, sizeof(m.flags)) ||
			          memchr(v + 100, 0, size - 101),
			      "flags length");
		} else {
			check(memchr(mb.name, 0, sizeof(mb.name)) != NULL,
			      "name not NUL-terminated");
			check(memchr(mb.dst_name, 0, sizeof(mb.dst_name)) != NULL,
			      "dst_name not NUL-terminated");
		}
	} else {
		check(rc == -EIO || rc == -EINVAL, "unexpected error code");
		check(err.code == rc && err.msg[0] && memchr(err.msg, 0, sizeof(err.msg)),
		      "refusal without a reason");
	}
	free(v);
	return 0;
}
