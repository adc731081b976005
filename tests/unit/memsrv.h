/*
 * memsrv — an in-memory IMAP peer for the job logic's unit tests: a job
 * with one worker on a real state, whose two IMAP clients are never
 * connected. What the sync layer writes to them is read back as command
 * lines, run against mailboxes held in memory (EXAMINE, SELECT, LIST,
 * CREATE, RENAME, SUBSCRIBE, UID FETCH, UID SEARCH, UID STORE, UID
 * EXPUNGE, LOGOUT), and the answer is fed through the real response
 * parser to the command's consumer and done callback, as imap_client
 * routes them (imap_client.h, "Who gets a response"). The copy pass's
 * sink stores into the destination's mailboxes; its verdicts come from
 * mh_run, as the loop would bring them. No server, no socket, no timer.
 *
 * A fault is injected as a run would meet it (report.c's test_fail):
 * set j->test_fail_site / test_fail_at. A "crash" drops what the state
 * did not commit (mh_close(h, 1)); mh_open on the same directory is the
 * restart.
 */
#ifndef MF_TEST_MEMSRV_H
#define MF_TEST_MEMSRV_H

#include "engine/sync/job_int.h"

#define MS_MSGS 64
#define MS_BOXES 8

struct ms_msg {
	uint32_t uid;
	char flags[120];
	char body[200];
	size_t len;
	uint64_t modseq;
};

struct ms_box {
	char name[64];
	uint32_t uidvalidity, uidnext;
	uint64_t modseq;	/* HIGHESTMODSEQ */
	struct ms_msg m[MS_MSGS];
	size_t n;
};

struct mh;

struct ms_side {
	struct mh *h;
	struct imap_client *c;
	struct imap_client_cb cb;
	struct ms_box box[MS_BOXES];
	size_t nbox;
	struct ms_box *sel;
	struct imap_parser p;
	char *out;		/* answers not fed yet (a consumer paused) */
	size_t out_len, out_off, out_cap;
	struct imap_cmd *lit_cmd;
	char log[16384];	/* the commands received, one a line, tags cut */
	size_t log_len;
	int failed;		/* the client failed (imc_client_fail) */
};

struct mh_batch {
	struct batch *b;
	unsigned n;
	uint32_t uid[BATCH_MAX];
	char flags[BATCH_MAX][120];
	char body[BATCH_MAX][200];
	size_t len[BATCH_MAX];
};

struct mh {
	struct job *j;
	struct worker *w;
	struct loop loop;
	struct state *st;
	struct job_opts o;
	struct job_summary sum;
	char dir[64];
	struct ms_side src, dst;
	/* the sink: batches committed, answered by mh_run */
	struct mh_batch cur, pend[BATCH_SLOTS];
	unsigned phead, pn;
	int ready_due;		/* the sink was opened: sink_ready from mh_run */
	unsigned commits;	/* the sink's commit points crossed */
};

/* A state in dir (made if new) and a job on it with one worker; the
 * options in h->o may be changed before the job's steps run. */
int mh_open(struct mh *h, const char *dir);
/* Frees the job; crash: the state drops what it did not commit. */
void mh_close(struct mh *h, int crash);
/* Adds a mailbox to the job as if the source listed it (its destination
 * name the same), with its id in the state: the mailbox. */
struct mbox *mh_mbox(struct mh *h, const char *name);
/* A mailbox of side s (made if new). */
struct ms_box *ms_box(struct ms_side *s, const char *name, uint32_t uidvalidity);
/* Adds a message (uid: the box's next) with that body and flags. */
struct ms_msg *ms_add(struct ms_box *b, const char *body, const char *flags);
struct ms_msg *ms_find(struct ms_box *b, uint32_t uid);
/* Messages of the box whose body is this (a copy stored twice shows). */
unsigned ms_count_body(const struct ms_box *b, const char *body);
/* Opens w's mailbox mb as a pass does (mailbox_begin) and runs to its end. */
void mh_pass(struct mh *h, struct mbox *mb);
/* Intents an earlier (crashed) run left are old by now: settle does not
 * wait for the destination to finish them (memsrv runs no timer). */
void mh_age_intents(struct mh *h);
/* Answers what the job sent until nothing is left to answer. */
void mh_run(struct mh *h);
/* The state's record of uid in mb under uidv: its status (0: none). */
int mh_status(struct mh *h, const struct mbox *mb, uint32_t uidv, uint32_t uid,
              struct state_msg *sm);
/* Records a message as an earlier run would have copied it: DONE (or an
 * intent) with its content's hashes and the destination's uid. */
int mh_record(struct mh *h, const struct mbox *mb, uint32_t uidv, uint32_t uid,
              const struct ms_msg *src, uint32_t dst_uidv, uint32_t dst_uid, uint8_t status);
/* The body's hashes, as the copy path computes them. */
void mh_hash(const char *body, size_t len, uint8_t hash[32], uint8_t nhash[32]);
/* Removes a test's state directory (its files, then itself). */
void mh_remove(const char *dir);
/* The job's mailbox of that name (0: none). */
struct mbox *mh_find(struct mh *h, const char *name);

/* A world for mh_fault_each: setup makes a fresh state's records and the
 * mailboxes of both sides; options sets the job's options (again after a
 * restart); run takes the job through its steps; fault (may be NULL)
 * looks at the run a fault cut short, check at a complete one (again: the
 * run after it, which must find nothing to copy). */
struct mh_world {
	int (*setup)(struct mh *h);
	void (*options)(struct mh *h);
	void (*run)(struct mh *h);
	void (*fault)(struct mh *h, const char *what, void *ctx);
	void (*check)(struct mh *h, const char *what, int again, void *ctx);
	void *ctx;
};
/* SQLite's habit: the world run with a fault at the k-th call of site
 * (report.c's test_fail: "commit", "change_note", ...), for k = 1, 2, ...
 * until a run makes fewer calls; after each fault the process stops (a
 * crash, dropping what the state did not commit, when site is "commit"),
 * a new one runs the world to its end (check), and then once more
 * (check again). The mailboxes of both sides live on across the restarts.
 * Returns how many faults were injected, or -1 if the harness failed. */
int mh_fault_each(const struct mh_world *w, const char *site);

#endif
