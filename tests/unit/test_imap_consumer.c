/*
 * test_imap_consumer — imap_client's routing of untagged responses and
 * literals to the consumer of the command they belong to (imap_client.h,
 * "Who gets a response"): the oldest command in flight with a consumer
 * gets them, a consumer without a literal callback leaves literals to the
 * client-wide ones, a tagged reply out of order takes its command out of
 * the consumer queue, a consumer may pause input, and with no consumer in
 * flight the client-wide callbacks get everything.
 *
 * The server is a forked child on an ephemeral 127.0.0.1 port playing a
 * fixed transcript (the routing depends on the order of bytes, which a
 * real server does not let a test choose).
 *
 * Also the login pipelined behind (cb->logged_in, a greeting naming
 * Dovecot with SASL-IR): the server reads the login and every command
 * before it answers anything, and a refused login fails the session as
 * a login failure, no command's callback called.
 */
#include "protocols/imap_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/unit.h"

/* ---- the server ---- */

static int listen_any(uint16_t *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 1) ||
	    getsockname(fd, (struct sockaddr *)&a, &al)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

/* Reads until n more command lines (CRLF) have arrived. */
static int read_lines(int fd, int n)
{
	char ch;

	while (n > 0) {
		if (read(fd, &ch, 1) != 1)
			return -1;
		n -= ch == '\n';
	}
	return 0;
}

static int put_all(int fd, const char *s)
{
	size_t n = strlen(s);

	while (n) {
		ssize_t k = write(fd, s, n);

		if (k <= 0)
			return -1;
		s += k;
		n -= (size_t)k;
	}
	return 0;
}

/* session() flags */
#define F_PAUSE 1   /* the consumer pauses input once */
#define F_PIPE 2    /* the login is pipelined: answered after every command came */
#define F_REFUSE 4  /* with F_PIPE: the login is refused */

/* Greeting with capabilities (no CAPABILITY command), LOGIN (A1), then
 * after ncmd command lines the transcript, then LOGOUT. */
static int serve(int lfd, int ncmd, const char *transcript, const char *logout_tag, int flags)
{
	int fd = accept(lfd, NULL, NULL);
	char bye[64];

	if (fd < 0)
		return 2;
	snprintf(bye, sizeof(bye), "* BYE bye\r\n%s OK logged out\r\n", logout_tag);
	if (flags & F_PIPE) {
		if (put_all(fd, "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] Dovecot ready.\r\n") ||
		    read_lines(fd, 1 + ncmd))
			return 3;
		if (flags & F_REFUSE)
			return put_all(fd, "A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
			                   "A2 BAD not logged in\r\n") ? 3 : 0;
		if (put_all(fd, "A1 OK [CAPABILITY IMAP4rev1 LITERAL+] in\r\n") ||
		    put_all(fd, transcript) || read_lines(fd, 1) || put_all(fd, bye))
			return 3;
		close(fd);
		return 0;
	}
	if (put_all(fd, "* OK [CAPABILITY IMAP4rev1 LITERAL+] test server ready\r\n") ||
	    read_lines(fd, 1) || put_all(fd, "A1 OK [CAPABILITY IMAP4rev1 LITERAL+] in\r\n") ||
	    read_lines(fd, ncmd) || put_all(fd, transcript) || read_lines(fd, 1) ||
	    put_all(fd, bye))
		return 3;
	close(fd);
	return 0;
}

static pid_t server_start(uint16_t *port, int ncmd, const char *transcript, const char *logout_tag,
                          int flags)
{
	int lfd = listen_any(port);
	pid_t pid;

	if (lfd < 0)
		return -1;
	fflush(stdout);
	if ((pid = fork()) == 0) {
		signal(SIGPIPE, SIG_IGN);
		alarm(20);
		_exit(serve(lfd, ncmd, transcript, logout_tag, flags));
	}
	close(lfd);
	return pid;
}

static int server_wait(pid_t pid)
{
	int st = 0;

	for (int i = 0; i < 500 && waitpid(pid, &st, WNOHANG) == 0; i++)
		usleep(10000);
	if (kill(pid, 0) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		return -1;
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- the client ---- */

struct rt {
	struct imap_client c;
	struct loop *l;
	struct imap_cmd cmd[8];
	char log[2048];
	size_t n;
	int errors, pause_once;
	char err[MF_ERR_MAX];
	struct loop_task resume;
	void (*send)(struct rt *t);
	unsigned ndone, nsent;
};

static void logf_(struct rt *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct rt *t, const char *fmt, ...)
{
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(t->log + t->n, sizeof(t->log) - t->n, fmt, ap);
	va_end(ap);
	if (k > 0 && (size_t)k < sizeof(t->log) - t->n)
		t->n += (size_t)k;
}

/* What an untagged response is, in a word: "EXISTS", "FETCH", "SEARCH",
 * or an OK's response code. */
static void word(struct rt *t, const char *who, const struct imap_resp *r)
{
	const struct imap_node *a = r->first;

	if (r->code)
		logf_(t, "%s:%.*s ", who, (int)r->code->len, r->code->s);
	else if (a && a->next && a->next->type == IMAP_NODE_ATOM)
		logf_(t, "%s:%.*s ", who, (int)a->next->len, a->next->s);
	else if (a)
		logf_(t, "%s:%.*s ", who, (int)a->len, a->s);
}

static int any_untagged(struct imap_client *c, const struct imap_resp *r)
{
	word(c->ud, "W", r);
	return 0;
}

static int any_lit_begin(struct imap_client *c, const struct imap_resp *r,
                         const struct imap_node *key, uint64_t size)
{
	(void)r;
	(void)key;
	logf_(c->ud, "W:lit%llu=", (unsigned long long)size);
	return IMAP_LIT_STREAM;
}

static ssize_t any_lit_data(struct imap_client *c, const uint8_t *p, size_t n)
{
	logf_(c->ud, "%.*s", (int)n, (const char *)p);
	return (ssize_t)n;
}

static int any_lit_end(struct imap_client *c)
{
	logf_(c->ud, " ");
	return 0;
}

/* The consumers name themselves by the command's ud ("E", "F", "S"). */
static int k_untagged(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct rt *t = c->ud;

	word(t, cmd->ud, r);
	if (t->pause_once && r->first && r->first->next && imap_node_is(r->first->next, "FETCH")) {
		/* Input stops after this response until the task resumes it. */
		t->pause_once = 0;
		logf_(t, "pause ");
		loop_defer(t->l, &t->resume);
		return IMAP_PARSE_PAUSE;
	}
	return 0;
}

static int k_lit_begin(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r,
                       const struct imap_node *key, uint64_t size)
{
	(void)r;
	(void)key;
	logf_(c->ud, "%s:lit%llu=", (const char *)cmd->ud, (unsigned long long)size);
	return IMAP_LIT_STREAM;
}

static ssize_t k_lit_data(struct imap_client *c, struct imap_cmd *cmd, const uint8_t *p, size_t n)
{
	(void)cmd;
	logf_(c->ud, "%.*s", (int)n, (const char *)p);
	return (ssize_t)n;
}

static int k_lit_end(struct imap_client *c, struct imap_cmd *cmd)
{
	logf_(c->ud, "/%s ", (const char *)cmd->ud);
	return 0;
}

static const struct imap_consumer untagged_only = {.untagged = k_untagged};
static const struct imap_consumer full = {
    .untagged = k_untagged,
    .lit_begin = k_lit_begin,
    .lit_data = k_lit_data,
    .lit_end = k_lit_end,
};

static void resume_task(struct loop *l, struct loop_task *task)
{
	struct rt *t = (struct rt *)((char *)task - offsetof(struct rt, resume));

	(void)l;
	logf_(t, "resume ");
	imap_client_kick(&t->c);
}

static void done(struct imap_client *c, struct imap_cmd *cmd, const struct imap_resp *r)
{
	struct rt *t = c->ud;

	logf_(t, "done%u%s ", cmd->tag, r->status == IMAP_ST_OK ? "" : "!");
	if (++t->ndone == t->nsent)
		imap_client_logout(c);
}

static void on_ready(struct imap_client *c)
{
	struct rt *t = c->ud;

	if (c->login_pending)
		logf_(t, "early ");
	t->send(t);
}

static void on_logged_in(struct imap_client *c)
{
	logf_(c->ud, "in ");
}

static void on_error(struct imap_client *c, const struct mf_error *err)
{
	struct rt *t = c->ud;

	t->errors++;
	snprintf(t->err, sizeof(t->err), "%s", err->msg);
}

static const struct imap_client_cb cb = {
    .ready = on_ready,
    .error = on_error,
    .untagged = any_untagged,
    .lit_begin = any_lit_begin,
    .lit_data = any_lit_data,
    .lit_end = any_lit_end,
};

static const struct imap_client_cb cb_pipe = {
    .ready = on_ready,
    .logged_in = on_logged_in,
    .error = on_error,
    .untagged = any_untagged,
    .lit_begin = any_lit_begin,
    .lit_data = any_lit_data,
    .lit_end = any_lit_end,
};

static void send_cmd(struct rt *t, const char *line, const struct imap_consumer *k,
                     const char *name)
{
	struct imap_cmd *cmd = &t->cmd[t->nsent++];

	imap_cmd_begin_consumer(&t->c, cmd, done, (void *)name, k);
	imap_put(&t->c, line);
	imap_cmd_end(&t->c);
}

/* Runs one session against transcript (after ncmd command lines) and
 * checks the log. */
static void session(struct unit_ctx *u, void (*sendfn)(struct rt *t), int ncmd,
                    const char *transcript, const char *want, int flags)
{
	struct imap_endpoint ep = {
	    .label = "source",
	    .host = "127.0.0.1",
	    .user = "u",
	    .password = "pw-test",
	    .tls = IMAP_TLS_NONE,
	    .timeout_ms = 5000,
	};
	struct loop l;
	struct rt *t = calloc(1, sizeof(*t));
	struct mf_error e;
	char tag[16];
	pid_t pid;

	UNIT_CHECK(u, t != NULL);
	if (!t)
		return;
	snprintf(tag, sizeof(tag), "A%d", ncmd + 2);
	pid = server_start(&ep.port, ncmd, transcript, tag, flags);
	UNIT_CHECK(u, pid > 0);
	UNIT_CHECK(u, loop_init(&l, 64) == 0);
	t->l = &l;
	t->send = sendfn;
	t->pause_once = flags & F_PAUSE;
	t->resume.fn = resume_task;
	UNIT_CHECKF(u, imap_client_open(&t->c, &l, &ep, (flags & F_PIPE) ? &cb_pipe : &cb, t, &e) == 0,
	            "open: %s", e.msg);
	UNIT_CHECK(u, loop_run(&l) == 0);
	imap_client_close(&t->c);
	loop_free(&l);
	if (flags & F_REFUSE)
		UNIT_CHECKF(u, t->errors == 1 && strstr(t->err, "source u@127.0.0.1: login failed: "
		                                                "[AUTHENTICATIONFAILED]"),
		            "client error: %s", t->err);
	else
		UNIT_CHECKF(u, !t->errors, "client error: %s", t->err);
	UNIT_CHECK(u, server_wait(pid) == 0);
	UNIT_CHECKF(u, t->n && !strcmp(t->log, want), "\n  got:  %s\n  want: %s", t->log, want);
	free(t);
}

/* A2 NOOP (no consumer), A3 EXAMINE (E: untagged only), A4 UID FETCH (F:
 * all), A5 UID SEARCH (S: untagged only), A6 UID FETCH (no consumer). */
static void send_mixed(struct rt *t)
{
	send_cmd(t, "NOOP", NULL, "-");
	send_cmd(t, "EXAMINE INBOX", &untagged_only, "E");
	send_cmd(t, "UID FETCH 6:7 (UID BODY.PEEK[])", &full, "F");
	send_cmd(t, "UID SEARCH ALL", &untagged_only, "S");
	send_cmd(t, "UID FETCH 8 (UID BODY.PEEK[])", NULL, "-");
}

static const char mixed_transcript[] =
    /* A2 (no consumer) is oldest, but E is the oldest with one */
    "* 9 EXISTS\r\n"
    "A2 OK noop\r\n"
    "* OK [UIDVALIDITY 7] ok\r\n"
    /* E has no literal callbacks: the client-wide ones read it */
    "* 1 FETCH (UID 5 BODY[] {5}\r\nhello)\r\n"
    "A3 OK [READ-ONLY] examined\r\n"
    "* 2 FETCH (UID 6 BODY[] {3}\r\nabc)\r\n"
    /* S answers before F (out of order): F stays the oldest */
    "A5 OK searched\r\n"
    "* 3 FETCH (UID 7 BODY[] {2}\r\nxy)\r\n"
    "A4 OK fetched\r\n"
    /* only A6 (no consumer) is left */
    "* 4 FETCH (UID 8 BODY[] {1}\r\nz)\r\n"
    "* 5 EXISTS\r\n"
    "A6 OK fetched\r\n";

static void t_oldest_consumer_gets_it(struct unit_ctx *u)
{
	session(u, send_mixed, 5, mixed_transcript,
	        "E:EXISTS done2 E:UIDVALIDITY W:lit5=hello E:FETCH done3 F:lit3=abc/F F:FETCH "
	        "done5 F:lit2=xy/F F:FETCH done4 W:lit1=z W:FETCH W:EXISTS done6 ",
	        0);
}

/* A consumer returning IMAP_PARSE_PAUSE stops input after that response
 * until imap_client_kick; nothing is lost or reordered. */
static void t_consumer_pauses(struct unit_ctx *u)
{
	session(u, send_mixed, 5, mixed_transcript,
	        "E:EXISTS done2 E:UIDVALIDITY W:lit5=hello E:FETCH pause resume done3 F:lit3=abc/F "
	        "F:FETCH done5 F:lit2=xy/F F:FETCH done4 W:lit1=z W:FETCH W:EXISTS done6 ",
	        1);
}

/* Without consumers the client-wide callbacks get everything, as before. */
static void send_plain(struct rt *t)
{
	send_cmd(t, "EXAMINE INBOX", NULL, "-");
	send_cmd(t, "UID FETCH 1 (UID BODY.PEEK[])", NULL, "-");
}

static void t_no_consumer_client_wide(struct unit_ctx *u)
{
	session(u, send_plain, 2,
	        "* 1 EXISTS\r\n* OK [UIDNEXT 2] ok\r\nA2 OK done\r\n"
	        "* 1 FETCH (UID 1 BODY[] {4}\r\nbody)\r\nA3 OK done\r\n",
	        "W:EXISTS W:UIDNEXT done2 W:lit4=body W:FETCH done3 ", 0);
}

/* Two consumers pipelined behind each other (EXAMINE; FETCH, as settle and
 * the rename probe send them): each gets its own command's data. */
static void send_two(struct rt *t)
{
	send_cmd(t, "EXAMINE a", &untagged_only, "E");
	send_cmd(t, "UID FETCH 1 (UID BODY.PEEK[])", &full, "F");
	send_cmd(t, "EXAMINE b", &untagged_only, "S");
}

static void t_pipeline_in_order(struct unit_ctx *u)
{
	session(u, send_two, 3,
	        "* OK [UIDVALIDITY 1] a\r\nA2 OK a\r\n"
	        "* 1 FETCH (UID 1 BODY[] {2}\r\nhi)\r\nA3 OK f\r\n"
	        "* OK [UIDVALIDITY 2] b\r\n* 0 EXISTS\r\nA4 OK b\r\n",
	        "E:UIDVALIDITY done2 F:lit2=hi/F F:FETCH done3 S:UIDVALIDITY S:EXISTS done4 ", 0);
}

/* The login pipelined: the commands go before its answer (the server
 * answers nothing until it has them all), their data after it. */
static void t_login_pipelined(struct unit_ctx *u)
{
	session(u, send_two, 3,
	        "* OK [UIDVALIDITY 1] a\r\nA2 OK a\r\n"
	        "* 1 FETCH (UID 1 BODY[] {2}\r\nhi)\r\nA3 OK f\r\n"
	        "* OK [UIDVALIDITY 2] b\r\n* 0 EXISTS\r\nA4 OK b\r\n",
	        "early in E:UIDVALIDITY done2 F:lit2=hi/F F:FETCH done3 S:UIDVALIDITY S:EXISTS done4 ",
	        F_PIPE);
}

/* Refused: a login failure; the commands behind it get no callback. */
static void t_login_pipelined_refused(struct unit_ctx *u)
{
	session(u, send_two, 3, "", "early ", F_PIPE | F_REFUSE);
}

int main(void)
{
	struct unit_ctx u = {0};

	signal(SIGPIPE, SIG_IGN);
	UNIT_RUN(&u, t_oldest_consumer_gets_it);
	UNIT_RUN(&u, t_consumer_pauses);
	UNIT_RUN(&u, t_no_consumer_client_wide);
	UNIT_RUN(&u, t_pipeline_in_order);
	UNIT_RUN(&u, t_login_pipelined);
	UNIT_RUN(&u, t_login_pipelined_refused);
	return unit_done(&u);
}
