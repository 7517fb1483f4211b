"""Progress bars on stderr, shown only to a person: never with ``--quiet``
and never when stderr is not a terminal, so pipes and logs stay clean."""
from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def bar(enabled: bool, total: int, desc: str, unit: str = "obj", **kwargs: Any) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                disable=not (enabled and sys.stderr.isatty()), dynamic_ncols=True, **kwargs)


def byte_bar(enabled: bool, total: int, desc: str) -> tqdm:
    return bar(enabled, total, desc, unit="B", unit_scale=True, unit_divisor=1024)
