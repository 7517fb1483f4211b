"""PyTorch datasets (s3dlio.torch) with the real torch on CPU: DataLoader
workers under fork and spawn, torch.distributed on gloo, every backend."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

import s3dlio  # noqa: E402
from s3dlio import S3IterableDataset, S3MapDataset  # noqa: E402

HERE = Path(__file__).resolve().parent
START_METHODS = ("fork", "spawn")
# Three workers on a 2-core machine is the point of some tests, not a mistake.
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create")


def _name(i: int) -> str:
    return f"obj-{i:03d}"


@pytest.fixture
def tree(tmp_path):
    """23 objects whose bytes are their names, plus two .txt files."""
    root = tmp_path / "data"
    items = [(f"file://{root}/{'ab'[i % 2]}/{_name(i)}.bin", _name(i).encode()) for i in range(23)]
    items += [(f"file://{root}/notes-{i}.txt", b"note") for i in range(2)]
    s3dlio.put_many(items)
    return f"file://{root}/"


def _names(batches) -> list:
    return [bytes(v).decode() for batch in batches for v in batch]


def _all_names(count: int = 23) -> list:
    return [_name(i) for i in range(count)]


def _as_tensor(view) -> "torch.Tensor":
    return torch.frombuffer(bytearray(view), dtype=torch.uint8)


# -- map-style -----------------------------------------------------------------

def test_map_dataset_lists_once_and_reads_by_index(tree):
    ds = S3MapDataset(tree, pattern="*.bin")
    assert len(ds) == 23
    assert all(u.endswith(".bin") for u in ds.uris())
    assert bytes(ds[0]) == b"obj-000" and bytes(ds[22]) == b"obj-021"  # sorted: a/ (even) then b/
    assert sorted(bytes(ds[i]).decode() for i in range(len(ds))) == _all_names()
    with pytest.raises(IndexError):
        ds[23]


def test_map_dataset_batches_with_default_collate(tree):
    ds = S3MapDataset(tree, pattern="*.bin")
    batches = list(DataLoader(ds, batch_size=5, shuffle=True))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert all(isinstance(v, s3dlio.BytesView) for b in batches for v in b)
    assert sorted(_names(batches)) == _all_names()


def test_map_dataset_transform_output_is_collated(tree):
    ds = S3MapDataset(tree, pattern="*.bin", transform=_as_tensor)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert isinstance(batch, torch.Tensor) and batch.shape == (4, 7)
    assert all(torch.equal(batch[i], ds[i]) for i in range(4))
    assert bytes(batch[3].numpy()) == b"obj-006"  # a/ holds the even numbers


@pytest.mark.parametrize("method", START_METHODS)
def test_map_dataset_in_worker_processes(tree, method):
    ds = S3MapDataset(tree, pattern="*.bin")
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context=method)
    names = _names(loader)
    assert sorted(names) == _all_names()


def test_empty_selection_is_an_error_unless_allowed(tree):
    with pytest.raises(s3dlio.NotFoundError, match="nothing-here"):
        S3MapDataset(tree, pattern="nothing-here*")
    with pytest.raises(s3dlio.NotFoundError):
        list(S3IterableDataset(tree, pattern="nothing-here*"))
    assert len(S3MapDataset(tree, pattern="nothing-here*", allow_empty=True)) == 0
    assert list(S3IterableDataset(tree, pattern="nothing-here*", allow_empty=True)) == []


def test_bad_options_are_rejected_early(tree):
    with pytest.raises(s3dlio.InvalidArgumentError):
        S3IterableDataset(tree, rank=2, world_size=2)
    with pytest.raises(s3dlio.InvalidArgumentError):
        S3IterableDataset(tree, rank=0)
    with pytest.raises(s3dlio.InvalidArgumentError):
        S3IterableDataset(tree, max_in_flight=0)
    with pytest.raises(s3dlio.InvalidURIError):
        S3MapDataset("nope://bucket/")


# -- iterable ------------------------------------------------------------------

def test_iterable_streams_in_listing_order(tree):
    ds = S3IterableDataset(tree, pattern="*.bin", max_in_flight=4)
    names = [bytes(v).decode() for v in ds]
    assert sorted(names) == _all_names()
    assert names == [bytes(v).decode() for v in S3MapDataset(tree, pattern="*.bin").__getitems__(
        range(23))]


def test_iterable_shuffle_per_epoch_and_seed(tree):
    ds = S3IterableDataset(tree, pattern="*.bin", shuffle=True, seed=5, max_in_flight=3)
    epochs = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        epochs.append([bytes(v).decode() for v in ds])
    assert all(sorted(e) == _all_names() for e in epochs)
    assert len({tuple(e) for e in epochs}) == 3
    again = S3IterableDataset(tree, pattern="*.bin", shuffle=True, seed=5)
    again.set_epoch(1)
    assert [bytes(v).decode() for v in again] == epochs[1]
    other = S3IterableDataset(tree, pattern="*.bin", shuffle=True, seed=6)
    other.set_epoch(1)
    assert [bytes(v).decode() for v in other] != epochs[1]


def test_iterable_epoch_counter_without_set_epoch(tree):
    ds = S3IterableDataset(tree, pattern="*.bin", shuffle=True, seed=5)
    first, second = [bytes(v) for v in ds], [bytes(v) for v in ds]
    assert first != second and sorted(first) == sorted(second)
    ds.set_epoch(0)
    assert [bytes(v) for v in ds] == first


@pytest.mark.parametrize("method", START_METHODS)
@pytest.mark.parametrize("shuffle", [False, True])
def test_iterable_workers_see_each_object_once(tree, method, shuffle):
    ds = S3IterableDataset(tree, pattern="*.bin", shuffle=shuffle, seed=2, max_in_flight=2)
    loader = DataLoader(ds, batch_size=3, num_workers=3, multiprocessing_context=method)
    for epoch in range(2):
        ds.set_epoch(epoch)
        names = _names(loader)
        assert Counter(names) == Counter(_all_names()), (epoch, names)


def test_iterable_persistent_workers_reshuffle(tree):
    ds = S3IterableDataset(tree, pattern="*.bin", shuffle=True, seed=9, max_in_flight=2)
    loader = DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=True,
                        multiprocessing_context="fork")
    epochs = [[bytes(v).decode() for v in loader] for _ in range(2)]
    assert all(sorted(e) == _all_names() for e in epochs)
    assert epochs[0] != epochs[1]


def test_explicit_rank_shards_partition_the_epoch(tree):
    seen = []
    for rank in range(3):
        ds = S3IterableDataset(tree, pattern="*.bin", shuffle=True, seed=4, rank=rank,
                               world_size=3)
        seen.append([bytes(v).decode() for v in ds])
    assert Counter(n for part in seen for n in part) == Counter(_all_names())
    assert sorted(len(p) for p in seen) == [7, 8, 8]


def test_from_uris_keeps_the_given_order(tree):
    uris = S3MapDataset(tree, pattern="*.bin").uris()[::-1]
    ds = S3IterableDataset.from_uris(uris)
    assert [bytes(v) for v in ds] == [bytes(s3dlio.get(u)) for u in uris]
    assert [bytes(v) for v in S3MapDataset.from_uris(uris).__getitems__([0, 1])] == \
        [bytes(s3dlio.get(u)) for u in uris[:2]]


@pytest.mark.timeout(120)
def test_worker_storage_error_surfaces_in_the_loop(tree):
    ds = S3MapDataset(tree, pattern="*.bin")
    s3dlio.delete(ds.uris()[5])
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork")
    with pytest.raises(Exception) as caught:
        list(loader)
    assert "NotFoundError" in str(caught.value) or isinstance(caught.value, s3dlio.NotFoundError)
    assert ds.uris()[5] in str(caught.value)
    it = S3IterableDataset.from_uris(ds.uris(), max_in_flight=4)
    with pytest.raises(Exception, match="NotFoundError|not found"):
        list(DataLoader(it, batch_size=4, num_workers=2, multiprocessing_context="fork"))


def test_a_batch_changed_after_collate_arrives_as_changed(tree):
    """default_collate packs a worker's batch of views into shared memory;
    a collate_fn that edits the list afterwards must see its edits arrive."""
    import pickle
    from multiprocessing.reduction import ForkingPickler
    from unittest import mock
    from torch.utils.data import default_collate
    views = [s3dlio.get(u) for u in S3MapDataset(tree, pattern="*.bin").uris()[:3]]
    with mock.patch("s3dlio.torch.get_worker_info", return_value=object()):
        batch = default_collate(views)
    sent = pickle.loads(ForkingPickler.dumps(batch))
    assert [bytes(v) for v in sent] == [bytes(v) for v in views]
    assert all(isinstance(v, s3dlio.BytesView) for v in sent)
    batch.pop()
    batch[0] = views[2]
    sent = pickle.loads(ForkingPickler.dumps(batch))
    assert [bytes(v) for v in sent] == [bytes(views[2]), bytes(views[1])]


def test_bytesview_pickles_as_a_copy(tree):
    import pickle
    view = s3dlio.get(S3MapDataset(tree, pattern="*.bin").uris()[0])
    again = pickle.loads(pickle.dumps(view))
    assert isinstance(again, s3dlio.BytesView) and again == view


# -- object stores -------------------------------------------------------------

def _filled(backend, count: int) -> str:
    s3dlio.put_many([(backend.uri(f"ds/{_name(i)}"), _name(i).encode()) for i in range(count)])
    return backend.uri("ds/")


def test_datasets_on_every_backend(backend):
    prefix = _filled(backend, 9)
    mapped = S3MapDataset(prefix)
    assert len(mapped) == 9
    assert sorted(_names(DataLoader(mapped, batch_size=4))) == _all_names(9)
    streamed = S3IterableDataset(prefix, shuffle=True, seed=1, max_in_flight=4)
    assert sorted(_names(DataLoader(streamed, batch_size=4, num_workers=2,
                                    multiprocessing_context="fork"))) == _all_names(9)


def test_s3_reads_are_one_get_each_and_no_head(moto_s3, tmp_path):
    bucket = "torch-requests"
    s3dlio.create_bucket(bucket)
    prefix = f"s3://{bucket}/"
    s3dlio.put_many([(f"{prefix}{_name(i)}", _name(i).encode() * 100) for i in range(12)])
    log = tmp_path / "ops.tsv.zst"
    s3dlio.init_op_log(str(log))
    try:
        assert len([v for v in S3IterableDataset(prefix, max_in_flight=4)]) == 12
        mapped = S3MapDataset(prefix)
        assert len(list(DataLoader(mapped, batch_size=5))) == 3
    finally:
        s3dlio.finalize_op_log()
    from test_oplog import _rows
    ops = Counter(r[2] for r in _rows(log))
    assert ops == {"LIST": 2, "GET": 24}, ops


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("method", START_METHODS)
def test_distributed_ranks_and_workers_partition_each_epoch(moto_s3, tmp_path, method):
    """Spawned workers never join the process group: the rank must travel
    with the pickled dataset."""
    bucket = f"torch-dist-{method}"
    s3dlio.create_bucket(bucket)
    prefix = f"s3://{bucket}/train/"
    s3dlio.put_many([(f"{prefix}{_name(i)}", _name(i).encode()) for i in range(41)])
    port, world = _free_port(), 2
    outs = [tmp_path / f"rank{r}.json" for r in range(world)]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    procs = [subprocess.Popen([sys.executable, str(HERE / "_torch_dist_worker.py"), str(r),
                               str(world), str(port), prefix, str(outs[r]), method], env=env)
             for r in range(world)]
    try:
        codes = [p.wait(timeout=200) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0] * world
    per_rank = [json.loads(o.read_text()) for o in outs]
    for epoch in range(2):
        parts = [ranks[epoch] for ranks in per_rank]
        assert Counter(n for part in parts for n in part) == Counter(_all_names(41))
        assert {len(p) for p in parts} <= {20, 21}
    assert per_rank[0][0] != per_rank[0][1]  # reshuffled between epochs
