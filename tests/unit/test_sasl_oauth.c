/*
 * test_sasl_oauth — the OAuth2 SASL messages (protocols/sasl_oauth), the
 * server's error challenge, and the token sources (engine/cli/oauth_token):
 * a file re-read when it changes, a command run at first use, after a
 * refusal and after a lost connection, with bounds and clear failures.
 */
#include "protocols/sasl_oauth.h"
#include "engine/cli/oauth_token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "tests/unit/unit.h"

/* Decodes what an encoder wrote and compares with the expected bytes. */
static int decodes_to(const char *b64, const char *want, size_t wn)
{
	unsigned char buf[20000];
	ssize_t n = sasl_b64_decode(b64, strlen(b64), buf, sizeof(buf));

	return n == (ssize_t)wn && !memcmp(buf, want, wn);
}

static void t_xoauth2(struct unit_ctx *u)
{
	char out[SASL_OAUTH_B64_MAX];
	const char want[] = "user=someuser@example.com\001auth=Bearer "
	                    "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\001\001";
	ssize_t n = sasl_xoauth2_encode(out, sizeof(out), "someuser@example.com",
	                                "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg");

	UNIT_CHECKF(u, n > 0 && (size_t)n == strlen(out), "n=%zd", n);
	/* Google's documented example, base64 of the message above */
	UNIT_CHECK(
	    u,
	    !strcmp(out,
	            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52"
	            "YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="));
	UNIT_CHECK(u, decodes_to(out, want, sizeof(want) - 1));
}

static void t_oauthbearer(struct unit_ctx *u)
{
	char out[SASL_OAUTH_B64_MAX];
	/* RFC 7628 §4.1's example, and a user needing RFC 5801 escapes */
	const char want[] = "n,a=user@example.com,\001host=server.example.com\001port=143\001"
	                    "auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\001\001";
	const char want2[] = "n,a=a=3Db=2Cc,\001host=h\001port=993\001auth=Bearer t\001\001";

	UNIT_CHECK(u, sasl_oauthbearer_encode(out, sizeof(out), "user@example.com",
	                                      "server.example.com", 143,
	                                      "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==") > 0);
	UNIT_CHECK(u, decodes_to(out, want, sizeof(want) - 1));
	UNIT_CHECK(u, sasl_oauthbearer_encode(out, sizeof(out), "a=b,c", "h", 993, "t") > 0);
	UNIT_CHECK(u, decodes_to(out, want2, sizeof(want2) - 1));
}

static void t_refused_fields(struct unit_ctx *u)
{
	char out[SASL_OAUTH_B64_MAX], big[SASL_OAUTH_TOKEN_MAX + 2];

	UNIT_CHECK(u, sasl_xoauth2_encode(out, sizeof(out), "u", "to ken") == -EINVAL && !out[0]);
	UNIT_CHECK(u, sasl_xoauth2_encode(out, sizeof(out), "u", "tok\001x") == -EINVAL);
	UNIT_CHECK(u, sasl_xoauth2_encode(out, sizeof(out), "u", "") == -EINVAL);
	UNIT_CHECK(u, sasl_xoauth2_encode(out, sizeof(out), "u\001x", "tok") == -EINVAL);
	UNIT_CHECK(u, sasl_xoauth2_encode(out, sizeof(out), "", "tok") == -EINVAL);
	UNIT_CHECK(u, sasl_oauthbearer_encode(out, sizeof(out), "u", "h\001", 1, "tok") == -EINVAL);
	UNIT_CHECK(u, sasl_xoauth2_encode(out, 8, "u", "tok") == -ENOSPC && !out[0]);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	UNIT_CHECK(u, sasl_xoauth2_encode(out, sizeof(out), "u", big) == -EINVAL);
	big[SASL_OAUTH_TOKEN_MAX] = '\0';
	UNIT_CHECK(u, sasl_xoauth2_encode(out, sizeof(out), "u", big) > 0);
}

static void t_token_ok(struct unit_ctx *u)
{
	const char *good[] = {"a", "ya29.a0AfH6SM-_~+/x", "abc==", "eyJ0eXAi.eyJhdWQ.sig-_"};
	const char *bad[] = {"", "=", "a=b", "a b", "a\nb", "a\"", "ab\001", "é"};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		UNIT_CHECKF(u, sasl_oauth_token_ok(good[i], strlen(good[i])), "good %zu", i);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		UNIT_CHECKF(u, !sasl_oauth_token_ok(bad[i], strlen(bad[i])), "bad %zu", i);
}

static void t_b64_strict(struct unit_ctx *u)
{
	unsigned char b[16];

	UNIT_CHECK(u, sasl_b64_decode("TWFu", 4, b, sizeof(b)) == 3 && !memcmp(b, "Man", 3));
	UNIT_CHECK(u, sasl_b64_decode("TWE=", 4, b, sizeof(b)) == 2 && !memcmp(b, "Ma", 2));
	UNIT_CHECK(u, sasl_b64_decode("TQ==", 4, b, sizeof(b)) == 1 && b[0] == 'M');
	UNIT_CHECK(u, sasl_b64_decode("", 0, b, sizeof(b)) == 0);
	UNIT_CHECK(u, sasl_b64_decode("TWF", 3, b, sizeof(b)) == -EBADMSG);
	UNIT_CHECK(u, sasl_b64_decode("T===", 4, b, sizeof(b)) == -EBADMSG);
	UNIT_CHECK(u, sasl_b64_decode("TQ==TWFu", 8, b, sizeof(b)) == -EBADMSG);
	UNIT_CHECK(u, sasl_b64_decode("TW u", 4, b, sizeof(b)) == -EBADMSG);
	UNIT_CHECK(u, sasl_b64_decode("TWFuTWFu", 8, b, 4) == -ENOSPC);
}

static int parse(const char *json, struct sasl_oauth_err *e)
{
	char b64[8192];

	EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)json, (int)strlen(json));
	return sasl_oauth_error_parse(b64, strlen(b64), e);
}

static void t_error_challenge(struct unit_ctx *u)
{
	struct sasl_oauth_err e;
	/* what Dovecot 2.3 sends for XOAUTH2 (seen in t_oauth) */
	const char *dv = "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=";

	UNIT_CHECK(u, sasl_oauth_error_parse(dv, strlen(dv), &e) == 0);
	UNIT_CHECK(u, !strcmp(e.status, "401") && !strcmp(e.scope, "mail") &&
	                  !strcmp(e.schemes, "bearer"));
	UNIT_CHECK(
	    u, parse(" {\"status\" : \"invalid_token\",\n \"scope\":\"https://mail.google.com/\","
	             "\"openid-configuration\":\"https://x/.well-known\", \"n\":[1,{\"a\":null}]} ",
	             &e) == 0);
	UNIT_CHECK(u, !strcmp(e.status, "invalid_token") &&
	                  !strcmp(e.scope, "https://mail.google.com/"));
	UNIT_CHECK(u, parse("{\"status\":401}", &e) == 0 && !strcmp(e.status, "401"));
	/* unsafe or oversized values are left out, not cut or passed on */
	UNIT_CHECK(u, parse("{\"status\":\"a\\u001b[2Jb\",\"scope\":\"\xc3\xa9\"}", &e) == 0 &&
	                  !e.status[0] && !e.scope[0]);
	UNIT_CHECK(u,
	           parse("{\"status\":"
	                 "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
	                 &e) == 0 &&
	               !e.status[0]);
	/* the first of repeated keys counts */
	UNIT_CHECK(u, parse("{\"status\":\"one\",\"status\":\"two\"}", &e) == 0 &&
	                  !strcmp(e.status, "one"));
	UNIT_CHECK(u, parse("{}", &e) == 0 && !e.status[0]);
	const char *bad[] = {"",
	                     "[]",
	                     "{",
	                     "{\"a\"}",
	                     "{\"a\":}",
	                     "{\"a\":1,}",
	                     "{\"a\":1} x",
	                     "{\"a\":\"\n\"}",
	                     "{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}",
	                     "null"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		UNIT_CHECKF(u, parse(bad[i], &e) == -EBADMSG, "bad %zu", i);
		UNIT_CHECK(u, !e.status[0] && !e.scope[0]);
	}
	UNIT_CHECK(u, sasl_oauth_error_parse("not base64!", 11, &e) == -EBADMSG);
}

static char dir[64];
static struct loop L;

struct waited {
	struct imap_token_wait w; /* first */
	int called, rc;
	char msg[MF_ERR_MAX];
};

static void on_ready(struct imap_token_wait *w, int rc, const struct mf_error *err)
{
	struct waited *x = (struct waited *)w;

	x->called++;
	x->rc = rc;
	snprintf(x->msg, sizeof(x->msg), "%s", err ? err->msg : "");
}

/* oauth_token_get, waiting on the loop while a command runs (as a login
 * does): 0 or the error, the token in out. */
static int get(struct oauth_token *t, int refresh, unsigned *gen, char *out, struct mf_error *e)
{
	struct waited x = {.w.ready = on_ready};
	int rc = oauth_token_get(t, &L, refresh, gen, out, SASL_OAUTH_TOKEN_MAX + 1, &x.w, e);

	if (rc != -EINPROGRESS)
		return rc;
	if (loop_run(&L) < 0 || x.called != 1)
		return -9999;
	if (x.rc < 0) {
		mf_err_set(e, x.rc, "%s", x.msg);
		return x.rc;
	}
	return oauth_token_get(t, &L, 0, gen, out, SASL_OAUTH_TOKEN_MAX + 1, &x.w, e);
}

static void write_file(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");

	if (f) {
		fputs(s, f);
		fclose(f);
	}
	chmod(path, 0600);
}

static void t_token_file(struct unit_ctx *u)
{
	struct oauth_token t;
	struct mf_error e;
	char path[128], out[SASL_OAUTH_TOKEN_MAX + 1];
	unsigned gen = 0, g1;

	snprintf(path, sizeof(path), "%s/tok", dir);
	write_file(path, "tok.one\r\n");
	oauth_token_init(&t, "source", "u", path, NULL);
	UNIT_CHECK(u, get(&t, 0, &gen, out, &e) == 0 && !strcmp(out, "tok.one"));
	g1 = gen;
	/* unchanged: a refresh finds nothing newer */
	UNIT_CHECK(u, get(&t, 1, &gen, out, &e) == 0 && gen == g1);
	write_file(path, "tok.two-longer\n");
	UNIT_CHECK(u,
	           get(&t, 0, &gen, out, &e) == 0 && !strcmp(out, "tok.two-longer") && gen != g1);
	write_file(path, "two tokens\n");
	UNIT_CHECK(u, get(&t, 0, &gen, out, &e) == -EACCES);
	UNIT_CHECK(u, strstr(e.msg, "not one bearer token") && !strstr(e.msg, "two tokens"));
	write_file(path, "\n");
	UNIT_CHECK(u, get(&t, 0, &gen, out, &e) == -EACCES && strstr(e.msg, "is empty"));
	unlink(path);
	UNIT_CHECK(u, get(&t, 0, &gen, out, &e) == -EACCES && strstr(e.msg, "cannot read"));
	oauth_token_forget(&t);
}

static void t_token_cmd(struct unit_ctx *u)
{
	struct oauth_token t;
	struct mf_error e;
	char cmd[256], out[SASL_OAUTH_TOKEN_MAX + 1];
	unsigned gen = 0, g1;

	/* each run prints a new token: run-1, run-2, ... */
	snprintf(cmd, sizeof(cmd),
	         "n=$(cat %s/n 2>/dev/null || echo 0); n=$((n+1)); echo $n >%s/n; "
	         "echo \"run-$n.$MAILFERRY_OAUTH_USER\"",
	         dir, dir);
	oauth_token_init(&t, "source", "alice", NULL, cmd);
	UNIT_CHECK(u, get(&t, 0, &gen, out, &e) == 0 && !strcmp(out, "run-1.alice"));
	g1 = gen;
	/* other logins reuse it */
	UNIT_CHECK(u, get(&t, 0, &gen, out, &e) == 0 && gen == g1 && t.runs == 1);
	/* refused: run again */
	UNIT_CHECK(u, get(&t, 1, &gen, out, &e) == 0 && !strcmp(out, "run-2.alice"));
	/* a refusal of the older token: the newer one is already there */
	g1 = 1;
	UNIT_CHECK(u, get(&t, 1, &g1, out, &e) == 0 && t.runs == 2);
	/* a lost connection: the next login runs it again */
	t.src.lost(t.src.ctx);
	UNIT_CHECK(u, get(&t, 0, &gen, out, &e) == 0 && !strcmp(out, "run-3.alice"));
	oauth_token_forget(&t);

	oauth_token_init(&t, "source", "u", NULL, "echo secret-ish.tok; exit 7");
	UNIT_CHECK(u, get(&t, 0, &gen, out, &e) == -EACCES);
	UNIT_CHECK(u, strstr(e.msg, "exit status 7") && !strstr(e.msg, "secret-ish"));
	oauth_token_init(&t, "source", "u", NULL, "head -c 20000 /dev/zero | tr '\\0' a");
	UNIT_CHECK(u, get(&t, 0, &gen, out, &e) == -EACCES && strstr(e.msg, "printed too much"));
	oauth_token_init(&t, "source", "u", NULL, "echo '{\"access_token\":\"x\"}'");
	UNIT_CHECK(u, get(&t, 0, &gen, out, &e) == -EACCES &&
	                  strstr(e.msg, "not one bearer token") &&
	                  !strstr(e.msg, "access_token\""));
	oauth_token_init(&t, "source", "u", NULL, "sleep 5; echo late");
	t.timeout_s = 1;
	UNIT_CHECK(u,
	           get(&t, 0, &gen, out, &e) == -EACCES && strstr(e.msg, "did not finish in time"));
	oauth_token_init(&t, "source", "u", NULL, "kill -9 $$");
	UNIT_CHECK(u, get(&t, 0, &gen, out, &e) == -EACCES && strstr(e.msg, "signal 9"));
	oauth_token_forget(&t);
}

static int ticked;
static const struct waited *tick_watch;

/* Fires while the command sleeps: ticked = 1 only if its login still waits. */
static void on_tick(struct loop *l, struct loop_timer *tm)
{
	(void)l;
	(void)tm;
	ticked = tick_watch && !tick_watch->called;
}

/* The command runs on the loop: two logins share one run, a timer fires
 * while it sleeps, a cancelled login is not called, and a command still
 * running when the token goes away is killed and cleaned up. */
static void t_token_cmd_async(struct unit_ctx *u)
{
	struct oauth_token t;
	struct mf_error e;
	struct waited a = {.w.ready = on_ready}, b = {.w.ready = on_ready},
	              c = {.w.ready = on_ready};
	struct loop_timer tick;
	char out[SASL_OAUTH_TOKEN_MAX + 1];
	unsigned gen = 0;
	uint64_t t0;

	memset(&tick, 0, sizeof(tick));
	oauth_token_init(&t, "source", "u", NULL, "sleep 1; echo slow.tok");
	UNIT_CHECK(u, oauth_token_get(&t, &L, 0, &gen, out, sizeof(out), &a.w, &e) == -EINPROGRESS);
	UNIT_CHECK(u, oauth_token_get(&t, &L, 0, &gen, out, sizeof(out), &b.w, &e) == -EINPROGRESS);
	UNIT_CHECK(u, oauth_token_get(&t, &L, 0, &gen, out, sizeof(out), &c.w, &e) == -EINPROGRESS);
	t.src.cancel(t.src.ctx, &c.w);
	tick_watch = &a;
	loop_timer_start(&L, &tick, 100, on_tick);
	UNIT_CHECK(u, loop_run(&L) == 0);
	UNIT_CHECK(u, ticked == 1);
	UNIT_CHECK(u, a.called == 1 && a.rc == 0 && b.called == 1 && b.rc == 0 && c.called == 0);
	UNIT_CHECK(u, t.runs == 1);
	UNIT_CHECK(u, oauth_token_get(&t, &L, 0, &gen, out, sizeof(out), &a.w, &e) == 0 &&
	                  !strcmp(out, "slow.tok"));
	oauth_token_forget(&t);

	oauth_token_init(&t, "source", "u", NULL, "sleep 20; echo never");
	a.called = 0;
	UNIT_CHECK(u, oauth_token_get(&t, &L, 0, &gen, out, sizeof(out), &a.w, &e) == -EINPROGRESS);
	t.src.cancel(t.src.ctx, &a.w);
	oauth_token_forget(&t); /* kills it; the run frees itself */
	t0 = loop_now_ms(&L);
	UNIT_CHECK(u, loop_run(&L) == 0);
	UNIT_CHECKF(u, loop_now_ms(&L) - t0 < 5000, "waited %llu ms",
	            (unsigned long long)(loop_now_ms(&L) - t0));
	UNIT_CHECK(u, a.called == 0);
}

int main(void)
{
	struct unit_ctx u = {0};
	char cmd[128];

	if (loop_init(&L, 64) < 0)
		return 2;

	snprintf(dir, sizeof(dir), "/tmp/mf-unit-oauth.XXXXXX");
	if (!mkdtemp(dir))
		return 2;
	UNIT_RUN(&u, t_xoauth2);
	UNIT_RUN(&u, t_oauthbearer);
	UNIT_RUN(&u, t_refused_fields);
	UNIT_RUN(&u, t_token_ok);
	UNIT_RUN(&u, t_b64_strict);
	UNIT_RUN(&u, t_error_challenge);
	UNIT_RUN(&u, t_token_file);
	UNIT_RUN(&u, t_token_cmd);
	UNIT_RUN(&u, t_token_cmd_async);
	loop_free(&L);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return unit_done(&u);
}
