/*
 * pagebuf — a buffer that is a mapping of its own (anonymous mmap), for
 * the big per-connection buffers (conn.c): a page costs memory only once
 * touched, and unmapping gives all of it back at once. From malloc's heap
 * a freed buffer came back dirty to the next connection, so with many
 * connections every buffer counted whole in the process's RSS.
 *
 * Not for: small or short-lived allocations (a system call each).
 */
#ifndef MF_PAGEBUF_H
#define MF_PAGEBUF_H

#include <stddef.h>
#include <stdint.h>

/* n bytes, zero until written; NULL when out of memory. */
uint8_t *pagebuf_new(size_t n);
/* b (n bytes, or NULL) back to the system. */
void pagebuf_free(uint8_t *b, size_t n);
/* *b (*n bytes) grown to cap bytes, its contents kept (it may move): 0,
 * or -ENOMEM (*b and *n unchanged). */
int pagebuf_grow(uint8_t **b, size_t *n, size_t cap);

#endif
