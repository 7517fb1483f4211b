/*
 * s3dlio.h -- the one public header of the s3dlio native core.
 *
 * Overview
 * --------
 * The core moves bytes between storage and memory on an engine that each
 * process owns.  A caller builds a *batch* of requests (GET, ranged GET, PUT,
 * STAT, DELETE), submits it in one call, and then either blocks in
 * s3dl_batch_wait() or, for event loops, watches the engine's notification
 * file descriptor and drains finished batch tags with
 * s3dl_engine_poll_completions().
 *
 * Inside, one engine thread takes batches from a bounded submission ring and
 * routes them: local items to a pool of file-I/O workers, which claim them
 * straight from the batch (at most `max_in_flight` per batch at once), and
 * HTTP items to libcurl multi on the engine thread itself.  No
 * callback ever runs from the core into caller code.
 *
 * Conventions
 * -----------
 *  - Every entry point that can fail returns an s3dl_status.  Values are
 *    pinned and only ever appended; s3dl_strerror() names them.
 *  - Handles are opaque.  "Caller owns" means the caller must release the
 *    object with the named function; "borrowed" means the library keeps it.
 *  - Functions are thread-safe, with one exception: a batch is built
 *    (s3dl_batch_add*, s3dl_batch_setopt) by one thread at a time.  Once
 *    submitted, any thread may wait on, cancel, or read it.
 *  - Bad input returns S3DL_E_INVALID_ARGUMENT; the library never aborts the
 *    process.
 *  - Fork: after fork() the child may keep using an engine created by the
 *    parent; its first call rebuilds the engine thread and queues.  Batches
 *    that were in flight in the parent at fork time are not visible in the
 *    child and must not be touched there.
 */
#ifndef S3DLIO_H
#define S3DLIO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(S3DL_BUILDING_LIBRARY)
#define S3DL_API __attribute__((visibility("default")))
#else
#define S3DL_API
#endif

/* CDEF-BEGIN: everything from here to CDEF-END is fed to cffi verbatim
 * (after removing S3DL_API), so it must stay plain C declarations. */

/* Version at compile time.  S3DL_VERSION_NUM = major*10000 + minor*100 + patch. */
#define S3DL_VERSION_MAJOR 0
#define S3DL_VERSION_MINOR 1
#define S3DL_VERSION_PATCH 0
#define S3DL_VERSION_NUM 100


/* Status codes.  Pinned and append-only: never renumber. */
typedef enum s3dl_status {
    S3DL_OK = 0,
    S3DL_E_INVALID_ARGUMENT = 1, /* bad pointer, option, path or range */
    S3DL_E_NOMEM = 2,            /* allocation failed */
    S3DL_E_NOT_FOUND = 3,        /* object or file does not exist */
    S3DL_E_PERMISSION = 4,       /* access denied (EACCES, EPERM, HTTP 403) */
    S3DL_E_EXISTS = 5,           /* create-only write found an object */
    S3DL_E_IO = 6,               /* other I/O error; see detail errno */
    S3DL_E_NO_SPACE = 7,         /* ENOSPC / EDQUOT / EFBIG */
    S3DL_E_IS_DIRECTORY = 8,     /* a directory where a file was expected */
    S3DL_E_NOT_DIRECTORY = 9,    /* a path component is not a directory */
    S3DL_E_TIMEOUT = 10,         /* deadline passed */
    S3DL_E_CHECKSUM = 11,        /* data did not match its checksum */
    S3DL_E_THROTTLED = 12,       /* service asked us to slow down */
    S3DL_E_HTTP = 13,            /* HTTP error not covered by another code */
    S3DL_E_NETWORK = 14,         /* connection failed or reset */
    S3DL_E_CANCELLED = 15,       /* request cancelled before it finished */
    S3DL_E_BUSY = 16,            /* reserved for a non-blocking submit */
    S3DL_E_RANGE = 17,           /* range starts past the end of the object */
    S3DL_E_UNSUPPORTED = 18,     /* operation not supported for this target */
    S3DL_E_STATE = 19,           /* call not valid in the handle's state */
    S3DL_E_INTERNAL = 20         /* a bug in s3dlio; please report it */
} s3dl_status;

/* Returns a static, never-NULL description of `status` (borrowed). */
S3DL_API const char *s3dl_strerror(s3dl_status status);

/* Run-time version; compare with S3DL_VERSION_NUM. */
S3DL_API unsigned int s3dl_version_number(void);
/* Run-time version as "major.minor.patch" (static, borrowed). */
S3DL_API const char *s3dl_version_string(void);

/* Frees memory that the library handed to the caller (result data of a
 * batch item).  NULL is a no-op. */
S3DL_API void s3dl_free(void *ptr);

/* ---- Engine ---------------------------------------------------------- */

typedef struct s3dl_engine s3dl_engine;

/* Engine options, set with s3dl_engine_setopt() before the first submit. */
typedef enum s3dl_engine_option {
    S3DL_ENGINE_IO_THREADS = 1,         /* file-I/O workers; default min(4, cpus) */
    S3DL_ENGINE_SUBMIT_CAPACITY = 2,    /* submission ring slots (batches); default 1024 */
    S3DL_ENGINE_MAX_IN_FLIGHT = 3,      /* engine-wide item cap; default 256 */
    S3DL_ENGINE_DIRECT_ALIGNMENT = 4,   /* O_DIRECT alignment in bytes; default 4096 */
    S3DL_ENGINE_SPLIT_THRESHOLD = 5,    /* buffered reads this long are split; default 32 MiB */
    S3DL_ENGINE_PART_SIZE = 6,          /* part size of split reads; default 8 MiB */
    S3DL_ENGINE_HTTP_THREADS = 7,       /* HTTP lanes (threads with a libcurl multi
                                         * handle each); default min(4, cpus), 1-8 */
    S3DL_ENGINE_SOCKET_RCVBUF = 8       /* SO_RCVBUF of HTTP connections in bytes; 0 =
                                         * kernel autotuning; default -1 = 4 MiB, or
                                         * net.core.rmem_max if that is 1-4 MiB, else
                                         * autotuning */
} s3dl_engine_option;

/* Creates an engine.  On success *out is caller-owned; release it with
 * s3dl_engine_free().  The engine thread starts lazily, on the first submit
 * or the first s3dl_engine_notify_fd() call. */
S3DL_API s3dl_status s3dl_engine_new(s3dl_engine **out);

/* Sets an option.  Returns S3DL_E_STATE once the engine has started and
 * S3DL_E_INVALID_ARGUMENT for an unknown option or out-of-range value. */
S3DL_API s3dl_status s3dl_engine_setopt(s3dl_engine *engine, s3dl_engine_option option,
                                        int64_t value);

/* Stops the engine thread, cancels queued work, waits for running items and
 * frees the engine.  In batches still submitted, items that had not started
 * complete with S3DL_E_CANCELLED; the batches remain caller-owned.  NULL is
 * a no-op. */
S3DL_API void s3dl_engine_free(s3dl_engine *engine);

/* A file descriptor (eventfd) that becomes readable when a batch submitted
 * with S3DL_BATCH_NOTIFY_TAG completes.  Borrowed: valid until the engine is
 * freed, and rebuilt (a different number) in a forked child.  Starts the
 * engine if needed; returns -1 with no engine or if it cannot start. */
S3DL_API int s3dl_engine_notify_fd(s3dl_engine *engine);

/* Copies up to `max` tags of completed notify-batches into `tags` and
 * clears the fd's readiness when the queue empties.  Returns the count. */
S3DL_API size_t s3dl_engine_poll_completions(s3dl_engine *engine, uint64_t *tags, size_t max);

/* Engine counters, for stats and tests. */
typedef enum s3dl_counter {
    S3DL_COUNTER_ITEMS_COMPLETED = 1,
    S3DL_COUNTER_BYTES_READ = 2,
    S3DL_COUNTER_BYTES_WRITTEN = 3,
    S3DL_COUNTER_DIRECT_FALLBACKS = 4,  /* O_DIRECT refused, buffered I/O used */
    S3DL_COUNTER_ENGINE_STARTS = 5,     /* 1, plus one per rebuild after fork */
    S3DL_COUNTER_BUFFER_CACHE_BYTES = 6 /* freed result buffers kept for reuse, now
                                         * (process-wide, not per engine) */
} s3dl_counter;

/* Reads a counter; unknown counters read 0. */
S3DL_API uint64_t s3dl_engine_counter(s3dl_engine *engine, s3dl_counter counter);

/* ---- Batches ---------------------------------------------------------- */

typedef struct s3dl_batch s3dl_batch;

/* Targets: an absolute local path ("/data/x") runs on the file pool; an
 * "http://" or "https://" URL runs on the engine thread through libcurl,
 * signed by the batch's client (s3dl_batch_set_client). */
typedef enum s3dl_op {
    S3DL_OP_GET = 1,     /* read [offset, offset+length) or the whole object */
    S3DL_OP_PUT = 2,     /* write data (local: atomically, temporary name + rename) */
    S3DL_OP_STAT = 3,    /* size, mtime, etag, content type (HTTP: HEAD) */
    S3DL_OP_DELETE = 4,  /* remove; a missing local file is S3DL_E_NOT_FOUND */
    S3DL_OP_POST = 5     /* HTTP only: POST data, response body returned like GET */
} s3dl_op;

/* Item flags, OR-ed. */
#define S3DL_F_RANGE 0x1u       /* GET: offset/length are meaningful */
#define S3DL_F_DIRECT 0x2u      /* local file: use O_DIRECT (falls back if refused) */
#define S3DL_F_FSYNC 0x4u       /* PUT: fsync file and directory before returning */
#define S3DL_F_CREATE_ONLY 0x8u /* PUT: fail with S3DL_E_EXISTS if the target exists */
#define S3DL_F_MKDIRS 0x10u     /* PUT: create missing parent directories */
#define S3DL_F_KEEP_HEADERS 0x20u /* HTTP: keep the final response's header block
                                   * (s3dl_batch_response_headers) */
#define S3DL_F_ACCEPT_3XX 0x40u /* HTTP: a 3xx answer completes the item successfully
                                 * (resumable uploads answer 308); redirects are
                                 * never followed either way */

/* A length meaning "to the end of the object". */
#define S3DL_LENGTH_TO_END 0xffffffffffffffffull

typedef enum s3dl_batch_option {
    S3DL_BATCH_MAX_IN_FLIGHT = 1, /* items of this batch running at once; default 64 */
    S3DL_BATCH_NOTIFY_TAG = 2,    /* on completion, queue this tag and signal the notify fd */
    S3DL_BATCH_TIMEOUT_MS = 3     /* deadline for the whole batch; 0 = none; max 10^12 */
} s3dl_batch_option;

/* Creates an empty batch bound to `engine`.  *out is caller-owned; free it
 * with s3dl_batch_free().  The engine must outlive the batch. */
S3DL_API s3dl_status s3dl_batch_new(s3dl_engine *engine, s3dl_batch **out);

/* Sets a batch option; only before submit (S3DL_E_STATE after). */
S3DL_API s3dl_status s3dl_batch_setopt(s3dl_batch *batch, s3dl_batch_option option,
                                       int64_t value);

/* Adds one item.  `target` is an absolute local path or an http(s) URL
 * (copied; a batch holds one kind only).  For PUT,
 * `data`/`data_len` are borrowed: they must stay valid and unchanged until
 * the batch completes.  `offset`/`length` apply to ranged GET only.  On
 * success *index_out (if not NULL) receives the item's index. */
S3DL_API s3dl_status s3dl_batch_add(s3dl_batch *batch, s3dl_op op, const char *target,
                                    uint64_t offset, uint64_t length, const void *data,
                                    size_t data_len, uint32_t flags, size_t *index_out);

/* Adds `count` items of one op in one call.  `targets` is required; each of
 * `offsets`, `lengths`, `datas`, `data_lens` may be NULL (then 0 / TO_END /
 * NULL / 0 is used).  Same ownership rules as s3dl_batch_add().  On error
 * no item of this call was added. */
S3DL_API s3dl_status s3dl_batch_add_many(s3dl_batch *batch, s3dl_op op, size_t count,
                                         const char *const *targets, const uint64_t *offsets,
                                         const uint64_t *lengths, const void *const *datas,
                                         const size_t *data_lens, uint32_t flags);

/* Adds a request header ("Name: value", copied) to item `index` of an HTTP
 * batch, before submit.  Host, Authorization, X-Amz-Date,
 * X-Amz-Content-Sha256 and X-Amz-Security-Token are set by the signer. */
S3DL_API s3dl_status s3dl_batch_add_header(s3dl_batch *batch, size_t index,
                                           const char *header);

/* Makes GET item `index` write its body into caller memory [dst, dst+cap)
 * instead of a new allocation.  `dst` is borrowed until the batch
 * completes.  A body longer than `cap` fails the item with S3DL_E_NOMEM.
 * Local O_DIRECT reads go straight into `dst` when it and the offset are
 * aligned, else through a bounce buffer.  The item's result then points into `dst` and its
 * allocation is NULL.  Before submit only. */
S3DL_API s3dl_status s3dl_batch_set_destination(s3dl_batch *batch, size_t index, void *dst,
                                                size_t cap);

/* Allocates `size` bytes suited to I/O results (64-byte aligned), for use
 * as a destination.  Release with
 * s3dl_free().  Returns NULL when out of memory. */
S3DL_API void *s3dl_alloc(size_t size);

/* Number of items added so far. */
S3DL_API size_t s3dl_batch_count(const s3dl_batch *batch);

/* Hands the batch to the engine.  Blocks while the submission ring is full.
 * A batch is submitted once; an empty batch completes at once.  Returns
 * S3DL_E_NOMEM if room for its notify tag cannot be reserved; after any
 * failure the batch is still being built and may be submitted again. */
S3DL_API s3dl_status s3dl_batch_submit(s3dl_batch *batch);

/* Waits for the batch to finish.  timeout_ms < 0 waits forever.  Returns
 * S3DL_OK when done and S3DL_E_TIMEOUT when the wait (not the batch) timed
 * out; the batch keeps running in that case. */
S3DL_API s3dl_status s3dl_batch_wait(s3dl_batch *batch, int64_t timeout_ms);

/* Non-zero once every item has completed. */
S3DL_API int s3dl_batch_done(s3dl_batch *batch);

/* Asks the engine to cancel items that have not started; they complete with
 * S3DL_E_CANCELLED.  Returns at once; wait for completion as usual. */
S3DL_API s3dl_status s3dl_batch_cancel(s3dl_batch *batch);

/* After completion: copies each item's status into `statuses[count]` and
 * moves each GET result out: `allocs[i]` is the allocation to release with
 * s3dl_free(), `datas[i]` points at the first byte of data inside it and
 * `lens[i]` is its length.  Ownership of the allocations passes to the
 * caller; a second call returns NULL for them.  Any array may be NULL. */
S3DL_API s3dl_status s3dl_batch_take_results(s3dl_batch *batch, size_t count,
                                             s3dl_status *statuses, void **allocs,
                                             uint8_t **datas, uint64_t *lens);

/* After completion of an item added with S3DL_F_KEEP_HEADERS: *out points
 * at the raw header block of its final response (status line first, lines
 * ending in CRLF, capped at 16 KiB) and *len receives its length.  The
 * block stays owned by the batch until s3dl_batch_free().  An item without
 * the flag, or that got no response, yields *out = NULL and *len = 0. */
S3DL_API s3dl_status s3dl_batch_response_headers(const s3dl_batch *batch, size_t index,
                                                 const char **out, size_t *len);

/* After completion: for items [0, count), writes three wall-clock times per
 * item into out[3*i .. 3*i+2] -- start of the first attempt, first response
 * byte (HTTP; for files, the start of the read or write), completion -- in
 * ns since the Unix epoch, 0 where not reached (an item cancelled before it
 * started).  For operation logs. */
S3DL_API s3dl_status s3dl_batch_timings(const s3dl_batch *batch, size_t count, int64_t *out);

/* After completion: formats one operation-log row per item [0, count) into
 * a new buffer (*out, *out_len; release with s3dl_free()):
 *   idx \t thread \t op \t client_id \t 1 \t bytes \t endpoint \t file \t error
 *   \t start \t first_byte \t end \t duration_ns \n
 * with idx counting from `first_index`; `thread` and `client_id` as given;
 * op the item's (GET, PUT, HEAD, DELETE, POST) unless `labels` names one
 * ('\n'-separated, one line per item, empty lines keep the default; may be
 * NULL); file from `files` ('\n'-separated, one line per item); bytes from
 * sizes[i]; endpoint scheme://host[:port] of an HTTP target, else file://;
 * error empty or s3dl_strerror() of a failure; times RFC 3339 UTC with
 * nanoseconds (empty when not reached).  Tabs and newlines in fields become
 * spaces. */
S3DL_API s3dl_status s3dl_batch_format_log(const s3dl_batch *batch, size_t count,
                                           uint64_t first_index, const char *thread,
                                           const char *client_id, const char *files,
                                           size_t files_len, const char *labels,
                                           size_t labels_len, const uint64_t *sizes,
                                           char **out, size_t *out_len);

/* Per-request failure detail, filled for the caller (strings NUL-terminated,
 * truncated to fit). */
typedef struct s3dl_detail {
    s3dl_status status;
    int sys_errno;          /* errno of the failing system call, or 0 */
    int http_status;        /* HTTP status, or 0 for local I/O */
    char code[64];          /* service error code (e.g. "NoSuchKey"), or "" */
    char request_id[128];   /* service request id, or "" */
    char message[256];      /* human-readable; never contains secrets */
} s3dl_detail;

/* Copies item `index`'s detail into *out.  Valid after completion. */
S3DL_API s3dl_status s3dl_batch_detail(const s3dl_batch *batch, size_t index,
                                       s3dl_detail *out);

/* Metadata from STAT (and filled by GET where known).  For HTTP, `size` is
 * the whole object's size (from Content-Length, or Content-Range for a
 * ranged GET) and `mtime_ns` comes from Last-Modified (0 when absent). */
typedef struct s3dl_stat {
    uint64_t size;
    int64_t mtime_ns;        /* last modification, ns since the epoch */
    char etag[128];          /* "" when the backend has none */
    char content_type[128];  /* "" when unknown */
} s3dl_stat;

/* Copies item `index`'s metadata into *out.  Valid after completion. */
S3DL_API s3dl_status s3dl_batch_stat(const s3dl_batch *batch, size_t index, s3dl_stat *out);

/* Cancels and waits for a submitted batch if it is still running, frees
 * every result not taken, and frees the batch.  NULL is a no-op. */
S3DL_API void s3dl_batch_free(s3dl_batch *batch);

/* ---- HTTP clients ----------------------------------------------------- */

/* A client holds what HTTP requests of a batch share: credentials and
 * signing scope, TLS settings, timeouts and retry policy.  It is
 * reference-counted: batches keep it alive while they run, so the caller
 * may free its handle at any time.  Options are fixed once a batch using
 * the client has been submitted or a URL presigned with it (S3DL_E_STATE
 * after); to rotate credentials, create a new client. */
typedef struct s3dl_client s3dl_client;

typedef enum s3dl_client_option {
    S3DL_CLIENT_ACCESS_KEY_ID = 1,     /* string; with the secret, enables SigV4 */
    S3DL_CLIENT_SECRET_ACCESS_KEY = 2, /* string; never logged or echoed */
    S3DL_CLIENT_SESSION_TOKEN = 3,     /* string; sent as X-Amz-Security-Token */
    S3DL_CLIENT_REGION = 4,            /* string; default "us-east-1" */
    S3DL_CLIENT_SERVICE = 5,           /* string; default "s3" */
    S3DL_CLIENT_CA_BUNDLE = 6,         /* string: PEM file of trusted CAs */
    S3DL_CLIENT_VERIFY_TLS = 7,        /* int: 1 (default) verify peer and host; 0 off */
    S3DL_CLIENT_CONNECT_TIMEOUT_MS = 8,/* int: default 10000 */
    S3DL_CLIENT_REQUEST_TIMEOUT_MS = 9,/* int: whole attempt incl. body; 0 = none (default) */
    S3DL_CLIENT_MAX_ATTEMPTS = 10,     /* int: tries per request incl. the first; default 3 */
    S3DL_CLIENT_SIGNED_PAYLOAD = 11,   /* int: 1 hash bodies into the signature; 0 (default)
                                        * UNSIGNED-PAYLOAD (TLS protects the body) */
    S3DL_CLIENT_LOW_SPEED_TIMEOUT_MS = 12,/* int: abort an attempt moving < 1 byte/s this
                                        * long; default 30000 */
    S3DL_CLIENT_CHECKSUM = 13,         /* int: S3DL_CHECKSUM_* for PUT bodies and GET
                                        * verification; default CRC32C */
    S3DL_CLIENT_DIALECT = 14           /* int: S3DL_DIALECT_*; default S3 */
} s3dl_client_option;

/* Which service a client talks to (S3DL_CLIENT_DIALECT).  It decides the
 * integrity headers and how error bodies are read:
 * - S3: SigV4 when credentials are set; x-amz-checksum-* as described below.
 * - GCS: no signing and no added headers (the caller adds "Authorization:
 *   Bearer ..." and x-goog-hash on uploads, which only it can place: a
 *   resumable upload sends the whole object's hash with the last chunk);
 *   unless the checksum mode is NONE, whole-object GETs are checked against
 *   the x-goog-hash crc32c the server returns; JSON error bodies
 *   ({"error": {...}}) are read for their reason and message.
 * - AZURE: no signing and no added headers (SharedKey signs the headers, so
 *   the caller supplies every signed one, x-ms-range for ranges included);
 *   whole-blob GETs are checked against the Content-MD5 the service returns
 *   unless the checksum mode is NONE; x-ms-error-code names the error when
 *   there is no body (HEAD). */
#define S3DL_DIALECT_S3 0
#define S3DL_DIALECT_GCS 1
#define S3DL_DIALECT_AZURE 2

/* Integrity of bodies (S3DL_CLIENT_CHECKSUM).  With CRC32C, PUTs carry
 * x-amz-checksum-crc32c and whole-object GETs ask for the stored checksum
 * (x-amz-checksum-mode: ENABLED) and verify it when the server returns one;
 * a mismatch is retried, then reported as S3DL_E_CHECKSUM.  CONTENT_MD5 is
 * for stores without flexible checksums (PUTs only). */
#define S3DL_CHECKSUM_NONE 0
#define S3DL_CHECKSUM_CRC32C 1
#define S3DL_CHECKSUM_CONTENT_MD5 2

/* Creates a client with defaults.  *out is caller-owned; s3dl_client_free(). */
S3DL_API s3dl_status s3dl_client_new(s3dl_client **out);

/* Sets a string option (copied; NULL clears it). */
S3DL_API s3dl_status s3dl_client_setopt_str(s3dl_client *client, s3dl_client_option option,
                                            const char *value);

/* Sets an integer option. */
S3DL_API s3dl_status s3dl_client_setopt_int(s3dl_client *client, s3dl_client_option option,
                                            int64_t value);

/* Drops the caller's reference.  NULL is a no-op. */
S3DL_API void s3dl_client_free(s3dl_client *client);

/* Makes the batch's HTTP items use `client` (a reference is taken).  Before
 * submit only. */
S3DL_API s3dl_status s3dl_batch_set_client(s3dl_batch *batch, s3dl_client *client);

/* Presigns `url` (an http(s) URL, encoded as it will be sent) for `method`,
 * valid `expires` seconds (1..604800) from now.  *out receives the full
 * URL; release it with s3dl_free(). */
S3DL_API s3dl_status s3dl_presign(s3dl_client *client, const char *method, const char *url,
                                  int64_t expires, char **out);

/* ---- Logging ---------------------------------------------------------- */

typedef enum s3dl_log_level {
    S3DL_LOG_OFF = 0,
    S3DL_LOG_ERROR = 1,
    S3DL_LOG_WARN = 2,
    S3DL_LOG_INFO = 3,
    S3DL_LOG_DEBUG = 4,
    S3DL_LOG_TRACE = 5
} s3dl_log_level;

/* Sets the process-wide level; lines above it are not queued. */
S3DL_API void s3dl_log_set_level(s3dl_log_level level);

/* Pops the oldest queued log line into `buf` (NUL-terminated, truncated to
 * `cap`) and its level into *level.  Returns 1 if a line was popped, 0 if
 * the queue is empty.  The queue is bounded; when full the oldest line is
 * dropped and counted in s3dl_log_dropped(). */
S3DL_API int s3dl_log_pop(s3dl_log_level *level, char *buf, size_t cap);

/* Lines dropped because the queue was full. */
S3DL_API uint64_t s3dl_log_dropped(void);

/* ---- Checksums -------------------------------------------------------- */

/* CRC-32C (Castagnoli), continuing from `crc` (0 to start). */
S3DL_API uint32_t s3dl_crc32c(uint32_t crc, const void *data, size_t len);

/* CDEF-END */

#ifdef __cplusplus
}
#endif

#endif /* S3DLIO_H */
