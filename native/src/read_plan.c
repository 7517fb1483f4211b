/* See read_plan.h. */
#include "read_plan.h"

s3dl_status read_plan_make(uint64_t size, uint64_t offset, uint64_t length, uint64_t alignment,
                           struct read_plan *out)
{
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        return S3DL_E_INVALID_ARGUMENT;
    if (offset > size)
        return S3DL_E_RANGE;
    uint64_t available = size - offset;
    uint64_t take = length == S3DL_LENGTH_TO_END || length > available ? available : length;
    uint64_t read_from = offset & ~(alignment - 1);
    uint64_t end = offset + take; /* <= size: cannot overflow */
    if (end > UINT64_MAX - (alignment - 1))
        return S3DL_E_INVALID_ARGUMENT;
    uint64_t aligned_end = (end + alignment - 1) & ~(alignment - 1);
    out->offset = offset;
    out->length = take;
    out->read_from = read_from;
    out->span = aligned_end - read_from;
    return S3DL_OK;
}
