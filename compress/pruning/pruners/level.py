"""Level pruning: keep the largest-magnitude weights so that each tensor reaches a given sparsity."""
from __future__ import annotations

from typing import Any, Dict, Mapping

import torch

from compress import options
from compress.context import HookContext
from compress.pruning.base import Pruner, resolve_targets
from compress.pruning.criteria.magnitude import level_mask
from compress.registry import register_pruner
from compress.sparsity.names import ParameterIndex


@register_pruner
class SparsityLevelParameterPruner(Pruner):
    """Prune each weight to a fixed sparsity level by magnitude (Distiller's "level pruner").

    ``int(level * numel)`` smallest-magnitude elements are pruned; ties at the threshold are pruned too, so
    the sparsity may slightly overshoot on tied values. A level of 0 leaves the weight alone.

    Args:
        name: instance name.
        levels: ``{weight name or pattern: sparsity, '*': default}``; ``'*'`` covers every parameter.

    Raises:
        ArgumentError: ``levels`` is empty, or a level is outside [0, 1) (naming the entry).

    Example:
        >>> import compress
        >>> model = torch.nn.Linear(4, 2)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[0.1, -0.8, 0.3, 0.5], [-0.2, 0.6, -0.7, 0.4]]))
        >>> schedule = {"pruners": {"level": {"class": "SparsityLevelParameterPruner", "levels": {"weight": 0.5}}},
        ...             "policies": [{"pruner": {"instance_name": "level"}, "epochs": [0]}]}
        >>> compress.dict_config(model, None, schedule).on_epoch_begin(0)
        >>> (model.weight != 0).tolist()                 # the 4 smallest magnitudes are gone
        [[False, True, False, True], [False, True, True, False]]
        >>> bool((model.bias != 0).all())                # the bias is not listed
        True
    """

    def __init__(self, name: str, levels: Mapping[str, float]):
        super().__init__(name)
        self.levels = self.check_levels(levels)
        self.targets: Dict[str, float] = {}

    @staticmethod
    def check_levels(levels: Any, key: str = "levels") -> Dict[str, float]:
        """``levels`` validated: a non-empty mapping of names or patterns to sparsities in [0, 1).

        A policy's ``args: {levels: ...}`` override goes through the same check (Distiller's spelling).

        Raises:
            ArgumentError: naming the offending entry (``levels.rnn.weight_hh_l0``).
        """
        options.mapping(key, levels)
        return {k: options.fraction((key, k), v) for k, v in levels.items()}

    def bind(self, index: ParameterIndex) -> None:
        self.targets = {n: s for n, s in resolve_targets(index, self.levels, "levels").items() if s > 0}
        self.weights = list(self.targets)

    def compute_masks(self, params, current, step: HookContext) -> Dict[str, torch.Tensor]:
        return {n: level_mask(params[n].detach(), self.targets[n]) for n in self.weights}
