"""compress: schedule-driven pruning and quantization of recurrent networks.

Write a Distiller-style YAML schedule, build a scheduler with :func:`file_config`, and call its hooks from
your own training loop. See the README for the format.
"""
from .checkpoint import load_checkpoint, save_checkpoint
from .errors import ArgumentError, CheckpointError, CompressError, ScheduleError
from .masks import MaskStore
from .policies import (LossComponent, LRPolicy, PolicyLoss, PruningPolicy, QuantizationPolicy,
                       RegularizationPolicy, ScheduledTrainingPolicy)
from .pruners import (AutomatedGradualPruner, BaiduRNNPruner, MagnitudeParameterPruner, Pruner, PruningStep,
                      SensitivityPruner, SparsityLevelParameterPruner, SplicingPruner)
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
]
