"""The operation log: one row per request the engine ran (every get, put,
stat, delete, list page, multipart part and range), written by a
background thread into a zstd-compressed TSV in the reference s3dlio's
layout (MinIO warp's op-log columns), so its replay and analysis tools
read it::

    idx thread op client_id n_objects bytes endpoint file error start first_byte end duration_ns

Times are RFC 3339 UTC with nanoseconds, taken by the core (start of the
first attempt, first response byte, completion).  The core formats each
finished batch's rows in one call (``s3dl_batch_format_log``, without the
GIL); the log's own thread compresses and writes them."""
from __future__ import annotations

import datetime as _dt
import os
import queue
import socket
import threading
from typing import Any, Optional, Sequence

from .errors import InvalidArgumentError, S3dlioError

HEADER = ("idx\tthread\top\tclient_id\tn_objects\tbytes\tendpoint\tfile\terror\tstart\t"
          "first_byte\tend\tduration_ns\n")
_QUEUE_LIMIT = 65_536  # batches; beyond it rows are dropped and counted


class _Session:
    def __init__(self, path: str) -> None:
        import zstandard
        self.path = path
        self._file = open(path, "wb")
        self._writer = zstandard.ZstdCompressor(level=1).stream_writer(self._file)
        self._writer.write(HEADER.encode())
        self._queue: "queue.Queue[Optional[bytes]]" = queue.Queue(maxsize=_QUEUE_LIMIT)
        self.client_id = _field(os.environ.get("S3DLIO_CLIENT_ID") or socket.gethostname())
        self.rows = 0  # numbered when queued
        self.dropped = 0
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="s3dlio-oplog", daemon=True)
        self._thread.start()

    def reserve(self, count: int) -> int:
        """The index of the first of ``count`` rows about to be queued."""
        with self._count_lock:
            first = self.rows
            self.rows += count
            return first

    def submit(self, text: bytes, count: int) -> None:
        try:
            self._queue.put_nowait(text)
        except queue.Full:
            with self._count_lock:
                self.dropped += count

    def _run(self) -> None:
        for _ in iter(int, 1):  # until the None sentinel
            text = self._queue.get()
            if text is None:
                return
            self._writer.write(text)  # zstandard releases the GIL while it compresses

    def close(self) -> dict:
        self._queue.put(None)
        self._thread.join(timeout=60)
        self._writer.flush()
        self._writer.close()  # closes the file too
        return {"path": self.path, "rows": self.rows - self.dropped, "dropped": self.dropped}


_UNSAFE = str.maketrans("\t\n\r", "   ")


def _field(text: str) -> str:
    # One row per line, tab-separated: neither may appear inside a field.
    return text.translate(_UNSAFE) if text else text


def _time(ns: int) -> str:
    if not ns:
        return ""
    seconds, rest = divmod(ns, 1_000_000_000)
    moment = _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{rest:09d}Z"


_lock = threading.Lock()
_session: Optional[_Session] = None


def init_op_log(uri: str) -> None:
    """Starts logging every operation of this process to ``uri`` (a local
    path or ``file://`` URI; ``.tsv.zst`` is the usual name).  One log at a
    time: a second call raises until :func:`finalize_op_log`."""
    global _session
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    if not path or "://" in path:
        raise InvalidArgumentError(f"the op-log goes to a local file, not {uri!r}", uri=uri,
                                   code="InvalidURI")
    with _lock:
        if _session is not None:
            raise S3dlioError(f"an op-log is already active ({_session.path})",
                              code="OpLogActive")
        try:
            _session = _Session(os.path.abspath(path))
        except OSError as exc:
            from .errors import error_from_oserror
            raise error_from_oserror(exc, uri) from exc


def finalize_op_log() -> dict:
    """Writes out every queued row and closes the log; returns ``{"path",
    "rows", "dropped"}``.  Without an active log it returns zeros."""
    global _session
    with _lock:
        session, _session = _session, None
    if session is None:
        return {"path": None, "rows": 0, "dropped": 0}
    return session.close()


def is_op_log_active() -> bool:
    return _session is not None


def op_log_stats() -> dict:
    """Rows written so far and rows dropped (queue full), as the reference
    s3dlio reports."""
    session = _session
    if session is None:
        return {"active": False, "rows": 0, "dropped": 0}
    return {"active": True, "path": session.path, "rows": session.rows,
            "dropped": session.dropped}


def record_batch(batch: Any, requests: Sequence[Any], sizes: Sequence[int]) -> None:
    """Queues the rows of one finished native batch: the core formats them
    (``s3dl_batch_format_log``), the log's thread compresses and writes."""
    session = _session
    if session is None or not requests:
        return
    from ._native import ffi, lib
    count = len(requests)
    files = "\n".join(r.uri for r in requests).encode("utf-8", "surrogateescape")
    labelled = any(r.label for r in requests)
    labels = "\n".join(r.label for r in requests).encode() if labelled else ffi.NULL
    out = ffi.new("char **")
    length = ffi.new("size_t *")
    first = session.reserve(count)
    status = lib.s3dl_batch_format_log(batch.ptr, count, first,
                                       str(threading.get_native_id()).encode(),
                                       session.client_id.encode("utf-8", "surrogateescape"),
                                       files, len(files), labels,
                                       len(labels) if labelled else 0,
                                       ffi.new("uint64_t[]", sizes), out, length)
    if status != lib.S3DL_OK:
        with session._count_lock:
            session.dropped += count
        return
    try:
        session.submit(ffi.unpack(out[0], length[0]), count)
    finally:
        lib.s3dl_free(out[0])


def record_local(op: str, uri: str, nbytes: int, error: str, start_ns: int,
                 end_ns: int) -> None:
    """Queues one operation done in Python rather than by the engine (a
    local listing)."""
    session = _session
    if session is not None:
        row = (f"{session.reserve(1)}\t{threading.get_native_id()}\t{op}\t{session.client_id}"
               f"\t1\t{nbytes}\tfile://\t{_field(uri)}\t{_field(error)}\t{_time(start_ns)}\t"
               f"{_time(start_ns)}\t{_time(end_ns)}\t{max(0, end_ns - start_ns)}\n")
        session.submit(row.encode("utf-8", "surrogateescape"), 1)


def active() -> bool:
    return _session is not None


__all__ = ["init_op_log", "finalize_op_log", "is_op_log_active", "op_log_stats"]
