/*
 * corpus — a seeded, deterministic generator of realistic, messy mailboxes,
 * written straight into a Dovecot Maildir++ tree (not through any IMAP
 * client, so loading is never what a benchmark measures).
 *
 *   corpus --out MAILDIR --profile tiny|demo|crash|quick|full [--seed N]
 *   corpus --out MAILDIR --big-mb M [--seed N]       one message of M MiB
 *   --messages N: a profile's folders and shapes with about N messages
 *   (the scaling curves of make bench-full)
 *
 * Profiles: tiny (~150 messages, ~2 MB, 4 folders incl. nested and
 * non-ASCII, one 1 MB message) for tests; demo (~2,500, ~25 MB, 6 folders);
 * crash (~5,200 small ones, 3 folders) for the crash test; quick (~6,000,
 * ~65 MB, 7 folders, one 30 MB message) and full (100,000 in 20 folders)
 * for the benchmark.
 *
 * Real mail's shapes: most messages 2-50 KB, a tail of multi-MB
 * attachments; text/plain in 8bit and quoted-printable, multipart/alternative
 * and multipart/mixed with base64 attachments, RFC 2047 and raw 8-bit
 * headers, folded headers, threads (In-Reply-To, References). And its
 * hostile parts, every kind present in every profile (the first messages of
 * each folder cycle through them): bare CRs, lines over 998 characters in
 * bodies and headers, Message-IDs that do not parse or are missing, Date
 * headers decades off or missing, raw Latin-1 and raw UTF-8 headers, a
 * message without a final CRLF, an empty body, an INTERNALDATE from the
 * nineties, the same message in two folders.
 *
 * Flags and keywords ride in the file names (":2," then D F R S T, then
 * keyword letters a-z in order); each folder's dovecot-keywords lists the
 * keywords in its own order, as a real Dovecot's folders do, so a checker
 * must resolve letters per folder. A few INBOX messages sit unseen in new/.
 * INTERNALDATE is the file's mtime. Files are CRLF (Dovecot serves CRLF;
 * bare CRs inside lines are deliberate). The caller chowns the tree to the
 * mail user (scripts/dovecot.sh fixperms).
 *
 * Not for: anything Dovecot would have to be told about (no index files are
 * written; Dovecot builds them on first access).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N(a) (unsigned)(sizeof(a) / sizeof(a[0]))

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 2685821657736338717ULL;
}

static unsigned rn(struct rng *r, unsigned n)
{
	return n ? (unsigned)(rnd(r) % n) : 0;
}

struct buf {
	char *p;
	size_t n, cap;
};

static void grow(struct buf *b, size_t n)
{
	if (b->n + n <= b->cap)
		return;
	while (b->n + n > b->cap)
		b->cap = b->cap ? b->cap * 2 : 1 << 16;
	if (!(b->p = realloc(b->p, b->cap))) {
		fprintf(stderr, "corpus: out of memory\n");
		exit(2);
	}
}

static void put(struct buf *b, const void *s, size_t n)
{
	grow(b, n);
	memcpy(b->p + b->n, s, n);
	b->n += n;
}

static void puts_(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

static void putf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct buf *b, const char *fmt, ...)
{
	char tmp[4096];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(b, tmp, (size_t)(n < (int)sizeof(tmp) ? n : (int)sizeof(tmp) - 1));
}

static const char *const first[] = {"Anna",   "Bernd", "Chloé", "Dmitri", "Eva",  "François",
                                    "Grete",  "Hiro",  "Ines",  "Jürgen", "Kofi", "Lena",
                                    "Mårten", "Nadia", "Oskar", "Priya"};
static const char *const last[] = {"Müller", "Schmidt", "Dubois", "Ivanov", "Tanaka",
                                   "García", "Nowak",   "Okafor", "Rossi",  "Svensson"};
static const char *const words[] = {
    "the",      "meeting",  "budget",   "report",  "server",  "migration", "invoice",  "please",
    "review",   "attached", "draft",    "quarter", "release", "tomorrow",  "deadline", "update",
    "team",     "customer", "contract", "issue",   "fixed",   "broken",    "mailbox",  "archive",
    "schedule", "Grüße",    "merci",    "danke",   "naïve",   "café",      "résumé",   "über"};
static const char *const topics[] = {
    "Quarterly budget",   "Server migration plan", "Re: lunch?",       "Invoice 2024-113",
    "Release 3.2 notes",  "Urlaubsplanung",        "Réunion de lundi", "Contract draft v4",
    "Build broken again", "Photos from the trip"};
static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const wdays[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};

static void words_line(struct rng *r, struct buf *b, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		puts_(b, words[rn(r, N(words))]);
		puts_(b, i + 1 < n ? " " : "");
	}
}

/* Text lines until the buffer reaches target bytes. */
static void text_body(struct rng *r, struct buf *b, size_t target, int qp)
{
	while (b->n < target) {
		unsigned n = 4 + rn(r, 12);

		if (qp && rn(r, 4) == 0)
			puts_(b, "Gr=C3=BC=C3=9Fe und Caf=C3=A9 =\r\n");
		words_line(r, b, n);
		puts_(b, "\r\n");
		if (rn(r, 9) == 0)
			puts_(b, "\r\n");
	}
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64-looking lines (76 characters + CRLF) until about out bytes. */
static void base64_body(struct rng *r, struct buf *b, size_t out)
{
	size_t lines = out / 78 + 1;

	grow(b, lines * 78);
	for (size_t l = 0; l < lines; l++) {
		char *line = b->p + b->n;

		for (int i = 0; i < 76; i += 8) {
			uint64_t v = rnd(r);

			for (int j = 0; j < 8 && i + j < 76; j++)
				line[i + j] = b64[(v >> (6 * j)) & 63];
		}
		line[76] = '\r';
		line[77] = '\n';
		b->n += 78;
	}
}

struct profile {
	const char *name;
	unsigned messages;
	const char *const *folders;
	unsigned nfolders;
	unsigned big_mb;    /* one message this big, 0 = none */
	unsigned attach_pt; /* messages with a 1-2 MB attachment, per 10,000 */
	unsigned small;     /* 1: only small messages (the crash test wants many) */
};

/* Folder names as Maildir++ stores them: modified UTF-7, '.' for hierarchy. */
static const char *const f_tiny[] = {"", "Sent", "Lists.dev", "Entw&APw-rfe"};
static const char *const f_demo[] = {"",          "Sent",     "Archive", "Archive.2019",
                                     "Lists.dev", "Re&AOc-us"};
static const char *const f_crash[] = {"", "Lists", "Lists.Debian"};
static const char *const f_quick[] = {
    "", "Sent", "Drafts", "Archive", "Archive.2019", "Lists.dev", "Entw&APw-rfe"};
static const char *const f_full[] = {"",
                                     "Sent",
                                     "Drafts",
                                     "Trash",
                                     "Junk",
                                     "Archive",
                                     "Archive.2015",
                                     "Archive.2016",
                                     "Archive.2017",
                                     "Archive.2018",
                                     "Archive.2019",
                                     "Archive.2020",
                                     "Lists",
                                     "Lists.dev",
                                     "Lists.announce",
                                     "Projects",
                                     "Projects.Alpha",
                                     "Projects.Beta",
                                     "Entw&APw-rfe",
                                     "Re&AOc-us"};

static const struct profile profiles[] = {
    {"tiny", 150, f_tiny, N(f_tiny), 1, 0, 0},      {"demo", 2500, f_demo, N(f_demo), 0, 36, 0},
    {"crash", 5200, f_crash, N(f_crash), 0, 0, 1},  {"quick", 6000, f_quick, N(f_quick), 30, 10, 0},
    {"full", 100000, f_full, N(f_full), 30, 10, 0},
};

/* Keywords, per mille of messages carrying each. */
static const char *const keywords[] = {"$Forwarded", "$Junk", "$NotJunk", "Work", "Project-X"};
static const unsigned keyword_pm[] = {50, 20, 30, 90, 60};

/* The hostile kinds; the first messages of every folder cycle through them. */
enum {
	H_NONE,
	H_BAD_MSGID, /* Message-ID no parser accepts */
	H_NO_MSGID,
	H_DATE_1970, /* Date decades off, both ways */
	H_DATE_2089,
	H_NO_DATE,
	H_LATIN1_HDR, /* raw 8-bit Latin-1 in From */
	H_UTF8_HDR,   /* raw UTF-8 Subject, no RFC 2047 */
	H_BARE_CR,    /* bare CRs inside lines and before a line end */
	H_LONG_LINE,  /* a body line of 1,500 characters */
	H_LONG_HDR,   /* a References header of 1,200 characters on one line */
	H_EMPTY_BODY, /* headers, the blank line, nothing else */
	H_NO_FINAL_CRLF,
	H_OLD_INTERNALDATE, /* INTERNALDATE in 1998 */
	H_KINDS
};

struct meta {
	int64_t internaldate;
	unsigned hostile;
};

/* One message into b. */
static void message(struct rng *r, struct buf *b, unsigned id, size_t attach, size_t size_hint,
                    unsigned hostile, int64_t internaldate)
{
	unsigned kind = rn(r, 10);
	int64_t year = 2008 + rn(r, 17);
	const char *f = first[rn(r, N(first))], *l = last[rn(r, N(last))];
	char boundary[40];

	/* the body-level hostile kinds need a text/plain body */
	if (hostile == H_BARE_CR || hostile == H_LONG_LINE || hostile == H_EMPTY_BODY ||
	    hostile == H_NO_FINAL_CRLF)
		kind = 0;
	if (attach)
		kind = 9;
	snprintf(boundary, sizeof(boundary), "=_mf_%u_%llx", id, (unsigned long long)rnd(r));
	putf(b, "Return-Path: <%c.sender@example.org>\r\n", f[0]);
	putf(b,
	     "Received: from mx%u.example.net (mx%u.example.net [192.0.2.%u])\r\n"
	     "\tby mail.example.org (Postfix) with ESMTPS id %llX\r\n"
	     "\tfor <you@example.org>; %s, %u %s %lld %02u:%02u:%02u +0000\r\n",
	     rn(r, 9), rn(r, 9), 1 + rn(r, 250), (unsigned long long)rnd(r), wdays[rn(r, 7)],
	     1 + rn(r, 28), months[rn(r, 12)], (long long)(1970 + internaldate / 31556952),
	     rn(r, 24), rn(r, 60), rn(r, 60));
	if (hostile == H_BAD_MSGID)
		putf(b, "Message-ID: <broken id %u@@>\r\n", id);
	else if (hostile != H_NO_MSGID)
		putf(b, "Message-ID: <%u.%llx@mail.example.org>\r\n", id,
		     (unsigned long long)rnd(r));
	if (hostile == H_DATE_1970)
		puts_(b, "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n");
	else if (hostile == H_DATE_2089)
		puts_(b, "Date: Sat, 12 Aug 2089 14:00:00 -0700\r\n");
	else if (hostile != H_NO_DATE)
		putf(b, "Date: %s, %u %s %lld %02u:%02u:%02u +0200\r\n", wdays[rn(r, 7)],
		     1 + rn(r, 28), months[rn(r, 12)], (long long)year, rn(r, 24), rn(r, 60),
		     rn(r, 60));
	if (hostile == H_LATIN1_HDR)
		putf(b, "From: \xc9milie %s <emilie@example.org>\r\n", l);
	else
		putf(b, "From: \"%s %s\" <%c.user@example.org>\r\n", f, l, f[0]);
	puts_(b, "To: You <you@example.org>,\r\n\tTeam <team@example.org>\r\n");
	if (hostile == H_UTF8_HDR)
		putf(b, "Subject: Grüße aus Köln, ça va? %u\r\n", id);
	else if (rn(r, 3) == 0)
		putf(b, "Subject: =?UTF-8?B?w5xiZXJzaWNodDog?= %s %u\r\n", topics[rn(r, N(topics))],
		     id);
	else if (rn(r, 4) == 0)
		putf(b, "Subject: %s #%u with a long subject that is folded over\r\n two lines\r\n",
		     topics[rn(r, N(topics))], id);
	else
		putf(b, "Subject: %s %u\r\n", topics[rn(r, N(topics))], id);
	if (hostile == H_LONG_HDR) {
		puts_(b, "References:");
		for (unsigned i = 0; i < 40; i++)
			putf(b, " <%u.%u.thread@mail.example.org>", id, i);
		puts_(b, "\r\n");
	} else if (id > 10 && rn(r, 3) == 0) {
		putf(b,
		     "In-Reply-To: <%u.thread@mail.example.org>\r\nReferences: <%u.thread@mail."
		     "example.org>\r\n <%u.thread@mail.example.org>\r\n",
		     id - 1, id - 3, id - 1);
	}
	puts_(b, "MIME-Version: 1.0\r\n");
	if (kind >= 8) {
		size_t start = b->n, part = attach ? attach : size_hint;

		putf(b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", boundary);
		putf(b,
		     "This is a multi-part message in MIME format.\r\n\r\n--%s\r\n"
		     "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
		     "8bit\r\n\r\n",
		     boundary);
		text_body(r, b, b->n + 400 + rn(r, 800), 0);
		putf(b,
		     "\r\n--%s\r\nContent-Type: application/pdf; name=\"report-%u.pdf\"\r\n"
		     "Content-Disposition: attachment; filename=\"report-%u.pdf\"\r\n"
		     "Content-Transfer-Encoding: base64\r\n\r\n",
		     boundary, id, id);
		base64_body(r, b, part > b->n - start + 200 ? part - (b->n - start) - 200 : 78);
		putf(b, "\r\n--%s--\r\n", boundary);
	} else if (kind >= 5) {
		size_t start = b->n;

		putf(b,
		     "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n--%s\r\n"
		     "Content-Type: text/plain; charset=utf-8\r\n"
		     "Content-Transfer-Encoding: quoted-printable\r\n\r\n",
		     boundary, boundary);
		text_body(r, b, start + size_hint / 3, 1);
		putf(b, "\r\n--%s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>",
		     boundary);
		text_body(r, b, start + size_hint, 0);
		putf(b, "</p></body></html>\r\n--%s--\r\n", boundary);
	} else {
		size_t start = b->n;

		puts_(b, "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
		         "8bit\r\n\r\n");
		if (hostile == H_EMPTY_BODY)
			return;
		if (hostile == H_BARE_CR) {
			puts_(b,
			      "a line with a bare CR\rin the middle, and CRs before the end\r\r\n");
			puts_(b, "three of them here\r\r\r\n\rand one at a line start\r\n");
		} else if (hostile == H_LONG_LINE) {
			grow(b, 1502);
			memset(b->p + b->n, 'x', 1500);
			b->n += 1500;
			puts_(b, "\r\n");
		}
		text_body(r, b, start + size_hint, 0);
		if (hostile == H_NO_FINAL_CRLF)
			b->n -= 2;
	}
}

static int mkdirs(const char *p)
{
	char tmp[4096];

	snprintf(tmp, sizeof(tmp), "%s", p);
	for (char *s = tmp + 1; *s; s++)
		if (*s == '/') {
			*s = '\0';
			if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
				return -1;
			*s = '/';
		}
	return mkdir(tmp, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

/* Creates the folder's cur/new/tmp and its dovecot-keywords, whose order
 * depends on the folder (rot): letter 'a' + i is kw_order[i]. */
static void folder_dirs(const char *root, const char *folder, unsigned rot, char *dir, size_t cap,
                        unsigned kw_order[])
{
	static const char *const subs[] = {"cur", "new", "tmp"};
	char p[4200];
	FILE *f;

	snprintf(dir, cap, "%s%s%s", root, *folder ? "/." : "", folder);
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%.4000s/%s", dir, subs[i]);
		if (mkdirs(p) < 0) {
			fprintf(stderr, "corpus: mkdir %s: %s\n", p, strerror(errno));
			exit(2);
		}
	}
	if (*folder) {
		/* Maildir++ marks subfolders with an empty maildirfolder file */
		snprintf(p, sizeof(p), "%.4000s/maildirfolder", dir);
		if ((f = fopen(p, "w")))
			fclose(f);
	}
	snprintf(p, sizeof(p), "%.4000s/dovecot-keywords", dir);
	if (!(f = fopen(p, "w"))) {
		fprintf(stderr, "corpus: %s: %s\n", p, strerror(errno));
		exit(2);
	}
	for (unsigned i = 0; i < N(keywords); i++) {
		kw_order[i] = (i + rot) % N(keywords);
		fprintf(f, "%u %s\n", i, keywords[kw_order[i]]);
	}
	if (fclose(f) != 0) {
		fprintf(stderr, "corpus: %s: %s\n", p, strerror(errno));
		exit(2);
	}
}

static void write_msg(const char *dir, const char *sub, unsigned id, unsigned seed,
                      const char *flags, const struct buf *b, int64_t t)
{
	char p[4200];
	struct timespec ts[2];
	int fd;

	/* new/ files carry no info suffix (the MDA has not seen them yet) */
	if (!strcmp(sub, "new"))
		snprintf(p, sizeof(p), "%.4000s/new/%lld.M%uP%u.corpus,S=%zu", dir, (long long)t,
		         id, seed, b->n);
	else
		snprintf(p, sizeof(p), "%.4000s/cur/%lld.M%uP%u.corpus,S=%zu:2,%s", dir,
		         (long long)t, id, seed, b->n, flags);
	ts[0].tv_sec = ts[1].tv_sec = (time_t)t;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	if ((fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
	    write(fd, b->p, b->n) != (ssize_t)b->n || futimens(fd, ts) < 0 || close(fd) < 0) {
		fprintf(stderr, "corpus: %s: %s\n", p, strerror(errno));
		exit(2);
	}
}

/* The info suffix: system flags D F R S T, then keyword letters, sorted
 * (Dovecot writes them in ASCII order). kw_order maps letter → keyword. */
static void flags_pick(struct rng *r, const unsigned kw_order[], char *out)
{
	size_t n = 0;
	unsigned v = rn(r, 1000);

	if (v % 31 == 0)
		out[n++] = 'D';
	if (rn(r, 100) < 8)
		out[n++] = 'F';
	if (rn(r, 100) < 14)
		out[n++] = 'R';
	if (rn(r, 100) < 72)
		out[n++] = 'S';
	for (unsigned i = 0; i < N(keywords); i++)
		if (rn(r, 1000) < keyword_pm[kw_order[i]])
			out[n++] = (char)('a' + i);
	out[n] = '\0';
}

/* Body size before headers: most mail 2-50 KB with a heavy small end. */
static size_t size_pick(struct rng *r, int small)
{
	unsigned s = rn(r, 1000);

	if (small || s < 620)
		return 1200 + rn(r, 1800);
	if (s < 950)
		return 3000 + rn(r, 4000);
	if (s < 996)
		return 7000 + rn(r, 20000);
	return 30000 + rn(r, 100000);
}

int main(int argc, char **argv)
{
	const char *out = NULL, *pname = NULL;
	unsigned seed = 1, big = 0, kw_order[N(keywords)];
	const struct profile *pr = NULL;
	struct profile scaled;
	unsigned nmsg = 0;
	struct rng r;
	struct buf b = {0};
	uint64_t bytes = 0, count = 0;
	int64_t now = 1767225600; /* a fixed "now" (2026-01-01): deterministic */
	char dir[4200], prev_dir[4200] = "", sp[4200];
	unsigned prev_kw[N(keywords)];
	FILE *subs;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--out") && i + 1 < argc)
			out = argv[++i];
		else if (!strcmp(argv[i], "--profile") && i + 1 < argc)
			pname = argv[++i];
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--messages") && i + 1 < argc)
			nmsg = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--big-mb") && i + 1 < argc)
			big = (unsigned)strtoul(argv[++i], NULL, 10);
		else
			out = NULL, i = argc;
	}
	for (unsigned i = 0; pname && i < N(profiles); i++)
		if (!strcmp(profiles[i].name, pname))
			pr = &profiles[i];
	if (!out || (!pr && !big) || (pname && !pr)) {
		fprintf(stderr, "usage: corpus --out MAILDIR (--profile tiny|demo|crash|quick|full "
		                "[--messages N] | --big-mb M) [--seed N]\n");
		return 2;
	}
	if (pr && nmsg) { /* the profile's shapes, N messages (scaling curves) */
		scaled = *pr;
		scaled.messages = nmsg;
		pr = &scaled;
	}
	r.s = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)seed * 0xD1B54A32D192ED03ULL);
	if (!r.s)
		r.s = 1;
	if (big) {
		if (mkdirs(out) < 0) {
			fprintf(stderr, "corpus: %s: %s\n", out, strerror(errno));
			return 2;
		}
		folder_dirs(out, "", 0, dir, sizeof(dir), kw_order);
		message(&r, &b, 1, ((size_t)big << 20) - 1500, 0, H_NONE, now - 86400);
		write_msg(dir, "cur", 1, seed, "S", &b, now - 86400);
		printf("corpus: 1 message, %zu bytes, 1 folder\n", b.n);
		free(b.p);
		return 0;
	}
	snprintf(sp, sizeof(sp), "%s/subscriptions", out);
	if (mkdirs(out) < 0 || !(subs = fopen(sp, "w"))) {
		fprintf(stderr, "corpus: %s: %s\n", out, strerror(errno));
		return 2;
	}
	for (unsigned fi = 0; fi < pr->nfolders; fi++) {
		const char *folder = pr->folders[fi];
		/* INBOX takes the largest share, as in real accounts */
		unsigned n =
		    fi == 0 ? pr->messages * 2 / 5 : pr->messages * 3 / 5 / (pr->nfolders - 1);

		folder_dirs(out, folder, fi, dir, sizeof(dir), kw_order);
		if (*folder)
			fprintf(subs, "%s\n", folder);
		for (unsigned k = 0; k < n; k++) {
			unsigned id = (unsigned)count + 1, hostile;
			size_t size = size_pick(&r, pr->small), attach = 0;
			int64_t t = now - 3600 - (int64_t)rn(&r, 15u * 365 * 86400);
			char flags[40];
			const char *sub = "cur";

			/* every hostile kind in every folder's first messages, then 1 in 4 */
			hostile = k < H_KINDS - 1  ? 1 + (k + fi) % (H_KINDS - 1)
			          : rn(&r, 4) == 0 ? 1 + rn(&r, H_KINDS - 1)
			                           : H_NONE;
			if (hostile == H_OLD_INTERNALDATE)
				t = 883612800 + (int64_t)rn(&r, 365 * 86400); /* 1998 */
			/* attachments evenly spread, so small profiles get their share */
			if ((count + 5000) * pr->attach_pt / 10000 !=
			    (count + 4999) * pr->attach_pt / 10000)
				attach = ((size_t)1 << 20) + rn(&r, 1u << 20);
			if (pr->big_mb && count == pr->messages / 3)
				attach = ((size_t)pr->big_mb << 20) - 1500;
			b.n = 0;
			message(&r, &b, id, attach, size, hostile, t);
			flags_pick(&r, kw_order, flags);
			/* a little fresh mail in INBOX/new, unseen and unflagged */
			if (fi == 0 && k % 97 == 50)
				sub = "new", t = now - 600 + k;
			write_msg(dir, sub, id, seed, flags, &b, t);
			/* the same message in two folders, as after a copy: the
			 * other folder has its own keyword letters */
			if (prev_dir[0] && (k == 3 || rn(&r, 200) == 0)) {
				char f2[40];

				flags_pick(&r, prev_kw, f2);
				write_msg(prev_dir, "cur", id + 1000000, seed, f2, &b, t - 7200);
				bytes += b.n;
				count++;
			}
			bytes += b.n;
			count++;
		}
		snprintf(prev_dir, sizeof(prev_dir), "%s", dir);
		memcpy(prev_kw, kw_order, sizeof(prev_kw));
	}
	if (fclose(subs) != 0) {
		fprintf(stderr, "corpus: %s: %s\n", sp, strerror(errno));
		return 2;
	}
	printf("corpus: %llu messages, %llu bytes, %u folders\n", (unsigned long long)count,
	       (unsigned long long)bytes, pr->nfolders);
	free(b.p);
	return 0;
}
