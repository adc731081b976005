/*
 * check — `mailferry migrate SRC DST --check`: logs in to both accounts at
 * once, lists each, and says per side whether a run could start and what
 * it would face; a failing side never stops the other from being tried,
 * so an admin fixes both in one go (issue 16). Nothing is copied and the
 * state is not opened.
 *
 * Not for: what a run would copy per mailbox (--dry-run does that).
 */
#include "engine/cli/cli_int.h"

#include <stdio.h>
#include <string.h>

#include "engine/base/err.h"
#include "engine/runtime/loop.h"
#include "protocols/imap_client.h"

struct side {
	struct imap_client c;
	struct imap_cmd list_cmd;
	int ready, failed, listed;
	unsigned mailboxes;
	unsigned caps;
	struct mf_error err;
};

static void list_done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct side *s = c->ud;

	(void)cmd;
	if (r->status != IMAP_ST_OK) {
		mf_err_set(&s->err, -EPROTO, "%s: LIST failed: %.*s", imap_client_who(c),
		           (int)(r->text_len > 200 ? 200 : r->text_len), r->text);
		s->failed = 1;
	} else {
		s->listed = 1;
	}
	imap_client_logout(c);
}

static int on_untagged(struct imap_client *c, const struct imap_resp *r)
{
	struct side *s = c->ud;

	if (r->first && imap_node_is(r->first, "LIST"))
		s->mailboxes++;
	return 0;
}

static void on_ready(struct imap_client *c)
{
	struct side *s = c->ud;

	s->ready = 1;
	s->caps = c->caps;
	imap_cmd_begin(c, &s->list_cmd, list_done, NULL);
	imap_put(c, "LIST \"\" \"*\"");
	imap_cmd_end(c);
}

static void on_error(struct imap_client *c, const struct mf_error *err)
{
	struct side *s = c->ud;

	if (s->listed)
		return; /* the LOGOUT's end */
	s->failed = 1;
	s->err = *err;
}

static const struct imap_client_cb check_cb = {
	.ready = on_ready,
	.error = on_error,
	.untagged = on_untagged,
};

static void report(const char *label, const struct imap_endpoint *ep, const struct side *s)
{
	if (s->failed || !s->listed) {
		mf_print("mailferry: check: %s %s@%s: FAILED: %s", label, ep->user, ep->host,
		         s->err.msg[0] ? s->err.msg : "no answer");
		return;
	}
	mf_print("mailferry: check: %s %s@%s: ok: logged in%s, %u mailboxes; %s%s%s%s", label,
	         ep->user, ep->host, ep->authuser ? " (as the admin)" : "", s->mailboxes,
	         s->caps & IMAP_CAP_QRESYNC     ? "QRESYNC"
	         : s->caps & IMAP_CAP_CONDSTORE ? "CONDSTORE"
	                                        : "no CONDSTORE (re-runs scan flags)",
	         s->caps & IMAP_CAP_MULTIAPPEND ? ", MULTIAPPEND" : "",
	         s->caps & IMAP_CAP_LITERALPLUS ? ", LITERAL+" : "",
	         s->caps & IMAP_CAP_UIDPLUS ? ", UIDPLUS" : ", no UIDPLUS");
}

static int side_class(const struct side *s)
{
	if (!s->failed && s->listed)
		return 0;
	return s->err.code == -EACCES ? 4 : 3;
}

int cli_check(const struct job_opts *o)
{
	struct loop loop;
	struct side src, dst;
	int rc, a, b;

	memset(&src, 0, sizeof(src));
	memset(&dst, 0, sizeof(dst));
	if ((rc = loop_init(&loop, 64)) < 0) {
		mf_log(MF_LOG_ERROR, "io_uring setup failed: %s", strerror(-rc));
		return 1;
	}
	/* both sides at once: one failing does not keep the other untried */
	if (imap_client_open(&src.c, &loop, &o->src, &check_cb, &src, &src.err) < 0)
		src.failed = 1;
	if (imap_client_open(&dst.c, &loop, &o->dst, &check_cb, &dst, &dst.err) < 0)
		dst.failed = 1;
	if ((rc = loop_run(&loop)) < 0)
		mf_log(MF_LOG_ERROR, "event loop failed: %s", strerror(-rc));
	imap_client_close(&src.c);
	imap_client_close(&dst.c);
	loop_free(&loop);
	report("source", &o->src, &src);
	report("destination", &o->dst, &dst);
	a = side_class(&src);
	b = side_class(&dst);
	/* authentication is the more specific verdict */
	rc = a == 4 || b == 4 ? 4 : a ? a : b;
	mf_print("mailferry: check: %s", rc ? "a run would not start" : "a run can start");
	return rc;
}
