"""Calibration statistics of activations, and their Distiller-style YAML files.

:func:`collect_activation_stats` runs a model over user-supplied calibration data with forward hooks on its
leaf modules and records, for every input position and the output of each module: ``min``, ``max``,
``avg_min``, ``avg_max`` (the mean over *samples* of each sample's minimum/maximum), ``mean``, ``std``, ``b``
(the Laplace scale, mean of ``|x - mean|``; needs a second pass), ``shape`` (of the last call) and
``samples``; for the modules named in ``channels``, also ``channels``: ``min``, ``max``, ``mean``, ``std`` and
``b`` of every channel (position along the last dimension) as lists, for per-channel activation scales. A sample
is one vector along the last dimension (one time step of one sequence for the gates of a modular LSTM, one token
for a decoder), which is what Distiller's per-timestep LSTM statistics counted.

**Every sample counts once**, whatever batch it came in: ``avg_min`` is ``Σ sample minima / number of
samples`` (Distiller's collector weighted them otherwise; see ``docs/distiller-compat.md``). ``mean`` and ``std``
are exact over all elements, combined per batch with Chan's parallel formula in float64 (one pass); only ``b``
needs the global mean first, hence the optional second pass.

Files have Distiller's layout (``acts_quantization_stats.yaml``), so Distiller's files load and ours load in
Distiller::

    rnn.cells.0.fc_gate_x:
      inputs:
        0: {min: ..., max: ..., avg_min: ..., avg_max: ..., mean: ..., std: ..., shape: (10, 1500)}
      output: {min: ..., max: ..., ...}

(``channels`` is our addition; Distiller reads the other keys and ignores it.)
"""
from __future__ import annotations

import logging
import math
import os
import re
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch
import yaml
from torch import nn

from compress.distributed import all_gather_object, is_distributed
from compress.errors import ArgumentError, CheckpointError, describe
from compress.io.files import atomic_write
from compress.io.yamldoc import YAMLDocumentError, parse_yaml
from compress.progress import ProgressLog

log = logging.getLogger(__name__)

__all__ = ["ActivationStatsCollector", "collect_activation_stats", "run_calibration", "save_stats", "load_stats",
           "validate_stats", "Stats"]

Stats = Dict[str, Dict[str, Any]]
Calibration = Union[Callable[[nn.Module], Any], Iterable[Any]]

_REQUIRED = ("min", "max")
_NUMERIC = ("min", "max", "avg_min", "avg_max", "mean", "std", "b")
_CHANNEL_KEYS = ("min", "max", "mean", "std", "b")

# a calibration iterable whose items do not fit the model's forward is most often Distiller's dummy_input passed
# where compress expects calibration data (prepare_model's first argument)
_CALL_FAILED = ("the model could not be called on calibration item {index} ({exc}); calibration is a callable "
                "run(model) or an iterable of inputs (a tuple is unpacked into model(*item)); Distiller's "
                "dummy_input goes to prepare_model(dummy_input=...), or use "
                "compress.distiller.quantization.PostTrainLinearQuantizer")

_COMPACT_EVERY = 512  # merge per-call partials this often, bounding memory over long calibrations


class _ChannelStats:
    """Running per-channel statistics (channel = position along the last dimension), kept on the device."""

    __slots__ = ("min", "max", "sum", "sumsq", "rows", "absdev")

    def __init__(self, rows: torch.Tensor):
        self.min, self.max = torch.aminmax(rows, dim=0)
        r = rows.to(torch.float64)
        self.sum, self.sumsq = r.sum(0), r.square().sum(0)
        self.rows = rows.shape[0]
        self.absdev: Optional[torch.Tensor] = None

    def add(self, rows: torch.Tensor, where: str) -> None:
        if rows.shape[1] != self.min.numel():
            raise ValueError(f"{where}: per-channel statistics need the same last dimension in every call "
                             f"({self.min.numel()} before, {rows.shape[1]} now)")
        mn, mx = torch.aminmax(rows, dim=0)
        torch.minimum(self.min, mn, out=self.min)
        torch.maximum(self.max, mx, out=self.max)
        r = rows.to(torch.float64)
        self.sum += r.sum(0)
        self.sumsq += r.square().sum(0)
        self.rows += rows.shape[0]

    def mean(self) -> torch.Tensor:
        return self.sum / self.rows

    def payload(self, first_pass: bool) -> Any:
        """This rank's part of a merge over ranks, on the CPU."""
        if first_pass:
            return (self.min.cpu(), self.max.cpu(), self.sum.cpu(), self.sumsq.cpu(), self.rows)
        return None if self.absdev is None else self.absdev.cpu()

    def absorb(self, payloads: List[Any], first_pass: bool) -> None:
        """Replace this rank's statistics by the union of every rank's ``payloads``."""
        dev = self.min.device
        if first_pass:
            self.min = torch.stack([p[0] for p in payloads]).amin(0).to(dev)
            self.max = torch.stack([p[1] for p in payloads]).amax(0).to(dev)
            self.sum = torch.stack([p[2] for p in payloads]).sum(0).to(dev)
            self.sumsq = torch.stack([p[3] for p in payloads]).sum(0).to(dev)
            self.rows = sum(p[4] for p in payloads)
        elif any(p is not None for p in payloads):
            self.absdev = torch.stack([p for p in payloads if p is not None]).sum(0).to(dev)

    def add_absdev(self, rows: torch.Tensor) -> None:
        dev = (rows.to(torch.float64) - self.mean()).abs().sum(0)
        self.absdev = dev if self.absdev is None else self.absdev + dev

    def summary(self, with_b: bool) -> Dict[str, List[float]]:
        mean = self.mean()
        var = (self.sumsq / self.rows - mean.square()).clamp_min(0.0)
        out = {"min": self.min.double().cpu().tolist(), "max": self.max.double().cpu().tolist(),
               "mean": mean.cpu().tolist(), "std": var.sqrt().cpu().tolist()}
        if with_b and self.absdev is not None:
            out["b"] = (self.absdev / self.rows).cpu().tolist()
        return out


class _Slot:
    """Per-call partial statistics of one module input or output, reduced once at the end.

    Each call appends one small device tensor (no host synchronisation in the hot path):
    ``[min, max, Σ sample minima, Σ sample maxima, mean, variance]`` plus its element and sample counts.
    """

    __slots__ = ("parts", "counts", "absdev", "mean", "shape", "per_channel", "channels", "where")

    def __init__(self, per_channel: bool = False, where: str = "tensor"):
        self.parts: List[torch.Tensor] = []
        self.counts: List[Tuple[int, int]] = []
        self.absdev: List[torch.Tensor] = []
        self.mean: Optional[torch.Tensor] = None
        self.shape: Sequence[int] = ()
        self.per_channel = per_channel
        self.channels: Optional[_ChannelStats] = None
        self.where = where

    @staticmethod
    def _rows(x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]) if x.dim() >= 2 else x.reshape(-1, 1)
        return rows if rows.is_floating_point() else rows.to(torch.float64)

    def first_pass(self, x: torch.Tensor) -> None:
        x = x.detach()
        if x.numel() == 0:
            return
        rows = self._rows(x)
        if self.per_channel:
            if self.channels is None:
                self.channels = _ChannelStats(rows)
            else:
                self.channels.add(rows, self.where)
        smin, smax = torch.aminmax(rows, dim=1)
        var, mean = torch.var_mean(rows.to(torch.float64), correction=0)
        self.parts.append(torch.stack([smin.min().to(torch.float64), smax.max().to(torch.float64),
                                       smin.sum(dtype=torch.float64), smax.sum(dtype=torch.float64), mean, var]))
        self.counts.append((x.numel(), rows.shape[0]))
        self.shape = tuple(x.shape)
        if len(self.parts) >= _COMPACT_EVERY:
            self.parts, self.counts = [self._reduce()], [(sum(c[0] for c in self.counts),
                                                          sum(c[1] for c in self.counts))]

    def second_pass(self, x: torch.Tensor) -> None:
        if not self.parts or x.numel() == 0:
            return
        if self.mean is None:
            self.mean = self._reduce()[4]
        self.absdev.append((x.detach().to(torch.float64) - self.mean).abs().sum())
        if self.channels is not None:
            self.channels.add_absdev(self._rows(x.detach()))
        if len(self.absdev) >= _COMPACT_EVERY:
            self.absdev = [torch.stack(self.absdev).sum()]

    def _reduce(self) -> torch.Tensor:
        """All parts merged into one: ``[min, max, Σ sample minima, Σ sample maxima, mean, variance]``."""
        p = torch.stack(self.parts)
        n = torch.tensor([c[0] for c in self.counts], dtype=torch.float64, device=p.device)
        total = n.sum()
        mean = (p[:, 4] * n).sum() / total
        # Chan et al.: the variance of a union is the mean within-part variance plus the variance of part means
        var = ((p[:, 5] + (p[:, 4] - mean).square()) * n).sum() / total
        return torch.stack([p[:, 0].min(), p[:, 1].max(), p[:, 2].sum(), p[:, 3].sum(), mean, var])

    def payload(self, first_pass: bool) -> Any:
        """This rank's part of a merge over ranks (reduced, on the CPU)."""
        channels = self.channels.payload(first_pass) if self.channels is not None else None
        if first_pass:
            counts = (sum(c[0] for c in self.counts), sum(c[1] for c in self.counts))
            return (self._reduce().cpu() if self.parts else None, counts, tuple(self.shape), channels)
        return (torch.stack(self.absdev).sum().cpu() if self.absdev else None, channels)

    def absorb(self, payloads: List[Any], first_pass: bool) -> None:
        """Replace this rank's statistics by the union of every rank's ``payloads`` (Chan's merge of means and
        variances, as within one rank)."""
        device = self.parts[0].device if self.parts else torch.device("cpu")
        if first_pass:
            present = [p for p in payloads if p[0] is not None]
            if present:
                self.parts = [p[0].to(device) for p in present]
                self.counts = [p[1] for p in present]
                self.parts, self.counts = [self._reduce()], [(sum(c[0] for c in self.counts),
                                                              sum(c[1] for c in self.counts))]
                self.shape = self.shape or present[0][2]
        else:
            present = [p[0] for p in payloads if p[0] is not None]
            if present:
                self.absdev = [torch.stack(present).sum().to(device)]
        channel_parts = [p[-1] for p in payloads if p[-1] is not None]
        if self.channels is not None and channel_parts:
            self.channels.absorb(channel_parts, first_pass)

    def summary(self, with_b: bool) -> Dict[str, Any]:
        mn, mx, sum_min, sum_max, mean, var = self._reduce().cpu().tolist()
        total = sum(c[0] for c in self.counts)
        samples = sum(c[1] for c in self.counts)
        out = {"min": mn, "max": mx, "avg_min": sum_min / samples, "avg_max": sum_max / samples, "mean": mean,
               "std": max(var, 0.0) ** 0.5}
        if with_b and self.absdev:
            out["b"] = float(torch.stack(self.absdev).sum()) / total
        out["shape"] = "(" + ", ".join(str(s) for s in self.shape) + ("," if len(self.shape) == 1 else "") + ")"
        out["samples"] = int(samples)
        if self.channels is not None:
            out["channels"] = self.channels.summary(with_b)
        return out


class ActivationStatsCollector:
    """Forward hooks that accumulate activation statistics of named modules (see the module docstring).

    Use as a context manager around calibration runs, or call :meth:`start`/:meth:`stop`; :meth:`second_pass`
    switches to accumulating ``b`` around the means found so far.

    Args:
        model: the model.
        modules: names of the modules to observe; default every leaf module.
        channels: names of observed modules whose inputs and output also get per-channel statistics.

    Raises:
        KeyError: a name in ``modules`` that the model does not have, or in ``channels`` that is not observed.

    Example:
        >>> relu = nn.Sequential(nn.ReLU())
        >>> with ActivationStatsCollector(relu) as collector:
        ...     _ = relu(torch.tensor([[-1.0, 2.0], [3.0, -4.0]]))
        ...     _ = relu(torch.tensor([[0.5, 1.0]]))
        >>> out = collector.stats()["0"]["output"]
        >>> out["min"], out["max"], out["avg_max"], out["samples"]      # avg_max: (2 + 3 + 1) / 3 samples
        (0.0, 3.0, 2.0, 3)
    """

    def __init__(self, model: nn.Module, modules: Optional[Iterable[str]] = None,
                 channels: Iterable[str] = ()):
        named = dict(model.named_modules())
        if modules is None:
            modules = [n for n, m in named.items() if n and not any(True for _ in m.children())]
        modules = list(modules)
        missing = [n for n in modules if n not in named]
        if missing:
            raise KeyError(f"no module named {missing[0]!r} in the model")
        self.channels = set(channels)
        unobserved = sorted(self.channels - set(modules))
        if unobserved:
            raise KeyError(f"per-channel statistics asked for {unobserved[0]!r}, which is not observed")
        self.model = model
        self.names: List[str] = modules
        self._modules = {n: named[n] for n in modules}
        self._slots: Dict[str, Dict[Any, _Slot]] = {n: {} for n in modules}
        self._handles: List[Any] = []
        self._pass = 1
        self._merged_pass = 0  # the last pass whose statistics were combined over ranks

    def _hook(self, name: str):
        slots = self._slots[name]
        per_channel = name in self.channels

        def hook(module, inputs, output):
            first = self._pass == 1
            for i, x in enumerate(inputs):
                if torch.is_tensor(x):
                    slot = slots.get(i) or slots.setdefault(i, _Slot(per_channel, f"module {name} input {i}"))
                    slot.first_pass(x) if first else slot.second_pass(x)
            if torch.is_tensor(output):
                slot = slots.get("output") or slots.setdefault("output", _Slot(per_channel, f"module {name} output"))
                slot.first_pass(output) if first else slot.second_pass(output)

        return hook

    def start(self) -> ActivationStatsCollector:
        """Attach the hooks."""
        if not self._handles:
            self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self._modules.items()]
        return self

    def stop(self) -> None:
        """Remove the hooks (statistics are kept)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def second_pass(self) -> None:
        """From now on accumulate ``b`` (mean absolute deviation from each tensor's overall mean).

        Under ``torch.distributed`` (every rank calls it) the first pass is first combined over the ranks, so
        the deviations are taken from the mean of all ranks' data.
        """
        self._merge_ranks()
        self._pass = 2

    def _merge_ranks(self) -> None:
        # Each rank calibrates on its own data shard; the statistics are those of the union, the same on all.
        # One collective for the whole collector, so a module that one rank never called cannot desynchronise it.
        if not is_distributed() or self._merged_pass == self._pass:
            return
        first = self._pass == 1
        mine = {(name, key): slot.payload(first) for name in self.names for key, slot in self._slots[name].items()}
        everyone = all_gather_object(mine)
        for name, key in sorted(set().union(*everyone), key=str):
            slots = self._slots[name]
            if key not in slots:  # this rank never saw the module: it still reports the union
                slots[key] = _Slot(name in self.channels, f"module {name} {'output' if key == 'output' else key}")
            payloads = [theirs[(name, key)] for theirs in everyone if (name, key) in theirs]
            slots[key].absorb(payloads, first)
        self._merged_pass = self._pass

    def __enter__(self) -> ActivationStatsCollector:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stats(self) -> Stats:
        """The statistics so far, as plain Python data in Distiller's layout (under ``torch.distributed``: of
        every rank's calibration data together; every rank must call it)."""
        self._merge_ranks()
        out: Stats = {}
        with_b = self._pass == 2
        for name in self.names:
            slots = self._slots[name]
            if not slots:
                continue
            entry: Dict[str, Any] = {}
            inputs = {i: s.summary(with_b) for i, s in sorted((k, v) for k, v in slots.items() if k != "output")
                      if s.parts}
            if inputs:
                entry["inputs"] = inputs
            if "output" in slots and slots["output"].parts:
                entry["output"] = slots["output"].summary(with_b)
            out[name] = entry
        return out


def run_calibration(model: nn.Module, calibration: Calibration, what: str = "calibration") -> None:
    """Run ``model`` over calibration data, in eval mode and without gradients.

    Args:
        model: the model.
        calibration: a callable ``calibration(model)`` that runs the model itself (the way to carry a recurrent
            state across batches), or an iterable of inputs: a tuple/list is unpacked into ``model(*batch)``,
            a mapping into ``model(**batch)``, anything else is passed as ``model(batch)``.
        what: the name of the work in its progress lines (INFO, at most one every 30 s: forward calls so far
            and, for an iterable with a length, the share done).

    Raises:
        ArgumentError: (key ``calibration``) the model cannot be called on an item of an iterable (a
            ``TypeError``, e.g. Distiller's ``dummy_input`` passed as calibration data).

    Example:
        >>> model = nn.Linear(2, 1).train()
        >>> seen = []
        >>> run_calibration(model, lambda m: seen.append((m.training, torch.is_grad_enabled())))
        >>> seen, model.training                         # eval mode and no gradients inside; restored after
        ([(False, False)], True)
    """
    was_training = model.training
    model.eval()
    total = len(calibration) if not callable(calibration) and hasattr(calibration, "__len__") else None
    progress = ProgressLog(log, what, total)
    calls = [0]

    def count(module, inputs, output):
        calls[0] += 1
        progress.update(calls[0], "forward calls")

    handle = model.register_forward_hook(count)
    try:
        with torch.no_grad():
            if callable(calibration):
                calibration(model)
            else:
                for index, batch in enumerate(calibration):
                    try:
                        if isinstance(batch, (tuple, list)):
                            model(*batch)
                        elif isinstance(batch, Mapping):
                            model(**batch)
                        else:
                            model(batch)
                    except TypeError as exc:
                        raise ArgumentError("calibration", _CALL_FAILED.format(index=index, exc=exc)) from exc
    finally:
        handle.remove()
        model.train(was_training)


def collect_activation_stats(model: nn.Module, calibration: Calibration, modules: Optional[Iterable[str]] = None,
                             laplace: bool = True, channels: Iterable[str] = ()) -> Stats:
    """Statistics of every observed module's inputs and output over the calibration data.

    Args:
        model: the model (convert recurrent layers with :func:`compress.modules.convert_to_modular` first to
            see inside them).
        calibration: see :func:`run_calibration`; it is run twice when ``laplace`` is set.
        modules: module names to observe; default every leaf.
        laplace: run the second pass that computes ``b`` (needed by LAPLACE clipping).
        channels: modules whose tensors also get per-channel statistics (the ``channels`` entry).

    Returns:
        ``{module name: {'inputs': {0: {...}, ...}, 'output': {...}}}``.

    Raises:
        KeyError: as :class:`ActivationStatsCollector`.

    Example:
        >>> relu = nn.Sequential(nn.ReLU())
        >>> batches = [torch.tensor([[-1.0, 2.0], [3.0, -4.0]]), torch.tensor([[0.5, 1.0]])]
        >>> x = collect_activation_stats(relu, batches)["0"]["inputs"][0]
        >>> x["min"], x["avg_min"], x["mean"], round(x["b"], 4)   # avg_min: (-1 - 4 + 0.5) / 3 samples
        (-4.0, -1.5, 0.25, 1.8333)
    """
    collector = ActivationStatsCollector(model, modules, channels)
    with collector:
        run_calibration(model, calibration, "calibration" + (" pass 1/2" if laplace else ""))
        if laplace:
            collector.second_pass()
            run_calibration(model, calibration, "calibration pass 2/2")
    return collector.stats()


_SHAPE = re.compile(r"^\(\s*(\d+\s*(,\s*\d+\s*)*,?)?\s*\)$")


def _finite(value: Union[int, float]) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float's range
        return False


def _check_entry(entry: Any, where: str) -> Dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a mapping of statistics, got {type(entry).__name__}")
    out = dict(entry)
    for key in _REQUIRED:
        if key not in out:
            raise ValueError(f"{where}: missing {key!r}")
    for key in _NUMERIC:
        if key in out and out[key] is not None:
            if isinstance(out[key], bool) or not isinstance(out[key], (int, float)):
                raise ValueError(f"{where}.{key}: expected a number, got {describe(out[key])}")
            if not _finite(out[key]):
                raise ValueError(f"{where}.{key}: expected a finite number, got {describe(out[key])}")
            out[key] = float(out[key])
    out.setdefault("avg_min", out["min"])
    out.setdefault("avg_max", out["max"])
    if out["min"] > out["max"]:
        raise ValueError(f"{where}: min {out['min']} exceeds max {out['max']}")
    if out.get("channels") is not None:
        out["channels"] = _check_channels(out["channels"], f"{where}.channels")
    return out


def _check_channels(entry: Any, where: str) -> Dict[str, List[float]]:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a mapping of per-channel lists")
    unknown = sorted(set(map(str, entry)) - set(_CHANNEL_KEYS))
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key (expected {', '.join(_CHANNEL_KEYS)})")
    out: Dict[str, List[float]] = {}
    for key in _CHANNEL_KEYS:
        if key not in entry:
            if key in _REQUIRED:
                raise ValueError(f"{where}: missing {key!r}")
            continue
        values = entry[key]
        if not isinstance(values, (list, tuple)) or not values or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v) for v in values):
            raise ValueError(f"{where}.{key}: expected a non-empty list of finite numbers")
        out[key] = [float(v) for v in values]
    lengths = {k: len(v) for k, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{where}: lists of different lengths ({lengths})")
    bad = next((i for i, (lo, hi) in enumerate(zip(out["min"], out["max"])) if lo > hi), None)
    if bad is not None:
        raise ValueError(f"{where}: channel {bad}: min {out['min'][bad]} exceeds max {out['max'][bad]}")
    return out


def validate_stats(data: Any, source: str = "statistics") -> Stats:
    """Check statistics loaded from YAML or given as a dict; returns a normalised copy.

    Args:
        data: ``{module name: {'inputs': {position: entry}, 'output': entry}}``; an entry needs ``min`` and
            ``max`` (``avg_min``/``avg_max`` default to them).
        source: where the data came from, for messages.

    Returns:
        A copy with numbers as floats, input positions as ints and the defaults filled in.

    Raises:
        ValueError: naming the module and key that is malformed.

    Example:
        >>> validate_stats({"fc": {"output": {"min": -1, "max": 2}}})
        {'fc': {'output': {'min': -1.0, 'max': 2.0, 'avg_min': -1.0, 'avg_max': 2.0}}}
        >>> validate_stats({"fc": {"output": {"min": 1.0, "max": 0.0}}})
        Traceback (most recent call last):
            ...
        ValueError: statistics: fc.output: min 1.0 exceeds max 0.0
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: expected a mapping of module names to statistics, got {type(data).__name__}")
    out: Stats = {}
    for name, entry in data.items():
        where = f"{source}: {name}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: expected a mapping with 'inputs' and/or 'output'")
        unknown = sorted(set(map(str, entry)) - {"inputs", "output"})
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown key (expected inputs and output)")
        new: Dict[str, Any] = {}
        if entry.get("inputs") is not None:
            if not isinstance(entry["inputs"], Mapping):
                raise ValueError(f"{where}.inputs: expected a mapping of input positions")
            new["inputs"] = {}
            for i, e in entry["inputs"].items():
                try:
                    index = int(i)
                except (TypeError, ValueError):
                    raise ValueError(f"{where}.inputs.{i}: input positions are integers") from None
                new["inputs"][index] = _check_entry(e, f"{where}.inputs.{i}")
        if entry.get("output") is not None:
            new["output"] = _check_entry(entry["output"], f"{where}.output")
        out[str(name)] = new
    return out


def save_stats(stats: Mapping[str, Any], path: Union[str, os.PathLike]) -> None:
    """Write statistics as a Distiller-style YAML file (atomically: a failed write leaves no partial file).

    Args:
        stats: statistics as :func:`collect_activation_stats` returns them.
        path: the file to write.

    Example:
        >>> import tempfile
        >>> stats = {"fc": {"output": {"min": -1.0, "max": 2.0, "avg_min": -0.5, "avg_max": 1.5}}}
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "acts_quantization_stats.yaml")
        ...     save_stats(stats, path)
        ...     print(open(path).read().strip())
        fc:
          output:
            min: -1.0
            max: 2.0
            avg_min: -0.5
            avg_max: 1.5
    """
    def plain(entry):
        return {k: (float(v) if isinstance(v, float) else
                    {ck: [float(x) for x in cv] for ck, cv in v.items()} if k == "channels" else v)
                for k, v in entry.items()}

    data = {}
    for name, entry in stats.items():
        e: Dict[str, Any] = {}
        if "inputs" in entry:
            e["inputs"] = {int(i): plain(v) for i, v in entry["inputs"].items()}
        if "output" in entry:
            e["output"] = plain(entry["output"])
        data[name] = e
    with atomic_write(path, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False, default_flow_style=False)


def load_stats(path: Union[str, os.PathLike]) -> Stats:
    """Read a statistics YAML file (ours or Distiller's), safely (:mod:`compress.io.yamldoc`).

    Args:
        path: the YAML file.

    Returns:
        The statistics, checked by :func:`validate_stats`.

    Raises:
        CheckpointError: the file cannot be read, is not YAML the safe reader accepts, or is malformed; the
            message names the file and the line, or the module and key (a ``ValueError``, as before).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "stats.yaml")
        ...     _ = open(path, "w").write("fc:\\n  inputs:\\n    0: {min: -3, max: 3}\\n")
        ...     load_stats(path)["fc"]["inputs"][0]["avg_max"]
        3.0
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read statistics file {path}: {exc}") from None
    try:
        data, _ = parse_yaml(text)
    except YAMLDocumentError as exc:
        raise CheckpointError(f"{path}:{exc.line or ''}: invalid YAML: {exc.message}") from None
    try:
        return validate_stats(data, path)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
