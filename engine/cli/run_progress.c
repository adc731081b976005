/*
 * run_progress — the progress of `mailferry run` while it runs: on a TTY a
 * live display redrawn a few times a second (totals, then the busiest
 * accounts with a bar), otherwise one plain line every --progress-interval
 * seconds. Totals and the ETA come from finished and running accounts.
 *
 * Not for: the final report (run_report.c), running accounts (run.c).
 */
#include "engine/cli/run_int.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/err.h"

static void fmt_eta(char *out, size_t cap, double secs)
{
	if (!(secs >= 0) || secs > 360000)
		snprintf(out, cap, "?");
	else
		snprintf(out, cap, "%u:%02u:%02u", (unsigned)secs / 3600, (unsigned)secs / 60 % 60,
		         (unsigned)secs % 60);
}

/* Totals now: messages and bytes of finished and running accounts, and an
 * ETA from the rate so far and what is left to do (the messages the running
 * accounts' mailboxes hold, and the accounts not started, at the average
 * of those finished): seconds, or -1 if unknown. */
double run_progress_numbers(struct run *r, uint64_t *msgs, uint64_t *bytes, double *rate,
                            uint64_t *known)
{
	double secs = (double)(loop_now_ms(&r->loop) - r->t0) / 1000.0;
	uint64_t left = 0, done_this = 0, fin_msgs = 0;
	unsigned fin = r->totals.done + r->totals.failed;
	unsigned started = r->totals.accounts + r->running;

	*msgs = r->total.copied;
	*bytes = r->total.bytes;
	*known = 0;
	fin_msgs = r->total.copied + r->total.skipped + r->total.failed;
	done_this = fin_msgs;
	for (struct acct *a = r->active; a; a = a->next) {
		struct job_progress p;
		uint64_t seen = a->vsum.copied + a->vsum.skipped + a->vsum.failed;

		*msgs += a->vsum.copied;
		*bytes += a->vsum.bytes;
		done_this += seen;
		p = a->vprog;
		*known += p.msgs_total;
		left += p.msgs_total > seen ? p.msgs_total - seen : 0;
	}
	*rate = secs > 0 ? (double)*bytes / secs : 0;
	if (!r->members)
		return -1;
	if (r->members > started && fin)
		left += (uint64_t)((double)fin_msgs / fin * (r->members - started));
	if (r->members > started && !fin)
		return -1;
	return secs > 1 && done_this ? (double)left * secs / (double)done_this : (left ? -1 : 0);
}

static void progress_numbers(struct run *r, uint64_t *msgs, uint64_t *bytes, double *rate,
                             char *eta, size_t etacap)
{
	uint64_t known;

	fmt_eta(eta, etacap, run_progress_numbers(r, msgs, bytes, rate, &known));
}

/* The accounts this run takes, or "?" (read from a pipe). */
static const char *members_str(const struct run *r, char *out, size_t cap)
{
	if (r->members)
		snprintf(out, cap, "%u", r->members);
	else
		snprintf(out, cap, "?");
	return out;
}

/* One cell of the display: s escaped and cut to w bytes. */
static void cut(char *out, size_t cap, const char *s, size_t w)
{
	char esc[600];
	size_t n = mf_escape(s, strlen(s), esc, sizeof(esc)), k = n > w ? w : n;

	while (k < n && k && ((unsigned char)esc[k] & 0xc0) == 0x80)
		k--;
	snprintf(out, cap, "%.*s%s", (int)k, esc, k < n ? "~" : "");
}

/* The live display on a TTY: a blank line the cursor waits on (a log line
 * printed meanwhile lands there, and the next redraw clears from below
 * it), then the totals and the busiest running accounts with a bar. */
static void progress_draw(struct run *r)
{
	struct acct *top[RUN_BUSIEST];
	unsigned ntop = 0, lines = 1;
	uint64_t msgs, bytes;
	double rate;
	char eta[32], tot[16];

	progress_numbers(r, &msgs, &bytes, &rate, eta, sizeof(eta));
	for (struct acct *a = r->active; a; a = a->next) {
		unsigned k = ntop < RUN_BUSIEST ? ntop++ : RUN_BUSIEST;

		if (k == RUN_BUSIEST && a->vsum.bytes <= top[RUN_BUSIEST - 1]->vsum.bytes)
			continue;
		if (k == RUN_BUSIEST)
			k--;
		while (k && top[k - 1]->vsum.bytes < a->vsum.bytes) {
			top[k] = top[k - 1];
			k--;
		}
		top[k] = a;
	}
	fprintf(stderr, "\r\033[J\naccounts %u/%s done (%u failed), %u running | %llu msgs | "
	                "%.1f MB | %.1f MB/s | ETA %s",
	        r->totals.accounts, members_str(r, tot, sizeof(tot)), r->totals.failed + r->totals.bad_lines, r->running,
	        (unsigned long long)msgs, (double)bytes / 1e6, rate / 1e6, eta);
	for (unsigned i = 0; i < ntop; i++) {
		struct acct *a = top[i];
		struct job_progress p;
		uint64_t seen = a->vsum.copied + a->vsum.skipped + a->vsum.failed;
		char bar[24], name[64];
		unsigned pct = 0, fill;

		p = a->vprog;
		if (p.msgs_total)
			pct = seen >= p.msgs_total ? 100 : (unsigned)(seen * 100 / p.msgs_total);
		fill = pct / 5;
		for (unsigned k = 0; k < 20; k++)
			bar[k] = k < fill ? '#' : '-';
		bar[20] = '\0';
		cut(name, sizeof(name), a->sel.src, 40);
		fprintf(stderr, "\n  line %-5u [%s] %3u%% %llu/%llu msgs %.1f MB  %s", a->line, bar,
		        pct, (unsigned long long)seen, (unsigned long long)p.msgs_total,
		        (double)a->vsum.bytes / 1e6, name);
		lines++;
	}
	fprintf(stderr, "\033[%uA\r", lines);
	fflush(stderr);
	r->shown = 1;
}

void run_progress_clear(struct run *r)
{
	if (r->shown) {
		fputs("\r\033[J", stderr);
		fflush(stderr);
		r->shown = 0;
	}
}

/* Without a TTY: one plain line. */
static void progress_line(struct run *r)
{
	uint64_t msgs, bytes;
	double rate;
	char eta[32], tot[16];

	progress_numbers(r, &msgs, &bytes, &rate, eta, sizeof(eta));
	mf_print("mailferry: progress: %u/%s accounts done (%u failed), %u running, %llu copied, "
	         "%.1f MB, %.1f MB/s, ETA %s",
	         r->totals.accounts, members_str(r, tot, sizeof(tot)), r->totals.failed + r->totals.bad_lines, r->running,
	         (unsigned long long)msgs, (double)bytes / 1e6, rate / 1e6, eta);
}

void run_on_progress(struct loop *l, struct loop_timer *t)
{
	struct run *r = (struct run *)((char *)t - offsetof(struct run, tick));

	if (!r->running)
		return;
	run_threads_view(r);
	if (r->live)
		progress_draw(r);
	else
		progress_line(r);
	loop_timer_start(l, &r->tick, r->interval_ms, run_on_progress);
}
