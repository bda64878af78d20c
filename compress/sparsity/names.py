"""Finding a model's weights by name.

Schedules name weights the way Distiller does, by their exact ``named_parameters()`` name, and may also use
patterns: a glob (``rnn.weight_*``) or a regular expression after ``re:`` (``re:rnn\\.weight_hh_l\\d``), matched
against the whole name. Each name is resolved to the *canonical* name of the tensor that is actually trained:

* a tied weight is one tensor under its first name (``decoder.weight`` → ``encoder.weight`` in a tied LM);
* a re-parametrised weight is the parameter behind it: AWD-LSTM's weight drop trains ``weight_hh_l0_raw``
  and recomputes ``weight_hh_l0`` every forward pass, and ``torch.nn.utils.parametrize`` trains
  ``parametrizations.weight.original``; a weight computed from several parameters (weight norm's magnitude
  ``g`` and direction ``v``) cannot be pruned by a mask on either, and its name is refused with the reason;
* a model wrapped in ``DataParallel``/``DistributedDataParallel`` answers with or without ``module.``.

A name or pattern that matches nothing raises :class:`LookupError` with the closest real names.

**Gate selectors.** Where a component accepts them (``resolve(..., gates=True)``: the magnitude pruners), a name
or pattern may end in ``[gate=NAMES]`` to select the rows of some gates of a packed recurrent tensor
(:mod:`compress.sparsity.gates`): ``rnn.weight_hh_l0[gate=f]``, ``rnn.weight_*_l0[gate=i,f]``. Gates are
``i, f, g, o`` for an LSTM and ``r, z, n`` for a GRU. The selection's canonical key is the canonical tensor name
with the gates in row order (``rnn.weight_hh_l0[gate=i,f]``); selecting every gate is the tensor itself. A gate
selector on a tensor that is not gated, or a gate name the layer does not have, is a ``LookupError`` naming the
valid gates.
"""
from __future__ import annotations

import difflib
import fnmatch
import re
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

import torch
from torch import nn

from compress.sparsity.gates import GateLayout, gate_layouts

_GLOB_CHARS = set("*?[")
_GATE_SELECTOR = re.compile(r"^(?P<base>.+)\[gate=(?P<gates>[^\[\]]*)\]$")


class GateSelection(NamedTuple):
    """The rows of some gates of one tensor: what a key like ``rnn.weight_hh_l0[gate=f]`` stands for.

    Attributes:
        name: the canonical name of the tensor.
        gates: the selected gates, in row order.
        layout: the tensor's :class:`~compress.sparsity.gates.GateLayout`.
    """

    name: str
    gates: Tuple[str, ...]
    layout: GateLayout

    @property
    def key(self) -> str:
        return f"{self.name}[gate={','.join(self.gates)}]"

    def rows(self, device: Optional[torch.device] = None) -> torch.Tensor:
        """The selected rows (dim 0) of the tensor, ascending, as a ``LongTensor``."""
        return self.layout.row_index(self.gates, device)


def split_gate_selector(pattern: str) -> Tuple[str, Optional[List[str]]]:
    """``'rnn.weight_hh_l0[gate=i,f]'`` → ``('rnn.weight_hh_l0', ['i', 'f'])``; no selector: ``(pattern, None)``.

    Example:
        >>> split_gate_selector("rnn.weight_*[gate= f , o]"), split_gate_selector("rnn.weight_hh_l[01]")
        (('rnn.weight_*', ['f', 'o']), ('rnn.weight_hh_l[01]', None))
    """
    m = _GATE_SELECTOR.match(pattern) if isinstance(pattern, str) else None
    if m is None:
        return pattern, None
    return m.group("base"), [g.strip() for g in m.group("gates").split(",") if g.strip()]


_ORIGINAL = re.compile(r"^(?:(.*)\.)?parametrizations\.([^.]+)\.(original\d*)$")


def _reparametrised(model: nn.Module, params: Dict[str, nn.Parameter]
                    ) -> Tuple[Dict[str, str], Dict[str, str], Dict[str, str]]:
    """Names of re-parametrised weights: ``{alias: trained parameter}``, ``{alias: why it cannot be pruned}`` and
    ``{trained parameter: why a pattern or a default set leaves it out}``.

    A weight computed from one parameter (weight drop, a one-tensor parametrization) is that parameter. A weight
    computed from several (weight norm's magnitude ``g`` and direction ``v``, as ``original0``/``original1`` or
    ``weight_g``/``weight_v``) is none of them: a mask on ``g`` zeroes whole output rows, and a row of ``v`` pruned
    to zeros has norm 0 and makes the weight NaN. Its name is refused with that reason, and patterns and default
    weight sets leave its parts out; naming a part exactly still selects it.
    """
    aliases: Dict[str, str] = {}
    parts: Dict[str, List[str]] = {}
    for name in params:
        if name.endswith("_raw"):  # AWD-LSTM's weight drop trains weight_hh_l0_raw
            aliases[name[: -len("_raw")]] = name
        match = _ORIGINAL.match(name)
        if match:
            module, tensor = match.group(1), match.group(2)
            parts.setdefault(f"{module}.{tensor}" if module else tensor, []).append(name)
        if name.endswith("_g") and name[:-2] + "_v" in params:  # torch.nn.utils.weight_norm (the old hooks)
            parts[name[:-2]] = [name, name[:-2] + "_v"]
    ambiguous: Dict[str, str] = {}
    unsafe: Dict[str, str] = {}
    for alias, names in parts.items():
        if len(names) == 1:
            aliases[alias] = names[0]
            continue
        reason = (f"{alias!r} is computed from {' and '.join(names)} (weight norm): a mask on the magnitude zeroes "
                  f"whole rows, and a row of the direction pruned to zeros has norm 0 and makes the weight NaN; "
                  f"remove the weight norm (torch.nn.utils.parametrize.remove_parametrizations, or "
                  f"remove_weight_norm) to prune it")
        ambiguous[alias] = reason
        unsafe.update((n, reason) for n in names)
    return aliases, ambiguous, unsafe


class ParameterIndex:
    """Canonical names of a model's parameters and every alias that refers to them.

    Args:
        model: any ``nn.Module``; nothing about its type is assumed (gated tensors are found as
            :func:`~compress.sparsity.gates.gate_layouts` finds them).

    Attributes:
        gates: canonical name → :class:`~compress.sparsity.gates.GateLayout` of every packed gated tensor.

    Example:
        >>> index = ParameterIndex(nn.LSTM(2, 3))
        >>> index.resolve("weight_hh_l0[gate=o,f]", gates=True)
        ['weight_hh_l0[gate=f,o]']
        >>> index.selection("weight_hh_l0[gate=f,o]").rows().tolist()
        [3, 4, 5, 9, 10, 11]
        >>> index.resolve("weight_hh_l0[gate=x]", gates=True)
        Traceback (most recent call last):
            ...
        LookupError: 'weight_hh_l0[gate=x]': weight_hh_l0 has no gate 'x'; its gates are i, f, g, o
    """

    def __init__(self, model: nn.Module):
        self.params: Dict[str, nn.Parameter] = dict(model.named_parameters())
        self.aliases: Dict[str, str] = {}
        by_id = {id(p): n for n, p in self.params.items()}
        for name, p in model.named_parameters(remove_duplicate=False):
            canonical = by_id[id(p)]
            if name != canonical:
                self.aliases[name] = canonical
        reparametrised, self.ambiguous, self.unsafe = _reparametrised(model, self.params)
        for alias, canonical in reparametrised.items():
            if alias not in self.params:
                self.aliases.setdefault(alias, canonical)
        for name in list(self.params) + list(self.aliases):
            if name.startswith("module."):
                self.aliases.setdefault(name[len("module."):], self.aliases.get(name, name))
        self.gates: Dict[str, GateLayout] = {}
        for name, layout in gate_layouts(model).items():
            try:
                self.gates.setdefault(self.canonical(name), layout)
            except LookupError:  # a gated module's tensor that is not a parameter of the model
                continue

    def names(self) -> List[str]:
        """Every name that resolves: canonical names first, then aliases."""
        return list(self.params) + [a for a in self.aliases if a not in self.params]

    def canonical(self, name: str) -> str:
        """The canonical name for an exact name or alias; ``LookupError`` if there is none."""
        for candidate in (name, "module." + name):
            if candidate in self.params:
                return candidate
            if candidate in self.aliases:
                return self.aliases[candidate]
            if candidate in self.ambiguous:
                raise LookupError(self.ambiguous[candidate])
        raise LookupError(self.no_match_message(name))

    @staticmethod
    def is_pattern(text: str) -> bool:
        """True for a glob or an ``re:`` pattern (a gate selector aside), False for an exact name.

        Example:
            >>> ParameterIndex.is_pattern("rnn.weight_*"), ParameterIndex.is_pattern("rnn.weight_hh_l0")
            (True, False)
            >>> ParameterIndex.is_pattern("rnn.weight_hh_l0[gate=f]")
            False
        """
        text = split_gate_selector(text)[0]
        return text.startswith("re:") or bool(_GLOB_CHARS & set(text))

    def resolve(self, pattern: str, gates: bool = False) -> List[str]:
        """Canonical names matched by an exact name, a glob or an ``re:`` pattern, in model order.

        Args:
            pattern: the name or pattern; with ``gates``, optionally ending in a gate selector ``[gate=...]``.
            gates: accept gate selectors; they resolve to selection keys (see :meth:`selection`).

        Raises:
            LookupError: nothing matched (the message suggests the closest real names), or a gate selector that
                is not accepted here, names an unknown gate or selects from a tensor that is not gated.
        """
        if not isinstance(pattern, str) or not pattern:
            raise LookupError(f"a weight name must be a non-empty string, got {pattern!r}")
        base, wanted = split_gate_selector(pattern)
        if wanted is not None:
            if not gates:
                raise LookupError(f"{pattern!r}: gate selectors ([gate=...]) are not accepted here, only whole "
                                  f"tensors (they are in the weights and levels/thresholds of the magnitude pruners)")
            return [self._select(name, wanted, pattern) for name in self.resolve(base)]
        if pattern.startswith("re:"):
            try:
                regex = re.compile(pattern[3:])
            except re.error as exc:
                raise LookupError(f"invalid regular expression {pattern!r}: {exc}") from None
            hits = [n for n in self.names() if regex.fullmatch(n)]
        elif _GLOB_CHARS & set(pattern):
            hits = [n for n in self.names() if fnmatch.fnmatchcase(n, pattern)]
        else:
            return [self.canonical(pattern)]
        if not hits:
            raise LookupError(self.no_match_message(pattern))
        found = {n if n in self.params else self.aliases[n] for n in hits}
        usable = found - set(self.unsafe)
        if not usable:
            raise LookupError(f"{pattern!r} matches only parts of re-parametrised weights: "
                              f"{self.unsafe[sorted(found)[0]]}")
        return [n for n in self.params if n in usable]

    def maskable(self) -> List[str]:
        """Canonical names of the parameters a default weight set may hold (not the parts of a weight norm)."""
        return [n for n in self.params if n not in self.unsafe]

    def _select(self, name: str, wanted: List[str], pattern: str) -> str:
        layout = self.gates.get(name)
        if layout is None:
            gated = ", ".join(list(self.gates)[:3])
            hint = f" (the gated tensors of this model are {gated}{', ...' if len(self.gates) > 3 else ''})" \
                if gated else " (this model has none)"
            raise LookupError(f"{pattern!r}: {name} is not a gated tensor; gate selectors apply to the packed "
                              f"weights and biases of LSTM (gates i, f, g, o) and GRU (r, z, n) layers{hint}")
        bad = [g for g in wanted if g not in layout.gates]
        if bad or not wanted:
            what = f"has no gate {bad[0]!r}" if bad else "needs at least one gate"
            raise LookupError(f"{pattern!r}: {name} {what}; its gates are {', '.join(layout.gates)}")
        chosen = tuple(g for g in layout.gates if g in wanted)
        return name if len(chosen) == len(layout.gates) else GateSelection(name, chosen, layout).key

    def selection(self, key: str) -> Optional[GateSelection]:
        """The :class:`GateSelection` behind a selection key (as :meth:`resolve` returns), ``None`` for any name
        without a gate selector.

        Raises:
            KeyError: ``key`` has a gate selector that does not fit its tensor.
        """
        if key in self.params:
            return None
        base, wanted = split_gate_selector(key)
        if wanted is None:
            return None
        layout = self.gates.get(base)
        if layout is None or not wanted or any(g not in layout.gates for g in wanted):
            raise KeyError(key)
        return GateSelection(base, tuple(g for g in layout.gates if g in wanted), layout)

    def tensor_name(self, key: str) -> str:
        """The canonical tensor name of a canonical name or selection key."""
        found = self.selection(key)
        return key if found is None else found.name

    def order(self, keys: Iterable[str]) -> List[str]:
        """Canonical names and selection keys in model order (a tensor's selections by their first row)."""
        position = {n: i for i, n in enumerate(self.params)}

        def rank(key):
            found = self.selection(key)
            return (position[key], -1) if found is None else (position[found.name], found.layout.rows(found.gates)[0])

        return sorted(dict.fromkeys(keys), key=rank)

    def resolve_all(self, patterns: Iterable[str]) -> List[str]:
        """Union of :meth:`resolve` over ``patterns``, each tensor once, in model order."""
        found = set()
        for p in patterns:
            found.update(self.resolve(p))
        return [n for n in self.params if n in found]

    def no_match_message(self, pattern: str) -> str:
        probe = pattern[3:] if pattern.startswith("re:") else pattern
        close = difflib.get_close_matches(probe, self.names(), n=3, cutoff=0.4)
        hint = f"; closest names: {', '.join(close)}" if close else ""
        return f"{pattern!r} matches no parameter of the model{hint}"
