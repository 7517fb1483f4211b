/* Private: allocations for I/O results.  Large buffers filled by copies
 * (buffered reads) ask for transparent huge pages, which cuts page faults
 * 512-fold; buffers filled by O_DIRECT do not, because the compaction a huge
 * page fault may trigger stalls the pinning of user pages for the DMA far
 * longer than the faults it saves (measured: 1 GiB O_DIRECT read with huge
 * pages 0.5-2.1 GB/s depending on fragmentation, without 1.7-1.8 GB/s). */
#ifndef S3DL_ALIGNED_BUF_H
#define S3DL_ALIGNED_BUF_H

#include <stddef.h>
#include <stdint.h>

/* Returns `size` bytes (at least 1) aligned to `alignment` (a power of two
 * >= sizeof(void*)), or NULL.  With `huge_pages`, a large buffer asks for
 * transparent huge pages.  Buffers of 64 KiB to 1 GiB come from a bounded
 * cache of freed ones when it has one of their size class.  Release with
 * aligned_buf_free() (free() is also correct, but does not recycle). */
void *aligned_buf_alloc(size_t alignment, size_t size, int huge_pages);

/* Frees `p` (from aligned_buf_alloc, or any malloc-family pointer), keeping
 * a page-aligned buffer of a cached size class for reuse while the cache
 * holds less than aligned_buf_cache_limit().  NULL is a no-op. */
void aligned_buf_free(void *p);

/* Gives back to the system the cached buffers unused for 10 seconds (at
 * most one sweep per half second; cheap to call often). */
void aligned_buf_cache_trim(void);

/* Frees the cached buffers unused for `idle_ns` or longer, now. */
void aligned_buf_cache_release_idle(int64_t idle_ns);

/* Frees every cached buffer (tests, and leak checkers at exit). */
void aligned_buf_cache_drain(void);

/* Bytes held by the cache now, and the most it may hold: 1/16 of usable
 * memory (the cgroup limit when lower), at least 32 MiB and at most 1 GiB,
 * or S3DLIO_BUFFER_CACHE_MAX bytes (0 when the cache is off). */
size_t aligned_buf_cached_bytes(void);
size_t aligned_buf_cache_limit(void);

/* Rounds `value` up / down to a multiple of `alignment` (a power of two). */
static inline size_t align_up(size_t value, size_t alignment)
{
    return (value + alignment - 1) & ~(alignment - 1);
}
static inline size_t align_down(size_t value, size_t alignment) { return value & ~(alignment - 1); }

#endif
