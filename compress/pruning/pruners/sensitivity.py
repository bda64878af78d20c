"""Sensitivity pruning (Han et al., 2015): the threshold is a multiple of the weight's standard deviation."""
from __future__ import annotations

from typing import Any, Dict, Mapping

import torch

from compress import options
from compress.context import HookContext
from compress.pruning.base import PerWeightPruner
from compress.registry import register_pruner


@register_pruner
class SensitivityPruner(PerWeightPruner):
    """Keep weights with ``|w| > s * std(w)``, ``std`` taken once, at the weight's first pruning.

    Fixing the threshold at the first pruning event is what makes the method prune more over time: as
    training pulls weights toward zero, the same threshold traps more of them. The cached standard deviations
    are part of :meth:`state_dict`, so a resumed run uses the same thresholds (``docs/distiller-compat.md``).

    Args:
        name: instance name.
        sensitivities: ``{weight name or pattern: s, '*': default}``.

    Raises:
        ArgumentError: ``sensitivities`` is empty, or a value is negative or not a number.

    Example:
        >>> import compress
        >>> model = torch.nn.Linear(4, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[1.0, -2.0, 3.0, -4.0]]))
        >>> schedule = {"pruners": {"sens": {"class": "SensitivityPruner", "sensitivities": {"weight": 1.0}}},
        ...             "policies": [{"pruner": {"instance_name": "sens"}, "epochs": [0, 1]}]}
        >>> scheduler = compress.dict_config(model, None, schedule)
        >>> scheduler.on_epoch_begin(0)                  # std(w) = 3.11: |w| <= 3.11 is cut
        >>> (model.weight != 0).tolist(), round(scheduler.components["pruners"]["sens"].stds["weight"], 2)
        ([[False, False, False, True]], 3.11)
    """

    targets_key = "sensitivities"

    def __init__(self, name: str, sensitivities: Mapping[str, float]):
        super().__init__(name)
        options.mapping("sensitivities", sensitivities)
        self.sensitivities = {k: options.number(("sensitivities", k), v, minimum=0)
                              for k, v in sensitivities.items()}
        self.targets: Dict[str, float] = {}
        self.stds: Dict[str, float] = {}

    def compute_masks(self, params, current, step: HookContext) -> Dict[str, torch.Tensor]:
        masks = {}
        for n in self.weights:
            w = params[n].detach()
            if n not in self.stds:
                self.stds[n] = float(w.float().std()) if w.numel() > 1 else 0.0
            masks[n] = w.abs() > self.targets[n] * self.stds[n]
        return masks

    def state_dict(self) -> Dict[str, Any]:
        return {"stds": dict(self.stds)}

    def check_state(self, state: Any) -> None:
        options.fields((), state, ["stds"])
        self.check_per_weight("stds", state.get("stds", {}), lambda k, v: options.number(k, v, minimum=0))

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        self.stds = {n: float(v) for n, v in state.get("stds", {}).items()}
