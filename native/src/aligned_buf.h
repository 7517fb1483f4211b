/* Private: allocations for I/O results.  Large buffers are page-aligned and
 * ask the kernel for transparent huge pages, which cuts page faults 512-fold
 * when a multi-GiB object lands in memory. */
#ifndef S3DL_ALIGNED_BUF_H
#define S3DL_ALIGNED_BUF_H

#include <stddef.h>

/* Returns `size` bytes (at least 1) aligned to `alignment` (a power of two
 * >= sizeof(void*)), or NULL.  Release with free(). */
void *aligned_buf_alloc(size_t alignment, size_t size);

/* Rounds `value` up / down to a multiple of `alignment` (a power of two). */
static inline size_t align_up(size_t value, size_t alignment)
{
    return (value + alignment - 1) & ~(alignment - 1);
}
static inline size_t align_down(size_t value, size_t alignment) { return value & ~(alignment - 1); }

#endif
