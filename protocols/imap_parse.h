/*
 * imap_parse — incremental IMAP response parser (RFC 3501 §7, RFC 9051).
 *
 * Fed whatever bytes arrived, in any split; keeps its position between calls
 * and never assumes a line or literal arrives whole. It performs no I/O.
 * Each response is built as a small token tree in the parser's arena and
 * handed to cb->response once its final CRLF is seen; the arena is reset
 * before the next response. Literals are either inlined into the tree (small
 * strings such as mailbox names) or streamed to cb->lit_data in chunks, as
 * cb->lit_begin decides, so a 100 MB message body never sits in one buffer.
 *
 * Not for: deciding what a response means (see imap_client).
 */
#ifndef MF_IMAP_PARSE_H
#define MF_IMAP_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum imap_node_type {
	IMAP_NODE_ATOM,		/* atom, number, flag (\Seen), BODY[...]<n> */
	IMAP_NODE_STRING,	/* quoted string (unescaped) or inlined literal */
	IMAP_NODE_NIL,
	IMAP_NODE_LIST,		/* ( ... ); children in child/next */
	IMAP_NODE_STREAMED,	/* literal streamed to lit_data; lit_size set */
};

struct imap_node {
	enum imap_node_type type;
	const char *s;		/* ATOM/STRING bytes, NUL-terminated for
				 * convenience but may contain NULs: use len */
	size_t len;
	uint64_t lit_size;	/* STREAMED (and inlined literal) size */
	int literal8;		/* came as ~{n} (RFC 3516) */
	struct imap_node *child;	/* LIST: first element */
	struct imap_node *next;		/* next sibling */
};

enum imap_resp_kind {
	IMAP_RESP_UNTAGGED,	/* "* ..." */
	IMAP_RESP_TAGGED,	/* "tag ..." */
	IMAP_RESP_CONT,		/* "+ ..." */
};

enum imap_status {
	IMAP_ST_NONE,		/* not a status response (e.g. * 3 EXISTS, * LIST) */
	IMAP_ST_OK,
	IMAP_ST_NO,
	IMAP_ST_BAD,
	IMAP_ST_BYE,
	IMAP_ST_PREAUTH,
};

struct imap_resp {
	enum imap_resp_kind kind;
	const char *tag;	/* TAGGED only */
	size_t tag_len;
	enum imap_status status;
	/* Status responses (tagged, or untagged OK/NO/BAD/BYE/PREAUTH):
	 * code = the bracketed response code's tokens, first = its name atom
	 * ("APPENDUID", "CAPABILITY", ...), NULL if none; text = the human
	 * text after it (raw, to end of line, without CRLF). For CONT, text is
	 * everything after "+ ". */
	struct imap_node *code;
	const char *text;
	size_t text_len;
	/* Other untagged data: every token after "* ", e.g. for
	 * "* 12 FETCH (UID 7 FLAGS (\Seen))": ATOM "12", ATOM "FETCH", LIST. */
	struct imap_node *first;
};

/* What lit_begin answers. */
enum imap_lit_mode {
	IMAP_LIT_INLINE = 0,	/* store it in the tree as a STRING */
	IMAP_LIT_STREAM = 1,	/* deliver it through lit_data/lit_end */
};

struct imap_parser_cb {
	void *ctx;
	/* A complete response. Return 0 to go on, IMAP_PARSE_PAUSE to make
	 * feed() return right after it, or < 0 to abort (feed returns it). */
	int (*response)(void *ctx, const struct imap_resp *r);
	/* A literal of `size` bytes starts. `r` is the response parsed so far
	 * (its tree valid: for a FETCH the items before the literal are there),
	 * `key` the token just before the literal (e.g. ATOM "BODY[]"), or
	 * NULL. Return an enum imap_lit_mode or < 0 to abort. Literals larger
	 * than the parser's inline limit are streamed whatever is returned. */
	int (*lit_begin)(void *ctx, const struct imap_resp *r, const struct imap_node *key,
			 uint64_t size);
	/* Streamed literal bytes. Return how many were accepted (0..n); fewer
	 * than n makes feed() stop and return what it consumed so far (flow
	 * control: feed the rest later). < 0 aborts. */
	ssize_t (*lit_data)(void *ctx, const uint8_t *p, size_t n);
	/* The streamed literal is complete. 0 or < 0 to abort. */
	int (*lit_end)(void *ctx);
};

#define IMAP_PARSE_PAUSE 1

/* Parse errors: feed() returns IMAP_PARSE_EBAD and err/err_pos are set. */
#define IMAP_PARSE_EBAD (-74) /* -EBADMSG */

struct imap_arena;

struct imap_parser {
	struct imap_parser_cb cb;
	size_t inline_max;	/* literals above this are always streamed */
	size_t arena_max;	/* a response needing more arena is an error */
	size_t line_max;        /* longest line between literals (1 MiB after
	                         * init; a SEARCH/ESEARCH/VANISHED/SORT line
	                         * may use arena_max) */
	const char *err;	/* static reason on IMAP_PARSE_EBAD */
	uint64_t err_pos;	/* absolute input offset of the error */
	uint64_t pos;		/* absolute input offset consumed so far */
	/* private */
	struct imap_parse_priv *priv;
};

/* inline_max: e.g. 64 KiB; arena_max: e.g. 64 MiB. 0 picks those defaults. */
int imap_parser_init(struct imap_parser *p, const struct imap_parser_cb *cb, size_t inline_max,
		     size_t arena_max);
/* May be called from inside one of the parser's own callbacks (an owner
 * closing its connection): feed() then returns at once and the memory is
 * released when it does. */
void imap_parser_free(struct imap_parser *p);
/* Charges what the parser buffers beyond its first arena chunk (partial
 * lines, arena growth) to *used, shared by the parsers of a process; growth
 * past max fails the response ("memory budget ... exhausted"). Call once,
 * right after init. */
void imap_parser_budget(struct imap_parser *p, size_t *used, size_t max);
/* Forget any partial response (e.g. after reconnecting). */
void imap_parser_reset(struct imap_parser *p);

/* Consumes up to n bytes. Returns bytes consumed (may be < n after a
 * PAUSE or a short lit_data), IMAP_PARSE_EBAD, or a callback's < 0 code. */
ssize_t imap_parse_feed(struct imap_parser *p, const uint8_t *buf, size_t n);

/* Bytes still expected for the streamed literal in progress, 0 if none. */
uint64_t imap_parser_literal_left(const struct imap_parser *p);

/* Helpers for consumers of the tree. */
int imap_node_is(const struct imap_node *n, const char *atom); /* case-insensitive atom match */
int imap_node_u32(const struct imap_node *n, uint32_t *out);  /* ATOM nz-number/number */
int imap_node_u64(const struct imap_node *n, uint64_t *out);
/* Number of LIST children. */
size_t imap_node_count(const struct imap_node *list);

#endif
