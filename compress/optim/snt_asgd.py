"""Sparse NT-ASGD: SGD that switches to iterate averaging, with an average per weight that restarts with it.

Averaged SGD (Polyak & Juditsky) returns the mean of the iterates instead of the last one; NT-ASGD (Merity et al.,
AWD-LSTM) starts averaging only once validation stops improving (see :mod:`compress.optim.nt_switch`). In a
sparse network the topology changes while averaging: a weight that is pruned must leave the average, and one that
grows back must start a fresh average from its own first value. Selfish-RNN's ``Sparse_ASGD`` therefore keeps a
step counter *per weight*. Here those counters are optimizer state shaped like the weight, so the mask store resets
them exactly where it resets momentum: :meth:`compress.sparsity.masks.MaskStore.set_mask` zeroes them at pruned and
regrown positions and :meth:`~compress.sparsity.masks.MaskStore.after_step` at pruned ones. The optimizer itself
knows no mask.

What an averaging step costs beyond SGD is memory traffic: per weight it reads and writes the counter and the
average and computes ``mu`` (about 40 more bytes per weight than SGD's 24), and the mask store then zeroes both at
pruned positions. ``examples/bench_snt_asgd.py`` times it against plain SGD.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy
import torch
from torch.optim import Optimizer

from compress.errors import ArgumentError
from compress.options import boolean, number


class SparseNTASGD(Optimizer):
    """Plain SGD until :meth:`start_averaging`, then ASGD with one averaging counter per weight.

    Phase 1 (SGD): ``w <- w - lr * (grad + weight_decay * w)``, bit for bit ``torch.optim.SGD`` without momentum
    (the NT-ASGD recipes of AWD-LSTM and Selfish-RNN use none).

    Phase 2 (averaging), per element, with ``c`` the number of steps since the element was last reset (by the
    switch, or by the mask store when the weight was pruned or regrown)::

        c   <- c + 1
        w   <- w * (1 - lambd * eta) - eta * (grad + weight_decay * w)
        mu   = 1 / max(1, c - 1 - t0)
        ax  <- ax + mu * (w - ax)       (= w while mu == 1)

    For a weight never pruned this is exactly ``torch.optim.ASGD`` (whose ``mu`` lags one step, so the average
    leaves out the first iterate after ``t0``); ``eta = lr / (1 + lambd * lr * t) ** alpha`` with ``t`` the
    tensor's averaging steps (``lr`` itself for the recipes' ``lambd = 0``). Read the averages with
    :func:`averaged_weights`.

    The averaging step runs as a handful of ``torch._foreach_*`` kernels over all parameters of one device and
    dtype, and allocates nothing once running: the decayed gradient and then ``mu`` are written into one buffer
    per parameter, kept by the optimizer between steps (one tensor of the parameter's size, not part of the saved
    state). ``eta`` and the step count are Python numbers, so no step reads a value back from the GPU (a
    checkpoint loaded by ``torch.optim.Optimizer`` would otherwise put ``eta`` on the device, and reading it
    there synchronised once per parameter and step). ``foreach=False`` runs the per-parameter loop with
    temporaries that this class used before; both give bit-identical results on the CPU.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        weight_decay: L2 penalty (Selfish-RNN: 1.2e-6).
        t0: averaging steps to wait before the running mean starts (0 in the recipes).
        lambd: ASGD's decay term.
        alpha: ASGD's power for ``eta``.
        averaging: start in phase 2.
        foreach: the foreach kernels (default) or the per-parameter loop (a reference; slower).

    Raises:
        ArgumentError: a negative or non-finite ``lr``, ``weight_decay``, ``t0`` or ``lambd``; a parameter that
            is not float32 or float64.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        >>> optimizer = SparseNTASGD([w], lr=0.1, averaging=True)
        >>> for _ in range(3):
        ...     w.grad = torch.ones(2)
        ...     optimizer.step()
        >>> [round(x, 4) for x in w.tolist()], [round(x, 4) for x in optimizer.state[w]["ax"].tolist()]
        ([0.7, 1.7], [0.75, 1.75])
    """

    def __init__(self, params: Iterable, lr: float, weight_decay: float = 0.0, t0: float = 0.0,
                 lambd: float = 0.0, alpha: float = 0.75, averaging: bool = False, foreach: bool = True):
        values = {key: number(key, value, minimum=0.0)
                  for key, value in (("lr", lr), ("weight_decay", weight_decay), ("t0", t0), ("lambd", lambd))}
        super().__init__(params, dict(values, alpha=number("alpha", alpha), averaging=boolean("averaging", averaging)))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dtype not in (torch.float32, torch.float64):
                    raise ArgumentError("params", f"SparseNTASGD averages float32 or float64 weights, got {p.dtype} "
                                                  f"(its per-weight step counters must count exactly)")
        self.foreach = boolean("foreach", foreach)
        self._buffers: Dict[torch.Tensor, torch.Tensor] = {}

    @property
    def averaging(self) -> bool:
        """True once :meth:`start_averaging` was called (saved with the optimizer's state)."""
        return all(g["averaging"] for g in self.param_groups)

    def start_averaging(self) -> None:
        """Switch every group to averaging from the next step on; each weight's average starts afresh."""
        for group in self.param_groups:
            group["averaging"] = True

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """``torch.optim.Optimizer.load_state_dict``, with ``step`` and ``eta`` kept as host numbers.

        Checkpoints of earlier versions hold them as tensors, which PyTorch moves to the parameter's device.
        """
        super().load_state_dict(state_dict)
        for state in self.state.values():
            if torch.is_tensor(state.get("step")):
                state["step"] = int(state["step"].item())
            if torch.is_tensor(state.get("eta")):
                state["eta"] = _float32(state["eta"].item())

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if not group["averaging"]:
                _sgd_step(params, [p.grad for p in params], group["lr"], group["weight_decay"])
            elif self.foreach:
                self._foreach_averaging_step(params, group)
            else:
                for p in params:
                    self._single_averaging_step(p, group)
        return loss

    def _state(self, p: torch.Tensor, group: Dict[str, Any]) -> Dict[str, Any]:
        state = self.state[p]
        if "ax" not in state:
            state["step"] = 0
            state["eta"] = _float32(group["lr"])
            state["ax"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["count"] = torch.zeros_like(p, memory_format=torch.preserve_format)  # exact integers to 2**24
        return state

    def _buffer(self, p: torch.Tensor) -> torch.Tensor:
        buffer = self._buffers.get(p)
        if buffer is None or buffer.shape != p.shape or buffer.dtype != p.dtype or buffer.device != p.device:
            buffer = self._buffers[p] = torch.empty_like(p, memory_format=torch.preserve_format)
        return buffer

    def _foreach_averaging_step(self, params: List[torch.Tensor], group: Dict[str, Any]) -> None:
        buckets: Dict[Tuple[torch.device, torch.dtype, float], List[torch.Tensor]] = {}
        for p in params:  # one foreach call needs one device, one dtype and one scalar eta
            key = (p.device, p.dtype, float(self._state(p, group)["eta"]))
            buckets.setdefault(key, []).append(p)
        wd, lambd, t0 = group["weight_decay"], group["lambd"], group["t0"]
        for (_, _, eta), ps in buckets.items():
            grads = [p.grad for p in ps]
            counts = [self.state[p]["count"] for p in ps]
            buffers = [self._buffer(p) for p in ps]
            direction = grads
            if wd:
                for g, p, b in zip(grads, ps, buffers):  # foreach kernels have no out=: one kernel per tensor
                    torch.add(g, p, alpha=wd, out=b)
                direction = buffers
            if lambd:
                torch._foreach_mul_(ps, 1 - lambd * eta)
            torch._foreach_add_(ps, direction, alpha=-eta)
            if t0:
                torch._foreach_add_(counts, 1.0)
                for c, b in zip(counts, buffers):
                    torch.sub(c, 1 + t0, out=b)
                torch._foreach_clamp_min_(buffers, 1.0)
            else:  # max(1, c - 1) after the increment is max(1, c) before it: one kernel fewer
                for c, b in zip(counts, buffers):
                    torch.clamp_min(c, 1.0, out=b)
                torch._foreach_add_(counts, 1.0)
            torch._foreach_reciprocal_(buffers)
            torch._foreach_lerp_([self.state[p]["ax"] for p in ps], ps, buffers)  # exactly p where mu == 1
        for p in params:
            self._advance(self.state[p], group)

    def _single_averaging_step(self, p: torch.Tensor, group: Dict[str, Any]) -> None:
        state = self._state(p, group)
        count, ax = state["count"], state["ax"]
        grad = p.grad
        count.add_(1)
        if group["weight_decay"]:
            grad = grad.add(p, alpha=group["weight_decay"])
        eta = float(state["eta"])
        if group["lambd"]:
            p.mul_(1 - group["lambd"] * eta)
        p.add_(grad, alpha=-eta)
        mu = count.sub(1 + group["t0"]).clamp_(min=1).reciprocal_()
        ax.lerp_(p, mu)  # ax + mu (p - ax), and exactly p where mu == 1 (a restart)
        self._advance(state, group)

    @staticmethod
    def _advance(state: Dict[str, Any], group: Dict[str, Any]) -> None:
        state["step"] += 1
        state["eta"] = _float32(group["lr"] / ((1 + group["lambd"] * group["lr"] * state["step"]) ** group["alpha"]))


def _float32(value: float) -> float:
    """``value`` rounded to float32, as the tensor that held ``eta`` in earlier versions rounded it."""
    return float(numpy.float32(value))


def _sgd_step(params: List[torch.Tensor], grads: List[torch.Tensor], lr: float, weight_decay: float) -> None:
    try:
        if weight_decay:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
        torch._foreach_add_(params, grads, alpha=-lr)
    except (RuntimeError, TypeError):  # mixed devices or dtypes: one kernel per tensor
        for p, g in zip(params, grads):
            if weight_decay:
                g = g.add(p, alpha=weight_decay)
            p.add_(g, alpha=-lr)


@contextlib.contextmanager
def averaged_weights(optimizer: Optimizer) -> Iterator[bool]:
    """Swap every parameter that has an average (``'ax'`` state) for it, and back on exit.

    Use it to evaluate and to save the averaged model, as NT-ASGD prescribes::

        with averaged_weights(optimizer):
            val_loss = evaluate(model)
            torch.save(model.state_dict(), "best.pt")

    Works with :class:`SparseNTASGD` in its averaging phase and with ``torch.optim.ASGD``; with any other
    optimizer, or before averaging starts, it changes nothing.

    Args:
        optimizer: the optimizer whose ``'ax'`` state holds the averages.

    Yields:
        Whether any weight was swapped.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([4.0]))
        >>> optimizer = SparseNTASGD([w], lr=0.5, averaging=True)
        >>> for _ in range(3):                            # iterates 2.0, 1.0, 0.5
        ...     optimizer.zero_grad(); (w ** 2 / 2).sum().backward(); optimizer.step()
        >>> with averaged_weights(optimizer) as swapped:
        ...     print(swapped, w.item())                  # the mean of 1.0 and 0.5 (mu lags a step)
        True 0.75
        >>> w.item()                                      # the last iterate, back after the block
        0.5
    """
    swapped = []
    with torch.no_grad():
        for group in optimizer.param_groups:
            if group.get("averaging") is False:
                continue
            for p in group["params"]:
                ax = optimizer.state.get(p, {}).get("ax")
                if torch.is_tensor(ax) and ax.shape == p.shape:
                    swapped.append((p, p.detach().clone()))
                    p.copy_(ax)
    try:
        yield bool(swapped)
    finally:
        with torch.no_grad():
            for p, raw in swapped:
                p.copy_(raw)
