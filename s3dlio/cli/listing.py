"""ls and stat."""
from __future__ import annotations

import argparse
from typing import Any, Optional

import s3dlio

from . import uris
from .output import emit_json, show_progress
from .progress import bar
from .sizes import human_size

#: ``ls -l`` stats objects in batches of this many (``stat_many``), because
#: ``s3dlio.list`` returns names only.
STAT_BATCH = 1000
STAT_IN_FLIGHT = 64


def _long_entries(args: argparse.Namespace, listed: list[str]) -> list[dict[str, Any]]:
    objects = [u for u in listed if not u.endswith("/")]
    stats: dict[str, dict[str, Any]] = {}
    with bar(show_progress(args), len(objects), "stat") as progress:
        for start in range(0, len(objects), STAT_BATCH):
            chunk = objects[start:start + STAT_BATCH]
            for uri, info in zip(chunk, s3dlio.stat_many(chunk, max_in_flight=STAT_IN_FLIGHT)):
                stats[uri] = info
            progress.update(len(chunk))
    return [{"uri": u, "dir": True} if u.endswith("/") else {"uri": u, **stats[u]}
            for u in listed]


def _size_text(size: Optional[int], human: bool) -> str:
    if size is None:
        return "DIR"
    return human_size(size) if human else str(size)


def cmd_ls(args: argparse.Namespace) -> int:
    listed = s3dlio.list(uris.from_arg(args.uri, local_ok=False), recursive=args.recursive,
                         pattern=args.pattern)
    if args.count:
        print(len(listed))
        return 0
    if not args.long:
        if args.json:
            emit_json(listed)
        else:
            for uri in listed:
                print(uri)
        return 0
    entries = _long_entries(args, listed)
    if args.json:
        emit_json(entries)
        return 0
    for entry in entries:
        size = _size_text(entry.get("size"), args.human)
        modified = entry.get("last_modified") or ""
        print(f"{size:>12}  {modified:<27}  {entry['uri']}")
    return 0


def cmd_stat(args: argparse.Namespace) -> int:
    info = s3dlio.stat(uris.from_arg(args.uri, local_ok=False))
    if args.json:
        emit_json(info)
        return 0
    width = max(len(key) for key in info)
    for key, value in info.items():
        shown = "-" if value is None else value
        if key == "size":
            shown = f"{value} ({human_size(value)})"
        print(f"{key + ':':<{width + 1}} {shown}")
    return 0
