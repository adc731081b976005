/*
 * status — the status server on the run's loop (see status.h): accepting,
 * one request per connection, the limits, the bearer token, the routes,
 * and the throughput history a timer samples once a second.
 *
 * /api/events is the one long answer: a server-sent event stream (text/
 * event-stream, WHATWG HTML §9.2) carrying /api/status's JSON once a
 * second, from the same timer. Each stream holds one event at most: one
 * still being sent when the next is due is not joined by it (the client
 * misses that one), and a client that missed STATUS_EVENTS_MISSED in a
 * row is dropped, so a slow reader costs one buffer and never the loop.
 *
 * Not for: request parsing (protocols/http_req), formats (status_fmt.c),
 * the page (status_page.c).
 */
#include "engine/cli/status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/cli/cli_int.h"
#include "engine/runtime/listen.h"
#include "protocols/http_req.h"

#define TOKEN_MAX 512
/* A stream's socket buffer: what a reader that stopped can hold up. */
#define EVENTS_SNDBUF (256 * 1024)

struct client {
	struct status *s;
	struct sconn c;
	struct http_req q;
	uint8_t in[2048];
	struct sbuf out;
	size_t sent;
	uint64_t deadline; /* loop ms: the request, then the answer, must be done */
	int events;        /* an /api/events stream: kept open, fed by the timer */
	unsigned missed;   /* events it missed in a row (the previous still going) */
	struct client *prev, *next;
};

struct status {
	struct loop *l;
	struct listener ls;
	struct status_view v;
	char token[TOKEN_MAX]; /* "" = none */
	unsigned nclients, linger_s;
	struct client *clients;
	int finished, stopping;
	uint64_t t0, stop_at;
	double fin_elapsed; /* the run's length, frozen when it finished */
	struct loop_timer tick;
	struct status_point hist[STATUS_HISTORY];
	size_t nhist;
	unsigned every, skip; /* the history keeps one sample in `every` seconds */
};

static void client_free(struct sconn *c)
{
	struct client *cl = c->ud;
	struct status *s = cl->s;

	if (cl->prev)
		cl->prev->next = cl->next;
	else
		s->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	s->nclients--;
	sbuf_free(&cl->out);
	free(cl);
}

static void client_close(struct client *cl)
{
	sconn_close(&cl->c);
}

static void on_sent(struct sconn *c, int res)
{
	struct client *cl = c->ud;

	if (res <= 0) {
		client_close(cl);
		return;
	}
	cl->sent += (size_t)res;
	if (cl->sent < cl->out.n) {
		sconn_send(&cl->c, cl->out.p + cl->sent, cl->out.n - cl->sent);
	} else if (cl->events) {
		cl->out.n = cl->sent = 0; /* the event is out: ready for the next */
		cl->missed = 0;
	} else {
		client_close(cl); /* one request per connection */
	}
}

static const char *reason(int code)
{
	switch (code) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 414:
		return "URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Error";
	}
}

/* Head and body into cl->out, then sent; body NULL for an error. */
static void respond(struct client *cl, int code, const char *type, struct sbuf *body, int head_only)
{
	struct sbuf h = {0};
	size_t blen = body ? body->n : 0;
	char msg[96];

	if (!body) {
		snprintf(msg, sizeof(msg), "%d %s\n", code, reason(code));
		blen = strlen(msg);
		type = "text/plain; charset=utf-8";
	}
	sbuf_printf(&h,
	            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	            "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
	            "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
	            "style-src 'unsafe-inline'; connect-src 'self'; img-src data:\r\n"
	            "Connection: close\r\n%s\r\n",
	            code, reason(code), type, blen,
	            code == 401 ? "WWW-Authenticate: Bearer realm=\"mailferry\"\r\n" : "");
	if (!head_only)
		sbuf_add(&h, body ? body->p : msg, blen);
	if (h.oom) {
		sbuf_free(&h);
		client_close(cl);
		return;
	}
	cl->out = h;
	cl->sent = 0;
	cl->deadline = loop_now_ms(cl->s->l) + STATUS_SEND_TIMEOUT_MS;
	sconn_send(&cl->c, cl->out.p, cl->out.n);
}

static int authorized(const struct status *s, const struct http_req *q)
{
	size_t n = strlen(s->token);

	if (!n)
		return 1;
	if (!q->auth || strncasecmp(q->auth, "Bearer ", 7))
		return 0;
	return strlen(q->auth + 7) == n && !CRYPTO_memcmp(q->auth + 7, s->token, n);
}

/* The run as of now (the final numbers once it is over). */
static void status_snap_take(struct status *s, struct status_snap *snap)
{
	memset(snap, 0, sizeof(*snap));
	snap->eta_s = -1;
	s->v.snap(s->v.ud, snap);
	if (s->finished) {
		snap->finished = 1;
		snap->elapsed_s = s->fin_elapsed;
	}
}

/* /api/status's JSON, as of now. */
static void status_json(struct status *s, struct sbuf *b)
{
	struct status_snap snap;

	status_snap_take(s, &snap);
	status_fmt_json(b, &snap, &s->v, s->hist, s->nhist);
}

/* One event into a stream that has none going; JSON is one line (its
 * strings escape every control), ending in "\n". */
static void event_send(struct client *cl, const struct sbuf *json)
{
	sbuf_add(&cl->out, "data: ", 6);
	sbuf_add(&cl->out, json->p, json->n);
	sbuf_add(&cl->out, "\n", 1);
	if (cl->out.oom) {
		client_close(cl);
		return;
	}
	cl->sent = 0;
	sconn_send(&cl->c, cl->out.p, cl->out.n);
}

/* Once a second: an event to every stream that took the last one. */
static void events_push(struct status *s)
{
	struct sbuf json = {0};
	int built = 0;

	for (struct client *cl = s->clients, *next; cl; cl = next) {
		next = cl->next;
		if (!cl->events || cl->c.closed)
			continue;
		if (cl->out.n) {
			/* still sending the last one: this one is missed */
			if (++cl->missed >= STATUS_EVENTS_MISSED)
				client_close(cl);
			continue;
		}
		if (!built++)
			status_json(s, &json);
		if (json.oom) {
			client_close(cl);
			continue;
		}
		event_send(cl, &json);
	}
	sbuf_free(&json);
}

/* GET /api/events: the head, the client's reconnect delay, the first event. */
static void events_start(struct client *cl)
{
	static const char head[] =
	    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
	    "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
	    "Connection: close\r\n\r\nretry: 2000\n\n";
	struct sbuf json = {0};
	int sz = EVENTS_SNDBUF;

	/* bounds what a reader that stopped holds in the kernel */
	if (setsockopt(cl->c.fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)) < 0)
		(void)0; /* the default buffer then */
	cl->events = 1;
	cl->deadline = UINT64_MAX; /* streams end by missed events, not time */
	sbuf_add(&cl->out, head, sizeof(head) - 1);
	status_json(cl->s, &json);
	if (json.oom) {
		sbuf_free(&json);
		client_close(cl);
		return;
	}
	event_send(cl, &json);
	sbuf_free(&json);
}

static void route(struct client *cl)
{
	struct status *s = cl->s;
	const struct http_req *q = &cl->q;
	struct status_snap snap;
	struct sbuf b = {0};
	int head = q->method == HTTP_HEAD;

	if (!authorized(s, q)) {
		respond(cl, 401, NULL, NULL, head);
		return;
	}
	if (!strcmp(q->path, "/api/events") && !head) {
		events_start(cl);
		return;
	}
	if (!strcmp(q->path, "/")) {
		size_t n;
		const char *page = status_page(&n);

		sbuf_add(&b, page, n);
		if (!b.oom)
			respond(cl, 200, "text/html; charset=utf-8", &b, head);
	} else if (!strcmp(q->path, "/metrics")) {
		status_snap_take(s, &snap);
		status_fmt_metrics(&b, &snap, &s->v);
		if (!b.oom)
			respond(cl, 200, "text/plain; version=0.0.4; charset=utf-8", &b, head);
	} else if (!strcmp(q->path, "/api/status")) {
		status_json(s, &b);
		if (!b.oom)
			respond(cl, 200, "application/json", &b, head);
	} else if (!strcmp(q->path, "/api/events")) {
		respond(cl, 200, "text/event-stream; charset=utf-8", &b, head); /* HEAD */
	} else {
		respond(cl, 404, NULL, NULL, head);
		return;
	}
	if (b.oom)
		respond(cl, 503, NULL, NULL, head);
	sbuf_free(&b);
}

static void on_recv(struct sconn *c, int res)
{
	struct client *cl = c->ud;
	enum http_req_status st;
	size_t used;

	if (res <= 0) {
		client_close(cl);
		return;
	}
	st = http_req_feed(&cl->q, cl->in, (size_t)res, &used);
	if (st == HTTP_REQ_MORE) {
		sconn_recv(&cl->c, cl->in, sizeof(cl->in));
		return;
	}
	/* what follows the head (a pipelined request) is not read: one
	 * request per connection, and the answer says Connection: close */
	if (st == HTTP_REQ_ERROR)
		respond(cl, cl->q.error_code, NULL, NULL, 0);
	else
		route(cl);
}

static void on_accept(struct listener *ls, int fd)
{
	struct status *s = ls->ud;
	struct client *cl;

	if (fd < 0)
		return; /* EMFILE and the like: the next one may work */
	if (s->nclients >= STATUS_CLIENTS_MAX || s->stopping || !(cl = calloc(1, sizeof(*cl)))) {
		static const char busy[] =
		    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
		    "Connection: close\r\nRetry-After: 1\r\n\r\n";

		/* never waits: a full socket buffer just loses the courtesy */
		if (send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			(void)0;
		close(fd);
		return;
	}
	cl->s = s;
	sconn_init(&cl->c, s->l, fd);
	cl->c.ud = cl;
	cl->c.on_recv = on_recv;
	cl->c.on_sent = on_sent;
	cl->c.on_closed = client_free;
	http_req_init(&cl->q);
	cl->deadline = loop_now_ms(s->l) + STATUS_REQ_TIMEOUT_MS;
	cl->next = s->clients;
	if (s->clients)
		s->clients->prev = cl;
	s->clients = cl;
	s->nclients++;
	sconn_recv(&cl->c, cl->in, sizeof(cl->in));
}

/* Once a second: the history, slow clients, the end of the linger time. */
static void sample(struct status *s, int force)
{
	struct status_snap snap;

	if (!force && s->skip && --s->skip)
		return;
	s->skip = s->every;
	memset(&snap, 0, sizeof(snap));
	s->v.snap(s->v.ud, &snap);
	if (s->nhist == STATUS_HISTORY) {
		/* full: keep every other point, sample half as often */
		for (size_t i = 0; i < STATUS_HISTORY / 2; i++)
			s->hist[i] = s->hist[2 * i + 1];
		s->nhist = STATUS_HISTORY / 2;
		s->every *= 2;
		s->skip = s->every;
	}
	s->hist[s->nhist].t = snap.elapsed_s;
	s->hist[s->nhist].bytes = snap.total.bytes;
	s->hist[s->nhist].msgs = snap.total.copied;
	s->nhist++;
}

static void stop_now(struct status *s)
{
	s->stopping = 1;
	loop_timer_cancel(s->l, &s->tick);
	listen_close(&s->ls);
	for (struct client *cl = s->clients; cl; cl = cl->next)
		client_close(cl);
}

static void on_tick(struct loop *l, struct loop_timer *t)
{
	struct status *s = (struct status *)((char *)t - offsetof(struct status, tick));
	uint64_t now = loop_now_ms(l);

	if (!s->finished)
		sample(s, 0);
	for (struct client *cl = s->clients; cl; cl = cl->next)
		if (now >= cl->deadline)
			client_close(cl);
	events_push(s);
	if (s->finished && now >= s->stop_at) {
		stop_now(s);
		return;
	}
	loop_timer_start(l, &s->tick, 1000, on_tick);
}

/* "PORT", "ADDR:PORT", "[V6]:PORT" */
static int parse_listen(const char *a, char *host, size_t cap, uint16_t *port)
{
	const char *colon = strrchr(a, ':'), *p;
	char *end;
	unsigned long v;
	size_t hl;

	host[0] = '\0';
	p = colon ? colon + 1 : a;
	if (colon) {
		hl = (size_t)(colon - a);
		if (hl && a[0] == '[' && a[hl - 1] == ']') {
			a++;
			hl -= 2;
		}
		if (hl >= cap)
			return -1;
		memcpy(host, a, hl);
		host[hl] = '\0';
	}
	errno = 0;
	v = strtoul(p, &end, 10);
	if (!*p || *end || errno || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

static int is_loopback(const char *h)
{
	struct in_addr a4;

	if (!*h || !strcmp(h, "::1"))
		return 1;
	return inet_pton(AF_INET, h, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

int status_start(struct status **out, struct loop *l, const struct status_opts *o,
                 const struct status_view *v, struct mf_error *err)
{
	struct status *s;
	char host[128], why[600];
	uint16_t port;

	*out = NULL;
	if (parse_listen(o->listen, host, sizeof(host), &port) < 0) {
		mf_err_set(err, -EINVAL, "--status wants PORT or ADDR:PORT (got \"%.100s\")",
		           o->listen);
		return -1;
	}
	if (!is_loopback(host) && !o->token_file) {
		mf_err_set(
		    err, -EINVAL,
		    "--status %.100s is not a loopback address: it needs --status-token-file F",
		    o->listen);
		return -1;
	}
	if (!(s = calloc(1, sizeof(*s)))) {
		mf_err_set(err, -ENOMEM, "out of memory");
		return -1;
	}
	if (o->token_file) {
		if (cli_password_file(o->token_file, s->token, sizeof(s->token), why, sizeof(why)) <
		    0) {
			mf_err_set(err, -EINVAL, "--status-token-file: %s", why);
			free(s);
			return -1;
		}
		for (const char *c = s->token; *c; c++)
			if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) {
				mf_err_set(err, -EINVAL,
				           "--status-token-file %s: the token must be "
				           "printable ASCII without spaces",
				           o->token_file);
				OPENSSL_cleanse(s->token, sizeof(s->token));
				free(s);
				return -1;
			}
	}
	s->l = l;
	s->v = *v;
	s->linger_s = o->linger_s;
	s->every = 1;
	s->t0 = loop_now_ms(l);
	if (listen_open(&s->ls, l, host[0] ? host : NULL, port, on_accept, s, err) < 0) {
		char msg[sizeof(err->msg)];

		memcpy(msg, err->msg, sizeof(msg));
		mf_err_set(err, err->code, "--status: %.400s", msg);
		OPENSSL_cleanse(s->token, sizeof(s->token));
		free(s);
		return -1;
	}
	loop_timer_start(l, &s->tick, 1000, on_tick);
	mf_log(MF_LOG_INFO, "status: http://%s%s%s:%u/ (metrics at /metrics)%s",
	       strchr(host, ':') ? "[" : "", host[0] ? host : "127.0.0.1",
	       strchr(host, ':') ? "]" : "", listen_port(&s->ls),
	       s->token[0] ? ", bearer token required" : "");
	*out = s;
	return 0;
}

void status_finish(struct status *s)
{
	if (!s || s->finished)
		return;
	sample(s, 1);
	s->fin_elapsed = s->nhist ? s->hist[s->nhist - 1].t : 0;
	s->finished = 1;
	s->stop_at = loop_now_ms(s->l) + (uint64_t)s->linger_s * 1000u;
	if (!s->linger_s)
		stop_now(s);
}

uint16_t status_port(const struct status *s)
{
	return listen_port(&s->ls);
}

void status_free(struct status *s)
{
	if (!s)
		return;
	/* the loop has run out: every client freed itself (on_closed) */
	OPENSSL_cleanse(s->token, sizeof(s->token));
	free(s);
}
