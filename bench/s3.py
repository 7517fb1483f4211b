#!/usr/bin/env python3
"""s3dlio over S3 against its peers, on a loopback nginx object server.

In one run: starts nginx (1 worker) as a path-style S3-like server on
127.0.0.1 with its own config, creates the objects, sets up the peers
(boto3 from the project venv; the Rust `s3dlio` from PyPI and awscrt +
obstore in venvs of their own, created when missing), checks how many HTTP
requests each client sends per object (nginx access log), then times every
client on every case with the repetitions interleaved, prints a table of
medians with ratios to the Rust reference, and writes JSON.

Cases (sizes are the defaults; --quick shrinks them):

  big    GET one 256 MiB object
  mid    GET 512 x 1 MiB, 64 in flight
  small  GET 2,000 x 16 KiB, 64 in flight
  put    PUT 256 x 1 MiB, 64 in flight

    .venv/bin/python bench/s3.py            # defaults, ~3-4 minutes on 2 cores
    .venv/bin/python bench/s3.py --quick    # ~1 minute
    .venv/bin/python bench/s3.py --only small,mid --clients s3dlio,s3dlio-ref --reps 7

See bench/README.md ("bench/s3.py") for what each row is and how to read it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402
import _session  # noqa: E402
import _util  # noqa: E402
from _nginx import Nginx, nginx_info  # noqa: E402
from _proc import proc_cpu  # noqa: E402
from _rpc import RPC_TIMEOUT, Worker, WorkerError  # noqa: E402
from _util import GB, MB, fmt, human_bytes, median  # noqa: E402
from _venv import ensure_venv, ref_probe, venv_python  # noqa: E402

HERE = Path(__file__).resolve().parent
WORKER = str(HERE / "_s3_worker.py")
BUCKET = "bench"
ACCESS_KEY, SECRET_KEY, REGION = "AKIDBENCHEXAMPLE", "bench/secret/not/checked/by/nginx", "us-east-1"
GROUP_ORDER = ["big", "mid", "small", "put"]


# ---- the objects ---------------------------------------------------------------

@dataclass
class Group:
    name: str           # big | mid | small | put
    title: str          # e.g. "GET 512 x 1 MiB"
    op: str             # worker case: get_one | get_many | put_many
    keys: list
    size: int
    verify: dict = field(default_factory=dict)  # key -> CRC-32 (GET groups)

    @property
    def total(self) -> int:
        return len(self.keys) * self.size


def make_pool(path: str, size: int = 4 << 20) -> bytes:
    pool = os.urandom(size)
    with open(path, "wb") as f:
        f.write(pool)
    return pool


def object_bytes(pool: bytes, index: int, size: int) -> bytes:
    """Object i: 8-byte index + a slice of the pool (the worker's Payloads.make)."""
    off = (index * 4096 * 7) % (len(pool) - size + 8)
    return index.to_bytes(8, "big") + pool[off:off + size - 8]


def write_objects(root: str, pool: bytes, prefix: str, count: int, size: int) -> tuple:
    keys, crcs = [], {}
    d = os.path.join(root, BUCKET, prefix)
    os.makedirs(d, exist_ok=True)
    for i in range(count):
        key = f"{prefix}/obj-{i:05d}"
        if size <= len(pool) - 8:
            data = object_bytes(pool, i, size)
            crc = zlib.crc32(data) & 0xFFFFFFFF
            with open(os.path.join(root, BUCKET, key), "wb") as f:
                f.write(data)
        else:  # big: the pool over and over, each 4 MiB chunk stamped with its index
            crc, left, chunk = 0, size, 0
            with open(os.path.join(root, BUCKET, key), "wb") as f:
                while left:
                    piece = (chunk.to_bytes(8, "big") + pool[8:])[:left]
                    f.write(piece)
                    crc = zlib.crc32(piece, crc)
                    left -= len(piece)
                    chunk += 1
            crc &= 0xFFFFFFFF
        keys.append(key)
        crcs[key] = crc
    return keys, crcs


def sample_verify(keys: list, crcs: dict) -> dict:
    picks = sorted({0, len(keys) // 2, len(keys) - 1})
    return {keys[i]: crcs[keys[i]] for i in picks}


def build_groups(args: argparse.Namespace, root: str, pool: bytes) -> list:
    groups = []
    if "big" in args.only_groups:
        keys, crcs = write_objects(root, pool, "big", 1, args.big_size)
        groups.append(Group("big", f"GET 1 x {human_bytes(args.big_size)}", "get_one", keys,
                            args.big_size, crcs))
    if "mid" in args.only_groups:
        keys, crcs = write_objects(root, pool, "mid", args.mid_count, args.mid_size)
        groups.append(Group("mid", f"GET {args.mid_count} x {human_bytes(args.mid_size)}",
                            "get_many", keys, args.mid_size, sample_verify(keys, crcs)))
    if "small" in args.only_groups:
        keys, crcs = write_objects(root, pool, "small", args.small_count, args.small_size)
        groups.append(Group("small", f"GET {args.small_count:,} x {human_bytes(args.small_size)}",
                            "get_many", keys, args.small_size, sample_verify(keys, crcs)))
    if "put" in args.only_groups:
        # PUT keys differ per client (put/<client>/obj-i); the worker builds the bodies.
        groups.append(Group("put", f"PUT {args.put_count} x {human_bytes(args.put_size)}",
                            "put_many", [f"obj-{i:05d}" for i in range(args.put_count)],
                            args.put_size))
    return groups


# ---- the clients -----------------------------------------------------------------

@dataclass
class ClientSpec:
    name: str                  # row label
    kind: str                  # worker client name, or "curl"
    python: Optional[str]      # interpreter (None for curl)
    role: str                  # subject (ours) | baseline (Rust ref) | peer | ceiling (curl)
    groups: tuple = tuple(GROUP_ORDER)
    env: dict = field(default_factory=dict)
    prestat: bool = False
    note: str = ""
    error: Optional[str] = None  # set when it cannot run; the row says why
    version: Optional[str] = None


def build_clients(args: argparse.Namespace, setup_log: list) -> list:
    ours_py = sys.executable
    ref_py = venv_python(args.ref_venv)
    peers_py = venv_python(args.peers_venv)
    ref_err = ensure_venv(args.ref_venv, [f"s3dlio=={args.ref_version}"],
                          ref_probe(args.ref_version), not args.no_install, setup_log)
    peers_err = ensure_venv(args.peers_venv, args.peer_packages.split(), "import awscrt.s3, obstore",
                            not args.no_install, setup_log)
    boto_err = None
    r = subprocess.run([ours_py, "-c", "import boto3"], capture_output=True, text=True,
                       timeout=60, cwd=tempfile.gettempdir())
    if r.returncode != 0:
        boto_err = f"boto3 is not importable in {ours_py}: {r.stderr.strip()[-300:]} (make setup)"
    curl = shutil.which("curl")
    ref = f"s3dlio-ref {args.ref_version}"
    specs = [
        ClientSpec("s3dlio", "s3dlio", ours_py, "subject",
                   note="this repo: get / get_many / put_many"),
        ClientSpec("s3dlio +get_many_stats", "s3dlio", ours_py, "subject", groups=("big",),
                   prestat=True, note="size cached by get_many_stats (untimed) before get()"),
        ClientSpec("s3dlio.get_into", "s3dlio-into", ours_py, "subject", groups=("big",),
                   note="into one reused, pre-faulted bytearray"),
        ClientSpec(ref, "s3dlio", ref_py, "baseline", error=ref_err,
                   note="Rust s3dlio from PyPI at its defaults"),
        ClientSpec(f"{ref} RANGE_OPT=0", "s3dlio", ref_py, "reference", error=ref_err,
                   env={"S3DLIO_ENABLE_RANGE_OPTIMIZATION": "0"},
                   note="S3DLIO_ENABLE_RANGE_OPTIMIZATION=0: no HEAD before GET"),
        ClientSpec("boto3", "boto3", ours_py, "peer", error=boto_err,
                   note=f"get_object/put_object in ThreadPoolExecutor({args.max_in_flight})"),
        ClientSpec("obstore", "obstore", peers_py, "peer", error=peers_err,
                   note="get/bytes; get_async/put_async under a semaphore"),
        ClientSpec("awscrt", "awscrt", peers_py, "peer", error=peers_err,
                   note="S3Client meta requests, bodies into bytearrays"),
        ClientSpec("curl", "curl", None, "ceiling",
                   error=None if curl else "curl not found",
                   note="curl CLI to /dev/null (--parallel --parallel-max N for batches)"),
    ]
    wanted = args.only_clients
    if wanted:
        known = {s.name.split()[0] for s in specs} | {s.name for s in specs}
        unknown = wanted - known
        if unknown:
            raise SystemExit(f"unknown client(s) in --clients: {sorted(unknown)}; "
                             f"known: {sorted(known)}")
        specs = [s for s in specs if s.name in wanted or s.name.split()[0] in wanted
                 or (s.role == "baseline")]  # the reference stays: it is the ratio base
    return specs


def worker_env(endpoint: str, extra: dict, run_dir: str) -> dict:
    env = _util.isolated_aws_env(run_dir, {
        "AWS_ENDPOINT_URL_S3": endpoint, "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def start_worker(spec: ClientSpec, endpoint: str, args: argparse.Namespace, run_dir: str,
                 pool_path: str) -> Worker:
    """A bench/_s3_worker.py process for one client, reused for every call."""
    assert spec.python, "curl has no worker"
    return Worker(spec, WORKER, worker_env(endpoint, spec.env, run_dir),
                  {"op": "init", "client": spec.kind, "endpoint": endpoint,
                   "bucket": BUCKET, "max_in_flight": args.max_in_flight,
                   "access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "region": REGION,
                   "pool_path": pool_path}, run_dir)


# ---- one repetition ------------------------------------------------------------

@dataclass
class Sample:
    wall: float
    cpu: float
    nbytes: int
    files: int
    server_cpu: Optional[float] = None
    extra: dict = field(default_factory=dict)


def put_keys(spec: ClientSpec, group: Group) -> list:
    tag = "".join(c if c.isalnum() else "-" for c in spec.name)
    return [f"put/{tag}/{k}" for k in group.keys]


def run_worker(w: Worker, group: Group, server: Nginx, verify: bool) -> Sample:
    keys = put_keys(w.spec, group) if group.op == "put_many" else group.keys
    cmd = {"op": "run", "case": group.op, "keys": keys, "size": group.size,
           "verify": group.verify if verify else {}, "prestat": w.spec.prestat}
    s0, p0 = server.server_cpu(), proc_cpu(w.proc.pid)
    ans = w.call(cmd)
    s1, p1 = server.server_cpu(), proc_cpu(w.proc.pid)
    if not ans.get("ok"):
        raise WorkerError(ans.get("error", "failed") + ("\n" + ans["traceback"]
                                                       if ans.get("traceback") else ""))
    extra = {"cpu_proc_rpc": (p1 - p0) if p0 is not None and p1 is not None else None}
    return Sample(ans["wall"], ans["cpu"], ans["bytes"], ans["files"], s1 - s0, extra)


def run_curl(group: Group, endpoint: str, args: argparse.Namespace, run_dir: str,
             server: Nginx, data_root: str, spec: ClientSpec) -> Sample:
    """curl to /dev/null (GET) or from files (PUT), timed from outside; CPU from
    wait4()'s rusage of the curl process."""
    wfmt = "%{http_code} %{size_download} %{size_upload} %{time_total}\\n"
    cmd = ["curl", "-s", "-S", "--no-progress-meter", "-w", wfmt]
    cfg = None
    if group.op == "get_one":
        cmd += ["-o", "/dev/null", f"{endpoint}/{BUCKET}/{group.keys[0]}"]
    else:
        cfg = os.path.join(run_dir, f"curl-{group.name}.cfg")
        with open(cfg, "w") as f:
            if group.op == "get_many":
                for k in group.keys:
                    f.write(f'url = "{endpoint}/{BUCKET}/{k}"\noutput = "/dev/null"\n')
            else:
                src = os.path.join(run_dir, "curl-put-src")
                if not os.path.isdir(src):  # upload sources, made once, page-cached
                    os.makedirs(src)
                    pool = open(os.path.join(run_dir, "pool.bin"), "rb").read()
                    for k in group.keys:
                        with open(os.path.join(src, k), "wb") as g:
                            g.write(object_bytes(pool, int(k.rsplit("-", 1)[1]), group.size))
                for k, pk in zip(group.keys, put_keys(spec, group)):
                    f.write(f'upload-file = "{os.path.join(src, k)}"\n'
                            f'url = "{endpoint}/{BUCKET}/{pk}"\noutput = "/dev/null"\n')
                cmd += ["-H", "Expect:"]
        cmd += ["--parallel", "--parallel-immediate", "--parallel-max", str(args.max_in_flight),
                "-K", cfg]
    out_path = os.path.join(run_dir, f"curl-{group.name}.out")
    err_path = os.path.join(run_dir, f"curl-{group.name}.err")
    with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
        s0 = server.server_cpu()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f)
        killer = threading.Timer(RPC_TIMEOUT, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # curl's own rusage, nobody else's
        finally:
            killer.cancel()
        wall = time.perf_counter() - t0
        s1 = server.server_cpu()
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    with open(out_path, "rb") as f:
        out = f.read()
    with open(err_path, "rb") as f:
        err = f.read()
    lines = out.decode().split()
    codes, sizes = lines[0::4], lines[1::4] if group.op != "put_many" else lines[2::4]
    good = all(c.startswith("2") for c in codes) and all(int(float(s)) == group.size
                                                         for s in sizes)
    if proc.returncode != 0 or len(codes) != len(group.keys) or not good:
        raise WorkerError(f"curl: rc {proc.returncode}, {len(codes)} transfers of "
                          f"{len(group.keys)}, codes {sorted(set(codes))[:5]}, "
                          f"sizes {sorted(set(sizes))[:5]}: {err.decode()[-500:]}")
    extra = {"cmd": " ".join(cmd), "wall_outside": wall}
    if group.op == "get_one":
        # One transfer: use curl's own time_total, which leaves out starting the
        # process (~5-10 ms, a fifth of a 64 MiB transfer); the workers' times
        # leave out their start too.  Batches keep the outside wall time.
        wall = float(lines[3])
    return Sample(wall, cpu, group.total, len(group.keys), s1 - s0, extra)


# ---- request counts (nginx access log) ---------------------------------------------

def count_requests(spec: ClientSpec, groups: list, server: Nginx, args: argparse.Namespace,
                   run_dir: str, pool_path: str, data_root: str) -> list:
    """Runs every case once against the logging listener, in a fresh process
    (first-call behaviour included), and counts the requests nginx logged."""
    rows = []
    worker = None
    _settled_log(server, server.log_size())  # nothing of an earlier client still arriving
    if spec.kind != "curl":
        worker = start_worker(spec, server.log_endpoint, args, run_dir, pool_path)
    try:
        for g in groups:
            if g.name not in spec.groups:
                continue
            off = server.log_size()
            if worker:
                run_worker(worker, g, server, verify=True)
            else:
                run_curl(g, server.log_endpoint, args, run_dir, server, data_root, spec)
            lines = _settled_log(server, off)
            by_method: dict = {}
            statuses: dict = {}
            for ln in lines:
                parts = ln.split()
                if len(parts) >= 3:
                    by_method[parts[0]] = by_method.get(parts[0], 0) + 1
                    statuses[parts[2]] = statuses.get(parts[2], 0) + 1
            n = len(g.keys)
            rows.append({"client": spec.name, "group": g.name, "objects": n,
                         "requests": len(lines), "by_method": by_method, "statuses": statuses,
                         "per_object": len(lines) / n,
                         "gets_per_object": by_method.get("GET", 0) / n,
                         "heads_per_object": by_method.get("HEAD", 0) / n})
    finally:
        if worker:
            worker.close()
    return rows


def _settled_log(server: Nginx, off: int, quiet: float = 0.1, limit: float = 3.0) -> list:
    """nginx logs a request after answering it: wait until the log stops growing."""
    deadline = time.monotonic() + limit
    size = server.log_size()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = server.log_size()
        if now == size:
            break
        size = now
    return server.log_lines_since(off)


# ---- runner --------------------------------------------------------------------

def run_group(group: Group, runners: list, args: argparse.Namespace,
              failures: dict) -> dict:
    """Warm-up (verified) run of every client, then repetitions interleaved with
    the order rotated each round; at least 3 rounds, then up to --reps within
    --case-budget seconds."""
    samples: dict = {name: [] for name, _ in runners}
    live = list(runners)

    def attempt(name: str, fn: Callable, verify: bool) -> Optional[Sample]:
        try:
            return fn(verify)
        except Exception as e:  # one failing client does not stop the others
            failures.setdefault(f"{group.name}/{name}", str(e)[-3000:])
            print(f"  {name} failed on {group.name}: {str(e)[:300]}", file=sys.stderr)
            return None

    for _ in range(args.warmup):
        live = [(n, fn) for n, fn in live if attempt(n, fn, True) is not None]
    start = time.perf_counter()
    for rnd in range(args.reps):
        if rnd >= 3 and time.perf_counter() - start > args.case_budget:
            print(f"  (budget of {args.case_budget:.0f}s reached after {rnd} rounds)",
                  file=sys.stderr)
            break
        k = rnd % max(1, len(live))
        for name, fn in live[k:] + live[:k]:
            s = attempt(name, fn, False)
            if s is not None:
                samples[name].append(s)
    return samples


def run_rows(group: Any, runners: list, clients: list, args: argparse.Namespace,
             failures: dict) -> list:
    """run_group with its progress on stderr, then a row (summarize) for each
    of `clients` (all that take part in `group`, runners or not)."""
    print(f"running {group.name} ({group.title}): {', '.join(n for n, _ in runners)}",
          file=sys.stderr)
    t0 = time.perf_counter()
    samples = run_group(group, runners, args, failures)
    print(f"  {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return [summarize(c, group, samples.get(c.name, []), failures.get(f"{group.name}/{c.name}"))
            for c in clients]


def summarize(spec: ClientSpec, group: Group, samples: list,
              failure: Optional[str] = None) -> dict:
    row: dict[str, Any] = {"group": group.name, "case": group.title, "client": spec.name,
                           "role": spec.role, "version": spec.version, "note": spec.note,
                           "reps": len(samples)}
    if not samples:
        row["error"] = spec.error or failure or "no successful repetition"
        return row
    mbps = [s.nbytes / s.wall / MB for s in samples]
    objps = [s.files / s.wall for s in samples]
    cpu_gb = [s.cpu / (s.nbytes / GB) for s in samples]
    cpu_obj = [s.cpu / s.files * 1e6 for s in samples]
    srv_gb = [s.server_cpu / (s.nbytes / GB) for s in samples if s.server_cpu is not None]
    row.update({
        "bytes": samples[0].nbytes, "objects": samples[0].files,
        "mbps_median": median(mbps), "mbps_best": max(mbps),
        "objps_median": median(objps), "objps_best": max(objps),
        "wall_s_median": median([s.wall for s in samples]),
        "cpu_s_per_gb_median": median(cpu_gb), "cpu_us_per_object_median": median(cpu_obj),
        "server_cpu_s_per_gb_median": median(srv_gb),
        "samples": [{"wall": s.wall, "cpu": s.cpu, "bytes": s.nbytes, "files": s.files,
                     "server_cpu": s.server_cpu, **({"extra": s.extra} if s.extra else {})}
                    for s in samples],
    })
    return row


def add_ratios(rows: list) -> None:
    """Ratios to the Rust reference (role baseline) of the same group."""
    base = {r["group"]: r for r in rows if r["role"] == "baseline" and r.get("mbps_median")}
    for r in rows:
        b = base.get(r["group"])
        if not b or not r.get("mbps_median"):
            continue
        r["ratio_mbps"] = r["mbps_median"] / b["mbps_median"]
        r["ratio_objps"] = r["objps_median"] / b["objps_median"]
        r["ratio_cpu_per_gb"] = (r["cpu_s_per_gb_median"] / b["cpu_s_per_gb_median"]
                                 if b["cpu_s_per_gb_median"] else None)


def targets(rows: list, counts: list, ref_name: str) -> list:
    """The S3 issue's targets, from this run's medians."""
    def row(group: str, client: str) -> Optional[dict]:
        return next((r for r in rows if r["group"] == group and r["client"] == client
                     and r.get("mbps_median")), None)

    def peers(group: str, names: Optional[list] = None) -> list:
        return [r for r in rows if r["group"] == group and r.get("mbps_median")
                and r["role"] in ("baseline", "reference", "peer")
                and (names is None or r["client"] in names)]

    out = []

    def add(what: str, value: Optional[float], goal: str, ok: Optional[bool], basis: str) -> None:
        out.append({"target": what, "value": value, "goal": goal,
                    "met": ok, "basis": basis})

    ours = row("small", "s3dlio")
    off = row("small", f"{ref_name} RANGE_OPT=0")
    if ours and off:
        v = ours["objps_median"] / off["objps_median"]
        add("small: GET/s vs Rust ref RANGE_OPT=0", v, ">= 1.7x", v >= 1.7, off["client"])
    if ours:
        v = ours["cpu_us_per_object_median"]
        add("small: client CPU per GET", v, "<= 30 us", v <= 30, "s3dlio")
    c = next((c for c in counts if c["client"] == "s3dlio" and c["group"] == "small"), None)
    if c:
        add("small: HTTP requests per GET (nginx log)", c["per_object"], "== 1 (no HEAD)",
            c["per_object"] == 1.0 and c["heads_per_object"] == 0, "access log")
    ours = row("mid", "s3dlio")
    best = max(peers("mid", [ref_name, f"{ref_name} RANGE_OPT=0", "obstore"]),
               key=lambda r: r["mbps_median"], default=None)
    if ours and best:
        v = ours["mbps_median"] / best["mbps_median"]
        add("mid: MB/s vs best of Rust ref and obstore", v, ">= 1.2x", v >= 1.2, best["client"])
    if ours:
        v = ours["cpu_s_per_gb_median"]
        add("mid: client CPU s/GB", v, "<= 0.5", v <= 0.5, "s3dlio")
    ours, ref = row("big", "s3dlio"), row("big", ref_name)
    if ours and ref:
        v = ours["mbps_median"] / ref["mbps_median"]
        add("big: get() MB/s vs Rust ref (defaults)", v, ">= 1.25x", v >= 1.25, ref_name)
    into, curl = row("big", "s3dlio.get_into"), row("big", "curl")
    if into and curl:
        v = into["mbps_median"] / curl["mbps_median"]
        add("big: get_into MB/s vs curl single stream", v, ">= 0.9x", v >= 0.9, "curl")
        v = into["cpu_s_per_gb_median"]
        add("big: get_into client CPU s/GB", v, "<= 0.3", v <= 0.3, "s3dlio.get_into")
    ours = row("put", "s3dlio")
    best = max(peers("put"), key=lambda r: r["mbps_median"], default=None)
    if ours and best:
        v = ours["mbps_median"] / best["mbps_median"]
        add("put: MB/s vs best peer", v, ">= 1.0x", v >= 1.0, best["client"])
    if ours:
        v = ours["cpu_s_per_gb_median"]
        add("put: client CPU s/GB", v, "<= 0.4", v <= 0.4, "s3dlio")
    return out


# ---- report --------------------------------------------------------------------

def _fmt_us(v: Optional[float]) -> str:
    return fmt(v, ",.0f" if v is not None and v >= 1000 else ".1f")


def print_report(rows: list, counts: list, tgts: list, ref_name: str) -> None:
    print(f"\nS3 over loopback nginx (MB = 10^6 B, GB = 10^9 B; medians; x-ref: this / "
          f"{ref_name} in the same group; rate = MB/s = objects/s)")
    _util.print_table(
        ["group", "client", "reps", "MB/s", "MB/s best", "obj/s", "CPU s/GB", "CPU us/obj",
         "srv CPU s/GB", "x-ref rate", "x-ref CPU/GB"],
        [[f"{r['group']}: {r['case']}", r["client"], r["reps"],
          fmt(r.get("mbps_median"), ",.0f"), fmt(r.get("mbps_best"), ",.0f"),
          fmt(r.get("objps_median"), ",.0f"), fmt(r.get("cpu_s_per_gb_median"), ".3f"),
          _fmt_us(r.get("cpu_us_per_object_median")),
          fmt(r.get("server_cpu_s_per_gb_median"), ".3f"),
          fmt(r.get("ratio_mbps"), ".2f"), fmt(r.get("ratio_cpu_per_gb"), ".2f")]
         if not r.get("error") else
         [f"{r['group']}: {r['case']}", r["client"], 0, "-", "-", "-", "-", "-", "-",
          "not run", "(below)"]
         for r in rows],
        align_left=(0, 1))
    for r in rows:
        if r.get("error"):
            print(f"  not run: {r['group']} / {r['client']}: {r['error'].splitlines()[0][:200]}")
    if counts:
        print("\nHTTP requests nginx logged per object (one fresh process per client, "
              "each case once)")
        _util.print_table(
            ["group", "client", "objects", "requests", "per object", "by method", "statuses"],
            [[c["group"], c["client"], c["objects"], c["requests"], f"{c['per_object']:.2f}",
              " ".join(f"{m}={n}" for m, n in sorted(c["by_method"].items())),
              " ".join(f"{s}={n}" for s, n in sorted(c["statuses"].items()))] for c in counts],
            align_left=(0, 1, 5, 6))
    _util.print_goal_targets("S3 issue", tgts)


# ---- main ------------------------------------------------------------------------

def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    p = _cli.parser(__doc__)
    p.add_argument("--quick", action="store_true",
                   help="64 MiB / 128 x 1 MiB / 500 x 16 KiB / PUT 64 x 1 MiB, 3 reps (~1 min)")
    p.add_argument("--reps", type=int, help="timed repetitions per case (default 5; quick 3)")
    _cli.add_rounds(p, "case", 60.0)
    p.add_argument("--big-size", type=_util.parse_size, help="default 256MiB (quick 64MiB)")
    p.add_argument("--mid-count", type=int, help="default 512 (quick 128)")
    p.add_argument("--mid-size", type=_util.parse_size, default=1 << 20, help="default 1MiB")
    p.add_argument("--small-count", type=int, help="default 2000 (quick 500)")
    p.add_argument("--small-size", type=_util.parse_size, default=16 << 10, help="default 16KiB")
    p.add_argument("--put-count", type=int, help="default 256 (quick 64)")
    p.add_argument("--put-size", type=_util.parse_size, default=1 << 20, help="default 1MiB")
    p.add_argument("--max-in-flight", type=int, default=64,
                   help="requests in flight for every client's batches (default 64)")
    p.add_argument("--only", default=",".join(GROUP_ORDER),
                   help="cases to run: big,mid,small,put (default all)")
    p.add_argument("--clients", default="",
                   help="comma-separated clients (s3dlio, s3dlio-ref, boto3, obstore, awscrt, "
                        "curl; the Rust reference always runs); default all")
    p.add_argument("--no-count", action="store_true",
                   help="skip the request-count pass against the logging listener")
    p.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
                   help="where the object tree is made (a fresh subdirectory, removed at the "
                        "end; default /dev/shm, so PUTs do not wait on a disk)")
    p.add_argument("--keep", action="store_true", help="keep the object tree")
    p.add_argument("--nginx", default="nginx", help="nginx binary")
    p.add_argument("--nginx-workers", type=int, default=1)
    p.add_argument("--ref-venv", default="/tmp/s3dlio-ref-venv",
                   help="venv of the Rust s3dlio from PyPI (created when missing)")
    p.add_argument("--ref-version", default="0.10.0")
    p.add_argument("--peers-venv", default="/tmp/s3dlio-peers-venv",
                   help="venv of awscrt and obstore (created when missing)")
    p.add_argument("--peer-packages", default="awscrt==0.38.1 obstore==0.12.1")
    p.add_argument("--no-install", action="store_true",
                   help="never create venvs or pip install; a missing peer is reported")
    _cli.add_output(p, "s3-<timestamp>")
    args = p.parse_args(argv)
    q = args.quick
    args.reps = args.reps if args.reps is not None else (3 if q else 5)
    args.big_size = args.big_size or ((64 << 20) if q else (256 << 20))
    args.mid_count = args.mid_count or (128 if q else 512)
    args.small_count = args.small_count or (500 if q else 2000)
    args.put_count = args.put_count or (64 if q else 256)
    args.only_groups = _cli.only_ordered(p, args.only, GROUP_ORDER)
    args.only_clients = _cli.names(args.clients)
    if args.reps < 3:
        p.error("--reps must be at least 3 (the medians need them)")
    return args


def main(argv: Optional[list] = None) -> int:
    args = parse_args(argv)
    t_start, stamp = _session.clock()
    setup_log: list = []
    info = nginx_info(args.nginx)
    if not info["path"] or not info["dav"]:
        print("nginx with the dav module is needed (Debian: apt-get install nginx-light); "
              f"found: {info['path']} dav={info['dav']}", file=sys.stderr)
        return 2
    load0 = _session.load_note(_session.COMPARE_HINT)
    specs = build_clients(args, setup_log)
    ref_name = next(s.name for s in specs if s.role == "baseline")
    for line in setup_log:
        print(line, file=sys.stderr)

    run_dir = tempfile.mkdtemp(prefix="s3dlio-s3bench-")
    data_root = tempfile.mkdtemp(prefix="s3dlio-s3bench-data-", dir=args.dir)
    pool_path = os.path.join(run_dir, "pool.bin")
    server: Optional[Nginx] = None
    workers: dict = {}
    failures: dict = {}
    rows: list = []
    counts: list = []

    def stop() -> None:
        for w in workers.values():
            w.close()
        if server:
            server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(data_root, ignore_errors=True)

    with _session.Interruptible("stopping nginx and the workers", stop) as run:
        t0 = time.perf_counter()
        pool = make_pool(pool_path)
        groups = build_groups(args, data_root, pool)
        print(f"objects in {data_root} ({_util.fs_type(data_root)}) made in "
              f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)
        server = Nginx(data_root, workers=args.nginx_workers, binary=args.nginx).start()
        print(f"nginx {info['version']} on {server.endpoint} (logging listener "
              f"{server.log_endpoint}), {args.nginx_workers} worker(s)", file=sys.stderr)

        for s in specs:  # one process per client, reused for every case
            if s.error or s.kind == "curl":
                continue
            try:
                workers[s.name] = start_worker(s, server.endpoint, args, run_dir, pool_path)
                s.version = workers[s.name].version
            except WorkerError as e:
                s.error = ("unsupported: " if e.unsupported else "") + str(e)
        curl_spec = next((s for s in specs if s.kind == "curl"), None)
        if curl_spec and not curl_spec.error:
            curl_spec.version = subprocess.run(["curl", "--version"], capture_output=True,
                                               text=True).stdout.split()[1]
        for s in specs:
            if s.error:
                print(f"client {s.name}: not run: {s.error.splitlines()[0][:300]}",
                      file=sys.stderr)

        if not args.no_count:
            t0 = time.perf_counter()
            for s in specs:
                if s.error:
                    continue
                try:
                    counts += count_requests(s, groups, server, args, run_dir, pool_path,
                                             data_root)
                except Exception as e:
                    failures[f"count/{s.name}"] = str(e)[-3000:]
                    print(f"  request count for {s.name} failed: {str(e)[:300]}",
                          file=sys.stderr)
            print(f"request counts in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

        for g in groups:
            runners = []
            for s in specs:
                if s.error or g.name not in s.groups:
                    continue
                if s.kind == "curl":
                    runners.append((s.name, lambda v, s=s, g=g: _curl_sample(
                        g, server, args, run_dir, data_root, s)))
                else:
                    runners.append((s.name, lambda v, w=workers[s.name], g=g: run_worker(
                        w, g, server, v)))
            rows += run_rows(g, runners, [s for s in specs if g.name in s.groups], args,
                             failures)
        # PUT read-back: a few objects of each client, over plain HTTP, after the clock.
        put = next((g for g in groups if g.name == "put"), None)
        if put:
            check_puts(put, specs, server, pool, failures)
    if run.interrupted:
        return 130

    add_ratios(rows)
    tgts = targets(rows, counts, ref_name)
    print_report(rows, counts, tgts, ref_name)
    _session.print_failures(failures)
    total = _session.print_total(t_start, load0, " (above ~0.3, something else was running; "
                                 "the run itself keeps ~2 cores busy)")
    _util.save_result("s3", stamp, argv, args, {
        "env": _util.environment({"nginx": info["version"], "nginx_workers": args.nginx_workers,
                                  "curl": curl_spec.version if curl_spec else None,
                                  "data_fs_type": _util.fs_type(args.dir),
                                  "loadavg_start": load0, "loadavg_end": os.getloadavg()}),
        "clients": [{"name": s.name, "kind": s.kind, "role": s.role, "python": s.python,
                     "version": s.version, "env": s.env, "note": s.note, "error": s.error}
                    for s in specs],
        "setup": setup_log, "reference": ref_name,
        "request_counts": counts, "targets": tgts, "failures": failures,
        "total_wall_s": total, "rows": rows,
    })
    return 1 if failures else 0


def _curl_sample(g: Group, server: Nginx, args: argparse.Namespace, run_dir: str,
                 data_root: str, spec: ClientSpec) -> Sample:
    return run_curl(g, server.endpoint, args, run_dir, server, data_root, spec)


def check_puts(group: Group, specs: list, server: Nginx, pool: bytes, failures: dict) -> None:
    import urllib.request
    for s in specs:
        if s.error or "put" not in s.groups or f"put/{s.name}" in failures:
            continue
        keys = put_keys(s, group)
        for i in sorted({0, len(keys) // 2, len(keys) - 1}):
            try:
                with urllib.request.urlopen(f"{server.endpoint}/{BUCKET}/{keys[i]}",
                                            timeout=30) as r:
                    got = r.read()
            except OSError as e:
                failures[f"put-readback/{s.name}"] = f"{keys[i]}: {e}"
                break
            if got != object_bytes(pool, i, group.size):
                failures[f"put-readback/{s.name}"] = (f"{keys[i]}: {len(got)} bytes, "
                                                     "content differs from what was PUT")
                break


if __name__ == "__main__":
    sys.exit(main())
