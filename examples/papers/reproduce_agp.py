"""Reproduce Distiller's AGP word-LM table: dense and AGP-pruned LSTM LMs of one shape, trained side by side.

Each experiment is a run of the word-LM trainer (``examples/word_lm.py``'s flags) in its own process, all
started at once (one GPU holds them together), each checkpointing every epoch; rerun the same command to continue
after ``--time-budget`` stopped them. The table is printed when all have finished.

    python examples/papers/reproduce_agp.py --data data/wikitext-2 --size medium --cuda --out runs/agp_medium
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from compress import perplexity_table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository

SIZES = {  # Distiller's word-LM shapes (all tied, weight decay 1e-6)
    "small": ["--emsize", "200", "--nhid", "200", "--dropout", "0.2"],
    "medium": ["--emsize", "650", "--nhid", "650", "--dropout", "0.5"],
    "large": ["--emsize", "1500", "--nhid", "1500", "--dropout", "0.65"],
}
EXPERIMENTS = {"dense": None, "agp_80": os.path.join(ROOT, "schedules", "agp_lm_80.yaml")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--size", choices=sorted(SIZES), default="medium")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--out", required=True, help="folder for checkpoints, logs and results")
    p.add_argument("--cuda", action="store_true")
    p.add_argument("--time-budget", type=float, default=0, help="seconds per run of this command")
    p.add_argument("--only", nargs="*", choices=sorted(EXPERIMENTS), help="run these experiments only")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more word_lm.py flags")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    procs = {}
    for name, schedule in EXPERIMENTS.items():
        if args.only and name not in args.only:
            continue
        ckpt = os.path.join(args.out, f"{name}.pt")
        cmd = [sys.executable, "-m", "compress_models.trainer", "--data", args.data, "--tied", "--wd", "1e-6",
               "--epochs", str(args.epochs), "--save", ckpt, "--name", f"{name} ({args.size})", "--no-progress",
               "--results", os.path.join(args.out, "results.jsonl")] + SIZES[args.size] + args.extra
        if schedule:
            cmd += ["--schedule", schedule]
        if args.cuda:
            cmd.append("--cuda")
        if args.time_budget:
            cmd += ["--time-budget", str(args.time_budget)]
        if os.path.exists(ckpt):
            cmd += ["--resume", ckpt]
        log = open(os.path.join(args.out, f"{name}.log"), "a")
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
    failed = False
    for name, (proc, log) in procs.items():
        failed |= proc.wait() != 0
        log.close()
        with open(os.path.join(args.out, f"{name}.log")) as f:
            tail = f.read().splitlines()[-3:]
        print(f"{name}: exit {proc.returncode}: " + " | ".join(tail))
    results = os.path.join(args.out, "results.jsonl")
    if os.path.exists(results):
        with open(results) as f:
            rows = {r["name"]: r for r in map(json.loads, f)}   # the latest row per experiment
        print(perplexity_table(list(rows.values())))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
