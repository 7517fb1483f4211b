/* The engine: an engine thread that takes batches from the submission ring,
 * keeps at most `max_in_flight` items of each batch running, hands local
 * file work to a pool of workers, and completes batches.  See s3dlio.h for
 * the contract and docs/architecture.md for the design. */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "file_io.h"
#include "log.h"

/* ---- fork registry ---------------------------------------------------- */

static pthread_mutex_t registry_mutex = PTHREAD_MUTEX_INITIALIZER;
static s3dl_engine *registry_head;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void queue_reset_after_fork(struct item_queue *q)
{
    pthread_mutex_init(&q->mutex, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    q->head = q->tail = NULL;
    q->closed = 0;
}

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
        ring_reset_after_fork(&e->submit_ring);
        queue_reset_after_fork(&e->work_queue);
        queue_reset_after_fork(&e->done_queue);
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

/* ---- item queues ------------------------------------------------------ */

static void queue_init(struct item_queue *q)
{
    q->head = q->tail = NULL;
    q->closed = 0;
    pthread_mutex_init(&q->mutex, NULL);
    pthread_cond_init(&q->not_empty, NULL);
}

static void queue_destroy(struct item_queue *q)
{
    pthread_mutex_destroy(&q->mutex);
    pthread_cond_destroy(&q->not_empty);
}

/* Appends `item`; returns non-zero if the queue was empty before. */
static int queue_push(struct item_queue *q, struct s3dl_item *item)
{
    item->next = NULL;
    pthread_mutex_lock(&q->mutex);
    int was_empty = q->head == NULL;
    if (q->tail)
        q->tail->next = item;
    else
        q->head = item;
    q->tail = item;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mutex);
    return was_empty;
}

/* Blocks for the next item; NULL once closed and empty. */
static struct s3dl_item *queue_pop_wait(struct item_queue *q)
{
    pthread_mutex_lock(&q->mutex);
    while (!q->head && !q->closed)
        pthread_cond_wait(&q->not_empty, &q->mutex);
    struct s3dl_item *item = q->head;
    if (item) {
        q->head = item->next;
        if (!q->head)
            q->tail = NULL;
    }
    pthread_mutex_unlock(&q->mutex);
    return item;
}

/* Detaches the whole list at once. */
static struct s3dl_item *queue_take_all(struct item_queue *q)
{
    pthread_mutex_lock(&q->mutex);
    struct s3dl_item *list = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->mutex);
    return list;
}

static void queue_close(struct item_queue *q)
{
    pthread_mutex_lock(&q->mutex);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->mutex);
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

void engine_wake(s3dl_engine *engine) { eventfd_signal(engine->wake_fd); }

static int default_io_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    return cpus < 4 ? (int)cpus : 4;
}

/* ---- completion ------------------------------------------------------- */

static void push_notify_tag(s3dl_engine *e, uint64_t tag)
{
    pthread_mutex_lock(&e->tags_mutex);
    if (e->tags_count == e->tags_capacity) {
        size_t cap = e->tags_capacity ? e->tags_capacity * 2 : 64;
        uint64_t *grown = realloc(e->tags, cap * sizeof(*grown));
        if (!grown) {
            /* Cannot lose a completion: retry later is impossible here, so
             * keep the newest tag in the last slot's place is wrong too.
             * Out of memory for a few words means the process is dying. */
            pthread_mutex_unlock(&e->tags_mutex);
            S3DL_LOG(S3DL_LOG_ERROR, "out of memory queuing completion tag %llu",
                     (unsigned long long)tag);
            return;
        }
        e->tags = grown;
        e->tags_capacity = cap;
    }
    e->tags[e->tags_count++] = tag;
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

/* ---- worker pool ------------------------------------------------------ */

static void *worker_main(void *arg)
{
    s3dl_engine *e = arg;
    struct file_io_context ctx = {
        .alignment = e->options.direct_alignment,
        .bytes_read = &e->counters.bytes_read,
        .bytes_written = &e->counters.bytes_written,
        .direct_fallbacks = &e->counters.direct_fallbacks,
    };
    struct s3dl_item *item;
    while ((item = queue_pop_wait(&e->work_queue)) != NULL) {
        file_io_execute(&ctx, item);
        if (queue_push(&e->done_queue, item))
            engine_wake(e);
    }
    return NULL;
}

/* ---- engine thread ---------------------------------------------------- */

struct engine_loop {
    struct s3dl_batch *active_head;
    size_t in_flight; /* engine-wide */
};

static void complete_without_running(struct s3dl_item *item, s3dl_status status)
{
    item_fail(item, status, 0, "%s before it started", s3dl_strerror(status));
}

static void dispatch(s3dl_engine *e, struct engine_loop *loop, int64_t now)
{
    for (struct s3dl_batch *b = loop->active_head; b; b = b->next_active) {
        int expired = b->deadline_ns && now >= b->deadline_ns;
        int cancelled = atomic_load(&b->cancel_requested) || e->stopping;
        if (expired || cancelled) {
            s3dl_status why = expired ? S3DL_E_TIMEOUT : S3DL_E_CANCELLED;
            while (b->next_dispatch < b->count) {
                complete_without_running(&b->items[b->next_dispatch++], why);
                b->completed++;
            }
            continue;
        }
        while (b->next_dispatch < b->count && b->in_flight < (size_t)b->max_in_flight &&
               loop->in_flight < e->options.max_in_flight) {
            struct s3dl_item *item = &b->items[b->next_dispatch++];
            b->in_flight++;
            loop->in_flight++;
            queue_push(&e->work_queue, item);
        }
    }
}

static void reap(s3dl_engine *e, struct engine_loop *loop)
{
    struct s3dl_item *item = queue_take_all(&e->done_queue);
    while (item) {
        struct s3dl_item *next = item->next;
        item->batch->in_flight--;
        item->batch->completed++;
        loop->in_flight--;
        atomic_fetch_add_explicit(&e->counters.items_completed, 1, memory_order_relaxed);
        item = next;
    }
}

static void finish_completed_batches(s3dl_engine *e, struct engine_loop *loop)
{
    struct s3dl_batch **link = &loop->active_head;
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

static int next_poll_timeout_ms(struct engine_loop *loop, int64_t now)
{
    int64_t soonest = 0;
    for (struct s3dl_batch *b = loop->active_head; b; b = b->next_active)
        if (b->deadline_ns && b->next_dispatch < b->count &&
            (!soonest || b->deadline_ns < soonest))
            soonest = b->deadline_ns;
    if (!soonest)
        return -1;
    int64_t ms = (soonest - now + 999999) / 1000000;
    return ms < 0 ? 0 : (ms > 60000 ? 60000 : (int)ms);
}

static void *engine_main(void *arg)
{
    s3dl_engine *e = arg;
    struct engine_loop loop = {0};
    struct s3dl_batch *incoming[64];
    for (;;) {
        size_t n;
        while ((n = ring_pop_many(&e->submit_ring, (void **)incoming, 64)) > 0) {
            for (size_t i = 0; i < n; i++) {
                incoming[i]->next_active = loop.active_head;
                loop.active_head = incoming[i];
            }
        }
        reap(e, &loop);
        int64_t now = monotonic_ns();
        dispatch(e, &loop, now);
        finish_completed_batches(e, &loop);

        pthread_mutex_lock(&e->lifecycle_mutex);
        int stopping = e->stopping;
        pthread_mutex_unlock(&e->lifecycle_mutex);
        if (stopping && !loop.active_head && ring_count(&e->submit_ring) == 0)
            break;

        struct pollfd pfd = {.fd = e->wake_fd, .events = POLLIN};
        int rc = poll(&pfd, 1, next_poll_timeout_ms(&loop, now));
        if (rc > 0)
            eventfd_clear(e->wake_fd);
    }
    return NULL;
}

/* ---- lifecycle -------------------------------------------------------- */

s3dl_status s3dl_engine_new(s3dl_engine **out)
{
    if (!out)
        return S3DL_E_INVALID_ARGUMENT;
    *out = NULL;
    s3dl_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return S3DL_E_NOMEM;
    e->options.io_threads = default_io_threads();
    e->options.submit_capacity = 1024;
    e->options.max_in_flight = 256;
    e->options.direct_alignment = 4096;
    e->wake_fd = -1;
    e->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->notify_fd < 0) {
        free(e);
        return S3DL_E_IO;
    }
    e->owner_pid = getpid();
    pthread_mutex_init(&e->lifecycle_mutex, NULL);
    pthread_mutex_init(&e->tags_mutex, NULL);
    queue_init(&e->work_queue);
    queue_init(&e->done_queue);
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
    queue_close(&e->work_queue);
    for (int i = 0; i < e->worker_count; i++)
        pthread_join(e->workers[i], NULL);
    free(e->workers);
    e->workers = NULL;
    e->worker_count = 0;
}

/* Caller holds lifecycle_mutex. */
static s3dl_status start_locked(s3dl_engine *e)
{
    if (ring_init(&e->submit_ring, e->options.submit_capacity) != 0)
        return S3DL_E_NOMEM;
    e->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->wake_fd < 0)
        goto fail_ring;
    e->workers = calloc((size_t)e->options.io_threads, sizeof(pthread_t));
    if (!e->workers)
        goto fail_fd;
    e->work_queue.closed = 0;
    e->stopping = 0;
    for (int i = 0; i < e->options.io_threads; i++) {
        if (pthread_create(&e->workers[i], NULL, worker_main, e) != 0)
            break;
        e->worker_count++;
    }
    if (e->worker_count == 0 || pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        queue_close(&e->work_queue);
        for (int i = 0; i < e->worker_count; i++)
            pthread_join(e->workers[i], NULL);
        free(e->workers);
        e->workers = NULL;
        e->worker_count = 0;
        goto fail_fd;
    }
    e->started = 1;
    atomic_fetch_add(&e->counters.engine_starts, 1);
    S3DL_LOG(S3DL_LOG_DEBUG, "engine started: %d io threads, pid %d", e->worker_count,
             (int)e->owner_pid);
    return S3DL_OK;
fail_fd:
    close(e->wake_fd);
    e->wake_fd = -1;
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
            close(e->wake_fd);
            e->wake_fd = -1;
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
    }
    if (e->wake_fd >= 0)
        close(e->wake_fd);
    close(e->notify_fd);
    queue_destroy(&e->work_queue);
    queue_destroy(&e->done_queue);
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
    case S3DL_COUNTER_ENGINE_STARTS: return atomic_load(&e->counters.engine_starts);
    default: return 0;
    }
}

s3dl_status engine_submit(s3dl_engine *e, struct s3dl_batch *b)
{
    s3dl_status st = engine_ensure_running(e);
    if (st != S3DL_OK)
        return st;
    b->deadline_ns = b->timeout_ms > 0 ? monotonic_ns() + b->timeout_ms * 1000000LL : 0;
    int rc = ring_push(&e->submit_ring, b, 1);
    if (rc != 0)
        return S3DL_E_STATE;
    engine_wake(e);
    return S3DL_OK;
}
