"""The word-LM trainer behind ``examples/word_lm.py``: train under a schedule, checkpoint, print the tables.

:func:`train` runs the loop of PyTorch's word-LM example with every scheduler hook (:func:`~compress_models.
train_epoch`), evaluates after each epoch (the NT-ASGD average when there is one), anneals the LR as that example
does unless the schedule or ``--optimizer`` owns it, writes a checkpoint after every epoch (``--save``), continues
from one (``--resume``), stops before an epoch that would pass ``--time-budget``, and prints the sparsity and
perplexity tables of the final model. Paper scripts translate their own flags into a schedule and call it;
``python -m compress_models.trainer FLAGS`` is ``python examples/word_lm.py FLAGS`` for child processes.

Example:
    >>> import contextlib, io
    >>> args = parse_args(["--emsize", "8", "--nhid", "8", "--epochs", "1", "--synthetic-tokens", "2000",
    ...                    "--max-train-batches", "2", "--no-progress"])
    >>> with contextlib.redirect_stdout(io.StringIO()):
    ...     result = train(args)
    >>> sorted(result)
    ['best_test_ppl', 'name', 'nnz', 'sparsity', 'test_ppl', 'val_ppl']
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import torch

import compress
from compress.reports.tables import sparsity_summary, sparsity_total

from .builders import (
    ar_tar_forward,
    build_corpus,
    build_model,
    build_optimizer,
    optimizer_schedule,
    parse_args,
)
from .corpus import batchify
from .training import evaluate, train_epoch

__all__ = ["train", "main"]


class _Progress:
    """A one-line progress bar on stderr (no dependency); silent when disabled."""

    def __init__(self, prefix: str, optimizer: torch.optim.Optimizer, enabled: bool):
        self.prefix, self.optimizer, self.enabled = prefix, optimizer, enabled
        self.start = time.time()

    def __call__(self, done: int, total: int, loss: float) -> None:
        width = 24
        filled = int(width * done / max(total, 1))
        rate = done / max(time.time() - self.start, 1e-9)
        sys.stderr.write(f"\r{self.prefix} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                         f"loss {loss:5.2f} ppl {math.exp(min(loss, 50)):8.2f} "
                         f"lr {self.optimizer.param_groups[0]['lr']:g} {rate:5.1f} it/s")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


def _scheduler(args: argparse.Namespace, model, optimizer, schedule: Optional[Mapping[str, Any]],
               evaluate_model: Callable[[torch.nn.Module], float]):
    """The schedule given, else ``--schedule``'s file, else what ``--optimizer`` needs (or nothing); search-based
    pruners (StageWisePruner) measure their candidates with ``evaluate_model``."""
    # a schedule cannot hold a function: the metric is an input of building (ignored by schedules without a search)
    if schedule is not None:
        return compress.dict_config(model, optimizer, dict(schedule), evaluate=evaluate_model)
    if args.schedule:
        return compress.file_config(model, optimizer, args.schedule, evaluate=evaluate_model)
    if optimizer_schedule(args)["policies"]:
        return compress.dict_config(model, optimizer, {"version": 1, **optimizer_schedule(args)},
                                    evaluate=evaluate_model)
    return compress.CompressionScheduler(model, optimizer)


def train(args: argparse.Namespace, schedule: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Train the model the flags describe under a schedule and return the final model's row.

    Args:
        args: word-LM flags (:func:`~compress_models.builders.parse_args`; a paper script's parser may add more).
        schedule: a schedule dict (as :func:`compress.dict_config` takes) used instead of ``--schedule`` and of
            the one ``--optimizer`` makes; a paper script's translation of its flags.

    Returns:
        ``{"name", "sparsity" (fraction), "nnz", "val_ppl", "test_ppl"}`` and ``best_test_ppl`` on the synthetic
        corpus; ``{"unfinished": True, "epoch": last}`` when ``--time-budget`` stopped it first.

    Raises:
        compress.ScheduleError: the schedule does not fit the model.
        compress.CheckpointError: ``--resume`` names an unreadable or unfitting checkpoint.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if args.cuda else "cpu")
    if args.tf32:
        torch.set_float32_matmul_precision("high")
    corpus = build_corpus(args)
    best = None if args.data else corpus.best_perplexity("test")
    ntokens = len(corpus.dictionary)
    train_data = batchify(corpus.train, args.batch_size, device)
    val_data = batchify(corpus.valid, args.eval_batch_size, device)
    test_data = batchify(corpus.test, args.eval_batch_size, device)

    model = build_model(args, ntokens).to(device)
    optimizer = build_optimizer(args, model)
    scheduler = _scheduler(args, model, optimizer, schedule,
                           lambda m: math.exp(evaluate(m, val_data, args.bptt, args.eval_batch_size)))
    # the seed's optimizers own their learning rate (NT-ASGD keeps it constant, Adam has ReduceLROnPlateau)
    schedule_drives_lr = args.optimizer is not None or any(kind == "lr_scheduler" for kind, _, _ in scheduler.policies)
    forward = ar_tar_forward(args)

    start_epoch, best_val = 0, float("inf")
    if args.resume:
        extra = compress.load_checkpoint(args.resume, model, optimizer, scheduler)
        start_epoch, best_val = int(extra["epoch"]) + 1, float(extra["best_val"])
        print(f"resumed from {args.resume} at epoch {start_epoch}")

    steps = (train_data.size(0) - 1 + args.bptt - 1) // args.bptt
    if args.max_train_batches:
        steps = min(steps, args.max_train_batches)
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters, {ntokens} words, {steps} minibatches/epoch, "
          f"{len(scheduler.policies)} policies" + (f", best achievable test ppl {best:.2f}" if best else ""))
    started = time.time()
    epoch_seconds = 0.0
    for epoch in range(start_epoch, args.epochs):
        if args.time_budget and time.time() - started + epoch_seconds > args.time_budget:
            print(f"time budget reached after epoch {epoch - 1}; continue with --resume {args.save}")
            return {"unfinished": True, "epoch": epoch - 1}
        epoch_start = time.time()
        scheduler.on_epoch_begin(epoch, optimizer)
        progress = _Progress(f"epoch {epoch:3d}", optimizer, not args.no_progress)
        train_epoch(model, train_data, optimizer, scheduler, epoch, bptt=args.bptt, clip=args.clip,
                    max_batches=args.max_train_batches, forward=forward,
                    on_batch=progress if progress.enabled else None)
        if progress.enabled:
            progress.close()
        with compress.optim.averaged_weights(optimizer):  # NT-ASGD: the averaged model is the one evaluated
            val_loss = evaluate(model, val_data, args.bptt, args.eval_batch_size)
        total = sparsity_total(sparsity_summary(compress.structured.dense_equivalent(model)))
        print(f"| end of epoch {epoch:3d} | {time.time() - epoch_start:5.1f}s | lr {optimizer.param_groups[0]['lr']:g} "
              f"| valid ppl {math.exp(val_loss):8.2f} | sparsity {total.sparsity:5.2f}%")
        if not schedule_drives_lr and val_loss >= best_val and args.anneal > 1:
            for group in optimizer.param_groups:
                group["lr"] /= args.anneal
        best_val = min(best_val, val_loss)
        scheduler.on_epoch_end(epoch, optimizer, metrics={"min": val_loss, "max": -val_loss})
        if args.save:
            compress.save_checkpoint(args.save, model, optimizer, scheduler, epoch=epoch, best_val=best_val,
                                     args=vars(args))
        epoch_seconds = max(epoch_seconds, time.time() - epoch_start)

    # As in Distiller, the final (fully pruned) model is tested, not the best-validation one.
    with compress.optim.averaged_weights(optimizer):
        val_loss = evaluate(model, val_data, args.bptt, args.eval_batch_size)
        test_loss = evaluate(model, test_data, args.bptt, args.eval_batch_size)
    rows = sparsity_summary(compress.structured.dense_equivalent(model))
    total = sparsity_total(rows)
    result = {"name": args.name or (os.path.basename(args.schedule) if args.schedule else "dense"),
              "sparsity": total.sparsity / 100, "nnz": total.nnz,
              "val_ppl": math.exp(val_loss), "test_ppl": math.exp(test_loss)}
    if best:
        result["best_test_ppl"] = best
    print(compress.sparsity_table(rows))
    print(compress.perplexity_table([result]))
    print(f"done in {time.time() - started:.1f}s")
    if args.results:
        with open(args.results, "a") as f:
            f.write(json.dumps(result) + "\n")
    return result


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """``train(parse_args(argv))``: the command line of ``examples/word_lm.py``."""
    return train(parse_args(argv))


if __name__ == "__main__":
    main()
