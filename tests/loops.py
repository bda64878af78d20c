"""The one training loop of the test suite: every scheduler hook, in the README's order ("Your own training loop").

Tests that need a loop call :func:`run_epochs` instead of writing one; a test keeps a hand-written loop only where
the loop itself is what it tests (hooks left out, no optimizer passed, ...).

Example:
    >>> import torch, compress
    >>> from compress_models import RNNModel
    >>> model = RNNModel("LSTM", 10, 4, 4, 1)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> scheduler = compress.CompressionScheduler(model, optimizer)
    >>> batch = (torch.zeros(3, 2, dtype=torch.long), torch.zeros(6, dtype=torch.long))
    >>> steps = run_epochs(model, scheduler, optimizer, [batch, batch], epochs=2)
    >>> [(s.epoch, s.minibatch_id) for s in steps]
    [(0, 0), (0, 1), (1, 0), (1, 1)]
"""
from __future__ import annotations

from collections import namedtuple
from typing import Any, Callable, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from compress_models import repackage_hidden

#: One minibatch as the loop saw it: the model's loss and the loss after ``before_backward_pass`` (floats).
Step = namedtuple("Step", ["epoch", "minibatch_id", "loss", "scheduled_loss"])

Batches = Union[int, Sequence[Any], Callable[[int], Sequence[Any]]]


class LMLoss:
    """Token cross-entropy of a word LM on a batch ``(data, targets)``: ``data`` is ``(seq_len, batch)`` token ids,
    ``targets`` the flattened next tokens.

    Args:
        carry_hidden: carry the recurrent state (detached) from one minibatch to the next within an epoch, as
            truncated BPTT does; by default every minibatch starts from ``init_hidden``.
    """

    def __init__(self, carry_hidden: bool = False):
        self.carry_hidden = carry_hidden
        self.hidden = None

    def __call__(self, model: nn.Module, batch, minibatch_id: int) -> torch.Tensor:
        data, targets = batch
        if minibatch_id == 0 or not self.carry_hidden or self.hidden is None:
            self.hidden = model.init_hidden(data.size(1))
        out, hidden = model(data, self.hidden)
        self.hidden = repackage_hidden(hidden)
        return F.cross_entropy(out.view(-1, out.size(-1)), targets)


def run_epochs(model: Optional[nn.Module], scheduler, optimizer: Optional[torch.optim.Optimizer], batches: Batches,
               epochs: int, start: int = 0, metrics: Any = None, *,
               loss: Optional[Callable[[nn.Module, Any, int], torch.Tensor]] = None, clip: float = 0.0,
               tell_optimizer: bool = True, after_step: Optional[Callable[[int, int], None]] = None,
               after_epoch: Optional[Callable[[int], None]] = None,
               until: Optional[Callable[[], bool]] = None) -> List[Step]:
    """Train epochs ``start .. start + epochs - 1`` calling every hook in the README's order.

    Per epoch: ``on_epoch_begin``, ``model.train()``, then per minibatch ``on_minibatch_begin``, the loss,
    ``before_backward_pass``, ``zero_grad``, ``backward``, gradient clipping, ``before_parameter_optimization``,
    ``optimizer.step``, ``on_minibatch_end``; then ``on_epoch_end(epoch, optimizer, metrics=...)``.

    Args:
        model: the model; ``None`` to call the hooks only (no forward, backward or step; the loss given to
            ``before_backward_pass`` is a zero tensor).
        scheduler: the :class:`compress.CompressionScheduler`.
        optimizer: the optimizer (``None`` with ``model=None``).
        batches: the minibatches of every epoch (a sequence), ``batches(epoch) -> sequence`` (fresh data each
            epoch), or a number of minibatches for a hooks-only run.
        epochs: how many epochs.
        start: the first epoch's number (a resumed run starts after the saved epoch).
        metrics: passed to ``on_epoch_end`` (``{'min': val_loss}``), or ``metrics(epoch)`` giving it; none by
            default.
        loss: ``loss(model, batch, minibatch_id) -> Tensor``; default :class:`LMLoss` (state from
            ``init_hidden`` every minibatch).
        clip: gradient-norm clipping after ``backward`` (0: none).
        tell_optimizer: pass the optimizer to the hooks; ``False`` is a Distiller loop that passes none.
        after_step: ``after_step(epoch, minibatch_id)`` after ``on_minibatch_end`` (checks inside an epoch).
        after_epoch: ``after_epoch(epoch)`` after ``on_epoch_end``.
        until: checked right after ``on_epoch_begin``; when true the loop stops there, before that epoch trains.

    Returns:
        The :class:`Step` of every minibatch, in order.
    """
    loss = loss if loss is not None else LMLoss()
    told = optimizer if tell_optimizer else None
    steps: List[Step] = []
    for epoch in range(start, start + epochs):
        epoch_batches = batches(epoch) if callable(batches) else batches
        n = epoch_batches if isinstance(epoch_batches, int) else len(epoch_batches)
        scheduler.on_epoch_begin(epoch, told)
        if until is not None and until():
            break
        if model is not None:
            model.train()
        for i in range(n):
            scheduler.on_minibatch_begin(epoch, i, n, told)
            value = torch.zeros(()) if model is None else loss(model, epoch_batches[i], i)
            total = scheduler.before_backward_pass(epoch, i, n, value, told)
            if model is not None:
                optimizer.zero_grad()
                total.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            scheduler.before_parameter_optimization(epoch, i, n, told)
            if model is not None:
                optimizer.step()
            scheduler.on_minibatch_end(epoch, i, n, told)
            steps.append(Step(epoch, i, value.detach().item(), total.detach().item()))
            if after_step is not None:
                after_step(epoch, i)
        if metrics is None:
            scheduler.on_epoch_end(epoch, told)
        else:
            scheduler.on_epoch_end(epoch, told, metrics=metrics(epoch) if callable(metrics) else metrics)
        if after_epoch is not None:
            after_epoch(epoch)
    return steps
