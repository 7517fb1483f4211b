/* See s3_error.h. */
#include "s3_error.h"

#include <string.h>

/* Finds `needle` in [hay, hay+len). */
static const char *find(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0 || len < n)
        return NULL;
    for (size_t i = 0; i + n <= len; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, n) == 0)
            return hay + i;
    return NULL;
}

/* Copies the text of <tag>...</tag> into dst (truncated, NUL-terminated),
 * turning control characters into spaces so messages stay one line. */
static void element_text(const char *body, size_t len, const char *tag, char *dst, size_t cap)
{
    char open[40], close[40];
    dst[0] = '\0';
    size_t tag_len = strlen(tag);
    if (tag_len + 4 > sizeof(open))
        return;
    memcpy(open, "<", 1);
    memcpy(open + 1, tag, tag_len);
    memcpy(open + 1 + tag_len, ">", 2);
    memcpy(close, "</", 2);
    memcpy(close + 2, tag, tag_len);
    memcpy(close + 2 + tag_len, ">", 2);
    const char *start = find(body, len, open);
    if (!start)
        return;
    start += strlen(open);
    size_t remaining = len - (size_t)(start - body);
    const char *end = find(start, remaining, close);
    if (!end)
        return;
    size_t n = (size_t)(end - start);
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)start[i];
        dst[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    dst[n] = '\0';
}

int s3_error_is_root(const char *body, size_t len)
{
    size_t i = 0;
    for (int rounds = 0; rounds < 8 && i < len; rounds++) { /* bounded */
        while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
            i++;
        if (len - i >= 2 && body[i] == '<' && (body[i + 1] == '?' || body[i + 1] == '!')) {
            const char *end = memchr(body + i, '>', len - i);
            if (!end)
                return 0;
            i = (size_t)(end - body) + 1; /* skip a declaration or comment */
            continue;
        }
        break;
    }
    return len - i >= 7 && memcmp(body + i, "<Error>", 7) == 0;
}

/* Copies the string value of the first `"name": "..."` member found in
 * [body, body+len) into dst; escapes are reduced to the escaped character
 * and control characters become spaces.  Bounded by len and cap. */
static void json_string_member(const char *body, size_t len, const char *name, char *dst,
                               size_t cap)
{
    dst[0] = '\0';
    char quoted[40];
    size_t n = strlen(name);
    if (n + 3 > sizeof(quoted))
        return;
    quoted[0] = '"';
    memcpy(quoted + 1, name, n);
    quoted[n + 1] = '"';
    quoted[n + 2] = '\0';
    const char *at = find(body, len, quoted);
    if (!at)
        return;
    size_t i = (size_t)(at - body) + n + 2;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i >= len || body[i] != ':')
        return;
    i++;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i >= len || body[i] != '"')
        return;
    i++;
    size_t out = 0;
    while (i < len && body[i] != '"' && out + 1 < cap) {
        unsigned char c = (unsigned char)body[i++];
        if (c == '\\' && i < len)
            c = (unsigned char)body[i++];
        dst[out++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    dst[out] = '\0';
}

/* GCS JSON API errors: {"error": {"code": 404, "message": "...",
 * "errors": [{"reason": "notFound", ...}]}}. */
static int json_error_parse(const char *body, size_t len, struct s3_error_fields *out)
{
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i >= len || body[i] != '{')
        return 0;
    const char *error = find(body, len, "\"error\"");
    if (!error)
        return 0;
    size_t rest = len - (size_t)(error - body);
    json_string_member(error, rest, "reason", out->code, sizeof(out->code));
    json_string_member(error, rest, "message", out->message, sizeof(out->message));
    return 1;
}

int s3_error_parse(const char *body, size_t len, struct s3_error_fields *out)
{
    memset(out, 0, sizeof(*out));
    if (!body || len == 0)
        return 0;
    const char *error = find(body, len, "<Error>");
    if (!error)
        return json_error_parse(body, len, out);
    size_t rest = len - (size_t)(error - body);
    element_text(error, rest, "Code", out->code, sizeof(out->code));
    element_text(error, rest, "Message", out->message, sizeof(out->message));
    element_text(error, rest, "RequestId", out->request_id, sizeof(out->request_id));
    return 1;
}
