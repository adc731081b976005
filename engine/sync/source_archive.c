/*
 * source_archive — a backup run of an archive (store/archive.h) as the
 * source of the pipeline, behind source.h: `mailferry restore`. The plan
 * lists the run's mailboxes; a pass streams each message the run holds
 * (archive_iter.h) into the copy path with the flags, keywords and
 * INTERNALDATE the run recorded.
 *
 * Identity. A message is (the archive's mailbox, its UIDVALIDITY, the
 * source UID the backup recorded): the state keys its intents and DONE
 * records by that UID under that UIDVALIDITY, so a re-run copies nothing
 * and a killed restore is settled on the destination and resumed exactly
 * as a migration is (settle.c). The job's state is keyed by the archive,
 * the run and the destination (restore_cmd.c).
 *
 * Names. The archive records a mailbox's name as the source sent it (wire
 * form: modified UTF-7 with the source's separator) but not the separator:
 * job_opts.arc_sep says it ('.' unless told), and the destination's
 * separator replaces it as for a migration (names.c).
 *
 * What is sent is rebuilt from the record, never passed through: flags
 * from the system flag bits, keywords only when each is an atom (others
 * are dropped with one line), the date from its seconds. A message is
 * read and re-hashed once before it begins (archive_get without output),
 * so a damaged one fails with one line naming mailbox and UID before a
 * byte of it reaches a sink; the pass goes on. Then it is streamed frame
 * by frame; a piece the sink does not take (copy_msg_data short) stays in
 * the reader, the source pauses until the copy path kicks it. Both reads
 * decompress; a message within one frame is decompressed once (the
 * reader keeps its last frame).
 *
 * Several connections: every worker is a source of its own with its own
 * reader (its own frame buffer, archive_iter.h) on the one archive handle,
 * all on the job's thread, so mailboxes are restored side by side, as a
 * migration's are, and a big one is split by UID range (split.c; the
 * plan counts each mailbox's UIDs in the run in place of STATUS, and a
 * part lists only its range).
 *
 * Reads are blocking file I/O on the loop's thread, in turns of at most
 * ARCSRC_TURN bytes (then the loop runs again): a simplification for a
 * first version, like the archive sink's writes.
 *
 * Not for: the archive's format (store/), the destination (sink_*.c).
 */
#include "engine/sync/job_int.h"
#include "store/archive.h"
#include "store/archive_iter.h"

/* Bytes streamed per loop turn before the loop runs again. */
#define ARCSRC_TURN ((uint64_t)1 << 20)

struct arcsrc {
	struct worker *w;
	struct loop_task task; /* open (announce ready) or pump */
	int open_pending;
	int paused;
	uint32_t *todo; /* UIDs of the pass */
	size_t ntodo, ctodo, pos;
	int cur; /* a message is being streamed from rd */
	uint32_t cur_uid;
	struct archive_reader rd;
	struct archive_msgmeta meta;
	uint32_t max_uid;
};

static void arcsrc_task(struct loop *l, struct loop_task *t);

static const char *arcwho(const struct worker *w)
{
	return w->job->o->src_archive_who ? w->job->o->src_archive_who : "archive";
}

static void arcsrc_schedule(struct arcsrc *s)
{
	if (!s->task.queued)
		loop_defer(s->w->job->loop, &s->task);
}

/* The source failed in a way that must stop the job. */
static void arcsrc_fatal(struct arcsrc *s)
{
	struct worker *w = s->w;
	struct job *j = w->job;

	j->fatal = 1;
	if (w->mb)
		w->mb->failed = 1;
	s->cur = 0;
	s->pos = s->ntodo;
	w->sink.ops->abort(&w->sink);
	loop_defer(j->loop, &j->stop_task);
}

/* ---- the session: no connection; ready on the next loop turn ------------ */

int arcsrc_open(struct worker *w, struct mf_error *err)
{
	struct arcsrc *s = w->arc;

	if (!s) {
		if (!(s = calloc(1, sizeof(*s)))) {
			mf_err_set(err, -ENOMEM, "out of memory");
			return -ENOMEM;
		}
		s->w = w;
		s->task.fn = arcsrc_task;
		w->arc = s;
	}
	s->paused = 0;
	s->cur = 0;
	s->ntodo = s->pos = 0;
	s->open_pending = 1;
	arcsrc_schedule(s);
	return 0;
}

int arcsrc_queued(const struct worker *w)
{
	return w->arc && w->arc->task.queued;
}

void arcsrc_free(struct worker *w)
{
	struct arcsrc *s = w->arc;

	if (!s)
		return;
	archive_reader_close(&s->rd);
	free(s->todo);
	free(s);
	w->arc = NULL;
}

/* ---- the plan: the run's mailboxes ---------------------------------------- */

static int plan_mbox(void *ctx, const struct archive_mbox_info *mi)
{
	struct job *j = ctx;
	struct mbox *mb;
	char sep = j->o->arc_sep ? j->o->arc_sep : '.';

	if (!(mb = mbox_add(j, mi->name, mi->nlen)))
		return -ENOMEM;
	mb->sep = sep;
	/* people and --folder see '/' for hierarchy, as for an IMAP source */
	if (sep != '/')
		for (char *d = mb->display; *d; d++)
			if (*d == sep)
				*d = '/';
	mb->amb = mi->mbid;
	mb->amb_uidv = mi->uidvalidity ? mi->uidvalidity : 1;
	mb->amb_set = 1;
	return 0;
}

struct mbox_count {
	uint32_t n, max;
};

static int count_uid(void *ctx, uint32_t uid, const struct archive_msgmeta *m)
{
	struct mbox_count *c = ctx;

	(void)m;
	c->n++;
	if (uid > c->max)
		c->max = uid;
	return 0;
}

/* What STATUS tells of an IMAP mailbox, for the split of a big mailbox
 * over several connections (split.c) and the largest-first order:
 * MESSAGES and UIDNEXT of the run's mailbox. have_status stays 0: the
 * plan's "nothing new since the last run" shortcut is not taken, every
 * pass lists the run's UIDs against the state (so a re-run with other
 * --since/--before finds what the first left out). */
static int plan_counts(struct job *j, struct mf_error *e)
{
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];
		struct mbox_count c = {0, 0};
		int rc;

		if (!mb->amb_set)
			continue;
		rc = archive_uid_each(j->o->src_archive, j->o->src_archive_run, mb->amb, count_uid,
		                      &c, e);
		if (rc < 0)
			return rc;
		mb->st_uidvalidity = mb->amb_uidv;
		mb->st_messages = c.n;
		mb->st_uidnext = c.max < UINT32_MAX ? c.max + 1 : UINT32_MAX;
	}
	return 0;
}

static void arcsrc_plan(struct worker *w)
{
	struct job *j = w->job;
	struct mf_error e;
	int rc;

	mf_err_clear(&e);
	rc = archive_mbox_each(j->o->src_archive, j->o->src_archive_run, plan_mbox, j, &e);
	if (rc >= 0)
		rc = plan_counts(j, &e);
	if (rc < 0) {
		if (rc == -ENOMEM && !e.msg[0])
			mf_err_set(&e, rc, "out of memory");
		job_error(j, arcwho(w), NULL, 0, "cannot list run %u: %s", j->o->src_archive_run,
		          e.msg);
		j->fatal = 1;
		job_maybe_finish(j);
		return;
	}
	plan(j);
}

static void arcsrc_ready(struct arcsrc *s)
{
	struct worker *w = s->w;

	s->open_pending = 0;
	if (w->dead || w->phase == W_DONE)
		return;
	w->src_ready = 1;
	if (w->id == 0 && !w->job->listed)
		arcsrc_plan(w);
	else
		worker_next(w);
}

/* ---- the pass ---------------------------------------------------------------- */

void arcsrc_mailbox_begin(struct worker *w)
{
	struct job *j = w->job;
	struct mbox *mb = w->mb;
	struct arcsrc *s = w->arc;
	struct mf_error e;

	w->intents_marked = 0;
	w->ntmp = w->tmp_passes = 0;
	w->phase = W_EXAMINE;
	w->list_mode = 1; /* the pass's UIDs are listed, not a range */
	w->uidvalidity = mb->amb_uidv;
	w->uidnext = 0;
	w->highestmodseq = 0;
	w->method = M_NEW_ONLY;
	changes_reset(w);
	w->dd_done = 0;
	w->seen_n = 0;
	s->cur = 0;
	s->paused = 0;
	s->ntodo = s->pos = 0;
	w->have_rec = state_mbox_get(j->st, j->jobid, mb->mbid, &w->rec, &e) == 0;
	if (!w->have_rec)
		memset(&w->rec, 0, sizeof(w->rec));
	w->start_uid = 1;
	/* a part of a split mailbox: its UID range, never a settle (the
	 * record's intents are the other parts' batches in flight, split.c) */
	if (w->part && split_examined(w, &w->rec))
		return; /* then changes_start, fetch_start: here */
	if (settle_if_interrupted(w, w->uidvalidity))
		return; /* then changes_start, fetch_start: here */
	arcsrc_fetch_start(w);
}

static int id_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Settled after a reconnect and counted as copied then (settle.c). */
static int counted_already(const struct worker *w, uint32_t uid)
{
	return w->ncounted &&
	       bsearch(&uid, w->counted, w->ncounted, sizeof(*w->counted), id_cmp) != NULL;
}

/* One UID of the run's mailbox (archive_uid_each: no archive call in
 * here, the index cursor is open). */
static int collect(void *ctx, uint32_t uid, const struct archive_msgmeta *m)
{
	struct arcsrc *s = ctx;
	struct worker *w = s->w;
	struct job *j = w->job;
	const struct job_opts *o = j->o;
	struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, uid};
	struct state_msg sm;
	struct mf_error e;

	if (uid > s->max_uid)
		s->max_uid = uid;
	if (uid < w->start_uid || uid > w->end_uid)
		return 0; /* another part's (split.c) */
	if (!m) {
		job_error(j, arcwho(w), w->mb, uid,
		          "the archive's record of this message is damaged; not restored");
		copy_msg_fail(w, uid);
		return 0;
	}
	if ((o->arc_since_set && m->internaldate < o->arc_since) ||
	    (o->arc_before_set && m->internaldate >= o->arc_before))
		return 0; /* --since / --before */
	if (j->jobid != JOB_DRY_JOBID && state_msg_get(j->st, &k, &sm, &e) == 0 &&
	    sm.status == STATE_MSG_DONE) {
		if (!counted_already(w, uid)) {
			w->mb->skipped++;
			j->sum->skipped++;
		}
		return 0;
	}
	if (grow((void **)&s->todo, &s->ctodo, s->ntodo + 1, sizeof(*s->todo)) < 0)
		return -ENOMEM;
	s->todo[s->ntodo++] = uid;
	return 0;
}

void arcsrc_fetch_start(struct worker *w)
{
	struct arcsrc *s = w->arc;
	struct job *j = w->job;
	struct mf_error e;
	int rc;

	w->phase = W_FETCH;
	w->single_mode = 0;
	w->list_mode = 1;
	w->nretry = w->retry_pos = 0;
	w->mb_failed_min_uid = 0;
	/* the whole mailbox, or a part's range (split_examined set start_uid) */
	if (!w->part)
		w->start_uid = 1;
	w->end_uid = w->part && w->part_hi < UINT32_MAX - 1 ? w->part_hi : UINT32_MAX - 1;
	if (!w->resumed) {
		w->resume_uid = 0;
		w->ncounted = 0;
	}
	s->ntodo = s->pos = 0;
	s->cur = 0;
	s->max_uid = 0;
	mf_err_clear(&e);
	rc = archive_uid_each(j->o->src_archive, j->o->src_archive_run, w->mb->amb, collect, s, &e);
	if (rc < 0) {
		mailbox_fail(w, arcwho(w), 0, "cannot list the archived messages: %s",
		             e.msg[0] ? e.msg : strerror(-rc));
		return;
	}
	w->uidnext = s->max_uid < UINT32_MAX ? s->max_uid + 1 : UINT32_MAX;
	if (w->rec.uidvalidity == w->uidvalidity && w->rec.uidnext > w->uidnext)
		w->uidnext = w->rec.uidnext;
	arcsrc_schedule(s);
}

/* ---- one message ------------------------------------------------------------ */

/* The flags the run recorded, rewritten: system flags from their bits,
 * keywords that are atoms (the rest dropped, named once). */
static size_t flags_build(struct worker *w, uint32_t uid, const struct archive_msgmeta *m,
                          char *out, size_t cap)
{
	const char *kw = m->keywords;
	size_t n = 0, dropped = 0;

	out[0] = '\0';
	for (size_t i = 0; i < ARCHIVE_F_COUNT; i++)
		if (m->flags & 1u << i)
			n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? " " : "",
			                      archive_flag_names[i]);
	for (size_t i = 0, len = strnlen(kw, AFMT_KW_MAX); i < len;) {
		size_t b, l;

		while (i < len && kw[i] == ' ')
			i++;
		b = i;
		while (i < len && kw[i] != ' ')
			i++;
		l = i - b;
		if (!l)
			continue;
		if (imap_flag_classify(kw + b, l, NULL) != IMAP_FLAG_KEYWORD || n + 1 + l >= cap) {
			dropped++;
			continue;
		}
		if (n)
			out[n++] = ' ';
		memcpy(out + n, kw + b, l);
		n += l;
		out[n] = '\0';
	}
	if (dropped) {
		progress_clear(w->job);
		mf_log(MF_LOG_WARN,
		       "%s mailbox \"%s\" UID %u: %zu archived keyword%s not valid IMAP atoms (or "
		       "too many); left out",
		       arcwho(w), w->mb->display, uid, dropped, dropped == 1 ? " is" : "s are");
	}
	return n;
}

/* INTERNALDATE from its seconds, in UTC. 0, or -1 if out of IMAP's range. */
static int date_build(int64_t t, char out[IMAP_DATE_LEN + 1])
{
	struct tm tm;
	time_t tt = (time_t)t;
	struct imap_date d;

	if ((int64_t)tt != t || !gmtime_r(&tt, &tm) || tm.tm_year + 1900 < 1 ||
	    tm.tm_year + 1900 > 9999)
		return -1;
	d = (struct imap_date){(uint16_t)(tm.tm_year + 1900),
	                       (uint8_t)(tm.tm_mon + 1),
	                       (uint8_t)tm.tm_mday,
	                       (uint8_t)tm.tm_hour,
	                       (uint8_t)tm.tm_min,
	                       (uint8_t)(tm.tm_sec > 59 ? 59 : tm.tm_sec),
	                       '+',
	                       0,
	                       0};
	imap_date_format(&d, out);
	return 0;
}

/* Begins message uid: 1 its bytes follow (s->cur), 0 it does not (failed,
 * skipped, gone), -1 the job must stop. */
static int msg_start(struct arcsrc *s, uint32_t uid)
{
	struct worker *w = s->w;
	struct job *j = w->job;
	struct archive *a = j->o->src_archive;
	struct archive_msgmeta *m = &s->meta;
	char flags[STATE_FLAGS_MAX < BATCH_POOL ? STATE_FLAGS_MAX : BATCH_POOL];
	char date[IMAP_DATE_LEN + 1];
	struct source_msg sm = {0};
	struct mf_error e;
	uint64_t size;
	int rc;

	mf_err_clear(&e);
	rc = archive_uid_get(a, j->o->src_archive_run, w->mb->amb, uid, m, &e);
	if (rc == -ENOENT)
		return 0; /* not in the run (a retry list names only what was) */
	if (rc < 0) {
		job_error(j, arcwho(w), w->mb, uid,
		          "cannot read the archive's record: %s; not "
		          "restored",
		          e.msg);
		copy_msg_fail(w, uid);
		return 0;
	}
	sm.flags_len = flags_build(w, uid, m, flags, sizeof(flags) - 1);
	sm.flags = flags;
	if (date_build(m->internaldate, date) < 0) {
		date_build(0, date);
		sm.refused = "its archived INTERNALDATE is out of range";
	}
	sm.date = date;
	sm.uid = uid;
	sm.idate = m->internaldate;
	if (sink_can(&w->sink, SINK_COUNTS)) {
		/* a counting sink's pass (--dry-run): the index's size, nothing read */
		sm.size = m->size;
		if (copy_msg_begin(w, &sm) < 0) {
			arcsrc_fatal(s);
			return -1;
		}
		copy_msg_end(w);
		return 0;
	}
	/* read and re-hashed whole before a byte goes out: a damaged message
	 * fails here, alone */
	if (!sm.refused && ((rc = archive_reader_open(a, m->hash, &s->rd, &size, &e)) < 0 ||
	                    (rc = archive_reader_check(&s->rd, &e)) < 0)) {
		job_error(j, arcwho(w), w->mb, uid,
		          "archived message damaged or missing (%s); not "
		          "restored",
		          e.msg);
		copy_msg_fail(w, uid);
		return 0;
	}
	sm.size = sm.refused ? m->size : size;
	if (copy_msg_begin(w, &sm) < 0) {
		arcsrc_fatal(s);
		return -1;
	}
	if (w->cur.skip || sm.refused) {
		copy_msg_end(w); /* recorded, too large or refused: nothing to stream */
		return 0;
	}
	s->cur = 1;
	s->cur_uid = uid;
	return 1;
}

/* The reader failed in the middle of a message whose APPEND has begun:
 * only dropping the destination connection withdraws it (RFC 3502 §3);
 * the pair is reopened as after any drop and the pass goes on without it. */
static void msg_broken(struct arcsrc *s, const struct mf_error *e)
{
	struct worker *w = s->w;
	struct mf_error ab;

	job_error(w->job, arcwho(w), w->mb, s->cur_uid,
	          "archived message unreadable (%s); not "
	          "restored",
	          e->msg);
	copy_msg_fail(w, s->cur_uid);
	s->cur = 0;
	w->cur.active = 0;
	w->sink.ops->abort(&w->sink);
	mf_err_set(&ab, -ECONNABORTED, "%s: APPEND withdrawn (archived message UID %u unreadable)",
	           w->sink.ops->who(&w->sink), s->cur_uid);
	sink_failed(w, &ab);
}

/* Streams what the copy path takes, message after message, up to a turn. */
static void pump(struct arcsrc *s)
{
	struct worker *w = s->w;
	uint64_t budget = ARCSRC_TURN;
	struct mf_error e;

	while (!s->paused && w->mb && w->phase == W_FETCH && !w->dead) {
		if (!s->cur) {
			int rc;

			if (s->pos >= s->ntodo || w->mb->failed) {
				s->pos = s->ntodo;
				worker_check_done(w);
				return;
			}
			if (copy_slots_full(w)) {
				w->src_paused = 1; /* sink_batch_done / sink_writable kick us */
				return;
			}
			if (!budget) {
				arcsrc_schedule(s);
				return;
			}
			rc = msg_start(s, s->todo[s->pos++]);
			if (rc < 0)
				return;
			if (!rc)
				continue;
		}
		for (;;) {
			const uint8_t *p;
			size_t n;
			ssize_t k;

			mf_err_clear(&e);
			if (archive_reader_peek(&s->rd, &p, &n, &e) < 0) {
				msg_broken(s, &e);
				return;
			}
			if (!n)
				break;
			if (!budget) {
				arcsrc_schedule(s);
				return;
			}
			k = copy_msg_data(w, p, n);
			if (k <= 0)
				return; /* the sink is full: paused, kicked when it drains */
			if (archive_reader_take(&s->rd, (size_t)k, &e) < 0) {
				msg_broken(s, &e);
				return;
			}
			budget = (uint64_t)k >= budget ? 0 : budget - (uint64_t)k;
		}
		s->cur = 0;
		copy_msg_end(w);
	}
}

static void arcsrc_task(struct loop *l, struct loop_task *t)
{
	struct arcsrc *s = (struct arcsrc *)((char *)t - offsetof(struct arcsrc, task));

	(void)l;
	if (s->open_pending) {
		arcsrc_ready(s);
		return;
	}
	pump(s);
}

/* ---- source ops ---------------------------------------------------------------- */

static const char *arc_src_who(struct source *s)
{
	return arcwho(s->w);
}

static void arc_src_pause(struct source *s)
{
	s->w->arc->paused = 1;
}

/* Never streams from inside the caller (a sink's callback): next turn. */
static void arc_src_kick(struct source *s)
{
	struct arcsrc *a = s->w->arc;

	a->paused = 0;
	if (s->w->mb && s->w->phase == W_FETCH)
		arcsrc_schedule(a);
}

static unsigned arc_src_reads_inflight(struct source *s)
{
	struct arcsrc *a = s->w->arc;

	return (unsigned)a->cur + (a->pos < a->ntodo);
}

/* The refused batches' messages again, one per batch: w->retry holds UIDs. */
static void arc_src_read_retries(struct source *s)
{
	struct worker *w = s->w;
	struct arcsrc *a = w->arc;

	a->ntodo = a->pos = 0;
	for (size_t r = w->retry_pos; r < w->nretry; r++) {
		if (grow((void **)&a->todo, &a->ctodo, a->ntodo + 1, sizeof(*a->todo)) < 0) {
			mailbox_fail(w, NULL, 0, "out of memory");
			return;
		}
		a->todo[a->ntodo++] = w->retry[r];
	}
	w->retry_pos = w->nretry;
	a->paused = 0;
	arcsrc_schedule(a);
}

const struct source_ops source_archive_ops = {
    .kind = "archive",
    .caps = SOURCE_FOLDERS | SOURCE_FLAGS,
    .who = arc_src_who,
    .pause = arc_src_pause,
    .kick = arc_src_kick,
    .reads_inflight = arc_src_reads_inflight,
    .read_retries = arc_src_read_retries,
};
