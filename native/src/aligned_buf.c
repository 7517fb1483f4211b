/* See aligned_buf.h. */
#define _GNU_SOURCE
#include "aligned_buf.h"

#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_PAGE_SIZE (2u * 1024 * 1024)

void *aligned_buf_alloc(size_t alignment, size_t size, int huge_pages)
{
    if (size == 0)
        size = 1;
    if (huge_pages && size >= 4 * (size_t)HUGE_PAGE_SIZE && alignment < HUGE_PAGE_SIZE) {
        alignment = HUGE_PAGE_SIZE;
        size = align_up(size, HUGE_PAGE_SIZE);
    }
    void *p = NULL;
    if (posix_memalign(&p, alignment, size) != 0)
        return NULL;
    if (alignment == HUGE_PAGE_SIZE)
        madvise(p, size, MADV_HUGEPAGE); /* a hint; failure is harmless */
    return p;
}
