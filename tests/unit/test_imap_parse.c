/* Unit tests for imap_parse: a Dovecot session parses to a known tree, and
 * the same bytes give the same callbacks whatever the split, the literal
 * mode or the back-pressure; bad input fails at the right byte; the arena
 * is reused. */
#include "protocols/imap_parse.h"
#include "tests/unit/unit.h"

#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>

/* Present in ASan/LSan runtimes; NULL otherwise (then mallinfo2 is used). */
extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));
extern int __sanitizer_install_malloc_and_free_hooks(void (*)(const volatile void *, size_t),
						      void (*)(const volatile void *))
	__attribute__((weak));

/* ---- canonical dump -------------------------------------------------------- */

struct dstr {
	char *s;
	size_t len, cap;
};

static void ds_put(struct dstr *d, const char *p, size_t n)
{
	if (d->len + n + 1 > d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 1024;

		while (cap < d->len + n + 1)
			cap *= 2;
		d->s = realloc(d->s, cap);
		if (!d->s)
			abort();
		d->cap = cap;
	}
	memcpy(d->s + d->len, p, n);
	d->len += n;
	d->s[d->len] = '\0';
}

static void ds_printf(struct dstr *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ds_printf(struct dstr *d, const char *fmt, ...)
{
	char b[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(b, sizeof(b), fmt, ap);
	va_end(ap);
	ds_put(d, b, (size_t)n < sizeof(b) ? (size_t)n : sizeof(b) - 1);
}

static void ds_bytes(struct dstr *d, const char *s, size_t n)
{
	ds_put(d, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)s[i];

		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			ds_printf(d, "\\x%02x", c);
		else
			ds_put(d, (const char *)&c, 1);
	}
	ds_put(d, "\"", 1);
}

static void ds_node(struct dstr *d, const struct imap_node *n)
{
	for (; n; n = n->next) {
		switch (n->type) {
		case IMAP_NODE_ATOM:
			ds_bytes(d, n->s, n->len);
			break;
		case IMAP_NODE_STRING:
			ds_put(d, "s", 1);
			if (n->lit_size || n->literal8)
				ds_printf(d, "{%s%llu}", n->literal8 ? "~" : "",
					  (unsigned long long)n->lit_size);
			ds_bytes(d, n->s, n->len);
			break;
		case IMAP_NODE_NIL:
			ds_put(d, "NIL", 3);
			break;
		case IMAP_NODE_LIST:
			ds_put(d, "(", 1);
			ds_node(d, n->child);
			ds_put(d, ")", 1);
			break;
		case IMAP_NODE_STREAMED:
			ds_printf(d, "#%s%llu", n->literal8 ? "~" : "", (unsigned long long)n->lit_size);
			break;
		}
		if (n->next)
			ds_put(d, " ", 1);
	}
}

static void ds_resp(struct dstr *d, const struct imap_resp *r)
{
	static const char *st[] = {"-", "OK", "NO", "BAD", "BYE", "PREAUTH"};

	ds_put(d, r->kind == IMAP_RESP_TAGGED ? "T" : r->kind == IMAP_RESP_CONT ? "C" : "U", 1);
	if (r->kind == IMAP_RESP_TAGGED) {
		ds_put(d, " tag=", 5);
		ds_bytes(d, r->tag, r->tag_len);
	}
	ds_printf(d, " %s", st[r->status]);
	if (r->code) {
		ds_put(d, " [", 2);
		ds_node(d, r->code);
		ds_put(d, "]", 1);
	}
	if (r->status != IMAP_ST_NONE || r->kind == IMAP_RESP_CONT) {
		ds_put(d, " text=", 6);
		ds_bytes(d, r->text, r->text_len);
	}
	if (r->first) {
		ds_put(d, " ", 1);
		ds_node(d, r->first);
	}
}

/* ---- harness -------------------------------------------------------------- */

enum { LM_INLINE, LM_STREAM, LM_ALT, LM_NULL };

struct h {
	struct imap_parser p;
	struct dstr out;
	int lit_mode;
	size_t accept;		/* lit_data takes at most this many (0: all) */
	int pause;		/* response() returns PAUSE */
	int nresp, nlit;
	uint64_t lit_bytes, lit_hash;
	size_t lit_calls;
	int (*check)(struct h *, const struct imap_resp *);
	void *ud;
};

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}
#define FNV0 0xcbf29ce484222325ULL

static int h_response(void *ctx, const struct imap_resp *r)
{
	struct h *h = ctx;

	ds_resp(&h->out, r);
	ds_put(&h->out, "\n", 1);
	h->nresp++;
	if (h->check && h->check(h, r) < 0)
		return -99;
	return h->pause ? IMAP_PARSE_PAUSE : 0;
}

static int h_lit_begin(void *ctx, const struct imap_resp *r, const struct imap_node *key,
		       uint64_t size)
{
	struct h *h = ctx;
	int mode = h->lit_mode == LM_ALT ? (h->nlit & 1) : h->lit_mode == LM_STREAM;

	ds_printf(&h->out, "  lit %llu key=", (unsigned long long)size);
	if (key && key->next)
		ds_put(&h->out, "NOT-LAST ", 9); /* the key is the newest token */
	if (key)
		ds_node(&h->out, key);
	else
		ds_put(&h->out, "-", 1);
	ds_put(&h->out, " so far: ", 9);
	ds_resp(&h->out, r);
	ds_put(&h->out, "\n", 1);
	h->nlit++;
	h->lit_bytes = 0;
	h->lit_hash = FNV0;
	return mode ? IMAP_LIT_STREAM : IMAP_LIT_INLINE;
}

static ssize_t h_lit_data(void *ctx, const uint8_t *p, size_t n)
{
	struct h *h = ctx;

	if (h->accept && n > h->accept)
		n = h->accept;
	h->lit_hash = fnv(h->lit_hash, p, n);
	h->lit_bytes += n;
	h->lit_calls++;
	return (ssize_t)n;
}

static int h_lit_end(void *ctx)
{
	struct h *h = ctx;

	ds_printf(&h->out, "  lit end %llu %016llx\n", (unsigned long long)h->lit_bytes,
		  (unsigned long long)h->lit_hash);
	h->lit_bytes = 0;
	h->lit_hash = FNV0;
	return 0;
}

static void h_init(struct h *h, int lit_mode, size_t inline_max, size_t arena_max)
{
	struct imap_parser_cb cb = {h, h_response, h_lit_begin, h_lit_data, h_lit_end};

	memset(h, 0, sizeof(*h));
	h->lit_mode = lit_mode;
	if (lit_mode == LM_NULL)
		cb.lit_begin = NULL;
	if (imap_parser_init(&h->p, &cb, inline_max, arena_max) < 0)
		abort();
	h->lit_hash = FNV0;
}

static void h_free(struct h *h)
{
	imap_parser_free(&h->p);
	free(h->out.s);
}

/* Feeds one piece, re-feeding after PAUSE or short lit_data; returns < 0
 * on an error (recorded in the dump). */
static int h_feed(struct h *h, const uint8_t *b, size_t n)
{
	while (n) {
		ssize_t r = imap_parse_feed(&h->p, b, n);

		if (r < 0) {
			ds_printf(&h->out, "ERR %zd %s @%llu\n", r, h->p.err ? h->p.err : "?",
				  (unsigned long long)h->p.err_pos);
			return (int)r;
		}
		if (r == 0) {
			ds_printf(&h->out, "STUCK\n");
			return -1;
		}
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Feeds `in` cut at the given offsets (ascending), then records the end. */
static void h_run(struct h *h, const char *in, size_t n, const size_t *cuts, size_t ncuts)
{
	size_t at = 0;
	int rc = 0;

	for (size_t k = 0; k <= ncuts && !rc; k++) {
		size_t to = k < ncuts ? cuts[k] : n;

		rc = h_feed(h, (const uint8_t *)in + at, to - at);
		at = to;
	}
	ds_printf(&h->out, "END pos=%llu left=%llu\n", (unsigned long long)h->p.pos,
		  (unsigned long long)imap_parser_literal_left(&h->p));
}

static char *dump_whole(int lit_mode, const char *in, size_t n, size_t accept, int pause,
			size_t arena_max)
{
	struct h h;
	char *s;

	h_init(&h, lit_mode, 16, arena_max);
	h.accept = accept;
	h.pause = pause;
	h_run(&h, in, n, NULL, 0);
	s = h.out.s;
	h.out.s = NULL;
	h_free(&h);
	return s;
}

/* ---- transcripts ------------------------------------------------------------- */

#define MSG1                                                                                       \
	"From: a@example.org\r\nSubject: hi (x)\r\n\r\nbody)\r\n* 9 FETCH \"\r\n"
#define HDR3 "Message-ID: <a@b.example>\r\n\r\n"

static const char session[] =
	"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
	"STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n"
	"a1 OK [CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE SORT THREAD=REFERENCES "
	"MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE "
	"QRESYNC ESEARCH SEARCHRES LIST-STATUS BINARY MOVE LITERAL+ SPECIAL-USE QUOTA] "
	"Logged in\r\n"
	"* ENABLED QRESYNC\r\n"
	"a2 OK Enabled (0.001 + 0.000 secs).\r\n"
	"* LIST (\\HasNoChildren) \".\" INBOX\r\n"
	"* LIST (\\HasNoChildren \\Sent) \".\" INBOX.Sent\r\n"
	"* LIST (\\HasNoChildren \\Drafts) \".\" \"My \\\"Drafts\\\" \\\\ x\"\r\n"
	"* LIST (\\HasNoChildren \\Trash) \".\" {11}\r\nTrash [old]\r\n"
	"* LIST (\\HasNoChildren) \".\" \"&U,BTFw-/&ZeVnLIqe-\"\r\n"
	"* LIST () NIL INBOX\r\n"
	"a3 OK List completed (0.001 + 0.000 secs).\r\n"
	"* STATUS INBOX (MESSAGES 3 UIDNEXT 9 UIDVALIDITY 1700000000 HIGHESTMODSEQ 5)\r\n"
	"* STATUS \"a b\" (MESSAGES 0)\r\n"
	"a4 OK Status completed (0.001 + 0.000 secs).\r\n"
	"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)\r\n"
	"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded \\*)] "
	"Flags permitted.\r\n"
	"* 3 EXISTS\r\n"
	"* 0 RECENT\r\n"
	"* OK [UIDVALIDITY 1700000000] UIDs valid\r\n"
	"* OK [UIDNEXT 9] Predicted next UID\r\n"
	"* OK [HIGHESTMODSEQ 715194045007] Highest\r\n"
	"* VANISHED (EARLIER) 1:3,7\r\n"
	"a5 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n"
	"* 1 FETCH (UID 4 FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" "
	"RFC822.SIZE 60 MODSEQ (12) BODY[] {60}\r\n" MSG1 ")\r\n"
	"* 2 FETCH (UID 5 FLAGS () INTERNALDATE \" 1-Jan-2024 00:00:00 +0000\" "
	"RFC822.SIZE 0 MODSEQ (13) BODY[] {0}\r\n)\r\n"
	"* 3 FETCH (UID 8 BODY[HEADER.FIELDS (MESSAGE-ID)] {29}\r\n" HDR3 " BODY[]<0> {3}\r\nabc)\r\n"
	"a6 OK Fetch completed (0.003 + 0.000 + 0.002 secs).\r\n"
	"+ OK\r\n"
	"a7 OK [APPENDUID 1700000000 10] Append completed (0.004 + 0.000 + 0.003 secs).\r\n"
	"a7b OK [COPYUID 1700000000 1:3 7:9] Moved\r\n"
	"* ESEARCH (TAG \"a8\") UID ALL 1:5,9\r\n"
	"* SEARCH 1 2 3\r\n"
	"a8 OK Search completed (0.001 + 0.000 secs).\r\n"
	"* NAMESPACE ((\"\" \".\")) NIL NIL\r\n"
	"* ID (\"name\" \"Dovecot\")\r\n"
	"* CAPABILITY IMAP4rev1 LITERAL+\r\n"
	"+ idling\r\n"
	"+ \r\n"
	"+\r\n"
	"* 4 FETCH (BINARY[1] ~{5}\r\nhe\0lo)\r\n"
	"a9 NO [BADCHARSET (UTF-8)] Bad charset\r\n"
	"a10 NO [ALERT] \xc3\x9c" "berquota (\xc3\xbc) [x \"unbalanced\r\n"
	"* NO [NOMODSEQ] No\r\n"
	"* OK\r\n"
	"* PREAUTH [CAPABILITY IMAP4rev1] ready\n"
	"* BYE Logging out\r\n"
	"a11 OK Logout completed (0.001 + 0.000 secs).\r\n";

/* What the session parses to with lit_begin answering INLINE and an
 * inline limit of 16 bytes (so the 29- and 60-byte literals stream). */
static const char session_dump[] =
	"U OK [\"CAPABILITY\" \"IMAP4rev1\" \"SASL-IR\" \"LOGIN-REFERRALS\" \"ID\" \"ENABLE\" "
	"\"IDLE\" \"LITERAL+\" \"STARTTLS\" \"AUTH=PLAIN\"] text=\"Dovecot (Debian) ready.\"\n"
	"T tag=\"a1\" OK [\"CAPABILITY\" \"IMAP4rev1\" \"SASL-IR\" \"ID\" \"ENABLE\" \"IDLE\" "
	"\"SORT\" \"THREAD=REFERENCES\" \"MULTIAPPEND\" \"UNSELECT\" \"CHILDREN\" \"NAMESPACE\" "
	"\"UIDPLUS\" \"LIST-EXTENDED\" \"I18NLEVEL=1\" \"CONDSTORE\" \"QRESYNC\" \"ESEARCH\" "
	"\"SEARCHRES\" \"LIST-STATUS\" \"BINARY\" \"MOVE\" \"LITERAL+\" \"SPECIAL-USE\" "
	"\"QUOTA\"] text=\"Logged in\"\n"
	"U - \"ENABLED\" \"QRESYNC\"\n"
	"T tag=\"a2\" OK text=\"Enabled (0.001 + 0.000 secs).\"\n"
	"U - \"LIST\" (\"\\x5cHasNoChildren\") s\".\" \"INBOX\"\n"
	"U - \"LIST\" (\"\\x5cHasNoChildren\" \"\\x5cSent\") s\".\" \"INBOX.Sent\"\n"
	"U - \"LIST\" (\"\\x5cHasNoChildren\" \"\\x5cDrafts\") s\".\" "
	"s\"My \\x22Drafts\\x22 \\x5c x\"\n"
	"  lit 11 key=s\".\" so far: U - \"LIST\" (\"\\x5cHasNoChildren\" \"\\x5cTrash\") s\".\"\n"
	"U - \"LIST\" (\"\\x5cHasNoChildren\" \"\\x5cTrash\") s\".\" s{11}\"Trash [old]\"\n"
	"U - \"LIST\" (\"\\x5cHasNoChildren\") s\".\" s\"&U,BTFw-/&ZeVnLIqe-\"\n"
	"U - \"LIST\" () NIL \"INBOX\"\n"
	"T tag=\"a3\" OK text=\"List completed (0.001 + 0.000 secs).\"\n"
	"U - \"STATUS\" \"INBOX\" (\"MESSAGES\" \"3\" \"UIDNEXT\" \"9\" \"UIDVALIDITY\" "
	"\"1700000000\" \"HIGHESTMODSEQ\" \"5\")\n"
	"U - \"STATUS\" s\"a b\" (\"MESSAGES\" \"0\")\n"
	"T tag=\"a4\" OK text=\"Status completed (0.001 + 0.000 secs).\"\n"
	"U - \"FLAGS\" (\"\\x5cAnswered\" \"\\x5cFlagged\" \"\\x5cDeleted\" \"\\x5cSeen\" "
	"\"\\x5cDraft\" \"$Forwarded\")\n"
	"U OK [\"PERMANENTFLAGS\" (\"\\x5cAnswered\" \"\\x5cFlagged\" \"\\x5cDeleted\" "
	"\"\\x5cSeen\" \"\\x5cDraft\" \"$Forwarded\" \"\\x5c*\")] text=\"Flags permitted.\"\n"
	"U - \"3\" \"EXISTS\"\n"
	"U - \"0\" \"RECENT\"\n"
	"U OK [\"UIDVALIDITY\" \"1700000000\"] text=\"UIDs valid\"\n"
	"U OK [\"UIDNEXT\" \"9\"] text=\"Predicted next UID\"\n"
	"U OK [\"HIGHESTMODSEQ\" \"715194045007\"] text=\"Highest\"\n"
	"U - \"VANISHED\" (\"EARLIER\") \"1:3,7\"\n"
	"T tag=\"a5\" OK [\"READ-WRITE\"] text=\"Select completed (0.001 + 0.000 secs).\"\n"
	"  lit 60 key=\"BODY[]\" so far: U - \"1\" \"FETCH\" (\"UID\" \"4\" \"FLAGS\" "
	"(\"\\x5cSeen\") \"INTERNALDATE\" s\"17-Jul-1996 02:44:25 -0700\" \"RFC822.SIZE\" "
	"\"60\" \"MODSEQ\" (\"12\") \"BODY[]\")\n"
	"  lit end 60 %016llx\n"
	"U - \"1\" \"FETCH\" (\"UID\" \"4\" \"FLAGS\" (\"\\x5cSeen\") \"INTERNALDATE\" "
	"s\"17-Jul-1996 02:44:25 -0700\" \"RFC822.SIZE\" \"60\" \"MODSEQ\" (\"12\") "
	"\"BODY[]\" #60)\n"
	"  lit 0 key=\"BODY[]\" so far: U - \"2\" \"FETCH\" (\"UID\" \"5\" \"FLAGS\" () "
	"\"INTERNALDATE\" s\" 1-Jan-2024 00:00:00 +0000\" \"RFC822.SIZE\" \"0\" \"MODSEQ\" "
	"(\"13\") \"BODY[]\")\n"
	"U - \"2\" \"FETCH\" (\"UID\" \"5\" \"FLAGS\" () \"INTERNALDATE\" "
	"s\" 1-Jan-2024 00:00:00 +0000\" \"RFC822.SIZE\" \"0\" \"MODSEQ\" (\"13\") "
	"\"BODY[]\" s\"\")\n"
	"  lit 29 key=\"BODY[HEADER.FIELDS (MESSAGE-ID)]\" so far: U - \"3\" \"FETCH\" "
	"(\"UID\" \"8\" \"BODY[HEADER.FIELDS (MESSAGE-ID)]\")\n"
	"  lit end 29 %016llx\n"
	"  lit 3 key=\"BODY[]<0>\" so far: U - \"3\" \"FETCH\" (\"UID\" \"8\" "
	"\"BODY[HEADER.FIELDS (MESSAGE-ID)]\" #29 \"BODY[]<0>\")\n"
	"U - \"3\" \"FETCH\" (\"UID\" \"8\" \"BODY[HEADER.FIELDS (MESSAGE-ID)]\" #29 "
	"\"BODY[]<0>\" s{3}\"abc\")\n"
	"T tag=\"a6\" OK text=\"Fetch completed (0.003 + 0.000 + 0.002 secs).\"\n"
	"C - text=\"OK\"\n"
	"T tag=\"a7\" OK [\"APPENDUID\" \"1700000000\" \"10\"] "
	"text=\"Append completed (0.004 + 0.000 + 0.003 secs).\"\n"
	"T tag=\"a7b\" OK [\"COPYUID\" \"1700000000\" \"1:3\" \"7:9\"] text=\"Moved\"\n"
	"U - \"ESEARCH\" (\"TAG\" s\"a8\") \"UID\" \"ALL\" \"1:5,9\"\n"
	"U - \"SEARCH\" \"1\" \"2\" \"3\"\n"
	"T tag=\"a8\" OK text=\"Search completed (0.001 + 0.000 secs).\"\n"
	"U - \"NAMESPACE\" ((s\"\" s\".\")) NIL NIL\n"
	"U - \"ID\" (s\"name\" s\"Dovecot\")\n"
	"U - \"CAPABILITY\" \"IMAP4rev1\" \"LITERAL+\"\n"
	"C - text=\"idling\"\n"
	"C - text=\"\"\n"
	"C - text=\"\"\n"
	"  lit 5 key=\"BINARY[1]\" so far: U - \"4\" \"FETCH\" (\"BINARY[1]\")\n"
	"U - \"4\" \"FETCH\" (\"BINARY[1]\" s{~5}\"he\\x00lo\")\n"
	"T tag=\"a9\" NO [\"BADCHARSET\" (\"UTF-8\")] text=\"Bad charset\"\n"
	"T tag=\"a10\" NO [\"ALERT\"] text=\"\\xc3\\x9cberquota (\\xc3\\xbc) [x \\x22unbalanced\"\n"
	"U NO [\"NOMODSEQ\"] text=\"No\"\n"
	"U OK text=\"\"\n"
	"U PREAUTH [\"CAPABILITY\" \"IMAP4rev1\"] text=\"ready\"\n"
	"U BYE text=\"Logging out\"\n"
	"T tag=\"a11\" OK text=\"Logout completed (0.001 + 0.000 secs).\"\n"
	"END pos=%zu left=0\n";

static void test_session_golden(struct unit_ctx *u)
{
	char *got = dump_whole(LM_INLINE, session, sizeof(session) - 1, 0, 0, 0);
	char want[sizeof(session_dump) + 64];

	snprintf(want, sizeof(want), session_dump,
		 (unsigned long long)fnv(FNV0, (const uint8_t *)MSG1, 60),
		 (unsigned long long)fnv(FNV0, (const uint8_t *)HDR3, 29), sizeof(session) - 1);
	UNIT_CHECKF(u, !strcmp(got, want), "dump differs:\n--- got\n%s--- want\n%s", got, want);
	free(got);
}

/* Semantic checks through the public helpers, made inside the callbacks. */
struct sem {
	int fetch_seen, append_seen, modseq_seen, status_seen, list_lit_seen;
	int bad;
};

static int sem_resp(struct h *h, const struct imap_resp *r)
{
	struct sem *s = h->ud;
	const struct imap_node *a = r->first;
	uint32_t v32;
	uint64_t v64;

	if (r->code && imap_node_is(r->code, "appenduid")) {
		if (imap_node_u32(r->code->next, &v32) || v32 != 1700000000 ||
		    imap_node_u32(r->code->next->next, &v32) || v32 != 10 ||
		    r->kind != IMAP_RESP_TAGGED || r->tag_len != 2 || memcmp(r->tag, "a7", 2))
			s->bad = 1;
		s->append_seen = 1;
	}
	if (r->code && imap_node_is(r->code, "HIGHESTMODSEQ")) {
		if (imap_node_u64(r->code->next, &v64) || v64 != 715194045007ULL ||
		    !imap_node_u32(r->code->next, &v32))
			s->bad = 1;
		s->modseq_seen = 1;
	}
	if (a && imap_node_is(a, "STATUS") && a->next->type == IMAP_NODE_ATOM) {
		const struct imap_node *l = a->next->next;

		if (imap_node_count(l) != 8 || imap_node_count(a) != 0 ||
		    !imap_node_is(l->child->next->next, "UIDNEXT"))
			s->bad = 1;
		s->status_seen = 1;
	}
	if (a && imap_node_is(a, "LIST") && a->next->next->next->type == IMAP_NODE_STRING &&
	    a->next->next->next->lit_size == 11) {
		if (strcmp(a->next->next->next->s, "Trash [old]"))
			s->bad = 1;
		s->list_lit_seen = 1;
	}
	return 0;
}

static int sem_lit_begin(void *ctx, const struct imap_resp *r, const struct imap_node *key,
			 uint64_t size)
{
	struct h *h = ctx;
	struct sem *s = h->ud;
	const struct imap_node *it;
	uint32_t uid = 0;
	uint64_t modseq = 0;

	if (key && imap_node_is(key, "BODY[]") && size == 60) {
		/* the way engine/job.c walks the items before BODY[] */
		for (it = r->first->next->next->child; it && it != key; it = it->next) {
			if (imap_node_is(it, "UID"))
				imap_node_u32(it->next, &uid);
			if (imap_node_is(it, "MODSEQ"))
				imap_node_u64(it->next->child, &modseq);
		}
		if (uid != 4 || modseq != 12 || it != key)
			s->bad = 1;
		s->fetch_seen = 1;
	}
	return key && imap_node_is(key, "BODY[]") ? IMAP_LIT_STREAM : IMAP_LIT_INLINE;
}

static void test_session_semantics(struct unit_ctx *u)
{
	struct sem s = {0};
	struct h h;

	h_init(&h, LM_STREAM, 0, 0);
	h.p.cb.lit_begin = sem_lit_begin;
	h.ud = &s;
	h.check = sem_resp;
	h_run(&h, session, sizeof(session) - 1, NULL, 0);
	UNIT_CHECKF(u, h.nresp == 47, "%d responses", h.nresp);
	UNIT_CHECK(u, !s.bad);
	UNIT_CHECK(u, s.fetch_seen && s.append_seen && s.modseq_seen && s.status_seen &&
			      s.list_lit_seen);
	h_free(&h);
}

/* Every two-piece split, byte by byte and random chunks give the same dump
 * as one feed, for each literal mode, with and without back-pressure. */
static void check_splits(struct unit_ctx *u, const char *in, size_t n, size_t arena_max)
{
	static const struct {
		int mode;
		size_t accept;
		int pause;
	} cfg[] = {
		{LM_INLINE, 0, 0}, {LM_STREAM, 0, 1}, {LM_ALT, 1, 0}, {LM_NULL, 3, 1},
	};
	uint64_t seed = 42;

	for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
		char *want = dump_whole(cfg[c].mode, in, n, 0, 0, arena_max);

		for (size_t at = 0; at <= n + 1; at++) {
			struct h h;
			size_t cuts[4096], nc = 0;

			h_init(&h, cfg[c].mode, 16, arena_max);
			h.accept = cfg[c].accept;
			h.pause = cfg[c].pause;
			if (at <= n) {
				cuts[nc++] = at;
			} else if (n < 4096) { /* byte by byte */
				for (size_t k = 1; k < n; k++)
					cuts[nc++] = k;
			}
			h_run(&h, in, n, cuts, nc);
			UNIT_CHECKF(u, !strcmp(h.out.s, want),
				    "cfg %zu split %zu:\n--- got\n%s--- want\n%s", c, at, h.out.s,
				    want);
			h_free(&h);
		}
		for (int round = 0; round < 50; round++) {
			struct h h;
			size_t cuts[4096], nc = 0, at = 0;

			h_init(&h, cfg[c].mode, 16, arena_max);
			h.accept = cfg[c].accept;
			while (nc < 4096) {
				seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
				at += 1 + seed % 40;
				if (at >= n)
					break;
				cuts[nc++] = at;
			}
			h_run(&h, in, n, cuts, nc);
			UNIT_CHECKF(u, !strcmp(h.out.s, want), "cfg %zu random round %d", c, round);
			h_free(&h);
		}
		free(want);
	}
}

static void test_session_splits(struct unit_ctx *u)
{
	check_splits(u, session, sizeof(session) - 1, 0);
}

static void test_bad_splits(struct unit_ctx *u)
{
	static const char bad[] = "* 1 FETCH (UID 1 BODY[] {5}\r\nab)\r\n)\r\na1 OK x\r\n"
				  "* 2 FETCH (UID 2))\r\n* 3 EXISTS\r\n";
	static const char longl[] = "* OK [ALERT] 0123456789012345678901234567890123456789\r\n"
				    "* 1 FETCH (X 012345678901234567890123456789012345678901)\r\n";

	check_splits(u, bad, sizeof(bad) - 1, 0);
	check_splits(u, longl, sizeof(longl) - 1, 60);
}

/* ---- errors --------------------------------------------------------------- */

struct badcase {
	const char *in;
	size_t len; /* 0: strlen */
	const char *why;
	uint64_t pos;
	size_t arena_max;
};

static void test_bad_inputs(struct unit_ctx *u)
{
	static char deep[700];
	static char longline[3000];
	static char manytok[3000];
	const struct badcase cases[] = {
		{"* 1 FETCH (BODY[] {12a}\r\n", 0, "bad literal size", 21, 0},
		{"* 1 FETCH (BODY[] {}\r\n", 0, "bad literal size", 19, 0},
		{"* 1 FETCH (BODY[] {", 0, NULL, 0, 0}, /* incomplete: no error yet */
		{"* 1 FETCH (BODY[] {12\r\n", 0, "bad literal size", 21, 0},
		{"* 1 FETCH (BODY[] {-1}\r\n", 0, "bad literal size", 19, 0},
		{"* 1 FETCH (BODY[] {5}x\r\n", 0, "garbage after literal size", 21, 0},
		{"* 1 FETCH (BODY[] {5} \r\n", 0, "garbage after literal size", 21, 0},
		{"* 1 FETCH (BODY[] {99999999999999999999}\r\n", 0, "literal size too large", 18,
		 0},
		{"* 1 FETCH (BODY[] {9223372036854775809}\r\n", 0, "literal size too large", 18, 0},
		{"* 1 FETCH (UID 1))\r\n", 0, "unbalanced ')'", 17, 0},
		{"* 1 FETCH (UID 1\r\n", 0, "unterminated list", 16, 0},
		{"* 1 FETCH (UID 1\n", 0, "unterminated list", 16, 0},
		{" OK foo\r\n", 0, "missing tag", 0, 0},
		{"(x OK foo\r\n", 0, "missing tag", 0, 0},
		{"A1OK\r\n", 0, "missing SP after tag", 4, 0},
		{"A1\r\n", 0, "missing SP after tag", 2, 0},
		{"A1 FOO bar\r\n", 0, "bad status in tagged response", 3, 0},
		{"*3 EXISTS\r\n", 0, "missing SP after '*'", 1, 0},
		{"+x\r\n", 0, "missing SP after '+'", 1, 0},
		{"\r\n", 0, "empty line", 0, 0},
		{"* \r\n", 0, "empty response", 2, 0},
		{"* 3 EX\0ISTS\r\n", 13, "NUL byte", 6, 0},
		{"A1 OK te\0xt\r\n", 13, "NUL byte", 8, 0},
		{"+ \0\r\n", 5, "NUL byte", 2, 0},
		{"* X \"a\0\"\r\n", 10, "NUL byte", 6, 0},
		{"* X \"abc\r\n", 0, "unterminated quoted string", 4, 0},
		{"* X \"abc\\\r\n", 0, "unterminated quoted string", 4, 0},
		{"* 1 FETCH (BODY[HEAD\0ER]\r\n", 26, "NUL byte", 20, 0},
		{"* 1 FETCH (BODY[HEAD\x01ER]\r\n", 0, "unexpected character", 20, 0},
		{"* X \x01\r\n", 0, "unexpected character", 4, 0},
		{"* X a\rb\r\n", 0, "unexpected character", 5, 0},
		{"* OK [X (]\r\n", 0, "unexpected ']'", 9, 0},
		{"* OK [UIDNEXT 5 text\r\n", 0, "unterminated response code", 20, 0},
		{"* OK [(x)] text\r\n", 0, "bad response code", 6, 0},
		{"A1 OK [PERMANENTFLAGS (\\Seen] x\r\n", 0, "unexpected ']'", 28, 0},
		{"* 1 FETCH (BODY[] {3}\r\nabc x\r\n", 0, "unterminated list", 28, 0},
		{"* 1 FETCH (BODY[] {3}\r\nabc\0)\r\n", 30, "NUL byte", 26, 0},
		{"* 2 EXISTS\r\n* X {3}\r\nabc\r\n\r\n", 0, "empty line", 26, 0},
		{"* X {0}\r\n a)\r\n", 0, "unbalanced ')'", 11, 0},
		{"* X {0}\r\n~{0}\r\n a)\r\n", 0, "unbalanced ')'", 17, 0},
		{deep, 0, "lists nested too deeply", 260, 0},
		{longline, 0, "line too long", 1024, 1024},
		{manytok, 0, "response too large", 0 /* computed below */, 1024},
		{"* X {100}\r\n", 0, "response too large", 4, 128},
	};

	/* 300 nested lists */
	memcpy(deep, "* X ", 4);
	memset(deep + 4, '(', 300);
	memcpy(deep + 304, "\r\n", 3);
	memcpy(longline, "* OK ", 5);
	memset(longline + 5, 'x', 2000);
	memcpy(longline + 2005, "\r\n", 3);
	/* 300 atoms "a " fit the line limit but not the arena (node each) */
	memcpy(manytok, "* X", 3);
	for (int k = 0; k < 300; k++)
		memcpy(manytok + 3 + 2 * k, " a", 2);
	memcpy(manytok + 603, "\r\n", 3);

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const struct badcase *b = &cases[c];
		size_t n = b->len ? b->len : strlen(b->in);

		for (int split = 0; split < 2; split++) {
			struct h h;
			ssize_t r = 0;
			size_t i = 0;
			int nr;

			h_init(&h, LM_INLINE, 0, b->arena_max);
			if (!split) {
				r = imap_parse_feed(&h.p, (const uint8_t *)b->in, n);
				i = n;
			} else {
				for (i = 0; i < n && r >= 0; i++)
					r = imap_parse_feed(&h.p, (const uint8_t *)b->in + i, 1);
			}
			if (!b->why) {
				UNIT_CHECKF(u, r >= 0, "case %zu: unexpected error %s", c, h.p.err);
			} else {
				UNIT_CHECKF(u, r == IMAP_PARSE_EBAD && h.p.err &&
						       !strcmp(h.p.err, b->why),
					    "case %zu split %d: rc %zd err %s, want %s", c, split, r,
					    h.p.err ? h.p.err : "-", b->why);
				if (b->pos || b->in != manytok)
					UNIT_CHECKF(u, h.p.err_pos == b->pos,
						    "case %zu split %d: pos %llu, want %llu", c, split,
						    (unsigned long long)h.p.err_pos,
						    (unsigned long long)b->pos);
				else
					UNIT_CHECKF(u, h.p.err_pos > 4 && h.p.err_pos < 603,
						    "case %zu: pos %llu", c,
						    (unsigned long long)h.p.err_pos);
				/* sticky until reset */
				r = imap_parse_feed(&h.p, (const uint8_t *)"* 1 EXISTS\r\n", 12);
				UNIT_CHECK(u, r == IMAP_PARSE_EBAD);
				imap_parser_reset(&h.p);
				UNIT_CHECK(u, h.p.err == NULL);
				nr = h.nresp;
				r = imap_parse_feed(&h.p, (const uint8_t *)"* 1 EXISTS\r\n", 12);
				UNIT_CHECKF(u, r == 12 && h.nresp == nr + 1, "case %zu: after reset", c);
			}
			h_free(&h);
		}
	}
}

static void test_literal_limits(struct unit_ctx *u)
{
	static const char in[] = "* 1 FETCH (BODY[] {9223372036854775808}\r\nabc";
	struct h h;
	ssize_t r;

	h_init(&h, LM_STREAM, 0, 0);
	r = imap_parse_feed(&h.p, (const uint8_t *)in, sizeof(in) - 1);
	UNIT_CHECK(u, r == (ssize_t)sizeof(in) - 1);
	UNIT_CHECK(u, imap_parser_literal_left(&h.p) == (UINT64_C(1) << 63) - 3);
	UNIT_CHECK(u, h.lit_bytes == 3);
	imap_parser_reset(&h.p);
	UNIT_CHECK(u, imap_parser_literal_left(&h.p) == 0);
	h_free(&h);
}

/* ---- literals ------------------------------------------------------------- */

/* lit_begin answering INLINE above inline_max, NULL callbacks. */
static void test_inline_vs_stream(struct unit_ctx *u)
{
	static const char in[] = "* 1 FETCH (A {4}\r\nabcd B {5}\r\nefghi C {0}\r\n)\r\n";
	struct imap_parser p;
	struct h h;
	char *d;

	/* INLINE asked, limit 4: the 5-byte literal streams anyway. */
	h_init(&h, LM_INLINE, 4, 0);
	h_run(&h, in, sizeof(in) - 1, NULL, 0);
	UNIT_CHECK(u, strstr(h.out.s, "s{4}\"abcd\" \"B\" #5 \"C\" s\"\")") != NULL);
	UNIT_CHECK(u, strstr(h.out.s, "lit end 5") != NULL);
	h_free(&h);

	/* STREAM asked: everything streams, including the empty one. */
	h_init(&h, LM_STREAM, 4, 0);
	h_run(&h, in, sizeof(in) - 1, NULL, 0);
	UNIT_CHECK(u, strstr(h.out.s, "(\"A\" #4 \"B\" #5 \"C\" #0)") != NULL);
	UNIT_CHECK(u, strstr(h.out.s, "lit end 0 cbf29ce484222325") != NULL);
	h_free(&h);

	/* No lit_begin: small inline, big streamed. */
	d = dump_whole(LM_NULL, in, sizeof(in) - 1, 0, 0, 0);
	UNIT_CHECK(u, strstr(d, "s{4}\"abcd\" \"B\" s{5}\"efghi\"") != NULL); /* limit 16 */
	free(d);

	/* No callbacks at all: streamed bytes are discarded. */
	UNIT_CHECK(u, imap_parser_init(&p, &(struct imap_parser_cb){0}, 2, 0) == 0);
	UNIT_CHECK(u, imap_parse_feed(&p, (const uint8_t *)in, sizeof(in) - 1) ==
			      (ssize_t)sizeof(in) - 1);
	UNIT_CHECK(u, p.pos == sizeof(in) - 1);
	imap_parser_free(&p);
	imap_parser_free(&p); /* twice is harmless */
}

static void test_backpressure(struct unit_ctx *u)
{
	static const char in[] = "* 1 FETCH (BODY[] {10}\r\n0123456789)\r\n* 2 EXISTS\r\n";
	const uint8_t *b = (const uint8_t *)in;
	size_t n = sizeof(in) - 1, hdr = 24, at = 0;
	struct h h;
	ssize_t r;
	int calls = 0;

	h_init(&h, LM_STREAM, 0, 0);
	h.accept = 1;
	r = imap_parse_feed(&h.p, b, n);
	UNIT_CHECK(u, r == (ssize_t)hdr + 1); /* header, then one literal byte */
	UNIT_CHECK(u, imap_parser_literal_left(&h.p) == 9);
	at = (size_t)r;
	while (at < n && calls < 100) {
		r = imap_parse_feed(&h.p, b + at, n - at);
		UNIT_CHECK(u, r > 0);
		if (r <= 0)
			break;
		at += (size_t)r;
		calls++;
	}
	UNIT_CHECK(u, calls == 9); /* 8 single bytes, then the last byte and the rest */
	UNIT_CHECKF(u, h.nresp == 2 && h.lit_bytes == 0 && h.lit_calls == 10, "%d %llu %zu",
		    h.nresp, (unsigned long long)h.lit_bytes, h.lit_calls);
	UNIT_CHECK(u, strstr(h.out.s, "lit end 10 ") != NULL);
	h_free(&h);
}

static ssize_t zero_data(void *ctx, const uint8_t *p, size_t n)
{
	int *k = ctx;

	(void)p;
	return (*k)++ % 2 ? (ssize_t)(n > 2 ? 2 : n) : 0;
}

static void test_backpressure_zero(struct unit_ctx *u)
{
	static const char in[] = "* 1 FETCH (BODY[] {5}\r\nabcde)\r\n";
	struct imap_parser_cb cb = {0};
	struct imap_parser p;
	size_t at = 0, n = sizeof(in) - 1;
	int k = 0, rounds = 0;
	ssize_t r;

	cb.ctx = &k;
	cb.lit_data = zero_data;
	UNIT_CHECK(u, imap_parser_init(&p, &cb, 1, 0) == 0);
	r = imap_parse_feed(&p, (const uint8_t *)in, n);
	UNIT_CHECK(u, r == 23 && p.pos == 23); /* the header only: lit_data took 0 */
	at = (size_t)r;
	while (at < n && rounds++ < 50) {
		r = imap_parse_feed(&p, (const uint8_t *)in + at, n - at);
		UNIT_CHECK(u, r >= 0);
		at += (size_t)(r > 0 ? r : 0);
	}
	UNIT_CHECK(u, at == n && p.pos == n);
	imap_parser_free(&p);
}

/* 50 MB streamed in random chunks: right count and checksum, no memory. */
struct big {
	uint64_t n, hash, base;
	size_t calls, maxmem;
	int ended, resp;
};

static size_t heap_now(void)
{
	if (__sanitizer_get_current_allocated_bytes)
		return __sanitizer_get_current_allocated_bytes();
	return mallinfo2().uordblks;
}

static ssize_t big_data(void *ctx, const uint8_t *p, size_t n)
{
	struct big *b = ctx;

	b->hash = fnv(b->hash, p, n);
	b->n += n;
	if (b->calls++ % 64 == 0) {
		size_t m = heap_now();

		if (m > b->maxmem)
			b->maxmem = m;
	}
	return (ssize_t)n;
}

static int big_begin(void *ctx, const struct imap_resp *r, const struct imap_node *key,
		     uint64_t size)
{
	struct big *b = ctx;

	(void)r;
	(void)key;
	(void)size;
	b->base = heap_now();
	return IMAP_LIT_INLINE; /* too big: streams anyway */
}

static int big_end(void *ctx)
{
	((struct big *)ctx)->ended++;
	return 0;
}

static int big_resp(void *ctx, const struct imap_resp *r)
{
	(void)r;
	((struct big *)ctx)->resp++;
	return 0;
}

static void test_huge_literal(struct unit_ctx *u)
{
	const uint64_t total = 50ULL * 1024 * 1024;
	static uint8_t chunk[256 * 1024];
	struct imap_parser_cb cb = {0};
	struct imap_parser p;
	struct big b = {0};
	char hdr[128];
	uint64_t sent = 0, want = FNV0, rng = 7;
	int hl;

	b.hash = FNV0;
	cb.ctx = &b;
	cb.response = big_resp;
	cb.lit_begin = big_begin;
	cb.lit_data = big_data;
	cb.lit_end = big_end;
	UNIT_CHECK(u, imap_parser_init(&p, &cb, 0, 0) == 0);
	hl = snprintf(hdr, sizeof(hdr), "* 7 FETCH (UID 9 BODY[] {%llu}\r\n",
		      (unsigned long long)total);
	UNIT_CHECK(u, imap_parse_feed(&p, (const uint8_t *)hdr, (size_t)hl) == hl);
	while (sent < total) {
		size_t k;

		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		k = 1 + rng % sizeof(chunk);
		if (k > total - sent)
			k = (size_t)(total - sent);
		for (size_t i = 0; i < k; i += 8) {
			uint64_t v = (sent + i) * 0x9e3779b97f4a7c15ULL;

			memcpy(chunk + i, &v, k - i < 8 ? k - i : 8);
		}
		want = fnv(want, chunk, k);
		if (imap_parse_feed(&p, chunk, k) != (ssize_t)k)
			break;
		sent += k;
	}
	UNIT_CHECK(u, sent == total);
	UNIT_CHECK(u, imap_parse_feed(&p, (const uint8_t *)")\r\n", 3) == 3);
	UNIT_CHECK(u, b.n == total && b.hash == want && b.ended == 1 && b.resp == 1);
	UNIT_CHECKF(u, b.maxmem < b.base + 1024 * 1024, "heap grew by %zu during the literal",
		    b.maxmem - b.base);
	UNIT_CHECK(u, p.pos == (uint64_t)hl + total + 3);
	imap_parser_free(&p);
}

/* ---- callbacks ------------------------------------------------------------ */

static void test_pause(struct unit_ctx *u)
{
	static const char in[] = "* 1 EXISTS\r\n* 2 EXISTS\r\nA1 OK done\r\n* 3 EX";
	struct h h;
	ssize_t r;

	h_init(&h, LM_INLINE, 0, 0);
	h.pause = 1;
	r = imap_parse_feed(&h.p, (const uint8_t *)in, sizeof(in) - 1);
	UNIT_CHECK(u, r == 12 && h.nresp == 1);
	r = imap_parse_feed(&h.p, (const uint8_t *)in + 12, sizeof(in) - 1 - 12);
	UNIT_CHECK(u, r == 12 && h.nresp == 2);
	r = imap_parse_feed(&h.p, (const uint8_t *)in + 24, sizeof(in) - 1 - 24);
	UNIT_CHECK(u, r == 12 && h.nresp == 3);
	r = imap_parse_feed(&h.p, (const uint8_t *)in + 36, sizeof(in) - 1 - 36);
	UNIT_CHECK(u, r == 6 && h.nresp == 3);
	UNIT_CHECK(u, imap_parse_feed(&h.p, (const uint8_t *)"ISTS\r\n", 6) == 6 && h.nresp == 4);
	h_free(&h);
}

static int abort_resp(struct h *h, const struct imap_resp *r)
{
	(void)r;
	return h->nresp == 2 ? -1 : 0;
}

static int abort_lit(void *ctx, const struct imap_resp *r, const struct imap_node *key,
		     uint64_t size)
{
	(void)ctx;
	(void)r;
	(void)key;
	(void)size;
	return -5;
}

struct resetter {
	struct imap_parser *p;
	int n;
};

static int reset_resp(void *ctx, const struct imap_resp *r)
{
	struct resetter *s = ctx;

	(void)r;
	if (++s->n == 1)
		imap_parser_reset(s->p);
	return 0;
}

static void test_callback_abort(struct unit_ctx *u)
{
	static const char in[] = "* 1 EXISTS\r\n* 2 EXISTS\r\n* 3 EXISTS\r\n";
	static const char lit[] = "* 1 FETCH (BODY[] {3}\r\nabc)\r\n";
	struct imap_parser_cb cb = {0};
	struct resetter rs = {0};
	struct imap_parser p;
	struct h h;

	/* response < 0: feed returns it; the response is consumed, parsing can go on */
	h_init(&h, LM_INLINE, 0, 0);
	h.check = abort_resp;
	UNIT_CHECK(u, imap_parse_feed(&h.p, (const uint8_t *)in, sizeof(in) - 1) == -99);
	UNIT_CHECK(u, h.p.pos == 24 && h.nresp == 2);
	UNIT_CHECK(u, imap_parse_feed(&h.p, (const uint8_t *)in + 24, 12) == 12 && h.nresp == 3);
	h_free(&h);

	/* lit_begin < 0: returned, then the parser needs a reset */
	h_init(&h, LM_INLINE, 0, 0);
	h.p.cb.lit_begin = abort_lit;
	UNIT_CHECK(u, imap_parse_feed(&h.p, (const uint8_t *)lit, sizeof(lit) - 1) == -5);
	UNIT_CHECK(u, imap_parse_feed(&h.p, (const uint8_t *)lit, sizeof(lit) - 1) ==
			      IMAP_PARSE_EBAD);
	imap_parser_reset(&h.p);
	h.p.cb.lit_begin = h_lit_begin;
	UNIT_CHECK(u, imap_parse_feed(&h.p, (const uint8_t *)lit, sizeof(lit) - 1) ==
			      (ssize_t)sizeof(lit) - 1);
	UNIT_CHECK(u, h.nresp == 1);
	h_free(&h);

	/* reset from inside response(): feed stops right there */
	cb.ctx = &rs;
	cb.response = reset_resp;
	UNIT_CHECK(u, imap_parser_init(&p, &cb, 0, 0) == 0);
	rs.p = &p;
	UNIT_CHECK(u, imap_parse_feed(&p, (const uint8_t *)in, sizeof(in) - 1) == 12);
	UNIT_CHECK(u, imap_parse_feed(&p, (const uint8_t *)in + 12, sizeof(in) - 13) ==
			      (ssize_t)sizeof(in) - 13);
	UNIT_CHECK(u, rs.n == 3);
	imap_parser_free(&p);
}

/* ---- grammar corners -------------------------------------------------------- */

static void check_one(struct unit_ctx *u, const char *in, const char *want)
{
	char *d = dump_whole(LM_INLINE, in, strlen(in), 0, 0, 0);
	char *nl = strstr(d, "\nEND");

	if (nl)
		nl[1] = '\0';
	UNIT_CHECKF(u, !strcmp(d, want), "%s\n--- got\n%s--- want\n%s", in, d, want);
	free(d);
}

static void test_grammar(struct unit_ctx *u)
{
	check_one(u, "a1 ok [read-write] Select completed (0.001 + 0.000 secs).\r\n",
		  "T tag=\"a1\" OK [\"read-write\"] text=\"Select completed (0.001 + 0.000 secs).\"\n");
	check_one(u, "* oK\r\n", "U OK text=\"\"\n");
	check_one(u, "* BYE\n", "U BYE text=\"\"\n");
	check_one(u, "* OK [ALERT]\r\n", "U OK [\"ALERT\"] text=\"\"\n");
	check_one(u, "* OK [ALERT]x\r\n", "U OK [\"ALERT\"] text=\"x\"\n");
	check_one(u, "* OK[ALERT] x\r\n", "U OK [\"ALERT\"] text=\"x\"\n");
	check_one(u, "* OK [] x\r\n", "U OK text=\"x\"\n");
	check_one(u, "* OK  [ALERT] x\r\n", "U OK text=\" [ALERT] x\"\n");
	check_one(u, "* OKAY 1\r\n", "U - \"OKAY\" \"1\"\n");
	check_one(u, "* OK [REFERRAL imap://[::1]/] x\r\n",
		  "U OK [\"REFERRAL\" \"imap://[::1]/\"] text=\"x\"\n");
	check_one(u, "* OK [NIL NIL] x\r\n", "U OK [\"NIL\" NIL] text=\"x\"\n");
	check_one(u, "* 1 FETCH (BODY[HEADER.FIELDS (DATE FROM)]<0.100> nil)\r\n",
		  "U - \"1\" \"FETCH\" (\"BODY[HEADER.FIELDS (DATE FROM)]<0.100>\" NIL)\n");
	check_one(u, "* LIST (\\Noselect) \"/\" ~/Mail/%\r\n",
		  "U - \"LIST\" (\"\\x5cNoselect\") s\"/\" \"~/Mail/%\"\n");
	check_one(u, "* X \"a\\b\\\\c\\\"\"\r\n", "U - \"X\" s\"a\\x5cb\\x5cc\\x22\"\n");
	check_one(u, "* X \"\xff\xfe\" \xe4\xbd\xa0\r\n",
		  "U - \"X\" s\"\\xff\\xfe\" \"\\xe4\\xbd\\xa0\"\n");
	check_one(u, "* X  ( ( ) )\"q\"(a)\r\n", "U - \"X\" (()) s\"q\" (\"a\")\n");
	check_one(u, "* X {3+}\r\nabc\r\n", "  lit 3 key=\"X\" so far: U - \"X\"\nU - \"X\" s{3}\"abc\"\n");
	check_one(u, "* X ({2}\r\nab)\n", "  lit 2 key=- so far: U - \"X\" ()\nU - \"X\" (s{2}\"ab\")\n");
	check_one(u, "* X ~{1}\r\n\xff ~a\r\n",
		  "  lit 1 key=\"X\" so far: U - \"X\"\nU - \"X\" s{~1}\"\\xff\" \"~a\"\n");
	check_one(u, "* OK [BADCHARSET ({5}\r\nUTF-8)] x\r\n",
		  "  lit 5 key=- so far: U OK [\"BADCHARSET\" ()] text=\"\"\n"
		  "U OK [\"BADCHARSET\" (s{5}\"UTF-8\")] text=\"x\"\n");
	check_one(u, "+ YGgGCSqGSIb3EgECAgIAb1kwV6ADAgEFoQMCAQ+iSzBJoAMCAQGiQgRA\r\n",
		  "C - text=\"YGgGCSqGSIb3EgECAgIAb1kwV6ADAgEFoQMCAQ+iSzBJoAMCAQGiQgRA\"\n");
	check_one(u, "+ [ALERT] (x\r\n", "C - text=\"[ALERT] (x\"\n");
	check_one(u, "A1 OK te\rxt\r\r\n", "T tag=\"A1\" OK text=\"te\\x0dxt\\x0d\"\n");
	check_one(u, "tag.with]odd OK x\r\n", "T tag=\"tag.with]odd\" OK text=\"x\"\n");
	/* Dovecot sends mailbox names made of ASTRING-CHARs bare */
	check_one(u, "* LIST () \"/\" a]b\r\n", "U - \"LIST\" () s\"/\" \"a]b\"\n");
	check_one(u, "* LIST () \"/\" ]\r\n", "U - \"LIST\" () s\"/\" \"]\"\n");
	check_one(u, "* LIST () \"/\" x[y\r\n", "U - \"LIST\" () s\"/\" \"x[y\"\n");
	check_one(u, "* LIST () \"/\" x[y (z\r\n", "ERR -74 unterminated list @20\n");
	check_one(u, "* LIST () \"/\" [Archive]/2024\r\n",
		  "U - \"LIST\" () s\"/\" \"[Archive]/2024\"\n");
	check_one(u, "* 1 FETCH (BODY[HEADER {5}\r\nabcde)\r\n",
		  "  lit 5 key=\"BODY[HEADER\" so far: U - \"1\" \"FETCH\" (\"BODY[HEADER\")\n"
		  "U - \"1\" \"FETCH\" (\"BODY[HEADER\" s{5}\"abcde\")\n");
}

static void test_helpers(struct unit_ctx *u)
{
	struct imap_node n = {0}, l = {0}, c1 = {0}, c2 = {0};
	uint32_t v32 = 77;
	uint64_t v64 = 77;

	n.type = IMAP_NODE_ATOM;
#define SETN(x) (n.s = (x), n.len = strlen(x))
	SETN("4294967295");
	UNIT_CHECK(u, imap_node_u32(&n, &v32) == 0 && v32 == 4294967295u);
	SETN("4294967296");
	UNIT_CHECK(u, imap_node_u32(&n, &v32) == -1 && v32 == 4294967295u);
	UNIT_CHECK(u, imap_node_u64(&n, &v64) == 0 && v64 == 4294967296ull);
	SETN("18446744073709551615");
	UNIT_CHECK(u, imap_node_u64(&n, &v64) == 0 && v64 == UINT64_MAX);
	SETN("18446744073709551616");
	UNIT_CHECK(u, imap_node_u64(&n, &v64) == -1);
	SETN("99999999999999999999999");
	UNIT_CHECK(u, imap_node_u64(&n, &v64) == -1);
	SETN("007");
	UNIT_CHECK(u, imap_node_u32(&n, &v32) == 0 && v32 == 7);
	SETN("");
	UNIT_CHECK(u, imap_node_u32(&n, &v32) == -1);
	SETN("-1");
	UNIT_CHECK(u, imap_node_u32(&n, &v32) == -1);
	SETN("+1");
	UNIT_CHECK(u, imap_node_u32(&n, &v32) == -1);
	SETN("12a");
	UNIT_CHECK(u, imap_node_u32(&n, &v32) == -1);
	SETN(" 1");
	UNIT_CHECK(u, imap_node_u64(&n, &v64) == -1);
	UNIT_CHECK(u, imap_node_u32(NULL, &v32) == -1);
	n.type = IMAP_NODE_STRING;
	SETN("12");
	UNIT_CHECK(u, imap_node_u32(&n, &v32) == -1);
	UNIT_CHECK(u, !imap_node_is(&n, "12"));
	n.type = IMAP_NODE_ATOM;
	SETN("BODY[]");
	UNIT_CHECK(u, imap_node_is(&n, "body[]") && imap_node_is(&n, "BODY[]"));
	UNIT_CHECK(u, !imap_node_is(&n, "BODY") && !imap_node_is(&n, "BODY[]x"));
	UNIT_CHECK(u, !imap_node_is(NULL, "BODY[]"));
	n.s = "A\0B";
	n.len = 3;
	UNIT_CHECK(u, !imap_node_is(&n, "A"));
#undef SETN
	l.type = IMAP_NODE_LIST;
	UNIT_CHECK(u, imap_node_count(&l) == 0);
	l.child = &c1;
	c1.next = &c2;
	UNIT_CHECK(u, imap_node_count(&l) == 2);
	UNIT_CHECK(u, imap_node_count(&c1) == 0 && imap_node_count(NULL) == 0);
}

/* ---- memory ------------------------------------------------------------------ */

static volatile size_t mallocs;
static volatile int counting;

static void count_malloc(const volatile void *ptr, size_t size)
{
	(void)ptr;
	(void)size;
	if (counting)
		mallocs++;
}

static void count_free(const volatile void *ptr)
{
	(void)ptr;
}

static void test_arena_reuse(struct unit_ctx *u)
{
	struct imap_parser_cb cb = {0};
	struct imap_parser p;
	char buf[4096];
	size_t n = 0, before = 0;
	int hooks = 0;

	/* each response: ~300 nodes, a 900-byte inline literal and a long
	 * text, so the arena outgrows its first chunk now and then */
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "* 1 FETCH (");
	for (int k = 0; k < 300; k++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "A%d ", k);
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "BODY[] {900}\r\n");
	memset(buf + n, 'm', 900);
	n += 900;
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, ")\r\n* OK [ALERT] ");
	memset(buf + n, 't', 1000);
	n += 1000;
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");

	/* arena_max 32 KiB: had the arena not been rewound, this fails */
	UNIT_CHECK(u, imap_parser_init(&p, &cb, 1024, 32 * 1024) == 0);
	/* warm up with every split, so the line buffer has grown too */
	for (size_t at = 0; at < n; at++)
		if (imap_parse_feed(&p, (const uint8_t *)buf, at) != (ssize_t)at ||
		    imap_parse_feed(&p, (const uint8_t *)buf + at, n - at) != (ssize_t)(n - at))
			UNIT_CHECK(u, !"warm-up failed");
	if (__sanitizer_install_malloc_and_free_hooks)
		hooks = __sanitizer_install_malloc_and_free_hooks(count_malloc, count_free);
	else
		before = mallinfo2().arena;
	counting = 1;
	for (int k = 0; k < 10000; k++) {
		size_t at = (size_t)k % n; /* split mid-response too */

		if (imap_parse_feed(&p, (const uint8_t *)buf, at) != (ssize_t)at ||
		    imap_parse_feed(&p, (const uint8_t *)buf + at, n - at) != (ssize_t)(n - at)) {
			UNIT_CHECK(u, !"feed failed");
			break;
		}
	}
	counting = 0;
	if (hooks)
		UNIT_CHECKF(u, mallocs == 0, "%zu mallocs in 10k responses", (size_t)mallocs);
	else
		UNIT_CHECK(u, mallinfo2().arena == before);
	UNIT_CHECK(u, p.err == NULL);
	imap_parser_free(&p);
}

/* ---- a callback freeing its own parser (issue 15 defect 4) ----------------- */

struct self_free {
	struct imap_parser p;
	int when; /* 0: in response, 1: in lit_begin, 2: in lit_data, 3: in lit_end */
	int calls;
};

static int sf_response(void *ctx, const struct imap_resp *r)
{
	struct self_free *f = ctx;

	(void)r;
	f->calls++;
	if (f->when == 0)
		imap_parser_free(&f->p);
	return f->when == 0 ? -125 : 0; /* what a closed imap_client answers */
}

static int sf_lit_begin(void *ctx, const struct imap_resp *r, const struct imap_node *key,
                        uint64_t size)
{
	struct self_free *f = ctx;

	(void)r;
	(void)key;
	(void)size;
	if (f->when == 1)
		imap_parser_free(&f->p);
	return f->when == 1 ? -125 : IMAP_LIT_STREAM;
}

static ssize_t sf_lit_data(void *ctx, const uint8_t *p, size_t n)
{
	struct self_free *f = ctx;

	(void)p;
	if (f->when == 2) {
		imap_parser_free(&f->p);
		return -125;
	}
	return (ssize_t)n;
}

static int sf_lit_end(void *ctx)
{
	struct self_free *f = ctx;

	if (f->when == 3)
		imap_parser_free(&f->p);
	return 0;
}

static void test_free_in_callback(struct unit_ctx *u)
{
	static const char in[] = "* 1 FETCH (BODY[] {4}\r\nabcd)\r\n* 2 EXISTS\r\n"
	                         "A1 OK done\r\n";
	const struct imap_parser_cb cb = {NULL, sf_response, sf_lit_begin, sf_lit_data, sf_lit_end};

	for (int when = 0; when < 4; when++) {
		struct self_free f = {.when = when};
		struct imap_parser_cb c = cb;
		ssize_t r;

		c.ctx = &f;
		UNIT_CHECK(u, imap_parser_init(&f.p, &c, 0, 0) == 0);
		/* ASan reports a use after free here if feed touches the parser's
		 * memory after the callback freed it. */
		r = imap_parse_feed(&f.p, (const uint8_t *)in, sizeof(in) - 1);
		UNIT_CHECKF(u, r >= 0 && r < (ssize_t)sizeof(in) - 1, "when %d: %zd", when, r);
		UNIT_CHECK(u, f.p.priv == NULL);
		UNIT_CHECKF(u, f.calls <= 1, "when %d: %d responses after the free", when, f.calls);
		imap_parser_free(&f.p); /* again: harmless */
	}
}

/* ---- line cap and the shared budget (issue 15 defect 9) -------------------- */

static void test_line_cap_budget(struct unit_ctx *u)
{
	size_t big = (size_t)1100 * 1024, used = 0;
	uint8_t *buf = malloc(big + 16);
	struct imap_parser a, b;
	struct h h;
	ssize_t r;

	UNIT_CHECK(u, buf != NULL);
	if (!buf)
		return;
	/* A line without a literal: at most line_max (1 MiB), however fed. */
	memset(buf, 'x', big);
	memcpy(buf, "* OK ", 5);
	h_init(&h, LM_INLINE, 0, 0);
	r = 0;
	for (size_t at = 0; at < big && r >= 0; at += 4096)
		r = imap_parse_feed(&h.p, buf + at, big - at < 4096 ? big - at : 4096);
	UNIT_CHECKF(u, r == IMAP_PARSE_EBAD && h.p.err && !strcmp(h.p.err, "line too long"),
	            "%zd %s", r, h.p.err ? h.p.err : "");
	h_free(&h);
	/* A SEARCH line of 1.1 MB is legitimate (a big mailbox, no ESEARCH). */
	h_init(&h, LM_INLINE, 0, 0);
	memcpy(buf, "* SEARCH", 8);
	for (size_t i = 8; i + 8 <= big; i += 8)
		memcpy(buf + i, " 1234567", 8);
	memcpy(buf + big, "\r\n", 2);
	r = 0;
	for (size_t at = 0; at < big + 2 && r >= 0; at += 4096)
		r = imap_parse_feed(&h.p, buf + at, big + 2 - at < 4096 ? big + 2 - at : 4096);
	UNIT_CHECKF(u, r >= 0 && h.nresp == 1, "%zd %s", r, h.p.err ? h.p.err : "");
	h_free(&h);

	/* Two parsers sharing a 1.5 MiB budget, each holding 800 KiB of a
	 * partial line: the second is refused; freeing gives it all back. */
	UNIT_CHECK(u, imap_parser_init(&a, &(struct imap_parser_cb){0}, 0, 0) == 0);
	UNIT_CHECK(u, imap_parser_init(&b, &(struct imap_parser_cb){0}, 0, 0) == 0);
	imap_parser_budget(&a, &used, (size_t)1536 * 1024);
	imap_parser_budget(&b, &used, (size_t)1536 * 1024);
	memset(buf, 'x', 800 * 1024);
	memcpy(buf, "* OK ", 5);
	UNIT_CHECK(u, imap_parse_feed(&a, buf, 800 * 1024) == 800 * 1024);
	UNIT_CHECK(u, used >= 800 * 1024);
	r = imap_parse_feed(&b, buf, 800 * 1024);
	UNIT_CHECKF(u, r == IMAP_PARSE_EBAD && b.err && strstr(b.err, "budget"), "%zd %s", r,
	            b.err ? b.err : "");
	imap_parser_free(&a);
	imap_parser_free(&b);
	UNIT_CHECKF(u, used == 0, "%zu bytes still charged", used);
	free(buf);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, test_session_golden);
	UNIT_RUN(&u, test_session_semantics);
	UNIT_RUN(&u, test_session_splits);
	UNIT_RUN(&u, test_bad_splits);
	UNIT_RUN(&u, test_bad_inputs);
	UNIT_RUN(&u, test_literal_limits);
	UNIT_RUN(&u, test_inline_vs_stream);
	UNIT_RUN(&u, test_backpressure);
	UNIT_RUN(&u, test_backpressure_zero);
	UNIT_RUN(&u, test_huge_literal);
	UNIT_RUN(&u, test_pause);
	UNIT_RUN(&u, test_callback_abort);
	UNIT_RUN(&u, test_grammar);
	UNIT_RUN(&u, test_helpers);
	UNIT_RUN(&u, test_arena_reuse);
	UNIT_RUN(&u, test_free_in_callback);
	UNIT_RUN(&u, test_line_cap_budget);
	return unit_done(&u);
}
