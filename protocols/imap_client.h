/*
 * imap_client — one IMAP connection: greeting, STARTTLS, capabilities,
 * authentication, ENABLE, and pipelined tagged commands (RFC 3501, 9051).
 *
 * Commands are written with imap_cmd_begin() / imap_put*() / imap_cmd_end()
 * and complete through their own callback when the tagged reply arrives, in
 * the order sent. Untagged data is handed on after the client has taken
 * what it needs (CAPABILITY, EXISTS...); literals are streamed through
 * lit_begin/lit_data/lit_end so message bodies never sit whole in memory.
 *
 * Who gets a response: a command may carry its own consumer (struct
 * imap_consumer, imap_cmd_begin_consumer). Untagged responses carry no
 * tag, so they are attributed by order: each one, and each literal inside
 * it, goes to the OLDEST command in flight that has a consumer; with none
 * in flight (or a consumer without a callback for that kind), to the
 * client-wide callbacks in struct imap_client_cb. This is exact for what
 * a server must answer in order (RFC 3501 §5.5: a command that selects a
 * mailbox runs alone, so "EXAMINE; UID FETCH" pipelined yields EXAMINE's
 * data, its tagged OK, then FETCH's data). Commands a server may run in
 * parallel (two UID FETCH ranges, two UID SEARCHes) must share one
 * consumer, or tolerate each other's data: the client cannot tell them
 * apart. Unsolicited data (EXISTS, a flag update) goes to whichever
 * consumer is oldest, like any other untagged response.
 *
 * Literals we send use LITERAL+ ({n+}) when offered. Otherwise the client
 * waits for the server's "+" before the bytes: imap_write_space() is 0 until
 * then, and cb->writable fires when bulk output can go on. An astring that
 * must travel as a literal (imap_put_astring) is held back with everything
 * written after it, and sent when its "+" comes.
 *
 * Not for: deciding what to copy (see engine/job), parsing (imap_parse).
 */
#ifndef MF_IMAP_CLIENT_H
#define MF_IMAP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/runtime/conn.h"
#include "engine/base/err.h"
#include "protocols/imap_parse.h"

enum imap_cap {
	IMAP_CAP_IMAP4REV1 = 1u << 0,
	IMAP_CAP_IMAP4REV2 = 1u << 1,
	IMAP_CAP_STARTTLS = 1u << 2,
	IMAP_CAP_LOGINDISABLED = 1u << 3,
	IMAP_CAP_AUTH_PLAIN = 1u << 4,
	IMAP_CAP_SASL_IR = 1u << 5,
	IMAP_CAP_LITERALPLUS = 1u << 6,
	IMAP_CAP_LITERALMINUS = 1u << 7,
	IMAP_CAP_MULTIAPPEND = 1u << 8,
	IMAP_CAP_UIDPLUS = 1u << 9,
	IMAP_CAP_CONDSTORE = 1u << 10,
	IMAP_CAP_QRESYNC = 1u << 11,
	IMAP_CAP_ENABLE = 1u << 12,
	IMAP_CAP_SPECIAL_USE = 1u << 13,
	IMAP_CAP_LIST_STATUS = 1u << 14,
	IMAP_CAP_LIST_EXTENDED = 1u << 15,
	IMAP_CAP_ESEARCH = 1u << 16,
	IMAP_CAP_NAMESPACE = 1u << 17,
	IMAP_CAP_UTF8_ACCEPT = 1u << 18,
	IMAP_CAP_APPENDLIMIT = 1u << 19,
	IMAP_CAP_MOVE = 1u << 20,
	IMAP_CAP_BINARY = 1u << 21,
	IMAP_CAP_AUTH_XOAUTH2 = 1u << 22,
	IMAP_CAP_AUTH_OAUTHBEARER = 1u << 23,
};

enum imap_tls_mode {
	IMAP_TLS_STARTTLS,	/* imap://  upgrade when offered (required off loopback) */
	IMAP_TLS_IMPLICIT,	/* imaps:// */
	IMAP_TLS_NONE,		/* imap://...?starttls=no (loopback or --allow-plaintext) */
};

/* A login waiting for a token being fetched (a command running). */
struct imap_token_wait {
	/* Called from the loop when the fetch it waited for ended: rc 0 (get()
	 * now answers at once) or a negative code with err. */
	void (*ready)(struct imap_token_wait *w, int rc, const struct mf_error *err);
	struct imap_token_wait *next;	/* private to the source */
	unsigned run;			/* private: the fetch waited for */
	int queued;			/* private */
};

/* Where an OAuth2 access token comes from (engine/cli/oauth_token). get()
 * writes the current token (NUL-terminated) to out and its generation to
 * *gen and returns 0; with refresh, the token of generation *gen was
 * refused, so a new one is wanted: the same generation back means there is
 * no newer one. When the token must be fetched first (a command runs on
 * loop l), get() queues w and returns -EINPROGRESS: w->ready follows, and
 * then get() (refresh 0) answers. Other negative codes: failed, err set
 * (one line, never the token). cancel() takes a queued w back (its login
 * went away). lost() says a logged-in connection dropped: the next get()
 * fetches afresh (a reconnect after a token expired). */
struct imap_token_src {
	int (*get)(void *ctx, struct loop *l, int refresh, unsigned *gen, char *out, size_t cap,
		   struct imap_token_wait *w, struct mf_error *err);
	void (*cancel)(void *ctx, struct imap_token_wait *w);
	void (*lost)(void *ctx);
	void *ctx;
};

struct imap_endpoint {
	const char *label;	/* "source"/"destination": names the account in errors */
	const char *host;
	uint16_t port;
	const char *user;
	const char *password;
	/* Admin login (RFC 4616): authenticate as authuser with its password
	 * and act as user (SASL PLAIN's authorization identity); NULL: as user. */
	const char *authuser;
	/* OAuth2: when set, the login is AUTHENTICATE OAUTHBEARER (RFC 7628),
	 * or XOAUTH2 when only that is offered, with this token; password is
	 * then unused. A refused token is fetched again once and the login
	 * retried on the same connection. */
	const struct imap_token_src *token;
	enum imap_tls_mode tls;
	const char *ca_file;
	int insecure;
	int allow_plaintext;	/* cleartext auth off loopback */
	unsigned timeout_ms;
	unsigned login_timeout_ms; /* greeting through login, whole (0: 2 x timeout) */
	unsigned min_progress;     /* bytes per timeout window while a reply is due */
	int want_enable;	/* ENABLE CONDSTORE QRESYNC when offered */
};

/* The loop's budget for buffered responses (loop.mem_max) unless set:
 * 16 connections may each hold a 1 MiB partial line several times over. */
#define IMAP_MEM_BUDGET_DEFAULT ((size_t)128 * 1024 * 1024)
/* Untagged responses a command may bring (a LIST with STATUS: two per
 * mailbox, so 2 million mailboxes): this, plus two per message of the
 * selected mailbox when it was sent (a FETCH 1:* answers one per message,
 * flag updates may add one more). */
#define IMAP_UNTAGGED_PER_CMD 4000000u
/* The same "* N EXISTS" this many times in a row is a server stuck or
 * hostile: RFC 3501 §7.3.1 sends it when the size changes. */
#define IMAP_EXISTS_REPEAT_MAX 10000u

struct imap_client;
struct imap_cmd;

typedef void (*imap_done_fn)(struct imap_client *c, struct imap_cmd *cmd,
			     const struct imap_resp *r);

/* A command's own handler for the untagged data and literals its answer
 * brings (see the attribution rule above). Each member may be NULL: that
 * kind then goes to the client-wide callback. Return values as for the
 * client-wide ones (struct imap_client_cb). */
struct imap_consumer {
	int (*untagged)(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r);
	int (*lit_begin)(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r,
			 const struct imap_node *key, uint64_t size);
	ssize_t (*lit_data)(struct imap_client *c, struct imap_cmd *cmd, const uint8_t *p, size_t n);
	int (*lit_end)(struct imap_client *c, struct imap_cmd *cmd);
};

struct imap_cmd {
	imap_done_fn done;
	void *ud;
	const struct imap_consumer *consumer;	/* NULL: the client-wide callbacks */
	uint32_t tag;		/* set by imap_cmd_begin */
	uint64_t untagged_max;  /* private: untagged responses it may bring */
	unsigned lit_wait;	/* private: its synchronizing literals without "+" yet */
	struct imap_cmd *next;	/* private: in-flight queue */
	struct imap_cmd *cnext;	/* private: in-flight commands with a consumer */
};

struct imap_client_cb {
	/* Logged in; capabilities are final; ENABLE sent (its reply may follow).
	 * With logged_in set, ready may come earlier: right after a login that
	 * needs no continuation was written (SASL-IR, or LOGIN without a
	 * synchronizing literal) to a server known to keep what follows it
	 * (Dovecot, by its greeting), with c->login_pending 1 and c->caps the
	 * greeting's (provisional). Commands written then are pipelined behind
	 * the login: if it fails they are dropped with it and error says
	 * "login failed". */
	void (*ready)(struct imap_client *c);
	/* Optional: the pipelined login was answered OK; c->caps are final
	 * (ENABLE goes out with the next command but LOGOUT). Without it,
	 * ready waits for the login's answer. */
	void (*logged_in)(struct imap_client *c);
	/* Fatal: connection lost, TLS or login failed, protocol error. The
	 * client is closed when this returns; commands in flight are dropped
	 * without their done callbacks. */
	void (*error)(struct imap_client *c, const struct mf_error *err);
	/* Returns 0, or IMAP_PARSE_PAUSE to stop input after this response
	 * (the consumer then calls imap_client_kick() when it can go on). */
	int (*untagged)(struct imap_client *c, const struct imap_resp *r);
	int (*lit_begin)(struct imap_client *c, const struct imap_resp *r,
			 const struct imap_node *key, uint64_t size);
	ssize_t (*lit_data)(struct imap_client *c, const uint8_t *p, size_t n);
	int (*lit_end)(struct imap_client *c);
	/* Bulk output may go on (buffer drained, or "+" arrived). */
	void (*writable)(struct imap_client *c);
	/* Optional: the connection is gone (LOGOUT answered, failed, or
	 * closed by imap_client_close/abort, inside which it then runs);
	 * called once per open, before error when it failed. */
	void (*closed)(struct imap_client *c);
	/* Optional: the greeting (and STARTTLS) is done and the login is
	 * about to be written; us is the time since the open in microseconds,
	 * about one round trip plus the server's greeting. Returning 1 holds the login
	 * (no deadline runs meanwhile) until imap_client_login(); the owner
	 * may instead close the session, which then never logged in. */
	int (*greeted)(struct imap_client *c, uint64_t us);
};

struct imap_client {
	struct conn conn;
	struct imap_parser parser;
	const struct imap_endpoint *ep;
	const struct imap_client_cb *cb;
	void *ud;
	uint32_t caps;
	uint64_t appendlimit;
	char sep;		/* hierarchy separator from LIST, 0 = unknown */
	int state;		/* private */
	int closed;
	int conn_open, parser_live;
	uint64_t wire_in, wire_out;	/* counters kept at close */
	uint32_t next_tag;
	struct imap_cmd *head, *tail;	/* sent, awaiting tagged reply */
	struct imap_cmd *chead, *ctail;	/* of them, those with a consumer (in order) */
	struct imap_cmd *lit_cmd;	/* private: whose consumer has the literal being read */
	unsigned inflight;
	unsigned awaiting_cont;		/* sync literals sent, "+" not yet seen */
	/* private: output held back behind a synchronizing literal of an
	 * astring (a mailbox name) until its "+" (RFC 3501 §7.5): the bytes,
	 * and where each later synchronizing literal header in them ends
	 * (sent with the bytes before it; what follows waits for its "+"). */
	int hold_on;
	char *hold;
	size_t hold_len, hold_cap;
	struct imap_hold_cut {
		size_t off;	/* end of the literal header in hold */
		int astring;	/* its bytes are held too (else the caller writes them) */
	} *cuts;
	size_t ncuts, ccuts;
	int auth_cont;			/* private: what a "+" during login is for */
	int auth_step;			/* private: LOGIN arguments written so far */
	int oauth_mech;			/* private: 0 none, else the OAuth2 mechanism */
	int oauth_retried;		/* private: a refused token was fetched again */
	unsigned oauth_gen;		/* private: generation of the token sent */
	char *oauth_b64;		/* private: the message sent (wiped, freed after login) */
	int oauth_refreshing;		/* private: the fetch waited for is a refresh */
	struct imap_token_wait oauth_wait;	/* private */
	char oauth_why[256];		/* private: what the server's challenge said */
	unsigned oauth_old_gen;		/* private: generation of the token refused */
	char oauth_no[512];		/* private: the refusal, while a new token is fetched */
	int enabled_qresync, enabled_condstore;
	int login_pending;		/* ready came before the login's answer */
	int login_pipelines;		/* private: the server keeps what follows the login */
	/* The server locks a folder for each APPEND, and a second APPEND into
	 * it waits out a sleep of about a second (Courier-IMAP, by its
	 * greeting): parallel APPENDs into one folder are slower than one
	 * connection's. */
	int append_locks;
	int auth_asked;			/* private: cb->greeted was asked */
	int auth_held;			/* cb->greeted held the login (owners may read it) */
	uint64_t t_open_us;		/* private: CLOCK_MONOTONIC at the open */
	int enable_due;			/* private: ENABLE goes before the next command */
	/* Set by the owner: LOGOUT does not wait for the server's answer; the
	 * connection closes (FIN) once LOGOUT is handed to the kernel. For a
	 * process about to exit, which needs no --max-per-host slot after. */
	int logout_nowait;
	uint32_t exists;		/* last EXISTS of the selected mailbox */
	/* Untagged responses since the last tagged reply, against what the
	 * commands in flight may legitimately bring (a hostile server could
	 * send "* 1 EXISTS" forever); identical EXISTS in a row. */
	uint64_t untagged_seen, untagged_allow;
	uint32_t exists_same;
	struct imap_cmd login_cmd, aux_cmd, enable_cmd, logout_cmd;
	char who[300];
	int trace;		/* MAILFERRY_TRACE=1 */
	int want_writable;
	struct loop_task kick;
};

int imap_client_open(struct imap_client *c, struct loop *l, const struct imap_endpoint *ep,
		     const struct imap_client_cb *cb, void *ud, struct mf_error *err);
/* Closes the connection (if open) and frees the parser; idempotent. */
void imap_client_close(struct imap_client *c);
/* Closes the connection at once, without LOGOUT: output not yet sent is
 * dropped, so a command not ended stays unfinished. The parser stays until
 * imap_client_close, so this is safe inside the client's own callbacks. No
 * callback follows. */
void imap_client_abort(struct imap_client *c);
/* Bytes on the wire so far (kept after close). */
void imap_client_wire(const struct imap_client *c, uint64_t *in, uint64_t *out);
/* Sends LOGOUT; the connection closes when the server answers (or at
 * once, with logout_nowait). */
void imap_client_logout(struct imap_client *c);
/* Writes the login that cb->greeted held; nothing if none is held. */
void imap_client_login(struct imap_client *c);

/* Command writing. imap_cmd_begin writes "TAG "; the command is in flight
 * once imap_cmd_end wrote its CRLF. */
void imap_cmd_begin(struct imap_client *c, struct imap_cmd *cmd, imap_done_fn done, void *ud);
/* The same, with the command's own consumer of its responses (may be NULL). */
void imap_cmd_begin_consumer(struct imap_client *c, struct imap_cmd *cmd, imap_done_fn done,
			     void *ud, const struct imap_consumer *k);
void imap_put(struct imap_client *c, const char *s);
void imap_putf(struct imap_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A string as an IMAP astring: atom if safe, quoted, or literal. */
void imap_put_astring(struct imap_client *c, const char *s, size_t n);
/* UIDs in ascending order (zeros, entries struck out, skipped; repeats
 * allowed) as a UID set: "3:7,9". imap_uid_set_runs says how many ranges
 * that is, to bound a command's length before writing it. */
void imap_put_uid_set(struct imap_client *c, const uint32_t *uids, size_t n);
size_t imap_uid_set_runs(const uint32_t *uids, size_t n);
/* qsort/bsearch order of uint32_t UIDs. */
int imap_uid_cmp(const void *a, const void *b);
/* Raw bytes (message data inside a literal). Callers keep within
 * imap_write_space(). */
void imap_put_raw(struct imap_client *c, const void *p, size_t n);
/* " {n+}\r\n" or " {n}\r\n" (then waits for "+"); the leading space is
 * written only if sp. */
void imap_put_literal_header(struct imap_client *c, uint64_t n, int sp);
void imap_cmd_end(struct imap_client *c);

/* Bytes bulk writers may add now (0 while a "+" is awaited). */
size_t imap_write_space(struct imap_client *c);
/* Ask for cb->writable once space is back. */
void imap_want_writable(struct imap_client *c);

/* Input flow control: cb->lit_data returned short; call when the consumer
 * can take more. */
void imap_client_kick(struct imap_client *c);
void imap_client_pause(struct imap_client *c);

/* Names the account in messages: "source src@127.0.0.1". */
const char *imap_client_who(const struct imap_client *c);

/* Finds a response code's argument: for [APPENDUID 5 7] code "APPENDUID"
 * returns the node "5". NULL if r has no such code. */
const struct imap_node *imap_resp_code(const struct imap_resp *r, const char *name);

#endif
