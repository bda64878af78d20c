"""Cost of the cross-rank mask check against a training epoch, for the word LM (2x650 by default).

Two ranks (gloo; ``--cuda``: each rank's tensors on the GPU, still gloo so it runs on one GPU) hold the masks of
the whole LM (every weight masked, 80% sparse); the script times ``compress.distributed.check_identical`` (a
64-bit hash per tensor on the tensors' device, one small all_gather) and one training step of the LM, and prints
the check as a share of an epoch (PTB: 1327 steps of 20 x 35 tokens). The check runs twice an epoch plus after
every mid-epoch mask change.

    python examples/bench_distributed.py                 # CPU
    python examples/bench_distributed.py --cuda --nhid 1500
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from tabulate import tabulate

from compress.distributed import check_identical, fingerprint
from compress_models import RNNModel


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nhid", type=int, default=650)
    p.add_argument("--vocab", type=int, default=10000)
    p.add_argument("--steps-per-epoch", type=int, default=1327, help="PTB with batch 20, bptt 35")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--cuda", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per rank")
    return p.parse_args(argv)


def step_seconds(model, device, repeats):
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    x = torch.randint(0, model.decoder.out_features, (36, 20), device=device)
    hidden = model.init_hidden(20)
    times = []
    for i in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out, _ = model(x[:-1], hidden)
        loss = F.cross_entropy(out.reshape(-1, out.size(-1)), x[1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def worker(rank, size, init, args, out):
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=size)
    device = torch.device("cuda" if args.cuda else "cpu")
    torch.manual_seed(0)
    model = RNNModel("LSTM", args.vocab, args.nhid, args.nhid, 2, dropout=0.0).to(device)
    masks = {n: torch.rand_like(p) > 0.8 for n, p in model.named_parameters() if p.dim() >= 2}
    hash_times, check_times = [], []
    for _ in range(args.repeats):
        if args.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for m in masks.values():
            fingerprint(m)
        hash_times.append(time.perf_counter() - t0)
        dist.barrier()
        t0 = time.perf_counter()
        check_identical(masks)
        check_times.append(time.perf_counter() - t0)
    step = step_seconds(model, device, 5) if rank == 0 else None
    if rank == 0:
        torch.save({"hash": statistics.median(hash_times), "check": statistics.median(check_times), "step": step,
                    "weights": sum(m.numel() for m in masks.values())}, out)
    dist.destroy_process_group()


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "r.pt")
        mp.spawn(worker, args=(2, os.path.join(folder, "init"), args, out), nprocs=2, join=True)
        r = torch.load(out)
    epoch = r["step"] * args.steps_per_epoch
    device = torch.cuda.get_device_name() if args.cuda else f"CPU, {args.threads} thread(s) per rank"
    rows = [[f"2x{args.nhid}", f"{r['weights']:,}", f"{1e3 * r['hash']:.2f}", f"{1e3 * r['check']:.2f}",
             f"{1e3 * r['step']:.1f}", f"{epoch:.1f}", f"{100 * 2 * r['check'] / epoch:.4f}"]]
    print(f"device: {device}; 2 ranks, gloo")
    print(tabulate(rows, headers=["LSTM LM", "masked weights", "hash ms", "check ms (hash + all_gather)",
                                  "train step ms", "epoch s (est.)", "2 checks / epoch (%)"], tablefmt="github"))


if __name__ == "__main__":
    main()
