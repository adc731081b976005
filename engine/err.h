/*
 * err — the one error record every module fills, and the logging helpers.
 * A function returns 0 or a negative errno-style code and, when it has
 * something to say to a human, fills a struct mf_error. Log lines go to
 * stderr, one per event, key=value; never a password.
 */
#ifndef MF_ERR_H
#define MF_ERR_H

#include <stdarg.h>

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

#endif
