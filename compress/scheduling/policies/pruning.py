"""The pruning policy: run a pruner in its epochs and hand its masks to the mask store."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from compress import options
from compress.context import HookContext
from compress.errors import ArgumentError
from compress.pruning.base import Pruner
from compress.scheduling.policies.base import ScheduledTrainingPolicy
from compress.sparsity.masks import MaskStore
from compress.sparsity.names import ParameterIndex

PRUNING_POLICY_ARGS = ("levels", "keep_mask", "mini_batch_pruning_frequency", "mask_on_forward_only",
                       "mask_gradients", "use_double_copies", "discard_masks_at_minibatch_end",
                       "skip_first_minibatch", "fold_batchnorm")


class PruningPolicy(ScheduledTrainingPolicy):
    """Run a pruner in its policy's epochs and hand its masks to the mask store.

    Masks are computed at the start of each active epoch (and, where asked, every k minibatches or every
    minibatch), applied at once, applied before each forward pass of an active epoch if a weight has changed
    since, and re-applied after every optimizer step in every epoch by the scheduler.

    The masking modes below apply to *this* pruner's weights only, and ``skip_first_minibatch`` defers pruning
    to minibatch 1 of every active epoch (how both differ from Distiller: ``docs/distiller-compat.md``).

    Args:
        pruner: the pruner.
        args: Distiller's policy ``args``: ``levels`` (overrides a level pruner's levels), ``keep_mask``
            (make forward-only masks permanent after the last epoch), ``mini_batch_pruning_frequency``,
            ``mask_on_forward_only``, ``mask_gradients``, ``use_double_copies``,
            ``discard_masks_at_minibatch_end``, ``skip_first_minibatch``, ``fold_batchnorm`` (Conv2d only:
            must be false here).

    Raises:
        ArgumentError: an unknown argument, a non-boolean flag, a negative ``mini_batch_pruning_frequency``,
            ``fold_batchnorm: true``, or ``levels`` for a pruner that takes none.

    Example:
        >>> import torch
        >>> from compress.pruning import SparsityLevelParameterPruner
        >>> from compress.scheduling import CompressionScheduler
        >>> model = torch.nn.Linear(4, 4, bias=False)
        >>> pruner = SparsityLevelParameterPruner("level", levels={"weight": 0.25})
        >>> policy = PruningPolicy(pruner, {"levels": {"weight": 0.75}, "mask_gradients": True})
        >>> scheduler = CompressionScheduler(model)
        >>> scheduler.add_policy(policy, epochs=[0])
        >>> scheduler.on_epoch_begin(0)
        >>> int((model.weight == 0).sum())               # the policy's levels win
        12
        >>> model.weight.sum().backward()
        >>> int((model.weight.grad == 0).sum())          # and pruned weights get no gradient
        12
    """

    def __init__(self, pruner: Pruner, args: Optional[Mapping[str, Any]] = None):
        args = dict(args or {})
        unknown = sorted(set(args) - set(PRUNING_POLICY_ARGS))
        if unknown:
            raise ArgumentError(unknown[0], f"unknown pruning policy argument "
                                            f"(accepted: {', '.join(PRUNING_POLICY_ARGS)})")
        for key in PRUNING_POLICY_ARGS:
            if key not in ("levels", "mini_batch_pruning_frequency"):
                options.boolean(key, args.get(key, False))
        if args.get("fold_batchnorm"):
            raise ArgumentError("fold_batchnorm", "folds BatchNorm into Conv2d; recurrent models have none to fold")
        freq = options.integer("mini_batch_pruning_frequency", args.get("mini_batch_pruning_frequency", 0), minimum=0)
        levels = args.get("levels")
        if levels is not None:
            check = getattr(pruner, "check_levels", None)
            if check is None:
                raise ArgumentError("levels", f"only level pruners take levels; {type(pruner).__name__} does not")
            levels = check(levels)  # the pruner's own check: same rules as its constructor's levels
        self.pruner = pruner
        self.levels = levels
        self.keep_mask = args.get("keep_mask", False)
        self.mini_batch_pruning_frequency = freq
        self.mask_on_forward_only = args.get("mask_on_forward_only", False)
        self.mask_gradients = args.get("mask_gradients", False)
        self.use_double_copies = args.get("use_double_copies", False)
        self.discard_masks_at_minibatch_end = args.get("discard_masks_at_minibatch_end", False)
        self.skip_first_minibatch = args.get("skip_first_minibatch", False)

    def bind(self, index: ParameterIndex) -> None:
        """Resolve the pruner's weights against the model."""
        if self.levels is not None:
            self.pruner.levels = dict(self.levels)
        self.pruner.bind(index)
        self.pruner.check_timing(self.timing)

    def attach(self, masks: MaskStore) -> None:
        """Set the masking modes of the pruner's weights (gradient hooks where ``mask_gradients``)."""
        for name in self.pruner.weights:
            masks.configure(name, forward_only=self.mask_on_forward_only, double_copies=self.use_double_copies,
                            mask_gradients=self.mask_gradients)

    def _prune(self, ctx: HookContext) -> None:
        store = ctx.masks
        step = ctx.with_timing(self.timing)
        params = {n: store.parameter(n) for n in self.pruner.weights}
        current = {n: store.get(n) for n in self.pruner.weights}
        for name, mask in self.pruner.compute_masks(params, current, step).items():
            store.set_mask(name, mask, ctx.optimizer)

    def _first_epoch(self, ctx: HookContext) -> bool:
        return self.timing is not None and ctx.epoch == self.timing.first

    def on_epoch_begin(self, ctx: HookContext, **kwargs: Any) -> None:
        # skip_first_minibatch defers only the policy's first pruning (to minibatch 1), as Distiller's does
        if not (self.skip_first_minibatch and self._first_epoch(ctx)):
            self._prune(ctx)

    def on_minibatch_begin(self, ctx: HookContext) -> None:
        mb = ctx.minibatch_id
        # Distiller counts minibatches over the whole run (epoch * minibatches_per_epoch + minibatch) for the
        # frequency, and never re-prunes at an epoch's minibatch 0 (on_epoch_begin did)
        run_minibatch = ctx.epoch * (ctx.minibatches_per_epoch or 0) + mb
        if mb > 0 and (self.pruner.prunes_every_minibatch or (self.mini_batch_pruning_frequency
                                                               and run_minibatch % self.mini_batch_pruning_frequency
                                                               == 0)):
            self._prune(ctx)
        elif self.skip_first_minibatch and mb == 1 and self._first_epoch(ctx):
            self._prune(ctx)
        ctx.masks.apply(self.pruner.weights)

    def before_parameter_optimization(self, ctx: HookContext) -> None:
        if self.use_double_copies:
            ctx.masks.restore_unmasked()

    def on_minibatch_end(self, ctx: HookContext) -> None:
        if self.discard_masks_at_minibatch_end:
            for name in self.pruner.weights:
                ctx.masks.remove_mask(name)

    def on_epoch_end(self, ctx: HookContext, **kwargs: Any) -> None:
        if self.keep_mask and ctx.epoch == self.timing.last:
            for name in self.pruner.weights:
                ctx.masks.configure(name, mask_gradients=self.mask_gradients)
                mask = ctx.masks.get(name)
                if mask is not None:
                    ctx.masks.set_mask(name, mask, ctx.optimizer)

    def state_dict(self) -> Dict[str, Any]:
        return {"pruner": self.pruner.state_dict()}

    def check_state(self, state: Any) -> None:
        options.fields((), state, ["pruner"])
        with options.under("pruner"):
            self.pruner.check_state(state.get("pruner", {}))

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        self.pruner.load_state_dict(state.get("pruner", {}))


def policy_pruners(policies: List[ScheduledTrainingPolicy]) -> List[Pruner]:
    """The pruners behind a list of policies, in order, each once.

    Args:
        policies: any policies; those that are not :class:`PruningPolicy` s are skipped.

    Returns:
        The pruners, without repeats.

    Example:
        >>> from compress.pruning import SparsityLevelParameterPruner
        >>> pruner = SparsityLevelParameterPruner("level", levels={"w": 0.5})
        >>> [p.name for p in policy_pruners([PruningPolicy(pruner), PruningPolicy(pruner)])]
        ['level']
    """
    out: List[Pruner] = []
    for p in policies:
        if isinstance(p, PruningPolicy) and p.pruner not in out:
            out.append(p.pruner)
    return out
