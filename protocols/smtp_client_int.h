/*
 * smtp_client_int.h — what smtp_client.c (the connection and the
 * transactions) and smtp_login.c (greeting, EHLO/LHLO, STARTTLS, AUTH)
 * share. Private to those two files.
 */
#ifndef MF_SMTP_CLIENT_INT_H
#define MF_SMTP_CLIENT_INT_H

#include "protocols/smtp_client.h"

enum {
	ST_CONNECTING,
	ST_GREETING,
	ST_EHLO,     /* EHLO/LHLO sent */
	ST_HELO,     /* HELO sent after EHLO was refused (SMTP only) */
	ST_STARTTLS, /* STARTTLS sent */
	ST_HANDSHAKE,
	ST_AUTH, /* AUTH sent (auth_step: LOGIN's stage) */
	ST_READY,
	ST_QUIT,
};

/* Fails the session: the message (server text escaped, secrets redacted)
 * goes to cb->error once; the connection is closed. */
void smc_fail(struct smtp_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* One command line (traced unless it carries credentials). */
void smc_cmd(struct smtp_client *c, int secret, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* MAILFERRY_TRACE=1: the protocol on stderr. */
void smc_trace(const struct smtp_client *c, const char *dir, const void *p, size_t n);
/* "550 5.1.1 text" of the parser's current reply. */
const char *smc_reply_str(struct smtp_client *c, char *buf, size_t cap);

/* smtp_login.c: base64 of s[0..n) into out, NUL-terminated (0: it does
 * not fit); the SASL PLAIN response (RFC 4616); one EHLO/LHLO reply line
 * into c->caps and c->size_max. */
size_t smc_b64(const void *s, size_t n, char *out, size_t cap);
size_t smc_sasl_plain(const struct smtp_client *c, char *out, size_t cap);
void smc_ehlo_line(struct smtp_client *c, const char *s, size_t n);
/* smtp_login.c: a reply before the session is ready (returns 1 to stop
 * reading: STARTTLS), and the TLS handshake's end (EHLO again). */
int smc_setup_reply(struct smtp_client *c);
void smc_on_tls_ready(struct conn *conn);

#endif
