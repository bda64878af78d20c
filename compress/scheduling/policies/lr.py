"""The LR-scheduler policy: step a ``torch.optim.lr_scheduler`` at the end of each active epoch."""
from __future__ import annotations

from typing import Any, Dict, Mapping

import torch

from compress import options
from compress.context import HookContext
from compress.distributed import mean_over_ranks
from compress.scheduling.policies.base import ScheduledTrainingPolicy


class LRPolicy(ScheduledTrainingPolicy):
    """Step a ``torch.optim.lr_scheduler`` at the end of each active epoch.

    ``ReduceLROnPlateau`` is stepped with the metric of its mode, taken from ``on_epoch_end(...,
    metrics={'min': val_loss, 'max': accuracy})`` as in Distiller, or from ``metrics=<float>``. Other schedulers
    are stepped with plain ``step()`` (PyTorch deprecated the ``step(epoch=...)`` that Distiller called).

    Args:
        lr_scheduler: the LR scheduler.

    Raises:
        ValueError: at an epoch's end, ``ReduceLROnPlateau`` gets no metric.

    Example:
        >>> import compress
        >>> model = torch.nn.Linear(2, 2)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        >>> schedule = {"lr_schedulers": {"halve": {"class": "StepLR", "step_size": 1, "gamma": 0.5}},
        ...             "policies": [{"lr_scheduler": {"instance_name": "halve"}, "starting_epoch": 0,
        ...                           "ending_epoch": 2}]}
        >>> scheduler = compress.dict_config(model, optimizer, schedule)
        >>> for epoch in range(4):
        ...     optimizer.step()                         # (the epoch's training)
        ...     scheduler.on_epoch_end(epoch, optimizer)
        >>> optimizer.param_groups[0]["lr"]             # halved at the end of epochs 0 and 1 only
        0.25
    """

    def __init__(self, lr_scheduler: Any):
        self.lr_scheduler = lr_scheduler

    def on_epoch_end(self, ctx: HookContext, **kwargs: Any) -> None:
        if isinstance(self.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            metrics = kwargs.get("metrics")
            if isinstance(metrics, Mapping):
                metrics = metrics.get(self.lr_scheduler.mode)
            if metrics is None:
                raise ValueError("ReduceLROnPlateau needs on_epoch_end(epoch, optimizer, metrics={'min': "
                                 "val_loss}) (or metrics=<float>)")
            self.lr_scheduler.step(mean_over_ranks(float(metrics)))  # the same LR on every rank
        else:
            self.lr_scheduler.step()

    def state_dict(self) -> Dict[str, Any]:
        return {"lr_scheduler": self.lr_scheduler.state_dict()}

    def check_state(self, state: Any) -> None:
        """The saved scheduler's fields must be of the kinds this one's are (torch's schedulers load any dict)."""
        options.fields((), state, ["lr_scheduler"])
        if "lr_scheduler" in state:
            options.like("lr_scheduler", state["lr_scheduler"], self.lr_scheduler.state_dict(), exact=False)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        if "lr_scheduler" in state:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])


