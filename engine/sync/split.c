/*
 * split — one big mailbox copied over several connections at once: its
 * UID range is divided into parts when the plan is made, each part is a
 * work item of its own (EXAMINE, UID FETCH lo:hi, APPENDs into the same
 * destination folder), and the mailbox's record is written once, by the
 * last part to finish, from what all the parts saw.
 *
 * Why at plan time, not by stealing later: a worker streams its range
 * into up to BATCH_SLOTS APPEND batches of up to JOB_BATCH_MAX messages
 * before anything asks it to share, so by the time another worker is free
 * the owner has already read (and committed to APPENDs) most of a
 * mailbox of a few thousand messages; a stolen upper half would be empty.
 * STATUS (LIST-STATUS) tells each mailbox's MESSAGES and UIDNEXT before
 * a byte is copied, so the division is made up front: a mailbox bigger
 * than an even share of the run (new messages / connections) gets as many
 * parts as shares, each a slice of its new UIDs of about equal UID span.
 * UIDs are dense on most servers (holes only where mail was expunged);
 * the size of each message is not known at that time, so a part holding
 * a 30 MB message takes longer: parts are handed out largest first and a
 * free connection takes the next one, which evens most of that out.
 *
 * Order on the destination: each part APPENDs its UIDs ascending, but the
 * parts run side by side, so destination UIDs are not in source UID order
 * across the folder (INTERNALDATE is kept: clients sort by date). The
 * issue allows it; a folder copied on one connection stays in order.
 *
 * Exactly once, crash safety:
 *  - Only a mailbox without unsettled intents is split (a re-run after a
 *    crash settles it first, on one connection, as before).
 *  - A part never settles: intents written while parts run are their own
 *    batches in flight. It marks the record's intents STATE_INTENTS_PARTS,
 *    so that a run after a crash settles from the destination UID the
 *    pass before the split had reached (settle.c): several streams wrote
 *    into the folder interleaved, and the usual "after the last confirmed
 *    one" floor of one stream would skip another's unconfirmed APPENDs.
 *  - A part whose connection drops is given up, not resumed (its batches
 *    in flight cannot be settled while other parts still append into the
 *    same folder); the last part to finish then reads the whole mailbox
 *    again from its record: it settles every intent (no part runs any
 *    more) and copies what is missing, skipping what is recorded.
 *  - The record (last UID, UIDNEXT, HIGHESTMODSEQ) advances only when all
 *    parts are done, so an incremental re-run still costs O(changes).
 *
 * A POP3 maildrop (one mailbox, INBOX) is split the same way, by the ids
 * the state gives its unique-ids instead of UIDs: pop3src_split_est
 * assigns them from the first session's listing and counts the messages
 * not recorded as copied; each part is a POP3 session of its own that
 * RETRs the ids of its range (source_pop3.c). A server that keeps the
 * other sessions out leaves their parts to the sessions it let in.
 *
 * Not for: settling (settle.c), the copy itself (copy.c, source_imap.c).
 */
#include "engine/sync/job_int.h"

/* Fewer new messages than this per part are not worth a part: each costs
 * an EXAMINE and the start of a fetch pipeline on its connection. */
#define SPLIT_MIN_MSGS 400

/* A POP3 part costs a session: login, and UIDL and LIST of the whole
 * maildrop (a few ms on loopback); a message into LMTP costs ~10-40 ms
 * (bench/pop3.sh), so smaller parts pay. */
#define SPLIT_MIN_MSGS_POP3 100

/* A job whose passes can run as parts: an IMAP, POP3 or archive source (a
 * POP3 part is a session of its own; an archive run is read by a reader
 * per connection, its counts standing in for STATUS, source_archive.c),
 * an IMAP or SMTP/LMTP sink (not the archive: its run keeps per-mailbox
 * state), and a plain new-messages pass (a dry run counts, --dedupe and a
 * filter read the folder as a whole). */
static int split_job_ok(const struct job *j)
{
	const struct job_opts *o = j->o;

	return j->nw > 1 && !o->dry_run && !o->dedupe && !o->filter_id &&
	       !o->archive;
}

/* New messages the plan expects in mb, and the UID range they are in; 0
 * if mb is not to be split (see the file comment for why). */
static uint64_t split_est(struct job *j, struct mbox *mb, uint32_t *lo, uint32_t *hi)
{
	struct state_mbox rec;
	struct mf_error e;
	uint32_t first = 1;
	uint64_t est;

	if (mb->work <= 0 || (!mb->have_status && !mb->amb_set) || !mb->st_uidvalidity ||
	    mb->st_uidnext < 2 || mb->probe || mb->renamed_from || selective_rescan(j, mb->mbid))
		return 0;
	if (state_mbox_get(j->st, j->jobid, mb->mbid, &rec, &e) == 0 && rec.uidvalidity) {
		if (rec.uidvalidity != mb->st_uidvalidity || rec.intents)
			return 0;
		if ((j->o->sync_flags || j->o->delete_) && rec.last_uid)
			return 0; /* the pass reads changes as a whole */
		first = rec.last_uid + 1;
	}
	if (first >= mb->st_uidnext)
		return 0;
	est = mb->st_uidnext - first;
	if (est > mb->st_messages)
		est = mb->st_messages;
	*lo = first;
	*hi = mb->st_uidnext - 1;
	return est;
}

void split_plan(struct job *j)
{
	uint64_t total = 0, share, pop3_est = 0;
	uint64_t min = j->o->src_pop3 ? SPLIT_MIN_MSGS_POP3 : SPLIT_MIN_MSGS;
	uint32_t pop3_lo = 0, pop3_hi = 0;

	if (!split_job_ok(j))
		return;
	if (j->o->src_pop3 && j->nmb == 1) /* INBOX, by its ids (source_pop3.c) */
		pop3_est = pop3src_split_est(j, &j->mb[0], &pop3_lo, &pop3_hi);
	for (size_t i = 0; i < j->nmb; i++)
		if (j->mb[i].work > 0)
			total += j->o->src_pop3         ? pop3_est
			         : j->mb[i].have_status ? j->mb[i].st_messages
			                                : 1;
	share = (total + j->nw - 1) / j->nw;
	if (share < min)
		share = min;
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];
		uint32_t lo = pop3_lo, hi = pop3_hi;
		uint64_t est = j->o->src_pop3 ? pop3_est : split_est(j, mb, &lo, &hi), n;

		if (est <= share)
			continue;
		n = (est + share - 1) / share;
		if (n > j->nw)
			n = j->nw;
		if (n > (uint64_t)hi - lo + 1)
			n = (uint64_t)hi - lo + 1;
		if (n < 2)
			continue;
		mb->nparts = mb->parts_left = (unsigned)n;
		mb->parts_given = 0;
		mb->sp_lo = lo;
		mb->sp_hi = hi;
		mb->sp_est = est;
		mb->sp_redo = mb->sp_seen = 0;
		mf_log(MF_LOG_DEBUG,
		       "mailbox \"%s\": about %llu new messages (%s %u:%u) split "
		       "into %u parts over %u connections",
		       mb->display, (unsigned long long)est, j->o->src_pop3 ? "ids" : "UIDs", lo,
		       hi, mb->nparts, j->nw);
	}
}

/* A destination that locks a folder per APPEND (Courier-IMAP: the lock's
 * wait sleeps about a second) takes parallel APPENDs into one folder
 * slower than one connection's: one connection per folder there, other
 * folders still in parallel. Known once worker 0's destination has
 * greeted, before any part is handed out (workers_spawn_rest). */
void split_undo_if_locking(struct job *j)
{
	if (!j->nw || !j->w[0].dst.append_locks)
		return;
	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];

		if (mb->nparts < 2 || mb->parts_given)
			continue;
		mf_log(MF_LOG_DEBUG, "mailbox \"%s\": not split, the destination locks a folder "
		                     "per APPEND (%s)",
		       mb->display, imap_client_who(&j->w[0].dst));
		mb->nparts = mb->parts_left = 0;
	}
}

/*
 * How many connection pairs the plan's work is worth: at most one per work
 * item (a split mailbox counts its parts), and one more pair only per
 * PAIR_MIN_MSGS new messages. A pair costs two logins, and on a server
 * that forks a process per session (Dovecot) a login costs more server CPU
 * than a few dozen small messages: bench/bulk.sh, 100 accounts of 100
 * messages in 3 folders, opened 3 pairs an account (600 logins, 4.6x
 * mbsync -a's speed) where one moved them faster (200 logins, 5.4x).
 * A mailbox with work but no new messages counted (a rescan, no STATUS)
 * is worth a pair: its cost is round trips, which pairs overlap. A light
 * one (known before: flags or expunges only, a round trip or two) is
 * worth 1/LIGHT_PER_PAIR of one: 1 % of the quick corpus's flags changed
 * (7 mailboxes), medians on a loaded machine, loopback / behind 50 ms:
 * one pair per 8 light mailboxes 0.168 s / 1.10 s, per 4: 0.163 s /
 * 0.74 s, per 2: 0.180 s / 0.51 s; 4 pairs 0.25 s / 0.75 s; mbsync
 * 0.28 s / 1.78 s.
 */
#define PAIR_MIN_MSGS 200
#define LIGHT_PER_PAIR 4

size_t split_items(struct job *j)
{
	size_t items = 0;
	uint64_t units = 0;

	for (size_t i = 0; i < j->nmb; i++) {
		struct mbox *mb = &j->mb[i];
		uint32_t lo, hi;
		uint64_t est;

		if (mb->work <= 0)
			continue;
		items += mb->nparts > 1 ? mb->nparts : 1;
		if (mb->nparts > 1)
			est = mb->sp_est;
		else if (j->o->src_pop3 || j->o->archive || !mb->have_status)
			est = PAIR_MIN_MSGS;
		else if (!(est = split_est(j, mb, &lo, &hi)))
			est = mb->light ? PAIR_MIN_MSGS / LIGHT_PER_PAIR : PAIR_MIN_MSGS;
		units += est;
	}
	units = (units + PAIR_MIN_MSGS - 1) / PAIR_MIN_MSGS;
	return items < units ? items : (size_t)units;
}

void split_take(struct worker *w, struct mbox *mb)
{
	w->mb = mb;
	w->part = 0;
	w->part_lo = 1;
	w->part_hi = UINT32_MAX;
	if (mb->nparts > 1 && mb->parts_given < mb->nparts) {
		uint64_t span = (uint64_t)mb->sp_hi - mb->sp_lo + 1;
		unsigned k = mb->parts_given++;

		w->part = k + 1;
		w->part_lo = (uint32_t)(mb->sp_lo + span * k / mb->nparts);
		/* the top part reads on to the UIDNEXT its EXAMINE tells */
		w->part_hi = w->part == mb->nparts
		                 ? UINT32_MAX
		                 : (uint32_t)(mb->sp_lo + span * (k + 1) / mb->nparts - 1);
	}
}

/* The part cannot go on as planned: given up, read again by the last. */
static int split_give_up(struct worker *w, const char *why)
{
	progress_clear(w->job);
	mf_log(MF_LOG_INFO,
	       "mailbox \"%s\": part %u of %u (UIDs %u:%u) given up (%s); the "
	       "mailbox is read again once the other parts are done",
	       w->mb->display, w->part, w->mb->nparts, w->part_lo, w->part_hi, why);
	w->mb->sp_redo = 1;
	mailbox_finish(w);
	return 1;
}

int split_examined(struct worker *w, const struct state_mbox *rec)
{
	struct mbox *mb = w->mb;

	if (rec->uidvalidity && rec->uidvalidity != w->uidvalidity)
		return split_give_up(w, "UIDVALIDITY changed");
	if (mb->st_uidvalidity != w->uidvalidity || (mb->sp_seen && mb->sp_uidv != w->uidvalidity))
		return split_give_up(w, "UIDVALIDITY changed since the plan");
	/* rec->intents is not settled here: it is the other parts' batches
	 * in flight (the plan splits no mailbox with intents left over). */
	w->start_uid = w->part_lo;
	if (rec->uidvalidity && rec->last_uid >= w->start_uid)
		w->start_uid = rec->last_uid + 1;
	changes_start(w);
	return 1;
}

/* What a finished part saw, for the record the last one writes. */
static void split_merge(struct worker *w)
{
	struct mbox *mb = w->mb;

	if (!mb->sp_seen) {
		mb->sp_seen = 1;
		mb->sp_uidv = w->uidvalidity;
		mb->sp_hms = w->highestmodseq;
		mb->sp_failed_min = 0;
		mb->sp_uidnext = 0;
		mb->sp_exists = 0;
	} else if (w->highestmodseq < mb->sp_hms) {
		/* the earliest EXAMINE's: changes after it are read next run */
		mb->sp_hms = w->highestmodseq;
	}
	if (mb->sp_uidv != w->uidvalidity)
		mb->sp_redo = 1;
	if (w->mb_failed_min_uid &&
	    (!mb->sp_failed_min || w->mb_failed_min_uid < mb->sp_failed_min))
		mb->sp_failed_min = (uint32_t)w->mb_failed_min_uid;
	if (w->part == mb->nparts) {
		mb->sp_uidnext = w->uidnext;
		mb->sp_exists = w->src.exists;
	}
}

int split_finish(struct worker *w)
{
	struct mbox *mb = w->mb;

	if (!w->part)
		return 0;
	if (!mb->failed && !mb->sp_redo)
		split_merge(w);
	w->part = 0;
	if (--mb->parts_left) {
		if (w->p3 && mb->parts_given < mb->nparts)
			pop3src_fewer_note(w); /* a part nobody took: sessions kept out */
		w->mb = NULL;
		w->phase = W_IDLE;
		worker_next(w);
		return 1;
	}
	if (mb->failed)
		return 0; /* nothing recorded; the caller counts the mailbox */
	if (mb->sp_redo || !mb->sp_seen || !mb->sp_uidnext) {
		/* Every other part has ended: nothing appends into the folder
		 * but us. The whole mailbox from its record, intents settled. */
		mb->nparts = 0;
		w->part_lo = 1;
		w->part_hi = UINT32_MAX;
		w->attempts = 0;
		/* as after a reconnect: what its settle finds on the
		 * destination was copied in this run (a split mailbox has no
		 * intents of an earlier one), so it counts as copied */
		w->resumed = 1;
		w->resume_range = 0;
		w->resume_uid = 0;
		w->resume_uidv = mb->st_uidvalidity;
		w->ncounted = 0;
		mailbox_begin(w);
		return 1;
	}
	w->uidvalidity = mb->sp_uidv;
	w->uidnext = mb->sp_uidnext;
	w->highestmodseq = mb->sp_hms;
	w->mb_failed_min_uid = mb->sp_failed_min;
	w->src.exists = mb->sp_exists; /* the top part's count, for the record */
	return 0;
}

void split_dropped(struct worker *w)
{
	split_give_up(w, "its connection was lost");
}

int split_gone(struct worker *w)
{
	if (!w->part)
		return 1;
	w->part = 0;
	return --w->mb->parts_left == 0;
}

uint32_t split_intents_mark(const struct worker *w)
{
	return w->part ? STATE_INTENTS_PARTS : 1;
}
