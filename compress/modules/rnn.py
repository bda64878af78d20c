"""Modular LSTM and GRU: the recurrent layers rebuilt from ``nn.Linear`` and element-wise modules.

``nn.LSTM``/``nn.GRU`` run their gates inside one C++/cuDNN call, so a quantizer can reach only their weights.
Here every operation of a cell is a named submodule, which a quantizer can observe (calibration statistics),
wrap (integer or FP16 simulation) and address by name in ``overrides``. The LSTM keeps Distiller's submodule
names and PyTorch's ``i, f, g, o`` gate order, so Distiller's statistics and override files keep working::

    rnn.cells.0.fc_gate_x   rnn.cells.0.fc_gate_h   rnn.cells.0.eltwiseadd_gate
    rnn.cells.0.act_{f,i,o,g,h}   rnn.cells.0.eltwisemult_{cell_forget,cell_input,hidden}
    rnn.cells.0.eltwiseadd_cell   rnn.dropout   (rnn.cells_reverse.N.* when bidirectional)

The input projection ``fc_gate_x`` is applied to the whole sequence in one matrix product per layer and
direction; only the recurrent part loops over time steps. Bidirectional layers, any number of layers,
``batch_first``, unbatched input and ``PackedSequence`` input (variable lengths, by masking) are supported, for
the LSTM and the GRU (how this differs from Distiller's ``DistillerLSTM``: ``docs/distiller-compat.md``).

Conversion shares the Parameter objects (no copy), so an optimizer built before the conversion still
updates them; note that parameter *names* change (``rnn.weight_ih_l0`` → ``rnn.cells.0.fc_gate_x.weight``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from compress.modules.eltwise import EltwiseAdd, EltwiseMult, EltwiseSub

__all__ = ["ModularLSTMCell", "ModularGRUCell", "ModularLSTM", "ModularGRU", "convert_to_modular",
           "convert_from_modular", "converted_module_names", "converted_module_types"]

LSTMState = Tuple[torch.Tensor, torch.Tensor]


def _uniform_init(module: nn.Module, hidden_size: int) -> None:
    # nn.LSTM/nn.GRU initialise every weight and bias from U(-1/sqrt(H), 1/sqrt(H)).
    bound = 1.0 / math.sqrt(hidden_size)
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)


def _param(value: Optional[torch.Tensor]) -> Optional[nn.Parameter]:
    if value is None or isinstance(value, nn.Parameter):
        return value
    return nn.Parameter(value.detach())


class _ModularCell(nn.Module):
    """What the modular LSTM and GRU cells share: ``forward`` as in PyTorch's cell, and conversion to and from it.

    Subclasses set ``torch_cell`` (the PyTorch cell class), ``gates`` (gate blocks packed in ``fc_gate_x``'s rows)
    and ``state_arity`` (tensors in the recurrent state: 2 for the LSTM's ``(h, c)``, 1 for the GRU's ``h``), and
    define ``recurrence`` and ``init_state``. The layers ask their cell for these, so a new cell type needs no
    change to them.
    """

    torch_cell: type
    gates: int
    state_arity: int

    def forward(self, input: torch.Tensor, hx: Optional[Any] = None) -> Any:
        """The PyTorch cell's ``forward``: ``input`` ``(B, I)`` or ``(I,)``; returns the next state."""
        if hx is None:
            hx = self.init_state(input.shape[:-1], input)
        return self.recurrence(self.fc_gate_x(input), hx)

    @classmethod
    def from_pytorch(cls, cell: nn.Module) -> _ModularCell:
        """The modular twin of a PyTorch cell, sharing its Parameters."""
        with torch.device("meta"):
            new = cls(cell.input_size, cell.hidden_size, cell.bias)
        _load_gates(new, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        return new

    def to_pytorch(self) -> nn.Module:
        """The PyTorch cell (``nn.LSTMCell``/``nn.GRUCell``) sharing this cell's Parameters."""
        with torch.device("meta"):
            cell = self.torch_cell(self.input_size, self.hidden_size, self.bias)
        _store_gates(self, cell, "weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return cell


class ModularLSTMCell(_ModularCell):
    """One LSTM cell, ``nn.LSTMCell``-compatible, with every operation a named submodule.

    ``gates = fc_gate_x(x) + fc_gate_h(h)``; ``i, f, g, o = chunk(gates, 4)``;
    ``c' = f*c + i*tanh(g)``; ``h' = o*tanh(c')`` (sigmoid on ``i, f, o``).

    Args:
        input_size: features of the input.
        hidden_size: features of the hidden state.
        bias: whether ``fc_gate_x`` and ``fc_gate_h`` have biases.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> reference = nn.LSTMCell(3, 2)
        >>> cell = ModularLSTMCell.from_pytorch(reference)          # shares the Parameters
        >>> x, state = torch.randn(4, 3), (torch.zeros(4, 2), torch.zeros(4, 2))
        >>> h, c = cell(x, state)
        >>> torch.allclose(h, reference(x, state)[0], atol=1e-6), h.shape
        (True, torch.Size([4, 2]))
    """

    torch_cell = nn.LSTMCell
    gates = 4
    state_arity = 2
    #: producer → the submodules that alone consume its output (used by net-aware quantization)
    output_consumers: Dict[str, Tuple[str, ...]] = {"eltwiseadd_gate": ("act_i", "act_f", "act_g", "act_o")}

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.fc_gate_x = nn.Linear(input_size, 4 * hidden_size, bias=bias)
        self.fc_gate_h = nn.Linear(hidden_size, 4 * hidden_size, bias=bias)
        self.eltwiseadd_gate = EltwiseAdd()
        self.act_f = nn.Sigmoid()
        self.act_i = nn.Sigmoid()
        self.act_o = nn.Sigmoid()
        self.act_g = nn.Tanh()
        self.eltwisemult_cell_forget = EltwiseMult()
        self.eltwisemult_cell_input = EltwiseMult()
        self.eltwiseadd_cell = EltwiseAdd()
        self.act_h = nn.Tanh()
        self.eltwisemult_hidden = EltwiseMult()
        if not _on_meta():
            _uniform_init(self, hidden_size)

    def recurrence(self, gates_x: torch.Tensor, state: LSTMState) -> LSTMState:
        """One time step given the input projection ``gates_x = fc_gate_x(x_t)`` of shape ``(B, 4H)``."""
        h, c = state
        gates = self.eltwiseadd_gate(gates_x, self.fc_gate_h(h))
        i, f, g, o = gates.chunk(4, dim=-1)
        i, f, g, o = self.act_i(i), self.act_f(f), self.act_g(g), self.act_o(o)
        c = self.eltwiseadd_cell(self.eltwisemult_cell_forget(f, c), self.eltwisemult_cell_input(i, g))
        h = self.eltwisemult_hidden(o, self.act_h(c))
        return h, c

    def init_state(self, batch_shape: Sequence[int], like: torch.Tensor) -> LSTMState:
        zeros = like.new_zeros(*batch_shape, self.hidden_size)
        return zeros, zeros.clone()



class ModularGRUCell(_ModularCell):
    """One GRU cell, ``nn.GRUCell``-compatible (PyTorch's ``r, z, n`` gate order), built from submodules.

    ``r, z = σ(x_rz + h_rz)``; ``n = tanh(x_n + r*h_n)``; ``h' = n + z*(h - n)`` (which is ``(1-z)*n + z*h``),
    where ``x_* = fc_gate_x(x)`` and ``h_* = fc_gate_h(h)`` (biases included, as in ``nn.GRU``).

    Submodules: ``fc_gate_x``, ``fc_gate_h``, ``eltwiseadd_gate`` (r and z pre-activations), ``act_r``,
    ``act_z``, ``eltwisemult_new_gate`` (``r*h_n``), ``eltwiseadd_new_gate``, ``act_n``, ``eltwisesub_hidden``,
    ``eltwisemult_hidden``, ``eltwiseadd_hidden``.

    Args:
        input_size: features of the input.
        hidden_size: features of the hidden state.
        bias: whether ``fc_gate_x`` and ``fc_gate_h`` have biases.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> reference = nn.GRUCell(3, 2)
        >>> cell = ModularGRUCell.from_pytorch(reference)
        >>> x, h = torch.randn(4, 3), torch.randn(4, 2)
        >>> torch.allclose(cell(x, h), reference(x, h), atol=1e-6)
        True
    """

    torch_cell = nn.GRUCell
    gates = 3
    state_arity = 1
    output_consumers: Dict[str, Tuple[str, ...]] = {"eltwiseadd_gate": ("act_r", "act_z"),
                                                    "eltwiseadd_new_gate": ("act_n",)}

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.fc_gate_x = nn.Linear(input_size, 3 * hidden_size, bias=bias)
        self.fc_gate_h = nn.Linear(hidden_size, 3 * hidden_size, bias=bias)
        self.eltwiseadd_gate = EltwiseAdd()
        self.act_r = nn.Sigmoid()
        self.act_z = nn.Sigmoid()
        self.eltwisemult_new_gate = EltwiseMult()
        self.eltwiseadd_new_gate = EltwiseAdd()
        self.act_n = nn.Tanh()
        self.eltwisesub_hidden = EltwiseSub()
        self.eltwisemult_hidden = EltwiseMult()
        self.eltwiseadd_hidden = EltwiseAdd()
        if not _on_meta():
            _uniform_init(self, hidden_size)

    def recurrence(self, gates_x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """One time step given ``gates_x = fc_gate_x(x_t)`` of shape ``(B, 3H)``."""
        h = state
        hsz = self.hidden_size
        gates_h = self.fc_gate_h(h)
        rz = self.eltwiseadd_gate(gates_x[..., :2 * hsz], gates_h[..., :2 * hsz])
        r, z = rz.chunk(2, dim=-1)
        r, z = self.act_r(r), self.act_z(z)
        n = self.act_n(self.eltwiseadd_new_gate(gates_x[..., 2 * hsz:],
                                                self.eltwisemult_new_gate(r, gates_h[..., 2 * hsz:])))
        return self.eltwiseadd_hidden(n, self.eltwisemult_hidden(z, self.eltwisesub_hidden(h, n)))

    def init_state(self, batch_shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(*batch_shape, self.hidden_size)



def _on_meta() -> bool:
    return torch.empty(0).device.type == "meta"


def _load_gates(cell: nn.Module, w_ih, w_hh, b_ih, b_hh) -> None:
    cell.fc_gate_x.weight = _param(w_ih)
    cell.fc_gate_h.weight = _param(w_hh)
    if cell.bias:
        cell.fc_gate_x.bias = _param(b_ih)
        cell.fc_gate_h.bias = _param(b_hh)


def _store_gates(cell: nn.Module, target: nn.Module, w_ih: str, w_hh: str, b_ih: str, b_hh: str) -> None:
    setattr(target, w_ih, cell.fc_gate_x.weight)
    setattr(target, w_hh, cell.fc_gate_h.weight)
    if cell.bias:
        setattr(target, b_ih, cell.fc_gate_x.bias)
        setattr(target, b_hh, cell.fc_gate_h.bias)


class _ModularRNN(nn.Module):
    cell_class: type = ModularLSTMCell
    mode = "LSTM"
    torch_class: type = nn.LSTM

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 cell_factory: Optional[Callable[[int, int, int], nn.Module]] = None):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.num_directions = 2 if bidirectional else 1
        layer_inputs = [input_size] + [hidden_size * self.num_directions] * (num_layers - 1)
        # cell_factory(layer, direction, input features) lets a subclass supply other cells with the same
        # ``fc_gate_x``/``recurrence`` interface (the real quantized layers do)
        make = cell_factory or (lambda layer, direction, n: self.cell_class(n, hidden_size, bias))
        self.cells = nn.ModuleList(make(k, 0, n) for k, n in enumerate(layer_inputs))
        if bidirectional:
            self.cells_reverse = nn.ModuleList(make(k, 1, n) for k, n in enumerate(layer_inputs))
        # Distiller's name for the inter-layer dropout (its stats files list ``rnn.dropout``)
        self.dropout = nn.Dropout(dropout)

    # -- state layout helpers (a state is a tuple of tensors: (h, c) for LSTM, (h,) for GRU) --
    def _split_state(self, hx) -> Tuple[torch.Tensor, ...]:
        return tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)

    def _join_state(self, parts: Tuple[torch.Tensor, ...]):
        return parts if self.cell_class.state_arity > 1 else parts[0]

    def _cell_state(self, parts, index: int):
        s = tuple(p[index] for p in parts)
        return s if self.cell_class.state_arity > 1 else s[0]

    def flatten_parameters(self) -> None:
        """No-op, for code written for ``nn.LSTM``/``nn.GRU``."""

    def forward(self, input: Union[torch.Tensor, PackedSequence], hx=None):
        """``nn.LSTM``/``nn.GRU`` semantics: returns ``(output, h_n)`` (``(output, (h_n, c_n))`` for the LSTM)."""
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:
            x, lengths = pad_packed_sequence(input, batch_first=False)
            lengths = lengths.to(x.device)
        else:
            x = input.transpose(0, 1) if self.batch_first and input.dim() == 3 else input
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1)
        batch = x.size(1)
        n_states = self.num_layers * self.num_directions
        if hx is None:
            zeros = x.new_zeros(n_states, batch, self.hidden_size)
            parts = tuple(zeros.clone() for _ in range(self.cell_class.state_arity))
        else:
            parts = self._split_state(hx)
            if unbatched:
                parts = tuple(p.unsqueeze(1) for p in parts)
        finals: List[List[torch.Tensor]] = [[] for _ in parts]
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                cell = self.cells[layer] if direction == 0 else self.cells_reverse[layer]
                state = self._cell_state(parts, layer * self.num_directions + direction)
                out, state = self._run(cell, layer_input, state, lengths, reverse=direction == 1)
                outputs.append(out)
                for k, s in enumerate(self._split_state(state)):
                    finals[k].append(s)
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
            if layer < self.num_layers - 1:
                layer_input = self.dropout(layer_input)
        state_out = tuple(torch.stack(f) for f in finals)
        output = layer_input
        if unbatched:
            output = output.squeeze(1)
            state_out = tuple(s.squeeze(1) for s in state_out)
        if packed:
            output = _repack(output, lengths, input)
        elif self.batch_first and output.dim() == 3:
            output = output.transpose(0, 1)
        return output, self._join_state(state_out)

    def _run(self, cell: nn.Module, x: torch.Tensor, state, lengths: Optional[torch.Tensor], reverse: bool):
        steps = x.size(0)
        if reverse:
            index = _reverse_index(steps, x.size(1), lengths, x.device)
            x = x.gather(0, index.unsqueeze(-1).expand_as(x)) if lengths is not None else x.flip(0)
        gates_x = cell.fc_gate_x(x)  # the input projection of all time steps in one matrix product
        outputs = []
        for t in range(steps):
            new_state = cell.recurrence(gates_x[t], state)
            if lengths is not None:
                alive = (t < lengths).unsqueeze(-1)
                new_state = _where_state(alive, new_state, state)
            state = new_state
            h = state[0] if isinstance(state, tuple) else state
            outputs.append(h if lengths is None else h * alive)
        out = torch.stack(outputs)
        if reverse:
            out = out.gather(0, index.unsqueeze(-1).expand_as(out)) if lengths is not None else out.flip(0)
        return out, state

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    @classmethod
    def from_pytorch(cls, rnn: nn.RNNBase) -> _ModularRNN:
        """The modular twin of an ``nn.LSTM``/``nn.GRU``, sharing its Parameters."""
        if getattr(rnn, "proj_size", 0):
            raise ValueError(f"cannot convert {type(rnn).__name__} with proj_size={rnn.proj_size}: "
                             f"projected LSTMs are not supported")
        with torch.device("meta"):
            new = cls(rnn.input_size, rnn.hidden_size, rnn.num_layers, rnn.bias, rnn.batch_first,
                      float(rnn.dropout), rnn.bidirectional)
        new.train(rnn.training)
        for layer in range(rnn.num_layers):
            for suffix, cells in (("", new.cells), ("_reverse", getattr(new, "cells_reverse", None))):
                if cells is None:
                    continue
                names = [f"{n}_l{layer}{suffix}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                _load_gates(cells[layer], *(getattr(rnn, n, None) for n in names))
        return new

    def to_pytorch(self) -> nn.RNNBase:
        """An ``nn.LSTM``/``nn.GRU`` sharing this module's Parameters."""
        with torch.device("meta"):
            rnn = self.torch_class(self.input_size, self.hidden_size, self.num_layers, bias=self.bias,
                                   batch_first=self.batch_first, dropout=self.dropout.p,
                                   bidirectional=self.bidirectional)
        rnn.train(self.training)
        for layer in range(self.num_layers):
            for suffix, cells in (("", self.cells), ("_reverse", getattr(self, "cells_reverse", None))):
                if cells is None:
                    continue
                _store_gates(cells[layer], rnn, f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}",
                             f"bias_ih_l{layer}{suffix}", f"bias_hh_l{layer}{suffix}")
        if hasattr(rnn, "_init_flat_weights"):  # refresh nn.RNNBase's cached list of weights
            rnn._init_flat_weights()
        return rnn


class ModularLSTM(_ModularRNN):
    """A drop-in ``nn.LSTM`` made of :class:`ModularLSTMCell` s (the counterpart of Distiller's ``DistillerLSTM``).

    Args:
        input_size: features of the input.
        hidden_size: features of the hidden state.
        num_layers: stacked layers.
        bias: whether the gate projections have biases.
        batch_first: input and output are ``(B, T, F)`` instead of ``(T, B, F)``.
        dropout: dropout on the output of every layer but the last (the ``dropout`` submodule).
        bidirectional: add a reverse direction per layer (``cells_reverse``); outputs are concatenated.

    Raises:
        ValueError: ``num_layers < 1`` or ``dropout`` outside ``[0, 1]``.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> reference = nn.LSTM(3, 4, num_layers=2)
        >>> lstm = ModularLSTM.from_pytorch(reference)
        >>> x = torch.randn(5, 2, 3)                                  # (time, batch, features)
        >>> out, (h, c) = lstm(x)
        >>> torch.allclose(out, reference(x)[0], atol=1e-5), tuple(h.shape)
        (True, (2, 2, 4))
        >>> [n for n, _ in lstm.named_modules()][2:5]
        ['cells.0', 'cells.0.fc_gate_x', 'cells.0.fc_gate_h']
    """

    cell_class = ModularLSTMCell
    mode = "LSTM"
    torch_class = nn.LSTM


class ModularGRU(_ModularRNN):
    """A drop-in ``nn.GRU`` made of :class:`ModularGRUCell` s; its arguments are :class:`ModularLSTM`'s.

    Raises:
        ValueError: ``num_layers < 1`` or ``dropout`` outside ``[0, 1]``.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> gru = ModularGRU(3, 4, batch_first=True, bidirectional=True)
        >>> out, h = gru(torch.randn(2, 5, 3))                        # (batch, time, features)
        >>> tuple(out.shape), tuple(h.shape)
        ((2, 5, 8), (2, 2, 4))
    """

    cell_class = ModularGRUCell
    mode = "GRU"
    torch_class = nn.GRU


def _reverse_index(steps: int, batch: int, lengths: Optional[torch.Tensor], device) -> torch.Tensor:
    """Time index that reverses each sequence within its own length (an involution)."""
    t = torch.arange(steps, device=device).unsqueeze(1).expand(steps, batch)
    if lengths is None:
        return steps - 1 - t
    return torch.where(t < lengths, lengths - 1 - t, t)


def _where_state(alive: torch.Tensor, new, old):
    if isinstance(new, tuple):
        return tuple(torch.where(alive, n, o) for n, o in zip(new, old))
    return torch.where(alive, new, old)


def _repack(output: torch.Tensor, lengths: torch.Tensor, like: PackedSequence) -> PackedSequence:
    # Keep the input's own sort order so output.data lines up with input.data, as nn.LSTM does.
    if like.sorted_indices is None:
        packed = pack_padded_sequence(output, lengths.cpu(), enforce_sorted=True)
    else:
        order = like.sorted_indices.to(output.device)
        packed = pack_padded_sequence(output.index_select(1, order), lengths.index_select(0, order).cpu(),
                                      enforce_sorted=True)
    return PackedSequence(packed.data, packed.batch_sizes, like.sorted_indices, like.unsorted_indices)


_TO_MODULAR = {nn.LSTM: ModularLSTM, nn.GRU: ModularGRU, nn.LSTMCell: ModularLSTMCell, nn.GRUCell: ModularGRUCell}
_FROM_MODULAR = (ModularLSTM, ModularGRU, ModularLSTMCell, ModularGRUCell)


def _swap(model: nn.Module, make, should) -> nn.Module:
    if should(model):
        return make(model)
    done: Dict[int, nn.Module] = {}  # a module shared under several names is converted once

    def visit(module: nn.Module) -> None:
        for name, child in list(module.named_children()):
            if should(child):
                if id(child) not in done:
                    done[id(child)] = make(child)
                setattr(module, name, done[id(child)])
            else:
                visit(child)

    visit(model)
    return model


def convert_to_modular(model: nn.Module) -> nn.Module:
    """Replace every ``nn.LSTM``/``nn.GRU``/``nn.LSTMCell``/``nn.GRUCell`` in ``model`` by its modular twin.

    Works in place on a container and returns it; a bare recurrent module is returned converted. Parameters
    are shared, not copied. ``nn.RNN`` (tanh/relu) is left alone.

    Args:
        model: any module.

    Returns:
        ``model`` itself with its recurrent layers replaced, or the modular twin of a bare recurrent module.

    Raises:
        ValueError: an ``nn.LSTM`` with ``proj_size`` (projected LSTMs are not supported).

    Example:
        >>> model = nn.Sequential(nn.Embedding(10, 4), nn.LSTM(4, 4))
        >>> weight = model[1].weight_hh_l0
        >>> model = convert_to_modular(model)
        >>> type(model[1]).__name__, model[1].cells[0].fc_gate_h.weight is weight
        ('ModularLSTM', True)
    """
    return _swap(model, lambda m: _TO_MODULAR[type(m)].from_pytorch(m), lambda m: type(m) in _TO_MODULAR)


def convert_from_modular(model: nn.Module) -> nn.Module:
    """Inverse of :func:`convert_to_modular`: modular layers back to ``nn.LSTM``/``nn.GRU`` (cells likewise).

    Args:
        model: any module.

    Returns:
        ``model`` itself with its modular layers replaced, or the PyTorch twin of a bare modular module; the
        Parameters are shared.

    Example:
        >>> lstm = convert_from_modular(ModularLSTM(4, 4, num_layers=2))
        >>> type(lstm).__name__, sorted(n for n, _ in lstm.named_parameters())[:2]
        ('LSTM', ['bias_hh_l0', 'bias_hh_l1'])
    """
    return _swap(model, lambda m: m.to_pytorch(), lambda m: isinstance(m, _FROM_MODULAR))


def converted_module_types(model: nn.Module) -> List[Tuple[str, type]]:
    """``(name, module type)`` of every module ``model`` would have after :func:`convert_to_modular`, without
    converting it.

    The modular layers are built on the ``meta`` device, so this allocates no weights.

    Args:
        model: any module.
    """
    found: List[Tuple[str, type]] = []
    seen = set()

    def visit(module: nn.Module, prefix: str) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        if type(module) in _TO_MODULAR:
            m = module
            with torch.device("meta"):
                if isinstance(m, nn.RNNBase):
                    twin = _TO_MODULAR[type(m)](m.input_size, m.hidden_size, m.num_layers, m.bias,
                                                m.batch_first, float(m.dropout), m.bidirectional)
                else:
                    twin = _TO_MODULAR[type(m)](m.input_size, m.hidden_size, m.bias)
            found.extend((prefix + ("." if prefix and n else "") + n, type(t)) for n, t in twin.named_modules())
            return
        found.append((prefix, type(module)))
        for name, child in module.named_children():
            visit(child, f"{prefix}.{name}" if prefix else name)

    visit(model, "")
    return found


def converted_module_names(model: nn.Module) -> List[str]:
    """The module names ``model`` would have after :func:`convert_to_modular`, without converting it.

    Quantizer ``overrides`` are checked against these names before the model is changed.

    Args:
        model: any module.

    Returns:
        Every module name, in ``named_modules`` order (``""`` is the model itself).

    Example:
        >>> names = converted_module_names(nn.Sequential(nn.LSTM(2, 3)))
        >>> "0.cells.0.eltwisemult_cell_forget" in names, "0.dropout" in names
        (True, True)
    """
    return [name for name, _ in converted_module_types(model)]
