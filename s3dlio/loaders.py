"""Framework-independent data loading: a dataset of samples and a loader of
batches over any backend (file://, direct://, s3://, gs://, az://).

- :class:`PyLoaderOptions`: batch size, read-ahead, shuffling, concurrency,
  pattern and reader mode, with documented defaults (docs/loaders.md).
- :func:`create_dataset` -> :class:`PyDataset`: lists once; ``len``, random
  access (``ds[i]``) and streaming iteration with bounded read-ahead.
- :func:`create_async_loader` -> :class:`AsyncLoader`: ``async for batch in
  loader`` (and ``for batch in loader``) yields lists of BytesView.

A *sample* is a whole object (``reader_mode="object"``) or one
``part_size`` chunk of an object (``reader_mode="range"``).  Everything is
read through the public calls ``get_many``/``get_range`` and their async
twins, so memory is bounded by what is in flight: at most ``prefetch``
windows (dataset) or batches (loader) beyond the one being consumed."""
from __future__ import annotations

import asyncio
import collections
import copy
import random
from concurrent.futures import Future, ThreadPoolExecutor
from typing import (Any, AsyncIterator, Callable, Deque, Dict, Iterable, Iterator, List, Mapping,
                    NamedTuple, Optional, Sequence, TypeVar, Union)

from ._bytesview import BytesView, from_bytes
from .api import get_many, get_range, list as list_objects, relative_base, stat_many
from .asyncops import get_many_async, get_range_async
from .errors import InvalidArgumentError
from .uri import parse_uri

MiB = 1 << 20
READER_MODES = ("object", "range")
_MAX_COUNT = 1 << 20        # batch_size and max_in_flight, as get_many's max_in_flight
_MAX_PREFETCH = 1024
_MAX_PART_SIZE = 5 << 30

T = TypeVar("T")
G = TypeVar("G")


def _bad(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(message, code="InvalidOption")


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    # bool is an int subclass; True as a batch size is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{name} must be an int from {low} to {high}, not {value!r}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _bad(f"{name} must be True or False, not {value!r}")


class PyLoaderOptions:
    """Settings shared by :func:`create_dataset` and :func:`create_async_loader`.

    Attribute style (``opts.batch_size = 64``), keyword constructor, and
    ``with_*`` builders that return a changed copy all work.

    - ``batch_size`` (32): samples per loader batch.
    - ``prefetch`` (2): loader batches, or dataset windows of
      ``max_in_flight`` samples, fetched ahead of the one being consumed;
      0 fetches each on demand.
    - ``shuffle`` (False) and ``seed`` (0): the order of an epoch is a
      permutation fixed by ``(seed, epoch)``; see ``set_epoch``.
    - ``max_in_flight`` (64; ``num_workers`` is an alias): reads of one
      window or batch running at once.
    - ``drop_last`` (False): drop a last loader batch shorter than ``batch_size``.
    - ``pattern`` (None): glob on the key relative to the listed prefix, as
      in :func:`s3dlio.list`.
    - ``reader_mode`` ("object"): ``"object"`` makes each object one sample;
      ``"range"`` splits each object into ``part_size`` (8 MiB) chunks, one
      sample each.
    """

    def __init__(self, batch_size: int = 32, prefetch: int = 2, shuffle: bool = False,
                 seed: int = 0, max_in_flight: int = 64, drop_last: bool = False,
                 pattern: Optional[str] = None, reader_mode: str = "object",
                 part_size: int = 8 * MiB, *, num_workers: Optional[int] = None) -> None:
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.shuffle = shuffle
        self.seed = seed
        self.max_in_flight = max_in_flight
        if num_workers is not None:
            self.num_workers = num_workers
        self.drop_last = drop_last
        self.pattern = pattern
        self.reader_mode = reader_mode
        self.part_size = part_size
        self.validate()

    FIELDS = ("batch_size", "prefetch", "shuffle", "seed", "max_in_flight", "drop_last",
              "pattern", "reader_mode", "part_size")

    @property
    def num_workers(self) -> int:
        """Alias of ``max_in_flight``.  Setting 0 (the reference's default,
        PyTorch's "no worker processes") selects the default 64."""
        return self.max_in_flight

    @num_workers.setter
    def num_workers(self, value: int) -> None:
        self.max_in_flight = 64 if value == 0 and not isinstance(value, bool) else value

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PyLoaderOptions":
        """Options from a dict (the reference passes ``opts`` as one).
        Unknown keys raise InvalidArgumentError."""
        opts = cls()
        opts._update(values)
        return opts

    def to_dict(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def _update(self, values: Mapping[str, Any]) -> None:
        known = set(self.FIELDS) | {"num_workers"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise _bad(f"unknown loader option(s) {', '.join(map(repr, unknown))}; "
                       f"known: {', '.join(sorted(known))}")
        for name, value in values.items():
            setattr(self, name, value)
        self.validate()

    def _with(self, **changes: Any) -> "PyLoaderOptions":
        new = copy.copy(self)
        new._update(changes)
        return new

    # The reference's builder spellings, each returning a changed copy.  The
    # reference names some builders after the fields (``shuffle(on, seed)``);
    # here the fields keep the plain names, so every builder is ``with_*``.
    def with_batch_size(self, n: int) -> "PyLoaderOptions":
        return self._with(batch_size=n)

    def with_prefetch(self, n: int) -> "PyLoaderOptions":
        return self._with(prefetch=n)

    def with_shuffle(self, on: bool = True, seed: Optional[int] = None) -> "PyLoaderOptions":
        return self._with(shuffle=on, **({} if seed is None else {"seed": seed}))

    def with_seed(self, seed: int) -> "PyLoaderOptions":
        return self._with(seed=seed)

    def with_max_in_flight(self, n: int) -> "PyLoaderOptions":
        return self._with(max_in_flight=n)

    def with_num_workers(self, n: int) -> "PyLoaderOptions":
        return self._with(num_workers=n)

    def with_drop_last(self, on: bool = True) -> "PyLoaderOptions":
        return self._with(drop_last=on)

    def with_pattern(self, pattern: Optional[str]) -> "PyLoaderOptions":
        return self._with(pattern=pattern)

    def with_reader_mode(self, mode: str, part_size: Optional[int] = None) -> "PyLoaderOptions":
        return self._with(reader_mode=mode,
                          **({} if part_size is None else {"part_size": part_size}))

    def validate(self) -> None:
        """Raises InvalidArgumentError (code ``InvalidOption``) for a bad field."""
        _check_int("batch_size", self.batch_size, 1, _MAX_COUNT)
        _check_int("prefetch", self.prefetch, 0, _MAX_PREFETCH)
        _check_bool("shuffle", self.shuffle)
        _check_int("seed", self.seed, 0, (1 << 64) - 1)
        _check_int("max_in_flight", self.max_in_flight, 1, _MAX_COUNT)
        _check_bool("drop_last", self.drop_last)
        if self.pattern is not None and not isinstance(self.pattern, str):
            raise _bad(f"pattern must be a str or None, not {self.pattern!r}")
        if self.reader_mode not in READER_MODES:
            raise _bad(f"reader_mode must be one of {READER_MODES}, not {self.reader_mode!r}")
        _check_int("part_size", self.part_size, 1, _MAX_PART_SIZE)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"PyLoaderOptions({fields})"


OptionsLike = Union[PyLoaderOptions, Mapping[str, Any], None]


def _resolve_options(options: OptionsLike, overrides: Mapping[str, Any]) -> PyLoaderOptions:
    """A validated private copy: changing the caller's options later must not
    change a dataset already made."""
    if options is None:
        resolved = PyLoaderOptions()
    elif isinstance(options, PyLoaderOptions):
        resolved = copy.copy(options)
    elif isinstance(options, Mapping):
        resolved = PyLoaderOptions.from_dict(options)
    else:
        raise _bad(f"options must be PyLoaderOptions, a dict or None, not {options!r}")
    resolved._update(overrides)
    return resolved


class Sample(NamedTuple):
    """One sample: ``length`` bytes of ``uri`` from ``offset``; ``length``
    None means the whole object."""

    uri: str
    offset: int = 0
    length: Optional[int] = None


def plan_chunks(uri: str, size: int, part_size: int) -> List[Sample]:
    """The ``part_size`` chunks of an object of ``size`` bytes, in order;
    the last may be shorter.  An empty object is one empty chunk, so every
    object appears in an epoch."""
    if size == 0:
        return [Sample(uri, 0, 0)]
    return [Sample(uri, off, min(part_size, size - off)) for off in range(0, size, part_size)]


def epoch_order(count: int, shuffle: bool, seed: int, epoch: int) -> List[int]:
    """Sample indices of one epoch: listing order, or a permutation that
    depends only on ``(seed, epoch)`` (string seeds hash the same in every
    process and Python version)."""
    order = list(range(count))
    if shuffle:
        random.Random(f"s3dlio-loader:{seed}:{epoch}").shuffle(order)
    return order


def _chunked(items: Sequence[T], size: int) -> List[Sequence[T]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _fetch(samples: Sequence[Sample], max_in_flight: int) -> List[BytesView]:
    if all(s.length is None for s in samples):
        return [view for _, view in get_many([s.uri for s in samples], max_in_flight)]
    # Ranged reads have no batch call: one get_range per chunk, on threads
    # (each call releases the GIL while it waits).
    with ThreadPoolExecutor(max_workers=min(max_in_flight, len(samples))) as pool:
        return list(pool.map(_fetch_one, samples))


def _fetch_one(sample: Sample) -> BytesView:
    if sample.length is None:
        return get_many([sample.uri], 1)[0][1]
    if sample.length == 0:
        return from_bytes(b"")
    return get_range(sample.uri, sample.offset, sample.length)


async def _fetch_async(samples: Sequence[Sample], max_in_flight: int) -> List[BytesView]:
    if all(s.length is None for s in samples):
        pairs = await get_many_async([s.uri for s in samples], max_in_flight)
        return [view for _, view in pairs]
    gate = asyncio.Semaphore(max_in_flight)

    async def one(sample: Sample) -> BytesView:
        if sample.length == 0:
            return from_bytes(b"")
        async with gate:
            return await get_range_async(sample.uri, sample.offset, sample.length)
    return list(await asyncio.gather(*(one(s) for s in samples)))


def _prefetched(groups: Iterable[Sequence[Sample]], depth: int, max_in_flight: int
                ) -> Iterator[List[BytesView]]:
    """Each group's views, in order, with at most ``depth`` groups being
    fetched ahead of the one the caller holds (``depth`` 0: on demand)."""
    return _read_ahead(groups, depth, lambda group: _fetch(group, max_in_flight))


def _read_ahead(groups: Iterable[G], depth: int, work: Callable[[G], T]) -> Iterator[T]:
    """``work(group)`` for each group, in order, running on at most ``depth``
    groups ahead of the one the caller holds (``depth`` 0: on demand).
    Separate from the fetch so s3dlio.jax_tf can decode on the read-ahead
    threads too, not on the training loop's."""
    if depth == 0:
        for group in groups:
            yield work(group)
        return
    pending: Deque[Future] = collections.deque()
    upcoming = iter(groups)
    with ThreadPoolExecutor(max_workers=depth) as pool:
        try:
            for group in upcoming:
                pending.append(pool.submit(work, group))
                if len(pending) == depth:
                    break
            while pending:
                result = pending.popleft().result()
                for group in upcoming:
                    pending.append(pool.submit(work, group))
                    break
                yield result
        finally:
            for fut in pending:  # the caller stopped early: drop what has not started
                fut.cancel()


async def _prefetched_async(groups: Sequence[Sequence[Sample]], depth: int, max_in_flight: int
                            ) -> AsyncIterator[List[BytesView]]:
    """:func:`_prefetched` on the event loop, with tasks instead of threads."""
    if depth == 0:
        for group in groups:
            yield await _fetch_async(group, max_in_flight)
        return
    pending: Deque[asyncio.Task] = collections.deque()
    upcoming = iter(groups)

    def start_next() -> None:
        for group in upcoming:
            pending.append(asyncio.ensure_future(_fetch_async(group, max_in_flight)))
            return

    try:
        for _ in range(depth):
            start_next()
        while pending:
            views = await pending.popleft()
            start_next()
            yield views
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


class PyDataset:
    """The samples under one URI (or a given list of URIs), listed once.

    ``len(ds)`` samples; ``ds[i]`` reads sample ``i`` of the listing order;
    ``iter(ds)`` streams the samples of the current epoch as BytesView,
    reading ``max_in_flight`` at a time with ``prefetch`` windows ahead."""

    def __init__(self, uris: Sequence[str], options: PyLoaderOptions, base: str = "") -> None:
        self._options = options
        self._uris = [str(u) for u in uris]
        self._base = base
        self._epoch = 0
        if options.reader_mode == "range":
            sizes = [st["size"] for st in stat_many(self._uris, options.max_in_flight)] \
                if self._uris else []
            self._samples = [chunk for uri, size in zip(self._uris, sizes)
                             for chunk in plan_chunks(uri, size, options.part_size)]
        else:
            self._samples = [Sample(uri) for uri in self._uris]

    @classmethod
    def from_uris(cls, uris: Sequence[str], options: OptionsLike = None,
                  **overrides: Any) -> "PyDataset":
        """A dataset of exactly these objects, in this order, without listing
        (``pattern`` is not applied).  ``keys()`` are the URIs as given."""
        if isinstance(uris, str):
            raise _bad("from_uris takes a sequence of URIs, not one str")
        return cls(list(uris), _resolve_options(options, overrides))

    @property
    def options(self) -> PyLoaderOptions:
        return copy.copy(self._options)

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Selects the shuffle of the next iteration (no effect without shuffle)."""
        _check_int("epoch", epoch, 0, (1 << 63) - 1)
        self._epoch = epoch

    def __len__(self) -> int:
        return len(self._samples)

    def uris(self) -> List[str]:
        """Full URIs of the objects, in listing order (one per object, also
        in range mode)."""
        return list(self._uris)

    def keys(self) -> List[str]:
        """The objects' keys relative to the listed URI (as ``uris()`` for
        :meth:`from_uris`)."""
        cut = len(self._base)
        return [u[cut:] if cut and u.startswith(self._base) else u for u in self._uris]

    def samples(self) -> List[Sample]:
        """Every sample as ``(uri, offset, length)``; ``length`` None is the
        whole object."""
        return list(self._samples)

    def __getitem__(self, index: int) -> BytesView:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"dataset indices must be int, not {type(index).__name__}")
        return _fetch_one(self._samples[index])  # IndexError and negatives as a list's

    def get_item(self, index: int) -> BytesView:
        """``ds[index]`` under the reference's name."""
        return self[index]

    def epoch_samples(self) -> List[Sample]:
        """The samples of the current epoch, in the order iteration yields them."""
        opts = self._options
        return [self._samples[i]
                for i in epoch_order(len(self._samples), opts.shuffle, opts.seed, self._epoch)]

    def __iter__(self) -> Iterator[BytesView]:
        opts = self._options
        windows = _chunked(self.epoch_samples(), opts.max_in_flight)
        for views in _prefetched(windows, opts.prefetch, opts.max_in_flight):
            yield from views

    def __repr__(self) -> str:
        return f"PyDataset({len(self)} samples, {self._options!r})"


class AsyncLoader:
    """Batches of a :class:`PyDataset`: lists of ``batch_size`` BytesView in
    epoch order (the last one shorter unless ``drop_last``), fetched with
    ``prefetch`` batches ahead.  ``async for`` reads on the event loop;
    ``for`` reads on threads."""

    def __init__(self, dataset: PyDataset, options: OptionsLike = None,
                 **overrides: Any) -> None:
        if not isinstance(dataset, PyDataset):
            raise _bad(f"AsyncLoader takes a PyDataset, not {dataset!r}")
        if options is None and not overrides:
            self._options = dataset.options
        else:
            self._options = _resolve_options(options, overrides)
        self.dataset = dataset

    @property
    def options(self) -> PyLoaderOptions:
        return copy.copy(self._options)

    def set_epoch(self, epoch: int) -> None:
        """Selects the shuffle of the next iteration: ``dataset.set_epoch``."""
        self.dataset.set_epoch(epoch)

    def batches(self) -> List[Sequence[Sample]]:
        """The samples of each batch of the current epoch."""
        opts = self._options
        order = epoch_order(len(self.dataset), opts.shuffle, opts.seed, self.dataset.epoch)
        samples = self.dataset.samples()
        chunks = _chunked([samples[i] for i in order], opts.batch_size)
        if opts.drop_last and chunks and len(chunks[-1]) < opts.batch_size:
            chunks.pop()
        return chunks

    def __len__(self) -> int:
        return len(self.batches())

    def __aiter__(self) -> AsyncIterator[List[BytesView]]:
        return _prefetched_async(self.batches(), self._options.prefetch,
                                 self._options.max_in_flight)

    def __iter__(self) -> Iterator[List[BytesView]]:
        return _prefetched(self.batches(), self._options.prefetch, self._options.max_in_flight)

    def __repr__(self) -> str:
        return f"AsyncLoader({len(self.dataset)} samples, {self._options!r})"


#: The reference s3dlio's class name for the loader.
PyBytesAsyncDataLoader = AsyncLoader


def create_dataset(uri: str, options: OptionsLike = None, **overrides: Any) -> PyDataset:
    """Lists ``uri`` once (recursively, filtered by ``options.pattern``) and
    returns its objects as a :class:`PyDataset`.  ``options`` may be a
    PyLoaderOptions or a dict; keyword arguments override single fields."""
    opts = _resolve_options(options, overrides)
    uris = list_objects(uri, recursive=True, pattern=opts.pattern)
    return PyDataset(uris, opts, base=relative_base(parse_uri(uri, require_key=False)))


def create_async_loader(uri: str, options: OptionsLike = None,
                        **overrides: Any) -> AsyncLoader:
    """``AsyncLoader(create_dataset(uri, options, **overrides))``."""
    return AsyncLoader(create_dataset(uri, options, **overrides))


__all__ = ["PyLoaderOptions", "PyDataset", "AsyncLoader", "PyBytesAsyncDataLoader", "Sample",
           "create_dataset", "create_async_loader", "plan_chunks", "epoch_order", "READER_MODES"]
