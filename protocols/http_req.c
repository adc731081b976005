/*
 * http_req — the head of one HTTP/1.1 request, fed in pieces (see
 * http_req.h). The head is gathered first (bounded), then checked in one
 * pass: the request line, then each field line. Not for: answering.
 */
#include "protocols/http_req.h"

#include <string.h>
#include <strings.h>

void http_req_init(struct http_req *q)
{
	q->method = HTTP_OTHER;
	q->path = q->query = q->auth = q->why = NULL;
	q->minor = q->keep_alive = q->error_code = 0;
	q->len = q->scan = 0;
}

static enum http_req_status fail(struct http_req *q, int code, const char *why)
{
	q->error_code = code;
	q->why = why;
	return HTTP_REQ_ERROR;
}

/* RFC 9110 §5.6.2 token characters */
static int tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Cuts the line at s (NUL-terminated, without its CR LF or LF): returns
 * where the next line starts, or NULL if there is no line end. */
static char *cut_line(char *s)
{
	char *e = strchr(s, '\n');

	if (!e)
		return NULL;
	*e = '\0';
	if (e > s && e[-1] == '\r')
		e[-1] = '\0';
	return e + 1;
}

static enum http_req_status request_line(struct http_req *q, char *s)
{
	char *sp1 = strchr(s, ' '), *sp2, *t, *qm;

	if (!sp1 || sp1 == s)
		return fail(q, 400, "bad request line");
	for (t = s; t < sp1; t++)
		if (!tchar((unsigned char)*t))
			return fail(q, 400, "bad method");
	*sp1 = '\0';
	t = sp1 + 1;
	if (!(sp2 = strchr(t, ' ')))
		return fail(q, 400, "bad request line");
	*sp2 = '\0';
	if ((size_t)(sp2 - t) > HTTP_REQ_TARGET_MAX)
		return fail(q, 414, "target too long");
	if (t[0] != '/')
		return fail(q, 400, "target is not a path");
	for (char *c = t; *c; c++)
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
			return fail(q, 400, "bad character in target");
	if (strncmp(sp2 + 1, "HTTP/", 5) || !(sp2[6] >= '0' && sp2[6] <= '9') || sp2[7] != '.' ||
	    !(sp2[8] >= '0' && sp2[8] <= '9') || sp2[9])
		return fail(q, 400, "bad version");
	if (sp2[6] != '1' || sp2[8] > '1')
		return fail(q, 505, "HTTP version not supported");
	q->minor = sp2[8] - '0';
	q->keep_alive = q->minor == 1;
	if (!strcmp(s, "GET"))
		q->method = HTTP_GET;
	else if (!strcmp(s, "HEAD"))
		q->method = HTTP_HEAD;
	else
		return fail(q, 405, "method not allowed");
	q->path = t;
	q->query = "";
	if ((qm = strchr(t, '?'))) {
		*qm = '\0';
		q->query = qm + 1;
	}
	return HTTP_REQ_DONE;
}

/* 1: "close" among the comma-separated Connection options (it wins);
 * -1: "keep-alive"; 0: neither */
static int has_close(const char *v)
{
	int ka = 0;

	while (*v) {
		size_t n;

		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		n = strcspn(v, " \t,");
		if (n == 5 && !strncasecmp(v, "close", 5))
			return 1;
		if (n == 10 && !strncasecmp(v, "keep-alive", 10))
			ka = -1;
		v += n;
	}
	return ka;
}

static enum http_req_status field_line(struct http_req *q, char *s, int *host)
{
	char *colon = strchr(s, ':'), *v, *e;

	if (s[0] == ' ' || s[0] == '\t')
		return fail(q, 400, "obsolete line folding");
	if (!colon || colon == s)
		return fail(q, 400, "bad header field");
	for (char *c = s; c < colon; c++)
		if (!tchar((unsigned char)*c))
			return fail(q, 400, "bad header field name");
	*colon = '\0';
	v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	e = v + strlen(v);
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	for (char *c = v; *c; c++)
		if (((unsigned char)*c < 0x20 && *c != '\t') || (unsigned char)*c == 0x7f)
			return fail(q, 400, "bad character in a header field");
	if (!strcasecmp(s, "authorization")) {
		if (q->auth)
			return fail(q, 400, "Authorization twice");
		q->auth = v;
	} else if (!strcasecmp(s, "host")) {
		if ((*host)++)
			return fail(q, 400, "Host twice");
	} else if (!strcasecmp(s, "connection")) {
		int c = has_close(v);

		if (c > 0)
			q->keep_alive = 0;
		else if (c < 0 && q->minor == 0)
			q->keep_alive = 1;
	} else if (!strcasecmp(s, "transfer-encoding")) {
		return fail(q, 400, "a request body is not accepted");
	} else if (!strcasecmp(s, "content-length")) {
		if (strcmp(v, "0"))
			return fail(q, 400, "a request body is not accepted");
	}
	return HTTP_REQ_DONE;
}

/* The whole head is in buf[0..len), NUL-terminated. */
static enum http_req_status parse_head(struct http_req *q)
{
	char *s = q->buf, *e;
	enum http_req_status st;
	int host = 0;

	if (memchr(q->buf, '\0', q->len))
		return fail(q, 400, "NUL in the request head");
	if (!(e = cut_line(s)))
		return fail(q, 400, "bad request line");
	if ((st = request_line(q, s)) != HTTP_REQ_DONE)
		return st;
	for (s = e; *s && *s != '\r' && *s != '\n'; s = e) {
		if (!(e = cut_line(s)))
			return fail(q, 400, "bad header field");
		if ((st = field_line(q, s, &host)) != HTTP_REQ_DONE)
			return st;
	}
	if (q->minor == 1 && host != 1)
		return fail(q, 400, "no Host");
	return HTTP_REQ_DONE;
}

enum http_req_status http_req_feed(struct http_req *q, const uint8_t *p, size_t n, size_t *used)
{
	size_t i = 0;

	*used = 0;
	if (q->error_code)
		return HTTP_REQ_ERROR;
	/* RFC 9112 §2.2: empty lines before the request line are ignored */
	while (!q->len && i < n && (p[i] == '\r' || p[i] == '\n'))
		i++;
	for (; i < n; i++) {
		if (q->len == HTTP_REQ_HEAD_MAX) {
			*used = i;
			return fail(q, 431, "request head too large");
		}
		q->buf[q->len++] = (char)p[i];
		if (p[i] != '\n')
			continue;
		/* a blank line: "\n\n" or "\n\r\n" ends the head */
		if ((q->len >= 2 && q->buf[q->len - 2] == '\n') ||
		    (q->len >= 3 && q->buf[q->len - 2] == '\r' && q->buf[q->len - 3] == '\n')) {
			*used = i + 1;
			q->buf[q->len] = '\0';
			return parse_head(q);
		}
	}
	*used = n;
	return HTTP_REQ_MORE;
}
