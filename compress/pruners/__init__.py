"""Pruners, one module per family; importing this package registers them all."""
from .agp import AutomatedGradualPruner
from .baidu import BaiduRNNPruner
from .base import Pruner, PruningStep
from .block_embedding import BlockEmbeddingPruner
from .block_sparse_lstm import BlockSparseLSTMPruner
from .level import SparsityLevelParameterPruner
from .magnitude import MagnitudeParameterPruner
from .sensitivity import SensitivityPruner
from .splicing import SplicingPruner

__all__ = ["Pruner", "PruningStep", "AutomatedGradualPruner", "BaiduRNNPruner", "SparsityLevelParameterPruner",
           "MagnitudeParameterPruner", "SensitivityPruner", "SplicingPruner", "BlockSparseLSTMPruner",
           "BlockEmbeddingPruner"]
