"""Training and evaluating the word LMs of this package under a compression schedule.

The loop is PyTorch's word-language-model example with Distiller's scheduler hooks (see the README's "Your own
training loop"); examples, tasks and benchmarks call these functions instead of writing the loop again.

Example:
    >>> import torch, compress
    >>> from compress_models import RNNModel, batchify, synthetic_corpus
    >>> corpus = synthetic_corpus(seed=0, train_tokens=2000, valid_tokens=500, test_tokens=500)
    >>> model = RNNModel("LSTM", len(corpus.dictionary), 16, 16, 1)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    >>> scheduler = compress.CompressionScheduler(model, optimizer)
    >>> loss = train_epoch(model, batchify(corpus.train, 4), optimizer, scheduler, epoch=0, bptt=20)
    >>> val_loss, accuracy = evaluate_lm(model, batchify(corpus.valid, 4), bptt=20, batch_size=4)
    >>> 0 < val_loss < 10 and 0 <= accuracy <= 1
    True
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .corpus import get_batch, repackage_hidden

#: ``forward(model, data, hidden) -> (logits, hidden, extra_loss)``; the default adds no extra loss.
Forward = Callable[[nn.Module, torch.Tensor, object], Tuple[torch.Tensor, object, torch.Tensor]]


def plain_forward(model: nn.Module, data: torch.Tensor, hidden: object) -> Tuple[torch.Tensor, object, torch.Tensor]:
    """``model(data, hidden)`` with no extra loss term."""
    output, hidden = model(data, hidden)
    return output, hidden, output.new_zeros(())


@torch.no_grad()
def evaluate_lm(model: nn.Module, source: torch.Tensor, bptt: int, batch_size: int) -> Tuple[float, float]:
    """``(mean token cross-entropy, top-1 next-word accuracy)`` over a batchified split.

    Chunks are weighted by their length and the hidden state is carried across chunks, as in PyTorch's example.

    Args:
        model: a word LM with ``init_hidden(batch_size)`` and ``model(data, hidden) -> (logits, hidden)``.
        source: a split from :func:`~compress_models.batchify` (time x batch).
        bptt: chunk length.
        batch_size: the batch size ``source`` was batchified with.
    """
    return _evaluate(model, source, bptt, batch_size, accuracy=True)


def evaluate(model: nn.Module, source: torch.Tensor, bptt: int, batch_size: int) -> float:
    """Mean token cross-entropy over ``source`` (see :func:`evaluate_lm`; the accuracy is not computed, which
    saves an argmax over the vocabulary per chunk where a search evaluates hundreds of candidates)."""
    return _evaluate(model, source, bptt, batch_size, accuracy=False)[0]


@torch.no_grad()
def _evaluate(model: nn.Module, source: torch.Tensor, bptt: int, batch_size: int,
              accuracy: bool) -> Tuple[float, float]:
    model.eval()
    loss, correct, count = 0.0, 0, 0
    hidden = model.init_hidden(batch_size)
    for i in range(0, source.size(0) - 1, bptt):
        data, targets = get_batch(source, i, bptt)
        output, hidden = model(data, hidden)
        hidden = repackage_hidden(hidden)
        logits = output.view(-1, output.size(-1))
        loss += F.cross_entropy(logits, targets.reshape(-1), reduction="sum").item()
        if accuracy:
            correct += int((logits.argmax(-1) == targets.reshape(-1)).sum())
        count += targets.numel()
    return loss / max(count, 1), correct / max(count, 1)


def train_epoch(model: nn.Module, train_data: torch.Tensor, optimizer: torch.optim.Optimizer,
                scheduler, epoch: int, *, bptt: int = 35, clip: float = 0.25, max_batches: int = 0,
                forward: Optional[Forward] = None,
                on_batch: Optional[Callable[[int, int, float], None]] = None) -> float:
    """One epoch of truncated-BPTT training with every scheduler hook; returns the mean training loss.

    Args:
        model: the word LM.
        train_data: the batchified training split (time x batch).
        optimizer: the optimizer.
        scheduler: a :class:`compress.CompressionScheduler` (its ``on_epoch_begin``/``on_epoch_end`` are the
            caller's, so the caller can pass validation metrics).
        epoch: the epoch number given to the hooks.
        bptt: sequence length.
        clip: gradient-norm clipping (0: none).
        max_batches: stop after this many minibatches (0: the whole split).
        forward: ``forward(model, data, hidden) -> (logits, hidden, extra_loss)`` (AR/TAR for AWD models);
            default :func:`plain_forward`.
        on_batch: called as ``on_batch(done, total, loss)`` every 10 minibatches and at the last (progress).
    """
    forward = forward or plain_forward
    model.train()
    steps = (train_data.size(0) - 1 + bptt - 1) // bptt
    if max_batches:
        steps = min(steps, max_batches)
    hidden = model.init_hidden(train_data.size(1))
    total = torch.zeros((), device=train_data.device)  # summed on the device: no host sync per step
    for batch, i in enumerate(range(0, steps * bptt, bptt)):
        data, targets = get_batch(train_data, i, bptt)
        hidden = repackage_hidden(hidden)
        scheduler.on_minibatch_begin(epoch, batch, steps, optimizer)
        output, hidden, extra_loss = forward(model, data, hidden)
        loss = F.cross_entropy(output.view(-1, output.size(-1)), targets.reshape(-1)) + extra_loss
        loss = scheduler.before_backward_pass(epoch, batch, steps, loss, optimizer)
        optimizer.zero_grad()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        scheduler.before_parameter_optimization(epoch, batch, steps, optimizer)
        optimizer.step()
        scheduler.on_minibatch_end(epoch, batch, steps, optimizer)
        total += loss.detach()
        if on_batch is not None and (batch % 10 == 0 or batch == steps - 1):
            on_batch(batch + 1, steps, loss.item())
    return total.item() / max(steps, 1)
