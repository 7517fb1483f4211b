"""The public storage functions.  Each validates its URIs (``uri``), routes
by scheme, and runs its work as one native batch (``_engine``).

``file://`` and ``direct://`` (local disks), ``s3://``, ``gs://`` (alias
``gcs://``) and ``az://`` are served; each object store's URLs and replies
live in its own module (``s3_client``, ``gcs_store``, ``azure_store``).
Behaviour where the API guide is vague is written down in ``docs/api.md``."""
from __future__ import annotations

import builtins
import datetime as _dt
import mimetypes
import os
import re
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Union

from . import _engine, azure_store, gcs_store, oplog, s3_client, s3_multipart, size_cache
from . import _local as _localfs
from ._native import ffi, lib
from ._bytesview import BytesView, from_bytes, wrap_many
from ._engine import Request
from ._steps import Steps, drive
from .errors import (InvalidArgumentError, InvalidRangeError, IsADirectoryError, NotFoundError,
                     PermissionDeniedError, S3dlioError, StorageIOError, UnsupportedError,
                     error_for_status, error_from_oserror)
from .uri import ParsedURI, parse_uri

BytesLike = Union[bytes, bytearray, memoryview, BytesView, Any]

DEFAULT_MAX_IN_FLIGHT = _engine.DEFAULT_MAX_IN_FLIGHT
_list = builtins.list  # `list` is one of our function names


# ---- routing ---------------------------------------------------------------

_SERVED_SCHEMES = ("file", "direct", "s3", "gs", "az")


def _route(uri: Union[str, ParsedURI], *, require_key: bool = True) -> ParsedURI:
    """Parses ``uri`` and checks that this build serves its scheme."""
    parsed = parse_uri(uri, require_key=require_key)
    if parsed.scheme not in _SERVED_SCHEMES:
        raise UnsupportedError(
            f"the {parsed.scheme}:// backend is not available in this build yet: {parsed.raw}",
            uri=parsed.raw, code="UnsupportedBackend")
    return parsed


def _request(op: int, parsed: ParsedURI, *, offset: int = 0,
             length: int = _engine.LENGTH_TO_END, data: Any = None, flags: int = 0,
             headers: tuple = (), client: Optional[s3_client.S3Client] = None) -> Request:
    """The engine request for one object: a local path, or a signed URL.
    Local-only flags (O_DIRECT, mkdir, fsync) are dropped for object stores;
    create-only becomes a conditional header there."""
    if parsed.is_local:
        if parsed.scheme == "direct":
            flags |= _engine.F_DIRECT
        return Request(op, parsed.raw, parsed.path or "", offset=offset, length=length,
                       data=data, flags=flags, headers=headers)
    if parsed.scheme == "gs":
        return gcs_store.object_request(op, parsed, offset=offset, length=length, data=data,
                                        flags=flags, headers=headers,
                                        client=gcs_store.current())
    if parsed.scheme == "az":
        return azure_store.object_request(op, parsed, offset=offset, length=length, data=data,
                                          flags=flags, headers=headers)
    client = client or s3_client.current()
    if flags & _engine.F_CREATE_ONLY:
        headers = headers + ("If-None-Match: *",)
    if op == _engine.OP_PUT:
        # As `aws s3 cp` does: a type from the name, so browsers and
        # tools downstream see what the object is.
        guessed = mimetypes.guess_type(parsed.key)[0]
        if guessed:
            headers = headers + (f"Content-Type: {guessed}",)
    return Request(op, parsed.raw, client.object_url(parsed.bucket, parsed.key), offset=offset,
                   length=length, data=data, flags=flags & _engine.F_RANGE, client=client.handle,
                   headers=headers)


def _as_buffer(data: Any, uri: str) -> Any:
    """Accepts any bytes-like object without copying it; refuses str and int
    (``bytes(5)`` is five zero bytes, never what a caller meant)."""
    if isinstance(data, (str, int)) or data is None:
        raise TypeError(f"data for {uri} must be bytes-like (bytes, bytearray, memoryview, "
                        f"numpy array, BytesView), not {type(data).__name__}")
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"data for {uri} must support the buffer protocol, not "
                        f"{type(data).__name__}") from None
    if not view.c_contiguous:
        return view.tobytes()  # one gather copy; the engine needs one flat span
    return data


def _run_single(req: Request) -> tuple[_engine.Results, BytesView]:
    batch, statuses, views = _engine.run([req], 1)
    batch.raise_first(statuses)
    return batch, views[0]


# ---- objects ---------------------------------------------------------------

def put(uri: str, data: BytesLike, *, fsync: bool = False, overwrite: bool = True) -> None:
    """Writes ``data`` to ``uri`` atomically: readers see the old object or the
    whole new one, never a part.  ``fsync=True`` makes it durable before
    returning; ``overwrite=False`` fails with AlreadyExistsError instead of
    replacing an existing object."""
    put_many([(uri, data)], max_in_flight=1, fsync=fsync, overwrite=overwrite)


def put_bytes(uri: str, data: BytesLike) -> None:
    """Alias of :func:`put` (the name the reference s3dlio uses)."""
    put(uri, data)


class _PutPlan:
    """The PUTs of one call: ordinary ones as engine requests, and large
    object-store ones (multipart, resumable or block uploads) as their
    inputs, each with its index in the caller's order."""

    def __init__(self) -> None:
        self.small: List[tuple[int, Request]] = []
        self.large: List[tuple[int, ParsedURI, Any]] = []


def _plan_puts(items: Iterable[tuple[str, BytesLike]], fsync: bool,
               overwrite: bool) -> _PutPlan:
    """Validates every item, drops stale cached sizes, and sorts the PUTs
    by the size of the caller's data (never of a request body built from
    it, which may carry framing)."""
    items = _list(items)
    client = _shared_client([uri for uri, _ in items])
    limit = s3_multipart.threshold()
    plan = _PutPlan()
    for index, (uri, data) in enumerate(items):
        parsed = _route(uri)
        buffer = _as_buffer(data, parsed.raw)
        size_cache.forget(parsed.raw)
        if not parsed.is_local and memoryview(buffer).nbytes >= limit:
            plan.large.append((index, parsed, buffer))
            continue
        flags = _engine.F_MKDIRS
        if fsync:
            flags |= _engine.F_FSYNC
        if not overwrite:
            flags |= _engine.F_CREATE_ONLY
        plan.small.append((index, _request(_engine.OP_PUT, parsed, data=buffer, flags=flags,
                                           client=client)))
    return plan


def put_many(items: Iterable[tuple[str, BytesLike]], max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
             *, fsync: bool = False, overwrite: bool = True) -> None:
    """Writes many ``(uri, data)`` pairs, ``max_in_flight`` at a time.  Every
    item is attempted; the first failure (in input order) is raised after the
    others finish.  Each object is written atomically; the batch is not.
    Large objects on object stores go up in parallel parts (S3 multipart,
    Azure blocks) or as a GCS resumable upload."""
    plan = _plan_puts(items, fsync, overwrite)
    errors: dict[int, Exception] = {}
    if plan.small:
        results, statuses, views = _engine.run([req for _, req in plan.small], max_in_flight)
        errors.update(_errors_by_index(results, statuses, [i for i, _ in plan.small]))
        results.free()
    for index, parsed, data in plan.large:
        try:
            drive(_large_steps(parsed, data, overwrite), 16)
        except S3dlioError as exc:
            errors[index] = exc
    if errors:
        raise errors[min(errors)]


def _large_steps(parsed: ParsedURI, data: Any, overwrite: bool) -> Steps:
    """The multi-request upload of one large object: S3 multipart, a GCS
    resumable session or Azure blocks."""
    if parsed.scheme == "gs":
        return gcs_store.resumable_steps(parsed, data, (), not overwrite)
    if parsed.scheme == "az":
        return azure_store.block_steps(parsed, data, (), not overwrite)
    guessed = mimetypes.guess_type(parsed.key)[0]
    headers = (f"Content-Type: {guessed}",) if guessed else ()
    return s3_multipart._steps(parsed, data, headers, not overwrite)


def _errors_by_index(results: _engine.Results, statuses: Sequence[int],
                     indices: Sequence[int]) -> dict[int, Exception]:
    return {indices[j]: results.error(j, status)
            for j, status in enumerate(statuses) if status != lib.S3DL_OK}


def get(uri: str) -> BytesView:
    """Reads a whole object into memory and returns a zero-copy BytesView.
    An S3 object whose size is already known (listing, stat,
    get_many_stats) and at least S3DLIO_RANGE_THRESHOLD (64 MiB) arrives as
    parallel ranged GETs written straight into one buffer."""
    parsed = _route(uri)
    if parsed.scheme == "s3":
        known = size_cache.lookup(parsed.raw)
        # Split only when the ETag can pin every range to one version.
        if known is not None and known[1] and known[0] >= _range_threshold():
            view = _get_split(parsed, known[0], known[1])
            if view is not None:
                return view
    batch, view = _run_single(_request(_engine.OP_GET, parsed))
    batch.free()
    return view


def get_into(uri: str, buffer: Any) -> int:
    """Reads a whole object into ``buffer`` (any writable, C-contiguous
    bytes-like object: bytearray, numpy array, mmap, a reused BytesView's
    memoryview...) with no intermediate copy on S3 and buffered local reads.
    Returns the object's length.  An object larger than the buffer raises
    InvalidArgumentError and leaves the buffer's contents unspecified."""
    req, _keep = _into_request(uri, buffer)
    results, statuses, views = _engine.run([req], 1)
    return _into_result(results, statuses, views, len(_keep))


def _into_request(uri: str, buffer: Any) -> tuple[Request, Any]:
    try:
        target = ffi.from_buffer(buffer, require_writable=True)
    except (TypeError, BufferError):
        raise TypeError(f"buffer for {uri} must be a writable, contiguous bytes-like object, "
                        f"not {type(buffer).__name__}") from None
    req = _request(_engine.OP_GET, _route(uri))
    req.dest = (int(ffi.cast("uintptr_t", target)), len(target))
    return req, target


def _into_result(results: _engine.Results, statuses: Sequence[int], views: Sequence[BytesView],
                 capacity: int) -> int:
    try:
        if statuses[0] == lib.S3DL_E_NOMEM:
            err = results.error(0, statuses[0])
            raise InvalidArgumentError(f"object larger than the {capacity}-byte buffer: "
                                       f"{err.uri}", uri=err.uri, code="BufferTooSmall")
        results.raise_first(statuses)
        return len(views[0])
    finally:
        for view in views:
            if not view.released:
                view.release()
        results.free()


def _range_threshold() -> int:
    return int(os.environ.get("S3DLIO_RANGE_THRESHOLD", str(64 << 20)), 0)


def _get_split(parsed: ParsedURI, size: int, etag: Optional[str]) -> Optional[BytesView]:
    """Parallel ranges into one native buffer.  Pinned to the listed ETag
    (If-Match); if the object changed, forgets the stale size and returns
    None so the caller falls back to a plain GET."""
    part = int(os.environ.get("S3DLIO_RANGE_PART_SIZE", str(16 << 20)), 0)
    buf = lib.s3dl_alloc(size)
    if buf == ffi.NULL:
        raise error_for_status("S3DL_E_NOMEM", f"cannot allocate {size} bytes: {parsed.raw}",
                               uri=parsed.raw)
    base = int(ffi.cast("uintptr_t", buf))
    try:
        headers = (f"If-Match: {etag}",) if etag else ()
        client = s3_client.current()
        requests = []
        for offset in range(0, size, part):
            length = min(part, size - offset)
            req = _request(_engine.OP_GET, parsed, offset=offset, length=length,
                           flags=_engine.F_RANGE, headers=headers, client=client)
            req.dest = (base + offset, length)
            requests.append(req)
        results, statuses, views = _engine.run(requests, min(16, len(requests)))
        try:
            changed = any(s == lib.S3DL_E_EXISTS for s in statuses) or any(
                s == lib.S3DL_OK and len(v) != r.length
                for s, v, r in zip(statuses, views, requests))
            if not changed:
                results.raise_first(statuses)
        finally:
            for view in views:
                view.release()
            results.free()
        if changed:
            size_cache.forget(parsed.raw)
            lib.s3dl_free(buf)
            return None
    except BaseException:
        lib.s3dl_free(buf)
        raise
    holder = ffi.new("void *[1]", [buf])
    lens = ffi.new("uint64_t[1]", [size])
    addr = lambda p: int(ffi.cast("uintptr_t", p))  # noqa: E731
    return wrap_many(addr(holder), addr(holder), addr(lens), 1,
                     int(ffi.cast("uintptr_t", ffi.addressof(lib, "s3dl_free"))))[0]


def get_range(uri: str, offset: int, length: Optional[int] = None) -> BytesView:
    """Reads ``length`` bytes at ``offset`` (to the end when ``length`` is
    None).  A range running past the end is shortened, as HTTP Range does;
    one starting past the end raises InvalidRangeError."""
    req = _range_request(uri, offset, length)
    if length == 0:
        return _empty_range(uri, offset, stat(req.uri)["size"])
    try:
        batch, view = _run_single(req)
    except InvalidRangeError:
        if req.client is None:
            raise
        # Object stores answer 416 for a range starting exactly at the end
        # (offset 0 of an empty object too); a file gives zero bytes there.
        # Ask the size to tell the two apart.
        return _empty_range(uri, offset, stat(req.uri)["size"])
    batch.free()
    return view


def _range_request(uri: str, offset: int, length: Optional[int]) -> Request:
    """Validates a range and builds its GET (shared by the async twin)."""
    if not isinstance(offset, int) or offset < 0:
        raise InvalidRangeError(f"offset must be a non-negative int, got {offset!r}", uri=uri)
    if length is not None and (not isinstance(length, int) or length < 0):
        raise InvalidRangeError(f"length must be a non-negative int or None, got {length!r}",
                                uri=uri)
    return _request(_engine.OP_GET, _route(uri), offset=offset,
                    length=_engine.LENGTH_TO_END if length is None else length,
                    flags=_engine.F_RANGE)


def _empty_range(uri: str, offset: int, size: int) -> BytesView:
    """A zero-length range: no read, but the object must exist and the
    offset must fit, exactly as for any other range."""
    if offset > size:
        raise InvalidRangeError(f"offset {offset} is past the end of {uri} ({size} bytes)",
                                uri=uri)
    return from_bytes(b"")


def _get_requests(uris: Sequence[str]) -> List[Request]:
    # One client lookup per batch: it compares a snapshot of the environment.
    client = _shared_client(uris)
    return [_request(_engine.OP_GET, _route(uri), client=client) for uri in uris]


def _shared_client(uris: Sequence[str]) -> Optional[s3_client.S3Client]:
    """The S3 client for a batch, looked up once, if any URI needs one."""
    return s3_client.current() if any(u.startswith("s3://") for u in uris) else None


def _collect_many(batch: _engine.Results, statuses: Sequence[int], views: Sequence[BytesView],
                  return_exceptions: bool) -> List[tuple[str, Any]]:
    if not return_exceptions:
        batch.raise_first(statuses)
    out = []
    for i, (req, status, view) in enumerate(zip(batch.requests, statuses, views)):
        out.append((req.uri, view if status == 0 else batch.error(i, status)))
    batch.free()
    return out


def get_many(uris: Sequence[str], max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, *,
             workers: Optional[int] = None, return_exceptions: bool = False,
             ranks: bool = False) -> List[tuple[str, BytesView]]:
    """Reads many objects concurrently (``max_in_flight`` at once; ``workers``
    is accepted as the guide's name for it).  Returns ``(uri, BytesView)``
    pairs in input order.  By default the first failure in input order is
    raised; with ``return_exceptions=True`` it takes the view's place.
    ``ranks=True`` reads only this MPI rank's share (every ``size``-th URI
    from ``rank`` on; pass the same list, in the same order, on every rank)."""
    limit = workers if workers is not None else max_in_flight
    uris = _list(uris)
    if ranks:
        from . import ranks as _ranks
        uris = _ranks.share(uris, _ranks.world())
    batch, statuses, views = _engine.run(_get_requests(uris), limit)
    return _collect_many(batch, statuses, views, return_exceptions)


def _rfc3339(ns: int) -> str:
    # Integer arithmetic: a float of ns since 1970 cannot hold microseconds.
    seconds, rest = divmod(ns, 1_000_000_000)
    moment = _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
    moment = moment.replace(microsecond=rest // 1000)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _stat_dict(parsed: ParsedURI, native_stat: Any) -> dict[str, Any]:
    from ._native import ffi
    etag = ffi.string(native_stat.etag).decode() or None
    ctype = ffi.string(native_stat.content_type).decode() or None
    if ctype is None:
        ctype = mimetypes.guess_type(parsed.key)[0]
    return {
        "size": int(native_stat.size),
        "last_modified": _rfc3339(int(native_stat.mtime_ns)),
        "etag": etag,
        "content_type": ctype,
    }


def _stat_requests(uris: Sequence[str]) -> List[Request]:
    client = _shared_client(uris)
    return [_request(_engine.OP_STAT, p, client=client) for p in map(_route, uris)]


def stat(uri: str) -> dict[str, Any]:
    """Metadata without reading data: ``size`` (bytes), ``last_modified``
    (RFC 3339, UTC), ``etag`` (None where the backend has none) and
    ``content_type`` (guessed from the name for local files; may be None)."""
    (result,) = stat_many([uri])
    return result


def stat_many(uris: Sequence[str], max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> List[dict]:
    """:func:`stat` for many URIs at once, in input order."""
    requests = _stat_requests(uris)
    batch, statuses, views = _engine.run(requests, max_in_flight)
    return _stat_results(batch, statuses, views)


def _stat_results(batch: _engine.Results, statuses: Sequence[int],
                  views: Sequence[BytesView]) -> List[dict]:
    batch.raise_first(statuses)
    out = []
    for i, req in enumerate(batch.requests):
        parsed = parse_uri(req.uri)
        if parsed.scheme == "gs":  # metadata is a JSON document, not headers
            out.append(gcs_store.stat_from_json(gcs_store.parse_json(bytes(views[i]), req.uri),
                                                req.uri))
        else:
            out.append(_stat_dict(parsed, batch.stat(i)))
    for view in views:
        view.release()
    batch.free()
    for req, meta in zip(batch.requests, out):
        if req.client is not None:
            size_cache.remember(req.uri, meta["size"], meta["etag"])
    return out


def get_many_stats(uris: Sequence[str], concurrency: int = DEFAULT_MAX_IN_FLIGHT) -> dict:
    """Stats many objects at once and keeps their sizes, so later GETs of
    large objects can split into parallel ranges without asking again.
    Returns ``{"total_objects", "total_bytes", "duration_seconds"}``."""
    import time
    started = time.perf_counter()
    metas = stat_many(uris, max_in_flight=concurrency)
    return {"total_objects": len(metas), "total_bytes": sum(m["size"] for m in metas),
            "duration_seconds": time.perf_counter() - started}


def exists(uri: str) -> bool:
    """True if the object exists.  False when it does not (or the name is a
    directory, which is not an object); a bad URI, a permission error or an
    outage raises rather than lying."""
    try:
        stat(uri)
        return True
    except (NotFoundError, IsADirectoryError):
        return False


def delete(uri: str, recursive: bool = False) -> None:
    """Deletes one object; deleting a missing object succeeds (as on S3).
    ``recursive=True`` deletes every object that :func:`list` selects for
    ``uri``: the object of that name and everything under the directory of
    that name, never siblings that merely share the prefix."""
    if recursive:
        parsed = _route(uri, require_key=False)
        targets = list(parsed.raw, recursive=True)
        if parsed.scheme == "s3":
            _s3_delete_many(parsed, targets)
            return
    else:
        targets = [_route(uri).raw]
    if not targets:
        return
    for target in targets:
        size_cache.forget(target)
    requests = [_request(_engine.OP_DELETE, p) for p in _listed(parsed, targets)] \
        if recursive else [_request(_engine.OP_DELETE, _route(targets[0]))]
    batch, statuses, views = _engine.run(requests, DEFAULT_MAX_IN_FLIGHT)
    # A missing object is success; a missing bucket is not.
    statuses = [lib.S3DL_OK if s == lib.S3DL_E_NOT_FOUND
                and not _names_missing_bucket(batch.error(i, s)) else s
                for i, s in enumerate(statuses)]
    batch.raise_first(statuses)
    batch.free()


def _listed(parsed: ParsedURI, uris: Sequence[str]) -> List[ParsedURI]:
    """URIs that a listing of ``parsed`` returned, as they are: an object
    store may hold names (directory markers "a/", "a//b") that our URI
    rules refuse as input, and deleting them must still work."""
    if parsed.is_local:
        return [_route(u) for u in uris]
    base = parsed.base
    return [ParsedURI(scheme=parsed.scheme, bucket=parsed.bucket, key=u[len(base):], raw=u)
            for u in uris if u.startswith(base)]


def _names_missing_bucket(err: S3dlioError) -> bool:
    """Whether a 404 is about the bucket rather than the object.  GCS uses
    one reason ("notFound") for both; only its message differs."""
    if err.code in ("NoSuchBucket", "ContainerNotFound"):
        return True
    return (err.uri or "").startswith(("gs://", "gcs://")) and \
        "bucket does not exist" in str(err).lower()


def _s3_delete_many(parsed: ParsedURI, uris: Sequence[str]) -> None:
    """Deletes S3 objects 1,000 per DeleteObjects request, requests running
    concurrently; any per-key error is raised after all have run."""
    client = s3_client.current()
    for u in uris:
        size_cache.forget(u)
    # Keys as listed, not re-parsed: a store may hold keys (directory
    # markers "a/", "a//b") that our URI rules would refuse as input.
    base = parsed.base
    keys = [u[len(base):] for u in uris if u.startswith(base)]
    requests = []
    for start in range(0, len(keys), 1000):
        body, md5 = s3_client.delete_objects_body(keys[start:start + 1000])
        requests.append(Request(_engine.OP_POST, parsed.raw,
                                client.bucket_url(parsed.bucket) + "?delete=", data=body,
                                client=client.handle,
                                headers=(f"Content-MD5: {md5}", "Content-Type: application/xml")))
    if not requests:
        return
    batch, statuses, views = _engine.run(requests, 8)
    try:
        batch.raise_first(statuses)
        for view in views:
            errors = s3_client.delete_errors(bytes(view), parsed.raw)
            if errors:
                key, code, message = errors[0]
                raise error_for_status(
                    "S3DL_E_PERMISSION" if code == "AccessDenied" else "S3DL_E_HTTP",
                    f"cannot delete {len(errors)} object(s), first {key!r}: {code} {message}",
                    uri=parsed.with_key(key), code=code)
    finally:
        for view in views:
            view.release()
        batch.free()


def list(uri: str, recursive: bool = True, pattern: Optional[str] = None) -> List[str]:
    """Full URIs of the objects ``uri`` selects, sorted.

    A URI ending in ``/`` selects everything under it; any other URI selects
    exactly the object of that name and everything under the directory of
    that name (``.../train`` never selects ``.../train2``; use
    ``pattern="train*"`` for that).  ``recursive=False`` lists one level,
    with sub-directories as entries ending in ``/``.  ``pattern`` is a glob
    matched against the key relative to the listed directory (or its base
    name when the pattern has no ``/``)."""
    parsed = _route(uri, require_key=False)
    if parsed.is_local:
        return _matching(parsed, _local_list(parsed, recursive), pattern)
    stream = _remote_stream(parsed) if recursive else _remote_level(parsed)
    return _matching(parsed, sorted(stream), pattern)


def iter_list(uri: str, pattern: Optional[str] = None) -> Iterator[str]:
    """``list(uri, recursive=True, pattern=pattern)`` as a stream: object
    stores yield each listing page as it arrives, so a consumer can start
    on the first objects of a prefix of millions.  The order is the same
    sorted order ``list`` returns."""
    parsed = _route(uri, require_key=False)
    if parsed.is_local:
        return iter(_matching(parsed, _local_list(parsed, True), pattern))
    return _matching(parsed, _remote_stream(parsed), pattern)


def _local_list(parsed: ParsedURI, recursive: bool) -> List[str]:
    import time
    started = time.time_ns()
    selected = [f"{parsed.scheme}://{p}" for p in _localfs.list_paths(parsed, recursive)]
    oplog.record_local("LIST", parsed.raw, 0, "", started, time.time_ns())
    return selected


def _matching(parsed: ParsedURI, uris: Iterable[str], pattern: Optional[str]) -> Any:
    """``uris`` filtered by ``pattern`` on the key relative to the listed
    base: a list for a list, a lazy iterator for anything else."""
    base = relative_base(parsed)
    kept = (u for u in uris
            if _localfs.match_pattern(u[len(base):].rstrip("/") if u.startswith(base) else u,
                                      pattern))
    return _list(kept) if isinstance(uris, _list) else kept


#: One listing page: objects as (key, size, etag), and common prefixes.
ListPage = tuple[Sequence[tuple[str, int, Optional[str]]], Sequence[str]]


def _list_pages(parsed: ParsedURI, prefix: str, delimiter: Optional[str]) -> Iterable[ListPage]:
    """Pages of ``(objects as (key, size, etag), common prefixes)``."""
    if parsed.scheme == "gs":
        return gcs_store.list_pages(parsed, prefix, delimiter)
    if parsed.scheme == "az":
        return azure_store.list_pages(parsed, prefix, delimiter)
    return _s3_list_pages(parsed, prefix, delimiter)


def _s3_list_pages(parsed: ParsedURI, prefix: str,
                   delimiter: Optional[str]) -> Iterable[ListPage]:
    """ListObjectsV2, page by page."""
    client = s3_client.current()
    token: Optional[str] = None
    for _page in range(1_000_000):  # bounded: a misbehaving server cannot loop us forever
        url = s3_client.list_page_url(client, parsed.bucket, prefix, token, delimiter)
        body = _engine.fetch_body(Request(_engine.OP_GET, parsed.raw, url, client=client.handle,
                                          label="LIST"))
        objects, common, token = s3_client.parse_list_page(body, parsed.raw)
        yield objects, common
        if token is None:
            return


def _remote_prefixes(parsed: ParsedURI) -> tuple[bool, List[str]]:
    """An object store's listing has the same exact selection as local
    listings: a key ending in '/' (or empty) lists under it; any other key
    selects that object and what lies under key + '/'."""
    key = parsed.key
    exact = bool(key) and not key.endswith("/")
    return exact, [key + "/"] if exact else [key]


def _remembered(parsed: ParsedURI, objects: Iterable[tuple[str, int, Optional[str]]]
                ) -> List[str]:
    """A listing page's objects as URIs, their sizes recorded in the size
    cache in one step (so later GETs need no HEAD)."""
    page = [(parsed.with_key(key), size, etag) for key, size, etag in objects]
    size_cache.remember_many(page)
    return [uri for uri, _size, _etag in page]


def _remote_stream(parsed: ParsedURI) -> Iterator[str]:
    """Recursive listing, page by page, in sorted order: the stores list
    keys in UTF-8 byte order, which is Python's str order, and the exact
    object ``key`` sorts before everything under ``key/``."""
    exact, prefixes = _remote_prefixes(parsed)
    if exact:
        yield from _exact_object(parsed)
    for prefix in prefixes:
        for objects, _common in _list_pages(parsed, prefix, None):
            yield from _remembered(parsed, objects)


def _remote_level(parsed: ParsedURI) -> Iterator[str]:
    """One level (delimiter '/'): objects and sub-prefixes ending in '/'."""
    exact, prefixes = _remote_prefixes(parsed)
    if exact:
        yield from _exact_object(parsed)
    for prefix in prefixes:
        for objects, common in _list_pages(parsed, prefix, "/"):
            yield from _remembered(parsed, objects)
            yield from (parsed.with_key(p) for p in common)


def _exact_object(parsed: ParsedURI) -> List[str]:
    try:
        stat(parsed.raw)
        return [parsed.raw]
    except NotFoundError:
        return []


def relative_base(parsed: ParsedURI) -> str:
    """The URI that keys listed under ``parsed`` are relative to, ending in
    ``/``: the URI itself when it ends in ``/`` or names a directory, else
    the parent of the object it names."""
    if parsed.is_local:
        path = parsed.path or "/"
        if path.endswith("/") or os.path.isdir(path):
            return f"{parsed.scheme}://{path.rstrip('/')}/"
        return f"{parsed.scheme}://{os.path.dirname(path).rstrip('/')}/"
    if not parsed.key or parsed.key.endswith("/"):
        return parsed.base + parsed.key
    return parsed.base + parsed.key.rsplit("/", 1)[0] + "/" if "/" in parsed.key else parsed.base


def mkdir(uri: str) -> None:
    """Creates a directory (and its parents) on local schemes.  Object
    stores have no directories, so there it only validates the URI."""
    parsed = parse_uri(uri, require_key=False)
    if not parsed.is_local:
        return
    try:
        os.makedirs(parsed.path or "/", exist_ok=True)
    except OSError as exc:
        raise error_from_oserror(exc, parsed.raw) from exc


_BUCKET_RULES = {
    "s3": (re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"),
           "3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit"),
    "gs": (re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$"),
           "3-222 characters of a-z, 0-9, '.', '_' and '-', starting and ending with a letter "
           "or digit"),
    "az": (re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$"),
           "3-63 characters of a-z, 0-9 and single '-', starting and ending with a letter or "
           "digit"),
}


def _bucket_target(bucket: str) -> tuple[str, str, str]:
    """``(scheme, account, name)`` for "name" or "s3://name[/]" (S3),
    "gs://name" / "gcs://name" (GCS) or "az://account/container" (Azure),
    checked against the service's naming rules."""
    if not isinstance(bucket, str):
        raise InvalidArgumentError(f"bucket must be a str, not {type(bucket).__name__}",
                                   code="InvalidBucketName")
    scheme, sep, rest = bucket.partition("://")
    if not sep:
        scheme, rest = "s3", bucket
    scheme = {"gcs": "gs"}.get(scheme.lower(), scheme.lower())
    rest = rest.rstrip("/")
    account = ""
    if scheme == "az":
        account, _, rest = rest.partition("/")
    rule = _BUCKET_RULES.get(scheme)
    if rule is None:
        raise InvalidArgumentError(f"buckets exist on s3://, gs:// and az:// only: {bucket}",
                                   uri=bucket, code="InvalidBucketName")
    pattern, why = rule
    if (not pattern.match(rest) or ".." in rest or re.match(r"^\d+\.\d+\.\d+\.\d+$", rest)
            or (scheme == "az" and not account)):
        shown = f"{account}/{rest}" if scheme == "az" else rest
        raise InvalidArgumentError(f"invalid bucket name {shown!r}: {why}"
                                   + (" (az://account/container)" if scheme == "az" else ""),
                                   uri=f"{scheme}://{shown}", code="InvalidBucketName")
    return scheme, account, rest


def _bucket_name(bucket: str) -> str:
    """An S3 bucket name from "name" or "s3://name[/]"."""
    scheme, _, name = _bucket_target(bucket)
    if scheme != "s3":
        raise InvalidArgumentError(f"not an S3 bucket: {bucket}", uri=bucket,
                                   code="InvalidBucketName")
    return name


def _run_one(req: Request) -> tuple[int, _engine.Results]:
    results, statuses, views = _engine.run([req], 1)
    for view in views:
        view.release()
    return statuses[0], results


def create_bucket(bucket: str) -> None:
    """Creates a bucket: ``"name"`` or ``"s3://name"`` (S3, in the
    configured region), ``"gs://name"`` (GCS, in the configured project) or
    ``"az://account/container"`` (an Azure container).  Creating one you
    already own succeeds; a name taken by someone else raises
    AlreadyExistsError."""
    scheme, account, name = _bucket_target(bucket)
    if scheme == "gs":
        req = gcs_store.bucket_create_request(name)
    elif scheme == "az":
        req = azure_store.container_request(_engine.OP_PUT, account, name)
    else:
        client = s3_client.current()
        req = Request(_engine.OP_PUT, f"s3://{name}", client.bucket_url(name),
                      data=s3_client.create_bucket_body(client.settings.region),
                      client=client.handle)
    status, results = _run_one(req)
    try:
        if status == lib.S3DL_OK:
            return
        err = results.error(0, status)
        if err.code in ("BucketAlreadyOwnedByYou", "ContainerAlreadyExists"):
            return  # an Azure account's containers are all the caller's
        if scheme == "gs" and err.http_status == 409 and _gcs_bucket_readable(name):
            return  # GCS says 409 for both; a bucket we can read is ours
        raise err
    finally:
        results.free()


def _gcs_bucket_readable(name: str) -> bool:
    status, results = _run_one(gcs_store.bucket_request(_engine.OP_GET, name))
    results.free()
    return status == lib.S3DL_OK


def delete_bucket(bucket: str) -> None:
    """Deletes an empty bucket (forms as for :func:`create_bucket`).  A
    bucket that still holds objects raises, on every store: Azure would
    delete a container's blobs with it, so its emptiness is checked first."""
    scheme, account, name = _bucket_target(bucket)
    if scheme == "gs":
        req = gcs_store.bucket_request(_engine.OP_DELETE, name)
    elif scheme == "az":
        parsed = parse_uri(f"az://{account}/{name}/", require_key=False)
        first_page = next(iter(azure_store.list_pages(parsed, "", None, max_results=1)))
        if first_page[0]:
            raise StorageIOError(f"container is not empty: az://{account}/{name}",
                                 uri=f"az://{account}/{name}", code="BucketNotEmpty")
        req = azure_store.container_request(_engine.OP_DELETE, account, name)
    else:
        client = s3_client.current()
        req = Request(_engine.OP_DELETE, f"s3://{name}", client.bucket_url(name),
                      client=client.handle)
    status, results = _run_one(req)
    try:
        if scheme == "gs" and status != lib.S3DL_OK:
            err = results.error(0, status)
            if err.http_status in (409, 412):  # GCS: "bucket not empty"
                raise StorageIOError(f"bucket is not empty: gs://{name}", uri=f"gs://{name}",
                                     http_status=err.http_status, code="BucketNotEmpty")
        results.raise_first([status])
    finally:
        results.free()


def presign(uri: str, method: str = "GET", expires: int = 3600) -> str:
    """A presigned URL for ``uri`` that lets anyone holding it perform
    ``method`` for ``expires`` seconds (1 to 604,800): SigV4 query signing
    on S3, a V4 signed URL on GCS (needs a service account), a service SAS
    on Azure (needs the account key)."""
    parsed = _route(uri)
    if not isinstance(expires, int) or not 1 <= expires <= 604800:
        raise InvalidArgumentError(f"expires must be 1..604800 seconds, got {expires!r}",
                                   uri=uri)
    if parsed.scheme == "gs":
        from . import gcs_sign
        return gcs_sign.presign_gcs(parsed.bucket, parsed.key, method.upper(), expires)
    if parsed.scheme == "az":
        return azure_store.presign(parsed, method.upper(), expires)
    if parsed.scheme != "s3":
        raise UnsupportedError(f"presign needs an s3://, gs:// or az:// URI: {uri}", uri=uri)
    client = s3_client.current()
    if client.settings.credentials is None:
        raise PermissionDeniedError(f"presign needs AWS credentials; none are configured: {uri}",
                                    uri=uri, code="NoCredentials")
    return client.presign(method.upper(), parsed.bucket, parsed.key, expires)


def stats() -> dict[str, int]:
    """Process-wide engine counters: items completed, bytes read and written,
    ``direct_io_fallbacks`` (O_DIRECT refused by the filesystem, buffered I/O
    used instead), ``engine_starts`` (1 + rebuilds after fork) and
    ``buffer_cache_bytes`` (freed result buffers kept for reuse now)."""
    return _engine.counters()
