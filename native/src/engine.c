/* The engine: an engine thread that takes batches from the submission ring
 * and routes them -- local ones to the file pool (file_pool.c), HTTP ones to
 * the HTTP lanes (libcurl multi handles, http.c; the engine thread drives
 * lane 0 itself), each within its batch's max_in_flight -- and the
 * completion side (condition variables, notify tags and the eventfd).  See
 * s3dlio.h for the contract and docs/architecture.md for the design. */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "aligned_buf.h"
#include "file_io.h"
#include "log.h"
#include "sysinfo.h"

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

/* New batches: the engine thread (lane 0) routes them. */
static void engine_wake(s3dl_engine *engine) { http_wake(&engine->lanes[0].http); }

/* Cancels and stop: every lane checks its shares. */
static void engine_wake_all(s3dl_engine *engine)
{
    for (int i = 0; i < engine->lane_count; i++)
        http_wake(&engine->lanes[i].http);
}

void engine_notice_cancel(s3dl_engine *engine, struct s3dl_batch *batch)
{
    (void)batch;
    pthread_mutex_lock(&engine->lifecycle_mutex);
    int running = engine->started && engine->owner_pid == getpid();
    pthread_mutex_unlock(&engine->lifecycle_mutex);
    if (running) {
        file_pool_poke(&engine->pool);
        engine_wake_all(engine); /* HTTP batches are cancelled by their lanes */
    }
}

/* min(4, online CPUs): for file workers and HTTP lanes alike. */
static int default_threads(void)
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

static uint64_t next_random(struct http_lane *lane)
{
    uint64_t x = lane->random_state; /* xorshift64: jitter, not secrets */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    lane->random_state = x;
    return x;
}

static struct s3dl_client *client_of(struct s3dl_batch *b)
{
    return b->client ? b->client : client_default();
}

/* Read without the lifecycle lock, which start_locked holds while it may
 * have to stop lanes it started. */
static int engine_stopping(s3dl_engine *e) { return atomic_load(&e->stopping); }

static void complete_http_item(s3dl_engine *e, struct s3dl_item *item)
{
    item->t_end_ns = batch_wall_clock_ns();
    item->share->in_flight--;
    item->share->completed++;
    atomic_fetch_add_explicit(&e->counters.items_completed, 1, memory_order_relaxed);
}

/* Cancels or expires what a share has not finished.  Running transfers are
 * stopped; waiting retries and unstarted items complete at once. */
static void stop_share(struct http_lane *lane, struct batch_share *sh, s3dl_status why)
{
    s3dl_engine *e = lane->engine;
    struct s3dl_batch *b = sh->batch;
    for (size_t i = sh->first; i < sh->next; i += sh->step) {
        struct s3dl_item *item = &b->items[i];
        if (item->transfer) {
            http_abort(&lane->http, item);
            item_fail(item, why, 0, "%s while in flight", s3dl_strerror(why));
            lane->in_flight--;
            complete_http_item(e, item);
        }
    }
    for (struct s3dl_item **link = &lane->waiting; *link;) {
        struct s3dl_item *item = *link;
        if (item->share == sh) {
            *link = item->next_waiting;
            item_fail(item, why, 0, "%s while waiting to retry", s3dl_strerror(why));
            lane->in_flight--;
            complete_http_item(e, item);
        } else {
            link = &item->next_waiting;
        }
    }
    for (; sh->next < b->count; sh->next += sh->step) {
        struct s3dl_item *item = &b->items[sh->next];
        item_fail(item, why, 0, "%s before it started", s3dl_strerror(why));
        sh->completed++;
        lane->unstarted--;
    }
}

static void start_item(struct http_lane *lane, struct s3dl_item *item)
{
    if (http_start(&lane->http, item, client_of(item->batch)) != S3DL_OK) {
        lane->in_flight--;
        complete_http_item(lane->engine, item); /* http_start recorded the failure */
    }
}

static void schedule_http(struct http_lane *lane, int64_t now, int stopping)
{
    size_t lane_cap = lane->cap;
    /* Retries whose time has come go first: they are oldest. */
    for (struct s3dl_item **link = &lane->waiting; *link;) {
        struct s3dl_item *item = *link;
        if (item->retry_at_ns <= now) {
            *link = item->next_waiting;
            start_item(lane, item);
        } else {
            link = &item->next_waiting;
        }
    }
    for (struct batch_share *sh = lane->shares; sh; sh = sh->next_active) {
        struct s3dl_batch *b = sh->batch;
        int cancelled = stopping || atomic_load(&b->cancel_requested);
        int expired = b->deadline_ns && now >= b->deadline_ns;
        if (cancelled || expired) {
            stop_share(lane, sh, expired ? S3DL_E_TIMEOUT : S3DL_E_CANCELLED);
            continue;
        }
        while (sh->next < b->count && sh->in_flight < sh->max_in_flight &&
               lane->in_flight < lane_cap) {
            struct s3dl_item *item = &b->items[sh->next];
            sh->next += sh->step;
            item->share = sh;
            sh->in_flight++;
            lane->in_flight++;
            lane->unstarted--;
            start_item(lane, item);
        }
    }
}

/* Takes the transfers libcurl reports done; returns how many. */
static int reap_http(struct http_lane *lane, int64_t now)
{
    CURLMsg *msg;
    int queued, reaped = 0;
    while ((msg = curl_multi_info_read(lane->http.multi, &queued)) != NULL) {
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
        if (http_finish(&lane->http, easy, result, client, now, next_random(lane))) {
            lane->in_flight--;
            complete_http_item(lane->engine, item);
        } else {
            item->next_waiting = lane->waiting;
            lane->waiting = item;
        }
    }
    return reaped;
}

/* Drops finished shares; the lane that drops a batch's last share
 * finishes the batch. */
static void finish_shares(struct http_lane *lane)
{
    struct batch_share **link = &lane->shares;
    while (*link) {
        struct batch_share *sh = *link;
        if (sh->completed == sh->count) {
            *link = sh->next_active;
            struct s3dl_batch *b = sh->batch;
            if (atomic_fetch_sub_explicit(&b->shares_left, 1, memory_order_acq_rel) == 1)
                finish_batch(lane->engine, b);
        } else {
            link = &sh->next_active;
        }
    }
}

/* How long the lane may sleep: until the next retry or batch deadline,
 * at most a second (libcurl's own timer is added by http_wait_and_drive). */
static int poll_timeout_ms(struct http_lane *lane, int64_t now)
{
    int64_t soonest = -1;
    for (struct s3dl_item *item = lane->waiting; item; item = item->next_waiting)
        if (soonest < 0 || item->retry_at_ns < soonest)
            soonest = item->retry_at_ns;
    for (struct batch_share *sh = lane->shares; sh; sh = sh->next_active)
        if (sh->batch->deadline_ns && (soonest < 0 || sh->batch->deadline_ns < soonest))
            soonest = sh->batch->deadline_ns;
    int64_t ms = 1000; /* wake now and then regardless */
    if (soonest >= 0) {
        int64_t until = (soonest - now + 999999) / 1000000;
        if (until < ms)
            ms = until < 0 ? 0 : until;
    }
    return ms > 1000 ? 1000 : (int)ms;
}

/* Appends a chain of shares to `list` (oldest first, as on the file pool). */
static void append_shares(struct batch_share **list, struct batch_share *chain)
{
    while (*list)
        list = &(*list)->next_active;
    *list = chain;
}

/* Makes a chain of shares the lane's own: active, and counted as unstarted. */
static void adopt_shares(struct http_lane *lane, struct batch_share *chain)
{
    for (struct batch_share *sh = chain; sh; sh = sh->next_active)
        lane->unstarted += sh->count;
    append_shares(&lane->shares, chain);
}

/* Takes the shares the engine thread handed over. */
static void take_inbox(struct http_lane *lane)
{
    pthread_mutex_lock(&lane->inbox_mutex);
    struct batch_share *in = lane->inbox;
    lane->inbox = NULL;
    pthread_mutex_unlock(&lane->inbox_mutex);
    adopt_shares(lane, in);
}

/* Single-item batches stay on lane 0 while it has fewer than this many
 * items in flight or waiting to start (or fewer than its cap, if lower). */
#define LANE0_SINGLE_ITEMS_MAX 4

/* Deals an HTTP batch out to the lanes.  A batch of one item, or one
 * limited to one in flight, goes to one lane (see above); any other is
 * dealt round-robin over every lane, each taking its part of the batch's
 * in-flight limit. */
static void route_http_batch(s3dl_engine *e, struct s3dl_batch *b)
{
    size_t all = (size_t)e->lane_count;
    struct http_lane *lane0 = &e->lanes[0];
    size_t lanes = all, first_lane = 0;
    if (b->count < 2 || b->max_in_flight < 2 || all == 1) {
        /* This thread's own lane while it has little to do: handing the
         * item to another lane costs a wake-up and a context switch, which
         * made a loop of single get() calls 20% slower.  Busier (items
         * routed here but not started count too, so a burst spreads), the
         * other lanes take turns. */
        size_t room = lane0->cap < LANE0_SINGLE_ITEMS_MAX ? lane0->cap : LANE0_SINGLE_ITEMS_MAX;
        if (all > 1 && lane0->in_flight + lane0->unstarted >= room)
            first_lane = 1 + atomic_fetch_add_explicit(&e->next_lane, 1, memory_order_relaxed) %
                                 (all - 1);
        lanes = 1;
    } else {
        if (lanes > b->count)
            lanes = b->count;
        if ((int64_t)lanes > b->max_in_flight)
            lanes = (size_t)b->max_in_flight;
        /* A batch that uses only some lanes starts at a different one each
         * time, so small batches spread over all of them. */
        if (lanes < all)
            first_lane = atomic_fetch_add_explicit(&e->next_lane, 1, memory_order_relaxed) % all;
    }
    atomic_store(&b->shares_left, (int)lanes);
    for (size_t k = 0; k < lanes; k++) {
        struct batch_share *sh = &b->shares[k];
        memset(sh, 0, sizeof(*sh));
        sh->batch = b;
        sh->first = sh->next = k;
        sh->step = lanes;
        sh->count = (b->count - k + lanes - 1) / lanes;
        size_t limit = (size_t)b->max_in_flight;
        sh->max_in_flight = limit / lanes + (k < limit % lanes ? 1 : 0);
        struct http_lane *lane = &e->lanes[(first_lane + k) % all];
        if (lane->index == 0) {
            adopt_shares(lane, sh); /* this thread's own lane */
        } else {
            pthread_mutex_lock(&lane->inbox_mutex);
            append_shares(&lane->inbox, sh);
            pthread_mutex_unlock(&lane->inbox_mutex);
            http_wake(&lane->http);
        }
    }
}

/* One turn of a lane: start what may start, let libcurl run its timers
 * (new transfers begin there), and take what finished -- until nothing
 * finishes, since every completion frees a slot for another item. */
static void run_lane_once(struct http_lane *lane, int stopping)
{
    int64_t now = monotonic_ns();
    for (int rounds = 0; rounds < 1000; rounds++) { /* bounded */
        schedule_http(lane, now, stopping);
        http_drive_timers(&lane->http);
        now = monotonic_ns();
        if (reap_http(lane, now) == 0)
            break;
    }
    finish_shares(lane);
}

/* The other lanes' threads. */
static void *lane_main(void *arg)
{
    struct http_lane *lane = arg;
    char name[16];
    snprintf(name, sizeof(name), "s3dl-http-%d", lane->index);
    pthread_setname_np(pthread_self(), name); /* for top -H and debuggers */
    for (;;) {
        take_inbox(lane);
        int stopping = engine_stopping(lane->engine);
        run_lane_once(lane, stopping);
        /* Exit only once the engine thread has routed its last batch. */
        if (stopping && !lane->shares && atomic_load(&lane->engine->router_done)) {
            pthread_mutex_lock(&lane->inbox_mutex);
            int empty = lane->inbox == NULL;
            pthread_mutex_unlock(&lane->inbox_mutex);
            if (empty)
                break;
        }
        http_wait_and_drive(&lane->http, poll_timeout_ms(lane, monotonic_ns()));
    }
    return NULL;
}

/* The engine thread: batches in from the ring; local ones go to the file
 * pool, HTTP ones are dealt to the lanes, and lane 0 is driven here. */
static void *engine_main(void *arg)
{
    s3dl_engine *e = arg;
    struct http_lane *lane = &e->lanes[0];
    pthread_setname_np(pthread_self(), "s3dl-engine"); /* and HTTP lane 0 */
    struct s3dl_batch *incoming[64];
    for (;;) {
        size_t n;
        while ((n = ring_pop_many(&e->submit_ring, (void **)incoming, 64)) > 0) {
            for (size_t i = 0; i < n; i++) {
                struct s3dl_batch *b = incoming[i];
                if (b->count == 0)
                    finish_batch(e, b);
                else if (b->is_http)
                    route_http_batch(e, b);
                else
                    file_pool_add_batch(&e->pool, b);
            }
        }
        int stopping = engine_stopping(e);
        run_lane_once(lane, stopping);
        if (stopping && !lane->shares && ring_count(&e->submit_ring) == 0) {
            atomic_store(&e->router_done, 1);
            break;
        }
        /* The loop wakes at least once a second: results that lay unused
         * in the buffer cache for a while go back to the system. */
        aligned_buf_cache_trim();
        http_wait_and_drive(&lane->http, poll_timeout_ms(lane, monotonic_ns()));
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
    e->options.io_threads = default_threads();
    e->options.http_threads = default_threads();
    e->options.socket_rcvbuf = -1;
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
    case S3DL_ENGINE_HTTP_THREADS:
        if (value < 1 || value > S3DL_MAX_HTTP_LANES)
            st = S3DL_E_INVALID_ARGUMENT;
        else
            e->options.http_threads = (int)value;
        break;
    case S3DL_ENGINE_SOCKET_RCVBUF:
        if (value < -1 || value > (1 << 30))
            st = S3DL_E_INVALID_ARGUMENT;
        else
            e->options.socket_rcvbuf = (int)value;
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
    engine_wake_all(e);
    pthread_join(e->thread, NULL);
    engine_wake_all(e); /* the router is done: lanes may now exit */
    for (int i = 1; i < e->lane_count; i++)
        if (e->lanes[i].thread_started)
            pthread_join(e->lanes[i].thread, NULL);
    file_pool_stop(&e->pool);
}

static void free_lanes(s3dl_engine *e)
{
    if (!e->lanes)
        return;
    for (int i = 0; i < e->lane_count; i++) {
        http_engine_cleanup(&e->lanes[i].http);
        pthread_mutex_destroy(&e->lanes[i].inbox_mutex);
    }
    free(e->lanes);
    e->lanes = NULL;
    e->lane_count = 0;
}

/* The default SO_RCVBUF: 4 MiB where the system allows it.  A request above
 * net.core.rmem_max is silently clamped to it, and a fixed buffer turns
 * autotuning off, so where rmem_max is below 1 MiB (the stock Linux value
 * is 208 KiB) a fixed buffer would be smaller than autotuning reaches: leave
 * it to the kernel there. */
static int socket_rcvbuf_auto(void)
{
    const size_t wanted = 4 << 20, least = 1 << 20;
    size_t max = sysinfo_rmem_max();
    if (max >= wanted)
        return (int)wanted;
    return max >= least ? (int)max : 0;
}

/* Sets up the HTTP lanes (threads not started). */
static int init_lanes(s3dl_engine *e)
{
    /* No more lanes than the engine-wide cap allows items, which is split
     * exactly between them. */
    size_t cap = e->options.max_in_flight;
    size_t n = (size_t)e->options.http_threads < cap ? (size_t)e->options.http_threads : cap;
    e->lanes = calloc(n, sizeof(*e->lanes));
    if (!e->lanes)
        return -1;
    int rcvbuf = e->options.socket_rcvbuf >= 0 ? e->options.socket_rcvbuf : socket_rcvbuf_auto();
    uint64_t seed = (uint64_t)monotonic_ns() ^ ((uint64_t)getpid() << 32);
    e->lane_count = 0;
    for (size_t i = 0; i < n; i++) {
        struct http_lane *lane = &e->lanes[i];
        lane->engine = e;
        lane->index = (int)i;
        lane->cap = cap / n + (i < cap % n ? 1 : 0);
        pthread_mutex_init(&lane->inbox_mutex, NULL);
        lane->random_state = (seed + (uint64_t)i * 0x9E3779B97F4A7C15ull) | 1;
        e->lane_count = (int)i + 1; /* what free_lanes must undo */
        if (http_engine_init(&lane->http, (long)lane->cap, &e->counters) != 0) {
            free_lanes(e);
            return -1;
        }
        lane->http.pool = &e->pool;
        lane->http.socket_rcvbuf = rcvbuf;
    }
    return 0;
}

/* Caller holds lifecycle_mutex. */
static s3dl_status start_locked(s3dl_engine *e)
{
    if (ring_init(&e->submit_ring, e->options.submit_capacity) != 0)
        return S3DL_E_NOMEM;
    if (init_lanes(e) != 0)
        goto fail_ring;
    struct file_pool_config config = {
        .threads = e->options.io_threads,
        .max_in_flight = e->options.max_in_flight,
        .direct_alignment = e->options.direct_alignment,
        .split_threshold = e->options.split_threshold,
        .part_size = e->options.part_size,
    };
    if (file_pool_start(&e->pool, &config, &e->counters, on_batch_done, e) != 0)
        goto fail_lanes;
    atomic_store(&e->stopping, 0);
    atomic_store(&e->router_done, 0);
    for (int i = 1; i < e->lane_count; i++) {
        struct http_lane *lane = &e->lanes[i];
        lane->thread_started = pthread_create(&lane->thread, NULL, lane_main, lane) == 0;
        if (!lane->thread_started)
            goto fail_threads;
    }
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0)
        goto fail_threads;
    e->started = 1;
    atomic_fetch_add(&e->engine_starts, 1);
    S3DL_LOG(S3DL_LOG_DEBUG, "engine started: %d io threads, %d http lanes, pid %d",
             e->pool.thread_count, e->lane_count, (int)e->owner_pid);
    return S3DL_OK;
fail_threads:
    atomic_store(&e->stopping, 1); /* lanes with no shares exit at once */
    atomic_store(&e->router_done, 1);
    for (int i = 1; i < e->lane_count; i++) {
        if (e->lanes[i].thread_started) {
            http_wake(&e->lanes[i].http);
            pthread_join(e->lanes[i].thread, NULL);
        }
    }
    atomic_store(&e->stopping, 0);
    file_pool_stop(&e->pool);
fail_lanes:
    free_lanes(e);
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
            e->lanes = NULL;
            e->lane_count = 0;
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
        if (engine_stopping(e))
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
    atomic_store(&e->stopping, 1);
    pthread_mutex_unlock(&e->lifecycle_mutex);
    if (running) {
        stop_threads(e);
        ring_destroy(&e->submit_ring);
        free_lanes(e);
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
    case S3DL_COUNTER_BUFFER_CACHE_BYTES: return aligned_buf_cached_bytes();
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
