#!/usr/bin/env python3
"""Checkpoints: s3dlio's save_checkpoint/load_checkpoint and DCP storage
against torch.save/torch.load and DCP's own file system storage, in one run.

Every repetition of every case runs in a fresh process
(bench/_checkpoint_worker.py), which builds the state_dict before the clock
starts, so the high-water mark of its RSS during the call is that call's alone.

  local  save_checkpoint(file://) (fsync and not), torch.save (fsync and not),
         DCP FileSystemWriter, s3dlio.torch.StorageWriter(file://),
         save_checkpoint(direct://), and the matching loads, on --dir
         (target: ours >= 1.5x torch.save / torch.load)
  s3     save_checkpoint(s3://) vs torch.save into BytesIO + boto3
         upload_fileobj, StorageWriter(s3://), and the matching loads, on a
         loopback moto server (SigV4 checked)

    .venv/bin/python bench/checkpoint.py            # 1 GiB state_dict, 3 reps
    .venv/bin/python bench/checkpoint.py --quick    # 128 MiB, 3 reps
    .venv/bin/python bench/checkpoint.py --only local --reps 5
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _cli  # noqa: E402
import _session  # noqa: E402
import _util  # noqa: E402
from _moto import moto_bucket  # noqa: E402
from _oneshot import CaseFailed, group_failures, run_worker  # noqa: E402
from _proc import mem_available, proc_cpu, status  # noqa: E402
from _util import GB, fmt, human_bytes, median  # noqa: E402

WORKER = str(HERE / "_checkpoint_worker.py")
MiB, GiB = 1 << 20, 1 << 30
BUCKET = "bench-ckpt"
SEED = 20240801
SPEED_TARGET = 1.5
#: The issue's memory bound for a save: the largest tensor plus the writer's
#: in-flight parts at default options (max_in_flight 4 x part 16 MiB).
IN_FLIGHT_PARTS = 4 * 16 * MiB
GROUPS = ("local", "s3")
#: moto answers every ranged GET by reading the whole object, so ranged
#: readers cost it O(size^2): 1 GiB takes minutes per load.
S3_DEFAULT_MAX = 256 * MiB


@dataclass
class Case:
    name: str                   # row label
    group: str                  # local | s3
    op: str                     # save | load
    role: str                   # subject (s3dlio) | baseline (torch) | reference (DCP's own)
    spec: dict                  # for the worker
    peer: Optional[str] = None  # the row this one is divided by
    target: Optional[str] = None  # path or prefix the save writes (removed before it)
    reads: Optional[str] = None   # local loads: the path they read (warmed before them)
    samples: list = field(default_factory=list)


# ---- cases -------------------------------------------------------------------------

TORCH_SAVE, TORCH_SAVE_FSYNC = "torch.save", "torch.save + fsync"
TORCH_LOAD = "torch.load(weights_only=True)"
DCP_SAVE, DCP_LOAD = "DCP FileSystemWriter", "DCP FileSystemReader"
S3_TORCH_SAVE = "torch.save BytesIO + boto3 upload_fileobj"
S3_TORCH_LOAD = "boto3 download_fileobj + torch.load"


def local_cases(work: str, direct: bool) -> tuple[list, list]:
    def p(name: str) -> str:
        return os.path.join(work, name)

    saves = [
        Case("s3dlio save_checkpoint", "local", "save", "subject",
             {"case": "ckpt-save", "uri": "file://" + p("ours.ckpt"), "fsync": True},
             TORCH_SAVE_FSYNC, p("ours.ckpt")),
        Case("s3dlio save_checkpoint fsync=False", "local", "save", "subject",
             {"case": "ckpt-save", "uri": "file://" + p("ours-nofsync.ckpt"), "fsync": False},
             TORCH_SAVE, p("ours-nofsync.ckpt")),
        Case(TORCH_SAVE_FSYNC, "local", "save", "baseline",
             {"case": "torch-save", "path": p("torch.pt"), "fsync": True}, None, p("torch.pt")),
        Case(TORCH_SAVE, "local", "save", "baseline",
             {"case": "torch-save", "path": p("torch-nofsync.pt"), "fsync": False}, None,
             p("torch-nofsync.pt")),
        Case(DCP_SAVE, "local", "save", "reference",
             {"case": "dcp-save", "path": p("dcp")}, TORCH_SAVE_FSYNC, p("dcp")),
        Case("s3dlio StorageWriter file://", "local", "save", "subject",
             {"case": "s3dlio-dcp-save", "uri": "file://" + p("dcp-s3dlio")}, DCP_SAVE,
             p("dcp-s3dlio")),
    ]
    loads = [
        Case("s3dlio load_checkpoint", "local", "load", "subject",
             {"case": "ckpt-load", "uri": "file://" + p("ours.ckpt")}, TORCH_LOAD,
             reads=p("ours.ckpt")),
        Case(TORCH_LOAD, "local", "load", "baseline",
             {"case": "torch-load", "path": p("torch.pt")}, reads=p("torch.pt")),
        Case(DCP_LOAD, "local", "load", "reference", {"case": "dcp-load", "path": p("dcp")},
             TORCH_LOAD, reads=p("dcp")),
        Case("s3dlio StorageReader file://", "local", "load", "subject",
             {"case": "s3dlio-dcp-load", "uri": "file://" + p("dcp-s3dlio")}, DCP_LOAD,
             reads=p("dcp-s3dlio")),
    ]
    if direct:
        saves.append(Case("s3dlio save_checkpoint direct://", "local", "save", "subject",
                          {"case": "ckpt-save", "uri": "direct://" + p("direct.ckpt"),
                           "fsync": True}, TORCH_SAVE_FSYNC, p("direct.ckpt")))
        loads.append(Case("s3dlio load_checkpoint direct:// (no page cache)", "local", "load",
                          "subject", {"case": "ckpt-load", "uri": "direct://" + p("direct.ckpt")},
                          TORCH_LOAD))
    for c in saves + loads:
        c.spec["sync"] = True
    return saves, loads


def s3_cases() -> tuple[list, list]:
    saves = [
        Case("s3dlio save_checkpoint s3://", "s3", "save", "subject",
             {"case": "ckpt-save", "uri": f"s3://{BUCKET}/ours.ckpt", "fsync": True},
             S3_TORCH_SAVE, "ours.ckpt"),
        Case(S3_TORCH_SAVE, "s3", "save", "baseline",
             {"case": "torch-s3-save", "bucket": BUCKET, "key": "torch.pt"}, None, "torch.pt"),
        Case("s3dlio StorageWriter s3://", "s3", "save", "subject",
             {"case": "s3dlio-dcp-save", "uri": f"s3://{BUCKET}/dcp"}, S3_TORCH_SAVE, "dcp/"),
    ]
    loads = [
        Case("s3dlio load_checkpoint s3://", "s3", "load", "subject",
             {"case": "ckpt-load", "uri": f"s3://{BUCKET}/ours.ckpt"}, S3_TORCH_LOAD),
        Case(S3_TORCH_LOAD, "s3", "load", "baseline",
             {"case": "torch-s3-load", "bucket": BUCKET, "key": "torch.pt"}),
        Case("s3dlio StorageReader s3://", "s3", "load", "subject",
             {"case": "s3dlio-dcp-load", "uri": f"s3://{BUCKET}/dcp"}, S3_TORCH_LOAD),
    ]
    return saves, loads


# ---- running -------------------------------------------------------------------------

def remove_path(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def tree_size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(path)
                   for n in names)
    return os.path.getsize(path)


def warm(paths: list) -> None:
    """Reads every file once (untimed), so loads find them in the page cache."""
    for path in paths:
        files = ([os.path.join(d, n) for d, _, names in os.walk(path) for n in names]
                 if os.path.isdir(path) else [path])
        for name in files:
            with open(name, "rb", buffering=0) as f:
                while f.read(16 * MiB):
                    pass


def rotated(cases: list, r: int) -> list:
    k = r % len(cases) if cases else 0
    return cases[k:] + cases[:k]


def run_rounds(saves: list, loads: list, reps: int, one: Callable[[Case, dict], dict],
               between: Callable[[], None], args: argparse.Namespace, sizes: dict) -> None:
    """`reps` rounds; in each, every save (order rotated), then `between()`,
    then every load (rotated).  Each load reads what its save wrote in the
    same round."""
    for r in range(reps):
        for phase, cases in (("save", saves), ("load", loads)):
            if phase == "load":
                between()
            for case in rotated(cases, r):
                t0 = time.perf_counter()
                spec = dict(case.spec, size=sizes["size"], seed=SEED,
                            threads=args.torch_threads)
                if args.profile and case.role == "subject":
                    tag = case.name.replace(" ", "_").replace("/", "").replace(":", "")
                    spec["profile"] = os.path.join(args.profile, f"{tag}-{r}.pstats")
                sample = one(case, spec)
                case.samples.append(sample)
                extra = sample.get("peak_extra")
                print(f"  [{r + 1}/{reps}] {case.name}: {sample['wall']:.2f}s "
                      f"({sizes['data_bytes'] / sample['wall'] / GB:.2f} GB/s), peak extra "
                      f"{fmt(extra / MiB if extra is not None else None, ',.0f')} MiB "
                      f"({time.perf_counter() - t0:.1f}s)", file=sys.stderr)


def run_local(args: argparse.Namespace, saves: list, loads: list, run_dir: str,
              sizes: dict) -> None:
    def one(case: Case, spec: dict) -> dict:
        if case.target:
            remove_path(case.target)  # every save is to a new name
        sample = run_worker(WORKER, spec, os.environ.copy(), run_dir, args.case_timeout)
        if case.target:
            sample["stored_bytes"] = tree_size(case.target)
            if sample["stored_bytes"] < sizes["data_bytes"]:
                raise CaseFailed(f"{case.name}: stored {sample['stored_bytes']} bytes, less "
                                 f"than the {sizes['data_bytes']} of data")
            stray = [n for n in os.listdir(os.path.dirname(case.target)) if ".s3dlio-" in n]
            if stray:
                raise CaseFailed(f"{case.name}: temporary files left: {stray}")
        return sample

    def between() -> None:
        # The two save_checkpoint files must be identical in size (same format).
        sizes = {c.samples[-1]["stored_bytes"] for c in saves if c.spec["case"] == "ckpt-save"}
        if len(sizes) != 1:
            raise CaseFailed(f"save_checkpoint files differ in size: {sizes}")
        os.sync()
        warm([c.reads for c in loads if c.reads])

    run_rounds(saves, loads, args.reps, one, between, args, sizes)


def run_s3(args: argparse.Namespace, saves: list, loads: list, run_dir: str,
           sizes: dict) -> dict:
    with moto_bucket(BUCKET, run_dir) as (server, client, env):
        info: dict = {"endpoint": server.endpoint}
        pid = server.process.pid

        def delete_prefix(prefix: str) -> None:
            # moto keeps every object in memory: drop the old one before a save
            keys = [o["Key"] for o in client.list_objects_v2(
                Bucket=BUCKET, Prefix=prefix).get("Contents", [])]
            for key in keys:
                client.delete_object(Bucket=BUCKET, Key=key)

        def one(case: Case, spec: dict) -> dict:
            if case.target:
                delete_prefix(case.target)
            cpu0 = proc_cpu(pid)
            sample = run_worker(WORKER, dict(spec, endpoint=server.endpoint), env, run_dir,
                                args.case_timeout)
            cpu1 = proc_cpu(pid)
            sample["server_cpu"] = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
            if case.target:
                objects = client.list_objects_v2(Bucket=BUCKET, Prefix=case.target)
                sample["stored_bytes"] = sum(o["Size"] for o in objects.get("Contents", []))
                if sample["stored_bytes"] < sizes["data_bytes"]:
                    raise CaseFailed(f"{case.name}: stored {sample['stored_bytes']} bytes")
            return sample

        run_rounds(saves, loads, args.reps, one, lambda: None, args, sizes)
        info["server_peak_rss"] = status("VmHWM", pid)
    return info


# ---- report --------------------------------------------------------------------------

def describe(info: dict) -> str:
    layout = info["layout"]
    dtypes = ", ".join(f"{k} {human_bytes(v)}" for k, v in layout["bytes_by_dtype"].items())
    return (f"{layout['tensors']} tensors, {human_bytes(info['data_bytes'])} ({dtypes}), "
            f"largest {layout['largest_tensor']} {human_bytes(info['largest'])}")


def summarize(case: Case, data_bytes: int) -> dict:
    walls = [s["wall"] for s in case.samples]
    rates = [data_bytes / w / GB for w in walls]
    extras = [s["peak_extra"] for s in case.samples if s.get("peak_extra") is not None]
    server = [s["server_cpu"] for s in case.samples if s.get("server_cpu") is not None]
    return {"name": case.name, "group": case.group, "op": case.op, "role": case.role,
            "peer": case.peer, "spec": case.spec, "reps": len(case.samples),
            "wall_median": median(walls), "GBps_median": median(rates),
            "GBps_best": max(rates, default=None),
            "cpu_s_per_GB": median([s["cpu"] / (data_bytes / GB) for s in case.samples]),
            "server_cpu_s_per_GB": median([c / (data_bytes / GB) for c in server]),
            "server_busy": median([s["server_cpu"] / s["wall"] for s in case.samples
                                   if s.get("server_cpu") is not None]),
            "peak_extra_max": max(extras, default=None),
            "stored_bytes": case.samples[-1].get("stored_bytes") if case.samples else None,
            "samples": case.samples}


def targets(rows: list, largest: dict) -> list:
    out = []
    by_name = {(r["group"], r["name"]): r for r in rows}

    def speed(group: str, name: str, label: str, target: Optional[float]) -> None:
        r = by_name.get((group, name))
        if r is None:
            return
        x = r["x_peer"]
        out.append({"target": f"{label}: {name} vs {r['peer']}"
                              + (f" >= {target}x" if target else " (no target)"),
                    "value": f"{fmt(x, '.2f')}x",
                    "met": (bool(x and x >= target) if target else None)})

    speed("local", "s3dlio save_checkpoint", "local save", SPEED_TARGET)
    speed("local", "s3dlio save_checkpoint fsync=False", "local save", SPEED_TARGET)
    speed("local", "s3dlio load_checkpoint", "local load", SPEED_TARGET)
    speed("local", "s3dlio StorageWriter file://", "local DCP save", None)
    speed("local", "s3dlio StorageReader file://", "local DCP load", None)
    speed("s3", "s3dlio save_checkpoint s3://", "s3 save", None)
    speed("s3", "s3dlio load_checkpoint s3://", "s3 load", None)
    for r in rows:
        if r["op"] == "save" and r["spec"]["case"] == "ckpt-save" and r["peak_extra_max"]:
            bound = largest[r["group"]] + IN_FLIGHT_PARTS
            out.append({"target": f"memory: {r['name']} peak extra <= largest tensor "
                                  f"{largest[r['group']] / MiB:,.0f} MiB + 4 x 16 MiB parts "
                                  f"= {bound / MiB:,.0f} MiB",
                        "value": f"{r['peak_extra_max'] / MiB:,.0f} MiB",
                        "met": r["peak_extra_max"] <= bound})
    return out


def print_report(rows: list, tgts: list) -> None:
    def cells(r: dict) -> list:
        base = r["role"] == "baseline"
        extra = r["peak_extra_max"]
        return [r["group"], r["op"], r["name"], r["reps"], fmt(r["GBps_median"], ".3f"),
                fmt(r["GBps_best"], ".3f"), "1.00" if base else fmt(r["x_peer"], ".2f"),
                fmt(r["cpu_s_per_GB"], ".2f"), "1.00" if base else fmt(r["x_peer_cpu"], ".2f"),
                fmt(r["server_cpu_s_per_GB"], ".2f"),
                fmt(extra / MiB if extra is not None else None, ",.0f"), r["peer"] or ""]

    print("\n" + _util.markdown_table(
        ["group", "op", "case", "reps", "GB/s median", "GB/s best", "x peer", "CPU s/GB",
         "x peer CPU", "srv CPU s/GB", "peak extra MiB", "peer"],
        [cells(r) for r in rows], right=range(3, 11)))
    _util.print_targets_markdown(tgts)


# ---- main ------------------------------------------------------------------------------

def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    p = _cli.parser(__doc__)
    p.add_argument("--quick", action="store_true", help="a 128 MiB state_dict")
    p.add_argument("--size", type=_util.parse_size,
                   help="state_dict size (default 1GiB; --quick 128MiB)")
    p.add_argument("--s3-size", type=_util.parse_size,
                   help="state_dict size for the s3 group (default: --size, at most 256MiB: "
                        "moto reads the whole object for every ranged GET)")
    p.add_argument("--reps", type=int, default=3, help="rounds of every case (default 3)")
    p.add_argument("--only", default=",".join(GROUPS), help="groups: local,s3")
    p.add_argument("--dir", default="/tmp/s3dlio-bench-ckpt",
                   help="where the local cases write (default /tmp/s3dlio-bench-ckpt; "
                        "a disk file system)")
    p.add_argument("--no-direct", action="store_true", help="leave out the direct:// rows")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="torch.set_num_threads in the workers (default: torch's own)")
    _cli.add_worker_limits(p)
    _cli.add_output(p, "checkpoint-<timestamp>")
    args = p.parse_args(argv)
    args.size = args.size or (128 * MiB if args.quick else GiB)
    args.s3_size = args.s3_size or min(args.size, S3_DEFAULT_MAX)
    args.only_groups = _cli.only_set(p, args.only, GROUPS)
    if args.reps < 1 or args.size < 4 * MiB:
        p.error("--reps must be positive and --size at least 4 MiB")
    return args


def main(argv: Optional[list] = None) -> int:
    args = parse_args(argv)
    t_start, stamp, load0 = _session.start()
    notes: list = []
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    os.makedirs(args.dir, exist_ok=True)
    fs = _util.fs_type(args.dir)
    if fs in ("tmpfs", "ramfs", "overlay"):
        notes.append(f"--dir {args.dir} is on {fs}, not a disk: the local numbers measure "
                     "memory copies, and direct:// falls back to buffered I/O")
    run_dir = tempfile.mkdtemp(prefix="s3dlio-bench-ckpt-run-")
    work = tempfile.mkdtemp(prefix="run-", dir=args.dir)
    # Each group's state_dict: --size for local, --s3-size for S3.
    sizes: dict = {}
    for group, size in (("local", args.size), ("s3", args.s3_size)):
        if group not in args.only_groups:
            continue
        layout = run_worker(WORKER, {"case": "describe", "size": size, "seed": SEED},
                            os.environ.copy(), run_dir, 120)
        sizes[group] = {"size": size, "data_bytes": layout["data_bytes"],
                        "largest": layout["largest_tensor_bytes"], "layout": layout}
        print(f"{group}: {describe(sizes[group])}", file=sys.stderr)

    groups: dict = {}
    if "local" in args.only_groups:
        need = 8 * sizes["local"]["data_bytes"] + GiB
        if shutil.disk_usage(work).free < need:
            raise SystemExit(f"{args.dir}: less than {human_bytes(need)} free "
                             "(the local cases keep 7 checkpoints at once)")
        groups["local"] = local_cases(work, not args.no_direct)
    if "s3" in args.only_groups:
        # moto holds the three checkpoints plus a joined copy while completing one.
        if mem_available() < 6 * sizes["s3"]["data_bytes"] + 2 * GiB:
            notes.append("s3: skipped, MemAvailable is under 6x the state_dict + 2 GiB "
                         "(moto keeps every object in memory)")
        else:
            groups["s3"] = s3_cases()
    s3_info: dict = {}
    failures: dict = {}

    def clean() -> None:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        try:
            os.rmdir(args.dir)  # only if empty
        except OSError:
            pass

    with _session.Interruptible("cleaning up", clean) as run:
        for name, (saves, loads) in groups.items():
            print(f"running {name} ({args.reps} rounds): "
                  f"{', '.join(c.name for c in saves + loads)}", file=sys.stderr)
            t0 = time.perf_counter()
            with group_failures(name, failures, 800):
                if name == "local":
                    run_local(args, saves, loads, run_dir, sizes["local"])
                else:
                    s3_info = run_s3(args, saves, loads, run_dir, sizes["s3"])
            print(f"  {name}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    if run.interrupted:
        return 130

    rows = [summarize(c, sizes[name]["data_bytes"]) for name, (saves, loads) in groups.items()
            for c in saves + loads if c.samples]
    _util.add_peer_ratios(rows, {"x_peer": "GBps_median", "x_peer_cpu": "cpu_s_per_GB"})
    tgts = targets(rows, {g: v["largest"] for g, v in sizes.items()})
    print_report(rows, tgts)
    print()
    for group, info in sizes.items():
        print(f"{group} state_dict: {describe(info)}")
    print(f"{args.reps} rounds, medians; GB = 10^9 B of "
          f"tensor data per second.  local: {args.dir} ({fs}), every save to a new name after "
          "os.sync(); loads read the same round's save, page cache warm (each file read once "
          "before the loads) except direct://.  CPU s/GB: the worker process (all threads).  "
          "peak extra: VmHWM during the call minus VmRSS before it (for saves: after the "
          "state_dict was built; for loads it includes the loaded tensors).")
    if s3_info:
        busy = [r["server_busy"] for r in rows if r["group"] == "s3" and r["server_busy"]]
        print(f"s3: moto on {s3_info['endpoint']} (one Python process, SigV4 checked), "
              f"server CPU busy {min(busy):.0%}-{max(busy):.0%} of the call's wall time: "
              "moto is the bottleneck, so s3 GB/s says how hard a client drives it; "
              f"its peak RSS {fmt((s3_info.get('server_peak_rss') or 0) / MiB, ',.0f')} MiB."
              if busy else "")
    total = _session.print_closing(t_start, load0, failures, notes)

    import boto3
    import moto
    import torch
    _util.save_result("checkpoint", stamp, argv, args, {
        "env": _util.environment({"dir_fs_type": fs, "torch": torch.__version__,
                                  "boto3": boto3.__version__, "moto": moto.__version__,
                                  "loadavg_start": load0, "loadavg_end": os.getloadavg()}),
        "state_dict": {g: v["layout"] for g, v in sizes.items()},
        "memory_bound_bytes": {g: v["largest"] + IN_FLIGHT_PARTS for g, v in sizes.items()},
        "s3_server": s3_info, "notes": notes, "failures": failures, "targets": tgts,
        "total_wall_s": total, "rows": rows,
    })
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
