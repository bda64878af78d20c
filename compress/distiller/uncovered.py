"""What :mod:`compress.distiller` does not cover: an error that says what to use instead.

Every Distiller name that Distiller's word-LM example or its ``quantize_lstm.ipynb`` reaches for but that has no
counterpart here (the model-graph drawing, MAC counts, pandas tables) is a callable that raises
:class:`NotCoveredError` with the ``compress`` way to do the same. A name that is neither covered nor listed is an
``AttributeError`` that points to ``docs/distiller-compat.md``.
"""
from __future__ import annotations

from typing import Any, Callable, NoReturn

from compress.errors import CompressError

__all__ = ["NotCoveredError", "uncovered", "missing_name"]

DOC = "docs/distiller-compat.md (section 4)"


class NotCoveredError(CompressError, NotImplementedError):
    """A Distiller name that :mod:`compress.distiller` does not provide; the message says what to use instead.

    Example:
        >>> issubclass(NotCoveredError, NotImplementedError), issubclass(NotCoveredError, CompressError)
        (True, True)
    """

    def __init__(self, name: str, advice: str):
        self.name = name
        self.advice = advice
        super().__init__(f"distiller.{name} is not covered by compress.distiller: {advice}")


def uncovered(name: str, advice: str, *, cls: bool = False) -> Any:
    """A stand-in for Distiller's ``name`` that raises :class:`NotCoveredError` when called (or instantiated).

    Args:
        name: the Distiller name, as a user writes it after ``distiller.`` (``'SummaryGraph'``).
        advice: what to use instead.
        cls: make a class (for names that are classes in Distiller), else a function.

    Example:
        >>> draw = uncovered("draw_model_to_file", "print(model) shows the modules")
        >>> draw(None, "x.png")
        Traceback (most recent call last):
        ...
        compress.distiller.uncovered.NotCoveredError: distiller.draw_model_to_file is not covered ...: print(model) ...
    """
    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise NotCoveredError(name, advice)

    short = name.rsplit(".", 1)[-1]
    if cls:
        return type(short, (), {"__init__": refuse, "__doc__": f"Not covered: {advice}", "__module__": __name__})
    refuse.__name__ = refuse.__qualname__ = short
    refuse.__doc__ = f"Not covered: {advice}"
    return refuse


def missing_name(module: str) -> Callable[[str], NoReturn]:
    """A module ``__getattr__`` for names neither covered nor listed: an ``AttributeError`` naming the docs."""
    def __getattr__(name: str) -> NoReturn:
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}: compress.distiller covers what "
                             f"Distiller's word-LM example and quantize_lstm.ipynb call; {DOC} lists each name with "
                             f"its compress function")
    return __getattr__
