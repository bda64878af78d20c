"""Reading a schedule: YAML text, safely, into plain data and a map from each key path to its line.

Nothing here knows a class or an algorithm; :mod:`compress.scheduling.config` turns the data into objects.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple, Union

import yaml

from compress.errors import KeyPath, ScheduleError, format_key

Path = KeyPath


def read_schedule(path: Union[str, os.PathLike]) -> Tuple[Any, Dict[Path, int]]:
    """Read a YAML schedule safely; returns its data and a map from key path to 1-based line.

    Raises:
        ScheduleError: the file cannot be read, is not valid YAML, uses Python tags, or repeats a key.
    """
    file = os.fspath(path)
    try:
        with open(file, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScheduleError(f"cannot read schedule: {exc}", file=file) from None
    return parse_schedule(text, file)


def parse_schedule(text: str, file: Optional[str] = None) -> Tuple[Any, Dict[Path, int]]:
    """Parse YAML text with a safe loader; see :func:`read_schedule`."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScheduleError(f"invalid YAML: {problem}", file=file, line=mark.line + 1 if mark else None) from None
    lines: Dict[Path, int] = {}
    if node is not None:
        _walk(node, (), lines, file)
    return data, lines


def _walk(node: yaml.Node, path: Path, lines: Dict[Path, int], file: Optional[str]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise ScheduleError(f"duplicate key {key!r}", file=file, line=key_node.start_mark.line + 1,
                                    key=format_key(path) or None)
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines, file)


