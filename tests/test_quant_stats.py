"""Calibration statistics: exact, sample-weighted, two-pass b, and Distiller-style YAML files."""
import os

import pytest
import torch
from torch import nn

from compress.quantization import (
    ActivationStatsCollector,
    collect_activation_stats,
    load_stats,
    save_stats,
    validate_stats,
)

DISTILLER_STATS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "docs", "distiller-schedules",
                               "acts_quantization_stats.yaml")


def _stats_of(batches, laplace=True):
    model = nn.Sequential(nn.Identity())
    return collect_activation_stats(model, [(b,) for b in batches], laplace=laplace)["0"]["output"]


def test_avg_min_weights_every_sample_once_whatever_its_batch():
    # one sample whose minimum is -5, then a batch of 9 samples whose minima are -1:
    # the average of the 10 sample minima is (-5 - 9) / 10 = -1.4. Distiller weighted the running value by all
    # elements seen (here 4 per sample) against the new batch's samples: (4*(-5) + (-9)) / (4 + 9) = -2.23.
    first = torch.tensor([[-5.0, 0.0, 1.0, 2.0]])
    rest = torch.tensor([[-1.0, 0.0, 1.0, 2.0]]).repeat(9, 1)
    s = _stats_of([first, rest])
    assert s["avg_min"] == pytest.approx(-1.4)
    assert s["avg_max"] == pytest.approx(2.0)
    assert (s["min"], s["max"], s["samples"]) == (-5.0, 2.0, 10)


def test_distillers_example_first_batch_no_longer_dominates():
    # docs/distiller-compat.md: 100 batches, the first with minima -5, the rest -2 → the true average is -2.03
    # (Distiller's weighting gives -5.03)
    batches = [torch.full((8, 3), -5.0)] + [torch.full((8, 3), -2.0)] * 99
    assert _stats_of(batches, laplace=False)["avg_min"] == pytest.approx(-2.03)


def test_mean_std_and_b_are_exact_over_unequal_batches():
    torch.manual_seed(0)
    batches = [torch.randn(n, 7) * 3 + 1 for n in (1, 50, 13, 200)]
    s = _stats_of(batches)
    x = torch.cat(batches).double()
    assert s["mean"] == pytest.approx(x.mean().item(), rel=1e-12)
    assert s["std"] == pytest.approx(x.std(unbiased=False).item(), rel=1e-10)
    assert s["b"] == pytest.approx((x - x.mean()).abs().mean().item(), rel=1e-10)


def test_statistics_of_known_distributions():
    torch.manual_seed(1)
    gauss = _stats_of([torch.randn(500, 100) * 2 for _ in range(4)])
    assert gauss["std"] == pytest.approx(2.0, rel=0.01)
    assert gauss["b"] == pytest.approx(2.0 * (2 / torch.pi) ** 0.5, rel=0.01)   # E|x| = σ√(2/π)
    laplace = _stats_of([torch.distributions.Laplace(0.0, 0.5).sample((1000, 100)) for _ in range(2)])
    assert laplace["b"] == pytest.approx(0.5, rel=0.01)
    assert laplace["std"] == pytest.approx(0.5 * 2 ** 0.5, rel=0.02)            # √2 b
    uniform = _stats_of([torch.rand(2000, 1000)])
    assert uniform["avg_max"] == pytest.approx(1000 / 1001, abs=1e-3)           # E[max of n uniforms]


def test_samples_are_vectors_along_the_last_dimension():
    s = _stats_of([torch.zeros(35, 10, 6)], laplace=False)
    assert s["samples"] == 350 and s["shape"] == "(35, 10, 6)"


def test_without_the_second_pass_there_is_no_b():
    assert "b" not in _stats_of([torch.randn(4, 4)], laplace=False)


def test_every_input_position_and_the_output_are_recorded():
    class Add(nn.Module):
        def forward(self, a, b):
            return a + b

    model = nn.Sequential()
    model.add = Add()
    collector = ActivationStatsCollector(model, ["add"])
    with collector:
        model.add(torch.ones(2, 3), torch.full((2, 3), 2.0))
    entry = collector.stats()["add"]
    assert sorted(entry["inputs"]) == [0, 1]
    assert entry["inputs"][1]["max"] == 2.0 and entry["output"]["min"] == 3.0


def test_integer_inputs_such_as_token_ids_are_recorded():
    emb = nn.Sequential(nn.Embedding(10, 3))
    s = collect_activation_stats(emb, [torch.tensor([[1, 9], [4, 2]])], laplace=False)["0"]["inputs"][0]
    assert (s["min"], s["max"], s["avg_min"], s["avg_max"]) == (1.0, 9.0, 1.5, 6.5)


def test_hooks_are_removed_after_collection():
    model = nn.Sequential(nn.Linear(2, 2))
    collect_activation_stats(model, [torch.randn(1, 2)])
    assert not model[0]._forward_hooks


def test_stats_yaml_round_trip(tmp_path):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    stats = collect_activation_stats(model, [torch.randn(5, 3), torch.randn(2, 3)])
    path = tmp_path / "stats.yaml"
    save_stats(stats, path)
    assert load_stats(path) == validate_stats(stats)
    assert "inputs:\n    0:" in path.read_text()           # Distiller's layout


def test_distillers_shipped_lm_stats_file_loads():
    if not os.path.exists(DISTILLER_STATS):
        pytest.skip(f"{DISTILLER_STATS} not found (Distiller's LM statistics file is not kept in this repository)")
    stats = load_stats(DISTILLER_STATS)
    assert len(stats) == 27
    gate = stats["rnn.cells.0.fc_gate_x"]
    assert gate["output"]["min"] == pytest.approx(-7.170577049255371)
    assert gate["inputs"][0]["shape"] == "(10, 1500)"
    assert "b" not in gate["output"]                     # the file predates Laplace's b


def test_malformed_stats_name_module_and_key(tmp_path):
    with pytest.raises(ValueError, match=r"decoder\.output: missing 'max'"):
        validate_stats({"decoder": {"output": {"min": 0.0}}})
    with pytest.raises(ValueError, match=r"enc\.inputs\.0\.mean: expected a number"):
        validate_stats({"enc": {"inputs": {0: {"min": 0, "max": 1, "mean": "high"}}}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("enc: !!python/object:os.system {}\n")
    with pytest.raises(ValueError, match="invalid YAML"):
        load_stats(bad)


# ------------------------------------------------------------------ per-channel statistics
def test_per_channel_statistics_are_exact_and_only_where_asked():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Identity(), nn.Tanh())
    batches = [torch.randn(n, 4, 5) * torch.tensor([0.1, 1.0, 10.0, 2.0, 0.5]) + 3 for n in (1, 7, 3)]
    stats = collect_activation_stats(model, [(b,) for b in batches], channels=["0"])
    rows = torch.cat([b.reshape(-1, 5) for b in batches]).double()
    ch = stats["0"]["output"]["channels"]
    assert ch["min"] == pytest.approx(rows.amin(0).tolist())
    assert ch["max"] == pytest.approx(rows.amax(0).tolist())
    assert ch["mean"] == pytest.approx(rows.mean(0).tolist())
    assert ch["std"] == pytest.approx(rows.std(0, unbiased=False).tolist())
    assert ch["b"] == pytest.approx((rows - rows.mean(0)).abs().mean(0).tolist())
    assert stats["0"]["inputs"][0]["channels"]["max"] == ch["max"]   # the Identity's input is its output
    assert "channels" not in stats["1"]["output"]                   # not asked for
    assert stats["0"]["output"]["max"] == pytest.approx(max(ch["max"]))


def test_per_channel_statistics_need_one_channel_count():
    model = nn.Sequential(nn.Identity())
    with pytest.raises(ValueError, match=r"module 0 input 0: per-channel statistics need the same last dimension"):
        collect_activation_stats(model, [(torch.zeros(2, 3),), (torch.zeros(2, 4),)], channels=["0"])
    with pytest.raises(KeyError, match="not observed"):
        ActivationStatsCollector(model, ["0"], channels=["1"])


def test_per_channel_statistics_yaml_round_trip_and_checks(tmp_path):
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    stats = collect_activation_stats(model, [torch.randn(5, 3), torch.randn(2, 3)], channels=["1"])
    path = tmp_path / "stats.yaml"
    save_stats(stats, path)
    loaded = load_stats(path)
    assert loaded == validate_stats(stats)
    assert len(loaded["1"]["output"]["channels"]["max"]) == 4
    good = {"min": [0.0, -1.0], "max": [1.0, 1.0]}
    assert validate_stats({"m": {"output": {"min": -1, "max": 1, "channels": good}}})["m"]["output"]["channels"] == good
    for channels, message in [({"min": [0.0], "max": [1.0, 2.0]}, "lists of different lengths"),
                              ({"min": [2.0], "max": [1.0]}, "channel 0: min 2.0 exceeds max 1.0"),
                              ({"min": [0.0], "max": ["a"]}, r"channels\.max: expected a non-empty list"),
                              ({"min": [0.0], "max": [1.0], "avg": [1.0]}, r"channels\.avg: unknown key"),
                              ({"max": [1.0]}, "missing 'min'")]:
        with pytest.raises(ValueError, match=message):
            validate_stats({"m": {"output": {"min": -1, "max": 1, "channels": channels}}})
