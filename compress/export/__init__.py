"""Deploying a trained model: files that shrink with the sparsity, and ONNX graphs that run in ONNX Runtime.

* :mod:`compress.export.sparse`: :func:`save_sparse`/:func:`load_sparse`, the exported INT8/FP16/FP32 model with
  every pruned weight left out of the file (bitmask or relative indices, whichever is smaller per tensor);
* :mod:`compress.export.onnx`: :func:`~compress.export.onnx.export_onnx`, a word LM as an fp32 ONNX graph or an
  INT8 one whose LSTMs run as ONNX Runtime's ``DynamicQuantizeLSTM`` (needs the ``onnx`` extra:
  ``pip install compress[onnx]``); imported on use, so this package works without it.
"""
from compress.export.sparse import (
    ENCODINGS,
    TensorRecord,
    decode_tensor,
    encode_tensor,
    encoded_sizes,
    encoding_table,
    load_sparse,
    save_sparse,
)

__all__ = ["ENCODINGS", "TensorRecord", "decode_tensor", "encode_tensor", "encoded_sizes", "encoding_table",
           "load_sparse", "save_sparse"]
