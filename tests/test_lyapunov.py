"""The Lyapunov spectrum (Benettin/QR, Hyperpruning's conventions) and the LS distance."""
import pytest
import torch

from compress import ArgumentError, ls_distance, lyapunov_spectrum
from compress.analysis import recurrent_step


def matrix_with_eigenvalues(values, seed):
    """V diag(values) V^-1 for a random, well-conditioned V: a non-normal matrix with known eigenvalues."""
    g = torch.Generator().manual_seed(seed)
    v = torch.eye(len(values), dtype=torch.float64) + 0.3 * torch.randn(len(values), len(values), generator=g,
                                                                       dtype=torch.float64)
    return v @ torch.diag(torch.tensor(values, dtype=torch.float64)) @ torch.linalg.inv(v)


def log2_abs(values):
    return torch.tensor(sorted(values, key=abs, reverse=True), dtype=torch.float64).abs().log2()


def random_layer(cls, layers=2, seed=0, **kwargs):
    torch.manual_seed(seed)
    layer = cls(3, 5, num_layers=layers, **kwargs).double()
    with torch.no_grad():  # larger recurrent weights than the default init, so the spectrum has some spread
        for name, p in layer.named_parameters():
            if name.startswith("weight_hh"):
                p.mul_(3.0)
            if kwargs.get("nonlinearity") == "relu":
                # no unit at zero: a dead ReLU maps a direction to exactly 0, where the exponent is ill-posed
                p.abs_().add_(0.5 if name.startswith("bias") else 0.0)
    return layer


def test_linear_recurrence_gives_log2_of_its_eigenvalue_moduli():
    eigenvalues = [0.9, -0.6, 0.45, 0.2]
    a = matrix_with_eigenvalues(eigenvalues, seed=1)
    b = torch.randn(4, 2, dtype=torch.float64)

    def step(x, h):
        return a @ h + b @ x

    inputs = torch.randn(60, 3, 2, dtype=torch.float64)   # inputs do not change a linear map's Jacobian
    spectrum = lyapunov_spectrum(step, inputs, warmup=20, state=torch.randn(3, 4, dtype=torch.float64))
    assert torch.allclose(spectrum, log2_abs(eigenvalues), atol=1e-4)
    forward = lyapunov_spectrum(step, inputs, warmup=20, state=torch.zeros(3, 4, dtype=torch.float64),
                                transpose=False)
    assert torch.allclose(forward, log2_abs(eigenvalues), atol=1e-4)


def test_diagonal_recurrence_is_exact_at_every_length():
    rnn = torch.nn.RNN(1, 3, bias=False)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(torch.diag(torch.tensor([0.5, 0.25, 0.125])))
    spectrum = lyapunov_spectrum(rnn, torch.zeros(7, 2, 1), warmup=3)
    assert spectrum.tolist() == [-1.0, -2.0, -3.0]


def test_stacked_tanh_rnn_at_its_fixed_point_has_the_eigenvalues_of_both_recurrent_matrices():
    # At h = 0 with zero inputs and biases, J = [[W1, 0], [W_ih2 W1, W2]]: block triangular, so its eigenvalues
    # are those of W1 and of W2. J^T leaves layer 1's coordinates invariant, so from the identity Hyperpruning's
    # recursion yields layer 1's exponents first and then layer 2's; J Q mixes the layers and sorts them all.
    first, second = [0.8, -0.5, 0.3], [0.65, 0.4, -0.1]
    rnn = torch.nn.RNN(2, 3, num_layers=2, bias=False).double()
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(matrix_with_eigenvalues(first, seed=2))
        rnn.weight_hh_l1.copy_(matrix_with_eigenvalues(second, seed=3))
    inputs = torch.zeros(100, 2, 2, dtype=torch.float64)
    spectrum = lyapunov_spectrum(rnn, inputs, warmup=30)
    assert torch.allclose(spectrum, torch.cat([log2_abs(first), log2_abs(second)]), atol=0.01)
    forward = lyapunov_spectrum(rnn, inputs, warmup=30, transpose=False)
    assert torch.allclose(forward, log2_abs(first + second), atol=0.01)


@pytest.mark.parametrize("cls, kwargs", [(torch.nn.LSTM, {}), (torch.nn.GRU, {}), (torch.nn.RNN, {}),
                                         (torch.nn.RNN, {"nonlinearity": "relu"}), (torch.nn.LSTM, {"bias": False})])
@pytest.mark.parametrize("transpose", [True, False])
def test_analytic_jacobians_give_the_autograd_spectrum(cls, kwargs, transpose):
    layer = random_layer(cls, layers=3, **kwargs)
    inputs = torch.randn(12, 4, 3, dtype=torch.float64)
    state = torch.randn(3, 4, 5, dtype=torch.float64)
    state = (state, torch.randn(3, 4, 5, dtype=torch.float64)) if cls is torch.nn.LSTM else state
    if kwargs.get("nonlinearity") == "relu":
        state = state.abs()   # a negative start would leave units dead at the first step
    fast = lyapunov_spectrum(layer, inputs, warmup=4, state=state, transpose=transpose)
    slow = lyapunov_spectrum(layer, inputs, warmup=4, state=state, transpose=transpose, jacobian="autograd")
    assert fast.shape == (15,)
    # equal to rounding, which the unorthonormalised warm-up product amplifies by its condition number
    assert torch.allclose(fast, slow, atol=1e-7, rtol=0)


@pytest.mark.parametrize("cls", [torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN])
def test_the_step_of_a_layer_computes_what_the_layer_computes(cls):
    layer = random_layer(cls, layers=2)
    step = recurrent_step(layer)
    x = torch.randn(6, 1, 3, dtype=torch.float64)
    h = torch.randn(2, 1, 5, dtype=torch.float64)
    c = torch.randn(2, 1, 5, dtype=torch.float64)
    state = (h.reshape(-1), c.reshape(-1)) if cls is torch.nn.LSTM else h.reshape(-1)
    _, expected = layer(x, (h, c) if cls is torch.nn.LSTM else h)
    for t in range(6):
        state = step(x[t, 0], state)
    got = state if cls is not torch.nn.LSTM else state
    flat = (lambda s: s.reshape(-1)) if cls is not torch.nn.LSTM else (lambda s: torch.cat([s[0].reshape(-1),
                                                                                           s[1].reshape(-1)]))
    wanted = expected.reshape(-1) if cls is not torch.nn.LSTM else torch.cat([e.reshape(-1) for e in expected])
    assert torch.allclose(flat(got), wanted, atol=1e-12)


def test_a_user_step_function_with_a_carried_state_matches_the_built_in_lstm():
    lstm = random_layer(torch.nn.LSTM, layers=2)
    inputs = torch.randn(10, 3, 3, dtype=torch.float64)
    zeros = torch.zeros(3, 10, dtype=torch.float64)
    from_step = lyapunov_spectrum(recurrent_step(lstm), inputs, warmup=3, state=(zeros, zeros))
    assert torch.allclose(from_step, lyapunov_spectrum(lstm, inputs, warmup=3), atol=1e-9, rtol=0)


def test_k_leading_exponents_are_the_first_k_of_the_full_spectrum():
    lstm = random_layer(torch.nn.LSTM, layers=2)
    inputs = torch.randn(15, 2, 3, dtype=torch.float64)
    full = lyapunov_spectrum(lstm, inputs)
    leading = lyapunov_spectrum(lstm, inputs, k=3)
    assert torch.allclose(leading, full[:3], atol=1e-10, rtol=0)


def test_cholesky_qr_gives_the_householder_spectrum():
    gru = random_layer(torch.nn.GRU, layers=2)
    inputs = torch.randn(15, 3, 3, dtype=torch.float64)
    assert torch.allclose(lyapunov_spectrum(gru, inputs, qr="cholesky"), lyapunov_spectrum(gru, inputs,
                                                                                           qr="householder"),
                          atol=1e-9, rtol=0)


def test_a_direction_mapped_to_zero_gives_a_finite_exponent_with_either_qr():
    rnn = torch.nn.RNN(2, 3, bias=False).double()
    with torch.no_grad():
        rnn.weight_hh_l0[1].zero_()   # unit 1 forgets its past at once: J has a zero row
    inputs = torch.randn(12, 2, 2, dtype=torch.float64)
    householder = lyapunov_spectrum(rnn, inputs, qr="householder")
    cholesky = lyapunov_spectrum(rnn, inputs, qr="cholesky")
    assert torch.isfinite(householder).all() and householder[-1] < -40
    assert torch.allclose(cholesky[:2], householder[:2], atol=1e-9) and cholesky[-1] < -40


def test_the_spectrum_of_a_batch_is_the_mean_of_its_samples_spectra():
    lstm = random_layer(torch.nn.LSTM, layers=1)
    inputs = torch.randn(12, 2, 3, dtype=torch.float64)
    each = [lyapunov_spectrum(lstm, inputs[:, i:i + 1]) for i in range(2)]
    assert torch.allclose(lyapunov_spectrum(lstm, inputs), (each[0] + each[1]) / 2, atol=1e-12)


def test_a_float32_layer_is_computed_in_float64_by_default():
    lstm = torch.nn.LSTM(3, 4)
    spectrum = lyapunov_spectrum(lstm, torch.randn(5, 2, 3), warmup=2)
    assert spectrum.dtype == torch.float64
    assert lyapunov_spectrum(lstm, torch.randn(5, 2, 3), warmup=2, dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("call, key", [
    (lambda: lyapunov_spectrum(torch.nn.LSTM(3, 4, bidirectional=True), torch.randn(12, 1, 3)), "rnn"),
    (lambda: lyapunov_spectrum(torch.nn.LSTM(3, 4, proj_size=2), torch.randn(12, 1, 3)), "rnn"),
    (lambda: lyapunov_spectrum(torch.nn.Linear(3, 4), torch.randn(12, 1, 3)), "rnn"),
    (lambda: lyapunov_spectrum(torch.nn.LSTM(3, 4), torch.randn(12, 1, 2)), "inputs"),
    (lambda: lyapunov_spectrum(torch.nn.LSTM(3, 4), torch.randn(12, 3)), "inputs"),
    (lambda: lyapunov_spectrum(torch.nn.LSTM(3, 4), torch.randn(12, 1, 3), warmup=13), "warmup"),
    (lambda: lyapunov_spectrum(torch.nn.LSTM(3, 4), torch.randn(12, 1, 3), k=5), "k"),
    (lambda: lyapunov_spectrum(torch.nn.LSTM(3, 4), torch.randn(12, 1, 3), qr="svd"), "qr"),
    (lambda: lyapunov_spectrum(torch.nn.GRU(3, 4), torch.randn(12, 2, 3), state=torch.zeros(1, 1, 4)), "state[0]"),
    (lambda: lyapunov_spectrum(lambda x, h: h, torch.randn(12, 2, 3)), "state"),
    (lambda: lyapunov_spectrum(lambda x, h: h, torch.randn(12, 2, 3), state=torch.zeros(2, 4),
                               jacobian="analytic"), "jacobian"),
])
def test_bad_arguments_name_the_argument(call, key):
    with pytest.raises(ArgumentError) as info:
        call()
    assert info.value.key == key


def test_ls_distance_is_euclidean_and_refuses_spectra_of_different_lengths():
    assert ls_distance(torch.tensor([0.0, -3.0]), [4.0, 0.0]) == 5.0
    with pytest.raises(ArgumentError, match="different lengths"):
        ls_distance([1.0, 2.0], [1.0])
