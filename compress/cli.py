"""Command line: ``python -m compress <command>``.

Commands:
    summary CHECKPOINT   print the sparsity table of a saved checkpoint
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Dict, List, Optional

from .checkpoint import read_checkpoint
from .errors import CompressError
from .summary import sparsity_table


def _summary(args: argparse.Namespace) -> str:
    state = read_checkpoint(args.checkpoint)
    return sparsity_table(state["model"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m compress", description="Inspect compressed recurrent models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="print the sparsity table of a checkpoint")
    p.add_argument("checkpoint", help="a checkpoint written by compress.save_checkpoint (or Distiller)")
    p.set_defaults(run=_summary)
    return parser


def main(argv: Optional[List[str]] = None, out: Callable[[str], None] = None) -> int:
    """Run the command line; returns the exit status (2 for a bad file or argument)."""
    out = out or (lambda text: sys.stdout.write(text + "\n"))
    args = build_parser().parse_args(argv)
    try:
        out(args.run(args))
    except CompressError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0
