"""Small helpers shared by bench/run.py and bench/demo.py (not part of the
s3dlio package).  Units: MB = 10**6 bytes, GB = 10**9 bytes, MiB/GiB are
the binary ones; sizes on the command line accept either (64K, 64KiB, 1G)."""
from __future__ import annotations

import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Iterable, Optional, Sequence

MB = 1_000_000
GB = 1_000_000_000

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


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads) and of its
    waited-for children (dd and other subprocesses)."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


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
    mem_total = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_total = int(line.split()[1]) * 1024
    except OSError:
        pass
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
