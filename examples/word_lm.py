"""Train and evaluate a word-level recurrent language model under a compression schedule.

The loop is PyTorch's word-language-model example with Distiller's scheduler hooks, so any schedule of
``schedules/`` (or Distiller's LM schedules) drives pruning of the model. With no ``--data`` it trains on an
embedded synthetic corpus whose best achievable perplexity is known and printed beside the model's.

    python examples/word_lm.py --schedule schedules/agp_lstm.yaml
    python examples/word_lm.py --schedule schedules/agp_lstm.yaml --data ../shared/data/ptb --cuda \\
        --emsize 650 --nhid 650 --dropout 0.5 --epochs 40
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from typing import Dict

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import compress
from compress.reports.tables import sparsity_summary, sparsity_total
from compress.scheduling.config import read_schedule
from compress_models import (
    RNNModel,
    batchify,
    get_batch,
    load_corpus,
    repackage_hidden,
    synthetic_corpus,
)
from compress_models.sparse_lm import SPARSE_MODES, SparseRNNModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import selfish_flags


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--schedule", "--compress", dest="schedule", help="YAML compression schedule")
    p.add_argument("--data", help="folder with train.txt/valid.txt/test.txt (default: the embedded synthetic corpus)")
    p.add_argument("--model", default="LSTM", choices=["LSTM", "GRU", "RNN_TANH", "RNN_RELU", *selfish_flags.MODELS])
    p.add_argument("--emsize", type=int, default=128)
    p.add_argument("--nhid", type=int, default=128)
    p.add_argument("--nlayers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--tied", action="store_true", help="tie the decoder to the embedding (needs emsize == nhid)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=20.0)
    p.add_argument("--anneal", type=float, default=4.0,
                   help="divide the LR by this when validation loss does not improve (PyTorch example); "
                        "ignored when the schedule has lr_schedulers")
    p.add_argument("--clip", type=float, default=0.25)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--wd", "--weight-decay", dest="wd", type=float, default=0.0)
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=20)
    p.add_argument("--eval-batch-size", type=int, default=10)
    p.add_argument("--bptt", type=int, default=35)
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--cuda", action="store_true")
    p.add_argument("--tf32", action="store_true",
                   help="TF32 tensor cores for the fp32 matrix products (GPUs since Ampere), as cuDNN's LSTM already "
                        "uses by default; mainly the decoder's product over the vocabulary (10-bit mantissa)")
    p.add_argument("--save", help="checkpoint written after every epoch (atomically)")
    p.add_argument("--resume", help="checkpoint to continue from (same schedule and model flags)")
    p.add_argument("--name", help="experiment name in the perplexity table (default: the schedule's file name)")
    p.add_argument("--results", help="append the final row as JSON to this file")
    p.add_argument("--max-train-batches", type=int, default=0, help="cap minibatches per epoch (0: all)")
    p.add_argument("--time-budget", type=float, default=0,
                   help="seconds: stop after the last epoch that fits (with --save, continue later with --resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--synthetic-tokens", type=int, default=100_000, help="train tokens of the embedded corpus")
    sparse = p.add_argument_group("predefined sparseness (SparseSeqModels' flags; any of them builds a SparseRNNModel)")
    sparse.add_argument("--sparse-mode", "--sparse_mode", dest="sparse_mode", choices=SPARSE_MODES,
                        help="which sizes are widened and paid for with block-sparse LSTM layers (models/sparse_lm.py)")
    sparse.add_argument("--sparse-fract", "--sparse_fract", dest="sparse_fract", type=float, default=1.0,
                        help="reduction of the widened sizes, e.g. 0.66666 with --nhid 1725 = the budget of 1150")
    sparse.add_argument("--emblocks", type=int, default=1, help="column blocks of a block-sparse embedding")
    sparse.add_argument("--emdensity", type=float, default=1.0, help="trainable share of the block-sparse embedding")
    sparse.add_argument("--vocab-order", "--vocab_order", dest="vocab_order", default="auto",
                        choices=["auto", "none", "up", "down"],
                        help="word id order: up = rarest first; auto = up when the embedding is block-sparse "
                             "(--emblocks > 1, or a BlockEmbeddingPruner in the schedule), else none")
    selfish_flags.add_arguments(p)
    return p.parse_args(argv)


def vocab_order(args: argparse.Namespace) -> str:
    """The vocabulary order the flags ask for; ``auto`` sorts rarest first only for block-sparse embeddings."""
    if args.vocab_order != "auto":
        return args.vocab_order
    if args.emblocks > 1 or args.emdensity < 1:
        return "up"
    if args.schedule:
        data, _ = read_schedule(args.schedule)
        pruners = data.get("pruners") if isinstance(data, dict) else None
        if isinstance(pruners, dict) and any(isinstance(spec, dict) and spec.get("class") == "BlockEmbeddingPruner"
                                             for spec in pruners.values()):
            return "up"
    return "none"


class Progress:
    """A one-line progress bar on stderr (no dependency); silent when disabled or not a terminal-like stream."""

    def __init__(self, total: int, prefix: str, enabled: bool):
        self.total, self.prefix, self.enabled = total, prefix, enabled
        self.start = time.time()

    def update(self, done: int, loss: float, lr: float) -> None:
        if not self.enabled:
            return
        width = 24
        filled = int(width * done / max(self.total, 1))
        rate = done / max(time.time() - self.start, 1e-9)
        sys.stderr.write(f"\r{self.prefix} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                         f"loss {loss:5.2f} ppl {math.exp(min(loss, 50)):8.2f} lr {lr:g} {rate:5.1f} it/s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def evaluate(model, source: torch.Tensor, bptt: int, batch_size: int) -> float:
    """Mean token cross-entropy over ``source`` (chunks weighted by length, as in PyTorch's example)."""
    model.eval()
    total, count = 0.0, 0
    hidden = model.init_hidden(batch_size)
    with torch.no_grad():
        for i in range(0, source.size(0) - 1, bptt):
            data, targets = get_batch(source, i, bptt)
            output, hidden = model(data, hidden)
            hidden = repackage_hidden(hidden)
            total += F.cross_entropy(output.view(-1, output.size(-1)), targets.reshape(-1), reduction="sum").item()
            count += targets.numel()
    return total / max(count, 1)


def build_model(args, ntokens: int) -> torch.nn.Module:
    """The model the flags describe."""
    recurrent = selfish_flags.build_model(args, ntokens)
    if recurrent is not None:
        return recurrent
    if args.sparse_mode or args.emblocks > 1 or args.emdensity < 1:
        if args.model != "LSTM":
            raise SystemExit(f"--sparse-mode/--emblocks build LSTM layers; --model {args.model} is not supported")
        return SparseRNNModel(ntokens, args.emsize, args.nhid, args.nlayers, args.dropout, args.tied,
                              args.sparse_mode or "direct", args.sparse_fract, args.emblocks, args.emdensity)
    return RNNModel(args.model, ntokens, args.emsize, args.nhid, args.nlayers, args.dropout, args.tied)


def main(argv=None) -> Dict[str, object]:
    args = parse_args(argv)
    if args.print_schedule:
        return selfish_flags.print_schedule(args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if args.cuda else "cpu")
    if args.tf32:
        torch.set_float32_matmul_precision("high")
    if args.data:
        corpus = load_corpus(args.data, sort_vocab=vocab_order(args))
        best = None
    else:
        held_out = max(2000, args.synthetic_tokens // 10)
        corpus = synthetic_corpus(seed=0, train_tokens=args.synthetic_tokens, valid_tokens=held_out,
                                  test_tokens=held_out, sort_vocab=vocab_order(args))
        best = corpus.best_perplexity("test")
    ntokens = len(corpus.dictionary)
    train_data = batchify(corpus.train, args.batch_size, device)
    val_data = batchify(corpus.valid, args.eval_batch_size, device)
    test_data = batchify(corpus.test, args.eval_batch_size, device)

    model = build_model(args, ntokens).to(device)
    optimizer = selfish_flags.build_optimizer(args, model)
    translated = selfish_flags.translated_schedule(args)
    # Search-based pruners (StageWisePruner) measure candidates with evaluate(model); a schedule cannot hold one.
    def val_ppl(m):
        return math.exp(evaluate(m, val_data, args.bptt, args.eval_batch_size))

    if translated is not None:
        scheduler = compress.dict_config(model, optimizer, translated, evaluate=val_ppl)
    else:
        scheduler = (compress.file_config(model, optimizer, args.schedule, evaluate=val_ppl) if args.schedule
                     else compress.CompressionScheduler(model, optimizer))
    # the seed's optimizers own their learning rate (NT-ASGD keeps it constant, Adam has ReduceLROnPlateau)
    schedule_drives_lr = args.optimizer is not None or any(kind == "lr_scheduler" for kind, _, _ in scheduler.policies)
    ar_tar = selfish_flags.ar_tar_weights(args)

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
        model.train()
        hidden = model.init_hidden(args.batch_size)
        bar = Progress(steps, f"epoch {epoch:3d}", not args.no_progress)
        for batch, i in enumerate(range(0, steps * args.bptt, args.bptt)):
            data, targets = get_batch(train_data, i, args.bptt)
            hidden = repackage_hidden(hidden)
            scheduler.on_minibatch_begin(epoch, batch, steps, optimizer)
            output, hidden, extra_loss = selfish_flags.forward(model, data, hidden, ar_tar)
            loss = F.cross_entropy(output.view(-1, ntokens), targets.reshape(-1)) + extra_loss
            loss = scheduler.before_backward_pass(epoch, batch, steps, loss, optimizer)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            scheduler.before_parameter_optimization(epoch, batch, steps, optimizer)
            optimizer.step()
            scheduler.on_minibatch_end(epoch, batch, steps, optimizer)
            if batch % 10 == 0 or batch == steps - 1:
                bar.update(batch + 1, loss.item(), optimizer.param_groups[0]["lr"])
        bar.close()
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


if __name__ == "__main__":
    main()
