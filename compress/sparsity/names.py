"""Finding a model's weights by name.

Schedules name weights the way Distiller does, by their exact ``named_parameters()`` name, and may also use
patterns: a glob (``rnn.weight_*``) or a regular expression after ``re:`` (``re:rnn\\.weight_hh_l\\d``), matched
against the whole name. Each name is resolved to the *canonical* name of the tensor that is actually trained:

* a tied weight is one tensor under its first name (``decoder.weight`` → ``encoder.weight`` in a tied LM);
* a re-parametrised weight is the parameter behind it: AWD-LSTM's weight drop trains ``weight_hh_l0_raw``
  and recomputes ``weight_hh_l0`` every forward pass, and ``torch.nn.utils.parametrize`` trains
  ``parametrizations.weight.original``;
* a model wrapped in ``DataParallel``/``DistributedDataParallel`` answers with or without ``module.``.

A name or pattern that matches nothing raises :class:`LookupError` with the closest real names.
"""
from __future__ import annotations

import difflib
import fnmatch
import re
from typing import Dict, Iterable, List

from torch import nn

_GLOB_CHARS = set("*?[")


def _alias_names(name: str) -> List[str]:
    """Names under which a user may refer to the trained parameter ``name``."""
    out = []
    if name.endswith("_raw"):
        out.append(name[: -len("_raw")])
    parts = name.split(".")
    # x.parametrizations.weight.original  ->  x.weight
    for i in range(len(parts) - 2):
        if parts[i] == "parametrizations" and parts[i + 2] in ("original", "original0"):
            out.append(".".join(parts[:i] + [parts[i + 1]] + parts[i + 3:]))
    return out


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
        for canonical in self.params:
            for alias in _alias_names(canonical):
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
        raise LookupError(self.no_match_message(name))

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
        return [n for n in self.params if n in found]

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
