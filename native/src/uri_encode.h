/* Private: percent-encoding shared by URL building and SigV4, so that what
 * is signed is byte-for-byte what is sent. */
#ifndef S3DL_URI_ENCODE_H
#define S3DL_URI_ENCODE_H

#include <stddef.h>

/* Appends `len` bytes of `src` to `dst` (of capacity `cap`, currently
 * holding *dst_len bytes, kept NUL-terminated), percent-encoding every byte
 * that is not an RFC 3986 unreserved character (A-Z a-z 0-9 - . _ ~); '/'
 * is kept when `keep_slash`.  Returns 0, or -1 if `dst` is too small (then
 * *dst_len is unchanged).  Pass dst = NULL to only count: *dst_len grows by
 * the encoded length. */
int uri_encode(char *dst, size_t cap, size_t *dst_len, const char *src, size_t len,
               int keep_slash);

/* Decodes %XX sequences of `src` in place-safe fashion into `dst` (at least
 * `len` bytes); returns the decoded length, or -1 on a malformed escape. */
long uri_decode(char *dst, const char *src, size_t len);

#endif
