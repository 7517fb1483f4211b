"""The start and end of one run of a bench script (not part of the s3dlio
package): the load-average warning, SIGTERM handled as Ctrl-C, and the
closing failure and wall-time lines."""
from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import time
from typing import Any, Callable, Optional, Sequence

#: Added to the load-average note by the scripts that print ratios and bests.
COMPARE_HINT = " (compare ratios, look at best vs median)"


def clock() -> tuple[float, str]:
    """perf_counter() at the start of a run, and the run's time stamp (the
    result file's name)."""
    return time.perf_counter(), dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def start(hint: str = "") -> tuple[float, str, tuple]:
    """clock(), then load_note(hint)."""
    t_start, stamp = clock()
    return t_start, stamp, load_note(hint)


def load_note(hint: str = "") -> tuple:
    """The load averages now; above 0.5 for one minute, a note on stderr that
    other work will show in the numbers."""
    load = os.getloadavg()
    if load[0] > 0.5:
        print(f"note: load average {load[0]:.2f} before starting: other work on this "
              f"machine will show in the numbers{hint}", file=sys.stderr)
    return load


def _raise_interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


class Interruptible:
    """A block that Ctrl-C or SIGTERM ends the same way:

        with Interruptible("stopping nginx", cleanup) as run:
            ...
        if run.interrupted:
            return 130

    SIGTERM raises KeyboardInterrupt inside the block; on leaving it, an
    interruption is reported ("interrupted; <what>") and swallowed, the old
    SIGTERM handler is put back, then `cleanup()` runs (always)."""

    def __init__(self, what: str, cleanup: Callable[[], None]) -> None:
        self.what, self.cleanup = what, cleanup
        self.interrupted = False

    def __enter__(self) -> "Interruptible":
        self.old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(self, kind: Optional[type], *_: Any) -> bool:
        if kind is KeyboardInterrupt:
            self.interrupted = True
            print(f"interrupted; {self.what}", file=sys.stderr)
        signal.signal(signal.SIGTERM, self.old_term)
        self.cleanup()
        return self.interrupted


def first_line(text: Optional[str], limit: int = 300) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:limit] if lines else ""


def print_failures(failures: dict, heading: bool = True) -> None:
    """One line a failure: under a "failures:" heading, or each marked FAILED."""
    if heading and failures:
        print("\nfailures:")
    for k, v in failures.items():
        print(f"  {k}: {first_line(v)}" if heading else f"FAILED {k}: {first_line(v)}")


def print_closing(t_start: float, load: tuple, failures: dict, notes: Sequence[str]) -> float:
    """The notes, the failures (each marked FAILED) and the wall time."""
    for n in notes:
        print(f"note: {n}")
    print_failures(failures, heading=False)
    return print_total(t_start, load)


def print_total(t_start: float, load: tuple, tail: str = "") -> float:
    """Prints and returns the wall time since `t_start`, with the load average
    `load_note` saw."""
    total = time.perf_counter() - t_start
    print(f"total wall time: {total:.1f}s; 1-min load average before the run {load[0]:.2f}"
          + tail)
    return total
