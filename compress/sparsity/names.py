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
"""
from __future__ import annotations

import difflib
import fnmatch
import re
from typing import Dict, Iterable, List, Tuple

from torch import nn

_GLOB_CHARS = set("*?[")


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
        model: any ``nn.Module``; nothing about its type is assumed.
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
        """True for a glob or an ``re:`` pattern, False for an exact name.

        Example:
            >>> ParameterIndex.is_pattern("rnn.weight_*"), ParameterIndex.is_pattern("rnn.weight_hh_l0")
            (True, False)
        """
        return text.startswith("re:") or bool(_GLOB_CHARS & set(text))

    def resolve(self, pattern: str) -> List[str]:
        """Canonical names matched by an exact name, a glob or an ``re:`` pattern, in model order.

        Raises:
            LookupError: nothing matched; the message suggests the closest real names.
        """
        if not isinstance(pattern, str) or not pattern:
            raise LookupError(f"a weight name must be a non-empty string, got {pattern!r}")
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
