"""`pip install .` (not editable) yields a package that carries libs3dlio
beside its binding and works from anywhere without LD_LIBRARY_PATH."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_wheel_installs_and_runs(tmp_path):
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
                           capture_output=True, text=True, timeout=540)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("s3dlio-*.whl")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, timeout=120)
    names = {p.name for p in (target / "s3dlio").iterdir()}
    assert "libs3dlio.so" in names and any(n.startswith("_s3dl_cffi") for n in names)
    script = f"""
import s3dlio, sys
assert s3dlio.__file__.startswith({str(target)!r}), s3dlio.__file__
s3dlio.put("file://{tmp_path}/w.bin", b"wheel")
assert s3dlio.get("file://{tmp_path}/w.bin") == b"wheel"
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    # The command-line tool ships in the wheel too.
    cli = subprocess.run([sys.executable, "-m", "s3dlio", "ls", f"file://{tmp_path}/"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert f"file://{tmp_path}/w.bin" in cli.stdout
