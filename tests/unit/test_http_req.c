/* Unit tests for protocols/http_req.c: the request heads the status server
 * takes and the ones it refuses, whole and byte by byte. */
#include "protocols/http_req.h"
#include "tests/unit/unit.h"

static struct http_req q;

/* Feeds s whole (step 0) or in steps of step bytes; returns the status. */
static enum http_req_status feed(const char *s, size_t step, size_t *taken)
{
	size_t n = strlen(s), off = 0, used;
	enum http_req_status st = HTTP_REQ_MORE;

	http_req_init(&q);
	while (off < n) {
		size_t k = step && n - off > step ? step : n - off;

		st = http_req_feed(&q, (const uint8_t *)s + off, k, &used);
		off += used;
		if (st != HTTP_REQ_MORE)
			break;
	}
	if (taken)
		*taken = off;
	return st;
}

static void test_get(struct unit_ctx *u)
{
	const char *r =
	    "GET /metrics?x=1 HTTP/1.1\r\nHost: h\r\nAuthorization:  Bearer t0k \r\n\r\n"
	    "GET / HTTP/1.1\r\n";
	size_t taken;

	for (size_t step = 0; step < 4; step++) {
		UNIT_CHECK(u, feed(r, step, &taken) == HTTP_REQ_DONE);
		UNIT_CHECK(u, q.method == HTTP_GET && !strcmp(q.path, "/metrics"));
		UNIT_CHECK(u, !strcmp(q.query, "x=1") && q.auth && !strcmp(q.auth, "Bearer t0k"));
		UNIT_CHECK(u, q.keep_alive == 1 && q.minor == 1);
		UNIT_CHECK(u, taken == strlen(r) - strlen("GET / HTTP/1.1\r\n"));
	}
}

static void test_variants(struct unit_ctx *u)
{
	UNIT_CHECK(u, feed("\r\nHEAD / HTTP/1.0\n\n", 0, NULL) == HTTP_REQ_DONE);
	UNIT_CHECK(u, q.method == HTTP_HEAD && q.keep_alive == 0 && !q.auth);
	UNIT_CHECK(u, feed("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n", 1,
	                   NULL) == HTTP_REQ_DONE &&
	                  q.keep_alive == 0);
	UNIT_CHECK(u, feed("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", 0, NULL) ==
	                  HTTP_REQ_DONE);
	UNIT_CHECK(u, feed("GET / HTTP/1.1\r\nHost: h\r\n", 0, NULL) == HTTP_REQ_MORE);
}

static void refused(struct unit_ctx *u, const char *r, int code)
{
	for (size_t step = 0; step < 3; step++) {
		UNIT_CHECKF(u, feed(r, step, NULL) == HTTP_REQ_ERROR && q.error_code == code,
		            "%s: step %zu: code %d, wanted %d", r, step, q.error_code, code);
		UNIT_CHECK(u, q.why && !strpbrk(q.why, "\r\n"));
	}
}

static void test_refused(struct unit_ctx *u)
{
	refused(u, "POST / HTTP/1.1\r\nHost: h\r\n\r\n", 405);
	refused(u, "DELETE /metrics HTTP/1.1\r\nHost: h\r\n\r\n", 405);
	refused(u, "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
	refused(u, "GET / HTTP/1.1\r\n\r\n", 400); /* no Host */
	refused(u, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
	refused(u, "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n", 400);
	refused(u, "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
	refused(u, "GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400);
	refused(u, "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400);
	refused(u, "GET / HTTP/1.1\r\nHost: h\rX\r\n\r\n", 400);
	refused(u, "GET http://x/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
	refused(u, "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
	refused(u, "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400);
	refused(u, "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
	refused(u, "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n",
	        400);
}

static void test_nul_and_sizes(struct unit_ctx *u)
{
	static char big[HTTP_REQ_HEAD_MAX + 100], target[HTTP_REQ_TARGET_MAX + 100];
	const uint8_t nul[] = "GET / HTTP/1.1\r\nHost: h\0x\r\n\r\n";
	size_t used;

	http_req_init(&q);
	UNIT_CHECK(u, http_req_feed(&q, nul, sizeof(nul) - 1, &used) == HTTP_REQ_ERROR &&
	                  q.error_code == 400);
	/* a head that never ends: refused at the limit, however it arrives */
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	memset(big + 19, 'a', sizeof(big) - 20);
	big[sizeof(big) - 1] = '\0';
	refused(u, big, 431);
	memset(target, 'a', sizeof(target) - 1);
	target[0] = '/';
	snprintf(big, sizeof(big), "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", target);
	refused(u, big, 414);
	/* after an error, more input is refused too */
	UNIT_CHECK(u, http_req_feed(&q, (const uint8_t *)"x", 1, &used) == HTTP_REQ_ERROR);
}

static void test_dotdot_is_just_a_path(struct unit_ctx *u)
{
	/* not decoded, not normalised: the server compares with its list */
	UNIT_CHECK(u, feed("GET /../etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n", 0, NULL) ==
	                      HTTP_REQ_DONE &&
	                  !strcmp(q.path, "/../etc/passwd"));
	UNIT_CHECK(u, feed("GET /%2e%2e/ HTTP/1.1\r\nHost: h\r\n\r\n", 0, NULL) == HTTP_REQ_DONE &&
	                  !strcmp(q.path, "/%2e%2e/"));
}

int main(void)
{
	struct unit_ctx u = {0};

	unit_run(&u, "http_req_get", test_get);
	unit_run(&u, "http_req_variants", test_variants);
	unit_run(&u, "http_req_refused", test_refused);
	unit_run(&u, "http_req_nul_and_sizes", test_nul_and_sizes);
	unit_run(&u, "http_req_dotdot", test_dotdot_is_just_a_path);
	return unit_done(&u);
}
