/* Private: the hashes SigV4 needs, from OpenSSL libcrypto.  Nothing here
 * aborts: a libcrypto failure (in practice, out of memory) returns -1. */
#ifndef S3DL_CRYPTO_H
#define S3DL_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define CRYPTO_SHA256_LEN 32
#define CRYPTO_SHA256_HEX_LEN 64

/* SHA-256 of `len` bytes at `data` into `out`.  Returns 0 or -1. */
int crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_SHA256_LEN]);

/* HMAC-SHA256 of `data` under `key` into `out`.  Returns 0 or -1 (also for a
 * key longer than INT_MAX bytes). */
int crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                       uint8_t out[CRYPTO_SHA256_LEN]);

/* Writes `len` bytes as 2 * len lower-case hex digits and a NUL; `out` holds
 * at least 2 * len + 1 bytes. */
void crypto_hex(const uint8_t *bytes, size_t len, char *out);

/* SHA-256 of `data` as 64 lower-case hex digits and a NUL.  Returns 0 or -1. */
int crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX_LEN + 1]);

/* MD5 of `len` bytes (for Content-MD5 only; never for security).
 * Returns 0 or -1. */
int crypto_md5(const void *data, size_t len, uint8_t out[16]);

/* Standard base64 (with padding) of `len` bytes into `out`, which holds at
 * least 4 * ((len + 2) / 3) + 1 bytes. */
void crypto_base64(const uint8_t *bytes, size_t len, char *out);

/* Overwrites `len` bytes at `p` with zeros in a way the compiler keeps, for
 * secrets about to be freed. */
void crypto_wipe(void *p, size_t len);

#endif
