"""Magnitude (threshold) pruning: prune every weight whose magnitude is at or below a fixed threshold."""
from __future__ import annotations

from typing import Dict, Mapping

import torch

from compress import options
from compress.context import HookContext
from compress.pruning.base import PerWeightPruner
from compress.registry import register_pruner


@register_pruner
class MagnitudeParameterPruner(PerWeightPruner):
    """Keep weights with ``|w| > threshold``; the sparsity is whatever the threshold gives.

    Args:
        name: instance name.
        thresholds: ``{weight name or pattern: threshold, '*': default}``. As in Distiller, ``'*'`` covers
            every parameter, biases included.
    """

    targets_key = "thresholds"

    def __init__(self, name: str, thresholds: Mapping[str, float]):
        super().__init__(name)
        options.mapping("thresholds", thresholds)
        self.thresholds = {k: options.number(("thresholds", k), v, minimum=0) for k, v in thresholds.items()}
        self.targets: Dict[str, float] = {}

    def compute_masks(self, params, current, step: HookContext) -> Dict[str, torch.Tensor]:
        return {n: params[n].detach().abs() > self.targets[n] for n in self.weights}
