"""compress: schedule-driven pruning and quantization of recurrent networks.

Write a Distiller-style YAML schedule, build a scheduler with :func:`file_config`, and call its hooks from
your own training loop. See the README for the format and the layout of the sub-packages:
:mod:`compress.scheduling`, :mod:`compress.pruning`, :mod:`compress.sparsity`, :mod:`compress.quantization`,
:mod:`compress.structured`, :mod:`compress.optim`, :mod:`compress.modules`, :mod:`compress.io`,
:mod:`compress.reports`, :mod:`compress.kernels`.

Example:
    >>> import torch, compress
    >>> model = torch.nn.LSTM(4, 8)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> schedule = {"pruners": {"p": {"class": "SparsityLevelParameterPruner",
    ...                               "levels": {"weight_hh_l0": 0.5}}},
    ...             "policies": [{"pruner": {"instance_name": "p"}, "epochs": [0]}]}
    >>> scheduler = compress.dict_config(model, optimizer, schedule)
    >>> scheduler.on_epoch_begin(0)
    >>> round(float((model.weight_hh_l0 == 0).float().mean()), 2)
    0.5
"""
import importlib as _importlib
import warnings as _warnings

import compress.optim  # noqa: F401  (registers NTASGDSwitch)
from compress.analysis import ls_distance, lyapunov_spectrum
from compress.errors import ArgumentError, CheckpointError, CompressError, ScheduleError
from compress.io.checkpoint import load_checkpoint, save_checkpoint
from compress.pruning import (
    AutomatedGradualPruner,
    DynamicSparsityPruner,
    Pruner,
    SelfishRNNPruner,
    SparsityLevelParameterPruner,
    StageWisePruner,
)
from compress.quantization import PostTrainLinearQuantizer
from compress.registry import (
    register_extension,
    register_lr_scheduler,
    register_pruner,
    register_quantizer,
    register_regularizer,
)
from compress.reports import perplexity_table, sparsity_table
from compress.scheduling import (
    CompressionScheduler,
    components_from_file,
    dict_config,
    file_config,
)
from compress.structured.thinning import thin

__version__ = "0.1.0"

__all__ = [
    "file_config", "dict_config", "components_from_file", "CompressionScheduler",
    "save_checkpoint", "load_checkpoint", "sparsity_table", "perplexity_table",
    "register_pruner", "register_regularizer", "register_quantizer", "register_extension", "register_lr_scheduler",
    "CompressError", "ScheduleError", "CheckpointError", "ArgumentError",
    "Pruner", "AutomatedGradualPruner", "SparsityLevelParameterPruner", "DynamicSparsityPruner", "SelfishRNNPruner",
    "StageWisePruner", "PostTrainLinearQuantizer", "thin", "lyapunov_spectrum", "ls_distance",
]

# Names that lived at the top level before the sub-packages had an ``__all__`` of their own: they still
# resolve, with a DeprecationWarning that names their home.
_MOVED = {
    "MaskStore": "compress.sparsity", "ParameterIndex": "compress.sparsity", "Timing": "compress.context",
    "HookContext": "compress.context", "PruningStep": "compress.context",
    "ScheduledTrainingPolicy": "compress.scheduling.policies", "PruningPolicy": "compress.scheduling.policies",
    "LRPolicy": "compress.scheduling.policies", "RegularizationPolicy": "compress.scheduling.policies",
    "QuantizationPolicy": "compress.scheduling.policies", "PolicyLoss": "compress.scheduling.policies",
    "LossComponent": "compress.scheduling.policies", "DynamicSparsityPolicy": "compress.scheduling.policies",
    "IterativePruningPolicy": "compress.scheduling.policies",
    "BaiduRNNPruner": "compress.pruning", "MagnitudeParameterPruner": "compress.pruning",
    "SensitivityPruner": "compress.pruning", "SplicingPruner": "compress.pruning",
    "BlockSparseLSTMPruner": "compress.pruning", "BlockEmbeddingPruner": "compress.pruning",
    "SETPruner": "compress.pruning", "RigLPruner": "compress.pruning",
    "ParameterGroup": "compress.pruning.criteria", "group_parameters": "compress.pruning.criteria",
    "group_masks": "compress.pruning.criteria", "Constraint": "compress.pruning", "SearchResult": "compress.pruning",
    "search_group_rates": "compress.pruning", "prune_to_constraint": "compress.pruning",
    "SensitivityResult": "compress.pruning", "sensitivity_analysis": "compress.pruning",
    "SparseNTASGD": "compress.optim", "NTASGDSwitch": "compress.optim", "averaged_weights": "compress.optim",
    "SparseLSTM": "compress.structured", "SparseEmbedding": "compress.structured",
    "dense_equivalent": "compress.structured",
    "export_model": "compress.quantization", "save_quantized": "compress.quantization",
    "load_quantized": "compress.quantization", "sparsity_summary": "compress.reports",
}


def __getattr__(name):
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module 'compress' has no attribute {name!r}")
    _warnings.warn(f"compress.{name} moved to {home}.{'HookContext' if name == 'PruningStep' else name}",
                   DeprecationWarning, stacklevel=2)
    return getattr(_importlib.import_module(home), "HookContext" if name == "PruningStep" else name)
