"""What the scheduler reports at each epoch's end: sparsity per weight, prune/regrow counts, learning rate.

:func:`epoch_metrics` builds one flat record (``{"epoch": 3, "lr": 20.0, "sparsity/rnn.weight_hh_l0": 80.0,
...}``) from the mask store; :meth:`CompressionScheduler.add_metrics_callback` calls a function with it after
every ``on_epoch_end``, so a CSV file or TensorBoard (:mod:`compress.reports.metrics_log`) gets the schedule's
progress without code in the training loop. Keys:

* ``epoch``; ``lr`` (the first parameter group's; ``lr/<i>`` for the others when they differ);
* ``sparsity/<weight>``: percent of the weight's values that are exactly zero; ``mask_sparsity/<weight>``:
  percent of its mask that is pruned (the two differ where kept weights are zero, e.g. regrown weights before
  their first optimizer step); ``sparsity/total`` and ``mask_sparsity/total`` over the masked weights;
* ``pruned/<weight>``, ``regrown/<weight>``: positions whose mask went from kept to pruned, and from pruned to
  kept, since the previous record (net changes: a position pruned and regrown in between counts as neither);
  ``pruned/total``, ``regrown/total``;
* ``metric/<key>``: each number the loop passed as ``on_epoch_end(..., metrics={key: value})``.

Only weights that have a mask are listed (what the schedule prunes); the sparsity table covers every weight.
"""
from __future__ import annotations

import numbers
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from compress.sparsity.masks import MaskStore

__all__ = ["epoch_metrics"]

MetricsRecord = Dict[str, float]


def epoch_metrics(masks: MaskStore, epoch: int, optimizer: Optional[torch.optim.Optimizer] = None,
                  metrics: Optional[Mapping[str, Any]] = None,
                  previous: Optional[Mapping[str, torch.Tensor]] = None
                  ) -> Tuple[MetricsRecord, Dict[str, torch.Tensor]]:
    """One epoch's record, and the masks to compare the next record with.

    Args:
        masks: the scheduler's mask store.
        epoch: the epoch that ended.
        optimizer: its learning rates are recorded (none when ``None``).
        metrics: the loop's metrics (``{'min': val_loss}``); numbers become ``metric/<key>``.
        previous: the masks returned by the previous call (``None``: counts are against the dense model).

    Returns:
        ``(record, snapshot)``: the flat record (keys in the module docstring) and copies of the current masks.

    Example:
        >>> layer = torch.nn.Linear(4, 2, bias=False)
        >>> store = MaskStore(layer)
        >>> store.set_mask("weight", torch.tensor([[True, False, False, False], [True, True, False, False]]))
        >>> record, snapshot = epoch_metrics(store, 0, torch.optim.SGD(layer.parameters(), lr=0.5))
        >>> record["lr"], record["mask_sparsity/weight"], record["pruned/weight"], record["regrown/weight"]
        (0.5, 62.5, 5, 0)
    """
    record: MetricsRecord = {"epoch": int(epoch)}
    if optimizer is not None:
        rates = [float(group["lr"]) for group in optimizer.param_groups]
        record["lr"] = rates[0]
        if any(rate != rates[0] for rate in rates):
            record.update({f"lr/{i}": rate for i, rate in enumerate(rates) if i})
    snapshot: Dict[str, torch.Tensor] = {}
    numel = zeros = pruned_mask = pruned_total = regrown_total = 0
    for name, mask in masks.items():
        weight = masks.parameter(name).detach()
        n = mask.numel()
        kept = int(mask.sum())
        value_zeros = int((weight == 0).sum())
        before = previous.get(name) if previous is not None else None
        if before is None:
            pruned, regrown = n - kept, 0
        else:
            pruned = int((before & ~mask).sum())
            regrown = int((~before & mask).sum())
        record[f"sparsity/{name}"] = 100.0 * value_zeros / n if n else 0.0
        record[f"mask_sparsity/{name}"] = 100.0 * (n - kept) / n if n else 0.0
        record[f"pruned/{name}"], record[f"regrown/{name}"] = pruned, regrown
        numel, zeros, pruned_mask = numel + n, zeros + value_zeros, pruned_mask + n - kept
        pruned_total, regrown_total = pruned_total + pruned, regrown_total + regrown
        snapshot[name] = mask.clone()
    if numel:
        record["sparsity/total"] = 100.0 * zeros / numel
        record["mask_sparsity/total"] = 100.0 * pruned_mask / numel
        record["pruned/total"], record["regrown/total"] = pruned_total, regrown_total
    for key, value in (metrics or {}).items():
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            record[f"metric/{key}"] = float(value)
        elif torch.is_tensor(value) and value.numel() == 1:
            record[f"metric/{key}"] = float(value.item())
    return record, snapshot
