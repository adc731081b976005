/*
 * settle_imap — SMTP/LMTP deliveries an interrupted run left unconfirmed,
 * looked for in the mailbox they reach (--settle-imap) before --uncertain
 * decides (issue 18).
 *
 * SMTP cannot be asked whether a message arrived; the mailbox it was
 * delivered into can. A short-lived session of its own, on the job's
 * loop: log in, EXAMINE the folder, UID SEARCH SINCE the day before the
 * intents were committed (the fetch stays bounded however large the
 * mailbox), UID FETCH those (UID BODY.PEEK[]), each hashed from every
 * start its trace fields allow (store/tracehash.h) and matched against
 * the intents' folded digests: one delivered message per intent, LOGOUT.
 *
 * Identical bytes may have been delivered before or meanwhile (the same
 * message in two source folders): a delivered message only counts for an
 * intent when more messages with its digest were found than the job's
 * other records hold, confirmed ones and other mailboxes' intents (a scan
 * of the job's records, after a crash or a lost connection only). The
 * error goes one way: a delivery that did arrive may be sent again, one
 * that did not is never taken for delivered.
 *
 * Anything wrong with the check (connect, TLS, login, a missing folder,
 * no --max-per-host slot within --timeout) is one warning naming the
 * account and mailbox; the policy then decides, as without the option.
 * The session takes a --max-per-host slot at the check host like any
 * connection, waits for it at most --timeout (the pair keeps its own
 * slots meanwhile, so waiting longer could wait forever) and gives it
 * back when the server answered LOGOUT.
 *
 * Not for: IMAP destinations (settle.c finds APPENDs on them) or the
 * archive (settle_archive).
 */
#include "engine/sync/job_int.h"

#include "store/tracehash.h"

/* UIDs of one search kept at most (a day's mail of a mailbox). */
#define CHK_HITS_MAX 1000000u
/* A UID set longer than this goes as its lowest to highest UID. */
#define CHK_SET_MAX 4000

struct settle_chk {
	struct worker *w;
	struct imap_client c;
	struct imap_cmd cmd[3]; /* EXAMINE, UID SEARCH, UID FETCH */
	struct hostlimit_req lim;
	struct loop_timer slot_timer;
	struct loop_task done_task;
	struct loop_task lost_task; /* closed without an error: fail then */
	char key[HOSTLIMIT_KEY_MAX];
	int opened;  /* imap_client_open succeeded; closed hook not yet run */
	int running; /* its result is still to come */
	int due;     /* done_task is to call settle_policy */
	uint32_t *hits;
	size_t nhits, chits;
	int hashing;
	struct tracehash th;
	size_t fetched;
};

static void chk_open(struct settle_chk *k);

static struct job *chk_job(const struct settle_chk *k)
{
	return k->w->job;
}

int settle_imap_wanted(const struct worker *w)
{
	return w->job->o->settle.host && !sink_can(&w->sink, SINK_FIND) && !w->job->o->archive;
}

/* The result is in (w->stl's chk flags): settle_policy from the loop,
 * outside the session's callbacks. */
static void chk_end(struct settle_chk *k)
{
	k->running = 0;
	k->due = 1;
	loop_timer_cancel(chk_job(k)->loop, &k->slot_timer);
	loop_defer(chk_job(k)->loop, &k->done_task);
}

static void chk_fail(struct settle_chk *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void chk_fail(struct settle_chk *k, const char *fmt, ...)
{
	struct worker *w = k->w;
	struct job *j = chk_job(k);
	char why[400];
	va_list ap;

	if (!k->running)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	for (size_t i = 0; i < w->nstl; i++)
		w->stl[i].chk = 0;
	w->stl_checked = 0;
	progress_clear(j);
	mf_log(MF_LOG_WARN,
	       "%s mailbox \"%s\": cannot look for the %zu unconfirmed deliveries in %s: %s; "
	       "--uncertain %s applies",
	       w->sink.ops->who(&w->sink), w->mb->display, w->nstl, j->o->settle_shown, why,
	       j->o->uncertain_skip ? "skip" : "resend");
	chk_end(k);
	if (k->opened && !k->c.closed)
		imap_client_abort(&k->c);
	hostlimit_cancel(j->o->hostlimit, &k->lim);
}

static void chk_done_task(struct loop *l, struct loop_task *t)
{
	struct settle_chk *k =
	    (struct settle_chk *)((char *)t - offsetof(struct settle_chk, done_task));
	struct worker *w = k->w;

	(void)l;
	if (!k->due)
		return; /* stopped meanwhile */
	k->due = 0;
	if (w->dead || !w->mb || w->phase != W_SETTLE)
		return;
	settle_policy(w);
}

/* ---- the job's records: deliveries with an intent's digest -------------------- */

struct chk_scan {
	struct worker *w;
	uint32_t *mb; /* mailbox id, UIDVALIDITY pairs */
	size_t n, cap;
	int own; /* the records being read are the settling mailbox's */
};

static int chk_scan_mbox(void *ctx, uint32_t mbid, const struct state_mbox *rec)
{
	struct chk_scan *s = ctx;

	if (grow((void **)&s->mb, &s->cap, s->n + 2, sizeof(*s->mb)) < 0)
		return -ENOMEM;
	s->mb[s->n++] = mbid;
	s->mb[s->n++] = rec->uidvalidity;
	return 0;
}

/* A record that may stand for a delivered message: confirmed, or an
 * intent other than the ones being settled (another mailbox's, whose
 * worker is delivering it now or crashed too). */
static int chk_scan_msg(void *ctx, uint32_t uid, const struct state_msg *m)
{
	struct chk_scan *s = ctx;
	struct worker *w = s->w;

	if (m->status != STATE_MSG_DONE && m->status != STATE_MSG_INTENT)
		return 0;
	for (size_t i = 0; s->own && m->status == STATE_MSG_INTENT && i < w->nstl; i++)
		if (w->stl[i].uid == uid)
			return 0;
	for (size_t i = 0; i < w->nstl; i++)
		if (w->stl[i].chk_hits && !memcmp(w->stl[i].nhash, m->nhash, 32)) {
			w->stl[i].chk_done++;
			break;
		}
	return 0;
}

/* Each digest's matches, less the other records with it, go to its
 * intents in turn. 0, or -1 (the state could not be read: none found). */
static int chk_assign(struct settle_chk *k)
{
	struct worker *w = k->w;
	struct job *j = chk_job(k);
	struct chk_scan s = {w, NULL, 0, 0, 0};
	struct mf_error e;
	int any = 0, rc;

	for (size_t i = 0; i < w->nstl; i++)
		any |= w->stl[i].chk_hits != 0;
	if (!any)
		return 0;
	rc = state_mbox_each(j->st, j->jobid, chk_scan_mbox, &s, &e);
	for (size_t i = 0; rc >= 0 && i < s.n; i += 2) {
		s.own = s.mb[i] == w->mb->mbid && s.mb[i + 1] == w->uidvalidity;
		rc = state_msg_each(j->st, j->jobid, s.mb[i], s.mb[i + 1], 1, chk_scan_msg, &s, &e);
	}
	free(s.mb);
	if (rc < 0)
		return -1;
	for (size_t i = 0; i < w->nstl; i++) {
		struct settle *r = &w->stl[i];
		uint32_t left = r->chk_hits > r->chk_done ? r->chk_hits - r->chk_done : 0;

		for (size_t x = i; x < w->nstl && left; x++)
			if (!w->stl[x].chk && !memcmp(w->stl[x].nhash, r->nhash, 32)) {
				w->stl[x].chk = 1;
				w->stl[x].found = 1;
				left--;
			}
	}
	return 0;
}

/* ---- the session ---------------------------------------------------------------- */

static void chk_fetch_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct settle_chk *k = c->ud;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		chk_fail(k, "UID FETCH refused: %.*s", (int)(r->text_len > 200 ? 200 : r->text_len),
		         r->text);
		return;
	}
	if (chk_assign(k) < 0) {
		chk_fail(k, "the state could not be read");
		return;
	}
	k->w->stl_checked = 1;
	mf_log(MF_LOG_DEBUG,
	       "mailbox \"%s\": %zu messages delivered since the day before the "
	       "interrupted run looked at in %s",
	       k->w->mb->display, k->fetched, chk_job(k)->o->settle_shown);
	chk_end(k);
	imap_client_logout(&k->c);
}

static int chk_lit_begin(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r,
                         const struct imap_node *key, uint64_t size)
{
	struct settle_chk *k = c->ud;

	(void)cmd;
	if (!r->first || !r->first->next || !imap_node_is(r->first->next, "FETCH") || !key ||
	    !imap_node_is(key, "BODY[]"))
		return size <= JOB_OTHER_LITERAL_MAX ? IMAP_LIT_INLINE : -EMSGSIZE;
	if (size > JOB_MAX_SIZE(chk_job(k)))
		return -EMSGSIZE;
	tracehash_begin(&k->th);
	k->hashing = 1;
	return IMAP_LIT_STREAM;
}

static ssize_t chk_lit_data(struct imap_client *c, struct imap_cmd *cmd, const uint8_t *p, size_t n)
{
	struct settle_chk *k = c->ud;

	(void)cmd;
	tracehash_update(&k->th, p, n);
	return (ssize_t)n;
}

/* One delivered message: the first intent digest any of its starts gives
 * counts it (once). */
static int chk_lit_end(struct imap_client *c, struct imap_cmd *cmd)
{
	struct settle_chk *k = c->ud;
	struct worker *w = k->w;
	uint8_t d[2 * TRACEHASH_MAX][32];
	size_t nd;

	(void)cmd;
	if (!k->hashing)
		return 0;
	k->hashing = 0;
	k->fetched++;
	nd = tracehash_end(&k->th, d);
	for (size_t x = 0; x < nd; x++)
		for (size_t i = 0; i < w->nstl; i++)
			if (!memcmp(w->stl[i].nhash, d[x], 32)) {
				w->stl[i].chk_hits++; /* the first intent with this digest */
				return 0;
			}
	return 0;
}

static const struct imap_consumer chk_fetch_consumer = {
    .lit_begin = chk_lit_begin,
    .lit_data = chk_lit_data,
    .lit_end = chk_lit_end,
};

/* The search's UIDs as a set of ranges ("3:7,9"), or lowest:highest when
 * that would be long. */
static void chk_put_set(struct settle_chk *k)
{
	qsort(k->hits, k->nhits, sizeof(*k->hits), imap_uid_cmp);
	if (imap_uid_set_runs(k->hits, k->nhits) * 24 > CHK_SET_MAX)
		imap_putf(&k->c, "%u:%u", k->hits[0], k->hits[k->nhits - 1]);
	else
		imap_put_uid_set(&k->c, k->hits, k->nhits);
}

static int chk_search_untagged(struct imap_client *c, struct imap_cmd *cmd,
                               const struct imap_resp *r)
{
	struct settle_chk *k = c->ud;
	uint32_t n;

	(void)cmd;
	if (!r->first || !imap_node_is(r->first, "SEARCH"))
		return 0;
	for (const struct imap_node *it = r->first->next; it; it = it->next)
		if (imap_node_u32(it, &n) == 0 && n && k->nhits < CHK_HITS_MAX &&
		    grow((void **)&k->hits, &k->chits, k->nhits + 1, sizeof(*k->hits)) == 0)
			k->hits[k->nhits++] = n;
	return 0;
}

static const struct imap_consumer chk_search_consumer = {.untagged = chk_search_untagged};

static void chk_search_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct settle_chk *k = c->ud;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		chk_fail(k, "UID SEARCH refused: %.*s",
		         (int)(r->text_len > 200 ? 200 : r->text_len), r->text);
		return;
	}
	if (!k->nhits) {
		k->w->stl_checked = 1; /* nothing delivered since: none of them arrived */
		chk_end(k);
		imap_client_logout(&k->c);
		return;
	}
	imap_cmd_begin_consumer(&k->c, &k->cmd[2], chk_fetch_done, NULL, &chk_fetch_consumer);
	imap_put(&k->c, "UID FETCH ");
	chk_put_set(k);
	imap_put(&k->c, " (UID BODY.PEEK[])");
	imap_cmd_end(&k->c);
}

static void chk_examine_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	static const char mon[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct settle_chk *k = c->ud;
	struct worker *w = k->w;
	time_t t;
	struct tm tm;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		chk_fail(k, "EXAMINE refused: %.*s", (int)(r->text_len > 200 ? 200 : r->text_len),
		         r->text);
		return;
	}
	/* the day before the intents (RFC 3501 §6.4.4: SINCE is by date, in
	 * the server's zone): what they became was delivered after them */
	imap_cmd_begin_consumer(&k->c, &k->cmd[1], chk_search_done, NULL, &chk_search_consumer);
	if (w->rec.intent_at_ms) {
		t = (time_t)(w->rec.intent_at_ms / 1000) - 86400;
		gmtime_r(&t, &tm);
		imap_putf(&k->c, "UID SEARCH SINCE %d-%s-%04d", tm.tm_mday, mon[tm.tm_mon],
		          tm.tm_year + 1900);
	} else {
		imap_put(&k->c, "UID SEARCH ALL"); /* a record without the time: all of it */
	}
	imap_cmd_end(&k->c);
}

static void chk_ready(struct imap_client *c)
{
	struct settle_chk *k = c->ud;
	const char *f = chk_job(k)->o->settle_folder;

	imap_cmd_begin(&k->c, &k->cmd[0], chk_examine_done, NULL);
	imap_put(&k->c, "EXAMINE ");
	imap_put_astring(&k->c, f, strlen(f));
	imap_cmd_end(&k->c);
}

static void chk_error(struct imap_client *c, const struct mf_error *err)
{
	chk_fail(c->ud, "%s", err->msg);
}

/* The session is gone (LOGOUT answered, failed, aborted): its slot back.
 * A failure's error callback follows this one with the reason; should
 * none follow, the check fails from the loop. */
static void chk_closed(struct imap_client *c)
{
	struct settle_chk *k = c->ud;
	struct job *j = chk_job(k);

	k->opened = 0;
	hostlimit_release(j->o->hostlimit, &k->lim, 0);
	if (k->running)
		loop_defer(j->loop, &k->lost_task);
	job_session_closed(j);
}

static void chk_lost_task(struct loop *l, struct loop_task *t)
{
	struct settle_chk *k =
	    (struct settle_chk *)((char *)t - offsetof(struct settle_chk, lost_task));

	(void)l;
	chk_fail(k, "the connection closed");
}

static const struct imap_client_cb chk_cb = {
    .ready = chk_ready,
    .error = chk_error,
    .closed = chk_closed,
};

static void chk_granted(struct hostlimit_req *r)
{
	struct settle_chk *k = (struct settle_chk *)((char *)r - offsetof(struct settle_chk, lim));

	if (!k->running) {
		hostlimit_cancel(chk_job(k)->o->hostlimit, &k->lim);
		return;
	}
	loop_timer_cancel(chk_job(k)->loop, &k->slot_timer);
	chk_open(k);
}

static void chk_slot_timeout(struct loop *l, struct loop_timer *t)
{
	struct settle_chk *k =
	    (struct settle_chk *)((char *)t - offsetof(struct settle_chk, slot_timer));

	(void)l;
	if (!k->running || !hostlimit_waiting(&k->lim))
		return;
	hostlimit_cancel(chk_job(k)->o->hostlimit, &k->lim);
	chk_fail(k, "no --max-per-host slot for %s within --timeout", k->key);
}

static void chk_open(struct settle_chk *k)
{
	struct job *j = chk_job(k);
	struct mf_error e;

	mf_err_clear(&e);
	if (imap_client_open(&k->c, j->loop, &j->o->settle, &chk_cb, k, &e) < 0) {
		imap_client_close(&k->c);
		hostlimit_release(j->o->hostlimit, &k->lim, 0);
		chk_fail(k, "%s", e.msg);
		return;
	}
	k->opened = 1;
	j->sum->connections++;
}

void settle_imap_start(struct worker *w)
{
	struct job *j = w->job;
	struct settle_chk *k = w->chk;
	struct mf_error e;
	int rc;

	w->phase = W_SETTLE;
	if (!k && !(k = w->chk = calloc(1, sizeof(*k)))) {
		settle_policy(w); /* out of memory: as without the option */
		return;
	}
	/* an earlier check's session: its LOGOUT may still be in flight, an
	 * aborted one keeps its parser until closed */
	imap_client_close(&k->c);
	k->w = w;
	k->done_task.fn = chk_done_task;
	k->lost_task.fn = chk_lost_task;
	k->due = 0;
	k->running = 1;
	k->nhits = 0;
	k->fetched = 0;
	k->hashing = 0;
	w->stl_checked = 0;
	snprintf(k->key, sizeof(k->key), "%s:%u", j->o->settle.host, (unsigned)j->o->settle.port);
	k->lim.granted = chk_granted;
	k->lim.loop = j->loop;
	mf_err_clear(&e);
	rc = hostlimit_acquire(j->o->hostlimit, &k->lim, k->key, NULL, &e);
	if (rc < 0) {
		chk_fail(k, "%s", e.msg);
	} else if (rc == 0) {
		loop_timer_start(j->loop, &k->slot_timer,
		                 j->o->settle.timeout_ms ? j->o->settle.timeout_ms : 60000,
		                 chk_slot_timeout);
	} else {
		chk_open(k);
	}
}

void settle_imap_stop(struct worker *w)
{
	struct settle_chk *k = w->chk;

	if (!k)
		return;
	k->running = 0;
	k->due = 0;
	loop_timer_cancel(w->job->loop, &k->slot_timer);
	if (k->opened && !k->c.closed)
		imap_client_abort(&k->c);
	if (hostlimit_waiting(&k->lim))
		hostlimit_cancel(w->job->o->hostlimit, &k->lim);
}

int settle_imap_busy(const struct worker *w)
{
	const struct settle_chk *k = w->chk;

	return k && (k->slot_timer.armed || k->done_task.queued || k->lost_task.queued ||
	             hostlimit_posted(&k->lim));
}

int settle_imap_open(const struct worker *w)
{
	return w->chk && w->chk->opened && !w->chk->c.closed;
}

void settle_imap_release(struct worker *w, uint64_t *in, uint64_t *out)
{
	struct settle_chk *k = w->chk;

	*in = *out = 0;
	if (!k)
		return;
	k->running = 0;
	k->due = 0;
	imap_client_wire(&k->c, in, out);
	imap_client_close(&k->c);
	hostlimit_cancel(w->job->o->hostlimit, &k->lim);
}

void settle_imap_free(struct worker *w)
{
	if (!w->chk)
		return;
	tracehash_free(&w->chk->th);
	free(w->chk->hits);
	free(w->chk);
	w->chk = NULL;
}
