/* Status codes, their names, version queries, and errno translation. */
#include "status.h"

#include <errno.h>
#include <stdlib.h>

#include "aligned_buf.h"
#include "s3dlio.h"

static const char *const status_names[] = {
    [S3DL_OK] = "success",
    [S3DL_E_INVALID_ARGUMENT] = "invalid argument",
    [S3DL_E_NOMEM] = "out of memory",
    [S3DL_E_NOT_FOUND] = "not found",
    [S3DL_E_PERMISSION] = "permission denied",
    [S3DL_E_EXISTS] = "already exists",
    [S3DL_E_IO] = "I/O error",
    [S3DL_E_NO_SPACE] = "no space left on device",
    [S3DL_E_IS_DIRECTORY] = "is a directory",
    [S3DL_E_NOT_DIRECTORY] = "not a directory",
    [S3DL_E_TIMEOUT] = "timed out",
    [S3DL_E_CHECKSUM] = "checksum mismatch",
    [S3DL_E_THROTTLED] = "throttled",
    [S3DL_E_HTTP] = "HTTP error",
    [S3DL_E_NETWORK] = "network error",
    [S3DL_E_CANCELLED] = "cancelled",
    [S3DL_E_BUSY] = "submission queue full",
    [S3DL_E_RANGE] = "range not satisfiable",
    [S3DL_E_UNSUPPORTED] = "operation not supported",
    [S3DL_E_STATE] = "call not valid in this state",
    [S3DL_E_INTERNAL] = "internal error",
};

const char *s3dl_strerror(s3dl_status status)
{
    size_t idx = (size_t)status;
    if (idx < sizeof(status_names) / sizeof(status_names[0]) && status_names[idx])
        return status_names[idx];
    return "unknown status";
}

unsigned int s3dl_version_number(void) { return S3DL_VERSION_NUM; }

/* Built from the header's numbers so the two can never disagree. */
#define S3DL_STR2(x) #x
#define S3DL_STR(x) S3DL_STR2(x)
const char *s3dl_version_string(void)
{
    return S3DL_STR(S3DL_VERSION_MAJOR) "." S3DL_STR(S3DL_VERSION_MINOR) "." S3DL_STR(
        S3DL_VERSION_PATCH);
}

void s3dl_free(void *ptr) { aligned_buf_free(ptr); }

s3dl_status status_from_errno(int err)
{
    switch (err) {
    case 0: return S3DL_OK;
    case ENOENT: return S3DL_E_NOT_FOUND;
    case EACCES:
    case EPERM:
    case EROFS: return S3DL_E_PERMISSION;
    case EEXIST: return S3DL_E_EXISTS;
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return S3DL_E_NO_SPACE;
    case EISDIR: return S3DL_E_IS_DIRECTORY;
    case ENOTDIR: return S3DL_E_NOT_DIRECTORY;
    case ENAMETOOLONG:
    case EINVAL: return S3DL_E_INVALID_ARGUMENT;
    case ENOMEM: return S3DL_E_NOMEM;
    case ETIMEDOUT: return S3DL_E_TIMEOUT;
    default: return S3DL_E_IO;
    }
}
