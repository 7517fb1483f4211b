/* Engine and local-file executor through the public API: round trips,
 * ranges (buffered and O_DIRECT, unaligned), errors, notification fd,
 * cancellation, concurrent submitters, and use after fork. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "s3dlio.h"

static char dir[256];
static s3dl_engine *engine;

static void path_of(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Runs a one-item batch and returns its status; GET data is copied out. */
static s3dl_status run_one(s3dl_op op, const char *name, uint64_t off, uint64_t len,
                           const void *data, size_t data_len, uint32_t flags, uint8_t **out,
                           uint64_t *out_len, s3dl_detail *detail)
{
    char path[512];
    path_of(path, sizeof(path), name);
    s3dl_batch *b = NULL;
    CHECK_EQ_INT(s3dl_batch_new(engine, &b), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_add(b, op, path, off, len, data, data_len, flags, NULL), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_submit(b), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_wait(b, -1), S3DL_OK);
    s3dl_status st;
    void *alloc = NULL;
    uint8_t *ptr = NULL;
    uint64_t n = 0;
    CHECK_EQ_INT(s3dl_batch_take_results(b, 1, &st, &alloc, &ptr, &n), S3DL_OK);
    if (out) {
        *out = malloc(n + 1);
        memcpy(*out, ptr, n);
        *out_len = n;
    }
    if (detail)
        s3dl_batch_detail(b, 0, detail);
    s3dl_free(alloc);
    s3dl_batch_free(b);
    return st;
}

static void fill_pattern(uint8_t *buf, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)((i * 31 + seed) ^ (i >> 9));
}

static void test_round_trip(uint32_t flags, size_t size)
{
    uint8_t *data = malloc(size + 1);
    fill_pattern(data, size, (unsigned)size);
    CHECK_EQ_INT(run_one(S3DL_OP_PUT, "rt.bin", 0, 0, data, size, flags | S3DL_F_MKDIRS, NULL,
                         NULL, NULL),
                 S3DL_OK);
    uint8_t *got = NULL;
    uint64_t got_len = 0;
    CHECK_EQ_INT(run_one(S3DL_OP_GET, "rt.bin", 0, 0, NULL, 0, flags, &got, &got_len, NULL),
                 S3DL_OK);
    CHECK_EQ_INT(got_len, size);
    CHECK(memcmp(got, data, size) == 0);
    free(got);
    /* Unaligned ranges, including one that runs past the end. */
    uint64_t ranges[][2] = {{1, 10}, {511, 4097}, {4095, 2}, {size / 2, size}, {size, 5}};
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        uint64_t off = ranges[i][0] > size ? size : ranges[i][0];
        uint64_t want = ranges[i][1];
        uint64_t expect = off + want > size ? size - off : want;
        CHECK_EQ_INT(run_one(S3DL_OP_GET, "rt.bin", off, want, NULL, 0, flags | S3DL_F_RANGE,
                             &got, &got_len, NULL),
                     S3DL_OK);
        CHECK_EQ_INT(got_len, expect);
        CHECK(memcmp(got, data + off, expect) == 0);
        free(got);
    }
    free(data);
}

static void test_errors(void)
{
    s3dl_detail d;
    CHECK_EQ_INT(run_one(S3DL_OP_GET, "missing.bin", 0, 0, NULL, 0, 0, NULL, NULL, &d),
                 S3DL_E_NOT_FOUND);
    CHECK_EQ_INT(d.sys_errno, ENOENT);
    CHECK(strstr(d.message, "missing.bin") != NULL);
    char sub[512];
    path_of(sub, sizeof(sub), "adir");
    mkdir(sub, 0777);
    CHECK_EQ_INT(run_one(S3DL_OP_GET, "adir", 0, 0, NULL, 0, 0, NULL, NULL, NULL),
                 S3DL_E_IS_DIRECTORY);
    CHECK_EQ_INT(run_one(S3DL_OP_PUT, "adir", 0, 0, "x", 1, 0, NULL, NULL, NULL),
                 S3DL_E_IS_DIRECTORY);
    CHECK_EQ_INT(run_one(S3DL_OP_PUT, "small", 0, 0, "abc", 3, 0, NULL, NULL, NULL), S3DL_OK);
    CHECK_EQ_INT(run_one(S3DL_OP_GET, "small", 4, 1, NULL, 0, S3DL_F_RANGE, NULL, NULL, NULL),
                 S3DL_E_RANGE);
    CHECK_EQ_INT(run_one(S3DL_OP_PUT, "small", 0, 0, "def", 3, S3DL_F_CREATE_ONLY, NULL, NULL,
                         NULL),
                 S3DL_E_EXISTS);
    CHECK_EQ_INT(run_one(S3DL_OP_STAT, "small", 0, 0, NULL, 0, 0, NULL, NULL, NULL), S3DL_OK);
    CHECK_EQ_INT(run_one(S3DL_OP_DELETE, "small", 0, 0, NULL, 0, 0, NULL, NULL, NULL), S3DL_OK);
    CHECK_EQ_INT(run_one(S3DL_OP_DELETE, "small", 0, 0, NULL, 0, 0, NULL, NULL, NULL),
                 S3DL_E_NOT_FOUND);
    CHECK_EQ_INT(run_one(S3DL_OP_PUT, "small", 0, 0, "abc", 3, 0, NULL, NULL, NULL), S3DL_OK);
    CHECK_EQ_INT(run_one(S3DL_OP_PUT, "small/under-a-file", 0, 0, "x", 1, S3DL_F_MKDIRS, NULL,
                         NULL, NULL),
                 S3DL_E_NOT_DIRECTORY);

    s3dl_batch *b = NULL;
    CHECK_EQ_INT(s3dl_batch_new(engine, &b), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_add(b, S3DL_OP_GET, "relative/path", 0, 0, NULL, 0, 0, NULL),
                 S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_batch_add(b, (s3dl_op)99, "/tmp/x", 0, 0, NULL, 0, 0, NULL),
                 S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_batch_add(b, S3DL_OP_PUT, "/tmp/x", 0, 0, NULL, 5, 0, NULL),
                 S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_batch_wait(b, 0), S3DL_E_STATE);
    CHECK_EQ_INT(s3dl_batch_count(b), 0);
    CHECK_EQ_INT(s3dl_batch_submit(b), S3DL_OK); /* empty: completes at once */
    CHECK_EQ_INT(s3dl_batch_wait(b, 5000), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_submit(b), S3DL_E_STATE);
    s3dl_batch_free(b);
}

/* Many items with a small in-flight cap; each name gets its own bytes. */
static void test_many_and_notify(void)
{
    enum { N = 500 };
    char *paths[N];
    const void *datas[N];
    size_t lens[N];
    char bodies[N][16];
    for (int i = 0; i < N; i++) {
        paths[i] = malloc(512);
        snprintf(paths[i], 512, "%s/many/obj-%04d", dir, i);
        lens[i] = (size_t)snprintf(bodies[i], sizeof(bodies[i]), "body-%d", i);
        datas[i] = bodies[i];
    }
    s3dl_batch *put = NULL;
    CHECK_EQ_INT(s3dl_batch_new(engine, &put), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_setopt(put, S3DL_BATCH_MAX_IN_FLIGHT, 3), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_add_many(put, S3DL_OP_PUT, N, (const char *const *)paths, NULL, NULL,
                                     datas, lens, S3DL_F_MKDIRS),
                 S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_setopt(put, S3DL_BATCH_NOTIFY_TAG, 4242), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_submit(put), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_setopt(put, S3DL_BATCH_MAX_IN_FLIGHT, 3), S3DL_E_STATE);

    struct pollfd pfd = {.fd = s3dl_engine_notify_fd(engine), .events = POLLIN};
    CHECK(pfd.fd >= 0);
    CHECK_EQ_INT(poll(&pfd, 1, 30000), 1);
    uint64_t tags[4];
    CHECK_EQ_INT(s3dl_engine_poll_completions(engine, tags, 4), 1);
    CHECK_EQ_INT(tags[0], 4242);
    CHECK(s3dl_batch_done(put));
    s3dl_status st[N];
    CHECK_EQ_INT(s3dl_batch_take_results(put, N, st, NULL, NULL, NULL), S3DL_OK);
    int ok = 0;
    for (int i = 0; i < N; i++)
        ok += st[i] == S3DL_OK;
    CHECK_EQ_INT(ok, N);
    s3dl_batch_free(put);

    s3dl_batch *get = NULL;
    CHECK_EQ_INT(s3dl_batch_new(engine, &get), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_add_many(get, S3DL_OP_GET, N, (const char *const *)paths, NULL, NULL,
                                     NULL, NULL, 0),
                 S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_submit(get), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_wait(get, -1), S3DL_OK);
    void *allocs[N];
    uint8_t *ptrs[N];
    uint64_t got[N];
    CHECK_EQ_INT(s3dl_batch_take_results(get, N, st, allocs, ptrs, got), S3DL_OK);
    int same = 0;
    for (int i = 0; i < N; i++) {
        same += st[i] == S3DL_OK && got[i] == lens[i] && memcmp(ptrs[i], bodies[i], lens[i]) == 0;
        s3dl_free(allocs[i]);
    }
    CHECK_EQ_INT(same, N);
    s3dl_batch_free(get);
    for (int i = 0; i < N; i++)
        free(paths[i]);
}

static void test_cancel(void)
{
    enum { N = 2000 };
    char path[512];
    path_of(path, sizeof(path), "many/obj-0001");
    s3dl_batch *b = NULL;
    CHECK_EQ_INT(s3dl_batch_new(engine, &b), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_setopt(b, S3DL_BATCH_MAX_IN_FLIGHT, 1), S3DL_OK);
    for (int i = 0; i < N; i++)
        s3dl_batch_add(b, S3DL_OP_STAT, path, 0, 0, NULL, 0, 0, NULL);
    CHECK_EQ_INT(s3dl_batch_submit(b), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_cancel(b), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_wait(b, -1), S3DL_OK);
    s3dl_status st[N];
    s3dl_batch_take_results(b, N, st, NULL, NULL, NULL);
    int ok = 0, cancelled = 0;
    for (int i = 0; i < N; i++) {
        ok += st[i] == S3DL_OK;
        cancelled += st[i] == S3DL_E_CANCELLED;
    }
    CHECK_EQ_INT(ok + cancelled, N); /* how many ran first depends on timing */
    s3dl_batch_free(b);

    /* Cancelled before submit: nothing runs, deterministically. */
    CHECK_EQ_INT(s3dl_batch_new(engine, &b), S3DL_OK);
    for (int i = 0; i < N; i++)
        s3dl_batch_add(b, S3DL_OP_STAT, path, 0, 0, NULL, 0, 0, NULL);
    CHECK_EQ_INT(s3dl_batch_cancel(b), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_submit(b), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_wait(b, -1), S3DL_OK);
    s3dl_batch_take_results(b, N, st, NULL, NULL, NULL);
    cancelled = 0;
    for (int i = 0; i < N; i++)
        cancelled += st[i] == S3DL_E_CANCELLED;
    CHECK_EQ_INT(cancelled, N);
    s3dl_batch_free(b);

    /* Freeing a running batch cancels and waits instead of crashing. */
    CHECK_EQ_INT(s3dl_batch_new(engine, &b), S3DL_OK);
    for (int i = 0; i < N; i++)
        s3dl_batch_add(b, S3DL_OP_STAT, path, 0, 0, NULL, 0, 0, NULL);
    CHECK_EQ_INT(s3dl_batch_submit(b), S3DL_OK);
    s3dl_batch_free(b);
}

static void *submitter(void *arg)
{
    (void)arg;
    for (int round = 0; round < 50; round++) {
        uint8_t *got = NULL;
        uint64_t n = 0;
        if (run_one(S3DL_OP_GET, "many/obj-0007", 0, 0, NULL, 0, 0, &got, &n, NULL) == S3DL_OK)
            CHECK(n == 6 && memcmp(got, "body-7", 6) == 0);
        else
            CHECK(!"concurrent get failed");
        free(got);
    }
    return NULL;
}

static void test_concurrent_submitters(void)
{
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, submitter, NULL);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
}

static void test_fork(void)
{
    uint64_t starts = s3dl_engine_counter(engine, S3DL_COUNTER_ENGINE_STARTS);
    pid_t pid = fork();
    if (pid == 0) {
        uint8_t *got = NULL;
        uint64_t n = 0;
        s3dl_status st = run_one(S3DL_OP_GET, "many/obj-0003", 0, 0, NULL, 0, 0, &got, &n, NULL);
        int good = st == S3DL_OK && n == 6 && memcmp(got, "body-3", 6) == 0 &&
                   s3dl_engine_counter(engine, S3DL_COUNTER_ENGINE_STARTS) == starts + 1;
        _exit(good ? 0 : 1); /* the parent's failure count came along; ignore it */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ_INT(s3dl_engine_counter(engine, S3DL_COUNTER_ENGINE_STARTS), starts);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "%s/s3dl-test-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    CHECK_EQ_INT(s3dl_engine_new(&engine), S3DL_OK);
    CHECK_EQ_INT(s3dl_engine_setopt(engine, S3DL_ENGINE_IO_THREADS, 0), S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_engine_setopt(engine, S3DL_ENGINE_DIRECT_ALIGNMENT, 3000),
                 S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_engine_setopt(engine, S3DL_ENGINE_IO_THREADS, 3), S3DL_OK);
    CHECK_EQ_INT(s3dl_engine_setopt(engine, S3DL_ENGINE_HTTP_THREADS, 0), S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_engine_setopt(engine, S3DL_ENGINE_HTTP_THREADS, 9), S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_engine_setopt(engine, S3DL_ENGINE_HTTP_THREADS, 2), S3DL_OK);
    CHECK_EQ_INT(s3dl_engine_setopt(engine, S3DL_ENGINE_SOCKET_RCVBUF, -2), S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_engine_setopt(engine, S3DL_ENGINE_SOCKET_RCVBUF, (1 << 30) + 1),
                 S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_engine_setopt(engine, S3DL_ENGINE_SOCKET_RCVBUF, 0), S3DL_OK);

    size_t sizes[] = {0,     1,     511, 4095, 4096, 4097, 65536 + 17, 3 * 1024 * 1024 + 5,
                      ((size_t)40 << 20) + 123 /* split across workers */};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        test_round_trip(0, sizes[i]);
        test_round_trip(S3DL_F_DIRECT, sizes[i]);
        test_round_trip(S3DL_F_DIRECT | S3DL_F_FSYNC, sizes[i]);
    }
    CHECK_EQ_INT(s3dl_engine_setopt(engine, S3DL_ENGINE_IO_THREADS, 2), S3DL_E_STATE);
    CHECK_EQ_INT(s3dl_engine_setopt(engine, S3DL_ENGINE_HTTP_THREADS, 3), S3DL_E_STATE);
    /* The buffer-cache counter reports the process-wide cache (off in
     * sanitizer builds): a freed 1 MiB result shows in it. */
    void *result = s3dl_alloc(1u << 20);
    uint64_t cached = s3dl_engine_counter(engine, S3DL_COUNTER_BUFFER_CACHE_BYTES);
    s3dl_free(result);
#ifdef S3DL_NO_BUFFER_CACHE
    CHECK(cached == 0 && s3dl_engine_counter(engine, S3DL_COUNTER_BUFFER_CACHE_BYTES) == 0);
#else
    CHECK(s3dl_engine_counter(engine, S3DL_COUNTER_BUFFER_CACHE_BYTES) >= cached + (1u << 20));
#endif
    test_errors();
    test_many_and_notify();
    test_cancel();
    test_concurrent_submitters();
    test_fork();
    s3dl_engine_free(engine);

    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return check_report("test_engine");
}
