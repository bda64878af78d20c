"""Dynamic sparse training: a fixed number of weights, rewired by prune-and-regrow (Selfish-RNN, SET, RigL).

The network is sparse from the first step. Every epoch (or every ``k`` minibatches) a fraction of the active
weights *dies* and as many inactive ones *grow*, so the density stays exactly where it started while the
topology adapts. The death fraction anneals along a cosine, stepped per minibatch.

Where the parts live:

* how much, when: :func:`compress.pruning.ramps.cosine_decay` (the death rate),
  :func:`compress.pruning.criteria.prune_regrow.apportion`
  and :func:`~compress.pruning.criteria.prune_regrow.erdos_renyi_densities` (per-layer counts);
* which weights: the pure criteria of :mod:`compress.pruning.criteria.prune_regrow`;
* mask mechanics: :class:`compress.sparsity.masks.MaskStore` (``set_mask`` zeroes the optimizer state of pruned and
  regrown weights).

:class:`~compress.scheduling.policies.DynamicSparsityPolicy` drives every
:class:`~compress.pruning.base.RegrowingPruner`
from the scheduler's hooks.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Mapping, Optional, Union

import torch

from compress import options
from compress.context import HookContext
from compress.errors import ArgumentError
from compress.pruning.base import (
    RegrowingPruner,
    Target,
    TopologyUpdate,
    WeightSpec,
    empty,
    excluding,
    frozen,
    resolve_weights,
)
from compress.pruning.criteria import prune_regrow as pr
from compress.pruning.ramps import cosine_decay
from compress.registry import register_pruner
from compress.sparsity.names import ParameterIndex

log = logging.getLogger(__name__)

DECAY_MODES = ("cosine", "constant")
UPDATE_WORDS = ("epoch", "never")   # update_frequency's words; otherwise it is a number of minibatches
_SEED_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


# Regrown weights start at zero and must train back: a frozen weight cannot, and an empty one has no topology.
_CANNOT_REGROW = excluding(frozen, empty)


def _density_from(density: Any, sparsity: Any) -> float:
    if density is not None and sparsity is not None:
        raise ArgumentError("sparsity", "give density or sparsity, not both")
    if density is None and sparsity is None:
        raise ArgumentError("density", "missing: give density (fraction of weights kept) or sparsity")
    if density is not None:
        return options.number("density", density, minimum=0.0, maximum=1.0, min_open=True)
    return 1.0 - options.fraction("sparsity", sparsity)


def _mix_seed(*parts: int) -> int:
    """One 63-bit seed from a few integers (seed, event, layer), well spread so nearby inputs differ."""
    h = 0
    for p, m in zip(parts, _SEED_MIX):
        h = ((h ^ (p & 0xFFFFFFFFFFFFFFFF)) * m) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


@register_pruner
class DynamicSparsityPruner(RegrowingPruner):
    """Prune-and-regrow dynamic sparse training at a fixed density (Selfish-RNN, SET, RigL, SNFS family).

    At the start of its first epoch the pruner draws a random sparse topology with exactly
    ``round(density * N)`` active weights over its ``N`` weights. At every update it removes a fraction
    (the death rate) of the active weights by the ``death`` criterion and grows as many inactive ones by the
    ``growth`` criterion, distributed over layers by ``redistribution``. Regrown weights start at zero and their
    optimizer state is reset; the density is exact after every update. The modes follow their papers where
    the published code differs (``docs/distiller-compat.md`` lists each case):

    * counts are exact: random growth picks exactly the planned number of positions, ``global_magnitude``
      removes exactly ``ceil(p * active)`` weights;
    * ``ER`` caps layers at density 1 and redistributes the excess, so the global density is the one asked for;
    * ``SET`` removes the negative weights closest to zero, as in Mocanu et al. (``set_negatives:
      most_negative`` gives the Selfish-RNN code's choice);
    * ``momentum`` growth and redistribution use the pruner's own momentum of the dense gradients,
      ``m <- growth_momentum * m + grad`` every minibatch, so they work with momentum-free SGD.

    Args:
        name: instance name.
        density: fraction of the listed weights kept, in (0, 1]; or give ``sparsity`` = 1 - density.
        sparsity: fraction pruned, in [0, 1).
        weights: names or patterns of the weights; default every parameter with 2 or more dimensions whose name
            does not contain ``bias`` (embedding and softmax included; a tied pair is one tensor). Frozen
            (``requires_grad=False``) and empty parameters are left out of the default and of patterns, and
            refused by exact name: a regrown weight starts at zero and must train.
        sparse_init: ``uniform`` (every layer at ``density``) or ``ER`` (Erdős–Rényi: density proportional to
            ``(rows + cols) / (rows * cols)``, scaled to the global density).
        death: ``magnitude`` (smallest ``|w|`` per layer), ``SET`` (smallest positive and negative weights
            closest to zero, half each), ``threshold`` (``|w| <= threshold``; the threshold doubles when fewer
            than 98% of the planned weights died and halves above 102%, for the next event) or
            ``global_magnitude`` (smallest ``|w|`` over all layers together).
        growth: ``random`` (uniform over inactive positions), ``momentum`` (largest momentum of the dense
            gradient, SNFS) or ``gradient`` (largest gradient of the last minibatch, RigL).
        redistribution: how many weights each layer regrows: ``none`` (what it lost: per-layer counts stay at
            their initial values), or in proportion to ``magnitude`` (mean ``|w|`` of active weights),
            ``nonzeros`` (active weights above the threshold) or ``momentum`` (mean ``|momentum|``).
        death_rate: initial fraction of active weights removed per update, in (0, 1).
        death_rate_decay: ``cosine`` (to ``death_rate_floor`` at the end of ``decay_epochs``) or ``constant``.
        death_rate_floor: the cosine's floor (Selfish-RNN: 0.005).
        decay_epochs: epochs the cosine spans; default the policy's epochs (``ending_epoch - starting_epoch``).
            The death rate is stepped once per minibatch.
        update_frequency: ``epoch`` (prune and regrow at every active epoch's end), a number ``k`` of
            minibatches, or ``never``: the initial random topology stays, a static random mask at the same
            density (the baseline that shows what the regrowth adds).
        threshold: initial threshold of ``threshold`` death and of ``nonzeros`` redistribution.
        set_negatives: ``closest_to_zero`` (the SET paper) or ``most_negative`` (the Selfish-RNN code).
        growth_momentum: decay of the pruner's gradient momentum (``momentum`` growth/redistribution).
        seed: seed of random initialisation and growth; default ``torch.initial_seed()``. Event ``n`` draws from
            a generator seeded by ``(seed, n)``, so a resume repeats the same draws bit for bit.

    Raises:
        ArgumentError: both or neither of ``density`` and ``sparsity``, an unknown mode, or a rate, threshold or
            frequency out of range (naming the argument).

    Example:
        >>> import compress
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Linear(8, 8, bias=False)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> schedule = {"pruners": {"dst": {"class": "DynamicSparsityPruner", "density": 0.25, "seed": 0}},
        ...             "policies": [{"pruner": {"instance_name": "dst"}, "starting_epoch": 0, "ending_epoch": 2}]}
        >>> scheduler = compress.dict_config(model, optimizer, schedule)
        >>> x, topologies = torch.randn(4, 8), []
        >>> for epoch in range(2):
        ...     scheduler.on_epoch_begin(epoch, optimizer)
        ...     topologies.append(scheduler.masks["weight"].clone())
        ...     for i in range(3):
        ...         scheduler.on_minibatch_begin(epoch, i, 3, optimizer)
        ...         optimizer.zero_grad(); model(x).pow(2).mean().backward()
        ...         scheduler.before_parameter_optimization(epoch, i, 3, optimizer)
        ...         optimizer.step()
        ...         scheduler.on_minibatch_end(epoch, i, 3, optimizer)
        ...     scheduler.on_epoch_end(epoch, optimizer)     # prune and regrow
        >>> [int(mask.sum()) for mask in topologies]     # 16 of the 64 weights are active, always
        [16, 16]
        >>> int((topologies[0] != topologies[1]).sum())  # 5 died and 5 others grew at the end of epoch 0
        10
    """

    def __init__(self, name: str, density: Optional[float] = None, sparsity: Optional[float] = None,
                 weights: WeightSpec = None, sparse_init: str = "uniform", death: str = "magnitude",
                 growth: str = "random", redistribution: str = "none", death_rate: float = 0.5,
                 death_rate_decay: str = "cosine", death_rate_floor: float = 0.005,
                 decay_epochs: Optional[int] = None, update_frequency: Union[str, int] = "epoch",
                 threshold: float = 0.001, set_negatives: str = "closest_to_zero", growth_momentum: float = 0.9,
                 seed: Optional[int] = None):
        super().__init__(name, weights)
        self.density = _density_from(density, sparsity)
        self.sparse_init = options.choice("sparse_init", sparse_init, pr.SPARSE_INIT)
        self.death = options.choice("death", death, pr.DEATH)
        self.growth = options.choice("growth", growth, pr.GROWTH)
        self.redistribution = options.choice("redistribution", redistribution, pr.REDISTRIBUTION)
        self.death_rate = options.number("death_rate", death_rate, minimum=0.0, maximum=1.0, min_open=True,
                                         max_open=True)
        self.death_rate_decay = options.choice("death_rate_decay", death_rate_decay, DECAY_MODES)
        self.death_rate_floor = options.number("death_rate_floor", death_rate_floor, minimum=0.0,
                                               maximum=self.death_rate)
        self.decay_epochs = options.optional(options.integer, "decay_epochs", decay_epochs, minimum=1)
        if update_frequency not in UPDATE_WORDS:
            try:
                options.integer("update_frequency", update_frequency, minimum=1)
            except ArgumentError:
                raise ArgumentError("update_frequency", f"expected 'epoch', 'never' or a positive number of "
                                                        f"minibatches, got {update_frequency!r}") from None
        self.update_frequency = update_frequency
        self.initial_threshold = options.number("threshold", threshold, minimum=0.0)
        self.set_negatives = options.choice("set_negatives", set_negatives, pr.SET_NEGATIVES)
        self.growth_momentum = options.number("growth_momentum", growth_momentum, minimum=0.0, maximum=1.0,
                                              max_open=True)
        seed = options.optional(options.integer, "seed", seed)
        self.seed = seed if seed is not None else torch.initial_seed()
        self._index: Optional[ParameterIndex] = None
        self._reset_state()

    def _reset_state(self) -> None:
        self.initialised = False
        self.targets: List[int] = []
        self.threshold = self.initial_threshold
        self.events = 0
        self.steps = 0
        self.decay_steps: Optional[int] = None
        self.momentum: Dict[str, torch.Tensor] = {}
        self._last_grads: Dict[str, torch.Tensor] = {}

    @property
    def uses_momentum(self) -> bool:
        """True when the growth or redistribution mode reads the pruner's momentum of the dense gradient."""
        return "momentum" in pr.GROWTH.needs(self.growth) + pr.REDISTRIBUTION.needs(self.redistribution)

    # -- binding -----------------------------------------------------------------------------------------------
    def bind(self, index: ParameterIndex) -> None:
        """Resolve the weights: the listed ones, or every non-bias parameter of 2+ dimensions."""
        if self.weight_patterns:
            self.weights = resolve_weights(index, self.weight_patterns, exclude=_CANNOT_REGROW)
        else:
            self.weights = [n for n in index.maskable()
                            if "bias" not in n and index.params[n].dim() >= 2 and not _CANNOT_REGROW(index.params[n])]
            if not self.weights:
                raise ArgumentError("weights", "the model has no trainable, non-empty parameter of 2 or more "
                                               "dimensions to make sparse")
        self._index = index

    # -- schedule ----------------------------------------------------------------------------------------------
    def planned(self, weight: str, step: HookContext) -> Optional[Target]:
        """The initial topology's sparsity of ``weight`` (its exact count, by ``sparse_init``). With a
        ``redistribution`` other than ``none`` the per-layer counts move with the data after the first update,
        and only the weights' total stays."""
        if self._index is None:
            return None
        shapes = [tuple(self._index.params[n].shape) for n in self.weights]
        i = self.weights.index(weight)
        count = pr.initial_counts(shapes, self.density, self.sparse_init)[i]
        return Target("sparsity", 1.0 - count / math.prod(shapes[i]))

    def current_death_rate(self) -> float:
        """The death rate after :attr:`steps` minibatches (cosine over :attr:`decay_steps`, or constant)."""
        if self.death_rate_decay == "constant":
            return self.death_rate
        if not self.decay_steps:
            return self.death_rate
        return cosine_decay(self.death_rate, self.steps, self.decay_steps, self.death_rate_floor)

    def _decay_epochs(self, timing) -> int:
        return self.decay_epochs if self.decay_epochs is not None else timing.ending - timing.first

    def observe_step(self, params: Mapping[str, torch.Tensor], minibatches_per_epoch: Optional[int], timing,
                     *, last_of_epoch: bool = False) -> bool:
        """Account for one optimizer step; returns True when a minibatch-cadence update is due now.

        Steps the death rate, updates the gradient momentum (``momentum`` modes) and keeps the gradient of the
        epoch's last minibatch (``gradient`` growth at the epoch's end).
        """
        self.steps += 1
        if self.decay_steps is None and minibatches_per_epoch:
            self.decay_steps = self._decay_epochs(timing) * int(minibatches_per_epoch)
        if self.uses_momentum:
            self._accumulate_momentum(params)
        if "gradient" in pr.GROWTH.needs(self.growth) and self.update_frequency == "epoch" and last_of_epoch:
            self._last_grads = {n: p.grad.detach().abs() for n, p in params.items() if p.grad is not None}
        return self.update_frequency not in UPDATE_WORDS and self.steps % self.update_frequency == 0

    def observe_epoch_end(self, steps_this_epoch: int, timing) -> None:
        """Fix the cosine's length from the first epoch when the loop never said how many minibatches it has."""
        if self.decay_steps is None and steps_this_epoch:
            self.decay_steps = self._decay_epochs(timing) * steps_this_epoch

    @torch.no_grad()
    def _accumulate_momentum(self, params: Mapping[str, torch.Tensor]) -> None:
        for name, p in params.items():
            if p.grad is None:
                continue
            m = self.momentum.get(name)
            if m is None:
                self.momentum[name] = p.grad.detach().clone()
            else:
                m.mul_(self.growth_momentum).add_(p.grad)

    # -- topology ----------------------------------------------------------------------------------------------
    def _generator(self, device: torch.device, *stream: int) -> torch.Generator:
        g = torch.Generator(device=device)
        g.manual_seed(_mix_seed(self.seed, *stream))
        return g

    @torch.no_grad()
    def initial_masks(self, params: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The initial topology: exactly ``round(density * N)`` active weights, split by ``sparse_init``."""
        shapes = [tuple(params[n].shape) for n in self.weights]
        self.targets = pr.initial_counts(shapes, self.density, self.sparse_init)
        masks = {}
        for i, (name, count) in enumerate(zip(self.weights, self.targets)):
            p = params[name]
            empty = torch.zeros(p.shape, dtype=torch.bool, device=p.device)
            masks[name] = pr.random_growth(empty, count, self._generator(p.device, 0, i))
        self.initialised = True
        log.info("%s: initial %s topology at density %.4f: %s", self.name, self.sparse_init, self.density,
                 ", ".join(f"{n} {c / params[n].numel():.3f}" for n, c in zip(self.weights, self.targets)))
        return masks

    def compute_masks(self, params, current, step: HookContext) -> Dict[str, torch.Tensor]:
        """The initial topology on the first call, then one prune-and-regrow event per call.

        Used as a plain pruner (through :class:`~compress.scheduling.policies.PruningPolicy`), a weight pruned and
        regrown
        in the same event keeps its value; :class:`DynamicSparsityPolicy` restarts it at zero.
        """
        if not self.initialised:
            return self.initial_masks(params)
        return self.prune_and_regrow(params, current, step).masks

    @torch.no_grad()
    def prune_and_regrow(self, params: Mapping[str, torch.Tensor], current: Mapping[str, Optional[torch.Tensor]],
                         step: Optional[HookContext] = None) -> TopologyUpdate:
        """One event: death by :attr:`death`, then growth by :attr:`growth` and :attr:`redistribution`.

        Args:
            params: the weights.
            current: their masks now (``None`` is read as "all active").
            step: the training position (logged only).
        """
        names = self.weights
        weights = [params[n] for n in names]
        masks = [current[n] if current.get(n) is not None else torch.ones_like(params[n], dtype=torch.bool)
                 for n in names]
        masks = [m.to(device=w.device, dtype=torch.bool) for m, w in zip(masks, weights)]
        active = [pr.count(m) for m in masks]
        rate = self.current_death_rate()
        momenta = ([self._momentum_of(n, params[n]) for n in names]
                   if "momentum" in pr.REDISTRIBUTION.needs(self.redistribution) else None)
        shares = pr.REDISTRIBUTION[self.redistribution](weights, masks, momenta, self.threshold)
        death = pr.DEATH[self.death](weights, masks, self._death_plan(weights, active, rate, shares))
        survivors = death.survivors
        if death.threshold is not None:
            self.threshold = death.threshold
        kept = [pr.count(s) for s in survivors]
        sizes = [w.numel() for w in weights]
        if shares is None:  # every layer regrows what it lost
            grow = [max(0, t - k) for t, k in zip(self.targets, kept)]
        else:
            total = max(0, sum(self.targets) - sum(kept))
            grow = pr.apportion(total, shares, [n - k for n, k in zip(sizes, kept)])
        new = self._growth(names, weights, survivors, grow, params)
        self.events += 1
        removed = {n: a - k for n, a, k in zip(names, active, kept)}
        update = TopologyUpdate(dict(zip(names, survivors)), dict(zip(names, new)), rate, removed,
                                dict(zip(names, grow)))
        log.info("%s: event %d%s, death rate %.4f: %d removed, %d grown", self.name, self.events,
                 f" (epoch {step.epoch})" if step is not None else "", rate, sum(removed.values()), sum(grow))
        return update

    def _momentum_of(self, name: str, param: torch.Tensor) -> torch.Tensor:
        m = self.momentum.get(name)
        return m if m is not None else torch.zeros_like(param)

    def _death_plan(self, weights, active, rate, shares) -> pr.DeathPlan:
        per_layer = []
        norm = sum(shares) if shares else 0.0
        for i, (w, a) in enumerate(zip(weights, active)):
            layer_rate = rate
            if shares is not None and norm > 0:
                layer_rate = pr.capped_death_rate(rate, 1.0 - a / w.numel(), shares[i] / norm, len(weights))
            per_layer.append(pr.removal_count(layer_rate, a))
        return pr.DeathPlan(rate=rate, active=tuple(active), per_layer=tuple(per_layer),
                            total=pr.removal_count(rate, sum(active)), threshold=self.threshold,
                            set_negatives=self.set_negatives)

    def _growth(self, names, weights, survivors, grow, params) -> List[torch.Tensor]:
        needs = pr.GROWTH.needs(self.growth)
        grow_fn = pr.GROWTH[self.growth]
        out = []
        for i, (name, w, s, g) in enumerate(zip(names, weights, survivors, grow)):
            gradient = None
            if "gradient" in needs:
                gradient = self._last_grads.get(name)
                if gradient is None:
                    gradient = params[name].grad
            inputs = pr.GrowthInputs(name, generator=self._generator(w.device, self.events + 1, i),
                                     momentum=self._momentum_of(name, w) if "momentum" in needs else None,
                                     gradient=gradient)
            try:
                out.append(grow_fn(s, g, inputs))
            except RuntimeError as exc:
                raise RuntimeError(f"{self.name}: {exc}") from None
        self._last_grads = {}
        return out

    # -- state -------------------------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        return {"initialised": self.initialised, "targets": list(self.targets), "threshold": self.threshold,
                "events": self.events, "steps": self.steps, "decay_steps": self.decay_steps, "seed": self.seed,
                "weights": list(self.weights),
                "momentum": {n: m.detach().clone() for n, m in self.momentum.items()}}

    def check_state(self, state: Any) -> None:
        options.fields((), state, self.state_dict())
        saved = options.names("weights", state.get("weights", self.weights), allow_empty=True)
        if self.weights and saved != list(self.weights):
            raise ArgumentError("weights", f"the saved state covers weights {saved}, this pruner {self.weights}")
        initialised = options.boolean("initialised", state.get("initialised", False))
        targets = options.sequence("targets", state.get("targets", []), options.integer, minimum=0)
        if initialised and len(targets) != len(self.weights):
            raise ArgumentError("targets", f"expected one count per weight ({len(self.weights)}), got {len(targets)}")
        params = self._index.params if self._index is not None else {}
        for i, (name, count) in enumerate(zip(self.weights, targets)):
            if name in params and count > params[name].numel():
                raise ArgumentError(("targets", i), f"{count} active weights in {name!r}, which has "
                                                    f"{params[name].numel()}")
        options.number("threshold", state.get("threshold", self.initial_threshold), minimum=0)
        for key in ("events", "steps"):
            options.integer(key, state.get(key, 0), minimum=0)
        options.optional(options.integer, "decay_steps", state.get("decay_steps"), minimum=0)
        options.integer("seed", state.get("seed", self.seed))
        self.check_per_weight("momentum", state.get("momentum", {}), lambda k, v: options.tensor(
            k, v, params[k[-1]].shape if k[-1] in params else None))

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        if not state:
            return
        self.initialised = bool(state.get("initialised", False))
        self.targets = [int(t) for t in state.get("targets", [])]
        self.threshold = float(state.get("threshold", self.initial_threshold))
        self.events = int(state.get("events", 0))
        self.steps = int(state.get("steps", 0))
        self.decay_steps = state.get("decay_steps")
        self.seed = int(state.get("seed", self.seed))
        params = self._index.params if self._index is not None else {}
        self.momentum = {n: m.to(params[n].device) if n in params else m.clone()
                         for n, m in state.get("momentum", {}).items()}
        self._last_grads = {}


@register_pruner
class SelfishRNNPruner(DynamicSparsityPruner):
    """Selfish-RNN (Liu et al., ICML 2021): uniform init, magnitude death, random growth, no redistribution.

    The death rate anneals along a cosine from ``death_rate`` to 0.005, stepped per minibatch, and the topology
    is updated at every epoch's end. Train with sparse NT-ASGD (:class:`compress.optim.SparseNTASGD`) as the
    paper does. Options as :class:`DynamicSparsityPruner`; the modes are fixed.

    Args:
        name: instance name.
        density: fraction kept, in (0, 1] (or ``sparsity``).
        sparsity: fraction pruned.
        weights: default every non-bias weight.
        sparse_init: ``uniform`` (the paper) or ``ER``.
        death_rate: initial death rate (the paper's recipes: 0.8 stacked LSTM, 0.5 RHN and ON-LSTM).
        death_rate_floor: the cosine's floor.
        decay_epochs: epochs the cosine spans (default the policy's).
        update_frequency: ``epoch`` or a number of minibatches.
        seed: seed of the random topology.

    Raises:
        ArgumentError: as :class:`DynamicSparsityPruner`.

    Example:
        >>> pruner = SelfishRNNPruner("selfish", density=0.33, death_rate=0.8)
        >>> pruner.death, pruner.growth, pruner.redistribution, pruner.death_rate_decay
        ('magnitude', 'random', 'none', 'cosine')
    """

    def __init__(self, name: str, density: Optional[float] = None, sparsity: Optional[float] = None,
                 weights: WeightSpec = None, sparse_init: str = "uniform", death_rate: float = 0.5,
                 death_rate_floor: float = 0.005, decay_epochs: Optional[int] = None,
                 update_frequency: Union[str, int] = "epoch", seed: Optional[int] = None):
        super().__init__(name, density, sparsity, weights, sparse_init=sparse_init, death="magnitude",
                         growth="random", redistribution="none", death_rate=death_rate, death_rate_decay="cosine",
                         death_rate_floor=death_rate_floor, decay_epochs=decay_epochs,
                         update_frequency=update_frequency, seed=seed)


@register_pruner
class SETPruner(DynamicSparsityPruner):
    """Sparse Evolutionary Training (Mocanu et al., 2018): ER init, SET death, random growth, constant rate.

    Every epoch the fraction ``death_rate`` (the paper's zeta, 0.3) of active weights dies, half among the
    smallest positive weights and half among the negative weights closest to zero, and as many random
    connections grow in the same layer.

    Args:
        name: instance name.
        density: fraction kept, in (0, 1] (or ``sparsity``).
        sparsity: fraction pruned.
        weights: default every non-bias weight.
        sparse_init: ``ER`` (the paper) or ``uniform``.
        death_rate: the paper's zeta.
        set_negatives: ``closest_to_zero`` (the paper) or ``most_negative`` (the Selfish-RNN code).
        update_frequency: ``epoch`` or a number of minibatches.
        seed: seed of the random topology.

    Raises:
        ArgumentError: as :class:`DynamicSparsityPruner`.

    Example:
        >>> pruner = SETPruner("set", sparsity=0.9)
        >>> pruner.density, pruner.sparse_init, pruner.death, pruner.death_rate
        (0.09999999999999998, 'ER', 'SET', 0.3)
    """

    def __init__(self, name: str, density: Optional[float] = None, sparsity: Optional[float] = None,
                 weights: WeightSpec = None, sparse_init: str = "ER", death_rate: float = 0.3,
                 set_negatives: str = "closest_to_zero", update_frequency: Union[str, int] = "epoch",
                 seed: Optional[int] = None):
        super().__init__(name, density, sparsity, weights, sparse_init=sparse_init, death="SET", growth="random",
                         redistribution="none", death_rate=death_rate, death_rate_decay="constant",
                         death_rate_floor=0.0, update_frequency=update_frequency, set_negatives=set_negatives,
                         seed=seed)


@register_pruner
class RigLPruner(DynamicSparsityPruner):
    """RigL (Evci et al., 2020): ER init, magnitude death, growth by the dense gradient, cosine-annealed rate.

    Every ``update_frequency`` minibatches (the paper's Delta T = 100) the fraction ``death_rate`` (alpha, 0.3,
    annealed along a cosine to 0) of each layer's active weights with the smallest magnitude dies, and as many
    inactive weights with the largest gradient magnitude grow, at zero. RigL stops updating after 75% of
    training: end the policy there (``ending_epoch``); the cosine spans the policy's epochs unless
    ``decay_epochs`` says otherwise.

    Args:
        name: instance name.
        density: fraction kept, in (0, 1] (or ``sparsity``).
        sparsity: fraction pruned.
        weights: default every non-bias weight.
        sparse_init: ``ER`` (the paper's ERK) or ``uniform``.
        death_rate: the paper's alpha.
        death_rate_floor: the cosine's floor.
        decay_epochs: epochs the cosine spans (default the policy's).
        update_frequency: minibatches between updates, or ``epoch``.
        seed: seed of the random initial topology.

    Raises:
        ArgumentError: as :class:`DynamicSparsityPruner`.

    Example:
        >>> pruner = RigLPruner("rigl", density=0.1)
        >>> pruner.growth, pruner.update_frequency, pruner.death_rate_floor
        ('gradient', 100, 0.0)
    """

    def __init__(self, name: str, density: Optional[float] = None, sparsity: Optional[float] = None,
                 weights: WeightSpec = None, sparse_init: str = "ER", death_rate: float = 0.3,
                 death_rate_floor: float = 0.0, decay_epochs: Optional[int] = None,
                 update_frequency: Union[str, int] = 100, seed: Optional[int] = None):
        super().__init__(name, density, sparsity, weights, sparse_init=sparse_init, death="magnitude",
                         growth="gradient", redistribution="none", death_rate=death_rate,
                         death_rate_decay="cosine", death_rate_floor=death_rate_floor, decay_epochs=decay_epochs,
                         update_frequency=update_frequency, seed=seed)
