"""The LR-scheduler policy: step a ``torch.optim.lr_scheduler`` at the end of each active epoch."""
from __future__ import annotations

from typing import Any, Dict, Mapping

import torch

from compress import options
from compress.context import HookContext
from compress.scheduling.policies.base import ScheduledTrainingPolicy


class LRPolicy(ScheduledTrainingPolicy):
    """Step a ``torch.optim.lr_scheduler`` at the end of each active epoch.

    ``ReduceLROnPlateau`` is stepped with the metric of its mode, taken from ``on_epoch_end(...,
    metrics={'min': val_loss, 'max': accuracy})`` as in Distiller, or from ``metrics=<float>``. Other schedulers
    are stepped with plain ``step()`` (Distiller's ``step(epoch=...)`` is deprecated in PyTorch).

    Args:
        lr_scheduler: the LR scheduler.
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
            self.lr_scheduler.step(float(metrics))
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


