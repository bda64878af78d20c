"""SparseLSTM: a block-sparse LSTM layer built from k dense LSTMs (SparseSeqModels' layout)."""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from compress.structured.geometry import LSTMBlockStructure, lstm_block_structure

LSTMState = Tuple[torch.Tensor, torch.Tensor]
DENSE_NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


class SparseLSTM(nn.Module):
    """One LSTM layer with predefined block sparseness, stored as ``k`` small dense ``nn.LSTM`` components.

    Component ``c`` reads input window ``c`` (windows overlap when ``k * density > 1``) and owns hidden block
    ``c``; its hidden and cell state are that block's slice of the layer's state, and the outputs are
    concatenated. Only the kept weights exist, so ``sum(p.numel() for p in layer.parameters())`` is the true
    trainable count (:attr:`structure` ``.num_parameters``). The same function of the same weights is a dense
    ``nn.LSTM`` masked by :class:`~compress.pruning.BlockSparseLSTMPruner` (see :meth:`dense_weights`).

    One layer, biases, time-major input ``(seq_len, batch, input_size)``, as in SparseSeqModels. Each component
    keeps ``nn.LSTM``'s default initialisation ``U(-1/sqrt(h_c), 1/sqrt(h_c))`` for its ``h_c`` units, a
    ``sqrt(k)`` wider range than a dense layer of the full size gets.

    Args:
        input_size: inputs per time step.
        hidden_size: hidden units (the sum over components).
        blocks: number of components ``k``; with it, ``density`` (default ``1/blocks``).
        density: relative width of each input window, in [1/blocks, 1].
        reduce_in: instead of blocks/density: give the layer the parameter count of a dense LSTM with
            ``reduce_in * input_size`` inputs and ``reduce_out * hidden_size`` units (a missing one is 1).
        reduce_out: see ``reduce_in``.

    Raises:
        ArgumentError: both ways of giving the structure or neither, or values out of range or infeasible for
            these sizes (see :func:`~compress.structured.lstm_block_structure`).

    Example:
        >>> layer = SparseLSTM(4, 6, blocks=2)                   # two components, disjoint input windows
        >>> [tuple(c.weight_hh_l0.shape) for c in layer.components]
        [(12, 3), (12, 3)]
        >>> sum(p.numel() for p in layer.parameters()) == layer.structure.num_parameters
        True
        >>> out, (h, c) = layer(torch.zeros(5, 2, 4))
        >>> tuple(out.shape), tuple(h.shape)
        ((5, 2, 6), (1, 2, 6))
    """

    def __init__(self, input_size: int, hidden_size: int, *, blocks: Optional[int] = None,
                 density: Optional[float] = None, reduce_in: Optional[float] = None,
                 reduce_out: Optional[float] = None):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.structure: LSTMBlockStructure = lstm_block_structure(
            input_size, hidden_size, blocks=blocks, density=density, reduce_in=reduce_in, reduce_out=reduce_out)
        self.components = nn.ModuleList(
            nn.LSTM(we - ws, he - hs) for (ws, we), (hs, he) in
            zip(self.structure.input_windows, self.structure.hidden_blocks))

    def forward(self, input: torch.Tensor, hx: Optional[LSTMState] = None) -> Tuple[torch.Tensor, LSTMState]:
        """Run the layer.

        Args:
            input: ``(seq_len, batch, input_size)``.
            hx: ``(h, c)``, each ``(1, batch, hidden_size)``; zeros when ``None``.

        Returns:
            ``(output, (h, c))`` with ``output`` of shape ``(seq_len, batch, hidden_size)``, as ``nn.LSTM``.
        """
        if input.dim() != 3 or input.size(-1) != self.input_size:
            raise ValueError(f"SparseLSTM expects input of shape (seq_len, batch, {self.input_size}), "
                             f"got {tuple(input.shape)}")
        if hx is None:
            zeros = input.new_zeros(1, input.size(1), self.hidden_size)
            hx = (zeros, zeros)
        outputs, hs, cs = [], [], []
        for lstm, (ws, we), (bs, be) in zip(self.components, self.structure.input_windows,
                                            self.structure.hidden_blocks):
            x = input if (ws, we) == (0, self.input_size) else input[..., ws:we].contiguous()
            out, (h, c) = lstm(x, (hx[0][..., bs:be].contiguous(), hx[1][..., bs:be].contiguous()))
            outputs.append(out)
            hs.append(h)
            cs.append(c)
        if len(outputs) == 1:
            return outputs[0], (hs[0], cs[0])
        return torch.cat(outputs, -1), (torch.cat(hs, -1), torch.cat(cs, -1))

    @torch.no_grad()
    def dense_weights(self) -> Dict[str, torch.Tensor]:
        """The equivalent dense ``nn.LSTM`` parameters (``weight_ih_l0``, ..., zeros off the structure)."""
        s = self.structure
        ref = self.components[0].weight_ih_l0
        gates, hidden = s.gates, s.hidden_size
        out = {
            "weight_ih_l0": ref.new_zeros(gates * hidden, s.input_size),
            "weight_hh_l0": ref.new_zeros(gates * hidden, hidden),
            "bias_ih_l0": ref.new_zeros(gates * hidden),
            "bias_hh_l0": ref.new_zeros(gates * hidden),
        }
        for lstm, (ws, we), (bs, be) in zip(self.components, s.input_windows, s.hidden_blocks):
            size = be - bs
            for g in range(gates):
                rows, own = slice(g * hidden + bs, g * hidden + be), slice(g * size, (g + 1) * size)
                out["weight_ih_l0"][rows, ws:we] = lstm.weight_ih_l0[own]
                out["weight_hh_l0"][rows, bs:be] = lstm.weight_hh_l0[own]
                out["bias_ih_l0"][rows] = lstm.bias_ih_l0[own]
                out["bias_hh_l0"][rows] = lstm.bias_hh_l0[own]
        return out

    @torch.no_grad()
    def load_dense_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Copy the structure's entries of dense ``nn.LSTM`` parameters into the components.

        Args:
            weights: ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0`` of a one-layer LSTM of
                this layer's sizes (``dict(lstm.named_parameters())``); entries off the structure are ignored.
        """
        s = self.structure
        gates, hidden = s.gates, s.hidden_size
        expected = {"weight_ih_l0": (gates * hidden, s.input_size), "weight_hh_l0": (gates * hidden, hidden),
                    "bias_ih_l0": (gates * hidden,), "bias_hh_l0": (gates * hidden,)}
        for name, shape in expected.items():
            if name not in weights:
                raise KeyError(f"load_dense_weights: missing {name!r}")
            if tuple(weights[name].shape) != shape:
                raise ValueError(f"load_dense_weights: {name} has shape {tuple(weights[name].shape)}, "
                                 f"this layer needs {shape}")
        for lstm, (ws, we), (bs, be) in zip(self.components, s.input_windows, s.hidden_blocks):
            size = be - bs
            for g in range(gates):
                rows, own = slice(g * hidden + bs, g * hidden + be), slice(g * size, (g + 1) * size)
                lstm.weight_ih_l0[own] = weights["weight_ih_l0"][rows, ws:we]
                lstm.weight_hh_l0[own] = weights["weight_hh_l0"][rows, bs:be]
                lstm.bias_ih_l0[own] = weights["bias_ih_l0"][rows]
                lstm.bias_hh_l0[own] = weights["bias_hh_l0"][rows]

    def extra_repr(self) -> str:
        s = self.structure
        return (f"{s.input_size}, {s.hidden_size}, blocks={s.blocks}, density={s.density:.4g}, "
                f"parameters={s.num_parameters:,} of {s.dense_parameters:,}")
