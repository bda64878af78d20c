"""The recurrent word-level language model of PyTorch's ``word_language_model`` example.

Module and parameter names (``encoder.weight``, ``rnn.weight_ih_l0``, ``rnn.weight_hh_l1``, ``decoder.weight``,
...) are kept exactly as in that example because Distiller schedules address weights by those names.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple, Union

import torch
from torch import nn

from compress.options import choice

Hidden = Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]

_RNN_TYPES = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")


class RNNModel(nn.Module):
    """Embedding, dropout, a stacked recurrent layer, dropout and a linear decoder over the vocabulary.

    Args:
        rnn_type: ``'LSTM'``, ``'GRU'``, ``'RNN_TANH'`` or ``'RNN_RELU'``.
        ntoken: vocabulary size.
        ninp: embedding size.
        nhid: hidden units per recurrent layer.
        nlayers: number of stacked recurrent layers.
        dropout: dropout probability on the embeddings, between recurrent layers and on the decoder input.
        tie_weights: make ``decoder.weight`` the same Parameter as ``encoder.weight`` (needs ``nhid == ninp``).
    """

    def __init__(
        self,
        rnn_type: str,
        ntoken: int,
        ninp: int,
        nhid: int,
        nlayers: int,
        dropout: float = 0.5,
        tie_weights: bool = False,
    ):
        super().__init__()
        if rnn_type not in _RNN_TYPES:
            raise ValueError(f"rnn_type must be one of {', '.join(_RNN_TYPES)}; got {rnn_type!r}")
        if tie_weights and nhid != ninp:
            raise ValueError(f"tie_weights needs nhid == ninp, but nhid={nhid} and ninp={ninp}")
        self.rnn_type = rnn_type
        self.nhid = nhid
        self.nlayers = nlayers
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        # torch warns about inter-layer dropout on a single layer, where it has no effect anyway.
        rnn_dropout = dropout if nlayers > 1 else 0.0
        if rnn_type in ("LSTM", "GRU"):
            self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=rnn_dropout)
        else:
            nonlinearity = "tanh" if rnn_type == "RNN_TANH" else "relu"
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=rnn_dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            # Press & Wolf (2016): sharing the input and output embeddings improves perplexity and
            # removes ntoken * nhid parameters.
            self.decoder.weight = self.encoder.weight
        self.init_weights()

    def init_weights(self) -> None:
        """Re-initialise the embedding and decoder weights from U(-0.1, 0.1) and zero the decoder bias.

        The recurrent layer keeps torch's default initialisation.
        """
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, input: torch.Tensor, hidden: Hidden) -> Tuple[torch.Tensor, Hidden]:
        """Run the model over a batch of token ids.

        Args:
            input: token ids of shape ``(seq_len, batch)``.
            hidden: the state from :meth:`init_hidden` or from the previous call.

        Returns:
            ``(logits, hidden)``: unnormalised scores of shape ``(seq_len, batch, ntoken)`` (flatten them with
            ``logits.view(-1, ntoken)`` for ``cross_entropy``) and the new recurrent state.
        """
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        return self.decoder(self.drop(output)), hidden

    def init_hidden(self, bsz: int) -> Hidden:
        """Return an all-zero recurrent state on the model's device and dtype.

        Args:
            bsz: batch size.

        Returns:
            For ``'LSTM'`` a tuple ``(h, c)``, otherwise ``h``; each of shape ``(nlayers, bsz, nhid)``.
        """
        weight = self.decoder.weight
        zeros = weight.new_zeros(self.nlayers, bsz, self.nhid)
        return (zeros, zeros.clone()) if self.rnn_type == "LSTM" else zeros


def rnn_model_from_state(state: Mapping[str, torch.Tensor],
                         nonlinearity: str = "tanh") -> Tuple[RNNModel, Dict[str, Any]]:
    """Rebuild the :class:`RNNModel` whose ``state_dict`` is ``state``, its shape read from the weights.

    A decoder is tied when it shares the embedding's storage (as a checkpoint of a tied model stores it).

    Args:
        state: a word LM's state dict (``encoder.weight``, ``rnn.weight_ih_l0``, ..., ``decoder.weight``).
        nonlinearity: ``'tanh'`` or ``'relu'``, for a plain RNN (``RNN_TANH`` and ``RNN_RELU`` have the same
            weights); ignored for LSTM and GRU.

    Returns:
        ``(model, info)``: the model in eval mode with ``state`` loaded, and ``info`` with ``model`` (the
        ``rnn_type``), ``ntokens``, ``emsize``, ``nhid``, ``nlayers`` and ``tied``.

    Raises:
        ValueError: ``state`` lacks a word-LM weight (the message names it).
        compress.ArgumentError: ``nonlinearity`` is neither ``'tanh'`` nor ``'relu'``.

    Example:
        >>> model, info = rnn_model_from_state(RNNModel("GRU", 30, 8, 8, 2, tie_weights=True).state_dict())
        >>> info
        {'model': 'GRU', 'ntokens': 30, 'emsize': 8, 'nhid': 8, 'nlayers': 2, 'tied': True}
    """
    choice("nonlinearity", nonlinearity, ("tanh", "relu"))
    needed = ("encoder.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "decoder.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        raise ValueError(f"not a word-LM checkpoint (no {missing[0]})")
    ntokens, emsize = state["encoder.weight"].shape
    nhid = state["rnn.weight_hh_l0"].shape[1]
    gates = state["rnn.weight_ih_l0"].shape[0] // nhid
    rnn_type = {4: "LSTM", 3: "GRU", 1: "RNN_RELU" if nonlinearity == "relu" else "RNN_TANH"}[gates]
    nlayers = sum(1 for k in state if k.startswith("rnn.weight_ih_l") and not k.endswith("_reverse"))
    enc, dec = state["encoder.weight"], state["decoder.weight"]
    tied = enc.untyped_storage().data_ptr() == dec.untyped_storage().data_ptr()
    model = RNNModel(rnn_type, ntokens, emsize, nhid, nlayers, 0.0, tied)
    model.load_state_dict(state)
    info = dict(model=rnn_type, ntokens=ntokens, emsize=emsize, nhid=nhid, nlayers=nlayers, tied=tied)
    return model.eval(), info
