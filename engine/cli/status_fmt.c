/*
 * status_fmt — what the status server answers, formatted from a snapshot:
 * /metrics in the Prometheus text format 0.0.4 (counters end in _total,
 * units in the names, one HELP and TYPE per family) and /api/status as one
 * JSON object (also what `report show --html` builds into the page). Both
 * are built only when asked, into one buffer, in time linear in the
 * accounts shown (the metrics do not list accounts at all: per-account
 * series would make Prometheus hold one series per mailbox owner).
 *
 * Not for: serving (status.c), the numbers themselves (the views).
 */
#include "engine/cli/status.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "engine/cli/run_report.h"
#include "engine/sync/hostlimit.h"
#include "engine/sync/job.h"

static int sbuf_grow(struct sbuf *b, size_t need)
{
	size_t cap = b->cap ? b->cap : 4096;
	char *p;

	if (b->oom)
		return -1;
	while (cap - b->n < need + 1)
		cap *= 2;
	if (cap == b->cap)
		return 0;
	if (!(p = realloc(b->p, cap))) {
		b->oom = 1;
		return -1;
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

void sbuf_add(struct sbuf *b, const void *p, size_t n)
{
	if (sbuf_grow(b, n) < 0)
		return;
	memcpy(b->p + b->n, p, n);
	b->n += n;
	b->p[b->n] = '\0';
}

void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (sbuf_grow(b, 256) < 0)
		return;
	va_start(ap, fmt);
	k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
	va_end(ap);
	if (k < 0)
		return;
	if ((size_t)k >= b->cap - b->n) {
		if (sbuf_grow(b, (size_t)k) < 0)
			return;
		va_start(ap, fmt);
		vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
		va_end(ap);
	}
	b->n += (size_t)k;
}

void sbuf_free(struct sbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0. */
static size_t utf8_len(const unsigned char *s)
{
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (s[0] >= 0xe0 && s[0] <= 0xef) {
		if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))
			return 0;
		return 3;
	}
	if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
			return 0;
		if ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

void sbuf_json_str(struct sbuf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");

	sbuf_add(b, "\"", 1);
	while (*p) {
		size_t k = 1, run = 0;

		while (p[run] >= 0x20 && p[run] < 0x80 && !strchr("\"\\<>&", p[run]))
			run++;
		if (run) {
			sbuf_add(b, p, run);
			p += run;
			continue;
		}
		if (*p < 0x20 || strchr("\"\\<>&", *p) || *p == 0x7f)
			sbuf_printf(b, "\\u%04x", *p);
		else if ((k = utf8_len(p)))
			sbuf_add(b, p, k);
		else
			sbuf_add(b, "\\ufffd", 6), k = 1;
		p += k;
	}
	sbuf_add(b, "\"", 1);
}

void status_rss(uint64_t *now, uint64_t *peak)
{
	struct rusage ru;
	FILE *f = fopen("/proc/self/statm", "re");
	unsigned long long size = 0, res = 0;

	*now = *peak = 0;
	if (f) {
		if (fscanf(f, "%llu %llu", &size, &res) == 2)
			*now = res * (uint64_t)sysconf(_SC_PAGESIZE);
		fclose(f);
	}
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		*peak = (uint64_t)ru.ru_maxrss * 1024u;
	if (*peak < *now)
		*peak = *now;
}

/* ---- /metrics ---------------------------------------------------------------- */

static void family(struct sbuf *b, const char *name, const char *type, const char *help)
{
	sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: \, " and newline escaped; anything not printable ASCII
 * (a host name comes from the accounts file) shown as '?'. */
static void label(struct sbuf *b, const char *v)
{
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '\\' || *p == '"')
			sbuf_printf(b, "\\%c", *p);
		else if (*p < 0x20 || *p >= 0x7f)
			sbuf_add(b, "?", 1);
		else
			sbuf_add(b, p, 1);
	}
}

enum host_value { HOST_OPEN, HOST_THROTTLES, HOST_BACKOFF };

/* One sample of NAME per server host: its open connections, throttling
 * signals, or what is left of its pause (seconds). */
static void host_series(struct sbuf *b, const struct hostlimit *hl, const char *name,
                        enum host_value what)
{
	for (size_t i = 0; i < hostlimit_hosts(hl); i++) {
		struct hostlimit_info hi;

		hostlimit_host_info(hl, i, &hi);
		sbuf_printf(b, "%s{host=\"", name);
		label(b, hi.key);
		if (what == HOST_OPEN)
			sbuf_printf(b, "\"} %u\n", hi.open);
		else if (what == HOST_THROTTLES)
			sbuf_printf(b, "\"} %llu\n", (unsigned long long)hi.throttles);
		else
			sbuf_printf(b, "\"} %.3f\n", (double)hi.backoff_ms / 1000.0);
	}
}

static void counts_family(struct sbuf *b, const struct status_snap *s, const char *what,
                          const char *human, size_t off)
{
	char name[96], help[200];

	snprintf(name, sizeof(name), "mailferry_%s_total", what);
	snprintf(help, sizeof(help), "%s, over every account of the run (finished and running).",
	         human);
	family(b, name, "counter", help);
	sbuf_printf(b, "%s %llu\n", name,
	            (unsigned long long)*(const uint64_t *)((const char *)&s->total + off));
	snprintf(name, sizeof(name), "mailferry_finished_%s_total", what);
	snprintf(help, sizeof(help),
	         "The same, of the accounts that finished, by their exit class.");
	family(b, name, "counter", help);
	for (int c = 0; c < STATUS_CLASSES; c++)
		sbuf_printf(
		    b, "%s{class=\"%s\"} %llu\n", name, run_class_name(c),
		    (unsigned long long)*(const uint64_t *)((const char *)&s->cls[c] + off));
}

void status_fmt_metrics(struct sbuf *b, const struct status_snap *s, const struct status_view *v)
{
	uint64_t rss, peak;

	(void)v;
	counts_family(b, s, "messages_copied", "Messages copied",
	              offsetof(struct status_counts, copied));
	counts_family(b, s, "messages_skipped", "Messages skipped (already there, or filtered out)",
	              offsetof(struct status_counts, skipped));
	counts_family(b, s, "messages_failed", "Messages that failed",
	              offsetof(struct status_counts, failed));
	counts_family(b, s, "copied_bytes", "Bytes of the messages copied",
	              offsetof(struct status_counts, bytes));
	family(b, "mailferry_accounts", "gauge", "Accounts of the run by state.");
	sbuf_printf(
	    b,
	    "mailferry_accounts{state=\"queued\"} %u\nmailferry_accounts{state=\"running\"} "
	    "%u\nmailferry_accounts{state=\"done\"} %u\nmailferry_accounts{state=\"failed\"} "
	    "%u\n",
	    s->queued, s->running, s->done, s->failed);
	family(b, "mailferry_finished_accounts_total", "counter",
	       "Accounts that finished, by exit class.");
	for (int c = 0; c < STATUS_CLASSES; c++)
		sbuf_printf(b, "mailferry_finished_accounts_total{class=\"%s\"} %u\n",
		            run_class_name(c), s->cls_accounts[c]);
	family(b, "mailferry_connections_open", "gauge",
	       "Connections open now to each server host.");
	host_series(b, s->hl, "mailferry_connections_open", HOST_OPEN);
	family(b, "mailferry_throttle_events_total", "counter",
	       "Throttling signals seen from each server host.");
	host_series(b, s->hl, "mailferry_throttle_events_total", HOST_THROTTLES);
	family(b, "mailferry_throttle_backoff_seconds", "gauge",
	       "What is left of the pause a throttling host imposes on new connections.");
	host_series(b, s->hl, "mailferry_throttle_backoff_seconds", HOST_BACKOFF);
	family(b, "mailferry_retries_total", "counter",
	       "Connection pairs reopened after a dropped connection.");
	sbuf_printf(b, "mailferry_retries_total %llu\n", (unsigned long long)s->retries);
	family(b, "mailferry_state_commit_duration_seconds", "histogram",
	       "How long a state commit (LMDB transaction) took.");
	{
		uint64_t cum = 0, n = s->stats ? s->stats->commits : 0;

		for (int k = 0; k < JOB_COMMIT_BUCKETS; k++) {
			cum += s->stats ? s->stats->commit_le[k] : 0;
			sbuf_printf(
			    b, "mailferry_state_commit_duration_seconds_bucket{le=\"%g\"} %llu\n",
			    job_commit_bounds[k], (unsigned long long)cum);
		}
		sbuf_printf(b,
		            "mailferry_state_commit_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
		            "mailferry_state_commit_duration_seconds_sum %.6f\n"
		            "mailferry_state_commit_duration_seconds_count %llu\n",
		            (unsigned long long)n, s->stats ? s->stats->commit_seconds : 0.0,
		            (unsigned long long)n);
	}
	status_rss(&rss, &peak);
	family(b, "mailferry_resident_memory_bytes", "gauge",
	       "Resident memory of the process now.");
	sbuf_printf(b, "mailferry_resident_memory_bytes %llu\n", (unsigned long long)rss);
	family(b, "mailferry_resident_memory_peak_bytes", "gauge",
	       "The most resident memory the process has held.");
	sbuf_printf(b, "mailferry_resident_memory_peak_bytes %llu\n", (unsigned long long)peak);
	family(b, "mailferry_elapsed_seconds", "gauge", "Time since the run started.");
	sbuf_printf(b, "mailferry_elapsed_seconds %.3f\n", s->elapsed_s);
	family(b, "mailferry_finished", "gauge", "1 once the run is over.");
	sbuf_printf(b, "mailferry_finished %d\n", s->finished);
}

/* ---- /api/status -------------------------------------------------------------- */

static const char *state_name(enum status_state st)
{
	static const char *const n[] = {"queued", "running", "done", "failed"};

	return n[st];
}

static void one_acct(void *arg, const struct status_acct *a)
{
	struct sbuf *b = arg;

	if (b->oom || !b->p)
		return;
	if (b->p[b->n - 1] != '[')
		sbuf_add(b, ",", 1);
	sbuf_printf(b, "{\"line\":%u,\"state\":\"%s\",\"class\":", a->line, state_name(a->state));
	if (a->state == STATUS_DONE || a->state == STATUS_FAILED)
		sbuf_printf(b, "\"%s\"", run_class_name(a->exit));
	else
		sbuf_add(b, "null", 4);
	sbuf_printf(
	    b,
	    ",\"copied\":%llu,\"skipped\":%llu,\"failed\":%llu,\"bytes\":%llu,\"total\":%llu,"
	    "\"seconds\":%.1f,\"name\":",
	    (unsigned long long)a->n.copied, (unsigned long long)a->n.skipped,
	    (unsigned long long)a->n.failed, (unsigned long long)a->n.bytes,
	    (unsigned long long)a->msgs_total, a->seconds);
	sbuf_json_str(b, a->name);
	sbuf_add(b, ",\"error\":", 9);
	sbuf_json_str(b, a->error);
	if (a->subject) {
		sbuf_add(b, ",\"subject\":", 11);
		sbuf_json_str(b, a->subject);
		sbuf_add(b, ",\"from\":", 8);
		sbuf_json_str(b, a->from ? a->from : "");
	}
	sbuf_add(b, "}", 1);
}

void status_fmt_json(struct sbuf *b, const struct status_snap *s, const struct status_view *v,
                     const struct status_point *hist, size_t n)
{
	uint64_t rss, peak;

	status_rss(&rss, &peak);
	sbuf_printf(b, "{\"mode\":\"%s\",\"title\":", s->mode);
	sbuf_json_str(b, s->title);
	sbuf_printf(b,
	            ",\"finished\":%s,\"elapsed\":%.1f,\"members\":%u,\"accounts\":{\"queued\":%u,"
	            "\"running\":%u,\"done\":%u,\"failed\":%u},\"copied\":%llu,\"skipped\":%llu,"
	            "\"failed\":%llu,\"bytes\":%llu,\"retries\":%llu,\"msgs_known\":%llu,\"eta\":",
	            s->finished ? "true" : "false", s->elapsed_s, s->members, s->queued, s->running,
	            s->done, s->failed, (unsigned long long)s->total.copied,
	            (unsigned long long)s->total.skipped, (unsigned long long)s->total.failed,
	            (unsigned long long)s->total.bytes, (unsigned long long)s->retries,
	            (unsigned long long)s->msgs_known);
	if (s->eta_s >= 0)
		sbuf_printf(b, "%.0f", s->eta_s);
	else
		sbuf_add(b, "null", 4);
	sbuf_printf(b, ",\"rss\":%llu,\"rss_peak\":%llu,\"hosts\":[", (unsigned long long)rss,
	            (unsigned long long)peak);
	for (size_t i = 0; i < hostlimit_hosts(s->hl); i++) {
		struct hostlimit_info hi;

		hostlimit_host_info(s->hl, i, &hi);
		sbuf_add(b, i ? ",{\"host\":" : "{\"host\":", i ? 9 : 8);
		sbuf_json_str(b, hi.key);
		sbuf_printf(
		    b,
		    ",\"open\":%u,\"peak\":%u,\"waiting\":%u,\"throttles\":%llu,\"backoff\":%.1f}",
		    hi.open, hi.peak, hi.waiting, (unsigned long long)hi.throttles,
		    (double)hi.backoff_ms / 1000.0);
	}
	sbuf_add(b, "],\"history\":[", 13);
	for (size_t i = 0; i < n; i++)
		sbuf_printf(b, "%s[%.1f,%llu,%llu]", i ? "," : "", hist[i].t,
		            (unsigned long long)hist[i].bytes, (unsigned long long)hist[i].msgs);
	sbuf_add(b, "],\"rows\":[", 10);
	if (v && v->accounts)
		v->accounts(v->ud, one_acct, b);
	sbuf_add(b, "]}\n", 3);
}
