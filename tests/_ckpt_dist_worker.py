"""One rank of the distributed-checkpoint test: joins a gloo group on
loopback, saves its shard with s3dlio.save_distributed_shard, and rank 0
finalizes after a barrier.  With DIE_RANK set, that rank exits before
saving and rank 0 finalizes without waiting for it.

Run as ``python _ckpt_dist_worker.py RANK WORLD PORT BASE_URI [DIE_RANK]``."""
from __future__ import annotations

import datetime
import os
import sys
import time

import torch
import torch.distributed as dist

import s3dlio
from s3dlio.checkpoint_dist import finalize_distributed_checkpoint, save_distributed_shard


def shard(rank: int) -> dict:
    torch.manual_seed(rank)
    return {"rank": rank, "weights": torch.randn(64, 32), "ids": torch.arange(rank + 3),
            "half": torch.ones(7, dtype=torch.bfloat16) * rank}


def main() -> None:
    rank, world, port, base = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    die = int(sys.argv[5]) if len(sys.argv) > 5 else -1
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    if rank == die:
        os._exit(3)  # killed before its shard: no clean shutdown either
    save_distributed_shard(f"{base}shard_{rank}.bin", shard(rank), rank, world)
    if die < 0:
        dist.barrier()
    elif rank == 0:
        # A barrier would wait on the dead rank; as a job's timeout would,
        # wait (bounded) for the survivors' receipts instead.
        survivors = {f"rank-{r:05d}-of-{world:05d}.json" for r in range(world) if r != die}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listed = {u.rsplit("/", 1)[1] for u in s3dlio.list(base) if "/.s3dlio-shards/" in u}
            if survivors <= listed:
                break
            time.sleep(0.05)
    if rank == 0:
        try:
            finalize_distributed_checkpoint(base, world)
        except Exception as exc:  # reported to the test through the exit status and stderr
            print(f"FINALIZE FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            os._exit(4)
    if die < 0:
        dist.destroy_process_group()
    else:
        os._exit(0)  # the group has a dead member: skip the collective teardown


if __name__ == "__main__":
    main()
