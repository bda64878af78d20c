"""Benchmark compress.kernels.magnitude.magnitude_threshold against torch.kthvalue.

Examples:
    python examples/bench_threshold.py --device cpu --sizes 1e6 1e7
    python examples/bench_threshold.py --device cuda --sizes 1e7 1e8 1e9 --repeat 20

For each size N it builds float32 weights (one tensor, or ``--split`` tensors
of about equal size: by default 8 from 5e8 elements up, like the layers of a
large model), times ``magnitude_threshold`` at ``--sparsity`` (median of
``--repeat`` timed calls after warm-up, with CUDA synchronisation), times
``x.abs().flatten().kthvalue(k)`` beside it where it fits (single-tensor
layouts up to ``--kthvalue-max`` elements; "n/a" elsewhere), checks that the
two thresholds agree exactly, and prints a table.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Callable

import torch
from tabulate import tabulate

from compress.kernels.magnitude import magnitude_threshold

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=None,
                        help="total element counts (default: 1e7 1e8 1e9 on cuda, 1e6 1e7 on cpu)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=None, help="timed calls per measurement (default 20 cuda, 5 cpu)")
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--split", type=int, default=None,
                        help="number of tensors per size (default: 8 from 5e8 elements up, else 1)")
    parser.add_argument("--kthvalue-max", type=float, default=1e8,
                        help="largest N for which torch.kthvalue is timed (it takes ~0.7 s at 1e8 on an H100)")
    parser.add_argument("--kthvalue-repeat", type=int, default=3, help="timed kthvalue calls (it is slow)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-triton", action="store_true",
                        help="on CUDA, use torch ops instead of the fused Triton kernel")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    if args.sizes is None:
        args.sizes = [1e7, 1e8, 1e9] if args.device == "cuda" else [1e6, 1e7]
    if args.repeat is None:
        args.repeat = 20 if args.device == "cuda" else 5
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, repeat: int, warmup: int = 2) -> tuple[float, object]:
    """Median wall time of ``fn`` in ms (device-synchronised) and its last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    sync(device)
    times = []
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), out


def make_tensors(n: int, parts: int, dtype: torch.dtype, device: torch.device, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator(device=device).manual_seed(seed)
    sizes = [n // parts + (1 if i < n % parts else 0) for i in range(parts)]
    out = []
    for size in sizes:
        t = torch.empty(size, dtype=torch.float32, device=device)
        t.normal_(generator=gen)
        out.append(t.to(dtype) if dtype != torch.float32 else t)
    return out


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    x, y = float(a), float(b)
    return x == y or (math.isnan(x) and math.isnan(y))


def bench_size(args: argparse.Namespace, n: int, device: torch.device, dtype: torch.dtype) -> list[object]:
    """One table row: time ours (and kthvalue where it fits) on N elements."""
    parts = args.split if args.split is not None else (8 if n >= 5e8 else 1)
    parts = max(1, min(parts, n))
    print(f"N={n:.3g}: {parts} tensor(s) of ~{n // parts:.3g} {args.dtype} elements", flush=True)
    tensors = make_tensors(n, parts, dtype, device, args.seed)
    options = {"use_triton": False} if args.no_triton else {}
    ours_ms, thr = time_ms(lambda: magnitude_threshold(tensors, args.sparsity, **options), device, args.repeat)
    k = int(args.sparsity * n)
    kth_ms: float | None = None
    match = "n/a"
    if parts == 1 and n <= args.kthvalue_max and k >= 1:
        x = tensors[0]
        kth_ms, ref = time_ms(lambda: x.abs().flatten().float().kthvalue(k).values, device,
                              args.kthvalue_repeat, warmup=1)
        match = "yes" if thr is not None and same(thr, ref) else "NO"
    return [
        f"{n:.0e}",
        parts,
        f"{ours_ms:.2f}",
        "n/a" if kth_ms is None else f"{kth_ms:.2f}",
        "n/a" if kth_ms is None else f"{kth_ms / ours_ms:.1f}x",
        match,
    ]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; dtype {args.dtype}; sparsity {args.sparsity}; "
          f"median of {args.repeat} (kthvalue: {args.kthvalue_repeat})"
          + ("; torch ops only" if args.no_triton else ""))
    rows = []
    for size in args.sizes:
        rows.append(bench_size(args, int(size), device, dtype))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(tabulate(rows, headers=["N", "tensors", "ours ms", "kthvalue ms", "speed-up", "exact match"]))
    if any(r[-1] == "NO" for r in rows):
        raise SystemExit("mismatch between magnitude_threshold and torch.kthvalue")


if __name__ == "__main__":
    main()
