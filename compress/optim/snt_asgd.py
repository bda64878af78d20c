"""Sparse NT-ASGD: SGD that switches to iterate averaging, with an average per weight that restarts with it.

Averaged SGD (Polyak & Juditsky) returns the mean of the iterates instead of the last one; NT-ASGD (Merity et al.,
AWD-LSTM) starts averaging only once validation stops improving (see :mod:`compress.optim.nt_switch`). In a
sparse network the topology changes while averaging: a weight that is pruned must leave the average, and one that
grows back must start a fresh average from its own first value. Selfish-RNN's ``Sparse_ASGD`` therefore keeps a
step counter *per weight*. Here those counters are optimizer state shaped like the weight, so the mask store resets
them exactly where it resets momentum: :meth:`compress.sparsity.MaskStore.set_mask` zeroes them at pruned and regrown
positions and :meth:`~compress.sparsity.masks.MaskStore.after_step` at pruned ones. The optimizer itself knows no mask.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

import torch
from torch.optim import Optimizer


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

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        weight_decay: L2 penalty (Selfish-RNN: 1.2e-6).
        t0: averaging steps to wait before the running mean starts (0 in the recipes).
        lambd: ASGD's decay term.
        alpha: ASGD's power for ``eta``.
        averaging: start in phase 2.
    """

    def __init__(self, params: Iterable, lr: float, weight_decay: float = 0.0, t0: float = 0.0,
                 lambd: float = 0.0, alpha: float = 0.75, averaging: bool = False):
        for key, value in (("lr", lr), ("weight_decay", weight_decay), ("t0", t0), ("lambd", lambd)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{key} must be a non-negative number, got {value!r}")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, t0=t0, lambd=lambd, alpha=alpha,
                                      averaging=bool(averaging)))

    @property
    def averaging(self) -> bool:
        """True once :meth:`start_averaging` was called (saved with the optimizer's state)."""
        return all(g["averaging"] for g in self.param_groups)

    def start_averaging(self) -> None:
        """Switch every group to averaging from the next step on; each weight's average starts afresh."""
        for group in self.param_groups:
            group["averaging"] = True

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
            if group["averaging"]:
                for p in params:
                    self._averaging_step(p, group)
            else:
                _sgd_step(params, [p.grad for p in params], group["lr"], group["weight_decay"])
        return loss

    def _averaging_step(self, p: torch.Tensor, group: Dict[str, Any]) -> None:
        state = self.state[p]
        if "ax" not in state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["eta"] = torch.tensor(group["lr"], dtype=torch.float32)
            state["ax"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["count"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
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
        state["step"] += 1
        step = float(state["step"])
        state["eta"].fill_(group["lr"] / ((1 + group["lambd"] * group["lr"] * step) ** group["alpha"]))


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
