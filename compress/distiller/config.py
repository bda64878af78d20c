"""Distiller's ``distiller.config``: schedules (YAML in Distiller's format) into a compression scheduler.

:func:`file_config` and :func:`dict_config` are :func:`compress.file_config` and :func:`compress.dict_config`,
which take Distiller's arguments in Distiller's order; every mistake in a schedule is a
:class:`~compress.errors.ScheduleError` naming the file, line and key.

Example:
    >>> import torch
    >>> model = torch.nn.LSTM(4, 4)
    >>> schedule = {"pruners": {"p": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.05,
    ...                               "final_sparsity": 0.5, "weights": ["weight_hh_l0"]}},
    ...             "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": 3}]}
    >>> dict_config(model, None, schedule).policies[0][:2]
    ('pruner', 'p')
"""
from __future__ import annotations

from compress.distiller.uncovered import missing_name, uncovered
from compress.scheduling import dict_config, file_config

__all__ = ["file_config", "dict_config", "config_component_from_file_by_class"]

config_component_from_file_by_class = uncovered(
    "config.config_component_from_file_by_class",
    "compress.components_from_file(model, filename) builds every component of the file ({section: {instance name: "
    "object}}, policies ignored); take the one you need, e.g. ['quantizers']['post_train_quantizer']")

__getattr__ = missing_name(__name__)
