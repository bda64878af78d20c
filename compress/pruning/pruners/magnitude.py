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

    Raises:
        ArgumentError: ``thresholds`` is empty, or a threshold is negative or not a number.

    Example:
        >>> import compress
        >>> model = torch.nn.Linear(4, 1)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[0.1, -0.8, 0.3, -0.05]]))
        ...     _ = model.bias.fill_(0.2)
        >>> schedule = {"pruners": {"mag": {"class": "MagnitudeParameterPruner", "thresholds": {"*": 0.25}}},
        ...             "policies": [{"pruner": {"instance_name": "mag"}, "epochs": [0]}]}
        >>> compress.dict_config(model, None, schedule).on_epoch_begin(0)
        >>> (model.weight != 0).tolist(), model.bias.item()   # '*' reaches the bias too
        ([[False, True, True, False]], 0.0)
    """

    targets_key = "thresholds"

    def __init__(self, name: str, thresholds: Mapping[str, float]):
        super().__init__(name)
        options.mapping("thresholds", thresholds)
        self.thresholds = {k: options.number(("thresholds", k), v, minimum=0) for k, v in thresholds.items()}
        self.targets: Dict[str, float] = {}

    def compute_masks(self, params, current, step: HookContext) -> Dict[str, torch.Tensor]:
        return {n: params[n].detach().abs() > self.targets[n] for n in self.weights}
