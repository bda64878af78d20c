"""Distiller's model summaries, as :mod:`compress.reports` tables (strings, logged through :mod:`logging`).

Tables come from :func:`compress.reports.sparsity_table`: a tied weight is one row (Distiller listed it twice),
and ``Rows (%)``/``Cols (%)`` are all-zero rows/columns of the stored matrix (Distiller's had them swapped). The
model-graph drawing and the MAC counts are not covered; they raise with what to use instead.

Example:
    >>> from torch import nn
    >>> table, total = weights_sparsity_tbl_summary(nn.Linear(4, 2, bias=False), return_total_sparsity=True)
    >>> table.splitlines()[1].split("|")[1].strip(), total
    ('Name', 0.0)
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Optional, Tuple, Union

from tabulate import tabulate
from torch import nn

from compress.distiller.uncovered import NotCoveredError, missing_name, uncovered
from compress.errors import ArgumentError
from compress.reports import sparsity_summary, sparsity_table, sparsity_total

__all__ = ["model_summary", "weights_sparsity_tbl_summary", "masks_sparsity_tbl_summary",
           "weights_sparsity_summary", "masks_sparsity_summary", "model_performance_summary",
           "model_performance_tbl_summary", "draw_model_to_file", "draw_img_classifier_to_file", "create_png",
           "SummaryGraph", "SUMMARIES"]

log = logging.getLogger(__name__)

#: the ``what`` of :func:`model_summary` that are covered
SUMMARIES = ("sparsity", "model", "modules")

_NO_GRAPH = ("compress traces no graph (net-aware quantization reads the connectivity the modular cells declare); "
             "see the modules with model_summary(model, 'modules') or print(model), or draw the network from an ONNX "
             "file (compress.export.onnx, extra 'onnx') in a viewer such as Netron")
_NO_PANDAS = "compress builds no pandas tables: compress.reports.sparsity_summary(model) returns one row per weight"
_NO_MACS = "compress counts no MACs; compress.reports.sparsity_table(model) gives the nonzero weights per layer"

SummaryGraph = uncovered("SummaryGraph", _NO_GRAPH, cls=True)
draw_model_to_file = uncovered("draw_model_to_file", _NO_GRAPH)
draw_img_classifier_to_file = uncovered("draw_img_classifier_to_file", _NO_GRAPH)
create_png = uncovered("create_png", _NO_GRAPH)
weights_sparsity_summary = uncovered("weights_sparsity_summary", _NO_PANDAS)
masks_sparsity_summary = uncovered("masks_sparsity_summary", _NO_PANDAS + "; masks_sparsity_tbl_summary is covered")
model_performance_summary = uncovered("model_performance_summary", _NO_MACS)
model_performance_tbl_summary = uncovered("model_performance_tbl_summary", _NO_MACS)


def weights_sparsity_tbl_summary(model: nn.Module, return_total_sparsity: bool = False,
                                 param_dims: Iterable[int] = (2, 4)) -> Union[str, Tuple[str, float]]:
    """:func:`compress.reports.sparsity_table` of ``model`` (and its total sparsity in percent, if asked).

    Example:
        >>> print(weights_sparsity_tbl_summary(nn.Linear(2, 2, bias=False)).splitlines()[3].split("|")[1])
         weight
    """
    table = sparsity_table(model, param_dims=param_dims)
    if return_total_sparsity:
        return table, sparsity_total(sparsity_summary(model, param_dims)).sparsity
    return table


def masks_sparsity_tbl_summary(model: nn.Module, scheduler: Any, param_dims: Iterable[int] = (2, 4)) -> str:
    """Sparsity of each weight's *mask* (not of its values), from ``scheduler.zeros_mask_dict``.

    Weights without a mask count as dense; a tied weight is one row.

    Example:
        >>> import torch
        >>> from compress.scheduling import CompressionScheduler
        >>> layer = nn.Linear(2, 2, bias=False)
        >>> scheduler = CompressionScheduler(layer)
        >>> scheduler.masks.set_mask("weight", torch.tensor([[True, False], [False, False]]))
        >>> print(masks_sparsity_tbl_summary(layer, scheduler).splitlines()[3])
        | weight  |      75.00 |
    """
    dims = set(param_dims)
    masks = scheduler.zeros_mask_dict
    rows, numel, kept = [], 0, 0.0
    for name, param in model.named_parameters():
        if param.dim() not in dims:
            continue
        mask = masks[name].mask
        density = 1.0 if mask is None else float((mask != 0).sum()) / mask.numel()
        numel += param.numel()
        kept += param.numel() * density
        rows.append([name, f"{100 * (1 - density):.2f}"])
    if not numel:
        raise ArgumentError("param_dims", f"no parameter of the model has a dimension in {sorted(dims)}")
    rows.append(["Total sparsity:", f"{100 * (1 - kept / numel):.2f}"])
    return tabulate(rows, headers=["Name", "Fine (%)"], tablefmt="psql", disable_numparse=True,
                    colalign=("left", "right"))


def model_summary(model: nn.Module, what: str, dataset: Optional[str] = None, logdir: str = "") -> str:
    """Distiller's ``model_summary``: ``'sparsity'``, ``'model'`` or ``'modules'``, logged and returned.

    Args:
        model: the model.
        what: ``'sparsity'`` (the sparsity table, also written as ``weights_sparsity.csv`` in ``logdir``, as
            Distiller's), ``'model'`` (the module tree), ``'modules'`` (leaf modules and their types).
        dataset: unused (Distiller's image-classifier summaries needed it).
        logdir: the folder of the CSV file of ``'sparsity'``.

    Returns:
        The text that was logged.

    Raises:
        NotCoveredError: ``'png'``, ``'png_w_params'`` (the model graph) and ``'compute'`` (MACs).
        ArgumentError: any other ``what``.

    Example:
        >>> print(model_summary(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), "modules"))
        Name    Type
        ------  ------
        0       Linear
        1       Tanh
    """
    from compress.distiller.data_loggers import CsvLogger, PythonLogger

    if what.startswith("png"):
        raise NotCoveredError(f"model_summary(model, {what!r})", _NO_GRAPH)
    if what == "compute":
        raise NotCoveredError("model_summary(model, 'compute')", _NO_MACS)
    if what == "sparsity":
        table, total = weights_sparsity_tbl_summary(model, return_total_sparsity=True)
        PythonLogger(log).log_weights_sparsity(model, -1)
        CsvLogger(logdir=logdir).log_weights_sparsity(model, -1)
        return f"\nParameters:\n{table}\nTotal sparsity: {total:0.2f}\n"
    if what == "model":
        text = str(model)
    elif what == "modules":
        leaves = [[name, type(m).__name__] for name, m in model.named_modules() if not any(True for _ in m.children())]
        text = tabulate(leaves, headers=["Name", "Type"])
    else:
        raise ArgumentError("what", f"{what!r} is not a summary: choose one of {', '.join(SUMMARIES)} ('png' and "
                                    f"'compute' are not covered)")
    log.info("%s", text)
    return text


__getattr__ = missing_name(__name__)
