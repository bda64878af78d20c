"""Exceptions raised by ``compress``.

Errors are raised where input enters the library (schedule loading, constructor arguments, checkpoint
files) and carry the user's own words: the file, the line, the key path, the name that did not match.
"""
from __future__ import annotations

import reprlib
from typing import Any, Optional, Tuple, Union

#: A key path: ``("pruners", "agp", "weights", 1)`` is ``pruners.agp.weights[1]``.
KeyPath = Tuple[Union[str, int], ...]
#: A key as a caller may give it: one name, or a path.
KeyLike = Union[str, KeyPath]


def format_key(path: KeyPath) -> str:
    """``("pruners", "agp", "weights", 1)`` → ``'pruners.agp.weights[1]'``.

    Example:
        >>> format_key(("policies", 2, "pruner", "args", "levels", "rnn.weight_hh_l0"))
        'policies[2].pruner.args.levels.rnn.weight_hh_l0'
    """
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def key_path(key: KeyLike, *more: Union[str, int]) -> KeyPath:
    """``key`` (a name or a path) extended by ``more``, as a path.

    Example:
        >>> key_path("levels", "rnn.weight_hh_l0")
        ('levels', 'rnn.weight_hh_l0')
    """
    return (tuple(key) if isinstance(key, tuple) else (key,)) + tuple(more)


def _short_repr(maxlevel: int) -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict, short.maxtuple, short.maxset = maxlevel, 6, 6, 6, 6
    short.maxstring, short.maxother, short.maxlong = 80, 80, 40
    return short


#: Shallower and shallower: six items a level still make 6**levels of them, so depth is cut until it fits.
_SHORT = [_short_repr(level) for level in (3, 2, 1)]
#: The longest a described value gets in a message.
DESCRIBE_LIMIT = 200


def describe(value: Any) -> str:
    """``repr(value)`` cut short, for messages: a value read from a file may be huge or share itself many times
    over (a YAML alias of an alias), and an error message must not expand it. At most :data:`DESCRIBE_LIMIT`
    characters.

    Example:
        >>> describe([[1, 2]] * 100)
        '[[1, 2], [1, 2], [1, 2], [1, 2], [1, 2], [1, 2], ...]'
        >>> describe([[[[[1]] * 10] * 10] * 10] * 10)   # 10**4 leaves: one level is shown
        '[[...], [...], [...], [...], [...], [...], ...]'
    """
    for short in _SHORT:
        text = short.repr(value)
        if len(text) <= DESCRIBE_LIMIT:
            return text
    return text[:DESCRIBE_LIMIT - 3] + "..."


class CompressError(Exception):
    """Base class of every error ``compress`` raises on purpose.

    Catch it to handle any of the library's own errors; a bug (``TypeError``, ``AttributeError``, ...) is never
    one.

    Example:
        >>> issubclass(ScheduleError, CompressError), issubclass(CheckpointError, CompressError)
        (True, True)
    """


class ArgumentError(CompressError, ValueError):
    """A constructor argument is invalid.

    Args:
        key: the argument's name, or its key path inside the argument (``("weights", 2)``,
            ``("levels", "rnn.weight_hh_l0")``); the schedule loader prefixes the path of the component being
            built.
        message: what was expected.

    Attributes:
        path: the key path as a tuple; ``key`` is its printed form.

    Example:
        >>> str(ArgumentError(("weights", 1), "matches no parameter"))
        'weights[1]: matches no parameter'
    """

    def __init__(self, key: KeyLike, message: str):
        self.path: KeyPath = tuple(key) if isinstance(key, tuple) else (key,)
        self.key = format_key(self.path)
        self.message = message
        super().__init__(f"{self.key}: {message}")

    def __reduce__(self):
        return type(self), (self.path, self.message)


class ScheduleError(CompressError, ValueError):
    """Anything wrong with a schedule: its YAML, a class, an argument, a weight name or a policy.

    Args:
        message: what was wrong and what was expected.
        file: the schedule file, when the schedule came from one.
        line: the 1-based line of the offending key, when known.
        key: the key path, as a tuple (``("policies", 2, "starting_epoch")``) or already printed
            (``pruners.l0_rnn_pruner.final_sparsity``).

    Attributes:
        path: the key path as a tuple, when ``key`` was given as one (else ``None``); ``key`` is its printed
            form.

    Example:
        >>> str(ScheduleError("must be in [0, 1), got 1.5", file="agp.yaml", line=7,
        ...                   key=("pruners", "agp", "final_sparsity")))
        'agp.yaml:7: pruners.agp.final_sparsity: must be in [0, 1), got 1.5'
    """

    def __init__(self, message: str, *, file: Optional[str] = None, line: Optional[int] = None,
                 key: Optional[KeyLike] = None):
        self.message = message
        self.file = file
        self.line = line
        self.path: Optional[KeyPath] = tuple(key) if isinstance(key, tuple) else None
        key = format_key(key) if isinstance(key, tuple) else key
        self.key = key or None
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        elif line:
            where = f"line {line}: "
        super().__init__(f"{where}{key + ': ' if key else ''}{message}")


class CheckpointError(CompressError, ValueError):
    """A checkpoint file is missing, truncated, foreign, or does not fit the model it is loaded into.

    The message starts with the file's path; loading that raises it has changed nothing.

    Example:
        >>> import compress, torch
        >>> try:
        ...     compress.load_checkpoint("no-such-file.pt", torch.nn.Linear(2, 2))
        ... except CheckpointError as exc:
        ...     print(type(exc).__name__)
        CheckpointError
    """
