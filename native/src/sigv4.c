/* See sigv4.h.  The steps follow the AWS "Signature Version 4 signing
 * process": canonical request, string to sign, signing key, signature. */
#include "sigv4.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "uri_encode.h"

#define ALGORITHM "AWS4-HMAC-SHA256"
#define MAX_EXPIRES 604800 /* seven days, the longest AWS accepts */

static char *dup_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy)
        memcpy(copy, s, n);
    return copy;
}

static void free_secret(char *s)
{
    if (s) {
        crypto_wipe(s, strlen(s));
        free(s);
    }
}

int sigv4_signer_init(struct sigv4_signer *signer, const char *access_key,
                      const char *secret_key, const char *session_token, const char *region,
                      const char *service, int normalize_path)
{
    memset(signer, 0, sizeof(*signer));
    if (!access_key || !secret_key || !region || !service)
        return EINVAL;
    signer->access_key = dup_string(access_key);
    signer->secret_key = dup_string(secret_key);
    signer->session_token = session_token ? dup_string(session_token) : NULL;
    signer->region = dup_string(region);
    signer->service = dup_string(service);
    signer->normalize_path = normalize_path;
    int err = 0;
    if (!signer->access_key || !signer->secret_key || (session_token && !signer->session_token) ||
        !signer->region || !signer->service)
        err = ENOMEM;
    else
        err = pthread_mutex_init(&signer->cache_mutex, NULL);
    if (err) {
        free(signer->access_key);
        free_secret(signer->secret_key);
        free_secret(signer->session_token);
        free(signer->region);
        free(signer->service);
        memset(signer, 0, sizeof(*signer));
    }
    return err;
}

void sigv4_signer_destroy(struct sigv4_signer *signer)
{
    free(signer->access_key);
    free_secret(signer->secret_key);
    free_secret(signer->session_token);
    free(signer->region);
    free(signer->service);
    pthread_mutex_destroy(&signer->cache_mutex);
    crypto_wipe(signer->cached_key, sizeof(signer->cached_key));
    memset(signer, 0, sizeof(*signer));
}

/* ---- a growable string; an allocation failure sticks until the end ---- */

struct strbuf {
    char *data;
    size_t len;
    size_t cap;
    int failed;
};

static int sb_reserve(struct strbuf *b, size_t extra)
{
    if (b->failed)
        return -1;
    if (extra >= SIZE_MAX - b->len) {
        b->failed = 1;
        return -1;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *grown = realloc(b->data, cap);
    if (!grown) {
        b->failed = 1;
        return -1;
    }
    b->data = grown;
    b->cap = cap;
    return 0;
}

static void sb_append(struct strbuf *b, const char *s, size_t n)
{
    if (sb_reserve(b, n) != 0)
        return;
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void sb_puts(struct strbuf *b, const char *s)
{
    sb_append(b, s, strlen(s));
}

static void sb_putc(struct strbuf *b, char c)
{
    sb_append(b, &c, 1);
}

static void sb_encode(struct strbuf *b, const char *s, size_t n, int keep_slash)
{
    size_t encoded = 0;
    if (b->failed)
        return;
    if (uri_encode(NULL, 0, &encoded, s, n, keep_slash) != 0 || sb_reserve(b, encoded) != 0) {
        b->failed = 1;
        return;
    }
    uri_encode(b->data, b->cap, &b->len, s, n, keep_slash); /* fits: reserved above */
}

static void sb_free(struct strbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* Hands the string to the caller (an empty string rather than NULL);
 * NULL, with the buffer freed, if building it failed. */
static char *sb_take(struct strbuf *b)
{
    if (sb_reserve(b, 0) != 0) {
        sb_free(b);
        return NULL;
    }
    char *s = b->data;
    memset(b, 0, sizeof(*b));
    return s;
}

/* ---- dates ---- */

/* Writes `value` (>= 0) as exactly `width` decimal digits. */
static void put_digits(char *out, int64_t value, int width)
{
    for (int i = width - 1; i >= 0; i--, value /= 10)
        out[i] = (char)('0' + value % 10);
}

/* Formats `now` as YYYYMMDDTHHMMSSZ without the C library's time_t, whose
 * range and thread safety vary (civil-from-days, H. Hinnant). */
static int format_amz_date(int64_t now, char out[17])
{
    if (now < 0 || now > INT64_C(253402300799)) /* 9999-12-31T23:59:59Z */
        return -1;
    int64_t days = now / 86400, secs = now % 86400;
    int64_t z = days + 719468;
    int64_t era = z / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t day = doy - (153 * mp + 2) / 5 + 1;
    int64_t month = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = yoe + era * 400 + (month <= 2);
    put_digits(out, year, 4);
    put_digits(out + 4, month, 2);
    put_digits(out + 6, day, 2);
    out[8] = 'T';
    put_digits(out + 9, secs / 3600, 2);
    put_digits(out + 11, secs / 60 % 60, 2);
    put_digits(out + 13, secs % 60, 2);
    out[15] = 'Z';
    out[16] = '\0';
    return 0;
}

/* ---- canonical pieces ---- */

/* A byte string with explicit length, ordered as unsigned bytes. */
struct span {
    const char *p;
    size_t n;
};

static int span_cmp(struct span a, struct span b)
{
    size_t n = a.n < b.n ? a.n : b.n;
    int c = n ? memcmp(a.p, b.p, n) : 0;
    if (c)
        return c;
    return a.n < b.n ? -1 : a.n > b.n;
}

/* The canonical URI: for services other than S3, dot segments are removed
 * and empty segments dropped (a trailing '/' survives) before encoding,
 * as botocore's remove_dot_segments() does. */
static s3dl_status append_canonical_path(struct strbuf *b, const char *path, size_t len,
                                         int normalize)
{
    if (!normalize) {
        sb_encode(b, path, len, 1);
        return S3DL_OK;
    }
    size_t max_segments = 1;
    for (size_t i = 0; i < len; i++)
        max_segments += path[i] == '/';
    struct span *kept = calloc(max_segments, sizeof(*kept));
    if (!kept)
        return S3DL_E_NOMEM;
    size_t count = 0;
    for (size_t start = 0; start <= len;) {
        const char *slash = memchr(path + start, '/', len - start);
        size_t end = slash ? (size_t)(slash - path) : len;
        struct span seg = {path + start, end - start};
        if (seg.n == 2 && seg.p[0] == '.' && seg.p[1] == '.') {
            if (count)
                count--;
        } else if (seg.n && !(seg.n == 1 && seg.p[0] == '.')) {
            kept[count++] = seg;
        }
        start = end + 1;
    }
    sb_putc(b, '/');
    for (size_t i = 0; i < count; i++) {
        if (i)
            sb_putc(b, '/');
        sb_encode(b, kept[i].p, kept[i].n, 0);
    }
    if (count && path[len - 1] == '/')
        sb_putc(b, '/');
    free(kept);
    return S3DL_OK;
}

/* One query parameter or header, canonicalized into a shared text buffer.
 * Offsets are recorded while the buffer grows; the spans are set once it
 * stops moving. */
struct entry {
    size_t name_off, value_off;
    struct span name, value;
    size_t order; /* position in the request: duplicate headers keep it */
};

struct entry_list {
    struct entry *items;
    size_t count;
    struct strbuf text;
};

static s3dl_status entries_init(struct entry_list *l, size_t count, size_t extra)
{
    memset(l, 0, sizeof(*l));
    if (count > SIZE_MAX / sizeof(struct entry) - extra)
        return S3DL_E_INVALID_ARGUMENT;
    l->items = calloc(count + extra, sizeof(struct entry));
    return l->items ? S3DL_OK : S3DL_E_NOMEM;
}

/* Sets the spans; S3DL_E_NOMEM if building the text failed. */
static s3dl_status entries_finish(struct entry_list *l)
{
    if (l->text.failed)
        return S3DL_E_NOMEM;
    for (size_t i = 0; i < l->count; i++) {
        l->items[i].name.p = l->text.data + l->items[i].name_off;
        l->items[i].value.p = l->text.data + l->items[i].value_off;
    }
    return S3DL_OK;
}

static void entries_free(struct entry_list *l)
{
    free(l->items);
    sb_free(&l->text);
}

static int header_cmp(const void *pa, const void *pb)
{
    const struct entry *a = pa, *b = pb;
    int c = span_cmp(a->name, b->name);
    if (c)
        return c;
    return a->order < b->order ? -1 : a->order > b->order;
}

static int query_cmp(const void *pa, const void *pb)
{
    const struct entry *a = pa, *b = pb;
    int c = span_cmp(a->name, b->name);
    return c ? c : span_cmp(a->value, b->value);
}

/* Appends a query parameter, both halves percent-encoded. */
static void query_add(struct entry_list *l, const char *key, size_t key_len, const char *value,
                      size_t value_len)
{
    struct entry *e = &l->items[l->count];
    e->order = l->count++;
    e->name_off = l->text.len;
    sb_encode(&l->text, key, key_len, 0);
    e->name.n = l->text.len - e->name_off;
    e->value_off = l->text.len;
    sb_encode(&l->text, value, value_len, 0);
    e->value.n = l->text.len - e->value_off;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Appends a header: the name lower-cased, the value trimmed with each run
 * of spaces and tabs inside it folded to one space. */
static void header_add(struct entry_list *l, const char *name, size_t name_len, const char *value,
                       size_t value_len)
{
    struct entry *e = &l->items[l->count];
    e->order = l->count++;
    if (sb_reserve(&l->text, name_len + value_len) != 0)
        return;
    e->name_off = l->text.len;
    e->name.n = name_len;
    char *out = l->text.data + l->text.len;
    for (size_t i = 0; i < name_len; i++) {
        char c = name[i];
        *out++ = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    e->value_off = e->name_off + name_len;
    size_t i = 0;
    while (i < value_len && is_space(value[i]))
        i++;
    while (i < value_len) {
        if (!is_space(value[i])) {
            *out++ = value[i++];
            continue;
        }
        while (i < value_len && is_space(value[i]))
            i++;
        if (i < value_len)
            *out++ = ' ';
    }
    l->text.len = (size_t)(out - l->text.data);
    l->text.data[l->text.len] = '\0';
    e->value.n = l->text.len - e->value_off;
}

/* No control bytes but tab, so nothing can smuggle a line break into
 * what is sent. */
static int valid_header_value(const char *value, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7F)
            return 0;
    }
    return 1;
}

/* RFC 9110 tchar: a header name holds nothing else, so it cannot end the
 * name early (':') or split the signed-header list (';'). */
static int is_token_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int valid_header(const struct sigv4_kv *h)
{
    if (!h->key_len || !h->key || (h->value_len && !h->value))
        return 0;
    for (size_t i = 0; i < h->key_len; i++)
        if (!is_token_char((unsigned char)h->key[i]))
            return 0;
    return valid_header_value(h->value, h->value_len);
}

static int span_is(struct span s, const char *text)
{
    return s.n == strlen(text) && memcmp(s.p, text, s.n) == 0;
}

/* Everything one signature needs, for either kind of signing. */
struct signing {
    char amz_date[17];
    struct strbuf scope;          /* YYYYMMDD/region/service/aws4_request */
    struct strbuf header_block;   /* "name:value\n" per header name, sorted */
    struct strbuf signed_headers; /* "host;x-amz-date" */
    struct strbuf query;          /* canonical query string */
    struct strbuf canonical_request;
    struct strbuf string_to_sign;
    char signature[CRYPTO_SHA256_HEX_LEN + 1];
};

static void signing_free(struct signing *s)
{
    sb_free(&s->scope);
    sb_free(&s->header_block);
    sb_free(&s->signed_headers);
    sb_free(&s->query);
    sb_free(&s->canonical_request);
    sb_free(&s->string_to_sign);
}

/* Fills s->header_block and s->signed_headers.  Header signing adds
 * X-Amz-Date and the session token itself, so the caller may not. */
static s3dl_status canonical_headers(struct sigv4_signer *signer, const struct sigv4_request *req,
                                     int header_signing, struct signing *s)
{
    struct entry_list l;
    s3dl_status st = entries_init(&l, req->header_count, 2);
    if (st != S3DL_OK)
        return st;
    for (size_t i = 0; i < req->header_count; i++) {
        const struct sigv4_kv *h = &req->headers[i];
        if (!valid_header(h)) {
            entries_free(&l);
            return S3DL_E_INVALID_ARGUMENT;
        }
        header_add(&l, h->key, h->key_len, h->value, h->value_len);
    }
    if (header_signing) {
        header_add(&l, "x-amz-date", 10, s->amz_date, 16);
        if (signer->session_token)
            header_add(&l, "x-amz-security-token", 20, signer->session_token,
                       strlen(signer->session_token));
    }
    st = entries_finish(&l);
    int has_host = 0;
    for (size_t i = 0; st == S3DL_OK && i < req->header_count; i++) {
        struct span name = l.items[i].name;
        has_host |= span_is(name, "host");
        if (span_is(name, "x-amz-date") || span_is(name, "x-amz-security-token"))
            st = S3DL_E_INVALID_ARGUMENT;
    }
    if (st == S3DL_OK && !has_host)
        st = S3DL_E_INVALID_ARGUMENT;
    if (st != S3DL_OK) {
        entries_free(&l);
        return st;
    }
    qsort(l.items, l.count, sizeof(*l.items), header_cmp);
    for (size_t i = 0; i < l.count; i++) {
        const struct entry *e = &l.items[i];
        if (i && span_cmp(e->name, l.items[i - 1].name) == 0) {
            sb_putc(&s->header_block, ','); /* a repeated name: values join in order */
        } else {
            if (i) {
                sb_putc(&s->header_block, '\n');
                sb_putc(&s->signed_headers, ';');
            }
            sb_append(&s->header_block, e->name.p, e->name.n);
            sb_putc(&s->header_block, ':');
            sb_append(&s->signed_headers, e->name.p, e->name.n);
        }
        sb_append(&s->header_block, e->value.p, e->value.n);
    }
    sb_putc(&s->header_block, '\n');
    entries_free(&l);
    return S3DL_OK;
}

/* The parameters a presigned URL carries; the caller may not pass them. */
static const char *const presign_keys[] = {
    "X-Amz-Algorithm",     "X-Amz-Credential",     "X-Amz-Date",      "X-Amz-Expires",
    "X-Amz-SignedHeaders", "X-Amz-Security-Token", "X-Amz-Signature",
};

static int is_presign_key(const struct sigv4_kv *q)
{
    struct span key = {q->key, q->key_len};
    for (size_t i = 0; i < sizeof(presign_keys) / sizeof(presign_keys[0]); i++)
        if (span_is(key, presign_keys[i]))
            return 1;
    return 0;
}

/* How a presigned URL is signed; NULL when signing headers. */
struct presign_options {
    int64_t expires;
    int omit_session_token;
};

/* Fills s->query: every parameter encoded, sorted by key then value; a
 * presigned URL's X-Amz-* parameters included (s->signed_headers is set). */
static s3dl_status canonical_query(struct sigv4_signer *signer, const struct sigv4_request *req,
                                   const struct presign_options *presign, struct signing *s)
{
    struct entry_list l;
    s3dl_status st = entries_init(&l, req->query_count, 6);
    if (st != S3DL_OK)
        return st;
    for (size_t i = 0; i < req->query_count; i++) {
        const struct sigv4_kv *q = &req->query[i];
        if ((q->key_len && !q->key) || (q->value_len && !q->value) ||
            (presign && is_presign_key(q))) {
            entries_free(&l);
            return S3DL_E_INVALID_ARGUMENT;
        }
        query_add(&l, q->key, q->key_len, q->value, q->value_len);
    }
    if (presign) {
        struct strbuf credential = {0};
        sb_puts(&credential, signer->access_key);
        sb_putc(&credential, '/');
        sb_append(&credential, s->scope.data, s->scope.len);
        char expires[24];
        snprintf(expires, sizeof(expires), "%" PRId64, presign->expires);
        query_add(&l, "X-Amz-Algorithm", 15, ALGORITHM, strlen(ALGORITHM));
        query_add(&l, "X-Amz-Credential", 16, credential.data, credential.len);
        query_add(&l, "X-Amz-Date", 10, s->amz_date, 16);
        query_add(&l, "X-Amz-Expires", 13, expires, strlen(expires));
        query_add(&l, "X-Amz-SignedHeaders", 19, s->signed_headers.data, s->signed_headers.len);
        if (signer->session_token && !presign->omit_session_token)
            query_add(&l, "X-Amz-Security-Token", 20, signer->session_token,
                      strlen(signer->session_token));
        l.text.failed |= credential.failed;
        sb_free(&credential);
    }
    st = entries_finish(&l);
    if (st == S3DL_OK) {
        qsort(l.items, l.count, sizeof(*l.items), query_cmp);
        for (size_t i = 0; i < l.count; i++) {
            if (i)
                sb_putc(&s->query, '&');
            sb_append(&s->query, l.items[i].name.p, l.items[i].name.n);
            sb_putc(&s->query, '=');
            sb_append(&s->query, l.items[i].value.p, l.items[i].value.n);
        }
    }
    entries_free(&l);
    return st;
}

static int valid_payload_hash(const char *hash)
{
    if (!hash)
        return 0;
    if (strcmp(hash, "UNSIGNED-PAYLOAD") == 0)
        return 1;
    if (strlen(hash) != CRYPTO_SHA256_HEX_LEN)
        return 0;
    for (const char *c = hash; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return 0;
    return 1;
}

static int valid_method(const char *method)
{
    if (!method || !*method)
        return 0;
    for (const unsigned char *c = (const unsigned char *)method; *c; c++)
        if (*c <= 0x20 || *c >= 0x7F)
            return 0;
    return 1;
}

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
 * "aws4_request").  It changes once a day, so it is cached. */
static s3dl_status signing_key(struct sigv4_signer *signer, const char *date,
                               uint8_t key[CRYPTO_SHA256_LEN])
{
    s3dl_status st = S3DL_OK;
    pthread_mutex_lock(&signer->cache_mutex);
    if (memcmp(signer->cached_date, date, 8) == 0) { /* "" (no key yet) never matches */
        memcpy(key, signer->cached_key, CRYPTO_SHA256_LEN);
        goto out;
    }
    size_t secret_len = strlen(signer->secret_key);
    char *secret = malloc(secret_len + 4);
    if (!secret) {
        st = S3DL_E_NOMEM;
        goto out;
    }
    memcpy(secret, "AWS4", 4);
    memcpy(secret + 4, signer->secret_key, secret_len);
    uint8_t k[CRYPTO_SHA256_LEN];
    int failed = crypto_hmac_sha256(secret, secret_len + 4, date, 8, k) ||
                 crypto_hmac_sha256(k, sizeof(k), signer->region, strlen(signer->region), k) ||
                 crypto_hmac_sha256(k, sizeof(k), signer->service, strlen(signer->service), k) ||
                 crypto_hmac_sha256(k, sizeof(k), "aws4_request", 12, k);
    crypto_wipe(secret, secret_len + 4);
    free(secret);
    if (failed) {
        st = S3DL_E_NOMEM;
    } else {
        memcpy(key, k, sizeof(k));
        memcpy(signer->cached_key, k, sizeof(k));
        memcpy(signer->cached_date, date, 8);
        signer->cached_date[8] = '\0';
    }
    crypto_wipe(k, sizeof(k));
out:
    pthread_mutex_unlock(&signer->cache_mutex);
    return st;
}

/* Builds the canonical request, string to sign and signature of `req`;
 * `presign` selects query signing.  On success the caller frees `s` with
 * signing_free(). */
static s3dl_status sign(struct sigv4_signer *signer, const struct sigv4_request *req,
                        int64_t now, const struct presign_options *presign, struct signing *s)
{
    memset(s, 0, sizeof(*s));
    if (!signer || !req || !valid_method(req->method) || !req->path || !req->path_len ||
        req->path[0] != '/' || !valid_payload_hash(req->payload_hash) ||
        (req->query_count && !req->query) || (req->header_count && !req->headers) ||
        (signer->session_token &&
         !valid_header_value(signer->session_token, strlen(signer->session_token))) ||
        format_amz_date(now, s->amz_date) != 0)
        return S3DL_E_INVALID_ARGUMENT;
    sb_append(&s->scope, s->amz_date, 8);
    sb_putc(&s->scope, '/');
    sb_puts(&s->scope, signer->region);
    sb_putc(&s->scope, '/');
    sb_puts(&s->scope, signer->service);
    sb_puts(&s->scope, "/aws4_request");

    /* Headers first: a presigned query names the signed headers. */
    s3dl_status st = canonical_headers(signer, req, !presign, s);
    if (st == S3DL_OK)
        st = canonical_query(signer, req, presign, s);
    struct strbuf *cr = &s->canonical_request;
    if (st == S3DL_OK) {
        sb_puts(cr, req->method);
        sb_putc(cr, '\n');
        st = append_canonical_path(cr, req->path, req->path_len, signer->normalize_path);
    }
    if (st == S3DL_OK) {
        sb_putc(cr, '\n');
        sb_append(cr, s->query.data, s->query.len);
        sb_putc(cr, '\n');
        sb_append(cr, s->header_block.data, s->header_block.len);
        sb_putc(cr, '\n');
        sb_append(cr, s->signed_headers.data, s->signed_headers.len);
        sb_putc(cr, '\n');
        sb_puts(cr, req->payload_hash);
        if (cr->failed || s->scope.failed || s->header_block.failed ||
            s->signed_headers.failed || s->query.failed)
            st = S3DL_E_NOMEM;
    }
    char cr_hash[CRYPTO_SHA256_HEX_LEN + 1];
    if (st == S3DL_OK && crypto_sha256_hex(cr->data, cr->len, cr_hash) != 0)
        st = S3DL_E_NOMEM;
    struct strbuf *sts = &s->string_to_sign;
    if (st == S3DL_OK) {
        sb_puts(sts, ALGORITHM "\n");
        sb_append(sts, s->amz_date, 16);
        sb_putc(sts, '\n');
        sb_append(sts, s->scope.data, s->scope.len);
        sb_putc(sts, '\n');
        sb_puts(sts, cr_hash);
        if (sts->failed)
            st = S3DL_E_NOMEM;
    }
    uint8_t key[CRYPTO_SHA256_LEN], mac[CRYPTO_SHA256_LEN];
    if (st == S3DL_OK)
        st = signing_key(signer, s->amz_date, key);
    if (st == S3DL_OK) {
        if (crypto_hmac_sha256(key, sizeof(key), sts->data, sts->len, mac) != 0)
            st = S3DL_E_NOMEM;
        else
            crypto_hex(mac, sizeof(mac), s->signature);
        crypto_wipe(key, sizeof(key));
    }
    if (st != S3DL_OK)
        signing_free(s);
    return st;
}

s3dl_status sigv4_sign_headers(struct sigv4_signer *signer, const struct sigv4_request *req,
                               int64_t now, struct sigv4_signed_headers *out)
{
    memset(out, 0, sizeof(*out));
    struct signing s;
    s3dl_status st = sign(signer, req, now, NULL, &s);
    if (st != S3DL_OK)
        return st;
    struct strbuf auth = {0};
    sb_puts(&auth, ALGORITHM " Credential=");
    sb_puts(&auth, signer->access_key);
    sb_putc(&auth, '/');
    sb_append(&auth, s.scope.data, s.scope.len);
    sb_puts(&auth, ", SignedHeaders=");
    sb_append(&auth, s.signed_headers.data, s.signed_headers.len);
    sb_puts(&auth, ", Signature=");
    sb_puts(&auth, s.signature);
    memcpy(out->amz_date, s.amz_date, sizeof(out->amz_date));
    signing_free(&s);
    out->authorization = sb_take(&auth);
    return out->authorization ? S3DL_OK : S3DL_E_NOMEM;
}

/* Moves the canonical request and string to sign out of `s`. */
static s3dl_status take_debug(struct signing *s, char **canonical_request, char **string_to_sign)
{
    *canonical_request = sb_take(&s->canonical_request);
    *string_to_sign = sb_take(&s->string_to_sign);
    if (*canonical_request && *string_to_sign)
        return S3DL_OK;
    free(*canonical_request);
    free(*string_to_sign);
    *canonical_request = *string_to_sign = NULL;
    return S3DL_E_NOMEM;
}

s3dl_status sigv4_debug_header_signing(struct sigv4_signer *signer,
                                       const struct sigv4_request *req, int64_t now,
                                       char **canonical_request, char **string_to_sign)
{
    *canonical_request = *string_to_sign = NULL;
    struct signing s;
    s3dl_status st = sign(signer, req, now, NULL, &s);
    if (st != S3DL_OK)
        return st;
    st = take_debug(&s, canonical_request, string_to_sign);
    signing_free(&s);
    return st;
}

/* The presigned query: what was signed, then the signature, then the
 * session token when it stays outside the signature.  The canonical
 * request and string to sign go to the optional debug outputs. */
static s3dl_status presign(struct sigv4_signer *signer, const struct sigv4_request *req,
                           int64_t now, int64_t expires, int omit_session_token, char **query_out,
                           char **canonical_request, char **string_to_sign)
{
    *query_out = NULL;
    if (expires < 1 || expires > MAX_EXPIRES)
        return S3DL_E_INVALID_ARGUMENT;
    struct presign_options options = {expires, omit_session_token};
    struct signing s;
    s3dl_status st = sign(signer, req, now, &options, &s);
    if (st != S3DL_OK)
        return st;
    struct strbuf *query = &s.query;
    sb_puts(query, "&X-Amz-Signature=");
    sb_puts(query, s.signature);
    if (signer->session_token && omit_session_token) {
        sb_puts(query, "&X-Amz-Security-Token=");
        sb_encode(query, signer->session_token, strlen(signer->session_token), 0);
    }
    *query_out = sb_take(query);
    st = *query_out ? S3DL_OK : S3DL_E_NOMEM;
    if (st == S3DL_OK && canonical_request)
        st = take_debug(&s, canonical_request, string_to_sign);
    signing_free(&s);
    if (st != S3DL_OK) {
        free(*query_out);
        *query_out = NULL;
    }
    return st;
}

s3dl_status sigv4_presign(struct sigv4_signer *signer, const struct sigv4_request *req,
                          int64_t now, int64_t expires, int omit_session_token,
                          char **query_out)
{
    return presign(signer, req, now, expires, omit_session_token, query_out, NULL, NULL);
}

/* For tests (declared there, as sigv4.h is shared with the HTTP layer):
 * sigv4_presign() with its canonical request and string to sign. */
s3dl_status sigv4_debug_presign(struct sigv4_signer *signer, const struct sigv4_request *req,
                                int64_t now, int64_t expires, int omit_session_token,
                                char **query_out, char **canonical_request,
                                char **string_to_sign);
s3dl_status sigv4_debug_presign(struct sigv4_signer *signer, const struct sigv4_request *req,
                                int64_t now, int64_t expires, int omit_session_token,
                                char **query_out, char **canonical_request,
                                char **string_to_sign)
{
    *canonical_request = *string_to_sign = NULL;
    return presign(signer, req, now, expires, omit_session_token, query_out, canonical_request,
                   string_to_sign);
}
