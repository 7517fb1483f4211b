"""Async twins of the storage functions, with the same signatures.  They
await the engine's eventfd on the running loop: no thread per call."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from . import _engine
from ._steps import drive_async
from ._bytesview import BytesView
from .api import (DEFAULT_MAX_IN_FLIGHT, BytesLike, _collect_many, _empty_range,
                  _errors_by_index, _get_requests, _into_request, _into_result, _large_steps,
                  _plan_puts,
                  _range_request, _stat_requests, _stat_results)
from .errors import InvalidRangeError, IsADirectoryError, NotFoundError, S3dlioError


async def put_async(uri: str, data: BytesLike, *, fsync: bool = False,
                    overwrite: bool = True) -> None:
    """Async :func:`s3dlio.put`."""
    await put_many_async([(uri, data)], max_in_flight=1, fsync=fsync, overwrite=overwrite)


async def put_many_async(items: Sequence[tuple[str, BytesLike]],
                         max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, *, fsync: bool = False,
                         overwrite: bool = True) -> None:
    """Async :func:`s3dlio.put_many`."""
    plan = _plan_puts(items, fsync, overwrite)
    errors: dict[int, Exception] = {}
    if plan.small:
        results, statuses, views = await _engine.run_async([req for _, req in plan.small],
                                                           max_in_flight)
        errors.update(_errors_by_index(results, statuses, [i for i, _ in plan.small]))
        results.free()
    for index, parsed, data in plan.large:
        try:
            await drive_async(_large_steps(parsed, data, overwrite), 16)
        except S3dlioError as exc:
            errors[index] = exc
    if errors:
        raise errors[min(errors)]


async def get_async(uri: str) -> BytesView:
    """Async :func:`s3dlio.get`."""
    ((_, view),) = await get_many_async([uri], max_in_flight=1)
    return view


async def get_into_async(uri: str, buffer: Any) -> int:
    """Async :func:`s3dlio.get_into`."""
    req, keep = _into_request(uri, buffer)
    results, statuses, views = await _engine.run_async([req], 1)
    return _into_result(results, statuses, views, len(keep))


async def get_range_async(uri: str, offset: int, length: Optional[int] = None) -> BytesView:
    """Async :func:`s3dlio.get_range`."""
    req = _range_request(uri, offset, length)
    if length == 0:
        return _empty_range(uri, offset, (await stat_async(req.uri))["size"])
    batch, statuses, views = await _engine.run_async([req], 1)
    try:
        ((_, view),) = _collect_many(batch, statuses, views, return_exceptions=False)
    except InvalidRangeError:
        if req.client is None:
            raise
        return _empty_range(uri, offset, (await stat_async(req.uri))["size"])  # see get_range
    return view


async def get_many_async(uris: Sequence[str], max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, *,
                         workers: Optional[int] = None,
                         return_exceptions: bool = False) -> list[tuple[str, BytesView]]:
    """Async :func:`s3dlio.get_many`: ``(uri, BytesView)`` pairs in input order."""
    limit = workers if workers is not None else max_in_flight
    batch, statuses, views = await _engine.run_async(_get_requests(list(uris)), limit)
    return _collect_many(batch, statuses, views, return_exceptions)


async def stat_async(uri: str) -> dict[str, Any]:
    """Async :func:`s3dlio.stat`."""
    (result,) = await stat_many_async([uri])
    return result


async def stat_many_async(uris: Sequence[str],
                          max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> list[dict[str, Any]]:
    """Metadata of many objects, in input order."""
    batch, statuses, views = await _engine.run_async(_stat_requests(uris), max_in_flight)
    return _stat_results(batch, statuses, views)


async def exists_async(uri: str) -> bool:
    """Async :func:`s3dlio.exists`."""
    try:
        await stat_async(uri)
        return True
    except (NotFoundError, IsADirectoryError):
        return False


__all__ = ["put_async", "put_many_async", "get_async", "get_into_async", "get_range_async",
           "get_many_async",
           "stat_async", "stat_many_async", "exists_async"]
