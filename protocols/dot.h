/*
 * dot — the two streaming filters of the dot-terminated multi-line form
 * shared by POP3 (RFC 1939 §3) and SMTP/LMTP DATA (RFC 5321 §4.5.2).
 *
 * Both work on spans: the caller feeds whatever bytes arrived, the filter
 * hands out pieces of that same input (plus, where needed, a static "." or
 * "\r") through an emit callback, so a message is never copied whole or
 * held in one buffer. Line ends are not rewritten: a bare LF counts as the
 * end of a line for stuffing, and the message's bytes go out as they came.
 *
 * Not for: BDAT (CHUNKING sends the exact bytes, no stuffing) and not for
 * parsing the status line that precedes a POP3 multi-line response.
 */
#ifndef MF_DOT_H
#define MF_DOT_H

#include <stdbool.h>
#include <stddef.h>

/* Receives one output piece; returns 0, or a negative code that stops the
 * filter and is returned by it. */
typedef int (*dot_emit_fn)(void *ctx, const char *p, size_t n);

/* Stuffing, for SMTP DATA: every line that starts with '.' gets one more. */
struct dot_stuff {
	bool mid;		/* not at the start of a line */
	unsigned char last[2];	/* the last two bytes fed (for dot_stuff_end) */
	unsigned char nlast;	/* how many of last[] are valid */
};

void dot_stuff_init(struct dot_stuff *d);
/* Emits in[0..n) stuffed. Returns 0 or the emit callback's error. */
int dot_stuff_feed(struct dot_stuff *d, const char *in, size_t n, dot_emit_fn emit, void *ctx);
/* Emits the end of data: "\r\n.\r\n", or ".\r\n" when the message already
 * ended with CRLF (RFC 5321 §4.1.1.4: the CRLF before the dot belongs to
 * the last line; a message without one gains it, as every SMTP client's
 * message must). Returns 0 or the callback's error. */
int dot_stuff_end(struct dot_stuff *d, dot_emit_fn emit, void *ctx);

/* Unstuffing, for a POP3 RETR/TOP body: a leading '.' is removed from each
 * line, and the line ".\r\n" ends the response. */
enum dot_unstuff_state { DOT_U_LINE, DOT_U_MID, DOT_U_DOT, DOT_U_DOTCR, DOT_U_DONE };
struct dot_unstuff {
	enum dot_unstuff_state st;
};

void dot_unstuff_init(struct dot_unstuff *d);
/* Feeds in[0..n). Returns how many bytes it consumed (all of them unless
 * the terminating ".\r\n" came first: the bytes after it belong to the
 * next response), or the emit callback's negative error. After the
 * terminator, dot_unstuff_done() is true and nothing more is consumed. */
long dot_unstuff_feed(struct dot_unstuff *d, const char *in, size_t n, dot_emit_fn emit, void *ctx);
bool dot_unstuff_done(const struct dot_unstuff *d);

#endif
