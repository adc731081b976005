/*
 * imap_syntax — validation and re-serialisation of IMAP values that cross
 * from one server to the other (RFC 3501 §9): INTERNALDATE date-times,
 * flags and keywords, mailbox names.
 *
 * A source server is not trusted. Nothing it sent is spliced into a
 * command for the destination: a date is parsed into fields and written
 * again from them, a system flag is written from a fixed table, a keyword
 * only if every byte is an ATOM-CHAR, a mailbox name only through the
 * astring serialiser (imap_put_astring) and only if it can be a name at
 * all. What does not pass is refused, per message or per mailbox, by the
 * caller.
 *
 * Not for: parsing responses (imap_parse), writing commands (imap_client).
 */
#ifndef MF_IMAP_SYNTAX_H
#define MF_IMAP_SYNTAX_H

#include <stddef.h>
#include <stdint.h>

/* RFC 3501 date-time, e.g. "17-Jul-1996 02:44:25 -0700". */
struct imap_date {
	uint16_t year;
	uint8_t mon;            /* 1..12 */
	uint8_t day;            /* 1..31, valid for the month */
	uint8_t hour, min, sec; /* sec 60: a leap second */
	char tz_sign;           /* '+' or '-' */
	uint8_t tz_hour, tz_min;
};

/* "dd-Mon-yyyy hh:mm:ss +zzzz" */
#define IMAP_DATE_LEN 26

/* Parses the contents of a date-time string (without its quotes): day as
 * 2DIGIT, SP DIGIT or (leniently) one DIGIT, month name in any case,
 * 4-digit year, time, zone; nothing before or after. Ranges are checked
 * (the day against the month, zone minutes below 60, zone hours below
 * 24). 0, or -1 if s is not a date-time. */
int imap_date_parse(const char *s, size_t n, struct imap_date *d);
/* Writes the date-time from the fields (never from source bytes):
 * IMAP_DATE_LEN characters and a NUL. Returns IMAP_DATE_LEN. */
size_t imap_date_format(const struct imap_date *d, char out[IMAP_DATE_LEN + 1]);
/* Seconds since 1970-01-01T00:00:00Z. */
int64_t imap_date_unix(const struct imap_date *d);

enum imap_flag_kind {
	IMAP_FLAG_INVALID, /* neither: refuse it */
	IMAP_FLAG_SYSTEM,  /* \Answered \Flagged \Deleted \Seen \Draft */
	IMAP_FLAG_RECENT,  /* \Recent: session state, never copied */
	IMAP_FLAG_KEYWORD, /* an atom: safe to write as it is */
};

/* Classifies one flag of a FLAGS list (RFC 3501 §2.3.2, flag-keyword =
 * atom). For a system flag *canon (if canon) is its spelling from a fixed
 * table, whatever case the server used; for a keyword, NULL. A flag
 * extension ("\Foo") other than the system flags is invalid. */
enum imap_flag_kind imap_flag_classify(const char *s, size_t n, const char **canon);
/* 1 if s is an atom: at least one ATOM-CHAR (RFC 3501 §9: any CHAR but
 * "(" ")" "{" SP CTL "%" "*" DQUOTE "\" "]"), nothing else. */
int imap_atom_ok(const char *s, size_t n);

/* NULL if s can be sent as a mailbox name (through imap_put_astring),
 * else why not: empty, or a NUL, CR or LF byte (no quoted string can
 * carry CR or LF, and no IMAP4rev1 literal a NUL; a name cut at a NUL
 * would also land on another mailbox). */
const char *imap_mailbox_name_bad(const char *s, size_t n);

#endif
