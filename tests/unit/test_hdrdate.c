/*
 * test_hdrdate — protocols/hdrdate: RFC 5322 dates with the obsolete
 * forms real mail carries, and the choice of the delivery date from a
 * header block (newest Received:, else Date:, else none).
 */
#include "protocols/hdrdate.h"
#include "protocols/mailhdr.h"
#include "tests/unit/unit.h"

static int date_is(const char *s, const char *want)
{
	struct imap_date d;
	char out[IMAP_DATE_LEN + 1];

	if (hdrdate_parse(s, strlen(s), &d) < 0)
		return want == NULL;
	imap_date_format(&d, out);
	if (!want || strcmp(out, want)) {
		printf("# %s -> %s (want %s)\n", s, out, want ? want : "an error");
		return 0;
	}
	return 1;
}

static void test_parse_plain(struct unit_ctx *u)
{
	UNIT_CHECK(u, date_is("Tue, 1 Jul 2003 10:52:37 +0200", "01-Jul-2003 10:52:37 +0200"));
	UNIT_CHECK(u, date_is("Fri, 21 Nov 1997 09:55:06 -0600", "21-Nov-1997 09:55:06 -0600"));
	UNIT_CHECK(u, date_is("21 Nov 1997 09:55 -0600", "21-Nov-1997 09:55:00 -0600"));
	UNIT_CHECK(u, date_is(" Thu,\r\n 13\r\n  Feb 1969 23:32:54 -0330 (Newfoundland Time)",
	                      "13-Feb-1969 23:32:54 -0330"));
	UNIT_CHECK(u, date_is("29 Feb 2024 00:00:60 +0000", "29-Feb-2024 00:00:60 +0000"));
}

static void test_parse_obsolete(struct unit_ctx *u)
{
	UNIT_CHECK(u, date_is("Mon, 1 Jan 01 00:00:00 GMT", "01-Jan-2001 00:00:00 +0000"));
	UNIT_CHECK(u, date_is("1 Jan 99 00:00:00 EST", "01-Jan-1999 00:00:00 -0500"));
	UNIT_CHECK(u, date_is("1 Jan 103 12:00:00 PDT", "01-Jan-2003 12:00:00 -0700"));
	UNIT_CHECK(u, date_is("1 Jan 2003 12:00:00 A", "01-Jan-2003 12:00:00 -0000"));
	UNIT_CHECK(u, date_is("1 Jan 2003 12:00:00", "01-Jan-2003 12:00:00 -0000"));
	UNIT_CHECK(u, date_is("Wednesday, 5 March 2008 1 : 02 : 03 +0100 (CET)",
	                      "05-Mar-2008 01:02:03 +0100"));
	UNIT_CHECK(u, date_is("(c) Sun, 2 (x (nested)) Mar 2008 10:00:00 +0000",
	                      "02-Mar-2008 10:00:00 +0000"));
	UNIT_CHECK(u, date_is("5-Mar-2008 10:00:00 +0000", "05-Mar-2008 10:00:00 +0000"));
	UNIT_CHECK(
	    u, date_is("5 mar 2008 10:00:00 +0000 trailing junk", "05-Mar-2008 10:00:00 +0000"));
}

static void test_parse_refused(struct unit_ctx *u)
{
	UNIT_CHECK(u, date_is("", NULL));
	UNIT_CHECK(u, date_is("yesterday", NULL));
	UNIT_CHECK(u, date_is("30 Feb 2003 00:00:00 +0000", NULL));
	UNIT_CHECK(u, date_is("29 Feb 2023 00:00:00 +0000", NULL));
	UNIT_CHECK(u, date_is("1 Jan 2003 24:00:00 +0000", NULL));
	UNIT_CHECK(u, date_is("1 Jan 2003 10:60:00 +0000", NULL));
	UNIT_CHECK(u, date_is("1 Jan 2003 10:00:61 +0000", NULL));
	UNIT_CHECK(u, date_is("1 Jan 2003 10:00:00 +2400", NULL));
	UNIT_CHECK(u, date_is("1 Jan 2003 10:00:00 +0160", NULL));
	UNIT_CHECK(u, date_is("1 Jan 2003 10:00:00 +100", NULL));
	UNIT_CHECK(u, date_is("1 Foo 2003 10:00:00 +0000", NULL));
	UNIT_CHECK(u, date_is("1 Jan 20031 10:00:00 +0000", NULL));
	UNIT_CHECK(u, date_is("1 Jan 2 10:00:00 +0000", NULL));
	UNIT_CHECK(u, date_is("0 Jan 2003 10:00:00 +0000", NULL));
	UNIT_CHECK(u, date_is("1 Jan 2003 (unclosed 10:00:00 +0000", NULL));
	UNIT_CHECK(u, date_is("1 Jan 2003 10:00:00 +0000 (unclosed", "01-Jan-2003 10:00:00 +0000"));
	{
		char deep[200];

		memset(deep, '(', 100);
		memset(deep + 100, ')', 99);
		deep[199] = '\0';
		UNIT_CHECK(u, date_is(deep, NULL));
	}
}

static enum hdrdate_from pick(const char *h, char *out)
{
	struct imap_date d;
	enum hdrdate_from f = hdrdate_pick(h, strlen(h), &d);

	if (f != HDRDATE_NONE)
		imap_date_format(&d, out);
	else
		strcpy(out, "-");
	return f;
}

static void test_pick(struct unit_ctx *u)
{
	char out[IMAP_DATE_LEN + 1];

	/* the topmost Received is the newest hop */
	UNIT_CHECK(u, pick("Return-Path: <a@b>\r\n"
	                   "Received: from mx (mx [1.2.3.4])\r\n\tby mail; Tue, 2 Jan 2024 "
	                   "10:00:00 +0100\r\n"
	                   "Received: from relay by mx; Mon, 1 Jan 2024 09:00:00 +0000\r\n"
	                   "Date: Sun, 31 Dec 2023 08:00:00 +0000\r\n"
	                   "\r\nbody; Sat, 1 Jan 2000 00:00:00 +0000\r\n",
	                   out) == HDRDATE_RECEIVED &&
	                  !strcmp(out, "02-Jan-2024 10:00:00 +0100"));
	/* a Received without a parsable date is passed over */
	UNIT_CHECK(u, pick("Received: by x; garbage\nReceived: by y; 3 Jan 2024 01:02:03 -0500\n"
	                   "Date: 1 Jan 2024 00:00:00 +0000\n\n",
	                   out) == HDRDATE_RECEIVED &&
	                  !strcmp(out, "03-Jan-2024 01:02:03 -0500"));
	/* the last ';' of the field, not the first */
	UNIT_CHECK(u, pick("received: from a (x; y) by b; 4 Jan 2024 00:00:00 +0000\n\n", out) ==
	                      HDRDATE_RECEIVED &&
	                  !strcmp(out, "04-Jan-2024 00:00:00 +0000"));
	UNIT_CHECK(u, pick("Subject: x\r\nDATE : 5 Jan 2024 00:00:00 +0000\r\n\r\n", out) ==
	                      HDRDATE_DATE &&
	                  !strcmp(out, "05-Jan-2024 00:00:00 +0000"));
	UNIT_CHECK(u, pick("Subject: no date\r\n\r\nDate: 5 Jan 2024 00:00:00 +0000\r\n", out) ==
	                  HDRDATE_NONE);
	UNIT_CHECK(
	    u, pick("X-Date: 5 Jan 2024 00:00:00 +0000\r\nDated: 1 Jan 2024 00:00:00 +0000\r\n\r\n",
	            out) == HDRDATE_NONE);
	/* cut short: only complete fields count (the Received may go on) */
	UNIT_CHECK(
	    u,
	    pick("Date: 5 Jan 2024 00:00:00 +0000\r\nReceived: by a; 6 Jan 2024 00:00:00 +0000\r\n",
	         out) == HDRDATE_DATE &&
	        !strcmp(out, "05-Jan-2024 00:00:00 +0000"));
	UNIT_CHECK(u, pick("Date: 5 Jan 2024 00:00:00 +0000", out) == HDRDATE_NONE);
	UNIT_CHECK(u, pick("", out) == HDRDATE_NONE);
}

static void test_header_end(struct unit_ctx *u)
{
	UNIT_CHECK(u, mailhdr_end((const uint8_t *)"A: b\r\n\r\nbody", 13) == 8);
	UNIT_CHECK(u, mailhdr_end((const uint8_t *)"A: b\n\nbody", 10) == 6);
	UNIT_CHECK(u, mailhdr_end((const uint8_t *)"\r\nbody", 6) == 2);
	UNIT_CHECK(u, mailhdr_end((const uint8_t *)"A: b\r\nC: d\r\n", 12) == 0);
	UNIT_CHECK(u, mailhdr_end((const uint8_t *)"A: b\r\n\r", 7) == 0);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, test_parse_plain);
	UNIT_RUN(&u, test_parse_obsolete);
	UNIT_RUN(&u, test_parse_refused);
	UNIT_RUN(&u, test_pick);
	UNIT_RUN(&u, test_header_end);
	return unit_done(&u);
}
