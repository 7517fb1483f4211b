"""Distributed checkpoints: one checkpoint object per rank, and a global
manifest that rank 0 writes last, after checking every shard.

- :func:`save_distributed_shard` saves a rank's data with
  :func:`~s3dlio.checkpoint.save_checkpoint` (atomic, verified, no pickle)
  and then a small JSON *receipt* beside it,
  ``<shard dir>/.s3dlio-shards/rank-R-of-W.json``, naming the shard and its
  fingerprint.  The receipt is written after the shard, so a receipt means
  a complete shard.
- :func:`finalize_distributed_checkpoint` (rank 0, after a barrier) reads
  the receipts under ``base_uri``, checks that ranks ``0..W-1`` are all
  there and that each shard still is what its receipt says (its header is
  read and validated; ``verify="full"`` also checks every blob's CRC32C),
  and only then writes ``base_uri/s3dlio-checkpoint.json`` and removes the
  receipts it used.  A missing or damaged shard raises
  :class:`~s3dlio.errors.CheckpointError` naming the ranks, and no manifest
  is written.
- ``load_checkpoint(base_uri)`` (a URI ending in ``/``) reads the
  manifest and returns the list of shards in rank order, or one shard with
  ``rank=``; each shard is checked against its manifest entry first.

Everything here is JSON; nothing is pickled.  See docs/checkpoints.md."""
from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Dict, List, Optional

from . import api
from . import checkpoint as _single
from ._native import ffi, lib
from .errors import CheckpointError, NotFoundError

MANIFEST_NAME = "s3dlio-checkpoint.json"
RECEIPTS_DIR = ".s3dlio-shards/"
FORMAT_NAME = "s3dlio-distributed-checkpoint"
FORMAT_VERSION = 1
_MAX_JSON = 64 << 20  # a manifest of a million shards is ~100 MB; refuse more than this


def _check_world(rank: Any, world_size: Any) -> None:
    for name, value in (("rank", rank), ("world_size", world_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise CheckpointError(f"{name} must be an int, not {value!r}", code="BadArgument")
    if world_size < 1 or not 0 <= rank < world_size:
        raise CheckpointError(f"rank {rank} is not in 0..{world_size - 1} (world_size "
                              f"{world_size})", code="BadArgument")


def _dir_of(uri: str) -> str:
    return uri.rsplit("/", 1)[0] + "/"


def _base(uri: str) -> str:
    return uri if uri.endswith("/") else uri + "/"


def _receipt_uri(directory: str, rank: int, world_size: int) -> str:
    return f"{directory}{RECEIPTS_DIR}rank-{rank:05d}-of-{world_size:05d}.json"


def _fingerprint(header: Any) -> str:
    """CRC32C over every blob's name, place and CRC32C: equal for the same
    saved bytes, different for any other save of the same name."""
    text = json.dumps([[b.name, b.begin, b.end, b.crc32c] for b in header.blobs.values()]
                      + [header.compression, header.tree], separators=(",", ":")).encode()
    return f"{int(lib.s3dl_crc32c(0, ffi.from_buffer(text), len(text))):08x}"


def _shard_facts(uri: str) -> Dict[str, Any]:
    header = _single._read_header(uri)
    return {"uri": uri, "size": header.total_size, "fingerprint": _fingerprint(header)}


def _read_json(uri: str, what: str) -> Any:
    raw = api.get(uri)
    if len(raw) > _MAX_JSON:
        raise CheckpointError(f"{what} of {len(raw)} bytes is too large: {uri}", uri=uri,
                              code="BadManifest")
    try:
        return json.loads(bytes(raw))
    except ValueError as exc:
        raise CheckpointError(f"{what} is not valid JSON ({exc}): {uri}", uri=uri,
                              code="BadManifest") from None


def save_distributed_shard(uri: str, shard_data: Any, rank: int, world_size: int, *,
                           compress: bool = False, checkpoint_id: Optional[str] = None,
                           **options: Any) -> Dict[str, Any]:
    """Saves this rank's ``shard_data`` as one checkpoint object at ``uri``
    (``options``: those of ``save_checkpoint``), then its receipt beside it.
    Returns the receipt: ``rank``, ``world_size``, ``uri``, ``size``,
    ``fingerprint``, ``checkpoint_id``, ``saved_at``.  Each rank calls it once
    per checkpoint; then rank 0 calls :func:`finalize_distributed_checkpoint`
    (with the same ``checkpoint_id``, e.g. the step, if one is given: then
    no receipt of another save can stand in for a rank)."""
    _check_world(rank, world_size)
    _single.save_checkpoint(uri, shard_data, compress, **options)
    receipt = {"format": FORMAT_NAME + "-shard", "version": FORMAT_VERSION, "rank": rank,
               "world_size": world_size, "checkpoint_id": checkpoint_id, **_shard_facts(uri),
               "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat()}
    api.put(_receipt_uri(_dir_of(uri), rank, world_size),
            json.dumps(receipt, indent=1).encode(), fsync=True)
    return receipt


def _receipts(base: str, world_size: int, checkpoint_id: Optional[str]
              ) -> tuple[Dict[int, Dict[str, Any]], List[str]]:
    """The newest receipt of each rank for ``world_size`` (and
    ``checkpoint_id``, when given) under ``base``, and the URIs of the
    receipts used."""
    suffix = f"-of-{world_size:05d}.json"
    found: Dict[int, Dict[str, Any]] = {}
    read: List[str] = []
    for uri in api.list(base, recursive=True):
        name = uri.rsplit("/", 1)[1]
        if f"/{RECEIPTS_DIR}" not in uri or not name.startswith("rank-") or \
                not name.endswith(suffix):
            continue
        receipt = _read_json(uri, "shard receipt")
        if checkpoint_id is not None and isinstance(receipt, dict) and \
                receipt.get("checkpoint_id") != checkpoint_id:
            continue  # another save's: never counted, never removed here
        read.append(uri)
        rank = receipt.get("rank") if isinstance(receipt, dict) else None
        if not isinstance(rank, int) or receipt.get("world_size") != world_size:
            raise CheckpointError(f"shard receipt does not match its name: {uri}", uri=uri,
                                  code="BadManifest")
        if rank not in found or str(receipt.get("saved_at")) > str(found[rank].get("saved_at")):
            found[rank] = receipt
    return found, read


def finalize_distributed_checkpoint(base_uri: str, world_size: int, *,
                                    verify: str = "header",
                                    checkpoint_id: Optional[str] = None) -> Dict[str, Any]:
    """Checks that every rank's shard under ``base_uri`` is present and
    complete, then writes the global manifest ``base_uri/s3dlio-checkpoint.json``
    (last: its presence means a complete checkpoint) and returns it.

    ``verify``: ``"header"`` (default) reads each shard's header and checks
    it against the receipt; ``"full"`` also reads every blob and checks its
    CRC32C.  ``checkpoint_id``: count only the shards saved with this id.
    Raises CheckpointError naming the missing or damaged ranks."""
    _check_world(0, world_size)
    if verify not in ("header", "full"):
        raise CheckpointError(f"verify must be 'header' or 'full', not {verify!r}",
                              code="BadArgument")
    base = _base(base_uri)
    receipts, receipt_uris = _receipts(base, world_size, checkpoint_id)
    missing = [r for r in range(world_size) if r not in receipts]
    if missing:
        raise CheckpointError(f"distributed checkpoint is missing the shard(s) of rank(s) "
                              f"{missing} of {world_size}; no manifest written: {base}",
                              uri=base, code="MissingShards")
    shards, damaged = [], []
    for rank in range(world_size):
        receipt = receipts[rank]
        try:
            facts = _shard_facts(str(receipt["uri"]))
            if verify == "full":
                _single.load_checkpoint(facts["uri"], verify=True)
        except (CheckpointError, NotFoundError) as exc:
            damaged.append(f"rank {rank}: {exc}")
            continue
        if (facts["size"], facts["fingerprint"]) != (receipt["size"], receipt["fingerprint"]):
            damaged.append(f"rank {rank}: {facts['uri']} changed since its save")
            continue
        shards.append({"rank": rank, **facts})
    if damaged:
        raise CheckpointError("distributed checkpoint has damaged shard(s); no manifest "
                              f"written: {base}: " + "; ".join(damaged), uri=base,
                              code="DamagedShards")
    manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "world_size": world_size,
                "checkpoint_id": checkpoint_id, "shards": shards, "verified": verify,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat()}
    api.put(base + MANIFEST_NAME, json.dumps(manifest, indent=1).encode(), fsync=True)
    # The receipts are consumed: a later checkpoint in the same place must
    # not count a shard of this one for a rank that died before saving.
    for receipt_uri in receipt_uris:
        api.delete(receipt_uri)
    return manifest


def read_manifest(base_uri: str) -> Dict[str, Any]:
    """The validated global manifest of a distributed checkpoint."""
    uri = _base(base_uri) + MANIFEST_NAME
    try:
        manifest = _read_json(uri, "manifest")
    except NotFoundError:
        raise CheckpointError(f"no finalized distributed checkpoint at {_base(base_uri)} "
                              f"({MANIFEST_NAME} is missing: was "
                              f"finalize_distributed_checkpoint called?)", uri=uri,
                              code="MissingManifest") from None
    shards = manifest.get("shards") if isinstance(manifest, dict) else None
    if manifest.get("format") != FORMAT_NAME or not isinstance(shards, list):  # type: ignore[union-attr]
        raise CheckpointError(f"not an s3dlio distributed checkpoint manifest: {uri}", uri=uri,
                              code="BadManifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"manifest version {manifest.get('version')!r} is not supported "
                              f"(this s3dlio reads {FORMAT_VERSION}): {uri}", uri=uri,
                              code="UnsupportedVersion")
    world = manifest.get("world_size")
    if not isinstance(world, int) or [s.get("rank") for s in shards] != list(range(world)):
        raise CheckpointError(f"manifest shards are not ranks 0..world_size-1: {uri}", uri=uri,
                              code="BadManifest")
    return manifest


def load_distributed(base_uri: str, rank: Optional[int] = None, **load_options: Any) -> Any:
    """Every shard in rank order (a list), or the shard of ``rank``; each is
    checked against the manifest before it is loaded."""
    manifest = read_manifest(base_uri)
    entries = manifest["shards"]
    if rank is not None:
        _check_world(rank, manifest["world_size"])
        entries = [entries[rank]]
    loaded: List[Any] = []
    for entry in entries:
        facts = _shard_facts(str(entry["uri"]))
        if (facts["size"], facts["fingerprint"]) != (entry.get("size"), entry.get("fingerprint")):
            raise CheckpointError(f"shard of rank {entry['rank']} changed after the checkpoint "
                                  f"was finalized: {facts['uri']}", uri=facts["uri"],
                                  code="DamagedShards")
        loaded.append(_single.load_checkpoint(facts["uri"], **load_options))
    return loaded[0] if rank is not None else loaded


__all__ = ["save_distributed_shard", "finalize_distributed_checkpoint", "read_manifest",
           "load_distributed", "MANIFEST_NAME"]
