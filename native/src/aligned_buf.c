/* See aligned_buf.h. */
#define _GNU_SOURCE
#include "aligned_buf.h"
#include "sysinfo.h"

#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define HUGE_PAGE_SIZE (2u * 1024 * 1024)
#define PAGE_SIZE_BYTES 4096u

/* ---- the cache of freed buffers ------------------------------------------
 * Result buffers of 64 KiB up to 1 GiB are allocated in size classes (four
 * per power of two, so at most 25% slack), page-aligned, and from 8 MiB
 * 2 MiB-aligned for huge pages.  A freed one waits in its class's list for
 * the next request of that class.  Pages past the requested size are
 * never touched, so the slack costs address space, not memory.  Without this, glibc
 * trims or unmaps the freed memory of a finished batch and the next batch
 * faults every page in again: a DataLoader worker reading 256 KiB objects
 * took five times the page faults of a plain open().read() loop, and
 * get_many of 1 MiB objects spent a quarter of its CPU in page faults,
 * and a 256 MiB get() faulted in 65,536 pages every time.
 *
 * The cache must hold a whole batch to help a batch-after-batch loop, so
 * it is bounded by memory, not by count (cache_setup).  Like jemalloc's
 * dirty-page decay, what lies unused for CACHE_DECAY_NS goes back to the
 * system (aligned_buf_cache_trim, which the engine thread calls at least
 * once a second, and every free). */
#define CACHE_MIN_BYTES ((size_t)64 * 1024)
#define CACHE_CLASSES 57 /* 64 KiB .. 1 GiB */
/* Buffers this large are 2 MiB-aligned, for transparent huge pages. */
#define HUGE_PATH_BYTES ((size_t)8 * 1024 * 1024)
#ifdef S3DL_NO_BUFFER_CACHE
static const int cache_enabled = 0; /* sanitizer builds: every free is a real free */
#else
static const int cache_enabled = 1;
#endif
#define CACHE_FLOOR_BYTES ((size_t)32 * 1024 * 1024)
#define CACHE_CEILING_BYTES ((size_t)1024 * 1024 * 1024)
#define CACHE_DECAY_NS (10 * 1000000000LL)
#define TRIM_INTERVAL_NS (500 * 1000000LL)

/* A cached buffer's first bytes link it into its class's list.  The cookie
 * (the address scrambled) marks it as cached, so that a caller's double
 * free cannot put it in twice, where two later results would share it. */
struct cached_buf {
    struct cached_buf *next;
    int64_t freed_ns;
    uint64_t cookie;
};
#define CACHED_COOKIE 0x53334443414348ULL

static uint64_t cookie_of(const void *p) { return (uint64_t)(uintptr_t)p ^ CACHED_COOKIE; }

/* The coarse clock (a few ms of resolution, no hardware read) is plenty for
 * a 10 s decay, and every free reads it. */
static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

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
    struct cached_buf *head[CACHE_CLASSES]; /* newest first */
    size_t bytes;
    size_t limit;                           /* set at first use; 0: cache off */
    int64_t last_trim_ns;
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* A fork while another thread holds the lock must not leave the child's
 * copy locked forever. */
static void cache_lock(void) { pthread_mutex_lock(&cache.lock); }
static void cache_unlock(void) { pthread_mutex_unlock(&cache.lock); }
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_setup(void)
{
    pthread_atfork(cache_lock, cache_unlock, cache_unlock);
    /* S3DLIO_BUFFER_CACHE_MAX (bytes; 0 turns the cache off) overrides
     * the default: 1/16 of usable memory, at least 32 MiB, at most 1 GiB.
     * It is per process: DataLoader workers each have their own. */
    const char *env = getenv("S3DLIO_BUFFER_CACHE_MAX");
    char *end = NULL;
    unsigned long long wanted = env && *env ? strtoull(env, &end, 10) : 0;
    if (env && *env && end && *end == '\0') {
        cache.limit = wanted > CACHE_CEILING_BYTES * 64 ? CACHE_CEILING_BYTES * 64 : (size_t)wanted;
        return;
    }
    size_t share = sysinfo_usable_memory() / 16;
    size_t limit = share < CACHE_FLOOR_BYTES ? CACHE_FLOOR_BYTES : share;
    cache.limit = limit > CACHE_CEILING_BYTES ? CACHE_CEILING_BYTES : limit;
}

static void *cache_pop(int index)
{
    cache_lock();
    struct cached_buf *c = cache.head[index];
    if (c) {
        cache.head[index] = c->next;
        cache.bytes -= class_size(index);
        c->cookie = 0; /* in use again: its next free is a real one */
    }
    cache_unlock();
    return c;
}

/* Unlinks, under the lock, what has waited since before `cutoff` (every
 * entry for INT64_MAX); the caller frees the returned chain unlocked. */
static struct cached_buf *cache_take_older(int64_t cutoff)
{
    struct cached_buf *out = NULL;
    for (int i = 0; i < CACHE_CLASSES; i++) {
        /* Newest first, so the old ones are one tail of the list. */
        struct cached_buf **link = &cache.head[i];
        while (*link && (*link)->freed_ns >= cutoff)
            link = &(*link)->next;
        while (*link) {
            struct cached_buf *c = *link;
            *link = c->next;
            cache.bytes -= class_size(i);
            c->cookie = 0;
            c->next = out;
            out = c;
        }
    }
    return out;
}

static void free_chain(struct cached_buf *c)
{
    while (c) {
        struct cached_buf *next = c->next;
        free(c);
        c = next;
    }
}

/* Returns 1 when `p` is now in the cache (or already was). */
static int cache_push(int index, void *p)
{
    struct cached_buf *c = p;
    int64_t now = now_ns();
    int kept = 0;
    cache_lock();
    if (c->cookie == cookie_of(c)) {
        kept = 1; /* a double free: it is cached already */
    } else if (cache.bytes + class_size(index) <= cache.limit) {
        c->next = cache.head[index];
        c->freed_ns = now;
        c->cookie = cookie_of(c);
        cache.head[index] = c;
        cache.bytes += class_size(index);
        kept = 1;
    }
    cache_unlock();
    return kept;
}

void aligned_buf_cache_release_idle(int64_t idle_ns)
{
    if (!cache_enabled)
        return;
    pthread_once(&cache_once, cache_setup);
    int64_t now = now_ns();
    cache_lock();
    __atomic_store_n(&cache.last_trim_ns, now, __ATOMIC_RELAXED);
    struct cached_buf *expired = cache_take_older(now - idle_ns);
    cache_unlock();
    free_chain(expired);
}

void aligned_buf_cache_trim(void)
{
    /* Unlocked peek: a stale value only delays or repeats a cheap sweep. */
    if (now_ns() - __atomic_load_n(&cache.last_trim_ns, __ATOMIC_RELAXED) >= TRIM_INTERVAL_NS)
        aligned_buf_cache_release_idle(CACHE_DECAY_NS);
}

void *aligned_buf_alloc(size_t alignment, size_t size, int huge_pages)
{
    if (size == 0)
        size = 1;
    int index = -1;
    if (cache_enabled && alignment <= PAGE_SIZE_BYTES && size >= CACHE_MIN_BYTES) {
        pthread_once(&cache_once, cache_setup);
        index = class_ceil(size);
        if (index >= 0 && class_size(index) > cache.limit)
            index = -1; /* could never be cached: allocate it exactly */
    }
    void *p = NULL;
    if (index >= 0) {
        p = cache_pop(index);
        if (p)
            return p; /* already faulted in: no huge-page advice needed */
        size = class_size(index);
        alignment = PAGE_SIZE_BYTES;
    }
    int huge = huge_pages && size >= HUGE_PATH_BYTES;
    if (huge || (index >= 0 && size >= HUGE_PATH_BYTES)) {
        /* 2 MiB-aligned, so the buffer can take transparent huge pages
         * now or when recycled for a read that asks for them. */
        alignment = HUGE_PAGE_SIZE;
        size = align_up(size, HUGE_PAGE_SIZE);
    }
    if (posix_memalign(&p, alignment, size) != 0)
        return NULL;
    if (huge)
        madvise(p, size, MADV_HUGEPAGE); /* a hint; failure is harmless */
    return p;
}

void aligned_buf_free(void *p)
{
    if (!p)
        return;
    if (cache_enabled && ((uintptr_t)p & (PAGE_SIZE_BYTES - 1)) == 0) {
        pthread_once(&cache_once, cache_setup);
        size_t usable = malloc_usable_size(p);
        int index = usable >= CACHE_MIN_BYTES ? class_floor(usable) : -1;
        if (index >= 0 && class_size(index) <= cache.limit && cache_push(index, p)) {
            aligned_buf_cache_trim();
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

size_t aligned_buf_cache_limit(void)
{
    if (!cache_enabled)
        return 0;
    pthread_once(&cache_once, cache_setup);
    return cache.limit;
}

void aligned_buf_cache_drain(void)
{
    cache_lock();
    struct cached_buf *all = cache_take_older(INT64_MAX);
    cache_unlock();
    free_chain(all);
}
