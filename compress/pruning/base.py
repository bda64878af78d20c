"""The pruner protocol: a pruner only decides *which* weights to keep.

How much and when comes from :mod:`compress.pruning.ramps` and the policy's timing; applying masks to weights,
gradients and optimizer state is :class:`compress.sparsity.MaskStore`'s job. A new pruner is one subclass of
:class:`Pruner`, registered with :func:`compress.register_pruner`.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from compress import options
from compress.context import HookContext, Timing
from compress.errors import ArgumentError, CompressError, KeyLike, key_path
from compress.sparsity.names import ParameterIndex

WeightSpec = Union[None, str, Sequence[str]]


class Target(NamedTuple):
    """What a pruner aims at for one weight at one training position, known before training (the schedule
    preview, :mod:`compress.scheduling.preview`).

    Attributes:
        kind: ``"sparsity"`` (the fraction pruned) or ``"threshold"`` (weights with ``|w|`` at or below it are
            pruned; the sparsity that gives depends on the weights).
        value: the number.
    """

    kind: str
    value: float


#: ``exclude(parameter) -> reason or None``: why a pruner or regularizer cannot use a parameter.
Exclude = Callable[[torch.Tensor], Optional[str]]


def frozen(param: torch.Tensor) -> Optional[str]:
    """An :data:`Exclude` for algorithms that act through gradients: frozen parameters get none."""
    return None if param.requires_grad else "is frozen (requires_grad=False): it gets no gradient"


def empty(param: torch.Tensor) -> Optional[str]:
    """An :data:`Exclude` for algorithms that need at least one element."""
    return "has no elements" if param.numel() == 0 else None


def excluding(*checks: Exclude) -> Exclude:
    """The first reason any of ``checks`` gives."""
    def exclude(param: torch.Tensor) -> Optional[str]:
        return next((reason for reason in (check(param) for check in checks) if reason), None)
    return exclude


def _usable(index: ParameterIndex, pattern: str, found: List[str], exclude: Optional[Exclude],
            key: KeyLike) -> List[str]:
    """``found`` without what ``exclude`` refuses: a pattern skips such parameters, an exact name is an error."""
    if exclude is None:
        return found
    reasons = {n: exclude(index.params[index.tensor_name(n)]) for n in found}
    usable = [n for n in found if not reasons[n]]
    if not usable:
        refused = next(n for n in found if reasons[n])
        what = "" if not index.is_pattern(pattern) else f"{pattern!r} matches only parameters that cannot be used: "
        raise ArgumentError(key, f"{what}{refused!r} {reasons[refused]}")
    return usable


def resolve_weights(index: ParameterIndex, patterns: Sequence[str], key: str = "weights",
                    gates: bool = False, exclude: Optional[Exclude] = None) -> List[str]:
    """Canonical names for ``patterns``; ``ArgumentError`` naming the failing entry (``weights[1]``).

    With ``gates``, an entry may carry a gate selector (``rnn.weight_hh_l0[gate=f]``) and resolves to a selection
    key (:meth:`~compress.sparsity.ParameterIndex.resolve`); a tensor listed whole covers its selections, and two
    entries selecting the same gate of one tensor are an error.

    Args:
        exclude: why a parameter cannot be used (:func:`frozen`, :func:`empty`); a glob or regex skips such
            parameters, an exact name of one is an error giving the reason.
    """
    names: List[str] = []
    for i, pattern in enumerate(patterns):
        try:
            found = index.resolve(pattern, gates=gates)
        except LookupError as exc:
            raise ArgumentError(key_path(key, i), str(exc)) from None
        found = _usable(index, pattern, found, exclude, key_path(key, i))
        names.extend(n for n in found if n not in names)
    whole = {n for n in names if n in index.params}
    names = [n for n in names if n in whole or index.tensor_name(n) not in whole]
    _check_disjoint(index, names, key)
    return index.order(names)


def _check_disjoint(index: ParameterIndex, keys: Sequence[str], key: Any) -> None:
    taken: Dict[Tuple[str, str], str] = {}
    for k in keys:
        selection = index.selection(k)
        if selection is None:
            continue
        for gate in selection.gates:
            other = taken.setdefault((selection.name, gate), k)
            if other != k:
                raise ArgumentError(key, f"{other!r} and {k!r} both select gate {gate!r} of {selection.name}; "
                                         f"each gate of a tensor may be listed once")


def resolve_targets(index: ParameterIndex, targets: Mapping[str, Any], key: str,
                    gates: bool = False, exclude: Optional[Exclude] = None) -> Dict[str, Any]:
    """Per-parameter values from a Distiller-style dict ``{name or pattern: value, '*': default}``.

    Exact names win over patterns, patterns over ``'*'``; ``'*'`` covers every parameter (biases too, as in
    Distiller) that ``exclude`` does not refuse (see :func:`resolve_weights`). With ``gates``, keys may carry gate
    selectors (``rnn.weight_hh_l0[gate=f]``, see :meth:`~compress.sparsity.ParameterIndex.resolve`): a tensor given
    whole *and* by gate gets the whole value on its remaining gates (one selection of them), so
    ``{'*': 0.5, 'rnn.weight_hh_l0[gate=f]': 0.9}`` prunes the forget gate to 0.9 and the rest of that tensor,
    together, to 0.5.

    Example:
        >>> from torch import nn
        >>> targets = resolve_targets(ParameterIndex(nn.GRU(2, 2)), {"weight_*": 0.5, "weight_hh_l0[gate=z]": 0.9},
        ...                           "levels", gates=True)
        >>> targets
        {'weight_ih_l0': 0.5, 'weight_hh_l0[gate=r,n]': 0.5, 'weight_hh_l0[gate=z]': 0.9}
    """
    options.mapping(key, targets)
    out: Dict[str, Any] = {}
    exact = [k for k in targets if k != "*" and not index.is_pattern(k)]
    patterns = [k for k in targets if k != "*" and k not in exact]
    for k in patterns[::-1] + exact:  # later assignments win: exact names last; first pattern beats later ones
        try:
            found = index.resolve(k, gates=gates)
        except LookupError as exc:
            raise ArgumentError(key_path(key, k), str(exc)) from None
        for name in _usable(index, k, found, exclude, key_path(key, k)):
            out[name] = targets[k]
    if "*" in targets:
        for name in index.maskable():
            if exclude is None or not exclude(index.params[name]):
                out.setdefault(name, targets["*"])
    selected = [k for k in out if k not in index.params]
    _check_disjoint(index, selected, key)
    for name in dict.fromkeys(index.tensor_name(k) for k in selected):
        if name in out:  # given whole too: the whole value goes to the gates no selection names
            value = out.pop(name)
            layout = index.gates[name]
            used = {g for k in selected if index.tensor_name(k) == name for g in index.selection(k).gates}
            rest = [g for g in layout.gates if g not in used]
            if rest:
                out[index.resolve(f"{name}[gate={','.join(rest)}]", gates=True)[0]] = value
    return {n: out[n] for n in index.order(out)}


def as_list(weights: WeightSpec) -> List[str]:
    """The weight names or patterns of a ``weights`` argument, as a list (``None``: none given)."""
    return [] if weights is None else options.names("weights", weights)


class Pruner(abc.ABC):
    """Base class of all pruners.

    Subclasses implement :meth:`compute_masks`. A pruner keeps no tensors of its own unless its
    algorithm needs them, and returns any such state from :meth:`state_dict`.

    Args:
        name: the instance name (the schedule's key).
        weights: names or patterns of the weights it prunes; resolved by :meth:`bind`.

    Raises:
        ArgumentError: ``weights`` is not a name or a list of names; at :meth:`bind`, it lists none or a name
            matches no parameter.

    Example:
        >>> from compress.scheduling import CompressionScheduler
        >>> class KeepPositive(Pruner):
        ...     def compute_masks(self, params, current, step):
        ...         return {n: params[n] > 0 for n in self.weights}
        >>> layer = nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.tensor([[1.0, -1.0], [-2.0, 2.0]]))
        >>> scheduler = CompressionScheduler(layer)
        >>> scheduler.add_policy(KeepPositive("positive", weights="weight"), epochs=[0])
        >>> scheduler.on_epoch_begin(0)
        >>> (layer.weight != 0).tolist()
        [[True, False], [False, True]]

    Registered with :func:`compress.register_pruner`, the same class is nameable in a schedule's ``pruners:``.
    """

    #: True when the pruner wants to be asked at every minibatch of its active epochs.
    prunes_every_minibatch: bool = False
    #: True when its weights may carry gate selectors (``rnn.weight_hh_l0[gate=f]``): the pruner then gets the
    #: selected rows as one tensor in ``params``/``current`` and returns their mask (the mask store merges it)
    gate_selectors: bool = False

    def __init__(self, name: str, weights: WeightSpec = None):
        self.name = name
        self.weight_patterns = as_list(weights)
        self.weights: List[str] = []

    def bind(self, index: ParameterIndex) -> None:
        """Resolve weight names against a model; raises ``ArgumentError`` naming what did not match."""
        if not self.weight_patterns:
            raise ArgumentError("weights", "lists no weights")
        self.weights = resolve_weights(index, self.weight_patterns, gates=self.gate_selectors)

    def check_timing(self, timing: Timing) -> None:  # noqa: B027  (most pruners run in any epochs)
        """Raise ``ArgumentError`` (naming the argument) if the pruner cannot run in the epochs of ``timing``; the
        policy calls it when it binds, so a schedule that cannot train is refused at load."""

    @abc.abstractmethod
    def compute_masks(self, params: Mapping[str, torch.Tensor], current: Mapping[str, Optional[torch.Tensor]],
                      step: HookContext) -> Dict[str, torch.Tensor]:
        """New keep-masks (bool, shaped like the weight) for some or all of :attr:`weights`.

        Args:
            params: canonical name → parameter, for this pruner's weights.
            current: canonical name → the mask in force now (``None`` if unmasked).
            step: the training position.
        """

    def planned(self, weight: str, step: HookContext) -> Optional[Target]:
        """What the pruner aims at for ``weight`` (a name in :attr:`weights`) at ``step``, if that is known without
        the data; ``None`` (the default) when it depends on the weights or a metric."""
        return None

    def state_dict(self) -> Dict[str, Any]:
        """State a resume needs (empty for pruners that are functions of the weights and the epoch)."""
        return {}

    def check_state(self, state: Any) -> None:
        """Raise unless :meth:`load_state_dict` accepts ``state`` and training can go on from it; changes nothing.

        The default accepts what :meth:`state_dict` writes now: the same fields, each of the same kind
        (:func:`compress.options.like`). Pruners whose state varies in shape check it themselves.

        Raises:
            ArgumentError: naming the field that is wrong.
        """
        options.like((), state, self.state_dict())

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (checked first: a bad state changes nothing)."""
        self.check_state(state)

    def check_per_weight(self, key: str, values: Any, check: Callable[..., Any]) -> Dict[str, Any]:
        """For :meth:`check_state`: ``values`` maps weights of this pruner to values that pass ``check(key, v)``."""
        options.mapping(key, values, allow_empty=True)
        for name, value in values.items():
            if name not in self.weights:
                raise ArgumentError((key, name), f"is not a weight of this pruner ({', '.join(self.weights)})")
            check((key, name), value)
        return dict(values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, weights={self.weights or self.weight_patterns})"


class PerWeightPruner(Pruner):
    """A pruner configured weight by weight with a Distiller-style map ``{name or pattern: value, '*': default}``.

    Subclasses name the constructor argument that holds the map in :attr:`targets_key`; :meth:`bind` resolves it
    into :attr:`targets` (canonical name → value) and prunes exactly those weights.
    """

    #: the attribute (and constructor argument) holding the per-weight map
    targets_key: str = "targets_spec"

    def bind(self, index: ParameterIndex) -> None:
        """Resolve the per-weight map against the model; ``ArgumentError`` names the entry that matches nothing."""
        self.targets = resolve_targets(index, getattr(self, self.targets_key), self.targets_key,
                                       gates=self.gate_selectors)
        self.weights = list(self.targets)


class FixedStructurePruner(Pruner):
    """A pruner whose masks are a structure fixed by the weight shapes, computed once in :meth:`bind`.

    Subclasses fill :attr:`structures` (each with a ``num_parameters``) and ``_masks`` (name → bool mask) in
    ``bind``; every call of :meth:`compute_masks` returns those masks, moved to the weights' device.

    Example:
        >>> from compress.pruning import BlockEmbeddingPruner
        >>> from compress.sparsity import ParameterIndex
        >>> pruner = BlockEmbeddingPruner("emb", weights="weight", blocks=2, density=0.5)
        >>> pruner.bind(ParameterIndex(nn.Embedding(6, 4)))
        >>> isinstance(pruner, FixedStructurePruner), pruner.num_parameters   # of 24
        (True, 12)
    """

    def __init__(self, name: str, weights: WeightSpec = None):
        super().__init__(name, weights)
        #: the structure behind the masks, keyed by weight (or layer) name
        self.structures: Dict[str, Any] = {}
        self._masks: Dict[str, torch.Tensor] = {}

    @property
    def num_parameters(self) -> int:
        """Trainable parameters the structures keep (see each structure's ``num_parameters``)."""
        return sum(s.num_parameters for s in self.structures.values())

    def compute_masks(self, params: Mapping[str, torch.Tensor], current: Mapping[str, Optional[torch.Tensor]],
                      step: HookContext) -> Dict[str, torch.Tensor]:
        for name, mask in self._masks.items():
            if mask.device != params[name].device:
                self._masks[name] = mask.to(params[name].device)
        return {name: mask.clone() for name, mask in self._masks.items()}

    def planned(self, weight: str, step: HookContext) -> Optional[Target]:
        """The fixed structure's sparsity."""
        mask = self._masks.get(weight)
        return None if mask is None else Target("sparsity", 1.0 - float(mask.float().mean()))


@dataclass
class TopologyUpdate:
    """The result of one prune-and-regrow event.

    Args:
        survivors: per weight, the mask after death (what is kept of the old topology).
        masks: per weight, the mask after growth (the new topology).
        death_rate: the death rate the event used.
        removed: weights that died, per weight.
        grown: weights that grew, per weight.

    Example:
        >>> old, new = torch.tensor([True, True, False]), torch.tensor([False, True, True])
        >>> update = TopologyUpdate(survivors={"w": old & new}, masks={"w": new}, death_rate=0.5,
        ...                         removed={"w": 1}, grown={"w": 1})
        >>> update.survivors["w"].tolist()
        [False, True, False]
    """

    survivors: Dict[str, torch.Tensor]
    masks: Dict[str, torch.Tensor]
    death_rate: float
    removed: Dict[str, int] = field(default_factory=dict)
    grown: Dict[str, int] = field(default_factory=dict)


class RegrowingPruner(Pruner):
    """The lifecycle of a pruner whose topology changes during training at a fixed density (dynamic sparsity).

    :class:`~compress.scheduling.policies.DynamicSparsityPolicy` drives every subclass: it asks for
    :meth:`initial_masks` at the start of the first active epoch, reports every optimizer step to
    :meth:`observe_step` (which says whether an update is due) and every epoch end to
    :meth:`observe_epoch_end`, and applies :meth:`prune_and_regrow`'s result in two steps (survivors, then the
    new topology) so grown weights restart at zero.

    Example:
        >>> from compress.pruning import SETPruner
        >>> from compress.scheduling.policies import policy_for
        >>> pruner = SETPruner("set", density=0.2)
        >>> isinstance(pruner, RegrowingPruner), type(policy_for(pruner)).__name__
        (True, 'DynamicSparsityPolicy')

    Attributes:
        initialised: True once :meth:`initial_masks` has run (saved in :meth:`state_dict`).
        update_frequency: ``'epoch'`` (update at every active epoch's end), a number of minibatches, or
            ``'never'`` (the initial topology stays).
    """

    initialised: bool = False
    update_frequency: Union[str, int] = "epoch"

    @abc.abstractmethod
    def initial_masks(self, params: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The initial sparse topology of :attr:`weights`."""

    @abc.abstractmethod
    def observe_step(self, params: Mapping[str, torch.Tensor], minibatches_per_epoch: Optional[int],
                     timing: Timing, *, last_of_epoch: bool) -> bool:
        """Called after every optimizer step of an active epoch; True when a minibatch-cadence update is due."""

    @abc.abstractmethod
    def observe_epoch_end(self, steps_this_epoch: int, timing: Timing) -> None:
        """Called at the end of every active epoch, before an epoch-cadence update."""

    @abc.abstractmethod
    def prune_and_regrow(self, params: Mapping[str, torch.Tensor], current: Mapping[str, Optional[torch.Tensor]],
                         step: Optional[HookContext] = None) -> TopologyUpdate:
        """One prune-and-regrow event."""


class SearchingPruner(Pruner):
    """The lifecycle of a pruner that searches its rates with a metric and alternates with retraining (SiPO).

    :class:`~compress.scheduling.policies.IterativePruningPolicy` drives every subclass: at a search epoch it
    calls :meth:`search` with the user's ``evaluate(model) -> float``; after each retraining epoch it asks
    :attr:`recovery` whether the metric is back, and :meth:`better` which recovered state to keep.

    Attributes:
        constraint: the quality constraint of a search (``max_degradation``, ``mode``, ``relative``).
        retrain_epochs: retraining epochs per iteration (0: one-shot).
        stop_at_recovery: start the next search at the first recovered epoch.
        min_improvement: the smallest sparsity gain that keeps the iterations going.
        target_sparsity: stop once the recovered model is this sparse (``None``: no target).
        max_iterations: most iterations.
        retries: further attempts after a failed recovery.
        rates: the rates of the last search (saved in :meth:`state_dict`).

    Example:
        >>> from compress.pruning import StageWisePruner
        >>> pruner = StageWisePruner("sipo", max_degradation=0.05, relative=True)
        >>> pruner.require_evaluate()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        compress.errors.CompressError: pruner 'sipo' (StageWisePruner) needs an evaluate(model) -> float callable...
        >>> pruner.better(95.0, 100.0), pruner.recovery.satisfied(100.0, 100.0)   # 'min': lower is better
        (True, True)
    """

    evaluate: Optional[Callable[[nn.Module], float]] = None

    @property
    @abc.abstractmethod
    def recovery(self) -> Any:
        """The test that a retrained model has recovered (an object with ``satisfied(value, baseline)``)."""

    @abc.abstractmethod
    def better(self, value: float, other: float) -> bool:
        """True when ``value`` is strictly better than ``other`` in the metric's direction."""

    @abc.abstractmethod
    def search(self, model: nn.Module, masks: Any, evaluate: Callable[[nn.Module], float], *,
               baseline: Optional[float] = None, initial: Optional[Mapping[str, float]] = None,
               max_degradation: Optional[float] = None, optimizer: Optional[torch.optim.Optimizer] = None,
               callback: Optional[Callable[..., None]] = None) -> Any:
        """Search rates from the model's current weights and prune it through ``masks``."""

    def require_evaluate(self) -> Callable[[nn.Module], float]:
        """The evaluate callable, or a :class:`~compress.errors.CompressError` saying how to give one."""
        if self.evaluate is None:
            raise CompressError(
                f"pruner {self.name!r} ({type(self).__name__}) needs an evaluate(model) -> float callable, which a "
                f"schedule cannot provide: pass file_config(..., evaluate=fn)")
        return self.evaluate
