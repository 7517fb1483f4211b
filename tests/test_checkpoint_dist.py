"""Distributed checkpoints: shards saved by real torch.distributed (gloo)
ranks, the manifest written by rank 0 only over complete shards, and loads
checked against the manifest."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import s3dlio
from s3dlio.checkpoint import save_checkpoint
from s3dlio.checkpoint_dist import (MANIFEST_NAME, finalize_distributed_checkpoint,
                                    load_distributed, read_manifest, save_distributed_shard)
from s3dlio.errors import CheckpointError

HERE = Path(__file__).resolve().parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_ranks(base: str, world: int, die: int = -1) -> list:
    port = _port()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    args = [str(die)] if die >= 0 else []
    procs = [subprocess.Popen([sys.executable, str(HERE / "_ckpt_dist_worker.py"), str(r),
                               str(world), str(port), base, *args], env=env,
                              stderr=subprocess.PIPE, text=True) for r in range(world)]
    try:
        return [(p.wait(timeout=150), p.stderr.read() if p.stderr else "") for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def _equal(a, b) -> bool:
    import torch
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("world", [2, 3])
def test_gloo_ranks_save_and_rank0_finalizes(moto_s3, world):
    pytest.importorskip("torch")
    sys.path.insert(0, str(HERE))
    from _ckpt_dist_worker import shard
    bucket = f"ckpt-dist-{world}"
    s3dlio.create_bucket(bucket)
    base = f"s3://{bucket}/checkpoints/"
    outcomes = _run_ranks(base, world)
    assert [code for code, _ in outcomes] == [0] * world, outcomes
    manifest = read_manifest(base)
    assert manifest["world_size"] == world
    assert [s["uri"] for s in manifest["shards"]] == [f"{base}shard_{r}.bin" for r in range(world)]
    shards = load_distributed(base)
    assert all(_equal(shards[r], shard(r)) for r in range(world))
    assert _equal(load_distributed(base, rank=world - 1), shard(world - 1))
    assert not [u for u in s3dlio.list(base) if "/.s3dlio-shards/" in u]  # receipts consumed


@pytest.mark.timeout(240)
def test_a_rank_that_dies_before_saving_fails_finalize(moto_s3):
    pytest.importorskip("torch")
    s3dlio.create_bucket("ckpt-dist-die")
    base = "s3://ckpt-dist-die/checkpoints/"
    outcomes = _run_ranks(base, 3, die=1)
    assert outcomes[1][0] == 3
    assert outcomes[0][0] == 4
    assert "rank(s) [1]" in outcomes[0][1], outcomes[0][1]
    assert not s3dlio.exists(base + MANIFEST_NAME)
    with pytest.raises(CheckpointError, match="finalize_distributed_checkpoint"):
        load_distributed(base)


@pytest.fixture(params=["file", "s3"])
def base(request, tmp_path):
    if request.param == "s3":
        request.getfixturevalue("moto_s3")
        s3dlio.create_bucket("ckpt-dist-inproc")
        return f"s3://ckpt-dist-inproc/{tmp_path.name}/"
    return f"file://{tmp_path}/ck/"


def _save_all(base: str, world: int, tag: int = 0) -> None:
    import numpy as np
    for rank in range(world):
        save_distributed_shard(f"{base}shard_{rank}.bin",
                               {"rank": rank, "tag": tag, "a": np.full(10, rank + tag)}, rank, world)


def test_reusing_a_base_never_counts_an_old_shard(base):
    _save_all(base, 3, tag=1)
    finalize_distributed_checkpoint(base, 3)
    save_distributed_shard(f"{base}shard_0.bin", {"rank": 0, "tag": 2}, 0, 3)
    save_distributed_shard(f"{base}shard_2.bin", {"rank": 2, "tag": 2}, 2, 3)
    with pytest.raises(CheckpointError, match=r"rank\(s\) \[1\]") as missing:
        finalize_distributed_checkpoint(base, 3)
    assert missing.value.code == "MissingShards"


def test_a_checkpoint_id_keeps_an_unfinalized_save_out(base):
    """Step 100 was saved by every rank but never finalized; in step 200
    rank 1 dies.  With ids, step 100's rank-1 shard cannot stand in."""
    import numpy as np
    for rank in range(3):
        save_distributed_shard(f"{base}step-100/shard_{rank}.bin", {"a": np.arange(3)}, rank, 3,
                               checkpoint_id="step-100")
    for rank in (0, 2):
        save_distributed_shard(f"{base}step-200/shard_{rank}.bin", {"a": np.arange(4)}, rank, 3,
                               checkpoint_id="step-200")
    with pytest.raises(CheckpointError, match=r"rank\(s\) \[1\]"):
        finalize_distributed_checkpoint(base, 3, checkpoint_id="step-200")
    manifest = finalize_distributed_checkpoint(base, 3, checkpoint_id="step-100")
    assert manifest["checkpoint_id"] == "step-100"
    assert [s["uri"] for s in manifest["shards"]] == [f"{base}step-100/shard_{r}.bin"
                                                      for r in range(3)]


def test_a_shard_replaced_after_its_receipt_fails_finalize(base):
    _save_all(base, 2)
    save_checkpoint(f"{base}shard_1.bin", {"rank": 1, "other": "save"})
    with pytest.raises(CheckpointError, match="rank 1") as damaged:
        finalize_distributed_checkpoint(base, 2)
    assert damaged.value.code == "DamagedShards"
    assert not s3dlio.exists(base + MANIFEST_NAME)


def test_full_verify_finds_a_flipped_byte(base, tmp_path):
    _save_all(base, 2)
    target = f"{base}shard_0.bin"
    data = bytearray(bytes(s3dlio.get(target)))
    data[-3] ^= 0xFF  # inside the last blob: the header still parses
    s3dlio.put(target, bytes(data))
    with pytest.raises(CheckpointError, match="rank 0") as damaged:
        finalize_distributed_checkpoint(base, 2, verify="full")
    assert damaged.value.code == "DamagedShards"
    # The default check reads headers only: it passes, and the flip is
    # left for load_checkpoint's CRC32C check to find.
    assert finalize_distributed_checkpoint(base, 2)["verified"] == "header"
    with pytest.raises(CheckpointError):
        load_distributed(base, rank=0)


def test_a_shard_changed_after_finalize_fails_its_load(base):
    _save_all(base, 2)
    finalize_distributed_checkpoint(base, 2)
    assert load_distributed(base, rank=1)["tag"] == 0
    save_checkpoint(f"{base}shard_1.bin", {"rank": 1, "tag": 99})
    assert load_distributed(base, rank=0)["rank"] == 0
    with pytest.raises(CheckpointError, match="changed after the checkpoint was finalized"):
        load_distributed(base, rank=1)


def test_bad_arguments_and_manifests(base):
    with pytest.raises(CheckpointError):
        save_distributed_shard(f"{base}x.bin", {}, 2, 2)
    with pytest.raises(CheckpointError):
        finalize_distributed_checkpoint(base, 0)
    s3dlio.put(base + MANIFEST_NAME, b"{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_manifest(base)
    s3dlio.put(base + MANIFEST_NAME, json.dumps({"format": "other"}).encode())
    with pytest.raises(CheckpointError, match="not an s3dlio"):
        read_manifest(base)


def test_load_checkpoint_routes_a_base_uri(base):
    _save_all(base, 2, tag=5)
    s3dlio.finalize_distributed_checkpoint(base, 2)
    shards = s3dlio.load_checkpoint(base)
    assert [s["rank"] for s in shards] == [0, 1] and all(s["tag"] == 5 for s in shards)
    assert s3dlio.load_checkpoint(base, rank=1)["rank"] == 1
    assert s3dlio.load_checkpoint(base.rstrip("/"), rank=0)["rank"] == 0  # without its '/'
    assert s3dlio.load_checkpoint(f"{base}shard_1.bin")["rank"] == 1  # a shard is a checkpoint
    with pytest.raises(CheckpointError, match="rank= selects"):
        s3dlio.load_checkpoint(f"{base}shard_1.bin", rank=1)
    with pytest.raises(s3dlio.NotFoundError):
        s3dlio.load_checkpoint(f"{base}missing.bin")
