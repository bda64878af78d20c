"""The weights a schedule names are what the user means, or refused with the reason: frozen parameters, weight
norm's magnitude and direction, zero-size and 0-dim parameters."""
import warnings

import pytest
import torch

import compress
from compress import ScheduleError
from compress.sparsity.names import ParameterIndex
from compress_models import RNNModel


def lm(tied=True):
    torch.manual_seed(0)
    return RNNModel("LSTM", 30, 8, 8, 2, dropout=0.0, tie_weights=tied)


def load(model, schedule, optimizer=None):
    return compress.dict_config(model, optimizer or torch.optim.SGD(model.parameters(), lr=0.1), schedule)


def dynamic(**pruner):
    return {"pruners": {"p": dict({"class": "RigLPruner", "density": 0.5}, **pruner)},
            "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": 2}]}


def test_a_gradient_pruners_default_weights_leave_frozen_parameters_out():
    model = lm()
    model.rnn.weight_ih_l0.requires_grad_(False)
    scheduler = load(model, dynamic())
    assert "rnn.weight_ih_l0" not in scheduler.components["pruners"]["p"].weights
    assert "rnn.weight_hh_l0" in scheduler.components["pruners"]["p"].weights


def test_naming_a_frozen_parameter_for_a_gradient_pruner_is_refused_with_the_reason():
    model = lm()
    model.rnn.weight_ih_l0.requires_grad_(False)
    with pytest.raises(ScheduleError, match=r"pruners\.p\.weights\[0\]: 'rnn\.weight_ih_l0' is frozen"):
        load(model, dynamic(weights=["rnn.weight_ih_l0"]))
    assert load(model, dynamic(weights=["rnn.weight_*_l0"])).components["pruners"]["p"].weights == [
        "rnn.weight_hh_l0"]


def test_a_regularizers_star_leaves_frozen_parameters_out_and_an_exact_name_is_refused():
    model = lm()
    model.rnn.weight_ih_l0.requires_grad_(False)
    schedule = {"regularizers": {"r": {"class": "L1Regularizer", "reg_regims": {"*": 0.01}}},
                "policies": [{"regularizer": {"instance_name": "r"}, "epochs": [0]}]}
    assert "rnn.weight_ih_l0" not in load(model, schedule).components["regularizers"]["r"].weights
    schedule["regularizers"]["r"]["reg_regims"] = {"rnn.weight_ih_l0": 0.01}
    with pytest.raises(ScheduleError, match=r"reg_regims\.rnn\.weight_ih_l0: 'rnn\.weight_ih_l0' is frozen"):
        load(model, schedule)


def test_masking_the_gradients_of_a_frozen_weight_adds_no_hook():
    model = lm()
    model.rnn.weight_ih_l0.requires_grad_(False)
    schedule = {"pruners": {"p": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.1, "final_sparsity": 0.5,
                                  "weights": ["rnn.weight_*_l0"]}},
                "policies": [{"pruner": {"instance_name": "p", "args": {"mask_gradients": True}}, "epochs": [0]}]}
    load(model, schedule)
    assert not model.rnn.weight_ih_l0._backward_hooks and len(model.rnn.weight_hh_l0._backward_hooks) == 1


@pytest.mark.parametrize("style", ["parametrizations", "hooks"])
def test_a_weight_norm_weight_is_refused_with_the_reason_and_patterns_skip_its_parts(style):
    model = lm(tied=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the hook-based weight_norm is deprecated
        if style == "parametrizations":
            torch.nn.utils.parametrizations.weight_norm(model.decoder)
        else:
            torch.nn.utils.weight_norm(model.decoder)
    level = {"pruners": {"p": {"class": "SparsityLevelParameterPruner", "levels": {"decoder.weight": 0.5}}},
             "policies": [{"pruner": {"instance_name": "p"}, "epochs": [0]}]}
    with pytest.raises(ScheduleError, match=r"'decoder\.weight' is computed from .* \(weight norm\): a mask on the "
                                            r"magnitude zeroes whole rows"):
        load(model, level)
    level["pruners"]["p"]["levels"] = {"re:decoder\\.(parametrizations|weight_).*": 0.5}
    with pytest.raises(ScheduleError, match="matches only parts of re-parametrised weights"):
        load(model, level)
    index = ParameterIndex(model)
    assert not set(index.resolve("*")) & set(index.unsafe) and set(index.unsafe) <= set(index.params)
    assert not set(load(model, dynamic()).components["pruners"]["p"].weights) & set(index.unsafe)


def test_group_lasso_star_and_dynamic_defaults_skip_zero_size_and_0_dim_parameters():
    model = lm()
    model.register_parameter("empty", torch.nn.Parameter(torch.zeros(0, 4)))
    model.register_parameter("scale", torch.nn.Parameter(torch.tensor(1.0)))
    lasso = {"regularizers": {"r": {"class": "GroupLassoRegularizer", "reg_regims": {"*": [0.01, "Rows"]}}},
             "policies": [{"regularizer": {"instance_name": "r"}, "epochs": [0]}]}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = load(model, lasso, optimizer)
    weights = scheduler.components["regularizers"]["r"].weights
    assert "empty" not in weights and "scale" not in weights and "rnn.weight_hh_l0" in weights
    x = torch.randint(0, 30, (5, 2))
    loss = scheduler.before_backward_pass(0, 0, 1, model(x, model.init_hidden(2))[0].sum(), optimizer)
    assert torch.isfinite(loss)
    assert "empty" not in load(model, dynamic()).components["pruners"]["p"].weights
    lasso["regularizers"]["r"]["reg_regims"] = {"scale": [0.01, "Rows"]}
    with pytest.raises(ScheduleError, match="'scale' has no rows or columns to group"):
        load(model, lasso)
    with pytest.raises(ScheduleError, match="'empty' has no elements"):
        load(model, dynamic(weights=["empty"]))
