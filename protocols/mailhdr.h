/*
 * mailhdr — what a delivery needs from a message's header before its
 * bytes go out (RFC 5322 §2.2, §3.6.7): the Return-Path address, to be the
 * envelope sender, and whether the header holds UTF-8 (SMTPUTF8, RFC 6531).
 *
 * Pure: reads a prefix of the message (the header, or as much of it as
 * the caller holds), never allocates, never trusts it: an address comes
 * back only if it is one line of printable ASCII or UTF-8 without blanks,
 * '<' or '>', within SMTP's limits.
 *
 * Not for: parsing a message (it never alters or rewrites one), dates.
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

#endif
