"""HPC batch mode: `mpirun -n 3` of Debian's Open MPI on loopback, each rank
taking a disjoint share; every object is moved exactly once, rank 0 prints
the totals, and a failing rank makes the job exit non-zero with the
failure listed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import s3dlio
from s3dlio import ranks

SCRIPT = Path(__file__).resolve().parent / "mpi" / "transfer_ranks.py"
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_btl": "self,vader", "OMPI_MCA_oob_tcp_if_include": "lo",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}


def _mpirun(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun not installed (Debian openmpi-bin)")
    pytest.importorskip("mpi4py")
    env = {**os.environ, **MPI_ENV}
    return subprocess.run(["mpirun", "-n", "3", sys.executable, str(SCRIPT), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _tree(root: Path, count: int) -> dict[str, bytes]:
    files = {}
    for i in range(count):
        rel = f"d{i % 4}/f{i:03d}.bin"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(1000 + i)
        (root / rel).write_bytes(data)
        files[rel] = data
    return files


def test_every_object_moves_exactly_once(tmp_path):
    src, dst, rec = tmp_path / "src", tmp_path / "dst", tmp_path / "rec"
    for d in (src, dst, rec):
        d.mkdir()
    files = _tree(src, 50)
    done = _mpirun([str(src), str(dst), str(rec)])
    assert done.returncode == 0, done.stderr[-2000:]
    outcomes = [json.loads((rec / f"rank-{r}.json").read_text()) for r in range(3)]
    assert {o["size"] for o in outcomes} == {3}
    shares = [set(o["written"]) for o in outcomes]
    assert sum(len(s) for s in shares) == len(files)  # disjoint ...
    assert set().union(*shares) == {f"file://{dst}/{rel}" for rel in files}  # ... and complete
    assert max(len(s) for s in shares) - min(len(s) for s in shares) <= 1
    for rel, data in files.items():
        assert (dst / rel).read_bytes() == data
    assert "50 objects" in done.stderr and "across 3 ranks" in done.stderr


def test_a_failing_rank_fails_the_job_and_names_the_object(tmp_path):
    src, dst, rec = tmp_path / "src", tmp_path / "dst", tmp_path / "rec"
    for d in (src, dst, rec):
        d.mkdir()
    _tree(src, 9)
    # A directory where one file must go: whichever rank owns it fails it.
    (dst / "d1" / "f005.bin").mkdir(parents=True)
    done = _mpirun([str(src), str(dst), str(rec)])
    assert done.returncode != 0
    outcomes = [json.loads((rec / f"rank-{r}.json").read_text()) for r in range(3)]
    assert all(o["error"] and "f005.bin" in o["error"] for o in outcomes)  # every rank knows
    assert "8 objects" in done.stderr and "1 errors across 3 ranks" in done.stderr
    assert (dst / "d0" / "f000.bin").is_file()  # the others' work is done


def test_shares_are_disjoint_and_cover(monkeypatch):
    items = [f"k{i}" for i in range(11)]
    parts = [ranks.share(items, ranks.World(r, 4)) for r in range(4)]
    assert sorted(sum(parts, [])) == sorted(items)
    assert [len(p) for p in parts] == [3, 3, 3, 2]
    monkeypatch.setenv("SLURM_PROCID", "2")
    monkeypatch.setenv("SLURM_NTASKS", "5")
    for name in ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE",
                 "PMIX_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # as if not installed
    where = ranks.world()
    assert (where.rank, where.size, where.comm) == (2, 5, None)
    assert s3dlio.get_many([], ranks=True) == []


def test_cli_download_with_ranks(tmp_path):
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun not installed (Debian openmpi-bin)")
    pytest.importorskip("mpi4py")
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    files = _tree(src, 20)
    env = {**os.environ, **MPI_ENV}
    done = subprocess.run(["mpirun", "-n", "3", sys.executable, "-m", "s3dlio", "download",
                           "--ranks", "--json", f"file://{src}/", str(dst)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)  # rank 0 alone prints
    assert (report["ranks"], report["objects"], report["errors"]) == (3, 20, [])
    assert report["bytes"] == sum(len(d) for d in files.values())
    for rel, data in files.items():
        assert (dst / rel).read_bytes() == data


def test_cli_rm_and_bench_with_ranks(tmp_path):
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun not installed (Debian openmpi-bin)")
    pytest.importorskip("mpi4py")
    env = {**os.environ, **MPI_ENV}
    base = [ "mpirun", "-n", "3", sys.executable, "-m", "s3dlio"]
    bench = subprocess.run(base + ["bench", "--ranks", "--json", "-s", "4KiB", "-n", "5",
                                   f"file://{tmp_path}/b/"],
                           capture_output=True, text=True, timeout=120, env=env)
    assert bench.returncode == 0, bench.stderr[-2000:]
    report = json.loads(bench.stdout)
    assert report["ranks"] == 3 and report["put"]["ops"] == 15 and report["get"]["ops"] == 15
    assert report["get"]["bytes"] == 15 * 4096
    src = tmp_path / "tree"
    src.mkdir()
    _tree(src, 12)
    rm = subprocess.run(base + ["rm", "-r", "--ranks", f"file://{src}/"],
                        capture_output=True, text=True, timeout=120, env=env)
    assert rm.returncode == 0, rm.stderr[-2000:]
    assert "removed 12 objects across 3 ranks" in rm.stderr
    assert not [p for p in src.rglob("*") if p.is_file()]
