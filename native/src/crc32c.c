/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).  Uses the SSE4.2
 * crc32 instruction where the CPU has it, else slicing-by-8 tables. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "s3dlio.h"

static uint32_t crc_table[8][256];

static void build_tables(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int t = 1; t < 8; t++)
            crc_table[t][n] = (crc_table[t - 1][n] >> 8) ^ crc_table[0][crc_table[t - 1][n] & 0xff];
}

static uint32_t crc32c_software(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc;
        crc = crc_table[7][word & 0xff] ^ crc_table[6][(word >> 8) & 0xff] ^
              crc_table[5][(word >> 16) & 0xff] ^ crc_table[4][(word >> 24) & 0xff] ^
              crc_table[3][(word >> 32) & 0xff] ^ crc_table[2][(word >> 40) & 0xff] ^
              crc_table[1][(word >> 48) & 0xff] ^ crc_table[0][word >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p,
                                                                size_t len)
{
    uint64_t c = crc;
    while (len >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
#endif

typedef uint32_t (*crc_fn)(uint32_t, const uint8_t *, size_t);

static crc_fn choose(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2"))
        return crc32c_sse42;
#endif
    build_tables();
    return crc32c_software;
}

#include <pthread.h>
static pthread_once_t choose_once = PTHREAD_ONCE_INIT;
static crc_fn chosen;
static void init_chosen(void) { chosen = choose(); }

uint32_t s3dl_crc32c(uint32_t crc, const void *data, size_t len)
{
    if (!data)
        return crc;
    pthread_once(&choose_once, init_chosen);
    return ~chosen(~crc, data, len);
}

/* For tests: the portable path, whatever the CPU. */
uint32_t crc32c_portable(uint32_t crc, const void *data, size_t len);
uint32_t crc32c_portable(uint32_t crc, const void *data, size_t len)
{
    static pthread_once_t tables_once = PTHREAD_ONCE_INIT;
    pthread_once(&tables_once, build_tables);
    return ~crc32c_software(~crc, data, len);
}
