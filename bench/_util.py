"""Small helpers shared by the bench scripts (not part of the s3dlio
package): sizes, timing, the environment, tables and the JSON results.
Units: MB = 10**6 bytes, GB = 10**9 bytes, MiB/GiB are the binary ones;
sizes on the command line accept either (64K, 64KiB, 1G)."""
from __future__ import annotations

import datetime as dt
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from _proc import cpu_seconds, meminfo

MB = 1_000_000
GB = 1_000_000_000
RESULTS_DIR = Path(__file__).resolve().parent / "results"

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.I)


def parse_size(text: str) -> int:
    """'65536', '64K', '64KiB', '1G', '1.5GiB' -> bytes (binary multiples)."""
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError(f"not a size: {text!r}")
    number, unit = float(m.group(1)), m.group(2).lower()
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit]
    return int(number * mult)


def human_bytes(n: float) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} B"


class Timer:
    """Wall and CPU deltas around a block."""

    def __enter__(self) -> "Timer":
        self.cpu0 = cpu_seconds()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = cpu_seconds() - self.cpu0


def median(xs: Sequence[float]) -> Optional[float]:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fs_type(path: str) -> str:
    """The filesystem type holding `path` (longest mount-point prefix in
    /proc/mounts), or 'unknown'."""
    path = os.path.realpath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


def environment(extra: Optional[dict] = None) -> dict:
    import s3dlio
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except Exception:
        commit = ""
    mem_total = meminfo("MemTotal")
    native = {}
    pkg_dir = os.path.dirname(s3dlio.__file__)
    for name in sorted(os.listdir(pkg_dir)):
        if name.endswith(".so") or ".so." in name:
            path = os.path.join(pkg_dir, name)
            try:
                import hashlib
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()[:16]
                native[name] = {"sha256_16": digest, "mtime": os.stat(path).st_mtime}
            except OSError:
                pass
    env = {
        "native_libs": native,  # ties results to one build of the C core
        "host": platform.node(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "s3dlio_version": s3dlio.__version__,
        "git_commit": commit or None,
        "cpus": os.cpu_count(),
        "mem_total_bytes": mem_total,
        "S3DLIO_IO_THREADS": os.environ.get("S3DLIO_IO_THREADS"),
    }
    env.update(extra or {})
    return env


def fmt(value: Any, spec: str = ".1f") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return format(value, spec)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
                align_left: Sequence[int] = (0,)) -> None:
    rows = [[str(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, (c, w) in enumerate(zip(cells, widths)):
            out.append(c.ljust(w) if i in align_left else c.rjust(w))
        return "  ".join(out).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
                   right: Sequence[int] = ()) -> str:
    """A Markdown table; the columns numbered in `right` are right-aligned."""
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def print_targets_markdown(tgts: Sequence[dict]) -> None:
    """The targets (dicts of target, value, met: True, False or None) as a
    Markdown table after a blank line."""
    print("\n" + markdown_table(
        ["target", "value", "met"],
        [[t["target"], t["value"], "-" if t["met"] is None else ("yes" if t["met"] else "NO")]
         for t in tgts], right=(1,)))


def print_goal_targets(issue: str, tgts: Sequence[dict]) -> None:
    """The targets (dicts of target, value, goal, met, basis), if any, as a
    table under "Targets (<issue>), from this run"."""
    if tgts:
        print(f"\nTargets ({issue}), from this run")
        print_table(["target", "value", "goal", "met", "against"],
                    [[t["target"], fmt(t["value"], ".3f"), t["goal"],
                      {True: "yes", False: "NO", None: "-"}[t["met"]], t["basis"]] for t in tgts],
                    align_left=(0, 2, 3, 4))


def add_peer_ratios(rows: Sequence[dict], ratios: dict) -> None:
    """Each row naming a "peer" (another row of its "group") gets, for every
    `out: key` of `ratios`, row[key] / peer[key] as row[out]; None where
    there is no peer or either value is missing or zero."""
    by_name = {(r["group"], r["name"]): r for r in rows}
    for r in rows:
        peer = by_name.get((r["group"], r["peer"])) if r["peer"] else None
        for out, key in ratios.items():
            r[out] = r[key] / peer[key] if peer and r[key] and peer[key] else None


def isolated_aws_env(run_dir: str, settings: dict) -> dict:
    """This process's environment for a worker that talks to the bench's own
    S3 server: no AWS_* variable of the user's, `settings` instead, and no
    instance metadata, ~/.aws/config or ~/.aws/credentials (files named in
    run_dir that do not exist)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(settings)
    env.update({"AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": os.path.join(run_dir, "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": os.path.join(run_dir, "no-aws-credentials")})
    return env


def progress(total: int, desc: str, unit: str = "B", enabled: bool = True) -> Any:
    """A tqdm bar when tqdm is importable and stderr is wanted; otherwise an
    object with the same update()/close() that prints nothing."""
    if enabled:
        try:
            from tqdm import tqdm
            return tqdm(total=total, desc=desc, unit=unit, unit_scale=True,
                        unit_divisor=1024 if unit == "B" else 1000, leave=False,
                        dynamic_ncols=True, file=sys.stderr)
        except ImportError:
            pass

    class _Null:
        def update(self, n: int = 1) -> None:
            pass

        def close(self) -> None:
            pass

        def __enter__(self) -> "_Null":
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

    return _Null()


def write_results(result: dict, results_dir: Any, name: str, json_path: Optional[str],
                  save: bool) -> list:
    """Writes a run's JSON to results_dir/name (unless not saving) and to
    json_path (if given); returns the paths written."""
    import json
    from pathlib import Path
    text = json.dumps(result, indent=2, default=str)
    written = []
    if save:
        results_dir.mkdir(parents=True, exist_ok=True)
        path = results_dir / name
        path.write_text(text)
        written.append(str(path))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(text)
        written.append(json_path)
    for w in written:
        print(f"wrote {w}")
    return written


def save_result(kind: str, stamp: str, argv: Optional[list], args: Any, body: dict) -> list:
    """Writes a script's result: schema, kind, timestamp, argv and args (sets
    as sorted lists), then `body`, to bench/results/<kind>-<stamp>[-quick].json
    (unless --no-save) and to --json; returns the paths written."""
    result = {
        "schema": 1, "kind": kind,
        "timestamp": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else argv,
        "args": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()},
        **body,
    }
    return write_results(result, RESULTS_DIR,
                         f"{kind}-{stamp}{'-quick' if args.quick else ''}.json",
                         args.json, not args.no_save)
