"""Element-wise operations as modules, so that a quantizer can see, name and wrap them.

A ``torch.add`` inside ``forward`` is invisible to hooks and to module-name overrides; an ``EltwiseAdd``
submodule is not. The names follow Distiller's ``distiller.modules``.
"""
from __future__ import annotations

import torch
from torch import nn


class EltwiseAdd(nn.Module):
    """``y = x_0 + x_1 + ...`` for any number of same-shape (or broadcastable) inputs."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = inputs[0]
        for x in inputs[1:]:
            out = out + x
        return out


class EltwiseSub(nn.Module):
    """``y = x_0 - x_1``."""

    def forward(self, minuend: torch.Tensor, subtrahend: torch.Tensor) -> torch.Tensor:
        return minuend - subtrahend


class EltwiseMult(nn.Module):
    """``y = x_0 * x_1 * ...`` (element-wise)."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = inputs[0]
        for x in inputs[1:]:
            out = out * x
        return out
