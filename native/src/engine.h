/* Private: the engine.  One per process in normal use: an engine thread that
 * takes batches from the bounded submission ring and routes them (local
 * items to the file pool now; HTTP items to libcurl multi on this thread
 * later), and the completion side: batch condition variables for blocking
 * waiters and a tag queue + eventfd for event loops. */
#ifndef S3DL_ENGINE_H
#define S3DL_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "batch.h"
#include "file_pool.h"
#include "http.h"
#include "ring.h"
#include "s3dlio.h"

struct engine_options {
    int io_threads;
    size_t submit_capacity;
    size_t max_in_flight;
    size_t direct_alignment;
    size_t split_threshold;
    size_t part_size;
};

struct s3dl_engine {
    pthread_mutex_t lifecycle_mutex; /* start, stop, rebuild after fork */
    int started;
    int stopping;
    pid_t owner_pid;                 /* process whose threads and fds these are */
    struct engine_options options;
    struct file_pool_counters counters;
    _Atomic uint64_t engine_starts;

    struct ring submit_ring;         /* of struct s3dl_batch* */
    int notify_fd;                   /* eventfd: completed notify-batches */
    pthread_t thread;
    struct file_pool pool;
    struct http_engine http;         /* libcurl multi; engine thread only,
                                      * except http_wake() */

    pthread_mutex_t tags_mutex;      /* completed notify tags */
    uint64_t *tags;
    size_t tags_count;
    size_t tags_reserved;            /* slots promised to submitted batches */
    size_t tags_capacity;

    struct s3dl_engine *next_registered; /* fork registry link */
};

/* Starts the engine (or rebuilds it in a forked child) if needed. */
s3dl_status engine_ensure_running(s3dl_engine *engine);

/* Queues a built batch for the engine thread (blocks while the ring is full). */
s3dl_status engine_submit(s3dl_engine *engine, struct s3dl_batch *batch);

/* Tells the engine that `batch` was cancelled. */
void engine_notice_cancel(s3dl_engine *engine, struct s3dl_batch *batch);

#endif
