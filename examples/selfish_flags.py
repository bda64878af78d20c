"""The Selfish-RNN research script's command line for examples/word_lm.py, translated into a compress schedule.

``python main.py --sparse --optimizer sgd --growth random --death magnitude ...`` (Selfish-RNN) becomes
``python examples/word_lm.py --sparse --optimizer sgd --growth random --death magnitude ...``: the dynamic-sparsity
flags turn into a ``DynamicSparsityPruner``, ``--optimizer sgd`` into sparse NT-ASGD with its non-monotone switch,
``--optimizer adam`` into Adam with ``ReduceLROnPlateau`` (as the seed script does). ``--print-schedule`` prints
the schedule as YAML, ready for ``--schedule``. Also here: the flags and builders of the RHN, ON-LSTM and AWD-LSTM
models, and their AR/TAR loss terms.
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, Optional, Tuple

import torch
import yaml

from compress.optim import SparseNTASGD
from compress.pruning.criteria.prune_regrow import (
    DEATH_MODES,
    GROWTH_MODES,
    INIT_MODES,
    REDISTRIBUTION_MODES,
)
from compress_models import AWDLSTMModel, ONLSTMModel, RHNModel, ar_tar_loss

MODELS = ("RHN", "ONLSTM", "AWD")
OPTIMIZERS = ("sgd", "adam")
_AR_TAR_DEFAULTS = {"AWD": (2.0, 1.0), "ONLSTM": (2.0, 1.0)}  # AWD-LSTM's alpha, beta; ON-LSTM reuses them


def _update_frequency(text: str):
    if text == "epoch":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'epoch' or a number of minibatches, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of minibatches, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the model flags of RHN/ON-LSTM/AWD-LSTM and the Selfish-RNN flags to ``parser``."""
    m = parser.add_argument_group("RHN, ON-LSTM and AWD-LSTM (--model RHN|ONLSTM|AWD)")
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
    m.add_argument("--alpha", type=float, default=None,
                   help="AR weight (default 2 for AWD and ONLSTM, else 0)")
    m.add_argument("--beta", type=float, default=None,
                   help="TAR weight (default 1 for AWD and ONLSTM, else 0)")
    s = parser.add_argument_group("dynamic sparse training (the Selfish-RNN script's flags, turned into a schedule)")
    s.add_argument("--sparse", action="store_true", help="train sparse with a DynamicSparsityPruner")
    s.add_argument("--density", type=float, default=0.33, help="fraction of weights kept")
    s.add_argument("--sparse-init", "--sparse_init", dest="sparse_init", choices=INIT_MODES, default="uniform")
    s.add_argument("--death", choices=DEATH_MODES, default="magnitude")
    s.add_argument("--growth", choices=GROWTH_MODES, default="random")
    s.add_argument("--redistribution", choices=REDISTRIBUTION_MODES, default="none")
    s.add_argument("--death-rate", "--death_rate", dest="death_rate", type=float, default=0.5,
                   help="initial death rate (annealed along a cosine to 0.005, per minibatch)")
    s.add_argument("--update-frequency", "--update_frequency", dest="update_frequency", type=_update_frequency,
                   default="epoch", help="prune and regrow every epoch, or every N minibatches")
    s.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                   help="as the seed script: sgd = sparse NT-ASGD (SGD, averaging once validation stalls), "
                        "adam = Adam(betas=(0, 0.999), eps=1e-9) with ReduceLROnPlateau; default: plain torch SGD "
                        "with --momentum and --anneal")
    s.add_argument("--nonmono", type=int, default=5, help="NT-ASGD's patience in epochs")
    s.add_argument("--wdecay", dest="wd", type=float, default=argparse.SUPPRESS, help="same as --wd")
    s.add_argument("--print-schedule", action="store_true", help="print the schedule these flags make, and exit")


def build_model(args: argparse.Namespace, ntokens: int) -> Optional[torch.nn.Module]:
    """The RHN, ON-LSTM or AWD-LSTM model the flags describe; ``None`` for the other ``--model`` values."""
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
    return None


def ar_tar_weights(args: argparse.Namespace) -> Optional[Tuple[float, float]]:
    """``(alpha, beta)`` when the loop should add AR/TAR, else ``None``."""
    default = _AR_TAR_DEFAULTS.get(args.model, (0.0, 0.0))
    alpha = default[0] if args.alpha is None else args.alpha
    beta = default[1] if args.beta is None else args.beta
    if not alpha and not beta:
        return None
    if args.model not in MODELS:
        raise SystemExit(f"--alpha/--beta (AR/TAR) need --model {', '.join(MODELS)}; got --model {args.model}")
    return alpha, beta


def forward(model: torch.nn.Module, data: torch.Tensor, hidden: Any, ar_tar: Optional[Tuple[float, float]]):
    """``(logits, hidden, extra_loss)``: the model's forward pass and its AR/TAR terms (0 without them)."""
    if ar_tar is None:
        output, hidden = model(data, hidden)
        return output, hidden, 0.0
    output, hidden, raw, dropped = model(data, hidden, return_outputs=True)
    return output, hidden, ar_tar_loss(raw, dropped, *ar_tar)


def build_optimizer(args: argparse.Namespace, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Plain SGD by default; the seed script's optimizers with ``--optimizer``."""
    if args.optimizer == "sgd":
        return SparseNTASGD(model.parameters(), lr=args.lr, weight_decay=args.wd)
    if args.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.0, 0.999), eps=1e-9, weight_decay=args.wd)
    return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.wd)


def translated_schedule(args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """The schedule the seed flags ask for, or ``None`` when none of them is given.

    With ``--schedule`` the file is the schedule and only ``--optimizer`` is read from the seed flags (the
    file brings its own ``NTASGDSwitch``); ``--sparse`` with ``--schedule`` is an error.
    """
    if args.schedule:
        if args.sparse:
            raise SystemExit("--sparse builds a schedule from the flags; give it or --schedule, not both")
        return None
    if not args.sparse and args.optimizer is None:
        return None
    schedule: Dict[str, Any] = {"version": 1}
    policies = []
    span = {"starting_epoch": 0, "ending_epoch": max(args.epochs, 1)}
    if args.sparse:
        schedule["pruners"] = {"selfish": {
            "class": "DynamicSparsityPruner", "density": args.density, "sparse_init": args.sparse_init,
            "death": args.death, "growth": args.growth, "redistribution": args.redistribution,
            "death_rate": args.death_rate, "death_rate_decay": "cosine", "death_rate_floor": 0.005,
            "update_frequency": args.update_frequency, "seed": args.seed}}
        policies.append({"pruner": {"instance_name": "selfish"}, **span})
    if args.optimizer == "sgd":
        schedule["extensions"] = {"nt_asgd": {"class": "NTASGDSwitch", "nonmono": args.nonmono}}
        policies.append({"extension": {"instance_name": "nt_asgd"}, **span})
    elif args.optimizer == "adam":
        schedule["lr_schedulers"] = {"plateau": {"class": "ReduceLROnPlateau", "mode": "min", "factor": 0.5,
                                                 "patience": 2}}
        policies.append({"lr_scheduler": {"instance_name": "plateau"}, **span})
    schedule["policies"] = policies
    return schedule


def schedule_yaml(schedule: Dict[str, Any], args: argparse.Namespace) -> str:
    """``schedule`` as a YAML file, with the ``# example-args:`` header the word-LM example needs to run it."""
    needs = []
    if args.model != "LSTM":
        needs += ["--model", args.model]
    if args.tied:
        needs.append("--tied")
    if getattr(args, "couple", False):
        needs.append("--couple")
    if args.optimizer:
        needs += ["--optimizer", args.optimizer]
    header = "# Made by examples/word_lm.py --print-schedule from the Selfish-RNN flags.\n"
    if needs:
        header += f"# example-args: {' '.join(needs)}\n"
    return header + yaml.safe_dump(schedule, sort_keys=False)


def print_schedule(args: argparse.Namespace) -> Dict[str, Any]:
    """Print the schedule the flags make (``--print-schedule``); returns ``{'schedule': yaml_text}``."""
    schedule = translated_schedule(args)
    if schedule is None:
        if not args.schedule:
            raise SystemExit("--print-schedule prints the schedule that --sparse/--optimizer make; give them")
        with open(args.schedule, encoding="utf-8") as f:
            text = f.read()
    else:
        text = schedule_yaml(schedule, args)
    print(text, end="")
    return {"schedule": text}
