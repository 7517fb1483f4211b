"""File objects over objects: ``s3dlio.open(uri, "rb")`` reads with
parallel read-ahead through ranged GETs; ``open(uri, "wb")`` streams into
a writer.

The read side is a raw stream (``ObjectReader``) that fetches the object in
blocks of ``block_size`` bytes, keeping up to ``read_ahead`` blocks in
flight ahead of the position, wrapped in ``io.BufferedReader`` for
``readline``, iteration and small reads.  Memory: about ``(read_ahead + 1)
x block_size``."""
from __future__ import annotations

import builtins
import copy
import io
import threading
from collections import OrderedDict
from typing import IO, Any, Optional

from . import _compress, _engine
from .errors import InvalidArgumentError, StorageIOError, UnsupportedError
from .uri import parse_uri

MiB = 1 << 20


class PositionedReader(io.RawIOBase):
    """A read-only raw stream that keeps its own position over ``length()``
    bytes: readable, seekable, ``tell``/``seek`` as files do (an unknown
    ``whence`` is a ValueError; so is a position before the start, unless
    ``clamp_at_start``, which stops there as BytesIO does).  Subclasses give
    ``length`` and ``readinto``."""

    _pos = 0
    clamp_at_start = False

    def length(self) -> int:
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            base = 0
        elif whence == io.SEEK_CUR:
            base = self._pos
        elif whence == io.SEEK_END:
            base = self.length()
        else:
            raise ValueError(f"invalid whence {whence!r}")
        target = base + offset
        if target < 0:
            if not self.clamp_at_start:
                raise ValueError(f"negative seek position {target}")
            target = 0
        self._pos = target
        return target


class ObjectReader(PositionedReader):
    """A seekable, read-only raw stream over one object (see the module
    doc).  The object's size is read once, when it is opened."""

    def __init__(self, uri: str, block_size: int = 8 * MiB, read_ahead: int = 4) -> None:
        super().__init__()
        from . import api
        if not isinstance(block_size, int) or block_size < 1:
            raise InvalidArgumentError(f"block_size must be a positive int, not {block_size!r}",
                                       uri=uri)
        if not isinstance(read_ahead, int) or not 0 <= read_ahead <= 64:
            raise InvalidArgumentError(f"read_ahead must be 0 to 64, not {read_ahead!r}",
                                       uri=uri)
        self.uri = uri
        self.size = int(api.stat(uri)["size"])
        self._block = block_size
        self._ahead = read_ahead
        self._pos = 0
        self._blocks: "OrderedDict[int, Any]" = OrderedDict()  # index -> Pending or bytes
        # Reads and close may come from different threads (the buffered
        # wrapper serialises them; this guards direct use of the raw stream).
        self._lock = threading.Lock()

    # -- io.RawIOBase --------------------------------------------------------
    def length(self) -> int:
        return self.size

    def readinto(self, buffer: Any) -> int:
        with self._lock:
            return self._readinto(buffer)

    def _readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        out = memoryview(buffer).cast("B")
        done = 0
        while done < len(out) and self._pos < self.size:
            index, within = divmod(self._pos, self._block)
            block = self._take(index)
            n = min(len(out) - done, len(block) - within)
            out[done:done + n] = block[within:within + n]
            done += n
            self._pos += n
        return done

    def close(self) -> None:
        with self._lock:
            for value in self._blocks.values():
                if isinstance(value, _engine.Pending):
                    value.cancel()
            self._blocks.clear()
            super().close()

    # -- blocks --------------------------------------------------------------
    def _request(self, index: int) -> Any:
        from . import api
        offset = index * self._block
        length = min(self._block, self.size - offset)
        return _engine.Pending([api._range_request(self.uri, offset, length)], 1)

    def _take(self, index: int) -> memoryview:
        # Keep the next read_ahead blocks in flight; drop blocks behind us.
        last = (self.size - 1) // self._block
        for ahead in range(index, min(index + self._ahead, last) + 1):
            if ahead not in self._blocks:
                self._blocks[ahead] = self._request(ahead)
        for old in [i for i in self._blocks if i < index or i > index + self._ahead]:
            value = self._blocks.pop(old)
            if isinstance(value, _engine.Pending):
                value.cancel()
        value = self._blocks[index]
        if isinstance(value, _engine.Pending):
            del self._blocks[index]  # a failed fetch is asked again next time
            results = value.finish()
            try:
                results.raise_first()
                value = bytes(results.views[0])
            finally:
                for view in results.views:
                    view.release()
                results.free()
            expected = min(self._block, self.size - index * self._block)
            if len(value) != expected:
                # The object changed size since it was opened: never spin or
                # hand out a mix of two versions.
                raise StorageIOError(f"object changed while open: block {index} has "
                                     f"{len(value)} bytes, expected {expected}: {self.uri}",
                                     uri=self.uri, code="SizeChanged")
            self._blocks[index] = value
        return memoryview(value)


class _WriterFile(io.RawIOBase):
    """``open(uri, "wb")``: a file object over a streaming writer; ``close``
    finalizes, an exception inside ``with`` aborts."""

    def __init__(self, writer: Any) -> None:
        super().__init__()
        self.writer = writer
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        written = int(self.writer.write(data))
        self._position += written
        return written

    def tell(self) -> int:
        """Bytes written so far (before compression): the stream only goes
        forward, but writers that record offsets (torch DCP) ask for it."""
        return self._position

    def close(self) -> None:
        if not self.closed:
            try:
                self.writer.close()
            finally:
                super().close()

    def abort(self) -> None:
        self.writer.abort()
        super().close()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        # Dropped without close(): abort, never publish half an object.
        if not self.closed:
            try:
                self.abort()
            except Exception:
                pass


def _kind_by_suffix(uri: str) -> Optional[str]:
    for suffix, kind in _compress.SUFFIXES.items():
        if uri.endswith(suffix):
            return kind
    return None


def open(uri: str, mode: str = "rb", *, block_size: int = 8 * MiB, read_ahead: int = 4,
         compression: Optional[str] = None, options: Any = None) -> IO[bytes]:
    """Opens an object as a binary file object.

    ``"rb"``: buffered and seekable, with ``read_ahead`` ranged GETs of
    ``block_size`` in flight (a ``file://`` URI opens the file itself).
    ``compression="auto"`` decompresses by suffix (.zst, .gz, .lz4), or name
    the kind; the stream is then read forward only.

    ``"wb"``: a streaming writer (``options``: a PyWriterOptions, copied);
    ``compression="auto"`` compresses by suffix.  Closing finalizes; an
    exception inside a ``with`` block aborts and leaves nothing behind.
    Binary modes only.  Not thread-safe: one file object per thread."""
    if mode not in ("rb", "wb"):
        raise InvalidArgumentError(f"mode must be 'rb' or 'wb' (binary only), not {mode!r}",
                                   uri=uri if isinstance(uri, str) else None)
    kind = _kind_by_suffix(uri) if compression == "auto" else compression
    if kind not in (None, "none", *_compress.KINDS):
        raise InvalidArgumentError(f"unknown compression {compression!r}", uri=uri)
    if mode.startswith("w"):
        from .writer import PyObjectWriter, PyWriterOptions
        options = copy.copy(options) if options is not None else PyWriterOptions()
        if kind not in (None, "none"):
            options.compression = kind
        # Not wrapped in io.BufferedWriter: the writer buffers into its parts
        # already, and a buffered wrapper would flush into it when dropped.
        return _WriterFile(PyObjectWriter(uri, options))  # type: ignore[return-value]
    parsed = parse_uri(uri)
    if parsed.scheme == "file":
        try:
            raw: Any = builtins.open(parsed.path or "/", "rb")
        except OSError as exc:
            from .errors import error_from_oserror
            raise error_from_oserror(exc, uri) from exc
    else:
        raw = io.BufferedReader(ObjectReader(uri, block_size, read_ahead),
                                buffer_size=min(block_size, 1 * MiB))
    if kind in (None, "none"):
        return raw  # type: ignore[no-any-return]
    try:
        return _decompressing(raw, kind)
    except ImportError as exc:
        raw.close()
        raise UnsupportedError(f"{kind} decompression needs its package ({exc.name})",
                               uri=uri) from None


def _decompressing(raw: Any, kind: str) -> IO[bytes]:
    if kind == "zstd":
        import zstandard
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw,  # type: ignore[arg-type]
                                                                          closefd=True))
    if kind == "gzip":
        import gzip
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    import lz4.frame
    return lz4.frame.LZ4FrameFile(raw, mode="rb")  # type: ignore[no-any-return]
