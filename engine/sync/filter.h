/*
 * filter — what a selective copy selects (--since, --before, --larger,
 * --smaller, --search), as IMAP search keys (RFC 3501 §6.4.4): parsers for
 * the option values, a validator that reads a user's search string and
 * writes it out again in a canonical form, and the filter's identity that
 * the state keeps per mailbox (so a changed filter is noticed next run).
 *
 * Nothing the user typed reaches a command line as typed: the search string
 * is tokenised, checked against the search-key grammar (atoms, quoted
 * strings and numbers; no literals, no control characters, no 8-bit bytes,
 * bounded length, depth and key count) and written again from the parsed
 * keys: keys upper-cased, every string argument quoted, dates rebuilt.
 *
 * Pure: no I/O, no allocation. Not for: sending the search or deciding what
 * a changed filter means for a mailbox (source_imap.c).
 */
#ifndef MF_FILTER_H
#define MF_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/err.h"

#define FILTER_SEARCH_MAX 1024 /* bytes of --search as given */
#define FILTER_MAX 2048        /* the canonical keys of all options together */
#define FILTER_DEPTH_MAX 16    /* nested parentheses, NOT and OR */
#define FILTER_KEYS_MAX 64     /* search keys in --search */
#define FILTER_DATE_LEN 11     /* "31-Dec-2024" */

/* "2024-01-31" or "31-Jan-2024" (RFC 3501 date, day of 1 or 2 digits,
 * month case-insensitive) → "31-Jan-2024" in out (FILTER_DATE_LEN + 1),
 * and *ymd = year * 10000 + month * 100 + day (for comparisons). 0, or
 * -EINVAL with err saying why. */
int filter_date(const char *s, size_t n, char *out, uint32_t *ymd, struct mf_error *err);

/* "1500", "20k", "5M", "1G" (k, M, G: 1024, 1024², 1024³) → bytes, at
 * most 4294967295 (an IMAP number). 0 or -EINVAL. */
int filter_size(const char *s, uint32_t *out, struct mf_error *err);

/* Validates the search keys in[0..n) and writes their canonical form to
 * out (NUL-terminated): the length written, or -EINVAL (err says what and
 * where) / -ENOSPC (the canonical form does not fit cap). */
int filter_search(const char *in, size_t n, char *out, size_t cap, struct mf_error *err);

/* The options of a selective copy; NULL = not given. */
struct filter_spec {
	const char *since, *before;   /* dates as filter_date takes them */
	const char *larger, *smaller; /* sizes as filter_size takes them */
	const char *search;           /* search keys as filter_search takes them */
};

/* All of them as one canonical string of search keys, ANDed: "SINCE
 * 1-Jan-2024 BEFORE 1-Jan-2025 LARGER 1000 SMALLER 50000 FROM \"x\"" in
 * this order. The length (0: nothing selected by, every message is
 * copied), or -EINVAL with err naming the option. */
int filter_build(const struct filter_spec *sp, char *out, size_t cap, struct mf_error *err);

/* The identity of a canonical filter for the state (FNV-1a 64, never 0;
 * 0 stands for "no filter"). */
uint64_t filter_id(const char *canon, size_t n);

#endif
