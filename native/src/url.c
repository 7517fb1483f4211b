/* See url.h. */
#include "url.h"

#include <stdlib.h>
#include <string.h>

#include "uri_encode.h"

int url_split(const char *url, struct url_view *out)
{
    const char *rest;
    if (strncmp(url, "http://", 7) == 0)
        rest = url + 7;
    else if (strncmp(url, "https://", 8) == 0)
        rest = url + 8;
    else
        return -1;
    size_t authority_len = strcspn(rest, "/?#");
    if (authority_len == 0 || rest[authority_len] == '#')
        return -1;
    out->authority = rest;
    out->authority_len = authority_len;
    const char *p = rest + authority_len;
    if (*p == '/') {
        out->path = p;
        out->path_len = strcspn(p, "?#");
    } else {
        out->path = "/";
        out->path_len = 1;
    }
    const char *q = p + (*p == '/' ? out->path_len : 0);
    if (*q == '?') {
        out->query = q + 1;
        out->query_len = strcspn(q + 1, "#");
    } else {
        out->query = q;
        out->query_len = 0;
    }
    return q[out->query_len + (*q == '?')] == '#' ? -1 : 0;
}

void url_decoded_free(struct url_decoded *d)
{
    free(d->path);
    free(d->query);
    free(d->storage);
    memset(d, 0, sizeof(*d));
}

int url_decode(const struct url_view *v, struct url_decoded *d)
{
    memset(d, 0, sizeof(*d));
    d->path = malloc(v->path_len + 1);
    d->storage = malloc(v->query_len + 1);
    size_t pairs = v->query_len ? 1 : 0;
    for (size_t i = 0; i < v->query_len; i++)
        pairs += v->query[i] == '&';
    d->query = calloc(pairs ? pairs : 1, sizeof(*d->query));
    if (!d->path || !d->storage || !d->query) {
        url_decoded_free(d);
        return -2;
    }
    long n = uri_decode(d->path, v->path, v->path_len);
    if (n < 0) {
        url_decoded_free(d);
        return -1;
    }
    d->path_len = (size_t)n;
    d->path[n] = '\0';
    char *out = d->storage;
    const char *q = v->query, *end = v->query + v->query_len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        if (stop > q) { /* skip empty pieces ("a=1&&b=2") */
            const char *eq = memchr(q, '=', (size_t)(stop - q));
            const char *key_end = eq ? eq : stop;
            long kn = uri_decode(out, q, (size_t)(key_end - q));
            if (kn < 0) {
                url_decoded_free(d);
                return -1;
            }
            struct sigv4_kv *kv = &d->query[d->query_count++];
            kv->key = out;
            kv->key_len = (size_t)kn;
            out += kn;
            long vn = eq ? uri_decode(out, eq + 1, (size_t)(stop - eq - 1)) : 0;
            if (vn < 0) {
                url_decoded_free(d);
                return -1;
            }
            kv->value = out;
            kv->value_len = (size_t)vn;
            out += vn;
        }
        q = amp ? amp + 1 : end;
    }
    return 0;
}

s3dl_status url_signing_request(const struct url_view *view, const char *method,
                                const struct sigv4_kv *headers, size_t header_count,
                                const char *payload_hash, struct url_decoded *decoded,
                                struct sigv4_request *req)
{
    int rc = url_decode(view, decoded);
    if (rc != 0)
        return rc == -2 ? S3DL_E_NOMEM : S3DL_E_INVALID_ARGUMENT;
    *req = (struct sigv4_request){
        .method = method,
        .path = decoded->path,
        .path_len = decoded->path_len,
        .query = decoded->query,
        .query_count = decoded->query_count,
        .headers = headers,
        .header_count = header_count,
        .payload_hash = payload_hash,
    };
    return S3DL_OK;
}
