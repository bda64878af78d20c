"""Reading a schedule: YAML text, safely, into plain data and a map from each key path to its line.

Nothing here knows a class or an algorithm; :mod:`compress.scheduling.config` turns the data into objects. The
YAML reader itself (bounded depth, aliases shared, merge keys, every failure with its line) is
:mod:`compress.io.yamldoc`.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Tuple, Union

from compress.errors import KeyPath, ScheduleError
from compress.io.yamldoc import LineMap, YAMLDocumentError, parse_yaml

Path = KeyPath


def read_schedule(path: Union[str, os.PathLike]) -> Tuple[Any, LineMap]:
    """Read a YAML schedule safely; returns its data and a map from key path to 1-based line.

    Raises:
        ScheduleError: the file cannot be read, is not valid YAML, uses Python tags, repeats a key, nests too
            deeply or has a recursive alias (see :mod:`compress.io.yamldoc`); it names the file and line.
    """
    file = os.fspath(path)
    try:
        with open(file, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScheduleError(f"cannot read schedule: {exc}", file=file) from None
    return parse_schedule(text, file)


def parse_schedule(text: str, file: Optional[str] = None) -> Tuple[Any, LineMap]:
    """Parse YAML text safely; see :func:`read_schedule`.

    Example:
        >>> data, lines = parse_schedule("policies:\\n  - {pruner: {instance_name: p}, epochs: [0]}\\n")
        >>> lines[("policies", 0, "pruner", "instance_name")]
        2
    """
    try:
        return parse_yaml(text)
    except YAMLDocumentError as exc:
        raise ScheduleError(f"invalid YAML: {exc.message}", file=file, line=exc.line) from None
