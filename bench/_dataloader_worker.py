"""One PyTorch dataset under test for one repetition, driven by
bench/dataloader.py (not part of the s3dlio package).

Runs in a fresh process under the Python that has the client installed (our
s3dlio and the PyPI one share a module name), once per repetition, so every
repetition starts DataLoader workers from the same state.  Standard library,
torch and the client only.

    python _dataloader_worker.py SPEC_JSON

prints one JSON line on the file descriptor that was stdout at start (stdout
itself is pointed at stderr, so nothing a library prints can corrupt it):
{"ok": true, ...} or {"ok": false, "error": ..., "traceback": ...}.

SPEC: {"mode": "epoch" | "first_batch" | "list", "client": NAME, "uri": URI
(a prefix: s3://bucket/ or file:///dir/), "endpoint": URL, "region": R,
"count": N, "size": BYTES, "crcs": PATH (JSON list: CRC-32 of object i),
"batch_size": 32, "workers": 4, "shuffle": bool, "stall_s": S}

Objects are `i.to_bytes(8, "big") + random bytes`, so a sample names its
own index.  Clients (NAME):

  s3dlio-map     s3dlio.torch.S3MapDataset(uri) (ours, or the reference's
                 ObjectStoreMapDataset in its venv)
  s3dlio-map-tensor  ours with transform=torch.frombuffer(view, dtype=torch.uint8):
                 samples become tensors, which DataLoader stacks into shared memory
  s3dlio-iter    S3IterableDataset(uri, shuffle=) / the reference's
                 ObjectStoreIterableDataset.from_prefix(uri, shuffle=, enable_sharding=True)
  boto3-map      a map dataset listing with boto3's paginator; per item
                 get_object().read() on a client made lazily in each process
  s3tc-map       s3torchconnector S3MapDataset.from_prefix(transform=read())
  s3tc-iter      s3torchconnector S3IterableDataset.from_prefix(enable_sharding=True,
                 transform=read()); it has no shuffle
  file-map       a map dataset of the files under a file:// URI: open(p, 'rb').read()

Modes:

  epoch        builds the dataset (untimed: listing included), then times one
               full epoch of DataLoader(batch_size, num_workers, shuffle for map
               datasets), from making the iterator until the loop ends (workers
               joined).  CPU = this process (RUSAGE_SELF) + its reaped children,
               the DataLoader workers (RUSAGE_CHILDREN).  During the loop only
               each sample's length and 8-byte index are noted; after the clock:
               every index exactly once, every length right, and the CRC-32 of
               every sample in the first, middle and last batches.
  first_batch  times from constructing the dataset to the first batch, then
               checks that batch (lengths, indices in range, CRC-32 of each).
  list         the client's listing of the prefix: count and SHA-256 of the keys.
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
import time
import zlib
from typing import Any, List, Tuple


def cpu_now() -> Tuple[float, float]:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime


def bucket_of(uri: str) -> str:
    return uri[len("s3://"):].split("/", 1)[0]


def as_tensor(view: Any) -> Any:
    """A zero-copy uint8 tensor over a BytesView (read-only; collate copies it)."""
    import warnings
    import torch
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given buffer is not writable")
        return torch.frombuffer(view, dtype=torch.uint8)


def read_all(reader: Any) -> bytes:
    """s3torchconnector's transform: the S3Reader's whole body (module level, so
    it pickles)."""
    return reader.read()


class Boto3MapDataset:
    """The usual boto3 map dataset: keys listed once, one boto3 client per
    process (made on first use, so a forked DataLoader worker makes its own)."""

    def __init__(self, spec: dict) -> None:
        self.spec, self.bucket = spec, bucket_of(spec["uri"])
        self._client, self._pid = None, None
        self.keys = [o["Key"] for page in self.client().get_paginator("list_objects_v2")
                     .paginate(Bucket=self.bucket) for o in page.get("Contents", [])]

    def client(self) -> Any:
        if self._pid != os.getpid():
            import boto3
            from botocore.config import Config
            self._client = boto3.client(
                "s3", endpoint_url=self.spec["endpoint"], region_name=self.spec["region"],
                config=Config(s3={"addressing_style": "path"},
                              request_checksum_calculation="when_required",
                              response_checksum_validation="when_required"))
            self._pid = os.getpid()
        return self._client

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=self.keys[i])["Body"].read()


class FileMapDataset:
    """The plain local map dataset: sorted paths, open(p, 'rb').read() per item."""

    def __init__(self, spec: dict) -> None:
        root = spec["uri"][len("file://"):]
        self.paths = sorted(os.path.join(root, n) for n in os.listdir(root))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> bytes:
        with open(self.paths[i], "rb") as f:
            return f.read()


def make_dataset(spec: dict) -> Tuple[Any, bool]:
    """(dataset, is_map) for the client named in spec."""
    client, uri, shuffle = spec["client"], spec["uri"], spec["shuffle"]
    if client == "s3dlio-map-tensor":
        from s3dlio.torch import S3MapDataset
        return S3MapDataset(uri, transform=as_tensor), True
    if client in ("s3dlio-map", "s3dlio-iter"):
        import s3dlio.torch as st
        if hasattr(st, "ObjectStoreIterableDataset") and hasattr(st, "_AsyncBytesSource"):
            # the Rust reference: its current class names; sharding across
            # DataLoader workers is opt-in there
            if client == "s3dlio-map":
                return st.ObjectStoreMapDataset(uri), True
            return st.ObjectStoreIterableDataset.from_prefix(
                uri, shuffle=shuffle, seed=0, enable_sharding=True), False
        if client == "s3dlio-map":
            return st.S3MapDataset(uri), True
        return st.S3IterableDataset(uri, shuffle=shuffle, seed=0), False
    if client == "boto3-map":
        return Boto3MapDataset(spec), True
    if client in ("s3tc-map", "s3tc-iter"):
        from s3torchconnector import S3IterableDataset, S3MapDataset
        from s3torchconnector._s3client import S3ClientConfig
        kw = dict(region=spec["region"], endpoint=spec["endpoint"], transform=read_all,
                  s3client_config=S3ClientConfig(force_path_style=True))
        if client == "s3tc-map":
            return S3MapDataset.from_prefix(uri, **kw), True
        return S3IterableDataset.from_prefix(uri, enable_sharding=True, **kw), False
    if client == "file-map":
        return FileMapDataset(spec), True
    raise ValueError(f"unknown client {client!r}")


def version(client: str) -> str:
    mod = {"boto3-map": "boto3", "s3tc-map": "s3torchconnector",
           "s3tc-iter": "s3torchconnector"}.get(client, "s3dlio")
    if client == "file-map":
        return sys.version.split()[0]
    try:
        import importlib.metadata as md
        return md.version(mod)
    except Exception:
        return "?"


def loader(dataset: Any, is_map: bool, spec: dict) -> Any:
    from torch.utils.data import DataLoader
    workers = spec["workers"]
    return DataLoader(dataset, batch_size=spec["batch_size"], num_workers=workers,
                      shuffle=is_map and spec["shuffle"],
                      # a stalled worker fails the run instead of hanging it
                      timeout=spec["stall_s"] if workers else 0)


def samples_of(batch: Any) -> List[Any]:
    """A batch as per-sample items: a list stays a list, a stacked 2-D tensor
    becomes its rows."""
    import torch
    if isinstance(batch, torch.Tensor):
        return list(batch) if batch.dim() == 2 else [batch]
    return list(batch)


def heads(batch: Any) -> List[Tuple[int, int]]:
    """(length, index) of every sample in a batch: cheap, done inside the clock."""
    import torch
    if isinstance(batch, torch.Tensor) and batch.dim() == 2:
        raw = bytes(batch[:, :8].contiguous().flatten().tolist())
        return [(batch.shape[1], int.from_bytes(raw[i * 8:i * 8 + 8], "big"))
                for i in range(batch.shape[0])]
    out = []
    for s in samples_of(batch):
        if isinstance(s, torch.Tensor):
            out.append((s.numel(), int.from_bytes(bytes(s[:8].tolist()), "big")))
        else:
            mv = memoryview(s)
            out.append((mv.nbytes, int.from_bytes(mv[:8], "big")))
    return out


def sample_bytes(s: Any) -> bytes:
    import torch
    return bytes(s.tolist()) if isinstance(s, torch.Tensor) else bytes(memoryview(s))


def check_crcs(batches: List[Any], crcs: List[int]) -> int:
    checked = 0
    for batch in batches:
        for s in samples_of(batch):
            data = sample_bytes(s)
            i = int.from_bytes(data[:8], "big")
            got = zlib.crc32(data) & 0xFFFFFFFF
            if got != crcs[i]:
                raise RuntimeError(f"object {i}: CRC-32 {got:08x}, expected {crcs[i]:08x}")
            checked += 1
    return checked


def run_epoch(spec: dict, crcs: List[int]) -> dict:
    dataset, is_map = make_dataset(spec)  # untimed: listing, clients
    count, size = spec["count"], spec["size"]
    batches = -(-count // spec["batch_size"])
    keep_at = {0, batches // 2, batches - 1}
    kept, seen = [], []
    dl = loader(dataset, is_map, spec)
    self0, kids0 = cpu_now()
    t0 = time.perf_counter()
    first = last = None
    n = 0
    for n, batch in enumerate(dl, 1):
        last = time.perf_counter()
        first = first or last
        seen.extend(heads(batch))
        if n - 1 in keep_at:
            kept.append(batch)
    wall = time.perf_counter() - t0
    import multiprocessing
    for p in multiprocessing.active_children():  # reap every worker: its CPU counts
        p.join(10)
    self1, kids1 = cpu_now()
    # -- after the clock --
    lengths = {ln for ln, _ in seen}
    indices = sorted(i for _, i in seen)
    if len(seen) != count or indices != list(range(count)) or lengths != {size}:
        dup = len(indices) - len(set(indices))
        raise RuntimeError(f"epoch gave {len(seen)} samples for {count} objects "
                           f"({len(set(indices))} distinct, {dup} repeated), "
                           f"lengths {sorted(lengths)[:4]} (want {size})")
    checked = check_crcs(kept, crcs)
    return {"ok": True, "wall": wall, "cpu": (self1 - self0) + (kids1 - kids0),
            "cpu_self": self1 - self0, "cpu_children": kids1 - kids0,
            "bytes": count * size, "files": count, "batches": n,
            "first_batch_s": (first - t0) if first else None,
            "last_batch_s": (last - t0) if last else None, "crc_checked": checked}


def run_first_batch(spec: dict, crcs: List[int]) -> dict:
    t0 = time.perf_counter()
    dataset, is_map = make_dataset(spec)
    t_made = time.perf_counter()
    it = iter(loader(dataset, is_map, spec))
    batch = next(it)
    wall = time.perf_counter() - t0
    # -- after the clock --
    t1 = time.perf_counter()
    del it  # shuts the workers down
    shutdown = time.perf_counter() - t1
    seen = heads(batch)
    want = min(spec["batch_size"], spec["count"])
    bad = [(ln, i) for ln, i in seen if ln != spec["size"] or not 0 <= i < spec["count"]]
    if len(seen) != want or bad:
        raise RuntimeError(f"first batch: {len(seen)} samples (want {want}); bad (length, "
                           f"index): {bad[:4]}")
    checked = check_crcs([batch], crcs)
    return {"ok": True, "wall": wall, "construct_s": t_made - t0, "cpu": 0.0,
            "bytes": len(seen) * spec["size"], "files": len(seen), "crc_checked": checked,
            "shutdown_s": shutdown}


def run_list(spec: dict) -> dict:
    client, uri = spec["client"], spec["uri"]
    t0 = time.perf_counter()
    if client == "s3dlio":
        import s3dlio
        keys = [u[len(uri):] for u in s3dlio.list(uri)]
    elif client == "boto3":
        keys = Boto3MapDataset(spec).keys
    elif client == "s3tc":
        dataset, _ = make_dataset(dict(spec, client="s3tc-map"))
        keys = [bk.key for bk in dataset._dataset_bucket_key_pairs]
    else:
        raise ValueError(f"unknown lister {client!r}")
    wall = time.perf_counter() - t0
    return {"ok": True, "count": len(keys), "wall": wall,
            "sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
            "first": keys[:2], "last": keys[-1:]}


def main() -> int:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries go to stderr
    sys.stdout = sys.stderr
    spec = json.loads(sys.argv[1])
    try:
        if spec["mode"] == "list":
            answer = run_list(spec)
        else:
            # torch and the client imported before any clock starts
            import torch.utils.data  # noqa: F401
            with open(spec["crcs"]) as f:
                crcs = json.load(f)
            if spec["client"].startswith("s3dlio"):
                import s3dlio.torch  # noqa: F401
            elif spec["client"].startswith("s3tc"):
                import s3torchconnector  # noqa: F401
            elif spec["client"] == "boto3-map":
                import boto3  # noqa: F401
            run = run_epoch if spec["mode"] == "epoch" else run_first_batch
            answer = run(spec, crcs)
        answer.update(version=version(spec["client"]), python=sys.version.split()[0])
    except Exception as e:  # reported to the parent, which decides
        import traceback
        answer = {"ok": False, "error": f"{type(e).__name__}: {e}",
                  "traceback": traceback.format_exc()[-3000:]}
    out.write(json.dumps(answer) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
