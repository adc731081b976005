/*
 * mailhdr — what a delivery needs from a message's header before its
 * bytes go out (RFC 5322 §2.2, §3.6.7): the Return-Path address, to be the
 * envelope sender, and whether the header holds UTF-8 (SMTPUTF8, RFC 6531).
 *
 * Pure: reads a prefix of the message (the header, or as much of it as
 * the caller holds), never allocates, never trusts it: an address comes
 * back only if it is one line of printable ASCII or UTF-8 without blanks,
 * '<' or '>', within SMTP's limits. A field shown to a person (Subject,
 * From for the status page) comes back as display text: unfolded, RFC 2047
 * encoded-words in UTF-8, US-ASCII or ISO-8859-1 decoded (others kept as
 * they are), always well-formed UTF-8 without control characters, cut.
 *
 * Not for: parsing a message (it never alters or rewrites one), dates,
 * parsing addresses in From (the field is shown as text).
 */
#ifndef MF_MAILHDR_H
#define MF_MAILHDR_H

#include <stddef.h>
#include <stdint.h>

/* The header's length in p[0..n): up to and including the empty line that
 * ends it (CRLF CRLF or LF LF), or 0 if it does not end within n. */
size_t mailhdr_end(const uint8_t *p, size_t n);

/* The address of the first Return-Path field in the header p[0..n) (n: the
 * header's length, or all the caller has). 1 with the address in out (""
 * for the null path "<>"), 0 if there is none, -1 if there is one that is
 * not a usable address (the caller falls back to the null path). */
int mailhdr_return_path(const uint8_t *p, size_t n, char *out, size_t cap);

/* 1 if p[0..n) holds a well-formed UTF-8 sequence of two or more bytes. */
int mailhdr_has_utf8(const uint8_t *p, size_t n);

/* Longest display text mailhdr_field_text gives, in characters, and a
 * buffer that holds any (4 bytes a character, "...", NUL). */
#define MAILHDR_TEXT_CHARS 120
#define MAILHDR_TEXT_MAX (4 * MAILHDR_TEXT_CHARS + 4)

/* The first field called name (e.g. "subject") in the header p[0..n), as
 * display text in out (NUL-terminated; MAILHDR_TEXT_MAX holds any):
 * unfolded, blanks collapsed, RFC 2047 §4 encoded-words of
 * charsets UTF-8, US-ASCII and ISO-8859-1 decoded, invalid UTF-8 as U+FFFD,
 * control characters (C0, DEL, C1: escape sequences) as a blank, at most
 * MAILHDR_TEXT_CHARS characters (a cut one ends in "..."). 1 if the field
 * is there (out may be ""), 0 if not (out ""). A field cut off by the end
 * of p counts as far as it goes. */
int mailhdr_field_text(const uint8_t *p, size_t n, const char *name, char *out, size_t cap);

#endif
