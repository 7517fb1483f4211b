#!/usr/bin/env python3
"""s3dlio benchmark harness.

Runs a list of named cases, each producing one result row, and compares
every "subject" case (s3dlio) with the "baseline" case of its group measured
in the same run.  Prints a table and writes JSON to
bench/results/<timestamp>.json (and to --json PATH).

Cases (see bench/README.md for what each measures and how to read it):

  a.get_many      10,000 x 64 KiB page-cached files: s3dlio.get_many(file://)
                  vs ThreadPoolExecutor(16) doing open(p, 'rb').read()
  b.get_cached    one 1 GiB page-cached file: s3dlio.get(file://) vs dd bs=4M
  c.get_direct    the same file with O_DIRECT: s3dlio.get(direct://)
                  vs dd bs=4M iflag=direct
  d.memory        peak RSS growth of case a (in a fresh subprocess) vs the
                  bytes returned; the same for the Python baseline

Adding a peer (S3, GCS, Azure, another library) means adding Case objects
to build_cases(): give each a group, a role and a run() that performs one
repetition and returns a Sample.  The runner, the table and the JSON do
the rest.

    .venv/bin/python bench/run.py              # defaults, ~1-3 minutes
    .venv/bin/python bench/run.py --quick      # ~20 s
    .venv/bin/python bench/run.py --only a,d --files 2000 --reps 5
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import gc
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _proc  # noqa: E402
import _util  # noqa: E402
from _util import GB, MB, Timer, fmt, human_bytes, median  # noqa: E402

import s3dlio  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"


# ---- model -----------------------------------------------------------------

@dataclass
class Sample:
    """One repetition of one case."""
    wall: float                 # seconds
    cpu: float                  # CPU seconds (self + waited children) during `wall`
    nbytes: int                 # payload bytes moved
    files: Optional[int] = None  # objects moved (None when not meaningful)
    extra: dict = field(default_factory=dict)


@dataclass
class Case:
    name: str                   # unique, e.g. "s3dlio.get_many file://"
    group: str                  # comparison it belongs to, e.g. "a.get_many"
    role: str                   # "baseline" (one per group), "subject" (s3dlio) or
                                # "reference" (another point of comparison, not the baseline)
    description: str
    run: Callable[[], Sample]   # one timed repetition
    metric: str = "throughput"  # "throughput" or "memory"
    reps: Optional[int] = None  # overrides --reps (e.g. 1 for memory probes)
    warmup: Optional[int] = None  # overrides --warmup


# ---- dataset ---------------------------------------------------------------

@dataclass
class Dataset:
    root: str
    small_dir: str
    small_paths: list
    small_size: int
    big_path: str
    big_size: int
    fs_type: str
    created: list


def small_dir_for(root: str, count: int, size: int) -> str:
    return os.path.join(root, f"small-{count}x{size}")


def small_paths_for(root: str, count: int, size: int) -> list:
    base = small_dir_for(root, count, size)
    return [os.path.join(base, f"d{i // 1000:03d}", f"f{i:06d}.bin") for i in range(count)]


def _all_sized(paths: list, size: int) -> bool:
    try:
        return all(os.stat(p).st_size == size for p in paths)
    except OSError:
        return False


def prepare_dataset(args: argparse.Namespace, need_small: bool, need_big: bool) -> Dataset:
    root = os.path.abspath(args.dir)
    os.makedirs(root, exist_ok=True)
    created = []
    paths = small_paths_for(root, args.files, args.file_size)
    big = os.path.join(root, f"big-{args.big_size}.bin")

    if need_small and not _all_sized(paths, args.file_size):
        t0 = time.perf_counter()
        pool = os.urandom((1 << 20) + args.file_size)
        bar = _util.progress(len(paths), "creating small files", unit="file",
                             enabled=not args.no_progress)
        for i, p in enumerate(paths):
            if i % 1000 == 0:
                os.makedirs(os.path.dirname(p), exist_ok=True)
            off = (i * 4096 * 7) % (1 << 20)
            with open(p, "wb") as f:
                f.write(pool[off:off + args.file_size])
            bar.update(1)
        bar.close()
        created.append(f"{len(paths)} small files in {time.perf_counter() - t0:.1f}s")

    if need_big and not _all_sized([big], args.big_size):
        t0 = time.perf_counter()
        tmp = big + ".tmp"
        chunk = 4 << 20
        bar = _util.progress(args.big_size, "creating big file", enabled=not args.no_progress)
        with open(tmp, "wb") as f:
            left = args.big_size
            while left:
                n = min(chunk, left)
                f.write(os.urandom(n))
                left -= n
                bar.update(n)
            f.flush()
            os.fsync(f.fileno())
        bar.close()
        os.replace(tmp, big)
        created.append(f"{human_bytes(args.big_size)} file in {time.perf_counter() - t0:.1f}s")

    if created:
        os.sync()  # no writeback in the background while we time things
    return Dataset(root=root, small_dir=small_dir_for(root, args.files, args.file_size),
                   small_paths=paths if need_small else [], small_size=args.file_size,
                   big_path=big if need_big else "", big_size=args.big_size,
                   fs_type=_util.fs_type(root), created=created)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def warm_page_cache(ds: Dataset, threads: int) -> float:
    """Reads everything once so the cached cases start from a warm cache."""
    t0 = time.perf_counter()
    if ds.small_paths:
        with concurrent.futures.ThreadPoolExecutor(threads) as ex:
            for _ in ex.map(lambda p: len(_read_file(p)), ds.small_paths, chunksize=64):
                pass
    if ds.big_path:
        buf = bytearray(4 << 20)
        with open(ds.big_path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    return time.perf_counter() - t0


# ---- case bodies -----------------------------------------------------------

_DD_RE = re.compile(r"(\d+) bytes .*copied, ([\d.]+) s")


def run_dd(path: str, direct: bool, expect: int) -> Sample:
    cmd = ["dd", f"if={path}", "of=/dev/null", "bs=4M"] + (["iflag=direct"] if direct else [])
    env = dict(os.environ, LC_ALL="C")
    with Timer() as t:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    m = _DD_RE.search(proc.stderr)
    extra = {"cmd": " ".join(cmd)}
    nbytes = expect
    if m:
        nbytes = int(m.group(1))
        dd_s = float(m.group(2))
        extra["dd_reported_s"] = dd_s
        extra["dd_reported_MBps"] = round(nbytes / dd_s / MB, 1) if dd_s > 0 else None
    if nbytes != expect:
        raise RuntimeError(f"dd read {nbytes} bytes, expected {expect}")
    return Sample(t.wall, t.cpu, nbytes, 1, extra)


def run_python_read_whole(path: str, expect: int) -> Sample:
    """Reference: the whole file into one fresh bytes object."""
    with Timer() as t:
        with open(path, "rb") as f:
            data = f.read()
    n = len(data)
    del data
    if n != expect:
        raise RuntimeError(f"read {n} bytes of {path}, expected {expect}")
    return Sample(t.wall, t.cpu, n, 1)


def run_python_direct_whole(path: str, expect: int) -> Sample:
    """Reference: O_DIRECT into a fresh anonymous mapping, one preadv call per
    1 GiB -- the same work s3dlio.get(direct://) does, without the library."""
    import mmap
    size = os.stat(path).st_size
    span = (size + 4095) // 4096 * 4096
    with Timer() as t:
        buf = mmap.mmap(-1, max(span, 4096))
        mv = memoryview(buf)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            off = 0
            while off < span:
                n = os.preadv(fd, [mv[off:min(span, off + (1 << 30))]], off)
                if n <= 0:
                    break
                off += n
        finally:
            os.close(fd)
    mv.release()
    buf.close()
    n = min(off, size)
    if n != expect:
        raise RuntimeError(f"O_DIRECT read {n} bytes of {path}, expected {expect}")
    return Sample(t.wall, t.cpu, n, 1)


def run_s3dlio_get(uri: str, expect: int) -> Sample:
    with Timer() as t:
        view = s3dlio.get(uri)
    n = len(view)
    view.release()
    if n != expect:
        raise RuntimeError(f"s3dlio.get({uri}) returned {n} bytes, expected {expect}")
    return Sample(t.wall, t.cpu, n, 1)


def run_s3dlio_get_many(uris: list, max_in_flight: int, expect: int) -> Sample:
    with Timer() as t:
        results = s3dlio.get_many(uris, max_in_flight=max_in_flight)
    n = 0
    for _, view in results:
        n += len(view)
        view.release()
    count = len(results)
    del results
    if n != expect:
        raise RuntimeError(f"get_many returned {n} bytes, expected {expect}")
    return Sample(t.wall, t.cpu, n, count)


def run_threadpool_read(pool: concurrent.futures.ThreadPoolExecutor, paths: list,
                        expect: int) -> Sample:
    with Timer() as t:
        datas = list(pool.map(_read_file, paths))
    n = sum(map(len, datas))
    count = len(datas)
    del datas
    if n != expect:
        raise RuntimeError(f"thread pool read {n} bytes, expected {expect}")
    return Sample(t.wall, t.cpu, n, count)


# ---- memory probe (runs in a fresh subprocess) -----------------------------

def _vm(field_name: str) -> int:
    return _proc.status(field_name) or 0


def mem_probe(args: argparse.Namespace) -> None:
    import resource
    paths = small_paths_for(os.path.abspath(args.dir), args.files, args.file_size)
    uris = ["file://" + p for p in paths]
    pool = None
    if args.mem_probe == "s3dlio":  # start the engine threads before measuring
        s3dlio.get(uris[0]).release()
    else:
        pool = concurrent.futures.ThreadPoolExecutor(args.threads)
        list(pool.map(lambda p: len(_read_file(p)), paths[:args.threads * 2]))
    gc.collect()
    reset_ok = _proc.reset_hwm()
    rss0, hwm0 = _vm("VmRSS"), _vm("VmHWM")
    t0 = time.perf_counter()
    if args.mem_probe == "s3dlio":
        results = s3dlio.get_many(uris, max_in_flight=args.max_in_flight)
        wall = time.perf_counter() - t0
        nbytes = sum(len(v) for _, v in results)
    else:
        datas = list(pool.map(_read_file, paths))
        wall = time.perf_counter() - t0
        nbytes = sum(map(len, datas))
    hwm1, rss_hold = _vm("VmHWM"), _vm("VmRSS")
    if args.mem_probe == "s3dlio":
        for _, v in results:
            v.release()
        del results
    else:
        del datas
        pool.shutdown()
    gc.collect()
    rss_after = _vm("VmRSS")
    # More rounds show whether memory kept after release is reused
    # (allocator caching: it levels off) or lost (a leak keeps growing).
    kept_by_round = [rss_after - rss0]
    for _ in range(2):
        if args.mem_probe == "s3dlio":
            for _, v in s3dlio.get_many(uris, max_in_flight=args.max_in_flight):
                v.release()
        else:
            with concurrent.futures.ThreadPoolExecutor(args.threads) as pool2:
                datas = list(pool2.map(_read_file, paths))
            del datas
        gc.collect()
        kept_by_round.append(_vm("VmRSS") - rss0)
    rss_after2 = _vm("VmRSS")
    hwm2 = _vm("VmHWM")
    print(json.dumps({
        "rss_before": rss0, "hwm_before": hwm0, "hwm_reset": reset_ok,
        "peak_rss": hwm1, "rss_holding_results": rss_hold, "rss_after_release": rss_after,
        "rss_after_round3": rss_after2, "peak_rss_round3": hwm2,
        "kept_by_round": kept_by_round,
        "bytes_returned": nbytes, "files": len(paths), "wall": wall,
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


def run_mem_probe(args: argparse.Namespace, which: str) -> Sample:
    cmd = [sys.executable, os.path.abspath(__file__), "--_mem-probe", which,
           "--dir", args.dir, "--files", str(args.files), "--file-size", str(args.file_size),
           "--max-in-flight", str(args.max_in_flight), "--threads", str(args.threads)]
    with Timer():
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe {which} failed:\n{proc.stderr[-2000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    growth = r["peak_rss"] - r["rss_before"]
    r["peak_rss_growth"] = growth
    r["overhead_bytes"] = growth - r["bytes_returned"]
    r["overhead_per_file"] = r["overhead_bytes"] / max(1, r["files"])
    r["retained_after_release"] = r["rss_after_release"] - r["rss_before"]
    r["retained_after_round3"] = r["rss_after_round3"] - r["rss_before"]
    # wall/cpu of the whole subprocess are not meaningful here; report the
    # probe's own read time as `wall` and no CPU figure.
    return Sample(r["wall"], float("nan"), r["bytes_returned"], r["files"], r)


# ---- the case list -----------------------------------------------------------

def build_cases(args: argparse.Namespace, ds: Dataset, cleanup: list) -> list:
    cases: list[Case] = []
    small_total = len(ds.small_paths) * ds.small_size

    if "a" in args.only_groups:
        pool = concurrent.futures.ThreadPoolExecutor(args.threads)
        cleanup.append(pool.shutdown)
        uris = ["file://" + p for p in ds.small_paths]
        paths = list(ds.small_paths)
        n = len(paths)
        size = human_bytes(ds.small_size)
        cases += [
            Case(f"python ThreadPool({args.threads}) open().read()", "a.get_many", "baseline",
                 f"{n} x {size} page-cached files, Python threads",
                 lambda: run_threadpool_read(pool, paths, small_total)),
            Case(f"s3dlio.get_many file:// (mif={args.max_in_flight})", "a.get_many", "subject",
                 f"{n} x {size} page-cached files, s3dlio",
                 lambda: run_s3dlio_get_many(uris, args.max_in_flight, small_total)),
        ]

    if "b" in args.only_groups:
        big = ds.big_path
        cases += [
            Case("dd bs=4M", "b.get_cached", "baseline",
                 f"{human_bytes(ds.big_size)} page-cached file, dd to /dev/null",
                 lambda: run_dd(big, False, ds.big_size)),
            Case("python open().read() (reference)", "b.get_cached", "reference",
                 "whole file into one fresh bytes object",
                 lambda: run_python_read_whole(big, ds.big_size)),
            Case("s3dlio.get file://", "b.get_cached", "subject",
                 f"{human_bytes(ds.big_size)} page-cached file into memory",
                 lambda: run_s3dlio_get("file://" + big, ds.big_size)),
        ]

    if "c" in args.only_groups:
        big = ds.big_path
        cases += [
            Case("dd bs=4M iflag=direct", "c.get_direct", "baseline",
                 f"{human_bytes(ds.big_size)} file, O_DIRECT, dd to /dev/null",
                 lambda: run_dd(big, True, ds.big_size)),
            Case("python O_DIRECT preadv (reference)", "c.get_direct", "reference",
                 "O_DIRECT into a fresh mmap buffer, no library",
                 lambda: run_python_direct_whole(big, ds.big_size)),
            Case("s3dlio.get direct://", "c.get_direct", "subject",
                 f"{human_bytes(ds.big_size)} file, O_DIRECT, into memory",
                 lambda: run_s3dlio_get("direct://" + big, ds.big_size)),
        ]

    if "d" in args.only_groups:
        cases += [
            Case(f"python ThreadPool({args.threads}) peak RSS", "d.memory", "baseline",
                 "peak RSS growth while holding all results of case a (bytes objects)",
                 lambda: run_mem_probe(args, "python"), metric="memory",
                 reps=args.mem_reps, warmup=0),
            Case("s3dlio.get_many peak RSS", "d.memory", "subject",
                 "peak RSS growth while holding all results of case a (BytesViews)",
                 lambda: run_mem_probe(args, "s3dlio"), metric="memory",
                 reps=args.mem_reps, warmup=0),
        ]
    return cases


# ---- runner ------------------------------------------------------------------

def run_group(cases: list, args: argparse.Namespace) -> dict:
    """Warms up and runs the cases of one group with their repetitions
    interleaved (rotating the order each round), within --case-budget."""
    samples: dict[str, list] = {c.name: [] for c in cases}
    fallbacks: dict[str, int] = {c.name: 0 for c in cases}
    for c in cases:
        for _ in range(args.warmup if c.warmup is None else c.warmup):
            c.run()
    reps = {c.name: (args.reps if c.reps is None else c.reps) for c in cases}
    start = time.perf_counter()
    for rnd in range(max(reps.values())):
        if rnd > 0 and time.perf_counter() - start > args.case_budget:
            print(f"  (time budget of {args.case_budget:.0f}s reached after {rnd} rounds)",
                  file=sys.stderr)
            break
        order = cases[rnd % len(cases):] + cases[:rnd % len(cases)]
        for c in order:
            if rnd >= reps[c.name]:
                continue
            before = s3dlio.stats()["direct_io_fallbacks"]
            samples[c.name].append(c.run())
            fallbacks[c.name] += s3dlio.stats()["direct_io_fallbacks"] - before
            gc.collect()
    return {"samples": samples, "fallbacks": fallbacks}


def summarize(case: Case, samples: list, fallbacks: int) -> dict:
    row: dict[str, Any] = {
        "name": case.name, "group": case.group, "role": case.role, "metric": case.metric,
        "description": case.description, "reps": len(samples),
        "direct_io_fallbacks": fallbacks,
    }
    if case.metric == "memory":
        ex = [s.extra for s in samples]
        best = min(ex, key=lambda e: e["peak_rss_growth"])
        row.update({
            "bytes_returned": best["bytes_returned"], "files": best["files"],
            "peak_rss_growth": best["peak_rss_growth"],
            "peak_rss_growth_median": median([e["peak_rss_growth"] for e in ex]),
            "overhead_bytes": best["overhead_bytes"],
            "overhead_per_file": best["overhead_per_file"],
            "retained_after_release": best["retained_after_release"],
            "retained_after_round3": best["retained_after_round3"],
            "probe": best,
        })
        return row
    mbps = [s.nbytes / s.wall / MB for s in samples]
    walls = [s.wall for s in samples]
    cpu_per_gb = [s.cpu / (s.nbytes / GB) for s in samples if s.nbytes]
    files_ps = [s.files / s.wall for s in samples if s.files and s.files > 1]
    row.update({
        "bytes": samples[0].nbytes, "files": samples[0].files,
        "mbps_best": max(mbps), "mbps_median": median(mbps),
        "files_per_s_best": max(files_ps) if files_ps else None,
        "files_per_s_median": median(files_ps),
        "wall_s_best": min(walls), "wall_s_median": median(walls),
        "cpu_s_per_gb_median": median(cpu_per_gb),
        "cpu_s_per_gb_best": min(cpu_per_gb) if cpu_per_gb else None,
        "samples": [{"wall": s.wall, "cpu": s.cpu, "bytes": s.nbytes, "files": s.files,
                     **({"extra": s.extra} if s.extra else {})} for s in samples],
    })
    return row


def add_ratios(rows: list) -> None:
    """Each row gets ratios against its group's baseline (baseline: 1.0)."""
    base = {r["group"]: r for r in rows if r["role"] == "baseline"}

    def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return a / b if a is not None and b else None

    for r in rows:
        b = base.get(r["group"])
        if b is None:
            continue
        r["baseline"] = b["name"]
        if r["metric"] == "memory":
            r["ratio_peak_rss_growth"] = ratio(r["peak_rss_growth"], b["peak_rss_growth"])
        else:
            r["ratio_mbps_median"] = ratio(r["mbps_median"], b["mbps_median"])
            r["ratio_mbps_best"] = ratio(r["mbps_best"], b["mbps_best"])
            r["ratio_cpu_per_gb"] = ratio(r["cpu_s_per_gb_median"], b["cpu_s_per_gb_median"])


def print_report(rows: list) -> None:
    thr = [r for r in rows if r["metric"] == "throughput"]
    mem = [r for r in rows if r["metric"] == "memory"]
    if thr:
        print("\nThroughput (MB = 10^6 B, GB = 10^9 B; medians unless 'best'; "
              "x-base: this / baseline of the group)")
        _util.print_table(
            ["group", "case", "role", "reps", "MB/s best", "MB/s med", "files/s med", "wall s med",
             "CPU s/GB", "x-base MB/s", "x-base CPU/GB"],
            [[r["group"], r["name"], r["role"], r["reps"], fmt(r["mbps_best"], ",.0f"),
              fmt(r["mbps_median"], ",.0f"), fmt(r["files_per_s_median"], ",.0f"),
              fmt(r["wall_s_median"], ".3f"), fmt(r["cpu_s_per_gb_median"], ".3f"),
              fmt(r.get("ratio_mbps_median"), ".2f"), fmt(r.get("ratio_cpu_per_gb"), ".2f")]
             for r in thr],
            align_left=(0, 1, 2))
        for r in thr:
            dd = [s["extra"]["dd_reported_MBps"] for s in r["samples"]
                  if s.get("extra", {}).get("dd_reported_MBps")]
            if dd:
                print(f"  {r['name']}: dd's own figure (excludes process start): "
                      f"best {max(dd):,.0f} MB/s, median {median(dd):,.0f} MB/s")
    if mem:
        print("\nMemory (peak RSS growth over the call, in a fresh process; overhead = growth "
              "- bytes returned)")
        mib = 1 << 20
        _util.print_table(
            ["group", "case", "role", "returned MiB", "peak growth MiB", "overhead MiB",
             "overhead/file", "kept after release, rounds 1/2/3 (MiB)",
             "x-base growth"],
            [[r["group"], r["name"], r["role"], fmt(r["bytes_returned"] / mib, ".1f"),
              fmt(r["peak_rss_growth"] / mib, ".1f"), fmt(r["overhead_bytes"] / mib, ".1f"),
              f"{r['overhead_per_file']:,.0f} B",
              " / ".join(f"{k / mib:.0f}" for k in r["probe"]["kept_by_round"]),
              fmt(r.get("ratio_peak_rss_growth"), ".2f")] for r in mem],
            align_left=(0, 1, 2))


# ---- main ------------------------------------------------------------------

def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default="/tmp/s3dlio-bench",
                   help="working directory for the data (created once, reused)")
    p.add_argument("--quick", action="store_true",
                   help="small fast variant: 1,000 files, 64 MiB big file (~20 s)")
    p.add_argument("--files", type=int, help="number of small files (default 10000)")
    p.add_argument("--file-size", type=_util.parse_size, default=64 << 10,
                   help="size of each small file (default 64KiB)")
    p.add_argument("--big-size", type=_util.parse_size,
                   help="size of the big file for cases b, c (default 1GiB)")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per case (default 5)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed runs of each case before timing (default 1)")
    p.add_argument("--mem-reps", type=int, default=2,
                   help="runs of each memory probe; the smallest peak is reported (default 2)")
    p.add_argument("--case-budget", type=float, default=45.0,
                   help="stop adding rounds to a group after this many seconds (default 45)")
    p.add_argument("--max-in-flight", type=int, default=64, help="s3dlio max_in_flight")
    p.add_argument("--threads", type=int, default=16, help="baseline thread pool size")
    p.add_argument("--only", default="a,b,c,d", help="comma-separated groups to run (a,b,c,d)")
    p.add_argument("--json", help="also write the JSON result to this path")
    p.add_argument("--no-save", action="store_true",
                   help="do not write bench/results/<timestamp>.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--_mem-probe", dest="mem_probe", choices=["s3dlio", "python"],
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.files is None:
        args.files = 1000 if args.quick else 10_000
    if args.big_size is None:
        args.big_size = (64 << 20) if args.quick else (1 << 30)
    args.only_groups = {g.strip().split(".")[0] for g in args.only.split(",") if g.strip()}
    unknown = args.only_groups - set("abcd")
    if unknown:
        p.error(f"unknown group(s) in --only: {sorted(unknown)}")
    if args.reps < 1:
        p.error("--reps must be at least 1")
    return args


def main(argv: Optional[list] = None) -> int:
    args = parse_args(argv)
    if args.mem_probe:
        mem_probe(args)
        return 0

    t_start = time.perf_counter()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    stats_before = s3dlio.stats()
    need_small = bool(args.only_groups & {"a", "d"})
    need_big = bool(args.only_groups & {"b", "c"})
    ds = prepare_dataset(args, need_small, need_big)
    for line in ds.created:
        print(f"created {line}", file=sys.stderr)
    if ds.fs_type in ("tmpfs", "ramfs", "overlay"):
        print(f"note: {ds.root} is on {ds.fs_type}; O_DIRECT may fall back to buffered I/O",
              file=sys.stderr)
    warm_s = warm_page_cache(ds, args.threads)
    print(f"dataset in {ds.root} ({ds.fs_type}); page cache warmed in {warm_s:.1f}s",
          file=sys.stderr)

    cleanup: list = []
    rows: list = []
    try:
        cases = build_cases(args, ds, cleanup)
        groups: dict[str, list] = {}
        for c in cases:
            groups.setdefault(c.group, []).append(c)
        for gname, gcases in groups.items():
            print(f"running {gname}: {', '.join(c.name for c in gcases)}", file=sys.stderr)
            out = run_group(gcases, args)
            for c in gcases:
                rows.append(summarize(c, out["samples"][c.name], out["fallbacks"][c.name]))
    finally:
        for fn in cleanup:
            fn()

    add_ratios(rows)
    stats_after = s3dlio.stats()
    total = time.perf_counter() - t_start
    print_report(rows)
    fallbacks = stats_after["direct_io_fallbacks"] - stats_before["direct_io_fallbacks"]
    print(f"\ns3dlio direct_io_fallbacks during this run: {fallbacks}   "
          f"(filesystem of {ds.root}: {ds.fs_type})")
    print(f"total wall time: {total:.1f}s")

    result = {
        "schema": 1,
        "timestamp": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else argv,
        "args": {k: v for k, v in vars(args).items() if k not in ("mem_probe", "only_groups")},
        "env": _util.environment({"dir_fs_type": ds.fs_type}),
        "dataset": {"root": ds.root, "small_files": len(ds.small_paths),
                    "small_size": ds.small_size, "big_size": ds.big_size if ds.big_path else 0,
                    "created_this_run": ds.created, "warm_seconds": warm_s},
        "stats_before": stats_before, "stats_after": stats_after,
        "direct_io_fallbacks": fallbacks,
        "total_wall_s": total,
        "rows": rows,
    }
    _util.write_results(result, RESULTS_DIR, f"{stamp}{'-quick' if args.quick else ''}.json",
                        args.json, not args.no_save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
