"""Parameter groups: which weights share one pruning rate, and the masks a rate per group gives.

SiPO (Li et al., "Stage-Wise Magnitude-Based Pruning for Recurrent Neural Networks", TNNLS 2022) prunes every
group of weights by magnitude at its own rate. How the weights are grouped is the strategy:

* ``all_in_one``: one group, one global rate (magnitude pruning, "MP"; SiPO's ``simple``);
* ``layer_wise``: one group per weight tensor, its bias joined to it (``rnn.weight_ih_l0`` + ``rnn.bias_ih_l0``);
  a whole recurrent layer in one group (SiPO's code's ``layer``) is a ``custom`` grouping;
* ``stage_wise``: the weights that feed recurrent units from the layer below (every ``*_ih`` tensor of every
  recurrent layer) form one group, the recurrent connections (every ``*_hh``, and LSTM projections ``*_hr``)
  another, and every other module (embedding, decoder, attention, ...) is a group of its own, named by its
  module path (SiPO's ``time``);
* ``custom``: named groups of name patterns, ``{ih: ['rnn.*_ih_*'], rest: ['encoder.*', 'decoder.*']}``.

Names are the canonical names of :class:`~compress.sparsity.names.ParameterIndex`, so a tied embedding/decoder is one
tensor and sits in one group (the embedding's, the first name it has). Biases are grouped and prunable, as in
SiPO; leave them out with ``weights``.

Within a group, rate ``x`` prunes exactly ``int(x * n)`` of the group's ``n`` elements, those with the smallest
magnitudes over the whole group (one threshold per group,
:func:`compress.pruning.criteria.magnitude.global_level_masks`); only
ties at the threshold can prune a few more. Rate 0 prunes nothing (``docs/distiller-compat.md``: SiPO's code).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from compress.errors import ArgumentError
from compress.pruning.criteria.magnitude import global_level_masks
from compress.registry import Modes
from compress.sparsity.names import ParameterIndex

__all__ = ["ParameterGroup", "STRATEGIES", "group_parameters", "group_masks", "count_pruned"]

#: ``fn(index, selected, groups) -> [ParameterGroup]``: the grouping strategies; a strategy that reads the
#: user's ``groups`` declares ``needs=("groups",)`` and gets no ``weights``.
GROUPINGS = Modes("grouping")
STRATEGIES = GROUPINGS
#: SiPO's command-line names for the same strategies (its ``layer`` grouped whole recurrent layers; see above)
_SIPO_NAMES = {"simple": "all_in_one", "time": "stage_wise"}

# The last component of a recurrent weight's name: nn.LSTM/GRU/RNN (weight_ih_l0, bias_hh_l1_reverse,
# weight_hr_l0), the *Cell modules (weight_ih) and AWD-LSTM's weight-drop copies (weight_hh_l0_raw).
_RECURRENT = re.compile(r"(?:weight|bias)_(ih|hh|hr)(?:_l\d+)?(?:_reverse)?(?:_raw)?")

GroupSpec = Mapping[str, Union[str, Sequence[str]]]


@dataclass(frozen=True)
class ParameterGroup:
    """Tensors that are pruned at one shared rate, with one magnitude threshold over all of them.

    Args:
        name: the group's name (``ih``, ``hh``, ``encoder``, a weight name, or the user's).
        params: canonical parameter names, in model order.

    Example:
        >>> group = ParameterGroup("hh", ("rnn.weight_hh_l0", "rnn.weight_hh_l1"))
        >>> group.name, len(group.params)
        ('hh', 2)
    """

    name: str
    params: Tuple[str, ...]


def _logical_names(index: ParameterIndex, canonical: str) -> List[str]:
    """The names a parameter goes by: its canonical name, then its aliases (``weight_hh_l0`` for ``..._raw``)."""
    return [canonical] + [a for a, c in index.aliases.items() if c == canonical]


def recurrent_kind(index: ParameterIndex, canonical: str) -> Optional[str]:
    """``'ih'`` for input-to-hidden, ``'hh'`` for hidden-to-hidden (projections included), else ``None``."""
    for name in _logical_names(index, canonical):
        m = _RECURRENT.fullmatch(name.rsplit(".", 1)[-1])
        if m:
            return "ih" if m.group(1) == "ih" else "hh"
    return None


def _module_path(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


def _partner_weight(name: str, selected: Sequence[str]) -> Optional[str]:
    """The weight a bias belongs to (``rnn.bias_ih_l0`` → ``rnn.weight_ih_l0``), if it is selected."""
    head, _, last = name.rpartition(".")
    if not last.startswith("bias"):
        return None
    partner = (head + "." if head else "") + "weight" + last[len("bias"):]
    return partner if partner in selected else None


def _resolve_weights(index: ParameterIndex, weights: Union[None, str, Sequence[str]]) -> List[str]:
    if weights is None:
        return index.maskable()
    patterns = [weights] if isinstance(weights, str) else list(weights)
    if not patterns:
        raise ArgumentError("weights", "lists no weights")
    found = set()
    for i, pattern in enumerate(patterns):
        try:
            found.update(index.resolve(pattern))
        except LookupError as exc:
            raise ArgumentError(("weights", i) if not isinstance(weights, str) else "weights", str(exc)) from None
    return [n for n in index.params if n in found]


def group_parameters(index: ParameterIndex, strategy: str = "stage_wise",
                     weights: Union[None, str, Sequence[str]] = None,
                     groups: Optional[GroupSpec] = None) -> List[ParameterGroup]:
    """Form the parameter groups of a strategy.

    Args:
        index: the model's parameter index.
        strategy: ``all_in_one``, ``layer_wise``, ``stage_wise`` or ``custom`` (SiPO's ``simple`` and ``time`` are
            accepted as names of the first and third).
        weights: names or patterns of the tensors to prune (default: every parameter, biases included);
            not used with ``custom``.
        groups: for ``custom`` only: ``{group name: pattern or list of patterns}``.

    Returns:
        The groups in model order of their first tensor; every selected tensor is in exactly one group.

    Raises:
        ArgumentError: an unknown strategy, a pattern that matches nothing, a tensor in two custom groups, or
            ``groups``/``weights`` given where they do not apply (the key is named: ``groups.ih[1]``).

    Example:
        >>> model = torch.nn.ModuleDict({"encoder": torch.nn.Embedding(10, 4), "rnn": torch.nn.LSTM(4, 4, 2)})
        >>> index = ParameterIndex(model)
        >>> [(g.name, len(g.params)) for g in group_parameters(index, "stage_wise")]
        [('encoder', 1), ('ih', 4), ('hh', 4)]
        >>> [g.params for g in group_parameters(index, "custom", groups={"first": "rnn.*_l0"})]
        [('rnn.weight_ih_l0', 'rnn.weight_hh_l0', 'rnn.bias_ih_l0', 'rnn.bias_hh_l0')]
    """
    strategy = _SIPO_NAMES.get(strategy, strategy)
    if strategy not in GROUPINGS:
        raise ArgumentError("grouping", f"unknown grouping {strategy!r} (expected one of {', '.join(GROUPINGS)})")
    if "groups" in GROUPINGS.needs(strategy):
        if weights is not None:
            raise ArgumentError("weights", f"{strategy} grouping takes its weights from 'groups'; leave 'weights' out")
        return GROUPINGS[strategy](index, [], groups)
    if groups is not None:
        raise ArgumentError("groups", f"only the 'custom' grouping takes groups (grouping is {strategy!r})")
    return GROUPINGS[strategy](index, _resolve_weights(index, weights), None)


@GROUPINGS.register("all_in_one")
def _all_in_one(index: ParameterIndex, selected: Sequence[str], groups: None) -> List[ParameterGroup]:
    """One group of everything selected."""
    return [ParameterGroup("all", tuple(selected))]


def _grouped_by(selected: Sequence[str], key: Callable[[str], str]) -> List[ParameterGroup]:
    members: Dict[str, List[str]] = {}
    for name in selected:
        members.setdefault(key(name), []).append(name)
    return [ParameterGroup(k, tuple(names)) for k, names in members.items()]


@GROUPINGS.register("layer_wise")
def _layer_wise(index: ParameterIndex, selected: Sequence[str], groups: None) -> List[ParameterGroup]:
    """One group per weight tensor, its bias with it."""
    return _grouped_by(selected, lambda name: _partner_weight(name, selected) or name)


@GROUPINGS.register("stage_wise")
def _stage_wise(index: ParameterIndex, selected: Sequence[str], groups: None) -> List[ParameterGroup]:
    """SiPO's stages: every input-to-hidden tensor together, every hidden-to-hidden one together, and each
    other module (embedding, decoder) on its own."""
    return _grouped_by(selected, lambda name: recurrent_kind(index, name) or _module_path(name))


@GROUPINGS.register("custom", needs=("groups",))
def _custom_groups(index: ParameterIndex, selected: Sequence[str], groups: Optional[GroupSpec]) -> List[ParameterGroup]:
    """The user's groups: ``{group name: pattern or list of patterns}``; a tensor belongs to one group."""
    if not isinstance(groups, Mapping) or not groups:
        raise ArgumentError("groups", f"expected a mapping of group names to weight names or patterns, got {groups!r}")
    owner: Dict[str, str] = {}
    members: Dict[str, List[str]] = {}
    for group, spec in groups.items():
        patterns = [spec] if isinstance(spec, str) else spec
        if not isinstance(patterns, (list, tuple)) or not patterns:
            raise ArgumentError(("groups", group), f"expected a weight name, a pattern or a list of them, got {spec!r}")
        found: List[str] = []
        for i, pattern in enumerate(patterns):
            key = ("groups", group) if isinstance(spec, str) else ("groups", group, i)
            try:
                hits = index.resolve(pattern)
            except LookupError as exc:
                raise ArgumentError(key, str(exc)) from None
            for name in hits:
                if name in owner and owner[name] != str(group):
                    raise ArgumentError(key, f"{name!r} is already in group {owner[name]!r}; a tensor belongs to "
                                             f"one group")
                owner[name] = str(group)
                if name not in found:
                    found.append(name)
        members[str(group)] = [n for n in index.params if n in found]
    order = {n: i for i, n in enumerate(index.params)}
    return sorted((ParameterGroup(g, tuple(ns)) for g, ns in members.items()), key=lambda g: order[g.params[0]])


@torch.no_grad()
def group_masks(groups: Sequence[ParameterGroup], params: Mapping[str, torch.Tensor], rates: Mapping[str, float],
                current: Optional[Mapping[str, Optional[torch.Tensor]]] = None) -> Dict[str, torch.Tensor]:
    """Keep-masks that prune each group at its rate by magnitude, with one threshold per group.

    Args:
        groups: the groups.
        params: canonical name → tensor (the reference weights whose magnitudes are ranked).
        rates: group name → fraction of the group's elements to prune, in [0, 1].
        current: canonical name → the mask in force (or ``None``); when given, a pruned weight stays pruned
            (its mask is ANDed in), as in iterative pruning where pruned weights are zero and never come back.

    Returns:
        Canonical name → bool keep-mask, for every tensor of every group.

    Raises:
        ValueError: a rate outside [0, 1].
        KeyError: a group without a rate, or a tensor missing from ``params``.

    Example:
        >>> params = {"a": torch.tensor([1.0, 5.0]), "b": torch.tensor([2.0, 3.0, 4.0, 6.0])}
        >>> groups = [ParameterGroup("ab", ("a", "b"))]
        >>> {n: m.tolist() for n, m in group_masks(groups, params, {"ab": 0.5}).items()}   # one threshold: 3.0
        {'a': [False, True], 'b': [False, False, True, True]}
    """
    masks: Dict[str, torch.Tensor] = {}
    for group in groups:
        tensors = [params[n].detach() for n in group.params]
        for name, mask in zip(group.params, global_level_masks(tensors, float(rates[group.name]))):
            old = current.get(name) if current is not None else None
            masks[name] = mask if old is None else mask & old.to(mask.device)
    return masks


def count_pruned(masks: Mapping[str, torch.Tensor]) -> Tuple[int, int]:
    """``(pruned, total)`` elements over the masks.

    Example:
        >>> import torch
        >>> count_pruned({"a": torch.tensor([True, False]), "b": torch.tensor([False, False, True])})
        (3, 5)
    """
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.count_nonzero()) for m in masks.values())
    return total - kept, total
