"""LR schedulers a schedule may name: every class of ``torch.optim.lr_scheduler``, plus Distiller's
``MultiStepMultiGammaLR``."""
from __future__ import annotations

import bisect
import inspect
from typing import List, Sequence

import torch
from torch.optim import lr_scheduler as _torch_lr

from compress import options
from compress.errors import ArgumentError
from compress.registry import LR_SCHEDULERS, register_lr_scheduler

for _name, _cls in vars(_torch_lr).items():
    if (inspect.isclass(_cls) and not _name.startswith("_") and _name != "LRScheduler"
            and (issubclass(_cls, _torch_lr.LRScheduler) or issubclass(_cls, _torch_lr.ReduceLROnPlateau))):
        LR_SCHEDULERS.register(_cls, name=_name)


@register_lr_scheduler
class MultiStepMultiGammaLR(_torch_lr.LRScheduler):
    """Multiply the LR by ``gammas[i]`` at ``milestones[i]``; the factors accumulate (Distiller's class).

    Args:
        optimizer: the optimizer.
        milestones: increasing epochs (integers >= 0).
        gammas: one factor per milestone (finite, >= 0).
        last_epoch: index of the last epoch (-1 to start).

    Raises:
        ArgumentError: ``milestones`` not increasing, or not one gamma per milestone.

    Example:
        >>> optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0)
        >>> lr = MultiStepMultiGammaLR(optimizer, milestones=[1, 3], gammas=[0.5, 0.1])
        >>> lrs = []
        >>> for epoch in range(4):
        ...     lrs.append(round(optimizer.param_groups[0]["lr"], 4))
        ...     optimizer.step(); lr.step()
        >>> lrs                                          # x0.5 from epoch 1, x0.05 from epoch 3
        [1.0, 0.5, 0.5, 0.05]
    """

    def __init__(self, optimizer: torch.optim.Optimizer, milestones: Sequence[int], gammas: Sequence[float],
                 last_epoch: int = -1):
        milestones = options.sequence("milestones", milestones, options.integer, minimum=0)
        gammas = options.sequence("gammas", gammas, options.number, minimum=0)
        if list(milestones) != sorted(milestones):
            raise ArgumentError("milestones", f"must be increasing, got {list(milestones)}")
        if len(milestones) != len(gammas):
            raise ArgumentError("gammas", f"needs one factor per milestone ({len(milestones)}), got {len(gammas)}")
        self.milestones = list(milestones)
        self.multiplicative_gammas: List[float] = [1.0]
        for g in gammas:
            self.multiplicative_gammas.append(self.multiplicative_gammas[-1] * float(g))
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        idx = bisect.bisect_right(self.milestones, self.last_epoch)
        return [base * self.multiplicative_gammas[idx] for base in self.base_lrs]
