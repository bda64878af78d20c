"""Checkpoints: model, optimizer, scheduler and RNG state in one file, written atomically, read safely.

A checkpoint is a plain dict of tensors and Python literals, so it loads with ``torch.load(weights_only=True)``:
no code in a checkpoint can run. It is written to a temporary file in the same folder and renamed over the
target, so a crash mid-write never leaves a truncated checkpoint under the real name. Loading checks
everything against the model, optimizer and scheduler *before* changing any of them.
"""
from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Union

import torch
from torch import nn

from compress.distributed import all_gather_object, barrier, is_distributed, world
from compress.errors import CheckpointError
from compress.io.files import atomic_write, safe_torch_load

if TYPE_CHECKING:  # annotations only: io sits below scheduling
    from compress.scheduling.scheduler import CompressionScheduler

# A thinned recurrent layer (compress.structured.thinning) keeps its surviving units as long buffers ``units_l{k}``;
# io sits below structured, so it recognises them by that name alone, to say how to rebuild the structure.
_THINNED_UNITS = re.compile(r"(?:^|\.)units_l\d+$")

log = logging.getLogger(__name__)


def untrained_regrowth(scheduler: Optional[CompressionScheduler]) -> int:
    """How many weights the last prune-and-regrow events left at zero with no optimizer step since.

    Dynamic-sparsity policies keep the count (``untrained_regrowth``); other policies have none.

    Example:
        >>> untrained_regrowth(None)
        0
    """
    if scheduler is None:
        return 0
    return sum(int(getattr(policy, "untrained_regrowth", 0)) for _, _, policy in scheduler.policies)


def warn_untrained_regrowth(path: Union[str, os.PathLike], state: Mapping[str, Any]) -> int:
    """Warn when the checkpoint ``state`` read from ``path`` was saved with untrained regrown weights.

    A checkpoint to resume from may hold them (they train when the run continues); a tool that uses the saved
    model as it is (summary, inspect, export) calls this, because that model is sparser than its schedule's
    density and was never trained in that topology. Returns the count (0: nothing said).

    Example:
        >>> warn_untrained_regrowth("ckpt.pt", {"untrained_regrowth": 0})
        0
    """
    count = int(state.get("untrained_regrowth", 0) or 0)
    if count:
        log.warning("%s: saved with %d weights regrown by the last prune-and-regrow event still at zero, never "
                    "trained: the run stopped before its dynamic-sparsity policy's ending_epoch, so this model "
                    "is sparser than the schedule's density; resume it, or end the policy with the training",
                    os.fspath(path), count)
    return count


def _is_thinned_state(state: Mapping[str, Any]) -> bool:
    return any(_THINNED_UNITS.search(k) and torch.is_tensor(v) and v.dtype == torch.long for k, v in state.items())

FORMAT = "compress.checkpoint"


def torch_optimizer_classes() -> Dict[str, type]:
    """``torch.optim``'s optimizer classes by the path a pickle names them with (``'torch.optim.sgd.SGD'``).

    Distiller's checkpoints hold ``type(optimizer)``; these classes, and no others, may appear in a checkpoint
    that :func:`read_checkpoint` loads (a class is only named by the file, never run by the load).

    Example:
        >>> torch_optimizer_classes()["torch.optim.sgd.SGD"] is torch.optim.SGD
        True
    """
    out: Dict[str, type] = {}
    for name in dir(torch.optim):
        obj = getattr(torch.optim, name)
        if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer:
            out[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return out


def _class_path(cls: Any) -> Optional[str]:
    return f"{cls.__module__}.{cls.__qualname__}" if isinstance(cls, type) else None
_PLAIN = (type(None), bool, int, float, str, torch.Tensor, torch.Size, torch.dtype, torch.device)


def _check_plain(value: Any, key: str) -> None:
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{key}[{i}]")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint extra {key!r}: keys must be str or int, got {type(k).__name__}")
            _check_plain(v, f"{key}.{k}")
        return
    raise TypeError(f"checkpoint extra {key!r} is a {type(value).__name__}; only tensors and plain data "
                    f"(numbers, strings, lists, dicts) can be loaded back safely")


def _local_rng_state() -> Dict[str, Any]:
    state: Dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def rng_state() -> Dict[str, Any]:
    """The torch RNG states (CPU, and every CUDA device if CUDA is initialised).

    Under ``torch.distributed`` (a collective: every rank calls it) the states of every rank are kept too, under
    ``ranks``, so that a resumed run draws each rank's dropout masks exactly as the uninterrupted one.
    """
    state = _local_rng_state()
    if is_distributed():
        state["ranks"] = all_gather_object(state)
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`rng_state` (each rank its own state, when the checkpoint has one per rank)."""
    rank, size = world()
    ranks = state.get("ranks")
    if isinstance(ranks, (list, tuple)) and len(ranks) == size and size > 1:
        state = ranks[rank]
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Union[str, os.PathLike], model: nn.Module,
                    optimizer: Optional[torch.optim.Optimizer] = None,
                    scheduler: Optional[CompressionScheduler] = None, **extra: Any) -> None:
    """Save everything a resume needs to ``path``, atomically.

    Args:
        path: the checkpoint file.
        model: its ``state_dict`` is saved.
        optimizer: its ``state_dict`` is saved, if given.
        scheduler: its ``state_dict`` (masks, policy and pruner state, position) is saved, if given.
        **extra: anything else to keep (epoch, best validation loss, arguments...): tensors and plain data only.

    Under ``torch.distributed`` every rank calls it (the RNG states of all ranks are gathered) and rank 0 alone
    writes; the others wait until the file is complete.

    Raises:
        TypeError: an ``extra`` value could not be loaded back with ``weights_only=True``.
    """
    for key, value in extra.items():
        _check_plain(value, key)
    untrained = untrained_regrowth(scheduler)
    if untrained:  # fine for a resume; the tools that use the file as a finished model warn (warn_untrained_regrowth)
        log.info("%s: saved with %d untrained regrown weights (they train if the run continues)", os.fspath(path),
                 untrained)
    state = {
        "format": FORMAT,
        "version": 1,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
        "extra": dict(extra),
        "untrained_regrowth": untrained,
    }
    if world()[0] == 0:
        with atomic_write(path) as f:
            torch.save(state, f)
    barrier()  # no rank reads the file before it is complete


def read_checkpoint(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Load a checkpoint file safely (``weights_only=True``, onto the CPU) and check what it is.

    Accepts files written by :func:`save_checkpoint` and Distiller checkpoints (``state_dict`` and
    ``compression_sched`` keys), as long as they hold only tensors, plain data and ``torch.optim`` classes
    (Distiller saves ``optimizer_type``; it comes back as its path, ``extra['optimizer_type']``, e.g.
    ``'torch.optim.sgd.SGD'``; see :func:`torch_optimizer_classes`).

    Raises:
        CheckpointError: missing, truncated, not a PyTorch file, unsafe to unpickle, or of a foreign format.
    """
    path = os.fspath(path)
    state = safe_torch_load(path, "checkpoint", allowed_globals=list(torch_optimizer_classes().values()))
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a checkpoint dict, found {type(state).__name__}")
    if state.get("format") == FORMAT:
        return dict(state)
    if "state_dict" in state:  # Distiller's layout
        extra = {k: state[k] for k in ("epoch", "arch", "extras", "dataset", "is_parallel") if k in state}
        if _class_path(state.get("optimizer_type")):
            extra["optimizer_type"] = _class_path(state["optimizer_type"])
        return {"format": FORMAT, "version": 0, "model": state["state_dict"],
                "optimizer": state.get("optimizer_state_dict"), "scheduler": state.get("compression_sched"),
                "rng": {}, "extra": extra}
    raise CheckpointError(f"{path}: not a compress checkpoint (no 'format': '{FORMAT}' and no Distiller "
                          f"'state_dict')")


def _check_model_state(path: str, model: nn.Module, saved: Mapping[str, Any]) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    if (missing or unexpected) and _is_thinned_state(saved) and not _is_thinned_state(own):
        raise CheckpointError(f"{path}: holds a thinned model (hidden units removed); build its structure from this "
                              f"dense model first: model = compress.structured.thinned_skeleton(model, {path!r})")
    if missing or unexpected:
        raise CheckpointError(f"{path}: does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for k, v in own.items():
        if torch.is_tensor(v) and (not torch.is_tensor(saved[k]) or tuple(saved[k].shape) != tuple(v.shape)):
            shape = tuple(saved[k].shape) if torch.is_tensor(saved[k]) else type(saved[k]).__name__
            raise CheckpointError(f"{path}: {k!r} has shape {shape} in the checkpoint, {tuple(v.shape)} in the model")


def _check_optimizer_state(path: str, optimizer: torch.optim.Optimizer, saved: Any) -> None:
    if not isinstance(saved, Mapping) or "param_groups" not in saved:
        raise CheckpointError(f"{path}: holds no optimizer state to load into {type(optimizer).__name__}")
    ours = [len(g["params"]) for g in optimizer.param_groups]
    theirs = [len(g["params"]) for g in saved["param_groups"]]
    if ours != theirs:
        raise CheckpointError(f"{path}: optimizer has parameter groups of sizes {theirs}, this one {ours}")


def load_checkpoint(path: Union[str, os.PathLike], model: nn.Module,
                    optimizer: Optional[torch.optim.Optimizer] = None,
                    scheduler: Optional[CompressionScheduler] = None, *, restore_rng: bool = True) -> Dict[str, Any]:
    """Load a checkpoint into ``model`` (and ``optimizer``, ``scheduler``); returns the saved ``extra`` dict.

    Everything is checked before anything is changed, so on error the model, optimizer and scheduler are
    as they were.

    Args:
        path: the checkpoint file.
        model: receives the weights (strict: same names and shapes).
        optimizer: receives the optimizer state, if given.
        scheduler: receives masks, policy state and position, if given; it must be built from the same schedule.
        restore_rng: also restore the torch RNG states saved with it (needed for bit-exact resumes with dropout).

    Raises:
        CheckpointError: the file is unreadable or foreign, or does not fit the objects given.
    """
    path = os.fspath(path)
    return apply_checkpoint(read_checkpoint(path), path, model, optimizer, scheduler, restore_rng=restore_rng)


def apply_checkpoint(state: Mapping[str, Any], path: Union[str, os.PathLike], model: nn.Module,
                     optimizer: Optional[torch.optim.Optimizer] = None,
                     scheduler: Optional[CompressionScheduler] = None, *, restore_rng: bool = True) -> Dict[str, Any]:
    """:func:`load_checkpoint` of a checkpoint already read with :func:`read_checkpoint` (``path`` is for
    messages); for callers that look at the file's contents first. Checks everything before changing anything.

    Raises:
        CheckpointError: the state does not fit the objects given.
    """
    path = os.fspath(path)
    _check_model_state(path, model, state["model"])
    if optimizer is not None:
        _check_optimizer_state(path, optimizer, state.get("optimizer"))
    if scheduler is not None:
        if state.get("scheduler") is None:
            raise CheckpointError(f"{path}: holds no scheduler state")
        try:
            scheduler.check_state(state["scheduler"])
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng and state.get("rng"):
        set_rng_state(state["rng"])
    return dict(state.get("extra") or {})
