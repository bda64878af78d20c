"""The non-monotone trigger of NT-ASGD, and the schedule extension that switches the optimizer with it."""
from __future__ import annotations

import logging
import math
from numbers import Real
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch

from compress import options
from compress.distributed import mean_over_ranks
from compress.errors import ArgumentError
from compress.optim.snt_asgd import SparseNTASGD
from compress.registry import register_extension
from compress.scheduling.policies.base import HookContext, ScheduledTrainingPolicy

log = logging.getLogger(__name__)


def nonmonotone_trigger(history: Sequence[float], current: float, nonmono: int) -> bool:
    """AWD-LSTM's switch rule: the current validation loss is worse than the best one of more than ``nonmono``
    epochs ago.

    True when ``len(history) > nonmono`` and ``current > min(history[:-nonmono])``, with ``history`` the losses
    of the epochs before this one (Merity et al. 2018; Selfish-RNN uses it unchanged).

    Args:
        history: validation losses of the earlier epochs, oldest first.
        current: this epoch's validation loss.
        nonmono: epochs of patience.

    Returns:
        Whether to switch to averaging now.

    Raises:
        ValueError: ``nonmono < 0``.

    Example:
        >>> nonmonotone_trigger([3.0, 2.0, 2.5], 2.6, nonmono=1)   # worse than 2.0, two epochs ago
        True
        >>> nonmonotone_trigger([3.0, 2.0, 2.5], 2.6, nonmono=2)   # only 3.0 is old enough
        False
    """
    if nonmono < 0:
        raise ValueError(f"nonmono must be >= 0, got {nonmono}")
    if len(history) <= nonmono:
        return False
    earlier = history[:-nonmono] if nonmono else history
    return current > min(earlier)


class NonMonotoneTrigger:
    """The validation history behind :func:`nonmonotone_trigger`, for loops that drive the switch themselves::

        trigger = NonMonotoneTrigger(nonmono=5)
        ...
        if not optimizer.averaging and trigger.step(val_loss):
            optimizer.start_averaging()

    Args:
        nonmono: epochs of patience.

    Raises:
        ArgumentError: ``nonmono`` is not an integer ``>= 0``.

    Example:
        >>> trigger = NonMonotoneTrigger(nonmono=1)
        >>> [trigger.step(loss) for loss in (3.0, 2.0, 2.5, 2.6)]
        [False, False, False, True]
        >>> trigger.state_dict()
        {'nonmono': 1, 'history': [3.0, 2.0, 2.5, 2.6]}
    """

    def __init__(self, nonmono: int = 5):
        self.nonmono = options.integer("nonmono", nonmono, minimum=0)
        self.history: List[float] = []

    def step(self, val_loss: float) -> bool:
        """Record this epoch's validation loss; True when the trigger fires."""
        fired = nonmonotone_trigger(self.history, float(val_loss), self.nonmono)
        self.history.append(float(val_loss))
        return fired

    def state_dict(self) -> Dict[str, Any]:
        return {"nonmono": self.nonmono, "history": list(self.history)}

    def check_state(self, state: Any) -> None:
        """Raise ``ArgumentError`` naming the field unless :meth:`load_state_dict` accepts ``state``."""
        options.fields((), state, ["nonmono", "history"])
        options.integer("nonmono", state.get("nonmono", self.nonmono), minimum=0)
        options.sequence("history", state.get("history", []), options.like, 0.0)  # numbers (inf too), not NaN

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        self.history = [float(v) for v in state.get("history", [])]


def _validation_loss(kwargs: Mapping[str, Any]) -> float:
    metrics = kwargs.get("metrics")
    if isinstance(metrics, Mapping):
        metrics = metrics.get("min")
    if not isinstance(metrics, (Real, torch.Tensor)) or isinstance(metrics, bool):
        raise ValueError("NTASGDSwitch needs the validation loss: call on_epoch_end(epoch, optimizer, "
                         "metrics={'min': val_loss}) (or metrics=<float>)")
    return mean_over_ranks(float(metrics))  # one decision for every rank of a distributed run


@register_extension
class NTASGDSwitch(ScheduledTrainingPolicy):
    """Switch a :class:`SparseNTASGD` from SGD to averaging when validation stops improving (NT-ASGD).

    At the end of each active epoch it reads the validation loss from ``metrics`` (``{'min': val_loss}`` as for
    ``ReduceLROnPlateau``) and calls ``optimizer.start_averaging()`` once :func:`nonmonotone_trigger` fires.
    In a schedule::

        extensions:
          nt_asgd: {class: NTASGDSwitch, nonmono: 5}
        policies:
          - extension: {instance_name: nt_asgd}
            starting_epoch: 0
            ending_epoch: 100

    Args:
        name: instance name.
        optimizer: supplied by the library: the optimizer given to the schedule, which must be a
            :class:`SparseNTASGD`.
        nonmono: epochs of patience (AWD-LSTM and Selfish-RNN: 5).

    Raises:
        ArgumentError: the optimizer is not a :class:`SparseNTASGD`, or ``nonmono`` is not an integer ``>= 0``.
        ValueError: at an epoch's end, ``metrics`` holds no validation loss (a NaN one is logged and not counted).

    Example:
        >>> import compress
        >>> model = torch.nn.Linear(2, 1)
        >>> optimizer = SparseNTASGD(model.parameters(), lr=0.1)
        >>> schedule = {"extensions": {"asgd": {"class": "NTASGDSwitch", "nonmono": 1}},
        ...             "policies": [{"extension": {"instance_name": "asgd"}, "starting_epoch": 0,
        ...                           "ending_epoch": 10}]}
        >>> scheduler = compress.dict_config(model, optimizer, schedule)
        >>> for epoch, val_loss in enumerate([3.0, 2.0, 2.5, 2.6]):
        ...     scheduler.on_epoch_end(epoch, optimizer, metrics={"min": val_loss})
        >>> optimizer.averaging, scheduler.components["extensions"]["asgd"].switched_at
        (True, 3)
    """

    def __init__(self, name: str, optimizer: Optional[torch.optim.Optimizer], nonmono: int = 5):
        if not isinstance(optimizer, SparseNTASGD):
            got = "no optimizer" if optimizer is None else type(optimizer).__name__
            raise ArgumentError("optimizer", f"NTASGDSwitch switches a compress.optim.SparseNTASGD, got {got} "
                                             f"(examples/word_lm.py: --optimizer sgd selects it)")
        self.name = name
        self.optimizer = optimizer
        self.trigger = NonMonotoneTrigger(nonmono)
        self.switched_at: Optional[int] = None

    def on_epoch_end(self, ctx: HookContext, **kwargs: Any) -> None:
        optimizer = ctx.optimizer if isinstance(ctx.optimizer, SparseNTASGD) else self.optimizer
        if optimizer.averaging:
            return
        loss = _validation_loss(kwargs)
        if math.isnan(loss):  # a diverged epoch: nothing to compare, and no reason to stop the loop here
            log.warning("%s: NaN validation loss at epoch %d; not counted", self.name, ctx.epoch)
            return
        if self.trigger.step(loss):
            optimizer.start_averaging()
            self.switched_at = ctx.epoch

    def state_dict(self) -> Dict[str, Any]:
        return {"trigger": self.trigger.state_dict(), "switched_at": self.switched_at}

    def check_state(self, state: Any) -> None:
        options.fields((), state, ["trigger", "switched_at"])
        with options.under("trigger"):
            self.trigger.check_state(state.get("trigger", {}))
        options.optional(options.integer, "switched_at", state.get("switched_at"), minimum=0)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        self.trigger.load_state_dict(state.get("trigger", {}))
        self.switched_at = state.get("switched_at")
