"""Azure Blob Storage through the Blob REST API: request URLs and signed
headers for the engine, and the XML replies (listings).  Configuration
and SharedKey/SAS signing come from :mod:`azure_auth`; the native client
(dialect AZURE) adds no headers of its own, since SharedKey signs them.

``az://account/container/blob`` maps to::

    GET    {endpoint}/container/blob            data (x-ms-range for parts)
    HEAD   {endpoint}/container/blob            stat
    PUT    {endpoint}/container/blob            Put Blob (BlockBlob)
    PUT    ...?comp=block&blockid=ID, then ...?comp=blocklist   (large blobs)
    DELETE {endpoint}/container/blob
    GET    {endpoint}/container?restype=container&comp=list&prefix=&marker=
    PUT / DELETE {endpoint}/container?restype=container
"""
from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
import threading
import xml.etree.ElementTree as ET
from typing import Any, Iterator, List, Optional
from urllib.parse import quote
from xml.sax.saxutils import escape

from . import _engine, azure_auth
from ._engine import Request
from ._native import check, ffi, lib
from ._steps import Steps
from .errors import StorageIOError
from .uri import ParsedURI

_MAX_XML_BYTES = 64 << 20
MiB = 1 << 20


def _content_md5_mode() -> str:
    """S3DLIO_AZURE_CONTENT_MD5: ``upload`` (default), ``both`` (also ``1``)
    or ``off`` (also ``0``)."""
    value = os.environ.get("S3DLIO_AZURE_CONTENT_MD5", "upload").strip().lower()
    if value in ("0", "off", "false", "no", "none"):
        return "off"
    if value in ("1", "both", "verify", "true", "yes"):
        return "both"
    return "upload"


def content_md5_enabled() -> bool:
    """Whether Put Blob and every Put Block carry Content-MD5, which the
    service checks against the body (and keeps, for Put Blob).  On by
    default; about 1.4 CPU-seconds per GB, on the calling thread."""
    return _content_md5_mode() != "off"


def verify_downloads() -> bool:
    """Whether whole-blob downloads are checked against the stored
    Content-MD5: only with S3DLIO_AZURE_CONTENT_MD5=both.  Off by default,
    as in the Azure SDKs: MD5 runs on the engine thread at about 700 MB/s,
    which would cap a process's Azure reads there (TLS already guards the
    transfer)."""
    return _content_md5_mode() == "both"


class AzureClient:
    """A native client in the Azure dialect, shared by every account."""

    def __init__(self, verify_md5: bool) -> None:
        self.verify_md5 = verify_md5
        out = ffi.new("s3dl_client **")
        check(lib.s3dl_client_new(out), "cannot create an Azure client")
        self.handle = ffi.gc(out[0], lib.s3dl_client_free)
        check(lib.s3dl_client_setopt_int(self.handle, lib.S3DL_CLIENT_DIALECT,
                                         lib.S3DL_DIALECT_AZURE), "dialect")
        if not verify_md5:
            check(lib.s3dl_client_setopt_int(self.handle, lib.S3DL_CLIENT_CHECKSUM,
                                             lib.S3DL_CHECKSUM_NONE), "checksum")

    def __repr__(self) -> str:
        return f"AzureClient(verify_md5={self.verify_md5})"


_lock = threading.Lock()
_client: Optional[tuple[int, AzureClient]] = None


def native_client() -> AzureClient:
    global _client
    verify = verify_downloads()
    with _lock:
        if _client is None or _client[0] != os.getpid() or _client[1].verify_md5 != verify:
            _client = (os.getpid(), AzureClient(verify))
        return _client[1]


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def split(parsed: ParsedURI) -> tuple[str, str]:
    """``(account, container)`` of an az:// URI."""
    account, _, container = parsed.bucket.partition("/")
    return account, container


def content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def signed(op: int, uri: str, method: str, url: str, account: str, headers: dict[str, str], *,
           data: Any = None, offset: int = 0, length: int = _engine.LENGTH_TO_END,
           flags: int = 0) -> Request:
    """A Request whose headers are signed for ``method`` (SharedKey), or
    whose URL carries the SAS.  Content-Length is signed but left for
    libcurl to send."""
    config = azure_auth.current(account)
    if data is not None:
        headers = {**headers, "Content-Length": str(memoryview(data).nbytes)}
    final_url, lines = config.authorize(method, url, headers)
    sent = tuple(h for h in lines if not h.lower().startswith("content-length:"))
    return Request(op, uri, final_url, offset=offset, length=length, data=data, flags=flags,
                   client=native_client().handle, headers=sent)


def md5_b64(data: Any) -> str:
    # hashlib releases the GIL for large buffers.
    return base64.b64encode(hashlib.md5(memoryview(data).cast("B")).digest()).decode()


def object_request(op: int, parsed: ParsedURI, *, offset: int, length: int, data: Any,
                   flags: int, headers: tuple) -> Request:
    account, container = split(parsed)
    config = azure_auth.current(account)
    url = config.blob_url(container, parsed.key)
    extra = dict(h.split(": ", 1) for h in headers)
    if op == _engine.OP_GET:
        if flags & _engine.F_RANGE:
            end = "" if length == _engine.LENGTH_TO_END else str(offset + length - 1)
            extra["x-ms-range"] = f"bytes={offset}-{end}"
        return signed(op, parsed.raw, "GET", url, account, extra, offset=offset, length=length,
                      flags=flags & _engine.F_RANGE)
    if op == _engine.OP_PUT:
        extra.update({"x-ms-blob-type": "BlockBlob", "Content-Type": content_type(parsed.key)})
        if content_md5_enabled():
            extra["Content-MD5"] = md5_b64(data)
        if flags & _engine.F_CREATE_ONLY:
            extra["If-None-Match"] = "*"
        return signed(op, parsed.raw, "PUT", url, account, extra, data=data)
    if op == _engine.OP_STAT:
        return signed(op, parsed.raw, "HEAD", url, account, extra)
    if op == _engine.OP_DELETE:
        return signed(op, parsed.raw, "DELETE", url, account, extra)
    raise ValueError(f"no Azure request for op {op}")


# ---- listing -----------------------------------------------------------------

def _parse_xml(body: bytes, uri: str) -> ET.Element:
    if len(body) > _MAX_XML_BYTES:
        raise StorageIOError(f"Azure reply larger than {_MAX_XML_BYTES} bytes: {uri}", uri=uri,
                             code="MalformedReply")
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise StorageIOError(f"Azure reply declares a DTD: {uri}", uri=uri, code="MalformedReply")
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        raise StorageIOError(f"Azure answered with malformed XML: {uri}", uri=uri,
                             code="MalformedReply") from None


def list_page_url(config: Any, container: str, prefix: str, marker: Optional[str],
                  delimiter: Optional[str], max_results: int = 5000) -> str:
    url = (f"{config.container_url(container)}?restype=container&comp=list"
           f"&maxresults={max_results}&prefix={quote(prefix, safe='')}")
    if delimiter:
        url += f"&delimiter={quote(delimiter, safe='')}"
    if marker:
        url += f"&marker={quote(marker, safe='')}"
    return url


def parse_list_page(body: bytes, uri: str) -> tuple[List[tuple[str, int, Optional[str]]],
                                                    List[str], Optional[str]]:
    """``(blobs as (name, size, etag), prefixes, next marker)``."""
    root = _parse_xml(body, uri)
    if root.tag != "EnumerationResults":
        raise StorageIOError(f"Azure listing is <{root.tag}>, not <EnumerationResults>: {uri}",
                             uri=uri, code="MalformedReply")
    objects = []
    for blob in root.iter("Blob"):
        name = blob.findtext("Name")
        if name is None:
            continue
        size = blob.findtext("Properties/Content-Length") or "0"
        objects.append((name, int(size), blob.findtext("Properties/Etag")))
    prefixes = [p.findtext("Name") or "" for p in root.iter("BlobPrefix")]
    marker = root.findtext("NextMarker") or None
    return objects, [p for p in prefixes if p], marker


def list_pages(parsed: ParsedURI, prefix: str, delimiter: Optional[str],
               max_results: int = 5000) -> Iterator[
        tuple[List[tuple[str, int, Optional[str]]], List[str]]]:
    account, container = split(parsed)
    config = azure_auth.current(account)
    marker: Optional[str] = None
    for _page in range(1_000_000):  # bounded: a misbehaving server cannot loop us forever
        url = list_page_url(config, container, prefix, marker, delimiter, max_results)
        request = signed(_engine.OP_GET, parsed.raw, "GET", url, account, {})
        request.label = "LIST"
        body = _engine.fetch_body(request)
        objects, prefixes, marker = parse_list_page(body, parsed.raw)
        yield objects, prefixes
        if marker is None:
            return


def container_request(op: int, account: str, container: str) -> Request:
    """PUT (create) or DELETE of a container."""
    config = azure_auth.current(account)
    url = f"{config.container_url(container)}?restype=container"
    method = "PUT" if op == _engine.OP_PUT else "DELETE"
    return signed(op, f"az://{account}/{container}", method, url, account, {},
                  data=b"" if op == _engine.OP_PUT else None)


#: SAS permissions a presigned URL grants, by HTTP method.
_SAS_PERMISSIONS = {"GET": "r", "HEAD": "r", "PUT": "cw", "DELETE": "d"}


def presign(parsed: ParsedURI, method: str, expires: int) -> str:
    """A blob URL with a service SAS allowing ``method`` for ``expires``
    seconds, signed with the account key."""
    import datetime as _dt
    from .errors import InvalidArgumentError, PermissionDeniedError
    permissions = _SAS_PERMISSIONS.get(method)
    if permissions is None:
        raise InvalidArgumentError(f"cannot presign {method} for Azure (GET, HEAD, PUT, DELETE)",
                                   uri=parsed.raw)
    account, container = split(parsed)
    config = azure_auth.current(account)
    if config.key is None:
        raise PermissionDeniedError(f"presign needs the account key of {account!r}: "
                                    f"{parsed.raw}", uri=parsed.raw, code="NoCredentials")
    expiry = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=expires)
    return azure_auth.sas_url(config, container, parsed.key, permissions, expiry)


# ---- block upload ------------------------------------------------------------

def block_size() -> int:
    """Block size for large blobs: S3DLIO_AZURE_BLOCK_SIZE (default 16 MiB)."""
    value = os.environ.get("S3DLIO_AZURE_BLOCK_SIZE")
    size = int(value, 0) if value else 16 * MiB
    # 50,000 blocks at most per blob (Azure's limit).
    return max(size, 1)


def _block_id(upload: str, n: int) -> str:
    # Every id of a blob must have the same length before encoding.  The
    # per-upload part keeps a concurrent writer's blocks of the same name
    # out of our block list (they would be spliced into our blob).
    return base64.b64encode(f"{upload}-{n:08d}".encode()).decode()


def block_request(parsed: ParsedURI, upload: str, number: int, piece: Any) -> Request:
    """Put Block ``number`` of the upload named ``upload`` (random, per upload)."""
    account, container = split(parsed)
    url = azure_auth.current(account).blob_url(container, parsed.key)
    block_id = _block_id(upload, number)
    return signed(_engine.OP_PUT, parsed.raw, "PUT",
                  f"{url}?comp=block&blockid={quote(block_id, safe='')}", account,
                  {"Content-MD5": md5_b64(piece)} if content_md5_enabled() else {}, data=piece)


def commit_request(parsed: ParsedURI, upload: str, count: int, headers: tuple,
                   create_only: bool) -> Request:
    """Put Block List of blocks 0..count-1, in order: the blob appears whole."""
    account, container = split(parsed)
    url = azure_auth.current(account).blob_url(container, parsed.key)
    ids = [_block_id(upload, n) for n in range(count)]
    body = ("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>"
            + "".join(f"<Latest>{escape(i)}</Latest>" for i in ids) + "</BlockList>").encode()
    commit_headers = {"Content-Type": "application/xml",
                      "x-ms-blob-content-type": content_type(parsed.key),
                      "Content-MD5": md5_b64(body)}
    commit_headers.update(h.split(": ", 1) for h in headers
                          if not h.lower().startswith("content-type:"))
    if create_only:
        commit_headers["If-None-Match"] = "*"
    return signed(_engine.OP_PUT, parsed.raw, "PUT", f"{url}?comp=blocklist", account,
                  commit_headers, data=body)


def committed_etag(results: _engine.Results) -> str:
    results.raise_first()
    stat = results.stat(0)
    etag = ffi.string(stat.etag).decode() if stat is not None else ""
    results.free()
    return etag


def new_upload() -> str:
    return os.urandom(12).hex()


def block_steps(parsed: ParsedURI, data: Any, headers: tuple, create_only: bool) -> Steps:
    """Put Block for every block in parallel, then Put Block List.  Blocks
    never committed are discarded by the service (after a week), so a
    failure leaves nothing visible under the name."""
    view = memoryview(data).cast("B")
    size = len(view)
    step = max(block_size(), -(-size // 50_000))
    slices = [view[o:o + step] for o in range(0, size, step)] or [view[:0]]
    upload = new_upload()
    results = yield [block_request(parsed, upload, n, piece) for n, piece in enumerate(slices)]
    results.raise_first()
    results.free()
    return committed_etag((yield [commit_request(parsed, upload, len(slices), headers,
                                                 create_only)]))
