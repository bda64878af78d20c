"""``python -m compress export``: a training checkpoint to a deployable file (compress sparse or ONNX).

The model is rebuilt from the checkpoint by a *task* (see :mod:`compress.reports.inspection`: ``--task
MODULE:FUNCTION``, default :data:`~compress.reports.inspection.DEFAULT_TASK`), its weights loaded, and then

* ``--format compress``: :func:`~compress.quantization.export_model` at the precision (fp32, fp16, int8) and
  :func:`~compress.export.sparse.save_sparse`: the file shrinks with the sparsity;
* ``--format onnx``: :func:`~compress.export.onnx.export_onnx` (fp32, or int8 through ONNX Runtime).
"""
from __future__ import annotations

import os
from typing import Any

from compress.errors import ArgumentError, CheckpointError, CompressError
from compress.options import choice

__all__ = ["FORMATS", "export_checkpoint", "rebuild_for_export"]

FORMATS = {"compress": ("fp32", "fp16", "int8"), "onnx": ("fp32", "int8")}


def rebuild_for_export(checkpoint: str, task: Any):
    """The checkpoint's model with its weights, in eval mode on the CPU.

    Raises:
        CheckpointError: the file is unreadable, the task cannot rebuild a model from it (whatever the task
            raised, with the file's name), or the weights do not fit the model.
    """
    from compress.reports.inspection import rebuild_model

    try:
        model, _ = rebuild_model(checkpoint, task)
    except CompressError:
        raise
    except (SystemExit, Exception) as exc:  # a task is user code: say which file it failed on, and why
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{checkpoint}: the task cannot rebuild its model ({type(exc).__name__}: "
                              f"{message})") from None
    return model.cpu().eval()


def export_checkpoint(checkpoint: str, out: str, fmt: str, precision: str, task: Any) -> str:
    """Rebuild ``checkpoint`` with ``task`` and write it to ``out`` in format ``fmt`` at ``precision``.

    Args:
        checkpoint: a checkpoint written by :func:`compress.save_checkpoint` (or Distiller's).
        out: the file to write.
        fmt: ``'compress'`` or ``'onnx'``.
        precision: ``'fp32'``, ``'fp16'`` (compress only) or ``'int8'``.
        task: an object with ``build_model(checkpoint)`` (see :mod:`compress.reports.inspection`).

    Returns:
        A report: what was written, its size against the dense fp32 tensors, and (compress) the table of
        encodings or (ONNX) the node counts.

    Raises:
        ArgumentError: an unknown format, or a precision the format does not offer.
        CheckpointError: see :func:`rebuild_for_export`.
        CompressError: the ONNX extra is missing, or ONNX Runtime left an LSTM in fp32.
    """
    fmt = choice("format", fmt, tuple(FORMATS))
    if precision not in FORMATS[fmt]:
        raise ArgumentError("precision", f"--format {fmt} writes {', '.join(FORMATS[fmt])}, not {precision!r}")
    model = rebuild_for_export(checkpoint, task)
    dense = sum(t.numel() * t.element_size() for t in {p.data_ptr(): p for p in model.state_dict().values()
                                                        if hasattr(p, "data_ptr")}.values())
    if fmt == "compress":
        from compress.export.sparse import encoding_table, save_sparse
        from compress.quantization.export import export_model

        records = save_sparse(export_model(model, precision), out)
        stored = os.path.getsize(out)
        detail = encoding_table(records)
        head = f"{out}: compress sparse {precision}, {stored / 2 ** 20:.2f} MiB"
    else:
        from compress.export.onnx import export_onnx

        result = export_onnx(model, out, precision)
        stored = result.nbytes
        detail = ""
        head = result.summary()
    line = f"{head} ({dense / stored:.2f}x smaller than the {dense / 2 ** 20:.2f} MiB of dense tensors)"
    return line + ("\n" + detail if detail else "")
