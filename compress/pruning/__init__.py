"""Pruning: which weights to drop, and how much when.

* :mod:`.base`: the pruner protocol (:class:`Pruner`) and the lifecycles some pruners add
  (:class:`RegrowingPruner`, :class:`SearchingPruner`);
* :mod:`.ramps`: how much, when: sparsity targets as pure functions of the training position;
* :mod:`.criteria`: which weights: pure functions from tensors to boolean masks;
* :mod:`.pruners`: the registered pruners; :mod:`.regularizers`: loss terms that push weights to zero;
* :mod:`.rate_search`: per-group rates found under a quality constraint (SiPO); :mod:`.sensitivity`: Distiller's
  sensitivity analysis.

Masks are applied by :class:`compress.sparsity.MaskStore`, never here.
"""
from compress.pruning.base import (
                                      FixedStructurePruner,
                                      PerWeightPruner,
                                      Pruner,
                                      RegrowingPruner,
                                      SearchingPruner,
                                      TopologyUpdate,
)
from compress.pruning.pruners import (
                                      AutomatedGradualPruner,
                                      BaiduRNNPruner,
                                      BlockEmbeddingPruner,
                                      BlockSparseLSTMPruner,
                                      DynamicSparsityPruner,
                                      MagnitudeParameterPruner,
                                      RigLPruner,
                                      SelfishRNNPruner,
                                      SensitivityPruner,
                                      SETPruner,
                                      SparsityLevelParameterPruner,
                                      SplicingPruner,
                                      StageWisePruner,
                                      UnitPruner,
)
from compress.pruning.rate_search import (
                                      Constraint,
                                      SearchResult,
                                      prune_to_constraint,
                                      search_group_rates,
)
from compress.pruning.regularizers import (
                                      GroupLassoRegularizer,
                                      L1Regularizer,
                                      UnitGroupLassoRegularizer,
)
from compress.pruning.sensitivity import SensitivityResult, sensitivity_analysis

__all__ = ["Pruner", "PerWeightPruner", "FixedStructurePruner", "RegrowingPruner", "SearchingPruner", "TopologyUpdate",
           "AutomatedGradualPruner", "BaiduRNNPruner", "SparsityLevelParameterPruner", "MagnitudeParameterPruner",
           "SensitivityPruner", "SplicingPruner", "BlockSparseLSTMPruner", "BlockEmbeddingPruner",
           "DynamicSparsityPruner", "SelfishRNNPruner", "SETPruner", "RigLPruner", "StageWisePruner",
           "UnitPruner", "L1Regularizer", "GroupLassoRegularizer", "UnitGroupLassoRegularizer", "Constraint",
           "SearchResult", "search_group_rates", "prune_to_constraint", "SensitivityResult", "sensitivity_analysis"]
