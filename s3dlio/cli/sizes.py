"""Byte counts in and out: ``1MiB``/``1M``/``1048576`` on the command line,
``1.0 MiB`` on the terminal."""
from __future__ import annotations

import re

# Bare K/M/G/T and the IEC forms are powers of 1024 (as dd and fio read them);
# only the explicit SI forms KB/MB/GB/TB are powers of 1000.
_MULTIPLIERS = {
    "": 1, "b": 1,
    "k": 1 << 10, "ki": 1 << 10, "kib": 1 << 10, "kb": 10 ** 3,
    "m": 1 << 20, "mi": 1 << 20, "mib": 1 << 20, "mb": 10 ** 6,
    "g": 1 << 30, "gi": 1 << 30, "gib": 1 << 30, "gb": 10 ** 9,
    "t": 1 << 40, "ti": 1 << 40, "tib": 1 << 40, "tb": 10 ** 12,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def parse_size(text: str) -> int:
    """``"1MiB"`` -> 1048576.  Underscores and commas between digits are
    ignored (``1_000_000``).  Raises ``ValueError`` for anything else."""
    match = _SIZE.match(text.replace("_", "").replace(",", "").lower())
    if not match or match.group(2) not in _MULTIPLIERS:
        raise ValueError(f"not a size: {text!r} (examples: 4096, 64K, 1MiB, 1M, 2GB)")
    value = float(match.group(1)) * _MULTIPLIERS[match.group(2)]
    if value != int(value):
        raise ValueError(f"not a whole number of bytes: {text!r}")
    return int(value)


def human_size(n: int) -> str:
    """``1048576`` -> ``"1.0 MiB"``; below 1 KiB, exact bytes (``"512 B"``)."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in _UNITS[1:]:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")
