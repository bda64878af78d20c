"""The word-LM trainer behind ``examples/word_lm.py``: train under a schedule, checkpoint, print the tables.

:func:`train` runs the loop of PyTorch's word-LM example with every scheduler hook (:func:`~compress_models.
train_epoch`), evaluates after each epoch (the NT-ASGD average when there is one), anneals the LR as that example
does unless the schedule or ``--optimizer`` owns it, writes a checkpoint after every epoch (``--save``), continues
from one (``--resume``), stops before an epoch that would pass ``--time-budget``, and prints the sparsity and
perplexity tables of the final model. Under ``torchrun --nproc_per_node N`` each rank trains a
``DistributedDataParallel`` copy on its own shard of the training tokens (:mod:`compress_models.distributed`);
rank 0 prints and writes. Paper scripts translate their own flags into a schedule and call it;
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
import dataclasses
import json
import logging
import math
import os
import sys
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import torch

import compress
from compress.distributed import broadcast_object
from compress.io.checkpoint import untrained_regrowth
from compress.reports.tables import sparsity_summary, sparsity_total
from compress.scheduling.policies import DynamicSparsityPolicy

from .builders import (
    ar_tar_forward,
    build_corpus,
    build_model,
    build_optimizer,
    optimizer_schedule,
    parse_args,
)
from .corpus import batchify
from .distributed import finish, init_from_environment, shard_tokens, wrap
from .training import evaluate, train_epoch

__all__ = ["train", "main"]


class _Progress:
    """Progress of an epoch on stderr: a one-line bar on a terminal; elsewhere (a log file, a pipe) a plain line
    at most every ``interval`` seconds and none with ``\\r``; silent when disabled."""

    def __init__(self, prefix: str, optimizer: torch.optim.Optimizer, enabled: bool, interval: float = 30.0):
        self.prefix, self.optimizer, self.enabled = prefix, optimizer, enabled
        self.start = self.last = time.time()
        self.tty = enabled and sys.stderr.isatty()
        self.interval = interval

    def __call__(self, done: int, total: int, loss: float) -> None:
        now = time.time()
        if not self.tty and now - self.last < self.interval:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        status = (f"{done}/{total} loss {loss:5.2f} ppl {math.exp(min(loss, 50)):8.2f} "
                  f"lr {self.optimizer.param_groups[0]['lr']:g} {rate:5.1f} it/s")
        if self.tty:
            width = 24
            filled = int(width * done / max(total, 1))
            sys.stderr.write(f"\r{self.prefix} [{'#' * filled}{'.' * (width - filled)}] {status}")
        else:
            sys.stderr.write(f"{self.prefix} {status}\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _fit_dynamic_policies(scheduler, epochs: int, say: Callable[[str], None] = print) -> None:
    """End every dynamic-sparsity policy that would run past ``epochs`` at ``epochs``, and say so: its last
    prune-and-regrow then comes before the last epoch's training, never after it (regrown weights left at zero,
    never trained, would make the final model sparser than its density)."""
    for _, name, policy in scheduler.policies:
        timing = policy.timing
        if not isinstance(policy, DynamicSparsityPolicy) or timing.last < epochs:
            continue
        if timing.epochs is not None or timing.starting_epoch >= epochs:
            say(f"WARNING {name}: the dynamic-sparsity policy's epochs {list(timing.active_epochs)[:5]}... do not "
                  f"fit --epochs {epochs}; its last regrown weights will not train")
            continue
        policy.timing = dataclasses.replace(timing, ending_epoch=epochs)
        say(f"{name}: ending_epoch {timing.ending_epoch} -> {epochs} (fitted to --epochs, so every regrown weight "
              f"trains; --keep-schedule-epochs keeps the schedule's)")


def _metrics_callbacks(args: argparse.Namespace, scheduler, history: list) -> None:
    """Per-epoch metrics: kept for ``--plot``, written to ``--metrics-csv`` and ``--tensorboard``."""
    scheduler.add_metrics_callback(history.append)
    if getattr(args, "metrics_csv", None):
        scheduler.add_metrics_callback(compress.reports.CSVMetricsWriter(args.metrics_csv))
    if getattr(args, "tensorboard", None):
        scheduler.add_metrics_callback(compress.reports.TensorBoardWriter(args.tensorboard))


def _run_name(args: argparse.Namespace) -> str:
    if args.name:
        return args.name
    if args.schedule:
        return os.path.basename(args.schedule)
    if args.sparse_mode or args.emblocks > 1 or args.emdensity < 1:
        parts = [f"{args.sparse_mode} {args.sparse_fract:g}" if args.sparse_mode else "",
                 f"embedding {args.emblocks} blocks, density {args.emdensity:g}" if args.emblocks > 1 else ""]
        return "predefined sparse (" + "; ".join(p for p in parts if p) + ")"
    return "dense"


def _silent(*args: Any, **kwargs: Any) -> None:
    """``print`` of the ranks other than 0."""


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
    joins_group = not torch.distributed.is_initialized()  # a group the caller made is the caller's to end
    rank, world_size, device = init_from_environment(args.cuda)
    say = print if rank == 0 else _silent
    if args.tf32:
        torch.set_float32_matmul_precision("high")
    corpus = build_corpus(args)
    best = None if args.data else corpus.best_perplexity("test")
    ntokens = len(corpus.dictionary)
    train_tokens = shard_tokens(corpus.train, rank, world_size, args.batch_size) if world_size > 1 else corpus.train
    train_data = batchify(train_tokens, args.batch_size, device)
    val_data = batchify(corpus.valid, args.eval_batch_size, device)
    test_data = batchify(corpus.test, args.eval_batch_size, device)

    model = build_model(args, ntokens).to(device)
    net = wrap(model, device)  # DDP under torchrun, else the model itself
    if rank:
        torch.manual_seed(args.seed + rank)  # each rank its own dropout masks; the library shares its own draws
    optimizer = build_optimizer(args, model)
    scheduler = _scheduler(args, net, optimizer, schedule,
                           lambda m: math.exp(evaluate(model, val_data, args.bptt, args.eval_batch_size)))
    # the seed's optimizers own their learning rate (NT-ASGD keeps it constant, Adam has ReduceLROnPlateau)
    schedule_drives_lr = args.optimizer is not None or any(kind == "lr_scheduler" for kind, _, _ in scheduler.policies)
    forward = ar_tar_forward(args)
    if not getattr(args, "keep_schedule_epochs", False):
        _fit_dynamic_policies(scheduler, args.epochs, say)
    history: list = []
    _metrics_callbacks(args, scheduler, history)

    start_epoch, best_val = 0, float("inf")
    if args.resume:
        extra = compress.load_checkpoint(args.resume, net, optimizer, scheduler)
        start_epoch, best_val = int(extra["epoch"]) + 1, float(extra["best_val"])
        say(f"resumed from {args.resume} at epoch {start_epoch}")

    steps = (train_data.size(0) - 1 + args.bptt - 1) // args.bptt
    if args.max_train_batches:
        steps = min(steps, args.max_train_batches)
    say(f"{sum(p.numel() for p in model.parameters()):,} parameters, {ntokens} words, {steps} minibatches/epoch, "
        f"{len(scheduler.policies)} policies" + (f", best achievable test ppl {best:.2f}" if best else "")
        + (f", {world_size} ranks (global batch {world_size * args.batch_size})" if world_size > 1 else ""))
    started = time.time()
    epoch_seconds = 0.0
    for epoch in range(start_epoch, args.epochs):
        # rank 0's clock decides, so that every rank stops at the same epoch
        if args.time_budget and broadcast_object(time.time() - started + epoch_seconds > args.time_budget):
            say(f"time budget reached after epoch {epoch - 1}; continue with --resume {args.save}")
            if joins_group:
                finish()
            return {"unfinished": True, "epoch": epoch - 1}
        epoch_start = time.time()
        scheduler.on_epoch_begin(epoch, optimizer)
        progress = _Progress(f"epoch {epoch:3d}", optimizer, not args.no_progress and rank == 0)
        train_epoch(net, train_data, optimizer, scheduler, epoch, bptt=args.bptt, clip=args.clip,
                    max_batches=args.max_train_batches, forward=forward,
                    on_batch=progress if progress.enabled else None)
        if progress.enabled:
            progress.close()
        with compress.optim.averaged_weights(optimizer):  # NT-ASGD: the averaged model is the one evaluated
            val_loss = evaluate(model, val_data, args.bptt, args.eval_batch_size)
        total = sparsity_total(sparsity_summary(compress.structured.dense_equivalent(model)))
        say(f"| end of epoch {epoch:3d} | {time.time() - epoch_start:5.1f}s | lr {optimizer.param_groups[0]['lr']:g} "
            f"| valid ppl {math.exp(val_loss):8.2f} | sparsity {total.sparsity:5.2f}%")
        if not schedule_drives_lr and val_loss >= best_val and args.anneal > 1:
            for group in optimizer.param_groups:
                group["lr"] /= args.anneal
        best_val = min(best_val, val_loss)
        scheduler.on_epoch_end(epoch, optimizer, metrics={"min": val_loss, "max": -val_loss})
        if args.save:
            compress.save_checkpoint(args.save, net, optimizer, scheduler, epoch=epoch, best_val=best_val,
                                     args=vars(args))
        epoch_seconds = max(epoch_seconds, time.time() - epoch_start)

    # As in Distiller, the final (fully pruned) model is tested, not the best-validation one.
    with compress.optim.averaged_weights(optimizer):
        val_loss = evaluate(model, val_data, args.bptt, args.eval_batch_size)
        test_loss = evaluate(model, test_data, args.bptt, args.eval_batch_size)
    rows = sparsity_summary(compress.structured.dense_equivalent(model))
    total = sparsity_total(rows)
    result = {"name": _run_name(args),
              "sparsity": total.sparsity / 100, "nnz": total.nnz,
              "val_ppl": math.exp(val_loss), "test_ppl": math.exp(test_loss)}
    if best:
        result["best_test_ppl"] = best
    # dynamic sparsity: the mask's sparsity beside the values' shows weights regrown but never trained
    dynamic = any(isinstance(p, DynamicSparsityPolicy) for _, _, p in scheduler.policies)
    say(compress.sparsity_table(rows, masks=scheduler if dynamic else None))
    say(compress.perplexity_table([result]))
    if untrained_regrowth(scheduler):
        say(f"WARNING: the final model holds {untrained_regrowth(scheduler)} regrown weights that never trained "
            f"(the dynamic-sparsity policy ends after --epochs; see --keep-schedule-epochs)")
    if getattr(args, "plot", None) and history and rank == 0:
        if getattr(args, "metrics_csv", None):  # the whole run, also when it was resumed
            history = compress.reports.read_metrics_csv(args.metrics_csv)
        say(f"plot: {compress.plot_sparsity_history(history, args.plot, title=result['name'])}")
    say(f"done in {time.time() - started:.1f}s")
    if joins_group:
        finish()
    if args.results and rank == 0:
        with open(args.results, "a") as f:
            f.write(json.dumps(result) + "\n")
    return result


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """``train(parse_args(argv))``: the command line of ``examples/word_lm.py``."""
    return train(parse_args(argv))


if __name__ == "__main__":
    main()
