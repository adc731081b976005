/*
 * pop3_client — one POP3 connection (RFC 1939) over a struct conn:
 * greeting, CAPA (RFC 2449), STLS (RFC 2595), AUTH PLAIN with an initial
 * response (RFC 5034) or USER/PASS, then STAT, UIDL, LIST, RETR, TOP,
 * DELE, RSET, NOOP and QUIT, each completing through its own callback in
 * the order sent.
 *
 * Commands may be issued all at once: the client keeps those it may not
 * send yet and writes them as the window allows. With PIPELINING (RFC
 * 2449 §6.6) up to ep->window commands (and, for RETR/TOP, about
 * ep->window_bytes of expected message bytes) are outstanding; without
 * it, one at a time. Message bodies are dot-unstuffed and streamed to
 * cb->msg_begin / msg_data / msg_end; never held whole.
 *
 * Hostile-server bounds: status and listing lines are capped
 * (POP3_LINE_MAX); unique-ids are checked (RFC 1939 §7) and a duplicate is
 * refused; a listing may not name more than ep->max_messages messages; a
 * body larger than its LIST size (plus a quarter and 64 KiB), or than
 * ep->max_message_size, is refused; replies are timed by the conn.
 *
 * The listing (UIDL and LIST results by message number) is kept in a
 * pop3_list, one array for the session (about 90 bytes per message number,
 * so at most ~90 MB at the default cap), not one allocation per message.
 * Commands may be queued before ready(); they go after the login.
 *
 * Not for: deciding what to fetch or delete (the caller), the sink.
 */
#ifndef MF_POP3_CLIENT_H
#define MF_POP3_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/err.h"
#include "engine/runtime/conn.h"
#include "protocols/pop3_list.h"
#include "protocols/pop3_reply.h"

enum pop3_tls_mode {
	POP3_TLS_STARTTLS, /* pop3://  STLS (required unless loopback or allow_plaintext) */
	POP3_TLS_IMPLICIT, /* pop3s:// */
	POP3_TLS_NONE,     /* plain (loopback or allow_plaintext only for the password) */
};

struct pop3_endpoint {
	const char *label; /* "source": names the account in errors */
	const char *host;
	uint16_t port;
	const char *user;
	const char *password;
	enum pop3_tls_mode tls;
	const char *ca_file;
	int insecure;
	int allow_plaintext; /* cleartext authentication off loopback */
	unsigned timeout_ms;
	unsigned login_timeout_ms; /* greeting through login (0: 2 x timeout) */
	unsigned min_progress;
	unsigned window;           /* commands outstanding with PIPELINING (0: 16) */
	uint64_t window_bytes;     /* RETR bytes expected outstanding (0: 4 MiB) */
	uint32_t max_messages;     /* listing cap (0: POP3_MAX_MESSAGES) */
	uint64_t max_message_size; /* (0: 2 GiB) */
};

#define POP3_MAX_MESSAGES 1000000u
#define POP3_WINDOW_DEFAULT 16u
#define POP3_WINDOW_BYTES_DEFAULT ((uint64_t)4 << 20)
#define POP3_MAX_MESSAGE_DEFAULT ((uint64_t)2 << 30)

enum pop3_cmd_type {
	POP3_C_STAT,
	POP3_C_UIDL_ALL,
	POP3_C_UIDL_ONE,
	POP3_C_LIST_ALL,
	POP3_C_LIST_ONE,
	POP3_C_RETR,
	POP3_C_TOP,
	POP3_C_DELE,
	POP3_C_RSET,
	POP3_C_NOOP,
	POP3_C_QUIT,
	/* private: the login sequence */
	POP3_C_CAPA,
	POP3_C_STLS,
	POP3_C_USER,
	POP3_C_PASS,
	POP3_C_AUTH,
};

/* What a command completed with. ok = +OK; on -ERR, text (and code)
 * carry the server's words (the caller escapes nothing: mf_err_set and
 * mf_log do). For a listing that was read to its end but held a line the
 * client refused (a bad or duplicate unique-id), ok = 0 and invalid
 * names the message in text. */
struct pop3_reply {
	int ok;
	int invalid;
	const char *code; /* RFC 2449 §8 response code, code_len bytes */
	size_t code_len;
	const char *text;
	size_t text_len;
	uint32_t count;  /* STAT: messages; UIDL/LIST one: msgno */
	uint64_t size;   /* STAT: octets; LIST one: size; RETR/TOP: body bytes */
	const char *uid; /* UIDL one: the unique-id */
	size_t uid_len;
};

struct pop3_client;
struct pop3_cmd;
typedef void (*pop3_done_fn)(struct pop3_client *c, struct pop3_cmd *cmd,
                             const struct pop3_reply *r);

/* Owned by the caller until its done callback has run (or the client
 * failed: then no done callback follows). */
/* Who takes one command's body (RETR, TOP), instead of the client-wide
 * callbacks (pop3_client_cb): the same three steps, for that command
 * only. */
struct pop3_consumer {
	int (*msg_begin)(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno,
	                 uint64_t size);
	int (*msg_data)(struct pop3_client *c, struct pop3_cmd *cmd, const char *p, size_t n);
	int (*msg_end)(struct pop3_client *c, struct pop3_cmd *cmd);
};

struct pop3_cmd {
	pop3_done_fn done;
	void *ud;
	const struct pop3_consumer *consumer; /* NULL: the client-wide callbacks */
	enum pop3_cmd_type type; /* private from here on */
	uint32_t msgno;
	uint32_t lines;
	uint64_t expect; /* expected body bytes (window accounting) */
	uint64_t after;  /* input offset its reply may start at, at the earliest */
	struct pop3_cmd *next;
};

struct pop3_client_cb {
	/* Logged in; c->caps are the ones after login. */
	void (*ready)(struct pop3_client *c);
	/* Fatal: connection lost, TLS or login failed, protocol error
	 * (err->code -EAGAIN for a login refused as [IN-USE], [LOGIN-DELAY]
	 * or [SYS/TEMP]: try later; -EACCES for other refusals). The
	 * client is closed when this returns; commands in flight are dropped
	 * without their done callbacks. */
	void (*error)(struct pop3_client *c, const struct mf_error *err);
	/* A RETR/TOP body: begin (size: LIST's, else the +OK's "N octets",
	 * else 0), data (dot-unstuffed pieces), end (complete). Each returns 0
	 * or a negative code that fails the client. The consumer may call
	 * pop3_client_pause() in msg_data and pop3_client_kick() later. */
	int (*msg_begin)(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno,
	                 uint64_t size);
	int (*msg_data)(struct pop3_client *c, struct pop3_cmd *cmd, const char *p, size_t n);
	int (*msg_end)(struct pop3_client *c, struct pop3_cmd *cmd);
};

struct pop3_client {
	struct conn conn;
	struct pop3_reader rd;
	const struct pop3_endpoint *ep;
	const struct pop3_client_cb *cb;
	void *ud;
	uint32_t caps; /* enum pop3_cap */
	int state;     /* private */
	int closed, conn_open, paused, in_data;
	uint64_t rx, buf_end; /* input consumed; end of what on_data holds */
	uint64_t wire_in, wire_out;
	/* sent, awaiting reply (head is the one being read) / not yet sent */
	struct pop3_cmd *head, *tail, *wait_head, *wait_tail;
	unsigned inflight, max_inflight; /* max_inflight: the most ever outstanding */
	uint64_t inflight_bytes;
	uint64_t round_trips;  /* writes that followed a reply with nothing outstanding */
	struct pop3_list list; /* what UIDL and LIST said */
	unsigned capa_lines;
	/* the reply being read */
	struct pop3_reply cur;
	int cur_kind; /* enum pop3_status_kind of cur */
	char cur_text[POP3_LINE_MAX + 1];
	char one_err[200]; /* a refused UIDL n answer */
	uint64_t body_limit;
	int in_body;
	struct pop3_cmd login_cmd, quit_cmd;
	pop3_done_fn quit_fn;
	char who[300];
	int trace;
};

int pop3_client_open(struct pop3_client *c, struct loop *l, const struct pop3_endpoint *ep,
                     const struct pop3_client_cb *cb, void *ud, struct mf_error *err);
/* Closes the connection (if open) and frees the listing; idempotent.
 * Not inside the client's own callbacks (use pop3_client_abort there). */
void pop3_client_close(struct pop3_client *c);
/* Closes the connection now (no QUIT: nothing marked deleted is removed,
 * RFC 1939 §6). Safe in callbacks; no callback follows. */
void pop3_client_abort(struct pop3_client *c);
/* Sends QUIT (after everything queued): the server removes the messages
 * marked deleted (RFC 1939 §6) and the connection closes; done (if any)
 * runs with the reply, after which the connection is closed. Before
 * ready, it closes at once (no callback). */
void pop3_client_quit(struct pop3_client *c, pop3_done_fn done, void *ud);

/* Commands; each completes through done(c, cmd, reply). */
void pop3_stat(struct pop3_client *c, struct pop3_cmd *cmd, pop3_done_fn done, void *ud);
/* UIDL / LIST without argument: the listing (pop3_msg_get, pop3_msg_count). */
void pop3_uidl_all(struct pop3_client *c, struct pop3_cmd *cmd, pop3_done_fn done, void *ud);
void pop3_list_all(struct pop3_client *c, struct pop3_cmd *cmd, pop3_done_fn done, void *ud);
void pop3_uidl_one(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno, pop3_done_fn done,
                   void *ud);
void pop3_list_one(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno, pop3_done_fn done,
                   void *ud);
void pop3_retr(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno, pop3_done_fn done,
               void *ud);
/* RETR whose body goes to k (struct pop3_consumer), not the client-wide
 * callbacks. */
void pop3_retr_consumer(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno,
                        pop3_done_fn done, void *ud, const struct pop3_consumer *k);
/* TOP msgno lines (RFC 1939 §7): headers and the first lines of the body. */
void pop3_top(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno, uint32_t lines,
              pop3_done_fn done, void *ud);
void pop3_dele(struct pop3_client *c, struct pop3_cmd *cmd, uint32_t msgno, pop3_done_fn done,
               void *ud);
void pop3_rset(struct pop3_client *c, struct pop3_cmd *cmd, pop3_done_fn done, void *ud);
void pop3_noop(struct pop3_client *c, struct pop3_cmd *cmd, pop3_done_fn done, void *ud);

/* The listing entry of msgno, NULL if out of range; the highest msgno
 * listed (UIDL or LIST without argument). */
const struct pop3_msg *pop3_msg_get(const struct pop3_client *c, uint32_t msgno);
uint32_t pop3_msg_count(const struct pop3_client *c);

/* Input flow control for msg_data consumers. */
void pop3_client_pause(struct pop3_client *c);
void pop3_client_kick(struct pop3_client *c);

void pop3_client_wire(const struct pop3_client *c, uint64_t *in, uint64_t *out);
/* Names the account in messages: "source user@host". */
const char *pop3_client_who(const struct pop3_client *c);

#endif
