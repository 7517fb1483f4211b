"""Single-object checkpoints: a nested structure of tensors, arrays and
Python values saved as one object on any store, and loaded back exactly.

The uncompressed object is a valid safetensors file (layout in
``_ckpt_format``); nothing is ever pickled.  Saving streams the blobs
straight from the tensors' memory through a streaming writer (multipart on
S3, resumable on GCS, blocks on Azure, temporary file + rename locally), so
the checkpoint appears whole or not at all.  Loading reads the header, then
every blob with parallel ranged reads written straight into the memory of
the tensors it returns, and checks each blob's CRC32C.  See
docs/checkpoints.md."""
from __future__ import annotations

import concurrent.futures
import os
import time
from typing import Any, Callable, Iterable, Optional, Union

from . import _ckpt_format as fmt
from . import _engine, _local, api
from ._native import ffi, lib
from .errors import (CheckpointError, IsADirectoryError, NotFoundError, UnsupportedError,
                     error_from_oserror)
from .uri import parse_uri
from .writer import PyWriterOptions, create_writer

MiB = 1 << 20
#: First read of a load: most headers fit, so one request gets them.
_HEADER_PROBE = 256 * 1024
#: Blobs at least this big (uncompressed) are read straight into their
#: tensor; smaller ones are read in groups and copied out, so a state_dict
#: of many small tensors costs a few requests, not one each.
_DIRECT_MIN = 1 * MiB
#: Largest single ranged read; a bigger region is split into parallel ones.
_PIECE = 16 * MiB
_READ_IN_FLIGHT = 16
_WORKERS = min(8, os.cpu_count() or 1)

MapLocation = Union[None, str, Any]  # None, "cpu", "cuda:0", a torch.device


def _flat_bytes(array: Any) -> memoryview:
    """A flat byte view of a contiguous array's memory (no copy)."""
    import numpy as np  # on first use: `import s3dlio` stays free of numpy
    return memoryview(array.reshape(-1).view(np.uint8))


def _crc32c(view: Any) -> int:
    # cffi releases the GIL here, so blobs are checked on several threads.
    return int(lib.s3dl_crc32c(0, ffi.from_buffer(view), len(view)))


# ---- saving -------------------------------------------------------------------

def _leaf_bytes(leaf: fmt.Leaf) -> memoryview:
    """The blob's bytes as a flat view of the object's own memory; a copy
    only for non-contiguous, big-endian, conjugated or non-CPU data."""
    if leaf.kind == "bytes":
        return memoryview(leaf.obj).cast("B")
    if leaf.kind == "numpy":
        import numpy as np
        array = np.asarray(leaf.obj)
        if array.dtype.byteorder == ">":  # the format is little-endian
            array = array.astype(array.dtype.newbyteorder("<"))
        array = np.ascontiguousarray(array)
        return _flat_bytes(array)
    torch = fmt.torch_module()
    assert torch is not None
    tensor = leaf.obj.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    tensor = tensor.resolve_conj().resolve_neg().contiguous()
    return _flat_bytes(tensor.reshape(-1).view(torch.uint8).numpy())


def _compressor(level: int) -> Callable[[memoryview], bytes]:
    import zstandard
    # One frame per blob, with its size (the loader checks it before
    # allocating) and zstd's own checksum of the decompressed bytes.
    def compress(view: memoryview) -> bytes:
        cctx = zstandard.ZstdCompressor(level=level, write_content_size=True,
                                        write_checksum=True)
        return cctx.compress(view)
    return compress


_AUTO_DIRECT_MIN = 64 * MiB


def _write_target(uri: str, direct: Optional[bool], fsync: bool, total: int) -> str:
    """The URI the writer gets: file:// becomes direct:// (the same path)
    for a durable save big enough that O_DIRECT beats one big write-back,
    or when asked; direct:// becomes file:// when asked not to."""
    parsed = parse_uri(uri)
    if parsed.scheme not in ("file", "direct"):
        return uri
    wanted = direct if direct is not None else (
        parsed.scheme == "direct" or (fsync and total >= _AUTO_DIRECT_MIN))
    return f"{'direct' if wanted else 'file'}://{parsed.path}"


def save_checkpoint(uri: str, data: Any, compress: bool = False, *, overwrite: bool = True,
                    fsync: bool = True, compression_level: int = 3, direct: Optional[bool] = None,
                    part_size: int = 16 * MiB, max_in_flight: int = 4) -> dict:
    """Saves ``data`` as one object at ``uri``; returns the writer's result
    (``uri``, ``bytes_written``, ``compressed_size``, ``parts``, ``etag``,
    ``checksum``) plus ``blobs``, the number of blobs.

    ``data``: dicts (and OrderedDicts, with a state_dict's ``_metadata``),
    lists and tuples of torch tensors (any dtype but quantized and sparse;
    moved to the CPU), numpy arrays and scalars, int, float, bool, str,
    bytes, bytearray and None.  Dict keys may be str, int, float, bool, None
    or tuples of these.  Anything else raises TypeError naming where.

    ``compress=True`` stores each blob as its own zstd frame (the object is
    then no longer safetensors-readable, and all compressed blobs are held in
    memory until the header is written).  ``overwrite=False`` makes the save
    create-only: ``AlreadyExistsError`` if ``uri`` exists, which is kept.
    ``direct`` (local files): write with O_DIRECT, past the page cache.
    None (the default) does so for a durable (``fsync``) save of 64 MiB or
    more to ``file://``: the disk then takes the data as it is written
    instead of in one write-back at the fsync (1 GiB here: 0.75 s instead of
    1.26 s).  The file and its atomic rename are the same; only a load right
    after the save reads from the disk instead of the cache.
    ``fsync`` (local files only) makes the file and its directory durable
    before returning.  ``part_size`` and ``max_in_flight`` are the streaming
    writer's."""
    tree, leaves = fmt.flatten(data)
    leaves = fmt.file_order(leaves)
    compress_one = _compressor(compression_level) if compress else None

    def prepare(leaf: fmt.Leaf) -> tuple[int, int, Optional[bytes]]:
        view = _leaf_bytes(leaf)
        if compress_one is None:
            return len(view), _crc32c(view), None
        packed = compress_one(view)
        return len(packed), _crc32c(packed), packed

    # The header comes first and holds every blob's checksum (and, when
    # compressed, its size), so this pass runs before any byte is written.
    with concurrent.futures.ThreadPoolExecutor(_WORKERS, "s3dlio-ckpt") as pool:
        prepared = list(pool.map(prepare, leaves))
    header = fmt.build_header(leaves, [p[0] for p in prepared], [p[1] for p in prepared],
                              "zstd" if compress else "none", tree)
    options = PyWriterOptions(chunk_size=part_size, max_in_flight=max_in_flight,
                              fsync=fsync, overwrite=overwrite)
    with create_writer(_write_target(uri, direct, fsync, len(header) + sum(
            p[0] for p in prepared)), options) as writer:
        writer.write(header)
        for leaf, (_size, _crc, packed) in zip(leaves, prepared):
            # Uncompressed blobs are taken again from the tensor's memory:
            # nothing but the part buffers is held beside the caller's data.
            writer.write(packed if packed is not None else _leaf_bytes(leaf))
    result = dict(writer.finalize())
    result["uri"] = uri  # the caller's name, also when the writer went direct://
    result["blobs"] = len(leaves)
    return result


# ---- loading ------------------------------------------------------------------

def _read_header(uri: str) -> fmt.Header:
    """Stat, then the first range; a second range only for a long header."""
    size = int(api.stat(uri)["size"])
    first = bytes(api.get_range(uri, 0, min(size, _HEADER_PROBE)))
    length = fmt.header_length(first, uri)
    if 8 + length > size:
        raise CheckpointError(f"header of {length} bytes runs past the end of the "
                              f"{size}-byte object: {uri}", uri=uri, code="BadHeader")
    raw = first[8:8 + length]
    if len(raw) < length:
        raw += bytes(api.get_range(uri, len(first), 8 + length - len(first)))
    return fmt.parse_header(raw, uri, size)


class _Target:
    """Where one blob lands: the returned object and a flat writable byte
    view of its memory (``staged``: a separate buffer to copy or decompress
    from afterwards)."""

    def __init__(self, entry: fmt.BlobEntry, node: Optional[dict], uri: str) -> None:
        self.entry = entry
        self.node = node
        self.value, self.memory = _allocate(entry, node, uri)
        self.staged: Optional[memoryview] = None


def _torch_dtype(name: str) -> Any:
    import torch
    return getattr(torch, name)  # the name was checked against TORCH_DTYPES


def _allocate(entry: fmt.BlobEntry, node: Optional[dict], uri: str) -> tuple[Any, memoryview]:
    kind = node["t"] if node is not None else "bytes"
    try:
        if kind == "torch":
            assert node is not None
            try:
                import torch
            except ImportError:
                raise CheckpointError(f"blob {entry.name!r} is a torch tensor and torch is not "
                                      f"installed: {uri}", uri=uri, code="TorchMissing",
                                      blob=entry.name) from None
            tensor = torch.empty(node["shape"], dtype=_torch_dtype(node["dtype"]))
            return tensor, _flat_bytes(tensor.reshape(-1).view(torch.uint8).numpy())
        if kind in ("numpy", "npscalar"):
            assert node is not None
            dtype = fmt.numpy_dtype(node, uri)
            stored = dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype
            import numpy as np
            array = np.empty(node["shape"], dtype=stored)
            return array, _flat_bytes(array)
        buffer = bytearray(entry.raw_size)
        return buffer, memoryview(buffer)
    except (MemoryError, RuntimeError) as exc:  # RuntimeError: torch's allocator
        raise CheckpointError(f"cannot allocate {entry.raw_size} bytes for blob "
                              f"{entry.name!r}: {uri}", uri=uri, code="BadHeader",
                              blob=entry.name) from exc


def _finish(target: _Target) -> Any:
    """The value the tree gets for a blob, once its bytes are in place."""
    node, value = target.node, target.value
    if node is None:
        return value
    if node["t"] in ("numpy", "npscalar"):
        import numpy as np
        dtype = np.dtype(node["dtype"])
        if dtype != value.dtype:  # stored little-endian, given back as saved
            value = value.astype(dtype)
        return value[()] if node["t"] == "npscalar" else value
    if node["t"] == "bytes":
        return bytes(value)
    return value


def _plan_reads(header: fmt.Header, targets: dict) -> list[tuple[int, memoryview]]:
    """(object offset, destination) pairs covering every blob: big
    uncompressed blobs straight into their memory, the rest in groups into
    staging buffers (set as ``target.staged``).  Each at most _PIECE."""
    regions: list[tuple[int, memoryview]] = []
    group: list[_Target] = []

    def close_group() -> None:
        if not group:
            return
        start, end = group[0].entry.begin, group[-1].entry.end
        staging = memoryview(bytearray(end - start))
        for member in group:
            member.staged = staging[member.entry.begin - start:member.entry.end - start]
        regions.append((header.data_start + start, staging))
        group.clear()

    for target in targets.values():
        entry = target.entry
        if header.compression == "none" and entry.raw_size >= _DIRECT_MIN:
            close_group()
            regions.append((header.data_start + entry.begin, target.memory))
            continue
        group.append(target)
        if entry.end - group[0].entry.begin >= _PIECE:
            close_group()
    close_group()
    return [(offset + at, view[at:at + _PIECE]) for offset, view in regions
            for at in range(0, len(view), _PIECE)]


def _run_reads(uri: str, pieces: list[tuple[int, memoryview]]) -> None:
    parsed = api._route(uri)
    requests, keep = [], []
    for offset, view in pieces:
        if not len(view):
            continue
        target = ffi.from_buffer(view, require_writable=True)
        keep.append(target)
        request = api._request(_engine.OP_GET, parsed, offset=offset, length=len(view),
                               flags=_engine.F_RANGE)
        request.dest = (int(ffi.cast("uintptr_t", target)), len(view))
        requests.append(request)
    if not requests:
        return
    results, statuses, views = _engine.run(requests, min(_READ_IN_FLIGHT, len(requests)))
    try:
        results.raise_first(statuses)
        for request, view in zip(requests, views):
            if len(view) != request.length:
                raise CheckpointError(f"object ended {request.length - len(view)} bytes early "
                                      f"at offset {request.offset}: {uri}", uri=uri,
                                      code="Truncated")
    finally:
        for view in views:
            if not view.released:
                view.release()
        results.free()


def _settle(target: _Target, header: fmt.Header, uri: str, verify: bool) -> None:
    """Checks one blob's stored bytes and puts them in place."""
    entry = target.entry
    stored = target.staged if target.staged is not None else target.memory
    if verify and _crc32c(stored) != entry.crc32c:
        raise CheckpointError(f"blob {entry.name!r} is corrupt (CRC32C mismatch): {uri}",
                              uri=uri, code="ChecksumMismatch", blob=entry.name)
    if target.staged is None:
        return
    if header.compression == "none":
        target.memory[:] = stored
        return
    import zstandard
    try:
        if zstandard.frame_content_size(stored) != entry.raw_size:
            raise zstandard.ZstdError("frame size differs from the blob's shape")
        raw = zstandard.ZstdDecompressor().decompress(stored, max_output_size=entry.raw_size)
    except zstandard.ZstdError as exc:
        raise CheckpointError(f"blob {entry.name!r} does not decompress ({exc}): {uri}",
                              uri=uri, code="ChecksumMismatch", blob=entry.name) from None
    target.memory[:] = raw


def _load(uri: str, header: fmt.Header, map_location: MapLocation, verify: bool) -> Any:
    nodes = fmt.blob_nodes(header.tree)
    targets = {name: _Target(entry, nodes.get(name), uri)
               for name, entry in header.blobs.items()}
    _run_reads(uri, _plan_reads(header, targets))
    with concurrent.futures.ThreadPoolExecutor(_WORKERS, "s3dlio-ckpt") as pool:
        list(pool.map(lambda t: _settle(t, header, uri, verify), targets.values()))

    def blob_value(node: dict) -> Any:
        value = _finish(targets[node["b"]])
        if map_location is not None and node["t"] == "torch":
            value = value.to(map_location)
        return value

    return fmt.unflatten(header.tree, blob_value, uri)


def load_checkpoint(uri: str, *, map_location: MapLocation = None, verify: bool = True,
                    rank: Optional[int] = None) -> Any:
    """Loads a checkpoint saved by :func:`save_checkpoint`: the same
    structure, with the same types (torch tensors of the same dtype and
    shape, numpy arrays, tuples as tuples, dict order kept).

    ``map_location``: None (tensors stay on the CPU) or a device
    (``"cuda:0"``, a ``torch.device``) each tensor is moved to with ``.to``.
    ``verify`` checks every blob's CRC32C (on by default).  Raises
    CheckpointError naming the URI (and ``.blob``) for a malformed header
    or a corrupt blob, and the storage errors of ``s3dlio.get``.

    A distributed checkpoint's base URI (ending in ``/``, or naming a place
    that holds a finalized manifest) loads every shard as a list in rank
    order, or only shard ``rank``; see s3dlio.checkpoint_dist."""
    header = None
    if not uri.endswith("/"):
        try:
            header = _read_header(uri)
        except (NotFoundError, IsADirectoryError, CheckpointError):
            if not _has_manifest(uri):
                raise
            uri += "/"
    if header is None:
        from .checkpoint_dist import load_distributed
        return load_distributed(uri, rank, map_location=map_location, verify=verify)
    if rank is not None:
        raise CheckpointError(f"rank= selects a shard of a distributed checkpoint, whose base "
                              f"URI ends in '/': {uri}", uri=uri, code="BadArgument")
    try:
        return _load(uri, header, map_location, verify)
    except CheckpointError as exc:
        # A save that replaced the object while we read it mixes two
        # versions; a changed header tells that apart from corruption.
        if exc.code not in ("ChecksumMismatch", "Truncated") or \
                _header_or_none(uri) in (None, header):
            raise
        return _load(uri, _read_header(uri), map_location, verify)


def _has_manifest(uri: str) -> bool:
    """Whether ``uri`` is a distributed checkpoint's base given without its '/'."""
    from .checkpoint_dist import MANIFEST_NAME
    try:
        return api.exists(uri + "/" + MANIFEST_NAME)
    except Exception:
        return False


def _header_or_none(uri: str) -> Optional[fmt.Header]:
    try:
        return _read_header(uri)
    except Exception:
        return None


def load_checkpoint_with_validation(uri: str, expected_keys: Iterable[Any], *,
                                    map_location: MapLocation = None) -> Any:
    """:func:`load_checkpoint` with every check on: the header, each blob's
    size and CRC32C, and that the top level is a dict holding every key of
    ``expected_keys``.  Raises CheckpointError saying what is missing or
    corrupt (``code="MissingKeys"`` for absent keys)."""
    data = load_checkpoint(uri, map_location=map_location, verify=True)
    expected = list(expected_keys)
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint holds a {type(data).__name__}, not a dict with keys "
                              f"{expected!r}: {uri}", uri=uri, code="MissingKeys")
    missing = [key for key in expected if key not in data]
    if missing:
        raise CheckpointError(f"checkpoint lacks key(s) {missing!r}: {uri}", uri=uri,
                              code="MissingKeys")
    return data




def remove_checkpoint_debris(directory_uri: str, older_than: float = 3600.0) -> list:
    """Deletes the temporary files that saves killed part-way (SIGKILL,
    power loss) left in a local directory, if older than ``older_than``
    seconds (so saves still running keep theirs); returns their paths.
    Only ``file://`` and ``direct://``: object stores discard unfinished
    uploads themselves, or by a lifecycle rule (docs/checkpoints.md)."""
    parsed = parse_uri(directory_uri, require_key=False)
    if not parsed.is_local:
        raise UnsupportedError(f"debris is removed by the store's own rules on "
                               f"{parsed.scheme}:// (see docs/checkpoints.md): {directory_uri}",
                               uri=directory_uri, code="Unsupported")
    directory = parsed.path or "/"
    removed = []
    cutoff = time.time() - older_than
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if _local.is_temp_name(entry.name) and entry.is_file(follow_symlinks=False) \
                        and entry.stat(follow_symlinks=False).st_mtime <= cutoff:
                    try:
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        continue  # its save finished or another cleaner got it
                    removed.append(entry.path)
    except OSError as exc:
        raise error_from_oserror(exc, directory_uri) from exc
    return sorted(removed)


__all__ = ["save_checkpoint", "load_checkpoint", "load_checkpoint_with_validation",
           "remove_checkpoint_debris"]
