"""Automated Gradual Pruning (Zhu & Gupta, 2017): sparsity ramps up along a cubic from initial to final."""
from __future__ import annotations

from typing import Dict

import torch

from compress import options
from compress.context import HookContext
from compress.errors import ArgumentError
from compress.pruning.base import Pruner, WeightSpec
from compress.pruning.criteria.magnitude import global_level_masks, level_mask
from compress.pruning.ramps import agp_sparsity, agp_sparsity_per_step
from compress.registry import register_pruner


@register_pruner
class AutomatedGradualPruner(Pruner):
    """AGP, exactly as Distiller computes it, plus two opt-in additions.

    By default the target is set once per scheduled epoch,
    ``s_t = s_f + (s_i - s_f)(1 - (t - first)/span)^3`` with ``span`` the distance from the first to the last
    scheduled epoch (``((end - start - 1) // freq) * freq`` for the range form), and each listed tensor is pruned
    to ``s_t`` on its own by magnitude (top-k, ties pruned, as in Distiller). ``initial_sparsity: 0`` and the
    ``epochs: [...]`` policy form work too (``docs/distiller-compat.md``).

    Args:
        name: instance name.
        initial_sparsity: target in the first scheduled epoch, in [0, 1).
        final_sparsity: target from the last scheduled epoch on, in [initial_sparsity, 1).
        weights: names or patterns of the weights to prune.
        ramp: ``"epoch"`` (Distiller) or ``"minibatch"``: the target follows the cubic minibatch by minibatch
            (Zhu & Gupta's original), agreeing with the per-epoch target at every scheduled epoch's start.
        budget: ``"per_tensor"`` (Distiller) or ``"global"``: one magnitude threshold across all listed weights,
            so the listed weights *together* reach ``s_t`` and the small ones are not forced to the same level.

    Raises:
        ArgumentError: a sparsity outside [0, 1), ``final_sparsity < initial_sparsity``, or an unknown ``ramp``
            or ``budget``.

    Example:
        >>> import compress
        >>> model = torch.nn.Linear(10, 10, bias=False)
        >>> schedule = {"pruners": {"agp": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.25,
        ...                                 "final_sparsity": 0.75, "weights": ["weight"]}},
        ...             "policies": [{"pruner": {"instance_name": "agp"}, "starting_epoch": 0, "ending_epoch": 4}]}
        >>> scheduler = compress.dict_config(model, None, schedule)
        >>> zeros = []
        >>> for epoch in range(5):
        ...     scheduler.on_epoch_begin(epoch)
        ...     zeros.append(int((model.weight == 0).sum()))
        >>> zeros                                        # s_t = 0.75 - 0.5 (1 - t/3)^3 of the 100 weights
        [25, 60, 73, 75, 75]
    """

    def __init__(self, name: str, initial_sparsity: float, final_sparsity: float, weights: WeightSpec,
                 ramp: str = "epoch", budget: str = "per_tensor"):
        super().__init__(name, weights)
        self.initial_sparsity = options.fraction("initial_sparsity", initial_sparsity)
        self.final_sparsity = options.fraction("final_sparsity", final_sparsity)
        if self.final_sparsity < self.initial_sparsity:
            raise ArgumentError("final_sparsity", f"must be >= initial_sparsity ({self.initial_sparsity}), "
                                                  f"got {self.final_sparsity}")
        self.ramp = options.choice("ramp", ramp, ("epoch", "minibatch"))
        self.budget = options.choice("budget", budget, ("per_tensor", "global"))
        self.prunes_every_minibatch = ramp == "minibatch"

    def target(self, step: HookContext) -> float:
        """The sparsity this pruner aims at, at ``step``."""
        if self.ramp == "minibatch" and step.minibatches_per_epoch:
            return agp_sparsity_per_step(self.initial_sparsity, self.final_sparsity, step.epoch, step.minibatch_id,
                                         step.minibatches_per_epoch, step.timing)
        return agp_sparsity(self.initial_sparsity, self.final_sparsity, step.epoch, step.timing)

    def compute_masks(self, params, current, step: HookContext) -> Dict[str, torch.Tensor]:
        sparsity = self.target(step)
        if self.budget == "global":
            masks = global_level_masks([params[n].detach() for n in self.weights], sparsity)
            return dict(zip(self.weights, masks))
        return {n: level_mask(params[n].detach(), sparsity) for n in self.weights}
