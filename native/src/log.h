/* Private: the core's log queue.  Lines are queued, never delivered by
 * callback, so the engine thread never calls into a language runtime. */
#ifndef S3DL_LOG_H
#define S3DL_LOG_H

#include "s3dlio.h"

/* Queues a formatted line if `level` is enabled.  Safe from any thread. */
void log_line(s3dl_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Non-zero if `level` would be queued (avoids formatting work). */
int log_enabled(s3dl_log_level level);

/* Re-initialises the queue lock in a forked child. */
void log_after_fork_child(void);

#define S3DL_LOG(level, ...)                                                                       \
    do {                                                                                           \
        if (log_enabled(level))                                                                    \
            log_line(level, __VA_ARGS__);                                                          \
    } while (0)

#endif
