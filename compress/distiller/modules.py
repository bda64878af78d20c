"""Distiller's ``distiller.modules`` for recurrent models: :class:`DistillerLSTM` on compress's modular LSTM.

:class:`DistillerLSTM` is a :class:`compress.modules.ModularLSTM` with Distiller's constructor, ``init_hidden`` and
``from_pytorch_impl``/``to_pytorch_impl``; its submodule names are Distiller's (``cells.0.fc_gate_x``,
``eltwiseadd_gate``, ...), so Distiller's statistics and override files apply. The element-wise modules are
:mod:`compress.modules`'.

Example:
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> reference = torch.nn.LSTM(3, 4, 2)
    >>> lstm = DistillerLSTM.from_pytorch_impl(reference)
    >>> x, hidden = torch.randn(5, 2, 3), lstm.init_hidden(2)
    >>> torch.allclose(lstm(x, hidden)[0], reference(x, hidden)[0], atol=1e-5)
    True
"""
from __future__ import annotations

import copy
from typing import Any, Tuple

import torch
from torch import nn

from compress.distiller.uncovered import NotCoveredError, missing_name
from compress.modules import EltwiseAdd, EltwiseMult, EltwiseSub, ModularLSTM, ModularLSTMCell

__all__ = ["DistillerLSTM", "DistillerLSTMCell", "EltwiseAdd", "EltwiseMult", "EltwiseSub"]


class DistillerLSTM(ModularLSTM):
    """A modular LSTM with Distiller's constructor (note its default ``dropout=0.5``).

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional: as ``nn.LSTM``.
        bidirectional_type: only Distiller's type 2 (each layer runs both directions over the whole sequence).

    Raises:
        NotCoveredError: ``bidirectional_type`` other than 2.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.5, bidirectional: bool = False,
                 bidirectional_type: int = 2):
        if bidirectional and bidirectional_type != 2:
            raise NotCoveredError(f"modules.DistillerLSTM(bidirectional_type={bidirectional_type})",
                                  "only type 2 (as PyTorch's nn.LSTM) is covered; Distiller itself raised for type 1")
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first, dropout=dropout,
                         bidirectional=bidirectional)
        self.bidirectional_type = bidirectional_type

    def init_hidden(self, batch_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Zero ``(h, c)`` of shape ``(num_layers * directions, batch_size, hidden_size)`` on the weights' device."""
        weight = next(self.parameters())
        shape = (self.num_layers * self.num_directions, batch_size, self.hidden_size)
        return weight.new_zeros(shape), weight.new_zeros(shape)

    @staticmethod
    def from_pytorch_impl(lstm: nn.LSTM) -> DistillerLSTM:
        """The modular twin of ``lstm`` with *copies* of its weights (as Distiller's; ``ModularLSTM.from_pytorch``
        shares them).

        Raises:
            TypeError: ``lstm`` is not an ``nn.LSTM``.
        """
        if not isinstance(lstm, nn.LSTM):
            raise TypeError(f"from_pytorch_impl converts an nn.LSTM, got {type(lstm).__name__}")
        return DistillerLSTM.from_pytorch(copy.deepcopy(lstm))

    def to_pytorch_impl(self) -> nn.LSTM:
        """An ``nn.LSTM`` with copies of this module's weights."""
        return copy.deepcopy(self).to_pytorch()


class DistillerLSTMCell(ModularLSTMCell):
    """A modular LSTM cell with Distiller's ``init_hidden`` and ``from_pytorch_impl``.

    Example:
        >>> cell = DistillerLSTMCell.from_pytorch_impl(nn.LSTMCell(3, 4))
        >>> h, c = cell(torch.ones(2, 3), cell.init_hidden(2, device="cpu"))
        >>> tuple(h.shape)
        (2, 4)
    """

    def init_hidden(self, batch_size: int, device: Any = "cuda:0") -> Tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(batch_size, self.hidden_size, device=device)
        return zeros, zeros.clone()

    @staticmethod
    def from_pytorch_impl(lstmcell: nn.LSTMCell) -> DistillerLSTMCell:
        """The modular twin of ``lstmcell`` with copies of its weights."""
        return DistillerLSTMCell.from_pytorch(copy.deepcopy(lstmcell))


__getattr__ = missing_name(__name__)
