/* Local file executor.  Reads land in one exact-size buffer; O_DIRECT reads
 * widen the range to the alignment and point the result into it.  Writes go
 * to a temporary name in the same directory and are renamed into place, so a
 * crash never leaves a partial file under the final name. */
#define _GNU_SOURCE
#include "file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "aligned_buf.h"
#include "file_pool.h"
#include "log.h"
#include "read_plan.h"
#include "status.h"

/* O_DIRECT writes go through a bounce buffer of this size when the caller's
 * memory is not aligned. */
#define DIRECT_BOUNCE_BYTES (8u * 1024 * 1024)
#define READ_CHUNK_BYTES ((size_t)1 << 30)

static void fail_errno(struct s3dl_item *item, int err, const char *what)
{
    item_fail(item, status_from_errno(err), err, "%s %s: %s", what, item->target, strerror(err));
}

static int open_for_read(const struct file_io_context *ctx, struct s3dl_item *item, int *direct)
{
    /* O_NONBLOCK: opening a FIFO must not hang a worker; regular files
     * ignore the flag, and anything else is refused after fstat. */
    int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
    if (*direct) {
        int fd = open(item->target, flags | O_DIRECT);
        if (fd >= 0 || errno != EINVAL)
            return fd;
        /* The filesystem refuses O_DIRECT (tmpfs, some FUSE mounts). */
        atomic_fetch_add(ctx->direct_fallbacks, 1);
        S3DL_LOG(S3DL_LOG_DEBUG, "O_DIRECT refused for %s; using buffered reads", item->target);
        *direct = 0;
    }
    return open(item->target, flags);
}

/* Reads up to `len` bytes at `offset`; returns bytes read (short only at EOF)
 * or -1 with errno set. */
static ssize_t pread_full(int fd, uint8_t *dst, size_t len, uint64_t offset)
{
    size_t done = 0;
    while (done < len) {
        size_t want = len - done < READ_CHUNK_BYTES ? len - done : READ_CHUNK_BYTES;
        ssize_t n = pread(fd, dst + done, want, (off_t)(offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/* Objects are regular files; directories, FIFOs, sockets and devices are
 * not.  Returns 1 for a regular file, else records the failure. */
static int regular_file_or_fail(struct s3dl_item *item, const struct stat *st)
{
    if (S_ISREG(st->st_mode))
        return 1;
    if (S_ISDIR(st->st_mode))
        item_fail(item, S3DL_E_IS_DIRECTORY, EISDIR, "%s is a directory", item->target);
    else
        item_fail(item, S3DL_E_UNSUPPORTED, 0, "%s is not a regular file", item->target);
    return 0;
}

static int fill_stat(struct s3dl_item *item, const struct stat *st)
{
    if (!item->stat)
        item->stat = calloc(1, sizeof(*item->stat));
    if (!item->stat) {
        item_fail(item, S3DL_E_NOMEM, ENOMEM, "out of memory for metadata of %s", item->target);
        return -1;
    }
    item->stat->size = (uint64_t)st->st_size;
    item->stat->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
    return 0;
}

static void do_get(const struct file_io_context *ctx, struct s3dl_item *item)
{
    int direct = (item->flags & S3DL_F_DIRECT) != 0;
    int fd = open_for_read(ctx, item, &direct);
    if (fd < 0) {
        fail_errno(item, errno, "cannot open");
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fail_errno(item, errno, "cannot stat");
        goto out;
    }
    if (!regular_file_or_fail(item, &st))
        goto out;
    uint64_t size = (uint64_t)st.st_size;
    int ranged = (item->flags & S3DL_F_RANGE) != 0;
    struct read_plan plan;
    s3dl_status planned = read_plan_make(size, ranged ? item->offset : 0,
                                         ranged ? item->length : S3DL_LENGTH_TO_END,
                                         direct ? ctx->alignment : 1, &plan);
    if (planned == S3DL_E_RANGE) {
        item_fail(item, S3DL_E_RANGE, 0, "offset %llu is past the end of %s (%llu bytes)",
                  (unsigned long long)item->offset, item->target, (unsigned long long)size);
        goto out;
    }
    if (planned != S3DL_OK || plan.span > (uint64_t)SSIZE_MAX) {
        item_fail(item, S3DL_E_NOMEM, ENOMEM, "%s is too large to read into memory",
                  item->target);
        goto out;
    }
    uint64_t offset = plan.offset, length = plan.length, read_from = plan.read_from;
    size_t span = (size_t)plan.span;
    size_t align = direct ? ctx->alignment : 64;
    uint8_t *dest = item->dest;
    if (dest && length > item->dest_cap) {
        item_fail(item, S3DL_E_NOMEM, 0, "%s (%llu bytes) does not fit the %zu-byte destination",
                  item->target, (unsigned long long)length, item->dest_cap);
        goto out;
    }
    /* Read straight into the caller's memory when the I/O allows it (any
     * buffered read; O_DIRECT only with aligned memory and offset); else
     * through our own buffer and one copy. */
    int into_dest = dest && (!direct || (((uintptr_t)dest & (align - 1)) == 0 &&
                                         read_from == offset && span <= item->dest_cap));
    uint8_t *owned = into_dest ? NULL : aligned_buf_alloc(align, span, !direct);
    uint8_t *buf = into_dest ? dest : owned;
    if (!buf) {
        item_fail(item, S3DL_E_NOMEM, ENOMEM, "cannot allocate %zu bytes for %s", span,
                  item->target);
        goto out;
    }
    if (!direct && length >= (1u << 20))
        posix_fadvise(fd, (off_t)offset, (off_t)length, POSIX_FADV_SEQUENTIAL);
    ssize_t got;
    int read_err = 0;
    /* Large buffered reads are bound by page faults and copies, which
     * parallel parts spread over the cores.  An O_DIRECT read goes out whole:
     * the block layer splits and queues one large request more deeply than
     * per-worker parts would (measured on 1 GiB: whole 1.75 GB/s, 8 MiB
     * parts 1.45 GB/s, 64 MiB parts 1.5 GB/s, dd iflag=direct 1.3-1.6). */
    if (ctx->pool && !direct && span >= ctx->split_threshold) {
        got = file_pool_parallel_read(ctx->pool, fd, buf, span, read_from, &read_err);
        if (got < 0)
            errno = read_err;
    } else {
        got = pread_full(fd, buf, span, read_from);
    }
    if (got < 0 && direct && errno == EINVAL) {
        /* Some filesystems accept O_DIRECT at open and refuse the read. */
        atomic_fetch_add(ctx->direct_fallbacks, 1);
        int flags = fcntl(fd, F_GETFL);
        if (flags >= 0 && fcntl(fd, F_SETFL, flags & ~O_DIRECT) == 0)
            got = pread_full(fd, buf, span, read_from);
    }
    if (got < 0) {
        aligned_buf_free(owned);
        fail_errno(item, errno, "cannot read");
        goto out;
    }
    uint64_t available = (uint64_t)got > offset - read_from ? (uint64_t)got - (offset - read_from) : 0;
    if (available < length) {
        aligned_buf_free(owned);
        item_fail(item, S3DL_E_IO, 0, "%s shrank while it was being read", item->target);
        goto out;
    }
    if (dest && !into_dest) {
        memcpy(dest, buf + (offset - read_from), (size_t)length);
        aligned_buf_free(owned);
        owned = NULL;
    }
    item->alloc = owned;
    item->result = dest ? dest : buf + (offset - read_from);
    item->result_len = length;
    atomic_fetch_add_explicit(ctx->bytes_read, length, memory_order_relaxed);
    if (fill_stat(item, &st) == 0)
        item->status = S3DL_OK;
    else {
        aligned_buf_free(owned);
        item->alloc = NULL;
        item->result = NULL;
        item->result_len = 0;
    }
out:
    close(fd);
}

/* mkdir -p for the parent of `path`.  Returns 0 or an errno value. */
static int make_parents(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return ENOMEM;
    int err = 0;
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, 0777) != 0 && errno != EEXIST) {
            err = errno;
            break;
        }
        *p = '/';
    }
    free(copy);
    return err;
}

static int fsync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    char dir[PATH_MAX];
    if (len >= sizeof(dir))
        return ENAMETOOLONG;
    memcpy(dir, path, len);
    dir[len] = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = fsync(fd) == 0 ? 0 : errno;
    close(fd);
    return err;
}

/* Writes all of `len` bytes at the current offset; returns 0 or errno. */
static int write_full(int fd, const uint8_t *src, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, src, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        src += n;
        len -= (size_t)n;
    }
    return 0;
}

/* O_DIRECT write: whole aligned blocks straight from the caller when its
 * memory is aligned, the rest through an aligned bounce buffer; the tail is
 * padded to a block and the file truncated back to its true size. */
static int write_direct(const struct file_io_context *ctx, int fd, const uint8_t *src, size_t len)
{
    size_t align = ctx->alignment;
    size_t done = 0;
    if (((uintptr_t)src & (align - 1)) == 0) {
        size_t whole = align_down(len, align);
        int err = write_full(fd, src, whole);
        if (err)
            return err;
        done = whole;
    }
    if (done < len) {
        size_t bounce_size = align_up(len - done, align);
        if (bounce_size > DIRECT_BOUNCE_BYTES)
            bounce_size = DIRECT_BOUNCE_BYTES;
        uint8_t *bounce = aligned_buf_alloc(align, bounce_size, 0);
        if (!bounce)
            return ENOMEM;
        while (done < len) {
            size_t chunk = len - done < bounce_size ? len - done : bounce_size;
            memcpy(bounce, src + done, chunk);
            size_t padded = align_up(chunk, align);
            memset(bounce + chunk, 0, padded - chunk);
            int err = write_full(fd, bounce, padded);
            if (err) {
                aligned_buf_free(bounce);
                return err;
            }
            done += chunk;
        }
        aligned_buf_free(bounce);
    }
    if (ftruncate(fd, (off_t)len) != 0)
        return errno;
    return 0;
}

static void do_put(const struct file_io_context *ctx, struct s3dl_item *item)
{
    if (item->flags & S3DL_F_MKDIRS) {
        int err = make_parents(item->target);
        if (err) {
            fail_errno(item, err, "cannot create parent directories of");
            return;
        }
    }
    const char *slash = strrchr(item->target, '/');
    size_t dir_len = (size_t)(slash - item->target);
    char tmp[PATH_MAX];
    static _Atomic unsigned long long put_sequence;
    unsigned long long nonce = ((unsigned long long)getpid() << 40) ^
                               atomic_fetch_add(&put_sequence, 1) ^
                               ((unsigned long long)(uintptr_t)item << 8);
    /* ".<name>.s3dlio-tmp.<hex>" keeps the name visible to whoever finds
     * debris; a name too long for that uses ".s3dlio-tmp.<hex>" alone. */
    const char *base = slash + 1;
    int n = strlen(base) + 32 <= NAME_MAX
                ? snprintf(tmp, sizeof(tmp), "%.*s/.%s.s3dlio-tmp.%llx", (int)dir_len,
                           item->target, base, nonce)
                : snprintf(tmp, sizeof(tmp), "%.*s/.s3dlio-tmp.%llx", (int)dir_len,
                           item->target, nonce);
    if (n < 0 || (size_t)n >= sizeof(tmp) || base[0] == '\0') {
        item_fail(item, S3DL_E_INVALID_ARGUMENT, ENAMETOOLONG, "bad target name %s",
                  item->target);
        return;
    }

    /* Create buffered, then switch O_DIRECT on: opening with O_CREAT|O_DIRECT
     * on a filesystem that refuses O_DIRECT creates the file and then fails,
     * which would leave the name taken. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        fail_errno(item, errno, "cannot create temporary file for");
        return;
    }
    int direct = 0;
    if (item->flags & S3DL_F_DIRECT) {
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0) {
            direct = 1;
        } else {
            atomic_fetch_add(ctx->direct_fallbacks, 1);
            S3DL_LOG(S3DL_LOG_DEBUG, "O_DIRECT refused for %s; using buffered writes",
                     item->target);
        }
    }
    int err;
    if (direct) {
        err = write_direct(ctx, fd, item->data, item->data_len);
        if (err == EINVAL) {
            /* Accepted at open, refused at write: restart buffered. */
            atomic_fetch_add(ctx->direct_fallbacks, 1);
            int fl = fcntl(fd, F_GETFL);
            err = (fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_DIRECT) == 0 &&
                   ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0)
                      ? write_full(fd, item->data, item->data_len)
                      : EIO;
        }
    } else {
        err = write_full(fd, item->data, item->data_len);
    }
    if (!err && (item->flags & S3DL_F_FSYNC) && fsync(fd) != 0)
        err = errno;
    if (close(fd) != 0 && !err)
        err = errno;
    if (err) {
        unlink(tmp);
        fail_errno(item, err, "cannot write");
        return;
    }
    if (item->flags & S3DL_F_CREATE_ONLY) {
        /* link() fails with EEXIST atomically, unlike stat-then-rename. */
        if (link(tmp, item->target) != 0) {
            err = errno;
            unlink(tmp);
            fail_errno(item, err, "cannot create");
            return;
        }
        unlink(tmp);
    } else if (rename(tmp, item->target) != 0) {
        err = errno;
        unlink(tmp);
        fail_errno(item, err == EEXIST || err == ENOTEMPTY ? EISDIR : err, "cannot replace");
        return;
    }
    if (item->flags & S3DL_F_FSYNC) {
        err = fsync_parent_dir(item->target);
        if (err) {
            fail_errno(item, err, "cannot fsync directory of");
            return;
        }
    }
    atomic_fetch_add_explicit(ctx->bytes_written, item->data_len, memory_order_relaxed);
    item->status = S3DL_OK;
}

static void do_stat(struct s3dl_item *item)
{
    struct stat st;
    if (stat(item->target, &st) != 0) {
        fail_errno(item, errno, "cannot stat");
        return;
    }
    if (!regular_file_or_fail(item, &st))
        return;
    if (fill_stat(item, &st) == 0)
        item->status = S3DL_OK;
}

static void do_delete(struct s3dl_item *item)
{
    if (unlink(item->target) != 0) {
        fail_errno(item, errno, "cannot delete");
        return;
    }
    item->status = S3DL_OK;
}

void file_io_execute(const struct file_io_context *ctx, struct s3dl_item *item)
{
    switch (item->op) {
    case S3DL_OP_GET: do_get(ctx, item); break;
    case S3DL_OP_PUT: do_put(ctx, item); break;
    case S3DL_OP_STAT: do_stat(item); break;
    case S3DL_OP_DELETE: do_delete(item); break;
    default: item_fail(item, S3DL_E_UNSUPPORTED, 0, "unsupported operation"); break;
    }
}
