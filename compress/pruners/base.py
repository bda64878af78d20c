"""The pruner protocol: a pruner only decides *which* weights to keep.

How much and when comes from :mod:`compress.rates` and the policy's timing; applying masks to weights,
gradients and optimizer state is :class:`compress.masks.MaskStore`'s job. A new pruner is one subclass of
:class:`Pruner`, registered with :func:`compress.register_pruner`.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch

from ..errors import ArgumentError
from ..rates import Timing
from ..selection import ParameterIndex


@dataclass
class PruningStep:
    """Where training is when a pruner is asked for masks.

    Args:
        epoch: the current epoch.
        minibatch_id: the minibatch within the epoch (0 at epoch begin).
        minibatches_per_epoch: minibatches in an epoch, when the caller said (``None`` at epoch begin).
        timing: the epochs in which the policy that calls the pruner acts.
        optimizer: the optimizer, when known (gradient- or momentum-based criteria read it).
    """

    epoch: int
    minibatch_id: int
    minibatches_per_epoch: Optional[int]
    timing: Timing
    optimizer: Optional[torch.optim.Optimizer] = None


WeightSpec = Union[None, str, Sequence[str]]


def check_fraction(key: str, value: Any, *, allow_one: bool = False) -> float:
    """``value`` as a float in [0, 1) (or [0, 1]); ``ArgumentError`` naming ``key`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentError(key, f"expected a number in [0, 1{']' if allow_one else ')'}, got {value!r}")
    value = float(value)
    if not (0.0 <= value < 1.0 or (allow_one and value == 1.0)):
        raise ArgumentError(key, f"must be in [0, 1{']' if allow_one else ')'}, got {value}")
    return value


def check_number(key: str, value: Any, *, minimum: Optional[float] = None) -> float:
    """``value`` as a float (``>= minimum`` when given); ``ArgumentError`` naming ``key`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentError(key, f"expected a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ArgumentError(key, f"must be >= {minimum}, got {value}")
    return float(value)


def resolve_weights(index: ParameterIndex, patterns: Sequence[str], key: str = "weights") -> List[str]:
    """Canonical names for ``patterns``; ``ArgumentError`` naming the failing entry (``weights[1]``)."""
    names: List[str] = []
    for i, pattern in enumerate(patterns):
        try:
            found = index.resolve(pattern)
        except LookupError as exc:
            raise ArgumentError(f"{key}[{i}]", str(exc)) from None
        names.extend(n for n in found if n not in names)
    return [n for n in index.params if n in names]


def resolve_targets(index: ParameterIndex, targets: Mapping[str, Any], key: str) -> Dict[str, Any]:
    """Per-parameter values from a Distiller-style dict ``{name or pattern: value, '*': default}``.

    Exact names win over patterns, patterns over ``'*'``; ``'*'`` covers every parameter (biases too, as in
    Distiller).
    """
    if not isinstance(targets, Mapping) or not targets:
        raise ArgumentError(key, f"expected a mapping of weight names to values, got {targets!r}")
    out: Dict[str, Any] = {}
    exact = [k for k in targets if k != "*" and not (k.startswith("re:") or set("*?[") & set(k))]
    patterns = [k for k in targets if k != "*" and k not in exact]
    for k in patterns[::-1] + exact:  # later assignments win: exact names last; first pattern beats later ones
        try:
            for name in index.resolve(k):
                out[name] = targets[k]
        except LookupError as exc:
            raise ArgumentError(f"{key}.{k}", str(exc)) from None
    if "*" in targets:
        for name in index.params:
            out.setdefault(name, targets["*"])
    return {n: out[n] for n in index.params if n in out}


def as_list(weights: WeightSpec) -> List[str]:
    if weights is None:
        return []
    if isinstance(weights, str):
        return [weights]
    if not isinstance(weights, (list, tuple)):
        raise ArgumentError("weights", f"expected a list of weight names or patterns, got {weights!r}")
    return list(weights)


class Pruner(abc.ABC):
    """Base class of all pruners.

    Subclasses implement :meth:`compute_masks`. A pruner keeps no tensors of its own unless its
    algorithm needs them, and returns any such state from :meth:`state_dict`.

    Args:
        name: the instance name (the schedule's key).
        weights: names or patterns of the weights it prunes; resolved by :meth:`bind`.
    """

    #: True when the pruner wants to be asked at every minibatch of its active epochs.
    prunes_every_minibatch: bool = False

    def __init__(self, name: str, weights: WeightSpec = None):
        self.name = name
        self.weight_patterns = as_list(weights)
        self.weights: List[str] = []

    def bind(self, index: ParameterIndex) -> None:
        """Resolve weight names against a model; raises ``ArgumentError`` naming what did not match."""
        if not self.weight_patterns:
            raise ArgumentError("weights", "lists no weights")
        self.weights = resolve_weights(index, self.weight_patterns)

    @abc.abstractmethod
    def compute_masks(self, params: Mapping[str, torch.Tensor], current: Mapping[str, Optional[torch.Tensor]],
                      step: PruningStep) -> Dict[str, torch.Tensor]:
        """New keep-masks (bool, shaped like the weight) for some or all of :attr:`weights`.

        Args:
            params: canonical name → parameter, for this pruner's weights.
            current: canonical name → the mask in force now (``None`` if unmasked).
            step: the training position.
        """

    def state_dict(self) -> Dict[str, Any]:
        """State a resume needs (empty for pruners that are functions of the weights and the epoch)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, weights={self.weights or self.weight_patterns})"


class FixedStructurePruner(Pruner):
    """A pruner whose masks are a structure fixed by the weight shapes, computed once in :meth:`bind`.

    Subclasses fill :attr:`structures` (each with a ``num_parameters``) and ``_masks`` (name → bool mask) in
    ``bind``; every call of :meth:`compute_masks` returns those masks, moved to the weights' device.
    """

    def __init__(self, name: str, weights: WeightSpec = None):
        super().__init__(name, weights)
        #: the structure behind the masks, keyed by weight (or layer) name
        self.structures: Dict[str, Any] = {}
        self._masks: Dict[str, torch.Tensor] = {}

    @property
    def num_parameters(self) -> int:
        """Trainable parameters the structures keep (see each structure's ``num_parameters``)."""
        return sum(s.num_parameters for s in self.structures.values())

    def compute_masks(self, params: Mapping[str, torch.Tensor], current: Mapping[str, Optional[torch.Tensor]],
                      step: PruningStep) -> Dict[str, torch.Tensor]:
        for name, mask in self._masks.items():
            if mask.device != params[name].device:
                self._masks[name] = mask.to(params[name].device)
        return {name: mask.clone() for name, mask in self._masks.items()}
