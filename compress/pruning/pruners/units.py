"""Hidden-unit pruning (ISS, Wen et al., ICLR 2018): remove whole units of recurrent layers, by group norm.

A unit's group is every weight that exists because of it (:mod:`compress.structured.units`); removing it masks
all of them at once, so the masked model is exactly a smaller one and :func:`compress.thin` can build it.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import nn

from compress import options
from compress.context import HookContext
from compress.errors import ArgumentError
from compress.pruning.base import Pruner
from compress.pruning.criteria.units import weakest_units
from compress.pruning.ramps import agp_sparsity, agp_sparsity_per_step
from compress.registry import register_pruner
from compress.sparsity.names import ParameterIndex
from compress.structured.units import UnitLayer, layer_values, unit_groups

log = logging.getLogger(__name__)


def _units(key: Any, value: Any) -> int:
    n = options.integer(key, value)
    if n < 1:
        raise ArgumentError(key, f"a unit pruner at {n} units would empty the layer; keep at least 1")
    return n


@register_pruner
class UnitPruner(Pruner):
    """Remove the weakest hidden units of recurrent layers, on an AGP ramp of the unit count or by ISS's threshold.

    At each pruning step (the policy's epochs; every minibatch with ``ramp: minibatch``) each layer removes
    ``n_t`` units, the ones whose groups have the smallest L2 norm: ``n_t`` follows Zhu & Gupta's cubic from
    ``initial_sparsity · H`` at the first scheduled epoch to the final count at the last, Distiller's AGP formula
    applied to unit counts (rounded down). With a ``threshold`` every unit whose weights are all at most
    ``threshold`` in magnitude goes too: ISS's rule (after its lasso and zero-out at 1e-4, a unit is gone when its
    weights are all zero), so the hidden sizes are *learned*. Removed units stay removed (their weights are 0, so
    they rank first); a layer always keeps at least one unit. Every tensor of a removed unit's group is masked,
    biases included, through the mask store: exact zeros after every step, resumable, identical on every rank of a
    distributed run (norms of identical weights, ties to the lower index). The mask is combined with the mask
    already on a tensor (another pruner's zeros are kept).

    Args:
        name: instance name.
        model: the model (injected by the schedule loader).
        layers: recurrent module names or globs over module names (every layer of each).
        consumers: ``{producer module: [weights that read its output]}``, see
            :func:`~compress.structured.units.unit_groups` (a tied decoder needs its embedding's entry too).
        final_sparsity: share of each layer's units removed from the last scheduled epoch on, in [0, 1): one
            number, or ``{module: number or [number per layer]}`` (layers left out: none by the ramp).
        final_units: instead, the hidden size to reach: ``{module: size or [size per layer]}`` or one size;
            at least 1 (0 units is an error: the layer would be gone).
        initial_sparsity: share removed at the first scheduled epoch (one number, or per module/layer as above).
        threshold: remove every unit whose group weights are all ``<= threshold`` in magnitude (ISS's rule; with
            :class:`~compress.pruning.regularizers.UnitGroupLassoRegularizer`'s zero-out at 1e-4, use 1e-4).
        ramp: ``'epoch'`` (the count changes at scheduled epochs) or ``'minibatch'`` (every minibatch).

    Raises:
        ArgumentError: a bad layer or consumer; both ``final_sparsity`` and ``final_units``; a count that would
            leave no unit, or more units than a layer has; a pruner that would never remove a unit.

    Example:
        >>> from torch import nn
        >>> model = nn.ModuleDict({"rnn": nn.LSTM(3, 4), "decoder": nn.Linear(4, 6)})
        >>> pruner = UnitPruner("units", model, ["rnn"], {"rnn": ["decoder.weight"]}, final_units=1)
        >>> pruner.targets
        {'rnn[0]': 3}
        >>> UnitPruner("units", model, ["rnn"], {"rnn": ["decoder.weight"]}, final_units=0)
        Traceback (most recent call last):
        ...
        compress.errors.ArgumentError: final_units: a unit pruner at 0 units would empty the layer; keep at least 1
    """

    def __init__(self, name: str, model: nn.Module, layers: Any, consumers: Optional[Mapping[str, Any]] = None,
                 final_sparsity: Any = None, final_units: Any = None, initial_sparsity: Any = 0.0,
                 threshold: Optional[float] = None, ramp: str = "epoch"):
        super().__init__(options.name("name", name))
        self.model = model
        self.layers = options.names("layers", layers)
        self.consumers = dict(options.mapping("consumers", consumers or {}, allow_empty=True))
        if final_sparsity is not None and final_units is not None:
            raise ArgumentError("final_units", "give final_sparsity or final_units, not both")
        self.final_sparsity, self.final_units, self.initial_sparsity = final_sparsity, final_units, initial_sparsity
        self.threshold = options.optional(options.number, "threshold", threshold, minimum=0.0)
        self.ramp = options.choice("ramp", ramp, ("epoch", "minibatch"))
        self.prunes_every_minibatch = self.ramp == "minibatch"
        self.bind(ParameterIndex(model))
        if self.threshold is None and not any(self.targets.values()):
            raise ArgumentError("final_sparsity", "this pruner would never remove a unit: give final_sparsity > 0, "
                                                  "final_units below a layer's size, or a threshold")

    def bind(self, index: ParameterIndex) -> None:
        """Find the groups against the scheduler's parameter names and work out each layer's unit counts."""
        self.groups: List[UnitLayer] = unit_groups(self.model, self.layers, self.consumers, index)
        initial = layer_values("initial_sparsity", self.initial_sparsity, self.groups, options.fraction, 0.0)
        if self.final_units is not None:
            sizes = layer_values("final_units", self.final_units, self.groups, _units)
            final = []
            for g, size in zip(self.groups, sizes):
                if size is not None and size > g.hidden_size:
                    raise ArgumentError(("final_units", g.module), f"{g.key} has {g.hidden_size} units; cannot keep "
                                                                   f"{size}")
                final.append(0 if size is None else g.hidden_size - size)
        else:
            shares = layer_values("final_sparsity", self.final_sparsity, self.groups, options.fraction, 0.0)
            final = [math.floor(g.hidden_size * s) for g, s in zip(self.groups, shares)]
        self.counts = []
        for g, share, n_final in zip(self.groups, initial, final):
            n_initial = math.floor(g.hidden_size * share)
            if n_initial > n_final:
                raise ArgumentError("initial_sparsity", f"{g.key}: removes {n_initial} units at the start, more "
                                                        f"than the final {n_final}")
            self.counts.append((n_initial, n_final))
        self.weights = list(dict.fromkeys(p.name for g in self.groups for p in g.parts))

    @property
    def targets(self) -> Dict[str, int]:
        """Units each layer removes by the end of the ramp (``{'rnn[0]': 1127, ...}``; a threshold may add more)."""
        return {g.key: n_final for g, (_, n_final) in zip(self.groups, self.counts)}

    def count(self, layer: int, step: HookContext) -> int:
        """Units layer ``layer`` (its position in :attr:`groups`) removes at ``step`` by the ramp."""
        n_initial, n_final = self.counts[layer]
        if n_final == 0 or step.timing is None:
            return n_final
        if self.ramp == "minibatch" and step.minibatches_per_epoch:
            value = agp_sparsity_per_step(n_initial, n_final, step.epoch, step.minibatch_id,
                                          step.minibatches_per_epoch, step.timing)
        else:
            value = agp_sparsity(n_initial, n_final, step.epoch, step.timing)
        return math.floor(value + 1e-9)

    @torch.no_grad()
    def compute_masks(self, params: Mapping[str, torch.Tensor], current: Mapping[str, Optional[torch.Tensor]],
                      step: HookContext) -> Dict[str, torch.Tensor]:
        masks: Dict[str, torch.Tensor] = {}
        for name in self.weights:
            mask = current.get(name)
            masks[name] = (torch.ones_like(params[name], dtype=torch.bool) if mask is None
                           else mask.to(params[name].device, torch.bool).clone())
        for i, group in enumerate(self.groups):
            below = group.max_abs(params) <= self.threshold if self.threshold is not None else None
            keep = weakest_units(group.squared_norms(params), self.count(i, step), below=below,
                                 removed=group.removed(current))
            if below is not None and int(keep.sum()) == 1 and int(below.sum()) == group.hidden_size:
                log.warning("%s: every unit of %s is under the threshold %g; keeping the strongest one", self.name,
                            group.key, self.threshold)
            group.apply_keep(keep, masks)
            log.debug("%s: %s keeps %d of %d units", self.name, group.key, int(keep.sum()), group.hidden_size)
        return masks

    def hidden_sizes(self, masks: Mapping[str, Optional[torch.Tensor]]) -> Dict[str, int]:
        """``{layer key: units not removed}`` under ``masks`` (e.g. the scheduler's mask store)."""
        return {g.key: g.hidden_size - int(g.removed(masks).sum()) for g in self.groups}
