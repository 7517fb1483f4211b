"""S3JaxIterable and make_tf_dataset (s3dlio.jax_tf) against the real
frameworks: decoding equals numpy.load, epochs and shuffles, TFRecords as TF
itself writes and reads them, errors, and one round trip on every backend."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF is first imported

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import s3dlio  # noqa: E402
from s3dlio.formats import create_tfrecord_index, get_tfrecord_index_entries  # noqa: E402
from s3dlio.jax_tf import JaxIterable, S3JaxIterable, make_tf_dataset  # noqa: E402


@pytest.fixture(scope="module")
def jax():
    return pytest.importorskip("jax")


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


def _npy_bytes(array: np.ndarray) -> bytes:
    import io
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def _npz_bytes(compressed: bool, **arrays: np.ndarray) -> bytes:
    import io
    out = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(out, **arrays)
    return out.getvalue()


@pytest.fixture
def npy_tree(tmp_path):
    """10 arrays of shape (3, 4) whose every element is the sample number,
    plus a .txt the pattern must skip; returns (prefix, {uri: array})."""
    root = tmp_path / "npy"
    arrays = {f"file://{root}/s-{i:02d}.npy": np.full((3, 4), i, dtype=np.float32)
              for i in range(10)}
    s3dlio.put_many([(uri, _npy_bytes(a)) for uri, a in arrays.items()])
    s3dlio.put(f"file://{root}/readme.txt", b"not an array")
    return f"file://{root}/", arrays


def _ids(batches) -> list:
    """Sample numbers, in order, of the npy_tree batches."""
    return [int(sample[0, 0]) for batch in batches for sample in batch]


# -- JAX: decoding and batch shapes ------------------------------------------------------------

def test_npy_batches_stack_and_equal_np_load(npy_tree, tmp_path):
    prefix, arrays = npy_tree
    loader = S3JaxIterable(prefix, pattern="*.npy", batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 == len(batches)
    assert [b.shape for b in batches] == [(4, 3, 4), (4, 3, 4), (2, 3, 4)]
    assert all(b.dtype == np.float32 for b in batches)
    expected = [np.load(uri[len("file://"):]) for uri in sorted(arrays)]
    np.testing.assert_array_equal(np.concatenate(batches), np.stack(expected))
    dropped = S3JaxIterable(prefix, pattern="*.npy", batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [b.shape[0] for b in dropped] == [4, 4]
    assert JaxIterable is S3JaxIterable


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_batches_are_dicts_equal_to_np_load(tmp_path, compressed):
    root = tmp_path / "npz"
    paths = []
    for i in range(5):
        data = _npz_bytes(compressed, x=np.arange(6, dtype=np.int64).reshape(2, 3) + i,
                          y=np.array(i, dtype=np.int32), z=np.linspace(0, i, 7))
        s3dlio.put(f"file://{root}/e-{i}.npz", data)
        paths.append(root / f"e-{i}.npz")
    batches = list(S3JaxIterable(f"file://{root}/", batch_size=3))
    assert [sorted(b) for b in batches] == [["x", "y", "z"]] * 2
    assert batches[0]["x"].shape == (3, 2, 3) and batches[1]["x"].shape == (2, 2, 3)
    assert batches[0]["y"].shape == (3,) and batches[0]["y"].dtype == np.int32
    for key in "xyz":
        got = np.concatenate([b[key] for b in batches])
        with_np = np.stack([np.load(p)[key] for p in paths])
        np.testing.assert_array_equal(got, with_np)


def test_other_objects_are_lists_of_bytes(tmp_path):
    root = tmp_path / "raw"
    payloads = {f"file://{root}/r-{i}.bin": bytes([i]) * i for i in range(5)}
    s3dlio.put_many(payloads.items())
    batches = list(S3JaxIterable(f"file://{root}/", batch_size=2))
    assert all(isinstance(b, list) for b in batches)
    assert [x for b in batches for x in b] == [payloads[u] for u in sorted(payloads)]
    # decode="bytes" keeps even a .npy as its bytes.
    s3dlio.put(f"file://{root}/a.npy", _npy_bytes(np.zeros(2)))
    (raw,) = list(S3JaxIterable(f"file://{root}/", pattern="*.npy", decode="bytes"))
    assert raw == [_npy_bytes(np.zeros(2))]


def test_decode_function_results_are_collated_like_pytrees(npy_tree):
    prefix, _ = npy_tree

    def decode(uri: str, data) -> tuple:
        return np.frombuffer(data.memoryview(), dtype=np.uint8)[:4].copy(), len(uri)

    images, lengths = next(iter(S3JaxIterable(prefix, pattern="*.npy", batch_size=3,
                                              decode=decode)))
    assert images.shape == (3, 4) and images.dtype == np.uint8
    assert lengths.shape == (3,) and lengths.dtype.kind == "i"


def test_mismatched_shapes_raise_naming_both_uris(tmp_path):
    root = tmp_path / "ragged"
    s3dlio.put(f"file://{root}/a.npy", _npy_bytes(np.zeros((2, 2), np.float32)))
    s3dlio.put(f"file://{root}/b.npy", _npy_bytes(np.zeros((3, 2), np.float32)))
    s3dlio.put(f"file://{root}/c.npy", _npy_bytes(np.zeros((2, 2), np.float64)))
    with pytest.raises(s3dlio.InvalidArgumentError) as info:
        list(S3JaxIterable(f"file://{root}/", batch_size=2))
    assert info.value.code == "BatchMismatch"
    assert f"{root}/a.npy" in str(info.value) and f"{root}/b.npy" in str(info.value)
    assert "(3, 2)" in str(info.value)
    with pytest.raises(s3dlio.InvalidArgumentError, match="float64"):
        list(S3JaxIterable(f"file://{root}/", pattern="[ac].npy", batch_size=2))
    # a .npy and a raw object cannot share a batch either
    s3dlio.put(f"file://{root}/d.bin", b"x")
    with pytest.raises(s3dlio.InvalidArgumentError, match="d.bin"):
        list(S3JaxIterable(f"file://{root}/", pattern="[cd].*", batch_size=2))


def test_device_put_takes_the_batches(jax, npy_tree, tmp_path):
    prefix, _ = npy_tree
    batch = next(iter(S3JaxIterable(prefix, pattern="*.npy", batch_size=4)))
    on_device = jax.device_put(batch)
    assert on_device.shape == (4, 3, 4)
    np.testing.assert_array_equal(np.asarray(on_device), batch)
    s3dlio.put(f"file://{tmp_path}/z/one.npz", _npz_bytes(False, a=np.ones(3), b=np.zeros(2)))
    tree = jax.device_put(next(iter(S3JaxIterable(f"file://{tmp_path}/z/"))))
    assert tree["a"].shape == (1, 3) and tree["b"].shape == (1, 2)


# -- JAX: epochs, shuffle, sharding -----------------------------------------------------------

def test_every_sample_once_per_epoch_and_epochs_reshuffle(npy_tree):
    prefix, _ = npy_tree
    loader = S3JaxIterable(prefix, pattern="*.npy", batch_size=3, shuffle=True, seed=5)
    assert loader.epoch == 0
    epochs = [_ids(loader) for _ in range(3)]
    assert loader.epoch == 3
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert len({tuple(e) for e in epochs}) == 3
    again = S3JaxIterable(prefix, pattern="*.npy", batch_size=3, shuffle=True, seed=5)
    assert [_ids(again) for _ in range(3)] == epochs
    again.set_epoch(1)  # pins the epoch, as DistributedSampler's does
    assert _ids(again) == epochs[1] and again.epoch == 1 and _ids(again) == epochs[1]
    resumed = S3JaxIterable(prefix, pattern="*.npy", batch_size=3, shuffle=True, seed=5, epoch=2)
    assert _ids(resumed) == epochs[2] and resumed.epoch == 3
    other_seed = S3JaxIterable(prefix, pattern="*.npy", batch_size=3, shuffle=True, seed=6)
    assert _ids(other_seed) != epochs[0]
    plain = S3JaxIterable(prefix, pattern="*.npy", batch_size=3)
    assert _ids(plain) == _ids(plain) == list(range(10))


def test_ranks_get_disjoint_equal_shares(npy_tree):
    prefix, _ = npy_tree
    shares = []
    for rank in range(3):
        loader = S3JaxIterable(prefix, pattern="*.npy", batch_size=2, shuffle=True, seed=1,
                               rank=rank, world_size=3)
        assert len(loader) == 2  # 10 // 3 = 3 samples: batches of 2 and 1
        shares.append(_ids(loader))
    assert [len(s) for s in shares] == [3, 3, 3]
    assert len(set().union(*shares)) == 9


def test_bad_arguments_raise_invalid_option(npy_tree):
    prefix, _ = npy_tree
    for kwargs in ({"decode": "jpeg"}, {"rank": 3, "world_size": 3}, {"world_size": 0},
                   {"batch_size": 0}, {"prefetch": -1}, {"epoch": -1}):
        with pytest.raises(s3dlio.InvalidArgumentError) as info:
            S3JaxIterable(prefix, **kwargs)
        assert info.value.code == "InvalidOption", kwargs


def test_empty_prefix_and_unmatched_pattern_give_no_batches(tf, npy_tree, tmp_path):
    prefix, _ = npy_tree
    empty = f"file://{tmp_path}/nothing-here/"
    for uri, pattern in ((empty, None), (prefix, "*.nothing")):
        loader = S3JaxIterable(uri, pattern=pattern)
        assert len(loader) == 0 and list(loader) == []
        assert list(make_tf_dataset(uri, pattern=pattern)) == []
        assert list(make_tf_dataset(uri, pattern=pattern, batch_size=None)) == []


# -- TensorFlow --------------------------------------------------------------------------------

def _write_tfrecords(tf, path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)


def _example(tf, i: int) -> bytes:
    feature = {"id": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
               "blob": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x" * (i * 37)]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture
def tfrecord_tree(tf, tmp_path):
    """Three TFRecord files written by TF (one of them with an empty record),
    a .txt beside them; returns (prefix, [paths in listing order])."""
    root = tmp_path / "tfr"
    paths = []
    for f, count in enumerate((7, 1, 12)):
        path = root / f"part-{f}.tfrecord"
        records = [_example(tf, 100 * f + i) for i in range(count)]
        if f == 2:
            records[4] = b""
        _write_tfrecords(tf, path, records)
        paths.append(path)
    (root / "notes.txt").write_bytes(b"notes")
    return f"file://{root}/", paths


def _tf_reference(tf, paths) -> list:
    return [r.numpy() for r in tf.data.TFRecordDataset([str(p) for p in paths])]


def test_records_equal_tfrecorddataset(tf, tfrecord_tree):
    prefix, paths = tfrecord_tree
    reference = _tf_reference(tf, paths)
    assert len(reference) == 20
    unbatched = make_tf_dataset(prefix, pattern="*.tfrecord", batch_size=None)
    assert unbatched.element_spec == tf.TensorSpec([], tf.string)
    assert [r.numpy() for r in unbatched] == reference
    batched = list(make_tf_dataset(prefix, pattern="*.tfrecord", batch_size=8))
    assert [b.shape[0] for b in batched] == [8, 8, 4]
    assert [r for b in batched for r in b.numpy().tolist()] == reference
    dropped = make_tf_dataset(prefix, pattern="*.tfrecord", batch_size=8, drop_last=True)
    assert dropped.element_spec.shape == [8] and len(list(dropped)) == 2
    # Small windows and no read-ahead cut the files differently; same records.
    narrow = make_tf_dataset(prefix, pattern="*.tfrecord", batch_size=3, max_in_flight=1,
                             prefetch=0)
    assert [r for b in narrow for r in b.numpy().tolist()] == reference


def test_index_offsets_agree_with_tf_reader(tf, tfrecord_tree, tmp_path):
    _, paths = tfrecord_tree
    for path in paths:
        reference = _tf_reference(tf, [path])
        index = tmp_path / (path.name + ".idx")
        assert create_tfrecord_index(str(path), str(index)) == len(reference)
        entries = get_tfrecord_index_entries(str(index))
        raw = path.read_bytes()
        offset = 0
        for entry, record in zip(entries, reference, strict=True):
            assert entry == {"offset": offset, "size": len(record) + 16}
            assert raw[offset + 12:offset + 12 + len(record)] == record
            offset += entry["size"]
        assert offset == len(raw)
        assert [bytes(r) for r in s3dlio.read_tfrecord_records(str(path), entries)] == reference


def test_other_objects_are_whole_strings(tf, tfrecord_tree):
    prefix, paths = tfrecord_tree
    whole = [r.numpy() for r in make_tf_dataset(prefix, batch_size=None, record_format="bytes")]
    assert whole == [b"notes"] + [p.read_bytes() for p in paths]  # listing order
    mixed = [r.numpy() for r in make_tf_dataset(prefix, batch_size=None)]
    assert mixed == [b"notes"] + _tf_reference(tf, paths)


def test_tf_shuffle_per_iteration_and_seed(tf, tfrecord_tree):
    prefix, paths = tfrecord_tree
    reference = _tf_reference(tf, paths)

    def epochs(ds, n=3):
        return [[r for b in ds for r in b.numpy().tolist()] for _ in range(n)]

    shuffled = epochs(make_tf_dataset(prefix, pattern="*.tfrecord", batch_size=5,
                                      shuffle=True, seed=9, max_in_flight=2))
    assert all(sorted(e) == sorted(reference) for e in shuffled)
    assert len({tuple(e) for e in shuffled}) == 3 and tuple(reference) not in shuffled
    assert epochs(make_tf_dataset(prefix, pattern="*.tfrecord", batch_size=5, shuffle=True,
                                  seed=9, max_in_flight=2)) == shuffled
    resumed = make_tf_dataset(prefix, pattern="*.tfrecord", batch_size=5, shuffle=True, seed=9,
                              max_in_flight=2, epoch=2)
    assert epochs(resumed, 1) == shuffled[2:]
    assert epochs(make_tf_dataset(prefix, pattern="*.tfrecord", batch_size=5, shuffle=True,
                                  seed=10, max_in_flight=2), 1) != shuffled[:1]
    # repeat() iterates the generator again: the next epoch, not a replay.
    twice = make_tf_dataset(prefix, pattern="*.tfrecord", batch_size=None, shuffle=True,
                            seed=9).repeat(2)
    records = [r.numpy() for r in twice]
    assert sorted(records[:20]) == sorted(records[20:]) and records[:20] != records[20:]


def test_corrupt_tfrecord_names_uri_and_offset(tf, tmp_path):
    path = tmp_path / "bad" / "x.tfrecord"
    records = [b"a" * 10, b"b" * 20, b"c" * 30]
    _write_tfrecords(tf, path, records)
    raw = bytearray(path.read_bytes())
    second = 10 + 16
    raw[second + 12 + 5] ^= 0xFF  # a payload byte of record 1
    path.write_bytes(bytes(raw))
    uri = f"file://{path}"
    with pytest.raises(tf.errors.OpError) as info:
        list(make_tf_dataset(uri, batch_size=None))
    message = info.value.message
    assert "StorageIOError" in message and uri in message
    assert f"offset {second}" in message and "data CRC mismatch" in message
    # the s3dlio error itself, where no TF wraps it
    with pytest.raises(s3dlio.StorageIOError) as direct:
        s3dlio.read_tfrecord_records(uri)
    assert direct.value.code == "CorruptRecord"
    path.write_bytes(bytes(raw[:second + 7]))  # cut inside record 1's header
    with pytest.raises(tf.errors.OpError, match=f"offset {second}: truncated length header"):
        list(make_tf_dataset(uri, batch_size=None))


def test_bad_tf_arguments(tf, tfrecord_tree):
    prefix, _ = tfrecord_tree
    for kwargs in ({"record_format": "csv"}, {"batch_size": 0}, {"rank": 1},
                   {"max_in_flight": 0}, {"epoch": -1}):
        with pytest.raises(s3dlio.InvalidArgumentError):
            make_tf_dataset(prefix, **kwargs)


# -- every backend -----------------------------------------------------------------------------

def test_round_trip_on_every_backend(tf, backend, tmp_path):
    arrays = [np.arange(6, dtype=np.int16).reshape(2, 3) * i for i in range(3)]
    s3dlio.put_many([(backend.uri(f"arr/{i}.npy"), _npy_bytes(a)) for i, a in enumerate(arrays)])
    local = tmp_path / "one.tfrecord"
    records = [b"first", b"", b"third record"]
    _write_tfrecords(tf, local, records)
    s3dlio.put(backend.uri("rec/one.tfrecord"), local.read_bytes())

    batches = list(S3JaxIterable(backend.uri("arr/"), batch_size=2, shuffle=True, seed=3))
    assert [b.shape for b in batches] == [(2, 2, 3), (1, 2, 3)]
    assert sorted(int(a[1, 2]) for b in batches for a in b) == [0, 5, 10]
    got = [r.numpy() for r in make_tf_dataset(backend.uri("rec/"), batch_size=None)]
    assert got == records
