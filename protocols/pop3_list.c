/*
 * pop3_list — the UIDL/LIST table of a POP3 session (see pop3_list.h).
 */
#include "protocols/pop3_list.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pop3_list_init(struct pop3_list *l, uint32_t max)
{
	memset(l, 0, sizeof(*l));
	l->max = max;
	l->next = 1;
}

void pop3_list_free(struct pop3_list *l)
{
	free(l->msgs);
	free(l->index);
	pop3_list_init(l, l->max);
}

const struct pop3_msg *pop3_list_get(const struct pop3_list *l, uint32_t msgno)
{
	if (!msgno || msgno > l->n)
		return NULL;
	return &l->msgs[msgno - 1];
}

void pop3_list_begin(struct pop3_list *l, enum pop3_list_kind kind)
{
	for (uint32_t i = 0; i < l->n; i++) {
		if (kind == POP3_LIST_UIDL)
			l->msgs[i].uidl[0] = '\0';
		else
			l->msgs[i].has_size = 0;
	}
	if (kind == POP3_LIST_UIDL && l->index)
		memset(l->index, 0, l->hcap * sizeof(*l->index));
	l->next = 1;
	l->err[0] = '\0';
}

/* Grows the table to hold msgno (doubling). */
static int reserve(struct pop3_list *l, uint32_t msgno)
{
	if (msgno > l->cap) {
		uint64_t cap = l->cap ? l->cap : 64;
		struct pop3_msg *m;

		while (cap < msgno)
			cap *= 2;
		if (cap > l->max)
			cap = l->max > msgno ? l->max : msgno;
		m = realloc(l->msgs, cap * sizeof(*m));
		if (!m)
			return -ENOMEM;
		memset(m + l->cap, 0, (cap - l->cap) * sizeof(*m));
		l->msgs = m;
		l->cap = (uint32_t)cap;
	}
	if (msgno > l->n)
		l->n = msgno;
	return 0;
}

static uint32_t uid_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* The index holds at most half its slots; rebuilt larger when needed. */
static int index_grow(struct pop3_list *l)
{
	uint64_t cap = l->hcap ? l->hcap : 256;
	uint32_t *h;

	if ((uint64_t)l->n * 2 <= l->hcap)
		return 0;
	while (cap < (uint64_t)l->n * 2)
		cap *= 2;
	if (!(h = calloc(cap, sizeof(*h))))
		return -ENOMEM;
	for (uint32_t k = 0; k < l->hcap; k++) {
		uint32_t m = l->index[k], i;

		if (!m)
			continue;
		i = uid_hash(l->msgs[m - 1].uidl) & (uint32_t)(cap - 1);
		while (h[i])
			i = (i + 1) & (uint32_t)(cap - 1);
		h[i] = m;
	}
	free(l->index);
	l->index = h;
	l->hcap = (uint32_t)cap;
	return 0;
}

/* Indexes msgno's unique-id; the msgno that already has it, or 0. */
static uint32_t index_add(struct pop3_list *l, uint32_t msgno)
{
	const char *u = l->msgs[msgno - 1].uidl;
	uint32_t i = uid_hash(u) & (l->hcap - 1);

	while (l->index[i]) {
		uint32_t m = l->index[i];

		if (!strcmp(l->msgs[m - 1].uidl, u))
			return m;
		i = (i + 1) & (l->hcap - 1);
	}
	l->index[i] = msgno;
	return 0;
}

static void refuse(struct pop3_list *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse(struct pop3_list *l, const char *fmt, ...)
{
	va_list ap;

	if (l->err[0]) /* the first one says enough */
		return;
	va_start(ap, fmt);
	vsnprintf(l->err, sizeof(l->err), fmt, ap);
	va_end(ap);
}

int pop3_list_line(struct pop3_list *l, enum pop3_list_kind kind, const char *s, size_t n,
                   char *why, size_t whycap)
{
	const char *name = kind == POP3_LIST_UIDL ? "UIDL" : "LIST";
	const char *uid = NULL, *bad = NULL;
	size_t ul = 0;
	uint32_t msgno, other;
	uint64_t size = 0;

	if (kind == POP3_LIST_UIDL) {
		if (pop3_parse_uidl(s, n, &msgno, &uid, &ul, &bad) < 0 && !uid) {
			snprintf(why, whycap, "malformed UIDL line (%s): %.*s", bad,
			         (int)(n > 100 ? 100 : n), s);
			return -EPROTO;
		}
	} else if (pop3_parse_scan(s, n, &msgno, &size) < 0) {
		snprintf(why, whycap, "malformed LIST line: %.*s", (int)(n > 100 ? 100 : n), s);
		return -EPROTO;
	}
	/* RFC 1939 §5, §7: in order, each message once */
	if (msgno < l->next) {
		snprintf(why, whycap, "%s listing out of order at message %u", name, msgno);
		return -EPROTO;
	}
	if (msgno > l->max) {
		snprintf(why, whycap,
		         "%s listing names message %u, more than %u messages; refusing", name,
		         msgno, l->max);
		return -EPROTO;
	}
	l->next = msgno + 1;
	if (reserve(l, msgno) < 0 || (kind == POP3_LIST_UIDL && index_grow(l) < 0)) {
		snprintf(why, whycap, "out of memory for the listing (%u messages)", msgno);
		return -ENOMEM;
	}
	if (kind == POP3_LIST_SCAN) {
		l->msgs[msgno - 1].size = size;
		l->msgs[msgno - 1].has_size = 1;
		return 0;
	}
	if (bad) {
		refuse(l, "message %u: unique-id \"%.*s\" refused: %s", msgno,
		       (int)(ul > 80 ? 80 : ul), uid, bad);
		return 1;
	}
	memcpy(l->msgs[msgno - 1].uidl, uid, ul);
	l->msgs[msgno - 1].uidl[ul] = '\0';
	if ((other = index_add(l, msgno))) {
		refuse(l, "messages %u and %u have the same unique-id \"%s\" (RFC 1939 §7)", other,
		       msgno, l->msgs[msgno - 1].uidl);
		l->msgs[msgno - 1].uidl[0] = '\0';
		return 1;
	}
	return 0;
}
