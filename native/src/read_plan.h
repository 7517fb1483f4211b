/* Private: the arithmetic of a ranged read, as a pure function so it can be
 * fuzzed (native/fuzz/fuzz_read_plan.c; its replay runs under ctest). */
#ifndef S3DL_READ_PLAN_H
#define S3DL_READ_PLAN_H

#include <stdint.h>

#include "s3dlio.h"

struct read_plan {
    uint64_t offset;      /* first byte the caller wants */
    uint64_t length;      /* bytes the caller gets (clamped to the object) */
    uint64_t read_from;   /* first byte to read from storage (aligned for O_DIRECT) */
    uint64_t span;        /* bytes to read and to allocate (aligned for O_DIRECT) */
};

/* Plans a read of [offset, offset+length) from an object of `size` bytes.
 * `length` S3DL_LENGTH_TO_END means to the end.  `alignment` is 1 for
 * buffered I/O or a power of two for O_DIRECT.  Returns S3DL_OK,
 * S3DL_E_RANGE when offset > size, or S3DL_E_INVALID_ARGUMENT when the
 * aligned span would overflow or alignment is not a power of two. */
s3dl_status read_plan_make(uint64_t size, uint64_t offset, uint64_t length, uint64_t alignment,
                           struct read_plan *out);

#endif
