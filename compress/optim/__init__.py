"""Optimizers for compressed training: sparse NT-ASGD and its switch.

* :class:`SparseNTASGD`: SGD, then averaged SGD with a per-weight average that restarts where the weight is pruned
  or regrown;
* :class:`NTASGDSwitch` (schedule extension) and :class:`NonMonotoneTrigger` (for your own loop): when to switch;
* :func:`averaged_weights`: evaluate or save with the averages swapped in.
"""
from compress.optim.nt_switch import (
    NonMonotoneTrigger,
    NTASGDSwitch,
    nonmonotone_trigger,
)
from compress.optim.snt_asgd import SparseNTASGD, averaged_weights

__all__ = ["SparseNTASGD", "averaged_weights", "NTASGDSwitch", "NonMonotoneTrigger", "nonmonotone_trigger"]
