"""Hidden-unit groups of recurrent layers (ISS: Wen et al., ICLR 2018): which weights belong to unit ``j``.

Removing hidden unit ``j`` of a gated layer removes one hidden state, one cell state and one entry of every gate.
Its *group* is every weight that exists only because of it, in PyTorch's packed layout (``i, f, g, o`` for an
LSTM, ``r, z, n`` for a GRU; ``G`` = 4 or 3 gates, ``H`` units, ``D`` = 2 directions when bidirectional):

* **gates**: rows ``g*H + j`` (``g < G``) of the layer's ``weight_ih`` and ``weight_hh`` (its input to each gate);
* **bias**: the same rows of ``bias_ih`` and ``bias_hh``;
* **recurrent**: column ``j`` of ``weight_hh`` (its output to every gate at the next step);
* **consumer**: column ``d*H + j`` (``d < D``) of whatever reads the layer's output: the next layer's
  ``weight_ih`` (both directions), or, after the last layer, the weights named in ``consumers`` (a decoder, a
  projection, another recurrent module's input weights).

The recurrent and consumer columns are the unit's *outgoing* weights: when they are all zero the unit's value
reaches nothing, and deleting it changes no output (:func:`compress.thin` relies on exactly this).

In a bidirectional layer unit ``j`` of the forward and of the reverse direction form **one** group: an
``nn.LSTM`` has one hidden size for both directions, so they can only be removed together.

**Tied embedding and decoder.** When a consumer is the weight of an ``nn.Embedding`` as well (a decoder tied to
the embedding), removing its column ``j`` also removes feature ``j`` of every embedded word, so the columns that
read that feature (the first layer's ``weight_ih``) join the group too, as *coupled* columns: name them with the
embedding's module as the producer, ``consumers: {rnn: [decoder.weight], encoder: [rnn.weight_ih_l0]}``. The
last layer's units are then tied to the embedding's columns and the first layer's inputs; without that entry
grouping refuses, saying so. The coupled columns are incoming weights of the first layer (they read a feature
that is gone), not outgoing ones.

Layers are found by module name and their parameters by name (:class:`~compress.sparsity.ParameterIndex`), so
``module.`` prefixes, tied aliases and re-parametrised (``_raw``) weights resolve; the only types looked at are
``nn.LSTM``, ``nn.GRU``, :class:`~compress.modules.ModularLSTM` and :class:`~compress.modules.ModularGRU`
(subclasses included) for the layer structure, and ``nn.Embedding`` for tying. Nothing here changes a weight.

Example:
    >>> import torch
    >>> from torch import nn
    >>> class LM(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.rnn, self.decoder = nn.LSTM(3, 2, num_layers=2), nn.Linear(2, 5)
    >>> first, last = unit_groups(LM(), ["rnn"], {"rnn": ["decoder.weight"]})
    >>> first.members(1)[("rnn.weight_ih_l0", 0)]     # unit 1's four gate rows (dim 0) of the first layer
    [1, 3, 5, 7]
    >>> first.members(1)[("rnn.weight_hh_l0", 1)]     # its column (dim 1) of the recurrent weights
    [1]
    >>> first.members(1)[("rnn.weight_ih_l1", 1)]     # ... and of the second layer's input weights
    [1]
    >>> last.members(0)[("decoder.weight", 1)]
    [0]
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from compress import options
from compress.errors import ArgumentError
from compress.modules.rnn import ModularGRU, ModularLSTM
from compress.sparsity.names import ParameterIndex

__all__ = ["UnitPart", "UnitLayer", "RecurrentLayout", "unit_groups", "recurrent_layout", "layer_values", "ROLES",
           "OUTGOING"]

#: the roles a tensor's share of a unit group can have (see the module docstring)
ROLES = ("gates", "bias", "recurrent", "consumer", "coupled")
#: the roles whose weights carry a unit's value onward: all zero means the unit can be deleted
OUTGOING = ("recurrent", "consumer")
RECURRENT_TYPES = (nn.LSTM, nn.GRU, ModularLSTM, ModularGRU)
# Numerical guard inside the square root of a group norm (ISS's 1e-8): keeps the gradient of an all-zero group finite.
EPS = 1e-8


@dataclass(frozen=True)
class UnitPart:
    """One tensor's share of every unit group of a layer.

    Args:
        name: the tensor's canonical parameter name.
        dim: 0 (rows) or 1 (columns).
        index: ``(H, k)`` long tensor: unit ``j`` owns positions ``index[j]`` along ``dim``.
        role: one of :data:`ROLES`.
    """

    name: str
    dim: int
    index: torch.Tensor
    role: str


@dataclass(frozen=True)
class UnitLayer:
    """The ``hidden_size`` unit groups of one layer of a recurrent module.

    Args:
        module: the recurrent module's name (as given in ``layers``).
        layer: the layer within the module (0 = the one that reads the module's input).
        mode: ``'LSTM'`` or ``'GRU'``.
        hidden_size: units (groups) of the layer.
        directions: 1, or 2 for a bidirectional layer (unit ``j`` of both directions is one group).
        num_layers: layers of the module.
        parts: every tensor's share of the groups (a tensor appears at most once per ``dim``).
    """

    module: str
    layer: int
    mode: str
    hidden_size: int
    directions: int
    num_layers: int
    parts: Tuple[UnitPart, ...]
    _on_device: Dict[Tuple[str, int, str], torch.Tensor] = field(default_factory=dict, compare=False, repr=False)

    @property
    def key(self) -> str:
        """``'rnn[1]'``: the module and the layer, as messages and tables name it."""
        return f"{self.module}[{self.layer}]"

    @property
    def names(self) -> List[str]:
        """Every tensor this layer's groups touch, each once."""
        return list(dict.fromkeys(p.name for p in self.parts))

    def members(self, unit: int) -> Dict[Tuple[str, int], List[int]]:
        """``{(tensor, dim): positions}`` of unit ``unit``'s group."""
        return {(p.name, p.dim): p.index[unit].tolist() for p in self.parts}

    def _index(self, part: UnitPart, device: torch.device) -> torch.Tensor:
        if part.index.device == device:
            return part.index
        key = (part.name, part.dim, str(device))
        if key not in self._on_device:  # moved once per device, not at every step
            self._on_device[key] = part.index.to(device)
        return self._on_device[key]

    def squared_norms(self, params: Mapping[str, torch.Tensor], roles: Sequence[str] = ("gates", "recurrent",
                                                                                        "consumer", "coupled")
                      ) -> torch.Tensor:
        """Sum of squares of each group's weights (``(H,)``, differentiable), every weight counted once.

        A weight in both a row part and a column part of one group (``weight_hh[g*H + j, j]``) is counted once:
        the overlap is subtracted. ISS's TensorFlow code counted it twice; the difference is ``G`` weights of a
        group of thousands.

        Args:
            params: canonical name → tensor, for every tensor of the parts.
            roles: which parts count (default: every weight; biases are left out, as in ISS).
        """
        total: Optional[torch.Tensor] = None
        rows: Dict[str, torch.Tensor] = {}
        cols: Dict[str, torch.Tensor] = {}
        squares: Dict[str, torch.Tensor] = {}
        for p in self.parts:
            if p.role not in roles:
                continue
            w = params[p.name]
            if p.name not in squares:
                squares[p.name] = w * w
            sq = squares[p.name]
            if sq.dim() == 1:
                per_position = sq
            else:
                per_position = sq.sum(dim=1 - p.dim)
            index = self._index(p, w.device)
            term = per_position[index].sum(dim=1)
            total = term if total is None else total + term
            (rows if p.dim == 0 else cols)[p.name] = index
        if total is None:
            raise ValueError(f"{self.key}: no weights of roles {list(roles)}")
        for name in rows.keys() & cols.keys():
            overlap = squares[name][rows[name][:, :, None], cols[name][:, None, :]]
            total = total - overlap.sum(dim=(1, 2))
        return total

    def norms(self, params: Mapping[str, torch.Tensor], eps: float = 0.0) -> torch.Tensor:
        """L2 norm of each group's weights, ``sqrt(squared_norms + eps)`` (``(H,)``, differentiable)."""
        return (self.squared_norms(params) + eps).clamp_min(0.0).sqrt()

    def max_abs(self, params: Mapping[str, torch.Tensor], roles: Sequence[str] = ("gates", "recurrent", "consumer",
                                                                                  "coupled")) -> torch.Tensor:
        """Largest ``|w|`` of each group's weights of ``roles`` (``(H,)``)."""
        best: Optional[torch.Tensor] = None
        for p in self.parts:
            if p.role not in roles:
                continue
            a = params[p.name].detach().abs()
            per_position = a if a.dim() == 1 else a.amax(dim=1 - p.dim)
            term = per_position[self._index(p, a.device)].amax(dim=1)
            best = term if best is None else torch.maximum(best, term)
        if best is None:
            raise ValueError(f"{self.key}: no weights of roles {list(roles)}")
        return best

    def silent(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(H,)`` bool: units whose outgoing weights (recurrent and consumer columns) are all exactly zero."""
        return self.max_abs(params, OUTGOING) == 0

    def removed(self, masks: Mapping[str, Optional[torch.Tensor]]) -> torch.Tensor:
        """``(H,)`` bool: units whose every gate row is pruned in ``masks`` (a name without a mask: none)."""
        out = torch.zeros(self.hidden_size, dtype=torch.bool)
        for p in self.parts:
            mask = masks.get(p.name)
            if p.role != "gates" or mask is None:
                continue
            kept = mask.reshape(mask.shape[0], -1).any(dim=1).cpu()
            out = out | ~kept[p.index].any(dim=1)
            break  # one gate tensor decides: every pruner that removes a unit removes all of its rows
        return out

    def apply_keep(self, keep: torch.Tensor, masks: Dict[str, torch.Tensor]) -> None:
        """Clear, in ``masks`` (name → bool mask, changed in place), every position of the units not in ``keep``."""
        drop = (~keep.cpu()).nonzero().flatten()
        if drop.numel() == 0:
            return
        for p in self.parts:
            mask = masks[p.name]
            positions = p.index[drop].flatten().to(mask.device)
            if p.dim == 0:
                mask[positions] = False
            else:
                mask[:, positions] = False


# ----------------------------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class RecurrentLayout:
    """Where a recurrent module keeps its tensors: ``names[layer][direction]`` maps ``weight_ih``,
    ``weight_hh``, ``bias_ih``, ``bias_hh`` to parameter names (without the module prefix).

    Args:
        mode: ``'LSTM'`` or ``'GRU'``.
        gates: 4 or 3.
        input_size: features of the module's input.
        hidden_size: units per layer.
        num_layers: layers.
        directions: 1 or 2.
        bias: whether the layers have biases.
        batch_first: as the module.
        dropout: the inter-layer dropout probability.
        modular: the module is a :class:`~compress.modules.ModularLSTM`/``ModularGRU``.
    """

    mode: str
    gates: int
    input_size: int
    hidden_size: int
    num_layers: int
    directions: int
    bias: bool
    batch_first: bool
    dropout: float
    modular: bool

    def names(self, layer: int, direction: int) -> Dict[str, str]:
        if self.modular:
            cell = f"{'cells' if direction == 0 else 'cells_reverse'}.{layer}"
            out = {"weight_ih": f"{cell}.fc_gate_x.weight", "weight_hh": f"{cell}.fc_gate_h.weight"}
            if self.bias:
                out.update(bias_ih=f"{cell}.fc_gate_x.bias", bias_hh=f"{cell}.fc_gate_h.bias")
            return out
        suffix = f"_l{layer}{'_reverse' if direction else ''}"
        kinds = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if self.bias else ())
        return {kind: kind + suffix for kind in kinds}


def recurrent_layout(module: nn.Module, key: Any = "layers") -> RecurrentLayout:
    """The :class:`RecurrentLayout` of an ``nn.LSTM``/``nn.GRU``/modular layer.

    Raises:
        ArgumentError: ``module`` is of another type, or an LSTM with ``proj_size`` (its output is a projection,
            not the hidden units).
    """
    if not isinstance(module, RECURRENT_TYPES):
        raise ArgumentError(key, f"is a {type(module).__name__}; unit groups are defined for nn.LSTM, nn.GRU, "
                                 f"ModularLSTM and ModularGRU layers")
    if getattr(module, "proj_size", 0):
        raise ArgumentError(key, f"is an LSTM with proj_size={module.proj_size}: its output is a projection of the "
                                 f"hidden units, which ISS groups do not cover")
    modular = isinstance(module, (ModularLSTM, ModularGRU))
    mode = "LSTM" if isinstance(module, (nn.LSTM, ModularLSTM)) else "GRU"
    dropout = module.dropout.p if modular else float(module.dropout)
    return RecurrentLayout(mode, 4 if mode == "LSTM" else 3, module.input_size, module.hidden_size,
                           module.num_layers, 2 if module.bidirectional else 1, bool(module.bias),
                           bool(module.batch_first), float(dropout), modular)


def _find_module(model: nn.Module, name: str) -> Optional[nn.Module]:
    for candidate in (name, "module." + name):
        try:
            return model.get_submodule(candidate)
        except AttributeError:
            continue
    return None


def _module_names(model: nn.Module, patterns: Sequence[str]) -> List[Tuple[int, str]]:
    """``(pattern position, module name)`` of the modules a list of names or globs selects, in model order."""
    all_names = [n for n, _ in model.named_modules() if n]
    found: List[Tuple[int, str]] = []
    for i, pattern in enumerate(patterns):
        if set("*?[") & set(pattern):
            hits = [n for n in all_names if fnmatch.fnmatchcase(n, pattern)
                    and isinstance(model.get_submodule(n), RECURRENT_TYPES)]
            if not hits:
                raise ArgumentError(("layers", i), f"{pattern!r} matches no recurrent module of the model")
        else:
            if _find_module(model, pattern) is None:
                raise ArgumentError(("layers", i), f"{pattern!r} is not a module of the model")
            hits = [pattern]
        found.extend((i, h) for h in hits if h not in [n for _, n in found])
    return found


def _rows(hidden: int, gates: int) -> torch.Tensor:
    units = torch.arange(hidden)
    return torch.stack([g * hidden + units for g in range(gates)], dim=1)


def _columns(hidden: int, directions: int) -> torch.Tensor:
    units = torch.arange(hidden)
    return torch.stack([d * hidden + units for d in range(directions)], dim=1)


def _embedding_of(model: nn.Module, param: nn.Parameter) -> Optional[str]:
    for name, m in model.named_modules():
        if isinstance(m, nn.Embedding) and m.weight is param:
            return name
    return None


class _Builder:
    def __init__(self, model: nn.Module, index: ParameterIndex, consumers: Mapping[str, Sequence[str]],
                 recurrent: Mapping[str, RecurrentLayout]):
        self.model, self.index, self.recurrent = model, index, recurrent
        self.consumers: Dict[str, List[str]] = {}
        for key, value in consumers.items():
            module = _find_module(model, key)
            if module is None:
                raise ArgumentError(("consumers", key), "is not a module of the model")
            if key not in recurrent and not isinstance(module, nn.Embedding):
                raise ArgumentError(("consumers", key), f"is a {type(module).__name__}: a producer is a recurrent "
                                                        f"module listed in layers, or an nn.Embedding")
            names: List[str] = []
            for i, pattern in enumerate(options.names(("consumers", key), value, allow_empty=True)):
                try:
                    names.extend(n for n in index.resolve(pattern) if n not in names)
                except LookupError as exc:
                    raise ArgumentError(("consumers", key, i), str(exc)) from None
            self.consumers[key] = names

    def param(self, name: str, key: Any) -> str:
        try:
            return self.index.canonical(name)
        except LookupError as exc:
            raise ArgumentError(key, str(exc)) from None

    def consumer_parts(self, producer: str, width: int, index: torch.Tensor, role: str,
                       seen: List[str]) -> List[UnitPart]:
        """Column parts of ``producer``'s declared consumers (and, through a tied embedding, of its consumers)."""
        parts: List[UnitPart] = []
        for name in self.consumers[producer]:
            w = self.index.params[name]
            if w.dim() != 2 or w.shape[1] != width:
                raise ArgumentError(("consumers", producer), f"{name} has shape {tuple(w.shape)}; reading "
                                                             f"{producer}'s output it needs {width} columns")
            if name in seen:
                continue
            seen.append(name)
            parts.append(UnitPart(name, 1, index, role))
            embedding = _embedding_of(self.model, w)
            if embedding is not None and embedding != producer:
                if embedding not in self.consumers:
                    raise ArgumentError(("consumers", producer), (
                        f"{name} is the weight of the embedding {embedding!r} too (a tied decoder): removing "
                        f"column j also removes feature j of every embedded word, so name what reads "
                        f"{embedding!r}'s output as well, e.g. consumers: {{{producer}: [...], "
                        f"{embedding}: [{next(iter(self.recurrent), 'rnn')}.weight_ih_l0]}}"))
                parts.extend(self.consumer_parts(embedding, width, index, "coupled", seen))
        return parts

    def layer(self, module: str, layer: int, layout: RecurrentLayout) -> Optional[UnitLayer]:
        h, g, d = layout.hidden_size, layout.gates, layout.directions
        rows, columns = _rows(h, g), _columns(h, d)
        unit = torch.arange(h).unsqueeze(1)
        parts: List[UnitPart] = []
        for direction in range(d):
            for kind, local in layout.names(layer, direction).items():
                name = self.param(f"{module}.{local}", ("layers", module))
                role = "bias" if kind.startswith("bias") else "gates"
                parts.append(UnitPart(name, 0, rows, role))
                if kind == "weight_hh":
                    parts.append(UnitPart(name, 1, unit, "recurrent"))
        if layer + 1 < layout.num_layers:
            for direction in range(d):
                name = self.param(f"{module}.{layout.names(layer + 1, direction)['weight_ih']}", ("layers", module))
                parts.append(UnitPart(name, 1, columns, "consumer"))
        else:
            if module not in self.consumers:
                raise ArgumentError("consumers", (
                    f"names no weights that read {module!r}'s output; give them, e.g. consumers: {{{module}: "
                    f"[decoder.weight]}}, or {{{module}: []}} if nothing in the model does (its last layer's units "
                    f"are then not grouped, since removing them would change the model's output)"))
            consumer = self.consumer_parts(module, h * d, columns, "consumer", [])
            if not self.consumers[module]:
                return None
            parts.extend(consumer)
        return UnitLayer(module, layer, layout.mode, h, d, layout.num_layers, tuple(_merge(parts)))


def _merge(parts: List[UnitPart]) -> List[UnitPart]:
    """One part per (tensor, dim): positions of parts on the same tensor and dim are concatenated per unit."""
    merged: Dict[Tuple[str, int], UnitPart] = {}
    for p in parts:
        key = (p.name, p.dim)
        if key in merged:
            old = merged[key]
            merged[key] = UnitPart(p.name, p.dim, torch.cat([old.index, p.index], dim=1), old.role)
        else:
            merged[key] = p
    return list(merged.values())


def unit_groups(model: nn.Module, layers: Sequence[str], consumers: Optional[Mapping[str, Sequence[str]]] = None,
                index: Optional[ParameterIndex] = None) -> List[UnitLayer]:
    """The unit groups of every layer of the named recurrent modules.

    Args:
        model: the model.
        layers: recurrent module names, or globs over module names (``rnns.*``); every layer of each is grouped.
        consumers: ``{producer module: [weight names or patterns]}``: the weights that read a module's output
            through their columns (``{rnn: [decoder.weight]}``); a tied decoder also needs its embedding's
            entry (see the module docstring). ``[]`` leaves the module's last layer out.
        index: the :class:`~compress.sparsity.ParameterIndex` to resolve names with (default: the model's).

    Returns:
        One :class:`UnitLayer` per grouped layer, module by module, first layer first.

    Raises:
        ArgumentError: naming the entry of ``layers`` or ``consumers`` that is wrong: not a module, not a
            recurrent type, a consumer of the wrong width, a tied decoder whose embedding's readers are not named.
    """
    layers = options.names("layers", layers)
    consumers = options.mapping("consumers", consumers or {}, allow_empty=True)
    index = index or ParameterIndex(model)
    recurrent: Dict[str, RecurrentLayout] = {}
    for i, name in _module_names(model, layers):
        recurrent[name] = recurrent_layout(_find_module(model, name), ("layers", i))
    builder = _Builder(model, index, consumers, recurrent)
    out: List[UnitLayer] = []
    for module, layout in recurrent.items():
        for layer in range(layout.num_layers):
            group = builder.layer(module, layer, layout)
            if group is not None:
                out.append(group)
    return out


def layer_values(key: str, value: Any, groups: Sequence[UnitLayer], check: Callable[..., Any],
                 default: Any = None) -> List[Any]:
    """One value per grouped layer, from one value for every layer or ``{module: value or [value per layer]}``.

    Args:
        key: the argument's name, for messages.
        value: ``None`` (every layer gets ``default``), a value, or a mapping from module names (as in
            ``layers``) to a value or a list with one value per layer of that module.
        groups: the layers, as :func:`unit_groups` returns them.
        check: ``check(key_path, value)`` validates one value (an :mod:`compress.options` check).
        default: the value of layers that ``value`` does not mention.

    Raises:
        ArgumentError: a module that is not grouped, a list of the wrong length, or a value ``check`` refuses.

    Example:
        >>> from compress.options import fraction
        >>> model = nn.ModuleDict({"rnn": nn.LSTM(3, 4, num_layers=2)})
        >>> groups = unit_groups(model, ["rnn"], {"rnn": []})   # nothing reads its output: the last layer stays
        >>> layer_values("final_sparsity", 0.5, groups, fraction)    # the last layer is not grouped
        [0.5]
    """
    if value is None:
        return [default for _ in groups]
    if not isinstance(value, Mapping):
        return [check(key, value) for _ in groups]
    modules = {g.module: g.num_layers for g in groups}
    for module in value:
        if module not in modules:
            raise ArgumentError((key, module), f"is not a grouped module (grouped: {', '.join(modules) or 'none'})")
    out = []
    for g in groups:
        if g.module not in value:
            out.append(default)
            continue
        v = value[g.module]
        if isinstance(v, (list, tuple)):
            if len(v) != modules[g.module]:
                raise ArgumentError((key, g.module), f"lists {len(v)} values; {g.module} has {modules[g.module]} "
                                                     f"layers (one value each)")
            out.append(check((key, g.module, g.layer), v[g.layer]))
        else:
            out.append(check((key, g.module), v))
    return out
