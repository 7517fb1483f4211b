"""Bulk copies between a local directory and any URI prefix.  Work moves in
windows of ``max_in_flight`` objects, so memory stays bounded by the window,
not by the size of the tree."""
from __future__ import annotations

import os
import sys
from typing import Optional

from . import api
from ._local import match_pattern
from .errors import NotFoundError, S3dlioError, StorageIOError
from .uri import parse_uri


def _local_dir(path_or_uri: str) -> str:
    if "://" in path_or_uri:
        parsed = parse_uri(path_or_uri, require_key=False)
        if not parsed.is_local:
            raise ValueError(f"expected a local directory, got {path_or_uri!r}")
        return parsed.path or "/"
    return os.path.abspath(path_or_uri)


def _join(prefix: str, relative: str) -> str:
    return prefix + relative if prefix.endswith("/") else f"{prefix}/{relative}"


def upload(local_dir: str, remote_uri: str, pattern: Optional[str] = "*",
           max_in_flight: int = 32, recursive: bool = True, *, ranks: bool = False) -> list[str]:
    """Copies files under ``local_dir`` that match the glob ``pattern`` to
    ``remote_uri`` (a directory-like URI; keys are appended), keeping
    relative paths.  Returns the destination URIs, sorted.  ``ranks=True``
    splits the files across the ranks of an MPI job (see :func:`_copy`)."""
    root = _local_dir(local_dir)
    if not os.path.isdir(root):
        raise NotFoundError(f"not a directory: {local_dir}", uri=local_dir)
    parse_uri(remote_uri, require_key=False)
    sources = api.list(f"file://{root.rstrip('/')}/", recursive=recursive)
    pairs = []
    base = f"file://{root.rstrip('/')}/"
    for src in sources:
        relative = src[len(base):]
        if relative.endswith("/") or not match_pattern(relative, pattern):
            continue
        pairs.append((src, _join(remote_uri, relative)))
    return _copy(pairs, max_in_flight, ranks)


def download(remote_uri: str, local_dir: str, pattern: Optional[str] = "*",
             max_in_flight: int = 64, recursive: bool = True, *,
             ranks: bool = False) -> list[str]:
    """Copies the objects that :func:`s3dlio.list` selects for ``remote_uri``
    and that match ``pattern`` into ``local_dir``, keeping their paths
    relative to the listed directory.  Returns the local file URIs written,
    sorted.  ``ranks=True`` splits the objects across the ranks of an MPI
    job (see :func:`_copy`)."""
    root = _local_dir(local_dir)
    prefix = parse_uri(remote_uri, require_key=False)
    listing = api.list(prefix.raw, recursive=recursive, pattern=pattern)
    cut = api.relative_base(prefix)
    pairs = [(src, f"file://{_join(root, src[len(cut):])}") for src in listing
             if not src.endswith("/")]
    return _copy(pairs, max_in_flight, ranks)


def _copy(pairs: list[tuple[str, str]], max_in_flight: int, ranks: bool = False) -> list[str]:
    """Copies ``pairs``.  With ``ranks``, this rank copies its share of the
    sorted pairs (every rank lists the same tree), failures are collected
    rather than raised at once, the ranks' reports are combined, rank 0
    prints the totals on stderr, and every rank raises if any rank failed
    -- so the job exits non-zero with the failures listed."""
    if not ranks:
        return _copy_window(sorted(pairs), max_in_flight, None)[0]
    from . import ranks as _ranks
    where = _ranks.world()
    written: list[str] = []

    def work(mine: list[tuple[str, str]]) -> tuple[int, int, list[str]]:
        errors: list[str] = []
        done, moved = _copy_window(mine, max_in_flight, errors)
        written.extend(done)
        return len(done), moved, errors

    totals = _ranks.run_share(where, sorted(pairs), work)
    if where.rank == 0:
        print(f"s3dlio: {totals['objects']} objects, {totals['bytes']} bytes, "
              f"{len(totals['errors'])} errors across {totals['world_size']} ranks in "
              f"{totals['seconds']:.2f} s ({totals['throughput_mb_s']:.1f} MB/s)",
              file=sys.stderr)
    if totals["errors"]:
        raise StorageIOError(f"{len(totals['errors'])} object(s) failed across "
                             f"{totals['world_size']} ranks: " + "; ".join(totals["errors"][:5]),
                             code="RankFailures")
    return written


def _copy_window(pairs: list[tuple[str, str]], max_in_flight: int,
                 errors: Optional[list[str]]) -> tuple[list[str], int]:
    """Copies in windows of ``max_in_flight``; returns the destinations
    written (sorted) and their bytes.  With ``errors`` (a list), failures
    are appended there and the rest goes on; else the first is raised."""
    window = max(1, max_in_flight)
    written: list[str] = []
    moved = 0
    for start in range(0, len(pairs), window):
        chunk = pairs[start:start + window]
        fetched = api.get_many([src for src, _ in chunk], max_in_flight=window,
                               return_exceptions=errors is not None)
        good = []
        for (src, dst), (_, got) in zip(chunk, fetched):
            if isinstance(got, Exception):
                assert errors is not None
                errors.append(f"{src}: {got}")
            else:
                good.append((dst, got))
        try:
            try:
                api.put_many(good, max_in_flight=window)
                done = good
            except S3dlioError:
                if errors is None:
                    raise
                done = []
                for dst, view in good:  # rare: find which ones failed
                    try:
                        api.put(dst, view)
                        done.append((dst, view))
                    except S3dlioError as exc:
                        errors.append(f"{dst}: {exc}")
            written.extend(dst for dst, _ in done)
            moved += sum(len(view) for _, view in done)
        finally:
            for _, view in good:
                view.release()
    return sorted(written), moved
