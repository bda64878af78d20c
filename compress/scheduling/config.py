"""Schedules: YAML (or a dict) in Distiller's format → a :class:`~compress.scheduling.CompressionScheduler`.

The loader only turns YAML into objects; it knows no algorithm. Every problem is a
:class:`~compress.errors.ScheduleError` naming the file, the line where known, and the key path
(``pruners.l0_rnn_pruner.final_sparsity``, ``policies[2].ending_epoch``); no other exception escapes, and a
failed load leaves the model, the optimizer and any scheduler passed in untouched.

Format (Distiller's)::

    version: 1
    pruners:                      # also regularizers, quantizers, extensions, lr_schedulers
      <instance name>: {class: <registered class>, <constructor arguments>...}
    policies:
      - pruner: {instance_name: <name>, args: {<policy arguments>}}
        starting_epoch: 0         # with ending_epoch (exclusive) and frequency (default 1)
        ending_epoch: 10
        frequency: 2
      - lr_scheduler: {instance_name: <name>}
        epochs: [3, 5, 8]         # or an explicit list

Weights are named by ``named_parameters()`` name, glob (``rnn.weight_*``) or regex (``re:...``).
"""
from __future__ import annotations

import copy
import inspect
import logging
import math
import os
import warnings
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from compress import options
from compress import quantization as _quantization  # noqa: F401  (registers the quantizers)
from compress.context import Timing
from compress.errors import ArgumentError, ScheduleError, describe, format_key
from compress.pruning import pruners as _pruners  # noqa: F401  (registers the pruners)
from compress.pruning import regularizers as _regularizers  # noqa: F401  (registers the regularizers)
from compress.pruning.base import SearchingPruner
from compress.registry import SECTIONS
from compress.scheduling import lr_schedulers as _lr_schedulers  # noqa: F401  (registers torch's LR schedulers)
from compress.scheduling.loader import Path, read_schedule
from compress.scheduling.policies import (
    REGULARIZATION_POLICY_ARGS,
    LRPolicy,
    QuantizationPolicy,
    RegularizationPolicy,
    ScheduledTrainingPolicy,
    policy_for,
)
from compress.scheduling.scheduler import CompressionScheduler

log = logging.getLogger(__name__)

TOP_LEVEL_KEYS = ("version", "pruners", "regularizers", "quantizers", "extensions", "lr_schedulers", "policies")
POLICY_KINDS = {"pruner": "pruners", "regularizer": "regularizers", "quantizer": "quantizers",
                "lr_scheduler": "lr_schedulers", "extension": "extensions"}
TIMING_KEYS = ("epochs", "starting_epoch", "ending_epoch", "frequency")
INJECTED = ("name", "model", "optimizer", "last_epoch", "evaluate")


Evaluate = Callable[[nn.Module], float]


def file_config(model: nn.Module, optimizer: Optional[torch.optim.Optimizer], filename: Union[str, os.PathLike],
                scheduler: Optional[CompressionScheduler] = None, resumed_epoch: Optional[int] = None, *,
                evaluate: Optional[Evaluate] = None) -> CompressionScheduler:
    r"""Build a scheduler from a YAML schedule file (Distiller's ``file_config``).

    Everything is built and checked first; the model is changed (gradient hooks, module conversion) only once
    the whole schedule is valid, so a schedule that fails to load leaves the model, the optimizer and any
    ``scheduler`` passed in as they were.

    Args:
        model: the model; weights are found by name.
        optimizer: the optimizer, or ``None`` for schedules without LR schedulers.
        filename: the YAML file.
        scheduler: add the policies (and components) to this scheduler instead of a new one; it keeps its masks.
        resumed_epoch: for LR schedulers built when resuming the Distiller way (``last_epoch``).
        evaluate: ``evaluate(model) -> float`` on the data a search-based pruner's constraint is about (the
            validation split); a schedule cannot hold a function. Required when the schedule has such a pruner
            (:class:`~compress.pruning.StageWisePruner`), ignored otherwise.

    Returns:
        The scheduler; its ``components`` holds the schedule's instances by section and name.

    Raises:
        ScheduleError: anything wrong with the schedule, naming file, line and key.

    Example:
        >>> import os, tempfile, torch
        >>> path = os.path.join(tempfile.mkdtemp(), "s.yaml")
        >>> _ = open(path, "w").write(
        ...     "pruners:\n"
        ...     "  p: {class: AutomatedGradualPruner, initial_sparsity: 0.1, final_sparsity: 0.5,\n"
        ...     "      weights: [weight_hh_l0]}\n"
        ...     "policies:\n"
        ...     "  - {pruner: {instance_name: p}, starting_epoch: 0, ending_epoch: 3}\n")
        >>> model = torch.nn.LSTM(4, 8)
        >>> scheduler = file_config(model, torch.optim.SGD(model.parameters(), lr=0.1), path)
        >>> list(scheduler.components["pruners"])
        ['p']
    """
    data, lines = read_schedule(filename)
    return _configure(model, optimizer, data, scheduler, resumed_epoch, evaluate, os.fspath(filename), lines)


def dict_config(model: nn.Module, optimizer: Optional[torch.optim.Optimizer], sched_dict: Mapping[str, Any],
                scheduler: Optional[CompressionScheduler] = None, resumed_epoch: Optional[int] = None, *,
                evaluate: Optional[Evaluate] = None) -> CompressionScheduler:
    """Build a scheduler from a schedule already loaded as a dict; see :func:`file_config`.

    Example:
        >>> import torch
        >>> model = torch.nn.GRU(4, 8)
        >>> schedule = {"pruners": {"p": {"class": "SparsityLevelParameterPruner", "levels": {"weight_*": 0.5}}},
        ...             "policies": [{"pruner": {"instance_name": "p"}, "epochs": [0]}]}
        >>> dict_config(model, None, schedule).policies[0][:2]
        ('pruner', 'p')
    """
    return _configure(model, optimizer, sched_dict, scheduler, resumed_epoch, evaluate, None, {})


def components_from_file(model: nn.Module, filename: Union[str, os.PathLike],
                         optimizer: Optional[torch.optim.Optimizer] = None, *,
                         evaluate: Optional[Evaluate] = None) -> Dict[str, Dict[str, Any]]:
    """Build only the components of a schedule file (``{section: {instance name: object}}``), ignoring its
    policies: the way to get a post-training quantizer out of a YAML file (Distiller's
    ``config_component_from_file_by_class``). Nothing is attached to the model.

    Raises:
        ScheduleError: as :func:`file_config`.
    """
    data, lines = read_schedule(filename)
    file = os.fspath(filename)
    builder = _Builder(model, optimizer, data, file, lines, None, evaluate)
    with _UndoOnError(optimizer, file):
        components, _ = builder.build(with_policies=False)
    return components


def _configure(model, optimizer, data, scheduler, resumed_epoch, evaluate, file, lines) -> CompressionScheduler:
    if evaluate is not None:
        try:
            options.function("evaluate", evaluate, "a callable evaluate(model) -> float")
        except ArgumentError as exc:
            raise ScheduleError(exc.message, file=file, key="evaluate") from None
    builder = _Builder(model, optimizer, data, file, lines, resumed_epoch, evaluate)
    target = scheduler if scheduler is not None else CompressionScheduler(model, optimizer)
    with _UndoOnError(optimizer, file):
        components, entries = builder.build()
        builder.bind_all(target, entries)
        builder.check_evaluate()  # after binding, so a wrong weight name is reported first
    # Every policy has bound: only now is the model touched.
    for _, kind, name, policy, _ in entries:
        target.attach_policy(policy, kind=kind, name=name)
    for section, items in components.items():
        target.components.setdefault(section, {}).update(items)
    return target


#: The most steps :meth:`_Builder.dry_run_lr_scheduler` takes (a step costs microseconds).
LR_DRY_RUN_STEPS = 1000


def _throwaway(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """A shallow copy of ``optimizer`` with its own copies of the param groups' settings: an LR scheduler built
    on it and stepped changes nothing of the original (the parameters and state are shared, never written)."""
    probe = copy.copy(optimizer)
    probe.param_groups = [{k: v if k == "params" else copy.deepcopy(v) for k, v in g.items()}
                          for g in optimizer.param_groups]
    return probe


def _on_throwaway(value: Any, optimizer: torch.optim.Optimizer, throwaway: torch.optim.Optimizer) -> Any:
    """``value`` with every LR scheduler of ``optimizer`` in it (``SequentialLR``'s and ``ChainedScheduler``'s
    ``schedulers``, given in code) replaced by a shallow copy driving ``throwaway``: the dry run steps those
    copies, never the real schedulers or the real groups."""
    if isinstance(value, (list, tuple)):
        return type(value)(_on_throwaway(v, optimizer, throwaway) for v in value)
    if isinstance(value, torch.optim.lr_scheduler.LRScheduler) and getattr(value, "optimizer", None) is optimizer:
        twin = copy.copy(value)
        twin.optimizer = throwaway
        return twin
    return value


class _UndoOnError:
    """Undo what building a schedule did to the optimizer and the RNG when it fails, and make any failure a
    ``ScheduleError``.

    Building LR schedulers writes the optimizer's groups (``initial_lr``, a first ``lr``) and wraps its
    ``step``; a component's constructor may draw random numbers. On error the groups, ``step`` and the torch
    RNG state are put back.
    """

    def __init__(self, optimizer: Optional[torch.optim.Optimizer], file: Optional[str]):
        self.optimizer = optimizer
        self.file = file

    def __enter__(self) -> _UndoOnError:
        self.rng = torch.get_rng_state()
        opt = self.optimizer
        if opt is not None:
            self.groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in opt.param_groups]
            self.attributes = {k: opt.__dict__[k] for k in ("step", "_opt_called") if k in opt.__dict__}
        return self

    def __exit__(self, kind, exc, traceback) -> bool:
        if exc is None:
            return False
        torch.set_rng_state(self.rng)
        opt = self.optimizer
        if opt is not None:
            for group, old in zip(opt.param_groups, self.groups):
                for k in [k for k in group if k != "params"]:
                    del group[k]
                group.update(copy.deepcopy(old))
            for k in ("step", "_opt_called"):
                opt.__dict__.pop(k, None)
            opt.__dict__.update(self.attributes)
        if isinstance(exc, ScheduleError):
            return False
        if isinstance(exc, Exception):  # anything a user class raised that we did not anticipate
            raise ScheduleError(f"{type(exc).__name__}: {exc}", file=self.file) from exc
        return False


class _Builder:
    def __init__(self, model, optimizer, data, file, lines, resumed_epoch, evaluate=None):
        self.evaluate = evaluate
        self.model = model
        self.optimizer = optimizer
        self.data = data
        self.file = file
        self.lines = lines
        self.resumed_epoch = resumed_epoch
        self.instances: Dict[str, Dict[str, Any]] = {s: {} for s in SECTIONS}
        self.arguments: Dict[Tuple[str, str], Dict[str, Any]] = {}  # what each component was built with

    def error(self, message: str, *path) -> ScheduleError:
        line = None
        for n in range(len(path), -1, -1):
            if tuple(path[:n]) in self.lines:
                line = self.lines[tuple(path[:n])]
                break
        return ScheduleError(message, file=self.file, line=line, key=format_key(tuple(path)) or None)

    def build(self, with_policies: bool = True):
        """The components by section, and the policies as ``(index, kind, name, policy, timing)`` in run order."""
        data = self.data
        if data is None:
            raise self.error("the schedule is empty; expected a mapping with 'policies' and component sections")
        if not isinstance(data, Mapping):
            raise self.error(f"expected a mapping at the top level, got {type(data).__name__}")
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                raise self.error(f"unknown top-level key (expected one of {', '.join(TOP_LEVEL_KEYS)})", key)
        version = data.get("version", 1)
        if isinstance(version, bool) or version != 1:
            raise self.error(f"unsupported schedule version {describe(version)}; only version 1 exists", "version")
        for section in ("pruners", "regularizers", "quantizers", "extensions", "lr_schedulers"):
            self.build_section(section)
        if len(self.instances["quantizers"]) > 1:
            raise self.error("at most one quantizer may be defined (use its 'overrides' to mix precisions)",
                             "quantizers")
        components = {s: dict(items) for s, items in self.instances.items() if items}
        if not with_policies:
            return components, []
        policies = data.get("policies") or []
        if not isinstance(policies, list):
            raise self.error(f"expected a list of policies, got {type(policies).__name__}", "policies")
        entries, deferred = [], []
        used = set()
        for i, item in enumerate(policies):
            kind, name, policy, timing = self.build_policy(i, item)
            used.add((kind, name))
            (deferred if kind == "lr_scheduler" else entries).append((i, kind, name, policy, timing))
        entries += deferred  # as in Distiller, LR policies run after every other policy of an epoch
        for section, items in self.instances.items():
            kind = next(k for k, s in POLICY_KINDS.items() if s == section)
            for name in items:
                if (kind, name) not in used:
                    log.warning("%s%s.%s is defined but no policy uses it", f"{self.file}: " if self.file else "",
                                section, name)
        return components, entries

    def check_evaluate(self) -> None:
        for name, pruner in self.instances["pruners"].items():
            if isinstance(pruner, SearchingPruner) and pruner.evaluate is None:
                raise self.error(f"{type(pruner).__name__} searches its rates with an evaluate(model) -> float "
                                 f"callable, which a schedule cannot hold: pass file_config(model, optimizer, "
                                 f"path, evaluate=fn)", "pruners", name)

    def bind_all(self, scheduler: CompressionScheduler, entries) -> None:
        """Set every policy's timing and resolve its names; nothing is changed on the model yet."""
        for _, kind, name, policy, timing in entries:
            policy.timing = timing
            bind = getattr(policy, "bind", None)
            if bind is None:
                continue
            try:
                bind(scheduler.masks.index)
            except ArgumentError as exc:
                # weight names are resolved here; they belong to the component's own definition
                raise self.error(exc.message, POLICY_KINDS[kind], name, *exc.path) from None

    def build_section(self, section: str) -> None:
        items = self.data.get(section)
        if items is None:
            return
        if not isinstance(items, Mapping):
            raise self.error(f"expected a mapping of instance names to {{class: ..., arguments}}, "
                             f"got {type(items).__name__}", section)
        for name, spec in items.items():
            if not isinstance(name, str) or not name:
                raise self.error(f"an instance name must be a non-empty string, got {describe(name)}", section, name)
            self.instances[section][name] = self.build_component(section, name, spec)

    def build_component(self, section: str, name: str, spec: Any) -> Any:
        path = (section, name)
        if not isinstance(spec, Mapping):
            raise self.error(f"expected a mapping with 'class' and its arguments, got {describe(spec)}", *path)
        if "class" not in spec:
            raise self.error("missing 'class'", *path)
        class_name = spec["class"]
        registry = SECTIONS[section]
        if not isinstance(class_name, str):
            raise self.error(f"expected a class name (a string), got {describe(class_name)}", *path, "class")
        if class_name not in registry:
            raise self.error(registry.unknown_message(class_name), *path, "class")
        cls = registry.get(class_name)
        user_args = {k: v for k, v in spec.items() if k != "class"}
        injected: Dict[str, Any] = {"name": name, "model": self.model}
        if section in ("quantizers", "lr_schedulers", "regularizers", "extensions"):
            injected["optimizer"] = self.optimizer
        if section == "lr_schedulers":
            if self.optimizer is None:
                raise self.error(f"{class_name} needs an optimizer: pass one to file_config(model, optimizer, ...)",
                                 *path)
            if self.resumed_epoch is not None:
                for group in self.optimizer.param_groups:
                    group.setdefault("initial_lr", group["lr"])
                injected["last_epoch"] = self.resumed_epoch
        params = inspect.signature(cls.__init__).parameters
        explicit = {n: p for n, p in list(params.items())[1:]
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
        for key in user_args:
            if key in INJECTED and key in explicit:
                raise self.error(f"'{key}' is supplied by the library and cannot be set in the schedule", *path, key)
            if key not in explicit and not takes_any:
                accepted = [n for n in explicit if n not in INJECTED]
                raise self.error(f"unknown argument for {class_name} (accepted: {', '.join(accepted) or 'none'})",
                                 *path, key)
        kwargs = dict(user_args)
        if self.evaluate is not None:
            injected["evaluate"] = self.evaluate
        for key, value in injected.items():
            if key in explicit:
                kwargs[key] = value
        missing = [n for n, p in explicit.items() if p.default is p.empty and n not in kwargs]
        if missing:
            raise self.error(f"missing required argument{'s' if len(missing) > 1 else ''} for {class_name}: "
                             f"{', '.join(missing)}", *path)
        try:
            instance = cls(**kwargs)
            self.arguments[(section, name)] = kwargs
            return instance
        except ArgumentError as exc:
            raise self.error(exc.message, *path, *exc.path) from None
        except ScheduleError:
            raise
        except Exception as exc:
            raise self.error(f"{class_name} rejected its arguments: {type(exc).__name__}: {exc}", *path) from None

    def build_policy(self, i: int, item: Any):
        path = ("policies", i)
        if not isinstance(item, Mapping):
            raise self.error(f"expected a mapping like {{pruner: {{instance_name: ...}}, starting_epoch: ...}}, "
                             f"got {describe(item)}", *path)
        kinds = [k for k in item if k in POLICY_KINDS]
        if len(kinds) != 1:
            raise self.error(f"a policy names exactly one of {', '.join(POLICY_KINDS)}; "
                             f"this one names {', '.join(kinds) or 'none'}", *path)
        kind = kinds[0]
        for key in item:
            if key != kind and key not in TIMING_KEYS:
                raise self.error(f"unknown policy key (expected {kind} and timing keys {', '.join(TIMING_KEYS)})",
                                 *path, key)
        ref = item[kind]
        if not isinstance(ref, Mapping) or "instance_name" not in ref:
            raise self.error("expected {instance_name: <name>, args: {...}}", *path, kind)
        for key in ref:
            if key not in ("instance_name", "args"):
                raise self.error("unknown key (expected instance_name and args)", *path, kind, key)
        name = ref["instance_name"]
        section = POLICY_KINDS[kind]
        if not isinstance(name, str):
            raise self.error(f"expected an instance name (a string), got {describe(name)}", *path, kind,
                             "instance_name")
        if name not in self.instances[section]:
            defined = ", ".join(map(str, self.instances[section])) or "none"
            raise self.error(f"{kind} {name!r} is not defined in {section} (defined: {defined})",
                             *path, kind, "instance_name")
        args = {} if ref.get("args") is None else ref["args"]
        if not isinstance(args, Mapping):
            raise self.error(f"expected a mapping of policy arguments, got {describe(args)}", *path, kind, "args")
        for key in args:
            if not isinstance(key, str):
                raise self.error(f"a policy argument's name must be a string, got {describe(key)}", *path, kind,
                                 "args", key)
        timing = self.build_timing(item, path)
        instance = self.instances[section][name]
        try:
            if kind == "pruner":
                # the pruner's declared lifecycle (dynamic sparsity, iterative search) picks its policy
                policy = policy_for(instance, args)
            elif kind == "regularizer":
                for key in args:
                    if key not in REGULARIZATION_POLICY_ARGS:
                        raise ArgumentError(key, f"unknown regularization policy argument "
                                                 f"(accepted: {', '.join(REGULARIZATION_POLICY_ARGS)})")
                policy = RegularizationPolicy(instance, **args)
            else:
                if args:
                    raise ArgumentError(next(iter(args)), f"{kind} policies take no args")
                if kind == "quantizer":
                    policy = QuantizationPolicy(instance)
                elif kind == "lr_scheduler":
                    self.dry_run_lr_scheduler(name, timing)
                    policy = LRPolicy(instance)
                else:
                    if not isinstance(instance, ScheduledTrainingPolicy):
                        raise ArgumentError("instance_name", f"{type(instance).__name__} is not a policy class")
                    policy = instance
        except ArgumentError as exc:
            raise self.error(exc.message, *path, kind, "args", *exc.path) from None
        except TypeError as exc:
            raise self.error(f"invalid policy arguments: {exc}", *path, kind, "args") from None
        return kind, name, policy, timing

    def dry_run_lr_scheduler(self, name: str, timing: Timing) -> None:
        """Build the LR scheduler ``name`` again on a throwaway view of the optimizer and step it as its policy
        will (once per active epoch, at most :data:`LR_DRY_RUN_STEPS` times): an argument that divides by zero
        (``StepLR step_size: 0``), runs past its end (``OneCycleLR``) or drives the learning rate to NaN, infinity
        or below zero is refused now, not at the end of the first epoch.

        Torch's schedulers check few of their arguments, and which ones differs between versions and classes; a
        dry run checks exactly what training will do, for every registered class, torch's or a user's.
        """
        throwaway = _throwaway(self.optimizer)
        kwargs = {k: _on_throwaway(v, self.optimizer, throwaway)
                  for k, v in self.arguments[("lr_schedulers", name)].items()}
        kwargs["optimizer"] = throwaway
        cls = type(self.instances["lr_schedulers"][name])
        steps = min(len(timing.active_epochs), LR_DRY_RUN_STEPS)
        shown = ", ".join(f"{k}={describe(v)}" for k, v in kwargs.items() if k not in INJECTED) or "none"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()"
                scheduler = cls(**kwargs)
                for step in range(1, steps + 1):
                    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        scheduler.step(0.0)
                    else:
                        scheduler.step()
                    for lr in (g["lr"] for g in kwargs["optimizer"].param_groups):
                        value = float(lr)
                        if not math.isfinite(value) or value < 0:
                            raise ValueError(f"the learning rate becomes {value:g} at step {step}")
        except Exception as exc:  # whatever the class raises; the arguments are the schedule's
            raise self.error(f"{cls.__name__} cannot run its policy's {steps} step{'s' * (steps != 1)}: "
                             f"{type(exc).__name__}: {exc} (arguments: {shown})", "lr_schedulers", name) from None

    def build_timing(self, item: Mapping[str, Any], path: Path) -> Timing:
        keys = ("epochs", "starting_epoch", "ending_epoch", "frequency")
        try:
            return Timing(**{k: item[k] for k in keys if k in item})
        except ArgumentError as exc:  # Timing checks its own values; the policy's path locates them
            raise self.error(exc.message, *path, *exc.path) from None
