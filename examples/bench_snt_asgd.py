"""Benchmark: what NT-ASGD's averaging phase adds to a sparse training step, before and after the foreach rewrite.

Prints, for untied 2-layer LSTM LMs (emsize = nhid, batch 20, bptt 35, vocabulary 10000 by default, Selfish-RNN's
masks at density 0.33 over every weight matrix, lr 40, weight decay 1.2e-6, clip 0.25), the median ms per
training step and its parts (forward + backward + clip; ``optimizer.step``; the scheduler's step end, where the
mask store re-zeroes weights and the optimizer state at pruned positions) of:

* ``torch SGD``: ``torch.optim.SGD`` (the plain step);
* ``SGD phase``: :class:`compress.optim.SparseNTASGD` before the switch (the same arithmetic);
* ``averaging, loop``: after the switch, with ``foreach=False``: the per-parameter loop with a temporary per
  parameter that was the only implementation before;
* ``averaging, loop, eta on device`` (``--cuda`` only): the same with each parameter's ``eta`` on the GPU, as
  ``torch.optim.Optimizer.load_state_dict`` left it when a run was resumed before this change (reading it back
  synchronised the host once per parameter and step);
* ``averaging, foreach``: after the switch, the foreach kernels (the default now);

with each step's ratio to the SGD phase. The variants run interleaved, in rounds; the median round counts. A
second table checks that the foreach step gives the loop's numbers on this device: the same gradients into two
copies for ``--check-steps`` averaging steps with a prune-and-regrow event in the middle, then the largest
difference of weights and averages.

    python examples/bench_snt_asgd.py --cuda                                   # sizes 650 1500
    python examples/bench_snt_asgd.py --sizes 64 --vocab 1000 --steps 3 --rounds 3   # a quick CPU run
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F
from tabulate import tabulate

import compress
from compress.optim import SparseNTASGD
from compress_models import RNNModel

VARIANTS = ("torch SGD", "SGD phase", "averaging, loop", "averaging, loop, eta on device", "averaging, foreach")
PARTS = ("forward+backward", "optimizer.step", "step end (masks)")
LR, WEIGHT_DECAY, CLIP, BATCH, BPTT, DENSITY = 40.0, 1.2e-6, 0.25, 20, 35, 0.33


class PartTimer:
    """Milliseconds between marks, per part: CUDA events on the GPU (no host sync), the host clock on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: List[Tuple[str, object]] = []

    def mark(self, name: str) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append((name, event))
        else:
            self.marks.append((name, time.perf_counter()))

    def totals(self) -> Dict[str, float]:
        """Summed ms of each part (a part ends at the mark named after it) since the last call."""
        if self.cuda:
            torch.cuda.synchronize()
        out: Dict[str, float] = {}
        for (_, start), (name, end) in zip(self.marks, self.marks[1:]):
            if name == "start":
                continue
            ms = start.elapsed_time(end) if self.cuda else (end - start) * 1000
            out[name] = out.get(name, 0.0) + ms
        self.marks.clear()
        return out


class DeviceEtaNTASGD(SparseNTASGD):
    """SparseNTASGD whose ``eta`` stays a tensor once :func:`make_step` has put it on the device (the state a run
    resumed before this change had: the per-parameter loop then read it back once per parameter and step)."""

    @staticmethod
    def _advance(state, group) -> None:
        held = state["eta"]
        SparseNTASGD._advance(state, group)
        if torch.is_tensor(held):
            state["eta"] = held.fill_(state["eta"])


def build(variant: str, size: int, vocab: int, device: torch.device, seed: int = 0):
    """Model, optimizer and Selfish-RNN scheduler of ``variant``, already past the switch where it averages."""
    torch.manual_seed(seed)
    model = RNNModel("LSTM", vocab, size, size, 2, dropout=0.65).to(device)
    if variant == "torch SGD":
        optimizer = torch.optim.SGD(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    else:
        kind = DeviceEtaNTASGD if variant.endswith("on device") else SparseNTASGD
        optimizer = kind(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY,
                                 averaging=variant.startswith("averaging"), foreach=variant.endswith("foreach"))
    scheduler = compress.dict_config(model, optimizer, {
        "pruners": {"selfish": {"class": "SelfishRNNPruner", "density": DENSITY, "death_rate": 0.8, "seed": seed}},
        "policies": [{"pruner": {"instance_name": "selfish"}, "starting_epoch": 0, "ending_epoch": 100}]})
    scheduler.on_epoch_begin(0, optimizer)
    return model, optimizer, scheduler


def make_step(variant: str, size: int, vocab: int, device: torch.device, timer: PartTimer) -> Callable[[], None]:
    """One timed training step of ``variant`` per call (the loop of compress_models.training.train_epoch)."""
    model, optimizer, scheduler = build(variant, size, vocab, device)
    gen = torch.Generator(device="cpu").manual_seed(1)
    data = torch.randint(0, vocab, (BPTT, BATCH), generator=gen).to(device)
    target = torch.randint(0, vocab, (BPTT * BATCH,), generator=gen).to(device)
    hidden = model.init_hidden(BATCH)
    calls = [0]

    def step() -> None:
        i = calls[0]
        calls[0] += 1
        timer.mark("start")
        scheduler.on_minibatch_begin(0, i, 10 ** 9, optimizer)
        output, _ = model(data, hidden)
        loss = scheduler.before_backward_pass(0, i, 10 ** 9, F.cross_entropy(output.view(-1, vocab), target),
                                              optimizer)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        scheduler.before_parameter_optimization(0, i, 10 ** 9, optimizer)
        timer.mark(PARTS[0])
        optimizer.step()
        timer.mark(PARTS[1])
        scheduler.on_minibatch_end(0, i, 10 ** 9, optimizer)
        timer.mark(PARTS[2])
        if i == 0 and variant == "averaging, loop, eta on device":
            for state in optimizer.state.values():
                state["eta"] = torch.tensor(state["eta"], device=device)

    return step


def time_size(size: int, vocab: int, device: torch.device, steps: int, rounds: int, variants) -> List[list]:
    timer = PartTimer(device)
    runs = {v: make_step(v, size, vocab, device, timer) for v in variants}
    for step in runs.values():  # warm-up: cuDNN plans, allocator, the averaging state and buffers
        for _ in range(3):
            step()
        timer.totals()
    per_round: Dict[str, List[Dict[str, float]]] = {v: [] for v in variants}
    for _ in range(rounds):
        for variant, step in runs.items():
            for _ in range(steps):
                step()
            parts = {k: ms / steps for k, ms in timer.totals().items()}
            parts["total"] = sum(parts[k] for k in PARTS)
            per_round[variant].append(parts)
    medians = {v: {k: statistics.median(r[k] for r in rs) for k in (*PARTS, "total")} for v, rs in per_round.items()}
    reference = medians["SGD phase"]["total"]
    return [[f"2x{size}", v] + [f"{medians[v][k]:.3f}" for k in (*PARTS, "total")]
            + [f"{medians[v]['total'] / reference:.3f}"] for v in variants]


def check_identical(size: int, vocab: int, device: torch.device, steps: int) -> list:
    """Largest |foreach - loop| of weights and averages after ``steps`` averaging steps on the same gradients."""
    loop = build("averaging, loop", size, vocab, device)
    fast = build("averaging, foreach", size, vocab, device)
    gen = torch.Generator(device="cpu").manual_seed(2)
    for i in range(steps):
        for _, optimizer, scheduler in (loop, fast):
            scheduler.on_minibatch_begin(0, i, steps, optimizer)
        for p_loop, p_fast in zip(loop[0].parameters(), fast[0].parameters()):
            p_loop.grad = (torch.randn(p_loop.shape, generator=gen) * 1e-3).to(device)
            p_fast.grad = p_loop.grad.clone()
        for _, optimizer, scheduler in (loop, fast):
            optimizer.step()
            scheduler.on_minibatch_end(0, i, steps, optimizer)
            if i == steps // 2:  # one prune-and-regrow event: averages restart at pruned and grown weights
                scheduler.on_epoch_end(0, optimizer)
    dw = max((a - b).abs().max().item() for a, b in zip(loop[0].parameters(), fast[0].parameters()))
    dax = max((loop[1].state[a]["ax"] - fast[1].state[b]["ax"]).abs().max().item()
              for a, b in zip(loop[0].parameters(), fast[0].parameters()))
    same = all(torch.equal(a, b) and torch.equal(loop[1].state[a][k], fast[1].state[b][k])
               for a, b in zip(loop[0].parameters(), fast[0].parameters()) for k in ("ax", "count"))
    return [f"2x{size}", steps, f"{dw:.3g}", f"{dax:.3g}", "yes" if same else "no"]


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cuda", action="store_true")
    p.add_argument("--sizes", type=int, nargs="*", default=[650, 1500])
    p.add_argument("--vocab", type=int, default=10000)
    p.add_argument("--steps", type=int, default=20, help="steps per variant and round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--check-steps", type=int, default=20, help="averaging steps of the numerics check")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.cuda else "cpu")
    variants = VARIANTS if args.cuda else tuple(v for v in VARIANTS if "on device" not in v)
    name = torch.cuda.get_device_name() if args.cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}, torch {torch.__version__}; ms per step, medians of {args.rounds} rounds of {args.steps}")
    rows, checks = [], []
    for size in args.sizes:
        rows += time_size(size, args.vocab, device, args.steps, args.rounds, variants)
        checks.append(check_identical(size, args.vocab, device, args.check_steps))
        if args.cuda:
            torch.cuda.empty_cache()
    text = tabulate(rows, headers=["LSTM LM", "optimizer", *PARTS, "step", "step / SGD phase"], tablefmt="psql")
    text += "\n" + tabulate(checks, headers=["LSTM LM", "averaging steps", "max |w foreach - w loop|",
                                             "max |ax foreach - ax loop|", "bit-identical"], tablefmt="psql")
    print(text)
    return text


if __name__ == "__main__":
    main()
