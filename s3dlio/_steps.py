"""Drivers for multi-step operations (multipart, resumable and block
uploads).  Each operation is written once, as a generator that yields the
engine requests of its next step and receives their results; these drive it
synchronously or from an event loop.  An exception while a step runs is
thrown into the generator, so it can clean up (abort) before re-raising."""
from __future__ import annotations

from typing import Any, Generator, List

from . import _engine
from ._engine import Request

Steps = Generator[List[Request], _engine.Results, Any]


def drive(steps: Steps, max_in_flight: int) -> Any:
    """Runs ``steps`` to the end; returns its value."""
    requests = next(steps)
    while True:
        try:
            results, _, _ = _engine.run(requests, max_in_flight)
        except BaseException as exc:
            requests = steps.throw(exc)  # the generator cleans up, then re-raises
            continue
        try:
            requests = steps.send(results)
        except StopIteration as done:
            return done.value


async def drive_async(steps: Steps, max_in_flight: int) -> Any:
    """:func:`drive` for an event loop."""
    requests = next(steps)
    while True:
        try:
            results, _, _ = await _engine.run_async(requests, max_in_flight)
        except BaseException as exc:
            requests = steps.throw(exc)
            continue
        try:
            requests = steps.send(results)
        except StopIteration as done:
            return done.value
