"""Magnitude (threshold) pruning: prune every weight whose magnitude is at or below a fixed threshold."""
from __future__ import annotations

from typing import Dict, Mapping

import torch

from compress import options
from compress.context import HookContext
from compress.pruning.base import Pruner, resolve_targets
from compress.registry import register_pruner
from compress.sparsity.names import ParameterIndex


@register_pruner
class MagnitudeParameterPruner(Pruner):
    """Keep weights with ``|w| > threshold``; the sparsity is whatever the threshold gives.

    Args:
        name: instance name.
        thresholds: ``{weight name or pattern: threshold, '*': default}``. As in Distiller, ``'*'`` covers
            every parameter, biases included.
    """

    def __init__(self, name: str, thresholds: Mapping[str, float]):
        super().__init__(name)
        options.mapping("thresholds", thresholds)
        self.thresholds = {k: options.number(("thresholds", k), v, minimum=0) for k, v in thresholds.items()}
        self.targets: Dict[str, float] = {}

    def bind(self, index: ParameterIndex) -> None:
        self.targets = resolve_targets(index, self.thresholds, "thresholds")
        self.weights = list(self.targets)

    def compute_masks(self, params, current, step: HookContext) -> Dict[str, torch.Tensor]:
        return {n: params[n].detach().abs() > self.targets[n] for n in self.weights}
