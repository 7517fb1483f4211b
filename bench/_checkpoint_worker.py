"""One run of one case of bench/checkpoint.py in a process of its own (not
part of the s3dlio package), so its memory high-water mark is that run's
alone.

    python bench/_checkpoint_worker.py SPEC_JSON RESULT_PATH

Before the clock starts the worker imports everything, builds the state_dict
(saves) or an empty destination of the same shapes (DCP loads), makes any
boto3 client, calls ``os.sync()`` when ``spec["sync"]`` (local cases),
collects garbage, resets ``VmHWM`` through ``/proc/self/clear_refs`` and
notes ``VmRSS``.  Only the save or load call is timed; after the clock stops
``VmHWM`` is read (``peak_extra`` = VmHWM - VmRSS before) and every loaded
tensor is compared with a freshly built state_dict (``torch.equal``, dtype,
shape, same keys).

Cases (``spec["case"]``):

  describe            the state_dict's layout only (meta device, no data)
  ckpt-save           s3dlio.save_checkpoint(uri, sd, fsync=spec["fsync"])
  ckpt-load           s3dlio.load_checkpoint(uri)
  torch-save          torch.save(sd, path); with spec["fsync"]: into an open
                      file, flush, os.fsync(file), os.fsync(directory)
  torch-load          torch.load(path, weights_only=True)
  dcp-save            dcp.save(sd, storage_writer=FileSystemWriter(path))
  dcp-load            dcp.load(dest, storage_reader=FileSystemReader(path))
  s3dlio-dcp-save     dcp.save(sd, storage_writer=s3dlio.torch.StorageWriter(uri))
  s3dlio-dcp-load     dcp.load(dest, storage_reader=s3dlio.torch.StorageReader(uri))
  torch-s3-save       torch.save(sd, BytesIO) + boto3 upload_fileobj
  torch-s3-load       boto3 download_fileobj into BytesIO + torch.load(weights_only=True)
"""
from __future__ import annotations

import gc
import io
import json
import math
import os
import resource
import sys
import time
import warnings
from typing import Any, Callable

from _proc import cpu_seconds, reset_hwm, status  # beside this file, so on sys.path[0]

MiB = 1 << 20


# ---- the state_dict ----------------------------------------------------------

def build_model(size: int, seed: int, device: str = "cpu") -> Any:
    """A model of about `size` bytes of parameters and buffers, mixed dtypes:
    a bfloat16 embedding (1/8 of the size), 7 blocks of LayerNorm +
    Linear(h, 4h) + Linear(4h, h) in float32 (1/8 each), a BatchNorm1d
    (float32 running stats, int64 num_batches_tracked) and two int64 buffers.
    Deterministic for a given (size, seed)."""
    import torch
    from torch import nn

    h = max(64, 64 * round(math.sqrt(size / 256) / 64))
    vocab = max(64, 64 * round(size / 8 / (2 * h) / 64))

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(h)
            self.up = nn.Linear(h, 4 * h)
            self.down = nn.Linear(4 * h, h)

    class BenchModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, h).to(torch.bfloat16)
            self.blocks = nn.ModuleList(Block() for _ in range(7))
            self.bn = nn.BatchNorm1d(h)
            self.register_buffer("position_ids", torch.arange(8192, dtype=torch.int64))
            self.register_buffer("token_counts",
                                 torch.randint(0, 1 << 40, (vocab,), dtype=torch.int64))

    torch.manual_seed(seed)
    with torch.device(device):
        model = BenchModel()
    if device == "cpu":
        with torch.no_grad():
            model.bn.running_mean.normal_()
            model.bn.running_var.uniform_(0.5, 2.0)
            model.bn.num_batches_tracked.fill_(12345)
    return model


def state_dict(size: int, seed: int) -> dict:
    return build_model(size, seed).state_dict()


def layout(size: int, seed: int) -> dict:
    sd = build_model(size, seed, device="meta").state_dict()
    by_dtype: dict = {}
    for t in sd.values():
        name = str(t.dtype).replace("torch.", "")
        by_dtype[name] = by_dtype.get(name, 0) + t.nelement() * t.element_size()
    sizes = {k: t.nelement() * t.element_size() for k, t in sd.items()}
    largest = max(sizes, key=sizes.get)
    return {"tensors": len(sd), "data_bytes": sum(sizes.values()), "bytes_by_dtype": by_dtype,
            "largest_tensor": largest, "largest_tensor_bytes": sizes[largest],
            "shapes": {k: [list(t.shape), str(t.dtype)] for k, t in sd.items()}}


def empty_destination(size: int, seed: int) -> dict:
    """What a DCP load fills: tensors of the right shapes, not yet touched
    (torch.empty faults no pages in, so the load pays for them as the others do)."""
    import torch
    sd = build_model(size, seed, device="meta").state_dict()
    return {k: torch.empty(t.shape, dtype=t.dtype) for k, t in sd.items()}


def verify(loaded: Any, size: int, seed: int) -> None:
    import torch
    expected = state_dict(size, seed)
    if not isinstance(loaded, dict) or set(loaded) != set(expected):
        got = sorted(loaded) if isinstance(loaded, dict) else type(loaded).__name__
        raise SystemExit(f"loaded keys differ: {got} vs {sorted(expected)}")
    for k, want in expected.items():
        got = loaded[k]
        if (not isinstance(got, torch.Tensor) or got.dtype != want.dtype
                or got.shape != want.shape or not torch.equal(got, want)):
            raise SystemExit(f"tensor {k!r} differs after the load")


# ---- the cases -----------------------------------------------------------------

def fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _s3dlio_torch() -> Any:
    import s3dlio.torch
    return s3dlio.torch


def boto3_client(spec: dict) -> Any:
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=spec["endpoint"],
                        config=Config(s3={"addressing_style": "path"}))


def prepare(spec: dict) -> tuple[Callable[[], Any], bool]:
    """(the call to time, whether its result is a loaded state_dict)."""
    case = spec["case"]
    size, seed = spec["size"], spec["seed"]
    import torch
    import s3dlio
    if case == "ckpt-save":
        sd = state_dict(size, seed)
        return (lambda: s3dlio.save_checkpoint(spec["uri"], sd, fsync=spec["fsync"])), False
    if case == "ckpt-load":
        return (lambda: s3dlio.load_checkpoint(spec["uri"])), True
    if case == "torch-save":
        sd = state_dict(size, seed)
        path = spec["path"]
        if not spec["fsync"]:
            return (lambda: torch.save(sd, path)), False

        def save_fsync() -> None:
            with open(path, "wb") as f:
                torch.save(sd, f)
                f.flush()
                os.fsync(f.fileno())
            fsync_path(os.path.dirname(path))
        return save_fsync, False
    if case == "torch-load":
        return (lambda: torch.load(spec["path"], weights_only=True)), True
    if case in ("dcp-save", "s3dlio-dcp-save", "dcp-load", "s3dlio-dcp-load"):
        import torch.distributed.checkpoint as dcp
        warnings.filterwarnings("ignore")  # "no process group: running single-process"
        if case.endswith("save"):
            sd = state_dict(size, seed)
            writer = (dcp.FileSystemWriter(spec["path"]) if case == "dcp-save"
                      else _s3dlio_torch().StorageWriter(spec["uri"]))
            return (lambda: dcp.save(sd, storage_writer=writer)), False
        dest = empty_destination(size, seed)
        reader = (dcp.FileSystemReader(spec["path"]) if case == "dcp-load"
                  else _s3dlio_torch().StorageReader(spec["uri"]))

        def dcp_load() -> dict:
            dcp.load(dest, storage_reader=reader)
            return dest
        return dcp_load, True
    if case == "torch-s3-save":
        sd = state_dict(size, seed)
        client = boto3_client(spec)

        def save_s3() -> None:
            buf = io.BytesIO()
            torch.save(sd, buf)
            buf.seek(0)
            client.upload_fileobj(buf, spec["bucket"], spec["key"])
        return save_s3, False
    if case == "torch-s3-load":
        client = boto3_client(spec)

        def load_s3() -> Any:
            buf = io.BytesIO()
            client.download_fileobj(spec["bucket"], spec["key"], buf)
            buf.seek(0)
            return torch.load(buf, weights_only=True)
        return load_s3, True
    raise SystemExit(f"unknown case {case!r}")


def main() -> int:
    spec = json.loads(sys.argv[1])
    out_path = sys.argv[2]
    if spec["case"] == "describe":
        result: dict = layout(spec["size"], spec["seed"])
    else:
        import torch
        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
        call, loads = prepare(spec)
        profiler = None
        if spec.get("profile"):
            import cProfile
            profiler = cProfile.Profile()
        if spec.get("sync"):
            os.sync()  # no writeback of earlier runs while this one is timed
        gc.collect()
        hwm_reset = reset_hwm()
        rss_before = status("VmRSS") or 0
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        value = call()
        if profiler is not None:
            profiler.disable()
        wall = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
        peak = status("VmHWM") or 0
        if profiler is not None:
            profiler.dump_stats(spec["profile"])
        if loads:
            verify(value, spec["size"], spec["seed"])
        del value
        result = {"wall": wall, "cpu": cpu, "rss_before": rss_before, "vm_hwm": peak,
                  "peak_extra": peak - rss_before if hwm_reset else None,
                  "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "verified": loads}
    with open(out_path, "w") as f:
        json.dump(result, f, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
