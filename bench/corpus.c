/*
 * corpus — a seeded, deterministic generator of realistic, messy mailboxes,
 * written straight into a Dovecot Maildir++ tree (not through any IMAP
 * client, so loading is never what a benchmark measures).
 *
 *   corpus --out MAILDIR --profile tiny|demo|crash|quick|full [--seed N]
 *   corpus --out MAILDIR --big-mb M          one message of M MB
 *
 * Real mail's shapes: most messages 2-50 KB, a tail of multi-MB
 * attachments; text/plain in 8bit and quoted-printable, multipart/alternative
 * and multipart/mixed with base64 attachments, RFC 2047 and raw 8-bit
 * headers, folded headers, threads (In-Reply-To, References). And its
 * hostile parts: bare CRs, lines over 998 characters, Message-IDs that do not
 * parse, Date headers decades off or missing, the same message in two
 * folders, a message without a final CRLF, an empty body. Flags and keywords
 * ride in the file names (keywords through dovecot-keywords), INTERNALDATE
 * is the file's mtime. The caller chowns the tree to the mail user.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

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

static void put(struct buf *b, const void *s, size_t n)
{
	if (b->n + n > b->cap) {
		while (b->n + n > b->cap)
			b->cap = b->cap ? b->cap * 2 : 1 << 16;
		if (!(b->p = realloc(b->p, b->cap))) {
			fprintf(stderr, "corpus: out of memory\n");
			exit(2);
		}
	}
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
	put(b, tmp, (size_t)(n < (int)sizeof(tmp) ? n : (int)sizeof(tmp) - 1));
}

static const char *const first[] = {"Anna", "Bernd", "Chloé", "Dmitri", "Eva", "François",
				    "Grete", "Hiro", "Ines", "Jürgen", "Kofi", "Lena",
				    "Mårten", "Nadia", "Oskar", "Priya"};
static const char *const last[] = {"Müller", "Schmidt", "Dubois", "Ivanov", "Tanaka",
				   "García", "Nowak", "Okafor", "Rossi", "Svensson"};
static const char *const words[] = {
	"the",	   "meeting",  "budget",  "report", "server", "migration", "invoice", "please",
	"review",  "attached", "draft",	  "quarter", "release", "tomorrow", "deadline", "update",
	"team",	   "customer", "contract", "issue",  "fixed",   "broken",    "mailbox", "archive",
	"schedule", "Grüße",   "merci",	  "danke",   "naïve",   "café",      "résumé",  "über"};
static const char *const topics[] = {"Quarterly budget", "Server migration plan", "Re: lunch?",
				     "Invoice 2024-113", "Release 3.2 notes", "Urlaubsplanung",
				     "Réunion de lundi", "Contract draft v4", "Build broken again",
				     "Photos from the trip"};

static void words_line(struct rng *r, struct buf *b, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		puts_(b, words[rn(r, sizeof(words) / sizeof(words[0]))]);
		puts_(b, i + 1 < n ? " " : "");
	}
}

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

static void base64_body(struct rng *r, struct buf *b, size_t raw)
{
	char line[78];

	for (size_t done = 0; done < raw; done += 57) {
		size_t k = 0;

		for (int i = 0; i < 76; i += 4) {
			uint64_t v = rnd(r);

			for (int j = 0; j < 4; j++)
				line[k++] = b64[(v >> (6 * j)) & 63];
		}
		line[k++] = '\r';
		line[k++] = '\n';
		put(b, line, k);
	}
}

struct profile {
	const char *name;
	unsigned messages;
	const char *const *folders;
	unsigned nfolders;
	unsigned big_mb;	/* one message this big, 0 = none */
	unsigned attach_pct;	/* messages with a multi-MB attachment, per mille */
};

static const char *const f_tiny[] = {"", "Sent", "Lists.dev", "Entw&APw-rfe"};
static const char *const f_demo[] = {"", "Sent", "Archive", "Archive.2019", "Lists.dev",
				     "Re&AOc-us"};
static const char *const f_crash[] = {"", "Lists", "Lists.Debian"};
static const char *const f_quick[] = {"", "Sent", "Drafts", "Archive", "Archive.2019",
				      "Lists.dev", "Entw&APw-rfe"};
static const char *const f_full[] = {
	"", "Sent", "Drafts", "Trash", "Junk", "Archive", "Archive.2015", "Archive.2016",
	"Archive.2017", "Archive.2018", "Archive.2019", "Archive.2020", "Lists", "Lists.dev",
	"Lists.announce", "Projects", "Projects.Alpha", "Projects.Beta", "Entw&APw-rfe",
	"Re&AOc-us"};

#define N(a) (unsigned)(sizeof(a) / sizeof(a[0]))
static const struct profile profiles[] = {
	{"tiny", 150, f_tiny, N(f_tiny), 1, 0},
	{"demo", 2500, f_demo, N(f_demo), 0, 1},
	{"crash", 5200, f_crash, N(f_crash), 0, 0},
	{"quick", 6000, f_quick, N(f_quick), 30, 1},
	{"full", 100000, f_full, N(f_full), 30, 1},
};

static const char *const keywords[] = {"$Forwarded", "$Junk", "$NotJunk", "Work", "Project-X"};

/* One message into b; returns the flag letters for the file name. */
static void message(struct rng *r, struct buf *b, unsigned id, unsigned mb, size_t size_hint,
		    const char *folder)
{
	unsigned kind = rn(r, 10), hostile = rn(r, 40);
	int64_t year = 2008 + rn(r, 17);
	const char *f = first[rn(r, N(first))], *l = last[rn(r, N(last))];
	char boundary[40];

	(void)folder;
	snprintf(boundary, sizeof(boundary), "=_mf_%u_%llx", id, (unsigned long long)rnd(r));
	putf(b, "Return-Path: <%c.%s@example.org>\r\n", f[0], "sender");
	putf(b, "Received: from mx%u.example.net (mx%u.example.net [192.0.2.%u])\r\n"
		"\tby mail.example.org (Postfix) with ESMTPS id %llX\r\n"
		"\tfor <you@example.org>; Mon, 3 Jun %lld 10:%02u:00 +0200\r\n",
		rn(r, 9), rn(r, 9), rn(r, 250), (unsigned long long)rnd(r), (long long)year, rn(r, 60));
	if (hostile == 1)
		putf(b, "Message-ID: <broken id %u@@>\r\n", id); /* does not parse */
	else if (hostile != 2)
		putf(b, "Message-ID: <%u.%llx@mail.example.org>\r\n", id, (unsigned long long)rnd(r));
	if (hostile == 3)
		puts_(b, "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n");
	else if (hostile == 4)
		puts_(b, "Date: Sat, 12 Aug 2089 14:00:00 -0700\r\n");
	else if (hostile != 5)
		putf(b, "Date: Mon, %u Jun %lld %02u:%02u:%02u +0200\r\n", 1 + rn(r, 28),
		     (long long)year, rn(r, 24), rn(r, 60), rn(r, 60));
	if (hostile == 6)
		putf(b, "From: \xc9milie %s <emilie@example.org>\r\n", l); /* raw Latin-1 */
	else
		putf(b, "From: \"%s %s\" <%c.%s@example.org>\r\n", f, l, f[0], "user");
	puts_(b, "To: You <you@example.org>,\r\n\tTeam <team@example.org>\r\n");
	if (rn(r, 3) == 0)
		putf(b, "Subject: =?UTF-8?B?w5xiZXJzaWNodDog?= %s %u\r\n", topics[rn(r, N(topics))], id);
	else if (rn(r, 4) == 0)
		putf(b, "Subject: %s #%u with a long subject that is folded over\r\n two lines\r\n",
		     topics[rn(r, N(topics))], id);
	else
		putf(b, "Subject: %s %u\r\n", topics[rn(r, N(topics))], id);
	if (id > 10 && rn(r, 3) == 0)
		putf(b, "In-Reply-To: <%u.thread@mail.example.org>\r\nReferences: <%u.thread@mail."
			"example.org>\r\n <%u.thread@mail.example.org>\r\n",
		     id - 1, id - 3, id - 1);
	puts_(b, "MIME-Version: 1.0\r\n");
	if (mb || kind >= 8) {
		size_t raw = mb ? (size_t)mb << 20 : size_hint;

		putf(b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", boundary);
		putf(b, "This is a multi-part message in MIME format.\r\n\r\n--%s\r\n"
			"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
		     boundary);
		text_body(r, b, b->n + 600, 0);
		putf(b, "\r\n--%s\r\nContent-Type: application/pdf; name=\"report-%u.pdf\"\r\n"
			"Content-Disposition: attachment; filename=\"report-%u.pdf\"\r\n"
			"Content-Transfer-Encoding: base64\r\n\r\n",
		     boundary, id, id);
		base64_body(r, b, raw * 3 / 4);
		putf(b, "\r\n--%s--\r\n", boundary);
	} else if (kind >= 5) {
		size_t start = b->n;

		putf(b, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n--%s\r\n"
			"Content-Type: text/plain; charset=utf-8\r\n"
			"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
		     boundary, boundary);
		text_body(r, b, start + size_hint / 2, 1);
		putf(b, "\r\n--%s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>",
		     boundary);
		text_body(r, b, start + size_hint, 0);
		putf(b, "</p></body></html>\r\n--%s--\r\n", boundary);
	} else {
		size_t start = b->n;

		puts_(b, "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
		if (hostile == 7) {
			puts_(b, "a line with a bare CR\rin the middle, and CRs before the end\r\r\n");
		} else if (hostile == 8) {
			for (int i = 0; i < 1500; i++)
				put(b, "x", 1); /* a line over 998 characters */
			puts_(b, "\r\n");
		} else if (hostile == 9) {
			return; /* headers only, empty body, no final CRLF after the blank line */
		}
		text_body(r, b, start + size_hint, 0);
		if (hostile == 10)
			b->n -= 2; /* no final CRLF */
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

static void folder_dirs(const char *root, const char *folder, char *dir, size_t cap)
{
	static const char *const subs[] = {"cur", "new", "tmp"};
	char p[4200];

	snprintf(dir, cap, "%s%s%s", root, *folder ? "/." : "", folder);
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%.4000s/%s", dir, subs[i]);
		if (mkdirs(p) < 0) {
			fprintf(stderr, "corpus: mkdir %s: %s\n", p, strerror(errno));
			exit(2);
		}
	}
	snprintf(p, sizeof(p), "%.4000s/dovecot-keywords", dir);
	{
		FILE *f = fopen(p, "w");

		if (!f) {
			fprintf(stderr, "corpus: %s: %s\n", p, strerror(errno));
			exit(2);
		}
		for (unsigned i = 0; i < N(keywords); i++)
			fprintf(f, "%u %s\n", i, keywords[i]);
		fclose(f);
	}
}

static void write_msg(const char *dir, unsigned id, unsigned seed, const char *flags,
		      const struct buf *b, int64_t t)
{
	char p[4200];
	struct timeval tv[2];
	FILE *f;

	snprintf(p, sizeof(p), "%.4000s/cur/%lld.M%uP%u.corpus,S=%zu:2,%s", dir, (long long)t, id,
		 seed, b->n, flags);
	if (!(f = fopen(p, "wb")) || fwrite(b->p, 1, b->n, f) != b->n || fclose(f) != 0) {
		fprintf(stderr, "corpus: %s: %s\n", p, strerror(errno));
		exit(2);
	}
	tv[0].tv_sec = tv[1].tv_sec = (time_t)t;
	tv[0].tv_usec = tv[1].tv_usec = 0;
	utimes(p, tv);
}

/* Flag letters, system flags upper-case then keywords a-e, as Dovecot sorts. */
static void flags_pick(struct rng *r, char *out)
{
	size_t n = 0;
	unsigned v = rn(r, 100);

	if (v < 8)
		out[n++] = 'F';
	if (v < 70)
		out[n++] = 'S';
	if (v % 7 == 0)
		out[n++] = 'R';
	if (v % 23 == 0)
		out[n++] = 'D';
	/* sort the upper-case letters */
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (out[j] < out[i]) {
				char c = out[i];
				out[i] = out[j];
				out[j] = c;
			}
	if (v % 5 == 0)
		out[n++] = 'a';
	if (v % 11 == 0)
		out[n++] = 'd';
	if (v % 17 == 0)
		out[n++] = 'e';
	out[n] = '\0';
}

int main(int argc, char **argv)
{
	const char *out = NULL, *pname = NULL;
	unsigned seed = 1, big = 0;
	const struct profile *pr = NULL;
	struct rng r;
	struct buf b = {0};
	uint64_t bytes = 0, count = 0;
	int64_t now = 1767225600; /* fixed "now" (2026-01-01): deterministic */
	char dir[4200], prev_dir[4200] = "";
	FILE *subs;
	char sp[4200];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--out") && i + 1 < argc)
			out = argv[++i];
		else if (!strcmp(argv[i], "--profile") && i + 1 < argc)
			pname = argv[++i];
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--big-mb") && i + 1 < argc)
			big = (unsigned)atoi(argv[++i]);
		else
			out = NULL, i = argc;
	}
	for (unsigned i = 0; pname && i < N(profiles); i++)
		if (!strcmp(profiles[i].name, pname))
			pr = &profiles[i];
	if (!out || (!pr && !big)) {
		fprintf(stderr, "usage: corpus --out MAILDIR (--profile tiny|demo|crash|quick|full | "
				"--big-mb M) [--seed N]\n");
		return 2;
	}
	r.s = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)seed * 0xD1B54A32D192ED03ULL);
	if (big) {
		folder_dirs(out, "", dir, sizeof(dir));
		message(&r, &b, 1, big, 0, "");
		write_msg(dir, 1, seed, "S", &b, now - 86400);
		printf("corpus: 1 message, %zu bytes\n", b.n);
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
		unsigned n = fi == 0 ? pr->messages * 2 / 5 : pr->messages * 3 / 5 / (pr->nfolders - 1);

		folder_dirs(out, folder, dir, sizeof(dir));
		if (*folder)
			fprintf(subs, "%s\n", folder);
		for (unsigned k = 0; k < n; k++) {
			unsigned id = (unsigned)count + 1, mb = 0;
			size_t size;
			char flags[16];
			unsigned s = rn(&r, 1000);

			/* size mix: most 2-50 KB, some larger, a multi-MB tail */
			size = s < 500 ? 1000 + rn(&r, 2000) : s < 950 ? 3000 + rn(&r, 9000)
								   : 12000 + rn(&r, 48000);
			if (rn(&r, 1000) < pr->attach_pct)
				mb = 1 + rn(&r, 2);
			if (pr->big_mb && count == pr->messages / 3)
				mb = pr->big_mb;
			b.n = 0;
			message(&r, &b, id, mb, size, folder);
			flags_pick(&r, flags);
			write_msg(dir, id, seed, flags, &b, now - (int64_t)rn(&r, 15u * 365 * 86400));
			/* the same message in two folders, as after a copy */
			if (prev_dir[0] && rn(&r, 200) == 0) {
				write_msg(prev_dir, id + 1000000, seed, flags, &b, now - 3600);
				bytes += b.n;
				count++;
			}
			bytes += b.n;
			count++;
		}
		snprintf(prev_dir, sizeof(prev_dir), "%s", dir);
	}
	fclose(subs);
	printf("corpus: %llu messages, %llu bytes, %u folders\n", (unsigned long long)count,
	       (unsigned long long)bytes, pr->nfolders);
	free(b.p);
	return 0;
}
