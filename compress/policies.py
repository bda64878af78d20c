"""Policies: *when* an algorithm acts, and at which hook.

A policy wraps one algorithm (a pruner, a regularizer, an LR scheduler, a quantizer) and reacts to the
:class:`~compress.scheduler.CompressionScheduler`'s hooks in the epochs of its :class:`~compress.rates.Timing`.
It holds no algorithm of its own, and every bit of state it keeps is in :meth:`state_dict`.
"""
from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

import torch

from .errors import ArgumentError
from .masks import MaskStore
from .pruners.base import Pruner, PruningStep
from .rates import Timing

PolicyLoss = namedtuple("PolicyLoss", ["overall_loss", "loss_components"])
LossComponent = namedtuple("LossComponent", ["name", "value"])


@dataclass
class HookContext:
    """What a policy is told at a hook.

    Args:
        epoch: current epoch.
        minibatch_id: minibatch within the epoch (0 at epoch hooks).
        minibatches_per_epoch: as passed by the training loop (``None`` at epoch hooks).
        optimizer: the optimizer, if the loop or the schedule gave one.
        masks: the model's mask store.
    """

    epoch: int
    minibatch_id: int
    minibatches_per_epoch: Optional[int]
    optimizer: Optional[torch.optim.Optimizer]
    masks: MaskStore


class ScheduledTrainingPolicy:
    """Base class of policies; every hook is a no-op unless overridden.

    The scheduler calls a policy's hooks only in epochs where its timing is active, except
    :meth:`on_epoch_end`, which is also called only then. ``timing`` is set when the policy is added.
    """

    timing: Timing

    @property
    def algorithm(self) -> str:
        """Class name of what the policy runs; saved with the state so a resume can check it is the same."""
        for attr in ("pruner", "regularizer", "lr_scheduler", "quantizer"):
            if hasattr(self, attr):
                return type(getattr(self, attr)).__name__
        return type(self).__name__

    def on_epoch_begin(self, ctx: HookContext, **kwargs: Any) -> None:
        """Start of an active epoch."""

    def on_minibatch_begin(self, ctx: HookContext) -> None:
        """Before the forward pass of a minibatch in an active epoch."""

    def before_backward_pass(self, ctx: HookContext, loss: torch.Tensor) -> Optional[PolicyLoss]:
        """May return a :class:`PolicyLoss` whose ``overall_loss`` replaces ``loss`` (never change it in place)."""
        return None

    def before_parameter_optimization(self, ctx: HookContext) -> None:
        """After ``backward()``, before ``optimizer.step()``."""

    def on_minibatch_end(self, ctx: HookContext) -> None:
        """After ``optimizer.step()``."""

    def on_epoch_end(self, ctx: HookContext, **kwargs: Any) -> None:
        """End of an active epoch (``kwargs`` as passed by the loop, e.g. ``metrics=``)."""

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


PRUNING_POLICY_ARGS = ("levels", "keep_mask", "mini_batch_pruning_frequency", "mask_on_forward_only",
                       "mask_gradients", "use_double_copies", "discard_masks_at_minibatch_end",
                       "skip_first_minibatch", "fold_batchnorm")


class PruningPolicy(ScheduledTrainingPolicy):
    """Run a pruner in its policy's epochs and hand its masks to the mask store.

    Masks are computed at the start of each active epoch (and, where asked, every k minibatches or every
    minibatch), applied at once, applied before each forward pass of an active epoch if a weight has changed
    since, and re-applied after every optimizer step in every epoch by the scheduler.

    Unlike Distiller, the masking modes below are scoped to *this* pruner's weights, not set for the whole
    model by whichever policy happens to start first; and ``skip_first_minibatch`` defers pruning to
    minibatch 1 of every active epoch (Distiller did it in epoch 0 only).

    Args:
        pruner: the pruner.
        args: Distiller's policy ``args``: ``levels`` (overrides a level pruner's levels), ``keep_mask``
            (make forward-only masks permanent after the last epoch), ``mini_batch_pruning_frequency``,
            ``mask_on_forward_only``, ``mask_gradients``, ``use_double_copies``,
            ``discard_masks_at_minibatch_end``, ``skip_first_minibatch``, ``fold_batchnorm`` (Conv2d only:
            must be false here).
    """

    def __init__(self, pruner: Pruner, args: Optional[Mapping[str, Any]] = None):
        args = dict(args or {})
        unknown = sorted(set(args) - set(PRUNING_POLICY_ARGS))
        if unknown:
            raise ArgumentError(unknown[0], f"unknown pruning policy argument (accepted: {', '.join(PRUNING_POLICY_ARGS)})")
        for key in PRUNING_POLICY_ARGS:
            if key not in ("levels", "mini_batch_pruning_frequency") and not isinstance(args.get(key, False), bool):
                raise ArgumentError(key, f"expected true or false, got {args[key]!r}")
        if args.get("fold_batchnorm"):
            raise ArgumentError("fold_batchnorm", "folds BatchNorm into Conv2d; recurrent models have none to fold")
        freq = args.get("mini_batch_pruning_frequency", 0)
        if isinstance(freq, bool) or not isinstance(freq, int) or freq < 0:
            raise ArgumentError("mini_batch_pruning_frequency", f"expected a non-negative integer, got {freq!r}")
        if args.get("levels") is not None and not hasattr(pruner, "levels"):
            raise ArgumentError("levels", f"only level pruners take levels; {type(pruner).__name__} does not")
        self.pruner = pruner
        self.levels = args.get("levels")
        self.keep_mask = args.get("keep_mask", False)
        self.mini_batch_pruning_frequency = freq
        self.mask_on_forward_only = args.get("mask_on_forward_only", False)
        self.mask_gradients = args.get("mask_gradients", False)
        self.use_double_copies = args.get("use_double_copies", False)
        self.discard_masks_at_minibatch_end = args.get("discard_masks_at_minibatch_end", False)
        self.skip_first_minibatch = args.get("skip_first_minibatch", False)

    def bind(self, masks: MaskStore) -> None:
        """Resolve the pruner's weights against the model and set their masking modes."""
        if self.levels is not None:
            self.pruner.levels = dict(self.levels)
        self.pruner.bind(masks.index)
        for name in self.pruner.weights:
            masks.configure(name, forward_only=self.mask_on_forward_only, double_copies=self.use_double_copies,
                            mask_gradients=self.mask_gradients)

    def _prune(self, ctx: HookContext) -> None:
        store = ctx.masks
        step = PruningStep(ctx.epoch, ctx.minibatch_id, ctx.minibatches_per_epoch, self.timing, ctx.optimizer)
        params = {n: store.parameter(n) for n in self.pruner.weights}
        current = {n: store.get(n) for n in self.pruner.weights}
        for name, mask in self.pruner.compute_masks(params, current, step).items():
            store.set_mask(name, mask, ctx.optimizer)

    def on_epoch_begin(self, ctx: HookContext, **kwargs: Any) -> None:
        if not self.skip_first_minibatch:
            self._prune(ctx)

    def on_minibatch_begin(self, ctx: HookContext) -> None:
        mb = ctx.minibatch_id
        if mb > 0 and (self.pruner.prunes_every_minibatch or (self.mini_batch_pruning_frequency
                                                               and mb % self.mini_batch_pruning_frequency == 0)):
            self._prune(ctx)
        elif self.skip_first_minibatch and mb == 1:
            self._prune(ctx)
        ctx.masks.apply(self.pruner.weights)

    def before_parameter_optimization(self, ctx: HookContext) -> None:
        if self.use_double_copies:
            ctx.masks.restore_unmasked()

    def on_minibatch_end(self, ctx: HookContext) -> None:
        if self.discard_masks_at_minibatch_end:
            for name in self.pruner.weights:
                ctx.masks.remove_mask(name)

    def on_epoch_end(self, ctx: HookContext, **kwargs: Any) -> None:
        if self.keep_mask and ctx.epoch == self.timing.last:
            for name in self.pruner.weights:
                ctx.masks.configure(name, mask_gradients=self.mask_gradients)
                mask = ctx.masks.get(name)
                if mask is not None:
                    ctx.masks.set_mask(name, mask, ctx.optimizer)

    def state_dict(self) -> Dict[str, Any]:
        return {"pruner": self.pruner.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.pruner.load_state_dict(state.get("pruner", {}))


class LRPolicy(ScheduledTrainingPolicy):
    """Step a ``torch.optim.lr_scheduler`` at the end of each active epoch.

    ``ReduceLROnPlateau`` is stepped with the metric of its mode, taken from ``on_epoch_end(...,
    metrics={'min': val_loss, 'max': accuracy})`` as in Distiller, or from ``metrics=<float>``. Other schedulers
    are stepped with plain ``step()`` (Distiller's ``step(epoch=...)`` is deprecated in PyTorch).

    Args:
        lr_scheduler: the LR scheduler.
    """

    def __init__(self, lr_scheduler: Any):
        self.lr_scheduler = lr_scheduler

    def on_epoch_end(self, ctx: HookContext, **kwargs: Any) -> None:
        if isinstance(self.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            metrics = kwargs.get("metrics")
            if isinstance(metrics, Mapping):
                metrics = metrics.get(self.lr_scheduler.mode)
            if metrics is None:
                raise ValueError("ReduceLROnPlateau needs on_epoch_end(epoch, optimizer, metrics={'min': "
                                 "val_loss}) (or metrics=<float>)")
            self.lr_scheduler.step(float(metrics))
        else:
            self.lr_scheduler.step()

    def state_dict(self) -> Dict[str, Any]:
        return {"lr_scheduler": self.lr_scheduler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "lr_scheduler" in state:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])


class RegularizationPolicy(ScheduledTrainingPolicy):
    """Add a regularizer's loss before the backward pass in active epochs.

    With a regularizer that has a ``threshold_criteria``, weights whose groups fall under the threshold are
    zeroed after each step; with ``keep_mask`` the resulting masks are kept after the last active epoch.

    Args:
        regularizer: the regularizer (has ``loss(params) -> Tensor`` and optionally ``threshold_masks``).
        keep_mask: keep the threshold masks from the last minibatch of the last active epoch.
    """

    def __init__(self, regularizer: Any, keep_mask: bool = False):
        if not isinstance(keep_mask, bool):
            raise ArgumentError("keep_mask", f"expected true or false, got {keep_mask!r}")
        self.regularizer = regularizer
        self.keep_mask = keep_mask

    def bind(self, masks: MaskStore) -> None:
        self.regularizer.bind(masks.index)

    def before_backward_pass(self, ctx: HookContext, loss: torch.Tensor) -> Optional[PolicyLoss]:
        params = {n: ctx.masks.parameter(n) for n in self.regularizer.weights}
        reg = self.regularizer.loss(params)
        return PolicyLoss(loss + reg, [LossComponent(type(self.regularizer).__name__ + "_loss", reg)])

    def on_minibatch_end(self, ctx: HookContext) -> None:
        if getattr(self.regularizer, "threshold_criteria", None) is None:
            return
        params = {n: ctx.masks.parameter(n) for n in self.regularizer.weights}
        last = (ctx.epoch == self.timing.last and ctx.minibatches_per_epoch is not None
                and ctx.minibatch_id == ctx.minibatches_per_epoch - 1)
        for name, mask in self.regularizer.threshold_masks(params).items():
            if self.keep_mask and last:
                ctx.masks.set_mask(name, mask, ctx.optimizer)
            else:  # a one-shot mask: zero the weights now, keep no mask
                with torch.no_grad():
                    params[name].mul_(mask)

    def state_dict(self) -> Dict[str, Any]:
        return {}


class QuantizationPolicy(ScheduledTrainingPolicy):
    """Run a quantizer: prepare the model once, then re-quantize parameters after every step of active epochs.

    Args:
        quantizer: an object with ``prepare_model()`` and ``quantize_params()``.
    """

    def __init__(self, quantizer: Any):
        self.quantizer = quantizer
        self.quantizer.prepare_model()
        self.quantizer.quantize_params()

    def on_minibatch_end(self, ctx: HookContext) -> None:
        self.quantizer.quantize_params()

    def state_dict(self) -> Dict[str, Any]:
        return {"quantizer": self.quantizer.state_dict()} if hasattr(self.quantizer, "state_dict") else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "quantizer" in state and hasattr(self.quantizer, "load_state_dict"):
            self.quantizer.load_state_dict(state["quantizer"])


def policy_pruners(policies: List[ScheduledTrainingPolicy]) -> List[Pruner]:
    """The pruners behind a list of policies, in order, each once."""
    out: List[Pruner] = []
    for p in policies:
        if isinstance(p, PruningPolicy) and p.pruner not in out:
            out.append(p.pruner)
    return out
