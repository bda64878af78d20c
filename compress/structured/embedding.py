"""SparseEmbedding: a block embedding for a frequency-sorted vocabulary (SparseSeqModels' layout)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from compress.structured.geometry import (
    EmbeddingBlockStructure,
    embedding_block_structure,
)


class SparseEmbedding(nn.Module):
    """An embedding whose column block ``j`` stores rows only for ids ``>= start_j``.

    With ids sorted by increasing training frequency (``load_corpus(..., sort_vocab='up')``) the rarest words
    get only the first block(s) and the frequent ones all ``embedding_dim`` dimensions; with ``'down'`` it is
    the other way round (the original's ablation). A word's vector is its rows in all blocks side by side, with
    zeros where a block has no row for it. Only the stored rows are parameters (``blocks.<j>``, shape
    ``(V - start_j, width_j)``), so ``sum(p.numel() ...)`` is the true trainable count. The full ``V x E``
    matrix, zeros included, is :attr:`weight`; a tied decoder uses it (``F.linear(h, emb.weight, bias)``).

    Embedding dropout is left to the model.

    Args:
        num_embeddings: vocabulary size ``V``.
        embedding_dim: full embedding size ``E``.
        blocks: column blocks (capped at ``E``).
        density: share of the ``V x E`` weights that are trainable, in [1/blocks, 1].

    Raises:
        ArgumentError: ``blocks < 1``, or ``density`` outside (0, 1] or below ``1/blocks``.

    Example:
        >>> emb = SparseEmbedding(6, 4, blocks=2, density=0.75)
        >>> emb.structure.starts, sum(p.numel() for p in emb.parameters())   # ids 0-2 get 2 dimensions only
        ((0, 3), 18)
        >>> emb(torch.tensor([0, 5])).shape, bool((emb.weight[:3, 2:] == 0).all())
        (torch.Size([2, 4]), True)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, blocks: int, density: float):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.structure: EmbeddingBlockStructure = embedding_block_structure(num_embeddings, embedding_dim,
                                                                            blocks, density)
        self.blocks = nn.ParameterList(
            nn.Parameter(torch.empty(num_embeddings - start, width))
            for start, width in zip(self.structure.starts, self.structure.widths))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``N(0, 1)``, as ``nn.Embedding``."""
        for block in self.blocks:
            nn.init.normal_(block)

    @property
    def weight(self) -> torch.Tensor:
        """The full ``(V, E)`` matrix: each block pre-padded with zero rows up to its start (differentiable)."""
        return torch.cat([F.pad(block, (0, 0, start, 0)) for block, start in zip(self.blocks, self.structure.starts)],
                         dim=1)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.embedding(input, self.weight)

    @torch.no_grad()
    def load_dense_weight(self, weight: torch.Tensor) -> None:
        """Copy the structure's entries of a dense ``(V, E)`` embedding weight into the blocks."""
        shape = (self.num_embeddings, self.embedding_dim)
        if tuple(weight.shape) != shape:
            raise ValueError(f"load_dense_weight: weight has shape {tuple(weight.shape)}, this layer needs {shape}")
        for block, start, (cs, ce) in zip(self.blocks, self.structure.starts, self.structure.column_bounds()):
            block.copy_(weight[start:, cs:ce])

    def extra_repr(self) -> str:
        s = self.structure
        return (f"{s.num_embeddings}, {s.embedding_dim}, blocks={s.blocks}, density={s.density:.4g}, "
                f"starts={list(s.starts)}")
