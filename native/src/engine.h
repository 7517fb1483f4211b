/* Private: the engine.  One per process in normal use: an engine thread that
 * schedules batches, a pool of file-I/O workers, and the queues between. */
#ifndef S3DL_ENGINE_H
#define S3DL_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "batch.h"
#include "ring.h"
#include "s3dlio.h"

/* A FIFO of items linked through item->next, under its own lock. */
struct item_queue {
    struct s3dl_item *head;
    struct s3dl_item *tail;
    pthread_mutex_t mutex;
    pthread_cond_t not_empty;
    int closed;
};

struct engine_options {
    int io_threads;
    size_t submit_capacity;
    size_t max_in_flight;
    size_t direct_alignment;
};

struct engine_counters {
    _Atomic uint64_t items_completed;
    _Atomic uint64_t bytes_read;
    _Atomic uint64_t bytes_written;
    _Atomic uint64_t direct_fallbacks;
    _Atomic uint64_t engine_starts;
};

struct s3dl_engine {
    pthread_mutex_t lifecycle_mutex; /* start, stop, rebuild after fork */
    int started;
    int stopping;
    pid_t owner_pid;
    struct engine_options options;
    struct engine_counters counters;

    struct ring submit_ring;        /* of struct s3dl_batch* */
    int wake_fd;                    /* eventfd: wakes the engine thread */
    int notify_fd;                  /* eventfd: completed notify-batches */
    pthread_t thread;

    struct item_queue work_queue;   /* engine -> workers */
    struct item_queue done_queue;   /* workers -> engine */
    pthread_t *workers;
    int worker_count;

    pthread_mutex_t tags_mutex;     /* completed notify tags */
    uint64_t *tags;
    size_t tags_count;
    size_t tags_capacity;

    struct s3dl_engine *next_registered; /* fork registry link */
};

/* Starts the engine (or rebuilds it in a forked child) if needed. */
s3dl_status engine_ensure_running(s3dl_engine *engine);

/* Queues a built batch for the engine thread (blocks while the ring is full). */
s3dl_status engine_submit(s3dl_engine *engine, struct s3dl_batch *batch);

/* Wakes the engine thread (submissions, completions, cancels). */
void engine_wake(s3dl_engine *engine);

#endif
