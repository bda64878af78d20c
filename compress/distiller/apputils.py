"""Distiller's ``distiller.apputils``: the run logger and checkpoints, on :mod:`logging` and :mod:`compress.io`.

* :func:`config_pylogger` configures the root logger from Distiller's ``logging.conf`` (or a default) with a log
  file in a fresh run folder, and returns a logger that knows that folder (``.logdir``).
* :func:`save_checkpoint` writes :func:`compress.save_checkpoint`'s file (atomic, loads with
  ``weights_only=True``) under Distiller's file names; :func:`load_checkpoint` reads it, or a checkpoint written by
  Distiller (its pickled optimizer class included), and returns Distiller's ``(model, compression_scheduler,
  optimizer, start_epoch)``.

Example:
    >>> import os, tempfile, torch
    >>> folder = tempfile.mkdtemp()
    >>> model = torch.nn.Linear(2, 2)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> save_checkpoint(3, "linear", model, optimizer, dir=folder)
    >>> _, scheduler, optimizer, start_epoch = load_checkpoint(torch.nn.Linear(2, 2), os.path.join(folder,
    ...                                                        "checkpoint.pth.tar"))
    >>> type(optimizer).__name__, optimizer.param_groups[0]["lr"], start_epoch
    ('SGD', 0.1, 4)
"""
from __future__ import annotations

import logging
import logging.config
import os
import shutil
import time
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from compress.distiller.scheduler import CompressionScheduler
from compress.distiller.uncovered import NotCoveredError, missing_name
from compress.errors import ArgumentError, CheckpointError
from compress.io.checkpoint import apply_checkpoint, read_checkpoint, torch_optimizer_classes
from compress.io.checkpoint import save_checkpoint as _save_checkpoint

__all__ = ["config_pylogger", "RunLogger", "save_checkpoint", "load_checkpoint", "load_lean_checkpoint"]

log = logging.getLogger(__name__)


class RunLogger(logging.LoggerAdapter):
    """The root logger of a run, with its folder: what :func:`config_pylogger` returns.

    Attributes:
        logdir: the run's folder (TensorBoard files and CSV tables go there).
        log_filename: the log file in it.
    """

    def __init__(self, logger: logging.Logger, logdir: str, log_filename: str):
        super().__init__(logger, {})
        self.logdir = logdir
        self.log_filename = log_filename

    def process(self, msg: Any, kwargs: Any) -> Tuple[Any, Any]:
        return msg, kwargs


def _default_config(log_filename: str) -> Dict[str, Any]:
    # Distiller's apply_default_logger_cfg, except that compress's module loggers stay enabled
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"simple": {"format": "%(asctime)s - %(message)s"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "level": "INFO"},
            "file": {"class": "logging.FileHandler", "filename": log_filename, "mode": "w", "formatter": "simple"},
        },
        "loggers": {
            "": {"level": "DEBUG", "handlers": ["console", "file"]},
            "app_cfg": {"level": "DEBUG", "handlers": ["file"], "propagate": False},
        },
    }


def config_pylogger(log_cfg_file: str, experiment_name: Optional[str], output_dir: str = "logs",
                    verbose: bool = False) -> RunLogger:
    """Configure :mod:`logging` for a run, Distiller's way, and return the run's logger.

    Makes ``output_dir/[experiment_name___]YYYY.MM.DD-HHMMSS/`` and a log file of the same name in it, then
    configures the root logger from ``log_cfg_file`` (``logging.config.fileConfig``, with ``%(logfilename)s``
    set to that file, as Distiller's ``logging.conf`` expects) or, when the file does not exist, with Distiller's
    default (console and file). Unlike Distiller, loggers that already exist (compress's own) stay enabled, and
    no ``latest_log_dir``/``latest_log_file`` links are made in the working folder.

    Args:
        log_cfg_file: a ``logging.config.fileConfig`` file.
        experiment_name: prefix of the run folder's name, or ``None``.
        output_dir: the folder that receives run folders.
        verbose: the root logger logs DEBUG.

    Returns:
        The root logger, with ``.logdir`` and ``.log_filename``.

    Example:
        >>> import tempfile
        >>> root = logging.getLogger()
        >>> handlers, level = root.handlers[:], root.level
        >>> run = config_pylogger("no-such.conf", "demo", output_dir=tempfile.mkdtemp())
        >>> os.path.basename(run.logdir).startswith("demo___"), os.path.isfile(run.log_filename)
        (True, True)
        >>> for h in root.handlers[:]:
        ...     h.close(); root.removeHandler(h)
        >>> for h in handlers:
        ...     root.addHandler(h)
        >>> root.setLevel(level)
    """
    stamp = time.strftime("%Y.%m.%d-%H%M%S")
    name = stamp if experiment_name is None else f"{experiment_name}___{stamp}"
    logdir = os.path.join(output_dir, name)
    os.makedirs(logdir, exist_ok=True)
    log_filename = os.path.join(logdir, name + ".log")
    if os.path.isfile(log_cfg_file):
        logging.config.fileConfig(log_cfg_file, defaults={"logfilename": log_filename},
                                  disable_existing_loggers=False)
    else:
        logging.config.dictConfig(_default_config(log_filename))
        log.info("No logger configuration file %r: using the default configuration", log_cfg_file)
    root = logging.getLogger()
    if verbose:
        root.setLevel(logging.DEBUG)
    root.info("Log file for this run: %s", os.path.realpath(log_filename))
    return RunLogger(root, logdir, log_filename)


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def save_checkpoint(epoch: int, arch: str, model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None,
                    scheduler: Optional[Any] = None, extras: Optional[Mapping[str, Any]] = None,
                    is_best: bool = False, name: Optional[str] = None, dir: str = ".") -> None:
    """Distiller's ``save_checkpoint``: :func:`compress.save_checkpoint` to ``dir/[name_]checkpoint.pth.tar``.

    The file holds the model, optimizer (and, as a string, its ``torch.optim`` class) and scheduler state, the
    RNG state, ``epoch``, ``arch`` and ``extras``; with ``is_best`` a copy goes to ``[name_]best.pth.tar``.

    Args:
        epoch, arch, model, optimizer, scheduler: as Distiller's.
        extras: plain data only (numbers, strings, lists, dicts, tensors), so that the file loads safely.
        is_best: also copy the file to the "best" name.
        name: prefix of the file names.
        dir: an existing folder.

    Raises:
        CheckpointError: ``dir`` does not exist.
        ArgumentError: ``extras`` is not a dict.
        TypeError: an ``extras`` value could not be loaded back safely.
    """
    if not os.path.isdir(dir):
        raise CheckpointError(f"{os.path.abspath(dir)}: checkpoint folder does not exist")
    if extras is not None and not isinstance(extras, Mapping):
        raise ArgumentError("extras", f"must be a dict or None, got {type(extras).__name__}")
    path = os.path.join(dir, "checkpoint.pth.tar" if name is None else f"{name}_checkpoint.pth.tar")
    log.info("Saving checkpoint to: %s", path)
    more: Dict[str, Any] = {"epoch": epoch, "arch": arch, "extras": dict(extras or {})}
    if optimizer is not None:
        more["optimizer_type"] = _class_path(type(optimizer))
    _save_checkpoint(path, model, optimizer, scheduler, **more)
    if is_best:
        shutil.copyfile(path, os.path.join(dir, "best.pth.tar" if name is None else f"{name}_best.pth.tar"))


def _scheduler_masks(saved: Any) -> Optional[Dict[str, Any]]:
    if not isinstance(saved, Mapping):
        return None
    if "masks_dict" in saved:
        return dict(saved["masks_dict"])
    masks = saved.get("masks")
    return dict(masks.get("masks", {})) if isinstance(masks, Mapping) else None


def load_checkpoint(model: nn.Module, chkpt_file: str, optimizer: Any = None, model_device: Any = None,
                    lean_checkpoint: bool = False, strict: bool = False) -> Tuple[nn.Module, Any, Any, int]:
    """Distiller's ``load_checkpoint``: ``(model, compression_scheduler, optimizer, start_epoch)``.

    Reads with ``weights_only=True`` (:func:`compress.io.checkpoint.read_checkpoint`): files of
    :func:`save_checkpoint` and Distiller's own (whose ``optimizer_type`` may be any ``torch.optim`` class). As in
    Distiller, the scheduler is a new one holding the saved masks (add the schedule's policies with
    ``file_config(model, optimizer, path, scheduler, start_epoch)``), and the optimizer is a new one of the saved
    class with the saved state (``None``, with a warning, when the file holds none). Everything is checked before
    the weights change (the model is moved to ``model_device`` first).

    Args:
        model: the model (required: compress does not rebuild models from checkpoints).
        chkpt_file: the file.
        optimizer: must be ``None`` (deprecated in Distiller too).
        model_device: move the model there after loading.
        lean_checkpoint: load the weights only; returns ``(model, None, None, 0)``.
        strict: accepted; the weights must always match the model exactly (Distiller warned about extra keys).

    Raises:
        CheckpointError: the file is missing, unsafe, foreign, or does not fit the model.
        ArgumentError: ``optimizer`` is not ``None``.
        NotCoveredError: ``model`` is ``None``.
    """
    if model is None:
        raise NotCoveredError("apputils.load_checkpoint(None, ...)",
                              "compress does not rebuild models from checkpoints; build the model and pass it")
    if optimizer is not None:
        raise ArgumentError("optimizer", "must be None (as in Distiller): the optimizer is rebuilt from the file")
    path = os.path.expanduser(chkpt_file)
    log.info("=> loading checkpoint %s", path)
    state = read_checkpoint(path)
    extra = dict(state.get("extra") or {})
    epoch = extra.get("epoch")
    start_epoch = epoch + 1 if isinstance(epoch, int) else 0
    if model_device is not None:  # first, so that the masks and the optimizer state land on the weights' device
        model.to(model_device)
    if lean_checkpoint:
        apply_checkpoint(state, path, model, restore_rng=False)
        return model, None, None, 0
    masks = _scheduler_masks(state.get("scheduler"))
    scheduler = CompressionScheduler(model) if masks is not None else None
    new_optimizer = None
    if state.get("optimizer") is not None and extra.get("optimizer_type"):
        cls = torch_optimizer_classes().get(extra["optimizer_type"])
        if cls is None:
            raise CheckpointError(f"{path}: optimizer class {extra['optimizer_type']!r} is not one of torch.optim's")
        new_optimizer = cls(model.parameters(), lr=1)  # Distiller's dummy lr; the saved state sets the real one
    else:
        log.warning("%s: holds no optimizer (state and class); the optimizer was not loaded", path)
    masks_only = dict(state, scheduler={"masks_dict": masks} if masks is not None else None)
    apply_checkpoint(masks_only, path, model, new_optimizer, scheduler, restore_rng=False)
    log.info("=> loaded checkpoint '%s' (epoch %s)", path, epoch)
    return model, scheduler, new_optimizer, start_epoch


def load_lean_checkpoint(model: nn.Module, chkpt_file: str, model_device: Any = None) -> nn.Module:
    """The weights only (Distiller's ``load_lean_checkpoint``); returns the model."""
    return load_checkpoint(model, chkpt_file, model_device=model_device, lean_checkpoint=True)[0]


__getattr__ = missing_name(__name__)
