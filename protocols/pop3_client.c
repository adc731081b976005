/*
 * pop3_client — one POP3 connection: login sequence, the command window
 * and the listing table (see pop3_client.h).
 */
#include "protocols/pop3_client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "protocols/sasl_plain.h"

enum {
	ST_CONNECTING,
	ST_GREETING,
	ST_CAPA_PRE, /* CAPA before STLS / authentication */
	ST_STLS,     /* STLS sent */
	ST_HANDSHAKE,
	ST_AUTH,      /* USER/PASS or AUTH sent */
	ST_CAPA_POST, /* CAPA after login (RFC 2449 §5: it may differ) */
	ST_READY,
	ST_QUIT,
};

/* CAPA lines a server may send: far more than any server has. */
#define CAPA_LINES_MAX 1000u
/* RFC 2449 §4: a command line is at most 255 octets; an AUTH PLAIN whose
 * initial response does not fit goes without it (RFC 5034 §4). */
#define CMD_LINE_MAX 255u

static void client_fail(struct pop3_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pump(struct pop3_client *c);
static void after_capa_pre(struct pop3_client *c);

/* ---- lifetime and errors ------------------------------------------------ */

static void client_shutdown(struct pop3_client *c)
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

void pop3_client_wire(const struct pop3_client *c, uint64_t *in, uint64_t *out)
{
	*in = c->conn_open ? conn_bytes_in(&c->conn) : c->wire_in;
	*out = c->conn_open ? conn_bytes_out(&c->conn) : c->wire_out;
}

const char *pop3_client_who(const struct pop3_client *c)
{
	return c->who;
}

/* The PLAIN response (sasl_plain), no authorization identity; "" if it
 * cannot be built. */
static void plain_response(const struct pop3_client *c, char *b64, size_t cap)
{
	sasl_plain(b64, cap, "", 0, c->ep->user, strlen(c->ep->user), c->ep->password,
	           strlen(c->ep->password));
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

/* A server may echo what it was sent (an -ERR quoting the command): an
 * error line never carries the password or the SASL response. */
static void redact(const struct pop3_client *c, char *msg)
{
	char b64[SASL_PLAIN_B64_MAX];

	if (!c->ep->password)
		return;
	redact_one(msg, c->ep->password);
	plain_response(c, b64, sizeof(b64));
	if (b64[0])
		redact_one(msg, b64);
	OPENSSL_cleanse(b64, sizeof(b64));
}

static void client_fail(struct pop3_client *c, int code, const char *fmt, ...)
{
	struct mf_error e;
	char m[MF_ERR_MAX];
	va_list ap;
	int n;

	if (c->closed)
		return;
	n = snprintf(m, sizeof(m), "%s: ", c->who);
	va_start(ap, fmt);
	vsnprintf(m + n, sizeof(m) - (size_t)n, fmt, ap);
	va_end(ap);
	redact(c, m);
	/* server text (an -ERR line, a unique-id) is escaped here already,
	 * whoever prints the message */
	mf_err_set(&e, code, "%s", m);
	client_shutdown(c);
	c->cb->error(c, &e);
}

/* ---- output --------------------------------------------------------------- */

/* MAILFERRY_TRACE=1: the exchange on stderr, without credentials or bodies. */
static void trace(const struct pop3_client *c, const char *dir, const char *p, size_t n)
{
	if (!c->trace || !n)
		return;
	if (n > 200 && c->trace < 2)
		n = 200;
	fprintf(stderr, "trace %s %s ", c->who, dir);
	for (size_t i = 0; i < n; i++)
		fputc(p[i] == '\r'                                  ? '~'
		      : (p[i] == '\n' || (unsigned char)p[i] >= 32) ? p[i]
		                                                    : '.',
		      stderr);
	fputc('\n', stderr);
}

static void out(struct pop3_client *c, const char *p, size_t n, int secret)
{
	if (c->closed)
		return;
	if (!secret)
		trace(c, ">>", p, n);
	else
		trace(c, ">>", p, 5); /* "PASS " / "AUTH " and nothing more */
	if (conn_write(&c->conn, p, n) < 0)
		client_fail(c, -ENOMEM, "out of memory for output");
}

static int is_multi(enum pop3_cmd_type t)
{
	return t == POP3_C_UIDL_ALL || t == POP3_C_LIST_ALL || t == POP3_C_CAPA;
}

static enum pop3_kind kind_of(enum pop3_cmd_type t)
{
	if (t == POP3_C_RETR || t == POP3_C_TOP)
		return POP3_KIND_BODY;
	return is_multi(t) ? POP3_KIND_LINES : POP3_KIND_SINGLE;
}

/* Writes cmd's line. */
static void write_cmd(struct pop3_client *c, struct pop3_cmd *cmd)
{
	char line[CMD_LINE_MAX + 64];
	int n = 0, secret = 0;

	switch (cmd->type) {
	case POP3_C_STAT:
		n = snprintf(line, sizeof(line), "STAT\r\n");
		break;
	case POP3_C_UIDL_ALL:
		n = snprintf(line, sizeof(line), "UIDL\r\n");
		break;
	case POP3_C_UIDL_ONE:
		n = snprintf(line, sizeof(line), "UIDL %u\r\n", cmd->msgno);
		break;
	case POP3_C_LIST_ALL:
		n = snprintf(line, sizeof(line), "LIST\r\n");
		break;
	case POP3_C_LIST_ONE:
		n = snprintf(line, sizeof(line), "LIST %u\r\n", cmd->msgno);
		break;
	case POP3_C_RETR:
		n = snprintf(line, sizeof(line), "RETR %u\r\n", cmd->msgno);
		break;
	case POP3_C_TOP:
		n = snprintf(line, sizeof(line), "TOP %u %u\r\n", cmd->msgno, cmd->lines);
		break;
	case POP3_C_DELE:
		n = snprintf(line, sizeof(line), "DELE %u\r\n", cmd->msgno);
		break;
	case POP3_C_RSET:
		n = snprintf(line, sizeof(line), "RSET\r\n");
		break;
	case POP3_C_NOOP:
		n = snprintf(line, sizeof(line), "NOOP\r\n");
		break;
	case POP3_C_QUIT:
		n = snprintf(line, sizeof(line), "QUIT\r\n");
		break;
	case POP3_C_CAPA:
		n = snprintf(line, sizeof(line), "CAPA\r\n");
		break;
	case POP3_C_STLS:
		n = snprintf(line, sizeof(line), "STLS\r\n");
		break;
	case POP3_C_USER:
		n = snprintf(line, sizeof(line), "USER %s\r\n", c->ep->user);
		break;
	case POP3_C_PASS:
		n = snprintf(line, sizeof(line), "PASS %s\r\n", c->ep->password);
		secret = 1;
		break;
	case POP3_C_AUTH: {
		char b64[SASL_PLAIN_B64_MAX];

		plain_response(c, b64, sizeof(b64));
		if (cmd->lines) /* with the initial response */
			n = snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", b64);
		else
			n = snprintf(line, sizeof(line), "AUTH PLAIN\r\n");
		OPENSSL_cleanse(b64, sizeof(b64));
		secret = 1;
		break;
	}
	}
	if (n < 0 || (size_t)n >= sizeof(line)) {
		OPENSSL_cleanse(line, sizeof(line));
		client_fail(c, -EINVAL, "internal: command line too long");
		return;
	}
	out(c, line, (size_t)n, secret);
	OPENSSL_cleanse(line, sizeof(line));
}

/* May the first waiting command go now? */
static int may_send(const struct pop3_client *c, const struct pop3_cmd *cmd)
{
	unsigned win = c->ep->window ? c->ep->window : POP3_WINDOW_DEFAULT;
	uint64_t wb = c->ep->window_bytes ? c->ep->window_bytes : POP3_WINDOW_BYTES_DEFAULT;

	if (c->state != ST_READY && c->state != ST_QUIT && cmd != &c->login_cmd)
		return 0;
	if (!c->inflight)
		return 1;
	/* RFC 2449 §6.6: without PIPELINING, one command at a time; the login
	 * sequence is always one at a time (each step depends on the last) */
	if (c->state != ST_READY && c->state != ST_QUIT)
		return 0;
	if (!(c->caps & POP3_CAP_PIPELINING))
		return 0;
	if (c->inflight >= win)
		return 0;
	return !cmd->expect || c->inflight_bytes + cmd->expect <= wb;
}

static void pump(struct pop3_client *c)
{
	while (!c->closed && c->wait_head && may_send(c, c->wait_head)) {
		struct pop3_cmd *cmd = c->wait_head;

		c->wait_head = cmd->next;
		if (!c->wait_head)
			c->wait_tail = NULL;
		cmd->next = NULL;
		if (!c->inflight)
			c->round_trips++;
		if (c->tail)
			c->tail->next = cmd;
		else
			c->head = cmd;
		c->tail = cmd;
		c->inflight++;
		c->inflight_bytes += cmd->expect;
		if (c->inflight > c->max_inflight)
			c->max_inflight = c->inflight;
		/* what is buffered now came before the command, so its reply
		 * cannot start before the end of it */
		cmd->after = c->in_data ? c->buf_end : c->rx;
		write_cmd(c, cmd);
		if (!c->closed)
			conn_set_busy(&c->conn, 1);
	}
}

/* cmd->lines is the caller's (TOP's line count; AUTH: with the initial
 * response) and is set before this. */
static void enqueue(struct pop3_client *c, struct pop3_cmd *cmd, enum pop3_cmd_type type,
                    uint32_t msgno, pop3_done_fn done, void *ud)
{
	cmd->done = done;
	cmd->ud = ud;
	cmd->consumer = NULL;
	cmd->type = type;
	cmd->msgno = msgno;
	cmd->expect = 0;
	cmd->next = NULL;
	if (type == POP3_C_RETR || type == POP3_C_TOP) {
		const struct pop3_msg *m = pop3_msg_get(c, msgno);

		/* unknown sizes count as one window's worth, so they go alone */
		cmd->expect = m && m->has_size ? m->size + 1 : UINT64_MAX / 4;
	}
	if (c->closed)
		return;
	if (c->wait_tail)
		c->wait_tail->next = cmd;
	else
		c->wait_head = cmd;
	c->wait_tail = cmd;
	pump(c);
}

/* ---- the listing ------------------------------------------------------------ */

const struct pop3_msg *pop3_msg_get(const struct pop3_client *c, uint32_t msgno)
{
	return pop3_list_get(&c->list, msgno);
}

uint32_t pop3_msg_count(const struct pop3_client *c)
{
	return c->list.n;
}

/* One line of a UIDL or LIST listing. */
static int listing_line(struct pop3_client *c, const char *s, size_t n)
{
	enum pop3_list_kind k = c->head->type == POP3_C_UIDL_ALL ? POP3_LIST_UIDL : POP3_LIST_SCAN;
	char why[300];
	int rc = pop3_list_line(&c->list, k, s, n, why, sizeof(why));

	if (rc < 0) {
		client_fail(c, rc, "%s", why);
		return rc;
	}
	return 0;
}

/* ---- reader callbacks --------------------------------------------------------- */

static int rd_status(void *ctx, const struct pop3_status *st)
{
	struct pop3_client *c = ctx;
	struct pop3_cmd *cmd = c->head;
	size_t tl = st->text_len;

	if (c->trace) {
		char t[POP3_LINE_MAX + 16];
		int k = snprintf(t, sizeof(t), "%s ",
		                 st->kind == POP3_OK    ? "+OK"
		                 : st->kind == POP3_ERR ? "-ERR"
		                                        : "+");

		memcpy(t + k, st->text, st->text_len);
		trace(c, "<<", t, (size_t)k + st->text_len);
	}
	memset(&c->cur, 0, sizeof(c->cur));
	/* the text outlives the line buffer (a listing reuses it) */
	if (st->code) {
		size_t cl = st->code_len;

		memcpy(c->cur_text, st->code, cl);
		c->cur.code = c->cur_text;
		c->cur.code_len = cl;
		memcpy(c->cur_text + cl, st->text, tl);
		c->cur.text = c->cur_text + cl;
	} else {
		memcpy(c->cur_text, st->text, tl);
		c->cur.text = c->cur_text;
	}
	c->cur.text_len = tl;
	c->cur.ok = st->kind == POP3_OK;
	c->cur_kind = st->kind;
	if (!cmd || st->kind != POP3_OK)
		return 0;
	switch (cmd->type) {
	case POP3_C_UIDL_ALL:
		pop3_list_begin(&c->list, POP3_LIST_UIDL);
		return 0;
	case POP3_C_LIST_ALL:
		pop3_list_begin(&c->list, POP3_LIST_SCAN);
		return 0;
	case POP3_C_CAPA:
		c->capa_lines = 0;
		c->caps = 0;
		return 0;
	case POP3_C_RETR:
	case POP3_C_TOP: {
		const struct pop3_msg *m = pop3_msg_get(c, cmd->msgno);
		uint64_t max =
		    c->ep->max_message_size ? c->ep->max_message_size : POP3_MAX_MESSAGE_DEFAULT;
		uint64_t size = 0;

		if (m && m->has_size)
			size = m->size;
		else if (pop3_parse_octets(st->text, st->text_len, &size) < 0)
			size = 0;
		/* LIST's size may be off a little (RFC 1939 §5: "exact" sizes
		 * that some servers estimate); a body much larger is not the
		 * message we were told about */
		c->body_limit = max;
		if (m && m->has_size && size + size / 4 + 65536 < max)
			c->body_limit = size + size / 4 + 65536;
		c->in_body = 1;
		if (cmd->consumer)
			return cmd->consumer->msg_begin ? cmd->consumer->msg_begin(c, cmd, cmd->msgno, size)
			                                : 0;
		if (c->cb->msg_begin)
			return c->cb->msg_begin(c, cmd, cmd->msgno, size);
		return 0;
	}
	default:
		return 0;
	}
}

static int rd_line(void *ctx, const char *s, size_t n)
{
	struct pop3_client *c = ctx;

	if (!c->head)
		return -EPROTO;
	if (c->head->type == POP3_C_CAPA) {
		if (++c->capa_lines > CAPA_LINES_MAX) {
			client_fail(c, -EPROTO, "CAPA listing longer than %u lines; refusing",
			            CAPA_LINES_MAX);
			return -EPROTO;
		}
		trace(c, "<<", s, n);
		c->caps |= pop3_capa_line(s, n);
		return 0;
	}
	return listing_line(c, s, n);
}

static int rd_body(void *ctx, const char *p, size_t n)
{
	struct pop3_client *c = ctx;
	struct pop3_cmd *cmd = c->head;

	if (c->rd.body_bytes > c->body_limit) {
		const struct pop3_msg *m = pop3_msg_get(c, cmd->msgno);

		if (m && m->has_size)
			client_fail(c, -EMSGSIZE,
			            "message %u: body is larger than its LIST size %llu allows "
			            "(over %llu bytes); "
			            "refusing",
			            cmd->msgno, (unsigned long long)m->size,
			            (unsigned long long)c->body_limit);
		else
			client_fail(c, -EMSGSIZE,
			            "message %u: body is larger than %llu bytes; refusing",
			            cmd->msgno, (unsigned long long)c->body_limit);
		return -EMSGSIZE;
	}
	if (cmd->consumer)
		return cmd->consumer->msg_data ? cmd->consumer->msg_data(c, cmd, p, n) : 0;
	if (c->cb->msg_data)
		return c->cb->msg_data(c, cmd, p, n);
	return 0;
}

/* ---- replies ---------------------------------------------------------------- */

static void send_auth(struct pop3_client *c);
static void login_done(struct pop3_client *c, struct pop3_cmd *cmd, const struct pop3_reply *r);

/* The reply to c->head is complete. */
static void complete(struct pop3_client *c)
{
	struct pop3_cmd *cmd = c->head;
	struct pop3_reply r = c->cur;

	if (c->cur_kind == POP3_CONT) {
		/* RFC 5034 §4: "+ " asks for the SASL response (AUTH without an
		 * initial response); anywhere else it is not POP3 */
		if (cmd->type == POP3_C_AUTH && !cmd->lines && !cmd->msgno) {
			char b64[SASL_PLAIN_B64_MAX];

			cmd->msgno = 1; /* answered */
			plain_response(c, b64, sizeof(b64));
			out(c, b64, strlen(b64), 1);
			out(c, "\r\n", 2, 1);
			OPENSSL_cleanse(b64, sizeof(b64));
			pop3_reader_start(&c->rd, POP3_KIND_SINGLE);
			return;
		}
		client_fail(c, -EPROTO, "unexpected continuation \"+\" to %s",
		            cmd->type == POP3_C_AUTH ? "AUTH" : "a command");
		return;
	}
	if (r.ok) {
		switch (cmd->type) {
		case POP3_C_STAT:
			if (pop3_parse_stat(r.text, r.text_len, &r.count, &r.size) < 0) {
				client_fail(c, -EPROTO, "malformed STAT reply: %.*s",
				            (int)r.text_len, r.text);
				return;
			}
			break;
		case POP3_C_LIST_ONE:
			if (pop3_parse_scan(r.text, r.text_len, &r.count, &r.size) < 0 ||
			    r.count != cmd->msgno) {
				client_fail(c, -EPROTO, "malformed LIST %u reply: %.*s", cmd->msgno,
				            (int)r.text_len, r.text);
				return;
			}
			break;
		case POP3_C_UIDL_ONE: {
			const char *why = NULL;

			if (pop3_parse_uidl(r.text, r.text_len, &r.count, &r.uid, &r.uid_len,
			                    &why) < 0) {
				if (!r.uid || r.count != cmd->msgno) {
					client_fail(c, -EPROTO, "malformed UIDL %u reply: %.*s",
					            cmd->msgno, (int)r.text_len, r.text);
					return;
				}
				snprintf(c->one_err, sizeof(c->one_err),
				         "message %u: unique-id \"%.*s\" refused: %s", cmd->msgno,
				         (int)(r.uid_len > 80 ? 80 : r.uid_len), r.uid, why);
				r.ok = 0;
				r.invalid = 1;
				r.text = c->one_err;
				r.text_len = strlen(c->one_err);
				r.uid = NULL;
				r.uid_len = 0;
			} else if (r.count != cmd->msgno) {
				client_fail(c, -EPROTO, "UIDL %u answered for message %u",
				            cmd->msgno, r.count);
				return;
			}
			break;
		}
		case POP3_C_UIDL_ALL:
		case POP3_C_LIST_ALL:
			r.count = c->list.n;
			if (c->list.err[0]) {
				r.ok = 0;
				r.invalid = 1;
				r.text = c->list.err;
				r.text_len = strlen(c->list.err);
			}
			break;
		case POP3_C_RETR:
		case POP3_C_TOP:
			r.count = cmd->msgno;
			r.size = c->rd.body_bytes;
			break;
		default:
			break;
		}
	}
	/* off the queue before its callback, which may send more */
	c->head = cmd->next;
	if (!c->head)
		c->tail = NULL;
	c->inflight--;
	c->inflight_bytes -= cmd->expect;
	cmd->next = NULL;
	if (c->in_body) {
		int (*end)(struct pop3_client *, struct pop3_cmd *) =
		    cmd->consumer ? cmd->consumer->msg_end : c->cb->msg_end;

		c->in_body = 0;
		if (r.ok && end && end(c, cmd) < 0) {
			client_fail(c, -ECANCELED, "message %u: the consumer failed", cmd->msgno);
			return;
		}
	}
	conn_set_busy(&c->conn, c->inflight > 0);
	if (cmd->done)
		cmd->done(c, cmd, &r);
	if (!c->closed)
		pump(c);
}

/* ---- login sequence ------------------------------------------------------------- */

static void ready(struct pop3_client *c)
{
	c->state = ST_READY;
	conn_set_deadline(&c->conn, 0, NULL);
	c->cb->ready(c);
	if (!c->closed)
		pump(c); /* what the caller queued before */
}

/* A login step goes ahead of anything the caller queued early: nothing
 * but the login is sent before ready(). */
static void send_login(struct pop3_client *c, enum pop3_cmd_type type, int state, uint32_t lines)
{
	struct pop3_cmd *cmd = &c->login_cmd;

	c->state = state;
	cmd->done = login_done;
	cmd->ud = NULL;
	cmd->type = type;
	cmd->msgno = 0;
	cmd->lines = lines;
	cmd->expect = 0;
	cmd->next = c->wait_head;
	c->wait_head = cmd;
	if (!c->wait_tail)
		c->wait_tail = cmd;
	pump(c);
}

static int code_is(const struct pop3_reply *r, const char *name)
{
	size_t n = strlen(name);

	return r->code && r->code_len >= n && !strncasecmp(r->code, name, n) &&
	       (r->code_len == n || r->code[n] == '/');
}

static int code_transient(const struct pop3_reply *r)
{
	return code_is(r, "IN-USE") || code_is(r, "LOGIN-DELAY") || code_is(r, "SYS/TEMP");
}

static void login_done(struct pop3_client *c, struct pop3_cmd *cmd, const struct pop3_reply *r)
{
	struct mf_error e;

	switch (cmd->type) {
	case POP3_C_CAPA:
		/* -ERR: a server without RFC 2449; nothing is offered */
		if (!r->ok)
			c->caps = 0;
		if (c->state == ST_CAPA_PRE)
			after_capa_pre(c);
		else
			ready(c);
		return;
	case POP3_C_STLS:
		if (!r->ok) {
			client_fail(c, -EPROTO, "STLS refused: %.*s", (int)r->text_len, r->text);
			return;
		}
		c->state = ST_HANDSHAKE;
		/* RFC 2595 §4: whatever came after the +OK came in the clear;
		 * on_data stops here and conn_starttls refuses leftover bytes */
		if (conn_starttls(&c->conn, &e) < 0)
			client_fail(c, e.code, "%s", e.msg);
		return;
	case POP3_C_USER:
		if (!r->ok)
			break;
		send_login(c, POP3_C_PASS, ST_AUTH, 0);
		return;
	case POP3_C_PASS:
	case POP3_C_AUTH:
		if (!r->ok)
			break;
		/* RFC 2449 §5: capabilities may differ after login */
		send_login(c, POP3_C_CAPA, ST_CAPA_POST, 0);
		return;
	default:
		return;
	}
	/* RFC 2449 §8.1, RFC 3206 §4: these say "later", not "never" */
	client_fail(c, code_transient(r) ? -EAGAIN : -EACCES, "login failed: %s%.*s%s%.*s",
	            r->code ? "[" : "", (int)r->code_len, r->code ? r->code : "",
	            r->code ? "] " : "", (int)r->text_len, r->text);
}

static void send_auth(struct pop3_client *c)
{
	int secure = conn_is_tls(&c->conn) || conn_is_loopback(&c->conn) || c->ep->allow_plaintext;
	char b64[SASL_PLAIN_B64_MAX];
	size_t bl;

	if (!secure) {
		client_fail(c, -EPERM,
		            "refusing to send the password over an unencrypted connection "
		            "(use pop3s:// or STLS, or --allow-plaintext)");
		return;
	}
	if (!(c->caps & POP3_CAP_SASL_PLAIN)) {
		send_login(c, POP3_C_USER, ST_AUTH, 0);
		return;
	}
	plain_response(c, b64, sizeof(b64));
	bl = strlen(b64);
	OPENSSL_cleanse(b64, sizeof(b64));
	if (!bl) {
		client_fail(c, -EINVAL, "user name or password too long");
		return;
	}
	/* with the initial response if the line stays within RFC 2449 §4's
	 * 255 octets, else after the server's "+ " (RFC 5034 §4) */
	send_login(c, POP3_C_AUTH, ST_AUTH, strlen("AUTH PLAIN \r\n") + bl <= CMD_LINE_MAX);
}

static void after_capa_pre(struct pop3_client *c)
{
	if (c->ep->tls == POP3_TLS_STARTTLS && !conn_is_tls(&c->conn)) {
		if (c->caps & POP3_CAP_STLS) {
			send_login(c, POP3_C_STLS, ST_STLS, 0);
			return;
		}
		if (!conn_is_loopback(&c->conn) && !c->ep->allow_plaintext) {
			client_fail(c, -EPERM,
			            "server does not offer STLS; refusing to send the password "
			            "unencrypted (use pop3s://, or --allow-plaintext)");
			return;
		}
	}
	send_auth(c);
}

static void on_tls_ready(struct conn *conn)
{
	struct pop3_client *c = conn->ud;

	/* RFC 2595 §4: the capabilities from before TLS are forgotten */
	c->caps = 0;
	send_login(c, POP3_C_CAPA, ST_CAPA_PRE, 0);
}

/* ---- input ---------------------------------------------------------------------- */

static size_t feed(struct pop3_client *c, const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n && !c->closed && !c->paused && c->state != ST_HANDSHAKE) {
		long k;

		if (pop3_reader_done(&c->rd)) {
			if (c->state == ST_GREETING) {
				pop3_reader_start(&c->rd, POP3_KIND_SINGLE);
			} else if (c->head && c->rx + i < c->head->after) {
				/* POP3 replies carry no tag: a reply sent ahead of its
				 * command (an extra +OK after login, say) would shift
				 * every later one onto the wrong command */
				client_fail(c, -EPROTO,
				            "server sent %zu bytes before the command they would "
				            "answer; refusing",
				            n - i);
				return n;
			} else if (c->head) {
				pop3_reader_start(&c->rd, kind_of(c->head->type));
			} else {
				client_fail(c, -EPROTO, "server sent %zu bytes nobody asked for",
				            n - i);
				return n;
			}
		}
		k = pop3_reader_feed(&c->rd, p + i, n - i);
		if (c->closed)
			return n;
		if (k == POP3_EBAD) {
			client_fail(c, -EPROTO, "malformed reply: %s at byte %llu", c->rd.err,
			            (unsigned long long)c->rd.err_pos);
			return n;
		}
		if (k < 0) {
			client_fail(c, (int)k, "reply processing failed (%s)", strerror((int)-k));
			return n;
		}
		i += (size_t)k;
		if (!pop3_reader_done(&c->rd))
			continue;
		if (c->state == ST_GREETING) {
			if (!c->cur.ok) {
				client_fail(c, -EPROTO, "bad greeting: %.*s", (int)c->cur.text_len,
				            c->cur.text);
				return n;
			}
			send_login(c, POP3_C_CAPA, ST_CAPA_PRE, 0);
			continue;
		}
		complete(c);
	}
	if (!c->closed && c->state == ST_HANDSHAKE && i < n) {
		/* RFC 2595 §4: nothing may follow the +OK to STLS in the clear;
		 * what did was put there by someone on the path */
		client_fail(c, -EPROTO,
		            "%zu bytes after the server's +OK to STLS (RFC 2595 §4); refusing",
		            n - i);
		return n;
	}
	return c->closed ? n : i;
}

static size_t on_data(struct conn *conn, const uint8_t *p, size_t n)
{
	struct pop3_client *c = conn->ud;
	size_t i = 0;

	c->in_data = 1;
	c->buf_end = c->rx + n;
	i = feed(c, p, n);
	c->in_data = 0;
	c->rx += i;
	return i;
}

static void on_connected(struct conn *conn)
{
	struct pop3_client *c = conn->ud;

	c->state = ST_GREETING;
	conn_set_busy(conn, 1);
}

static void on_drain(struct conn *conn)
{
	(void)conn;
}

static void on_conn_error(struct conn *conn, const struct mf_error *err)
{
	struct pop3_client *c = conn->ud;

	client_fail(c, err->code, "%s", err->msg);
}

static const struct conn_cb client_conn_cb = {
    .on_connected = on_connected,
    .on_tls_ready = on_tls_ready,
    .on_data = on_data,
    .on_drain = on_drain,
    .on_error = on_conn_error,
};

static int bad_arg(const char *s)
{
	return !s || !*s || strpbrk(s, "\r\n") != NULL;
}

int pop3_client_open(struct pop3_client *c, struct loop *l, const struct pop3_endpoint *ep,
                     const struct pop3_client_cb *cb, void *ud, struct mf_error *err)
{
	struct pop3_reader_cb rcb = {
	    .ctx = c, .status = rd_status, .line = rd_line, .body = rd_body};
	struct conn_opts o = {
	    .host = ep->host,
	    .port = ep->port,
	    .tls = ep->tls == POP3_TLS_IMPLICIT,
	    .ca_file = ep->ca_file,
	    .insecure = ep->insecure,
	    .timeout_ms = ep->timeout_ms,
	    .min_progress = ep->min_progress,
	};

	memset(c, 0, sizeof(*c));
	c->ep = ep;
	c->cb = cb;
	c->ud = ud;
	c->state = ST_CONNECTING;
	snprintf(c->who, sizeof(c->who), "%s %s@%s", ep->label ? ep->label : "pop3",
	         ep->user ? ep->user : "", ep->host);
	c->trace = getenv("MAILFERRY_TRACE") ? atoi(getenv("MAILFERRY_TRACE")) : 0;
	pop3_reader_init(&c->rd, &rcb);
	pop3_list_init(&c->list, ep->max_messages ? ep->max_messages : POP3_MAX_MESSAGES);
	/* a CR or LF in a credential would end the command line early and
	 * start another (RFC 1939 §3); a user name must fit USER's line */
	if (bad_arg(ep->user) || bad_arg(ep->password) || strlen(ep->user) > CMD_LINE_MAX - 7 ||
	    strlen(ep->password) > CMD_LINE_MAX - 7) {
		mf_err_set(err, -EINVAL,
		           "%s: user name or password empty, too long or with a line break",
		           c->who);
		c->closed = 1;
		return -EINVAL;
	}
	if (conn_open(&c->conn, l, &o, &client_conn_cb, c, err) < 0) {
		char m[MF_ERR_MAX];

		snprintf(m, sizeof(m), "%s", err->msg);
		mf_err_set(err, err->code, "%s: %s", c->who, m);
		c->closed = 1;
		return err->code ? err->code : -EIO;
	}
	c->conn_open = 1;
	conn_set_deadline(&c->conn,
	                  ep->login_timeout_ms ? ep->login_timeout_ms
	                                       : 2 * (o.timeout_ms ? o.timeout_ms : 60000),
	                  "greeting and login");
	return 0;
}

void pop3_client_close(struct pop3_client *c)
{
	client_shutdown(c);
	pop3_list_free(&c->list);
}

void pop3_client_abort(struct pop3_client *c)
{
	client_shutdown(c);
}

void pop3_client_pause(struct pop3_client *c)
{
	if (c->closed)
		return;
	c->paused = 1;
	conn_pause(&c->conn);
}

void pop3_client_kick(struct pop3_client *c)
{
	if (c->closed)
		return;
	c->paused = 0;
	conn_kick(&c->conn);
}

/* ---- commands ------------------------------------------------------------------- */

static void quit_done(struct pop3_client *c, struct pop3_cmd *cmd, const struct pop3_reply *r)
{
	(void)cmd;
	if (c->quit_fn)
		c->quit_fn(c, &c->quit_cmd, r);
	client_shutdown(c);
}

void pop3_client_quit(struct pop3_client *c, pop3_done_fn done, void *ud)
{
	if (c->closed || c->state == ST_QUIT)
		return;
	if (c->state != ST_READY) { /* still logging in: nothing to commit */
		client_shutdown(c);
		return;
	}
	c->quit_fn = done;
	c->state = ST_QUIT;
	enqueue(c, &c->quit_cmd, POP3_C_QUIT, 0, quit_done, ud);
}

void pop3_stat(struct pop3_client *c, struct pop3_cmd *cmd, pop3_done_fn done, void *ud)
{
	enqueue(c, cmd, POP3_C_STAT, 0, done, ud);
}

void pop3_uidl_all(struct pop3_client *c, struct pop3_cmd *cmd, pop3_done_fn done, void *ud)
{
	enqueue(c, cmd, POP3_C_UIDL_ALL, 0, done, ud);
}

void pop3_list_all(struct pop3_client *c, struct pop3_cmd *cmd, pop3_done_fn done, void *ud)
{
	enqueue(c, cmd, POP3_C_LIST_ALL, 0, done, ud);
}

void pop3_uidl_one(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno, pop3_done_fn done,
                   void *ud)
{
	enqueue(c, cmd, POP3_C_UIDL_ONE, msgno, done, ud);
}

void pop3_list_one(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno, pop3_done_fn done,
                   void *ud)
{
	enqueue(c, cmd, POP3_C_LIST_ONE, msgno, done, ud);
}

void pop3_retr(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno, pop3_done_fn done,
               void *ud)
{
	enqueue(c, cmd, POP3_C_RETR, msgno, done, ud);
}

void pop3_retr_consumer(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno,
                        pop3_done_fn done, void *ud, const struct pop3_consumer *k)
{
	enqueue(c, cmd, POP3_C_RETR, msgno, done, ud);
	cmd->consumer = k; /* its reply is read from the loop, after this */
}

void pop3_top(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno, uint32_t lines,
              pop3_done_fn done, void *ud)
{
	cmd->lines = lines;
	enqueue(c, cmd, POP3_C_TOP, msgno, done, ud);
}

void pop3_dele(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno, pop3_done_fn done,
               void *ud)
{
	enqueue(c, cmd, POP3_C_DELE, msgno, done, ud);
}

void pop3_rset(struct pop3_client *c, struct pop3_cmd *cmd, pop3_done_fn done, void *ud)
{
	enqueue(c, cmd, POP3_C_RSET, 0, done, ud);
}

void pop3_noop(struct pop3_client *c, struct pop3_cmd *cmd, pop3_done_fn done, void *ud)
{
	enqueue(c, cmd, POP3_C_NOOP, 0, done, ud);
}
