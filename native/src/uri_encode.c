/* See uri_encode.h. */
#include "uri_encode.h"

#include <limits.h>
#include <stdint.h>

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

static int kept(unsigned char c, int keep_slash)
{
    return is_unreserved(c) || (keep_slash && c == '/');
}

int uri_encode(char *dst, size_t cap, size_t *dst_len, const char *src, size_t len,
               int keep_slash)
{
    if (len > SIZE_MAX / 3)
        return -1;
    size_t encoded = 0; /* <= 3 * len: cannot overflow after the check above */
    for (size_t i = 0; i < len; i++)
        encoded += kept((unsigned char)src[i], keep_slash) ? 1 : 3;
    if (*dst_len >= SIZE_MAX || encoded > SIZE_MAX - 1 - *dst_len)
        return -1;
    if (!dst) {
        *dst_len += encoded;
        return 0;
    }
    /* Measured first, so a short buffer is left exactly as it was. */
    if (*dst_len + encoded + 1 > cap)
        return -1;
    static const char hex[] = "0123456789ABCDEF";
    char *out = dst + *dst_len;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (kept(c, keep_slash)) {
            *out++ = (char)c;
        } else {
            *out++ = '%';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        }
    }
    *out = '\0';
    *dst_len += encoded;
    return 0;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

long uri_decode(char *dst, const char *src, size_t len)
{
    if (len > LONG_MAX)
        return -1;
    /* The write index never passes the read index, so dst == src works. */
    size_t out = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '%') {
            if (len - i < 3)
                return -1;
            int hi = hex_value((unsigned char)src[i + 1]);
            int lo = hex_value((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        dst[out++] = (char)c;
    }
    return (long)out;
}
