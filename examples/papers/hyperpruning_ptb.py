"""Hyperpruning (Zheng & Shlizerman) on word LMs: its claim measured side by side, and its published search.

``claim``: does a candidate's Lyapunov-spectrum distance to the dense network after a few epochs predict how good
it is after full training better than its early validation perplexity? A pool of distinct recipes of the
Selfish-RNN space (Hyperpruning's: sparse init x death x redistribution x death rate, random growth, density
0.33) is drawn at random; every candidate is trained from scratch for ``--epochs`` epochs with its spectrum and
validation perplexity recorded after ``--early-epochs``; the script prints each candidate's figures and the
Spearman rank correlation with the fully trained validation perplexity of (a) the early LS distance and (b) the
early validation perplexity. (Hyperpruning's own shipped 3-epoch pool of 26 gives 0.72 for (a) and 0.42 for (b).)
The death-rate cosine spans the full training here (Hyperpruning's spans 100 epochs, of which its probes see 3).
Small by default, for one CPU core (a 2x64 LSTM on the embedded corpus; ``--data`` for PTB); every finished
candidate is kept in ``--out`` and a rerun continues.

    python examples/papers/hyperpruning_ptb.py claim --threads 1 --out results/hyperpruning/records/claim_cpu.json

``published``: Hyperpruning's search at its published scale (2x1500 untied LSTM on PTB, lr 40, clip 0.25,
dropout 0.65, sparse NT-ASGD with nonmono 5, density 0.33; 40 TPE evaluations of 3 epochs, halving rounds, the
last 2 trained 100 epochs; ``schedules/search/hyperpruning_selfish_lstm.yaml``), through ``compress.search``.
The study lives in ``results/hyperpruning_ptb/search/study.db`` and runs pause at an epoch's end when ``--time-budget``
runs out, their progress in ``--checkpoints``: run the same command again (on a later device session too) and it
continues. ``--workers N`` runs N worker processes, one GPU each, on the same study. ``--export DIR`` copies the
study and the summary there (a device's ``$OUT``) to be copied back into ``results/hyperpruning_ptb/search/``.

    python examples/papers/hyperpruning_ptb.py published --data data/ptb --cuda --time-budget 540 --export $OUT
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Tuple

import torch
from tabulate import tabulate

import compress
from compress.search import Hyperpruning, SearchSpace, TrainControl
from compress_models.search_tasks import word_lm_task

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPACE = os.path.join(ROOT, "schedules", "search", "hyperpruning_selfish_lstm.yaml")
RESULTS = os.path.join(ROOT, "results", "hyperpruning_ptb", "search")  # run records sit one level up
PUBLISHED = {"lstm test ppl": 69.73, "lstm val ppl": 72.27, "selfish-rnn test ppl": 71.72,
             "shipped pool: spearman ls": 0.72, "shipped pool: spearman early ppl": 0.42}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("claim", help="early LS distance vs early perplexity as predictors of the trained perplexity")
    c.add_argument("--data", help="corpus folder (default: the embedded synthetic corpus)")
    c.add_argument("--cuda", action="store_true")
    c.add_argument("--candidates", type=int, default=16, help="distinct recipes in the pool")
    c.add_argument("--epochs", type=int, default=15, help="full training")
    c.add_argument("--early-epochs", type=int, default=3, help="when the early scores are taken (Hyperpruning: 3)")
    c.add_argument("--size", type=int, default=64, help="emsize = nhid of the 2-layer LSTM")
    c.add_argument("--tokens", type=int, default=50_000, help="training tokens of the synthetic corpus")
    c.add_argument("--lr", type=float, default=20.0)
    c.add_argument("--dropout", type=float, default=0.1)
    c.add_argument("--batch-size", type=int, default=10)
    c.add_argument("--seed", type=int, default=0, help="seed of the pool's draw")
    c.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    c.add_argument("--out", default=os.path.join(ROOT, "results", "hyperpruning", "records", "claim_cpu.json"),
                   help="results file (finished candidates are kept; a rerun continues)")
    g = sub.add_parser("published", help="Hyperpruning's search at published scale (GPU)")
    g.add_argument("--data", required=True, help="the PTB folder")
    g.add_argument("--cuda", action="store_true")
    g.add_argument("--space", default=SPACE)
    g.add_argument("--storage", default=f"sqlite:///{os.path.join(RESULTS, 'study.db')}")
    g.add_argument("--study", default="hyperpruning_selfish_lstm")
    g.add_argument("--checkpoints", default=os.path.join(ROOT, "runs", "hyperpruning_ptb"))
    g.add_argument("--time-budget", type=float, help="seconds this call may run")
    g.add_argument("--workers", type=int, default=1, help="worker processes, one GPU each")
    g.add_argument("--export", help="copy the study and the summary into this folder at the end")
    g.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                   help="override a word-LM task option (e.g. max_batches=5 for a smoke test)")
    g.add_argument("--worker-of", type=int, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --- the claim ---------------------------------------------------------------------------------------------------


def spearman(x: List[float], y: List[float]) -> Tuple[float, float]:
    """Spearman's rho and its two-sided p-value."""
    from scipy.stats import spearmanr

    result = spearmanr(x, y)
    return float(result.statistic), float(result.pvalue)


def pool(space: SearchSpace, count: int, seed: int) -> List[Dict[str, Any]]:
    """``count`` distinct recipes of the space's grid, drawn uniformly with ``seed``."""
    grid = [{}]
    for p in space.parameters:
        values = p.values if hasattr(p, "values") else [p.snap(p.low + i * p.step)
                                                         for i in range(round((p.high - p.low) / p.step) + 1)]
        grid = [{**g, p.key: v} for g in grid for v in values]
    if count > len(grid):
        raise SystemExit(f"--candidates {count}: the space has only {len(grid)} recipes")
    return random.Random(seed).sample(grid, count)


def claim(args) -> Dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.cuda else "cpu")
    space = SearchSpace.from_file(SPACE)
    task = word_lm_task(args.data, device, emsize=args.size, nhid=args.size, dropout=args.dropout, lr=args.lr,
                        batch_size=args.batch_size, synthetic_tokens=args.tokens)
    settings = {k: getattr(args, k) for k in ("data", "candidates", "epochs", "early_epochs", "size", "tokens", "lr",
                                              "dropout", "batch_size", "seed")}
    done: Dict[str, Any] = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            saved = json.load(f)
        if saved.get("settings") == settings:
            done = saved.get("runs", {})
    started = time.time()

    def span(schedule):   # the death-rate cosine and the NT-ASGD switch over the full training
        for policy in schedule.get("policies", []):
            policy["ending_epoch"] = args.epochs
        return schedule

    def run(name, schedule):
        if name in done:
            return done[name]
        early: Dict[str, Any] = {}
        began = time.time()

        def epoch_done(epoch, model, val_loss):
            if epoch + 1 == args.early_epochs:
                early["spectrum"] = task.spectrum(model).tolist()
                early["val_ppl"] = math.exp(val_loss)
            logging.info("%s: epoch %d/%d, validation ppl %.2f", name, epoch + 1, epochs, math.exp(val_loss))

        epochs = args.early_epochs if schedule is None or name == "dense" else args.epochs
        result = task.train(schedule, epochs, TrainControl(on_epoch=epoch_done))
        done[name] = {"val_ppl_early": early["val_ppl"], "spectrum_early": early["spectrum"],
                      "val_ppl": math.exp(result.val_loss), "test_ppl": math.exp(result.metrics["test_loss"]),
                      "seconds": time.time() - began}
        write(args.out, {"settings": settings, "runs": done, "command": " ".join(sys.argv)})
        return done[name]

    dense = run("dense", span(copy.deepcopy(space.reference)))
    candidates = pool(space, args.candidates, args.seed)
    rows = []
    for i, values in enumerate(candidates):
        name = space.label(values)
        r = run(name, span(space.candidate(values)))
        rows.append((i, values, r, compress.ls_distance(dense["spectrum_early"], r["spectrum_early"])))
    final = [r["val_ppl"] for _, _, r, _ in rows]
    rho_ls = spearman([d for *_, d in rows], final)
    rho_ppl = spearman([r["val_ppl_early"] for _, _, r, _ in rows], final)
    best = min(range(len(rows)), key=lambda i: final[i])

    def rank_of_best(scores):
        return sorted(range(len(rows)), key=lambda i: scores[i]).index(best) + 1

    table = [[f"#{i}", *[v[p.key] for p in space.parameters if len(getattr(p, "values", [0, 0])) > 1],
              f"{d:.3f}", f"{r['val_ppl_early']:.2f}", f"{r['val_ppl']:.2f}", f"{r['test_ppl']:.2f}"]
             for i, v, r, d in rows]
    keys = [p.path[-1] for p in space.parameters if len(getattr(p, "values", [0, 0])) > 1]
    text = [f"{len(rows)} recipes, 2x{args.size} LSTM, density 0.33, {args.epochs} epochs "
            f"({'PTB' if args.data else 'embedded corpus'}); early scores after {args.early_epochs} epochs; dense "
            f"reference: validation ppl {dense['val_ppl_early']:.2f} after {args.early_epochs} epochs",
            tabulate(table, headers=["candidate", *keys, f"LS distance @{args.early_epochs}",
                                     f"val ppl @{args.early_epochs}", f"val ppl @{args.epochs}",
                                     f"test ppl @{args.epochs}"], tablefmt="github"),
            "",
            tabulate([[f"(a) LS distance after {args.early_epochs} epochs", f"{rho_ls[0]:.2f}", f"{rho_ls[1]:.2f}",
                       rank_of_best([d for *_, d in rows]), PUBLISHED["shipped pool: spearman ls"]],
                      [f"(b) validation ppl after {args.early_epochs} epochs", f"{rho_ppl[0]:.2f}",
                       f"{rho_ppl[1]:.2f}", rank_of_best([r["val_ppl_early"] for _, _, r, _ in rows]),
                       PUBLISHED["shipped pool: spearman early ppl"]]],
                     headers=["early score", f"Spearman with val ppl @{args.epochs}", "p (two-sided)",
                              "rank of the best recipe", "Hyperpruning's shipped pool"], tablefmt="github"),
            f"{(time.time() - started) / 60:.1f} min this call; "
            f"{sum(r['seconds'] for r in done.values()) / 60:.1f} min of training in all"]
    summary = {"settings": settings, "runs": done, "spearman_ls": rho_ls[0], "spearman_ls_p": rho_ls[1],
               "spearman_early_ppl": rho_ppl[0], "spearman_early_ppl_p": rho_ppl[1],
               "command": " ".join(sys.argv), "revision": revision(), "device": describe(device),
               "table": "\n".join(text)}
    write(args.out, summary)
    print("\n".join(text))
    return summary


# --- the published search ----------------------------------------------------------------------------------------


def published(args) -> Dict[str, Any]:
    import optuna
    import yaml

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.workers > 1 and args.worker_of is None:
        return spawn_workers(args)
    os.makedirs(RESULTS, exist_ok=True)
    device = torch.device("cuda" if args.cuda else "cpu")
    if args.cuda:
        torch.backends.cuda.matmul.allow_tf32 = False
    options = {}
    for item in args.task_option:
        key, _, value = item.partition("=")
        options[key] = yaml.safe_load(value)
    space = SearchSpace.from_file(args.space)
    task = word_lm_task(args.data, device, **options)
    search = Hyperpruning(space, task, storage=args.storage, study_name=args.study, checkpoint_dir=args.checkpoints,
                          time_budget=args.time_budget,
                          task_id=f"compress_models.search_tasks:word_lm_task {json.dumps(options, sort_keys=True)}",
                          on_round=lambda r: print(compress.search.round_table(r, space) + "\n", flush=True))
    started = time.time()
    result = search.run()
    if args.worker_of is not None and args.worker_of > 0:
        return {}
    per_epoch = result.seconds / max(1, result.epochs_trained)
    summary = {
        "name": "hyperpruning_ptb", "complete": result.complete, "command": " ".join(sys.argv),
        "revision": revision(), "device": describe(device), "seconds_this_call": time.time() - started,
        "epochs_trained": result.epochs_trained, "training_hours": result.seconds / 3600,
        "pool_size": result.pool_size, "full_search_epochs": result.full_search_epochs,
        "full_search_hours_estimate": result.full_search_epochs * per_epoch / 3600,
        "stages_finished": [r.name for r in result.rounds], "published": PUBLISHED,
        "winner": None if result.winner is None else {
            "values": result.winner.values, "val_ppl": result.winner.val_ppl,
            "test_ppl": math.exp(result.winner.metrics["test_loss"]) if "test_loss" in result.winner.metrics
            else None},
        "tables": result.tables(space),
    }
    write(os.path.join(RESULTS, "summary.json"), summary)
    print(result.tables(space))
    print(f"training so far: {result.epochs_trained} epochs, {result.seconds / 3600:.2f} h "
          f"(~{per_epoch:.1f} s an epoch); a full-training search of the {result.pool_size} candidates: "
          f"{result.full_search_epochs} epochs, ~{summary['full_search_hours_estimate']:.2f} h")
    if args.export:
        os.makedirs(args.export, exist_ok=True)
        shutil.copy(os.path.join(RESULTS, "summary.json"), args.export)
        if args.storage.startswith("sqlite:///"):
            shutil.copy(args.storage[len("sqlite:///"):], args.export)
    return summary


def spawn_workers(args) -> Dict[str, Any]:
    """Run ``--workers`` copies of this command, worker ``i`` on GPU ``i``; the first reports."""
    argv = list(sys.argv[1:])
    processes = []
    for i in range(args.workers):
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=str(i))
        processes.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv, "--worker-of", str(i)],
                                          env=env))
        time.sleep(2.0)   # let the first create the study
    codes = [p.wait() for p in processes]
    if any(codes):
        raise SystemExit(f"worker exit codes: {codes}")
    return {}


# --- shared -------------------------------------------------------------------------------------------------------


def write(path: str, data: Dict[str, Any]) -> None:
    from compress.io.files import atomic_write

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=1)


def revision() -> str:
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} thread(s)"


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger().setLevel(logging.INFO)
    return claim(args) if args.mode == "claim" else published(args)


if __name__ == "__main__":
    main()
