"""Distiller's ``distiller.data_loggers``: loggers on :mod:`logging` (and TensorBoard), and the calibration collector.

* :class:`PythonLogger` writes through a :class:`logging.Logger` (never ``print``); :class:`CsvLogger` writes
  ``weights_sparsity.csv``; :class:`TensorBoardLogger` needs the optional extra ``tensorboard``
  (``pip install 'compress[tensorboard]'``) and names it when missing.
* :class:`QuantCalibrationStatsCollector` and :func:`collect_quant_stats` are
  :class:`compress.quantization.ActivationStatsCollector` and :func:`compress.quantization.collect_activation_stats`
  with Distiller's call shapes; the statistics are compress's (sample-weighted averages, exact ``std``) in
  Distiller's YAML layout.

Sparsity figures count a tied weight once (Distiller's walked ``state_dict()`` and counted it twice).

Example:
    >>> import logging
    >>> from torch import nn
    >>> logger = PythonLogger(logging.getLogger("doctest"))
    >>> logger.log_training_progress(("Performance/Training/", {"Loss": 4.25, "Steps": 1200}), 3, 200, 1327, 200)
"""
from __future__ import annotations

import contextlib
import csv
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from tabulate import tabulate
from torch import nn

from compress.distiller.model_summaries import weights_sparsity_tbl_summary
from compress.distiller.uncovered import NotCoveredError, missing_name
from compress.errors import ArgumentError, CompressError
from compress.io.files import atomic_write
from compress.quantization import ActivationStatsCollector, collect_activation_stats, save_stats
from compress.reports import sparsity_summary, sparsity_total

__all__ = ["DataLogger", "NullLogger", "PythonLogger", "CsvLogger", "TensorBoardLogger",
           "QuantCalibrationStatsCollector", "collect_quant_stats", "collector_context"]

log = logging.getLogger(__name__)

Stats = Tuple[str, Mapping[str, Any]]


class DataLogger:
    """Distiller's logger interface: every method does nothing unless a logger implements it.

    Example:
        >>> NullLogger().log_weights_sparsity(None, 0)
    """

    def log_training_progress(self, stats_dict: Stats, epoch: int, completed: int, total: int, freq: int) -> None:
        pass

    def log_activation_statistic(self, phase: str, stat_name: str, activation_stats: Mapping[str, Any],
                                 epoch: int) -> None:
        pass

    def log_weights_sparsity(self, model: nn.Module, epoch: int) -> None:
        pass

    def log_weights_distribution(self, named_params: Optional[Iterable[Tuple[str, torch.Tensor]]],
                                 steps_completed: int) -> None:
        pass

    def log_model_buffers(self, model: nn.Module, buffer_names: Sequence[str], tag_prefix: str, epoch: int,
                          completed: int, total: int, freq: int) -> None:
        pass


#: Distiller's name for the logger that logs nothing
NullLogger = DataLogger

_NO_BUFFERS = "log the buffers yourself (model.named_buffers()) through logging"


class PythonLogger(DataLogger):
    """Training progress and sparsity tables through a :class:`logging.Logger` (Distiller's ``PythonLogger``).

    Args:
        logger: a ``logging.Logger`` (or what :func:`compress.distiller.apputils.config_pylogger` returns).

    Example:
        >>> from torch import nn
        >>> PythonLogger(logging.getLogger("doctest")).log_weights_sparsity(nn.Linear(2, 2), 0)
    """

    def __init__(self, logger: Any):
        self.pylogger = logger

    def log_training_progress(self, stats_dict: Stats, epoch: int, completed: int, total: int, freq: int) -> None:
        """One line: ``Epoch: [e][completed/total]`` (``Test: [...]`` for ``epoch < 0``) and every statistic."""
        values = stats_dict[1]
        line = (f"Epoch: [{epoch}][{completed:5d}/{int(total):5d}]    " if epoch > -1
                else f"Test: [{completed:5d}/{int(total):5d}]    ")
        for name, value in values.items():
            line += f"{name} {value:,}    " if isinstance(value, int) else f"{name} {value:.6f}    "
        self.pylogger.info(line)

    def log_activation_statistic(self, phase: str, stat_name: str, activation_stats: Mapping[str, Any],
                                 epoch: int) -> None:
        """A table of one statistic per layer."""
        rows = [[layer, value] for layer, value in activation_stats.items()]
        self.pylogger.info("\n" + tabulate(rows, headers=["Layer", stat_name], tablefmt="psql", floatfmt=".2f"))

    def log_weights_sparsity(self, model: nn.Module, epoch: int) -> None:
        """:func:`compress.reports.sparsity_table` and the total sparsity."""
        table, total = weights_sparsity_tbl_summary(model, return_total_sparsity=True)
        self.pylogger.info("\nParameters:\n" + table)
        self.pylogger.info(f"Total sparsity: {total:0.2f}\n")

    def log_model_buffers(self, *args: Any, **kwargs: Any) -> None:
        raise NotCoveredError("data_loggers.PythonLogger.log_model_buffers", _NO_BUFFERS)


class CsvLogger(DataLogger):
    """Weight sparsity as ``[<prefix>_]weights_sparsity.csv`` in ``logdir`` (Distiller's ``CsvLogger``).

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> folder = tempfile.mkdtemp()
        >>> CsvLogger(logdir=folder).log_weights_sparsity(nn.Linear(2, 2), 0)
        >>> open(os.path.join(folder, "weights_sparsity.csv")).readline().strip()
        'parameter,shape,volume,sparse volume,sparsity level'
    """

    def __init__(self, fname_prefix: str = "", logdir: str = ""):
        self.logdir = logdir
        self.fname_prefix = fname_prefix

    def get_fname(self, postfix: str) -> str:
        name = f"{self.fname_prefix}_{postfix}.csv" if self.fname_prefix else f"{postfix}.csv"
        return os.path.join(self.logdir, name)

    def log_weights_sparsity(self, model: nn.Module, epoch: int) -> None:
        """One row per weight (tied weights once): name, shape, volume, nonzeros, sparsity in percent."""
        with atomic_write(self.get_fname("weights_sparsity"), "w") as f:
            writer = csv.writer(f)
            writer.writerow(["parameter", "shape", "volume", "sparse volume", "sparsity level"])
            for row in sparsity_summary(model):
                writer.writerow([row.name, " x ".join(map(str, row.shape)), row.nnz_dense, row.nnz_sparse, row.fine])

    def log_model_buffers(self, *args: Any, **kwargs: Any) -> None:
        raise NotCoveredError("data_loggers.CsvLogger.log_model_buffers", _NO_BUFFERS)


def _summary_writer(logdir: str) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise CompressError(f"TensorBoardLogger needs the optional extra 'tensorboard' (pip install "
                            f"'compress[tensorboard]'): {exc}") from None
    return SummaryWriter(logdir)


class TensorBoardLogger(DataLogger):
    """Scalars and histograms for TensorBoard in ``logdir`` (Distiller's tags), through ``torch.utils.tensorboard``.

    Needs the optional extra ``tensorboard`` (``pip install 'compress[tensorboard]'``).

    Args:
        logdir: the event files' folder (Distiller's example passes ``msglogger.logdir``).

    Attributes:
        log_gradients: also log each weight's gradient histogram (Distiller's default ``False``).
        logged_params: parameter-name parts whose histograms are logged (``['weight']``).

    Raises:
        CompressError: the ``tensorboard`` package is not installed (the message names the extra).

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> tb = TensorBoardLogger(tempfile.mkdtemp())                     # doctest: +SKIP
        >>> tb.log_weights_sparsity(nn.Linear(2, 2), epoch=0)              # doctest: +SKIP
    """

    def __init__(self, logdir: str):
        self.writer = _summary_writer(logdir)
        self.logdir = logdir
        self.log_gradients = False
        self.logged_params = ["weight"]
        log.info("Logging to TensorBoard: tensorboard --logdir=%r", logdir)

    def log_training_progress(self, stats_dict: Stats, epoch: int, completed: int, total: int, freq: int) -> None:
        """Each statistic as the scalar ``prefix + name`` at step ``total * epoch + completed``."""
        prefix, values = stats_dict
        for tag, value in values.items():
            self.writer.add_scalar(prefix + tag, value, total * epoch + completed)
        self.writer.flush()

    def log_activation_statistic(self, phase: str, stat_name: str, activation_stats: Mapping[str, Any],
                                 epoch: int) -> None:
        group = f"{stat_name}/activations/{phase}/"
        for tag, value in activation_stats.items():
            self.writer.add_scalar(group + tag, value, epoch)
        self.writer.flush()

    def log_weights_sparsity(self, model: nn.Module, epoch: int) -> None:
        """``sparsity/weights/<name>`` and ``sparsity-2D/weights/<name>`` (all-zero rows) in percent, and
        ``sparsity/weights/total``."""
        rows = sparsity_summary(model)
        for row in rows:
            self.writer.add_scalar("sparsity/weights/" + row.name, row.fine, epoch)
            self.writer.add_scalar("sparsity-2D/weights/" + row.name, row.rows or 0.0, epoch)
        self.writer.add_scalar("sparsity/weights/total", sparsity_total(rows).sparsity, epoch)
        self.writer.flush()

    def log_weights_distribution(self, named_params: Optional[Iterable[Tuple[str, torch.Tensor]]],
                                 steps_completed: int) -> None:
        """Histograms of the weights (and, with :attr:`log_gradients`, of their gradients)."""
        if named_params is None:
            return
        for name, value in named_params:
            tag = name.replace(".", "/")
            if any(part in tag for part in self.logged_params):
                self.writer.add_histogram(tag, value.detach().cpu(), steps_completed)
            if self.log_gradients and value.grad is not None:
                self.writer.add_histogram(tag + "/grad", value.grad.detach().cpu(), steps_completed)
        self.writer.flush()

    def log_model_buffers(self, *args: Any, **kwargs: Any) -> None:
        raise NotCoveredError("data_loggers.TensorBoardLogger.log_model_buffers", _NO_BUFFERS)

    def log_weights_filter_magnitude(self, *args: Any, **kwargs: Any) -> None:
        raise NotCoveredError("data_loggers.TensorBoardLogger.log_weights_filter_magnitude",
                              "convolution filters only; recurrent models have none")

    def close(self) -> None:
        self.writer.close()


def _leaf_names(model: nn.Module, classes: Optional[Sequence[type]],
                under: Optional[Iterable[str]] = None) -> List[str]:
    prefixes = list(under or [])
    names = []
    for name, module in model.named_modules():
        if not name or any(True for _ in module.children()) or isinstance(module, nn.Identity):
            continue
        if classes and not isinstance(module, tuple(classes)):
            continue
        if prefixes and not any(name == p or name.startswith(p + ".") for p in prefixes):
            continue
        names.append(name)
    return names


def _disable_inplace(model: nn.Module, attr_names: Sequence[str]) -> None:
    if not attr_names:
        raise ArgumentError("inplace_attr_names", "cannot be empty when disable_inplace_attrs is set")
    for module in model.modules():
        for attr in attr_names:
            if hasattr(module, attr):
                setattr(module, attr, False)


class QuantCalibrationStatsCollector:
    """Distiller's calibration collector, on :class:`compress.quantization.ActivationStatsCollector`.

    Args:
        model: the model (convert ``nn.LSTM`` s first, e.g. with :meth:`~compress.distiller.modules.DistillerLSTM.
            from_pytorch_impl`, to see inside them).
        classes: module types to observe; ``None`` or empty: every leaf module.
        inplace_runtime_check: not covered (must be false): pass ``disable_inplace_attrs=True`` instead.
        disable_inplace_attrs: set every module attribute named in ``inplace_attr_names`` to ``False``.
        inplace_attr_names: those attribute names.

    Raises:
        NotCoveredError: ``inplace_runtime_check=True``.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
        >>> collector = QuantCalibrationStatsCollector(model)
        >>> with collector_context(collector):
        ...     _ = model(torch.ones(3, 2))
        >>> sorted(collector.value()), sorted(collector.value()["1"])
        (['0', '1'], ['inputs', 'output'])
    """

    stat_name = "quant_stats"

    def __init__(self, model: nn.Module, classes: Optional[Sequence[type]] = None, inplace_runtime_check: bool = False,
                 disable_inplace_attrs: bool = False, inplace_attr_names: Sequence[str] = ("inplace",)):
        if inplace_runtime_check:
            raise NotCoveredError("data_loggers.QuantCalibrationStatsCollector(inplace_runtime_check=True)",
                                  "pass disable_inplace_attrs=True to turn in-place modules off instead")
        if disable_inplace_attrs:
            _disable_inplace(model, inplace_attr_names)
        self.model = model
        self.classes = classes
        self._collector: Optional[ActivationStatsCollector] = None

    def start(self, modules_list: Optional[Iterable[str]] = None) -> None:
        """Observe every eligible leaf module (or those under the names in ``modules_list``)."""
        if self._collector is None:
            self._collector = ActivationStatsCollector(self.model, _leaf_names(self.model, self.classes, modules_list))
        self._collector.start()

    def stop(self) -> None:
        """Remove the hooks; the statistics are kept."""
        if self._collector is not None:
            self._collector.stop()

    def reset(self) -> QuantCalibrationStatsCollector:
        """Forget the statistics."""
        self.stop()
        self._collector = None
        return self

    def start_second_pass(self) -> None:
        """From now on collect the Laplace ``b`` around the means of the first pass."""
        if self._collector is None:
            raise RuntimeError("start_second_pass() before start(): run a first pass over the data first")
        self._collector.second_pass()

    def stop_second_pass(self) -> None:
        """Distiller's end of the second pass (the hooks stay until :meth:`stop`)."""

    def value(self) -> Dict[str, Any]:
        """``{module name: {'inputs': {0: {...}}, 'output': {...}}}`` (empty before :meth:`start`)."""
        return OrderedDict(self._collector.stats()) if self._collector is not None else OrderedDict()

    def save(self, fname: str) -> str:
        """Write :meth:`value` as Distiller's YAML (:func:`compress.quantization.save_stats`); returns ``fname``."""
        save_stats(self.value(), fname)
        return fname


@contextlib.contextmanager
def collector_context(collector: Optional[QuantCalibrationStatsCollector],
                      modules_list: Optional[Iterable[str]] = None) -> Iterator[Any]:
    """``collector.reset().start(modules_list)`` on entry, ``collector.stop()`` on exit (Distiller's)."""
    if collector is not None:
        collector.reset().start(modules_list)
    try:
        yield collector
    finally:
        if collector is not None:
            collector.stop()


def collect_quant_stats(model: nn.Module, test_fn: Any, save_dir: Optional[str] = None,
                        classes: Optional[Sequence[type]] = None, inplace_runtime_check: bool = False,
                        disable_inplace_attrs: bool = False, inplace_attr_names: Sequence[str] = ("inplace",),
                        modules_to_collect: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """Calibration statistics over two runs of ``test_fn(model=model)`` (the second for Laplace's ``b``).

    :func:`compress.quantization.collect_activation_stats` with Distiller's arguments; the model runs in eval
    mode without gradients.

    Args:
        model: the model.
        test_fn: called as ``test_fn(model=model)``; it runs the model over the calibration data.
        save_dir: also write ``acts_quantization_stats.yaml`` there.
        classes, inplace_runtime_check, disable_inplace_attrs, inplace_attr_names: as
            :class:`QuantCalibrationStatsCollector`.
        modules_to_collect: observe only the modules under these names.

    Returns:
        The statistics, in Distiller's layout.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
        >>> stats = collect_quant_stats(model, lambda model: model(torch.ones(4, 2)))
        >>> sorted(stats["0"]["output"])[:4]
        ['avg_max', 'avg_min', 'b', 'max']
    """
    if inplace_runtime_check:
        raise NotCoveredError("data_loggers.collect_quant_stats(inplace_runtime_check=True)",
                              "pass disable_inplace_attrs=True to turn in-place modules off instead")
    if disable_inplace_attrs:
        _disable_inplace(model, inplace_attr_names)
    log.info("Collecting quantization calibration stats for model")
    stats = collect_activation_stats(model, lambda m: test_fn(model=m), _leaf_names(model, classes, modules_to_collect),
                                     laplace=True)
    if save_dir is not None:
        path = os.path.join(save_dir, "acts_quantization_stats.yaml")
        save_stats(stats, path)
        log.info("Stats saved to %s", path)
    return OrderedDict(stats)


__getattr__ = missing_name(__name__)
