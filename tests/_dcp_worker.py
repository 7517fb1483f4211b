"""One rank of the DCP test: joins a gloo group on loopback and saves a
state_dict with one tensor shared by all ranks and one of its own through
s3dlio.torch.StorageWriter.

Run as ``python _dcp_worker.py RANK WORLD PORT URI``."""
from __future__ import annotations

import datetime
import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from s3dlio.torch import StorageWriter


def state(rank: int) -> dict:
    return {"shared": torch.arange(12, dtype=torch.float32).reshape(3, 4),
            f"rank{rank}": torch.full((5,), float(rank), dtype=torch.bfloat16),
            "step": 7}


def main() -> None:
    rank, world, port, uri = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        dcp.save(state(rank), storage_writer=StorageWriter(uri))
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
