"""How long the Lyapunov spectrum of a stacked LSTM takes: the fast path against vmap(jacrev) + QR, side by side.

Hyperpruning's setting: the full spectrum (layers x hidden exponents) of a 2-layer LSTM on 35 steps of a batch of
2 embedded tokens, 10 warm-up steps. Rows:

* ``baseline``: the straightforward way, ``torch.func.vmap(jacrev(step))`` for every step's Jacobians and
  ``torch.linalg.qr`` of ``J^T Q`` (float32), i.e. ``lyapunov_spectrum(..., jacobian="autograd",
  qr="householder", dtype=torch.float32)``;
* ``fast``: ``lyapunov_spectrum``'s defaults: the analytic Jacobian blocks for the whole batch, ``J^T Q`` applied
  layer by layer without forming ``J``, float64, and on CUDA a Cholesky QR (products, a Cholesky factorisation
  and triangular solves instead of a Householder QR);
* ``fast-householder``, ``fast-cholesky``: the same with either QR (float64); ``fast-float32`` in single precision.

Each row is timed ``--rounds`` times after a warm-up call (median; CUDA synchronised), and its spectrum compared
with the float64 Householder one (largest difference of any exponent, bits per step).

    python examples/bench_lyapunov.py --cuda                  # 2x1500, Hyperpruning's size (target: <= 1 s)
    python examples/bench_lyapunov.py --size 256              # CPU, a small model
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from tabulate import tabulate

import compress

VARIANTS = {
    "baseline": dict(jacobian="autograd", qr="householder", dtype=torch.float32),
    "fast": dict(),
    "fast-householder": dict(qr="householder"),
    "fast-cholesky": dict(qr="cholesky"),
    "fast-float32": dict(dtype=torch.float32),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cuda", action="store_true", help="run on the GPU")
    p.add_argument("--size", type=int, help="hidden units per layer (default 1500 with --cuda, 256 without)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--steps", type=int, default=35)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated rows (default all: {', '.join(VARIANTS)})")
    return p.parse_args(argv)


def timed(fn, device, rounds):
    fn()  # warm-up: kernels, cuBLAS/cuSOLVER handles
    seconds = []
    for _ in range(rounds):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), out


def main(argv=None):
    args = parse_args(argv)
    device = torch.device("cuda" if args.cuda else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False   # the spectra are compared to float64 ones
    size = args.size or (1500 if args.cuda else 256)
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(size, size, args.layers).to(device)
    inputs = (torch.rand(args.steps, args.batch, size, device=device) * 0.2 - 0.1)  # like U(-0.1, 0.1) embeddings
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    reference = compress.lyapunov_spectrum(lstm, inputs, warmup=args.warmup, qr="householder").cpu()
    rows = []
    for name in names:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds, spectrum = timed(lambda kw=VARIANTS[name]: compress.lyapunov_spectrum(
            lstm, inputs, warmup=args.warmup, **kw), device, args.rounds)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
        error = float((spectrum.double().cpu() - reference).abs().max())
        rows.append([name, f"{seconds:.3f}", peak if peak is None else f"{peak:.2f}", f"{error:.1e}"])
    base = next((float(r[1]) for r in rows if r[0] == "baseline"), None)
    for r in rows:
        r.insert(2, f"{base / float(r[1]):.1f}x" if base else "-")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"Lyapunov spectrum of a {args.layers}x{size} LSTM: {args.layers * size} exponents, {args.steps} steps x "
          f"batch {args.batch}, {args.warmup} warm-up steps; {where}; torch {torch.__version__}; median of "
          f"{args.rounds}")
    print(tabulate(rows, headers=["path", "seconds", "vs baseline", "peak GiB", "max |diff| (bits/step)"],
                   tablefmt="github", missingval="-"))
    print(f"spectrum: max {reference.max():.3f}, mean {reference.mean():.3f}, min {reference.min():.3f} bits/step")
    return rows


if __name__ == "__main__":
    main()
