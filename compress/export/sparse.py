"""The sparse model file: pruned weights cost only their nonzeros on disk.

An exported model (:func:`compress.quantization.export_model`: int8, fp16 or fp32) is written tensor by tensor in
whichever of three encodings is smallest for that tensor:

* ``dense``: the tensor as it is (scales, biases, and weights that are not sparse enough to gain);
* ``bitmask``: one bit per element saying where the nonzeros are (packed 8 to a byte), then the nonzero values
  in order; it costs ``numel/8 + nnz * itemsize`` bytes, so it wins at moderate sparsity;
* ``indices``: Deep Compression's relative indices (Han et al., ICLR 2016): for each nonzero, the gap to the
  previous one in one byte, with a filler entry (a stored zero) where a gap exceeds 256; it costs about
  ``nnz * (1 + itemsize)`` bytes, so it wins once fewer than one element in 8 is nonzero (above 87.5%
  sparsity, whatever the dtype: both store the values, and one byte per nonzero beats ``numel/8`` bytes).

"Zero" means the value a pruned weight is stored as: 0 for symmetric int8, the row's zero point for asymmetric
int8, and for floats ``0.0`` *or* ``-0.0`` (pruning by multiplying with a mask, as
:class:`~compress.sparsity.masks.MaskStore` does, leaves ``-0.0`` wherever a negative weight was pruned: about
half the zeros). Every stored value is kept bit for bit (NaNs included), so the file loads back into exactly the
tensors that :func:`~compress.quantization.save_quantized` would have written, with one exception: a float zero
loads as ``+0.0``. That changes no product or sum a model computes (``x + -0.0 == x + 0.0`` for every ``x``
except zero itself), so the loaded model's outputs are bit for bit those of the dense export; int8 tensors have
no signed zero and are identical in every bit. A tensor shared by two modules (a tied embedding and decoder) is
stored once.

The file is a ``torch.save`` dict of tensors and plain data (torch's format rather than safetensors: no new
dependency, the INT8 runtime already reads it, and it loads with ``weights_only=True``, so no code in it can
run). A SHA-256 over every stored tensor makes any damage an error instead of a silently different model.

Example:
    >>> import os, tempfile, torch
    >>> from compress.quantization import export_model
    >>> from compress_models import RNNModel
    >>> model = RNNModel("LSTM", 50, 16, 16, 2, 0.0, tie_weights=True).eval()
    >>> with torch.no_grad():
    ...     model.encoder.weight[:, 4:] = 0          # 75% of the tied embedding pruned
    >>> path = os.path.join(tempfile.mkdtemp(), "lm.sparse.pt")
    >>> records = save_sparse(export_model(model, "int8"), path)
    >>> [r.encoding for r in records if r.name == "encoder.qweight"]
    ['bitmask']
    >>> back = load_sparse(path, RNNModel("LSTM", 50, 16, 16, 2, 0.0, tie_weights=True))
    >>> bool((back.encoder.weight[:, 4:] == 0).all())
    True
"""
from __future__ import annotations

import hashlib
import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from tabulate import tabulate
from torch import nn

from compress.errors import ArgumentError, CheckpointError, describe
from compress.io.files import atomic_write, safe_torch_load
from compress.quantization.export import (
    QuantizedEmbedding,
    QuantizedLinear,
    model_from_quantized_state,
    quantized_state,
)

__all__ = ["FORMAT", "ENCODINGS", "TensorRecord", "encoded_sizes", "encode_tensor", "decode_tensor", "save_sparse",
           "load_sparse", "encoding_table"]

FORMAT = "compress.sparse"
VERSION = 1
#: The encodings, in order of preference when two are the same size.
ENCODINGS = ("dense", "bitmask", "indices")
#: The largest gap one ``indices`` byte holds (it stores ``gap - 1``).
MAX_GAP = 256


@dataclass(frozen=True)
class TensorRecord:
    """How one tensor was stored.

    Args:
        name: the state-dict key.
        shape: the tensor's shape.
        dtype: its dtype (``'int8'``, ``'float16'``, ...).
        nonzeros: elements that differ from the tensor's zero (its background).
        encoding: ``'dense'``, ``'bitmask'``, ``'indices'``, or ``'shared'`` (the same tensor as ``shared_with``).
        nbytes: bytes of tensor data stored for it.
        shared_with: for ``'shared'``: the key that holds the data.

    Example:
        >>> TensorRecord("w", (4, 4), "int8", 4, "bitmask", 6).density
        0.25
    """

    name: str
    shape: Tuple[int, ...]
    dtype: str
    nonzeros: int
    encoding: str
    nbytes: int
    shared_with: Optional[str] = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def density(self) -> float:
        """``nonzeros / numel`` (1 for an empty tensor)."""
        return self.nonzeros / self.numel if self.numel else 1.0


def encoded_sizes(numel: int, nonzeros: int, itemsize: int, index_entries: int) -> Dict[str, int]:
    """Bytes of tensor data each encoding stores for a tensor.

    Args:
        numel: its elements.
        nonzeros: elements that differ from its zero.
        itemsize: bytes per element.
        index_entries: entries of the ``indices`` encoding (``nonzeros`` plus the fillers of gaps over 256).

    Example:
        >>> encoded_sizes(1000, 200, 1, 200)      # 80% sparse int8: the bitmask wins
        {'dense': 1000, 'bitmask': 325, 'indices': 400}
        >>> encoded_sizes(1000, 30, 1, 30)        # 97% sparse: relative indices win
        {'dense': 1000, 'bitmask': 155, 'indices': 60}
    """
    return {"dense": numel * itemsize, "bitmask": (numel + 7) // 8 + nonzeros * itemsize,
            "indices": index_entries * (1 + itemsize)}


def _background_of(shape: Sequence[int], background: Optional[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """The dense tensor of the background: ``background`` per row (or one value), else zeros."""
    if background is None:
        return torch.zeros(shape, dtype=dtype)
    if len(shape) == 0:
        return background.reshape(()).clone()
    return background.reshape((-1,) + (1,) * (len(shape) - 1)).expand(*shape).clone()


def _check_background(background: Optional[torch.Tensor], shape: Sequence[int], dtype: torch.dtype) -> None:
    if background is None:
        return
    rows = shape[0] if len(shape) else 1
    if not torch.is_tensor(background) or background.dtype != dtype or background.numel() not in (1, rows):
        got = (f"{tuple(background.shape)} {background.dtype}" if torch.is_tensor(background)
               else type(background).__name__)
        raise ValueError(f"background must be one value or one per row ({rows}) of {dtype}, got {got}")


def _gap_steps(positions: torch.Tensor) -> torch.Tensor:
    """The ``indices`` entries (each ``gap - 1`` in a byte) reaching ``positions`` (sorted), fillers included."""
    gaps = torch.diff(positions, prepend=positions.new_tensor([-1]))
    per_gap = (gaps + MAX_GAP - 1) // MAX_GAP  # entries: the fillers of a long gap, then the nonzero itself
    steps = torch.full((int(per_gap.sum()),), MAX_GAP, dtype=torch.long)
    steps[torch.cumsum(per_gap, 0) - 1] = gaps - MAX_GAP * (per_gap - 1)
    return (steps - 1).to(torch.uint8)


def _positions_of(steps: torch.Tensor) -> torch.Tensor:
    return torch.cumsum(steps.long() + 1, 0) - 1


def encode_tensor(tensor: torch.Tensor, background: Optional[torch.Tensor] = None,
                  encoding: Optional[str] = None) -> Dict[str, Any]:
    """One tensor in the smallest encoding (or the one asked for), as plain data.

    Args:
        tensor: any tensor.
        background: the value of a pruned element: one, or one per row (an int8 row's zero point); default 0.
        encoding: force ``'dense'``, ``'bitmask'`` or ``'indices'`` (default: the smallest).

    Returns:
        ``{'encoding', ...}``: ``data`` (dense); ``shape``, ``values``, ``background`` and ``mask`` (bitmask: bits
        packed little-endian) or ``steps`` (indices: ``gap - 1`` per entry).

    Raises:
        ArgumentError: an unknown encoding, or a background that does not fit the tensor.

    Example:
        >>> entry = encode_tensor(torch.tensor([0., 0., 3., 0., 0., 0., 0., 0., 0., 5.]))
        >>> entry["encoding"], entry["values"].tolist()
        ('bitmask', [3.0, 5.0])
        >>> decode_tensor(entry).tolist()
        [0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0]
    """
    return _encode(tensor, background, encoding)[0]


def _encode(tensor: torch.Tensor, background: Optional[torch.Tensor],
            encoding: Optional[str]) -> Tuple[Dict[str, Any], int]:
    if encoding is not None and encoding not in ENCODINGS:
        raise ArgumentError("encoding", f"expected one of {', '.join(ENCODINGS)}, got {encoding!r}")
    tensor = tensor.detach().cpu()
    try:
        _check_background(background, tuple(tensor.shape), tensor.dtype)
    except ValueError as exc:
        raise ArgumentError("background", str(exc)) from None
    shape = list(tensor.shape)
    flat = tensor.contiguous().reshape(-1)
    # numeric comparison: a float zero of either sign is pruned, NaN is kept
    differs = flat != _background_of(tensor.shape, background, tensor.dtype).reshape(-1)
    positions = torch.nonzero(differs).reshape(-1)
    steps = _gap_steps(positions)
    sizes = encoded_sizes(flat.numel(), positions.numel(), tensor.element_size(), steps.numel())
    chosen = encoding or min(ENCODINGS, key=lambda e: (sizes[e], ENCODINGS.index(e)))
    if chosen == "dense":
        return {"encoding": "dense", "data": tensor.contiguous().clone()}, positions.numel()
    entry: Dict[str, Any] = {"encoding": chosen, "shape": shape,
                             "background": None if background is None else background.detach().cpu().clone()}
    if chosen == "bitmask":
        entry["mask"] = torch.from_numpy(np.packbits(differs.numpy(), bitorder="little"))
        entry["values"] = flat[differs].clone()
    else:
        entry["steps"] = steps
        entry["values"] = flat[_positions_of(steps)].clone()  # fillers read the background they stand on
    return entry, positions.numel()


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def decode_tensor(entry: Mapping[str, Any], max_numel: Optional[int] = None) -> torch.Tensor:
    """The tensor that :func:`encode_tensor` encoded, after checking that every part fits the others.

    Args:
        entry: what :func:`encode_tensor` returned.
        max_numel: the most elements the tensor may have (:func:`load_sparse`: the model's whole state); checked
            before anything is allocated, so a damaged shape cannot ask for more memory than the model has.

    Raises:
        ValueError: the entry is damaged (a missing or ill-typed part, a shape of more than ``max_numel``
            elements, a mask or index that does not match the values, a position outside the tensor); the message
            says which.

    Example:
        >>> t = torch.tensor([[7, 1, 7], [2, 2, 9]], dtype=torch.int8)
        >>> entry = encode_tensor(t, background=torch.tensor([7, 2], dtype=torch.int8), encoding="indices")
        >>> entry["values"].tolist(), torch.equal(decode_tensor(entry), t)
        ([1, 9], True)
    """
    _require(isinstance(entry, Mapping), f"expected an encoded tensor (a dict), found {type(entry).__name__}")
    encoding = entry.get("encoding")
    _require(encoding in ENCODINGS, f"unknown encoding {encoding!r}")
    if encoding == "dense":
        _require(torch.is_tensor(entry.get("data")), "a dense entry without its 'data' tensor")
        return entry["data"]
    shape, values = entry.get("shape"), entry.get("values")
    _require(isinstance(shape, (list, tuple)) and all(type(n) is int and n >= 0 for n in shape),
             f"bad shape {describe(shape)}")
    numel = math.prod(shape)
    _require(max_numel is None or numel <= max_numel,
             f"a shape of {numel} elements, more than the model's {max_numel}")
    _require(torch.is_tensor(values) and values.dim() == 1 and values.layout == torch.strided,
             "no 1-D 'values' tensor")
    _check_background(entry.get("background"), shape, values.dtype)
    if encoding == "bitmask":
        mask = entry.get("mask")
        _require(torch.is_tensor(mask) and mask.dtype == torch.uint8 and mask.dim() == 1
                 and mask.numel() == (numel + 7) // 8, f"the mask must be {(numel + 7) // 8} bytes (uint8)")
        bits = np.unpackbits(mask.numpy(), bitorder="little")
        _require(not bits[numel:].any(), "bits set beyond the end of the tensor")
        where = torch.from_numpy(bits[:numel].astype(bool))
        _require(int(where.sum()) == values.numel(),
                 f"the mask marks {int(where.sum())} nonzeros but {values.numel()} values are stored")
    else:
        steps = entry.get("steps")
        _require(torch.is_tensor(steps) and steps.dtype == torch.uint8 and steps.dim() == 1,
                 "no 1-D uint8 'steps' tensor")
        _require(steps.numel() == values.numel(),
                 f"{steps.numel()} index entries but {values.numel()} values")
        where = _positions_of(steps)
        _require(where.numel() == 0 or int(where[-1]) < numel,
                 f"an index points past the end of the tensor ({numel} elements)")
    out = _background_of(shape, entry.get("background"), values.dtype).reshape(-1)  # only once all fits
    out[where] = values
    return out.reshape(shape)


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    return memoryview(t.contiguous().reshape(-1).view(torch.uint8).numpy())


def _checksum(entries: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    for name, entry in entries.items():
        digest.update(repr(name).encode() + b"\0")
        if not isinstance(entry, Mapping):
            digest.update(repr(entry).encode())
            continue
        for key in sorted(entry, key=repr):
            value = entry[key]
            digest.update(repr(key).encode() + b"\0")
            if torch.is_tensor(value):
                digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
                digest.update(_tensor_bytes(value))
            else:
                digest.update(repr(value).encode())
    return digest.hexdigest()


def _storage_key(t: torch.Tensor) -> Tuple[Any, ...]:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


def _backgrounds(model: nn.Module) -> Dict[str, torch.Tensor]:
    """Zero points of the asymmetric int8 weights, by state-dict key: what their pruned elements are stored as."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (QuantizedLinear, QuantizedEmbedding)) and m.zero_point is not None:
            out[f"{name}.qweight" if name else "qweight"] = m.zero_point
    return out


def _entry_bytes(entry: Mapping[str, Any]) -> int:
    return sum(v.numel() * v.element_size() for v in entry.values() if torch.is_tensor(v))


def save_sparse(model: nn.Module, path: Union[str, os.PathLike]) -> List[TensorRecord]:
    """Write an exported model to ``path`` (atomically), every tensor in its smallest encoding.

    Args:
        model: a model returned by :func:`~compress.quantization.export_model` (``'int8'``, ``'fp16'`` or
            ``'fp32'``); a plain float model is its own fp32 export.
        path: the file.

    Returns:
        One :class:`TensorRecord` per state-dict key, in order.

    Raises:
        ArgumentError: the model's state holds something other than tensors.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "w.pt")
        >>> pruned = torch.nn.Linear(64, 64, bias=False)
        >>> _ = torch.nn.init.zeros_(pruned.weight)
        >>> [(r.name, r.encoding, r.nbytes) for r in save_sparse(pruned, path)]
        [('weight', 'indices', 0)]
    """
    state = quantized_state(model)
    backgrounds = _backgrounds(model)
    entries: Dict[str, Dict[str, Any]] = OrderedDict()
    records: List[TensorRecord] = []
    first_owner: Dict[Tuple[Any, ...], str] = {}
    for name, tensor in state["state_dict"].items():
        if not torch.is_tensor(tensor):
            raise ArgumentError(("state_dict", name), f"expected a tensor, found {type(tensor).__name__}")
        key = _storage_key(tensor)
        if key in first_owner:  # a tied weight: stored once
            entries[name] = {"encoding": "shared", "of": first_owner[key]}
            owner = next(r for r in records if r.name == first_owner[key])
            records.append(TensorRecord(name, owner.shape, owner.dtype, owner.nonzeros, "shared", 0, owner.name))
            continue
        first_owner[key] = name
        entry, nonzeros = _encode(tensor, backgrounds.get(name), None)
        entries[name] = entry
        records.append(TensorRecord(name, tuple(tensor.shape), str(tensor.dtype).replace("torch.", ""), nonzeros,
                                    entry["encoding"], _entry_bytes(entry)))
    out = {"format": FORMAT, "version": VERSION, "formats": state["formats"], "reduce_range": state["reduce_range"],
           "tensors": entries, "sha256": _checksum(entries)}
    with atomic_write(path) as f:
        torch.save(out, f)
    return records


def load_sparse(path: Union[str, os.PathLike], model: nn.Module) -> nn.Module:
    """Read a file written by :func:`save_sparse` into the structure of ``model``: the exported model, bit for
    bit as :func:`~compress.quantization.load_quantized` gives it from a dense file.

    Args:
        path: the file.
        model: a float model of the same architecture (any weights; it is not changed).

    Raises:
        CheckpointError: the file is missing, truncated, foreign, damaged (naming the tensor and what is wrong),
            or does not fit ``model``.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "w.pt")
        >>> _ = save_sparse(torch.nn.Linear(3, 2), path)
        >>> load_sparse(path, torch.nn.Linear(3, 2)).weight.shape
        torch.Size([2, 3])
    """
    path = os.fspath(path)
    state = safe_torch_load(path, "compressed model")
    if not isinstance(state, Mapping) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
        raise CheckpointError(f"{path}: not a compress sparse model file (format {FORMAT!r}; found {describe(found)})")
    if type(state.get("version")) is not int or state.get("version") != VERSION:
        raise CheckpointError(f"{path}: version: {describe(state.get('version'))}; this compress reads sparse format "
                              f"version {VERSION}")
    entries = state.get("tensors")
    if not isinstance(entries, Mapping):
        raise CheckpointError(f"{path}: damaged: no 'tensors'")
    try:
        checksum = _checksum(entries)
    except Exception as exc:  # a tensor whose bytes cannot be read (sparse, quantized): not what save_sparse writes
        raise CheckpointError(f"{path}: damaged: tensors: {type(exc).__name__}: "
                              f"{(str(exc).splitlines() or [''])[0]}") from None
    if state.get("sha256") != checksum:
        raise CheckpointError(f"{path}: damaged: the tensors do not match the file's SHA-256 (a changed or "
                              f"corrupted file)")
    tensors: Dict[str, torch.Tensor] = OrderedDict()
    room = sum(t.numel() for t in model.state_dict().values() if torch.is_tensor(t))
    for name, entry in entries.items():
        try:
            if isinstance(entry, Mapping) and entry.get("encoding") == "shared":
                owner = entry.get("of")
                _require(isinstance(owner, str) and owner in tensors,
                         f"shares the tensor of {owner!r}, which is not stored before it")
                tensors[name] = tensors[owner]
            else:
                tensors[name] = decode_tensor(entry, max_numel=room)
        except ValueError as exc:
            raise CheckpointError(f"{path}: damaged tensor {name!r}: {exc}") from None
    header = {"formats": state.get("formats"), "reduce_range": state.get("reduce_range", True),
              "state_dict": tensors}
    return model_from_quantized_state(header, model, path)


def encoding_table(records: Iterable[TensorRecord], tablefmt: str = "psql") -> str:
    """The records as a table: tensor, shape, dtype, density, encoding and stored size, with a total.

    Example:
        >>> print(encoding_table([TensorRecord("w", (4, 4), "int8", 4, "bitmask", 6)], tablefmt="plain"))
        tensor    shape    dtype      density (%)  encoding      KiB
        w         4x4      int8             25.00  bitmask      0.01
        total                                                   0.01
    """
    records = list(records)
    rows = [[r.name, "x".join(map(str, r.shape)), r.dtype, f"{100 * r.density:.2f}",
             r.encoding if r.shared_with is None else f"shared with {r.shared_with}", f"{r.nbytes / 1024:.2f}"]
            for r in records]
    rows.append(["total", "", "", "", "", f"{sum(r.nbytes for r in records) / 1024:.2f}"])
    return tabulate(rows, headers=["tensor", "shape", "dtype", "density (%)", "encoding", "KiB"], tablefmt=tablefmt,
                    disable_numparse=True, colalign=("left", "left", "left", "right", "left", "right"))
