/* Private: splitting request URLs and decoding them for signing. */
#ifndef S3DL_URL_H
#define S3DL_URL_H

#include <stddef.h>

#include "sigv4.h"

/* Views into a URL "scheme://authority/path?query" (no fragment). */
struct url_view {
    const char *authority;  /* host[:port] */
    size_t authority_len;
    const char *path;       /* as sent (percent-encoded), starts with '/' */
    size_t path_len;
    const char *query;      /* after '?', may be empty */
    size_t query_len;
};

/* Returns 0, or -1 for anything but an http(s) URL with a host. */
int url_split(const char *url, struct url_view *out);

/* The raw (decoded) path and query pairs, as SigV4 wants them. */
struct url_decoded {
    char *path;
    size_t path_len;
    struct sigv4_kv *query;
    size_t query_count;
    char *storage;          /* backing store of the query strings */
};

/* Returns 0, -1 for a malformed %-escape, or -2 when out of memory. */
int url_decode(const struct url_view *view, struct url_decoded *out);
void url_decoded_free(struct url_decoded *decoded);

/* Decodes `view` into `decoded` and fills `req` for signing it with the
 * given headers and payload hash (all borrowed; `req` points into
 * `decoded`, which the caller frees).  Returns S3DL_OK,
 * S3DL_E_INVALID_ARGUMENT or S3DL_E_NOMEM. */
s3dl_status url_signing_request(const struct url_view *view, const char *method,
                                const struct sigv4_kv *headers, size_t header_count,
                                const char *payload_hash, struct url_decoded *decoded,
                                struct sigv4_request *req);

#endif
