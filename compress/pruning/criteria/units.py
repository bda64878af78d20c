"""Which hidden units: the weakest unit groups of a layer, by group norm, as a keep-vector over the units.

A pure function of the group norms; :class:`~compress.pruning.UnitPruner` turns the keep-vector into masks of the
group's tensors (:meth:`compress.structured.units.UnitLayer.apply_keep`).
"""
from __future__ import annotations

from typing import Optional

import torch


def weakest_units(norms: torch.Tensor, count: int, *, below: Optional[torch.Tensor] = None,
                  removed: Optional[torch.Tensor] = None, min_kept: int = 1) -> torch.Tensor:
    """Keep-vector (``(H,)`` bool) that removes the ``count`` units of smallest group norm.

    Units already ``removed`` go first, then those ``below`` a threshold, then the rest by norm, ties to the
    lower index (so every rank of a distributed run picks the same units); all of ``removed`` and ``below`` are
    removed even beyond ``count``. At least ``min_kept`` units are always kept (the strongest).

    Args:
        norms: ``(H,)`` group norms.
        count: units to remove (at least).
        below: ``(H,)`` bool, units that must go (under a threshold).
        removed: ``(H,)`` bool, units removed before (kept removed: pruning only ever grows).
        min_kept: units that always stay.

    Example:
        >>> weakest_units(torch.tensor([0.3, 0.1, 0.5, 0.2]), 2).tolist()
        [True, False, True, False]
        >>> before = torch.tensor([True, False, False, False])     # unit 0 went earlier: it stays removed
        >>> weakest_units(torch.tensor([0.3, 0.1, 0.5, 0.2]), 2, removed=before).tolist()
        [False, False, True, True]
    """
    hidden = norms.numel()
    key = norms.detach().float().cpu().clone()
    must = torch.zeros(hidden, dtype=torch.bool)
    if below is not None:
        below = below.cpu()
        key[below] = -1.0
        must |= below
    if removed is not None:
        removed = removed.cpu()
        key[removed] = -2.0
        must |= removed
    count = min(max(count, int(must.sum())), hidden - min_kept)
    order = torch.sort(key, stable=True).indices
    keep = torch.ones(hidden, dtype=torch.bool)
    keep[order[:count]] = False
    return keep
