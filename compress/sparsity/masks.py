"""Mask mechanics: the one place where keep-masks are stored and applied.

Every pruner family computes boolean keep-masks and hands them to a :class:`MaskStore`; none touches weights,
gradients or optimizer state itself. The store

* keeps one ``torch.bool`` mask per canonical parameter name (1 byte per weight);
* zeroes pruned weights in place (a multiply by the mask, or ``masked_fill_`` for large CUDA tensors), so the
  single flat weight buffer of a cuDNN LSTM is kept (no ``flatten_parameters`` each step, no forward pre-hook);
* zeroes optimizer state (momentum, Adam moments, ...) at pruned positions and at positions that grow back,
  so a regrown weight starts fresh and a pruned one is not pushed by stale momentum;
* skips re-masking before the forward pass when a weight has not been written since it was last masked, read
  off the tensor's version counter, so scheduled epochs cost one masking pass per step, not two.

Weights whose masks are *forward-only* (Distiller's ``mask_on_forward_only``, used by splicing) are masked for
the forward pass only; with ``use_double_copies`` their unmasked values are restored before the optimizer step,
so the dense weights keep learning and pruned weights can come back.

A pruner may work on the rows of some gates of a tensor only (a selection key such as
``rnn.weight_hh_l0[gate=f]``, see :class:`~compress.sparsity.names.ParameterIndex`): :meth:`MaskStore.get`,
:meth:`MaskStore.parameter` and :meth:`MaskStore.set_mask` then read and write those rows, and the tensor keeps
one mask whose other rows stay as they are, so pruners on different gates of one tensor combine.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Set

import torch
from torch import nn

from compress.errors import CheckpointError, describe
from compress.sparsity.names import ParameterIndex

log = logging.getLogger(__name__)


def _multiply_(tensors: List[torch.Tensor], masks: List[torch.Tensor]) -> None:
    """``tensors[i] *= masks[i]``: one ``_foreach_mul_``, or one kernel per tensor where dtypes or devices mix."""
    if not tensors:
        return
    try:
        torch._foreach_mul_(tensors, masks)
    except (RuntimeError, TypeError):
        for t, m in zip(tensors, masks):
            t.mul_(m)


#: The per-parameter masking modes a mask state lists (besides the masks).
MODES = ("forward_only", "double_copies", "mask_gradients")

# The default of MaskStore.fill_from_numel (see MaskStore._zero_pruned_).
FILL_FROM_NUMEL = 1 << 24


def _fill_pruned_(tensor: torch.Tensor, keep_mask: torch.Tensor) -> None:
    """``tensor[~keep_mask] = 0`` with ``masked_fill_``; the negated mask is transient (one tensor at a time)."""
    tensor.masked_fill_(keep_mask.logical_not(), 0)


class MaskStore:
    """Boolean keep-masks for a model's parameters, and how they are applied.

    Args:
        model: the model whose parameters are masked; found by name, never by type.
        optimizer: optional; when known, its state is zeroed at pruned and regrown positions.

    Attributes:
        fill_from_numel: CUDA tensors of at least this many elements are zeroed with ``masked_fill_``, smaller
            ones and CPU tensors multiplied by their masks (``math.inf``: multiply everything).
        index: the model's :class:`~compress.sparsity.ParameterIndex`; masks are keyed by its canonical names.

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(3, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
        >>> store = MaskStore(layer)
        >>> store.set_mask("weight", torch.tensor([[True, False, True], [False, True, True]]))
        >>> layer.weight.tolist()
        [[1.0, 0.0, 3.0], [0.0, 5.0, 6.0]]
        >>> with torch.no_grad():
        ...     _ = layer.weight.add_(1.0)  # an optimizer step writes the pruned positions too
        >>> store.after_step()              # and the store zeroes them again
        >>> layer.weight.tolist()
        [[2.0, 0.0, 4.0], [0.0, 6.0, 7.0]]
    """

    def __init__(self, model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None):
        self.model = model
        self.optimizer = optimizer
        self.fill_from_numel: float = FILL_FROM_NUMEL
        self.index = ParameterIndex(model)
        self._masks: Dict[str, torch.Tensor] = {}
        self.forward_only: Set[str] = set()
        self.double_copies: Set[str] = set()
        self._unmasked: Dict[str, torch.Tensor] = {}
        self._grad_hooks: Dict[str, Any] = {}
        self._versions: Dict[str, int] = {}
        #: counts every change of a mask (set, removed, loaded); the scheduler compares ranks when it moves
        self.changes = 0

    # -- access -------------------------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self._masks

    def __len__(self) -> int:
        return len(self._masks)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def get(self, name: str) -> Optional[torch.Tensor]:
        """The keep-mask of ``name`` (canonical), or ``None`` if it has none; for a selection key, the mask's
        selected rows (``None`` if the tensor has no mask)."""
        selection = self.index.selection(name)
        if selection is None:
            return self._masks.get(name)
        mask = self._masks.get(selection.name)
        return None if mask is None else mask.index_select(0, selection.rows(mask.device))

    def items(self):
        return self._masks.items()

    def parameter(self, name: str) -> torch.Tensor:
        """The parameter ``name``; for a selection key, a detached copy of its selected rows."""
        selection = self.index.selection(name)
        if selection is None:
            return self.index.params[name]
        param = self.index.params[selection.name]
        return param.detach().index_select(0, selection.rows(param.device))

    # -- changing masks -----------------------------------------------------------------------------------
    def set_mask(self, name: str, mask: torch.Tensor, optimizer: Optional[torch.optim.Optimizer] = None,
                 *, reset_state: bool = True) -> None:
        """Store ``mask`` (True = keep) for parameter ``name`` and apply it.

        The weight is masked at once (unless its mask is forward-only). With ``reset_state`` the optimizer
        state is zeroed at every position that is pruned now or that was pruned before and grows back.

        For a selection key, ``mask`` covers the selected rows only: they are replaced in the tensor's mask
        (all kept where it had none) and the other rows are left as they are.
        """
        selection = self.index.selection(name)
        if selection is not None:
            name = selection.name
            param = self.index.params[name]
            rows = selection.rows(param.device)
            if tuple(mask.shape) != (len(rows),) + tuple(param.shape[1:]):
                raise ValueError(f"mask for {selection.key!r} has shape {tuple(mask.shape)}, its rows have "
                                 f"{(len(rows),) + tuple(param.shape[1:])}")
            full = self._masks.get(name)
            full = torch.ones_like(param, dtype=torch.bool) if full is None else full.clone()
            full[rows] = mask.to(device=param.device, dtype=torch.bool)
            mask = full
        param = self.index.params[name]
        if mask.shape != param.shape:
            raise ValueError(f"mask for {name!r} has shape {tuple(mask.shape)}, parameter has {tuple(param.shape)}")
        mask = mask.to(device=param.device, dtype=torch.bool)
        self.changes += 1
        previous = self._masks.get(name)
        self._masks[name] = mask
        with torch.no_grad():
            if name not in self.forward_only:
                param.mul_(mask)
                self._versions[name] = param._version
            if reset_state:
                self._reset_optimizer_state(name, mask, previous, optimizer)

    def remove_mask(self, name: str) -> None:
        """Forget the mask of ``name``: the weight is dense again from the next step on (for a selection key:
        its rows are kept again, the other rows' mask stays)."""
        selection = self.index.selection(name)
        if selection is not None:
            mask = self._masks.get(selection.name)
            if mask is not None:
                mask = mask.clone()
                mask[selection.rows(mask.device)] = True
                self.changes += 1
                self._masks[selection.name] = mask
            return
        self.changes += name in self._masks
        self._masks.pop(name, None)
        self._versions.pop(name, None)
        self.forward_only.discard(name)
        self.double_copies.discard(name)
        self._unmasked.pop(name, None)
        handle = self._grad_hooks.pop(name, None)
        if handle is not None:
            handle.remove()

    def configure(self, name: str, *, forward_only: bool = False, double_copies: bool = False,
                  mask_gradients: bool = False) -> None:
        """Per-parameter masking mode (Distiller's policy args, here scoped to one pruner's weights; a selection
        key sets its tensor's mode)."""
        name = self.index.tensor_name(name)
        (self.forward_only.add if forward_only else self.forward_only.discard)(name)
        (self.double_copies.add if double_copies else self.double_copies.discard)(name)
        has_hook = name in self._grad_hooks
        if mask_gradients and not has_hook and self.index.params[name].requires_grad:  # a frozen weight has none
            self._grad_hooks[name] = self.index.params[name].register_hook(
                lambda grad, n=name: grad * self._masks[n] if n in self._masks else grad)
        elif not mask_gradients and has_hook:
            self._grad_hooks.pop(name).remove()

    # -- applying ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def apply(self, names: Optional[Iterable[str]] = None) -> None:
        """Mask weights before a forward pass (forward-only masks included).

        A weight whose version counter has not moved since it was last masked is skipped: it is still masked.
        """
        todo_p, todo_m = [], []
        if names is not None:
            names = list(dict.fromkeys(self.index.tensor_name(n) for n in names))
        for name in (self._masks if names is None else names):
            mask = self._masks.get(name)
            if mask is None:
                continue
            param = self.index.params[name]
            if name in self.double_copies:
                self._unmasked[name] = param.detach().clone()
            elif name not in self.forward_only and self._versions.get(name) == param._version:
                continue
            todo_p.append(param)
            todo_m.append(mask)
        if todo_p:  # nothing written: every version counter is already the recorded one
            self._zero_pruned_(todo_p, todo_m)
            self._record_versions(names)

    @torch.no_grad()
    def restore_unmasked(self) -> None:
        """Put back the unmasked copies saved by :meth:`apply` (``use_double_copies``), before the step."""
        for name, copy in self._unmasked.items():
            self.index.params[name].copy_(copy)
        self._unmasked.clear()

    @torch.no_grad()
    def after_step(self, optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        """Re-mask weights after an optimizer step, and zero optimizer state at pruned positions.

        Forward-only masks are left out: their weights stay dense between forward passes.
        """
        optimizer = optimizer or self.optimizer
        params, masks = [], []
        for name, mask in self._masks.items():
            if name in self.forward_only:
                continue
            param = self.index.params[name]
            params.append(param)
            masks.append(mask)
            if optimizer is not None:
                for value in optimizer.state.get(param, {}).values():
                    if torch.is_tensor(value) and value.shape == mask.shape:
                        params.append(value)
                        masks.append(mask)
        self._zero_pruned_(params, masks)
        self._record_versions()

    def _zero_pruned_(self, tensors: List[torch.Tensor], keep_masks: List[torch.Tensor]) -> None:
        """Zero ``tensors`` where their bool keep-masks are False, in place.

        ``mul_`` by a bool tensor converts the mask element by element (PyTorch's dynamic-casting path);
        on large CUDA tensors (``fill_from_numel``) ``masked_fill_`` with the mask negated on the fly was
        faster. Below that size the extra negation kernel cost more than it saved, and elsewhere one
        ``_foreach_mul_`` stays. ``examples/bench_core.py --mask-kernels`` times the kernels; the figures are in
        ``examples/README.md``.
        """
        rest_t, rest_m = [], []
        for t, m in zip(tensors, keep_masks):
            if t.is_cuda and t.numel() >= self.fill_from_numel and m.device == t.device:  # masks are bool
                _fill_pruned_(t, m)
            else:
                rest_t.append(t)
                rest_m.append(m)
        _multiply_(rest_t, rest_m)

    def _record_versions(self, names: Optional[Iterable[str]] = None) -> None:
        # Views of one flat buffer (cuDNN) share a version counter: read it after every write is done.
        for name in (self._masks if names is None else names):
            if name in self._masks and name not in self.forward_only:
                self._versions[name] = self.index.params[name]._version

    def _reset_optimizer_state(self, name, mask, previous, optimizer) -> None:
        optimizer = optimizer or self.optimizer
        if optimizer is None:
            return
        param = self.index.params[name]
        regrown = None if previous is None else (mask & ~previous.to(mask.device))
        for value in optimizer.state.get(param, {}).values():
            if torch.is_tensor(value) and value.shape == mask.shape:
                value.mul_(mask)
                if regrown is not None:
                    value.masked_fill_(regrown, 0)

    # -- state --------------------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Masks (bool tensors) and per-parameter modes; everything needed to rebuild the store."""
        return {
            "masks": {n: m.clone() for n, m in self._masks.items()},
            "forward_only": sorted(self.forward_only),
            "double_copies": sorted(self.double_copies),
            "mask_gradients": sorted(self._grad_hooks),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore masks; also accepts Distiller's ``{'masks_dict': {name: float mask or None}}``.

        Names are resolved through aliases (a Distiller ``decoder.weight`` mask lands on the tied tensor).
        Every mask is checked before any is changed. Weights are masked (a no-op on weights restored from
        the same checkpoint); optimizer state is left as loaded, so a resume stays bit-exact.

        Raises:
            CheckpointError: a name matches no parameter or a mask has the wrong shape.
        """
        loaded = self.parse_masks(state)
        for name in list(self._masks):
            self.remove_mask(name)
        modes = {k: set(state.get(k, ())) for k in MODES}
        for name in loaded:
            self.configure(name, forward_only=name in modes["forward_only"],
                           double_copies=name in modes["double_copies"],
                           mask_gradients=name in modes["mask_gradients"])
        for name, mask in loaded.items():
            self.set_mask(name, mask, reset_state=False)

    def _known(self, name: str) -> bool:
        try:
            self.index.canonical(name)
        except LookupError:
            return False
        return True

    def parse_masks(self, state: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
        """Check saved masks against the model; canonical name → bool mask on the parameter's device.

        Raises:
            CheckpointError: a name matches no parameter or a mask has the wrong shape.
        """
        if not isinstance(state, Mapping):
            raise CheckpointError(f"mask state must be a mapping, got {describe(state)}")
        raw = state.get("masks", state.get("masks_dict"))
        if not isinstance(raw, Mapping):
            raise CheckpointError("mask state has neither 'masks' nor 'masks_dict'")
        unknown = [k for k in state if k not in ("masks", "masks_dict") + MODES]
        if unknown:
            raise CheckpointError(f"mask state: unknown field {describe(unknown[0])}")
        loaded: Dict[str, torch.Tensor] = {}
        for key, mask in raw.items():
            if mask is None:
                continue
            if not isinstance(key, str):
                raise CheckpointError(f"mask {describe(key)}: a mask is named by its parameter, a string")
            try:
                name = self.index.canonical(key)
            except LookupError as exc:
                raise CheckpointError(f"mask {key!r}: {exc}") from None
            param = self.index.params[name]
            if not torch.is_tensor(mask) or tuple(mask.shape) != tuple(param.shape):
                shape = tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__
                raise CheckpointError(f"mask {key!r} has shape {shape}, parameter {name!r} has {tuple(param.shape)}")
            loaded[name] = mask.to(device=param.device) != 0
        for mode in MODES:
            names = state.get(mode, [])
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and self._known(n) for n in names):
                raise CheckpointError(f"mask state: {mode} must list parameters of the model, got {describe(names)}")
        return loaded


class ParameterMasker:
    """One parameter's entry of :class:`ParameterMaskers`: Distiller's ``ParameterMasker``, read only.

    Attributes:
        param_name: the parameter's canonical name.
        mask_on_forward_only, use_double_copies: the store's modes for this parameter.
    """

    def __init__(self, store: MaskStore, name: str):
        self._store = store
        self.param_name = name

    @property
    def mask(self) -> Optional[torch.Tensor]:
        """A copy of the keep-mask as 0/1 in the parameter's dtype (Distiller's form), or ``None`` if unmasked.

        Writing to it changes nothing; masks are changed through :meth:`MaskStore.set_mask`.
        """
        keep = self._store.get(self.param_name)
        return None if keep is None else keep.to(self._store.parameter(self.param_name).dtype)

    @property
    def mask_on_forward_only(self) -> bool:
        return self.param_name in self._store.forward_only

    @property
    def use_double_copies(self) -> bool:
        return self.param_name in self._store.double_copies

    def __repr__(self) -> str:
        return f"ParameterMasker({self.param_name!r}, masked={self.param_name in self._store})"


class ParameterMaskers(Mapping):
    """A read-only view of a :class:`MaskStore` in the shape of Distiller's ``zeros_mask_dict``.

    Every parameter has an entry (``.mask`` is ``None`` until it is pruned), keyed by its canonical name;
    aliases (a tied ``decoder.weight``, ``module.`` prefixes) are found too. Masks stay in the store: the view
    copies a mask only when ``.mask`` is read.

    Example:
        >>> layer = torch.nn.Linear(2, 2)
        >>> store = MaskStore(layer)
        >>> store.set_mask("weight", torch.tensor([[True, False], [True, True]]))
        >>> view = ParameterMaskers(store)
        >>> sorted(view), view["weight"].mask.tolist(), view["bias"].mask
        (['bias', 'weight'], [[1.0, 0.0], [1.0, 1.0]], None)
    """

    def __init__(self, store: MaskStore):
        self._store = store

    def __getitem__(self, name: str) -> ParameterMasker:
        try:
            canonical = self._store.index.canonical(name)
        except LookupError as exc:
            raise KeyError(str(exc)) from None
        return ParameterMasker(self._store, canonical)

    def __iter__(self) -> Iterator[str]:
        return iter(self._store.index.params)

    def __len__(self) -> int:
        return len(self._store.index.params)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self._store.index.canonical(name)
        except LookupError:
            return False
        return True
