"""Benchmark: what dynamic sparse training adds to a training step, and what one prune-and-regrow event costs.

Prints, from one run, ms per training step of an untied 2-layer LSTM LM (batch 20, bptt 35, PTB's vocabulary) in
a plain SGD loop, and the ratio to it of:

* ``snt-asgd``: the sparse NT-ASGD optimizer in its SGD phase, no scheduler;
* ``selfish``: sparse NT-ASGD plus the scheduler with a Selfish-RNN pruner at density 0.33 over every weight
  matrix (masks re-applied after every step, death rate stepped per minibatch);
* ``selfish+avg``: the same in NT-ASGD's averaging phase (per-weight counters and averages);
* ``momentum``: a DynamicSparsityPruner with momentum growth (the pruner's own gradient momentum, every step);

and the time of one prune-and-regrow event, also as a fraction of an epoch of PTB (1327 minibatches of the plain
loop). The loops run interleaved, in rounds; the median round counts.

    python examples/bench_dynamic_sparsity.py --cuda                  # sizes 650 1500
    python examples/bench_dynamic_sparsity.py --sizes 200 --steps 5   # a quick CPU run
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from tabulate import tabulate

import compress
from compress.optim import SparseNTASGD
from compress_models import RNNModel

KINDS = ("plain", "snt-asgd", "selfish", "selfish+avg", "momentum")
PTB_STEPS = 929_589 // (20 * 35)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def pruner_spec(kind):
    if kind == "momentum":
        return {"class": "DynamicSparsityPruner", "density": 0.33, "growth": "momentum"}
    return {"class": "SelfishRNNPruner", "density": 0.33, "death_rate": 0.8}


def make_run(kind, size, vocab, device, seed=0):
    """A closure doing one training step of ``kind``, and the scheduler (or None)."""
    torch.manual_seed(seed)
    model = RNNModel("LSTM", vocab, size, size, 2, dropout=0.5).to(device)
    if kind == "plain":
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    else:
        optimizer = SparseNTASGD(model.parameters(), lr=1.0, averaging=kind == "selfish+avg")
    scheduler = None
    if kind in ("selfish", "selfish+avg", "momentum"):
        scheduler = compress.dict_config(model, optimizer, {
            "pruners": {"p": pruner_spec(kind)},
            "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": 100}]})
        scheduler.on_epoch_begin(0, optimizer)
    data = torch.randint(0, vocab, (35, 20), device=device)
    target = torch.randint(0, vocab, (35 * 20,), device=device)
    hidden = model.init_hidden(20)
    step_id = [0]

    def step():
        i = step_id[0]
        step_id[0] += 1
        if scheduler:
            scheduler.on_minibatch_begin(0, i, 10 ** 9, optimizer)
        output, _ = model(data, hidden)
        loss = F.cross_entropy(output.view(-1, vocab), target)
        if scheduler:
            loss = scheduler.before_backward_pass(0, i, 10 ** 9, loss, optimizer)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        if scheduler:
            scheduler.before_parameter_optimization(0, i, 10 ** 9, optimizer)
        optimizer.step()
        if scheduler:
            scheduler.on_minibatch_end(0, i, 10 ** 9, optimizer)

    return step, scheduler, optimizer


def time_steps(step, n, device):
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return (time.perf_counter() - t0) * 1000 / n


def time_event(scheduler, optimizer, device, repeat=3):
    times = []
    for i in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        scheduler.on_epoch_end(i, optimizer)
        sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench(sizes, vocab, device, steps, rounds):
    rows = []
    for size in sizes:
        runs = {k: make_run(k, size, vocab, device) for k in KINDS}
        for k in KINDS:  # warm-up: cuDNN plans, allocator, lazily created state
            time_steps(runs[k][0], 3, device)
        times = {k: [] for k in KINDS}
        for _ in range(rounds):
            for k in KINDS:
                times[k].append(time_steps(runs[k][0], steps, device))
        med = {k: statistics.median(v) for k, v in times.items()}
        event = time_event(runs["selfish"][1], runs["selfish"][2], device)
        rows.append([f"2x{size}", f"{med['plain']:.2f}"] + [f"{med[k] / med['plain']:.3f}" for k in KINDS[1:]]
                    + [f"{event:.1f}", f"{100 * event / (PTB_STEPS * med['plain']):.2f}"])
        del runs
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return tabulate(rows, headers=["LSTM LM", "plain ms/step"] + [f"{k} / plain" for k in KINDS[1:]]
                    + ["event ms", "event % of a PTB epoch"], tablefmt="psql")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cuda", action="store_true")
    p.add_argument("--sizes", type=int, nargs="*", default=[650, 1500])
    p.add_argument("--vocab", type=int, default=10000)
    p.add_argument("--steps", type=int, default=20, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.cuda else "cpu")
    name = torch.cuda.get_device_name() if args.cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}, torch {torch.__version__}")
    text = bench(args.sizes, args.vocab, device, args.steps, args.rounds)
    print(text)
    return text


if __name__ == "__main__":
    main()
