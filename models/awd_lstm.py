"""AWD-LSTM language model (Merity et al., ICLR 2018): weight-dropped LSTMs with locked and embedding dropout.

The recurrent matrix of each layer is trained as ``rnns.{l}.weight_hh_l0_raw``; every forward pass reads a
DropConnect copy of it. Schedules may name it ``rnns.{l}.weight_hh_l0`` (compress resolves the alias to the raw
parameter), so masks live on the trained tensor and the dropped copy is sparse too. The layer calls the LSTM
kernel with the dropped weight directly instead of swapping ``nn.LSTM``'s parameters (AWD's ``WeightDrop``), which
broke with several PyTorch releases (salesforce/awd-lstm-lm#79, #86; pytorch/pytorch#32346).
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import embedding_dropout, locked_dropout

State = Tuple[torch.Tensor, torch.Tensor]


class WeightDropLSTM(nn.Module):
    """A one-layer LSTM with DropConnect on its hidden-to-hidden weight.

    Parameters are named like ``nn.LSTM``'s (``weight_ih_l0``, ``bias_ih_l0``, ``bias_hh_l0``) except the
    recurrent one, ``weight_hh_l0_raw``. In training each forward pass uses ``dropout(weight_hh_l0_raw, wdrop)``
    (a fresh mask, survivors scaled by ``1 / (1 - wdrop)``); in evaluation the raw weight.

    Args:
        input_size: inputs per time step.
        hidden_size: units.
        wdrop: DropConnect probability.
    """

    def __init__(self, input_size: int, hidden_size: int, wdrop: float = 0.5):
        super().__init__()
        self.input_size, self.hidden_size, self.wdrop = input_size, hidden_size, wdrop
        self.weight_ih_l0 = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh_l0_raw = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh_l0 = nn.Parameter(torch.empty(4 * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)  # nn.LSTM's initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, state: State) -> Tuple[torch.Tensor, State]:
        """Run over ``x`` ``(T, batch, input_size)`` from ``(h, c)``, each ``(1, batch, hidden_size)``."""
        w_hh = F.dropout(self.weight_hh_l0_raw, self.wdrop, self.training) if self.wdrop else self.weight_hh_l0_raw
        weights = [self.weight_ih_l0, w_hh, self.bias_ih_l0, self.bias_hh_l0]
        output, h, c = torch.lstm(x, state, weights, True, 1, 0.0, self.training, False, False)
        return output, (h, c)


class AWDLSTMModel(nn.Module):
    """AWD-LSTM: embedding dropout → locked dropout → weight-dropped LSTMs (locked dropout between) → decoder.

    Layer sizes are ``ninp → nhid → ... → nhid → ninp`` when tied (the last layer's width is the embedding's),
    ``→ nhid`` otherwise. Add :func:`~models.dropout.ar_tar_loss` of the outputs that ``return_outputs=True``
    gives to the loss for AR/TAR.

    Args:
        ntoken: vocabulary size.
        ninp: embedding size (400 on PTB).
        nhid: units of the inner layers (1150).
        nlayers: number of layers (3).
        dropout: locked dropout on the last layer's output (0.4).
        dropouth: locked dropout between layers (0.25 on PTB).
        dropouti: locked dropout on the embeddings (0.4 on PTB).
        dropoute: embedding (word) dropout (0.1).
        wdrop: DropConnect on the recurrent weights (0.5).
        tie_weights: share the embedding with the decoder.
    """

    def __init__(self, ntoken: int, ninp: int, nhid: int, nlayers: int = 3, dropout: float = 0.4,
                 dropouth: float = 0.25, dropouti: float = 0.4, dropoute: float = 0.1, wdrop: float = 0.5,
                 tie_weights: bool = True):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        sizes = [ninp] + [nhid] * nlayers
        if tie_weights:
            sizes[-1] = ninp
        self.sizes = sizes
        self.rnns = nn.ModuleList(WeightDropLSTM(sizes[i], sizes[i + 1], wdrop) for i in range(nlayers))
        self.decoder = nn.Linear(sizes[-1], ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.dropout, self.dropouth, self.dropouti, self.dropoute = dropout, dropouth, dropouti, dropoute
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, input: torch.Tensor, hidden: Sequence[State], return_outputs: bool = False):
        """Logits ``(T, batch, ntoken)`` and the new state; with ``return_outputs`` also the last layer's output
        before and after its dropout (for :func:`~models.dropout.ar_tar_loss`)."""
        x = embedding_dropout(self.encoder, input, self.dropoute, self.training)
        x = locked_dropout(x, self.dropouti, self.training)
        new_hidden: List[State] = []
        raw = x
        for i, (rnn, state) in enumerate(zip(self.rnns, hidden)):
            raw, state = rnn(x, state)
            new_hidden.append(state)
            x = locked_dropout(raw, self.dropouth if i < len(self.rnns) - 1 else self.dropout, self.training)
        logits = self.decoder(x)
        if return_outputs:
            return logits, tuple(new_hidden), raw, x
        return logits, tuple(new_hidden)

    def init_hidden(self, bsz: int) -> Tuple[State, ...]:
        """Zero ``(h, c)`` per layer, each ``(1, bsz, size)``."""
        weight = self.encoder.weight
        return tuple((weight.new_zeros(1, bsz, size), weight.new_zeros(1, bsz, size)) for size in self.sizes[1:])
