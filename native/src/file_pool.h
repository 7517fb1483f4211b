/* Private: the pool of file-I/O workers.
 *
 * Blocking file system calls cannot sit in the engine's poll loop, so local
 * items run on worker threads.  Workers pull items straight from the active
 * batches (honouring each batch's max_in_flight and the engine-wide cap), so
 * an item costs two short critical sections and no thread hand-off.  A large
 * read is split into parts that idle workers help with, so one big GET uses
 * every core for its page faults and copies. */
#ifndef S3DL_FILE_POOL_H
#define S3DL_FILE_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "batch.h"

struct read_job;

struct file_pool_config {
    int threads;
    size_t max_in_flight;     /* engine-wide cap on running items */
    size_t direct_alignment;
    size_t split_threshold;   /* reads at least this long are split into parts */
    size_t part_size;
};

struct file_pool_counters {
    _Atomic uint64_t items_completed;
    _Atomic uint64_t bytes_read;
    _Atomic uint64_t bytes_written;
    _Atomic uint64_t direct_fallbacks;
};

struct file_pool {
    struct file_pool_config config;
    struct file_pool_counters *counters;
    pthread_mutex_t mutex;
    pthread_cond_t work_available;  /* new batch, free slot, new parts, stop */
    pthread_cond_t parts_finished;  /* a part of some read job completed */
    struct s3dl_batch *batches_head; /* FIFO of batches with items left */
    struct s3dl_batch *batches_tail;
    struct read_job *jobs;          /* read jobs with unclaimed parts */
    struct prefault *prefaults;     /* memory to fault in ahead of a transfer */
    size_t in_flight;
    int stopping;
    pthread_t *threads;
    int thread_count;
    /* Called (outside the lock) when a batch's last item completes. */
    void (*on_batch_done)(void *ctx, struct s3dl_batch *batch);
    void *on_batch_done_ctx;
};

/* Starts the workers.  Returns 0 or an errno value. */
int file_pool_start(struct file_pool *pool, const struct file_pool_config *config,
                    struct file_pool_counters *counters,
                    void (*on_batch_done)(void *, struct s3dl_batch *), void *ctx);

/* Adds a submitted, non-empty batch. */
void file_pool_add_batch(struct file_pool *pool, struct s3dl_batch *batch);

/* Wakes workers so they notice a cancelled batch. */
void file_pool_poke(struct file_pool *pool);

/* Cancels what has not started, waits for running items, joins workers. */
void file_pool_stop(struct file_pool *pool);

/* Re-creates locks in a forked child; the parent's work is forgotten. */
void file_pool_reset_after_fork(struct file_pool *pool);

/* Asks idle workers to fault in [addr, addr+len) (MADV_POPULATE_WRITE, which
 * never changes data already written) ahead of a transfer that will fill it,
 * so the writer does not take every page fault itself.  Best effort: if
 * the memory is freed meanwhile, the kernel merely refuses the advice.
 * Safe from any thread. */
void file_pool_prefault(struct file_pool *pool, void *addr, size_t len);

/* Reads `len` bytes at `offset` of `fd` into `dst`, in parallel parts when
 * the pool allows.  Called by a worker.  Returns bytes read (short only at
 * end of file) or -1 with *err set. */
ssize_t file_pool_parallel_read(struct file_pool *pool, int fd, uint8_t *dst, size_t len,
                                uint64_t offset, int *err);

#endif
