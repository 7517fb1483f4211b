"""The copy engine behind cp, get, put, upload and download.

One object: a ``file://`` source is memory-mapped and handed to ``put``
(no copy in memory); an object of ``STREAM_THRESHOLD`` or more going to a
``file://`` target is fetched in ranges, ``RANGES_IN_FLIGHT`` at a time,
into a temporary file that is renamed over the target; anything else is
``get`` then ``put``, so a remote-to-remote copy holds the whole object.

Many objects: windows of ``max_in_flight`` pairs, each one ``get_many``
(``file://`` sources mapped instead) and one ``put_many``, as
``s3dlio.upload`` does; memory is bounded by one window's objects."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import fnmatch
import mmap
import os
import secrets
import stat as stat_module
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import s3dlio

from . import uris
from .progress import bar, byte_bar

STREAM_THRESHOLD = 256 << 20
RANGE_CHUNK = 32 << 20
RANGES_IN_FLIGHT = 8
#: The library's marker for in-progress writes: listings skip such names.
_TEMP_MARKER = ".s3dlio-tmp."

Pair = tuple[str, str]


@dataclass
class Totals:
    objects: int = 0
    bytes: int = 0
    destinations: list[str] = field(default_factory=list)

    def add(self, dst: str, size: int) -> None:
        self.objects += 1
        self.bytes += size
        self.destinations.append(dst)


@contextlib.contextmanager
def mapped(path: str) -> Iterator[Any]:
    """A read-only map of the regular file ``path`` (``b""`` when empty)."""
    info = os.stat(path)
    if stat_module.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory (copy it with -r)", path)
    if not stat_module.S_ISREG(info.st_mode):
        raise s3dlio.UnsupportedError(f"not a regular file: {path}", uri=path)
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            yield b""
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            yield data


def target_for(src: str, dst: str) -> str:
    """``dst`` itself, or ``dst/<name of src>`` when ``dst`` is a directory."""
    return uris.child(dst, uris.basename(src)) if uris.names_directory(dst) else dst


def copy_one(src: str, dst: str, show_progress: bool) -> int:
    """Copies one object; returns its size."""
    path = uris.local_path(src)
    if path is not None:
        with mapped(path) as data:
            s3dlio.put(dst, data)
            return len(data)
    dst_path = uris.local_path(dst)
    if dst_path is not None:
        size: int = s3dlio.stat(src)["size"]
        if size >= STREAM_THRESHOLD:
            _stream_to_file(src, dst_path, size, show_progress)
            return size
    view = s3dlio.get(src)
    with view:
        s3dlio.put(dst, view)
        return len(view)


def _stream_to_file(src: str, path: str, size: int, show_progress: bool) -> None:
    """Ranged reads into ``.<name>.s3dlio-tmp.<hex>``, then a rename: readers
    see the old file or the whole new one, as with ``put``."""
    directory, name = os.path.split(path)
    os.makedirs(directory or "/", exist_ok=True)
    temp = os.path.join(directory, f".{name}{_TEMP_MARKER}{secrets.token_hex(6)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with byte_bar(show_progress, size, uris.basename(src)) as progress:
            asyncio.run(_fetch_ranges(src, fd, size, progress.update))
        os.close(fd)
        fd = -1
        os.replace(temp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


async def _fetch_ranges(src: str, fd: int, size: int, advance: Callable[[int], Any]) -> None:
    offsets = iter(range(0, size, RANGE_CHUNK))

    async def worker() -> None:
        for offset in offsets:  # one shared iterator: each range is taken once
            expected = min(RANGE_CHUNK, size - offset)
            view = await s3dlio.get_range_async(src, offset, expected)
            with view:
                if len(view) != expected:
                    raise s3dlio.StorageIOError(
                        f"object changed size while it was copied: {src}", uri=src)
                os.pwrite(fd, view, offset)
            advance(expected)

    await asyncio.gather(*(worker() for _ in range(RANGES_IN_FLIGHT)))


def copy_many(pairs: Sequence[Pair], max_in_flight: int, show_progress: bool,
              desc: str = "copy") -> Totals:
    """Copies ``(src, dst)`` pairs in windows of ``max_in_flight``."""
    totals = Totals()
    with bar(show_progress, len(pairs), desc) as progress:
        for start in range(0, len(pairs), max_in_flight):
            window = pairs[start:start + max_in_flight]
            with contextlib.ExitStack() as held:
                sources = _read_window(held, [src for src, _ in window], max_in_flight)
                s3dlio.put_many([(dst, data) for (_, dst), data in zip(window, sources)],
                                max_in_flight=max_in_flight)
                for (_, dst), data in zip(window, sources):
                    totals.add(dst, len(data))
            progress.update(len(window))
            progress.set_postfix_str(f"{totals.bytes / 1e6:.1f} MB", refresh=False)
    return totals


def _read_window(held: contextlib.ExitStack, sources: list[str], max_in_flight: int) -> list[Any]:
    """The data of each source, in order: local files mapped, the rest read
    with one ``get_many``; ``held`` releases all of it."""
    data: list[Any] = [None] * len(sources)
    remote = []
    for i, src in enumerate(sources):
        path = uris.local_path(src)
        if path is not None:
            data[i] = held.enter_context(mapped(path))
        else:
            remote.append(i)
    fetched = s3dlio.get_many([sources[i] for i in remote], max_in_flight=max_in_flight)
    for i, (_, view) in zip(remote, fetched):
        held.callback(view.release)
        data[i] = view
    return data


def plan_tree(src: str, dst: str, pattern: Optional[str]) -> list[Pair]:
    """Pairs for a recursive copy: every object under ``src/`` that matches
    ``pattern`` goes to ``dst/<its path relative to src/>``.  When nothing
    lies under ``src/`` and ``src`` names one object, that object goes to
    ``dst/<its name>``.  Raises ``NotFoundError`` when nothing is selected."""
    prefix = uris.as_directory(src)
    base = uris.canonical(prefix)
    try:
        listed = s3dlio.list(prefix, recursive=True, pattern=pattern)
    except s3dlio.NotADirectoryError:  # a local file: handled as one object below
        listed = []
    pairs = [(uri, uris.child(dst, uri[len(base):])) for uri in listed
             if uri.startswith(base) and not uri.endswith("/")]
    if pairs:
        return pairs
    name = uris.basename(src)
    if (not src.endswith("/") and (pattern is None or fnmatch.fnmatchcase(name, pattern))
            and s3dlio.exists(src)):
        return [(src, uris.child(dst, name))]
    matching = f" matching {pattern!r}" if pattern is not None else ""
    raise s3dlio.NotFoundError(f"no objects{matching} under {src}", uri=src)
