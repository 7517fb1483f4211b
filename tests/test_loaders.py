"""Datasets and loaders (s3dlio.loaders) on file:// trees, plus one
round trip on every backend of the conformance suite."""
from __future__ import annotations

import asyncio
import threading

import pytest

import s3dlio
from s3dlio import loaders
from s3dlio.loaders import (AsyncLoader, PyDataset, PyLoaderOptions, Sample, create_async_loader,
                            create_dataset, plan_chunks)


def _payload(i: int) -> bytes:
    return f"object-{i:03d}:".encode() + bytes([i % 251]) * (i % 7)


@pytest.fixture
def tree(tmp_path):
    """25 objects in two directories plus two .txt files; returns (prefix, {uri: data})."""
    root = tmp_path / "data"
    objects = {}
    for i in range(25):
        sub = "a" if i % 2 else "b"
        uri = f"file://{root}/{sub}/obj-{i:03d}.bin"
        objects[uri] = _payload(i)
    objects[f"file://{root}/notes-1.txt"] = b"note one"
    objects[f"file://{root}/notes-2.txt"] = b"note two"
    s3dlio.put_many(objects.items())
    return f"file://{root}/", objects


def _bytes(views) -> list:
    return [bytes(v) for v in views]


def _run(coro):
    return asyncio.run(coro)


async def _collect_async(loader):
    return [_bytes(batch) async for batch in loader]


# -- options -------------------------------------------------------------------

def test_option_defaults():
    opts = PyLoaderOptions()
    assert opts.to_dict() == {"batch_size": 32, "prefetch": 2, "shuffle": False, "seed": 0,
                              "max_in_flight": 64, "drop_last": False, "pattern": None,
                              "reader_mode": "object", "part_size": 8 << 20}
    assert opts.num_workers == 64


def test_option_styles_agree():
    built = PyLoaderOptions().with_batch_size(4).with_shuffle(True, seed=7).with_num_workers(3)
    keyword = PyLoaderOptions(batch_size=4, shuffle=True, seed=7, num_workers=3)
    attrs = PyLoaderOptions()
    attrs.batch_size, attrs.shuffle, attrs.seed, attrs.max_in_flight = 4, True, 7, 3
    assert built.to_dict() == keyword.to_dict() == attrs.to_dict()
    assert PyLoaderOptions.from_dict(built.to_dict()).to_dict() == built.to_dict()
    base = PyLoaderOptions()
    base.with_batch_size(9)
    assert base.batch_size == 32  # builders return a copy
    assert PyLoaderOptions(num_workers=0).max_in_flight == 64  # the reference's default 0


@pytest.mark.parametrize("field, value", [
    ("batch_size", 0), ("batch_size", -1), ("batch_size", 2.0), ("batch_size", True),
    ("prefetch", -1), ("prefetch", 5000), ("shuffle", 1), ("seed", -1), ("seed", "x"),
    ("max_in_flight", 0), ("num_workers", -3), ("drop_last", "yes"), ("pattern", 5),
    ("reader_mode", "chunks"), ("part_size", 0), ("part_size", None),
])
def test_bad_options_raise(tree, field, value):
    prefix, _ = tree
    with pytest.raises(s3dlio.InvalidArgumentError):
        PyLoaderOptions(**{field: value})
    with pytest.raises(s3dlio.InvalidArgumentError):
        create_dataset(prefix, **{field: value})
    with pytest.raises(s3dlio.InvalidArgumentError):
        create_async_loader(prefix, {field: value})


def test_bad_option_containers_raise(tree):
    prefix, _ = tree
    with pytest.raises(s3dlio.InvalidArgumentError, match="unknown loader option"):
        create_dataset(prefix, {"batch_sise": 4})
    with pytest.raises(s3dlio.InvalidArgumentError):
        create_dataset(prefix, options=[("batch_size", 4)])  # type: ignore[arg-type]
    opts = PyLoaderOptions()
    opts.batch_size = 0  # attribute style is checked when the options are used
    with pytest.raises(s3dlio.InvalidArgumentError):
        create_dataset(prefix, opts)
    with pytest.raises(s3dlio.InvalidArgumentError):
        PyDataset.from_uris(prefix)  # one str, not a list


def test_options_are_copied(tree):
    prefix, _ = tree
    opts = PyLoaderOptions(batch_size=4)
    ds = create_dataset(prefix, opts)
    opts.batch_size = 8
    assert AsyncLoader(ds).options.batch_size == 4


# -- dataset -------------------------------------------------------------------

def test_dataset_lists_once_and_reads_randomly(tree):
    prefix, objects = tree
    ds = create_dataset(prefix)
    assert len(ds) == len(objects)
    assert ds.uris() == sorted(objects)
    assert ds.keys() == [u[len(prefix):] for u in sorted(objects)]
    assert "a/obj-001.bin" in ds.keys()
    for i in (0, 7, len(ds) - 1, -1):
        uri = ds.uris()[i]
        assert bytes(ds[i]) == objects[uri]
        assert bytes(ds.get_item(i)) == objects[uri]
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(TypeError):
        ds["0"]  # type: ignore[index]


def test_dataset_iterates_every_object_once_in_listing_order(tree):
    prefix, objects = tree
    ds = create_dataset(prefix, max_in_flight=4, prefetch=2)
    assert _bytes(ds) == [objects[u] for u in sorted(objects)]
    assert _bytes(ds) == [objects[u] for u in sorted(objects)]  # order stable, re-iterable


def test_dataset_pattern_filters(tree):
    prefix, objects = tree
    ds = create_dataset(prefix, pattern="*.txt")
    assert ds.keys() == ["notes-1.txt", "notes-2.txt"]
    assert _bytes(ds) == [b"note one", b"note two"]
    assert len(create_dataset(prefix, {"pattern": "a/*"})) == 12
    assert len(create_dataset(prefix, pattern="*.nothing")) == 0
    assert list(create_dataset(prefix, pattern="*.nothing")) == []


def test_dataset_shuffle_per_epoch(tree):
    prefix, objects = tree
    ds = create_dataset(prefix, shuffle=True, seed=3, max_in_flight=5)
    first = _bytes(ds)
    assert sorted(first) == sorted(objects.values())  # every object exactly once
    assert _bytes(ds) == first  # same epoch, same order
    ds.set_epoch(1)
    second = _bytes(ds)
    assert sorted(second) == sorted(first) and second != first
    again = create_dataset(prefix, shuffle=True, seed=3)
    again.set_epoch(1)
    assert _bytes(again) == second  # repeats for (seed, epoch)
    other = create_dataset(prefix, shuffle=True, seed=4)
    other.set_epoch(1)
    assert _bytes(other) != second
    with pytest.raises(s3dlio.InvalidArgumentError):
        ds.set_epoch(-1)


def test_from_uris_keeps_order_without_listing(tree):
    _, objects = tree
    chosen = sorted(objects)[::-3]
    ds = PyDataset.from_uris(chosen, {"max_in_flight": 2})
    assert ds.uris() == chosen and ds.keys() == chosen
    assert _bytes(ds) == [objects[u] for u in chosen]
    assert len(PyDataset.from_uris([])) == 0


def test_dataset_early_stop_releases(tree):
    prefix, objects = tree
    ds = create_dataset(prefix, max_in_flight=2, prefetch=3)
    it = iter(ds)
    assert bytes(next(it)) == objects[sorted(objects)[0]]
    it.close()  # cancels read-ahead; must not hang


# -- read-ahead bound ----------------------------------------------------------

class _Gauge:
    """Counts calls of a fetch function running at once, and the items they hold."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = self.peak = self.items = self.peak_items = self.calls = 0

    def enter(self, n: int) -> None:
        with self.lock:
            self.calls += 1
            self.running += 1
            self.items += n
            self.peak = max(self.peak, self.running)
            self.peak_items = max(self.peak_items, self.items)

    def leave(self, n: int) -> None:
        with self.lock:
            self.running -= 1
            self.items -= n


def test_dataset_prefetch_bound(tree, monkeypatch):
    prefix, objects = tree
    gauge = _Gauge()
    real = loaders.get_many

    def counted(uris, max_in_flight=64, **kw):
        assert len(uris) <= 3 and max_in_flight == 3
        gauge.enter(len(uris))
        try:
            threading.Event().wait(0.01)  # let the read-ahead pile up if it would
            return real(uris, max_in_flight, **kw)
        finally:
            gauge.leave(len(uris))

    monkeypatch.setattr(loaders, "get_many", counted)
    ds = create_dataset(prefix, max_in_flight=3, prefetch=2)
    got = []
    for view in ds:
        got.append(bytes(view))
        threading.Event().wait(0.002)  # a slow consumer
    assert got == [objects[u] for u in sorted(objects)]
    assert gauge.calls == 9  # 27 objects in windows of 3
    assert gauge.peak <= 2 and gauge.peak_items <= 2 * 3


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_loader_prefetch_bound(tree, monkeypatch, prefetch):
    prefix, objects = tree
    gauge = _Gauge()
    real = loaders.get_many_async

    async def counted(uris, max_in_flight=64, **kw):
        gauge.enter(len(uris))
        try:
            await asyncio.sleep(0.01)
            return await real(uris, max_in_flight, **kw)
        finally:
            gauge.leave(len(uris))

    monkeypatch.setattr(loaders, "get_many_async", counted)
    loader = create_async_loader(prefix, batch_size=4, prefetch=prefetch)

    async def consume():
        out = []
        async for batch in loader:
            out.append(_bytes(batch))
            await asyncio.sleep(0.005)
        return out

    batches = _run(consume())
    assert [b for batch in batches for b in batch] == [objects[u] for u in sorted(objects)]
    assert gauge.calls == 7
    assert gauge.peak <= max(prefetch, 1)
    assert gauge.peak_items <= max(prefetch, 1) * 4
    if prefetch > 1:
        assert gauge.peak > 1  # the read-ahead is real


def test_loader_early_break_cancels_read_ahead(tree):
    prefix, _ = tree
    loader = create_async_loader(prefix, batch_size=2, prefetch=4)

    async def first_then_stop():
        it = loader.__aiter__()
        batch = await it.__anext__()
        await it.aclose()  # type: ignore[attr-defined]
        return batch

    assert len(_run(first_then_stop())) == 2


# -- loader --------------------------------------------------------------------

def test_loader_batches_and_last_batch(tree):
    prefix, objects = tree
    expected = [objects[u] for u in sorted(objects)]
    loader = create_async_loader(prefix, PyLoaderOptions(batch_size=5))
    batches = _run(_collect_async(loader))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 5, 2]
    assert [x for b in batches for x in b] == expected
    assert len(loader) == 6
    assert all(isinstance(v, s3dlio.BytesView) for v in next(iter(loader)))
    assert [_bytes(b) for b in loader] == batches  # sync iteration, same batches

    dropping = create_async_loader(prefix, batch_size=5, drop_last=True)
    batches = _run(_collect_async(dropping))
    assert [len(b) for b in batches] == [5] * 5 and len(dropping) == 5
    assert [x for b in batches for x in b] == expected[:25]

    exact = create_async_loader(prefix, batch_size=9, drop_last=True)
    assert [len(b) for b in _run(_collect_async(exact))] == [9, 9, 9]
    big = create_async_loader(prefix, batch_size=100)
    assert [len(b) for b in _run(_collect_async(big))] == [27]
    assert _run(_collect_async(create_async_loader(prefix, batch_size=100, drop_last=True))) == []


def test_loader_shuffle_epochs(tree):
    prefix, objects = tree
    loader = create_async_loader(prefix, batch_size=4, shuffle=True, seed=11)
    epochs = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        flat = [x for b in _run(_collect_async(loader)) for x in b]
        assert sorted(flat) == sorted(objects.values())  # every object once
        epochs.append(flat)
    assert len({tuple(e) for e in epochs}) == 3
    loader.set_epoch(1)
    assert [x for b in loader for x in _bytes(b)] == epochs[1]
    plain = create_async_loader(prefix, batch_size=4)
    assert [x for b in _run(_collect_async(plain)) for x in b] == \
        [objects[u] for u in sorted(objects)]


def test_loader_over_dataset_with_own_options(tree):
    prefix, objects = tree
    ds = create_dataset(prefix, pattern="*.txt")
    loader = AsyncLoader(ds, batch_size=1)
    assert _run(_collect_async(loader)) == [[b"note one"], [b"note two"]]


# -- range mode ----------------------------------------------------------------

def test_plan_chunks_exact():
    assert plan_chunks("u", 10, 4) == [Sample("u", 0, 4), Sample("u", 4, 4), Sample("u", 8, 2)]
    assert plan_chunks("u", 8, 4) == [Sample("u", 0, 4), Sample("u", 4, 4)]
    assert plan_chunks("u", 3, 4) == [Sample("u", 0, 3)]
    assert plan_chunks("u", 0, 4) == [Sample("u", 0, 0)]
    for size in range(0, 40):
        chunks = plan_chunks("u", size, 7)
        assert sum(c.length or 0 for c in chunks) == size
        assert all(c.offset == 7 * i for i, c in enumerate(chunks))


def test_range_mode_chunk_boundaries(tmp_path):
    blobs = {f"file://{tmp_path}/r/{name}": bytes((i * 31 + j) % 256 for j in range(size))
             for i, (name, size) in enumerate([("a", 10), ("b", 8), ("c", 3), ("d", 0)])}
    s3dlio.put_many(blobs.items())
    prefix = f"file://{tmp_path}/r/"
    ds = create_dataset(prefix, reader_mode="range", part_size=4, max_in_flight=2)
    expected = []
    for uri in sorted(blobs):
        data = blobs[uri]
        expected += [data[o:o + 4] for o in range(0, len(data), 4)] or [b""]
    assert len(ds) == len(expected) == 7
    assert len(ds.uris()) == 4
    assert _bytes(ds) == expected
    assert [bytes(ds[i]) for i in range(len(ds))] == expected
    assert ds.samples()[1] == Sample(f"{prefix}a", 4, 4)

    loader = create_async_loader(prefix, {"reader_mode": "range", "part_size": 4,
                                          "batch_size": 3, "max_in_flight": 2})
    batches = _run(_collect_async(loader))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [x for b in batches for x in b] == expected
    assert [x for b in loader for x in _bytes(b)] == expected

    shuffled = create_async_loader(prefix, reader_mode="range", part_size=4, shuffle=True, seed=1)
    flat = [x for b in _run(_collect_async(shuffled)) for x in b]
    assert sorted(flat) == sorted(expected)


# -- every backend -------------------------------------------------------------

def test_round_trip_on_backend(backend):
    objects = {backend.uri(f"ds/part-{i}/x{i:02d}.bin"): _payload(i) * 50 for i in range(12)}
    s3dlio.put_many(objects.items())
    prefix = backend.uri("ds/")
    ds = create_dataset(prefix, max_in_flight=4)
    assert ds.uris() == sorted(objects)
    assert ds.keys() == [u[len(prefix):] for u in sorted(objects)]
    assert _bytes(ds) == [objects[u] for u in sorted(objects)]
    assert bytes(ds[3]) == objects[sorted(objects)[3]]

    loader = create_async_loader(prefix, batch_size=5, shuffle=True, seed=2)
    flat = [x for b in _run(_collect_async(loader)) for x in b]
    assert sorted(flat) == sorted(objects.values())

    ranged = create_async_loader(prefix, reader_mode="range", part_size=100, batch_size=8)
    got = b"".join(x for b in _run(_collect_async(ranged)) for x in b)
    assert got == b"".join(objects[u] for u in sorted(objects))
