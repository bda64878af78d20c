"""Schedules and the scheduler: YAML in Distiller's format turned into policies, and the hooks that run them.

* :mod:`.loader` reads YAML safely, with the line of every key; :mod:`.config` builds the components and
  policies (:func:`file_config`, :func:`dict_config`, :func:`components_from_file`);
* :mod:`.scheduler`: :class:`CompressionScheduler`, which routes a training loop's hooks to the policies;
* :mod:`.policies`: when each algorithm acts; :mod:`.lr_schedulers`: the LR schedulers a schedule may name.
"""
from compress.scheduling.config import components_from_file, dict_config, file_config
from compress.scheduling.loader import parse_schedule, read_schedule
from compress.scheduling.scheduler import CompressionScheduler

__all__ = ["file_config", "dict_config", "components_from_file", "read_schedule", "parse_schedule",
           "CompressionScheduler"]
