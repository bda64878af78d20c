"""The policy of dynamic sparse training: initial topology, per-step statistics, prune-and-regrow events."""
from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional

import torch

from compress.context import HookContext
from compress.distributed import broadcast_, broadcast_object
from compress.errors import ArgumentError
from compress.pruning.base import RegrowingPruner
from compress.scheduling.policies.pruning import PruningPolicy
from compress.sparsity.masks import MaskStore
from compress.sparsity.names import ParameterIndex

log = logging.getLogger(__name__)


class DynamicSparsityPolicy(PruningPolicy):
    """Drive a :class:`~compress.pruning.DynamicSparsityPruner` from the scheduler's hooks.

    * first active epoch, at its start: draw the initial sparse topology;
    * every minibatch end: step the death rate, update the pruner's gradient statistics, and, with
      ``update_frequency: k``, prune and regrow every ``k`` minibatches;
    * every active epoch end (``update_frequency: epoch``): prune and regrow.

    No event happens after the last optimizer step of the policy's last epoch: its regrown weights would stay at
    exactly zero, never trained (the model would end sparser than its density, and be evaluated so). When the
    model is run in eval mode while weights regrown by the last event have not had an optimizer step yet (a loop
    that stops before the policy's ``ending_epoch``), a warning says how many; :attr:`untrained_regrowth` holds
    the count.

    Masks are changed only through :meth:`MaskStore.set_mask`, twice per event: first to the survivors (pruned
    weights and their optimizer state are zeroed), then to the new topology (the optimizer state of every grown
    position is zeroed). A weight pruned and regrown in the same event therefore restarts at zero like every
    other grown weight. With ``torch.distributed`` initialised, rank 0's masks are broadcast before they are
    applied, so every rank holds the same topology.

    Args:
        pruner: the pruner.
        args: policy arguments; none are accepted (set the pruner's options instead).

    Raises:
        ArgumentError: any policy argument.

    Example:
        >>> from compress.pruning import SelfishRNNPruner
        >>> from compress.scheduling import CompressionScheduler
        >>> model = torch.nn.Linear(10, 10, bias=False)
        >>> scheduler = CompressionScheduler(model)
        >>> scheduler.add_policy(DynamicSparsityPolicy(SelfishRNNPruner("selfish", density=0.3, seed=0)),
        ...                      starting_epoch=0, ending_epoch=5)
        >>> scheduler.on_epoch_begin(0)                  # the initial random topology: 30 of 100 weights
        >>> int(scheduler.masks["weight"].sum())
        30
    """

    def __init__(self, pruner: RegrowingPruner, args: Optional[Mapping[str, Any]] = None):
        if args:
            key = next(iter(args))
            raise ArgumentError(key, f"{type(pruner).__name__} takes no policy arguments; its cadence is the "
                                     f"pruner's update_frequency")
        super().__init__(pruner, {})
        self._epoch_steps = 0
        #: weights grown by the last event that have not had an optimizer step since
        self.untrained_regrowth = 0
        self._warned = False
        self._hook = None

    def bind(self, index: ParameterIndex) -> None:
        self.pruner.bind(index)
        self.pruner.check_timing(self.timing)

    def attach(self, masks: MaskStore) -> None:
        """Agree on rank 0's seed (masks themselves come at the first active epoch) and watch for evaluation
        with untrained regrown weights."""
        self.pruner.seed = broadcast_object(self.pruner.seed)
        self._hook = masks.model.register_forward_pre_hook(self._warn_if_untrained)

    def _warn_if_untrained(self, module, inputs) -> None:
        if self.untrained_regrowth and not module.training and not self._warned:
            self._warned = True
            log.warning("%s: the model is evaluated with %d weights regrown by the last prune-and-regrow event "
                        "still at zero (no optimizer step since): the run stopped before the policy's "
                        "ending_epoch (%d); end the policy with the training", self.pruner.name,
                        self.untrained_regrowth, self.timing.ending)

    def _params(self, store: MaskStore) -> Dict[str, torch.Tensor]:
        return {n: store.parameter(n) for n in self.pruner.weights}

    def _apply(self, store: MaskStore, masks: Mapping[str, torch.Tensor], optimizer) -> None:
        for name, mask in masks.items():
            store.set_mask(name, broadcast_(mask), optimizer)

    def on_epoch_begin(self, ctx: HookContext, **kwargs: Any) -> None:
        self._epoch_steps = 0
        if not self.pruner.initialised:
            self._apply(ctx.masks, self.pruner.initial_masks(self._params(ctx.masks)), ctx.optimizer)

    def on_minibatch_begin(self, ctx: HookContext) -> None:
        ctx.masks.apply(self.pruner.weights)

    def on_minibatch_end(self, ctx: HookContext) -> None:
        self._epoch_steps += 1
        self.untrained_regrowth = 0  # an optimizer step has just run
        last = ctx.minibatches_per_epoch is not None and ctx.minibatch_id == ctx.minibatches_per_epoch - 1
        params = self._params(ctx.masks)
        due = self.pruner.observe_step(params, ctx.minibatches_per_epoch, self.timing, last_of_epoch=last)
        if due and not (last and ctx.epoch == self.timing.last):
            self._update(ctx, params)

    def on_epoch_end(self, ctx: HookContext, **kwargs: Any) -> None:
        self.pruner.observe_epoch_end(self._epoch_steps, self.timing)
        if self.pruner.update_frequency == "epoch":
            if ctx.epoch == self.timing.last:
                log.info("%s: no prune-and-regrow after the policy's last epoch (%d): regrown weights could not "
                         "train", self.pruner.name, ctx.epoch)
                return
            self._update(ctx, self._params(ctx.masks))

    def _update(self, ctx: HookContext, params: Dict[str, torch.Tensor]) -> None:
        step = ctx.with_timing(self.timing)
        current = {n: ctx.masks.get(n) for n in self.pruner.weights}
        update = self.pruner.prune_and_regrow(params, current, step)
        self._apply(ctx.masks, update.survivors, ctx.optimizer)
        self._apply(ctx.masks, update.masks, ctx.optimizer)
        self.untrained_regrowth, self._warned = sum(update.grown.values()), False
