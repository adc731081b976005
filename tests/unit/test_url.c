/* Unit tests for url: the forms the command line takes, and the ones it
 * refuses (each found by fuzz_url is kept here). */
#include "engine/cli/url.h"
#include "tests/unit/unit.h"

static void test_good(struct unit_ctx *u)
{
	struct url a;
	char why[256];

	UNIT_CHECK(u,
	           url_parse("imap://src@127.0.0.1:14300?starttls=no", &a, why, sizeof(why)) == 0);
	UNIT_CHECK(u, !strcmp(a.scheme, "imap") && !strcmp(a.user, "src") &&
	                  !strcmp(a.host, "127.0.0.1") && a.port == 14300 && a.starttls_no);
	UNIT_CHECK(u, url_parse("IMAPS://alice%40example.org:p%3Aw@[::1]/", &a, why, sizeof(why)) ==
	                  0);
	UNIT_CHECK(u, !strcmp(a.scheme, "imaps") && !strcmp(a.user, "alice@example.org") &&
	                  a.has_password && !strcmp(a.password, "p:w") && !strcmp(a.host, "::1") &&
	                  a.port == 993 && !a.starttls_no);
	UNIT_CHECK(u, url_parse("imap://u@h", &a, why, sizeof(why)) == 0 && a.port == 143);
	UNIT_CHECK(u, url_parse("pop3s://u@h", &a, why, sizeof(why)) == 0 && a.port == 995 &&
	                  a.kind == URL_POP3 && a.tls);
	UNIT_CHECK(u, url_parse("smtp://mx.example.org?rcpt=bob%40example.org", &a, why,
	                        sizeof(why)) == 0 &&
	                  a.kind == URL_SMTP && a.port == 25 && !a.user[0] &&
	                  !strcmp(a.rcpt, "bob@example.org"));
	UNIT_CHECK(u, url_parse("smtps://relay%40x:pw@h:2465/?rcpt=a@b", &a, why, sizeof(why)) == 0 &&
	                  a.tls && a.port == 2465 && !strcmp(a.user, "relay@x") &&
	                  a.has_password && !strcmp(a.rcpt, "a@b"));
	UNIT_CHECK(u, url_parse("lmtp://127.0.0.1:2424?starttls=no&rcpt=dst", &a, why,
	                        sizeof(why)) == 0 &&
	                  a.kind == URL_LMTP && a.port == 2424 && a.starttls_no &&
	                  !strcmp(a.rcpt, "dst") && !a.path[0]);
	UNIT_CHECK(u, url_parse("lmtp:///run/dovecot/lmtp?rcpt=dst", &a, why, sizeof(why)) == 0 &&
	                  !strcmp(a.path, "/run/dovecot/lmtp") && a.port == 0 &&
	                  !strcmp(a.host, "localhost") && !strcmp(a.rcpt, "dst"));
}

static void test_bad(struct unit_ctx *u)
{
	static const char *const bad[] = {
	    "imap://u@[]:143", /* fuzz_url: an empty IPv6 literal was taken as host "" */
	    "imap://u@[]",     "imap://u@",        "imap://@h",    "pop3://h",
	    "imap://u@h:0",    "imap://u@h:65536", "imap://u@h:x", "imaps://u@h?starttls=no",
	    "imap://u%zz@h",   "imap://u%00@h",    "imap://u@h?x", "imap//u@h",
	    "smtp://h",        "smtp://h?rcpt=",   "lmtp:///?rcpt=a@b", "lmtp:///s",
	    "smtps://h?rcpt=a@b&starttls=no",      "imap://u@h?rcpt=a@b",
	    "smtp://h?rcpt=a@b&rcpt=c@d",          "lmtp:///s?rcpt=a@b&starttls=no",
	    "ftp://u@h",
	};
	struct url a;
	char why[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		UNIT_CHECKF(u, url_parse(bad[i], &a, why, sizeof(why)) < 0 && why[0],
		            "%s accepted (host \"%s\")", bad[i], a.host);
	}
}

static void test_no_password_in_reason(struct unit_ctx *u)
{
	struct url a;
	char why[256];

	UNIT_CHECK(u, url_parse("imap://u:sekrit99@h:99999", &a, why, sizeof(why)) < 0);
	UNIT_CHECK(u, !strstr(why, "sekrit99"));
	UNIT_CHECK(u, url_parse("imap://u:sekrit99@h:1:2", &a, why, sizeof(why)) < 0);
	UNIT_CHECK(u, !strstr(why, "sekrit99"));
}

/* What the command line shows of a URL it refuses (cli's error line). */
static void test_redact(struct unit_ctx *u)
{
	static const char *const in[][2] = {
		{"imap://u:sekrit99@h:99999", "imap://u:***@h:99999"},
		{"imaps://a%40b:p@ss:w@host/x?y", "imaps://a%40b:***@host/x?y"},
		{"imap://u@h:143", "imap://u@h:143"},
		{"imap://h:143", "imap://h:143"},
		{"nonsense", "nonsense"},
	};
	char out[128];

	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		url_redact(in[i][0], out, sizeof(out));
		UNIT_CHECKF(u, !strcmp(out, in[i][1]), "%s shown as %s", in[i][0], out);
	}
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, test_good);
	UNIT_RUN(&u, test_bad);
	UNIT_RUN(&u, test_no_password_in_reason);
	UNIT_RUN(&u, test_redact);
	return unit_done(&u);
}
