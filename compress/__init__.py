"""compress: schedule-driven pruning and quantization of recurrent networks.

Write a Distiller-style YAML schedule, build a scheduler with :func:`file_config`, and call its hooks from
your own training loop. See the README for the format.
"""
from .checkpoint import load_checkpoint, save_checkpoint
from .errors import ArgumentError, CheckpointError, CompressError, ScheduleError
from .masks import MaskStore
from .structured import SparseEmbedding, SparseLSTM, dense_equivalent
from .policies import (LossComponent, LRPolicy, PolicyLoss, PruningPolicy, QuantizationPolicy,
                       RegularizationPolicy, ScheduledTrainingPolicy)
from .pruners import (AutomatedGradualPruner, BaiduRNNPruner, MagnitudeParameterPruner, Pruner, PruningStep,
                      SensitivityPruner, SparsityLevelParameterPruner, SplicingPruner)
from .pruners.block_embedding import BlockEmbeddingPruner
from .pruners.block_sparse_lstm import BlockSparseLSTMPruner
from .pruners.stagewise import IterativePruningPolicy, StageWisePruner
from .pruners.dynamic import (DynamicSparsityPolicy, DynamicSparsityPruner, RigLPruner, SelfishRNNPruner,
                              SETPruner)
from .optim import NTASGDSwitch, SparseNTASGD, averaged_weights
from .grouping import ParameterGroup, group_masks, group_parameters
from .rate_search import Constraint, SearchResult, prune_to_constraint, search_group_rates
from .sensitivity import SensitivityResult, sensitivity_analysis
from .quantization import PostTrainLinearQuantizer, export_model, load_quantized, save_quantized
from .rates import Timing
from .registry import (register_extension, register_lr_scheduler, register_pruner, register_quantizer,
                       register_regularizer)
from .schedule import components_from_file, dict_config, file_config
from .scheduler import CompressionScheduler
from .selection import ParameterIndex
from .summary import perplexity_table, sparsity_summary, sparsity_table

__version__ = "0.1.0"

__all__ = [
    "file_config", "dict_config", "components_from_file", "CompressionScheduler", "MaskStore", "ParameterIndex", "Timing",
    "ScheduledTrainingPolicy", "PruningPolicy", "LRPolicy", "RegularizationPolicy", "QuantizationPolicy",
    "PolicyLoss", "LossComponent", "Pruner", "PruningStep", "AutomatedGradualPruner", "BaiduRNNPruner",
    "MagnitudeParameterPruner", "SensitivityPruner", "SparsityLevelParameterPruner", "SplicingPruner",
    "register_pruner", "register_regularizer", "register_quantizer", "register_extension", "register_lr_scheduler",
    "save_checkpoint", "load_checkpoint", "sparsity_summary", "sparsity_table", "perplexity_table",
    "ScheduleError", "CheckpointError", "ArgumentError", "CompressError",
    "SparseLSTM", "SparseEmbedding", "dense_equivalent", "BlockSparseLSTMPruner", "BlockEmbeddingPruner",
    "StageWisePruner", "IterativePruningPolicy", "ParameterGroup", "group_parameters", "group_masks", "Constraint",
    "SearchResult", "search_group_rates", "prune_to_constraint", "SensitivityResult", "sensitivity_analysis",
    "DynamicSparsityPruner", "DynamicSparsityPolicy", "SelfishRNNPruner", "SETPruner", "RigLPruner",
    "SparseNTASGD", "NTASGDSwitch", "averaged_weights",
    "PostTrainLinearQuantizer", "export_model", "save_quantized", "load_quantized",
]
