"""Single-object checkpoints: exact round trips on every backend (a real
torch model and optimizer, every dtype, numpy structures, compressed or
not), safetensors compatibility, corruption and malformed headers caught,
create-only saves racing, and saves killed part-way leaving the previous
checkpoint loadable."""
from __future__ import annotations

import collections
import json
import math
import os
import random
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import s3dlio
from s3dlio.checkpoint import (load_checkpoint, load_checkpoint_with_validation,
                               remove_checkpoint_debris, save_checkpoint)
from s3dlio.errors import AlreadyExistsError, CheckpointError

MiB = 1 << 20
WORKER = Path(__file__).resolve().parent / "_ckpt_kill_worker.py"


# ---- helpers -------------------------------------------------------------------

def assert_same(expected, actual, where="data"):
    """Bit-exact equality with exact types, dict order included."""
    assert type(actual) is type(expected), f"{where}: {type(actual)} != {type(expected)}"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(expected, torch.Tensor):
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, where
        def flat(t):
            return t.detach().resolve_conj().contiguous().reshape(-1).view(torch.uint8)
        assert torch.equal(flat(actual), flat(expected)), where
    elif isinstance(expected, (np.ndarray, np.generic)):
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, where
        assert np.ascontiguousarray(actual).tobytes() == \
            np.ascontiguousarray(expected).tobytes(), where
    elif isinstance(expected, dict):
        assert list(actual) == list(expected), where
        for key in expected:
            assert_same(expected[key], actual[key], f"{where}[{key!r}]")
        assert getattr(actual, "_metadata", None) == getattr(expected, "_metadata", None)
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for i, (a, b) in enumerate(zip(expected, actual)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual), where
    else:
        assert actual == expected, where


def torch_data():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 32),
                                torch.nn.LayerNorm(32), torch.nn.Linear(32, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.tensor([[1, 2, 3]])).sum().backward()
    optimizer.step()
    dtypes = [torch.float32, torch.float16, torch.float64, torch.bfloat16, torch.int8,
              torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64,
              torch.complex128, torch.float8_e4m3fn, torch.float8_e5m2]
    every = {str(dt): (torch.randn(3, 5) * 50).to(dt) for dt in dtypes}
    every["scalar"] = torch.tensor(7.5, dtype=torch.bfloat16)
    every["empty"] = torch.zeros(0, 3)
    every["non_contiguous"] = torch.arange(24.0).reshape(4, 6).t()[1:, ::2]
    shared = torch.ones(4)
    return {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3,
        "dtypes": every, "tied": [shared, shared], "loss": 0.125,
        "numpy": {"a": np.arange(12, dtype=">f8").reshape(3, 4), "s": np.int16(-4)},
    }


def numpy_data():
    return collections.OrderedDict([
        ("arrays", [np.arange(10, dtype=np.float32), np.eye(3), np.zeros((2, 0)),
                    np.array([True, False]), np.array(["ab", "c"]),
                    np.ones(3, np.complex128), np.asfortranarray(np.arange(6).reshape(2, 3))]),
        ("scalars", (np.float64(2.5), np.uint64(2**64 - 1), np.bool_(True))),
        ("python", {1: "int key", (2, "x"): None, 2.5: [b"bytes", bytearray(b"ba")],
                    "big": 2**100, "nan": float("nan"), "inf": -float("inf"), "t": True}),
        ("long_text", "x" * 300_000),  # a header longer than the first read
    ])


def read_header(path):
    raw = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + length]), raw[8 + length:]


def write_header(path, header, data, raw_length=None):
    text = json.dumps(header).encode()
    length = len(text) if raw_length is None else raw_length
    Path(path).write_bytes(struct.pack("<Q", length) + text + data)


# ---- round trips -----------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True], ids=["raw", "zstd"])
def test_torch_round_trip_on_every_backend(backend, compress):
    data = torch_data()
    data["long_text"] = "y" * 300_000
    uri = backend.uri("ckpt/model.ckpt")
    result = save_checkpoint(uri, data, compress)
    assert result["compressed_size"] == s3dlio.stat(uri)["size"]
    loaded = load_checkpoint(uri)
    assert_same(data, loaded)
    assert loaded["tied"][0] is loaded["tied"][1]  # tied weights stay tied
    assert loaded["model"]["1.weight"].is_contiguous()


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "zstd"])
def test_numpy_round_trip_on_every_backend(backend, compress):
    data = numpy_data()
    uri = backend.uri("ckpt/np.ckpt")
    save_checkpoint(uri, data, compress)
    assert_same(data, load_checkpoint(uri))


def test_a_real_model_resumes_from_the_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    data = torch_data()
    uri = f"file://{tmp_path}/m.ckpt"
    save_checkpoint(uri, data)
    loaded = load_checkpoint(uri, map_location="cpu")
    model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 32),
                                torch.nn.LayerNorm(32), torch.nn.Linear(32, 4))
    model.load_state_dict(loaded["model"])
    optimizer = torch.optim.Adam(model.parameters())
    optimizer.load_state_dict(loaded["optimizer"])
    assert optimizer.state_dict()["param_groups"] == data["optimizer"]["param_groups"]


def test_big_blobs_are_read_straight_and_in_pieces(tmp_path):
    data = {"big": np.random.default_rng(0).random(3 * 1024 * 1024 // 8 * 3),  # > one piece
            "small": [np.arange(i) for i in range(40)]}
    for scheme in ("file", "direct"):
        uri = f"{scheme}://{tmp_path}/big-{scheme}.ckpt"
        save_checkpoint(uri, data, part_size=4 * MiB)
        assert_same(data, load_checkpoint(uri))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(),
              st.binary(), hnp.arrays(hnp.scalar_dtypes(), hnp.array_shapes(min_dims=0, max_dims=3,
                                                                           min_side=0, max_side=4)),
              hnp.from_dtype(np.dtype("f4")).map(np.float32)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.lists(children, max_size=4).map(tuple),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12))
def test_hypothesis_round_trip(tmp_path, value):
    uri = f"file://{tmp_path}/h.ckpt"
    save_checkpoint(uri, value, fsync=False)
    assert_same(value, load_checkpoint(uri))


def test_numpy_only_without_torch(tmp_path):
    # A process where `import torch` fails still saves and loads arrays.
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from s3dlio.checkpoint import save_checkpoint, load_checkpoint\n"
        f"uri = 'file://{tmp_path}/n.ckpt'\n"
        "save_checkpoint(uri, {'a': np.arange(5)})\n"
        "assert (load_checkpoint(uri)['a'] == np.arange(5)).all()\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_unsupported_values_are_refused(tmp_path):
    uri = f"file://{tmp_path}/bad.ckpt"
    for value, where in [({"a": {1, 2}}, "['a']"), ({"o": np.array([object()])}, "['o']"),
                         ({"k": {frozenset(): 1}}, "['k']")]:
        with pytest.raises(TypeError) as info:
            save_checkpoint(uri, value)
        assert where in str(info.value)
    assert not s3dlio.exists(uri)


# ---- safetensors ---------------------------------------------------------------

def test_safetensors_reads_uncompressed_checkpoints(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    torch = pytest.importorskip("torch")
    import safetensors.torch
    data = torch_data()
    path = tmp_path / "t.ckpt"
    save_checkpoint(f"file://{path}", data)
    tensors = safetensors.torch.load_file(str(path))
    assert torch.equal(tensors["model.1.weight"], data["model"]["1.weight"])
    assert torch.equal(tensors["dtypes.torch.bfloat16"], data["dtypes"]["torch.bfloat16"])
    assert torch.equal(tensors["optimizer.state.0.exp_avg"],
                       data["optimizer"]["state"][0]["exp_avg"])
    arrays = {"w": np.arange(20, dtype=np.float32).reshape(4, 5), "i": np.arange(3),
              "c": np.ones(2, np.complex64)}
    save_checkpoint(f"file://{path}", arrays)
    loaded = safetensors_numpy.load_file(str(path))
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value)
    save_checkpoint(f"file://{path}", arrays, compress=True)
    with pytest.raises(Exception):  # compressed blobs no longer match their shapes
        safetensors_numpy.load_file(str(path))


# ---- corruption and malformed headers ----------------------------------------------

@pytest.mark.parametrize("compress", [False, True], ids=["raw", "zstd"])
def test_a_flipped_byte_names_the_blob(backend, compress):
    data = {"w": np.arange(100_000, dtype=np.float32), "b": np.arange(7)}
    uri = backend.uri("ckpt/flip.ckpt")
    save_checkpoint(uri, data, compress)
    raw = bytearray(s3dlio.get(uri))
    (length,) = struct.unpack("<Q", raw[:8])
    begin, end = json.loads(raw[8:8 + length])["w"]["data_offsets"]
    raw[8 + length + (begin + end) // 2] ^= 0x10
    s3dlio.put(uri, raw)
    with pytest.raises(CheckpointError, match="'w'") as info:
        load_checkpoint(uri)
    assert info.value.code == "ChecksumMismatch" and info.value.blob == "w"
    assert info.value.uri == uri and uri in str(info.value)
    with pytest.raises(CheckpointError, match="'w'"):
        load_checkpoint_with_validation(uri, ["w"])
    if not compress:
        assert load_checkpoint(uri, verify=False)["b"].tolist() == list(range(7))


def _mutations():
    def entry(name, **changes):
        def mutate(header, data):
            header[name].update(changes)
            return header, data
        return mutate

    def meta(key, value):
        def mutate(header, data):
            header["__metadata__"][key] = value
            return header, data
        return mutate

    def tree(change):
        def mutate(header, data):
            nodes = json.loads(header["__metadata__"]["tree"])
            change(nodes)
            header["__metadata__"]["tree"] = json.dumps(nodes)
            return header, data
        return mutate

    def first_value(nodes):
        return nodes["v"][0]

    return {
        "out_of_range": entry("a", data_offsets=[1 << 40, (1 << 40) + 64]),
        "overlap": entry("b", data_offsets=[0, 16]),
        "negative": entry("a", data_offsets=[-8, 0]),
        "unknown_dtype": entry("a", dtype="F128"),
        "shape_mismatch": entry("a", shape=[3, 3]),
        "huge_shape": entry("a", shape=[1 << 40, 1 << 40]),
        "bad_shape": entry("a", shape="big"),
        "no_metadata": lambda h, d: ({k: v for k, v in h.items() if k != "__metadata__"}, d),
        "other_format": meta("format", "pt"),
        "newer_version": meta("version", "9"),
        "bad_tree_json": meta("tree", "{"),
        "bad_crc": meta("blobs", "[]"),
        "missing_blob": tree(lambda n: first_value(n).update(b="nope")),
        "object_dtype": tree(lambda n: first_value(n).update(dtype="|O")),
        "tree_shape": tree(lambda n: first_value(n).update(shape=[1000])),
        "unknown_node": tree(lambda n: first_value(n).update(t="pickle")),
        "deep_tree": meta("tree", '{"t":"list","v":[' * 5000 + "]}" * 5000),
        "trailing_bytes": lambda h, d: (h, d + b"x"),
        "truncated": lambda h, d: (h, d[:-1]),
    }


@pytest.mark.parametrize("case", sorted(_mutations()))
def test_malformed_headers_raise_checkpoint_error(tmp_path, case):
    path = tmp_path / "m.ckpt"
    uri = f"file://{path}"
    save_checkpoint(uri, {"a": np.arange(8, dtype=np.int64), "b": np.arange(4, dtype=np.int32)})
    header, data = read_header(path)
    write_header(path, *_mutations()[case](header, data))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(uri)
    assert info.value.uri == uri


@pytest.mark.parametrize("length, body", [(1 << 62, b"{}"), (10**9, b"{}"), (100, b"{}"),
                                          (0, b""), (4, b"null")], ids=str)
def test_bad_header_lengths(tmp_path, length, body):
    path = tmp_path / "l.ckpt"
    path.write_bytes(struct.pack("<Q", length) + body)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(f"file://{path}")
    path.write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="only 3 bytes"):
        load_checkpoint(f"file://{path}")


def test_compressed_size_lies_are_caught(tmp_path):
    path = tmp_path / "z.ckpt"
    save_checkpoint(f"file://{path}", {"a": np.zeros(1000)}, compress=True)
    header, data = read_header(path)
    header["a"]["shape"] = [1 << 45]  # the frame says 8000 bytes
    tree = json.loads(header["__metadata__"]["tree"])
    tree["v"][0]["shape"] = [1 << 45]
    header["__metadata__"]["tree"] = json.dumps(tree)
    write_header(path, header, data)
    with pytest.raises(CheckpointError):
        load_checkpoint(f"file://{path}")


def test_validation_names_missing_keys(tmp_path):
    uri = f"file://{tmp_path}/v.ckpt"
    save_checkpoint(uri, {"epoch": 1, "model": {}})
    assert load_checkpoint_with_validation(uri, ["epoch", "model"])["epoch"] == 1
    with pytest.raises(CheckpointError, match="optimizer") as info:
        load_checkpoint_with_validation(uri, ["epoch", "optimizer"])
    assert info.value.code == "MissingKeys"
    save_checkpoint(uri, [1, 2])
    with pytest.raises(CheckpointError, match="list"):
        load_checkpoint_with_validation(uri, ["epoch"])
    with pytest.raises(s3dlio.NotFoundError):
        load_checkpoint(f"file://{tmp_path}/missing.ckpt")


# ---- atomicity --------------------------------------------------------------------

def test_create_only_keeps_the_existing_checkpoint(backend):
    uri = backend.uri("ckpt/once.ckpt")
    save_checkpoint(uri, {"v": 1}, overwrite=False)
    with pytest.raises(AlreadyExistsError):
        save_checkpoint(uri, {"v": 2}, overwrite=False)
    assert load_checkpoint(uri) == {"v": 1}
    save_checkpoint(uri, {"v": 3})
    assert load_checkpoint(uri) == {"v": 3}


@pytest.mark.parametrize("size", [1000, 12 * MiB], ids=["single", "multipart"])
def test_racing_create_only_saves_one_wins(backend, size):
    if backend.name not in ("file", "s3"):
        pytest.skip("raced on file:// and s3:// (the other stores use the same preconditions)")
    if backend.name == "s3" and size > 5 * MiB:
        pytest.skip("moto checks If-None-Match on CompleteMultipartUpload without a lock, so "
                    "two completes at once both succeed; S3 itself makes the check atomic")
    for round_ in range(3):
        uri = backend.uri(f"ckpt/race-{round_}.ckpt")
        outcomes: dict = {}

        def save(who):
            try:
                save_checkpoint(uri, {"who": who, "pad": np.full(size // 8, who, np.int64)},
                                overwrite=False, part_size=5 * MiB)
                outcomes[who] = "won"
            except AlreadyExistsError:
                outcomes[who] = "lost"

        threads = [threading.Thread(target=save, args=(who,)) for who in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(outcomes.values()) == ["lost", "won"], outcomes
        winner = [who for who, outcome in outcomes.items() if outcome == "won"][0]
        loaded = load_checkpoint(uri)
        assert loaded["who"] == winner and (loaded["pad"] == winner).all()


def _worker_data(seed):
    rng = np.random.default_rng(seed)
    return {"seed": seed, "w": [rng.random(MiB // 8 * 3) for _ in range(8)]}  # 24 MiB


def _expect_a_saved_version(uri, started):
    loaded = load_checkpoint(uri)  # must not raise: saves appear whole or not at all
    assert loaded["seed"] in started
    assert_same(_worker_data(loaded["seed"]), loaded)


@pytest.mark.parametrize("scheme", ["file", "s3"])
def test_killed_saves_leave_the_previous_checkpoint(request, tmp_path, scheme):
    if scheme == "s3":
        request.getfixturevalue("moto_s3")
        bucket = f"kill-{os.getpid()}-{random.randrange(1 << 30)}"
        s3dlio.create_bucket(bucket)
        uri = f"s3://{bucket}/ckpt/k.ckpt"
    else:
        uri = f"file://{tmp_path}/ckpt/k.ckpt"
    began = time.monotonic()
    save_checkpoint(uri, _worker_data(0))
    took = time.monotonic() - began
    started, interrupted = {0}, 0
    rng = random.Random(8)
    deadline = time.monotonic() + 25
    for seed in range(1, 5):
        if time.monotonic() > deadline:
            break
        worker = subprocess.Popen([sys.executable, str(WORKER), uri, str(seed)],
                                  stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == b"saving"  # imports done
        started.add(seed)
        time.sleep(rng.uniform(0.0, took))  # a fresh process saves no faster than we did
        worker.kill()
        interrupted += b"saved" not in worker.stdout.read()
        worker.wait(30)
        worker.stdout.close()
        _expect_a_saved_version(uri, started)
    assert interrupted, "every save finished before its kill: nothing was tested"
    if scheme == "file":
        directory = tmp_path / "ckpt"
        debris = [p.name for p in directory.iterdir() if p.name != "k.ckpt"]
        removed = remove_checkpoint_debris(f"file://{directory}/", older_than=0)
        assert sorted(Path(p).name for p in removed) == sorted(debris)
        assert [p.name for p in directory.iterdir()] == ["k.ckpt"]
    save_checkpoint(uri, _worker_data(99))
    assert load_checkpoint(uri)["seed"] == 99


@pytest.mark.parametrize("direct", [None, False, True])
def test_durable_local_saves_may_go_past_the_page_cache(tmp_path, direct):
    """A durable save of 64 MiB or more to file:// writes with O_DIRECT by
    default (direct=None); the file, its name and its contents are the same
    whichever way it went."""
    uri = f"file://{tmp_path}/big.ckpt"
    data = {"a": np.arange(9 << 20, dtype=np.int64), "b": b"tail", "n": 7}  # 72 MiB
    result = save_checkpoint(uri, data, direct=direct)
    assert result["uri"] == uri
    back = load_checkpoint(uri)
    assert np.array_equal(back["a"], data["a"]) and back["b"] == b"tail" and back["n"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["big.ckpt"]  # no temporary file left
