"""See a schedule before training: per weight and epoch the sparsity each pruner aims at, when each policy acts,
and the learning rate.

The schedule is loaded by the normal loader (so its errors are the loader's :class:`~compress.errors.ScheduleError`
naming file, line and key) onto a deep copy of the model with a throwaway optimizer; nothing is trained and the
model passed in is not changed. The numbers come from the pruners themselves
(:meth:`~compress.pruning.base.Pruner.planned`): AGP's ramp, a level pruner's levels, a dynamic pruner's density,
a fixed structure's sparsity, and the thresholds of the magnitude and Baidu pruners (the sparsity a threshold
gives depends on the weights). What only the data decides (splicing, sensitivity, SiPO searches, unit pruning) is
marked ``data-dependent``. The LR is read off the throwaway optimizer while the schedule's LR schedulers are
stepped as the scheduler steps them, at each active epoch's end (``ReduceLROnPlateau`` depends on the metric).

A target is the one in force *during* the epoch: set at the epoch's start by a pruner active then, and held
afterwards (a mask stays until a pruner changes it).
"""
from __future__ import annotations

import copy
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
from tabulate import tabulate
from torch import nn

from compress import options
from compress.context import HookContext
from compress.errors import CompressError
from compress.io.files import atomic_write
from compress.pruning.base import Target
from compress.scheduling.config import dict_config, file_config
from compress.scheduling.policies import DynamicSparsityPolicy, LRPolicy, PruningPolicy

__all__ = ["SchedulePreview", "preview_schedule", "preview_table", "plot_preview", "DATA_DEPENDENT"]

#: the target of a pruner whose masks only the data decides
DATA_DEPENDENT = Target("data-dependent", math.nan)


@dataclass
class SchedulePreview:
    """What a schedule will do, epoch by epoch (see the module docstring).

    Attributes:
        epochs: the epochs previewed, ``0 .. N-1``.
        policies: the policies' labels in schedule order (the instance name; ``name#2`` for a second policy of
            one instance), with their kinds in :attr:`kinds`.
        kinds: label → ``pruner``, ``regularizer``, ``quantizer``, ``lr_scheduler`` or ``extension``.
        active: label → one bool per epoch.
        targets: ``(label, weight)`` → per epoch, the :class:`~compress.pruning.base.Target` in force (``None``
            before the pruner first acts). ``weight`` is a canonical name or a gate selection key.
        algorithms: label → the class it runs.
        lr: per epoch, the LR of each optimizer parameter group during that epoch (``None`` once it depends on a
            metric); empty when the schedule has no LR scheduler.
        notes: things to know, e.g. a policy that ends after the last epoch previewed.
    """

    epochs: range
    policies: List[str] = field(default_factory=list)
    kinds: Dict[str, str] = field(default_factory=dict)
    algorithms: Dict[str, str] = field(default_factory=dict)
    active: Dict[str, List[bool]] = field(default_factory=dict)
    targets: Dict[Tuple[str, str], List[Optional[Target]]] = field(default_factory=dict)
    lr: List[Optional[Tuple[float, ...]]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def sparsity(self, label: str, weight: str) -> List[Optional[float]]:
        """The planned sparsity of ``weight`` by ``label`` per epoch (``None`` where none is planned or known)."""
        return [t.value if t is not None and t.kind == "sparsity" else None for t in self.targets[(label, weight)]]


def _never_evaluated(model: nn.Module) -> float:
    raise CompressError("a schedule preview trains and evaluates nothing")


def preview_schedule(model: nn.Module, schedule: Union[str, os.PathLike, Mapping[str, Any]],
                     epochs: Optional[int] = None, minibatches: Optional[int] = None, lr: float = 1.0,
                     optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.SGD) -> SchedulePreview:
    """Preview ``schedule`` on ``model`` without training it.

    Args:
        model: the model the schedule is for (left unchanged: the schedule is loaded onto a deep copy).
        schedule: a YAML file, or a schedule already loaded as a dict.
        epochs: epochs to preview; default up to the last ``ending_epoch`` of the schedule.
        minibatches: minibatches per epoch; lets a per-minibatch AGP ramp and a minibatch-cadence dynamic pruner
            be told (without it their targets are those at each epoch's first minibatch).
        lr: the throwaway optimizer's LR (1.0: the LR column reads as the factor of your base LR).
        optimizer: the throwaway optimizer's class, called as ``optimizer(params, lr=lr)``: the one the schedule
            is for where it asks for one (``NTASGDSwitch`` needs :class:`~compress.optim.SparseNTASGD`).

    Returns:
        The :class:`SchedulePreview`.

    Raises:
        ScheduleError: whatever the loader refuses, naming the file, line and key.
        ArgumentError: ``epochs``, ``minibatches`` or ``lr`` out of range.

    Example:
        >>> schedule = {"pruners": {"agp": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.2,
        ...                                 "final_sparsity": 0.8, "weights": ["weight_hh_l0[gate=f]"]}},
        ...             "lr_schedulers": {"decay": {"class": "StepLR", "step_size": 1, "gamma": 0.5}},
        ...             "policies": [{"pruner": {"instance_name": "agp"}, "starting_epoch": 1, "ending_epoch": 4},
        ...                          {"lr_scheduler": {"instance_name": "decay"}, "epochs": [1]}]}
        >>> plan = preview_schedule(torch.nn.LSTM(3, 4), schedule, epochs=5)
        >>> [None if s is None else round(s, 3) for s in plan.sparsity("agp", "weight_hh_l0[gate=f]")]
        [None, 0.2, 0.725, 0.8, 0.8]
        >>> [lrs[0] for lrs in plan.lr]                 # halved at the end of epoch 1
        [1.0, 1.0, 0.5, 0.5, 0.5]
    """
    options.optional(options.integer, "epochs", epochs, minimum=1)
    options.optional(options.integer, "minibatches", minibatches, minimum=1)
    options.number("lr", lr, minimum=0, min_open=True)
    shadow = copy.deepcopy(model)
    optimizer = optimizer(shadow.parameters(), lr=lr)
    load = dict_config if isinstance(schedule, Mapping) else file_config
    # a search-based pruner needs an evaluate callable to load; nothing is evaluated here
    scheduler = load(shadow, optimizer, schedule, evaluate=_never_evaluated)
    entries = scheduler.policies
    last = max((p.timing.ending for _, _, p in entries), default=1)
    epochs = epochs or last
    plan = SchedulePreview(range(epochs))
    labels = []
    for kind, name, policy in entries:
        label = name if name not in labels else f"{name}#{labels.count(name) + 1}"
        labels.append(name)
        plan.policies.append(label)
        plan.kinds[label] = kind
        plan.algorithms[label] = policy.algorithm
        plan.active[label] = [policy.timing.is_active(e) for e in plan.epochs]
        if policy.timing.last >= epochs:
            plan.notes.append(f"{label} acts until epoch {policy.timing.last}, after the last epoch previewed "
                              f"({epochs - 1}): a run of {epochs} epochs stops before it is done")
        if isinstance(policy, PruningPolicy):
            _plan_pruner(plan, label, policy, minibatches)
    if any(isinstance(p, LRPolicy) for _, _, p in entries):
        _plan_lr(plan, entries, optimizer)
    return plan


def _plan_pruner(plan: SchedulePreview, label: str, policy: PruningPolicy, minibatches: Optional[int]) -> None:
    pruner = policy.pruner
    per_step = getattr(pruner, "prunes_every_minibatch", False)
    if per_step and minibatches is None:
        plan.notes.append(f"{label} ramps every minibatch: its targets are those at each epoch's first minibatch "
                          f"(give the minibatches per epoch to see them at each epoch's last)")
    for weight in pruner.weights:
        row: List[Optional[Target]] = []
        current: Optional[Target] = None
        for epoch in plan.epochs:
            if policy.timing.is_active(epoch):
                minibatch = minibatches - 1 if per_step and minibatches else 0
                step = HookContext(epoch, minibatch, minibatches, timing=policy.timing)
                current = pruner.planned(weight, step) or DATA_DEPENDENT
            row.append(current)
        plan.targets[(label, weight)] = row
    if isinstance(policy, DynamicSparsityPolicy):
        cadence = pruner.update_frequency
        active = [e for e in plan.epochs if policy.timing.is_active(e)]
        if cadence == "epoch" and active:
            updates = [e for e in active if e != policy.timing.last]
            shown = f"{updates[0]}..{updates[-1]}" if len(updates) > 1 else ", ".join(map(str, updates)) or "none"
            plan.notes.append(f"{label}: prune-and-regrow at the end of epochs {shown} ({len(updates)} events; "
                              f"none after its last epoch {policy.timing.last}, whose regrown weights could not "
                              f"train)")
        elif cadence != "never":
            plan.notes.append(f"{label}: prune-and-regrow every {cadence} minibatches of its epochs")


def _plan_lr(plan: SchedulePreview, entries, optimizer: torch.optim.Optimizer) -> None:
    known = True
    for epoch in plan.epochs:
        plan.lr.append(tuple(float(g["lr"]) for g in optimizer.param_groups) if known else None)
        for _, name, policy in entries:
            if not isinstance(policy, LRPolicy) or not policy.timing.is_active(epoch):
                continue
            if isinstance(policy.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                if known:
                    plan.notes.append(f"{name} (ReduceLROnPlateau) lowers the LR when the validation metric stalls: "
                                      f"from epoch {epoch + 1} on the LR is data-dependent")
                known = False
                continue
            with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": nothing is trained
                warnings.simplefilter("ignore", UserWarning)
                policy.lr_scheduler.step()


def _format_target(target: Optional[Target]) -> str:
    if target is None:
        return "-"
    if target is DATA_DEPENDENT or target.kind == DATA_DEPENDENT.kind:
        return "data-dep."
    if target.kind == "threshold":
        return f"|w|<={target.value:.4g}"
    return f"{100 * target.value:.2f}"


def _columns(plan: SchedulePreview) -> List[Tuple[str, str, List[str]]]:
    """``(column label, policy label, weights)``: the weights of one pruner whose targets are equal share one."""
    out = []
    for label in plan.policies:
        groups: Dict[Tuple, List[str]] = {}
        for (owner, weight), row in plan.targets.items():
            if owner == label:
                groups.setdefault(tuple(_format_target(t) for t in row), []).append(weight)
        for i, weights in enumerate(groups.values()):
            out.append((label if len(groups) == 1 else f"{label}[{i + 1}]", label, weights))
    return out


def preview_table(plan: SchedulePreview, tablefmt: str = "simple") -> str:
    """The preview as text: a legend of the target columns, one row per epoch (policies active in it, the LR,
    each pruner's target: sparsity in %, ``|w|<=t`` for a threshold, ``-`` before it acts), and the notes.
    Consecutive epochs whose rows are the same print as one row (``3-5``).

    Example:
        >>> schedule = {"pruners": {"level": {"class": "SparsityLevelParameterPruner",
        ...                                   "levels": {"weight_hh_l0": 0.5}}},
        ...             "policies": [{"pruner": {"instance_name": "level"}, "epochs": [1]}]}
        >>> print(preview_table(preview_schedule(torch.nn.GRU(2, 2), schedule)))
        Targets (sparsity %, or the magnitude threshold, in force during each epoch; '-': not pruned yet)
          level: SparsityLevelParameterPruner on weight_hh_l0
        <BLANKLINE>
          epoch  active      level
        -------  --------  -------
              0                  -
              1  level       50.00
    """
    columns = _columns(plan)
    lines = ["Targets (sparsity %, or the magnitude threshold, in force during each epoch; '-': not pruned yet)"]
    for column, label, weights in columns:
        lines.append(f"  {column}: {plan.algorithms[label]} on {', '.join(weights)}")
    headers = ["epoch", "active"] + (["lr"] if plan.lr else []) + [c for c, _, _ in columns]
    body: List[List[str]] = []
    first = None  # epochs whose rows are the same print as one row, "first-last"
    for i, epoch in enumerate(plan.epochs):
        row = [", ".join(p for p in plan.policies if plan.active[p][i])]
        if plan.lr:
            lrs = plan.lr[i]
            row.append("data-dep." if lrs is None else ", ".join(f"{x:.4g}" for x in dict.fromkeys(lrs)))
        row += [_format_target(plan.targets[(label, weights[0])][i]) for _, label, weights in columns]
        if body and body[-1][1:] == row:
            body[-1][0] = f"{first}-{epoch}"
        else:
            first = epoch
            body.append([str(epoch)] + row)
    lines += ["", tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True,
                           colalign=("right", "left") + ("right",) * (len(headers) - 2))]
    if plan.notes:
        lines += [""] + [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)


def plot_preview(plan: SchedulePreview, path: Union[str, os.PathLike], title: Optional[str] = None,
                 dpi: int = 100) -> str:
    """Draw the preview as curves: sparsity targets, thresholds and LR against epoch, and when each policy acts.

    Args:
        plan: the preview.
        path: the image file (PNG by its extension); written atomically.
        title: the figure's title (e.g. the schedule's file name).
        dpi: resolution of a raster image.

    Returns:
        The path written.

    Raises:
        CompressError: matplotlib is not installed (the optional extra ``compress[plot]``).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise CompressError("plotting the preview needs matplotlib: pip install 'compress[plot]'") from None
    columns = _columns(plan)
    epochs = list(plan.epochs)
    kinds = {c: next((t.kind for t in plan.targets[(label, w[0])] if t is not None), None) for c, label, w in columns}
    panels = ["sparsity"] + (["threshold"] if "threshold" in kinds.values() else []) + (["lr"] if plan.lr else [])
    panels.append("active")
    heights = [3 if p != "active" else max(1.0, 0.35 * len(plan.policies) + 0.4) for p in panels]
    fig = Figure(figsize=(8, sum(heights) * 0.9 + 0.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    axes = list(axes) if len(panels) > 1 else [axes]
    x = epochs + [epochs[-1] + 1]  # steps: a target holds for its whole epoch
    for ax, panel in zip(axes, panels):
        ax.grid(True, alpha=0.3)
        if panel in ("sparsity", "threshold"):
            for column, label, weights in columns:
                if kinds[column] != panel:
                    continue
                row = plan.targets[(label, weights[0])]
                values = [math.nan if t is None else (100 * t.value if panel == "sparsity" else t.value) for t in row]
                shown = weights[0] if len(weights) == 1 else f"{len(weights)} tensors"
                ax.step(x, values + values[-1:], where="post", linewidth=2, label=f"{column} ({shown})")
            ax.set_ylabel("sparsity (%)" if panel == "sparsity" else "threshold |w|")
            if panel == "sparsity":
                ax.set_ylim(0, 100)
                dependent = [c for c, k in kinds.items() if k == DATA_DEPENDENT.kind]
                if dependent:
                    ax.text(0.01, 0.95, f"data-dependent: {', '.join(dependent)}", transform=ax.transAxes,
                            va="top", fontsize="small", color="grey")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize="small", loc="upper left", framealpha=0.9)
        elif panel == "lr":
            for g in range(len(next(v for v in plan.lr if v is not None))):
                values = [math.nan if v is None else v[g] for v in plan.lr]
                ax.step(x, values + values[-1:], where="post", linewidth=2, label=f"group {g}")
            ax.set_ylabel("LR")
            if len(plan.lr[0] or ()) > 1:
                ax.legend(fontsize="small")
        else:
            for i, label in enumerate(plan.policies):
                spans = [(e, 1) for e, on in zip(epochs, plan.active[label]) if on]
                ax.broken_barh(spans, (i - 0.35, 0.7), color=f"C{i % 10}")
            ax.set_yticks(range(len(plan.policies)), plan.policies, fontsize="small")
            ax.set_ylim(len(plan.policies) - 0.5, -0.5)
            ax.set_ylabel("active")
    axes[-1].set_xlabel("epoch")
    axes[-1].set_xlim(epochs[0], epochs[-1] + 1)
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lstrip(".") or "png"
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=suffix, dpi=dpi)
    return path
