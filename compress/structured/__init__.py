"""Predefined structured sparseness (Demeester et al., CoNLL 2018; SparseSeqModels): layers that are sparse
with a structure fixed before training.

* **Block-sparse LSTM.** A layer with ``I`` inputs and ``H`` units is cut into ``k`` components. Component ``c``
  owns hidden block ``c`` (a partition of the units) and reads input window ``c`` of relative width
  ``density`` (windows overlap when ``k * density > 1``). As masks on one dense layer: per gate, the recurrent
  weights are block-diagonal and the input weights banded. Given ``reduce_in``/``reduce_out`` instead, the
  layer gets the parameter count of a dense layer with that share of its inputs and units.
* **Block embedding.** The ``E`` columns of a ``V x E`` embedding are cut into ``b`` blocks; block ``j`` has
  rows only for ids ``>= start_j``; with the vocabulary sorted rarest first, rare words get short vectors.

Each comes in two forms that compute the same function of the same weights:

* the **module form** stores only the trainable weights: :class:`SparseLSTM` (``k`` small ``nn.LSTM``) and
  :class:`SparseEmbedding`; their parameter count is the true one;
* the **mask form** keeps an ordinary ``nn.LSTM``/``nn.Embedding`` and fixes the structure as masks, from a
  schedule: :class:`~compress.pruning.BlockSparseLSTMPruner` and :class:`~compress.pruning.BlockEmbeddingPruner`.

Which is faster depends on the device and size. The mask form computes the whole wide layer every step, zeros
included, in one fused ``nn.LSTM`` call; the module form does only the kept arithmetic, but in ``k``
sequential LSTM calls, slicing and concatenating their states. On a CPU, where arithmetic dominates, the module
form wins at real sizes; at tiny sizes or on a GPU, where a step is bound by kernel launches, the single fused
call of the mask form can win. ``examples/bench_structured.py`` measures both; its figures are in
``examples/README.md``.

:mod:`.geometry` holds the pure structure computations; :func:`dense_equivalent` shows a model that uses the
module form as the dense tensors it stands for (for :func:`compress.sparsity_table`).

Structured *pruning* of hidden units (ISS) lives here too: :mod:`.units` says which weights belong to one hidden
unit of a recurrent layer (the groups :class:`~compress.pruning.UnitPruner` and
:class:`~compress.pruning.UnitGroupLassoRegularizer` act on), and :mod:`.thinning` removes pruned units for real
(:func:`thin`: a smaller model computing the same function; :func:`thinned_skeleton` to load one).
"""
from compress.structured.embedding import SparseEmbedding
from compress.structured.equivalent import dense_equivalent
from compress.structured.geometry import (
                                          EmbeddingBlockStructure,
                                          LSTMBlockStructure,
                                          embedding_block_structure,
                                          lstm_block_structure,
)
from compress.structured.lstm import SparseLSTM
from compress.structured.thinning import (
                                          ThinnedRNN,
                                          ThinningPlan,
                                          apply_plan,
                                          hidden_sizes,
                                          thin,
                                          thin_optimizer,
                                          thinned_skeleton,
                                          thinning_plan,
)
from compress.structured.units import UnitLayer, unit_groups

__all__ = ["SparseLSTM", "SparseEmbedding", "dense_equivalent", "LSTMBlockStructure", "EmbeddingBlockStructure",
           "lstm_block_structure", "embedding_block_structure", "UnitLayer", "unit_groups", "ThinnedRNN",
           "ThinningPlan", "thin", "thinning_plan", "apply_plan", "thinned_skeleton", "thin_optimizer", "hidden_sizes"]
