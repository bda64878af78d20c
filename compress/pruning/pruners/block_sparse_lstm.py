"""Predefined block sparseness of recurrent layers, as fixed masks on ordinary ``nn.LSTM`` weights."""
from __future__ import annotations

import re
from typing import Dict, Optional, Tuple

from compress.errors import ArgumentError
from compress.pruning.base import FixedStructurePruner, WeightSpec
from compress.registry import register_pruner
from compress.sparsity.names import ParameterIndex
from compress.structured.geometry import (
    LSTMBlockStructure,
    check_lstm_arguments,
    lstm_block_structure,
)

# weight_ih_l0, weight_hh_l1_reverse, weight_hh_l0_raw (AWD weight drop), or a cell's weight_ih / weight_hh
_RECURRENT = re.compile(r"(?P<prefix>.*?)weight_(?P<kind>ih|hh)(?P<layer>_l\d+(?:_reverse)?)?(?:_raw)?")


@register_pruner
class BlockSparseLSTMPruner(FixedStructurePruner):
    """The structure of a :class:`~compress.structured.SparseLSTM` as masks on a dense recurrent layer.

    For every layer whose ``weight_ih``/``weight_hh`` pair is listed, the structure is computed once from the
    weight shapes (:func:`~compress.structured.geometry.lstm_block_structure`): per gate, ``weight_hh`` keeps its
    ``k`` diagonal blocks and ``weight_ih`` the band of rows ``c`` x input window ``c``. Biases stay dense. The
    masks never change, so a policy that acts in epoch 0 fixes them for the whole run (the scheduler re-applies
    them after every step). Works for any ``nn.LSTM`` (also ``nn.GRU``/``nn.RNN``: the gate count is read off the
    shapes), all of whose layers get the same arguments; give a layer its own instance for other arguments.

    Args:
        name: instance name.
        weights: names or patterns of the recurrent weights, e.g. ``["rnn.weight_*_l1"]``; each layer's
            ``weight_ih`` and ``weight_hh`` must both be listed.
        blocks: components ``k``; with it, ``density`` (relative width of each input window, default ``1/k``).
        density: see ``blocks``; in [1/blocks, 1].
        reduce_in: instead of blocks/density: match the parameter count of a dense layer with ``reduce_in``
            times the inputs and ``reduce_out`` times the units (a missing one is 1), with the fewest blocks.
        reduce_out: see ``reduce_in``.

    Raises:
        ArgumentError: both ways of giving the structure or neither, values out of range; at binding, a listed
            weight that is not a recurrent matrix, or a layer with only one of its two matrices listed.

    Example:
        >>> import torch, compress
        >>> model = torch.nn.LSTM(4, 4)
        >>> schedule = {"pruners": {"blocks": {"class": "BlockSparseLSTMPruner", "weights": ["weight_*_l0"],
        ...                                    "blocks": 2}},
        ...             "policies": [{"pruner": {"instance_name": "blocks"}, "epochs": [0]}]}
        >>> scheduler = compress.dict_config(model, None, schedule)
        >>> scheduler.on_epoch_begin(0)
        >>> (model.weight_hh_l0[:4] != 0).int().tolist()   # the input gate's rows: two diagonal blocks
        [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
        >>> scheduler.components["pruners"]["blocks"].num_parameters   # of 160 in the dense layer
        96
    """

    def __init__(self, name: str, weights: WeightSpec, blocks: Optional[int] = None, density: Optional[float] = None,
                 reduce_in: Optional[float] = None, reduce_out: Optional[float] = None):
        super().__init__(name, weights)
        check_lstm_arguments(blocks, density, reduce_in, reduce_out)
        self.arguments = {"blocks": blocks, "density": density, "reduce_in": reduce_in, "reduce_out": reduce_out}
        #: the structure of each layer, keyed by its ``weight_ih`` name
        self.structures: Dict[str, LSTMBlockStructure] = {}

    def bind(self, index: ParameterIndex) -> None:
        super().bind(index)
        layers: Dict[Tuple[str, str], Dict[str, str]] = {}
        for name in self.weights:
            match = _RECURRENT.fullmatch(name)
            if match is None:
                raise ArgumentError("weights", f"{name!r} is not a recurrent weight_ih/weight_hh matrix")
            layers.setdefault((match["prefix"], match["layer"] or ""), {})[match["kind"]] = name
        self.structures, self._masks = {}, {}
        for (prefix, layer), pair in layers.items():
            if len(pair) != 2:
                have = next(iter(pair.values()))
                missing = f"{prefix}weight_{'hh' if 'ih' in pair else 'ih'}{layer}"
                raise ArgumentError("weights", f"lists {have!r} but not {missing!r}: a layer's structure spans "
                                               f"its input and recurrent weights")
            w_ih, w_hh = index.params[pair["ih"]], index.params[pair["hh"]]
            rows, hidden = w_hh.shape
            if w_ih.dim() != 2 or w_hh.dim() != 2 or rows % hidden or w_ih.shape[0] != rows:
                raise ArgumentError("weights", f"{pair['ih']} {tuple(w_ih.shape)} and {pair['hh']} "
                                               f"{tuple(w_hh.shape)} are not the weights of one recurrent layer")
            structure = lstm_block_structure(w_ih.shape[1], hidden, gates=rows // hidden, **self.arguments)
            self.structures[pair["ih"]] = structure
            self._masks[pair["ih"]], self._masks[pair["hh"]] = structure.masks()
