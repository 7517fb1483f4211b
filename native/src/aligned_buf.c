/* See aligned_buf.h. */
#define _GNU_SOURCE
#include "aligned_buf.h"

#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_PAGE_SIZE (2u * 1024 * 1024)
#define PAGE_SIZE_BYTES 4096u

/* ---- the cache of freed buffers ------------------------------------------
 * Result buffers of 64 KiB up to 8 MiB are allocated in size classes (four
 * per power of two, so at most 25% slack) and page-aligned.  Larger ones
 * take the huge-page path and are never cached: a cached buffer that no
 * request can take would only hold memory.  Freed ones wait in
 * a bounded per-class stack for the next request of their class.  Without
 * this, glibc trims or unmaps the freed memory of a finished batch and the
 * next batch faults every page in again: a DataLoader worker reading
 * 256 KiB objects took five times the page faults of a plain open().read()
 * loop, and get_many of 1 MiB objects paid 256 faults per object. */
#define CACHE_MIN_BYTES ((size_t)64 * 1024)
#define CACHE_CLASSES 28 /* 64 KiB .. 7 MiB: everything below the huge-page path */
#ifdef S3DL_NO_BUFFER_CACHE
static const int cache_enabled = 0; /* sanitizer builds: every free is a real free */
#else
static const int cache_enabled = 1;
#endif
#define CACHE_DEPTH 32   /* buffers kept per class */
#define CACHE_MAX_BYTES ((size_t)32 * 1024 * 1024)

static size_t class_size(int index)
{
    size_t base = CACHE_MIN_BYTES << (index / 4);
    return base + (base / 4) * (size_t)(index % 4);
}

/* The smallest class holding `size` bytes, or -1 when none does. */
static int class_ceil(size_t size)
{
    for (int i = 0; i < CACHE_CLASSES; i++)
        if (class_size(i) >= size)
            return i;
    return -1;
}

/* The largest class that fits in `usable` bytes, or -1. */
static int class_floor(size_t usable)
{
    int found = -1;
    for (int i = 0; i < CACHE_CLASSES && class_size(i) <= usable; i++)
        found = i;
    return found;
}

static struct {
    pthread_mutex_t lock;
    void *stack[CACHE_CLASSES][CACHE_DEPTH];
    int depth[CACHE_CLASSES];
    size_t bytes;
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* A fork while another thread holds the lock must not leave the child's
 * copy locked forever. */
static void cache_lock(void) { pthread_mutex_lock(&cache.lock); }
static void cache_unlock(void) { pthread_mutex_unlock(&cache.lock); }
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void install_atfork(void) { pthread_atfork(cache_lock, cache_unlock, cache_unlock); }

static void *cache_pop(int index)
{
    void *p = NULL;
    cache_lock();
    if (cache.depth[index] > 0) {
        p = cache.stack[index][--cache.depth[index]];
        cache.bytes -= class_size(index);
    }
    cache_unlock();
    return p;
}

static int cache_push(int index, void *p)
{
    int kept = 0;
    cache_lock();
    /* A caller's double s3dl_free must not put one buffer in the cache
     * twice (two later results would share it): the second is dropped. */
    for (int i = 0; i < cache.depth[index]; i++)
        if (cache.stack[index][i] == p) {
            cache_unlock();
            return 1;
        }
    if (cache.depth[index] < CACHE_DEPTH && cache.bytes + class_size(index) <= CACHE_MAX_BYTES) {
        cache.stack[index][cache.depth[index]++] = p;
        cache.bytes += class_size(index);
        kept = 1;
    }
    cache_unlock();
    return kept;
}

void *aligned_buf_alloc(size_t alignment, size_t size, int huge_pages)
{
    if (size == 0)
        size = 1;
    int index = cache_enabled && alignment <= PAGE_SIZE_BYTES && size >= CACHE_MIN_BYTES
                    ? class_ceil(size)
                    : -1;
    if (huge_pages && size >= 4 * (size_t)HUGE_PAGE_SIZE && alignment < HUGE_PAGE_SIZE) {
        alignment = HUGE_PAGE_SIZE;
        size = align_up(size, HUGE_PAGE_SIZE);
        index = -1;
    }
    void *p = NULL;
    if (index >= 0) {
        pthread_once(&atfork_once, install_atfork);
        p = cache_pop(index);
        if (p)
            return p;
        alignment = PAGE_SIZE_BYTES;
        size = class_size(index);
    }
    if (posix_memalign(&p, alignment, size) != 0)
        return NULL;
    if (alignment == HUGE_PAGE_SIZE)
        madvise(p, size, MADV_HUGEPAGE); /* a hint; failure is harmless */
    return p;
}

void aligned_buf_free(void *p)
{
    if (!p)
        return;
    if (cache_enabled && ((uintptr_t)p & (PAGE_SIZE_BYTES - 1)) == 0) {
        size_t usable = malloc_usable_size(p);
        int index = usable >= CACHE_MIN_BYTES && usable < 4 * (size_t)HUGE_PAGE_SIZE
                        ? class_floor(usable)
                        : -1;
        if (index >= 0) {
            pthread_once(&atfork_once, install_atfork);
            if (cache_push(index, p))
                return;
        }
    }
    free(p);
}

size_t aligned_buf_cached_bytes(void)
{
    cache_lock();
    size_t bytes = cache.bytes;
    cache_unlock();
    return bytes;
}

void aligned_buf_cache_drain(void)
{
    for (int i = 0; i < CACHE_CLASSES; i++)
        for (void *p; (p = cache_pop(i)) != NULL;)
            free(p);
}
