"""CPU benchmark: the real INT8/FP16 export of a word LM against fp32, side by side in one run.

Times one forward pass over a ``(bptt, batch)`` chunk (embedding, recurrent layers and decoder over the whole
vocabulary), for every model in turn, round-robin, ``--repeats`` times; reports the median, tokens per
second and the speed-up over fp32, the largest logit difference, and the size of each saved file.
Weights are random unless a checkpoint is given (speed does not depend on them):

    python examples/bench_quant.py                                      # 2x650 LSTM, 10k words
    python examples/bench_quant.py --emsize 1500 --nhid 1500 --tied
    python examples/bench_quant.py --checkpoint /tmp/lm.pt
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any, Dict, List

import torch
from tabulate import tabulate

from compress.io.checkpoint import read_checkpoint
from compress.quantization import (
    QuantizedGRU,
    QuantizedLSTM,
    export_model,
    kernels_available,
    load_quantized,
    save_quantized,
)
from compress_models import RNNModel, rnn_model_from_state


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", help="a word_lm.py checkpoint (default: random weights of the given shape)")
    p.add_argument("--model", default="LSTM", choices=["LSTM", "GRU"])
    p.add_argument("--vocab", type=int, default=10_000)
    p.add_argument("--emsize", type=int, default=650)
    p.add_argument("--nhid", type=int, default=650)
    p.add_argument("--nlayers", type=int, default=2)
    p.add_argument("--tied", action="store_true")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 20])
    p.add_argument("--bptt", type=int, default=35)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--formats", nargs="+", default=["int8", "fp16"], choices=["int8", "fp16"])
    p.add_argument("--python-loop", action="store_true",
                   help="also time int8 with the recurrence in Python (per-step kernel calls) instead of ATen's loop")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def build_model(args) -> RNNModel:
    if args.checkpoint:
        return rnn_model_from_state(read_checkpoint(args.checkpoint)["model"])[0]
    torch.manual_seed(args.seed)
    return RNNModel(args.model, args.vocab, args.emsize, args.nhid, args.nlayers, 0.0, args.tied).eval()


def file_size(save) -> int:
    fd, path = tempfile.mkstemp(suffix=".pt")
    os.close(fd)
    try:
        save(path)
        return os.path.getsize(path)
    finally:
        os.unlink(path)


def main(argv=None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    fp32 = build_model(args)
    models: Dict[str, torch.nn.Module] = {"fp32": fp32}
    for kind in args.formats:
        models[kind] = export_model(fp32, kind)
    if args.python_loop and "int8" in args.formats:
        slow = export_model(fp32, "int8")
        for m in slow.modules():
            if isinstance(m, (QuantizedLSTM, QuantizedGRU)):
                m.use_aten_loop = False
        models["int8 (python loop)"] = slow

    sizes = {"fp32": file_size(lambda p: torch.save(fp32.state_dict(), p))}
    for kind in args.formats:
        sizes[kind] = file_size(lambda p, k=kind: save_quantized(models[k], p))
    # the saved file must reload into an identical model
    if "int8" in args.formats:
        fd, path = tempfile.mkstemp(suffix=".pt")
        os.close(fd)
        save_quantized(models["int8"], path)
        reloaded = load_quantized(path, build_model(args))
        os.unlink(path)
        models_check = (models["int8"], reloaded)
    else:
        models_check = None

    ntokens = fp32.encoder.num_embeddings
    speed_rows: List[List[Any]] = []
    result: Dict[str, Any] = {"kernels": kernels_available(), "threads": torch.get_num_threads(), "speed": {},
                              "sizes": sizes}
    with torch.no_grad():
        for batch in args.batch_sizes:
            x = torch.randint(0, ntokens, (args.bptt, batch))
            hidden = fp32.init_hidden(batch)
            ref = fp32(x, hidden)[0]
            diffs = {name: float((m(x, hidden)[0] - ref).abs().max()) for name, m in models.items()}
            if models_check is not None:
                a, b = (m(x, hidden)[0] for m in models_check)
                if not torch.equal(a, b):
                    raise SystemExit("the reloaded int8 model differs from the exported one")
            times: Dict[str, List[float]] = {name: [] for name in models}
            for rep in range(args.warmup + args.repeats):
                for name, m in models.items():  # round-robin: every model sees the same machine load
                    start = time.perf_counter()
                    m(x, hidden)
                    if rep >= args.warmup:
                        times[name].append(time.perf_counter() - start)
            base = statistics.median(times["fp32"])
            for name in models:
                med = statistics.median(times[name])
                # the per-repeat ratio is robust to load that changes during the run
                ratios = [f / t for f, t in zip(times["fp32"], times[name])]
                speed_rows.append([batch, name, f"{med * 1e3:.2f}", f"{args.bptt * batch / med:,.0f}",
                                   f"{base / med:.2f}x", f"{statistics.median(ratios):.2f}x",
                                   f"{diffs[name]:.2e}"])
                result["speed"][(batch, name)] = base / med
    shape = f"{fp32.rnn_type} {fp32.nlayers}x{fp32.nhid}, emsize {fp32.encoder.embedding_dim}, {ntokens} words" \
            f"{', tied' if fp32.decoder.weight is fp32.encoder.weight else ''}"
    print(f"{shape}; {args.bptt} steps per call; {torch.get_num_threads()} threads; kernels {kernels_available()}")
    print(tabulate(speed_rows, headers=["batch", "model", "ms / call", "tokens/s", "speed-up (medians)",
                                        "speed-up (median ratio)", "max |logit - fp32|"],
                   tablefmt="psql", disable_numparse=True))
    print(tabulate([[name, f"{size / 2 ** 20:.2f}", f"{sizes['fp32'] / size:.2f}x"] for name, size in sizes.items()],
                   headers=["file", "MiB", "smaller by"], tablefmt="psql", disable_numparse=True))
    return result


if __name__ == "__main__":
    main()
