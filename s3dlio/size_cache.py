"""Sizes (and ETags) of objects seen in listings, stats and writes, so a
later GET knows the size before asking: large objects are then fetched as
parallel ranges into one buffer, pinned to the same version with If-Match.

Bounded (S3DLIO_SIZE_CACHE_MAX_ENTRIES, default 1,000,000, least recently
used dropped first), per process, and invalidated by this process's own
writes and deletes.  Another writer can change an object behind the cache;
If-Match turns that into a clean retry with a fresh size."""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Iterable, Optional, Tuple

_lock = threading.Lock()
_entries: "OrderedDict[str, tuple[int, Optional[str]]]" = OrderedDict()


def _limit() -> int:
    return int(os.environ.get("S3DLIO_SIZE_CACHE_MAX_ENTRIES", "1000000"), 0)


def remember(uri: str, size: int, etag: Optional[str] = None) -> None:
    remember_many([(uri, size, etag)])


def remember_many(entries: Iterable[Tuple[str, int, Optional[str]]]) -> None:
    """``remember`` for a listing page at a time: one lock, one limit read."""
    limit = _limit()
    with _lock:
        for uri, size, etag in entries:
            _entries[uri] = (size, etag or None)
            _entries.move_to_end(uri)
        while len(_entries) > limit:
            _entries.popitem(last=False)


def lookup(uri: str) -> Optional[tuple[int, Optional[str]]]:
    with _lock:
        entry = _entries.get(uri)
        if entry is not None:
            _entries.move_to_end(uri)
        return entry


def forget(uri: str) -> None:
    with _lock:
        _entries.pop(uri, None)
