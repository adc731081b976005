/*
 * oauth_token — where one account's OAuth2 access token comes from
 * (--src-oauth-token-file / --src-oauth-token-cmd, and the dst- forms),
 * behind imap_client's struct imap_token_src:
 *   - a file is read at the first login and read again whenever its
 *     inode, size or modification time changed (checked at every login,
 *     so a reconnect picks up a token refreshed by cron or a sidecar);
 *   - a command runs (/bin/sh -c CMD, stdout = the token, stderr passed
 *     through, stdin /dev/null, MAILFERRY_OAUTH_USER = the account's user)
 *     at the first login, again when the server refused its token, and
 *     again before the login that follows a lost connection. Logins in
 *     between (the worker connections) reuse its token.
 * The command runs on the event loop, not blocking it: its stdout is read
 * through io_uring, its exit seen through a pidfd (Linux 5.3), and a
 * timeout of OAUTH_CMD_TIMEOUT_S seconds kills its process group. Logins
 * that need its token wait (struct imap_token_wait) while every other
 * connection and account goes on. Its output is bounded and must be one
 * bearer token (RFC 6750 §2.1). No error line ever holds the token.
 *
 * Not for: the SASL messages (protocols/sasl_oauth), the IMAP exchange
 * (imap_client).
 */
#ifndef MF_OAUTH_TOKEN_H
#define MF_OAUTH_TOKEN_H

#include <stdint.h>
#include <sys/types.h>

#include "engine/base/err.h"
#include "protocols/imap_client.h"
#include "protocols/sasl_oauth.h"

#define OAUTH_CMD_TIMEOUT_S 30

struct oauth_token {
	struct imap_token_src src; /* what imap_endpoint.token points at */
	const char *label;         /* "source" / "destination" (warnings) */
	const char *user;          /* the account's user (MAILFERRY_OAUTH_USER) */
	const char *file, *cmd;    /* exactly one is set */
	unsigned timeout_s;
	char tok[SASL_OAUTH_TOKEN_MAX + 1];
	size_t len;   /* 0: none yet */
	unsigned gen; /* bumped each time tok changes */
	int stale;    /* command: run again at the next get */
	dev_t dev;    /* file: what was read */
	ino_t ino;
	off_t size;
	int64_t mtime_ns;
	unsigned runs;                   /* command runs so far */
	struct oauth_run *run;           /* the command running, or NULL */
	unsigned run_id;                 /* bumped at each run */
	struct imap_token_wait *waiters; /* logins waiting for a run */
};

/* Sets t up for one side; file or cmd (the other NULL). */
void oauth_token_init(struct oauth_token *t, const char *label, const char *user, const char *file,
                      const char *cmd);
/* The current token (see struct imap_token_src's get). */
int oauth_token_get(struct oauth_token *t, struct loop *l, int refresh, unsigned *gen, char *out,
                    size_t cap, struct imap_token_wait *w, struct mf_error *err);
/* Wipes the token; a command still running is killed (its run frees
 * itself on the loop). */
void oauth_token_forget(struct oauth_token *t);

/* Checks and trims a token as read (trailing CR/LF/spaces dropped): its
 * length, or -1 with why set (never quoting it). */
ssize_t oauth_token_clean(char *buf, size_t n, char *why, size_t whycap);

#endif
