/*
 * dot — dot-stuffing and unstuffing as span filters (see dot.h).
 * Owns nothing but the few bits of state that carry a line start, a
 * leading dot or a CR across calls.
 */
#include "protocols/dot.h"

#include <string.h>

void dot_stuff_init(struct dot_stuff *d)
{
	memset(d, 0, sizeof(*d));
}

static void stuff_note_tail(struct dot_stuff *d, const char *in, size_t n)
{
	if (n >= 2) {
		d->last[0] = (unsigned char)in[n - 2];
		d->last[1] = (unsigned char)in[n - 1];
		d->nlast = 2;
	} else if (n == 1) {
		d->last[0] = d->last[1];
		d->last[1] = (unsigned char)in[0];
		d->nlast = d->nlast ? 2 : 1;
	}
}

int dot_stuff_feed(struct dot_stuff *d, const char *in, size_t n, dot_emit_fn emit, void *ctx)
{
	size_t start = 0, i = 0;
	int rc;

	while (i < n) {
		if (!d->mid) {
			if (in[i] == '.') {
				/* emit what came before, then the extra dot; the
				 * line's own dot starts the next span */
				if (i > start && (rc = emit(ctx, in + start, i - start)) < 0)
					return rc;
				if ((rc = emit(ctx, ".", 1)) < 0)
					return rc;
				start = i;
			}
			d->mid = true;
			if (in[i] == '\n')
				d->mid = false;
			i++;
			continue;
		}
		const char *nl = memchr(in + i, '\n', n - i);
		if (!nl) {
			i = n;
			break;
		}
		i = (size_t)(nl - in) + 1;
		d->mid = false;
	}
	if (n > start && (rc = emit(ctx, in + start, n - start)) < 0)
		return rc;
	stuff_note_tail(d, in, n);
	return 0;
}

int dot_stuff_end(struct dot_stuff *d, dot_emit_fn emit, void *ctx)
{
	bool crlf = d->nlast == 2 && d->last[0] == '\r' && d->last[1] == '\n';

	return crlf ? emit(ctx, ".\r\n", 3) : emit(ctx, "\r\n.\r\n", 5);
}

void dot_unstuff_init(struct dot_unstuff *d)
{
	d->st = DOT_U_LINE;
}

bool dot_unstuff_done(const struct dot_unstuff *d)
{
	return d->st == DOT_U_DONE;
}

long dot_unstuff_feed(struct dot_unstuff *d, const char *in, size_t n, dot_emit_fn emit, void *ctx)
{
	size_t i = 0, start = 0;
	int rc;

#define FLUSH_TO(end)                                                          \
	do {                                                                   \
		if ((end) > start && (rc = emit(ctx, in + start, (end) - start)) < 0) \
			return rc;                                             \
	} while (0)

	while (i < n) {
		switch (d->st) {
		case DOT_U_DONE:
			FLUSH_TO(i);
			return (long)i;
		case DOT_U_MID: {
			const char *nl = memchr(in + i, '\n', n - i);
			if (!nl) {
				i = n;
				break;
			}
			i = (size_t)(nl - in) + 1;
			d->st = DOT_U_LINE;
			break;
		}
		case DOT_U_LINE:
			if (in[i] == '.') {
				FLUSH_TO(i);
				i++;
				start = i; /* the leading dot is dropped */
				d->st = DOT_U_DOT;
			} else {
				d->st = in[i] == '\n' ? DOT_U_LINE : DOT_U_MID;
				i++;
			}
			break;
		case DOT_U_DOT:
			if (in[i] == '\r') {
				/* ".\r" may be the terminator: hold the CR */
				FLUSH_TO(i);
				i++;
				start = i;
				d->st = DOT_U_DOTCR;
			} else {
				d->st = in[i] == '\n' ? DOT_U_LINE : DOT_U_MID;
				i++;
			}
			break;
		case DOT_U_DOTCR:
			if (in[i] == '\n') {
				i++;
				start = i;
				d->st = DOT_U_DONE;
				return (long)i;
			}
			/* not the end: the held CR was data ("..\rX" unstuffed) */
			if ((rc = emit(ctx, "\r", 1)) < 0)
				return rc;
			d->st = DOT_U_MID;
			i++;
			break;
		}
	}
	FLUSH_TO(n);
#undef FLUSH_TO
	return (long)n;
}
