"""Saves one checkpoint, for tests/test_checkpoint.py to SIGKILL part-way:
``python _ckpt_kill_worker.py URI SEED``.  Prints "saving" once imports
are done (so the kill lands in the save), then "saved"."""
from __future__ import annotations

import sys

import numpy as np

from s3dlio.checkpoint import save_checkpoint

MiB = 1 << 20


def main() -> None:
    uri, seed = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(seed)
    # Must match _worker_data in test_checkpoint.py.
    data = {"seed": seed, "w": [rng.random(MiB // 8 * 3) for _ in range(8)]}
    print("saving", flush=True)
    save_checkpoint(uri, data, part_size=5 * MiB, max_in_flight=2)
    print("saved", flush=True)


if __name__ == "__main__":
    main()
