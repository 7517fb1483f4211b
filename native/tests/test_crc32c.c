/* CRC-32C: the catalogue check value, incremental use, and agreement of the
 * hardware and portable paths on random data of every small length. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "s3dlio.h"

uint32_t crc32c_portable(uint32_t crc, const void *data, size_t len);

int main(void)
{
    const char *check = "123456789";
    CHECK_EQ_INT(s3dl_crc32c(0, check, 9), 0xE3069283u);
    CHECK_EQ_INT(crc32c_portable(0, check, 9), 0xE3069283u);
    CHECK_EQ_INT(s3dl_crc32c(0, "", 0), 0);
    CHECK_EQ_INT(s3dl_crc32c(s3dl_crc32c(0, check, 4), check + 4, 5), 0xE3069283u);

    uint8_t buf[1024];
    srand(7);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)rand();
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len + off <= 300; len++)
            if (s3dl_crc32c(0, buf + off, len) != crc32c_portable(0, buf + off, len)) {
                CHECK(!"hardware and portable CRC-32C disagree");
                off = 8;
                break;
            }
    /* Lengths around the three-stripe blocks (3 x 256 and 3 x 8192 bytes),
     * at odd offsets, as one call and split at random points. */
    size_t big_len = 3 * 8192 * 2 + 3 * 256 * 3 + 77;
    uint8_t *big = malloc(big_len + 8);
    CHECK(big != NULL);
    for (size_t i = 0; i < big_len + 8; i++)
        big[i] = (uint8_t)rand();
    const size_t lens[] = {767, 768, 769, 3 * 256 + 8, 24575, 24576, 24577, 24576 + 768,
                           big_len};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
        for (size_t off = 0; off < 3; off++) {
            uint32_t want = crc32c_portable(0, big + off, lens[i]);
            CHECK_EQ_INT(s3dl_crc32c(0, big + off, lens[i]), want);
            size_t cut = (size_t)rand() % lens[i];
            CHECK_EQ_INT(s3dl_crc32c(s3dl_crc32c(0, big + off, cut), big + off + cut,
                                     lens[i] - cut), want);
        }
    free(big);
    return check_report("test_crc32c");
}
