"""The registered pruners, one module per family; importing this package registers every one of them.

Magnitude family (Distiller's): :class:`AutomatedGradualPruner`, :class:`SparsityLevelParameterPruner`,
:class:`MagnitudeParameterPruner`, :class:`SensitivityPruner`, :class:`SplicingPruner`, :class:`BaiduRNNPruner`;
predefined structure: :class:`BlockSparseLSTMPruner`, :class:`BlockEmbeddingPruner`; dynamic sparsity:
:class:`DynamicSparsityPruner`, :class:`SelfishRNNPruner`, :class:`SETPruner`, :class:`RigLPruner`; stage-wise
search (SiPO): :class:`StageWisePruner`; hidden units (ISS): :class:`UnitPruner`.
"""
from compress.pruning.pruners.agp import AutomatedGradualPruner
from compress.pruning.pruners.baidu import BaiduRNNPruner
from compress.pruning.pruners.block_embedding import BlockEmbeddingPruner
from compress.pruning.pruners.block_sparse_lstm import BlockSparseLSTMPruner
from compress.pruning.pruners.dynamic import (
           DynamicSparsityPruner,
           RigLPruner,
           SelfishRNNPruner,
           SETPruner,
)
from compress.pruning.pruners.level import SparsityLevelParameterPruner
from compress.pruning.pruners.magnitude import MagnitudeParameterPruner
from compress.pruning.pruners.sensitivity import SensitivityPruner
from compress.pruning.pruners.splicing import SplicingPruner
from compress.pruning.pruners.stagewise import StageWisePruner
from compress.pruning.pruners.units import UnitPruner

__all__ = ["AutomatedGradualPruner", "BaiduRNNPruner", "SparsityLevelParameterPruner", "MagnitudeParameterPruner",
           "SensitivityPruner", "SplicingPruner", "BlockSparseLSTMPruner", "BlockEmbeddingPruner",
           "DynamicSparsityPruner", "SelfishRNNPruner", "SETPruner", "RigLPruner", "StageWisePruner", "UnitPruner"]
