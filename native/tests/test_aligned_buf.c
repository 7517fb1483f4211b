/* Result buffers: alignment as asked, sizes honoured across the cache's
 * classes, and a freed buffer of a class reused for the next request of
 * that class (not in sanitizer builds, which keep every free real). */
#include <stdint.h>
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
    /* Huge-page-path buffers (8 MiB and up) are never cached: no request
     * could take them back. */
    aligned_buf_cache_drain();
    CHECK(aligned_buf_cached_bytes() == 0);
    aligned_buf_free(aligned_buf_alloc(4096, 8u << 20, 1));
    aligned_buf_free(aligned_buf_alloc(64, 20u << 20, 0));
    CHECK(aligned_buf_cached_bytes() == 0);
    aligned_buf_free(aligned_buf_alloc(64, 7u << 20, 0));
    CHECK(aligned_buf_cached_bytes() == (7u << 20));
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
