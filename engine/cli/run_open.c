/*
 * run_open — `mailferry run` opens each account's state off the loop.
 * Opening an LMDB environment creates a directory and files and syncs
 * them: tens of milliseconds on a slow disk. With thousands of accounts
 * starting at once, that work on the loop kept everything else on it
 * waiting for seconds: the status server (/metrics took 5.8 s), and the
 * copies already running. One helper thread opens the states in the order
 * the accounts come and posts each account back to the loop (loop_post),
 * where run_acct_opened starts its job.
 *
 * Not for: what an account is and how it starts (run.c), the worker loops
 * of --threads (run_threads.c).
 */
#include "engine/cli/run_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "engine/base/err.h"
#include "store/state.h"

struct run_opener {
	struct run *r;
	pthread_t tid;
	int started, stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct acct *q, *qtail;       /* to open, in order */
	struct acct *done, *donetail; /* opened or refused, for the loop */
	struct loop_task task;
};

static void push(struct acct **head, struct acct **tail, struct acct *a)
{
	a->onext = NULL;
	if (*tail)
		(*tail)->onext = a;
	else
		*head = a;
	*tail = a;
}

static void *opener_main(void *arg)
{
	struct run_opener *o = arg;

	pthread_mutex_lock(&o->mu);
	for (;;) {
		struct acct *a = o->q;

		if (!a) {
			if (o->stop)
				break;
			pthread_cond_wait(&o->cv, &o->mu);
			continue;
		}
		o->q = a->onext;
		if (!o->q)
			o->qtail = NULL;
		pthread_mutex_unlock(&o->mu);
		mf_err_clear(&a->oerr);
		a->orc = state_open_flags(&a->st, a->state_dir,
		                          a->c.state_reset ? STATE_OPEN_RESET : 0, &a->oerr);
		pthread_mutex_lock(&o->mu);
		push(&o->done, &o->donetail, a);
		loop_post(&o->r->loop, &o->task);
	}
	pthread_mutex_unlock(&o->mu);
	return NULL;
}

/* On the loop: the accounts whose state is open (or could not be). */
static void opened(struct loop *l, struct loop_task *t)
{
	struct run_opener *o = (struct run_opener *)((char *)t - offsetof(struct run_opener, task));
	struct acct *a, *next;

	(void)l;
	pthread_mutex_lock(&o->mu);
	a = o->done;
	o->done = o->donetail = NULL;
	pthread_mutex_unlock(&o->mu);
	for (; a; a = next) {
		next = a->onext;
		o->r->opening--;
		run_acct_opened(a);
	}
}

int run_open_start(struct run *r)
{
	struct run_opener *o = calloc(1, sizeof(*o));
	int rc;

	if (!o)
		return -ENOMEM;
	if (!r->th && (rc = loop_inbox_open(&r->loop)) < 0) {
		free(o);
		return rc;
	}
	o->r = r;
	o->task.fn = opened;
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->cv, NULL);
	if ((rc = pthread_create(&o->tid, NULL, opener_main, o))) {
		pthread_mutex_destroy(&o->mu);
		pthread_cond_destroy(&o->cv);
		free(o);
		return -rc;
	}
	o->started = 1;
	r->opener = o;
	return 0;
}

void run_open_hand(struct run *r, struct acct *a)
{
	struct run_opener *o = r->opener;

	r->opening++;
	pthread_mutex_lock(&o->mu);
	push(&o->q, &o->qtail, a);
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->mu);
}

void run_open_stop(struct run *r)
{
	struct run_opener *o = r->opener;

	if (!o)
		return;
	pthread_mutex_lock(&o->mu);
	o->stop = 1;
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->mu);
	pthread_join(o->tid, NULL);
	pthread_mutex_destroy(&o->mu);
	pthread_cond_destroy(&o->cv);
	free(o);
	r->opener = NULL;
}
