"""Linear quantization arithmetic: scales and zero points (hand-computed), round trips, clipping ranges."""
import pytest
import torch

from compress.errors import ArgumentError
from compress.quantization import (
    ClipMode,
    LinearQuantMode,
    asymmetric_params,
    clip_range,
    dequantize,
    fake_quantize,
    quant_params,
    quantize,
    quantized_range,
    symmetric_params,
)
from compress.quantization.linear import parse_clip_mode, parse_mode, tensor_stats
from compress.quantization.wrappers import quantize_weight

SYM, SYM_R = LinearQuantMode.SYMMETRIC, LinearQuantMode.SYMMETRIC_RESTRICTED
ASYM_U, ASYM_S = LinearQuantMode.ASYMMETRIC_UNSIGNED, LinearQuantMode.ASYMMETRIC_SIGNED


@pytest.mark.parametrize("sat, restricted, scale", [(4.0, False, 31.875), (4.0, True, 31.75),
                                                    (10.0, False, 12.75), (10.0, True, 12.7)])
def test_symmetric_scale_matches_hand_computed_values(sat, restricted, scale):
    s, zp = symmetric_params(8, sat, restricted)
    assert s.item() == pytest.approx(scale) and zp.item() == 0


@pytest.mark.parametrize("signed, zero_point", [(False, -42.0), (True, 86.0)])
def test_asymmetric_scale_and_zero_point_match_hand_computed_values(signed, zero_point):
    s, zp = asymmetric_params(8, -2.0, 10.0, signed)
    assert s.item() == pytest.approx(21.25) and zp.item() == zero_point


def test_asymmetric_range_is_widened_to_include_zero():
    s, zp = asymmetric_params(8, 2.0, 10.0)       # as if [0, 10]
    assert s.item() == pytest.approx(25.5) and zp.item() == 0


def test_zero_range_gives_scale_one():
    assert symmetric_params(8, 0.0)[0].item() == 1.0
    assert asymmetric_params(8, 0.0, 0.0)[0].item() == 1.0


@pytest.mark.parametrize("mode, expected", [(SYM, (-128, 127)), (SYM_R, (-127, 127)), (ASYM_U, (0, 255)),
                                            (ASYM_S, (-128, 127))])
def test_quantized_ranges_of_each_mode(mode, expected):
    assert quantized_range(8, mode) == expected


def test_quantize_follows_distillers_convention_with_round_half_to_even():
    p = quant_params(8, SYM, -4.0, 4.0)           # scale 31.875
    q = quantize(torch.tensor([1.0, 4.0, -4.0, 0.0]), p)
    assert q.tolist() == [32.0, 127.0, -128.0, 0.0]   # 127.5 → 128 (even) → clamped to 127
    p = quant_params(8, ASYM_U, -2.0, 10.0)       # scale 21.25, zero point -42
    q = quantize(torch.tensor([-2.0, 0.0, 10.0]), p)
    assert q.tolist() == [0.0, 42.0, 254.0]           # -0.5 → 0, 254.5 → 254
    assert dequantize(q, p)[1].item() == 0.0          # zero is exact
    assert dequantize(q, p)[2].item() == pytest.approx(212 / 21.25)


@pytest.mark.parametrize("mode", [SYM, SYM_R, ASYM_U, ASYM_S])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_round_trip_error_is_at_most_half_a_step_inside_the_range(mode, bits):
    torch.manual_seed(bits)
    x = torch.randn(1000) * 3 + 0.5
    p = quant_params(bits, mode, x.min(), x.max())
    err = (dequantize(quantize(x, p), p) - x).abs()
    assert err.max().item() <= 0.5 / p.scale.item() + 1e-6


def test_values_outside_the_range_saturate():
    p = quant_params(8, SYM, -1.0, 1.0)
    assert fake_quantize(torch.tensor([5.0, -5.0]), p).tolist() == pytest.approx([127 / 127.5, -128 / 127.5])


def test_fused_fake_quantize_equals_the_explicit_formula():
    torch.manual_seed(0)
    x = torch.randn(4096) * 2
    for mode in (SYM, ASYM_U, ASYM_S):
        p = quant_params(8, mode, torch.tensor(-1.7), torch.tensor(2.3))
        explicit = dequantize(quantize(x, p), p)
        torch.testing.assert_close(fake_quantize(x, p), explicit, rtol=0, atol=1e-6)


def test_per_channel_weights_get_one_scale_per_output_row():
    w = torch.tensor([[1.0, -2.0], [0.5, 0.25]])
    q, p = quantize_weight(w, 8, SYM, per_channel=True)
    assert p.scale.flatten().tolist() == pytest.approx([127.5 / 2, 127.5 / 0.5])
    assert q.tolist() == [[64.0, -128.0], [127.0, 64.0]]   # row 1: 127.5 → 128 → clamped; 63.75 → 64


STATS = {"min": -10.0, "max": 8.0, "avg_min": -3.0, "avg_max": 2.5, "mean": 0.5, "std": 2.0, "b": 1.0}


@pytest.mark.parametrize("clip, expected", [
    (ClipMode.NONE, (-10.0, 8.0)),
    (ClipMode.MAX, (-10.0, 8.0)),
    (ClipMode.AVG, (-3.0, 2.5)),
])
def test_clip_range_of_simple_modes(clip, expected):
    assert tuple(v.item() for v in clip_range(STATS, clip, 8, ASYM_U)) == pytest.approx(expected)


def test_n_std_clips_to_mean_plus_minus_n_std_within_min_max():
    lo, hi = clip_range(STATS, ClipMode.N_STD, 8, ASYM_U, n_stds=2)
    assert (lo.item(), hi.item()) == pytest.approx((-3.5, 4.5))
    lo, hi = clip_range(STATS, ClipMode.N_STD, 8, ASYM_U, n_stds=10)
    assert (lo.item(), hi.item()) == pytest.approx((-10.0, 8.0))


def test_aciq_gauss_symmetric_is_abs_mean_plus_alpha_times_std():
    lo, hi = clip_range(STATS, ClipMode.GAUSS, 8, SYM)
    assert (lo.item(), hi.item()) == pytest.approx((-(0.5 + 3.92 * 2), 0.5 + 3.92 * 2))


def test_aciq_laplace_asymmetric_starts_at_max_of_avg_min_and_mean_minus_alpha():
    lo, hi = clip_range(STATS, ClipMode.LAPLACE, 4, ASYM_U)   # alpha = 5.03 * b
    assert (lo.item(), hi.item()) == pytest.approx((-3.0, -3.0 + 2 * 5.03))
    lo, hi = clip_range(STATS, ClipMode.LAPLACE, 4, ASYM_U, half_range=True)   # one-sided table, from 0
    assert (lo.item(), hi.item()) == pytest.approx((0.0, -3.0 + 6.2))


@pytest.mark.parametrize("clip", [ClipMode.GAUSS, ClipMode.LAPLACE])
@pytest.mark.parametrize("mode", [SYM, ASYM_U])
def test_aciq_range_never_extends_past_the_observed_extremes(clip, mode):
    sigmoid_like = {"min": 0.0, "max": 1.0, "avg_min": 0.02, "avg_max": 0.99, "mean": 0.5, "std": 0.3, "b": 0.25}
    lo, hi = clip_range(sigmoid_like, clip, 8, mode)
    assert hi.item() <= 1.0 and lo.item() >= (-1.0 if mode == SYM else 0.0)


def test_laplace_needs_b_and_says_so():
    with pytest.raises(KeyError, match="'b'"):
        clip_range({k: v for k, v in STATS.items() if k != "b"}, ClipMode.LAPLACE, 8, SYM)


def test_aciq_clipping_lowers_the_error_of_4_bit_laplace_data():
    torch.manual_seed(0)
    x = torch.distributions.Laplace(0.0, 1.0).sample((200_000,))
    stats = tensor_stats(x)
    assert stats["b"].item() == pytest.approx(1.0, rel=0.02)
    errors = {}
    for clip in (ClipMode.NONE, ClipMode.LAPLACE):
        p = quant_params(4, SYM, *clip_range(stats, clip, 4, SYM))
        errors[clip] = (fake_quantize(x, p) - x).square().mean().item()
    assert errors[ClipMode.LAPLACE] < 0.5 * errors[ClipMode.NONE]


def test_tensor_stats_of_a_gaussian():
    torch.manual_seed(0)
    x = torch.randn(400, 500) * 2 + 1
    s = tensor_stats(x)
    assert s["mean"].item() == pytest.approx(1.0, abs=0.02)
    assert s["std"].item() == pytest.approx(2.0, rel=0.01)
    assert s["b"].item() == pytest.approx(2.0 * (2 / torch.pi) ** 0.5, rel=0.01)  # E|x - mean| = σ√(2/π)
    assert s["avg_min"].item() == pytest.approx(x.amin(1).mean().item())


@pytest.mark.parametrize("text, expected", [("SYMMETRIC", SYM), ("sym", SYM), ("asym_u", ASYM_U),
                                            ("Asymmetric_Signed", ASYM_S), ("sym_restr", SYM_R)])
def test_mode_names_and_aliases(text, expected):
    assert parse_mode(text) == (expected, expected)


def test_mode_mapping_sets_activations_and_weights_separately():
    assert parse_mode({"activations": "asym_u", "weights": "sym"}) == (ASYM_U, SYM)


def test_unknown_mode_and_clip_mode_name_their_key():
    with pytest.raises(ArgumentError) as e:
        parse_mode({"activations": "sym", "weights": "sideways"})
    assert e.value.key == "mode.weights"
    with pytest.raises(ArgumentError) as e:
        parse_clip_mode("HALF")
    assert e.value.key == "clip_acts"
