"""s3dlio.formats: .npy/.npz readers and TFRecord/DALI index helpers, on files
written here by numpy and by a small TFRecord writer."""
from __future__ import annotations

import struct
import zipfile

import crc32c
import numpy as np
import pytest

import s3dlio
from s3dlio.formats import (create_tfrecord_index, get_tfrecord_index_entries, read_npy,
                            read_npz, read_tfrecord_records)

ARRAYS = {
    "f32": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    "i64": np.arange(-5, 5, dtype=np.int64),
    "u8": np.arange(256, dtype=np.uint8),
    "big_endian": np.arange(6, dtype=">f8").reshape(3, 2),
    "c128": np.array([1 + 2j, 3 - 4j]),
    "bool": np.array([True, False, True]),
    "fortran": np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4)),
    "scalar": np.array(3.5),
    "empty": np.zeros((0, 5), dtype=np.float64),
    "record": np.array([(1, 2.0), (3, 4.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
    "unicode": np.array(["ab", "cde"]),
}


def uri(path) -> str:
    return "file://" + str(path)


def _assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    assert got.flags.f_contiguous == want.flags.f_contiguous or want.ndim < 2
    np.testing.assert_array_equal(got, want)


def _backed_by_bytesview(arr: np.ndarray) -> bool:
    base = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return isinstance(base, memoryview) and isinstance(base.obj, s3dlio.BytesView)


# --------------------------------------------------------------------------- .npy

@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_read_npy_round_trip(tmp_path, name):
    want = ARRAYS[name]
    np.save(tmp_path / "a.npy", want)
    _assert_same(read_npy(uri(tmp_path / "a.npy")), want)


def test_read_npy_is_zero_copy(tmp_path):
    np.save(tmp_path / "a.npy", ARRAYS["f32"])
    arr = read_npy(uri(tmp_path / "a.npy"))
    assert _backed_by_bytesview(arr)
    np.save(tmp_path / "f.npy", ARRAYS["fortran"])
    fortran = read_npy(tmp_path / "f.npy")
    assert fortran.flags.f_contiguous and _backed_by_bytesview(fortran)


def test_read_npy_accepts_local_path(tmp_path):
    np.save(tmp_path / "a.npy", ARRAYS["i64"])
    _assert_same(read_npy(str(tmp_path / "a.npy")), ARRAYS["i64"])


def test_read_npy_refuses_object_arrays(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(s3dlio.InvalidArgumentError) as info:
        read_npy(uri(tmp_path / "o.npy"))
    assert info.value.code == "PickledArray"


@pytest.mark.parametrize("data", [b"", b"not numpy at all", b"\x93NUMPY\x01\x00\xff\x00{"])
def test_read_npy_refuses_garbage(tmp_path, data):
    (tmp_path / "g.npy").write_bytes(data)
    with pytest.raises(ValueError):
        read_npy(uri(tmp_path / "g.npy"))


def test_read_npy_refuses_truncated_data(tmp_path):
    np.save(tmp_path / "a.npy", ARRAYS["f32"])
    (tmp_path / "a.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:-1])
    with pytest.raises(s3dlio.InvalidArgumentError):
        read_npy(uri(tmp_path / "a.npy"))


def test_read_npy_version_3_header(tmp_path):
    want = np.array([1, 2], dtype=[("é", "<i4")])
    with open(tmp_path / "v3.npy", "wb") as f:
        np.lib.format.write_array(f, want, version=(3, 0))
    _assert_same(read_npy(uri(tmp_path / "v3.npy")), want)


# --------------------------------------------------------------------------- .npz

@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_read_npz_round_trip(tmp_path, save):
    save(tmp_path / "a.npz", **ARRAYS)
    got = read_npz(uri(tmp_path / "a.npz"))
    with np.load(tmp_path / "a.npz") as reference:
        assert sorted(got) == sorted(reference.files) == sorted(ARRAYS)
        for name, want in ARRAYS.items():
            _assert_same(got[name], want)
            _assert_same(got[name], reference[name])
    with pytest.raises(TypeError):
        got["new"] = np.zeros(1)  # type: ignore[index]


def test_read_npz_stored_members_are_zero_copy_when_aligned(tmp_path):
    np.savez(tmp_path / "a.npz", **ARRAYS)
    got = read_npz(uri(tmp_path / "a.npz"))
    view_backed = {name for name, arr in got.items() if _backed_by_bytesview(arr)}
    for name, arr in got.items():
        if arr.nbytes and name in view_backed:
            assert arr.flags.aligned
    # one-byte dtypes are always aligned, so they are never copied
    assert "u8" in view_backed and "bool" in view_backed
    # whatever was copied was copied because its offset was misaligned
    for name in set(ARRAYS) - view_backed - {"empty"}:
        assert ARRAYS[name].dtype.alignment > 1


def test_read_npz_aligned_member_shares_memory(tmp_path):
    # pad the first member's name so the second member's data lands 64-byte aligned
    arr = np.arange(16, dtype=np.float64)
    for pad in range(64):
        path = tmp_path / f"p{pad}.npz"
        np.savez(path, **{"x" * (pad + 1): np.zeros(1, np.uint8), "data": arr})
        got = read_npz(path)["data"]
        if _backed_by_bytesview(got):
            np.testing.assert_array_equal(got, arr)
            return
    pytest.fail("no padding gave an aligned member")


def test_read_npz_compressed_is_decompressed(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", a=ARRAYS["f32"])
    got = read_npz(uri(tmp_path / "c.npz"))["a"]
    assert not _backed_by_bytesview(got)
    got[0, 0, 0] = 99  # writable, like numpy.load's arrays


def test_read_npz_refuses_object_arrays(tmp_path):
    np.savez(tmp_path / "o.npz", ok=np.zeros(2), bad=np.array([None, 1], dtype=object))
    with pytest.raises(s3dlio.InvalidArgumentError):
        read_npz(uri(tmp_path / "o.npz"))


def test_read_npz_detects_corrupt_member(tmp_path):
    np.savez(tmp_path / "a.npz", a=np.arange(1000, dtype=np.int64))
    raw = bytearray((tmp_path / "a.npz").read_bytes())
    raw[500] ^= 0xFF  # inside a's data
    (tmp_path / "a.npz").write_bytes(bytes(raw))
    with pytest.raises(s3dlio.StorageIOError) as info:
        read_npz(uri(tmp_path / "a.npz"))
    assert info.value.code == "CorruptRecord"
    assert read_npz(uri(tmp_path / "a.npz"), check_crc=False)["a"].shape == (1000,)


def test_read_npz_refuses_non_zip(tmp_path):
    (tmp_path / "n.npz").write_bytes(b"PK but not a zip")
    with pytest.raises(s3dlio.StorageIOError):
        read_npz(uri(tmp_path / "n.npz"))


def test_read_npz_keeps_names_without_npy_suffix(tmp_path):
    with zipfile.ZipFile(tmp_path / "raw.npz", "w") as zf:
        with zf.open("plain", "w") as f:
            np.lib.format.write_array(f, ARRAYS["i64"])
    _assert_same(read_npz(uri(tmp_path / "raw.npz"))["plain"], ARRAYS["i64"])


# --------------------------------------------------------------------------- TFRecord

def _masked(data: bytes) -> int:
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _frame(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return (length + struct.pack("<I", _masked(length)) + payload
            + struct.pack("<I", _masked(payload)))


PAYLOADS = [b"", b"a", b"hello tfrecord", bytes(range(256)) * 40, b"\x00" * 7]


def _write_tfrecord(path, payloads=PAYLOADS) -> bytes:
    data = b"".join(_frame(p) for p in payloads)
    path.write_bytes(data)
    return data


def _expected_index(payloads=PAYLOADS) -> str:
    lines, offset = [], 0
    for p in payloads:
        lines.append(f"{offset} {len(p) + 16}\n")
        offset += len(p) + 16
    return "".join(lines)


def test_masked_crc_matches_reference():
    from s3dlio.formats import _masked_crc32c
    for p in PAYLOADS:
        assert _masked_crc32c(p) == _masked(p)


def test_create_index_writes_dali_format(tmp_path):
    _write_tfrecord(tmp_path / "d.tfrecord")
    n = create_tfrecord_index(uri(tmp_path / "d.tfrecord"), str(tmp_path / "d.idx"))
    assert n == len(PAYLOADS)
    assert (tmp_path / "d.idx").read_text() == _expected_index()
    entries = get_tfrecord_index_entries(uri(tmp_path / "d.idx"))
    assert entries == [{"offset": int(o), "size": int(s)}
                       for o, s in (line.split() for line in _expected_index().splitlines())]


def test_create_index_scans_in_windows(tmp_path, monkeypatch):
    import s3dlio.formats as formats
    monkeypatch.setattr(formats, "_SCAN_WINDOW", 7)
    monkeypatch.setattr(formats._scan_tfrecords, "__defaults__", (7,))
    _write_tfrecord(tmp_path / "d.tfrecord")
    create_tfrecord_index(tmp_path / "d.tfrecord", tmp_path / "d.idx")
    assert (tmp_path / "d.idx").read_text() == _expected_index()


def test_create_index_empty_file(tmp_path):
    (tmp_path / "e.tfrecord").write_bytes(b"")
    assert create_tfrecord_index(tmp_path / "e.tfrecord", tmp_path / "e.idx") == 0
    assert (tmp_path / "e.idx").read_bytes() == b""
    assert get_tfrecord_index_entries(tmp_path / "e.idx") == []


@pytest.mark.parametrize("where", ["length_crc", "data", "data_crc"])
def test_create_index_detects_corruption(tmp_path, where):
    data = bytearray(_write_tfrecord(tmp_path / "d.tfrecord"))
    second = len(PAYLOADS[0]) + 16  # record 1 (b"a")
    flip = {"length_crc": second + 9, "data": second + 12, "data_crc": second + 14}[where]
    data[flip] ^= 0x01
    (tmp_path / "d.tfrecord").write_bytes(bytes(data))
    with pytest.raises(s3dlio.StorageIOError) as info:
        create_tfrecord_index(tmp_path / "d.tfrecord", tmp_path / "d.idx")
    assert info.value.code == "CorruptRecord"
    assert not (tmp_path / "d.idx").exists()


@pytest.mark.parametrize("cut", [1, 4, 5, 16, 20])
def test_create_index_detects_truncation(tmp_path, cut):
    data = _write_tfrecord(tmp_path / "d.tfrecord")
    (tmp_path / "d.tfrecord").write_bytes(data[:-cut])
    with pytest.raises(s3dlio.StorageIOError) as info:
        create_tfrecord_index(tmp_path / "d.tfrecord", tmp_path / "d.idx")
    assert info.value.code == "CorruptRecord"


@pytest.mark.parametrize("text", ["0\n", "0 16 3\n", "a 16\n", "-1 16\n", "0 15\n"])
def test_index_entries_refuse_bad_lines(tmp_path, text):
    (tmp_path / "bad.idx").write_text(text)
    with pytest.raises(s3dlio.InvalidArgumentError):
        get_tfrecord_index_entries(tmp_path / "bad.idx")


def test_read_records_without_index(tmp_path):
    _write_tfrecord(tmp_path / "d.tfrecord")
    got = read_tfrecord_records(uri(tmp_path / "d.tfrecord"))
    assert [bytes(r) for r in got] == PAYLOADS
    assert [bytes(r) for r in read_tfrecord_records(tmp_path / "d.tfrecord", indices=[3, 0])] \
        == [PAYLOADS[3], PAYLOADS[0]]


@pytest.mark.parametrize("indices", [None, [2], [4, 1, 1, 0], [0, 2, 4], []])
def test_read_records_with_index(tmp_path, indices):
    _write_tfrecord(tmp_path / "d.tfrecord")
    create_tfrecord_index(tmp_path / "d.tfrecord", tmp_path / "d.idx")
    want = PAYLOADS if indices is None else [PAYLOADS[i] for i in indices]
    by_path = read_tfrecord_records(tmp_path / "d.tfrecord", tmp_path / "d.idx", indices)
    entries = get_tfrecord_index_entries(tmp_path / "d.idx")
    by_entries = read_tfrecord_records(uri(tmp_path / "d.tfrecord"), entries, indices)
    assert [bytes(r) for r in by_path] == [bytes(r) for r in by_entries] == want
    for record in by_path:
        assert isinstance(record.obj, s3dlio.BytesView)  # zero-copy slice of a ranged read


def test_read_records_with_index_detects_corruption(tmp_path):
    data = bytearray(_write_tfrecord(tmp_path / "d.tfrecord"))
    create_tfrecord_index(tmp_path / "d.tfrecord", tmp_path / "d.idx")
    data[len(PAYLOADS[0]) + 16 + 12] ^= 0x01  # record 1's data
    (tmp_path / "d.tfrecord").write_bytes(bytes(data))
    assert bytes(read_tfrecord_records(tmp_path / "d.tfrecord", tmp_path / "d.idx", [2])[0]) \
        == PAYLOADS[2]
    with pytest.raises(s3dlio.StorageIOError):
        read_tfrecord_records(tmp_path / "d.tfrecord", tmp_path / "d.idx", [1])
    wrong_size = [{"offset": 0, "size": 17}]
    with pytest.raises(s3dlio.StorageIOError):
        read_tfrecord_records(tmp_path / "d.tfrecord", wrong_size)


def test_matches_tensorflow(tmp_path):
    tf = pytest.importorskip("tensorflow")
    _write_tfrecord(tmp_path / "d.tfrecord")
    reference = [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "d.tfrecord"))]
    assert [bytes(r) for r in read_tfrecord_records(tmp_path / "d.tfrecord")] == reference
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
        for p in PAYLOADS:
            writer.write(p)
    create_tfrecord_index(tmp_path / "tf.tfrecord", tmp_path / "tf.idx")
    assert (tmp_path / "tf.idx").read_text() == _expected_index()
