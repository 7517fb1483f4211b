/* Private: local file executor (buffered and O_DIRECT) for batch items. */
#ifndef S3DL_FILE_IO_H
#define S3DL_FILE_IO_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"

struct file_pool;

struct file_io_context {
    size_t alignment;                   /* O_DIRECT alignment (power of two) */
    struct file_pool *pool;             /* splits large reads; NULL = never */
    size_t split_threshold;
    _Atomic uint64_t *bytes_read;
    _Atomic uint64_t *bytes_written;
    _Atomic uint64_t *direct_fallbacks;
};

/* Runs one GET, PUT, STAT or DELETE on a local path and fills the item's
 * result.  Never leaves a partial file under the target name. */
void file_io_execute(const struct file_io_context *ctx, struct s3dl_item *item);

#endif
