"""Post-training linear quantization of recurrent models (Distiller's ``PostTrainLinearQuantizer``).

From a schedule (PTQ needs no policy; build the components and prepare by hand)::

    quantizers:
      ptq:
        class: PostTrainLinearQuantizer
        mode: {activations: ASYMMETRIC_SIGNED, weights: ASYMMETRIC_SIGNED}
        per_channel_wts: true
        clip_acts: AVG
        overrides:
          encoder: {fpq_module: 16}
          decoder: {fpq_module: 16}
          .*eltwise.*: {fpq_module: 16}

    quantizer = compress.components_from_file(model, "ptq.yaml")["quantizers"]["ptq"]
    quantizer.prepare_model(calibration=lambda m: evaluate(m, val_data))   # or model_activation_stats: FILE
    evaluate(quantizer.model, val_data)        # the simulated INT8/FP16 model
    real = quantizer.export()                  # a real INT8/FP16 model that runs faster on CPU

or from code: ``PostTrainLinearQuantizer(model, mode="asym_s", per_channel_wts=True, clip_acts="AVG")``.

``prepare_model`` swaps every ``nn.LSTM``/``nn.GRU`` for its modular twin (so the gates can be quantized),
collects calibration statistics if given data, and replaces each leaf module by a simulating wrapper
(:mod:`compress.quantization.wrappers`). Without calibration data activation ranges come from
``model_activation_stats``, or are computed per tensor (dynamic) with a warning. Being post-training, it is
refused by a training policy (:class:`~compress.scheduling.policies.QuantizationPolicy`).
"""
from __future__ import annotations

import copy
import logging
import numbers
import re
import warnings
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from compress import options
from compress.errors import ArgumentError, key_path
from compress.modules import (
    EltwiseAdd,
    EltwiseMult,
    EltwiseSub,
    convert_from_modular,
    convert_to_modular,
)
from compress.modules.rnn import converted_module_types
from compress.quantization.linear import (
    ClipMode,
    ModuleQuantMode,
    parse_clip_mode,
    parse_mode,
)
from compress.quantization.stats import (
    Calibration,
    Stats,
    collect_activation_stats,
    load_stats,
    validate_stats,
)
from compress.quantization.wrappers import (
    ActQuantizer,
    FPWrapper,
    QuantActivation,
    QuantEltwise,
    QuantEmbedding,
    QuantLinear,
)
from compress.registry import register_quantizer

log = logging.getLogger(__name__)

__all__ = ["PostTrainLinearQuantizer", "ModuleQuantConfig"]

# Modules left in float whatever the configuration (they do no arithmetic worth quantizing in eval mode).
_PASS_THROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity,
                 nn.RNNBase, nn.RNNCellBase)  # recurrent layers left unconverted (convert_rnns=False) stay float
_ELTWISE = (EltwiseAdd, EltwiseSub, EltwiseMult)

OVERRIDE_KEYS = ("bits_activations", "bits_weights", "bits_parameters", "bits_bias", "bits_accum", "mode",
                 "clip_acts", "clip_n_stds", "clip_half_range", "per_channel_wts", "per_channel_acts", "fp16",
                 "fpq_module", "also_clip_weights")
# Distiller keys with no meaning here, and why (a clear error instead of a silent no-op).
_UNSUPPORTED = {
    "input_overrides": "every input is quantized with the module's own input statistics",
    "make_identity": "remove the module from the model instead",
    "fake": "every non-arithmetic leaf is already simulated by quantizing its output",
    "quantize_inputs": "inputs of arithmetic modules are always quantized",
    "scale_approx_mult_bits": "fixed-point approximation of rescaling factors is not simulated",
    "inputs_quant_auto_fallback": "inputs always use the module's own input statistics (auto fallback)",
}
# Net-aware clipping (Park et al. 2018, section 3.2.2; Distiller's stats fusion): a tensor consumed only by these
# activations is clipped to where they are not yet saturated.
_SATURATION = {nn.Sigmoid: (-6.0, 6.0), nn.Tanh: (-4.0, 4.0)}


@dataclass(frozen=True)
class ModuleQuantConfig:
    """The quantization settings resolved for one module (globals, then its first matching override).

    ``None`` bits mean "keep in float"; ``fpq_module`` 16/64 runs the module in FP16/FP64 instead. The fields
    are the :class:`PostTrainLinearQuantizer` arguments of the same names; ``override`` is the pattern that
    matched, if any.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
        >>> quantizer = PostTrainLinearQuantizer(model, overrides={"1": {"fpq_module": 16}})
        >>> first, second = quantizer.config_for("0"), quantizer.config_for("1")
        >>> first.bits_weights, first.mode.weights.name, first.is_float
        (8, 'SYMMETRIC', False)
        >>> second.fpq_module, second.override, second.is_float
        (16, '1', True)
    """

    bits_activations: Optional[int]
    bits_weights: Optional[int]
    bits_bias: Optional[int]
    bits_accum: int
    mode: ModuleQuantMode
    clip_acts: ClipMode
    clip_n_stds: Optional[float]
    clip_half_range: bool
    per_channel_wts: bool
    fpq_module: Optional[int]
    also_clip_weights: bool
    per_channel_acts: bool = False
    override: Optional[str] = None  # the override pattern that matched, if any

    @property
    def is_float(self) -> bool:
        return self.fpq_module is not None or (self.bits_activations is None and self.bits_weights is None)


def _bits(value: Any, key: str, allow_none: bool = True, maximum: int = 32) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentError(key, f"expected an integer number of bits{' or null' if allow_none else ''}, got {value!r}")
    if not 2 <= int(value) <= maximum:
        raise ArgumentError(key, f"must be between 2 and {maximum} bits, got {value}")
    return int(value)


def _flag(value: Any, key: str) -> bool:
    return options.boolean(key, value)


def _n_stds(value: Any, key: str) -> Optional[float]:
    if value is None:
        return None
    return options.number(key, value, minimum=0.0, min_open=True)


def _fpq(value: Any, key: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or value not in (16, 32, 64):
        raise ArgumentError(key, f"expected 16, 32, 64 or null, got {value!r}")
    return int(value)


def _strip_parallel_prefix(name: str) -> str:
    # DataParallel/DDP wrap the model as ``module``; strip it only as a *prefix*, so names like "rnn.module.x"
    # keep their inner "module." (docs/distiller-compat.md).
    return name[len("module."):] if name.startswith("module.") else name


def _per_channel_weighted(name: str) -> str:
    return (f"matches {name}, a module with weights: per-channel activation scales are for modules without weights "
            f"(a matrix product cannot take one scale per input feature); narrow the pattern, e.g. to '.*eltwise.*'")


def _leaf_names(names: List[str]) -> List[str]:
    parents = set()
    for n in names:
        parts = n.split(".")
        for k in range(1, len(parts)):
            parents.add(".".join(parts[:k]))
    parents.add("")
    return [n for n in names if n not in parents]


@register_quantizer
class PostTrainLinearQuantizer:
    """Post-training quantization, simulated module by module, with Distiller's arguments.

    It is a post-training quantizer (``training_aware = False``): a schedule's ``quantizers`` policy cannot run
    it; build it with :func:`~compress.scheduling.components_from_file` (or directly) after training.

    Args:
        model: the float model (``nn.LSTM``/``nn.GRU`` inside are converted to modular layers at prepare time).
        bits_activations: bits of activations (inputs and outputs of modules); ``None`` keeps them in float.
        bits_parameters: bits of weights (``bits_weights`` is a synonym); ``None`` keeps them in float.
        bits_accum: bits of the accumulator of matrix products, on whose grid biases are quantized.
        overrides: ``{module-name regex: {key: value}}``; the first pattern that matches the whole name wins
            (an exact name wins over any regex), and keys it does not set fall back to the global values.
            Keys: ``bits_activations``, ``bits_weights``, ``bits_bias``, ``bits_accum``, ``mode``, ``clip_acts``,
            ``clip_n_stds``, ``clip_half_range``, ``per_channel_wts``, ``fpq_module`` (16/32/64), ``fp16``
            (= ``fpq_module: 16``), ``also_clip_weights``. Every pattern must match a leaf module.
        mode: ``SYMMETRIC``, ``SYMMETRIC_RESTRICTED``, ``ASYMMETRIC_UNSIGNED``, ``ASYMMETRIC_SIGNED`` (or ``sym``,
            ``sym_restr``, ``asym_u``, ``asym_s``), or ``{activations: ..., weights: ...}``.
        clip_acts: ``NONE``/``MAX`` (min/max), ``AVG`` (averaged per-sample extremes), ``N_STD`` (mean ±
            ``clip_n_stds`` std), ``GAUSS`` or ``LAPLACE`` (ACIQ).
        per_channel_wts: one weight scale per output channel (per row of an embedding).
        per_channel_acts: one activation scale per channel (position along the last dimension) for modules
            without weights (element-wise and activation modules), from per-channel calibration statistics.
            Meant as an override for an LSTM's cell state, whose units differ in range by two orders of
            magnitude: ``.*eltwise(add|mult)_cell.*: {per_channel_acts: true}``. Not for ``Linear``/``Embedding``
            modules: a matrix product cannot take one scale per input feature. (Not in Distiller.)
        model_activation_stats: calibration statistics: a Distiller-style YAML path or a dict. ``None`` and no
            ``calibration`` at :meth:`prepare_model` means dynamic ranges (computed per tensor).
        fp16: deprecated (as in Distiller): ``fpq_module=16``.
        clip_n_stds: for ``N_STD``.
        clip_half_range: treat activations as non-negative (e.g. after ReLU).
        scale_approx_mult_bits: not supported (must be ``None``).
        inputs_quant_auto_fallback: must be true (inputs always use the module's own input statistics).
        fpq_module: run *every* module not overridden otherwise in FP16 (16) or FP64 (64); 32 or ``None``: off.
        save_fp_weights: accepted for Distiller compatibility; float weights are always kept.
        also_clip_weights: choose weight ranges with ``clip_acts`` too (default: min/max).
        bits_weights: synonym of ``bits_parameters``.
        bits_bias: bits of the bias before it moves to the accumulator grid; ``None``: directly on it.
        net_aware: clip the statistics of tensors that feed only Sigmoid (to ±6) or Tanh (±4), as declared by
            the modular cells (the LSTM gates); Distiller's "net-aware quantization".
        convert_rnns: swap ``nn.LSTM``/``nn.GRU`` for modular layers at prepare time (otherwise their
            internals stay float, and only their surroundings are quantized).

    Raises:
        ArgumentError: any invalid argument, naming it (from a schedule: a ``ScheduleError`` with the key path).

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        >>> x = torch.randn(16, 4)
        >>> reference = model(x).detach()
        >>> quantizer = PostTrainLinearQuantizer(model, mode="asym_u", per_channel_wts=True)
        >>> _ = quantizer.prepare_model(calibration=[x])       # statistics over the calibration data
        >>> [type(m).__name__ for m in model]                  # each module simulated in 8 bits
        ['QuantLinear', 'QuantActivation', 'QuantLinear']
        >>> bool((model(x) - reference).abs().max() < 0.02)
        True
        >>> real = quantizer.export()                          # int8 weights, fast CPU kernels
        >>> type(real[0]).__name__, bool((real(x) - reference).abs().max() < 0.02)
        ('QuantizedLinear', True)
    """

    #: a post-training quantizer: refused by training policies (see :class:`QuantizationPolicy`)
    training_aware = False

    def __init__(self, model: nn.Module, bits_activations: Optional[int] = 8, bits_parameters: Optional[int] = 8,
                 bits_accum: int = 32, overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
                 mode: Any = "SYMMETRIC", clip_acts: Any = "NONE", per_channel_wts: bool = False,
                 model_activation_stats: Union[None, str, Mapping[str, Any]] = None, fp16: bool = False,
                 clip_n_stds: Optional[float] = None, clip_half_range: bool = False,
                 scale_approx_mult_bits: Optional[int] = None, inputs_quant_auto_fallback: bool = True,
                 fpq_module: Optional[int] = None, save_fp_weights: bool = False, also_clip_weights: bool = False,
                 bits_weights: Optional[int] = None, bits_bias: Optional[int] = None, net_aware: bool = True,
                 convert_rnns: bool = True, per_channel_acts: bool = False):
        if not isinstance(model, nn.Module):
            raise ArgumentError("model", f"expected an nn.Module, got {type(model).__name__}")
        if scale_approx_mult_bits is not None:
            raise ArgumentError("scale_approx_mult_bits", "not supported: " + _UNSUPPORTED["scale_approx_mult_bits"])
        if inputs_quant_auto_fallback is not True:
            raise ArgumentError("inputs_quant_auto_fallback",
                                "must be true: " + _UNSUPPORTED["inputs_quant_auto_fallback"])
        _flag(save_fp_weights, "save_fp_weights")
        if bits_weights is not None and bits_parameters is not None and bits_weights != bits_parameters \
                and bits_parameters != 8:
            raise ArgumentError("bits_weights", f"conflicts with bits_parameters={bits_parameters} (they are synonyms)")
        if _flag(fp16, "fp16"):
            warnings.warn("fp16=True is deprecated (as in Distiller); use fpq_module=16", DeprecationWarning,
                          stacklevel=2)
            fpq_module = 16 if fpq_module is None else fpq_module
        self.model = model
        self.net_aware = _flag(net_aware, "net_aware")
        self.convert_rnns = _flag(convert_rnns, "convert_rnns")
        self.defaults = ModuleQuantConfig(
            bits_activations=_bits(bits_activations, "bits_activations"),
            bits_weights=_bits(bits_weights if bits_weights is not None else bits_parameters,
                               "bits_weights" if bits_weights is not None else "bits_parameters"),
            bits_bias=_bits(bits_bias, "bits_bias"),
            bits_accum=_bits(bits_accum, "bits_accum", allow_none=False, maximum=64),
            mode=parse_mode(mode, "mode"),
            clip_acts=parse_clip_mode(clip_acts, "clip_acts"),
            clip_n_stds=_n_stds(clip_n_stds, "clip_n_stds"),
            clip_half_range=_flag(clip_half_range, "clip_half_range"),
            per_channel_wts=_flag(per_channel_wts, "per_channel_wts"),
            fpq_module=_fpq(fpq_module, "fpq_module"),
            also_clip_weights=_flag(also_clip_weights, "also_clip_weights"),
            per_channel_acts=_flag(per_channel_acts, "per_channel_acts"))
        if self.defaults.clip_acts == ClipMode.N_STD and self.defaults.clip_n_stds is None:
            raise ArgumentError("clip_n_stds", "clip_acts N_STD needs clip_n_stds (a positive number)")
        self.overrides = self._parse_overrides(overrides)
        self.activation_stats: Optional[Stats] = None
        if model_activation_stats is not None:
            self.activation_stats = self._parse_stats(model_activation_stats)
        self.module_configs: Dict[str, Tuple[str, ModuleQuantConfig]] = {}
        self.prepared = False
        self._wrappers: Dict[str, nn.Module] = {}
        self._check_overrides_match()

    # ------------------------------------------------------------------ configuration
    def _parse_overrides(self, overrides) -> Dict[str, Dict[str, Any]]:
        if overrides is None:
            return {}
        if not isinstance(overrides, Mapping):
            raise ArgumentError("overrides", f"expected a mapping of module-name patterns to settings, "
                                             f"got {type(overrides).__name__}")
        parsed: Dict[str, Dict[str, Any]] = {}
        for pattern, entry in overrides.items():
            key = f"overrides.{pattern}"
            if not isinstance(pattern, str):
                raise ArgumentError(key, "a pattern must be a string")
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ArgumentError(key, f"invalid regular expression: {exc}") from None
            if entry is None:
                entry = {}
            if not isinstance(entry, Mapping):
                raise ArgumentError(key, f"expected a mapping of settings, got {entry!r}")
            settings: Dict[str, Any] = {}
            for k, v in entry.items():
                if k in _UNSUPPORTED:
                    raise ArgumentError(key_path(key, k), f"not supported: {_UNSUPPORTED[k]}")
                if k not in OVERRIDE_KEYS:
                    raise ArgumentError(key_path(key, k),
                                        f"unknown override key (accepted: {', '.join(OVERRIDE_KEYS)})")
                where = f"{key}.{k}"
                if k in ("bits_activations", "bits_weights", "bits_parameters", "bits_bias"):
                    settings["bits_weights" if k == "bits_parameters" else k] = _bits(v, where)
                elif k == "bits_accum":
                    settings[k] = _bits(v, where, allow_none=False, maximum=64)
                elif k == "mode":
                    settings[k] = parse_mode(v, where)
                elif k == "clip_acts":
                    settings[k] = parse_clip_mode(v, where)
                elif k == "clip_n_stds":
                    settings[k] = _n_stds(v, where)
                elif k == "fpq_module":
                    settings[k] = _fpq(v, where)
                elif k == "fp16":
                    if _flag(v, where):
                        settings.setdefault("fpq_module", 16)
                else:
                    settings[k] = _flag(v, where)
            merged = replace(self.defaults, **settings)
            if merged.clip_acts == ClipMode.N_STD and merged.clip_n_stds is None:
                raise ArgumentError(key_path(key, "clip_n_stds"), "clip_acts N_STD needs clip_n_stds")
            settings["_compiled"] = compiled
            parsed[pattern] = settings
        return parsed

    def _parse_stats(self, value) -> Stats:
        try:
            if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__"):
                return load_stats(value)
            return validate_stats(value, "model_activation_stats")
        except ValueError as exc:
            raise ArgumentError("model_activation_stats", str(exc)) from None

    def _current_modules(self) -> List[Tuple[str, type]]:
        if self.convert_rnns and not self.prepared:
            return converted_module_types(self.model)
        return [(n, type(m)) for n, m in self.model.named_modules()]

    def _check_overrides_match(self) -> None:
        modules = [(_strip_parallel_prefix(n), t) for n, t in self._current_modules()]
        names = [n for n, _ in modules]
        leaves = _leaf_names(names)
        weighted = {n for n, t in modules if issubclass(t, (nn.Linear, nn.Embedding))}
        for pattern, settings in self.overrides.items():
            compiled = settings["_compiled"]
            if settings.get("per_channel_acts"):
                bad = next((n for n in leaves if n in weighted and (pattern == n or compiled.fullmatch(n))), None)
                if bad is not None:
                    raise ArgumentError(("overrides", pattern, "per_channel_acts"), _per_channel_weighted(bad))
            if any(pattern == n or compiled.fullmatch(n) for n in leaves):
                continue
            containers = [n for n in names if n and compiled.fullmatch(n)]
            if containers:
                raise ArgumentError(("overrides", pattern), f"matches only containers ({', '.join(containers[:3])}); "
                                                            f"overrides apply to leaf modules, e.g. "
                                                            f"'{re.escape(containers[0])}\\..*'")
            raise ArgumentError(("overrides", pattern), f"matches no module of the model (modules are named like "
                                                        f"{', '.join(leaves[:4])}, ...)")

    def config_for(self, name: str, module: Optional[nn.Module] = None) -> ModuleQuantConfig:
        """The settings of the module called ``name``: the first matching override, else the globals.

        Given the ``module``, a global ``per_channel_acts`` is dropped for modules with weights (it applies to
        the others), and an override that sets it on one raises :class:`ArgumentError`.
        """
        key = _strip_parallel_prefix(name)
        if key in self.overrides:
            pattern = key
        else:
            pattern = next((p for p, s in self.overrides.items() if s["_compiled"].fullmatch(key)), None)
        if pattern is None:
            cfg = self.defaults
        else:
            settings = {k: v for k, v in self.overrides[pattern].items() if not k.startswith("_")}
            cfg = replace(self.defaults, override=pattern, **settings)
        if cfg.per_channel_acts and isinstance(module, (nn.Linear, nn.Embedding)):
            if pattern is not None and self.overrides[pattern].get("per_channel_acts"):
                raise ArgumentError(("overrides", pattern, "per_channel_acts"), _per_channel_weighted(name))
            cfg = replace(cfg, per_channel_acts=False)
        return cfg

    # ------------------------------------------------------------------ calibration
    def _ensure_modular(self) -> None:
        if self.convert_rnns and not self.prepared:
            converted = convert_to_modular(self.model)
            if converted is not self.model:
                self.model = converted

    def _quantizable(self) -> Dict[str, nn.Module]:
        """Leaf modules that get a wrapper, by name (each module object once)."""
        out: Dict[str, nn.Module] = {}
        seen = set()
        for name, module in self.model.named_modules():
            if any(True for _ in module.children()) or isinstance(module, _PASS_THROUGH) or id(module) in seen:
                continue
            seen.add(id(module))
            out[name] = module
        return out

    def per_channel_modules(self) -> List[str]:
        """Names of the modules (recurrent layers converted) whose activations get per-channel scales: the ones
        calibration must collect per-channel statistics for."""
        self._ensure_modular()
        return [n for n, m in self._quantizable().items() if self.config_for(n, m).per_channel_acts]

    def calibrate(self, calibration: Calibration, laplace: Optional[bool] = None) -> Stats:
        """Collect activation statistics over calibration data (converting recurrent layers first).

        Args:
            calibration: a callable ``calibration(model)`` that runs the model over the data (carrying state as
                it likes), or an iterable of inputs; see :func:`~compress.quantization.run_calibration`.
            laplace: also run the second pass for LAPLACE's ``b`` (default: only if some module uses LAPLACE).

        Returns:
            The statistics (also kept as :attr:`activation_stats`); save them with :func:`save_stats`.
        """
        if self.prepared:
            raise RuntimeError("calibrate() must run before prepare_model(): the statistics are of the float model")
        self._ensure_modular()
        modules = self._quantizable()
        if laplace is None:
            laplace = any(self.config_for(n).clip_acts == ClipMode.LAPLACE for n in modules)
        channels = self.per_channel_modules()
        self.activation_stats = collect_activation_stats(self.model, calibration, list(modules), laplace=laplace,
                                                         channels=channels)
        return self.activation_stats

    def _effective_stats(self) -> Optional[Stats]:
        if self.activation_stats is None:
            return None
        stats = copy.deepcopy(self.activation_stats)
        if not self.net_aware:
            return stats
        for prefix, module in self.model.named_modules():
            for producer, consumers in getattr(module, "output_consumers", {}).items():
                name = f"{prefix}.{producer}" if prefix else producer
                kinds = {type(getattr(module, c, None)) for c in consumers}
                if not kinds or not kinds <= set(_SATURATION):
                    continue
                # Distiller's rule: all Tanh → Tanh's range; any Sigmoid among them → Sigmoid's (wider) one
                lo, hi = _SATURATION[nn.Tanh] if kinds == {nn.Tanh} else _SATURATION[nn.Sigmoid]
                entry = stats.get(name, {}).get("output")
                if entry is None:
                    continue
                for k in ("min", "max", "avg_min", "avg_max"):
                    if k in entry and entry[k] is not None:
                        entry[k] = min(max(entry[k], lo), hi)
                for k in ("min", "max"):
                    if (entry.get("channels") or {}).get(k) is not None:
                        entry["channels"][k] = [min(max(v, lo), hi) for v in entry["channels"][k]]
        return stats

    # ------------------------------------------------------------------ preparation
    def _act_quantizer(self, cfg: ModuleQuantConfig, stats: Optional[Stats], name: str, slot: Any,
                       missing: List[str]) -> Optional[ActQuantizer]:
        if cfg.bits_activations is None:
            return None
        entry = None
        if stats is not None:
            module_stats = stats.get(_strip_parallel_prefix(name)) or stats.get(name) or {}
            entry = module_stats.get("output") if slot == "output" else (module_stats.get("inputs") or {}).get(slot)
            if entry is None:
                missing.append(f"{name} ({'output' if slot == 'output' else f'input {slot}'})")
                return None
        if cfg.per_channel_acts and entry is not None and entry.get("channels") is None:
            tensor = "output" if slot == "output" else f"input {slot}"
            raise ArgumentError("per_channel_acts", f"module {name}: the statistics of its {tensor} have no "
                                                    f"per-channel entry ('channels'); calibrate with this "
                                                    f"configuration (calibrate() or prepare_model(calibration=...)) "
                                                    f"to collect them")
        try:
            return ActQuantizer(cfg.bits_activations, cfg.mode.activations, cfg.clip_acts, entry, cfg.clip_n_stds,
                                cfg.clip_half_range, per_channel=cfg.per_channel_acts)
        except (KeyError, ValueError) as exc:
            raise ArgumentError("clip_acts", f"module {name}: {exc}") from None

    def _wrap(self, name: str, module: nn.Module, cfg: ModuleQuantConfig, stats: Optional[Stats],
              missing: List[str]) -> Optional[nn.Module]:
        if cfg.fpq_module in (16, 64):
            return FPWrapper(module, cfg.fpq_module)
        if cfg.is_float:
            return None
        weight_clip = cfg.clip_acts if cfg.also_clip_weights else ClipMode.NONE
        if isinstance(module, nn.Linear):
            return QuantLinear(module, self._act_quantizer(cfg, stats, name, 0, missing),
                               self._act_quantizer(cfg, stats, name, "output", missing), cfg.bits_weights,
                               cfg.mode.weights, cfg.per_channel_wts, cfg.bits_accum, cfg.bits_bias, weight_clip,
                               cfg.clip_n_stds)
        if isinstance(module, nn.Embedding):
            return QuantEmbedding(module, self._act_quantizer(cfg, stats, name, "output", missing), cfg.bits_weights,
                                  cfg.mode.weights, cfg.per_channel_wts, weight_clip, cfg.clip_n_stds)
        if cfg.bits_activations is None:
            return None
        out_q = self._act_quantizer(cfg, stats, name, "output", missing)
        if isinstance(module, _ELTWISE):
            if stats is None:
                in_qs = [self._act_quantizer(cfg, None, name, 0, missing)]
            else:
                positions = sorted((stats.get(_strip_parallel_prefix(name)) or {}).get("inputs") or {})
                if not positions:
                    missing.append(f"{name} (inputs)")
                in_qs = [self._act_quantizer(cfg, stats, name, i, missing) for i in positions]
            return QuantEltwise(module, [q for q in in_qs if q is not None], out_q)
        return QuantActivation(module, out_q) if out_q is not None else None

    def prepare_model(self, calibration: Optional[Calibration] = None, dummy_input: Any = None) -> nn.Module:
        """Convert recurrent layers, optionally calibrate, and replace modules by simulating wrappers.

        Args:
            calibration: calibration data for :meth:`calibrate` (skipped when ``None``: statistics then come
                from ``model_activation_stats`` or, without them, are computed per tensor).
            dummy_input: accepted for Distiller compatibility and unused (no graph tracing is needed).

        Returns:
            The prepared model (also :attr:`model`); the model passed in is changed in place unless it was
            itself a bare ``nn.LSTM``/``nn.GRU``.

        Raises:
            RuntimeError: called twice.
            ArgumentError: statistics lack a module that needs them (key ``model_activation_stats``).
        """
        if self.prepared:
            raise RuntimeError("prepare_model() was already called on this quantizer")
        if calibration is not None:
            self.calibrate(calibration)
        self._ensure_modular()
        stats = self._effective_stats()
        modules = self._quantizable()
        if stats is None and any(not self.config_for(n).is_float and self.config_for(n).bits_activations is not None
                                 for n in modules):
            log.warning("PostTrainLinearQuantizer: no calibration statistics; activation ranges are computed "
                        "per tensor (dynamic quantization). Pass calibration=... or model_activation_stats.")
        missing: List[str] = []
        plan = []
        self.module_configs = {}
        for name, module in modules.items():
            cfg = self.config_for(name, module)
            self.module_configs[name] = (type(module).__name__, cfg)
            wrapper = self._wrap(name, module, cfg, stats, missing)
            if wrapper is not None:
                plan.append((name, wrapper))
        if missing:
            raise ArgumentError("model_activation_stats", f"no statistics for {len(missing)} tensors, e.g. "
                                                          f"{', '.join(missing[:3])}; collect them with "
                                                          f"calibrate() on this model")
        device = self._device()
        for name, wrapper in plan:  # replace only once everything was built: a failure changes nothing
            wrapper.to(device)      # the quantizers' parameters are computed on the CPU
            parent_name, _, child = name.rpartition(".")
            parent = self.model.get_submodule(parent_name) if parent_name else self.model
            setattr(parent, child, wrapper)
            self._wrappers[name] = wrapper
        by_inner = {id(w.wrapped_module): w for w in self._wrappers.values()}
        shared = [(parent, child_name, by_inner[id(child)]) for _, parent in self.model.named_modules()
                  for child_name, child in parent.named_children()
                  if id(child) in by_inner and parent is not by_inner[id(child)]]
        for parent, child_name, wrapper in shared:  # a module also used under another name: the same wrapper
            setattr(parent, child_name, wrapper)
        self.prepared = True
        self.quantize_params()
        self.model.eval()
        return self.model

    def _device(self) -> torch.device:
        tensor = next(self.model.parameters(), None)
        if tensor is None:
            tensor = next(self.model.buffers(), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def quantize_params(self) -> None:
        """(Re)compute every quantized weight from its float weight (after the weights changed)."""
        for wrapper in self._wrappers.values():
            if hasattr(wrapper, "quantize_params"):
                wrapper.quantize_params()

    # ------------------------------------------------------------------ state and products
    def state_dict(self) -> Dict[str, Any]:
        """Plain data: the calibration statistics (the wrappers' own numbers are in the model's state)."""
        return {"activation_stats": copy.deepcopy(self.activation_stats), "prepared": self.prepared}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore statistics; a prepared quantizer rebuilds its activation quantizers from them."""
        stats = state.get("activation_stats")
        self.activation_stats = None if stats is None else validate_stats(stats, "quantizer state")
        if self.prepared:
            effective = self._effective_stats()
            missing: List[str] = []
            for name, wrapper in self._wrappers.items():
                cfg = self.module_configs[name][1]
                if isinstance(wrapper, QuantLinear):
                    wrapper.in_quant = self._act_quantizer(cfg, effective, name, 0, missing)
                if isinstance(wrapper, (QuantLinear, QuantEmbedding, QuantEltwise, QuantActivation)):
                    wrapper.out_quant = self._act_quantizer(cfg, effective, name, "output", missing)
                if isinstance(wrapper, QuantEltwise):
                    positions = sorted(((effective or {}).get(name) or {}).get("inputs") or {0: None})
                    qs = [self._act_quantizer(cfg, effective, name, i, missing) for i in positions]
                    wrapper.in_quants = nn.ModuleList(q for q in qs if q is not None)
            if missing:
                raise ArgumentError("activation_stats", f"no statistics for {', '.join(missing[:3])}")
            device = self._device()
            for wrapper in self._wrappers.values():
                wrapper.to(device)
            self.quantize_params()

    def float_model(self) -> nn.Module:
        """A float copy of the model with standard ``nn.LSTM``/``nn.GRU`` layers (wrappers removed)."""
        model = copy.deepcopy(self.model)
        memo: Dict[int, nn.Module] = {}

        def unwrap(module: nn.Module) -> None:
            for name, child in list(module.named_children()):
                inner = getattr(child, "wrapped_module", None)
                if inner is not None and isinstance(child, (QuantLinear, QuantEmbedding, QuantEltwise,
                                                            QuantActivation, FPWrapper)):
                    setattr(module, name, memo.setdefault(id(child), inner))
                else:
                    unwrap(child)

        unwrap(model)
        return convert_from_modular(model)

    def export(self, **kwargs: Any) -> nn.Module:
        """A real compressed model with this quantizer's per-module choices (see
        :func:`compress.quantization.export_model`): weights of INT8 modules in int8 (the simulation's integers),
        FP16 modules in fp16, float modules in fp32."""
        from compress.quantization.export import WeightFormat, export_model

        def fmt(name: str) -> WeightFormat:
            cfg = self.module_configs[name][1] if name in self.module_configs else self.config_for(name)
            if cfg.fpq_module == 16:
                return WeightFormat("fp16")
            if cfg.fpq_module == 64 or cfg.bits_weights is None or cfg.bits_weights > 8:
                return WeightFormat("fp32")
            return WeightFormat("int8", bits=cfg.bits_weights, mode=cfg.mode.weights, per_channel=cfg.per_channel_wts,
                                clip=cfg.clip_acts if cfg.also_clip_weights else ClipMode.NONE,
                                n_stds=cfg.clip_n_stds)

        return export_model(self.float_model(), fmt, **kwargs)

    def module_table(self, tablefmt: str = "psql") -> str:
        """Per-module report (see :func:`compress.quantization.quant_table`)."""
        from compress.quantization.report import quant_table
        return quant_table(self, tablefmt=tablefmt)
