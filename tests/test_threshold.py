"""compress.kernels.magnitude: exact k-th smallest magnitude, Distiller level thresholds and masks (CPU)."""
import logging
import math

import pytest
import torch

from compress.kernels import magnitude as th
from compress.kernels.magnitude import kth_smallest_magnitude, magnitude_threshold
from compress.pruning.criteria.magnitude import global_level_masks, level_mask

LOGGER = "compress.kernels.magnitude"
METHODS = ["auto", "sample", "radix", "sort"]


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # Many short parallel ops stall on a busy 2-core CI box; one intra-op thread keeps this module fast.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def reference(tensors, k):
    return torch.cat([t.abs().flatten() for t in tensors]).float().kthvalue(k).values


def same(a, b):
    """Bit-for-bit value equality of two 0-d float tensors, NaN == NaN."""
    a, b = float(a), float(b)
    return (math.isnan(a) and math.isnan(b)) or a == b


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def ranks(n):
    return sorted({k for k in (1, 2, n // 3, int(0.8 * n), n - 1, n) if 1 <= k <= n})


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [1, 2, 7, 1000, 50_000])
def test_matches_kthvalue_small(method, n):
    x = torch.randn(n, generator=gen(n))
    for k in ranks(n):
        out = kth_smallest_magnitude([x], k, method=method)
        assert out.dtype == torch.float32 and out.dim() == 0 and out.device == x.device
        assert same(out, reference([x], k)), (method, n, k)


def test_matches_kthvalue_above_small_cutoff_without_fallback(caplog):
    n = 3_000_000
    x = torch.randn(n, generator=gen(1)) * 0.05
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    for k in (1, n // 2, int(0.8 * n), n):
        assert same(kth_smallest_magnitude([x], k), reference([x], k)), k
    assert "radix" not in caplog.text  # the sampled bracket held every time


@pytest.mark.parametrize("method", ["sample", "radix"])
def test_many_tensors_mixed_dtypes_and_chunking(method):
    g = gen(2)
    tensors = [
        torch.randn(600, 500, generator=g),
        torch.randn(300_000, generator=g).half(),
        torch.randn(200, 500, generator=g).bfloat16(),
        torch.randn(5000, generator=g, dtype=torch.float64),
        torch.empty(0, 3),
        torch.tensor(0.25),
        torch.randn(64, 3, 3, 3, generator=g),
    ]
    n = sum(t.numel() for t in tensors)
    for k in (1, n // 3, int(0.8 * n), n):
        for chunk_size in (None, 1 << 17):
            out = kth_smallest_magnitude(tensors, k, method=method, chunk_size=chunk_size)
            assert same(out, reference(tensors, k)), (k, chunk_size)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("method", ["auto", "radix"])
def test_uniform_low_precision_dtypes(dtype, method):
    tensors = [torch.randn(500_000, generator=gen(3)).to(dtype), torch.randn(300, 30, generator=gen(4)).to(dtype)]
    n = sum(t.numel() for t in tensors)
    for k in (1, n // 2, int(0.9 * n), n):
        assert same(kth_smallest_magnitude(tensors, k, method=method), reference(tensors, k)), k


def test_non_contiguous_inputs_are_exact_and_untouched():
    g = gen(5)
    base = torch.randn(256, 64, 3, 3, generator=g)
    tensors = [
        base.to(memory_format=torch.channels_last),  # permuted dense layout: flat view
        torch.randn(300, 200, generator=g).t(),  # transposed: flat view
        torch.randn(400, 300, generator=g)[:, ::2],  # strided: copied in row slices
        torch.randn(10_000, generator=g)[::3],  # 1-D strided: reshape returns a view
    ]
    before = [t.clone() for t in tensors]
    n = sum(t.numel() for t in tensors)
    for method in ("sample", "radix", "sort"):
        for k in ranks(n):
            out = kth_smallest_magnitude(tensors, k, method=method, chunk_size=1 << 14)
            assert same(out, reference(tensors, k)), (method, k)
    for t, b in zip(tensors, before):
        assert torch.equal(t, b)


@pytest.mark.parametrize("method", METHODS)
def test_heavy_ties(method):
    n = 400_000
    zeros = torch.zeros(n)
    ones = -torch.ones(n)
    half_pruned = torch.randn(n, generator=gen(6))
    half_pruned[::2] = 0.0  # half the weights already pruned: ties at zero
    levels = torch.randint(-3, 4, (n,), generator=gen(7)).float() * 0.5  # few distinct values
    for x in (zeros, ones, half_pruned, levels):
        for k in (1, n // 2, n // 2 + 1, int(0.7 * n), n):
            assert same(kth_smallest_magnitude([x], k, method=method), reference([x], k)), k
    assert float(kth_smallest_magnitude([zeros], n, method=method)) == 0.0
    assert float(kth_smallest_magnitude([ones], 1, method=method)) == 1.0


def test_ties_overshoot_and_all_zero_masks():
    ones = torch.ones(10, 10)
    assert float(magnitude_threshold(ones, 0.5)) == 1.0
    # ties at the threshold are pruned: asking for 50% prunes everything
    assert not level_mask(ones, 0.5).any()
    assert not level_mask(torch.zeros(100), 0.3).any()


def test_nan_inf_and_negative_zero():
    x = torch.tensor([3.0, -math.inf, math.nan, -0.0, 0.0, -2.0, math.nan, 1.0, math.inf])
    for method in METHODS:
        for k in range(1, x.numel() + 1):
            assert same(kth_smallest_magnitude([x], k, method=method), reference([x], k)), (method, k)
    big = torch.randn(300_000, generator=gen(8))
    big[::1000] = math.nan
    big[1::1000] = -math.inf
    n = big.numel()
    for k in (1, n // 2, n - 601, n - 600, n - 599, n - 300, n - 299, n):
        assert same(kth_smallest_magnitude([big], k), reference([big], k)), k
    out = kth_smallest_magnitude([torch.tensor([-0.0, -0.0])], 1)
    assert float(out) == 0.0 and not math.copysign(1.0, float(out)) < 0


@pytest.mark.parametrize("scale", [4.0, 0.25])
def test_forced_bracket_miss_falls_back_exactly(caplog, monkeypatch, scale):
    # A biased sample puts the bracket entirely above (scale 4) or below (0.25) the target.
    real_sample = th._sample
    monkeypatch.setattr(th, "_sample", lambda *args: real_sample(*args) * scale)
    x = torch.randn(500_000, generator=gen(9))
    k = int(0.6 * x.numel())
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    out = kth_smallest_magnitude([x], k, method="sample")
    assert same(out, reference([x], k))
    assert "missed" in caplog.text


def test_zero_margin_is_still_exact():
    x = torch.randn(400_000, generator=gen(17))
    for seed in range(4):
        for k in (x.numel() // 2, int(0.9 * x.numel())):
            out = kth_smallest_magnitude([x], k, sample_size=100, margin_sigmas=0.0, seed=seed)
            assert same(out, reference([x], k))


def test_tiny_sample_and_candidate_overflow_fall_back(caplog, monkeypatch):
    x = torch.randn(400_000, generator=gen(10))
    k = int(0.8 * x.numel())
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    assert same(kth_smallest_magnitude([x], k, method="sample", sample_size=1), reference([x], k))
    assert "too small" in caplog.text
    monkeypatch.setattr(th, "_candidate_cap", lambda expected, n: 10)
    assert same(kth_smallest_magnitude([x], k, method="sample"), reference([x], k))
    assert "exceed the cap" in caplog.text


def test_deterministic_and_global_rng_untouched():
    x = [torch.randn(400_000, generator=gen(11)), torch.randn(1000, generator=gen(12))]
    k = int(0.77 * 401_000)
    state = torch.get_rng_state()
    a = kth_smallest_magnitude(x, k)
    b = kth_smallest_magnitude(x, k)
    c = kth_smallest_magnitude(x, k, seed=123)
    assert torch.equal(torch.get_rng_state(), state)
    assert same(a, b) and same(a, c) and same(a, reference(x, k))


def test_bad_arguments():
    x = torch.randn(10)
    for k in (0, -1, 11):
        with pytest.raises(ValueError, match="k must satisfy"):
            kth_smallest_magnitude([x], k)
    with pytest.raises(ValueError, match="at least one tensor"):
        kth_smallest_magnitude([], 1)
    with pytest.raises(ValueError, match="same device"):
        kth_smallest_magnitude([x, torch.empty(3, device="meta")], 1)
    with pytest.raises(ValueError, match="method"):
        kth_smallest_magnitude([x], 1, method="bogus")
    with pytest.raises(TypeError):
        kth_smallest_magnitude([torch.arange(5)], 1)
    with pytest.raises(TypeError):
        kth_smallest_magnitude([x], 1.5)
    for s in (-0.1, 1.0001, math.nan, "half"):
        with pytest.raises(ValueError, match="sparsity"):
            magnitude_threshold([x], s)
        with pytest.raises(ValueError, match="sparsity"):
            level_mask(x, s)
        with pytest.raises(ValueError, match="sparsity"):
            global_level_masks([x], s)
    with pytest.raises(ValueError):
        magnitude_threshold([], 0.5)


def test_magnitude_threshold_is_distiller_level_criterion():
    x = torch.randn(37, 11, generator=gen(13))
    n = x.numel()
    for s in (0.0, 0.01, 0.3, 0.5, 0.8, 1.0):
        k = int(s * n)
        t = magnitude_threshold(x, s)
        if k == 0:
            assert t is None
        else:
            assert same(t, x.abs().flatten().kthvalue(k).values)
    assert magnitude_threshold([x], 0.001) is None  # k == 0: nothing to prune (Distiller crashes)


@pytest.mark.parametrize("n", [1000, 300_000])
def test_level_mask_sparsity_exact_for_distinct_values(n):
    x = torch.randperm(n, generator=gen(14)).float().sub_(n / 2)  # distinct magnitudes but for +-v pairs
    x = x + 0.25  # break the +-v magnitude ties
    for s in (0.0, 0.1, 0.5, 0.75, 0.999, 1.0):
        mask = level_mask(x, s)
        assert mask.dtype == torch.bool and mask.shape == x.shape
        assert int((~mask).sum()) == int(s * n), s


def test_level_mask_k_zero_all_true_and_parameter_input():
    p = torch.nn.Parameter(torch.randn(3, 4, generator=gen(15)))
    mask = level_mask(p, 0.05)  # int(0.05 * 12) == 0
    assert mask.all() and mask.shape == p.shape
    mask = level_mask(p, 0.5)
    assert int((~mask).sum()) == 6 and not mask.requires_grad


def test_global_level_masks_share_one_threshold():
    g = gen(16)
    tensors = [torch.randn(50, 40, generator=g), torch.randn(3000, generator=g).half(),
               torch.randn(7, generator=g).bfloat16(), torch.randn(20, 30, generator=g, dtype=torch.float64)]
    n = sum(t.numel() for t in tensors)
    for s in (0.0, 0.2, 0.6, 0.95):
        masks = global_level_masks(tensors, s)
        assert [m.shape for m in masks] == [t.shape for t in tensors]
        assert all(m.dtype == torch.bool for m in masks)
        k = int(s * n)
        pruned = sum(int((~m).sum()) for m in masks)
        if k == 0:
            assert pruned == 0
            continue
        thr = reference(tensors, k)
        for t, m in zip(tensors, masks):  # exact float32 comparison, whatever the dtype
            assert torch.equal(m, t.abs().float() > thr)
        assert pruned >= k


def test_low_precision_mask_rounding():
    # threshold from a float32 tensor that falls between two float16 values
    x16 = torch.tensor([1.0, 1.0009765625, 2.0], dtype=torch.float16)  # 1 and its float16 successor
    x32 = torch.tensor([1.0008, 0.5, 0.25])  # rounds *up* to 1.0009765625 in float16
    masks = global_level_masks([x16, x32], 0.67)  # k = 4 -> threshold 1.0008 (float32)
    assert float(magnitude_threshold([x16, x32], 0.67)) == pytest.approx(1.0008)
    assert masks[0].tolist() == [False, True, True]
    assert masks[1].tolist() == [False, False, False]
