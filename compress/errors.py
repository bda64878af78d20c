"""Exceptions raised by ``compress``.

Errors are raised where input enters the library (schedule loading, constructor arguments, checkpoint
files) and carry the user's own words: the file, the line, the key path, the name that did not match.
"""
from __future__ import annotations

from typing import Optional


class CompressError(Exception):
    """Base class of every error ``compress`` raises on purpose."""


class ArgumentError(CompressError, ValueError):
    """A constructor argument is invalid.

    Args:
        key: the argument's name, optionally with an index (``weights[2]``); the schedule loader
            appends it to the key path of the component being built.
        message: what was expected.
    """

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


class ScheduleError(CompressError, ValueError):
    """Anything wrong with a schedule: its YAML, a class, an argument, a weight name or a policy.

    Args:
        message: what was wrong and what was expected.
        file: the schedule file, when the schedule came from one.
        line: the 1-based line of the offending key, when known.
        key: the key path, e.g. ``pruners.l0_rnn_pruner.final_sparsity`` or ``policies[2].starting_epoch``.
    """

    def __init__(self, message: str, *, file: Optional[str] = None, line: Optional[int] = None,
                 key: Optional[str] = None):
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        elif line:
            where = f"line {line}: "
        super().__init__(f"{where}{key + ': ' if key else ''}{message}")


class CheckpointError(CompressError, ValueError):
    """A checkpoint file is missing, truncated, foreign, or does not fit the model it is loaded into."""
