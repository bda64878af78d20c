"""Choosing per-group pruning rates under a quality constraint by evaluating the pruned model (SiPO's search).

The user supplies ``evaluate(model) -> float`` (validation perplexity or loss: lower is better, ``mode='min'``;
accuracy: higher is better, ``mode='max'``). The *degradation* of a candidate is how much worse its value is
than the baseline (the model before the search), in the metric's units or, with ``relative=True``, as a
fraction of the baseline. SiPO's fitness, minimised, is

    f(x) = -sparsity(x)          if degradation(x) <= c
           degradation(x) / c    otherwise (> 1, worse than every feasible point)

Two search strategies are offered:

* :class:`GreedyRateSearch` (default): deterministic. From the start point it tries, for every group, pruning
  a share ``step`` of that group's remaining weights, keeps the feasible move that buys the most sparsity per
  unit of degradation, and halves ``step`` when no move is feasible, down to ``min_step``.
* :class:`NCSRateSearch`: SiPO's negatively correlated search (:mod:`compress.pruning.rate_search.ncs`), population 6
  and 100
  generations by default (600 evaluations).

Why greedy is the default: on a small LSTM LM it reached the same or higher sparsity than NCS's published
setting with fewer evaluations, and it gives the same answer on every run (the figures are the README's "Greedy
or NCS" table; ``examples/sipo_ptb.py`` runs both on the PTB model). NCS remains available, as published.

The search prunes the model in place through a :class:`~compress.sparsity.MaskStore` while it evaluates candidates,
and leaves it pruned at the best feasible candidate. Nothing it returns violates the constraint on the data the
evaluate function saw: the best is always a candidate that was evaluated and met it, and when none did (not even
the model as it was), the model is restored as it was and ``best`` is ``None``. Press Ctrl-C during a search to
stop it early: the best result so far is applied and returned, with ``interrupted=True``.
"""
from __future__ import annotations

import inspect
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from compress import options
from compress.distributed import mean_over_ranks
from compress.errors import ArgumentError, key_path
from compress.pruning.criteria.groups import (
    ParameterGroup,
    count_pruned,
    group_masks,
    group_parameters,
)
from compress.pruning.rate_search.ncs import NegativelyCorrelatedSearch
from compress.registry import Modes
from compress.sparsity.masks import MaskStore
from compress.sparsity.names import ParameterIndex

__all__ = ["Constraint", "fitness", "Candidate", "SearchProgress", "SearchResult", "GreedyRateSearch",
           "NCSRateSearch", "search_group_rates", "prune_to_constraint", "call_evaluate", "SEARCHES"]

log = logging.getLogger(__name__)

Evaluate = Callable[[nn.Module], float]
Bound = Union[float, Mapping[str, float]]


def call_evaluate(evaluate: Evaluate, model: nn.Module) -> float:
    """``float(evaluate(model))``, leaving the model in the train/eval mode it was in.

    Under ``torch.distributed`` the value is averaged over the ranks (every rank calls it at the same point),
    so searches and recovery tests that read it take the same decision on every rank.
    """
    was_training = model.training
    try:
        value = float(evaluate(model))
    finally:
        model.train(was_training)
    return mean_over_ranks(value)


@dataclass(frozen=True)
class Constraint:
    """How much worse than the baseline a pruned model may be.

    Args:
        max_degradation: the largest allowed degradation ``c`` (> 0), in the metric's units, or a fraction of the
            baseline with ``relative``. SiPO used ``c = 0.01`` on accuracy as a fraction (one accuracy point).
        mode: ``'min'`` when lower values are better (perplexity, loss), ``'max'`` when higher are (accuracy).
        relative: measure the degradation as a fraction of ``|baseline|`` (``0.05`` = 5% higher perplexity).

    Raises:
        ArgumentError: ``max_degradation <= 0`` or not a number, or ``mode`` not ``'min'``/``'max'``.

    Example:
        >>> c = Constraint(0.05, mode="min", relative=True)     # at most 5% above the baseline
        >>> round(c.degradation(105.0, 100.0), 6), c.satisfied(105.0, 100.0), c.satisfied(106.0, 100.0)
        (0.05, True, False)
        >>> Constraint(0.01, mode="max").satisfied(0.245, 0.25)  # accuracy: one point lower is allowed
        True
    """

    max_degradation: float
    mode: str = "min"
    relative: bool = False

    def __post_init__(self):
        options.number("max_degradation", self.max_degradation, minimum=0.0, min_open=True)
        if self.mode not in ("min", "max"):
            raise ArgumentError("mode", f"expected 'min' (lower is better: perplexity, loss) or 'max' (higher is "
                                        f"better: accuracy), got {self.mode!r}")
        options.boolean("relative", self.relative)

    def degradation(self, value: float, baseline: float) -> float:
        """How much worse ``value`` is than ``baseline`` (negative when better; ``inf`` for NaN)."""
        if math.isnan(value):
            return math.inf
        d = value - baseline if self.mode == "min" else baseline - value
        if self.relative:
            if baseline == 0:
                raise ValueError("a relative constraint needs a non-zero baseline value")
            d /= abs(baseline)
        return d

    def satisfied(self, value: float, baseline: float) -> bool:
        return self.degradation(value, baseline) <= self.max_degradation


def fitness(sparsity: float, degradation: float, max_degradation: float) -> float:
    """SiPO's fitness (minimised): ``-sparsity`` if ``degradation <= c``, else ``degradation / c``."""
    return -sparsity if degradation <= max_degradation else degradation / max_degradation


@dataclass
class Candidate:
    """One evaluated point of a search.

    Args:
        rates: group name → requested rate.
        group_sparsity: group name → fraction of the group actually pruned (previously pruned weights included).
        sparsity: fraction of all grouped elements pruned.
        value: what ``evaluate`` returned.
        degradation: per the constraint.
        fitness: SiPO's fitness.
        feasible: ``degradation <= c``.
    """

    rates: Dict[str, float]
    group_sparsity: Dict[str, float]
    sparsity: float
    value: float
    degradation: float
    fitness: float
    feasible: bool


@dataclass
class SearchProgress:
    """What a progress callback is told after every evaluation.

    Args:
        method: the strategy's name.
        evaluations: evaluations so far.
        step: the strategy's round (greedy) or generation (NCS).
        candidate: the point just evaluated.
        best: the best feasible point so far, or ``None``.
    """

    method: str
    evaluations: int
    step: int
    candidate: Candidate
    best: Optional[Candidate]


@dataclass
class SearchResult:
    """The outcome of a search; the model is left pruned at :attr:`best`.

    Args:
        method: the strategy's name.
        groups: the groups searched.
        baseline: the value the degradation is measured from.
        reference: the model as it was before the search, evaluated.
        best: the feasible candidate with the highest sparsity, or ``None`` if nothing (not even the reference)
            met the constraint; then the model is as it was.
        masks: the masks of ``best`` (canonical name → bool keep-mask), or ``None``.
        evaluations: calls of ``evaluate`` (repeated points are not re-evaluated).
        seconds: wall time.
        interrupted: stopped by Ctrl-C; ``best`` is the best found until then.
        history: every evaluated candidate, in order.

    Example:
        >>> model = nn.Linear(10, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.arange(1.0, 11.0))
        >>> result = prune_to_constraint(model, lambda m: 55.0 - float(m.weight.detach().abs().sum()), 10.0,
        ...                              grouping="all_in_one")
        >>> result.sparsity, result.improved, result.reference.sparsity, result.best.degradation
        (0.4, True, 0.0, 10.0)
    """

    method: str
    groups: List[ParameterGroup]
    baseline: float
    reference: Candidate
    best: Optional[Candidate]
    masks: Optional[Dict[str, torch.Tensor]]
    evaluations: int
    seconds: float
    interrupted: bool = False
    history: List[Candidate] = field(default_factory=list)

    @property
    def rates(self) -> Optional[Dict[str, float]]:
        return None if self.best is None else dict(self.best.rates)

    @property
    def sparsity(self) -> float:
        """Sparsity of the best candidate (of the reference when there is none)."""
        return (self.best or self.reference).sparsity

    @property
    def improved(self) -> bool:
        """True when the best candidate prunes more than the model had before the search."""
        return self.best is not None and self.best.sparsity > self.reference.sparsity


class _Stop(Exception):
    """The evaluation budget is spent or the callback asked to stop."""


class _Objective:
    """Evaluates rate vectors on the model in place, keeps the best feasible one, and restores at the end."""

    def __init__(self, model, groups, evaluate, constraint, store, max_evaluations, callback, method):
        self.model = model
        self.groups = list(groups)
        self.names = [n for g in self.groups for n in g.params]
        self.sizes = np.array([sum(store.parameter(n).numel() for n in g.params) for g in self.groups])
        self.evaluate = evaluate
        self.constraint = constraint
        self.store = store
        self.max_evaluations = max_evaluations
        self.callback = callback
        self.method = method
        with torch.no_grad():
            self.reference = {n: store.parameter(n).detach().clone() for n in self.names}
        self.previous = {n: (store.get(n).clone() if n in store else None) for n in self.names}
        self.baseline: Optional[float] = None
        self.evaluations = 0
        self.step = 0
        self.history: List[Candidate] = []
        self.best: Optional[Candidate] = None
        self._cache: Dict[Tuple[int, ...], Candidate] = {}

    def rates_dict(self, x: Sequence[float]) -> Dict[str, float]:
        return {g.name: float(v) for g, v in zip(self.groups, x)}

    def masks(self, x: Sequence[float]) -> Dict[str, torch.Tensor]:
        return group_masks(self.groups, self.reference, self.rates_dict(x), self.previous)

    def sparsity(self, x: Sequence[float]) -> float:
        """Realised sparsity of a rate vector, without evaluating the model."""
        pruned, total = count_pruned(self.masks(x))
        return pruned / max(total, 1)

    def _install(self, masks: Mapping[str, Optional[torch.Tensor]], optimizer=None, reset_state=False) -> None:
        with torch.no_grad():
            for name in self.names:
                self.store.parameter(name).copy_(self.reference[name])
                mask = masks.get(name)
                if mask is None:
                    self.store.remove_mask(name)
                else:
                    self.store.set_mask(name, mask, optimizer, reset_state=reset_state)

    def __call__(self, x: Sequence[float]) -> Candidate:
        key = tuple(int(float(v) * int(n)) for v, n in zip(x, self.sizes))
        if key in self._cache:
            return self._cache[key]
        if self.max_evaluations is not None and self.evaluations >= self.max_evaluations:
            raise _Stop()
        masks = self.masks(x)
        self._install(masks)
        value = call_evaluate(self.evaluate, self.model)
        self.evaluations += 1
        if self.baseline is None:
            self.baseline = value
        group_sparsity = {}
        pruned_all = 0
        for g in self.groups:
            pruned, total = count_pruned({n: masks[n] for n in g.params})
            group_sparsity[g.name] = pruned / max(total, 1)
            pruned_all += pruned
        sparsity = pruned_all / max(int(self.sizes.sum()), 1)
        degradation = self.constraint.degradation(value, self.baseline)
        c = self.constraint.max_degradation
        cand = Candidate(self.rates_dict(x), group_sparsity, sparsity, value, degradation,
                         fitness(sparsity, degradation, c), degradation <= c)
        self._cache[key] = cand
        self.history.append(cand)
        if cand.feasible and (self.best is None or (cand.sparsity, -cand.degradation)
                              > (self.best.sparsity, -self.best.degradation)):
            self.best = cand
            log.info("%s: evaluation %d: new best sparsity %.4f (value %.4g, degradation %.4g <= %.4g)",
                     self.method, self.evaluations, sparsity, value, degradation, c)
        else:
            log.debug("%s: evaluation %d: sparsity %.4f value %.4g degradation %.4g", self.method,
                      self.evaluations, sparsity, value, degradation)
        if self.callback is not None and self.callback(
                SearchProgress(self.method, self.evaluations, self.step, cand, self.best)):
            raise _Stop()
        return cand

    def restore(self) -> None:
        self._install(self.previous)

    def apply_best(self, optimizer) -> Optional[Dict[str, torch.Tensor]]:
        if self.best is None:
            self.restore()
            return None
        masks = self.masks([self.best.rates[g.name] for g in self.groups])
        self._install(masks, optimizer, reset_state=True)
        return masks


#: The rate-search strategies by name (``search:`` of a StageWisePruner): classes constructed with their own
#: options, with ``run(objective, start, lower, upper)``. Register another with ``@SEARCHES.register("name")``.
SEARCHES = Modes("search")


def search_options(name: str) -> Tuple[str, ...]:
    """The keyword options the search registered as ``name`` takes (from its constructor's signature)."""
    params = list(inspect.signature(SEARCHES[name].__init__).parameters.values())[1:]
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


@SEARCHES.register("greedy")
class GreedyRateSearch:
    """Deterministic greedy ascent over group rates.

    Each round tries, for every group below its upper bound, pruning a share ``step`` of that group's remaining
    weights (``x_g -> 1 - (1 - x_g)(1 - step)``); among the feasible moves it keeps the one with the most
    sparsity gained per unit of degradation added (a move that does not add degradation wins outright). When no
    move is feasible it halves ``step``, and it stops once ``step < min_step``. A round costs one evaluation per
    group.

    Args:
        step: initial share of a group's remaining weights pruned by one move, in (0, 1).
        min_step: the search ends when the step falls below this.

    Raises:
        ArgumentError: ``step`` outside (0, 1), or ``min_step`` outside (0, ``step``].

    Example:
        >>> model = nn.Linear(10, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.arange(1.0, 11.0))
        >>> groups = group_parameters(ParameterIndex(model), "all_in_one")
        >>> result = search_group_rates(model, groups, lambda m: 55.0 - float(m.weight.detach().abs().sum()),
        ...                             Constraint(10.0), GreedyRateSearch(step=0.5))
        >>> result.sparsity, result.evaluations
        (0.4, 4)
    """

    name = "greedy"

    def __init__(self, step: float = 0.2, min_step: float = 1 / 64):
        self.step = options.number("step", step, minimum=0.0, maximum=1.0, min_open=True, max_open=True)
        self.min_step = options.number("min_step", min_step, minimum=0.0, maximum=self.step, min_open=True)

    def run(self, objective: _Objective, start: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        x = start.copy()
        current = objective(x)
        if not current.feasible and np.any(x > lower):
            x = lower.copy()
            current = objective(x)
        if not current.feasible:
            return
        step = self.step
        while step >= self.min_step:
            objective.step += 1
            moves = []
            for g in range(len(x)):
                if x[g] >= upper[g]:
                    continue
                y = x.copy()
                y[g] = min(upper[g], 1 - (1 - x[g]) * (1 - step))
                moves.append((y, objective(y)))
            if not moves:
                break
            better = [(y, c) for y, c in moves if c.feasible and c.sparsity > current.sparsity]
            if not better:
                step /= 2
                log.info("greedy: no feasible move; step -> %.4g (best sparsity %.4f, %d evaluations)", step,
                         current.sparsity, objective.evaluations)
                continue

            def score(move, current=current):
                gain = move[1].sparsity - current.sparsity
                cost = move[1].degradation - current.degradation
                return (math.inf if cost <= 0 else gain / cost, gain)

            x, current = max(better, key=score)


@SEARCHES.register("ncs")
class NCSRateSearch:
    """SiPO's negatively correlated search over group rates (see :mod:`compress.pruning.rate_search.ncs`).

    The parents start with fitness ``+sparsity(start)`` (as SiPO), so any feasible child can replace them; only
    feasible children ever replace a parent.

    Args:
        population: individuals (SiPO: 6 one-shot, 8 iterative).
        generations: generations (SiPO: 100); the search costs ``population * generations`` evaluations.
        sigma: initial step size of every rate (SiPO: 0.05).
        seed: seed of the search's private random generator.

    Raises:
        ArgumentError: ``population < 2``, ``generations < 1``, ``sigma <= 0``, or a non-integer ``seed``.

    Example:
        >>> model = nn.Linear(10, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.arange(1.0, 11.0))
        >>> groups = group_parameters(ParameterIndex(model), "all_in_one")
        >>> result = search_group_rates(model, groups, lambda m: 55.0 - float(m.weight.detach().abs().sum()),
        ...                             Constraint(10.0), NCSRateSearch(population=4, generations=10, sigma=0.2))
        >>> result.evaluations <= 41, result.best.degradation <= 10.0
        (True, True)
    """

    name = "ncs"

    def __init__(self, population: int = 6, generations: int = 100, sigma: float = 0.05, seed: int = 0):
        self.population = options.integer("population", population, minimum=2)
        self.generations = options.integer("generations", generations, minimum=1)
        self.sigma = options.number("sigma", sigma, minimum=0.0, min_open=True)
        self.seed = options.integer("seed", seed)

    def run(self, objective: _Objective, start: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        ncs = NegativelyCorrelatedSearch(start, self.sigma, lower, upper, population=self.population,
                                         generations=self.generations, initial_fitness=objective.sparsity(start),
                                         seed=self.seed)
        while not ncs.done:
            objective.step = ncs.generation + 1
            ncs.tell([objective(child).fitness for child in ncs.ask()])
            if ncs.generation % 10 == 0 or ncs.done:
                best = objective.best
                log.info("ncs: generation %d/%d, %d evaluations, best sparsity %s", ncs.generation,
                         self.generations, objective.evaluations, f"{best.sparsity:.4f}" if best else "none")




def _bounds(groups: Sequence[ParameterGroup], value: Optional[Bound], default: float, key: str) -> np.ndarray:
    if value is None:
        value = default
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {g.name for g in groups})
        if unknown:
            raise ArgumentError(key_path(key, unknown[0]),
                                f"no such group (groups: {', '.join(g.name for g in groups)})")
        out = [value.get(g.name, default) for g in groups]
    else:
        out = [value] * len(groups)
    for v in out:
        options.fraction(key, v, allow_one=True)
    return np.array(out, dtype=np.float64)


def search_group_rates(model: nn.Module, groups: Sequence[ParameterGroup], evaluate: Evaluate,
                       constraint: Constraint, search: Union[str, GreedyRateSearch, NCSRateSearch, Any] = "greedy",
                       *, masks: Optional[MaskStore] = None, optimizer: Optional[torch.optim.Optimizer] = None,
                       lower: Optional[Bound] = None, upper: Optional[Bound] = None,
                       initial: Optional[Bound] = None, baseline: Optional[float] = None,
                       max_evaluations: Optional[int] = None,
                       callback: Optional[Callable[[SearchProgress], Optional[bool]]] = None) -> SearchResult:
    """Search group pruning rates that prune as much as possible while the constraint holds; prune the model.

    The model's weights at the start are the reference: every candidate ranks their magnitudes, and weights that
    are already masked stay pruned. The first evaluation is the reference itself.

    Args:
        model: the model, pruned in place.
        groups: from :func:`compress.pruning.criteria.groups.group_parameters`.
        evaluate: ``evaluate(model) -> float`` on the data the constraint is about (e.g. validation perplexity).
        constraint: the allowed degradation and the metric's direction.
        search: ``'greedy'`` (default), ``'ncs'``, or a strategy object with ``name`` and
            ``run(objective, start, lower, upper)``.
        masks: the mask store to prune through (a scheduler's ``scheduler.masks``); default: a private one.
        optimizer: its state is zeroed at pruned positions when the best masks are applied.
        lower: lowest rate per group (scalar or ``{group: rate}``; default 0).
        upper: highest rate per group (default 0.999).
        initial: the start point (default ``lower``).
        baseline: the value degradation is measured from (default: the reference's value).
        max_evaluations: stop after this many evaluations.
        callback: called after every evaluation with a :class:`SearchProgress`; return ``True`` to stop.

    Returns:
        A :class:`SearchResult`; the model is pruned at its ``best`` (or unchanged when ``best`` is ``None``).

    Raises:
        ArgumentError: an unknown ``search``, no ``groups``, ``evaluate`` not callable, a bound outside [0, 1] or
            naming no group, or ``lower`` above ``upper``.
        KeyboardInterrupt: Ctrl-C during the very first evaluation (the model is restored); later, Ctrl-C ends
            the search with the best result so far.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 1, bias=False), nn.Linear(1, 4, bias=False))
        >>> with torch.no_grad():
        ...     _ = model[0].weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
        ...     _ = model[1].weight.copy_(torch.tensor([[0.1], [0.2], [0.3], [0.4]]))
        >>> def lost(m):                                 # the magnitude pruned away: 0 for the unpruned model
        ...     return 11.0 - sum(float(p.detach().abs().sum()) for p in m.parameters())
        >>> groups = group_parameters(ParameterIndex(model), "layer_wise")
        >>> result = search_group_rates(model, groups, lost, Constraint(1.0), GreedyRateSearch(step=0.5))
        >>> result.best.group_sparsity                   # three of layer 1 (0.6) beat one of layer 0 (1.0)
        {'0.weight': 0.0, '1.weight': 0.75}
        >>> model[1].weight.flatten().tolist()
        [0.0, 0.0, 0.0, 0.4000000059604645]
    """
    if isinstance(search, str):
        if search not in SEARCHES:
            raise ArgumentError("search", f"unknown search {search!r} (expected one of {', '.join(SEARCHES)})")
        search = SEARCHES[search]()
    options.function("evaluate", evaluate, "a callable evaluate(model) -> float")
    if not groups:
        raise ArgumentError("groups", "no groups to search")
    options.optional(options.integer, "max_evaluations", max_evaluations, minimum=1)
    low = _bounds(groups, lower, 0.0, "lower")
    high = _bounds(groups, upper, 0.999, "upper")
    if np.any(low > high):
        raise ArgumentError("lower", f"lower bounds {low.tolist()} exceed upper bounds {high.tolist()}")
    start = np.clip(_bounds(groups, initial, 0.0, "initial") if initial is not None else low, low, high)
    store = masks if masks is not None else MaskStore(model)
    name = getattr(search, "name", type(search).__name__)
    objective = _Objective(model, groups, evaluate, constraint, store, max_evaluations, callback, name)
    objective.baseline = baseline
    started = time.time()
    interrupted = False
    reference = None
    try:
        reference = objective(np.zeros(len(groups)))
        search.run(objective, start, low, high)
    except _Stop:
        pass
    except KeyboardInterrupt:
        interrupted = True
        log.warning("%s: interrupted after %d evaluations; keeping the best result so far", name,
                    objective.evaluations)
    except BaseException:
        objective.restore()
        raise
    if reference is None:  # interrupted during the very first evaluation: nothing is known
        objective.restore()
        raise KeyboardInterrupt
    best_masks = objective.apply_best(optimizer)
    best = objective.best
    log.info("%s: done after %d evaluations in %.1fs: %s", name, objective.evaluations, time.time() - started,
             f"sparsity {best.sparsity:.4f} (value {best.value:.4g})" if best else "no feasible pruning")
    return SearchResult(name, list(groups), float(objective.baseline), reference, best, best_masks,
                        objective.evaluations, time.time() - started, interrupted, objective.history)


def prune_to_constraint(model: nn.Module, evaluate: Evaluate, max_degradation: float, *, mode: str = "min",
                        relative: bool = False, grouping: str = "stage_wise",
                        weights: Union[None, str, Sequence[str]] = None,
                        groups: Optional[Mapping[str, Any]] = None, search: Any = "greedy",
                        **options: Any) -> SearchResult:
    """One-shot pruning without retraining: group the weights, search the rates, prune the model.

    Typically ``prune_to_constraint(model, lambda m: val_perplexity(m), 0.05, relative=True)``: as sparse as
    possible at no more than +5% validation perplexity; the model is pruned in place.

    Args:
        model: the trained model, pruned in place.
        evaluate: ``evaluate(model) -> float``.
        max_degradation: the constraint ``c``.
        mode: ``'min'`` (perplexity, loss) or ``'max'`` (accuracy).
        relative: ``c`` is a fraction of the baseline.
        grouping: ``all_in_one``, ``layer_wise``, ``stage_wise`` or ``custom``.
        weights: which tensors to prune (default all); see :func:`compress.pruning.criteria.groups.group_parameters`.
        groups: for ``custom`` grouping.
        search: ``'greedy'``, ``'ncs'`` or a strategy object.
        **options: keyword arguments of :func:`search_group_rates` (``masks``, ``optimizer``, ``lower``,
            ``upper``, ``initial``, ``baseline``, ``max_evaluations``, ``callback``).

    Returns:
        A :class:`SearchResult`; the model is pruned at its ``best``.

    Raises:
        ArgumentError: as :func:`search_group_rates`, and for an unknown ``grouping`` or weights that match
            nothing.

    Example:
        >>> model = nn.Linear(10, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.arange(1.0, 11.0))
        >>> result = prune_to_constraint(model, lambda m: 55.0 - float(m.weight.detach().abs().sum()), 10.0,
        ...                              grouping="all_in_one")
        >>> result.sparsity, (model.weight == 0).sum().item()
        (0.4, 4)
    """
    parameter_groups = group_parameters(ParameterIndex(model), grouping, weights, groups)
    return search_group_rates(model, parameter_groups, evaluate, Constraint(max_degradation, mode, relative),
                              search, **options)
