"""Data-format helpers on top of the core reads: NumPy ``.npy``/``.npz`` files
and TFRecord files with their NVIDIA DALI index.

Arrays are built over the ``BytesView`` a read returns, so a C- or
Fortran-order array stored uncompressed shares the native buffer: no copy.
Pickled (object) arrays are refused, never unpickled.  See docs/formats.md.
"""
from __future__ import annotations

import ast
import bisect
import os
import struct
import types
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import (TYPE_CHECKING, Any, Dict, Iterator, List, Literal, Mapping, Optional, Sequence,
                    Tuple, Union)

from ._native import ffi, lib
from .api import get, get_range, put
from .errors import InvalidArgumentError, StorageIOError
from .reader import PositionedReader

if TYPE_CHECKING:  # imported on first use: `import s3dlio` stays free of numpy
    import numpy as np

PathLike = Union[str, "os.PathLike[str]"]
IndexEntry = Dict[str, int]

_NPY_MAGIC = b"\x93NUMPY"
# numpy.load's default max_header_size: larger headers are refused there too,
# because ast.literal_eval on untrusted, deeply nested input can exhaust the stack.
_NPY_MAX_HEADER = 10_000
_ZIP_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then name and extra lengths
_ZIP_LOCAL_SIGNATURE = b"PK\x03\x04"

_TFRECORD_HEADER = 12   # u64 length + masked CRC-32C of it
_TFRECORD_FOOTER = 4    # masked CRC-32C of the data
_TFRECORD_FRAMING = _TFRECORD_HEADER + _TFRECORD_FOOTER
_TFRECORD_MASK_DELTA = 0xA282EAD8
# Bytes fetched per ranged read while scanning a TFRecord file: large enough
# that an object store sees few requests, small enough to bound memory.
_SCAN_WINDOW = 64 << 20


def _to_uri(path: PathLike) -> str:
    """A URI stays as it is; a local path becomes an absolute file:// URI."""
    text = os.fspath(path)
    if "://" in text:
        return text
    return "file://" + os.path.abspath(text)


# --------------------------------------------------------------------------- .npy / .npz

def _bad_array(uri: str, what: str, member: Optional[str] = None) -> InvalidArgumentError:
    where = f"{uri} [{member}]" if member else uri
    return InvalidArgumentError(f"not a readable .npy array: {what}: {where}", uri=uri,
                                code="BadNpy")


def _parse_npy_header(buf: memoryview, uri: str,
                      member: Optional[str]) -> Tuple[np.dtype, Tuple[int, ...], bool, int]:
    """Returns (dtype, shape, fortran_order, data offset) of the .npy in ``buf``."""
    if len(buf) < 10 or bytes(buf[:6]) != _NPY_MAGIC:
        raise _bad_array(uri, "missing the \\x93NUMPY magic", member)
    major = buf[6]
    if major == 1:
        (header_len,), start = struct.unpack_from("<H", buf, 8), 10
    elif major in (2, 3) and len(buf) >= 12:
        (header_len,), start = struct.unpack_from("<I", buf, 8), 12
    else:
        raise _bad_array(uri, f"unsupported format version {major}.{buf[7]}", member)
    if header_len > _NPY_MAX_HEADER:
        raise _bad_array(uri, f"header of {header_len} bytes is over {_NPY_MAX_HEADER}", member)
    if start + header_len > len(buf):
        raise _bad_array(uri, "header runs past the end", member)
    encoding = "utf-8" if major == 3 else "latin-1"
    try:
        header = ast.literal_eval(bytes(buf[start:start + header_len]).decode(encoding))
    except (SyntaxError, ValueError, UnicodeDecodeError, MemoryError, RecursionError) as exc:
        raise _bad_array(uri, f"header does not parse ({exc})", member) from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise _bad_array(uri, "header is not {descr, fortran_order, shape}", member)
    shape, fortran = header["shape"], header["fortran_order"]
    if (not isinstance(shape, tuple) or not isinstance(fortran, bool)
            or not all(type(n) is int and n >= 0 for n in shape)):
        raise _bad_array(uri, "bad shape or fortran_order", member)
    from numpy.lib.format import descr_to_dtype
    try:
        dtype = descr_to_dtype(header["descr"])
    except (TypeError, ValueError) as exc:
        raise _bad_array(uri, f"bad dtype ({exc})", member) from None
    if dtype.hasobject:
        raise InvalidArgumentError(
            f"refusing an object (pickled) array: s3dlio never unpickles: "
            f"{f'{uri} [{member}]' if member else uri}", uri=uri, code="PickledArray")
    return dtype, shape, fortran, start + header_len


def _array_from_npy(buf: memoryview, uri: str, member: Optional[str] = None) -> np.ndarray:
    """The array stored in ``buf`` (a whole .npy), sharing ``buf``'s memory
    when the data is aligned for its dtype, else copied once."""
    import numpy as np
    dtype, shape, fortran, offset = _parse_npy_header(buf, uri, member)
    count = 1
    for n in shape:
        count *= n
    nbytes = count * dtype.itemsize
    if offset + nbytes > len(buf):
        raise _bad_array(uri, f"data is {len(buf) - offset} bytes, the header says {nbytes}",
                         member)
    order: Literal["C", "F"] = "F" if fortran else "C"
    if nbytes == 0:  # nothing to share; frombuffer refuses zero-sized dtypes
        return np.zeros(shape, dtype=dtype, order=order)
    flat = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
    if not flat.flags.aligned:
        flat = flat.copy()
    return flat.reshape(shape, order=order)


def read_npy(uri: PathLike) -> np.ndarray:
    """Reads one .npy file with one GET and returns its array, a zero-copy
    view of the returned buffer (C or Fortran order).  Object arrays raise
    InvalidArgumentError; a malformed or truncated file raises it too."""
    target = _to_uri(uri)
    return _array_from_npy(get(target).memoryview(), target)


class _MemoryReader(PositionedReader):
    """A seekable, read-only file over a memoryview, so zipfile can parse an
    archive already in memory without copying it into a BytesIO.  Seeking
    before the start stops at 0, as in a BytesIO (zipfile probes a short
    input that way)."""

    clamp_at_start = True

    def __init__(self, buf: memoryview) -> None:
        super().__init__()
        self._buf = buf

    def length(self) -> int:
        return len(self._buf)

    def readinto(self, target: Any) -> int:
        chunk = self._buf[self._pos:self._pos + len(target)]
        memoryview(target).cast("B")[:len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


def _stored_member(archive: memoryview, info: zipfile.ZipInfo, uri: str,
                   check_crc: bool) -> memoryview:
    """The bytes of an uncompressed member, as a slice of the archive."""
    header_end = info.header_offset + _ZIP_LOCAL_HEADER.size
    if header_end > len(archive):
        raise _bad_array(uri, "local header runs past the end", info.filename)
    signature, name_len, extra_len = _ZIP_LOCAL_HEADER.unpack_from(archive, info.header_offset)
    if signature != _ZIP_LOCAL_SIGNATURE:
        raise _bad_array(uri, "bad local header signature", info.filename)
    start = header_end + name_len + extra_len
    if start + info.file_size > len(archive):
        raise _bad_array(uri, "member runs past the end", info.filename)
    data = archive[start:start + info.file_size]
    if check_crc and zlib.crc32(data) != info.CRC:
        raise StorageIOError(f"CRC-32 mismatch in member {info.filename}: {uri}", uri=uri,
                             code="CorruptRecord")
    return data


def _inflated_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> memoryview:
    """Decompresses a member into a writable buffer (zipfile checks its CRC)."""
    out = bytearray(info.file_size)
    view = memoryview(out)
    filled = 0
    with zf.open(info) as member:
        while filled < len(out):
            chunk = member.read(min(len(out) - filled, 1 << 20))
            if not chunk:
                break
            view[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        if filled != len(out) or member.read(1):
            raise zipfile.BadZipFile(f"member {info.filename} is not {info.file_size} bytes")
    return view


def read_npz(uri: PathLike, *, check_crc: bool = True) -> Mapping[str, np.ndarray]:
    """Reads a .npz archive (``numpy.savez`` or ``savez_compressed``) with one
    GET and returns a read-only mapping from name (without ``.npy``) to array.

    Stored members share the archive's buffer when aligned for their dtype;
    deflated members are decompressed into memory of their own.  Every member
    is checked against its ZIP CRC-32 unless ``check_crc=False``."""
    target = _to_uri(uri)
    archive = get(target).memoryview()
    arrays: Dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(_MemoryReader(archive)) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
                    data = _stored_member(archive, info, target, check_crc)
                else:
                    data = _inflated_member(zf, info)
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                arrays[name] = _array_from_npy(data, target, info.filename)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise StorageIOError(f"not a readable .npz archive ({exc}): {target}", uri=target,
                             code="CorruptRecord") from None
    except (NotImplementedError, RuntimeError) as exc:  # unsupported compression, encryption
        raise InvalidArgumentError(f"unsupported .npz member ({exc}): {target}", uri=target,
                                   code="BadNpy") from None
    return types.MappingProxyType(arrays)


# --------------------------------------------------------------------------- TFRecord

def _masked_crc32c(data: Any) -> int:
    """TFRecord's masked CRC-32C: rotate right by 15, add a constant."""
    crc = lib.s3dl_crc32c(0, ffi.from_buffer(data), len(data))
    return (((crc >> 15) | (crc << 17)) + _TFRECORD_MASK_DELTA) & 0xFFFFFFFF


def _corrupt(uri: str, offset: int, what: str) -> StorageIOError:
    return StorageIOError(f"corrupt TFRecord at offset {offset}: {what}: {uri}", uri=uri,
                          code="CorruptRecord")


def _check_record(record: memoryview, uri: str, offset: int) -> memoryview:
    """Verifies one framed record (header, data, footer) and returns its data."""
    if len(record) < _TFRECORD_HEADER:
        raise _corrupt(uri, offset, "truncated length header")
    length_bytes = record[:8]
    (length,) = struct.unpack_from("<Q", record, 0)
    (length_crc,) = struct.unpack_from("<I", record, 8)
    if _masked_crc32c(length_bytes) != length_crc:
        raise _corrupt(uri, offset, "length CRC mismatch")
    if len(record) < length + _TFRECORD_FRAMING:
        raise _corrupt(uri, offset, f"truncated record of {length} bytes")
    if len(record) != length + _TFRECORD_FRAMING:
        raise _corrupt(uri, offset, f"record of {length} bytes does not fill {len(record)} bytes")
    data = record[_TFRECORD_HEADER:_TFRECORD_HEADER + length]
    (data_crc,) = struct.unpack_from("<I", record, _TFRECORD_HEADER + length)
    if _masked_crc32c(data) != data_crc:
        raise _corrupt(uri, offset, "data CRC mismatch")
    return data


def _scan_tfrecords(uri: str, window: int = _SCAN_WINDOW) -> Iterator[Tuple[int, memoryview]]:
    """Yields (offset, framed record) for every record, verified, reading the
    file in ranged windows so memory stays bounded by the largest record."""
    buf = memoryview(b"")
    buf_start = 0

    def read_at(offset: int, n: int) -> memoryview:
        nonlocal buf, buf_start
        if not (buf_start <= offset and offset + n <= buf_start + len(buf)):
            buf = get_range(uri, offset, max(n, window)).memoryview()
            buf_start = offset
        return buf[offset - buf_start:offset - buf_start + n]

    offset = 0
    while True:
        header = read_at(offset, _TFRECORD_HEADER)
        if len(header) == 0:
            return
        if len(header) < _TFRECORD_HEADER:
            raise _corrupt(uri, offset, "truncated length header")
        (length,) = struct.unpack_from("<Q", header, 0)
        (length_crc,) = struct.unpack_from("<I", header, 8)
        if _masked_crc32c(header[:8]) != length_crc:  # before trusting length for a read
            raise _corrupt(uri, offset, "length CRC mismatch")
        record = read_at(offset, length + _TFRECORD_FRAMING)
        _check_record(record, uri, offset)
        yield offset, record
        offset += len(record)


def create_tfrecord_index(input_path: PathLike, output_path: PathLike) -> int:
    """Writes the NVIDIA DALI index of a TFRecord file, one ``"offset size\\n"``
    line per record (size includes the 16 framing bytes), after verifying every
    record's CRCs.  Returns the number of records.  Raises StorageIOError with
    ``code == "CorruptRecord"`` on a CRC mismatch or a truncated file."""
    source = _to_uri(input_path)
    lines = [f"{offset} {len(record)}\n" for offset, record in _scan_tfrecords(source)]
    put(_to_uri(output_path), "".join(lines).encode("ascii"))
    return len(lines)


def get_tfrecord_index_entries(path: PathLike) -> List[IndexEntry]:
    """Parses a DALI index file into ``[{"offset": int, "size": int}, ...]``.
    A line that is not two non-negative integers raises InvalidArgumentError."""
    uri = _to_uri(path)
    entries: List[IndexEntry] = []
    text = get(uri).to_bytes().decode("ascii", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if (len(fields) != 2 or not all(f.isdigit() for f in fields)
                or int(fields[1]) < _TFRECORD_FRAMING):
            raise InvalidArgumentError(f"bad TFRecord index line {number} {line!r}: {uri}",
                                       uri=uri, code="BadIndex")
        entries.append({"offset": int(fields[0]), "size": int(fields[1])})
    return entries


def _coalesce(entries: Sequence[IndexEntry]) -> List[Tuple[int, int]]:
    """Merges byte ranges that touch or overlap into (offset, length) runs."""
    runs: List[Tuple[int, int]] = []
    for entry in sorted(entries, key=lambda e: e["offset"]):
        start, end = entry["offset"], entry["offset"] + entry["size"]
        if runs and start <= runs[-1][0] + runs[-1][1]:
            run_start, run_len = runs[-1]
            runs[-1] = (run_start, max(run_len, end - run_start))
        else:
            runs.append((start, end - start))
    return runs


def read_tfrecord_records(uri: PathLike,
                          index: Union[None, PathLike, Sequence[IndexEntry]] = None,
                          indices: Optional[Sequence[int]] = None, *,
                          max_in_flight: int = 16) -> List[memoryview]:
    """Returns the payloads of TFRecord records as zero-copy memoryviews, each
    verified against its CRCs.

    Without ``index`` the whole file is scanned.  With ``index`` (a DALI index
    path/URI, or the list ``get_tfrecord_index_entries`` returns) only the
    records named by ``indices`` (default: all, in file order) are fetched:
    adjacent records are merged into one ranged read, and up to
    ``max_in_flight`` ranges are read at once."""
    source = _to_uri(uri)
    if index is None:
        records = [_check_record(rec, source, off) for off, rec in _scan_tfrecords(source)]
        if indices is None:
            return records
        return [records[i] for i in indices]
    if isinstance(index, (str, os.PathLike)):
        entries = get_tfrecord_index_entries(index)
    else:
        entries = list(index)
    wanted = [entries[i] for i in indices] if indices is not None else entries
    runs = _coalesce(wanted)
    if not runs:
        return []

    def fetch(run: Tuple[int, int]) -> Tuple[int, memoryview]:
        return run[0], get_range(source, run[0], run[1]).memoryview()

    with ThreadPoolExecutor(max_workers=max(1, min(max_in_flight, len(runs)))) as pool:
        fetched = list(pool.map(fetch, runs))
    starts = [start for start, _ in fetched]
    payloads: List[memoryview] = []
    for entry in wanted:
        offset, size = entry["offset"], entry["size"]
        run_start, data = fetched[bisect.bisect_right(starts, offset) - 1]
        record = data[offset - run_start:offset - run_start + size]
        payloads.append(_check_record(record, source, offset))
    return payloads

