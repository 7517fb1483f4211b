/* Batches: building, submitting, waiting, and handing results over. */
#define _GNU_SOURCE
#include "batch.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aligned_buf.h"
#include "client.h"
#include "engine.h"

#define DEFAULT_BATCH_IN_FLIGHT 64
#define MAX_TARGET_LEN 4096
/* About 31 years: far beyond any real deadline, and safe to turn into ns. */
#define MAX_TIMEOUT_MS 1000000000000LL

void item_fail(struct s3dl_item *item, s3dl_status status, int sys_errno, const char *fmt, ...)
{
    item->status = status;
    if (!item->detail)
        item->detail = calloc(1, sizeof(*item->detail));
    if (!item->detail)
        return; /* the status alone still reaches the caller */
    item->detail->status = status;
    item->detail->sys_errno = sys_errno;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(item->detail->message, sizeof(item->detail->message), fmt, ap);
    va_end(ap);
}

s3dl_status s3dl_batch_new(s3dl_engine *engine, s3dl_batch **out)
{
    if (!engine || !out)
        return S3DL_E_INVALID_ARGUMENT;
    s3dl_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return S3DL_E_NOMEM;
    b->engine = engine;
    b->max_in_flight = DEFAULT_BATCH_IN_FLIGHT;
    atomic_init(&b->cancel_requested, 0);
    pthread_mutex_init(&b->mutex, NULL);
    pthread_cond_init(&b->finished, NULL);
    *out = b;
    return S3DL_OK;
}

s3dl_status s3dl_batch_setopt(s3dl_batch *b, s3dl_batch_option option, int64_t value)
{
    if (!b)
        return S3DL_E_INVALID_ARGUMENT;
    if (b->state != BATCH_BUILDING)
        return S3DL_E_STATE;
    switch (option) {
    case S3DL_BATCH_MAX_IN_FLIGHT:
        if (value < 1 || value > (1 << 20))
            return S3DL_E_INVALID_ARGUMENT;
        b->max_in_flight = value;
        return S3DL_OK;
    case S3DL_BATCH_NOTIFY_TAG:
        b->has_notify_tag = 1;
        b->notify_tag = (uint64_t)value;
        return S3DL_OK;
    case S3DL_BATCH_TIMEOUT_MS:
        if (value < 0 || value > MAX_TIMEOUT_MS)
            return S3DL_E_INVALID_ARGUMENT;
        b->timeout_ms = value;
        return S3DL_OK;
    default:
        return S3DL_E_INVALID_ARGUMENT;
    }
}

static s3dl_status reserve_items(s3dl_batch *b, size_t extra)
{
    if (extra > SIZE_MAX / sizeof(struct s3dl_item) - b->count)
        return S3DL_E_NOMEM;
    size_t need = b->count + extra;
    if (need <= b->capacity)
        return S3DL_OK;
    size_t cap = b->capacity ? b->capacity : 16;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    struct s3dl_item *grown = realloc(b->items, cap * sizeof(*grown));
    if (!grown)
        return S3DL_E_NOMEM;
    b->items = grown;
    b->capacity = cap;
    return S3DL_OK;
}

static int valid_op(s3dl_op op)
{
    return op == S3DL_OP_GET || op == S3DL_OP_PUT || op == S3DL_OP_STAT ||
           op == S3DL_OP_DELETE || op == S3DL_OP_POST;
}

static int is_http_target(const char *target)
{
    return strncmp(target, "http://", 7) == 0 || strncmp(target, "https://", 8) == 0;
}

/* Targets must be absolute paths or http(s) URLs, bounded, and free of
 * control bytes and spaces that would confuse logs or the request line;
 * the binding validates URIs more strictly. */
static int valid_target(const char *target)
{
    if (!target || (target[0] != '/' && !is_http_target(target)))
        return 0;
    size_t len = strnlen(target, MAX_TARGET_LEN + 1);
    if (len > MAX_TARGET_LEN)
        return 0;
    if (target[0] != '/')
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)target[i] <= 0x20 || target[i] == 0x7f)
                return 0;
    return 1;
}

static s3dl_status init_item(s3dl_batch *b, struct s3dl_item *item, s3dl_op op,
                             const char *target, uint64_t offset, uint64_t length,
                             const void *data, size_t data_len, uint32_t flags)
{
    if (!valid_target(target))
        return S3DL_E_INVALID_ARGUMENT;
    int http = is_http_target(target);
    if (item != b->items && b->is_http != http)
        return S3DL_E_INVALID_ARGUMENT; /* one kind per batch */
    if (!http && op == S3DL_OP_POST)
        return S3DL_E_INVALID_ARGUMENT;
    if ((op == S3DL_OP_PUT || op == S3DL_OP_POST) && data_len > 0 && !data)
        return S3DL_E_INVALID_ARGUMENT;
    if ((flags & S3DL_F_RANGE) && length != S3DL_LENGTH_TO_END && offset > UINT64_MAX - length)
        return S3DL_E_INVALID_ARGUMENT;
    memset(item, 0, sizeof(*item));
    item->target = strdup(target);
    if (!item->target)
        return S3DL_E_NOMEM;
    item->op = op;
    item->flags = flags;
    item->offset = offset;
    item->length = length;
    item->data = data;
    item->data_len = data_len;
    item->batch = b;
    item->is_http = http;
    item->status = S3DL_E_INTERNAL; /* overwritten by the executor */
    b->is_http = http;
    return S3DL_OK;
}

static void release_item(struct s3dl_item *item)
{
    for (size_t i = 0; i < item->header_count; i++)
        free(item->headers[i]);
    free(item->headers);
    free(item->target);
    aligned_buf_free(item->alloc);
    free(item->stat);
    free(item->detail);
    free(item->response_headers);
    memset(item, 0, sizeof(*item));
}

s3dl_status s3dl_batch_add_many(s3dl_batch *b, s3dl_op op, size_t count,
                                const char *const *targets, const uint64_t *offsets,
                                const uint64_t *lengths, const void *const *datas,
                                const size_t *data_lens, uint32_t flags)
{
    if (!b || !valid_op(op) || (count > 0 && !targets))
        return S3DL_E_INVALID_ARGUMENT;
    if (b->state != BATCH_BUILDING)
        return S3DL_E_STATE;
    s3dl_status st = reserve_items(b, count);
    if (st != S3DL_OK)
        return st;
    /* Items point back at their batch only; the array may move while
     * building, so nothing else may hold item pointers before submit. */
    for (size_t i = 0; i < count; i++) {
        st = init_item(b, &b->items[b->count + i], op, targets[i], offsets ? offsets[i] : 0,
                       lengths ? lengths[i] : S3DL_LENGTH_TO_END, datas ? datas[i] : NULL,
                       data_lens ? data_lens[i] : 0, flags);
        if (st != S3DL_OK) {
            while (i-- > 0)
                release_item(&b->items[b->count + i]);
            return st;
        }
    }
    b->count += count;
    return S3DL_OK;
}

s3dl_status s3dl_batch_add(s3dl_batch *b, s3dl_op op, const char *target, uint64_t offset,
                           uint64_t length, const void *data, size_t data_len, uint32_t flags,
                           size_t *index_out)
{
    const char *targets[1] = {target};
    const void *datas[1] = {data};
    s3dl_status st =
        s3dl_batch_add_many(b, op, 1, targets, &offset, &length, datas, &data_len, flags);
    if (st == S3DL_OK && index_out)
        *index_out = b->count - 1;
    return st;
}

s3dl_status s3dl_batch_add_header(s3dl_batch *b, size_t index, const char *header)
{
    if (!b || !header || index >= b->count || !b->items[index].is_http)
        return S3DL_E_INVALID_ARGUMENT;
    if (b->state != BATCH_BUILDING)
        return S3DL_E_STATE;
    const char *colon = strchr(header, ':');
    size_t len = strnlen(header, 8193);
    if (!colon || colon == header || len > 8192)
        return S3DL_E_INVALID_ARGUMENT;
    for (size_t i = 0; i < len; i++)
        if (header[i] == '\r' || header[i] == '\n')
            return S3DL_E_INVALID_ARGUMENT; /* no header injection */
    struct s3dl_item *item = &b->items[index];
    char **grown = realloc(item->headers, (item->header_count + 1) * sizeof(char *));
    if (!grown)
        return S3DL_E_NOMEM;
    item->headers = grown;
    item->headers[item->header_count] = strdup(header);
    if (!item->headers[item->header_count])
        return S3DL_E_NOMEM;
    item->header_count++;
    return S3DL_OK;
}

s3dl_status s3dl_batch_set_destination(s3dl_batch *b, size_t index, void *dst, size_t cap)
{
    if (!b || index >= b->count || !dst || b->items[index].op != S3DL_OP_GET)
        return S3DL_E_INVALID_ARGUMENT;
    if (b->state != BATCH_BUILDING)
        return S3DL_E_STATE;
    b->items[index].dest = dst;
    b->items[index].dest_cap = cap;
    return S3DL_OK;
}

/* Ordinary pages: transfers into a destination have its pages faulted in
 * by idle workers (see http_start), which is steadier than huge pages. */
void *s3dl_alloc(size_t size) { return aligned_buf_alloc(64, size, 0); }

s3dl_status s3dl_batch_set_client(s3dl_batch *b, s3dl_client *client)
{
    if (!b || !client)
        return S3DL_E_INVALID_ARGUMENT;
    if (b->state != BATCH_BUILDING)
        return S3DL_E_STATE;
    client_ref(client);
    if (b->client)
        client_unref(b->client);
    b->client = client;
    return S3DL_OK;
}

size_t s3dl_batch_count(const s3dl_batch *b) { return b ? b->count : 0; }

s3dl_status s3dl_batch_submit(s3dl_batch *b)
{
    if (!b)
        return S3DL_E_INVALID_ARGUMENT;
    pthread_mutex_lock(&b->mutex);
    if (b->state != BATCH_BUILDING) {
        pthread_mutex_unlock(&b->mutex);
        return S3DL_E_STATE;
    }
    b->state = BATCH_SUBMITTED;
    pthread_mutex_unlock(&b->mutex);
    s3dl_status st = b->client ? client_freeze(b->client) : S3DL_OK;
    if (st == S3DL_OK)
        st = engine_submit(b->engine, b);
    if (st != S3DL_OK) {
        pthread_mutex_lock(&b->mutex);
        b->state = BATCH_BUILDING;
        pthread_mutex_unlock(&b->mutex);
    }
    return st;
}

s3dl_status s3dl_batch_wait(s3dl_batch *b, int64_t timeout_ms)
{
    if (!b)
        return S3DL_E_INVALID_ARGUMENT;
    pthread_mutex_lock(&b->mutex);
    if (b->state == BATCH_BUILDING) {
        pthread_mutex_unlock(&b->mutex);
        return S3DL_E_STATE;
    }
    struct timespec until;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    s3dl_status st = S3DL_OK;
    while (b->state != BATCH_DONE) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&b->finished, &b->mutex);
        } else if (pthread_cond_timedwait(&b->finished, &b->mutex, &until) == ETIMEDOUT) {
            st = b->state == BATCH_DONE ? S3DL_OK : S3DL_E_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&b->mutex);
    return st;
}

int s3dl_batch_done(s3dl_batch *b)
{
    if (!b)
        return 0;
    pthread_mutex_lock(&b->mutex);
    int done = b->state == BATCH_DONE;
    pthread_mutex_unlock(&b->mutex);
    return done;
}

s3dl_status s3dl_batch_cancel(s3dl_batch *b)
{
    if (!b)
        return S3DL_E_INVALID_ARGUMENT;
    atomic_store(&b->cancel_requested, 1);
    pthread_mutex_lock(&b->mutex);
    int running = b->state == BATCH_SUBMITTED;
    pthread_mutex_unlock(&b->mutex);
    if (running)
        engine_notice_cancel(b->engine, b);
    return S3DL_OK;
}

static int batch_is_done(const s3dl_batch *b)
{
    s3dl_batch *mutable_batch = (s3dl_batch *)b; /* the lock is not part of the value */
    pthread_mutex_lock(&mutable_batch->mutex);
    int done = b->state == BATCH_DONE;
    pthread_mutex_unlock(&mutable_batch->mutex);
    return done;
}

s3dl_status s3dl_batch_take_results(s3dl_batch *b, size_t count, s3dl_status *statuses,
                                    void **allocs, uint8_t **datas, uint64_t *lens)
{
    if (!b || count > b->count)
        return S3DL_E_INVALID_ARGUMENT;
    if (!batch_is_done(b))
        return S3DL_E_STATE;
    for (size_t i = 0; i < count; i++) {
        struct s3dl_item *item = &b->items[i];
        if (statuses)
            statuses[i] = item->status;
        if (allocs) {
            allocs[i] = item->alloc;
            if (datas)
                datas[i] = item->result;
            if (lens)
                lens[i] = item->result_len;
            item->alloc = NULL;
            item->result = NULL;
            item->result_len = 0;
        } else {
            if (datas)
                datas[i] = item->result;
            if (lens)
                lens[i] = item->result_len;
        }
    }
    return S3DL_OK;
}

s3dl_status s3dl_batch_detail(const s3dl_batch *b, size_t index, s3dl_detail *out)
{
    if (!b || !out || index >= b->count)
        return S3DL_E_INVALID_ARGUMENT;
    if (!batch_is_done(b))
        return S3DL_E_STATE;
    const struct s3dl_item *item = &b->items[index];
    if (item->detail) {
        *out = *item->detail;
    } else {
        memset(out, 0, sizeof(*out));
        out->status = item->status;
        snprintf(out->message, sizeof(out->message), "%s", s3dl_strerror(item->status));
    }
    return S3DL_OK;
}

s3dl_status s3dl_batch_stat(const s3dl_batch *b, size_t index, s3dl_stat *out)
{
    if (!b || !out || index >= b->count)
        return S3DL_E_INVALID_ARGUMENT;
    if (!batch_is_done(b))
        return S3DL_E_STATE;
    const struct s3dl_item *item = &b->items[index];
    if (!item->stat)
        return item->status == S3DL_OK ? S3DL_E_STATE : item->status;
    *out = *item->stat;
    return S3DL_OK;
}

s3dl_status s3dl_batch_response_headers(const s3dl_batch *b, size_t index, const char **out,
                                        size_t *len)
{
    if (!b || !out || !len || index >= b->count)
        return S3DL_E_INVALID_ARGUMENT;
    if (!batch_is_done(b))
        return S3DL_E_STATE;
    const struct s3dl_item *item = &b->items[index];
    *out = item->response_headers;
    *len = item->response_headers ? item->response_headers_len : 0;
    return S3DL_OK;
}

s3dl_status s3dl_batch_timings(const s3dl_batch *b, size_t count, int64_t *out)
{
    if (!b || !out || count > b->count)
        return S3DL_E_INVALID_ARGUMENT;
    if (!batch_is_done(b))
        return S3DL_E_STATE;
    for (size_t i = 0; i < count; i++) {
        const struct s3dl_item *item = &b->items[i];
        out[3 * i] = item->t_start_ns;
        out[3 * i + 1] = item->t_first_byte_ns;
        out[3 * i + 2] = item->t_end_ns;
    }
    return S3DL_OK;
}

/* ---- operation-log rows ---------------------------------------------------- */

struct log_buf {
    char *data;
    size_t len, cap;
    int failed;
};

static void log_put(struct log_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 4096;
        while (n > cap - b->len)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

/* A field: tabs, CR and LF become spaces, so rows stay one line. */
static void log_field(struct log_buf *b, const char *s, size_t n)
{
    size_t start = b->len;
    log_put(b, s, n);
    if (b->failed)
        return;
    for (size_t i = start; i < b->len; i++)
        if (b->data[i] == '\t' || b->data[i] == '\n' || b->data[i] == '\r')
            b->data[i] = ' ';
}

static void log_u64(struct log_buf *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
    log_put(b, tmp, (size_t)n);
}

/* RFC 3339 UTC with nanoseconds; the date part is formatted once per second. */
struct log_clock {
    int64_t second;
    char prefix[32];
    size_t prefix_len;
};

static void log_time(struct log_buf *b, struct log_clock *c, int64_t ns)
{
    if (ns <= 0)
        return;
    int64_t sec = ns / 1000000000LL, rest = ns % 1000000000LL;
    if (sec != c->second) {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        c->prefix_len = strftime(c->prefix, sizeof(c->prefix), "%Y-%m-%dT%H:%M:%S.", &tm);
        c->second = sec;
    }
    log_put(b, c->prefix, c->prefix_len);
    char digits[10];
    for (int i = 8; i >= 0; i--) {
        digits[i] = (char)('0' + rest % 10);
        rest /= 10;
    }
    digits[9] = 'Z';
    log_put(b, digits, 10);
}

/* The next '\n'-separated line of [*p, end). */
static const char *next_line(const char **p, const char *end, size_t *len)
{
    const char *start = *p;
    const char *nl = start < end ? memchr(start, '\n', (size_t)(end - start)) : NULL;
    const char *stop = nl ? nl : end;
    *len = start < end ? (size_t)(stop - start) : 0;
    *p = nl ? nl + 1 : end;
    return start;
}

static const char *op_name(s3dl_op op)
{
    switch (op) {
    case S3DL_OP_GET: return "GET";
    case S3DL_OP_PUT: return "PUT";
    case S3DL_OP_STAT: return "HEAD";
    case S3DL_OP_DELETE: return "DELETE";
    case S3DL_OP_POST: return "POST";
    default: return "OP";
    }
}

s3dl_status s3dl_batch_format_log(const s3dl_batch *b, size_t count, uint64_t first_index,
                                  const char *thread, const char *client_id, const char *files,
                                  size_t files_len, const char *labels, size_t labels_len,
                                  const uint64_t *sizes, char **out, size_t *out_len)
{
    if (!b || !thread || !client_id || !files || !sizes || !out || !out_len || count > b->count)
        return S3DL_E_INVALID_ARGUMENT;
    if (!batch_is_done(b))
        return S3DL_E_STATE;
    struct log_buf buf = {NULL, 0, 0, 0};
    struct log_clock clock = {-1, {0}, 0};
    const char *file_at = files, *files_end = files + files_len;
    const char *label_at = labels, *labels_end = labels ? labels + labels_len : NULL;
    for (size_t i = 0; i < count; i++) {
        const struct s3dl_item *item = &b->items[i];
        size_t n;
        log_u64(&buf, first_index + i);
        log_put(&buf, "\t", 1);
        log_field(&buf, thread, strlen(thread));
        log_put(&buf, "\t", 1);
        const char *label = NULL;
        size_t label_len = 0;
        if (labels)
            label = next_line(&label_at, labels_end, &label_len);
        if (label_len)
            log_field(&buf, label, label_len);
        else
            log_put(&buf, op_name(item->op), strlen(op_name(item->op)));
        log_put(&buf, "\t", 1);
        log_field(&buf, client_id, strlen(client_id));
        log_put(&buf, "\t1\t", 3);
        log_u64(&buf, sizes[i]);
        log_put(&buf, "\t", 1);
        const char *target = item->target;
        const char *scheme_end = strstr(target, "://");
        if (item->is_http && scheme_end) {
            const char *slash = strchr(scheme_end + 3, '/');
            log_field(&buf, target, slash ? (size_t)(slash - target) : strlen(target));
        } else {
            log_put(&buf, "file://", 7);
        }
        log_put(&buf, "\t", 1);
        const char *file = next_line(&file_at, files_end, &n);
        log_field(&buf, file, n);
        log_put(&buf, "\t", 1);
        if (item->status != S3DL_OK) {
            const char *why = s3dl_strerror(item->status);
            log_put(&buf, why, strlen(why));
        }
        log_put(&buf, "\t", 1);
        log_time(&buf, &clock, item->t_start_ns);
        log_put(&buf, "\t", 1);
        log_time(&buf, &clock, item->t_first_byte_ns);
        log_put(&buf, "\t", 1);
        log_time(&buf, &clock, item->t_end_ns);
        log_put(&buf, "\t", 1);
        log_u64(&buf, item->t_start_ns > 0 && item->t_end_ns > item->t_start_ns
                          ? (uint64_t)(item->t_end_ns - item->t_start_ns) : 0);
        log_put(&buf, "\n", 1);
    }
    if (buf.failed) {
        free(buf.data);
        return S3DL_E_NOMEM;
    }
    *out = buf.data ? buf.data : calloc(1, 1);
    *out_len = buf.len;
    return *out ? S3DL_OK : S3DL_E_NOMEM;
}

int64_t batch_wall_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void s3dl_batch_free(s3dl_batch *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mutex);
    int running = b->state == BATCH_SUBMITTED;
    pthread_mutex_unlock(&b->mutex);
    if (running) {
        s3dl_batch_cancel(b);
        s3dl_batch_wait(b, -1);
    }
    for (size_t i = 0; i < b->count; i++)
        release_item(&b->items[i]);
    free(b->items);
    if (b->client)
        client_unref(b->client);
    pthread_mutex_destroy(&b->mutex);
    pthread_cond_destroy(&b->finished);
    free(b);
}
