"""CPU benchmark of a trained, pruned word LM deployed four ways, side by side in one run.

* ``fp32 PyTorch``: the model itself;
* ``compress INT8``: :func:`compress.quantization.export_model` written with :func:`compress.export.save_sparse`
  and read back with :func:`compress.export.load_sparse` (fbgemm int8 kernels, the recurrence in ATen's loop);
* ``ONNX Runtime fp32`` and ``ONNX Runtime INT8``: :func:`compress.export.onnx.export_onnx` (INT8: the LSTMs as
  ``com.microsoft.DynamicQuantizeLSTM``), run through :class:`compress.export.onnx.OnnxLM` (with its idle
  threads not spinning, so that they take no time from the model timed next).

For each: time per token of one forward call over ``bptt x batch`` tokens (the models take turns, ``--repeats``
rounds; the median), the file size, the largest logit difference from fp32 PyTorch, and validation perplexity.
Without ``--checkpoint`` the model is trained here: ``--epochs`` epochs on the embedded synthetic corpus (or
``--data``), pruned by magnitude to ``--sparsity`` at the start of the last epoch, which then trains under the
masks. Needs the ``onnx`` extra.

    PYTHONPATH=$PWD python examples/bench_export.py --threads 2
    PYTHONPATH=$PWD python examples/bench_export.py --data ../shared/data/wikitext-2 --max-train-batches 300 \\
        --eval-tokens 20000 --threads 2
    PYTHONPATH=$PWD python examples/bench_export.py --checkpoint runs/wt2_650.pt --data data/wikitext-2 --threads 2
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from typing import Any, Dict, List

import torch
from tabulate import tabulate

import compress
from compress.export import load_sparse, save_sparse
from compress.export.from_checkpoint import rebuild_for_export
from compress.export.onnx import OnnxLM, export_onnx
from compress.quantization import export_model
from compress.reports.inspection import DEFAULT_TASK, load_task
from compress_models import RNNModel, batchify, evaluate_lm, load_corpus, synthetic_corpus, train_epoch


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", help="corpus folder (train/valid/test.txt); default: the embedded synthetic corpus")
    p.add_argument("--checkpoint", help="a trained checkpoint to deploy instead of training one here")
    p.add_argument("--task", default=DEFAULT_TASK, help="MODULE:FUNCTION that rebuilds --checkpoint's model")
    p.add_argument("--emsize", type=int, default=650)
    p.add_argument("--nhid", type=int, default=650)
    p.add_argument("--nlayers", type=int, default=2)
    p.add_argument("--untied", action="store_true")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-train-batches", type=int, default=0, help="per epoch (0: the whole split)")
    p.add_argument("--lr", type=float, default=20.0)
    p.add_argument("--sparsity", type=float, default=0.8, help="of every weight matrix, embedding included")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 20])
    p.add_argument("--bptt", type=int, default=35)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    p.add_argument("--eval-batch-size", type=int, default=10)
    p.add_argument("--eval-tokens", type=int, default=0, help="validate on the first N tokens (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", help="checkpoint of the model trained here: written after training, and read "
                                   "instead of training when it exists (same flags)")
    return p.parse_args(argv)


def corpus_of(args):
    if args.data:
        return load_corpus(args.data)
    return synthetic_corpus(seed=0)


TRAINING_FLAGS = ("data", "emsize", "nhid", "nlayers", "untied", "epochs", "max_train_batches", "lr", "sparsity",
                  "bptt", "seed")


def trained_pruned_model(args, corpus) -> RNNModel:
    torch.manual_seed(args.seed)
    model = RNNModel("LSTM", len(corpus.dictionary), args.emsize, args.nhid, args.nlayers, 0.2, not args.untied)
    flags = {k: getattr(args, k) for k in TRAINING_FLAGS}
    if args.cache and os.path.exists(args.cache):
        state = compress.io.read_checkpoint(args.cache)
        if state["extra"].get("flags") != flags:
            raise SystemExit(f"{args.cache} was trained with other flags: {state['extra'].get('flags')}")
        model.load_state_dict(state["model"])
        print(f"model read from {args.cache}")
        return model.eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    levels = {"encoder.weight": args.sparsity, "rnn.weight_*": args.sparsity}
    if args.untied:
        levels["decoder.weight"] = args.sparsity
    schedule = {"pruners": {"level": {"class": "SparsityLevelParameterPruner", "levels": levels}},
                "policies": [{"pruner": {"instance_name": "level"}, "epochs": [args.epochs - 1]}]}
    scheduler = compress.dict_config(model, optimizer, schedule)
    train = batchify(corpus.train, 20)
    for epoch in range(args.epochs):
        start = time.perf_counter()
        scheduler.on_epoch_begin(epoch, optimizer)
        loss = train_epoch(model, train, optimizer, scheduler, epoch, bptt=args.bptt,
                           max_batches=args.max_train_batches)
        scheduler.on_epoch_end(epoch, optimizer)
        print(f"epoch {epoch}: train loss {loss:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    if args.cache:
        compress.save_checkpoint(args.cache, model, flags=flags)
    return model.eval()


def main(argv=None) -> Dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        task = load_task(args.task)(args.data, torch.device("cpu"))
        fp32 = rebuild_for_export(args.checkpoint, task)
        corpus = getattr(task, "corpus", None) or corpus_of(args)
    else:
        corpus = corpus_of(args)
        fp32 = trained_pruned_model(args, corpus)
    weights = [p for p in fp32.parameters() if p.dim() == 2]
    sparsity = sum(int((p == 0).sum()) for p in weights) / sum(p.numel() for p in weights)

    with tempfile.TemporaryDirectory() as folder:
        files = {name: os.path.join(folder, name) for name in ("fp32.pt", "int8.sparse.pt", "fp32.onnx", "int8.onnx")}
        torch.save(fp32.state_dict(), files["fp32.pt"])
        save_sparse(export_model(fp32, "int8"), files["int8.sparse.pt"])
        export_onnx(fp32, files["fp32.onnx"], "fp32")
        onnx_int8 = export_onnx(fp32, files["int8.onnx"], "int8")
        models = {"fp32 PyTorch": (fp32, files["fp32.pt"]),
                  "compress INT8": (load_sparse(files["int8.sparse.pt"], fp32), files["int8.sparse.pt"]),
                  "ONNX Runtime fp32": (OnnxLM(files["fp32.onnx"], args.threads, spin=False), files["fp32.onnx"]),
                  "ONNX Runtime INT8": (OnnxLM(files["int8.onnx"], args.threads, spin=False), files["int8.onnx"])}
        sizes = {name: os.path.getsize(path) for name, (_, path) in models.items()}

    ntokens = fp32.encoder.num_embeddings
    per_token: Dict[str, Dict[int, float]] = {name: {} for name in models}
    diffs = dict.fromkeys(models, 0.0)
    with torch.no_grad():
        for batch in args.batch_sizes:
            x = torch.randint(0, ntokens, (args.bptt, batch), generator=torch.Generator().manual_seed(batch))
            ref = fp32(x, fp32.init_hidden(batch))[0]
            for name, (m, _) in models.items():
                diffs[name] = max(diffs[name], float((m(x, m.init_hidden(batch))[0] - ref).abs().max()))
            times: Dict[str, List[float]] = {name: [] for name in models}
            for rep in range(args.warmup + args.repeats):
                for name, (m, _) in models.items():  # round-robin: every model sees the same machine load
                    hidden = m.init_hidden(batch)
                    start = time.perf_counter()
                    m(x, hidden)
                    if rep >= args.warmup:
                        times[name].append(time.perf_counter() - start)
            for name in models:
                per_token[name][batch] = statistics.median(times[name]) / (args.bptt * batch)

    valid = corpus.split("valid")
    if args.eval_tokens:
        valid = valid[: args.eval_tokens]
    source = batchify(valid, args.eval_batch_size)
    ppl = {}
    for name, (m, _) in models.items():
        ppl[name] = math.exp(evaluate_lm(m, source, args.bptt, args.eval_batch_size)[0])

    base = per_token["fp32 PyTorch"]
    rows = []
    for name in models:
        row = [name]
        for batch in args.batch_sizes:
            row.append(f"{per_token[name][batch] * 1e6:.1f} ({base[batch] / per_token[name][batch]:.2f}x)")
        row += [f"{sizes[name] / 2 ** 20:.2f}", f"{diffs[name]:.1e}", f"{ppl[name]:.2f}"]
        rows.append(row)
    where = args.data or "embedded synthetic corpus"
    print(f"LSTM {fp32.nlayers}x{fp32.nhid}, {ntokens:,} words, {100 * sparsity:.1f}% of weight matrices zero; "
          f"{args.bptt} steps per call; {args.threads} threads; validation: {source.numel():,} tokens of {where}; "
          f"ONNX INT8 graph: {onnx_int8.summary().split('; ', 1)[1]}")
    print(tabulate(rows, headers=["model"] + [f"µs/token, batch {b} (vs fp32)" for b in args.batch_sizes]
                   + ["file MiB", "max logit diff vs fp32", "val ppl"], tablefmt="github", disable_numparse=True))
    return {"per_token_s": per_token, "sizes": sizes, "max_logit_diff": diffs, "val_ppl": ppl, "sparsity": sparsity}


if __name__ == "__main__":
    main()
