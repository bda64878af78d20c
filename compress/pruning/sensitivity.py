"""Sensitivity analysis: how much each weight (or group of weights) alone can be pruned, and a starting schedule.

Every group is pruned by magnitude, alone, at each listed sparsity, on a copy of the model; the copy's weights are
restored before each level, so levels never accumulate. The metric is whatever ``evaluate(model) -> float``
returns, lower or higher is better (``mode``). How this differs from Distiller's ``perform_sensitivity_analysis``:
``docs/distiller-compat.md``.

    result = sensitivity_analysis(model, lambda m: val_perplexity(m), [0.0, 0.25, 0.5, 0.75, 0.9])
    table = result.table()                    # a string, for the caller to print or log
    result.to_csv("sensitivity.csv")
    result.plot("sensitivity.png")            # needs matplotlib (pip install compress[plot]); else returns None
    result.to_schedule("start.yaml", budget=0.05, relative=True)
"""
from __future__ import annotations

import copy
import csv
import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
import yaml
from tabulate import tabulate
from torch import nn

from compress import options
from compress.errors import ArgumentError
from compress.io.files import atomic_write
from compress.pruning.criteria.groups import (
    ParameterGroup,
    group_masks,
    group_parameters,
)
from compress.pruning.rate_search.search import call_evaluate
from compress.sparsity.masks import MaskStore
from compress.sparsity.names import ParameterIndex

__all__ = ["SensitivityResult", "sensitivity_analysis"]

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


@dataclass
class SensitivityResult:
    """The metric of the model with each group pruned alone at each sparsity.

    Args:
        baseline: the metric of the unpruned model.
        mode: ``'min'`` (lower is better) or ``'max'``.
        groups: the groups, in model order.
        sparsities: the levels, in the order given.
        values: group name → one metric value per level.
        sizes: group name → its number of elements.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
        >>> with torch.no_grad():
        ...     _ = model[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        ...     _ = model[1].weight.copy_(torch.tensor([[0.5, 1.0]]))
        >>> def lost(m):                                 # the magnitude pruned away
        ...     return 11.5 - sum(float(p.detach().abs().sum()) for p in m.parameters())
        >>> result = sensitivity_analysis(model, lost, [0.0, 0.5, 1.0])
        >>> print(result.table())
        +----------+------------+------+-------+--------+
        | Group    |   Elements |   0% |   50% |   100% |
        |----------+------------+------+-------+--------|
        | 0.weight |          4 | 0.00 |  3.00 |  10.00 |
        | 1.weight |          2 | 0.00 |  0.50 |   1.50 |
        +----------+------------+------+-------+--------+
        >>> result.degradation("0.weight", 1), result.levels_for_budget(0.5)
        (3.0, {'0.weight': 0.0, '1.weight': 0.5})
    """

    baseline: float
    mode: str
    groups: List[ParameterGroup]
    sparsities: List[float]
    values: Dict[str, List[float]] = field(default_factory=dict)
    sizes: Dict[str, int] = field(default_factory=dict)

    def degradation(self, group: str, level: int, relative: bool = False) -> float:
        """How much worse than the baseline the metric is with ``group`` pruned at ``sparsities[level]``."""
        value = self.values[group][level]
        if math.isnan(value):
            return math.inf
        d = value - self.baseline if self.mode == "min" else self.baseline - value
        return d / abs(self.baseline) if relative else d

    def table(self, tablefmt: str = "psql", digits: int = 2) -> str:
        """One row per group (with its element count), one column per sparsity; cells hold the metric."""
        headers = ["Group", "Elements"] + [f"{100 * s:g}%" for s in self.sparsities]
        body = [[g.name, f"{self.sizes[g.name]:,}"] + [f"{v:.{digits}f}" for v in self.values[g.name]]
                for g in self.groups]
        return tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True,
                        colalign=("left",) + ("right",) * (len(headers) - 1))

    def rows(self) -> List[Dict[str, Any]]:
        """One dict per (group, sparsity): ``group, tensors, sparsity, value, degradation``."""
        return [{"group": g.name, "tensors": " ".join(g.params), "sparsity": s, "value": self.values[g.name][i],
                 "degradation": self.degradation(g.name, i)}
                for g in self.groups for i, s in enumerate(self.sparsities)]

    def to_csv(self, path: PathLike) -> None:
        """Write :meth:`rows` as CSV with header ``group,tensors,sparsity,value,degradation``."""
        with atomic_write(path, "w") as f:
            writer = csv.DictWriter(f, fieldnames=["group", "tensors", "sparsity", "value", "degradation"])
            writer.writeheader()
            writer.writerows(self.rows())

    def plot(self, path: PathLike, ylabel: str = "metric") -> Optional[str]:
        """Plot the metric against sparsity, one line per group, to an image file.

        Returns:
            The path written, or ``None`` (with a logged warning) when matplotlib is not installed.
        """
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            log.warning("matplotlib is not installed (pip install 'compress[plot]'); no sensitivity plot written")
            return None
        fig = Figure(figsize=(7, 4.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        order = sorted(range(len(self.sparsities)), key=lambda i: self.sparsities[i])
        for g in self.groups:
            ax.plot([100 * self.sparsities[i] for i in order], [self.values[g.name][i] for i in order], marker="o",
                    label=g.name)
        ax.axhline(self.baseline, color="grey", linestyle="--", linewidth=1, label="unpruned")
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(os.fspath(path))
        return os.fspath(path)

    def levels_for_budget(self, budget: float, relative: bool = False) -> Dict[str, float]:
        """A sparsity per group whose summed individual degradations stay within ``budget``.

        Degradations are treated as additive (an approximation: verify the result by evaluating it). Among the
        tested levels below 1, it repeatedly raises the group whose next level buys the most pruned elements per
        unit of degradation, while the total stays within the budget. A group's degradation curve is made
        non-decreasing first (a level is charged the worst degradation of any lower level).

        Returns:
            Group name → chosen sparsity (0.0 for groups that cannot be pruned within the budget).
        """
        options.number("budget", budget, minimum=0.0)
        curves: Dict[str, List[tuple]] = {}
        for g in self.groups:
            points = sorted((s, self.degradation(g.name, i, relative)) for i, s in enumerate(self.sparsities)
                            if 0 < s < 1)
            worst, curve = 0.0, [(0.0, 0.0)]
            for s, d in points:
                worst = max(worst, d)
                curve.append((s, worst))
            curves[g.name] = curve
        level = {g.name: 0 for g in self.groups}
        spent = 0.0
        while True:
            best_move, best_score = None, None
            for g in self.groups:
                curve, here = curves[g.name], curves[g.name][level[g.name]]
                for j in range(level[g.name] + 1, len(curve)):
                    cost = curve[j][1] - here[1]
                    if spent + cost > budget:
                        continue
                    gain = self.sizes[g.name] * (curve[j][0] - here[0])
                    score = (math.inf if cost <= 0 else gain / cost, gain)
                    if best_score is None or score > best_score:
                        best_move, best_score = (g.name, j, cost), score
            if best_move is None:
                break
            name, j, cost = best_move
            level[name] = j
            spent += cost
        return {g.name: curves[g.name][level[g.name]][0] for g in self.groups}

    def to_schedule(self, path: PathLike, budget: float, relative: bool = False, starting_epoch: int = 0,
                    ending_epoch: int = 10, frequency: int = 1, initial_sparsity: float = 0.05) -> Dict[str, float]:
        """Write a starting AGP schedule whose final sparsities come from :meth:`levels_for_budget`.

        One :class:`~compress.pruning.AutomatedGradualPruner` per group that is pruned at all, ramping from
        ``initial_sparsity`` (or the final level, if lower) to its level over the epochs given; a group of several
        tensors is pruned with one threshold (``budget: global``), as it was analysed.

        Returns:
            The chosen levels (group → sparsity).
        """
        levels = self.levels_for_budget(budget, relative)
        pruners: Dict[str, Any] = {}
        policies: List[Dict[str, Any]] = []
        for g in self.groups:
            final = levels[g.name]
            if final <= 0:
                continue
            name = "prune_" + re.sub(r"[^0-9A-Za-z_]+", "_", g.name).strip("_")
            spec: Dict[str, Any] = {"class": "AutomatedGradualPruner",
                                    "initial_sparsity": round(min(initial_sparsity, final), 6),
                                    "final_sparsity": round(final, 6), "weights": list(g.params)}
            if len(g.params) > 1:
                spec["budget"] = "global"
            pruners[name] = spec
            policies.append({"pruner": {"instance_name": name}, "starting_epoch": starting_epoch,
                             "ending_epoch": ending_epoch, "frequency": frequency})
        unit = "of the baseline" if relative else "in the metric's units"
        header = (f"# Starting schedule from a sensitivity analysis (compress.pruning.sensitivity).\n"
                  f"# Degradation budget {budget:g} {unit}, split between groups assuming degradations add up;\n"
                  f"# unpruned metric {self.baseline:.6g} (mode {self.mode}). Chosen levels: "
                  + ", ".join(f"{k} {v:g}" for k, v in levels.items()) + "\n")
        body = yaml.safe_dump({"version": 1, "pruners": pruners, "policies": policies}, sort_keys=False)
        with atomic_write(path, "w") as f:
            f.write(header + body)
        return levels


def sensitivity_analysis(model: nn.Module, evaluate: Callable[[nn.Module], float], sparsities: Sequence[float], *,
                         mode: str = "min", grouping: str = "layer_wise",
                         weights: Union[None, str, Sequence[str]] = None,
                         groups: Optional[Mapping[str, Any]] = None,
                         callback: Optional[Callable[[str, float, float], None]] = None) -> SensitivityResult:
    """Prune each group alone at each sparsity on a copy of the model, and evaluate.

    The model itself is never changed: one deep copy is pruned, and its weights are put back before every level.

    Args:
        model: the trained model.
        evaluate: ``evaluate(model) -> float`` (called with the copy).
        sparsities: levels in [0, 1], e.g. ``[0.1, 0.2, ..., 0.9]``.
        mode: ``'min'`` if lower values are better (perplexity, loss), ``'max'`` for accuracy.
        grouping: how weights are grouped (:func:`compress.pruning.criteria.groups.group_parameters`); the default,
            ``layer_wise``, analyses every weight tensor (with its bias) alone.
        weights: which tensors (default: all).
        groups: for ``custom`` grouping.
        callback: called as ``callback(group, sparsity, value)`` after every evaluation.

    Returns:
        A :class:`SensitivityResult` (``.table()``, ``.to_csv(path)``, ``.plot(path)``, ``.to_schedule(path,
        budget)``).

    Raises:
        ArgumentError: ``mode`` not ``'min'``/``'max'``, no levels or a level outside [0, 1], or a grouping
            error (:func:`compress.pruning.criteria.group_parameters`).

    Example:
        >>> model = nn.Linear(4, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
        >>> result = sensitivity_analysis(model, lambda m: 10.0 - float(m.weight.detach().abs().sum()),
        ...                               [0.25, 0.5, 0.75])
        >>> result.values, model.weight.tolist()         # the model itself is unchanged
        ({'weight': [1.0, 3.0, 6.0]}, [[1.0, 2.0, 3.0, 4.0]])
    """
    if mode not in ("min", "max"):
        raise ArgumentError("mode", f"expected 'min' or 'max', got {mode!r}")
    levels = list(sparsities)
    if not levels:
        raise ArgumentError("sparsities", "lists no sparsity levels")
    for i, s in enumerate(levels):
        options.fraction(("sparsities", i), s, allow_one=True)
    work = copy.deepcopy(model)
    parameter_groups = group_parameters(ParameterIndex(work), grouping, weights, groups)
    store = MaskStore(work)
    baseline = call_evaluate(evaluate, work)
    result = SensitivityResult(baseline, mode, parameter_groups, [float(s) for s in levels])
    for group in parameter_groups:
        with torch.no_grad():
            reference = {n: store.parameter(n).detach().clone() for n in group.params}
        result.sizes[group.name] = sum(t.numel() for t in reference.values())
        values = []
        for s in levels:
            masks = group_masks([group], reference, {group.name: s})
            with torch.no_grad():
                for name in group.params:
                    store.parameter(name).copy_(reference[name])
                    store.set_mask(name, masks[name], reset_state=False)
            value = call_evaluate(evaluate, work)
            values.append(value)
            log.info("sensitivity: %s at %.3g: %.6g (baseline %.6g)", group.name, s, value, baseline)
            if callback is not None:
                callback(group.name, float(s), value)
        with torch.no_grad():
            for name in group.params:
                store.parameter(name).copy_(reference[name])
                store.remove_mask(name)
        result.values[group.name] = values
    return result
