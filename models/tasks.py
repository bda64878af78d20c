"""The word-LM task of ``python -m compress inspect`` (its default ``--task``): rebuild word-LM models from
checkpoints and measure validation/test perplexity and next-word accuracy.

``examples/word_lm.py --save`` (and the paper scripts, ``examples/papers/sipo_ptb.py`` included) store their
flags in the checkpoint (``extra['args']``); the model is rebuilt from them with
:func:`compress_models.builders.build_model`, and the corpus is the one given with ``--data`` or, without it, the
one the checkpoint was trained on (the embedded synthetic corpus when that was none). It is installed with the
package, so the command works outside the repository too.

    python -m compress inspect dense.pt pruned.pt --data ../shared/data/ptb

Example:
    >>> import torch
    >>> from compress_models import RNNModel
    >>> task = make_task(None, torch.device("cpu"))
    >>> model = RNNModel("LSTM", 1000, 8, 8, 1)
    >>> checkpoint = {"model": model.state_dict(), "extra": {"args": {"emsize": 8, "nhid": 8, "nlayers": 1,
    ...                                                               "synthetic_tokens": 2000}}}
    >>> rebuilt = task.build_model(checkpoint)
    >>> rebuilt.load_state_dict(checkpoint["model"])
    <All keys matched successfully>
    >>> len(task.corpus.dictionary)
    1000
"""
from __future__ import annotations

import argparse
import math
from typing import Any, Dict, Mapping, Optional

import torch

from compress.errors import CheckpointError

from .builders import build_model, parse_args, vocab_order
from .corpus import Corpus, batchify, load_corpus, synthetic_corpus
from .training import evaluate_lm

__all__ = ["WordLMTask", "checkpoint_args", "make_task"]


def checkpoint_args(checkpoint: Mapping[str, Any]) -> argparse.Namespace:
    """The word-LM flags a checkpoint was made with (the defaults for any it lacks).

    Raises:
        CheckpointError: the checkpoint holds no flags (``extra['args']``).

    Example:
        >>> checkpoint_args({"extra": {"args": {"nhid": 64}}}).nhid
        64
        >>> checkpoint_args({"extra": {}})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        compress.errors.CheckpointError: the checkpoint holds no word_lm flags (extra['args']); ...
    """
    saved = (checkpoint.get("extra") or {}).get("args")
    if not isinstance(saved, Mapping):
        raise CheckpointError("the checkpoint holds no word_lm flags (extra['args']); save it with "
                              "examples/word_lm.py --save, or inspect it with your own --task")
    args = parse_args([])
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
        self.corpus: Optional[Corpus] = None

    def _load_corpus(self, args: argparse.Namespace) -> Corpus:
        order = vocab_order(args)
        data = self.data or args.data
        if data:
            return load_corpus(data, sort_vocab=order)
        return synthetic_corpus(seed=0, train_tokens=args.synthetic_tokens, sort_vocab=order)

    def build_model(self, checkpoint: Mapping[str, Any]) -> torch.nn.Module:
        """A model of the checkpoint's flags (weights not loaded); the first call also loads the corpus.

        Raises:
            CheckpointError: the checkpoint holds no flags.
        """
        args = checkpoint_args(checkpoint)
        if self.corpus is None:
            self.corpus = self._load_corpus(args)
        return build_model(args, len(self.corpus.dictionary))

    def evaluate(self, model: torch.nn.Module) -> Dict[str, float]:
        """Validation and test perplexity and next-word accuracy (%) of ``model`` on the task's corpus."""
        metrics: Dict[str, float] = {}
        for split in ("valid", "test"):
            source = batchify(self.corpus.split(split), self.eval_batch_size, self.device)
            loss, accuracy = evaluate_lm(model, source, self.bptt, self.eval_batch_size)
            metrics[f"{split} ppl"] = math.exp(loss)
            metrics[f"{split} acc (%)"] = 100 * accuracy
        return {k: metrics[k] for k in ("valid ppl", "test ppl", "valid acc (%)", "test acc (%)")}


def make_task(data: Optional[str], device: torch.device) -> WordLMTask:
    """The factory ``python -m compress inspect`` calls by default (``compress_models.tasks:make_task``)."""
    return WordLMTask(data, device)
