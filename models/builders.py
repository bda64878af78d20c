"""The word-LM command line and what it builds: flags, corpus, model, optimizer and the optimizer's schedule.

``examples/word_lm.py``, the paper scripts of ``examples/papers/`` and the inspection task
(:mod:`compress_models.tasks`) read the same flags, so a checkpoint written by one of them stores flags the others
can rebuild its model from. The flags are those of PyTorch's word-LM example, the predefined-sparseness flags of
SparseSeqModels, the model flags of the RHN, ON-LSTM and AWD-LSTM zoo, and the seed optimizers of Selfish-RNN's
script (``--optimizer sgd|adam``).

Example:
    >>> args = parse_args(["--emsize", "8", "--nhid", "8", "--nlayers", "1", "--optimizer", "sgd"])
    >>> model = build_model(args, ntokens=20)
    >>> type(model).__name__, type(build_optimizer(args, model)).__name__
    ('RNNModel', 'SparseNTASGD')
    >>> [p.get("extension") for p in optimizer_schedule(args)["policies"]]
    [{'instance_name': 'nt_asgd'}]
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from compress.optim import SparseNTASGD
from compress.scheduling.config import read_schedule

from .awd_lstm import AWDLSTMModel
from .corpus import Corpus, load_corpus, synthetic_corpus
from .dropout import ar_tar_loss
from .onlstm import ONLSTMModel
from .rhn import RHNModel
from .sparse_lm import SPARSE_MODES, SparseRNNModel
from .word_lm import RNNModel

__all__ = ["MODELS", "RNN_MODELS", "ZOO_MODELS", "OPTIMIZERS", "add_arguments", "parser", "parse_args",
           "vocab_order", "build_corpus", "build_model", "build_optimizer", "optimizer_schedule", "ar_tar_weights",
           "ar_tar_forward"]

#: ``--model`` values of :class:`~compress_models.RNNModel` (PyTorch's example).
RNN_MODELS = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")
#: ``--model`` values of the zoo: RHN, ON-LSTM and AWD-LSTM (the models of Selfish-RNN's paper).
ZOO_MODELS = ("RHN", "ONLSTM", "AWD")
MODELS = RNN_MODELS + ZOO_MODELS
#: ``--optimizer`` values: the seed optimizers of Selfish-RNN's script.
OPTIMIZERS = ("sgd", "adam")
_AR_TAR_DEFAULTS = {"AWD": (2.0, 1.0), "ONLSTM": (2.0, 1.0)}  # AWD-LSTM's alpha, beta; ON-LSTM reuses them


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add every word-LM flag to ``p`` (the flags of ``examples/word_lm.py``).

    Args:
        p: the parser to extend; a paper script adds its own groups after these.
    """
    p.add_argument("--schedule", "--compress", dest="schedule", help="YAML compression schedule")
    p.add_argument("--data", help="folder with train.txt/valid.txt/test.txt (default: the embedded synthetic corpus)")
    p.add_argument("--model", default="LSTM", choices=MODELS)
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
    p.add_argument("--wd", "--weight-decay", "--wdecay", dest="wd", type=float, default=0.0)
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
    o = p.add_argument_group("optimizer (default: plain torch SGD with --momentum and --anneal)")
    o.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                   help="as Selfish-RNN's script: sgd = sparse NT-ASGD (SGD, averaging once validation stalls), "
                        "adam = Adam(betas=(0, 0.999), eps=1e-9) with ReduceLROnPlateau")
    o.add_argument("--nonmono", type=int, default=5, help="NT-ASGD's patience in epochs (--optimizer sgd)")
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
    m = p.add_argument_group("RHN, ON-LSTM and AWD-LSTM (--model RHN|ONLSTM|AWD)")
    m.add_argument("--dropouth", type=float, default=0.3, help="dropout on recurrent states / between layers")
    m.add_argument("--dropouti", type=float, default=0.65, help="locked dropout on the embeddings")
    m.add_argument("--dropoute", type=float, default=0.1, help="embedding (word) dropout")
    m.add_argument("--wdrop", type=float, default=0.5, help="DropConnect on recurrent weights (ON-LSTM, AWD)")
    m.add_argument("--depth", "--nrecurrence-depth", "--nrecurrence_depth", dest="depth", type=int, default=10,
                   help="RHN recurrence depth")
    m.add_argument("--couple", action="store_true", help="RHN: couple the carry gate to the transform gate")
    m.add_argument("--chunk-size", "--chunk_size", dest="chunk_size", type=int, default=None,
                   help="ON-LSTM units per chunk, dividing --emsize and --nhid (default: 10, or the largest "
                        "common divisor of both below 10)")
    m.add_argument("--alpha", type=float, default=None, help="AR weight (default 2 for AWD and ONLSTM, else 0)")
    m.add_argument("--beta", type=float, default=None, help="TAR weight (default 1 for AWD and ONLSTM, else 0)")


def parser(description: str = "Train and evaluate a word-level recurrent language model under a compression "
                              "schedule.") -> argparse.ArgumentParser:
    """A parser with every word-LM flag (:func:`add_arguments`).

    Args:
        description: the ``--help`` text's first line.

    Example:
        >>> parser().parse_args(["--nhid", "64"]).nhid
        64
    """
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(p)
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The word-LM flags of ``argv`` (default: ``sys.argv[1:]``).

    Raises:
        SystemExit: a flag argparse refuses (after printing the usage).

    Example:
        >>> parse_args([]).model, parse_args(["--wdecay", "1e-6"]).wd
        ('LSTM', 1e-06)
    """
    return parser().parse_args(argv)


def vocab_order(args: argparse.Namespace) -> str:
    """The vocabulary order the flags ask for; ``auto`` sorts rarest first only for block-sparse embeddings.

    Example:
        >>> vocab_order(parse_args([])), vocab_order(parse_args(["--emblocks", "4"]))
        ('none', 'up')
    """
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


def build_corpus(args: argparse.Namespace) -> Corpus:
    """The corpus of ``--data``, or the embedded synthetic one (``--synthetic-tokens`` of training text and a
    tenth of that, at least 2,000, for validation and test).

    Example:
        >>> len(build_corpus(parse_args(["--synthetic-tokens", "3000"])).valid)
        2000
    """
    order = vocab_order(args)
    if args.data:
        return load_corpus(args.data, sort_vocab=order)
    held_out = max(2000, args.synthetic_tokens // 10)
    return synthetic_corpus(seed=0, train_tokens=args.synthetic_tokens, valid_tokens=held_out,
                            test_tokens=held_out, sort_vocab=order)


def build_model(args: argparse.Namespace, ntokens: int) -> nn.Module:
    """The model the flags describe, for a vocabulary of ``ntokens`` words.

    Raises:
        SystemExit: predefined-sparseness flags with a ``--model`` other than LSTM.

    Example:
        >>> type(build_model(parse_args(["--model", "RHN", "--nlayers", "1", "--depth", "2"]), 10)).__name__
        'RHNModel'
    """
    if args.model == "RHN":
        return RHNModel(ntokens, args.emsize, args.nhid, args.nlayers, args.depth, args.dropout, args.dropouth,
                        args.dropouti, args.dropoute, args.tied, args.couple)
    if args.model == "ONLSTM":
        chunk = args.chunk_size or max(c for c in range(1, 11) if args.emsize % c == 0 and args.nhid % c == 0)
        return ONLSTMModel(ntokens, args.emsize, args.nhid, args.nlayers, chunk, args.dropout,
                           args.dropouth, args.dropouti, args.dropoute, args.wdrop, args.tied)
    if args.model == "AWD":
        return AWDLSTMModel(ntokens, args.emsize, args.nhid, args.nlayers, args.dropout, args.dropouth,
                            args.dropouti, args.dropoute, args.wdrop, args.tied)
    if args.sparse_mode or args.emblocks > 1 or args.emdensity < 1:
        if args.model != "LSTM":
            raise SystemExit(f"--sparse-mode/--emblocks build LSTM layers; --model {args.model} is not supported")
        return SparseRNNModel(ntokens, args.emsize, args.nhid, args.nlayers, args.dropout, args.tied,
                              args.sparse_mode or "direct", args.sparse_fract, args.emblocks, args.emdensity)
    return RNNModel(args.model, ntokens, args.emsize, args.nhid, args.nlayers, args.dropout, args.tied)


def build_optimizer(args: argparse.Namespace, model: nn.Module) -> torch.optim.Optimizer:
    """Plain SGD (``--momentum``, ``--wd``) by default; Selfish-RNN's seed optimizers with ``--optimizer``.

    Example:
        >>> type(build_optimizer(parse_args(["--optimizer", "adam"]), nn.Linear(2, 2))).__name__
        'Adam'
    """
    if args.optimizer == "sgd":
        return SparseNTASGD(model.parameters(), lr=args.lr, weight_decay=args.wd)
    if args.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.0, 0.999), eps=1e-9, weight_decay=args.wd)
    return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.wd)


def optimizer_schedule(args: argparse.Namespace) -> Dict[str, Any]:
    """The schedule sections ``--optimizer`` needs: NT-ASGD's switch (``sgd``) or ``ReduceLROnPlateau`` (``adam``),
    each active over all ``--epochs``; ``{"policies": []}`` without ``--optimizer``.

    Returns:
        ``{"extensions" or "lr_schedulers": {...}, "policies": [...]}``, to merge into a schedule dict.

    Example:
        >>> sorted(optimizer_schedule(parse_args(["--optimizer", "adam"])))
        ['lr_schedulers', 'policies']
    """
    span = {"starting_epoch": 0, "ending_epoch": max(args.epochs, 1)}
    if args.optimizer == "sgd":
        return {"extensions": {"nt_asgd": {"class": "NTASGDSwitch", "nonmono": args.nonmono}},
                "policies": [{"extension": {"instance_name": "nt_asgd"}, **span}]}
    if args.optimizer == "adam":
        return {"lr_schedulers": {"plateau": {"class": "ReduceLROnPlateau", "mode": "min", "factor": 0.5,
                                              "patience": 2}},
                "policies": [{"lr_scheduler": {"instance_name": "plateau"}, **span}]}
    return {"policies": []}


def ar_tar_weights(args: argparse.Namespace) -> Optional[Tuple[float, float]]:
    """``(alpha, beta)`` of the AR/TAR loss the flags ask for, or ``None`` when both are 0.

    Raises:
        SystemExit: ``--alpha``/``--beta`` with a model that has no AR/TAR outputs.
    """
    default = _AR_TAR_DEFAULTS.get(args.model, (0.0, 0.0))
    alpha = default[0] if args.alpha is None else args.alpha
    beta = default[1] if args.beta is None else args.beta
    if not alpha and not beta:
        return None
    if args.model not in ZOO_MODELS:
        raise SystemExit(f"--alpha/--beta (AR/TAR) need --model {', '.join(ZOO_MODELS)}; got --model {args.model}")
    return alpha, beta


def ar_tar_forward(args: argparse.Namespace):
    """The ``forward`` for :func:`compress_models.train_epoch` that adds the AR/TAR terms the flags ask for, or
    ``None`` (the plain forward) when they ask for none.

    Raises:
        SystemExit: as :func:`ar_tar_weights`.

    Example:
        >>> ar_tar_forward(parse_args([])) is None, callable(ar_tar_forward(parse_args(["--model", "AWD"])))
        (True, True)
    """
    weights = ar_tar_weights(args)
    if weights is None:
        return None

    def forward(model: nn.Module, data: torch.Tensor, hidden: Any) -> Tuple[torch.Tensor, Any, torch.Tensor]:
        output, hidden, raw, dropped = model(data, hidden, return_outputs=True)
        return output, hidden, ar_tar_loss(raw, dropped, *weights)

    return forward

