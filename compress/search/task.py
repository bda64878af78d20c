"""What a search asks of the user's training code: a *task*.

``compress`` knows no model and no data, so, as with SiPO's metric, training is the user's: a task trains a
schedule for a number of epochs and says how good the result is. A task is an object with

* ``train(schedule, epochs, control) -> TaskResult`` (required; a plain function with that signature is a task
  too): train a fresh model from scratch under ``schedule`` (a schedule dict; ``None`` means no compression) for
  ``epochs`` epochs, calling ``control.epoch_done(epoch, model, val_loss)`` after every epoch, resuming from
  ``control.checkpoint`` when that file exists, and raising :class:`TrainingPaused` (after saving the
  checkpoint) when ``control.should_stop(seconds_of_the_next_epoch)`` says so. It may return ``(model,
  val_loss)`` instead of a :class:`TaskResult`;
* ``spectrum(model) -> Tensor`` (for the ``ls_distance`` objective, unless ``train`` returns the spectrum in its
  result): the model's Lyapunov spectrum, e.g. :func:`compress.lyapunov_spectrum` of its recurrent layer on the
  embedded first validation chunk;
* ``check(schedule)`` (optional): raise if the schedule's classes refuse it for this model (for example by building
  the model, its optimizer and :func:`compress.dict_config`). The search checks every searched value with it
  before anything trains.

``compress_models.search_tasks.word_lm_task`` is the task of the word-level language models (LSTM, RHN).

Example:
    >>> import torch
    >>> def train(schedule, epochs, control):
    ...     model = torch.nn.Linear(2, 1)
    ...     for epoch in range(epochs):
    ...         control.epoch_done(epoch, model, 1.0 / (epoch + 1))
    ...     return TaskResult(model, 1.0 / epochs)
    >>> control = TrainControl()
    >>> train(None, 2, control).val_loss, control.epochs
    (0.5, 2)
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from compress.errors import CompressError

__all__ = ["TaskResult", "TrainControl", "TrainingPaused", "as_result"]


@dataclass
class TaskResult:
    """What a task's ``train`` returns.

    Args:
        model: the trained model (the weights it was validated with; for NT-ASGD the averaged ones).
        val_loss: its validation loss (mean token cross-entropy for a language model).
        spectrum: its Lyapunov spectrum, if the task computed it itself (else the search calls ``task.spectrum``).
        metrics: anything else to record and show, e.g. ``{"test_loss": ...}``.
    """

    model: nn.Module
    val_loss: float
    spectrum: Optional[torch.Tensor] = None
    metrics: Dict[str, float] = field(default_factory=dict)


class TrainingPaused(CompressError):
    """Raised by a task that stopped early because :meth:`TrainControl.should_stop` said so; its checkpoint holds
    the progress, and the candidate runs again (resuming from it) when the search continues."""


class TrainControl:
    """The search's side of one training run: progress, heartbeats, the checkpoint file and when to stop.

    Args:
        checkpoint: a file to save progress in and resume from, or ``None`` (no resume).
        deadline: a ``time.monotonic()`` value after which no new epoch should start.
        on_epoch: called as ``on_epoch(epoch, model, val_loss)`` after every epoch (the search records the dense
            reference's spectra there).
        on_heartbeat: called at most every ``heartbeat_seconds`` by :meth:`heartbeat` (the search marks the run
            alive in its storage).
        seed: a seed for the run (tasks may use it for their generators).
    """

    def __init__(self, checkpoint: Optional[str] = None, deadline: Optional[float] = None,
                 on_epoch: Optional[Callable[[int, nn.Module, float], None]] = None,
                 on_heartbeat: Optional[Callable[[], None]] = None, heartbeat_seconds: float = 30.0,
                 seed: int = 0):
        self.checkpoint = checkpoint
        self.deadline = deadline
        self.seed = seed
        self.epochs = 0          # epochs done, counting those before a resume
        self.epochs_run = 0      # epochs trained by this call
        self._on_epoch = on_epoch
        self._on_heartbeat = on_heartbeat
        self._heartbeat_seconds = heartbeat_seconds
        self._last_beat = -math.inf

    def epoch_done(self, epoch: int, model: nn.Module, val_loss: float) -> None:
        """Report that epoch ``epoch`` (0-based) ended with ``val_loss``."""
        self.epochs = epoch + 1
        self.epochs_run += 1
        if self._on_epoch is not None:
            self._on_epoch(epoch, model, float(val_loss))
        self.heartbeat(force=True)

    def heartbeat(self, force: bool = False) -> None:
        """Tell the search the run is alive (cheap to call often: it is rate-limited)."""
        now = time.monotonic()
        if self._on_heartbeat is not None and (force or now - self._last_beat >= self._heartbeat_seconds):
            self._last_beat = now
            self._on_heartbeat()

    def should_stop(self, next_epoch_seconds: float = 0.0) -> bool:
        """Whether an epoch of ``next_epoch_seconds`` would end past the deadline."""
        return self.deadline is not None and time.monotonic() + next_epoch_seconds > self.deadline


def as_result(value: Union[TaskResult, Tuple[nn.Module, float], Any]) -> TaskResult:
    """A task's return value as a :class:`TaskResult` (a ``(model, val_loss)`` pair is accepted).

    Raises:
        CompressError: anything else, or a validation loss that is not a finite number.
    """
    if isinstance(value, tuple) and len(value) == 2:
        value = TaskResult(value[0], value[1])
    if not isinstance(value, TaskResult):
        raise CompressError(f"a task's train() returns a TaskResult or (model, val_loss), got {type(value).__name__}")
    try:
        loss = float(value.val_loss)
    except (TypeError, ValueError):
        raise CompressError(f"the task returned a validation loss that is not a number: {value.val_loss!r}") from None
    if not math.isfinite(loss):
        raise CompressError(f"the validation loss is {loss} (training diverged)")
    value.val_loss = loss
    return value


def task_metrics(result: TaskResult) -> Mapping[str, Any]:
    """The result's metrics as plain floats."""
    return {str(k): float(v) for k, v in result.metrics.items()}
