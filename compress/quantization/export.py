"""Real compressed models: INT8 and FP16 weights that make recurrent models smaller and faster on CPU.

:func:`export_model` turns a float model (``nn.LSTM``/``nn.GRU`` or modular layers, ``nn.Linear``,
``nn.Embedding``: the embedding and the decoder included) into one whose weights are stored as int8 (with
fp32 scales) or fp16, and :func:`save_quantized`/:func:`load_quantized` write and read it.

**Which kernels, and why.** ``torch.ao.quantization`` (``quantize_dynamic`` and its modules) is deprecated and
due for removal, so nothing here imports it. The matrix products call PyTorch's own fbgemm kernels directly:
``torch.ops.quantized.linear_dynamic`` (int8 weights, the activation quantized per tensor inside the kernel)
and ``torch.ops.quantized.linear_dynamic_fp16``; the recurrence of an all-int8 or all-fp16 layer runs in
ATen's C++ loop (``torch.quantized_lstm``/``torch.quantized_gru`` over the same packed weights), so Python
runs once per sequence, not per time step. Of the CPU paths tried these were the only ones faster than plain
fp32 matmul (``_weight_int8pack_mm``, torchao's int8 weight-only path, and ``torch._int_mm`` were slower;
``examples/bench_quant.py`` times the export, and ``examples/README.md`` has the figures); torchao is also an
extra dependency. What lasts is the **file format**: plain int8/fp16 tensors and fp32 scales, never
packed kernel objects. Packing happens lazily, in memory, at the first call; if the kernels are missing (a
future PyTorch, a CUDA tensor, a build without fbgemm) the same files run through a portable path
(de-quantize and ``F.linear``: correct, not faster), so only this module would change to adopt another kernel.

Activations are quantized dynamically by the kernel (per tensor, per call), and the gate arithmetic of the
recurrent layers runs in fp32; the integer *weights* are exactly those of the simulated
:class:`~compress.quantization.PostTrainLinearQuantizer` with the same settings. ``reduce_range=True``
(default) uses 7-bit activations as ``torch.ao`` does on x86, which avoids int16 saturation in fbgemm's
AVX2 kernels; pass ``False`` on CPUs with VNNI for one more bit.

The exported model is for inference (no gradients; dropout between recurrent layers is not applied).
Loading needs the float model's *code* (an instance of the same class, any weights): the file holds tensors
and plain data only and loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import abc
import copy
import logging
import os
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from compress import options
from compress.errors import ArgumentError, CheckpointError, describe
from compress.io.files import atomic_write, safe_torch_load
from compress.modules.rnn import (
    ModularGRU,
    ModularGRUCell,
    ModularLSTM,
    ModularLSTMCell,
    _ModularRNN,
    convert_to_modular,
)
from compress.quantization.linear import (
    ClipMode,
    LinearQuantMode,
    parse_clip_mode,
    parse_mode,
)
from compress.quantization.wrappers import quantize_weight

log = logging.getLogger(__name__)

__all__ = ["WeightFormat", "QuantizedLinear", "QuantizedEmbedding", "QuantizedLSTM", "QuantizedGRU",
           "QuantizedLSTMCell", "QuantizedGRUCell", "export_model", "save_quantized", "load_quantized",
           "quantized_state", "model_from_quantized_state", "kernels_available"]

FORMAT = "compress.quantized"
KINDS = ("int8", "fp16", "fp32")


@dataclass(frozen=True)
class WeightFormat:
    """How one weight is stored in the exported model.

    Args:
        kind: ``'int8'``, ``'fp16'`` or ``'fp32'``.
        bits: for int8: the bit width of the values (≤ 8; fewer bits still take a byte).
        mode: for int8: the :class:`LinearQuantMode` (asymmetric weights are stored with a zero point).
        per_channel: for int8: one scale per output channel (embedding row).
        clip: for int8: clipping of the weight range (as the quantizer's ``also_clip_weights``).
        n_stds: for ``N_STD`` clipping.

    Raises:
        ArgumentError: an unknown ``kind``, or int8 ``bits`` outside [2, 8].

    Example:
        >>> WeightFormat("int8", bits=4, mode=LinearQuantMode.ASYMMETRIC_UNSIGNED).to_dict()
        {'kind': 'int8', 'bits': 4, 'mode': 'ASYMMETRIC_UNSIGNED', 'per_channel': True, 'clip': 'NONE', 'n_stds': None}
        >>> WeightFormat.from_dict({"kind": "int8", "mode": "asym_s"}).mode
        <LinearQuantMode.ASYMMETRIC_SIGNED: 4>
    """

    kind: str = "int8"
    bits: int = 8
    mode: LinearQuantMode = LinearQuantMode.SYMMETRIC
    per_channel: bool = True
    clip: ClipMode = ClipMode.NONE
    n_stds: Optional[float] = None

    def __post_init__(self):
        options.choice("kind", self.kind, KINDS)
        options.integer("bits", self.bits)
        if self.kind == "int8" and not 2 <= self.bits <= 8:
            raise ArgumentError("bits", f"int8 storage holds 2 to 8 bits, got {self.bits}")
        if not isinstance(self.mode, LinearQuantMode):
            raise ArgumentError("mode", f"expected a LinearQuantMode, got {describe(self.mode)}")
        options.boolean("per_channel", self.per_channel)
        if not isinstance(self.clip, ClipMode):
            raise ArgumentError("clip", f"expected a ClipMode, got {describe(self.clip)}")
        options.optional(options.number, "n_stds", self.n_stds, minimum=0, min_open=True)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["mode"], d["clip"] = self.mode.name, self.clip.name
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WeightFormat:
        """The format :meth:`to_dict` wrote; ``ArgumentError`` naming the field of anything else."""
        d = dict(options.fields((), d, [f.name for f in fields(cls)]))
        d["mode"] = parse_mode(d.get("mode", "SYMMETRIC")).weights
        d["clip"] = parse_clip_mode(d.get("clip", "NONE"))
        return cls(**d)


FormatSpec = Union[str, WeightFormat, Callable[[str], Optional[WeightFormat]]]


def kernels_available() -> Dict[str, bool]:
    """Which fast CPU kernels this PyTorch offers (``int8``, ``fp16``, ``rnn``: the C++ recurrent loop).

    Without them an exported model still runs, through a portable (slower) path.

    Returns:
        ``{'int8': bool, 'fp16': bool, 'rnn': bool}``.

    Example:
        >>> sorted(kernels_available())
        ['fp16', 'int8', 'rnn']
    """
    ops = torch.ops.quantized
    return {"int8": hasattr(ops, "linear_dynamic") and hasattr(ops, "linear_prepack"),
            "fp16": hasattr(ops, "linear_dynamic_fp16") and hasattr(ops, "linear_prepack_fp16"),
            "rnn": hasattr(torch, "quantized_lstm") and hasattr(ops, "make_quantized_cell_params_dynamic")}


_warned: Dict[str, bool] = {}


def _warn_once(key: str, message: str) -> None:
    if not _warned.get(key):
        _warned[key] = True
        log.warning(message)


# ---------------------------------------------------------------------------------------------- matrices
class QuantizedLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` stored as int8 (+ fp32 scales and zero points), fp16 or fp32.

    Buffers: ``qweight`` (the stored values), ``scale`` and, for asymmetric modes, ``zero_point`` (int8 only,
    PyTorch's convention ``W = (qweight - zero_point) * scale``, per row or one), ``bias`` (fp32). ``weight`` returns
    the
    float weight (materialised: for code that reads ``module.weight``, e.g. a model's ``init_hidden``).

    Args:
        in_features: input features.
        out_features: output features.
        fmt: the :class:`WeightFormat`.
        bias: whether there is a bias.
        reduce_range: 7-bit activations in the int8 kernel (see the module docstring).

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> linear = nn.Linear(4, 3)
        >>> q = QuantizedLinear.from_float(linear.weight.detach(), linear.bias.detach(), WeightFormat("int8"))
        >>> x = torch.randn(2, 4)
        >>> q.qweight.dtype, bool((q(x) - linear(x)).abs().max() < 0.05)
        (torch.int8, True)
    """

    def __init__(self, in_features: int, out_features: int, fmt: WeightFormat, bias: bool = True,
                 reduce_range: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.fmt, self.reduce_range = in_features, out_features, fmt, reduce_range
        dtype = {"int8": torch.int8, "fp16": torch.float16, "fp32": torch.float32}[fmt.kind]
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=dtype))
        _register_scales(self, out_features, fmt)
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._packed: Optional[Tuple[Any, Any]] = None  # (key, packed params): memory only, never saved

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: Optional[torch.Tensor], fmt: WeightFormat,
                   reduce_range: bool = True) -> QuantizedLinear:
        """Store ``weight`` (``(out, in)``) and ``bias`` in format ``fmt``."""
        m = cls(weight.shape[1], weight.shape[0], fmt, bias is not None, reduce_range)
        m.set_weight(weight, bias)
        return m

    def set_weight(self, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
        w = weight.detach()
        if self.fmt.kind == "int8":
            self.qweight, self.scale, self.zero_point = _int8_storage(w, self.fmt)
        else:
            self.qweight = w.to(torch.float16 if self.fmt.kind == "fp16" else torch.float32).clone()
        if bias is not None:
            self.bias = bias.detach().float().clone()
        self._packed = None

    @property
    def weight(self) -> torch.Tensor:
        return _dequantize_rows(self.qweight, self.scale, self.zero_point)

    def packed(self) -> Optional[Any]:
        """The fbgemm-packed weight for the current tensors (built once and cached), or ``None``."""
        if self.fmt.kind == "fp32" or self.qweight.device.type != "cpu":
            return None
        key = (self.qweight.data_ptr(), None if self.bias is None else self.bias.data_ptr())
        if self._packed is not None and self._packed[0] == key:
            return self._packed[1]
        packed = _pack(self.qweight, self.scale, self.zero_point, self.bias, self.fmt.kind)
        self._packed = (key, packed)
        return packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self.packed() if x.device.type == "cpu" and x.dtype == torch.float32 else None
        if packed is not None:
            shape = x.shape
            x2 = x.reshape(-1, shape[-1]) if x.dim() != 2 else x
            if self.fmt.kind == "int8":
                y = torch.ops.quantized.linear_dynamic(x2, packed, self.reduce_range)
            else:
                y = torch.ops.quantized.linear_dynamic_fp16(x2, packed)
            return y.reshape(*shape[:-1], self.out_features) if x.dim() != 2 else y
        if self.fmt.kind == "fp16" and x.is_cuda:  # a real half-precision product on the GPU
            bias = None if self.bias is None else self.bias.half()
            return F.linear(x.half(), self.qweight, bias).to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, {_fmt_repr(self.fmt)}, "
                f"bias={self.bias is not None}")


def _register_scales(module: nn.Module, rows: int, fmt: WeightFormat) -> None:
    channels = rows if fmt.per_channel else 1
    int8 = fmt.kind == "int8"
    module.register_buffer("scale", torch.ones(channels) if int8 else None)
    # symmetric weights have zero points of 0: nothing to store
    module.register_buffer("zero_point", torch.zeros(channels, dtype=torch.int8)
                           if int8 and not fmt.mode.symmetric else None)


def _fmt_repr(fmt: WeightFormat) -> str:
    if fmt.kind != "int8":
        return fmt.kind
    return f"int8 ({fmt.bits} bits, {fmt.mode.name}, {'per channel' if fmt.per_channel else 'per tensor'})"


def _int8_storage(w: torch.Tensor, fmt: WeightFormat) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """int8 values, scales and zero points (PyTorch convention) of the quantizer's integer weights."""
    q, p = quantize_weight(w, fmt.bits, fmt.mode, fmt.per_channel, fmt.clip, fmt.n_stds)
    scale = (1.0 / p.scale).reshape(-1).float()
    zero_point = (-p.zero_point).reshape(-1)
    if fmt.mode == LinearQuantMode.ASYMMETRIC_UNSIGNED:  # [0, 2^b - 1] → the signed byte range, same values
        shift = 2 ** (fmt.bits - 1)
        q, zero_point = q - shift, zero_point - shift
    return q.to(torch.int8), scale, None if fmt.mode.symmetric else zero_point.round().to(torch.int8)


def _dequantize_rows(q: torch.Tensor, scale: Optional[torch.Tensor],
                     zero_point: Optional[torch.Tensor]) -> torch.Tensor:
    if scale is None:
        return q.float()
    shape = (-1,) + (1,) * (q.dim() - 1)
    if zero_point is None:
        return q.float() * scale.reshape(shape)
    return (q.float() - zero_point.reshape(shape).float()) * scale.reshape(shape)


def _pack(qweight, scale, zero_point, bias, kind: str) -> Optional[Any]:
    available = kernels_available()
    if not available[kind]:
        _warn_once(kind, f"no fbgemm {kind} kernel in this PyTorch; exported layers run the portable "
                         f"(de-quantize + F.linear) path")
        return None
    try:
        with warnings.catch_warnings():
            # Packing goes through a quantized-dtype tensor, whose creation functions PyTorch now flags as
            # deprecated (pytorch#184982); the saved format never contains one.
            warnings.simplefilter("ignore", UserWarning)
            if kind == "fp16":
                return torch.ops.quantized.linear_prepack_fp16(qweight.float(), bias)
            if zero_point is None:
                zero_point = torch.zeros(scale.shape, dtype=torch.long)
            if scale.numel() == 1:
                qt = torch._make_per_tensor_quantized_tensor(qweight, float(scale), int(zero_point))
            else:
                qt = torch._make_per_channel_quantized_tensor(qweight, scale.double(), zero_point.long(), 0)
            return torch.ops.quantized.linear_prepack(qt, bias)
    except (RuntimeError, AttributeError) as exc:
        _warn_once(kind + "-pack", f"cannot pack {kind} weights for the fast kernel ({exc}); using the portable path")
        return None


class QuantizedEmbedding(nn.Module):
    """An embedding table stored as int8 rows (with per-row or one scale) or fp16; lookups de-quantize only
    the rows they read.

    Args:
        num_embeddings: rows.
        embedding_dim: columns.
        fmt: the :class:`WeightFormat`.
        padding_idx: as ``nn.Embedding`` (only its output meaning; the table is fixed).

    Example:
        >>> embedding = nn.Embedding(10, 4)
        >>> q = QuantizedEmbedding.from_float(embedding, WeightFormat("fp16"))
        >>> ids = torch.tensor([1, 7])
        >>> q.qweight.dtype, torch.allclose(q(ids), embedding(ids), atol=1e-3)
        (torch.float16, True)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, fmt: WeightFormat, padding_idx: Optional[int] = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.fmt, self.padding_idx = fmt, padding_idx
        dtype = {"int8": torch.int8, "fp16": torch.float16, "fp32": torch.float32}[fmt.kind]
        self.register_buffer("qweight", torch.zeros(num_embeddings, embedding_dim, dtype=dtype))
        _register_scales(self, num_embeddings, fmt)

    @classmethod
    def from_float(cls, embedding: nn.Embedding, fmt: WeightFormat) -> QuantizedEmbedding:
        m = cls(embedding.num_embeddings, embedding.embedding_dim, fmt, embedding.padding_idx)
        w = embedding.weight.detach()
        if fmt.kind == "int8":
            m.qweight, m.scale, m.zero_point = _int8_storage(w, fmt)
        else:
            m.qweight = w.to(m.qweight.dtype).clone()
        return m

    @property
    def weight(self) -> torch.Tensor:
        return _dequantize_rows(self.qweight, self.scale, self.zero_point)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        rows = self.qweight[input].float()
        if self.scale is None:
            return rows
        if self.scale.numel() == 1:
            return (rows if self.zero_point is None else rows - self.zero_point.float()) * self.scale
        if self.zero_point is None:
            return rows * self.scale[input].unsqueeze(-1)
        return (rows - self.zero_point[input].unsqueeze(-1).float()) * self.scale[input].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {_fmt_repr(self.fmt)}"


# ---------------------------------------------------------------------------------------------- recurrence
class QuantizedLSTMCell(nn.Module):
    """The real counterpart of :class:`~compress.modules.ModularLSTMCell`: two :class:`QuantizedLinear`
    (``fc_gate_x``, ``fc_gate_h``) and the gate arithmetic in fp32, fused into few operations."""

    def __init__(self, fc_gate_x: QuantizedLinear, fc_gate_h: QuantizedLinear):
        super().__init__()
        self.fc_gate_x, self.fc_gate_h = fc_gate_x, fc_gate_h
        self.hidden_size = fc_gate_h.in_features

    def recurrence(self, gates_x: torch.Tensor, state):
        h, c = state
        gates = self.fc_gate_h(h) + gates_x
        hsz = self.hidden_size
        s = gates.sigmoid()
        g = gates[..., 2 * hsz:3 * hsz].tanh()
        c = torch.addcmul(s[..., hsz:2 * hsz] * c, s[..., :hsz], g)
        return s[..., 3 * hsz:] * c.tanh(), c


class QuantizedGRUCell(nn.Module):
    """The real counterpart of :class:`~compress.modules.ModularGRUCell`."""

    def __init__(self, fc_gate_x: QuantizedLinear, fc_gate_h: QuantizedLinear):
        super().__init__()
        self.fc_gate_x, self.fc_gate_h = fc_gate_x, fc_gate_h
        self.hidden_size = fc_gate_h.in_features

    def recurrence(self, gates_x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        hsz = self.hidden_size
        gates_h = self.fc_gate_h(state)
        rz = (gates_x[..., :2 * hsz] + gates_h[..., :2 * hsz]).sigmoid()
        n = torch.addcmul(gates_x[..., 2 * hsz:], rz[..., :hsz], gates_h[..., 2 * hsz:]).tanh()
        return torch.lerp(n, state, rz[..., hsz:])  # n + z * (h - n)


class _QuantizedRNN(_ModularRNN, abc.ABC):
    """Shared forward of the real recurrent layers: ATen's C++ loop when possible, else the Python loop of
    :class:`~compress.modules.ModularLSTM` over the quantized cells."""

    quantized_cell: type = QuantizedLSTMCell

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, bias: bool, batch_first: bool,
                 bidirectional: bool, formats: Callable[[int, int, str], WeightFormat], reduce_range: bool = True):
        gates = self.cell_class.gates

        def make(layer: int, direction: int, n_in: int) -> nn.Module:
            x = QuantizedLinear(n_in, gates * hidden_size, formats(layer, direction, "fc_gate_x"), bias, reduce_range)
            h = QuantizedLinear(hidden_size, gates * hidden_size, formats(layer, direction, "fc_gate_h"), bias,
                                reduce_range)
            return self.quantized_cell(x, h)

        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, 0.0, bidirectional, cell_factory=make)
        self.reduce_range = reduce_range
        #: run the recurrence in ATen's C++ loop when the kernels allow it (False: always the Python loop)
        self.use_aten_loop = True
        self._cell_params: Optional[Tuple[Any, list]] = None

    def _all_cells(self):
        cells = list(self.cells)
        if self.bidirectional:  # ATen's order: layer by layer, forward then reverse
            cells = [c for pair in zip(self.cells, self.cells_reverse) for c in pair]
        return cells

    def _aten_params(self) -> Optional[list]:
        cells = self._all_cells()
        kinds = {lin.fmt.kind for c in cells for lin in (c.fc_gate_x, c.fc_gate_h)}
        if len(kinds) != 1 or kinds == {"fp32"} or not kernels_available()["rnn"]:
            return None
        packs = [(c.fc_gate_x.packed(), c.fc_gate_h.packed()) for c in cells]
        if any(p is None for pair in packs for p in pair):
            return None
        key = tuple(id(p) for pair in packs for p in pair)
        if self._cell_params is not None and self._cell_params[0] == key:
            return self._cell_params[1]
        params = []
        for c, (p_ih, p_hh) in zip(cells, packs):
            if kinds == {"int8"}:
                zeros = torch.zeros(c.fc_gate_x.out_features)
                b_ih = c.fc_gate_x.bias if c.fc_gate_x.bias is not None else zeros
                b_hh = c.fc_gate_h.bias if c.fc_gate_h.bias is not None else zeros
                params.append(torch.ops.quantized.make_quantized_cell_params_dynamic(p_ih, p_hh, b_ih, b_hh,
                                                                                     self.reduce_range))
            else:
                params.append(torch.ops.quantized.make_quantized_cell_params_fp16(p_ih, p_hh))
        self._cell_params = (key, params)
        return params

    def forward(self, input, hx=None):
        if (self.use_aten_loop and torch.is_tensor(input) and input.device.type == "cpu"
                and input.dtype == torch.float32 and input.dim() == 3):
            params = self._aten_params()
            if params is not None:
                return self._aten_forward(input, hx, params)
        return super().forward(input, hx)

    def _aten_forward(self, input, hx, params):
        batch = input.size(0 if self.batch_first else 1)
        if hx is None:
            zeros = input.new_zeros(self.num_layers * self.num_directions, batch, self.hidden_size)
            hx = self._join_state(tuple(zeros.clone() for _ in range(self.cell_class.state_arity)))
        dtype = torch.qint8 if self.cells[0].fc_gate_x.fmt.kind == "int8" else torch.float16
        return self._aten_call(input, hx, params, dtype)

    @abc.abstractmethod
    def _aten_call(self, input, hx, params, dtype):
        """ATen's quantized recurrent kernel for this layer type (each subclass names its own)."""


class QuantizedLSTM(_QuantizedRNN):
    """A real INT8/FP16 ``nn.LSTM`` replacement (see the module docstring); build it with :func:`export_model`.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, bidirectional: as ``nn.LSTM``.
        formats: ``formats(layer, direction, 'fc_gate_x' | 'fc_gate_h')`` → :class:`WeightFormat`.
        reduce_range: 7-bit activations in the int8 kernels.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> lstm = nn.LSTM(4, 5, num_layers=2)
        >>> real = export_model(lstm, "int8")
        >>> x = torch.randn(3, 2, 4)
        >>> type(real).__name__, bool((real(x)[0] - lstm(x)[0]).abs().max() < 0.01)
        ('QuantizedLSTM', True)
    """

    mode = "LSTM"
    cell_class = ModularLSTMCell  # its gate count and state arity
    quantized_cell = QuantizedLSTMCell

    def _aten_call(self, input, hx, params, dtype):
        out, h, c = torch.quantized_lstm(input, list(hx), params, True, self.num_layers, 0.0, False,
                                         self.bidirectional, self.batch_first, dtype=dtype, use_dynamic=True)
        return out, (h, c)


class QuantizedGRU(_QuantizedRNN):
    """A real INT8/FP16 ``nn.GRU`` replacement; see :class:`QuantizedLSTM`.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> gru = nn.GRU(4, 5)
        >>> real = export_model(gru, "fp16")
        >>> x = torch.randn(3, 2, 4)
        >>> type(real).__name__, bool((real(x)[0] - gru(x)[0]).abs().max() < 0.01)
        ('QuantizedGRU', True)
    """

    mode = "GRU"
    cell_class = ModularGRUCell
    quantized_cell = QuantizedGRUCell

    def _aten_call(self, input, hx, params, dtype):
        return torch.quantized_gru(input, hx, params, True, self.num_layers, 0.0, False, self.bidirectional,
                                   self.batch_first)


# ---------------------------------------------------------------------------------------------- conversion
def _format_fn(spec: FormatSpec) -> Callable[[str], Optional[WeightFormat]]:
    if callable(spec) and not isinstance(spec, WeightFormat):
        return spec
    if isinstance(spec, str):
        if spec not in KINDS:
            raise ArgumentError("dtype", f"expected one of {', '.join(KINDS)}, got {spec!r}")
        spec = WeightFormat(spec)
    return lambda name: spec


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _rnn_from_float(rnn: _ModularRNN, prefix: str, fmt: Callable[[str], Optional[WeightFormat]],
                    reduce_range: bool, materialize: bool) -> Optional[_QuantizedRNN]:
    def cell_name(layer, direction, part):
        return _join(prefix, f"{'cells' if direction == 0 else 'cells_reverse'}.{layer}.{part}")

    def formats(layer, direction, part):
        return fmt(cell_name(layer, direction, part)) or WeightFormat("fp32")

    cls = QuantizedLSTM if isinstance(rnn, ModularLSTM) else QuantizedGRU
    q = cls(rnn.input_size, rnn.hidden_size, rnn.num_layers, rnn.bias, rnn.batch_first, rnn.bidirectional, formats,
            reduce_range)
    if materialize:
        pairs = ((q.cells, rnn.cells), (getattr(q, "cells_reverse", []), getattr(rnn, "cells_reverse", [])))
        for ours, theirs in pairs:
            for qc, fc in zip(ours, theirs):
                qc.fc_gate_x.set_weight(fc.fc_gate_x.weight, fc.fc_gate_x.bias)
                qc.fc_gate_h.set_weight(fc.fc_gate_h.weight, fc.fc_gate_h.bias)
    return q


def export_model(model: nn.Module, formats: FormatSpec = "int8", reduce_range: bool = True) -> nn.Module:
    """A real compressed copy of ``model`` (the model itself is not changed).

    Every ``nn.Linear``, ``nn.Embedding`` and ``nn.LSTM``/``nn.GRU`` (or modular layer) whose format is not fp32
    is replaced: linear layers by :class:`QuantizedLinear`, embeddings by :class:`QuantizedEmbedding`, recurrent
    layers by :class:`QuantizedLSTM`/:class:`QuantizedGRU`. A weight tied between an embedding and a linear
    layer (a tied decoder) is stored once when both get the same format.

    Args:
        model: a float model.
        formats: ``'int8'`` (symmetric, per channel), ``'fp16'``, ``'fp32'``, a :class:`WeightFormat`, or a
            function from a module name to a :class:`WeightFormat` (``None`` = fp32). Recurrent weights are
            named as in the modular layers: ``rnn.cells.0.fc_gate_x`` (input), ``rnn.cells.0.fc_gate_h``
            (recurrent), ``rnn.cells_reverse.0.*``.
        reduce_range: 7-bit activations in the int8 kernels (see the module docstring).

    Returns:
        The exported model, in eval mode.

    Raises:
        ArgumentError: an unknown format name.

    Example:
        >>> model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10))
        >>> real = export_model(model, lambda name: WeightFormat("fp16") if name == "0" else WeightFormat("int8"))
        >>> [type(m).__name__ for m in real], type(model[1]).__name__      # the float model is unchanged
        (['QuantizedEmbedding', 'QuantizedLinear'], 'Linear')
    """
    return _build_quantized(model, formats, reduce_range, materialize=True)


def _build_quantized(model: nn.Module, formats: FormatSpec, reduce_range: bool, *, materialize: bool,
                     record: Optional[Dict[str, Dict[str, Any]]] = None) -> nn.Module:
    """:func:`export_model`'s work; ``materialize=False`` builds the quantized structure without computing
    weights (to load a saved file into), ``record`` collects each module's format."""
    fmt = _format_fn(formats)
    record = record if record is not None else {}
    model = copy.deepcopy(model)
    model = convert_to_modular(model)
    shared: Dict[Tuple[int, WeightFormat], Tuple[torch.Tensor, ...]] = {}

    def convert(module: nn.Module, prefix: str) -> Optional[nn.Module]:
        if isinstance(module, (ModularLSTM, ModularGRU)):
            q = _rnn_from_float(module, prefix, fmt, reduce_range, materialize)
            kinds = {m.fmt.kind for m in q.modules() if isinstance(m, QuantizedLinear)}
            if kinds == {"fp32"}:
                return module.to_pytorch()  # nothing to compress: keep the fast native layer
            for name, sub in q.named_modules():
                if isinstance(sub, QuantizedLinear):
                    record[_join(prefix, name)] = sub.fmt.to_dict()
            return q
        f = fmt(prefix) if isinstance(module, (nn.Linear, nn.Embedding)) else None
        if f is None or f.kind == "fp32":
            return None
        record[prefix] = f.to_dict()
        if isinstance(module, nn.Linear):
            q = QuantizedLinear(module.in_features, module.out_features, f, module.bias is not None, reduce_range)
            if materialize:
                key = (id(module.weight), f)
                if key in shared:
                    q.qweight, q.scale, q.zero_point = shared[key]
                    if module.bias is not None:
                        q.bias = module.bias.detach().float().clone()
                else:
                    q.set_weight(module.weight, module.bias)
                    shared[key] = (q.qweight, q.scale, q.zero_point)
            return q
        q = QuantizedEmbedding(module.num_embeddings, module.embedding_dim, f, module.padding_idx)
        if materialize:
            key = (id(module.weight), f)
            if key in shared:
                q.qweight, q.scale, q.zero_point = shared[key]
            else:
                q = QuantizedEmbedding.from_float(module, f)
                shared[key] = (q.qweight, q.scale, q.zero_point)
        return q

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in list(module.named_children()):
            full = _join(prefix, name)
            new = convert(child, full)
            if new is not None:
                setattr(module, name, new)
            else:
                visit(child, full)

    root = convert(model, "")
    if root is not None:
        model = root
    else:
        visit(model, "")
    return model.eval()


def quantized_state(model: nn.Module, formats: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """What :func:`save_quantized` writes: the exported model's tensors and formats, as plain data.

    Args:
        model: a model returned by :func:`export_model`.
        formats: the per-module formats; default: read from the model's quantized modules.

    Returns:
        ``{'format', 'version', 'formats', 'reduce_range', 'state_dict'}`` (the tensors are the model's own).
    """
    if formats is None:
        formats = {}
        for name, m in model.named_modules():
            if isinstance(m, (QuantizedLinear, QuantizedEmbedding)):
                formats[name] = m.fmt.to_dict()
    reduce = {m.reduce_range for m in model.modules() if isinstance(m, QuantizedLinear)}
    return {"format": FORMAT, "version": 1, "formats": dict(formats),
            "reduce_range": reduce.pop() if len(reduce) == 1 else True, "state_dict": model.state_dict()}


def save_quantized(model: nn.Module, path: Union[str, os.PathLike],
                   formats: Optional[Mapping[str, Any]] = None) -> None:
    """Write an exported model's tensors and formats to ``path`` (atomically; plain data only).

    Args:
        model: a model returned by :func:`export_model`.
        path: the file.
        formats: the per-module formats; default: read from the model's quantized modules.
    """
    state = quantized_state(model, formats)
    with atomic_write(path) as f:
        torch.save(state, f)


def load_quantized(path: Union[str, os.PathLike], model: nn.Module) -> nn.Module:
    """Read a file written by :func:`save_quantized` into the structure of ``model``.

    Args:
        path: the file.
        model: a float model of the same architecture (any weights; it is not changed).

    Returns:
        The exported model, in eval mode, equal to the one saved.

    Raises:
        CheckpointError: the file is missing, foreign, unsafe, or does not fit ``model``.

    Example:
        >>> import tempfile
        >>> real = export_model(nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10)), "int8")
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "lm.int8.pt")
        ...     save_quantized(real, path)
        ...     back = load_quantized(path, nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10)))
        >>> ids = torch.tensor([[1, 2]])
        >>> torch.equal(back(ids), real(ids))
        True
    """
    path = os.fspath(path)
    state = safe_torch_load(path, "quantized model")
    if not isinstance(state, Mapping) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a compress quantized model (format {FORMAT!r})")
    try:
        options.fields((), state, ["format", "version", "formats", "reduce_range", "state_dict"])
        options.choice("version", state.get("version"), [1])
    except ArgumentError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return model_from_quantized_state(state, model, path)


def model_from_quantized_state(state: Mapping[str, Any], model: nn.Module, source: str) -> nn.Module:
    """The exported model that :func:`quantized_state` describes, built in the structure of ``model``.

    Args:
        state: ``formats``, ``reduce_range`` and ``state_dict`` as :func:`quantized_state` returns them.
        model: a float model of the same architecture (any weights; it is not changed).
        source: the file the state came from, for messages.

    Raises:
        CheckpointError: naming ``source`` and the field: the formats are damaged, or the tensors do not fit
            ``model``.
    """
    try:
        formats = {}
        for name, spec in options.mapping("formats", state.get("formats"), allow_empty=True).items():
            with options.under("formats", name):
                formats[name] = WeightFormat.from_dict(options.mapping((), spec, allow_empty=True))
        reduce_range = options.boolean("reduce_range", state.get("reduce_range", True))
        weights = options.mapping("state_dict", state.get("state_dict"), allow_empty=True)
        for key, value in weights.items():
            options.tensor(("state_dict", key), value)
    except ArgumentError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    try:
        skeleton = _build_quantized(model, lambda name: formats.get(name), reduce_range, materialize=False)
        for key, own in skeleton.state_dict().items():  # assign=True keeps the file's tensors as they are
            saved = weights.get(key)
            if torch.is_tensor(saved) and saved.dtype != own.dtype:
                raise ValueError(f"{key!r} is {saved.dtype} in the file, {own.dtype} in its format")
        skeleton.load_state_dict(weights, strict=True, assign=True)
    except Exception as exc:  # a format or tensor that does not fit the module it belongs to
        raise CheckpointError(f"{source}: does not fit this model: {type(exc).__name__}: "
                              f"{(str(exc).splitlines() or [''])[0]}") from None
    return skeleton.eval()
