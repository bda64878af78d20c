"""Splicing (Dynamic Network Surgery, Guo et al. 2016): masks that prune and can grow back."""
from __future__ import annotations

from typing import Any, Dict, Mapping

import torch

from compress import options
from compress.context import HookContext
from compress.errors import ArgumentError, describe
from compress.pruning.base import PerWeightPruner
from compress.registry import register_pruner


@register_pruner
class SplicingPruner(PerWeightPruner):
    """Two thresholds around ``mean|w| + s * std|w|``: below the low one a weight is cut, above the high one it
    is spliced back, in between it keeps its current state.

    Mean and std of ``|w|`` are taken once, at the weight's first pruning, and kept in :meth:`state_dict`.
    With ``sensitivity_multiplier > 0``, ``s`` grows by that factor per epoch since the policy's first epoch.
    Use it with the policy args ``mask_on_forward_only: true`` and ``use_double_copies: true`` so pruned
    weights keep learning and can return (Distiller's network-surgery schedules).

    Args:
        name: instance name.
        sensitivities: ``{weight name or pattern: s, '*': default}``.
        low_thresh_mult: factor giving the pruning threshold.
        hi_thresh_mult: factor giving the splicing threshold (>= ``low_thresh_mult``).
        sensitivity_multiplier: per-epoch growth of ``s`` (0: constant).

    Raises:
        ArgumentError: ``sensitivities`` is empty or not numbers, a multiplier is negative, or
            ``hi_thresh_mult < low_thresh_mult``.

    Example:
        >>> from compress.context import HookContext, Timing
        >>> from compress.sparsity import ParameterIndex
        >>> layer = torch.nn.Linear(4, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.tensor([[0.1, 0.5, 1.0, 2.0]]))   # mean |w| = 0.9
        >>> pruner = SplicingPruner("splice", {"weight": 0.0}, low_thresh_mult=0.5, hi_thresh_mult=1.0)
        >>> pruner.bind(ParameterIndex(layer))
        >>> ctx = HookContext(epoch=0, timing=Timing(epochs=[0]))
        >>> for before in ([[True, True, True, True]], [[True, False, False, True]]):
        ...     mask = pruner.compute_masks({"weight": layer.weight}, {"weight": torch.tensor(before)}, ctx)
        ...     print(mask["weight"].tolist())           # cut below 0.45, spliced from 0.9, 0.5 keeps its state
        [[False, True, True, True]]
        [[False, False, True, True]]
    """

    gate_selectors = True

    targets_key = "sensitivities"

    def __init__(self, name: str, sensitivities: Mapping[str, float], low_thresh_mult: float,
                 hi_thresh_mult: float, sensitivity_multiplier: float = 0):
        super().__init__(name)
        options.mapping("sensitivities", sensitivities)
        self.sensitivities = {k: options.number(("sensitivities", k), v) for k, v in sensitivities.items()}
        self.low_thresh_mult = options.number("low_thresh_mult", low_thresh_mult, minimum=0)
        self.hi_thresh_mult = options.number("hi_thresh_mult", hi_thresh_mult, minimum=0)
        if self.hi_thresh_mult < self.low_thresh_mult:
            raise ArgumentError("hi_thresh_mult", f"must be >= low_thresh_mult ({self.low_thresh_mult}), "
                                                  f"got {self.hi_thresh_mult}")
        self.sensitivity_multiplier = options.number("sensitivity_multiplier", sensitivity_multiplier, minimum=0)
        self.targets: Dict[str, float] = {}
        self.stats: Dict[str, tuple] = {}

    def compute_masks(self, params, current, step: HookContext) -> Dict[str, torch.Tensor]:
        masks = {}
        for n in self.weights:
            magnitude = params[n].detach().abs()
            if n not in self.stats:
                m = magnitude.float()
                self.stats[n] = (float(m.mean()), float(m.std()) if m.numel() > 1 else 0.0)
            mean, std = self.stats[n]
            s = self.targets[n]
            if self.sensitivity_multiplier > 0:
                s *= (step.epoch - step.timing.first) * self.sensitivity_multiplier + 1
            low = (mean + std * s) * self.low_thresh_mult
            high = (mean + std * s) * self.hi_thresh_mult
            previous = current.get(n)
            keep = torch.ones_like(magnitude, dtype=torch.bool) if previous is None else previous.clone()
            keep[magnitude < low] = False
            keep[magnitude >= high] = True
            masks[n] = keep
        return masks

    def state_dict(self) -> Dict[str, Any]:
        return {"stats": {n: list(v) for n, v in self.stats.items()}}

    def check_state(self, state: Any) -> None:
        def mean_and_std(key, value):
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise ArgumentError(key, f"expected [mean, std], got {describe(value)}")
            options.number(key + (0,), value[0], minimum=0)
            options.number(key + (1,), value[1], minimum=0)

        options.fields((), state, ["stats"])
        self.check_per_weight("stats", state.get("stats", {}), mean_and_std)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        self.stats = {n: (float(v[0]), float(v[1])) for n, v in state.get("stats", {}).items()}
