"""Shared fixtures.  ``backend`` parametrises the conformance suite over
every scheme served by this build; each later backend (S3, GCS, Azure) adds
itself here with a fixture that starts its real server on 127.0.0.1."""
from __future__ import annotations

import os
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


@pytest.fixture
def tmpfs_dir():
    """A directory on tmpfs (O_DIRECT is refused there), or skip."""
    base = Path("/dev/shm")
    if not base.is_dir() or not os.access(base, os.W_OK):
        pytest.skip("no writable /dev/shm")
    path = base / f"s3dlio-test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    yield path
    for child in sorted(path.rglob("*"), reverse=True):
        child.unlink() if child.is_file() else child.rmdir()
    path.rmdir()


@pytest.fixture
def vectors() -> Path:
    if not (SHARED / "vectors").is_dir():
        pytest.skip("shared/vectors not present beside the checkout")
    return SHARED / "vectors"


def pytest_report_header(config):
    return f"s3dlio {s3dlio.__version__} from {Path(s3dlio.__file__).parent}"
