"""Distiller's ``CompressionScheduler(model, zeros_mask_dict=None, device=...)`` constructor on compress's scheduler."""
from __future__ import annotations

from typing import Any, Optional

from torch import nn

from compress.distiller.uncovered import NotCoveredError
from compress.scheduling import CompressionScheduler as _CompressScheduler

__all__ = ["CompressionScheduler"]


class CompressionScheduler(_CompressScheduler):
    """:class:`compress.scheduling.CompressionScheduler` built with Distiller's arguments.

    Masks live in the scheduler's :class:`~compress.sparsity.MaskStore` (``scheduler.masks``), on each weight's
    own device; ``scheduler.zeros_mask_dict`` is a read-only view of them in Distiller's shape.

    Args:
        model: the model.
        zeros_mask_dict: must be ``None`` (compress keeps its own masks).
        device: accepted and unused (masks follow their weights).

    Raises:
        NotCoveredError: a ``zeros_mask_dict`` was passed.

    Example:
        >>> scheduler = CompressionScheduler(nn.Linear(2, 2))
        >>> sorted(scheduler.zeros_mask_dict), scheduler.zeros_mask_dict["weight"].mask
        (['bias', 'weight'], None)
    """

    def __init__(self, model: nn.Module, zeros_mask_dict: Optional[Any] = None, device: Any = None):
        if zeros_mask_dict is not None:
            raise NotCoveredError("CompressionScheduler(model, zeros_mask_dict)",
                                  "masks live in scheduler.masks (compress.sparsity.MaskStore); set them with "
                                  "scheduler.masks.set_mask(name, keep_mask)")
        super().__init__(model)
