"""Where training is: when a policy acts (:class:`Timing`) and what every hook and pruner is told
(:class:`HookContext`).

Both sit below the scheduling and pruning packages: policies (scheduling) own a timing, and pruners read it
from the context to compute how much to prune, so neither package has to import the other.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

from compress import options
from compress.errors import ArgumentError

if TYPE_CHECKING:  # annotations only: the context sits below the packages that fill it
    import torch

    from compress.sparsity.masks import MaskStore


@dataclass(frozen=True)
class Timing:
    """When a policy acts: an explicit epoch list, or ``range(starting_epoch, ending_epoch, frequency)``.

    Args:
        epochs: explicit epochs (the ``epochs: [...]`` form); mutually exclusive with the range form.
        starting_epoch: first epoch of the range form.
        ending_epoch: end of the range form, exclusive (Distiller's convention).
        frequency: step of the range form.

    Raises:
        ArgumentError: both forms or neither, an empty or negative epoch list, ``ending_epoch <= starting_epoch``,
            or ``frequency < 1``.

    Example:
        >>> list(Timing(starting_epoch=2, ending_epoch=8, frequency=2).active_epochs)
        [2, 4, 6]
        >>> Timing(epochs=[5, 1, 3]).last
        5
    """

    epochs: Optional[Tuple[int, ...]] = None
    starting_epoch: Optional[int] = None
    ending_epoch: Optional[int] = None
    frequency: Optional[int] = None

    def __post_init__(self):
        # The one place a timing is checked: schedules and code both end here (ArgumentError is a ValueError).
        if self.epochs is not None:
            if self.starting_epoch is not None or self.ending_epoch is not None:
                key = "starting_epoch" if self.starting_epoch is not None else "ending_epoch"
                raise ArgumentError(key, "give either 'epochs' or starting_epoch/ending_epoch/frequency, not both")
            if not isinstance(self.epochs, (list, tuple)) or not self.epochs:
                raise ArgumentError("epochs", f"expected a non-empty list of epochs, got {self.epochs!r}")
            epochs = options.sequence("epochs", self.epochs, options.integer, minimum=0)
            object.__setattr__(self, "epochs", tuple(sorted(set(epochs))))
            return
        for key in ("starting_epoch", "ending_epoch"):
            if getattr(self, key) is None:
                raise ArgumentError(key, f"missing '{key}' (or give 'epochs: [...]')")
        start = options.integer("starting_epoch", self.starting_epoch, minimum=0)
        end = options.integer("ending_epoch", self.ending_epoch)
        if end <= start:
            raise ArgumentError("ending_epoch", f"must be greater than starting_epoch ({start}); ending_epoch is "
                                                f"exclusive, got {end}")
        frequency = options.integer("frequency", 1 if self.frequency is None else self.frequency, minimum=1)
        object.__setattr__(self, "frequency", frequency)

    @property
    def active_epochs(self) -> Sequence[int]:
        if self.epochs is not None:
            return self.epochs
        return range(self.starting_epoch, self.ending_epoch, self.frequency)

    def is_active(self, epoch: int) -> bool:
        if self.epochs is not None:
            return epoch in self.epochs
        return (self.starting_epoch <= epoch < self.ending_epoch
                and (epoch - self.starting_epoch) % self.frequency == 0)

    @property
    def first(self) -> int:
        return self.active_epochs[0]

    @property
    def last(self) -> int:
        """The last epoch in which the policy acts (not ``ending_epoch``, which is exclusive)."""
        return self.active_epochs[-1]

    @property
    def ending(self) -> int:
        """One past the last epoch covered: ``ending_epoch``, or ``epochs[-1] + 1`` for the list form."""
        return self.ending_epoch if self.epochs is None else self.epochs[-1] + 1




@dataclass(frozen=True)
class HookContext:
    """Where training is, as every policy hook and every pruner is told it.

    The scheduler builds one per hook call; a policy hands it to its algorithm with its own :attr:`timing`
    filled in (:meth:`with_timing`), so a pruner reads the epoch, the minibatch, its policy's epochs and the
    optimizer from one object.

    Args:
        epoch: the current epoch.
        minibatch_id: the minibatch within the epoch (0 at epoch hooks).
        minibatches_per_epoch: minibatches in an epoch, as the loop passed it (``None`` at epoch hooks).
        optimizer: the optimizer, when the loop or the schedule gave one.
        masks: the model's :class:`~compress.sparsity.masks.MaskStore`, when the caller has one.
        timing: the epochs of the policy that calls, when a policy calls.

    Example:
        >>> ctx = HookContext(epoch=3, minibatch_id=7, minibatches_per_epoch=100)
        >>> ctx.with_timing(Timing(starting_epoch=0, ending_epoch=10, frequency=1)).timing.last
        9
    """

    epoch: int
    minibatch_id: int = 0
    minibatches_per_epoch: Optional[int] = None
    optimizer: Optional[torch.optim.Optimizer] = None
    masks: Optional[MaskStore] = None
    timing: Optional[Timing] = None

    def with_timing(self, timing: Timing) -> HookContext:
        """This context with ``timing`` set (the policy's epochs)."""
        return replace(self, timing=timing)
