"""Command line: ``python -m compress <command>``.

Commands:
    summary CHECKPOINT   print the sparsity table of a saved checkpoint
    inspect ORIGINAL PRUNED [--data DIR] [--task MODULE:FUNCTION] [--cuda]
                         parameters, pruned count, sparsity and the task's metrics, side by side
    hyperprune SPACE.yaml [--task MODULE:FUNCTION] [--storage URL] [--out WINNER.yaml] ...
                         search a compression recipe by Hyperpruning (needs compress[search])
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


def _hyperprune(args: argparse.Namespace) -> str:
    import json
    import logging
    import os
    import signal

    import torch
    import yaml

    from compress.io.files import atomic_write
    from compress.reports.inspection import load_task
    from compress.search import Hyperpruning, SearchSpace, round_table
    from compress.search.storage import require_optuna

    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not args.quiet:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
        logging.getLogger("compress.search").setLevel(logging.INFO)
    space = SearchSpace.from_file(args.space)
    options = {}
    for item in args.task_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CompressError(f"--task-option expects KEY=VALUE, got {item!r}")
        options[key] = yaml.safe_load(value)
    device = torch.device("cuda" if args.cuda else "cpu")
    task = load_task(args.task)(args.data, device, **options)
    stem = os.path.splitext(os.path.basename(args.space))[0]
    storage = args.storage or f"sqlite:///{stem}.db"

    def show(round_):
        sys.stdout.write(round_table(round_, space) + "\n\n")
        sys.stdout.flush()

    search = Hyperpruning(space, task, storage=storage, study_name=args.study, checkpoint_dir=args.checkpoints,
                          time_budget=args.time_budget, poll_seconds=args.poll, stale_seconds=args.stale_after,
                          task_id=f"{args.task} {json.dumps(options, sort_keys=True)}", on_round=show)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a terminated search closes its run like Ctrl-C
    try:
        result = search.run()
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted: every finished candidate is kept in {storage}; run the same command to "
                         f"continue\n")
        raise SystemExit(130) from None
    lines = [result.summary()]
    if result.schedule is not None:
        out = args.out or f"{stem}.winner.yaml"
        header = (f"# Hyperpruning's pick from {args.space} (study {search.study_name} in {storage}):\n"
                  f"# {result.winner.id}: {', '.join(f'{k}: {v}' for k, v in result.winner.values.items())}\n"
                  f"# validation ppl {result.winner.val_ppl:.2f} after {space.final_epochs} epochs\n")
        with atomic_write(out, "w") as f:
            f.write(header + yaml.safe_dump(result.schedule, sort_keys=False))
        lines.append(f"winner written to {out}")
    if args.plots:
        from compress.search.plots import search_plots

        lines += [f"plot written to {p}" for p in search_plots(result, args.plots)]
    return "\n".join(lines)


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
    p.add_argument("--task", default=DEFAULT_TASK,
                   help="MODULE:FUNCTION making the task that rebuilds and measures the models "
                        "(see compress/reports/inspection.py)")
    p.add_argument("--cuda", action="store_true", help="evaluate on the GPU")
    p.add_argument("--no-eval", action="store_true", help="only count parameters")
    p.set_defaults(run=_inspect)
    p = sub.add_parser("hyperprune", help="search a compression recipe by Hyperpruning (LS distance or loss)")
    p.add_argument("space", help="the search space: a YAML file over the keys of a base schedule")
    p.add_argument("--task", default="compress_models.search_tasks:word_lm_task",
                   help="MODULE:FUNCTION making the task that trains candidates, called as FUNCTION(data, device, "
                        "**options) (default: the word LMs of compress_models)")
    p.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the task (YAML value), e.g. nhid=200; repeat for more")
    p.add_argument("--data", help="corpus folder for the task (default: its own, e.g. the synthetic corpus)")
    p.add_argument("--cuda", action="store_true", help="train on the GPU")
    p.add_argument("--storage", help="Optuna storage URL: sqlite:///FILE.db (default: SPACE.db here), "
                                     "journal:///FILE.log for several local workers, postgresql://... for several "
                                     "machines")
    p.add_argument("--study", help="study name (default: the space file's name)")
    p.add_argument("--out", help="where to write the winner's schedule (default: SPACE.winner.yaml)")
    p.add_argument("--checkpoints", help="folder for runs' progress, so a paused or killed run resumes")
    p.add_argument("--time-budget", type=float, help="stop cleanly after about this many seconds")
    p.add_argument("--plots", help="folder for the plots (needs matplotlib)")
    p.add_argument("--poll", type=float, default=5.0, help="seconds between looks at the storage while waiting")
    p.add_argument("--stale-after", type=float, default=900.0,
                   help="seconds after which a silent run of another machine is taken for dead")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(run=_hyperprune)
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
