"""The compression scheduler: routes a training loop's hooks to the policies active in each epoch.

It knows no algorithm. Its only fixed duty is the sparsity invariant: after every optimizer step, in every
epoch, pruned weights (and their optimizer state) are set back to exactly zero.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from compress import options
from compress.context import Timing
from compress.distributed import check_identical, is_distributed
from compress.errors import ArgumentError, CheckpointError, describe
from compress.pruning.base import Pruner
from compress.scheduling.metrics import epoch_metrics
from compress.scheduling.policies import policy_for
from compress.scheduling.policies.base import (
    HookContext,
    PolicyLoss,
    ScheduledTrainingPolicy,
)
from compress.sparsity.masks import MaskStore, ParameterMaskers

log = logging.getLogger(__name__)

STATE_FORMAT = "compress.scheduler"


class CompressionScheduler:
    """Calls policies from the training loop, with Distiller's hook names and signatures.

    A loop written for Distiller works unchanged::

        for epoch in range(epochs):
            scheduler.on_epoch_begin(epoch)
            for i, (x, y) in enumerate(batches):
                scheduler.on_minibatch_begin(epoch, i, n, optimizer)
                loss = criterion(model(x), y)
                loss = scheduler.before_backward_pass(epoch, i, n, loss, optimizer)
                optimizer.zero_grad(); loss.backward()
                scheduler.before_parameter_optimization(epoch, i, n, optimizer)
                optimizer.step()
                scheduler.on_minibatch_end(epoch, i, n, optimizer)
            scheduler.on_epoch_end(epoch, optimizer, metrics={'min': val_loss})

    Args:
        model: the model being compressed.
        optimizer: optional; any hook's ``optimizer`` argument also sets it. When known, optimizer state at
            pruned positions is zeroed.

    Attributes:
        masks: the model's :class:`~compress.sparsity.MaskStore`.
        policies: ``(kind, instance name, policy)`` in the order they were added.
        components: the schedule's instances by section and name, when built from a schedule.

    Example:
        >>> from compress.pruning import SparsityLevelParameterPruner
        >>> model = nn.Linear(4, 4, bias=False)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> scheduler = CompressionScheduler(model, optimizer)
        >>> scheduler.add_policy(SparsityLevelParameterPruner("level", {"weight": 0.5}), epochs=[0])
        >>> scheduler.on_epoch_begin(0)
        >>> model(torch.ones(2, 4)).sum().backward()
        >>> optimizer.step()                             # the step writes the pruned weights too...
        >>> scheduler.on_minibatch_end(0, 0, 1)          # ...and the scheduler zeroes them again
        >>> int((model.weight == 0).sum()), sorted(scheduler.state_dict())
        (8, ['format', 'masks', 'policies', 'position', 'version'])
    """

    def __init__(self, model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None):
        self.model = model
        self.masks = MaskStore(model, optimizer)
        self.policies: List[Tuple[str, str, ScheduledTrainingPolicy]] = []
        #: the schedule's instances by section and name (``{'pruners': {'l0_rnn_pruner': ...}}``)
        self.components: Dict[str, Dict[str, Any]] = {}
        self.epoch: Optional[int] = None
        self.minibatch_id: Optional[int] = None
        #: under torch.distributed, compare every rank's masks (one small collective) at every epoch boundary and
        #: after any hook that changed a mask; a difference is a RankMismatchError naming the tensor
        self.check_masks_across_ranks = True
        self._checked_changes = -1
        self._metrics_callbacks: List[Callable[[Dict[str, float]], Any]] = []
        self._metrics_masks: Optional[Dict[str, torch.Tensor]] = None

    @property
    def optimizer(self) -> Optional[torch.optim.Optimizer]:
        return self.masks.optimizer

    @property
    def zeros_mask_dict(self) -> ParameterMaskers:
        """Distiller's ``zeros_mask_dict``, read only: parameter name -> an object with ``.mask`` (0/1 in the
        parameter's dtype, or ``None``). Masks are changed through :attr:`masks`."""
        return ParameterMaskers(self.masks)

    def add_metrics_callback(self, callback: Callable[[Dict[str, float]], Any]) -> None:
        """Call ``callback(record)`` after every :meth:`on_epoch_end` with the epoch's metrics: sparsity (values
        and masks) per masked weight, prune/regrow counts, LR and the loop's ``metrics`` (keys:
        :mod:`compress.scheduling.metrics`). ``compress.reports.CSVMetricsWriter(path)`` and
        ``TensorBoardWriter(logdir)`` are ready-made callbacks.

        Example:
            >>> model = nn.Linear(3, 3, bias=False)
            >>> scheduler = CompressionScheduler(model, torch.optim.SGD(model.parameters(), lr=0.1))
            >>> records = []
            >>> scheduler.add_metrics_callback(records.append)
            >>> scheduler.on_epoch_end(0, metrics={"min": 4.2})
            >>> records
            [{'epoch': 0, 'lr': 0.1, 'metric/min': 4.2}]
        """
        if not callable(callback):
            raise TypeError(f"add_metrics_callback: {callback!r} is not callable")
        if not self._metrics_callbacks:  # the first record's counts are against the masks held now
            self._snapshot_metrics_masks()
        self._metrics_callbacks.append(callback)

    def _snapshot_metrics_masks(self) -> None:
        """The masks the next metrics record counts pruned/regrown positions against (none: the dense model)."""
        self._metrics_masks = {name: mask.clone() for name, mask in self.masks.items()} or None

    def add_policy(self, policy: Union[ScheduledTrainingPolicy, Pruner], epochs: Optional[Sequence[int]] = None,
                   starting_epoch: Optional[int] = None, ending_epoch: Optional[int] = None,
                   frequency: int = 1, *, kind: str = "policy", name: Optional[str] = None) -> None:
        """Schedule ``policy`` for an explicit epoch list, or for ``range(starting_epoch, ending_epoch, frequency)``.

        Args:
            policy: the policy, or a pruner (it gets the policy its lifecycle asks for,
                :func:`~compress.scheduling.policies.policy_for`). Its ``bind(index)`` (names resolved; may
                raise) and then its ``attach(masks)`` (changes to the model) are called now.
            epochs: explicit epochs.
            starting_epoch: first epoch of the range.
            ending_epoch: end of the range, exclusive.
            frequency: step of the range.
            kind: the schedule section the policy came from (``pruner``, ``lr_scheduler``, ...), kept in the state.
            name: the instance name, kept in the state so a resume can check it matches.
        """
        if isinstance(policy, Pruner):
            kind, name = "pruner", name or policy.name
            policy = policy_for(policy)
        if epochs is not None:
            timing = Timing(epochs=tuple(epochs))
        else:
            timing = Timing(starting_epoch=starting_epoch, ending_epoch=ending_epoch, frequency=frequency)
        policy.timing = timing
        bind = getattr(policy, "bind", None)
        if bind is not None:
            bind(self.masks.index)
        self.attach_policy(policy, kind=kind, name=name)

    def attach_policy(self, policy: ScheduledTrainingPolicy, *, kind: str = "policy",
                      name: Optional[str] = None) -> None:
        """Append a policy whose ``timing`` is set and that has bound, calling its ``attach(masks)``.

        :func:`~compress.scheduling.file_config` binds every policy of a schedule first and attaches them only
        when all have bound, so that a schedule that fails to load leaves the model untouched.
        """
        attach = getattr(policy, "attach", None)
        if attach is not None:
            attach(self.masks)
        self.policies.append((kind, name or type(policy).__name__, policy))

    def _remember(self, optimizer):
        if optimizer is not None:
            self.masks.optimizer = optimizer

    def _active(self, epoch: int):
        return [p for _, _, p in self.policies if p.timing.is_active(epoch)]

    def _ctx(self, epoch, minibatch_id=0, minibatches_per_epoch=None):
        return HookContext(epoch, minibatch_id, minibatches_per_epoch, self.masks.optimizer, self.masks)

    # -- hooks ----------------------------------------------------------------------------------------------
    def on_epoch_begin(self, epoch: int, optimizer: Optional[torch.optim.Optimizer] = None, **kwargs: Any) -> None:
        """Start of an epoch: pruners scheduled now compute and apply their masks."""
        self._remember(optimizer)
        self.epoch, self.minibatch_id = epoch, None
        ctx = self._ctx(epoch)
        for policy in self._active(epoch):
            policy.on_epoch_begin(ctx, **kwargs)
        self._check_masks(force=True)


    def on_minibatch_begin(self, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                           optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        """Before the forward pass."""
        self._remember(optimizer)
        self.epoch, self.minibatch_id = epoch, minibatch_id
        ctx = self._ctx(epoch, minibatch_id, minibatches_per_epoch)
        for policy in self._active(epoch):
            policy.on_minibatch_begin(ctx)
        self._check_masks(force=False)


    def before_backward_pass(self, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                             loss: torch.Tensor, optimizer: Optional[torch.optim.Optimizer] = None,
                             return_loss_components: bool = False) -> Union[torch.Tensor, PolicyLoss]:
        """Let policies add loss terms (regularizers); returns the loss, or a ``PolicyLoss`` if asked."""
        self._remember(optimizer)
        ctx = self._ctx(epoch, minibatch_id, minibatches_per_epoch)
        overall, components = loss, []
        for policy in self._active(epoch):
            out = policy.before_backward_pass(ctx, overall)
            if out is None:
                continue
            if not isinstance(out, PolicyLoss):
                raise TypeError(f"{type(policy).__name__}.before_backward_pass must return None or a PolicyLoss, "
                                f"got {type(out).__name__}")
            overall = out.overall_loss
            components.extend(out.loss_components)
        return PolicyLoss(overall, components) if return_loss_components else overall

    def before_parameter_optimization(self, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                                      optimizer: torch.optim.Optimizer) -> None:
        """After ``backward()``, before ``optimizer.step()``."""
        self._remember(optimizer)
        ctx = self._ctx(epoch, minibatch_id, minibatches_per_epoch)
        for policy in self._active(epoch):
            policy.before_parameter_optimization(ctx)

    def on_minibatch_end(self, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                         optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        """After ``optimizer.step()``: re-mask every masked weight (every epoch), then the active policies."""
        self._remember(optimizer)
        self.masks.after_step()
        ctx = self._ctx(epoch, minibatch_id, minibatches_per_epoch)
        for policy in self._active(epoch):
            policy.on_minibatch_end(ctx)
        self._check_masks(force=False)


    def on_epoch_end(self, epoch: int, optimizer: Optional[torch.optim.Optimizer] = None, **kwargs: Any) -> None:
        """End of an epoch (pass ``metrics={'min': val_loss}`` for ``ReduceLROnPlateau``)."""
        self._remember(optimizer)
        ctx = self._ctx(epoch)
        for policy in self._active(epoch):
            policy.on_epoch_end(ctx, **kwargs)
        self._check_masks(force=True)
        self.epoch, self.minibatch_id = epoch + 1, None
        if self._metrics_callbacks:
            record, self._metrics_masks = epoch_metrics(self.masks, epoch, self.optimizer, kwargs.get("metrics"),
                                                        self._metrics_masks)
            for callback in self._metrics_callbacks:
                callback(dict(record))

    def _check_masks(self, force: bool) -> None:
        # At epoch boundaries always (every rank gets there); within an epoch only when a mask changed, which the
        # schedule's own timing (the same on every rank) decides.
        if not self.check_masks_across_ranks or not is_distributed():
            return
        if force or self.masks.changes != self._checked_changes:
            check_identical(dict(self.masks.items()), "mask")
            self._checked_changes = self.masks.changes

    def mask_all_weights(self, is_forward: bool = True) -> None:
        """Apply every mask now (Distiller's name); with ``is_forward=False`` forward-only masks are skipped."""
        if is_forward:
            self.masks.apply()
        else:
            self.masks.after_step()

    # -- state ----------------------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Masks, every policy's (and its algorithm's) state, and the epoch/minibatch position."""
        return {
            "format": STATE_FORMAT,
            "version": 1,
            "masks": self.masks.state_dict(),
            "policies": [{"kind": k, "name": n, "class": p.algorithm, "state": p.state_dict()}
                         for k, n, p in self.policies],
            "position": {"epoch": self.epoch, "minibatch_id": self.minibatch_id},
        }

    def check_state(self, state: Any) -> None:
        """Raise :class:`CheckpointError` unless :meth:`load_state_dict` would accept ``state``; changes nothing.

        Everything is checked against this scheduler and its model: the policies (kinds, names, classes, and each
        policy's own state through its ``check_state``), the masks (names and shapes), the position.
        """
        if not isinstance(state, Mapping):
            raise CheckpointError(f"scheduler: expected a mapping, got {describe(state)}")
        if "masks_dict" in state and "format" not in state:  # Distiller's: masks only
            self._check_saved_masks("masks_dict", state)
            return
        if state.get("format") != STATE_FORMAT:
            raise CheckpointError("scheduler.format: not a compress scheduler state (no 'format': "
                                  "'compress.scheduler')")
        try:
            options.fields((), state, ["format", "version", "masks", "policies", "position"])
            options.choice("version", state.get("version"), [1])
            saved = options.sequence("policies", state.get("policies", []), options.mapping, allow_empty=True)
        except ArgumentError as exc:
            raise CheckpointError(f"scheduler.{exc}") from None
        mine = [(k, n, p.algorithm) for k, n, p in self.policies]
        theirs = [(p.get("kind"), p.get("name"), p.get("class")) for p in saved]
        if mine != theirs:
            raise CheckpointError(f"scheduler.policies: the saved scheduler has policies {describe(theirs)}, this "
                                  f"one has {mine}: resume with the schedule the checkpoint was made with")
        self._check_saved_masks("masks", state.get("masks", {}))
        for i, ((kind, name, policy), entry) in enumerate(zip(self.policies, saved)):
            try:
                options.fields(("policies", i), entry, ["kind", "name", "class", "state"])
                with options.under("policies", i, "state"):
                    policy.check_state(entry.get("state", {}))
            except ArgumentError as exc:
                raise CheckpointError(f"scheduler.{exc.key} ({kind} {name}): {exc.message}") from None
        try:
            position = options.fields("position", state.get("position", {}), ["epoch", "minibatch_id"])
            for key in ("epoch", "minibatch_id"):
                options.optional(options.integer, ("position", key), position.get(key), minimum=0)
        except ArgumentError as exc:
            raise CheckpointError(f"scheduler.{exc}") from None

    def _check_saved_masks(self, key: str, state: Any) -> None:
        try:
            self.masks.parse_masks(state)
        except CheckpointError as exc:
            raise CheckpointError(f"scheduler.{key}: {exc}") from None

    def load_state_dict(self, state: Mapping[str, Any], normalize_dataparallel_keys: bool = False) -> None:
        """Restore :meth:`state_dict`; Distiller's ``{'masks_dict': {...}}`` is accepted too (masks only).

        The policies must be those of the schedule that saved the state (same kinds and instance names, in order).
        The whole state is checked (:meth:`check_state`) before anything is changed.

        Raises:
            CheckpointError: the state is foreign, or its policies, their states or its masks do not fit this
                scheduler and model.
        """
        if "masks_dict" in state and "format" not in state and normalize_dataparallel_keys:
            masks = {k[len("module."):] if isinstance(k, str) and k.startswith("module.") else k: v
                     for k, v in dict(state["masks_dict"]).items()}
            state = {"masks_dict": masks}
        self.check_state(state)
        if "masks_dict" in state and "format" not in state:
            self.masks.load_state_dict({"masks_dict": dict(state["masks_dict"])})
        else:
            self._load_policies_and_position(state)
        if self._metrics_callbacks:  # a resumed run's first record counts against the masks it resumed with
            self._snapshot_metrics_masks()

    def _load_policies_and_position(self, state: Mapping[str, Any]) -> None:
        saved = state["policies"]
        self.masks.load_state_dict(state["masks"])
        for (_, _, policy), entry in zip(self.policies, saved):
            policy.load_state_dict(entry.get("state", {}))
        position = state.get("position", {})
        self.epoch, self.minibatch_id = position.get("epoch"), position.get("minibatch_id")
