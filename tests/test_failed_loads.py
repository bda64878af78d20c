"""A schedule that fails to load changes nothing: modules, weights, gradient hooks, optimizer state."""
from __future__ import annotations

import glob
import os

import pytest
import torch

import compress
from compress.errors import ScheduleError
from compress.optim import SparseNTASGD
from compress.scheduling import read_schedule
from compress_models import RNNModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = sorted(glob.glob(os.path.join(ROOT, "schedules", "*.yaml")))


def snapshot(model, optimizer):
    return {
        "modules": [(n, type(m)) for n, m in model.named_modules()],
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "hooks": {n: len(p._backward_hooks or {}) for n, p in model.named_parameters()},
        "groups": [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups],
    }


def assert_same(before, after):
    assert after["modules"] == before["modules"]
    assert after["hooks"] == before["hooks"]
    assert after["groups"] == before["groups"]
    assert all(torch.equal(v, before["weights"][k]) for k, v in after["weights"].items())


def lm():
    torch.manual_seed(0)
    return RNNModel("LSTM", 50, 16, 16, 2, dropout=0.0, tie_weights=True)


@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_a_shipped_schedule_with_a_broken_last_policy_leaves_everything_as_it_was(path):
    data, _ = read_schedule(path)
    data = dict(data)
    data["policies"] = list(data.get("policies") or []) + [{"pruner": {"instance_name": "nobody"}, "epochs": [0]}]
    model = lm()
    optimizer = SparseNTASGD(model.parameters(), lr=1.0)  # what the Selfish-RNN schedules' NT-ASGD switch needs
    before = snapshot(model, optimizer)
    with pytest.raises(ScheduleError, match=r"policies\[\d+\]\.pruner\.instance_name"):
        compress.dict_config(model, optimizer, data, evaluate=lambda m: 1.0)
    assert_same(before, snapshot(model, optimizer))


def test_a_weight_name_failing_after_a_gradient_masking_policy_leaves_no_hook():
    schedule = {
        "pruners": {"a": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.1, "final_sparsity": 0.5,
                          "weights": ["rnn.weight_hh_l0"]},
                    "b": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.1, "final_sparsity": 0.5,
                          "weights": ["rnn.weight_hh_l9"]}},
        "lr_schedulers": {"lr": {"class": "LinearLR", "start_factor": 0.5}},
        "policies": [{"pruner": {"instance_name": "a", "args": {"mask_gradients": True}}, "epochs": [0, 1]},
                     {"pruner": {"instance_name": "b"}, "epochs": [0, 1]},
                     {"lr_scheduler": {"instance_name": "lr"}, "epochs": [0]}],
    }
    model = lm()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    before = snapshot(model, optimizer)
    for _ in range(2):  # retrying stacks nothing either
        with pytest.raises(ScheduleError, match=r"pruners\.b\.weights\[0\].*rnn\.weight_hh_l9"):
            compress.dict_config(model, optimizer, schedule)
        assert_same(before, snapshot(model, optimizer))
    scheduler = compress.dict_config(model, optimizer, dict(schedule, policies=schedule["policies"][::2]))
    assert len(model.rnn.weight_hh_l0._backward_hooks) == 1 and len(scheduler.policies) == 2


def test_adding_to_an_existing_scheduler_fills_its_components_and_a_failure_leaves_it_as_it_was():
    model = lm()
    base = {"pruners": {"p": {"class": "SparsityLevelParameterPruner", "levels": {"rnn.weight_hh_l0": 0.5}}},
            "policies": [{"pruner": {"instance_name": "p"}, "epochs": [0]}]}
    scheduler = compress.dict_config(model, None, base)
    more = {"pruners": {"q": {"class": "SparsityLevelParameterPruner", "levels": {"rnn.weight_hh_l1": 0.5}}},
            "policies": [{"pruner": {"instance_name": "q"}, "epochs": [1]}]}
    assert compress.dict_config(model, None, more, scheduler=scheduler) is scheduler
    assert sorted(scheduler.components["pruners"]) == ["p", "q"] and len(scheduler.policies) == 2
    broken = {"pruners": {"r": {"class": "SparsityLevelParameterPruner", "levels": {"nothing": 0.5}}},
              "policies": [{"pruner": {"instance_name": "r"}, "epochs": [1]}]}
    with pytest.raises(ScheduleError, match=r"pruners\.r\.levels\.nothing"):
        compress.dict_config(model, None, broken, scheduler=scheduler)
    assert sorted(scheduler.components["pruners"]) == ["p", "q"] and len(scheduler.policies) == 2
