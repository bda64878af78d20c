"""Distiller's pruners, with hand-computed thresholds and masks."""
import pytest
import torch
from torch import nn

import compress
from compress.context import HookContext
from compress.pruning.ramps import Timing, baidu_threshold


def one_layer(weight):
    model = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        model.weight.copy_(weight)
        model.bias.fill_(0.05)
    return model


def prune_once(model, spec, epoch=0, timing=None):
    timing = timing or {"epochs": [epoch]}
    scheduler = compress.dict_config(model, None, {"pruners": {"p": spec},
                                                   "policies": [dict({"pruner": {"instance_name": "p"}}, **timing)]})
    scheduler.on_epoch_begin(epoch)
    return scheduler


W = torch.tensor([[0.1, -0.2, 0.3, -0.4], [0.5, -0.6, 0.7, -0.8]])


def test_level_pruner_prunes_the_smallest_magnitudes():
    model = one_layer(W)
    prune_once(model, {"class": "SparsityLevelParameterPruner", "levels": {"weight": 0.5}})
    assert torch.equal(model.weight, W * torch.tensor([[0.0], [1.0]]))
    assert (model.bias == 0.05).all()


def test_level_pruner_prunes_ties_at_the_threshold():
    model = one_layer(torch.tensor([[1.0, 1.0, 1.0, 2.0]]))
    prune_once(model, {"class": "SparsityLevelParameterPruner", "levels": {"weight": 0.25}})
    assert model.weight.tolist() == [[0, 0, 0, 2.0]]


def test_level_star_default_covers_biases_and_zero_means_skip():
    model = one_layer(W)
    with torch.no_grad():
        model.bias.copy_(torch.tensor([0.05, 0.1]))
    prune_once(model, {"class": "SparsityLevelParameterPruner", "levels": {"*": 0.5, "weight": 0}})
    assert torch.equal(model.weight, W)
    assert (model.bias == 0).tolist() == [True, False]


def test_magnitude_pruner_star_default_and_override():
    model = one_layer(W)
    prune_once(model, {"class": "MagnitudeParameterPruner", "thresholds": {"*": 0.1, "weight": 0.45}})
    assert torch.equal(model.weight, W * torch.tensor([[0.0], [1.0]]))
    assert (model.bias == 0).all()   # |0.05| <= 0.1


def test_sensitivity_pruner_threshold_is_s_times_std_fixed_at_first_pruning():
    model = one_layer(W)
    scheduler = compress.dict_config(model, None, {
        "pruners": {"p": {"class": "SensitivityPruner", "sensitivities": {"weight": 1.0}}},
        "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": 2}]})
    scheduler.on_epoch_begin(0)
    std = W.std().item()
    assert (model.weight != 0).tolist() == (W.abs() > std).tolist()
    pruner = scheduler.components["pruners"]["p"]
    assert pruner.stds["weight"] == pytest.approx(std)
    scheduler.on_epoch_begin(1)   # the pruned tensor has another std; the threshold must not move
    assert pruner.stds["weight"] == pytest.approx(std)


def test_splicing_prunes_below_low_and_splices_back_above_high():
    model = one_layer(W)
    pruner = compress.pruning.SplicingPruner("s", {"weight": 0.0}, low_thresh_mult=0.9, hi_thresh_mult=1.1)
    pruner.bind(compress.sparsity.ParameterIndex(model))
    step = HookContext(0, timing=Timing(epochs=(0,)))
    mean = W.abs().mean().item()   # 0.45: low 0.405, high 0.495
    mask = pruner.compute_masks({"weight": model.weight}, {"weight": None}, step)["weight"]
    assert mask.tolist() == [[False, False, False, False], [True, True, True, True]]
    with torch.no_grad():
        model.weight[0, 3] = 0.6   # grows above the high threshold: spliced back
        model.weight[1, 0] = 0.45  # between the thresholds: keeps its state
    mask = pruner.compute_masks({"weight": model.weight}, {"weight": mask}, step)["weight"]
    assert mask.tolist() == [[False, False, False, True], [True, True, True, True]]
    assert pruner.stats["weight"][0] == pytest.approx(mean)


def test_baidu_threshold_formula():
    timing = Timing(starting_epoch=4, ending_epoch=21, frequency=3)
    q, offset, mult = 0.17, 3, 2
    start_slope = 2 * q * 3 / (2 * 3 + 3 * (21 - 7))
    assert baidu_threshold(q, offset, mult, 4, timing) == pytest.approx(start_slope * 1 / 3)
    assert baidu_threshold(q, offset, mult, 10, timing) == pytest.approx(
        (start_slope * 4 + start_slope * mult * 4) / 3)


def test_baidu_pruner_masks_at_the_ramp_threshold():
    model = one_layer(W)
    timing = {"starting_epoch": 0, "ending_epoch": 3, "frequency": 1}
    prune_once(model, {"class": "BaiduRNNPruner", "q": 1.0, "ramp_epoch_offset": 1, "ramp_slope_mult": 2,
                       "weights": ["weight"]}, epoch=2, timing=timing)
    eps = baidu_threshold(1.0, 1, 2, 2, Timing(starting_epoch=0, ending_epoch=3, frequency=1))
    assert (model.weight != 0).tolist() == (W.abs() > eps).tolist()


def test_user_pruner_registers_and_loads_from_yaml(monkeypatch):
    from compress.registry import PRUNERS

    monkeypatch.setattr(PRUNERS, "_classes", dict(PRUNERS._classes))  # the test's class leaves with the test
    @compress.register_pruner
    class KeepFirstColumnPruner(compress.Pruner):
        """Keeps column 0 of each weight (a test pruner)."""

        def compute_masks(self, params, current, step):
            out = {}
            for n in self.weights:
                m = torch.zeros_like(params[n], dtype=torch.bool)
                m[:, 0] = True
                out[n] = m
            return out

    model = one_layer(W)
    prune_once(model, {"class": "KeepFirstColumnPruner", "weights": ["weight"]})
    assert (model.weight != 0).tolist() == [[True, False, False, False]] * 2


def test_registering_a_second_class_under_a_taken_name_fails():
    class AutomatedGradualPruner(compress.Pruner):
        def compute_masks(self, params, current, step):
            return {}

    with pytest.raises(ValueError, match="already registered"):
        compress.register_pruner(AutomatedGradualPruner)
