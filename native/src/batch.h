/* Private: the request (item) and batch types shared by the engine and the
 * executors.  Designed for HTTP too: a target, an op, a byte range, a body,
 * and a result with status, data, metadata and failure detail. */
#ifndef S3DL_BATCH_H
#define S3DL_BATCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "s3dlio.h"

struct s3dl_item {
    /* Request, fixed at add time. */
    s3dl_op op;
    uint32_t flags;
    char *target;           /* owned copy */
    uint64_t offset;
    uint64_t length;
    const void *data;       /* PUT body, borrowed from the caller */
    size_t data_len;

    /* Result, written by exactly one executor before completion. */
    s3dl_status status;
    void *alloc;            /* owned until taken; release with free() */
    uint8_t *result;        /* first byte of data inside alloc */
    uint64_t result_len;
    s3dl_stat *stat;        /* allocated for STAT and GET results */
    s3dl_detail *detail;    /* allocated only on failure */
    char *response_headers; /* S3DL_F_KEEP_HEADERS: the final response's header block */
    /* Wall-clock times (ns since the Unix epoch; 0 = not reached): the
     * first attempt's start, its first response byte, completion. */
    int64_t t_start_ns, t_first_byte_ns, t_end_ns;
    size_t response_headers_len;

    /* HTTP only. */
    int is_http;
    uint8_t *dest;          /* caller memory for the body, or NULL */
    size_t dest_cap;
    char **headers;         /* extra request headers, owned */
    size_t header_count;
    int attempts;           /* tries made so far */
    int64_t retry_at_ns;    /* when a waiting retry may start */
    struct http_transfer *transfer; /* the attempt in flight, or NULL */
    struct s3dl_item *next_waiting; /* its HTTP lane's retry list */
    struct batch_share *share;      /* the HTTP lane share it was dealt to */

    struct s3dl_batch *batch;
};

enum batch_state { BATCH_BUILDING = 0, BATCH_SUBMITTED = 1, BATCH_DONE = 2 };

/* The most HTTP lanes (threads, each with its own libcurl multi handle) an
 * engine may run. */
#define S3DL_MAX_HTTP_LANES 8

/* One HTTP lane's part of a batch: items first, first + step, ... (dealt
 * round-robin, so every lane gets an even share of a uniform batch).
 * Touched only by that lane's thread once handed over. */
struct batch_share {
    struct s3dl_batch *batch;
    size_t first, step;
    size_t next;            /* the next item index to start */
    size_t count;           /* items in this share */
    size_t completed;
    size_t in_flight;       /* started or waiting to retry */
    size_t max_in_flight;   /* this share's part of the batch's limit */
    struct batch_share *next_active;
};

struct s3dl_client;
struct http_transfer;

struct s3dl_batch {
    s3dl_engine *engine;
    struct s3dl_client *client;  /* a reference, for HTTP items */
    int is_http;            /* all items are HTTP (batches do not mix kinds) */
    struct s3dl_item *items;
    size_t count;
    size_t capacity;

    int64_t max_in_flight;
    int has_notify_tag;
    uint64_t notify_tag;
    int64_t timeout_ms;
    int64_t deadline_ns;    /* monotonic; 0 = none; set at submit */

    /* Scheduling state while submitted; changed under the file pool's lock. */
    size_t next_dispatch;
    size_t in_flight;
    size_t completed;
    struct s3dl_batch *next_active;

    /* HTTP batches: one share per lane used; the lane that completes the
     * last share finishes the batch. */
    struct batch_share shares[S3DL_MAX_HTTP_LANES];
    atomic_int shares_left;

    atomic_int cancel_requested;
    pthread_mutex_t mutex;  /* guards state for waiters */
    pthread_cond_t finished;
    enum batch_state state;
};

/* CLOCK_REALTIME in ns, for the items' t_*_ns times. */
int64_t batch_wall_clock_ns(void);

/* Records a failure on `item` with a formatted message (never secrets). */
void item_fail(struct s3dl_item *item, s3dl_status status, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
