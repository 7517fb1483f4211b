"""The checkpoint format, without I/O: the tree of Python values, the
header, and its validation.

Layout (uncompressed, a valid safetensors file)::

    u64 little-endian N | N bytes of JSON header (space padded) | blobs, back to back

The header maps each blob name to ``{"dtype", "shape", "data_offsets"}``
(offsets relative to the end of the header) and holds ``__metadata__``, a
string-to-string map: ``format``, ``version``, ``compression``, ``tree`` (the
nested structure as JSON, naming blobs) and ``blobs`` (JSON: each blob's
stored ``size`` and ``crc32c``).  Everything read from a checkpoint is
validated here before any memory is sized from it; nothing is ever
unpickled or evaluated."""
from __future__ import annotations

import collections
import json
import math
import struct
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from .errors import CheckpointError

if TYPE_CHECKING:
    import numpy as np

FORMAT_NAME = "s3dlio.checkpoint"
FORMAT_VERSION = "1"
COMPRESSIONS = ("none", "zstd")
#: safetensors refuses headers above 100 MB; so do we, before reading one.
MAX_HEADER = 100_000_000
#: Blob data starts at a multiple of this (spaces pad the header, as
#: safetensors does), so mmap-based readers get aligned tensors.
DATA_ALIGN = 64
_MAX_DIMS = 64
_MAX_DEPTH = 200  # nesting of the tree; deeper JSON would exhaust the stack

# safetensors dtype code -> item size.  Blob sizes are checked against these.
ST_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}
# numpy dtype (little-endian) -> safetensors code; others are stored as U8 bytes.
_NP_TO_ST = {
    "|b1": "BOOL", "|u1": "U8", "|i1": "I8", "<i2": "I16", "<u2": "U16", "<f2": "F16",
    "<i4": "I32", "<u4": "U32", "<f4": "F32", "<i8": "I64", "<u8": "U64", "<f8": "F64",
    "<c8": "C64",
}
# numpy kinds a checkpoint may hold: no objects, no structured records.
_NP_KINDS = "biufcSUMm"
# torch dtype name -> (safetensors code or None for raw bytes, item size).
TORCH_DTYPES = {
    "bool": ("BOOL", 1), "uint8": ("U8", 1), "int8": ("I8", 1), "int16": ("I16", 2),
    "uint16": ("U16", 2), "int32": ("I32", 4), "uint32": ("U32", 4), "int64": ("I64", 8),
    "uint64": ("U64", 8), "float16": ("F16", 2), "bfloat16": ("BF16", 2),
    "float32": ("F32", 4), "float64": ("F64", 8), "complex64": ("C64", 8),
    "complex128": (None, 16), "float8_e4m3fn": ("F8_E4M3", 1),
    "float8_e5m2": ("F8_E5M2", 1),
}


def torch_module() -> Any:
    """torch if the process already imported it, else None: a tensor cannot
    exist without torch loaded, so numpy-only users never import it."""
    return sys.modules.get("torch")


@dataclass
class Leaf:
    """One blob to save: the object, its name, and what the header says."""

    name: str
    kind: str  # "torch", "numpy" or "bytes"
    obj: Any
    st_dtype: str
    st_shape: list
    nbytes: int
    itemsize: int


@dataclass
class BlobEntry:
    """One blob as a validated header describes it."""

    name: str
    st_dtype: str
    st_shape: list
    begin: int  # relative to the data section
    end: int
    raw_size: int
    crc32c: int

    @property
    def stored_size(self) -> int:
        return self.end - self.begin


@dataclass
class Header:
    header_len: int  # N, the JSON's length
    compression: str
    tree: Any
    blobs: dict = field(default_factory=dict)  # name -> BlobEntry, in file order

    @property
    def data_start(self) -> int:
        return 8 + self.header_len

    @property
    def total_size(self) -> int:
        return self.data_start + sum(b.stored_size for b in self.blobs.values())


# ---- saving: the tree ---------------------------------------------------------

class _Flattener:
    """Turns a nested value into a JSON tree and a list of blobs.  The same
    tensor or array object met twice becomes one blob, referenced twice (tied
    weights stay tied)."""

    def __init__(self) -> None:
        self.leaves: list[Leaf] = []
        self._by_id: dict[int, str] = {}
        self._names: set[str] = set()

    def _name(self, path: list[str]) -> str:
        # State-dict style names ("model.0.weight"), so safetensors tools
        # show something readable; a clash gets a suffix.
        base = ".".join(path) or "root"
        if base.startswith("__"):
            base = "_" + base
        name, n = base, 1
        while name in self._names:
            name, n = f"{base}#{n}", n + 1
        self._names.add(name)
        return name

    def _blob(self, value: Any, path: list[str], make: Callable[[str], Leaf]) -> str:
        known = self._by_id.get(id(value))
        if known is not None:
            return known
        leaf = make(self._name(path))
        self.leaves.append(leaf)
        self._by_id[id(value)] = leaf.name
        return leaf.name

    def node(self, value: Any, path: list[str], depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise TypeError(f"checkpoint data nested deeper than {_MAX_DEPTH} at "
                            f"{_where(path)}")
        torch = torch_module()
        if torch is not None and isinstance(value, torch.Tensor):
            return self._torch(value, path)
        # A value can be a numpy array only once numpy is imported, which
        # `import s3dlio` does not do (it costs 50 ms and a spin of BLAS threads).
        numpy_module = sys.modules.get("numpy")
        if numpy_module is not None and isinstance(value, (numpy_module.ndarray,
                                                           numpy_module.generic)):
            return self._numpy(value, path)
        if value is None:
            return {"t": "none"}
        if isinstance(value, bool):
            return {"t": "bool", "v": value}
        if isinstance(value, int):
            return {"t": "int", "v": str(value)}  # str: exact in any JSON reader
        if isinstance(value, float):
            return {"t": "float", "v": value.hex()}  # exact, and nan/inf survive
        if isinstance(value, str):
            return {"t": "str", "v": value}
        if isinstance(value, (bytes, bytearray)):
            kind = "bytes" if isinstance(value, bytes) else "bytearray"
            name = self._blob(value, path, lambda n: Leaf(n, "bytes", value, "U8",
                                                          [len(value)], len(value), 1))
            return {"t": kind, "b": name}
        if isinstance(value, dict):
            if type(value) not in (dict, collections.OrderedDict):
                raise TypeError(f"cannot checkpoint {type(value).__name__} at {_where(path)}: "
                                f"only dict and OrderedDict mappings")
            keys, values = [], []
            for key, item in value.items():
                keys.append(self._key(key, path))
                values.append(self.node(item, path + [str(key)], depth + 1))
            out: dict = {"t": "odict" if isinstance(value, collections.OrderedDict)
                         else "dict", "k": keys, "v": values}
            extra = getattr(value, "_metadata", None)  # torch state_dict versions
            if out["t"] == "odict" and isinstance(extra, dict):
                out["m"] = self.node(extra, path + ["_metadata"], depth + 1)
            return out
        if type(value) in (list, tuple):
            return {"t": type(value).__name__,
                    "v": [self.node(item, path + [str(i)], depth + 1)
                          for i, item in enumerate(value)]}
        raise TypeError(f"cannot checkpoint {type(value).__name__} at {_where(path)}: "
                        f"supported are dict, list, tuple, torch tensors, numpy arrays, "
                        f"int, float, bool, str, bytes and None")

    def _key(self, key: Any, path: list[str]) -> Any:
        if key is None or isinstance(key, (str, int, float)) or type(key) is tuple:
            return self.node(key, path + ["<key>"], 0)
        raise TypeError(f"cannot checkpoint a {type(key).__name__} dict key at {_where(path)}")

    def _torch(self, tensor: Any, path: list[str]) -> dict:
        dtype = str(tensor.dtype).replace("torch.", "")
        if dtype not in TORCH_DTYPES:
            raise TypeError(f"cannot checkpoint torch.{dtype} at {_where(path)}")
        if tensor.layout != torch_module().strided:
            raise TypeError(f"cannot checkpoint a {tensor.layout} tensor at {_where(path)}: "
                            f"convert it with .to_dense()")
        code, itemsize = TORCH_DTYPES[dtype]
        shape = list(tensor.shape)
        nbytes = tensor.numel() * itemsize
        name = self._blob(tensor, path, lambda n: Leaf(
            n, "torch", tensor, code or "U8", shape if code else [nbytes], nbytes, itemsize))
        return {"t": "torch", "b": name, "dtype": dtype, "shape": shape}

    def _numpy(self, value: Any, path: list[str]) -> dict:
        import numpy as np
        scalar = isinstance(value, np.generic)
        array = np.asarray(value)
        if array.dtype.kind not in _NP_KINDS:
            raise TypeError(f"cannot checkpoint a numpy {array.dtype} array at {_where(path)}: "
                            f"object and structured dtypes are not supported")
        stored = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        code = _NP_TO_ST.get(stored.str)
        shape = list(array.shape)
        name = self._blob(value, path, lambda n: Leaf(
            n, "numpy", value, code or "U8", shape if code else [array.nbytes], array.nbytes,
            stored.itemsize))
        return {"t": "npscalar" if scalar else "numpy", "b": name, "dtype": array.dtype.str,
                "shape": shape}


def _where(path: list[str]) -> str:
    return "data" + "".join(f"[{p!r}]" for p in path)


def flatten(data: Any) -> tuple[Any, list[Leaf]]:
    """The JSON tree of ``data`` and its blobs, in the order met."""
    flattener = _Flattener()
    tree = flattener.node(data, [])
    return tree, flattener.leaves


def file_order(leaves: list[Leaf]) -> list[Leaf]:
    """Blobs with larger items first: every blob then starts at a multiple
    of its own item size (sizes are powers of two), so zero-copy readers of
    the file get aligned arrays.  Stable, so the rest keeps tree order."""
    return sorted(leaves, key=lambda leaf: -leaf.itemsize)


def build_header(leaves: list[Leaf], stored_sizes: list[int], crcs: list[int],
                 compression: str, tree: Any) -> bytes:
    """The 8-byte length and the padded JSON header, for blobs in file order."""
    metadata = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "compression": compression,
        "tree": json.dumps(tree, separators=(",", ":")),
        "blobs": json.dumps({leaf.name: {"size": size, "crc32c": f"{crc:08x}"}
                             for leaf, size, crc in zip(leaves, stored_sizes, crcs)},
                            separators=(",", ":")),
    }
    header: dict = {"__metadata__": metadata}
    offset = 0
    for leaf, size in zip(leaves, stored_sizes):
        header[leaf.name] = {"dtype": leaf.st_dtype, "shape": leaf.st_shape,
                             "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % DATA_ALIGN)
    return struct.pack("<Q", len(text)) + text


# ---- loading: validation -----------------------------------------------------

def header_length(prefix: bytes, uri: str) -> int:
    """N from the first 8 bytes, checked against the cap before any read."""
    if len(prefix) < 8:
        raise CheckpointError(f"not a checkpoint (only {len(prefix)} bytes): {uri}", uri=uri,
                              code="BadHeader")
    (length,) = struct.unpack("<Q", prefix[:8])
    if not 2 <= length <= MAX_HEADER:
        raise CheckpointError(f"header length {length} is out of range (2 to {MAX_HEADER}): "
                              f"{uri}", uri=uri, code="BadHeader")
    return length


def _bad(uri: str, what: str, blob: Optional[str] = None) -> CheckpointError:
    return CheckpointError(f"malformed checkpoint header ({what}): {uri}", uri=uri,
                           code="BadHeader", blob=blob)


def _nonneg_int(value: Any) -> bool:
    return type(value) is int and value >= 0


def _shape_ok(shape: Any) -> bool:
    return (isinstance(shape, list) and len(shape) <= _MAX_DIMS
            and all(_nonneg_int(d) and d < 1 << 62 for d in shape))


def parse_header(raw: bytes, uri: str, object_size: int) -> Header:
    """Validates the JSON header (``raw`` is the N bytes after the length)
    against the object's real size: every offset in range, the blobs
    contiguous from 0 with no gap or overlap, every dtype known, every size
    consistent with its shape.  Raises CheckpointError naming ``uri``."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _bad(uri, f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _bad(uri, "not a JSON object")
    meta = doc.pop("__metadata__", None)
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _bad(uri, "no __metadata__ string map; not written by s3dlio")
    if meta.get("format") != FORMAT_NAME:
        raise _bad(uri, f"format is {meta.get('format')!r}, not {FORMAT_NAME!r}")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format version {meta.get('version')!r} is not "
                              f"{FORMAT_VERSION!r} (written by another s3dlio?): {uri}",
                              uri=uri, code="UnsupportedVersion")
    compression = meta.get("compression")
    if compression not in COMPRESSIONS:
        raise _bad(uri, f"unknown compression {compression!r}")
    try:
        tree = json.loads(meta.get("tree", ""))
        sums = json.loads(meta.get("blobs", ""))
    except (ValueError, RecursionError) as exc:
        raise _bad(uri, f"invalid tree or blob list: {exc}") from None
    if not isinstance(sums, dict) or set(sums) != set(doc):
        raise _bad(uri, "the blob list does not match the header's entries")
    entries = [_entry(name, spec, sums[name], compression, uri) for name, spec in doc.items()]
    entries.sort(key=lambda e: (e.begin, e.end))
    position = 0
    for entry in entries:
        if entry.begin != position:
            what = "overlaps the previous one" if entry.begin < position else "leaves a gap"
            raise _bad(uri, f"blob {entry.name!r} at {entry.begin} {what}", entry.name)
        position = entry.end
    data_start = 8 + len(raw)
    if data_start + position != object_size:
        raise _bad(uri, f"header describes {data_start + position} bytes, the object has "
                        f"{object_size}")
    header = Header(len(raw), compression, tree, {e.name: e for e in entries})
    check_tree(header, uri)
    return header


def _entry(name: str, spec: Any, sums: Any, compression: str, uri: str) -> BlobEntry:
    if not isinstance(spec, dict) or not isinstance(sums, dict):
        raise _bad(uri, f"blob {name!r} is not an object", name)
    dtype: Any = spec.get("dtype")
    shape: Any = spec.get("shape")
    offsets: Any = spec.get("data_offsets")
    if dtype not in ST_ITEMSIZE:
        raise _bad(uri, f"blob {name!r} has unknown dtype {dtype!r}", name)
    if not _shape_ok(shape):
        raise _bad(uri, f"blob {name!r} has a bad shape {shape!r}", name)
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_nonneg_int, offsets))
            and offsets[0] <= offsets[1]):
        raise _bad(uri, f"blob {name!r} has bad data_offsets {offsets!r}", name)
    raw_size = math.prod(shape) * ST_ITEMSIZE[dtype]
    stored = offsets[1] - offsets[0]
    if compression == "none" and stored != raw_size:
        raise _bad(uri, f"blob {name!r} holds {stored} bytes, its shape needs {raw_size}", name)
    crc = sums.get("crc32c")
    if sums.get("size") != stored or not isinstance(crc, str) or len(crc) != 8:
        raise _bad(uri, f"blob {name!r} has a bad size or crc32c entry", name)
    try:
        crc_value = int(crc, 16)
    except ValueError:
        raise _bad(uri, f"blob {name!r} has a bad crc32c {crc!r}", name) from None
    return BlobEntry(name, dtype, shape, offsets[0], offsets[1], raw_size, crc_value)


def check_tree(header: Header, uri: str) -> None:
    """Walks the tree once: node types known, every blob named exists, and
    each array's dtype and shape fit its blob's size exactly."""
    stack = [(header.tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH or not isinstance(node, dict):
            raise _bad(uri, "tree node is not an object, or nests too deep")
        kind = node.get("t")
        if kind in ("dict", "odict"):
            keys, values = node.get("k"), node.get("v")
            if not (isinstance(keys, list) and isinstance(values, list)
                    and len(keys) == len(values)):
                raise _bad(uri, "dict node without matching keys and values")
            stack.extend((child, depth + 1) for child in keys + values)
            if "m" in node:
                stack.append((node["m"], depth + 1))
        elif kind in ("list", "tuple"):
            if not isinstance(node.get("v"), list):
                raise _bad(uri, f"{kind} node without values")
            stack.extend((child, depth + 1) for child in node["v"])
        elif kind in ("torch", "numpy", "npscalar", "bytes", "bytearray"):
            entry = header.blobs.get(node.get("b"))  # type: ignore[arg-type]
            if entry is None:
                raise _bad(uri, f"tree names a missing blob {node.get('b')!r}")
            if kind in ("bytes", "bytearray"):
                continue
            itemsize = array_itemsize(node, uri)
            shape: Any = node.get("shape")
            if not _shape_ok(shape) or (kind == "npscalar" and shape != []):
                raise _bad(uri, f"blob {entry.name!r} has a bad tree shape", entry.name)
            if math.prod(shape) * itemsize != entry.raw_size:
                raise _bad(uri, f"blob {entry.name!r}: tree dtype and shape need "
                                f"{math.prod(shape) * itemsize} bytes, the blob has "
                                f"{entry.raw_size}", entry.name)
        elif kind not in ("none", "bool", "int", "float", "str"):
            raise _bad(uri, f"unknown tree node type {kind!r}")


def numpy_dtype(node: dict, uri: str) -> np.dtype:
    """The array's dtype from an untrusted string: only plain kinds."""
    import numpy as np
    try:
        dtype = np.dtype(node.get("dtype"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _bad(uri, f"unknown numpy dtype {node.get('dtype')!r}") from None
    if dtype.kind not in _NP_KINDS or dtype.fields is not None or dtype.itemsize == 0:
        raise _bad(uri, f"numpy dtype {dtype} is not allowed in a checkpoint")
    return dtype


def array_itemsize(node: dict, uri: str) -> int:
    if node["t"] == "torch":
        if node.get("dtype") not in TORCH_DTYPES:
            raise _bad(uri, f"unknown torch dtype {node.get('dtype')!r}")
        return TORCH_DTYPES[node["dtype"]][1]
    return numpy_dtype(node, uri).itemsize


# ---- loading: the tree ---------------------------------------------------------

def unflatten(tree: Any, blob_value: Callable[[dict], Any], uri: str) -> Any:
    """Rebuilds the value; ``blob_value(node)`` gives each array or bytes
    node's object (called once per blob name, so shared blobs stay shared)."""
    memo: dict[str, Any] = {}

    def build(node: dict) -> Any:
        kind = node["t"]
        if kind == "none":
            return None
        if kind in ("bool", "str"):
            value = node.get("v")
            if type(value) is not (bool if kind == "bool" else str):
                raise _bad(uri, f"{kind} node with a {type(value).__name__} value")
            return value
        if kind == "int":
            try:
                return int(node["v"])
            except (KeyError, TypeError, ValueError):
                raise _bad(uri, f"bad int {str(node.get('v'))[:40]!r}") from None
        if kind == "float":
            try:
                return float.fromhex(node["v"])
            except (KeyError, TypeError, ValueError, OverflowError):
                raise _bad(uri, f"bad float {str(node.get('v'))[:40]!r}") from None
        if kind in ("dict", "odict"):
            out: Any = collections.OrderedDict() if kind == "odict" else {}
            for key_node, value_node in zip(node["k"], node["v"]):
                key = build(key_node)
                try:
                    out[key] = build(value_node)
                except TypeError:  # an unhashable key: a list, a tensor
                    raise _bad(uri, f"unhashable dict key of type {key_node.get('t')!r}") \
                        from None
            if "m" in node:
                out._metadata = build(node["m"])
            return out
        if kind == "list":
            return [build(child) for child in node["v"]]
        if kind == "tuple":
            return tuple(build(child) for child in node["v"])
        name = node["b"]
        if name not in memo:
            memo[name] = blob_value(node)
        return memo[name]

    return build(tree)


def blob_nodes(tree: Any) -> dict[str, dict]:
    """The first tree node naming each blob (a validated tree)."""
    found: dict[str, dict] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        kind = node["t"]
        if kind in ("dict", "odict"):
            stack.extend(node["k"] + node["v"] + ([node["m"]] if "m" in node else []))
        elif kind in ("list", "tuple"):
            stack.extend(node["v"])
        elif "b" in node:
            found.setdefault(node["b"], node)
    return found
