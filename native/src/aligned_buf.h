/* Private: allocations for I/O results.  Large buffers filled by copies
 * (buffered reads) ask for transparent huge pages, which cuts page faults
 * 512-fold; buffers filled by O_DIRECT do not, because the compaction a huge
 * page fault may trigger stalls the pinning of user pages for the DMA far
 * longer than the faults it saves (measured: 1 GiB O_DIRECT read with huge
 * pages 0.5-2.1 GB/s depending on fragmentation, without 1.7-1.8 GB/s). */
#ifndef S3DL_ALIGNED_BUF_H
#define S3DL_ALIGNED_BUF_H

#include <stddef.h>

/* Returns `size` bytes (at least 1) aligned to `alignment` (a power of two
 * >= sizeof(void*)), or NULL.  With `huge_pages`, a large buffer asks for
 * transparent huge pages.  Release with free(). */
void *aligned_buf_alloc(size_t alignment, size_t size, int huge_pages);

/* Rounds `value` up / down to a multiple of `alignment` (a power of two). */
static inline size_t align_up(size_t value, size_t alignment)
{
    return (value + alignment - 1) & ~(alignment - 1);
}
static inline size_t align_down(size_t value, size_t alignment) { return value & ~(alignment - 1); }

#endif
