"""torch.distributed.checkpoint through s3dlio.torch.StorageWriter and
StorageReader, with the real torch on CPU, on every backend."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import torch.distributed.checkpoint as dcp  # noqa: E402

import s3dlio  # noqa: E402
from s3dlio.torch import StorageReader, StorageWriter  # noqa: E402

HERE = Path(__file__).resolve().parent
# DCP warns that it runs without a process group in a single process; that
# is what these tests mean to do.
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


def _model() -> "torch.nn.Module":
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.LayerNorm(8),
                               torch.nn.Embedding(10, 4))


def _state(model) -> dict:
    opt = torch.optim.Adam(model.parameters())
    model[0](torch.ones(2, 16)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 3,
            "half": torch.linspace(0, 1, 9, dtype=torch.bfloat16)}


def _zeroed(state: dict) -> dict:
    def zero(value):
        if isinstance(value, torch.Tensor):
            return torch.zeros_like(value)
        if isinstance(value, dict):
            return {k: zero(v) for k, v in value.items()}
        return value
    return zero(state)


def _assert_equal(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_equal(x, y)
    else:
        assert a == b


def test_dcp_round_trip_on_every_backend(backend):
    uri = backend.uri("dcp/step-3")
    saved = _state(_model())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # DCP: "Detected an existing checkpoint" never here
        dcp.save(saved, storage_writer=StorageWriter(uri))
    names = [u.rsplit("/", 1)[1] for u in s3dlio.list(uri + "/")]
    assert ".metadata" in names and any(n.endswith(".distcp") for n in names)
    assert not any(n.endswith(".tmp") for n in names)
    loaded = _zeroed(saved)
    dcp.load(loaded, storage_reader=StorageReader(uri))
    _assert_equal(saved["model"], loaded["model"])
    _assert_equal(saved["half"], loaded["half"])
    assert loaded["epoch"] == 3


def test_local_checkpoint_reads_with_dcps_own_reader(tmp_path):
    saved = _state(_model())
    dcp.save(saved, storage_writer=StorageWriter(f"file://{tmp_path}/ck"))
    loaded = _zeroed(saved)
    dcp.load(loaded, storage_reader=dcp.FileSystemReader(str(tmp_path / "ck")))
    _assert_equal(saved["model"], loaded["model"])


def test_overwrite_false_refuses_an_existing_checkpoint(tmp_path):
    uri = f"file://{tmp_path}/ck"
    dcp.save({"x": torch.ones(3)}, storage_writer=StorageWriter(uri))
    with pytest.raises(dcp.api.CheckpointException) as refused:
        dcp.save({"x": torch.zeros(3)}, storage_writer=StorageWriter(uri, overwrite=False))
    assert "already exists" in repr(refused.value.failures)
    loaded = {"x": torch.zeros(3)}
    dcp.load(loaded, storage_reader=StorageReader(uri))
    assert torch.equal(loaded["x"], torch.ones(3))


def test_bad_uri_is_rejected_up_front():
    with pytest.raises(s3dlio.InvalidURIError):
        StorageWriter("nope://bucket/ck")
    assert StorageWriter.validate_checkpoint_id("s3://bucket/ck")
    assert not StorageReader.validate_checkpoint_id("/plain/path")


@pytest.mark.timeout(180)
def test_two_ranks_save_and_one_process_loads(moto_s3):
    """Saved by a 2-rank gloo job, loaded by a single process: DCP's planner
    gathers what each rank wrote into the loader's layout."""
    import socket
    s3dlio.create_bucket("dcp-ranks")
    uri = "s3://dcp-ranks/run/step-1"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    procs = [subprocess.Popen([sys.executable, str(HERE / "_dcp_worker.py"), str(r), "2",
                               str(port), uri], env=env) for r in range(2)]
    try:
        assert [p.wait(timeout=150) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    sys.path.insert(0, str(HERE))
    from _dcp_worker import state
    expected = {**state(0), **state(1)}
    loaded = _zeroed(expected)
    loaded["step"] = 0
    dcp.load(loaded, storage_reader=StorageReader(uri))
    _assert_equal(expected, loaded)
    distcp = [u for u in s3dlio.list(uri + "/") if u.endswith(".distcp")]
    assert len(distcp) == 2  # one file per rank
