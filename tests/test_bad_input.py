"""Bad input gets its own exception class, a message naming the URI, and
leaves nothing behind: no partial file, no temporary debris."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import s3dlio

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("uri", [
    "ftp://host/x", "http://host/x", "/no/scheme", "file:relative", "file://relative/x",
    "s3://", "s3:///key", "az://account", "az://account//key",
    "file:///tmp/a/../b", "file:///tmp/./b", "s3://bucket/a/../b", "file:///tmp/nul\x00x",
    "file:///tmp/line\nbreak", "", "file:///tmp/" + "x" * 5000, "file:///tmp//x",
    "s3://bucket/a//b",
])
def test_invalid_uris_rejected_before_io(uri):
    with pytest.raises(s3dlio.InvalidURIError) as info:
        s3dlio.get(uri)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, s3dlio.S3dlioError)
    assert "invalid URI" in str(info.value)


@pytest.mark.parametrize("fn", [s3dlio.get, s3dlio.stat, s3dlio.delete, s3dlio.exists])
def test_invalid_uri_on_every_entry_point(fn):
    with pytest.raises(s3dlio.InvalidURIError):
        fn("gopher://x/y")


def test_non_string_uri():
    with pytest.raises(s3dlio.InvalidURIError):
        s3dlio.get(b"file:///tmp/x")  # type: ignore[arg-type]


def test_directory_uri_needs_a_key(tmp_path):
    with pytest.raises(s3dlio.InvalidURIError):
        s3dlio.put(f"file://{tmp_path}/", b"x")
    with pytest.raises(s3dlio.InvalidURIError):
        s3dlio.get("s3://bucket")


def test_missing_object(backend):
    uri = backend.uri("nope/missing.bin")
    for call in (lambda: s3dlio.get(uri), lambda: s3dlio.stat(uri),
                 lambda: s3dlio.get_range(uri, 0, 1), lambda: s3dlio.get_range(uri, 0, 0)):
        with pytest.raises(s3dlio.NotFoundError) as info:
            call()
        assert isinstance(info.value, FileNotFoundError)
        assert info.value.uri == uri
        assert uri in str(info.value)
        assert info.value.errno == 2


def test_directory_where_file_expected(local_backend):
    s3dlio.put(local_backend.uri("dir/inner.bin"), b"x")
    with pytest.raises(s3dlio.IsADirectoryError) as info:
        s3dlio.get(local_backend.uri("dir"))
    assert isinstance(info.value, IsADirectoryError)
    assert local_backend.uri("dir") in str(info.value)
    with pytest.raises(s3dlio.IsADirectoryError):
        s3dlio.put(local_backend.uri("dir"), b"replace a directory?")
    assert s3dlio.get(local_backend.uri("dir/inner.bin")) == b"x"
    assert not s3dlio.exists(local_backend.uri("dir"))


def test_file_where_directory_expected(local_backend):
    s3dlio.put(local_backend.uri("plain"), b"x")
    with pytest.raises(s3dlio.NotADirectoryError) as info:
        s3dlio.put(local_backend.uri("plain/child"), b"y")
    assert isinstance(info.value, NotADirectoryError)
    with pytest.raises(s3dlio.S3dlioError):
        s3dlio.get(local_backend.uri("plain/child"))


def _debris(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if ".s3dlio-tmp." in p.name]


@pytest.mark.skipif(os.geteuid() != 0 or not hasattr(os, "setuid"),
                    reason="needs root to drop to an unprivileged user")
def test_permission_denied_as_unprivileged_user(tmp_path):
    """Root ignores file modes, so the check runs in a child that drops to
    'nobody' before touching a 0600 file and a read-only directory."""
    shared = Path("/tmp") / f"s3dlio-perm-{uuid.uuid4().hex[:8]}"
    shared.mkdir(mode=0o755)
    try:
        secret = shared / "secret.bin"
        secret.write_bytes(b"root only")
        secret.chmod(0o600)
        locked = shared / "locked"
        locked.mkdir(mode=0o555)
        # Import first: the interpreter's own files may be unreadable to nobody.
        script = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r})
import s3dlio
os.setgid(65534); os.setuid(65534)
for call in (lambda: s3dlio.get("file://{secret}"),
             lambda: s3dlio.put("file://{locked}/new.bin", b"x")):
    try:
        call()
    except s3dlio.PermissionDeniedError as e:
        assert isinstance(e, PermissionError), type(e)
        assert "{shared}" in str(e), str(e)
    else:
        raise SystemExit("no error")
print("ok")
"""
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ok"
        assert os.listdir(locked) == []
    finally:
        subprocess.run(["rm", "-rf", str(shared)], check=False)


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 1 MiB tmpfs, if this machine lets us mount one (root in CI)."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + done.stderr.decode().strip())
    yield mountpoint
    subprocess.run(["umount", str(mountpoint)], check=False)


@pytest.mark.parametrize("scheme", ["file", "direct"])
def test_full_disk_leaves_no_partial_file(tiny_filesystem, scheme):
    uri = f"{scheme}://{tiny_filesystem}/big.bin"
    s3dlio.put(uri, b"old contents")
    with pytest.raises(s3dlio.NoSpaceError) as info:
        s3dlio.put(uri, b"\xab" * (4 * 1024 * 1024))
    assert isinstance(info.value, OSError)
    assert info.value.uri == uri
    assert s3dlio.get(uri) == b"old contents"  # the old object is intact
    assert _debris(tiny_filesystem) == []


def test_failed_put_leaves_no_debris(local_backend):
    s3dlio.put(local_backend.uri("d/x"), b"1")
    with pytest.raises(s3dlio.IsADirectoryError):
        s3dlio.put(local_backend.uri("d"), b"2")
    root = Path(local_backend.prefix.split("://", 1)[1])
    assert _debris(root) == []


def test_long_names_up_to_the_filesystem_limit(local_backend):
    name = "n" * 255  # NAME_MAX: the temporary name must not be longer
    s3dlio.put(local_backend.uri(name), b"long")
    assert s3dlio.get(local_backend.uri(name)) == b"long"
    assert s3dlio.list(local_backend.prefix) == [local_backend.uri(name)]
    with pytest.raises(s3dlio.InvalidArgumentError) as info:
        s3dlio.put(local_backend.uri("n" * 256), b"too long")
    assert isinstance(info.value, ValueError)
    assert not isinstance(info.value, s3dlio.InvalidURIError)


def test_fifo_is_refused_not_waited_on(local_backend):
    root = Path(local_backend.prefix.split("://", 1)[1])
    os.mkfifo(root / "pipe")
    with pytest.raises(s3dlio.UnsupportedError, match="not a regular file"):
        s3dlio.get(local_backend.uri("pipe"))
    with pytest.raises(s3dlio.UnsupportedError):
        s3dlio.stat(local_backend.uri("pipe"))


def test_range_overflow_is_an_argument_error(backend):
    s3dlio.put(backend.uri("r.bin"), b"abc")
    with pytest.raises(s3dlio.InvalidArgumentError) as info:
        s3dlio.get_range(backend.uri("r.bin"), 2**64 - 10, 100)
    assert not isinstance(info.value, s3dlio.InvalidURIError)


def test_out_of_range_options(backend):
    with pytest.raises(ValueError):
        s3dlio.get_many([backend.uri("x")], max_in_flight=2**21)


def test_mkdir_errors_are_s3dlio_errors(local_backend):
    s3dlio.put(local_backend.uri("file"), b"x")
    with pytest.raises(s3dlio.S3dlioError) as info:
        s3dlio.mkdir(local_backend.uri("file/sub"))
    assert info.value.uri == local_backend.uri("file/sub")
    s3dlio.mkdir(local_backend.uri("new/dir/"))
    assert os.path.isdir(local_backend.prefix.split("://", 1)[1] + "new/dir")
    s3dlio.mkdir("s3://bucket/prefix/")  # no directories on object stores: nothing to do


def test_unsupported_operation_is_clear():
    # Local files have no presigned URLs.
    with pytest.raises(s3dlio.UnsupportedError) as info:
        s3dlio.presign("file:///tmp/x")
    assert "file:///tmp/x" in str(info.value)
    assert isinstance(info.value, NotImplementedError)


def test_exception_attributes():
    err = s3dlio.NotFoundError("gone", uri="file:///x", http_status=404, code="NoSuchKey",
                               request_id="r1")
    assert (err.uri, err.http_status, err.code, err.request_id) == (
        "file:///x", 404, "NoSuchKey", "r1")
    for cls in (s3dlio.NotFoundError, s3dlio.InvalidURIError, s3dlio.PermissionDeniedError,
                s3dlio.AlreadyExistsError, s3dlio.TimeoutError, s3dlio.ChecksumMismatchError,
                s3dlio.ThrottledError):
        assert issubclass(cls, s3dlio.S3dlioError)
    assert issubclass(s3dlio.TimeoutError, TimeoutError)
