"""Simulated quantization: wrappers that make a float module compute as its integer (or FP16) version would.

Each wrapper keeps the float module inside (``wrapped_module``, so its parameters keep their values and
tied weights stay tied) and works on the grid values in floating point ("fake quantization"), which is
Distiller's representation too: its wrappers also returned de-quantized floats.

* :class:`QuantLinear` (``nn.Linear``): input on the activation grid, weight on the weight grid (per tensor or
  per output channel), bias on the accumulator grid ``scale_x * scale_w`` with ``bits_accum`` bits, the
  accumulator clamped to ``bits_accum`` when it could overflow, the output re-quantized. This is Distiller's
  ``y_q = s_y/(s_x s_w) · (Σ x_q w_q + b_q)`` written in floating point.
* :class:`QuantEmbedding`: weight on the weight grid, output re-quantized to the activation grid.
* :class:`QuantEltwise` (``EltwiseAdd``/``EltwiseSub``/``EltwiseMult``): inputs on their grids, the result
  re-quantized once (Distiller's rounding differs by at most one step: ``docs/distiller-compat.md``).
* :class:`QuantActivation` (any other leaf: Sigmoid, Tanh, ReLU, ...): runs in float, quantizes its output.
* :class:`FPWrapper`: runs a module in FP16 (values rounded to half precision, accumulation in fp32, as
  FP16 matrix units do) or FP64.

Every input is quantized with that module's own input statistics (Distiller's ``inputs_quant_auto_fallback``):
a value already on the producer's grid, whose statistics are the same tensor's, comes back unchanged.
Wrappers are for evaluation: they raise in training mode.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from compress.quantization.linear import (
    ClipMode,
    LinearQuantMode,
    QuantParams,
    clip_range,
    dequantize,
    fake_quantize,
    quant_params,
    quantize,
    quantized_range,
    tensor_stats,
)

__all__ = ["ActQuantizer", "QuantLinear", "QuantEmbedding", "QuantEltwise", "QuantActivation", "FPWrapper",
           "quantize_weight"]


def _check_eval(module: nn.Module) -> None:
    if module.training:
        raise RuntimeError(f"{type(module).__name__} simulates post-training quantization and runs in eval mode "
                           f"only; call model.eval() first")


def _channel_stats(stats: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """Per-channel statistics (the ``channels`` entry of a tensor's statistics) as tensors for
    :func:`~compress.quantization.linear.clip_range`. A single channel has no per-sample extremes of its own, so
    ``avg_min``/``avg_max`` are its ``min``/``max`` (as for per-channel weights)."""
    out = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in stats.items()}
    out["avg_min"], out["avg_max"] = out["min"], out["max"]
    return out


class ActQuantizer(nn.Module):
    """Fake-quantizes one activation tensor: static (from calibration statistics) or dynamic (per call).

    Args:
        bits: bit width.
        mode: :class:`LinearQuantMode`.
        clip: :class:`ClipMode`.
        stats: this tensor's statistics (``min``, ``max``, ...); ``None`` for dynamic quantization, which
            computes them from every tensor it sees.
        n_stds: for ``N_STD``.
        half_range: the tensor is known to be non-negative.
        per_channel: one scale and zero point per channel (position along the last dimension), from the
            statistics' ``channels`` entry; clipping then applies to each channel's own statistics.
    """

    def __init__(self, bits: int, mode: LinearQuantMode, clip: ClipMode, stats: Optional[Mapping[str, Any]] = None,
                 n_stds: Optional[float] = None, half_range: bool = False, per_channel: bool = False):
        super().__init__()
        self.bits, self.mode, self.clip, self.n_stds, self.half_range = bits, mode, clip, n_stds, half_range
        self.per_channel = per_channel
        self.qmin, self.qmax = quantized_range(bits, mode)
        self.dynamic = stats is None
        if not self.dynamic:
            if per_channel:
                if stats.get("channels") is None:
                    raise KeyError("per-channel activations need per-channel statistics ('channels'), which these "
                                   "statistics lack (calibrate with per_channel_acts set)")
                stats = _channel_stats(stats["channels"])
            lo, hi = clip_range(stats, clip, bits, mode, n_stds, half_range)
            p = quant_params(bits, mode, lo, hi)
            shape = (-1,) if per_channel else ()
            self.register_buffer("scale", p.scale.reshape(shape))
            self.register_buffer("zero_point", p.zero_point.reshape(shape))
            self.register_buffer("range_min", lo.reshape(shape))
            self.register_buffer("range_max", hi.reshape(shape))
            # PyTorch's fused kernel takes its own convention (1/scale, -zero_point as int32): computed once here
            self.register_buffer("_fq_scale", (1.0 / p.scale).reshape(-1), persistent=False)
            self.register_buffer("_fq_zero_point", (-p.zero_point).reshape(-1).to(torch.int32), persistent=False)
            self._fused = self.qmax - self.qmin < 2 ** 16

    def params(self, x: torch.Tensor) -> QuantParams:
        """The parameters used for ``x`` (the stored ones, or ``x``'s own when dynamic)."""
        if not self.dynamic:
            return QuantParams(self.scale, self.zero_point, self.qmin, self.qmax)
        if self.per_channel:
            stats = tensor_stats(x.detach().reshape(-1, x.shape[-1]).t(), dim=0)
        else:
            stats = tensor_stats(x)
        lo, hi = clip_range(stats, self.clip, self.bits, self.mode, self.n_stds, self.half_range)
        return quant_params(self.bits, self.mode, lo.to(x.device), hi.to(x.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_channel:
            if not self.dynamic and self._fused and x.dtype == torch.float32:
                return torch.fake_quantize_per_channel_affine(x, self._fq_scale, self._fq_zero_point, x.dim() - 1,
                                                              self.qmin, self.qmax)
            return fake_quantize(x, self.params(x))
        if not self.dynamic and self._fused and x.dtype == torch.float32:
            return torch.fake_quantize_per_tensor_affine(x, self._fq_scale, self._fq_zero_point, self.qmin, self.qmax)
        return fake_quantize(x, self.params(x))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if not self.dynamic:  # keep the fused kernel's copies in step with loaded parameters
            self._fq_scale = (1.0 / self.scale).reshape(-1)
            self._fq_zero_point = (-self.zero_point).reshape(-1).to(torch.int32)

    def range_str(self) -> str:
        """``[min, max]`` of the quantized range (per channel: the widest over channels), or ``dynamic``."""
        if self.dynamic:
            return "dynamic"
        text = f"[{float(self.range_min.min()):.4g}, {float(self.range_max.max()):.4g}]"
        return f"{text} per ch" if self.per_channel else text

    def extra_repr(self) -> str:
        clip = self.clip.name + (f"({self.n_stds:g})" if self.clip == ClipMode.N_STD else "")
        return (f"bits={self.bits}, mode={self.mode.name}, clip={clip}"
                + (", per_channel" if self.per_channel else "") + ", " + ("dynamic" if self.dynamic else
                                                                           f"range={self.range_str()}"))


def quantize_weight(weight: torch.Tensor, bits: int, mode: LinearQuantMode, per_channel: bool,
                    clip: ClipMode = ClipMode.NONE, n_stds: Optional[float] = None) -> Tuple[torch.Tensor, QuantParams]:
    """Integer values (as an integer-valued float tensor) and parameters of a weight.

    Per channel means one scale and zero point per slice along dim 0 (output channel; an embedding's row).
    ``clip`` other than NONE applies activation-style clipping to the weight's own statistics.
    """
    w = weight.detach()
    stats = tensor_stats(w, dim=0 if per_channel else None)
    if not per_channel:  # a whole-tensor range; AVG averages the per-row extremes, as Distiller did for weights
        rows = w.reshape(w.shape[0], -1).to(torch.float64)
        stats["avg_min"], stats["avg_max"] = rows.amin(1).mean(), rows.amax(1).mean()
    lo, hi = clip_range(stats, clip, bits, mode, n_stds)
    params = quant_params(bits, mode, lo.to(w.device), hi.to(w.device))
    if per_channel:
        shape = (-1,) + (1,) * (w.dim() - 1)
        params = QuantParams(params.scale.reshape(shape), params.zero_point.reshape(shape), params.qmin, params.qmax)
    return quantize(w.float(), params), params


class _WrappedParams:
    """``weight`` and ``bias`` of the wrapped float module, so code that reads ``module.weight`` (e.g. an LM's
    ``init_hidden``) keeps working on a wrapper."""

    wrapped_module: nn.Module

    @property
    def weight(self) -> torch.Tensor:
        return self.wrapped_module.weight

    @property
    def bias(self) -> Optional[torch.Tensor]:
        return getattr(self.wrapped_module, "bias", None)


class _WeightMixin(_WrappedParams):
    """Shared weight handling of :class:`QuantLinear` and :class:`QuantEmbedding`."""

    wrapped_module: nn.Module

    def _init_weight_quant(self, bits: Optional[int], mode: LinearQuantMode, per_channel: bool, clip: ClipMode,
                           n_stds: Optional[float]) -> None:
        self.bits_weights, self.weight_mode, self.per_channel = bits, mode, per_channel
        self.weight_clip, self.weight_n_stds = clip, n_stds
        self.register_buffer("weight_q", None, persistent=False)
        self.register_buffer("weight_scale", None)
        self.register_buffer("weight_zero_point", None)

    def quantize_params(self) -> None:
        """(Re)compute the quantized weight from the float weight."""
        if self.bits_weights is None:
            self.weight_q = None
            return
        q, p = quantize_weight(self.wrapped_module.weight, self.bits_weights, self.weight_mode, self.per_channel,
                               self.weight_clip, self.weight_n_stds)
        self.weight_scale, self.weight_zero_point = p.scale, p.zero_point
        self.weight_q = dequantize(q, p).to(self.wrapped_module.weight.dtype)

    def weight_params(self) -> Optional[QuantParams]:
        if self.bits_weights is None or self.weight_scale is None:
            return None
        qmin, qmax = quantized_range(self.bits_weights, self.weight_mode)
        return QuantParams(self.weight_scale, self.weight_zero_point, qmin, qmax)

    def int_weight(self) -> Optional[torch.Tensor]:
        """The weight's integer values (Distiller issue #392: "how do I get the quantized weights?")."""
        p = self.weight_params()
        return None if p is None else quantize(self.wrapped_module.weight.detach().float(), p)

    def _effective_weight(self) -> torch.Tensor:
        if self.bits_weights is None:
            return self.wrapped_module.weight
        if self.weight_q is None:
            self.quantize_params()
        return self.weight_q


class QuantLinear(_WeightMixin, nn.Module):
    """Simulated integer ``nn.Linear`` (see the module docstring).

    Args:
        module: the float ``nn.Linear`` (kept as ``wrapped_module``).
        in_quant: input quantizer, or ``None`` to leave inputs in float.
        out_quant: output quantizer, or ``None``.
        bits_weights: weight bit width, or ``None`` for float weights.
        weight_mode: weight :class:`LinearQuantMode`.
        per_channel: one scale per output channel.
        bits_accum: accumulator (and bias) bit width.
        bits_bias: bias bit width before it is moved to the accumulator grid; ``None`` quantizes the bias
            directly on the accumulator grid (Distiller's default, issue #405).
        weight_clip: clipping of the weight range (Distiller's ``also_clip_weights``).
        weight_n_stds: for ``N_STD`` weight clipping.
    """

    def __init__(self, module: nn.Linear, in_quant: Optional[ActQuantizer], out_quant: Optional[ActQuantizer],
                 bits_weights: Optional[int], weight_mode: LinearQuantMode, per_channel: bool, bits_accum: int = 32,
                 bits_bias: Optional[int] = None, weight_clip: ClipMode = ClipMode.NONE,
                 weight_n_stds: Optional[float] = None):
        super().__init__()
        self.wrapped_module = module
        self.in_quant, self.out_quant = in_quant, out_quant
        self.bits_accum, self.bits_bias = bits_accum, bits_bias
        self._init_weight_quant(bits_weights, weight_mode, per_channel, weight_clip, weight_n_stds)
        self.register_buffer("bias_q", None, persistent=False)
        acc_max = 2 ** (bits_accum - 1)
        self.accum_min, self.accum_max = -acc_max, acc_max - 1
        # Clamping the accumulator costs two passes; do it only where a sum of products can overflow it.
        self.clamp_accum = False
        if in_quant is not None and bits_weights is not None:
            self.clamp_accum = 2 ** (in_quant.bits + bits_weights) * module.in_features >= acc_max

    def quantize_params(self) -> None:
        super().quantize_params()
        self.bias_q = None
        if self.in_quant is not None and not self.in_quant.dynamic:
            self.bias_q = self._quantized_bias(self.in_quant.scale)

    def _accum_scale(self, in_scale: torch.Tensor) -> Optional[torch.Tensor]:
        if self.bits_weights is None:
            return None
        return in_scale * self.weight_scale.reshape(-1)

    def _quantized_bias(self, in_scale: torch.Tensor) -> Optional[torch.Tensor]:
        bias = self.wrapped_module.bias
        acc_scale = self._accum_scale(in_scale)
        if bias is None or acc_scale is None:
            return bias
        b = bias.detach().float()
        if self.bits_bias is not None:  # first on its own symmetric grid, then moved to the accumulator's
            p = quant_params(self.bits_bias, LinearQuantMode.SYMMETRIC, b.abs().max().neg(), b.abs().max())
            b = dequantize(quantize(b, p), p)
        b_q = torch.clamp(torch.round(b * acc_scale), self.accum_min, self.accum_max)
        return (b_q / acc_scale).to(bias.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_eval(self)
        bias = self.wrapped_module.bias
        acc_scale = None
        if self.in_quant is not None:
            if self.bias_q is not None and not self.clamp_accum:  # static: everything precomputed
                x = self.in_quant(x)
                bias = self.bias_q
            else:
                p = self.in_quant.params(x)
                x = fake_quantize(x, p)
                if self.bits_weights is not None:
                    bias = self._quantized_bias(p.scale)
                if self.clamp_accum:
                    acc_scale = self._accum_scale(p.scale)
        y = F.linear(x, self._effective_weight(), bias)
        if acc_scale is not None:
            y = torch.clamp(y, min=self.accum_min / acc_scale, max=self.accum_max / acc_scale)
        if self.out_quant is not None:
            y = self.out_quant(y)
        return y


class QuantEmbedding(_WeightMixin, nn.Module):
    """Simulated integer ``nn.Embedding``: the table on the weight grid, the output on the activation grid.

    Args:
        module: the float ``nn.Embedding``.
        out_quant: output quantizer, or ``None``.
        bits_weights: weight bit width, or ``None``.
        weight_mode: weight :class:`LinearQuantMode`.
        per_channel: one scale per row (per word).
        weight_clip: clipping of the table's range (``also_clip_weights``; none by default, as in Distiller).
        weight_n_stds: for ``N_STD`` weight clipping.
    """

    def __init__(self, module: nn.Embedding, out_quant: Optional[ActQuantizer], bits_weights: Optional[int],
                 weight_mode: LinearQuantMode, per_channel: bool, weight_clip: ClipMode = ClipMode.NONE,
                 weight_n_stds: Optional[float] = None):
        super().__init__()
        self.wrapped_module = module
        self.out_quant = out_quant
        self._init_weight_quant(bits_weights, weight_mode, per_channel, weight_clip, weight_n_stds)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        _check_eval(self)
        m = self.wrapped_module
        y = F.embedding(input, self._effective_weight(), m.padding_idx, m.max_norm, m.norm_type,
                        m.scale_grad_by_freq, m.sparse)
        return self.out_quant(y) if self.out_quant is not None else y


class QuantEltwise(nn.Module):
    """Simulated integer element-wise add/sub/mult.

    Args:
        module: an ``EltwiseAdd``, ``EltwiseSub`` or ``EltwiseMult``.
        in_quants: one quantizer per input position (a dynamic one may serve all), or an empty list.
        out_quant: output quantizer, or ``None``.
    """

    def __init__(self, module: nn.Module, in_quants: List[ActQuantizer], out_quant: Optional[ActQuantizer]):
        super().__init__()
        self.wrapped_module = module
        self.in_quants = nn.ModuleList(in_quants)
        self.out_quant = out_quant

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        _check_eval(self)
        if len(self.in_quants):
            last = len(self.in_quants) - 1
            inputs = tuple(self.in_quants[min(i, last)](x) for i, x in enumerate(inputs))
        y = self.wrapped_module(*inputs)
        return self.out_quant(y) if self.out_quant is not None else y


class QuantActivation(nn.Module):
    """A leaf run in float whose output is quantized (Distiller's ``RangeLinearFakeQuantWrapper``).

    Args:
        module: the leaf module (Sigmoid, Tanh, ReLU, ...).
        out_quant: output quantizer.
    """

    def __init__(self, module: nn.Module, out_quant: ActQuantizer):
        super().__init__()
        self.wrapped_module = module
        self.out_quant = out_quant

    def forward(self, *inputs: Any) -> torch.Tensor:
        _check_eval(self)
        y = self.wrapped_module(*inputs)
        return self.out_quant(y) if torch.is_tensor(y) and y.is_floating_point() else y


class FPWrapper(_WrappedParams, nn.Module):
    """Run a module in reduced or extended floating point: ``precision`` 16 (half) or 64 (double).

    FP16 is simulated on the values: inputs, parameters and outputs are rounded to half precision and the
    arithmetic in between runs in fp32, as FP16 matrix units accumulate; so it runs on any device. The
    parameters stay fp32 in the model (a tied weight is not changed under its other users).

    Args:
        module: the module.
        precision: 16 or 64.
    """

    def __init__(self, module: nn.Module, precision: int):
        super().__init__()
        if precision not in (16, 64):
            raise ValueError(f"precision must be 16 or 64, got {precision}")
        self.wrapped_module = module
        self.precision = precision
        self._params: Dict[str, torch.Tensor] = {}

    def _cast(self, x: Any) -> Any:
        if not torch.is_tensor(x) or not x.is_floating_point():
            return x
        return x.half().float() if self.precision == 16 else x.double()

    def quantize_params(self) -> None:
        """(Re)compute the rounded parameter copies."""
        self._params = {n: self._cast(p.detach()) for n, p in self.wrapped_module.named_parameters()}

    def forward(self, *inputs: Any) -> Any:
        _check_eval(self)
        first = next(self.wrapped_module.parameters(), None)
        if first is not None and (not self._params or next(iter(self._params.values())).device != first.device):
            self.quantize_params()  # first call, or the module moved to another device since
        params = self._params
        inputs = tuple(self._cast(x) for x in inputs)
        m = self.wrapped_module
        if isinstance(m, nn.Linear):
            y = F.linear(inputs[0], params["weight"], params.get("bias"))
        elif isinstance(m, nn.Embedding):
            y = F.embedding(inputs[0], params["weight"], m.padding_idx, m.max_norm, m.norm_type,
                            m.scale_grad_by_freq, m.sparse)
        elif params:
            y = torch.func.functional_call(m, params, inputs)
        else:
            y = m(*inputs)
        return self._uncast(y)

    def _uncast(self, y: Any) -> Any:
        if isinstance(y, tuple):
            return tuple(self._uncast(t) for t in y)
        if torch.is_tensor(y) and y.is_floating_point():
            return y.half().float() if self.precision == 16 else y.float()
        return y

    def extra_repr(self) -> str:
        return f"precision=fp{self.precision}"
