"""One rank of the torch.distributed test: joins a gloo group on loopback,
reads two epochs of an S3IterableDataset through a DataLoader with two
worker processes, and writes what it saw as JSON.

Run as ``python _torch_dist_worker.py RANK WORLD PORT URI OUT [START_METHOD]``;
the test starts one process per rank."""
from __future__ import annotations

import datetime
import json
import sys

import torch.distributed as dist
from torch.utils.data import DataLoader

from s3dlio import S3IterableDataset


def main() -> None:
    rank, world, port, uri, out = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                   sys.argv[4], sys.argv[5])
    method = sys.argv[6] if len(sys.argv) > 6 else "fork"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        dataset = S3IterableDataset(uri, shuffle=True, seed=11, max_in_flight=4)
        loader = DataLoader(dataset, batch_size=3, num_workers=2, multiprocessing_context=method)
        epochs = []
        for epoch in range(2):
            dataset.set_epoch(epoch)
            epochs.append([bytes(v).decode() for batch in loader for v in batch])
        dist.barrier()
    finally:
        dist.destroy_process_group()
    with open(out, "w") as f:
        json.dump(epochs, f)


if __name__ == "__main__":
    main()
