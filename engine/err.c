/* err — error records and stderr logging (see err.h). */
#include "engine/err.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static enum mf_log_level log_level = MF_LOG_INFO;

void mf_err_set(struct mf_error *e, int code, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return;
	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
}

void mf_err_clear(struct mf_error *e)
{
	e->code = 0;
	e->msg[0] = '\0';
}

void mf_log_set_level(enum mf_log_level lvl)
{
	log_level = lvl;
}

int mf_log_enabled(enum mf_log_level lvl)
{
	return lvl <= log_level;
}

void mf_log(enum mf_log_level lvl, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	char line[2048];
	va_list ap;
	int n;

	if (lvl > log_level)
		return;
	n = snprintf(line, sizeof(line), "mailferry: %s: ", names[lvl]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
}
