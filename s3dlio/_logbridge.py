"""Routes the native core's log lines into Python ``logging``.

The core queues lines; it never calls into Python.  They are drained after
every batch (and by :func:`drain` directly) into the ``s3dlio.native``
logger.  Levels: trace/debug/info/warn/error (trace maps to DEBUG - 5)."""
from __future__ import annotations

import logging

from ._native import ffi, lib

TRACE = logging.DEBUG - 5
logging.addLevelName(TRACE, "TRACE")

_LEVELS = {
    "trace": (lib.S3DL_LOG_TRACE, TRACE),
    "debug": (lib.S3DL_LOG_DEBUG, logging.DEBUG),
    "info": (lib.S3DL_LOG_INFO, logging.INFO),
    "warn": (lib.S3DL_LOG_WARN, logging.WARNING),
    "warning": (lib.S3DL_LOG_WARN, logging.WARNING),
    "error": (lib.S3DL_LOG_ERROR, logging.ERROR),
    "off": (lib.S3DL_LOG_OFF, logging.CRITICAL + 10),
}
_NATIVE_TO_PY = {
    lib.S3DL_LOG_TRACE: TRACE,
    lib.S3DL_LOG_DEBUG: logging.DEBUG,
    lib.S3DL_LOG_INFO: logging.INFO,
    lib.S3DL_LOG_WARN: logging.WARNING,
    lib.S3DL_LOG_ERROR: logging.ERROR,
}

logger = logging.getLogger("s3dlio")
native_logger = logging.getLogger("s3dlio.native")
_active = False


def init_logging(level: str = "info") -> None:
    """Sets the level of s3dlio's own and the native core's logging.

    ``level`` is one of trace, debug, info, warn, error (or off).  A handler
    is added to the ``s3dlio`` logger only if neither it nor the root logger
    has one, so applications that configure logging keep control."""
    global _active
    key = str(level).lower()
    if key not in _LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of trace, debug, info, "
                         "warn, error, off")
    native_level, py_level = _LEVELS[key]
    lib.s3dl_log_set_level(native_level)
    logger.setLevel(py_level)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    _active = native_level != lib.S3DL_LOG_OFF
    drain()


def drain() -> None:
    """Moves every queued native log line into Python logging."""
    if not _active:
        return
    level = ffi.new("s3dl_log_level *")
    buf = ffi.new("char[]", 512)
    while lib.s3dl_log_pop(level, buf, 512):
        native_logger.log(_NATIVE_TO_PY.get(level[0], logging.INFO),
                          ffi.string(buf).decode("utf-8", "replace"))
