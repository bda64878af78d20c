"""Search tasks for ``python -m compress hyperprune``: the word-level language models of this package.

:func:`word_lm_task` is the factory the command line calls (``--task compress_models.search_tasks:word_lm_task``,
options with ``--task-option KEY=VALUE``). Its task trains an LSTM (:class:`~compress_models.RNNModel`) or an RHN
(:class:`~compress_models.RHNModel`) language model from scratch under a candidate schedule with sparse NT-ASGD
(SGD until validation stalls for ``nonmono`` epochs; a schedule's ``NTASGDSwitch`` does the switching), evaluates
the averaged weights, and measures the Lyapunov spectrum of the recurrent layers on the first ``bptt`` validation
tokens batchified in ``ls_batch`` columns, embedded without dropout, as Hyperpruning does.

Example:
    >>> task = word_lm_task(None, "cpu", emsize=8, nhid=8, synthetic_tokens=2000, max_batches=2, test=False)
    >>> result = task.train(None, 1, TrainControl())
    >>> result.val_loss > 0, task.spectrum(result.model).shape
    (True, torch.Size([16]))
"""
from __future__ import annotations

import copy
import math
import os
import time
from typing import Any, Dict, Mapping, Optional, Union

import torch
from torch import nn

import compress
from compress.errors import ArgumentError
from compress.optim import SparseNTASGD, averaged_weights
from compress.options import boolean, choice, integer, number
from compress.search import TaskResult, TrainControl, TrainingPaused

from .corpus import batchify, load_corpus, synthetic_corpus
from .rhn import RHNModel
from .training import evaluate, train_epoch
from .word_lm import RNNModel

__all__ = ["WordLMSearchTask", "word_lm_task"]

_DEFAULTS: Dict[str, Any] = dict(
    model="LSTM", emsize=1500, nhid=1500, nlayers=2, dropout=0.65, tied=False, depth=10, lr=40.0, clip=0.25,
    wd=1.2e-6, batch_size=20, bptt=35, eval_batch_size=10, ls_batch=2, ls_warmup=10, seed=42, max_batches=0,
    synthetic_tokens=100_000, test=True, checkpoint_every=5)


class WordLMSearchTask:
    """Trains word LMs under candidate schedules and measures them (see the module docstring).

    Args:
        data: a corpus folder (``train.txt``, ``valid.txt``, ``test.txt``), or ``None`` for the embedded synthetic
            corpus.
        device: where to train.
        model: ``LSTM``, ``GRU`` or ``RHN``.
        emsize, nhid, nlayers, dropout, tied, depth: the model (``depth``: RHN's recurrence depth).
        lr, clip, wd, batch_size, bptt: training (Selfish-RNN's stacked-LSTM recipe by default).
        eval_batch_size: validation and test batch size.
        ls_batch, ls_warmup: columns and warm-up steps of the Lyapunov spectrum's input.
        seed: the seed of every run (each run starts from the same initial weights and the same data order).
        max_batches: train on at most this many minibatches an epoch (0: all; for quick trials).
        synthetic_tokens: training tokens of the synthetic corpus.
        test: also measure the test loss at the end of every run (``metrics['test_loss']``).
        checkpoint_every: with a checkpoint file, save progress every this many epochs (and when pausing).

    Raises:
        ArgumentError: an option of the wrong type or out of range, naming it.
    """

    def __init__(self, data: Optional[str] = None, device: Union[str, torch.device] = "cpu", **options: Any):
        unknown = sorted(set(options) - set(_DEFAULTS))
        if unknown:
            raise ArgumentError(unknown[0], f"unknown option of the word-LM task (options: {', '.join(_DEFAULTS)})")
        o = {**_DEFAULTS, **options}
        self.model_type = choice("model", o["model"], ("LSTM", "GRU", "RHN"))
        for key in ("emsize", "nhid", "nlayers", "depth", "batch_size", "bptt", "eval_batch_size", "ls_batch",
                    "checkpoint_every"):
            setattr(self, key, integer(key, o[key], minimum=1))
        for key in ("seed", "max_batches", "synthetic_tokens", "ls_warmup"):
            setattr(self, key, integer(key, o[key], minimum=0))
        for key in ("lr", "clip", "wd"):
            setattr(self, key, number(key, o[key], minimum=0.0))
        self.dropout = number("dropout", o["dropout"], minimum=0.0, maximum=1.0, max_open=True)
        self.tied = boolean("tied", o["tied"])
        self.test = boolean("test", o["test"])
        if self.ls_warmup > self.bptt:
            raise ArgumentError("ls_warmup", f"must be at most bptt ({self.bptt}), got {self.ls_warmup}")
        self.device = torch.device(device)
        if data:
            self.corpus = load_corpus(data)
        else:
            held_out = max(2000, self.synthetic_tokens // 10)
            self.corpus = synthetic_corpus(seed=0, train_tokens=self.synthetic_tokens, valid_tokens=held_out,
                                           test_tokens=held_out)
        self.ntokens = len(self.corpus.dictionary)
        self.train_data = batchify(self.corpus.train, self.batch_size, self.device)
        self.val_data = batchify(self.corpus.valid, self.eval_batch_size, self.device)
        self.test_data = batchify(self.corpus.test, self.eval_batch_size, self.device)
        self.ls_tokens = batchify(self.corpus.valid, self.ls_batch, self.device)[:self.bptt]
        self._check_model: Optional[nn.Module] = None

    def build_model(self) -> nn.Module:
        """A freshly initialised model (the same weights for the same seed)."""
        torch.manual_seed(self.seed)
        if self.model_type == "RHN":
            return RHNModel(self.ntokens, self.emsize, self.nhid, self.nlayers, self.depth, self.dropout,
                            tie_weights=self.tied)
        return RNNModel(self.model_type, self.ntokens, self.emsize, self.nhid, self.nlayers, self.dropout,
                        self.tied)

    def check(self, schedule: Mapping[str, Any]) -> None:
        """Build the schedule on this task's model and optimizer (on the CPU); raises ScheduleError if refused."""
        if self._check_model is None:
            self._check_model = self.build_model()
        model = self._check_model
        compress.dict_config(model, SparseNTASGD(model.parameters(), lr=self.lr, weight_decay=self.wd), schedule)

    def train(self, schedule: Optional[Mapping[str, Any]], epochs: int, control: TrainControl) -> TaskResult:
        """Train a fresh model for ``epochs`` under ``schedule`` (``None``: dense); see the module docstring."""
        torch.manual_seed(control.seed if control.seed is not None else self.seed)
        model = self.build_model().to(self.device)
        optimizer = SparseNTASGD(model.parameters(), lr=self.lr, weight_decay=self.wd)
        scheduler = (compress.dict_config(model, optimizer, dict(schedule)) if schedule
                     else compress.CompressionScheduler(model, optimizer))
        start, val_loss = 0, math.inf
        if control.checkpoint and os.path.exists(control.checkpoint):
            extra = compress.load_checkpoint(control.checkpoint, model, optimizer, scheduler)
            start, val_loss = int(extra["epoch"]) + 1, float(extra["val_loss"])
        epoch_seconds = 0.0
        for epoch in range(start, epochs):
            began = time.monotonic()
            scheduler.on_epoch_begin(epoch, optimizer)
            train_epoch(model, self.train_data, optimizer, scheduler, epoch, bptt=self.bptt, clip=self.clip,
                        max_batches=self.max_batches, on_batch=lambda *_: control.heartbeat())
            with averaged_weights(optimizer):
                val_loss = evaluate(model, self.val_data, self.bptt, self.eval_batch_size)
                control.epoch_done(epoch, model, val_loss)
            scheduler.on_epoch_end(epoch, optimizer, metrics={"min": val_loss, "max": -val_loss})
            epoch_seconds = max(epoch_seconds, time.monotonic() - began)
            last = epoch + 1 == epochs
            pause = not last and control.should_stop(epoch_seconds)
            if control.checkpoint and not last and (pause or (epoch + 1) % self.checkpoint_every == 0):
                compress.save_checkpoint(control.checkpoint, model, optimizer, scheduler, epoch=epoch,
                                         val_loss=val_loss)
            if pause:
                raise TrainingPaused(f"paused after epoch {epoch + 1} of {epochs}"
                                     + (f"; progress in {control.checkpoint}" if control.checkpoint else ""))
        with torch.no_grad(), averaged_weights(optimizer):   # the model returned is the one evaluated
            final = {name: p.detach().clone() for name, p in model.named_parameters()}
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(final[name])
        metrics = {}
        if self.test:
            metrics["test_loss"] = evaluate(model, self.test_data, self.bptt, self.eval_batch_size)
        return TaskResult(model, val_loss, metrics=metrics)

    @torch.no_grad()
    def spectrum(self, model: nn.Module) -> torch.Tensor:
        """The Lyapunov spectrum of the recurrent layers on the embedded first validation chunk (eval mode)."""
        model.eval()
        inputs = model.encoder(self.ls_tokens)
        warmup = min(self.ls_warmup, inputs.shape[0])
        if self.model_type != "RHN":
            return compress.lyapunov_spectrum(model.rnn, inputs, warmup=warmup)
        layers = copy.deepcopy(model.rnns).double()
        sizes = [layer.hidden_size for layer in layers]

        def step(x, state):
            out, inp = [], x
            for layer, s in zip(layers, state.split(sizes)):
                _, s = layer(inp.reshape(1, 1, -1), s.reshape(1, -1))
                out.append(s.reshape(-1))
                inp = out[-1]
            return torch.cat(out)

        state = torch.zeros(inputs.shape[1], sum(sizes), dtype=torch.float64, device=inputs.device)
        return compress.lyapunov_spectrum(step, inputs.double(), warmup=warmup, state=state)


def word_lm_task(data: Optional[str] = None, device: Union[str, torch.device] = "cpu",
                 **options: Any) -> WordLMSearchTask:
    """The factory ``python -m compress hyperprune --task compress_models.search_tasks:word_lm_task`` calls."""
    return WordLMSearchTask(data, device, **options)
