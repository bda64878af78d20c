"""Policies: *when* an algorithm acts, and at which hook.

A policy wraps one algorithm (a pruner, a regularizer, an LR scheduler, a quantizer) and reacts to the
:class:`~compress.scheduling.CompressionScheduler`'s hooks in the epochs of its :class:`~compress.context.Timing`.
It holds no algorithm of its own, and every bit of state it keeps is in :meth:`state_dict`.
"""
from __future__ import annotations

from collections import namedtuple
from typing import Any, Dict, Mapping, Optional

import torch

from compress import options
from compress.context import HookContext, Timing
from compress.sparsity.masks import MaskStore
from compress.sparsity.names import ParameterIndex

PolicyLoss = namedtuple("PolicyLoss", ["overall_loss", "loss_components"])
PolicyLoss.__doc__ = """What :meth:`ScheduledTrainingPolicy.before_backward_pass` returns (Distiller's type).

Args:
    overall_loss: the loss to back-propagate, the policy's terms included.
    loss_components: the added terms, as :class:`LossComponent` s.

Example:
    >>> out = PolicyLoss(torch.tensor(2.5), [LossComponent("L1Regularizer_loss", torch.tensor(0.5))])
    >>> out.overall_loss.item(), out.loss_components[0].name
    (2.5, 'L1Regularizer_loss')
"""
LossComponent = namedtuple("LossComponent", ["name", "value"])
LossComponent.__doc__ = """One named term of a :class:`PolicyLoss` (Distiller's type).

Args:
    name: what the term is (``L1Regularizer_loss``).
    value: its value, a tensor in the graph.

Example:
    >>> LossComponent("GroupLassoRegularizer_loss", torch.tensor(0.25)).value.item()
    0.25
"""


class ScheduledTrainingPolicy:
    """Base class of policies; every hook is a no-op unless overridden.

    The scheduler calls a policy's hooks only in epochs where its timing is active. ``timing`` is set when the
    policy is added. Adding a policy is two steps, so that a schedule that fails to load changes nothing:
    :meth:`bind` resolves names against the model and may raise, but touches nothing; :meth:`attach` makes the
    changes a policy needs on the model (gradient hooks, module conversion) and runs only once every policy of
    the schedule has bound.

    Example:
        >>> from compress.scheduling import CompressionScheduler
        >>> class CountEpochs(ScheduledTrainingPolicy):
        ...     def __init__(self):
        ...         self.seen = []
        ...     def on_epoch_begin(self, ctx, **kwargs):
        ...         self.seen.append(ctx.epoch)
        >>> scheduler = CompressionScheduler(torch.nn.Linear(2, 2))
        >>> policy = CountEpochs()
        >>> scheduler.add_policy(policy, starting_epoch=1, ending_epoch=6, frequency=2)
        >>> for epoch in range(6):
        ...     scheduler.on_epoch_begin(epoch)
        >>> policy.seen
        [1, 3, 5]
    """

    timing: Timing

    def bind(self, index: ParameterIndex) -> None:
        """Resolve what the policy acts on against the model's parameters; raise, but change nothing."""

    def attach(self, masks: MaskStore) -> None:
        """Make the changes the policy needs on the model (after every policy of the schedule has bound)."""

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

    def check_state(self, state: Any) -> None:
        """Raise unless :meth:`load_state_dict` accepts ``state`` and training can go on from it; changes nothing.

        The default accepts what :meth:`state_dict` writes now: the same fields, each of the same kind
        (:func:`compress.options.like`). The scheduler checks every policy's state before it loads any.

        Raises:
            ArgumentError: naming the field that is wrong.
        """
        options.like((), state, self.state_dict())

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)


