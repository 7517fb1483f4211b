/* Fuzz target: read_plan_make() must never overflow, and every plan must
 * cover exactly the bytes asked for (clamped), aligned as requested. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "read_plan.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t v[4] = {0, 0, 0, 0};
    memcpy(v, data, size < sizeof(v) ? size : sizeof(v));
    uint64_t object_size = v[0], offset = v[1], length = v[2];
    /* Small sizes and offsets matter most; fold some inputs into range. */
    if (v[3] & 1) {
        object_size %= 1u << 20;
        offset %= (1u << 20) + 2;
    }
    uint64_t alignment = (v[3] >> 1) & 1 ? (uint64_t)1 << ((v[3] >> 2) % 21) : 1;
    struct read_plan plan;
    s3dl_status st = read_plan_make(object_size, offset, length, alignment, &plan);
    if (offset > object_size) {
        REQUIRE(st == S3DL_E_RANGE);
        return 0;
    }
    if (st != S3DL_OK) {
        REQUIRE(st == S3DL_E_INVALID_ARGUMENT);
        return 0;
    }
    uint64_t available = object_size - offset;
    uint64_t want = length == S3DL_LENGTH_TO_END || length > available ? available : length;
    REQUIRE(plan.offset == offset);
    REQUIRE(plan.length == want);
    REQUIRE(plan.read_from <= offset);
    REQUIRE(plan.read_from % alignment == 0);
    REQUIRE(plan.span % alignment == 0);
    REQUIRE(offset - plan.read_from < alignment);
    REQUIRE(plan.read_from + plan.span >= offset + want);          /* covers the request */
    REQUIRE(plan.read_from + plan.span - (offset + want) < alignment); /* and no more */
    return 0;
}
