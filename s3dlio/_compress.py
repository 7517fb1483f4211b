"""Streaming compressors for writers: one interface over zstandard, zlib
(gzip framing) and lz4 frames.  Each produces a stream that the standard
tools read (``zstd -d``, ``gunzip``, ``lz4 -d``).  zstandard, zlib and lz4
release the GIL while they compress."""
from __future__ import annotations

import os
import zlib
from typing import Any, Optional

from .errors import InvalidArgumentError, UnsupportedError

KINDS = ("none", "zstd", "gzip", "lz4")
#: File name suffixes of each kind (readers decompress by suffix).
SUFFIXES = {".zst": "zstd", ".zstd": "zstd", ".gz": "gzip", ".lz4": "lz4"}


class Compressor:
    """``compress(data)`` returns what is ready so far (maybe nothing);
    ``flush()`` ends the stream and returns the rest."""

    def compress(self, data: Any) -> Any:
        return data

    def flush(self) -> bytes:
        return b""


class _Zstd(Compressor):
    def __init__(self, level: int) -> None:
        import zstandard
        # zstd's own worker threads (one per core, at most 4): compression
        # runs beside the producer instead of on its thread.
        workers = min(4, os.cpu_count() or 1)
        self._obj = zstandard.ZstdCompressor(level=level, threads=workers if workers > 1 else 0
                                             ).compressobj()

    def compress(self, data: Any) -> Any:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


class _Gzip(Compressor):
    def __init__(self, level: int) -> None:
        self._obj = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip header and trailer

    def compress(self, data: Any) -> Any:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


class _Lz4(Compressor):
    def __init__(self, level: int) -> None:
        try:
            import lz4.frame
        except ImportError:
            raise UnsupportedError("lz4 compression needs the lz4 package "
                                   "(pip install lz4)") from None
        self._obj = lz4.frame.LZ4FrameCompressor(compression_level=level)
        self._header: Optional[bytes] = self._obj.begin()

    def compress(self, data: Any) -> Any:
        out = self._obj.compress(data)
        if self._header is not None:
            out, self._header = self._header + out, None
        return out

    def flush(self) -> bytes:
        out = self._obj.flush()
        if self._header is not None:
            out, self._header = self._header + out, None
        return out


_DEFAULT_LEVEL = {"zstd": 3, "gzip": 6, "lz4": 0}
_LEVELS = {"zstd": range(-7, 23), "gzip": range(0, 10), "lz4": range(0, 17)}


def make(kind: str, level: Optional[int] = None) -> Compressor:
    """A compressor of ``kind`` (none, zstd, gzip, lz4) at ``level`` (the
    kind's default when None)."""
    if kind == "none":
        return Compressor()
    if kind not in _DEFAULT_LEVEL:
        raise InvalidArgumentError(f"compression must be one of {', '.join(KINDS)}, "
                                   f"not {kind!r}", code="InvalidCompression")
    level = _DEFAULT_LEVEL[kind] if level is None else level
    if not isinstance(level, int) or isinstance(level, bool) or level not in _LEVELS[kind]:
        allowed = _LEVELS[kind]
        raise InvalidArgumentError(f"{kind} compression level must be an int from "
                                   f"{allowed.start} to {allowed.stop - 1}, not {level!r}",
                                   code="InvalidCompression")
    return {"zstd": _Zstd, "gzip": _Gzip, "lz4": _Lz4}[kind](level)
