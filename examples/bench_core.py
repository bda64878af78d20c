"""Benchmark: training-step overhead of the compression scheduler, and global threshold selection time.

Prints, from one run:
1. ms per training step of a word-LM (2-layer LSTM, tied, batch 20, bptt 35, WikiText-2 vocabulary) in a plain
   loop, with the compress scheduler active (masks on every weight matrix, applied every step), the same with
   the store's earlier masking kernel (``mul_`` by the bool mask; on the CPU the two are one), and with
   ``torch.nn.utils.prune`` masks on the same weights; the ratios to the plain loop. The four loops run
   interleaved, in rounds, so drifts of clock and temperature hit them alike; the median round counts. The last
   column is the host time spent inside the scheduler's calls (a loop bound by kernel launches pays it in full);
   ``--profile`` adds torch.profiler's operator table of the compress loop, ``--mask-kernels`` the time of each
   way to apply a bool mask.
2. ms to find one global magnitude threshold over N weights with compress.kernels.magnitude, beside ``torch.kthvalue``.

    python examples/bench_core.py --cuda                      # sizes 650 1500, thresholds 1e7 1e8 1e9
    python examples/bench_core.py --sizes 200 --thresholds 1e6 1e7 --steps 5   # a quick CPU run
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from tabulate import tabulate

import compress
from compress.kernels.magnitude import magnitude_threshold
from compress_models import RNNModel

SCHEDULE = {
    "pruners": {"all": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.5, "final_sparsity": 0.8,
                        "weights": ["rnn.weight_*", "encoder.weight"]}},
    "policies": [{"pruner": {"instance_name": "all"}, "starting_epoch": 0, "ending_epoch": 10}],
}


MUL_KIND = "compress, mul_ masking"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_run(kind, size, vocab, device, seed=0):
    """A closure doing one training step of the given kind, and its model."""
    torch.manual_seed(seed)
    model = RNNModel("LSTM", vocab, size, size, 2, dropout=0.5, tie_weights=True).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = None
    if kind.startswith("compress"):
        scheduler = compress.dict_config(model, optimizer, SCHEDULE)
        if kind == MUL_KIND:  # the store's earlier kernel, for a side-by-side comparison
            scheduler.masks.fill_from_numel = math.inf
        scheduler.on_epoch_begin(0)
    elif kind == "torch.prune":
        import torch.nn.utils.prune as prune
        params = [(model.rnn, n) for n, _ in list(model.rnn.named_parameters()) if n.startswith("weight")]
        params.append((model.encoder, "weight"))
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.5)
    hook_seconds = [0.0]  # host time inside the scheduler's calls: what a launch-bound loop pays in full
    data = torch.randint(0, vocab, (35, 20), device=device)
    target = torch.randint(0, vocab, (35 * 20,), device=device)
    hidden = model.init_hidden(20)
    step_id = [0]

    def hook(fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        hook_seconds[0] += time.perf_counter() - t0
        return out

    def step():
        i = step_id[0]
        step_id[0] += 1
        if scheduler:
            hook(scheduler.on_minibatch_begin, 0, i, 10 ** 9, optimizer)
        output, _ = model(data, hidden)
        loss = F.cross_entropy(output.view(-1, vocab), target)
        if scheduler:
            loss = hook(scheduler.before_backward_pass, 0, i, 10 ** 9, loss, optimizer)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        if scheduler:
            hook(scheduler.before_parameter_optimization, 0, i, 10 ** 9, optimizer)
        optimizer.step()
        if scheduler:
            hook(scheduler.on_minibatch_end, 0, i, 10 ** 9, optimizer)

    step.steps = step_id
    step.hook_seconds = hook_seconds
    return step


def time_steps(step, n, device):
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return (time.perf_counter() - t0) * 1000 / n


def bench_overhead(sizes, vocab, device, steps, rounds, profile=False):
    rows = []
    kinds = ["plain", "compress", MUL_KIND, "torch.prune"]
    for size in sizes:
        runs = {k: make_run(k, size, vocab, device) for k in kinds}
        for k in kinds:  # warm-up: cuDNN plans, allocator
            time_steps(runs[k], 3, device)
        compress_run = runs["compress"]
        compress_run.hook_seconds[0], first_step = 0.0, compress_run.steps[0]
        times = {k: [] for k in kinds}
        for _ in range(rounds):
            for k in kinds:
                times[k].append(time_steps(runs[k], steps, device))
        med = {k: statistics.median(v) for k, v in times.items()}
        hook_us = compress_run.hook_seconds[0] * 1e6 / max(compress_run.steps[0] - first_step, 1)
        rows.append([f"2x{size}", f"{med['plain']:.2f}", f"{med['compress']:.2f}", f"{med[MUL_KIND]:.2f}",
                     f"{med['torch.prune']:.2f}", f"{med['compress'] / med['plain']:.3f}",
                     f"{med[MUL_KIND] / med['plain']:.3f}", f"{med['torch.prune'] / med['plain']:.3f}",
                     f"{hook_us:.0f}"])
        if profile:
            print(profile_steps(compress_run, device, f"compress loop, 2x{size}"))
        del runs
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return tabulate(rows, headers=["LSTM LM", "plain ms/step", "compress ms/step", "mul_ masking ms/step",
                                   "torch.prune ms/step", "compress / plain", "mul_ masking / plain",
                                   "torch.prune / plain", "hooks host us/step"],
                    tablefmt="psql")


def profile_steps(step, device, title, steps=10, rows=15):
    """torch.profiler's table of a few steps: which operators the compress loop spends its time in."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        time_steps(step, steps, device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return f"{title} ({steps} steps)\n" + prof.key_averages().table(sort_by=key, row_limit=rows)


def bench_threshold(sizes, device, repeat):
    rows = []
    for n in sizes:
        n = int(float(n))
        parts = max(1, n // 250_000_000)  # 1e9 as 4 tensors: a weight list, as a global budget sees it
        gen = torch.Generator(device=device).manual_seed(0)
        tensors = [torch.randn(n // parts, device=device, generator=gen) for _ in range(parts)]
        magnitude_threshold(tensors, 0.8)
        ours = []
        for _ in range(repeat):
            sync(device)
            t0 = time.perf_counter()
            t = magnitude_threshold(tensors, 0.8)
            sync(device)
            ours.append((time.perf_counter() - t0) * 1000)
        ref_ms, match = "n/a", "-"
        if n <= 100_000_000:
            flat = torch.cat([x.abs() for x in tensors])
            k = int(0.8 * flat.numel())
            sync(device)
            t0 = time.perf_counter()
            ref = flat.kthvalue(k).values
            sync(device)
            ref_ms = f"{(time.perf_counter() - t0) * 1000:.1f}"
            match = "yes" if float(ref) == float(t) else f"NO ({float(ref)} vs {float(t)})"
            del flat
        rows.append([f"{n:.0e}", parts, f"{statistics.median(ours):.2f}", ref_ms, match])
        del tensors
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return tabulate(rows, headers=["weights", "tensors", "compress ms", "kthvalue ms", "exact"], tablefmt="psql")


def bench_mask_kernels(weights, device, repeat=20):
    """Ways to zero the pruned weights of one tensor with a bool keep-mask, timed alone: which kernel the
    after-step masking should use (``mul_`` with a bool operand casts on the fly; the others read bool natively).
    On a 2-core CPU ``where`` took half of ``mul_``'s time at 2e7 weights, the same at 2e6 and twice as long at
    1.6e5, so the store multiplies there; on an H200 the fill with the negation included beat ``mul_`` at 8.6e7
    weights, which is why large CUDA tensors are filled (``MaskStore.fill_from_numel``)."""
    n = int(float(weights))
    gen = torch.Generator(device=device).manual_seed(0)
    param = torch.randn(n, device=device, generator=gen)
    keep = torch.rand(n, device=device, generator=gen) > 0.8
    pruned, keep_float, zero = ~keep, keep.float(), torch.zeros((), device=device)
    ways = {
        "mul_(bool keep-mask)": lambda: param.mul_(keep),
        "masked_fill_(bool pruned-mask, 0)": lambda: param.masked_fill_(pruned, 0),
        "masked_fill_(~keep, 0), negation included": lambda: param.masked_fill_(keep.logical_not(), 0),
        "where(keep, param, 0, out=param)": lambda: torch.where(keep, param, zero, out=param),
        "mul_(float keep-mask, 4 bytes/weight)": lambda: param.mul_(keep_float),
    }
    rows = []
    for name, fn in ways.items():
        fn()
        times = []
        for _ in range(repeat):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - t0)
        ms = statistics.median(times) * 1000
        mask_bytes = 4 if "float" in name else 1
        rows.append([name, f"{ms:.3f}", f"{n * (8 + mask_bytes) / ms / 1e6:.0f}"])
    return tabulate(rows, headers=[f"masking {n:.0e} weights", "ms", "GB/s (param read+write, mask read)"],
                    tablefmt="psql")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cuda", action="store_true")
    p.add_argument("--sizes", type=int, nargs="*", default=[650, 1500])
    p.add_argument("--vocab", type=int, default=33278)
    p.add_argument("--steps", type=int, default=20, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--thresholds", nargs="*", default=["1e7", "1e8", "1e9"])
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--profile", action="store_true", help="also print torch.profiler's table of the compress loop")
    p.add_argument("--mask-kernels", nargs="?", const="8.6e7", metavar="WEIGHTS",
                   help="also time the ways to apply a bool mask to this many weights (default: 2x1500's 8.6e7)")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.cuda else "cpu")
    name = torch.cuda.get_device_name() if args.cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}, torch {torch.__version__}")
    if args.sizes:
        print(bench_overhead(args.sizes, args.vocab, device, args.steps, args.rounds, args.profile))
    if args.thresholds:
        print(bench_threshold(args.thresholds, device, args.repeat))
    if args.mask_kernels:
        print(bench_mask_kernels(args.mask_kernels, device))


if __name__ == "__main__":
    main()
