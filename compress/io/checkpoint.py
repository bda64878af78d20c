"""Checkpoints: model, optimizer, scheduler and RNG state in one file, written atomically, read safely.

A checkpoint is a plain dict of tensors and Python literals, so it loads with ``torch.load(weights_only=True)``:
no code in a checkpoint can run. It is written to a temporary file in the same folder and renamed over the
target, so a crash mid-write never leaves a truncated checkpoint under the real name. Loading checks
everything against the model, optimizer and scheduler *before* changing any of them.
"""
from __future__ import annotations

import copy
import logging
import os
import re
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Union

import torch
from torch import nn

from compress import options
from compress.distributed import all_gather_object, barrier, is_distributed, world
from compress.errors import ArgumentError, CheckpointError, describe
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
FIELDS = ("format", "version", "model", "optimizer", "scheduler", "rng", "extra", "untrained_regrowth")


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
    ``'torch.optim.sgd.SGD'``; see :func:`torch_optimizer_classes`). The result has every field of
    :func:`save_checkpoint`'s layout, each of the right kind (``model`` a mapping, ``extra`` plain data, ...).

    Raises:
        CheckpointError: missing, empty, truncated, damaged, not a PyTorch file, unsafe to unpickle, of a foreign
            format, or with a field of the wrong kind; the message names the file and the field.
    """
    path = os.fspath(path)
    state = safe_torch_load(path, "checkpoint", allowed_globals=list(torch_optimizer_classes().values()))
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a checkpoint dict, found {type(state).__name__}")
    if state.get("format") == FORMAT:
        state = dict(state)
    elif "state_dict" in state:  # Distiller's layout
        extra = {k: state[k] for k in ("epoch", "arch", "extras", "dataset", "is_parallel") if k in state}
        if _class_path(state.get("optimizer_type")):
            extra["optimizer_type"] = _class_path(state["optimizer_type"])
        state = {"format": FORMAT, "version": 0, "model": state["state_dict"],
                 "optimizer": state.get("optimizer_state_dict"), "scheduler": state.get("compression_sched"),
                 "rng": {}, "extra": extra}
    else:
        raise CheckpointError(f"{path}: not a compress checkpoint (no 'format': '{FORMAT}' and no Distiller "
                              f"'state_dict')")
    try:
        options.fields((), state, FIELDS)
        options.choice("version", state.get("version"), [0, 1])
        if "model" not in state:
            raise ArgumentError("model", "missing: a checkpoint holds the model's state_dict")
        options.mapping("model", state["model"], allow_empty=True)
        for key in ("optimizer", "scheduler"):
            options.optional(options.mapping, key, state.get(key), allow_empty=True)
        options.mapping("rng", state.setdefault("rng", {}), allow_empty=True)
        extra = options.mapping("extra", state.setdefault("extra", {}), allow_empty=True)
        for key, value in extra.items():
            try:
                _check_plain(value, key)
            except TypeError as exc:
                raise ArgumentError(("extra", key), str(exc)) from None
        options.integer("untrained_regrowth", state.get("untrained_regrowth", 0), minimum=0)
    except ArgumentError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return state


def _check_model_state(path: str, model: nn.Module, saved: Mapping[str, Any]) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    if (missing or unexpected) and _is_thinned_state(saved) and not _is_thinned_state(own):
        raise CheckpointError(f"{path}: holds a thinned model (hidden units removed); build its structure from this "
                              f"dense model first: model = compress.structured.thinned_skeleton(model, {path!r})")
    if missing or unexpected:
        raise ArgumentError("model", f"does not fit this model: missing {describe(missing)}, "
                                     f"unexpected {describe(unexpected)}")
    for k, v in own.items():
        if not torch.is_tensor(v):
            continue
        value = saved[k]
        if not torch.is_tensor(value) or tuple(value.shape) != tuple(v.shape):
            shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
            raise ArgumentError(("model", k), f"has shape {shape} in the checkpoint, {tuple(v.shape)} in the model")
        if value.is_complex() and not v.is_complex() or value.is_floating_point() != v.is_floating_point():
            raise ArgumentError(("model", k), f"is {value.dtype} in the checkpoint, {v.dtype} in the model")


def _optimizer_probe(optimizer: torch.optim.Optimizer, saved: Any) -> torch.optim.Optimizer:
    """``saved`` loaded into a shallow copy of ``optimizer``: torch's own checks and device casts run there, and the
    original is left as it is until the whole checkpoint has been checked (:func:`_adopt` then takes the state).

    Raises:
        ArgumentError: naming the field: groups of other sizes, another optimizer class's settings (Adam's into
            SGD), a per-parameter state entry that is not a mapping of tensors and numbers, a state tensor whose
            shape does not fit its parameter, parameters of one group whose states differ in their fields or in
            the kind of a field (a number, a scalar, a tensor of the parameter's shape).
    """
    if not isinstance(saved, Mapping) or "param_groups" not in saved:
        raise ArgumentError("optimizer", f"holds no optimizer state to load into {type(optimizer).__name__}")
    with options.under("optimizer"):
        options.fields((), saved, ["state", "param_groups"])
        if "state" not in saved:
            raise ArgumentError("state", "missing: an optimizer state_dict has 'state' and 'param_groups'")
        groups = options.sequence("param_groups", saved["param_groups"], options.mapping)
        ours = [len(g["params"]) for g in optimizer.param_groups]
        params: Dict[int, torch.Tensor] = {}
        for i, (group, own) in enumerate(zip(groups, optimizer.param_groups)):
            ids = options.sequence(("param_groups", i, "params"), group.get("params"), options.integer, minimum=0)
            params.update((pid, p) for pid, p in zip(ids, own["params"]))
        theirs = [len(g.get("params") or []) for g in groups]
        if ours != theirs or len(params) != sum(ours):
            raise ArgumentError("param_groups", f"groups of {theirs} parameters (ids {describe(sorted(params))}); "
                                                f"this {type(optimizer).__name__} has groups of {ours}")
        state = saved["state"]
        if not isinstance(state, Mapping):
            raise ArgumentError("state", f"expected a mapping, got {describe(state)}")
        kinds_of_group: Dict[int, Dict[str, str]] = {}  # an optimizer keeps the same state for every parameter
        group_of = {pid: i for i, g in enumerate(groups) for pid in g["params"]}
        for pid, entry in state.items():
            key = ("state", str(pid))
            if pid not in params:
                raise ArgumentError(key, f"names no parameter of the saved groups (ids 0-{len(params) - 1})")
            if not isinstance(entry, Mapping):
                raise ArgumentError(key, f"expected a mapping of the parameter's state, got {describe(entry)}")
            shape = params[pid].shape
            for name, value in entry.items():
                if torch.is_tensor(value):
                    try:
                        fits = torch.broadcast_shapes(value.shape, shape) == shape
                    except RuntimeError:
                        fits = False
                    if not fits:
                        raise ArgumentError(key + (str(name),), f"has shape {tuple(value.shape)}, which does not fit "
                                                                f"its parameter's {tuple(shape)}")
                elif value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise ArgumentError(key + (str(name),), f"expected a tensor or a number, got {describe(value)}")
            kinds = {str(name): _kind(value, shape) for name, value in entry.items()}
            known = kinds_of_group.setdefault(group_of[pid], kinds)
            if kinds != known:
                raise ArgumentError(key, f"holds {_show_kinds(kinds)}; the group's other parameters hold "
                                         f"{_show_kinds(known)}")
        probe = copy.copy(optimizer)
        try:
            probe.load_state_dict(saved)
        except Exception as exc:  # torch's own checks
            raise ArgumentError((), f"{type(optimizer).__name__} refuses it: {type(exc).__name__}: {exc}") from None
        for i, (own, loaded) in enumerate(zip(optimizer.param_groups, probe.param_groups)):
            if "initial_lr" in own and "initial_lr" not in loaded:  # saved before an LR scheduler was built
                loaded["initial_lr"] = own["initial_lr"]
            foreign = sorted(set(loaded) - set(own) - {"initial_lr"})
            lacking = sorted(set(own) - set(loaded) - {"initial_lr"})
            if foreign or lacking:
                raise ArgumentError(("param_groups", i),
                                    f"is another optimizer's: it has {', '.join(foreign) or 'nothing'} that this "
                                    f"{type(optimizer).__name__} lacks, and lacks {', '.join(lacking) or 'nothing'}")
            for k, value in own.items():
                if k == "params":
                    continue
                if value is None:  # torch's unset flags (foreach, fused): None or a bool
                    if loaded[k] is not None:
                        options.boolean(("param_groups", i, k), loaded[k])
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    # a number, whatever kind the optimizer was built with: lr=20 is 1.25 once annealed
                    options.number(("param_groups", i, k), loaded[k])
                else:
                    options.like(("param_groups", i, k), loaded[k], value, exact=False)
            lr = loaded.get("lr")
            if lr is not None and not torch.is_tensor(lr):
                options.number(("param_groups", i, "lr"), lr, minimum=0)
    return probe


def _kind(value: Any, shape: torch.Size) -> str:
    if value is None:
        return "nothing"
    if not torch.is_tensor(value):
        return "a number"
    if value.dim() == 0:
        return "a scalar tensor"
    return "a tensor of its parameter's shape" if value.shape == shape else f"a {value.dim()}-d tensor"


def _show_kinds(kinds: Mapping[str, str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items())) or "no state"


def _adopt(optimizer: torch.optim.Optimizer, probe: torch.optim.Optimizer) -> None:
    optimizer.__setstate__({"state": probe.state, "param_groups": probe.param_groups})


def _check_rng(saved: Mapping[str, Any], key: Any = ("rng",)) -> None:
    """The saved RNG states fit this machine's generators (tried, and the current states put back); so do the
    states of every rank a distributed run saved under ``ranks``."""
    with options.under(*key):
        options.fields((), saved, ["torch", "cuda", "ranks"])
        for i, rank in enumerate(options.sequence("ranks", saved.get("ranks", []), options.mapping)):
            if "ranks" in rank:
                raise ArgumentError(("ranks", i, "ranks"), "a rank's own state holds no other ranks")
            _check_rng(rank, ("ranks", i))
        if "torch" in saved:
            options.tensor("torch", saved["torch"], torch.get_rng_state().shape)
            if saved["torch"].dtype != torch.uint8:
                raise ArgumentError("torch", f"expected a uint8 tensor, got {saved['torch'].dtype}")
            current = torch.get_rng_state()
            try:
                torch.set_rng_state(saved["torch"])
            except Exception as exc:
                raise ArgumentError("torch", f"not a CPU generator state ({exc})") from None
            finally:
                torch.set_rng_state(current)
        if "cuda" in saved:
            options.sequence("cuda", saved["cuda"], options.tensor)
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                current = torch.cuda.get_rng_state_all()
                if len(saved["cuda"]) != len(current) or any(
                        s.dtype != torch.uint8 or s.shape != c.shape for s, c in zip(saved["cuda"], current)):
                    raise ArgumentError("cuda", f"states of {len(saved['cuda'])} CUDA generators do not fit this "
                                                f"machine's {len(current)}")


def load_checkpoint(path: Union[str, os.PathLike], model: nn.Module,
                    optimizer: Optional[torch.optim.Optimizer] = None,
                    scheduler: Optional[CompressionScheduler] = None, *, restore_rng: bool = True) -> Dict[str, Any]:
    """Load a checkpoint into ``model`` (and ``optimizer``, ``scheduler``); returns the saved ``extra`` dict.

    The whole file is checked before anything is changed: the model's names, shapes and kinds of tensor; the
    optimizer's groups, class (its settings) and per-parameter state; every policy's and pruner's state
    (:meth:`CompressionScheduler.check_state`); the RNG states. On error the model, optimizer, scheduler and RNG
    are as they were.

    Args:
        path: the checkpoint file.
        model: receives the weights (strict: same names and shapes).
        optimizer: receives the optimizer state, if given.
        scheduler: receives masks, policy state and position, if given; it must be built from the same schedule.
        restore_rng: also restore the torch RNG states saved with it (needed for bit-exact resumes with dropout).

    Raises:
        CheckpointError: the file is unreadable or foreign, or does not fit the objects given; the message names
            the file and the field.
    """
    path = os.fspath(path)
    return apply_checkpoint(read_checkpoint(path), path, model, optimizer, scheduler, restore_rng=restore_rng)


def apply_checkpoint(state: Mapping[str, Any], path: Union[str, os.PathLike], model: nn.Module,
                     optimizer: Optional[torch.optim.Optimizer] = None,
                     scheduler: Optional[CompressionScheduler] = None, *, restore_rng: bool = True) -> Dict[str, Any]:
    """:func:`load_checkpoint` of a checkpoint already read with :func:`read_checkpoint` (``path`` is for
    messages); for callers that look at the file's contents first. Checks everything before changing anything.

    Raises:
        CheckpointError: the state does not fit the objects given; the message names the file and the field.
    """
    path = os.fspath(path)
    try:
        _check_model_state(path, model, state["model"])
        probe = _optimizer_probe(optimizer, state.get("optimizer")) if optimizer is not None else None
        if restore_rng:
            _check_rng(state["rng"])
    except ArgumentError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if scheduler is not None:
        if state.get("scheduler") is None:
            raise CheckpointError(f"{path}: holds no scheduler state")
        try:
            scheduler.check_state(state["scheduler"])
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
    # Everything fits: only now is anything changed.
    model.load_state_dict(state["model"])
    if probe is not None:
        _adopt(optimizer, probe)
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng and state.get("rng"):
        set_rng_state(state["rng"])
    return dict(state["extra"])
