"""Option checks shared by every component: what a valid number, fraction, count, flag or choice is.

Every constructor argument and every schedule value that the library reads goes through one of these
functions, once, where it enters. Each returns the value in its canonical type or raises
:class:`~compress.errors.ArgumentError` naming the option by its key path, so a schedule error reads
``pruners.agp.final_sparsity: must be in [0, 1), got 1.5`` wherever the check happens. Numbers are never
booleans (YAML's ``yes`` is not 1) and never NaN or infinite.

Example:
    >>> fraction("final_sparsity", 0.8)
    0.8
    >>> fraction("final_sparsity", float("nan"))
    Traceback (most recent call last):
    ...
    compress.errors.ArgumentError: final_sparsity: expected a finite number in [0, 1), got nan
    >>> integer("frequency", 2, minimum=1)
    2
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Callable, Iterable, List, Mapping, Optional, TypeVar

import torch

from compress.errors import ArgumentError, KeyLike, describe

T = TypeVar("T")

__all__ = ["number", "integer", "fraction", "boolean", "choice", "name", "mapping", "names", "function",
           "optional", "sequence", "fields", "tensor", "like", "under"]


def _finite(value: Real) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _interval(minimum: Optional[float], maximum: Optional[float], min_open: bool, max_open: bool) -> str:
    lo = "-inf" if minimum is None else f"{minimum:g}"
    hi = "inf" if maximum is None else f"{maximum:g}"
    return f"{'(' if min_open or minimum is None else '['}{lo}, {hi}{')' if max_open or maximum is None else ']'}"


def number(key: KeyLike, value: Any, *, minimum: Optional[float] = None, maximum: Optional[float] = None,
           min_open: bool = False, max_open: bool = False) -> float:
    """``value`` as a finite float within the bounds (closed unless ``*_open``).

    Raises:
        ArgumentError: not a number (booleans and strings included), NaN, infinite, or out of bounds.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ArgumentError(key, f"expected a number, got {describe(value)}")
    given = value
    try:
        value = float(value)
    except OverflowError:  # an integer beyond float's range
        value = math.inf
    bounded = minimum is not None or maximum is not None
    if not math.isfinite(value):
        where = f" in {_interval(minimum, maximum, min_open, max_open)}" if bounded else ""
        raise ArgumentError(key, f"expected a finite number{where}, got {describe(given)}")
    low_bad = minimum is not None and (value < minimum or (min_open and value == minimum))
    high_bad = maximum is not None and (value > maximum or (max_open and value == maximum))
    if low_bad or high_bad:
        raise ArgumentError(key, f"must be in {_interval(minimum, maximum, min_open, max_open)}, got {value:g}")
    return value


def integer(key: KeyLike, value: Any, *, minimum: Optional[int] = None, maximum: Optional[int] = None) -> int:
    """``value`` as an int within ``[minimum, maximum]``; a float such as ``2.0`` is refused, as is a bool.

    Raises:
        ArgumentError: not an integer, or out of bounds.
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ArgumentError(key, f"expected an integer, got {describe(value)}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if maximum is None:
            raise ArgumentError(key, f"expected an integer >= {minimum}, got {value}")
        raise ArgumentError(key, f"expected an integer in [{minimum}, {maximum}], got {value}")
    return value


def fraction(key: KeyLike, value: Any, *, allow_zero: bool = True, allow_one: bool = False) -> float:
    """``value`` as a float in [0, 1) (``allow_one``: [0, 1]; without ``allow_zero`` the left end is open).

    Raises:
        ArgumentError: not a finite number in that interval.
    """
    interval = _interval(0.0, 1.0, not allow_zero, not allow_one)
    if isinstance(value, bool) or not isinstance(value, Real) or not _finite(value):
        raise ArgumentError(key, f"expected a finite number in {interval}, got {describe(value)}")
    return number(key, value, minimum=0.0, maximum=1.0, min_open=not allow_zero, max_open=not allow_one)


def boolean(key: KeyLike, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False`` (YAML ``true``/``false``); numbers and strings are refused.

    Raises:
        ArgumentError: not a bool.
    """
    if not isinstance(value, bool):
        raise ArgumentError(key, f"expected true or false, got {describe(value)}")
    return value


def choice(key: KeyLike, value: Any, allowed: Iterable[T]) -> T:
    """``value`` if it is one of ``allowed`` (compared exactly; ``allowed`` lists the valid spellings).

    Raises:
        ArgumentError: not one of them; the message lists them.
    """
    allowed = list(allowed)
    try:
        ok = bool(value in allowed)
    except Exception:  # an unhashable or incomparable value (a tensor compares element by element)
        ok = False
    if not ok or isinstance(value, bool) and not any(a is value for a in allowed):
        raise ArgumentError(key, f"expected one of {', '.join(map(str, allowed))}, got {describe(value)}")
    return value


def name(key: KeyLike, value: Any) -> str:
    """``value`` as a non-empty string (an instance name, a weight name, a class name).

    Raises:
        ArgumentError: not a string, or empty.
    """
    if not isinstance(value, str) or not value:
        raise ArgumentError(key, f"expected a non-empty name (a string), got {describe(value)}")
    return value


def names(key: KeyLike, value: Any, *, allow_empty: bool = False) -> List[str]:
    """A string or a list of strings, as a list (weight names or patterns).

    Raises:
        ArgumentError: naming the first entry that is not a non-empty string (``key[i]``).
    """
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ArgumentError(key, f"expected a list of names, got {describe(value)}")
    if not value and not allow_empty:
        raise ArgumentError(key, "expected at least one name, got an empty list")
    path = key if isinstance(key, tuple) else (key,)
    return [name(path + (i,), v) for i, v in enumerate(value)]


def mapping(key: KeyLike, value: Any, *, allow_empty: bool = False) -> Mapping[str, Any]:
    """``value`` if it is a mapping whose keys are non-empty strings.

    Raises:
        ArgumentError: not a mapping, empty (unless allowed), or a key that is not a non-empty string.
    """
    if not isinstance(value, Mapping):
        raise ArgumentError(key, f"expected a mapping, got {describe(value)}")
    if not value and not allow_empty:
        raise ArgumentError(key, "expected a non-empty mapping")
    path = key if isinstance(key, tuple) else (key,)
    for k in value:
        if not isinstance(k, str) or not k:
            raise ArgumentError(path + (str(k),), f"expected a non-empty name as key, got {describe(k)}")
    return value


def function(key: KeyLike, value: Any, what: str = "a callable") -> Callable[..., Any]:
    """``value`` if it is callable.

    Raises:
        ArgumentError: not callable; the message says what was expected.
    """
    if not callable(value):
        raise ArgumentError(key, f"expected {what}, got {describe(value)}")
    return value


def optional(check: Callable[..., T], key: KeyLike, value: Any, *args: Any, **kwargs: Any) -> Optional[T]:
    """``None`` if ``value`` is ``None``, else ``check(key, value, *args, **kwargs)``.

    Example:
        >>> optional(integer, "decay_epochs", None, minimum=1) is None
        True
    """
    return None if value is None else check(key, value, *args, **kwargs)


def sequence(key: KeyLike, value: Any, check: Callable[..., T], *args: Any, **kwargs: Any) -> List[T]:
    """A list whose every entry passes ``check`` (entries named ``key[i]``)."""
    if not isinstance(value, (list, tuple)):
        raise ArgumentError(key, f"expected a list, got {describe(value)}")
    path = key if isinstance(key, tuple) else (key,)
    return [check(path + (i,), v, *args, **kwargs) for i, v in enumerate(value)]




# -- saved state: the same checks for what a checkpoint holds -------------------------------------------------
def fields(key: KeyLike, value: Any, allowed: Iterable[str]) -> Mapping[str, Any]:
    """``value`` if it is a mapping whose keys are all among ``allowed`` (a saved state's fields).

    Raises:
        ArgumentError: not a mapping, or naming the first unknown field.

    Example:
        >>> fields("state", {"events": 2}, ["events", "steps"])
        {'events': 2}
    """
    if not isinstance(value, Mapping):
        raise ArgumentError(key, f"expected a mapping, got {describe(value)}")
    allowed = list(allowed)
    path = key if isinstance(key, tuple) else (key,)
    for k in value:
        if k not in allowed:
            raise ArgumentError(path + (str(k),), f"unknown field (expected {', '.join(allowed) or 'none'})")
    return value


def tensor(key: KeyLike, value: Any, shape: Optional[Iterable[int]] = None) -> Any:
    """``value`` if it is a tensor (of ``shape``, when given).

    Raises:
        ArgumentError: not a tensor, or of another shape.
    """
    if not torch.is_tensor(value):
        raise ArgumentError(key, f"expected a tensor, got {describe(value)}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise ArgumentError(key, f"expected a tensor of shape {tuple(shape)}, got {tuple(value.shape)}")
    return value


def like(key: KeyLike, value: Any, template: Any, *, exact: bool = True) -> Any:
    """``value`` if it has the structure of ``template`` (a state the same object saves now): a bool where it has a
    bool, an int where an int, a number where a float (not NaN), a string where a string, a tensor of the same
    shape where a tensor, a list of the same length where a list, and so on inside mappings (keys present in
    both). ``None`` or an object other than these in the template accepts anything. With ``exact`` the top-level
    mapping may hold no key the template lacks.

    Raises:
        ArgumentError: naming the first field that differs.

    Example:
        >>> like("state", {"last_epoch": 3, "base_lrs": [0.1]}, {"last_epoch": 0, "base_lrs": [1.0]})
        {'last_epoch': 3, 'base_lrs': [0.1]}
    """
    path = key if isinstance(key, tuple) else (key,)
    if isinstance(template, bool):
        boolean(path, value)
    elif isinstance(template, Integral):
        integer(path, value)
    elif isinstance(template, Real):
        if isinstance(value, bool) or not isinstance(value, Real) or value != value:
            raise ArgumentError(path, f"expected a number, got {describe(value)}")
    elif isinstance(template, str):
        if not isinstance(value, str):
            raise ArgumentError(path, f"expected a string, got {describe(value)}")
    elif torch.is_tensor(template):
        tensor(path, value, template.shape)
    elif isinstance(template, Mapping):
        if exact:
            fields(path, value, list(template))
        elif not isinstance(value, Mapping):
            raise ArgumentError(path, f"expected a mapping, got {describe(value)}")
        for k in value:
            if k in template:
                like(path + (str(k),), value[k], template[k], exact=False)
    elif isinstance(template, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(template):
            raise ArgumentError(path, f"expected a list of {len(template)}, got {describe(value)}")
        for i, (v, t) in enumerate(zip(value, template)):
            like(path + (i,), v, t, exact=False)
    return value


class under:
    """A context in which every ``ArgumentError`` gets ``prefix`` in front of its key path.

    Example:
        >>> try:
        ...     with under("pruner"):
        ...         integer("events", "two")
        ... except ArgumentError as exc:
        ...     exc.key
        'pruner.events'
    """

    def __init__(self, *prefix: Any):
        self.prefix = prefix

    def __enter__(self) -> under:
        return self

    def __exit__(self, kind, exc, traceback) -> bool:
        if isinstance(exc, ArgumentError):
            raise ArgumentError(self.prefix + exc.path, exc.message) from None
        return False
