"""``torchrun`` for the word-LM trainer: one process per rank, each on its own shard of the training tokens.

``torchrun --nproc_per_node N examples/word_lm.py FLAGS`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous address; :func:`init_from_environment` then joins the process group (NCCL with ``--cuda``, one GPU per
local rank; gloo on the CPU) and the trainer wraps the model in ``DistributedDataParallel``. Without those
variables (or with ``WORLD_SIZE=1``) nothing is initialised and every function here returns what a single
process needs, so the trainer's single-process path is unchanged.

The data: rank ``r`` of ``N`` trains on the ``r``-th of ``N`` equal contiguous slices of the training stream
(:func:`shard_tokens`), batchified with ``--batch-size`` streams, so the global batch is ``N x --batch-size``.
Each slice holds a whole number of batches' worth of columns, which makes the ``N`` shards' columns exactly the
columns a single process would train on with the global batch: with dropout 0, a 2-rank run computes the same
updates as one process with twice the batch (DDP averages the gradients). Every rank evaluates the whole
validation and test splits, so the metrics the schedule and the LR annealing read are the same on every rank.

Example:
    >>> import torch
    >>> shard_tokens(torch.arange(10), rank=1, world_size=2, batch_size=2)
    tensor([4, 5, 6, 7])
    >>> init_from_environment(cuda=False, environ={})
    (0, 1, device(type='cpu'))
"""
from __future__ import annotations

import datetime
import os
from typing import Mapping, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["init_from_environment", "shard_tokens", "wrap", "finish"]


def init_from_environment(cuda: bool, environ: Optional[Mapping[str, str]] = None) -> Tuple[int, int, torch.device]:
    """Join ``torchrun``'s process group when its variables say there is more than one rank.

    Args:
        cuda: train on GPUs (NCCL, the GPU of ``LOCAL_RANK``) rather than on the CPU (gloo).
        environ: the environment to read (default ``os.environ``).

    Returns:
        ``(rank, world size, device)``; ``(0, 1, cuda or cpu)`` when not launched by ``torchrun``.

    Raises:
        ValueError: ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` are not integers, or ``--cuda`` names a local rank
            that has no GPU.
    """
    environ = os.environ if environ is None else environ
    try:
        world_size = int(environ.get("WORLD_SIZE", "1"))
        rank = int(environ.get("RANK", "0"))
        local_rank = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError as error:
        raise ValueError(f"torchrun's RANK/WORLD_SIZE/LOCAL_RANK must be integers: {error}") from None
    if world_size <= 1:
        return 0, 1, torch.device("cuda" if cuda else "cpu")
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} has no GPU: {torch.cuda.device_count()} visible")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    return dist.get_rank(), dist.get_world_size(), device


def shard_tokens(tokens: torch.Tensor, rank: int, world_size: int, batch_size: int) -> torch.Tensor:
    """Rank ``rank``'s contiguous slice of a token stream: ``len(tokens) // (world_size * batch_size)`` tokens
    per stream, ``batch_size`` streams.

    The slices are equal (every rank runs the same number of steps, as DDP's collectives need) and together
    they are the first ``world_size * batch_size`` streams that ``batchify(tokens, world_size * batch_size)``
    cuts: the tokens past them are dropped there too.

    Raises:
        ValueError: fewer tokens than ``world_size * batch_size``.
    """
    per_stream = tokens.size(0) // (world_size * batch_size)
    if per_stream == 0:
        raise ValueError(f"{tokens.size(0)} training tokens are fewer than {world_size} ranks x batch "
                         f"{batch_size}")
    length = per_stream * batch_size
    return tokens[rank * length:(rank + 1) * length]


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` when a process group of more than one rank is running, else ``model``.

    The wrapper's parameter names carry DDP's ``module.`` prefix; schedules name the inner model's parameters
    and resolve against either.
    """
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def finish() -> None:
    """Leave the process group (all ranks together), if one was joined."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
