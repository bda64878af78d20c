"""Command line: ``python -m compress <command>``.

Commands:
    summary CHECKPOINT   print the sparsity table of a saved checkpoint
    inspect ORIGINAL PRUNED [--data DIR] [--task MODULE:FUNCTION] [--cuda]
                         parameters, pruned count, sparsity and the task's metrics, side by side
    export CHECKPOINT --format {compress,onnx} --precision {fp32,fp16,int8} --out FILE [--task MODULE:FUNCTION]
                         a deployable file: compress's sparse format, or ONNX for ONNX Runtime
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, List, Optional

from compress.errors import CompressError
from compress.io.checkpoint import read_checkpoint
from compress.reports.inspection import DEFAULT_TASK
from compress.reports.tables import sparsity_table


def _summary(args: argparse.Namespace) -> str:
    state = read_checkpoint(args.checkpoint)
    return sparsity_table(state["model"])


def _inspect(args: argparse.Namespace) -> str:
    import torch

    from compress.reports.inspection import (
        inspect_checkpoints,
        inspection_table,
        load_task,
    )

    device = torch.device("cuda" if args.cuda else "cpu")
    task = load_task(args.task)(args.data, device)
    return inspection_table(inspect_checkpoints([args.original, args.pruned], task, device=device,
                                                evaluate=not args.no_eval))


def _export(args: argparse.Namespace) -> str:
    import torch

    from compress.export.from_checkpoint import export_checkpoint
    from compress.reports.inspection import load_task

    task = load_task(args.task)(args.data, torch.device("cpu"))
    return export_checkpoint(args.checkpoint, args.out, args.format, args.precision, task)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m compress", description="Inspect compressed recurrent models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="print the sparsity table of a checkpoint")
    p.add_argument("checkpoint", help="a checkpoint written by compress.save_checkpoint (or Distiller)")
    p.set_defaults(run=_summary)
    p = sub.add_parser("inspect", help="compare an original and a pruned checkpoint side by side")
    p.add_argument("original", help="the unpruned checkpoint")
    p.add_argument("pruned", help="the pruned checkpoint")
    p.add_argument("--data", help="corpus folder for the task (word LM default: the one the checkpoint was trained on)")
    p.add_argument("--task", default="examples.word_lm_task:make_task",
                   help="MODULE:FUNCTION making the task that rebuilds and measures the models "
                        "(see compress/inspection.py)")
    p.add_argument("--cuda", action="store_true", help="evaluate on the GPU")
    p.add_argument("--no-eval", action="store_true", help="only count parameters")
    p.set_defaults(run=_inspect)
    p = sub.add_parser("export", help="write a checkpoint's model as a small compress file or as ONNX")
    p.add_argument("checkpoint", help="a checkpoint written by compress.save_checkpoint")
    p.add_argument("--format", choices=["compress", "onnx"], default="compress",
                   help="compress: the sparse INT8/FP16/FP32 file of compress.export.sparse; onnx: for ONNX Runtime")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="int8",
                   help="weights' precision (onnx: fp32 or int8)")
    p.add_argument("--out", required=True, help="the file to write")
    p.add_argument("--task", default=DEFAULT_TASK, help="MODULE:FUNCTION making the task that rebuilds the model")
    p.add_argument("--data", help="corpus folder for the task (word LM default: the one the checkpoint was trained on)")
    p.set_defaults(run=_export)
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
