"""One case of bench/writers.py in a process of its own (not part of the
s3dlio package), so that its peak RSS (``getrusage().ru_maxrss``) belongs to
that case alone.

    python bench/_writers_worker.py SPEC_JSON RESULT_PATH

SPEC_JSON names the case and its inputs; the result (JSON) is written to
RESULT_PATH.  Only the data-moving part is timed: loading the data pool,
importing the client and making its connection-less objects come before the
clock starts.  ``rss_before`` is VmRSS just before the clock starts, so
``peak_rss - rss_before`` is what the write itself added.

Cases (``spec["case"]``):

  s3dlio-s3      s3dlio.create_s3_writer(uri) at default options, fed from the pool
  boto3-s3       boto3 upload_fileobj(PoolReader) at the default TransferConfig
  s3dlio-file    create_filesystem_writer / create_direct_filesystem_writer
                 (``direct``), ``fsync`` as given, fed from one zero buffer
  dd             dd if=/dev/zero bs=4M count=N [oflag=direct] [conv=fdatasync]
  s3dlio-zstd    create_filesystem_writer(file://…, compression zstd, level L)
  zstandard      zstandard.ZstdCompressor(level=L, threads as the writer).compressobj(),
                 output counted
"""
from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from typing import Any, Iterator

from _proc import cpu_seconds, status  # beside this file, so on sys.path[0]

DD_BLOCK = 4 << 20


def load_pool(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def slices(pool: bytes, total: int, size: int) -> Iterator[memoryview]:
    """`total` bytes of `pool` repeated, as views of at most `size` bytes
    (never across the pool's end, so no copies)."""
    view = memoryview(pool)
    done = 0
    while done < total:
        offset = done % len(pool)
        n = min(size, total - done, len(pool) - offset)
        yield view[offset:offset + n]
        done += n


class PoolReader:
    """A read-only, non-seekable file object of `total` bytes: `pool`
    repeated.  read() returns bytes (one copy), as a real file would."""

    def __init__(self, pool: bytes, total: int) -> None:
        self.pool, self.total, self.done = pool, total, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.total - self.done
        size = min(size, self.total - self.done)
        parts = []
        while size > 0:
            offset = self.done % len(self.pool)
            n = min(size, len(self.pool) - offset)
            parts.append(self.pool[offset:offset + n])
            self.done += n
            size -= n
        return parts[0] if len(parts) == 1 else b"".join(parts)


def run_s3dlio_s3(spec: dict, pool: bytes) -> tuple:
    import s3dlio
    reader = PoolReader(pool, spec["size"])
    writer = s3dlio.create_s3_writer(spec["uri"])
    while True:
        chunk = reader.read(spec["write_size"])
        if not chunk:
            break
        writer.write(chunk)
    return writer.finalize(), {"version": s3dlio.__version__}


def run_boto3_s3(spec: dict, pool: bytes, client: Any) -> tuple:
    client.upload_fileobj(PoolReader(pool, spec["size"]), spec["bucket"], spec["key"])
    return {}, {}


def run_s3dlio_file(spec: dict, pool: bytes) -> tuple:
    import s3dlio
    options = s3dlio.PyWriterOptions(fsync=spec["fsync"])
    make = (s3dlio.create_direct_filesystem_writer if spec["direct"]
            else s3dlio.create_filesystem_writer)
    writer = make(spec["path"], options)
    zeros = bytes(spec["write_size"])
    left = spec["size"]
    while left > 0:
        n = min(left, len(zeros))
        writer.write(zeros if n == len(zeros) else memoryview(zeros)[:n])
        left -= n
    return writer.finalize(), {}


def run_dd(spec: dict, pool: bytes) -> tuple:
    argv = ["dd", "if=/dev/zero", f"of={spec['path']}", "bs=4M",
            f"count={spec['size'] // DD_BLOCK}"]
    if spec["direct"]:
        argv.append("oflag=direct")
    if spec["fsync"]:
        argv.append("conv=fdatasync")
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    # dd's own figure (excludes starting the process), e.g. "..., 1.2 s, 3.4 GB/s"
    match = re.search(r"copied, ([\d.]+) s", proc.stderr)
    return {}, {"argv": argv, "dd_seconds": float(match.group(1)) if match else None}


def run_s3dlio_zstd(spec: dict, pool: bytes) -> tuple:
    import s3dlio
    options = s3dlio.PyWriterOptions(compression="zstd", compression_level=spec["level"])
    writer = s3dlio.create_filesystem_writer(spec["path"], options)
    for view in slices(pool, spec["size"], spec["write_size"]):
        writer.write(view)
    return writer.finalize(), {}


def run_zstandard(spec: dict, pool: bytes) -> tuple:
    import zstandard
    # The writer's zstd settings (s3dlio/_compress.py: up to 4 zstd worker
    # threads), so both must store byte-identical streams.
    workers = min(4, os.cpu_count() or 1)
    compressor = zstandard.ZstdCompressor(level=spec["level"],
                                          threads=workers if workers > 1 else 0).compressobj()
    stored = 0
    for view in slices(pool, spec["size"], spec["write_size"]):
        stored += len(compressor.compress(view))
    stored += len(compressor.flush())
    return {"compressed_size": stored}, {"version": zstandard.__version__}


def main() -> int:
    spec = json.loads(sys.argv[1])
    out_path = sys.argv[2]
    case = spec["case"]
    pool = load_pool(spec["pool"]) if spec.get("pool") else b""
    args: tuple = (spec, pool)
    if case == "s3dlio-s3":
        run = run_s3dlio_s3
        import s3dlio  # noqa: F401  (imported before the clock starts)
    elif case == "boto3-s3":
        import boto3
        from botocore.config import Config
        client = boto3.client("s3", endpoint_url=spec["endpoint"],
                              config=Config(s3={"addressing_style": "path"}))
        run, args = run_boto3_s3, (spec, pool, client)
    elif case in ("s3dlio-file", "s3dlio-zstd"):
        import s3dlio  # noqa: F401,F811
        run = run_s3dlio_file if case == "s3dlio-file" else run_s3dlio_zstd
    elif case == "zstandard":
        import zstandard  # noqa: F401
        run = run_zstandard
    elif case == "dd":
        run = run_dd
    else:
        raise SystemExit(f"unknown case {case!r}")

    profiler = None
    if spec.get("profile"):
        import cProfile
        profiler = cProfile.Profile()
    rss_before = status("VmRSS") or 0
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    stats, extra = run(*args)
    if profiler is not None:
        profiler.disable()
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    if profiler is not None:
        profiler.dump_stats(spec["profile"])
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    result = {"wall": wall, "cpu": cpu, "bytes": spec["size"], "rss_before": rss_before,
              # dd's case is the dd process's peak; every other case is this process's
              "peak_rss": child_peak if case == "dd" else self_peak,
              "stats": stats, "extra": extra}
    with open(out_path, "w") as f:
        json.dump(result, f, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
