"""A search space over the keys of a base schedule, read from YAML and checked before anything trains.

A space file names a base schedule, the keys of it to search and their values, and the search's settings::

    schedule: selfish_search.yaml        # the base schedule (relative to this file), or a mapping in place
    objective: ls_distance               # or val_loss (Hyperpruning's loss-based baseline)
    pool: 40                             # round-0 evaluations (Hyperpruning: 40, duplicates merged)
    pool_epochs: 3                       # e0: epochs of every pool candidate
    round_epochs: 3                      # ei: epochs added by every halving round
    final_epochs: 100                    # epochs of the finalists
    finalists: 2                         # halve the pool (keep floor(n/2) + 1) until this many remain
    seed: 42                             # TPE's seed
    startup_trials: 10                   # TPE's random start-up evaluations (hyperopt's default was 20)
    reference: null                      # the dense reference's schedule (default: the base without pruners)
    space:
      pruners.dst.sparse_init: [uniform, ER]               # a list: the choices
      pruners.dst.death: [magnitude, SET, threshold, global_magnitude]
      pruners.dst.death_rate: {low: 0.4, high: 0.9, step: 0.1}   # a range: low, high, step, log
      policies[0].ending_epoch: {low: 50, high: 100, step: 10}   # integers when low, high and step are

A key is a path into the base schedule (``section.instance.argument``, ``[i]`` for a list entry) and must be
there already, so that the searched value replaces one the schedule states. Each candidate is the base schedule
with the sampled values in place: a schedule that runs as it is (:meth:`SearchSpace.candidate`).

Example:
    >>> space = SearchSpace.from_dict({
    ...     "schedule": {"pruners": {"p": {"class": "SelfishRNNPruner", "density": 0.33, "death_rate": 0.5}},
    ...                  "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": 9}]},
    ...     "space": {"pruners.p.death_rate": {"low": 0.4, "high": 0.9, "step": 0.1}}})
    >>> space.candidate({"pruners.p.death_rate": 0.7})["pruners"]["p"]["death_rate"]
    0.7
    >>> space.grid_size
    6
"""
from __future__ import annotations

import copy
import difflib
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from compress.errors import ArgumentError, CompressError, KeyPath, ScheduleError, format_key
from compress.options import integer
from compress.scheduling.loader import read_schedule

__all__ = ["SearchSpace", "Choice", "Range", "OBJECTIVES", "parse_key", "halving_sizes"]

OBJECTIVES = ("ls_distance", "val_loss")
SETTINGS = ("schedule", "space", "objective", "pool", "pool_epochs", "round_epochs", "final_epochs", "finalists",
            "seed", "startup_trials", "reference")
_DEFAULTS = {"objective": "ls_distance", "pool": 40, "pool_epochs": 3, "round_epochs": 3, "final_epochs": 100,
             "finalists": 2, "seed": 42, "startup_trials": 10}
_RANGE_KEYS = ("low", "high", "step", "log")
_KEY = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class Choice:
    """One of a list of values."""

    key: str
    path: KeyPath
    values: Tuple[Any, ...]

    def probes(self) -> Tuple[Any, ...]:
        return self.values


@dataclass(frozen=True)
class Range:
    """A number in ``[low, high]``, on a grid of ``step`` when given, on a log scale with ``log``."""

    key: str
    path: KeyPath
    low: Union[int, float]
    high: Union[int, float]
    step: Optional[Union[int, float]] = None
    log: bool = False

    @property
    def is_integer(self) -> bool:
        return all(isinstance(v, int) for v in (self.low, self.high)) and (self.step is None
                                                                           or isinstance(self.step, int))

    def probes(self) -> Tuple[Any, ...]:
        return (self.low, self.high) if self.low != self.high else (self.low,)

    def snap(self, value: float) -> Union[int, float]:
        """``value`` on the grid, rounded so that YAML writes ``0.7``, not ``0.7000000000000001``."""
        if self.is_integer:
            return int(round(value))
        if self.step is not None:
            value = self.low + round((value - self.low) / self.step) * self.step
        return float(f"{value:.12g}")


Parameter = Union[Choice, Range]


def parse_key(key: str) -> KeyPath:
    """``'policies[0].ending_epoch'`` → ``('policies', 0, 'ending_epoch')``.

    Raises:
        ArgumentError: an empty or malformed key.

    Example:
        >>> parse_key("pruners.dst.death_rate")
        ('pruners', 'dst', 'death_rate')
    """
    if not isinstance(key, str) or not key:
        raise ArgumentError("space", f"expected a key path such as pruners.name.argument, got {key!r}")
    parts: List[Union[str, int]] = []
    pos = 0
    for match in _KEY.finditer(key):
        gap = key[pos:match.start()]
        if gap not in ("", ".") or (gap == "." and not parts):
            break
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    if pos != len(key) or not parts or format_key(tuple(parts)) != key:
        raise ArgumentError(("space", key), "malformed key path (expected names joined by '.', [i] for a list entry)")
    return tuple(parts)


def halving_sizes(pool: int, finalists: int = 2) -> List[int]:
    """Candidates in every round: the pool, then ``floor(n/2) + 1`` of ``n`` until ``finalists`` remain.

    Example:
        >>> halving_sizes(26)          # Hyperpruning's shipped pool
        [26, 14, 8, 5, 3, 2]
    """
    sizes = [pool]
    while sizes[-1] > finalists:
        sizes.append(max(finalists, sizes[-1] // 2 + 1))
    return sizes


class SearchSpace:
    """The base schedule, the searched keys and the search's settings, all checked where they are read.

    Build it with :meth:`from_file` or :meth:`from_dict`; the settings are attributes of the same names as in
    the file (see the module docstring).

    Raises:
        ScheduleError: from the constructors, naming the space file, the line and the key: a space over no key, a
            key that is not in the base schedule, an empty choice list, ``low > high``, an unknown objective, a
            setting out of range.
    """

    def __init__(self, schedule: Mapping[str, Any], parameters: Sequence[Parameter], *, objective: str,
                 pool: int, pool_epochs: int, round_epochs: int, final_epochs: int, finalists: int, seed: int,
                 startup_trials: int, reference: Optional[Mapping[str, Any]] = None, file: Optional[str] = None,
                 lines: Optional[Mapping[KeyPath, int]] = None):
        self.schedule = copy.deepcopy(dict(schedule))
        self.parameters = list(parameters)
        self.objective = objective
        self.pool = pool
        self.pool_epochs = pool_epochs
        self.round_epochs = round_epochs
        self.final_epochs = final_epochs
        self.finalists = finalists
        self.seed = seed
        self.startup_trials = startup_trials
        self.reference = copy.deepcopy(dict(reference)) if reference is not None else dense_reference(schedule)
        self.file = file
        self._lines = lines if lines is not None else {}  # a LineMap walks its paths; it is never listed

    # --- reading -------------------------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike]) -> SearchSpace:
        """Read a space file (YAML, safe loader); a base schedule named by path is read relative to it."""
        data, lines = read_schedule(path)
        return cls.from_dict(data, file=os.fspath(path), lines=lines)

    @classmethod
    def from_dict(cls, data: Any, *, file: Optional[str] = None,
                  lines: Optional[Mapping[KeyPath, int]] = None) -> SearchSpace:
        """Build from data already loaded; see :meth:`from_file`."""
        lines = lines if lines is not None else {}

        def error(message: str, *path: Union[str, int]) -> ScheduleError:
            return _located(message, path, file, lines)

        if not isinstance(data, Mapping):
            raise error(f"expected a mapping with 'schedule' and 'space', got {type(data).__name__}")
        for key in data:
            if key not in SETTINGS:
                raise error(f"unknown setting (expected {', '.join(SETTINGS)})", str(key))
        if "schedule" not in data:
            raise error("missing 'schedule': the base schedule (a file or a mapping)")
        schedule = _schedule_from(data["schedule"], file, error, "schedule")
        reference = _schedule_from(data["reference"], file, error, "reference") if data.get("reference") else None
        settings = {**_DEFAULTS, **{k: v for k, v in data.items() if k in _DEFAULTS}}
        if settings["objective"] not in OBJECTIVES:
            raise error(f"unknown objective {settings['objective']!r} (expected one of {', '.join(OBJECTIVES)})",
                        "objective")
        minimum = {"pool": 1, "pool_epochs": 1, "round_epochs": 0, "final_epochs": 1, "finalists": 1, "seed": 0,
                   "startup_trials": 0}
        for key, low in minimum.items():
            try:
                settings[key] = integer(key, settings[key], minimum=low)
            except ArgumentError as exc:
                raise error(exc.message, key) from None
        space = data.get("space")
        if not isinstance(space, Mapping) or not space:
            raise error("the space names no key: give 'space' as a mapping of schedule keys to their values",
                        "space")
        parameters = [_parameter(str(key), values, schedule, error) for key, values in space.items()]
        return cls(schedule, parameters, reference=reference, file=file, lines=lines, **settings)

    # --- candidates ----------------------------------------------------------------------------------------

    @property
    def keys(self) -> List[str]:
        return [p.key for p in self.parameters]

    @property
    def grid_size(self) -> Optional[int]:
        """Distinct candidates when every parameter is discrete (``None`` for a continuous range)."""
        total = 1
        for p in self.parameters:
            if isinstance(p, Choice):
                total *= len(p.values)
            elif p.is_integer:
                total *= (p.high - p.low) // (p.step or 1) + 1
            elif p.step is not None:
                total *= int(round((p.high - p.low) / p.step)) + 1
            else:
                return None
        return total

    def candidate(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        """The base schedule with ``values`` (key → value) in place; keys not given keep the base's value.

        Raises:
            ArgumentError: a key that is not one of the space's.
        """
        out = copy.deepcopy(self.schedule)
        by_key = {p.key: p for p in self.parameters}
        for key, value in values.items():
            if key not in by_key:
                raise ArgumentError(key, f"not a key of the space (keys: {', '.join(by_key)})")
            _set(out, by_key[key].path, copy.deepcopy(value))
        return out

    def label(self, values: Mapping[str, Any]) -> str:
        """A canonical text for a candidate, the same for equal values (duplicates are merged on it)."""
        return json.dumps([values[p.key] for p in self.parameters], sort_keys=True, default=str)

    def short(self, values: Mapping[str, Any]) -> str:
        """The values as ``argument=value`` pairs, last key component only, for tables."""
        return ", ".join(f"{p.path[-1]}={values[p.key]}" for p in self.parameters)

    def validate(self, check: Optional[Callable[[Dict[str, Any]], None]]) -> None:
        """Check every value of every key before anything trains.

        Each choice (and each end of a range) is put alone into the base schedule and given to ``check``, which
        raises when the schedule's classes refuse it (a task's ``check``: build the model and the schedule).

        Raises:
            ScheduleError: naming the space file, the key's line and the key, with the value and the reason.
        """
        if check is None:
            return
        for p in self.parameters:
            for value in p.probes():
                try:
                    check(self.candidate({p.key: value}))
                except CompressError as exc:
                    raise self._error(f"value {value!r} is refused: {exc}", "space", p.key) from None
                except Exception as exc:  # a task's own check may raise anything
                    raise self._error(f"value {value!r} is refused: {type(exc).__name__}: {exc}",
                                      "space", p.key) from None

    def settings(self) -> Dict[str, Any]:
        """Everything that decides the search's results, as plain data (a study remembers it)."""
        params = []
        for p in self.parameters:
            if isinstance(p, Choice):
                params.append({"key": p.key, "choices": list(p.values)})
            else:
                params.append({"key": p.key, "low": p.low, "high": p.high, "step": p.step, "log": p.log})
        return json.loads(json.dumps({
            "schedule": self.schedule, "space": params, "objective": self.objective, "pool": self.pool,
            "pool_epochs": self.pool_epochs, "round_epochs": self.round_epochs, "final_epochs": self.final_epochs,
            "finalists": self.finalists, "seed": self.seed, "startup_trials": self.startup_trials,
            "reference": self.reference}, default=str))

    def round_epochs_list(self) -> List[int]:
        """Epochs of round 0, 1, ... for the largest pool the settings allow (the dense reference's budgets)."""
        stages = len(halving_sizes(self.pool, self.finalists))   # the pool and every halving round
        return [self.pool_epochs + r * self.round_epochs for r in range(stages)]

    def _error(self, message: str, *path: Union[str, int]) -> ScheduleError:
        return _located(message, path, self.file, self._lines)

    # --- Optuna ----------------------------------------------------------------------------------------------

    def suggest(self, trial) -> Dict[str, Any]:
        """Sample every key from an Optuna trial; choices that are not YAML scalars are sampled by index."""
        values: Dict[str, Any] = {}
        for p in self.parameters:
            if isinstance(p, Choice):
                labels = [_choice_label(v) for v in p.values]
                picked = trial.suggest_categorical(p.key, labels)
                values[p.key] = copy.deepcopy(p.values[labels.index(picked)])
            elif p.is_integer:
                values[p.key] = trial.suggest_int(p.key, p.low, p.high, step=p.step or 1, log=p.log)
            else:
                values[p.key] = p.snap(trial.suggest_float(p.key, p.low, p.high, step=p.step, log=p.log))
        return values


def dense_reference(schedule: Mapping[str, Any]) -> Dict[str, Any]:
    """The base schedule without its pruners and their policies: the dense network trained the same way.

    Example:
        >>> dense_reference({"pruners": {"p": {"class": "X"}}, "policies": [{"pruner": {"instance_name": "p"}},
        ...                  {"extension": {"instance_name": "e"}}], "extensions": {"e": {"class": "Y"}}})
        {'policies': [{'extension': {'instance_name': 'e'}}], 'extensions': {'e': {'class': 'Y'}}}
    """
    out = {k: copy.deepcopy(v) for k, v in schedule.items() if k != "pruners"}
    if isinstance(out.get("policies"), list):
        out["policies"] = [p for p in out["policies"] if not (isinstance(p, Mapping) and "pruner" in p)]
    return out


def _located(message: str, path: KeyPath, file: Optional[str], lines: Mapping[KeyPath, int]) -> ScheduleError:
    """A ScheduleError at ``path``, on the line of its closest ancestor that the file's line map knows."""
    line = next((lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in lines), None)
    return ScheduleError(message, file=file, line=line, key=format_key(tuple(path)) or None)


def _schedule_from(value: Any, file: Optional[str], error, key: str) -> Dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value:
        path = value if os.path.isabs(value) or file is None else os.path.join(os.path.dirname(file), value)
        data, _ = read_schedule(path)
        if not isinstance(data, Mapping):
            raise error(f"{path} holds no schedule (a mapping)", key)
        return dict(data)
    raise error(f"expected a schedule file or a mapping, got {value!r}", key)


def _parameter(key: str, spec: Any, schedule: Mapping[str, Any], error) -> Parameter:
    try:
        path = parse_key(key)
    except ArgumentError as exc:
        raise error(exc.message, "space", key) from None
    try:
        _get(schedule, path)
    except (KeyError, IndexError, TypeError):
        closest = difflib.get_close_matches(key, [format_key(p) for p in _leaves(schedule)], n=3)
        hint = f"; closest keys: {', '.join(closest)}" if closest else ""
        raise error(f"not a key of the base schedule (a searched key must be in it, with its default value "
                    f"if need be){hint}", "space", key) from None
    if isinstance(spec, list):
        if not spec:
            raise error("empty choice list", "space", key)
        labels = [json.dumps(v, sort_keys=True, default=str) for v in spec]
        if len(set(labels)) != len(labels):
            raise error(f"repeated choice in {spec!r}", "space", key)
        return Choice(key, path, tuple(spec))
    if not isinstance(spec, Mapping):
        raise error(f"expected a list of choices or {{low, high, step, log}}, got {spec!r}", "space", key)
    for name in spec:
        if name not in _RANGE_KEYS:
            raise error(f"unknown range key {name!r} (expected {', '.join(_RANGE_KEYS)})", "space", key, str(name))
    if "low" not in spec or "high" not in spec:
        raise error("a range needs low and high", "space", key)
    bounds = {}
    for name in ("low", "high", "step"):
        value = spec.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise error(f"expected a finite number, got {value!r}", "space", key, name)
        bounds[name] = value
    low, high, step = bounds["low"], bounds["high"], bounds.get("step")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise error(f"expected true or false, got {log!r}", "space", key, "log")
    if low > high:
        raise error(f"low ({low}) > high ({high})", "space", key)
    if step is not None:
        if step <= 0:
            raise error(f"step must be positive, got {step}", "space", key, "step")
        if log:
            raise error("a log range takes no step", "space", key, "step")
        count = (high - low) / step
        if abs(count - round(count)) > 1e-9 * max(1.0, abs(count)):
            raise error(f"high - low ({high - low:g}) is not a multiple of step ({step:g})", "space", key, "step")
    if log and low <= 0:
        raise error(f"a log range needs low > 0, got {low}", "space", key, "low")
    return Range(key, path, low, high, step, log)


def _choice_label(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _get(data: Any, path: KeyPath) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(data, list):
                raise TypeError(part)
            data = data[part]
        else:
            if not isinstance(data, Mapping):
                raise TypeError(part)
            data = data[part]
    return data


def _set(data: Any, path: KeyPath, value: Any) -> None:
    _get(data, path[:-1])[path[-1]] = value


def _leaves(data: Any, path: KeyPath = ()) -> List[KeyPath]:
    if isinstance(data, Mapping):
        return [leaf for k, v in data.items() for leaf in _leaves(v, path + (str(k),))]
    if isinstance(data, list):
        return [leaf for i, v in enumerate(data) for leaf in _leaves(v, path + (i,))]
    return [path]
