"""The dropouts of AWD-LSTM-style language models (Merity et al. 2018, Gal & Ghahramani 2016).

* :func:`locked_dropout`: one mask per sequence, shared across time steps (variational dropout);
* :func:`embedding_dropout`: drops whole words (rows of the embedding matrix);
* :func:`ar_tar_loss`: activation regularisation (AR) and temporal activation regularisation (TAR).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout with one mask of shape ``(1, batch, features)`` for every time step of ``x`` ``(T, batch, features)``.

    Survivors are scaled by ``1 / (1 - p)``; the identity when not training or ``p == 0``.
    """
    if not training or p == 0:
        return x
    mask = x.new_empty((1,) + tuple(x.shape[1:])).bernoulli_(1 - p).div_(1 - p)
    return x * mask


def embedding_dropout(embedding: nn.Embedding, words: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Look ``words`` up in ``embedding`` with whole rows (words) dropped with probability ``p``.

    Every occurrence of a dropped word in the batch reads zeros; kept rows are scaled by ``1 / (1 - p)``.
    """
    weight = embedding.weight
    if training and p > 0:
        mask = weight.new_empty((weight.size(0), 1)).bernoulli_(1 - p).div_(1 - p)
        weight = weight * mask
    return F.embedding(words, weight, embedding.padding_idx, embedding.max_norm, embedding.norm_type,
                       embedding.scale_grad_by_freq, embedding.sparse)


def ar_tar_loss(raw_output: torch.Tensor, dropped_output: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """AWD-LSTM's extra loss terms on the last recurrent layer's output ``(T, batch, features)``.

    ``alpha * mean(dropped_output ** 2) + beta * mean((raw_output[t] - raw_output[t - 1]) ** 2)``: AR keeps
    activations small, TAR keeps them slowly changing. AR reads the output after dropout, TAR before it.
    """
    loss = raw_output.new_zeros(())
    if alpha:
        loss = loss + alpha * dropped_output.pow(2).mean()
    if beta and raw_output.size(0) > 1:
        loss = loss + beta * (raw_output[1:] - raw_output[:-1]).pow(2).mean()
    return loss
