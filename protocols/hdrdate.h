/*
 * hdrdate — the date a message was delivered, read from its own header
 * block, for sources that have no INTERNALDATE (POP3, RFC 1939): the
 * topmost (newest) Received: field whose date parses (the part after its
 * last ';', RFC 5321 §4.4), else the Date: field (RFC 5322 §3.6.1).
 *
 * Dates are RFC 5322 §3.3 date-times with the obsolete forms of §4.3 that
 * real mail carries: comments anywhere, no day name, two- and three-digit
 * years, alphabetic zones (UT, GMT, EST ... PDT; others mean -0000), a
 * missing seconds field. Ranges are checked (day against month, hour,
 * minute, second, zone below 24 h), so a hostile header cannot produce a
 * date IMAP would refuse; the result is a struct imap_date, written out by
 * imap_date_format from its fields, never from the header's bytes.
 *
 * Pure: no I/O, no allocation; works on a bounded buffer the caller holds
 * (the first bytes of a message). Fuzzed by tests/fuzz/fuzz_hdrdate.c.
 *
 * Not for: parsing other header fields, decoding MIME.
 */
#ifndef MF_HDRDATE_H
#define MF_HDRDATE_H

#include <stddef.h>

#include "protocols/imap_syntax.h"

enum hdrdate_from {
	HDRDATE_NONE = 0,     /* neither gave a date: the caller uses "now" */
	HDRDATE_RECEIVED = 1, /* the newest Received: field */
	HDRDATE_DATE = 2,     /* the Date: field */
};

/* Parses an RFC 5322 date-time (obsolete forms included) in s[0..n).
 * Text after the zone is ignored. 0, or -1 if it is not a date. */
int hdrdate_parse(const char *s, size_t n, struct imap_date *d);


/* Picks the delivery date from the header block at the start of p[0..n)
 * (it may be cut short: only complete fields are read). Returns where it
 * came from; *d is set unless HDRDATE_NONE. */
enum hdrdate_from hdrdate_pick(const char *p, size_t n, struct imap_date *d);

#endif
