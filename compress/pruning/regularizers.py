"""Regularizers: loss terms that push weights (or groups of weights) toward zero during training."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import nn

from compress import options
from compress.errors import ArgumentError
from compress.pruning.base import Exclude, empty, excluding, frozen, resolve_targets
from compress.registry import register_regularizer
from compress.sparsity.names import ParameterIndex
from compress.structured.units import EPS, UnitLayer, layer_values, unit_groups

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

    Raises:
        ArgumentError: ``reg_regims`` is empty or a strength is negative, or an unknown ``threshold_criteria``.

    Example:
        >>> layer = nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.tensor([[0.05, -2.0], [0.0, 0.1]]))
        >>> l1 = L1Regularizer("l1", layer, {"weight": 0.1}, threshold_criteria="Mean_Abs")
        >>> l1.bind(ParameterIndex(layer))
        >>> params = {"weight": layer.weight}
        >>> round(l1.loss(params).item(), 4), l1.threshold_masks(params)["weight"].tolist()   # 0.1 * 2.15
        (0.215, [[False, True], [False, False]])
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

    Raises:
        ArgumentError: an entry of ``reg_regims`` that is not ``[strength >= 0, group type]``, or an unknown
            ``threshold_criteria``.

    Example:
        >>> layer = nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.tensor([[3.0, -4.0], [0.0, 0.1]]))
        >>> lasso = GroupLassoRegularizer("rows", layer, {"weight": [0.5, "Rows"]}, threshold_criteria="Max")
        >>> lasso.bind(ParameterIndex(layer))
        >>> params = {"weight": layer.weight}
        >>> round(lasso.loss(params).item(), 4)          # 0.5 * (||(3, -4)|| + ||(0, 0.1)||)
        2.55
        >>> lasso.threshold_masks(params)["weight"].tolist()   # row 1's largest |w| is below 0.5
        [[True, True], [False, False]]
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


#: ISS's group-lasso strength λ (``global_decay`` of structure_grouplasso.json, learning ISS from scratch) ...
ISS_GLOBAL_DECAY = 0.00245
#: ... for a loss summed over the 35 steps of a sequence (TensorFlow's PTB tutorial: ``reduce_sum(loss) / batch``)
ISS_STEPS = 35
#: ISS's λ for the per-token mean loss that PyTorch loops (and ``compress_models.training``) minimise: the same
#: ratio of lasso gradient to data gradient.
ISS_STRENGTH = ISS_GLOBAL_DECAY / ISS_STEPS
#: ISS zeroes every weight below this magnitude after each iteration (``zero_threshold`` of ptb_word_lm.py)
ISS_ZERO_THRESHOLD = 1e-4


@register_regularizer
class UnitGroupLassoRegularizer:
    """ISS's group lasso over hidden-unit groups (Wen et al., ICLR 2018): pushes whole units to zero.

    The loss is ``Σ_layers strength_l · Σ_j sqrt(||w_j||² + 1e-8)``, where ``w_j`` are the weights of unit ``j``'s
    group (:mod:`compress.structured.units`: its gate rows, its recurrent column and its columns in whatever reads
    the layer's output; biases are left out, as in ISS). With ``zero_threshold`` every weight of the groups
    smaller in magnitude is set to 0 after each optimizer step, ISS's "zerout by small threshold to stablize the
    sparsity"; units whose weights all reach 0 this way are what a :class:`~compress.pruning.UnitPruner` with a
    ``threshold`` then removes for good.

    Args:
        name: instance name.
        model: the model (injected by the schedule loader).
        layers: recurrent module names or globs over module names.
        consumers: ``{producer module: [weights that read its output]}`` (see
            :func:`~compress.structured.units.unit_groups`; a tied decoder needs its embedding's entry too).
        strength: λ, one number for every layer or ``{module: number or [number per layer]}``. Default
            :data:`ISS_STRENGTH` = 0.00245 / 35: ISS's λ rescaled to the per-token *mean* loss of PyTorch loops
            (ISS's loss was summed over 35 steps). Layers a mapping leaves out get the default.
        zero_threshold: weights of the groups with ``|w| < zero_threshold`` are zeroed after every step (ISS:
            1e-4; 0 turns it off).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.ModuleDict({"rnn": nn.LSTM(3, 4), "decoder": nn.Linear(4, 6)})
        >>> lasso = UnitGroupLassoRegularizer("iss", model, ["rnn"], {"rnn": ["decoder.weight"]}, strength=0.1)
        >>> loss = lasso.loss(dict(model.named_parameters()))
        >>> loss.backward()
        >>> model.rnn.bias_ih_l0.grad is None             # biases are not in the groups' norms
        True
    """

    def __init__(self, name: str, model: nn.Module, layers: Any, consumers: Optional[Mapping[str, Any]] = None,
                 strength: Any = ISS_STRENGTH, zero_threshold: float = ISS_ZERO_THRESHOLD):
        self.name = options.name("name", name)
        self.model = model
        self.layers = options.names("layers", layers)
        self.consumers = dict(options.mapping("consumers", consumers or {}, allow_empty=True))
        self.strength = strength
        self.zero_threshold = options.number("zero_threshold", zero_threshold, minimum=0.0)
        self.bind(ParameterIndex(model))

    def bind(self, index: ParameterIndex) -> None:
        """Find the groups (again) against the scheduler's names of the model's parameters."""
        self.groups: List[UnitLayer] = unit_groups(self.model, self.layers, self.consumers, index)
        self.strengths: List[float] = layer_values(
            "strength", self.strength, self.groups, lambda k, v: options.number(k, v, minimum=0.0), ISS_STRENGTH)
        self.weights: List[str] = list(dict.fromkeys(p.name for g in self.groups for p in g.parts
                                                     if p.role != "bias"))

    @property
    def threshold_criteria(self) -> Optional[str]:
        """``'Abs'`` while ``zero_threshold`` is on: the regularization policy then zeroes small weights each step."""
        return "Abs" if self.zero_threshold > 0 else None

    def loss(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The group-lasso term (a scalar tensor, differentiable) of ``params`` (canonical name → tensor)."""
        terms = [s * g.norms(params, EPS).sum() for g, s in zip(self.groups, self.strengths) if s > 0]
        if not terms:
            return torch.zeros(())
        return torch.stack(terms).sum()

    def threshold_masks(self, params: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Keep-masks ``|w| >= zero_threshold`` of the groups' weights (ISS zeroes the smaller ones)."""
        return {n: params[n].detach().abs() >= self.zero_threshold for n in self.weights}

    def unit_norms(self, params: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``{layer key: (H,) group norms}`` (``rnn[0]``: ...), for logging how the lasso is doing."""
        with torch.no_grad():
            return {g.key: g.norms(params) for g in self.groups}
