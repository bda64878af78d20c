"""Selfish-RNN against its baselines at equal epochs and equal density, on a 2-layer LSTM LM.

Five runs of the word-LM trainer (``examples/word_lm.py``'s flags), all with sparse NT-ASGD and the same
hyperparameters, started side by side (one process each) and printed as one table:

1. ``selfish``: dynamic sparse training at density 0.33 from the first step (uniform init, magnitude death,
   random growth, no redistribution, cosine-annealed death rate);
2. ``static``: a magnitude mask at density 0.33 on every layer from the first step, never changed;
3. ``agp``: AGP from dense to density 0.33 over the first 3/4 of the epochs;
4. ``dense-small``: a dense LSTM LM with as many weights as the sparse models keep;
5. ``dense``: the dense model of full size.

Each run checkpoints after every epoch; run the same command again to continue after ``--time-budget`` (or a
lost machine) stopped it. Finished runs are not repeated.

    python examples/papers/selfish_results.py --data ../shared/data/ptb --cuda --size 650 --epochs 20 \\
        --out runs/selfish --time-budget 540
    python examples/papers/selfish_results.py --size 32 --epochs 2 --out /tmp/selfish --jobs 1 \\
        --extra --max-train-batches 5        # a CPU smoke run on the embedded corpus
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from typing import Dict, List

import yaml
from tabulate import tabulate

from compress_models import load_corpus, trainer
from compress_models.builders import parse_args

CONFIGS = ("selfish", "static", "agp", "dense-small", "dense")
SPARSE_WEIGHTS = ["encoder.weight", "rnn.weight_*", "decoder.weight"]   # every non-bias weight of RNNModel
SYNTHETIC_VOCAB = 1000


def lstm_lm_weights(vocab: int, size: int, layers: int) -> int:
    """Non-bias weights of an untied RNNModel LSTM with emsize = nhid = ``size``."""
    return 2 * vocab * size + layers * 8 * size * size


def equal_weights_size(vocab: int, size: int, layers: int, density: float) -> int:
    """The width whose dense LSTM LM has ``density`` times the weights of the ``size`` one (rounded)."""
    target = density * lstm_lm_weights(vocab, size, layers)
    a, b = layers * 8, 2 * vocab   # a h^2 + b h = target
    return max(1, round((-b + math.sqrt(b * b + 4 * a * target)) / (2 * a)))


def schedules(density: float, epochs: int, nonmono: int) -> Dict[str, dict]:
    """The schedule of every configuration (NT-ASGD's switch in all of them)."""
    span = {"starting_epoch": 0, "ending_epoch": epochs}
    switch = ({"nt_asgd": {"class": "NTASGDSwitch", "nonmono": nonmono}},
              {"extension": {"instance_name": "nt_asgd"}, **span})
    sparsity = round(1 - density, 6)
    out = {
        "selfish": ({"selfish": {"class": "SelfishRNNPruner", "density": density, "death_rate": 0.8}},
                    {"pruner": {"instance_name": "selfish"}, **span}),
        "static": ({"static": {"class": "SparsityLevelParameterPruner",
                               "levels": dict.fromkeys(SPARSE_WEIGHTS, sparsity)}},
                   {"pruner": {"instance_name": "static"}, "epochs": [0]}),
        "agp": ({"agp": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.0, "final_sparsity": sparsity,
                         "weights": SPARSE_WEIGHTS}},
                {"pruner": {"instance_name": "agp"}, "starting_epoch": 0,
                 "ending_epoch": max(1, math.ceil(0.75 * epochs))}),
        "dense-small": None,
        "dense": None,
    }
    built = {}
    for name, pruner in out.items():
        schedule = {"version": 1, "extensions": switch[0], "policies": [switch[1]]}
        if pruner is not None:
            schedule["pruners"] = pruner[0]
            schedule["policies"] = [pruner[1], switch[1]]
        built[name] = schedule
    return built


def commands(args: argparse.Namespace, vocab: int) -> Dict[str, List[str]]:
    """word_lm.py flags of every configuration (without the interpreter)."""
    os.makedirs(args.out, exist_ok=True)
    small = equal_weights_size(vocab, args.size, 2, args.density)
    common = ["--optimizer", "sgd", "--nlayers", "2", "--dropout", str(args.dropout), "--lr", str(args.lr),
              "--clip", "0.25", "--wd", "1.2e-6", "--epochs", str(args.epochs), "--seed", str(args.seed),
              "--no-progress", "--results", os.path.join(args.out, "results.jsonl")]
    if args.data:
        common += ["--data", args.data]
    if args.cuda:
        common.append("--cuda")
    if args.time_budget:
        common += ["--time-budget", str(args.time_budget)]
    out = {}
    for name, schedule in schedules(args.density, args.epochs, args.nonmono).items():
        size = small if name == "dense-small" else args.size
        path = os.path.join(args.out, f"{name}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(schedule, f, sort_keys=False)
        ckpt = os.path.join(args.out, f"{name}.pt")
        cmd = common + ["--emsize", str(size), "--nhid", str(size), "--schedule", path, "--save", ckpt,
                        "--name", name] + list(args.extra)
        if os.path.exists(ckpt):
            cmd += ["--resume", ckpt]
        out[name] = cmd
    return out


def finished(out: str) -> Dict[str, dict]:
    rows = {}
    path = os.path.join(out, "results.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    rows[row["name"]] = row
    return rows


def table(rows: Dict[str, dict], args: argparse.Namespace, vocab: int) -> str:
    small = equal_weights_size(vocab, args.size, 2, args.density)
    described = {
        "selfish": f"Selfish-RNN 2x{args.size}, density {args.density}",
        "static": f"static magnitude mask 2x{args.size}, density {args.density}",
        "agp": f"AGP dense -> density {args.density}, 2x{args.size}",
        "dense-small": f"dense 2x{small} (same weights)",
        "dense": f"dense 2x{args.size}",
    }
    body = []
    for name in CONFIGS:
        row = rows.get(name)
        if row is None:
            body.append([described[name], "-", "-", "unfinished", "-"])
            continue
        body.append([described[name], f"{row['nnz']:,}", f"{100 * row['sparsity']:.1f}", f"{row['val_ppl']:.2f}",
                     f"{row['test_ppl']:.2f}"])
    return tabulate(body, headers=["model", "nonzero weights", "sparsity (%)", "val ppl", "test ppl"],
                    tablefmt="psql")


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", help="PTB folder (default: the embedded synthetic corpus)")
    p.add_argument("--size", type=int, default=650, help="emsize = nhid of the full models")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--density", type=float, default=0.33)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--lr", type=float, default=20.0)
    p.add_argument("--nonmono", type=int, default=5)
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--out", required=True, help="folder for schedules, checkpoints, logs and results")
    p.add_argument("--cuda", action="store_true")
    p.add_argument("--time-budget", type=float, default=0, help="seconds per run of this command")
    p.add_argument("--jobs", type=int, default=len(CONFIGS),
                   help="runs at once (1: one after the other, in this process)")
    p.add_argument("--only", nargs="*", choices=CONFIGS, help="run these configurations only")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more word_lm.py flags for every run")
    args = p.parse_args(argv)
    vocab = len(load_corpus(args.data).dictionary) if args.data else SYNTHETIC_VOCAB
    done = finished(args.out) if os.path.isdir(args.out) else {}
    todo = {n: c for n, c in commands(args, vocab).items() if n not in done and (not args.only or n in args.only)}
    if args.jobs <= 1:
        for name, cmd in todo.items():
            print(f"== {name}: word_lm.py {' '.join(cmd)}")
            trainer.train(parse_args(cmd))
    else:
        pending = list(todo.items())
        running = []
        while pending or running:
            while pending and len(running) < args.jobs:
                name, cmd = pending.pop(0)
                log = open(os.path.join(args.out, f"{name}.log"), "a")
                print(f"== {name}: word_lm.py {' '.join(cmd)}", flush=True)
                running.append((name, subprocess.Popen([sys.executable, "-m", "compress_models.trainer"] + cmd,
                                                       stdout=log, stderr=subprocess.STDOUT), log))
            name, proc, log = running.pop(0)
            proc.wait()
            log.close()
            if proc.returncode:
                print(f"{name} failed (exit {proc.returncode}); see {os.path.join(args.out, name + '.log')}")
    text = table(finished(args.out), args, vocab)
    print(text)
    return text


if __name__ == "__main__":
    main()
