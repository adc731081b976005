/*
 * pop3_list — the drop listing of one POP3 session: what UIDL (RFC 1939
 * §7) and LIST (§5) said about each message number, kept in one array
 * that grows by doubling (not one allocation per message), with an open-
 * addressing index over the unique-ids so a duplicate is found at once.
 *
 * Fed one listing line at a time by pop3_client; pure otherwise (no I/O),
 * so it is unit-tested and fuzzed on its own.
 *
 * Bounds: message numbers must rise strictly and stay within max (a
 * hostile server cannot make it allocate more than max entries, about 90
 * bytes each); a unique-id that breaks RFC 1939 §7, or that an earlier
 * message has, is refused for that message only (its uidl stays empty)
 * and the first such refusal is kept in err.
 *
 * Not for: sending commands or reading replies (pop3_client, pop3_reply).
 */
#ifndef MF_POP3_LIST_H
#define MF_POP3_LIST_H

#include <stddef.h>
#include <stdint.h>

#include "protocols/pop3_reply.h"

struct pop3_msg {
	uint64_t size;                /* from LIST, if has_size */
	char uidl[POP3_UIDL_MAX + 1]; /* from UIDL, if uidl[0] */
	uint8_t has_size;
};

struct pop3_list {
	struct pop3_msg *msgs; /* msgs[msgno - 1] */
	uint32_t n, cap;       /* n: the highest message number listed */
	uint32_t *index;       /* msgno per slot, 0 = free; hcap slots */
	uint32_t hcap;
	uint32_t next; /* the lowest message number the next line may name */
	uint32_t max;  /* message numbers above it are refused */
	char err[200]; /* the first refused unique-id, "" if none */
};

enum pop3_list_kind { POP3_LIST_UIDL, POP3_LIST_SCAN };

void pop3_list_init(struct pop3_list *l, uint32_t max);
void pop3_list_free(struct pop3_list *l);
/* A new listing of that kind begins (its old values are forgotten). */
void pop3_list_begin(struct pop3_list *l, enum pop3_list_kind kind);
/* One line of the listing, as pop3_reply hands it out. 0: taken; 1: the
 * line's unique-id was refused (see l->err), the listing goes on; -EPROTO
 * (a line that is not "msgno value", a number out of order or above max)
 * or -ENOMEM, with a one-line reason in why (server text not escaped). */
int pop3_list_line(struct pop3_list *l, enum pop3_list_kind kind, const char *s, size_t n,
                   char *why, size_t whycap);
/* The entry of msgno, NULL if none was listed that high. */
const struct pop3_msg *pop3_list_get(const struct pop3_list *l, uint32_t msgno);

#endif
