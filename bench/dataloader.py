#!/usr/bin/env python3
"""PyTorch DataLoader over s3dlio's datasets against the Rust s3dlio's, a
boto3 map dataset and s3torchconnector, on a loopback nginx object server.

In one run, each part with its repetitions interleaved across the clients
(every repetition a fresh process, so DataLoader workers start the same way):

  s3     one epoch of DataLoader(batch_size=32, num_workers=4) over 4,096 x
         256 KiB objects: samples/s and client CPU s/GB (workers included)
  ttfb   time from making the dataset to the first batch, over a bucket of
         100,000 x 1 KiB objects (100 listing pages)
  local  the 4,096 files through S3MapDataset on file:// against a plain
         open().read() map dataset (page cache warm)

nginx cannot LIST, so bench/_nginx.py serves pre-written ListObjectsV2 pages;
every client's listing is checked against the expected keys before timing.

    .venv/bin/python bench/dataloader.py            # ~6 minutes on 2 cores
    .venv/bin/python bench/dataloader.py --quick    # 1,024 x 256 KiB, 10,000 x 1 KiB
    .venv/bin/python bench/dataloader.py --only s3 --clients s3dlio-map,boto3-map --reps 5

See bench/README.md ("bench/dataloader.py") for what each row is and how to read it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402
import _session  # noqa: E402
import _util  # noqa: E402
from _nginx import Nginx, nginx_etag, nginx_info, write_list_pages, LIST_PAGE_SIZE  # noqa: E402
from _rpc import WorkerError, log_tail  # noqa: E402
from _util import fmt, human_bytes, median  # noqa: E402
from _venv import cpu_only_venv, ref_probe, venv_python  # noqa: E402
from s3 import REGION, Sample, run_rows, worker_env  # noqa: E402

HERE = Path(__file__).resolve().parent
WORKER = str(HERE / "_dataloader_worker.py")
PARTS = ["s3", "ttfb", "local"]
TORCH_PIN = "torch==2.13.0"  # never unpinned: a range resolves to a multi-GB CUDA build
_running: dict = {}  # pid -> Popen of the worker now running (killed with its group on exit)


# ---- the data sets -----------------------------------------------------------------

@dataclass
class DataSet:
    """`count` objects of `size` random bytes (object i starts with i as 8
    big-endian bytes) in bucket `bucket`: files under DIR/s3/<bucket>/, their
    ListObjectsV2 pages under DIR/lists/<bucket>/, CRC-32s in DIR/<bucket>.crcs.json."""
    bucket: str
    count: int
    size: int
    base: str

    @property
    def path(self) -> str:
        return os.path.join(self.base, "s3", self.bucket)

    @property
    def crcs_path(self) -> str:
        return os.path.join(self.base, f"{self.bucket}.crcs.json")

    @property
    def pages(self) -> int:
        return max(1, -(-self.count // LIST_PAGE_SIZE))

    def keys(self) -> list:
        return [f"obj-{i:06d}" for i in range(self.count)]

    def title(self) -> str:
        return f"{self.count:,} x {human_bytes(self.size)}"


def make_dataset(base: str, count: int, size: int) -> DataSet:
    label = f"{size >> 10}k" if size % 1024 == 0 else str(size)
    return DataSet(f"dl-{count}x{label}", count, size, base)


def dataset_ok(ds: DataSet) -> bool:
    try:
        with open(ds.crcs_path) as f:
            if len(json.load(f)) != ds.count:
                return False
        names = {e.name: e.stat().st_size for e in os.scandir(ds.path)}
    except (OSError, ValueError):
        return False
    return (len(names) == ds.count and all(names.get(k) == ds.size for k in ds.keys())
            and all(os.path.exists(os.path.join(ds.base, "lists", ds.bucket, f"page-{n}.xml"))
                    for n in (1, ds.pages)))


def ensure_data(ds: DataSet) -> str:
    """Creates the objects, their listing pages and CRCs unless already there."""
    if dataset_ok(ds):
        return "reused"
    t0 = time.perf_counter()
    shutil.rmtree(ds.path, ignore_errors=True)
    shutil.rmtree(os.path.join(ds.base, "lists", ds.bucket), ignore_errors=True)
    os.makedirs(ds.path)
    crcs, entries = [], []
    for i, key in enumerate(ds.keys()):
        data = i.to_bytes(8, "big") + os.urandom(ds.size - 8)
        p = os.path.join(ds.path, key)
        with open(p, "wb") as f:
            f.write(data)
        crcs.append(zlib.crc32(data) & 0xFFFFFFFF)
        st = os.stat(p)
        entries.append((key, st.st_size, st.st_mtime, nginx_etag(st)))
    write_list_pages(os.path.join(ds.base, "lists"), ds.bucket, entries)
    with open(ds.crcs_path + ".tmp", "w") as f:
        json.dump(crcs, f)
    os.replace(ds.crcs_path + ".tmp", ds.crcs_path)  # written last: marks the set complete
    os.sync()  # no writeback while measuring
    return f"created in {time.perf_counter() - t0:.1f}s"


def warm(ds: DataSet) -> float:
    """Reads every file once (page cache warm); returns seconds."""
    t0 = time.perf_counter()
    for key in ds.keys():
        with open(os.path.join(ds.path, key), "rb") as f:
            while f.read(1 << 20):
                pass
    return time.perf_counter() - t0


# ---- the clients -------------------------------------------------------------------

@dataclass
class Client:
    name: str              # row label and --clients key
    kind: str              # the worker's client
    python: str
    workers: int           # DataLoader num_workers
    role: str              # subject (ours) | variant (ours, not a target) | reference
                           # (Rust s3dlio) | peer | baseline
    parts: tuple
    note: str = ""
    error: Optional[str] = None
    version: Optional[str] = None


def build_clients(args: argparse.Namespace, setup_log: list) -> list:
    ours = sys.executable
    ref_py, tc_py = venv_python(args.ref_venv), venv_python(args.s3tc_venv)
    ref_err = cpu_only_venv(
        args.ref_venv, [f"s3dlio=={args.ref_version}", TORCH_PIN],
        ref_probe(args.ref_version, "s3dlio.torch"), not args.no_install, setup_log)
    tc_err = cpu_only_venv(args.s3tc_venv, [TORCH_PIN, *args.s3tc_packages.split()],
                           "import s3torchconnector, torch", not args.no_install, setup_log)
    r = subprocess.run([ours, "-c", "import boto3, torch"], capture_output=True, text=True,
                       timeout=120, cwd=tempfile.gettempdir())
    boto_err = None if r.returncode == 0 else f"boto3/torch not importable: {r.stderr[-300:]}"
    w = args.workers
    ref = f"s3dlio-ref {args.ref_version}"
    fork_hang = ("the reference hangs in a forked DataLoader worker once its runtime has run "
                 "in the parent (ObjectStoreMapDataset lists when made), and its dataset "
                 "cannot be pickled for spawn")
    specs = [
        Client("s3dlio-map", "s3dlio-map", ours, w, "subject", ("s3", "ttfb", "local"),
               "this repo: S3MapDataset(uri); a batch = one get_many"),
        Client("s3dlio-map-tensor", "s3dlio-map-tensor", ours, w, "variant", ("s3", "local"),
               "this repo: S3MapDataset(uri, transform=torch.frombuffer): tensors, stacked "
               "into shared memory by collate instead of pickled"),
        Client("s3dlio-iter", "s3dlio-iter", ours, w, "subject", ("s3", "ttfb"),
               "this repo: S3IterableDataset(uri, shuffle=)"),
        Client("ref-map", "s3dlio-map", ref_py, 0, "reference", ("s3", "ttfb"),
               f"{ref} ObjectStoreMapDataset(uri), DataLoader num_workers=0: {fork_hang}",
               ref_err),
        Client("ref-iter", "s3dlio-iter", ref_py, 0, "reference", ("s3", "ttfb"),
               f"{ref} ObjectStoreIterableDataset.from_prefix(uri, shuffle=), "
               "DataLoader num_workers=0 as its docstring advises (Rust does the I/O)", ref_err),
        Client("ref-map-w4", "s3dlio-map", ref_py, w, "reference", ("s3",),
               f"{ref} ObjectStoreMapDataset with DataLoader num_workers={w}: expected to "
               "stall (see ref-map)", ref_err),
        Client("ref-iter-w4", "s3dlio-iter", ref_py, w, "reference", ("s3", "ttfb"),
               f"{ref} ObjectStoreIterableDataset(enable_sharding=True), DataLoader "
               f"num_workers={w}: every worker reads every object", ref_err),
        Client("boto3-map", "boto3-map", ours, w, "peer", ("s3",),
               "map dataset, boto3 client per worker process, get_object().read()", boto_err),
        Client("s3tc-map", "s3tc-map", tc_py, w, "peer", ("s3", "ttfb"),
               "s3torchconnector S3MapDataset.from_prefix(transform=read())", tc_err),
        Client("s3tc-iter", "s3tc-iter", tc_py, w, "peer", ("s3", "ttfb"),
               "s3torchconnector S3IterableDataset.from_prefix(enable_sharding=True, "
               "transform=read()); it cannot shuffle", tc_err),
        Client("file-map", "file-map", ours, w, "baseline", ("local",),
               "map dataset of paths, open(p, 'rb').read() per item", boto_err),
    ]
    if args.only_clients:
        unknown = args.only_clients - {s.name for s in specs}
        if unknown:
            raise SystemExit(f"unknown client(s) in --clients: {sorted(unknown)}; "
                             f"known: {[s.name for s in specs]}")
        specs = [s for s in specs if s.name in args.only_clients]
    return specs


# ---- one repetition ------------------------------------------------------------------

def run_worker(c: Client, spec: dict, env: dict, run_dir: str, timeout: float,
               server: Optional[Nginx]) -> dict:
    """Runs the worker once in a session of its own (so a timeout kills its
    DataLoader workers too) and returns its answer."""
    log = os.path.join(run_dir, f"{c.name}-{spec['mode']}.log")
    s0 = server.server_cpu() if server else None
    with open(log, "ab") as err:
        err.write(f"\n==== {time.strftime('%H:%M:%S')} {json.dumps(spec)}\n".encode())
        err.flush()
        proc = subprocess.Popen([c.python, WORKER, json.dumps(spec)], stdout=subprocess.PIPE,
                                stderr=err, env=env, cwd=run_dir, start_new_session=True)
        _running[proc.pid] = proc
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise WorkerError(f"no answer within {timeout:.0f}s{log_tail(log)}")
        finally:
            _kill_group(proc)  # nothing of this run may linger into the next
    lines = out.decode(errors="replace").strip().splitlines()
    if not lines:
        raise WorkerError(f"worker exited with {proc.returncode} and no answer{log_tail(log)}")
    ans = json.loads(lines[-1])
    if not ans.get("ok"):
        raise WorkerError(ans.get("error", "failed") + "\n" + ans.get("traceback", ""))
    c.version = ans.get("version")
    if server:
        ans["server_cpu"] = server.server_cpu() - s0
    return ans


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    _running.pop(proc.pid, None)


@dataclass
class Part:
    name: str     # s3 | ttfb | local (run_group and summarize read .name and .title)
    title: str
    mode: str     # the worker's mode
    data: DataSet
    scheme: str   # s3 | file
    shuffle: bool
    rows: list = field(default_factory=list)


def part_runners(part: Part, clients: list, args: argparse.Namespace, env: dict,
                 run_dir: str, server: Optional[Nginx]) -> list:
    runners = []
    for c in clients:
        if c.error or part.name not in c.parts:
            continue
        uri = (f"s3://{part.data.bucket}/" if part.scheme == "s3"
               else f"file://{part.data.path}/")
        spec = {"mode": part.mode, "client": c.kind, "uri": uri,
                "endpoint": server.endpoint if server else None, "region": REGION,
                "count": part.data.count, "size": part.data.size,
                "crcs": part.data.crcs_path, "batch_size": args.batch_size,
                "workers": c.workers, "shuffle": part.shuffle, "stall_s": args.stall}

        def run(verify: bool, c: Client = c, spec: dict = spec) -> Sample:
            # every repetition is verified (after its clock): `verify` is always on
            a = run_worker(c, spec, env, run_dir, args.timeout, server)
            extra = {k: a[k] for k in ("cpu_self", "cpu_children", "batches", "first_batch_s",
                                       "last_batch_s", "construct_s", "shutdown_s",
                                       "crc_checked") if k in a}
            return Sample(a["wall"], a["cpu"], a["bytes"], a["files"], a.get("server_cpu"),
                          extra)
        runners.append((c.name, run))
    return runners


# ---- listing check -------------------------------------------------------------------

def check_listings(data: list, clients: list, env: dict, run_dir: str, server: Nginx,
                   failures: dict) -> list:
    """Every client's listing of each bucket against the expected keys."""
    pythons = {"s3dlio": sys.executable,
               "s3dlio-ref": next((c.python for c in clients
                                   if c.name.startswith("ref") and not c.error), None),
               "boto3": next((c.python for c in clients if c.kind == "boto3-map"
                              and not c.error), None),
               "s3tc": next((c.python for c in clients if c.kind.startswith("s3tc")
                             and not c.error), None)}
    out = []
    for ds in data:
        want = hashlib.sha256("\n".join(ds.keys()).encode()).hexdigest()
        for lister, py in pythons.items():
            if not py:
                continue
            c = Client(f"list-{lister}", "list", py, 0, "check", ())
            spec = {"mode": "list", "client": lister.split("-")[0], "uri": f"s3://{ds.bucket}/",
                    "endpoint": server.endpoint, "region": REGION, "shuffle": False}
            try:
                a = run_worker(c, spec, env, run_dir, 300, server)
                ok = a["count"] == ds.count and a["sha256"] == want
                err = None if ok else (f"{a['count']} keys (want {ds.count}), first "
                                       f"{a['first']}, last {a['last']}")
            except WorkerError as e:
                a, ok, err = {}, False, str(e)[-1000:]
            if not ok:
                failures[f"list/{ds.bucket}/{lister}"] = err
            out.append({"bucket": ds.bucket, "lister": lister, "ok": ok,
                        "count": a.get("count"), "wall_s": a.get("wall"), "error": err})
    return out


# ---- summary and report ----------------------------------------------------------------

def add_ratios(part: Part) -> None:
    rows = [r for r in part.rows if r.get("objps_median")]
    refs = [r for r in rows if r["role"] == "reference"]
    best_ref = max(refs, key=lambda r: r["objps_median"], default=None)
    boto = next((r for r in rows if r["client"] == "boto3-map"), None)
    base = next((r for r in rows if r["role"] == "baseline"), None)
    for r in rows:
        if part.mode == "first_batch":
            ttfb = r["wall_s_median"]
            r["ttfb_s_median"], r["ttfb_s_best"] = ttfb, min(s["wall"] for s in r["samples"])
            r["construct_s_median"] = median([s["extra"].get("construct_s")
                                              for s in r["samples"]])
            fastest_ref = min((x["wall_s_median"] for x in refs), default=None)
            r["x_ref_ttfb"] = fastest_ref / ttfb if fastest_ref else None
            continue
        for tag, b in (("ref", best_ref), ("boto3", boto), ("base", base)):
            if b:
                r[f"x_{tag}_rate"] = r["objps_median"] / b["objps_median"]
                r[f"x_{tag}_cpu"] = (r["cpu_s_per_gb_median"] / b["cpu_s_per_gb_median"]
                                     if b["cpu_s_per_gb_median"] else None)
        if best_ref:
            r["ref_basis"] = best_ref["client"]


def targets(parts: list) -> list:
    out = []

    def row(part: str, client: str) -> Optional[dict]:
        p = next((p for p in parts if p.name == part), None)
        return next((r for r in p.rows if r["client"] == client and r.get("objps_median")),
                    None) if p else None

    for name in ("s3dlio-map", "s3dlio-iter"):
        r = row("s3", name)
        if r and r.get("x_ref_rate") is not None:
            v = r["x_ref_rate"]
            out.append({"target": f"s3: {name} samples/s vs best Rust ref", "value": v,
                        "goal": ">= 1.0x", "met": v >= 1.0, "basis": r["ref_basis"]})
        if r and r.get("x_boto3_rate") is not None:
            v = r["x_boto3_rate"]
            out.append({"target": f"s3: {name} samples/s vs boto3 map", "value": v,
                        "goal": ">= 2x", "met": v >= 2.0, "basis": "boto3-map"})
    r = row("ttfb", "s3dlio-iter")
    if r:
        v = r["ttfb_s_median"]
        out.append({"target": "ttfb: s3dlio-iter (streamed listing), seconds", "value": v,
                    "goal": "< 1 s", "met": v < 1.0, "basis": "-"})
    return out


def print_report(parts: list, tgts: list, listings: list) -> None:
    for p in parts:
        if p.mode == "epoch":
            base = "the plain open().read() map" if p.name == "local" else "best Rust ref row"
            print(f"\n{p.name}: {p.title} (medians; MB = 10^6 B, GB = 10^9 B; x-ref: this / "
                  f"{base}; CPU = client process + DataLoader workers)")
            cols = ["client", "workers", "reps", "samples/s", "best", "MB/s", "CPU s/GB",
                    "x-ref rate", "x-ref CPU"]
            if p.name == "s3":
                cols += ["x-boto3 rate", "x-boto3 CPU"]
            tag = "base" if p.name == "local" else "ref"
            lines = []
            for r in p.rows:
                if r.get("error"):
                    lines.append([r["client"], r["workers"], 0, "-", "-", "-", "-", "not run",
                                  "(below)"] + (["", ""] if p.name == "s3" else []))
                    continue
                line = [r["client"], r["workers"], r["reps"], fmt(r["objps_median"], ",.0f"),
                        fmt(r["objps_best"], ",.0f"), fmt(r["mbps_median"], ",.0f"),
                        fmt(r["cpu_s_per_gb_median"], ".3f"),
                        fmt(r.get(f"x_{tag}_rate"), ".2f"), fmt(r.get(f"x_{tag}_cpu"), ".2f")]
                if p.name == "s3":
                    line += [fmt(r.get("x_boto3_rate"), ".2f"), fmt(r.get("x_boto3_cpu"), ".2f")]
                lines.append(line)
            _util.print_table(cols, lines, align_left=(0,))
        else:
            print(f"\n{p.name}: {p.title} (medians; from making the dataset to the first "
                  "batch; x-ref: fastest Rust ref row / this)")
            _util.print_table(
                ["client", "workers", "reps", "first batch s", "best s", "construct s", "x-ref"],
                [[r["client"], r["workers"], r["reps"], fmt(r["ttfb_s_median"], ".3f"),
                  fmt(r["ttfb_s_best"], ".3f"), fmt(r["construct_s_median"], ".3f"),
                  fmt(r.get("x_ref_ttfb"), ".2f")] if not r.get("error") else
                 [r["client"], r["workers"], 0, "not run", "-", "-", "(below)"]
                 for r in p.rows], align_left=(0,))
        for r in p.rows:
            if r.get("error"):
                print(f"  not run: {r['client']}: {r['error'].strip().splitlines()[0][:240]}")
    if listings:
        bad = [x for x in listings if not x["ok"]]
        print(f"\nlisting check (static ListObjectsV2 pages): {len(listings) - len(bad)} of "
              f"{len(listings)} client/bucket listings gave exactly the expected keys"
              + "".join(f"\n  WRONG: {x['lister']} {x['bucket']}: {x['error']}" for x in bad))
    _util.print_goal_targets("DataLoader issue", tgts)


# ---- main -------------------------------------------------------------------------------

def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    p = _cli.parser(__doc__)
    p.add_argument("--quick", action="store_true",
                   help="1,024 x 256 KiB and 10,000 x 1 KiB (~2 min)")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per client (>= 3)")
    _cli.add_rounds(p, "part", 300.0, say_budget=False)
    p.add_argument("--only", default=",".join(PARTS), help="parts: s3,ttfb,local (default all)")
    p.add_argument("--clients", default="",
                   help="comma-separated client names (see the table; default all)")
    p.add_argument("--count", type=int, help="objects for s3/local (default 4096; quick 1024)")
    p.add_argument("--size", type=_util.parse_size, default=256 << 10, help="default 256KiB")
    p.add_argument("--small-count", type=int,
                   help="objects for ttfb (default 100000; quick 10000)")
    p.add_argument("--small-size", type=_util.parse_size, default=1 << 10, help="default 1KiB")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=4, help="DataLoader num_workers (default 4)")
    p.add_argument("--stall", type=int, default=15,
                   help="DataLoader(timeout=): seconds without a batch before a run fails")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for one run")
    p.add_argument("--dir", default="/tmp/s3dlio-bench-dl",
                   help="where the data sets are made once and reused")
    p.add_argument("--nginx", default="nginx")
    p.add_argument("--nginx-workers", type=int, default=1)
    p.add_argument("--ref-venv", default="/tmp/s3dlio-ref-venv")
    p.add_argument("--ref-version", default="0.10.0")
    p.add_argument("--s3tc-venv", default="/tmp/s3dlio-s3tc-venv")
    p.add_argument("--s3tc-packages", default="s3torchconnector==1.5.0")
    p.add_argument("--no-install", action="store_true", help="never create venvs or pip install")
    _cli.add_output(p, "dataloader-<timestamp>")
    args = p.parse_args(argv)
    args.count = args.count or (1024 if args.quick else 4096)
    args.small_count = args.small_count or (10_000 if args.quick else 100_000)
    args.parts = _cli.only_ordered(p, args.only, PARTS)
    args.only_clients = _cli.names(args.clients)
    if args.reps < 3:
        p.error("--reps must be at least 3 (the medians need them)")
    if args.size < 8 or args.small_size < 8:
        p.error("objects must be at least 8 bytes (they start with their index)")
    return args


def main(argv: Optional[list] = None) -> int:
    args = parse_args(argv)
    t_start, stamp = _session.clock()
    needs_s3 = bool({"s3", "ttfb"} & set(args.parts))
    info = nginx_info(args.nginx)
    if needs_s3 and (not info["path"] or not info["dav"]):
        print("nginx with the dav module is needed (Debian: apt-get install nginx-light); "
              f"found: {info['path']} dav={info['dav']}", file=sys.stderr)
        return 2
    load0 = _session.load_note(_session.COMPARE_HINT)
    setup_log: list = []
    clients = build_clients(args, setup_log)
    for line in setup_log:
        print(line, file=sys.stderr)
    for c in clients:
        if c.error:
            print(f"client {c.name}: not run: {c.error.splitlines()[0][:300]}", file=sys.stderr)

    big = make_dataset(args.dir, args.count, args.size)
    small = make_dataset(args.dir, args.small_count, args.small_size)
    parts = []
    if "s3" in args.parts:
        parts.append(Part("s3", f"DataLoader epoch over {big.title()} on loopback nginx",
                          "epoch", big, "s3", True))
    if "ttfb" in args.parts:
        parts.append(Part("ttfb", f"time to first batch, {small.title()} ({small.pages} "
                          "listing pages)", "first_batch", small, "s3", False))
    if "local" in args.parts:
        parts.append(Part("local", f"DataLoader epoch over {big.title()} files, page cache "
                          "warm", "epoch", big, "file", True))
    data = list({id(p.data): p.data for p in parts}.values())
    data_notes = {}
    for ds in data:
        data_notes[ds.bucket] = ensure_data(ds)
        print(f"data {ds.bucket} ({ds.title()}) in {ds.path} "
              f"({_util.fs_type(ds.path)}): {data_notes[ds.bucket]}; page cache warmed in "
              f"{warm(ds):.1f}s", file=sys.stderr)

    run_dir = tempfile.mkdtemp(prefix="s3dlio-dlbench-")
    server: Optional[Nginx] = None
    failures: dict = {}
    listings: list = []

    def stop() -> None:
        for proc in list(_running.values()):
            _kill_group(proc)
        if server:
            server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)

    with _session.Interruptible("stopping the workers and nginx", stop) as run:
        if needs_s3:
            server = Nginx(os.path.join(args.dir, "s3"), workers=args.nginx_workers,
                           binary=args.nginx, list_root=os.path.join(args.dir, "lists")).start()
            print(f"nginx {info['version']} on {server.endpoint}, {args.nginx_workers} "
                  "worker(s), static ListObjectsV2 pages", file=sys.stderr)
        env = worker_env(server.endpoint if server else "http://127.0.0.1:9", {}, run_dir)
        if server:
            t0 = time.perf_counter()
            listed = list({p.data.bucket: p.data for p in parts if p.scheme == "s3"}.values())
            listings = check_listings(listed, clients, env, run_dir, server, failures)
            print(f"listing check in {time.perf_counter() - t0:.1f}s: "
                  f"{sum(x['ok'] for x in listings)}/{len(listings)} right", file=sys.stderr)
        for p in parts:
            runners = part_runners(p, clients, args, env, run_dir,
                                   server if p.scheme == "s3" else None)
            taking_part = [c for c in clients if p.name in c.parts]
            for c, row in zip(taking_part, run_rows(p, runners, taking_part, args, failures)):
                row["workers"] = c.workers
                p.rows.append(row)
            add_ratios(p)
    if run.interrupted:
        return 130

    tgts = targets(parts)
    print_report(parts, tgts, listings)
    _session.print_failures(failures)
    total = _session.print_total(t_start, load0, " (above ~0.3, something else was running)")
    _util.save_result("dataloader", stamp, argv, args, {
        "env": _util.environment({"nginx": info["version"], "nginx_workers": args.nginx_workers,
                                  "data_fs_type": _util.fs_type(args.dir), "data": data_notes,
                                  "page_cache": "warm: every file read once before timing",
                                  "loadavg_start": load0, "loadavg_end": os.getloadavg()}),
        "clients": [{"name": c.name, "kind": c.kind, "role": c.role, "python": c.python,
                     "dataloader_workers": c.workers, "version": c.version, "note": c.note,
                     "error": c.error} for c in clients],
        "setup": setup_log, "listings": listings, "targets": tgts, "failures": failures,
        "total_wall_s": total,
        "parts": [{"name": p.name, "title": p.title, "rows": p.rows} for p in parts],
    })
    expected = {"s3/ref-map-w4", "s3/ref-iter-w4"}  # the reference's known failures
    return 1 if set(failures) - expected else 0


if __name__ == "__main__":
    sys.exit(main())
