"""The dense tensors a model's predefined-sparse layers stand for, for the sparsity table.

The layers store only their trainable weights, so a model's parameter count is its true one. Its sparsity table
(``compress.sparsity_table(model)``) lists each stored block as a small dense tensor, 0% sparse: honest about
what is trained, but the structure is hidden and the wide layer's sparsity does not show. ``sparsity_table(
dense_equivalent(model))`` lists each sparse layer under the names of the dense layer it replaces, zeros
included, so it reads like the table of the mask form (same names as a dense ``nn.LSTM``, same NNZ).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

from compress.structured.embedding import SparseEmbedding
from compress.structured.lstm import SparseLSTM


def dense_equivalent(model: nn.Module) -> Dict[str, torch.Tensor]:
    """``name -> tensor`` of the model's parameters, with each sparse layer's blocks replaced by its dense tensors.

    A :class:`SparseLSTM` at ``rnns.1`` contributes ``rnns.1.weight_ih_l0``, ``rnns.1.weight_hh_l0``,
    ``rnns.1.bias_ih_l0`` and ``rnns.1.bias_hh_l0``; a :class:`SparseEmbedding` at ``encoder`` contributes
    ``encoder.weight``. Other parameters (tied ones under every name) pass through unchanged, in order.
    The tensors are detached copies for the sparse layers; pass the result to
    :func:`compress.sparsity_table`.

    Args:
        model: any module; its :class:`SparseLSTM` and :class:`SparseEmbedding` layers are expanded.

    Returns:
        Parameter names to tensors, in the model's parameter order.

    Example:
        >>> model = nn.Sequential(SparseLSTM(4, 4, blocks=2))
        >>> {name: tuple(t.shape) for name, t in dense_equivalent(model).items()}  # doctest: +NORMALIZE_WHITESPACE
        {'0.weight_ih_l0': (16, 4), '0.weight_hh_l0': (16, 4), '0.bias_ih_l0': (16,), '0.bias_hh_l0': (16,)}
    """
    sparse: List[Tuple[str, nn.Module]] = [(n, m) for n, m in model.named_modules()
                                           if isinstance(m, (SparseLSTM, SparseEmbedding))]
    out: Dict[str, torch.Tensor] = {}
    done = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        owner = next(((p, m) for p, m in sparse if not p or name.startswith(p + ".")), None)
        if owner is None:
            out[name] = param
            continue
        prefix, module = owner
        if prefix in done:
            continue
        done.add(prefix)
        head = prefix + "." if prefix else ""
        if isinstance(module, SparseLSTM):
            out.update({head + k: v for k, v in module.dense_weights().items()})
        else:
            out[head + "weight"] = module.weight.detach()
    return out
