/* See crypto.h. */
#include "crypto.h"

#include <limits.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

int crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_SHA256_LEN])
{
    unsigned int out_len = 0;
    if (EVP_Digest(data, len, out, &out_len, EVP_sha256(), NULL) != 1 ||
        out_len != CRYPTO_SHA256_LEN)
        return -1;
    return 0;
}

int crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                       uint8_t out[CRYPTO_SHA256_LEN])
{
    if (key_len > INT_MAX)
        return -1;
    unsigned int out_len = 0;
    /* HMAC() rejects a NULL key even when it is empty. */
    static const uint8_t no_key[1] = {0};
    if (!HMAC(EVP_sha256(), key_len ? key : no_key, (int)key_len, data, len, out, &out_len) ||
        out_len != CRYPTO_SHA256_LEN)
        return -1;
    return 0;
}

void crypto_hex(const uint8_t *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

int crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX_LEN + 1])
{
    uint8_t digest[CRYPTO_SHA256_LEN];
    if (crypto_sha256(data, len, digest) != 0)
        return -1;
    crypto_hex(digest, sizeof(digest), out);
    return 0;
}

int crypto_md5(const void *data, size_t len, uint8_t out[16])
{
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_md5(), NULL) == 1 && n == 16 ? 0 : -1;
}

void crypto_base64(const uint8_t *bytes, size_t len, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)bytes[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)bytes[i + 1] << 8;
        if (i + 2 < len)
            v |= bytes[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? alphabet[v & 63] : '=';
    }
    out[o] = '\0';
}

void crypto_wipe(void *p, size_t len)
{
    OPENSSL_cleanse(p, len);
}
