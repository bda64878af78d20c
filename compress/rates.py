"""How much, and when: sparsity targets and thresholds as pure functions of the training position.

Nothing here touches a tensor. Pruners call these with the epoch/step they are at and get back a number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple


@dataclass(frozen=True)
class Timing:
    """When a policy acts: an explicit epoch list, or ``range(starting_epoch, ending_epoch, frequency)``.

    Args:
        epochs: explicit epochs (the ``epochs: [...]`` form); mutually exclusive with the range form.
        starting_epoch: first epoch of the range form.
        ending_epoch: end of the range form, exclusive (Distiller's convention).
        frequency: step of the range form.
    """

    epochs: Optional[Tuple[int, ...]] = None
    starting_epoch: Optional[int] = None
    ending_epoch: Optional[int] = None
    frequency: Optional[int] = None

    def __post_init__(self):
        if self.epochs is not None:
            if self.starting_epoch is not None or self.ending_epoch is not None:
                raise ValueError("give either epochs or starting_epoch/ending_epoch, not both")
            if not self.epochs:
                raise ValueError("epochs must list at least one epoch")
            if any(not isinstance(e, int) or isinstance(e, bool) or e < 0 for e in self.epochs):
                raise ValueError(f"epochs must be non-negative integers, got {list(self.epochs)}")
            object.__setattr__(self, "epochs", tuple(sorted(set(self.epochs))))
            return
        for key in ("starting_epoch", "ending_epoch", "frequency"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{key} must be an integer, got {value!r}")
        if self.starting_epoch < 0:
            raise ValueError(f"starting_epoch must be >= 0, got {self.starting_epoch}")
        if self.ending_epoch <= self.starting_epoch:
            raise ValueError(f"ending_epoch ({self.ending_epoch}) must be greater than starting_epoch "
                             f"({self.starting_epoch}); ending_epoch is exclusive")
        if self.frequency < 1:
            raise ValueError(f"frequency must be >= 1, got {self.frequency}")

    @property
    def active_epochs(self) -> Sequence[int]:
        if self.epochs is not None:
            return self.epochs
        return range(self.starting_epoch, self.ending_epoch, self.frequency)

    def is_active(self, epoch: int) -> bool:
        if self.epochs is not None:
            return epoch in self.epochs
        return (self.starting_epoch <= epoch < self.ending_epoch
                and (epoch - self.starting_epoch) % self.frequency == 0)

    @property
    def first(self) -> int:
        return self.active_epochs[0]

    @property
    def last(self) -> int:
        """The last epoch in which the policy acts (not ``ending_epoch``, which is exclusive)."""
        return self.active_epochs[-1]

    @property
    def ending(self) -> int:
        """One past the last epoch covered: ``ending_epoch``, or ``epochs[-1] + 1`` for the list form."""
        return self.ending_epoch if self.epochs is None else self.epochs[-1] + 1


def cubic_sparsity(initial: float, final: float, progress: float) -> float:
    """Zhu & Gupta's cubic ramp ``s_f + (s_i - s_f)(1 - p)^3``, with ``p`` clamped to [0, 1]."""
    p = min(max(progress, 0.0), 1.0)
    return final + (initial - final) * (1.0 - p) ** 3


def agp_sparsity(initial: float, final: float, epoch: int, timing: Timing) -> float:
    """AGP target at ``epoch``, exactly Distiller's per-epoch formula.

    ``span`` is the distance from the first to the last scheduled epoch; for the range form that is
    ``((ending - starting - 1) // frequency) * frequency``. The target is ``initial`` in the first scheduled
    epoch and ``final`` in the last. A single scheduled epoch jumps straight to ``final``.
    """
    span = timing.last - timing.first
    if span <= 0:
        return final
    return cubic_sparsity(initial, final, (epoch - timing.first) / span)


def agp_sparsity_per_step(initial: float, final: float, epoch: int, minibatch_id: int,
                          minibatches_per_epoch: int, timing: Timing) -> float:
    """AGP target per minibatch (Zhu & Gupta's original granularity).

    Progress is counted in minibatches from the first minibatch of the first scheduled epoch to the first
    minibatch of the last one, so at every epoch boundary this equals :func:`agp_sparsity`.
    """
    span = (timing.last - timing.first) * minibatches_per_epoch
    if span <= 0:
        return final
    step = (epoch - timing.first) * minibatches_per_epoch + minibatch_id
    return cubic_sparsity(initial, final, step / span)


def baidu_threshold(q: float, ramp_epoch_offset: int, ramp_slope_mult: float, epoch: int,
                    timing: Timing) -> float:
    """Narang et al.'s monotone threshold ramp, per epoch, as Distiller computes it.

    ``start_slope = 2 q f / (2 (ramp - start) + 3 (end - ramp))`` with ``f`` the frequency (1 for the list form),
    ``ramp = start + ramp_epoch_offset``; before ``ramp`` the threshold grows by ``start_slope`` per
    scheduled epoch, after it by ``start_slope * ramp_slope_mult``.
    """
    start, end = timing.first, timing.ending
    freq = timing.frequency or 1
    ramp = start + ramp_epoch_offset
    denominator = 2 * (ramp - start) + 3 * (end - ramp)
    if denominator == 0:
        raise ValueError("ramp_epoch_offset gives a zero slope denominator: 2*offset + 3*(end - ramp) == 0")
    start_slope = 2 * q * freq / denominator
    if epoch < ramp:
        return start_slope * (epoch - start + 1) / freq
    return (start_slope * (ramp - start + 1) + start_slope * ramp_slope_mult * (epoch - ramp + 1)) / freq


def cosine_decay(initial: float, step: int, total_steps: int, floor: float = 0.0) -> float:
    """Cosine annealing from ``initial`` at step 0 to ``floor`` at ``total_steps`` (held there after)."""
    if total_steps <= 0:
        return floor
    p = min(max(step / total_steps, 0.0), 1.0)
    return floor + (initial - floor) * 0.5 * (1.0 + math.cos(math.pi * p))
