"""The word-LM task of ``python -m compress inspect``: rebuild ``examples/word_lm.py`` models from checkpoints and
measure validation/test perplexity and next-word accuracy.

``examples/word_lm.py --save`` stores its flags in the checkpoint (``extra['args']``); the model is rebuilt from
them with the script's own ``build_model``, and the corpus is the one given with ``--data`` or, without it, the one
the checkpoint was trained on (the embedded synthetic corpus when that was none).

    python -m compress inspect dense.pt pruned.pt --data ../shared/data/ptb
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import word_lm

from compress.errors import CheckpointError
from compress_models import batchify, get_batch, load_corpus, repackage_hidden, synthetic_corpus


@torch.no_grad()
def evaluate_lm(model: torch.nn.Module, source: torch.Tensor, bptt: int, batch_size: int) -> Tuple[float, float]:
    """``(mean token cross-entropy, top-1 next-word accuracy)`` over a batchified split (chunks weighted by length,
    hidden state carried across chunks, as in PyTorch's word-LM example)."""
    model.eval()
    loss, correct, count = 0.0, 0, 0
    hidden = model.init_hidden(batch_size)
    for i in range(0, source.size(0) - 1, bptt):
        data, targets = get_batch(source, i, bptt)
        output, hidden = model(data, hidden)
        hidden = repackage_hidden(hidden)
        logits = output.view(-1, output.size(-1))
        loss += F.cross_entropy(logits, targets.reshape(-1), reduction="sum").item()
        correct += int((logits.argmax(-1) == targets.reshape(-1)).sum())
        count += targets.numel()
    return loss / max(count, 1), correct / max(count, 1)


def checkpoint_args(checkpoint: Mapping[str, Any]) -> argparse.Namespace:
    """The word_lm flags a checkpoint was made with (the script's defaults for any it lacks)."""
    saved = (checkpoint.get("extra") or {}).get("args")
    if not isinstance(saved, Mapping):
        raise CheckpointError("the checkpoint holds no word_lm flags (extra['args']); save it with "
                              "examples/word_lm.py --save, or inspect it with your own --task")
    args = word_lm.parse_args([])
    for key, value in saved.items():
        setattr(args, key, value)
    return args


class WordLMTask:
    """Rebuilds word-LM checkpoints and measures them on a corpus.

    Args:
        data: corpus folder (train/valid/test.txt); ``None``: the corpus of the first checkpoint built.
        device: where to evaluate.
        bptt: evaluation chunk length.
        eval_batch_size: evaluation batch size (SiPO and PyTorch's example: 10).
    """

    def __init__(self, data: Optional[str], device: torch.device, bptt: int = 35, eval_batch_size: int = 10):
        self.data = data
        self.device = torch.device(device)
        self.bptt = bptt
        self.eval_batch_size = eval_batch_size
        self.corpus = None

    def _load_corpus(self, args: argparse.Namespace):
        order = word_lm.vocab_order(args) if hasattr(word_lm, "vocab_order") else "none"
        data = self.data or args.data
        if data:
            return load_corpus(data, sort_vocab=order)
        return synthetic_corpus(seed=0, train_tokens=args.synthetic_tokens, sort_vocab=order)

    def build_model(self, checkpoint: Mapping[str, Any]) -> torch.nn.Module:
        args = checkpoint_args(checkpoint)
        if self.corpus is None:
            self.corpus = self._load_corpus(args)
        return word_lm.build_model(args, len(self.corpus.dictionary))

    def evaluate(self, model: torch.nn.Module) -> Dict[str, float]:
        metrics: Dict[str, float] = {}
        for split, label in (("valid", "valid"), ("test", "test")):
            source = batchify(self.corpus.split(split), self.eval_batch_size, self.device)
            loss, accuracy = evaluate_lm(model, source, self.bptt, self.eval_batch_size)
            metrics[f"{label} ppl"] = math.exp(loss)
            metrics[f"{label} acc (%)"] = 100 * accuracy
        return {k: metrics[k] for k in ("valid ppl", "test ppl", "valid acc (%)", "test acc (%)")}


def make_task(data: Optional[str], device: torch.device) -> WordLMTask:
    """The factory ``python -m compress inspect`` calls by default."""
    return WordLMTask(data, device)
