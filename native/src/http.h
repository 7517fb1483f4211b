/* Private: HTTP transfers for batch items, driven by the engine thread
 * through one libcurl multi handle. */
#ifndef S3DL_HTTP_H
#define S3DL_HTTP_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "client.h"
#include "file_pool.h"

/* libcurl is driven by socket events (curl_multi_socket_action over an
 * epoll set), so each wake-up costs the sockets that are ready, not every
 * transfer in flight. */
/* An easy handle between transfers, with the serial of the client whose
 * settings it still carries (0: none yet). */
struct idle_easy {
    CURL *easy;
    uint64_t client_serial;
};

struct http_engine {
    CURLM *multi;
    int epoll_fd;            /* sockets libcurl asked us to watch, and wake_fd */
    int wake_fd;             /* eventfd: other threads wake the engine thread */
    int64_t timer_due_ns;    /* libcurl's timer (monotonic), or -1 for none */
    struct file_pool *pool;  /* idle workers fault in large bodies' buffers */
    struct idle_easy *idle;  /* easy handles kept for reuse */
    size_t idle_count;
    size_t idle_capacity;
    struct file_pool_counters *counters;
    int socket_rcvbuf;       /* SO_RCVBUF for new connections; 0: the kernel's autotuning */
};

/* Returns 0, or -1 if libcurl cannot be set up. */
int http_engine_init(struct http_engine *http, long max_connections,
                     struct file_pool_counters *counters);
void http_engine_cleanup(struct http_engine *http);

/* Wakes the engine thread from any thread (new batches, cancels, stop). */
void http_wake(struct http_engine *http);

/* Waits up to `timeout_ms` (shortened to libcurl's timer) for socket events
 * or a wake-up, and lets libcurl act on what happened.  Engine thread only. */
void http_wait_and_drive(struct http_engine *http, int timeout_ms);

/* Lets libcurl start what was just added and run its due timers. */
void http_drive_timers(struct http_engine *http);

/* Starts one attempt of `item` (signing it now).  On failure the item is
 * completed with that failure and S3DL_OK is not returned. */
s3dl_status http_start(struct http_engine *http, struct s3dl_item *item,
                       struct s3dl_client *client);

/* Handles a transfer libcurl reports done.  Returns 1 when the item is
 * complete (result or final error filled in), 0 when it was scheduled for a
 * retry at item->retry_at_ns. */
int http_finish(struct http_engine *http, CURL *easy, CURLcode result,
                struct s3dl_client *client, int64_t now_ns, uint64_t random);

/* The item a finished easy handle belongs to. */
struct s3dl_item *http_item_of(CURL *easy);

/* Stops an attempt in flight (cancel, deadline) and frees its state. */
void http_abort(struct http_engine *http, struct s3dl_item *item);

#endif
