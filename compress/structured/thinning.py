"""Thinning: turn a model whose hidden units are pruned into a physically smaller one that computes the same.

A unit whose *outgoing* weights (its column of ``weight_hh`` and its columns in whatever reads the layer's
output, :mod:`compress.structured.units`) are all zero reaches nothing, so deleting it changes no output. After
:class:`~compress.pruning.UnitPruner` (or ISS's lasso and zero-out) that holds for every removed unit, and
:func:`thin` deletes them:

* each recurrent module that lost units becomes a :class:`ThinnedRNN`: a stack of one-layer ``nn.LSTM``/``nn.GRU``
  (or modular) layers, one per original layer, each with its own hidden size (``nn.LSTM`` has one size for all
  layers; ISS's learned sizes differ per layer). Its parameters are ``rnn.layers.{k}.weight_ih_l0`` and so on;
* the weights that read a module's output (a decoder ``nn.Linear``, an embedding tied to it, the next module's
  input weights) lose the matching columns; a tied embedding/decoder stays one tensor.

**State.** A :class:`ThinnedRNN` takes and returns the recurrent state at the *original* width
(``(layers * directions, batch, hidden_size)``, removed units at zero), so a model's own ``init_hidden`` and
state handling keep working unchanged; only the weights and the arithmetic shrink.

**Saving and loading.** The kept units of every layer are buffers of the :class:`ThinnedRNN`
(``rnn.units_l0``, ...), so a thinned model's ``state_dict`` records its shape. To load it, rebuild the structure
from the dense model's code first: ``thinned_skeleton(RNNModel(...), checkpoint_path)``, then
:func:`compress.load_checkpoint` (which says so when given a dense model).

**Training on.** The thinned model's parameters are new tensors with new names, so make a new optimizer with
:func:`thin_optimizer` (same class and hyper-parameters, its per-weight state, e.g. momentum, sliced like the
weights) and a new scheduler from a schedule that names the thinned model's weights (or none); masks of other
pruners can be carried over with :meth:`ThinningPlan.slice` and :meth:`ThinningPlan.new_name`.

**Quantizing.** The layers are ordinary ``nn.LSTM``/``nn.GRU`` modules, so
:func:`compress.quantization.export_model` turns them into real INT8 layers as it does for any model.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from compress.structured.units import unit_groups
    >>> class LM(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.rnn, self.decoder = nn.LSTM(3, 4), nn.Linear(4, 5)
    ...     def forward(self, x):
    ...         return self.decoder(self.rnn(x)[0])
    >>> model = LM()
    >>> with torch.no_grad():
    ...     model.decoder.weight[:, 1] = 0; model.rnn.weight_hh_l0[:, 1] = 0   # unit 1 reaches nothing
    >>> small = thin(model, unit_groups(model, ["rnn"], {"rnn": ["decoder.weight"]}))
    >>> small.rnn.hidden_sizes, tuple(small.decoder.weight.shape)
    ([3], (5, 3))
    >>> x = torch.randn(6, 2, 3)
    >>> torch.allclose(small(x), model(x), atol=1e-6)
    True
"""
from __future__ import annotations

import copy
import inspect
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from compress.errors import ArgumentError, CheckpointError, CompressError, describe
from compress.modules.rnn import ModularGRU, ModularLSTM
from compress.sparsity.names import ParameterIndex
from compress.structured.units import RECURRENT_TYPES, RecurrentLayout, UnitLayer, recurrent_layout

log = logging.getLogger(__name__)

__all__ = ["ThinnedRNN", "ThinningPlan", "thin", "thinning_plan", "apply_plan", "thinned_skeleton", "thin_optimizer",
           "hidden_sizes", "is_thinned_state"]

_UNITS_BUFFER = re.compile(r"^(?:(.*)\.)?units_l(\d+)$")


# ---------------------------------------------------------------------------------------------- the module
class ThinnedRNN(nn.Module):
    """A stacked recurrent layer whose layers have hidden sizes of their own, with the full-width state interface.

    Args:
        layers: one-layer ``nn.LSTM``/``nn.GRU``/modular modules, first layer first; layer ``k + 1`` reads
            layer ``k``'s output.
        units: per layer, the kept units' indices in the original numbering (stored as buffers ``units_l{k}``).
        hidden_size: the original width of every layer (the width of the state it takes and returns).
        mode: ``'LSTM'`` or ``'GRU'``.
        dropout: dropout between layers in training (as ``nn.LSTM``'s ``dropout``).
        batch_first: the layers' layout (as ``nn.LSTM``).
        bidirectional: whether the layers are bidirectional.
    """

    def __init__(self, layers: Sequence[nn.Module], units: Sequence[torch.Tensor], hidden_size: int, mode: str,
                 dropout: float = 0.0, batch_first: bool = False, bidirectional: bool = False):
        super().__init__()
        if len(layers) != len(units) or not layers:
            raise ValueError(f"need one index of kept units per layer, got {len(units)} for {len(layers)} layers")
        self.layers = nn.ModuleList(layers)
        for k, u in enumerate(units):
            self.register_buffer(f"units_l{k}", torch.as_tensor(u, dtype=torch.long).clone())
        self.hidden_size, self.mode, self.num_layers = hidden_size, mode, len(layers)
        self.batch_first, self.bidirectional = batch_first, bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.dropout = nn.Dropout(dropout)

    @property
    def input_size(self) -> int:
        return self.layers[0].input_size

    @property
    def hidden_sizes(self) -> List[int]:
        """The kept units of each layer."""
        return [int(self.units(k).numel()) for k in range(self.num_layers)]

    def units(self, layer: int) -> torch.Tensor:
        """Indices (original numbering) of layer ``layer``'s kept units."""
        return getattr(self, f"units_l{layer}")

    def flatten_parameters(self) -> None:
        for layer in self.layers:
            if hasattr(layer, "flatten_parameters"):
                layer.flatten_parameters()

    def forward(self, input: Union[torch.Tensor, PackedSequence], hx: Any = None):
        """``nn.LSTM``/``nn.GRU`` semantics; ``hx`` and the returned state have the original width."""
        lstm = self.mode == "LSTM"
        parts = None if hx is None else (tuple(hx) if lstm else (hx,))
        d = self.num_directions
        finals: List[List[torch.Tensor]] = [[], []] if lstm else [[]]
        x = input
        for k, layer in enumerate(self.layers):
            units = self.units(k)
            state = None
            if parts is not None:
                state = tuple(p[k * d:(k + 1) * d].index_select(-1, units) for p in parts)
                state = state if lstm else state[0]
            x, state = layer(x, state)
            for i, s in enumerate(state if lstm else (state,)):
                full = s.new_zeros(*s.shape[:-1], self.hidden_size)
                finals[i].append(full.index_copy(-1, units, s))
            if k + 1 < self.num_layers and self.training and self.dropout.p > 0:
                x = (PackedSequence(self.dropout(x.data), x.batch_sizes, x.sorted_indices, x.unsorted_indices)
                     if isinstance(x, PackedSequence) else self.dropout(x))
        out = tuple(torch.cat(f, dim=0) for f in finals)
        return x, (out if lstm else out[0])

    def extra_repr(self) -> str:
        return f"hidden_size={self.hidden_size}, hidden_sizes={self.hidden_sizes}, mode={self.mode}"


def hidden_sizes(model: nn.Module) -> Dict[str, List[int]]:
    """``{module name: [hidden size per layer]}`` of every recurrent module of ``model`` (thinned or not).

    Example:
        >>> hidden_sizes(nn.ModuleDict({"rnn": nn.GRU(3, 5, num_layers=2)}))
        {'rnn': [5, 5]}
    """
    out: Dict[str, List[int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, ThinnedRNN):
            out[name] = m.hidden_sizes
        elif isinstance(m, RECURRENT_TYPES) and not any(name.startswith(t + ".layers.") for t in out):
            out[name] = [m.hidden_size] * m.num_layers
    return out


# ---------------------------------------------------------------------------------------------- the plan
@dataclass
class ThinningPlan:
    """What :func:`apply_plan` keeps of a model: per tensor, the kept positions along each dim.

    Args:
        keep: ``{canonical parameter name: {dim: kept positions}}``; tensors not listed are kept whole.
        units: ``{recurrent module: [kept units per layer]}`` for the modules that become :class:`ThinnedRNN`.
        renamed: ``{old name: new name}`` of the parameters whose name changes (those of a :class:`ThinnedRNN`).
    """

    keep: Dict[str, Dict[int, torch.Tensor]] = field(default_factory=dict)
    units: Dict[str, List[torch.Tensor]] = field(default_factory=dict)
    renamed: Dict[str, str] = field(default_factory=dict)

    @property
    def hidden_sizes(self) -> Dict[str, List[int]]:
        """``{module: [kept units per layer]}`` of the modules that lose units."""
        return {m: [int(u.numel()) for u in units] for m, units in self.units.items()}

    def new_name(self, name: str) -> str:
        """The thinned model's name of the original parameter ``name``."""
        return self.renamed.get(name, name)

    def slice(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` (shaped like parameter ``name``: a weight, a mask, optimizer state) cut as the plan cuts it."""
        out = tensor
        for dim, kept in sorted(self.keep.get(name, {}).items()):
            out = out.index_select(dim, kept.to(out.device))
        return out


def _groups_of(source: Any) -> List[UnitLayer]:
    if isinstance(source, UnitLayer):
        return [source]
    groups = getattr(source, "groups", None)
    if groups is not None:
        return list(groups)
    components = getattr(source, "components", None)
    if isinstance(components, Mapping):  # a CompressionScheduler: every unit pruner's and regularizer's groups
        found: Dict[str, UnitLayer] = {}
        for section in components.values():
            for component in section.values():
                for g in getattr(component, "groups", None) or []:
                    if isinstance(g, UnitLayer):
                        found.setdefault(g.key, g)
        if not found:
            raise ArgumentError("groups", "the scheduler has no unit pruner or unit regularizer to take groups from")
        return list(found.values())
    if isinstance(source, (list, tuple)) and all(isinstance(g, UnitLayer) for g in source):
        return list(source)
    raise ArgumentError("groups", f"expected unit groups (unit_groups(...)), a UnitPruner, a "
                                  f"UnitGroupLassoRegularizer or a scheduler with one, got {type(source).__name__}")


def _recurrent_modules(model: nn.Module) -> Dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, RECURRENT_TYPES) and n}


def _canonical(index: ParameterIndex, prefix: str, local: str) -> str:
    return index.canonical(f"{prefix}.{local}")


def _single(layout: RecurrentLayout) -> RecurrentLayout:
    """The layout of one layer of ``layout`` as a module of its own (a :class:`ThinnedRNN` layer)."""
    return RecurrentLayout(layout.mode, layout.gates, 0, 0, 1, layout.directions, layout.bias, layout.batch_first,
                           0.0, layout.modular)


def _renamed(index: ParameterIndex, module: str, layout: RecurrentLayout) -> Iterable[Tuple[int, str, str, str]]:
    """``(layer, kind, old canonical name, new name)`` of every parameter of ``module`` once it is a ThinnedRNN."""
    single = _single(layout)
    for k in range(layout.num_layers):
        for d in range(layout.directions):
            new = single.names(0, d)
            for kind, local in layout.names(k, d).items():
                old = _canonical(index, module, local)
                yield k, kind, old, old[: len(old) - len(local)] + f"layers.{k}.{new[kind]}"


def thinning_plan(model: nn.Module, groups: Any) -> ThinningPlan:
    """The plan that removes every unit of ``groups`` whose outgoing weights are all zero in ``model``.

    Args:
        model: the (masked) model.
        groups: unit groups: a list from :func:`~compress.structured.units.unit_groups`, a
            :class:`~compress.pruning.UnitPruner` or :class:`~compress.pruning.UnitGroupLassoRegularizer`, or a
            scheduler that has one.

    Raises:
        ArgumentError: ``groups`` is none of these.
    """
    groups = _groups_of(groups)
    index = ParameterIndex(model)
    params = index.params
    removed: Dict[Tuple[str, int], List[torch.Tensor]] = {}
    kept_units: Dict[Tuple[str, int], torch.Tensor] = {}
    with torch.no_grad():
        for g in groups:
            keep = ~g.silent(params).cpu()
            if not keep.any():
                log.warning("%s: every unit is silent; keeping unit 0 so the layer is not empty", g.key)
                keep[0] = True
            kept_units[(g.module, g.layer)] = keep.nonzero().flatten()
            drop = (~keep).nonzero().flatten()
            if drop.numel() == 0:
                continue
            for p in g.parts:
                removed.setdefault((p.name, p.dim), []).append(p.index[drop].flatten())
    plan = ThinningPlan()
    for (name, dim), positions in removed.items():
        size = params[name].shape[dim]
        mask = torch.ones(size, dtype=torch.bool)
        mask[torch.cat(positions)] = False
        plan.keep.setdefault(name, {})[dim] = mask.nonzero().flatten()
    modules = {g.module for g in groups}
    for module in modules:
        rnn = _find(model, module)
        layout = recurrent_layout(rnn, module)
        units = [kept_units.get((module, k), torch.arange(layout.hidden_size)) for k in range(layout.num_layers)]
        if all(u.numel() == layout.hidden_size for u in units):
            continue
        plan.units[module] = units
        plan.renamed.update((old, new) for _, _, old, new in _renamed(index, module, layout))
    return plan


def _find(model: nn.Module, name: str) -> nn.Module:
    for candidate in (name, "module." + name):
        try:
            return model.get_submodule(candidate)
        except AttributeError:
            continue
    raise ArgumentError("groups", f"{name!r} is not a module of the model")


# ---------------------------------------------------------------------------------------------- building
def _base_class(layout: RecurrentLayout) -> type:
    if layout.modular:
        return ModularLSTM if layout.mode == "LSTM" else ModularGRU
    return nn.LSTM if layout.mode == "LSTM" else nn.GRU


def _new_recurrent(layout: RecurrentLayout, input_size: int, hidden: int, num_layers: int, dropout: float,
                   like: torch.Tensor) -> nn.Module:
    cls = _base_class(layout)
    module = cls(input_size, hidden, num_layers, bias=layout.bias, batch_first=layout.batch_first,
                 dropout=dropout if num_layers > 1 else 0.0, bidirectional=layout.directions == 2)
    return module.to(device=like.device, dtype=like.dtype)


def _fill(module: nn.Module, values: Dict[str, Tuple[torch.Tensor, bool]]) -> None:
    """Copy ``{local name: (value, requires_grad)}`` into ``module``'s parameters."""
    index = ParameterIndex(module)
    with torch.no_grad():
        for local, (value, requires_grad) in values.items():
            param = index.params[index.canonical(local)]
            param.copy_(value)
            param.requires_grad_(requires_grad)
    if hasattr(module, "flatten_parameters"):
        module.flatten_parameters()


def _thin_recurrent(rnn: nn.Module, name: str, index: ParameterIndex, plan: ThinningPlan) -> nn.Module:
    layout = recurrent_layout(rnn, name)
    params = index.params

    def cut(local: str) -> Tuple[torch.Tensor, bool]:
        canonical = _canonical(index, name, local)
        return plan.slice(canonical, params[canonical].detach()), params[canonical].requires_grad

    if name not in plan.units:  # the module keeps its units: only its first layer's inputs may go
        first = {_canonical(index, name, layout.names(0, d)["weight_ih"]) for d in range(layout.directions)}
        for k in range(layout.num_layers):
            for d in range(layout.directions):
                for local in layout.names(k, d).values():
                    canonical = _canonical(index, name, local)
                    cut = set(plan.keep.get(canonical, {}))
                    if cut and (canonical not in first or cut != {1}):
                        raise CompressError(f"cannot thin {name}: {canonical} would lose positions although none of "
                                            f"{name}'s units goes; only its first layer's input columns can")
    like = params[_canonical(index, name, layout.names(0, 0)["weight_ih"])]
    first_input = cut(layout.names(0, 0)["weight_ih"])[0].shape[1]
    if name not in plan.units:  # same units, fewer input features: the same kind of module, narrower
        new = _new_recurrent(layout, first_input, layout.hidden_size, layout.num_layers, layout.dropout, like)
        _fill(new, {local: cut(local) for k in range(layout.num_layers) for d in range(layout.directions)
                    for local in layout.names(k, d).values()})
        new.train(rnn.training)
        return new
    units = plan.units[name]
    layers = []
    for k, kept in enumerate(units):
        width = first_input if k == 0 else int(units[k - 1].numel()) * layout.directions
        layer = _new_recurrent(layout, width, int(kept.numel()), 1, 0.0, like)
        single = recurrent_layout(layer, name)
        _fill(layer, {single.names(0, d)[kind]: cut(local) for d in range(layout.directions)
                      for kind, local in layout.names(k, d).items()})
        layers.append(layer)
    if type(rnn) not in (nn.LSTM, nn.GRU, ModularLSTM, ModularGRU):
        log.info("%s: %s thinned into %s layers (what the subclass adds is not carried over)", name,
                 type(rnn).__name__, _base_class(layout).__name__)
    thinned = ThinnedRNN(layers, [u.to(like.device) for u in units], layout.hidden_size, layout.mode,
                         layout.dropout, layout.batch_first, layout.directions == 2)
    thinned.train(rnn.training)
    return thinned


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def apply_plan(model: nn.Module, plan: ThinningPlan) -> nn.Module:
    """A thinned copy of ``model`` (which is not changed): every tensor cut as ``plan`` says.

    Recurrent modules that lose units become :class:`ThinnedRNN`; a recurrent module that only loses input
    features, an ``nn.Linear`` or an ``nn.Embedding`` becomes a narrower one of the same kind. A tensor tied
    between modules stays one tensor.

    Raises:
        CompressError: a tensor to cut belongs to a module of another kind, which thinning cannot rebuild.
    """
    model = copy.deepcopy(model)
    index = ParameterIndex(model)
    recurrent = _recurrent_modules(model)
    touched = set(plan.keep) | {index.canonical(f"{m}.{n}") for m in plan.units
                                for n, _ in _find(model, m).named_parameters()}
    done: set = set()
    for name, rnn in recurrent.items():
        prefix = name + "."
        mine = {index.canonical(prefix + n) for n, _ in rnn.named_parameters()}
        if not mine & touched or any(name.startswith(r + ".") for r in done):
            continue
        _set_module(model, name, _thin_recurrent(rnn, name, index, plan))
        done.add(name)
        touched -= mine
    shared: Dict[int, nn.Parameter] = {}
    owners = [(n, m) for n, m in model.named_modules() if not any(n == r or n.startswith(r + ".") for r in done)]
    for name in sorted(touched):
        param = index.params[name]
        holders = [(n, m) for n, m in owners if any(p is param for p in m._parameters.values())]
        for holder, module in holders:
            if not isinstance(module, (nn.Linear, nn.Embedding)) or module.weight is not param:
                raise CompressError(f"cannot thin {name}: it belongs to {holder or 'the model'} "
                                    f"({type(module).__name__}); thinning rebuilds nn.Linear, nn.Embedding and "
                                    f"recurrent layers")
            if id(param) not in shared:
                shared[id(param)] = nn.Parameter(plan.slice(name, param.detach()).clone(), param.requires_grad)
            weight = shared[id(param)]
            if isinstance(module, nn.Linear):
                new = nn.Linear(weight.shape[1], weight.shape[0], bias=module.bias is not None,
                                device=weight.device, dtype=weight.dtype)
                if module.bias is not None:
                    new.bias = module.bias
            else:
                new = nn.Embedding(module.num_embeddings, weight.shape[1], padding_idx=module.padding_idx,
                                   max_norm=module.max_norm, norm_type=module.norm_type,
                                   scale_grad_by_freq=module.scale_grad_by_freq, sparse=module.sparse,
                                   device=weight.device, dtype=weight.dtype)
            new.weight = weight
            new.train(module.training)
            _set_module(model, holder, new)
    return model


def thin(model: nn.Module, groups: Any) -> nn.Module:
    """A physically smaller copy of ``model`` without the units of ``groups`` whose outgoing weights are all zero.

    It computes the same function as ``model`` (to float rounding: the same products, fewer zero terms). See the
    module docstring for the state interface, saving and loading, optimizers and quantization.

    Args:
        model: the (masked) model; not changed.
        groups: unit groups: a list from :func:`~compress.structured.units.unit_groups`, a
            :class:`~compress.pruning.UnitPruner` or :class:`~compress.pruning.UnitGroupLassoRegularizer`, or a
            scheduler that has one.

    Returns:
        The thinned model (a new module tree; parameters are new tensors).
    """
    return apply_plan(model, thinning_plan(model, groups))


# ---------------------------------------------------------------------------------------------- loading
def is_thinned_state(state: Mapping[str, Any]) -> bool:
    """True when a ``state_dict`` holds a :class:`ThinnedRNN` (its ``units_l{k}`` buffers)."""
    return any(_UNITS_BUFFER.match(k) and torch.is_tensor(v) and v.dtype == torch.long for k, v in state.items())


def thinned_skeleton(model: nn.Module, state: Union[str, os.PathLike, Mapping[str, Any]]) -> nn.Module:
    """``model`` (a dense model of the architecture, any weights) thinned to the shapes of a saved thinned model.

    Load the weights into the result afterwards (``load_state_dict`` or :func:`compress.load_checkpoint`). The
    torch RNG is as it was (building the smaller layers draws no numbers for the caller to see).

    Args:
        model: a freshly built dense model; not changed.
        state: a thinned model's ``state_dict``, or a checkpoint file (:func:`compress.save_checkpoint`).

    Raises:
        CheckpointError: the file is unreadable, or (naming the file and the tensor) does not fit the model's
            architecture.
        CompressError: a ``state_dict`` given in memory does not fit the model's architecture: a layer of units
            missing, units that are not distinct indices of the layer's hidden units, a weight of another rank,
            or wider than the dense one.
    """
    source = None
    if not isinstance(state, Mapping):
        from compress.io.checkpoint import read_checkpoint  # the checkpoint module imports the scheduler

        source = os.fspath(state)
        state = read_checkpoint(state)["model"]
    elif "model" in state and isinstance(state.get("model"), Mapping) and "format" in state:
        state = state["model"]
    try:
        with torch.random.fork_rng(devices=[]):
            return _skeleton(model, state)
    except CompressError as exc:
        if source is None:
            raise
        raise CheckpointError(f"{source}: model: {exc}") from None


def _saved_units(key: str, value: Any, hidden_size: int) -> torch.Tensor:
    """A ``units_l{k}`` buffer: distinct indices of the dense layer's ``hidden_size`` units, at least one."""
    if not torch.is_tensor(value) or value.dim() != 1 or value.is_floating_point() or value.is_complex() \
            or value.dtype == torch.bool or value.numel() == 0:
        raise CompressError(f"{key!r}: expected a non-empty 1-d tensor of unit indices, got {describe(value)}")
    units = value.long()
    if int(units.min()) < 0 or int(units.max()) >= hidden_size or units.unique().numel() != units.numel():
        raise CompressError(f"{key!r}: expected distinct unit indices in [0, {hidden_size}), got {describe(units)}")
    return units


def _skeleton(model: nn.Module, state: Mapping[str, Any]) -> nn.Module:
    index = ParameterIndex(model)
    plan = ThinningPlan()
    units: Dict[str, Dict[int, Tuple[str, Any]]] = {}
    # A weight outside the recurrent modules loses columns only as a consumer of a module's last layer (a
    # decoder, a projection) or as the producer of its first layer's input (a tied embedding): its width is one
    # of these, whichever it is (the file does not say which tensor reads which layer).
    widths = set()
    for key, value in state.items():
        match = _UNITS_BUFFER.match(key) if isinstance(key, str) else None
        if match and torch.is_tensor(value):
            units.setdefault(match.group(1) or "", {})[int(match.group(2))] = key, value
    for module, per_layer in units.items():
        rnn = _find(model, module)
        if not isinstance(rnn, RECURRENT_TYPES) or sorted(per_layer) != list(range(rnn.num_layers)):
            raise CompressError(f"the saved model thins {module!r} into layers {sorted(per_layer)}; the model's "
                                f"{module!r} is a {type(rnn).__name__}"
                                + (f" of {rnn.num_layers} layers" if isinstance(rnn, RECURRENT_TYPES) else ""))
        layout = recurrent_layout(rnn, module)
        plan.units[module] = kept_units = [_saved_units(*per_layer[k], layout.hidden_size)
                                           for k in range(rnn.num_layers)]
        widths.add(layout.directions * kept_units[-1].numel())
        for k, kind, old, new in _renamed(index, module, layout):
            saved = state.get(new)
            if not torch.is_tensor(saved):
                raise CompressError(f"the saved model thins {module!r} but has no {new!r}")
            plan.renamed[old] = new
            kept = kept_units[k]
            cut = {0: (torch.arange(layout.gates).unsqueeze(1) * layout.hidden_size + kept).flatten()}
            if kind == "weight_hh":
                cut[1] = kept
            elif kind == "weight_ih":
                dense = index.params[old]
                if saved.dim() != 2 or not 0 < saved.shape[1] <= dense.shape[1]:
                    raise CompressError(f"{new!r} has shape {tuple(saved.shape)}; a thinned {kind} has at most "
                                        f"the dense one's {dense.shape[1]} columns")
                feeding = layout.directions * kept_units[k - 1].numel() if k else None  # the layer below's output
                if feeding is not None and saved.shape[1] != feeding:
                    raise CompressError(f"{new!r} takes {saved.shape[1]} inputs; the layer below keeps {feeding}")
                cut[1] = torch.arange(saved.shape[1])  # which inputs they were does not matter for a skeleton
                if k == 0:
                    widths.add(saved.shape[1])
            plan.keep[old] = cut
    for name, param in index.params.items():
        if name in plan.renamed:
            continue
        saved = state.get(name)
        if not torch.is_tensor(saved) or saved.shape == param.shape:
            continue
        if saved.dim() != param.dim() or saved.shape[0] != param.shape[0] or param.dim() != 2 \
                or not 0 < saved.shape[1] <= param.shape[1]:
            raise CompressError(f"{name!r} has shape {tuple(saved.shape)} in the saved model and "
                                f"{tuple(param.shape)} in this one; thinning only removes columns of such weights")
        if saved.shape[1] not in widths:
            raise CompressError(f"{name!r} keeps {saved.shape[1]} columns, which fits no thinned layer: the "
                                f"recurrent layers it can read or feed keep {sorted(widths)}")
        plan.keep[name] = {1: torch.arange(saved.shape[1])}
    return apply_plan(model, plan)


# ---------------------------------------------------------------------------------------------- optimizers
def thin_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module, thinned: nn.Module,
                   plan: ThinningPlan) -> torch.optim.Optimizer:
    """An optimizer for ``thinned`` like ``optimizer`` for ``model``: same class, parameter groups and
    hyper-parameters (the current learning rate included), and its per-weight state cut as the weights were.

    Args:
        optimizer: the optimizer of ``model``.
        model: the model before thinning.
        thinned: :func:`apply_plan`'s (or :func:`thin`'s) result for ``model`` and ``plan``.
        plan: the plan (:func:`thinning_plan`) the thinned model was made with.

    Raises:
        ArgumentError: a parameter of the optimizer is not one of ``model``'s.
    """
    old_names = {id(p): n for n, p in ParameterIndex(model).params.items()}
    new_index = ParameterIndex(thinned)

    def counterpart(p: torch.Tensor) -> Tuple[str, nn.Parameter]:
        if id(p) not in old_names:
            raise ArgumentError("optimizer", "holds a parameter that is not one of the model's")
        old = old_names[id(p)]
        return old, new_index.params[new_index.canonical(plan.new_name(old))]

    groups = []
    for group in optimizer.param_groups:
        groups.append({**{k: v for k, v in group.items() if k != "params"},
                       "params": [counterpart(p)[1] for p in group["params"]]})
    accepted = inspect.signature(type(optimizer).__init__).parameters
    defaults = {k: v for k, v in optimizer.defaults.items() if k in accepted}
    new = type(optimizer)(groups, **defaults)
    for p, state in optimizer.state.items():
        old, q = counterpart(p)
        new.state[q] = {k: (plan.slice(old, v).clone() if torch.is_tensor(v) and v.shape == p.shape
                            else (v.clone() if torch.is_tensor(v) else copy.deepcopy(v)))
                        for k, v in state.items()}
    return new
