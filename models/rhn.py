"""Recurrent Highway Network language model (Zilly et al. 2017), as trained by Selfish-RNN.

Parameter names: ``encoder.weight``, ``rnns.{l}.W.weight`` (input transform of the first micro-step),
``rnns.{l}.R.{d}.weight``/``bias`` (recurrent transform of micro-step ``d``), ``decoder.weight``/``bias``.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from .dropout import embedding_dropout, locked_dropout


class RHNLayer(nn.Module):
    """One highway layer: every time step runs ``depth`` micro-steps, and only the first sees the input.

    Micro-step ``d`` computes ``h = tanh(W_H x [d = 0] + R_H^d (s * m) + b_H)`` and
    ``t = sigmoid(W_T x [d = 0] + R_T^d (s * m) + b_T)`` and sets ``s <- h * t + s * c`` with the carry gate
    ``c = 1 - t`` (coupled) or ``sigmoid(W_C x [d = 0] + R_C^d (s * m) + b_C)``. ``m`` is a dropout mask on the
    state, one per sequence, shared by every time step and micro-step. The layer's output at a time step is
    ``s`` after the last micro-step.

    Args:
        input_size: inputs per time step.
        hidden_size: state size.
        depth: micro-steps per time step (the recurrence depth).
        couple: couple the carry gate to the transform gate (``c = 1 - t``).
    """

    def __init__(self, input_size: int, hidden_size: int, depth: int = 10, couple: bool = True):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.hidden_size = hidden_size
        self.depth = depth
        self.couple = couple
        gates = 2 if couple else 3
        # The recurrent transforms carry the biases; one on W too would only duplicate micro-step 0's.
        self.W = nn.Linear(input_size, gates * hidden_size, bias=False)
        self.R = nn.ModuleList(nn.Linear(hidden_size, gates * hidden_size) for _ in range(depth))

    def forward(self, x: torch.Tensor, s: torch.Tensor,
                state_mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Run over ``x`` ``(T, batch, input_size)`` from state ``s`` ``(batch, hidden_size)``.

        Returns:
            ``(outputs, s)``: outputs ``(T, batch, hidden_size)`` and the last state.
        """
        wx = self.W(x)
        outputs = []
        for t in range(x.size(0)):
            for d in range(self.depth):
                dropped = s if state_mask is None else s * state_mask
                pre = self.R[d](dropped)
                if d == 0:
                    pre = pre + wx[t]
                if self.couple:
                    h, gate = pre.chunk(2, dim=-1)
                    gate = torch.sigmoid(gate)
                    s = torch.tanh(h) * gate + s * (1 - gate)
                else:
                    h, gate, carry = pre.chunk(3, dim=-1)
                    s = torch.tanh(h) * torch.sigmoid(gate) + s * torch.sigmoid(carry)
            outputs.append(s)
        return torch.stack(outputs), s


class RHNModel(nn.Module):
    """Embedding, RHN layers and a softmax, with the dropouts of Selfish-RNN's RHN recipe.

    Embedding dropout ``dropoute`` (whole words) → locked dropout ``dropouti`` → each RHN layer (state dropout
    ``dropouth``) followed by locked dropout ``dropout`` → linear decoder. With ``tie_weights`` the decoder
    shares the embedding and the last layer's width is ``ninp``.

    Args:
        ntoken: vocabulary size.
        ninp: embedding size.
        nhid: state size of each layer (the last one is ``ninp`` when tied).
        nlayers: number of RHN layers.
        depth: recurrence depth (micro-steps per time step).
        dropout: locked dropout after each layer.
        dropouth: dropout on the recurrent state.
        dropouti: locked dropout on the embeddings.
        dropoute: embedding (word) dropout.
        tie_weights: share the embedding with the decoder.
        couple: coupled carry gate.
    """

    def __init__(self, ntoken: int, ninp: int, nhid: int, nlayers: int = 1, depth: int = 10, dropout: float = 0.65,
                 dropouth: float = 0.25, dropouti: float = 0.65, dropoute: float = 0.2, tie_weights: bool = True,
                 couple: bool = True):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        sizes = [nhid] * nlayers
        if tie_weights:
            sizes[-1] = ninp
        self.sizes = sizes
        self.rnns = nn.ModuleList(RHNLayer(ninp if i == 0 else sizes[i - 1], sizes[i], depth, couple)
                                  for i in range(nlayers))
        self.decoder = nn.Linear(sizes[-1], ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.dropout, self.dropouth, self.dropouti, self.dropoute = dropout, dropouth, dropouti, dropoute
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        if not tie_weights:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, input: torch.Tensor, hidden: Tuple[torch.Tensor, ...], return_outputs: bool = False):
        """Logits ``(T, batch, ntoken)`` and the new state; with ``return_outputs`` also the last layer's output
        before and after its dropout (for :func:`~models.dropout.ar_tar_loss`)."""
        x = embedding_dropout(self.encoder, input, self.dropoute, self.training)
        x = locked_dropout(x, self.dropouti, self.training)
        new_hidden: List[torch.Tensor] = []
        raw = x
        for layer, s in zip(self.rnns, hidden):
            mask = None
            if self.training and self.dropouth > 0:
                mask = s.new_empty(s.shape).bernoulli_(1 - self.dropouth).div_(1 - self.dropouth)
            raw, s = layer(x, s, mask)
            new_hidden.append(s)
            x = locked_dropout(raw, self.dropout, self.training)
        logits = self.decoder(x)
        if return_outputs:
            return logits, tuple(new_hidden), raw, x
        return logits, tuple(new_hidden)

    def init_hidden(self, bsz: int) -> Tuple[torch.Tensor, ...]:
        """Zero states, one ``(bsz, size)`` tensor per layer."""
        weight = self.encoder.weight
        return tuple(weight.new_zeros(bsz, size) for size in self.sizes)
