"""Which weights, by magnitude: Distiller's level masks over one tensor or many (one shared threshold).

The exact k-th smallest magnitude comes from :mod:`compress.kernels.magnitude`; this module turns it into
keep-masks, exactly, for float32, float16 and bfloat16 weights.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from compress.kernels.magnitude import magnitude_threshold


def _round_down(threshold: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Largest ``dtype`` value <= ``threshold`` (threshold >= 0 or NaN), as a 0-d tensor."""
    t = threshold.to(dtype)
    prev = (t.view(torch.int16) - 1).view(dtype)
    return torch.where(t.float() > threshold, prev, t)


@torch.no_grad()
def _keep_mask(tensor: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``|tensor| > threshold`` evaluated exactly on float32 magnitudes."""
    if tensor.dtype == torch.float32:
        return tensor.abs() > threshold
    if tensor.dtype in (torch.float16, torch.bfloat16):
        # |x| > t  <=>  |x| > (largest dtype value <= t), for x in dtype.
        return tensor.abs() > _round_down(threshold, tensor.dtype)
    return tensor.abs().float() > threshold


def level_mask(tensor: torch.Tensor, sparsity: float, **select_options: Any) -> torch.Tensor:
    """Keep-mask of one tensor for Distiller-style level pruning.

    Args:
        tensor: A floating-point tensor.
        sparsity: Fraction of elements to prune, in ``[0, 1]``.
        **select_options: Keyword options forwarded to :func:`kth_smallest_magnitude`.

    Returns:
        A bool tensor shaped like ``tensor``: ``|x| > threshold`` (True = keep),
        all True when ``int(sparsity * numel) == 0``.

    Raises:
        ValueError: ``sparsity`` outside ``[0, 1]``.

    Example:
        >>> level_mask(torch.tensor([[0.3, -0.1], [0.2, -0.4]]), 0.5).tolist()
        [[True, False], [False, True]]
        >>> level_mask(torch.tensor([0.5, 0.5, 0.5, 1.0]), 0.25).tolist()   # ties at the threshold are pruned
        [False, False, False, True]
    """
    threshold = magnitude_threshold([tensor], sparsity, **select_options)
    if threshold is None:
        return torch.ones_like(tensor, dtype=torch.bool)
    return _keep_mask(tensor, threshold)


def global_level_masks(
    tensors: Sequence[torch.Tensor], sparsity: float, **select_options: Any
) -> list[torch.Tensor]:
    """Keep-masks of many tensors pruned with one shared (global) threshold.

    Args:
        tensors: Floating-point tensors on one device.
        sparsity: Fraction of all their elements together to prune, in ``[0, 1]``.
        **select_options: Keyword options forwarded to :func:`kth_smallest_magnitude`.

    Returns:
        One bool tensor per input, shaped like it: ``|x| > threshold`` (True =
        keep), all True when ``int(sparsity * total) == 0``.

    Raises:
        ValueError: ``sparsity`` outside ``[0, 1]``, empty ``tensors``, or
            tensors on different devices.

    Example:
        >>> small, large = torch.tensor([0.1, 0.2]), torch.tensor([1.0, 2.0, 3.0, 0.3])
        >>> [m.tolist() for m in global_level_masks([small, large], 0.5)]   # the small tensor goes first
        [[False, False], [True, True, True, False]]
    """
    tensors = list(tensors)
    threshold = magnitude_threshold(tensors, sparsity, **select_options)
    if threshold is None:
        return [torch.ones_like(t, dtype=torch.bool) for t in tensors]
    return [_keep_mask(t, threshold) for t in tensors]
