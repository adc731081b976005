/*
 * report — what one account's run tells people and scripts: one error line
 * per failure naming account, mailbox and UID (and its JSON event), the
 * progress line on a TTY, the periodic state commit.
 *
 * Not for: deciding anything about the copy.
 */
#include "engine/sync/job_int.h"

#include <time.h>

/* ---- test hook ------------------------------------------------------------ */

/* TEST ONLY. MAILFERRY_TEST_FAIL=SITE:N (read once at job start) makes the
 * Nth pass through SITE fail as if its allocation or state call had: for
 * the regression tests of faults a real run cannot produce on demand
 * (tests/integration/t_silent_losses.sh). Sites: retry_push, change_note
 * (the list cannot grow), remap_get (the state cannot read a record),
 * kw_flush (kwdefer.c: the process is killed once that keyword STORE is
 * answered, before it is recorded; t_courier_sync.sh). */
void test_fail_init(struct job *j)
{
	const char *v = getenv("MAILFERRY_TEST_FAIL"), *colon;

	if (!v || !(colon = strchr(v, ':')) || (size_t)(colon - v) >= sizeof(j->test_fail_site))
		return;
	memcpy(j->test_fail_site, v, (size_t)(colon - v));
	j->test_fail_site[colon - v] = '\0';
	j->test_fail_at = strtoul(colon + 1, NULL, 10);
}

int test_fail(struct job *j, const char *site)
{
	if (!j->test_fail_at || strcmp(site, j->test_fail_site))
		return 0;
	return ++j->test_fail_calls == j->test_fail_at;
}

/* ---- reporting ----------------------------------------------------------- */

/* Opens a JSON event line: {"event":"EVENT" and the job's label, if any
 * (mailferry run: which account it is about). */
void job_event(struct job *j, const char *event)
{
	/* whole lines: with run --threads, other loops write events too */
	flockfile(j->o->out);
	fprintf(j->o->out, "{\"event\":\"%s\"", event);
	if (j->o->label) {
		fputs(",\"job\":", j->o->out);
		mf_json_str(j->o->out, j->o->label, strlen(j->o->label));
	}
}

void job_event_end(struct job *j)
{
	fflush(j->o->out);
	funlockfile(j->o->out);
}

void progress_clear(struct job *j)
{
	if (j->progress_shown) {
		fputs("\r\033[K", stderr);
		j->progress_shown = 0;
	}
}
static void job_error_v(struct job *j, int quiet, const char *who, const struct mbox *mb,
                        uint32_t uid, const char *fmt, va_list ap)
{
	char msg[1024], line[2048];
	int n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = snprintf(line, sizeof(line), "%s", who ? who : "");
	if (mb) {
		/* A long name must not push the reason off the line: it is cut
		 * (at a UTF-8 boundary) with an ellipsis; --json has it whole. */
		size_t dl = strlen(mb->display), cut = dl > JOB_NAME_SHOWN ? JOB_NAME_SHOWN : dl;

		while (cut < dl && cut && ((unsigned char)mb->display[cut] & 0xc0) == 0x80)
			cut--;
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%smailbox \"%.*s%s\"",
		              n ? " " : "", (int)cut, mb->display, cut < dl ? "..." : "");
	}
	if (uid && n < (int)sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n, " uid %u", uid);
	if (n < (int)sizeof(line))
		snprintf(line + n, sizeof(line) - (size_t)n, "%s%s", n ? ": " : "", msg);
	if (!quiet) {
		progress_clear(j);
		mf_log(MF_LOG_ERROR, "%s", line);
	}
	if (!j->sum->first_error[0])
		mf_escape(line, strlen(line), j->sum->first_error, sizeof(j->sum->first_error));
	if (!quiet && j->o->json && j->nerrors < MAX_ERRORS) {
		job_event(j, "error");
		fprintf(j->o->out, ",\"account\":");
		mf_json_str(j->o->out, who ? who : "", who ? strlen(who) : 0);
		fprintf(j->o->out, ",\"mailbox\":");
		if (mb)
			mf_json_str(j->o->out, mb->display, strlen(mb->display));
		else
			fputs("null", j->o->out);
		fprintf(j->o->out, ",\"uid\":%u,\"message\":", uid);
		mf_json_str(j->o->out, line, strlen(line));
		fputs("}\n", j->o->out);
		job_event_end(j);
	}
	j->nerrors++;
}

void job_error(struct job *j, const char *who, const struct mbox *mb, uint32_t uid,
               const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	job_error_v(j, 0, who, mb, uid, fmt, ap);
	va_end(ap);
}

void job_error_quiet(struct job *j, const char *who, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	job_error_v(j, 1, who, NULL, 0, fmt, ap);
	va_end(ap);
}

void mailbox_fail(struct worker *w, const char *who, uint32_t uid, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	job_error(w->job, who, w->mb, uid, "%s", msg);
	w->mb->failed = 1;
	mailbox_finish(w);
}

const double job_commit_bounds[JOB_COMMIT_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
};

int job_commit(struct job *j)
{
	struct mf_error e;
	int rc = 0;

	if (!scope_commit(j))
		return 0;
	if (test_fail(j, "commit")) {
		/* as a full disk does: the transaction is gone */
		state_abort(j->st);
		mf_err_set(&e, -ENOSPC, "state commit: No space left on device (test)");
		rc = -ENOSPC;
	} else if (j->o->stats) {
		struct timespec t0, t1;
		struct job_stats *js = j->o->stats;
		double d;
		size_t k = 0;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		rc = state_commit(j->st, &e);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		d = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		while (k < JOB_COMMIT_BUCKETS && d > job_commit_bounds[k])
			k++;
		js->commit_le[k]++;
		js->commits++;
		js->commit_seconds += d;
	} else {
		rc = state_commit(j->st, &e);
	}
	if (rc < 0) {
		job_error(j, NULL, NULL, 0, "%s", e.msg);
		j->fatal = 1;
	}
	j->state_dirty = 0;
	j->last_commit = loop_now_ms(j->loop);
	return rc;
}

void job_progress_get(const struct job *j, struct job_progress *p)
{
	p->msgs_total = 0;
	for (size_t i = 0; i < j->nmb; i++)
		if (j->mb[i].work && j->mb[i].have_status)
			p->msgs_total += j->mb[i].st_messages;
	p->mb_started = j->next_mb;
	p->mb_total = j->nmb;
	p->subject = p->from = NULL;
	if (j->o->show_subjects && j->have_hdr) {
		p->subject = j->subject;
		p->from = j->from;
	}
}

void on_tick(struct loop *l, struct loop_timer *t)
{
	struct job *j = (struct job *)((char *)t - offsetof(struct job, tick));
	struct job_summary *s = j->sum;
	double secs;

	if (j->finished)
		return;
	if (loop_now_ms(l) - j->last_commit >= 1000)
		job_commit(j);
	if (j->o->progress) {
		secs = (double)(loop_now_ms(l) - j->t0) / 1000.0;
		fprintf(stderr, "\r\033[Kmailferry: %llu copied, %llu skipped, %llu failed, %.1f MB, "
				"%.0f msg/s, %zu/%zu mailboxes",
			(unsigned long long)s->copied, (unsigned long long)s->skipped,
			(unsigned long long)s->failed, (double)s->bytes / 1e6,
			secs > 0 ? (double)s->copied / secs : 0.0, j->next_mb, j->nmb);
		j->progress_shown = 1;
	}
	loop_timer_start(l, &j->tick, 250, on_tick);
}
