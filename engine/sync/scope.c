/*
 * scope — one job's writes to the state. Every record the sync layer
 * writes (job and mailbox ids, mailbox records, message records, POP3
 * unique-ids, filters, renames) goes through here, and this is the one
 * place that knows a dry run writes nothing: a job started with
 * job_opts.dry_run gets a discarding scope (j->discard), whose writes
 * succeed without touching the state and whose commits are no-ops.
 *
 * The scope is the job's, not the state's: `mailferry run` runs many jobs
 * on one loop over one state (one LMDB write transaction), and one job's
 * dry run must never discard another job's writes. So nothing is written
 * and then rolled back: a discarding scope never writes. Ids a dry run
 * would create are looked up instead, and one the state does not know
 * gets a value no real record has (JOB_DRY_JOBID, JOB_DRY_MBID - index):
 * nothing is ever recorded under them.
 *
 * Reads go to the state directly (state.h): a discarding scope reads what
 * earlier real runs recorded.
 *
 * Not for: the state's format and transactions (store/state), when to
 * commit (report.c's job_commit asks scope_commit).
 */
#include "engine/sync/job_int.h"

int scope_open(struct job *j, const char *key, struct mf_error *err)
{
	int rc;

	j->discard = j->o->dry_run; /* the one place a dry run is told apart */
	if (!j->discard)
		return state_job(j->st, key, &j->jobid, err);
	rc = state_job_find(j->st, key, &j->jobid, err);
	if (rc == -ENOENT) {
		j->jobid = JOB_DRY_JOBID;
		rc = 0;
	}
	return rc;
}

int scope_mbox_id(struct job *j, struct mbox *mb, int *created, struct mf_error *e)
{
	int rc;

	if (!j->discard)
		return state_mbox_id(j->st, j->jobid, mb->name, mb->len, &mb->mbid, created, e);
	*created = 0;
	rc = state_mbox_find(j->st, j->jobid, mb->name, mb->len, &mb->mbid, e);
	if (rc == -ENOENT) {
		mb->mbid = JOB_DRY_MBID - (uint32_t)(mb - j->mb);
		*created = 1;
		rc = 0;
	}
	return rc;
}

int scope_uidl_id(struct job *j, uint32_t mbid, const char *uidl, size_t len, uint32_t *id,
                  int *created, struct mf_error *e)
{
	int rc;

	if (!j->discard)
		return state_uidl_id(j->st, j->jobid, mbid, uidl, len, id, created, e);
	*created = 0;
	rc = state_uidl_find(j->st, j->jobid, mbid, uidl, len, id, e);
	if (rc == -ENOENT) {
		/* not known: a new message, never recorded; an id no real
		 * record has (they count up from 1), so that the counting
		 * sink counts it like any other */
		*id = JOB_DRY_ID_TOP - j->dry_ids++ % (JOB_DRY_ID_TOP / 2);
		rc = 0;
	}
	return rc;
}

int scope_mbox_put(struct job *j, uint32_t mbid, const struct state_mbox *rec, struct mf_error *e)
{
	return j->discard ? 0 : state_mbox_put(j->st, j->jobid, mbid, rec, e);
}

int scope_mbox_rename(struct job *j, uint32_t mbid, const char *old, size_t oldlen, const char *to,
                      size_t tolen, struct mf_error *e)
{
	return j->discard ? 0 : state_mbox_rename(j->st, j->jobid, mbid, old, oldlen, to, tolen, e);
}

int scope_filter_put(struct job *j, uint32_t mbid, uint64_t id, struct mf_error *e)
{
	return j->discard ? 0 : state_mbox_filter_put(j->st, j->jobid, mbid, id, e);
}

int scope_msg_put(struct job *j, const struct state_msg_key *k, const struct state_msg *m,
                  struct mf_error *e)
{
	return j->discard ? 0 : state_msg_put(j->st, k, m, e);
}

int scope_msg_del(struct job *j, const struct state_msg_key *k, struct mf_error *e)
{
	return j->discard ? 0 : state_msg_del(j->st, k, e);
}

int scope_commit(struct job *j)
{
	return !j->discard && j->state_dirty;
}
