"""Splitting bulk work across the ranks of an MPI job.

The rank and size come from mpi4py when the process runs under an MPI
launcher and mpi4py is installed (an optional extra), else from the
launcher's environment: ``OMPI_COMM_WORLD_RANK``/``OMPI_COMM_WORLD_SIZE``
(Open MPI), ``PMI_RANK``/``PMI_SIZE`` (MPICH, Intel MPI),
``SLURM_PROCID``/``SLURM_NTASKS`` (srun).  Outside any of them the process
is rank 0 of 1.  Each rank takes a disjoint, deterministic share of a
sorted work list; with mpi4py the ranks' reports are exchanged, so every
rank knows the totals and rank 0 can print them.  No cluster layer of our
own: without mpi4py there is nothing to exchange through, and each rank
reports only itself."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, TypeVar

T = TypeVar("T")

_ENV_PAIRS = (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"),
              ("PMIX_RANK", "OMPI_COMM_WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS"))


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    comm: Any = field(default=None, repr=False)  # an mpi4py communicator, or None


def _from_env() -> Optional[tuple[int, int]]:
    for rank_name, size_name in _ENV_PAIRS:
        rank, size = os.environ.get(rank_name), os.environ.get(size_name)
        if rank is not None and size is not None:
            try:
                r, s = int(rank), int(size)
            except ValueError:
                continue
            if 0 <= r < s:
                return r, s
    return None


def world() -> World:
    """This process's place in the job (rank 0 of 1 outside MPI)."""
    found = _from_env()
    if found is None:
        return World(0, 1)
    try:
        from mpi4py import MPI  # initializes MPI: only under a launcher
    except ImportError:
        return World(found[0], found[1])
    comm = MPI.COMM_WORLD
    return World(comm.Get_rank(), comm.Get_size(), comm)


def share(items: Sequence[T], where: World) -> list[T]:
    """This rank's items: every ``size``-th one from ``rank`` on, so the
    shares are disjoint, cover the list, and differ in length by one at
    most.  The list must be in the same order on every rank (sorted)."""
    return list(items[where.rank::where.size])


def listed_once(where: World, make: Callable[[], list[T]]) -> list[T]:
    """A work list made by rank 0 and sent to every rank (with mpi4py), so
    all ranks share one snapshot even when the work changes what a listing
    would return (a recursive delete).  Without a communicator each rank
    makes its own."""
    if where.comm is None:
        return make()
    items = make() if where.rank == 0 else None
    return where.comm.bcast(items, root=0)  # type: ignore[no-any-return]


def run_share(where: World, items: Sequence[T],
              work: Callable[[list[T]], tuple[int, int, list[str]]]) -> dict:
    """Runs ``work`` on this rank's share of ``items`` (already in the same
    order on every rank) and returns the job's totals (see :func:`combine`).
    ``work`` returns the objects done, their bytes and its failures."""
    started = time.perf_counter()
    objects, nbytes, errors = work(share(items, where))
    return combine(where, {"bytes": nbytes, "objects": objects, "errors": errors,
                           "seconds": time.perf_counter() - started})


def combine(where: World, report: dict) -> dict:
    """The job's totals from every rank's ``report`` (``bytes``,
    ``objects``, ``errors``: a list of strings, ``seconds``), known to every
    rank; with no communicator, this rank's report alone (``ranks``: 1)."""
    reports = where.comm.allgather(report) if where.comm is not None else [report]
    seconds = max(r["seconds"] for r in reports) or 1e-9
    total = sum(r["bytes"] for r in reports)
    return {
        "ranks": len(reports),
        "world_size": where.size,
        "bytes": total,
        "objects": sum(r["objects"] for r in reports),
        "errors": [e for r in reports for e in r["errors"]],
        "seconds": seconds,
        "throughput_mb_s": total / seconds / 1e6,
    }


__all__ = ["World", "world", "share", "listed_once", "run_share", "combine"]
