"""ISS on PTB (Wen et al., ICLR 2018): a dense LSTM LM against ISS (hidden units removed), thinned, timed on CPU.

Every run trains a word LM (``compress_models.RNNModel``); an ISS run adds ISS's group lasso over hidden units
(``UnitGroupLassoRegularizer``, with ISS's zero-out of weights below 1e-4) and removes whole units with a
``UnitPruner`` (every unit the lasso emptied, and at least an AGP ramp of the count to the run's target). At the
end of the ramp the model is *thinned* (``compress.thin``: a physically smaller LSTM computing the same function)
and trained on, smaller and faster. One table compares the runs: hidden sizes per layer, parameters,
validation/test perplexity (fp32 and of the INT8 export), and CPU time per token at batch 1 and 20 of the thinned
fp32 model and of its INT8 export (``compress.quantization.export_model``) against the dense fp32 model, all timed
side by side in one run, and the saved files' sizes.

CPU: the "units removed against perplexity" curve on a model that trains in minutes (the ISS runs start from the
dense model and ramp down to each target; the embedded synthetic corpus by default, or a slice of PTB):

    python examples/papers/iss_ptb.py --out runs/iss_cpu --from-dense --targets 0.5,0.75,0.875,0.9375 --threads 1

GPU: ISS's PTB experiment, the 2x1500 LSTM LM (Zaremba's large model, dropout 0.65) against ISS from scratch,
ramped to ISS's learned sizes 373/315; the CPU timings run on ``--bench-threads`` threads (pin them with
``taskset -c 0,1``). Every epoch is checkpointed under ``--out``: after a ``--time-budget`` stop, run the same
command again to continue; the results are written to ``$OUT/iss_ptb.json`` (or ``--out``/results.json):

    taskset -c 0,1 python examples/papers/iss_ptb.py --data data/ptb --cuda --out runs/iss_gpu --emsize 1500 \
        --nhid 1500 --dropout 0.65 --epochs 40 --final-units 373,315 --iss-dropout 0.4 --ramp-end 15 \
        --bench-threads 2 --time-budget 540 --final-reserve 240

With ``--from-dense`` the ISS runs start from the trained dense model, and a "dense +N epochs" run trains the
dense model on as long, for a fair comparison. ISS's lasso runs until the end of the ramp; the thinned model is
trained on without it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

import torch

import compress
from compress.quantization import export_model, save_quantized
from compress.structured import hidden_sizes, thin_optimizer, thinned_skeleton, thinning_plan
from compress_models import RNNModel, batchify, load_corpus, synthetic_corpus
from compress_models.training import evaluate, train_epoch


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", help="PTB folder (default: the embedded synthetic corpus)")
    p.add_argument("--train-tokens", type=int, default=0, help="use only the first N training tokens (0: all)")
    p.add_argument("--synthetic-tokens", type=int, default=100_000, help="training tokens of the embedded corpus")
    p.add_argument("--out", default="runs/iss_ptb", help="checkpoints and results; rerun with it to continue")
    p.add_argument("--cuda", action="store_true")
    p.add_argument("--time-budget", type=float, default=0,
                   help="seconds: stop before an epoch that would not fit (run the same command again to continue)")
    p.add_argument("--final-reserve", type=float, default=0,
                   help="seconds the evaluation of the exports and the timing need at the end: with --time-budget, "
                        "they wait for the next command when less is left")
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for training and evaluation (0: torch's)")
    m = p.add_argument_group("model and training (PyTorch's word-LM example)")
    m.add_argument("--emsize", type=int, default=200)
    m.add_argument("--nhid", type=int, default=200)
    m.add_argument("--nlayers", type=int, default=2)
    m.add_argument("--dropout", type=float, default=0.2, help="dropout of the dense model")
    m.add_argument("--tied", action="store_true", help="tie the decoder to the embedding (emsize == nhid)")
    m.add_argument("--epochs", type=int, default=6, help="epochs of the dense run (and of an ISS run from scratch)")
    m.add_argument("--lr", type=float, default=20.0)
    m.add_argument("--anneal", type=float, default=4.0,
                   help="divide the LR by this after an epoch that does not improve validation (in an ISS run: "
                        "only once the ramp is over)")
    m.add_argument("--clip", type=float, default=0.25)
    m.add_argument("--batch-size", type=int, default=20)
    m.add_argument("--eval-batch-size", type=int, default=10)
    m.add_argument("--bptt", type=int, default=35)
    m.add_argument("--max-train-batches", type=int, default=0, help="cap minibatches per epoch (0: all)")
    s = p.add_argument_group("ISS")
    s.add_argument("--targets", default="0.75",
                   help="comma-separated shares of each layer's units to remove, one ISS run each")
    s.add_argument("--final-units", help="instead: one ISS run ramped to these hidden sizes per layer, e.g. 373,315")
    s.add_argument("--from-dense", action="store_true",
                   help="start every ISS run from the trained dense model (else: from scratch, like the dense run)")
    s.add_argument("--iss-epochs", type=int, help="epochs of an ISS run (default: --epochs; from dense: 4)")
    s.add_argument("--ramp-start", type=int, help="first epoch of the unit ramp (default: 1; from dense: 0)")
    s.add_argument("--ramp-end", type=int,
                   help="epoch after the ramp's last, where the model is thinned (default: half the ISS epochs)")
    s.add_argument("--iss-dropout", type=float, help="dropout of the ISS runs (default: --dropout; ISS: 0.4)")
    s.add_argument("--iss-lr", type=float, help="LR at the start of an ISS run (default: --lr; from dense: the "
                                                "dense run's last LR)")
    s.add_argument("--strength", type=float, default=compress.pruning.regularizers.ISS_STRENGTH,
                   help="group-lasso strength (ISS: 0.00245 for a loss summed over 35 steps)")
    s.add_argument("--zero-threshold", type=float, default=1e-4, help="ISS's zero-out of small weights (0: off)")
    b = p.add_argument_group("CPU timing")
    b.add_argument("--bench-threads", type=int, default=1, help="torch.set_num_threads while timing")
    b.add_argument("--bench-batches", default="1,20")
    b.add_argument("--bench-repeats", type=int, default=10)
    b.add_argument("--no-int8-ppl", action="store_true", help="skip the INT8 exports' perplexity (CPU evaluation)")
    args = p.parse_args(argv)
    for key in ("dropout", "iss_dropout"):
        value = getattr(args, key)
        if value is not None and not 0 <= value < 1:
            p.error(f"--{key.replace('_', '-')} must be in [0, 1), got {value:g}")
    if args.final_units:
        try:
            args.final_units = [int(v) for v in args.final_units.split(",")]
        except ValueError:
            p.error(f"--final-units: expected sizes like 373,315, got {args.final_units!r}")
        if len(args.final_units) != args.nlayers or min(args.final_units) < 1 or max(args.final_units) > args.nhid:
            p.error(f"--final-units: give {args.nlayers} sizes in [1, {args.nhid}]")
        args.targets = []
    else:
        try:
            args.targets = [float(v) for v in args.targets.split(",") if v.strip()]
        except ValueError:
            p.error(f"--targets: expected shares like 0.5,0.75, got {args.targets!r}")
        if any(not 0 < t < 1 for t in args.targets):
            p.error("--targets: every share must be in (0, 1)")
    args.iss_epochs = args.iss_epochs or (4 if args.from_dense else args.epochs)
    args.ramp_start = (0 if args.from_dense else 1) if args.ramp_start is None else args.ramp_start
    args.ramp_end = max(args.ramp_start + 1, args.iss_epochs // 2) if args.ramp_end is None else args.ramp_end
    if not args.ramp_start < args.ramp_end <= args.iss_epochs:
        p.error(f"the ramp needs ramp-start < ramp-end <= ISS epochs, got {args.ramp_start}, {args.ramp_end}, "
                f"{args.iss_epochs}")
    args.iss_dropout = args.dropout if args.iss_dropout is None else args.iss_dropout
    args.bench_batches = [int(v) for v in args.bench_batches.split(",")]
    return args


# ---------------------------------------------------------------------------------------------- pieces
class Data:
    def __init__(self, args, device):
        if args.data:
            corpus = load_corpus(args.data)
        else:
            corpus = synthetic_corpus(seed=0, train_tokens=args.synthetic_tokens)
        train = corpus.train[:args.train_tokens] if args.train_tokens else corpus.train
        self.ntokens = len(corpus.dictionary)
        self.train = batchify(train, args.batch_size, device)
        self.valid = batchify(corpus.valid, args.eval_batch_size, device)
        self.test = batchify(corpus.test, args.eval_batch_size, device)
        self.where = args.data or f"the embedded synthetic corpus (best test ppl {corpus.best_perplexity():.2f})"


def consumers() -> Dict[str, List[str]]:
    # the decoder reads the LSTM's output; with --tied its columns are the embedding's, read by the first layer
    return {"rnn": ["decoder.weight"], "encoder": ["rnn.weight_ih_l0"]}


def iss_schedule(args, target) -> Dict[str, Any]:
    amount = {"final_units": {"rnn": list(target)}} if isinstance(target, list) else {"final_sparsity": target}
    return {
        "version": 1,
        "regularizers": {"iss": {"class": "UnitGroupLassoRegularizer", "layers": ["rnn"], "consumers": consumers(),
                                 "strength": args.strength, "zero_threshold": args.zero_threshold}},
        "pruners": {"units": {"class": "UnitPruner", "layers": ["rnn"], "consumers": consumers(),
                              "threshold": args.zero_threshold, **amount}},
        "policies": [{"regularizer": {"instance_name": "iss"}, "starting_epoch": 0, "ending_epoch": args.ramp_end},
                     {"pruner": {"instance_name": "units"}, "starting_epoch": args.ramp_start,
                      "ending_epoch": args.ramp_end}],
    }


def run_names(args) -> List[Tuple[str, Any]]:
    runs: List[Tuple[str, Any]] = [("dense", None)]
    if args.from_dense:  # the ISS runs train this many more epochs: so does a dense run, for a fair comparison
        runs.append((f"dense +{args.iss_epochs} epochs", CONTINUE))
    if args.final_units:
        runs.append(("iss " + "/".join(map(str, args.final_units)), list(args.final_units)))
    runs += [(f"iss {t:g}", t) for t in args.targets]
    return runs


#: the target of the dense run that goes on from the dense model as long as the ISS runs do
CONTINUE = "continue"


def file_name(name: str) -> str:
    return name.replace(" ", "_").replace("/", "-")


def build(args, ntokens: int, dropout: float, device) -> RNNModel:
    return RNNModel("LSTM", ntokens, args.emsize, args.nhid, args.nlayers, dropout, args.tied).to(device)


def ppl(loss: float) -> float:
    return math.exp(min(loss, 50.0))


class Clock:
    """The ``--time-budget``: is there time for one more epoch as long as the longest one this command trained?"""

    def __init__(self, budget: float):
        self.started, self.budget, self.longest = time.time(), budget, 0.0

    def done(self, seconds: float) -> None:
        self.longest = max(self.longest, seconds)

    def room(self) -> bool:
        # the first epoch of a command always runs: a budget shorter than one epoch still makes progress
        return not self.budget or not self.longest or time.time() - self.started + 1.2 * self.longest < self.budget

    def left(self) -> float:
        return math.inf if not self.budget else self.budget - (time.time() - self.started)


# ---------------------------------------------------------------------------------------------- training
def train_run(args, name: str, target, data: Data, device, clock: Clock) -> Optional[Dict[str, Any]]:
    """Train one run to its end (continuing from its checkpoint); ``None`` if the time budget stopped it."""
    path = os.path.join(args.out, file_name(name) + ".pt")
    result_path = path[:-3] + ".json"
    if os.path.exists(result_path):
        with open(result_path) as f:
            return json.load(f)
    iss = target not in (None, CONTINUE)
    from_dense = args.from_dense and target is not None
    epochs = args.iss_epochs if target is not None else args.epochs
    dropout = args.iss_dropout if iss else args.dropout
    torch.manual_seed(args.seed)
    model = build(args, data.ntokens, dropout, device)
    extra: Dict[str, Any] = {}
    if os.path.exists(path):
        extra = compress.io.read_checkpoint(path)["extra"]
    if extra.get("thinned"):
        model = thinned_skeleton(model, path)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    scheduler = (compress.dict_config(model, optimizer, iss_schedule(args, target)) if iss and not extra.get("thinned")
                 else compress.CompressionScheduler(model, optimizer))
    if extra:
        compress.load_checkpoint(path, model, optimizer, scheduler)
        start, lr, best = extra["epoch"] + 1, extra["lr"], extra["best_val"]
    else:
        start, lr, best = 0, args.lr, math.inf
        if from_dense:
            compress.load_checkpoint(os.path.join(args.out, "dense.pt"), model, restore_rng=False)
            dense_extra = compress.io.read_checkpoint(os.path.join(args.out, "dense.pt"))["extra"]
            lr = dense_extra["lr"]
        if iss and args.iss_lr:
            lr = args.iss_lr
    seconds = extra.get("seconds", 0.0)
    for epoch in range(start, epochs):
        if not clock.room():
            print(f"{name}: stopped before epoch {epoch} (time budget); run the same command again to continue")
            return None
        began = time.time()
        for group in optimizer.param_groups:
            group["lr"] = lr
        scheduler.on_epoch_begin(epoch, optimizer)
        train_loss = train_epoch(model, data.train, optimizer, scheduler, epoch, bptt=args.bptt, clip=args.clip,
                                 max_batches=args.max_train_batches)
        val = evaluate(model, data.valid, args.bptt, args.eval_batch_size)
        scheduler.on_epoch_end(epoch, optimizer, metrics={"min": val})
        thinned = isinstance(model.rnn, compress.structured.ThinnedRNN)
        if iss and epoch == args.ramp_end - 1:  # the ramp is over: build the smaller model and train it on
            plan = thinning_plan(model, scheduler)
            small = compress.thin(model, scheduler)
            optimizer = thin_optimizer(optimizer, model, small, plan)
            model, scheduler, thinned, best = small, compress.CompressionScheduler(small, optimizer), True, math.inf
            check = evaluate(model, data.valid, args.bptt, args.eval_batch_size)
            print(f"{name}: thinned to {hidden_sizes(model)['rnn']} units; valid ppl {ppl(val):.2f} masked, "
                  f"{ppl(check):.2f} thinned")
        elif val < best:
            best = val
        elif args.anneal > 1 and (not iss or epoch >= args.ramp_end):
            lr /= args.anneal
        last = time.time() - began
        seconds += last
        compress.save_checkpoint(path, model, optimizer, scheduler, epoch=epoch, lr=lr, best_val=best,
                                 thinned=thinned, seconds=seconds)
        print(f"{name}: epoch {epoch:3d} | {last:6.1f}s | lr {lr:.3g} | train ppl {ppl(train_loss):8.2f} | "
              f"valid ppl {ppl(val):8.2f} | units {hidden_sizes(model)['rnn']}", flush=True)
        clock.done(last)
    model.eval()
    row = {"name": name, "hidden": hidden_sizes(model)["rnn"], "params": sum(p.numel() for p in model.parameters()),
           "val_ppl": ppl(evaluate(model, data.valid, args.bptt, args.eval_batch_size)),
           "test_ppl": ppl(evaluate(model, data.test, args.bptt, args.eval_batch_size)),
           "epochs": epochs, "train_seconds": round(seconds, 1), "dropout": dropout}
    with open(result_path, "w") as f:
        json.dump(row, f)
    return row


def load_final(args, name: str, ntokens: int) -> torch.nn.Module:
    """A run's final model, on the CPU, for evaluation of its INT8 export and timing."""
    path = os.path.join(args.out, file_name(name) + ".pt")
    model = build(args, ntokens, 0.0, "cpu")
    if compress.io.read_checkpoint(path)["extra"].get("thinned"):
        model = thinned_skeleton(model, path)
    compress.load_checkpoint(path, model, restore_rng=False)
    return model.eval()


# ---------------------------------------------------------------------------------------------- timing
def file_size(save) -> int:
    fd, path = tempfile.mkstemp(suffix=".pt")
    os.close(fd)
    try:
        save(path)
        return os.path.getsize(path)
    finally:
        os.unlink(path)


@torch.no_grad()
def time_models(models: Dict[str, torch.nn.Module], args, ntokens: int) -> Dict[Tuple[str, int], float]:
    """Median seconds per token of every model, per batch size, timed round-robin on ``--bench-threads``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(args.bench_threads)
    out: Dict[Tuple[str, int], float] = {}
    try:
        for batch in args.bench_batches:
            x = torch.randint(0, ntokens, (args.bptt, batch), generator=torch.Generator().manual_seed(0))
            times: Dict[str, List[float]] = {n: [] for n in models}
            for rep in range(2 + args.bench_repeats):
                for name, m in models.items():  # every model sees the same machine load
                    hidden = m.init_hidden(batch)
                    began = time.perf_counter()
                    m(x, hidden)
                    if rep >= 2:
                        times[name].append(time.perf_counter() - began)
            for name in models:
                out[(name, batch)] = statistics.median(times[name]) / (args.bptt * batch)
    finally:
        torch.set_num_threads(threads)
    return out


def git_revision() -> str:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table(rows: List[Dict[str, Any]], args) -> str:
    """The runs' rows as a GitHub table."""
    batches = args.bench_batches
    head = ["model", "hidden sizes", "units removed (%)", "params", "val ppl", "test ppl", "INT8 val ppl",
            "INT8 test ppl"]
    for b in batches:
        head += [f"fp32 b{b} µs/token (speed-up)", f"INT8 b{b} µs/token (speed-up)"]
    head += ["file fp32 / INT8 (MiB)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    total = args.nhid * args.nlayers
    for r in rows:
        cells = [r["name"], "/".join(map(str, r["hidden"])), f"{100 * (1 - sum(r['hidden']) / total):.1f}",
                 f"{r['params']:,}", f"{r['val_ppl']:.2f}", f"{r['test_ppl']:.2f}",
                 f"{r['int8_val_ppl']:.2f}" if "int8_val_ppl" in r else "-",
                 f"{r['int8_test_ppl']:.2f}" if "int8_test_ppl" in r else "-"]
        for b in batches:
            for kind in ("fp32", "int8"):
                t = r["time"][f"{kind} b{b}"]
                cells.append(f"{t * 1e6:.1f} ({r['time']['dense fp32 b' + str(b)] / t:.2f}x)")
        cells.append(f"{r['bytes_fp32'] / 2 ** 20:.2f} / {r['bytes_int8'] / 2 ** 20:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.cuda else "cpu")
    os.makedirs(args.out, exist_ok=True)
    clock = Clock(args.time_budget)
    data = Data(args, device)
    rows = []
    for name, target in run_names(args):
        row = train_run(args, name, target, data, device, clock)
        if row is None:
            return {"unfinished": True}
        rows.append(row)
    if args.final_reserve and clock.left() < args.final_reserve:
        print(f"training is done; the exports and timings need {args.final_reserve:g}s: run the same command again")
        return {"unfinished": True}
    cpu = Data(args, "cpu") if args.cuda else data
    finals = {r["name"]: load_final(args, r["name"], data.ntokens) for r in rows}
    models: Dict[str, torch.nn.Module] = {}
    for r in rows:
        fp32 = finals[r["name"]]
        int8 = export_model(fp32, "int8")
        models[r["name"] + " fp32"], models[r["name"] + " int8"] = fp32, int8
        r["bytes_fp32"] = file_size(lambda p, m=fp32: torch.save(m.state_dict(), p))
        r["bytes_int8"] = file_size(lambda p, m=int8: save_quantized(m, p))
        if not args.no_int8_ppl:
            r["int8_val_ppl"] = ppl(evaluate(int8, cpu.valid, args.bptt, args.eval_batch_size))
            r["int8_test_ppl"] = ppl(evaluate(int8, cpu.test, args.bptt, args.eval_batch_size))
    times = time_models(models, args, data.ntokens)
    for r in rows:
        r["time"] = {f"{kind} b{b}": times[(f"{r['name']} {kind}", b)] for kind in ("fp32", "int8")
                     for b in args.bench_batches}
        r["time"].update({f"dense fp32 b{b}": times[("dense fp32", b)] for b in args.bench_batches})
    title = (f"{args.nlayers}-layer LSTM LM, emsize {args.emsize}, {args.nhid} units{', tied' if args.tied else ''}, "
             f"on {data.where}{f' (first {args.train_tokens:,} training tokens)' if args.train_tokens else ''}; "
             f"dense {args.epochs} epochs (dropout {args.dropout}); ISS "
             f"{'from the dense model, ' if args.from_dense else ''}{args.iss_epochs} epochs (dropout "
             f"{args.iss_dropout}), lasso {args.strength:.3g} and unit ramp over epochs {args.ramp_start}.."
             f"{args.ramp_end - 1}, thinned at the end of epoch {args.ramp_end - 1}, then trained on. CPU time per "
             f"token over {args.bptt}-step calls on {args.bench_threads} thread(s), median of {args.bench_repeats}; "
             f"speed-up against the dense fp32 model.")
    text = title + "\n\n" + table(rows, args)
    print(text)
    command = " ".join(["python", "examples/papers/iss_ptb.py", *(sys.argv[1:] if argv is None else argv)])
    result = {"name": "iss_ptb", "command": command, "git": git_revision(),
              "device": torch.cuda.get_device_name() if args.cuda else "cpu", "cpu_threads_timing": args.bench_threads,
              "args": dict(vars(args)), "rows": rows, "table": text}
    where = os.environ.get("OUT")
    path = os.path.join(where, "iss_ptb.json") if where else os.path.join(args.out, "results.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
