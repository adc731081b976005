/*
 * test_run_report — the pure parts of `mailferry run`'s bookkeeping:
 * the order of exit classes, shard selection (deterministic, every key in
 * exactly one shard, stable when lines are added), "K/N" parsing, journal
 * records (round trip, torn or hostile lines refused), and the report's
 * JSON written then read back, merged and refused when damaged.
 */
#include "engine/cli/run_journal.h"
#include "engine/cli/run_report.h"
#include "tests/unit/unit.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_class_order(struct unit_ctx *u)
{
	/* worst first: 2 config > 3 connect > 4 auth > 5 quota > 1 failed > 0 ok */
	static const int order[] = {2, 3, 4, 5, 1, 0};

	for (int i = 0; i < 6; i++)
		for (int k = i + 1; k < 6; k++) {
			UNIT_CHECKF(u, run_class_worse(order[i], order[k]), "%d !> %d", order[i],
			            order[k]);
			UNIT_CHECK(u, !run_class_worse(order[k], order[i]));
			UNIT_CHECK(u, run_class_max(order[k], order[i]) == order[i]);
		}
	UNIT_CHECK(u, run_class_max(0, 0) == 0);
	UNIT_CHECK(u, !strcmp(run_class_name(4), "auth"));
	UNIT_CHECK(u, !strcmp(run_class_name(2), "config"));
}

static void test_totals(struct unit_ctx *u)
{
	struct run_totals t;
	struct run_row r;

	memset(&t, 0, sizeof(t));
	memset(&r, 0, sizeof(r));
	r.status = RUN_DONE;
	r.copied = 10;
	r.bytes = 1000;
	run_totals_add(&t, &r);
	r.status = RUN_FAILED;
	r.exit = 4;
	r.copied = 0;
	r.failed = 3;
	run_totals_add(&t, &r);
	r.status = RUN_FAILED;
	r.exit = 1;
	run_totals_add(&t, &r);
	UNIT_CHECK(u, t.accounts == 3 && t.done == 1 && t.failed == 2);
	UNIT_CHECK(u, t.copied == 10 && t.failed_msgs == 6 && t.bytes == 3000);
	UNIT_CHECK(u, t.exit == 4);
}

static void test_shard(struct unit_ctx *u)
{
	unsigned count[7] = {0}, k, n;
	char key[64];

	for (int i = 0; i < 7000; i++) {
		unsigned s;

		snprintf(key, sizeof(key), "user%d@old -> user%d@new", i, i);
		s = run_shard_of_key(key, strlen(key), 7);
		UNIT_CHECK(u, s < 7);
		/* deterministic */
		UNIT_CHECK(u, s == run_shard_of_key(key, strlen(key), 7));
		count[s < 7 ? s : 0]++;
	}
	/* every key in exactly one shard, and roughly even (1000 each) */
	for (int s = 0; s < 7; s++)
		UNIT_CHECKF(u, count[s] > 850 && count[s] < 1150, "shard %d has %u", s, count[s]);
	UNIT_CHECK(u, run_shard_of_key("a", 1, 1) == 0);
	UNIT_CHECK(u, run_shard_of_line(7, 3) == 1 && run_shard_of_line(9, 3) == 0);
	UNIT_CHECK(u, run_shard_parse("0/3", &k, &n) == 0 && k == 0 && n == 3);
	UNIT_CHECK(u, run_shard_parse("2/3", &k, &n) == 0 && k == 2 && n == 3);
	UNIT_CHECK(u, run_shard_parse("3/3", &k, &n) < 0);
	UNIT_CHECK(u, run_shard_parse("1/0", &k, &n) < 0);
	UNIT_CHECK(u, run_shard_parse("-1/3", &k, &n) < 0);
	UNIT_CHECK(u, run_shard_parse("1/3x", &k, &n) < 0);
	UNIT_CHECK(u, run_shard_parse("1", &k, &n) < 0);
	UNIT_CHECK(u, run_shard_parse("1/", &k, &n) < 0);
	UNIT_CHECK(u, run_shard_parse("", &k, &n) < 0);
	UNIT_CHECK(u, run_shard_parse("99999999999999999999/3", &k, &n) < 0);
}

static void test_identity(struct unit_ctx *u)
{
	const char *a[] = {"imap://u@h", "imap://v@g", "--folder", "X"};
	const char *b[] = {"imap://u@h", "imap://v@g", "--folder", "Y"};
	const char *c[] = {"imap://u@h", "imap://v@g", "--folderX"};
	struct run_id ia, ia2, ib, ic;

	UNIT_CHECK(u, run_id_of(a, 4, &ia) == 0 && run_id_of(a, 4, &ia2) == 0);
	UNIT_CHECK(u, !memcmp(&ia, &ia2, sizeof(ia)));
	UNIT_CHECK(u, run_id_of(b, 4, &ib) == 0 && memcmp(&ia, &ib, sizeof(ia)));
	/* word boundaries count: "--folder" "X" is not "--folderX" */
	UNIT_CHECK(u, run_id_of(c, 3, &ic) == 0 && memcmp(&ia, &ic, sizeof(ia)));
}

static void test_journal_lines(struct unit_ctx *u)
{
	struct run_journal_rec r, back;
	char line[256];
	int n;

	memset(&r, 0, sizeof(r));
	r.line = 42;
	for (int i = 0; i < RUN_ID_LEN; i++)
		r.id.b[i] = (unsigned char)(i * 17);
	r.exit = 4;
	r.copied = 123;
	r.skipped = 7;
	r.failed = 1;
	r.bytes = 1ull << 40;
	r.ms = 999;
	n = run_journal_format(&r, line, sizeof(line));
	UNIT_CHECK(u, n > 0 && line[n - 1] == '\n');
	UNIT_CHECK(u, run_journal_parse_line(line, (size_t)n - 1, &back) == 0);
	UNIT_CHECK(u, back.line == 42 && back.exit == 4 && back.copied == 123 &&
	                  back.skipped == 7 && back.failed == 1 && back.bytes == 1ull << 40 &&
	                  back.ms == 999 && !memcmp(&back.id, &r.id, sizeof(r.id)));
	/* every torn prefix is refused (a crash mid-write) */
	for (int k = 0; k < n - 1; k++) {
		int rc = run_journal_parse_line(line, (size_t)k, &back);

		/* the only prefix that could parse would end after a whole
		 * number in the last field: it must not claim the same ms */
		UNIT_CHECKF(u, rc < 0 || back.ms != 999, "prefix %d parsed", k);
	}
	UNIT_CHECK(u, run_journal_parse_line("r1 1 zz 0 0 0 0 0 0", 19, &back) < 0);
	UNIT_CHECK(u, run_journal_parse_line("r2 1", 4, &back) < 0);
	snprintf(line, sizeof(line), "r1 1 %032d 9 0 0 0 0 0", 0);
	UNIT_CHECK(u, run_journal_parse_line(line, strlen(line), &back) < 0); /* exit 9 */
	snprintf(line, sizeof(line), "r1 1 %032d 0 99999999999999999999 0 0 0 0", 0);
	UNIT_CHECK(u, run_journal_parse_line(line, strlen(line), &back) < 0); /* overflow */
	snprintf(line, sizeof(line), "r1 1 %032d 0 1 2 3 4 5 ", 0);
	UNIT_CHECK(u, run_journal_parse_line(line, strlen(line), &back) < 0); /* trailing blank */
}

static void test_journal_file(struct unit_ctx *u)
{
	char dir[] = "/tmp/test_run_report.XXXXXX", path[128];
	struct run_journal j;
	struct run_journal_rec r;
	struct mf_error err;
	FILE *f;

	UNIT_CHECK(u, mkdtemp(dir) != NULL);
	memset(&r, 0, sizeof(r));
	UNIT_CHECK(u, run_journal_open(&j, dir, 0, &err) == 0);
	for (unsigned i = 1; i <= 5; i++) {
		r.line = i;
		r.id.b[0] = (unsigned char)i;
		r.exit = i == 3 ? 4 : 0;
		UNIT_CHECK(u, run_journal_append(&j, &r, &err) == 0);
	}
	/* line 4 ran again and failed: the last record wins */
	r.line = 4;
	r.id.b[0] = 4;
	r.exit = 1;
	UNIT_CHECK(u, run_journal_append(&j, &r, &err) == 0);
	run_journal_close(&j);
	/* a torn record at the end */
	snprintf(path, sizeof(path), "%s/%s", dir, RUN_JOURNAL_NAME);
	f = fopen(path, "a");
	UNIT_CHECK(u, f != NULL);
	if (f) {
		fputs("r1 6 0000", f);
		fclose(f);
	}
	UNIT_CHECK(u, run_journal_open(&j, dir, 1, &err) == 0);
	UNIT_CHECK(u, j.nrec == 5);
	for (unsigned i = 1; i <= 6; i++) {
		struct run_id id;

		memset(&id, 0, sizeof(id));
		id.b[0] = (unsigned char)i;
		UNIT_CHECKF(u,
		            (run_journal_done(&j, i, &id) != NULL) == (i == 1 || i == 2 || i == 5),
		            "line %u", i);
		/* another identity on the same line (the line changed): not done */
		id.b[1] = 1;
		UNIT_CHECK(u, run_journal_done(&j, i, &id) == NULL);
	}
	run_journal_close(&j);
	/* without --resume the journal starts over */
	UNIT_CHECK(u, run_journal_open(&j, dir, 0, &err) == 0 && j.nrec == 0);
	run_journal_close(&j);
	UNIT_CHECK(u, run_journal_open(&j, dir, 1, &err) == 0 && j.nrec == 0);
	run_journal_close(&j);
	unlink(path);
	rmdir(dir);
}

/* Writes rows as a report into a memory buffer. */
static char *write_report(const struct run_row *rows, size_t n, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	struct run_totals t;

	memset(&t, 0, sizeof(t));
	run_report_head(f, "acc\"ounts.txt", "1/3");
	for (size_t i = 0; i < n; i++) {
		run_report_row(f, &rows[i], i == 0);
		run_totals_add(&t, &rows[i]);
	}
	run_report_tail(f, &t, 1.5);
	fclose(f);
	return buf;
}

static void test_report_roundtrip(struct unit_ctx *u)
{
	struct run_row rows[3];
	struct run_report rep;
	struct mf_error err;
	size_t len;
	char *buf;

	memset(rows, 0, sizeof(rows));
	for (int i = 0; i < 3; i++) {
		rows[i].line = (unsigned)(10 - i);
		snprintf(rows[i].job, sizeof(rows[i].job), "acc\"ounts.txt:%u", rows[i].line);
		snprintf(rows[i].src, sizeof(rows[i].src), "imap://s%d@h\x1b[31m", i);
		snprintf(rows[i].dst, sizeof(rows[i].dst), "imap://d%d@h\xc3\xa9", i);
		rows[i].copied = (uint64_t)i * 100;
		rows[i].bytes = 1ull << (40 + i);
		rows[i].seconds = 0.25 * i;
	}
	rows[1].status = RUN_FAILED;
	rows[1].exit = 3;
	snprintf(rows[1].error, sizeof(rows[1].error), "connect: refused \"x\"\n\\");
	rows[2].status = RUN_DONE_EARLIER;
	buf = write_report(rows, 3, &len);
	memset(&rep, 0, sizeof(rep));
	UNIT_CHECKF(u, run_report_parse(buf, len, &rep, &err) == 0, "%s", err.msg);
	UNIT_CHECK(u, rep.nrows == 3 && !strcmp(rep.shard, "1/3") &&
	                  !strcmp(rep.accounts_file, "acc\"ounts.txt"));
	for (size_t i = 0; i < rep.nrows && i < 3; i++) {
		const struct run_row *a = &rows[i], *b = &rep.rows[i];

		UNIT_CHECKF(u,
		            a->line == b->line && a->status == b->status && a->exit == b->exit &&
		                a->copied == b->copied && a->bytes == b->bytes &&
		                !strcmp(a->job, b->job) && !strcmp(a->dst, b->dst) &&
		                !strcmp(a->error, b->error),
		            "row %zu differs", i);
		/* a control character comes back as the text \u001b escaped it to?
		 * no: JSON carries it exactly; the table escapes it */
		UNIT_CHECK(u, !strcmp(a->src, b->src));
	}
	run_rows_sort(rep.rows, rep.nrows);
	UNIT_CHECK(u, rep.rows[0].line == 8 && rep.rows[2].line == 10);
	{
		char *tb = NULL;
		size_t tl = 0;
		FILE *f = open_memstream(&tb, &tl);

		run_table_row(f, &rep.rows[1]);
		fclose(f);
		/* no raw escape or newline reaches the terminal */
		UNIT_CHECK(u, tb && !strchr(tb, '\x1b') && strchr(tb, '\n') == tb + tl - 1);
		free(tb);
	}
	run_report_free(&rep);
	/* every truncation of the report is refused, none crashes */
	for (size_t k = 0; k + 1 < len; k += 7) {
		memset(&rep, 0, sizeof(rep));
		UNIT_CHECKF(u, run_report_parse(buf, k, &rep, &err) < 0, "prefix %zu parsed", k);
		run_report_free(&rep);
	}
	free(buf);
}

static void test_report_refused(struct unit_ctx *u)
{
	static const char *const bad[] = {
	    "",
	    "[]",
	    "{}",
	    "{\"mailferry_report\":2,\"accounts\":[]}",
	    "{\"mailferry_report\":1}",
	    "{\"mailferry_report\":1,\"accounts\":[{\"line\":1,\"job\":\"a:1\"}]}",
	    "{\"mailferry_report\":1,\"accounts\":[{\"line\":1,\"job\":\"a:1\",\"status\":\"done\","
	    "\"exit\":3}]}",
	    "{\"mailferry_report\":1,\"accounts\":[{\"line\":-1,\"job\":\"a:1\",\"status\":"
	    "\"done\"}]}",
	    "{\"mailferry_report\":1,\"accounts\":[{\"line\":1,\"job\":\"a:1\",\"status\":\"x\"}]}",
	    "{\"mailferry_report\":1,\"accounts\":[{\"line\":1,\"job\":\"a\\ud800:1\",\"status\":"
	    "\"done\"}]}",
	    "{\"mailferry_report\":1,\"accounts\":[{\"line\":1,\"job\":\"a\\u0000\",\"status\":"
	    "\"done\"}]}",
	    "{\"mailferry_report\":1,\"accounts\":[]} x",
	    "{\"mailferry_report\":1,\"accounts\":[],\"accounts\":[]}",
	    "{\"mailferry_report\":1,\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]"
	    "]]]]]]]]]]]]]]]]]]]]]]]],"
	    "\"accounts\":[]}",
	};
	struct run_report rep;
	struct mf_error err;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&rep, 0, sizeof(rep));
		UNIT_CHECKF(u,
		            run_report_parse(bad[i], strlen(bad[i]), &rep, &err) < 0 && err.msg[0],
		            "accepted #%zu", i);
		run_report_free(&rep);
	}
	/* unknown members are skipped; a minimal row is accepted */
	{
		const char *ok =
		    "{\"extra\":{\"a\":[1,true,null,\"s\"]},\"mailferry_report\":1,"
		    "\"accounts\":[{\"x\":1.5e3,\"line\":7,\"job\":\"f:7\","
		    "\"status\":\"bad_line\",\"exit\":2,\"error\":\"\\u00e9\\ud83d\\ude00\"}]}";

		memset(&rep, 0, sizeof(rep));
		UNIT_CHECKF(u, run_report_parse(ok, strlen(ok), &rep, &err) == 0, "%s", err.msg);
		UNIT_CHECK(u, rep.nrows == 1 && rep.rows[0].line == 7 && rep.rows[0].exit == 2 &&
		                  !strcmp(rep.rows[0].error, "\xc3\xa9\xf0\x9f\x98\x80"));
		run_report_free(&rep);
	}
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, test_class_order);
	UNIT_RUN(&u, test_totals);
	UNIT_RUN(&u, test_shard);
	UNIT_RUN(&u, test_identity);
	UNIT_RUN(&u, test_journal_lines);
	UNIT_RUN(&u, test_journal_file);
	UNIT_RUN(&u, test_report_roundtrip);
	UNIT_RUN(&u, test_report_refused);
	printf("%d passed, %d failed\n", u.passed, u.failed);
	return unit_done(&u);
}
