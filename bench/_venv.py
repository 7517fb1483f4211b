"""Virtual environments for the peers the bench scripts compare with (the
Rust s3dlio from PyPI, awscrt, obstore, s3torchconnector), made when missing
(not part of the s3dlio package)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Optional


def venv_python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def ref_probe(version: str, module: str = "s3dlio") -> str:
    """Python code that fails unless `module` imports and the installed
    s3dlio is `version` (the Rust reference)."""
    return (f"import {module}, sys, importlib.metadata as m; "
            f"sys.exit(m.version('s3dlio') != {version!r})")


def ensure_venv(venv: str, packages: list, probe: str, install: bool, log: list) -> Optional[str]:
    """Makes sure `venv` exists and `probe` (Python code) runs in it; creates it and
    pip-installs `packages` when not.  Returns None, or the error text."""
    py = venv_python(venv)

    def probe_ok() -> bool:
        if not os.path.exists(py):
            return False
        # cwd: not the repository, whose s3dlio/ would shadow the installed one
        r = subprocess.run([py, "-c", probe], capture_output=True, text=True, timeout=60,
                           cwd=tempfile.gettempdir())
        return r.returncode == 0

    if probe_ok():
        return None
    if not install:
        return f"{venv} is missing or lacks {' '.join(packages)} (run without --no-install)"
    t0 = time.perf_counter()
    print(f"setting up {venv}: pip install {' '.join(packages)}", file=sys.stderr)
    base = getattr(sys, "_base_executable", None) or sys.executable
    for cmd in ([base, "-m", "venv", venv] if not os.path.exists(py) else None,
                [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages]):
        if cmd is None:
            continue
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            return f"{' '.join(cmd)} timed out after 600 s"
        if r.returncode != 0:
            return f"{' '.join(cmd)} failed ({r.returncode}): {(r.stderr or r.stdout)[-1500:]}"
    if not probe_ok():
        return f"{venv}: installed {' '.join(packages)} but `{probe}` still fails"
    log.append(f"created {venv} with {' '.join(packages)} in {time.perf_counter() - t0:.0f}s")
    return None


def cpu_only_venv(venv: str, packages: list, probe: str, install: bool, log: list) -> Optional[str]:
    """ensure_venv, but refuses to install when pip's plan has CUDA in it (a
    torch wheel that is not +cpu, or nvidia-*/cuda-*/triton packages)."""
    py = venv_python(venv)
    ready = os.path.exists(py) and subprocess.run(
        [py, "-c", probe], capture_output=True, timeout=120,
        cwd=tempfile.gettempdir()).returncode == 0  # cwd: not the repo, whose s3dlio/ shadows
    if not ready and install:
        if not os.path.exists(py):
            base = getattr(sys, "_base_executable", None) or sys.executable
            r = subprocess.run([base, "-m", "venv", venv], capture_output=True, text=True)
            if r.returncode != 0:
                return f"python -m venv {venv} failed: {r.stderr[-500:]}"
        report = os.path.join(tempfile.gettempdir(), f"dl-pip-plan-{os.getpid()}.json")
        r = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            "--dry-run", "--report", report, *packages],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            return f"pip install --dry-run {' '.join(packages)} failed: {r.stderr[-1000:]}"
        with open(report) as f:
            plan = [(i["metadata"]["name"].lower(), i["metadata"]["version"])
                    for i in json.load(f).get("install", [])]
        os.unlink(report)
        cuda = [f"{n}=={v}" for n, v in plan
                if n.startswith(("nvidia-", "cuda-")) or n == "triton"
                or (n == "torch" and "+cpu" not in v)]
        if cuda:
            return (f"not installed: pip would pull a CUDA build ({', '.join(cuda[:5])}); "
                    f"install {' '.join(packages)} with a CPU-only index into {venv}")
    return ensure_venv(venv, packages, probe, install, log)
