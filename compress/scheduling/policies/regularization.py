"""The regularization policy: add a regularizer's loss before the backward pass."""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from compress import options
from compress.context import HookContext
from compress.scheduling.policies.base import (
    LossComponent,
    PolicyLoss,
    ScheduledTrainingPolicy,
)
from compress.sparsity.names import ParameterIndex

#: The policy ``args`` a regularizer's policy takes.
REGULARIZATION_POLICY_ARGS = ("keep_mask",)


class RegularizationPolicy(ScheduledTrainingPolicy):
    """Add a regularizer's loss before the backward pass in active epochs.

    With a regularizer that has a ``threshold_criteria``, weights whose groups fall under the threshold are
    zeroed after each step; with ``keep_mask`` the resulting masks are kept after the last active epoch.

    Args:
        regularizer: the regularizer (has ``loss(params) -> Tensor`` and optionally ``threshold_masks``).
        keep_mask: keep the threshold masks from the last minibatch of the last active epoch.

    Raises:
        ArgumentError: ``keep_mask`` is not a boolean.

    Example:
        >>> import compress
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[1.0, -3.0]]))
        >>> schedule = {"regularizers": {"l1": {"class": "L1Regularizer", "reg_regims": {"weight": 0.1}}},
        ...             "policies": [{"regularizer": {"instance_name": "l1"}, "epochs": [0]}]}
        >>> scheduler = compress.dict_config(model, None, schedule)
        >>> loss = scheduler.before_backward_pass(0, 0, 1, torch.tensor(1.0))
        >>> round(loss.item(), 4)                        # 1 + 0.1 * (|1| + |-3|)
        1.4
    """

    def __init__(self, regularizer: Any, keep_mask: bool = False):
        self.regularizer = regularizer
        self.keep_mask = options.boolean("keep_mask", keep_mask)

    def bind(self, index: ParameterIndex) -> None:
        self.regularizer.bind(index)

    def before_backward_pass(self, ctx: HookContext, loss: torch.Tensor) -> Optional[PolicyLoss]:
        params = {n: ctx.masks.parameter(n) for n in self.regularizer.weights}
        reg = self.regularizer.loss(params)
        return PolicyLoss(loss + reg, [LossComponent(type(self.regularizer).__name__ + "_loss", reg)])

    def on_minibatch_end(self, ctx: HookContext) -> None:
        if getattr(self.regularizer, "threshold_criteria", None) is None:
            return
        params = {n: ctx.masks.parameter(n) for n in self.regularizer.weights}
        last = (ctx.epoch == self.timing.last and ctx.minibatches_per_epoch is not None
                and ctx.minibatch_id == ctx.minibatches_per_epoch - 1)
        for name, mask in self.regularizer.threshold_masks(params).items():
            if self.keep_mask and last:
                ctx.masks.set_mask(name, mask, ctx.optimizer)
            else:  # a one-shot mask: zero the weights now, keep no mask
                with torch.no_grad():
                    params[name].mul_(mask)

    def state_dict(self) -> Dict[str, Any]:
        return {}


