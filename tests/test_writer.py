"""Streaming writers on every backend: round trips with and without
compression (checked with the standard tools for local files), part
counts, atomic appearance, abort and failure leaving nothing behind, and
the bound on buffers."""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import zlib

import pytest

import s3dlio

MiB = 1 << 20


def _part_size(backend) -> int:
    # The smallest parts each store takes, so tests stay small.
    return 5 * MiB if backend.name == "s3" else 256 << 10


def _decompress(kind: str, blob: bytes) -> bytes:
    if kind == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    if kind == "gzip":
        return gzip.decompress(blob)
    if kind == "lz4":
        import lz4.frame
        return lz4.frame.decompress(blob)
    return blob


def _write(uri: str, data: bytes, options, step: int = 100_003) -> dict:
    with s3dlio.create_writer(uri, options) as writer:
        for start in range(0, len(data), step):
            assert writer.write(data[start:start + step]) == len(data[start:start + step])
    return writer.finalize()  # a second finalize returns the same result


@pytest.mark.parametrize("kind", ["none", "zstd", "gzip", "lz4"])
def test_round_trip_on_every_backend(backend, kind):
    part = _part_size(backend)
    data = os.urandom(2 * part + 777) + bytes(part // 3)  # some of it compressible
    options = s3dlio.PyWriterOptions(compression=kind, chunk_size=part, max_in_flight=2)
    uri = backend.uri(f"w/{kind}.bin")
    result = _write(uri, data, options)
    stored = bytes(s3dlio.get(uri))
    assert _decompress(kind, stored) == data
    assert result["bytes_written"] == len(data)
    assert result["compressed_size"] == len(stored)
    assert result["checksum"] == f"crc32c:{_crc32c(stored):08x}"
    assert result["parts"] == -(-len(stored) // part)
    if backend.name in ("s3", "gs", "az"):
        assert result["etag"]


def _crc32c(data: bytes) -> int:
    import crc32c
    return crc32c.crc32c(data)


def test_s3_multipart_etag_counts_parts(backend):
    if backend.name != "s3":
        pytest.skip("S3 multipart ETags")
    data = os.urandom(11 * MiB)
    result = _write(backend.uri("mp.bin"), data,
                    s3dlio.PyWriterOptions(chunk_size=5 * MiB), step=1 << 20)
    assert result["etag"].strip('"').endswith("-3")
    assert s3dlio.get(backend.uri("mp.bin")) == data


def test_small_object_is_one_ordinary_put(backend):
    data = b"small" * 10
    result = _write(backend.uri("s.bin"), data, s3dlio.PyWriterOptions())
    assert result["parts"] == 1
    assert s3dlio.get(backend.uri("s.bin")) == data
    empty = _write(backend.uri("empty.bin"), b"", s3dlio.PyWriterOptions())
    assert empty["bytes_written"] == 0 and s3dlio.get(backend.uri("empty.bin")) == b""


@pytest.mark.parametrize("kind,tool", [("zstd", ["zstd", "-dc"]), ("gzip", ["gunzip", "-c"]),
                                       ("lz4", ["lz4", "-dc"])])
def test_standard_tools_read_local_output(local_backend, kind, tool):
    if shutil.which(tool[0]) is None:
        pytest.skip(f"{tool[0]} not installed")
    data = (b"log line %d\n" * 50_000) % tuple(range(50_000))
    uri = local_backend.uri(f"t.{kind}")
    _write(uri, data, s3dlio.PyWriterOptions(compression=kind, chunk_size=64 << 10))
    path = uri.split("://", 1)[1]
    out = subprocess.run(tool + [path], capture_output=True, timeout=60, check=True).stdout
    assert out == data


def test_nothing_appears_before_finalize_and_abort_leaves_nothing(backend):
    part = _part_size(backend)
    uri = backend.uri("pending.bin")
    writer = s3dlio.create_writer(uri, s3dlio.PyWriterOptions(chunk_size=part, max_in_flight=2))
    writer.write(os.urandom(3 * part))  # several parts already shipped
    assert not s3dlio.exists(uri)
    assert s3dlio.list(backend.prefix) == []  # the in-progress file is hidden from listings
    writer.abort()
    writer.abort()  # idempotent
    assert not s3dlio.exists(uri)
    assert s3dlio.list(backend.prefix) == []  # no temporary file left either
    with pytest.raises(s3dlio.S3dlioError):
        writer.write(b"more")


def test_exception_in_with_block_aborts(backend):
    uri = backend.uri("boom.bin")
    with pytest.raises(RuntimeError):
        with s3dlio.create_writer(uri, s3dlio.PyWriterOptions(chunk_size=_part_size(backend))) as w:
            w.write(os.urandom(_part_size(backend) + 10))
            raise RuntimeError("producer failed")
    assert not s3dlio.exists(uri)
    assert s3dlio.list(backend.prefix) == []


def test_overwrite_false_keeps_the_existing_object(backend):
    uri = backend.uri("keep.bin")
    s3dlio.put(uri, b"original")
    part = _part_size(backend)
    # One PUT, and a multi-part upload (fake-gcs-server ignores
    # ifGenerationMatch on resumable uploads: tests/test_gcs.py checks that
    # path against its scripted server).
    sizes = (10,) if backend.name == "gs" else (10, 2 * part + 1)
    for size in sizes:
        writer = s3dlio.create_writer(uri, s3dlio.PyWriterOptions(chunk_size=part,
                                                                 overwrite=False))
        writer.write(os.urandom(size))
        with pytest.raises(s3dlio.AlreadyExistsError):
            writer.finalize()
        assert s3dlio.get(uri) == b"original"
    assert s3dlio.list(backend.prefix) == [uri]


def test_buffers_stay_bounded(local_backend):
    """Writing 40 parts allocates at most max_in_flight + 1 part buffers."""
    options = s3dlio.PyWriterOptions(chunk_size=64 << 10, max_in_flight=3)
    writer = s3dlio.create_writer(local_backend.uri("bounded.bin"), options)
    chunk = os.urandom(10_000)
    for _ in range(40 * 64 * 1024 // 10_000):
        writer.write(chunk)
        assert writer._allocated <= options.max_in_flight + 1
    writer.finalize()


def test_factories_check_their_scheme(tmp_path):
    with pytest.raises(s3dlio.InvalidArgumentError):
        s3dlio.create_s3_writer(f"file://{tmp_path}/x")
    with pytest.raises(s3dlio.InvalidArgumentError):
        s3dlio.create_azure_writer("s3://bucket/x")
    with pytest.raises(s3dlio.InvalidURIError):
        s3dlio.create_writer("nope://x")
    w = s3dlio.create_filesystem_writer(str(tmp_path / "plain.bin"))  # a plain path
    w.write(b"abc")
    w.finalize()
    assert (tmp_path / "plain.bin").read_bytes() == b"abc"
    d = s3dlio.create_direct_filesystem_writer(f"file://{tmp_path}/d.bin")
    d.write(b"x" * 5000)
    d.finalize()
    assert (tmp_path / "d.bin").read_bytes() == b"x" * 5000


def test_options_validate_and_builder_style():
    options = s3dlio.PyWriterOptions().with_compression("zstd", 5).with_buffer_size(2 * MiB)
    assert (options.compression, options.compression_level, options.part_size) == \
        ("zstd", 5, 2 * MiB)
    for bad in (dict(compression="bz2"), dict(compression="zstd", compression_level=99),
                dict(chunk_size=0), dict(max_in_flight=0)):
        with pytest.raises(s3dlio.InvalidArgumentError):
            s3dlio.PyWriterOptions(**bad).validate()


def test_direct_writer_on_a_file_system_without_o_direct(no_direct_dir):
    uri = f"direct://{no_direct_dir}/fallback.bin"
    data = os.urandom(300_001)
    _write(uri, data, s3dlio.PyWriterOptions(chunk_size=64 << 10))
    assert (no_direct_dir / "fallback.bin").read_bytes() == data


def test_accepts_numpy_and_non_contiguous_data(local_backend):
    import numpy as np
    arr = np.arange(100_000, dtype=np.uint32)
    uri = local_backend.uri("np.bin")
    with s3dlio.create_writer(uri) as w:
        w.write(arr)
        w.write(memoryview(arr.tobytes())[::2])  # strided: copied once
    expected = arr.tobytes() + arr.tobytes()[::2]
    assert s3dlio.get(uri) == expected
    assert zlib.crc32(bytes(s3dlio.get(uri))) == zlib.crc32(expected)


def test_large_writes_to_local_files_go_straight_from_the_callers_memory(tmp_path):
    """Whole parts of a large write are written from the caller's buffer
    (no part-buffer copy) and finished before write() returns, so the
    caller may reuse its memory at once."""
    part = 64 * 1024
    uri = f"file://{tmp_path}/borrowed.bin"
    head, big, tail = os.urandom(1000), bytearray(os.urandom(5 * part + 123)), os.urandom(77)
    expected = head + bytes(big) + tail
    writer = s3dlio.create_writer(uri, s3dlio.PyWriterOptions(chunk_size=part, max_in_flight=3))
    writer.write(head)   # a partial part first: the copy path fills it
    writer.write(big)    # then whole parts straight from `big`
    big[:] = bytes(len(big))  # the caller reuses its memory right away
    writer.write(tail)
    result = writer.finalize()
    assert bytes(s3dlio.get(uri)) == expected
    assert result["checksum"] == f"crc32c:{s3dlio_crc(expected):08x}"
    assert result["bytes_written"] == len(expected)


def s3dlio_crc(data: bytes) -> int:
    from s3dlio._native import ffi, lib
    return int(lib.s3dl_crc32c(0, ffi.from_buffer(data), len(data)))
