/*
 * imap_client_int — what the two files of the IMAP client share
 * (imap_client.c: writing, input, the session; imap_login.c: the login
 * sequence from the greeting to ENABLE): its states and the helpers each
 * calls in the other. Private to protocols/imap_*.c.
 */
#ifndef MF_IMAP_CLIENT_INT_H
#define MF_IMAP_CLIENT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "protocols/imap_client.h"
#include "protocols/sasl_oauth.h"

enum {
	ST_CONNECTING,
	ST_GREETING,
	ST_CAPA_PRE,	/* CAPABILITY before STARTTLS/auth */
	ST_STARTTLS,	/* STARTTLS sent */
	ST_HANDSHAKE,	/* TLS handshake on the upgraded socket */
	ST_AUTH,	/* LOGIN / AUTHENTICATE sent */
	ST_CAPA_POST,	/* CAPABILITY after login */
	ST_READY,
	ST_LOGOUT,
};

/* What a continuation request during login asks for. */
enum {
	AUTH_CONT_NONE,
	AUTH_CONT_SASL,    /* AUTHENTICATE PLAIN without SASL-IR: the response */
	AUTH_CONT_LITERAL, /* LOGIN: the bytes of a synchronizing literal */
	AUTH_CONT_OAUTH,   /* OAuth2 without SASL-IR: the initial response */
	AUTH_CONT_OAUTH_ERR,  /* OAuth2 response sent: a "+" is the error challenge */
	AUTH_CONT_OAUTH_DONE, /* error challenge answered: only NO may follow */
};

/* The OAuth2 mechanisms. OAUTHBEARER is preferred when both are offered:
 * it is the standard (RFC 7628) and names host and port; XOAUTH2 is what
 * Microsoft 365 offers. */
enum { OAUTH_NONE, OAUTH_BEARER, OAUTH_XOAUTH2 };
/* c->oauth_b64: the base64 message, then the token. */
#define OAUTH_BUF (SASL_OAUTH_B64_MAX + SASL_OAUTH_TOKEN_MAX + 1)

/* imap_client.c */
/* The form an astring takes on the wire (imc_astring_form). */
enum { ASTR_ATOM, ASTR_QUOTED, ASTR_LITERAL };
void imc_client_fail(struct imap_client *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void imc_out(struct imap_client *c, const void *p, size_t n);
int imc_caps_from_code(struct imap_client *c, const struct imap_resp *r);
int imc_astring_form(const char *s, size_t n);
int imc_literal_nonsync(const struct imap_client *c, uint64_t n);
void imc_oauth_wipe(struct imap_client *c);

/* imap_login.c */
void imc_sasl_plain(struct imap_client *c, char *b64, size_t cap);
void imc_send_capability(struct imap_client *c, int state);
void imc_after_capabilities_pre(struct imap_client *c);
void imc_on_tls_ready(struct conn *conn);
void imc_login_next(struct imap_client *c);
void imc_oauth_challenge(struct imap_client *c, const struct imap_resp *r);
void imc_after_auth(struct imap_client *c);
void imc_send_enable(struct imap_client *c);
uint64_t imc_mono_us(void);

#endif
