"""cat and rm."""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Optional

import s3dlio

from . import uris
from .output import show_progress
from .progress import bar

#: ``cat`` reads in ranges of this size, so memory stays flat for any object.
CAT_CHUNK = 8 << 20


def cmd_cat(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    for text in args.uris:
        _cat_one(uris.from_arg(text, local_ok=False), args.offset, args.length, out)
    out.flush()
    return 0


def _cat_one(uri: str, offset: int, length: Optional[int], out: BinaryIO) -> None:
    """Ranged reads until a short one: no ``stat`` first, one request for an
    object under ``CAT_CHUNK``."""
    remaining = length
    while remaining is None or remaining > 0:
        want = CAT_CHUNK if remaining is None else min(CAT_CHUNK, remaining)
        with s3dlio.get_range(uri, offset, want) as view:
            out.write(view)
            got = len(view)
        offset += got
        if remaining is not None:
            remaining -= got
        if got < want:
            return


def cmd_rm(args: argparse.Namespace) -> int:
    uri = uris.from_arg(args.uri, local_ok=False)
    if getattr(args, "ranks", False):
        return _rm_ranks(args, uri)
    if args.pattern is None:
        s3dlio.delete(uri, recursive=args.recursive)
        return 0
    if not args.recursive:
        raise s3dlio.InvalidArgumentError("--pattern needs -r")
    # delete() takes no pattern: list the matches, then delete each one.
    targets = [u for u in s3dlio.list(uri, recursive=True, pattern=args.pattern)
               if not u.endswith("/")]
    with bar(show_progress(args), len(targets), "rm") as progress, \
            ThreadPoolExecutor(max_workers=args.max_in_flight) as pool:
        for _ in pool.map(s3dlio.delete, targets):
            progress.update(1)
    return 0


def _rm_ranks(args: argparse.Namespace, uri: str) -> int:
    """rm -r --ranks: every rank lists the same objects and deletes its
    share; rank 0 reports the job's totals; any failure fails every rank."""
    from s3dlio import ranks
    if not args.recursive:
        raise s3dlio.InvalidArgumentError("--ranks needs -r")
    where = ranks.world()
    # One listing for the whole job, made before anyone deletes: ranks that
    # listed on their own while others deleted would see different lists.
    targets = ranks.listed_once(where, lambda: sorted(
        u for u in s3dlio.list(uri, recursive=True, pattern=args.pattern)
        if not u.endswith("/")))

    def work(mine: list[str]) -> tuple[int, int, list[str]]:
        errors: list[str] = []

        def remove(target: str) -> None:
            try:
                s3dlio.delete(target)
            except s3dlio.S3dlioError as exc:
                errors.append(f"{target}: {exc}")

        with ThreadPoolExecutor(max_workers=args.max_in_flight) as pool:
            list(pool.map(remove, mine))
        return len(mine) - len(errors), 0, errors

    job = ranks.run_share(where, targets, work)
    if where.rank == 0:
        print(f"removed {job['objects']} objects across {job['world_size']} ranks in "
              f"{job['seconds']:.2f} s", file=sys.stderr)
        for error in job["errors"]:
            print(f"s3dlio: error: {error}", file=sys.stderr)
    return 1 if job["errors"] else 0
