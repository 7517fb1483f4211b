"""Google Cloud Storage through the JSON API: request URLs and headers for
the engine, and the JSON replies (metadata, listings).  Credentials come
from :mod:`gcs_auth`; the native client (dialect GCS) adds and checks
``x-goog-hash`` CRC32C and reads JSON error bodies.

Endpoints used (relative to ``https://storage.googleapis.com`` or
``STORAGE_EMULATOR_HOST``)::

    GET    /storage/v1/b/B/o/K?alt=media      object data (Range for parts)
    GET    /storage/v1/b/B/o/K                metadata (stat)
    POST   /upload/storage/v1/b/B/o?uploadType=multipart (metadata + data)
    POST   /upload/storage/v1/b/B/o?uploadType=resumable&name=K, then PUT chunks
    DELETE /storage/v1/b/B/o/K
    GET    /storage/v1/b/B/o?prefix=&delimiter=&pageToken=   (list)
    POST   /storage/v1/b?project=P  /  DELETE /storage/v1/b/B  (buckets)
"""
from __future__ import annotations

import base64
import json
import mimetypes
import os
import threading
from typing import Any, Iterator, List, Optional
from urllib.parse import quote

from . import _engine, gcs_auth
from ._engine import Request
from ._native import check, ffi, lib
from ._steps import Steps
from .errors import StorageIOError, ThrottledError, TimeoutError
from .uri import ParsedURI

_MAX_JSON_BYTES = 64 << 20
#: Resumable chunks must be multiples of 256 KiB (GCS's rule).
CHUNK_QUANTUM = 256 << 10


def enc(name: str) -> str:
    """An object or bucket name as one URL path segment ('/' encoded too)."""
    return quote(name, safe="")


def _native_client(max_attempts: Optional[int] = None) -> Any:
    out = ffi.new("s3dl_client **")
    check(lib.s3dl_client_new(out), "cannot create a GCS client")
    handle = ffi.gc(out[0], lib.s3dl_client_free)
    check(lib.s3dl_client_setopt_int(handle, lib.S3DL_CLIENT_DIALECT, lib.S3DL_DIALECT_GCS),
          "dialect")
    if max_attempts is not None:
        check(lib.s3dl_client_setopt_int(handle, lib.S3DL_CLIENT_MAX_ATTEMPTS, max_attempts),
              "max attempts")
    return handle


class GcsClient:
    """Native clients in the GCS dialect plus the config they were made
    from.  GCS's retry guidance: retry idempotent requests, and writes only
    when a precondition makes them so.  ``handle`` retries (reads, listings,
    preconditioned uploads, resumable chunks, whose session makes them
    idempotent); ``single_shot`` makes one attempt, for an upload or delete
    that a retry could apply on top of another writer's newer object."""

    def __init__(self, config: "gcs_auth.GcsConfig") -> None:
        self.config = config
        self.handle = _native_client()
        self.single_shot = _native_client(max_attempts=1)

    def __repr__(self) -> str:
        return f"GcsClient(endpoint={self.config.endpoint!r})"

    def auth(self) -> tuple[str, ...]:
        """The Authorization header for a request now (tokens refresh)."""
        value = self.config.authorization()
        return (f"Authorization: {value}",) if value else ()

    @property
    def base(self) -> str:
        return self.config.endpoint.rstrip("/")

    def object_url(self, bucket: str, key: str) -> str:
        return f"{self.base}/storage/v1/b/{enc(bucket)}/o/{enc(key)}"

    def upload_url(self, bucket: str, key: str, kind: str, create_only: bool) -> str:
        url = f"{self.base}/upload/storage/v1/b/{enc(bucket)}/o?uploadType={kind}&name={enc(key)}"
        return url + "&ifGenerationMatch=0" if create_only else url


_lock = threading.Lock()
_cached: Optional[tuple[Any, int, GcsClient]] = None


def current() -> GcsClient:
    """The client for the current environment (rebuilt when the GCS
    configuration changes, or in a forked child)."""
    global _cached
    config = gcs_auth.current()
    with _lock:
        if _cached is None or _cached[0] is not config or _cached[1] != os.getpid():
            _cached = (config, os.getpid(), GcsClient(config))
        return _cached[2]


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def crc32c_b64(data: Any) -> str:
    """CRC-32C of a bytes-like object, big-endian and base64, as GCS writes
    it (computed by the core, without the GIL)."""
    view = memoryview(data).cast("B")
    crc = lib.s3dl_crc32c(0, ffi.from_buffer(view), len(view))
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def multipart_body(key: str, data: Any) -> tuple[bytes, str]:
    """A multipart/related upload body: the object's metadata (name,
    content type and CRC32C, which GCS checks against the data) and its
    bytes.  Returns the body and its Content-Type.  This copies the data
    once; objects large enough for that to matter go up as resumable
    uploads instead (see ``resumable_steps``)."""
    view = memoryview(data).cast("B")
    meta = json.dumps({"name": key, "contentType": content_type(key),
                       "crc32c": crc32c_b64(view)}).encode()
    # A fresh random 128-bit boundary, made after the data is fixed, as
    # Google's own clients do: the chance that 1 GiB of data holds it is
    # below 2**-98, and scanning for it cost more than the upload itself.
    boundary = os.urandom(16).hex()
    head = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
            ).encode() + meta + (f"\r\n--{boundary}\r\nContent-Type: {content_type(key)}"
                                 f"\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    body = b"".join((head, view, tail))
    return body, f"multipart/related; boundary={boundary}"


def content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def object_request(op: int, parsed: ParsedURI, *, offset: int, length: int, data: Any,
                   flags: int, headers: tuple, client: GcsClient) -> Request:
    """The engine request for one object operation (see the module doc)."""
    auth = client.auth()
    if op == _engine.OP_GET:
        return Request(op, parsed.raw, client.object_url(parsed.bucket, parsed.key) + "?alt=media",
                       offset=offset, length=length, flags=flags & _engine.F_RANGE,
                       client=client.handle, headers=headers + auth)
    if op == _engine.OP_PUT:
        create_only = bool(flags & _engine.F_CREATE_ONLY)
        url = client.upload_url(parsed.bucket, parsed.key, "multipart", create_only)
        body, ctype = multipart_body(parsed.key, data)
        # POST returns the new object's JSON.
        return Request(_engine.OP_POST, parsed.raw, url, data=body, label="PUT",
                       client=client.handle if create_only else client.single_shot,
                       headers=headers + auth + (f"Content-Type: {ctype}",))
    if op == _engine.OP_STAT:
        return Request(_engine.OP_GET, parsed.raw, client.object_url(parsed.bucket, parsed.key),
                       client=client.handle, headers=headers + auth, label="HEAD")
    if op == _engine.OP_DELETE:
        return Request(op, parsed.raw, client.object_url(parsed.bucket, parsed.key),
                       client=client.single_shot, headers=headers + auth)
    raise ValueError(f"no GCS request for op {op}")


def parse_json(body: bytes, uri: str) -> Any:
    if len(body) > _MAX_JSON_BYTES:
        raise StorageIOError(f"GCS reply larger than {_MAX_JSON_BYTES} bytes: {uri}", uri=uri,
                             code="MalformedReply")
    try:
        return json.loads(body)
    except ValueError:
        raise StorageIOError(f"GCS answered with malformed JSON: {uri}", uri=uri,
                             code="MalformedReply") from None


def _b64_to_hex(value: Optional[str]) -> Optional[str]:
    if not value:
        return None
    try:
        return base64.b64decode(value).hex()
    except ValueError:
        return None


def stat_from_json(meta: Any, uri: str) -> dict[str, Any]:
    """``stat`` fields from an object resource: size, last_modified, etag,
    content_type, plus GCS's crc32c/md5 (base64 as GCS gives them) and
    generation."""
    if not isinstance(meta, dict) or "size" not in meta:
        raise StorageIOError(f"GCS metadata without a size: {uri}", uri=uri,
                             code="MalformedReply")
    updated = meta.get("updated") or meta.get("timeCreated")
    return {
        "size": int(meta["size"]),
        "last_modified": updated,
        "etag": meta.get("etag"),
        "content_type": meta.get("contentType"),
        "crc32c": meta.get("crc32c"),
        "md5": meta.get("md5Hash"),
        "generation": meta.get("generation"),
    }


def list_page_url(client: GcsClient, bucket: str, prefix: str, token: Optional[str],
                  delimiter: Optional[str]) -> str:
    url = (f"{client.base}/storage/v1/b/{enc(bucket)}/o?maxResults=1000"
           f"&prefix={enc(prefix)}")
    if delimiter:
        url += f"&delimiter={enc(delimiter)}"
    if token:
        url += f"&pageToken={enc(token)}"
    return url


def parse_list_page(body: bytes, uri: str) -> tuple[List[tuple[str, int, Optional[str]]],
                                                    List[str], Optional[str]]:
    """``(objects as (name, size, etag), prefixes, next page token)``."""
    page = parse_json(body, uri)
    if not isinstance(page, dict):
        raise StorageIOError(f"GCS listing is not an object: {uri}", uri=uri,
                             code="MalformedReply")
    objects = [(item["name"], int(item.get("size", 0)), item.get("etag"))
               for item in page.get("items", []) if isinstance(item, dict) and "name" in item]
    prefixes = [p for p in page.get("prefixes", []) if isinstance(p, str)]
    token = page.get("nextPageToken") or None
    return objects, prefixes, token


def list_pages(parsed: ParsedURI, prefix: str, delimiter: Optional[str]) -> Iterator[
        tuple[List[tuple[str, int, Optional[str]]], List[str]]]:
    client = current()
    token: Optional[str] = None
    for _page in range(1_000_000):  # bounded: a misbehaving server cannot loop us forever
        url = list_page_url(client, parsed.bucket, prefix, token, delimiter)
        body = _engine.fetch_body(Request(_engine.OP_GET, parsed.raw, url, client=client.handle,
                                          headers=client.auth(), label="LIST"))
        objects, prefixes, token = parse_list_page(body, parsed.raw)
        yield objects, prefixes
        if token is None:
            return


def bucket_create_request(name: str) -> Request:
    client = current()
    project = client.config.project or ("test" if client.config.emulator else None)
    if project is None:
        from .errors import InvalidArgumentError
        raise InvalidArgumentError(f"creating gs://{name} needs a project: set "
                                   "GOOGLE_CLOUD_PROJECT", uri=f"gs://{name}",
                                   code="NoProject")
    body = json.dumps({"name": name}).encode()
    return Request(_engine.OP_POST, f"gs://{name}",
                   f"{client.base}/storage/v1/b?project={enc(project)}", data=body,
                   client=client.handle,
                   headers=client.auth() + ("Content-Type: application/json",))


def bucket_request(op: int, name: str) -> Request:
    """GET (exists and readable) or DELETE of a bucket."""
    client = current()
    return Request(op, f"gs://{name}", f"{client.base}/storage/v1/b/{enc(name)}",
                   client=client.handle, headers=client.auth())


# ---- resumable upload --------------------------------------------------------

def chunk_size() -> int:
    """Resumable chunk size: S3DLIO_GCS_CHUNK_SIZE (default 32 MiB), rounded
    down to a multiple of 256 KiB."""
    value = os.environ.get("S3DLIO_GCS_CHUNK_SIZE")
    size = int(value, 0) if value else 32 << 20
    return max(CHUNK_QUANTUM, size - size % CHUNK_QUANTUM)


def persisted(response: Optional[_engine.Response]) -> int:
    """Bytes the server holds, from a 308's ``Range: bytes=0-N``."""
    if response is None:
        return 0
    value = response.headers.get("range", "")
    if value.startswith("bytes=0-"):
        try:
            return int(value[len("bytes=0-"):]) + 1
        except ValueError:
            return 0
    return 0


_MAX_RECOVERIES = 5
#: Chunk failures worth asking the session about; anything else (the
#: session expired, permission) ends the upload.
_RECOVERABLE = (StorageIOError, ThrottledError, TimeoutError)


def session_start_request(parsed: ParsedURI, headers: tuple, create_only: bool,
                          size: Optional[int] = None, crc: Optional[str] = None) -> Request:
    """Starts a resumable session.  A streaming writer knows neither the
    size nor the CRC32C yet; it sends the hash with the last chunk."""
    client = current()
    meta = {"name": parsed.key, "contentType": content_type(parsed.key)}
    extra = (f"X-Upload-Content-Length: {size}",) if size is not None else ()
    if crc is not None:
        meta["crc32c"] = crc
    return Request(_engine.OP_POST, parsed.raw,
                   client.upload_url(parsed.bucket, parsed.key, "resumable", create_only),
                   data=json.dumps(meta).encode(), client=client.handle,
                   flags=_engine.F_KEEP_HEADERS,
                   headers=headers + client.auth() + (
                       "Content-Type: application/json; charset=UTF-8",
                       f"X-Upload-Content-Type: {meta['contentType']}") + extra)


def session_uri(parsed: ParsedURI, results: _engine.Results) -> str:
    """The session URI from a start request's reply (freed here)."""
    results.raise_first()
    response = results.response_headers(0)
    results.free()
    session = response.headers.get("location") if response else None
    if not session:
        raise StorageIOError(f"GCS started no resumable session (no Location): {parsed.raw}",
                             uri=parsed.raw, code="MalformedReply")
    return session


def chunk_request(parsed: ParsedURI, session: str, piece: Any, offset: int,
                  total: Optional[int], crc: Optional[str]) -> Request:
    """One chunk PUT of a resumable session: ``total`` is None while the
    size is unknown (a streaming writer); the last chunk carries the whole
    object's CRC32C, which GCS checks.  One attempt: after a failure the
    session says how much it holds (GCS's protocol), rather than the core
    re-sending bytes the server may already have."""
    client = current()
    length = memoryview(piece).nbytes
    size = "*" if total is None else str(total)
    content_range = (f"bytes {offset}-{offset + length - 1}/{size}" if length
                     else f"bytes */{size}")
    # fake-gcs-server takes a chunk's Content-Type as the object's.
    headers = client.auth() + (f"Content-Range: {content_range}",
                               f"Content-Type: {content_type(parsed.key)}")
    if crc is not None:
        headers += (f"x-goog-hash: crc32c={crc}",)
    return Request(_engine.OP_PUT, parsed.raw, session, data=piece, client=client.single_shot,
                   flags=_engine.F_KEEP_HEADERS | _engine.F_ACCEPT_3XX, headers=headers)


def status_request(parsed: ParsedURI, session: str, total: Optional[int]) -> Request:
    """Asks a resumable session how much it holds: 308 with ``Range:
    bytes=0-N`` (see :func:`persisted`), or 200/201 once the upload is
    complete.  ``total`` None while a streaming writer does not know it."""
    client = current()
    size = "*" if total is None else str(total)
    return Request(_engine.OP_PUT, parsed.raw, session, data=b"", client=client.handle,
                   flags=_engine.F_KEEP_HEADERS | _engine.F_ACCEPT_3XX,
                   headers=client.auth() + (f"Content-Range: bytes */{size}",))


def resumable_steps(parsed: ParsedURI, data: Any, headers: tuple, create_only: bool) -> Steps:
    """A resumable upload: start a session, send chunks in order; after a
    chunk fails, ask the session how much it holds and go on from there
    (at most five recoveries).  Returns the object's metadata dict."""
    view = memoryview(data).cast("B")
    size = len(view)
    crc = crc32c_b64(view)
    session = session_uri(parsed, (yield [session_start_request(parsed, headers, create_only,
                                                                size, crc)]))
    step = chunk_size()
    offset, recoveries = 0, 0
    for _round in range(size // CHUNK_QUANTUM + 2 * _MAX_RECOVERIES + 2):  # bounded
        end = min(offset + step, size)
        chunk = chunk_request(parsed, session, view[offset:end], offset, size,
                              crc if end == size else None)
        try:
            results = yield [chunk]
            results.raise_first()
        except GeneratorExit:
            raise
        except _RECOVERABLE:
            recoveries += 1
            if recoveries > _MAX_RECOVERIES:
                raise
            status = yield [status_request(parsed, session, size)]
            status.raise_first()
            reply = status.response_headers(0)
            status.free()
            if reply is not None and reply.status in (200, 201):
                return {"size": size}  # finished while its reply was lost
            offset = persisted(reply)
            continue
        reply = results.response_headers(0)
        body = bytes(results.views[0])
        results.free()
        if reply is not None and reply.status in (200, 201):
            done = parse_json(body, parsed.raw) if body else {}
            if isinstance(done, dict) and "size" in done and int(done["size"]) != size:
                # GCS checks the CRC32C sent with the last chunk, so this
                # means a server that does not: say so, never report success.
                raise StorageIOError(f"GCS stored {done['size']} bytes of {size} for "
                                     f"{parsed.raw}", uri=parsed.raw, code="SizeMismatch")
            return done
        offset = persisted(reply)
    raise StorageIOError(f"GCS resumable upload made no progress: {parsed.raw}", uri=parsed.raw,
                         code="UploadStalled")
