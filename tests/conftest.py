"""Shared fixtures.  ``backend`` parametrises the conformance suite over
every scheme served by this build; each later backend (S3, GCS, Azure) adds
itself here with a fixture that starts its real server on 127.0.0.1."""
from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

import s3dlio

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@dataclass
class Backend:
    """A place to put objects: ``prefix`` ends in ``/`` and is empty at start."""

    name: str
    prefix: str

    def uri(self, key: str) -> str:
        return self.prefix + key


@pytest.fixture(params=["file", "direct"])
def backend(request, tmp_path) -> Backend:
    root = tmp_path / f"store-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    return Backend(request.param, f"{request.param}://{root}/")


def _refuses_o_direct(directory: Path) -> bool:
    probe = directory / ".o_direct_probe"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o600)
    except OSError:
        return True
    os.close(fd)
    probe.unlink()
    return False


@pytest.fixture
def no_direct_dir(tmp_path):
    """A directory whose filesystem refuses O_DIRECT: a ramfs mount (tmpfs
    accepts O_DIRECT since Linux 6.6), or /dev/shm on older kernels."""
    mountpoint = tmp_path / "ramfs"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mountpoint)],
                             capture_output=True).returncode == 0
    if mounted:
        yield mountpoint
        subprocess.run(["umount", str(mountpoint)], check=False)
        return
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and _refuses_o_direct(shm):
        path = shm / f"s3dlio-test-{uuid.uuid4().hex[:8]}"
        path.mkdir()
        yield path
        subprocess.run(["rm", "-rf", str(path)], check=False)
        return
    pytest.skip("no filesystem here refuses O_DIRECT (cannot mount ramfs)")


@pytest.fixture
def vectors() -> Path:
    if not (SHARED / "vectors").is_dir():
        pytest.skip("shared/vectors not present beside the checkout")
    return SHARED / "vectors"


def pytest_report_header(config):
    return f"s3dlio {s3dlio.__version__} from {Path(s3dlio.__file__).parent}"
