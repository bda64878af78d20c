"""The pruned-model inspection report: an original and a pruned checkpoint side by side.

For each checkpoint: total parameters, how many are pruned (exactly zero), the sparsity, and the task's metrics
(for a word LM: validation and test perplexity and next-word accuracy), as SiPO's release prints from its shell
scripts. ``python -m compress inspect ORIGINAL PRUNED --data DIR`` prints it.

``compress`` knows no model, so rebuilding a model from a checkpoint and measuring it is a *task*'s job. A task
is made by a factory named on the command line as ``module:function`` (``--task``), called as
``factory(data, device)``, and returns an object with

* ``build_model(checkpoint) -> nn.Module``: a model of the right shape for the checkpoint (the dict from
  :func:`compress.io.read_checkpoint`, with ``model`` and ``extra``); the weights are loaded afterwards;
* ``evaluate(model) -> Mapping[str, float]``: metric label → value, in display order.

The default, ``compress_models.tasks:make_task``, rebuilds ``examples/word_lm.py`` models from the flags that
script stores in its checkpoints (``extra['args']``); it is installed with the reference models, and imported only
when the command runs (``compress`` itself imports nothing from them).
Parameters are counted over unique tensors, so a tied embedding/decoder counts once. A thinned checkpoint
(:func:`compress.thin`: hidden units removed) is rebuilt from the task's dense model with
:func:`~compress.structured.thinned_skeleton`, so ``inspect DENSE THINNED`` compares the two.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from tabulate import tabulate
from torch import nn

from compress.errors import CheckpointError, CompressError
from compress.io.checkpoint import read_checkpoint
from compress.reports.tables import format_count
from compress.structured.thinning import is_thinned_state, thinned_skeleton

__all__ = ["ModelReport", "count_parameters", "inspect_model", "inspection_table", "load_task",
           "rebuild_model", "inspect_checkpoints", "DEFAULT_TASK"]

DEFAULT_TASK = "compress_models.tasks:make_task"


@dataclass
class ModelReport:
    """Counts and metrics of one model.

    Args:
        name: the column header (e.g. ``original``, ``pruned``).
        total: parameters (unique tensors' elements).
        pruned: elements that are exactly zero.
        metrics: label → value, in display order.
    """

    name: str
    total: int
    pruned: int
    metrics: Dict[str, float] = field(default_factory=dict)

    @property
    def sparsity(self) -> float:
        """``pruned / total`` as a fraction."""
        return self.pruned / self.total if self.total else 0.0


def count_parameters(model: nn.Module) -> Tuple[int, int]:
    """``(total, zero)`` elements over the model's parameters, each tensor once."""
    total = zeros = 0
    for p in model.parameters():  # parameters() yields a shared tensor once
        total += p.numel()
        zeros += p.numel() - int(torch.count_nonzero(p.detach()))
    return total, zeros


def inspect_model(name: str, model: nn.Module,
                  evaluate: Optional[Callable[[nn.Module], Mapping[str, float]]] = None) -> ModelReport:
    """Count a model's parameters and zeros, and measure it with ``evaluate`` when given."""
    total, zeros = count_parameters(model)
    metrics = dict(evaluate(model)) if evaluate is not None else {}
    return ModelReport(name, total, zeros, {k: float(v) for k, v in metrics.items()})


def inspection_table(reports: Sequence[ModelReport], tablefmt: str = "psql", digits: int = 2) -> str:
    """The reports side by side: one column per model, one row per quantity."""
    labels: List[str] = []
    for r in reports:
        labels.extend(k for k in r.metrics if k not in labels)
    body = [["total parameters"] + [format_count(r.total) for r in reports],
            ["pruned"] + [format_count(r.pruned) for r in reports],
            ["sparsity (%)"] + [f"{100 * r.sparsity:.2f}" for r in reports]]
    for label in labels:
        body.append([label] + [f"{r.metrics[label]:.{digits}f}" if label in r.metrics else "-" for r in reports])
    return tabulate(body, headers=[""] + [r.name for r in reports], tablefmt=tablefmt, disable_numparse=True,
                    colalign=("left",) + ("right",) * len(reports))


def load_task(spec: str) -> Callable[..., Any]:
    """Import the task factory named ``module:function``.

    Raises:
        CompressError: the spec is malformed, or the module or function cannot be found.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CompressError(f"--task must look like module:function, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = (" (it is installed with the repository's reference models, pip install .; or name your own "
                "task with --task)") if spec == DEFAULT_TASK else ""
        raise CompressError(f"cannot import task module {module_name!r}: {exc}{hint}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise CompressError(f"task module {module_name!r} has no callable {attr!r}")
    return factory


def rebuild_model(path: str, task: Any) -> Tuple[nn.Module, Dict[str, Any]]:
    """The model of checkpoint ``path`` with its weights, built by ``task``; and the checkpoint.

    Raises:
        CheckpointError: the file is unreadable, or its weights do not fit the model the task built.
    """
    state = read_checkpoint(path)
    model = task.build_model(state)
    if is_thinned_state(state["model"]) and not is_thinned_state(model.state_dict()):
        model = thinned_skeleton(model, state["model"])  # the task builds dense models; shrink it to fit
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit the model the task built: {str(exc).splitlines()[0]}") \
            from None
    return model, state


def inspect_checkpoints(paths: Sequence[str], task: Any, names: Optional[Sequence[str]] = None,
                        device: Union[str, torch.device] = "cpu", evaluate: bool = True) -> List[ModelReport]:
    """Rebuild each checkpoint's model with ``task``, load its weights, count and measure it.

    Args:
        paths: checkpoint files (written by :func:`compress.save_checkpoint`, or Distiller's).
        task: an object with ``build_model(checkpoint)`` and ``evaluate(model)`` (see the module docstring).
        names: column names (default: ``original``, ``pruned`` for two paths, else the file names).
        device: where the models are evaluated.
        evaluate: measure the models (else only count).

    Raises:
        CheckpointError: a file is unreadable, or its weights do not fit the model the task built.
    """
    if names is None:
        names = ["original", "pruned"] if len(paths) == 2 else list(paths)
    reports = []
    for name, path in zip(names, paths):
        model, _ = rebuild_model(path, task)
        model.to(device)
        reports.append(inspect_model(name, model, task.evaluate if evaluate else None))
    return reports
