"""The Lyapunov spectrum of a recurrent network, by Benettin's QR method, as Hyperpruning computes it.

A recurrent network driven by an input sequence is a time-varying map of its state, ``h_t = F(x_t, h_{t-1})``.
Its Lyapunov exponents are the average exponential rates at which it stretches or shrinks small perturbations of
the state, along an orthonormal set of directions kept aligned with the most expanding ones. Benettin's recursion
computes them from the Jacobians ``J_t = dh_t / dh_{t-1}``: carry an orthonormal basis ``Q``, multiply it by the
Jacobian of every step, re-orthonormalise it with a QR decomposition and add up the logarithms of the diagonal
of ``R``. Zheng & Shlizerman's Hyperpruning ranks pruned networks by how close this spectrum is to the dense
network's (:func:`ls_distance`).

Conventions (Hyperpruning's, so that spectra are comparable with its released ones):

* the state of a stacked layer is all layers' hidden states, ``[h^1; ...; h^L]``; an LSTM's cell state is carried
  forward but held fixed inside the Jacobian;
* the basis starts as the identity; the first ``warmup`` inputs only align it (``Q <- J^T Q`` without
  re-orthonormalising, then one QR), and the main loop then runs over *all* inputs, continuing from the state the
  warm-up reached (so the first ``warmup`` inputs are seen twice);
* each step multiplies by the transposed Jacobian (``Z = J_t^T Q``; ``transpose=False`` gives the textbook
  ``Z = J_t Q``) and takes one QR; exponents are in bits per step (``log2``), averaged over the steps and then
  over the batch, in the order the recursion yields them (descending once it has converged).

Two ways to get the Jacobians: for ``nn.RNN``, ``nn.GRU`` and ``nn.LSTM`` layers a fast analytic path builds each
layer's block from its gates for the whole batch at once and applies the block lower-triangular ``J^T`` layer by
layer, never forming ``J``; for any other cell, a step function ``step(x_t, state) -> state`` written for one
sample is differentiated by ``torch.func`` (``vmap(jacrev(step))``), which works for the built-in layers too
(``jacobian="autograd"``) and gives the same spectrum.

The QR decomposition is Householder's (``torch.linalg.qr``) or, on CUDA by default, a Cholesky QR (CholeskyQR2,
shifted CholeskyQR3 when the Gram matrix is not numerically positive definite, Householder for a step where even
that fails) built from matrix products, triangular solves and a Cholesky factorisation, which a GPU runs far
faster than a Householder QR of a 3000 x 3000 matrix. Both give the unique QR with a positive diagonal, to
rounding. Spectra are computed in float64 by default: exponents that differ by tens of bits per step are
resolved that way, and the warm-up product of ten Jacobians does not underflow.

Example:
    >>> import torch
    >>> rnn = torch.nn.RNN(1, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = rnn.weight_hh_l0.copy_(torch.tensor([[0.5, 0.0], [0.0, 0.25]]))
    >>> spectrum = lyapunov_spectrum(rnn, torch.zeros(20, 1, 1))   # at the fixed point h = 0, J = W_hh
    >>> [round(v, 6) for v in spectrum.tolist()]                     # log2 of the eigenvalues
    [-1.0, -2.0]
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from compress.errors import ArgumentError
from compress.options import boolean, choice, integer

__all__ = ["lyapunov_spectrum", "ls_distance", "recurrent_step"]

#: ``step(x_t, state) -> state`` for one sample: ``state`` is a tensor, or a tuple whose first tensor is the state
#: the spectrum is taken over and whose other tensors are carried forward but held fixed in the Jacobian.
StepFunction = Callable[..., Union[torch.Tensor, Tuple[torch.Tensor, ...]]]
State = Tuple[torch.Tensor, ...]
#: ``advance(x_t, state) -> (next state, apply)``, where ``apply(Q)`` is ``J_t^T Q`` (or ``J_t Q``) for ``Q`` of
#: shape ``(batch, dim, k)``.
Advance = Callable[[torch.Tensor, State], Tuple[State, Callable[[torch.Tensor], torch.Tensor]]]

_LAYERS = (nn.LSTM, nn.GRU, nn.RNN)
_JACOBIANS = ("auto", "analytic", "autograd")
_QRS = ("auto", "householder", "cholesky")


def lyapunov_spectrum(rnn: Union[nn.Module, StepFunction], inputs: torch.Tensor, *, warmup: int = 10,
                      k: Optional[int] = None, state: Union[None, torch.Tensor, Sequence[torch.Tensor]] = None,
                      jacobian: str = "auto", qr: str = "auto", dtype: Optional[torch.dtype] = None,
                      transpose: bool = True) -> torch.Tensor:
    """The Lyapunov spectrum of a recurrent network driven by ``inputs``, in bits per step, averaged over the batch.

    Args:
        rnn: an ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM`` of any depth (unidirectional, without ``proj_size``; its
            dropout is not applied), or a step function ``step(x_t, state) -> state`` for one sample (``x_t`` of
            shape ``(features,)``; ``state`` a tensor of shape ``(dim,)``, or a tuple whose first tensor is that
            state and whose others are carried but held fixed in the Jacobian, as an LSTM's cell).
        inputs: ``(time, batch, features)``; for a word LM, the embedded tokens.
        warmup: leading inputs used to align the basis before the main loop (Hyperpruning: 10); at most the
            sequence length.
        k: number of leading exponents to track (default: all, the state's dimension).
        state: initial state. For a layer: ``h0`` of shape ``(layers, batch, hidden)``, or ``(h0, c0)`` for an LSTM;
            default zeros. For a step function (required): a tensor ``(batch, dim)`` or a tuple of batched tensors.
        jacobian: ``"analytic"`` (built-in layers only), ``"autograd"`` (``torch.func``), or ``"auto"``: analytic
            for the built-in layers.
        qr: ``"householder"``, ``"cholesky"``, or ``"auto"``: Cholesky QR on CUDA, Householder elsewhere.
        dtype: working precision; default float64 for the built-in layers, and the state's dtype for a step
            function (whose own weights set its precision).
        transpose: Hyperpruning's ``Z = J^T Q`` (default) or the textbook ``Z = J Q``.

    Returns:
        A tensor of ``k`` exponents (``log2`` per step) on the inputs' device. A direction the network maps
        exactly to zero counts as ``log2`` of the smallest normal number of ``dtype``.

    Raises:
        ArgumentError: a module that is not one of the supported layers, inputs or a state of the wrong shape,
            ``warmup`` or ``k`` out of range, an unknown ``jacobian`` or ``qr``, or a step function without a state.

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> lstm = torch.nn.LSTM(3, 4, num_layers=2)
        >>> spectrum = lyapunov_spectrum(lstm, torch.randn(12, 2, 3), warmup=4)
        >>> spectrum.shape, spectrum.dtype, bool(torch.isfinite(spectrum).all())
        (torch.Size([8]), torch.float64, True)
    """
    jacobian = choice("jacobian", jacobian, _JACOBIANS)
    qr = choice("qr", qr, _QRS)
    transpose = boolean("transpose", transpose)
    if not torch.is_tensor(inputs) or inputs.dim() != 3 or not inputs.is_floating_point():
        raise ArgumentError("inputs", f"expected a floating-point tensor (time, batch, features), got "
                                      f"{_describe(inputs)}")
    steps, batch = inputs.shape[0], inputs.shape[1]
    if steps < 1 or batch < 1:
        raise ArgumentError("inputs", f"expected at least one step and one sample, got shape {tuple(inputs.shape)}")
    warmup = integer("warmup", warmup, minimum=0, maximum=steps)
    if isinstance(rnn, _LAYERS):
        dtype = dtype or torch.float64
        advance, start, dim = _layer_dynamics(rnn, inputs, state, dtype, jacobian, transpose)
    elif not callable(rnn) or (isinstance(rnn, nn.Module) and state is None):
        raise ArgumentError("rnn", f"expected nn.RNN, nn.GRU, nn.LSTM, or a step function with its state; got "
                                   f"{type(rnn).__name__}" + (" without a state" if callable(rnn) else ""))
    else:
        if jacobian == "analytic":
            raise ArgumentError("jacobian", "the analytic Jacobian exists only for nn.RNN, nn.GRU and nn.LSTM")
        start = _step_state(state, batch)
        dtype = dtype or start[0].dtype
        start = tuple(s.to(device=inputs.device, dtype=dtype) for s in start)
        dim = start[0].shape[1]
        advance = _autograd_dynamics(rnn, transpose)
    k = dim if k is None else integer("k", k, minimum=1, maximum=dim)
    use_cholesky = qr == "cholesky" or (qr == "auto" and inputs.device.type == "cuda")
    with torch.no_grad():
        return _benettin(advance, inputs.to(dtype), start, k, warmup, use_cholesky)


def ls_distance(a: Union[torch.Tensor, Sequence[float]], b: Union[torch.Tensor, Sequence[float]]) -> float:
    """Hyperpruning's distance between two Lyapunov spectra: the Euclidean norm of their index-wise difference.

    Exponents are compared in the order the recursion yields them (no sorting), as Hyperpruning does.

    Raises:
        ArgumentError: the spectra differ in length, are not 1-D, or hold a NaN.

    Example:
        >>> ls_distance([-1.0, -2.0, -3.0], [-1.0, -2.0, -1.0])
        2.0
    """
    x = torch.as_tensor(a.detach().cpu() if torch.is_tensor(a) else a, dtype=torch.float64)
    y = torch.as_tensor(b.detach().cpu() if torch.is_tensor(b) else b, dtype=torch.float64)
    for key, value in (("a", x), ("b", y)):
        if value.dim() != 1:
            raise ArgumentError(key, f"expected a 1-D spectrum, got shape {tuple(value.shape)}")
        if torch.isnan(value).any():
            raise ArgumentError(key, "the spectrum holds NaN")
    if x.numel() != y.numel():
        raise ArgumentError("b", f"spectra of different lengths: {x.numel()} and {y.numel()} exponents")
    return float(torch.linalg.vector_norm(x - y))


def recurrent_step(rnn: nn.Module, dtype: Optional[torch.dtype] = None) -> StepFunction:
    """The one-sample step function of a built-in layer, written in plain tensor operations.

    ``step(x_t, (h, c))`` for an LSTM, ``step(x_t, h)`` for a GRU or RNN, with ``h`` (and ``c``) the layers' states
    stacked into one vector of ``layers * hidden`` entries. It is what the autograd path differentiates, and a
    template for writing the step of one's own cell.

    Example:
        >>> import torch
        >>> gru = torch.nn.GRU(3, 4, num_layers=2)
        >>> step = recurrent_step(gru)
        >>> x, h = torch.randn(3), torch.randn(8)
        >>> _, expected = gru(x.view(1, 1, 3), h.view(2, 1, 4))
        >>> bool(torch.allclose(step(x, h), expected.reshape(-1), atol=1e-6))
        True
    """
    _check_layer(rnn)
    weights = _layer_weights(rnn, dtype or next(rnn.parameters()).dtype)
    hidden, layers = rnn.hidden_size, rnn.num_layers
    kind = _kind(rnn)

    def step(x: torch.Tensor, state):
        h_all = state[0] if kind == "lstm" else state
        hs = h_all.reshape(layers, hidden)
        cs = state[1].reshape(layers, hidden) if kind == "lstm" else None
        new_h, new_c = [], []
        inp = x
        for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(weights):
            gi = inp @ w_ih.T + (b_ih if b_ih is not None else 0)
            gh = hs[layer] @ w_hh.T + (b_hh if b_hh is not None else 0)
            if kind == "lstm":
                i, f, g, o = (gi + gh).chunk(4, dim=-1)
                c = torch.sigmoid(f) * cs[layer] + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                new_c.append(c)
            elif kind == "gru":
                ir, iz, in_ = gi.chunk(3, dim=-1)
                hr, hz, hn = gh.chunk(3, dim=-1)
                r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                n = torch.tanh(in_ + r * hn)
                h = (1 - z) * n + z * hs[layer]
            else:
                pre = gi + gh
                h = torch.tanh(pre) if kind == "tanh" else torch.relu(pre)
            new_h.append(h)
            inp = h
        h_out = torch.cat(new_h, dim=-1)
        return (h_out, torch.cat(new_c, dim=-1)) if kind == "lstm" else h_out

    return step


# --- the recursion ---------------------------------------------------------------------------------------------


def _benettin(advance: Advance, inputs: torch.Tensor, state: State, k: int, warmup: int,
              use_cholesky: bool) -> torch.Tensor:
    steps, batch = inputs.shape[0], inputs.shape[1]
    dim = state[0].shape[1]
    basis = torch.eye(dim, k, dtype=inputs.dtype, device=inputs.device).expand(batch, dim, k).contiguous()
    for t in range(warmup):
        state, apply = advance(inputs[t], state)
        basis = apply(basis)
    if warmup:
        # The warm-up product is as ill-conditioned as ten steps make it: only Householder orthonormalises it.
        basis = torch.linalg.qr(basis).Q
    logs = torch.zeros(batch, k, dtype=inputs.dtype, device=inputs.device)
    tiny = torch.finfo(inputs.dtype).tiny
    for t in range(steps):
        state, apply = advance(inputs[t], state)
        basis, r = _orthonormalize(apply(basis), use_cholesky)
        logs += torch.log2(r.clamp_min(tiny))
    return (logs / steps).mean(dim=0)


def _orthonormalize(z: torch.Tensor, use_cholesky: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(Q, |diag R|)`` of the thin QR decomposition of every matrix of the batch ``z``."""
    if use_cholesky:
        done = _cholesky_qr(z)
        if done is not None:
            return done
    q, r = torch.linalg.qr(z)
    return q, r.diagonal(dim1=-2, dim2=-1).abs()


def _cholesky_qr(z: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """CholeskyQR2, or shifted CholeskyQR3 (Fukaya et al., SISC 2020) when ``Z^T Z`` is not numerically positive
    definite; ``None`` where even that fails (a numerically rank-deficient ``Z``): the caller falls back to
    Householder. ``diag R`` is the product of the passes' diagonals, since ``R = R_3 R_2 R_1``."""
    q, r, failed = _cholesky_pass(z, shift=False)
    passes = 1
    if bool(failed):
        q, r, _ = _cholesky_pass(z, shift=True)
        passes = 2
    fails = []
    for _ in range(passes):
        q, r_next, failed = _cholesky_pass(q, shift=False)
        r = r * r_next
        fails.append(failed)
    if bool(torch.stack(fails).any()):
        return None
    return q, r


def _cholesky_pass(z: torch.Tensor, shift: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gram = z.mT @ z
    if shift:
        rows, cols = z.shape[-2], z.shape[-1]
        unit = torch.finfo(z.dtype).eps / 2
        norm2 = gram.diagonal(dim1=-2, dim2=-1).sum(-1)  # ||Z||_F^2 >= ||Z||_2^2
        s = 11 * (rows * cols + cols * (cols + 1)) * unit * norm2
        gram = gram + s[..., None, None] * torch.eye(cols, dtype=z.dtype, device=z.device)
    if z.is_cuda and z.shape[0] > 1 and z.shape[-1] > 64:
        # cuSOLVER's batched Cholesky is meant for small matrices; large ones factor faster one at a time.
        parts = [torch.linalg.cholesky_ex(g) for g in gram]
        lower, info = torch.stack([p.L for p in parts]), torch.stack([p.info for p in parts])
    else:
        lower, info = torch.linalg.cholesky_ex(gram)
    q = torch.linalg.solve_triangular(lower.mT, z, upper=True, left=False)  # Z R^{-1}, R = L^T
    return q, lower.diagonal(dim1=-2, dim2=-1).abs(), (info != 0).any()


# --- built-in layers -------------------------------------------------------------------------------------------


def _kind(rnn: nn.Module) -> str:
    if isinstance(rnn, nn.LSTM):
        return "lstm"
    if isinstance(rnn, nn.GRU):
        return "gru"
    return "tanh" if rnn.nonlinearity == "tanh" else "relu"


def _check_layer(rnn: nn.Module) -> None:
    if not isinstance(rnn, _LAYERS):
        raise ArgumentError("rnn", f"expected nn.RNN, nn.GRU or nn.LSTM, got {type(rnn).__name__}")
    if rnn.bidirectional:
        raise ArgumentError("rnn", "a bidirectional layer is not a recurrence in time; pass one direction's layer")
    if getattr(rnn, "proj_size", 0):
        raise ArgumentError("rnn", "LSTM layers with proj_size are not supported")


def _layer_weights(rnn: nn.Module, dtype: torch.dtype) -> List[Tuple[torch.Tensor, ...]]:
    """``(W_ih, W_hh, b_ih, b_hh)`` of every layer in ``dtype`` (biases ``None`` without ``bias``)."""
    def get(name: str, layer: int) -> Optional[torch.Tensor]:
        p = getattr(rnn, f"{name}_l{layer}", None)
        return None if p is None else p.detach().to(dtype)

    return [tuple(get(name, layer) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            for layer in range(rnn.num_layers)]


def _layer_dynamics(rnn: nn.Module, inputs: torch.Tensor, state, dtype: torch.dtype, jacobian: str,
                    transpose: bool) -> Tuple[Advance, State, int]:
    _check_layer(rnn)
    kind, layers, hidden = _kind(rnn), rnn.num_layers, rnn.hidden_size
    batch = inputs.shape[1]
    if inputs.shape[2] != rnn.input_size:
        raise ArgumentError("inputs", f"expected {rnn.input_size} features per step (the layer's input_size), got "
                                      f"{inputs.shape[2]}")
    device = inputs.device
    expected = (layers, batch, hidden)
    if state is None:
        parts = [torch.zeros(expected, dtype=dtype, device=device) for _ in range(2 if kind == "lstm" else 1)]
    else:
        parts = list(state) if isinstance(state, (tuple, list)) else [state]
        if len(parts) != (2 if kind == "lstm" else 1):
            raise ArgumentError("state", "expected (h0, c0) for an LSTM" if kind == "lstm" else
                                         "expected h0 (a tensor) for a GRU or RNN")
        for i, part in enumerate(parts):
            if not torch.is_tensor(part) or tuple(part.shape) != expected:
                raise ArgumentError(("state", i), f"expected shape {expected}, got {_describe(part)}")
        parts = [p.detach().to(device=device, dtype=dtype) for p in parts]
    # one vector per sample: layers stacked along the features
    start = tuple(p.transpose(0, 1).reshape(batch, layers * hidden) for p in parts)
    if jacobian == "autograd":
        return _autograd_dynamics(recurrent_step(rnn, dtype), transpose), start, layers * hidden
    weights = _layer_weights(rnn, dtype)
    return _analytic_dynamics(kind, weights, layers, hidden, transpose), start, layers * hidden


def _analytic_dynamics(kind: str, weights, layers: int, hidden: int, transpose: bool) -> Advance:
    """Each layer's Jacobian blocks from its gates, for the whole batch at once.

    With the cell state fixed, layer ``l``'s new hidden state depends on its previous one through the block
    ``D_l = sum_g diag(a_g) U_g`` (plus ``diag(z)`` for a GRU) and on the layer below's new state through
    ``X_l = sum_g diag(b_g) W_g``; so ``J`` is block lower-triangular with ``J_lm = X_l ... X_{m+1} D_m``, and
    ``J^T Q`` is ``D_m^T a_m`` with ``a_m = Q_m + X_{m+1}^T a_{m+1}``: one product per block, ``J`` never formed.
    """

    def advance(x: torch.Tensor, state: State):
        h_all = state[0].view(state[0].shape[0], layers, hidden)
        c_all = state[1].view_as(h_all) if kind == "lstm" else None
        blocks, inputs_blocks, new_h, new_c = [], [], [], []
        inp = x
        for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(weights):
            h = h_all[:, layer]
            gi = inp @ w_ih.T
            gh = h @ w_hh.T
            if b_ih is not None:
                gi = gi + b_ih
            if b_hh is not None:
                gh = gh + b_hh
            if kind == "lstm":
                h_new, c_new, coef_u, coef_w, diag = _lstm_gates(gi + gh, c_all[:, layer])
                new_c.append(c_new)
            elif kind == "gru":
                h_new, coef_u, coef_w, diag = _gru_gates(gi, gh, h)
            else:
                pre = gi + gh
                h_new = torch.tanh(pre) if kind == "tanh" else torch.relu(pre)
                slope = 1 - h_new * h_new if kind == "tanh" else (pre > 0).to(pre.dtype)
                coef_u = coef_w = slope.unsqueeze(1)
                diag = None
            blocks.append(_gate_sum(coef_u, w_hh, diag))
            inputs_blocks.append(_gate_sum(coef_w, w_ih, None) if layer > 0 else None)
            new_h.append(h_new)
            inp = h_new
        next_state = (torch.cat(new_h, dim=1),) + ((torch.cat(new_c, dim=1),) if kind == "lstm" else ())
        return next_state, _block_product(blocks, inputs_blocks, hidden, transpose)

    return advance


def _lstm_gates(pre: torch.Tensor, c: torch.Tensor):
    i_pre, f_pre, g_pre, o_pre = pre.chunk(4, dim=-1)
    i, f, o, g = torch.sigmoid(i_pre), torch.sigmoid(f_pre), torch.sigmoid(o_pre), torch.tanh(g_pre)
    c_new = f * c + i * g
    tanh_c = torch.tanh(c_new)
    h_new = o * tanh_c
    through_c = o * (1 - tanh_c * tanh_c)  # dh/dc_new
    coef = torch.stack([through_c * i * (1 - i) * g,         # input gate
                        through_c * f * (1 - f) * c,         # forget gate (c_{t-1} held fixed)
                        through_c * i * (1 - g * g),         # cell candidate
                        o * (1 - o) * tanh_c], dim=1)        # output gate
    return h_new, c_new, coef, coef, None


def _gru_gates(gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor):
    ir, iz, in_ = gi.chunk(3, dim=-1)
    hr, hz, hn = gh.chunk(3, dim=-1)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    n = torch.tanh(in_ + r * hn)
    h_new = (1 - z) * n + z * h
    through_n = (1 - z) * (1 - n * n)  # dh'/d(pre-activation of n)
    reset = through_n * hn * r * (1 - r)
    update = (h - n) * z * (1 - z)
    coef_u = torch.stack([reset, update, through_n * r], dim=1)   # U_n enters n scaled by r
    coef_w = torch.stack([reset, update, through_n], dim=1)
    return h_new, coef_u, coef_w, z


def _gate_sum(coef: torch.Tensor, weight: torch.Tensor, diag: Optional[torch.Tensor]) -> torch.Tensor:
    """``sum_g diag(coef[:, g]) W_g (+ diag(diag))`` for every sample: ``(batch, hidden, inputs)``."""
    gates = coef.shape[1]
    hidden = coef.shape[2]
    out = coef[:, 0, :, None] * weight[None, :hidden]
    for g in range(1, gates):
        out.addcmul_(coef[:, g, :, None], weight[None, g * hidden:(g + 1) * hidden])
    if diag is not None:
        out.diagonal(dim1=-2, dim2=-1).add_(diag)
    return out


def _block_product(blocks: List[torch.Tensor], inputs_blocks: List[Optional[torch.Tensor]], hidden: int,
                   transpose: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    layers = len(blocks)

    def apply_transposed(q: torch.Tensor) -> torch.Tensor:
        rows = q.split(hidden, dim=1)
        out: List[Optional[torch.Tensor]] = [None] * layers
        adjoint = rows[-1]
        out[-1] = blocks[-1].mT @ adjoint
        for layer in range(layers - 2, -1, -1):
            adjoint = rows[layer] + inputs_blocks[layer + 1].mT @ adjoint
            out[layer] = blocks[layer].mT @ adjoint
        return torch.cat(out, dim=1)

    def apply_forward(q: torch.Tensor) -> torch.Tensor:
        rows = q.split(hidden, dim=1)
        out = [blocks[0] @ rows[0]]
        for layer in range(1, layers):
            out.append(blocks[layer] @ rows[layer] + inputs_blocks[layer] @ out[-1])
        return torch.cat(out, dim=1)

    return apply_transposed if transpose else apply_forward


# --- any cell, through torch.func ------------------------------------------------------------------------------


def _step_state(state, batch: int) -> State:
    if state is None:
        raise ArgumentError("state", "a step function needs the initial state: a tensor (batch, dim) or a tuple "
                                     "of batched tensors whose first is the state the spectrum is taken over")
    parts = tuple(state) if isinstance(state, (tuple, list)) else (state,)
    for i, part in enumerate(parts):
        if not torch.is_tensor(part) or part.dim() < 1 or part.shape[0] != batch:
            raise ArgumentError(("state", i), f"expected a tensor with the batch ({batch}) first, got "
                                              f"{_describe(part)}")
    if parts[0].dim() != 2:
        raise ArgumentError(("state", 0), f"expected the state as (batch, dim), got shape {tuple(parts[0].shape)}")
    return tuple(p.detach() for p in parts)


def _autograd_dynamics(step: StepFunction, transpose: bool) -> Advance:
    from torch.func import jacrev, vmap

    def first_and_all(x, h, *carried):
        new = step(x, (h, *carried) if carried else h)
        parts = tuple(new) if isinstance(new, (tuple, list)) else (new,)
        if parts[0].shape != h.shape:
            raise ArgumentError("rnn", f"the step function returned a state of shape {tuple(parts[0].shape)} "
                                       f"for one of shape {tuple(h.shape)}")
        return parts[0], parts

    jacobians = vmap(jacrev(first_and_all, argnums=1, has_aux=True))

    def advance(x: torch.Tensor, state: State):
        with torch.enable_grad():
            jac, new_state = jacobians(x, *state)
        jac = jac.detach()
        new_state = tuple(s.detach() for s in new_state)
        if len(new_state) != len(state):
            raise ArgumentError("rnn", f"the step function returned {len(new_state)} state tensors for "
                                       f"{len(state)}")
        return new_state, (lambda q: jac.mT @ q) if transpose else (lambda q: jac @ q)

    return advance


def _describe(value) -> str:
    if torch.is_tensor(value):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return repr(value) if not isinstance(value, (list, tuple)) else f"a {type(value).__name__} of {len(value)}"

