"""Selfish-RNN (Liu et al., ICML 2021): its research script's command line, translated into a compress schedule.

``python main.py --sparse --optimizer sgd --growth random --death magnitude ...`` (Selfish-RNN) becomes
``python examples/papers/selfish_rnn.py --sparse --optimizer sgd --growth random --death magnitude ...``: the
dynamic-sparsity flags turn into a ``DynamicSparsityPruner``, ``--optimizer sgd`` into sparse NT-ASGD with its
non-monotone switch, ``--optimizer adam`` into Adam with ``ReduceLROnPlateau`` (as the seed script does), and the
run is the general word-LM trainer's (every flag of ``examples/word_lm.py`` works here too: ``--model
RHN|ONLSTM|AWD``, ``--data``, ``--save``/``--resume``, ...). ``--print-schedule`` prints the schedule as YAML,
ready for ``examples/word_lm.py --schedule``:

    python examples/papers/selfish_rnn.py --sparse --optimizer sgd --growth random --death magnitude \\
        --redistribution none --density 0.33 --death-rate 0.8 --nonmono 5 --print-schedule > my_selfish.yaml
    python examples/word_lm.py --schedule my_selfish.yaml --optimizer sgd

``schedules/selfish_{lstm,rhn,onlstm}.yaml`` are the paper's three published recipes, made this way.
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, Optional, Sequence

import yaml

from compress.pruning.criteria.prune_regrow import (
    DEATH_MODES,
    GROWTH_MODES,
    INIT_MODES,
    REDISTRIBUTION_MODES,
)
from compress_models.builders import optimizer_schedule, parser
from compress_models.trainer import train


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


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The word-LM flags and Selfish-RNN's dynamic-sparsity flags."""
    p = parser(__doc__.splitlines()[0])
    s = p.add_argument_group("dynamic sparse training (the Selfish-RNN script's flags, turned into a schedule)")
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
    s.add_argument("--print-schedule", action="store_true", help="print the schedule these flags make, and exit")
    return p.parse_args(argv)


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
    if args.sparse:
        schedule["pruners"] = {"selfish": {
            "class": "DynamicSparsityPruner", "density": args.density, "sparse_init": args.sparse_init,
            "death": args.death, "growth": args.growth, "redistribution": args.redistribution,
            "death_rate": args.death_rate, "death_rate_decay": "cosine", "death_rate_floor": 0.005,
            "update_frequency": args.update_frequency, "seed": args.seed}}
        policies.append({"pruner": {"instance_name": "selfish"}, "starting_epoch": 0,
                         "ending_epoch": max(args.epochs, 1)})
    optimizer = optimizer_schedule(args)
    policies += optimizer.pop("policies")
    schedule.update(optimizer)
    schedule["policies"] = policies
    return schedule


def schedule_yaml(schedule: Dict[str, Any], args: argparse.Namespace) -> str:
    """``schedule`` as a YAML file, with the ``# example-args:`` header the word-LM example needs to run it."""
    needs = []
    if args.model != "LSTM":
        needs += ["--model", args.model]
    if args.tied:
        needs.append("--tied")
    if args.couple:
        needs.append("--couple")
    if args.optimizer:
        needs += ["--optimizer", args.optimizer]
    header = "# Made by examples/papers/selfish_rnn.py --print-schedule from the Selfish-RNN flags.\n"
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


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Print the schedule (``--print-schedule``) or train with it; returns what the trainer returns."""
    args = parse_args(argv)
    if args.print_schedule:
        return print_schedule(args)
    return train(args, translated_schedule(args))


if __name__ == "__main__":
    main()
