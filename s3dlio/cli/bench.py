"""bench: PUT then GET ``count`` synthetic objects of ``size`` bytes with
``concurrency`` requests in flight, and report throughput and latency.

Each request is its own ``put_async``/``get_async`` call (one native batch),
issued by ``concurrency`` asyncio workers that each keep one request in
flight; a request's latency is the time from its call to its completion,
as the application sees it.  The phase's wall time, from the first call to
the last completion, gives MB/s (10**6 bytes) and ops/s."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import time
from typing import Any, Awaitable, Callable, Sequence

import s3dlio

from . import uris
from .output import emit_json, show_progress
from .progress import bar
from .sizes import human_size

PERCENTILES = (50, 90, 99)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def phase_report(nbytes: int, seconds: float, latencies: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies)
    ops = len(ordered)
    return {
        "ops": ops,
        "bytes": nbytes,
        "seconds": round(seconds, 6),
        "mb_per_s": round(nbytes / seconds / 1e6, 3) if seconds > 0 else 0.0,
        "ops_per_s": round(ops / seconds, 3) if seconds > 0 else 0.0,
        "latency_ms": {
            **{f"p{p}": round(percentile(ordered, p) * 1e3, 3) for p in PERCENTILES},
            "min": round(ordered[0] * 1e3, 3),
            "mean": round(sum(ordered) / ops * 1e3, 3),
            "max": round(ordered[-1] * 1e3, 3),
        },
    }


async def _timed(op: Callable[[str], Awaitable[None]], targets: Sequence[str],
                 concurrency: int, advance: Callable[[int], Any]) -> tuple[float, list[float]]:
    """Runs ``op`` on every target, ``concurrency`` at a time; returns the
    wall time and each call's latency."""
    latencies: list[float] = []
    pending = iter(targets)

    async def worker() -> None:
        for uri in pending:  # shared iterator: each target is taken once
            began = time.perf_counter()
            await op(uri)
            latencies.append(time.perf_counter() - began)
            advance(1)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(targets)))))
    return time.perf_counter() - started, latencies


def _run_phase(args: argparse.Namespace, name: str, op: Callable[[str], Awaitable[None]],
               targets: Sequence[str]) -> dict[str, Any]:
    with bar(show_progress(args), len(targets), name) as progress:
        seconds, latencies = asyncio.run(_timed(op, targets, args.concurrency, progress.update))
    return phase_report(len(targets) * args.size, seconds, latencies)


def _remove_empty_directory(uri: str) -> None:
    """A recursive delete leaves local directories in place; the bench's own
    run directory is removed when it is empty."""
    path = uris.local_path(uri)
    if path is not None:
        with contextlib.suppress(OSError):
            os.rmdir(path)


def cmd_bench(args: argparse.Namespace) -> int:
    prefix = uris.from_arg(args.uri_prefix, local_ok=False)
    run = uris.as_directory(uris.child(prefix, f"s3dlio-bench-{int(time.time())}-{os.getpid()}"))
    targets = [f"{run}obj-{i:08d}" for i in range(args.count)]
    data = os.urandom(args.size)  # one random payload for every object: no compressible data

    async def put_one(uri: str) -> None:
        await s3dlio.put_async(uri, data)

    async def get_one(uri: str) -> None:
        view = await s3dlio.get_async(uri)
        with view:
            if len(view) != args.size:
                raise s3dlio.StorageIOError(f"read {len(view)} bytes, wrote {args.size}: {uri}",
                                            uri=uri)

    if getattr(args, "ranks", False):
        from s3dlio import ranks
        where = ranks.world()
        if where.comm is not None:
            where.comm.Barrier()  # every rank starts its phases together
    try:
        result = {"uri_prefix": run, "size": args.size, "count": args.count,
                  "concurrency": args.concurrency,
                  "put": _run_phase(args, "put", put_one, targets),
                  "get": _run_phase(args, "get", get_one, targets)}
    finally:
        if not args.keep:
            s3dlio.delete(run, recursive=True)
            _remove_empty_directory(run)
    result["kept"] = args.keep
    if getattr(args, "ranks", False):
        return _report_ranks(args, result)
    if args.json:
        emit_json(result)
        return 0
    print(f"bench {run}: {args.count} objects x {human_size(args.size)}, "
          f"concurrency {args.concurrency}")
    for name in ("put", "get"):
        phase = result[name]
        lat = phase["latency_ms"]
        print(f"{name}: {phase['mb_per_s']:.1f} MB/s, {phase['ops_per_s']:.1f} ops/s, "
              f"{phase['seconds']:.3f} s; latency ms p50 {lat['p50']:.2f} "
              f"p90 {lat['p90']:.2f} p99 {lat['p99']:.2f} max {lat['max']:.2f}")
    if args.keep:
        print(f"kept the objects under {run}", file=sys.stderr)
    return 0


def _report_ranks(args: argparse.Namespace, mine: dict[str, Any]) -> int:
    """bench --ranks: every rank ran its own objects; the job's MB/s and
    ops/s are total bytes and operations over the slowest rank's time, and
    rank 0 prints them (latency percentiles are rank 0's own)."""
    from s3dlio import ranks
    where = ranks.world()
    reports = where.comm.allgather(mine) if where.comm is not None else [mine]
    if where.rank != 0:
        return 0
    job: dict[str, Any] = {"ranks": len(reports), "world_size": where.size, "size": args.size,
                           "count_per_rank": args.count, "concurrency": args.concurrency}
    for name in ("put", "get"):
        seconds = max(r[name]["seconds"] for r in reports) or 1e-9
        nbytes = sum(r[name]["bytes"] for r in reports)
        ops = sum(r[name]["ops"] for r in reports)
        job[name] = {"ops": ops, "bytes": nbytes, "seconds": seconds,
                     "mb_per_s": round(nbytes / seconds / 1e6, 3),
                     "ops_per_s": round(ops / seconds, 3),
                     "latency_ms_rank0": mine[name]["latency_ms"]}
    if args.json:
        emit_json(job)
    else:
        for name in ("put", "get"):
            phase = job[name]
            print(f"{name} ({job['ranks']} ranks): {phase['mb_per_s']:.1f} MB/s, "
                  f"{phase['ops_per_s']:.1f} ops/s, {phase['seconds']:.3f} s")
    return 0
