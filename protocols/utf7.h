/*
 * utf7 — IMAP modified UTF-7 mailbox names (RFC 3501 §5.1.3).
 * Mailbox names travel in their wire form and are copied byte for byte;
 * these functions exist to show names to people, to match --folder globs on
 * readable names, and to validate what a server sent.
 */
#ifndef MF_UTF7_H
#define MF_UTF7_H

#include <stddef.h>
#include <sys/types.h>

/* Decodes modified UTF-7 into UTF-8. Writes at most cap bytes plus a NUL.
 * Returns the UTF-8 length, -EINVAL for malformed input (bad base64,
 * unterminated shift, non-minimal encoding such as "&AGE-" for "a",
 * bad UTF-16 surrogates) or -ENOSPC. */
ssize_t utf7_decode(const char *in, size_t n, char *out, size_t cap);
/* Encodes UTF-8 into modified UTF-7. Same return conventions;
 * -EINVAL for invalid UTF-8. */
ssize_t utf7_encode(const char *in, size_t n, char *out, size_t cap);

#endif
