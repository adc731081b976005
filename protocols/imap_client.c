/*
 * imap_client — one IMAP connection: greeting, STARTTLS, capabilities,
 * authentication, ENABLE and pipelined commands (see imap_client.h).
 */
#include "protocols/imap_client.h"
#include "protocols/imap_client_int.h"
#include "protocols/throttle.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "protocols/sasl_oauth.h"
#include "protocols/sasl_plain.h"



void imc_oauth_wipe(struct imap_client *c)
{
	if (c->oauth_b64) {
		OPENSSL_cleanse(c->oauth_b64, OAUTH_BUF);
		free(c->oauth_b64);
		c->oauth_b64 = NULL;
	}
}

/* Closes the connection once, keeping its byte counters for reports. */
static void client_shutdown(struct imap_client *c)
{
	imc_oauth_wipe(c);
	free(c->hold);
	free(c->cuts);
	c->hold = NULL;
	c->cuts = NULL;
	c->hold_len = c->hold_cap = c->ncuts = c->ccuts = 0;
	c->hold_on = 0;
	if (c->oauth_wait.queued && c->ep && c->ep->token && c->ep->token->cancel)
		c->ep->token->cancel(c->ep->token->ctx, &c->oauth_wait);
	if (c->closed)
		return;
	c->closed = 1;
	if (c->conn_open) {
		c->wire_in = conn_bytes_in(&c->conn);
		c->wire_out = conn_bytes_out(&c->conn);
		c->conn_open = 0;
		conn_close(&c->conn);
	}
	if (c->cb && c->cb->closed)
		c->cb->closed(c);
}

void imap_client_wire(const struct imap_client *c, uint64_t *in, uint64_t *out)
{
	*in = c->conn_open ? conn_bytes_in(&c->conn) : c->wire_in;
	*out = c->conn_open ? conn_bytes_out(&c->conn) : c->wire_out;
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

/* Defence in depth: a server may echo what we sent (Dovecot answers a line
 * it cannot parse with its first word as the tag), so an error line never
 * carries the password or the SASL response, whatever put it there. */
static void redact(struct imap_client *c, char *msg)
{
	char b64[SASL_PLAIN_B64_MAX];

	if (c->oauth_b64) { /* the OAuth2 message and the token in it */
		redact_one(msg, c->oauth_b64);
		redact_one(msg, c->oauth_b64 + SASL_OAUTH_B64_MAX);
	}
	if (!c->ep->password)
		return;
	redact_one(msg, c->ep->password);
	imc_sasl_plain(c, b64, sizeof(b64));
	if (b64[0])
		redact_one(msg, b64);
	OPENSSL_cleanse(b64, sizeof(b64));
}

void imc_client_fail(struct imap_client *c, int code, const char *fmt, ...)
{
	struct mf_error e;
	va_list ap;
	int n;

	if (c->closed)
		return;
	n = snprintf(e.msg, sizeof(e.msg), "%s: ", imap_client_who(c));
	va_start(ap, fmt);
	vsnprintf(e.msg + n, sizeof(e.msg) - (size_t)n, fmt, ap);
	va_end(ap);
	redact(c, e.msg);
	e.code = code;
	/* A logged-in connection lost: the token may have expired, so the
	 * reconnect fetches a new one (--*-oauth-token-cmd). */
	if (c->state == ST_READY && c->ep->token && c->ep->token->lost)
		c->ep->token->lost(c->ep->token->ctx);
	client_shutdown(c);
	c->cb->error(c, &e);
}

const char *imap_client_who(const struct imap_client *c)
{
	return c->who;
}

/* ---- capabilities ------------------------------------------------------ */

static const struct {
	const char *name;
	uint32_t bit;
} cap_names[] = {
	{"IMAP4rev1", IMAP_CAP_IMAP4REV1},	 {"IMAP4rev2", IMAP_CAP_IMAP4REV2},
	{"STARTTLS", IMAP_CAP_STARTTLS},	 {"LOGINDISABLED", IMAP_CAP_LOGINDISABLED},
	{"AUTH=PLAIN", IMAP_CAP_AUTH_PLAIN},	 {"SASL-IR", IMAP_CAP_SASL_IR},
	{"LITERAL+", IMAP_CAP_LITERALPLUS},	 {"LITERAL-", IMAP_CAP_LITERALMINUS},
	{"MULTIAPPEND", IMAP_CAP_MULTIAPPEND}, {"UIDPLUS", IMAP_CAP_UIDPLUS},
	{"CONDSTORE", IMAP_CAP_CONDSTORE},	 {"QRESYNC", IMAP_CAP_QRESYNC},
	{"ENABLE", IMAP_CAP_ENABLE},		 {"SPECIAL-USE", IMAP_CAP_SPECIAL_USE},
	{"LIST-STATUS", IMAP_CAP_LIST_STATUS}, {"LIST-EXTENDED", IMAP_CAP_LIST_EXTENDED},
	{"ESEARCH", IMAP_CAP_ESEARCH},	 {"NAMESPACE", IMAP_CAP_NAMESPACE},
	{"UTF8=ACCEPT", IMAP_CAP_UTF8_ACCEPT}, {"MOVE", IMAP_CAP_MOVE},
	{"BINARY", IMAP_CAP_BINARY},		 {"AUTH=XOAUTH2", IMAP_CAP_AUTH_XOAUTH2},
	{"AUTH=OAUTHBEARER", IMAP_CAP_AUTH_OAUTHBEARER},
};

static void caps_parse(struct imap_client *c, const struct imap_node *n)
{
	uint32_t caps = 0;

	c->appendlimit = 0;
	for (; n; n = n->next) {
		if (n->type != IMAP_NODE_ATOM)
			continue;
		for (size_t i = 0; i < sizeof(cap_names) / sizeof(cap_names[0]); i++)
			if (imap_node_is(n, cap_names[i].name))
				caps |= cap_names[i].bit;
		if (n->len >= 11 && !strncasecmp(n->s, "APPENDLIMIT", 11)) {
			caps |= IMAP_CAP_APPENDLIMIT;
			if (n->len > 12 && n->s[11] == '=')
				c->appendlimit = strtoull(n->s + 12, NULL, 10);
		}
	}
	c->caps = caps;
}

/* True if r carries [CAPABILITY ...]; caps updated. */
int imc_caps_from_code(struct imap_client *c, const struct imap_resp *r)
{
	if (r->code && imap_node_is(r->code, "CAPABILITY")) {
		caps_parse(c, r->code->next);
		return 1;
	}
	return 0;
}

const struct imap_node *imap_resp_code(const struct imap_resp *r, const char *name)
{
	if (!r->code || !imap_node_is(r->code, name))
		return NULL;
	return r->code->next;
}

/* ---- writing ------------------------------------------------------------ */

/* MAILFERRY_TRACE=1: the protocol on stderr, message bodies and
 * credentials left out. */
static void trace(const struct imap_client *c, const char *dir, const void *p, size_t n)
{
	const char *s = p;
	struct timespec ts;

	if (!c->trace || !n)
		return;
	if (n > 200 && c->trace < 2)
		n = 200;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	fprintf(stderr, "trace %ld.%03ld %s %s ", (long)ts.tv_sec, ts.tv_nsec / 1000000, c->who, dir);
	for (size_t i = 0; i < n; i++)
		fputc(s[i] == '\r' ? '~' : (s[i] == '\n' || (unsigned char)s[i] >= 32) ? s[i] : '.', stderr);
	fputc('\n', stderr);
}

/* Room for need elements of elem bytes in *p (doubling; bounded by what
 * we write ourselves: names and command lines). */
static int hold_grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t n = *cap ? *cap : 256 / elem + 1;
	void *q;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	if (!(q = realloc(*p, n * elem)))
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

void imc_out(struct imap_client *c, const void *p, size_t n)
{
	if (c->closed)
		return;
	if (c->state != ST_AUTH) {
		trace(c, ">>", p, n);
	} else if (c->trace) { /* credentials: only that something went */
		char m[64];
		int k = snprintf(m, sizeof(m), "[%zu bytes of login hidden]", n);

		trace(c, ">>", m, (size_t)k);
	}
	if (c->hold_on) {
		if (hold_grow((void **)&c->hold, &c->hold_cap, c->hold_len + n, 1) < 0) {
			imc_client_fail(c, -ENOMEM, "out of memory for output");
			return;
		}
		memcpy(c->hold + c->hold_len, p, n);
		c->hold_len += n;
		return;
	}
	if (conn_write(&c->conn, p, n) < 0)
		imc_client_fail(c, -ENOMEM, "out of memory for output");
}

/* A synchronizing literal header was just written for the command being
 * written (the tail): one more "+" to wait for. */
static void literal_wait(struct imap_client *c, int astring)
{
	c->awaiting_cont++;
	if (c->tail)
		c->tail->lit_wait++;
	if (c->hold_on) {
		if (hold_grow((void **)&c->cuts, &c->ccuts, c->ncuts + 1, sizeof(*c->cuts)) < 0) {
			imc_client_fail(c, -ENOMEM, "out of memory for output");
			return;
		}
		c->cuts[c->ncuts].off = c->hold_len;
		c->cuts[c->ncuts++].astring = astring;
	}
	/* The "+" is a reply: timed, and ACKed at once (conn_set_busy). */
	conn_set_busy(&c->conn, 1);
}

/* A "+" came: what was held behind that literal goes, up to the end of the
 * next synchronizing literal header among it. */
static void hold_release(struct imap_client *c)
{
	size_t n = c->ncuts ? c->cuts[0].off : c->hold_len;
	int more = c->ncuts && c->cuts[0].astring;

	if (!c->hold_on)
		return;
	c->hold_on = 0;
	if (n && conn_write(&c->conn, c->hold, n) < 0) {
		imc_client_fail(c, -ENOMEM, "out of memory for output");
		return;
	}
	if (more) {
		/* The next name's bytes, and all after them, wait for its "+". */
		memmove(c->hold, c->hold + n, c->hold_len - n);
		c->hold_len -= n;
		memmove(c->cuts, c->cuts + 1, (c->ncuts - 1) * sizeof(*c->cuts));
		c->ncuts--;
		for (size_t i = 0; i < c->ncuts; i++)
			c->cuts[i].off -= n;
		c->hold_on = 1;
		return;
	}
	/* No more held names: a message literal's header (its bytes come
	 * from the caller once the "+" is in) or nothing; the rest goes. */
	if (c->hold_len > n && conn_write(&c->conn, c->hold + n, c->hold_len - n) < 0)
		imc_client_fail(c, -ENOMEM, "out of memory for output");
	c->hold_len = c->ncuts = 0;
}

void imap_put(struct imap_client *c, const char *s)
{
	imc_out(c, s, strlen(s));
}

void imap_putf(struct imap_client *c, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		imc_client_fail(c, -EINVAL, "internal: command too long");
		return;
	}
	imc_out(c, buf, (size_t)n);
}

void imap_put_raw(struct imap_client *c, const void *p, size_t n)
{
	imc_out(c, p, n);
}

/* A literal of n bytes may go without waiting for "+" (RFC 7888). */
int imc_literal_nonsync(const struct imap_client *c, uint64_t n)
{
	return (c->caps & IMAP_CAP_LITERALPLUS) || ((c->caps & IMAP_CAP_LITERALMINUS) && n <= 4096);
}

void imap_put_literal_header(struct imap_client *c, uint64_t n, int sp)
{
	int plus = imc_literal_nonsync(c, n);

	imap_putf(c, "%s{%llu%s}\r\n", sp ? " " : "", (unsigned long long)n, plus ? "+" : "");
	if (!plus)
		literal_wait(c, 0);
}

/* How an astring must travel (RFC 3501 §9): atom, quoted or literal. */
int imc_astring_form(const char *s, size_t n)
{
	int atom = n > 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == 0 || ch == '\r' || ch == '\n' || ch >= 0x80)
			return ASTR_LITERAL;
		if (ch <= ' ' || strchr("(){%*\"\\]", ch))
			atom = 0;
	}
	return atom ? ASTR_ATOM : ASTR_QUOTED;
}

static void put_quoted(struct imap_client *c, const char *s, size_t n)
{
	imc_out(c, "\"", 1);
	for (size_t i = 0, j = 0; i <= n; i++) {
		if (i == n || s[i] == '"' || s[i] == '\\') {
			imc_out(c, s + j, i - j);
			if (i < n)
				imc_out(c, "\\", 1);
			j = i;
		}
	}
	imc_out(c, "\"", 1);
}

int imap_uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The last index of the range that starts at i (uids[i] != 0). */
static size_t uid_run_end(const uint32_t *uids, size_t n, size_t i)
{
	while (i + 1 < n && uids[i + 1] >= uids[i] && uids[i + 1] <= uids[i] + 1)
		i++;
	return i;
}

size_t imap_uid_set_runs(const uint32_t *uids, size_t n)
{
	size_t runs = 0;

	for (size_t i = 0; i < n; i++)
		if (uids[i]) {
			i = uid_run_end(uids, n, i);
			runs++;
		}
	return runs;
}

void imap_put_uid_set(struct imap_client *c, const uint32_t *uids, size_t n)
{
	const char *sep = "";

	for (size_t i = 0; i < n; i++) {
		size_t k;

		if (!uids[i])
			continue;
		k = uid_run_end(uids, n, i);
		if (uids[k] != uids[i])
			imap_putf(c, "%s%u:%u", sep, uids[i], uids[k]);
		else
			imap_putf(c, "%s%u", sep, uids[i]);
		sep = ",";
		i = k;
	}
}

void imap_put_astring(struct imap_client *c, const char *s, size_t n)
{
	switch (imc_astring_form(s, n)) {
	case ASTR_ATOM:
		imc_out(c, s, n);
		break;
	case ASTR_QUOTED:
		put_quoted(c, s, n);
		break;
	default:
		if (imc_literal_nonsync(c, n)) {
			imap_put_literal_header(c, n, 0);
			imc_out(c, s, n);
			break;
		}
		/* RFC 3501 §7.5: the name's bytes, and whatever is written after
		 * them, wait for the server's "+" (hold_release). */
		imap_putf(c, "{%zu}\r\n", n);
		literal_wait(c, 1);
		c->hold_on = 1;
		imc_out(c, s, n);
	}
}

void imap_cmd_begin_consumer(struct imap_client *c, struct imap_cmd *cmd, imap_done_fn done,
			     void *ud, const struct imap_consumer *k)
{
	if (c->enable_due && c->state == ST_READY && !c->closed)
		imc_send_enable(c);
	cmd->done = done;
	cmd->ud = ud;
	cmd->consumer = k;
	cmd->tag = ++c->next_tag;
	cmd->next = cmd->cnext = NULL;
	cmd->lit_wait = 0;
	if (c->tail)
		c->tail->next = cmd;
	else
		c->head = cmd;
	c->tail = cmd;
	if (k) {
		if (c->ctail)
			c->ctail->cnext = cmd;
		else
			c->chead = cmd;
		c->ctail = cmd;
	}
	c->inflight++;
	cmd->untagged_max = IMAP_UNTAGGED_PER_CMD + 2 * (uint64_t)c->exists;
	c->untagged_allow += cmd->untagged_max;
	imap_putf(c, "A%u ", cmd->tag);
}

void imap_cmd_begin(struct imap_client *c, struct imap_cmd *cmd, imap_done_fn done, void *ud)
{
	imap_cmd_begin_consumer(c, cmd, done, ud, NULL);
}

/* The tagged reply came: cmd leaves the consumer queue (replies may come
 * in any order, so it is looked for; the queue holds only the few
 * commands with a consumer). */
static void consumer_unlink(struct imap_client *c, struct imap_cmd *cmd)
{
	struct imap_cmd *p = NULL, *it;

	if (!cmd->consumer)
		return;
	for (it = c->chead; it && it != cmd; it = it->cnext)
		p = it;
	if (!it)
		return;
	if (p)
		p->cnext = it->cnext;
	else
		c->chead = it->cnext;
	if (c->ctail == it)
		c->ctail = p;
	if (c->lit_cmd == it)
		c->lit_cmd = NULL;
}

void imap_cmd_end(struct imap_client *c)
{
	imc_out(c, "\r\n", 2);
	if (!c->closed)
		conn_set_busy(&c->conn, 1);
}

size_t imap_write_space(struct imap_client *c)
{
	if (c->closed || c->awaiting_cont)
		return 0;
	return conn_write_space(&c->conn);
}

void imap_want_writable(struct imap_client *c)
{
	c->want_writable = 1;
	if (!c->awaiting_cont)
		conn_want_drain(&c->conn);
}

static void writable_notify(struct imap_client *c)
{
	if (c->want_writable && !c->awaiting_cont && !c->closed) {
		c->want_writable = 0;
		if (c->cb->writable)
			c->cb->writable(c);
	}
}

/* ---- input ------------------------------------------------------------- */

static int on_cont(struct imap_client *c, const struct imap_resp *r)
{
	if (c->state == ST_AUTH && c->auth_cont == AUTH_CONT_SASL) {
		char b64[SASL_PLAIN_B64_MAX];

		c->auth_cont = AUTH_CONT_NONE;
		imc_sasl_plain(c, b64, sizeof(b64));
		imap_put(c, b64);
		imap_put(c, "\r\n");
		OPENSSL_cleanse(b64, sizeof(b64));
		return 0;
	}
	if (c->state == ST_AUTH && c->auth_cont == AUTH_CONT_LITERAL) {
		imc_login_next(c);
		return 0;
	}
	if (c->state == ST_AUTH && c->auth_cont == AUTH_CONT_OAUTH && c->oauth_b64) {
		c->auth_cont = AUTH_CONT_OAUTH_ERR;
		imap_put(c, c->oauth_b64);
		imap_put(c, "\r\n");
		return 0;
	}
	if (c->state == ST_AUTH && c->auth_cont == AUTH_CONT_OAUTH_ERR) {
		imc_oauth_challenge(c, r);
		return 0;
	}
	if (c->state == ST_AUTH) {
		imc_client_fail(c, -EPROTO, "unexpected continuation during login");
		return -EPROTO;
	}
	if (!c->awaiting_cont) {
		imc_client_fail(c, -EPROTO, "unexpected continuation: %.*s", (int)r->text_len, r->text);
		return -EPROTO;
	}
	c->awaiting_cont--;
	for (struct imap_cmd *w = c->head; w; w = w->next)
		if (w->lit_wait) {
			w->lit_wait--;
			break;
		}
	hold_release(c);
	if (!c->awaiting_cont)
		writable_notify(c);
	return 0;
}

/* "A123" → 123, 0 if not one of ours. */
static uint32_t tag_number(const struct imap_resp *r)
{
	uint64_t v = 0;

	if (r->tag_len < 2 || r->tag_len > 11 || r->tag[0] != 'A')
		return 0;
	for (size_t i = 1; i < r->tag_len; i++) {
		if (r->tag[i] < '0' || r->tag[i] > '9')
			return 0;
		v = v * 10 + (uint64_t)(r->tag[i] - '0');
	}
	return v <= UINT32_MAX ? (uint32_t)v : 0;
}

/* Tagged replies may come in any order: servers run commands that cannot
 * interfere in parallel (RFC 3501 §5.5; Dovecot answers a UID SEARCH
 * before an earlier UID FETCH). */
/* RFC 5530 [THROTTLED] or [UNAVAILABLE], or Microsoft 365's "Request is
 * throttled. Suggested Backoff Time: N milliseconds": the session ends
 * with THROTTLE_ERR and the code and text in the message, so its owner
 * reopens it after the hint (worker_reconnect) instead of each command's
 * owner failing a mailbox or a message over it. Returns 1 if so. */
static int throttled(struct imap_client *c, const struct imap_resp *r, const char *what)
{
	struct throttle_hint h;
	const char *code = r->code ? r->code->s : NULL;
	size_t code_len = r->code ? r->code->len : 0;

	if (!throttle_parse(code, code_len, r->text, r->text_len, &h))
		return 0;
	imc_client_fail(c, THROTTLE_ERR, "server throttles: %s %s%.*s%s%.*s", what, code ? "[" : "",
	            (int)code_len, code ? code : "", code ? "] " : "", (int)r->text_len, r->text);
	return 1;
}

static int on_tagged(struct imap_client *c, const struct imap_resp *r)
{
	uint32_t tag = tag_number(r);
	struct imap_cmd *cmd, *prev = NULL;

	for (cmd = c->head; cmd && cmd->tag != tag; cmd = cmd->next)
		prev = cmd;
	if (!cmd || !tag) {
		/* Not quoted: servers echo a line they could not parse with its
		 * first word as the tag, and that line was ours. */
		imc_client_fail(c, -EPROTO,
		            "tagged reply to a command that was never sent (%zu-byte tag)",
		            r->tag_len);
		return -EPROTO;
	}
	if (prev)
		prev->next = cmd->next;
	else
		c->head = cmd->next;
	if (c->tail == cmd)
		c->tail = prev;
	consumer_unlink(c, cmd);
	c->inflight--;
	c->untagged_allow -= cmd->untagged_max;
	c->untagged_seen = 0;
	/* A refused literal: the server answered instead of sending "+". */
	if (cmd->lit_wait) {
		if (c->hold_on) {
			/* The rest of the command is held behind its name: there
			 * is no way to finish it that the server would not read
			 * as a command of its own. */
			imc_client_fail(c, -EPROTO,
			            "server answered a command without the \"+\" for its "
			            "mailbox name literal");
			return -EPROTO;
		}
		c->awaiting_cont -= cmd->lit_wait < c->awaiting_cont ? cmd->lit_wait : c->awaiting_cont;
	}
	/* Capabilities before TLS are never trusted (RFC 3501 §6.2.1), a
	 * [CAPABILITY] on the STARTTLS OK included: they are read again after
	 * the handshake. */
	if (c->state != ST_STARTTLS)
		imc_caps_from_code(c, r);
	if (c->state != ST_LOGOUT)
		conn_set_busy(&c->conn, c->inflight > 0);
	if (c->state == ST_READY && !c->login_pending &&
	    (r->status == IMAP_ST_NO || r->status == IMAP_ST_BAD) &&
	    throttled(c, r, r->status == IMAP_ST_NO ? "NO" : "BAD"))
		return THROTTLE_ERR;
	cmd->done(c, cmd, r);
	return 0;
}

static void on_greeting(struct imap_client *c, const struct imap_resp *r)
{
	if (r->kind != IMAP_RESP_UNTAGGED ||
	    (r->status != IMAP_ST_OK && r->status != IMAP_ST_PREAUTH)) {
		imc_client_fail(c, -EPROTO, "bad greeting: %.*s", (int)r->text_len, r->text);
		return;
	}
	c->append_locks = memmem(r->text, r->text_len, "Courier", 7) != NULL;
	if (r->status == IMAP_ST_PREAUTH) {
		/* STARTTLS is valid only before authentication (RFC 3501 §6.2.1):
		 * after PREAUTH the session can never be encrypted. Where it must
		 * be, no mailbox is touched. */
		if (c->ep->tls == IMAP_TLS_STARTTLS && !conn_is_tls(&c->conn) &&
		    !conn_is_loopback(&c->conn) && !c->ep->allow_plaintext) {
			imc_client_fail(
			    c, -EPERM,
			    "server greeted with PREAUTH on an unencrypted connection, so "
			    "STARTTLS is impossible; refusing to exchange mail in the clear "
			    "(use imaps://, or --allow-plaintext)");
			return;
		}
		if (!imc_caps_from_code(c, r)) {
			imc_send_capability(c, ST_CAPA_POST);
			return;
		}
		imc_after_auth(c);
		return;
	}
	/* Commands go behind the login unanswered (imap_login's auth_sent)
	 * only to a server known to keep them: Dovecot's login process hands
	 * its input on to the session. Courier-IMAP's login process execs
	 * the session and loses it (the commands are never answered); Cyrus
	 * IMAP 3.6 reads an AUTHENTICATE followed by more input twice (a
	 * second "BAD Already authenticated" under its tag); others: unknown. */
	c->login_pipelines = memmem(r->text, r->text_len, "Dovecot", 7) != NULL;
	if (!imc_caps_from_code(c, r)) {
		imc_send_capability(c, ST_CAPA_PRE);
		return;
	}
	imc_after_capabilities_pre(c);
}

/* Bounds what a server may send between two tagged replies. */
static int untagged_flood(struct imap_client *c, const struct imap_resp *r)
{
	uint64_t allow = c->untagged_allow ? c->untagged_allow : IMAP_UNTAGGED_PER_CMD;
	const struct imap_node *a = r->first;
	uint32_t n;

	if (++c->untagged_seen > allow) {
		imc_client_fail(c, -EPROTO,
		            "more than %llu untagged responses without a tagged reply; "
		            "giving up on this server",
		            (unsigned long long)allow);
		return 1;
	}
	if (r->status == IMAP_ST_NONE && a && imap_node_is(a->next, "EXISTS") &&
	    !imap_node_u32(a, &n) && n == c->exists) {
		if (++c->exists_same > IMAP_EXISTS_REPEAT_MAX) {
			imc_client_fail(c, -EPROTO,
			            "server repeats \"* %u EXISTS\" endlessly (%u times)", n,
			            c->exists_same);
			return 1;
		}
	} else {
		c->exists_same = 0;
	}
	return 0;
}

static int on_response(void *ctx, const struct imap_resp *r)
{
	struct imap_client *c = ctx;
	int rc = 0;

	if (c->closed)
		return -ECANCELED;
	if (c->state == ST_GREETING) {
		on_greeting(c, r);
	} else if (r->kind == IMAP_RESP_CONT) {
		on_cont(c, r);
	} else if (r->kind == IMAP_RESP_TAGGED) {
		on_tagged(c, r);
		/* After the STARTTLS OK, parse nothing more: whatever follows stays
		 * in conn's input buffer, where conn_starttls refuses it
		 * (RFC 3501 §6.2.1). Parsed here, a partial line would be glued to
		 * the first line from inside TLS. */
		if (c->state == ST_HANDSHAKE && !c->closed)
			return IMAP_PARSE_PAUSE;
	} else if (r->status == IMAP_ST_BYE) {
		if (c->state == ST_LOGOUT)
			return 0;
		if (!throttled(c, r, "BYE"))
			imc_client_fail(c, -ECONNRESET, "server said BYE: %.*s", (int)r->text_len,
			            r->text);
	} else {
		if (untagged_flood(c, r))
			return -ECANCELED;
		imc_caps_from_code(c, r);
		if (r->status == IMAP_ST_NONE && r->first) {
			const struct imap_node *a = r->first, *b = a->next;

			if (imap_node_is(a, "CAPABILITY"))
				caps_parse(c, a->next);
			else if (imap_node_is(a, "ENABLED"))
				for (; b; b = b->next) {
					if (imap_node_is(b, "QRESYNC"))
						c->enabled_qresync = c->enabled_condstore = 1;
					if (imap_node_is(b, "CONDSTORE"))
						c->enabled_condstore = 1;
				}
			else if (b && imap_node_is(b, "EXISTS"))
				imap_node_u32(a, &c->exists);
		}
		if (c->state == ST_READY && c->chead && c->chead->consumer->untagged)
			rc = c->chead->consumer->untagged(c, c->chead, r);
		else if (c->state == ST_READY && c->cb->untagged)
			rc = c->cb->untagged(c, r);
	}
	if (rc == IMAP_PARSE_PAUSE && !c->closed)
		conn_pause(&c->conn);
	return c->closed ? -ECANCELED : rc;
}

static int on_lit_begin(void *ctx, const struct imap_resp *r, const struct imap_node *key,
			uint64_t size)
{
	struct imap_client *c = ctx;

	/* The literal's data and end go where its begin went, whatever
	 * happens to the queue meanwhile. */
	c->lit_cmd = NULL;
	if (c->state != ST_READY)
		return IMAP_LIT_INLINE;
	if (c->chead && c->chead->consumer->lit_begin) {
		c->lit_cmd = c->chead;
		return c->lit_cmd->consumer->lit_begin(c, c->lit_cmd, r, key, size);
	}
	if (!c->cb->lit_begin)
		return IMAP_LIT_INLINE;
	return c->cb->lit_begin(c, r, key, size);
}

static ssize_t on_lit_data(void *ctx, const uint8_t *p, size_t n)
{
	struct imap_client *c = ctx;

	if (c->lit_cmd)
		return c->lit_cmd->consumer->lit_data ? c->lit_cmd->consumer->lit_data(c, c->lit_cmd, p, n)
		                                       : (ssize_t)n;
	if (!c->cb->lit_data)
		return (ssize_t)n;
	return c->cb->lit_data(c, p, n);
}

static int on_lit_end(void *ctx)
{
	struct imap_client *c = ctx;
	struct imap_cmd *cmd = c->lit_cmd;

	c->lit_cmd = NULL;
	if (cmd)
		return cmd->consumer->lit_end ? cmd->consumer->lit_end(c, cmd) : 0;
	return c->cb->lit_end ? c->cb->lit_end(c) : 0;
}

static size_t on_data(struct conn *conn, const uint8_t *p, size_t n)
{
	struct imap_client *c = conn->ud;
	ssize_t r;

	if (c->closed)
		return n;
	trace(c, "<<", p, n);
	r = imap_parse_feed(&c->parser, p, n);
	if (c->closed)
		return n;
	if (r == IMAP_PARSE_EBAD) {
		imc_client_fail(c, -EPROTO, "malformed reply: %s at byte %llu", c->parser.err,
			    (unsigned long long)c->parser.err_pos);
		return n;
	}
	if (r < 0) {
		imc_client_fail(c, (int)r, "reply processing failed (%s)", strerror((int)-r));
		return n;
	}
	return (size_t)r;
}

static void on_connected(struct conn *conn)
{
	struct imap_client *c = conn->ud;

	c->state = ST_GREETING;
	conn_set_busy(conn, 1);
}

static void on_drain(struct conn *conn)
{
	struct imap_client *c = conn->ud;

	if (c->state == ST_LOGOUT && c->logout_nowait && !c->closed) {
		/* LOGOUT is with the kernel: the session ends without its answer */
		if (conn_write_pending(&c->conn))
			conn_want_drain(&c->conn);
		else
			client_shutdown(c);
		return;
	}
	writable_notify(c);
}

static void on_conn_error(struct conn *conn, const struct mf_error *err)
{
	struct imap_client *c = conn->ud;

	if (c->state == ST_LOGOUT && !c->closed) {
		client_shutdown(c);
		return;
	}
	imc_client_fail(c, err->code, "%s", err->msg);
}

static const struct conn_cb client_conn_cb = {
	.on_connected = on_connected,
	.on_tls_ready = imc_on_tls_ready,
	.on_data = on_data,
	.on_drain = on_drain,
	.on_error = on_conn_error,
};

int imap_client_open(struct imap_client *c, struct loop *l, const struct imap_endpoint *ep,
		     const struct imap_client_cb *cb, void *ud, struct mf_error *err)
{
	struct imap_parser_cb pcb = {
		.ctx = c,
		.response = on_response,
		.lit_begin = on_lit_begin,
		.lit_data = on_lit_data,
		.lit_end = on_lit_end,
	};
	struct conn_opts o = {
	    .host = ep->host,
	    .port = ep->port,
	    .tls = ep->tls == IMAP_TLS_IMPLICIT,
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
	snprintf(c->who, sizeof(c->who), "%s %s@%s", ep->label, ep->user, ep->host);
	c->trace = getenv("MAILFERRY_TRACE") ? atoi(getenv("MAILFERRY_TRACE")) : 0;
	if (imap_parser_init(&c->parser, &pcb, 0, 0) < 0) {
		mf_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	if (!l->mem_max)
		l->mem_max = IMAP_MEM_BUDGET_DEFAULT;
	imap_parser_budget(&c->parser, &l->mem_used, l->mem_max);
	if (conn_open(&c->conn, l, &o, &client_conn_cb, c, err) < 0) {
		char m[MF_ERR_MAX];

		snprintf(m, sizeof(m), "%s", err->msg);
		mf_err_set(err, err->code, "%s: %s", imap_client_who(c), m);
		imap_parser_free(&c->parser);
		c->closed = 1;
		return err->code ? err->code : -EIO;
	}
	c->parser_live = 1;
	c->conn_open = 1;
	c->t_open_us = imc_mono_us();
	conn_set_deadline(&c->conn, ep->login_timeout_ms ? ep->login_timeout_ms : 2 * o.timeout_ms,
	                  "greeting and login");
	return 0;
}

/* CLOCK_MONOTONIC in microseconds: how long a greeting took (cb->greeted). */
uint64_t imc_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* LOGOUT answered: the session ends when the server closes the connection
 * (RFC 3501 §6.1.3: it closes after the OK), not at the OK, so that a slot
 * of --max-per-host is free only once the server's side is gone; a server
 * that keeps it open is left after 2 s (on_conn_error in ST_LOGOUT). */
static void logout_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	(void)cmd;
	(void)r;
	conn_set_deadline(&c->conn, 2000, "closing after LOGOUT");
}

void imap_client_logout(struct imap_client *c)
{
	if (c->closed)
		return;
	c->state = ST_LOGOUT;
	imap_cmd_begin(c, &c->logout_cmd, logout_done, NULL);
	imap_put(c, "LOGOUT");
	imap_cmd_end(c);
	if (c->logout_nowait && !c->closed) {
		c->conn.close_fin = 1; /* LOGOUT is delivered, never reset away */
		conn_want_drain(&c->conn);
	}
}

void imap_client_close(struct imap_client *c)
{
	client_shutdown(c);
	if (c->parser_live) {
		imap_parser_free(&c->parser);
		c->parser_live = 0;
	}
}

void imap_client_abort(struct imap_client *c)
{
	client_shutdown(c);
}

void imap_client_kick(struct imap_client *c)
{
	if (!c->closed)
		conn_kick(&c->conn);
}

void imap_client_pause(struct imap_client *c)
{
	if (!c->closed)
		conn_pause(&c->conn);
}
