"""Which form of predefined block sparseness is faster: k small LSTMs (module) or masks on one wide LSTM?

Times a training step (forward, backward, SGD step, and for the mask form the scheduler's re-masking) and an
inference forward pass of three word LMs with the same recurrent parameter budget, side by side in one run:

* ``dense``: the narrow dense model the budget comes from (``nhid``);
* ``mask form``: the wide model (``nhid / fract``) as ordinary ``nn.LSTM`` layers, with
  :class:`~compress.pruning.BlockSparseLSTMPruner` masks applied by the scheduler after every step;
* ``module form``: the wide model built from :class:`~compress.structured.SparseLSTM` layers
  (``--sparse_mode sparse_hidden``).

    python examples/bench_structured.py                      # CPU, small sizes
    python examples/bench_structured.py --cuda --emsize 400 --nhid 1150 --fract 0.66666 --nlayers 3
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from tabulate import tabulate

import compress
from compress_models.sparse_lm import SparseRNNModel, layer_reductions


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ntokens", type=int, default=10_000)
    p.add_argument("--emsize", type=int, default=200)
    p.add_argument("--nhid", type=int, default=400, help="hidden size of the dense model the budget comes from")
    p.add_argument("--fract", type=float, default=0.66666, help="wide models have nhid / fract units")
    p.add_argument("--nlayers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--bptt", type=int, default=35)
    p.add_argument("--steps", type=int, default=20, help="timed steps per model (after 3 warm-up steps)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--cuda", action="store_true")
    return p.parse_args(argv)


def build(args, form: str):
    wide = round(args.nhid / args.fract)
    if form == "dense":
        return SparseRNNModel(args.ntokens, args.emsize, args.nhid, args.nlayers, 0.0, True), None
    if form == "module form":
        return SparseRNNModel(args.ntokens, args.emsize, wide, args.nlayers, 0.0, True, "sparse_hidden",
                              args.fract), None
    model = SparseRNNModel(args.ntokens, args.emsize, wide, args.nlayers, 0.0, True)
    reductions = layer_reductions("sparse_hidden", args.nlayers, args.fract, True)
    schedule = {
        "pruners": {f"layer{i}": {"class": "BlockSparseLSTMPruner", "reduce_in": r[0], "reduce_out": r[1],
                                  "weights": [f"rnns.{i}.weight_*"]}
                    for i, r in enumerate(reductions) if r != (1.0, 1.0)},
    }
    schedule["policies"] = [{"pruner": {"instance_name": n}, "epochs": [0]} for n in schedule["pruners"]]
    return model, schedule


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class Runner:
    """One model, its optimizer and scheduler, and fixed data; times one training step or inference pass."""

    def __init__(self, args, form: str, device: torch.device):
        torch.manual_seed(0)
        self.form, self.args, self.device = form, args, device
        model, schedule = build(args, form)
        self.model = model.to(device)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        self.scheduler = (compress.dict_config(model, self.optimizer, schedule) if schedule
                          else compress.CompressionScheduler(model, self.optimizer))
        self.scheduler.on_epoch_begin(0)
        data = torch.randint(args.ntokens, (args.bptt + 1, args.batch_size), device=device)
        self.x, self.y = data[:-1], data[1:].reshape(-1)
        self.hidden = model.init_hidden(args.batch_size)
        self.train_times, self.infer_times, self.step = [], [], 0

    def train_step(self) -> None:
        m, opt, sched, n = self.model, self.optimizer, self.scheduler, self.args.steps + 3
        m.train()
        sync(self.device)
        start = time.perf_counter()
        sched.on_minibatch_begin(0, self.step, n, opt)
        out, _ = m(self.x, self.hidden)
        loss = F.cross_entropy(out.view(-1, self.args.ntokens), self.y)
        opt.zero_grad()
        loss.backward()
        sched.before_parameter_optimization(0, self.step, n, opt)
        opt.step()
        sched.on_minibatch_end(0, self.step, n, opt)
        sync(self.device)
        self.train_times.append(time.perf_counter() - start)
        self.step += 1

    @torch.no_grad()
    def inference(self) -> None:
        self.model.eval()
        sync(self.device)
        start = time.perf_counter()
        self.model(self.x, self.hidden)
        sync(self.device)
        self.infer_times.append(time.perf_counter() - start)

    def row(self) -> dict:
        recurrent = compress.structured.dense_equivalent(self.model.rnns)
        return {
            "form": self.form,
            "hidden": self.model.sizes[0][1],
            "trainable": sum(int(t.ne(0).sum()) for t in recurrent.values()),
            "stored": sum(p.numel() for p in self.model.rnns.parameters()),
            # the first 3 steps warm up (allocator, cuDNN plans); load drifts, so models take turns step by step
            "train_ms": 1e3 * statistics.median(self.train_times[3:]),
            "infer_ms": 1e3 * statistics.median(self.infer_times[3:]),
        }


def main(argv=None) -> str:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.cuda else "cpu")
    runners = [Runner(args, form, device) for form in ("dense", "mask form", "module form")]
    for _ in range(args.steps + 3):
        for runner in runners:
            runner.train_step()
    for _ in range(args.steps + 3):
        for runner in runners:
            runner.inference()
    rows = [runner.row() for runner in runners]
    base = rows[0]
    body = [[r["form"], r["hidden"], f"{r['trainable']:,}", f"{r['stored']:,}", f"{r['train_ms']:.1f}",
             f"{r['train_ms'] / base['train_ms']:.2f}x", f"{r['infer_ms']:.1f}",
             f"{r['infer_ms'] / base['infer_ms']:.2f}x"]
            for r in rows]
    where = torch.cuda.get_device_name() if args.cuda else f"CPU, {torch.get_num_threads()} threads"
    table = tabulate(body, headers=["form", "hidden", "recurrent params (trainable)", "stored", "train step ms",
                                    "vs dense", "inference ms", "vs dense"],
                     tablefmt="github", disable_numparse=True)
    title = (f"{args.nlayers}-layer tied LSTM LM, emsize {args.emsize}, budget of nhid {args.nhid}, wide "
             f"{round(args.nhid / args.fract)}; batch {args.batch_size} x bptt {args.bptt}, vocab {args.ntokens}; "
             f"{where}; median of {args.steps} steps")
    text = title + "\n" + table
    print(text)
    return text


if __name__ == "__main__":
    main()
