"""Data loading for JAX and TensorFlow on top of s3dlio.loaders, on every
backend (file://, direct://, s3://, gs://, az://).

- :class:`S3JaxIterable` (also :data:`JaxIterable`): batches of NumPy
  arrays ready for ``jax.device_put``; ``.npy`` samples are stacked into one
  array, ``.npz`` samples into a dict of arrays, other objects are bytes.
- :func:`make_tf_dataset`: a ``tf.data.Dataset`` of ``tf.string``: the
  records of TFRecord objects (CRC-checked by s3dlio.formats, not TF's
  reader) or whole objects.

Neither framework is imported by this module: JAX never (the batches are
NumPy), TensorFlow only inside :func:`make_tf_dataset`.  Listing, shuffling
(``epoch_order``) and read-ahead are the loaders' own; decoding runs on the
read-ahead threads, so the training loop only receives finished batches.
See docs/jax-tf.md."""
from __future__ import annotations

import itertools
import random
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional,
                    Sequence, Tuple, Union)

import numpy as np

from ._bytesview import BytesView
from .errors import InvalidArgumentError
from .formats import _TFRECORD_FRAMING, _array_from_npy, _check_record, read_npz
from .loaders import (PyDataset, Sample, _bad, _check_int, _chunked, _fetch, _read_ahead,
                      create_dataset, epoch_order)

if TYPE_CHECKING:
    import tensorflow as tf

#: A decode function: ``(uri, data) -> sample`` (an array, a dict or tuple of
#: arrays, or anything else, which is batched as a list).
DecodeFn = Callable[[str, BytesView], Any]
DECODE_MODES = ("auto", "npy", "npz", "bytes")
RECORD_FORMATS = ("auto", "tfrecord", "bytes")
_TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords")
_MAX_WORLD = 1 << 20
_MAX_EPOCH = (1 << 63) - 1  # as PyDataset.set_epoch


def _check_world(rank: int, world_size: int) -> None:
    _check_int("world_size", world_size, 1, _MAX_WORLD)
    _check_int("rank", rank, 0, world_size - 1)


def _shard(order: List[int], rank: int, world_size: int) -> List[int]:
    """This rank's share of an epoch's order: every ``world_size``-th index
    from ``rank`` on, cut to ``len(order) // world_size`` so that every rank
    runs the same number of steps (an SPMD job whose ranks disagree on that
    hangs in its collectives)."""
    if world_size == 1:
        return order
    return order[rank::world_size][:len(order) // world_size]


def _suffix_kind(uri: str) -> str:
    name = uri.lower()
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(".npz"):
        return "npz"
    return "bytes"


# --------------------------------------------------------------------------- collation

def _describe(item: Any) -> str:
    if isinstance(item, np.ndarray):
        return f"an array of shape {item.shape} and dtype {item.dtype}"
    if isinstance(item, Mapping):
        return f"a dict with keys {sorted(item)}"
    if isinstance(item, tuple):
        return f"a tuple of {len(item)}"
    return f"a {type(item).__name__}"


def _mismatch(uris: Sequence[str], j: int, items: Sequence[Any], where: str
              ) -> InvalidArgumentError:
    part = f" (in {where})" if where else ""
    return InvalidArgumentError(
        f"cannot batch {uris[0]}, {_describe(items[0])}, with {uris[j]}, "
        f"{_describe(items[j])}{part}: the samples of a batch must have the same structure, "
        f"shape and dtype; pad or resize them in a decode function", uri=uris[j],
        code="BatchMismatch")


def _collate(uris: Sequence[str], items: Sequence[Any], where: str = "") -> Any:
    """One batch from the samples of one batch, as JAX's pytrees nest:
    arrays are stacked on a new first axis, dicts key by key, tuples field by
    field; anything else (bytes) is kept as a list.  Dtypes must agree too:
    np.stack would otherwise promote silently, and a batch of float64 where
    float32 was meant doubles the memory on the device."""
    first = items[0]
    if isinstance(first, (np.generic, int, float)):  # bool too: it is an int
        items = [np.asarray(x) if isinstance(x, (np.generic, int, float)) else x
                 for x in items]
        first = items[0]
    if isinstance(first, np.ndarray):
        for j, item in enumerate(items):
            if (not isinstance(item, np.ndarray) or item.shape != first.shape
                    or item.dtype != first.dtype):
                raise _mismatch(uris, j, items, where)
        return np.stack(items)
    if isinstance(first, Mapping):
        for j, item in enumerate(items):
            if not isinstance(item, Mapping) or set(item) != set(first):
                raise _mismatch(uris, j, items, where)
        return {key: _collate(uris, [item[key] for item in items], f"{where}[{key!r}]")
                for key in first}
    if isinstance(first, tuple):
        for j, item in enumerate(items):
            if not isinstance(item, tuple) or len(item) != len(first):
                raise _mismatch(uris, j, items, where)
        return tuple(_collate(uris, [item[k] for item in items], f"{where}[{k}]")
                     for k in range(len(first)))
    for j, item in enumerate(items):
        if isinstance(item, (np.ndarray, Mapping, tuple)):
            raise _mismatch(uris, j, items, where)
    return list(items)


# --------------------------------------------------------------------------- JAX

class S3JaxIterable:
    """Batches of the objects under ``uri``, as NumPy, for JAX.

    Each batch is ``np.stack`` of ``batch_size`` ``.npy`` arrays (shape
    ``(batch, *sample_shape)``), a dict of such stacks for ``.npz`` samples,
    or a ``list[bytes]`` for other objects (see ``decode``).  Pass a batch
    to ``jax.device_put``; JAX itself is never imported here.

    ``shuffle``/``seed``: each pass takes the next epoch (from ``epoch``), so
    successive passes are shuffled differently and the sequence repeats for
    the same seed; ``set_epoch(n)`` pins the epoch of the following passes,
    as with ``DistributedSampler`` and s3dlio.torch.  ``rank``/``world_size``
    give each process of a multi-host job a disjoint, equally long share of
    every epoch.
    ``prefetch`` batches are read and decoded ahead on threads, each with one
    ``get_many`` of up to ``max_in_flight`` objects at once."""

    def __init__(self, uri: str, pattern: Optional[str] = None, batch_size: int = 32,
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False,
                 prefetch: int = 2, max_in_flight: int = 64,
                 decode: Union[str, DecodeFn] = "auto", rank: int = 0,
                 world_size: int = 1, epoch: int = 0) -> None:
        if not callable(decode) and decode not in DECODE_MODES:
            raise _bad(f"decode must be one of {DECODE_MODES} or a function, not {decode!r}")
        _check_world(rank, world_size)
        # create_dataset validates the loader options and raises the same
        # InvalidArgumentError (code "InvalidOption") as the loaders do.
        self.dataset: PyDataset = create_dataset(
            uri, pattern=pattern, batch_size=batch_size, shuffle=shuffle, seed=seed,
            drop_last=drop_last, prefetch=prefetch, max_in_flight=max_in_flight)
        self._decode = decode
        self._rank = rank
        self._world_size = world_size
        _check_int("epoch", epoch, 0, _MAX_EPOCH)
        self._explicit_epoch: Optional[int] = None
        self._next_epoch = epoch

    @property
    def epoch(self) -> int:
        """The epoch the next iteration uses."""
        return self._next_epoch if self._explicit_epoch is None else self._explicit_epoch

    def set_epoch(self, epoch: int) -> None:
        """Pins the epoch (int >= 0) of the following iterations, until called
        again; without it each iteration takes the next epoch."""
        _check_int("epoch", epoch, 0, _MAX_EPOCH)
        self._explicit_epoch = epoch

    def _samples_per_rank(self) -> int:
        return len(self.dataset) // self._world_size

    def __len__(self) -> int:
        """Batches per epoch for this rank."""
        count, size = self._samples_per_rank(), self.dataset.options.batch_size
        return count // size if self.dataset.options.drop_last else -(-count // size)

    def _batches(self, epoch: int) -> List[Sequence[Sample]]:
        opts = self.dataset.options
        samples = self.dataset.samples()
        order = _shard(epoch_order(len(samples), opts.shuffle, opts.seed, epoch),
                       self._rank, self._world_size)
        chunks = _chunked([samples[i] for i in order], opts.batch_size)
        if opts.drop_last and chunks and len(chunks[-1]) < opts.batch_size:
            chunks.pop()
        return chunks

    def _kind(self, uri: str) -> str:
        if callable(self._decode):
            return "custom"
        return _suffix_kind(uri) if self._decode == "auto" else self._decode

    def _load(self, group: Sequence[Sample]) -> Any:
        """Reads and decodes one batch; runs on a read-ahead thread."""
        max_in_flight = self.dataset.options.max_in_flight
        uris = [s.uri for s in group]
        kinds = [self._kind(uri) for uri in uris]
        items: List[Any] = [None] * len(group)
        fetched = [i for i, kind in enumerate(kinds) if kind != "npz"]
        if fetched:
            views = _fetch([group[i] for i in fetched], max_in_flight)
            for i, view in zip(fetched, views):
                items[i] = self._decode_view(kinds[i], uris[i], view)
        archives = [i for i, kind in enumerate(kinds) if kind == "npz"]
        if archives:
            # read_npz does its own GET; it has no entry point for bytes already
            # read, so .npz samples are read on threads (each read releases the
            # GIL) rather than in the batch's get_many.
            with ThreadPoolExecutor(max_workers=min(max_in_flight, len(archives))) as pool:
                for i, arrays in zip(archives, pool.map(read_npz, [uris[i] for i in archives])):
                    items[i] = dict(arrays)
        return _collate(uris, items)

    def _decode_view(self, kind: str, uri: str, view: BytesView) -> Any:
        if callable(self._decode):
            return self._decode(uri, view)
        if kind == "npy":
            return _array_from_npy(view.memoryview(), uri)
        return view.to_bytes()

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch
        if self._explicit_epoch is None:
            # Advance now, not at the end of the pass: a pass broken off early
            # still moves on, so the next one never repeats its shuffle by accident.
            self._next_epoch += 1
        return _read_ahead(self._batches(epoch), self.dataset.options.prefetch, self._load)

    def __repr__(self) -> str:
        return (f"S3JaxIterable({len(self.dataset)} objects, rank {self._rank} of "
                f"{self._world_size}, epoch {self.epoch}, {self.dataset.options!r})")


#: The reference s3dlio's (non-deprecated) name for the same class.
JaxIterable = S3JaxIterable


# --------------------------------------------------------------------------- TensorFlow

def _tfrecord_payloads(uri: str, buf: memoryview) -> Iterator[memoryview]:
    """The payloads of a whole TFRecord object already in memory.  Every
    check (both CRCs, truncation) is formats._check_record's; the length is
    only read here to find where the record ends, and is verified there
    before anything depends on it."""
    offset = 0
    while offset < len(buf):
        length = struct.unpack_from("<Q", buf, offset)[0] if len(buf) - offset >= 8 else 0
        end = min(len(buf), offset + length + _TFRECORD_FRAMING)
        yield _check_record(buf[offset:end], uri, offset)
        offset = end


def _is_tfrecord(uri: str, record_format: str) -> bool:
    if record_format == "auto":
        return uri.lower().endswith(_TFRECORD_SUFFIXES)
    return record_format == "tfrecord"


def _window_records(window: Tuple[int, Sequence[Sample]], *, record_format: str,
                    shuffle: bool, seed: int, epoch: int, max_in_flight: int) -> List[bytes]:
    """The elements of one window of objects: fetched with one get_many,
    split into records, shuffled within the window.  Runs on a read-ahead
    thread, so the TF generator only hands over finished lists."""
    index, group = window
    records: List[bytes] = []
    for sample, view in zip(group, _fetch(group, max_in_flight)):
        if _is_tfrecord(sample.uri, record_format):
            records.extend(bytes(p) for p in _tfrecord_payloads(sample.uri, view.memoryview()))
        else:
            records.append(view.to_bytes())
    if shuffle:
        random.Random(f"s3dlio-tf:{seed}:{epoch}:{index}").shuffle(records)
    return records


def _string_vector(records: Sequence[bytes]) -> np.ndarray:
    # An object array of bytes: TF converts it to a string tensor in one call.
    vector = np.empty(len(records), dtype=object)
    vector[:] = records
    return vector


def make_tf_dataset(uri: str, pattern: Optional[str] = None, batch_size: Optional[int] = 32,
                    shuffle: bool = False, seed: int = 0, drop_last: bool = False,
                    prefetch: int = 2, max_in_flight: int = 16, record_format: str = "auto",
                    rank: int = 0, world_size: int = 1, epoch: int = 0) -> "tf.data.Dataset":
    """A ``tf.data.Dataset`` of ``tf.string`` over the objects under ``uri``.

    TFRecord objects (``record_format="auto"``: names ending ``.tfrecord`` or
    ``.tfrecords``) give one element per record, both CRCs checked; other
    objects give one element each, the whole object.  Elements are batched
    into vectors of ``batch_size`` (``None``: unbatched scalars).

    Objects are read in windows of ``max_in_flight`` (one ``get_many`` each)
    with ``prefetch`` windows ahead.  With ``shuffle`` the object order is a
    permutation fixed by ``(seed, epoch)`` and the records are shuffled
    within each window; every iteration of the dataset is a new epoch,
    counting from ``epoch``.  A corrupt record raises s3dlio's
    ``StorageIOError`` naming URI and offset, which TF reports as
    ``tf.errors.UnknownError`` carrying that message."""
    import tensorflow as tf  # only here: importing TF takes seconds

    if batch_size is not None:
        _check_int("batch_size", batch_size, 1, 1 << 20)
    if record_format not in RECORD_FORMATS:
        raise _bad(f"record_format must be one of {RECORD_FORMATS}, not {record_format!r}")
    _check_world(rank, world_size)
    _check_int("epoch", epoch, 0, _MAX_EPOCH)
    dataset = create_dataset(uri, pattern=pattern, shuffle=shuffle, seed=seed,
                             drop_last=drop_last, prefetch=prefetch, max_in_flight=max_in_flight)
    opts = dataset.options
    samples = dataset.samples()
    # from_generator calls the generator once per iteration of the dataset
    # (each Keras epoch, each repeat()), so each call takes the next epoch.
    # next() on itertools.count is atomic under the GIL, and TF may start
    # iterators from several threads.
    epochs = itertools.count(epoch)

    def windows() -> Iterator[List[bytes]]:
        this_epoch = next(epochs)
        order = _shard(epoch_order(len(samples), opts.shuffle, opts.seed, this_epoch),
                       rank, world_size)
        groups = list(enumerate(_chunked([samples[i] for i in order], opts.max_in_flight)))

        def work(window: Tuple[int, Sequence[Sample]]) -> List[bytes]:
            return _window_records(window, record_format=record_format, shuffle=opts.shuffle,
                                   seed=opts.seed, epoch=this_epoch,
                                   max_in_flight=opts.max_in_flight)
        return _read_ahead(groups, opts.prefetch, work)

    def generate() -> Iterator[np.ndarray]:
        # One tensor per batch (or per window, unbatched after) rather than
        # one per record, so TF crosses into Python once per batch.
        if batch_size is None:
            for records in windows():
                yield _string_vector(records)
            return
        pending: List[bytes] = []
        for records in windows():
            pending.extend(records)
            full = len(pending) - len(pending) % batch_size
            for start in range(0, full, batch_size):
                yield _string_vector(pending[start:start + batch_size])
            del pending[:full]
        if pending and not drop_last:
            yield _string_vector(pending)

    shape = [batch_size] if batch_size is not None and drop_last else [None]
    result = tf.data.Dataset.from_generator(
        generate, output_signature=tf.TensorSpec(shape=shape, dtype=tf.string))
    return result.unbatch() if batch_size is None else result


__all__ = ["S3JaxIterable", "JaxIterable", "make_tf_dataset", "DECODE_MODES", "RECORD_FORMATS"]
