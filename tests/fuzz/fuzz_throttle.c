/*
 * fuzz_throttle — libFuzzer target for protocols/throttle.c.
 *
 * The input is a response code atom and a text, split at the first NUL
 * (no NUL: no code). Whatever a server sends, the parser reads only the
 * bytes given, never suggests more than THROTTLE_HINT_MAX_MS, gives a hint
 * only with a throttling signal, and finds in a formatted line
 * ("[CODE] text") at least what it found in the parts.
 */
#include "protocols/throttle.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data, *nul = memchr(s, 0, size);
	const char *code = nul ? s : NULL, *text = nul ? nul + 1 : s;
	size_t code_len = nul ? (size_t)(nul - s) : 0, text_len = nul ? size - code_len - 1 : size;
	struct throttle_hint h, l;
	char *line;
	int r = throttle_parse(code, code_len, text, text_len, &h);

	if (r != h.throttled || h.ms > THROTTLE_HINT_MAX_MS || (!r && h.ms))
		abort();
	if (throttle_parse_line(s, size, &l) != l.throttled || l.ms > THROTTLE_HINT_MAX_MS)
		abort();
	/* "[CODE] text" as imap_client formats it: a signal stays one */
	if (!(line = malloc(code_len + text_len + 3)))
		return 0;
	line[0] = '[';
	if (code_len)
		memcpy(line + 1, code, code_len);
	line[code_len + 1] = ']';
	line[code_len + 2] = ' ';
	if (text_len)
		memcpy(line + code_len + 3, text, text_len);
	if (r && !memchr(code ? code : "", ']', code_len) && !memchr(code ? code : "", '[', code_len) &&
	    !throttle_parse_line(line, code_len + text_len + 3, &l))
		abort();
	free(line);
	return 0;
}
