/* SigV4: every case of the AWS signing test suites (botocore's copy and
 * aws-c-auth's, read at run time from the vectors directory given on the
 * command line), the S3 examples of the AWS documentation, argument
 * checks, the signing-key cache under threads, and the percent-encoder. */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "check.h"
#include "crypto.h"
#include "sigv4.h"
#include "uri_encode.h"

/* Defined in sigv4.c for tests: sigv4_presign() plus what it signed. */
s3dl_status sigv4_debug_presign(struct sigv4_signer *signer, const struct sigv4_request *req,
                                int64_t now, int64_t expires, int omit_session_token,
                                char **query_out, char **canonical_request,
                                char **string_to_sign);

#define SUITE_ACCESS_KEY "AKIDEXAMPLE"
#define SUITE_SECRET_KEY "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_REGION "us-east-1"
#define SUITE_SERVICE "service"
#define SUITE_TIME INT64_C(1440938160) /* 2015-08-30T12:36:00Z */
#define SUITE_AMZ_DATE "20150830T123600Z"

/* ---- files ---- */

/* The whole file, NUL-terminated (*len excludes the NUL); NULL if absent. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *data = malloc(cap);
    while (data) {
        n += fread(data + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *grown = realloc(data, cap * 2);
        if (!grown) {
            free(data);
            data = NULL;
            break;
        }
        data = grown;
        cap *= 2;
    }
    fclose(f);
    if (data) {
        data[n] = '\0';
        if (len)
            *len = n;
    }
    return data;
}

/* An expected-output file without its trailing line break(s). */
static char *read_expected(const char *dir, const char *name)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return NULL;
    size_t len = 0;
    char *text = read_file(path, &len);
    while (text && len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        text[--len] = '\0';
    return text;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the subdirectories of `dir`; free each and the array. */
static char **list_subdirs(const char *dir, size_t *count)
{
    *count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    char **names = NULL;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
        if (entry->d_name[0] == '.' || !is_dir(path))
            continue;
        char **grown = realloc(names, (*count + 1) * sizeof(*names));
        if (!grown)
            break;
        names = grown;
        names[(*count)++] = strdup(entry->d_name);
    }
    closedir(d);
    if (names)
        qsort(names, *count, sizeof(*names), compare_names);
    return names;
}

static void free_names(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

/* ---- the test suites' raw HTTP requests ---- */

enum { MAX_FIELDS = 32 };

struct parsed_request {
    char *text; /* the file; the fields below point into it or into `own` */
    char method[16];
    char *path;
    size_t path_len;
    struct sigv4_kv query[MAX_FIELDS];
    size_t query_count;
    struct sigv4_kv headers[MAX_FIELDS];
    size_t header_count;
    char *folded[MAX_FIELDS]; /* header values rebuilt from continuation lines */
    char payload_hash[CRYPTO_SHA256_HEX_LEN + 1];
};

static void free_request(struct parsed_request *r)
{
    for (size_t i = 0; i < MAX_FIELDS; i++)
        free(r->folded[i]);
    free(r->text);
}

/* Ends the line at `p` (LF or CRLF); returns the start of the next one, or
 * NULL at the end of the text. */
static char *cut_line(char *p)
{
    char *nl = strchr(p, '\n');
    if (nl) {
        *nl = '\0';
        if (nl > p && nl[-1] == '\r')
            nl[-1] = '\0';
        return nl + 1;
    }
    size_t n = strlen(p);
    if (n && p[n - 1] == '\r')
        p[n - 1] = '\0';
    return NULL;
}

/* Parses "METHOD target HTTP/1.1", header lines (a line starting with a
 * space or tab continues the previous value, joined by one space), a blank
 * line and the body.  The target may hold raw spaces (get-space), so it
 * runs to the last space.  Query keys and values are percent-decoded: the
 * signer takes raw ones.  X-Amz-Date and X-Amz-Security-Token are dropped,
 * as the signer adds them.  Returns 0, or -1 on a malformed file. */
static int parse_request(const char *path, struct parsed_request *r)
{
    memset(r, 0, sizeof(*r));
    size_t len = 0;
    r->text = read_file(path, &len);
    if (!r->text)
        return -1;
    char *line = r->text;
    char *next = cut_line(line);
    char *first_space = strchr(line, ' ');
    char *last_space = strrchr(line, ' ');
    if (!first_space || first_space == last_space ||
        (size_t)(first_space - line) >= sizeof(r->method))
        return -1;
    memcpy(r->method, line, (size_t)(first_space - line));
    char *target = first_space + 1;
    *last_space = '\0';
    char *question = strchr(target, '?');
    r->path = target;
    r->path_len = question ? (size_t)(question - target) : strlen(target);
    if (question) {
        for (char *pair = question + 1; *pair;) {
            char *amp = strchr(pair, '&');
            char *end = amp ? amp : pair + strlen(pair);
            if (end > pair) {
                if (r->query_count == MAX_FIELDS)
                    return -1;
                char *eq = memchr(pair, '=', (size_t)(end - pair));
                char *value = eq ? eq + 1 : end;
                long key_len = uri_decode(pair, pair, (size_t)((eq ? eq : end) - pair));
                long value_len = uri_decode(value, value, (size_t)(end - value));
                if (key_len < 0 || value_len < 0)
                    return -1;
                r->query[r->query_count++] =
                    (struct sigv4_kv){pair, (size_t)key_len, value, (size_t)value_len};
            }
            if (!amp)
                break;
            pair = amp + 1;
        }
    }
    const char *body = "";
    size_t body_len = 0;
    struct sigv4_kv *last = NULL;
    while (next) {
        line = next;
        next = cut_line(line);
        if (!*line) {
            if (next) {
                body = next;
                body_len = len - (size_t)(next - r->text);
            }
            break;
        }
        if ((line[0] == ' ' || line[0] == '\t') && last) {
            size_t i = (size_t)(last - r->headers);
            size_t old = last->value_len, add = strlen(line);
            char *joined = malloc(old + 1 + add + 1);
            if (!joined)
                return -1;
            memcpy(joined, last->value, old);
            joined[old] = ' ';
            memcpy(joined + old + 1, line, add + 1);
            free(r->folded[i]);
            r->folded[i] = joined;
            last->value = joined;
            last->value_len = old + 1 + add;
            continue;
        }
        char *colon = strchr(line, ':');
        if (!colon)
            return -1;
        *colon = '\0';
        if (!strcasecmp(line, "X-Amz-Date") || !strcasecmp(line, "X-Amz-Security-Token")) {
            last = NULL;
            continue;
        }
        if (r->header_count == MAX_FIELDS)
            return -1;
        last = &r->headers[r->header_count++];
        *last = (struct sigv4_kv){line, strlen(line), colon + 1, strlen(colon + 1)};
    }
    return crypto_sha256_hex(body, body_len, r->payload_hash);
}

static void to_request(struct parsed_request *p, struct sigv4_request *req)
{
    *req = (struct sigv4_request){p->method,  p->path,   p->path_len,       p->query,
                                  p->query_count, p->headers, p->header_count, p->payload_hash};
}

/* Compares `got` with the expected file; reports a difference. */
static int same_as_file(const char *case_name, const char *dir, const char *file,
                        const char *got)
{
    char *want = read_expected(dir, file);
    int same = want && got && strcmp(want, got) == 0;
    if (!same)
        fprintf(stderr, "%s: %s differs\n--- expected\n%s\n--- got\n%s\n", case_name, file,
                want ? want : "(missing)", got ? got : "(null)");
    free(want);
    return same;
}

/* The value after "Signature=" in an Authorization header or query. */
static const char *signature_of(const char *s)
{
    const char *p = s ? strstr(s, "Signature=") : NULL;
    return p ? p + 10 : "";
}

/* ---- botocore's copy of the suite ---- */

/* Whether `path` names a test case: a directory holding <name>/<name>.req. */
static int is_suite_case(const char *path)
{
    const char *name = strrchr(path, '/') + 1;
    char req[4096];
    if (snprintf(req, sizeof(req), "%s/%s.req", path, name) >= (int)sizeof(req))
        return 0;
    struct stat st;
    return stat(req, &st) == 0;
}

/* The session token of a case: the one its canonical request signs. */
static char *suite_token(const char *dir, const char *name)
{
    char file[512];
    snprintf(file, sizeof(file), "%s.creq", name);
    char *creq = read_expected(dir, file);
    char *token = NULL;
    const char *line = creq ? strstr(creq, "\nx-amz-security-token:") : NULL;
    if (line) {
        line += strlen("\nx-amz-security-token:");
        token = strndup(line, strcspn(line, "\n"));
    }
    free(creq);
    return token;
}

static int run_suite_case(const char *dir, const char *name)
{
    char path[4096], file[512];
    if (snprintf(path, sizeof(path), "%s/%s.req", dir, name) >= (int)sizeof(path))
        return 0;
    struct parsed_request parsed;
    if (parse_request(path, &parsed) != 0) {
        fprintf(stderr, "%s: cannot parse %s\n", name, path);
        free_request(&parsed);
        return 0;
    }
    char *token = suite_token(dir, name);
    struct sigv4_signer signer;
    int ok = sigv4_signer_init(&signer, SUITE_ACCESS_KEY, SUITE_SECRET_KEY, token, SUITE_REGION,
                               SUITE_SERVICE, 1) == 0;
    struct sigv4_request req;
    to_request(&parsed, &req);
    char *creq = NULL, *sts = NULL;
    struct sigv4_signed_headers signed_headers = {{0}, NULL};
    if (ok) {
        ok = sigv4_debug_header_signing(&signer, &req, SUITE_TIME, &creq, &sts) == S3DL_OK &&
             sigv4_sign_headers(&signer, &req, SUITE_TIME, &signed_headers) == S3DL_OK;
        if (!ok)
            fprintf(stderr, "%s: signing failed\n", name);
        sigv4_signer_destroy(&signer);
    }
    if (ok) {
        snprintf(file, sizeof(file), "%s.creq", name);
        ok &= same_as_file(name, dir, file, creq);
        snprintf(file, sizeof(file), "%s.sts", name);
        ok &= same_as_file(name, dir, file, sts);
        snprintf(file, sizeof(file), "%s.authz", name);
        ok &= same_as_file(name, dir, file, signed_headers.authorization);
        ok &= strcmp(signed_headers.amz_date, SUITE_AMZ_DATE) == 0;
    }
    free(creq);
    free(sts);
    free(signed_headers.authorization);
    free(token);
    free_request(&parsed);
    return ok;
}

/* Walks the suite (cases nest one level under groups such as
 * normalize-path/); counts cases run and passed. */
static void run_suite_dir(const char *dir, int *run, int *passed)
{
    size_t count = 0;
    char **names = list_subdirs(dir, &count);
    for (size_t i = 0; i < count; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (!is_suite_case(path)) {
            run_suite_dir(path, run, passed);
            continue;
        }
        (*run)++;
        int ok = run_suite_case(path, names[i]);
        *passed += ok;
        CHECK(ok);
    }
    free_names(names, count);
}

/* ---- aws-c-auth's copy: header and presigned-query signing ---- */

/* A value of the flat context.json: the text after `"key":`, or NULL. */
static const char *json_value(const char *json, const char *key)
{
    char pattern[128];
    snprintf(pattern, sizeof(pattern), "\"%s\"", key);
    const char *p = strstr(json, pattern);
    if (!p)
        return NULL;
    p += strlen(pattern);
    while (*p == ' ' || *p == ':')
        p++;
    return p;
}

static char *json_string(const char *json, const char *key)
{
    const char *p = json_value(json, key);
    if (!p || *p != '"')
        return NULL;
    return strndup(p + 1, strcspn(p + 1, "\""));
}

static int json_bool(const char *json, const char *key, int fallback)
{
    const char *p = json_value(json, key);
    return p ? strncmp(p, "true", 4) == 0 : fallback;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "2015-08-30T12:36:00Z" as seconds since the epoch, or -1. */
static int64_t parse_timestamp(const char *s)
{
    int y, mo, d, h, mi, sec;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ", &y, &mo, &d, &h, &mi, &sec) != 6)
        return -1;
    return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
}

struct crt_context {
    char *access_key, *secret_key, *token, *region, *service;
    int normalize, sign_body, omit_session_token;
    int64_t now, expires;
};

static int load_context(const char *dir, struct crt_context *c)
{
    memset(c, 0, sizeof(*c));
    char *json = read_expected(dir, "context.json");
    if (!json)
        return -1;
    c->access_key = json_string(json, "access_key_id");
    c->secret_key = json_string(json, "secret_access_key");
    c->token = json_string(json, "token");
    c->region = json_string(json, "region");
    c->service = json_string(json, "service");
    c->normalize = json_bool(json, "normalize", 1);
    c->sign_body = json_bool(json, "sign_body", 0);
    c->omit_session_token = json_bool(json, "omit_session_token", 0);
    char *timestamp = json_string(json, "timestamp");
    c->now = parse_timestamp(timestamp);
    const char *expires = json_value(json, "expiration_in_seconds");
    c->expires = expires ? strtoll(expires, NULL, 10) : 0;
    free(timestamp);
    free(json);
    return c->access_key && c->secret_key && c->region && c->service && c->now >= 0 ? 0 : -1;
}

static void free_context(struct crt_context *c)
{
    free(c->access_key);
    free(c->secret_key);
    free(c->token);
    free(c->region);
    free(c->service);
}

/* The header-signed request's Authorization value. */
static char *crt_authorization(const char *dir)
{
    char *signed_request = read_expected(dir, "header-signed-request.txt");
    const char *line = signed_request ? strstr(signed_request, "\nAuthorization:") : NULL;
    char *value = NULL;
    if (line) {
        line += strlen("\nAuthorization:");
        value = strndup(line, strcspn(line, "\r\n"));
    }
    free(signed_request);
    return value;
}

/* Header signing.  With omit_session_token the token is sent but not
 * signed; sigv4_sign_headers() always signs the signer's token, so that
 * case signs with a signer that has none. */
static int crt_header_case(const char *name, const char *dir, const struct crt_context *c,
                           struct parsed_request *parsed)
{
    struct sigv4_signer signer;
    const char *token = c->omit_session_token ? NULL : c->token;
    if (sigv4_signer_init(&signer, c->access_key, c->secret_key, token, c->region, c->service,
                          c->normalize) != 0)
        return 0;
    struct sigv4_request req;
    to_request(parsed, &req);
    /* sign_body: the signer's caller sends the payload hash as a header. */
    struct sigv4_kv headers[MAX_FIELDS + 1];
    memcpy(headers, parsed->headers, parsed->header_count * sizeof(headers[0]));
    if (c->sign_body) {
        headers[req.header_count++] = (struct sigv4_kv){
            "X-Amz-Content-Sha256", 20, parsed->payload_hash, CRYPTO_SHA256_HEX_LEN};
    }
    req.headers = headers;
    char *creq = NULL, *sts = NULL, *want_auth = crt_authorization(dir);
    struct sigv4_signed_headers out = {{0}, NULL};
    int ok = sigv4_debug_header_signing(&signer, &req, c->now, &creq, &sts) == S3DL_OK &&
             sigv4_sign_headers(&signer, &req, c->now, &out) == S3DL_OK;
    if (!ok)
        fprintf(stderr, "%s: header signing failed\n", name);
    if (ok) {
        ok &= same_as_file(name, dir, "header-canonical-request.txt", creq);
        ok &= same_as_file(name, dir, "header-string-to-sign.txt", sts);
        ok &= same_as_file(name, dir, "header-signature.txt", signature_of(out.authorization));
        if (!want_auth || strcmp(want_auth, out.authorization) != 0) {
            fprintf(stderr, "%s: Authorization differs\n  expected %s\n  got      %s\n", name,
                    want_auth ? want_auth : "(missing)", out.authorization);
            ok = 0;
        }
    }
    free(want_auth);
    free(creq);
    free(sts);
    free(out.authorization);
    sigv4_signer_destroy(&signer);
    return ok;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Splits a query string at '&' in place, percent-decodes each pair (the
 * expected URLs keep raw UTF-8 where ours encode it) and sorts them. */
static size_t sorted_pairs(char *query, char **pairs, size_t max)
{
    size_t n = 0;
    for (char *save = NULL, *p = strtok_r(query, "&", &save); p && n < max;
         p = strtok_r(NULL, "&", &save)) {
        long len = uri_decode(p, p, strlen(p));
        if (len < 0)
            continue; /* then the counts differ */
        p[len] = '\0';
        pairs[n++] = p;
    }
    qsort(pairs, n, sizeof(*pairs), compare_strings);
    return n;
}

/* The presigned URL must carry the same parameters as aws-c-auth's, which
 * orders them differently; compare them sorted. */
static int same_query_parameters(const char *name, const char *dir, const char *query)
{
    char *signed_request = read_expected(dir, "query-signed-request.txt");
    char *want = NULL;
    if (signed_request) {
        char *q = strchr(signed_request, '?');
        if (q)
            want = strndup(q + 1, strcspn(q + 1, " "));
    }
    char *got = strdup(query);
    char *want_pairs[64], *got_pairs[64];
    size_t nw = want ? sorted_pairs(want, want_pairs, 64) : 0;
    size_t ng = got ? sorted_pairs(got, got_pairs, 64) : 0;
    int same = want && got && nw == ng;
    for (size_t i = 0; same && i < nw; i++)
        same = strcmp(want_pairs[i], got_pairs[i]) == 0;
    if (!same)
        fprintf(stderr, "%s: presigned query parameters differ from query-signed-request.txt: %s\n",
                name, query);
    free(got);
    free(want);
    free(signed_request);
    return same;
}

static int crt_query_case(const char *name, const char *dir, const struct crt_context *c,
                          struct parsed_request *parsed)
{
    struct sigv4_signer signer;
    if (sigv4_signer_init(&signer, c->access_key, c->secret_key, c->token, c->region, c->service,
                          c->normalize) != 0)
        return 0;
    struct sigv4_request req;
    to_request(parsed, &req);
    char *query = NULL, *creq = NULL, *sts = NULL;
    int ok = sigv4_debug_presign(&signer, &req, c->now, c->expires, c->omit_session_token, &query,
                                 &creq, &sts) == S3DL_OK;
    if (!ok)
        fprintf(stderr, "%s: presigning failed\n", name);
    if (ok) {
        ok &= same_as_file(name, dir, "query-canonical-request.txt", creq);
        ok &= same_as_file(name, dir, "query-string-to-sign.txt", sts);
        char signature[CRYPTO_SHA256_HEX_LEN + 1] = "";
        const char *p = strstr(query, "&X-Amz-Signature=");
        if (p)
            snprintf(signature, sizeof(signature), "%s", p + strlen("&X-Amz-Signature="));
        ok &= same_as_file(name, dir, "query-signature.txt", signature);
        ok &= same_query_parameters(name, dir, query);
    }
    free(query);
    free(creq);
    free(sts);
    sigv4_signer_destroy(&signer);
    return ok;
}

static void run_crt_suite(const char *root, int *run, int *passed)
{
    size_t count = 0;
    char **names = list_subdirs(root, &count);
    for (size_t i = 0; i < count; i++) {
        char dir[4096], path[4096 + 16];
        if (snprintf(dir, sizeof(dir), "%s/%s", root, names[i]) >= (int)sizeof(dir) ||
            snprintf(path, sizeof(path), "%s/request.txt", dir) >= (int)sizeof(path))
            continue;
        struct crt_context c;
        struct parsed_request parsed;
        memset(&parsed, 0, sizeof(parsed));
        (*run)++;
        int ok = load_context(dir, &c) == 0 && parse_request(path, &parsed) == 0;
        if (!ok)
            fprintf(stderr, "%s: cannot read context.json or request.txt\n", names[i]);
        if (ok) {
            /* Both halves run even when the first fails, to report both. */
            int header_ok = crt_header_case(names[i], dir, &c, &parsed);
            int query_ok = crt_query_case(names[i], dir, &c, &parsed);
            ok = header_ok && query_ok;
        }
        free_request(&parsed);
        free_context(&c);
        *passed += ok;
        CHECK(ok);
    }
    free_names(names, count);
}

/* ---- the percent-encoder ---- */

static void test_uri_encode_every_byte(void)
{
    for (int keep_slash = 0; keep_slash <= 1; keep_slash++) {
        for (int b = 0; b < 256; b++) {
            char src = (char)b, dst[8];
            size_t len = 0;
            CHECK_EQ_INT(uri_encode(dst, sizeof(dst), &len, &src, 1, keep_slash), 0);
            int plain = (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') ||
                        b == '-' || b == '.' || b == '_' || b == '~' || (keep_slash && b == '/');
            char want[8];
            if (plain)
                snprintf(want, sizeof(want), "%c", b);
            else
                snprintf(want, sizeof(want), "%%%02X", b);
            CHECK(strcmp(dst, want) == 0);
            CHECK_EQ_INT(len, strlen(want));
            size_t counted = 5;
            CHECK_EQ_INT(uri_encode(NULL, 0, &counted, &src, 1, keep_slash), 0);
            CHECK_EQ_INT(counted, 5 + strlen(want));
            char back[8];
            CHECK_EQ_INT(uri_decode(back, dst, len), 1);
            CHECK_EQ_INT((unsigned char)back[0], b);
            /* Lower-case escapes decode too. */
            char lower[4];
            snprintf(lower, sizeof(lower), "%%%02x", b);
            CHECK_EQ_INT(uri_decode(back, lower, 3), 1);
            CHECK_EQ_INT((unsigned char)back[0], b);
        }
    }
    /* All bytes at once, appended after existing text, then decoded in place. */
    char all[256], buf[1024] = "x=";
    for (int b = 0; b < 256; b++)
        all[b] = (char)b;
    size_t len = 2;
    CHECK_EQ_INT(uri_encode(buf, sizeof(buf), &len, all, sizeof(all), 1), 0);
    CHECK_EQ_INT(len, 2 + 67 * 1 + 189 * 3); /* 66 unreserved and '/' kept */
    CHECK_EQ_INT(strlen(buf), len);
    CHECK(memcmp(buf, "x=%00%01", 8) == 0);
    CHECK_EQ_INT(uri_decode(buf + 2, buf + 2, len - 2), 256);
    CHECK(memcmp(buf + 2, all, sizeof(all)) == 0);
}

static void test_uri_encode_buffer_limits(void)
{
    const char *src = "a b/c"; /* encodes to "a%20b%2Fc" (9) or "a%20b/c" (7) */
    char buf[16];
    for (size_t cap = 0; cap <= 10; cap++) {
        memset(buf, '#', sizeof(buf));
        buf[0] = '\0';
        size_t len = 0;
        int rc = uri_encode(buf, cap, &len, src, 5, 0);
        if (cap >= 10) {
            CHECK_EQ_INT(rc, 0);
            CHECK(strcmp(buf, "a%20b%2Fc") == 0);
            CHECK_EQ_INT(len, 9);
        } else {
            CHECK_EQ_INT(rc, -1); /* no room for the text and its NUL */
            CHECK_EQ_INT(len, 0);
            CHECK_EQ_INT(buf[0], '\0');
            CHECK_EQ_INT(buf[1], '#'); /* nothing written */
        }
    }
    /* Appending: existing text counts against the capacity. */
    strcpy(buf, "0123456");
    size_t len = 7;
    CHECK_EQ_INT(uri_encode(buf, 15, &len, src, 5, 1), 0);
    CHECK(strcmp(buf, "0123456a%20b/c") == 0);
    CHECK_EQ_INT(len, 14);
    CHECK_EQ_INT(uri_encode(buf, 15, &len, "x", 1, 1), -1);
    CHECK_EQ_INT(len, 14);
    CHECK(strcmp(buf, "0123456a%20b/c") == 0);
    len = 20; /* already past the capacity */
    CHECK_EQ_INT(uri_encode(buf, 15, &len, "", 0, 1), -1);
    len = 0;
    CHECK_EQ_INT(uri_encode(buf, 1, &len, "", 0, 1), 0);
    CHECK_EQ_INT(buf[0], '\0');
    len = SIZE_MAX - 1; /* counting cannot overflow */
    CHECK_EQ_INT(uri_encode(NULL, 0, &len, "%", 1, 1), -1);
    CHECK_EQ_INT(len, SIZE_MAX - 1);
}

static void test_uri_decode_malformed(void)
{
    const char *bad[] = {"%", "%4", "a%", "%G1", "%4G", "%%41", "ab%2", "% 1", "%-1"};
    char out[16];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(uri_decode(out, bad[i], strlen(bad[i])), -1);
    CHECK_EQ_INT(uri_decode(out, "", 0), 0);
    CHECK_EQ_INT(uri_decode(out, "a+b%2fc%2F", 10), 6);
    CHECK(memcmp(out, "a+b/c/", 6) == 0); /* '+' is not a space in RFC 3986 */
    /* Only `len` bytes are read: the escape cut off by it is malformed. */
    CHECK_EQ_INT(uri_decode(out, "%41", 2), -1);
    CHECK_EQ_INT(uri_decode(out, "%41%", 3), 1);
}

/* ---- the signer beyond the suites ---- */

static const char *const empty_hash =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/* The GET Object example of the S3 SigV4 documentation ("Authenticating
 * Requests: Using the Authorization Header"): no path normalization,
 * service s3, a signed x-amz-content-sha256. */
static void test_s3_example(void)
{
    struct sigv4_signer signer;
    CHECK_EQ_INT(sigv4_signer_init(&signer, "AKIAIOSFODNN7EXAMPLE",
                                   "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", NULL, "us-east-1",
                                   "s3", 0),
                 0);
    struct sigv4_kv headers[] = {
        {"Host", 4, "examplebucket.s3.amazonaws.com", 30},
        {"Range", 5, "bytes=0-9", 9},
        {"x-amz-content-sha256", 20, empty_hash, 64},
    };
    struct sigv4_request req = {"GET", "/test.txt", 9, NULL, 0, headers, 3, empty_hash};
    struct sigv4_signed_headers out;
    CHECK_EQ_INT(sigv4_sign_headers(&signer, &req, INT64_C(1369353600), &out), S3DL_OK);
    CHECK(strcmp(out.amz_date, "20130524T000000Z") == 0);
    CHECK(out.authorization &&
          strcmp(out.authorization,
                 "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                 "aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                 "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41") == 0);
    free(out.authorization);

    /* The presigned-URL example of the same documentation. */
    char *query = NULL;
    req.header_count = 1;
    req.payload_hash = "UNSIGNED-PAYLOAD";
    CHECK_EQ_INT(sigv4_presign(&signer, &req, INT64_C(1369353600), 86400, 0, &query), S3DL_OK);
    CHECK(query &&
          strcmp(query,
                 "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524"
                 "%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
                 "X-Amz-SignedHeaders=host&X-Amz-Signature="
                 "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404") == 0);
    free(query);

    /* S3 keeps dot segments and repeated slashes, and encodes once. */
    struct sigv4_request odd = {"GET", "/b//x/../y z/./%", 16, NULL, 0, headers, 1, empty_hash};
    char *creq = NULL, *sts = NULL;
    CHECK_EQ_INT(sigv4_debug_header_signing(&signer, &odd, 0, &creq, &sts), S3DL_OK);
    CHECK(creq && strncmp(creq, "GET\n/b//x/../y%20z/./%25\n\n", 26) == 0);
    free(creq);
    free(sts);
    sigv4_signer_destroy(&signer);
}

static void test_rejects_bad_requests(void)
{
    struct sigv4_signer signer;
    CHECK_EQ_INT(sigv4_signer_init(&signer, "AK", "SK", "TOKEN", "r", "s3", 0), 0);
    struct sigv4_kv host = {"Host", 4, "h", 1};
    struct sigv4_request good = {"GET", "/", 1, NULL, 0, &host, 1, "UNSIGNED-PAYLOAD"};
    struct sigv4_signed_headers out;
    char *query = NULL;
    CHECK_EQ_INT(sigv4_sign_headers(&signer, &good, 0, &out), S3DL_OK);
    CHECK(out.authorization &&
          strstr(out.authorization, "SignedHeaders=host;x-amz-date;x-amz-security-token,"));
    free(out.authorization);

    struct sigv4_request r = good;
    r.header_count = 0; /* no Host */
    CHECK_EQ_INT(sigv4_sign_headers(&signer, &r, 0, &out), S3DL_E_INVALID_ARGUMENT);
    CHECK(out.authorization == NULL);
    r = good;
    r.payload_hash = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
    CHECK_EQ_INT(sigv4_sign_headers(&signer, &r, 0, &out), S3DL_E_INVALID_ARGUMENT);
    r.payload_hash = "e3b0";
    CHECK_EQ_INT(sigv4_sign_headers(&signer, &r, 0, &out), S3DL_E_INVALID_ARGUMENT);
    r.payload_hash = NULL;
    CHECK_EQ_INT(sigv4_sign_headers(&signer, &r, 0, &out), S3DL_E_INVALID_ARGUMENT);
    r = good;
    r.path = "x";
    CHECK_EQ_INT(sigv4_sign_headers(&signer, &r, 0, &out), S3DL_E_INVALID_ARGUMENT);
    r.path_len = 0;
    CHECK_EQ_INT(sigv4_sign_headers(&signer, &r, 0, &out), S3DL_E_INVALID_ARGUMENT);
    r = good;
    r.method = "G T";
    CHECK_EQ_INT(sigv4_sign_headers(&signer, &r, 0, &out), S3DL_E_INVALID_ARGUMENT);
    r = good;
    CHECK_EQ_INT(sigv4_sign_headers(&signer, &r, -1, &out), S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(sigv4_sign_headers(&signer, &r, INT64_C(253402300800), &out),
                 S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(sigv4_sign_headers(&signer, &r, INT64_C(253402300799), &out), S3DL_OK);
    CHECK(strcmp(out.amz_date, "99991231T235959Z") == 0);
    free(out.authorization);

    /* Headers the signer adds itself, and headers that could split a line. */
    struct sigv4_kv bad_headers[][2] = {
        {host, {"X-Amz-Date", 10, "20150830T123600Z", 16}},
        {host, {"x-amz-security-token", 20, "t", 1}},
        {host, {"X-Bad", 5, "a\r\nInjected: 1", 14}},
        {host, {"X-Bad", 5, "a\0b", 3}},
        {host, {"X Bad", 5, "v", 1}},
        {host, {"X-Bad:", 6, "v", 1}},
        {host, {"X;Bad", 5, "v", 1}}, /* would split SignedHeaders */
        {host, {"X-B\xe1" "d", 5, "v", 1}},
        {host, {"", 0, "v", 1}},
    };
    for (size_t i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
        r = good;
        r.headers = bad_headers[i];
        r.header_count = 2;
        CHECK_EQ_INT(sigv4_sign_headers(&signer, &r, 0, &out), S3DL_E_INVALID_ARGUMENT);
        CHECK_EQ_INT(sigv4_presign(&signer, &r, 0, 60, 0, &query), S3DL_E_INVALID_ARGUMENT);
        CHECK(query == NULL);
    }
    /* Tabs are whitespace; bytes above 0x7F pass through untouched. */
    struct sigv4_kv folded[] = {host, {"X-Tab", 5, "\t a\t\tb \xe1\x88\xb4\t", 11}};
    r = good;
    r.headers = folded;
    r.header_count = 2;
    char *creq = NULL, *sts = NULL;
    CHECK_EQ_INT(sigv4_debug_header_signing(&signer, &r, 0, &creq, &sts), S3DL_OK);
    CHECK(creq && strstr(creq, "\nx-tab:a b \xe1\x88\xb4\n"));
    free(creq);
    free(sts);

    /* Presigning: the lifetime range, and the parameters it adds itself. */
    CHECK_EQ_INT(sigv4_presign(&signer, &good, 0, 0, 0, &query), S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(sigv4_presign(&signer, &good, 0, 604801, 0, &query), S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(sigv4_presign(&signer, &good, 0, 604800, 0, &query), S3DL_OK);
    CHECK(query && strstr(query, "&X-Amz-Expires=604800&"));
    free(query);
    struct sigv4_kv taken = {"X-Amz-Signature", 15, "x", 1};
    r = good;
    r.query = &taken;
    r.query_count = 1;
    CHECK_EQ_INT(sigv4_presign(&signer, &r, 0, 60, 0, &query), S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(sigv4_sign_headers(&signer, &r, 0, &out), S3DL_OK); /* fine when not presigning */
    free(out.authorization);
    sigv4_signer_destroy(&signer);
}

/* The session token in a presigned query: signed in canonical order, or
 * appended after the signature when omitted from it. */
static void test_presign_session_token(void)
{
    struct sigv4_signer signer;
    CHECK_EQ_INT(sigv4_signer_init(&signer, "AK", "SK", "to/ken+", "r", "s3", 0), 0);
    struct sigv4_kv host = {"host", 4, "h", 1};
    struct sigv4_kv query[] = {{"z", 1, "", 0}, {"a b", 3, "c&d", 3}};
    struct sigv4_request req = {"GET", "/k", 2, query, 2, &host, 1, "UNSIGNED-PAYLOAD"};
    char *signed_in = NULL, *appended = NULL;
    CHECK_EQ_INT(sigv4_presign(&signer, &req, 0, 60, 0, &signed_in), S3DL_OK);
    CHECK_EQ_INT(sigv4_presign(&signer, &req, 0, 60, 1, &appended), S3DL_OK);
    const char *credential = "X-Amz-Credential=AK%2F19700101%2Fr%2Fs3%2Faws4_request";
    char want[1024];
    snprintf(want, sizeof(want),
             "X-Amz-Algorithm=AWS4-HMAC-SHA256&%s&X-Amz-Date=19700101T000000Z&X-Amz-Expires=60"
             "&X-Amz-Security-Token=to%%2Fken%%2B&X-Amz-SignedHeaders=host&a%%20b=c%%26d&z=&"
             "X-Amz-Signature=",
             credential);
    CHECK(signed_in && strncmp(signed_in, want, strlen(want)) == 0);
    CHECK(signed_in && strlen(signed_in) == strlen(want) + 64);
    snprintf(want, sizeof(want),
             "X-Amz-Algorithm=AWS4-HMAC-SHA256&%s&X-Amz-Date=19700101T000000Z&X-Amz-Expires=60"
             "&X-Amz-SignedHeaders=host&a%%20b=c%%26d&z=&X-Amz-Signature=",
             credential);
    CHECK(appended && strncmp(appended, want, strlen(want)) == 0);
    CHECK(appended && strcmp(appended + strlen(want) + 64, "&X-Amz-Security-Token=to%2Fken%2B") == 0);
    free(signed_in);
    free(appended);
    sigv4_signer_destroy(&signer);
}

/* The signing key is cached per date: signing across a date change, back
 * and forth, from several threads, matches a fresh signer every time. */
enum { DATES = 3, THREADS = 4, ROUNDS = 300 };
static const int64_t dates[DATES] = {INT64_C(1440938160), INT64_C(1441024560), INT64_C(1369353600)};
static char *expected_auth[DATES];

struct cache_worker {
    struct sigv4_signer *signer;
    int mismatches;
    int seed;
};

static struct sigv4_request cache_request(void)
{
    static const struct sigv4_kv host = {"Host", 4, "example.amazonaws.com", 21};
    return (struct sigv4_request){"GET", "/", 1, NULL, 0, &host, 1, empty_hash};
}

static void *cache_worker_run(void *arg)
{
    struct cache_worker *w = arg;
    struct sigv4_request req = cache_request();
    for (int i = 0; i < ROUNDS; i++) {
        int d = (i + w->seed) % DATES;
        struct sigv4_signed_headers out;
        if (sigv4_sign_headers(w->signer, &req, dates[d], &out) != S3DL_OK ||
            strcmp(out.authorization, expected_auth[d]) != 0)
            w->mismatches++;
        free(out.authorization);
    }
    return NULL;
}

static void test_signing_key_cache(void)
{
    struct sigv4_request req = cache_request();
    for (int d = 0; d < DATES; d++) {
        struct sigv4_signer fresh;
        CHECK_EQ_INT(sigv4_signer_init(&fresh, SUITE_ACCESS_KEY, SUITE_SECRET_KEY, NULL,
                                       SUITE_REGION, SUITE_SERVICE, 1),
                     0);
        struct sigv4_signed_headers out;
        CHECK_EQ_INT(sigv4_sign_headers(&fresh, &req, dates[d], &out), S3DL_OK);
        expected_auth[d] = out.authorization;
        sigv4_signer_destroy(&fresh);
    }
    /* get-vanilla's signature, as a cross-check of the first date. */
    CHECK(expected_auth[0] &&
          strcmp(signature_of(expected_auth[0]),
                 "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31") == 0);
    struct sigv4_signer shared;
    CHECK_EQ_INT(sigv4_signer_init(&shared, SUITE_ACCESS_KEY, SUITE_SECRET_KEY, NULL,
                                   SUITE_REGION, SUITE_SERVICE, 1),
                 0);
    struct cache_worker workers[THREADS];
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++) {
        workers[t] = (struct cache_worker){&shared, 0, t};
        CHECK_EQ_INT(pthread_create(&threads[t], NULL, cache_worker_run, &workers[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        CHECK_EQ_INT(workers[t].mismatches, 0);
    }
    sigv4_signer_destroy(&shared);
    for (int d = 0; d < DATES; d++)
        free(expected_auth[d]);
}

int main(int argc, char **argv)
{
    test_uri_encode_every_byte();
    test_uri_encode_buffer_limits();
    test_uri_decode_malformed();
    test_s3_example();
    test_rejects_bad_requests();
    test_presign_session_token();
    test_signing_key_cache();

    char suite[4096], crt[4096];
    snprintf(suite, sizeof(suite), "%s/sigv4", argc > 1 ? argv[1] : ".");
    snprintf(crt, sizeof(crt), "%s/sigv4-crt", argc > 1 ? argv[1] : ".");
    if (argc < 2 || !is_dir(suite) || !is_dir(crt)) {
        int failed = check_report("test_sigv4");
        printf("skipped: vectors not found\n");
        return failed ? failed : 77;
    }
    int run = 0, passed = 0;
    run_suite_dir(suite, &run, &passed);
    printf("sigv4 (botocore suite): %d of %d cases passed, 0 skipped\n", passed, run);
    CHECK(run > 0);
    int crt_run = 0, crt_passed = 0;
    run_crt_suite(crt, &crt_run, &crt_passed);
    printf("sigv4-crt (aws-c-auth suite): %d of %d cases passed (header and presigned query)\n",
           crt_passed, crt_run);
    CHECK(crt_run > 0);
    return check_report("test_sigv4");
}
