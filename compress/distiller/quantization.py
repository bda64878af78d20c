"""Distiller's ``distiller.quantization`` for post-training quantization of recurrent models.

:class:`PostTrainLinearQuantizer` is :class:`compress.quantization.PostTrainLinearQuantizer` with Distiller's
``prepare_model(dummy_input)`` (positional) and its ``model_activation_stats`` attribute. Its arguments, modes,
clipping and overrides are compress's, which are Distiller's (see ``docs/distiller-compat.md``).

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    >>> stats = {"0": {"inputs": {0: {"min": -1.0, "max": 1.0}}, "output": {"min": -8.0, "max": 8.0}},
    ...          "1": {"inputs": {0: {"min": -8.0, "max": 8.0}}, "output": {"min": -1.0, "max": 1.0}}}
    >>> quantizer = PostTrainLinearQuantizer(model, model_activation_stats=stats)
    >>> _ = quantizer.prepare_model(torch.zeros(1, 4))                  # Distiller's call: a dummy input
    >>> [type(m).__name__ for m in model], quantizer.model_activation_stats["0"]["output"]["max"]
    (['QuantLinear', 'QuantActivation'], 8.0)
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from torch import nn

from compress.distiller.uncovered import missing_name
from compress.quantization import ClipMode, LinearQuantMode
from compress.quantization import PostTrainLinearQuantizer as _PostTrainLinearQuantizer

__all__ = ["PostTrainLinearQuantizer", "LinearQuantMode", "ClipMode"]


class PostTrainLinearQuantizer(_PostTrainLinearQuantizer):
    """compress's post-training quantizer with Distiller's ``prepare_model(dummy_input=None)``.

    Its constructor is :class:`compress.quantization.PostTrainLinearQuantizer`'s (Distiller's arguments).
    """

    def prepare_model(self, dummy_input: Any = None, *, calibration: Any = None) -> nn.Module:  # type: ignore[override]
        """Replace modules by their simulating wrappers; ``dummy_input`` is accepted and unused (compress needs no
        graph trace). Calibration data, if any, is passed by keyword (``calibration=``)."""
        return super().prepare_model(calibration=calibration, dummy_input=dummy_input)

    @property
    def model_activation_stats(self) -> Optional[Dict[str, Any]]:
        """The statistics: as given before :meth:`prepare_model`, as used after it (net-aware clipping applied),
        as Distiller's quantizer kept them."""
        return self._effective_stats() if self.prepared else self.activation_stats

    @model_activation_stats.setter
    def model_activation_stats(self, value: Any) -> None:
        self.activation_stats = None if value is None else self._parse_stats(value)


__getattr__ = missing_name(__name__)
