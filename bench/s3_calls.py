"""What one process pays outside bench/s3.py's warm batches, on a loopback
nginx: the cost of `import s3dlio`, a loop of single get() calls (with one
HTTP lane and with the default), and the first get_many of 512 x 1 MiB in a
fresh process (result memory not yet mapped) against the same call again,
side by side with the Rust reference when its venv exists.  Every number
comes from a fresh child process; rounds are interleaved.

    .venv/bin/python bench/s3_calls.py [--rounds N] [--ref-venv DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _nginx import Nginx  # noqa: E402

SMALL, MID = (2000, 16 << 10), (512, 1 << 20)

# Each child prints one JSON line.  CPU is this process's user + system time.
_IMPORT = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import s3dlio
wall = time.perf_counter() - t0
r = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": wall, "cpu": r.ru_utime + r.ru_stime, "numpy": "numpy" in sys.modules}))
"""

_SINGLE = r"""
import json, resource, sys, time
import s3dlio
uris = [f"s3://bkt/small/k{i:05d}" for i in range(int(sys.argv[1]))]
for u in uris[:50]:
    s3dlio.get(u)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c0, t0 = cpu(), time.perf_counter()
for u in uris:
    assert len(s3dlio.get(u)) == int(sys.argv[2])
t1, c1 = time.perf_counter(), cpu()
print(json.dumps({"rate": len(uris) / (t1 - t0), "cpu_us": (c1 - c0) / len(uris) * 1e6}))
"""

_FIRST = r"""
import json, resource, sys, time
import s3dlio
count, size = int(sys.argv[1]), int(sys.argv[2])
uris = [f"s3://bkt/mid/k{i:05d}" for i in range(count)]
s3dlio.get_many(uris[:64], max_in_flight=64)  # engine, connections up
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
out = []
for _ in range(3):
    c0, t0 = cpu(), time.perf_counter()
    got = s3dlio.get_many(uris, max_in_flight=64)
    t1, c1 = time.perf_counter(), cpu()
    assert len(got) == count
    del got
    gb = count * size / 1e9
    out.append({"mb_s": gb * 1e3 / (t1 - t0), "cpu_s_gb": (c1 - c0) / gb})
print(json.dumps({"first": out[0], "again": out[1:]}))
"""


def run_child(python: str, code: str, env: dict, *args: object) -> dict:
    # Run outside the checkout: `-c` puts the working directory on sys.path,
    # where our s3dlio would shadow the reference's.
    done = subprocess.run([python, "-c", code, *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def med(rows: list, key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--ref-venv", default="/tmp/s3dlio-ref-venv",
                   help="venv of the Rust s3dlio (bench/s3.py creates it); skipped if missing")
    args = p.parse_args()
    ours = sys.executable
    ref = os.path.join(args.ref_venv, "bin", "python")
    ref = ref if os.path.exists(ref) else None
    root = Path(tempfile.mkdtemp(prefix="s3dlio-calls-bench-", dir="/dev/shm"))
    try:
        for name, (count, size) in (("small", SMALL), ("mid", MID)):
            (root / "bkt" / name).mkdir(parents=True)
            pool = os.urandom(size + count)
            for i in range(count):
                (root / "bkt" / name / f"k{i:05d}").write_bytes(pool[i:i + size])
        with Nginx(str(root)) as server:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3DLIO_"))}
            env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                       AWS_REGION="us-east-1", AWS_ENDPOINT_URL=server.endpoint,
                       AWS_EC2_METADATA_DISABLED="true")
            one_lane = dict(env, S3DLIO_HTTP_THREADS="1")
            imports, single, single_1, first, first_ref = [], [], [], [], []
            for _ in range(args.rounds):
                imports.append(run_child(ours, _IMPORT, env))
                single.append(run_child(ours, _SINGLE, env, *SMALL))
                single_1.append(run_child(ours, _SINGLE, one_lane, *SMALL))
                first.append(run_child(ours, _FIRST, env, *MID))
                if ref:
                    first_ref.append(run_child(ref, _FIRST, env, *MID))
        print(f"loopback nginx, 1 worker; medians of {args.rounds} interleaved rounds, "
              "each a fresh process\n")
        print("| `import s3dlio` | wall s | CPU s | numpy loaded |")
        print("|---|---:|---:|---|")
        print(f"| s3dlio | {med(imports, 'wall'):.3f} | {med(imports, 'cpu'):.3f} | "
              f"{any(r['numpy'] for r in imports)} |\n")
        print(f"| loop of single get(), {SMALL[0]} x {SMALL[1] >> 10} KiB | calls/s | "
              "client CPU us/call |")
        print("|---|---:|---:|")
        print(f"| default lanes | {med(single, 'rate'):,.0f} | {med(single, 'cpu_us'):.0f} |")
        print(f"| S3DLIO_HTTP_THREADS=1 | {med(single_1, 'rate'):,.0f} | "
              f"{med(single_1, 'cpu_us'):.0f} |\n")
        print(f"| get_many {MID[0]} x 1 MiB, 64 in flight | first call MB/s | CPU s/GB | "
              "again MB/s | CPU s/GB |")
        print("|---|---:|---:|---:|---:|")
        for name, rows in (("s3dlio", first), ("Rust s3dlio", first_ref)):
            if not rows:
                print(f"| {name} | not run (no {args.ref_venv}) | | | |")
                continue
            firsts = [r["first"] for r in rows]
            agains = [a for r in rows for a in r["again"]]
            print(f"| {name} | {med(firsts, 'mb_s'):,.0f} | {med(firsts, 'cpu_s_gb'):.2f} | "
                  f"{med(agains, 'mb_s'):,.0f} | {med(agains, 'cpu_s_gb'):.2f} |")
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
