/* Private: the engine.  One per process in normal use: an engine thread that
 * takes batches from the bounded submission ring and routes them (local
 * items to the file pool; HTTP items to the HTTP lanes, each a thread with
 * its own libcurl multi handle -- the engine thread is lane 0), and the
 * completion side: batch condition variables for blocking waiters and a tag
 * queue + eventfd for event loops. */
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
    int http_threads;
    int socket_rcvbuf;               /* -1: choose at start (socket_rcvbuf_auto) */
    size_t submit_capacity;
    size_t max_in_flight;
    size_t direct_alignment;
    size_t split_threshold;
    size_t part_size;
};

/* An HTTP lane: a libcurl multi handle and the thread that drives it.  Lane
 * 0 runs on the engine thread; the others have their own.  Shares of
 * batches arrive through the inbox (from the engine thread); everything
 * else is touched only by the lane's thread (http_wake aside). */
struct http_lane {
    struct s3dl_engine *engine;
    int index;
    struct http_engine http;
    pthread_t thread;                /* lanes 1..n-1 */
    int thread_started;
    pthread_mutex_t inbox_mutex;
    struct batch_share *inbox;       /* handed over, not yet taken */
    struct batch_share *shares;      /* active, oldest first */
    struct s3dl_item *waiting;       /* items waiting for a retry */
    size_t in_flight;                /* this lane's, waiting retries included */
    size_t unstarted;                /* items of its active shares not started yet */
    size_t cap;                      /* its part of the engine-wide max_in_flight */
    uint64_t random_state;
};

struct s3dl_engine {
    pthread_mutex_t lifecycle_mutex; /* start, stop, rebuild after fork */
    int started;
    atomic_int stopping;             /* set under lifecycle_mutex; lanes read it without */
    atomic_int router_done;          /* the engine thread routes no more batches */
    pid_t owner_pid;                 /* process whose threads and fds these are */
    struct engine_options options;
    struct file_pool_counters counters;
    _Atomic uint64_t engine_starts;

    struct ring submit_ring;         /* of struct s3dl_batch* */
    int notify_fd;                   /* eventfd: completed notify-batches */
    pthread_t thread;
    struct file_pool pool;
    struct http_lane *lanes;         /* lane_count of them */
    int lane_count;                  /* min(http_threads, max_in_flight) once started */
    _Atomic unsigned next_lane;      /* round-robin for one-lane batches that spill past lane 0 */

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
