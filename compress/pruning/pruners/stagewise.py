"""Stage-wise grouped pruning (SiPO): per-group magnitude rates found by search under a quality constraint,
one-shot or alternating with retraining inside the user's training loop.

Schedule (one-shot at epoch 0 when ``retrain_epochs: 0``; iterative otherwise)::

    pruners:
      sipo:
        class: StageWisePruner
        grouping: stage_wise        # all_in_one | layer_wise | stage_wise | custom (with groups: {name: [patterns]})
        search: greedy              # or ncs (SiPO's negatively correlated search)
        mode: min                   # evaluate returns perplexity (lower is better); 'max' for accuracy
        max_degradation: 0.05       # a candidate may be 5% worse than the unpruned model...
        relative: true              # ...as a fraction of its value
        retrain_epochs: 8           # retrain at most 8 epochs per iteration
        recovery_tolerance: 0.0     # after retraining, the metric must be back to the unpruned value
    policies:
      - pruner: {instance_name: sipo}
        starting_epoch: 0
        ending_epoch: 100

**The evaluate callable** cannot come from YAML: pass it when building the scheduler; it is called as
``evaluate(model) -> float`` on the data the constraint is about (the validation split)::

    scheduler = compress.file_config(model, optimizer, "sipo.yaml",
                                     evaluate=lambda m: math.exp(evaluate_loss(m, val_data)))

A training loop that serves any schedule can always pass it: schedules without such a pruner ignore it.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from compress import options
from compress.context import HookContext
from compress.errors import ArgumentError
from compress.pruning.base import SearchingPruner
from compress.pruning.criteria.groups import (
    STRATEGIES,
    ParameterGroup,
    group_masks,
    group_parameters,
)
from compress.pruning.rate_search.search import (
    SEARCHES,
    Constraint,
    GreedyRateSearch,
    NCSRateSearch,
    SearchResult,
    search_group_rates,
    search_options,
)
from compress.registry import register_pruner
from compress.sparsity.masks import MaskStore
from compress.sparsity.names import ParameterIndex

log = logging.getLogger(__name__)



@register_pruner
class StageWisePruner(SearchingPruner):
    """Prune groups of weights by magnitude, each at its own rate, with the rates found by search (SiPO).

    See :mod:`compress.pruning.criteria.groups` for the strategies and :mod:`compress.pruning.rate_search` for the
    searches and the
    fitness. The policy is :class:`~compress.scheduling.policies.IterativePruningPolicy`; ``evaluate`` comes from
    ``file_config(..., evaluate=fn)`` (a schedule that names this pruner without it does not load).

    Args:
        name: instance name.
        max_degradation: how much worse than the unpruned model a searched candidate may be (``c`` > 0).
        mode: ``'min'`` if ``evaluate`` returns lower-is-better values (perplexity, loss), ``'max'`` for accuracy.
        relative: ``max_degradation`` and ``recovery_tolerance`` are fractions of the unpruned value.
        grouping: ``all_in_one``, ``layer_wise``, ``stage_wise`` (default) or ``custom``.
        weights: names or patterns of the weights to prune (default: every parameter, biases included, as SiPO).
        groups: ``{group name: [patterns]}`` for ``custom`` grouping.
        search: ``greedy`` (default) or ``ncs``.
        lower: lowest rate of every group (SiPO: 0.1).
        upper: highest rate of every group.
        max_evaluations: evaluation budget of each search.
        step: greedy: initial share of a group's remaining weights pruned by one move.
        min_step: greedy: the search ends below this step.
        population: NCS: individuals (default 6).
        generations: NCS: generations (default 100).
        sigma: NCS: initial step size (default 0.05).
        seed: NCS: random seed.
        retrain_epochs: epochs of retraining per iteration; 0 = one-shot pruning without retraining.
        recovery_tolerance: the degradation (same units as ``max_degradation``) that still counts as recovered
            after retraining; 0 demands the unpruned value (SiPO).
        stop_at_recovery: start the next search at the first recovered epoch (else retrain all epochs).
        min_improvement: the smallest sparsity gain of a search that keeps the iterations going.
        target_sparsity: stop once the recovered model is at least this sparse.
        max_iterations: most search/retrain iterations.
        retries: after a failed recovery, retry this many times (counted per iteration), each time from the last
            recovered model with half the previous headroom above it (see :class:`IterativePruningPolicy`).
        evaluate: the ``evaluate(model) -> float`` callable (given by ``file_config(..., evaluate=fn)`` when the
            pruner comes from a schedule).

    Raises:
        ArgumentError: an unknown grouping or search, an option of another search, a bound or count out of
            range, or ``lower > upper`` (naming the argument).

    Example:
        >>> import compress
        >>> model = torch.nn.Linear(10, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.arange(1.0, 11.0))
        >>> def lost_magnitude(m):                       # lower is better; 0 for the unpruned model
        ...     return 55.0 - float(m.weight.detach().abs().sum())
        >>> schedule = {"pruners": {"sipo": {"class": "StageWisePruner", "grouping": "all_in_one",
        ...                                  "max_degradation": 10, "retrain_epochs": 0}},
        ...             "policies": [{"pruner": {"instance_name": "sipo"}, "epochs": [0]}]}
        >>> scheduler = compress.dict_config(model, None, schedule, evaluate=lost_magnitude)
        >>> scheduler.on_epoch_begin(0)                  # one-shot: search, prune, keep
        >>> model.weight.tolist()                        # 1 + 2 + 3 + 4 = 10 is all the constraint allows
        [[0.0, 0.0, 0.0, 0.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]]
    """

    def __init__(self, name: str, max_degradation: float, mode: str = "min", relative: bool = False,
                 grouping: str = "stage_wise", weights: Union[None, str, Sequence[str]] = None,
                 groups: Optional[Mapping[str, Any]] = None, search: str = "greedy", lower: float = 0.0,
                 upper: float = 0.999, max_evaluations: Optional[int] = None, step: Optional[float] = None,
                 min_step: Optional[float] = None, population: Optional[int] = None,
                 generations: Optional[int] = None, sigma: Optional[float] = None, seed: Optional[int] = None,
                 retrain_epochs: int = 8, recovery_tolerance: float = 0.0, stop_at_recovery: bool = True,
                 min_improvement: float = 1e-3, target_sparsity: Optional[float] = None, max_iterations: int = 100,
                 retries: int = 0, evaluate: Optional[Callable[[nn.Module], float]] = None):
        super().__init__(name)
        self.constraint = Constraint(max_degradation, mode, relative)
        self.recovery_tolerance = options.number("recovery_tolerance", recovery_tolerance, minimum=0.0)
        if grouping not in STRATEGIES and grouping not in ("simple", "time"):
            raise ArgumentError("grouping", f"unknown grouping {grouping!r} "
                                            f"(expected one of {', '.join(STRATEGIES)})")
        self.grouping = grouping
        self.weight_patterns = None if weights is None else options.names("weights", weights)
        self.group_spec = groups
        options.choice("search", search, SEARCHES)
        given = {k: v for k, v in dict(step=step, min_step=min_step, population=population,
                                       generations=generations, sigma=sigma, seed=seed).items() if v is not None}
        accepted = search_options(search)
        for key in given:
            if key not in accepted:
                owners = [s for s in SEARCHES if key in search_options(s)]
                raise ArgumentError(key, f"applies to search: {', '.join(owners)}, not to search: {search}")
        self.search_name = search
        self.search_options = given
        self.make_search()  # validates the options now, where the schedule's line is known
        self.lower = options.fraction("lower", lower, allow_one=True)
        self.upper = options.fraction("upper", upper, allow_one=True)
        if self.lower > self.upper:
            raise ArgumentError("lower", f"must be <= upper ({self.upper}), got {self.lower}")
        self.max_evaluations = options.optional(options.integer, "max_evaluations", max_evaluations, minimum=1)
        self.retrain_epochs = options.integer("retrain_epochs", retrain_epochs, minimum=0)
        self.stop_at_recovery = options.boolean("stop_at_recovery", stop_at_recovery)
        self.min_improvement = options.fraction("min_improvement", min_improvement)
        self.target_sparsity = options.optional(options.fraction, "target_sparsity", target_sparsity)
        self.max_iterations = options.integer("max_iterations", max_iterations, minimum=1)
        self.retries = options.integer("retries", retries, minimum=0)
        self.evaluate = options.optional(options.function, "evaluate", evaluate,
                                         "a callable evaluate(model) -> float")
        self.groups: List[ParameterGroup] = []
        self.rates: Optional[Dict[str, float]] = None

    @property
    def recovery(self) -> Constraint:
        """The recovery test: degradation from the unpruned value at most ``recovery_tolerance``."""
        tolerance = max(self.recovery_tolerance, 1e-300)  # Constraint needs c > 0; 0 means "no worse"
        return Constraint(tolerance, self.constraint.mode, self.constraint.relative)

    def better(self, value: float, other: float) -> bool:
        """True when ``value`` is strictly better than ``other`` in the metric's direction."""
        return value < other if self.constraint.mode == "min" else value > other

    def make_search(self) -> Union[GreedyRateSearch, NCSRateSearch]:
        """A fresh search strategy with this pruner's options."""
        return SEARCHES[self.search_name](**self.search_options)

    def bind(self, index: ParameterIndex) -> None:
        self.groups = group_parameters(index, self.grouping, self.weight_patterns, self.group_spec)
        self.weights = [n for g in self.groups for n in g.params]

    def search(self, model: nn.Module, masks: MaskStore, evaluate: Callable[[nn.Module], float], *,
               baseline: Optional[float] = None, initial: Optional[Mapping[str, float]] = None,
               max_degradation: Optional[float] = None, optimizer: Optional[torch.optim.Optimizer] = None,
               callback=None) -> SearchResult:
        """Search rates from the model's current weights and prune it through ``masks`` (see
        :func:`compress.pruning.rate_search.search_group_rates`); ``max_degradation`` overrides the pruner's for this
        search."""
        constraint = Constraint(self.constraint.max_degradation if max_degradation is None else max_degradation,
                                self.constraint.mode, self.constraint.relative)
        if initial is not None:
            initial = {g: min(max(v, self.lower), self.upper) for g, v in initial.items()}
        result = search_group_rates(model, self.groups, evaluate, constraint, self.make_search(), masks=masks,
                                    optimizer=optimizer, lower=self.lower, upper=self.upper, initial=initial,
                                    baseline=baseline, max_evaluations=self.max_evaluations, callback=callback)
        if result.best is not None:
            self.rates = result.rates
        return result

    def compute_masks(self, params, current, step: HookContext) -> Dict[str, torch.Tensor]:
        """Masks at the rates of the last search (pruned weights stay pruned); none before the first search."""
        if self.rates is None:
            return {}
        return group_masks(self.groups, params, self.rates, current)

    def state_dict(self) -> Dict[str, Any]:
        return {"rates": dict(self.rates) if self.rates is not None else None}

    def check_state(self, state: Any) -> None:
        options.fields((), state, ["rates"])
        rates = state.get("rates")
        if rates is None:
            return
        groups = [g.name for g in self.groups]
        for group, rate in options.mapping("rates", rates).items():
            if group not in groups:
                raise ArgumentError(("rates", group), f"is not a group of this pruner ({', '.join(groups)})")
            options.fraction(("rates", group), rate, allow_one=True)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        rates = state.get("rates")
        self.rates = {g: float(r) for g, r in rates.items()} if rates is not None else None
