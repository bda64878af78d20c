"""Sparse NT-ASGD: SGD, then per-weight averages that restart where a weight is pruned or regrown."""
import pytest
import torch

import compress
from compress import ScheduleError
from compress.optim import (
    NonMonotoneTrigger,
    NTASGDSwitch,
    SparseNTASGD,
    averaged_weights,
    nonmonotone_trigger,
)
from compress.sparsity import MaskStore


def quadratic_steps(optimizer, params, steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = sum(((p - torch.randn(p.shape, generator=gen)) ** 2).sum() for p in params)
        loss.backward()
        optimizer.step()


def two_copies(shape=(3, 4)):
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(shape)), torch.nn.Parameter(torch.randn(shape[0]))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    return a, b


def test_sgd_phase_is_torch_sgd_bit_for_bit():
    ours, theirs = two_copies()
    quadratic_steps(SparseNTASGD(ours, lr=0.1, weight_decay=0.01), ours, 5)
    quadratic_steps(torch.optim.SGD(theirs, lr=0.1, weight_decay=0.01), theirs, 5)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("t0,lambd", [(0, 0.0), (2, 0.0), (0, 1e-2)])
def test_averaging_phase_of_an_unpruned_weight_is_torch_asgd(t0, lambd):
    ours, theirs = two_copies()
    mine = SparseNTASGD(ours, lr=0.05, weight_decay=0.01, t0=t0, lambd=lambd, averaging=True)
    ref = torch.optim.ASGD(theirs, lr=0.05, weight_decay=0.01, t0=t0, lambd=lambd)
    quadratic_steps(mine, ours, 7)
    quadratic_steps(ref, theirs, 7)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        torch.testing.assert_close(mine.state[a]["ax"], ref.state[b]["ax"], rtol=0, atol=1e-6)


def test_per_weight_average_restarts_where_a_weight_is_pruned_and_regrown():
    # two weights, constant gradient 0.5, lr 0.1: every step moves each by -0.05; mu = 1 / max(1, count - 1)
    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))

    model = Two()
    optimizer = SparseNTASGD(model.parameters(), lr=0.1, averaging=True)
    store = MaskStore(model, optimizer)
    averages = []

    def step():
        model.w.grad = torch.full((2,), 0.5)
        optimizer.step()
        store.after_step()
        averages.append(optimizer.state[model.w]["ax"].tolist())

    for _ in range(4):
        step()
    # iterates 0.95, 0.90, 0.85, 0.80: the average leaves out the first (as torch's ASGD with t0 = 0)
    assert averages[-1] == pytest.approx([(0.9 + 0.85 + 0.8) / 3, (1.9 + 1.85 + 1.8) / 3])
    store.set_mask("w", torch.tensor([True, False]))         # prune the second weight
    step()                                                   # it stays 0 and leaves the average
    assert averages[-1] == pytest.approx([(0.9 + 0.85 + 0.8 + 0.75) / 4, 0.0])
    assert optimizer.state[model.w]["count"].tolist() == [5.0, 0.0]
    store.set_mask("w", torch.tensor([True, True]))          # regrow it at 0
    for _ in range(3):
        step()
    # first: 0.75 - 0.05 * k; second, from 0: -0.05, -0.10, -0.15 averaged as a fresh start
    assert averages[-3] == pytest.approx([(0.9 + 0.85 + 0.8 + 0.75 + 0.7) / 5, -0.05])
    assert averages[-2] == pytest.approx([(0.9 + 0.85 + 0.8 + 0.75 + 0.7 + 0.65) / 6, -0.10])
    assert averages[-1] == pytest.approx([(0.9 + 0.85 + 0.8 + 0.75 + 0.7 + 0.65 + 0.6) / 7, (-0.10 - 0.15) / 2])


def test_averaged_weights_swaps_in_the_averages_and_restores_the_raw_weights():
    ours, _ = two_copies()
    optimizer = SparseNTASGD(ours, lr=0.1)
    quadratic_steps(optimizer, ours, 2)
    with averaged_weights(optimizer) as swapped:   # SGD phase: nothing to swap
        assert not swapped
    optimizer.start_averaging()
    quadratic_steps(optimizer, ours, 3)
    raw = [p.detach().clone() for p in ours]
    with averaged_weights(optimizer) as swapped:
        assert swapped
        for p in ours:
            assert torch.equal(p, optimizer.state[p]["ax"])
    for p, r in zip(ours, raw):
        assert torch.equal(p, r)


def test_averaging_switch_is_saved_with_the_optimizer_state():
    ours, theirs = two_copies()
    optimizer = SparseNTASGD(ours, lr=0.1)
    optimizer.start_averaging()
    quadratic_steps(optimizer, ours, 2)
    restored = SparseNTASGD(theirs, lr=0.1)
    restored.load_state_dict(optimizer.state_dict())
    assert restored.averaging
    assert torch.equal(restored.state[theirs[0]]["count"], torch.full((3, 4), 2.0))


def test_nonmonotone_trigger_fires_when_worse_than_the_best_of_older_epochs():
    history = [5.0, 4.0, 3.0, 3.5, 3.6]
    assert nonmonotone_trigger(history, 3.1, nonmono=2)        # best of epochs 0-2 is 3.0
    assert not nonmonotone_trigger(history, 2.9, nonmono=2)
    assert not nonmonotone_trigger(history[:2], 9.0, nonmono=2)  # not enough history yet


def test_trigger_object_records_the_history():
    trigger = NonMonotoneTrigger(nonmono=1)
    assert [trigger.step(v) for v in (3.0, 2.0, 3.5)] == [False, False, True]
    assert trigger.state_dict()["history"] == [3.0, 2.0, 3.5]


SWITCH = {"extensions": {"sw": {"class": "NTASGDSwitch", "nonmono": 1}},
          "policies": [{"extension": {"instance_name": "sw"}, "starting_epoch": 0, "ending_epoch": 10}]}


def test_schedule_extension_starts_averaging_when_validation_stalls():
    model = torch.nn.Linear(3, 2)
    optimizer = SparseNTASGD(model.parameters(), lr=0.1)
    scheduler = compress.dict_config(model, optimizer, SWITCH)
    for epoch, val in enumerate([3.0, 2.0]):
        scheduler.on_epoch_end(epoch, optimizer, metrics={"min": val})
    assert not optimizer.averaging
    scheduler.on_epoch_end(2, optimizer, metrics={"min": 3.5})
    assert optimizer.averaging
    assert scheduler.components["extensions"]["sw"].switched_at == 2


def test_schedule_extension_state_resumes():
    model = torch.nn.Linear(3, 2)
    optimizer = SparseNTASGD(model.parameters(), lr=0.1)
    scheduler = compress.dict_config(model, optimizer, SWITCH)
    scheduler.on_epoch_end(0, optimizer, metrics={"min": 3.0})
    scheduler.on_epoch_end(1, optimizer, metrics={"min": 2.0})
    again = compress.dict_config(model, optimizer, SWITCH)
    again.load_state_dict(scheduler.state_dict())
    again.on_epoch_end(2, optimizer, metrics=3.5)
    assert optimizer.averaging


def test_switch_without_a_sparse_ntasgd_optimizer_names_the_key():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ScheduleError) as info:
        compress.dict_config(model, torch.optim.SGD(model.parameters(), lr=0.1), SWITCH)
    assert info.value.key == "extensions.sw.optimizer"
    assert "SparseNTASGD" in str(info.value)


def test_switch_without_validation_metrics_says_what_it_needs():
    model = torch.nn.Linear(3, 2)
    optimizer = SparseNTASGD(model.parameters(), lr=0.1)
    switch = NTASGDSwitch("sw", optimizer)
    scheduler = compress.CompressionScheduler(model, optimizer)
    scheduler.add_policy(switch, starting_epoch=0, ending_epoch=2)
    with pytest.raises(ValueError, match="metrics"):
        scheduler.on_epoch_end(0, optimizer)


# -- the foreach averaging step against the per-parameter loop ----------------------------------------------
class Layers(torch.nn.Module):
    def __init__(self, dtype=torch.float32):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Parameter(torch.randn(6, 5, dtype=dtype))
        self.b = torch.nn.Parameter(torch.randn(4, 6, dtype=dtype))
        self.bias = torch.nn.Parameter(torch.randn(4, dtype=dtype))


def masked_averaging_run(foreach, steps=12, dtype=torch.float32, **options):
    """Averaging steps on a masked model whose masks change twice (prune, then regrow at other positions)."""
    model = Layers(dtype)
    optimizer = SparseNTASGD(model.parameters(), lr=0.3, averaging=True, foreach=foreach, **options)
    store = MaskStore(model, optimizer)
    masks = torch.Generator().manual_seed(1)
    grads = torch.Generator().manual_seed(2)
    for step in range(steps):
        if step in (0, 4, 8):
            for name in ("a", "b"):
                p = store.parameter(name)
                store.set_mask(name, torch.rand(p.shape, generator=masks) < 0.6, optimizer)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=grads).to(dtype)
        optimizer.step()
        store.after_step()
    return model, optimizer


@pytest.mark.parametrize("options", [{}, {"weight_decay": 0.01}, {"weight_decay": 0.01, "t0": 2},
                                     {"weight_decay": 0.01, "lambd": 1e-2}, {"t0": 1.5, "lambd": 1e-3}])
def test_foreach_averaging_step_is_bit_identical_to_the_per_parameter_loop(options):
    model_f, opt_f = masked_averaging_run(True, **options)
    model_l, opt_l = masked_averaging_run(False, **options)
    for pf, pl in zip(model_f.parameters(), model_l.parameters()):
        assert torch.equal(pf, pl)
        state_f, state_l = opt_f.state[pf], opt_l.state[pl]
        assert set(state_f) == set(state_l) == {"step", "eta", "ax", "count"}
        for key in ("ax", "count"):
            assert torch.equal(state_f[key], state_l[key]), key
        assert (state_f["step"], state_f["eta"]) == (state_l["step"], state_l["eta"])


def test_foreach_averaging_works_for_float64_weights():
    model_f, opt_f = masked_averaging_run(True, dtype=torch.float64, weight_decay=0.01)
    model_l, _ = masked_averaging_run(False, dtype=torch.float64, weight_decay=0.01)
    for pf, pl in zip(model_f.parameters(), model_l.parameters()):
        assert torch.equal(pf, pl)
        assert opt_f.state[pf]["ax"].dtype == torch.float64


def test_averages_of_pruned_weights_stay_zero_and_regrown_ones_restart():
    model, optimizer = masked_averaging_run(True, steps=9, weight_decay=0.01)
    for p in (model.a, model.b):
        state = optimizer.state[p]
        pruned = p == 0
        assert not state["ax"][pruned].any() and not state["count"][pruned].any()
        assert set(state["count"][~pruned].unique().tolist()) <= {1.0, 5.0, 9.0}   # since the last reset


def test_averaging_step_reuses_its_buffers():
    model, optimizer = masked_averaging_run(True, steps=2, weight_decay=0.01)
    held = {p: (optimizer._buffers[p].data_ptr(), optimizer.state[p]["ax"].data_ptr()) for p in model.parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    assert {p: (optimizer._buffers[p].data_ptr(), optimizer.state[p]["ax"].data_ptr())
            for p in model.parameters()} == held
    assert all(set(state) == {"step", "eta", "ax", "count"} for state in optimizer.state_dict()["state"].values())


def test_step_and_eta_are_host_numbers_also_after_loading_a_checkpoint_of_tensors():
    model, optimizer = masked_averaging_run(True, steps=3, lambd=1e-2)
    saved = optimizer.state_dict()
    legacy = {"param_groups": saved["param_groups"],   # how earlier versions saved them: float32 tensors
              "state": {i: dict(s, step=torch.tensor(float(s["step"])), eta=torch.tensor(s["eta"]))
                        for i, s in saved["state"].items()}}
    for state_dict in (saved, legacy):
        other = Layers()
        restored = SparseNTASGD(other.parameters(), lr=0.3)
        restored.load_state_dict(state_dict)
        for p, q in zip(model.parameters(), other.parameters()):
            assert restored.state[q]["step"] == optimizer.state[p]["step"] == 3
            assert type(restored.state[q]["eta"]) is float
            assert restored.state[q]["eta"] == optimizer.state[p]["eta"]


def test_half_precision_weights_are_refused_by_name():
    with pytest.raises(compress.errors.ArgumentError, match="float32 or float64"):
        SparseNTASGD([torch.nn.Parameter(torch.ones(2, dtype=torch.bfloat16))], lr=0.1)


def test_module_examples_run():
    import doctest

    import compress.optim.snt_asgd as module

    assert doctest.testmod(module).failed == 0
