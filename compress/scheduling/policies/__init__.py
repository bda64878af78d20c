"""Policies: *when* an algorithm acts, and at which hook.

A policy wraps one algorithm (a pruner, a regularizer, an LR scheduler, a quantizer) and reacts to the
scheduler's hooks in the epochs of its :class:`~compress.context.Timing`. Policies depend on the algorithms'
declared protocols (:mod:`compress.pruning.base`), never the reverse: :func:`policy_for` picks the policy a
pruner's protocol asks for.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from compress.pruning.base import Pruner, RegrowingPruner, SearchingPruner
from compress.scheduling.policies.base import (
    LossComponent,
    PolicyLoss,
    ScheduledTrainingPolicy,
)
from compress.scheduling.policies.dynamic import DynamicSparsityPolicy
from compress.scheduling.policies.iterative import IterativePruningPolicy
from compress.scheduling.policies.lr import LRPolicy
from compress.scheduling.policies.pruning import PruningPolicy, policy_pruners
from compress.scheduling.policies.quantization import QuantizationPolicy
from compress.scheduling.policies.regularization import REGULARIZATION_POLICY_ARGS, RegularizationPolicy

__all__ = ["ScheduledTrainingPolicy", "PolicyLoss", "LossComponent", "PruningPolicy", "DynamicSparsityPolicy",
           "IterativePruningPolicy", "LRPolicy", "RegularizationPolicy", "QuantizationPolicy", "policy_for",
           "policy_pruners", "REGULARIZATION_POLICY_ARGS"]


def policy_for(pruner: Pruner, args: Optional[Mapping[str, Any]] = None) -> PruningPolicy:
    """The policy that drives ``pruner``, chosen by the lifecycle it declares.

    A :class:`~compress.pruning.base.RegrowingPruner` gets a :class:`DynamicSparsityPolicy`, a
    :class:`~compress.pruning.base.SearchingPruner` an :class:`IterativePruningPolicy`, and every other pruner
    a :class:`PruningPolicy` with Distiller's policy ``args``.

    Args:
        pruner: any pruner.
        args: the policy's ``args`` (checked by the policy).

    Returns:
        A new policy for ``pruner``, its timing not set yet.

    Raises:
        ArgumentError: ``args`` the policy does not accept.

    Example:
        >>> from compress.pruning.pruners import SparsityLevelParameterPruner
        >>> pruner = SparsityLevelParameterPruner("p", levels={"w": 0.5})
        >>> type(policy_for(pruner)).__name__
        'PruningPolicy'
    """
    if isinstance(pruner, RegrowingPruner):
        return DynamicSparsityPolicy(pruner, args)
    if isinstance(pruner, SearchingPruner):
        return IterativePruningPolicy(pruner, args)
    return PruningPolicy(pruner, args)
