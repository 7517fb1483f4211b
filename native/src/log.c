/* A bounded queue of log lines that the binding drains at its leisure.
 * Dropping the oldest line when full keeps logging from ever blocking I/O. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define LOG_QUEUE_SLOTS 1024
#define LOG_LINE_MAX 512

struct log_entry {
    s3dl_log_level level;
    char text[LOG_LINE_MAX];
};

static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct log_entry log_queue[LOG_QUEUE_SLOTS];
static size_t log_head; /* next to pop */
static size_t log_count;
static _Atomic int log_level = S3DL_LOG_OFF;
static _Atomic uint64_t log_dropped_lines;

void s3dl_log_set_level(s3dl_log_level level)
{
    if ((int)level < S3DL_LOG_OFF)
        level = S3DL_LOG_OFF;
    if ((int)level > S3DL_LOG_TRACE)
        level = S3DL_LOG_TRACE;
    atomic_store(&log_level, (int)level);
}

int log_enabled(s3dl_log_level level)
{
    return level != S3DL_LOG_OFF && (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void log_line(s3dl_log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char text[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&log_mutex);
    if (log_count == LOG_QUEUE_SLOTS) {
        log_head = (log_head + 1) % LOG_QUEUE_SLOTS;
        log_count--;
        atomic_fetch_add(&log_dropped_lines, 1);
    }
    struct log_entry *slot = &log_queue[(log_head + log_count) % LOG_QUEUE_SLOTS];
    slot->level = level;
    memcpy(slot->text, text, sizeof(text));
    log_count++;
    pthread_mutex_unlock(&log_mutex);
}

int s3dl_log_pop(s3dl_log_level *level, char *buf, size_t cap)
{
    if (!buf || cap == 0)
        return 0;
    pthread_mutex_lock(&log_mutex);
    if (log_count == 0) {
        pthread_mutex_unlock(&log_mutex);
        return 0;
    }
    struct log_entry *slot = &log_queue[log_head];
    if (level)
        *level = slot->level;
    snprintf(buf, cap, "%s", slot->text);
    log_head = (log_head + 1) % LOG_QUEUE_SLOTS;
    log_count--;
    pthread_mutex_unlock(&log_mutex);
    return 1;
}

uint64_t s3dl_log_dropped(void) { return atomic_load(&log_dropped_lines); }

void log_after_fork_child(void) { pthread_mutex_init(&log_mutex, NULL); }
