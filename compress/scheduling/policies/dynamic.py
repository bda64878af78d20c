"""The policy of dynamic sparse training: initial topology, per-step statistics, prune-and-regrow events."""
from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional

import torch

from compress.context import HookContext
from compress.errors import ArgumentError
from compress.pruning.base import RegrowingPruner
from compress.scheduling.policies.pruning import PruningPolicy
from compress.sparsity.masks import MaskStore
from compress.sparsity.names import ParameterIndex

log = logging.getLogger(__name__)


class DynamicSparsityPolicy(PruningPolicy):
    """Drive a :class:`DynamicSparsityPruner` from the scheduler's hooks.

    * first active epoch, at its start: draw the initial sparse topology;
    * every minibatch end: step the death rate, update the pruner's gradient statistics, and, with
      ``update_frequency: k``, prune and regrow every ``k`` minibatches;
    * every active epoch end (``update_frequency: epoch``): prune and regrow.

    Masks are changed only through :meth:`MaskStore.set_mask`, twice per event: first to the survivors (pruned
    weights and their optimizer state are zeroed), then to the new topology (the optimizer state of every grown
    position is zeroed). A weight pruned and regrown in the same event therefore restarts at zero like every
    other grown weight. With ``torch.distributed`` initialised, rank 0's masks are broadcast before they are
    applied, so every rank holds the same topology.

    Args:
        pruner: the pruner.
        args: policy arguments; none are accepted (set the pruner's options instead).
    """

    def __init__(self, pruner: RegrowingPruner, args: Optional[Mapping[str, Any]] = None):
        if args:
            key = next(iter(args))
            raise ArgumentError(key, f"{type(pruner).__name__} takes no policy arguments; its cadence is the "
                                     f"pruner's update_frequency")
        super().__init__(pruner, {})
        self._epoch_steps = 0

    def bind(self, index: ParameterIndex) -> None:
        self.pruner.bind(index)
        self.pruner.check_timing(self.timing)

    def attach(self, masks: MaskStore) -> None:
        """Nothing to set up: masks come at the first active epoch."""

    def _params(self, store: MaskStore) -> Dict[str, torch.Tensor]:
        return {n: store.parameter(n) for n in self.pruner.weights}

    def _apply(self, store: MaskStore, masks: Mapping[str, torch.Tensor], optimizer) -> None:
        for name, mask in masks.items():
            store.set_mask(name, _broadcast(mask), optimizer)

    def on_epoch_begin(self, ctx: HookContext, **kwargs: Any) -> None:
        self._epoch_steps = 0
        if not self.pruner.initialised:
            self._apply(ctx.masks, self.pruner.initial_masks(self._params(ctx.masks)), ctx.optimizer)

    def on_minibatch_begin(self, ctx: HookContext) -> None:
        ctx.masks.apply(self.pruner.weights)

    def on_minibatch_end(self, ctx: HookContext) -> None:
        self._epoch_steps += 1
        last = ctx.minibatches_per_epoch is not None and ctx.minibatch_id == ctx.minibatches_per_epoch - 1
        params = self._params(ctx.masks)
        due = self.pruner.observe_step(params, ctx.minibatches_per_epoch, self.timing, last_of_epoch=last)
        if due:
            self._update(ctx, params)

    def on_epoch_end(self, ctx: HookContext, **kwargs: Any) -> None:
        self.pruner.observe_epoch_end(self._epoch_steps, self.timing)
        if self.pruner.update_frequency == "epoch":
            self._update(ctx, self._params(ctx.masks))

    def _update(self, ctx: HookContext, params: Dict[str, torch.Tensor]) -> None:
        step = ctx.with_timing(self.timing)
        current = {n: ctx.masks.get(n) for n in self.pruner.weights}
        update = self.pruner.prune_and_regrow(params, current, step)
        self._apply(ctx.masks, update.survivors, ctx.optimizer)
        self._apply(ctx.masks, update.masks, ctx.optimizer)


def _broadcast(mask: torch.Tensor) -> torch.Tensor:
    """Rank 0's mask on every rank (a no-op unless ``torch.distributed`` is initialised)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return mask
    buf = mask.to(torch.uint8)
    dist.broadcast(buf, src=0)
    return buf.bool()


