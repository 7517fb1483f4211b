"""What the operation log costs: get_many of 2,000 x 16 KiB objects on a
loopback nginx, with the log off and on, interleaved (6 rounds of 3 calls
each), in one process.  The issue's target: at most 2% of throughput.

    .venv/bin/python bench/oplog.py [--rounds N] [--count N] [--size BYTES]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _nginx import Nginx  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, default=16 << 10)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="s3dlio-oplog-bench-", dir="/dev/shm"))
    logs = Path(tempfile.mkdtemp(prefix="s3dlio-oplog-logs-"))
    try:
        (root / "bkt").mkdir()
        for i in range(args.count):
            (root / "bkt" / f"k{i:05d}").write_bytes(os.urandom(args.size))
        with Nginx(str(root)) as server:
            os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                              AWS_REGION="us-east-1", AWS_ENDPOINT_URL=server.endpoint)
            import s3dlio
            uris = [f"s3://bkt/k{i:05d}" for i in range(args.count)]
            s3dlio.get_many(uris, 64)  # warm connections
            rates: dict[str, list[float]] = {"off": [], "on": []}
            cpu: dict[str, list[float]] = {"off": [], "on": []}
            for rnd in range(args.rounds):
                for mode in (("off", "on") if rnd % 2 == 0 else ("on", "off")):
                    if mode == "on":
                        s3dlio.init_op_log(str(logs / f"r{rnd}.tsv.zst"))
                    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                    for _ in range(3):
                        s3dlio.get_many(uris, 64)
                    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
                    if mode == "on":
                        rows = s3dlio.finalize_op_log()["rows"]
                        assert rows == 3 * args.count, rows
                    rates[mode].append(3 * args.count / (t1 - t0))
                    cpu[mode].append((r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
                                     / (3 * args.count) * 1e6)
        off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
        print(f"get_many {args.count} x {args.size} B, {args.rounds} interleaved rounds")
        print("| op-log | objects/s (median) | client CPU us/object |")
        print("|---|---:|---:|")
        print(f"| off | {off:,.0f} | {statistics.median(cpu['off']):.1f} |")
        print(f"| on | {on:,.0f} | {statistics.median(cpu['on']):.1f} |")
        ratio = on / off
        print(f"on/off: {ratio:.3f} (target >= 0.98: {'met' if ratio >= 0.98 else 'NOT met'})")
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
