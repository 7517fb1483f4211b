"""PyTorch datasets over any s3dlio URI (file://, direct://, s3://, gs://, az://).

- :class:`S3MapDataset`: lists once; ``len``, random access, and batched
  reads (``__getitems__``) so a ``DataLoader`` batch is one concurrent
  ``get_many`` instead of ``batch_size`` sequential GETs.
- :class:`S3IterableDataset`: streams objects with read-ahead, sharded
  across ``DataLoader`` workers and ``torch.distributed`` ranks so every
  object is read exactly once per epoch, reshuffled per epoch.
- ``StorageWriter``/``StorageReader``: torch.distributed.checkpoint storage
  on any URI (s3dlio/_dcp.py, loaded on first use).

Both yield :class:`~s3dlio.BytesView` (or what ``transform`` returns) and work
with ``DataLoader(num_workers=0..N)`` under fork and spawn: the engine
rebuilds itself in a forked worker, and the datasets pickle as plain URI
lists.  Listing records every object's size in the size cache, so GETs go
out without a HEAD.  See docs/torch.md."""
from __future__ import annotations

import itertools
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, IterableDataset, get_worker_info
from torch.utils.data._utils import collate as _collate

from ._bytesview import BytesView, wrap_buffer
from .api import DEFAULT_MAX_IN_FLIGHT, get_many, iter_list, list as list_objects
from .errors import InvalidArgumentError, NotFoundError
from .loaders import Sample, _prefetched, epoch_order

Transform = Optional[Callable[[BytesView], Any]]


class _PackedViews(list):
    """A DataLoader worker's batch of views, packed into one shared-memory
    tensor for the trip to the training process (see _collate_views)."""

    packed: "torch.Tensor"
    sizes: List[int]
    originals: List[BytesView]  # what was packed, to tell whether the list changed since


def _shared_bytes(total: int) -> "torch.Tensor":
    # As default_collate does for tensor batches: allocate in shared memory
    # directly, so sending it costs one file descriptor, not a copy.
    try:
        storage = torch.UntypedStorage._new_shared(total)  # type: ignore[attr-defined]
        return torch.empty(0, dtype=torch.uint8).set_(storage)
    except (AttributeError, RuntimeError):
        return torch.empty(total, dtype=torch.uint8).share_memory_()


def _collate_views(batch: Sequence[BytesView], *, collate_fn_map: Any = None) -> List[BytesView]:
    """default_collate for samples that are BytesViews: a batch is a list of
    views.  In a worker process the views are copied once into one
    shared-memory tensor; the training process receives views of that
    memory.  (Pickling each view would copy it four times and churn the
    allocator: DataLoader throughput halved in bench/dataloader.py.)"""
    if get_worker_info() is None or not batch:
        return list(batch)
    sizes = [len(v) for v in batch]
    packed = _shared_bytes(sum(sizes))
    flat = packed.numpy()
    offset = 0
    for view, size in zip(batch, sizes):
        flat[offset:offset + size] = np.frombuffer(view, dtype=np.uint8)
        offset += size
    out = _PackedViews(batch)
    out.packed, out.sizes, out.originals = packed, sizes, list(batch)
    return out


def _unpack_views(packed: "torch.Tensor", sizes: List[int]) -> List[BytesView]:
    flat = packed.numpy()
    views, offset = [], 0
    for size in sizes:
        views.append(wrap_buffer(flat[offset:offset + size]))
        offset += size
    return views


def _reduce_packed(batch: _PackedViews) -> Tuple[Any, Tuple[Any, ...]]:
    # A collate_fn may change the list after default_collate made it: then
    # the packed block no longer says what the list holds, so send the list
    # as it is (each view pickled as a copy).
    if len(batch) != len(batch.originals) or any(
            a is not b for a, b in zip(batch, batch.originals)):
        return list, (list(batch),)
    return _unpack_views, (batch.packed, batch.sizes)


# default_collate knows bytes and str but not BytesView: without this a
# DataLoader batch of raw samples fails with "batch must contain tensors...".
# A batch of views stays a list of views, as a batch of bytes stays a list.
_collate.default_collate_fn_map.setdefault(BytesView, _collate_views)
ForkingPickler.register(_PackedViews, _reduce_packed)


def _check_count(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidArgumentError(f"{name} must be an int >= {low}, not {value!r}",
                                   code="InvalidOption")
    return value


def _read_concurrency(num_workers: int, max_in_flight: Optional[int]) -> int:
    """GETs in flight per reading process.  ``num_workers`` is the guide's
    name for it on the dataset (0: the default); ``max_in_flight`` wins."""
    if max_in_flight is not None:
        return _check_count("max_in_flight", max_in_flight, 1)
    return _check_count("num_workers", num_workers, 0) or DEFAULT_MAX_IN_FLIGHT


def _nothing_found(uri: str, pattern: Optional[str]) -> NotFoundError:
    what = f" matching {pattern!r}" if pattern is not None else ""
    return NotFoundError(f"no objects under {uri}{what} (pass allow_empty=True to accept an "
                         f"empty dataset)", code="NoSuchKey", uri=uri)


def _apply(transform: Transform, views: Iterable[BytesView]) -> List[Any]:
    return [transform(v) for v in views] if transform is not None else list(views)


class S3MapDataset(Dataset):
    """Map-style dataset of the objects under ``uri`` whose relative key
    matches ``pattern``, in sorted order.  ``ds[i]`` reads object ``i``;
    a ``DataLoader`` with ``batch_size`` fetches each batch concurrently.

    ``transform`` is called on each sample's BytesView in the process that
    read it (a DataLoader worker).  An empty selection raises
    :class:`~s3dlio.NotFoundError` unless ``allow_empty``."""

    def __init__(self, uri: str, pattern: Optional[str] = None, transform: Transform = None, *,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, allow_empty: bool = False) -> None:
        self._init(list_objects(uri, recursive=True, pattern=pattern), transform, max_in_flight)
        if not self._uris and not allow_empty:
            raise _nothing_found(uri, pattern)

    def _init(self, uris: Sequence[str], transform: Transform, max_in_flight: int) -> None:
        self._uris = [u for u in uris if not u.endswith("/")]
        self.transform = transform
        self.max_in_flight = _check_count("max_in_flight", max_in_flight, 1)

    @classmethod
    def from_uris(cls, uris: Sequence[str], transform: Transform = None, *,
                  max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> "S3MapDataset":
        """A dataset of exactly these objects, in this order, without listing."""
        if isinstance(uris, str):
            raise InvalidArgumentError("from_uris takes a sequence of URIs, not one str",
                                       code="InvalidOption")
        self = cls.__new__(cls)
        self._init(list(uris), transform, max_in_flight)
        return self

    def __len__(self) -> int:
        return len(self._uris)

    def uris(self) -> List[str]:
        return list(self._uris)

    def __getitem__(self, index: int) -> Any:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"dataset indices must be int, not {type(index).__name__}")
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> List[Any]:
        """The samples at ``indices``, read concurrently (the DataLoader's
        batched fetch calls this instead of one ``[i]`` per sample)."""
        uris = [self._uris[int(i)] for i in indices]
        return _apply(self.transform, (view for _, view in get_many(uris, self.max_in_flight)))

    def __repr__(self) -> str:
        return f"S3MapDataset({len(self)} objects)"


def _world(rank: Optional[int], world_size: Optional[int]) -> Tuple[int, int]:
    """This process's ``(rank, world_size)``: as given, else from an
    initialised ``torch.distributed`` process group, else ``(0, 1)``."""
    if rank is None and world_size is None:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1
    if rank is None or world_size is None:
        raise InvalidArgumentError("give both rank and world_size, or neither",
                                   code="InvalidOption")
    _check_count("world_size", world_size, 1)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise InvalidArgumentError(f"rank must be 0 to {world_size - 1}, not {rank!r}",
                                   code="InvalidOption")
    return rank, world_size


def _windows(items: Iterator[str], size: int) -> Iterator[List[Sample]]:
    while True:
        window = [Sample(uri) for uri in itertools.islice(items, size)]
        if not window:
            return
        yield window


class S3IterableDataset(IterableDataset):
    """Streams the objects under ``uri`` (matching ``pattern``) with
    read-ahead: ``max_in_flight`` GETs per window, ``prefetch`` windows
    ahead of the one being consumed.

    **Sharding.**  Object ``i`` of the epoch's order goes to shard
    ``i % (world_size * workers)``; this process reads shard
    ``rank * workers + worker_id``.  So every object is read exactly once
    per epoch across all DataLoader workers of all ranks; shard sizes differ
    by at most one.  ``rank``/``world_size`` default to the initialised
    ``torch.distributed`` group (else one rank).

    **Order.**  Without ``shuffle`` the listing is streamed page by page, so
    the first batch does not wait for a listing of millions of objects
    (each worker lists for itself).  With ``shuffle`` the dataset lists once
    when it is made (workers inherit the list) and each epoch is a
    permutation fixed by ``(seed, epoch)``.  ``set_epoch(n)`` selects the
    epoch, as with ``DistributedSampler``; without it each iteration of the
    same object moves to the next epoch (which holds within a process and in
    ``persistent_workers``; with non-persistent workers call ``set_epoch``).

    ``num_workers`` here is the guide's name for read concurrency per
    process (0: the default of 64), not the DataLoader's worker count."""

    def __init__(self, uri: str, pattern: Optional[str] = None, shuffle: bool = False,
                 seed: int = 0, num_workers: int = 0, transform: Transform = None, *,
                 max_in_flight: Optional[int] = None, prefetch: int = 2,
                 rank: Optional[int] = None, world_size: Optional[int] = None,
                 allow_empty: bool = False) -> None:
        super().__init__()
        self.uri, self.pattern = uri, pattern
        self.shuffle, self.seed = bool(shuffle), _check_count("seed", seed, 0)
        self.transform = transform
        self.max_in_flight = _read_concurrency(num_workers, max_in_flight)
        self.prefetch = _check_count("prefetch", prefetch, 0)
        self.allow_empty = allow_empty
        _world(rank, world_size)  # reject bad values now, not in a worker
        self._rank, self._world_size = rank, world_size
        self._explicit_epoch: Optional[int] = None
        self._next_epoch = 0
        # Shuffling needs the whole listing; made once here, inherited by workers.
        self._uris: Optional[List[str]] = self._listed() if self.shuffle else None

    @classmethod
    def from_uris(cls, uris: Sequence[str], shuffle: bool = False, seed: int = 0,
                  transform: Transform = None, **options: Any) -> "S3IterableDataset":
        """A dataset of exactly these objects, in this order, without
        listing; the keyword options are those of the constructor."""
        if isinstance(uris, str):
            raise InvalidArgumentError("from_uris takes a sequence of URIs, not one str",
                                       code="InvalidOption")
        options.setdefault("allow_empty", True)
        self = cls("", None, False, seed, transform=transform, **options)
        self._uris, self.shuffle = list(uris), bool(shuffle)
        return self

    def _listed(self) -> List[str]:
        uris = list_objects(self.uri, recursive=True, pattern=self.pattern)
        if not uris and not self.allow_empty:
            raise _nothing_found(self.uri, self.pattern)
        return uris

    def set_epoch(self, epoch: int) -> None:
        """Selects the shuffle of the next iterations (no effect without shuffle)."""
        self._explicit_epoch = _check_count("epoch", epoch, 0)

    def _epoch_for_iteration(self) -> int:
        if self._explicit_epoch is not None:
            return self._explicit_epoch
        epoch, self._next_epoch = self._next_epoch, self._next_epoch + 1
        return epoch

    def __getstate__(self) -> dict:
        # Spawned DataLoader workers never join the process group: resolve
        # the rank here, in the process that pickles the dataset for them.
        state = dict(self.__dict__)
        if state["_rank"] is None and state["_world_size"] is None:
            state["_rank"], state["_world_size"] = _world(None, None)
        return state

    def shard(self) -> Tuple[int, int]:
        """``(index, count)`` of the shard this process reads."""
        rank, world_size = _world(self._rank, self._world_size)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * workers + worker, world_size * workers

    def _epoch_uris(self, epoch: int) -> Iterator[str]:
        if self._uris is None:
            return iter_list(self.uri, pattern=self.pattern)
        order = epoch_order(len(self._uris), self.shuffle, self.seed, epoch)
        return (self._uris[i] for i in order)

    def __iter__(self) -> Iterator[Any]:
        epoch = self._epoch_for_iteration()
        index, count = self.shard()
        seen_any = False

        def mark(stream: Iterator[str]) -> Iterator[str]:
            nonlocal seen_any
            for uri in stream:
                seen_any = True
                yield uri

        everything = (u for u in mark(self._epoch_uris(epoch)) if not u.endswith("/"))
        mine = itertools.islice(everything, index, None, count)
        windows = _windows(mine, self.max_in_flight)
        for views in _prefetched(windows, self.prefetch, self.max_in_flight):
            yield from _apply(self.transform, views)
        if not seen_any and not self.allow_empty:
            raise _nothing_found(self.uri, self.pattern)

    def __repr__(self) -> str:
        listed = f"{len(self._uris)} objects" if self._uris is not None else "streamed listing"
        return (f"S3IterableDataset({self.uri!r}, {listed}, shuffle={self.shuffle}, "
                f"seed={self.seed}, max_in_flight={self.max_in_flight})")


def __getattr__(name: str) -> Any:
    # DCP's storage classes import torch.distributed.checkpoint, which the
    # datasets do not need: load them on first use.
    if name in ("StorageWriter", "StorageReader"):
        from . import _dcp
        return getattr(_dcp, name)
    raise AttributeError(f"module 's3dlio.torch' has no attribute {name!r}")


#: The reference s3dlio's current names for the same classes.
ObjectStoreMapDataset = S3MapDataset
ObjectStoreIterableDataset = S3IterableDataset

__all__ = ["S3MapDataset", "S3IterableDataset", "ObjectStoreMapDataset",
           "ObjectStoreIterableDataset", "StorageWriter", "StorageReader"]
