"""Multipart upload for large S3 PUTs: create, parts in parallel, complete;
abort on any failure so no upload is left behind.

The sequence is written once, as a generator that yields the engine
requests of each step and receives their results; ``upload`` drives it
synchronously and ``upload_async`` from an event loop."""
from __future__ import annotations

import os
from typing import Any, List
from xml.sax.saxutils import escape

from . import _engine, s3_client
from ._engine import Request
from ._steps import Steps, drive, drive_async
from ._native import ffi, lib
from .errors import S3dlioError, StorageIOError
from .uri import ParsedURI

MiB = 1 << 20
MIN_PART = 5 * MiB          # S3's minimum for every part but the last
MAX_PARTS = 10_000


def _env_bytes(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value, 0) if value else default


def threshold() -> int:
    """Objects at least this large are uploaded in parts (default 32 MiB)."""
    return _env_bytes("S3DLIO_MULTIPART_THRESHOLD", 32 * MiB)


def part_size_for(size: int) -> int:
    """16 MiB parts (S3DLIO_MULTIPART_PART_SIZE), grown in whole MiB when an
    object would need more than 10,000 parts."""
    part = max(MIN_PART, _env_bytes("S3DLIO_MULTIPART_PART_SIZE", 16 * MiB))
    if -(-size // part) > MAX_PARTS:
        part = -(-size // MAX_PARTS)
        part = -(-part // MiB) * MiB
    return part


def crc32c_b64(view: memoryview) -> str:
    import base64
    crc = lib.s3dl_crc32c(0, ffi.from_buffer(view), len(view))
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


class Upload:
    """The requests and replies of one multipart upload, for a caller that
    sequences them: ``_steps`` (an object in memory) or a streaming writer."""

    def __init__(self, parsed: ParsedURI) -> None:
        self.parsed = parsed
        self.client = s3_client.current()
        self.url = self.client.object_url(parsed.bucket, parsed.key)
        self.query = ""  # uploadId=..., once started

    def _request(self, op: int, url: str, **kw: Any) -> Request:
        return Request(op, self.parsed.raw, url, client=self.client.handle, **kw)

    def start_request(self, headers: tuple) -> Request:
        return self._request(_engine.OP_POST, self.url + "?uploads=", data=b"",
                             headers=headers + ("x-amz-checksum-algorithm: CRC32C",))

    def take_upload_id(self, results: _engine.Results) -> None:
        """Reads CreateMultipartUpload's reply (and frees it)."""
        results.raise_first()
        root = s3_client.parse_xml(bytes(results.views[0]), self.parsed.raw)
        upload_id = s3_client.text(root, "UploadId")
        results.free()
        if not upload_id:
            raise StorageIOError(f"CreateMultipartUpload returned no UploadId: "
                                 f"{self.parsed.raw}", uri=self.parsed.raw,
                                 code="MalformedReply")
        self.query = f"uploadId={s3_client.encode_query(upload_id)}"

    def part_request(self, number: int, piece: Any, crc: str) -> Request:
        # The part's CRC-32C is computed once by the caller: sent with the
        # part (so the core does not hash it again) and listed at completion.
        return self._request(_engine.OP_PUT, f"{self.url}?partNumber={number}&{self.query}",
                             data=piece, headers=(f"x-amz-checksum-crc32c: {crc}",
                                                  "x-amz-sdk-checksum-algorithm: CRC32C"))

    def part_etags(self, results: _engine.Results, first: int) -> List[str]:
        """ETags of finished UploadPart requests numbered from ``first``
        (the results are freed)."""
        results.raise_first()
        etags = []
        for i in range(len(results.requests)):
            stat = results.stat(i)  # keep the struct alive while copying its field
            etags.append(ffi.string(stat.etag).decode() if stat is not None else "")
        results.free()
        missing = [first + n for n, etag in enumerate(etags) if not etag]
        if missing:
            raise StorageIOError(f"UploadPart {missing[0]} returned no ETag: {self.parsed.raw}",
                                 uri=self.parsed.raw, code="MalformedReply")
        return etags

    def complete_request(self, etags: List[str], checksums: List[str],
                         create_only: bool) -> Request:
        body = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(etag)}"
            f"</ETag><ChecksumCRC32C>{crc}</ChecksumCRC32C></Part>"
            for n, (etag, crc) in enumerate(zip(etags, checksums), start=1))
        xml = (f'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
               f"{body}</CompleteMultipartUpload>").encode()
        headers: tuple[str, ...] = ("Content-Type: application/xml",)
        if create_only:
            headers += ("If-None-Match: *",)
        return self._request(_engine.OP_POST, f"{self.url}?{self.query}", data=xml,
                             headers=headers)

    def completed_etag(self, results: _engine.Results) -> str:
        """Checks CompleteMultipartUpload's reply (a 200 may hold an error)."""
        results.raise_first()
        root = s3_client.parse_xml(bytes(results.views[0]), self.parsed.raw)
        results.free()
        etag = s3_client.text(root, "ETag")
        if not root.tag.endswith("CompleteMultipartUploadResult") or not etag:
            raise StorageIOError(f"CompleteMultipartUpload answered 200 without a result "
                                 f"(<{root.tag}>): {self.parsed.raw}", uri=self.parsed.raw,
                                 code="MalformedReply")
        return etag

    def abort_request(self) -> Request:
        return self._request(_engine.OP_DELETE, f"{self.url}?{self.query}")


def _steps(parsed: ParsedURI, data: Any, headers: tuple, create_only: bool) -> Steps:
    upload = Upload(parsed)
    view = memoryview(data).cast("B")
    size = len(view)
    part = part_size_for(size)
    upload.take_upload_id((yield [upload.start_request(headers)]))
    try:
        slices = [view[offset:offset + part] for offset in range(0, size, part)] or [view[:0]]
        checksums = [crc32c_b64(piece) for piece in slices]
        etags = upload.part_etags((yield [upload.part_request(n, piece, crc) for n, (piece, crc)
                                          in enumerate(zip(slices, checksums), start=1)]), 1)
        return upload.completed_etag(
            (yield [upload.complete_request(etags, checksums, create_only)]))
    except GeneratorExit:
        raise  # abandoned by its driver: nothing may be yielded any more
    except BaseException:
        # Abort so the parts stop costing storage; a failed abort is logged
        # by the caller's error, not hidden: the original error wins.
        abort = yield [upload.abort_request()]
        abort.free()
        raise


def upload(parsed: ParsedURI, data: Any, headers: tuple = (), create_only: bool = False,
           max_in_flight: int = 16) -> str:
    """Uploads ``data`` to ``parsed`` in parts; returns the ETag."""
    return drive(_steps(parsed, data, headers, create_only), max_in_flight)


async def upload_async(parsed: ParsedURI, data: Any, headers: tuple = (),
                       create_only: bool = False, max_in_flight: int = 16) -> str:
    """:func:`upload` for an event loop."""
    return await drive_async(_steps(parsed, data, headers, create_only), max_in_flight)


__all__ = ["upload", "upload_async", "threshold", "part_size_for", "S3dlioError"]
