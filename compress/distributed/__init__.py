"""Training under ``torch.distributed`` (DDP, ``torchrun``): every decision the library takes from rank-local
inputs is taken once and shared, and every rank's masks are checked to be the same.

* :func:`mean_over_ranks`: a metric (validation loss, a search's candidate value) averaged over ranks, so every
  rank takes the same decision from it (SiPO's searches and recovery, the NT-ASGD switch, ReduceLROnPlateau,
  sensitivity analysis all read metrics through it);
* :func:`broadcast_`, :func:`broadcast_object`: rank 0's tensor or value on every rank (random initial topologies,
  seeds);
* :func:`fingerprint`, :func:`check_identical`: a 64-bit hash per tensor, compared across ranks with one small
  collective; a mismatch is a :class:`RankMismatchError` naming the tensor and the ranks.

Every function is a no-op (or returns its input) unless a process group of more than one rank is initialised,
so single-process code pays nothing.

Example:
    >>> import torch
    >>> world()
    (0, 1)
    >>> mean_over_ranks(2.5)
    2.5
    >>> fingerprint(torch.tensor([True, False, True])) == fingerprint(torch.tensor([True, False, True]))
    True
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Tuple

import torch

from compress.errors import CompressError

__all__ = ["RankMismatchError", "world", "is_distributed", "mean_over_ranks", "broadcast_", "broadcast_object",
           "all_gather_object", "barrier", "fingerprint", "check_identical"]

# Multipliers of the hash (odd 64-bit constants from splitmix64), as signed int64.
_K1 = 0x9E3779B97F4A7C15 - (1 << 64)
_K2 = 0xBF58476D1CE4E5B9 - (1 << 64)


class RankMismatchError(CompressError, RuntimeError):
    """Ranks of one distributed run hold different values of what must be the same on all (masks, a decision)."""


def _dist():
    dist = torch.distributed
    return dist if dist.is_available() and dist.is_initialized() else None


def world() -> Tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` without an initialised process group."""
    dist = _dist()
    return (dist.get_rank(), dist.get_world_size()) if dist is not None else (0, 1)


def is_distributed() -> bool:
    """True when a process group of more than one rank is initialised."""
    return world()[1] > 1


def _device_for_collectives(like: torch.Tensor) -> torch.device:
    # NCCL moves CUDA tensors only; gloo moves CPU tensors (and CUDA ones through the host).
    dist = _dist()
    if dist is not None and dist.get_backend() == "nccl" and not like.is_cuda:
        return torch.device("cuda", torch.cuda.current_device())
    return like.device


def mean_over_ranks(value: float) -> float:
    """``value`` averaged over every rank (each rank calls it at the same point); ``value`` itself when not
    distributed.

    Args:
        value: this rank's value (a Python number or a 0-d tensor).
    """
    if not is_distributed():
        return float(value)
    dist = _dist()
    t = torch.tensor([float(value)], dtype=torch.float64)
    t = t.to(_device_for_collectives(t))
    dist.all_reduce(t)
    return float(t.item()) / world()[1]


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Rank ``src``'s ``tensor`` on every rank; bool tensors travel as uint8. Returns the (new) tensor.

    Example:
        >>> import torch
        >>> broadcast_(torch.tensor([True, False])).tolist()
        [True, False]
    """
    if not is_distributed():
        return tensor
    dist = _dist()
    device = _device_for_collectives(tensor)
    buf = tensor.to(device=device, dtype=torch.uint8 if tensor.dtype == torch.bool else tensor.dtype).contiguous()
    dist.broadcast(buf, src=src)
    return buf.to(device=tensor.device, dtype=tensor.dtype)


def broadcast_object(value: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``value`` on every rank (a seed, a list of rates)."""
    if not is_distributed():
        return value
    box = [value]
    _dist().broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(value: Any) -> List[Any]:
    """Every rank's picklable ``value``, in rank order (``[value]`` when not distributed)."""
    if not is_distributed():
        return [value]
    out: List[Any] = [None] * world()[1]
    _dist().all_gather_object(out, value)
    return out


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_distributed():
        _dist().barrier()


@torch.no_grad()
def fingerprint(tensor: torch.Tensor) -> int:
    """A 64-bit hash of ``tensor``'s bytes and shape, computed where the tensor lives (one pass, 8 bytes a word).

    Equal tensors always hash equal; a single flipped bit changes the hash (each 64-bit word is mixed with its
    position before the wrapping sum).
    """
    flat = tensor.detach().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.view(torch.uint8)
    data = flat.contiguous().view(torch.uint8)
    pad = (-data.numel()) % 8
    if pad:
        data = torch.cat([data, data.new_zeros(pad)])
    words = data.view(torch.int64)
    position = torch.arange(1, words.numel() + 1, dtype=torch.int64, device=words.device)
    mixed = (words ^ (position * _K1)) * _K2
    mixed = mixed ^ (mixed >> 31)
    h = int(mixed.sum()) if words.numel() else 0
    for s in tensor.shape:
        h = (h * 1_000_003 + int(s)) & 0xFFFFFFFFFFFFFFFF
    return h & 0xFFFFFFFFFFFFFFFF


def check_identical(tensors: Mapping[str, torch.Tensor], what: str = "mask") -> None:
    """Raise :class:`RankMismatchError` unless every rank holds the same ``tensors`` (same names, same values).

    One ``all_gather`` of a few bytes per tensor; every rank must call it at the same point.

    Raises:
        RankMismatchError: naming the first tensor that differs and the ranks holding each version.
    """
    if not is_distributed():
        return
    mine: Dict[str, int] = {name: fingerprint(t) for name, t in sorted(tensors.items())}
    everyone = all_gather_object(mine)
    names: Iterable[str] = sorted(set().union(*everyone))
    for name in names:
        versions: Dict[Any, List[int]] = {}
        for rank, theirs in enumerate(everyone):
            versions.setdefault(theirs.get(name), []).append(rank)
        if len(versions) > 1:
            groups = "; ".join(f"ranks {', '.join(map(str, ranks))}: "
                               f"{'none' if h is None else format(h, '016x')}" for h, ranks in versions.items())
            raise RankMismatchError(f"{what} {name!r} differs across ranks ({groups}); every decision that changes "
                                    f"it must be the same on every rank (see the README's distributed section)")
