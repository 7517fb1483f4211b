"""Bulk copies between a local directory and any URI prefix.  Work moves in
windows of ``max_in_flight`` objects, so memory stays bounded by the window,
not by the size of the tree."""
from __future__ import annotations

import os
from typing import Optional

from . import api
from ._local import match_pattern
from .errors import NotFoundError
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
           max_in_flight: int = 32, recursive: bool = True) -> list[str]:
    """Copies files under ``local_dir`` that match the glob ``pattern`` to
    ``remote_uri`` (a directory-like URI; keys are appended), keeping
    relative paths.  Returns the
    destination URIs, sorted."""
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
    return _copy(pairs, max_in_flight)


def download(remote_uri: str, local_dir: str, pattern: Optional[str] = "*",
             max_in_flight: int = 64, recursive: bool = True) -> list[str]:
    """Copies the objects that :func:`s3dlio.list` selects for ``remote_uri``
    and that match ``pattern`` into ``local_dir``, keeping their paths
    relative to the listed directory.  Returns
    the local file URIs written, sorted."""
    root = _local_dir(local_dir)
    prefix = parse_uri(remote_uri, require_key=False)
    listing = api.list(prefix.raw, recursive=recursive, pattern=pattern)
    cut = api.relative_base(prefix)
    pairs = [(src, f"file://{_join(root, src[len(cut):])}") for src in listing
             if not src.endswith("/")]
    return _copy(pairs, max_in_flight)


def _copy(pairs: list[tuple[str, str]], max_in_flight: int) -> list[str]:
    window = max(1, max_in_flight)
    written: list[str] = []
    for start in range(0, len(pairs), window):
        chunk = pairs[start:start + window]
        fetched = api.get_many([src for src, _ in chunk], max_in_flight=window)
        api.put_many([(dst, view) for (_, dst), (_, view) in zip(chunk, fetched)],
                     max_in_flight=window)
        for _, view in fetched:
            view.release()
        written.extend(dst for _, dst in chunk)
    return sorted(written)
