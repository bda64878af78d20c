"""Explicit registries of the classes a schedule may name.

A schedule's ``class:`` is looked up here and nowhere else: never in a module's globals, never through an
import path, so a YAML file cannot make the library import or run arbitrary code. Users add their own
classes with the ``register_*`` decorators.
"""
from __future__ import annotations

import difflib
from typing import Callable, Dict, Iterable, Optional, TypeVar

T = TypeVar("T", bound=type)

# Distiller classes that a recurrent-model schedule may name but that make no sense here; loading them
# fails with this reason instead of a bare "unknown class".
_UNSUPPORTED = {
    "FilterRemover": "it physically removes Conv2d filters (Distiller's CNN thinning)",
    "ChannelRemover": "it physically removes Conv2d channels (Distiller's CNN thinning)",
    "StructureRemover": "it physically removes Conv2d structures (Distiller's CNN thinning)",
    "ActivationAPoZRankedFilterPruner": "it ranks Conv2d filters by ReLU activations",
    "ActivationAPoZRankedFilterPruner_AGP": "it ranks Conv2d filters by ReLU activations",
    "ActivationMeanRankedFilterPruner": "it ranks Conv2d filters by ReLU activations",
    "ActivationMeanRankedFilterPruner_AGP": "it ranks Conv2d filters by ReLU activations",
    "FMReconstructionChannelPruner": "it reconstructs Conv2d feature maps",
    "DropFilterRegularizer": "it replaces Conv2d modules",
}


class Registry:
    """A name → class table for one schedule section.

    Args:
        section: the schedule section it serves (``pruners``, ``lr_schedulers``, ...), used in messages.
    """

    def __init__(self, section: str):
        self.section = section
        self._classes: Dict[str, type] = {}

    def register(self, cls: Optional[T] = None, *, name: Optional[str] = None):
        """Register ``cls`` under ``name`` (default: its ``__name__``); usable as a decorator."""

        def add(c: T) -> T:
            key = name or c.__name__
            if key in self._classes and self._classes[key] is not c:
                raise ValueError(f"{self.section}: class name {key!r} is already registered "
                                 f"to {self._classes[key].__module__}.{self._classes[key].__qualname__}")
            self._classes[key] = c
            return c

        return add(cls) if cls is not None else add

    def get(self, name: str) -> type:
        """The class registered as ``name``; ``KeyError`` with a helpful message otherwise."""
        try:
            return self._classes[name]
        except KeyError:
            raise KeyError(self.unknown_message(name)) from None

    def __contains__(self, name: str) -> bool:
        return name in self._classes

    def names(self) -> Iterable[str]:
        return sorted(self._classes)

    def unknown_message(self, name: str) -> str:
        if name in _UNSUPPORTED:
            return (f"class {name!r} is a Distiller class that compress does not support for "
                    f"{self.section}: {_UNSUPPORTED[name]}")
        close = difflib.get_close_matches(str(name), list(self._classes), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return (f"unknown class {name!r} in {self.section}{hint} "
                f"(registered: {', '.join(self.names()) or 'none'})")


PRUNERS = Registry("pruners")
REGULARIZERS = Registry("regularizers")
QUANTIZERS = Registry("quantizers")
EXTENSIONS = Registry("extensions")
LR_SCHEDULERS = Registry("lr_schedulers")

SECTIONS: Dict[str, Registry] = {
    "pruners": PRUNERS,
    "regularizers": REGULARIZERS,
    "quantizers": QUANTIZERS,
    "extensions": EXTENSIONS,
    "lr_schedulers": LR_SCHEDULERS,
}


def register_pruner(cls=None, *, name: Optional[str] = None) -> Callable:
    """Decorator: make a :class:`~compress.pruning.Pruner` subclass nameable in ``pruners:``."""
    return PRUNERS.register(cls, name=name)


def register_regularizer(cls=None, *, name: Optional[str] = None) -> Callable:
    """Decorator: make a regularizer class nameable in ``regularizers:``."""
    return REGULARIZERS.register(cls, name=name)


def register_quantizer(cls=None, *, name: Optional[str] = None) -> Callable:
    """Decorator: make a quantizer class nameable in ``quantizers:``."""
    return QUANTIZERS.register(cls, name=name)


def register_extension(cls=None, *, name: Optional[str] = None) -> Callable:
    """Decorator: make a policy class nameable in ``extensions:``."""
    return EXTENSIONS.register(cls, name=name)


def register_lr_scheduler(cls=None, *, name: Optional[str] = None) -> Callable:
    """Decorator: make an LR-scheduler class nameable in ``lr_schedulers:``."""
    return LR_SCHEDULERS.register(cls, name=name)
