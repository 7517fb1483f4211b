"""s3dlio: storage I/O for AI/ML, from object stores and local disks at the
speed of the wire and the disk.

Quick start::

    import s3dlio
    s3dlio.put("file:///tmp/demo/a.bin", b"hello")
    view = s3dlio.get("file:///tmp/demo/a.bin")      # BytesView, zero-copy
    s3dlio.list("file:///tmp/demo/")                  # full URIs, sorted

See docs/api.md for every function."""
from __future__ import annotations

import importlib
from typing import Any

from ._bytesview import BytesView
from ._logbridge import init_logging
from ._native import version_string as _native_version
from .api import (create_bucket, delete, delete_bucket, exists, get, get_into, get_many,
                  get_many_stats, get_range, iter_list, list,
                  mkdir, presign, put, put_bytes, put_many, stat, stat_many, stats)
from .asyncops import (exists_async, get_async, get_into_async, get_many_async, get_range_async,
                       put_async,
                       put_many_async, stat_async, stat_many_async)
from .checkpoint import (load_checkpoint, load_checkpoint_with_validation,
                         remove_checkpoint_debris, save_checkpoint)
from .checkpoint_dist import finalize_distributed_checkpoint, save_distributed_shard
from .compat import get_object, list_objects, stat_object
from .errors import (AlreadyExistsError, CancelledError, CheckpointError, ChecksumMismatchError,
                     InvalidArgumentError, InvalidRangeError, InvalidURIError, IsADirectoryError, NoSpaceError,
                     NotADirectoryError, NotFoundError, PermissionDeniedError, S3dlioError,
                     StorageIOError, ThrottledError, TimeoutError, UnsupportedError)
from .formats import (create_tfrecord_index, get_tfrecord_index_entries, read_npy, read_npz,
                      read_tfrecord_records)
from .loaders import (AsyncLoader, PyBytesAsyncDataLoader, PyDataset, PyLoaderOptions,
                      create_async_loader, create_dataset)
from .mp_get import mp_get
from .oplog import finalize_op_log, init_op_log, is_op_log_active, op_log_stats
from .reader import open  # s3dlio.open; kept out of __all__ so `import *` never hides the builtin
from .transfer import download, upload
from .writer import (PyObjectWriter, PyWriterOptions, create_azure_writer,
                     create_direct_filesystem_writer, create_filesystem_writer, create_gcs_writer,
                     create_s3_writer, create_writer)

__version__ = "0.1.0"
if __version__ != _native_version():  # the package and the core ship together
    raise ImportError(f"s3dlio {__version__} found native core {_native_version()}; reinstall")

# Framework integrations load on first use, so `import s3dlio` never imports
# torch, jax or tensorflow.  They stay out of __all__: `from s3dlio import *`
# must not pull a framework in either.
_LAZY = {
    "S3MapDataset": "torch", "S3IterableDataset": "torch",
    "ObjectStoreMapDataset": "torch", "ObjectStoreIterableDataset": "torch",
    "S3JaxIterable": "jax_tf", "JaxIterable": "jax_tf", "make_tf_dataset": "jax_tf",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 's3dlio' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "BytesView", "init_logging", "__version__",
    "put", "put_bytes", "put_many", "get", "get_into", "get_range", "get_many", "stat",
    "stat_many", "get_into_async",
    "exists", "delete", "list", "iter_list", "mkdir", "stats", "upload", "download",
    "create_bucket", "delete_bucket", "presign", "get_many_stats", "mp_get",
    "put_async", "put_many_async", "get_async", "get_range_async", "get_many_async",
    "stat_async", "stat_many_async", "exists_async",
    "get_object", "stat_object", "list_objects",
    "init_op_log", "finalize_op_log", "is_op_log_active", "op_log_stats",
    "read_npy", "read_npz", "create_tfrecord_index", "get_tfrecord_index_entries",
    "read_tfrecord_records",
    "PyLoaderOptions", "PyDataset", "AsyncLoader", "PyBytesAsyncDataLoader", "create_dataset",
    "create_async_loader",
    "save_checkpoint", "load_checkpoint", "load_checkpoint_with_validation",
    "remove_checkpoint_debris", "save_distributed_shard", "finalize_distributed_checkpoint",
    "PyWriterOptions", "PyObjectWriter", "create_writer", "create_s3_writer", "create_gcs_writer",
    "create_azure_writer", "create_filesystem_writer", "create_direct_filesystem_writer",
    "S3dlioError", "NotFoundError", "InvalidArgumentError", "InvalidURIError", "PermissionDeniedError",
    "AlreadyExistsError", "TimeoutError", "ChecksumMismatchError", "ThrottledError",
    "IsADirectoryError", "NotADirectoryError", "NoSpaceError", "InvalidRangeError",
    "UnsupportedError", "CancelledError", "StorageIOError", "CheckpointError",
]
