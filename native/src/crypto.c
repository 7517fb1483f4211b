/* See crypto.h. */
#include "crypto.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

/* OpenSSL 3 looks an algorithm up by name in its provider tables on every
 * call that passes EVP_sha256() or goes through HMAC() (which is EVP_Q_mac:
 * a MAC fetch, a digest fetch and a context per call).  Profiles of small
 * GETs put that at over half the cost of signing, so SHA-256 is fetched
 * once and HMAC is built from it here (RFC 2104). */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256(void)
{
    pthread_once(&sha256_once, fetch_sha256);
    return sha256_md ? sha256_md : EVP_sha256();
}

/* One digest context per thread, reused: EVP_Digest and EVP_MD_CTX_new
 * allocate a context and the provider's state for every call, five
 * allocations per signed request.  Freed when the thread exits. */
static pthread_key_t ctx_key;
static pthread_once_t ctx_key_once = PTHREAD_ONCE_INIT;

static void free_thread_ctx(void *ctx) { EVP_MD_CTX_free(ctx); }
static void make_ctx_key(void) { pthread_key_create(&ctx_key, free_thread_ctx); }

static EVP_MD_CTX *thread_ctx(void)
{
    pthread_once(&ctx_key_once, make_ctx_key);
    EVP_MD_CTX *ctx = pthread_getspecific(ctx_key);
    if (!ctx) {
        ctx = EVP_MD_CTX_new();
        if (ctx && pthread_setspecific(ctx_key, ctx) != 0) {
            EVP_MD_CTX_free(ctx);
            ctx = NULL;
        }
    }
    return ctx;
}

int crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_SHA256_LEN])
{
    EVP_MD_CTX *ctx = thread_ctx();
    unsigned int out_len = 0;
    if (!ctx || EVP_DigestInit_ex2(ctx, sha256(), NULL) != 1 ||
        (len && EVP_DigestUpdate(ctx, data, len) != 1) ||
        EVP_DigestFinal_ex(ctx, out, &out_len) != 1 || out_len != CRYPTO_SHA256_LEN)
        return -1;
    return 0;
}

enum { SHA256_BLOCK = 64 };

/* H(pad XOR key || data) into out. */
static int digest_padded(EVP_MD_CTX *ctx, const uint8_t key_block[SHA256_BLOCK], uint8_t pad,
                         const void *data, size_t len, uint8_t out[CRYPTO_SHA256_LEN])
{
    uint8_t block[SHA256_BLOCK];
    for (int i = 0; i < SHA256_BLOCK; i++)
        block[i] = key_block[i] ^ pad;
    unsigned int out_len = 0;
    int ok = EVP_DigestInit_ex2(ctx, sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, block, sizeof(block)) == 1 &&
             (len == 0 || EVP_DigestUpdate(ctx, data, len) == 1) &&
             EVP_DigestFinal_ex(ctx, out, &out_len) == 1 && out_len == CRYPTO_SHA256_LEN;
    OPENSSL_cleanse(block, sizeof(block));
    return ok ? 0 : -1;
}

int crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                       uint8_t out[CRYPTO_SHA256_LEN])
{
    if (key_len > INT_MAX)
        return -1;
    uint8_t key_block[SHA256_BLOCK] = {0};
    if (key_len > SHA256_BLOCK) {
        if (crypto_sha256(key, key_len, key_block) != 0)
            return -1;
    } else if (key_len) {
        memcpy(key_block, key, key_len);
    }
    EVP_MD_CTX *ctx = thread_ctx();
    uint8_t inner[CRYPTO_SHA256_LEN];
    int rc = -1;
    if (ctx && digest_padded(ctx, key_block, 0x36, data, len, inner) == 0 &&
        digest_padded(ctx, key_block, 0x5c, inner, sizeof(inner), out) == 0)
        rc = 0;
    /* The kept context's state now holds the MAC (a derived signing key,
     * for the key chain): start it afresh so none stays behind. */
    if (ctx)
        EVP_DigestInit_ex2(ctx, sha256(), NULL);
    OPENSSL_cleanse(key_block, sizeof(key_block));
    OPENSSL_cleanse(inner, sizeof(inner));
    return rc;
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
    return EVP_Digest(data, len, out, &n, EVP_md5(), NULL) == 1 && n == 16 ? 0 : -1; /* rare */
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
