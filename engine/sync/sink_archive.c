/*
 * sink_archive — the archive sink (sink.h) for `mailferry backup`: a batch
 * is a group of messages streamed into the archive (store/archive.h,
 * archive_msg_begin/_data/_end) and committed as one archive transaction
 * (archive_commit: pack bytes fdatasync'ed before the index commits). Each
 * message is also recorded for the job's backup run (archive_uid_put:
 * mailbox, UID, flags, keywords, INTERNALDATE, hash). The same content
 * already in the archive, in any mailbox or account, is stored once (the
 * archive dedupes by hash).
 *
 * The verdict says stored. It comes from the job's archive writer thread
 * (arc_writer.h), which hashes, compresses, writes and commits while the
 * loop receives the next messages, and is handed to the copy path from
 * the writer's wake-up on the loop, never from inside the copy path's own
 * calls. The archive handle holds one open message at a time while
 * several workers (--connections, one source connection each) receive
 * messages at once: each sink gathers its message (in memory up to
 * ARC_STAGE bytes, past that in an unlinked spill file in $TMPDIR) and
 * hands it to the writer whole at its end, so no two messages ever
 * interleave and memory stays bounded whatever a message's size: the
 * writer's ring is bounded, and while it is full the sink is busy (the
 * source pauses between messages).
 *
 * Every other use of the archive during the job (mailboxes, settle, flag
 * changes) takes the writer's archive lock (alock) for its call.
 *
 * Caps: find (settle looks interrupted intents up in the archive by
 * content: sink_archive_record); no IMAP folders (prepare.c names the
 * archive's mailboxes itself, sink_archive_mbox). Flag changes and
 * expunges (--sync-flags, --delete) are written by sink_archive_apply,
 * called by changes.c instead of its UID STORE / UID EXPUNGE.
 *
 * Not for: the archive's format (store/archive*), the command (backup_cmd).
 */
#include "engine/sync/arc_writer.h"
#include "engine/sync/job_int.h"
#include "store/archive.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

/* A message is gathered in memory up to this, in a spill file past it. */
#define ARC_STAGE ARCW_MSG_MAX

struct arc_sink {
	struct sink *s;
	int ready_pending;	/* open() came: sink_ready from the task */
	int closed;
	int aborted;		/* dropped: the session's verdicts are not given */
	unsigned gen;		/* the session (open() counts): stale verdicts are dropped */
	int waiting;		/* busy() said yes: sink_writable once there is room */
	int in_msg;		/* a message is being received (msg_begin without end) */
	size_t resv;		/* ring bytes held for it (arcw_reserve) */
	struct arcw_msg cur;	/* the message being received */
	struct arcw_acc acc;	/* the writer thread's, for this sink's batch */
	uint8_t *stage;		/* ARC_STAGE bytes: the message's last bytes */
	size_t staged;
	int spill;		/* the spill file (-1: none yet) */
	uint64_t spilled;	/* the message's first bytes, in the spill file */
	int failed;		/* the batch being written cannot be stored */
	char why[600];
	struct mbox *mb;	/* the mailbox the archive's mbid below is for */
	uint32_t mbid, uidv;
	unsigned n;		/* messages of the open batch */
};

static struct arc_sink *as_of(struct sink *s)
{
	return s->priv;
}

/* The archive handle for a call from the loop: the writer's lock while
 * the writer runs. */
static void alock(struct job *j)
{
	if (j->arcw)
		arcw_lock(j->arcw);
}

static void aunlock(struct job *j)
{
	if (j->arcw)
		arcw_unlock(j->arcw);
}

/* "\Seen $Label" → flag bits and keywords (the rest of the string):
 * \Recent and unknown system flags are not kept; keywords past
 * AFMT_KW_MAX bytes are dropped whole. */
void sink_archive_flags(const char *f, size_t n, struct archive_msgmeta *m)
{
	size_t kl = 0, i = 0;

	m->flags = 0;
	m->keywords[0] = '\0';
	while (i < n) {
		size_t s, l;

		while (i < n && f[i] == ' ')
			i++;
		s = i;
		while (i < n && f[i] != ' ')
			i++;
		l = i - s;
		if (!l)
			continue;
		if (f[s] == '\\') {
			if (l == 5 && !strncasecmp(f + s, "\\Seen", 5))
				m->flags |= ARCHIVE_F_SEEN;
			else if (l == 9 && !strncasecmp(f + s, "\\Answered", 9))
				m->flags |= ARCHIVE_F_ANSWERED;
			else if (l == 8 && !strncasecmp(f + s, "\\Flagged", 8))
				m->flags |= ARCHIVE_F_FLAGGED;
			else if (l == 8 && !strncasecmp(f + s, "\\Deleted", 8))
				m->flags |= ARCHIVE_F_DELETED;
			else if (l == 6 && !strncasecmp(f + s, "\\Draft", 6))
				m->flags |= ARCHIVE_F_DRAFT;
			continue; /* \Recent and unknown system flags are not kept */
		}
		if (kl + (kl ? 1 : 0) + l > AFMT_KW_MAX)
			continue; /* too many keywords: the rest are dropped */
		if (kl)
			m->keywords[kl++] = ' ';
		memcpy(m->keywords + kl, f + s, l);
		kl += l;
		m->keywords[kl] = '\0';
	}
}

/* The archive's mailbox for the worker's mailbox in this run. */
static int mbox_for(struct arc_sink *as, struct worker *w, struct mf_error *err)
{
	int rc;

	if (as->mb == w->mb && as->uidv == w->uidvalidity)
		return 0;
	rc = sink_archive_mbox(w->job, w->mb, w->uidvalidity, err);
	if (rc < 0)
		return rc;
	as->mb = w->mb;
	as->uidv = w->uidvalidity;
	as->mbid = w->mb->amb;
	return 0;
}

int sink_archive_mbox(struct job *j, struct mbox *mb, uint32_t uidvalidity, struct mf_error *err)
{
	uint32_t mbid;
	int rc;

	if (mb->amb_set && mb->amb_uidv == uidvalidity)
		return 0;
	alock(j);
	rc = archive_mbox_begin(j->o->archive, j->o->archive_run, mb->name, mb->len, uidvalidity,
	                        &mbid, err);
	aunlock(j);
	if (rc < 0)
		return rc;
	mb->amb = mbid;
	mb->amb_uidv = uidvalidity;
	mb->amb_set = 1;
	return 0;
}

/* Records one message the state says is stored in this run (settle,
 * reconcile): its content must be in the archive. 1 recorded, 0 the
 * content is not there, negative on error. */
int sink_archive_record(struct job *j, struct mbox *mb, uint32_t uid, const struct state_msg *sm,
                        struct mf_error *err)
{
	struct archive_msgmeta m;
	int rc;

	alock(j);
	rc = archive_has(j->o->archive, sm->hash, err);
	if (rc > 0) {
		memset(&m, 0, sizeof(m));
		memcpy(m.hash, sm->hash, 32);
		m.size = sm->size;
		m.internaldate = (int64_t)sm->internaldate;
		sink_archive_flags(sm->flags, strnlen(sm->flags, STATE_FLAGS_MAX), &m);
		rc = archive_uid_put(j->o->archive, j->o->archive_run, mb->amb, uid, &m, err);
		if (!rc)
			rc = 1;
	}
	aunlock(j);
	return rc;
}

/* --sync-flags / --delete into the archive: a flag change is a new
 * version of the UID in this run, an expunge a deleted-as-of-this-run
 * mark (archive_uid_delete); the state follows as after a STORE or
 * EXPUNGE on IMAP. No round trip: done when this returns. */
void sink_archive_apply(struct worker *w, size_t nflag, size_t ngone)
{
	struct job *j = w->job;
	struct archive *a = j->o->archive;
	uint32_t run = j->o->archive_run;
	struct mf_error e;

	int crc;

	if (sink_archive_mbox(j, w->mb, w->uidvalidity, &e) < 0) {
		mailbox_fail(w, "archive", 0, "%s", e.msg);
		return;
	}
	alock(j);
	for (size_t i = 0; i < nflag; i++) {
		const struct chg *c = &w->chg[i];
		struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, c->uid};
		struct archive_msgmeta m, nm;
		struct state_msg sm;
		int rc = archive_uid_get(a, run, w->mb->amb, c->uid, &m, &e);

		if (rc == -ENOENT)
			continue; /* never stored here: nothing to change */
		nm = m;
		sink_archive_flags(w->cpool + c->off, c->len, &nm);
		if (rc < 0 || archive_uid_put(a, run, w->mb->amb, c->uid, &nm, &e) < 0 ||
		    state_msg_get(j->st, &k, &sm, &e) < 0) {
			job_error(j, "archive", w->mb, c->uid, "%s", e.msg);
			w->chg_lost++;
			continue;
		}
		memcpy(sm.flags, w->cpool + c->off, c->len);
		sm.flags[c->len] = '\0';
		if (scope_msg_put(j, &k, &sm, &e) < 0) {
			job_error(j, NULL, w->mb, c->uid, "%s", e.msg);
			w->chg_lost++;
			continue;
		}
		j->sum->flags_synced++;
	}
	for (size_t i = 0; i < ngone; i++) {
		struct state_msg_key k = {j->jobid, w->mb->mbid, w->uidvalidity, w->gone[i]};

		if (archive_uid_delete(a, run, w->mb->amb, w->gone[i], &e) < 0 ||
		    scope_msg_del(j, &k, &e) < 0) {
			job_error(j, "archive", w->mb, w->gone[i], "%s", e.msg);
			continue;
		}
		j->sum->expunged++;
	}
	j->state_dirty = 1;
	/* the archive's records first: the state must never say more */
	crc = archive_commit(a, &e);
	aunlock(j);
	if (crc < 0) {
		mailbox_fail(w, "archive", 0, "%s", e.msg);
		return;
	}
	fetch_start(w);
}

static const char *arc_who(struct sink *s)
{
	(void)s;
	return "archive";
}

static uint64_t arc_size_limit(struct sink *s)
{
	(void)s;
	return 0;
}

static int arc_closed(struct sink *s)
{
	struct arc_sink *as = as_of(s);

	return !as || as->closed;
}

static int arc_batch_more(struct sink *s)
{
	(void)s;
	return 1;
}

static void fail(struct arc_sink *as, const struct mf_error *e)
{
	as->in_msg = 0;
	if (!as->failed)
		snprintf(as->why, sizeof(as->why), "%s", e->msg);
	as->failed = 1;
}

/* A batch's verdict from the writer (on the loop): to the copy path,
 * unless the session it was for is gone. */
static void arc_done(void *ctx, const struct arcw_verdict *v)
{
	struct job *j = ctx;
	struct arc_sink *as = v->owner;
	struct sink_verdict sv = {.ok = v->ok, .why = v->why};

	if (as->gen != v->gen || as->aborted)
		return; /* the worker dropped its batches (reconnect, stop) */
	j->sum->deduped += v->ndup;
	sink_batch_done(v->batch, &sv);
}

/* The writer has room again: the sinks that were busy go on. */
static void arc_room(void *ctx)
{
	struct job *j = ctx;

	for (unsigned i = 0; i < j->nw; i++) {
		struct worker *w = &j->w[i];
		struct arc_sink *as;

		if (w->sink.ops != &sink_archive_ops || !(as = as_of(&w->sink)) || !as->waiting)
			continue;
		as->waiting = 0;
		sink_writable(w);
	}
}

static void arc_batch_begin(struct sink *s, struct batch *b)
{
	struct arc_sink *as = as_of(s);
	struct mf_error e;

	(void)b;
	as->n = 0;
	as->failed = 0;
	as->why[0] = '\0';
	if (mbox_for(as, s->w, &e) < 0)
		fail(as, &e);
}

static void arc_msg_begin(struct sink *s, struct batch *b, const struct sink_msg *m)
{
	struct arc_sink *as = as_of(s);
	struct arcw_msg *am = &as->cur;
	struct job *j = s->w->job;

	(void)b;
	if (as->failed)
		return;
	memset(am, 0, sizeof(*am));
	am->acc = &as->acc;
	am->gen = as->gen;
	am->run = j->o->archive_run;
	am->mbid = as->mbid;
	am->uid = m->uid;
	am->spill = -1;
	am->m.internaldate = s->w->cur.idate;
	sink_archive_flags(m->flags, m->flags_len, &am->m);
	as->staged = 0;
	as->spilled = 0;
	as->in_msg = 1;
	/* the size is the server's word: a longer message may wait for room */
	as->resv = m->size && m->size < ARC_STAGE ? (size_t)m->size : ARC_STAGE;
	arcw_reserve(j->arcw, as->resv);
}

static int spill_write(struct arc_sink *as, const uint8_t *p, size_t n, struct mf_error *e)
{
	if (as->spill < 0) {
		const char *dir = getenv("TMPDIR");

		if (!dir || !*dir)
			dir = "/tmp";
		as->spill = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (as->spill < 0) {
			char path[4096];
			int n2 = snprintf(path, sizeof(path), "%s/mailferry-spill.XXXXXX", dir);

			if (n2 > 0 && (size_t)n2 < sizeof(path) && (as->spill = mkostemp(path, O_CLOEXEC)) >= 0)
				unlink(path);
		}
		if (as->spill < 0) {
			mf_err_set(e, -errno, "spill file in %s for a message over %zu bytes: %s", dir,
			           ARC_STAGE, strerror(errno));
			return -EIO;
		}
	}
	while (n) {
		ssize_t w = pwrite(as->spill, p, n, (off_t)as->spilled);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			mf_err_set(e, w < 0 ? -errno : -EIO, "writing the spill file: %s",
			           w < 0 ? strerror(errno) : "short write");
			return -EIO;
		}
		p += w;
		n -= (size_t)w;
		as->spilled += (uint64_t)w;
	}
	return 0;
}


/* The sink takes a new message only while the writer's ring has room for
 * one more (arc_room wakes it). */
static int arc_busy(struct sink *s)
{
	struct arc_sink *as = as_of(s);
	struct arcw *aw = s->w->job->arcw;

	if (!as || as->closed || !aw || as->in_msg || arcw_room(aw))
		return 0;
	as->waiting = 1;
	return 1;
}

static size_t arc_space(struct sink *s)
{
	(void)s;
	return SIZE_MAX / 2; /* staged or spilled at once */
}

static void arc_want_space(struct sink *s)
{
	(void)s; /* never: space() is never 0 */
}

static void arc_data(struct sink *s, const uint8_t *p, size_t n)
{
	struct arc_sink *as = as_of(s);
	struct mf_error e;

	if (as->failed || !as->in_msg)
		return;
	if (as->staged + n > ARC_STAGE) {
		/* past the stage: what it holds goes to the spill file, and
		 * so does this chunk unless it fits the emptied stage */
		if (spill_write(as, as->stage, as->staged, &e) < 0) {
			fail(as, &e);
			return;
		}
		as->staged = 0;
		if (n > ARC_STAGE) {
			if (spill_write(as, p, n, &e) < 0)
				fail(as, &e);
			return;
		}
	}
	memcpy(as->stage + as->staged, p, n);
	as->staged += n;
}

/* The gathered message to the writer: its staged bytes through the ring,
 * or, past the stage, the whole spill file (handed over: the next message
 * opens another). */
static void arc_msg_end(struct sink *s, struct batch *b)
{
	struct arc_sink *as = as_of(s);
	struct arcw *aw = s->w->job->arcw;
	struct mf_error e;
	size_t resv = as->resv;

	(void)b;
	as->resv = 0;
	if (as->failed || !as->in_msg) {
		arcw_unreserve(aw, resv);
		return;
	}
	as->in_msg = 0;
	if (as->spilled) {
		if (spill_write(as, as->stage, as->staged, &e) < 0) {
			arcw_unreserve(aw, resv);
			fail(as, &e);
			return;
		}
		as->staged = 0;
		as->cur.spill = as->spill;
		as->cur.spilled = as->spilled;
		as->spill = -1;
		as->spilled = 0;
	}
	/* the copy path hashed exactly these bytes (copy_msg_end) */
	memcpy(as->cur.m.hash, s->w->cur.hash, sizeof(as->cur.m.hash));
	arcw_msg(aw, &as->cur, as->stage, as->staged, resv);
	as->staged = 0;
	as->n++;
}

static void arc_commit(struct sink *s, struct batch *b)
{
	struct arc_sink *as = as_of(s);

	arcw_commit(s->w->job->arcw, &as->acc, as, as->gen, b, as->failed, as->why);
}

static void arc_discard(struct sink *s, struct batch *b)
{
	(void)s, (void)b; /* never answered early */
}

static void arc_abort(struct sink *s)
{
	struct arc_sink *as = as_of(s);

	if (!as)
		return;
	if (as->in_msg && s->w->job->arcw)
		arcw_unreserve(s->w->job->arcw, as->resv);
	as->resv = 0;
	as->in_msg = 0;
	as->closed = 1;
	as->aborted = 1;
}

static void arc_task(struct loop *l, struct loop_task *t)
{
	struct sink *s = (struct sink *)((char *)t - offsetof(struct sink, task));
	struct arc_sink *as = as_of(s);

	(void)l;
	if (as && as->ready_pending) {
		as->ready_pending = 0;
		sink_ready(s->w);
	}
}

static int arc_open(struct sink *s, struct mf_error *err)
{
	struct arc_sink *as = as_of(s);
	struct job *j = s->w->job;

	if (!j->o->archive) {
		mf_err_set(err, -EINVAL, "internal: no archive");
		return -EINVAL;
	}
	if (!j->arcw) {
		/* the job's writer thread, shared by its sinks */
		int rc = arcw_open(&j->arcw, j->loop, j->o->archive, j->nw * BATCH_SLOTS, arc_done,
		                   arc_room, j, err);

		if (rc < 0)
			return rc;
	}
	if (!as) {
		if (!(as = calloc(1, sizeof(*as))) || !(as->stage = malloc(ARC_STAGE))) {
			free(as);
			mf_err_set(err, -ENOMEM, "out of memory");
			return -ENOMEM;
		}
		as->s = s;
		as->spill = -1;
		s->priv = as;
		s->task.fn = arc_task;
		j->arcw_refs++;
	}
	as->gen++;
	as->closed = 0;
	as->aborted = 0;
	as->waiting = 0;
	as->mb = NULL;
	as->ready_pending = 1;
	loop_defer(j->loop, &s->task);
	return 0;
}

static void arc_close(struct sink *s, int graceful)
{
	struct arc_sink *as = as_of(s);

	if (!graceful) {
		arc_abort(s);
		return;
	}
	if (as)
		as->closed = 1; /* verdicts still due are given */
}

static void arc_release(struct sink *s)
{
	(void)s;
}

static void arc_destroy(struct sink *s)
{
	struct arc_sink *as = as_of(s);
	struct job *j = s->w->job;

	if (!as)
		return;
	arc_abort(s);
	if (j->arcw) {
		/* nothing of this sink may be left with the writer */
		arcw_drain(j->arcw);
		if (!--j->arcw_refs) {
			arcw_close(j->arcw);
			j->arcw = NULL;
		}
	}
	if (as->spill >= 0)
		close(as->spill);
	free(as->stage);
	free(as);
	s->priv = NULL;
}

static void arc_wire(struct sink *s, uint64_t *in, uint64_t *out)
{
	(void)s;
	*in = *out = 0;
}

const struct sink_ops sink_archive_ops = {
	.kind = "archive",
	.caps = SINK_FIND | SINK_BATCH | SINK_IDEMPOTENT,
	.open = arc_open,
	.close = arc_close,
	.release = arc_release,
	.wire = arc_wire,
	.who = arc_who,
	.size_limit = arc_size_limit,
	.closed = arc_closed,
	.batch_more = arc_batch_more,
	.batch_begin = arc_batch_begin,
	.msg_begin = arc_msg_begin,
	.space = arc_space,
	.want_space = arc_want_space,
	.data = arc_data,
	.msg_end = arc_msg_end,
	.commit = arc_commit,
	.discard = arc_discard,
	.abort = arc_abort,
	.destroy = arc_destroy,
	.busy = arc_busy,
};
