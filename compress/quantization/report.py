"""Quantization reports, returned as strings: per module (what each module became) and per experiment
(precision against perplexity, in the layout of Distiller's PTQ table)."""
from __future__ import annotations

import numbers
from dataclasses import replace
from typing import Any, Iterable, List, Mapping, Optional

from tabulate import tabulate

from compress.quantization.linear import ClipMode

__all__ = ["quant_table", "ptq_table", "module_format"]

MODULE_HEADERS = ("Module", "Type", "Format", "Bits a/w/acc", "Mode a/w", "Per-ch", "Clipping", "Output range",
                  "Override")
PTQ_HEADERS = ("Precision", "INT8: Mode", "INT8: Per-channel", "INT8: Clipping", "FP16 Modules")

_WEIGHTED = ("Linear", "Embedding")
_MODE_SHORT = {"SYMMETRIC": "sym", "SYMMETRIC_RESTRICTED": "sym_restr", "ASYMMETRIC_UNSIGNED": "asym_u",
               "ASYMMETRIC_SIGNED": "asym_s"}


def module_format(cfg: Any, has_weights: bool = True) -> str:
    """``FP16``, ``FP64``, ``FP32``, ``INT8``, or ``W<bits>A<bits>`` (``A-``: float activations).

    Example:
        >>> from compress.quantization import PostTrainLinearQuantizer
        >>> import torch
        >>> module_format(PostTrainLinearQuantizer(torch.nn.Linear(2, 2), bits_activations=None).config_for(""))
        'W8A-'
    """
    if cfg.fpq_module in (16, 64):
        return f"FP{cfg.fpq_module}"
    a, w = cfg.bits_activations, cfg.bits_weights
    if not has_weights:
        return "FP32" if a is None else f"INT{a}"
    if a is None and w is None:
        return "FP32"
    if a == w:
        return f"INT{a}"
    return f"W{w if w is not None else '-'}A{a if a is not None else '-'}"


def _clip_name(cfg: Any) -> str:
    name = cfg.clip_acts.name
    if cfg.clip_acts == ClipMode.N_STD:
        name += f"({cfg.clip_n_stds:g})"
    if cfg.clip_half_range:
        name += ", half"
    return name


def _range(wrapper: Any) -> str:
    q = getattr(wrapper, "out_quant", None)
    if q is None:
        return "-"
    return q.range_str()


def _per_channel(cfg: Any, quantized: bool) -> str:
    if not quantized:
        return "-"
    parts = []
    if cfg.bits_weights is not None:
        parts.append("yes" if cfg.per_channel_wts else "no")
    if cfg.per_channel_acts and cfg.bits_activations is not None:
        parts.append("acts")
    return ", ".join(parts) or "-"


def quant_table(quantizer: Any, tablefmt: str = "psql") -> str:
    """One row per quantizable module of a :class:`~compress.quantization.PostTrainLinearQuantizer`: its type,
    format, bits (activations/weights/accumulator), modes, per-channel weights (and ``acts`` for per-channel
    activation scales), clipping, the output range the
    calibration chose, and the override that applied.

    Args:
        quantizer: the quantizer (prepared, for output ranges; before :meth:`prepare_model` the settings
            are those the current modules would get).
        tablefmt: any ``tabulate`` format.

    Returns:
        The table, as a string.

    Example:
        >>> import torch
        >>> from compress.quantization import PostTrainLinearQuantizer
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
        >>> table = quant_table(PostTrainLinearQuantizer(model, overrides={"1": {"bits_activations": None}}))
        >>> [[cell.strip() for cell in line.split("|")[1:4]] for line in table.splitlines()[3:5]]
        [['0', 'Linear', 'INT8'], ['1', 'ReLU', 'FP32']]
    """
    configs = quantizer.module_configs or {n: (type(m).__name__, quantizer.config_for(n, m))
                                           for n, m in quantizer._quantizable().items()}
    body: List[List[str]] = []
    for name, (type_name, cfg) in configs.items():
        has_weights = type_name in _WEIGHTED
        if not has_weights:  # weight settings mean nothing for a module without weights
            cfg = replace(cfg, bits_weights=None)
        fmt = module_format(cfg, has_weights)
        quantized = fmt not in ("FP32", "FP16", "FP64")
        accum = cfg.bits_accum if type_name == "Linear" else None
        wmode = _MODE_SHORT[cfg.mode.weights.name] if has_weights and cfg.bits_weights is not None else "-"
        amode = _MODE_SHORT[cfg.mode.activations.name] if cfg.bits_activations is not None else "-"
        body.append([
            name, type_name, fmt,
            "/".join("-" if b is None else str(b) for b in (cfg.bits_activations, cfg.bits_weights, accum))
            if quantized else "-",
            f"{amode}/{wmode}" if quantized else "-",
            _per_channel(cfg, quantized),
            _clip_name(cfg) if quantized and cfg.bits_activations is not None else "-",
            _range(quantizer._wrappers.get(name)),
            cfg.override or "-",
        ])
    return tabulate(body, headers=MODULE_HEADERS, tablefmt=tablefmt, disable_numparse=True)


def _yes_no(value: Any) -> str:
    if value is None:
        return "N/A"
    return "Yes" if value else "No"


def ptq_table(rows: Iterable[Mapping[str, Any]], ppl_header: str = "Val ppl", reference: str = "FP32",
              tablefmt: str = "github") -> str:
    """Experiments in the layout of Distiller's PTQ table, plus the change against the reference row.

    Each row is a mapping with ``precision`` (required, e.g. ``'Full INT8'``), ``mode``, ``per_channel``
    (bool), ``clipping``, ``fp16_modules``, ``ppl`` (a number); missing values print as ``N/A``. Other keys
    become extra columns after ``ppl``.

    Args:
        rows: the experiments, in order.
        ppl_header: the perplexity column's title.
        reference: the ``precision`` of the row the change is measured against (its first occurrence).
        tablefmt: any ``tabulate`` format.

    Returns:
        The table, as a string (GitHub markdown by default).

    Raises:
        ValueError: a row without ``precision``, or a ``ppl`` that is not a number.

    Example:
        >>> table = ptq_table([{"precision": "FP32", "ppl": 100.0},
        ...                    {"precision": "Full INT8", "mode": "Asymmetric", "per_channel": True, "ppl": 101.5}])
        >>> [cell.strip() for cell in table.splitlines()[3].split("|")[1:]][-3:]   # the last row's last columns
        ['101.50', '+1.50%', '']
    """
    rows = list(rows)
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping) or not r.get("precision"):
            raise ValueError(f"ptq_table: row {i} has no 'precision'")
        if r.get("ppl") is not None and (isinstance(r["ppl"], bool) or not isinstance(r["ppl"], numbers.Real)):
            raise ValueError(f"ptq_table: row {i}: 'ppl' must be a number, got {r['ppl']!r}")
    ref: Optional[float] = next((float(r["ppl"]) for r in rows if r["precision"] == reference
                                 and r.get("ppl") is not None), None)
    known = {"precision", "mode", "per_channel", "clipping", "fp16_modules", "ppl"}
    extras: List[str] = []
    for r in rows:
        extras.extend(k for k in r if k not in known and k not in extras)
    headers = list(PTQ_HEADERS) + [ppl_header] + ([f"vs {reference}"] if ref is not None else []) + extras
    body = []
    for r in rows:
        ppl = r.get("ppl")
        line = [str(r["precision"]), str(r.get("mode") or "N/A"), _yes_no(r.get("per_channel")),
                str(r.get("clipping") or "N/A"), str(r.get("fp16_modules") or "None"),
                "-" if ppl is None else f"{float(ppl):.2f}"]
        if ref is not None:
            line.append("-" if ppl is None else f"{100.0 * (float(ppl) / ref - 1.0):+.2f}%")
        for k in extras:
            v = r.get(k)
            line.append("-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)))
        body.append(line)
    return tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True)
