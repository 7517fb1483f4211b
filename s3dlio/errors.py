"""The exception hierarchy.  Every error s3dlio raises derives from
:class:`S3dlioError`; where a builtin fits, the class also derives from it, so
``except FileNotFoundError`` works as users expect.

One funnel, :func:`error_for_status`, turns native status names into these
classes; :func:`error_from_oserror` routes Python-side OSErrors through it.
"""
from __future__ import annotations

import builtins
import errno as _errno
from typing import Optional


class S3dlioError(Exception):
    """Base of all s3dlio errors.

    Attributes: ``uri`` (the object concerned, if any), ``http_status``
    (HTTP status for network backends, else None), ``code`` (service error
    code such as ``NoSuchKey``, or the native status name), ``request_id``.
    """

    def __init__(self, message: str, *, uri: Optional[str] = None,
                 http_status: Optional[int] = None, code: Optional[str] = None,
                 request_id: Optional[str] = None, sys_errno: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.uri = uri
        self.http_status = http_status
        self.code = code
        self.request_id = request_id
        if sys_errno is not None and isinstance(self, OSError):
            setattr(self, "errno", sys_errno)  # OSError's slot; set only on OSError subclasses

    def __str__(self) -> str:
        return self.message


class NotFoundError(S3dlioError, FileNotFoundError):
    """The object, file or bucket does not exist."""


class InvalidArgumentError(S3dlioError, ValueError):
    """An argument is out of range or malformed (a name too long for the
    filesystem, a range that overflows, an option out of bounds)."""


class InvalidURIError(InvalidArgumentError):
    """The URI is malformed, names an unknown scheme, or is unsafe."""


class PermissionDeniedError(S3dlioError, PermissionError):
    """Access was refused (file permissions, HTTP 401/403)."""


class AlreadyExistsError(S3dlioError, FileExistsError):
    """A create-only write found an existing object."""


class TimeoutError(S3dlioError, builtins.TimeoutError):
    """An operation ran past its deadline."""


class ChecksumMismatchError(S3dlioError):
    """Data did not match its checksum after every retry."""


class CheckpointError(S3dlioError, ValueError):
    """A checkpoint is malformed, corrupt, or not what the caller expected.
    ``code`` says which (``BadHeader``, ``ChecksumMismatch``, ``Truncated``,
    ``UnsupportedVersion``, ``MissingKeys``); ``blob`` names the blob
    concerned, if one is."""

    def __init__(self, message: str, *, uri: Optional[str] = None,
                 code: Optional[str] = None, blob: Optional[str] = None) -> None:
        super().__init__(message, uri=uri, code=code)
        self.blob = blob


class ThrottledError(S3dlioError):
    """The service kept asking us to slow down past the retry budget."""


class IsADirectoryError(S3dlioError, builtins.IsADirectoryError):
    """A directory was found where an object (file) was expected."""


class NotADirectoryError(S3dlioError, builtins.NotADirectoryError):
    """A path component that must be a directory is a file."""


class NoSpaceError(S3dlioError, OSError):
    """The device or quota is full; nothing was left under the final name."""


class InvalidRangeError(S3dlioError, ValueError):
    """A byte range starts past the end of the object, or is negative."""


class UnsupportedError(S3dlioError, NotImplementedError):
    """The operation is not supported for this backend (yet)."""


class CancelledError(S3dlioError):
    """The request was cancelled before it finished."""


class StorageIOError(S3dlioError, OSError):
    """Any other I/O, HTTP or network failure."""


# Native status name -> (class, errno to attach).  Order follows s3dl_status.
_STATUS_CLASSES = {
    "S3DL_E_INVALID_ARGUMENT": (InvalidArgumentError, _errno.EINVAL),
    "S3DL_E_NOMEM": (StorageIOError, _errno.ENOMEM),
    "S3DL_E_NOT_FOUND": (NotFoundError, _errno.ENOENT),
    "S3DL_E_PERMISSION": (PermissionDeniedError, _errno.EACCES),
    "S3DL_E_EXISTS": (AlreadyExistsError, _errno.EEXIST),
    "S3DL_E_IO": (StorageIOError, _errno.EIO),
    "S3DL_E_NO_SPACE": (NoSpaceError, _errno.ENOSPC),
    "S3DL_E_IS_DIRECTORY": (IsADirectoryError, _errno.EISDIR),
    "S3DL_E_NOT_DIRECTORY": (NotADirectoryError, _errno.ENOTDIR),
    "S3DL_E_TIMEOUT": (TimeoutError, _errno.ETIMEDOUT),
    "S3DL_E_CHECKSUM": (ChecksumMismatchError, None),
    "S3DL_E_THROTTLED": (ThrottledError, None),
    "S3DL_E_HTTP": (StorageIOError, None),
    "S3DL_E_NETWORK": (StorageIOError, None),
    "S3DL_E_CANCELLED": (CancelledError, None),
    "S3DL_E_BUSY": (StorageIOError, _errno.EBUSY),
    "S3DL_E_RANGE": (InvalidRangeError, None),
    "S3DL_E_UNSUPPORTED": (UnsupportedError, None),
    "S3DL_E_STATE": (S3dlioError, None),
    "S3DL_E_INTERNAL": (S3dlioError, None),
}


# Mirrors status_from_errno() in native/src/status.c.
_ERRNO_STATUS = {
    _errno.ENOENT: "S3DL_E_NOT_FOUND", _errno.EACCES: "S3DL_E_PERMISSION",
    _errno.EPERM: "S3DL_E_PERMISSION", _errno.EROFS: "S3DL_E_PERMISSION",
    _errno.EEXIST: "S3DL_E_EXISTS", _errno.ENOSPC: "S3DL_E_NO_SPACE",
    _errno.EDQUOT: "S3DL_E_NO_SPACE", _errno.EFBIG: "S3DL_E_NO_SPACE",
    _errno.EISDIR: "S3DL_E_IS_DIRECTORY", _errno.ENOTDIR: "S3DL_E_NOT_DIRECTORY",
    _errno.ENAMETOOLONG: "S3DL_E_INVALID_ARGUMENT", _errno.EINVAL: "S3DL_E_INVALID_ARGUMENT",
    _errno.ENOMEM: "S3DL_E_NOMEM", _errno.ETIMEDOUT: "S3DL_E_TIMEOUT",
}


def error_from_oserror(exc: OSError, uri: str) -> S3dlioError:
    """Translates an OSError raised by Python-side file work (listing,
    mkdir) into the same classes the native core's statuses map to."""
    name = _ERRNO_STATUS.get(exc.errno or 0, "S3DL_E_IO")
    return error_for_status(name, f"{exc.strerror or exc}: {uri}", uri=uri,
                            sys_errno=exc.errno)


def error_for_status(status_name: str, message: str, *, uri: Optional[str] = None,
                     http_status: Optional[int] = None, code: Optional[str] = None,
                     request_id: Optional[str] = None,
                     sys_errno: Optional[int] = None) -> S3dlioError:
    """Builds the exception for a native status name (e.g. ``S3DL_E_NOT_FOUND``)."""
    cls, default_errno = _STATUS_CLASSES.get(status_name, (S3dlioError, None))
    return cls(message, uri=uri, http_status=http_status, code=code or status_name,
               request_id=request_id, sys_errno=sys_errno or default_errno)
