"""Narang et al. (2017), "Exploring Sparsity in Recurrent Neural Networks": a monotone threshold ramp."""
from __future__ import annotations

from typing import Dict

import torch

from compress import options
from compress.context import HookContext, Timing
from compress.errors import ArgumentError
from compress.pruning.base import Pruner, Target, WeightSpec
from compress.pruning.ramps import baidu_threshold
from compress.registry import register_pruner


@register_pruner
class BaiduRNNPruner(Pruner):
    """Keep weights with ``|w| > eps(t)``, where ``eps`` ramps up linearly with a steeper second slope.

    The ramp is :func:`compress.pruning.ramps.baidu_threshold`, per epoch as in Distiller (the paper ramps per
    iteration). ``q`` is the 90th-percentile ``|w|`` of the trained dense model.

    Args:
        name: instance name.
        q: the threshold scale (90th-percentile magnitude of a trained model).
        ramp_epoch_offset: epochs after the policy's start at which the slope steepens.
        ramp_slope_mult: how much steeper the second slope is.
        weights: names or patterns of the weights to prune.

    Raises:
        ArgumentError: ``q`` or ``ramp_slope_mult`` negative, ``ramp_epoch_offset`` not an integer ``>= 0``.

    Example:
        >>> from compress.context import HookContext, Timing
        >>> pruner = BaiduRNNPruner("baidu", q=0.5, ramp_epoch_offset=2, ramp_slope_mult=2.0, weights=["w"])
        >>> timing = Timing(starting_epoch=0, ending_epoch=4)
        >>> [round(pruner.threshold(HookContext(epoch=e, timing=timing)), 3) for e in range(4)]
        [0.1, 0.2, 0.5, 0.7]
    """

    gate_selectors = True

    def __init__(self, name: str, q: float, ramp_epoch_offset: int, ramp_slope_mult: float, weights: WeightSpec):
        super().__init__(name, weights)
        self.q = options.number("q", q, minimum=0)
        self.ramp_epoch_offset = options.integer("ramp_epoch_offset", ramp_epoch_offset, minimum=0)
        self.ramp_slope_mult = options.number("ramp_slope_mult", ramp_slope_mult, minimum=0)

    def check_timing(self, timing: Timing) -> None:
        try:
            baidu_threshold(self.q, self.ramp_epoch_offset, self.ramp_slope_mult, timing.first, timing)
        except ValueError as exc:
            raise ArgumentError("ramp_epoch_offset", str(exc)) from None

    def threshold(self, step: HookContext) -> float:
        return baidu_threshold(self.q, self.ramp_epoch_offset, self.ramp_slope_mult, step.epoch, step.timing)

    def planned(self, weight: str, step: HookContext) -> Target:
        return Target("threshold", self.threshold(step))

    def compute_masks(self, params, current, step: HookContext) -> Dict[str, torch.Tensor]:
        eps = self.threshold(step)
        return {n: params[n].detach().abs() > eps for n in self.weights}
