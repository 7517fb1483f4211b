"""Shared fixtures.  ``backend`` parametrises the conformance suite over
every scheme served by this build; each later backend (S3, GCS, Azure) adds
itself here with a fixture that starts its real server on 127.0.0.1."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

import s3dlio

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# Tests reach only loopback: never let a credential lookup try the EC2
# metadata address or a container endpoint of the machine running them.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
for _name in ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
              "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_PROFILE"):
    os.environ.pop(_name, None)
sys.path.insert(0, str(Path(__file__).resolve().parent))


@dataclass
class Backend:
    """A place to put objects: ``prefix`` ends in ``/`` and is empty at start."""

    name: str
    prefix: str

    def uri(self, key: str) -> str:
        return self.prefix + key


@pytest.fixture(scope="session")
def moto_s3():
    """One moto server for the session, with SigV4 checking on; its
    endpoint and credentials are put in the environment s3dlio reads."""
    from servers import moto_s3 as server
    s3 = server.start()
    saved = {k: os.environ.get(k) for k in s3.env()}
    os.environ.update(s3.env())
    try:
        yield s3
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        s3.stop()


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory):
    """One fake-gcs-server for the session; STORAGE_EMULATOR_HOST points
    s3dlio (and google-cloud-storage) at it."""
    from servers import fake_gcs as server
    try:
        serving = server.serving(tmp_path_factory.mktemp("gcs"))
        running = serving.__enter__()
    except server.Unavailable as exc:
        pytest.skip(str(exc))
    try:
        yield running
    finally:
        serving.__exit__(None, None, None)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """One Azurite blob server for the session (SharedKey always checked),
    with the development account's name, key and endpoint in the environment."""
    from servers import azurite as server
    with server.serving(tmp_path_factory.mktemp("azurite")) as running:
        yield running


def _object_store_backend(request, name: str) -> Backend:
    unique = f"t-{uuid.uuid4().hex[:12]}"
    if name == "s3":
        request.getfixturevalue("moto_s3")
        s3dlio.create_bucket(unique)
        return Backend("s3", f"s3://{unique}/")
    if name == "gs":
        request.getfixturevalue("fake_gcs")
        s3dlio.create_bucket(f"gs://{unique}")
        return Backend("gs", f"gs://{unique}/")
    request.getfixturevalue("azurite")
    from servers.azurite import ACCOUNT
    s3dlio.create_bucket(f"az://{ACCOUNT}/{unique}")
    return Backend("az", f"az://{ACCOUNT}/{unique}/")


OBJECT_STORES = ("s3", "gs", "az")


@pytest.fixture(params=["file", "direct", *OBJECT_STORES])
def backend(request, tmp_path) -> Backend:
    if request.param in OBJECT_STORES:
        return _object_store_backend(request, request.param)
    root = tmp_path / f"store-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    return Backend(request.param, f"{request.param}://{root}/")


@pytest.fixture
def local_backend(backend) -> Backend:
    """The conformance backends that are file systems."""
    if backend.name in OBJECT_STORES:
        pytest.skip("file-system behaviour; object stores have no directories or inodes")
    return backend


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
