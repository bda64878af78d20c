"""File sizes of a pruned word LM: torch.save of the dense model against compress's sparse fp32/fp16/INT8 files.

Every weight matrix of a randomly initialised LM (embedding, recurrent layers; a tied decoder is the embedding) is
pruned by magnitude to each sparsity in turn and written with :func:`compress.export.save_sparse` at each
precision; beside it, ``torch.save`` of the model's ``state_dict`` (what a pruned model costs today) and the
dense INT8 file of :func:`compress.quantization.save_quantized`. Sizes do not depend on the weights' values, only
on how many are zero, so random weights measure them exactly:

    PYTHONPATH=$PWD python examples/export_sizes.py                 # WikiText-2 2x650 tied: 33,278 words
    PYTHONPATH=$PWD python examples/export_sizes.py --vocab 10000 --emsize 1500 --nhid 1500 --untied
"""
from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any, Dict, List

import torch
from tabulate import tabulate

from compress.export import save_sparse
from compress.pruning.criteria.magnitude import level_mask
from compress.quantization import export_model, save_quantized
from compress_models import RNNModel


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--vocab", type=int, default=33_278)
    p.add_argument("--emsize", type=int, default=650)
    p.add_argument("--nhid", type=int, default=650)
    p.add_argument("--nlayers", type=int, default=2)
    p.add_argument("--untied", action="store_true", help="a decoder of its own (default: tied to the embedding)")
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.0, 0.5, 0.8, 0.9, 0.95])
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def pruned(model: RNNModel, sparsity: float) -> RNNModel:
    """``model`` with every weight matrix pruned to ``sparsity`` by magnitude (biases kept)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(level_mask(p, sparsity))
    return model


def size_of(folder: str, name: str, write) -> int:
    path = os.path.join(folder, name)
    write(path)
    size = os.path.getsize(path)
    os.unlink(path)
    return size


def main(argv=None) -> List[Dict[str, Any]]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    mib = 2 ** 20
    rows, results = [], []
    with tempfile.TemporaryDirectory() as folder:
        for sparsity in args.sparsities:
            torch.manual_seed(args.seed)
            model = pruned(RNNModel("LSTM", args.vocab, args.emsize, args.nhid, args.nlayers, 0.0,
                                    not args.untied).eval(), sparsity)
            sizes = {"torch.save fp32": size_of(folder, "dense.pt", lambda p, m=model: torch.save(m.state_dict(), p))}
            int8 = export_model(model, "int8")
            sizes["dense INT8"] = size_of(folder, "int8.pt", lambda p, m=int8: save_quantized(m, p))
            for precision in ("fp32", "fp16", "int8"):
                exported = int8 if precision == "int8" else export_model(model, precision)
                sizes[f"sparse {precision}"] = size_of(folder, "sparse.pt", lambda p, m=exported: save_sparse(m, p))
            base = sizes["torch.save fp32"]
            rows.append([f"{100 * sparsity:.0f}"] + [f"{s / mib:.2f} ({base / s:.1f}x)" for s in sizes.values()])
            results.append({"sparsity": sparsity, **sizes})
    shape = (f"LSTM {args.nlayers}x{args.nhid}, emsize {args.emsize}, {args.vocab:,} words, "
             f"{'untied' if args.untied else 'tied'}")
    print(f"{shape}; MiB (times smaller than torch.save of the fp32 state_dict)")
    print(tabulate(rows, headers=["sparsity (%)"] + list(results[0])[1:], tablefmt="github", disable_numparse=True))
    return results


if __name__ == "__main__":
    main()
