/* The engine: an engine thread that takes batches from the submission ring
 * and routes them -- local ones to the file pool (file_pool.c), HTTP ones to
 * libcurl multi driven right here (http.c), each within its batch's
 * max_in_flight -- and the completion side (condition variables, notify
 * tags and the eventfd).  See s3dlio.h for the contract and
 * docs/architecture.md for the design. */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "aligned_buf.h"
#include "file_io.h"
#include "log.h"

/* ---- fork registry ---------------------------------------------------- */

static pthread_mutex_t registry_mutex = PTHREAD_MUTEX_INITIALIZER;
static s3dl_engine *registry_head;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Hold the registry lock across fork so the child sees a consistent list. */
static void atfork_prepare(void) { pthread_mutex_lock(&registry_mutex); }
static void atfork_parent(void) { pthread_mutex_unlock(&registry_mutex); }

/* In the child only the forking thread exists: every lock may have been
 * held by a thread that is gone, and the eventfds are shared with the
 * parent.  Re-create the locks now and rebuild threads and fds lazily. */
static void atfork_child(void)
{
    pthread_mutex_init(&registry_mutex, NULL);
    log_after_fork_child();
    for (s3dl_engine *e = registry_head; e; e = e->next_registered) {
        pthread_mutex_init(&e->lifecycle_mutex, NULL);
        pthread_mutex_init(&e->tags_mutex, NULL);
        e->tags_count = 0;
        e->tags_reserved = 0;
        ring_reset_after_fork(&e->submit_ring);
        if (e->started)
            file_pool_reset_after_fork(&e->pool);
    }
}

static void register_atfork(void) { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); }

static void registry_add(s3dl_engine *e)
{
    pthread_mutex_lock(&registry_mutex);
    e->next_registered = registry_head;
    registry_head = e;
    pthread_mutex_unlock(&registry_mutex);
}

static void registry_remove(s3dl_engine *e)
{
    pthread_mutex_lock(&registry_mutex);
    for (s3dl_engine **p = &registry_head; *p; p = &(*p)->next_registered) {
        if (*p == e) {
            *p = e->next_registered;
            break;
        }
    }
    pthread_mutex_unlock(&registry_mutex);
}

/* ---- helpers ---------------------------------------------------------- */

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void eventfd_signal(int fd)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: the reader will wake. */
    while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

static void eventfd_clear(int fd)
{
    uint64_t value;
    while (read(fd, &value, sizeof(value)) < 0 && errno == EINTR) {
    }
}

static void engine_wake(s3dl_engine *engine) { http_wake(&engine->http); }

void engine_notice_cancel(s3dl_engine *engine, struct s3dl_batch *batch)
{
    (void)batch;
    pthread_mutex_lock(&engine->lifecycle_mutex);
    int running = engine->started && engine->owner_pid == getpid();
    pthread_mutex_unlock(&engine->lifecycle_mutex);
    if (running) {
        file_pool_poke(&engine->pool);
        engine_wake(engine); /* HTTP batches are cancelled by the engine thread */
    }
}

static int default_io_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    return cpus < 4 ? (int)cpus : 4;
}

/* ---- completion ------------------------------------------------------- */

/* Reserves room for one completion tag, so that queuing it when the batch
 * finishes can never fail.  Called at submit. */
static s3dl_status reserve_notify_tag(s3dl_engine *e)
{
    s3dl_status st = S3DL_OK;
    pthread_mutex_lock(&e->tags_mutex);
    if (e->tags_count + e->tags_reserved == e->tags_capacity) {
        size_t cap = e->tags_capacity ? e->tags_capacity * 2 : 64;
        uint64_t *grown = realloc(e->tags, cap * sizeof(*grown));
        if (grown) {
            e->tags = grown;
            e->tags_capacity = cap;
        } else {
            st = S3DL_E_NOMEM;
        }
    }
    if (st == S3DL_OK)
        e->tags_reserved++;
    pthread_mutex_unlock(&e->tags_mutex);
    return st;
}

static void release_notify_reservation(s3dl_engine *e)
{
    pthread_mutex_lock(&e->tags_mutex);
    e->tags_reserved--;
    pthread_mutex_unlock(&e->tags_mutex);
}

static void push_notify_tag(s3dl_engine *e, uint64_t tag)
{
    pthread_mutex_lock(&e->tags_mutex);
    e->tags_reserved--;
    e->tags[e->tags_count++] = tag; /* room was reserved at submit */
    pthread_mutex_unlock(&e->tags_mutex);
    eventfd_signal(e->notify_fd);
}

/* Marks the batch done.  After the unlock the caller may free it, so the
 * engine must not touch `b` afterwards. */
static void finish_batch(s3dl_engine *e, struct s3dl_batch *b)
{
    int notify = b->has_notify_tag;
    uint64_t tag = b->notify_tag;
    pthread_mutex_lock(&b->mutex);
    b->state = BATCH_DONE;
    pthread_cond_broadcast(&b->finished);
    pthread_mutex_unlock(&b->mutex);
    if (notify)
        push_notify_tag(e, tag);
}

/* ---- engine thread ---------------------------------------------------- */

static void on_batch_done(void *ctx, struct s3dl_batch *b) { finish_batch(ctx, b); }

/* State of the engine thread's HTTP scheduling. */
struct http_loop {
    struct s3dl_batch *batches;      /* active HTTP batches */
    struct s3dl_item *waiting;       /* items waiting for a retry */
    size_t in_flight;                /* engine-wide */
    uint64_t random_state;
};

static uint64_t next_random(struct http_loop *loop)
{
    uint64_t x = loop->random_state; /* xorshift64: jitter, not secrets */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    loop->random_state = x;
    return x;
}

static struct s3dl_client *client_of(struct s3dl_batch *b)
{
    return b->client ? b->client : client_default();
}

static void complete_http_item(s3dl_engine *e, struct s3dl_item *item)
{
    item->t_end_ns = batch_wall_clock_ns();
    item->batch->in_flight--;
    item->batch->completed++;
    atomic_fetch_add_explicit(&e->counters.items_completed, 1, memory_order_relaxed);
}

/* Cancels or expires what a batch has not finished.  Running transfers are
 * stopped; waiting retries and unstarted items complete at once. */
static void stop_http_batch(s3dl_engine *e, struct http_loop *loop, struct s3dl_batch *b,
                            s3dl_status why)
{
    for (size_t i = 0; i < b->next_dispatch; i++) {
        struct s3dl_item *item = &b->items[i];
        if (item->transfer) {
            http_abort(&e->http, item);
            item_fail(item, why, 0, "%s while in flight", s3dl_strerror(why));
            loop->in_flight--;
            complete_http_item(e, item);
        }
    }
    for (struct s3dl_item **link = &loop->waiting; *link;) {
        struct s3dl_item *item = *link;
        if (item->batch == b) {
            *link = item->next_waiting;
            item_fail(item, why, 0, "%s while waiting to retry", s3dl_strerror(why));
            loop->in_flight--;
            complete_http_item(e, item);
        } else {
            link = &item->next_waiting;
        }
    }
    while (b->next_dispatch < b->count) {
        struct s3dl_item *item = &b->items[b->next_dispatch++];
        item_fail(item, why, 0, "%s before it started", s3dl_strerror(why));
        b->completed++;
    }
}

static void start_item(s3dl_engine *e, struct http_loop *loop, struct s3dl_item *item)
{
    if (http_start(&e->http, item, client_of(item->batch)) != S3DL_OK) {
        loop->in_flight--;
        complete_http_item(e, item); /* http_start recorded the failure */
    }
}

static void schedule_http(s3dl_engine *e, struct http_loop *loop, int64_t now, int stopping)
{
    /* Retries whose time has come go first: they are oldest. */
    for (struct s3dl_item **link = &loop->waiting; *link;) {
        struct s3dl_item *item = *link;
        if (item->retry_at_ns <= now) {
            *link = item->next_waiting;
            start_item(e, loop, item);
        } else {
            link = &item->next_waiting;
        }
    }
    for (struct s3dl_batch *b = loop->batches; b; b = b->next_active) {
        int cancelled = stopping || atomic_load(&b->cancel_requested);
        int expired = b->deadline_ns && now >= b->deadline_ns;
        if (cancelled || expired) {
            stop_http_batch(e, loop, b, expired ? S3DL_E_TIMEOUT : S3DL_E_CANCELLED);
            continue;
        }
        while (b->next_dispatch < b->count && b->in_flight < (size_t)b->max_in_flight &&
               loop->in_flight < e->options.max_in_flight) {
            struct s3dl_item *item = &b->items[b->next_dispatch++];
            b->in_flight++;
            loop->in_flight++;
            start_item(e, loop, item);
        }
    }
}

/* Takes the transfers libcurl reports done; returns how many. */
static int reap_http(s3dl_engine *e, struct http_loop *loop, int64_t now)
{
    CURLMsg *msg;
    int queued, reaped = 0;
    while ((msg = curl_multi_info_read(e->http.multi, &queued)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        /* Fetch the item before http_finish frees the transfer. */
        struct s3dl_item *item = http_item_of(easy);
        if (!item)
            continue;
        reaped++;
        struct s3dl_client *client = client_of(item->batch);
        if (http_finish(&e->http, easy, result, client, now, next_random(loop))) {
            loop->in_flight--;
            complete_http_item(e, item);
        } else {
            item->next_waiting = loop->waiting;
            loop->waiting = item;
        }
    }
    return reaped;
}

static void finish_http_batches(s3dl_engine *e, struct http_loop *loop)
{
    struct s3dl_batch **link = &loop->batches;
    while (*link) {
        struct s3dl_batch *b = *link;
        if (b->completed == b->count) {
            *link = b->next_active;
            finish_batch(e, b);
        } else {
            link = &b->next_active;
        }
    }
}

/* How long the engine may sleep: until the next retry or batch deadline,
 * at most a second (libcurl's own timer is added by http_wait_and_drive). */
static int poll_timeout_ms(struct http_loop *loop, int64_t now)
{
    int64_t soonest = -1;
    for (struct s3dl_item *item = loop->waiting; item; item = item->next_waiting)
        if (soonest < 0 || item->retry_at_ns < soonest)
            soonest = item->retry_at_ns;
    for (struct s3dl_batch *b = loop->batches; b; b = b->next_active)
        if (b->deadline_ns && (soonest < 0 || b->deadline_ns < soonest))
            soonest = b->deadline_ns;
    int64_t ms = 1000; /* wake now and then regardless */
    if (soonest >= 0) {
        int64_t until = (soonest - now + 999999) / 1000000;
        if (until < ms)
            ms = until < 0 ? 0 : until;
    }
    return ms > 1000 ? 1000 : (int)ms;
}

/* The engine thread: batches in from the ring; local ones go to the file
 * pool, HTTP ones are driven here through libcurl multi. */
static void *engine_main(void *arg)
{
    s3dl_engine *e = arg;
    struct s3dl_batch *incoming[64];
    struct http_loop loop = {.random_state = (uint64_t)monotonic_ns() ^ ((uint64_t)getpid() << 32)};
    if (!loop.random_state)
        loop.random_state = 0x9E3779B97F4A7C15ull;
    for (;;) {
        size_t n;
        while ((n = ring_pop_many(&e->submit_ring, (void **)incoming, 64)) > 0) {
            for (size_t i = 0; i < n; i++) {
                struct s3dl_batch *b = incoming[i];
                if (b->count == 0) {
                    finish_batch(e, b);
                } else if (b->is_http) {
                    /* Oldest first, as on the file pool: appended. */
                    b->next_active = NULL;
                    struct s3dl_batch **tail = &loop.batches;
                    while (*tail)
                        tail = &(*tail)->next_active;
                    *tail = b;
                } else {
                    file_pool_add_batch(&e->pool, b);
                }
            }
        }
        pthread_mutex_lock(&e->lifecycle_mutex);
        int stopping = e->stopping;
        pthread_mutex_unlock(&e->lifecycle_mutex);

        int64_t now = monotonic_ns();
        /* Start what may start, let libcurl run its timers (new transfers
         * begin there), and take what finished -- until nothing finishes,
         * since every completion frees a slot for another item. */
        for (int rounds = 0; rounds < 1000; rounds++) { /* bounded */
            schedule_http(e, &loop, now, stopping);
            http_drive_timers(&e->http);
            now = monotonic_ns();
            if (reap_http(e, &loop, now) == 0)
                break;
        }
        finish_http_batches(e, &loop);

        if (stopping && !loop.batches && ring_count(&e->submit_ring) == 0)
            break;
        /* The loop wakes at least once a second: results that lay unused
         * in the buffer cache for a while go back to the system. */
        aligned_buf_cache_trim();
        http_wait_and_drive(&e->http, poll_timeout_ms(&loop, monotonic_ns()));
    }
    return NULL;
}

/* ---- lifecycle -------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_ready;
static void init_curl(void) { curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }

s3dl_status s3dl_engine_new(s3dl_engine **out)
{
    if (!out)
        return S3DL_E_INVALID_ARGUMENT;
    *out = NULL;
    /* libcurl's global set-up is not thread-safe in older releases: once. */
    pthread_once(&curl_once, init_curl);
    if (!curl_ready)
        return S3DL_E_INTERNAL;
    s3dl_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return S3DL_E_NOMEM;
    e->options.io_threads = default_io_threads();
    e->options.submit_capacity = 1024;
    e->options.max_in_flight = 256;
    e->options.direct_alignment = 4096;
    /* Reads below 32 MiB gain little from splitting; 8 MiB parts keep both
     * cores busy on a 1 GiB read while each part stays a long sequential run. */
    e->options.split_threshold = (size_t)32 << 20;
    e->options.part_size = (size_t)8 << 20;
    e->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->notify_fd < 0) {
        free(e);
        return S3DL_E_IO;
    }
    e->owner_pid = getpid();
    pthread_mutex_init(&e->lifecycle_mutex, NULL);
    pthread_mutex_init(&e->tags_mutex, NULL);
    pthread_once(&atfork_once, register_atfork);
    registry_add(e);
    *out = e;
    return S3DL_OK;
}

s3dl_status s3dl_engine_setopt(s3dl_engine *e, s3dl_engine_option option, int64_t value)
{
    if (!e)
        return S3DL_E_INVALID_ARGUMENT;
    s3dl_status st = S3DL_OK;
    pthread_mutex_lock(&e->lifecycle_mutex);
    if (e->started && e->owner_pid == getpid()) {
        pthread_mutex_unlock(&e->lifecycle_mutex);
        return S3DL_E_STATE;
    }
    switch (option) {
    case S3DL_ENGINE_IO_THREADS:
        if (value < 1 || value > 256)
            st = S3DL_E_INVALID_ARGUMENT;
        else
            e->options.io_threads = (int)value;
        break;
    case S3DL_ENGINE_SUBMIT_CAPACITY:
        if (value < 1 || value > (1 << 20))
            st = S3DL_E_INVALID_ARGUMENT;
        else
            e->options.submit_capacity = (size_t)value;
        break;
    case S3DL_ENGINE_MAX_IN_FLIGHT:
        if (value < 1 || value > (1 << 20))
            st = S3DL_E_INVALID_ARGUMENT;
        else
            e->options.max_in_flight = (size_t)value;
        break;
    case S3DL_ENGINE_DIRECT_ALIGNMENT:
        if (value < 512 || value > (1 << 20) || (value & (value - 1)))
            st = S3DL_E_INVALID_ARGUMENT;
        else
            e->options.direct_alignment = (size_t)value;
        break;
    case S3DL_ENGINE_SPLIT_THRESHOLD:
        if (value < 1)
            st = S3DL_E_INVALID_ARGUMENT;
        else
            e->options.split_threshold = (size_t)value;
        break;
    case S3DL_ENGINE_PART_SIZE:
        /* A multiple of any O_DIRECT alignment, so parts stay aligned. */
        if (value < (1 << 20) || value > ((int64_t)1 << 34) || value % (1 << 20))
            st = S3DL_E_INVALID_ARGUMENT;
        else
            e->options.part_size = (size_t)value;
        break;
    default:
        st = S3DL_E_INVALID_ARGUMENT;
    }
    pthread_mutex_unlock(&e->lifecycle_mutex);
    return st;
}

static void stop_threads(s3dl_engine *e)
{
    ring_close(&e->submit_ring);
    engine_wake(e);
    pthread_join(e->thread, NULL);
    file_pool_stop(&e->pool);
}

/* Caller holds lifecycle_mutex. */
static s3dl_status start_locked(s3dl_engine *e)
{
    if (ring_init(&e->submit_ring, e->options.submit_capacity) != 0)
        return S3DL_E_NOMEM;
    if (http_engine_init(&e->http, (long)e->options.max_in_flight, &e->counters) != 0)
        goto fail_ring;
    struct file_pool_config config = {
        .threads = e->options.io_threads,
        .max_in_flight = e->options.max_in_flight,
        .direct_alignment = e->options.direct_alignment,
        .split_threshold = e->options.split_threshold,
        .part_size = e->options.part_size,
    };
    if (file_pool_start(&e->pool, &config, &e->counters, on_batch_done, e) != 0)
        goto fail_fd;
    e->http.pool = &e->pool;
    e->stopping = 0;
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        file_pool_stop(&e->pool);
        goto fail_fd;
    }
    e->started = 1;
    atomic_fetch_add(&e->engine_starts, 1);
    S3DL_LOG(S3DL_LOG_DEBUG, "engine started: %d io threads, pid %d", e->pool.thread_count,
             (int)e->owner_pid);
    return S3DL_OK;
fail_fd:
    http_engine_cleanup(&e->http);
fail_ring:
    ring_destroy(&e->submit_ring);
    return S3DL_E_NOMEM;
}

s3dl_status engine_ensure_running(s3dl_engine *e)
{
    pid_t pid = getpid();
    pthread_mutex_lock(&e->lifecycle_mutex);
    s3dl_status st = S3DL_OK;
    if (e->owner_pid != pid) {
        /* Forked child: the parent's threads do not exist here, and the
         * eventfds are shared with the parent.  Leak the parent's queued
         * state (it is the parent's to finish) and build afresh. */
        if (e->started) {
            /* The parent's multi handle shares its sockets with the parent:
             * cleaning it up here could close or write to the parent's
             * connections, so it is leaked instead. */
            memset(&e->http, 0, sizeof(e->http));
            e->submit_ring.slots = NULL; /* the parent's copy; not ours to free */
            e->started = 0;
        }
        close(e->notify_fd);
        e->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        e->owner_pid = pid;
        if (e->notify_fd < 0)
            st = S3DL_E_IO;
    }
    if (st == S3DL_OK && !e->started) {
        if (e->stopping)
            st = S3DL_E_STATE;
        else
            st = start_locked(e);
    }
    pthread_mutex_unlock(&e->lifecycle_mutex);
    return st;
}

void s3dl_engine_free(s3dl_engine *e)
{
    if (!e)
        return;
    registry_remove(e);
    pthread_mutex_lock(&e->lifecycle_mutex);
    int running = e->started && e->owner_pid == getpid();
    e->stopping = 1;
    pthread_mutex_unlock(&e->lifecycle_mutex);
    if (running) {
        stop_threads(e);
        ring_destroy(&e->submit_ring);
        http_engine_cleanup(&e->http);
    }
    close(e->notify_fd);
    pthread_mutex_destroy(&e->lifecycle_mutex);
    pthread_mutex_destroy(&e->tags_mutex);
    free(e->tags);
    free(e);
}

int s3dl_engine_notify_fd(s3dl_engine *e)
{
    if (!e)
        return -1;
    if (engine_ensure_running(e) != S3DL_OK)
        return -1;
    return e->notify_fd;
}

size_t s3dl_engine_poll_completions(s3dl_engine *e, uint64_t *tags, size_t max)
{
    if (!e || !tags || max == 0)
        return 0;
    pthread_mutex_lock(&e->tags_mutex);
    size_t n = e->tags_count < max ? e->tags_count : max;
    memcpy(tags, e->tags, n * sizeof(*tags));
    memmove(e->tags, e->tags + n, (e->tags_count - n) * sizeof(*tags));
    e->tags_count -= n;
    int empty = e->tags_count == 0;
    if (empty)
        eventfd_clear(e->notify_fd);
    pthread_mutex_unlock(&e->tags_mutex);
    if (!empty)
        eventfd_signal(e->notify_fd);
    return n;
}

uint64_t s3dl_engine_counter(s3dl_engine *e, s3dl_counter counter)
{
    if (!e)
        return 0;
    switch (counter) {
    case S3DL_COUNTER_ITEMS_COMPLETED: return atomic_load(&e->counters.items_completed);
    case S3DL_COUNTER_BYTES_READ: return atomic_load(&e->counters.bytes_read);
    case S3DL_COUNTER_BYTES_WRITTEN: return atomic_load(&e->counters.bytes_written);
    case S3DL_COUNTER_DIRECT_FALLBACKS: return atomic_load(&e->counters.direct_fallbacks);
    case S3DL_COUNTER_ENGINE_STARTS: return atomic_load(&e->engine_starts);
    default: return 0;
    }
}

s3dl_status engine_submit(s3dl_engine *e, struct s3dl_batch *b)
{
    s3dl_status st = engine_ensure_running(e);
    if (st != S3DL_OK)
        return st;
    b->deadline_ns = b->timeout_ms > 0 ? monotonic_ns() + b->timeout_ms * 1000000LL : 0;
    if (b->has_notify_tag && (st = reserve_notify_tag(e)) != S3DL_OK)
        return st;
    int rc = ring_push(&e->submit_ring, b, 1);
    if (rc != 0) {
        if (b->has_notify_tag)
            release_notify_reservation(e);
        return S3DL_E_STATE;
    }
    engine_wake(e);
    return S3DL_OK;
}
