"""Printing results: JSON for scripts on stdout, summaries for people on
stderr (so stdout carries only data)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .sizes import human_size


def emit_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def show_progress(args: argparse.Namespace) -> bool:
    return not args.quiet


def summary(args: argparse.Namespace, verb: str, objects: int, nbytes: int, seconds: float) -> None:
    """``copied 3 objects, 12.0 MiB in 0.41 s (30.7 MB/s)`` on stderr."""
    if args.quiet:
        return
    rate = nbytes / seconds / 1e6 if seconds > 0 else 0.0
    noun = "object" if objects == 1 else "objects"
    print(f"{verb} {objects} {noun}, {human_size(nbytes)} in {seconds:.2f} s ({rate:.1f} MB/s)",
          file=sys.stderr)
