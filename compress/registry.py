"""Explicit registries of the classes a schedule may name.

A schedule's ``class:`` is looked up here and nowhere else: never in a module's globals, never through an
import path, so a YAML file cannot make the library import or run arbitrary code. Users add their own
classes with the ``register_*`` decorators.
"""
from __future__ import annotations

import difflib
from typing import Callable, Dict, Iterable, Iterator, Optional, TypeVar

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


class Modes:
    """A name → function table for one family of interchangeable criteria (death modes, growth modes, grouping
    strategies, rate searches, ...), so a user adds one with a decorator instead of editing an ``if`` chain.

    A registered function may declare what it ``needs`` from its caller (e.g. ``("momentum",)``); callers
    provide those inputs only where a mode needs them. Iterating gives the names in registration order, so a
    ``Modes`` serves as ``argparse`` ``choices``.

    Args:
        family: the option the modes are values of (``death``, ``growth``, ...), used in messages.

    Example:
        >>> colours = Modes("colour")
        >>> @colours.register("red")
        ... def red():
        ...     return "#f00"
        >>> colours["red"](), "red" in colours, list(colours)
        ('#f00', True, ['red'])
    """

    def __init__(self, family: str):
        self.family = family
        self._functions: Dict[str, Callable] = {}
        self._needs: Dict[str, tuple] = {}

    def register(self, name: str, *, needs: Iterable[str] = ()) -> Callable[[Callable], Callable]:
        """Decorator: register a function as mode ``name`` (an existing name is an error)."""

        def add(fn: Callable) -> Callable:
            if name in self._functions and self._functions[name] is not fn:
                raise ValueError(f"{self.family}: mode {name!r} is already registered")
            self._functions[name] = fn
            self._needs[name] = tuple(needs)
            return fn

        return add

    def __getitem__(self, name: str) -> Callable:
        if name not in self._functions:
            raise KeyError(f"unknown {self.family} {name!r} (registered: {', '.join(self)})")
        return self._functions[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._functions

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._functions))

    def __len__(self) -> int:
        return len(self._functions)

    def needs(self, name: str) -> tuple:
        """What mode ``name`` declared it needs from its caller."""
        return self._needs.get(name, ())

    def __repr__(self) -> str:
        return f"Modes({self.family!r}: {', '.join(self)})"


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
    """Decorator: make a :class:`~compress.pruning.Pruner` subclass nameable in ``pruners:``.

    Usually written over the class (``@compress.register_pruner`` then ``class MyPruner(compress.Pruner): ...``);
    called with a class, it registers that class, here under a second name.

    Args:
        cls: the class; omitted when the decorator is written with arguments (``@register_pruner(name=...)``).
        name: the name a schedule's ``class:`` uses (default: the class's ``__name__``).

    Returns:
        The class itself (so the decorator leaves it unchanged), or, without ``cls``, the decorator.

    Raises:
        ValueError: ``name`` is already registered to another class.

    Example:
        >>> import torch, compress
        >>> from compress.pruning import SparsityLevelParameterPruner
        >>> compress.register_pruner(SparsityLevelParameterPruner, name="HalfPruner") is SparsityLevelParameterPruner
        True
        >>> model = torch.nn.Linear(4, 4, bias=False)
        >>> schedule = {"pruners": {"p": {"class": "HalfPruner", "levels": {"weight": 0.5}}},
        ...             "policies": [{"pruner": {"instance_name": "p"}, "epochs": [0]}]}
        >>> compress.dict_config(model, None, schedule).on_epoch_begin(0)
        >>> int((model.weight == 0).sum())
        8
    """
    return PRUNERS.register(cls, name=name)


def register_regularizer(cls=None, *, name: Optional[str] = None) -> Callable:
    """Decorator: make a regularizer class nameable in ``regularizers:``.

    Args and return value as for :func:`register_pruner`.

    Raises:
        ValueError: ``name`` is already registered to another class.

    Example:
        >>> from compress.pruning import L1Regularizer
        >>> _ = register_regularizer(L1Regularizer, name="Lasso")
        >>> "Lasso" in REGULARIZERS
        True
    """
    return REGULARIZERS.register(cls, name=name)


def register_quantizer(cls=None, *, name: Optional[str] = None) -> Callable:
    """Decorator: make a quantizer class nameable in ``quantizers:``.

    Args and return value as for :func:`register_pruner`.

    Raises:
        ValueError: ``name`` is already registered to another class.

    Example:
        >>> from compress.quantization import PostTrainLinearQuantizer
        >>> _ = register_quantizer(PostTrainLinearQuantizer, name="PTQ")
        >>> QUANTIZERS.get("PTQ").__name__
        'PostTrainLinearQuantizer'
    """
    return QUANTIZERS.register(cls, name=name)


def register_extension(cls=None, *, name: Optional[str] = None) -> Callable:
    """Decorator: make a policy class nameable in ``extensions:``.

    An extension is a :class:`~compress.scheduling.policies.ScheduledTrainingPolicy` built from its own
    arguments (``NTASGDSwitch`` is one). Args and return value as for :func:`register_pruner`.

    Raises:
        ValueError: ``name`` is already registered to another class.

    Example:
        >>> from compress.optim import NTASGDSwitch
        >>> _ = register_extension(NTASGDSwitch, name="ASGDSwitch")
        >>> "ASGDSwitch" in EXTENSIONS
        True
    """
    return EXTENSIONS.register(cls, name=name)


def register_lr_scheduler(cls=None, *, name: Optional[str] = None) -> Callable:
    """Decorator: make an LR-scheduler class nameable in ``lr_schedulers:``.

    The class is built as ``cls(optimizer, **arguments)``, like every ``torch.optim.lr_scheduler`` class (all of
    which are registered under their own names). Args and return value as for :func:`register_pruner`.

    Raises:
        ValueError: ``name`` is already registered to another class.

    Example:
        >>> import torch
        >>> _ = register_lr_scheduler(torch.optim.lr_scheduler.StepLR, name="Decay")
        >>> LR_SCHEDULERS.get("Decay") is torch.optim.lr_scheduler.StepLR
        True
    """
    return LR_SCHEDULERS.register(cls, name=name)
