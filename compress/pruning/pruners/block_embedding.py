"""Predefined block sparseness of an embedding over a frequency-sorted vocabulary, as a fixed mask."""
from __future__ import annotations

from typing import Dict

from compress.errors import ArgumentError
from compress.pruning.base import FixedStructurePruner, WeightSpec
from compress.registry import register_pruner
from compress.sparsity.names import ParameterIndex
from compress.structured.geometry import (
    EmbeddingBlockStructure,
    check_blocks,
    check_density,
    embedding_block_structure,
)


@register_pruner
class BlockEmbeddingPruner(FixedStructurePruner):
    """The structure of a :class:`~compress.structured.SparseEmbedding` as a mask on a dense embedding weight.

    The ``(V, E)`` weight's columns are cut into ``blocks`` blocks; block ``j`` keeps only the rows of ids
    ``>= start_j`` (:func:`~compress.structured.geometry.embedding_block_structure`). The structure is about ids, so it
    means "rare words get short vectors" only when the vocabulary is sorted rarest first
    (``load_corpus(..., sort_vocab='up')``, ``--vocab-order up`` in ``examples/word_lm.py``); ``'down'`` gives
    the frequent words the short vectors. A tied decoder shares the mask. The mask is computed once.

    Args:
        name: instance name.
        weights: the embedding weight(s), rows = ids, e.g. ``[encoder.weight]``.
        blocks: column blocks (capped at the embedding size).
        density: trainable share of each weight, in [1/blocks, 1].

    Raises:
        ArgumentError: ``blocks < 1`` or ``density`` out of range; at binding, a weight that is not 2-D.

    Example:
        >>> import torch, compress
        >>> model = torch.nn.Embedding(10, 4)
        >>> schedule = {"pruners": {"emb": {"class": "BlockEmbeddingPruner", "weights": ["weight"],
        ...                                 "blocks": 2, "density": 0.75}},
        ...             "policies": [{"pruner": {"instance_name": "emb"}, "epochs": [0]}]}
        >>> compress.dict_config(model, None, schedule).on_epoch_begin(0)
        >>> (model.weight != 0).sum(dim=1).tolist()      # ids 0-4 keep block 0 only
        [2, 2, 2, 2, 2, 4, 4, 4, 4, 4]
    """

    def __init__(self, name: str, weights: WeightSpec, blocks: int, density: float):
        super().__init__(name, weights)
        self.blocks = check_blocks("blocks", blocks)
        self.density = check_density("density", density)
        #: the structure of each weight, by name
        self.structures: Dict[str, EmbeddingBlockStructure] = {}

    def bind(self, index: ParameterIndex) -> None:
        super().bind(index)
        self.structures, self._masks = {}, {}
        for name in self.weights:
            weight = index.params[name]
            if weight.dim() != 2:
                raise ArgumentError("weights", f"{name!r} has shape {tuple(weight.shape)}; an embedding weight is 2-D")
            structure = embedding_block_structure(weight.shape[0], weight.shape[1], self.blocks, self.density)
            self.structures[name] = structure
            self._masks[name] = structure.mask()
