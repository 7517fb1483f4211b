/* HTTP transfers: one libcurl easy handle per attempt, signed just before
 * it starts (so every retry is re-signed), bodies written into one buffer
 * of the announced size, error bodies captured (bounded) for the service's
 * error code, and one retry decision (retry.c). */
#define _GNU_SOURCE
#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "aligned_buf.h"
#include "crypto.h"
#include "http_date.h"
#include "log.h"
#include "retry.h"
#include "s3_error.h"
#include "sigv4.h"
#include "url.h"

#define ERROR_BODY_CAP (64u * 1024)
#define GROWABLE_START (64u * 1024)
/* Responses without a length grow up to this; beyond it the attempt fails
 * rather than exhausting memory on a misbehaving server. */
#define GROWABLE_CAP ((size_t)8 << 30)
/* Bodies this large get their buffer faulted in by idle workers. */
#define PREFAULT_THRESHOLD ((uint64_t)32 << 20)
/* curl 7.88 allocates its receive buffer for every transfer.  Below glibc's
 * 128 KiB mmap threshold it comes from the heap, already mapped; at 512 KiB
 * each transfer got a fresh mapping and faulted it in (about 7 us of CPU
 * per 16 KiB GET, 20-45 page faults per 1 MiB GET). */
#define RECEIVE_BUFFER_BYTES (120L * 1024)
/* PUT bodies go through libcurl's upload buffer; at 120 KiB (not the 64 KiB
 * default, not past the mmap threshold) 1 MiB PUTs took 0.51-0.54 client
 * CPU-s/GB against 0.51-0.72. */
#define UPLOAD_BUFFER_BYTES (120L * 1024)
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct http_transfer {
    struct s3dl_item *item;
    struct http_engine *http;
    CURL *easy;
    uint64_t client_serial;   /* whose settings `easy` carries */
    struct curl_slist *headers;
    uint8_t *buf;
    size_t len;
    size_t cap;
    int exact;
    int borrowed;             /* buf is the caller's destination */
    int overflow;
    char *err;
    size_t err_len;
    long status;
    int headers_complete;     /* the blank line that ends the header block arrived */
    int have_length;
    uint64_t content_length;
    int have_total;
    uint64_t total;           /* object size from Content-Range */
    uint64_t range_start;     /* first byte of a 206 answer, from Content-Range */
    int64_t retry_after_ms;
    char etag[128];
    char content_type[128];
    char request_id[128];
    char last_modified[64];
    char checksum_crc32c[64];   /* x-amz-checksum-crc32c or x-goog-hash crc32c */
    char content_md5[64];       /* Content-MD5 of the response (Azure) */
    char ms_error_code[64];     /* x-ms-error-code: Azure's code when there is no body */
    int checksum_mismatch;
    int dialect;                /* the client's S3DL_DIALECT_* */
    char *header_block;         /* S3DL_F_KEEP_HEADERS: raw lines of the last response */
    size_t header_block_len;
};

#define HEADER_BLOCK_CAP (16u * 1024)

/* ---- engine ----------------------------------------------------------- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* libcurl says which sockets to watch and for what. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct http_engine *http = userp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(http->epoll_fd, EPOLL_CTL_DEL, fd, NULL); /* may be closed already */
        return 0;
    }
    struct epoll_event ev = {.events = 0, .data.fd = fd};
    if (what & CURL_POLL_IN)
        ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev.events |= EPOLLOUT;
    /* socketp is what we assigned when adding: non-NULL means "in the set"
     * (libcurl forgets it on REMOVE), so each change is one syscall. */
    if (socketp) {
        if (epoll_ctl(http->epoll_fd, EPOLL_CTL_MOD, fd, &ev) == 0)
            return 0;
        if (errno != ENOENT)
            return -1;
    }
    if (epoll_ctl(http->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return -1; /* libcurl fails the transfers of this socket */
    curl_multi_assign(http->multi, fd, http);
    return 0;
}

/* libcurl asks to be called back after `timeout_ms` (-1: never). */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct http_engine *http = userp;
    http->timer_due_ns = timeout_ms < 0 ? -1 : now_ns() + (int64_t)timeout_ms * 1000000LL;
    return 0;
}

int http_engine_init(struct http_engine *http, long max_connections,
                     struct file_pool_counters *counters)
{
    memset(http, 0, sizeof(*http));
    http->timer_due_ns = -1;
    http->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    http->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    http->multi = curl_multi_init();
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = http->wake_fd};
    if (http->epoll_fd < 0 || http->wake_fd < 0 || !http->multi ||
        epoll_ctl(http->epoll_fd, EPOLL_CTL_ADD, http->wake_fd, &ev) != 0) {
        http_engine_cleanup(http);
        return -1;
    }
    /* Keep one idle connection per possible transfer, so a batch that
     * finishes does not close what the next one will reuse. */
    curl_multi_setopt(http->multi, CURLMOPT_MAXCONNECTS, max_connections);
    curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(http->multi, CURLMOPT_SOCKETDATA, http);
    curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(http->multi, CURLMOPT_TIMERDATA, http);
    http->counters = counters;
    return 0;
}

void http_engine_cleanup(struct http_engine *http)
{
    for (size_t i = 0; i < http->idle_count; i++)
        curl_easy_cleanup(http->idle[i].easy);
    free(http->idle);
    if (http->multi)
        curl_multi_cleanup(http->multi);
    if (http->epoll_fd > 0)
        close(http->epoll_fd);
    if (http->wake_fd > 0)
        close(http->wake_fd);
    memset(http, 0, sizeof(*http));
}

void http_wake(struct http_engine *http)
{
    if (!http->multi)
        return; /* not started (or a forked child's copy): nothing to wake */
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: the engine will wake. */
    while (write(http->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

void http_drive_timers(struct http_engine *http)
{
    int running = 0;
    if (http->timer_due_ns >= 0 && http->timer_due_ns <= now_ns()) {
        http->timer_due_ns = -1; /* libcurl sets it again if it needs one */
        curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
}

void http_wait_and_drive(struct http_engine *http, int timeout_ms)
{
    if (http->timer_due_ns >= 0) {
        int64_t until = (http->timer_due_ns - now_ns() + 999999) / 1000000;
        if (until < timeout_ms)
            timeout_ms = until < 0 ? 0 : (int)until;
    }
    struct epoll_event events[64];
    int n = epoll_wait(http->epoll_fd, events, 64, timeout_ms);
    int running = 0;
    for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd;
        if (fd == http->wake_fd) {
            uint64_t value;
            while (read(fd, &value, sizeof(value)) < 0 && errno == EINTR) {
            }
            continue;
        }
        int mask = 0;
        if (events[i].events & (EPOLLIN | EPOLLHUP))
            mask |= CURL_CSELECT_IN;
        if (events[i].events & EPOLLOUT)
            mask |= CURL_CSELECT_OUT;
        if (events[i].events & EPOLLERR)
            mask |= CURL_CSELECT_ERR;
        curl_multi_socket_action(http->multi, fd, mask, &running);
    }
    http_drive_timers(http);
}

static size_t on_header(char *line, size_t size, size_t count, void *userdata);
static size_t on_body(char *data, size_t size, size_t count, void *userdata);

/* A fixed socket receive buffer, set before connect so the window scale
 * covers it.  Linux autotuning grows the buffer from 128 KiB per round trip
 * of reading, which on a short path with many connections rarely happens:
 * the window stayed small, the server sent each 1 MiB body in slivers and
 * woke this side for every one.  With 4 MiB, 512 x 1 MiB GETs from loopback
 * nginx went from 2.4-2.6 to 3.2-3.5 GB/s, and nginx's CPU per GB fell from
 * 0.22-0.32 to 0.09-0.10 s.  Failure is harmless: the kernel default stays. */
static int on_sockopt(void *userp, curl_socket_t fd, curlsocktype purpose)
{
    const struct http_engine *http = userp;
    if (purpose == CURLSOCKTYPE_IPCXN)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &http->socket_rcvbuf, sizeof(http->socket_rcvbuf));
    return CURL_SOCKOPT_OK;
}

/* Options that never change, and those a client fixes.  They stay set on
 * a reused handle, so a transfer for the same client as the handle's last
 * one sets only its own options: curl_easy_reset and two dozen setopts
 * per request (strdups of the CA path among them) showed in profiles of
 * small GETs. */
static void set_client_options(struct http_engine *http, CURL *e,
                               const struct s3dl_client *client)
{
    if (http->socket_rcvbuf > 0) {
        curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, on_sockopt);
        curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, http);
    }
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, RECEIVE_BUFFER_BYTES);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, UPLOAD_BUFFER_BYTES);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, client->connect_timeout_ms);
    if (client->request_timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, client->request_timeout_ms);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (client->low_speed_timeout_ms + 999) / 1000);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, client->verify_tls ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, client->verify_tls ? 2L : 0L);
    if (client->ca_bundle)
        curl_easy_setopt(e, CURLOPT_CAINFO, client->ca_bundle);
}

/* A handle carrying `client`'s settings: an idle one that last served it if
 * there is one, else any idle one reset and set up, else a new one. */
static CURL *take_easy(struct http_engine *http, const struct s3dl_client *client)
{
    for (size_t i = http->idle_count; i-- > 0;) {
        if (http->idle[i].client_serial == client->serial) {
            CURL *e = http->idle[i].easy;
            http->idle[i] = http->idle[--http->idle_count];
            return e;
        }
    }
    CURL *e;
    if (http->idle_count > 0) {
        e = http->idle[--http->idle_count].easy;
        curl_easy_reset(e); /* another client's settings (CA bundle, timeouts) must not leak */
    } else {
        e = curl_easy_init();
        if (!e)
            return NULL;
    }
    set_client_options(http, e, client);
    return e;
}

static void give_back_easy(struct http_engine *http, CURL *easy, uint64_t client_serial)
{
    /* Nothing may point at the finished transfer's memory while idle. */
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, NULL);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, NULL);
    if (http->idle_count == http->idle_capacity) {
        size_t cap = http->idle_capacity ? http->idle_capacity * 2 : 16;
        struct idle_easy *grown = realloc(http->idle, cap * sizeof(*grown));
        if (!grown) {
            curl_easy_cleanup(easy);
            return;
        }
        http->idle = grown;
        http->idle_capacity = cap;
    }
    http->idle[http->idle_count++] = (struct idle_easy){easy, client_serial};
}

static void transfer_free(struct http_engine *http, struct http_transfer *t)
{
    if (!t)
        return;
    if (t->easy) {
        curl_multi_remove_handle(http->multi, t->easy);
        give_back_easy(http, t->easy, t->client_serial);
    }
    /* The header lines hold the session token and the signature: wipe them. */
    for (struct curl_slist *p = t->headers; p; p = p->next)
        if (strncasecmp(p->data, "X-Amz-Security-Token:", 21) == 0 ||
            strncasecmp(p->data, "Authorization:", 14) == 0)
            crypto_wipe(p->data, strlen(p->data));
    curl_slist_free_all(t->headers);
    if (!t->borrowed)
        aligned_buf_free(t->buf);
    free(t->err);
    free(t->header_block);
    free(t);
}

/* ---- callbacks -------------------------------------------------------- */

static void copy_trimmed(char *dst, size_t cap, const char *src, size_t len)
{
    while (len && (src[len - 1] == '\r' || src[len - 1] == '\n' || src[len - 1] == ' '))
        len--;
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static int header_is(const char *line, size_t len, const char *name, const char **value,
                     size_t *value_len)
{
    size_t n = strlen(name);
    if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
        return 0;
    const char *v = line + n + 1;
    size_t vl = len - n - 1;
    while (vl && (*v == ' ' || *v == '\t')) {
        v++;
        vl--;
    }
    *value = v;
    *value_len = vl;
    return 1;
}

/* Appends one raw header line to the kept block, if the item asked for
 * it; lines past the cap are dropped (the block stays well-formed). */
static void keep_header_line(struct http_transfer *t, const char *line, size_t len)
{
    if (!(t->item->flags & S3DL_F_KEEP_HEADERS))
        return;
    if (!t->header_block && !(t->header_block = malloc(HEADER_BLOCK_CAP)))
        return;
    if (len > HEADER_BLOCK_CAP - t->header_block_len)
        return;
    memcpy(t->header_block + t->header_block_len, line, len);
    t->header_block_len += len;
}

/* Copies the base64 value of `crc32c=` out of an x-goog-hash header value
 * ("crc32c=AAAAAA==,md5=..."); the server may also send one hash per
 * header line. */
static void goog_hash_crc32c(char *dst, size_t cap, const char *v, size_t vl)
{
    for (size_t i = 0; i + 7 <= vl; i++) {
        if ((i == 0 || v[i - 1] == ',' || v[i - 1] == ' ') && strncasecmp(v + i, "crc32c=", 7) == 0) {
            size_t start = i + 7, end = start;
            while (end < vl && v[end] != ',' && v[end] != ' ' && v[end] != '\r' && v[end] != '\n')
                end++;
            copy_trimmed(dst, cap, v + start, end - start);
            return;
        }
    }
}

static size_t on_header(char *line, size_t size, size_t count, void *userdata)
{
    struct http_transfer *t = userdata;
    size_t len = size * count;
    if (!t->item->t_first_byte_ns)
        t->item->t_first_byte_ns = batch_wall_clock_ns();
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        /* A new response (after a 100 Continue, say): forget the last one. */
        t->have_length = t->have_total = 0;
        t->headers_complete = 0;
        t->etag[0] = t->content_type[0] = t->request_id[0] = t->last_modified[0] = '\0';
        t->checksum_crc32c[0] = t->content_md5[0] = t->ms_error_code[0] = '\0';
        t->retry_after_ms = 0;
        t->header_block_len = 0;
        keep_header_line(t, line, len);
        return len;
    }
    keep_header_line(t, line, len);
    if ((len == 2 && line[0] == '\r' && line[1] == '\n') || (len == 1 && line[0] == '\n')) {
        t->headers_complete = 1;
        return len;
    }
    const char *v;
    size_t vl;
    char tmp[64];
    if (header_is(line, len, "content-length", &v, &vl)) {
        copy_trimmed(tmp, sizeof(tmp), v, vl);
        char *end;
        errno = 0;
        unsigned long long n = strtoull(tmp, &end, 10);
        if (errno == 0 && end != tmp && *end == '\0') {
            t->have_length = 1;
            t->content_length = n;
        }
    } else if (header_is(line, len, "content-range", &v, &vl)) {
        copy_trimmed(tmp, sizeof(tmp), v, vl);
        if (strncmp(tmp, "bytes ", 6) == 0 && tmp[6] >= '0' && tmp[6] <= '9')
            t->range_start = strtoull(tmp + 6, NULL, 10);
        const char *slash = strrchr(tmp, '/');
        if (slash && slash[1] != '*') {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(slash + 1, &end, 10);
            if (errno == 0 && *end == '\0') {
                t->have_total = 1;
                t->total = n;
            }
        }
    } else if (header_is(line, len, "etag", &v, &vl)) {
        copy_trimmed(t->etag, sizeof(t->etag), v, vl);
    } else if (header_is(line, len, "content-type", &v, &vl)) {
        copy_trimmed(t->content_type, sizeof(t->content_type), v, vl);
    } else if (header_is(line, len, "last-modified", &v, &vl)) {
        copy_trimmed(t->last_modified, sizeof(t->last_modified), v, vl);
    } else if (t->dialect == S3DL_DIALECT_S3 &&
               header_is(line, len, "x-amz-checksum-crc32c", &v, &vl)) {
        copy_trimmed(t->checksum_crc32c, sizeof(t->checksum_crc32c), v, vl);
    } else if (t->dialect == S3DL_DIALECT_GCS && header_is(line, len, "x-goog-hash", &v, &vl)) {
        goog_hash_crc32c(t->checksum_crc32c, sizeof(t->checksum_crc32c), v, vl);
    } else if (t->dialect == S3DL_DIALECT_AZURE && header_is(line, len, "content-md5", &v, &vl)) {
        copy_trimmed(t->content_md5, sizeof(t->content_md5), v, vl);
    } else if (header_is(line, len, "x-ms-error-code", &v, &vl)) {
        copy_trimmed(t->ms_error_code, sizeof(t->ms_error_code), v, vl);
    } else if (header_is(line, len, "x-amz-request-id", &v, &vl) ||
               header_is(line, len, "x-ms-request-id", &v, &vl) ||
               header_is(line, len, "x-guploader-uploadid", &v, &vl)) {
        copy_trimmed(t->request_id, sizeof(t->request_id), v, vl);
    } else if (header_is(line, len, "retry-after", &v, &vl)) {
        copy_trimmed(tmp, sizeof(tmp), v, vl);
        char *end;
        long seconds = strtol(tmp, &end, 10);
        if (end != tmp && *end == '\0' && seconds >= 0 && seconds < 3600)
            t->retry_after_ms = seconds * 1000;
    }
    return len;
}

static size_t on_body(char *data, size_t size, size_t count, void *userdata)
{
    struct http_transfer *t = userdata;
    size_t len = size * count;
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300) {
        /* Keep the start of an error body for its code; drop the rest. */
        if (!t->err && !(t->err = malloc(ERROR_BODY_CAP)))
            return len;
        size_t room = ERROR_BODY_CAP - t->err_len;
        size_t take = len < room ? len : room;
        memcpy(t->err + t->err_len, data, take);
        t->err_len += take;
        return len;
    }
    if (!t->buf && t->item->dest) {
        /* Caller memory: bounded by its capacity, never grown. */
        if (t->have_length && t->content_length > t->item->dest_cap) {
            t->overflow = 1;
            return 0;
        }
        t->buf = t->item->dest;
        t->cap = t->item->dest_cap;
        t->exact = 0;
        t->borrowed = 1;
        if (t->have_length && !(t->item->flags & S3DL_F_RANGE) &&
            t->content_length >= PREFAULT_THRESHOLD / 4)
            file_pool_prefault(t->http->pool, t->buf, (size_t)t->content_length);
    }
    if (!t->buf) {
        if (t->have_length) {
            if (t->content_length > (uint64_t)SIZE_MAX / 2) {
                t->overflow = 1;
                return 0;
            }
            t->cap = (size_t)t->content_length;
            /* No huge pages: their compaction stalls made 256 MiB GETs swing
             * between 0.4 and 2 GB/s; 4 KiB pages faulted in by idle workers
             * ahead of the data run steadily. */
            t->buf = aligned_buf_alloc(64, t->cap, 0);
            t->exact = 1;
            if (t->buf && t->content_length >= PREFAULT_THRESHOLD)
                file_pool_prefault(t->http->pool, t->buf, t->cap);
        } else {
            t->cap = GROWABLE_START;
            t->buf = malloc(t->cap);
        }
        if (!t->buf) {
            t->overflow = 1;
            return 0;
        }
    }
    if (len > t->cap - t->len) {
        if (t->exact || t->borrowed) {
            t->overflow = 1; /* more than Content-Length: refuse it */
            return 0;
        }
        size_t want = t->cap;
        while (want - t->len < len && want < GROWABLE_CAP)
            want *= 2;
        if (want - t->len < len || want > GROWABLE_CAP) {
            t->overflow = 1;
            return 0;
        }
        uint8_t *grown = realloc(t->buf, want);
        if (!grown) {
            t->overflow = 1;
            return 0;
        }
        t->buf = grown;
        t->cap = want;
    }
    memcpy(t->buf + t->len, data, len);
    t->len += len;
    return len;
}

/* ---- starting an attempt ------------------------------------------------ */

static const char *method_of(const struct s3dl_item *item)
{
    switch (item->op) {
    case S3DL_OP_GET: return "GET";
    case S3DL_OP_PUT: return "PUT";
    case S3DL_OP_STAT: return "HEAD";
    case S3DL_OP_DELETE: return "DELETE";
    case S3DL_OP_POST: return "POST";
    default: return "GET";
    }
}

static int has_header(const struct s3dl_item *item, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < item->header_count; i++)
        if (strncasecmp(item->headers[i], name, n) == 0 && item->headers[i][n] == ':')
            return 1;
    return 0;
}

static struct curl_slist *append(struct curl_slist *list, const char *line, int *failed)
{
    struct curl_slist *grown = curl_slist_append(list, line);
    if (!grown)
        *failed = 1;
    return grown ? grown : list;
}

/* Builds the header list, signing when the client has credentials. */
static s3dl_status build_headers(struct http_transfer *t, struct s3dl_client *client,
                                 const char *method)
{
    struct s3dl_item *item = t->item;
    struct url_view view;
    if (url_split(item->target, &view) != 0)
        return S3DL_E_INVALID_ARGUMENT;
    int failed = 0;
    char line[512];
    struct curl_slist *h = NULL;
    char *host_line = NULL;
    if (asprintf(&host_line, "Host: %.*s", (int)view.authority_len, view.authority) < 0)
        return S3DL_E_NOMEM;
    h = append(h, host_line, &failed);
    free(host_line);
    for (size_t i = 0; i < item->header_count; i++)
        h = append(h, item->headers[i], &failed);
    char range[96];
    range[0] = '\0';
    /* An Azure caller signs its own x-ms-range; a second Range would
     * change what the signature covers. */
    if (item->op == S3DL_OP_GET && (item->flags & S3DL_F_RANGE) &&
        !has_header(item, "Range") && !has_header(item, "x-ms-range")) {
        if (item->length == 0) {
            curl_slist_free_all(h);
            return S3DL_E_INVALID_ARGUMENT; /* HTTP cannot express an empty range */
        }
        if (item->length == S3DL_LENGTH_TO_END)
            snprintf(range, sizeof(range), "Range: bytes=%llu-",
                     (unsigned long long)item->offset);
        else
            snprintf(range, sizeof(range), "Range: bytes=%llu-%llu",
                     (unsigned long long)item->offset,
                     (unsigned long long)(item->offset + item->length - 1));
        h = append(h, range, &failed);
    }
    int has_body = item->op == S3DL_OP_PUT || item->op == S3DL_OP_POST;
    /* libcurl would send a form type with a body; SharedKey (Azure) signs
     * Content-Type, so there the caller's choice stands, even none. */
    if (has_body && !has_header(item, "Content-Type"))
        h = append(h, client->dialect == S3DL_DIALECT_AZURE ? "Content-Type:"
                                                            : "Content-Type: application/octet-stream",
                   &failed);
    char checksum_line[96];
    if (item->op == S3DL_OP_PUT && client->dialect == S3DL_DIALECT_S3 &&
        !has_header(item, "x-amz-checksum-crc32c") && !has_header(item, "Content-MD5")) {
        checksum_line[0] = '\0';
        if (client->checksum == S3DL_CHECKSUM_CRC32C) {
            uint32_t crc = s3dl_crc32c(0, item->data, item->data_len);
            uint8_t be[4] = {(uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8),
                             (uint8_t)crc};
            char b64[16];
            crypto_base64(be, 4, b64);
            snprintf(checksum_line, sizeof(checksum_line), "x-amz-checksum-crc32c: %s", b64);
            /* As the AWS SDKs do: names the algorithm so the store keeps
             * the checksum and returns it on GET. */
            h = append(h, "x-amz-sdk-checksum-algorithm: CRC32C", &failed);
        } else if (client->checksum == S3DL_CHECKSUM_CONTENT_MD5) {
            uint8_t md5[16];
            char b64[32];
            if (crypto_md5(item->data ? item->data : "", item->data_len, md5) != 0)
                failed = 1;
            crypto_base64(md5, 16, b64);
            snprintf(checksum_line, sizeof(checksum_line), "Content-MD5: %s", b64);
        }
        if (checksum_line[0])
            h = append(h, checksum_line, &failed);
    }
    if (item->op == S3DL_OP_GET && !(item->flags & S3DL_F_RANGE) &&
        client->checksum == S3DL_CHECKSUM_CRC32C && client->dialect == S3DL_DIALECT_S3)
        h = append(h, "x-amz-checksum-mode: ENABLED", &failed);
    if (has_body)
        h = append(h, "Expect:", &failed); /* no 100-continue round trip */
    if (failed) {
        curl_slist_free_all(h);
        return S3DL_E_NOMEM;
    }
    t->headers = h;
    if (!client->can_sign)
        return S3DL_OK;

    char payload_hash[CRYPTO_SHA256_HEX_LEN + 1];
    if (!has_body || item->data_len == 0)
        snprintf(payload_hash, sizeof(payload_hash), "%s", EMPTY_SHA256);
    else if (client->signed_payload || item->op == S3DL_OP_POST) {
        if (crypto_sha256_hex(item->data, item->data_len, payload_hash) != 0)
            return S3DL_E_NOMEM;
    } else
        snprintf(payload_hash, sizeof(payload_hash), "UNSIGNED-PAYLOAD");

    /* Sign every header we send except the ones proxies may rewrite. */
    size_t count = 0, lines = 1;
    for (struct curl_slist *p = h; p; p = p->next)
        lines++;
    struct sigv4_kv *kv = calloc(lines, sizeof(*kv));
    if (!kv)
        return S3DL_E_NOMEM;
    char content_sha[100];
    snprintf(content_sha, sizeof(content_sha), "x-amz-content-sha256: %s", payload_hash);
    for (struct curl_slist *p = h; p; p = p->next) {
        const char *colon = strchr(p->data, ':');
        if (!colon || colon[1] == '\0')
            continue;
        if (strncasecmp(p->data, "Expect", 6) == 0)
            continue;
        const char *value = colon + 1;
        while (*value == ' ')
            value++;
        kv[count++] = (struct sigv4_kv){p->data, (size_t)(colon - p->data), value, strlen(value)};
    }
    kv[count++] = (struct sigv4_kv){"x-amz-content-sha256", 20, payload_hash, strlen(payload_hash)};
    struct url_decoded decoded;
    struct sigv4_request req;
    s3dl_status st = url_signing_request(&view, method, kv, count, payload_hash, &decoded, &req);
    if (st != S3DL_OK) {
        free(kv);
        return st;
    }
    struct sigv4_signed_headers signed_headers = {0};
    st = sigv4_sign_headers(&client->signer, &req, (int64_t)time(NULL), &signed_headers);
    url_decoded_free(&decoded);
    free(kv);
    if (st != S3DL_OK)
        return st;
    h = append(h, content_sha, &failed);
    snprintf(line, sizeof(line), "X-Amz-Date: %s", signed_headers.amz_date);
    h = append(h, line, &failed);
    if (client->session_token) {
        char *token_line = NULL;
        if (asprintf(&token_line, "X-Amz-Security-Token: %s", client->session_token) < 0)
            failed = 1;
        else {
            h = append(h, token_line, &failed);
            crypto_wipe(token_line, strlen(token_line));
            free(token_line);
        }
    }
    char *auth_line = NULL;
    if (asprintf(&auth_line, "Authorization: %s", signed_headers.authorization) < 0)
        failed = 1;
    else {
        h = append(h, auth_line, &failed);
        free(auth_line);
    }
    free(signed_headers.authorization);
    t->headers = h;
    return failed ? S3DL_E_NOMEM : S3DL_OK;
}

s3dl_status http_start(struct http_engine *http, struct s3dl_item *item,
                       struct s3dl_client *client)
{
    struct http_transfer *t = calloc(1, sizeof(*t));
    if (!t) {
        item_fail(item, S3DL_E_NOMEM, ENOMEM, "out of memory starting a request");
        return S3DL_E_NOMEM;
    }
    t->item = item;
    t->http = http;
    t->dialect = client->dialect;
    const char *method = method_of(item);
    s3dl_status st = build_headers(t, client, method);
    if (st != S3DL_OK) {
        transfer_free(http, t);
        item_fail(item, st, 0, "cannot prepare %s request: %s", method, s3dl_strerror(st));
        return st;
    }
    CURL *e = take_easy(http, client);
    if (!e) {
        transfer_free(http, t);
        item_fail(item, S3DL_E_NOMEM, ENOMEM, "cannot create an HTTP handle");
        return S3DL_E_NOMEM;
    }
    t->easy = e;
    t->client_serial = client->serial;
    curl_easy_setopt(e, CURLOPT_URL, item->target);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    /* The method, set in full every time: a reused handle keeps the last
     * transfer's (HTTPGET clears NOBODY, upload and POST state). */
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    switch (item->op) {
    case S3DL_OP_STAT: curl_easy_setopt(e, CURLOPT_NOBODY, 1L); break;
    case S3DL_OP_DELETE: curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE"); break;
    case S3DL_OP_PUT:
    case S3DL_OP_POST:
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, item->data ? item->data : (const void *)"");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)item->data_len);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        break;
    default: break;
    }
    /* A ranged read into a destination knows its size now; a whole-object
     * one learns it from Content-Length (on_body). */
    if (item->dest && (item->flags & S3DL_F_RANGE) && item->length != S3DL_LENGTH_TO_END &&
        item->length >= PREFAULT_THRESHOLD / 4)
        file_pool_prefault(http->pool, item->dest,
                           item->length < item->dest_cap ? (size_t)item->length : item->dest_cap);
    item->transfer = t;
    if (item->attempts == 0)
        item->t_start_ns = batch_wall_clock_ns();
    item->attempts++;
    if (curl_multi_add_handle(http->multi, e) != CURLM_OK) {
        item->transfer = NULL;
        transfer_free(http, t);
        item_fail(item, S3DL_E_INTERNAL, 0, "libcurl refused the transfer");
        return S3DL_E_INTERNAL;
    }
    return S3DL_OK;
}

struct s3dl_item *http_item_of(CURL *easy)
{
    struct http_transfer *t = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
    return t ? t->item : NULL;
}

void http_abort(struct http_engine *http, struct s3dl_item *item)
{
    transfer_free(http, item->transfer);
    item->transfer = NULL;
}

/* ---- finishing ----------------------------------------------------------- */

static void fill_stat(struct s3dl_item *item, const struct http_transfer *t)
{
    if (!item->stat)
        item->stat = calloc(1, sizeof(*item->stat));
    if (!item->stat)
        return;
    uint64_t size = item->op == S3DL_OP_PUT ? item->data_len
                    : t->have_total            ? t->total
                    : t->have_length           ? t->content_length
                                               : t->len;
    item->stat->size = size;
    if (t->last_modified[0]) {
        int64_t when = http_date_parse(t->last_modified);
        if (when > 0)
            item->stat->mtime_ns = (int64_t)when * 1000000000LL;
    }
    snprintf(item->stat->etag, sizeof(item->stat->etag), "%s", t->etag);
    snprintf(item->stat->content_type, sizeof(item->stat->content_type), "%s", t->content_type);
}

static void fail_with_detail(struct s3dl_item *item, s3dl_status st, const struct http_transfer *t,
                             const struct s3_error_fields *fields, CURLcode code)
{
    const char *method = method_of(item);
    if (code != CURLE_OK)
        item_fail(item, st, 0, "%s failed: %s", method, curl_easy_strerror(code));
    else if (fields->code[0])
        item_fail(item, st, 0, "%s: HTTP %ld %s%s%s", method, t->status, fields->code,
                  fields->message[0] ? ": " : "", fields->message);
    else
        item_fail(item, st, 0, "%s: HTTP %ld", method, t->status);
    if (!item->detail)
        return;
    item->detail->http_status = (int)t->status;
    snprintf(item->detail->code, sizeof(item->detail->code), "%s", fields->code);
    snprintf(item->detail->request_id, sizeof(item->detail->request_id), "%s",
             fields->request_id[0] ? fields->request_id : t->request_id);
}

/* Whether a successful answer to a GET is the range that was asked for:
 * 206 starting at the offset, or a 200 when the range covered the whole
 * object from byte 0. */
static int range_answered(const struct s3dl_item *item, const struct http_transfer *t)
{
    if (item->op != S3DL_OP_GET || !(item->flags & S3DL_F_RANGE))
        return 1;
    if (t->status == 206)
        return t->range_start == item->offset;
    return t->status == 200 && item->offset == 0 &&
           (item->length == S3DL_LENGTH_TO_END || (t->have_length && item->length >= t->len));
}

/* Compares a whole-object body with the server's x-amz-checksum-crc32c.
 * Composite checksums of multipart objects ("...-N") cannot be checked
 * against the whole body and are skipped. */
static int checksum_matches(const struct http_transfer *t, const struct s3dl_client *client)
{
    if (t->have_total || client->checksum == S3DL_CHECKSUM_NONE)
        return 1; /* a range: the stored checksum covers the whole object */
    if (t->content_md5[0]) {
        uint8_t md5[16];
        char b64[32];
        if (crypto_md5(t->buf ? t->buf : (const uint8_t *)"", t->len, md5) != 0)
            return 1; /* cannot check (out of memory): not a mismatch */
        crypto_base64(md5, 16, b64);
        return strcmp(b64, t->content_md5) == 0;
    }
    if (!t->checksum_crc32c[0] || strchr(t->checksum_crc32c, '-'))
        return 1;
    uint32_t crc = s3dl_crc32c(0, t->buf ? t->buf : (const uint8_t *)"", t->len);
    uint8_t be[4] = {(uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8), (uint8_t)crc};
    char b64[16];
    crypto_base64(be, 4, b64);
    return strcmp(b64, t->checksum_crc32c) == 0;
}

/* Hands the kept response header block to the item (final attempts only). */
static void keep_headers(struct s3dl_item *item, struct http_transfer *t)
{
    if (!t->header_block)
        return;
    free(item->response_headers);
    item->response_headers = t->header_block;
    item->response_headers_len = t->header_block_len;
    t->header_block = NULL;
}

int http_finish(struct http_engine *http, CURL *easy, CURLcode code, struct s3dl_client *client,
                int64_t now_ns, uint64_t random)
{
    struct http_transfer *t = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
    struct s3dl_item *item = t->item;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &t->status);

    struct s3_error_fields fields = {{0}, {0}, {0}};
    if (t->err)
        s3_error_parse(t->err, t->err_len, &fields);
    if (!fields.code[0] && t->ms_error_code[0])
        snprintf(fields.code, sizeof(fields.code), "%s", t->ms_error_code);
    /* A 200 whose body is an <Error> (CompleteMultipartUpload, CopyObject)
     * is a failure, whatever the status line says. */
    if (code == CURLE_OK && t->status == 200 && item->op == S3DL_OP_POST && t->buf &&
        s3_error_is_root((const char *)t->buf, t->len)) {
        s3_error_parse((const char *)t->buf, t->len, &fields);
        t->status = 500; /* classify like the InternalError it usually is */
    }
    /* Decided after the 200-with-error rule, which changes the status. */
    int success = (t->status >= 200 && t->status < 300) ||
                  ((item->flags & S3DL_F_ACCEPT_3XX) && t->status >= 300 && t->status < 400);
    struct attempt_outcome outcome = {(int)code, t->status, fields.code};
    /* libcurl can report success for a connection that closed inside the
     * header block; such a response is incomplete, never an (empty) answer. */
    if (code == CURLE_OK && !t->headers_complete)
        outcome.curl_code = CURLE_PARTIAL_FILE;

    int complete = outcome.curl_code == CURLE_OK;
    if (complete && success && item->op == S3DL_OP_GET &&
        !checksum_matches(t, client)) {
        /* Retried like a transient fault; reported as S3DL_E_CHECKSUM. */
        t->checksum_mismatch = 1;
        outcome.curl_code = CURLE_PARTIAL_FILE;
    } else if (complete && success && !range_answered(item, t)) {
        /* A server or proxy that ignores Range answers 200 with the whole
         * object: returning it as the range would be wrong data. */
        fail_with_detail(item, S3DL_E_HTTP, t, &fields, CURLE_OK);
        if (item->detail)
            snprintf(item->detail->message, sizeof(item->detail->message),
                     "GET: asked for a range, got HTTP %ld %s", t->status,
                     t->status == 200 ? "(the whole object: Range ignored)" : "at another offset");
        keep_headers(item, t);
        http_abort(http, item);
        return 1;
    } else if (complete && success) {
        if (t->exact && t->len != t->cap) {
            /* curl checks Content-Length too; this guards a truncated body
             * ever being returned as success. */
            outcome.curl_code = CURLE_PARTIAL_FILE;
        } else {
            retry_budget_refund(&client->retry_tokens);
            /* GET and POST bodies are the result; so is a PUT's when the
             * service sends one (a GCS resumable upload's object JSON). */
            if (item->op == S3DL_OP_GET || item->op == S3DL_OP_POST ||
                (item->op == S3DL_OP_PUT && t->buf && t->len)) {
                if (item->dest) {
                    item->alloc = NULL; /* the caller's memory */
                    item->result = item->dest;
                } else {
                    if (!t->buf)
                        t->buf = aligned_buf_alloc(64, 1, 0); /* an empty body */
                    item->alloc = item->result = t->buf;
                }
                item->result_len = t->len;
                t->buf = NULL; /* ownership moved to the item */
                if (item->op == S3DL_OP_GET)
                    atomic_fetch_add_explicit(&http->counters->bytes_read, item->result_len,
                                              memory_order_relaxed);
            }
            if (item->op == S3DL_OP_PUT)
                atomic_fetch_add_explicit(&http->counters->bytes_written, item->data_len,
                                          memory_order_relaxed);
            if (item->op == S3DL_OP_GET || item->op == S3DL_OP_STAT ||
                item->op == S3DL_OP_PUT)
                fill_stat(item, t);
            item->status = item->alloc || item->dest || item->op != S3DL_OP_GET ? S3DL_OK
                                                                                : S3DL_E_NOMEM;
            keep_headers(item, t);
            http_abort(http, item);
            return 1;
        }
    }
    /* A range starting exactly at the end of a non-empty object: S3 says
     * 416, local files give zero bytes; return zero bytes everywhere. */
    if (complete && t->status == 416 && (item->flags & S3DL_F_RANGE) && t->have_total &&
        item->offset == t->total) {
        {
            item->alloc = item->result = aligned_buf_alloc(64, 1, 0);
            item->result_len = 0;
            item->status = item->alloc ? S3DL_OK : S3DL_E_NOMEM;
            keep_headers(item, t);
            http_abort(http, item);
            return 1;
        }
    }

    enum retry_class cls = retry_classify(&outcome);
    if (cls != RETRY_NONE && item->attempts < client->max_attempts &&
        retry_budget_take(&client->retry_tokens, &outcome)) {
        int64_t delay = retry_delay_ms(cls, item->attempts, t->retry_after_ms, random);
        S3DL_LOG(S3DL_LOG_DEBUG, "retrying %s after %lld ms (attempt %d): curl %d, HTTP %ld %s",
                 method_of(item), (long long)delay, item->attempts, (int)outcome.curl_code,
                 t->status, fields.code);
        item->retry_at_ns = now_ns + delay * 1000000LL;
        http_abort(http, item);
        return 0;
    }
    s3dl_status st = t->overflow            ? S3DL_E_NOMEM
                     : t->checksum_mismatch ? S3DL_E_CHECKSUM
                                            : retry_final_status(&outcome);
    if (st == S3DL_OK)
        st = S3DL_E_HTTP;
    fail_with_detail(item, st, t, &fields, (CURLcode)outcome.curl_code);
    if (t->checksum_mismatch && item->detail)
        snprintf(item->detail->message, sizeof(item->detail->message),
                 "GET: body does not match the stored %s %s after %d attempt(s)",
                 t->content_md5[0] ? "Content-MD5" : "CRC32C",
                 t->content_md5[0] ? t->content_md5 : t->checksum_crc32c, item->attempts);
    if (t->overflow && item->detail)
        snprintf(item->detail->message, sizeof(item->detail->message),
                 "%s: response larger than announced or than the %zu-byte cap",
                 method_of(item), (size_t)GROWABLE_CAP);
    keep_headers(item, t);
    http_abort(http, item);
    return 1;
}
