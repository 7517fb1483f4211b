"""The operation log: one row per request in the reference s3dlio's
13-column zstd TSV, with real times and outcomes, on local and S3."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess

import pytest
import zstandard

import s3dlio
from s3dlio.oplog import HEADER


def _rows(path) -> list[list[str]]:
    with open(path, "rb") as f:
        text = zstandard.ZstdDecompressor().stream_reader(f).read().decode()
    lines = text.splitlines()
    assert lines[0] + "\n" == HEADER
    return [line.split("\t") for line in lines[1:]]


def _when(text: str) -> dt.datetime:
    assert text.endswith("Z") and len(text.split(".")[1]) == 10  # ns digits + Z
    return dt.datetime.fromisoformat(text[:26] + "+00:00")


@pytest.fixture
def oplog(tmp_path):
    path = tmp_path / "ops.tsv.zst"
    s3dlio.init_op_log(str(path))
    yield path
    if s3dlio.is_op_log_active():
        s3dlio.finalize_op_log()


def test_every_operation_is_a_row(backend, oplog):
    a, b = backend.uri("d/a.bin"), backend.uri("d/b.bin")
    s3dlio.put_many([(a, b"x" * 1000), (b, b"y" * 10)])
    s3dlio.get_many([a, b])
    s3dlio.get_range(a, 10, 100)
    s3dlio.stat(a)
    s3dlio.list(backend.uri("d/"))
    with pytest.raises(s3dlio.NotFoundError):
        s3dlio.get(backend.uri("d/missing"))
    s3dlio.delete(b)
    assert s3dlio.is_op_log_active()
    summary = s3dlio.finalize_op_log()
    assert not s3dlio.is_op_log_active()
    rows = _rows(oplog)
    assert summary["rows"] == len(rows) and summary["dropped"] == 0
    assert all(len(r) == 13 for r in rows)
    assert [int(r[0]) for r in rows] == list(range(len(rows)))
    ops = [(r[2], r[7], r[5], r[8]) for r in rows]
    sent = {uri: int(size) for op, uri, size, _ in ops if op == "PUT"}
    if backend.name == "gs":  # bytes sent: a simple upload carries its multipart framing
        assert sent[a] > 1000 and sent[b] > 10
    else:
        assert sent == {a: 1000, b: 10}
    assert ("GET", a, "1000", "") in ops and ("GET", a, "100", "") in ops
    assert any(op == "HEAD" and uri == a for op, uri, _, _ in ops)
    assert any(op == "LIST" for op, *_ in ops)
    assert ("GET", backend.uri("d/missing"), "0", "not found") in ops  # s3dl_strerror text
    assert any(op == "DELETE" and uri == b for op, uri, _, _ in ops)
    for r in rows:
        if r[9]:
            start, end = _when(r[9]), _when(r[11])
            assert start <= _when(r[10]) <= end
            assert int(r[12]) >= 0
        assert r[6] == ("file://" if backend.name in ("file", "direct") else r[6])


def test_multipart_parts_are_rows(backend, oplog, monkeypatch):
    if backend.name != "s3":
        pytest.skip("S3 multipart")
    monkeypatch.setenv("S3DLIO_MULTIPART_THRESHOLD", str(5 << 20))
    monkeypatch.setenv("S3DLIO_MULTIPART_PART_SIZE", str(5 << 20))
    s3dlio.put(backend.uri("big.bin"), os.urandom(11 << 20))
    s3dlio.finalize_op_log()
    rows = _rows(oplog)
    puts = [r for r in rows if r[2] == "PUT"]
    assert sorted(int(r[5]) for r in puts) == [1 << 20, 5 << 20, 5 << 20]
    assert sum(r[2] == "POST" for r in rows) == 2  # create and complete
    assert all(r[6].startswith("http://127.0.0.1:") for r in rows)


def test_one_log_at_a_time_and_bad_targets(tmp_path, oplog):
    with pytest.raises(s3dlio.S3dlioError):
        s3dlio.init_op_log(str(tmp_path / "second.tsv.zst"))
    s3dlio.finalize_op_log()
    assert s3dlio.finalize_op_log()["rows"] == 0  # nothing active: harmless
    with pytest.raises(s3dlio.InvalidArgumentError):
        s3dlio.init_op_log("s3://bucket/ops.tsv.zst")
    with pytest.raises(s3dlio.NotFoundError):
        s3dlio.init_op_log(str(tmp_path / "no" / "such" / "dir" / "ops.tsv.zst"))


def test_zstd_tool_reads_the_log(tmp_path, oplog):
    if shutil.which("zstd") is None:
        pytest.skip("zstd not installed")
    s3dlio.put(f"file://{tmp_path}/x", b"1")
    s3dlio.finalize_op_log()
    out = subprocess.run(["zstd", "-dc", str(oplog)], capture_output=True, timeout=30,
                         check=True).stdout.decode()
    assert out.startswith(HEADER) and f"\tfile://{tmp_path}/x\t" in out
