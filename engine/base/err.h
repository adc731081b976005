/*
 * err — the one error record every module fills, and the logging helpers.
 * A function returns 0 or a negative errno-style code and, when it has
 * something to say to a human, fills a struct mf_error. Log lines go to
 * stderr, one per event, key=value; never a password.
 *
 * Names and texts in these lines may come from a hostile server: every
 * line (and every mf_error message) is escaped on its way out, so a
 * control character, an invalid UTF-8 byte or a terminal escape can
 * neither end a line early, forge another one, nor reach the terminal.
 */
#ifndef MF_ERR_H
#define MF_ERR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#define MF_ERR_MAX 512

struct mf_error {
	int code;		 /* negative errno-style code, 0 = none */
	char msg[MF_ERR_MAX];	 /* one line, no trailing newline */
};

void mf_err_set(struct mf_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void mf_err_clear(struct mf_error *e);

enum mf_log_level { MF_LOG_ERROR, MF_LOG_WARN, MF_LOG_INFO, MF_LOG_DEBUG };

/* Verbosity is process configuration set once by main(), not mutable run state. */
void mf_log_set_level(enum mf_log_level lvl);
int mf_log_enabled(enum mf_log_level lvl);
void mf_log(enum mf_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One line on stderr as given (no "mailferry: LEVEL:" prefix, no level
 * check), escaped like mf_log's. */
void mf_print(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mf_vprint(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Escapes n bytes for one line of human output: CR, LF and TAB as \r \n
 * \t, other C0 controls, DEL and bytes that are not valid UTF-8 as \xNN,
 * C1 controls and bidirectional overrides as \uNNNN; valid UTF-8 stays
 * as it is. Backslashes are kept, so escaping twice changes nothing.
 * Writes at most cap-1 bytes plus a NUL (never half an escape); returns
 * the length written. */
size_t mf_escape(const char *s, size_t n, char *out, size_t cap);
/* The same, and '"' as \x22: for a value a line puts between double
 * quotes (key="value"), so a name cannot end its value early and forge
 * the keys after it. mf_escape cannot do it: it escapes whole lines,
 * quotes of their own included. */
size_t mf_escape_quoted(const char *s, size_t n, char *out, size_t cap);
/* Length (1-4) of the well-formed UTF-8 sequence at p, its code point in
 * *cp (if cp); 0 if p does not start one (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF). */
size_t mf_utf8_len(const unsigned char *p, size_t n, unsigned long *cp);
/* Writes s[0..n) as one JSON string (RFC 8259), quotes included: controls
 * as \u00XX, bytes that are not valid UTF-8 as the text \xNN, so a line of
 * JSON stays valid whatever a server sent. */
void mf_json_str(FILE *f, const char *s, size_t n);

#endif
