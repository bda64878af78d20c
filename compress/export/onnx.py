"""A word LM as an ONNX graph for ONNX Runtime: fp32, or INT8 with the LSTMs run by ``DynamicQuantizeLSTM``.

:func:`export_onnx` writes ``model(tokens, hidden) -> (logits, hidden)`` as a graph with inputs ``tokens``
(``seq x batch``, int64) and ``state_in_0 .. state_in_{k-1}`` (the flattened hidden state: ``h0``, ``c0`` for an
LSTM LM) and outputs ``logits`` and ``state_out_*``; sequence length and batch size are free. :class:`OnnxLM`
runs such a file through ONNX Runtime with the same interface as the PyTorch model, so
:func:`compress_models.evaluate_lm` measures it unchanged.

**INT8.** ONNX Runtime's ``quantize_dynamic`` turns every ONNX ``LSTM`` node whose weights ``W`` and ``R`` are
initializers into the contributed op ``com.microsoft.DynamicQuantizeLSTM`` (int8 weights per output channel,
activations quantized per call) and the decoder's ``MatMul`` into ``MatMulInteger``. It leaves an LSTM in fp32,
*silently*, when its weights are computed inside the graph, which is what torch's default (dynamo) exporter
emits (Slice/Concat of the parameters for the gate reorder). So this module:

1. exports with the TorchScript exporter (``dynamo=False``) and constant folding, which stores ``W``/``R`` as
   initializers (and needs no ``onnxscript``);
2. constant-folds the graph with an ONNX Runtime basic-level session whenever an LSTM's weights are still
   computed (:func:`fold_constants`; any exporter's graph goes through it);
3. after quantization, checks that every LSTM layer of the model became a ``DynamicQuantizeLSTM`` node and raises
   :class:`~compress.errors.CompressError` otherwise (:func:`op_counts` shows what a graph holds).

The recurrence of a GRU has no quantized ONNX Runtime kernel; a GRU LM's INT8 graph quantizes only its matrix
products, and a warning says so. A pruned model exports as it is (ONNX Runtime's kernels are dense; the file does
not shrink with sparsity, see :mod:`compress.export.sparse`); a thinned one (smaller ``nn.LSTM`` layers) needs
nothing special.

Needs the ``onnx`` extra (``pip install compress[onnx]``: onnx and onnxruntime), imported on first use.
"""
from __future__ import annotations

import copy
import io
import json
import logging
import os
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from compress.errors import ArgumentError, CheckpointError, CompressError
from compress.io.files import atomic_write
from compress.options import choice

log = logging.getLogger(__name__)

__all__ = ["PRECISIONS", "OnnxExport", "export_onnx", "fold_constants", "op_counts", "OnnxLM"]

PRECISIONS = ("fp32", "int8")
OPSET = 17
#: metadata key holding the state layout (JSON) that :class:`OnnxLM` needs to build ``init_hidden``
STATE_KEY = "compress.state"


def _require_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise CompressError(f"ONNX export needs the 'onnx' extra (pip install compress[onnx]): {exc}") from None
    return onnx, onnxruntime


# ---------------------------------------------------------------------------------------------- state layout
def _flatten(state: Any) -> Tuple[List[torch.Tensor], Any]:
    """Tensors of a (nested tuple/list) state and a JSON-able spec to rebuild it."""
    if torch.is_tensor(state):
        return [state], "tensor"
    if isinstance(state, (tuple, list)):
        tensors, specs = [], []
        for item in state:
            t, s = _flatten(item)
            tensors += t
            specs.append(s)
        return tensors, {"type": "tuple" if isinstance(state, tuple) else "list", "items": specs}
    raise ArgumentError("hidden", f"the model's state must be tensors in tuples/lists, found {type(state).__name__}")


def _unflatten(tensors: List[Any], spec: Any) -> Any:
    it = iter(tensors)

    def build(s):
        if s == "tensor":
            return next(it)
        items = [build(x) for x in s["items"]]
        return tuple(items) if s["type"] == "tuple" else items

    return build(spec)


class _FlatLM(nn.Module):
    """``model(tokens, hidden)`` with the state as separate tensors, as ONNX wants inputs and outputs."""

    def __init__(self, model: nn.Module, spec: Any):
        super().__init__()
        self.model, self.spec = model, spec

    def forward(self, tokens: torch.Tensor, *state: torch.Tensor):
        logits, hidden = self.model(tokens, _unflatten(list(state), self.spec))
        return (logits, *_flatten(hidden)[0])


def _state_layout(model: nn.Module) -> Dict[str, Any]:
    """Shapes of the flattened ``init_hidden`` state and which dimension of each is the batch."""
    two, spec = _flatten(model.init_hidden(2))
    three, _ = _flatten(model.init_hidden(3))
    batch_dims = []
    for a, b in zip(two, three):
        dims = [d for d in range(a.dim()) if a.shape[d] != b.shape[d]]
        if len(dims) != 1:
            raise ArgumentError("model", f"cannot tell the batch dimension of a state tensor of shape "
                                         f"{tuple(a.shape)} from init_hidden(2) and init_hidden(3)")
        batch_dims.append(dims[0])
    shapes = [[-1 if d == bd else n for d, n in enumerate(t.shape)] for t, bd in zip(two, batch_dims)]
    return {"spec": spec, "shapes": shapes, "batch_dims": batch_dims}


# ---------------------------------------------------------------------------------------------- graph checks
def op_counts(model: Any) -> Dict[str, int]:
    """How many nodes of each type a graph has (``'com.microsoft.DynamicQuantizeLSTM'`` for contributed ops).

    Args:
        model: an ``onnx.ModelProto`` or the path of an ``.onnx`` file.

    Example:
        >>> import onnx, onnx.helper as h
        >>> graph = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g",
        ...                      [h.make_tensor_value_info("x", 1, [1])], [h.make_tensor_value_info("y", 1, [1])])
        >>> op_counts(h.make_model(graph))
        {'Relu': 1}
    """
    onnx, _ = _require_onnx()
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(os.fspath(model))
    return dict(Counter(f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
                        for n in model.graph.node))


def _lstms_with_computed_weights(model) -> List[str]:
    initializers = {i.name for i in model.graph.initializer}
    return [n.name or n.output[0] for n in model.graph.node
            if n.op_type == "LSTM" and not (n.input[1] in initializers and n.input[2] in initializers)]


def fold_constants(model):
    """``model`` with everything that depends only on initializers computed once (ONNX Runtime's basic-level
    graph optimizations), so that LSTM weights become initializers that ``quantize_dynamic`` can quantize.

    Args:
        model: an ``onnx.ModelProto``.

    Returns:
        The folded ``onnx.ModelProto`` (standard ONNX ops only; it runs in any ONNX Runtime).
    """
    onnx, ort = _require_onnx()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with tempfile.TemporaryDirectory() as folder:
        options.optimized_model_filepath = os.path.join(folder, "folded.onnx")
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath)


def _share_transposed_initializers(model) -> int:
    """Replace a MatMul weight that is exactly the transpose of another initializer (a tied decoder) by a
    Transpose of that initializer, so the file holds the tensor once; ONNX Runtime folds it back on loading.
    Returns the bytes saved."""
    onnx, _ = _require_onnx()
    from onnx import helper, numpy_helper

    by_shape: Dict[Tuple[int, ...], List[Any]] = {}
    for init in model.graph.initializer:
        by_shape.setdefault(tuple(init.dims), []).append(init)
    consumers = Counter(name for n in model.graph.node for name in n.input)
    saved, drop, new_nodes = 0, set(), []
    for node in model.graph.node:
        if node.op_type == "MatMul" and len(node.input) == 2 and consumers[node.input[1]] == 1:
            weight = next((i for i in model.graph.initializer if i.name == node.input[1]), None)
            if weight is None or len(weight.dims) != 2:
                continue
            w = numpy_helper.to_array(weight)
            twin = next((i for i in by_shape.get(tuple(reversed(weight.dims)), [])
                         if i.name != weight.name and (numpy_helper.to_array(i) == w.T).all()), None)
            if twin is None:
                continue
            transposed = f"{twin.name}_transposed"
            new_nodes.append(helper.make_node("Transpose", [twin.name], [transposed], perm=[1, 0],
                                              name=f"{transposed}_node"))
            node.input[1] = transposed
            drop.add(weight.name)
            saved += w.nbytes
    if drop:
        kept = [i for i in model.graph.initializer if i.name not in drop]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
        nodes = new_nodes + list(model.graph.node)  # Transposes of initializers first: the order stays topological
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return saved


def _expected_lstm_layers(model: nn.Module) -> int:
    return sum(m.num_layers for m in model.modules() if isinstance(m, nn.LSTM))


# ---------------------------------------------------------------------------------------------- export
@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote.

    Args:
        path: the file.
        precision: ``'fp32'`` or ``'int8'``.
        nbytes: its size.
        ops: node counts (:func:`op_counts`).
        folded: whether the graph had to be constant-folded before quantization.
    """

    path: str
    precision: str
    nbytes: int
    ops: Dict[str, int]
    folded: bool = False

    def summary(self) -> str:
        """One line: the file, its size and the recurrent and matrix-product nodes.

        Example:
            >>> OnnxExport("lm.onnx", "int8", 2 ** 20, {"com.microsoft.DynamicQuantizeLSTM": 2}).summary()
            'lm.onnx: ONNX int8, 1.00 MiB; com.microsoft.DynamicQuantizeLSTM x2'
        """
        keys = [k for k in sorted(self.ops) if any(s in k for s in ("LSTM", "GRU", "RNN", "MatMul", "Gemm"))]
        return (f"{self.path}: ONNX {self.precision}, {self.nbytes / 2 ** 20:.2f} MiB; "
                + ", ".join(f"{k} x{self.ops[k]}" for k in keys))


def export_onnx(model: nn.Module, path: Union[str, os.PathLike], precision: str = "fp32", *,
                per_channel: bool = True, reduce_range: bool = True, opset: int = OPSET,
                example: Optional[torch.Tensor] = None) -> OnnxExport:
    """Write a word LM (``model(tokens, hidden) -> (logits, hidden)``, ``model.init_hidden(batch)``) as ONNX.

    Args:
        model: the float model (trained, pruned or thinned); it is not changed.
        path: the ``.onnx`` file (written atomically).
        precision: ``'fp32'``, or ``'int8'`` (ONNX Runtime dynamic quantization: ``DynamicQuantizeLSTM``,
            ``MatMulInteger``, an int8 embedding table).
        per_channel: int8: one weight scale per output channel (else per tensor).
        reduce_range: int8: 7-bit weights. Without it, ONNX Runtime's uint8 x int8 products saturate on x86 CPUs
            without VNNI (AVX2): measured on a 2x650 LM there, max logit error 1.8e-2 with 8 bits, 7.4e-4 with 7.
        opset: the ONNX opset.
        example: token ids (``seq x batch``) to trace with; default 3 x 2 zeros.

    Returns:
        An :class:`OnnxExport`.

    Raises:
        ArgumentError: an unknown precision, or a model whose state cannot be laid out.
        CompressError: the ``onnx`` extra is missing, the graph exceeds protobuf's 2 GiB, or quantization left
            an LSTM layer in fp32.

    Example:
        >>> import os, tempfile
        >>> from compress_models import RNNModel
        >>> lm = RNNModel("LSTM", 20, 8, 8, 2, 0.0)
        >>> result = export_onnx(lm, os.path.join(tempfile.mkdtemp(), "lm.onnx"), "int8")
        >>> result.ops["com.microsoft.DynamicQuantizeLSTM"], "LSTM" in result.ops
        (2, False)
    """
    precision = choice("precision", precision, PRECISIONS)
    onnx, _ = _require_onnx()
    path = os.fspath(path)
    model = copy.deepcopy(model).cpu().eval()  # the caller's model keeps its mode and device
    layout = _state_layout(model)
    example = torch.zeros(3, 2, dtype=torch.long) if example is None else example.long().cpu()
    state, _ = _flatten(model.init_hidden(example.size(1)))
    names_in = ["tokens"] + [f"state_in_{i}" for i in range(len(state))]
    names_out = ["logits"] + [f"state_out_{i}" for i in range(len(state))]
    axes = {"tokens": {0: "seq", 1: "batch"}, "logits": {0: "seq", 1: "batch"}}
    for i, bd in enumerate(layout["batch_dims"]):
        axes[f"state_in_{i}"] = axes[f"state_out_{i}"] = {bd: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter is chosen on purpose (see the module docstring); its deprecation notice and
        # the LSTM batch-size notice (the state is an input here, so it does not apply) are noise
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # nn.LSTM's own input-size checks
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
        torch.onnx.export(_FlatLM(model, layout["spec"]), (example, *state), buffer, dynamo=False,
                          opset_version=opset, do_constant_folding=True, input_names=names_in,
                          output_names=names_out, dynamic_axes=axes)
    graph = onnx.load_from_string(buffer.getvalue())
    folded = bool(_lstms_with_computed_weights(graph))
    if folded:
        graph = fold_constants(graph)
    if precision == "int8":
        graph = _quantize(graph, per_channel, reduce_range)
        _check_quantized(graph, _expected_lstm_layers(model), model)
    else:
        saved = _share_transposed_initializers(graph)
        if saved:
            log.info("tied weight stored once in the ONNX file (%.1f MiB saved)", saved / 2 ** 20)
    del graph.metadata_props[:]
    onnx.helper.set_model_props(graph, {STATE_KEY: json.dumps(layout), "compress.precision": precision})
    data = _serialize(graph, path)
    with atomic_write(path) as f:
        f.write(data)
    return OnnxExport(path, precision, len(data), op_counts(graph), folded)


def _serialize(graph, path: str) -> bytes:
    try:
        return graph.SerializeToString()
    except ValueError as exc:  # protobuf refuses messages over 2 GiB
        raise CompressError(f"{path}: the ONNX graph is too large for one file ({exc})") from None


def _quantize(graph, per_channel: bool, reduce_range: bool):
    onnx, _ = _require_onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quant_log = logging.getLogger()  # quantize_dynamic advises pre-processing on the root logger; not needed here
    level = quant_log.level
    quant_log.setLevel(max(level, logging.ERROR))
    try:
        with tempfile.TemporaryDirectory() as folder:
            out = os.path.join(folder, "int8.onnx")
            quantize_dynamic(graph, out, per_channel=per_channel, reduce_range=reduce_range,
                             weight_type=QuantType.QInt8)
            return onnx.load(out)
    finally:
        quant_log.setLevel(level)


def _check_quantized(graph, expected: int, model: nn.Module) -> None:
    ops = op_counts(graph)
    quantized = ops.get("com.microsoft.DynamicQuantizeLSTM", 0)
    if ops.get("LSTM", 0) or quantized < expected:
        raise CompressError(f"ONNX Runtime's quantization left {ops.get('LSTM', 0)} LSTM node(s) in fp32 "
                            f"({quantized} DynamicQuantizeLSTM for {expected} LSTM layers); their weights are not "
                            f"initializers of the exported graph")
    if any(isinstance(m, (nn.GRU, nn.RNN)) for m in model.modules()):
        log.warning("ONNX Runtime has no quantized GRU/RNN kernel: the recurrence stays fp32, only the matrix "
                    "products outside it are INT8")


# ---------------------------------------------------------------------------------------------- running
class OnnxLM:
    """An ONNX file written by :func:`export_onnx`, run by ONNX Runtime behind the PyTorch model's interface.

    ``lm(tokens, hidden) -> (logits, hidden)`` with torch tensors, ``lm.init_hidden(batch)`` and ``lm.eval()``,
    so :func:`compress_models.evaluate_lm` measures it as it measures the PyTorch model.

    Args:
        path: the ``.onnx`` file.
        threads: ONNX Runtime's intra-op threads (default: its own choice, all cores).
        spin: let idle worker threads spin for the next call (ONNX Runtime's default: lower latency); turn it off
            when other work shares the cores, such as another model timed in turns with this one.

    Raises:
        CheckpointError: the file is missing, not an ONNX model, or was not written by :func:`export_onnx`.

    Example:
        >>> import os, tempfile
        >>> from compress_models import RNNModel
        >>> lm = RNNModel("LSTM", 20, 8, 8, 1, 0.0).eval()
        >>> path = os.path.join(tempfile.mkdtemp(), "lm.onnx")
        >>> _ = export_onnx(lm, path)
        >>> runner = OnnxLM(path, threads=1)
        >>> tokens = torch.tensor([[1, 2], [3, 4]])
        >>> logits, hidden = runner(tokens, runner.init_hidden(2))
        >>> bool(torch.allclose(logits, lm(tokens, lm.init_hidden(2))[0], atol=1e-5))
        True
    """

    def __init__(self, path: Union[str, os.PathLike], threads: Optional[int] = None, spin: bool = True):
        _, ort = _require_onnx()
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise CheckpointError(f"{self.path}: no such ONNX model")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types (InvalidProtobuf, Fail, ...)
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise CheckpointError(f"{self.path}: ONNX Runtime cannot load it ({first})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.layout = json.loads(meta[STATE_KEY])
            if not {"shapes", "batch_dims", "spec"} <= set(self.layout):
                raise KeyError(STATE_KEY)
        except (KeyError, ValueError, TypeError):
            raise CheckpointError(f"{self.path}: no state layout ({STATE_KEY!r} metadata): not written by "
                                  f"compress.export.onnx.export_onnx") from None
        self.precision = meta.get("compress.precision", "?")
        self.output_names = [o.name for o in self.session.get_outputs()]

    def eval(self) -> OnnxLM:
        return self

    def init_hidden(self, batch: int) -> Any:
        """An all-zero state for ``batch`` sequences, structured as the PyTorch model's."""
        tensors = [torch.zeros([batch if n == -1 else n for n in shape]) for shape in self.layout["shapes"]]
        return _unflatten(tensors, self.layout["spec"])

    def __call__(self, tokens: torch.Tensor, hidden: Any) -> Tuple[torch.Tensor, Any]:
        state, _ = _flatten(hidden)
        feeds = {"tokens": tokens.detach().cpu().long().numpy()}
        feeds.update({f"state_in_{i}": t.detach().cpu().float().numpy() for i, t in enumerate(state)})
        outputs = [torch.from_numpy(o) for o in self.session.run(self.output_names, feeds)]
        return outputs[0], _unflatten(outputs[1:], self.layout["spec"])
