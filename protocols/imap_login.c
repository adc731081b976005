/*
 * imap_login — the login sequence of one IMAP connection: CAPABILITY,
 * STARTTLS, LOGIN or AUTHENTICATE (PLAIN, OAUTHBEARER, XOAUTH2, with or
 * without SASL-IR, synchronizing literals waited for), then ENABLE.
 *
 * Not for: writing commands or reading responses (imap_client.c).
 */
#include "protocols/imap_client.h"
#include "protocols/imap_client_int.h"
#include "protocols/sasl_plain.h"
#include "protocols/throttle.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

/* ---- login sequence ------------------------------------------------------ */

static void send_auth(struct imap_client *c);
static void auth_sent(struct imap_client *c);

static void capa_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		imc_client_fail(c, -EPROTO, "CAPABILITY failed: %.*s", (int)r->text_len, r->text);
		return;
	}
	if (c->state == ST_CAPA_PRE)
		send_auth(c);
	else
		imc_after_auth(c);
}

void imc_send_capability(struct imap_client *c, int state)
{
	/* after a pipelined login the session stays ready: the commands
	 * behind it keep their data */
	if (!c->login_pending)
		c->state = state;
	imap_cmd_begin(c, &c->aux_cmd, capa_done, NULL);
	imap_put(c, "CAPABILITY");
	imap_cmd_end(c);
}

static void starttls_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct mf_error e;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		imc_client_fail(c, -EPROTO, "STARTTLS refused: %.*s", (int)r->text_len, r->text);
		return;
	}
	c->state = ST_HANDSHAKE;
	/* RFC 3501 §6.2.1: anything the server sent after its OK and before the
	 * handshake is an injection attempt; conn_starttls refuses it. */
	if (conn_starttls(&c->conn, &e) < 0)
		imc_client_fail(c, e.code, "%s", e.msg);
}

void imc_after_capabilities_pre(struct imap_client *c)
{
	if (c->ep->tls == IMAP_TLS_STARTTLS && !conn_is_tls(&c->conn)) {
		if (c->caps & IMAP_CAP_STARTTLS) {
			c->state = ST_STARTTLS;
			imap_cmd_begin(c, &c->aux_cmd, starttls_done, NULL);
			imap_put(c, "STARTTLS");
			imap_cmd_end(c);
			return;
		}
		if (!conn_is_loopback(&c->conn) && !c->ep->allow_plaintext) {
			imc_client_fail(c, -EPERM,
				    "server does not offer STARTTLS; refusing to send the password "
				    "unencrypted (use imaps://, or --allow-plaintext)");
			return;
		}
	}
	send_auth(c);
}

void imc_on_tls_ready(struct conn *conn)
{
	struct imap_client *c = conn->ud;

	/* RFC 3501 §6.2.1: capabilities must be fetched again after STARTTLS. */
	c->caps = 0;
	imc_send_capability(c, ST_CAPA_PRE);
}

static void oauth_send(struct imap_client *c);
static int oauth_fetch(struct imap_client *c, int refresh);
static void oauth_refreshed(struct imap_client *c);

static void auth_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	int incomplete = c->auth_cont == AUTH_CONT_SASL || c->auth_cont == AUTH_CONT_LITERAL ||
	                 c->auth_cont == AUTH_CONT_OAUTH;
	int aborted = c->auth_cont == AUTH_CONT_OAUTH_DONE;

	(void)cmd;
	c->auth_cont = AUTH_CONT_NONE;
	if (r->status == IMAP_ST_OK && (incomplete || aborted)) {
		imc_client_fail(c, -EPROTO, "server accepted the login %s",
		            aborted ? "after refusing the OAuth2 token" : "before it was complete");
		return;
	}
	if (r->status != IMAP_ST_OK && c->oauth_mech) {
		snprintf(c->oauth_no, sizeof(c->oauth_no),
		         "the OAuth2 token was refused%s%s%s: %s%.*s%s%.*s",
		         c->oauth_why[0] ? " (" : "", c->oauth_why, c->oauth_why[0] ? ")" : "",
		         r->code ? "[" : "", r->code ? (int)r->code->len : 0, r->code ? r->code->s : "",
		         r->code ? "] " : "", (int)r->text_len, r->text);
		/* Refused: maybe expired. A new token (the command run again, the
		 * file re-read) gets one more try on this connection. */
		if (!c->oauth_retried) {
			c->oauth_retried = 1;
			c->oauth_old_gen = c->oauth_gen;
			if (oauth_fetch(c, 1) == 0)
				oauth_refreshed(c);
			return; /* or failed, or oauth_ready follows */
		}
		imc_client_fail(c, -EACCES, "login failed: %s", c->oauth_no);
		return;
	}
	if (r->status != IMAP_ST_OK) {
		imc_client_fail(c, -EACCES, "login failed: %s%.*s%s%.*s",
			    r->code ? "[" : "", r->code ? (int)r->code->len : 0,
			    r->code ? r->code->s : "", r->code ? "] " : "", (int)r->text_len, r->text);
		return;
	}
	if (imc_caps_from_code(c, r))
		imc_after_auth(c);
	else
		imc_send_capability(c, ST_CAPA_POST);
}

/* The PLAIN response (sasl_plain). Without an admin login the
 * authorization identity is empty (the user acts as itself); with one it
 * is the user, the admin the authentication identity. "" if it cannot be
 * built. */
void imc_sasl_plain(struct imap_client *c, char *b64, size_t cap)
{
	const char *authz = c->ep->authuser ? c->ep->user : "";
	const char *authc = c->ep->authuser ? c->ep->authuser : c->ep->user;

	sasl_plain(b64, cap, authz, strlen(authz), authc, strlen(authc), c->ep->password,
	           strlen(c->ep->password));
}

/* Starts one LOGIN argument; 1 if it is a synchronizing literal whose bytes
 * must wait for the server's "+" (RFC 3501 §4.3, §7.5). */
static int login_arg_begin(struct imap_client *c, const char *s)
{
	size_t n = strlen(s);

	if (imc_astring_form(s, n) != ASTR_LITERAL) {
		imap_put_astring(c, s, n);
		return 0;
	}
	if (imc_literal_nonsync(c, n)) {
		imap_putf(c, "{%zu+}\r\n", n);
		imc_out(c, s, n);
		return 0;
	}
	imap_putf(c, "{%zu}\r\n", n);
	return 1;
}

/* LOGIN user password, written up to the next synchronizing literal; called
 * again for each "+". Steps: 0 user, 1 its literal bytes, 2 password, 3 its
 * literal bytes. Nothing is sent ahead of a "+", so no credential byte can
 * be read by the server as a command line. */
void imc_login_next(struct imap_client *c)
{
	const char *arg[2] = {c->ep->user, c->ep->password};

	c->auth_cont = AUTH_CONT_NONE;
	while (c->auth_step < 4 && !c->closed) {
		int step = c->auth_step++;
		const char *a = arg[step / 2];

		if (step % 2) { /* after the "+" */
			imc_out(c, a, strlen(a));
			continue;
		}
		imap_put(c, step ? " " : "LOGIN ");
		if (login_arg_begin(c, a)) {
			c->auth_cont = AUTH_CONT_LITERAL;
			conn_set_busy(&c->conn, 1); /* the "+" is a reply: time it */
			return;
		}
		c->auth_step++;
	}
	imap_cmd_end(c);
	auth_sent(c);
}

static void oauth_ready(struct imap_token_wait *w, int rc, const struct mf_error *err);

void imap_client_login(struct imap_client *c)
{
	if (!c->auth_held || c->closed)
		return;
	c->auth_held = 0;
	conn_set_deadline(&c->conn, c->ep->login_timeout_ms ? c->ep->login_timeout_ms
	                                                    : 2 * c->ep->timeout_ms,
	                  "login");
	send_auth(c);
}

/* The token into c->oauth_b64's second half: 0, -1 (client failed), or 1:
 * a token command runs, oauth_ready follows. */
static int oauth_fetch(struct imap_client *c, int refresh)
{
	const struct imap_token_src *t = c->ep->token;
	struct mf_error e;
	int rc;

	if (!c->oauth_b64 && !(c->oauth_b64 = malloc(OAUTH_BUF))) {
		imc_client_fail(c, -ENOMEM, "out of memory");
		return -1;
	}
	mf_err_clear(&e);
	c->oauth_wait.ready = oauth_ready;
	rc = t->get(t->ctx, c->conn.loop, refresh, &c->oauth_gen, c->oauth_b64 + SASL_OAUTH_B64_MAX,
	            SASL_OAUTH_TOKEN_MAX + 1, &c->oauth_wait, &e);
	if (rc == -EINPROGRESS) {
		c->oauth_refreshing = refresh;
		return 1;
	}
	if (rc < 0) {
		imc_client_fail(c, e.code ? e.code : -EACCES, "%s", e.msg[0] ? e.msg : "no OAuth2 token");
		return -1;
	}
	return 0;
}

/* After a refusal: a newer token is tried once, else the login failed. */
static void oauth_refreshed(struct imap_client *c)
{
	if (c->oauth_gen != c->oauth_old_gen)
		oauth_send(c);
	else
		imc_client_fail(c, -EACCES, "login failed: %s", c->oauth_no);
}

/* The token command ended (from the loop, outside every callback). */
static void oauth_ready(struct imap_token_wait *w, int rc, const struct mf_error *err)
{
	struct imap_client *c =
	    (struct imap_client *)((char *)w - offsetof(struct imap_client, oauth_wait));

	if (c->closed)
		return;
	if (rc < 0) {
		imc_client_fail(c, rc, "%s", err && err->msg[0] ? err->msg : "no OAuth2 token");
		return;
	}
	if (oauth_fetch(c, 0) != 0)
		return;
	if (c->oauth_refreshing)
		oauth_refreshed(c);
	else
		oauth_send(c);
}

/* AUTHENTICATE OAUTHBEARER / XOAUTH2 with the token fetched; the message
 * goes inline with SASL-IR (RFC 4959), else after the server's "+". */
static void oauth_send(struct imap_client *c)
{
	char *b64 = c->oauth_b64, *tok = b64 + SASL_OAUTH_B64_MAX;
	ssize_t n;

	n = c->oauth_mech == OAUTH_BEARER
	        ? sasl_oauthbearer_encode(b64, SASL_OAUTH_B64_MAX, c->ep->user, c->ep->host,
	                                  c->ep->port, tok)
	        : sasl_xoauth2_encode(b64, SASL_OAUTH_B64_MAX, c->ep->user, tok);
	if (n < 0) {
		imc_client_fail(c, -EACCES,
		            "cannot send the OAuth2 login: %s",
		            n == -EINVAL ? "the token is not a bearer token (RFC 6750 §2.1) or the "
		                           "user name has control characters"
		                         : "the user name or the token is too long");
		return;
	}
	c->state = ST_AUTH;
	c->oauth_why[0] = '\0';
	imap_cmd_begin(c, &c->login_cmd, auth_done, NULL);
	imap_put(c, c->oauth_mech == OAUTH_BEARER ? "AUTHENTICATE OAUTHBEARER"
	                                          : "AUTHENTICATE XOAUTH2");
	if (c->caps & IMAP_CAP_SASL_IR) {
		imap_put(c, " ");
		imap_put(c, b64);
		c->auth_cont = AUTH_CONT_OAUTH_ERR;
	} else {
		c->auth_cont = AUTH_CONT_OAUTH;
	}
	imap_cmd_end(c);
}

/* The server refused the token with a challenge (RFC 7628 §3.2.2): note
 * what it said, checked and bounded, and end the exchange as each
 * mechanism wants (OAUTHBEARER %x01, XOAUTH2 an empty response). */
void imc_oauth_challenge(struct imap_client *c, const struct imap_resp *r)
{
	struct sasl_oauth_err e;

	if (sasl_oauth_error_parse(r->text, r->text_len, &e) < 0)
		snprintf(c->oauth_why, sizeof(c->oauth_why), "an unreadable error challenge");
	else
		snprintf(c->oauth_why, sizeof(c->oauth_why), "status=%s%s%s%s%s",
		         e.status[0] ? e.status : "?", e.scope[0] ? " scope=" : "", e.scope,
		         e.schemes[0] ? " schemes=" : "", e.schemes);
	c->auth_cont = AUTH_CONT_OAUTH_DONE;
	imap_put(c, c->oauth_mech == OAUTH_BEARER ? SASL_OAUTHBEARER_ABORT "\r\n" : "\r\n");
}

static void send_auth(struct imap_client *c)
{
	int secure = conn_is_tls(&c->conn) || conn_is_loopback(&c->conn) || c->ep->allow_plaintext;

	if (c->state == ST_READY)
		return;
	if (!c->auth_asked && c->cb->greeted) {
		c->auth_asked = 1;
		uint64_t us = imc_mono_us() - c->t_open_us;
		int hold = c->cb->greeted(c, us);

		if (c->trace)
			fprintf(stderr, "trace %s: greeting after %llu us, login %s\n", c->who,
			        (unsigned long long)us, hold ? "held" : "sent");
		if (hold) {
			c->auth_held = 1;
			conn_set_deadline(&c->conn, 0, NULL);
			return;
		}
	}
	if (!secure && c->ep->token) {
		imc_client_fail(c, -EPERM,
			    "refusing to send the OAuth2 token over an unencrypted connection "
			    "(use imaps:// or STARTTLS, or --allow-plaintext)");
		return;
	}
	if (c->ep->token) {
		c->oauth_mech = (c->caps & IMAP_CAP_AUTH_OAUTHBEARER) ? OAUTH_BEARER
		                : (c->caps & IMAP_CAP_AUTH_XOAUTH2) ? OAUTH_XOAUTH2
		                                                    : OAUTH_NONE;
		if (!c->oauth_mech) {
			imc_client_fail(c, -EACCES, "an OAuth2 login needs AUTH=OAUTHBEARER or "
			                        "AUTH=XOAUTH2, and the server offers neither");
			return;
		}
		if (oauth_fetch(c, 0) == 0)
			oauth_send(c);
		return;
	}
	if (!secure) {
		imc_client_fail(c, -EPERM,
			    "refusing to send the password over an unencrypted connection "
			    "(use imaps:// or STARTTLS, or --allow-plaintext)");
		return;
	}
	if ((c->caps & IMAP_CAP_LOGINDISABLED) && !(c->caps & IMAP_CAP_AUTH_PLAIN)) {
		imc_client_fail(c, -EPERM, "server refuses LOGIN (LOGINDISABLED) and offers no AUTH=PLAIN");
		return;
	}
	if (c->ep->authuser && !(c->caps & IMAP_CAP_AUTH_PLAIN)) {
		imc_client_fail(c, -EPERM,
		            "an admin login (--%s-authuser) needs AUTH=PLAIN, which the server does "
		            "not offer (a Dovecot master user can log in as \"user*admin\" instead)",
		            c->ep->label && c->ep->label[0] == 'd' ? "dst" : "src");
		return;
	}
	c->state = ST_AUTH;
	imap_cmd_begin(c, &c->login_cmd, auth_done, NULL);
	if (c->caps & IMAP_CAP_AUTH_PLAIN) {
		char b64[SASL_PLAIN_B64_MAX];

		imc_sasl_plain(c, b64, sizeof(b64));
		if (!b64[0]) {
			imc_client_fail(c, -EINVAL, "user name or password too long");
			return;
		}
		imap_put(c, "AUTHENTICATE PLAIN");
		if (c->caps & IMAP_CAP_SASL_IR) {
			imap_put(c, " ");
			imap_put(c, b64);
		} else {
			c->auth_cont = AUTH_CONT_SASL; /* the response goes after "+" */
		}
		OPENSSL_cleanse(b64, sizeof(b64));
		imap_cmd_end(c);
		auth_sent(c);
	} else {
		c->auth_step = 0;
		imc_login_next(c);
	}
}

/* The whole login is written and no "+" is awaited: an owner that can
 * take it (cb->logged_in) writes its commands behind it now, saving the
 * round trip of the login's answer. Capabilities are the greeting's until
 * the answer; a failed login fails the session (auth_done). */
static void auth_sent(struct imap_client *c)
{
	if (!c->cb->logged_in || c->auth_cont != AUTH_CONT_NONE || c->closed || c->ep->token ||
	    !c->login_pipelines)
		return;
	c->login_pending = 1;
	c->state = ST_READY;
	c->cb->ready(c);
}

static void enable_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	(void)cmd;
	if (r->status != IMAP_ST_OK)
		c->enabled_qresync = c->enabled_condstore = 0;
}

void imc_send_enable(struct imap_client *c)
{
	c->enable_due = 0;
	imap_cmd_begin(c, &c->enable_cmd, enable_done, NULL);
	imap_put(c, (c->caps & IMAP_CAP_QRESYNC) ? "ENABLE QRESYNC" : "ENABLE CONDSTORE");
	imap_cmd_end(c);
}

void imc_after_auth(struct imap_client *c)
{
	int early = c->login_pending;

	imc_oauth_wipe(c);
	c->state = ST_READY;
	c->login_pending = 0;
	conn_set_deadline(&c->conn, 0, NULL);
	if (c->ep->want_enable && (c->caps & IMAP_CAP_ENABLE) &&
	    (c->caps & (IMAP_CAP_QRESYNC | IMAP_CAP_CONDSTORE))) {
		/* After a pipelined login, ENABLE goes with the next command
		 * (imap_cmd_begin): a session that only says LOGOUT next never
		 * waits for it. */
		if (early)
			c->enable_due = 1;
		else
			imc_send_enable(c);
		/* Commands sent from here on are processed after ENABLE, so they
		 * may rely on it; a NO clears these again (enable_done). */
		c->enabled_condstore = 1;
		c->enabled_qresync = !!(c->caps & IMAP_CAP_QRESYNC);
	}
	conn_set_busy(&c->conn, c->inflight > 0);
	if (early)
		c->cb->logged_in(c);
	else
		c->cb->ready(c);
}
