"""YAML documents read safely: plain data, the line of every key, and a failure that always names its line.

PyYAML's ``SafeLoader`` runs no code, but it does not bound the work a small file can ask for. This reader
composes with it and adds the bounds:

* nesting is at most :data:`MAX_DEPTH` levels (PyYAML composes recursively: ~600 levels raise ``RecursionError``);
* an alias that refers to a node containing it (``a: &r [*r]``) is refused: it describes an infinite document;
* aliases are shared, never expanded: an alias is the same Python object as its anchor, and the line map
  (:class:`LineMap`) walks a key path through the node graph when asked, instead of listing every path of the
  expanded document (exponential in the number of alias levels);
* merge keys (``<<: *base``) are flattened once per mapping, in the order mappings end, so a chain of merges
  does not recurse; the entries they copy are counted, and more than four per character of text are refused;
* a key given twice in one mapping is refused, while a key that overrides a merged one wins, as YAML says;
* a value its tag's constructor refuses (``!!int abc``, ``!!timestamp 2001-13-45``, ``!!bool maybe``) is an
  error at its line instead of a ``ValueError`` or ``KeyError`` from the constructor.

Work is linear in the size of the text. Every failure is a :class:`YAMLDocumentError` with the 1-based line.

Example:
    >>> data, lines = parse_yaml("base: &b {x: 1, y: 2}\\np: {<<: *b, y: 3}\\n")
    >>> data["p"], lines[("p", "y")]
    ({'x': 1, 'y': 3}, 2)
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

try:  # libyaml's parser: the same grammar, in C (the pure-Python scanner looks ahead quadratically in nesting)
    from yaml._yaml import CParser as _Events
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _Events = None

from compress.errors import CompressError

__all__ = ["MAX_DEPTH", "LineMap", "YAMLDocumentError", "parse_yaml"]

#: The deepest nesting of sequences and mappings a document may have (a schedule needs about 6).
MAX_DEPTH = 100

_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"
_STR = "tag:yaml.org,2002:str"

KeyPart = Union[str, int]


class YAMLDocumentError(CompressError, ValueError):
    """The text is not a YAML document this reader accepts.

    Args:
        message: what is wrong.
        line: the 1-based line, when the text has one for it.
    """

    def __init__(self, message: str, line: Optional[int] = None):
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


def _line(mark: Any) -> Optional[int]:
    return mark.line + 1 if mark is not None else None


def _refuse(message: str, mark: Any) -> ConstructorError:
    # ConstructorError carries its mark to parse_yaml's one conversion into YAMLDocumentError.
    return ConstructorError(None, None, message, mark)


class _Bounded(Composer, SafeConstructor):
    """PyYAML's composer and safe constructor with bounded nesting, no recursive aliases, merges flattened once
    and duplicate keys refused; the events come from libyaml where PyYAML has it."""

    def __init__(self, text: str):
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._open_anchors: set = set()
        self._finished_mappings: List[MappingNode] = []
        self._merged: Dict[MappingNode, int] = {}  # mapping node -> how many of its pairs came from merges
        self._merge_budget = 4 * len(text) + 10_000
        self.keys: Dict[MappingNode, List[Any]] = {}  # mapping node -> its constructed keys, pair by pair

    # -- composing ------------------------------------------------------------------------------------------
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if event.anchor in self._open_anchors:
                raise _refuse(f"alias *{event.anchor} refers to a node that contains it (a recursive alias)",
                              event.start_mark)
        return super().compose_node(parent, index)

    def _nested(self, anchor, compose):
        if self._depth >= MAX_DEPTH:
            raise _refuse(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        self._depth += 1
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            return compose(anchor)
        finally:
            self._depth -= 1
            self._open_anchors.discard(anchor)

    def compose_sequence_node(self, anchor):
        return self._nested(anchor, super().compose_sequence_node)

    def compose_mapping_node(self, anchor):
        node = self._nested(anchor, super().compose_mapping_node)
        self._finished_mappings.append(node)
        return node

    # -- merge keys -----------------------------------------------------------------------------------------
    def flatten_all(self) -> None:
        """Flatten every mapping's merge keys, each mapping once; a merged mapping ended before its user."""
        for node in self._finished_mappings:
            self._flatten(node)
        self._finished_mappings = []

    def _flatten(self, node: MappingNode) -> None:
        merged: Dict[Any, Tuple[Node, Node]] = {}
        own: List[Tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                if key_node.tag == _VALUE:
                    key_node.tag = _STR
                own.append((key_node, value_node))
                continue
            if isinstance(value_node, MappingNode):
                sources = [value_node]
            elif isinstance(value_node, SequenceNode):
                sources = value_node.value[::-1]  # the first mapping listed wins
            else:
                raise _refuse(f"a merge key ('<<') takes a mapping or a list of mappings, found a {value_node.id}",
                              value_node.start_mark)
            for source in sources:
                if not isinstance(source, MappingNode):
                    raise _refuse(f"a merge key ('<<') takes mappings, found a {source.id}", source.start_mark)
                self._merge_budget -= len(source.value)
                if self._merge_budget < 0:
                    raise _refuse("merge keys ('<<') copy more than four entries per character of the file; "
                                  "a document this repetitive is refused", key_node.start_mark)
                for pair in source.value:  # already flattened: it ended before this mapping did
                    merged[_identity(pair[0])] = pair
        for key_node, _ in own:  # the mapping's own keys override merged ones
            merged.pop(_identity(key_node), None)
        if merged:
            node.value = list(merged.values()) + own
            self._merged[node] = len(merged)

    def flatten_mapping(self, node):
        """Merges were flattened once by :meth:`flatten_all`."""

    # -- constructing ---------------------------------------------------------------------------------------
    def construct_mapping(self, node, deep=False):
        if not isinstance(node, MappingNode):
            raise _refuse(f"expected a mapping, found a {node.id}", node.start_mark)
        first_own = self._merged.get(node, 0)
        mapping: Dict[Any, Any] = {}
        own_keys: set = set()
        keys: List[Any] = []
        for i, (key_node, value_node) in enumerate(node.value):
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise _refuse(f"a key must be a scalar, found a {key_node.id}", key_node.start_mark) from None
            if i >= first_own:
                if key in own_keys:
                    raise _refuse(f"duplicate key {key!r}", key_node.start_mark)
                own_keys.add(key)
            keys.append(key)
            mapping[key] = self.construct_object(value_node, deep=deep)
        self.keys[node] = keys
        return mapping

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # a tag's constructor refused the value: int('abc'), a 13th month, ...
            tag = node.tag.rsplit(":", 1)[-1]
            value = node.value if isinstance(node, ScalarNode) else node.id
            raise _refuse(f"{value!r} is not a valid !!{tag} ({type(exc).__name__}: {exc})",
                          node.start_mark) from None


if _Events is not None:
    class _Loader(_Bounded, _Events, Resolver):
        def __init__(self, text: str):
            _Events.__init__(self, text)
            _Bounded.__init__(self, text)
else:  # pragma: no cover
    class _Loader(_Bounded, Reader, Scanner, Parser, Resolver):
        def __init__(self, text: str):
            Reader.__init__(self, text)
            Scanner.__init__(self)
            Parser.__init__(self)
            _Bounded.__init__(self, text)


def _identity(key_node: Node) -> Any:
    """What makes two key nodes the same key for merging: tag and text of a scalar; a collection is itself."""
    return (key_node.tag, key_node.value) if isinstance(key_node, ScalarNode) else id(key_node)


class LineMap:
    """The 1-based line of a key path in a document: ``lines[("policies", 2, "ending_epoch")]``.

    A mapping key's line is the key's; a sequence item's is the item's. Paths are walked through the node graph
    when asked, so an alias costs nothing until a path through it is looked up. Only ``in``, ``[]`` and
    :meth:`get` are offered: listing every path of a document with aliases would expand them.
    """

    def __init__(self, root: Optional[Node] = None, keys: Optional[Dict[MappingNode, List[Any]]] = None):
        self._root = root
        self._keys = keys or {}

    def get(self, path: Tuple[KeyPart, ...], default: Optional[int] = None) -> Optional[int]:
        node = self._root
        if node is None:
            return default
        line = _line(node.start_mark)
        for part in path:
            if isinstance(node, SequenceNode):
                if isinstance(part, bool) or not isinstance(part, int) or not 0 <= part < len(node.value):
                    return default
                node = node.value[part]
                line = _line(node.start_mark)
            elif isinstance(node, MappingNode):
                found = self._find(node, part)
                if found is None:
                    return default
                key_node, node = found
                line = _line(key_node.start_mark)
            else:
                return default
        return line

    def _find(self, node: MappingNode, part: KeyPart) -> Optional[Tuple[Node, Node]]:
        keys = self._keys.get(node, ())
        loose = None
        for (key_node, value_node), key in zip(node.value, keys):
            if key == part and type(key) is type(part):
                return key_node, value_node
            if loose is None and str(key) == str(part):  # a path names a non-string key by its text
                loose = key_node, value_node
        return loose

    def __contains__(self, path: object) -> bool:
        return isinstance(path, tuple) and self.get(path) is not None

    def __getitem__(self, path: Tuple[KeyPart, ...]) -> int:
        line = self.get(path)
        if line is None:
            raise KeyError(path)
        return line


def parse_yaml(text: str) -> Tuple[Any, LineMap]:
    """Parse one YAML document safely; returns its data and its :class:`LineMap`.

    Raises:
        YAMLDocumentError: not valid YAML, more than one document, a tag that runs code (``!!python/...``) or is
            unknown, a value its tag refuses, nesting deeper than :data:`MAX_DEPTH`, a recursive alias,
            merges copying more than four entries per character of text, or a duplicate key.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, LineMap()
        loader.flatten_all()
        data = loader.construct_document(node)
        return data, LineMap(node, loader.keys)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow; it has a position, not a mark
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        raise YAMLDocumentError(f"{exc.reason} (character {exc.character!r})", line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        raise YAMLDocumentError(f"{context}: {problem}" if context else problem, _line(mark)) from None
    finally:
        loader.dispose()
