"""One run of a bench worker script in a fresh process (not part of the
s3dlio package): the spec goes in as a JSON argument, the result comes back
as a JSON file, so the process's memory high-water mark is that run's alone
(bench/checkpoint.py, bench/writers.py)."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from typing import Iterator


class CaseFailed(Exception):
    """A case gave no result, or a wrong one."""


@contextlib.contextmanager
def group_failures(name: str, failures: dict, shown: int) -> Iterator[None]:
    """Around one group of cases: a CaseFailed ends the group, is kept as
    failures[name] and printed (its first `shown` characters)."""
    try:
        yield
    except CaseFailed as e:
        failures[name] = str(e)
        print(f"  {name} failed: {str(e)[:shown]}", file=sys.stderr)


def run_worker(worker: str, spec: dict, env: dict, run_dir: str, timeout: float) -> dict:
    """`python WORKER SPEC_JSON RESULT_PATH` in run_dir; returns the result."""
    out = os.path.join(run_dir, f"result-{os.urandom(4).hex()}.json")
    try:
        proc = subprocess.run([sys.executable, worker, json.dumps(spec), out], env=env,
                              capture_output=True, text=True, timeout=timeout, cwd=run_dir)
    except subprocess.TimeoutExpired:
        raise CaseFailed(f"{spec['case']}: no result within {timeout:.0f}s") from None
    if proc.returncode != 0 or not os.path.exists(out):
        raise CaseFailed(f"{spec['case']}: exit {proc.returncode}: {proc.stderr[-1500:]}")
    with open(out) as f:
        result = json.load(f)
    os.unlink(out)
    return result
