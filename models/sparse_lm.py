"""A word LM with predefined sparse layers: SparseSeqModels' stacked-LSTM wiring on PyTorch's example model.

The layout is AWD-LSTM's (as in SparseSeqModels): ``nlayers`` one-layer recurrent modules, the first reading the
``ninp``-dimensional embedding, the middle ones ``nhid`` wide, and the last one ``ninp`` wide when the decoder
is tied to the embedding (``nhid`` otherwise). A ``sparse_mode`` says which of these sizes were *widened* and
must be paid for with predefined sparseness, so that each layer keeps the recurrent parameter budget of the
dense layer it replaces:

* ``direct``: dense ``nn.LSTM`` layers;
* ``sparse_hidden``: the ``nhid`` dimensions are ``1/sparse_fract`` times wider than in the dense model they
  stand for; each ``nhid``-sized dimension of a layer gets ``reduce = sparse_fract`` (e.g. 3 layers, tied:
  ``(1, f), (f, f), (f, 1)``), so ``--sparse_mode sparse_hidden --sparse_fract 0.66666 --nhid 1725`` has the
  recurrent budget of the dense ``--nhid 1150`` model;
* ``sparse_emb``: the ``ninp``-sized dimensions are the widened ones (to compensate a sparse embedding);
* ``sparse_all``: every dimension gets ``reduce = sparse_fract``.

Layers whose reductions are both 1 are plain ``nn.LSTM``.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from compress.structured import SparseEmbedding, SparseLSTM

SPARSE_MODES = ("direct", "sparse_hidden", "sparse_emb", "sparse_all")
LayerState = Tuple[torch.Tensor, torch.Tensor]


def layer_reductions(sparse_mode: str, nlayers: int, sparse_fract: float,
                     tie_weights: bool) -> List[Tuple[float, float]]:
    """``(reduce_in, reduce_out)`` of each layer for a ``sparse_mode``; see the module docstring.

    Raises:
        ValueError: unknown ``sparse_mode``, ``nlayers < 1``, or ``sparse_fract`` outside (0, 1].
    """
    if sparse_mode not in SPARSE_MODES:
        raise ValueError(f"sparse_mode must be one of {', '.join(SPARSE_MODES)}; got {sparse_mode!r}")
    if nlayers < 1:
        raise ValueError(f"nlayers must be at least 1; got {nlayers}")
    if not 0.0 < sparse_fract <= 1.0:
        raise ValueError(f"sparse_fract must be in (0, 1]; got {sparse_fract}")
    widened = {"direct": (), "sparse_hidden": ("hid",), "sparse_emb": ("emb",), "sparse_all": ("hid", "emb")}
    widened_roles = widened[sparse_mode]
    out = []
    for layer in range(nlayers):
        roles = ("emb" if layer == 0 else "hid", "emb" if layer == nlayers - 1 and tie_weights else "hid")
        out.append(tuple(sparse_fract if role in widened_roles else 1.0 for role in roles))
    return out


class TiedDecoder(nn.Module):
    """The output bias of a decoder whose weight is the embedding's full matrix (``F.linear(h, emb.weight, b)``).

    Args:
        ntoken: vocabulary size.
    """

    def __init__(self, ntoken: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(ntoken))

    def forward(self, input: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(input, weight, self.bias)


class SparseRNNModel(nn.Module):
    """Embedding (dense or :class:`~compress.structured.SparseEmbedding`), stacked LSTM layers (dense or
    :class:`~compress.structured.SparseLSTM`), dropout as in PyTorch's example, and a linear decoder.

    Args:
        ntoken: vocabulary size.
        ninp: embedding size.
        nhid: hidden units of every layer but the last when tied (see the module docstring).
        nlayers: recurrent layers.
        dropout: dropout on the embeddings, between layers and on the decoder input.
        tie_weights: decode with the embedding matrix; the last layer is then ``ninp`` wide.
        sparse_mode: ``direct``, ``sparse_hidden``, ``sparse_emb`` or ``sparse_all``.
        sparse_fract: the reduction applied to the widened dimensions, in (0, 1].
        emblocks: column blocks of a sparse embedding (1: dense ``nn.Embedding``).
        emdensity: trainable share of the embedding, in [1/emblocks, 1].
    """

    def __init__(self, ntoken: int, ninp: int, nhid: int, nlayers: int, dropout: float = 0.5,
                 tie_weights: bool = False, sparse_mode: str = "direct", sparse_fract: float = 1.0,
                 emblocks: int = 1, emdensity: float = 1.0):
        super().__init__()
        reductions = layer_reductions(sparse_mode, nlayers, sparse_fract, tie_weights)
        self.sparse_mode = sparse_mode
        self.nlayers = nlayers
        self.sizes = [(ninp if layer == 0 else nhid, ninp if layer == nlayers - 1 and tie_weights else nhid)
                      for layer in range(nlayers)]
        self.drop = nn.Dropout(dropout)
        if emblocks == 1 and emdensity == 1.0:
            self.encoder: nn.Module = nn.Embedding(ntoken, ninp)
        else:
            self.encoder = SparseEmbedding(ntoken, ninp, emblocks, emdensity)
        self.rnns = nn.ModuleList(
            nn.LSTM(i, o) if r == (1.0, 1.0) else SparseLSTM(i, o, reduce_in=r[0], reduce_out=r[1])
            for (i, o), r in zip(self.sizes, reductions))
        out_size = self.sizes[-1][1]
        if not tie_weights:
            self.decoder: nn.Module = nn.Linear(out_size, ntoken)
        elif isinstance(self.encoder, nn.Embedding):
            self.decoder = nn.Linear(out_size, ntoken)
            self.decoder.weight = self.encoder.weight
        else:
            self.decoder = TiedDecoder(ntoken)
        self.init_weights()

    def init_weights(self) -> None:
        """Embedding and decoder weights from U(-0.1, 0.1), decoder bias 0, as in PyTorch's example and the original."""
        for weight in ([self.encoder.weight] if isinstance(self.encoder, nn.Embedding) else self.encoder.blocks):
            nn.init.uniform_(weight, -0.1, 0.1)
        if isinstance(self.decoder, nn.Linear):
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, input: torch.Tensor,
                hidden: Tuple[LayerState, ...]) -> Tuple[torch.Tensor, Tuple[LayerState, ...]]:
        """Token ids ``(seq_len, batch)`` and the state from :meth:`init_hidden` → logits ``(seq_len, batch, ntoken)``
        and the new state."""
        output = self.drop(self.encoder(input))
        new_hidden = []
        for layer, rnn in enumerate(self.rnns):
            output, state = rnn(output, hidden[layer])
            new_hidden.append(state)
            output = self.drop(output)
        if isinstance(self.decoder, TiedDecoder):
            return self.decoder(output, self.encoder.weight), tuple(new_hidden)
        return self.decoder(output), tuple(new_hidden)

    def init_hidden(self, bsz: int) -> Tuple[LayerState, ...]:
        """Zero ``(h, c)`` per layer, each ``(1, bsz, layer size)``, on the model's device and dtype."""
        ref = self.decoder.bias
        return tuple((ref.new_zeros(1, bsz, o), ref.new_zeros(1, bsz, o)) for _, o in self.sizes)

    def recurrent_parameters(self) -> int:
        """Trainable parameters of the recurrent layers (weights and biases)."""
        return sum(p.numel() for p in self.rnns.parameters())
