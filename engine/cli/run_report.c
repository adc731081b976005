/*
 * run_report — rows of a run's final report: JSON out, JSON back in (for
 * `report merge`), a human table, and the order of exit classes. See
 * run_report.h for the format's contract.
 *
 * Not for: deciding a row's class (run.c, cli_exit_code), files (callers).
 */
#include "engine/cli/run_report.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- classes -------------------------------------------------------------- */

int run_class_rank(int exit_code)
{
	/* 0 done < 1 messages < 5 quota < 4 auth < 3 connect < 2 config */
	static const int rank[] = {0, 1, 5, 4, 3, 2};

	return exit_code >= 0 && exit_code <= 5 ? rank[exit_code] : 1;
}

int run_class_worse(int a, int b)
{
	return run_class_rank(a) > run_class_rank(b);
}

int run_class_max(int a, int b)
{
	return run_class_worse(b, a) ? b : a;
}

const char *run_class_name(int exit_code)
{
	static const char *const names[] = {"ok", "failed", "config", "connect", "auth", "quota"};

	return exit_code >= 0 && exit_code <= 5 ? names[exit_code] : "failed";
}

const char *run_status_name(enum run_status s)
{
	switch (s) {
	case RUN_DONE:
		return "done";
	case RUN_FAILED:
		return "failed";
	case RUN_BAD_LINE:
		return "bad_line";
	case RUN_DONE_EARLIER:
		return "done_earlier";
	}
	return "failed";
}

void run_totals_add(struct run_totals *t, const struct run_row *r)
{
	t->accounts++;
	switch (r->status) {
	case RUN_DONE:
		t->done++;
		break;
	case RUN_FAILED:
		t->failed++;
		break;
	case RUN_BAD_LINE:
		t->bad_lines++;
		break;
	case RUN_DONE_EARLIER:
		t->done_earlier++;
		break;
	}
	t->copied += r->copied;
	t->skipped += r->skipped;
	t->failed_msgs += r->failed;
	t->bytes += r->bytes;
	t->exit = run_class_max(t->exit, r->exit);
}

/* ---- JSON out ------------------------------------------------------------- */

static void json_str_or_null(FILE *f, const char *s)
{
	if (s && *s)
		mf_json_str(f, s, strlen(s));
	else
		fputs("null", f);
}

void run_report_head(FILE *f, const char *accounts_file, const char *shard)
{
	fputs("{\"mailferry_report\":1,\"accounts_file\":", f);
	mf_json_str(f, accounts_file, strlen(accounts_file));
	fputs(",\"shard\":", f);
	json_str_or_null(f, shard);
	fputs(",\n\"accounts\":[", f);
}

void run_report_row(FILE *f, const struct run_row *r, int first)
{
	fprintf(f, "%s\n{\"line\":%u,\"job\":", first ? "" : ",", r->line);
	mf_json_str(f, r->job, strlen(r->job));
	fputs(",\"source\":", f);
	json_str_or_null(f, r->src);
	fputs(",\"destination\":", f);
	json_str_or_null(f, r->dst);
	fputs(",\"action\":", f);
	json_str_or_null(f, r->action);
	fprintf(f,
	        ",\"status\":\"%s\",\"exit\":%d,\"class\":\"%s\",\"copied\":%llu,"
	        "\"skipped\":%llu,\"failed\":%llu,\"bytes\":%llu,\"seconds\":%.3f,\"error\":",
	        run_status_name(r->status), r->exit, run_class_name(r->exit),
	        (unsigned long long)r->copied, (unsigned long long)r->skipped,
	        (unsigned long long)r->failed, (unsigned long long)r->bytes, r->seconds);
	json_str_or_null(f, r->error);
	fputc('}', f);
}

void run_report_tail(FILE *f, const struct run_totals *t, double seconds)
{
	fprintf(f,
	        "\n],\n\"totals\":{\"accounts\":%u,\"done\":%u,\"failed\":%u,\"bad_lines\":%u,"
	        "\"done_earlier\":%u,\"copied\":%llu,\"skipped\":%llu,\"failed_messages\":%llu,"
	        "\"bytes\":%llu},\"seconds\":%.3f,\"exit\":%d,\"class\":\"%s\"}\n",
	        t->accounts, t->done, t->failed, t->bad_lines, t->done_earlier,
	        (unsigned long long)t->copied, (unsigned long long)t->skipped,
	        (unsigned long long)t->failed_msgs, (unsigned long long)t->bytes, seconds, t->exit,
	        run_class_name(t->exit));
}

/* ---- the human table ------------------------------------------------------ */

/* s escaped for a terminal and cut to at most w display bytes (at a UTF-8
 * boundary, "..." when cut). */
static void cell(char *out, size_t cap, const char *s, size_t w)
{
	char esc[1024];
	size_t n = mf_escape(s, strlen(s), esc, sizeof(esc)), cut = n;

	if (n > w) {
		cut = w > 3 ? w - 3 : 0;
		while (cut && ((unsigned char)esc[cut] & 0xc0) == 0x80)
			cut--;
	}
	snprintf(out, cap, "%.*s%s", (int)cut, esc, cut < n ? "..." : "");
}

void run_table_head(FILE *f)
{
	fprintf(f, "%6s  %-12s %-7s %8s %8s %7s %9s %8s  %s\n", "LINE", "STATUS", "CLASS", "COPIED",
	        "SKIPPED", "FAILED", "MB", "SECONDS", "ACCOUNT / ERROR");
}

void run_table_row(FILE *f, const struct run_row *r)
{
	char src[160], dst[160], err[200];

	cell(src, sizeof(src), r->src[0] ? r->src : "?", 60);
	cell(dst, sizeof(dst), r->dst[0] ? r->dst : "?", 60);
	cell(err, sizeof(err), r->error, 100);
	fprintf(f, "%6u  %-12s %-7s %8llu %8llu %7llu %9.1f %8.1f  %s -> %s%s%s\n", r->line,
	        run_status_name(r->status), run_class_name(r->exit), (unsigned long long)r->copied,
	        (unsigned long long)r->skipped, (unsigned long long)r->failed,
	        (double)r->bytes / 1e6, r->seconds, src, dst, err[0] ? ": " : "", err);
}

void run_table_tail(FILE *f, const struct run_totals *t)
{
	fprintf(f,
	        "%u accounts: %u done, %u done earlier, %u failed, %u bad lines; %llu copied, "
	        "%llu skipped, %llu failed, %.1f MB; exit %d (%s)\n",
	        t->accounts, t->done, t->done_earlier, t->failed, t->bad_lines,
	        (unsigned long long)t->copied, (unsigned long long)t->skipped,
	        (unsigned long long)t->failed_msgs, (double)t->bytes / 1e6, t->exit,
	        run_class_name(t->exit));
}

/* ---- JSON in -------------------------------------------------------------- */

#define JP_DEPTH 32

struct jp {
	const char *p;
	size_t n, i;
	int depth;
	struct mf_error *err;
};

static int jp_fail(struct jp *j, const char *what)
{
	if (!j->err->code)
		mf_err_set(j->err, -EINVAL, "report: byte %zu: %s", j->i, what);
	return -EINVAL;
}

static void jp_ws(struct jp *j)
{
	while (j->i < j->n && strchr(" \t\r\n", j->p[j->i]) && j->p[j->i])
		j->i++;
}

static int jp_lit(struct jp *j, char c)
{
	jp_ws(j);
	if (j->i < j->n && j->p[j->i] == c) {
		j->i++;
		return 1;
	}
	return 0;
}

static int hex4(const char *p, unsigned *v)
{
	*v = 0;
	for (int k = 0; k < 4; k++) {
		char c = p[k];
		unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
		             : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
		             : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
		                                    : 16u;
		if (d == 16)
			return -1;
		*v = *v << 4 | d;
	}
	return 0;
}

/* A string into out[cap] (NUL-terminated; longer ones are cut at a UTF-8
 * boundary), or skipped when out is NULL. */
static int jp_string(struct jp *j, char *out, size_t cap)
{
	size_t o = 0;
	int full = 0;

	jp_ws(j);
	if (j->i >= j->n || j->p[j->i] != '"')
		return jp_fail(j, "string expected");
	j->i++;
	for (;;) {
		char buf[4];
		size_t bl = 0;
		unsigned char c;

		if (j->i >= j->n)
			return jp_fail(j, "unterminated string");
		c = (unsigned char)j->p[j->i++];
		if (c == '"')
			break;
		if (c < 0x20)
			return jp_fail(j, "control character in a string");
		if (c != '\\') {
			buf[bl++] = (char)c;
		} else {
			unsigned cp, lo;

			if (j->i >= j->n)
				return jp_fail(j, "unterminated escape");
			c = (unsigned char)j->p[j->i++];
			switch (c) {
			case '"':
			case '\\':
			case '/':
				buf[bl++] = (char)c;
				break;
			case 'b':
				buf[bl++] = '\b';
				break;
			case 'f':
				buf[bl++] = '\f';
				break;
			case 'n':
				buf[bl++] = '\n';
				break;
			case 'r':
				buf[bl++] = '\r';
				break;
			case 't':
				buf[bl++] = '\t';
				break;
			case 'u':
				if (j->n - j->i < 4 || hex4(j->p + j->i, &cp) < 0)
					return jp_fail(j, "bad \\u escape");
				j->i += 4;
				if (cp >= 0xd800 && cp < 0xdc00) {
					if (j->n - j->i < 6 || j->p[j->i] != '\\' ||
					    j->p[j->i + 1] != 'u' ||
					    hex4(j->p + j->i + 2, &lo) < 0 || lo < 0xdc00 ||
					    lo > 0xdfff)
						return jp_fail(j, "lone surrogate");
					j->i += 6;
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				} else if (cp >= 0xdc00 && cp <= 0xdfff) {
					return jp_fail(j, "lone surrogate");
				}
				if (!cp)
					return jp_fail(j, "NUL in a string");
				if (cp < 0x80) {
					buf[bl++] = (char)cp;
				} else if (cp < 0x800) {
					buf[bl++] = (char)(0xc0 | cp >> 6);
					buf[bl++] = (char)(0x80 | (cp & 0x3f));
				} else if (cp < 0x10000) {
					buf[bl++] = (char)(0xe0 | cp >> 12);
					buf[bl++] = (char)(0x80 | (cp >> 6 & 0x3f));
					buf[bl++] = (char)(0x80 | (cp & 0x3f));
				} else {
					buf[bl++] = (char)(0xf0 | cp >> 18);
					buf[bl++] = (char)(0x80 | (cp >> 12 & 0x3f));
					buf[bl++] = (char)(0x80 | (cp >> 6 & 0x3f));
					buf[bl++] = (char)(0x80 | (cp & 0x3f));
				}
				break;
			default:
				return jp_fail(j, "bad escape");
			}
		}
		if (out && !full && o + bl < cap) {
			memcpy(out + o, buf, bl);
			o += bl;
		} else {
			full = 1;
		}
	}
	if (out && cap) {
		/* cut: not in the middle of a UTF-8 sequence */
		if (full)
			while (o && ((unsigned char)out[o - 1] & 0x80)) {
				size_t k = o - 1;

				while (k && ((unsigned char)out[k] & 0xc0) == 0x80)
					k--;
				if (mf_utf8_len((const unsigned char *)out + k, o - k, NULL) ==
				    o - k)
					break;
				o = k;
			}
		out[o] = '\0';
	}
	return 0;
}

/* A number: *d, and *u when it is a plain non-negative integer (*is_u). */
static int jp_number(struct jp *j, double *d, uint64_t *u, int *is_u)
{
	char tmp[48];
	size_t k = 0;
	int digits_only = 1;
	char *end;

	jp_ws(j);
	while (j->i < j->n && strchr("-+.eE0123456789", j->p[j->i]) && j->p[j->i]) {
		if (k + 1 >= sizeof(tmp))
			return jp_fail(j, "number too long");
		if (j->p[j->i] < '0' || j->p[j->i] > '9')
			digits_only = 0;
		tmp[k++] = j->p[j->i++];
	}
	tmp[k] = '\0';
	if (!k)
		return jp_fail(j, "value expected");
	errno = 0;
	*d = strtod(tmp, &end);
	if (*end)
		return jp_fail(j, "bad number");
	*is_u = 0;
	if (digits_only) {
		errno = 0;
		*u = strtoull(tmp, &end, 10);
		*is_u = !errno && !*end;
	}
	return 0;
}

static int jp_skip(struct jp *j)
{
	jp_ws(j);
	if (j->i >= j->n)
		return jp_fail(j, "value expected");
	switch (j->p[j->i]) {
	case '"':
		return jp_string(j, NULL, 0);
	case '{':
	case '[': {
		char close = j->p[j->i] == '{' ? '}' : ']';
		int obj = close == '}';

		if (++j->depth > JP_DEPTH)
			return jp_fail(j, "nested too deep");
		j->i++;
		if (!jp_lit(j, close)) {
			do {
				if (obj && (jp_string(j, NULL, 0) < 0 || !jp_lit(j, ':')))
					return jp_fail(j, "member expected");
				if (jp_skip(j) < 0)
					return -EINVAL;
			} while (jp_lit(j, ','));
			if (!jp_lit(j, close))
				return jp_fail(j, obj ? "'}' expected" : "']' expected");
		}
		j->depth--;
		return 0;
	}
	default:
		for (const char *w = "true\0false\0null\0"; *w; w += strlen(w) + 1)
			if (j->n - j->i >= strlen(w) && !memcmp(j->p + j->i, w, strlen(w))) {
				j->i += strlen(w);
				return 0;
			}
		{
			double d;
			uint64_t u;
			int is_u;

			return jp_number(j, &d, &u, &is_u);
		}
	}
}

/* A string or null into out. */
static int jp_opt_string(struct jp *j, char *out, size_t cap)
{
	jp_ws(j);
	if (j->n - j->i >= 4 && !memcmp(j->p + j->i, "null", 4)) {
		j->i += 4;
		out[0] = '\0';
		return 0;
	}
	return jp_string(j, out, cap);
}

static int jp_uint(struct jp *j, uint64_t *v, uint64_t max)
{
	double d;
	int is_u;

	if (jp_number(j, &d, v, &is_u) < 0)
		return -EINVAL;
	if (!is_u || *v > max)
		return jp_fail(j, "count out of range");
	return 0;
}

static int row_field(struct jp *j, const char *key, struct run_row *r)
{
	uint64_t v;
	char tmp[32];

	if (!strcmp(key, "line")) {
		if (jp_uint(j, &v, 0xffffffffu) < 0)
			return -EINVAL;
		r->line = (unsigned)v;
	} else if (!strcmp(key, "exit")) {
		if (jp_uint(j, &v, 5) < 0)
			return -EINVAL;
		r->exit = (int)v;
	} else if (!strcmp(key, "copied")) {
		return jp_uint(j, &r->copied, UINT64_MAX / 4);
	} else if (!strcmp(key, "skipped")) {
		return jp_uint(j, &r->skipped, UINT64_MAX / 4);
	} else if (!strcmp(key, "failed")) {
		return jp_uint(j, &r->failed, UINT64_MAX / 4);
	} else if (!strcmp(key, "bytes")) {
		return jp_uint(j, &r->bytes, UINT64_MAX / 4);
	} else if (!strcmp(key, "seconds")) {
		uint64_t u;
		int is_u;

		if (jp_number(j, &r->seconds, &u, &is_u) < 0)
			return -EINVAL;
		if (!(r->seconds >= 0 && r->seconds < 1e9))
			return jp_fail(j, "seconds out of range");
	} else if (!strcmp(key, "job")) {
		return jp_string(j, r->job, sizeof(r->job));
	} else if (!strcmp(key, "source")) {
		return jp_opt_string(j, r->src, sizeof(r->src));
	} else if (!strcmp(key, "destination")) {
		return jp_opt_string(j, r->dst, sizeof(r->dst));
	} else if (!strcmp(key, "error")) {
		return jp_opt_string(j, r->error, sizeof(r->error));
	} else if (!strcmp(key, "action")) {
		return jp_opt_string(j, r->action, sizeof(r->action));
	} else if (!strcmp(key, "status")) {
		if (jp_string(j, tmp, sizeof(tmp)) < 0)
			return -EINVAL;
		if (!strcmp(tmp, "done"))
			r->status = RUN_DONE;
		else if (!strcmp(tmp, "failed"))
			r->status = RUN_FAILED;
		else if (!strcmp(tmp, "bad_line"))
			r->status = RUN_BAD_LINE;
		else if (!strcmp(tmp, "done_earlier"))
			r->status = RUN_DONE_EARLIER;
		else
			return jp_fail(j, "unknown status");
	} else {
		return jp_skip(j);
	}
	return 0;
}

static int jp_row(struct jp *j, struct run_report *out)
{
	struct run_row *r;
	char key[32];
	int have_line = 0, have_status = 0;

	if (!jp_lit(j, '{'))
		return jp_fail(j, "account row expected");
	if (out->nrows == out->crows) {
		size_t nc = out->crows ? out->crows * 2 : 64;
		struct run_row *nr;

		if (out->nrows >= RUN_REPORT_ROWS_MAX)
			return jp_fail(j, "too many rows");
		if (!(nr = realloc(out->rows, nc * sizeof(*nr)))) {
			mf_err_set(j->err, -ENOMEM, "report: out of memory");
			return -ENOMEM;
		}
		out->rows = nr;
		out->crows = nc;
	}
	r = &out->rows[out->nrows];
	memset(r, 0, sizeof(*r));
	r->status = RUN_FAILED;
	r->exit = 1;
	if (!jp_lit(j, '}')) {
		do {
			if (jp_string(j, key, sizeof(key)) < 0 || !jp_lit(j, ':'))
				return jp_fail(j, "member expected");
			have_line |= !strcmp(key, "line");
			have_status |= !strcmp(key, "status");
			if (row_field(j, key, r) < 0)
				return -EINVAL;
		} while (jp_lit(j, ','));
		if (!jp_lit(j, '}'))
			return jp_fail(j, "'}' expected");
	}
	if (!have_line || !have_status || !r->job[0])
		return jp_fail(j, "account row without line, job or status");
	if ((r->status == RUN_DONE || r->status == RUN_DONE_EARLIER) != (r->exit == 0))
		return jp_fail(j, "status and exit disagree");
	out->nrows++;
	return 0;
}

int run_report_parse(const char *buf, size_t n, struct run_report *out, struct mf_error *err)
{
	struct jp j = {.p = buf, .n = n, .err = err};
	char key[32];
	int have_magic = 0, have_rows = 0;

	mf_err_clear(err);
	if (n > RUN_REPORT_MAX)
		return jp_fail(&j, "report too large");
	if (!jp_lit(&j, '{'))
		return jp_fail(&j, "not a mailferry report ('{' expected)");
	if (!jp_lit(&j, '}')) {
		do {
			if (jp_string(&j, key, sizeof(key)) < 0 || !jp_lit(&j, ':'))
				return jp_fail(&j, "member expected");
			if (!strcmp(key, "mailferry_report")) {
				uint64_t v;

				if (jp_uint(&j, &v, 1) < 0 || v != 1)
					return jp_fail(&j, "unknown report version");
				have_magic = 1;
			} else if (!strcmp(key, "accounts_file")) {
				if (jp_string(&j, out->accounts_file, sizeof(out->accounts_file)) <
				    0)
					return -EINVAL;
			} else if (!strcmp(key, "shard")) {
				if (jp_opt_string(&j, out->shard, sizeof(out->shard)) < 0)
					return -EINVAL;
			} else if (!strcmp(key, "accounts")) {
				if (have_rows)
					return jp_fail(&j, "two account lists");
				have_rows = 1;
				if (!jp_lit(&j, '['))
					return jp_fail(&j, "'[' expected");
				if (!jp_lit(&j, ']')) {
					do {
						int rc = jp_row(&j, out);

						if (rc < 0)
							return rc;
					} while (jp_lit(&j, ','));
					if (!jp_lit(&j, ']'))
						return jp_fail(&j, "']' expected");
				}
			} else if (jp_skip(&j) < 0) {
				return -EINVAL;
			}
		} while (jp_lit(&j, ','));
		if (!jp_lit(&j, '}'))
			return jp_fail(&j, "'}' expected (an unfinished report?)");
	}
	jp_ws(&j);
	if (j.i != n)
		return jp_fail(&j, "data after the report");
	if (!have_magic || !have_rows)
		return jp_fail(&j, "not a mailferry run report");
	return 0;
}

void run_report_free(struct run_report *r)
{
	free(r->rows);
	r->rows = NULL;
	r->nrows = r->crows = 0;
}

/* "FILE:LINE": by file, then by line number. */
static int row_cmp(const void *a, const void *b)
{
	const struct run_row *x = a, *y = b;
	const char *cx = strrchr(x->job, ':'), *cy = strrchr(y->job, ':');
	size_t lx = cx ? (size_t)(cx - x->job) : strlen(x->job);
	size_t ly = cy ? (size_t)(cy - y->job) : strlen(y->job);
	int c = memcmp(x->job, y->job, lx < ly ? lx : ly);

	if (c)
		return c;
	if (lx != ly)
		return lx < ly ? -1 : 1;
	return x->line < y->line ? -1 : x->line > y->line;
}

void run_rows_sort(struct run_row *rows, size_t n)
{
	if (n > 1)
		qsort(rows, n, sizeof(*rows), row_cmp);
}
