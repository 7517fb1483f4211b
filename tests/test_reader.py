"""s3dlio.open: seekable buffered reads with read-ahead on every backend,
line iteration, transparent decompression, and "wb" through a writer."""
from __future__ import annotations

import io
import os

import pytest

import s3dlio


@pytest.fixture
def blob(backend):
    data = os.urandom(300_000) + b"".join(b"line %d\n" % i for i in range(5000))
    uri = backend.uri("r/blob.bin")
    s3dlio.put(uri, data)
    return uri, data


def test_read_seek_tell_on_every_backend(blob):
    uri, data = blob
    with s3dlio.open(uri, "rb", block_size=64 << 10, read_ahead=3) as f:
        assert f.seekable() and f.readable()
        assert f.read(10) == data[:10]
        assert f.tell() == 10
        f.seek(200_000)
        assert f.read(100_000) == data[200_000:300_000]
        f.seek(-7, io.SEEK_END)
        assert f.read() == data[-7:]
        assert f.read(5) == b""  # at the end
        f.seek(0)
        assert f.read() == data
        buf = bytearray(1000)
        f.seek(12_345)
        assert f.readinto(buf) == 1000 and bytes(buf) == data[12_345:13_345]


def test_lines_and_iteration(blob):
    uri, data = blob
    with s3dlio.open(uri, block_size=32 << 10) as f:
        f.seek(300_000)
        assert f.readline() == b"line 0\n"
        lines = list(f)
    assert lines == [b"line %d\n" % i for i in range(1, 5000)]


def test_missing_object_and_bad_mode(backend):
    with pytest.raises(s3dlio.NotFoundError):
        s3dlio.open(backend.uri("nope.bin"))
    with pytest.raises(s3dlio.InvalidArgumentError):
        s3dlio.open(backend.uri("x.bin"), "r+")


@pytest.mark.parametrize("suffix", [".zst", ".gz", ".lz4"])
def test_write_and_read_compressed_by_suffix(backend, suffix):
    uri = backend.uri(f"c/data{suffix}")
    data = b"compressible " * 100_000
    with s3dlio.open(uri, "wb", compression="auto") as f:
        for i in range(0, len(data), 70_001):
            f.write(data[i:i + 70_001])
    assert len(s3dlio.get(uri)) < len(data) // 10  # stored compressed
    with s3dlio.open(uri, "rb", compression="auto", block_size=64 << 10) as f:
        assert f.read() == data


def test_write_mode_aborts_on_exception(backend):
    uri = backend.uri("w/aborted.bin")
    with pytest.raises(RuntimeError):
        with s3dlio.open(uri, "wb") as f:
            f.write(b"partial")
            raise RuntimeError("producer failed")
    assert not s3dlio.exists(uri)
    with s3dlio.open(uri, "wb") as f:
        f.write(b"whole")
    assert s3dlio.get(uri) == b"whole"


def test_object_shrinking_while_open_raises_instead_of_spinning(backend):
    if backend.name == "file":
        pytest.skip("file:// opens the file itself")
    uri = backend.uri("shrink.bin")
    s3dlio.put(uri, os.urandom(300_000))
    with s3dlio.open(uri, block_size=64 << 10, read_ahead=0) as f:
        f.read(10)
        s3dlio.put(uri, os.urandom(100_000))
        f.seek(90_000)
        with pytest.raises(s3dlio.StorageIOError) as info:
            f.read(50_000)
        assert info.value.code == "SizeChanged"


def test_failed_block_is_fetched_again(backend):
    if backend.name == "file":
        pytest.skip("file:// opens the file itself")
    uri = backend.uri("vanishing.bin")
    s3dlio.put(uri, b"v" * 200_000)
    f = s3dlio.open(uri, block_size=64 << 10, read_ahead=0)
    s3dlio.delete(uri)
    for _ in range(2):  # the same typed error each time, never a crash
        with pytest.raises(s3dlio.NotFoundError):
            f.read(10)
    s3dlio.put(uri, b"v" * 200_000)
    assert f.read(10) == b"v" * 10
    f.close()


def test_text_modes_are_refused(backend):
    for mode in ("r", "w", "rt", "a"):
        with pytest.raises(s3dlio.InvalidArgumentError):
            s3dlio.open(backend.uri("t.txt"), mode)
