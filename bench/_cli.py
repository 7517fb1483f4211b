"""Command-line pieces the bench scripts share (not part of the s3dlio
package): the parser, the options every script or several take, and the
comma-separated lists."""
from __future__ import annotations

import argparse
from typing import Sequence


def parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of the script's docstring."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_output(p: argparse.ArgumentParser, saved_as: str) -> None:
    """--json and --no-save; `saved_as` is the file name under bench/results/
    without .json, e.g. "s3-<timestamp>"."""
    p.add_argument("--json", help="also write the JSON result to this path")
    p.add_argument("--no-save", action="store_true",
                   help=f"do not write bench/results/{saved_as}.json")


def add_worker_limits(p: argparse.ArgumentParser) -> None:
    """--case-timeout and --profile, for the scripts that run each case in a
    worker process of its own."""
    p.add_argument("--case-timeout", type=float, default=600,
                   help="seconds one run of one case may take (default 600)")
    p.add_argument("--profile", metavar="DIR",
                   help="run the s3dlio cases under cProfile; .pstats files go to DIR")


def add_rounds(p: argparse.ArgumentParser, unit: str, budget: float,
               say_budget: bool = True) -> None:
    """--warmup and --case-budget of the interleaved runner (s3.run_group);
    `unit` is what a client's runs are grouped by ("case", "part")."""
    p.add_argument("--warmup", type=int, default=1,
                   help=f"untimed, verified runs of each client per {unit} first (default 1)")
    p.add_argument("--case-budget", type=float, default=budget,
                   help=f"after 3 rounds, stop adding rounds to a {unit} after this many "
                        "seconds" + (f" (default {budget:g})" if say_budget else ""))


def names(text: str) -> set:
    """'a, b,,c' -> {'a', 'b', 'c'}."""
    return {x.strip() for x in text.split(",") if x.strip()}


def only_set(p: argparse.ArgumentParser, text: str, known: Sequence[str]) -> set:
    """The --only names, all of them among `known` (else a usage error)."""
    wanted = names(text)
    if wanted - set(known):
        p.error(f"unknown group(s) in --only: {sorted(wanted - set(known))}")
    return wanted


def only_ordered(p: argparse.ArgumentParser, text: str, known: Sequence[str]) -> list:
    """The --only names in the order of `known`; at least one, and no other
    (else a usage error)."""
    wanted = names(text)
    chosen = [x for x in known if x in wanted]
    if wanted - set(known) or not chosen:
        p.error(f"--only takes {','.join(known)}; got {text!r}")
    return chosen
