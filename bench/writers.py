#!/usr/bin/env python3
"""The streaming writers side by side with their peers, in one run.

Every repetition of every case runs in a fresh process
(bench/_writers_worker.py), so its peak RSS is that case's alone.

  s3    create_s3_writer (default options) vs boto3 upload_fileobj of the
        same bytes, to a loopback moto server: MB/s, ratio, peak RSS
        (target: the writer's process stays under 256 MiB)
  file  create_filesystem_writer and create_direct_filesystem_writer vs
        dd if=/dev/zero bs=4M (oflag=direct), to one file on --dir, without
        and with fsync (dd conv=fdatasync)
  zstd  zstd level 1 inside the writer (file:// on /dev/shm) vs zstandard's
        single-threaded compressobj on the same data (target: >= 0.9x)

    .venv/bin/python bench/writers.py            # 2 GiB S3, 4 GiB file, 1 GiB zstd, 3 reps
    .venv/bin/python bench/writers.py --quick    # 256 MiB / 512 MiB / 256 MiB, 2 reps
    .venv/bin/python bench/writers.py --only zstd --reps 5
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _cli  # noqa: E402
import _session  # noqa: E402
import _util  # noqa: E402
from _moto import moto_bucket  # noqa: E402
from _oneshot import CaseFailed, group_failures, run_worker  # noqa: E402
from _proc import mem_available, status  # noqa: E402
from _util import GB, MB, fmt, human_bytes, median  # noqa: E402

WORKER = str(HERE / "_writers_worker.py")
MiB, GiB = 1 << 20, 1 << 30
POOL_SIZE = 64 * MiB
BUCKET = "bench-writers"
DD_BLOCK = 4 * MiB
RSS_TARGET = 256 * MiB
ZSTD_TARGET = 0.9
SLOW_RUN_S = 180  # an S3 run slower than this: say so, and suggest --size
GROUPS = ("s3", "file", "zstd")


@dataclass
class Case:
    name: str                 # row label
    group: str                # s3 | file | zstd
    role: str                 # "subject" (s3dlio) or "peer"
    spec: dict                # for the worker (its "case" and inputs)
    peer: Optional[str] = None  # the peer row this subject is divided by
    samples: list = field(default_factory=list)


# ---- data ------------------------------------------------------------------

_WORDS = ("the of and to in is was for on that with as by at from this request response "
          "status error warning info debug user id time value key bucket object write read "
          "part upload offset size chunk stream buffer latency ms bytes ok true false null "
          "GET PUT POST 200 404 500 timestamp host region us-east-1 s3dlio zstd level").split()


def make_random_pool(path: str) -> None:
    with open(path, "wb") as f:
        f.write(os.urandom(POOL_SIZE))


def make_mixed_pool(path: str) -> None:
    """64 MiB in 1 MiB blocks: 768 KiB of text-like lines (words from a small
    vocabulary, numbers), then 256 KiB of random bytes.  The pool repeats
    every 64 MiB, far beyond zstd level 1's window, so repetition does not
    make later passes cheaper."""
    rng = random.Random(20240601)
    text_len, random_len = 768 << 10, 256 << 10
    with open(path, "wb") as f:
        for _ in range(POOL_SIZE // (text_len + random_len)):
            lines, size = [], 0
            while size < text_len:
                words = rng.choices(_WORDS, k=rng.randint(6, 16))
                line = f"{rng.randint(0, 10**9)} {' '.join(words)} n={rng.randint(0, 99999)}\n"
                lines.append(line)
                size += len(line)
            f.write("".join(lines).encode()[:text_len])
            f.write(rng.randbytes(random_len))


# ---- running one case --------------------------------------------------------

def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def leftovers(directory: str) -> list:
    """The writer's temporary files (``.<name>.s3dlio-<hex>.tmp``) still there."""
    return [n for n in os.listdir(directory) if ".s3dlio-" in n and n.endswith(".tmp")]


# ---- the groups ----------------------------------------------------------------

def s3_cases(args: argparse.Namespace, pool: str) -> list:
    common = {"size": args.size, "write_size": args.write_size, "pool": pool,
              "bucket": BUCKET}
    return [
        Case("s3dlio create_s3_writer", "s3", "subject",
             dict(common, case="s3dlio-s3", key="s3dlio", uri=f"s3://{BUCKET}/s3dlio"),
             peer="boto3 upload_fileobj"),
        Case("boto3 upload_fileobj", "s3", "peer", dict(common, case="boto3-s3", key="boto3")),
    ]


def file_cases(args: argparse.Namespace, target: str) -> list:
    cases = []
    for fsync in args.fsync_variants:
        for direct in (False, True):
            spec = {"size": args.file_size, "write_size": args.write_size, "path": target,
                    "fsync": fsync, "direct": direct}
            dd = "dd bs=4M" + (" oflag=direct" if direct else "") + \
                 (" conv=fdatasync" if fsync else "")
            writer = ("create_direct_filesystem_writer" if direct
                      else "create_filesystem_writer") + (" fsync" if fsync else "")
            cases.append(Case(writer, "file", "subject", dict(spec, case="s3dlio-file"),
                              peer=dd))
            cases.append(Case(dd, "file", "peer", dict(spec, case="dd")))
    return cases


def zstd_cases(args: argparse.Namespace, pool: str, target: str) -> list:
    spec = {"size": args.zstd_size, "write_size": args.write_size, "pool": pool,
            "level": args.zstd_level}
    peer = f"zstandard compressobj level {args.zstd_level}"
    return [Case(f"s3dlio writer zstd level {args.zstd_level}", "zstd", "subject",
                 dict(spec, case="s3dlio-zstd", path=target), peer=peer),
            Case(peer, "zstd", "peer", dict(spec, case="zstandard"))]


def rotated(cases: list, r: int) -> list:
    k = r % len(cases)
    return cases[k:] + cases[:k]


def pairs_alternated(cases: list, r: int) -> list:
    """Each (writer, dd) pair back to back, which one goes first swapped
    every round: on a virtual disk the first write after a pause can be
    much slower than the next one, so neither side may always go first."""
    out = []
    for i in range(0, len(cases), 2):
        pair = cases[i:i + 2]
        out += pair[::-1] if r % 2 else pair
    return out


def run_rounds(cases: list, reps: int, one: Any, order: Any = rotated) -> None:
    """`reps` rounds of every case, in `order(cases, round)`."""
    for r in range(reps):
        for case in order(cases, r):
            t0 = time.perf_counter()
            sample = one(case)
            case.samples.append(sample)
            print(f"  {case.name}: {sample['bytes'] / sample['wall'] / MB:,.0f} MB/s, peak RSS "
                  f"{sample['peak_rss'] / MiB:,.0f} MiB ({time.perf_counter() - t0:.1f}s)",
                  file=sys.stderr)


def run_s3(args: argparse.Namespace, cases: list, run_dir: str, notes: list) -> dict:
    with moto_bucket(BUCKET, run_dir) as (server, client, env):
        info: dict = {"endpoint": server.endpoint}

        def one(case: Case) -> dict:
            spec = dict(case.spec, endpoint=server.endpoint)
            if args.profile and case.role == "subject":
                spec["profile"] = os.path.join(args.profile, f"s3-{len(case.samples)}.pstats")
            try:
                sample = run_worker(WORKER, spec, env, run_dir, args.case_timeout)
                head = client.head_object(Bucket=BUCKET, Key=spec["key"])
                if head["ContentLength"] != spec["size"]:
                    raise CaseFailed(f"{case.name}: stored {head['ContentLength']} bytes of "
                                     f"{spec['size']}")
                sample["extra"]["etag"] = head["ETag"]
            finally:  # moto keeps every object in memory
                client.delete_object(Bucket=BUCKET, Key=spec["key"])
            sample["server_rss_after_delete"] = status("VmRSS", server.process.pid)
            if sample["wall"] > SLOW_RUN_S:
                notes.append(f"s3: one {case.name} run took {sample['wall']:.0f}s; "
                             "use --size to scale down")
            return sample

        run_rounds(cases, args.reps, one)
        info["server_peak_rss"] = status("VmHWM", server.process.pid)
    return info


def run_file(args: argparse.Namespace, cases: list, run_dir: str, target: str) -> None:
    directory = os.path.dirname(target)

    def one(case: Case) -> dict:
        spec = dict(case.spec)
        if args.profile and case.role == "subject":
            spec["profile"] = os.path.join(
                args.profile, f"file-{'direct' if spec['direct'] else 'buffered'}-"
                f"{'fsync' if spec['fsync'] else 'nofsync'}-{len(case.samples)}.pstats")
        os.sync()  # no writeback of an earlier case runs while this one is timed
        try:
            sample = run_worker(WORKER, spec, os.environ.copy(), run_dir, args.case_timeout)
            size = os.stat(target).st_size
            if size != spec["size"]:
                raise CaseFailed(f"{case.name}: file has {size} bytes of {spec['size']}")
            stray = leftovers(directory)
            if stray:
                raise CaseFailed(f"{case.name}: temporary files left: {stray}")
        finally:
            remove(target)
        return sample

    # One untimed dd of the same size first: the first large write after a
    # quiet spell runs slower on a virtual disk, whoever makes it.
    subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=4M",
                    f"count={args.file_size // DD_BLOCK}"], capture_output=True, check=True)
    remove(target)
    run_rounds(cases, args.reps, one, order=pairs_alternated)
    os.sync()


def run_zstd(args: argparse.Namespace, cases: list, run_dir: str, target: str) -> None:
    def one(case: Case) -> dict:
        spec = dict(case.spec)
        if args.profile and case.role == "subject":
            spec["profile"] = os.path.join(args.profile, f"zstd-{len(case.samples)}.pstats")
        try:
            return run_worker(WORKER, spec, os.environ.copy(), run_dir, args.case_timeout)
        finally:
            remove(target)

    run_rounds(cases, args.reps, one)
    stored = {c.spec["case"]: {s["stats"]["compressed_size"] for s in c.samples} for c in cases}
    if len(stored["s3dlio-zstd"] | stored["zstandard"]) != 1:
        raise CaseFailed(f"zstd: the writer and zstandard stored different sizes: {stored}")


# ---- report ----------------------------------------------------------------------

def summarize(case: Case) -> dict:
    rates = [s["bytes"] / s["wall"] / MB for s in case.samples]
    cpu = median([s["cpu"] / (s["bytes"] / GB) for s in case.samples])
    peak = max((s["peak_rss"] for s in case.samples), default=None)
    growth = max((s["peak_rss"] - s["rss_before"] for s in case.samples), default=None)
    return {"name": case.name, "group": case.group, "role": case.role, "peer": case.peer,
            "bytes": case.spec["size"], "reps": len(case.samples),
            "MBps_median": median(rates), "MBps_best": max(rates, default=None),
            "cpu_s_per_GB": cpu, "peak_rss_max": peak,
            "peak_rss_growth_max": growth if case.spec["case"] != "dd" else None,
            "samples": case.samples}


def targets(rows: list) -> list:
    out = []
    for r in rows:
        if r["role"] != "subject":
            continue
        if r["group"] == "s3":
            peak = r["peak_rss_max"]
            out.append({"target": "s3: writer process peak RSS < 256 MiB",
                        "value": f"{peak / MiB:.0f} MiB" if peak else "-",
                        "met": bool(peak and peak < RSS_TARGET)})
            out.append({"target": "s3: writer MB/s vs boto3 upload_fileobj (no target)",
                        "value": f"{fmt(r['x_peer_MBps'], '.2f')}x", "met": None})
        elif r["group"] == "zstd":
            x = r["x_peer_MBps"]
            out.append({"target": f"zstd: writer MB/s >= {ZSTD_TARGET}x zstandard compressobj",
                        "value": f"{fmt(x, '.2f')}x", "met": bool(x and x >= ZSTD_TARGET)})
        else:
            out.append({"target": f"file: {r['name']} vs {r['peer']} (no target)",
                        "value": f"{fmt(r['x_peer_MBps'], '.2f')}x", "met": None})
    return out


def print_report(rows: list, tgts: list) -> None:
    def cells(r: dict) -> list:
        growth = r["peak_rss_growth_max"]
        return [r["group"], r["name"], human_bytes(r["bytes"]), r["reps"],
                fmt(r["MBps_median"], ",.0f"), fmt(r["MBps_best"], ",.0f"),
                fmt(r["cpu_s_per_GB"], ".2f"), f"{r['peak_rss_max'] / MiB:,.0f}",
                fmt(growth / MiB if growth is not None else None, ",.0f"),
                fmt(r["x_peer_MBps"], ".2f") if r["role"] == "subject" else "1.00"]

    print("\n" + _util.markdown_table(
        ["group", "case", "size", "reps", "MB/s median", "MB/s best", "CPU s/GB",
         "peak RSS MiB", "RSS growth MiB", "x peer MB/s"],
        [cells(r) for r in rows], right=range(2, 10)))
    _util.print_targets_markdown(tgts)


# ---- sizes that fit ----------------------------------------------------------------

def fit_sizes(args: argparse.Namespace) -> list:
    """Scales sizes down where memory or disk would not hold them; returns
    the notes saying so (printed to stderr as they are made)."""
    notes: list = []

    def note(text: str) -> None:
        notes.append(text)
        print(f"note: {text}", file=sys.stderr)

    if "s3" in args.only_groups:
        # moto holds the parts, then joins them into one more copy at completion.
        room = (mem_available() - GiB) // 3
        fits = room - room % MiB
        if fits < args.size:
            note(f"s3: {human_bytes(args.size)} scaled down to {human_bytes(fits)} "
                 f"(moto needs about 3x the object in memory)")
            args.size = fits
    if "file" in args.only_groups:
        free = shutil.disk_usage(args.dir).free - GiB  # keep 1 GiB spare
        fits = free - free % DD_BLOCK
        if fits < args.file_size:
            note(f"file: {human_bytes(args.file_size)} scaled down to {human_bytes(fits)} "
                 f"({human_bytes(free + GiB)} free on {args.dir})")
            args.file_size = fits
        if args.file_size % DD_BLOCK:
            args.file_size -= args.file_size % DD_BLOCK
            note(f"file: size rounded down to {human_bytes(args.file_size)} (dd bs=4M)")
    shm_need = 2 * POOL_SIZE + ((args.zstd_size // 2) if "zstd" in args.only_groups else 0)
    if shutil.disk_usage(args.shm_dir).free < shm_need + 256 * MiB:
        raise SystemExit(f"{args.shm_dir} has less than {human_bytes(shm_need)} free "
                         "for the data pools and the compressed output")
    for name in ("size", "file_size", "zstd_size"):
        if getattr(args, name) < 64 * MiB:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 64 MiB here")
    return notes


# ---- main -----------------------------------------------------------------------------

def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    p = _cli.parser(__doc__)
    p.add_argument("--quick", action="store_true",
                   help="S3 256 MiB, file 512 MiB, zstd 256 MiB, 2 reps")
    p.add_argument("--size", type=_util.parse_size,
                   help="bytes streamed to S3 by each client (default 2GiB)")
    p.add_argument("--file-size", type=_util.parse_size,
                   help="bytes written to the file (default 4GiB, a multiple of 4 MiB)")
    p.add_argument("--zstd-size", type=_util.parse_size,
                   help="bytes compressed (default 1GiB)")
    p.add_argument("--zstd-level", type=int, default=1, help="zstd level (default 1)")
    p.add_argument("--write-size", type=_util.parse_size, default=4 * MiB,
                   help="bytes per write() call (default 4MiB, like dd bs=4M)")
    p.add_argument("--reps", type=int, help="rounds of every case (default 3; --quick 2)")
    p.add_argument("--fsync", choices=("both", "off", "on"), default="both",
                   help="file cases without fsync, with it, or both (default)")
    p.add_argument("--dir", default="/tmp",
                   help="where the file cases write (default /tmp; a disk file system)")
    p.add_argument("--shm-dir", default="/dev/shm",
                   help="tmpfs for the data pools and the zstd output (default /dev/shm)")
    p.add_argument("--only", default=",".join(GROUPS), help="groups: s3,file,zstd")
    _cli.add_worker_limits(p)
    _cli.add_output(p, "writers-<timestamp>")
    args = p.parse_args(argv)
    args.size = args.size or (256 * MiB if args.quick else 2 * GiB)
    args.file_size = args.file_size or (512 * MiB if args.quick else 4 * GiB)
    args.zstd_size = args.zstd_size or (256 * MiB if args.quick else GiB)
    args.reps = args.reps or (2 if args.quick else 3)
    args.fsync_variants = {"both": (False, True), "off": (False,), "on": (True,)}[args.fsync]
    args.only_groups = _cli.only_set(p, args.only, GROUPS)
    if args.reps < 1 or args.write_size < 1:
        p.error("--reps and --write-size must be positive")
    return args


def main(argv: Optional[list] = None) -> int:
    args = parse_args(argv)
    t_start, stamp, load0 = _session.start()
    notes = fit_sizes(args)
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    run_dir = tempfile.mkdtemp(prefix="s3dlio-bench-writers-", dir=args.shm_dir)
    file_dir = tempfile.mkdtemp(prefix="s3dlio-bench-writers-", dir=args.dir)
    random_pool = os.path.join(run_dir, "random.pool")
    mixed_pool = os.path.join(run_dir, "mixed.pool")
    groups: dict = {}
    s3_info: dict = {}
    failures: dict = {}

    def clean() -> None:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(file_dir, ignore_errors=True)

    with _session.Interruptible("cleaning up", clean) as run:
        if "s3" in args.only_groups:
            make_random_pool(random_pool)
            groups["s3"] = s3_cases(args, random_pool)
        if "file" in args.only_groups:
            groups["file"] = file_cases(args, os.path.join(file_dir, "written.bin"))
        if "zstd" in args.only_groups:
            t0 = time.perf_counter()
            make_mixed_pool(mixed_pool)
            print(f"mixed data pool made in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            groups["zstd"] = zstd_cases(args, mixed_pool, os.path.join(run_dir, "zstd.out"))
        for name, cases in groups.items():
            size = cases[0].spec["size"]
            print(f"running {name} ({human_bytes(size)}, {args.reps} rounds): "
                  f"{', '.join(c.name for c in cases)}", file=sys.stderr)
            t0 = time.perf_counter()
            with group_failures(name, failures, 500):
                if name == "s3":
                    s3_info = run_s3(args, cases, run_dir, notes)
                elif name == "file":
                    run_file(args, cases, run_dir, cases[0].spec["path"])
                else:
                    run_zstd(args, cases, run_dir, cases[0].spec["path"])
            print(f"  {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    if run.interrupted:
        return 130

    rows = [summarize(c) for cases in groups.values() for c in cases if c.samples]
    _util.add_peer_ratios(rows, {"x_peer_MBps": "MBps_median"})
    tgts = targets(rows)
    print_report(rows, tgts)
    print(f"\nS3: {human_bytes(args.size)}; file: {human_bytes(args.file_size)} on {args.dir} "
          f"({_util.fs_type(args.dir)}); zstd: {human_bytes(args.zstd_size)} of mixed data "
          f"(output on {args.shm_dir}, {_util.fs_type(args.shm_dir)}); {args.reps} rounds, "
          f"write() size {human_bytes(args.write_size)}.  MB = 10^6 B.  Peak RSS: the largest "
          "over the rounds (dd: the dd process); RSS growth: peak minus RSS before the "
          f"clock started (the {human_bytes(POOL_SIZE)} data pool is in RSS before).")
    if s3_info.get("server_peak_rss"):
        print(f"moto server peak RSS: {s3_info['server_peak_rss'] / MiB:,.0f} MiB")
    total = _session.print_closing(t_start, load0, failures, notes)

    import boto3
    import moto
    import zstandard
    _util.save_result("writers", stamp, argv, args, {
        "env": _util.environment({"file_fs_type": _util.fs_type(args.dir),
                                  "shm_fs_type": _util.fs_type(args.shm_dir),
                                  "boto3": boto3.__version__, "moto": moto.__version__,
                                  "zstandard": zstandard.__version__,
                                  "loadavg_start": load0, "loadavg_end": os.getloadavg()}),
        "s3_server": s3_info, "notes": notes, "failures": failures, "targets": tgts,
        "total_wall_s": total, "rows": rows,
    })
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
