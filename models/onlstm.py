"""Ordered-Neurons LSTM language model (Shen et al., ICLR 2019), as trained by Selfish-RNN.

Parameter names: ``encoder.weight``, ``rnn.cells.{l}.ih.weight``/``bias`` (input projection),
``rnn.cells.{l}.hh.weight``/``bias`` (recurrent projection, with DropConnect), ``decoder.weight``/``bias``.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import embedding_dropout, locked_dropout

State = Tuple[torch.Tensor, torch.Tensor]


def cumax(x: torch.Tensor) -> torch.Tensor:
    """``cumsum(softmax(x))`` over the last dimension: a soft, monotone step from 0 to 1."""
    return torch.cumsum(F.softmax(x, dim=-1), dim=-1)


class ONLSTMCell(nn.Module):
    """One ON-LSTM layer: an LSTM whose cell is split into chunks ordered by two master gates.

    The input and the recurrent projections each produce ``4 * hidden + 2 * n_chunks`` pre-activations: the
    master input and master forget logits (one per chunk), then the output, cell, input and forget gates.
    With the master forget gate ``F = cumax(.)``, the master input gate ``I = 1 - cumax(.)`` (broadcast over
    each chunk's units) and ``w = F * I``: ``f = f * w + (F - w)``, ``i = i * w + (I - w)``,
    ``c_t = f * c_{t-1} + i * tanh(g)``, ``h_t = sigmoid(o) * tanh(c_t)``.

    The recurrent weight gets DropConnect as in the original: during training each weight is zeroed with
    probability ``wdrop`` (one mask per sequence, no rescaling), at evaluation it is scaled by ``1 - wdrop``.

    Args:
        input_size: inputs per time step.
        hidden_size: units; a multiple of ``chunk_size``.
        chunk_size: units per chunk.
        wdrop: DropConnect probability on the recurrent weight.
    """

    def __init__(self, input_size: int, hidden_size: int, chunk_size: int, wdrop: float = 0.0):
        super().__init__()
        if chunk_size < 1 or hidden_size % chunk_size:
            raise ValueError(f"hidden size {hidden_size} is not a multiple of chunk_size {chunk_size}")
        self.hidden_size = hidden_size
        self.chunk_size = chunk_size
        self.n_chunks = hidden_size // chunk_size
        self.wdrop = wdrop
        out = 4 * hidden_size + 2 * self.n_chunks
        self.ih = nn.Linear(input_size, out)
        self.hh = nn.Linear(hidden_size, out)

    def recurrent_weight(self) -> torch.Tensor:
        """The recurrent weight for one sequence, with DropConnect applied."""
        w = self.hh.weight
        if self.wdrop == 0:
            return w
        if self.training:
            return w.masked_fill(torch.empty_like(w).bernoulli_(self.wdrop).bool(), 0.0)
        return w * (1 - self.wdrop)

    def forward(self, x: torch.Tensor, state: State) -> Tuple[torch.Tensor, State]:
        """Run over ``x`` ``(T, batch, input_size)`` from ``(h, c)``: ``h`` ``(batch, hidden)``, ``c``
        ``(batch, n_chunks, chunk_size)``."""
        h, c = state
        n, chunk = self.n_chunks, self.chunk_size
        ih = self.ih(x)
        w_hh = self.recurrent_weight()
        outputs = []
        for t in range(x.size(0)):
            gates = ih[t] + F.linear(h, w_hh, self.hh.bias)
            master_in = 1 - cumax(gates[:, :n]).unsqueeze(-1)
            master_forget = cumax(gates[:, n:2 * n]).unsqueeze(-1)
            o, g, i, f = gates[:, 2 * n:].reshape(-1, 4 * n, chunk).chunk(4, dim=1)
            overlap = master_forget * master_in
            f = torch.sigmoid(f) * overlap + (master_forget - overlap)
            i = torch.sigmoid(i) * overlap + (master_in - overlap)
            c = f * c + i * torch.tanh(g)
            h = (torch.sigmoid(o) * torch.tanh(c)).reshape(-1, self.hidden_size)
            outputs.append(h)
        return torch.stack(outputs), (h, c)


class ONLSTMStack(nn.Module):
    """ON-LSTM layers of the given sizes, with locked dropout ``dropouth`` between them.

    Args:
        sizes: ``[input, hidden_1, ..., hidden_L]``.
        chunk_size: units per chunk (every hidden size is a multiple of it).
        dropouth: locked dropout between layers.
        wdrop: DropConnect on the recurrent weights.
    """

    def __init__(self, sizes: Sequence[int], chunk_size: int, dropouth: float = 0.0, wdrop: float = 0.0):
        super().__init__()
        self.sizes = list(sizes)
        self.dropouth = dropouth
        self.cells = nn.ModuleList(ONLSTMCell(sizes[i], sizes[i + 1], chunk_size, wdrop)
                                   for i in range(len(sizes) - 1))

    def forward(self, x: torch.Tensor, hidden: Sequence[State]) -> Tuple[torch.Tensor, List[State]]:
        new_hidden = []
        for i, (cell, state) in enumerate(zip(self.cells, hidden)):
            x, state = cell(x, state)
            new_hidden.append(state)
            if i < len(self.cells) - 1:
                x = locked_dropout(x, self.dropouth, self.training)
        return x, new_hidden


class ONLSTMModel(nn.Module):
    """The ON-LSTM language model: AWD-LSTM's dropouts around an :class:`ONLSTMStack`.

    Embedding dropout ``dropoute`` → locked dropout ``dropouti`` → ON-LSTM layers of sizes
    ``[ninp, nhid, ..., nhid, ninp]`` (the last is ``nhid`` when untied) → locked dropout ``dropout`` → decoder.

    Args:
        ntoken: vocabulary size.
        ninp: embedding size.
        nhid: units of the inner layers.
        nlayers: number of layers.
        chunk_size: units per chunk; divides ``nhid`` and ``ninp``.
        dropout: locked dropout on the last layer's output.
        dropouth: locked dropout between layers.
        dropouti: locked dropout on the embeddings.
        dropoute: embedding (word) dropout.
        wdrop: DropConnect on the recurrent weights.
        tie_weights: share the embedding with the decoder.
    """

    def __init__(self, ntoken: int, ninp: int, nhid: int, nlayers: int = 3, chunk_size: int = 10,
                 dropout: float = 0.45, dropouth: float = 0.3, dropouti: float = 0.5, dropoute: float = 0.1,
                 wdrop: float = 0.45, tie_weights: bool = True):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        sizes = [ninp] + [nhid] * nlayers
        if tie_weights:
            sizes[-1] = ninp
        self.rnn = ONLSTMStack(sizes, chunk_size, dropouth, wdrop)
        self.decoder = nn.Linear(sizes[-1], ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.dropout, self.dropouti, self.dropoute = dropout, dropouti, dropoute
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, input: torch.Tensor, hidden: Sequence[State], return_outputs: bool = False):
        """Logits ``(T, batch, ntoken)`` and the new state; with ``return_outputs`` also the last layer's output
        before and after its dropout (for :func:`~models.dropout.ar_tar_loss`)."""
        x = embedding_dropout(self.encoder, input, self.dropoute, self.training)
        x = locked_dropout(x, self.dropouti, self.training)
        raw, new_hidden = self.rnn(x, hidden)
        dropped = locked_dropout(raw, self.dropout, self.training)
        logits = self.decoder(dropped)
        if return_outputs:
            return logits, tuple(new_hidden), raw, dropped
        return logits, tuple(new_hidden)

    def init_hidden(self, bsz: int) -> Tuple[State, ...]:
        """Zero ``(h, c)`` per layer: ``h`` ``(bsz, size)``, ``c`` ``(bsz, n_chunks, chunk_size)``."""
        weight = self.encoder.weight
        return tuple((weight.new_zeros(bsz, cell.hidden_size),
                      weight.new_zeros(bsz, cell.n_chunks, cell.chunk_size)) for cell in self.rnn.cells)
