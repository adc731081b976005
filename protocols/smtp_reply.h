/*
 * smtp_reply — incremental parser for SMTP and LMTP replies (RFC 5321 §4.2,
 * RFC 2033 §4.2), with enhanced status codes (RFC 3463, RFC 2034).
 *
 * Fed whatever bytes arrived, in any split; keeps its position between
 * calls. It performs no I/O and allocates nothing: a line is collected in
 * a fixed buffer (SMTP_REPLY_LINE_MAX, far above RFC 5321 §4.5.3.1.5's 512)
 * and the reply's text in another (SMTP_REPLY_TEXT_MAX, longer text is
 * truncated and flagged), so a hostile server cannot make it grow. Each
 * line is handed out as it completes (EHLO's keywords are read that way);
 * the last line completes the reply.
 *
 * Lenient where servers are known to differ (a bare LF ends a line, a code
 * alone without text is a line), strict where it matters: three digits
 * 2-5 / 0-5 / 0-9, the same code on every line of one reply, a line that
 * is too long or a reply with too many lines is an error, never truncated
 * silently into a different reply.
 *
 * Not for: deciding what a reply means (see smtp_client).
 */
#ifndef MF_SMTP_REPLY_H
#define MF_SMTP_REPLY_H

#include <stddef.h>
#include <stdint.h>

/* Longest line taken, CRLF excluded (RFC 5321 §4.5.3.1.5 says 512 with it;
 * servers exceed it in EHLO and in texts, rarely by much). */
#define SMTP_REPLY_LINE_MAX 2048
/* Lines in one reply (an EHLO answer has about 15). */
#define SMTP_REPLY_LINES_MAX 256
/* Text kept for a reply: every line's text after the enhanced code,
 * joined by a space, truncated beyond this. */
#define SMTP_REPLY_TEXT_MAX 480

enum smtp_reply_ev {
	SMTP_REPLY_MORE = 0, /* all input consumed, reply not complete yet */
	SMTP_REPLY_LINE = 1, /* one line of a multi-line reply (not the last) */
	SMTP_REPLY_DONE = 2, /* the last line: the reply is complete */
	SMTP_REPLY_EBAD = -1 /* malformed: err and err_pos say why and where */
};

struct smtp_reply {
	int code;                  /* 200..559 */
	unsigned ecls, esub, edet; /* enhanced code x.y.z, ecls == 0 if none */
	unsigned lines;
	int truncated; /* text was cut at SMTP_REPLY_TEXT_MAX */
	size_t text_len;
	char text[SMTP_REPLY_TEXT_MAX + 1]; /* NUL-terminated; may hold any byte */
};

struct smtp_reply_parser {
	/* After SMTP_REPLY_LINE or _DONE: the line's text after "NNN-"/"NNN "
	 * (CR/LF stripped), NUL-terminated, valid until the next feed. */
	const char *line;
	size_t line_len;
	/* After SMTP_REPLY_DONE: the whole reply, valid until the next feed. */
	struct smtp_reply reply;
	const char *err;  /* after SMTP_REPLY_EBAD */
	uint64_t err_pos; /* byte offset in the stream */
	/* private */
	uint64_t pos;
	size_t len;
	int done, overlong, sep_last;
	char buf[SMTP_REPLY_LINE_MAX + 2];
};

void smtp_reply_init(struct smtp_reply_parser *p);
/* Consumes input up to the end of the next line and returns what it was;
 * *used says how many bytes were taken (the rest is for the next call).
 * After SMTP_REPLY_EBAD the parser stays failed until smtp_reply_init. */
int smtp_reply_feed(struct smtp_reply_parser *p, const uint8_t *in, size_t n, size_t *used);

/* "4xx" / "5xx" class of a complete reply: 2, 3, 4 or 5. */
static inline int smtp_reply_class(const struct smtp_reply *r)
{
	return r->code / 100;
}

/* Writes "550 5.1.1 text" (enhanced code only if present) into out, raw
 * bytes as the server sent them: mf_err_set/mf_log escape them on output. */
void smtp_reply_format(const struct smtp_reply *r, char *out, size_t cap);

#endif
