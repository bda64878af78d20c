"""Distiller's ``distiller.utils`` names that its word-LM example and notebook call (also at ``distiller.*``).

Example:
    >>> import torch
    >>> sparsity(torch.tensor([0.0, 1.0, 0.0, 2.0])), density(torch.tensor([0.0, 1.0]))
    (0.5, 0.5)
"""
from __future__ import annotations

from collections import OrderedDict
from typing import IO, Any, Callable, Iterable, Optional, Sequence, Union

import torch
import yaml
from torch import nn

from compress.distiller.uncovered import missing_name
from compress.errors import ArgumentError

__all__ = ["assign_layer_fq_names", "find_module_by_fq_name", "normalize_module_name", "yaml_ordered_load",
           "sparsity", "density", "log_training_progress", "log_weights_sparsity", "log_activation_statistics"]


def assign_layer_fq_names(container: nn.Module, name: Optional[str] = None) -> None:
    """Give every module its fully qualified name as ``module.distiller_name`` (Distiller's, unchanged).

    ``compress`` itself finds modules by ``named_modules()`` and needs no such attribute; this is for user code
    that reads ``distiller_name``.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2))
        >>> assign_layer_fq_names(model)
        >>> model[0].distiller_name
        '0'
    """
    for module_name, module in container.named_modules():
        module.distiller_name = module_name


def find_module_by_fq_name(model: nn.Module, fq_mod_name: str) -> Optional[nn.Module]:
    """The module whose ``distiller_name`` is ``fq_mod_name`` (see :func:`assign_layer_fq_names`), or ``None``.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2)); assign_layer_fq_names(model)
        >>> find_module_by_fq_name(model, "0") is model[0]
        True
    """
    for module in model.modules():
        if getattr(module, "distiller_name", None) == fq_mod_name:
            return module
    return None


def normalize_module_name(layer_name: str) -> str:
    """The name without its (first) ``module`` component, as Distiller normalises DataParallel names.

    Example:
        >>> normalize_module_name("module.rnn.cells.0")
        'rnn.cells.0'
    """
    parts = layer_name.split(".")
    if "module" in parts:
        parts.remove("module")
    return ".".join(parts)


def yaml_ordered_load(stream: Union[str, IO[str]], Loader: Any = None,
                      object_pairs_hook: Callable[..., Any] = OrderedDict) -> Any:
    """YAML into ``OrderedDict`` s, read with PyYAML's *safe* loader (Distiller's used the full one).

    Args:
        stream: YAML text or an open file.
        Loader: only ``None`` or ``yaml.SafeLoader``: a schedule or overrides file cannot run code.
        object_pairs_hook: the mapping type.

    Raises:
        ArgumentError: another ``Loader``.

    Example:
        >>> overrides = yaml_ordered_load("b: 1\\na: {fp16: true}")
        >>> type(overrides).__name__, list(overrides), overrides["a"]["fp16"]
        ('OrderedDict', ['b', 'a'], True)
    """
    if Loader not in (None, yaml.SafeLoader):
        raise ArgumentError("Loader", "compress reads YAML with the safe loader only (a file cannot run code)")

    class OrderedSafeLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node):
        loader.flatten_mapping(node)
        return object_pairs_hook(loader.construct_pairs(node))

    OrderedSafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return yaml.load(stream, OrderedSafeLoader)


def density(tensor: torch.Tensor) -> float:
    """The share of nonzero elements."""
    return float((tensor != 0).sum().item()) / tensor.numel()


def sparsity(tensor: torch.Tensor) -> float:
    """The share of zero elements (``1 - density``)."""
    return 1.0 - density(tensor)


def _as_list(loggers: Any) -> Sequence[Any]:
    if loggers is None:
        return []
    return list(loggers) if isinstance(loggers, (list, tuple)) else [loggers]


def log_training_progress(stats_dict: Any, params_dict: Optional[Iterable[Any]], epoch: int, steps_completed: int,
                          total_steps: int, log_freq: int, loggers: Any) -> None:
    """Send ``stats_dict`` (``(prefix, {name: value})``) and the weights to each logger, as Distiller does.

    Example:
        >>> import logging
        >>> from compress.distiller.data_loggers import PythonLogger
        >>> log_training_progress(("Train/", {"Loss": 4.5}), None, 0, 10, 100, 10,
        ...                       [PythonLogger(logging.getLogger("doctest"))])
    """
    params = list(params_dict) if params_dict is not None else None
    for logger in _as_list(loggers):
        logger.log_training_progress(stats_dict, epoch, steps_completed, total_steps, freq=log_freq)
        logger.log_weights_distribution(params, steps_completed)


def log_weights_sparsity(model: nn.Module, epoch: int, loggers: Any) -> None:
    """Each logger's ``log_weights_sparsity(model, epoch)`` (the table of :func:`compress.reports.sparsity_table`).

    Example:
        >>> import logging
        >>> from compress.distiller.data_loggers import PythonLogger
        >>> log_weights_sparsity(nn.Linear(2, 2), 0, [PythonLogger(logging.getLogger("doctest"))])
    """
    for logger in _as_list(loggers):
        logger.log_weights_sparsity(model, epoch)


def log_activation_statistics(epoch: int, phase: str, loggers: Any, collector: Any) -> None:
    """Each logger's ``log_activation_statistic`` of ``collector.value()`` (nothing without a collector)."""
    if collector is None:
        return
    for logger in _as_list(loggers):
        logger.log_activation_statistic(phase, collector.stat_name, collector.value(), epoch)


__getattr__ = missing_name(__name__)
