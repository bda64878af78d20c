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
import os
from typing import Any, Callable, Dict, Mapping, Optional, Union

import torch
from torch import nn

from compress import options
from compress import quantization as _quantization  # noqa: F401  (registers the quantizers)
from compress.context import Timing
from compress.errors import ArgumentError, ScheduleError, format_key
from compress.pruning import pruners as _pruners  # noqa: F401  (registers the pruners)
from compress.pruning import regularizers as _regularizers  # noqa: F401  (registers the regularizers)
from compress.pruning.base import SearchingPruner
from compress.registry import SECTIONS
from compress.scheduling import lr_schedulers as _lr_schedulers  # noqa: F401  (registers torch's LR schedulers)
from compress.scheduling.loader import Path, read_schedule
from compress.scheduling.policies import (
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
    saved_groups = _snapshot(optimizer)
    try:
        components, _ = builder.build(with_policies=False)
        return components
    except ScheduleError:
        _restore(optimizer, saved_groups)
        raise
    except Exception as exc:
        _restore(optimizer, saved_groups)
        raise ScheduleError(f"{type(exc).__name__}: {exc}", file=file) from exc


def _configure(model, optimizer, data, scheduler, resumed_epoch, evaluate, file, lines) -> CompressionScheduler:
    if evaluate is not None:
        try:
            options.function("evaluate", evaluate, "a callable evaluate(model) -> float")
        except ArgumentError as exc:
            raise ScheduleError(exc.message, file=file, key="evaluate") from None
    builder = _Builder(model, optimizer, data, file, lines, resumed_epoch, evaluate)
    saved_groups = _snapshot(optimizer)
    target = scheduler if scheduler is not None else CompressionScheduler(model, optimizer)
    try:
        components, entries = builder.build()
        builder.bind_all(target, entries)
        builder.check_evaluate()  # after binding, so a wrong weight name is reported first
    except ScheduleError:
        _restore(optimizer, saved_groups)
        raise
    except Exception as exc:  # anything a user class raised that we did not anticipate
        _restore(optimizer, saved_groups)
        raise ScheduleError(f"{type(exc).__name__}: {exc}", file=file) from exc
    # Every policy has bound: only now is the model touched.
    for _, kind, name, policy, _ in entries:
        target.attach_policy(policy, kind=kind, name=name)
    for section, items in components.items():
        target.components.setdefault(section, {}).update(items)
    return target


def _snapshot(optimizer):
    if optimizer is None:
        return None
    return [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]


def _restore(optimizer, saved):
    if optimizer is None or saved is None:
        return
    for group, old in zip(optimizer.param_groups, saved):
        for k in list(group):
            if k != "params" and k not in old:
                del group[k]
        group.update(old)


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
        if "version" in data and data["version"] != 1:
            raise self.error(f"unsupported schedule version {data['version']!r}; only version 1 exists", "version")
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
            self.instances[section][name] = self.build_component(section, str(name), spec)

    def build_component(self, section: str, name: str, spec: Any) -> Any:
        path = (section, name)
        if not isinstance(spec, Mapping):
            raise self.error(f"expected a mapping with 'class' and its arguments, got {spec!r}", *path)
        if "class" not in spec:
            raise self.error("missing 'class'", *path)
        class_name = spec["class"]
        registry = SECTIONS[section]
        if not isinstance(class_name, str) or class_name not in registry:
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
            return cls(**kwargs)
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
                             f"got {item!r}", *path)
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
        if name not in self.instances[section]:
            defined = ", ".join(map(str, self.instances[section])) or "none"
            raise self.error(f"{kind} {name!r} is not defined in {section} (defined: {defined})",
                             *path, kind, "instance_name")
        args = ref.get("args") or {}
        if not isinstance(args, Mapping):
            raise self.error(f"expected a mapping of policy arguments, got {args!r}", *path, kind, "args")
        timing = self.build_timing(item, path)
        instance = self.instances[section][name]
        try:
            if kind == "pruner":
                # the pruner's declared lifecycle (dynamic sparsity, iterative search) picks its policy
                policy = policy_for(instance, args)
            elif kind == "regularizer":
                policy = RegularizationPolicy(instance, **args)
            else:
                if args:
                    raise ArgumentError(next(iter(args)), f"{kind} policies take no args")
                if kind == "quantizer":
                    policy = QuantizationPolicy(instance)
                elif kind == "lr_scheduler":
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

    def build_timing(self, item: Mapping[str, Any], path: Path) -> Timing:
        keys = ("epochs", "starting_epoch", "ending_epoch", "frequency")
        try:
            return Timing(**{k: item[k] for k in keys if k in item})
        except ArgumentError as exc:  # Timing checks its own values; the policy's path locates them
            raise self.error(exc.message, *path, *exc.path) from None
