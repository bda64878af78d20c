"""Element-wise operations as modules, so that a quantizer can see, name and wrap them.

A ``torch.add`` inside ``forward`` is invisible to hooks and to module-name overrides; an ``EltwiseAdd``
submodule is not. The names follow Distiller's ``distiller.modules``.
"""
from __future__ import annotations

import torch
from torch import nn


class EltwiseAdd(nn.Module):
    """``y = x_0 + x_1 + ...`` for any number of same-shape (or broadcastable) inputs.

    Example:
        >>> EltwiseAdd()(torch.tensor([1.0, 2.0]), torch.tensor([10.0, 20.0]), torch.tensor(0.5))
        tensor([11.5000, 22.5000])
    """

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = inputs[0]
        for x in inputs[1:]:
            out = out + x
        return out


class EltwiseSub(nn.Module):
    """``y = x_0 - x_1``.

    Example:
        >>> EltwiseSub()(torch.tensor([5.0, 1.0]), torch.tensor([2.0, 3.0]))
        tensor([ 3., -2.])
    """

    def forward(self, minuend: torch.Tensor, subtrahend: torch.Tensor) -> torch.Tensor:
        return minuend - subtrahend


class EltwiseMult(nn.Module):
    """``y = x_0 * x_1 * ...`` (element-wise).

    Example:
        >>> EltwiseMult()(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]))
        tensor([3., 8.])
    """

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = inputs[0]
        for x in inputs[1:]:
            out = out * x
        return out
