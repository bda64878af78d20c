"""Prune-and-regrow criteria of dynamic sparse training: which weights die, which grow, and how many per layer.

Every function here is pure: tensors and counts in, boolean masks and counts out. None touches an optimizer, a
mask store or a model; :class:`compress.pruning.DynamicSparsityPruner` strings them together and
:class:`compress.sparsity.masks.MaskStore` applies the result. A mask is ``True`` where a weight is kept ("active").

Counts are exact: every selection takes exactly the number of weights asked for (ties are broken by
``torch.topk``, deterministically for a given input), so the density after a prune-and-regrow event is exactly
the density before it. The reference code (Selfish-RNN, sparse_learning) draws random growth as independent
coin flips and removes every weight tied at the threshold, so its density only holds in expectation.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch

from compress.kernels.magnitude import kth_smallest_magnitude

DEATH_MODES = ("magnitude", "SET", "threshold", "global_magnitude")
GROWTH_MODES = ("random", "momentum", "gradient")
REDISTRIBUTION_MODES = ("none", "magnitude", "nonzeros", "momentum")
INIT_MODES = ("uniform", "ER")
SET_NEGATIVES = ("closest_to_zero", "most_negative")


def count(mask: torch.Tensor) -> int:
    """Number of True entries of a bool mask (``count_nonzero``: several times faster than ``sum`` on the CPU)."""
    return int(torch.count_nonzero(mask))


# -- how many ---------------------------------------------------------------------------------------------------
def apportion(total: int, shares: Sequence[float], capacity: Sequence[int]) -> List[int]:
    """Split ``total`` items over layers in proportion to ``shares``, never giving a layer more than its capacity.

    Layers whose proportional part exceeds their capacity are filled and the rest is re-split over the others
    (water-filling); the final split rounds by largest remainder, so the counts add up to ``total`` exactly.
    Where every remaining share is zero, the remainder is split equally. (Selfish-RNN caps at 99% of the free
    slots and spreads the overflow *equally*, up to 1000 rounds; re-splitting in proportion to the shares keeps
    the redistribution's intent.)

    Args:
        total: items to hand out, ``0 <= total <= sum(capacity)``.
        shares: non-negative weight of each layer.
        capacity: the most each layer can take.

    Returns:
        One non-negative integer per layer, ``<= capacity``, summing to ``total``.

    Raises:
        ValueError: ``total`` exceeds the capacity, or a share or capacity is negative.
    """
    if len(shares) != len(capacity):
        raise ValueError(f"{len(shares)} shares for {len(capacity)} capacities")
    if any(s < 0 or not math.isfinite(s) for s in shares) or any(c < 0 for c in capacity):
        raise ValueError(f"shares and capacities must be finite and non-negative, got {list(shares)}, "
                         f"{list(capacity)}")
    if total < 0 or total > sum(capacity):
        raise ValueError(f"cannot hand out {total} items over a capacity of {sum(capacity)}")
    counts = [0] * len(shares)
    open_layers = [i for i, c in enumerate(capacity) if c > 0]
    remaining = total
    while remaining > 0:
        weights = {i: float(shares[i]) for i in open_layers}
        if sum(weights.values()) <= 0:
            weights = dict.fromkeys(open_layers, 1.0)
        norm = sum(weights.values())
        ideal = {i: remaining * w / norm for i, w in weights.items()}
        full = [i for i in open_layers if ideal[i] >= capacity[i]]
        if full:
            for i in full:
                counts[i] = capacity[i]
                remaining -= capacity[i]
            open_layers = [i for i in open_layers if i not in full]
            continue
        floors = {i: int(math.floor(ideal[i])) for i in open_layers}
        for i in open_layers:
            counts[i] = floors[i]
        left = remaining - sum(floors.values())
        by_remainder = sorted(open_layers, key=lambda i: (-(ideal[i] - floors[i]), i))
        for i in by_remainder[:left]:
            counts[i] += 1  # ideal < capacity, so floor + 1 <= capacity
        remaining = 0
    return counts


def erdos_renyi_densities(shapes: Sequence[Sequence[int]], density: float) -> List[float]:
    """Per-layer densities of the Erdős–Rényi initialisation (SET), scaled to an exact global density.

    Layer ``l`` gets ``p_l = eps * sum(shape_l) / prod(shape_l)`` (``eps (rows + cols) / (rows cols)`` for a
    matrix), with the scalar ``eps`` chosen so that ``sum_l p_l n_l = density * sum_l n_l``. A layer whose
    ``p_l`` would exceed 1 is made dense and ``eps`` is solved again for the others, until none exceeds 1.
    (Selfish-RNN searches ``eps`` without the cap, so a capped layer silently undershoots the global density;
    this is the ERK rule of later implementations.)

    Args:
        shapes: the weight shapes.
        density: the global density, in (0, 1].

    Returns:
        One density in (0, 1] per layer.
    """
    sizes = [math.prod(s) for s in shapes]
    raw = [sum(s) / n for s, n in zip(shapes, sizes)]
    budget = density * sum(sizes)
    dense: set = set()
    while True:
        rest = [i for i in range(len(shapes)) if i not in dense]
        if not rest:
            return [1.0] * len(shapes)
        eps = (budget - sum(sizes[i] for i in dense)) / sum(raw[i] * sizes[i] for i in rest)
        newly = [i for i in rest if eps * raw[i] > 1.0]
        if not newly:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]
        dense.update(newly)


def initial_counts(shapes: Sequence[Sequence[int]], density: float, mode: str) -> List[int]:
    """Active weights per layer at initialisation: ``round(density * N)`` in all, split by ``mode``.

    Args:
        shapes: the weight shapes.
        density: the global density, in (0, 1].
        mode: ``"uniform"`` (every layer at ``density``) or ``"ER"`` (:func:`erdos_renyi_densities`).
    """
    sizes = [math.prod(s) for s in shapes]
    if mode == "uniform":
        per_layer = [density] * len(shapes)
    elif mode == "ER":
        per_layer = erdos_renyi_densities(shapes, density)
    else:
        raise ValueError(f"sparse_init must be one of {', '.join(INIT_MODES)}, got {mode!r}")
    total = min(int(round(density * sum(sizes))), sum(sizes))
    return apportion(total, [d * n for d, n in zip(per_layer, sizes)], sizes)


def removal_count(rate: float, active: int) -> int:
    """``ceil(rate * active)`` as Selfish-RNN counts removals, without float noise (``ceil(0.3 * 10)`` is 3)."""
    return min(active, int(math.ceil(round(rate * active, 9))))


def capped_death_rate(rate: float, sparsity: float, share: float, n_layers: int) -> float:
    """Sparse-momentum's guard for nearly dense layers under redistribution.

    A layer under 20% sparsity whose redistribution share exceeds the uniform share ``1/n_layers`` is growing
    anyway; its death rate is capped at its sparsity so that it does not churn weights it will regrow.
    """
    if sparsity < 0.2 and share > 1.0 / n_layers:
        return min(rate, sparsity)
    return rate


# -- which ------------------------------------------------------------------------------------------------------
def select(scores: torch.Tensor, eligible: torch.Tensor, k: int, *, largest: bool) -> torch.Tensor:
    """Mask of exactly ``k`` eligible entries with the largest (or smallest) scores.

    Raises:
        ValueError: fewer than ``k`` entries are eligible.
    """
    available = count(eligible)
    if k > available:
        raise ValueError(f"cannot select {k} of {available} eligible entries")
    if k == available:
        return eligible.clone()
    out = torch.zeros(eligible.numel(), dtype=torch.bool, device=eligible.device)
    if k == 0:
        return out.view_as(eligible)
    fill = float("-inf") if largest else float("inf")
    flat = torch.where(eligible.reshape(-1), scores.reshape(-1).float(), fill)
    out[torch.topk(flat, k, largest=largest, sorted=False).indices] = True
    return out.view_as(eligible)


def magnitude_death(weight: torch.Tensor, mask: torch.Tensor, n_remove: int) -> torch.Tensor:
    """Survivors after removing the ``n_remove`` active weights of smallest magnitude."""
    return mask & ~select(weight.detach().abs(), mask, n_remove, largest=False)


def set_death(weight: torch.Tensor, mask: torch.Tensor, n_remove: int,
              negatives: str = "closest_to_zero") -> torch.Tensor:
    """SET's death: half of the removals among the smallest positive weights, half among the negative ones.

    Mocanu et al. remove "the largest negative weights", i.e. the negative weights closest to zero
    (``negatives="closest_to_zero"``, the default). The Selfish-RNN/sparse_learning code removes the *most*
    negative ones instead (``negatives="most_negative"``), which deletes the strongest inhibitory connections;
    that option reproduces it. Active weights equal to zero count as positive (they go first). When one side
    has too few active weights, the other side makes up the difference, so exactly ``n_remove`` die.
    """
    if negatives not in SET_NEGATIVES:
        raise ValueError(f"negatives must be one of {', '.join(SET_NEGATIVES)}, got {negatives!r}")
    w = weight.detach()
    positive = mask & (w >= 0)
    negative = mask & (w < 0)
    n_pos_avail, n_neg_avail = count(positive), count(negative)
    n_pos = min(int(math.ceil(n_remove / 2)), n_pos_avail)
    n_neg = min(n_remove - n_pos, n_neg_avail)
    n_pos = min(n_remove - n_neg, n_pos_avail)
    removed = select(w.abs(), positive, n_pos, largest=False)
    removed |= select(w.abs(), negative, n_neg, largest=negatives == "most_negative")
    return mask & ~removed


def threshold_death(weight: torch.Tensor, mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """Survivors ``|w| > threshold``; how many die is whatever the threshold gives."""
    return mask & (weight.detach().abs() > threshold)


def global_magnitude_death(weights: Sequence[torch.Tensor], masks: Sequence[torch.Tensor],
                           n_remove: int) -> Tuple[List[torch.Tensor], Optional[float]]:
    """Remove the ``n_remove`` active weights of smallest magnitude across all layers together.

    Selfish-RNN tunes a global threshold iteratively until about (±2%) ``n_remove`` weights fall under it; here
    the threshold is the exact ``n_remove``-th smallest active magnitude, and ties at it are broken in layer
    order, so exactly ``n_remove`` die.

    Returns:
        The survivors of each layer, and the threshold (``None`` when nothing is removed).
    """
    if n_remove <= 0:
        return [m.clone() for m in masks], None
    active = [w.detach()[m] for w, m in zip(weights, masks)]
    tau_t = kth_smallest_magnitude(active, n_remove)
    tau = float(tau_t)
    below = [m & (w.detach().abs() < tau) for w, m in zip(weights, masks)]
    needed = n_remove - sum(count(b) for b in below)
    survivors = []
    for w, m, b in zip(weights, masks, below):
        tied = m & (w.detach().abs() == tau)
        n_tied = count(tied)
        take = min(needed, n_tied)
        if 0 < take < n_tied:
            flat = torch.zeros(tied.numel(), dtype=torch.bool, device=tied.device)
            flat[tied.reshape(-1).nonzero().squeeze(1)[:take]] = True
            tied = flat.view_as(tied)
        if take > 0:
            b = b | tied
        needed -= take
        survivors.append(m & ~b)
    return survivors, tau


def random_growth(mask: torch.Tensor, n_grow: int, generator: torch.Generator) -> torch.Tensor:
    """``mask`` plus ``n_grow`` inactive positions drawn uniformly at random (without replacement)."""
    scores = torch.rand(mask.shape, generator=generator, device=mask.device)
    return mask | select(scores, ~mask, n_grow, largest=True)


def score_growth(mask: torch.Tensor, n_grow: int, scores: torch.Tensor) -> torch.Tensor:
    """``mask`` plus the ``n_grow`` inactive positions of largest ``|scores|`` (RigL's gradient, SNFS's momentum)."""
    return mask | select(scores.detach().abs(), ~mask, n_grow, largest=True)


def redistribution_scores(mode: str, weights: Sequence[torch.Tensor], masks: Sequence[torch.Tensor],
                          momenta: Optional[Sequence[torch.Tensor]] = None, threshold: float = 0.0) -> List[float]:
    """Each layer's claim on the weights regrown in an event (normalised by :func:`apportion`).

    Args:
        mode: ``"magnitude"`` (mean ``|w|`` over active weights), ``"nonzeros"`` (active weights with
            ``|w| > threshold``) or ``"momentum"`` (mean ``|momentum|`` over active weights).
        weights: the weights, before death.
        masks: their masks, before death.
        momenta: per-layer momentum tensors, for ``"momentum"``.
        threshold: the shared threshold, for ``"nonzeros"``.
    """
    out = []
    for i, (w, m) in enumerate(zip(weights, masks)):
        n = count(m)
        if mode == "magnitude":
            out.append(float(w.detach().abs()[m].sum()) / n if n else 0.0)
        elif mode == "nonzeros":
            out.append(float(count(m & (w.detach().abs() > threshold))))
        elif mode == "momentum":
            if momenta is None:
                raise ValueError("momentum redistribution needs momenta")
            out.append(float(momenta[i].abs()[m].sum()) / n if n else 0.0)
        else:
            raise ValueError(f"no redistribution scores for mode {mode!r}")
    return out
