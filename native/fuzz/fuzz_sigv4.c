/* Fuzz target: the SigV4 signer takes any bytes as method-free request
 * pieces (path, query keys and values, header names and values, session
 * token) without crashing, leaking or reading outside them; what it
 * accepts comes out well formed, and the percent-encoder round-trips.
 *
 * Input: a flags byte, a counts byte, a date byte, then pieces, each a
 * length byte and that many bytes (cut short at the end of the input):
 * the path, the token, query key/value pairs, header name/value pairs. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "sigv4.h"
#include "uri_encode.h"
#include "fuzz.h"

enum {
    F_NORMALIZE = 1,      /* a non-S3 service */
    F_PRESIGN = 2,        /* presign instead of signing headers */
    F_OMIT_TOKEN = 4,     /* presign with the token outside the signature */
    F_TOKEN = 8,          /* the signer has a session token */
    F_SANITIZE = 16,      /* make header pieces valid, so signing gets past the checks */
    F_UNSIGNED = 32,      /* payload "UNSIGNED-PAYLOAD" rather than a hash */
    F_BAD_PAYLOAD = 64,   /* payload hash that is neither */
    F_SLASH = 128,        /* prefix the path with '/' */
};

enum { MAX_PAIRS = 7 };

struct input {
    const uint8_t *p;
    size_t n;
};

static uint8_t take_byte(struct input *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

/* The next piece in a heap block of exactly its size, so reading past it
 * is caught; `prefix` (0 for none) goes in front. */
static char *take_piece(struct input *in, size_t *len, char prefix)
{
    size_t n = take_byte(in);
    if (n > in->n)
        n = in->n;
    size_t extra = prefix ? 1 : 0;
    char *piece = malloc(n + extra ? n + extra : 1);
    REQUIRE(piece);
    if (prefix)
        piece[0] = prefix;
    if (n)
        memcpy(piece + extra, in->p, n);
    in->p += n;
    in->n -= n;
    *len = n + extra;
    return piece;
}

static int is_token_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* HTTP token bytes (RFC 9110 tchar) for a header name; any byte but NUL,
 * CR, LF and the other controls for a value. */
static void sanitize_header(char *name, size_t name_len, char *value, size_t value_len)
{
    static const char token[] = "abcdefghijklmnopqrstuvwxyz-XYZ";
    for (size_t i = 0; i < name_len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!is_token_char(c))
            name[i] = token[c % (sizeof(token) - 1)];
    }
    for (size_t i = 0; i < value_len; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7F)
            value[i] = c & 1 ? '\t' : ' ';
    }
}

static int equals_lower(const char *s, size_t n, const char *lower)
{
    if (n != strlen(lower))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
        if (c != lower[i])
            return 0;
    }
    return 1;
}

static int is_hex_upper(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* Only unreserved bytes, upper-case %XX escapes and the bytes in `also`. */
static int well_encoded(const char *s, size_t n, const char *also)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (n - i < 3 || !is_hex_upper(s[i + 1]) || !is_hex_upper(s[i + 2]))
                return 0;
            i += 2;
        } else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_' || c == '~' || (c && strchr(also, c)))) {
            return 0;
        }
    }
    return 1;
}

static int all_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* decode(encode(x)) == x, the counted length is the written one, and
 * decoding arbitrary bytes stays inside a buffer of their length. */
static void check_uri_round_trip(const char *raw, size_t len)
{
    for (int keep_slash = 0; keep_slash <= 1; keep_slash++) {
        size_t counted = 0, written = 0;
        REQUIRE(uri_encode(NULL, 0, &counted, raw, len, keep_slash) == 0);
        char *enc = malloc(counted + 1);
        REQUIRE(enc);
        REQUIRE(uri_encode(enc, counted + 1, &written, raw, len, keep_slash) == 0);
        REQUIRE(written == counted && enc[written] == '\0');
        REQUIRE(well_encoded(enc, written, keep_slash ? "/" : ""));
        char *dec = malloc(written ? written : 1);
        REQUIRE(dec);
        REQUIRE(uri_decode(dec, enc, written) == (long)len);
        REQUIRE(len == 0 || memcmp(dec, raw, len) == 0);
        free(dec);
        free(enc);
    }
    char *dec = malloc(len ? len : 1);
    REQUIRE(dec);
    long n = uri_decode(dec, raw, len);
    REQUIRE(n >= -1 && n <= (long)len);
    free(dec);
}

/* The canonical request's shape: method, path, query, one line per signed
 * header name in order, a blank line, the list, the payload hash. */
static void check_canonical_request(const char *creq, int normalize)
{
    const char *lines[4 + 2 * MAX_PAIRS + 8];
    size_t lens[sizeof(lines) / sizeof(lines[0])], count = 0;
    for (const char *p = creq;;) {
        const char *nl = strchr(p, '\n');
        REQUIRE(count < sizeof(lines) / sizeof(lines[0]));
        lines[count] = p;
        lens[count++] = nl ? (size_t)(nl - p) : strlen(p);
        if (!nl)
            break;
        p = nl + 1;
    }
    REQUIRE(count >= 7);
    REQUIRE(lens[1] >= 1 && lines[1][0] == '/' && well_encoded(lines[1], lens[1], "/"));
    if (normalize)
        REQUIRE(!strstr(lines[1], "//") || (size_t)(strstr(lines[1], "//") - lines[1]) >= lens[1]);
    REQUIRE(well_encoded(lines[2], lens[2], "=&"));
    size_t headers = count - 6; /* lines 3 .. count-4 */
    REQUIRE(lens[count - 3] == 0);
    const char *list = lines[count - 2];
    size_t list_len = lens[count - 2];
    for (size_t h = 0; h < headers; h++) {
        const char *name_end = memchr(list, ';', list_len);
        size_t name_len = name_end ? (size_t)(name_end - list) : list_len;
        REQUIRE(name_len > 0 && lens[3 + h] > name_len);
        REQUIRE(memcmp(lines[3 + h], list, name_len) == 0 && lines[3 + h][name_len] == ':');
        REQUIRE(h + 1 < headers ? name_end != NULL : name_end == NULL);
        if (name_end) {
            list_len -= name_len + 1;
            list = name_end + 1;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    uint8_t flags = take_byte(&in), counts = take_byte(&in), day = take_byte(&in);
    size_t query_count = counts % (MAX_PAIRS + 1), header_count = (counts >> 3) % (MAX_PAIRS + 1);
    int64_t now = day == 0xFF ? -1 : INT64_C(1440938160) + (int64_t)(day % 8) * 86399;
    int64_t expires = 1 + (int64_t)(counts >> 6) * 200000; /* 1 .. 600001 */

    size_t path_len, token_len = 0;
    char *path = take_piece(&in, &path_len, flags & F_SLASH ? '/' : 0);
    char *token = flags & F_TOKEN ? take_piece(&in, &token_len, 0) : NULL;
    int expect_ok = (flags & F_SLASH) && (flags & F_SANITIZE) && !(flags & F_BAD_PAYLOAD) &&
                    now >= 0;
    if (token) {
        char *terminated = malloc(token_len + 1);
        REQUIRE(terminated);
        memcpy(terminated, token, token_len);
        terminated[token_len] = '\0';
        free(token);
        token = terminated;
        if (flags & F_SANITIZE)
            sanitize_header(NULL, 0, token, token_len);
    }

    struct sigv4_kv query[MAX_PAIRS], headers[MAX_PAIRS + 1];
    char *owned[2 * MAX_PAIRS * 2];
    size_t owned_count = 0;
    for (size_t i = 0; i < query_count; i++) {
        size_t key_len, value_len;
        char *key = take_piece(&in, &key_len, 0);
        char *value = take_piece(&in, &value_len, 0);
        owned[owned_count++] = key;
        owned[owned_count++] = value;
        query[i] = (struct sigv4_kv){key, key_len, value, value_len};
        if (flags & F_PRESIGN && key_len > 6 && memcmp(key, "X-Amz-", 6) == 0)
            expect_ok = 0; /* may name a parameter the presigner adds */
    }
    headers[0] = (struct sigv4_kv){"Host", 4, "example.com", 11};
    for (size_t i = 1; i <= header_count; i++) {
        size_t name_len, value_len;
        char *name = take_piece(&in, &name_len, 'x');
        char *value = take_piece(&in, &value_len, 0);
        owned[owned_count++] = name;
        owned[owned_count++] = value;
        if (flags & F_SANITIZE)
            sanitize_header(name, name_len, value, value_len);
        headers[i] = (struct sigv4_kv){name, name_len, value, value_len};
        if (equals_lower(name, name_len, "x-amz-date") ||
            equals_lower(name, name_len, "x-amz-security-token"))
            expect_ok = 0;
    }

    check_uri_round_trip(path, path_len);

    static const char empty_hash[] =
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const char *payload = flags & F_BAD_PAYLOAD ? "e3b0"
                          : flags & F_UNSIGNED  ? "UNSIGNED-PAYLOAD"
                                                : empty_hash;
    struct sigv4_request req = {"GET",   path,          path_len,         query,
                                query_count, headers, header_count + 1, payload};
    struct sigv4_signer signer;
    REQUIRE(sigv4_signer_init(&signer, "AK", "SK", token, "us-east-1", "s3",
                              flags & F_NORMALIZE) == 0);
    if (flags & F_PRESIGN) {
        int omit = (flags & F_OMIT_TOKEN) != 0;
        char *query_out = NULL;
        s3dl_status st = sigv4_presign(&signer, &req, now, expires, omit, &query_out);
        REQUIRE(st == S3DL_OK || st == S3DL_E_INVALID_ARGUMENT);
        REQUIRE(st != S3DL_OK || expires <= 604800);
        REQUIRE(st == S3DL_OK || !expect_ok || expires > 604800);
        if (st == S3DL_OK) {
            size_t n = strlen(query_out);
            REQUIRE(well_encoded(query_out, n, "=&"));
            const char *sig = strstr(query_out, "&X-Amz-Signature=");
            REQUIRE(sig);
            sig += strlen("&X-Amz-Signature=");
            REQUIRE(strlen(sig) >= 64 && all_lower_hex(sig, 64));
            REQUIRE(sig[64] == '\0' ||
                    (token && omit && strncmp(sig + 64, "&X-Amz-Security-Token=", 22) == 0));
        } else {
            REQUIRE(query_out == NULL);
        }
        free(query_out);
    } else {
        struct sigv4_signed_headers out;
        s3dl_status st = sigv4_sign_headers(&signer, &req, now, &out);
        REQUIRE(st == S3DL_OK || st == S3DL_E_INVALID_ARGUMENT);
        REQUIRE(st == S3DL_OK || !expect_ok);
        char *creq = NULL, *sts = NULL;
        REQUIRE(sigv4_debug_header_signing(&signer, &req, now, &creq, &sts) == st);
        if (st == S3DL_OK) {
            const char *sig = strstr(out.authorization, ", Signature=");
            REQUIRE(strncmp(out.authorization, "AWS4-HMAC-SHA256 Credential=AK/", 31) == 0);
            REQUIRE(sig && strlen(sig + 12) == 64 && all_lower_hex(sig + 12, 64));
            REQUIRE(strlen(out.amz_date) == 16);
            check_canonical_request(creq, flags & F_NORMALIZE);
            /* The string to sign ends with the canonical request's hash. */
            char hash[CRYPTO_SHA256_HEX_LEN + 1];
            REQUIRE(crypto_sha256_hex(creq, strlen(creq), hash) == 0);
            REQUIRE(strlen(sts) > 64 && strcmp(sts + strlen(sts) - 64, hash) == 0);
        } else {
            REQUIRE(out.authorization == NULL && creq == NULL && sts == NULL);
        }
        free(out.authorization);
        free(creq);
        free(sts);
    }
    sigv4_signer_destroy(&signer);
    for (size_t i = 0; i < owned_count; i++)
        free(owned[i]);
    free(token);
    free(path);
    return 0;
}
