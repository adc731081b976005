/*
 * sasl_plain — the client message of the PLAIN SASL mechanism (RFC 4616
 * §2): authzid NUL authcid NUL passwd, base64-encoded as IMAP
 * AUTHENTICATE (RFC 3501 §6.2.2), POP3 AUTH (RFC 5034) and SMTP AUTH
 * (RFC 4954) send it. One builder for the three clients, so the bounds
 * and the wiping of the password are the same everywhere.
 *
 * Pure: no I/O, no allocation. The plain message lives in a buffer on the
 * stack that is wiped (OPENSSL_cleanse) before return, whatever the
 * result; the base64 in out carries the password too, and its caller
 * wipes it after use.
 *
 * Not for: the exchanges around it (imap_login.c, pop3_client.c,
 * smtp_login.c), choosing the identities (an IMAP admin login's authzid
 * is imap_login's business), the OAuth2 mechanisms (sasl_oauth).
 */
#ifndef MF_SASL_PLAIN_H
#define MF_SASL_PLAIN_H

#include <stddef.h>
#include <sys/types.h>

/* Longest plain message: authzid, authcid, password and the two NULs. */
#define SASL_PLAIN_MAX 1400
/* Base64 of the longest message, with its NUL. */
#define SASL_PLAIN_B64_MAX ((SASL_PLAIN_MAX + 2) / 3 * 4 + 1)

/* Writes base64(authzid NUL authcid NUL passwd) to out, NUL-terminated;
 * authzid may be empty (zl 0: the user acts as itself). Returns its
 * length; -EINVAL if a field holds a NUL (RFC 4616 §2: UTF8SAFE excludes
 * it; it would move the field boundaries), -ENOSPC if the message is over
 * SASL_PLAIN_MAX or out too small. On error out is "" (if cap). */
ssize_t sasl_plain(char *out, size_t cap, const char *authzid, size_t zl, const char *authcid,
                   size_t cl, const char *passwd, size_t pl);

#endif
