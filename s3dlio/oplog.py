"""The operation log: one row per request the engine ran (every get, put,
stat, delete, list page, multipart part and range), written by a
background thread into a zstd-compressed TSV in the reference s3dlio's
layout (MinIO warp's op-log columns), so its replay and analysis tools
read it::

    idx thread op client_id n_objects bytes endpoint file error start first_byte end duration_ns

Times are RFC 3339 UTC with nanoseconds, taken by the core (start of the
first attempt, first response byte, completion).  The caller's thread only
queues each finished batch (a handful of references and one array of
times); rows are made and compressed on the writer thread."""
from __future__ import annotations

import datetime as _dt
import os
import queue
import socket
import threading
import time
from typing import Any, Optional, Sequence

from .errors import InvalidArgumentError, S3dlioError

HEADER = ("idx\tthread\top\tclient_id\tn_objects\tbytes\tendpoint\tfile\terror\tstart\t"
          "first_byte\tend\tduration_ns\n")
_OPS = {1: "GET", 2: "PUT", 3: "HEAD", 4: "DELETE", 5: "POST"}
_QUEUE_LIMIT = 65_536  # batches; beyond it rows are dropped and counted
_SLICE = 256


class _Session:
    def __init__(self, path: str) -> None:
        import zstandard
        self.path = path
        self._file = open(path, "wb")
        self._writer = zstandard.ZstdCompressor(level=1).stream_writer(self._file)
        self._writer.write(HEADER.encode())
        self._queue: "queue.Queue[Optional[tuple]]" = queue.Queue(maxsize=_QUEUE_LIMIT)
        self.client_id = os.environ.get("S3DLIO_CLIENT_ID") or socket.gethostname()
        self.rows = 0
        self.dropped = 0
        self._clock = _Clock()
        self._thread = threading.Thread(target=self._run, name="s3dlio-oplog", daemon=True)
        self._thread.start()

    def submit(self, item: tuple) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += len(item[1])

    def _run(self) -> None:
        for _ in iter(int, 1):  # until the None sentinel
            item = self._queue.get()
            if item is None:
                return
            thread, requests, statuses, sizes, errors, times = item
            # Slices of 256 rows with a yield between: the caller's thread
            # gets the GIL back within ~0.3 ms when its next batch finishes,
            # instead of waiting out a whole batch's formatting.
            for at in range(0, len(requests), _SLICE):
                end = at + _SLICE
                rows = self._rows(thread, requests[at:end], statuses[at:end], sizes[at:end],
                                  errors[at:end], times[3 * at:3 * end])
                self._writer.write("".join(rows).encode("utf-8", "surrogateescape"))
                time.sleep(0)

    def _rows(self, thread: int, requests: Sequence[Any], statuses: Sequence[int],
              sizes: Sequence[int], errors: Sequence[str], times: Sequence[int]) -> list:
        # The hot loop of the log (about 1 us a row): per-batch pieces made
        # once, one f-string a row, seconds formatted once per second.
        out = []
        head = f"\t{thread}\t"
        client = f"\t{self.client_id}\t1\t"
        clock = self._clock
        idx = self.rows
        stamps = iter(times)
        for req, size, error, start, first, end in zip(requests, sizes, errors, stamps, stamps,
                                                       stamps):
            op = req.label or _OPS.get(req.op, "OP")
            if req.client is None:
                endpoint = "file://"
            else:
                target = req.target
                cut = target.find("/", target.find("://") + 3)
                endpoint = target if cut < 0 else target[:cut]
            if error:
                error = _field(error)
            out.append(f"{idx}{head}{op}{client}{size}\t{endpoint}\t{_field(req.uri)}\t"
                       f"{error}\t{clock(start)}\t{clock(first)}\t{clock(end)}\t"
                       f"{end - start if start and end > start else 0}\n")
            idx += 1
        self.rows = idx
        return out

    def close(self) -> dict:
        self._queue.put(None)
        self._thread.join(timeout=60)
        self._writer.flush()
        self._writer.close()  # closes the file too
        return {"path": self.path, "rows": self.rows, "dropped": self.dropped}


class _Clock:
    """RFC 3339 UTC with nanoseconds; each second's date-and-time part is
    formatted once (formatting it dominated the log's cost)."""

    def __init__(self) -> None:
        self._seconds: dict[int, str] = {}

    def __call__(self, ns: int) -> str:
        if not ns:
            return ""
        seconds, rest = divmod(ns, 1_000_000_000)
        text = self._seconds.get(seconds)
        if text is None:
            if len(self._seconds) > 4096:  # bounded
                self._seconds.clear()
            text = self._seconds[seconds] = _dt.datetime.fromtimestamp(
                seconds, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
        return f"{text}{rest:09d}Z"


_UNSAFE = str.maketrans("\t\n\r", "   ")


def _field(text: str) -> str:
    # One row per line, tab-separated: neither may appear inside a field
    # (URIs cannot hold them; error text might).
    return text.translate(_UNSAFE) if text else text


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


def record(requests: Sequence[Any], statuses: Sequence[int], sizes: Sequence[int],
           errors: Sequence[str], times: Sequence[int]) -> None:
    """Queues one finished batch (called by the engine bridge)."""
    session = _session
    if session is not None:
        session.submit((threading.get_native_id(), requests, statuses, sizes, errors, times))


def record_local(op: str, uri: str, nbytes: int, error: str, start_ns: int,
                 end_ns: int) -> None:
    """Queues one operation done in Python rather than by the engine (a
    local listing)."""
    session = _session
    if session is not None:
        from ._engine import Request
        request = Request(0, uri, "", label=op)
        session.submit((threading.get_native_id(), [request], [0], [nbytes], [error],
                        [start_ns, start_ns, end_ns]))


def active() -> bool:
    return _session is not None


__all__ = ["init_op_log", "finalize_op_log", "is_op_log_active", "op_log_stats"]
