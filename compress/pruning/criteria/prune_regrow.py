"""Prune-and-regrow criteria of dynamic sparse training: which weights die, which grow, and how many per layer.

Every function here is pure: tensors and counts in, boolean masks and counts out. None touches an optimizer, a
mask store or a model; :class:`compress.pruning.DynamicSparsityPruner` strings them together and
:class:`compress.sparsity.masks.MaskStore` applies the result. A mask is ``True`` where a weight is kept ("active").

Counts are exact: every selection takes exactly the number of weights asked for (ties are broken by
``torch.topk``, deterministically for a given input), so the density after a prune-and-regrow event is exactly
the density before it (where the reference code of Selfish-RNN and sparse_learning differs:
``docs/distiller-compat.md``).

Each family of modes is a :class:`~compress.registry.Modes` table (``SPARSE_INIT``, ``DEATH``, ``GROWTH``,
``REDISTRIBUTION``) whose entries share one signature, so a new mode is one decorated function::

    @DEATH.register("random")
    def random_death(weights, masks, plan):
        ...  # return a DeathResult

and :class:`~compress.pruning.DynamicSparsityPruner` accepts ``death: random`` at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

from compress.kernels.magnitude import kth_smallest_magnitude
from compress.registry import Modes

#: ``fn(shapes, density) -> per-layer densities``: how the initial topology spreads the density over layers.
SPARSE_INIT = Modes("sparse_init")
#: ``fn(weights, masks, plan: DeathPlan) -> DeathResult``: which active weights die in an event.
DEATH = Modes("death")
#: ``fn(survivors, n_grow, inputs: GrowthInputs) -> mask``: which inactive weights grow back in a layer.
GROWTH = Modes("growth")
#: ``fn(weights, masks, momenta, threshold) -> shares or None``: each layer's claim on the regrown weights;
#: ``None`` means every layer regrows what it lost.
REDISTRIBUTION = Modes("redistribution")
SET_NEGATIVES = ("closest_to_zero", "most_negative")

# The names of each family, for callers that list them (argparse choices, tests): the registries themselves,
# so modes that users register later are included.
INIT_MODES, DEATH_MODES, GROWTH_MODES, REDISTRIBUTION_MODES = SPARSE_INIT, DEATH, GROWTH, REDISTRIBUTION


@dataclass(frozen=True)
class DeathPlan:
    """What a death criterion is asked to do in one event.

    Args:
        rate: the event's death rate.
        active: active weights per layer before death.
        per_layer: planned removals per layer (local criteria), from the rate and any redistribution cap.
        total: planned removals over all layers together (global criteria).
        threshold: the pruner's current magnitude threshold (threshold criteria).
        set_negatives: which negative weights SET removes (``closest_to_zero`` or ``most_negative``).
    """

    rate: float
    active: Tuple[int, ...]
    per_layer: Tuple[int, ...]
    total: int
    threshold: float
    set_negatives: str = "closest_to_zero"


@dataclass(frozen=True)
class DeathResult:
    """The survivors of each layer and, where the criterion moves it, the pruner's new threshold."""

    survivors: List[torch.Tensor]
    threshold: Optional[float] = None


@dataclass(frozen=True)
class GrowthInputs:
    """What a growth criterion may read for one layer (only the inputs its mode ``needs`` are filled).

    Args:
        name: the weight's canonical name (for messages).
        generator: a generator seeded for this event and layer (random growth).
        momentum: the pruner's momentum of the dense gradient (``needs=("momentum",)``).
        gradient: the dense gradient of the last minibatch (``needs=("gradient",)``).
    """

    name: str
    generator: Optional[torch.Generator] = None
    momentum: Optional[torch.Tensor] = None
    gradient: Optional[torch.Tensor] = None


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


@SPARSE_INIT.register("uniform")
def uniform_densities(shapes: Sequence[Sequence[int]], density: float) -> List[float]:
    """Every layer at the global density."""
    return [density] * len(shapes)


@SPARSE_INIT.register("ER")
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
        mode: a :data:`SPARSE_INIT` mode: ``"uniform"`` (every layer at ``density``) or ``"ER"``
            (:func:`erdos_renyi_densities`).
    """
    sizes = [math.prod(s) for s in shapes]
    if mode not in SPARSE_INIT:
        raise ValueError(f"sparse_init must be one of {', '.join(SPARSE_INIT)}, got {mode!r}")
    per_layer = SPARSE_INIT[mode](shapes, density)
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


@REDISTRIBUTION.register("none")
def no_redistribution(weights, masks, momenta, threshold) -> None:
    """Every layer regrows exactly what it lost: per-layer counts stay at their initial values."""
    return None


@REDISTRIBUTION.register("magnitude")
def magnitude_shares(weights, masks, momenta, threshold) -> List[float]:
    """Mean ``|w|`` over each layer's active weights."""
    return [float(w.detach().abs()[m].sum()) / n if (n := count(m)) else 0.0 for w, m in zip(weights, masks)]


@REDISTRIBUTION.register("nonzeros")
def nonzero_shares(weights, masks, momenta, threshold) -> List[float]:
    """Active weights with ``|w| > threshold`` in each layer."""
    return [float(count(m & (w.detach().abs() > threshold))) for w, m in zip(weights, masks)]


@REDISTRIBUTION.register("momentum", needs=("momentum",))
def momentum_shares(weights, masks, momenta, threshold) -> List[float]:
    """Mean ``|momentum|`` over each layer's active weights (SNFS)."""
    if momenta is None:
        raise ValueError("momentum redistribution needs momenta")
    return [float(p.abs()[m].sum()) / n if (n := count(m)) else 0.0 for p, m in zip(momenta, masks)]


def redistribution_scores(mode: str, weights: Sequence[torch.Tensor], masks: Sequence[torch.Tensor],
                          momenta: Optional[Sequence[torch.Tensor]] = None, threshold: float = 0.0) -> List[float]:
    """Each layer's claim on the weights regrown in an event (normalised by :func:`apportion`).

    Args:
        mode: a :data:`REDISTRIBUTION` mode other than ``"none"``: ``"magnitude"`` (mean ``|w|`` over active
            weights), ``"nonzeros"`` (active weights with ``|w| > threshold``) or ``"momentum"`` (mean
            ``|momentum|`` over active weights).
        weights: the weights, before death.
        masks: their masks, before death.
        momenta: per-layer momentum tensors, for ``"momentum"``.
        threshold: the shared threshold, for ``"nonzeros"``.
    """
    if mode not in REDISTRIBUTION:
        raise ValueError(f"no redistribution scores for mode {mode!r}")
    shares = REDISTRIBUTION[mode](weights, masks, momenta, threshold)
    if shares is None:
        raise ValueError(f"redistribution {mode!r} assigns no shares")
    return shares


# -- the registered death and growth modes ------------------------------------------------------------------
@DEATH.register("magnitude")
def _magnitude_death_mode(weights, masks, plan: DeathPlan) -> DeathResult:
    """The ``per_layer`` active weights of smallest magnitude in each layer."""
    return DeathResult([magnitude_death(w, m, n) for w, m, n in zip(weights, masks, plan.per_layer)])


@DEATH.register("SET")
def _set_death_mode(weights, masks, plan: DeathPlan) -> DeathResult:
    """SET's death per layer (:func:`set_death`)."""
    return DeathResult([set_death(w, m, n, plan.set_negatives) for w, m, n in zip(weights, masks, plan.per_layer)])


@DEATH.register("threshold")
def _threshold_death_mode(weights, masks, plan: DeathPlan) -> DeathResult:
    """``|w| <= threshold`` dies; the threshold doubles when fewer than 98% of the planned weights died and
    halves above 102%, for the next event (Selfish-RNN's adaptive threshold)."""
    survivors = [threshold_death(w, m, plan.threshold) for w, m in zip(weights, masks)]
    removed = sum(plan.active) - sum(count(s) for s in survivors)
    expected = plan.rate * sum(plan.active)
    threshold = plan.threshold
    if expected > 0 and removed < 0.98 * expected:
        threshold *= 2.0
    elif expected > 0 and removed > 1.02 * expected:
        threshold /= 2.0
    return DeathResult(survivors, threshold)


@DEATH.register("global_magnitude")
def _global_magnitude_death_mode(weights, masks, plan: DeathPlan) -> DeathResult:
    """The ``total`` active weights of smallest magnitude over all layers (:func:`global_magnitude_death`)."""
    survivors, tau = global_magnitude_death(weights, masks, plan.total)
    return DeathResult(survivors, tau)


@GROWTH.register("random")
def _random_growth_mode(survivors: torch.Tensor, n_grow: int, inputs: GrowthInputs) -> torch.Tensor:
    """Uniformly at random over the inactive positions (:func:`random_growth`)."""
    return random_growth(survivors, n_grow, inputs.generator)


@GROWTH.register("momentum", needs=("momentum",))
def _momentum_growth_mode(survivors: torch.Tensor, n_grow: int, inputs: GrowthInputs) -> torch.Tensor:
    """The largest momentum of the dense gradient (SNFS)."""
    momentum = inputs.momentum if inputs.momentum is not None else torch.zeros_like(survivors, dtype=torch.float)
    return score_growth(survivors, n_grow, momentum)


@GROWTH.register("gradient", needs=("gradient",))
def _gradient_growth_mode(survivors: torch.Tensor, n_grow: int, inputs: GrowthInputs) -> torch.Tensor:
    """The largest gradient of the last minibatch (RigL)."""
    if inputs.gradient is None:
        raise RuntimeError(f"gradient growth needs the gradient of {inputs.name!r} from the last minibatch, but it "
                           f"is None (is the loop zeroing gradients with set_to_none before the epoch ends?)")
    return score_growth(survivors, n_grow, inputs.gradient)
