/*
 * fuzz_hdrdate — libFuzzer target for protocols/hdrdate.c.
 *
 * The input is a header block (and, read again, a bare date). Whatever
 * hdrdate picks or parses must be a date IMAP takes: written out by
 * imap_date_format it parses back with imap_date_parse to the same fields
 * (so a hostile header can never put a refused or different date on an
 * APPEND line), and the header end, when found, lies within the input and
 * right after a line feed.
 */
#include "protocols/hdrdate.h"
#include "protocols/mailhdr.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(const struct imap_date *d)
{
	char out[IMAP_DATE_LEN + 1];
	struct imap_date back;

	if (imap_date_format(d, out) != IMAP_DATE_LEN || strlen(out) != IMAP_DATE_LEN)
		abort();
	if (imap_date_parse(out, IMAP_DATE_LEN, &back) < 0) {
		fprintf(stderr, "hdrdate: \"%s\" is not an IMAP date-time\n", out);
		abort();
	}
	if (back.year != d->year || back.mon != d->mon || back.day != d->day ||
	    back.hour != d->hour || back.min != d->min || back.sec != d->sec ||
	    back.tz_hour != d->tz_hour || back.tz_min != d->tz_min)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	struct imap_date d;
	size_t e;

	if (hdrdate_pick(p, size, &d) != HDRDATE_NONE)
		round_trip(&d);
	if (hdrdate_parse(p, size, &d) == 0)
		round_trip(&d);
	e = mailhdr_end((const uint8_t *)p, size);
	if (e > size || (e && p[e - 1] != '\n'))
		abort();
	return 0;
}
