/*
 * fuzz_http_req — libFuzzer target for protocols/http_req.c, the request
 * head parser of the status server (--status).
 *
 * The input is fed once whole and once in pieces whose sizes come from
 * its own bytes: both must give the same answer, the same path, query and
 * Authorization, and a DONE result must never take more than was fed, nor
 * hand out a path that does not start with '/' or holds a control byte.
 */
#include "protocols/http_req.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum http_req_status feed_all(struct http_req *q, const uint8_t *p, size_t n, size_t step,
                                     size_t *taken)
{
	enum http_req_status st = HTTP_REQ_MORE;
	size_t off = 0, used;

	http_req_init(q);
	while (off < n) {
		size_t k = n - off < step ? n - off : step;

		st = http_req_feed(q, p + off, k, &used);
		if (used > k)
			abort();
		off += used;
		if (st != HTTP_REQ_MORE)
			break;
	}
	*taken = off;
	return st;
}

static int same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http_req a, b;
	enum http_req_status sa, sb;
	size_t ta, tb, step = size ? (size_t)data[0] % 17 + 1 : 1;

	sa = feed_all(&a, data, size, size ? size : 1, &ta);
	sb = feed_all(&b, data, size, step, &tb);
	if (sa != sb)
		abort();
	if (sa == HTTP_REQ_ERROR && (a.error_code != b.error_code || a.error_code < 400))
		abort();
	if (sa == HTTP_REQ_DONE) {
		if (ta != tb || !same(a.path, b.path) || !same(a.query, b.query) ||
		    !same(a.auth, b.auth) || a.method != b.method || a.keep_alive != b.keep_alive)
			abort();
		if (a.path[0] != '/' || (a.method != HTTP_GET && a.method != HTTP_HEAD))
			abort();
		for (const char *c = a.path; *c; c++)
			if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
				abort();
	}
	return 0;
}
