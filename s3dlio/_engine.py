"""The bridge to the native engine: one engine per process, batches built
and submitted in one call each, waited on with the GIL released (sync) or
through the engine's eventfd (asyncio).  Results come back as BytesViews
wrapping native memory, without a copy."""
from __future__ import annotations

import asyncio
import itertools
import os
import threading
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from . import _logbridge, oplog
from ._bytesview import BytesView, wrap_many
from ._native import STATUS_NAMES, check, ffi, lib
from .errors import S3dlioError, error_for_status

OP_GET = lib.S3DL_OP_GET
OP_PUT = lib.S3DL_OP_PUT
OP_STAT = lib.S3DL_OP_STAT
OP_DELETE = lib.S3DL_OP_DELETE
OP_POST = lib.S3DL_OP_POST

F_RANGE = lib.S3DL_F_RANGE
F_DIRECT = lib.S3DL_F_DIRECT
F_FSYNC = lib.S3DL_F_FSYNC
F_CREATE_ONLY = lib.S3DL_F_CREATE_ONLY
F_MKDIRS = lib.S3DL_F_MKDIRS
F_KEEP_HEADERS = lib.S3DL_F_KEEP_HEADERS
F_ACCEPT_3XX = lib.S3DL_F_ACCEPT_3XX
LENGTH_TO_END = lib.S3DL_LENGTH_TO_END

DEFAULT_MAX_IN_FLIGHT = 64
MAX_IN_FLIGHT_LIMIT = 1 << 20  # the core's bound (batch.c)
_WAIT_SLICE_MS = 200  # sync waits wake this often so Ctrl-C is honoured
_FREE_FN = int(ffi.cast("uintptr_t", ffi.addressof(lib, "s3dl_free")))

#: Environment variables read once, when the engine is created.
_ENV_OPTIONS = {
    "S3DLIO_IO_THREADS": lib.S3DL_ENGINE_IO_THREADS,
    "S3DLIO_HTTP_THREADS": lib.S3DL_ENGINE_HTTP_THREADS,
    "S3DLIO_SOCKET_RCVBUF": lib.S3DL_ENGINE_SOCKET_RCVBUF,
    "S3DLIO_MAX_IN_FLIGHT": lib.S3DL_ENGINE_MAX_IN_FLIGHT,
    "S3DLIO_SPLIT_THRESHOLD": lib.S3DL_ENGINE_SPLIT_THRESHOLD,
    "S3DLIO_PART_SIZE": lib.S3DL_ENGINE_PART_SIZE,
}


def _parse_int(name: str, value: str) -> int:
    try:
        return int(value, 0)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _check_buffer_cache_setting() -> None:
    """S3DLIO_BUFFER_CACHE_MAX is read by the native buffer cache itself,
    which has no way to report a bad value; refuse one here instead of
    letting it fall back to the default unseen."""
    value = os.environ.get("S3DLIO_BUFFER_CACHE_MAX")
    if value and not value.isdigit():
        raise ValueError("S3DLIO_BUFFER_CACHE_MAX must be a whole number of bytes "
                         f"(0 turns the cache off), got {value!r}")


_engine_lock = threading.Lock()
_engine: Any = None


def engine() -> Any:
    """The process's engine, created on first use.  After fork() the native
    core rebuilds its threads on its own; the handle stays valid."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _check_buffer_cache_setting()
                out = ffi.new("s3dl_engine **")
                check(lib.s3dl_engine_new(out), "cannot create the s3dlio engine")
                for env, option in _ENV_OPTIONS.items():
                    value = os.environ.get(env)
                    if value:
                        check(lib.s3dl_engine_setopt(out[0], option, _parse_int(env, value)),
                              env)
                _engine = out[0]
    return _engine


def counters() -> dict[str, int]:
    """Native engine counters (see ``s3dlio.stats()``)."""
    e = engine()
    names = {
        "items_completed": lib.S3DL_COUNTER_ITEMS_COMPLETED,
        "bytes_read": lib.S3DL_COUNTER_BYTES_READ,
        "bytes_written": lib.S3DL_COUNTER_BYTES_WRITTEN,
        "direct_io_fallbacks": lib.S3DL_COUNTER_DIRECT_FALLBACKS,
        "engine_starts": lib.S3DL_COUNTER_ENGINE_STARTS,
        "buffer_cache_bytes": lib.S3DL_COUNTER_BUFFER_CACHE_BYTES,
    }
    return {name: int(lib.s3dl_engine_counter(e, c)) for name, c in names.items()}


@dataclass
class Request:
    """One item of a batch.  ``uri`` is what errors name; ``target`` is what
    the engine opens: a local path, or a URL sent through ``client`` (a
    native s3dl_client, which signs it) with extra ``headers``."""

    op: int
    uri: str
    target: str
    offset: int = 0
    length: int = LENGTH_TO_END
    data: Any = None
    flags: int = 0
    client: Any = None
    headers: tuple = ()
    dest: Optional[tuple[int, int]] = None  # (address, capacity) of caller memory for a GET
    label: str = ""  # the op-log's name for it when the op code alone says too little (LIST)


@dataclass
class Response:
    """An HTTP response's status line and headers (names lowercased; the
    last of repeated headers wins)."""

    status: int
    headers: dict[str, str]

    @classmethod
    def parse(cls, block: str) -> "Response":
        lines = block.split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return cls(status, headers)


class Batch:
    """Owns one native batch.  The Python objects whose memory a PUT borrows
    stay referenced here until the batch is freed."""

    def __init__(self, requests: Sequence[Request], max_in_flight: int,
                 timeout_ms: int = 0) -> None:
        """``requests`` must share one kind: all local, or all through one client."""
        if not isinstance(max_in_flight, int) or not 1 <= max_in_flight <= MAX_IN_FLIGHT_LIMIT:
            raise ValueError(f"max_in_flight must be an int from 1 to {MAX_IN_FLIGHT_LIMIT}, "
                             f"got {max_in_flight!r}")
        self.requests = requests
        self.pid = os.getpid()
        out = ffi.new("s3dl_batch **")
        check(lib.s3dl_batch_new(engine(), out), "cannot create a batch")
        self.ptr = out[0]
        self._keepalive: list[Any] = []
        try:
            check(lib.s3dl_batch_setopt(self.ptr, lib.S3DL_BATCH_MAX_IN_FLIGHT, max_in_flight),
                  "max_in_flight")
            if timeout_ms:
                check(lib.s3dl_batch_setopt(self.ptr, lib.S3DL_BATCH_TIMEOUT_MS, timeout_ms),
                      "timeout")
            if requests and requests[0].client is not None:
                check(lib.s3dl_batch_set_client(self.ptr, requests[0].client), "client")
            self._add_all(requests)
        except BaseException:
            self.free()
            raise

    def _add_all(self, requests: Sequence[Request]) -> None:
        keep = self._keepalive
        index = ffi.new("size_t *")
        for req in requests:
            # The core copies the target during the call: bytes suffice.
            target = req.target.encode("utf-8", "surrogateescape")
            data, size = ffi.NULL, 0
            if req.data is not None:
                data = ffi.from_buffer(req.data)
                size = len(data)
                keep.append(data)
            status = lib.s3dl_batch_add(self.ptr, req.op, target, req.offset, req.length, data,
                                        size, req.flags, index)
            if status != lib.S3DL_OK:
                raise _error(status, req.uri, None)
            if req.dest is not None:
                status = lib.s3dl_batch_set_destination(self.ptr, index[0],
                                                        ffi.cast("void *", req.dest[0]),
                                                        req.dest[1])
                if status != lib.S3DL_OK:
                    raise _error(status, req.uri, None)
            for header in req.headers:
                status = lib.s3dl_batch_add_header(self.ptr, index[0], header.encode())
                if status != lib.S3DL_OK:
                    raise _error(status, req.uri, None)

    def submit(self, notify_tag: Optional[int] = None) -> None:
        if notify_tag is not None:
            check(lib.s3dl_batch_setopt(self.ptr, lib.S3DL_BATCH_NOTIFY_TAG, notify_tag),
                  "notify tag")
        check(lib.s3dl_batch_submit(self.ptr), "cannot submit a batch")

    def wait(self) -> None:
        """Blocks (GIL released) until done; Ctrl-C cancels the batch."""
        if self.ptr is None:
            raise S3dlioError("batch already freed", code="BatchFreed")
        try:
            while lib.s3dl_batch_wait(self.ptr, _WAIT_SLICE_MS) == lib.S3DL_E_TIMEOUT:
                pass
        except BaseException:
            lib.s3dl_batch_cancel(self.ptr)
            lib.s3dl_batch_wait(self.ptr, -1)
            raise

    def cancel(self) -> None:
        lib.s3dl_batch_cancel(self.ptr)

    def take(self) -> tuple[list[int], list[BytesView]]:
        """Statuses and result views for every item (views of failed or
        non-GET items are empty and meaningless)."""
        n = len(self.requests)
        statuses = ffi.new("s3dl_status[]", n)
        allocs = ffi.new("void *[]", n)
        datas = ffi.new("uint8_t *[]", n)
        lens = ffi.new("uint64_t[]", n)
        check(lib.s3dl_batch_take_results(self.ptr, n, statuses, allocs, datas, lens),
              "cannot read batch results")
        addr = lambda p: int(ffi.cast("uintptr_t", p))  # noqa: E731
        views = wrap_many(addr(allocs), addr(datas), addr(lens), n, _FREE_FN)
        return list(statuses), views

    def error(self, index: int, status: int) -> S3dlioError:
        return _error(status, self.requests[index].uri, self._detail(index))

    def stat(self, index: int) -> Any:
        out = ffi.new("s3dl_stat *")
        if lib.s3dl_batch_stat(self.ptr, index, out) != lib.S3DL_OK:
            return None
        return out

    def response_headers(self, index: int) -> Optional["Response"]:
        """The final response's status and headers of an item added with
        F_KEEP_HEADERS, or None."""
        out = ffi.new("const char **")
        size = ffi.new("size_t *")
        if lib.s3dl_batch_response_headers(self.ptr, index, out, size) != lib.S3DL_OK \
                or out[0] == ffi.NULL:
            return None
        return Response.parse(ffi.unpack(out[0], size[0]).decode("latin-1"))

    def _detail(self, index: int) -> Any:
        out = ffi.new("s3dl_detail *")
        if lib.s3dl_batch_detail(self.ptr, index, out) != lib.S3DL_OK:
            return None
        return out

    def free(self) -> None:
        # Take the pointer first: a second free (another thread, a finalizer)
        # then finds nothing to free.
        ptr, self.ptr = self.ptr, None
        if ptr is not None and self.pid == os.getpid():
            lib.s3dl_batch_free(ptr)
        self._keepalive.clear()

    def __del__(self) -> None:  # safety net; normal paths call free()
        if getattr(self, "ptr", None) is not None:
            self.free()


def _error(status: int, uri: str, detail: Any) -> S3dlioError:
    name = STATUS_NAMES.get(status, str(status))
    reason = ffi.string(lib.s3dl_strerror(status)).decode()
    kwargs: dict[str, Any] = {"uri": uri}
    if detail is not None:
        # The native message names the local path; users think in URIs.
        native = ffi.string(detail.message).decode("utf-8", "replace")
        kwargs.update(http_status=detail.http_status or None,
                      request_id=ffi.string(detail.request_id).decode() or None,
                      sys_errno=detail.sys_errno or None)
        code = ffi.string(detail.code).decode()
        if code:
            kwargs["code"] = code
        message = f"{reason}: {uri} ({native})" if native else f"{reason}: {uri}"
    else:
        message = f"{reason}: {uri}"
    return error_for_status(name, message, **kwargs)


class Results:
    """The outcome of requests that may have run as several batches (one per
    kind: local, or each HTTP client), indexed in the caller's order."""

    def __init__(self, requests: Sequence[Request], groups: list[tuple[Batch, list[int]]],
                 statuses: list[int], views: list[BytesView]) -> None:
        self.requests = requests
        self._where: dict[int, tuple[Batch, int]] = {}
        self._batches = [batch for batch, _ in groups]
        for batch, indices in groups:
            for j, i in enumerate(indices):
                self._where[i] = (batch, j)
        self.statuses = statuses
        self.views = views

    def error(self, index: int, status: int) -> S3dlioError:
        batch, j = self._where[index]
        return batch.error(j, status)

    def stat(self, index: int) -> Any:
        batch, j = self._where[index]
        return batch.stat(j)

    def response_headers(self, index: int) -> Optional[Response]:
        batch, j = self._where[index]
        return batch.response_headers(j)

    def free(self) -> None:
        for batch in self._batches:
            batch.free()

    def raise_first(self, statuses: Optional[Sequence[int]] = None) -> None:
        """Raises the first failure (in input order) after releasing every
        view and the batches; ``statuses`` overrides the native ones (for
        callers that treat some failures as success)."""
        for i, status in enumerate(self.statuses if statuses is None else statuses):
            if status != lib.S3DL_OK:
                err = self.error(i, status)
                for view in self.views:
                    view.release()
                self.free()
                raise err


def _group(requests: Sequence[Request]) -> list[list[int]]:
    """Indices of requests that can share a batch (same client, or local)."""
    groups: dict[int, list[int]] = {}
    for i, req in enumerate(requests):
        groups.setdefault(id(req.client), []).append(i)
    return list(groups.values()) or [[]]


def _collect(requests: Sequence[Request], batches: list[tuple[Batch, list[int]]]) -> Results:
    statuses: list[int] = [0] * len(requests)
    views: list[Any] = [None] * len(requests)
    try:
        for batch, indices in batches:
            got_statuses, got_views = batch.take()
            for j, i in enumerate(indices):
                statuses[i] = got_statuses[j]
                views[i] = got_views[j]
            if oplog.active():
                _log_batch(batch, got_statuses, got_views)
    except BaseException:
        for batch, _ in batches:
            batch.free()
        raise
    finally:
        _logbridge.drain()
    return Results(requests, batches, statuses, views)


def _log_batch(batch: Batch, statuses: list[int], views: list[BytesView]) -> None:
    """Hands a finished batch to the op-log (bytes sent for uploads,
    received for everything else)."""
    sizes = [memoryview(r.data).nbytes if (r.op == OP_PUT or r.label == "PUT") and r.data is not None
             else len(v) for r, v in zip(batch.requests, views)]
    oplog.record_batch(batch, batch.requests, sizes)


def _build(requests: Sequence[Request], max_in_flight: int,
           timeout_ms: int) -> list[tuple[Batch, list[int]]]:
    batches: list[tuple[Batch, list[int]]] = []
    try:
        for indices in _group(requests):
            batches.append((Batch([requests[i] for i in indices], max_in_flight, timeout_ms),
                            indices))
    except BaseException:
        for batch, _ in batches:
            batch.free()
        raise
    return batches


class Pending:
    """Requests submitted and running; ``finish()`` waits for them.  Lets a
    caller keep working (a writer filling its next part) while they run."""

    def __init__(self, requests: Sequence[Request], max_in_flight: int,
                 timeout_ms: int = 0) -> None:
        self.requests = requests
        self._finished = False
        self._batches = _build(requests, max_in_flight, timeout_ms)
        try:
            for batch, _ in self._batches:
                batch.submit()
        except BaseException:
            self.cancel()
            raise

    def finish(self) -> Results:
        """Waits (GIL released) and returns the results; the caller frees
        them.  Once only: a second call raises S3dlioError."""
        if self._finished:
            raise S3dlioError("requests already finished or cancelled", code="BatchFreed")
        self._finished = True
        try:
            for batch, _ in self._batches:
                batch.wait()
        except BaseException:
            self.cancel()
            raise
        return _collect(self.requests, self._batches)

    def cancel(self) -> None:
        """Cancels what has not finished and frees everything (idempotent)."""
        self._finished = True
        for batch, _ in self._batches:
            batch.free()  # cancels and waits for a running batch first
        _logbridge.drain()


def run(requests: Sequence[Request], max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        timeout_ms: int = 0) -> tuple[Results, list[int], list[BytesView]]:
    """Runs requests to completion (GIL released while waiting).  Returns the
    results (the caller frees them), statuses and views in input order."""
    results = Pending(requests, max_in_flight, timeout_ms).finish()
    return results, results.statuses, results.views


# ---- asyncio ---------------------------------------------------------------

def fetch_body(request: Request) -> bytes:
    """Runs one request and returns a copy of its response body (listings,
    metadata: small documents parsed in Python); raises its error."""
    results, statuses, views = run([request], 1)
    try:
        results.raise_first(statuses)
        return bytes(views[0])
    finally:
        for view in views:
            view.release()
        results.free()


class _Notifier:
    """Routes completion tags from the engine's eventfd to asyncio futures.
    One per process; every event loop that awaits a batch watches the fd
    while it has batches pending."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self.loops: dict[asyncio.AbstractEventLoop, int] = {}  # loop -> pending count
        self.tags = itertools.count(1)
        self.fd = lib.s3dl_engine_notify_fd(engine())
        if self.fd < 0:
            raise S3dlioError("cannot get the engine's notification fd")

    def expect(self, loop: asyncio.AbstractEventLoop) -> tuple[int, asyncio.Future]:
        fut = loop.create_future()
        with self.lock:
            tag = next(self.tags)
            self.pending[tag] = (loop, fut)
            count = self.loops.get(loop, 0)
            self.loops[loop] = count + 1
            if count == 0:
                loop.add_reader(self.fd, self.drain)
        return tag, fut

    def forget(self, loop: asyncio.AbstractEventLoop, tag: int) -> None:
        """Undoes expect() for a batch that was never submitted."""
        with self.lock:
            if self.pending.pop(tag, None) is not None:
                self.loops[loop] -= 1
                if self.loops[loop] == 0:
                    del self.loops[loop]
                    loop.remove_reader(self.fd)

    def drain(self) -> None:
        tags = ffi.new("uint64_t[]", 256)
        while True:
            n = lib.s3dl_engine_poll_completions(engine(), tags, 256)
            if n == 0:
                return
            with self.lock:
                for i in range(n):
                    entry = self.pending.pop(int(tags[i]), None)
                    if entry is None:
                        continue
                    loop, fut = entry
                    self.loops[loop] -= 1
                    try:
                        if self.loops[loop] == 0:
                            loop.call_soon_threadsafe(self._unwatch_if_idle, loop)
                        loop.call_soon_threadsafe(_resolve, fut)
                    except RuntimeError:
                        # That loop is closed; its waiter is gone.  Keep going:
                        # the other tags of this poll belong to live loops.
                        self.loops.pop(loop, None)

    def _unwatch_if_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        # Runs in `loop`'s thread, as expect() does, so the two cannot race.
        with self.lock:
            if self.loops.get(loop, 0) == 0:
                self.loops.pop(loop, None)
                loop.remove_reader(self.fd)


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


_notifier: Optional[_Notifier] = None
_notifier_pid = 0
_notifier_lock = threading.Lock()


def _get_notifier() -> _Notifier:
    """One notifier per process: two would drain each other's tags."""
    global _notifier, _notifier_pid
    with _notifier_lock:
        if _notifier is None or _notifier_pid != os.getpid():
            _notifier = _Notifier()  # a forked child has a new fd and no pending tags
            _notifier_pid = os.getpid()
        return _notifier


def _reset_after_fork() -> None:
    global _notifier_lock, _engine_lock
    _notifier_lock = threading.Lock()
    _engine_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


async def run_async(requests: Sequence[Request], max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                    timeout_ms: int = 0) -> tuple[Results, list[int], list[BytesView]]:
    """Runs requests without blocking the event loop or using a thread."""
    loop = asyncio.get_running_loop()
    batches = _build(requests, max_in_flight, timeout_ms)
    notifier = _get_notifier()
    futures = []
    try:
        for batch, _ in batches:
            tag, fut = notifier.expect(loop)
            try:
                batch.submit(notify_tag=tag)
            except BaseException:
                notifier.forget(loop, tag)
                raise
            futures.append(fut)
    except BaseException:
        for batch, _ in batches:
            batch.cancel()
        for batch, _ in batches:
            batch.free()
        raise
    try:
        for fut in futures:
            await asyncio.shield(fut)
    except asyncio.CancelledError:
        # The batches borrow the caller's memory (PUT bodies, get_into
        # buffers): cancel what has not started and wait for the rest before
        # giving that memory back, so nothing writes into it afterwards.
        for batch, _ in batches:
            batch.cancel()
        for fut in futures:
            while not fut.done():
                try:
                    await asyncio.shield(fut)
                except asyncio.CancelledError:
                    continue  # cancelled again: still wait; bounded by the cancel
        for batch, _ in batches:
            batch.free()
        raise
    results = _collect(requests, batches)
    return results, results.statuses, results.views
