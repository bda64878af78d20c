"""Which rows of a recurrent layer's packed tensors belong to which gate.

PyTorch packs a layer's gates along dim 0 of ``weight_ih``, ``weight_hh``, ``bias_ih`` and ``bias_hh``: rows
``k*H:(k+1)*H`` are gate ``k`` (``H`` = hidden size), in the order ``i, f, g, o`` for an LSTM and ``r, z, n``
for a GRU (``nn.LSTM``/``nn.GRU``, each direction and layer, ``_raw`` re-parametrised copies included, and
``nn.LSTMCell``/``nn.GRUCell``). The modular cells (:class:`~compress.modules.ModularLSTMCell`,
``ModularGRUCell``) declare their gates the same way, and so can any module: give it ``gate_names`` (a tuple of
names, in row order), ``hidden_size`` and, when its packed tensors are not named like PyTorch's,
``gated_parameters`` (their names relative to the module).

Nothing here changes a tensor; :class:`~compress.sparsity.ParameterIndex` uses it to resolve gate selectors such
as ``rnn.weight_hh_l0[gate=f]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ["GATE_NAMES", "GateLayout", "gate_layouts", "module_gate_names"]

#: gate names in PyTorch's row order, by recurrent mode
GATE_NAMES: Dict[str, Tuple[str, ...]] = {"LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n")}

_TORCH_MODES = ((nn.LSTM, "LSTM"), (nn.LSTMCell, "LSTM"), (nn.GRU, "GRU"), (nn.GRUCell, "GRU"))
#: names (relative to the module) of PyTorch's packed tensors start with these
PACKED_PREFIXES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


@dataclass(frozen=True)
class GateLayout:
    """The gate blocks stacked along dim 0 of one tensor.

    Args:
        gates: gate names in row order.
        hidden_size: rows per gate.

    Example:
        >>> layout = GateLayout(GATE_NAMES["LSTM"], hidden_size=3)
        >>> layout.rows(["f"]), layout.rows(["o", "i"])    # in row order, whatever the order asked
        ([3, 4, 5], [0, 1, 2, 9, 10, 11])
    """

    gates: Tuple[str, ...]
    hidden_size: int

    def rows(self, gates: Sequence[str]) -> list:
        """Row indices of ``gates`` (names of :attr:`gates`), ascending."""
        h = self.hidden_size
        return [k * h + j for k, g in enumerate(self.gates) if g in gates for j in range(h)]

    def row_index(self, gates: Sequence[str], device: Optional[torch.device] = None) -> torch.Tensor:
        """:meth:`rows` as a ``LongTensor`` on ``device``."""
        return torch.tensor(self.rows(gates), dtype=torch.long, device=device)


def module_gate_names(module: nn.Module) -> Optional[Tuple[str, ...]]:
    """The gate names a module declares (``gate_names``) or PyTorch's for its LSTM/GRU types; ``None`` if none."""
    declared = getattr(module, "gate_names", None)
    if declared is not None:
        return tuple(declared)
    for cls, mode in _TORCH_MODES:
        if isinstance(module, cls):
            return GATE_NAMES[mode]
    return None


def gate_layouts(model: nn.Module) -> Dict[str, GateLayout]:
    """Full parameter name → :class:`GateLayout`, for every packed tensor of the model's gated modules.

    A tensor counts when its dim 0 has exactly ``len(gates) * hidden_size`` rows (an LSTM's ``weight_hr``
    projection, for instance, does not).

    Example:
        >>> layouts = gate_layouts(nn.Sequential(nn.Linear(2, 2), nn.GRU(3, 5)))
        >>> sorted(layouts), layouts["1.weight_hh_l0"].gates
        (['1.bias_hh_l0', '1.bias_ih_l0', '1.weight_hh_l0', '1.weight_ih_l0'], ('r', 'z', 'n'))
    """
    out: Dict[str, GateLayout] = {}
    for prefix, module in model.named_modules():
        gates = module_gate_names(module)
        hidden = getattr(module, "hidden_size", None)
        if gates is None or not isinstance(hidden, int):
            continue
        local = getattr(module, "gated_parameters", None)
        if local is None:
            local = [n for n, _ in module.named_parameters(recurse=False) if n.startswith(PACKED_PREFIXES)]
        layout = GateLayout(gates, hidden)
        for name in local:
            try:
                param = module.get_parameter(name)
            except AttributeError:
                continue  # e.g. a cell built without biases
            if param.dim() >= 1 and param.shape[0] == len(gates) * hidden:
                out[f"{prefix}.{name}" if prefix else name] = layout
    return out
