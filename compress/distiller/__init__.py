"""Distiller's API on ``compress``: ``import compress.distiller as distiller`` in code written for Distiller.

It covers what Distiller's word-language-model example (``examples/word_language_model/main.py``) and its
``quantize_lstm.ipynb`` notebook call, each name mapped to the ``compress`` function that does the work:

* :mod:`.apputils`: ``config_pylogger``, ``save_checkpoint``/``load_checkpoint`` (:mod:`compress.io.checkpoint`);
* :mod:`.data_loggers`: ``PythonLogger`` (:mod:`logging`), ``TensorBoardLogger`` (optional extra ``tensorboard``),
  ``CsvLogger``, ``QuantCalibrationStatsCollector``/``collect_quant_stats`` (:mod:`compress.quantization.stats`);
* :mod:`.config`: ``file_config``/``dict_config`` (:mod:`compress.scheduling`), also as ``distiller.file_config``;
* ``log_weights_sparsity``, ``log_training_progress``, ``model_summary`` (``'sparsity'``, ``'model'``,
  ``'modules'``), ``weights_sparsity_tbl_summary``, ``masks_sparsity_tbl_summary`` (:mod:`compress.reports`);
* :mod:`.quantization`: ``PostTrainLinearQuantizer`` with ``prepare_model(dummy_input)``;
* :mod:`.modules`: ``DistillerLSTM.from_pytorch_impl`` (:mod:`compress.modules.rnn`);
* :mod:`.utils`: ``assign_layer_fq_names``, ``yaml_ordered_load`` (safe), ``sparsity``, ``density``;
* ``CompressionScheduler`` with Distiller's constructor; every scheduler has ``zeros_mask_dict`` (read only).

What is not covered (``SummaryGraph``, ``draw_model_to_file``, ``model_summary(model, 'png')``, MAC counts, pandas
tables) raises :class:`NotCoveredError` saying what to use instead; any other name is an ``AttributeError`` that
points to ``docs/distiller-compat.md``, which lists every name with its ``compress`` function.

Example:
    >>> import torch
    >>> import compress.distiller as distiller
    >>> model = torch.nn.LSTM(4, 4)
    >>> distiller.log_weights_sparsity(model, 0, loggers=[distiller.data_loggers.NullLogger()])
    >>> distiller.SummaryGraph(model, None)
    Traceback (most recent call last):
    ...
    compress.distiller.uncovered.NotCoveredError: distiller.SummaryGraph is not covered by compress.distiller: ...
"""
from compress.distiller import apputils, config, data_loggers, model_summaries, modules, quantization, utils
from compress.distiller.config import dict_config, file_config
from compress.distiller.model_summaries import (
    SummaryGraph,
    draw_model_to_file,
    masks_sparsity_tbl_summary,
    model_performance_summary,
    model_summary,
    weights_sparsity_summary,
    weights_sparsity_tbl_summary,
)
from compress.distiller.scheduler import CompressionScheduler
from compress.distiller.uncovered import NotCoveredError, missing_name
from compress.distiller.utils import (
    assign_layer_fq_names,
    density,
    log_activation_statistics,
    log_training_progress,
    log_weights_sparsity,
    normalize_module_name,
    sparsity,
)

__all__ = [
    "apputils", "config", "data_loggers", "model_summaries", "modules", "quantization", "utils",
    "file_config", "dict_config", "CompressionScheduler", "NotCoveredError",
    "log_training_progress", "log_weights_sparsity", "log_activation_statistics", "model_summary",
    "weights_sparsity_tbl_summary", "masks_sparsity_tbl_summary", "weights_sparsity_summary",
    "model_performance_summary", "SummaryGraph", "draw_model_to_file",
    "assign_layer_fq_names", "normalize_module_name", "sparsity", "density",
]

__getattr__ = missing_name(__name__)
