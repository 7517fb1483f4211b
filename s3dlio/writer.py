"""Streaming writers: objects bigger than memory, written part by part.

A writer fills one part buffer at a time (after optional compression) and
hands each full part to its sink, which uploads it (S3 multipart part, GCS
resumable chunk, Azure block) or writes it into a temporary file, while the
producer fills the next.  Buffers come from a fixed pool of
``max_in_flight + 1``, so memory stays at about ``(max_in_flight + 1) *
part_size`` whatever the object's size.  Nothing appears under the final
name until ``finalize()`` succeeds; ``abort()`` (or an exception inside a
``with`` block) removes every trace: multipart uploads aborted, temporary
files deleted, uncommitted blocks left for the service to discard."""
from __future__ import annotations

import collections
import copy
import mmap
from typing import Any, Deque, Optional

from . import _compress, _sinks
from ._native import ffi, lib
from .errors import InvalidArgumentError, S3dlioError
from .uri import ParsedURI, parse_uri

MiB = 1 << 20


class PyWriterOptions:
    """Writer settings.  Attribute style (``options.compression = "zstd"``)
    and the reference s3dlio's builder style (``with_compression``) both
    work.

    - ``compression``: none (default), zstd, gzip or lz4; the object holds
      one standard stream (``zstd -d``, ``gunzip``, ``lz4 -d`` read it).
      The name is used as given: no suffix is added.
    - ``compression_level``: None for the kind's default (zstd 3, gzip 6, lz4 0).
    - ``chunk_size`` (alias ``part_size``): bytes per part, default 16 MiB;
      raised to each store's minimum (S3 5 MiB; GCS a multiple of 256 KiB;
      direct:// a multiple of 4 KiB).
    - ``max_in_flight``: parts uploading or being written at once (default 4).
    - ``fsync`` (local files: durable before ``finalize`` returns) and
      ``overwrite`` (False: fail with AlreadyExistsError if the name exists).
    """

    def __init__(self, compression: str = "none", compression_level: Optional[int] = None,
                 chunk_size: int = 16 * MiB, max_in_flight: int = 4, fsync: bool = False,
                 overwrite: bool = True) -> None:
        self.compression = compression
        self.compression_level = compression_level
        self.chunk_size = chunk_size
        self.max_in_flight = max_in_flight
        self.fsync = fsync
        self.overwrite = overwrite

    @property
    def part_size(self) -> int:
        return self.chunk_size

    @part_size.setter
    def part_size(self, value: int) -> None:
        self.chunk_size = value

    def with_compression(self, compression_type: str,
                         level: Optional[int] = None) -> "PyWriterOptions":
        self.compression, self.compression_level = compression_type, level
        return self

    def with_buffer_size(self, size: int) -> "PyWriterOptions":
        self.chunk_size = size
        return self

    def with_max_in_flight(self, count: int) -> "PyWriterOptions":
        self.max_in_flight = count
        return self

    def validate(self) -> None:
        _compress.make(self.compression, self.compression_level)  # raises if invalid
        if not isinstance(self.chunk_size, int) or not 1 <= self.chunk_size <= 5 << 30:
            raise InvalidArgumentError(f"chunk_size must be 1 byte to 5 GiB, not "
                                       f"{self.chunk_size!r}", code="InvalidOption")
        if not isinstance(self.max_in_flight, int) or not 1 <= self.max_in_flight <= 64:
            raise InvalidArgumentError(f"max_in_flight must be 1 to 64, not "
                                       f"{self.max_in_flight!r}", code="InvalidOption")
        for name in ("fsync", "overwrite"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidArgumentError(f"{name} must be True or False, not "
                                           f"{getattr(self, name)!r}", code="InvalidOption")

    def __repr__(self) -> str:
        return (f"PyWriterOptions(compression={self.compression!r}, "
                f"compression_level={self.compression_level!r}, chunk_size={self.chunk_size}, "
                f"max_in_flight={self.max_in_flight}, fsync={self.fsync}, "
                f"overwrite={self.overwrite})")


class PyObjectWriter:
    """Writes one object as a stream.  Use ``write`` any number of times,
    then ``finalize`` (or leave a ``with`` block); ``abort`` discards."""

    def __init__(self, uri: str, options: Optional[PyWriterOptions] = None) -> None:
        # A copy: changing the caller's options later must not change a
        # writer already running.
        options = copy.copy(options) if options is not None else PyWriterOptions()
        options.validate()
        self.uri = uri
        self._parsed = parse_uri(uri)
        self._options = options
        self._compressor = _compress.make(options.compression, options.compression_level)
        self._sink = _sinks.for_uri(self._parsed, options)
        self._part = self._sink.part_size(options.chunk_size)
        self._limit = 1 if self._sink.sequential else options.max_in_flight
        self._pool_size = self._limit + 1
        self._allocated = 0
        self._free: list[mmap.mmap] = []
        self._inflight: Deque[tuple[Any, mmap.mmap]] = collections.deque()
        self._current: Optional[mmap.mmap] = None
        self._fill = 0
        self._crc = 0
        self._raw = 0
        self._stored = 0
        self._parts = 0
        self._state = "open"
        self._result: Optional[dict] = None

    # -- the stream ----------------------------------------------------------
    def write(self, data: Any) -> int:
        """Appends ``data`` (any bytes-like object); returns its length.
        Blocks only while ``max_in_flight`` parts are still uploading."""
        self._check_open()
        view = memoryview(data)
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        view = view.cast("B")
        try:
            self._append(self._compressor.compress(view))
        except BaseException:
            self.abort()
            raise
        self._raw += len(view)
        return len(view)

    #: The reference s3dlio's names for write.
    write_chunk = write
    write_owned_bytes = write

    def finalize(self) -> dict:
        """Flushes, uploads the rest and makes the object appear under its
        name.  Returns ``bytes_written`` (given to write), ``compressed_size``
        (stored), ``parts``, ``etag`` (None for files) and ``checksum``
        ("crc32c:<hex>" of the stored bytes).  Any failure aborts."""
        if self._state == "done" and self._result is not None:
            return self._result
        self._check_open()
        try:
            self._append(self._compressor.flush())
            while self._inflight:
                self._collect_oldest()
            tail = memoryview(self._current)[:self._fill] if self._current is not None \
                else memoryview(b"")
            self._crc = lib.s3dl_crc32c(self._crc, ffi.from_buffer(tail), len(tail))
            self._stored += len(tail)
            etag = self._sink.close(tail, self._stored, self._crc, self._parts)
        except BaseException:
            self.abort()
            raise
        self._state = "done"
        self._release_buffers()
        self._result = {
            "uri": self.uri,
            "bytes_written": self._raw,
            "compressed_size": self._stored,
            "parts": max(1, self._parts + (1 if len(tail) or not self._parts else 0)),
            "etag": etag,
            "checksum": f"crc32c:{self._crc:08x}",
        }
        return self._result

    def abort(self) -> None:
        """Discards everything written; nothing appears under the name.
        Safe to call more than once, and after a failure."""
        if self._state != "open":
            return
        self._state = "aborted"
        for job, _buffer in self._inflight:
            self._sink.discard(job)
        self._inflight.clear()
        try:
            self._sink.abort()
        finally:
            self._release_buffers()

    def close(self) -> None:
        """Finalizes (file-object style).  Closing an aborted writer raises:
        nothing was stored, and silence would hide it."""
        if self._state == "aborted":
            self._check_open()
        if self._state == "open":
            self.finalize()

    # -- the reference s3dlio's accessors -------------------------------------
    def bytes_written(self) -> int:
        return self._raw

    def compressed_bytes(self) -> int:
        return self._stored + self._fill

    def checksum(self) -> str:
        return f"crc32c:{self._crc:08x}"

    @property
    def closed(self) -> bool:
        return self._state != "open"

    def __enter__(self) -> "PyObjectWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        # Abandoned without finalize: leave nothing behind.
        if getattr(self, "_state", None) == "open":
            try:
                self.abort()
            except Exception:
                pass

    def __repr__(self) -> str:
        return f"PyObjectWriter({self.uri!r}, state={self._state!r}, parts={self._parts})"

    # -- parts ---------------------------------------------------------------
    def _check_open(self) -> None:
        if self._state != "open":
            raise S3dlioError(f"writer is {self._state}: {self.uri}", uri=self.uri,
                              code="WriterClosed")

    def _append(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        pos, total = 0, len(view)
        while pos < total:
            if self._fill == 0 and total - pos >= self._part and self._sink.borrows:
                pos += self._write_borrowed(view[pos:])
                continue
            if self._current is None:
                self._current = self._take_buffer()
                self._fill = 0
            n = min(self._part - self._fill, total - pos)
            self._current[self._fill:self._fill + n] = view[pos:pos + n]
            self._fill += n
            pos += n
            if self._fill == self._part:
                self._ship_current()

    def _write_borrowed(self, view: memoryview) -> int:
        """Ships the whole parts at the start of ``view`` straight from the
        caller's memory (a local file: ``pwrite`` from it, no copy into a
        part buffer) and waits for them, since the caller may change its
        memory once ``write`` returns.  Returns the bytes consumed."""
        size = len(view) - len(view) % self._part
        self._crc = lib.s3dl_crc32c(self._crc, ffi.from_buffer(view[:size]), size)
        jobs = [self._sink.ship(self._parts + i, view[off:off + self._part], self._stored + off)
                for i, off in enumerate(range(0, size, self._part))]
        self._parts += len(jobs)
        self._stored += size
        for job in jobs:
            self._sink.collect(job)
        return size

    def _ship_current(self) -> None:
        assert self._current is not None
        if self._sink.sequential:
            while self._inflight:  # GCS chunks go one after another
                self._collect_oldest()
        part = memoryview(self._current)[:self._fill]
        self._crc = lib.s3dl_crc32c(self._crc, ffi.from_buffer(part), len(part))
        job = self._sink.ship(self._parts, part, self._stored)
        self._inflight.append((job, self._current))
        self._parts += 1
        self._stored += len(part)
        self._current = None
        self._fill = 0
        while len(self._inflight) > self._limit:
            self._collect_oldest()

    def _collect_oldest(self) -> None:
        job, buffer = self._inflight.popleft()
        self._sink.collect(job)  # may re-send from the buffer (GCS recovery)
        self._free.append(buffer)

    def _take_buffer(self) -> mmap.mmap:
        while not self._free and self._allocated >= self._pool_size and self._inflight:
            self._collect_oldest()
        if self._free:
            return self._free.pop()
        self._allocated += 1
        # Page-aligned private anonymous memory: O_DIRECT can write from it
        # as is, and it is not shmem (whose page faults cost more).
        return mmap.mmap(-1, self._part, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)

    def _release_buffers(self) -> None:
        self._free.clear()
        self._current = None


def create_writer(uri: str, options: Optional[PyWriterOptions] = None) -> PyObjectWriter:
    """A streaming writer for any scheme (s3, gs, az, file, direct)."""
    return PyObjectWriter(uri, options)


def _checked(uri: str, schemes: tuple, what: str) -> str:
    parsed: ParsedURI = parse_uri(uri)
    if parsed.scheme not in schemes:
        raise InvalidArgumentError(f"{what} needs a {' or '.join(s + '://' for s in schemes)} "
                                   f"URI, not {uri}", uri=uri, code="InvalidURI")
    return uri


def create_s3_writer(uri: str, options: Optional[PyWriterOptions] = None) -> PyObjectWriter:
    """A streaming writer to ``s3://`` (multipart upload from the second part on)."""
    return PyObjectWriter(_checked(uri, ("s3",), "create_s3_writer"), options)


def create_gcs_writer(uri: str, options: Optional[PyWriterOptions] = None) -> PyObjectWriter:
    """A streaming writer to ``gs://`` (a resumable upload from the second part on)."""
    return PyObjectWriter(_checked(uri, ("gs",), "create_gcs_writer"), options)


def create_azure_writer(uri: str, options: Optional[PyWriterOptions] = None) -> PyObjectWriter:
    """A streaming writer to ``az://`` (blocks, committed at finalize)."""
    return PyObjectWriter(_checked(uri, ("az",), "create_azure_writer"), options)


def create_filesystem_writer(uri: str,
                             options: Optional[PyWriterOptions] = None) -> PyObjectWriter:
    """A streaming writer to ``file://`` (or a plain absolute path): a
    temporary file renamed into place at finalize."""
    if uri.startswith("/"):
        uri = "file://" + uri
    return PyObjectWriter(_checked(uri, ("file",), "create_filesystem_writer"), options)


def create_direct_filesystem_writer(uri: str,
                                    options: Optional[PyWriterOptions] = None) -> PyObjectWriter:
    """As :func:`create_filesystem_writer`, with O_DIRECT (``direct://``; a
    ``file://`` URI or plain path is taken as the same file)."""
    if uri.startswith("/"):
        uri = "direct://" + uri
    elif uri.startswith("file://"):
        uri = "direct://" + uri[len("file://"):]
    return PyObjectWriter(_checked(uri, ("direct",), "create_direct_filesystem_writer"),
                          options)


__all__ = ["PyWriterOptions", "PyObjectWriter", "create_writer", "create_s3_writer",
           "create_gcs_writer", "create_azure_writer", "create_filesystem_writer",
           "create_direct_filesystem_writer"]
