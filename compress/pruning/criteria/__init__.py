"""Which weights: pure functions from tensors to boolean keep-masks.

* :mod:`.magnitude`: level masks over one tensor or many (Distiller's level pruning, global budgets);
* :mod:`.prune_regrow`: death, growth and redistribution of dynamic sparse training;
* :mod:`.groups`: which weights share one pruning rate (SiPO's grouping strategies);
* :mod:`.units`: which hidden units, by the norm of their groups (ISS).
"""
from compress.pruning.criteria.groups import (
    ParameterGroup,
    group_masks,
    group_parameters,
)
from compress.pruning.criteria.magnitude import global_level_masks, level_mask
from compress.pruning.criteria.units import weakest_units

__all__ = ["level_mask", "global_level_masks", "ParameterGroup", "group_parameters", "group_masks", "weakest_units"]
