/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).  Uses the SSE4.2
 * crc32 instruction where the CPU has it (three interleaved chains on large
 * inputs), else slicing-by-8 tables. */
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
/* The crc32 instruction has a latency of 3 cycles but a throughput of one
 * per cycle, so one dependent chain uses a third of it.  Large inputs are
 * cut into three adjacent stripes whose CRCs run as independent chains and
 * are then joined: the register of A||B is the register of A carried
 * through |B| zero bytes (a linear map, applied by table) XOR the register
 * of B started from zero. */
enum { STRIPE_LONG = 8192, STRIPE_SHORT = 256 };

/* shift_long[k][b]: the map "append STRIPE_LONG zero bytes" applied to byte
 * b placed at byte k of the register; likewise shift_short. */
static uint32_t shift_long[4][256], shift_short[4][256];

static uint32_t gf2_apply(const uint32_t op[32], uint32_t vec)
{
    uint32_t sum = 0;
    for (int bit = 0; vec; bit++, vec >>= 1)
        if (vec & 1)
            sum ^= op[bit];
    return sum;
}

static void gf2_square(uint32_t out[32], const uint32_t op[32])
{
    for (int bit = 0; bit < 32; bit++)
        out[bit] = gf2_apply(op, op[bit]);
}

/* The operator that carries a register through `bytes` zero bytes (a power
 * of two): start from one zero bit, square up to one byte, then keep
 * squaring. */
static void zero_bytes_operator(uint32_t op[32], size_t bytes)
{
    uint32_t a[32], b[32];
    a[0] = 0x82F63B78u; /* one zero bit: shift right, fold the polynomial in */
    for (int bit = 1; bit < 32; bit++)
        a[bit] = 1u << (bit - 1);
    gf2_square(b, a); /* 2 bits */
    gf2_square(a, b); /* 4 bits */
    gf2_square(b, a); /* 8 bits: one byte */
    uint32_t *cur = b, *next = a;
    for (size_t n = 1; n < bytes; n <<= 1) {
        gf2_square(next, cur);
        uint32_t *t = cur;
        cur = next;
        next = t;
    }
    memcpy(op, cur, sizeof(a));
}

static void build_shift_table(uint32_t table[4][256], size_t bytes)
{
    uint32_t op[32];
    zero_bytes_operator(op, bytes);
    for (int k = 0; k < 4; k++)
        for (uint32_t v = 0; v < 256; v++)
            table[k][v] = gf2_apply(op, v << (8 * k));
}

static uint32_t shifted(const uint32_t table[4][256], uint32_t crc)
{
    return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^ table[2][(crc >> 16) & 0xff] ^
           table[3][crc >> 24];
}

__attribute__((target("sse4.2"))) static uint64_t crc32c_striped(uint64_t c, const uint8_t **pp,
                                                                  size_t *lenp, size_t stripe,
                                                                  const uint32_t table[4][256])
{
    const uint8_t *p = *pp;
    size_t len = *lenp;
    while (len >= 3 * stripe) {
        uint64_t c1 = 0, c2 = 0;
        for (const uint8_t *end = p + stripe; p < end; p += 8) {
            uint64_t w0, w1, w2;
            memcpy(&w0, p, 8);
            memcpy(&w1, p + stripe, 8);
            memcpy(&w2, p + 2 * stripe, 8);
            c = __builtin_ia32_crc32di(c, w0);
            c1 = __builtin_ia32_crc32di(c1, w1);
            c2 = __builtin_ia32_crc32di(c2, w2);
        }
        c = shifted(table, (uint32_t)c) ^ (uint32_t)c1;
        c = shifted(table, (uint32_t)c) ^ (uint32_t)c2;
        p += 2 * stripe;
        len -= 3 * stripe;
    }
    *pp = p;
    *lenp = len;
    return c;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p,
                                                                size_t len)
{
    uint64_t c = crc;
    c = crc32c_striped(c, &p, &len, STRIPE_LONG, shift_long);
    c = crc32c_striped(c, &p, &len, STRIPE_SHORT, shift_short);
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
    if (__builtin_cpu_supports("sse4.2")) {
        build_shift_table(shift_long, STRIPE_LONG);
        build_shift_table(shift_short, STRIPE_SHORT);
        return crc32c_sse42;
    }
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
