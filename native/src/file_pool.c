/* File-I/O worker pool; see file_pool.h. */
#define _GNU_SOURCE
#include "file_pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "file_io.h"

/* A large read split into parts.  Lives on the owning worker's stack; it is
 * linked into pool->jobs only while parts remain unclaimed, and the owner
 * does not return before every claimed part has finished. */
struct read_job {
    int fd;
    uint8_t *dst;
    uint64_t offset;
    size_t len;
    size_t part_size;
    size_t parts;
    size_t next_part;   /* under pool->mutex */
    size_t parts_done;  /* under pool->mutex */
    size_t bytes;       /* total read, under pool->mutex */
    int err;
    struct read_job *next;
};

/* A region to fault in, claimed chunk by chunk by idle workers. */
struct prefault {
    uint8_t *addr;
    size_t len;
    size_t next;            /* offset of the next unclaimed chunk */
    struct prefault *next_job;
};

#define PREFAULT_CHUNK ((size_t)4 << 20)

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels answer EINVAL */
#endif

void file_pool_prefault(struct file_pool *pool, void *addr, size_t len)
{
    if (!pool || pool->thread_count == 0 || len < 2 * PREFAULT_CHUNK)
        return;
    struct prefault *job = calloc(1, sizeof(*job));
    if (!job)
        return;
    /* Page-align inward: advice applies to whole pages. */
    uintptr_t start = ((uintptr_t)addr + 4095) & ~(uintptr_t)4095;
    uintptr_t end = ((uintptr_t)addr + len) & ~(uintptr_t)4095;
    if (end <= start) {
        free(job);
        return;
    }
    job->addr = (uint8_t *)start;
    job->len = end - start;
    pthread_mutex_lock(&pool->mutex);
    job->next_job = pool->prefaults;
    pool->prefaults = job;
    pthread_cond_broadcast(&pool->work_available);
    pthread_mutex_unlock(&pool->mutex);
}

/* Whether every page of a chunk is in memory already: a reused buffer (the
 * caller's get_into destination, a recycled result) needs no advice, and
 * asking anyway walks its page tables (15 ms per 256 MiB); mincore costs
 * 1/50 of that. */
static int chunk_resident(uint8_t *chunk, size_t n)
{
    unsigned char pages[PREFAULT_CHUNK / 4096];
    size_t count = (n + 4095) / 4096;
    if (count > sizeof(pages) || mincore(chunk, n, pages) != 0)
        return 0;
    for (size_t i = 0; i < count; i++)
        if (!(pages[i] & 1))
            return 0;
    return 1;
}

/* Claims and runs one chunk; caller holds the lock (released meanwhile). */
static void run_prefault(struct file_pool *pool)
{
    struct prefault *job = pool->prefaults;
    uint8_t *chunk = job->addr + job->next;
    size_t n = job->len - job->next < PREFAULT_CHUNK ? job->len - job->next : PREFAULT_CHUNK;
    job->next += n;
    if (job->next == job->len) {
        pool->prefaults = job->next_job;
        free(job); /* fields needed below were copied */
    }
    pthread_mutex_unlock(&pool->mutex);
    if (!chunk_resident(chunk, n))
        madvise(chunk, n, MADV_POPULATE_WRITE);
    pthread_mutex_lock(&pool->mutex);
}

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void unlink_batch(struct file_pool *pool, struct s3dl_batch *b)
{
    /* When stopping, idle workers wait for the list to empty before exiting. */
    struct s3dl_batch **link = &pool->batches_head;
    struct s3dl_batch *prev = NULL;
    while (*link && *link != b) {
        prev = *link;
        link = &(*link)->next_active;
    }
    if (!*link)
        return;
    *link = b->next_active;
    if (pool->batches_tail == b)
        pool->batches_tail = prev;
    b->next_active = NULL;
    if (pool->stopping && !pool->batches_head)
        pthread_cond_broadcast(&pool->work_available);
}

/* Items of a cancelled or expired batch that have not started complete at
 * once.  Caller holds the lock. */
static void drain_unstarted(struct s3dl_batch *b, s3dl_status why)
{
    while (b->next_dispatch < b->count) {
        struct s3dl_item *item = &b->items[b->next_dispatch++];
        item_fail(item, why, 0, "%s before it started", s3dl_strerror(why));
        b->completed++;
    }
}

/* Finds the next item to run, or a finished batch to report.  Caller holds
 * the lock.  Returns the item (and its batch in *batch_out), or NULL. */
static struct s3dl_item *claim_item(struct file_pool *pool, struct s3dl_batch **done_out)
{
    int64_t now = 0;
    for (struct s3dl_batch *b = pool->batches_head; b; b = b->next_active) {
        int cancelled = pool->stopping || atomic_load(&b->cancel_requested);
        int expired = 0;
        if (!cancelled && b->deadline_ns) {
            if (!now)
                now = monotonic_ns();
            expired = now >= b->deadline_ns;
        }
        if ((cancelled || expired) && b->next_dispatch < b->count) {
            drain_unstarted(b, expired ? S3DL_E_TIMEOUT : S3DL_E_CANCELLED);
            if (b->completed == b->count) {
                unlink_batch(pool, b);
                *done_out = b;
                return NULL;
            }
            continue;
        }
        if (b->next_dispatch < b->count && b->in_flight < (size_t)b->max_in_flight &&
            pool->in_flight < pool->config.max_in_flight) {
            b->in_flight++;
            pool->in_flight++;
            return &b->items[b->next_dispatch++];
        }
    }
    return NULL;
}

/* Runs one claimed part of a read job.  Caller holds the lock; it is
 * released while reading. */
static void run_part(struct file_pool *pool, struct read_job *job, size_t part)
{
    if (job->next_part == job->parts) {
        /* Every part is claimed: nobody else needs to find this job. */
        struct read_job **link = &pool->jobs;
        while (*link && *link != job)
            link = &(*link)->next;
        if (*link)
            *link = job->next;
    }
    uint64_t rel = (uint64_t)part * job->part_size;
    size_t want = job->len - rel < job->part_size ? (size_t)(job->len - rel) : job->part_size;
    pthread_mutex_unlock(&pool->mutex);
    size_t got = 0;
    int err = 0;
    while (got < want) {
        ssize_t n = pread(job->fd, job->dst + rel + got, want - got, (off_t)(job->offset + rel + got));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    pthread_mutex_lock(&pool->mutex);
    job->bytes += got;
    if (err && !job->err)
        job->err = err;
    job->parts_done++;
    if (job->parts_done == job->parts)
        pthread_cond_broadcast(&pool->parts_finished);
}

ssize_t file_pool_parallel_read(struct file_pool *pool, int fd, uint8_t *dst, size_t len,
                                uint64_t offset, int *err)
{
    size_t part = pool->config.part_size;
    struct read_job job = {
        .fd = fd, .dst = dst, .offset = offset, .len = len, .part_size = part,
        .parts = (len + part - 1) / part,
    };
    pthread_mutex_lock(&pool->mutex);
    if (job.parts > 1) {
        job.next = pool->jobs;
        pool->jobs = &job;
        pthread_cond_broadcast(&pool->work_available);
    }
    /* The owner works on its own job too, so it never waits on parts that
     * nobody has started. */
    while (job.next_part < job.parts)
        run_part(pool, &job, job.next_part++);
    while (job.parts_done < job.parts)
        pthread_cond_wait(&pool->parts_finished, &pool->mutex);
    pthread_mutex_unlock(&pool->mutex);
    if (job.err) {
        *err = job.err;
        return -1;
    }
    /* A short part means the file shrank after fstat; the caller compares
     * the total with what it expected and reports it. */
    return (ssize_t)job.bytes;
}

static void *worker_main(void *arg)
{
    struct file_pool *pool = arg;
    pthread_setname_np(pthread_self(), "s3dl-io"); /* for top -H and debuggers */
    struct file_io_context ctx = {
        .alignment = pool->config.direct_alignment,
        .bytes_read = &pool->counters->bytes_read,
        .bytes_written = &pool->counters->bytes_written,
        .direct_fallbacks = &pool->counters->direct_fallbacks,
        .pool = pool->thread_count > 1 ? pool : NULL,
        .split_threshold = pool->config.split_threshold,
    };
    pthread_mutex_lock(&pool->mutex);
    for (;;) {
        if (pool->prefaults) {
            run_prefault(pool);
            continue;
        }
        if (pool->jobs) {
            struct read_job *job = pool->jobs;
            run_part(pool, job, job->next_part++);
            continue;
        }
        struct s3dl_batch *done = NULL;
        struct s3dl_item *item = claim_item(pool, &done);
        if (done) {
            pthread_mutex_unlock(&pool->mutex);
            pool->on_batch_done(pool->on_batch_done_ctx, done);
            pthread_mutex_lock(&pool->mutex);
            continue;
        }
        if (item) {
            pthread_mutex_unlock(&pool->mutex);
            item->t_start_ns = item->t_first_byte_ns = batch_wall_clock_ns();
            file_io_execute(&ctx, item);
            item->t_end_ns = batch_wall_clock_ns();
            atomic_fetch_add_explicit(&pool->counters->items_completed, 1, memory_order_relaxed);
            pthread_mutex_lock(&pool->mutex);
            struct s3dl_batch *b = item->batch;
            b->in_flight--;
            pool->in_flight--;
            b->completed++;
            if (b->completed == b->count) {
                unlink_batch(pool, b);
                pthread_mutex_unlock(&pool->mutex);
                pool->on_batch_done(pool->on_batch_done_ctx, b);
                pthread_mutex_lock(&pool->mutex);
            } else if (b->next_dispatch < b->count) {
                /* A slot freed up; another waiting worker may take it. */
                pthread_cond_signal(&pool->work_available);
            }
            continue;
        }
        if (pool->stopping && !pool->batches_head)
            break;
        pthread_cond_wait(&pool->work_available, &pool->mutex);
    }
    pthread_mutex_unlock(&pool->mutex);
    return NULL;
}

int file_pool_start(struct file_pool *pool, const struct file_pool_config *config,
                    struct file_pool_counters *counters,
                    void (*on_batch_done)(void *, struct s3dl_batch *), void *ctx)
{
    memset(pool, 0, sizeof(*pool));
    pool->config = *config;
    pool->counters = counters;
    pool->on_batch_done = on_batch_done;
    pool->on_batch_done_ctx = ctx;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->work_available, NULL);
    pthread_cond_init(&pool->parts_finished, NULL);
    pool->threads = calloc((size_t)config->threads, sizeof(pthread_t));
    if (!pool->threads)
        return ENOMEM;
    /* thread_count is read by workers to decide on splitting; set it first. */
    pool->thread_count = config->threads;
    int started = 0;
    for (; started < config->threads; started++)
        if (pthread_create(&pool->threads[started], NULL, worker_main, pool) != 0)
            break;
    if (started == 0) {
        free(pool->threads);
        pool->threads = NULL;
        return EAGAIN;
    }
    pool->thread_count = started;
    return 0;
}

void file_pool_add_batch(struct file_pool *pool, struct s3dl_batch *b)
{
    b->next_active = NULL;
    pthread_mutex_lock(&pool->mutex);
    if (pool->batches_tail)
        pool->batches_tail->next_active = b;
    else
        pool->batches_head = b;
    pool->batches_tail = b;
    pthread_cond_broadcast(&pool->work_available);
    pthread_mutex_unlock(&pool->mutex);
}

void file_pool_poke(struct file_pool *pool)
{
    pthread_mutex_lock(&pool->mutex);
    pthread_cond_broadcast(&pool->work_available);
    pthread_mutex_unlock(&pool->mutex);
}

void file_pool_stop(struct file_pool *pool)
{
    pthread_mutex_lock(&pool->mutex);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->work_available);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 0; i < pool->thread_count; i++)
        pthread_join(pool->threads[i], NULL);
    free(pool->threads);
    pool->threads = NULL;
    pool->thread_count = 0;
    while (pool->prefaults) {
        struct prefault *job = pool->prefaults;
        pool->prefaults = job->next_job;
        free(job);
    }
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->work_available);
    pthread_cond_destroy(&pool->parts_finished);
}

void file_pool_reset_after_fork(struct file_pool *pool)
{
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->work_available, NULL);
    pthread_cond_init(&pool->parts_finished, NULL);
    pool->batches_head = pool->batches_tail = NULL;
    pool->jobs = NULL;
    pool->prefaults = NULL;
    pool->in_flight = 0;
    pool->threads = NULL; /* the parent's; not ours to free */
    pool->thread_count = 0;
}
