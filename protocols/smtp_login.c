/*
 * smtp_login — an SMTP/LMTP session up to ready: the greeting, EHLO/LHLO
 * (or HELO) and its capabilities, STARTTLS and the plaintext policy, AUTH
 * PLAIN or LOGIN.
 *
 * Not for: transactions and the connection (smtp_client.c).
 */
#include "protocols/smtp_client_int.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "protocols/sasl_plain.h"

/* base64 of s[0..n) into out (NUL-terminated); 0 if it does not fit. */
size_t smc_b64(const void *s, size_t n, char *out, size_t cap)
{
	if ((n + 2) / 3 * 4 + 1 > cap) {
		if (cap)
			out[0] = '\0';
		return 0;
	}
	return (size_t)EVP_EncodeBlock((unsigned char *)out, s, (int)n);
}

/* The SASL PLAIN response (sasl_plain): base64("\0user\0password"); its
 * length, 0 if it cannot be built. */
size_t smc_sasl_plain(const struct smtp_client *c, char *out, size_t cap)
{
	const char *pw = c->ep->password ? c->ep->password : "";
	ssize_t n = sasl_plain(out, cap, "", 0, c->ep->user, strlen(c->ep->user), pw, strlen(pw));

	return n < 0 ? 0 : (size_t)n;
}

/* ---- capabilities (RFC 5321 §4.1.1.1: one EHLO keyword per line) -------- */

static int word_is(const char *s, size_t n, const char *w)
{
	size_t k = strlen(w);

	return n >= k && !strncasecmp(s, w, k) && (n == k || s[k] == ' ' || s[k] == '=');
}

void smc_ehlo_line(struct smtp_client *c, const char *s, size_t n)
{
	static const struct {
		const char *kw;
		uint32_t bit;
	} kws[] = {
	    {"PIPELINING", SMTP_CAP_PIPELINING},
	    {"CHUNKING", SMTP_CAP_CHUNKING},
	    {"8BITMIME", SMTP_CAP_8BITMIME},
	    {"SMTPUTF8", SMTP_CAP_SMTPUTF8},
	    {"STARTTLS", SMTP_CAP_STARTTLS},
	    {"ENHANCEDSTATUSCODES", SMTP_CAP_ENHANCEDSTATUSCODES},
	};

	for (size_t i = 0; i < sizeof(kws) / sizeof(kws[0]); i++)
		if (word_is(s, n, kws[i].kw))
			c->caps |= kws[i].bit;
	if (word_is(s, n, "SIZE")) {
		/* RFC 1870 §4: "SIZE" alone or "SIZE n", n = 0 for no limit */
		uint64_t v = 0;
		size_t i = 4;

		c->caps |= SMTP_CAP_SIZE;
		while (i < n && s[i] == ' ')
			i++;
		for (; i < n && s[i] >= '0' && s[i] <= '9' && v < UINT64_MAX / 10 - 10; i++)
			v = v * 10 + (uint64_t)(s[i] - '0');
		c->size_max = v;
	}
	/* "AUTH PLAIN LOGIN", or the pre-RFC "AUTH=PLAIN LOGIN" */
	if (word_is(s, n, "AUTH")) {
		size_t i = 5;

		while (i < n) {
			size_t j = i;

			while (j < n && s[j] != ' ')
				j++;
			if (word_is(s + i, j - i, "PLAIN"))
				c->caps |= SMTP_CAP_AUTH_PLAIN;
			if (word_is(s + i, j - i, "LOGIN"))
				c->caps |= SMTP_CAP_AUTH_LOGIN;
			i = j + 1;
		}
	}
}

/* ---- session set-up ------------------------------------------------------ */

static void send_ehlo(struct smtp_client *c)
{
	c->state = ST_EHLO;
	c->caps = 0;
	c->size_max = 0;
	smc_cmd(c, 0, "%s %s", c->ep->lmtp ? "LHLO" : "EHLO", c->ep->helo ? c->ep->helo : "localhost");
}

static void go_ready(struct smtp_client *c)
{
	c->state = ST_READY;
	conn_set_deadline(&c->conn, 0, NULL);
	conn_set_busy(&c->conn, 0);
	c->cb->ready(c);
}

static void send_auth(struct smtp_client *c)
{
	char resp[SASL_PLAIN_B64_MAX];

	c->state = ST_AUTH;
	c->auth_step = 0;
	if (c->caps & SMTP_CAP_AUTH_PLAIN) {
		/* RFC 4954 §4: the initial response saves a round trip. */
		if (!smc_sasl_plain(c, resp, sizeof(resp))) {
			smc_fail(c, -EINVAL, "user name or password too long");
			return;
		}
		smc_cmd(c, 1, "AUTH PLAIN %s", resp);
		smc_trace(c, ">>", "AUTH PLAIN ***", 14);
		OPENSSL_cleanse(resp, sizeof(resp));
		c->auth_step = 10; /* no 334 expected */
	} else if (c->caps & SMTP_CAP_AUTH_LOGIN) {
		smc_cmd(c, 0, "AUTH LOGIN");
	} else {
		smc_fail(c, -EPERM, "server offers neither AUTH PLAIN nor AUTH LOGIN");
	}
}

/* After EHLO/LHLO (or HELO): STARTTLS, the plaintext policy, AUTH. */
static void after_ehlo(struct smtp_client *c)
{
	int tls = conn_is_tls(&c->conn), local = conn_is_loopback(&c->conn);

	if (!tls && c->ep->tls == SMTP_TLS_STARTTLS && (c->caps & SMTP_CAP_STARTTLS)) {
		c->state = ST_STARTTLS;
		smc_cmd(c, 0, "STARTTLS");
		return;
	}
	if (!tls && !local && !c->ep->allow_plaintext) {
		smc_fail(
		    c, -EPERM,
		    "%s; refusing to send mail%s unencrypted (use smtps://, or --allow-plaintext)",
		    c->ep->tls == SMTP_TLS_STARTTLS ? "server does not offer STARTTLS"
		                                    : "TLS is off and the server is not local",
		    c->ep->user ? " and the password" : "");
		return;
	}
	if (c->ep->user) {
		send_auth(c);
		return;
	}
	go_ready(c);
}

void smc_on_tls_ready(struct conn *conn)
{
	struct smtp_client *c = conn->ud;

	/* RFC 3207 §4.2: forget what was learnt before TLS, EHLO again. */
	send_ehlo(c);
}

static void auth_reply(struct smtp_client *c)
{
	const struct smtp_reply *r = &c->parser.reply;
	char buf[600], enc[1500];

	if (r->code == 334 && c->auth_step < 2) {
		/* AUTH LOGIN (draft-murchison-sasl-login): user, then password */
		const char *v = c->auth_step == 0 ? c->ep->user
		                : c->ep->password ? c->ep->password
		                                  : "";

		if (!smc_b64(v, strlen(v), enc, sizeof(enc))) {
			smc_fail(c, -EINVAL, "user name or password too long");
			return;
		}
		c->auth_step++;
		smc_cmd(c, 1, "%s", enc);
		smc_trace(c, ">>", "***", 3);
		OPENSSL_cleanse(enc, sizeof(enc));
		return;
	}
	if (r->code == 334) {
		smc_fail(c, -EPROTO, "unexpected AUTH challenge: %s",
		            smc_reply_str(c, buf, sizeof(buf)));
		return;
	}
	if (smtp_reply_class(r) != 2) {
		smc_fail(c, smtp_reply_class(r) == 4 ? -EAGAIN : -EACCES,
		            "authentication failed: %s", smc_reply_str(c, buf, sizeof(buf)));
		return;
	}
	if (c->auth_step != 10 && c->auth_step != 2) {
		smc_fail(c, -EPROTO, "server accepted the login before it was complete");
		return;
	}
	go_ready(c);
}

/* A reply during set-up. Returns 1 to stop reading (STARTTLS). */
int smc_setup_reply(struct smtp_client *c)
{
	const struct smtp_reply *r = &c->parser.reply;
	struct mf_error e;
	char buf[600];

	switch (c->state) {
	case ST_GREETING:
		if (r->code != 220) {
			smc_fail(c, r->code / 100 == 4 ? -EAGAIN : -ECONNREFUSED,
			            "server refused the session: %s",
			            smc_reply_str(c, buf, sizeof(buf)));
			return 0;
		}
		send_ehlo(c);
		return 0;
	case ST_EHLO:
		if (smtp_reply_class(r) == 2) {
			after_ehlo(c);
		} else if (!c->ep->lmtp && smtp_reply_class(r) == 5 && !conn_is_tls(&c->conn)) {
			/* RFC 5321 §3.2: an old server; no extensions then */
			c->state = ST_HELO;
			smc_cmd(c, 0, "HELO %s", c->ep->helo ? c->ep->helo : "localhost");
		} else {
			smc_fail(c, -EPROTO, "%s refused: %s", c->ep->lmtp ? "LHLO" : "EHLO",
			            smc_reply_str(c, buf, sizeof(buf)));
		}
		return 0;
	case ST_HELO:
		if (smtp_reply_class(r) != 2) {
			smc_fail(c, -EPROTO, "HELO refused: %s", smc_reply_str(c, buf, sizeof(buf)));
			return 0;
		}
		c->caps = 0;
		after_ehlo(c);
		return 0;
	case ST_STARTTLS:
		if (r->code != 220) {
			smc_fail(c, -EPROTO, "STARTTLS refused: %s",
			            smc_reply_str(c, buf, sizeof(buf)));
			return 0;
		}
		c->state = ST_HANDSHAKE;
		/* RFC 3207 §4.2 / RFC 3501 §6.2.1: bytes after the 220 and before
		 * the handshake were injected; conn_starttls refuses them. */
		if (conn_starttls(&c->conn, &e) < 0) {
			smc_fail(c, e.code, "%s", e.msg);
			return 0;
		}
		return 1;
	case ST_AUTH:
		auth_reply(c);
		return 0;
	default:
		smc_fail(c, -EPROTO, "unexpected reply: %s", smc_reply_str(c, buf, sizeof(buf)));
		return 0;
	}
}

