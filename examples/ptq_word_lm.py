"""Post-training quantization of a trained word-level LM: Distiller's PTQ table on validation perplexity.

Reads a checkpoint written by ``examples/word_lm.py --save`` (the architecture is read from its weights;
flags given here must agree), collects calibration statistics once on the validation set, then evaluates
each precision (the rows of Distiller's table, ACIQ clipping, and the real INT8/FP16 exports on CPU):

    python examples/word_lm.py --epochs 3 --save /tmp/lm.pt            # a small LM on the embedded corpus
    python examples/ptq_word_lm.py --checkpoint /tmp/lm.pt
    python examples/ptq_word_lm.py --checkpoint lm650.pt --data ../shared/data/wikitext-2 --cuda \\
        --stats-out lm650_stats.yaml --results ptq650.jsonl
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

import compress
from compress.io.checkpoint import read_checkpoint
from compress.modules import convert_to_modular
from compress.quantization import (
    PostTrainLinearQuantizer,
    collect_activation_stats,
    load_stats,
    ptq_table,
    save_stats,
)
from compress_models import RNNModel, batchify, evaluate, load_corpus, rnn_model_from_state, synthetic_corpus

FP16_ALL = "Entire model"
MIXED = {"encoder": {"fpq_module": 16}, "decoder": {"fpq_module": 16}, ".*eltwise.*": {"fpq_module": 16}}
MIXED_ENC_DEC = {"encoder": {"fpq_module": 16}, "decoder": {"fpq_module": 16}}
ASYM_PC = dict(mode="ASYMMETRIC_SIGNED", per_channel_wts=True)
# The LSTM cell state on a 16-bit grid (the gates, hidden state and everything else stay INT8), as integer LSTM
# kernels keep it (TFLite's 8x8->16 LSTM). A trained LM's cell state is heavy-tailed: on the WikiText-2 2x650
# model, layer 1's cell spans [-20.7, 44.5] with std 0.5, so an 8-bit grid over that range steps by 0.26.
CELL16 = {r".*eltwiseadd_cell": {"bits_activations": 16}, r".*eltwisemult_cell_.*": {"bits_activations": 16}}
# The same cell tensors kept in 8 bits, with one scale per hidden unit: the few long-memory units with a wide
# range get a coarse grid of their own instead of coarsening every unit's (per_channel_acts, our addition).
CELL_PER_UNIT = {r".*eltwiseadd_cell": {"per_channel_acts": True, "clip_acts": "NONE"},
                 r".*eltwisemult_cell_.*": {"per_channel_acts": True, "clip_acts": "NONE"}}
# AVG clipping cuts the largest logits of confident predictions; Distiller's own recipes keep the last layer
# unclipped (clip_acts: NONE on the classifier).
LOGITS_UNCLIPPED = {"decoder": {"clip_acts": "NONE"}}

# key → (table row, quantizer arguments); None arguments: the float model itself
EXPERIMENTS: Dict[str, Tuple[Dict[str, Any], Optional[Dict[str, Any]]]] = {
    "fp32": ({"precision": "FP32"}, None),
    "fp16": ({"precision": "Full FP16", "fp16_modules": FP16_ALL}, {"fpq_module": 16}),
    "int8_sym": ({"precision": "Full INT8", "mode": "Symmetric", "per_channel": False, "clipping": "No"},
                 {"mode": "SYMMETRIC"}),
    "int8_asym_pc": ({"precision": "Full INT8", "mode": "Asymmetric", "per_channel": True, "clipping": "No"},
                     dict(ASYM_PC)),
    "int8_asym_pc_avg": ({"precision": "Full INT8", "mode": "Asymmetric", "per_channel": True,
                          "clipping": "Averaging"}, dict(ASYM_PC, clip_acts="AVG")),
    "int8_cell16": ({"precision": "Full INT8, 16-bit cell", "mode": "Asymmetric", "per_channel": True,
                     "clipping": "No"}, dict(ASYM_PC, overrides=CELL16)),
    "int8_avg_logits": ({"precision": "Full INT8", "mode": "Asymmetric", "per_channel": True,
                         "clipping": "Averaging, logits not"},
                        dict(ASYM_PC, clip_acts="AVG", overrides=LOGITS_UNCLIPPED)),
    "mixed": ({"precision": "Mixed INT8/FP16", "mode": "Asymmetric", "per_channel": True, "clipping": "No",
               "fp16_modules": "Encoder, decoder, Eltwise add/mult"}, dict(ASYM_PC, overrides=MIXED)),
    "mixed_avg": ({"precision": "Mixed INT8/FP16", "mode": "Asymmetric", "per_channel": True,
                   "clipping": "Averaging", "fp16_modules": "Encoder, decoder"},
                  dict(ASYM_PC, clip_acts="AVG", overrides=MIXED_ENC_DEC)),
    "int8_asym_pc_laplace": ({"precision": "Full INT8", "mode": "Asymmetric", "per_channel": True,
                              "clipping": "Laplace (ACIQ)"}, dict(ASYM_PC, clip_acts="LAPLACE")),
    "int8_laplace_logits": ({"precision": "Full INT8", "mode": "Asymmetric", "per_channel": True,
                             "clipping": "Laplace (ACIQ), logits not"},
                            dict(ASYM_PC, clip_acts="LAPLACE", overrides=LOGITS_UNCLIPPED)),
    "int8_cell_per_unit": ({"precision": "Full INT8, per-unit cell scales", "mode": "Asymmetric",
                            "per_channel": True, "clipping": "No"}, dict(ASYM_PC, overrides=CELL_PER_UNIT)),
    "int8_avg_cell_per_unit": ({"precision": "Full INT8, per-unit cell scales", "mode": "Asymmetric",
                                "per_channel": True, "clipping": "Averaging, logits and cell not"},
                               dict(ASYM_PC, clip_acts="AVG", overrides={**CELL_PER_UNIT, **LOGITS_UNCLIPPED})),
    "int8_laplace_cell_per_unit": ({"precision": "Full INT8, per-unit cell scales", "mode": "Asymmetric",
                                    "per_channel": True, "clipping": "Laplace (ACIQ), logits and cell not"},
                                   dict(ASYM_PC, clip_acts="LAPLACE", overrides={**CELL_PER_UNIT, **LOGITS_UNCLIPPED})),
    "int8_asym_pc_gauss": ({"precision": "Full INT8", "mode": "Asymmetric", "per_channel": True,
                            "clipping": "Gauss (ACIQ)"}, dict(ASYM_PC, clip_acts="GAUSS")),
    "int8_asym_pc_nstd": ({"precision": "Full INT8", "mode": "Asymmetric", "per_channel": True,
                           "clipping": "N_STD (4)"}, dict(ASYM_PC, clip_acts="N_STD", clip_n_stds=4.0)),
}
EXPORTS = {
    "real_int8": ({"precision": "Real INT8 export (CPU)", "mode": "Asymmetric", "per_channel": True,
                   "clipping": "dynamic acts"}, "int8"),
    "real_fp16": ({"precision": "Real FP16 export (CPU)", "fp16_modules": FP16_ALL}, "fp16"),
}
DEFAULT_ROWS = [k for k in EXPERIMENTS if k != "int8_asym_pc_nstd"] + list(EXPORTS)
ALL_ROWS = list(EXPERIMENTS) + list(EXPORTS)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="written by examples/word_lm.py --save")
    p.add_argument("--data", help="corpus folder (default: the embedded synthetic corpus, as in word_lm.py)")
    p.add_argument("--synthetic-tokens", type=int, default=100_000, help="as given to word_lm.py")
    p.add_argument("--model", choices=["LSTM", "GRU", "RNN_TANH", "RNN_RELU"],
                   help="checked against the checkpoint (RNN_RELU cannot be told from RNN_TANH by its weights)")
    p.add_argument("--emsize", type=int, help="checked against the checkpoint")
    p.add_argument("--nhid", type=int, help="checked against the checkpoint")
    p.add_argument("--nlayers", type=int, help="checked against the checkpoint")
    p.add_argument("--tied", action="store_true", help="checked against the checkpoint")
    p.add_argument("--eval-batch-size", type=int, default=10)
    p.add_argument("--bptt", type=int, default=35)
    p.add_argument("--cuda", action="store_true", help="simulate on the GPU (real exports always run on CPU)")
    p.add_argument("--rows", default=",".join(DEFAULT_ROWS), help=f"comma-separated, from: {', '.join(ALL_ROWS)}")
    p.add_argument("--schedule", action="append", default=[],
                   help="also evaluate the quantizer of this YAML file's quantizers: section (repeatable)")
    p.add_argument("--calib-batches", type=int, default=0, help="calibrate on this many validation chunks (0: all)")
    p.add_argument("--stats", help="use this statistics YAML instead of calibrating")
    p.add_argument("--stats-out", help="save the collected statistics here (Distiller's YAML layout)")
    p.add_argument("--results", help="append one JSON line per row to this file")
    p.add_argument("--module-table", action="store_true", help="print the per-module table of the last INT8 row")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    return p.parse_args(argv)


def model_from_checkpoint(path: str, args: Optional[argparse.Namespace] = None) -> Tuple[RNNModel, Dict[str, Any]]:
    """Rebuild the word-LM ``RNNModel`` a checkpoint holds; its shape is read from the weights and checked against
    the flags given."""
    nonlinearity = "relu" if args is not None and args.model == "RNN_RELU" else "tanh"
    try:
        model, info = rnn_model_from_state(read_checkpoint(path)["model"], nonlinearity)
    except ValueError as exc:
        raise SystemExit(f"{path}: {exc}") from None
    if args is not None:
        for key in ("model", "emsize", "nhid", "nlayers"):
            given = getattr(args, key)
            if given is not None and given != info[key]:
                raise SystemExit(f"--{key} {given} disagrees with the checkpoint ({info[key]})")
        if args.tied and not info["tied"]:
            raise SystemExit("--tied given, but the checkpoint's decoder is not tied to its embedding")
    return model, info


def describe(q: PostTrainLinearQuantizer, label: str) -> Dict[str, Any]:
    """A PTQ-table row describing a quantizer built from a schedule."""
    d = q.defaults
    fp16 = [p for p, o in q.overrides.items() if o.get("fpq_module") == 16]
    return {"precision": label, "mode": d.mode.activations.name.replace("_", " ").capitalize(),
            "per_channel": d.per_channel_wts, "clipping": d.clip_acts.name.capitalize(),
            "fp16_modules": FP16_ALL if d.fpq_module == 16 else ", ".join(fp16) or None}


def calibration_fn(data: torch.Tensor, bptt: int, batch_size: int, chunks: int) -> Callable[[torch.nn.Module], None]:
    """Run the model over (the first ``chunks`` chunks of) ``data`` as ``evaluate`` does, carrying the state."""
    if chunks:
        data = data[: chunks * bptt + 1]
    return lambda model: evaluate(model, data, bptt, batch_size)


def main(argv=None) -> List[Dict[str, Any]]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows_wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows_wanted if r not in EXPERIMENTS and r not in EXPORTS]
    if unknown:
        raise SystemExit(f"unknown row {unknown[0]!r}; choose from {', '.join(ALL_ROWS)}")
    device = torch.device("cuda" if args.cuda else "cpu")
    model, info = model_from_checkpoint(args.checkpoint, args)
    if args.data:
        corpus = load_corpus(args.data)
    else:  # the embedded corpus exactly as examples/word_lm.py builds it
        held_out = max(2000, args.synthetic_tokens // 10)
        corpus = synthetic_corpus(seed=0, train_tokens=args.synthetic_tokens, valid_tokens=held_out,
                                  test_tokens=held_out)
    if len(corpus.dictionary) != info["ntokens"]:
        raise SystemExit(f"the corpus has {len(corpus.dictionary)} words but the checkpoint {info['ntokens']}: "
                         f"pass the --data (or --synthetic-tokens) it was trained on")
    print(f"{args.checkpoint}: {info['model']} {info['nlayers']}x{info['nhid']} (emsize {info['emsize']}"
          f"{', tied' if info['tied'] else ''}), {info['ntokens']} words")
    val = batchify(corpus.valid, args.eval_batch_size, device)
    model = model.to(device)

    def ppl(m: torch.nn.Module, data: torch.Tensor = val) -> float:
        return math.exp(evaluate(m, data, args.bptt, args.eval_batch_size))

    schedule_quantizers = [(path, name, q) for path in args.schedule for name, q in
                           compress.components_from_file(copy.deepcopy(model), path).get("quantizers", {}).items()]
    stats = None
    needs_stats = any(EXPERIMENTS.get(r, (None, None))[1] is not None for r in rows_wanted) or args.schedule \
        or any(r in EXPORTS for r in rows_wanted)
    if args.stats:
        stats = load_stats(args.stats)
    elif needs_stats:
        start = time.time()
        modular = convert_to_modular(copy.deepcopy(model))
        # per-channel statistics only where some row or schedule asks for per-channel activations
        channels = {name for r in rows_wanted if EXPERIMENTS.get(r, (None, None))[1] is not None
                    for name in PostTrainLinearQuantizer(modular, **EXPERIMENTS[r][1]).per_channel_modules()}
        channels.update(name for _, _, q in schedule_quantizers for name in q.per_channel_modules())
        calibration = calibration_fn(val, args.bptt, args.eval_batch_size, args.calib_batches)
        stats = collect_activation_stats(modular, calibration, laplace=True, channels=sorted(channels))
        print(f"calibration statistics of {len(stats)} modules in {time.time() - start:.1f}s")
        if args.stats_out:
            save_stats(stats, args.stats_out)
    results: List[Dict[str, Any]] = []
    last_quantizer = None

    def report(row: Dict[str, Any], value: float, seconds: float) -> None:
        row = dict(row, ppl=value, seconds=round(seconds, 1))
        results.append(row)
        print(f"  {row['precision']:<24} {row.get('clipping') or '':<15} ppl {value:9.3f}  ({seconds:.1f}s)",
              flush=True)

    for key in rows_wanted:
        start = time.time()
        if key in EXPORTS:
            row, kind = EXPORTS[key]
            cpu_model = copy.deepcopy(model).cpu()
            if kind == "int8":  # the asymmetric per-channel weights of the quantizer, int8 kernels
                q = PostTrainLinearQuantizer(cpu_model, **ASYM_PC, model_activation_stats=stats)
                q.prepare_model()
                real = q.export()
            else:
                real = compress.quantization.export_model(cpu_model, "fp16")
            report(row, ppl(real, val.cpu()), time.time() - start)
            continue
        row, kwargs = EXPERIMENTS[key]
        if kwargs is None:
            report(row, ppl(model), time.time() - start)
            continue
        q = PostTrainLinearQuantizer(copy.deepcopy(model), **kwargs, model_activation_stats=stats)
        q.prepare_model()
        report(row, ppl(q.model), time.time() - start)
        last_quantizer = q
    for path, name, q in schedule_quantizers:
        start = time.time()
        if q.activation_stats is None:
            q.activation_stats = stats
        q.prepare_model()
        report(describe(q, f"{os.path.basename(path)}:{name}"), ppl(q.model), time.time() - start)
        last_quantizer = q
    print()
    print(ptq_table([{k: v for k, v in r.items() if k != "seconds"} for r in results]))
    if args.module_table and last_quantizer is not None:
        print()
        print(last_quantizer.module_table())
    if args.results:
        with open(args.results, "a") as f:
            for r in results:
                f.write(json.dumps(dict(r, checkpoint=args.checkpoint, **info)) + "\n")
    return results


if __name__ == "__main__":
    main()
