/*
 * smtp_client — one SMTP/LMTP connection delivering streamed messages
 * (see smtp_client.h).
 *
 * Replies come back in the order of the commands (RFC 2920 §3.1), so what
 * each one answers is kept in a ring of expected kinds: a transaction
 * pushes RSET, MAIL, RCPT... and DATA or its BDAT chunks as they are
 * written, and every reply pops one (LMTP's end of data pops after one
 * reply per accepted recipient). A reply nobody asked for is a protocol
 * error, which bounds what a server can make us read.
 *
 * Not for: the session's set-up, greeting to AUTH (smtp_login.c).
 */
#include "protocols/smtp_client_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "protocols/sasl_plain.h"
#include "protocols/throttle.h"

/* What a reply in flight answers. */
enum { EXP_RSET = 1, EXP_MAIL, EXP_RCPT, EXP_DATA, EXP_BDAT, EXP_END };


/* ---- small helpers ------------------------------------------------------ */

static void client_shutdown(struct smtp_client *c)
{
	if (c->closed)
		return;
	c->closed = 1;
	if (c->conn_open) {
		c->wire_in = conn_bytes_in(&c->conn);
		c->wire_out = conn_bytes_out(&c->conn);
		c->conn_open = 0;
		conn_close(&c->conn);
	}
}

void smtp_client_wire(const struct smtp_client *c, uint64_t *in, uint64_t *out)
{
	*in = c->conn_open ? conn_bytes_in(&c->conn) : c->wire_in;
	*out = c->conn_open ? conn_bytes_out(&c->conn) : c->wire_out;
}

const char *smtp_client_who(const struct smtp_client *c)
{
	return c->who;
}

static void redact_one(char *msg, const char *secret)
{
	size_t n = strlen(secret);
	char *hit;

	if (n < 3) /* too short to tell from ordinary text */
		return;
	while ((hit = strstr(msg, secret))) {
		memcpy(hit, "***", 3);
		memmove(hit + 3, hit + n, strlen(hit + n) + 1);
	}
}

/* A server may echo what we sent: no error line carries the password or
 * what encodes it (the PLAIN response, LOGIN's base64 password). */
static void redact(const struct smtp_client *c, char *msg)
{
	char enc[SASL_PLAIN_B64_MAX];

	if (!c->ep->password || !c->ep->user)
		return;
	redact_one(msg, c->ep->password);
	if (smc_sasl_plain(c, enc, sizeof(enc)))
		redact_one(msg, enc);
	if (smc_b64(c->ep->password, strlen(c->ep->password), enc, sizeof(enc)))
		redact_one(msg, enc);
	OPENSSL_cleanse(enc, sizeof(enc));
}

void smc_fail(struct smtp_client *c, int code, const char *fmt, ...)
{
	struct mf_error e;
	char raw[MF_ERR_MAX];
	va_list ap;
	int n;

	if (c->closed)
		return;
	n = snprintf(raw, sizeof(raw), "%s: ", c->who);
	if (n < 0 || (size_t)n >= sizeof(raw))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(raw + n, sizeof(raw) - (size_t)n, fmt, ap);
	va_end(ap);
	redact(c, raw);
	/* server text inside: escaped like every mf_error (err.h) */
	mf_escape(raw, strlen(raw), e.msg, sizeof(e.msg));
	OPENSSL_cleanse(raw, sizeof(raw));
	e.code = code;
	client_shutdown(c);
	c->cb->error(c, &e);
}

/* "550 5.1.1 text" of the parser's current reply. */
const char *smc_reply_str(struct smtp_client *c, char *buf, size_t cap)
{
	smtp_reply_format(&c->parser.reply, buf, cap);
	return buf;
}

/* MAILFERRY_TRACE=1: the protocol on stderr; message bytes and AUTH left
 * out. */
void smc_trace(const struct smtp_client *c, const char *dir, const void *p, size_t n)
{
	const char *s = p;

	if (!c->trace || !n)
		return;
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		n--;
	if (n > 200 && c->trace < 2)
		n = 200;
	fprintf(stderr, "trace %s %s ", c->who, dir);
	for (size_t i = 0; i < n; i++)
		fputc(s[i] == '\r'                                  ? '~'
		      : (s[i] == '\n' || (unsigned char)s[i] >= 32) ? s[i]
		                                                    : '.',
		      stderr);
	fputc('\n', stderr);
}

static void out(struct smtp_client *c, const void *p, size_t n)
{
	if (c->closed)
		return;
	if (conn_write(&c->conn, p, n) < 0)
		smc_fail(c, -ENOMEM, "out of memory for output");
}

/* One command line (traced unless it carries credentials). */
void smc_cmd(struct smtp_client *c, int secret, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf) - 2) {
		smc_fail(c, -EINVAL, "internal: command too long");
		return;
	}
	if (!secret)
		smc_trace(c, ">>", buf, (size_t)n);
	memcpy(buf + n, "\r\n", 2);
	out(c, buf, (size_t)n + 2);
	OPENSSL_cleanse(buf, sizeof(buf));
}

/* ---- the transaction ---------------------------------------------------- */

static struct smtp_txn *tx_oldest(struct smtp_client *c)
{
	return c->tx_count ? &c->tx[c->tx_first] : NULL;
}

/* The transaction being written: the newest. */
static struct smtp_txn *tx_newest(struct smtp_client *c)
{
	return c->tx_count ? &c->tx[(c->tx_first + c->tx_count - 1) % SMTP_TXN_MAX] : NULL;
}

static const struct smtp_txn *tx_newest_c(const struct smtp_client *c)
{
	return c->tx_count ? &c->tx[(c->tx_first + c->tx_count - 1) % SMTP_TXN_MAX] : NULL;
}

static unsigned tx_index(const struct smtp_client *c, const struct smtp_txn *t)
{
	return (unsigned)(t - c->tx);
}

static void exp_push(struct smtp_client *c, struct smtp_txn *t, int kind)
{
	c->exp[(c->exp_head + c->exp_len) % SMTP_EXP_MAX] =
	    (unsigned char)(kind | (int)(tx_index(c, t) << 4));
	c->exp_len++;
	t->nexp++;
	conn_set_busy(&c->conn, 1);
}

static int exp_front(const struct smtp_client *c)
{
	return c->exp_len ? c->exp[c->exp_head] & 0x0f : 0;
}

/* The transaction the front reply answers. */
static struct smtp_txn *exp_front_tx(struct smtp_client *c)
{
	return c->exp_len ? &c->tx[(c->exp[c->exp_head] >> 4) % SMTP_TXN_MAX] : NULL;
}

static void exp_pop(struct smtp_client *c)
{
	struct smtp_txn *t = exp_front_tx(c);

	if (t && t->nexp)
		t->nexp--;
	c->exp_head = (c->exp_head + 1) % SMTP_EXP_MAX;
	c->exp_len--;
	conn_set_busy(&c->conn, c->exp_len > 0);
}

/* Asks for cb->writable from the loop, never inside the caller's call: the
 * conn's drain callback fires once output is below half (at once if it is). */
static void writable_later(struct smtp_client *c)
{
	if (c->want_writable && !c->closed)
		conn_want_drain(&c->conn);
}

/* The newest transaction's phase lets data go (space may still be short). */
static int phase_open(struct smtp_client *c);

static void writable_notify(struct smtp_client *c)
{
	struct smtp_txn *t = tx_newest(c);

	if (!c->want_writable || c->closed)
		return;
	if (t && !t->failed && !t->ended && smtp_write_space(c) == 0) {
		/* conn full: wait for its drain; waiting for a reply: the
		 * reply calls writable_later */
		if (phase_open(c))
			conn_want_drain(&c->conn);
		return;
	}
	c->want_writable = 0;
	if (c->cb->writable)
		c->cb->writable(c);
}

static void status_set(struct smtp_status *s, enum smtp_step step, const struct smtp_reply *r)
{
	s->step = step;
	s->code = r->code;
	s->ecls = r->ecls;
	s->esub = r->esub;
	s->edet = r->edet;
	snprintf(s->text, sizeof(s->text), "%.*s%s", (int)r->text_len, r->text,
	         r->truncated ? "..." : "");
}

/* The transaction cannot succeed any more: every recipient not yet failed
 * gets this reply. */
static void msg_fail(struct smtp_client *c, struct smtp_txn *t, enum smtp_step step,
                     const struct smtp_reply *r)
{
	for (size_t i = 0; i < t->nrcpt; i++)
		if (t->rcpt_ok[i] || step == SMTP_STEP_MAIL)
			status_set(&t->st[i], step, r);
	t->failed = 1;
	writable_later(c);
}

/* The next command of the transaction: RSET?, MAIL, RCPT..., DATA. */
static void write_cmd(struct smtp_client *c, struct smtp_txn *t, size_t k)
{
	size_t base = t->has_rset ? 1 : 0;

	if (k < base) {
		smc_cmd(c, 0, "RSET");
		exp_push(c, t, EXP_RSET);
	} else if (k == base) {
		char params[128];
		int n = 0;

		params[0] = '\0';
		if (c->caps & SMTP_CAP_SIZE)
			n += snprintf(params + n, sizeof(params) - (size_t)n, " SIZE=%llu",
			              (unsigned long long)t->size);
		if ((t->mflags & SMTP_MSG_8BIT) && (c->caps & SMTP_CAP_8BITMIME))
			n += snprintf(params + n, sizeof(params) - (size_t)n, " BODY=8BITMIME");
		if ((t->mflags & SMTP_MSG_UTF8) && (c->caps & SMTP_CAP_SMTPUTF8))
			snprintf(params + n, sizeof(params) - (size_t)n, " SMTPUTF8");
		smc_cmd(c, 0, "MAIL FROM:<%s>%s", t->from, params);
		exp_push(c, t, EXP_MAIL);
	} else if (k < base + 1 + t->nrcpt) {
		smc_cmd(c, 0, "RCPT TO:<%s>", t->rcpt_addr[k - base - 1]);
		exp_push(c, t, EXP_RCPT);
	} else {
		smc_cmd(c, 0, "DATA");
		exp_push(c, t, EXP_DATA);
	}
}

/* The newer transaction's commands wait until the older one's end is on
 * the wire: before it they would be message content (DATA) or part of
 * the older transaction. An older one that failed before its end is
 * waited for whole (its DATA may still get a 354). */
static int tx_blocked(struct smtp_client *c, const struct smtp_txn *t)
{
	struct smtp_txn *o = tx_oldest(c);

	return o && o != t && !o->last_sent;
}

/* Commands may go now: all of them with PIPELINING (DATA last, RFC 2920
 * §3.1), else one per reply. */
static void write_cmds(struct smtp_client *c)
{
	for (unsigned i = 0; i < c->tx_count && !c->closed; i++) {
		struct smtp_txn *t = &c->tx[(c->tx_first + i) % SMTP_TXN_MAX];

		if (tx_blocked(c, t))
			return;
		/* without PIPELINING, nothing more once the transaction is lost */
		if (t->failed) {
			t->cmd_next = t->ncmd;
			continue;
		}
		while (!c->closed && t->cmd_next < t->ncmd && (c->pipelining || c->exp_len == 0))
			write_cmd(c, t, t->cmd_next++);
	}
}

/* BDAT chunks of t may go: its commands are out (and answered, without
 * PIPELINING), and the ring has room. */
static int can_chunk(const struct smtp_client *c, const struct smtp_txn *t, size_t chunks)
{
	return t && t->cmd_next == t->ncmd && (c->pipelining || c->exp_len == 0) &&
	       c->exp_len + chunks <= SMTP_EXP_MAX;
}

static void flush_chunk(struct smtp_client *c, struct smtp_txn *t, int last)
{
	char hdr[64];
	int n = snprintf(hdr, sizeof(hdr), "BDAT %zu%s", c->chunk_len, last ? " LAST" : "");

	smc_trace(c, ">>", hdr, (size_t)n);
	memcpy(hdr + n, "\r\n", 2);
	out(c, hdr, (size_t)n + 2);
	out(c, c->chunk, c->chunk_len); /* RFC 3030 §2: exactly these bytes */
	c->chunk_len = 0;
	exp_push(c, t, last ? EXP_END : EXP_BDAT);
}

static int emit_conn(void *ctx, const char *p, size_t n)
{
	struct smtp_client *c = ctx;

	out(c, p, n);
	return c->closed ? -EPIPE : 0;
}

/* The oldest transaction is answered: its result, copied out so that the
 * slot is free for a smtp_msg_begin inside done(). */
static void msg_finish(struct smtp_client *c)
{
	struct smtp_txn *t = tx_oldest(c);
	struct smtp_result res;
	const struct smtp_status *first_fail = NULL, *last_ok = NULL;
	int temp = 0;
	void *ud = t->msg_ud;

	memset(&res, 0, sizeof(res));
	res.nrcpt = t->nrcpt;
	memcpy(c->res_st, t->st, t->nrcpt * sizeof(t->st[0]));
	res.rcpt = c->res_st;
	for (size_t i = 0; i < t->nrcpt; i++) {
		const struct smtp_status *s = &c->res_st[i];

		if (s->step == SMTP_STEP_END && s->code / 100 == 2) {
			res.delivered++;
			last_ok = s;
			continue;
		}
		if (!s->code || s->code / 100 == 4)
			temp = 1;
		if (!first_fail)
			first_fail = s;
	}
	res.outcome = res.delivered == t->nrcpt ? 2 : temp ? 4 : 5;
	res.decisive = first_fail ? first_fail : last_ok;
	if (res.decisive) {
		size_t k = (size_t)(res.decisive - c->res_st);

		snprintf(c->res_addr, sizeof(c->res_addr), "%s",
		         res.decisive->step == SMTP_STEP_MAIL ? t->from : t->rcpt_addr[k]);
		res.decisive_addr = c->res_addr;
	}
	c->tx_first = (c->tx_first + 1) % SMTP_TXN_MAX;
	c->tx_count--;
	conn_set_busy(&c->conn, c->exp_len > 0);
	c->cb->done(c, &res, ud);
}

/* The newest transaction's end, once it may go. */
static void end_write(struct smtp_client *c, struct smtp_txn *t)
{
	if (!t->ended || t->last_sent || t->failed || tx_blocked(c, t))
		return;
	if (c->chunking && can_chunk(c, t, 1)) {
		flush_chunk(c, t, 1);
		t->last_sent = 1;
	} else if (!c->chunking && t->data_open) {
		/* RFC 5321 §4.1.1.4 */
		if (c->held_lf && dot_stuff_feed(&c->dot, "\r\n", 2, emit_conn, c) < 0)
			return;
		c->held_lf = 0;
		if (dot_stuff_end(&c->dot, emit_conn, c) < 0)
			return;
		smc_trace(c, ">>", ".", 1);
		exp_push(c, t, EXP_END);
		t->last_sent = 1;
	}
}

/* Moves the transactions on after input or a caller's call: commands, the
 * last chunk or the end of DATA, results. */
static void msg_pump(struct smtp_client *c, int from_input)
{
	while (c->tx_count && !c->closed) {
		struct smtp_txn *o;

		write_cmds(c);
		if (c->closed)
			return;
		end_write(c, tx_newest(c));
		if (c->closed)
			return;
		o = tx_oldest(c);
		if (!(o->ended && o->nexp == 0 && (o->last_sent || o->failed) &&
		      o->cmd_next == o->ncmd))
			return;
		if (!from_input) {
			/* never inside the caller's smtp_msg_end */
			c->msg_done_pending = 1;
			conn_want_drain(&c->conn);
			return;
		}
		msg_finish(c); /* then the newer one's commands may go */
	}
}

static const char *step_cmd(enum smtp_step s)
{
	switch (s) {
	case SMTP_STEP_MAIL:
		return "MAIL FROM";
	case SMTP_STEP_RCPT:
		return "RCPT TO";
	case SMTP_STEP_DATA:
		return "DATA";
	case SMTP_STEP_BDAT:
		return "BDAT";
	case SMTP_STEP_END:
		return "end of data";
	default:
		return "not sent";
	}
}

void smtp_status_describe(const struct smtp_status *s, const char *addr, char *out, size_t cap)
{
	char ec[32] = "", raw[2 * SMTP_STATUS_TEXT + SMTP_ADDR_MAX];

	if (s->ecls)
		snprintf(ec, sizeof(ec), "%u.%u.%u ", s->ecls, s->esub, s->edet);
	if (!s->code)
		snprintf(raw, sizeof(raw), "%s%s%s%s: no reply", step_cmd(s->step),
		         addr ? " <" : "", addr ? addr : "", addr ? ">" : "");
	else
		snprintf(raw, sizeof(raw), "%s%s%s%s: %d %s%s", step_cmd(s->step), addr ? " <" : "",
		         addr ? addr : "", addr ? ">" : "", s->code, ec, s->text);
	mf_escape(raw, strlen(raw), out, cap);
}

/* The end of data's reply(ies) for t. */
static void end_reply(struct smtp_client *c, struct smtp_txn *t, const struct smtp_reply *r)
{
	if (c->ep->lmtp && t->accepted && !t->failed) {
		/* RFC 2033 §4.2: one reply per accepted recipient, in order */
		size_t seen = 0;

		for (size_t i = 0; i < t->nrcpt; i++)
			if (t->rcpt_ok[i] && seen++ == t->end_replies) {
				status_set(&t->st[i], SMTP_STEP_END, r);
				break;
			}
		if (++t->end_replies < t->accepted)
			return;
	} else if (!t->failed) {
		for (size_t i = 0; i < t->nrcpt; i++)
			if (t->rcpt_ok[i])
				status_set(&t->st[i], SMTP_STEP_END, r);
	}
	exp_pop(c);
}

/* A reply inside a transaction: it answers the front of the ring, which
 * names its transaction (the oldest with replies to come). */
static void msg_reply(struct smtp_client *c)
{
	const struct smtp_reply *r = &c->parser.reply;
	struct smtp_txn *t = exp_front_tx(c);
	int ok = smtp_reply_class(r) == 2;
	char buf[600];

	switch (exp_front(c)) {
	case EXP_RSET:
		exp_pop(c);
		if (!ok)
			smc_fail(c, -EPROTO, "RSET refused: %s", smc_reply_str(c, buf, sizeof(buf)));
		break;
	case EXP_MAIL:
		exp_pop(c);
		if (!ok)
			msg_fail(c, t, SMTP_STEP_MAIL, r);
		break;
	case EXP_RCPT: {
		size_t i = t->rcpt_replies++;

		exp_pop(c);
		if (t->failed) /* after a refused MAIL: its reply stays */
			break;
		status_set(&t->st[i], SMTP_STEP_RCPT, r);
		if (ok) {
			t->rcpt_ok[i] = 1;
			t->accepted++;
		}
		if (t->rcpt_replies == t->nrcpt && !t->accepted) {
			t->failed = 1;
			writable_later(c);
		}
		break;
	}
	case EXP_DATA:
		exp_pop(c);
		if (r->code == 354 && t->failed) {
			/* a server that took DATA after refusing everything:
			 * end it empty, whatever it says to that is moot (no
			 * newer transaction wrote anything: tx_blocked) */
			out(c, ".\r\n", 3);
			exp_push(c, t, EXP_END);
			t->last_sent = 1;
		} else if (r->code == 354) {
			t->data_open = 1;
			writable_later(c);
		} else if (!t->failed) {
			msg_fail(c, t, SMTP_STEP_DATA, r);
		}
		break;
	case EXP_BDAT:
		exp_pop(c);
		if (!ok && !t->failed)
			msg_fail(c, t, SMTP_STEP_BDAT, r);
		else if (!c->pipelining)
			writable_later(c);
		break;
	case EXP_END:
		end_reply(c, t, r);
		break;
	default:
		smc_fail(c, -EPROTO, "reply to no command: %s", smc_reply_str(c, buf, sizeof(buf)));
		return;
	}
	/* a reply may open the way for data (the last RCPT's without
	 * PIPELINING, a chunk's, 354) */
	if (c->want_writable) {
		struct smtp_txn *n = tx_newest(c);

		if (phase_open(c) || (n && n->failed))
			writable_later(c);
	}
	msg_pump(c, 1);
}

/* ---- input -------------------------------------------------------------- */

/* A complete reply. Returns 1 to stop reading (STARTTLS). */
static int on_reply(struct smtp_client *c)
{
	const struct smtp_reply *r = &c->parser.reply;
	char buf[600];

	if (c->state == ST_QUIT) {
		client_shutdown(c);
		return 1;
	}
	/* RFC 5321 §3.8: 421 to any command; the session is over. */
	if (r->code == 421) {
		smc_fail(c, THROTTLE_ERR, "server is closing the session: %s",
		            smc_reply_str(c, buf, sizeof(buf)));
		return 1;
	}
	if (c->state != ST_READY)
		return smc_setup_reply(c);
	if (!c->tx_count || !c->exp_len) {
		smc_fail(c, -EPROTO, "reply to no command: %s", smc_reply_str(c, buf, sizeof(buf)));
		return 1;
	}
	msg_reply(c);
	return 0;
}

static size_t on_data(struct conn *conn, const uint8_t *p, size_t n)
{
	struct smtp_client *c = conn->ud;
	size_t off = 0;

	while (off < n && !c->closed) {
		size_t used;
		int ev = smtp_reply_feed(&c->parser, p + off, n - off, &used);

		/* a server may echo credentials: AUTH replies show only their code */
		if (used && c->state == ST_AUTH)
			smc_trace(c, "<<", p + off, used < 3 ? used : 3);
		else if (used)
			smc_trace(c, "<<", p + off, used);
		off += used;
		if (ev == SMTP_REPLY_EBAD) {
			smc_fail(c, -EPROTO, "malformed reply: %s at byte %llu", c->parser.err,
			            (unsigned long long)c->parser.err_pos);
			return n;
		}
		if (ev == SMTP_REPLY_MORE)
			break;
		if (c->state == ST_EHLO && c->parser.reply.lines > 1)
			smc_ehlo_line(c, c->parser.line, c->parser.line_len);
		if (ev == SMTP_REPLY_LINE)
			continue;
		/* During set-up one command is out at a time: input already
		 * here after its reply was sent before our next command even
		 * existed (RFC 5321 §4.3.1), and taken as its reply it would
		 * shift every reply after it by one. */
		if (off < n && (c->state == ST_GREETING || c->state == ST_EHLO ||
		                c->state == ST_HELO || c->state == ST_AUTH)) {
			smc_fail(c, -EPROTO,
			            "unsolicited reply: %zu bytes after the reply to %s", n - off,
			            c->state == ST_GREETING ? "nothing (the greeting)"
			                                    : "our last command");
			return n;
		}
		if (on_reply(c))
			return c->closed ? n : off;
	}
	return c->closed ? n : off;
}

static void on_connected(struct conn *conn)
{
	struct smtp_client *c = conn->ud;

	c->state = ST_GREETING;
	conn_set_busy(conn, 1);
}

static void on_drain(struct conn *conn)
{
	struct smtp_client *c = conn->ud;

	if (c->msg_done_pending) {
		c->msg_done_pending = 0;
		msg_pump(c, 1);
		if (c->closed)
			return;
	}
	writable_notify(c);
}

static void on_conn_error(struct conn *conn, const struct mf_error *err)
{
	struct smtp_client *c = conn->ud;

	if (c->state == ST_QUIT) {
		client_shutdown(c);
		return;
	}
	smc_fail(c, err->code, "%s", err->msg);
}

static const struct conn_cb client_conn_cb = {
    .on_connected = on_connected,
    .on_tls_ready = smc_on_tls_ready,
    .on_data = on_data,
    .on_drain = on_drain,
    .on_error = on_conn_error,
};

/* ---- API ------------------------------------------------------------------ */

int smtp_client_open(struct smtp_client *c, struct loop *l, const struct smtp_endpoint *ep,
                     const struct smtp_client_cb *cb, void *ud, struct mf_error *err)
{
	struct conn_opts o = {
	    .host = ep->host,
	    .port = ep->port,
	    .unix_path = ep->unix_path,
	    .tls = ep->tls == SMTP_TLS_IMPLICIT,
	    .ca_file = ep->ca_file,
	    .insecure = ep->insecure,
	    .timeout_ms = ep->timeout_ms,
	    /* replies are small: a BDAT upload brings ~40 bytes per chunk */
	    .min_progress = ep->min_progress ? ep->min_progress : 64,
	};
	const char *proto = ep->lmtp ? "lmtp" : "smtp";

	memset(c, 0, sizeof(*c));
	c->ep = ep;
	c->cb = cb;
	c->ud = ud;
	c->state = ST_CONNECTING;
	if (ep->unix_path)
		snprintf(c->who, sizeof(c->who), "%s %s unix:%s", ep->label ? ep->label : "server",
		         proto, ep->unix_path);
	else
		snprintf(c->who, sizeof(c->who), "%s %s %s:%u", ep->label ? ep->label : "server",
		         proto, ep->host ? ep->host : "", ep->port);
	c->trace = getenv("MAILFERRY_TRACE") ? atoi(getenv("MAILFERRY_TRACE")) : 0;
	if (ep->user && strlen(ep->user) > 255) {
		mf_err_set(err, -EINVAL, "%s: user name too long", c->who);
		c->closed = 1;
		return -EINVAL;
	}
	smtp_reply_init(&c->parser);
	if (!(c->chunk = malloc(SMTP_CHUNK))) {
		mf_err_set(err, -ENOMEM, "%s: out of memory", c->who);
		c->closed = 1;
		return -ENOMEM;
	}
	if (conn_open(&c->conn, l, &o, &client_conn_cb, c, err) < 0) {
		char m[MF_ERR_MAX];

		snprintf(m, sizeof(m), "%s", err->msg);
		mf_err_set(err, err->code, "%s: %s", c->who, m);
		free(c->chunk);
		c->chunk = NULL;
		c->closed = 1;
		return err->code ? err->code : -EIO;
	}
	c->conn_open = 1;
	conn_set_deadline(&c->conn,
	                  ep->login_timeout_ms ? ep->login_timeout_ms
	                                       : 2 * (ep->timeout_ms ? ep->timeout_ms : 60000),
	                  "greeting and login");
	return 0;
}

void smtp_client_quit(struct smtp_client *c)
{
	if (c->closed)
		return;
	if (c->state != ST_READY || c->tx_count) {
		client_shutdown(c);
		return;
	}
	c->state = ST_QUIT;
	smc_cmd(c, 0, "QUIT");
	conn_set_busy(&c->conn, 1);
}

void smtp_client_close(struct smtp_client *c)
{
	client_shutdown(c);
	free(c->chunk);
	c->chunk = NULL;
}

/* An address for "<...>": printable, no angle brackets, bounded, UTF-8. */
static int addr_check(struct smtp_client *c, const char *a, int *nonascii, struct mf_error *err)
{
	size_t n = strlen(a);

	if (n > SMTP_ADDR_MAX) {
		mf_err_set(err, -EINVAL, "%s: address longer than %d bytes", c->who, SMTP_ADDR_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < n;) {
		unsigned char ch = (unsigned char)a[i];

		if (ch >= 0x80) {
			size_t k = mf_utf8_len((const unsigned char *)a + i, n - i, NULL);

			if (!k) {
				mf_err_set(err, -EINVAL, "%s: address %s is not valid UTF-8",
				           c->who, a);
				return -EINVAL;
			}
			*nonascii = 1;
			i += k;
			continue;
		}
		if (ch <= ' ' || ch == 0x7f || ch == '<' || ch == '>') {
			mf_err_set(
			    err, -EINVAL,
			    "%s: address %s holds a space, a control character or an angle bracket",
			    c->who, a);
			return -EINVAL;
		}
		i++;
	}
	return 0;
}

int smtp_can_begin(const struct smtp_client *c)
{
	const struct smtp_txn *t = tx_newest_c(c);

	if (c->closed || c->state != ST_READY)
		return 0;
	if (!t)
		return 1;
	return c->tx_count < SMTP_TXN_MAX && (c->caps & SMTP_CAP_PIPELINING) &&
	       !c->ep->no_pipelining && t->ended && t->last_sent && !t->failed;
}

unsigned smtp_inflight(const struct smtp_client *c)
{
	return c->tx_count;
}

int smtp_msg_begin(struct smtp_client *c, const struct smtp_msg *m, void *msg_ud,
                   struct mf_error *err)
{
	struct smtp_txn *t;
	int nonascii = 0, r;

	if (c->closed || c->state != ST_READY) {
		mf_err_set(err, -ENOTCONN, "%s: not ready for a message", c->who);
		return -ENOTCONN;
	}
	if (!smtp_can_begin(c)) {
		mf_err_set(err, -EBUSY, "%s: a message is still in flight", c->who);
		return -EBUSY;
	}
	if (!m->nrcpt || m->nrcpt > SMTP_RCPT_MAX) {
		mf_err_set(err, -EINVAL, "%s: %zu recipients (1 to %d per message)", c->who,
		           m->nrcpt, SMTP_RCPT_MAX);
		return -EINVAL;
	}
	if ((r = addr_check(c, m->from ? m->from : "", &nonascii, err)) < 0)
		return r;
	for (size_t i = 0; i < m->nrcpt; i++)
		if ((r = addr_check(c, m->rcpt[i] ? m->rcpt[i] : "", &nonascii, err)) < 0)
			return r;
	for (size_t i = 0; i < m->nrcpt; i++)
		if (!m->rcpt[i] || !*m->rcpt[i]) {
			mf_err_set(err, -EINVAL, "%s: empty recipient address", c->who);
			return -EINVAL;
		}
	if (nonascii && !(c->caps & SMTP_CAP_SMTPUTF8)) {
		mf_err_set(err, -EPROTONOSUPPORT,
		           "%s: a non-ASCII address needs SMTPUTF8 (RFC 6531), which the server "
		           "does not offer",
		           c->who);
		return -EPROTONOSUPPORT;
	}
	/* RFC 1870 §6.1: do not send what the server said it will refuse. */
	if ((c->caps & SMTP_CAP_SIZE) && c->size_max && m->size > c->size_max) {
		mf_err_set(
		    err, -EFBIG,
		    "%s: message of %llu bytes exceeds the server's SIZE limit of %llu bytes",
		    c->who, (unsigned long long)m->size, (unsigned long long)c->size_max);
		return -EFBIG;
	}
	t = &c->tx[(c->tx_first + c->tx_count) % SMTP_TXN_MAX];
	t->msg_ud = msg_ud;
	t->size = m->size;
	t->fed = 0;
	t->mflags = m->flags | (nonascii ? SMTP_MSG_UTF8 : 0);
	t->nrcpt = m->nrcpt;
	snprintf(t->from, sizeof(t->from), "%s", m->from ? m->from : "");
	for (size_t i = 0; i < m->nrcpt; i++) {
		snprintf(t->rcpt_addr[i], sizeof(t->rcpt_addr[i]), "%s", m->rcpt[i]);
		t->rcpt_ok[i] = 0;
		memset(&t->st[i], 0, sizeof(t->st[i]));
	}
	c->chunking = (c->caps & SMTP_CAP_CHUNKING) && !c->ep->no_chunking;
	c->pipelining = (c->caps & SMTP_CAP_PIPELINING) && !c->ep->no_pipelining;
	t->ended = t->failed = t->data_open = t->last_sent = 0;
	t->rcpt_replies = t->accepted = t->end_replies = 0;
	t->nexp = 0;
	t->has_rset = c->begun_msgs > 0;
	t->cmd_next = 0;
	t->ncmd = (t->has_rset ? 1 : 0) + 1 + t->nrcpt + (c->chunking ? 0 : 1);
	c->begun_msgs++;
	c->tx_count++;
	/* the data path is the new transaction's (the older one's end is out) */
	c->chunk_len = 0;
	dot_stuff_init(&c->dot);
	c->held_lf = 0;
	c->prev = 0;
	write_cmds(c);
	return c->closed ? -ENOTCONN : 0;
}

static int phase_open(struct smtp_client *c)
{
	struct smtp_txn *t = tx_newest(c);

	if (!t)
		return 0;
	return c->chunking ? can_chunk(c, t, 1) : t->data_open;
}

size_t smtp_write_space(struct smtp_client *c)
{
	struct smtp_txn *t = tx_newest(c);

	if (c->closed || !t || t->ended || t->failed)
		return 0;
	if (!c->chunking)
		return t->data_open ? conn_write_space(&c->conn) : 0;
	/* BDAT: the staging room, plus one more chunk when one may go now
	 * (without PIPELINING, one chunk per reply: RFC 3030 §4.2) */
	if (!can_chunk(c, t, 1))
		return SMTP_CHUNK - c->chunk_len;
	if (!c->pipelining)
		return 2 * SMTP_CHUNK - c->chunk_len;
	{
		size_t w = conn_write_space(&c->conn);

		return w > SMTP_CHUNK - c->chunk_len ? w : SMTP_CHUNK - c->chunk_len;
	}
}

void smtp_want_writable(struct smtp_client *c)
{
	struct smtp_txn *t = tx_newest(c);

	c->want_writable = 1;
	if (!c->closed && (!t || phase_open(c) || t->failed || smtp_write_space(c)))
		conn_want_drain(&c->conn);
}

/* DATA: dot-stuffed, a bare LF at the end of the input held back until
 * more follows (see smtp_client.h: the last one goes as CRLF). */
static int data_stuffed(struct smtp_client *c, struct smtp_txn *t, const uint8_t *p, size_t n)
{
	size_t body = n;

	if (!n)
		return 0;
	if (c->held_lf) {
		c->held_lf = 0;
		if (dot_stuff_feed(&c->dot, "\n", 1, emit_conn, c) < 0)
			return -ENOTCONN;
	}
	if (p[n - 1] == '\n' && (n >= 2 ? p[n - 2] : c->prev) != '\r') {
		body = n - 1;
		c->held_lf = 1;
	}
	if (dot_stuff_feed(&c->dot, (const char *)p, body, emit_conn, c) < 0)
		return -ENOTCONN;
	c->prev = p[n - 1];
	t->fed += n;
	return 0;
}

int smtp_msg_data(struct smtp_client *c, const void *p, size_t n)
{
	struct smtp_txn *t = tx_newest(c);
	const uint8_t *s = p;

	if (c->closed)
		return -ENOTCONN;
	if (!t || t->ended)
		return -EINVAL;
	if (t->failed)
		return -ECANCELED;
	if (!c->chunking) {
		if (!t->data_open)
			return -EAGAIN;
		return data_stuffed(c, t, p, n);
	}
	/* The staged bytes go as a chunk only when more follow, so the last
	 * chunk always carries LAST with its own bytes (no "BDAT 0 LAST"). */
	{
		size_t total = c->chunk_len + n;
		size_t flushes = total > SMTP_CHUNK ? (total - 1) / SMTP_CHUNK : 0;

		if (flushes && (!can_chunk(c, t, flushes) || (!c->pipelining && flushes > 1)))
			return -EAGAIN;
	}
	while (n) {
		size_t take;

		if (c->chunk_len == SMTP_CHUNK) {
			flush_chunk(c, t, 0);
			if (c->closed)
				return -ENOTCONN;
		}
		take = SMTP_CHUNK - c->chunk_len;
		if (take > n)
			take = n;
		memcpy(c->chunk + c->chunk_len, s, take);
		c->chunk_len += take;
		t->fed += take;
		s += take;
		n -= take;
	}
	return 0;
}

int smtp_msg_failed(const struct smtp_client *c)
{
	const struct smtp_txn *t = tx_newest_c(c);

	return t && t->failed;
}

int smtp_msg_end(struct smtp_client *c)
{
	struct smtp_txn *t = tx_newest(c);

	if (c->closed)
		return -ENOTCONN;
	if (!t || t->ended)
		return -EINVAL;
	t->ended = 1;
	msg_pump(c, 0);
	return c->closed ? -ENOTCONN : 0;
}
