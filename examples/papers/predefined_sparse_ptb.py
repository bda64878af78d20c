"""Predefined sparseness vs. a dense LSTM, AGP and dynamic sparsity, at one recurrent parameter budget (PTB word LM).

Five runs of the word-LM trainer (``examples/word_lm.py``'s flags), all with the same data, epochs, optimiser and
tied 2-layer layout (``models/sparse_lm.py``: the last layer is ``emsize`` wide so the decoder can be tied), and all
with the same number of trainable recurrent parameters:

* ``dense``: dense LSTM layers, ``--nhid`` units;
* ``predefined sparse (module)``: ``--nhid / --fract`` units, ``--sparse_mode sparse_hidden`` (k small LSTMs);
* ``predefined sparse (mask)``: the same structure as fixed masks on a wide ``nn.LSTM`` (BlockSparseLSTMPruner);
* ``AGP``: the wide ``nn.LSTM`` pruned by magnitude (AutomatedGradualPruner, one global threshold per layer)
  to the same count per layer as the predefined structure, over the first half of the epochs;
* ``Selfish-RNN``: the wide ``nn.LSTM`` sparse from the first step at the same count per layer, its topology
  moved by prune-and-regrow (SelfishRNNPruner: magnitude death, random growth, cosine death rate). Its NNZ counts
  nonzero values, so weights regrown at zero in the last update (and not yet trained) are not counted.

Runs go in parallel (``--jobs``) as child processes; each writes a checkpoint after every epoch and resumes from
it, so a run cut off by a time limit continues when the same command is given again. Finished runs are skipped.
The table (validation and test perplexity of the final model) is printed and written to ``OUT/results.md``.

    python examples/papers/predefined_sparse_ptb.py --jobs 1 --epochs 1 --max-train-batches 5    # CPU smoke run
    python examples/papers/predefined_sparse_ptb.py --cuda --data ../shared/data/ptb --jobs 5 --epochs 8
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional

import yaml

from compress.io.checkpoint import read_checkpoint
from compress.reports.tables import perplexity_table
from compress.structured.geometry import lstm_block_structure
from compress_models import builders, trainer
from compress_models.sparse_lm import layer_reductions

RUNS = ("dense", "sparse", "mask", "agp", "selfish")
FINAL_EVALUATION_SECONDS = 45
TITLES = {"dense": "dense", "sparse": "predefined sparse (module)", "mask": "predefined sparse (mask)",
          "agp": "AGP to the same count", "selfish": "Selfish-RNN at the same count"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", help="corpus folder (e.g. ../shared/data/ptb); default: the embedded synthetic corpus")
    p.add_argument("--out", default="runs/predefined_sparse", help="folder for checkpoints, logs and results")
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {','.join(RUNS)}")
    p.add_argument("--emsize", type=int, default=400)
    p.add_argument("--nhid", type=int, default=800, help="hidden units of the dense model (the budget)")
    p.add_argument("--fract", type=float, default=0.66666, help="the wide models have nhid / fract units")
    p.add_argument("--nlayers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.4)
    p.add_argument("--lr", type=float, default=20.0)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--agp-end", type=float, default=0.5, help="AGP reaches its final sparsity after this share of "
                                                              "the epochs")
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--bptt", type=int, default=35)
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--max-train-batches", type=int, default=0, help="cap minibatches per epoch (0: all)")
    p.add_argument("--synthetic-tokens", type=int, default=100_000)
    p.add_argument("--cuda", action="store_true")
    p.add_argument("--jobs", type=int, default=4, help="runs at a time; 1 runs them one after another in-process")
    p.add_argument("--time-limit", type=float, default=0, help="seconds for this command: runs stop after the last "
                                                               "epoch that fits (the same command continues them) "
                                                               "and the table is printed")
    p.add_argument("--child", choices=RUNS, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = [r for r in args.runs if r not in RUNS]
    if unknown:
        p.error(f"unknown run(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    return args


def wide(args) -> int:
    return round(args.nhid / args.fract)


def layer_sizes(args, hidden: int) -> List[tuple]:
    return [(args.emsize if i == 0 else hidden, args.emsize if i == args.nlayers - 1 else hidden)
            for i in range(args.nlayers)]


def structured_layers(args) -> Dict[int, dict]:
    """Per sparse layer of the wide model: its reductions and the structure they give."""
    out = {}
    reductions = layer_reductions("sparse_hidden", args.nlayers, args.fract, tie_weights=True)
    for i, ((n_in, n_out), r) in enumerate(zip(layer_sizes(args, wide(args)), reductions)):
        if r != (1.0, 1.0):
            out[i] = {"reduce_in": r[0], "reduce_out": r[1],
                      "structure": lstm_block_structure(n_in, n_out, reduce_in=r[0], reduce_out=r[1])}
    return out


def write_schedules(args, write: bool = True) -> Dict[str, str]:
    """The mask-form, AGP and dynamic-sparsity schedules of the wide model, as YAML files in ``args.out``
    (written if ``write``)."""
    layers = structured_layers(args)
    mask = {"version": 1, "pruners": {}, "policies": []}
    agp = {"version": 1, "pruners": {}, "policies": []}
    selfish = {"version": 1, "pruners": {}, "policies": []}
    last = max(2, round(args.epochs * args.agp_end))
    for i, layer in layers.items():
        s = layer["structure"]
        mask["pruners"][f"layer{i}"] = {"class": "BlockSparseLSTMPruner", "reduce_in": layer["reduce_in"],
                                        "reduce_out": layer["reduce_out"], "weights": [f"rnns.{i}.weight_*"]}
        mask["policies"].append({"pruner": {"instance_name": f"layer{i}"}, "epochs": [0]})
        dense_weights = s.gates * s.hidden_size * (s.input_size + s.hidden_size)
        final = 1.0 - s.num_weights / dense_weights
        agp["pruners"][f"layer{i}"] = {"class": "AutomatedGradualPruner", "initial_sparsity": 0.0,
                                       "final_sparsity": round(final, 6), "budget": "global",
                                       "weights": [f"rnns.{i}.weight_*"]}
        # epoch 0 trains dense; the cubic ramp ends at epoch `last - 1`
        agp["policies"].append({"pruner": {"instance_name": f"layer{i}"}, "starting_epoch": 1,
                                "ending_epoch": last, "frequency": 1})
        # sparse from the first step, each layer at the predefined layer's count, its topology free to move
        selfish["pruners"][f"layer{i}"] = {"class": "SelfishRNNPruner", "density": round(1.0 - final, 6),
                                           "weights": [f"rnns.{i}.weight_*"]}
        selfish["policies"].append({"pruner": {"instance_name": f"layer{i}"}, "starting_epoch": 0,
                                    "ending_epoch": args.epochs})
    paths = {name: os.path.join(args.out, f"{name}.yaml") for name in ("mask", "agp", "selfish")}
    for name, schedule in (("mask", mask), ("agp", agp), ("selfish", selfish)):
        if not write:
            continue
        with open(paths[name] + ".tmp", "w") as f:
            f.write(f"# written by examples/papers/predefined_sparse_ptb.py for a {args.nlayers}-layer tied model, "
                    f"emsize {args.emsize}, nhid {wide(args)}\n")
            yaml.safe_dump(schedule, f, sort_keys=False)
        os.replace(paths[name] + ".tmp", paths[name])
    return paths


def word_lm_argv(args, run: str, schedules: Dict[str, str]) -> List[str]:
    checkpoint = os.path.join(args.out, f"{run}.pt")
    argv = ["--emsize", str(args.emsize), "--nlayers", str(args.nlayers), "--dropout", str(args.dropout),
            "--lr", str(args.lr), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--bptt", str(args.bptt), "--seed", str(args.seed), "--tied", "--no-progress",
            "--save", checkpoint, "--name", TITLES[run], "--synthetic-tokens", str(args.synthetic_tokens),
            "--vocab-order", "none"]
    if args.data:
        argv += ["--data", args.data]
    if args.cuda:
        argv.append("--cuda")
    if args.max_train_batches:
        argv += ["--max-train-batches", str(args.max_train_batches)]
    if args.deadline:
        # leave time for the final evaluation after the last epoch
        argv += ["--time-budget", str(max(1.0, args.deadline - time.time() - FINAL_EVALUATION_SECONDS))]
    if os.path.exists(checkpoint):
        argv += ["--resume", checkpoint]
    if run == "dense":
        return argv + ["--sparse-mode", "direct", "--nhid", str(args.nhid)]
    if run == "sparse":
        return argv + ["--sparse-mode", "sparse_hidden", "--sparse-fract", str(args.fract), "--nhid", str(wide(args))]
    return argv + ["--sparse-mode", "direct", "--nhid", str(wide(args)), "--schedule", schedules[run]]


def run_child(args, run: str, schedules: Dict[str, str]) -> dict:
    """Train one run to the end (resuming if it can) and write ``OUT/<run>.json``."""
    checkpoint = os.path.join(args.out, f"{run}.pt")
    first_epoch = int(read_checkpoint(checkpoint)["extra"]["epoch"]) + 1 if os.path.exists(checkpoint) else 0
    started = time.time()
    result = trainer.train(builders.parse_args(word_lm_argv(args, run, schedules)))
    seconds = time.time() - started
    if result.get("unfinished"):
        return result
    state = read_checkpoint(checkpoint)["model"]
    recurrent = [t for name, t in state.items() if name.startswith("rnns.")]
    nonzero = sum(int(t.ne(0).sum()) for t in recurrent)
    hidden = args.nhid if run == "dense" else wide(args)
    row = {
        "name": TITLES[run],
        "hidden": hidden,
        "nnz": nonzero,
        "sparsity": 1.0 - nonzero / sum(4 * o * (i + o + 2) for i, o in layer_sizes(args, hidden)),
        "val_ppl": result["val_ppl"],
        "test_ppl": result["test_ppl"],
        "epochs": args.epochs,
        "s/epoch": round(seconds / max(args.epochs - first_epoch, 1), 1),
    }
    with open(os.path.join(args.out, f"{run}.json"), "w") as f:
        json.dump(row, f)
    return row


def child_command(argv: List[str], run: str) -> List[str]:
    return [sys.executable, os.path.abspath(__file__)] + argv + ["--child", run]


def run_parallel(args, argv: List[str], todo: List[str]) -> None:
    """Start up to ``args.jobs`` children at a time; stop the unfinished ones at the time limit."""
    # children stop by themselves after the last epoch that fits; this is the backstop
    deadline = args.deadline or math.inf
    threads = max(1, (os.cpu_count() or 2) // max(1, min(args.jobs, len(todo))))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    waiting, running = list(todo), {}
    while waiting or running:
        while waiting and len(running) < args.jobs:
            run = waiting.pop(0)
            log = open(os.path.join(args.out, f"{run}.log"), "a")
            running[run] = (subprocess.Popen(child_command(argv, run), stdout=log, stderr=subprocess.STDOUT,
                                             env=env), log)
        for run, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                del running[run]
                if proc.returncode:
                    print(f"{run}: exited with status {proc.returncode}; see {os.path.join(args.out, run + '.log')}")
        if time.time() > deadline:
            for run, (proc, log) in running.items():
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                log.close()
                print(f"{run}: stopped at the time limit; run the same command again to continue")
            return
        time.sleep(1.0)


def progress(args, run: str) -> Optional[str]:
    checkpoint = os.path.join(args.out, f"{run}.pt")
    if not os.path.exists(checkpoint):
        return "not started"
    return f"{int(read_checkpoint(checkpoint)['extra']['epoch']) + 1} of {args.epochs} epochs"


def main(argv=None) -> str:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    schedules = write_schedules(args, write=not args.child)  # children read the parent's files
    if args.time_limit and not args.deadline:
        args.deadline = time.time() + args.time_limit
    if args.child:
        run_child(args, args.child, schedules)
        return ""
    todo = [r for r in args.runs if not os.path.exists(os.path.join(args.out, f"{r}.json"))]
    if args.jobs <= 1:
        for run in todo:
            run_child(args, run, schedules)
    elif todo:
        run_parallel(args, argv + (["--deadline", str(args.deadline)] if args.deadline else []), todo)
    rows, missing = [], []
    for run in args.runs:
        path = os.path.join(args.out, f"{run}.json")
        if os.path.exists(path):
            with open(path) as f:
                rows.append(json.load(f))
        else:
            missing.append(f"{TITLES[run]}: {progress(args, run)}")
    where = args.data or "synthetic corpus"
    title = (f"{args.nlayers}-layer tied LSTM LM on {where}, emsize {args.emsize}; dense nhid {args.nhid}, wide "
             f"nhid {wide(args)} (fract {args.fract}); {args.epochs} epochs, lr {args.lr}, dropout {args.dropout}, "
             f"batch {args.batch_size}, bptt {args.bptt}. NNZ = trainable recurrent parameters (weights and "
             f"biases); Sparsity = of the recurrent layers, against a dense layer of the run's own width.")
    text = title + "\n\n" + perplexity_table(rows, tablefmt="github")
    if missing:
        text += "\n\nunfinished: " + "; ".join(missing)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
