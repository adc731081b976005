/*
 * smtp_client — one SMTP or LMTP connection that delivers messages
 * (RFC 5321, LMTP RFC 2033): greeting, EHLO/LHLO, STARTTLS (RFC 3207),
 * AUTH PLAIN/LOGIN (RFC 4954), then any number of transactions, each
 * MAIL FROM + RCPT TO... + DATA or BDAT, pipelined in one round trip where
 * PIPELINING (RFC 2920) is offered, RSET between them. With PIPELINING two
 * transactions overlap: the next one's commands and data go out while the
 * previous one waits for its final reply (SMTP_TXN_MAX).
 *
 * A message is streamed, never held: smtp_msg_begin() with its size and
 * envelope, smtp_msg_data() with chunks as they come (within
 * smtp_write_space(); cb->writable fires when more fits), smtp_msg_end().
 * With CHUNKING (RFC 3030) the bytes go out exactly as given, in
 * "BDAT n" chunks of at most SMTP_CHUNK bytes, the last as "BDAT n LAST";
 * otherwise after DATA's 354, dot-stuffed by protocols/dot. DATA cannot
 * carry a message that does not end in CRLF (RFC 5321 §4.1.1.4): one
 * without a line end gains CRLF, and a final bare LF goes as CRLF (not
 * LF + CRLF, which servers that take a bare LF as a line end would store
 * as one more, empty line; nor LF + ".", which they disagree about). The
 * message's result comes through its done callback: per recipient, the
 * reply that decided it, 4xx (temporary) and 5xx (permanent) kept apart,
 * so the caller decides what to retry. LMTP gives one reply per accepted
 * recipient after the data (RFC 2033 §4.2).
 *
 * Server input is bounded (smtp_reply's line and line-count caps; no reply
 * is taken that no command asked for) and every server text reaching an
 * error is escaped by mf_err_set. The password never reaches a log line,
 * a trace or an error message.
 *
 * Not for: choosing recipients or retry policy (the caller), parsing
 * replies (smtp_reply), dot-stuffing (dot).
 */
#ifndef MF_SMTP_CLIENT_H
#define MF_SMTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/err.h"
#include "engine/runtime/conn.h"
#include "protocols/dot.h"
#include "protocols/smtp_reply.h"

enum smtp_cap {
	SMTP_CAP_PIPELINING = 1u << 0,
	SMTP_CAP_CHUNKING = 1u << 1,
	SMTP_CAP_8BITMIME = 1u << 2,
	SMTP_CAP_SMTPUTF8 = 1u << 3,
	SMTP_CAP_SIZE = 1u << 4,
	SMTP_CAP_STARTTLS = 1u << 5,
	SMTP_CAP_AUTH_PLAIN = 1u << 6,
	SMTP_CAP_AUTH_LOGIN = 1u << 7,
	SMTP_CAP_ENHANCEDSTATUSCODES = 1u << 8,
};

enum smtp_tls_mode {
	SMTP_TLS_STARTTLS, /* smtp://  upgrade when offered (required off loopback) */
	SMTP_TLS_IMPLICIT, /* smtps:// */
	SMTP_TLS_NONE,     /* never (loopback, a UNIX socket or allow_plaintext) */
};

struct smtp_endpoint {
	const char *label; /* "destination": names the account in errors */
	const char *host;  /* TCP; with unix_path only the TLS peer name */
	uint16_t port;
	const char *unix_path; /* lmtp:///path/sock: AF_UNIX instead of TCP */
	int lmtp;              /* LHLO, one reply per recipient after the data */
	const char *helo;      /* our name in EHLO/LHLO; NULL = "localhost" */
	const char *user;      /* AUTH when set (PLAIN, else LOGIN) */
	const char *password;
	enum smtp_tls_mode tls;
	const char *ca_file;
	int insecure;
	int allow_plaintext;       /* mail and credentials in the clear off loopback */
	unsigned timeout_ms;       /* per reply (the final one after a big message too) */
	unsigned login_timeout_ms; /* greeting through AUTH, whole (0: 2 x timeout) */
	unsigned min_progress;
	int no_chunking;   /* DATA even where CHUNKING is offered */
	int no_pipelining; /* one command per round trip even if offered */
};

/* Recipients of one message (RFC 5321 §4.5.3.1.8: servers take >= 100). */
#define SMTP_RCPT_MAX 100
/* Longest address taken (RFC 5321 §4.5.3.1.3: a path is <= 256 octets;
 * SMTPUTF8 addresses may be longer in bytes). */
#define SMTP_ADDR_MAX 512
/* BDAT chunk size: the bytes of one message staged before a chunk goes. */
#define SMTP_CHUNK ((size_t)128 * 1024)
/* Server text kept per recipient result. */
#define SMTP_STATUS_TEXT 300

/* smtp_msg.flags. SMTPUTF8 binds every later hop: Postfix 3.7 bounces a
 * message that came with it when a header is UTF-8 and its next hop (e.g.
 * Dovecot 2.3's LMTP) does not offer SMTPUTF8 ("SMTPUTF8 is required, but
 * was not offered"). A non-ASCII envelope address sets it regardless. */
enum {
	SMTP_MSG_8BIT = 1u << 0, /* bytes >= 0x80 in the body: BODY=8BITMIME (RFC 6152) */
	SMTP_MSG_UTF8 = 1u << 1, /* UTF-8 in headers: SMTPUTF8 (RFC 6531) when offered */
};

struct smtp_msg {
	uint64_t size;    /* bytes the caller will feed (SIZE=, RFC 1870) */
	const char *from; /* "" = the null reverse-path <> */
	const char *const *rcpt;
	size_t nrcpt; /* 1..SMTP_RCPT_MAX */
	unsigned flags;
};

/* Which command a reply answered. */
enum smtp_step {
	SMTP_STEP_NONE, /* no reply (not sent) */
	SMTP_STEP_MAIL,
	SMTP_STEP_RCPT,
	SMTP_STEP_DATA, /* DATA's own reply (354 expected) */
	SMTP_STEP_BDAT, /* a chunk before the last */
	SMTP_STEP_END,  /* after the data: "." or BDAT LAST (LMTP: per recipient) */
};

struct smtp_status {
	enum smtp_step step;
	int code;                    /* 250, 451, 550...; 0 = none */
	unsigned ecls, esub, edet;   /* enhanced code, ecls == 0 if none */
	char text[SMTP_STATUS_TEXT]; /* raw server text (escape on output) */
};

struct smtp_result {
	/* 2: every recipient took the message; otherwise 4 if any recipient
	 * that did not take it failed temporarily (a retry may work), else 5.
	 * With several recipients some may have taken it: see rcpt[]. */
	int outcome;
	size_t nrcpt, delivered;
	const struct smtp_status *rcpt; /* [nrcpt], in the order given */
	/* The reply that decided the message (the first failure, else the
	 * last success), for one-line reports, and the address it concerns
	 * (the sender for MAIL, else the recipient). */
	const struct smtp_status *decisive;
	const char *decisive_addr;
};

struct smtp_client;

struct smtp_client_cb {
	/* Greeting, EHLO/LHLO, STARTTLS and AUTH done: messages may begin. */
	void (*ready)(struct smtp_client *c);
	/* Fatal: connection lost, TLS or AUTH failed, protocol error, a 421.
	 * The client is closed when this returns; a message in flight gets no
	 * done callback (count it as failed temporarily). */
	void (*error)(struct smtp_client *c, const struct mf_error *err);
	/* A message's result (after smtp_msg_end and all its replies), in
	 * the order the messages began; r and what it points to are valid
	 * during the call only. Another smtp_msg_begin may follow at once. */
	void (*done)(struct smtp_client *c, const struct smtp_result *r, void *msg_ud);
	/* smtp_write_space() grew, or the transaction failed (smtp_msg_data
	 * then says so): bulk output may go on. */
	void (*writable)(struct smtp_client *c);
};

/* Expected replies in flight (pipelined commands and BDAT chunks). */
#define SMTP_EXP_MAX 1024
/* Transactions in flight on one connection: with PIPELINING the next
 * message's RSET, MAIL, RCPT and BDAT/DATA go while the previous one's
 * final reply is still to come (RFC 2920 §3.1: the end of data may be
 * followed by more commands in the same group); without it, one. */
#define SMTP_TXN_MAX 2

/* One transaction (private to the client). */
struct smtp_txn {
	int ended, failed, data_open, last_sent, has_rset;
	size_t cmd_next; /* next of RSET, MAIL, RCPT... DATA to write */
	size_t ncmd;
	size_t nexp; /* its replies still expected */
	size_t rcpt_replies, accepted, end_replies;
	void *msg_ud;
	char from[SMTP_ADDR_MAX + 1];
	char rcpt_addr[SMTP_RCPT_MAX][SMTP_ADDR_MAX + 1];
	unsigned char rcpt_ok[SMTP_RCPT_MAX];
	struct smtp_status st[SMTP_RCPT_MAX];
	size_t nrcpt;
	uint64_t size, fed;
	unsigned mflags;
};

struct smtp_client {
	struct conn conn;
	struct smtp_reply_parser parser;
	const struct smtp_endpoint *ep;
	const struct smtp_client_cb *cb;
	void *ud;
	uint32_t caps;
	uint64_t size_max; /* SIZE n from EHLO, 0 = none announced */
	/* everything below is private */
	int state, closed, conn_open, auth_step, want_writable;
	int trace;
	uint64_t wire_in, wire_out;
	char who[300];
	/* the transactions, oldest first: tx[tx_first], then the one being
	 * written (the newest); replies go to the oldest */
	struct smtp_txn tx[SMTP_TXN_MAX];
	unsigned tx_first, tx_count;
	unsigned begun_msgs;
	int chunking, pipelining, msg_done_pending;
	unsigned char exp[SMTP_EXP_MAX]; /* ring of expected reply kinds | txn << 4 */
	size_t exp_head, exp_len;
	/* the newest transaction's data path */
	uint8_t *chunk; /* BDAT staging, SMTP_CHUNK bytes */
	size_t chunk_len;
	struct dot_stuff dot;
	int held_lf;        /* DATA: a bare LF held back (maybe the last byte) */
	unsigned char prev; /* DATA: the last byte fed */
	/* the finished transaction's result, as done() sees it */
	struct smtp_status res_st[SMTP_RCPT_MAX];
	char res_addr[SMTP_ADDR_MAX + 1];
};

int smtp_client_open(struct smtp_client *c, struct loop *l, const struct smtp_endpoint *ep,
                     const struct smtp_client_cb *cb, void *ud, struct mf_error *err);
/* Sends QUIT; the connection closes when the server answers (no callback). */
void smtp_client_quit(struct smtp_client *c);
/* Closes at once and frees; idempotent, safe inside the client's callbacks. */
void smtp_client_close(struct smtp_client *c);
/* Bytes on the wire so far (kept after close). */
void smtp_client_wire(const struct smtp_client *c, uint64_t *in, uint64_t *out);
/* Names the endpoint in messages: "destination lmtp unix:/run/lmtp". */
const char *smtp_client_who(const struct smtp_client *c);

/* Starts a transaction (client ready, smtp_can_begin). A negative return
 * refuses this message only, before anything was sent, and fills err; the
 * connection stays usable: -EFBIG (above the server's SIZE), -EINVAL (an
 * address with control characters, '<' or '>', too long, or not UTF-8),
 * -EPROTONOSUPPORT (a non-ASCII address without SMTPUTF8), -EBUSY (no
 * room for another transaction now), -ENOTCONN. m and its strings are
 * copied. */
int smtp_msg_begin(struct smtp_client *c, const struct smtp_msg *m, void *msg_ud,
                   struct mf_error *err);
/* Bytes smtp_msg_data may take now without growing buffers (0 while DATA
 * waits for its 354, or the last chunk's reply without PIPELINING). */
size_t smtp_write_space(struct smtp_client *c);
/* A new transaction may begin now: none is in flight, or (PIPELINING)
 * one whose end (BDAT LAST, the final ".") is written and which waits
 * only for its final reply. */
int smtp_can_begin(const struct smtp_client *c);
/* Transactions begun and not yet answered (done not yet called). */
unsigned smtp_inflight(const struct smtp_client *c);
/* Ask for cb->writable once space is back. */
void smtp_want_writable(struct smtp_client *c);
/* Feeds message bytes. 0; -EAGAIN if nothing may be written yet (DATA
 * before its 354: nothing was taken); -ECANCELED if the transaction has
 * already failed (a refused MAIL or every RCPT refused): stop feeding and
 * call smtp_msg_end for the result. */
int smtp_msg_data(struct smtp_client *c, const void *p, size_t n);
/* The transaction has failed already (smtp_msg_data would say -ECANCELED):
 * the caller stops reading the message and calls smtp_msg_end. */
int smtp_msg_failed(const struct smtp_client *c);
/* No more data: sends the end (".", BDAT LAST); done follows. */
int smtp_msg_end(struct smtp_client *c);

/* "RCPT TO <bob@example.org>: 550 5.1.1 User unknown" into out, escaped
 * for one line of human output (mf_escape). */
void smtp_status_describe(const struct smtp_status *s, const char *addr, char *out, size_t cap);

#endif
