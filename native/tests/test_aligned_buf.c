/* Result buffers: alignment as asked, sizes honoured across the cache's
 * classes, and a freed buffer of a class reused for the next request of
 * that class (not in sanitizer builds, which keep every free real). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include "aligned_buf.h"
#include "check.h"

int main(void)
{
    const size_t sizes[] = {1, 4095, 65535, 65536, 65537, 81920, 262144, 1048576, 1048577,
                            16u << 20, (16u << 20) + (12u << 20), 40u << 20};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *p = aligned_buf_alloc(4096, sizes[i], 0);
        CHECK(p != NULL);
        CHECK(((uintptr_t)p & 4095) == 0);
        memset(p, 0xab, sizes[i]); /* the whole size is usable (ASan would object) */
        aligned_buf_free(p);
        uint8_t *q = aligned_buf_alloc(64, sizes[i], 0);
        CHECK(q != NULL && ((uintptr_t)q & 63) == 0);
        memset(q, 0xcd, sizes[i]);
        aligned_buf_free(q);
    }
#ifndef S3DL_NO_BUFFER_CACHE
    void *a = aligned_buf_alloc(64, 300000, 0);
    aligned_buf_free(a);
    CHECK(aligned_buf_alloc(64, 290000, 0) == a); /* same class: recycled */
    aligned_buf_free(a);
    void *b = aligned_buf_alloc(64, 1u << 20, 0); /* another class: not that one */
    CHECK(b != a);
    aligned_buf_free(b);
    /* Large buffers are cached too (a 256 MiB get() loop would fault in
     * every page each time otherwise), 2 MiB-aligned from 8 MiB. */
    aligned_buf_cache_drain();
    CHECK(aligned_buf_cached_bytes() == 0);
    void *huge = aligned_buf_alloc(4096, 8u << 20, 1);
    CHECK(((uintptr_t)huge & ((2u << 20) - 1)) == 0);
    aligned_buf_free(huge);
    CHECK(aligned_buf_cached_bytes() == (8u << 20));
    CHECK(aligned_buf_alloc(64, (7u << 20) + 1, 0) == huge);
    aligned_buf_free(huge);
    aligned_buf_free(aligned_buf_alloc(64, 20u << 20, 0));
    CHECK(aligned_buf_cached_bytes() == (8u << 20) + (20u << 20));
    /* Larger than the cache may hold: never cached. */
    aligned_buf_free(aligned_buf_alloc(64, aligned_buf_cache_limit() + 1, 0));
    CHECK(aligned_buf_cached_bytes() == (8u << 20) + (20u << 20));
    /* The cache holds a whole batch, up to its memory bound, and no more. */
    aligned_buf_cache_drain();
    size_t limit = aligned_buf_cache_limit();
    CHECK(limit >= (32u << 20) && limit <= (1u << 30));
    size_t want = limit / (1u << 20) + 2, got = 0;
    void **many = calloc(want, sizeof(*many));
    CHECK(many != NULL);
    for (; many && got < want; got++)
        if ((many[got] = aligned_buf_alloc(64, 1u << 20, 0)) == NULL)
            break;
    for (size_t i = 0; i < got; i++)
        aligned_buf_free(many[i]);
    CHECK(aligned_buf_cached_bytes() <= limit);
    CHECK(aligned_buf_cached_bytes() + (2u << 20) > limit);
    free(many);
    /* Idle buffers go back to the system; fresh ones stay. */
    aligned_buf_cache_release_idle(INT64_MAX / 2);
    CHECK(aligned_buf_cached_bytes() + (2u << 20) > limit);
    aligned_buf_cache_trim();
    CHECK(aligned_buf_cached_bytes() + (2u << 20) > limit);
    struct timespec pause = {0, 30000000}; /* beyond the coarse clock's tick */
    nanosleep(&pause, NULL);
    aligned_buf_cache_release_idle(1000000);
    CHECK(aligned_buf_cached_bytes() == 0);
    /* A double free of a cached buffer does not cache it twice. */
    void *twice = aligned_buf_alloc(64, 100000, 0);
    aligned_buf_free(twice);
    aligned_buf_free(twice);
    void *first = aligned_buf_alloc(64, 100000, 0), *second = aligned_buf_alloc(64, 100000, 0);
    CHECK(first == twice && second != twice);
    aligned_buf_free(first);
    aligned_buf_free(second);
#endif
    aligned_buf_free(NULL);
    aligned_buf_cache_drain();
    return check_report("test_aligned_buf");
}
