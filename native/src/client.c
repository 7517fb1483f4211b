/* HTTP clients: options, reference counting, and the SigV4 signer. */
#define _GNU_SOURCE
#include "client.h"

#include <stdlib.h>
#include <string.h>

#include <stdio.h>
#include <time.h>

#include "url.h"

#define RETRY_BUDGET_TOKENS 500

static void set_defaults(struct s3dl_client *c)
{
    c->verify_tls = 1;
    c->connect_timeout_ms = 10000;
    c->request_timeout_ms = 0;
    c->low_speed_timeout_ms = 30000;
    c->max_attempts = 3;
    c->checksum = S3DL_CHECKSUM_CRC32C;
    c->retry_tokens = RETRY_BUDGET_TOKENS;
}

s3dl_status s3dl_client_new(s3dl_client **out)
{
    if (!out)
        return S3DL_E_INVALID_ARGUMENT;
    struct s3dl_client *c = calloc(1, sizeof(*c));
    if (!c)
        return S3DL_E_NOMEM;
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->mutex, NULL);
    set_defaults(c);
    static _Atomic uint64_t next_serial = 2; /* 1 is the default client */
    c->serial = atomic_fetch_add(&next_serial, 1);
    *out = c;
    return S3DL_OK;
}

static struct s3dl_client default_client;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void init_default(void)
{
    atomic_init(&default_client.refs, 1); /* never reaches zero */
    pthread_mutex_init(&default_client.mutex, NULL);
    set_defaults(&default_client);
    default_client.serial = 1;
    default_client.frozen = 1;
}

struct s3dl_client *client_default(void)
{
    pthread_once(&default_once, init_default);
    return &default_client;
}

static char **string_slot(struct s3dl_client *c, s3dl_client_option option)
{
    switch (option) {
    case S3DL_CLIENT_ACCESS_KEY_ID: return &c->access_key;
    case S3DL_CLIENT_SECRET_ACCESS_KEY: return &c->secret_key;
    case S3DL_CLIENT_SESSION_TOKEN: return &c->session_token;
    case S3DL_CLIENT_REGION: return &c->region;
    case S3DL_CLIENT_SERVICE: return &c->service;
    case S3DL_CLIENT_CA_BUNDLE: return &c->ca_bundle;
    default: return NULL;
    }
}

/* Overwrites a secret before freeing it, so it does not linger in freed
 * heap memory that a later crash dump might show. */
static void free_secret(char *s)
{
    if (!s)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

s3dl_status s3dl_client_setopt_str(s3dl_client *c, s3dl_client_option option, const char *value)
{
    if (!c)
        return S3DL_E_INVALID_ARGUMENT;
    char **slot = string_slot(c, option);
    if (!slot)
        return S3DL_E_INVALID_ARGUMENT;
    if (value && strnlen(value, 4097) > 4096)
        return S3DL_E_INVALID_ARGUMENT;
    char *copy = NULL;
    if (value && !(copy = strdup(value)))
        return S3DL_E_NOMEM;
    pthread_mutex_lock(&c->mutex);
    if (c->frozen) {
        pthread_mutex_unlock(&c->mutex);
        free_secret(copy);
        return S3DL_E_STATE;
    }
    free_secret(*slot);
    *slot = copy;
    pthread_mutex_unlock(&c->mutex);
    return S3DL_OK;
}

s3dl_status s3dl_client_setopt_int(s3dl_client *c, s3dl_client_option option, int64_t value)
{
    if (!c)
        return S3DL_E_INVALID_ARGUMENT;
    s3dl_status st = S3DL_OK;
    pthread_mutex_lock(&c->mutex);
    if (c->frozen) {
        pthread_mutex_unlock(&c->mutex);
        return S3DL_E_STATE;
    }
    const int64_t day_ms = 86400000;
    switch (option) {
    case S3DL_CLIENT_VERIFY_TLS: c->verify_tls = value != 0; break;
    case S3DL_CLIENT_SIGNED_PAYLOAD: c->signed_payload = value != 0; break;
    case S3DL_CLIENT_CONNECT_TIMEOUT_MS:
        if (value < 1 || value > day_ms) st = S3DL_E_INVALID_ARGUMENT;
        else c->connect_timeout_ms = (long)value;
        break;
    case S3DL_CLIENT_REQUEST_TIMEOUT_MS:
        if (value < 0 || value > day_ms) st = S3DL_E_INVALID_ARGUMENT;
        else c->request_timeout_ms = (long)value;
        break;
    case S3DL_CLIENT_LOW_SPEED_TIMEOUT_MS:
        if (value < 1000 || value > day_ms) st = S3DL_E_INVALID_ARGUMENT;
        else c->low_speed_timeout_ms = (long)value;
        break;
    case S3DL_CLIENT_CHECKSUM:
        if (value < S3DL_CHECKSUM_NONE || value > S3DL_CHECKSUM_CONTENT_MD5) st = S3DL_E_INVALID_ARGUMENT;
        else c->checksum = (int)value;
        break;
    case S3DL_CLIENT_DIALECT:
        if (value < S3DL_DIALECT_S3 || value > S3DL_DIALECT_AZURE) st = S3DL_E_INVALID_ARGUMENT;
        else c->dialect = (int)value;
        break;
    case S3DL_CLIENT_MAX_ATTEMPTS:
        if (value < 1 || value > 100) st = S3DL_E_INVALID_ARGUMENT;
        else c->max_attempts = (int)value;
        break;
    default: st = S3DL_E_INVALID_ARGUMENT;
    }
    pthread_mutex_unlock(&c->mutex);
    return st;
}

void client_ref(struct s3dl_client *c) { atomic_fetch_add(&c->refs, 1); }

void client_unref(struct s3dl_client *c)
{
    if (!c || c == &default_client)
        return;
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    if (c->can_sign)
        sigv4_signer_destroy(&c->signer);
    free(c->access_key);
    free_secret(c->secret_key);
    free_secret(c->session_token);
    free(c->region);
    free(c->service);
    free(c->ca_bundle);
    pthread_mutex_destroy(&c->mutex);
    free(c);
}

void s3dl_client_free(s3dl_client *c) { client_unref(c); }

s3dl_status client_freeze(struct s3dl_client *c)
{
    s3dl_status st = S3DL_OK;
    pthread_mutex_lock(&c->mutex);
    if (!c->frozen) {
        if (c->access_key && c->secret_key && c->dialect == S3DL_DIALECT_S3) {
            if (sigv4_signer_init(&c->signer, c->access_key, c->secret_key, c->session_token,
                                  c->region ? c->region : "us-east-1",
                                  c->service ? c->service : "s3", 0) != 0)
                st = S3DL_E_NOMEM;
            else
                c->can_sign = 1;
        }
        if (st == S3DL_OK)
            c->frozen = 1;
    }
    pthread_mutex_unlock(&c->mutex);
    return st;
}

s3dl_status s3dl_presign(s3dl_client *c, const char *method, const char *url, int64_t expires,
                         char **out)
{
    if (!c || !method || !url || !out || expires < 1 || expires > 604800)
        return S3DL_E_INVALID_ARGUMENT;
    *out = NULL;
    s3dl_status st = client_freeze(c);
    if (st != S3DL_OK)
        return st;
    if (!c->can_sign)
        return S3DL_E_STATE; /* no credentials to sign with */
    struct url_view view;
    if (url_split(url, &view) != 0)
        return S3DL_E_INVALID_ARGUMENT;
    struct url_decoded decoded;
    struct sigv4_kv host = {"Host", 4, view.authority, view.authority_len};
    struct sigv4_request req;
    st = url_signing_request(&view, method, &host, 1, "UNSIGNED-PAYLOAD", &decoded, &req);
    if (st != S3DL_OK)
        return st;
    char *query = NULL;
    st = sigv4_presign(&c->signer, &req, (int64_t)time(NULL), expires, 0, &query);
    url_decoded_free(&decoded);
    if (st != S3DL_OK)
        return st;
    size_t base_len = (size_t)(view.path + view.path_len - url);
    if (view.path_len == 1 && view.path[0] == '/' && url[base_len - 1] != '/')
        base_len = (size_t)(view.authority + view.authority_len - url); /* URL had no path */
    char *full = NULL;
    int n = asprintf(&full, "%.*s%s?%s", (int)base_len, url,
                     base_len == (size_t)(view.authority + view.authority_len - url) ? "/" : "",
                     query);
    free(query);
    if (n < 0)
        return S3DL_E_NOMEM;
    *out = full;
    return S3DL_OK;
}
