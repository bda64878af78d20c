"""How much, and when: sparsity targets and thresholds as pure functions of the training position.

Nothing here touches a tensor. Pruners call these with the epoch/step they are at and get back a number.
"""
from __future__ import annotations

import math

from compress.context import Timing


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
    if denominator <= 0:
        raise ValueError(f"the slopes' denominator 2*offset + 3*(end - ramp) is {denominator}: the offset must be "
                         f"less than three times the policy's {end - start} epochs")
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
