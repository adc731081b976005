/*
 * status — the read-only status server of `mailferry run` and `migrate`
 * (--status ADDR:PORT): HTTP/1.1 on the run's own io_uring loop, serving
 * `/` (one self-contained HTML page), `/api/status` (JSON), `/api/events`
 * (the same JSON once a second as server-sent events, which the page
 * follows, polling /api/status where it cannot) and `/metrics`
 * (Prometheus text format 0.0.4).
 *
 * The server keeps no copy of the run's data: on each request it asks the
 * command's view (struct status_view) to fill a snapshot and to walk its
 * accounts, and formats the answer then, into one buffer sent by the loop.
 * Between requests it costs one timer a second (the throughput history,
 * a few numbers). Nothing served can change the run; no password, token
 * or message content is ever in a snapshot.
 *
 * Limits: STATUS_CLIENTS_MAX connections (more are answered 503 and
 * closed), an 8 KiB request head (431), STATUS_REQ_TIMEOUT_MS to send the
 * request and STATUS_SEND_TIMEOUT_MS to take the answer (then closed),
 * GET and HEAD only, one request per connection (Connection: close), five
 * fixed paths: anything else is 404 and never reaches a file. An event
 * stream counts as a connection for as long as it lasts; one that falls
 * STATUS_EVENTS_MISSED events behind is closed. With a
 * token file every request needs "Authorization: Bearer TOKEN" (401).
 *
 * Not for: parsing requests (protocols/http_req), what the numbers are
 * (run_status.c, status_migrate in status_page.c), formats
 * (status_fmt.c).
 */
#ifndef MF_STATUS_H
#define MF_STATUS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/base/err.h"
#include "engine/runtime/loop.h"

#define STATUS_CLIENTS_MAX 64
#define STATUS_REQ_TIMEOUT_MS 10000u
#define STATUS_SEND_TIMEOUT_MS 30000u
#define STATUS_HISTORY 600
/* An /api/events stream that missed this many events in a row (it had not
 * taken the one before) is closed. */
#define STATUS_EVENTS_MISSED 5

struct hostlimit;
struct job_stats;

/* Message counts: copied, skipped, failed, and bytes copied. */
struct status_counts {
	uint64_t copied, skipped, failed, bytes;
};

/* Exit classes of finished accounts (run_report.h: 0 ok .. 5 quota). */
#define STATUS_CLASSES 6

struct status_snap {
	const char *mode;  /* "run" or "migrate" */
	const char *title; /* accounts file or account (shown escaped) */
	int finished;      /* the run is over (--status-linger) */
	double elapsed_s;
	unsigned members; /* accounts this run takes, 0 if unknown */
	unsigned queued, running, done, failed;
	struct status_counts total;               /* finished and running accounts */
	struct status_counts cls[STATUS_CLASSES]; /* finished, by exit class */
	unsigned cls_accounts[STATUS_CLASSES];
	uint64_t retries;              /* reconnects of worker pairs */
	uint64_t msgs_known;           /* messages the running accounts' mailboxes hold */
	double eta_s;                  /* < 0: unknown */
	const struct hostlimit *hl;    /* per-host numbers, or NULL */
	const struct job_stats *stats; /* commit latencies, or NULL */
};

enum status_state { STATUS_QUEUED, STATUS_RUNNING, STATUS_DONE, STATUS_FAILED };

/* One account as the table shows it. */
struct status_acct {
	unsigned line;
	enum status_state state;
	int exit; /* finished: its exit class */
	struct status_counts n;
	uint64_t msgs_total; /* running: what its mailboxes hold (0 unknown) */
	double seconds;
	const char *name;  /* "user@host -> user@host", redacted */
	const char *error; /* first error, or "" */
	/* --status-show-subjects, running: the message being (or last)
	 * copied, display text; NULL: not served at all */
	const char *subject, *from;
};

typedef void (*status_acct_fn)(void *arg, const struct status_acct *a);

/* What a command offers the server. */
struct status_view {
	void *ud;
	void (*snap)(void *ud, struct status_snap *s);
	/* Calls fn for every account known (finished, running); the server
	 * calls it right after snap, for the same answer, so it may show the
	 * running accounts as snap took them. */
	void (*accounts)(void *ud, status_acct_fn fn, void *arg);
};

struct status_opts {
	const char *listen;     /* "PORT", "ADDR:PORT" or "[V6]:PORT" */
	const char *token_file; /* NULL: no token (loopback only) */
	unsigned linger_s;      /* keep serving this long after the run */
};

struct status;

/* Parses o->listen and o->token_file, binds and starts serving on l: 0,
 * or -1 with a one-line reason in err (a non-loopback address without a
 * token file is refused). */
int status_start(struct status **out, struct loop *l, const struct status_opts *o,
                 const struct status_view *v, struct mf_error *err);
/* The run is over: the page says so; the server closes after the linger
 * time (or now), so that the loop can run out. */
void status_finish(struct status *s);
/* Frees it once the loop has run out. NULL is fine. */
void status_free(struct status *s);
uint16_t status_port(const struct status *s);

/* ---- formats (status_fmt.c) ------------------------------------------------ */

/* A growing output buffer; oom set once an allocation failed. */
struct sbuf {
	char *p;
	size_t n, cap;
	int oom;
};
void sbuf_add(struct sbuf *b, const void *p, size_t n);
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string (quotes included; <, >, & and controls escaped, so it
 * is safe inside an HTML <script>; bytes that are not UTF-8 become U+FFFD). */
void sbuf_json_str(struct sbuf *b, const char *s);
void sbuf_free(struct sbuf *b);

/* One point of the throughput history. */
struct status_point {
	double t; /* seconds since the start */
	uint64_t bytes, msgs;
};

void status_fmt_metrics(struct sbuf *b, const struct status_snap *s, const struct status_view *v);
/* history: n points, oldest first; rss: bytes now and peak (0: unknown) */
void status_fmt_json(struct sbuf *b, const struct status_snap *s, const struct status_view *v,
                     const struct status_point *hist, size_t n);
/* Current and peak resident set of this process (bytes; 0 if unknown). */
void status_rss(uint64_t *now, uint64_t *peak);

/* ---- the page (status_page.c) ---------------------------------------------- */

/* The page, NUL-terminated. */
const char *status_page(size_t *len);
/* The page with data (a JSON object as /api/status gives) built in: static,
 * no polling (report show --html). 0, or -errno. */
int status_page_write(FILE *f, const char *json, size_t len);

#endif
