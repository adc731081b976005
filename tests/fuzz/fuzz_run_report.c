/*
 * fuzz_run_report — libFuzzer target for engine/cli/run_report.c (the
 * report reader of `mailferry report merge`) and the journal record parser
 * of engine/cli/run_journal.c (`run --resume`).
 *
 * Any bytes as a report: refused with a reason, or every row it yields is
 * within its field bounds (NUL-terminated strings, exit 0..5, a status
 * that agrees with it) and writes back as a report that reads again to the
 * same rows. Any bytes as journal lines: a record that parses formats back
 * to the same line.
 */
#include "engine/cli/run_journal.h"
#include "engine/cli/run_report.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "run_report: %s\n", what);
		abort();
	}
}

/* Valid UTF-8 without controls: what JSON carries back unchanged (other
 * bytes are written as the text \xNN, on purpose: see mf_json_str). */
static int clean(const char *s)
{
	char esc[RUN_JOB_MAX * 4];

	return mf_escape(s, strlen(s), esc, sizeof(esc)) == strlen(s) && !strcmp(esc, s);
}

static void rows_ok(const struct run_report *r)
{
	for (size_t i = 0; i < r->nrows; i++) {
		const struct run_row *w = &r->rows[i];

		check(memchr(w->job, 0, sizeof(w->job)) && memchr(w->src, 0, sizeof(w->src)) &&
		          memchr(w->dst, 0, sizeof(w->dst)) &&
		          memchr(w->error, 0, sizeof(w->error)),
		      "string not terminated");
		check(w->exit >= 0 && w->exit <= 5, "exit");
		check((w->status == RUN_DONE || w->status == RUN_DONE_EARLIER) == (w->exit == 0),
		      "status and exit");
	}
}

static void journal_lines(const char *p, size_t n)
{
	size_t start = 0;

	for (size_t i = 0; i <= n; i++) {
		struct run_journal_rec rec;
		char line[256];
		int len;

		if (i < n && p[i] != '\n')
			continue;
		if (run_journal_parse_line(p + start, i - start, &rec) == 0) {
			len = run_journal_format(&rec, line, sizeof(line));
			check(len > 0, "format");
			/* the same record, not necessarily the same bytes (leading zeros) */
			{
				struct run_journal_rec again;

				check(run_journal_parse_line(line, (size_t)len - 1, &again) == 0 &&
				          again.line == rec.line && again.exit == rec.exit &&
				          again.copied == rec.copied && again.bytes == rec.bytes &&
				          again.ms == rec.ms &&
				          !memcmp(&again.id, &rec.id, sizeof(rec.id)),
				      "journal round trip");
			}
		}
		start = i + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run_report rep, back;
	struct mf_error err;
	struct run_totals t;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	if (size > (1u << 20))
		return 0;
	journal_lines((const char *)data, size);
	memset(&rep, 0, sizeof(rep));
	if (run_report_parse((const char *)data, size, &rep, &err) < 0) {
		check(err.msg[0] != '\0', "no reason");
		rows_ok(&rep); /* what was read before the error is still sound */
		run_report_free(&rep);
		return 0;
	}
	rows_ok(&rep);
	memset(&t, 0, sizeof(t));
	f = open_memstream(&buf, &len);
	check(f != NULL, "memstream");
	run_report_head(f, rep.accounts_file, rep.shard[0] ? rep.shard : NULL);
	for (size_t i = 0; i < rep.nrows; i++) {
		run_report_row(f, &rep.rows[i], i == 0);
		run_totals_add(&t, &rep.rows[i]);
		run_table_row(f, &rep.rows[i]); /* escaping must not crash */
	}
	fclose(f);
	free(buf);
	buf = NULL;
	/* written again without the table: reads back to the same rows */
	f = open_memstream(&buf, &len);
	check(f != NULL, "memstream");
	run_report_head(f, rep.accounts_file, rep.shard[0] ? rep.shard : NULL);
	for (size_t i = 0; i < rep.nrows; i++)
		run_report_row(f, &rep.rows[i], i == 0);
	run_report_tail(f, &t, 0);
	fclose(f);
	memset(&back, 0, sizeof(back));
	check(run_report_parse(buf, len, &back, &err) == 0, "own output refused");
	check(back.nrows == rep.nrows, "row count");
	for (size_t i = 0; i < rep.nrows; i++)
		check(back.rows[i].line == rep.rows[i].line &&
		          back.rows[i].exit == rep.rows[i].exit &&
		          back.rows[i].copied == rep.rows[i].copied &&
		          (!clean(rep.rows[i].job) || !strcmp(back.rows[i].job, rep.rows[i].job)),
		      "round trip");
	run_report_free(&back);
	run_report_free(&rep);
	free(buf);
	return 0;
}
