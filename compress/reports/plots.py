"""Pictures of a compression run: sparsity per weight against epoch, perplexity against sparsity (extra ``plot``).

The history is the list of per-epoch records the scheduler's metrics callback produces
(:meth:`compress.CompressionScheduler.add_metrics_callback`, or :func:`compress.reports.read_metrics_csv` of a
CSV file written by :class:`~compress.reports.CSVMetricsWriter`); a record may add ``val_ppl``::

    history = []
    scheduler.add_metrics_callback(history.append)
    ...                                                   # train
    compress.plot_sparsity_history(history, "sparsity.png")
"""
from __future__ import annotations

import math
import os
from typing import Any, List, Mapping, Sequence, Union

from compress.errors import CompressError

__all__ = ["plot_sparsity_history", "require_matplotlib"]

_MAX_LEGEND = 12  # more weights than this: the legend lists the largest ones and says how many are left out


def require_matplotlib():
    """Matplotlib's object-oriented API (no display needed), or an error naming the extra to install.

    Raises:
        CompressError: matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise CompressError("plots need matplotlib: pip install 'compress[plot]' (or pip install matplotlib)") \
            from None
    return Figure, FigureCanvasAgg


def _ppl(record: Mapping[str, Any]) -> float:
    if "val_ppl" in record:
        return float(record["val_ppl"])
    if "metric/min" in record:  # the loss the loop passed as metrics={'min': val_loss}
        return math.exp(min(float(record["metric/min"]), 50.0))
    return math.nan


def plot_sparsity_history(history: Sequence[Mapping[str, Any]], path: Union[str, os.PathLike],
                          title: str = "") -> str:
    """Draw ``history`` to a PNG: sparsity of each weight (and the total; of the masks where the records have
    ``mask_sparsity/<weight>``, else of the values) against epoch, and, when the records
    carry a validation perplexity (``val_ppl``, or a loss as ``metric/min``), perplexity against total sparsity,
    and, when weights were regrown (dynamic sparsity), the positions pruned and regrown per epoch.

    Args:
        history: per-epoch records with ``epoch`` and ``sparsity/<weight>`` keys (values in percent).
        path: the PNG file.
        title: a title over the figure.

    Returns:
        The path written.

    Raises:
        CompressError: matplotlib is missing, or ``history`` holds no sparsity.

    Example:
        >>> import tempfile, os.path
        >>> history = [{"epoch": e, "sparsity/w": 20.0 * e, "sparsity/total": 20.0 * e, "val_ppl": 100 + e}
        ...            for e in range(4)]
        >>> path = plot_sparsity_history(history, os.path.join(tempfile.mkdtemp(), "s.png"))  # doctest: +SKIP
    """
    records: List[Mapping[str, Any]] = [r for r in history if "epoch" in r]
    # the masks' sparsity where the records have it: after a prune-and-regrow event the regrown weights are
    # still zero, so the values' sparsity would overstate it at every epoch's end
    prefix = "mask_sparsity/" if any(k.startswith("mask_sparsity/") for r in records for k in r) else "sparsity/"
    weights: List[str] = []
    for record in records:
        weights.extend(k[len(prefix):] for k in record if k.startswith(prefix)
                       and k != prefix + "total" and k[len(prefix):] not in weights)
    if not weights:
        raise CompressError("plot_sparsity_history: the history holds no 'sparsity/<weight>' values (is anything "
                            "masked? the records come from scheduler.add_metrics_callback)")
    Figure, FigureCanvasAgg = require_matplotlib()
    epochs = [int(r["epoch"]) for r in records]
    ppl = [_ppl(r) for r in records]
    has_ppl = any(math.isfinite(p) for p in ppl)
    # dynamic sparsity keeps the density constant: what moves is the topology, drawn as counts per epoch
    has_regrowth = any(float(r.get("regrown/total", 0)) > 0 for r in records)
    panels = 1 + has_ppl + has_regrowth
    fig = Figure(figsize=(5.0 * panels, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    final = {w: next((r[prefix + w] for r in reversed(records) if prefix + w in r), 0.0) for w in weights}
    shown = sorted(weights, key=lambda w: -final[w])[:_MAX_LEGEND]
    for w in weights:
        xs = [int(r["epoch"]) for r in records if prefix + w in r]
        ys = [float(r[prefix + w]) for r in records if prefix + w in r]
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, label=w if w in shown else None)
    if any(prefix + "total" in r for r in records):
        xs = [int(r["epoch"]) for r in records if prefix + "total" in r]
        ys = [float(r[prefix + "total"]) for r in records if prefix + "total" in r]
        ax.plot(xs, ys, color="black", linewidth=2.2, linestyle="--", label="total (masked weights)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("sparsity (% of weights pruned)" if prefix == "mask_sparsity/" else "sparsity (% of values zero)")
    ax.set_ylim(0, 100)
    ax.set_xticks(sorted(set(epochs)) if len(set(epochs)) <= 15 else ax.get_xticks())
    ax.grid(True, alpha=0.3)
    ax.set_title("sparsity per weight")
    extra = f" (+{len(weights) - len(shown)} more)" if len(weights) > len(shown) else ""
    ax.legend(fontsize=7, loc="lower right", title=f"weights{extra}" if extra else None, title_fontsize=7)
    if has_ppl:
        ax = axes[1]
        points = [(float(r.get(prefix + "total", math.nan)), p, e) for r, p, e in zip(records, ppl, epochs)
                  if math.isfinite(p)]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        ax.plot(xs, ys, color="tab:red", marker="o", markersize=4, linewidth=1.2)
        for x, y, e in points:
            ax.annotate(f"{e}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel("total sparsity of the masked weights (%)")
        ax.set_ylabel("validation perplexity")
        ax.grid(True, alpha=0.3)
        ax.set_title("perplexity against sparsity (labels: epoch)")
    if has_regrowth:
        ax = axes[-1]
        xs = [int(r["epoch"]) for r in records if "regrown/total" in r]
        pruned = [float(r["pruned/total"]) for r in records if "regrown/total" in r]
        regrown = [float(r["regrown/total"]) for r in records if "regrown/total" in r]
        ax.bar([x - 0.2 for x in xs], pruned, width=0.4, color="tab:red", label="pruned")
        ax.bar([x + 0.2 for x in xs], regrown, width=0.4, color="tab:green", label="regrown")
        ax.set_xlabel("epoch (epoch 0: the initial topology, against dense)")
        ax.set_ylabel("mask positions changed")
        ax.set_xticks(sorted(set(xs)) if len(set(xs)) <= 15 else ax.get_xticks())
        if len(pruned) > 1:  # the first epoch's count (the whole initial pruning) would flatten the rest
            ax.set_ylim(0, 1.15 * max(max(pruned[1:]), max(regrown[1:]), 1.0))
            if pruned[0] > ax.get_ylim()[1]:
                ax.annotate(f"{pruned[0]:,.0f}", (xs[0] - 0.2, ax.get_ylim()[1]), textcoords="offset points",
                            xytext=(0, -14), ha="center", fontsize=7, color="white", rotation=90, va="top")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title("topology changes per epoch")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path)
    return path
