"""Linear (uniform) quantization: modes, clipping, scale/zero-point, quantize and dequantize.

Pure functions of tensors and statistics; no module, hook or model is touched here.

Conventions are Distiller's, so its numbers and files carry over:

* ``x_q = clamp(round(scale * x - zero_point))`` and ``x = (x_q + zero_point) / scale``. (PyTorch's own
  convention is ``x_q = round(x / S) + Z``: ``S = 1/scale`` and ``Z = -zero_point``.)
* ``SYMMETRIC``: ``scale = ((2^b - 1) / 2) / sat`` with ``sat = max(|min|, |max|)``, zero point 0, range
  ``[-2^(b-1), 2^(b-1) - 1]``; ``SYMMETRIC_RESTRICTED`` uses ``2^(b-1) - 1`` and ``[-(2^(b-1) - 1), 2^(b-1) - 1]``.
* ``ASYMMETRIC_UNSIGNED``: the range is widened to include 0, ``scale = (2^b - 1) / (max - min)``,
  ``zero_point = round(scale * min)``, range ``[0, 2^b - 1]``; ``ASYMMETRIC_SIGNED`` adds ``2^(b-1)`` to the
  zero point and uses ``[-2^(b-1), 2^(b-1) - 1]``.
* A zero range (all values 0) gives scale 1.

Clipping (``ClipMode``) picks the range to quantize from calibration statistics (a mapping with ``min``,
``max``, ``avg_min``, ``avg_max``, ``mean``, ``std`` and, for LAPLACE, ``b``): NONE/MAX use min/max; AVG the
averages of per-sample minima/maxima; N_STD ``mean ± n·std`` (within min/max); GAUSS and LAPLACE the
ACIQ-optimal clip (Banner et al., arXiv:1810.05723) ``α·std`` or ``α·b`` around the mean, never past the
observed ``min``/``max``.
"""
from __future__ import annotations

import enum
from typing import Any, Mapping, NamedTuple, Optional, Tuple, Union

import torch

from compress.errors import ArgumentError, key_path

__all__ = ["LinearQuantMode", "ClipMode", "ModuleQuantMode", "QuantParams", "parse_mode", "parse_clip_mode",
           "quantized_range", "symmetric_params", "asymmetric_params", "quant_params", "clip_range",
           "quantize", "dequantize", "fake_quantize", "tensor_stats", "ACIQ_GAUSS", "ACIQ_LAPLACE"]

Number = Union[float, torch.Tensor]


class LinearQuantMode(enum.Enum):
    """How the quantized range sits around zero (values as in Distiller).

    Example:
        >>> LinearQuantMode.ASYMMETRIC_SIGNED.value, LinearQuantMode.SYMMETRIC_RESTRICTED.symmetric
        (4, True)
    """

    SYMMETRIC = 1
    SYMMETRIC_RESTRICTED = 2
    ASYMMETRIC_UNSIGNED = 3
    ASYMMETRIC_SIGNED = 4

    @property
    def symmetric(self) -> bool:
        return self in (LinearQuantMode.SYMMETRIC, LinearQuantMode.SYMMETRIC_RESTRICTED)


class ClipMode(enum.Enum):
    """How activation ranges are chosen from statistics. ``MAX`` is a synonym of ``NONE`` (use min/max).

    Example:
        >>> parse_clip_mode("laplace"), parse_clip_mode(None)
        (<ClipMode.LAPLACE: 4>, <ClipMode.NONE: 0>)
    """

    NONE = 0
    AVG = 1
    N_STD = 2
    GAUSS = 3
    LAPLACE = 4
    MAX = 5


class ModuleQuantMode(NamedTuple):
    """Separate modes for activations and weights (Distiller's ``{activations: ..., weights: ...}``).

    Args:
        activations: the mode of activations.
        weights: the mode of weights.

    Example:
        >>> parse_mode({"activations": "asym_u", "weights": "sym"}).weights
        <LinearQuantMode.SYMMETRIC: 1>
        >>> signed = LinearQuantMode.ASYMMETRIC_SIGNED
        >>> parse_mode("asym_s") == ModuleQuantMode(activations=signed, weights=signed)
        True
    """

    activations: LinearQuantMode
    weights: LinearQuantMode


_MODE_ALIASES = {"SYM": LinearQuantMode.SYMMETRIC, "SYM_RESTR": LinearQuantMode.SYMMETRIC_RESTRICTED,
                 "ASYM_U": LinearQuantMode.ASYMMETRIC_UNSIGNED, "ASYM_S": LinearQuantMode.ASYMMETRIC_SIGNED}

# ACIQ multipliers of std (Gaussian) and of b = E|x - mean| (Laplace) per bit width, as published by Banner et
# al. and used by Distiller's AciqClipper; the "positive" tables are for half-range (one-sided) tensors.
ACIQ_GAUSS = {1: 1.24, 2: 1.71, 3: 2.15, 4: 2.55, 5: 2.93, 6: 3.28, 7: 3.61, 8: 3.92}
ACIQ_GAUSS_POSITIVE = {1: 1.71, 2: 2.15, 3: 2.55, 4: 2.93, 5: 3.28, 6: 3.61, 7: 3.92, 8: 4.2}
ACIQ_LAPLACE = {0: 1.05, 1: 1.86, 2: 2.83, 3: 3.89, 4: 5.03, 5: 6.2, 6: 7.41, 7: 8.64, 8: 9.89}
ACIQ_LAPLACE_POSITIVE = {0: 1.86, 1: 2.83, 2: 3.89, 3: 5.02, 4: 6.2, 5: 7.41, 6: 8.64, 7: 9.89, 8: 11.16}


def _parse_one_mode(value: Any, key: str) -> LinearQuantMode:
    if isinstance(value, LinearQuantMode):
        return value
    if isinstance(value, str):
        name = value.strip().upper()
        if name in LinearQuantMode.__members__:
            return LinearQuantMode[name]
        if name in _MODE_ALIASES:
            return _MODE_ALIASES[name]
    accepted = ", ".join(list(LinearQuantMode.__members__) + [a.lower() for a in _MODE_ALIASES])
    raise ArgumentError(key, f"unknown quantization mode {value!r} (accepted: {accepted})")


def parse_mode(value: Any, key: str = "mode") -> ModuleQuantMode:
    """A mode name, alias (``sym``, ``sym_restr``, ``asym_u``, ``asym_s``), enum, or a mapping
    ``{activations: ..., weights: ...}`` → :class:`ModuleQuantMode`.

    Raises:
        ArgumentError: an unknown name or key (``mode`` or ``mode.weights``).
    """
    if isinstance(value, ModuleQuantMode):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(map(str, value)) - {"activations", "weights"})
        if unknown:
            raise ArgumentError(key_path(key, unknown[0]), "expected the keys activations and weights")
        acts = _parse_one_mode(value.get("activations", LinearQuantMode.SYMMETRIC), f"{key}.activations")
        wts = _parse_one_mode(value.get("weights", LinearQuantMode.SYMMETRIC), f"{key}.weights")
        return ModuleQuantMode(acts, wts)
    mode = _parse_one_mode(value, key)
    return ModuleQuantMode(mode, mode)


def parse_clip_mode(value: Any, key: str = "clip_acts") -> ClipMode:
    """A clip-mode name or enum → :class:`ClipMode` (``MAX`` is kept as given; it behaves as ``NONE``).

    Raises:
        ArgumentError: an unknown name.
    """
    if isinstance(value, ClipMode):
        return value
    if value is None or value is False:
        return ClipMode.NONE
    if isinstance(value, str) and value.strip().upper() in ClipMode.__members__:
        return ClipMode[value.strip().upper()]
    raise ArgumentError(key, f"unknown clipping mode {value!r} (accepted: {', '.join(ClipMode.__members__)})")


def quantized_range(bits: int, mode: LinearQuantMode) -> Tuple[int, int]:
    """The integer range ``(qmin, qmax)`` of ``bits``-bit values in ``mode``.

    Args:
        bits: bit width.
        mode: the quantization mode.

    Returns:
        ``(qmin, qmax)``, both inclusive.

    Example:
        >>> quantized_range(8, LinearQuantMode.SYMMETRIC), quantized_range(8, LinearQuantMode.SYMMETRIC_RESTRICTED)
        ((-128, 127), (-127, 127))
        >>> quantized_range(4, LinearQuantMode.ASYMMETRIC_UNSIGNED)
        (0, 15)
    """
    if mode == LinearQuantMode.ASYMMETRIC_UNSIGNED:
        return 0, 2 ** bits - 1
    qmax = 2 ** (bits - 1) - 1
    return (-qmax if mode == LinearQuantMode.SYMMETRIC_RESTRICTED else -qmax - 1), qmax


def _as_tensor(x: Number) -> torch.Tensor:
    t = torch.as_tensor(x)
    return t if t.is_floating_point() else t.to(torch.float32)


def symmetric_params(bits: int, saturation: Number, restricted: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(scale, zero_point)`` of symmetric quantization with saturation value(s) ``saturation`` (>= 0).

    Args:
        bits: bit width.
        saturation: the largest magnitude to represent; a tensor gives one scale per entry (per channel).
        restricted: use ``2^(b-1) - 1`` steps on each side (``SYMMETRIC_RESTRICTED``).

    Returns:
        ``(scale, zero_point)``; the zero point is 0, and a saturation of 0 gives scale 1.

    Raises:
        ValueError: a negative saturation.

    Example:
        >>> symmetric_params(8, 4.0), symmetric_params(8, 4.0, restricted=True)[0]
        ((tensor(31.8750), tensor(0.)), tensor(31.7500))
    """
    sat = _as_tensor(saturation)
    if bool((sat < 0).any()):
        raise ValueError("saturation must be >= 0")
    n = (2 ** (bits - 1) - 1) if restricted else (2 ** bits - 1) / 2
    sat = torch.where(sat == 0, torch.full_like(sat, n), sat)
    scale = n / sat
    return scale, torch.zeros_like(scale)


def asymmetric_params(bits: int, minimum: Number, maximum: Number,
                      signed: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(scale, zero_point)`` of asymmetric quantization of ``[minimum, maximum]`` (widened to include 0).

    Args:
        bits: bit width.
        minimum: the range's low end (a tensor gives per-channel parameters).
        maximum: the range's high end.
        signed: ``ASYMMETRIC_SIGNED`` (the zero point is shifted by ``2^(b-1)``).

    Returns:
        ``(scale, zero_point)`` in Distiller's convention; an empty range gives scale 1.

    Raises:
        ValueError: ``minimum > maximum``.

    Example:
        >>> asymmetric_params(8, -2.0, 10.0), asymmetric_params(8, -2.0, 10.0, signed=True)[1]
        ((tensor(21.2500), tensor(-42.)), tensor(86.))
    """
    lo, hi = _as_tensor(minimum), _as_tensor(maximum)
    lo, hi = torch.broadcast_tensors(lo, hi)
    if bool((lo > hi).any()):
        raise ValueError("minimum must not exceed maximum")
    n = 2 ** bits - 1
    lo = torch.clamp(lo, max=0.0)
    hi = torch.clamp(hi, min=0.0)
    diff = hi - lo
    diff = torch.where(diff == 0, torch.full_like(diff, n), diff)
    scale = n / diff
    zero_point = torch.round(scale * lo)
    if signed:
        zero_point = zero_point + 2 ** (bits - 1)
    return scale, zero_point


class QuantParams(NamedTuple):
    """Everything needed to quantize a tensor: Distiller-convention scale and zero point, integer range.

    Args:
        scale: multiplies ``x`` (a scalar tensor, or one per channel).
        zero_point: subtracted after scaling.
        qmin: lowest integer value.
        qmax: highest integer value.

    Example:
        >>> p = quant_params(8, LinearQuantMode.SYMMETRIC, -1.0, 2.0)
        >>> round(p.scale.item(), 4), p.zero_point.item(), p.qmin, p.qmax
        (63.75, 0.0, -128, 127)
    """

    scale: torch.Tensor
    zero_point: torch.Tensor
    qmin: int
    qmax: int


def quant_params(bits: int, mode: LinearQuantMode, minimum: Number, maximum: Number) -> QuantParams:
    """Quantization parameters for the range ``[minimum, maximum]`` (tensors give per-channel parameters).

    Args:
        bits: bit width.
        mode: the quantization mode.
        minimum: the range's low end.
        maximum: the range's high end.

    Returns:
        The :class:`QuantParams`, scale and zero point as float32 tensors.

    Raises:
        ValueError: a negative saturation or ``minimum > maximum``.

    Example:
        >>> lows, highs = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 5.1])
        >>> p = quant_params(8, LinearQuantMode.ASYMMETRIC_UNSIGNED, lows, highs)
        >>> p.scale.tolist(), p.zero_point.tolist(), (p.qmin, p.qmax)    # one scale per channel
        ([127.5, 50.0], [-128.0, 0.0], (0, 255))
    """
    qmin, qmax = quantized_range(bits, mode)
    if mode.symmetric:
        sat = torch.maximum(_as_tensor(minimum).abs(), _as_tensor(maximum).abs())
        scale, zp = symmetric_params(bits, sat, restricted=mode == LinearQuantMode.SYMMETRIC_RESTRICTED)
    else:
        scale, zp = asymmetric_params(bits, minimum, maximum, signed=mode == LinearQuantMode.ASYMMETRIC_SIGNED)
    return QuantParams(scale.to(torch.float32), zp.to(torch.float32), qmin, qmax)


def _stat(stats: Mapping[str, Any], key: str, clip: ClipMode) -> torch.Tensor:
    if key not in stats or stats[key] is None:
        raise KeyError(f"clipping mode {clip.name} needs the statistic {key!r}, which these statistics lack"
                       + (" (collect them with the second calibration pass)" if key == "b" else ""))
    return _as_tensor(stats[key]).to(torch.float64)


def clip_range(stats: Mapping[str, Any], clip: ClipMode, bits: int, mode: LinearQuantMode,
               n_stds: Optional[float] = None, half_range: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ``(min, max)`` to quantize, chosen from statistics by ``clip`` (see the module docstring).

    Values may be floats or tensors (per-channel statistics broadcast). ``half_range`` declares a one-sided
    (non-negative) tensor: the minimum becomes 0 and ACIQ uses its one-sided tables.

    Args:
        stats: the tensor's statistics (:func:`tensor_stats`, or an entry of a calibration statistics file).
        clip: the clipping mode.
        bits: bit width (ACIQ's tables depend on it).
        mode: the quantization mode (ACIQ clips symmetric ranges around zero).
        n_stds: the ``n`` of N_STD.
        half_range: the tensor is non-negative.

    Returns:
        ``(min, max)`` as float32 tensors.

    Raises:
        KeyError: a statistic the mode needs is missing.
        ValueError: N_STD without a positive ``n_stds``.

    Example:
        >>> stats = {"min": -5.0, "max": 9.0, "avg_min": -1.0, "avg_max": 2.0, "mean": 0.5, "std": 1.0}
        >>> [float(v) for v in clip_range(stats, ClipMode.AVG, 8, LinearQuantMode.ASYMMETRIC_UNSIGNED)]
        [-1.0, 2.0]
        >>> [float(v) for v in clip_range(stats, ClipMode.N_STD, 8, LinearQuantMode.ASYMMETRIC_UNSIGNED, n_stds=3)]
        [-2.5, 3.5]
    """
    lo, hi = _stat(stats, "min", clip), _stat(stats, "max", clip)
    if clip == ClipMode.AVG:
        lo, hi = _stat(stats, "avg_min", clip), _stat(stats, "avg_max", clip)
    elif clip == ClipMode.N_STD:
        if n_stds is None or n_stds <= 0:
            raise ValueError("clipping mode N_STD needs clip_n_stds > 0")
        mean, std = _stat(stats, "mean", clip), _stat(stats, "std", clip)
        lo = torch.maximum(lo, mean - n_stds * std)
        hi = torch.minimum(hi, mean + n_stds * std)
    elif clip in (ClipMode.GAUSS, ClipMode.LAPLACE):
        table_bits = max(min(bits, 8), 1 if clip == ClipMode.GAUSS else 0)  # tables stop at 8 bits
        if clip == ClipMode.GAUSS:
            alpha = _stat(stats, "std", clip) * (ACIQ_GAUSS_POSITIVE if half_range else ACIQ_GAUSS)[table_bits]
        else:
            alpha = _stat(stats, "b", clip) * (ACIQ_LAPLACE_POSITIVE if half_range else ACIQ_LAPLACE)[table_bits]
        mean = _stat(stats, "mean", clip)
        # The ACIQ range is optimal for an unbounded distribution; values never seen (a sigmoid above 1) would
        # only waste grid steps, so it never extends past the observed extremes.
        if mode.symmetric:
            sat = torch.minimum(mean.abs() + alpha, torch.maximum(lo.abs(), hi.abs()))
            lo, hi = -sat, sat
        else:
            lo = torch.maximum(_stat(stats, "avg_min", clip), mean - alpha)
            hi = torch.minimum(lo + (alpha if half_range else 2 * alpha), hi)
    if half_range:
        lo = torch.zeros_like(lo)
    return lo.to(torch.float32), hi.to(torch.float32)


def quantize(x: torch.Tensor, params: QuantParams) -> torch.Tensor:
    """Integer values (as floats) ``clamp(round(scale * x - zero_point), qmin, qmax)``.

    Rounding is half to even (``torch.round``), as in Distiller.

    Args:
        x: the tensor.
        params: its quantization parameters.

    Returns:
        The integer grid values, in ``x``'s floating dtype.

    Example:
        >>> p = quant_params(8, LinearQuantMode.ASYMMETRIC_UNSIGNED, -2.0, 10.0)   # scale 21.25, zero point -42
        >>> quantize(torch.tensor([0.0, 0.1, 5.0, 20.0]), p).tolist()             # 20.0 is clamped to 255
        [42.0, 44.0, 148.0, 255.0]
    """
    return torch.clamp(torch.round(params.scale * x - params.zero_point), params.qmin, params.qmax)


def dequantize(q: torch.Tensor, params: QuantParams) -> torch.Tensor:
    """``(q + zero_point) / scale``.

    Args:
        q: integer grid values (as floats).
        params: the quantization parameters they were made with.

    Returns:
        The real values they stand for.

    Example:
        >>> p = quant_params(8, LinearQuantMode.ASYMMETRIC_UNSIGNED, -2.0, 10.0)
        >>> dequantize(torch.tensor([42.0, 127.0]), p).tolist()
        [0.0, 4.0]
    """
    return (q + params.zero_point) / params.scale


def _fused_ok(x: torch.Tensor, params: QuantParams) -> bool:
    return (x.dtype == torch.float32 and params.scale.numel() == 1 and params.qmax - params.qmin < 2 ** 16
            and not torch.jit.is_scripting())


def fake_quantize(x: torch.Tensor, params: QuantParams) -> torch.Tensor:
    """``dequantize(quantize(x))``: the value ``x`` takes on the integer grid, in floating point.

    Per-tensor fp32 cases use PyTorch's fused ``fake_quantize_per_tensor_affine`` kernel (one pass instead of
    five); it computes the same grid up to float rounding of ``1/scale``.

    Args:
        x: the tensor.
        params: its quantization parameters.

    Returns:
        A tensor like ``x`` whose values lie on the grid.

    Example:
        >>> p = quant_params(4, LinearQuantMode.SYMMETRIC, -1.0, 1.0)               # 7.5 steps per unit
        >>> [round(v, 4) for v in fake_quantize(torch.tensor([0.1, 0.5, 3.0]), p).tolist()]
        [0.1333, 0.5333, 0.9333]
    """
    if _fused_ok(x, params):
        return torch.fake_quantize_per_tensor_affine(x, (1.0 / params.scale).reshape(1),
                                                     (-params.zero_point).reshape(1).to(torch.int32),
                                                     params.qmin, params.qmax)
    return dequantize(quantize(x, params), params)


def tensor_stats(x: torch.Tensor, dim: Optional[int] = None) -> dict:
    """Statistics of one tensor in the shape :func:`clip_range` reads.

    With ``dim=None`` the samples are the vectors along the last dimension (a 1-D tensor's elements are its
    samples). With ``dim=0`` every statistic is per slice along dim 0 (per output channel of a weight) and a
    tensor; ``avg_min``/``avg_max`` then equal ``min``/``max``.
    """
    x = x.detach().to(torch.float64)
    if dim == 0:
        rows = x.reshape(x.shape[0], -1)
        mn, mx = rows.amin(1), rows.amax(1)
        mean = rows.mean(1)
        std = rows.std(1, unbiased=False) if rows.shape[1] > 1 else torch.zeros_like(mean)
        b = (rows - mean.unsqueeze(1)).abs().mean(1)
        return {"min": mn, "max": mx, "avg_min": mn, "avg_max": mx, "mean": mean, "std": std, "b": b}
    rows = x.reshape(-1, x.shape[-1]) if x.dim() >= 2 else x.reshape(-1, 1)
    mean = x.mean()
    return {"min": x.min(), "max": x.max(), "avg_min": rows.amin(1).mean(), "avg_max": rows.amax(1).mean(),
            "mean": mean, "std": x.std(unbiased=False) if x.numel() > 1 else torch.zeros_like(mean),
            "b": (x - mean).abs().mean()}
