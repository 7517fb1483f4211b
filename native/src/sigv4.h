/* Private: AWS Signature Version 4 (header signing and presigned URLs).
 *
 * Inputs are raw (not percent-encoded) path, query keys and values; the
 * signer encodes them exactly as the canonical request requires (RFC 3986
 * unreserved characters kept, '/' kept in paths, everything else %XX in
 * upper-case hex), and the HTTP layer builds URLs with the same encoder
 * (uri_encode.h), so what is signed is what is sent.
 *
 * S3 signs with normalize_path = 0 (no dot-segment removal, no slash
 * merging, single encoding); other services normalize. */
#ifndef S3DL_SIGV4_H
#define S3DL_SIGV4_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "s3dlio.h"

/* A name/value pair; lengths make embedded bytes explicit. */
struct sigv4_kv {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
};

struct sigv4_request {
    const char *method;                 /* "GET", "PUT", ... */
    const char *path;                   /* raw path, starts with '/' */
    size_t path_len;
    const struct sigv4_kv *query;       /* raw query parameters, any order */
    size_t query_count;
    const struct sigv4_kv *headers;     /* headers to be sent; must include Host.
                                         * X-Amz-Date and X-Amz-Security-Token are
                                         * added by the signer, not passed here. */
    size_t header_count;
    const char *payload_hash;           /* 64 lower-case hex chars, or
                                         * "UNSIGNED-PAYLOAD" */
};

/* Credentials and scope.  The strings are copied by sigv4_signer_init().
 * The signing key is cached per date (it depends only on secret, date,
 * region and service), under a lock so any thread may sign. */
struct sigv4_signer {
    char *access_key;
    char *secret_key;
    char *session_token;                /* NULL when none */
    char *region;
    char *service;
    int normalize_path;                 /* 0 for S3 */
    pthread_mutex_t cache_mutex;
    char cached_date[9];                /* YYYYMMDD of cached_key, "" when empty */
    uint8_t cached_key[32];
};

/* Returns 0 or ENOMEM.  session_token may be NULL.  Free with
 * sigv4_signer_destroy(). */
int sigv4_signer_init(struct sigv4_signer *signer, const char *access_key,
                      const char *secret_key, const char *session_token, const char *region,
                      const char *service, int normalize_path);
void sigv4_signer_destroy(struct sigv4_signer *signer);

/* The headers a signed request must carry. */
struct sigv4_signed_headers {
    char amz_date[17];                  /* "X-Amz-Date" value, YYYYMMDDTHHMMSSZ */
    char *authorization;                /* "Authorization" value; free() it */
};

/* Signs `req` at `now` (seconds since the epoch, UTC).  Returns S3DL_OK,
 * S3DL_E_INVALID_ARGUMENT (missing Host, bad payload hash, ...) or
 * S3DL_E_NOMEM.  The caller also sends X-Amz-Security-Token when the signer
 * has a session token. */
s3dl_status sigv4_sign_headers(struct sigv4_signer *signer, const struct sigv4_request *req,
                               int64_t now, struct sigv4_signed_headers *out);

/* Builds the query string of a presigned URL (all X-Amz-* parameters and
 * the caller's own, canonical order, encoded, no leading '?') valid for
 * `expires` seconds (1..604800).  *query_out is malloc'd; free() it.
 * `omit_session_token` leaves X-Amz-Security-Token out of the signature
 * (appending it afterwards), as some services require. */
s3dl_status sigv4_presign(struct sigv4_signer *signer, const struct sigv4_request *req,
                          int64_t now, int64_t expires, int omit_session_token,
                          char **query_out);

/* For tests: the canonical request and string to sign that
 * sigv4_sign_headers() would use (malloc'd; free() them). */
s3dl_status sigv4_debug_header_signing(struct sigv4_signer *signer,
                                       const struct sigv4_request *req, int64_t now,
                                       char **canonical_request, char **string_to_sign);

#endif
