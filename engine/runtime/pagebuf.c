/*
 * pagebuf — buffers as anonymous mappings (pagebuf.h).
 *
 * Not for: choosing their sizes (conn.c, the loop's conn_buf).
 */
#include "engine/runtime/pagebuf.h"

#include <errno.h>
#include <sys/mman.h>

uint8_t *pagebuf_new(size_t n)
{
	void *b = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return b == MAP_FAILED ? NULL : b;
}

void pagebuf_free(uint8_t *b, size_t n)
{
	if (b)
		(void)munmap(b, n);
}

int pagebuf_grow(uint8_t **b, size_t *n, size_t cap)
{
	void *nb = mremap(*b, *n, cap, MREMAP_MAYMOVE);

	if (nb == MAP_FAILED)
		return -ENOMEM;
	*b = nb;
	*n = cap;
	return 0;
}
