"""torch.distributed.checkpoint (DCP) storage over any s3dlio URI.

``StorageWriter``/``StorageReader`` are DCP's own file-system writer and
reader with the file operations swapped for s3dlio's: each ``.distcp`` file
is one object written through a streaming writer (multipart on S3, blocks on
Azure, resumable on GCS, temp file + rename locally), so a file appears whole
or not at all; reads are seekable ranged reads.  The layout and the
``.metadata`` file are DCP's unchanged, so a checkpoint saved here loads with
DCP's planner into any sharding, and a local one loads with DCP's own
``FileSystemReader``.  (DCP pickles its ``.metadata``; that file is DCP's
format, not s3dlio's.)"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Generator, List, Union

from torch.distributed.checkpoint.filesystem import (FileSystemBase, FileSystemReader,
                                                     FileSystemWriter)

from . import api
from .errors import InvalidURIError, NotFoundError
from .reader import open as open_object
from .uri import parse_uri
from .writer import PyWriterOptions

PathLike = Union[str, "os.PathLike[str]"]


def _uri(path: PathLike) -> str:
    return os.fspath(path)


class S3dlioFileSystem(FileSystemBase):
    """DCP's file operations on s3dlio URIs.  ``fsync`` makes local files
    durable before their ``close`` returns (object stores are durable on
    success anyway)."""

    def __init__(self, fsync: bool = True) -> None:
        self.fsync = fsync

    @contextlib.contextmanager
    def create_stream(self, path: PathLike, mode: str) -> Generator[Any, None, None]:
        uri = _uri(path)
        if "w" in mode:
            # An exception inside the block aborts the writer: nothing is
            # published under the name, and no multipart upload is left.
            with open_object(uri, "wb", options=PyWriterOptions(fsync=self.fsync)) as stream:
                yield stream
        else:
            with open_object(uri, "rb") as stream:
                yield stream

    def concat_path(self, path: PathLike, suffix: str) -> str:
        return _uri(path).rstrip("/") + "/" + suffix

    def init_path(self, path: PathLike, **kwargs: Any) -> str:
        uri = _uri(path)
        parse_uri(uri, require_key=False)  # InvalidURIError now, not in a write thread
        return uri

    def rename(self, path: PathLike, new_path: PathLike) -> None:
        # Object stores have no rename.  DCP renames only its small
        # .metadata file, once per save: copy it, then remove the original.
        api.put(_uri(new_path), api.get(_uri(path)), fsync=self.fsync)
        api.delete(_uri(path))

    def mkdir(self, path: PathLike) -> None:
        api.mkdir(_uri(path))

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: PathLike) -> bool:
        if not isinstance(checkpoint_id, str) or "://" not in checkpoint_id:
            return False
        try:
            parse_uri(checkpoint_id, require_key=False)
        except InvalidURIError:
            return False
        return True

    def exists(self, path: PathLike) -> bool:
        return api.exists(_uri(path))

    def rm_file(self, path: PathLike) -> None:
        api.delete(_uri(path))

    def ls(self, path: PathLike) -> List[str]:
        try:
            return api.list(_uri(path).rstrip("/") + "/", recursive=False)
        except NotFoundError:
            return []


class StorageWriter(FileSystemWriter):
    """``dcp.save(state_dict, storage_writer=StorageWriter(uri))``.

    Arguments as DCP's ``FileSystemWriter``: ``single_file_per_rank``,
    ``sync_files`` (fsync local files; object stores need nothing more),
    ``thread_count`` (files written at once per rank), and ``overwrite``."""

    def __init__(self, uri: str, single_file_per_rank: bool = True, sync_files: bool = True,
                 thread_count: int = 1, per_thread_copy_ahead: int = 10_000_000,
                 overwrite: bool = True, **kwargs: Any) -> None:
        # DCP's own fsync path calls os.fsync(stream.fileno()) and falls back
        # to a machine-wide os.sync(); the writer does the fsync itself instead.
        super().__init__(uri, single_file_per_rank, False, thread_count, per_thread_copy_ahead,
                         overwrite=overwrite, **kwargs)
        self.fs = S3dlioFileSystem(fsync=sync_files)  # type: ignore[assignment]  # as torch's FsspecWriter
        self.path = self.fs.init_path(uri)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: PathLike) -> bool:
        return S3dlioFileSystem.validate_checkpoint_id(checkpoint_id)


class StorageReader(FileSystemReader):
    """``dcp.load(state_dict, storage_reader=StorageReader(uri))``; DCP's
    planner reshards to the loading job's layout."""

    def __init__(self, uri: str, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self.fs = S3dlioFileSystem()  # type: ignore[assignment]  # as torch's FsspecReader
        self.path = self.fs.init_path(uri)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: PathLike) -> bool:
        return S3dlioFileSystem.validate_checkpoint_id(checkpoint_id)


__all__ = ["StorageWriter", "StorageReader", "S3dlioFileSystem"]
