"""The policy of stage-wise pruning: alternate rate searches and retraining inside the user's loop."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional

import torch

from compress import options
from compress.context import HookContext
from compress.errors import ArgumentError, describe
from compress.pruning.base import SearchingPruner
from compress.pruning.criteria.groups import count_pruned
from compress.pruning.rate_search.search import call_evaluate
from compress.scheduling.policies.pruning import PruningPolicy
from compress.sparsity.masks import MaskStore

log = logging.getLogger(__name__)


PHASES = ("search", "retrain", "done")
#: The fields of a snapshot of the best recovered model (``best``, ``iteration_best`` in the state).
SNAPSHOT_FIELDS = ("value", "epoch", "sparsity", "rates", "weights", "masks")


class IterativePruningPolicy(PruningPolicy):
    """Alternate a rate search and retraining epochs, inside the user's loop, until pruning stops paying.

    At the start of an active epoch in the *search* phase it searches the group rates from the current
    (retrained) weights, prunes, and enters the *retrain* phase. At the end of every retraining epoch it
    evaluates the model: the iteration has *recovered* when the degradation from the unpruned model's value is
    at most the pruner's ``recovery_tolerance``. It keeps the best recovered weights and masks of the iteration
    and starts the next search as soon as an epoch recovers (``stop_at_recovery``) or after ``retrain_epochs``.
    It stops, and puts the best recovered weights and masks back into the model, when

    * a search cannot raise the sparsity by more than ``min_improvement``;
    * an iteration does not recover within ``retrain_epochs``, after ``retries`` further attempts from the last
      recovered model, each allowing the search half the previous *headroom*: the room between the recovered
      model's degradation and ``max_degradation``. Halving ``max_degradation`` itself would leave a recovered
      model that already sits near the tolerance no room at all, and end the run with a search that cannot
      improve. A recovered iteration restores the full headroom and the retries;
    * ``target_sparsity`` or ``max_iterations`` is reached.

    With ``retrain_epochs: 0`` it searches once (one-shot pruning) and keeps the result. After it stops, the masks
    stay in force and the loop may go on fine-tuning. Everything, the best weights included, is in
    :meth:`state_dict`, so a resumed run continues where it was.

    Args:
        pruner: a :class:`~compress.pruning.StageWisePruner`.
        args: no policy arguments are accepted.

    Raises:
        ArgumentError: any policy argument.

    Example:
        >>> from compress.pruning import StageWisePruner
        >>> from compress.scheduling import CompressionScheduler
        >>> model = torch.nn.Linear(10, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.arange(1.0, 11.0))
        >>> pruner = StageWisePruner("sipo", max_degradation=10.0, grouping="all_in_one", retrain_epochs=0,
        ...                          evaluate=lambda m: 55.0 - float(m.weight.detach().abs().sum()))
        >>> policy = IterativePruningPolicy(pruner)
        >>> scheduler = CompressionScheduler(model)
        >>> scheduler.add_policy(policy, epochs=[0])
        >>> scheduler.on_epoch_begin(0)
        >>> policy.finished, policy.stop_reason, policy.best["sparsity"]
        (True, 'one-shot', 0.4)
    """

    def __init__(self, pruner: SearchingPruner, args: Optional[Mapping[str, Any]] = None):
        if args:
            raise ArgumentError(next(iter(args)), "StageWisePruner's policy takes no args")
        super().__init__(pruner, None)
        self.pruner: SearchingPruner = pruner
        self.store: Optional[MaskStore] = None
        self.phase = "search"
        self.iteration = 0
        self.epochs_retrained = 0
        self.baseline: Optional[float] = None
        self.scale = 1.0
        self.retries_left = pruner.retries
        self.last_search_epoch: Optional[int] = None
        self.stop_reason: Optional[str] = None
        self.history: List[Dict[str, Any]] = []
        self.best: Optional[Dict[str, Any]] = None
        self.iteration_best: Optional[Dict[str, Any]] = None

    def allowed_degradation(self) -> float:
        """The degradation the next search may reach: the recovered model's own, plus ``scale`` (1, halved by
        every retry) times the headroom above it up to ``max_degradation``."""
        constraint = self.pruner.constraint
        if self.best is None or self.baseline is None:
            return constraint.max_degradation
        recovered = max(constraint.degradation(self.best["value"], self.baseline), 0.0)
        return recovered + self.scale * max(constraint.max_degradation - recovered, 0.0)

    @property
    def finished(self) -> bool:
        """True once the policy has stopped pruning (the best recovered model is in place)."""
        return self.phase == "done"

    def attach(self, masks: MaskStore) -> None:
        super().attach(masks)
        self.store = masks

    # -- snapshots of the best recovered model --------------------------------------------------------------
    def _sparsity(self) -> float:
        masks = {n: self.store.get(n) for n in self.pruner.weights}
        pruned, _ = count_pruned({n: m for n, m in masks.items() if m is not None})
        total = sum(self.store.parameter(n).numel() for n in self.pruner.weights)
        return pruned / max(total, 1)

    def _snapshot(self, value: float, epoch: Optional[int]) -> Dict[str, Any]:
        with torch.no_grad():
            return {
                "value": float(value), "epoch": epoch, "sparsity": self._sparsity(),
                "rates": dict(self.pruner.rates or {}),
                "weights": {n: self.store.parameter(n).detach().clone() for n in self.pruner.weights},
                "masks": {n: self.store.get(n).clone() for n in self.pruner.weights if n in self.store},
            }

    def _restore(self, snapshot: Mapping[str, Any], optimizer) -> None:
        with torch.no_grad():
            for name in self.pruner.weights:
                param = self.store.parameter(name)
                param.copy_(snapshot["weights"][name].to(param.device))
                mask = snapshot["masks"].get(name)
                if mask is None:
                    self.store.remove_mask(name)
                else:
                    self.store.set_mask(name, mask, optimizer)
        self.pruner.rates = dict(snapshot["rates"]) or None

    def restore_best(self, optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        """Put the best recovered weights and masks into the model (done automatically when the policy stops).

        When a loop that ends early (an epoch limit) calls it, an iteration still retraining counts if one of its
        epochs has already recovered: it is sparser than the last finished one.
        """
        if self.iteration_best is not None:
            self.best, self.iteration_best = self.iteration_best, None
            self.iteration += 1
        if self.best is not None:
            self._restore(self.best, optimizer)

    def _stop(self, reason: str, optimizer) -> None:
        self.phase = "done"
        self.stop_reason = reason
        self.restore_best(optimizer)
        log.info("%s: stopped after %d iterations (%s); kept sparsity %.4f with value %.4g", self.pruner.name,
                 self.iteration, reason, self.best["sparsity"] if self.best else 0.0,
                 self.best["value"] if self.best else float("nan"))

    # -- hooks ------------------------------------------------------------------------------------------------
    def on_epoch_begin(self, ctx: HookContext, **kwargs: Any) -> None:
        if self.phase != "search":
            return
        model = ctx.masks.model
        evaluate = self.pruner.require_evaluate()
        if self.best is None:  # the unpruned model is the first "recovered" state to fall back to
            self.baseline = call_evaluate(evaluate, model)
            self.best = self._snapshot(self.baseline, ctx.epoch)
        result = self.pruner.search(model, ctx.masks, evaluate, baseline=self.baseline,
                                    initial=self.best["rates"] or None, max_degradation=self.allowed_degradation(),
                                    optimizer=ctx.optimizer)
        self.history.append({"iteration": self.iteration, "epoch": ctx.epoch, "rates": result.rates,
                             "sparsity": result.sparsity, "search_value": (result.best or result.reference).value,
                             "evaluations": result.evaluations, "seconds": result.seconds,
                             "recovered_value": None, "retrain_epochs": 0})
        if not result.improved or result.sparsity <= self.best["sparsity"] + self.pruner.min_improvement:
            self._stop("sparsity stopped improving", ctx.optimizer)
            return
        if self.pruner.retrain_epochs == 0:
            self.best = self._snapshot(result.best.value, ctx.epoch)
            self.iteration += 1
            self._stop("one-shot", ctx.optimizer)
            return
        self.phase = "retrain"
        self.epochs_retrained = 0
        self.iteration_best = None
        self.last_search_epoch = ctx.epoch

    def on_epoch_end(self, ctx: HookContext, **kwargs: Any) -> None:
        if self.phase != "retrain":
            return
        self.epochs_retrained += 1
        value = call_evaluate(self.pruner.require_evaluate(), ctx.masks.model)
        recovered = self.pruner.recovery.satisfied(value, self.baseline)
        entry = self.history[-1]
        entry["retrain_epochs"] = self.epochs_retrained
        log.info("%s: iteration %d, retraining epoch %d: value %.4g (%s)", self.pruner.name, self.iteration,
                 self.epochs_retrained, value, "recovered" if recovered else "not recovered")
        if recovered and (self.iteration_best is None or self.pruner.better(value, self.iteration_best["value"])):
            self.iteration_best = self._snapshot(value, ctx.epoch)
            entry["recovered_value"] = value
        if not ((recovered and self.pruner.stop_at_recovery) or self.epochs_retrained >= self.pruner.retrain_epochs):
            return
        if self.iteration_best is not None:
            self.best, self.iteration_best = self.iteration_best, None
            self._restore(self.best, ctx.optimizer)
            self.iteration += 1
            self.phase = "search"
            self.scale, self.retries_left = 1.0, self.pruner.retries
            target = self.pruner.target_sparsity
            if target is not None and self.best["sparsity"] >= target:
                self._stop("target sparsity reached", ctx.optimizer)
            elif self.iteration >= self.pruner.max_iterations:
                self._stop("max_iterations reached", ctx.optimizer)
        elif self.retries_left > 0:
            self.retries_left -= 1
            self.scale /= 2
            self._restore(self.best, ctx.optimizer)
            self.phase = "search"
            log.info("%s: not recovered; retrying from the last recovered model, searching up to degradation %.4g",
                     self.pruner.name, self.allowed_degradation())
        else:
            self._stop("not recovered", ctx.optimizer)

    # -- state ------------------------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        return {"pruner": self.pruner.state_dict(), "phase": self.phase, "iteration": self.iteration,
                "epochs_retrained": self.epochs_retrained, "baseline": self.baseline, "scale": self.scale,
                "retries_left": self.retries_left, "last_search_epoch": self.last_search_epoch,
                "stop_reason": self.stop_reason, "history": [dict(h) for h in self.history],
                "best": self.best, "iteration_best": self.iteration_best}

    def check_state(self, state: Any) -> None:
        options.fields((), state, self.state_dict())
        with options.under("pruner"):
            self.pruner.check_state(state.get("pruner", {}))
        phase = options.choice("phase", state.get("phase", self.phase), PHASES)
        for key in ("iteration", "epochs_retrained", "retries_left"):
            options.integer(key, state.get(key, 0), minimum=0)
        options.optional(options.number, "baseline", state.get("baseline"))
        options.number("scale", state.get("scale", 1.0), minimum=0, min_open=True)
        options.optional(options.integer, "last_search_epoch", state.get("last_search_epoch"), minimum=0)
        stop_reason = state.get("stop_reason")
        if stop_reason is not None and not isinstance(stop_reason, str):
            raise ArgumentError("stop_reason", f"expected a string or null, got {describe(stop_reason)}")
        history = options.sequence("history", state.get("history", []), options.mapping, allow_empty=True)
        for key in ("best", "iteration_best"):
            if state.get(key) is not None:
                with options.under(key):
                    self._check_snapshot(state[key])
        if phase == "retrain":
            for key in ("baseline", "best"):
                if state.get(key) is None:
                    raise ArgumentError(key, "a policy in its retraining phase has one; this state has none")
            if not history:
                raise ArgumentError("history", "a policy in its retraining phase has a search in its history")

    def _check_snapshot(self, snapshot: Any) -> None:  # what _snapshot wrote and _restore will read
        params = {n: self.store.parameter(n) for n in self.pruner.weights} if self.store is not None else {}
        options.fields((), snapshot, SNAPSHOT_FIELDS)
        lacking = [k for k in SNAPSHOT_FIELDS if k not in snapshot]  # _snapshot writes all; _restore reads all
        if lacking:
            raise ArgumentError(lacking[0], f"missing: a snapshot has {', '.join(SNAPSHOT_FIELDS)}")
        options.number("value", snapshot.get("value"))
        options.optional(options.integer, "epoch", snapshot.get("epoch"), minimum=0)
        options.fraction("sparsity", snapshot.get("sparsity"), allow_one=True)
        rates = options.mapping("rates", snapshot.get("rates"), allow_empty=True)  # _restore: dict(rates)
        self.pruner.check_state({"rates": dict(rates) or None})
        weights = options.mapping("weights", snapshot.get("weights"), allow_empty=True)
        for name in self.pruner.weights:
            if name not in weights:
                raise ArgumentError("weights", f"lacks {name!r}")
        for part in ("weights", "masks"):
            for name, value in options.mapping(part, snapshot.get(part, {}), allow_empty=True).items():
                if name not in self.pruner.weights:
                    raise ArgumentError((part, name), "is not a weight of this pruner")
                options.tensor((part, name), value, params[name].shape if name in params else None)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        self.pruner.load_state_dict(state.get("pruner", {}))
        for key in ("phase", "iteration", "epochs_retrained", "baseline", "scale", "retries_left",
                    "last_search_epoch", "stop_reason", "best", "iteration_best"):
            if key in state:
                setattr(self, key, state[key])
        self.history = [dict(h) for h in state.get("history", [])]


