"""mp_get: a GET benchmark and bulk reader across several processes, each
with its own engine (and so its own connections and engine thread), for
when one process's Python side is the bottleneck."""
from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

from . import errors


def _worker(uris: list[str], jobs: int, queue: Any) -> None:
    from . import api  # imported in the child: a fresh engine of its own
    started = time.time()
    count = total = 0
    failures = []
    for start in range(0, len(uris), jobs * 4):
        chunk = uris[start:start + jobs * 4]
        for uri, result in api.get_many(chunk, max_in_flight=jobs, return_exceptions=True):
            if isinstance(result, BaseException):
                failures.append((uri, type(result).__name__, str(result)))
                continue
            count += 1
            total += len(result)
            result.release()
    queue.put((started, time.time(), count, total, failures))


def mp_get(uri: str, procs: int = 4, jobs: int = 64, num: int = 1000,
           template: str = "object_{}.dat") -> dict[str, Any]:
    """GETs ``num`` objects named ``uri + template.format(i)`` (i from 0)
    using ``procs`` processes with ``jobs`` requests in flight each.

    Returns ``total_objects``, ``total_bytes``, ``duration_seconds`` (first
    worker start to last worker end), ``throughput_mb_s`` (MB = 10^6 bytes)
    and ``ops_per_sec``.  Raises the first failure's error class if any
    object could not be read."""
    if procs < 1 or jobs < 1 or num < 0:
        raise ValueError("procs and jobs must be at least 1, num at least 0")
    uris = [uri + template.format(i, num) for i in range(num)]
    ctx = mp.get_context("spawn")  # no inherited threads or locks
    queue = ctx.Queue()
    shares = [uris[i::procs] for i in range(procs)]
    workers = [ctx.Process(target=_worker, args=(share, jobs, queue), daemon=True)
               for share in shares if share]
    for w in workers:
        w.start()
    reports = []
    try:
        for _ in workers:
            reports.append(queue.get(timeout=3600))
    finally:
        for w in workers:
            w.join(timeout=60)
            if w.is_alive():
                w.terminate()
    failures = [f for r in reports for f in r[4]]
    if failures:
        failed_uri, cls_name, message = failures[0]
        cls = getattr(errors, cls_name, errors.S3dlioError)
        if not (isinstance(cls, type) and issubclass(cls, errors.S3dlioError)):
            cls = errors.S3dlioError
        raise cls(f"{len(failures)} of {num} GETs failed; first: {message}", uri=failed_uri)
    objects = sum(r[2] for r in reports)
    total = sum(r[3] for r in reports)
    duration = (max(r[1] for r in reports) - min(r[0] for r in reports)) if reports else 0.0
    duration = max(duration, 1e-9)
    return {"total_objects": objects, "total_bytes": total, "duration_seconds": duration,
            "throughput_mb_s": total / duration / 1e6, "ops_per_sec": objects / duration}
