/*
 * run_arc — the backup and restore lines of `mailferry run` (run.c):
 *
 *   backup imaps://a@old /srv/archive [options]
 *   restore /srv/archive imaps://a@new [--run N|--as-of D] [options]
 *
 * A line's words become options exactly as for the single commands
 * (arc_job.c). An archive has one writer (its flock; LMDB is opened once
 * per process): lines naming the same archive never run at once. A line
 * whose archive another line holds waits, parked in file order, until that
 * one is done; it never fails for it. Parked lines count against --jobs,
 * so a long file of lines into one archive holds --jobs of them at most.
 *
 * Not for: the job (run.c), the archive (store/).
 */
#include "engine/cli/run_int.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int run_arc_setup(struct acct *a, enum account_action action, int argc, char **argv)
{
	int restore = action == ACCOUNT_RESTORE, rc;
	/* backup SRC-URL DIR, restore DIR DST-URL */
	char *url = argv[restore], *dir = argv[!restore];
	char **opt = &argv[1];
	int nopt = argc - 1;

	if (!(a->arc = calloc(1, sizeof(*a->arc)))) {
		fprintf(stderr, "mailferry: %sout of memory\n", a->where);
		snprintf(a->why, sizeof(a->why), "out of memory");
		return 2;
	}
	opt[0] = (char *)"run"; /* getopt's argv[0]: the slot before the options */
	if ((rc = arc_job_take(a->arc, &a->c, restore, &nopt, opt)) ||
	    (rc = cli_parse(&a->c, nopt, opt, 0)))
		return rc == 1 ? 2 : rc;
	if (optind != nopt) {
		fprintf(stderr, "mailferry: %sunexpected word \"%.60s\" after the options\n",
		        a->where, opt[optind]);
		snprintf(a->why, sizeof(a->why), "unexpected word after the options");
		return 2;
	}
	if ((rc = cli_accounts(&a->c, restore ? NULL : url, restore ? url : NULL)))
		return rc;
	return arc_job_check(a->arc, &a->c, dir);
}

static int held(const struct run *r, const char *key)
{
	for (const struct acct *h = r->holders; h; h = h->hnext)
		if (!strcmp(h->arc_key, key))
			return 1;
	return 0;
}

int run_arc_acquire(struct acct *a)
{
	struct run *r = a->r;
	int rc;

	/* a new archive has no real path yet: then no line holds it either
	 * (the one that creates it holds it from then on) */
	if (!realpath(a->arc->dir, a->arc_key))
		snprintf(a->arc_key, sizeof(a->arc_key), "%s", a->arc->dir);
	if (held(r, a->arc_key)) {
		a->pnext = NULL;
		if (r->parked_tail)
			r->parked_tail->pnext = a;
		else
			r->parked = a;
		r->parked_tail = a;
		r->nparked++;
		mf_log(MF_LOG_DEBUG, "%swaits for archive %s (another line holds it)", a->where,
		       a->arc_key);
		return 1;
	}
	/* many lines back up at once: no compressing threads of their own */
	a->arc->zthreads = -1;
	if ((rc = arc_job_open(a->arc, &a->c, a->label)))
		return rc;
	snprintf(a->arc_key, sizeof(a->arc_key), "%s", a->arc->real);
	a->hnext = r->holders;
	r->holders = a;
	return 0;
}

void run_arc_release(struct acct *a)
{
	struct acct **p;

	if (!a->arc)
		return;
	for (p = &a->r->holders; *p; p = &(*p)->hnext)
		if (*p == a) {
			*p = a->hnext;
			break;
		}
	arc_job_close(a->arc);
	free(a->arc);
	a->arc = NULL;
}

struct acct *run_arc_next(struct run *r)
{
	struct acct *prev = NULL;

	for (struct acct *a = r->parked; a; prev = a, a = a->pnext) {
		if (held(r, a->arc_key))
			continue;
		if (prev)
			prev->pnext = a->pnext;
		else
			r->parked = a->pnext;
		if (r->parked_tail == a)
			r->parked_tail = prev;
		a->pnext = NULL;
		r->nparked--;
		return a;
	}
	return NULL;
}
