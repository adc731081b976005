/*
 * imap_parse — incremental IMAP response parser (see imap_parse.h).
 *
 * How it works: the input is cut into segments at LF. A segment is either a
 * whole response line, or the part of a response between two literals (the
 * "{n}" CRLF ends a segment; the literal's bytes follow it). No token ever
 * spans a segment boundary (RFC 3501 §9: quoted strings, atoms and literal
 * headers hold no CRLF), so each segment is tokenized in one pass once its
 * LF is seen; only the open-list stack and the response mode survive from one
 * segment to the next. A segment that arrives whole in one feed is parsed in
 * place; a split one is gathered in a line buffer first. Literals are copied
 * into the arena (inline) or handed to lit_data straight from the caller's
 * buffer (streamed), never byte by byte.
 *
 * Memory: one arena per parser. Nodes and strings of the response being
 * built live there until cb->response returns; then the arena is rewound.
 * The first chunk is never freed and a few spare chunks are kept, so a
 * steady stream of responses allocates nothing.
 *
 * Not for: meaning (imap_client), commands, or anything a client sends.
 */
#include "protocols/imap_parse.h"

#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PARSE_INLINE_DEFAULT ((size_t)64 * 1024)
#define PARSE_ARENA_DEFAULT ((size_t)64 * 1024 * 1024)
#define ARENA_CHUNK ((size_t)16 * 1024)
#define ARENA_SPARES 4			     /* standard chunks kept for reuse */
#define ARENA_BIG_KEEP ((size_t)1024 * 1024) /* largest odd-sized chunk kept */
#define LINE_KEEP ((size_t)64 * 1024)	     /* line buffer kept between responses */
/* No response line without a literal needs more (a LIST line is a few KB),
 * except a set of numbers: SEARCH without ESEARCH answers one line for a
 * whole mailbox, 7 bytes a UID. Those may use the whole arena. */
#define LINE_MAX_DEFAULT ((size_t)1024 * 1024)
#define MAX_DEPTH 256 /* nested lists; MIME nesting in real mail stays far below */
#define LITERAL_MAX (UINT64_C(1) << 63)

enum {
	ST_SEG,		/* gathering a segment (up to LF) */
	ST_LIT_INLINE,	/* copying literal bytes into the arena */
	ST_LIT_STREAM,	/* passing literal bytes to lit_data */
	ST_DEAD,	/* after an error, until imap_parser_reset */
};

enum {
	M_HEAD,		/* next segment starts a response */
	M_TOKENS,	/* untagged data: tokens into resp.first */
	M_CODE,		/* inside "[...]": tokens into resp.code */
};

/* What a segment parse step ends with. */
enum {
	SEG_DONE = 1,	/* the response is complete */
	SEG_MORE,	/* tokens follow (head parsed) */
	SEG_LIT,	/* a literal header ended the segment */
};

struct chunk {
	struct chunk *next;
	size_t cap, used;
};
#define CHUNK_HDR ((sizeof(struct chunk) + 15) & ~(size_t)15)

struct frame {
	struct imap_node **tailp;	/* where the next token is linked */
	struct imap_node *last;		/* last token linked here (literal key) */
};

struct imap_parse_priv {
	int state, mode, depth;
	int nomem;		/* last arena failure was malloc, not arena_max */
	unsigned gen;		/* bumped by reset, so feed notices a reset
				 * made from inside a callback */
	unsigned in_feed;       /* feed() calls on the stack */
	int doomed;             /* imap_parser_free ran inside a callback:
	                         * freed when the outermost feed() returns */
	size_t *bused, bmax;    /* shared budget (imap_parser_budget), or NULL */
	size_t charged;         /* what this parser holds of it */
	struct chunk *first, *cur, *spare, *big;
	size_t nspare;
	size_t used;		/* arena bytes taken by this response */
	struct imap_resp resp;
	struct frame stack[MAX_DEPTH + 1];
	uint8_t *line;		/* split segment being gathered */
	size_t line_len, line_cap;
	uint64_t seg_start;	/* absolute offset of the segment's first byte */
	uint64_t lit_left;
	uint8_t *lit_dst;
};

/* ---- memory budget shared by the parsers of a process --------------------- */

static int budget_take(struct imap_parse_priv *q, size_t n)
{
	if (!q->bused)
		return 0;
	if (n > q->bmax || *q->bused > q->bmax - n)
		return -1;
	*q->bused += n;
	q->charged += n;
	return 0;
}

static void budget_give(struct imap_parse_priv *q, size_t n)
{
	if (!q->bused)
		return;
	if (n > q->charged)
		n = q->charged;
	*q->bused -= n;
	q->charged -= n;
}

/* ---- arena ---------------------------------------------------------------- */

static struct chunk *chunk_new(size_t cap)
{
	struct chunk *c = malloc(CHUNK_HDR + cap);

	if (!c)
		return NULL;
	c->next = NULL;
	c->cap = cap;
	c->used = 0;
	return c;
}

static struct chunk *chunk_get(struct imap_parse_priv *q, size_t size)
{
	struct chunk *c;

	if (size <= ARENA_CHUNK && q->spare) {
		c = q->spare;
		q->spare = c->next;
		q->nspare--;
	} else if (size > ARENA_CHUNK && q->big && q->big->cap >= size) {
		c = q->big;
		q->big = NULL;
	} else {
		size_t cap = size > ARENA_CHUNK ? size : ARENA_CHUNK;

		if (budget_take(q, cap) < 0) {
			q->nomem = 2;
			return NULL;
		}
		if (!(c = chunk_new(cap))) {
			budget_give(q, cap);
			q->nomem = 1;
		}
		return c;
	}
	c->next = NULL;
	c->used = 0;
	return c;
}

static void *arena_alloc(struct imap_parser *p, size_t size, size_t align)
{
	struct imap_parse_priv *q = p->priv;
	struct chunk *c = q->cur;
	size_t off = (c->used + align - 1) & ~(align - 1);

	if (size > p->arena_max - q->used) {
		q->nomem = 0;
		return NULL;
	}
	if (off > c->cap || size > c->cap - off) {
		if (!(c = chunk_get(q, size)))
			return NULL; /* nomem says why */
		q->cur->next = c;
		q->cur = c;
		off = 0;
	}
	c->used = off + size;
	q->used += size;
	return (char *)c + CHUNK_HDR + off;
}

static void arena_rewind(struct imap_parse_priv *q)
{
	struct chunk *c = q->first->next, *nx;

	for (; c; c = nx) {
		nx = c->next;
		if (c->cap == ARENA_CHUNK && q->nspare < ARENA_SPARES) {
			c->next = q->spare;
			q->spare = c;
			q->nspare++;
		} else if (c->cap > ARENA_CHUNK && c->cap <= ARENA_BIG_KEEP &&
			   (!q->big || q->big->cap < c->cap)) {
			if (q->big)
				budget_give(q, q->big->cap);
			free(q->big);
			q->big = c;
		} else {
			budget_give(q, c->cap);
			free(c);
		}
	}
	q->first->next = NULL;
	q->first->used = 0;
	q->cur = q->first;
	q->used = 0;
}

static void chunks_free(struct chunk *c)
{
	struct chunk *nx;

	for (; c; c = nx) {
		nx = c->next;
		free(c);
	}
}

/* ---- errors --------------------------------------------------------------- */

static int parse_fail(struct imap_parser *p, const char *why, uint64_t pos)
{
	p->err = why;
	p->err_pos = pos;
	p->priv->state = ST_DEAD;
	return IMAP_PARSE_EBAD;
}

static int alloc_fail(struct imap_parser *p, uint64_t pos)
{
	static const char *const why[] = {"response too large", "out of memory",
	                                  "memory budget for buffered responses exhausted"};

	return parse_fail(p, why[p->priv->nomem], pos);
}

/* A literal callback gave up mid-response: the stream position is lost. */
static int cb_abort(struct imap_parser *p, int rc)
{
	parse_fail(p, "aborted by callback", p->pos);
	return rc;
}

/* ---- response state ------------------------------------------------------- */

static void resp_clear(struct imap_parser *p)
{
	struct imap_parse_priv *q = p->priv;

	arena_rewind(q);
	memset(&q->resp, 0, sizeof(q->resp));
	q->resp.text = "";
	q->mode = M_HEAD;
	q->depth = 0;
	q->state = ST_SEG;
	q->line_len = 0;
	q->seg_start = p->pos;
	q->lit_left = 0;
	if (q->line_cap > LINE_KEEP) {
		budget_give(q, q->line_cap);
		free(q->line);
		q->line = NULL;
		q->line_cap = 0;
	}
}

static void frame0(struct imap_parse_priv *q, struct imap_node **head)
{
	q->depth = 0;
	q->stack[0].tailp = head;
	q->stack[0].last = NULL;
}

static void node_link(struct imap_parse_priv *q, struct imap_node *n)
{
	struct frame *f = &q->stack[q->depth];

	*f->tailp = n;
	f->tailp = &n->next;
	f->last = n;
}

static struct imap_node *node_new(struct imap_parser *p, enum imap_node_type t)
{
	struct imap_node *n = arena_alloc(p, sizeof(*n), alignof(struct imap_node));

	if (n) {
		memset(n, 0, sizeof(*n));
		n->type = t;
		n->s = "";
	}
	return n;
}

static char *arena_dup(struct imap_parser *p, const uint8_t *s, size_t n)
{
	char *d = arena_alloc(p, n + 1, 1);

	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* The rest of a status line or continuation: raw bytes, NUL refused so
 * consumers may treat it as a C string. */
static int text_set(struct imap_parser *p, const uint8_t *s, size_t len, size_t i)
{
	struct imap_parse_priv *q = p->priv;
	const uint8_t *z = memchr(s + i, 0, len - i);
	char *t;

	if (z)
		return parse_fail(p, "NUL byte", q->seg_start + (uint64_t)(z - s));
	if (!(t = arena_dup(p, s + i, len - i)))
		return alloc_fail(p, q->seg_start + i);
	q->resp.text = t;
	q->resp.text_len = len - i;
	return SEG_DONE;
}

/* ---- tokens --------------------------------------------------------------- */

/* RFC 3501 §9 ATOM-CHAR, widened to 8-bit bytes; ']' ends an atom so that
 * response codes close; '[' is also special to the caller (BODY[...]). */
static int atom_char(uint8_t c)
{
	return c > 0x20 && c != 0x7f && c != '(' && c != ')' && c != '{' && c != '"' && c != ']';
}

static int tag_char(uint8_t c)
{
	return c > 0x20 && c != 0x7f && c != '(' && c != ')' && c != '{' && c != '"';
}

static enum imap_status status_word(const uint8_t *s, size_t n)
{
	static const struct {
		const char *w;
		enum imap_status st;
	} words[] = {
		{"OK", IMAP_ST_OK},   {"NO", IMAP_ST_NO},	    {"BAD", IMAP_ST_BAD},
		{"BYE", IMAP_ST_BYE}, {"PREAUTH", IMAP_ST_PREAUTH},
	};

	for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++)
		if (strlen(words[k].w) == n && !strncasecmp(words[k].w, (const char *)s, n))
			return words[k].st;
	return IMAP_ST_NONE;
}

static int is_alpha(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* The start of a response: "* ", "+ ", "+" or "tag ", then the status word.
 * Sets *ip to where tokens start when SEG_MORE is returned. */
static int head_parse(struct imap_parser *p, const uint8_t *s, size_t len, size_t *ip)
{
	struct imap_parse_priv *q = p->priv;
	struct imap_resp *r = &q->resp;
	uint64_t seg = q->seg_start;
	enum imap_status st;
	size_t i = 0, w;

	if (len == 0)
		return parse_fail(p, "empty line", seg);
	if (s[0] == '+') {
		/* RFC 3501 §7.5; "+" alone is seen from servers with no text. */
		r->kind = IMAP_RESP_CONT;
		if (len > 1 && s[1] != ' ')
			return parse_fail(p, "missing SP after '+'", seg + 1);
		return text_set(p, s, len, len > 1 ? 2 : 1);
	}
	if (s[0] == '*') {
		if (len < 2 || s[1] != ' ')
			return parse_fail(p, "missing SP after '*'", seg + 1);
		r->kind = IMAP_RESP_UNTAGGED;
		i = 2;
	} else {
		char *tag;

		while (i < len && tag_char(s[i]))
			i++;
		if (i == 0)
			return parse_fail(p, "missing tag", seg);
		if (i == len || s[i] != ' ')
			return parse_fail(p, "missing SP after tag", seg + i);
		if (!(tag = arena_dup(p, s, i)))
			return alloc_fail(p, seg);
		r->kind = IMAP_RESP_TAGGED;
		r->tag = tag;
		r->tag_len = i;
		i++;
	}
	for (w = i; w < len && is_alpha(s[w]); w++)
		;
	st = status_word(s + i, w - i);
	if (st != IMAP_ST_NONE && (w == len || s[w] == ' ' || s[w] == '[')) {
		r->status = st;
		i = w;
		if (i < len && s[i] == ' ')
			i++;
		if (i < len && s[i] == '[') {
			q->mode = M_CODE;
			frame0(q, &r->code);
			*ip = i + 1;
			return SEG_MORE;
		}
		return text_set(p, s, len, i);
	}
	if (r->kind == IMAP_RESP_TAGGED)
		return parse_fail(p, "bad status in tagged response", seg + i);
	q->mode = M_TOKENS;
	frame0(q, &r->first);
	*ip = i;
	return SEG_MORE;
}

/* "{n}", "{n+}", "~{n}" at the end of a segment (RFC 3501 §4.3, RFC 7888,
 * RFC 3516). `i` is at '{'; the literal's bytes follow the segment. */
static int literal_begin(struct imap_parser *p, const uint8_t *s, size_t len, size_t i, int lit8)
{
	struct imap_parse_priv *q = p->priv;
	uint64_t seg = q->seg_start, v = 0;
	size_t start = lit8 ? i - 1 : i, j = i + 1;
	struct imap_node *n, *key;
	unsigned gen = q->gen;
	int inl, rc;

	for (; j < len && s[j] >= '0' && s[j] <= '9'; j++) {
		unsigned d = (unsigned)(s[j] - '0');

		if (v > (LITERAL_MAX - d) / 10)
			return parse_fail(p, "literal size too large", seg + start);
		v = v * 10 + d;
	}
	if (j == i + 1)
		return parse_fail(p, "bad literal size", seg + j);
	if (j < len && s[j] == '+')
		j++;
	if (j == len || s[j] != '}')
		return parse_fail(p, "bad literal size", seg + j);
	if (++j != len)
		return parse_fail(p, "garbage after literal size", seg + j);

	/* The node exists before lit_begin runs, so that once a callback has
	 * acted on a streamed literal nothing can fail for lack of arena. */
	if (!(n = node_new(p, IMAP_NODE_STREAMED)))
		return alloc_fail(p, seg + start);
	n->lit_size = v;
	n->literal8 = lit8;
	key = q->stack[q->depth].last;
	inl = v <= p->inline_max;
	if (p->cb.lit_begin) {
		rc = p->cb.lit_begin(p->cb.ctx, &q->resp, key, v);
		if (q->gen != gen)
			return 0;
		if (rc < 0)
			return cb_abort(p, rc);
		inl = inl && rc == IMAP_LIT_INLINE;
	}
	q->lit_left = v;
	if (inl) {
		uint8_t *d = arena_alloc(p, (size_t)v + 1, 1);

		if (!d)
			return alloc_fail(p, seg + start);
		d[v] = '\0';
		n->type = IMAP_NODE_STRING;
		n->s = (const char *)d;
		n->len = (size_t)v;
		q->lit_dst = d;
		node_link(q, n);
		q->state = v ? ST_LIT_INLINE : ST_SEG;
		return SEG_LIT;
	}
	node_link(q, n);
	q->state = ST_LIT_STREAM;
	if (v == 0) {
		q->state = ST_SEG;
		if (p->cb.lit_end) {
			rc = p->cb.lit_end(p->cb.ctx);
			if (q->gen != gen)
				return 0;
			if (rc < 0)
				return cb_abort(p, rc);
		}
	}
	return SEG_LIT;
}

static int quoted(struct imap_parser *p, const uint8_t *s, size_t len, size_t *ip)
{
	struct imap_parse_priv *q = p->priv;
	uint64_t seg = q->seg_start;
	size_t i = *ip, j = i + 1, esc = 0, k, o;
	struct imap_node *n;
	char *d;

	for (;;) {
		while (j < len && s[j] != '"' && s[j] != '\\' && s[j] != 0)
			j++;
		if (j == len)
			return parse_fail(p, "unterminated quoted string", seg + i);
		if (s[j] == 0)
			return parse_fail(p, "NUL byte", seg + j);
		if (s[j] == '"')
			break;
		if (j + 1 == len)
			return parse_fail(p, "unterminated quoted string", seg + i);
		if (s[j + 1] == 0)
			return parse_fail(p, "NUL byte", seg + j + 1);
		/* RFC 3501 §9 quoted-specials; any other "\x" is kept as is. */
		if (s[j + 1] == '"' || s[j + 1] == '\\')
			esc++;
		j += 2;
	}
	if (!(n = node_new(p, IMAP_NODE_STRING)) || !(d = arena_alloc(p, j - i - esc, 1)))
		return alloc_fail(p, seg + i);
	for (k = i + 1, o = 0; k < j; k++) {
		if (s[k] == '\\' && (s[k + 1] == '"' || s[k + 1] == '\\'))
			k++;
		d[o++] = (char)s[k];
	}
	d[o] = '\0';
	n->s = d;
	n->len = o;
	node_link(q, n);
	*ip = j + 1;
	return 0;
}

static int atom(struct imap_parser *p, const uint8_t *s, size_t len, size_t *ip)
{
	struct imap_parse_priv *q = p->priv;
	uint64_t seg = q->seg_start;
	size_t i = *ip, j = i;
	/* Outside response codes ']' is an ASTRING-CHAR (RFC 3501 §9): Dovecot
	 * sends a mailbox "a]b" as a bare atom. */
	int rbr = q->mode == M_TOKENS, plain = 0;
	unsigned br = 0;
	struct imap_node *n;
	char *d;

again:
	while (j < len) {
		uint8_t c = s[j];

		if (br) {
			/* BODY[HEADER.FIELDS (A B)]<0>: a section keeps spaces
			 * and parens (RFC 3501 §7.4.2 section). */
			if (c < 0x20 || c == 0x7f)
				break;
			if (c == '[')
				br++;
			else if (c == ']')
				br--;
		} else if (c == '[' && !plain) {
			br = 1;
		} else if (!atom_char(c) && !(c == ']' && rbr)) {
			break;
		}
		j++;
	}
	if (br) {
		/* No matching ']' on this line: the '[' was an ordinary atom
		 * char, as in a mailbox named "x[y". */
		plain = 1;
		br = 0;
		j = i;
		goto again;
	}
	if (j == i)
		return parse_fail(p, s[i] ? "unexpected character" : "NUL byte", seg + i);
	if (j - i == 3 && !strncasecmp((const char *)s + i, "NIL", 3) &&
	    !(q->mode == M_CODE && !q->resp.code)) {
		if (!(n = node_new(p, IMAP_NODE_NIL)))
			return alloc_fail(p, seg + i);
		n->s = "NIL";
		n->len = 3;
	} else {
		if (!(n = node_new(p, IMAP_NODE_ATOM)) || !(d = arena_dup(p, s + i, j - i)))
			return alloc_fail(p, seg + i);
		n->s = d;
		n->len = j - i;
	}
	node_link(q, n);
	*ip = j;
	return 0;
}

/* Tokens from s[i] to the end of the segment. */
static int tokens_parse(struct imap_parser *p, const uint8_t *s, size_t len, size_t i)
{
	struct imap_parse_priv *q = p->priv;
	struct imap_resp *r = &q->resp;
	uint64_t seg = q->seg_start;
	struct imap_node *n;
	int rc;

	for (;;) {
		uint8_t c;

		while (i < len && s[i] == ' ')
			i++;
		if (i == len) {
			if (q->mode == M_CODE)
				return parse_fail(p, "unterminated response code", seg + i);
			if (q->depth)
				return parse_fail(p, "unterminated list", seg + i);
			if (!r->first)
				return parse_fail(p, "empty response", seg + i);
			return SEG_DONE;
		}
		c = s[i];
		/* The code's first token names it (RFC 3501 §7.1 resp-text-code). */
		if (q->mode == M_CODE && !r->code && c != ']' &&
		    (c == '(' || c == ')' || c == '"' || c == '{' || c == '~' || c == '['))
			return parse_fail(p, "bad response code", seg + i);
		switch (c) {
		case '(':
			if (q->depth == MAX_DEPTH)
				return parse_fail(p, "lists nested too deeply", seg + i);
			if (!(n = node_new(p, IMAP_NODE_LIST)))
				return alloc_fail(p, seg + i);
			node_link(q, n);
			q->depth++;
			q->stack[q->depth].tailp = &n->child;
			q->stack[q->depth].last = NULL;
			i++;
			break;
		case ')':
			if (!q->depth)
				return parse_fail(p, "unbalanced ')'", seg + i);
			q->depth--;
			i++;
			break;
		case ']':
			if (q->mode == M_TOKENS) {
				if ((rc = atom(p, s, len, &i)) < 0)
					return rc;
				break;
			}
			if (q->depth)
				return parse_fail(p, "unexpected ']'", seg + i);
			i++;
			if (i < len && s[i] == ' ')
				i++;
			return text_set(p, s, len, i);
		case '"':
			if ((rc = quoted(p, s, len, &i)) < 0)
				return rc;
			break;
		case '{':
			return literal_begin(p, s, len, i, 0);
		case '~': /* literal8, or an atom such as "~/Mail" */
			if (i + 1 < len && s[i + 1] == '{')
				return literal_begin(p, s, len, i + 1, 1);
			if ((rc = atom(p, s, len, &i)) < 0)
				return rc;
			break;
		default:
			if ((rc = atom(p, s, len, &i)) < 0)
				return rc;
			break;
		}
	}
}

/* A complete response: hand it out and rewind. */
static int resp_done(struct imap_parser *p)
{
	struct imap_parse_priv *q = p->priv;
	unsigned gen = q->gen;
	int rc = p->cb.response ? p->cb.response(p->cb.ctx, &q->resp) : 0;

	if (q->gen != gen)
		return 0;
	resp_clear(p);
	if (rc < 0)
		return rc;
	return rc == IMAP_PARSE_PAUSE ? IMAP_PARSE_PAUSE : 0;
}

/* One segment, without its line end. */
static int seg_process(struct imap_parser *p, const uint8_t *s, size_t len)
{
	struct imap_parse_priv *q = p->priv;
	size_t i = 0;
	int rc;

	if (q->mode == M_HEAD) {
		rc = head_parse(p, s, len, &i);
		if (rc < 0)
			return rc;
		if (rc == SEG_DONE)
			return resp_done(p);
	}
	rc = tokens_parse(p, s, len, i);
	if (rc == SEG_DONE)
		return resp_done(p);
	return rc < 0 ? rc : 0;
}

static int line_append(struct imap_parser *p, const uint8_t *b, size_t n)
{
	struct imap_parse_priv *q = p->priv;
	size_t need = q->line_len + n;

	if (need > q->line_cap) {
		size_t cap = q->line_cap ? q->line_cap * 2 : 256;
		uint8_t *nb;

		if (cap < need)
			cap = need;
		if (cap > p->arena_max + 1 && need <= p->arena_max + 1)
			cap = p->arena_max + 1;
		if (budget_take(q, cap - q->line_cap) < 0) {
			q->nomem = 2;
			return -1;
		}
		if (!(nb = realloc(q->line, cap))) {
			budget_give(q, cap - q->line_cap);
			q->nomem = 1;
			return -1;
		}
		q->line = nb;
		q->line_cap = cap;
	}
	memcpy(q->line + q->line_len, b, n);
	q->line_len = need;
	return 0;
}

/* The longest segment allowed, judged by what it starts with (see
 * LINE_MAX_DEFAULT): the whole arena for a set of numbers, else line_max. */
static size_t line_limit(const struct imap_parser *p, const uint8_t *s, size_t n)
{
	static const char *const sets[] = {"* SEARCH", "* ESEARCH", "* VANISHED", "* SORT"};
	const struct imap_parse_priv *q = p->priv;
	size_t lim = p->line_max < p->arena_max ? p->line_max : p->arena_max;

	if (q->mode != M_HEAD)
		return lim;
	for (size_t k = 0; k < sizeof(sets) / sizeof(sets[0]); k++) {
		size_t l = strlen(sets[k]);

		if (n > l && !strncasecmp((const char *)s, sets[k], l) && s[l] == ' ')
			return p->arena_max;
	}
	return lim;
}

/* ---- public --------------------------------------------------------------- */

static void priv_free(struct imap_parse_priv *q)
{
	budget_give(q, q->charged);
	chunks_free(q->first);
	chunks_free(q->spare);
	free(q->big);
	free(q->line);
	free(q);
}

static ssize_t feed(struct imap_parser *p, struct imap_parse_priv *q, const uint8_t *buf, size_t n)
{
	size_t i = 0;
	unsigned gen = q->gen;
	int rc;

	if (q->state == ST_DEAD)
		return IMAP_PARSE_EBAD;
	while (i < n) {
		switch (q->state) {
		case ST_SEG: {
			const uint8_t *lf = memchr(buf + i, '\n', n - i), *s;
			size_t take = lf ? (size_t)(lf - (buf + i)) : n - i, len, lim;

			lim = q->line_len ? line_limit(p, q->line, q->line_len)
			                  : line_limit(p, buf + i, take);
			/* The segment plus its CR may reach lim + 1. */
			if (take > lim + 1 - q->line_len)
				return parse_fail(p, "line too long", q->seg_start + lim);
			if (!lf || q->line_len) {
				if (line_append(p, buf + i, take) < 0)
					return parse_fail(p,
					                  q->nomem == 2
					                      ? "memory budget for buffered "
					                        "responses exhausted"
					                      : "out of memory",
					                  p->pos);
			}
			if (!lf) {
				i += take;
				p->pos += take;
				break;
			}
			if (q->line_len) {
				s = q->line;
				len = q->line_len;
			} else {
				s = buf + i;
				len = take;
			}
			i += take + 1;
			p->pos += take + 1;
			if (len && s[len - 1] == '\r')
				len--; /* a bare LF ends a line too: some servers send it */
			else if (len > lim)
				return parse_fail(p, "line too long", q->seg_start + lim);
			q->line_len = 0;
			rc = seg_process(p, s, len);
			if (rc < 0)
				return rc;
			if (q->gen != gen || rc == IMAP_PARSE_PAUSE)
				return (ssize_t)i;
			if (q->state == ST_SEG && q->mode != M_HEAD)
				q->seg_start = p->pos; /* after an empty literal */
			break;
		}
		case ST_LIT_INLINE: {
			size_t k = n - i;

			if (k > q->lit_left)
				k = (size_t)q->lit_left;
			memcpy(q->lit_dst, buf + i, k);
			q->lit_dst += k;
			q->lit_left -= k;
			i += k;
			p->pos += k;
			if (!q->lit_left) {
				q->state = ST_SEG;
				q->seg_start = p->pos;
			}
			break;
		}
		case ST_LIT_STREAM: {
			size_t k = n - i;
			ssize_t got;

			if (k > q->lit_left)
				k = (size_t)q->lit_left;
			got = (ssize_t)k;
			if (p->cb.lit_data) {
				got = p->cb.lit_data(p->cb.ctx, buf + i, k);
				if (got < 0) {
					if (q->gen != gen)
						return (ssize_t)i;
					return cb_abort(p, (int)got);
				}
				if ((size_t)got > k)
					got = (ssize_t)k;
			}
			i += (size_t)got;
			p->pos += (uint64_t)got;
			if (q->gen != gen)
				return (ssize_t)i;
			q->lit_left -= (uint64_t)got;
			if (q->lit_left) {
				if ((size_t)got < k)
					return (ssize_t)i; /* back-pressure */
				break;
			}
			q->state = ST_SEG;
			q->seg_start = p->pos;
			if (p->cb.lit_end) {
				rc = p->cb.lit_end(p->cb.ctx);
				if (q->gen != gen)
					return (ssize_t)i;
				if (rc < 0)
					return cb_abort(p, rc);
			}
			break;
		}
		default:
			return IMAP_PARSE_EBAD;
		}
	}
	return (ssize_t)i;
}

/* A callback may free the parser (its owner closed the connection): feed
 * notices through gen, returns without touching q again, and the memory goes
 * here, once no feed() is on the stack. */
ssize_t imap_parse_feed(struct imap_parser *p, const uint8_t *buf, size_t n)
{
	struct imap_parse_priv *q = p->priv;
	ssize_t r;

	if (!q) {
		p->err = "parser not initialised";
		return IMAP_PARSE_EBAD;
	}
	q->in_feed++;
	r = feed(p, q, buf, n);
	if (--q->in_feed == 0 && q->doomed)
		priv_free(q);
	return r;
}

int imap_parser_init(struct imap_parser *p, const struct imap_parser_cb *cb, size_t inline_max,
		     size_t arena_max)
{
	struct imap_parse_priv *q;

	memset(p, 0, sizeof(*p));
	if (cb)
		p->cb = *cb;
	p->inline_max = inline_max ? inline_max : PARSE_INLINE_DEFAULT;
	p->arena_max = arena_max ? arena_max : PARSE_ARENA_DEFAULT;
	p->line_max = LINE_MAX_DEFAULT;
	if (p->arena_max > SIZE_MAX / 4)
		p->arena_max = SIZE_MAX / 4; /* so arena_max + 1 cannot wrap */
	if (!(q = calloc(1, sizeof(*q))))
		return -ENOMEM;
	if (!(q->first = chunk_new(ARENA_CHUNK))) {
		free(q);
		return -ENOMEM;
	}
	q->cur = q->first;
	p->priv = q;
	resp_clear(p);
	return 0;
}

void imap_parser_free(struct imap_parser *p)
{
	struct imap_parse_priv *q = p->priv;

	if (!q)
		return;
	p->priv = NULL;
	if (q->in_feed) {
		q->doomed = 1;
		q->gen++; /* feed stops at its next check */
		return;
	}
	priv_free(q);
}

void imap_parser_budget(struct imap_parser *p, size_t *used, size_t max)
{
	struct imap_parse_priv *q = p->priv;

	if (!q || q->bused)
		return;
	q->bused = used;
	q->bmax = max;
	/* What the parser holds already counts (may exceed max: then the next
	 * growth fails). */
	*used += q->line_cap;
	q->charged = q->line_cap;
}

void imap_parser_reset(struct imap_parser *p)
{
	struct imap_parse_priv *q = p->priv;

	if (!q)
		return;
	q->gen++;
	p->err = NULL;
	p->err_pos = 0;
	resp_clear(p);
}

uint64_t imap_parser_literal_left(const struct imap_parser *p)
{
	const struct imap_parse_priv *q = p->priv;

	return q && q->state == ST_LIT_STREAM ? q->lit_left : 0;
}

int imap_node_is(const struct imap_node *n, const char *name)
{
	size_t l;

	if (!n || n->type != IMAP_NODE_ATOM || !name)
		return 0;
	l = strlen(name);
	return n->len == l && !strncasecmp(n->s, name, l);
}

int imap_node_u64(const struct imap_node *n, uint64_t *out)
{
	uint64_t v = 0;

	if (!n || n->type != IMAP_NODE_ATOM || !n->len)
		return -1;
	for (size_t i = 0; i < n->len; i++) {
		unsigned d = (unsigned)((uint8_t)n->s[i] - '0');

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int imap_node_u32(const struct imap_node *n, uint32_t *out)
{
	uint64_t v;

	if (imap_node_u64(n, &v) < 0 || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

size_t imap_node_count(const struct imap_node *list)
{
	size_t k = 0;

	if (!list || list->type != IMAP_NODE_LIST)
		return 0;
	for (const struct imap_node *c = list->child; c; c = c->next)
		k++;
	return k;
}
