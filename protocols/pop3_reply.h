/*
 * pop3_reply — the pure, incremental POP3 reply parser (RFC 1939 §3,
 * RFC 2449 §4, §8, RFC 5034 §4): status lines, the lines of a multi-line
 * listing (CAPA, UIDL, LIST) and a RETR/TOP body streamed through
 * dot_unstuff (protocols/dot.h), plus the value parsers for what those
 * lines carry (scan listings, unique-id listings, STAT, CAPA).
 *
 * The reader is fed whatever bytes arrived and resumes where it stopped;
 * it stops at the end of each reply so the caller can start the next one
 * with the right kind. Status and listing lines are capped at
 * POP3_LINE_MAX; a body is never held: its pieces go to cb->body as they
 * come. It performs no I/O and allocates nothing.
 *
 * Not for: sending commands, deciding what a reply means for the session
 * (see pop3_client), bounding body sizes (the client knows LIST's sizes).
 */
#ifndef MF_POP3_REPLY_H
#define MF_POP3_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocols/dot.h"

/* A status or listing line, CRLF included. RFC 2449 §4 allows 512 octets
 * for a response line; some servers' -ERR texts run longer, so twice
 * that, and nothing more is buffered. */
#define POP3_LINE_MAX 1024
/* RFC 1939 §7 (UIDL): 1 to 70 characters in the range 0x21 to 0x7E. */
#define POP3_UIDL_MAX 70

enum pop3_kind {
	POP3_KIND_SINGLE, /* a status line only (USER, PASS, STAT, DELE, ...) */
	POP3_KIND_LINES,  /* +OK then lines to "." (CAPA, UIDL, LIST) */
	POP3_KIND_BODY,   /* +OK then a message to "." (RETR, TOP) */
};

enum pop3_status_kind {
	POP3_ERR = 0,  /* -ERR */
	POP3_OK = 1,   /* +OK */
	POP3_CONT = 2, /* "+ base64": a SASL challenge (RFC 5034 §4) */
};

struct pop3_status {
	enum pop3_status_kind kind;
	const char *code; /* RFC 2449 §8 response code, without brackets */
	size_t code_len;  /* (e.g. "IN-USE", "SYS/TEMP"); 0 = none */
	const char *text; /* the rest of the line, without CRLF */
	size_t text_len;
};

struct pop3_reader_cb {
	void *ctx;
	/* The status line; the reply is multi-line iff kind != SINGLE and OK.
	 * Returns 0 or a negative code that stops the reader. */
	int (*status)(void *ctx, const struct pop3_status *st);
	/* One listing line, dot-unstuffed, without CRLF. */
	int (*line)(void *ctx, const char *s, size_t n);
	/* A piece of a body, dot-unstuffed, line ends as they came. */
	int (*body)(void *ctx, const char *p, size_t n);
};

enum pop3_reader_state { POP3_RS_STATUS, POP3_RS_LINES, POP3_RS_BODY, POP3_RS_DONE, POP3_RS_ERROR };

struct pop3_reader {
	struct pop3_reader_cb cb;
	enum pop3_kind kind;
	enum pop3_reader_state st;
	char line[POP3_LINE_MAX + 1]; /* the line so far (NUL after it) */
	size_t len;
	struct dot_unstuff un;
	uint64_t body_bytes; /* unstuffed bytes handed to cb->body */
	uint64_t pos;        /* bytes consumed since pop3_reader_init */
	const char *err;     /* static text when st == POP3_RS_ERROR */
	uint64_t err_pos;
};

/* Returned by pop3_reader_feed for input that is not POP3. */
#define POP3_EBAD (-1000)

void pop3_reader_init(struct pop3_reader *r, const struct pop3_reader_cb *cb);
/* Begins a reply of the given kind (after init, and after each reply). */
void pop3_reader_start(struct pop3_reader *r, enum pop3_kind kind);
/* Feeds p[0..n). Returns the bytes consumed: all of them, or fewer when
 * the reply ended (pop3_reader_done(); the rest belongs to the next
 * reply). POP3_EBAD with r->err on bad input (an over-long line, a
 * status that is neither +OK nor -ERR); a callback's negative code as
 * it is. Nothing is consumed after the end of a reply. */
long pop3_reader_feed(struct pop3_reader *r, const uint8_t *p, size_t n);
bool pop3_reader_done(const struct pop3_reader *r);

/* ---- values (pure; s need not be NUL-terminated) ---- */

/* "+OK ...", "-ERR ...", "+ ..." without CRLF. 0, or -1 if it is none. */
int pop3_status_parse(const char *s, size_t n, struct pop3_status *st);
/* A message number: 1..UINT32_MAX, digits only. 0 or -1. */
int pop3_parse_msgno(const char *s, size_t n, uint32_t *v);
/* "msgno size" (RFC 1939 §5 scan listing; anything after a further space
 * is ignored, as §5 permits). 0 or -1. */
int pop3_parse_scan(const char *s, size_t n, uint32_t *msgno, uint64_t *size);
/* "msgno uid" (RFC 1939 §7). 0, or -1 with a static reason in *why; the
 * UID is validated (pop3_uidl_check). */
int pop3_parse_uidl(const char *s, size_t n, uint32_t *msgno, const char **uid, size_t *uid_len,
                    const char **why);
/* 0 if u[0..n) is a valid unique-id, else -1 with a static reason. */
int pop3_uidl_check(const char *u, size_t n, const char **why);
/* STAT's "+OK count size" text. 0 or -1. */
int pop3_parse_stat(const char *s, size_t n, uint32_t *count, uint64_t *size);
/* The "N octets" a RETR +OK often starts with (RFC 1939 §5 example);
 * 0 with *size, -1 if the text does not start with a number. */
int pop3_parse_octets(const char *s, size_t n, uint64_t *size);

enum pop3_cap {
	POP3_CAP_STLS = 1u << 0,
	POP3_CAP_PIPELINING = 1u << 1,
	POP3_CAP_UIDL = 1u << 2,
	POP3_CAP_TOP = 1u << 3,
	POP3_CAP_USER = 1u << 4,
	POP3_CAP_RESP_CODES = 1u << 5,
	POP3_CAP_SASL = 1u << 6,
	POP3_CAP_SASL_PLAIN = 1u << 7,
	POP3_CAP_AUTH_RESP_CODE = 1u << 8,
};
/* The capability bits one CAPA line names (RFC 2449 §6), 0 if none. */
uint32_t pop3_capa_line(const char *s, size_t n);

#endif
