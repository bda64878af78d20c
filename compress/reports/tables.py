"""Sparsity and perplexity summaries, returned as data rows or as text tables.

They take the place of Distiller's ``weights_sparsity_summary`` / ``weights_sparsity_tbl_summary`` (how they
differ: ``docs/distiller-compat.md``):

* **Tied weights are counted once.** A tensor is listed once, under its first name, and the other names it
  goes by are kept in :attr:`SparsityRow.aliases`.
* **Rows and columns mean what they say.** ``rows`` is the share of all-zero slices along dim 0 (output units)
  and ``cols`` the share of all-zero slices along dim 1 (input features) of the tensor as stored.
* **No pandas.** The summary is a list of frozen dataclasses; tables are rendered with ``tabulate`` and
  returned as strings (nothing is printed).

Only ``torch`` and ``tabulate`` are needed.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import (
    Any,
    Dict,
    Hashable,
    Iterable,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch
from tabulate import tabulate
from torch import nn

__all__ = [
    "SparsityRow",
    "SparsityTotal",
    "sparsity_summary",
    "sparsity_total",
    "sparsity_table",
    "perplexity_table",
    "format_count",
]

SparsitySource = Union[nn.Module, Mapping[str, Any]]

SPARSITY_HEADERS: Tuple[str, ...] = (
    "Name",
    "Shape",
    "NNZ (dense)",
    "NNZ (sparse)",
    "Fine (%)",
    "Rows (%)",
    "Cols (%)",
    "Std",
    "Mean",
    "Abs-Mean",
)

_MISSING = "-"


@dataclass(frozen=True)
class SparsityRow:
    """Sparsity statistics of one weight tensor.

    Attributes:
        name: the tensor's first name (``named_parameters`` order, or the mapping's key order).
        shape: the tensor's shape as a tuple of ints.
        nnz_dense: number of elements (``numel``).
        nnz_sparse: number of nonzero elements.
        fine: fine-grained sparsity in percent, ``100 * (1 - nnz_sparse / nnz_dense)``.
        rows: percent of the slices along **dim 0** (rows of a stored 2-D matrix, i.e. output units of a
            ``Linear``/LSTM/embedding weight; filters of a conv weight) that are entirely zero. For a tensor
            with more than 2 dims a row is ``t[i]`` (dim 0 against all other dims flattened).
            ``None`` for tensors with fewer than 2 dims.
        cols: percent of the slices along **dim 1** (columns of a stored 2-D matrix, i.e. input features;
            input channels of a conv weight) that are entirely zero. For a tensor with more than 2 dims a
            column is ``t[:, j]``. ``None`` for tensors with fewer than 2 dims.
        std: sample standard deviation (Bessel-corrected, as ``torch.std`` and Distiller); NaN when
            ``numel < 2``.
        mean: mean of the elements; NaN when the tensor is empty.
        abs_mean: mean of the absolute values; NaN when the tensor is empty.
        aliases: the other names under which the same tensor (same storage view) appears, in order;
            empty when the tensor is not tied.
    """

    name: str
    shape: Tuple[int, ...]
    nnz_dense: int
    nnz_sparse: int
    fine: float
    rows: Optional[float]
    cols: Optional[float]
    std: float
    mean: float
    abs_mean: float
    aliases: Tuple[str, ...] = ()

    @property
    def density(self) -> float:
        """Fraction of nonzero elements, ``nnz_sparse / nnz_dense`` (0.0 for an empty tensor)."""
        return self.nnz_sparse / self.nnz_dense if self.nnz_dense else 0.0


class SparsityTotal(NamedTuple):
    """Totals over a list of :class:`SparsityRow` (each tied tensor counted once).

    Attributes:
        numel: sum of ``nnz_dense``.
        nnz: sum of ``nnz_sparse``.
        sparsity: ``100 * (1 - nnz / numel)`` in percent; 0.0 when ``numel`` is 0.
    """

    numel: int
    nnz: int
    sparsity: float


# --------------------------------------------------------------------------------------------------------------
# Computing the rows
# --------------------------------------------------------------------------------------------------------------


def _storage_key(t: torch.Tensor) -> Hashable:
    """A key equal for two tensors exactly when they are the same view of the same storage."""
    if t.layout != torch.strided:
        return ("object", id(t))
    try:
        ptr = t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # tensors without accessible storage
        return ("object", id(t))
    if ptr == 0:  # meta or empty tensors all report address 0: never merge them
        return ("object", id(t))
    return ("view", t.device, ptr, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def _zero_slice_percent(nonzero: torch.Tensor, dim: int) -> float:
    """Percent of slices along ``dim`` of the boolean tensor ``nonzero`` that hold no True element."""
    n = nonzero.shape[dim]
    if n == 0:
        return 0.0
    per_slice = nonzero.transpose(0, dim).reshape(n, -1).any(dim=1)
    return 100.0 * (n - int(per_slice.sum().item())) / n


def _row_for(name: str, t: torch.Tensor, aliases: Tuple[str, ...]) -> SparsityRow:
    x = t.detach()
    if x.layout != torch.strided:
        x = x.to_dense()
    if x.dtype != torch.float64:
        x = x.float()  # no copy for float32; upcasts half/bfloat16 so the statistics are not computed in 16 bit
    numel = x.numel()
    nonzero = x.ne(0)
    nnz = int(nonzero.sum().item())
    fine = 100.0 * (1.0 - nnz / numel) if numel else 0.0
    if x.dim() >= 2:
        rows: Optional[float] = _zero_slice_percent(nonzero, 0)
        cols: Optional[float] = _zero_slice_percent(nonzero, 1)
    else:
        rows = cols = None
    if numel:
        mean = float(x.mean().item())
        abs_mean = float(x.abs().mean().item())
        std = float(x.std().item()) if numel > 1 else math.nan
    else:
        mean = abs_mean = std = math.nan
    return SparsityRow(
        name=name,
        shape=tuple(int(s) for s in x.shape),
        nnz_dense=numel,
        nnz_sparse=nnz,
        fine=fine,
        rows=rows,
        cols=cols,
        std=std,
        mean=mean,
        abs_mean=abs_mean,
        aliases=aliases,
    )


def _named_tensors(source: SparsitySource) -> Iterable[Tuple[str, torch.Tensor]]:
    if isinstance(source, nn.Module):
        # remove_duplicate=False so that a tied parameter yields every name, first name first
        # (the same order in which named_parameters() would list it once).
        return source.named_parameters(remove_duplicate=False)
    if isinstance(source, Mapping):
        items: List[Tuple[str, torch.Tensor]] = []
        for key, value in source.items():
            if isinstance(value, torch.Tensor):
                items.append((str(key), value))
            elif isinstance(key, str) and key.endswith("_extra_state"):
                continue  # nn.Module.get_extra_state() payloads can be any object
            else:
                raise TypeError(
                    f"sparsity_summary: entry {key!r} is a {type(value).__name__}, not a tensor; pass a "
                    "state_dict (name -> tensor), not a whole checkpoint dict"
                )
        return items
    raise TypeError(
        f"sparsity_summary: expected an nn.Module or a mapping of name -> tensor, got {type(source).__name__}"
    )


def _check_param_dims(param_dims: Iterable[int]) -> frozenset:
    dims = tuple(param_dims)
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0:
            raise ValueError(f"param_dims must hold non-negative ints, got {dims!r}")
    return frozenset(int(d) for d in dims)


def sparsity_summary(source: SparsitySource, param_dims: Iterable[int] = (2, 4)) -> List[SparsityRow]:
    """Compute per-tensor sparsity statistics of a model's weights.

    Definitions (for a weight stored as ``W`` of shape ``(out, in, ...)``):

    * ``fine`` = ``100 * (1 - nnz / numel)``.
    * ``rows`` = percent of ``i`` in ``range(out)`` with ``W[i]`` entirely zero: rows of the stored 2-D matrix,
      i.e. slices along dim 0 = output units. For more than 2 dims, dim 0 against all other dims flattened
      (for a conv weight: whole filters).
    * ``cols`` = percent of ``j`` in ``range(in)`` with ``W[:, j]`` entirely zero: columns of the stored
      matrix, i.e. slices along dim 1 = input features (for a conv weight: input channels).
    * ``rows`` and ``cols`` are ``None`` for tensors with fewer than 2 dims.

    (Distiller's ``Rows (%)`` and ``Cols (%)`` had the two swapped; these do not.)

    Tied weights are counted once. For a module, parameters come from ``named_parameters()``, which lists a
    tied parameter once under its first name; the other names (from
    ``named_parameters(remove_duplicate=False)``) go to ``aliases``. For a mapping (e.g. a ``state_dict``,
    also after a ``torch.save``/``torch.load`` round trip, which preserves storage sharing), entries that are
    the same view of the same storage (same storage address, storage offset, shape, stride and dtype) are
    counted once under the first key, the later keys becoming ``aliases``. Tensors loaded from a format that
    copies shared tensors apart are no longer the same storage and are counted separately.

    Only tensors whose ``dim()`` is in ``param_dims`` and whose dtype is floating point are kept
    (so 1-D biases, boolean masks and integer counters in a ``state_dict`` are skipped). For a mapping, buffers
    of a matching dim are included as well, since a ``state_dict`` does not tell them apart from parameters.

    Args:
        source: an ``nn.Module`` or a mapping of name -> tensor (a ``state_dict``). Mapping entries named
            ``*_extra_state`` that are not tensors are ignored; any other non-tensor value raises ``TypeError``.
        param_dims: tensor ranks to include; Distiller's default ``(2, 4)`` covers Linear/LSTM/embedding
            weights (2-D) and conv weights (4-D).

    Returns:
        One :class:`SparsityRow` per distinct weight tensor, in first-seen order.

    Raises:
        TypeError: ``source`` is neither a module nor a mapping, or a mapping value is not a tensor.
        ValueError: ``param_dims`` holds something other than non-negative ints.

    Example:
        >>> emb, dec = nn.Embedding(5, 2), nn.Linear(2, 5)
        >>> dec.weight = emb.weight                      # tied
        >>> with torch.no_grad():
        ...     _ = emb.weight[:2].zero_()
        >>> [(r.name, r.aliases, r.nnz_sparse, r.rows) for r in sparsity_summary(nn.ModuleDict({"encoder": emb,
        ...                                                                                     "decoder": dec}))]
        [('encoder.weight', ('decoder.weight',), 6, 40.0)]
    """
    dims = _check_param_dims(param_dims)
    first: Dict[Hashable, Tuple[str, torch.Tensor]] = {}
    aliases: Dict[Hashable, List[str]] = {}
    for name, t in _named_tensors(source):
        if t.dim() not in dims or not t.is_floating_point():
            continue
        key = _storage_key(t)
        if key in first:
            aliases[key].append(name)
        else:
            first[key] = (name, t)
            aliases[key] = []
    return [_row_for(name, t, tuple(aliases[key])) for key, (name, t) in first.items()]


def sparsity_total(rows: Iterable[SparsityRow]) -> SparsityTotal:
    """Sum element and nonzero counts over summary rows.

    Args:
        rows: rows from :func:`sparsity_summary` (already deduplicated, so tied weights count once).

    Returns:
        ``SparsityTotal(numel, nnz, sparsity)`` where ``sparsity = 100 * (1 - nnz / numel)`` in percent
        (0.0 when there are no elements). It unpacks as a plain ``(numel, nnz, sparsity)`` tuple.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 2, bias=False), nn.Linear(2, 2, bias=False))
        >>> with torch.no_grad():
        ...     _ = model[0].weight.zero_()
        >>> sparsity_total(sparsity_summary(model))
        SparsityTotal(numel=12, nnz=4, sparsity=66.66666666666667)
    """
    numel = 0
    nnz = 0
    for r in rows:
        numel += r.nnz_dense
        nnz += r.nnz_sparse
    sparsity = 100.0 * (1.0 - nnz / numel) if numel else 0.0
    return SparsityTotal(numel, nnz, sparsity)


# --------------------------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------------------------


def format_count(n: Union[int, float]) -> str:
    """Format an element count with thousands separators.

    Args:
        n: an integer, or a float with an integral value (``1.5e6`` is fine, ``2.5`` is not).

    Returns:
        The count as a string, e.g. ``"49,917,000"``.

    Raises:
        TypeError: ``n`` is not a number (booleans are rejected too).
        ValueError: ``n`` is a float that is not integral (or not finite).
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Real):
        raise TypeError(f"format_count expects a number, got {type(n).__name__}")
    if not isinstance(n, numbers.Integral):
        f = float(n)
        if not math.isfinite(f) or f != int(f):
            raise ValueError(f"format_count expects an integral count, got {n!r}")
        n = int(f)
    return f"{int(n):,}"


def _format_shape(shape: Sequence[int]) -> str:
    return " x ".join(str(s) for s in shape) if len(shape) else "scalar"


def _format_float(x: Optional[float], digits: int) -> str:
    if x is None:
        return _MISSING
    return f"{x:.{digits}f}"


def _display_name(row: SparsityRow) -> str:
    return f"{row.name} (= {', '.join(row.aliases)})" if row.aliases else row.name


def _is_row_list(source: Any) -> bool:
    return isinstance(source, (list, tuple)) and all(isinstance(r, SparsityRow) for r in source)


def sparsity_table(
    source: Union[SparsitySource, Sequence[SparsityRow]],
    param_dims: Iterable[int] = (2, 4),
    tablefmt: str = "psql",
) -> str:
    """Render the sparsity summary as a text table with a final ``Total`` row.

    Columns: Name, Shape, NNZ (dense), NNZ (sparse), Fine (%), Rows (%), Cols (%), Std, Mean, Abs-Mean (see
    :func:`sparsity_summary` for the definitions; Rows/Cols are *not* Distiller's swapped ones). Shapes print
    as ``33278 x 1500``, counts with thousands separators, percents with 2 decimals, statistics with 5. A
    tied weight prints as ``encoder.weight (= decoder.weight)``. Undefined cells (Rows/Cols of a tensor with
    fewer than 2 dims) print as ``-``. The ``Total`` row holds the summed element count, the summed nonzero
    count and the total fine-grained sparsity; its other cells are ``-``.

    Args:
        source: an ``nn.Module``, a ``state_dict``-like mapping, or a list of rows already computed by
            :func:`sparsity_summary` (then ``param_dims`` is not used).
        param_dims: tensor ranks to include, as in :func:`sparsity_summary`.
        tablefmt: any ``tabulate`` table format (``"psql"``, ``"github"``, ``"plain"``, ...).

    Returns:
        The table as a string (no trailing newline).

    Example:
        >>> layer = nn.Linear(4, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.tensor([[0.0, 0.0, 1.0, -1.0], [0.0, 0.0, 0.0, 2.0]]))
        >>> print(sparsity_table(layer, tablefmt="plain"))
        Name    Shape      NNZ (dense)    NNZ (sparse)    Fine (%)    Rows (%)    Cols (%)      Std     Mean    Abs-Mean
        weight  2 x 4                8               3       62.50        0.00       50.00  0.88641  0.25000     0.50000
        Total   -                    8               3       62.50           -           -        -        -           -
    """
    rows = list(source) if _is_row_list(source) else sparsity_summary(source, param_dims)  # type: ignore[arg-type]
    body: List[List[str]] = []
    for r in rows:
        body.append(
            [
                _display_name(r),
                _format_shape(r.shape),
                format_count(r.nnz_dense),
                format_count(r.nnz_sparse),
                _format_float(r.fine, 2),
                _format_float(r.rows, 2),
                _format_float(r.cols, 2),
                _format_float(r.std, 5),
                _format_float(r.mean, 5),
                _format_float(r.abs_mean, 5),
            ]
        )
    total = sparsity_total(rows)
    body.append(
        ["Total", _MISSING, format_count(total.numel), format_count(total.nnz), _format_float(total.sparsity, 2)]
        + [_MISSING] * 5
    )
    colalign = ("left", "left") + ("right",) * 8
    return tabulate(body, headers=list(SPARSITY_HEADERS), tablefmt=tablefmt, disable_numparse=True, colalign=colalign)


# Recognised perplexity_table keys, in column order: key -> header.
_PPL_COLUMNS: Tuple[Tuple[str, str], ...] = (
    ("name", "Name"),
    ("sparsity", "Sparsity (%)"),
    ("nnz", "NNZ"),
    ("val_ppl", "Val PPL"),
    ("test_ppl", "Test PPL"),
)
_ACCURACY = ("accuracy", "Accuracy (%)")


def _fraction_as_percent(value: Any, key: str, index: int) -> str:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"row {index}: {key!r} must be a number (a fraction in [0, 1]), got {type(value).__name__}")
    f = float(value)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"row {index}: {key!r} must be a fraction in [0, 1], got {value!r} (pass 0.8, not 80)")
    return f"{100.0 * f:.2f}"


def _format_ppl(value: Any, key: str, index: int) -> str:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"row {index}: {key!r} must be a number, got {type(value).__name__}")
    return f"{float(value):.2f}"


def _format_extra(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return format_count(value)
    return f"{float(value):.6g}"


def perplexity_table(rows: Iterable[Mapping[str, Any]], tablefmt: str = "psql") -> str:
    """Render one row per experiment: name, sparsity, nonzero count, perplexities, and any extra columns.

    Recognised keys (all but ``name`` optional per row; a missing or ``None`` value prints as ``-``):

    * ``name`` (required): the experiment's label.
    * ``sparsity``: a **fraction** in [0, 1], printed as a percent with 2 decimals (``0.8`` -> ``80.00``).
    * ``nnz``: nonzero weight count, printed with thousands separators.
    * ``val_ppl``, ``test_ppl``: perplexities, printed with 2 decimals.
    * ``accuracy``: a fraction in [0, 1] printed as a percent; the ``Accuracy (%)`` column appears only
      when at least one row has a non-``None`` accuracy.

    Any other key becomes an extra column, headed by the key itself, in first-seen order after the
    recognised ones; ints print with thousands separators, floats with 6 significant digits, anything else
    with ``str``.

    Args:
        rows: one mapping per experiment.
        tablefmt: any ``tabulate`` table format.

    Returns:
        The table as a string (headers only when ``rows`` is empty).

    Raises:
        ValueError: a row has no ``name`` (the message names the row's index), or ``sparsity``/``accuracy``
            is outside [0, 1].
        TypeError: a row is not a mapping, or a recognised numeric value is not a number.

    Example:
        >>> print(perplexity_table([{"name": "dense", "sparsity": 0.0, "val_ppl": 120.5},
        ...                         {"name": "agp", "sparsity": 0.8, "nnz": 71632, "val_ppl": 124.88}],
        ...                        tablefmt="plain"))
        Name      Sparsity (%)     NNZ    Val PPL    Test PPL
        dense             0.00       -     120.50           -
        agp              80.00  71,632     124.88           -
    """
    materialised: List[Mapping[str, Any]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"perplexity_table: row {i} is a {type(row).__name__}, not a mapping")
        if row.get("name") is None:
            raise ValueError(f"perplexity_table: row {i} has no 'name'")
        materialised.append(row)

    columns: List[Tuple[str, str]] = list(_PPL_COLUMNS)
    if any(r.get("accuracy") is not None for r in materialised):
        columns.append(_ACCURACY)
    known = {key for key, _ in _PPL_COLUMNS} | {_ACCURACY[0]}
    extras: List[str] = []
    for r in materialised:
        for key in r:
            if key not in known and key not in extras:
                extras.append(key)
    columns.extend((key, str(key)) for key in extras)

    body: List[List[str]] = []
    for i, r in enumerate(materialised):
        cells: List[str] = []
        for key, _ in columns:
            value = r.get(key)
            if value is None:
                cells.append(_MISSING)
            elif key == "name":
                cells.append(str(value))
            elif key in ("sparsity", "accuracy"):
                cells.append(_fraction_as_percent(value, key, i))
            elif key == "nnz":
                try:
                    cells.append(format_count(value))
                except (TypeError, ValueError) as exc:
                    raise type(exc)(f"row {i}: 'nnz': {exc}") from None
            elif key in ("val_ppl", "test_ppl"):
                cells.append(_format_ppl(value, key, i))
            else:
                cells.append(_format_extra(value))
        body.append(cells)

    headers = [header for _, header in columns]
    colalign = ("left",) + ("right",) * (len(columns) - 1)
    return tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True, colalign=colalign)
