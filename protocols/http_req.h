/*
 * http_req — an incremental parser for the head of one HTTP/1.1 request
 * (RFC 9112 §2-§5), for the read-only status server (engine/cli/status*).
 *
 * It is fed bytes as they arrive and copies the head into its own bounded
 * buffer (HTTP_REQ_HEAD_MAX): a head larger than that is refused (431)
 * however slowly it comes, and nothing is allocated. When the blank line
 * ending the head has arrived, the request line and the few header fields
 * the server cares about are checked and split out: method, path, query,
 * the version, Authorization and Connection. Anything malformed gets the
 * status code to answer with. A request body is refused (the server only
 * answers GET and HEAD): Content-Length other than 0 or any
 * Transfer-Encoding is an error, so no request can smuggle another.
 *
 * Not for: routing, answering, or decoding %-escapes in the path (the
 * server compares paths with its fixed list, so "/%2e%2e/" is simply not
 * found). Pure: no I/O. Fuzzed by tests/fuzz/fuzz_http_req.c.
 */
#ifndef MF_HTTP_REQ_H
#define MF_HTTP_REQ_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_REQ_HEAD_MAX 8192
#define HTTP_REQ_TARGET_MAX 2048

enum http_req_status {
	HTTP_REQ_MORE = 0,   /* the head is not complete yet */
	HTTP_REQ_DONE = 1,   /* a complete, valid head */
	HTTP_REQ_ERROR = -1, /* refused: error_code and why say how */
};

enum http_method { HTTP_OTHER = 0, HTTP_GET, HTTP_HEAD };

struct http_req {
	/* results, valid after HTTP_REQ_DONE (strings NUL-terminated, in buf) */
	enum http_method method;
	const char *path;  /* "/metrics": the target up to '?' */
	const char *query; /* after '?', or "" */
	const char *auth;  /* the Authorization field's value, or NULL */
	int minor;         /* HTTP/1.minor */
	int keep_alive;    /* 1.1 without "Connection: close" */
	/* on HTTP_REQ_ERROR: the status to answer (400, 405, 414, 431, 501,
	 * 505) and a short reason (ASCII, no CR/LF) */
	int error_code;
	const char *why;
	/* private */
	size_t len, scan;
	char buf[HTTP_REQ_HEAD_MAX + 1];
};

void http_req_init(struct http_req *q);
/* Feeds n bytes. *used tells how many were taken: on HTTP_REQ_DONE the
 * bytes after the head (a pipelined request) are not taken. */
enum http_req_status http_req_feed(struct http_req *q, const uint8_t *p, size_t n, size_t *used);

#endif
