"""Regularizers: loss terms that push weights (or groups of weights) toward zero during training."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import torch
from torch import nn

from compress import options
from compress.errors import ArgumentError
from compress.pruning.base import Exclude, empty, excluding, frozen, resolve_targets
from compress.registry import register_regularizer
from compress.sparsity.names import ParameterIndex

GROUP_TYPES = ("Rows", "Cols", "Rows+Cols")
THRESHOLD_CRITERIA = (None, "Max", "Mean_Abs")


def _group_norms(w: torch.Tensor, group_type: str) -> list:
    """L2 norms of the groups of a 2-D weight: rows (dim 0 slices) and/or columns (dim 1 slices)."""
    w2 = w.reshape(w.shape[0], -1)
    out = []
    if group_type in ("Rows", "Rows+Cols"):
        out.append(("Rows", w2.norm(dim=1)))
    if group_type in ("Cols", "Rows+Cols"):
        out.append(("Cols", w2.norm(dim=0)))
    return out


def _groupable(param: torch.Tensor) -> Optional[str]:
    return "has no rows or columns to group (0 dimensions)" if param.dim() == 0 else None


class _Regularizer:
    #: what the regularizer cannot use: it acts through gradients; ``'*'`` and patterns skip such parameters
    exclude: Exclude = staticmethod(frozen)

    def __init__(self, name: str, reg_regims: Mapping[str, Any], threshold_criteria: Optional[str]):
        options.choice("threshold_criteria", threshold_criteria, THRESHOLD_CRITERIA)
        options.mapping("reg_regims", reg_regims)
        self.name = name
        self.reg_regims = dict(reg_regims)
        self.threshold_criteria = threshold_criteria
        self.targets: Dict[str, Any] = {}
        self.weights: list = []

    def bind(self, index: ParameterIndex) -> None:
        self.targets = resolve_targets(index, self.reg_regims, "reg_regims", exclude=self.exclude)
        self.weights = list(self.targets)


@register_regularizer
class L1Regularizer(_Regularizer):
    """``strength * sum|W|`` per weight; with a ``threshold_criteria``, weights with ``|w| <= strength`` are zeroed.

    Args:
        name: instance name.
        model: injected by the loader (unused; weights are bound by name).
        reg_regims: ``{weight name or pattern: strength}``.
        threshold_criteria: ``None`` or any criterion: element-wise thresholding at the strength.
    """

    def __init__(self, name: str, model: nn.Module, reg_regims: Mapping[str, float],
                 threshold_criteria: Optional[str] = None):
        super().__init__(name, reg_regims, threshold_criteria)
        for k, v in self.reg_regims.items():
            options.number(("reg_regims", k), v, minimum=0)

    def loss(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        terms = [self.targets[n] * params[n].abs().sum() for n in self.weights]
        return torch.stack(terms).sum() if terms else torch.zeros(())

    def threshold_masks(self, params: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {n: params[n].detach().abs() > self.targets[n] for n in self.weights}


@register_regularizer
class GroupLassoRegularizer(_Regularizer):
    """Group lasso: ``strength * sum_g ||g||_2`` over rows, columns or both of each 2-D weight.

    Args:
        name: instance name.
        model: injected by the loader (unused).
        reg_regims: ``{weight name or pattern: [strength, group_type]}``, group_type in Rows, Cols, Rows+Cols
            (rows are slices along dim 0 — output units; columns along dim 1 — inputs).
        threshold_criteria: ``None``, ``Max`` or ``Mean_Abs``: zero groups whose max or mean ``|w|`` is at most
            the strength.
    """

    exclude: Exclude = staticmethod(excluding(frozen, empty, _groupable))

    def __init__(self, name: str, model: nn.Module, reg_regims: Mapping[str, Any],
                 threshold_criteria: Optional[str] = None):
        super().__init__(name, reg_regims, threshold_criteria)
        for k, v in self.reg_regims.items():
            if not (isinstance(v, (list, tuple)) and len(v) == 2 and v[1] in GROUP_TYPES):
                raise ArgumentError(("reg_regims", k), f"expected [strength, group type in {GROUP_TYPES}], got {v!r}")
            options.number(("reg_regims", k, 0), v[0], minimum=0)

    def loss(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        terms = []
        for n in self.weights:
            strength, group_type = self.targets[n]
            for _, norms in _group_norms(params[n], group_type):
                terms.append(strength * norms.sum())
        return torch.stack(terms).sum() if terms else torch.zeros(())

    def threshold_masks(self, params: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        masks = {}
        for n in self.weights:
            strength, group_type = self.targets[n]
            w = params[n].detach()
            w2 = w.abs().reshape(w.shape[0], -1)
            keep = torch.ones_like(w2, dtype=torch.bool)
            reduce = (lambda x, d: x.amax(dim=d)) if self.threshold_criteria == "Max" else (lambda x, d: x.mean(dim=d))
            if group_type in ("Rows", "Rows+Cols"):
                keep &= (reduce(w2, 1) > strength)[:, None]
            if group_type in ("Cols", "Rows+Cols"):
                keep &= (reduce(w2, 0) > strength)[None, :]
            masks[n] = keep.reshape(w.shape)
        return masks
