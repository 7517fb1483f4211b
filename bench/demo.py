#!/usr/bin/env python3
"""The main job on the local disk: write a synthetic dataset of mixed object
sizes with s3dlio.put_many, read it back with s3dlio.get_many over file://
(page cache) and direct:// (O_DIRECT, from the disk), check CRC-32s of a
sample, and print throughput next to a plain-Python baseline
(ThreadPoolExecutor doing open().read()).  Removes the dataset at the end
unless --keep.  This is what `make demo` runs.

    .venv/bin/python bench/demo.py                  # 2 GiB under /tmp/s3dlio-demo
    .venv/bin/python bench/demo.py --size 512M --keep
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import random
import shutil
import sys
import time
import zlib
from dataclasses import dataclass
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _util  # noqa: E402
from _util import GB, MB, Timer, human_bytes  # noqa: E402

import s3dlio  # noqa: E402

MARKER = ".s3dlio-demo"  # only a data directory holding this file is ever deleted


@dataclass
class Obj:
    index: int
    path: str
    size: int
    offset: int                 # where its bytes start in the random pool
    crc: Optional[int] = None   # expected CRC-32, for the sampled objects


@dataclass
class Phase:
    name: str
    nbytes: int
    objects: int
    wall: float
    cpu: float
    note: str = ""


def parse_mix(text: str) -> list:
    """'64K:25,1M:25,16M:25,256M:25' -> [(65536, 0.25), ...] (shares of bytes)."""
    out = []
    for part in text.split(","):
        size, _, share = part.partition(":")
        out.append((_util.parse_size(size), float(share or 1)))
    total = sum(s for _, s in out)
    return [(size, share / total) for size, share in out]


def plan(args: argparse.Namespace, data_dir: str) -> tuple:
    """The object list (shuffled, so sizes are mixed on disk and in every
    batch) and the random pool their bytes are cut from."""
    rng = random.Random(args.seed)
    mix = parse_mix(args.mix)
    sizes = []
    for size, share in mix:
        sizes += [size] * int(args.size * share // size)
    if not sizes:
        raise SystemExit(f"--size {args.size} is too small for the mix {args.mix}")
    rng.shuffle(sizes)
    largest = max(sizes)
    pool_len = largest + (1 << 20)
    objs = []
    for i, size in enumerate(sizes):
        slack = pool_len - size
        offset = (i * 4096 * 37) % (slack + 1) // 4096 * 4096
        path = os.path.join(data_dir, f"shard-{i // 1000:03d}", f"obj-{i:06d}-{size}.bin")
        objs.append(Obj(i, path, size, offset))
    # Checksum sample: one object of each size, plus a few percent of the rest.
    by_size: dict = {}
    for o in objs:
        by_size.setdefault(o.size, []).append(o)
    sample = {rng.choice(group).index for group in by_size.values()}
    for o in objs:
        if rng.random() < args.verify_fraction:
            sample.add(o.index)
    return objs, pool_len, sorted(sample)


def batches(objs: list, batch_bytes: int, batch_count: int = 4096) -> list:
    out, cur, cur_bytes = [], [], 0
    for o in objs:
        cur.append(o)
        cur_bytes += o.size
        if cur_bytes >= batch_bytes or len(cur) >= batch_count:
            out.append(cur)
            cur, cur_bytes = [], 0
    if cur:
        out.append(cur)
    return out


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def read_phase(name: str, objs: list, groups: list, reader: Callable, release: bool,
               args: argparse.Namespace, failures: list) -> Phase:
    """Reads every batch with `reader(batch) -> list of buffers`, checks sizes
    of all and CRC-32s of the sampled ones (untimed), frees the buffers."""
    total = sum(o.size for o in objs)
    wall = cpu = 0.0
    checked = 0
    bar = _util.progress(total, name, enabled=not args.no_progress)
    for group in groups:
        with Timer() as t:
            bufs = reader(group)
        wall += t.wall
        cpu += t.cpu
        for o, buf in zip(group, bufs):
            if len(buf) != o.size:
                failures.append(f"{name}: {o.path}: {len(buf)} bytes, expected {o.size}")
            elif o.crc is not None:
                checked += 1
                if zlib.crc32(buf) != o.crc:
                    failures.append(f"{name}: {o.path}: CRC-32 mismatch")
            if release:
                buf.release()
        del bufs
        bar.update(sum(o.size for o in group))
    bar.close()
    return Phase(name, total, len(objs), wall, cpu, f"{checked} CRCs checked")


def fmt_phase_row(p: Phase, base: Optional[Phase]) -> list:
    mbps = p.nbytes / p.wall / MB if p.wall else None
    ratio = None
    if base is not None and base.wall and p.wall:
        ratio = (p.nbytes / p.wall) / (base.nbytes / base.wall)
    return [p.name, human_bytes(p.nbytes), f"{p.objects:,}", f"{p.wall:.2f}",
            _util.fmt(mbps, ",.0f"), f"{p.objects / p.wall:,.0f}" if p.wall else "-",
            _util.fmt(p.cpu / (p.nbytes / GB) if p.nbytes else None, ".3f"),
            _util.fmt(ratio, ".2f"), p.note]


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=_util.parse_size, default=2 << 30,
                   help="dataset size (default 2GiB)")
    p.add_argument("--dir", default="/tmp/s3dlio-demo", help="working directory")
    p.add_argument("--mix", default="64K:25,1M:25,16M:25,256M:25",
                   help="object sizes and their shares of the bytes (default %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the dataset afterwards")
    p.add_argument("--max-in-flight", type=int, default=64, help="s3dlio max_in_flight")
    p.add_argument("--threads", type=int, default=16, help="baseline thread pool size")
    p.add_argument("--batch-bytes", type=_util.parse_size, default=256 << 20,
                   help="bytes per get_many/put_many call (bounds memory; default 256MiB)")
    p.add_argument("--verify-fraction", type=float, default=0.02,
                   help="share of objects CRC-checked besides one of each size (default 0.02)")
    p.add_argument("--passes", type=int, default=3,
                   help="read passes per method; the median pass is shown (default 3)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.passes < 1:
        p.error("--passes must be at least 1")
    return args


def main(argv: Optional[list] = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    root = os.path.abspath(args.dir)
    data_dir = os.path.join(root, "data")
    if os.path.exists(data_dir):
        if not os.path.exists(os.path.join(data_dir, MARKER)):
            print(f"{data_dir} exists and was not made by this demo; refusing to touch it",
                  file=sys.stderr)
            return 2
        shutil.rmtree(data_dir)  # a dataset left by an earlier --keep run
    os.makedirs(data_dir)
    open(os.path.join(data_dir, MARKER), "w").close()

    fs = _util.fs_type(root)
    fallbacks0 = s3dlio.stats()["direct_io_fallbacks"]
    failures: list = []
    phases: list = []
    try:
        objs, pool_len, sample = plan(args, data_dir)
        total = sum(o.size for o in objs)
        counts: dict = {}
        for o in objs:
            counts[o.size] = counts.get(o.size, 0) + 1
        mix_text = ", ".join(f"{n:,} x {human_bytes(s)}" for s, n in sorted(counts.items()))
        print(f"s3dlio {s3dlio.__version__}: demo dataset of {human_bytes(total)} in "
              f"{len(objs):,} objects ({mix_text})\n  under {data_dir} ({fs}), "
              f"max_in_flight={args.max_in_flight}, baseline threads={args.threads}")

        t0 = time.perf_counter()
        pool = os.urandom(pool_len)
        pool_view = memoryview(pool)
        for i in sample:
            o = objs[i]
            o.crc = zlib.crc32(pool_view[o.offset:o.offset + o.size])
        prep_s = time.perf_counter() - t0
        groups = batches(objs, args.batch_bytes)

        # 1. write
        bar = _util.progress(total, "put_many file://", enabled=not args.no_progress)
        wall = cpu = 0.0
        for group in groups:
            items = [("file://" + o.path, pool_view[o.offset:o.offset + o.size]) for o in group]
            with Timer() as t:
                s3dlio.put_many(items, max_in_flight=args.max_in_flight)
            wall += t.wall
            cpu += t.cpu
            del items
            bar.update(sum(o.size for o in group))
        bar.close()
        phases.append(Phase("write  s3dlio.put_many file://", total, len(objs), wall, cpu,
                            "into the page cache"))
        with Timer() as t:
            os.sync()
        phases.append(Phase("flush  os.sync()", total, len(objs), t.wall, t.cpu,
                            "page cache -> disk"))

        # 2. read back: Python baseline, s3dlio file://, s3dlio direct://, each
        #    --passes times, interleaved so none always runs first.
        def s3_reader(scheme: str) -> Callable:
            def read(g: list) -> list:
                res = s3dlio.get_many([scheme + o.path for o in g],
                                      max_in_flight=args.max_in_flight)
                return [v for _, v in res]
            return read

        with concurrent.futures.ThreadPoolExecutor(args.threads) as ex:
            readers = [
                ("read   python ThreadPool open().read()", "page cache",
                 lambda g: list(ex.map(_read_file, [o.path for o in g])), False),
                ("read   s3dlio.get_many file://", "page cache", s3_reader("file://"), True),
                ("read   s3dlio.get_many direct://", "O_DIRECT (disk)", s3_reader("direct://"),
                 True),
            ]
            runs: dict = {name: [] for name, *_ in readers}
            for _ in range(args.passes):
                for name, _where, reader, release in readers:
                    runs[name].append(read_phase(name, objs, groups, reader, release, args,
                                                 failures))
        for name, where, *_ in readers:
            passes = sorted(runs[name], key=lambda p: p.wall)
            mid = passes[len(passes) // 2]
            best = passes[0]
            note = f"{where}; {mid.note}"
            if len(passes) > 1:
                note += (f"; median of {len(passes)} passes, best "
                         f"{best.nbytes / best.wall / MB:,.0f} MB/s")
            phases.append(Phase(name, mid.nbytes, mid.objects, mid.wall, mid.cpu, note))
        del pool_view
    finally:
        cleaned = ""
        if not args.keep:
            t0 = time.perf_counter()
            shutil.rmtree(data_dir, ignore_errors=True)
            try:
                os.rmdir(root)  # only succeeds when nothing else is in it
            except OSError:
                pass
            cleaned = f"removed {data_dir} in {time.perf_counter() - t0:.1f}s"

    fallbacks = s3dlio.stats()["direct_io_fallbacks"] - fallbacks0
    print()
    base_phase = next(p for p in phases if p.name.startswith("read   python"))
    _util.print_table(
        ["phase", "bytes", "objects", "seconds", "MB/s", "objects/s", "CPU s/GB",
         "x python", "notes"],
        [fmt_phase_row(p, base_phase if p.name.startswith("read") else None) for p in phases],
        align_left=(0, 8))
    print(f"\nMB = 10^6 B.  'x python' = read throughput / the Python baseline's.  "
          f"random data prepared in {prep_s:.1f}s (untimed)")
    print(f"direct_io_fallbacks: {fallbacks}" +
          ("  (the filesystem refused O_DIRECT; direct:// read through the page cache)"
           if fallbacks else ""))
    if failures:
        print(f"\nVERIFY FAILED ({len(failures)}):")
        for f in failures[:20]:
            print("  " + f)
    else:
        print(f"verified: every object's size; CRC-32 of {len(sample)} sampled objects "
              f"({human_bytes(sum(objs[i].size for i in sample))}) in each of "
              f"{3 * args.passes} read passes: all OK")
    print(cleaned or f"kept the dataset in {data_dir}")
    print(f"total {time.perf_counter() - t_start:.1f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
