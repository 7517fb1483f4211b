"""cp, get, put, upload and download: argument handling around the copy
engine (copy.py)."""
from __future__ import annotations

import argparse
import sys
import time

import s3dlio

from . import uris
from .copy import Pair, Totals, copy_many, copy_one, plan_tree, target_for
from .output import emit_json, show_progress, summary


def _invalid(message: str) -> s3dlio.InvalidArgumentError:
    return s3dlio.InvalidArgumentError(message)


def _finish(args: argparse.Namespace, verb: str, totals: Totals, started: float) -> int:
    seconds = time.perf_counter() - started
    if args.json:
        emit_json({"objects": totals.objects, "bytes": totals.bytes,
                   "seconds": round(seconds, 6), "destinations": totals.destinations})
    else:
        summary(args, verb, totals.objects, totals.bytes, seconds)
    return 0


def _single(args: argparse.Namespace, src: str, dst: str) -> int:
    started = time.perf_counter()
    target = target_for(src, dst)
    totals = Totals()
    totals.add(target, copy_one(src, target, show_progress(args)))
    return _finish(args, "copied", totals, started)


def _tree(args: argparse.Namespace, pairs: list[Pair]) -> int:
    if getattr(args, "ranks", False):
        return _tree_ranks(args, pairs)
    started = time.perf_counter()
    totals = copy_many(pairs, args.max_in_flight, show_progress(args))
    return _finish(args, "copied", totals, started)


def _tree_ranks(args: argparse.Namespace, pairs: list[Pair]) -> int:
    """This rank's share of the sorted pairs; the ranks' totals combined
    through MPI; rank 0 reports; every rank exits non-zero if any failed."""
    from s3dlio import ranks
    where = ranks.world()

    def work(mine: list[Pair]) -> tuple[int, int, list[str]]:
        try:
            totals = copy_many(mine, args.max_in_flight, False)
        except s3dlio.S3dlioError as exc:
            return 0, 0, [str(exc)]
        return totals.objects, totals.bytes, []

    job = ranks.run_share(where, sorted(pairs), work)
    if where.rank == 0:
        if args.json:
            emit_json({k: job[k] for k in ("ranks", "world_size", "objects", "bytes", "errors",
                                           "seconds", "throughput_mb_s")})
        else:
            summary(args, f"copied ({job['world_size']} ranks)", job["objects"], job["bytes"],
                    job["seconds"])
            for error in job["errors"]:
                print(f"s3dlio: error: {error}", file=sys.stderr)
    return 1 if job["errors"] else 0


def cmd_cp(args: argparse.Namespace) -> int:
    src = uris.from_arg(args.src, local_ok=True)
    dst = uris.from_arg(args.dst, local_ok=True)
    if args.recursive:
        return _tree(args, plan_tree(src, dst, args.pattern))
    if args.pattern is not None:
        raise _invalid("--pattern needs -r")
    return _single(args, src, dst)


def cmd_get(args: argparse.Namespace) -> int:
    dst = uris.from_arg(args.dest, local_ok=True)
    if not uris.is_local(dst):
        raise _invalid(f"get writes to a local path, not {args.dest!r} (use cp)")
    return _single(args, uris.from_arg(args.uri, local_ok=False), dst)


def cmd_put(args: argparse.Namespace) -> int:
    dst = uris.from_arg(args.uri, local_ok=False)
    if args.src == "-":
        if dst.endswith("/"):
            raise _invalid("put - needs a full object URI, not a prefix")
        started = time.perf_counter()
        data = sys.stdin.buffer.read()
        s3dlio.put(dst, data)
        totals = Totals()
        totals.add(dst, len(data))
        return _finish(args, "copied", totals, started)
    src = uris.from_arg(args.src, local_ok=True)
    if not uris.is_local(src):
        raise _invalid(f"put reads a local file, not {args.src!r} (use cp)")
    return _single(args, src, dst)


def cmd_upload(args: argparse.Namespace) -> int:
    dst = uris.from_arg(args.dest, local_ok=False)
    pairs: list[Pair] = []
    for text in args.sources:
        src = uris.from_arg(text, local_ok=True)
        if not uris.is_local(src):
            raise _invalid(f"upload reads local files, not {text!r} (use cp -r)")
        pairs.extend(plan_tree(src, dst, args.pattern))
    return _tree(args, pairs)


def cmd_download(args: argparse.Namespace) -> int:
    dst = uris.from_arg(args.dest, local_ok=True)
    if not uris.is_local(dst):
        raise _invalid(f"download writes to a local directory, not {args.dest!r} (use cp -r)")
    return _tree(args, plan_tree(uris.from_arg(args.src, local_ok=False), uris.as_directory(dst),
                                 args.pattern))
