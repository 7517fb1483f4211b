/* What every fuzz target shares: REQUIRE reports a violated property the
 * way a fuzz harness expects, by crashing. */
#ifndef S3DL_FUZZ_H
#define S3DL_FUZZ_H

#include <stdint.h>
#include <stdlib.h>

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
