/*
 * status_page — the status page (status_page.html, built into the binary
 * with the assembler's .incbin, so it is one self-contained file in the
 * tree and one string in the program), served live by status.c and
 * written static, with a final report's data inside, by `report show
 * --html`.
 *
 * Not for: what the page shows (it asks /api/status), serving.
 */
#include "engine/cli/status.h"

#include <errno.h>
#include <string.h>

/* The Makefile makes the objects of this file depend on the .html. */
__asm__(".section .rodata\n"
        ".global mf_status_page\n"
        ".type mf_status_page, @object\n"
        "mf_status_page:\n"
        ".incbin \"engine/cli/status_page.html\"\n"
        ".byte 0\n"
        ".previous\n");
extern const char mf_status_page[];

#define DATA_MARK "<!--MF-DATA-->"

const char *status_page(size_t *len)
{
	*len = strlen(mf_status_page);
	return mf_status_page;
}

int status_page_write(FILE *f, const char *json, size_t len)
{
	const char *mark = strstr(mf_status_page, DATA_MARK);

	if (!mark)
		return -EINVAL;
	/* json comes from sbuf_json_str: '<' is escaped, so it cannot end the
	 * script element early */
	if (memchr(json, '<', len))
		return -EINVAL;
	fwrite(mf_status_page, 1, (size_t)(mark - mf_status_page), f);
	fputs("<script id=\"mf-data\" type=\"application/json\">", f);
	fwrite(json, 1, len, f);
	fputs("</script>", f);
	fputs(mark + strlen(DATA_MARK), f);
	return ferror(f) ? -EIO : 0;
}
